"""The views of a ``%%train`` panel in JupyterLab and in Voilà, as a person sees them: no uncaught
error in the browser console, the gradient heat map drawn (in JupyterLab it stayed blank: bqplot's
colour bar threw ``Cannot read properties of undefined (reading 'length') at rescale_axis``), hover
values on the charts, a 32-unit hidden layer drawn as 32 neurons and the decision boundary's class
legend. Model: 2-32-8-3 MLP on the 3-class data of ``_kernel_probe``.
Screenshots: ``test-artifacts/panel-views-{lab,voila}-*.png``."""
from __future__ import annotations

import re

import _kernel_probe as kp
import pytest

BODY = """\
torch.manual_seed(0)
model = nn.Sequential(OrderedDict([
    ("fc1", nn.Linear(2, 32)), ("act1", nn.ReLU()),
    ("fc2", nn.Linear(32, 8)), ("act2", nn.ReLU()),
    ("out", nn.Linear(8, 3)),
]))
"""
_COLUMNS_JS = """
(sel) => [...document.querySelectorAll(sel + ' .nnw-network g.nnw-column')].map(c =>
  [Number(c.dataset.size), c.dataset.collapsed, c.querySelectorAll('circle.nnw-neuron').length])
"""
_CLASS_LEGEND_JS = """
(sel) => [...document.querySelectorAll(sel + ' .nnw-class-legend .nnw-legend-item')].map(e => e.textContent)
"""

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


@pytest.mark.parametrize("where", ["lab", "voila"])
def test_panel_views_no_console_error_heatmap_hover_network_legend(where, request, page, write_notebook,
                                                                   notebook_dir, artifacts_dir):
    nb = write_notebook("panel", [kp.SETUP, kp.train_cell(BODY), kp.PROBE])
    if where == "lab":
        server = request.getfixturevalue("lab_server")(notebook_dir)
        ui = request.getfixturevalue("jupyter_ui")
        ui.open(server, "panel.ipynb")
        ui.run_all()
        ui.wait_idle()
    else:
        kp.open_voila(page, request.getfixturevalue("voila_server")(nb))
    panel = kp.PanelUI(page).wait_visible()
    kp.wait_probe(notebook_dir, "running, 1 epoch", lambda p: p["epoch"] >= 1, 120, page)
    page.wait_for_timeout(1000)
    assert _panel_errors(page) == []

    # hover values: the newest validation-loss point reads "step 256 validation loss 0.xxxx"
    dot = kp.wait_until("a validation-loss marker", lambda: page.evaluate(_DOT_JS, [panel.selector, "Loss",
                                                                                "validation loss"]), 30, page=page)
    page.mouse.move(dot["x"], dot["y"])
    tips = kp.wait_until("the tooltip", lambda: page.evaluate(_TOOLTIP_JS), 10, page=page)
    print(f"{where} tooltip: {tips}")
    assert re.fullmatch(r"step (256|512|768) validation loss \d\.\d{3,4}", tips[0]), tips
    page.mouse.move(5, 5)

    panel.open_tab("Gradients")
    cells = kp.wait_until("heat map cells drawn",
                          lambda: page.evaluate(_HEAT_CELLS_JS, [panel.selector, "log10|g| per layer"]), 20,
                          page=page)
    print(f"{where} heat map cells drawn: {cells}")
    assert cells >= 3 * 10, cells  # 3 layers × the histogram bins
    kp.save_screenshot(panel.root, [artifacts_dir / f"panel-views-{where}-gradients.png"])

    panel.open_tab("Network")  # 32 hidden units: 32 neurons, not a collapsed bar
    cols = kp.wait_until("the network drawn", lambda: page.evaluate(_COLUMNS_JS, panel.selector), 20, page=page)
    assert cols == [[2, "false", 2], [32, "false", 32], [8, "false", 8], [3, "false", 3]], cols
    kp.save_screenshot(panel.root, [artifacts_dir / f"panel-views-{where}-network.png"])

    panel.open_tab("Decision boundary")
    legend = kp.wait_until("the class legend", lambda: page.evaluate(_CLASS_LEGEND_JS, panel.selector), 20,
                           page=page)
    assert legend == ["class 0", "class 1", "class 2"], legend
    kp.wait_until("the boundary heat map drawn", lambda: page.evaluate(
        "(sel) => !!document.querySelector(sel + ' image.heatmap')?.getAttribute('href')", panel.selector), 20, page=page)
    page.wait_for_timeout(300)
    kp.save_screenshot(panel.root, [artifacts_dir / f"panel-views-{where}-boundary.png"])
    assert _panel_errors(page) == []
    (notebook_dir / "probe.stop").touch()
    panel.button("Stop").click()
