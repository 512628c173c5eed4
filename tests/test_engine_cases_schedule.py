"""Case C31 of ``shared/cases/`` run through ``nnwidgets.Trainer``: learning-rate schedulers
stepped per batch, per epoch, or with the validation loss, and ``set(lr=...)`` on a run with one.

PyTorch is the oracle: the same scheduler stepped by hand (the case's loop) gives the learning
rates the Trainer must have used; the optimizer's step pre-hook records what each step used.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.optim import lr_scheduler as sched

import nnwidgets as nw
from nnwidgets.events import Event

from _engine_util import LOGITS, Echo, events, notice

CPU = dict(device="cpu")
BATCHES = [(LOGITS, torch.tensor([0, 1, 2, 1]))] * 10                     # 10 steps per epoch


def _by_hand(make, steps):
    """The lr each of ``steps`` optimizer steps uses when ``make(opt)`` is stepped after every step."""
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    s, used = make(opt), []
    for _ in range(steps):
        opt.step()
        used.append(opt.param_groups[0]["lr"])
        s.step()
    return used


def _run(make, epochs=5, val=None, interval="auto", model=None, on=None):
    model = model or Echo()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    used = []
    opt.register_step_pre_hook(lambda o, a, k: used.append(o.param_groups[0]["lr"]))
    t = nw.Trainer(model, BATCHES, val, optimizer=opt,
                   scheduler=make(opt), scheduler_interval=interval, epochs=epochs, grad_stats=False, **CPU)
    if on is not None:
        t.on(Event.BATCH_COMPLETED, on)
    t.fit()
    return t, np.array(used)


def one_cycle(opt):
    return sched.OneCycleLR(opt, max_lr=0.1, steps_per_epoch=10, epochs=5)


def test_c31_one_cycle_is_stepped_every_step_and_peaks_at_max_lr():
    t, used = _run(one_cycle)
    expected = _by_hand(one_cycle, 50)
    assert np.allclose(used, expected, rtol=1e-12) and max(used) == pytest.approx(0.1)   # per epoch: 0.0221
    assert np.allclose(t.history.steps.lr, used, rtol=1e-6)              # the lr chart shows what was used
    assert "OneCycleLR is stepped after every optimizer step (OneCycleLR schedules the lr per batch)" \
        in notice(t, "scheduler")


def test_c31_a_one_cycle_shorter_than_the_run_is_an_error_before_step_1():
    """total_steps=10 for a 24-step run (12 steps per epoch x 2 epochs) trained silently at the
    cycle's final lr (~0) after step 10; plain PyTorch raises "Tried to step 11 times"."""
    model = Echo()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    t = nw.Trainer(model, [(LOGITS, torch.tensor([0, 1, 2, 1]))] * 12, optimizer=opt, epochs=2, grad_stats=False,
                   scheduler=sched.OneCycleLR(opt, max_lr=0.1, total_steps=10), **CPU)
    with pytest.raises(ValueError) as err:
        t.fit()
    said = str(err.value)
    assert said.startswith("OneCycleLR has total_steps=10, but this run takes 24 optimizer steps (12 steps per epoch "
                           "x 2 epochs): after step 10 its lr would stay at the cycle's final value"), said
    assert "plain PyTorch raises 'Tried to step 11 times'" in said
    assert "total_steps=steps_per_epoch*epochs) (here total_steps=24)" in said
    assert "epochs=2, steps_per_epoch=12)" in said
    assert t.step == 0 and t.history.n_steps == 0                        # before step 1


def test_c31_epochs_added_past_a_one_cycle_hold_its_last_lr_with_a_notice():
    t, used = _run(one_cycle)                                            # the 50 steps the cycle was built for
    assert t.state == "completed" and "scheduler_ended" not in {e["name"] for e in events(t, "notice")}
    after = []
    t.optimizer.register_step_pre_hook(lambda o, a, k: after.append(o.param_groups[0]["lr"]))
    with pytest.warns(nw.CheckWarning, match="OneCycleLR reached its last step"):
        t.fit(epochs=1)                                                  # 10 steps more than planned
    assert t.state == "completed" and t.step == 60 and len(after) == 10
    assert np.allclose(used, _by_hand(one_cycle, 50)) and np.all(np.array(after) == after[0])
    assert after[0] == pytest.approx(0.1 / 25 / 1e4)                     # OneCycleLR's final lr
    (ended,) = [e for e in events(t, "notice") if e["name"] == "scheduler_ended"]   # once
    assert ended["message"].startswith("OneCycleLR reached its last step (total_steps=50) and the run goes on")
    assert "stays at the cycle's final value 4e-07" in ended["message"]
    assert ended["step"] == 51                                           # recorded after step 51, the 1st past it


@pytest.mark.parametrize("t_max, per_step", [(50, True), (5, False)], ids=["sized_in_steps", "sized_in_epochs"])
def test_c31_a_scheduler_sized_in_steps_is_stepped_per_step(t_max, per_step):
    def cosine(opt):
        return sched.CosineAnnealingLR(opt, T_max=t_max)
    t, used = _run(cosine)
    expected = _by_hand(cosine, 50) if per_step else np.repeat(_by_hand(cosine, 5), 10)
    assert np.allclose(used, expected, rtol=1e-12)
    assert np.allclose(t.history.steps.lr, used, rtol=1e-6)
    said = notice(t, "scheduler")
    assert ("T_max=50 equals 10 steps per epoch x 5 epochs" in said) if per_step else ("once per epoch" in said)


def test_c31_scheduler_interval_overrides_the_rule():
    def halve(opt):
        return sched.LambdaLR(opt, lambda k: 0.5 ** k)
    t, used = _run(halve, epochs=1, interval="step")
    assert np.allclose(used, [0.1 * 0.5 ** k for k in range(10)])
    assert "scheduler_interval='step'" in notice(t, "scheduler")
    _, used = _run(halve, epochs=2, interval="epoch")
    assert np.allclose(used, [0.1] * 10 + [0.05] * 10)


def test_c31_bad_scheduler_settings_stop_when_the_trainer_is_built():
    model = Echo()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"scheduler_interval must be 'auto', 'step' or 'epoch', got 'batch'"):
        nw.Trainer(model, BATCHES, optimizer=opt, scheduler=sched.StepLR(opt, 1), scheduler_interval="batch", **CPU)
    with pytest.raises(ValueError, match=r"ReduceLROnPlateau is stepped with a loss once per epoch"):
        nw.Trainer(model, BATCHES, optimizer=opt, scheduler=sched.ReduceLROnPlateau(opt), scheduler_interval="step",
                   **CPU)
    with pytest.raises(ValueError, match=r"StepLR is bound to another optimizer \(SGD\) than the one the Trainer "
                                         r"steps \(Adam\).*optimizer=opt, scheduler=sched"):
        nw.Trainer(model, BATCHES, optimizer="adam", scheduler=sched.StepLR(opt, 1), **CPU)
    # the same class on both sides: the message names the instance, not "SGD ... (SGD)"
    with pytest.raises(ValueError) as err:
        nw.Trainer(model, BATCHES, lr=0.1, scheduler=sched.StepLR(opt, 1), **CPU)   # the Trainer builds its own SGD
    said = str(err.value)
    assert said.startswith("StepLR is bound to another SGD instance than the one the Trainer steps, so its lr "
                           "changes would never reach training (the Trainer builds its own optimizer")
    assert "optimizer=that instance" in said and "trainer.optimizer" in said and "(SGD)" not in said


# ---------------------------------------------------------------- ReduceLROnPlateau
class PerEpochLoss(nn.Module):
    """Outputs sqrt(LOSSES[epoch]) for every sample, so the MSE against zero targets is LOSSES[epoch]
    (in training and in evaluation alike)."""

    LOSSES = (1.0, 0.8, 0.9, 0.9)

    def __init__(self):
        super().__init__()
        self.b, self.epoch = nn.Parameter(torch.zeros(())), 0

    def forward(self, x):
        return torch.full_like(x, self.LOSSES[self.epoch] ** 0.5) + 0 * self.b


@pytest.mark.parametrize("with_val", [True, False], ids=["validation_loss", "training_loss"])
def test_c31_reduce_on_plateau_is_stepped_with_the_validation_loss(with_val):
    model = PerEpochLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    plateau = sched.ReduceLROnPlateau(opt, mode="min", factor=0.5, patience=0)
    zeros = [(torch.zeros(4, 1), torch.zeros(4, 1))]
    t = nw.Trainer(model, zeros, zeros if with_val else None, optimizer=opt, scheduler=plateau, epochs=4, loss="mse",
                   grad_stats=False, **CPU)
    t.on(Event.EPOCH_STARTED, lambda tr, epoch, **_: setattr(model, "epoch", epoch))
    t.fit()
    key = "val_loss" if with_val else "loss"
    assert [r[key] for r in t.history.epoch_records] == pytest.approx([1.0, 0.8, 0.9, 0.9])
    assert t.history.steps.lr.tolist() == pytest.approx([0.1, 0.1, 0.1, 0.05])   # 0.05 after 1.0, 0.8, 0.9
    assert opt.param_groups[0]["lr"] == pytest.approx(0.025)
    said = notice(t, "scheduler")
    assert ("with the validation loss" in said) if with_val else ("the training loss (there is no validation" in said)


# ---------------------------------------------------------------- set(lr=...) with a scheduler
def test_set_lr_on_a_one_cycle_run_scales_the_cycle_and_says_so():
    t, used = _run(one_cycle, on=lambda tr, step, **_: tr.set(lr=0.05) if step == 20 else None)
    plain = np.array(_by_hand(one_cycle, 50))
    ratio = 0.05 / plain[20]
    assert np.allclose(used[:20], plain[:20]) and used[20] == pytest.approx(0.05)
    assert np.allclose(used[20:], plain[20:] * ratio, rtol=1e-9)        # the same shape from the new value
    (ev,) = [e for e in events(t, "setting") if e["name"] == "lr"]
    assert ev["message"].startswith(f"lr changed from {plain[20]:g} to 0.05; OneCycleLR sets the lr at every step, "
                                    "so its cycle was scaled to go on from 0.05 (max_lr now ")
    assert f"{0.1 * ratio:.4g}" in ev["message"]


@pytest.mark.parametrize("make, said", [
    (lambda opt: sched.StepLR(opt, step_size=1, gamma=0.5),
     "StepLR goes on from 0.2: it is its base learning rate now"),
    (lambda opt: sched.ReduceLROnPlateau(opt, factor=0.5, patience=2),
     "ReduceLROnPlateau keeps 0.2 and multiplies it by 0.5 after 3 epoch(s) without improvement"),
], ids=["step_lr", "plateau"])
def test_set_lr_with_a_per_epoch_scheduler_says_what_it_will_do(make, said):
    t, used = _run(make, epochs=2, on=lambda tr, step, **_: tr.set(lr=0.2) if step == 5 else None)
    assert np.allclose(used[5:10], 0.2)
    (ev,) = [e for e in events(t, "setting") if e["name"] == "lr"]
    assert said in ev["message"]
