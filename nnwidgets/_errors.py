"""Plain-language versions of the errors PyTorch raises deep inside a training step.

The first batch is checked before step 1 (:mod:`nnwidgets.data`); what can only go wrong in a
later batch (a class label beyond the output width) or after a change made while training
(every layer frozen) still reaches PyTorch. Its message names neither the step nor the fix,
so the Trainer passes it through :func:`explain`, which keeps the original as ``__cause__``.
"""
from __future__ import annotations

from typing import Any

from .data import DataError
from .engine.loop import Where

__all__ = ["explain"]


def explain(error: BaseException, phase: str, epoch: int, step: int, width: int | None) -> BaseException:
    """A clearer exception for the known PyTorch failures, else ``error`` itself.

    Args:
        error: what the step raised.
        phase: where in the step it came from, a :class:`nnwidgets.engine.loop.Where` value
            (e.g. ``Where.LOSS``, ``Where.BACKWARD``).
        epoch, step: where (0-based epoch; optimizer steps completed).
        width: the model's output width C (number of classes), if known.

    Returns:
        A :class:`~nnwidgets.data.DataError` for a class label out of range, a
        ``RuntimeError`` for a model with no trainable parameter, or ``error`` unchanged.
    """
    text = str(error)
    where = f"at epoch {epoch}, step {step}"
    if phase == Where.LOSS and isinstance(error, (IndexError, RuntimeError)) and "out of bounds" in text:
        classes = f"the model's {width} outputs, labels 0..{width - 1}" if width else "the model's output width"
        new: Any = DataError(
            f"A class label in the batch {where} is out of range for {classes} (PyTorch: {text}). "
            "Only the first batch is checked before training, so this batch holds a label the first did not. "
            "If your labels run 1..C they are 1-based: shift them with y - 1; otherwise widen the last layer "
            "to the number of classes or remap the labels to 0..C-1.", "labels_out_of_range")
    elif phase == Where.BACKWARD and "does not require grad" in text:
        new = RuntimeError(
            f"No parameter of the model requires a gradient {where} (are all layers frozen?), so there is "
            "nothing to train. Unfreeze a layer with trainer.freeze(name, False) or the panel's freeze "
            f"toggles, or set requires_grad_(True) on its parameters. (PyTorch: {text})")
    else:
        return error
    new.__cause__ = error
    return new
