"""Regression targets far off the scale of the model's outputs (salaries ~1e5, outputs ~0.1).

MSELoss then starts near ``target**2`` (~1e10), its gradients are as large, and training either
diverges to NaN (SGD) or crawls for many epochs (Adam moves each weight by ~lr per step). Checked
once on the first batch (:func:`target_scale`); the finding is named as the likely cause when the
loss becomes non-finite (:mod:`nnwidgets.checks.diagnose`) and, by :class:`StallWatch`, when the
training loss has barely moved after a few epochs.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .._notices import Notice
from .base import Check, Finding, When

__all__ = ["RATIO", "ScaleFacts", "target_scale", "StallWatch"]

RATIO = 100.0        # target scale / output scale above which the notice is given
OUTPUT_FLOOR = 0.1   # outputs of a fresh model smaller than this count as this (a zero-init last layer)
STALL_EPOCHS = 3     # epochs after which a loss above STALL_SHARE of epoch 0's counts as stalled
STALL_SHARE = 0.5
STANDARDISE = ("standardise the target: y = (y - y.mean()) / y.std() (or sklearn's StandardScaler) on the training "
               "set, train on that, and map predictions back with pred * std + mean")


@dataclass(frozen=True)
class ScaleFacts:
    """The first batch's target and output scales (floats) and their ratio."""

    mean: float
    std: float
    output: float
    ratio: float

    def hint(self) -> str:
        """One sentence naming the cause and the fix."""
        return (f"the regression targets are around {self.mean:.3g} (std {self.std:.3g}) while the model's outputs "
                f"started around {self.output:.2g}, {self.ratio:.0f}x apart: {STANDARDISE}.")


def target_scale(y: torch.Tensor, output: torch.Tensor) -> tuple[ScaleFacts | None, list[Notice]]:
    """Compare the first batch's regression targets with the model's first outputs.

    Target scale = max(|mean(y)|, std(y)); output scale = mean |output|, at least ``OUTPUT_FLOOR``.

    Args:
        y: targets after the plan, e.g. ``(N, 1)`` float32.
        output: ``model(x)`` on the first batch, same shape.

    Returns:
        ``(facts, notices)``: facts and a ``target_scale`` notice when the ratio exceeds ``RATIO``,
        else ``(None, [])``.
    """
    if not y.is_floating_point() or y.numel() == 0 or not bool(torch.isfinite(y).all()):
        return None, []
    y64 = y.detach().double()
    mean = float(y64.mean())
    std = float(y64.std()) if y.numel() > 1 else 0.0
    out = max(float(output.detach().double().abs().mean()), OUTPUT_FLOOR)
    ratio = max(abs(mean), std) / out
    if not ratio > RATIO:
        return None, []
    facts = ScaleFacts(mean, std, out, ratio)
    mse = float(((y64 - output.detach().double()) ** 2).mean())
    return facts, [Notice("target_scale", f"The first MSE-style loss will be about {mse:.3g}: {facts.hint()} "
                          "Unscaled, training is likely to diverge (NaN) or crawl.")]


class StallWatch(Check):
    """Epoch-end check ``target_scale_stall``: reported once when after ``STALL_EPOCHS`` epochs
    the training loss is still above ``STALL_SHARE`` of epoch 0's, for a run whose first batch
    had a regression target far off the outputs' scale.

    Args:
        facts: the first batch's :class:`ScaleFacts`.
    """

    code, when = "target_scale_stall", When.EPOCH_END

    def __init__(self, facts: ScaleFacts) -> None:
        self.facts, self.first = facts, None

    @classmethod
    def create(cls, trainer, prepared) -> "StallWatch | None":
        return cls(prepared.scale) if prepared.scale is not None else None

    def run(self, trainer, *, epoch: int, metrics: dict, **info) -> Finding | None:
        loss = metrics.get("loss")
        if loss is None:
            return None
        if self.first is None:
            self.first = loss
            return None
        if epoch + 1 >= STALL_EPOCHS and loss > STALL_SHARE * self.first:
            return Finding(self.code,
                f"After {epoch + 1} epochs the training loss is still {loss:.3g} ({loss / self.first:.0%} of the first "
                f"epoch's {self.first:.3g}). Likely cause: {self.facts.hint()}")
        return None
