"""Steering a ``nnwidgets.Trainer`` from other threads: start/pause/resume/step_once/stop/wait,
live settings through ``set()``, device and optimizer changes while paused, restarts.

Other threads are real ``threading.Thread``s (as a widget observer on a kernel subshell
would be). Where a test needs a change to land at a known step, it makes the change from a
thread started inside a ``BATCH_COMPLETED`` handler, so the training thread is provably
between two steps; an optimizer step pre-hook records what each step really used.
"""
from __future__ import annotations

import copy
import threading
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nnwidgets as nw
from nnwidgets.events import Event

from _engine_util import events, oracle, same_params

CPU = dict(device="cpu")


def _data(n=5, seed=0, width=8, classes=3, batch=16):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(batch, width, generator=g), torch.randint(0, classes, (batch,), generator=g))
            for _ in range(n)]


def _mlp(dropout=None):
    torch.manual_seed(0)
    layers = [nn.Linear(8, 16), nn.ReLU()] + ([nn.Dropout(dropout)] if dropout is not None else [])
    return nn.Sequential(*layers, nn.Linear(16, 3))


def _until(cond, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def _in_thread(fn, *args, **kwargs):
    """Call ``fn`` on another thread and wait for it; re-raise what it raised."""
    box = {}

    def run():
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001
            box["error"] = e
    th = threading.Thread(target=run)
    th.start()
    th.join(10)
    if "error" in box:
        raise box["error"]
    return box.get("value")


@pytest.fixture
def long_run():
    """A background run that will not finish on its own; stopped at teardown."""
    trainers = []

    def make(**kw):
        t = nw.Trainer(_mlp(), _data(50), epochs=10_000, grad_stats=False, **CPU, **kw)
        trainers.append(t)
        return t
    yield make
    for t in trainers:
        t.stop()
        t.wait(5)


# ---------------------------------------------------------------- start / pause / resume / step / stop
def test_pause_resume_step_once_stop_from_other_threads(long_run):
    t = long_run()
    t.start()
    assert _until(lambda: t.step >= 5) and t.state == "running"
    _in_thread(t.pause)
    assert t.wait(5) and t.state == "paused"
    s = t.step
    time.sleep(0.1)
    assert t.step == s and t.history.n_steps == s                   # flushed at the pause
    _in_thread(t.step_once)
    assert _until(lambda: t.step == s + 1)
    time.sleep(0.1)
    assert t.step == s + 1 and t.state == "paused"
    _in_thread(t.resume)
    assert _until(lambda: t.step > s + 5) and t.state == "running"
    t0 = time.perf_counter()
    _in_thread(t.stop)
    assert t.wait(2) and time.perf_counter() - t0 < 0.5
    assert t.state == "stopped" and t.history.n_steps == t.step
    names = [e["name"] for e in events(t, "state")]
    assert names[:2] == ["paused", "resumed"] and names[-1] == "stopped"


def test_step_once_on_an_idle_trainer_runs_exactly_one_step_then_pauses():
    t = nw.Trainer(_mlp(), _data(3), epochs=1, **CPU)
    t.step_once()
    assert t.wait(5) and t.state == "paused" and t.step == 1 and t.history.n_steps == 1
    t.step_once()
    assert _until(lambda: t.step == 2) and t.wait(5) and t.state == "paused"
    t.resume()
    assert t.wait(5) and t.state == "completed" and t.step == 3


def test_step_once_paused_at_an_epoch_end_takes_the_next_epochs_first_step():
    """Paused after an epoch's last batch, one Step only ended the epoch: the epoch count moved,
    the step count did not, and the press was lost."""
    t = nw.Trainer(_mlp(), _data(3), epochs=5, grad_stats=False, **CPU)
    t.on(Event.BATCH_COMPLETED, lambda tr, step, **_: tr.pause() if step == 3 else None)  # the last batch of epoch 0
    t.start()
    assert t.wait(5) and t.state == "paused" and t.step == 3
    t.step_once()
    assert _until(lambda: t.step == 4) and t.wait(5) and t.state == "paused"
    assert t.step == 4 and t.epoch == 1 and t.history.n_steps == 4
    t.stop()
    assert t.wait(5)


def test_blocking_fit_returns_when_paused_from_another_thread_and_fit_continues():
    model = _mlp()
    init = copy.deepcopy(model)
    data = _data(4)
    t = nw.Trainer(model, data, epochs=3, lr=0.05, grad_stats=False, **CPU)
    t.on(Event.BATCH_COMPLETED, lambda tr, step, **_: _in_thread(tr.pause) if step == 7 else None)
    t.fit()
    assert t.state == "paused" and t.step == 7 and t.history.n_steps == 7
    t.fit(epochs=1)                                  # epochs count from the current, unfinished one
    assert t.state == "completed" and t.step == 8 and t.epoch == 2
    t.fit()                                          # a completed run: `epochs` (3) more
    assert t.state == "completed" and t.step == 20 and t.epoch == 5
    ref, losses = oracle(init, data, F.cross_entropy, t.step, lr=0.05)
    assert same_params(model, ref) and np.allclose(t.history.steps.loss, losses, rtol=1e-6)


def test_wait_with_timeout_returns_false_while_running(long_run):
    t = long_run()
    t.start()
    t0 = time.perf_counter()
    assert t.wait(0.2) is False and 0.15 < time.perf_counter() - t0 < 2


def test_a_second_start_or_fit_while_running_raises(long_run):
    t = long_run()
    t.start()
    with pytest.raises(RuntimeError, match="the trainer is already running; use pause"):
        t.start()
    with pytest.raises(RuntimeError, match="already running"):
        t.fit()
    assert t.state == "running"


def test_a_second_trainer_on_a_model_trained_in_the_background_is_refused_before_touching_it(long_run):
    t = long_run()
    t.start()
    assert _until(lambda: t.step >= 3)
    for call in ("fit", "start"):
        other = nw.Trainer(t.model, _data(2), epochs=1, lr=0.05, grad_stats=False, **CPU)
        with pytest.raises(RuntimeError, match=r"this model is being trained by another Trainer \(running, "
                                               r"epoch \d+, step \d+\); stop it first \(other.stop\(\)\) or pause"):
            getattr(other, call)()
        assert other.state == "idle" and other.step == 0 and len(other.history.steps) == 0
        assert other.loss_fn is None  # not even the first batch was checked
    time.sleep(0.2)
    assert t.state == "running" and t.error is None


def test_the_first_run_survives_a_refused_second_trainer_and_its_own_resume_is_allowed(long_run):
    t = long_run()
    t.start()
    assert _until(lambda: t.step >= 3)
    other = nw.Trainer(t.model, _data(2), epochs=1, lr=0.05, grad_stats=False, **CPU)
    with pytest.raises(RuntimeError, match="being trained by another Trainer"):
        other.fit()
    time.sleep(0.2)
    assert t.state == "running" and t.error is None
    t.pause()
    assert t.wait(5)
    t.start()  # its own resume
    s = t.step
    assert _until(lambda: t.step > s + 2) and t.state == "running"
    t.stop()
    assert t.wait(5) and t.state == "stopped"
    other.fit()  # once the first run stopped, the second Trainer may train the model
    assert other.state == "completed"
    t.fit(epochs=1)  # and the first again, once the second is done
    assert t.state == "completed"


def test_a_run_paused_in_the_background_lets_another_trainer_train_and_cannot_resume_meanwhile(long_run):
    t = long_run()
    t.start()
    assert _until(lambda: t.step >= 3)
    t.pause()
    assert t.wait(5) and t.state == "paused"
    other = nw.Trainer(t.model, _data(50), epochs=10_000, grad_stats=False, **CPU)
    other.start()
    assert _until(lambda: other.step >= 3)
    for resume in (t.resume, t.start, t.step_once):
        with pytest.raises(RuntimeError, match="being trained by another Trainer"):
            resume()
        assert t.state == "paused"
    other.stop()
    assert other.wait(5) and other.error is None
    t.resume()
    s = t.step
    assert _until(lambda: t.step > s + 2) and t.error is None


def test_the_registry_of_live_runs_forgets_ended_runs_and_dead_models():
    import gc
    import weakref
    from nnwidgets.engine import owners
    model = _mlp()
    t = nw.Trainer(model, _data(2), epochs=1, grad_stats=False, **CPU)
    seen = []
    t.on(Event.BATCH_COMPLETED, lambda tr, **_: seen.append(owners.live_runs(model)))
    t.fit()
    assert seen and all(runs == [t] for runs in seen)
    assert owners.live_runs(model) == []
    ref = weakref.ref(model)
    del t, model, seen
    gc.collect()
    assert ref() is None


def test_restarting_a_completed_run_continues_step_counting_and_appends_history():
    model = _mlp()
    init = copy.deepcopy(model)
    data = _data(3)
    t = nw.Trainer(model, data, epochs=2, lr=0.05, **CPU)
    t.fit()
    assert t.state == "completed" and (t.epoch, t.step) == (2, 6)
    t.start()                                        # background this time: the same loop
    assert t.wait(5) and t.state == "completed" and (t.epoch, t.step) == (4, 12)
    steps = t.history.steps
    assert steps.step.tolist() == list(range(12)) and steps.epoch.tolist() == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    assert [(r["epoch"], r["step"]) for r in t.history.epoch_records] == [(0, 3), (1, 6), (2, 9), (3, 12)]
    assert np.all(np.diff(steps.time_s) >= 0)
    ref, losses = oracle(init, data, F.cross_entropy, 12, lr=0.05)
    assert same_params(model, ref) and np.allclose(steps.loss, losses, rtol=1e-6)


# ---------------------------------------------------------------- set()
def _set_from_thread_at(trainer, at_step, **settings):
    """Call ``trainer.set(**settings)`` from another thread right after step ``at_step``."""
    trainer.on(Event.BATCH_COMPLETED,
               lambda tr, step, **_: _in_thread(tr.set, **settings) if step == at_step else None)


def test_set_lr_reaches_every_param_group_and_the_scheduler_before_the_next_step():
    model = _mlp()
    opt = torch.optim.SGD([{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 0.02}],
                          lr=0.01)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)   # stepped once per epoch
    used = []
    opt.register_step_pre_hook(lambda o, a, k: used.append([g["lr"] for g in o.param_groups]))
    t = nw.Trainer(model, _data(2), optimizer=opt, scheduler=sched, epochs=3, **CPU)
    _set_from_thread_at(t, 3, lr=0.2)                # mid-epoch 1; the scheduler halves it at the epoch end
    t.fit()
    assert used == [[0.01, 0.02]] * 2 + [[0.005, 0.01], [0.2, 0.2]] + [[0.1, 0.1]] * 2
    assert sched.base_lrs == [0.2, 0.2] and all(g["initial_lr"] == 0.2 for g in opt.param_groups)
    (ev,) = [e for e in events(t, "setting") if e["name"] == "lr"]
    assert (ev["step"], ev["old"], ev["new"]) == (3, 0.005, 0.2)
    assert t.history.steps.lr.tolist() == pytest.approx([0.01, 0.01, 0.005, 0.2, 0.1, 0.1])


def test_momentum_is_adams_first_beta():
    model = _mlp()
    init = copy.deepcopy(model)
    data = _data(3)
    t = nw.Trainer(model, data, optimizer="adam", lr=0.01, momentum=0.5, epochs=2, **CPU)
    assert t.optimizer.param_groups[0]["betas"] == (0.5, 0.999) and t.settings["momentum"] == 0.5
    t.fit()
    ref, _ = oracle(init, data, F.cross_entropy, 6,
                    optimizer=lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.5, 0.999)))
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(model.parameters(), ref.parameters()))
    _in_thread(t.set, momentum=0.8)
    assert all(g["betas"] == (0.8, 0.999) for g in t.optimizer.param_groups)
    assert t.settings["momentum"] == 0.8
    assert [(e["old"], e["new"]) for e in events(t, "setting") if e["name"] == "momentum"] == [(0.5, 0.8)]
    assert nw.Trainer(_mlp(), data, optimizer="adam", **CPU).settings["momentum"] == 0.9


def test_set_momentum_and_weight_decay_while_running_reach_every_group_before_the_next_step():
    model = _mlp()
    opt = torch.optim.SGD([{"params": model[0].parameters()}, {"params": model[2].parameters()}], lr=0.01)
    used = []
    opt.register_step_pre_hook(lambda o, a, k: used.append([(g["momentum"], g["weight_decay"])
                                                            for g in o.param_groups]))
    t = nw.Trainer(model, _data(4), optimizer=opt, epochs=1, **CPU)
    _set_from_thread_at(t, 2, momentum=0.9, weight_decay=1e-3)
    t.fit()
    assert used[:2] == [[(0, 0), (0, 0)]] * 2 and used[2:] == [[(0.9, 1e-3), (0.9, 1e-3)]] * 2


def test_dropout_sets_p_of_every_dropout_module():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 16), nn.ReLU(),
                          nn.Dropout(0.2), nn.Linear(16, 3))
    drops = [model[2], model[5]]
    t = nw.Trainer(model, _data(4), dropout=0.25, epochs=1, **CPU)
    assert [d.p for d in drops] == [0.25, 0.25] and t.settings["dropout"] == 0.25
    seen = []
    model.register_forward_pre_hook(lambda m, i: seen.append([d.p for d in drops]) if torch.is_grad_enabled() else None)
    _set_from_thread_at(t, 2, dropout=0.1)
    t.fit()
    assert seen == [[0.25, 0.25]] * 2 + [[0.1, 0.1]] * 2
    assert t.settings["dropout"] == 0.1


@pytest.mark.parametrize("settings, match", [
    (dict(lr=0), r"learning rate must be > 0, got 0"),
    (dict(lr=-1e-3), r"learning rate must be > 0, got -0\.001"),
    (dict(lr=float("nan")), r"lr must be finite, got nan"),
    (dict(lr="fast"), r"lr must be a number, got 'fast'"),
    (dict(momentum=1.0), r"momentum must be in \[0, 1\), got 1"),
    (dict(weight_decay=-0.1), r"weight decay must be >= 0, got -0\.1"),
    (dict(dropout=1.0), r"dropout p must be in \[0, 1\), got 1"),
    (dict(learning_rate=0.1), r"unknown setting 'learning_rate'; settings are: lr, momentum, weight_decay, dropout"),
])
def test_invalid_settings_raise_a_clear_error_and_change_nothing(settings, match):
    t = nw.Trainer(_mlp(dropout=0.5), _data(2), momentum=0.5, **CPU)
    before = t.settings
    with pytest.raises(ValueError, match=match):
        t.set(**settings)
    assert t.settings == before and not events(t, "setting")


def test_settings_the_model_or_optimizer_lacks_are_refused():
    with pytest.raises(ValueError, match=r"the model has no nn\.Dropout layer, so dropout cannot be set"):
        nw.Trainer(_mlp(), _data(2), **CPU).set(dropout=0.2)
    with pytest.raises(ValueError, match=r"the model has no nn\.Dropout layer"):
        nw.Trainer(_mlp(), _data(2), dropout=0.2, **CPU)
    model = _mlp()
    t = nw.Trainer(model, _data(2), optimizer=torch.optim.Adagrad(model.parameters()), **CPU)
    with pytest.raises(ValueError, match=r"Adagrad has no momentum setting"):
        t.set(momentum=0.5)
    assert t.settings["momentum"] is None


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(lr=0), ValueError, r"lr must be a finite number > 0, got 0"),
    (dict(momentum=-0.5), ValueError, r"momentum must be a finite number >= 0, got -0\.5"),
    (dict(weight_decay=float("inf")), ValueError, r"weight_decay must be a finite number >= 0"),
    (dict(optimizer="lbfgs"), ValueError, r"unknown optimizer 'lbfgs'; use one of sgd, adam, adamw, rmsprop"),
    (dict(task="segmentation"), ValueError, r"task must be 'auto', 'multiclass', 'binary' or 'regression'"),
    (dict(epochs=0), ValueError, r"epochs must be >= 1, got 0"),
    (dict(device="gpu"), ValueError, r"unknown device 'gpu'; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"),
])
def test_invalid_constructor_arguments_raise_clear_errors(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        nw.Trainer(_mlp(), _data(2), **{"device": "cpu", **kwargs})


def test_constructor_refuses_momentum_of_one_or_more_like_set():
    with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\)"):
        nw.Trainer(_mlp(), _data(2), momentum=1.5, **CPU)


def test_invalid_model_or_data_types_are_refused():
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module, got str"):
        nw.Trainer("mlp", _data(2), **CPU)
    with pytest.raises(TypeError, match=r"train_data is a one-shot iterator \(generator\)"):
        nw.Trainer(_mlp(), (b for b in _data(2)), **CPU)
    with pytest.raises(TypeError, match=r"val_data must be a DataLoader or an iterable of \(x, y\) batches, got int"):
        nw.Trainer(_mlp(), _data(2), 5, **CPU)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_device_without_cuda_is_refused():
    with pytest.raises(ValueError, match=r"device 'cuda' requested but CUDA is not available here"):
        nw.Trainer(_mlp(), _data(2), device="cuda")


# ---------------------------------------------------------------- device and optimizer while paused
def test_device_and_optimizer_change_only_while_paused(long_run):
    t = long_run(momentum=0.9)
    t.start()
    assert _until(lambda: t.step >= 3)
    with pytest.raises(RuntimeError, match=r"cannot change the device while training runs; pause\(\) first"):
        t.to("cpu")
    with pytest.raises(RuntimeError, match=r"cannot change the optimizer while training runs; pause\(\) first"):
        t.set_optimizer("adam")
    t.pause()
    assert t.wait(5) and t.state == "paused"
    _in_thread(t.to, "cpu")
    _in_thread(t.set_optimizer, "adam")
    assert isinstance(t.optimizer, torch.optim.Adam) and t.settings["lr"] == 0.01
    assert t.settings["momentum"] == 0.9                                 # kept, as Adam's first beta
    s = t.step
    t.resume()
    assert _until(lambda: t.step >= s + 3) and t.state == "running"
    assert [e["name"] for e in events(t, "setting")] == ["device", "optimizer"]
    assert len(t.optimizer.state) == len(list(t.model.parameters()))     # Adam is the one stepping


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_move_to_cuda_while_paused_moves_model_and_optimizer_state():
    model = _mlp()
    t = nw.Trainer(model, _data(4), momentum=0.9, epochs=2, device="cpu")
    t.on(Event.BATCH_COMPLETED, lambda tr, step, **_: _in_thread(tr.pause) if step == 2 else None)
    t.fit()
    assert t.state == "paused"
    t.to("cuda")
    assert all(p.is_cuda for p in model.parameters())
    assert all(s["momentum_buffer"].is_cuda for s in t.optimizer.state.values())
    t.fit()
    assert t.state == "completed" and t.step == 8 and np.isfinite(t.history.steps.loss).all()


# ---------------------------------------------------------------- handlers
def test_handlers_every_n_and_remove():
    t = nw.Trainer(_mlp(), _data(10), epochs=1, **CPU)
    calls = []
    handle = t.on(Event.BATCH_COMPLETED, lambda tr, step, **_: calls.append(step), every=3)
    t.on("batch_completed", lambda tr, step, **_: handle.remove() if step == 7 else None)
    t.fit()
    assert calls == [3, 6]
    with pytest.raises(ValueError, match=r"unknown event 'batch_done'; known events: fit_started"):
        t.on("batch_done", print)


def test_a_failing_handler_fails_the_run_naming_it():
    t = nw.Trainer(_mlp(), _data(4), epochs=1, **CPU)

    def bad(tr, step, **_):
        if step == 2:
            raise KeyError("oops")
    t.on(Event.BATCH_COMPLETED, bad)
    with pytest.raises(KeyError):
        t.fit()
    assert t.state == "failed" and t.step == 2
    assert "BATCH_COMPLETED handler" in events(t, "error")[0]["message"]


def test_stop_after_pause_and_step_is_waited_for_and_start_resumes_a_paused_run():
    t = nw.Trainer(_mlp(), _data(n=50), epochs=10_000, **CPU)
    t.start()
    assert _until(lambda: t.step > 5)
    t.pause()
    assert t.wait(5) and t.state == "paused"
    t.start()                                    # on a paused background run: resume, not an error
    s = t.step
    assert _until(lambda: t.step > s + 3) and t.state == "running"
    t.pause()
    assert t.wait(5)
    t.step_once()
    t.stop()
    assert t.wait(5) and t.state == "stopped"    # wait() does not return on the pause a stop lifts


def test_fit_that_pauses_on_a_nonfinite_loss_warns_with_the_message():
    torch.manual_seed(0)
    x = torch.randn(64, 8) * 50
    t = nw.Trainer(nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 1)), [(x, x.sum(1, keepdim=True))],
                   epochs=10, lr=0.1, momentum=0.9, **CPU)
    with pytest.warns(RuntimeWarning, match=r"loss diverged at step 1 .*learning rate 0\.1 and momentum 0\.9"):
        t.fit()
    assert t.state == "paused"


def test_gradient_view_ends_at_the_last_step_of_a_run():
    t = nw.Trainer(_mlp(), _data(n=7), epochs=3, grad_every=1000, **CPU)
    t.fit()
    steps, layers, norms = t.history.gradient_norms()
    assert steps[0] == 1 and steps[-1] == t.step == 21
    assert np.isfinite(norms[-1]).all() and layers == ["0", "2"]
