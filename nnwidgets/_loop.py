"""The one training loop, shared by ``Trainer.fit()`` (blocking) and ``Trainer.start()``
(background thread). Mixed into :class:`nnwidgets.engine.Trainer`.

Per step (the hot path) the loop does only what a hand-written loop does, plus list
appends: ``zero_grad(set_to_none=True) → forward → loss → backward → step``. Losses stay
on the device as detached scalars; every ``flush_interval_s`` (0.1 s, and at every one of
the first ``WARMUP_STEPS`` steps) they are fetched in one transfer, checked with
``isfinite``, and appended to the history. A flush happens *before* the current step's
``optimizer.step()``, so a non-finite loss found there is never applied.

Each batch's targets are also checked against the first batch's decisions
(:mod:`nnwidgets._batch_guard`): 0-d device results kept beside the losses and fetched in the
same transfer. A broken batch fails the run with the first batch's error naming its epoch and
step; found at the current batch it was never applied, found at an earlier one the weights are
rolled back to the last verified snapshot, as for a non-finite loss. A non-finite loss whose
batch holds NaN/inf is reported as a data problem and that batch is skipped on resume
(:mod:`nnwidgets._diagnose`).
"""
from __future__ import annotations

import contextlib
import math
import time
from typing import Any, Iterator

import numpy as np
import torch

from ._batch_guard import fetch
from ._diagnose import NONFINITE_FIXES, batch_ring, find_batch, nonfinite_in, nonfinite_message
from ._model_checks import SkipBatch, skip_message
from ._setup import move_to
from .data import DataError, split_batch
from .events import Event

__all__ = ["LoopMixin", "WARMUP_STEPS", "GRAD_BUDGET", "SNAPSHOT_INTERVAL_S", "NONFINITE_FIXES"]

WARMUP_STEPS = 10     # steps flushed one by one at the start of a run (first points, exact NaN step)
GRAD_BUDGET = 0.01    # gradient statistics may take at most this share of step time
SNAPSHOT_INTERVAL_S = 1.0  # rollback copies of the weights are refreshed at most this often

_OWN_BACKWARD = ("the step function called loss.backward() itself; return the loss instead - "
                 "nnwidgets calls zero_grad(), backward() and optimizer.step()")


def _batch_size(y: Any) -> int:
    """Samples in a batch: the first dimension of the target (1 for a 0-d or missing one)."""
    return int(y.shape[0]) if isinstance(y, torch.Tensor) and y.ndim else 1


class StopRun(Exception):
    """Raised inside the loop to end a run at a step boundary."""


class PauseRun(Exception):
    """Raised inside a blocking ``fit()`` to return control to the caller paused."""


class LoopMixin:
    """Epochs, steps, flushes and validation. State lives on the Trainer."""

    _schedule = None  # nnwidgets._schedule.SchedulePlan of a run with a scheduler
    _per_step = None  # its per-step callable (a per-batch scheduler), else None
    _ring = None      # the last raw batches, (step, batch), inspected when a loss is non-finite
    _stats_now: tuple = ()  # the target guard's stats of the batch being trained
    _poisoned_step = None   # a step whose batch holds NaN/inf: not retried on resume

    # ------------------------------------------------------------------ epochs
    def _run_epochs(self) -> None:
        while self.epoch < self._target_epochs:
            if self._batch_iter is None:
                self._begin_epoch()
            while True:
                if self._attention:
                    self._attend()
                self._phase = "loading a batch"
                self._guard.enter()  # interruptible until backward() is done (see nnwidgets._interrupt)
                if self._pending_batch is not None:
                    batch, self._pending_batch = self._pending_batch, None
                else:
                    try:
                        batch = next(self._batch_iter)
                    except StopIteration:
                        self._guard.open = False
                        if self._step_granted:  # Step pressed at an epoch's end: the step is the next epoch's first
                            with self._ctl:
                                self._steps_allowed += 1
                                self._step_granted, self._attention = False, True
                        break
                self._epoch_batches += 1
                self._train_step(batch)
            self._end_epoch()

    def _begin_epoch(self) -> None:
        prep = self._prepared
        if prep.iterator is not None:
            self._batch_iter, prep.iterator = prep.iterator, None
            self._pending_batch, prep.first_batch = prep.first_batch, None
            if self._ring is None:
                self._ring = batch_ring(self._pending_batch)
        else:
            self._batch_iter = iter(prep.loader)
        self._epoch_loss_sum, self._epoch_n, self._epoch_steps, self._epoch_batches = 0.0, 0, 0, 0
        self._epoch_first_step = self.step
        with self._own_work():
            self._train_metrics.reset()
        self._epoch_t0 = time.perf_counter()
        self._bus.fire(Event.EPOCH_STARTED, self, epoch=self.epoch)

    def _end_epoch(self) -> None:
        if not self._flush():
            return  # a non-finite loss: the run pauses; the epoch ends when it resumes
        if self._epoch_batches == 0:
            raise DataError(f"train_data yielded no batches in epoch {self.epoch}; "
                            "a generator can be iterated only once - pass a DataLoader or a list of batches")
        row: dict[str, Any] = {"epoch": self.epoch, "step": self.step,
                               "loss": self._epoch_loss_sum / self._epoch_n if self._epoch_n else math.nan}
        with self._own_work():
            row.update(self._train_metrics.compute())
        if self.val_data is not None:
            self._phase = "validation"
            self._guard.enter()
            val = self.evaluate(self.val_data)
            self._guard.open = False
            row.update({f"val_{k}": v for k, v in val.items()})
        row["lr"] = float(self.optimizer.param_groups[0]["lr"])
        row["time_s"] = time.perf_counter() - self._t_start
        with self._own_work():
            self.history.append_epoch(row)
        if self.val_data is not None:
            self._bus.fire(Event.VALIDATION_COMPLETED, self, epoch=self.epoch, metrics=row)
        self._bus.fire(Event.EPOCH_COMPLETED, self, epoch=self.epoch, metrics=row)
        if self._schedule is not None:
            self._schedule.epoch_end(row)
        self.epoch += 1
        self._batch_iter = None
        self._epoch_loss_sum, self._epoch_n, self._epoch_first_step = 0.0, 0, self.step
        with self._own_work():
            self._snapshot(force=True)  # every verified epoch end is a rollback target (~2 copies of the weights)

    # ------------------------------------------------------------------ steps
    def _train_step(self, batch: Any) -> None:
        model, opt = self.model, self.optimizer
        self._phase = "preparing the batch"
        if self._ring is not None:
            self._ring.append((self.step, batch))
        x, y = self._canonical(batch, checked=True)
        opt.zero_grad(set_to_none=True)
        self._phase = "forward pass (model)"
        if self._custom_step is None:
            try:
                out = self._prepared.plan.forward(model, x)
            except SkipBatch as skip:  # BatchNorm and a batch of one sample in train mode
                self._guard.open = False
                return self._skipped(skip)
            self._phase = "loss"
            try:
                loss = self._loss_fn(out, y)
            except (IndexError, RuntimeError) as e:  # e.g. a label out of range (CPU): the first batch's error
                guard = self._prepared.plan.guard
                err = guard.current_error(self._stats_now, self.epoch, self.step) if guard else None
                if err is None:
                    raise
                raise err from e
        else:
            loss, out, y = self._call_custom_step(x if y is None else (x, y))
        self._phase = "backward pass"
        loss.backward()
        self._guard.open = False  # from here on the step changes state: an interrupt waits for its end
        now = time.perf_counter()
        if now - self._last_flush >= self.flush_interval_s or self.step < self._warm_until:
            if not self._flush(current=loss, now=now):
                if self._batch_iter is not None and self._poisoned_step != self.step:
                    self._pending_batch = batch  # not applied; retried when the run resumes
                return
        self._phase = "optimizer step"
        opt.step()
        if self._per_step is not None:
            self._per_step()
        self._loss_buf.append(loss.detach())
        self._n_buf.append(_batch_size(y))
        self._stat_buf.append(self._stats_now)
        if out is not None and y is not None:
            self._train_metrics.record(out, y)
        self.step += 1
        self._epoch_steps += 1
        self._step_granted = False
        if self.step >= self._next_grad_step:
            self._sample_gradients()
        if self._bus.has(Event.BATCH_COMPLETED):
            self._phase = "a BATCH_COMPLETED handler"
            self._bus.fire(Event.BATCH_COMPLETED, self, step=self.step, epoch=self.epoch)

    def _canonical(self, batch: Any, checked: bool = False) -> tuple[Any, Any]:
        if self._custom_step is not None:
            return move_to(batch, self.device), None
        x, y_raw = split_batch(batch)
        plan = self._prepared.plan
        x, y = plan.apply(x, y_raw, self.device, self._on_cpu)
        if checked and plan.guard is not None:
            self._stats_now = plan.guard.stats(y_raw, y)
        return x, y

    def _skipped(self, skip: SkipBatch) -> None:
        if not any(e["name"] == "batch_skipped" for e in self.history.event_records):  # announced once
            self._record("notice", name="batch_skipped", message=skip_message(skip, self.epoch, self.step))

    def _call_custom_step(self, batch: Any) -> tuple[torch.Tensor, Any, Any]:
        try:
            result = self._custom_step(self.model, batch)
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
        if self.step < self._warm_until and any(p.grad is not None for p in self.model.parameters()):
            raise RuntimeError(_OWN_BACKWARD)  # grads were cleared just before: the step filled them
        return loss, out, y

    # ------------------------------------------------------------------ flush
    def _flush(self, current: torch.Tensor | None = None, now: float | None = None) -> bool:
        """Fetch buffered losses (and the current, not yet applied one) in one transfer,
        check them, commit the applied steps to the history. Returns False when the current
        or an earlier loss is non-finite (the run then pauses)."""
        t0, c0 = time.perf_counter(), time.thread_time()
        now = t0 if now is None else now
        applied = len(self._loss_buf)
        tensors = self._loss_buf + ([current.detach()] if current is not None else [])
        if tensors:
            values, stats = fetch(tensors, self._stat_buf + ([self._stats_now] if current is not None else []))
            bad = np.flatnonzero(~np.isfinite(values))
            guard = self._prepared.plan.guard if self._prepared is not None and self._prepared.plan else None
            broken = guard.first_error(stats, self.epoch, self.step - applied) if guard is not None else None
            if broken is not None and (not len(bad) or broken[0] < bad[0]):
                self._broken(*broken, values, applied)
            if len(bad):
                self._nonfinite(int(bad[0]), values, applied)
                self._tool_time += time.perf_counter() - t0
                self._tool_cpu += time.thread_time() - c0
                return False
            if applied:
                self._commit(values[:applied], now)
        self._train_metrics.flush()
        self._snapshot()
        self._last_flush = now
        self._bus.fire(Event.METRICS_FLUSHED, self, step=self.step)
        self._tool_time += time.perf_counter() - t0
        self._tool_cpu += time.thread_time() - c0
        return True

    def _commit(self, losses: np.ndarray, now: float) -> None:
        counts = np.asarray(self._n_buf, dtype=np.float64)
        self._epoch_loss_sum += float((losses * counts).sum())
        self._epoch_n += int(counts.sum())
        t_prev = self._last_commit_t - self._t_start
        lr = self._schedule.used_lrs(len(losses)) if self._schedule is not None else \
            float(self.optimizer.param_groups[0]["lr"])
        self.history.append_steps(self.epoch, losses, lr, t_prev, now - self._t_start)
        # seconds per step, averaged over every committed window of the trainer (a single short
        # window, e.g. an epoch-end flush right after a timed one, would be far off)
        wall = now - self._last_commit_t
        self._timed_s += wall
        self._timed_steps += len(losses)
        self._step_time = self._timed_s / self._timed_steps if self._timed_steps else None
        self._last_commit_t = now
        self._loss_buf, self._n_buf, self._stat_buf = [], [], []
        cpu, own = self._cpu_mark, self._own_mark
        self._mark_window()
        self._meter.observe(len(losses), wall, self._cpu_mark - cpu, self._own_mark - own,
                            None if self._tuner.probing else self._tuner.threads)
        notice = self._tuner.observe(len(losses), wall) if self.step >= self._warm_until else None
        if notice and self._tuner.decided_now:
            self._meter.reset()  # the probe's slow windows are a measurement, not the run's speed
        if notice:
            self._record("notice", name="threads", message=notice)

    @contextlib.contextmanager
    def _own_work(self) -> Iterator[None]:
        """Count the block's CPU seconds as nnwidgets' own work in :attr:`Trainer.speed` (per-epoch
        bookkeeping a hand-written loop does not do: metrics, snapshots, history rows)."""
        c0 = time.thread_time()
        try:
            yield
        finally:
            self._tool_cpu += time.thread_time() - c0

    def _mark_window(self) -> None:
        """Start a timing window: CPU seconds of the loop's thread and of nnwidgets' own work
        so far (read in the loop's thread; the wall-clock mark is ``_last_commit_t``). Own work
        is counted in CPU seconds too: its wall time includes waiting for the GIL."""
        self._cpu_mark, self._own_mark = time.thread_time(), self._tool_cpu

    def _broken(self, index: int, error: Exception, values: np.ndarray, applied: int) -> None:
        """A batch broke a first-batch decision: keep the verified steps before it, never apply
        it, and fail the run with ``error`` (what the weights are now appended)."""
        if index < applied:  # it was applied: go back to the last verified weights
            self._restore_snapshot()
            self._train_metrics.discard_pending()
            kept = f"that batch had been applied, so the run rolled back to the weights before step {self.step}"
        else:
            if applied:
                self._commit(values[:applied], time.perf_counter())
            self._train_metrics.flush()
            kept = "the run stopped before applying that batch; " + (
                f"the weights after step {self.step - 1} are kept" if self.step else "the initial weights are kept")
        self._loss_buf, self._n_buf, self._stat_buf = [], [], []
        error.args = (f"{error} Training failed: {kept}.",)
        raise error

    def _nonfinite(self, index: int, values: np.ndarray, applied: int) -> None:
        first_step = self.step - applied + index
        kind = "nan" if math.isnan(values[index]) else "inf"
        batch = find_batch(self._ring, first_step)
        data = nonfinite_in(batch) if batch is not None else None  # NaN/inf in the batch itself (syncs)
        self._poisoned_step = first_step if data is not None else None
        if index < applied:  # a bad step was already applied: go back to the last verified weights
            self._restore_snapshot(keep_iterating=data is not None)
            self._train_metrics.discard_pending()
            kept = f"rolled back to the weights before step {self.step}"
        else:
            if applied:
                self._commit(values[:applied], time.perf_counter())
            self._train_metrics.flush()
            kept = f"the weights after step {self.step - 1} are kept" if self.step else "the initial weights are kept"
        self._loss_buf, self._n_buf, self._stat_buf = [], [], []
        self.optimizer.zero_grad(set_to_none=True)
        scale = getattr(self._prepared, "scale", None)
        msg = nonfinite_message(kind, first_step, self.epoch, kept, self.settings, data, batch is not None,
                                scale.hint() if scale is not None else None)
        self._record("nonfinite", name="loss" if data is None else "data", new=kind, message=msg)
        self._pause_requested = True
        self._attention = True

    # ------------------------------------------------------------------ snapshots
    def _snapshot(self, force: bool = False) -> None:
        """Copy weights, buffers and optimizer state after a verified flush: the rollback
        target when a non-finite loss is found after it was applied. Taken at the start of a
        run, at every epoch end, and within an epoch at most every ``SNAPSHOT_INTERVAL_S``,
        into preallocated tensors
        (``copy_``, no allocation). A rollback into an earlier epoch runs that epoch again
        (the scheduler is not stepped back)."""
        now = time.perf_counter()
        if not force and now - self._snap_t < SNAPSHOT_INTERVAL_S:
            return
        self._snap_t = now
        with torch.no_grad():
            tensors = list(self.model.parameters()) + list(self.model.buffers())
            for p, st in self.optimizer.state.items():
                tensors += [v for v in st.values() if torch.is_tensor(v)]
            old = self._snap
            if old is None or len(old["tensors"]) != len(tensors) or any(
                    a.shape != b.shape or a.device != b.device for a, b in zip(old["tensors"], tensors)):
                copies = [t.detach().clone() for t in tensors]
            else:
                copies = old["tensors"]
                for c, t in zip(copies, tensors):
                    c.copy_(t)
            # optimizer state entries in the order their tensors were appended above;
            # non-tensor values (e.g. an int step count) are kept as they are
            entries = [(p, k, None if torch.is_tensor(v) else v)
                       for p, st in self.optimizer.state.items() for k, v in st.items()]
            self._snap = {"step": self.step, "n_hist": self.history.n_steps, "tensors": copies,
                          "opt_entries": entries, "epoch_sums": (self._epoch_loss_sum, self._epoch_n),
                          "epoch": self.epoch, "n_epochs": len(self.history.epoch_records)}

    def _restore_snapshot(self, keep_iterating: bool = False) -> None:
        """Put the snapshot back. Within the current epoch iteration goes on after the batches
        already consumed; a target at the epoch's start runs the epoch again, unless
        ``keep_iterating`` (a batch with NaN/inf data must not come round again)."""
        snap = self._snap
        if snap is None:
            return
        saved = iter(snap["tensors"])
        with torch.no_grad():
            for t in list(self.model.parameters()) + list(self.model.buffers()):
                t.copy_(next(saved))
            self.optimizer.state.clear()
            for p, k, plain in snap["opt_entries"]:
                self.optimizer.state[p][k] = next(saved).clone() if plain is None else plain
        self.history.truncate_steps(snap["n_hist"])
        self.history.truncate_epochs(snap["n_epochs"])
        self.step = snap["step"]
        self._train_metrics.reset()  # train metrics of the epoch restart from the rollback
        if snap["epoch"] == self.epoch and (self.step > self._epoch_first_step or keep_iterating):
            # the target lies inside the current epoch: its loss sums go back, iteration goes on
            self._epoch_loss_sum, self._epoch_n = snap["epoch_sums"]
            self._epoch_steps = self.step - self._epoch_first_step
        else:  # an earlier epoch, or this one's start: run the snapshot's epoch again from its start
            self.epoch = snap["epoch"]
            self._batch_iter = self._pending_batch = None

    # ------------------------------------------------------------------ gradients
    def _sample_gradients(self) -> None:
        if self._probe is None:
            self._next_grad_step = math.inf
            return
        t0, c0 = time.perf_counter(), time.thread_time()
        sample = self._probe.to_host(self._probe.compute())
        self.history.append_gradients(self.step, self._probe.layer_names, sample.norms, sample.hist, sample.edges)
        cost = time.perf_counter() - t0
        self._tool_time += cost
        self._tool_cpu += time.thread_time() - c0
        every = self.grad_every
        if every == "auto":
            every = 10 if self._step_time is None else math.ceil(cost / (GRAD_BUDGET * max(self._step_time, 1e-6)))
        self._next_grad_step = self.step + max(1, min(int(every), 10_000))
        self._bus.fire(Event.GRADIENTS_SAMPLED, self, step=self.step)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, data: Any) -> dict[str, float]:
        """Loss and metrics of the model on ``data`` under ``eval()`` and ``no_grad()``.

        The model's previous train/eval mode is restored afterwards (also on errors).
        Loss is the mean over samples (weighted by batch size). Stop requests are honoured
        between batches.

        Returns:
            ``{"loss": float, <metric>: float, ...}``.
        """
        if self._prepared is None:
            raise RuntimeError("call fit() or start() first: the task and loss are decided on the first batch")
        from ._metrics import MetricSet
        metrics = self._val_metrics if data is self.val_data else MetricSet(
            self.task, {k: m.clone() for k, m in self._prepared.metrics.items()}, self.device,
            self._prepared.threshold)
        with self._own_work():
            metrics.reset()
        was_training, phase = self.model.training, getattr(self, "phase", None)
        self.model.eval()
        total, count = None, 0
        n_batches = len(data) if hasattr(data, "__len__") else None
        self.phase, self.val_progress = "validating", (0, n_batches)  # read by the panel's status
        try:
            with torch.no_grad():
                for done, batch in enumerate(data, 1):
                    if self._stop_requested:
                        raise StopRun()
                    x, y = self._canonical(batch)
                    if self._custom_step is None:
                        out = self._prepared.plan.forward(self.model, x)
                        loss = self._loss_fn(out, y)
                    else:
                        result = self._custom_step(self.model, x)
                        loss, out, y = (result.get("loss"), result.get("outputs"), result.get("targets")) \
                            if isinstance(result, dict) else (result, None, None)
                    n = _batch_size(y)
                    total = loss.detach() * n if total is None else total + loss.detach() * n
                    count += n
                    if out is not None and y is not None:
                        metrics.record(out, y)
                    self.val_progress = (done, n_batches)  # Python ints: no host sync
        finally:
            self.model.train(was_training)
            self.phase, self.val_progress = phase, None
        result = {"loss": float(total) / count if count else math.nan}
        with self._own_work():
            result.update(metrics.compute())
        return result
