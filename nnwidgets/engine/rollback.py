"""Rollback targets: copies of the weights, buffers and optimizer state after a verified flush.

When a flush finds a non-finite loss (or a broken batch) among steps already applied, the
model goes back to the last snapshot. Snapshots are taken at the start of a run, at every
epoch end and within an epoch at most every ``SNAPSHOT_INTERVAL_S``; a snapshot of the same
shapes is copied into the tensors of the previous one (``copy_``, no allocation), so one costs
~2 copies of the weights (parameters plus e.g. SGD's momentum buffers) in memory.

Each snapshot also keeps the caller's *marks* (plain values: the step counter, how many history
rows existed, the epoch's loss sums, ...) and gives them back on :meth:`Rollback.restore`, so the
caller can put its own counters back without this module knowing them.
"""
from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

__all__ = ["Rollback", "SNAPSHOT_INTERVAL_S"]

SNAPSHOT_INTERVAL_S = 1.0  # rollback copies of the weights are refreshed at most this often


def _tensors(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """Parameters, buffers, then the optimizer state's tensors, in a fixed order."""
    out = list(model.parameters()) + list(model.buffers())
    for st in optimizer.state.values():
        out += [v for v in st.values() if torch.is_tensor(v)]
    return out


class Rollback:
    """The last snapshot of a model and its optimizer.

    Args:
        interval_s: the least seconds between two snapshots that are not forced (``None``:
            ``SNAPSHOT_INTERVAL_S``, read at each snapshot).

    Example:
        >>> rb = Rollback()                                                   # doctest: +SKIP
        >>> rb.take(model, opt, {"step": 10}, force=True)                      # doctest: +SKIP
        >>> rb.restore(model, opt)  # weights and optimizer state as at step 10 # doctest: +SKIP
        {'step': 10}
    """

    def __init__(self, interval_s: float | None = None) -> None:
        self.interval_s = interval_s
        self._snap: dict[str, Any] | None = None
        self._t = 0.0

    @property
    def marks(self) -> dict[str, Any] | None:
        """The marks of the snapshot held, or ``None``."""
        return None if self._snap is None else self._snap["marks"]

    def clear(self) -> None:
        """Forget the snapshot (the model moved to another device, a new optimizer)."""
        self._snap = None

    def take(self, model: nn.Module, optimizer: torch.optim.Optimizer, marks: dict[str, Any],
             force: bool = False) -> bool:
        """Copy weights, buffers and optimizer state, with ``marks``; unless ``force``, only when
        ``interval_s`` has passed since the last one. Returns whether a snapshot was taken."""
        now = time.perf_counter()
        interval = SNAPSHOT_INTERVAL_S if self.interval_s is None else self.interval_s
        if not force and now - self._t < interval:
            return False
        self._t = now
        with torch.no_grad():
            tensors = _tensors(model, optimizer)
            old = self._snap
            if old is None or len(old["tensors"]) != len(tensors) or any(
                    a.shape != b.shape or a.device != b.device for a, b in zip(old["tensors"], tensors)):
                copies = [t.detach().clone() for t in tensors]
            else:
                copies = old["tensors"]
                for c, t in zip(copies, tensors):
                    c.copy_(t)
            # optimizer state entries in the order their tensors were appended above;
            # non-tensor values (e.g. an int step count) are kept as they are
            entries = [(p, k, None if torch.is_tensor(v) else v)
                       for p, st in optimizer.state.items() for k, v in st.items()]
        self._snap = {"tensors": copies, "opt_entries": entries, "marks": dict(marks)}
        return True

    def restore(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any] | None:
        """Put the snapshot back into ``model`` and ``optimizer`` (the same objects it was taken
        of); returns its marks, or ``None`` (nothing changed) when there is no snapshot."""
        snap = self._snap
        if snap is None:
            return None
        saved = iter(snap["tensors"])
        with torch.no_grad():
            for t in list(model.parameters()) + list(model.buffers()):
                t.copy_(next(saved))
            optimizer.state.clear()
            for p, k, plain in snap["opt_entries"]:
                optimizer.state[p][k] = next(saved).clone() if plain is None else plain
        return dict(snap["marks"])
