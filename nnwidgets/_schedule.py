"""Learning-rate schedulers: when the Trainer steps them, with what, and what ``set(lr=...)`` does.

The rule (case C31), decided once before step 1 and announced with a ``scheduler`` notice:

* ``scheduler_interval="step"`` or ``"epoch"`` given to the Trainer wins;
* ``ReduceLROnPlateau`` is stepped once per epoch with the validation loss (the training loss
  when there is no validation data);
* ``OneCycleLR`` and ``CyclicLR`` are per-step schedulers by design: stepped after every
  optimizer step;
* a scheduler whose horizon (``T_max`` of ``CosineAnnealingLR``, ``total_iters`` of
  ``LinearLR`` / ``PolynomialLR`` / ``ConstantLR``) equals steps per epoch x epochs, with more
  than one step per epoch, was sized in steps: stepped after every optimizer step;
* every other scheduler is stepped once per epoch, after validation.

A per-step scheduler is stepped right after ``optimizer.step()`` (one Python call, no host
sync); the learning rate each step used is recorded for the history, so the lr chart shows what
was really used.

A ``OneCycleLR`` whose ``total_steps`` is smaller than the run (steps per epoch x epochs) is an
error before step 1, naming both numbers and the fix (plain PyTorch raises "Tried to step N
times" when it runs out; before, the run went on silently at the cycle's final lr, ~0). Where the
run grows past the cycle later (epochs added to a run in progress or to a finished one), the
scheduler is no longer stepped once it reaches its last step: the lr stays at its final value and
a ``scheduler_ended`` notice says so, once.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch.optim import lr_scheduler as sched

from .checks.targets import Notice

__all__ = ["INTERVALS", "SchedulePlan", "check_scheduler", "lr_set_message", "retarget"]

INTERVALS = ("auto", "step", "epoch")
_CYCLIC = (sched.OneCycleLR, sched.CyclicLR)
_HORIZON = {sched.CosineAnnealingLR: "T_max", sched.LinearLR: "total_iters", sched.PolynomialLR: "total_iters",
            sched.ConstantLR: "total_iters"}


def check_scheduler(scheduler: Any, interval: str | None, optimizer: torch.optim.Optimizer) -> None:
    """Checks made when the Trainer is built.

    Raises:
        ValueError: ``interval`` not one of ``"auto"``, ``"step"``, ``"epoch"``; ``"step"`` for a
            ReduceLROnPlateau (it needs a loss per step); a scheduler bound to another optimizer
            than the one the Trainer steps (its lr changes would never reach training).
        TypeError: ``scheduler`` has no ``step()`` method.
    """
    if (interval or "auto") not in INTERVALS:
        raise ValueError(f"scheduler_interval must be 'auto', 'step' or 'epoch', got {interval!r}")
    if scheduler is None:
        return
    if not callable(getattr(scheduler, "step", None)):
        raise TypeError(f"scheduler must be a torch.optim.lr_scheduler scheduler, got {type(scheduler).__name__}")
    if isinstance(scheduler, sched.ReduceLROnPlateau) and interval == "step":
        raise ValueError("ReduceLROnPlateau is stepped with a loss once per epoch; scheduler_interval='step' "
                         "is not possible for it. Leave scheduler_interval='auto'.")
    bound = getattr(scheduler, "optimizer", optimizer)
    if bound is not optimizer:
        what = (f"another {type(bound).__name__} instance than the one the Trainer steps"
                if type(bound) is type(optimizer) else
                f"another optimizer ({type(bound).__name__}) than the one the Trainer steps "
                f"({type(optimizer).__name__})")
        raise ValueError(f"{type(scheduler).__name__} is bound to {what}, so its lr changes would never reach "
                         "training (the Trainer builds its own optimizer unless given one). Pass optimizer=that "
                         "instance (Trainer(..., optimizer=opt, scheduler=sched)), or build the scheduler on "
                         "trainer.optimizer.")


def _decide(scheduler: Any, interval: str | None, steps_per_epoch: int | None, epochs: int) -> tuple[str, str]:
    name = type(scheduler).__name__
    if interval in ("step", "epoch"):
        return interval, f"scheduler_interval={interval!r}"
    if isinstance(scheduler, sched.ReduceLROnPlateau):
        return "plateau", "ReduceLROnPlateau needs the monitored loss"
    if isinstance(scheduler, _CYCLIC):
        return "step", f"{name} schedules the lr per batch"
    attr = next((a for cls, a in _HORIZON.items() if isinstance(scheduler, cls)), None)
    horizon = getattr(scheduler, attr, None) if attr else None
    if horizon and steps_per_epoch and steps_per_epoch > 1 and horizon == steps_per_epoch * epochs:
        return "step", f"its {attr}={horizon} equals {steps_per_epoch} steps per epoch x {epochs} epochs"
    return "epoch", "the default for schedulers sized in epochs; pass scheduler_interval='step' for one sized in steps"


def _check_one_cycle(scheduler: Any, steps_per_epoch: int | None, epochs: int) -> None:
    """A OneCycleLR planned for fewer steps than the run is an error before step 1."""
    if not steps_per_epoch:
        return  # a loader without a length: the run's steps are not known
    total, run = int(scheduler.total_steps), int(steps_per_epoch) * int(epochs)
    if total < run:
        raise ValueError(
            f"OneCycleLR has total_steps={total}, but this run takes {run} optimizer steps ({steps_per_epoch} steps "
            f"per epoch x {epochs} epochs): after step {total} its lr would stay at the cycle's final value (about 0: "
            f"max_lr / div_factor / final_div_factor); plain PyTorch raises 'Tried to step {total + 1} times'. "
            "Build it for the whole run: "
            f"OneCycleLR(opt, max_lr=..., total_steps=steps_per_epoch*epochs) (here total_steps={run}), or "
            f"OneCycleLR(opt, max_lr=..., epochs={epochs}, steps_per_epoch={steps_per_epoch}).")


class SchedulePlan:
    """How one run steps its scheduler.

    Attributes:
        interval: ``"step"``, ``"epoch"`` or ``"plateau"``.
        per_step: a callable for the loop to call after every optimizer step, or None.
        notices: the ``scheduler`` notice saying which interval and why.
    """

    def __init__(self, scheduler: Any, optimizer: torch.optim.Optimizer, interval: str | None,
                 steps_per_epoch: int | None, epochs: int, has_val: bool) -> None:
        self.scheduler, self.optimizer, self.has_val = scheduler, optimizer, has_val
        self.interval, why = _decide(scheduler, interval, steps_per_epoch, epochs)
        # OneCycleLR reaches its final lr at step total_steps - 1 and raises two steps later
        self._last = scheduler.total_steps - 1 if isinstance(scheduler, sched.OneCycleLR) else math.inf
        if isinstance(scheduler, sched.OneCycleLR) and self.interval == "step":
            _check_one_cycle(scheduler, steps_per_epoch, epochs)
        self.ended: str | None = None  # the notice when a run outgrew the cycle (said once)
        self._held = 0  # steps run with the scheduler at its last step (the 1st is the cycle's own last)
        self._lrs: list[float] = []
        self.per_step = self._after_step if self.interval == "step" else None
        name = type(scheduler).__name__
        if self.interval == "plateau":
            what = "the validation loss" if has_val else "the training loss (there is no validation data)"
            text = f"{name} is stepped once per epoch with {what} ({why})."
        elif self.interval == "step":
            text = f"{name} is stepped after every optimizer step ({why}); the lr history shows each step's lr."
        else:
            text = f"{name} is stepped once per epoch, after validation ({why})."
        self.notices = [Notice("scheduler", text)]

    def _after_step(self) -> str | None:
        """Record the lr the step just used, then step the scheduler (until its last step).
        Returns the ``scheduler_ended`` notice the first time a step ran past the cycle."""
        lr = self.optimizer.param_groups[0]["lr"]
        self._lrs.append(lr)
        if self.scheduler.last_epoch < self._last:
            self.scheduler.step()
            return None
        self._held += 1
        if self._held < 2 or self.ended is not None:
            return None
        total = self.scheduler.total_steps
        self.ended = (f"{type(self.scheduler).__name__} reached its last step (total_steps={total}) and the run goes "
                      f"on (it was made longer than the cycle was planned for, e.g. epochs added later): the lr "
                      f"stays at the cycle's final value {lr:.3g} from here on. For a new cycle over the added "
                      "epochs, build a new OneCycleLR (total_steps=steps_per_epoch*epochs) and a new Trainer.")
        return self.ended

    def used_lrs(self, k: int) -> float | np.ndarray:
        """Learning rates of the last ``k`` applied steps: an array ``(k,)`` for a per-step
        scheduler, else the current lr (the same for all of them)."""
        if len(self._lrs) >= k > 0:
            out, self._lrs = np.asarray(self._lrs[-k:], dtype=np.float64), []
            return out
        self._lrs = []
        return float(self.optimizer.param_groups[0]["lr"])

    def epoch_end(self, row: dict[str, Any]) -> None:
        """Step a per-epoch scheduler (ReduceLROnPlateau with ``val_loss``, else ``loss``)."""
        if self.interval == "plateau":
            value = row.get("val_loss", row["loss"]) if self.has_val else row["loss"]
            self.scheduler.step(value)
        elif self.interval == "epoch":
            self.scheduler.step()


def retarget(scheduler: Any, optimizer: torch.optim.Optimizer, old_lrs: list[float], new: float) -> None:
    """Make ``scheduler`` go on from a learning rate set by hand (all param groups now at ``new``).

    OneCycleLR and CyclicLR recompute the lr at every step from their own bounds, so their cycle
    is scaled by ``new / old`` per group (the next step continues from ``new`` on the same shape);
    other schedulers take ``new`` as their base learning rate (``base_lrs``, ``initial_lr``).
    """
    groups = optimizer.param_groups
    ratios = [new / old if old else 1.0 for old in old_lrs]
    if isinstance(scheduler, sched.OneCycleLR):
        for g, r in zip(groups, ratios):
            for key in ("initial_lr", "max_lr", "min_lr"):
                g[key] *= r
        return
    if isinstance(scheduler, sched.CyclicLR):
        scheduler.base_lrs = [b * r for b, r in zip(scheduler.base_lrs, ratios)]
        scheduler.max_lrs = [m * r for m, r in zip(scheduler.max_lrs, ratios)]
        return
    for g in groups:
        if "initial_lr" in g:
            g["initial_lr"] = new
    if scheduler is not None and hasattr(scheduler, "base_lrs"):
        scheduler.base_lrs = [new for _ in scheduler.base_lrs]


def lr_set_message(scheduler: Any, new: float) -> str:
    """What ``scheduler`` will do with a learning rate set by hand to ``new`` (after :func:`retarget`)."""
    name = type(scheduler).__name__
    if isinstance(scheduler, sched.ReduceLROnPlateau):
        return (f"{name} keeps {new:g} and multiplies it by {scheduler.factor:g} after {scheduler.patience + 1} "
                f"epoch(s) without improvement of the monitored loss (not below min_lr {min(scheduler.min_lrs):g}).")
    if isinstance(scheduler, sched.OneCycleLR):
        g = scheduler.optimizer.param_groups[0]
        return (f"{name} sets the lr at every step, so its cycle was scaled to go on from {new:g} "
                f"(max_lr now {g['max_lr']:.4g}, final lr {g['min_lr']:.4g}).")
    if isinstance(scheduler, sched.CyclicLR):
        return (f"{name} sets the lr at every step, so its cycle was scaled to go on from {new:g} "
                f"(base_lr {scheduler.base_lrs[0]:.4g}, max_lr {scheduler.max_lrs[0]:.4g}).")
    return f"{name} goes on from {new:g}: it is its base learning rate now, and its next step scales it from there."
