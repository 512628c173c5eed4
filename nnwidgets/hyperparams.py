"""Live settings: validated on the caller's thread, applied by the loop between steps.

``Trainer.set(lr=...)`` may be called from any thread (a widget observer on the kernel's
shell or a subshell, a script, a handler). It only validates and stores the request under a
lock; the training thread applies everything pending right before the next optimizer step,
never in the middle of one.

Names follow PyTorch's param-group keys: ``lr`` (learning rate), ``momentum`` (SGD/RMSprop
``momentum``; the first beta of Adam/AdamW), ``weight_decay``; plus ``dropout`` (probability
``p`` of every dropout module).
"""
from __future__ import annotations

import math
import threading
from typing import Any

import torch
from torch import nn

from ._schedule import retarget

__all__ = ["SETTINGS", "DROPOUT_TYPES", "PendingSettings", "read_settings", "apply_settings",
           "dropout_modules", "validate_setting", "RANGES", "in_range", "check_range"]

SETTINGS = ("lr", "momentum", "weight_decay", "dropout")
DROPOUT_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)


# the one place for range rules: name -> (low, high, low included, high included)
RANGES: dict[str, tuple[float, float, bool, bool]] = {
    "lr": (0.0, math.inf, False, False),           # learning rate > 0
    "momentum": (0.0, 1.0, True, False),           # 0 <= momentum < 1 (SGD accepts 1 and diverges)
    "weight_decay": (0.0, math.inf, True, False),  # weight decay >= 0
    "dropout": (0.0, 1.0, True, False),            # 0 <= p < 1
}


def in_range(name: str, v: float) -> bool:
    """Whether the finite number ``v`` lies in ``RANGES[name]``."""
    lo, hi, lo_in, hi_in = RANGES[name]
    return (v > lo or (lo_in and v == lo)) and (v < hi or (hi_in and v == hi))


def check_range(name: str, v: Any) -> float:
    """A constructor argument (``Trainer(lr=...)``) checked against ``RANGES``; returns it.

    Raises:
        ValueError: not a finite number, below the range ("lr must be a finite number > 0,
            got 0"), or above it ("momentum must be in [0, 1), got 1.5").
    """
    lo, hi, lo_in, hi_in = RANGES[name]
    if not isinstance(v, (int, float)) or not math.isfinite(v) or not (v > lo or (lo_in and v == lo)):
        raise ValueError(f"{name} must be a finite number {'>=' if lo_in else '>'} {lo:g}, got {v!r}")
    if not in_range(name, v):
        raise ValueError(f"{name} must be in {'[' if lo_in else '('}{lo:g}, {hi:g}{']' if hi_in else ')'}, got {v!r}")
    return v


def dropout_modules(model: nn.Module) -> list[nn.Module]:
    """All dropout modules of ``model`` (``nn.Dropout`` and its 1d/2d/3d/alpha variants)."""
    return [m for m in model.modules() if isinstance(m, DROPOUT_TYPES)]


def _momentum_key(group: dict[str, Any]) -> str | None:
    if "momentum" in group:
        return "momentum"
    if "betas" in group:
        return "betas"
    return None


def validate_setting(name: str, value: Any, optimizer: torch.optim.Optimizer, model: nn.Module) -> float:
    """Check one requested setting; returns it as a float.

    Raises:
        ValueError: unknown name, a value out of range (lr > 0; 0 <= momentum < 1;
            weight_decay >= 0; 0 <= dropout < 1), or a setting the optimizer or model lacks
            (e.g. momentum for Adagrad, dropout for a model without dropout layers).
    """
    if name not in SETTINGS:
        raise ValueError(f"unknown setting {name!r}; settings are: {', '.join(SETTINGS)}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    kind = type(optimizer).__name__
    if name == "lr" and not in_range(name, v):
        raise ValueError(f"learning rate must be > 0, got {v}")
    if name == "momentum":
        if not in_range(name, v):
            raise ValueError(f"momentum must be in [0, 1), got {v}")
        if _momentum_key(optimizer.param_groups[0]) is None:
            raise ValueError(f"{kind} has no momentum setting; use optimizer='sgd' or 'adam' to tune momentum")
    if name == "weight_decay":
        if not in_range(name, v):
            raise ValueError(f"weight decay must be >= 0, got {v}")
        if "weight_decay" not in optimizer.param_groups[0]:
            raise ValueError(f"{kind} has no weight_decay setting")
    if name == "dropout":
        if not in_range(name, v):
            raise ValueError(f"dropout p must be in [0, 1), got {v}")
        if not dropout_modules(model):
            raise ValueError("the model has no nn.Dropout layer, so dropout cannot be set; "
                             "add nn.Dropout(p) after a hidden layer to use it")
    return v


def read_settings(optimizer: torch.optim.Optimizer, model: nn.Module) -> dict[str, float | None]:
    """Current values as the loop uses them (first param group; ``None`` where absent)."""
    g = optimizer.param_groups[0]
    key = _momentum_key(g)
    momentum = None if key is None else (g["betas"][0] if key == "betas" else g["momentum"])
    drops = dropout_modules(model)
    return {"lr": float(g["lr"]), "momentum": None if momentum is None else float(momentum),
            "weight_decay": float(g["weight_decay"]) if "weight_decay" in g else None,
            "dropout": float(drops[0].p) if drops else None}


def apply_settings(changes: dict[str, float], optimizer: torch.optim.Optimizer, model: nn.Module,
                   scheduler: Any = None) -> list[tuple[str, float | None, float]]:
    """Write ``changes`` into every param group (and a scheduler's base values, or the cycle of
    OneCycleLR / CyclicLR scaled to the new lr: :func:`nnwidgets._schedule.retarget`) and every
    dropout module. Returns ``(name, old, new)`` for each setting that really changed."""
    before = read_settings(optimizer, model)
    old_lrs = [g["lr"] for g in optimizer.param_groups]
    for name, v in changes.items():
        if name == "dropout":
            for m in dropout_modules(model):
                m.p = v
            continue
        for g in optimizer.param_groups:
            if name == "momentum" and _momentum_key(g) == "betas":
                g["betas"] = (v, g["betas"][1])
            else:
                g[name] = v
        if name == "lr":
            retarget(scheduler, optimizer, old_lrs, v)
    after = read_settings(optimizer, model)
    return [(k, before[k], after[k]) for k in changes if before[k] != after[k]]


class PendingSettings:
    """Settings requested from any thread, taken by the training thread at a step boundary."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, float] = {}

    def put(self, values: dict[str, float]) -> None:
        """Store validated values; a later value for the same name replaces an earlier one."""
        with self._lock:
            self._pending.update(values)

    def take(self) -> dict[str, float]:
        """Return and clear everything pending."""
        with self._lock:
            out, self._pending = self._pending, {}
        return out

    def __bool__(self) -> bool:
        return bool(self._pending)
