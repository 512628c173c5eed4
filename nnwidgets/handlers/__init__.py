"""The package's own features, attached to a Trainer's :class:`~nnwidgets.engine.events.EventBus`
like a user's handler: one job each, throttling declared where they subscribe (``every=``).

* :class:`~nnwidgets.handlers.gradients.GradientSampler` - per-layer gradient norms and
  histograms every n steps (n adapted so they cost <= 1 % of step time);
* :class:`~nnwidgets.handlers.scheduler.SchedulerStepper` - steps an LR scheduler per step or
  per epoch.

:func:`attach_run_handlers` attaches the ones a run needs once its first batch was checked.
A new handler is one file here with a class whose ``attach(trainer)`` subscribes it, plus a
line in :func:`attach_run_handlers` (or a user's ``trainer.on(...)``).
"""
from __future__ import annotations

from typing import Any

from .gradients import GradientSampler
from .scheduler import SchedulerStepper

__all__ = ["GradientSampler", "SchedulerStepper", "attach_run_handlers"]


def attach_run_handlers(trainer: Any, prepared: Any) -> list:
    """Attach the handlers of a Trainer's options and the checks (:mod:`nnwidgets.checks`)
    to its bus (once, after the first batch); returns the handlers' notices (e.g. how the
    scheduler is stepped)."""
    notices: list = []
    if trainer.scheduler is not None:
        stepper = SchedulerStepper(trainer)
        stepper.attach(trainer)
        trainer._schedule = stepper.plan
        notices += stepper.plan.notices
    if trainer._grads is not None:
        trainer._grads.attach(trainer)
    from ..checks import attach_checks
    attach_checks(trainer, prepared)
    return notices
