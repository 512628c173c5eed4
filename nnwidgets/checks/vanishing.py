"""Vanishing gradients: layers whose gradient norm is a tiny share of the last layer's.

A periodic check on the gradient samples (every ``EVERY`` samples, so a ``fit()`` user hears
of it as a :class:`~nnwidgets.checks.base.CheckWarning`), and the diagnosis the Gradients tab
shows (:func:`layer_messages`). The rule is :func:`nnwidgets.stats.flag_vanishing`: norm below
``RATIO`` (1e-4) x the last layer's; it separates 10 Linear+Sigmoid layers (first/last ~1e-8)
from the same net with ReLU (~3e-3).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ..stats import activation_after, flag_vanishing
from .base import Check, Finding, When

__all__ = ["VanishingGradients", "layer_messages", "RATIO", "EVERY"]

RATIO = 1e-4
EVERY = 5  # gradient samples between two looks (a look costs O(layers))


def layer_messages(norms: Sequence[float] | np.ndarray, layer_names: Sequence[str],
                   activations: Mapping[str, str] | Sequence[str], ratio: float = RATIO) -> list[str]:
    """One message per layer whose norm is below ``ratio`` x the last layer's (see
    :func:`nnwidgets.stats.flag_vanishing` for the arguments); ``[]`` when none."""
    return flag_vanishing(norms, layer_names, activations, ratio=ratio)


class VanishingGradients(Check):
    """``vanishing_gradients``: reported once per Trainer, on the newest gradient sample."""

    code, when, every = "vanishing_gradients", When.PERIODIC, EVERY

    @classmethod
    def create(cls, trainer: Any, prepared: Any) -> "VanishingGradients | None":
        if trainer._grads is None:
            return None
        check = cls()
        check.activations = activation_after(trainer.model)  # {layer: following activation}
        return check

    def run(self, trainer: Any, **info: Any) -> Finding | None:
        last = trainer.history.last_gradient_norms()
        if last is None:
            return None
        step, layers, norms = last
        flagged = layer_messages(norms, layers, self.activations)
        if not flagged:
            return None
        return Finding(self.code,
                       f"Vanishing gradients at step {step} in {len(flagged)} layer(s): "
                       + " ".join(m.removeprefix("Vanishing gradient: ") for m in flagged),
                       expected=f"every layer's gradient norm at least {RATIO:.0e} x that of the last layer",
                       fix="use ReLU (or GELU) instead of Sigmoid/Tanh between hidden layers, add "
                           "nn.BatchNorm1d / residual connections, use fewer layers, or check the initialisation")
