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
        _refuse_whole_data(name, d)
        if not hasattr(d, "__iter__"):
            raise TypeError(f"{name} must be a DataLoader or an iterable of (x, y) batches, got {type(d).__name__}")
        if isinstance(d, collections.abc.Iterator):  # iter() would start DataLoader workers
            raise TypeError(f"{name} is a one-shot iterator ({type(d).__name__}); it would be empty from the "
                            "second epoch on - pass a DataLoader or a list of batches")
    if task not in ("auto",) + TASKS:
        raise ValueError(f"task must be 'auto', 'multiclass', 'binary' or 'regression', got {task!r}")
    if int(epochs) < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")


_LOADER_FIX = ("DataLoader(TensorDataset(torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(y)), "
               "batch_size=32, shuffle=True)")


def _refuse_whole_data(name: str, d: Any) -> None:
    """A TypeError for whole datasets passed where batches are expected: a pandas DataFrame or
    Series (iterating one yields its column names), or a pair ``(X, y)`` of whole arrays
    (iterating it yields X, then y), each with the DataLoader that fixes it."""
    kind = type(d).__name__
    if type(d).__module__.startswith("pandas"):
        raise TypeError(f"{name} is a pandas {kind}: nnwidgets trains on batches. Split features and target and "
                        f"build a DataLoader: X = df[feature_columns].to_numpy(); y = df[target_column].to_numpy(); "
                        f"{name} = {_LOADER_FIX}")
    if isinstance(d, (tuple, list)) and len(d) == 2 and all(hasattr(v, "shape") and hasattr(v, "dtype") for v in d) \
            and len(getattr(d[0], "shape", ())) >= 1 and len(d[0]) == len(d[1]) and len(d[0]) > 2 \
            and tuple(d[0].shape) != tuple(d[1].shape):  # two batches of one shape are a list of batches
        raise TypeError(f"{name} is a pair (X, y) of whole arrays ({type(d[0]).__name__} {list(d[0].shape)}, "
                        f"{type(d[1]).__name__} {list(d[1].shape)}), not batches. Wrap it: {name} = {_LOADER_FIX}")
