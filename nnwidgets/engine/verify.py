"""What a flush does with the fetched losses: commit the good steps, or stop at a bad one.

:func:`verify` is the loop's flush: one transfer of the buffered losses and target-guard
stats (:meth:`Ledger.fetch <nnwidgets.engine.ledger.Ledger.fetch>`), then the checks that run
on every batch without a per-step host sync:

* a batch that broke a first-batch decision (:mod:`nnwidgets.checks.batch_guard`) fails the run
  with that check's error naming its epoch and step (:func:`broken`);
* a loss that blew up by orders of magnitude while still finite (:mod:`nnwidgets.checks.divergence`)
  pauses the run with a ``nonfinite`` event (``new="diverged"``) and goes back to the last weights
  whose losses were in range (:func:`diverged`);
* a non-finite loss pauses the run with a ``nonfinite`` event (:func:`nonfinite`); a loss whose
  batch holds NaN/inf is reported as a data problem and that batch is skipped on resume
  (:mod:`nnwidgets.checks.diagnose`). After one such pause, a later batch whose loss is
  non-finite *and* whose data holds NaN/inf is skipped with a counted ``data_batch_skipped``
  notice instead of pausing again (if it had been applied, after a rollback as for a pause); a
  loader with a fixed order (a list of batches, a DataLoader without shuffling) has that batch
  skipped at its position in every later epoch before it is trained (:meth:`Loop.skip_poisoned
  <nnwidgets.engine.loop.Loop.skip_poisoned>`). A non-finite loss on clean data always pauses.

Found at the current (not yet applied) step, nothing was applied; found at an earlier one, or
when the losses before it had already left the range, the weights go back to the last snapshot
(:class:`~nnwidgets.engine.rollback.Rollback`), which only holds weights whose losses were in range.
"""
from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch

from ..checks.diagnose import NONFINITE_FIXES, find_batch, nonfinite_in, nonfinite_message
from .events import Event

__all__ = ["verify", "commit", "broken", "nonfinite", "skipped_data", "diverged"]


def verify(loop: Any, current: torch.Tensor | None = None, now: float | None = None) -> bool:
    """Fetch the buffered losses (and ``current``, the loss of the step not applied yet), check
    them, commit the applied steps to the history. Returns False when a non-finite loss was
    found (the run then pauses).

    Raises:
        nnwidgets.data.DataError: a buffered batch broke a first-batch decision.
    """
    t = loop.t
    ledger = t._ledger
    t0, c0 = time.perf_counter(), time.thread_time()
    now = t0 if now is None else now
    got = ledger.fetch(current, loop.stats_now)
    if got is not None:
        prep = t._prepared
        guard = prep.plan.guard if prep is not None and prep.plan else None
        bad = got.bad
        found = guard.first_error(got.stats, t.epoch, t.step - got.applied) if guard is not None else None
        loop.resolve_snapshot(got.values, t.step - got.applied)
        blown = loop.divergence.first_diverged(got.values)  # before any non-finite one, if found
        if found is not None and (bad is None or found[0] < bad) and (blown is None or found[0] < blown):
            broken(loop, *found, got.values, got.applied)
        if blown is not None or bad is not None:
            (diverged if blown is not None else nonfinite)(loop, blown if blown is not None else bad,
                                                          got.values, got.applied)
            ledger.charge(t0, c0)
            return False
        if got.applied:
            commit(loop, got.values[:got.applied], now)
            loop.divergence.observe(got.values[:got.applied])
        loop.in_range = loop.divergence.in_range(got.values)
    loop.train_metrics.flush()
    # with the current step's loss fetched, these weights' own loss is known: a verified target
    loop.snapshot(loss=float(got.values[-1]) if got is not None and current is not None else None)
    ledger.last_flush = now
    t._bus.fire(Event.METRICS_FLUSHED, t, step=t.step)
    ledger.charge(t0, c0)
    return True


def commit(loop: Any, losses: np.ndarray, now: float) -> None:
    """Append the applied steps' losses to the history (with the learning rates they used)
    and feed the timing window to the thread tuner."""
    t = loop.t
    tuner = t._tuner
    lr = t._schedule.used_lrs(len(losses)) if t._schedule is not None else float(t.optimizer.param_groups[0]["lr"])
    t_prev, t_now = t._ledger.commit(losses, now, None if tuner.probing else tuner.threads)
    t.history.append_steps(t.epoch, losses, lr, t_prev, t_now)
    notice = tuner.observe(len(losses), t_now - t_prev) if t.step >= loop.warm_until else None
    if notice and tuner.decided_now:
        t._ledger.meter.reset()  # the probe's slow windows are a measurement, not the run's speed
    if notice:
        t._record("notice", name="threads", message=notice)


def _settle(loop: Any, values: np.ndarray, applied: int, back: bool, keep_iterating: bool = False) -> None:
    """Before a bad step is reported: ``back`` puts the last verified weights back (the steps
    since are dropped); else the ``applied`` steps before it are committed and the weights kept."""
    if back:
        loop.restore_snapshot(keep_iterating=keep_iterating)
        loop.train_metrics.discard_pending()
    else:
        if applied:
            commit(loop, values[:applied], time.perf_counter())
        loop.train_metrics.flush()


def _kept_now(t: Any) -> str:
    """What the weights are when nothing was rolled back."""
    return f"the weights after step {t.step - 1} are kept" if t.step else "the initial weights are kept"


def _scale_hint(t: Any) -> str | None:
    """The target-scale hint of the run (:mod:`nnwidgets.checks.scale`), if any."""
    scale = getattr(t._prepared, "scale", None)
    return scale.hint() if scale is not None else None


def broken(loop: Any, index: int, error: Exception, values: np.ndarray, applied: int) -> None:
    """A batch broke a first-batch decision: keep the verified steps before it, never apply
    it, and raise ``error`` (what the weights are now appended)."""
    t = loop.t
    back = index < applied  # it was applied: go back to the last verified weights
    _settle(loop, values, applied, back)
    kept = (f"that batch had been applied, so the run rolled back to the weights before step {t.step}" if back
            else "the run stopped before applying that batch; " + _kept_now(t))
    t._ledger.discard()
    error.args = (f"{error} Training failed: {kept}.",)
    raise error


def nonfinite(loop: Any, index: int, values: np.ndarray, applied: int) -> None:
    """The loss at ``values[index]`` is NaN or inf: keep the steps before it, record a
    ``nonfinite`` event naming the step, the cause and the fix, and ask the run to pause; or,
    when its batch holds NaN/inf and the run already paused once for such data, skip that batch
    with a ``data_batch_skipped`` notice and go on."""
    t = loop.t
    first_step = t.step - applied + index
    kind = "nan" if math.isnan(values[index]) else "inf"
    batch = find_batch(loop.ring, first_step)
    data = nonfinite_in(batch) if batch is not None else None  # NaN/inf in the batch itself (syncs)
    loop.poisoned_step = first_step if data is not None else None
    # its position in the epoch (values ends with the current, unapplied step when one was given)
    position = loop.epoch_batches - (len(values) - applied) - (t.step - first_step)
    # the weights are kept only when every loss since the last verified window stayed in range
    climbing = data is None and not (loop.in_range and loop.divergence.in_range(values[:index]))
    back = index < applied or climbing  # go back to the last verified weights whose losses were in range
    _settle(loop, values, applied, back, keep_iterating=data is not None)
    kept = f"rolled back to the weights before step {t.step}" if back else _kept_now(t)
    t._ledger.discard()
    t.optimizer.zero_grad(set_to_none=True)
    if data is not None and loop.data_pause_step is not None:
        # the run already paused once for a batch with NaN/inf data and was resumed past it: the
        # same data coming round again (e.g. a shuffled loader) is skipped, not paused on
        skipped_data(loop, first_step, data, f"; {kept}" if kept.startswith("rolled back") else "")
        return
    msg = nonfinite_message(kind, first_step, t.epoch, kept, t.settings, data, batch is not None, _scale_hint(t))
    t._record("nonfinite", name="loss" if data is None else "data", new=kind, message=msg)
    if data is not None:
        loop.data_pause_step = first_step
        if loop.fixed_order():  # the same position of every later epoch holds the same batch
            loop.poisoned_index = position
    control = t._control
    control.pause_requested = control.attention = True


def skipped_data(loop: Any, step: int, data: str, extra: str = "") -> None:
    """Count a batch with NaN/inf data skipped without a pause, and say so in a notice."""
    loop.data_skipped += 1
    loop.t._record("notice", name="data_batch_skipped",
                   message=f"skipped batch at step {step} (epoch {loop.t.epoch}): {data}, as at step "
                           f"{loop.data_pause_step}; skipped so far: {loop.data_skipped}{extra}")


def diverged(loop: Any, index: int, values: np.ndarray, applied: int) -> None:
    """The finite loss at ``values[index]`` blew up (:mod:`nnwidgets.checks.divergence`): go
    back to the last snapshot whose losses were in range, or, when the run started from weights
    already out of range, keep the weights and say that only fresh weights help; record a
    ``nonfinite`` event (``new="diverged"``) with the step, the loss against its starting level,
    what the weights are now and the fix, and ask the run to pause."""
    t = loop.t
    watch = loop.divergence
    first_step, value, epoch = t.step - applied + index, float(values[index]), t.epoch
    marks = t._rollback.marks
    _settle(loop, values, applied, back=marks is not None)
    if marks is not None:
        there = f", where the loss was {marks['loss']:.3g}" if marks["loss"] is not None else ""
        kept = f"rolled back to the weights before step {t.step}{there} (the last in range)"
        fresh = ""
    else:
        kept = ("no weights from before the blow-up are kept: this run started from weights whose loss was "
                "already out of range")
        fresh = (" Only fresh weights help now: trainer.reinitialize() (the panel's Reinitialize button) "
                 "resets every layer, then start again with a lower learning rate.")
    t._ledger.discard()
    t.optimizer.zero_grad(set_to_none=True)
    momentum = "n/a" if t.settings["momentum"] is None else f"{t.settings['momentum']:g}"
    hint = _scale_hint(t)
    cause = f" Likely cause: {hint}" if hint else ""
    msg = (f"loss diverged at step {first_step} (epoch {epoch}): {watch.describe(value)}, with learning rate "
           f"{t.settings['lr']:g} and momentum {momentum}; training paused, {kept}.{fresh}{cause} Lower the learning "
           f"rate, then resume. Usual fixes: {NONFINITE_FIXES}.")
    t._record("nonfinite", name="loss", new="diverged", message=msg)
    control = t._control
    control.pause_requested = control.attention = True
