"""How long a click on Pause / Step / Stop takes to show in a ``%%train`` panel in JupyterLab while
it trains: from the DOM click to the frame in which the status shows the new state (and, for Step,
the new step). Timed in the page (``performance.now()`` at the click, polled every animation frame).
Target (issue 11): ≤ 0.2 s (median of each button). Measured on the 2-core test machine: Pause 210 →
~90 ms, Step 1,230 → ~50 ms, Stop 216 → ~80 ms once the run pausing/stopping wakes the updater."""
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
        assert statistics.median(values) <= 200, (label, values)  # the target; measured 30-100 ms
