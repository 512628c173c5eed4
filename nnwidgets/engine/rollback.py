"""Rollback targets: copies of the weights, buffers and optimizer state after a verified flush.

When a flush finds a non-finite loss (or a broken batch) among steps already applied, the
model goes back to the last snapshot. Snapshots are taken at the start of a run, at every
epoch end and within an epoch at most every ``SNAPSHOT_INTERVAL_S``; a snapshot of the same
shapes is copied into the tensors of the previous one (``copy_``, no allocation), so one costs
~2 copies of the weights (parameters plus e.g. SGD's momentum buffers) in memory.

A rollback target must be weights whose own loss was seen in range: a snapshot taken where that
loss is not known yet (after the last step of an epoch, at the start of a run) is *pending*
until the caller has seen it (:meth:`Rollback.resolve`), and only then replaces the target. So
the rollback holds at most two sets of copies (the target and one pending snapshot; the buffers
are swapped, never copied twice).

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
        self._snap: dict[str, Any] | None = None     # the rollback target
        self._pending: dict[str, Any] | None = None  # a snapshot whose own loss is not known yet
        self._free: list[torch.Tensor] | None = None  # copies to reuse
        self._t = 0.0

    @property
    def marks(self) -> dict[str, Any] | None:
        """The marks of the snapshot held, or ``None``."""
        return None if self._snap is None else self._snap["marks"]

    @property
    def pending_marks(self) -> dict[str, Any] | None:
        """The marks of the pending snapshot, or ``None``."""
        return None if self._pending is None else self._pending["marks"]

    def clear(self) -> None:
        """Forget the snapshots (the model moved to another device, a new optimizer)."""
        self._snap = self._pending = None
        self._free = None

    def resolve(self, good: bool, **marks: Any) -> None:
        """The pending snapshot's own loss was seen: ``good`` makes it the rollback target (with
        ``marks`` added to its marks), else it is dropped. No-op without a pending snapshot."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        if good:
            pending["marks"].update(marks)
            old, self._snap = self._snap, pending
            self._free = None if old is None else old["tensors"]
        else:
            self._free = pending["tensors"]

    def take(self, model: nn.Module, optimizer: torch.optim.Optimizer, marks: dict[str, Any],
             force: bool = False, pending: bool = False) -> bool:
        """Copy weights, buffers and optimizer state, with ``marks``; unless ``force``, only when
        ``interval_s`` has passed since the last one. ``pending``: the weights' own loss is not
        known yet; the copy waits for :meth:`resolve` (an older pending one is replaced).
        Returns whether a snapshot was taken."""
        now = time.perf_counter()
        interval = SNAPSHOT_INTERVAL_S if self.interval_s is None else self.interval_s
        if not force and now - self._t < interval:
            return False
        self._t = now
        with torch.no_grad():
            tensors = _tensors(model, optimizer)
            # buffers to write into: an unresolved pending snapshot's, else the free ones
            spare = self._pending["tensors"] if self._pending is not None else self._free
            self._pending = self._free = None
            if spare is None or len(spare) != len(tensors) or any(
                    a.shape != b.shape or a.device != b.device for a, b in zip(spare, tensors)):
                copies = [t.detach().clone() for t in tensors]
            else:
                copies = spare
                for c, t in zip(copies, tensors):
                    c.copy_(t)
            # optimizer state entries in the order their tensors were appended above;
            # non-tensor values (e.g. an int step count) are kept as they are
            entries = [(p, k, None if torch.is_tensor(v) else v)
                       for p, st in optimizer.state.items() for k, v in st.items()]
        snap = {"tensors": copies, "opt_entries": entries, "marks": dict(marks)}
        if pending:
            self._pending = snap
        else:
            old, self._snap = self._snap, snap
            self._free = None if old is None else old["tensors"]
        return True

    def restore(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any] | None:
        """Put the snapshot back into ``model`` and ``optimizer`` (the same objects it was taken
        of); returns its marks, or ``None`` (nothing changed) when there is no snapshot."""
        snap = self._snap
        if self._pending is not None:  # newer than the target, and not verified: dropped
            self._free, self._pending = self._pending["tensors"], None
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
