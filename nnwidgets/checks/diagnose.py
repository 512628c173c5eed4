"""Why a loss became NaN/inf: the batch's own data, the target scale, or the settings.

The loop keeps references to its last few raw batches (:func:`batch_ring`, at most
``HOLD_BYTES`` of them, one ``deque.append`` per step). Only when a flush finds a non-finite
loss is that step's batch looked at (:func:`nonfinite_in`, which syncs: it runs on the error
path, never per step). A batch that already holds NaN/inf is named as the cause with the data
fix, and it is skipped when the run resumes (a batch that poisons every loss would otherwise be
retried forever), and after that first pause such a batch coming round again (the next epoch of
an unshuffled loader) is skipped with a counted notice instead of pausing again
(:func:`nnwidgets.engine.verify.nonfinite`); a loss that turned non-finite on clean data keeps
the learning-rate advice and always pauses.
"""
from __future__ import annotations

from collections import deque
from typing import Any

import torch

__all__ = ["HOLD_BYTES", "batch_ring", "find_batch", "nonfinite_in", "nonfinite_message", "NONFINITE_FIXES"]

HOLD_BYTES = 32 * 2**20  # raw batches kept for inspection: at most this many bytes, and 1..64 batches
NONFINITE_FIXES = ("lower the learning rate (e.g. 10x), standardise the features (zero mean, unit variance), "
                   "or clip gradients with torch.nn.utils.clip_grad_norm_")
DATA_FIX = ("Clean the data: df.dropna() or df.fillna(...) before building tensors, or x = torch.nan_to_num(x) "
            "(y likewise)")


def _tensors(obj: Any):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, (tuple, list)):
        for v in obj:
            yield from _tensors(v)


def batch_ring(batch: Any) -> deque:
    """An empty ``deque`` of ``(step, batch)`` sized so that batches like ``batch`` take at most
    ``HOLD_BYTES`` (1 to 64 of them; 8 without a batch to measure)."""
    size = sum(t.numel() * t.element_size() for t in _tensors(batch)) if batch is not None else 0
    return deque(maxlen=max(1, min(64, HOLD_BYTES // size)) if size else 8)


def find_batch(ring: deque | None, step: int) -> Any:
    """The batch of optimizer step ``step`` if it is still held, else None."""
    for s, batch in reversed(ring or ()):
        if s == step:
            return batch
        if s < step:
            break
    return None


def _count(t: torch.Tensor, columns: bool) -> str:
    bad = ~torch.isfinite(t)
    n_nan, n_bad = int(torch.isnan(t).sum()), int(bad.sum())
    kinds = [f"{n_nan} NaN"] * bool(n_nan) + [f"{n_bad - n_nan} inf"] * bool(n_bad - n_nan)
    cols = bad.any(0).nonzero().flatten()[:8].tolist() if columns and t.dim() == 2 else []
    return " and ".join(kinds) + (f" (columns {cols})" if cols else "")


def nonfinite_in(batch: Any) -> str | None:
    """``"NaN in its features (3 NaN (columns [2]))"``-style description of the NaN/inf values in a
    raw batch ``(x, y)`` (nested inputs too), or None when every value is finite. Syncs."""
    from ..data import DataError, split_batch
    try:
        x, y = split_batch(batch)
    except DataError:
        x, y = batch, None
    found = []
    for part, obj in (("features", x), ("targets", y)):
        for t in _tensors(obj):
            if (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(t).all()):
                found.append(f"{_count(t, part == 'features')} in its {part}")
                break
    return "; ".join(found) or None


def nonfinite_message(kind: str, step: int, epoch: int, kept: str, settings: dict, data: str | None,
                      held: bool, scale_hint: str | None) -> str:
    """The message for a loss that became ``kind`` (``"nan"``/``"inf"``) at ``step``.

    Args:
        kind: ``"nan"`` or ``"inf"``.
        step, epoch: where (0-based optimizer step of the batch).
        kept: what the weights are now (``"rolled back to the weights before step 40"``).
        settings: the trainer's ``lr`` and ``momentum``.
        data: :func:`nonfinite_in` of that step's batch (None: its values are finite, or it was not held).
        held: whether that batch was still held to be checked.
        scale_hint: from :mod:`nnwidgets.checks.scale`, when the regression target is far off the outputs' scale.
    """
    if data is not None:
        return (f"loss became {kind} at step {step} (epoch {epoch}) because the batch at step {step} has {data}: "
                f"the loss is {kind} whatever the learning rate. Training paused, {kept}; that batch is skipped "
                f"when the run resumes (resume() or fit()), and batches with NaN/inf data in later epochs are skipped "
                f"with a notice. {DATA_FIX}.")
    momentum = "n/a" if settings["momentum"] is None else f"{settings['momentum']:g}"
    cause = f" Likely cause: {scale_hint}" if scale_hint else ""
    unseen = "" if held else " (that batch was no longer held to check it for NaN/inf)"
    return (f"loss became {kind} at step {step} (epoch {epoch}) with learning rate {settings['lr']:g} and "
            f"momentum {momentum}; training paused, {kept}.{cause} Usual fixes: {NONFINITE_FIXES}{unseen}.")
