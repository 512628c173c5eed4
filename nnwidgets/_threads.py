"""The torch intra-op thread count of the thread that runs the training loop.

Why it is nnwidgets' job (measured on a 2-core machine, torch 2.13, OpenMP backend): a loop run
outside the thread that configured torch (``Trainer.start()``, what ``%%train`` runs) gets an
OpenMP team of its own. Once the main thread has a team too, libgomp manages more threads than
there are cores and stops spinning between parallel regions, so the same loop ran at 0.3–0.5 of
its main-thread speed under torch's default thread count; with a browser drawing the panel on
the same cores, 2 threads fell to 0.02–0.05 (a parallel region waits for a descheduled thread),
while 1 thread kept 0.9–1.1. Which count is faster depends on the model and on what else runs,
so ``threads="auto"`` measures it.

``threads="auto"`` (CPU runs): the loop starts with 1 thread, then times windows of at least
``WINDOW_S`` seconds of committed steps (pauses excluded) alternating between 1 thread and
torch's count for that thread (1, n, 1, n, 1, n: ``PROBES`` windows each; after one window of
each when one count is ``CLEAR_WIN`` times faster) and keeps the one with the higher median
rate, preferring 1 unless n is ``PREFER_MORE`` faster (fewer threads leave cores to the kernel and the browser). Every
``REPROBE_S`` seconds of running it times one window of the other count and switches when that
is ``SWITCH_GAIN`` faster than the count in use. Each decision is a notice. ``threads=n`` uses
n threads; ``threads=None`` leaves torch's setting alone. On CUDA/MPS nothing is changed.

``torch.set_num_threads`` sets the OpenMP count of the calling thread (and the default for
threads torch starts later), so the loop's thread sets it for itself and puts its starting value
back when the run ends.
"""
from __future__ import annotations

import statistics
from typing import Any

import torch

__all__ = ["ThreadTuner", "WINDOW_S", "PROBES", "CLEAR_WIN", "REPROBE_S", "PREFER_MORE", "SWITCH_GAIN"]

WINDOW_S = 0.4       # one timed window of committed steps (0.25 s windows mis-chose on W2)
PROBES = 3           # windows per count in the first probe
CLEAR_WIN = 2.0      # ... unless the first window of each count differs this much
REPROBE_S = 30.0     # running seconds between re-checks of the other count
PREFER_MORE = 1.05   # more threads must be this much faster to be chosen
SWITCH_GAIN = 1.15   # a re-check switches when the other count is this much faster


def _threads(n: int) -> str:
    return f"{n} torch thread{'s' * (n != 1)}"


def _rate(steps: int, seconds: float) -> float:
    return steps / seconds if seconds > 0 else 0.0


class ThreadTuner:
    """Chooses and applies the torch thread count of the loop's thread.

    Call :meth:`begin` and :meth:`end` in the thread that runs the loop, and :meth:`observe`
    there after every commit of steps to the history (never per step).

    Args:
        setting: ``"auto"``, a thread count ``>= 1``, or ``None`` (leave torch's setting).
        window_s, reprobe_s: see the module docstring (seconds).

    Raises:
        ValueError: ``setting`` is none of the above.

    Example:
        >>> tuner = ThreadTuner("auto")            # doctest: +SKIP
        >>> tuner.begin(torch.device("cpu"))       # in the loop's thread  # doctest: +SKIP
    """

    def __init__(self, setting: Any = "auto", window_s: float = WINDOW_S, reprobe_s: float = REPROBE_S) -> None:
        if not (setting is None or setting == "auto" or (isinstance(setting, int) and not isinstance(setting, bool)
                                                          and setting >= 1)):
            raise ValueError(f"threads must be 'auto', a thread count >= 1 or None, got {setting!r}")
        self.setting, self.window_s, self.reprobe_s = setting, float(window_s), float(reprobe_s)
        self.threads: int | None = None   # the count in use while a run runs
        self.chosen: int | None = None    # the count an auto run decided on (kept across runs)
        self.rates: dict[int, float] = {}  # steps/s of the newest timed windows per count
        self._original: int | None = None
        self._plan: list[int] = []
        self._samples: dict[int, list[float]] = {}
        self._win_steps, self._win_s, self._since_check = 0, 0.0, 0.0
        self._candidates: tuple[int, int] = (1, 1)
        self.decided_now = False

    # ------------------------------------------------------------------ run boundaries
    def begin(self, device: torch.device) -> str | None:
        """Apply the starting count for a run on ``device``; returns a notice or ``None``."""
        self._original = None
        if self.setting is None or device.type != "cpu":
            self.threads = None
            return None
        self._original = torch.get_num_threads()
        if self.setting != "auto":
            self._use(int(self.setting))
            return None if self.setting == self._original else (
                f"training uses {_threads(self.setting)} (threads={self.setting}; "
                f"torch's setting here is {self._original})")
        self._candidates = (1, max(1, self._original))
        if self.chosen is not None:  # a later run of the same trainer: keep the decision, re-check later
            self._use(self.chosen)
            self._plan, self._since_check = [], 0.0
        else:
            self._use(1)
            self._plan = [1, self._candidates[1]] * PROBES if self._candidates[1] > 1 else []
            self._samples = {}
        self._win_steps, self._win_s = 0, 0.0
        return None

    def end(self) -> None:
        """Put the thread count the run started with back (call in the loop's thread)."""
        if self._original is not None and torch.get_num_threads() != self._original:
            torch.set_num_threads(self._original)
        self._original, self.threads = None, None

    # ------------------------------------------------------------------ measurement
    @property
    def probing(self) -> bool:
        """True during the first probe of an ``"auto"`` run (the count changes window by window)."""
        return bool(self._plan)

    def observe(self, steps: int, seconds: float) -> str | None:
        """Account ``steps`` committed in ``seconds`` of running wall time; may change the
        count between two steps. Returns a notice when a decision was taken, else ``None``
        (:attr:`decided_now` tells whether it ended the first probe)."""
        self.decided_now = False
        if self.setting != "auto" or self.threads is None or self._candidates[1] == 1 or steps <= 0:
            return None
        self._win_steps += steps
        self._win_s += seconds
        if self._win_s < self.window_s:
            return None
        rate = _rate(self._win_steps, self._win_s)
        self._win_steps, self._win_s = 0, 0.0
        self.rates[self.threads] = rate
        if self._plan:  # the first probe of this trainer
            self._samples.setdefault(self._plan.pop(0), []).append(rate)
            if self._plan and not self._clear_winner():
                self._use(self._plan[0])
                return None
            self._plan = []
            return self._decide()
        if self.chosen is None:
            return None
        self._since_check += self.window_s
        if self.threads != self.chosen:  # the re-check window of the other count just ended
            other, other_rate = self.threads, rate
            current_rate = self._samples.get(self.chosen, [0.0])[-1]
            if other_rate > SWITCH_GAIN * current_rate:
                old, self.chosen = self.chosen, other
                self._use(other)
                return (f"training switched from {_threads(old)} to {_threads(other)}: {other_rate:,.0f} steps/s "
                        f"with {_threads(other)} against {current_rate:,.0f} steps/s with {_threads(old)} "
                        "(re-checked while running)")
            self._use(self.chosen)
            return None
        self._samples[self.chosen] = [rate]
        if self._since_check >= self.reprobe_s:
            self._since_check = 0.0
            self._use(self._candidates[1] if self.chosen == 1 else 1)
        return None

    def _clear_winner(self) -> bool:
        """One window of each count, and one is ``CLEAR_WIN`` times faster: no need for more
        (a browser drawing on 2 cores made 2 threads 2-100x slower; those windows are costly)."""
        rates = [v[0] for v in self._samples.values()]
        return len(rates) == 2 and max(rates) > CLEAR_WIN * min(rates)

    def _decide(self) -> str:
        one, many = self._candidates
        rate = {n: statistics.median(v) for n, v in self._samples.items()}
        self._probe_s = sum(len(v) for v in self._samples.values()) * self.window_s
        self.chosen = many if rate[many] > PREFER_MORE * rate[one] else one
        other = many if self.chosen == one else one
        self._samples = {n: [r] for n, r in rate.items()}
        self._use(self.chosen)
        self._since_check = 0.0
        self.decided_now = True
        return (f"training uses {_threads(self.chosen)}: {rate[self.chosen]:,.0f} steps/s with {_threads(self.chosen)} "
                f"against {rate[other]:,.0f} steps/s with {_threads(other)}, measured over the first "
                f"{self._probe_s:.1f} s (threads='auto'; Trainer(threads=n) or %%train --threads n "
                "fixes the count, threads=None leaves torch's setting)")

    def _use(self, n: int) -> None:
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
        self.threads = n
