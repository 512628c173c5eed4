"""TrainingPanel: composition, the single throttled updater thread, notices, close()."""
import html
import importlib.util
import threading
import time

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import nnwidgets
from nnwidgets import Trainer
from nnwidgets.widgets.panel import TrainingPanel, panel

from _engine_util import wait_for

EVIL = "<img src=x onerror=alert(1)>"



def loader(n=4000, features=4, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, features, generator=g).to(dtype)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    return DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)


def mlp(features=4):
    return nn.Sequential(nn.Linear(features, 32), nn.ReLU(), nn.Linear(32, 3))



class CountingView:
    """A tab that records when it was refreshed."""

    def __init__(self, fail=False):
        import ipywidgets
        self.widget, self.times, self.fail = ipywidgets.Label(), [], fail

    def refresh(self, trainer):
        self.times.append(time.perf_counter())
        if self.fail:
            raise RuntimeError(f"broken view {EVIL}")


@pytest.fixture
def make():
    made = []

    def build(trainer, **kw):
        p = TrainingPanel(trainer, **kw)
        made.append(p)
        return p
    yield build
    for p in made:
        p.trainer.stop()
        p.close()
        p.trainer.wait(5)


def test_panel_is_a_vbox_with_controls_status_and_tabs(make):
    p = make(Trainer(mlp(), loader(), device="cpu"))
    import ipywidgets
    assert isinstance(p, ipywidgets.VBox)
    assert p.children == (p.controls.widget, p.status.widget, p.tab)
    titles = [t for t, _ in p.views]
    assert "Parameters" in titles
    for module, title in (("charts", "Training charts"), ("gradients", "Gradients"), ("network", "Network")):
        if importlib.util.find_spec(f"nnwidgets.widgets.{module}") is not None:
            assert title in titles
    assert [p.tab.get_title(i) for i in range(len(p.views))] == titles
    assert "Decision boundary" not in titles  # 4 features
    assert nnwidgets.TrainingPanel is TrainingPanel


def test_network_tab_always_and_boundary_tab_for_two_features(make):
    from nnwidgets.widgets.boundary import DecisionBoundaryView
    from nnwidgets.widgets.network import NetworkView
    data = loader(features=2)
    p = make(Trainer(mlp(2), data, device="cpu"), charts=False, gradients=False, parameters=False)
    assert [t for t, _ in p.views] == ["Network", "Decision boundary"]
    assert isinstance(p.views[0][1], NetworkView) and isinstance(p.views[1][1], DecisionBoundaryView)
    q = make(Trainer(mlp(), loader(), device="cpu"), charts=False, gradients=False, parameters=False)
    assert [t for t, _ in q.views] == ["Network"]


def test_panel_convenience_builds_but_does_not_start(make):
    p = panel(mlp(), loader(), None, epochs=3, lr=0.05, device="cpu")
    try:
        assert isinstance(p, TrainingPanel) and isinstance(p.trainer, Trainer)
        assert p.trainer.state == "idle" and p.trainer.settings["lr"] == 0.05 and p.trainer.epochs == 3
        time.sleep(0.3)
        assert p.trainer.step == 0
    finally:
        p.close()


def test_update_interval_below_0_2_s_is_refused():
    with pytest.raises(ValueError, match=r"update_interval_s must be >= 0.2 s"):
        TrainingPanel(Trainer(mlp(), loader(), device="cpu"), update_interval_s=0.1)


def test_tab_refreshes_at_1_hz_and_status_at_5_hz_while_running(make):
    t = Trainer(mlp(), loader(), epochs=1000, device="cpu")
    p = make(t, charts=False, gradients=False, parameters=False)
    view = CountingView()
    p.add_tab("count", view)
    p.tab.selected_index = len(p.views) - 1
    t.start()
    assert wait_for(lambda: t.step > 5, 10)
    n0, start = p.refreshes, time.perf_counter()
    time.sleep(3.0)
    window = [x for x in view.times if start <= x <= start + 3.0]
    assert 2 <= len(window) <= 4                     # the tab shown: <= 1 Hz (VIEW_INTERVAL_S)
    assert 10 <= p.refreshes - n0 <= 16              # status and controls: <= 5 Hz
    n = len(view.times)
    p.controls.pause_button.click()                  # a click refreshes the tab at once
    assert wait_for(lambda: len(view.times) > n, 0.5)
    with pytest.raises(ValueError, match=r"view_interval_s must be >= update_interval_s \(0.5 s\), got 0.3"):
        TrainingPanel(t, update_interval_s=0.5, view_interval_s=0.3)


def test_refresh_rate_is_at_most_5_hz_while_running(make):
    t = Trainer(mlp(), loader(), epochs=1000, device="cpu")
    p = make(t, charts=False, gradients=False, parameters=False, view_interval_s=0.2)
    view = CountingView()
    p.add_tab("count", view)
    p.tab.selected_index = len(p.views) - 1
    t.start()
    assert wait_for(lambda: t.step > 5, 10)
    start = time.perf_counter()
    time.sleep(2.0)
    window = [x for x in view.times if start <= x <= start + 2.0]
    assert 4 <= len(window) <= 10  # 2 s at <= 5 Hz
    gaps = [b - a for a, b in zip(view.times, view.times[1:])]
    assert min(gaps) >= 0.2
    assert [th.name for th in threading.enumerate()].count("nnwidgets-panel-updater") >= 1
    assert "steps/s" in p.status.info.value and "overhead" in p.status.info.value
    assert 0 <= p.status.ui_share < 1 and p.status.steps_per_s > 0
    remaining = t.steps_per_epoch * t.target_epochs - t.step
    assert p.status.eta_s == pytest.approx(remaining / p.status.steps_per_s, rel=0.2) and "ETA" in p.status.info.value


def test_panel_cpu_share_counts_only_running_time(make):
    """After a KeyboardInterrupt the status read "107.4 % (panel 99.9 %)": one refresh's CPU over
    that refresh's own wall time. Turns when the run is not running are not counted at all."""
    t = Trainer(mlp(), loader(), epochs=1000, device="cpu")
    p = make(t)  # every tab: the first refresh is the most expensive one
    assert wait_for(lambda: p.refreshes >= 1, 5)
    time.sleep(1.2)
    assert p.status.ui_share == 0.0
    t.start()
    assert wait_for(lambda: p.status.ui_share > 0.0, 10)
    t.stop()
    assert t.wait(10) and t.state == "stopped"
    # a turn that saw the stopped run (the stop wakes the updater at once, often before wait() returns)
    assert wait_for(lambda: "stopped" in p.status.state.value, 5)
    time.sleep(0.3)
    share = p.status.ui_share
    assert 0.0 < share <= 1.0
    time.sleep(1.2)                                   # idle: the running value is kept
    assert p.status.ui_share == share


def test_a_failing_view_is_logged_once_and_the_thread_lives(make):
    t = Trainer(mlp(), loader(), epochs=1000, device="cpu")
    p = make(t, charts=False, gradients=False, parameters=False)
    bad, good = CountingView(fail=True), CountingView()
    p.add_tab("bad", bad)
    p.add_tab("good", good)
    p.tab.selected_index = len(p.views) - 2          # the failing tab shown first
    t.start()
    assert wait_for(lambda: len(bad.times) >= 3, 5)
    p.tab.selected_index = len(p.views) - 1
    assert wait_for(lambda: len(good.times) >= 4, 5)
    assert p._thread.is_alive()
    logged = [m for k, m in p.status.messages if "broken view" in m]
    assert logged == [f"refreshing the bad view failed: RuntimeError: broken view {EVIL} "
                      "(the panel keeps updating the others)"]
    assert html.escape(EVIL) in p.status.notices.value and EVIL not in p.status.notices.value


def test_hidden_tabs_cost_nothing_and_catch_up_when_shown(make):
    t = Trainer(mlp(), loader(), epochs=1000, device="cpu")
    p = make(t, charts=False, gradients=False, parameters=False)
    shown, hidden = CountingView(), CountingView()
    p.add_tab("shown", shown)
    p.add_tab("hidden", hidden)
    p.tab.selected_index = len(p.views) - 2
    t.start()
    assert wait_for(lambda: len(shown.times) >= 3, 10)
    assert hidden.times == []                       # never refreshed while hidden
    p.tab.selected_index = len(p.views) - 1
    assert wait_for(lambda: len(hidden.times) >= 1, 1.0)  # selected: refreshed at once (woken)
    n = len(shown.times)
    time.sleep(0.6)
    assert len(shown.times) == n
    t.stop()


def test_final_refresh_after_the_run_then_idle(make):
    t = Trainer(mlp(), loader(n=640), epochs=2, device="cpu")
    p = make(t, charts=False, gradients=False, parameters=False)
    view = CountingView()
    p.add_tab("count", view)
    p.tab.selected_index = len(p.views) - 1
    t.start()
    assert t.wait(20) and t.state == "completed"
    assert wait_for(lambda: "completed" in p.status.state.value, 2)
    assert p.status.progress.value == p.status.progress.max == 40
    assert not p.controls.start_button.disabled and p.controls.stop_button.disabled
    time.sleep(0.3)
    n = len(view.times)
    time.sleep(1.5)
    assert len(view.times) == n  # nothing changed: no refresh
    t.set(lr=0.5)                # a change from code is still picked up
    assert wait_for(lambda: p.controls.lr.value == 0.5, 2)


def test_notice_box_shows_float64_cast(make):
    t = Trainer(mlp(), loader(n=320, dtype=torch.float64), epochs=1, device="cpu")
    p = make(t, charts=False, gradients=False)
    t.start()
    assert t.wait(20) and t.state == "completed"
    assert wait_for(lambda: "float64" in p.status.notices.value, 3)
    kinds = [k for k, m in p.status.messages if "float64" in m]
    assert kinds == ["notice"]


def test_error_message_is_escaped_and_names_the_fix(make):
    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            raise ValueError(f"bad input {EVIL}: reshape x to (N, 4)")

    t = Trainer(Broken(), loader(n=320), epochs=1, device="cpu")
    p = make(t)
    t.start()
    assert t.wait(20) and t.state == "failed"
    assert wait_for(lambda: "Training failed" in p.status.failure.value, 3)
    box = p.status.failure.value
    assert html.escape(EVIL) in box and EVIL not in box
    assert "ValueError during checking the first batch" in box and "reshape x to (N, 4)" in box and "Traceback" not in box
    assert html.escape(EVIL) in p.status.notices.value and EVIL not in p.status.notices.value


def test_controls_in_the_panel_reach_the_loop_and_errors_go_to_notices(make):
    t = Trainer(mlp(), loader(), epochs=1000, device="cpu", lr=0.01)
    p = make(t)
    p.controls.start_button.click()
    assert wait_for(lambda: t.state == "running" and t.step > 5, 10)
    p.controls.lr.value = 0.123
    assert wait_for(lambda: all(g["lr"] == 0.123 for g in t.optimizer.param_groups), 0.5)
    assert wait_for(lambda: not p.controls.stop_button.disabled, 1)
    p.controls.dropout.value = 0.5  # no dropout layer: the reason goes to the notices box
    assert any("no nn.Dropout layer" in m for _, m in p.status.messages)
    p.controls.stop_button.click()
    assert wait_for(lambda: t.state == "stopped", 1.0)


def test_a_setting_applied_by_the_loop_shows_its_marker_at_once(make):
    # trainer.set() from code: no click wakes the updater; the loop applying it does (before: the
    # marker waited for the tab's next 1 Hz refresh, 0-1 s, and a slider's own wake often came
    # before the loop had applied the setting)
    t = Trainer(mlp(), loader(), epochs=1000, device="cpu", lr=0.01)
    p = make(t, gradients=False, parameters=False)
    applied = []
    t.on("setting_changed", lambda _t, **info: applied.append(time.perf_counter()))
    chart = p.views[0][1].loss
    t.start()
    assert wait_for(lambda: t.step > 5, 10)
    delays = []
    for i, lr in enumerate((0.02, 0.03, 0.04, 0.05, 0.06)):
        time.sleep(0.37 * (i + 1) % 1.0)  # at different points of the tab's 1 s refresh period
        t.set(lr=lr)
        assert wait_for(lambda: any(x.endswith(f"\u2192{lr:g}") for x in chart.markers.texts), 2.0), chart.markers.texts
        delays.append(time.perf_counter() - applied[-1])
    assert max(delays) <= 0.25, delays  # measured 0.002-0.01 s; before the fix up to ~0.9 s
    assert t.state == "running"


def test_close_joins_within_a_second_and_training_continues(make):
    t = Trainer(mlp(), loader(), epochs=1000, device="cpu")
    p = make(t)
    t.start()
    assert wait_for(lambda: t.step > 5, 10)
    time.sleep(0.3)
    t0 = time.perf_counter()
    p.close()
    assert time.perf_counter() - t0 < 1.0
    assert not p._thread.is_alive()
    step = t.step
    assert wait_for(lambda: t.step > step + 20, 5) and t.state == "running"


# ---------------------------------------------------------------- nobody watching
def test_pause_unseen_is_off_outside_voila_and_120_s_inside(make, monkeypatch):
    for k in ("VOILA_KERNEL_ID", "VOILA_BASE_URL", "VOILA_REQUEST_URL"):
        monkeypatch.delenv(k, raising=False)
    p = make(Trainer(mlp(), loader(200), epochs=1))
    assert p.pause_unseen_s is None and p.presence is None and len(p.children) == 3
    monkeypatch.setenv("VOILA_KERNEL_ID", "abc")
    q = make(Trainer(mlp(), loader(200), epochs=1))
    assert q.pause_unseen_s == 120.0 and q.presence.widget in q.children
    assert q.presence.widget.interval_ms == 5000
    with pytest.raises(ValueError, match=r"pause_unseen_s must be a number of seconds > 0, None or 'auto', got 0"):
        TrainingPanel(Trainer(mlp(), loader(200), epochs=1), pause_unseen_s=0)


def test_a_run_no_page_has_shown_is_never_paused(make):
    t = Trainer(mlp(), loader(), epochs=100_000, lr=0.01)
    p = make(t, pause_unseen_s=0.3)
    t.start()
    time.sleep(1.0)
    assert t.state == "running" and p.presence.unseen_for() is None


def test_the_run_pauses_once_when_the_pages_stop_pinging(make):
    t = Trainer(mlp(), loader(), epochs=100_000, lr=0.01)
    p = make(t, pause_unseen_s=0.6)
    assert p.presence.widget.interval_ms == 250  # pause_unseen_s / 4, at least 0.25 s
    t.start()
    for _ in range(8):  # a page pings: the run goes on
        p.presence._on_msg(p.presence.widget, {"type": "ping"}, [])
        time.sleep(0.15)
    assert t.state == "running" and p.presence.pings == 8
    assert wait_for(lambda: t.state == "paused", 3)  # then the page is gone
    notices = [m for kind, m in p.status.messages if m.startswith("Paused: no page")]
    assert len(notices) == 1 and "Resume continues from there" in notices[0], notices
    t.resume()  # a Resume from Python is obeyed, not undone by the same silence
    assert wait_for(lambda: t.state == "running", 3)
    time.sleep(0.8)
    assert t.state == "running"
