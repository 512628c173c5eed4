"""ControlsView: buttons and sliders reach the Trainer only through its public methods.

Clicking is ``button.click()``; moving a slider is setting ``.value`` (what a browser's comm
message does on the kernel side).
"""
import time

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nnwidgets import Trainer
from nnwidgets.widgets.controls import BUTTON_STATES, NO_DROPOUT, ControlsView, available_devices

from _engine_util import wait_for



def three_class_loader(n=4000, features=4, batch_size=32):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, features, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()  # 3 classes
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True)


def mlp(dropout=False, features=4):
    layers = [nn.Linear(features, 32), nn.ReLU()] + ([nn.Dropout(0.1)] if dropout else []) + [nn.Linear(32, 3)]
    return nn.Sequential(*layers)



@pytest.fixture
def running():
    """A Trainer running in the background for far longer than a test (stopped afterwards)."""
    trainers = []

    def make(**kw):
        t = Trainer(kw.pop("model", None) or mlp(), three_class_loader(), epochs=1000, device="cpu", seed=0, **kw)
        trainers.append(t)
        t.start()
        assert wait_for(lambda: t.step >= 5, 10), "the run did not start"
        return t
    yield make
    for t in trainers:
        t.stop()
        t.wait(5)


def flags(view):
    return tuple(not b.disabled for b in (view.start_button, view.pause_button, view.step_button, view.stop_button))


def test_lr_slider_reaches_running_loop_within_half_a_second(running):
    t = running(optimizer="sgd", lr=0.01)
    view = ControlsView(t)
    view.lr.value = 0.123
    assert wait_for(lambda: all(g["lr"] == 0.123 for g in t.optimizer.param_groups), 0.5)
    ev = [e for e in t.history.event_records if e["kind"] == "setting" and e["name"] == "lr"]
    assert len(ev) == 1 and ev[0]["old"] == pytest.approx(0.01) and ev[0]["new"] == 0.123


def test_stop_button_stops_within_one_second(running):
    t = running()
    view = ControlsView(t)
    view.refresh(t)
    assert flags(view) == BUTTON_STATES["running"] == (False, True, False, True)
    view.stop_button.click()
    assert wait_for(lambda: t.state == "stopped", 1.0)
    view.refresh(t)
    assert flags(view) == (True, False, True, False)


def test_pause_then_step_runs_exactly_one_step(running):
    t = running()
    view = ControlsView(t)
    view.pause_button.click()
    assert wait_for(lambda: t.state == "paused", 2)
    view.refresh(t)
    assert flags(view) == (True, False, True, True) and view.start_button.description == "Resume"
    before = t.step
    time.sleep(0.2)
    assert t.step == before
    view.step_button.click()
    assert wait_for(lambda: t.step == before + 1 and t.state == "paused", 2)
    time.sleep(0.3)
    assert t.step == before + 1 and t.state == "paused"
    view.start_button.click()  # Start resumes a paused run
    assert wait_for(lambda: t.step > before + 5, 3) and t.state == "running"


def test_step_from_idle_runs_one_step_and_pauses():
    t = Trainer(mlp(), three_class_loader(), epochs=2, device="cpu", seed=0)
    view = ControlsView(t)
    assert flags(view) == (True, False, True, False)
    view.step_button.click()
    assert wait_for(lambda: t.state == "paused" and t.step == 1, 10)
    t.stop()
    assert wait_for(lambda: t.state == "stopped", 2)


def test_dropout_disabled_with_reason_without_dropout_layers():
    t = Trainer(mlp(dropout=False), three_class_loader(), device="cpu")
    view = ControlsView(t)
    assert view.dropout.disabled
    assert "no nn.Dropout" in view.dropout_note.value and view.dropout.tooltip == NO_DROPOUT


def test_dropout_slider_sets_p_of_every_dropout_module(running):
    model = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 32), nn.ReLU(),
                          nn.Dropout(0.2), nn.Linear(32, 3))
    t = running(model=model)
    view = ControlsView(t)
    assert not view.dropout.disabled and view.dropout_note.value == ""
    view.dropout.value = 0.3
    drops = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert wait_for(lambda: all(m.p == 0.3 for m in drops), 0.5)
    assert len(drops) == 2


def test_rejected_setting_is_notified_not_raised():
    messages = []
    model = mlp()
    t = Trainer(model, three_class_loader(), optimizer=torch.optim.Adagrad(model.parameters()), device="cpu")
    view = ControlsView(t, notify=messages.append)
    assert view.momentum.disabled and "Adagrad has no momentum" in view.momentum.tooltip
    view.momentum.value = 0.5  # what a stale browser could still send
    assert messages == ["Adagrad has no momentum setting; use optimizer='sgd' or 'adam' to tune momentum"]
    view.refresh(t)
    assert view.momentum.value == 0.0 and view.momentum.disabled  # back to the Trainer's (absent) value


def test_code_changes_are_followed_without_echo(running):
    t = running(lr=0.01, momentum=0.5)
    view = ControlsView(t)
    calls = []
    real_set = t.set
    t.set = lambda **kw: (calls.append(kw), real_set(**kw))  # instance attribute shadows the method
    real_set(lr=0.2, momentum=0.9, weight_decay=1e-3)        # "from code", not through the widget
    assert wait_for(lambda: t.settings["lr"] == 0.2, 1)
    view.refresh(t)
    assert (view.lr.value, view.momentum.value, view.weight_decay.value) == (0.2, 0.9, 1e-3)
    assert view.weight_decay_on.value is True
    assert calls == []
    changes = [e["name"] for e in t.history.event_records if e["kind"] == "setting"]
    assert sorted(changes) == ["lr", "momentum", "weight_decay"]


def test_log_sliders_hold_values_beyond_their_default_range():
    """lr 1e6 showed as 1.0e+0 (the slider's max) while the optimizer used 1e6."""
    t = Trainer(mlp(), three_class_loader(), lr=1e6, weight_decay=5.0, device="cpu")
    view = ControlsView(t)
    assert view.lr.value == 1e6 and (view.lr.min, view.lr.max) == (-5, 6)
    assert view.weight_decay.value == 5.0 and (view.weight_decay.min, view.weight_decay.max) == (-6, 1)
    assert t.settings["lr"] == 1e6 and t.settings["weight_decay"] == 5.0  # building the view set nothing
    t.set(lr=3e-8, weight_decay=2e-9)                   # from code: the next refresh widens again
    view.refresh(t)
    assert view.lr.value == pytest.approx(3e-8) and (view.lr.min, view.lr.max) == (-8, 6)
    assert view.weight_decay.value == pytest.approx(2e-9) and view.weight_decay.min == -9
    assert t.settings["lr"] == 3e-8                     # following the Trainer did not echo a set()
    view = ControlsView(Trainer(mlp(), three_class_loader(), lr=0.01, device="cpu"))
    assert (view.lr.min, view.lr.max) == (-5, 0)        # in range: the default range is kept


def test_log_sliders_are_fine_and_wide():
    """A 25 px drag moved lr from 0.02 to 0.4: steps of 0.1 decade on a ~95 px track."""
    view = ControlsView(Trainer(mlp(), three_class_loader(), device="cpu"))
    for slider in (view.lr, view.weight_decay):
        assert slider.step <= 0.05                      # one step: x1.12 at most
        assert int(slider.layout.width.removesuffix("px")) >= 400
        assert slider.readout_format == ".2e"           # 3 digits: neighbouring steps read differently
    view.lr.value = 10 ** -1.98
    assert view.lr.value == pytest.approx(0.01047, rel=1e-3)


def test_weight_decay_checkbox_means_zero():
    t = Trainer(mlp(), three_class_loader(), weight_decay=0.0, device="cpu")
    view = ControlsView(t)
    assert view.weight_decay_on.value is False
    view.weight_decay.value = 1e-3  # a value put on the slider (from code) turns weight decay on
    assert view.weight_decay_on.value is True
    assert all(g["weight_decay"] == 1e-3 for g in t.optimizer.param_groups)
    view.weight_decay_on.value = False
    assert all(g["weight_decay"] == 0.0 for g in t.optimizer.param_groups)
    view.weight_decay_on.value = True
    assert t.settings["weight_decay"] == 1e-3


def test_weight_decay_off_is_unambiguous():
    """"1.0e-4 [ ] on" did not say whether decay was applied: unchecked "apply" greys the slider."""
    t = Trainer(mlp(), three_class_loader(), weight_decay=0.0, device="cpu")
    view = ControlsView(t)
    assert view.weight_decay_on.description == "apply"
    assert view.weight_decay.disabled and "off" in view.weight_decay.tooltip
    view.weight_decay_on.value = True
    assert not view.weight_decay.disabled and t.settings["weight_decay"] == view.weight_decay.value
    view.weight_decay_on.value = False
    assert view.weight_decay.disabled and t.settings["weight_decay"] == 0.0
    t.set(weight_decay=0.01)  # from code: the refresh checks "apply" and enables the slider
    view.refresh(t)
    assert view.weight_decay_on.value and not view.weight_decay.disabled and view.weight_decay.value == 0.01
    on = ControlsView(Trainer(mlp(), three_class_loader(), weight_decay=1e-3, device="cpu"))
    assert on.weight_decay_on.value and not on.weight_decay.disabled


def test_optimizer_and_device_pickers_only_when_not_running(running):
    t = Trainer(mlp(), three_class_loader(), lr=0.05, device="cpu")
    view = ControlsView(t)
    assert not view.optimizer.disabled and not view.device.disabled
    assert view.device.options[0] == "cpu" and list(view.device.options) == available_devices()
    view.optimizer.value = "adam"
    assert isinstance(t.optimizer, torch.optim.Adam) and t.settings["lr"] == 0.05
    view.device.value = "cpu"
    r = running()
    view = ControlsView(r)
    assert view.optimizer.disabled and view.device.disabled


def test_custom_optimizer_is_shown_as_custom():
    t = Trainer(mlp(), three_class_loader(), device="cpu")
    t.set_optimizer(torch.optim.Adagrad(t.model.parameters(), lr=0.01))
    view = ControlsView(t)
    assert view.optimizer.value == "adagrad" and view.optimizer.label == "Adagrad (custom)"


def test_stop_button_stops_a_run_paused_by_blocking_fit():
    t = Trainer(mlp(), three_class_loader(), epochs=1000, device="cpu")
    t.on("batch_completed", lambda tr, **_: tr.pause(), every=20)
    t.fit()  # returns paused after 20 steps
    view = ControlsView(t)
    assert t.state == "paused" and flags(view) == (True, False, True, True)
    view.stop_button.click()
    assert t.state == "stopped"
    view.refresh(t)
    assert flags(view) == (True, False, True, False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_device_picker_moves_a_paused_run_to_cuda_and_it_continues(running):
    t = running()
    view = ControlsView(t)
    assert "cuda:0" in view.device.options
    view.pause_button.click()
    assert wait_for(lambda: t.state == "paused", 2)
    view.refresh(t)
    assert not view.device.disabled
    view.device.value = "cuda:0"
    assert all(p.device.type == "cuda" for p in t.model.parameters())
    step = t.step
    view.start_button.click()
    assert wait_for(lambda: t.step > step + 10, 10) and t.state == "running"


def test_buttons_and_pickers_follow_what_the_engine_allows(monkeypatch):
    t = Trainer(mlp(), three_class_loader(n=64), epochs=1, device="cpu")
    view = ControlsView(t)
    view.refresh(t)
    assert flags(view) == (True, False, True, False) and not view.optimizer.disabled
    monkeypatch.setattr(t, "allowed", lambda action: action in ("stop",))  # the panel only asks
    view.refresh(t)
    assert flags(view) == (False, False, False, True) and view.optimizer.disabled and view.device.disabled


def test_reinitialize_button_gives_fresh_weights_only_when_not_running(running):
    t = running(optimizer="sgd", lr=0.01)
    view = ControlsView(t)
    view.refresh(t)
    assert view.reinitialize_button.disabled                      # running: off
    t.pause()
    assert t.wait(5)
    view.refresh(t)
    assert not view.reinitialize_button.disabled
    trained = [p.detach().clone() for p in t.model.parameters()]
    view.reinitialize_button.click()
    assert all(not torch.equal(a, b) for a, b in zip(trained, t.model.parameters()))
    assert not t.optimizer.state
    ev = [e for e in t.history.event_records if e["kind"] == "setting"][-1]
    assert (ev["name"], ev["new"]) == ("weights", "reinitialized")
    assert ev["message"] == "weights reinitialized: reset_parameters() of 2 layers, optimizer state cleared"
