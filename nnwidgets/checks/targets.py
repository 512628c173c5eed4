"""Target rules: which task a run is, and how its targets must look (pure torch).

Checked once on the first batch; the resulting target operations are replayed on
every batch by :class:`nnwidgets.data.BatchPlan`. Public names live in :mod:`nnwidgets.data`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .batch_guard import binary_values_error, label_range_error, where
from .casts import cast_expr
from .._notices import DataError, Notice
from .labels import target_type_message
from .._names import DEFAULT_LOSS, LOSS_NAMES, TASKS

__all__ = ["DataError", "Notice", "TASKS", "LOSS_NAMES", "resolve_task", "plan_targets",
           "apply_target_ops", "output_width", "loss_name"]

_LOSS_TASKS = (((nn.CrossEntropyLoss, nn.NLLLoss), "multiclass"), ((nn.BCEWithLogitsLoss, nn.BCELoss), "binary"),
               ((nn.MSELoss, nn.L1Loss, nn.SmoothL1Loss, nn.HuberLoss), "regression"))
_FUNCTIONS = {F.cross_entropy: "multiclass", F.nll_loss: "multiclass", F.binary_cross_entropy: "binary",
              F.binary_cross_entropy_with_logits: "binary", F.mse_loss: "regression", F.l1_loss: "regression",
              F.smooth_l1_loss: "regression", F.huber_loss: "regression"}
_DEFAULT_LOSS = DEFAULT_LOSS


def loss_name(loss_fn) -> str:
    """Readable name of a loss module or function (``"CrossEntropyLoss"``)."""
    return getattr(loss_fn, "__name__", None) or type(loss_fn).__name__


def _loss_key(name: str) -> str:
    return name.strip().lower().replace("-", "_").replace("crossentropy", "cross_entropy")


def _task_of_loss(loss_fn) -> str | None:
    if loss_fn is None:
        return None
    if isinstance(loss_fn, str):
        return LOSS_NAMES[_loss_key(loss_fn)][1] if _loss_key(loss_fn) in LOSS_NAMES else None
    for classes, task in _LOSS_TASKS:
        if isinstance(loss_fn, classes):
            return task
    try:
        return _FUNCTIONS.get(loss_fn)
    except TypeError:  # unhashable callable
        return None


def output_width(output: torch.Tensor, y: torch.Tensor | None = None) -> int:
    """Values per sample: ``C`` of ``(N, C, ...)``; 1 for ``(N,)``; ``C`` for ``(C,)`` with a 0-d target."""
    if output.dim() >= 2:
        return int(output.shape[1])
    if output.dim() == 1 and y is not None and y.dim() == 0:
        return int(output.shape[0])
    return 1


def _is_label_shaped(output: torch.Tensor, y: torch.Tensor) -> bool:
    want = output.shape[:1] + output.shape[2:] if output.dim() >= 2 else output.shape[:0]
    return y.shape == want or (y.dim() == output.dim() and y.dim() >= 2
                               and y.shape[1] == 1 and y.shape[:1] + y.shape[2:] == want)


def _is_one_hot(output: torch.Tensor, y: torch.Tensor) -> bool:
    if y.shape != output.shape or output.dim() < 2 or y.numel() == 0 or y.is_complex():
        return False
    binary = ((y == 0) | (y == 1)).all()
    return bool(binary and (y.sum(1) == 1).all())


def _whole(y: torch.Tensor) -> bool:
    return not y.is_floating_point() or bool((y == y.round()).all())


def _neither_error(output: torch.Tensor, y: torch.Tensor, width: int) -> DataError:
    """Targets that fit no task for an output of ``width`` values per sample (no loss given):
    not labels of the right shape, not one-hot rows of the right width, not regression targets
    shaped like the output. Says which they look like, and the fix."""
    n, labels = output.shape[0], [output.shape[0]]
    rows = y.dim() == 2 and y.shape[0] == n and y.numel() > 0
    if rows and bool(((y == 0) | (y == 1)).all()) and bool((y.sum(1) == 1).all()):
        return DataError(f"Targets {_shape(y)} look one-hot over {y.shape[1]} classes, but the model outputs {width} "
                         f"values per sample. Make the last layer output {y.shape[1]} (nn.Linear(..., {y.shape[1]})), "
                         f"or fix the encoding to {width} columns.", "onehot_width")
    if _whole(y) and y.numel() == n:
        return DataError(f"Targets {y.dtype} {_shape(y)} look like class labels, but labels for an output "
                         f"{_shape(output)} must be shaped {labels} (or [{n}, 1]). Fix: y = y.reshape({n}) "
                         f"(for classes 0..{width - 1}).", "label_shape")
    return DataError(f"Targets {y.dtype} {_shape(y)} fit no task for an output {_shape(output)}: class labels are "
                     f"whole numbers shaped {labels}, one-hot rows are 0/1 shaped {_shape(output)}, regression "
                     f"targets are shaped like the output. For classes: y = y.round().long() if they are labels; for "
                     f"regression: one output per target (nn.Linear(..., 1)); or pass task=... / a loss.", "target_form")


def resolve_task(task: str, loss_fn, output: torch.Tensor, y: torch.Tensor) -> tuple[str, list[Notice]]:
    """Decide whether the run is multiclass, binary or regression.

    A known loss decides (CrossEntropyLoss/NLLLoss -> multiclass,
    BCEWithLogitsLoss/BCELoss -> binary, MSELoss/L1Loss/SmoothL1Loss/HuberLoss ->
    regression). Without one, the first batch decides: whole-number label targets
    ``(N,)`` or ``(N, 1)`` or one-hot ``(N, C)`` with output width ``C > 1`` ->
    multiclass; 0/1 targets shaped like the output -> binary; else regression.

    Args:
        task: ``"auto"``, ``"multiclass"``, ``"binary"`` or ``"regression"``.
        loss_fn: Loss module, loss function, loss name, or None.
        output: Model output for the first batch, e.g. ``(N, C)`` float32.
        y: First target batch, any dtype.

    Returns:
        ``(task, notices)``; a ``"task_inferred"`` notice when the data decided.

    Raises:
        DataError: ``unknown_task`` for another task name; ``task_loss_mismatch``
            when ``task`` contradicts the loss; with no loss and ``C > 1`` outputs, targets
            that fit no task: ``onehot_width`` (one-hot rows of another width), ``label_shape``
            (whole-number labels of another shape), ``target_form`` (anything else not shaped
            like the output).

    Example:
        >>> resolve_task("auto", None, torch.zeros(4, 3), torch.tensor([0, 2, 1, 1]))[0]
        'multiclass'
    """
    if task != "auto" and task not in TASKS:
        raise DataError(f"task={task!r} is not one of 'auto', {', '.join(map(repr, TASKS))}.", "unknown_task")
    from_loss = _task_of_loss(loss_fn)
    if task != "auto":
        if from_loss is not None and from_loss != task:
            raise DataError(
                f"task={task!r} does not match the loss {loss_name(loss_fn)}, which is a {from_loss} loss. "
                f"Pass task={from_loss!r}, or a {task} loss such as "
                f"nn.{LOSS_NAMES[_DEFAULT_LOSS[task]][0].__name__}().",
                "task_loss_mismatch")
        return task, []
    if from_loss is not None:
        return from_loss, []
    if not isinstance(y, torch.Tensor):
        raise DataError(target_type_message(y), "target_dtype")
    width = output_width(output, y)
    binary = y.numel() > 0 and not y.is_complex() and bool(((y == 0) | (y == 1)).all())
    if width > 1 and _is_label_shaped(output, y) and _whole(y):
        task, why = "multiclass", f"whole-number labels and {width} outputs per sample -> CrossEntropyLoss"
    elif width > 1 and _is_one_hot(output, y):
        task, why = "multiclass", f"one-hot targets over {width} outputs -> CrossEntropyLoss"
    elif binary and y.numel() == output.numel():
        task, why = "binary", "0/1 targets, one output per target -> BCEWithLogitsLoss"
        if y.is_floating_point():
            return task, [Notice("task_inferred", f"Treating this run as binary ({why}). The targets are {y.dtype} "
                                 "and all 0 or 1 in the first batch; if they are values to predict, pass "
                                 "task='regression' (or loss='mse'). Every batch is checked: a later target "
                                 "other than 0 or 1 stops the run.")]
    else:
        if width > 1 and output.dim() == 2 and y.shape != output.shape and not y.is_complex():
            raise _neither_error(output, y, width)
        task, why = "regression", f"targets {y.dtype} with values beyond 0/1 or not labels -> MSELoss"
    return task, [Notice("task_inferred", f"Treating this run as {task} ({why}). "
                                          "Pass task=... or a loss to override.")]


def _shape(t: torch.Tensor) -> str:
    return str(list(t.shape))


def _last_leaf(model: nn.Module | None) -> nn.Module | None:
    leaves = [m for m in model.modules() if next(m.children(), None) is None] if model is not None else []
    return leaves[-1] if leaves else None


def _cast_notice(y: torch.Tensor, to: torch.dtype, why: str, code: str) -> Notice:
    fix = cast_expr("y", to)
    return Notice(code, f"Targets are {y.dtype}; cast to {to} ({why}). "
                        f"Fix in PyTorch: y = {fix}, or build them with torch.tensor(..., dtype={to}).")


def plan_targets(task: str, loss_fn, output: torch.Tensor, y: torch.Tensor, model: nn.Module | None = None):
    """Check the first target batch and decide the per-batch target operations.

    Args:
        task: Resolved task: ``"multiclass"``, ``"binary"`` or ``"regression"``.
        loss_fn: The loss (module, function or None for the task's default).
        output: Model output on the first batch: ``(N, C, ...)`` logits for
            multiclass, same shape as the target for binary/regression.
        y: First target batch.
        model: The model, to spot a final ``nn.Softmax`` / ``nn.Sigmoid``.

    Returns:
        ``(ops, notices)``: ``ops`` is a tuple of ``(name, arg)`` pairs
        (``argmax``, ``squeeze``, ``reshape`` (tail shape), ``to`` (dtype))
        replayed by :func:`apply_target_ops` on every batch.

    Raises:
        DataError: see :func:`nnwidgets.data.plan_batches` for the codes.
    """
    if not isinstance(y, torch.Tensor) or y.is_complex():
        raise DataError(target_type_message(y), "target_dtype")
    ops: list[tuple[str, object]] = []
    notices = (_multiclass if task == "multiclass" else _float_target)(task, loss_fn, output, y, ops, model)
    return tuple(ops), notices


def apply_target_ops(y: torch.Tensor, ops) -> torch.Tensor:
    """Replay the operations from :func:`plan_targets` (no host sync)."""
    for op, arg in ops:
        if op == "argmax":
            y = y.argmax(arg)
        elif op == "squeeze":
            y = y.squeeze(arg)
        elif op == "reshape":
            y = y.reshape((-1,) + arg)
        else:
            y = y.to(arg)
    return y


def _multiclass(task, loss_fn, output, y, ops, model) -> list[Notice]:
    name = loss_name(loss_fn) if loss_fn is not None else "CrossEntropyLoss"
    notices, width = [], output_width(output, y)
    if width < 2:
        raise DataError(
            f"{name} needs one output per class, but the model output {_shape(output)} has 1 value per sample "
            "(the loss would always be 0). Make the last layer output C values (nn.Linear(..., C)), or for "
            "two classes use nn.BCEWithLogitsLoss() with 1 output.", "output_width")
    found, was = _shape(y), y.dtype
    if _is_one_hot(output, y):
        if y.dtype == torch.bool:  # pd.get_dummies (pandas >= 2) gives bool columns; argmax takes no bool
            ops.append(("to", torch.int64))
        ops.append(("argmax", 1))
        y = y.long().argmax(1)
        notices.append(Notice("onehot_target", f"Targets {found} {was} are one-hot rows over {width} classes; converted "
                              f"to class indices {_shape(y)} int64 (accuracy is wrong on one-hot targets). "
                              "Fix in PyTorch: y = y.argmax(dim=1) (from pd.get_dummies: pd.factorize(df[col])[0])."))
    elif y.shape == output.shape and y.is_floating_point():
        raise DataError(f"Targets {found} {y.dtype} have the output's shape but are not one-hot (soft labels / "
                        f"probabilities). Expected int64 class indices of shape {_shape(output[:, 0])}. "
                        "Fix: y = y.argmax(dim=1), or for regression use task='regression' / MSELoss.",
                        "soft_targets")
    elif y.dim() >= 2 and y.shape[1] == 1 and _is_label_shaped(output, y):
        ops.append(("squeeze", 1))
        y = y.squeeze(1)
        notices.append(Notice("squeeze_target", f"Targets have shape {found}, but {name} with output "
                              f"{_shape(output)} needs {_shape(y)}; squeezed them. Fix in PyTorch: "
                              "y = y.squeeze(1), or select the column with df['label'] instead of df[['label']]."))
    elif not _is_label_shaped(output, y):
        want = list(output.shape[:1] + output.shape[2:]) if output.dim() >= 2 else []
        raise DataError(f"Targets have shape {found}, but {name} with output {_shape(output)} ({width} classes) "
                        f"needs class indices of shape {want} (int64) or one-hot rows {_shape(output)}."
                        + _trailing_ones_hint(output, y), "target_shape")
    if y.is_floating_point() and not _whole(y):
        frac = y[y != y.round()].flatten()[:3].tolist()
        raise DataError(f"{name} needs int64 class indices, but the targets are {y.dtype} with fractional values "
                        f"(e.g. {frac}). If these are class labels, fix them; if they are values to predict, "
                        "use task='regression' (MSELoss).", "fractional_labels")
    if y.dtype != torch.int64:
        notices.append(_cast_notice(y, torch.int64, f"{name} needs int64 class indices", "labels_to_int64"))
        ops.append(("to", torch.int64))
        y = y.long()
    ignore = getattr(loss_fn, "ignore_index", None)
    labels = y[y != ignore] if isinstance(ignore, int) else y
    if labels.numel():
        lo, hi = int(labels.min()), int(labels.max())
        error = label_range_error(lo, hi, width, name, where())
        if error is not None:
            raise error
    return notices + _softmax_notices(loss_fn, output, model)


def _softmax_notices(loss_fn, output, model) -> list[Notice]:
    last = _last_leaf(model)
    probs = (output.dim() >= 2 and output.numel() > 0 and output.is_floating_point() and bool(
        ((output >= 0) & (output <= 1)).all() & ((output.sum(1) - 1).abs() < 1e-4).all()))
    if isinstance(loss_fn, nn.NLLLoss) or loss_fn is F.nll_loss:
        if isinstance(last, nn.Softmax) or probs:
            return [Notice("softmax_before_nll", "The model outputs probabilities (softmax), but NLLLoss expects "
                           "log-probabilities. Fix: end the model in nn.LogSoftmax(dim=1), or drop the softmax and use "
                           "nn.CrossEntropyLoss(). The model was not changed.")]
        return []
    if isinstance(last, nn.LogSoftmax):
        return [Notice("softmax_before_ce", "The model ends in nn.LogSoftmax, but CrossEntropyLoss expects raw "
                       "logits and applies log_softmax itself (here redundant: same loss). Fix: remove the final "
                       "nn.LogSoftmax, or use nn.NLLLoss(). The model was not changed.")]
    if isinstance(last, nn.Softmax) or probs:
        why = "ends in nn.Softmax" if isinstance(last, nn.Softmax) else "outputs rows in [0, 1] summing to 1"
        return [Notice("softmax_before_ce", f"The model {why}, but CrossEntropyLoss expects raw logits and applies "
                       "log_softmax itself; softmax twice flattens the gradients and slows or stalls training. Fix: "
                       "remove the final nn.Softmax and call torch.softmax(logits, dim=1) only when you need "
                       "probabilities. The model was not changed.")]
    return []


def _trailing_ones_hint(output: torch.Tensor, y: torch.Tensor) -> str:
    """A hint when the output is ``(N, C, 1, ...)`` and the target ``(N,)``: a leftover size-1 dimension."""
    if output.dim() > 2 and all(s == 1 for s in output.shape[2:]) and y.dim() == 1 and y.shape[0] == output.shape[0]:
        return (f" The output's trailing dimension{'s' if output.dim() > 3 else ''} of size 1 "
                f"({_shape(output)}) look{'' if output.dim() > 3 else 's'} left over (a Conv1d/unsqueeze): return "
                f"out.flatten(1) (shape {_shape(output.flatten(1))}) from forward.")
    return ""


def _no_ones(shape) -> list[int]:
    return [s for s in shape if s != 1]


def _float_target(task, loss_fn, output, y, ops, model) -> list[Notice]:
    name = loss_name(loss_fn) if loss_fn is not None else ("BCEWithLogitsLoss" if task == "binary" else "MSELoss")
    notices = []
    tail = tuple(output.shape[1:])
    if y.shape != output.shape:
        same_n = y.dim() == 0 or output.dim() == 0 or y.shape[0] == output.shape[0]
        if y.numel() == output.numel() and same_n and _no_ones(y.shape[1:]) == _no_ones(tail):
            ops.append(("reshape", tail))
            fix = "y.view(" + ", ".join(["-1", *map(str, tail)]) + ")"
            try:
                why = f"would broadcast them to {list(torch.broadcast_shapes(y.shape, output.shape))} and train wrong"
            except RuntimeError:
                why = "would fail"
            notices.append(Notice("reshape_target", f"Target shape {_shape(y)} differs from the output shape "
                                  f"{_shape(output)}; reshaped the target to {_shape(output)} ({name} {why}). "
                                  f"Fix in PyTorch: y = {fix}."))
            y = y.reshape((-1,) + tail)
        else:
            hint = (" For 2 classes with 2 outputs use nn.CrossEntropyLoss() with int64 labels."
                    if task == "binary" and output_width(output) == 2 else "")
            raise DataError(f"Target shape {_shape(y)} ({y.numel()} values) does not match the output shape "
                            f"{_shape(output)} ({output.numel()} values); {name} needs a target shaped like the "
                            "output. Check which target columns you select, or make the last layer output as "
                            f"many values per sample as the target has.{hint}" + _trailing_ones_hint(output, y),
                            "target_shape")
    if task == "binary":
        if not bool(((y == 0) | (y == 1)).all()):
            raise binary_values_error(f"values {torch.unique(y)[:6].tolist()}", name, where(), False)
        if isinstance(loss_fn, nn.BCELoss) and not bool(((output >= 0) & (output <= 1)).all()):
            raise DataError("BCELoss needs probabilities in [0, 1], but the model output has values outside "
                            f"(min {float(output.min()):.4g}, max {float(output.max()):.4g}). Use "
                            "nn.BCEWithLogitsLoss() on raw logits.", "bce_needs_probabilities")
        if not isinstance(loss_fn, nn.BCELoss) and isinstance(_last_leaf(model), nn.Sigmoid):
            notices.append(Notice("sigmoid_before_bce", f"The model ends in nn.Sigmoid, but {name} applies the "
                                  "sigmoid itself and expects raw logits. Fix: remove the final nn.Sigmoid (or use "
                                  "nn.BCELoss()). The model was not changed."))
    elif y.is_floating_point() and not bool(torch.isfinite(y).all()):
        raise DataError(f"The first target batch contains NaN or inf values, so {name} would be NaN from step 1. "
                        "Fix: drop or fill missing values (df.dropna() / df.fillna(...)).", "nonfinite_target")
    if y.dtype != output.dtype:
        notices.append(_cast_notice(y, output.dtype, f"{name} needs targets of the output's dtype", "cast_target"))
        ops.append(("to", output.dtype))
    return notices
