"""The pitfall checks."""
from __future__ import annotations

from typing import Any

from ..engine.events import Event

__all__ = ["attach_checks"]


def attach_checks(trainer: Any, prepared: Any) -> None:
    """Attach the checks that watch a run (after its first batch was checked)."""
    if prepared.scale is not None:  # a regression target far off the outputs' scale: say so if the loss stalls
        from .._scale import StallWatch
        trainer.on(Event.EPOCH_COMPLETED, StallWatch(prepared.scale))
