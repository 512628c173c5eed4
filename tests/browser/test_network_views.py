"""The Network and Decision boundary tabs of the panel in Voila and JupyterLab, in a real browser.

One notebook (``_kernel_probe.network_notebook``): a 2-8-8-3 MLP on 2-feature, 3-class synthetic
data (panel ``run``, waiting for Start) and a small conv net with a module named
``<script>…</script><b>…</b>`` (panel ``conv``). Checked from the DOM that ``js/network.js`` and
bqplot produce:

* the MLP is drawn as 4 columns with 2, 8, 8, 3 neuron circles and 2·8 + 8·8 + 8·3 = 104 edges,
  named after the layers; after Start the drawing follows the training steps (the step shown
  grows and edge widths/colours change);
* the decision-boundary heat map is drawn at step 0 and is redrawn with a new picture and a
  newer step while the run goes on;
* the conv net is drawn as one block per leaf module, the markup-laden name shown literally
  and never parsed (no script/img/b element appears, nothing runs).

Screenshots (README): ``network.png``, ``boundary.png`` (see ``kp.screenshot_paths``).
"""
from __future__ import annotations

import re

import _kernel_probe as kp

MLP_SIZES = [2, 8, 8, 3]
MLP_EDGES = 2 * 8 + 8 * 8 + 8 * 3

_NETWORK_JS = """
(root) => {
  const net = document.querySelector(root + ' .nnw-network');
  if (!net) return null;
  const attr = (e, names) => names.map(n => e.getAttribute(n)).join(' ');
  return {
    kind: net.dataset.kind, step: Number(net.dataset.step), version: Number(net.dataset.version),
    columns: [...net.querySelectorAll('g.nnw-column')].map(c => ({
      name: c.dataset.name, size: Number(c.dataset.size), collapsed: c.dataset.collapsed,
      circles: c.querySelectorAll('circle.nnw-neuron').length})),
    names: [...net.querySelectorAll('.nnw-label-name')].map(t => t.textContent),
    edges: Object.fromEntries([...net.querySelectorAll('line.nnw-edge')].map(
      e => [attr(e, ['x1', 'y1', 'x2', 'y2']), attr(e, ['stroke', 'stroke-width'])])),
    n_edges: net.querySelectorAll('line.nnw-edge').length,
    blocks: [...net.querySelectorAll('.nnw-block')].map(b => ({
      name: b.dataset.name, shown: b.querySelector('.nnw-block-name').textContent,
      type: b.querySelector('.nnw-block-type').textContent})),
    markup: net.querySelectorAll('script, img, b').length,
  };
}
"""

_HEATMAP_JS = """
(root) => {
  const img = document.querySelector(root + ' image.heatmap');
  if (!img) return null;
  return img.getAttribute('href') || img.getAttribute('xlink:href') || '';
}
"""


def _network(page, panel) -> dict | None:
    return page.evaluate(_NETWORK_JS, panel.selector)


def _changed_edges(a: dict, b: dict) -> int:
    """Edges (same endpoints) whose colour or width differs between two drawings."""
    return sum(1 for k, v in a["edges"].items() if k in b["edges"] and b["edges"][k] != v)


def _boundary(page, panel) -> tuple[str, int]:
    """(heat-map image data, step in the status line under it; -1 if not shown)."""
    href = page.evaluate(_HEATMAP_JS, panel.selector) or ""
    label = panel.root.locator(".widget-label", has_text="predicted class on a")
    m = re.match(r"step (\d+): predicted class on a 80×80 grid", label.first.inner_text().strip()) \
        if label.count() else None
    return href, int(m.group(1)) if m else -1


def exercise_network_views(page, folder, artifacts_dir, readme: bool) -> None:
    """The scenario of the module docstring; ``readme``: the screenshots may update docs/images."""
    panel = kp.PanelUI(page).wait_visible()
    probe = kp.wait_probe(folder, "the MLP panel idle", lambda p: p["state"] == "idle", 60, page)
    assert probe["tabs"] == ["Training charts", "Gradients", "Parameters", "Network", "Decision boundary"]

    # decision boundary at step 0, training points on top
    panel.open_tab("Decision boundary")
    heat0, step0 = kp.wait_until("the heat map at step 0", lambda: (b := _boundary(page, panel))[0] and b[1] == 0 and b,
                                 30, page=page)
    assert heat0.startswith("data:image/")
    assert panel.root.locator("path.dot").count() >= 1000  # 2,048 training points, ≤ 2,000 drawn

    # network at step 0: 2-8-8-3 columns of circles, all edges
    panel.open_tab("Network")
    net0 = kp.wait_until("the network diagram", lambda: (n := _network(page, panel)) and n["columns"] and n,
                         30, page=page)
    assert net0["kind"] == "mlp" and net0["step"] == 0
    assert [c["size"] for c in net0["columns"]] == MLP_SIZES
    assert [c["circles"] for c in net0["columns"]] == MLP_SIZES
    assert all(c["collapsed"] == "false" for c in net0["columns"])
    assert net0["names"] == ["input", "fc1", "fc2", "out"]
    assert net0["n_edges"] == len(net0["edges"]) == MLP_EDGES
    assert panel.root.locator(".nnw-network circle.nnw-neuron").first.is_visible()

    # Start: the diagram follows training
    panel.button("Start").click()
    kp.wait_probe(folder, "running after Start", lambda p: p["state"] == "running" and p["step"] > 0, 30, page)
    net1 = kp.wait_until("the diagram to redraw after training steps",
                         lambda: (n := _network(page, panel))["step"] > 0 and _changed_edges(net0, n) and n,
                         30, page=page)
    net2 = kp.wait_until("a later redraw with other edge weights",
                         lambda: (n := _network(page, panel))["step"] > net1["step"] and _changed_edges(net1, n) and n,
                         30, page=page)
    assert net2["n_edges"] == MLP_EDGES and [c["circles"] for c in net2["columns"]] == MLP_SIZES
    page.wait_for_timeout(300)
    kp.save_screenshot(panel.root, kp.screenshot_paths(artifacts_dir, "network.png", readme))

    # the heat map is redrawn as the run goes on
    panel.open_tab("Decision boundary")
    heat1, step1 = kp.wait_until("a new heat map after training steps",
                                 lambda: (b := _boundary(page, panel))[1] > 0 and b[0] != heat0 and b, 30, page=page)
    heat2, step2 = kp.wait_until("the heat map to change again while training runs",
                                 lambda: (b := _boundary(page, panel))[1] > step1 and b[0] != heat1 and b,
                                 30, page=page)
    kp.save_screenshot(panel.root, kp.screenshot_paths(artifacts_dir, "boundary.png", readme))
    panel.button("Stop").click()
    kp.wait_probe(folder, "stopped after Stop", lambda p: p["state"] == "stopped", 30, page)

    # a conv net: one block per leaf module; the markup-laden name is text
    conv = kp.PanelUI(page, kp.CONV_PANEL_CLASS).wait_visible()
    tabs = conv.root.locator(".lm-TabBar-tab").all_inner_texts()
    assert [t.strip() for t in tabs] == ["Training charts", "Gradients", "Parameters", "Network"]
    conv.open_tab("Network")
    net = kp.wait_until("the block view", lambda: (n := _network(page, conv)) and n["blocks"] and n, 30, page=page)
    assert net["kind"] == "blocks"
    assert [b["name"] for b in net["blocks"]] == ["conv", "relu", kp.SCRIPT_NAME, "flat", "head"]
    assert [b["shown"] for b in net["blocks"]] == ["conv", "relu", kp.SCRIPT_NAME, "flat", "head"]
    assert [b["type"] for b in net["blocks"]] == ["Conv2d", "ReLU", "MaxPool2d", "Flatten", "Linear"]
    assert net["markup"] == 0
    assert conv.root.locator(".nnw-block", has_text=kp.SCRIPT_NAME).first.is_visible()
    assert kp.js_undefined(page, "__xss2") and kp.js_undefined(page, "__xss")


def test_voila_network_diagram_and_decision_boundary(page, write_notebook, voila_server, artifacts_dir):
    nb = write_notebook("network", kp.network_notebook())
    server = voila_server(nb)
    kp.open_voila(page, server)
    exercise_network_views(page, nb.parent, artifacts_dir, readme=True)


def test_lab_network_diagram_and_decision_boundary(page, write_notebook, notebook_dir, lab_server, jupyter_ui,
                                                   artifacts_dir):
    write_notebook("network", kp.network_notebook())
    server = lab_server(notebook_dir)
    jupyter_ui.open(server, "network.ipynb")
    jupyter_ui.run_all()
    jupyter_ui.wait_idle()
    assert jupyter_ui.errors() == []
    exercise_network_views(page, notebook_dir, artifacts_dir / "lab", readme=False)
    assert jupyter_ui.errors() == []
