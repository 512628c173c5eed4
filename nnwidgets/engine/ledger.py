"""The loss ledger: losses kept on the device per step, fetched together, checked, counted.

Per step (the hot path) the loop only appends to three lists (:meth:`Ledger.add`): the
detached 0-d loss tensor, the batch size and the target guard's 0-d device stats. Every
``flush_interval_s`` seconds (and at each of the first steps) :meth:`Ledger.fetch` brings them
to the host in one transfer (``torch.stack(...).cpu()``) with the step not yet applied, and
finds the first non-finite loss (``np.isfinite``); :meth:`Ledger.commit` adds the applied
ones to the epoch's sums and to the timing.

Timing (seconds of ``time.perf_counter``; CPU seconds of ``time.thread_time`` of the loop's
thread): wall time of committed windows gives the mean seconds per step
(:attr:`Ledger.step_time`); nnwidgets' own work (flushes, gradient statistics, per-epoch
bookkeeping) is charged with :meth:`Ledger.charge` / :meth:`Ledger.own_work`, and
:class:`~nnwidgets._speed.SpeedMeter` turns each window into the speed reading.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from .._speed import SpeedMeter
from ..checks.batch_guard import fetch

__all__ = ["Ledger", "Fetched"]


@dataclass(frozen=True)
class Fetched:
    """One transfer of buffered losses.

    Attributes:
        values: ``(k,)`` float64 losses; the first ``applied`` were applied steps, a last one
            beyond them is the current step's (not applied yet).
        stats: ``(k, m)`` float64 target-guard stats per step, or ``None`` without a guard.
        applied: how many of ``values`` belong to applied steps.
        bad: index of the first non-finite value, or ``None``.
    """

    values: np.ndarray
    stats: np.ndarray | None
    applied: int
    bad: int | None


class Ledger:
    """Buffered losses, the epoch's loss sums and the run's timing.

    Args:
        flush_interval_s: seconds between fetches (:meth:`due`).

    Attributes:
        losses, counts, stats: the buffer (0-d loss tensors, batch sizes, guard stats per step).
        epoch_loss, epoch_n: sum of loss x batch size and of batch sizes committed this epoch.
        t_start: ``perf_counter`` of the run's start, moved back by the earlier runs' wall time.
        last_flush, last_commit_t: ``perf_counter`` of the last fetch and of the last commit.
        run_wall: wall seconds of all runs so far (kept between runs).
        tool_time, tool_cpu: wall and CPU seconds of nnwidgets' own work.
        step_time: mean wall seconds per committed step (``None`` before the first commit).
        meter: the :class:`~nnwidgets._speed.SpeedMeter`.
    """

    def __init__(self, flush_interval_s: float = 0.1) -> None:
        self.flush_interval_s = float(flush_interval_s)
        self.losses: list = []
        self.counts: list = []
        self.stats: list = []
        self.epoch_loss, self.epoch_n = 0.0, 0
        self.t_start = self.last_flush = self.last_commit_t = time.perf_counter()
        self.run_wall = self.tool_time = self.tool_cpu = 0.0
        self.step_time: float | None = None
        self._timed = [0.0, 0]  # wall seconds and steps of every committed window
        self._marks = (0.0, 0.0)  # CPU seconds of the thread and of own work at the window's start
        self.meter = SpeedMeter()

    # ------------------------------------------------------------------ per step
    def add(self, loss: torch.Tensor, n: int, stats: tuple) -> None:
        """Buffer one applied step: its detached 0-d loss, batch size and guard stats."""
        self.losses.append(loss)
        self.counts.append(n)
        self.stats.append(stats)

    def due(self, now: float) -> bool:
        """``flush_interval_s`` has passed since the last fetch."""
        return now - self.last_flush >= self.flush_interval_s

    # ------------------------------------------------------------------ flush
    def fetch(self, current: torch.Tensor | None = None, current_stats: tuple = ()) -> Fetched | None:
        """All buffered losses (and ``current``, the loss of a step not applied yet) in one
        transfer, with the index of the first non-finite one; ``None`` when there is nothing."""
        applied = len(self.losses)
        tensors = self.losses + ([current.detach()] if current is not None else [])
        if not tensors:
            return None
        values, stats = fetch(tensors, self.stats + ([current_stats] if current is not None else []))
        bad = np.flatnonzero(~np.isfinite(values))
        return Fetched(values, stats, applied, int(bad[0]) if len(bad) else None)

    def commit(self, losses: np.ndarray, now: float, threads: int | None = None) -> tuple[float, float]:
        """Count the first ``len(losses)`` buffered steps as done (epoch sums, timing, speed) and
        empty the buffer. Returns ``(t_prev, t_now)``, the window in seconds since ``t_start``."""
        counts = np.asarray(self.counts[:len(losses)], dtype=np.float64)
        self.epoch_loss += float((losses * counts).sum())
        self.epoch_n += int(counts.sum())
        window = (self.last_commit_t - self.t_start, now - self.t_start)
        # seconds per step over every committed window (one short window alone would be far off)
        wall = now - self.last_commit_t
        self._timed[0] += wall
        self._timed[1] += len(losses)
        self.step_time = self._timed[0] / self._timed[1] if self._timed[1] else None
        self.last_commit_t = now
        self.discard()
        cpu, own = self._marks
        self.mark_window()
        self.meter.observe(len(losses), wall, self._marks[0] - cpu, self._marks[1] - own, threads)
        return window

    def discard(self) -> None:
        """Empty the buffer (steps rolled back, or a run that failed)."""
        self.losses, self.counts, self.stats = [], [], []

    def new_epoch(self, sums: tuple[float, int] = (0.0, 0)) -> None:
        """Start the epoch's loss sums (again, from ``sums`` after a rollback)."""
        self.epoch_loss, self.epoch_n = sums

    @property
    def epoch_mean(self) -> float:
        """Mean training loss per sample of the epoch's committed steps (NaN with none)."""
        return self.epoch_loss / self.epoch_n if self.epoch_n else float("nan")

    # ------------------------------------------------------------------ timing
    def start_run(self) -> None:
        """A run starts: wall time goes on counting from the earlier runs' total."""
        now = self.last_flush = self.last_commit_t = time.perf_counter()
        self.t_start = now - self.run_wall
        self.mark_window()

    def end_run(self) -> None:
        self.run_wall = time.perf_counter() - self.t_start

    def restart_window(self) -> None:
        """Time not spent stepping (a pause, the first-batch checks) is no step time."""
        self.last_commit_t = self.last_flush = time.perf_counter()
        self.mark_window()

    def mark_window(self) -> None:
        """Start a timing window: CPU seconds of the loop's thread and of own work so far.
        Own work is counted in CPU seconds: its wall time includes waiting for the GIL."""
        self._marks = (time.thread_time(), self.tool_cpu)

    def charge(self, t0: float, c0: float) -> float:
        """Count the time since ``perf_counter() == t0`` / ``thread_time() == c0`` as own work;
        returns its wall seconds."""
        wall = time.perf_counter() - t0
        self.tool_time += wall
        self.tool_cpu += time.thread_time() - c0
        return wall

    @contextlib.contextmanager
    def own_work(self) -> Iterator[None]:
        """Count the block's CPU seconds as own work (per-epoch bookkeeping a hand-written loop
        does not do: metrics, snapshots, history rows)."""
        c0 = time.thread_time()
        try:
            yield
        finally:
            self.tool_cpu += time.thread_time() - c0

    def elapsed(self) -> float:
        """Seconds since the (first) run started, pauses between runs excluded."""
        return time.perf_counter() - self.t_start

    def overhead(self, active: bool) -> float:
        """Own work over wall time, ``0..1`` (of the running run, or of all runs when idle)."""
        wall = self.elapsed() if active else self.run_wall
        return self.tool_time / wall if wall > 0 else 0.0
