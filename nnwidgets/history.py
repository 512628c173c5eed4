"""History: the columnar, append-only record of a run.

One writer (the training loop) appends; any number of readers (views on their own
threads) take snapshots without locks. Per-step numbers live in preallocated numpy
columns (16 bytes per step: epoch int32, loss float32, learning rate float32, time float32),
so 1,000,000 steps take 16 MB (32 MB while a column is being grown). DataFrames are
built only when asked for.

Readers rely on the writer's order: a column is filled (or swapped for a larger copy)
*before* the step count that covers it is published, so ``arrays()`` never returns
unwritten rows.
"""
from __future__ import annotations

import math
import os
import threading
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["History"]

_STEP_COLUMNS = {"epoch": np.int32, "loss": np.float32, "lr": np.float32, "time_s": np.float32}


def _plain(value: Any) -> Any:
    """A number, string, bool or None as a plain Python value (numpy/tensor scalars become
    float/int, anything else its ``str``), so ``torch.load(weights_only=True)`` accepts it."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


class History:
    """Everything a run recorded: steps, epochs, events and gradient samples.

    Attributes are read with the properties below; all of them are safe to call from
    any thread while a run is going on.

    Example:
        >>> h = History()
        >>> h.append_steps(0, np.array([0.9, 0.8]), lr=0.1, t0=0.0, t1=0.02)
        >>> h.steps.loss.round(2).tolist()
        [0.9, 0.8]
    """

    def __init__(self, capacity: int = 4096) -> None:
        self._cols = {k: np.zeros(capacity, dtype=t) for k, t in _STEP_COLUMNS.items()}
        self._n = 0
        self._epochs: list[dict[str, Any]] = []
        self._events: list[dict[str, Any]] = []
        self._grad_steps: np.ndarray = np.zeros(0, dtype=np.int64)
        self._grad_norms: np.ndarray = np.zeros((0, 0), dtype=np.float32)
        self._grad_n = 0
        self._grad_layers: list[str] = []
        self._last_histogram: tuple[np.ndarray, np.ndarray, int] | None = None
        self._grad_total = 0    # gradient samples ever recorded (a reader's cursor compares it)
        self._truncations = 0   # rollbacks that removed rows (a reader's cursor compares it)
        self._lock = threading.Lock()  # guards the small list/array swaps, never the hot path

    # ---------------------------------------------------------------- writing
    def append_steps(self, epoch: int, losses: np.ndarray, lr: float, t0: float, t1: float) -> None:
        """Append consecutive steps of one epoch.

        Args:
            epoch: epoch index (0-based) of all these steps.
            losses: float array ``(k,)``, the training loss of each step (may hold inf/nan).
            lr: learning rate used by these steps (of the first param group).
            t0, t1: seconds since the run began at the previous flush and now; step times
                are spread linearly between them.
        """
        k = len(losses)
        if k == 0:
            return
        n = self._n
        if n + k > len(self._cols["loss"]):
            size = max(n + k, int(len(self._cols["loss"]) * 1.5) + 1024)
            for key, col in list(self._cols.items()):
                grown = np.zeros(size, dtype=col.dtype)
                grown[:n] = col[:n]
                self._cols[key] = grown
        c = self._cols
        c["epoch"][n:n + k] = epoch
        c["loss"][n:n + k] = losses
        c["lr"][n:n + k] = lr
        c["time_s"][n:n + k] = t0 + (t1 - t0) / k * np.arange(1, k + 1)  # = linspace(t0, t1, k + 1)[1:], 5x cheaper
        self._n = n + k

    def truncate_steps(self, n_steps: int) -> None:
        """Forget steps from ``n_steps`` on (used when a run rolls back to verified weights)."""
        shrinks = int(n_steps) < self._n
        self._n = min(self._n, max(0, int(n_steps)))
        self._truncations += shrinks  # after the rows go: a reader that sees the count sees them gone

    def truncate_epochs(self, n_epochs: int) -> None:
        """Forget epoch records from ``n_epochs`` on (a rollback into an earlier epoch)."""
        with self._lock:
            shrinks = int(n_epochs) < len(self._epochs)
            self._epochs = self._epochs[:max(0, int(n_epochs))]
            self._truncations += shrinks

    def append_epoch(self, row: dict[str, Any]) -> None:
        """Append one epoch record (plain Python numbers only)."""
        with self._lock:
            self._epochs = self._epochs + [dict(row)]

    def append_event(self, kind: str, *, step: int, epoch: int, time_s: float, name: str = "",
                     old: Any = None, new: Any = None, message: str = "") -> dict[str, Any]:
        """Record an event: ``kind`` is one of "setting", "notice", "state", "error", "nonfinite"."""
        ev = {"step": int(step), "epoch": int(epoch), "time_s": float(time_s), "kind": kind,
              "name": name, "old": old, "new": new, "message": message}
        with self._lock:
            self._events = self._events + [ev]
        return ev

    def append_gradients(self, step: int, layers: list[str], norms: np.ndarray,
                         hist: np.ndarray | None = None, edges: np.ndarray | None = None) -> None:
        """Record one gradient sample: ``norms`` float32 ``(L,)`` per layer; optional
        ``hist`` ``(L, bins)`` counts of log10|g| with ``edges`` ``(bins+1,)`` (only the
        latest histogram is kept). Rows go into a preallocated array grown by 1.5x, so a
        sample costs O(L), not O(samples)."""
        norms = np.asarray(norms, dtype=np.float32).reshape(-1)
        with self._lock:
            m = self._grad_n
            if layers != self._grad_layers:  # new layer set (e.g. another model): start over
                self._grad_layers, m = list(layers), 0
                self._grad_norms = np.zeros((256, len(layers)), dtype=np.float32)
                self._grad_steps = np.zeros(256, dtype=np.int64)
            if m == len(self._grad_steps):
                size = int(m * 1.5) + 256
                norms_grown = np.zeros((size, len(layers)), dtype=np.float32)
                steps_grown = np.zeros(size, dtype=np.int64)
                norms_grown[:m], steps_grown[:m] = self._grad_norms[:m], self._grad_steps[:m]
                self._grad_norms, self._grad_steps = norms_grown, steps_grown
            self._grad_norms[m] = norms
            self._grad_steps[m] = int(step)
            self._grad_n = m + 1
            self._grad_total += 1
            if hist is not None:
                self._last_histogram = (np.asarray(edges), np.asarray(hist, dtype=np.float32), int(step))

    # ---------------------------------------------------------------- reading
    @property
    def n_steps(self) -> int:
        """Number of recorded optimizer steps."""
        return self._n

    @property
    def truncations(self) -> int:
        """Number of rollbacks that removed step or epoch rows (readers notice one by it)."""
        return self._truncations

    @property
    def gradient_samples(self) -> int:
        """Number of gradient samples ever recorded (grows by one per sample, O(1))."""
        return self._grad_total

    def arrays(self) -> dict[str, np.ndarray]:
        """Snapshot of the step columns as numpy arrays (``step`` is ``arange(n)``)."""
        n = self._n
        cols = self._cols
        out = {k: cols[k][:n].copy() for k in _STEP_COLUMNS}
        out["step"] = np.arange(n, dtype=np.int64)
        return out

    def loss_since(self, start: int) -> np.ndarray:
        """Losses of steps ``start..n-1`` (a copy), for incremental readers."""
        n = self._n
        return self._cols["loss"][start:n].copy()

    @property
    def epoch_records(self) -> list[dict[str, Any]]:
        """Epoch rows as a list of dicts (a snapshot)."""
        return self._epochs

    @property
    def event_records(self) -> list[dict[str, Any]]:
        """Event rows as a list of dicts (a snapshot)."""
        return self._events

    def gradient_norms(self) -> tuple[np.ndarray, list[str], np.ndarray]:
        """``(steps (m,), layer names (L,), norms float32 (m, L))`` of all gradient samples."""
        with self._lock:
            m = self._grad_n
            return self._grad_steps[:m].copy(), list(self._grad_layers), self._grad_norms[:m].copy()

    def last_gradient_norms(self) -> tuple[int, list[str], np.ndarray] | None:
        """``(step, layer names (L,), norms float32 (L,))`` of the newest gradient sample (O(L))."""
        with self._lock:
            m = self._grad_n
            if not m:
                return None
            return int(self._grad_steps[m - 1]), list(self._grad_layers), self._grad_norms[m - 1].copy()

    def last_histogram(self) -> tuple[list[str], np.ndarray, np.ndarray, int] | None:
        """``(layer names, edges (bins+1,), counts (L, bins), step)`` of the newest histogram."""
        with self._lock:
            if self._last_histogram is None:
                return None
            edges, counts, step = self._last_histogram
            return list(self._grad_layers), edges, counts, step

    @property
    def steps(self) -> pd.DataFrame:
        """One row per optimizer step: step, epoch, loss, lr, time_s (seconds since start)."""
        a = self.arrays()
        return pd.DataFrame({"step": a["step"], "epoch": a["epoch"], "loss": a["loss"].astype(np.float64),
                             "lr": a["lr"].astype(np.float64), "time_s": a["time_s"].astype(np.float64)})

    @property
    def epochs(self) -> pd.DataFrame:
        """One row per epoch: epoch, step, loss, metrics, val_loss, val_ metrics, lr, time_s
        (before the first epoch ends: no rows, with the columns every run has, so
        ``history.epochs[["epoch", "loss"]]`` works after a run that failed early)."""
        if not self._epochs:
            return pd.DataFrame(columns=["epoch", "step", "loss", "lr", "time_s"])
        return pd.DataFrame(self._epochs)

    @property
    def events(self) -> pd.DataFrame:
        """One row per event: step, epoch, time_s, kind, name, old, new, message."""
        cols = ["step", "epoch", "time_s", "kind", "name", "old", "new", "message"]
        return pd.DataFrame(self._events, columns=cols)

    @property
    def gradients(self) -> pd.DataFrame:
        """Long table of gradient samples: step, layer, norm."""
        steps, layers, norms = self.gradient_norms()
        if not len(steps):
            return pd.DataFrame(columns=["step", "layer", "norm"])
        return pd.DataFrame({"step": np.repeat(steps, len(layers)), "layer": layers * len(steps),
                             "norm": norms.reshape(-1).astype(np.float64)})

    def nbytes(self) -> int:
        """Bytes held by the step columns (allocated capacity, not just the used rows)."""
        return int(sum(c.nbytes for c in self._cols.values()))

    def to_csv(self, directory: str | os.PathLike) -> list[str]:
        """Write steps.csv, epochs.csv, events.csv, gradients.csv into ``directory``;
        returns the paths written."""
        os.makedirs(directory, exist_ok=True)
        paths = []
        for name in ("steps", "epochs", "events", "gradients"):
            path = os.path.join(directory, f"{name}.csv")
            getattr(self, name).to_csv(path, index=False)
            paths.append(path)
        return paths

    # ---------------------------------------------------------------- checkpoints
    def to_dict(self) -> dict[str, Any]:
        """Plain-Python copy (lists of floats/ints/str) that ``torch.load(weights_only=True)``
        can read back. Non-finite losses are kept as Python floats (inf/nan)."""
        a = self.arrays()
        clean = lambda rows: [{k: _plain(v) for k, v in r.items()} for r in rows]  # noqa: E731
        return {"epoch": [int(v) for v in a["epoch"]], "loss": [float(v) for v in a["loss"]],
                "lr": [float(v) for v in a["lr"]], "time_s": [float(v) for v in a["time_s"]],
                "epochs": clean(self._epochs), "events": clean(self._events)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "History":
        """Rebuild from :meth:`to_dict` output."""
        h = cls(capacity=max(1024, len(d.get("loss", ()))))
        n = len(d.get("loss", ()))
        for key in _STEP_COLUMNS:
            h._cols[key][:n] = np.asarray(d.get(key, [0] * n), dtype=_STEP_COLUMNS[key])
        h._n = n
        h._epochs = [dict(r) for r in d.get("epochs", [])]
        h._events = [dict(r) for r in d.get("events", [])]
        return h

    def __repr__(self) -> str:
        last = self._epochs[-1] if self._epochs else {}
        loss = last.get("loss", math.nan)
        return f"History(steps={self._n}, epochs={len(self._epochs)}, events={len(self._events)}, last epoch loss={loss:.4g})"
