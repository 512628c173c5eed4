"""Re-export of :mod:`nnwidgets.engine.events` (the event names and the EventBus), kept so
``from nnwidgets.events import Event`` goes on working."""
from __future__ import annotations

from .engine.events import Event, EventBus, RemovableHandle

__all__ = ["Event", "RemovableHandle", "EventBus"]
