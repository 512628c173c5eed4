"""The live-panel scenario shared by the Voila, JupyterLab and Notebook 7 tests.

:func:`exercise_live_panel` drives a ``%%train --no-start`` panel (``_kernel_probe.panel_notebook``)
with real input — clicks, a mouse drag on the learning-rate handle — and checks every effect
where it happens: the DOM that bqplot/ipywidgets draw, and the running trainer, read through the
kernel-side probe file.
"""
from __future__ import annotations

from pathlib import Path

from _kernel_probe import (XSS_NAME, PanelUI, drag_slider, js_undefined, read_probe, save_screenshot,
                           wait_probe, wait_until)

RAW, EMA, VAL = "train loss (per step)", "train loss (EMA)", "validation loss"


def exercise_live_panel(page, folder: Path, *, hidden_name: str = XSS_NAME,
                        screenshots: list[Path] = ()) -> dict:
    """Render → Start → loss lines grow → drag the learning-rate slider (checked kernel-side)
    → [screenshot] → Stop (kernel-side and in the status) → the layer named ``hidden_name``
    shows as text. ``folder``: the kernel's cwd (where the probe writes). Returns the last probe."""
    panel = PanelUI(page).wait_visible()
    wait_probe(folder, "the trainer idle (--no-start)", lambda p: p["state"] == "idle", 60, page)

    # renders: buttons, sliders, status, charts
    for label in ("Start", "Pause", "Step", "Stop"):
        assert panel.button(label).is_visible(), label
    assert panel.button("Start").is_enabled() and panel.button("Stop").is_disabled()
    for name in ("learning rate", "momentum", "weight decay", "dropout p"):
        assert panel.slider(name).is_visible(), name
    assert panel.slider("learning rate").locator(".widget-readout").inner_text().strip() == "1.00e-2"
    assert panel.state_text() == "idle"
    for title in ("Loss", "Metrics"):
        assert panel.root.locator("text.mainheading", has_text=title).first.is_visible(), title
    assert panel.root.locator(".bqplot.figure").count() >= 2

    # Start; the loss lines gain points while the run goes on
    panel.button("Start").click()
    wait_probe(folder, "running after Start", lambda p: p["state"] == "running" and p["step"] > 0, 30, page)
    n1 = wait_until("the loss line drawn", lambda: (n := panel.line_points("Loss").get(RAW, 0)) >= 2 and n,
                    30, page=page)
    s1 = panel.shown_step()
    wait_until("the loss line to gain points",
               lambda: (n := panel.line_points("Loss").get(RAW, 0)) > n1 and n, 30, page=page)
    assert panel.shown_step() > s1 >= 1, (s1, panel.info_text())
    assert panel.line_points("Loss")[EMA] >= 2
    assert wait_until("the status to say running", lambda: panel.state_text() == "running", 10, page=page)

    # a real mouse drag on the learning-rate handle reaches the RUNNING loop within one step
    before, after = drag_slider(page, panel.slider("learning rate"), -20)
    shown = float(after)
    assert 0.001 < shown < 0.01, (before, after)  # fine: 20 px is well under a decade (steps of 0.02)
    p = wait_probe(folder, "the new lr in optimizer.param_groups",
                   lambda p: p["arrivals"] and all(lr == p["arrivals"][-1]["value"] for lr in p["lr_groups"]),
                   30, page)
    assert len(p["arrivals"]) == 1, p["arrivals"]  # one drag, one value (continuous_update=False)
    arrival = p["arrivals"][0]
    assert arrival["state"] == "running"
    assert abs(arrival["value"] - shown) <= 0.006 * shown, (arrival, after)  # readout has 3 digits
    assert p["lr_widget"] == arrival["value"]
    lr_events = [e for e in p["events"] if e["kind"] == "setting" and e["name"] == "lr"]
    assert len(lr_events) == 1, lr_events
    assert lr_events[0]["old"] == 0.01 and lr_events[0]["new"] == arrival["value"]
    assert lr_events[0]["step"] <= arrival["step"] + 1, (lr_events, arrival)  # within one step
    wait_until("a marker for the lr change on the loss chart",
               lambda: panel.root.locator(".bqplot.figure", has_text="Loss").locator("text.label",
                                                                                      has_text="lr").count(),
               20, page=page)

    # validation loss per epoch (256 steps)
    wait_until("validation loss with 3 points", lambda: panel.line_points("Loss").get(VAL, 0) >= 3, 60, page=page)
    assert set(panel.legend("Loss")) >= {RAW, EMA, VAL}, panel.legend("Loss")
    if screenshots:  # mid-training, lines on the charts
        save_screenshot(panel.root, screenshots)

    # Stop: kernel-side, in the status line, and the step count freezes
    assert read_probe(folder)["state"] == "running"
    panel.button("Stop").click()
    p = wait_probe(folder, "stopped after Stop", lambda p: p["state"] == "stopped", 30, page)
    wait_until("the status to say stopped", lambda: panel.state_text() == "stopped", 20, page=page)
    page.wait_for_timeout(600)
    last = read_probe(folder)
    assert last["state"] == "stopped" and last["step"] == p["step"], (p["step"], last["step"])
    wait_until("the shown step to match the stopped run", lambda: panel.shown_step() == p["step"], 10, page=page)
    assert panel.button("Start").is_enabled() and panel.button("Stop").is_disabled()

    # a layer name full of markup is shown as text, nothing runs
    panel.open_tab("Parameters")
    cell = panel.root.locator(".widget-html", has_text=hidden_name).first
    cell.wait_for(state="visible", timeout=20_000)
    assert cell.inner_text().strip() == hidden_name
    assert panel.root.locator("img").count() == 0
    assert js_undefined(page, "__xss")
    return last
