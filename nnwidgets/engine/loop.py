"""The one training loop, shared by ``Trainer.fit()`` (blocking) and ``Trainer.start()``
(background thread): epochs, steps and evaluation.

Per step (the hot path) the loop does only what a hand-written loop does, plus list
appends: ``zero_grad(set_to_none=True) → forward → loss → backward → step``. Losses stay
on the device in the :class:`~nnwidgets.engine.ledger.Ledger`; every ``flush_interval_s``
(0.1 s, and at every one of the first ``WARMUP_STEPS`` steps) they are fetched in one
transfer and checked. A flush happens *before* the current step's ``optimizer.step()``, so a
non-finite loss found there is never applied; what a flush finds is handled by
:mod:`nnwidgets.engine.verify` (rollback, the non-finite pause, a broken batch).

The loop holds a reference to its Trainer and uses its parts: ``model``, ``optimizer``,
``history``, the counters ``epoch``/``step``, the event bus, the run control, the ledger and
the interrupt guard. Everything else (gradient statistics, scheduler stepping, the stall
watch) is a handler on the event bus (:mod:`nnwidgets.handlers`).
"""
from __future__ import annotations

import math
import time
from typing import Any

import torch

from ..checks.divergence import DivergenceWatch
from ..checks.model_checks import SkipBatch, skip_message
from .._setup import move_to
from ..data import DataError, split_batch
from .events import Event
from .verify import verify

__all__ = ["Loop", "Where", "WARMUP_STEPS"]

WARMUP_STEPS = 10     # steps flushed one by one at the start of a run (first points, exact NaN step)

_OWN_BACKWARD = ("the step function called loss.backward() itself; return the loss instead - "
                 "nnwidgets calls zero_grad(), backward() and optimizer.step()")


class Where:
    """Where in a run the loop is: the values of ``Loop.where``, named in a failed run's
    message ("... during forward pass (model) at epoch 0, step 5") and given to
    :func:`nnwidgets._errors.explain` as a value."""

    STARTING = "starting"
    FIRST_BATCH = "checking the first batch"
    LOADING = "loading a batch"
    PREPARING = "preparing the batch"
    FORWARD = "forward pass (model)"
    LOSS = "loss"
    BACKWARD = "backward pass"
    OPTIMIZER = "optimizer step"
    HANDLER = "a BATCH_COMPLETED handler"
    VALIDATION = "validation"


def batch_size(y: Any) -> int:
    """Samples in a batch: the first dimension of the target (1 for a 0-d or missing one)."""
    return int(y.shape[0]) if isinstance(y, torch.Tensor) and y.ndim else 1


class Loop:
    """Epochs, steps and evaluation of one Trainer.

    Attributes:
        where: a :class:`Where` value (cheap attribute writes on the hot path).
        phase: ``"training"``, ``"validating"`` or ``None`` (no loop running, or paused).
        val_done, val_total: validation batches done in the current (or last) validation
            pass, and ``len(val_data)`` (``None`` without a length).
        train_metrics, val_metrics: :class:`~nnwidgets._metrics.MetricSet` (after the first batch).
    """

    def __init__(self, trainer: Any) -> None:
        self.t = trainer
        self.where = Where.STARTING
        self.phase: str | None = None
        self.val_done, self.val_total = 0, None
        self.train_metrics = self.val_metrics = None
        self.batch_iter = self.pending_batch = None  # the epoch's iterator; a batch to train next
        self.epoch_batches, self.epoch_first_step = 0, 0
        self.ring = None          # the last raw batches, (step, batch), inspected when a loss is non-finite
        self.stats_now: tuple = ()  # the target guard's stats of the batch being trained
        self.poisoned_step = None   # a step whose batch holds NaN/inf: not retried on resume
        self.data_pause_step = None  # the step of the first pause for NaN/inf data (later ones are skipped)
        self.data_skipped = 0        # batches with NaN/inf data skipped since, without pausing
        self.poisoned_index = None   # that batch's position in an epoch of a fixed-order loader
        self.warm_until = WARMUP_STEPS
        self.divergence = DivergenceWatch()  # the run's starting loss level and the blow-up test
        self.in_range = True        # the last verified losses were in range: the weights may be a rollback target

    # ------------------------------------------------------------------ epochs
    def run_epochs(self) -> None:
        t, control, guard = self.t, self.t._control, self.t._guard
        while t.epoch < t._target_epochs:
            if self.batch_iter is None:
                self.begin_epoch()
            while True:
                if control.attention:
                    t._runner.attend()
                self.where = Where.LOADING
                guard.enter()  # interruptible until backward() is done (see nnwidgets._interrupt)
                if self.pending_batch is not None:
                    batch, self.pending_batch = self.pending_batch, None
                else:
                    try:
                        batch = next(self.batch_iter)
                    except StopIteration:
                        guard.open = False
                        control.give_back_step()  # Step pressed at an epoch's end: the next epoch's first step
                        break
                self.epoch_batches += 1
                if self.epoch_batches - 1 == self.poisoned_index and self.skip_poisoned(batch):
                    guard.open = False
                    continue
                self.train_step(batch)
            self.end_epoch()

    def begin_epoch(self) -> None:
        t, prep = self.t, self.t._prepared
        if prep.iterator is not None:
            self.batch_iter, prep.iterator = prep.iterator, None
            self.pending_batch, prep.first_batch = prep.first_batch, None
            if self.ring is None:
                from ..checks.diagnose import batch_ring
                self.ring = batch_ring(self.pending_batch)
        else:
            self.batch_iter = iter(prep.loader)
        t._ledger.new_epoch()
        self.epoch_batches, self.epoch_first_step = 0, t.step
        with t._ledger.own_work():
            self.train_metrics.reset()
        t._bus.fire(Event.EPOCH_STARTED, t, epoch=t.epoch)

    def end_epoch(self) -> None:
        t = self.t
        if not self.flush():
            return  # a non-finite loss: the run pauses; the epoch ends when it resumes
        if self.epoch_batches == 0:
            raise DataError(f"train_data yielded no batches in epoch {t.epoch}; "
                            "a generator can be iterated only once - pass a DataLoader or a list of batches")
        row: dict[str, Any] = {"epoch": t.epoch, "step": t.step, "loss": t._ledger.epoch_mean}
        with t._ledger.own_work():
            row.update(self.train_metrics.compute())
        if t.val_data is not None:
            self.where, self.phase = Where.VALIDATION, "validating"
            t._guard.enter()
            val = self.evaluate(t.val_data)
            t._guard.open = False
            self.phase = "training"
            row.update({f"val_{k}": v for k, v in val.items()})
        row["lr"] = float(t.optimizer.param_groups[0]["lr"])
        row["time_s"] = t._ledger.elapsed()
        with t._ledger.own_work():
            t.history.append_epoch(row)
        if t.val_data is not None:
            t._bus.fire(Event.VALIDATION_COMPLETED, t, epoch=t.epoch, metrics=row)
        t._bus.fire(Event.EPOCH_COMPLETED, t, epoch=t.epoch, metrics=row)
        t.epoch += 1
        self.batch_iter = None
        t._ledger.new_epoch()
        self.epoch_first_step = t.step
        with t._ledger.own_work():
            self.snapshot(force=True)  # every verified epoch end is a rollback target

    # ------------------------------------------------------------------ steps
    def train_step(self, batch: Any) -> None:
        t = self.t
        model, opt, prep = t.model, t.optimizer, t._prepared
        self.where = Where.PREPARING
        if self.ring is not None:
            self.ring.append((t.step, batch))
        x, y = self.canonical(batch, checked=True)
        opt.zero_grad(set_to_none=True)
        self.where = Where.FORWARD
        if t._options.step is None:
            try:
                out = prep.plan.forward(model, x)
            except SkipBatch as skip:  # BatchNorm and a batch of one sample in train mode
                t._guard.open = False
                return self.skipped(skip)
            self.where = Where.LOSS
            try:
                loss = prep.loss_fn(out, y)
            except (IndexError, RuntimeError) as e:  # e.g. a label out of range (CPU): the first batch's error
                guard = prep.plan.guard
                err = guard.current_error(self.stats_now or guard.label_stats(y), t.epoch, t.step) if guard else None
                if err is None:
                    raise
                raise err from e
        else:
            loss, out, y = self.call_custom_step(x if y is None else (x, y))
        self.where = Where.BACKWARD
        loss.backward()
        t._guard.open = False  # from here on the step changes state: an interrupt waits for its end
        ledger, now = t._ledger, time.perf_counter()
        if now - ledger.last_flush >= ledger.flush_interval_s or t.step < self.warm_until:  # Ledger.due, inlined
            if not self.flush(current=loss, now=now):
                if self.batch_iter is not None and self.poisoned_step != t.step:
                    self.pending_batch = batch  # not applied; retried when the run resumes
                return
        self.where = Where.OPTIMIZER
        opt.step()
        ledger.add(loss.detach(), batch_size(y), self.stats_now)
        if out is not None and y is not None:
            self.train_metrics.record(out, y)
        t.step += 1
        t._control.step_granted = False
        bus = t._bus
        if bus.has(Event.BATCH_COMPLETED):
            self.where = Where.HANDLER
            bus.fire(Event.BATCH_COMPLETED, t, step=t.step, epoch=t.epoch)

    def canonical(self, batch: Any, checked: bool = False) -> tuple[Any, Any]:
        """``(x, y)`` of a raw batch as the model and loss take them, on the device."""
        t, prep = self.t, self.t._prepared
        if t._options.step is not None:
            return move_to(batch, t.device), None
        x, y_raw = split_batch(batch)
        x, y = prep.plan.apply(x, y_raw, t.device, t.device.type == "cpu")
        if checked and prep.plan.guard is not None:
            self.stats_now = prep.plan.guard.stats(y_raw, y)
        return x, y

    def fixed_order(self) -> bool:
        """The train loader yields its batches in the same order every epoch (a list or tuple
        of batches, or a map-style DataLoader with a sequential sampler)."""
        from torch.utils.data import DataLoader, IterableDataset, SequentialSampler
        loader = self.t.train_data
        if isinstance(loader, (list, tuple)):
            return True
        return (isinstance(loader, DataLoader) and not isinstance(loader.dataset, IterableDataset)
                and isinstance(loader.sampler, SequentialSampler))

    def skip_poisoned(self, batch: Any) -> bool:
        """At the position of a batch that paused the run for NaN/inf data (fixed-order loader):
        skip it, with a counted notice, if it still holds NaN/inf (one check per epoch)."""
        from ..checks.diagnose import nonfinite_in
        from .verify import skipped_data
        data = nonfinite_in(batch)
        if data is None:
            return False
        skipped_data(self, self.t.step, data)
        return True

    def skipped(self, skip: SkipBatch) -> None:
        t = self.t
        if not any(e["name"] == "batch_skipped" for e in t.history.event_records):  # announced once
            t._record("notice", name="batch_skipped", message=skip_message(skip, t.epoch, t.step))

    def call_custom_step(self, batch: Any) -> tuple[torch.Tensor, Any, Any]:
        t = self.t
        try:
            result = t._options.step(t.model, batch)
        except RuntimeError as e:
            if "backward through the graph a second time" in str(e):
                raise RuntimeError(_OWN_BACKWARD) from e
            raise
        out = y = None
        if isinstance(result, dict):
            loss, out, y = result.get("loss"), result.get("outputs"), result.get("targets")
        else:
            loss = result
        if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
            raise TypeError("the step function must return a scalar loss tensor (or a dict with 'loss', "
                            f"optionally 'outputs' and 'targets'); got {type(loss).__name__}")
        if not loss.requires_grad:
            raise TypeError("the step function returned a loss without a gradient graph: return the loss "
                            "before calling backward() or .item(), and do not compute it under torch.no_grad()")
        if t.step < self.warm_until and any(p.grad is not None for p in t.model.parameters()):
            raise RuntimeError(_OWN_BACKWARD)  # grads were cleared just before: the step filled them
        return loss, out, y

    # ------------------------------------------------------------------ flush and snapshots
    def flush(self, current: torch.Tensor | None = None, now: float | None = None) -> bool:
        """Fetch, verify and commit the buffered steps (:func:`nnwidgets.engine.verify.verify`);
        False when a non-finite loss was found (the run then pauses)."""
        return verify(self, current, now)

    def snapshot(self, force: bool = False, start: bool = False, loss: float | None = None) -> None:
        """A rollback target (:class:`~nnwidgets.engine.rollback.Rollback`), taken only while the
        losses are in range (:mod:`nnwidgets.checks.divergence`), so a blow-up returns to weights
        from before the loss began to climb. ``loss``: these weights' own loss, already seen in
        range (a flush that fetched the current step's loss); without it the snapshot is pending
        until that loss is fetched (:meth:`resolve_snapshot`). ``start``: the weights a run starts
        from, always taken."""
        t = self.t
        if not (self.in_range or start):
            return
        t._rollback.take(t.model, t.optimizer, {
            "step": t.step, "n_hist": t.history.n_steps, "epoch_sums": (t._ledger.epoch_loss, t._ledger.epoch_n),
            "epoch": t.epoch, "n_epochs": len(t.history.epoch_records), "loss": loss},
            force=force or start, pending=loss is None)

    def resolve_snapshot(self, values: Any, first_step: int) -> None:
        """Promote or drop the pending snapshot once its own loss is among ``values`` (the fetched
        losses of steps ``first_step, first_step + 1, ...``)."""
        rollback = self.t._rollback
        marks = rollback.pending_marks
        if marks is None or not first_step <= marks["step"] < first_step + len(values):
            return
        i = marks["step"] - first_step
        rollback.resolve(self.divergence.in_range(values[i:i + 1]), loss=float(values[i]))

    def restore_snapshot(self, keep_iterating: bool = False) -> None:
        """Put the snapshot back. Within the current epoch iteration goes on after the batches
        already consumed; a target at the epoch's start runs the epoch again, unless
        ``keep_iterating`` (a batch with NaN/inf data must not come round again). A rollback
        into an earlier epoch runs that epoch again (the scheduler is not stepped back)."""
        t = self.t
        marks = t._rollback.restore(t.model, t.optimizer)
        if marks is None:
            return
        self.in_range = True  # the target's own loss was in range
        t.history.truncate_steps(marks["n_hist"])
        t.history.truncate_epochs(marks["n_epochs"])
        t.step = marks["step"]
        self.train_metrics.reset()  # train metrics of the epoch restart from the rollback
        if marks["epoch"] == t.epoch and (t.step > self.epoch_first_step or keep_iterating):
            t._ledger.new_epoch(marks["epoch_sums"])  # the target lies inside the current epoch
        else:  # an earlier epoch, or this one's start: run the snapshot's epoch again from its start
            t.epoch = marks["epoch"]
            self.batch_iter = self.pending_batch = None

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, data: Any) -> dict[str, float]:
        """Loss and metrics of the model on ``data`` (see :meth:`Trainer.evaluate`)."""
        t, prep = self.t, self.t._prepared
        if prep is None:
            raise RuntimeError("call fit() or start() first: the task and loss are decided on the first batch")
        from .._metrics import MetricSet
        metrics = self.val_metrics if data is t.val_data else MetricSet(
            prep.task, {k: m.clone() for k, m in prep.metrics.items()}, t.device, prep.threshold)
        with t._ledger.own_work():
            metrics.reset()
        try:
            self.val_done, self.val_total = 0, len(data)
        except TypeError:
            self.val_done, self.val_total = 0, None
        was_training = t.model.training
        t.model.eval()
        total, count = None, 0
        try:
            with torch.no_grad():
                for batch in data:
                    if t._control.stop_requested:
                        from .control import StopRun
                        raise StopRun()
                    x, y = self.canonical(batch)
                    if t._options.step is None:
                        out = prep.plan.forward(t.model, x)
                        loss = prep.loss_fn(out, y)
                    else:
                        result = t._options.step(t.model, x)
                        loss, out, y = (result.get("loss"), result.get("outputs"), result.get("targets")) \
                            if isinstance(result, dict) else (result, None, None)
                    n = batch_size(y)
                    total = loss.detach() * n if total is None else total + loss.detach() * n
                    count += n
                    if out is not None and y is not None:
                        metrics.record(out, y)
                    self.val_done += 1
        finally:
            t.model.train(was_training)
        result = {"loss": float(total) / count if count else math.nan}
        with t._ledger.own_work():
            result.update(metrics.compute())
        return result
