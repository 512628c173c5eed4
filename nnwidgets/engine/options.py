"""What a Trainer is asked for: the arguments checked before anything is built, and the
options kept for the first batch (task, loss, metrics, a custom step)."""
from __future__ import annotations

import collections.abc
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from .._names import TASKS

__all__ = ["Options", "check_arguments"]


@dataclass(frozen=True)
class Options:
    """Decided or used later, on the first batch (see :class:`~nnwidgets.engine.trainer.Trainer`)."""

    task: str
    loss: Any
    metrics: dict | None
    macro: bool
    step: Callable[..., Any] | None
    scheduler_interval: str


def check_arguments(model: Any, train_data: Any, val_data: Any, task: str, epochs: Any) -> None:
    """Refuse what cannot be trained, before anything is built.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``; ``train_data``/``val_data`` is not
            iterable, or is a one-shot iterator (empty from the second epoch on).
        ValueError: an unknown task, or ``epochs < 1``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    for name, d in (("train_data", train_data), ("val_data", val_data)):
        if d is None and name == "val_data":
            continue
        if not hasattr(d, "__iter__"):
            raise TypeError(f"{name} must be a DataLoader or an iterable of (x, y) batches, got {type(d).__name__}")
        if isinstance(d, collections.abc.Iterator):  # iter() would start DataLoader workers
            raise TypeError(f"{name} is a one-shot iterator ({type(d).__name__}); it would be empty from the "
                            "second epoch on - pass a DataLoader or a list of batches")
    if task not in ("auto",) + TASKS:
        raise ValueError(f"task must be 'auto', 'multiclass', 'binary' or 'regression', got {task!r}")
    if int(epochs) < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
