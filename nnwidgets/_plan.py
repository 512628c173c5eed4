"""The per-batch plan: feature and target fixes decided on the first batch, replayed on every batch.

Built by :func:`plan_batches` (public through :mod:`nnwidgets.data`); the loop calls
:meth:`BatchPlan.apply` and :meth:`BatchPlan.forward` per step: a few attribute checks, no host sync.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .checks.casts import cast_expr
from .checks.inputs import InputPlan, pick_output
from .checks.loss_checks import align_loss, check_loss_value, check_nll_input
from .checks.model_checks import BATCHNORM_ONE_SAMPLE, SkipBatch
from .checks.targets import _DEFAULT_LOSS, LOSS_NAMES, DataError, Notice, apply_target_ops, plan_targets, resolve_task

__all__ = ["BatchPlan", "plan_batches", "prepare_features"]


def _param_dtype(model: nn.Module, model_dtype: torch.dtype | None) -> torch.dtype:
    if model_dtype is not None:
        return model_dtype
    from ._names import model_dtype as lookup
    return lookup(model)


def prepare_features(model: nn.Module, x, model_dtype: torch.dtype | None = None):
    """Cast integer / float64 features to the model's dtype, before the first forward.

    Args:
        model: The model; its first floating parameter gives the dtype when
            ``model_dtype`` is None.
        x: Features, e.g. ``(N, F)`` int64 from ``df.values``. Non-tensors
            (dicts, tuples of inputs) pass through unchecked; integer ids stay
            integer when the model has an ``nn.Embedding``.
        model_dtype: Parameter dtype, e.g. ``torch.float32``.

    Returns:
        ``(x, notices)``; a ``cast_features`` notice when a cast was done.

    Raises:
        DataError: ``feature_dtype`` for bool/complex features;
            ``nonfinite_features`` for NaN/inf in the first batch.
    """
    if not isinstance(x, torch.Tensor):
        return x, []
    want = _param_dtype(model, model_dtype)
    if x.dtype == torch.bool or x.is_complex():
        raise DataError(f"Features have dtype {x.dtype}, shape {list(x.shape)}; the model expects {want}. "
                        f"Fix: x = x.to({want}) (or torch.tensor(df.values, dtype={want})).", "feature_dtype")
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        bad = (~torch.isfinite(x)).sum().item()
        cols = (~torch.isfinite(x)).any(0).nonzero().flatten()[:8].tolist() if x.dim() == 2 else []
        raise DataError(f"The first feature batch contains {bad} NaN/inf values" + (f" (columns {cols})" if cols
                        else "") + "; the loss would be NaN from step 1. Fix: df.dropna() or df.fillna(...) "
                        "before building tensors.", "nonfinite_features")
    if x.dtype == want or (not x.is_floating_point() and any(
            isinstance(m, (nn.Embedding, nn.EmbeddingBag)) for m in model.modules())):
        return x, []  # integer token ids for an embedding stay integer
    notice = Notice("cast_features", f"Features are {x.dtype} but the model's parameters are {want} "
                    f"(nn.Linear would fail with 'mat1 and mat2 must have the same dtype'); cast them to {want} "
                    f"on every batch. Fix in PyTorch: x = {cast_expr('x', want)}, or torch.tensor(df.values, dtype={want}).")
    return x.to(want), [notice]


@dataclass(slots=True)
class BatchPlan:
    """Operations decided on the first batch, replayed cheaply on every batch.

    Attributes:
        notices: What was fixed (list of :class:`Notice`), for ``History.events``.
        x_dtype: Feature dtype to cast to (None: features are not one tensor).
        y_ops: Target operations, ``(name, arg)`` pairs (``argmax``, ``squeeze``,
            ``reshape`` to a tail shape, ``to`` a dtype); relative to the batch
            size, so the last, smaller batch works too.
        inputs: How nested inputs (tuple/list/dict of tensors) are moved, cast and passed
            (:class:`nnwidgets.checks.inputs.InputPlan`); None for one tensor.
        pick: Which element of a tuple/dict/object output is the output (None: a tensor).
        norms: The model's BatchNorm layers (None without): a batch of one sample in train
            mode is run with their buffers saved, and skipped (:class:`SkipBatch`) when refused.
        guard: The per-batch target checks (:class:`nnwidgets.checks.batch_guard.TargetGuard`, set by
            the Trainer; None: none).
    """

    notices: list
    x_dtype: torch.dtype | None
    y_ops: tuple
    inputs: InputPlan | None = None
    pick: tuple | None = None
    norms: list | None = None
    guard: Any = None

    def apply(self, x, y, device: torch.device | None = None, on_cpu: bool = True):
        """Return ``(x, y)`` on ``device`` (None: where they are) and canonicalised: features
        cast, targets reshaped / cast. No checks and no host sync."""
        if self.inputs is not None:
            x = self.inputs.apply(x, device, on_cpu) if device is not None else x
        elif device is not None and not (on_cpu and x.is_cpu):
            x = x.to(device, non_blocking=True)
        if device is not None and not (on_cpu and y.is_cpu):
            y = y.to(device, non_blocking=True)
        if self.x_dtype is not None and x.dtype != self.x_dtype:
            x = x.to(self.x_dtype)
        if self.y_ops:
            y = apply_target_ops(y, self.y_ops)
        return x, y

    def forward(self, model: nn.Module, x) -> torch.Tensor:
        """``model(x)`` (or ``model(*x)`` / ``model(**x)``) and the planned output tensor.

        Raises:
            SkipBatch: BatchNorm refused a batch of one sample in train mode; the BatchNorm
                buffers are as before the call.
        """
        if self.norms and model.training and _rows(x) == 1:
            return self._forward_one(model, x)
        out = model(x) if self.inputs is None else self.inputs.call_model(model, x)
        return out if self.pick is None else pick_output(out, self.pick)

    def _forward_one(self, model: nn.Module, x) -> torch.Tensor:
        buffers = [b for m in self.norms for b in m.buffers()]
        saved = [b.clone() for b in buffers]  # the layers before the failing one count the batch
        try:
            out = model(x) if self.inputs is None else self.inputs.call_model(model, x)
        except ValueError as e:
            if BATCHNORM_ONE_SAMPLE not in str(e):
                raise
            with torch.no_grad():
                for b, s in zip(buffers, saved):
                    b.copy_(s)
            raise SkipBatch(str(e)) from e
        return out if self.pick is None else pick_output(out, self.pick)


def _rows(x) -> int:
    """Samples in a batch of inputs: the first dimension of the (first) tensor."""
    if isinstance(x, dict):
        x = next(iter(x.values()), None)
    elif isinstance(x, (tuple, list)):
        x = x[0] if x else None
    return int(x.shape[0]) if isinstance(x, torch.Tensor) and x.ndim else 1


def plan_batches(model: nn.Module, x, y, output: torch.Tensor, task: str, loss_fn,
                 model_dtype: torch.dtype | None = None) -> BatchPlan:
    """Check the first batch against the model output and loss; plan the per-batch fixes.

    Args:
        model: The model (its dtype, its last layer).
        x: First feature batch, raw or as returned by :func:`prepare_features`.
        y: First target batch as loaded.
        output: ``model(x)`` on the first batch (under ``no_grad``), e.g. ``(N, C)``.
        task: ``"multiclass"``, ``"binary"``, ``"regression"`` or ``"auto"``.
        loss_fn: The loss from :func:`make_loss` (None: the task's default).
        model_dtype: Parameter dtype; None reads it from the model.

    Returns:
        A :class:`BatchPlan`; its ``notices`` do not repeat those of
        :func:`prepare_features` (nor of :func:`resolve_task` unless task is "auto").

    Raises:
        DataError: ``batch_size_mismatch``, ``feature_dtype``, ``nonfinite_features``, ``output_width``,
            ``target_shape``, ``target_dtype``, ``fractional_labels``, ``soft_targets``, ``negative_labels``,
            ``labels_one_based``, ``labels_out_of_range``, ``binary_target_values``,
            ``bce_needs_probabilities``, ``nonfinite_target``, ``loss_failed``,
            ``nll_needs_log_probs``, ``loss_not_tensor``, ``loss_not_scalar``. A loss module's weights on
            another device/dtype than the output are moved to it (``loss_tensors_moved`` notice).
    """
    x_fixed, _ = prepare_features(model, x, model_dtype)  # its notice is the engine's to record
    notices: list[Notice] = []
    if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor) and x.dim() and y.dim() and len(x) != len(y):
        raise DataError(f"Features and targets disagree on the batch size: x has {x.shape[0]} rows "
                        f"{list(x.shape)}, y has {y.shape[0]} {list(y.shape)}. Build the dataset from "
                        "matching rows, e.g. TensorDataset(X, y) with len(X) == len(y).", "batch_size_mismatch")
    if task == "auto":
        task, more = resolve_task(task, loss_fn, output, y)
        notices += more
    y_ops, more = plan_targets(task, loss_fn, output, y, model)
    notices += more
    plan = BatchPlan(notices, x_fixed.dtype if isinstance(x_fixed, torch.Tensor) else None, y_ops)
    y_fixed = apply_target_ops(y, y_ops)
    check_nll_input(loss_fn, output)
    plan.notices += align_loss(loss_fn, output)
    probe = loss_fn or LOSS_NAMES[_DEFAULT_LOSS[task]][0]()
    try:
        with torch.no_grad():
            value = probe(output, y_fixed.to(output.device))
    except (RuntimeError, ValueError, IndexError, TypeError) as e:
        raise DataError(f"The loss failed on the first batch (output {list(output.shape)} {output.dtype}, target "
                        f"{list(y_fixed.shape)} {y_fixed.dtype}): {e}", "loss_failed") from e
    check_loss_value(value, getattr(probe, "__name__", None) or type(probe).__name__)
    return plan


