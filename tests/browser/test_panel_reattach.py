"""Reopening a notebook while its run trains, in JupyterLab: the saved cell output says how to show
the run again (``display(run)``, the ``--name`` variable), and doing so shows the live panel, whose
step keeps growing. Screenshot: ``test-artifacts/panel-reattach.png``."""
from __future__ import annotations

import _kernel_probe as kp

_RUN_IN_NEW_CELL_JS = """
async (code) => {
  const app = window.jupyterapp, nb = app.shell.currentWidget.content;
  nb.activeCellIndex = nb.widgets.length - 1;
  await app.commands.execute('notebook:insert-cell-below');
  nb.activeCell.model.sharedModel.setSource(code);
  await app.commands.execute('notebook:run-cell');
}
"""


def test_lab_reopened_notebook_says_how_to_reattach_and_display_shows_the_live_run(
        page, write_notebook, notebook_dir, lab_server, jupyter_ui, artifacts_dir):
    write_notebook("panel", kp.panel_notebook(start=True))
    server = lab_server(notebook_dir)
    jupyter_ui.open(server, "panel.ipynb")
    jupyter_ui.run_all()
    jupyter_ui.wait_idle()
    kp.PanelUI(page).wait_visible()
    kp.wait_probe(notebook_dir, "running", lambda p: p["state"] == "running" and p["step"] > 10, 60, page)
    page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
    page.wait_for_timeout(1000)

    page.reload(wait_until="domcontentloaded")  # the notebook reopened; the kernel and its run go on
    jupyter_ui.open(server, "panel.ipynb")
    hint = page.locator(".nnw-reattach").first
    hint.wait_for(state="visible", timeout=30_000)
    assert hint.inner_text().strip() == ("Panel bound to run: after reopening the notebook or reloading the page, "
                                         "run display(run) in a new cell to show the live run again.")
    page.evaluate(_RUN_IN_NEW_CELL_JS, "display(run)")
    shown = page.locator(".jp-Cell").last.locator(f".{kp.PANEL_CLASS}")
    shown.wait_for(state="visible", timeout=30_000)
    step = lambda: int(shown.locator(".widget-html", has_text="step ").first.inner_text()  # noqa: E731
                       .split("step ")[1].split("/")[0].replace(",", ""))
    first = kp.wait_until("the re-attached panel to show a step", step, 20, page=page)
    kp.wait_until("the re-attached panel to follow the live run", lambda: step() > first, 20, page=page)
    assert shown.locator(".widget-html").first.inner_text().strip() == "running"
    kp.save_screenshot(shown, [artifacts_dir / "panel-reattach.png"])
    (notebook_dir / "probe.stop").touch()
