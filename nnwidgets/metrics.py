"""What a view needs to know to draw a metric: its range, which way is better, its label.

A chart must not guess from a metric's name how to draw it. Each metric key of the history
(``accuracy``, ``val_f1``, ...) has a :class:`MetricInfo`: from the torchmetrics object when the
metric is one (its ``higher_is_better``, ``plot_lower_bound``, ``plot_upper_bound``), else from
the table of known names here, else "unbounded, lower is better" (like a loss).

Add a metric: pass ``metrics={"f1": torchmetrics.F1Score(...)}`` to the Trainer; its facts come
from torchmetrics and it lands on the chart's bounded 0-1 axis with no chart code. A metric that
is not a torchmetrics object gets its facts from a line in ``KNOWN``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["MetricInfo", "KNOWN", "metric_info"]


@dataclass(frozen=True)
class MetricInfo:
    """Display facts of one metric.

    Attributes:
        low, high: the range values can take (``None``: unbounded on that side). A metric with
            both is drawn on a fixed axis, values clipped into ``[low, high]`` (R² below -1 is
            drawn at -1).
        higher_is_better: ``True`` for accuracy-like scores, ``False`` for errors and losses.
        label: the name on the axis (``"R²"``, ``"MAE"``).
        unit: the unit of the values (``""`` for none, ``"%"``, ...).
    """

    low: float | None = None
    high: float | None = None
    higher_is_better: bool = False
    label: str = ""
    unit: str = ""

    @property
    def bounded(self) -> bool:
        """Both ends are known: the chart's fixed score axis."""
        return self.low is not None and self.high is not None

    def clip(self, v: float) -> float:
        """``v`` clipped into ``[low, high]`` (NaN stays NaN)."""
        if math.isnan(v):
            return v
        if self.low is not None:
            v = max(v, self.low)
        if self.high is not None:
            v = min(v, self.high)
        return v


_SCORE = dict(low=0.0, high=1.0, higher_is_better=True)
# base name (no "val_" prefix) -> facts; the first part of a name ("f1" of "f1_macro") also matches
KNOWN: dict[str, MetricInfo] = {
    "accuracy": MetricInfo(**_SCORE, label="accuracy"),
    "accuracy_macro": MetricInfo(**_SCORE, label="accuracy_macro"),
    "f1": MetricInfo(**_SCORE, label="f1"),
    "precision": MetricInfo(**_SCORE, label="precision"),
    "recall": MetricInfo(**_SCORE, label="recall"),
    "auroc": MetricInfo(**_SCORE, label="auroc"),
    "specificity": MetricInfo(**_SCORE, label="specificity"),
    "jaccard": MetricInfo(**_SCORE, label="jaccard"),
    "r2": MetricInfo(low=-1.0, high=1.0, higher_is_better=True, label="R²"),
    "mae": MetricInfo(label="MAE"),
    "mse": MetricInfo(label="MSE"),
    "rmse": MetricInfo(label="RMSE"),
    # torchmetrics.MeanAbsolutePercentageError: lower is better, 0 to unbounded. Its values are
    # fractions (0.05 means 5 %), not percent, so no "%" unit: a view adding the unit would show 0.05 %
    "mape": MetricInfo(low=0.0, label="MAPE"),
    "loss": MetricInfo(label="loss"),
}


def metric_info(name: str, metric: Any = None) -> MetricInfo:
    """Facts of metric ``name`` (a history key; a ``val_`` prefix is ignored).

    Args:
        name: e.g. ``"val_accuracy"``, ``"f1"``.
        metric: the torchmetrics object behind it, if known: its ``higher_is_better`` and
            ``plot_lower_bound`` / ``plot_upper_bound`` are used.

    Returns:
        A :class:`MetricInfo` (unbounded, lower is better, label = name, for an unknown name).
    """
    base = name.removeprefix("val_")
    known = KNOWN.get(base) or KNOWN.get(base.split("_")[0])
    if metric is not None and getattr(metric, "higher_is_better", None) is not None:
        low, high = getattr(metric, "plot_lower_bound", None), getattr(metric, "plot_upper_bound", None)
        if known is not None and known.bounded and (low is None or high is None):
            low, high = known.low, known.high
        return MetricInfo(low, high, bool(metric.higher_is_better), known.label if known else base,
                          known.unit if known else "")
    if known is not None:
        return known if known.label == base or base in KNOWN else MetricInfo(
            known.low, known.high, known.higher_is_better, base, known.unit)
    return MetricInfo(label=base)
