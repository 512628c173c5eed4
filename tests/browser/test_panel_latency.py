"""How long a click on Pause / Step / Stop takes to show in a ``%%train`` panel in JupyterLab while
it trains: from the DOM click to the frame in which the status shows the new state (and, for Step,
the new step). Timed in the page (``performance.now()`` at the click, polled every animation frame).
Target (issue 11): ≤ 0.2 s (median of each button); the tests print the medians and assert looser,
functional bounds (a shared 2-core machine under load reads 210 ms for a 90 ms press), since a
timing target is a measurement, not a unit test. Measured on the 2-core test machine: Pause 210 →
~90 ms, Step 1,230 → ~50 ms, Stop 216 → ~80 ms once the run pausing/stopping wakes the updater.

While the quickstart (penguins, default settings, no paced loader) trains in JupyterLab:

* a trivial cell: Shift+Enter in ``print(1 + 1, k)`` → its output in the DOM, median of 10, target
  ≤ 0.2 s; measured 50-80 ms training, 45-80 ms idle (``execute_request`` → ``execute_reply``
  through the page's kernel connection: 30-50 ms training, 15-55 ms idle);
* the learning-rate slider: mouseup → the loop applying it (kernel wall clock, ``SETTING_CHANGED``)
  and → its "lr a→b" marker in the Loss chart's DOM, median of 6, target ≤ 0.5 s; measured ~0.01 s
  and 0.15-0.20 → ~0.1 s once the loop applying a setting wakes the panel's updater."""
from __future__ import annotations

import statistics

import _kernel_probe as kp

# click the button labelled ``label`` in the panel, then resolve with the ms until ``want`` is the state
# text and (when ``minStep`` >= 0) the status step is >= minStep
_CLICK_UNTIL_JS = """
async ([sel, label, want, minStep]) => {
  const root = document.querySelector(sel);
  const button = [...root.querySelectorAll('button.widget-button')].find(b => b.textContent.trim() === label);
  const state = () => root.querySelector('.widget-html').innerText.trim();
  const step = () => { const info = [...root.querySelectorAll('.widget-html')].map(e => e.innerText)
                                     .find(t => / step [\\d,]+/.test(t)) || '';
                       const m = info.match(/ step ([\\d,]+)/); return m ? Number(m[1].replace(/,/g, '')) : -1; };
  const t0 = performance.now();
  button.click();
  while (!(state() === want && (minStep < 0 || step() >= minStep))) {
    if (performance.now() - t0 > 10000) return {ms: null, state: state(), step: step()};
    await new Promise(r => requestAnimationFrame(r));
  }
  return {ms: performance.now() - t0, state: state(), step: step()};
}
"""


def test_lab_pause_step_stop_show_within_a_fraction_of_a_second(page, write_notebook, notebook_dir, lab_server,
                                                               jupyter_ui):
    write_notebook("panel", kp.panel_notebook(start=True))
    server = lab_server(notebook_dir)
    jupyter_ui.open(server, "panel.ipynb")
    jupyter_ui.run_all()
    jupyter_ui.wait_idle()
    panel = kp.PanelUI(page).wait_visible()
    kp.wait_probe(notebook_dir, "running", lambda p: p["state"] == "running" and p["step"] > 20, 60, page)
    kp.wait_until("the status to say running", lambda: panel.state_text() == "running", 10, page=page)
    timings: dict[str, list[float]] = {"Pause": [], "Step": [], "Resume": [], "Stop": []}
    for _ in range(3):
        r = page.evaluate(_CLICK_UNTIL_JS, [panel.selector, "Pause", "paused", -1])
        timings["Pause"].append(r["ms"])
        page.wait_for_timeout(600)
        for _ in range(3):
            before = kp.read_probe(notebook_dir)["step"]
            r = page.evaluate(_CLICK_UNTIL_JS, [panel.selector, "Step", "paused", before + 1])
            timings["Step"].append(r["ms"])
            page.wait_for_timeout(400)
        r = page.evaluate(_CLICK_UNTIL_JS, [panel.selector, "Resume", "running", -1])
        timings["Resume"].append(r["ms"])
        page.wait_for_timeout(800)
    r = page.evaluate(_CLICK_UNTIL_JS, [panel.selector, "Stop", "stopped", -1])
    timings["Stop"].append(r["ms"])
    (notebook_dir / "probe.stop").touch()
    print("click -> shown, ms:", {k: [None if v is None else round(v) for v in vs] for k, vs in timings.items()})
    assert all(v is not None for vs in timings.values() for v in vs), timings
    for label, values in timings.items():
        # a functional bound that a busy shared machine cannot trip (the bug was 1,230 ms: a press that
        # waited for the updater's idle tick); the 0.2 s target's medians are printed: 30-100 ms measured
        print(f"{label}: median {statistics.median(values):.0f} ms {[round(v) for v in values]}")
        assert statistics.median(values) <= 600, (label, values)


# ------------------------------------------------------------------------------------------------
# A trivial cell and a slider while the quickstart trains (issue 11: ≤ 0.2 s and ≤ 0.5 s)
# ------------------------------------------------------------------------------------------------

# The quickstart (penguins, 4-32-3 MLP with dropout, default settings: no thread count set, no
# paced loader), a probe, the wall time at which each setting reached the loop, and a trivial cell.
QUICKSTART = [
    """\
%load_ext nnwidgets
import json, os, threading, time
from torch import nn
from nnwidgets.datasets import penguins_species
train_loader, val_loader, features, classes = penguins_species(batch_size=16, seed=0)
""",
    """\
%%train model train_loader --val val_loader --epochs 3000 --lr 0.05 --momentum 0.9 --seed 0 --name run {extra}
model = nn.Sequential(nn.Linear(len(features), 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, len(classes)))
""",
    kp.PROBE + """\
_applied = []   # (wall time, name, new value) of each setting when the training thread applied it
def _on_setting(trainer, **info):
    _applied.append([time.time(), info.get("name"), info.get("new")])
    with open("applied.tmp", "w") as f:
        json.dump(_applied, f, default=str)
    os.replace("applied.tmp", "applied.json")
_ = run.trainer.on("setting_changed", _on_setting)
_markers_sent = []   # wall time at which the Loss chart's markers were sent to the page
_loss_markers = dict(run.views)["Training charts"].loss.markers
_send_markers = _loss_markers._send
def _timed_send():
    _send_markers()
    _markers_sent.append(time.time())
    with open("sent.tmp", "w") as f:
        json.dump(_markers_sent, f)
    os.replace("sent.tmp", "sent.json")
_loss_markers._send = _timed_send
""",
    "print(1 + 1, _k := globals().get('_k', 0) + 1)",
]

_JS_NOTEBOOK = """
(path) => {
  const app = window.jupyterapp;
  const w = app && app.shell && app.shell.currentWidget;
  return w && w.context && w.context.path === path ? w : null;
}
"""

# Watch the trivial cell (``print(1 + 1, k)``): the page records the Shift+Enter keydown and
# ``window.__cell`` resolves with the ms from it to the first frame with the output ``2 k``.
_WATCH_CELL_JS = """
([path, k]) => {
  const w = (""" + _JS_NOTEBOOK + """)(path);
  const cell = w.content.widgets.find(c => c.model.sharedModel.getSource().startsWith('print(1 + 1'));
  const out = () => { const o = cell.node.querySelector('.jp-OutputArea-output'); return o ? o.innerText.trim() : ''; };
  let t0 = null;
  const onKey = e => { if (e.key === 'Enter' && e.shiftKey && t0 === null) t0 = performance.now(); };
  document.addEventListener('keydown', onKey, {capture: true});
  window.__cell = new Promise(resolve => {
    const start = performance.now();
    const poll = () => {
      if (t0 !== null && out() === '2 ' + k) { document.removeEventListener('keydown', onKey, {capture: true});
                                              return resolve(performance.now() - t0); }
      if (performance.now() - start > 20000) return resolve(null);
      requestAnimationFrame(poll);
    };
    poll();
  });
}
"""

# The same trivial code sent straight through the page's kernel connection: ms from
# execute_request sent to the execute_reply (no rendering).
_KERNEL_EXECUTE_JS = """
async (path) => {
  const w = (""" + _JS_NOTEBOOK + """)(path);
  const kernel = w.sessionContext.session.kernel;
  const t0 = performance.now();
  await kernel.requestExecute({code: '1 + 1', store_history: false}).done;
  return performance.now() - t0;
}
"""


def _open_quickstart(page, write_notebook, notebook_dir, lab_server, jupyter_ui, extra: str):
    """The QUICKSTART notebook (``%%train`` with ``extra`` options) run in JupyterLab; its panel."""
    cells = list(QUICKSTART)
    cells[1] = cells[1].format(extra=extra)
    write_notebook("latency", cells)
    jupyter_ui.open(lab_server(notebook_dir), "latency.ipynb")
    jupyter_ui.run_all()
    jupyter_ui.wait_idle()
    return kp.PanelUI(page).wait_visible()


def _time_trivial_cells(page, k0: int, n: int) -> tuple[list[float], list[float]]:
    """Press Shift+Enter in the trivial cell ``n`` times: ms to its output, and ms from
    ``execute_request`` to ``execute_reply`` of ``1 + 1`` sent through the page's kernel connection."""
    editor = page.locator(".jp-CodeCell", has_text="print(1 + 1").first.locator(".cm-content")
    cells, direct = [], []
    for k in range(k0, k0 + n):
        page.evaluate(_WATCH_CELL_JS, ["latency.ipynb", k])
        editor.click()
        page.keyboard.press("Shift+Enter")
        cells.append(page.evaluate("() => window.__cell"))
        page.wait_for_timeout(150)
        direct.append(page.evaluate(_KERNEL_EXECUTE_JS, "latency.ipynb"))
        page.wait_for_timeout(150)
    return cells, direct


def test_lab_trivial_cell_answers_quickly_while_the_quickstart_trains(page, write_notebook, notebook_dir,
                                                                     lab_server, jupyter_ui):
    panel = _open_quickstart(page, write_notebook, notebook_dir, lab_server, jupyter_ui, "--no-start")
    idle_cells, idle_direct = _time_trivial_cells(page, 2, 10)
    panel.button("Start").click()
    kp.wait_probe(notebook_dir, "running", lambda p: p["state"] == "running" and p["step"] > 200, 60, page)
    page.wait_for_timeout(2000)
    a = kp.read_probe(notebook_dir)
    run_cells, run_direct = _time_trivial_cells(page, 12, 10)
    b = kp.read_probe(notebook_dir)
    rate = (b["step"] - a["step"]) / (b["t"] - a["t"])
    (notebook_dir / "probe.stop").touch()
    med = statistics.median
    print(f"trivial cell, ms (Shift+Enter -> output shown / execute_request -> reply): "
          f"idle {med(idle_cells):.0f} / {med(idle_direct):.0f}, training {med(run_cells):.0f} / "
          f"{med(run_direct):.0f}; training at {rate:,.0f} steps/s meanwhile")
    print("  idle:", [round(v) for v in idle_cells], "training:", [None if v is None else round(v) for v in run_cells])
    assert None not in run_cells, run_cells
    assert med(run_cells) <= 500, run_cells  # functional bound (the issue saw ~1 s); target 0.2 s: measured 50-80 ms


# Mouse-drag the handle of ``slider`` by dx and resolve-later: the page records the wall time
# (Date.now(), same clock as the kernel's time.time()) of the mouseup and of the first frame in which
# a new "lr ..." marker label is in the Loss chart.
_WATCH_MARKER_JS = """
([sel]) => {
  const fig = [...document.querySelector(sel).querySelectorAll('.bqplot.figure')]
      .find(f => (f.querySelector('text.mainheading') || {}).textContent === 'Loss');
  const labels = () => [...fig.querySelectorAll('text')].map(t => t.textContent).filter(t => /^lr /.test(t));
  const before = new Set(labels());
  window.__up = null;
  document.addEventListener('mouseup', () => { window.__up = Date.now(); }, {capture: true, once: true});
  window.__marker = new Promise(resolve => {
    const t0 = performance.now();
    const poll = () => {
      const fresh = labels().filter(t => !before.has(t));
      if (fresh.length) return resolve({t: Date.now(), label: fresh[0]});
      if (performance.now() - t0 > 20000) return resolve(null);
      requestAnimationFrame(poll);
    };
    poll();
  });
}
"""


def test_lab_slider_reaches_the_loop_and_the_chart_quickly_while_the_quickstart_trains(
        page, write_notebook, notebook_dir, lab_server, jupyter_ui):
    import json
    panel = _open_quickstart(page, write_notebook, notebook_dir, lab_server, jupyter_ui, "")
    kp.wait_probe(notebook_dir, "running", lambda p: p["state"] == "running" and p["step"] > 200, 60, page)
    page.wait_for_timeout(2000)
    slider = panel.slider("learning rate")
    handle = slider.locator(".noUi-handle").first
    handle.scroll_into_view_if_needed()
    effect, sent, marker = [], [], []
    first = kp.read_probe(notebook_dir)
    for i in range(6):
        page.evaluate(_WATCH_MARKER_JS, [panel.selector])
        box = handle.bounding_box()
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(x, y)
        page.mouse.down()
        dx = -12 if i % 2 == 0 else 10
        for k in range(1, 6):
            page.mouse.move(x + dx * k / 5, y)
            page.wait_for_timeout(20)
        page.mouse.up()
        seen = page.evaluate("() => window.__marker")
        up = page.evaluate("() => window.__up") / 1000
        applied = kp.wait_until("the setting to be applied", lambda: [
            a for a in json.loads((notebook_dir / "applied.json").read_text()) if a[0] >= up - 0.05], 10, page=page)
        sent.append(min(t for t in json.loads((notebook_dir / "sent.json").read_text()) if t >= up) - up)
        effect.append(applied[0][0] - up)
        marker.append(None if seen is None else seen["t"] / 1000 - up)
        page.wait_for_timeout(1500)
    last = kp.read_probe(notebook_dir)
    (notebook_dir / "probe.stop").touch()
    med = statistics.median
    print(f"training at {(last['step'] - first['step']) / (last['t'] - first['t']):,.0f} steps/s meanwhile")
    print(f"slider -> applied in the loop: median {1000 * med(effect):.0f} ms {[round(1000 * v) for v in effect]}; "
          f"-> marker shown: median {1000 * med([m for m in marker if m is not None]):.0f} ms "
          f"{[None if m is None else round(1000 * m) for m in marker]}; (marker sent by the kernel: "
          f"{[round(1000 * v) for v in sent]} ms)")
    assert None not in marker, marker
    # functional bound (the issue saw ~2 s); the 0.5 s target: measured 0.01 and ~0.1 s (printed above)
    assert med(effect) <= 1.0 and med(marker) <= 1.0, (effect, marker)
