"""How fast the loop runs, and how fast it would run alone: the overhead the user really gets.

The loop's thread reports every commit of steps to the history (every ~0.1 s, never per step)
with the wall seconds it took (pauses excluded), the CPU seconds of the loop's own thread over
the same window (``time.thread_time()``) and the CPU seconds of nnwidgets' own work in it
(flushes, gradient statistics, snapshots, per-epoch metrics and history rows; CPU, not wall
time, which would count waiting for the GIL as work). Over the last ``window_s`` seconds::

    steps_per_s        = steps / wall
    alone_steps_per_s  = steps / (cpu - own)          # the model's work, with a core to itself
    overhead           = 1 - steps_per_s / alone_steps_per_s = 1 - (cpu - own) / wall

Time the loop's thread spends waiting (for the GIL held by the panel's thread, for a core taken
by the browser or the kernel, for a descheduled OpenMP thread) is wall time without CPU time,
so it counts as overhead, as does nnwidgets' own work. The model's work is the thread's CPU
time: with several torch threads it leaves out the other threads' share of each parallel
region, which the loop waits for with a core of its own.

What it cannot see (measured with ``benchmarks/dashboard.py``): the loop's per-step Python work
beside the model (~1-2 % on a 0.5 ms step), and a loop that is slower alone than a main-thread
loop would be (a background thread that must use 1 torch thread where the main thread used 2).
"""
from __future__ import annotations

import collections
from dataclasses import dataclass

__all__ = ["Speed", "SpeedMeter"]


@dataclass(frozen=True)
class Speed:
    """One reading of the loop's speed (see the module docstring for the formulas).

    Attributes:
        steps_per_s: optimizer steps per wall-clock second, recent.
        alone_steps_per_s: steps per second of the model's own work (CPU time of the loop's
            thread less nnwidgets' own work): the rate with nothing else running.
        overhead: ``1 - steps_per_s / alone_steps_per_s``, clipped to ``[0, 1]``.
        own_share: nnwidgets' own work over wall time (``0..1``).
        threads: torch threads of the loop's thread (``None`` when left to torch).
    """

    steps_per_s: float
    alone_steps_per_s: float
    overhead: float
    own_share: float
    threads: int | None = None


class SpeedMeter:
    """Sliding window of ``(steps, wall s, cpu s, own s)`` commits; :attr:`speed` is read from
    any thread (an immutable :class:`Speed`, replaced as a whole).

    Args:
        window_s: seconds of running time the reading covers.
    """

    def __init__(self, window_s: float = 5.0) -> None:
        self.window_s = float(window_s)
        self.speed: Speed | None = None
        self._windows: collections.deque = collections.deque()
        self._sums = [0, 0.0, 0.0, 0.0]

    def reset(self) -> None:
        """Forget the windows so far (the reading starts again with the next commit)."""
        self._windows.clear()
        self._sums = [0, 0.0, 0.0, 0.0]

    def observe(self, steps: int, wall_s: float, cpu_s: float, own_s: float, threads: int | None = None) -> None:
        """Add one commit window; drop the oldest ones beyond ``window_s`` (at least one is kept)."""
        if steps <= 0 or wall_s <= 0:
            return
        item = (steps, wall_s, cpu_s, own_s)
        self._windows.append(item)
        self._sums = [a + b for a, b in zip(self._sums, item)]
        while len(self._windows) > 1 and self._sums[1] - self._windows[0][1] >= self.window_s:
            old = self._windows.popleft()
            self._sums = [a - b for a, b in zip(self._sums, old)]
        steps, wall, cpu, own = self._sums
        work = max(cpu - own, 1e-9)
        rate, alone = steps / wall, steps / work
        self.speed = Speed(steps_per_s=rate, alone_steps_per_s=max(alone, rate),
                           overhead=min(1.0, max(0.0, 1.0 - work / wall)), own_share=min(1.0, own / wall),
                           threads=threads)
