"""Steps the Trainer's LR scheduler: after every optimizer step, or once per epoch after
validation (ReduceLROnPlateau with the validation loss). Which, and why, is decided by
:class:`nnwidgets._schedule.SchedulePlan` and said in a ``scheduler`` notice."""
from __future__ import annotations

from typing import Any

from .._schedule import SchedulePlan
from ..engine.events import Event
from .base import Handler

__all__ = ["SchedulerStepper"]


class SchedulerStepper(Handler):
    """``BATCH_COMPLETED`` (a per-step scheduler) and ``EPOCH_COMPLETED`` handler.

    Args:
        trainer: the Trainer whose ``scheduler`` and ``optimizer`` are stepped.

    Attributes:
        plan: the :class:`~nnwidgets._schedule.SchedulePlan` (also the learning rates each
            committed step used, :meth:`SchedulePlan.used_lrs`).
    """

    def __init__(self, trainer: Any) -> None:
        self.plan = SchedulePlan(trainer.scheduler, trainer.optimizer, trainer._options.scheduler_interval,
                                 trainer.steps_per_epoch, trainer._target_epochs, trainer.val_data is not None)
        self.notices = tuple(self.plan.notices)

    @classmethod
    def create(cls, trainer: Any, prepared: Any) -> "SchedulerStepper | None":
        return cls(trainer) if trainer.scheduler is not None else None

    def attach(self, trainer: Any) -> None:
        trainer._schedule = self.plan  # the lrs the committed steps used (engine.verify.commit)
        if self.plan.per_step is not None:
            trainer.on(Event.BATCH_COMPLETED, self.after_step)
        trainer.on(Event.EPOCH_COMPLETED, self.after_epoch)

    def after_step(self, trainer: Any, **info: Any) -> None:
        ended = self.plan.per_step()
        if ended:  # the run outgrew a OneCycleLR (epochs added later): said once, as a notice
            from ..checks.base import report
            report(trainer, ended, "scheduler_ended")

    def after_epoch(self, trainer: Any, *, metrics: dict, **info: Any) -> None:
        self.plan.epoch_end(metrics)
