"""Checks of the model itself: parameters the optimizer never sees, and BatchNorm against a last
batch of one sample (case C32). Pure torch; run before step 1 (no cost per step).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset

from .targets import Notice

__all__ = ["unregistered", "no_parameters_message", "unregistered_notice", "batchnorm_notice", "SkipBatch",
           "BATCHNORM_ONE_SAMPLE", "BATCHNORM_TYPES", "skip_message"]

BATCHNORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.LazyBatchNorm1d,
                   nn.LazyBatchNorm2d, nn.LazyBatchNorm3d)
BATCHNORM_ONE_SAMPLE = "more than 1 value per channel"  # torch.nn.functional.batch_norm's error in train mode


class SkipBatch(Exception):
    """Raised by :meth:`nnwidgets.data.BatchPlan.forward` for a batch BatchNorm cannot train on
    (one sample in train mode); the loop skips that batch with a notice."""


def unregistered(model: nn.Module) -> list[tuple[str, str, int]]:
    """Attributes that hold layers or tensors ``model.parameters()`` does not see.

    Returns:
        ``(attribute path, kind, parameter count)`` for each plain ``list``/``tuple``/``dict`` of
        modules (kind ``"list"``, ``"tuple"``, ``"dict"``) and each plain tensor with
        ``requires_grad=True`` (kind ``"tensor"``), e.g. ``[("layers", "list", 24)]``.
    """
    found = []
    for prefix, module in model.named_modules():
        for attr, value in vars(module).items():
            if attr.startswith("_"):
                continue
            path = f"{prefix}.{attr}" if prefix else attr
            items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else ()
            mods = [m for m in items if isinstance(m, nn.Module)]
            if mods:
                kind = "dict" if isinstance(value, dict) else "tuple" if isinstance(value, tuple) else "list"
                found.append((path, kind,
                              sum(p.numel() for m in mods for p in m.parameters())))
            elif isinstance(value, torch.Tensor) and not isinstance(value, nn.Parameter) and value.requires_grad:
                found.append((path, "tensor", value.numel()))
    return found


def _fixes(found: list[tuple[str, str, int]]) -> str:
    fix = {"list": "nn.ModuleList([...])", "tuple": "nn.ModuleList([...])", "dict": "nn.ModuleDict({...})",
           "tensor": "nn.Parameter(...)"}
    return "; ".join(f"self.{path} = {fix[kind]}" for path, kind, _ in found)


def _what(found: list[tuple[str, str, int]]) -> str:
    return ", ".join(f"{path} (a plain Python {kind}" + (f", {n} parameters)" if n else ")")
                     for path, kind, n in found)


def no_parameters_message(model: nn.Module) -> str:
    """Why ``model`` has no registered parameter, and the fix (for the optimizer's error)."""
    found = unregistered(model)
    name = type(model).__name__
    if found:
        return (f"{name} has no registered parameters, so the optimizer would get an empty parameter list: "
                f"its layers are in {_what(found)}, which model.parameters() does not see (nor .to(device), "
                f"state_dict() or train()/eval()). Fix: {_fixes(found)}.")
    return (f"{name} has no parameters to train (model.parameters() is empty), so the optimizer would get an "
            "empty parameter list. Layers must be attributes of the model (self.fc = nn.Linear(...)), kept in "
            "nn.ModuleList / nn.ModuleDict, and learnable tensors wrapped in nn.Parameter.")


def unregistered_notice(model: nn.Module) -> list[Notice]:
    """An ``unregistered_layers`` notice when some layers or tensors are invisible to the optimizer."""
    found = unregistered(model)
    if not found:
        return []
    return [Notice("unregistered_layers", f"{type(model).__name__} keeps {_what(found)} outside its registered "
                   "modules: model.parameters() does not see them, so the optimizer never updates them (nor do "
                   f".to(device), state_dict() or train()/eval() reach them). Fix: {_fixes(found)}.")]


def batchnorm_notice(model: nn.Module, loader: Any) -> list[Notice]:
    """A ``batchnorm_last_batch`` notice when the loader's arithmetic gives a last batch of one
    sample (``len(dataset) % batch_size == 1`` without ``drop_last``) and the model has BatchNorm,
    which cannot normalise one sample in train mode."""
    norms = [type(m).__name__ for m in model.modules() if isinstance(m, BATCHNORM_TYPES)]
    if not norms or not isinstance(loader, DataLoader) or loader.drop_last or not loader.batch_size:
        return []
    if isinstance(loader.dataset, IterableDataset):
        return []
    try:
        n = len(loader.dataset)
    except TypeError:
        return []
    bs = loader.batch_size
    if n % bs != 1 or n == 1:
        return []
    return [Notice("batchnorm_last_batch", f"The model has {norms[0]} and the loader's last batch holds one sample "
                   f"({n} samples, batch_size={bs}: {n // bs} batches of {bs}, then 1). BatchNorm cannot normalise "
                   "one sample in train mode (PyTorch: 'Expected more than 1 value per channel when training'), "
                   "so that batch is skipped every epoch. Fix: DataLoader(..., drop_last=True), or a batch size "
                   f"that divides {n} better.")]


def skip_message(skip: SkipBatch, epoch: int, step: int) -> str:
    """The ``batch_skipped`` notice for a batch BatchNorm refused (announced once per run)."""
    return (f"Skipped a batch of one sample at epoch {epoch}, step {step}: BatchNorm cannot normalise one sample "
            f"in train mode (PyTorch: {skip}). Every such batch is skipped (no optimizer step). Fix: "
            "DataLoader(..., drop_last=True), or a batch size that leaves a last batch of 2 or more.")
