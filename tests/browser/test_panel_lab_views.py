"""The views of a ``%%train`` panel in JupyterLab, as a person sees them: no uncaught error in the
browser console, the gradient heat map drawn (it stayed blank: bqplot's colour bar threw
``Cannot read properties of undefined (reading 'length') at rescale_axis``), and hover values
on the charts. Screenshot: ``test-artifacts/panel-lab-gradients.png``."""
from __future__ import annotations

import re

import _kernel_probe as kp

# bqplot GridHeatMap cells of the figure whose title starts with ``prefix``
_HEAT_CELLS_JS = """
([sel, prefix]) => { for (const fig of document.querySelector(sel).querySelectorAll('.bqplot.figure')) {
  const head = fig.querySelector('text.mainheading');
  if (head && head.textContent.startsWith(prefix)) {
    const cells = [...fig.querySelectorAll('rect.heatmapcell')];
    return cells.filter(r => +r.getAttribute('width') > 0 && +r.getAttribute('height') > 0).length; } }
  return null; }
"""
# centre of the newest marker of the line labelled ``label`` in the figure titled ``title``
_DOT_JS = """
([sel, title, label]) => { for (const fig of document.querySelector(sel).querySelectorAll('.bqplot.figure')) {
  const head = fig.querySelector('text.mainheading');
  if (!head || head.textContent !== title) continue;
  for (const curve of fig.querySelectorAll('g.curve')) {
    if (curve.querySelector('text.curve_label')?.textContent !== label) continue;
    const dots = curve.querySelectorAll('path.dot');
    if (!dots.length) return null;
    dots[dots.length - 1].scrollIntoView({block: 'center'});
    const r = dots[dots.length - 1].getBoundingClientRect();
    return {x: r.x + r.width / 2, y: r.y + r.height / 2, n: dots.length}; } }
  return null; }
"""
_TOOLTIP_JS = """
() => [...document.querySelectorAll('.bqplot_mark_tooltip')]
  .filter(d => getComputedStyle(d).display !== 'none' && +getComputedStyle(d).opacity > 0 && d.innerText.trim())
  .map(d => d.innerText.replace(/\\s+/g, ' ').trim())
"""
_PANEL_ERRORS = re.compile(r"rescale_axis|reading 'length'|Could not create a view|Error displaying widget", re.I)


def _panel_errors(page) -> list[str]:
    """Uncaught errors (any) and errors logged by the widget manager for a view of the panel."""
    return [m for m in page.console_messages_log
            if m.startswith("[pageerror]") or (m.startswith("[error]") and _PANEL_ERRORS.search(m))]


def test_lab_panel_no_console_error_heatmap_drawn(page, write_notebook, notebook_dir, lab_server, jupyter_ui,
                                                  artifacts_dir):
    write_notebook("panel", kp.panel_notebook(start=True))
    server = lab_server(notebook_dir)
    jupyter_ui.open(server, "panel.ipynb")
    jupyter_ui.run_all()
    jupyter_ui.wait_idle()
    panel = kp.PanelUI(page).wait_visible()
    kp.wait_probe(notebook_dir, "running, 1 epoch", lambda p: p["epoch"] >= 1, 120, page)
    page.wait_for_timeout(1000)
    assert _panel_errors(page) == []

    # hover values: the newest validation-loss point reads "step 256 validation loss 0.xxxx"
    dot = kp.wait_until("a validation-loss marker", lambda: page.evaluate(_DOT_JS, [panel.selector, "Loss",
                                                                                "validation loss"]), 30, page=page)
    page.mouse.move(dot["x"], dot["y"])
    tips = kp.wait_until("the tooltip", lambda: page.evaluate(_TOOLTIP_JS), 10, page=page)
    print(f"tooltip: {tips}")
    assert re.fullmatch(r"step (256|512|768) validation loss \d\.\d{3,4}", tips[0]), tips
    page.mouse.move(5, 5)
    panel.open_tab("Gradients")
    cells = kp.wait_until("heat map cells drawn",
                          lambda: page.evaluate(_HEAT_CELLS_JS, [panel.selector, "log10|g| per layer"]), 20,
                          page=page)
    assert cells >= 3 * 10, cells  # 3 layers × the histogram bins
    print(f"heat map cells drawn: {cells}")
    kp.save_screenshot(panel.root, [artifacts_dir / "panel-lab-gradients.png"])
    assert _panel_errors(page) == []
    (notebook_dir / "probe.stop").touch()
    panel.button("Stop").click()
