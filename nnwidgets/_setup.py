"""What the Trainer decides once: device, optimizer, and the checks of the first batch."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from . import data
from ._metrics import default_metrics

__all__ = ["resolve_device", "build_optimizer", "OPTIMIZERS", "Prepared", "prepare_first_batch",
           "move_to", "model_dtype"]

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")


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
        raise ValueError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'") from None
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

    ``momentum`` is SGD/RMSprop momentum and the first beta of Adam/AdamW (default 0.9 there).

    Raises:
        ValueError: an unknown optimizer name (the message lists the known ones).
    """
    if isinstance(name, torch.optim.Optimizer):
        return name
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


def model_dtype(model: nn.Module) -> torch.dtype:
    """Floating dtype of the model's first floating parameter (float32 for a model without)."""
    for p in model.parameters():
        if p.is_floating_point() and not isinstance(p, nn.parameter.UninitializedParameter):
            return p.dtype
    return torch.float32


def move_to(obj: Any, device: torch.device) -> Any:
    """Tensors in (nested) tuples, lists and dicts moved to ``device`` (non_blocking)."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, (list, tuple)):
        return type(obj)(move_to(o, device) for o in obj)
    if isinstance(obj, dict):
        return {k: move_to(v, device) for k, v in obj.items()}
    return obj


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


def prepare_first_batch(model: nn.Module, train_data: Any, device: torch.device, *, task: str, loss: Any,
                        metrics: dict | None, macro: bool, custom_step: bool, timeout_s: float) -> Prepared:
    """Fetch and check the first batch, decide task, loss, metrics and the per-batch plan.

    The model is called once under ``no_grad`` in eval mode (so BatchNorm statistics and
    dropout are untouched) and its previous mode is restored.

    Raises:
        data.DataError: ambiguous or wrong input; the message says what, where and the fix.
    """
    loader, notices = data.safe_loader(train_data)
    batch, iterator = data.first_batch(loader, timeout_s=timeout_s)
    if custom_step:
        loss_fn = data.make_loss(loss, task if task != "auto" else "regression") if loss not in (None, "auto") else None
        return Prepared(loader, batch, iterator, task if task != "auto" else "custom", loss_fn, None, 0,
                        dict(metrics or {}), list(notices))
    x, y = data.split_batch(batch)
    x, more = data.prepare_features(model, x, model_dtype(model))
    notices += more
    x, y = move_to(x, device), move_to(y, device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            output = model(x)
    finally:
        model.train(was_training)
    loss_given = None if loss in (None, "auto") else loss
    loss_probe = data.make_loss(loss_given, "regression") if loss_given is not None else None
    task, more = data.resolve_task(task, loss_probe, output, y)
    notices += more
    loss_fn = data.make_loss(loss_given, task)
    plan = data.plan_batches(model, x, y, output, task, loss_fn, model_dtype(model))
    notices += plan.notices
    width = data.output_width(output, y)
    chosen = dict(metrics) if metrics else default_metrics(task, width, macro)
    data.check_num_classes(chosen, width)
    return Prepared(loader, batch, iterator, task, loss_fn, plan, width, chosen, list(notices))
