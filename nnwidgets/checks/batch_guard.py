"""Every batch keeps to what the first batch decided: label range, 0/1 targets, one-hot rows.

The first batch decides the task and the target form (:mod:`nnwidgets.checks.targets`); a later batch
can break that decision: a BCE target of 2.0 (trains on a negative loss), multi-hot rows after
one-hot ones (``argmax`` keeps one class), a label beyond the output width, a fractional value in
float labels that are cast to int64, or a regression target whose first batch happened to be all
0/1. :class:`TargetGuard` checks each training batch with one or two reductions on the device
(``torch.aminmax``, ``torch.count_nonzero``); their 0-d results are kept with the buffered
losses and fetched in the same transfer (:func:`fetch`), so there is no host sync per step.
Measured per step on one CPU thread (torch 2.13, timeit min of 7, busy 2-core machine; targets of
a 16 x 8 quickstart batch with 3 classes / a 128 x 784 batch with 10): int64 labels 1.7-2.5 /
2.2-3.6 us; 0/1 targets 4.6-5.4 / 4.3-9.1 us; one-hot rows 6-9 us; float labels 4-10 us;
regression targets 0 (nothing is checked); plus ~0.1 us of list appends and 0.7-1.5 us per step
at the flush (stacking the stats columns).

A broken batch raises :class:`~nnwidgets.data.DataError` with the code and text the first batch
would get, naming the batch (epoch, step), and the run fails: found at the batch being trained
(every step of the first ten, then the last batch of each ~0.1 s flush) it was never applied;
found at an earlier, applied batch the weights go back to the last verified snapshot (as for a
non-finite loss) and the message says so. On CPU a label beyond the output width already makes
PyTorch's ``CrossEntropyLoss`` / ``NLLLoss`` raise inside the loss: there the guard is *lazy*
(no per-step reduction at all: int64 labels of the quickstart cost 0 us a step) and the range is
read from the failing batch to replace that error by the same text. Limits: on CUDA such a
label trips a device-side assert before the deferred check can speak; a negative label other than
the loss's ``ignore_index`` hides behind an ``ignore_index`` in the same batch (only min/max are
fetched); validation batches are not checked. The target's dtype is checked on the host (free).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .._notices import DataError

__all__ = ["TargetGuard", "target_guard", "fetch", "label_range_error", "binary_values_error", "where"]


def where(epoch: int | None = None, step: int | None = None) -> str:
    """``"the first batch"`` or ``"the batch at epoch 2, step 40"``."""
    return "the first batch" if step is None else f"the batch at epoch {epoch}, step {step}"


def label_range_error(lo: int, hi: int, width: int, name: str, at: str) -> DataError | None:
    """The error for class labels outside ``[0, width - 1]`` (None when they are inside)."""
    if lo < 0:
        return DataError(f"Class labels must lie in [0, {width - 1}], but {at} has negative labels "
                         f"(min {lo}, max {hi}). Remap them to 0..{width - 1}, e.g. "
                         "y = torch.unique(y, return_inverse=True)[1].", "negative_labels")
    if lo >= 1 and hi == width:
        return DataError(f"Class labels look 1-based: {at} has labels {lo}..{hi}, but with C={width} "
                         f"outputs {name} needs 0..{width - 1}. Shift them: y = y - 1 (or df['label'] - 1).",
                         "labels_one_based")
    if hi >= width:
        return DataError(f"Class label {hi} is out of range: {at} has labels min {lo}, max {hi}, but the model "
                         f"outputs C={width} values per sample, so labels must lie in [0, {width - 1}]. Either "
                         f"make the last layer output {hi + 1} values (nn.Linear(..., {hi + 1})), or remap the "
                         f"labels to 0..{width - 1}.", "labels_out_of_range")
    return None


def binary_values_error(found: str, name: str, at: str, inferred: bool) -> DataError:
    """The error for targets of a binary run that are not all 0 or 1; ``found`` describes them."""
    hint = (" The task was inferred from float targets that were all 0/1 in the first batch: if they are "
            "values to predict, pass task='regression' (or loss='mse')." if inferred else "")
    return DataError(f"{name} needs targets in {{0, 1}}, but {at} has {found}.{hint} Fix: labels 1/2 -> y - 1; "
                     "labels -1/+1 -> (y + 1) / 2; more than 2 classes -> task='multiclass' with "
                     "nn.CrossEntropyLoss().", "binary_target_values")


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.4g}"


@dataclass(slots=True)
class TargetGuard:
    """Per-batch checks of a run's targets, decided on the first batch.

    Attributes:
        kind: ``"labels"`` (int64 class indices ``(N, ...)``), ``"float_labels"`` (float labels
            cast to int64: also no fractional values), ``"onehot"`` (rows ``(N, C, ...)`` turned
            into indices: each row one 1, the rest 0) or ``"binary"`` (0/1 targets).
        dtype: dtype of the first batch's targets as loaded.
        cast: the plan casts the targets (a later dtype of the same kind is then fine).
        width: output width C (classes).
        ignore: the loss's ``ignore_index`` (labels equal to it are not checked).
        name: the loss's name for messages (``"CrossEntropyLoss"``).
        inferred: the task came from float 0/1 targets (messages suggest task='regression').
    """

    kind: str
    dtype: torch.dtype
    cast: bool
    width: int
    ignore: int | None
    name: str
    inferred: bool = False
    lazy: bool = False

    def stats(self, y_raw: torch.Tensor, y: torch.Tensor) -> tuple:
        """0-d device tensors describing one batch (no host sync); the hot path.

        Args:
            y_raw: the targets as loaded, e.g. ``(N, C)`` one-hot rows.
            y: the targets after the plan, e.g. ``(N,)`` int64.

        Raises:
            DataError: ``target_dtype_changed``: the dtype differs from the first batch's
                (e.g. int64 labels, then float64), checked on the host.
        """
        if y_raw.dtype is not self.dtype:
            self._dtype_changed(y_raw)
        kind = self.kind
        if self.lazy:
            return ()
        if y.numel() == 0:  # an empty batch: a row of NaN, which error() skips
            nan = torch.full((), math.nan, device=y.device)
            return (nan, nan) if kind == "labels" else (nan, nan, nan) if kind != "onehot" else (nan, nan, nan, 0)
        if kind == "labels":
            return torch.aminmax(y)
        if kind == "binary":
            return (*torch.aminmax(y), torch.count_nonzero(torch.frac(y)))
        if kind == "float_labels":
            return (*torch.aminmax(y), torch.count_nonzero(torch.frac(y_raw)))
        sums = y_raw.sum(1)  # onehot: rows summing to 1 with exactly one non-zero value each
        return (*torch.aminmax(sums), torch.count_nonzero(y_raw), sums.numel())  # rows: a host int

    def _dtype_changed(self, y_raw: torch.Tensor) -> None:
        same_kind = y_raw.is_floating_point() == self.dtype.is_floating_point and y_raw.dtype != torch.bool
        if not (self.cast and same_kind and self.dtype != torch.bool):
            raise DataError(f"Targets changed dtype: the first batch had {self.dtype}, a later batch has "
                            f"{y_raw.dtype} {list(y_raw.shape)}. Build every batch the same way, e.g. "
                            f"y = y.to({self.dtype}) in the Dataset or collate function.", "target_dtype_changed")

    def error(self, row, epoch: int, step: int) -> DataError | None:
        """The error for one batch's fetched stats (a row of floats), or None when it is fine."""
        if not len(row) or math.isnan(row[0]):
            return None
        at = where(epoch, step)
        if self.kind == "onehot":
            lo, hi, nonzero, rows = row
            if lo == hi == 1 and nonzero == rows:
                return None
            return DataError(f"Targets were one-hot rows over {self.width} classes in the first batch, but {at} has "
                             f"rows that are not (row sums min {_num(lo)}, max {_num(hi)}): argmax would keep one "
                             "class of a multi-hot row. For multi-label targets use nn.BCEWithLogitsLoss() "
                             "(task='binary'); for one class per sample fix the rows, or pass class indices "
                             "y.argmax(dim=1) yourself.", "onehot_rows")
        lo, hi = row[0], row[1]
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return None  # NaN/inf targets: the non-finite loss reports them (nnwidgets._poison)
        if self.kind == "binary":
            if lo >= 0 and hi <= 1 and row[2] == 0:
                return None
            found = (f"values outside 0/1 (min {_num(lo)}, max {_num(hi)})" if lo < 0 or hi > 1
                     else f"{int(row[2])} values between 0 and 1 (not 0 or 1)")
            return binary_values_error(found, self.name, at, self.inferred)
        if self.kind == "float_labels" and row[2] > 0:
            return DataError(f"{self.name} needs int64 class indices, but {at} has {int(row[2])} fractional float "
                             "labels (the first batch had whole numbers, which are cast to int64). If these are "
                             "class labels, fix them; if they are values to predict, use task='regression' "
                             "(MSELoss).", "fractional_labels")
        lo, hi = int(lo), int(hi)
        if self.ignore is not None and lo == self.ignore:
            lo = 0 if hi >= 0 else hi  # ignore_index rows (e.g. -100) are not labels
        return label_range_error(lo, hi, self.width, self.name, at)

    def first_error(self, stats: np.ndarray | None, epoch: int, first_step: int) -> tuple[int, DataError] | None:
        """``(row index, error)`` of the first broken batch in fetched ``stats`` ``(K, S)``."""
        if stats is None:
            return None
        for i, row in enumerate(stats):
            err = self.error(row, epoch, first_step + i)
            if err is not None:
                return i, err
        return None

    def label_stats(self, y: torch.Tensor) -> tuple:
        """``stats`` of a batch's labels ``y`` even when :attr:`lazy` (a host sync: error paths only)."""
        return torch.aminmax(y) if self.kind == "labels" and y.numel() else ()

    def current_error(self, stats: tuple, epoch: int, step: int) -> DataError | None:
        """The error of the batch being trained (reads its stats: a host sync; for error paths)."""
        if not stats:
            return None
        return self.error([float(s) for s in stats], epoch, step)


def target_guard(task: str, loss_fn, y: torch.Tensor, y_ops: tuple, width: int, name: str,
                 inferred: bool, device: torch.device | None = None) -> TargetGuard | None:
    """The guard for a run's first target batch and its planned ops (None: nothing to check,
    e.g. regression). ``device``: where training runs (CPU with ``CrossEntropyLoss`` /
    ``NLLLoss`` and int64 labels: a :attr:`TargetGuard.lazy` guard, no per-step cost)."""
    ops = [op for op, _ in y_ops]
    if task == "multiclass":
        kind = "onehot" if "argmax" in ops else "float_labels" if y.is_floating_point() else "labels"
    elif task == "binary":
        kind = "binary"
    else:
        return None
    ignore = getattr(loss_fn, "ignore_index", None)
    lazy = (kind == "labels" and device is not None and device.type == "cpu"
            and isinstance(loss_fn, (torch.nn.CrossEntropyLoss, torch.nn.NLLLoss)))
    return TargetGuard(kind, y.dtype, "to" in ops, width, ignore if isinstance(ignore, int) else None, name,
                       inferred and y.is_floating_point(), lazy)


def fetch(losses: list, rows: list) -> tuple[np.ndarray, np.ndarray | None]:
    """Losses ``(K,)`` and the guard's stats ``(K, S)`` as float32 numpy, in one device-to-host
    transfer. ``rows`` are the guard's tuples (all ``()`` when nothing is checked) of 0-d tensors
    and host ints; a tensor column on another device than the losses (CPU targets of a CUDA run)
    is moved as one stacked tensor."""
    vals = torch.stack(losses).float()
    if not rows or not rows[0]:
        return vals.cpu().numpy(), None
    columns = list(zip(*rows))
    on_device = [i for i, c in enumerate(columns) if isinstance(c[0], torch.Tensor)]
    cols = [torch.stack(columns[i]).float().to(vals.device) for i in on_device]
    flat = torch.cat([vals, *cols]).cpu().numpy()
    k = len(losses)
    stats = np.empty((k, len(columns)), dtype=np.float32)
    for j, i in enumerate(on_device):
        stats[:, i] = flat[k * (j + 1):k * (j + 2)]
    for i in set(range(len(columns))) - set(on_device):
        stats[:, i] = columns[i]
    return flat[:k], stats
