"""Per-split metric state: torchmetrics objects fed canonical predictions in batches.

Per step the loop only keeps references to detached outputs and targets (no host
sync, no torchmetrics call); at each flush they are concatenated and given to the
torchmetrics objects in one ``update``. One ``MetricSet`` per split (train, val), reset at
the start of every epoch, so an epoch's value is ``compute()`` over that epoch only.

Defaults: classification ``accuracy`` = correct / total (torchmetrics ``Accuracy`` with
``average="micro"``); regression ``mae`` (mean absolute error) and ``r2`` (coefficient of
determination, torchmetrics ``R2Score``).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torchmetrics
from torch import nn

from .checks.targets import Notice, _last_leaf, loss_name

__all__ = ["MetricSet", "default_metrics", "binary_threshold"]


def default_metrics(task: str, width: int, macro: bool = False) -> dict[str, torchmetrics.Metric]:
    """Metrics shown for ``task`` with a model output of ``width`` columns.

    ``macro=True`` adds ``accuracy_macro`` (mean of per-class recall), labelled as such.
    Inputs are checked once on the first batch (``nnwidgets.data``), so torchmetrics' own
    per-update validation is turned off (``validate_args=False``).
    """
    if task == "multiclass":
        out = {"accuracy": torchmetrics.Accuracy(task="multiclass", num_classes=width, average="micro",
                                                 validate_args=False)}
        if macro:
            out["accuracy_macro"] = torchmetrics.Accuracy(task="multiclass", num_classes=width, average="macro",
                                                          validate_args=False)
        return out
    if task == "binary":
        return {"accuracy": torchmetrics.Accuracy(task="binary", validate_args=False)}
    return {"mae": torchmetrics.MeanAbsoluteError(), "r2": torchmetrics.R2Score()}


def binary_threshold(model: nn.Module, loss_fn) -> tuple[float, Notice]:
    """The threshold above which a binary output counts as class 1, and a notice saying why.

    0.5 when the outputs are probabilities: the model's last layer is ``nn.Sigmoid``, or the loss
    takes probabilities (``nn.BCELoss`` / ``F.binary_cross_entropy``); else 0 (logits, e.g. for
    ``nn.BCEWithLogitsLoss``: ``sigmoid(z) > 0.5`` exactly when ``z > 0``). Thresholding
    probabilities at 0 would count every sample as positive (case C29).

    Returns:
        ``(threshold, Notice("binary_threshold", ...))``.
    """
    name = loss_name(loss_fn) if loss_fn is not None else "BCEWithLogitsLoss"
    sigmoid = isinstance(_last_leaf(model), nn.Sigmoid)
    takes_probs = isinstance(loss_fn, nn.BCELoss) or loss_fn is F.binary_cross_entropy
    if sigmoid or takes_probs:
        why = "the model ends in nn.Sigmoid" if sigmoid else f"{name} takes probabilities"
        return 0.5, Notice("binary_threshold", f"Binary accuracy counts an output > 0.5 as class 1: {why}, so the "
                           "outputs are probabilities (thresholding them at 0 would count every sample as positive).")
    return 0.0, Notice("binary_threshold", f"Binary accuracy counts an output > 0 as class 1: the model's outputs are "
                       f"logits for {name} (sigmoid(logit) > 0.5 exactly when logit > 0).")


def canonical_predictions(task: str, output: torch.Tensor, threshold: float = 0.0) -> torch.Tensor:
    """Predictions torchmetrics can take unambiguously: class indices ``(N,)`` for
    multiclass (argmax of logits, log-probabilities or probabilities alike), 0/1 ints ``(N,)``
    for binary (output > ``threshold``: 0 for logits, 0.5 for probabilities; decided once
    from the model and loss rather than per batch by torchmetrics), and the raw values
    ``(N,)`` for regression."""
    if task == "multiclass":
        return output.argmax(1)
    if task == "binary":
        return (output > threshold).long().reshape(-1)
    return output.reshape(-1)


class MetricSet:
    """The metrics of one split. ``record`` is called per step, ``flush`` per refresh.

    ``threshold``: binary outputs above it count as class 1 (see :func:`binary_threshold`).
    """

    def __init__(self, task: str, metrics: dict[str, torchmetrics.Metric], device: torch.device,
                 threshold: float = 0.0) -> None:
        self.task, self.threshold = task, float(threshold)
        self.metrics = {name: m.to(device) for name, m in metrics.items()}
        self._updated = False
        self._preds: list[torch.Tensor] = []
        self._targets: list[torch.Tensor] = []

    def to(self, device: torch.device) -> None:
        """Move the metric state (after a device change)."""
        self.flush()
        for m in self.metrics.values():
            m.to(device)

    def record(self, output: torch.Tensor, target: torch.Tensor) -> None:
        """Keep this batch's detached outputs and targets (no compute, no sync); the
        predictions are derived for all recorded batches at once in :meth:`flush`."""
        if self.task == "multiclass" and output.ndim == 1:  # one unbatched sample: logits (C,), target ()
            output, target = output.unsqueeze(0), target.reshape(1)
        self._preds.append(output.detach())
        self._targets.append(target.detach() if target.requires_grad else target)

    def flush(self) -> None:
        """Feed everything recorded since the last flush to torchmetrics in one update each."""
        if not self._preds:
            return
        outputs, targets = torch.cat(self._preds), torch.cat(self._targets)
        self._preds, self._targets = [], []
        preds = canonical_predictions(self.task, outputs, self.threshold)
        if self.task != "multiclass":
            targets = targets.reshape(-1)
        if self.task == "binary":
            targets = targets.long()
        for m in self.metrics.values():
            m.update(preds, targets)
        self._updated = True

    def compute(self) -> dict[str, float]:
        """Epoch values as Python floats (NaN where a metric had too few samples, e.g. R2 of one)."""
        self.flush()
        out: dict[str, float] = {}
        for name, m in self.metrics.items():
            if not self._updated:
                out[name] = math.nan
                continue
            try:
                out[name] = float(m.compute())
            except (ValueError, RuntimeError, ZeroDivisionError):
                out[name] = math.nan
        return out

    def discard_pending(self) -> None:
        """Drop batches recorded since the last flush (their steps were not applied)."""
        self._preds, self._targets = [], []

    def reset(self) -> None:
        """Forget the epoch: recorded batches and torchmetrics state."""
        self._preds, self._targets = [], []
        self._updated = False
        for m in self.metrics.values():
            m.reset()

    def names(self) -> list[str]:
        """Metric names in display order."""
        return list(self.metrics)
