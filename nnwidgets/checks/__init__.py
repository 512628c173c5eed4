"""The pitfall checks, in one form (:mod:`nnwidgets.checks.base`): when each runs, what it reports.

=====================  ============  ==========================================================
module                 when          what
=====================  ============  ==========================================================
``inputs``, ``casts``  first batch   features: dtype casts, tuple/dict inputs, model output form
``input_errors``       first batch   float token ids and other input errors (DataError)
``targets``,           first batch   labels/targets against the loss and output (fixes, notices,
``labels``,                          DataError with the shapes and the fix)
``loss_checks``
``model_checks``       first batch   layers in a plain list, BatchNorm with batches of one
``scale``              first batch   regression targets far off the outputs' scale (notice), and
                       epoch end     ``StallWatch``: the loss still stalls after a few epochs
``batch_guard``        every batch   later batches keep the first batch's decisions (device
                                     stats fetched with the losses at each flush)
``diagnose``           every batch   a non-finite loss (found at the flush): NaN/inf in the batch
                                     or a diverging run, the step, the fix
``divergence``         every batch   a finite loss 1,000x over the run's starting level (host
                                     numbers at the flush): rollback to weights in range
``vanishing``          periodic      vanishing gradients (every 5 gradient samples)
=====================  ============  ==========================================================

Reports take one path (:func:`~nnwidgets.checks.base.report`): ``history.events`` → the panel's
notices → a :class:`~nnwidgets.checks.base.CheckWarning` for ``fit()`` users (periodic and
epoch-end checks; first-batch notices are recorded and shown, the errors are raised).

A new periodic or epoch-end check is one module here with a :class:`~nnwidgets.checks.base.Check`
subclass: :func:`attach_checks` imports every module of this package and attaches each check
whose ``create`` returns an instance for the run.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Any

__all__ = ["attach_checks", "check_classes"]


def check_classes() -> list[type]:
    """Every :class:`~nnwidgets.checks.base.Check` subclass of this package's modules."""
    from .base import Check
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
    out, todo = [], list(Check.__subclasses__())
    while todo:
        cls = todo.pop(0)
        out.append(cls)
        todo += cls.__subclasses__()
    return [c for c in out if c.__module__.startswith(__name__ + ".")]


def attach_checks(trainer: Any, prepared: Any) -> list:
    """Attach the checks that watch a run (once, after its first batch was checked); returns
    the attached checks."""
    attached = []
    for cls in check_classes():
        check = cls.create(trainer, prepared)
        if check is not None:
            check.attach(trainer)
            attached.append(check)
    return attached
