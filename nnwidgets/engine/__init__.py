"""The engine: training without any UI (imports no ipywidgets, bqplot, anywidget or IPython).

``from nnwidgets.engine import Trainer`` is the public entry; the parts are described in
``docs/architecture.md``.
"""
from __future__ import annotations

from .control import STATES
from .events import Event, EventBus, RemovableHandle
from .trainer import Trainer

__all__ = ["Trainer", "STATES", "Event", "EventBus", "RemovableHandle"]
