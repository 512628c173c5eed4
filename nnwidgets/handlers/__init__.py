"""The package's own features, attached to a Trainer's :class:`~nnwidgets.engine.events.EventBus`
like a user's handler: one job each, throttling declared where they subscribe (``every=``).

* :class:`~nnwidgets.handlers.gradients.GradientSampler` - per-layer gradient norms and
  histograms every n steps (n adapted so they cost about 1 % of step time);
* :class:`~nnwidgets.handlers.scheduler.SchedulerStepper` - steps an LR scheduler per step or
  per epoch.

A new handler is one module here with a :class:`~nnwidgets.handlers.base.Handler` subclass:
:func:`attach_run_handlers` imports every module of this package and attaches each handler
whose ``create`` returns an instance for the run.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from .base import Handler
from .gradients import GradientSampler
from .scheduler import SchedulerStepper

__all__ = ["Handler", "GradientSampler", "SchedulerStepper", "attach_run_handlers", "handler_classes"]


def handler_classes() -> list[type]:
    """Every :class:`Handler` subclass of this package's modules, in module-name order."""
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        importlib.import_module(f"{__name__}.{info.name}")
    return [c for c in Handler.__subclasses__() if c.__module__.startswith(__name__ + ".")]


def attach_run_handlers(trainer: Any, prepared: Any) -> list:
    """Attach the handlers a run needs and the checks (:mod:`nnwidgets.checks`) to the Trainer's
    bus (once, after the first batch); returns the handlers' notices."""
    notices: list = []
    for cls in handler_classes():
        handler = cls.create(trainer, prepared)
        if handler is not None:
            handler.attach(trainer)
            notices += handler.notices
    from ..checks import attach_checks
    attach_checks(trainer, prepared)
    return notices
