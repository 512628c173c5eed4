"""What the Trainer decides once: device, optimizer, and the checks of the first batch."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from . import data
from .checks.input_errors import float_ids_error
from .checks.inputs import move_to, plan_inputs, plan_output
from ._metrics import binary_threshold, default_metrics
from .checks.scale import target_scale
from .checks.targets import apply_target_ops, loss_name
from .checks.batch_guard import target_guard
from ._names import DEVICE_HELP, OPTIMIZERS, model_dtype
from .checks.model_checks import BATCHNORM_TYPES, batchnorm_notice, no_parameters_message, unregistered_notice

__all__ = ["resolve_device", "build_optimizer", "OPTIMIZERS", "Prepared", "prepare_first_batch",
           "move_to", "model_dtype"]



def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"auto"`` → CUDA if available, else MPS, else CPU; anything else is checked.

    Raises:
        ValueError: a device string torch does not know, or a CUDA/MPS device that is not
            available here (the message names what is).
    """
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; use {DEVICE_HELP}") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device {device!r} requested but CUDA is not available here; use device='cpu' or 'auto'")
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"device {device!r} requested but only {count} CUDA device(s) exist (cuda:0..cuda:{count - 1})")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device {device!r} requested but MPS is not available here; use device='cpu' or 'auto'")
    return dev


def build_optimizer(name: str | torch.optim.Optimizer, params: Any, lr: float | None,
                    momentum: float | None, weight_decay: float | None) -> torch.optim.Optimizer:
    """A named optimizer with the given settings, or the user's optimizer with the settings
    that were given explicitly (``None`` keeps the optimizer's own).

    ``params`` is ``model.parameters()`` (or param groups), or the model itself: then a model
    without registered parameters is reported with its cause (layers in a plain Python list).
    ``momentum`` is SGD/RMSprop momentum and the first beta of Adam/AdamW (default 0.9 there).

    Raises:
        ValueError: an unknown optimizer name (the message lists the known ones); a model with
            no registered parameters (the message names the plain list / tensor attributes and
            the fix, e.g. ``nn.ModuleList``), instead of torch's "optimizer got an empty
            parameter list".
    """
    if isinstance(name, torch.optim.Optimizer):
        return name
    if isinstance(params, nn.Module):
        model, params = params, list(params.parameters())
        if not params:
            raise ValueError(no_parameters_message(model))
    key = str(name).lower()
    lr = 0.01 if lr is None else lr
    wd = weight_decay if weight_decay is not None else (0.01 if key == "adamw" else 0.0)
    if key == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum or 0.0, weight_decay=wd)
    if key in ("adam", "adamw"):
        cls = torch.optim.Adam if key == "adam" else torch.optim.AdamW
        beta1 = 0.9 if momentum is None else momentum
        return cls(params, lr=lr, betas=(beta1, 0.999), weight_decay=wd)
    if key == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, momentum=momentum or 0.0, weight_decay=wd)
    raise ValueError(f"unknown optimizer {name!r}; use one of {', '.join(OPTIMIZERS)} or pass a torch.optim.Optimizer")


@dataclass
class Prepared:
    """The outcome of the first-batch checks."""

    loader: Any
    first_batch: Any
    iterator: Any
    task: str
    loss_fn: Callable[..., torch.Tensor]
    plan: Any  # data.BatchPlan, or None with a custom step function
    width: int
    metrics: dict = field(default_factory=dict)
    notices: list = field(default_factory=list)
    threshold: float = 0.0  # binary: outputs above it are class 1 (0 for logits, 0.5 for probabilities)
    scale: Any = None  # regression: nnwidgets.checks.scale.ScaleFacts when the target is far off the outputs' scale


def prepare_first_batch(model: nn.Module, train_data: Any, device: torch.device, *, task: str, loss: Any,
                        metrics: dict | None, macro: bool, custom_step: bool, timeout_s: float) -> Prepared:
    """Fetch and check the first batch, decide task, loss, metrics and the per-batch plan.

    The model is called once under ``no_grad`` in eval mode (so BatchNorm statistics and
    dropout are untouched) and its previous mode is restored: with ``x`` for one tensor, or as
    :func:`nnwidgets.checks.inputs.plan_inputs` decides for a tuple/list/dict of tensors; an output
    that is a tuple / dict / object with ``logits`` is reduced to one tensor
    (:func:`nnwidgets.checks.inputs.plan_output`). For a binary task the accuracy threshold is decided
    from the last layer and the loss (:func:`nnwidgets._metrics.binary_threshold`). The plan carries a
    :class:`nnwidgets.checks.batch_guard.TargetGuard` that checks every later batch against these
    decisions; a regression target far off the outputs' scale is a ``target_scale`` notice.

    Raises:
        data.DataError: ambiguous or wrong input; the message says what, where and the fix
            (e.g. ``input_call``, ``output_type``, ``target_dtype``).
    """
    loader, notices = data.safe_loader(train_data)
    batch, iterator = data.first_batch(loader, timeout_s=timeout_s)
    notices += unregistered_notice(model)
    if custom_step:
        loss_fn = data.make_loss(loss, task if task != "auto" else "regression") if loss not in (None, "auto") else None
        return Prepared(loader, batch, iterator, task if task != "auto" else "custom", loss_fn, None, 0,
                        dict(metrics or {}), list(notices))
    notices += batchnorm_notice(model, loader)
    x, y = data.split_batch(batch)
    dtype = model_dtype(model)
    inputs, more = plan_inputs(model, x, dtype)
    if inputs is None:
        x, more = data.prepare_features(model, x, dtype)
    notices += more
    x = inputs.apply(x, device, False) if inputs is not None else move_to(x, device)
    y = move_to(y, device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            raw = model(x) if inputs is None else inputs.call_model(model, x)
    except RuntimeError as e:
        raise float_ids_error(e, x) or e
    finally:
        model.train(was_training)
    output, pick, more = plan_output(raw)
    notices += more
    loss_given = None if loss in (None, "auto") else loss
    loss_probe = data.make_loss(loss_given, "regression") if loss_given is not None else None
    task, more = data.resolve_task(task, loss_probe, output, y)
    notices += more
    inferred = any(n.code == "task_inferred" for n in more)
    loss_fn = data.make_loss(loss_given, task)
    plan = data.plan_batches(model, x, y, output, task, loss_fn, dtype)
    plan.inputs, plan.pick = inputs, pick
    plan.norms = [m for m in model.modules() if isinstance(m, BATCHNORM_TYPES)] or None
    width = data.output_width(output, y)
    plan.guard = target_guard(task, loss_fn, y, plan.y_ops, width, loss_name(loss_fn), inferred, device)
    notices += plan.notices
    scale = None
    if task == "regression":
        scale, more = target_scale(apply_target_ops(y, plan.y_ops), output)
        notices += more
    threshold = 0.0
    if task == "binary":
        threshold, note = binary_threshold(model, loss_fn)
        notices.append(note)
    chosen = dict(metrics) if metrics else default_metrics(task, width, macro)
    data.check_num_classes(chosen, width)
    return Prepared(loader, batch, iterator, task, loss_fn, plan, width, chosen, list(notices), threshold, scale)
