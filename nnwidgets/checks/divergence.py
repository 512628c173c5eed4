"""A loss that blows up by orders of magnitude, caught before it reaches inf/NaN.

The loss of a run whose learning rate is too high does not jump to inf in one step: it grows by
orders of magnitude first (``2.2e4 → 1.3e12 → inf`` in case C12), and the weights of those last
finite steps are already ruined. :class:`DivergenceWatch` reads the losses the ledger fetches at
each flush (host numbers: it adds no device work and no sync) and answers two questions:

- :meth:`DivergenceWatch.first_diverged`: is one of them a blow-up? A finite loss over
  ``FACTOR`` (1,000) times the run's starting level (the median of its first ``START_STEPS``
  finite step losses) is one. The starting level is that of the untrained model, so a loss a
  thousand times over it is no minibatch noise: a classifier at ``ln(10) ≈ 2.3`` is called
  diverged above 2,300.
- :meth:`DivergenceWatch.in_range`: may the weights after these losses be kept as a rollback
  target? Only when every loss of the window is within ``IN_RANGE`` (10) times the starting
  level. So the snapshot that a blow-up returns to holds weights from before the loss began to
  climb, not the diverging weights one step before the inf.

The thresholds follow the usual practice of divergence guards (e.g. Keras' ``TerminateOnNaN``
only sees NaN; PyTorch Lightning's ``EarlyStopping(divergence_threshold=...)`` takes an absolute
value): here the level is relative to the run's own start, so MSE on targets of scale 1e5 and a
cross-entropy near 2.3 get the same rule without a setting.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["DivergenceWatch", "FACTOR", "IN_RANGE", "START_STEPS"]

FACTOR = 1e3  # a finite loss over FACTOR x the starting level has diverged
IN_RANGE = 10.0  # weights after losses all within IN_RANGE x the starting level are a rollback target
START_STEPS = 16  # the starting level is the median of this many first finite losses


class DivergenceWatch:
    """The starting loss level of a trainer and the two tests against it (host floats only).

    Attributes:
        start: median of the first ``START_STEPS`` finite, positive step losses seen (None before
            the first one). Kept across runs of the same trainer: a resumed run is judged against
            the level its model started from.
    """

    def __init__(self) -> None:
        self._first: list[float] = []
        self.start: float | None = None
        self._judged_by: float | None = None  # the level the last blow-up was judged against

    def observe(self, values: np.ndarray) -> None:
        """Add committed step losses (a 1-d float array) to the starting level until it holds
        ``START_STEPS`` of them. Call after :meth:`first_diverged` found none among them."""
        if len(self._first) >= START_STEPS:
            return
        for v in values[: START_STEPS - len(self._first)]:
            if math.isfinite(v) and v > 0:
                self._first.append(float(v))
        if self._first:
            self.start = float(np.median(self._first))

    def limit(self) -> float | None:
        """The loss over which a step counts as diverged (None while no level is known)."""
        return None if self.start is None else FACTOR * self.start

    def first_diverged(self, values: np.ndarray) -> int | None:
        """Index of the first finite loss in ``values`` over :meth:`limit`, or None.

        The first losses of a trainer set the level as they are read, so a blow-up within the
        very first window (C12: step 0 at 2.2e4, step 1 at 1.3e12) is still caught."""
        start = self.start
        for i, v in enumerate(values):
            v = float(v)
            if not math.isfinite(v):
                return None  # a non-finite loss comes first: reported as such
            if start is not None and v > FACTOR * start:
                self._judged_by = start
                return i
            if start is None and v > 0:
                start = v
        return None

    def in_range(self, values: np.ndarray) -> bool:
        """Whether every loss in ``values`` is finite and within ``IN_RANGE`` x the starting level
        (True while no level is known: the untrained model's weights are always a fair target)."""
        if self.start is None or not len(values):
            return True
        top = float(np.max(values))
        return math.isfinite(top) and top <= IN_RANGE * self.start

    def describe(self, value: float) -> str:
        """``"1.27e+12, 5.9e+07x its starting level 2.16e+04"`` for a ``value`` that
        :meth:`first_diverged` found (judged against the level it used: the first losses of the
        same window when no level was known yet)."""
        start = self._judged_by if self._judged_by is not None else self.start
        if start is None:
            return f"{value:.3g}"
        return f"{value:.3g}, {value / start:.2g}x its starting level {start:.3g}"
