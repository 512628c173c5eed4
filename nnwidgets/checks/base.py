"""The one form of a check: *when* it runs and *what* it reports, and the one path a report takes.

When (:class:`When`):

* ``FIRST_BATCH`` - once, on the first batch and the model's output for it, before step 1
  (:func:`nnwidgets._setup.prepare_first_batch` calls these checks; they return notices or
  raise a :class:`~nnwidgets.data.DataError`);
* ``EVERY_BATCH`` - on every batch, computed on the device as 0-d tensors kept beside the
  buffered losses and fetched with them at each flush: no per-step host sync
  (:class:`~nnwidgets.checks.batch_guard.TargetGuard`, and the non-finite loss check of
  :mod:`nnwidgets.engine.verify`);
* ``PERIODIC`` - on an event that fires now and then (``GRADIENTS_SAMPLED`` by default), every
  ``every``-th time, declared on the class;
* ``EPOCH_END`` - on ``EPOCH_COMPLETED``, with the epoch's metrics.

What (:class:`Finding`): a notice with what was found, what was expected and the fix. An error
is raised instead (a ``DataError`` with the same three parts in its message) where training on
would be wrong.

The path (:func:`report`): ``history.events`` (kind ``"notice"``, name = the check's code) →
the ``NOTICE`` event, which the panel shows among its notices → for a blocking ``fit()`` also a
:class:`CheckWarning`, so script users hear of it.

A new periodic or epoch-end check is one file in this package with a :class:`Check` subclass;
:func:`nnwidgets.checks.attach_checks` finds it (every module here is imported) and attaches it.
"""
from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

__all__ = ["When", "Finding", "Check", "CheckWarning", "BatchCheck", "report"]


class When:
    """When a check runs (see the module docstring)."""

    FIRST_BATCH = "first_batch"
    EVERY_BATCH = "every_batch"
    PERIODIC = "periodic"
    EPOCH_END = "epoch_end"


class CheckWarning(UserWarning):
    """A check's finding, warned to ``fit()`` users (also in ``history.events``)."""


@dataclass(frozen=True)
class Finding:
    """What a check reports.

    Attributes:
        code: the event name in ``history.events`` (e.g. ``"vanishing_gradients"``).
        found: what was found, with numbers and where.
        expected: what a healthy run shows.
        fix: what to change, in plain PyTorch terms.
    """

    code: str
    found: str
    expected: str = ""
    fix: str = ""

    @property
    def message(self) -> str:
        """``found``, then ``Expected: ...`` and ``Fix: ...`` where given."""
        found = self.found.rstrip()
        parts = [found if found.endswith((".", "!", "?", ")")) or not found else found + "."]
        if self.expected:
            parts.append(f"Expected: {self.expected.rstrip('.')}.")
        if self.fix:
            parts.append(f"Fix: {self.fix.rstrip('.')}.")
        return " ".join(parts)


class BatchCheck(Protocol):
    """The form of an every-batch check (``When.EVERY_BATCH``), e.g.
    :class:`~nnwidgets.checks.batch_guard.TargetGuard`: per step it returns 0-d device tensors
    (no host sync); the loop keeps them beside the step's loss and the flush fetches all of them
    in the same transfer as the losses, then asks for the first broken step."""

    def stats(self, y_raw: Any, y: Any) -> tuple:
        """0-d device tensors describing this batch (computed on the device, not fetched)."""

    def first_error(self, stats: np.ndarray | None, epoch: int, first_step: int) -> tuple[int, Exception] | None:
        """``(index, error)`` of the first broken row of ``stats`` ``(k, m)`` float64 (fetched),
        the error naming the epoch and step ``first_step + index`` and the fix; else ``None``."""


def report(trainer: Any, finding: Finding | str, code: str | None = None, warn: bool = True) -> None:
    """Report a finding (or a ready message with its ``code``) through the one path:
    ``history.events`` → ``NOTICE`` (panel notices) → a :class:`CheckWarning` in a blocking
    ``fit()``, where no panel shows it (``warn=False``: recorded and shown only)."""
    message = finding.message if isinstance(finding, Finding) else str(finding)
    code = finding.code if isinstance(finding, Finding) else code
    trainer._record("notice", name=code, message=message)
    if warn and trainer._control.active and not trainer._control.background:
        warnings.warn(message, CheckWarning, stacklevel=_user_level())


def _internal_prefixes() -> tuple[str, ...]:
    """File-name prefixes of frames that are not the user's: nnwidgets itself, IPython's
    (``run_line_magic``, ``run_cell_magic``, the magics machinery) and the ``<decorator-gen-N>``
    wrappers IPython's magics are called through."""
    prefixes = [os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep, "<decorator-gen-"]
    ipython = sys.modules.get("IPython")
    if getattr(ipython, "__file__", None):
        prefixes.append(os.path.dirname(os.path.abspath(ipython.__file__)) + os.sep)
    return tuple(prefixes)


def _user_level() -> int:
    """The ``stacklevel`` that names the user's line (e.g. ``trainer.fit()`` or ``%train``), not
    nnwidgets' own nor IPython's (a magic is called through ``interactiveshell.py``)."""
    internal = _internal_prefixes()
    frame, level = sys._getframe(2), 2  # level 1 is report() itself
    while frame is not None and frame.f_back is not None and frame.f_code.co_filename.startswith(internal):
        frame, level = frame.f_back, level + 1
    return level


class Check:
    """Base of the periodic and epoch-end checks.

    Class attributes a subclass declares:
        code: the event name of its reports.
        when: :attr:`When.PERIODIC` or :attr:`When.EPOCH_END`.
        event: the event it runs on (default ``GRADIENTS_SAMPLED`` for periodic checks,
            ``EPOCH_COMPLETED`` at epoch end).
        every: run on every n-th firing of ``event`` (declared throttling).
        once: report at most once per Trainer.

    A subclass implements :meth:`run` (and :meth:`create` when it applies to some runs only).

    Example:
        >>> class LossAboveTen(Check):                            # doctest: +SKIP
        ...     code, when = "loss_above_ten", When.EPOCH_END
        ...     def run(self, trainer, *, metrics, **info):
        ...         if metrics["loss"] > 10:
        ...             return Finding(self.code, f"loss {metrics['loss']:.3g}", "below 10", "lower the lr")
    """

    code = ""
    when = When.EPOCH_END
    event: Any = None
    every = 1
    once = True

    @classmethod
    def create(cls, trainer: Any, prepared: Any) -> "Check | None":
        """The instance for this run, or ``None`` when the check does not apply to it
        (``prepared``: the first-batch decisions, :class:`nnwidgets._setup.Prepared`)."""
        return cls()

    def attach(self, trainer: Any) -> Any:
        """Subscribe to the Trainer's bus; returns the handle."""
        from ..engine.events import Event
        event = self.event or (Event.GRADIENTS_SAMPLED if self.when == When.PERIODIC else Event.EPOCH_COMPLETED)
        self.reported = False
        return trainer.on(event, self, every=self.every)

    def __call__(self, trainer: Any, **info: Any) -> None:
        if self.once and self.reported:
            return
        finding = self.run(trainer, **info)
        if finding is not None:
            self.reported = True
            report(trainer, finding)

    def run(self, trainer: Any, **info: Any) -> Finding | None:
        """Look at the run; a :class:`Finding` to report, or ``None``."""
        raise NotImplementedError
