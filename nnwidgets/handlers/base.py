"""The form of a handler: a small class with one job, attached to a Trainer's EventBus.

A subclass declares how it is made for a run (:meth:`Handler.create`, ``None`` where it does
not apply) and subscribes in :meth:`Handler.attach`, declaring its throttle there
(``trainer.on(event, self, every=n)``) instead of counting calls itself. ``notices`` are recorded
in the history when it is attached (e.g. how a scheduler is stepped).
"""
from __future__ import annotations

from typing import Any

__all__ = ["Handler"]


class Handler:
    """Base of the package's own handlers (:func:`nnwidgets.handlers.attach_run_handlers`)."""

    notices: tuple = ()

    @classmethod
    def create(cls, trainer: Any, prepared: Any) -> "Handler | None":
        """The instance for this run (after its first batch was checked), or ``None``."""
        return cls()

    def attach(self, trainer: Any) -> None:
        """Subscribe to ``trainer``'s events."""
        raise NotImplementedError
