"""A run as plain text, for places where no widget can be shown (terminal IPython,
``ipython script.ipy``): one line per epoch, notes, and the run's end. UI-free.

Example output::

    epoch 1/3  loss 1.0843  accuracy 0.4062  val_loss 1.0312  val_accuracy 0.5  lr 0.05
    epoch 2/3  loss 0.9712  accuracy 0.5938  val_loss 0.9455  val_accuracy 0.625  lr 0.05
    epoch 3/3  loss 0.8906  accuracy 0.6719  val_loss 0.8702  val_accuracy 0.6875  lr 0.05
    training completed (3 epochs, 12 steps)
"""
from __future__ import annotations

import math
import sys
from typing import Any, TextIO

from .events import Event

__all__ = ["TextReport", "epoch_line"]

_SKIP = ("epoch", "step", "time_s", "lr")


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) and math.isfinite(value) else str(value)


def epoch_line(row: dict[str, Any], target_epochs: int) -> str:
    """``"epoch 3/10  loss 0.4213  accuracy 0.8125  val_loss 0.441 ...  lr 0.05"`` for an
    epoch row of :class:`~nnwidgets.history.History` (epochs counted from 1)."""
    parts = [f"epoch {int(row['epoch']) + 1}/{target_epochs}"]
    parts += [f"{k} {_number(v)}" for k, v in row.items() if k not in _SKIP and isinstance(v, (int, float))]
    if "lr" in row:
        parts.append(f"lr {_number(row['lr'])}")
    return "  ".join(parts)


class TextReport:
    """Prints a :class:`~nnwidgets.engine.Trainer`'s epochs as they complete.

    Args:
        trainer: the Trainer to follow.
        out: the stream (default: ``sys.stdout`` at the time of each line).

    Attributes:
        trainer: the Trainer (as ``panel.trainer`` of a ``TrainingPanel``).
    """

    def __init__(self, trainer: Any, out: TextIO | None = None) -> None:
        self.trainer, self._out = trainer, out
        self._handle = trainer.on(Event.EPOCH_COMPLETED, self._epoch)

    def _write(self, line: str) -> None:
        out = self._out if self._out is not None else sys.stdout
        out.write(line + "\n")
        out.flush()

    def _epoch(self, trainer: Any, metrics: dict[str, Any], **_: Any) -> None:
        self._write(epoch_line(metrics, trainer.target_epochs))

    def note(self, message: str) -> None:
        """Print a note of the front end (e.g. an earlier run that was stopped)."""
        self._write(f"note: {message}")

    def end(self) -> None:
        """Print how the run ended (the engine's own words for a stop, a pause or a failure)."""
        t = self.trainer
        if t.state == "completed":
            self._write(f"training completed ({t.epoch} epochs, {t.step} steps)")
            return
        events = [e for e in t.history.event_records if e.get("kind") in ("state", "error", "nonfinite")]
        message = events[-1]["message"] if events else t.state
        self._write(f"training {t.state}: {message}" if not message.startswith(t.state) else f"training {message}")

    def close(self) -> None:
        """Stop printing (the run itself goes on)."""
        self._handle.remove()

    def __repr__(self) -> str:
        return f"TextReport({self.trainer!r})"
