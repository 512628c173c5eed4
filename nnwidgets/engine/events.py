"""Named training events and the handler registry the Trainer fires them through.

Handlers run on the thread that runs the loop (the caller of :meth:`Trainer.fit`,
or the Trainer's background thread after :meth:`Trainer.start`). They must be quick:
a slow handler slows training. Views never need per-step handlers; they poll
:class:`~nnwidgets.history.History` from their own thread.

Which events fire when:

* ``FIT_STARTED`` once per ``fit()``/``start()`` call, after the first batch was checked.
* ``EPOCH_STARTED`` / ``EPOCH_COMPLETED`` around each training epoch;
  ``VALIDATION_COMPLETED`` after the validation pass of an epoch (only with ``val_data``).
* ``BATCH_COMPLETED`` after every optimizer step. It is the only per-step event; register it
  with ``every=n`` to be called every n-th step. Its handler receives the step number but no
  loss value (reading the loss would force a host sync per step).
* ``METRICS_FLUSHED`` whenever buffered losses were fetched from the device into the
  history (every ~0.1 s of wall time, every step during the first steps).
* ``GRADIENTS_SAMPLED`` after each gradient-statistics sample.
* ``SETTING_CHANGED`` when a pending ``set()`` was applied (between two steps).
* ``NOTICE`` for every input fix or warning (see ``History.events``).
* ``STATE_CHANGED`` on every state transition (running, paused, stopped, ...).
* The package's own features subscribe like a user's handler (:mod:`nnwidgets.handlers`:
  gradient sampling on ``BATCH_COMPLETED``, scheduler stepping; :mod:`nnwidgets.checks`:
  periodic and epoch-end checks). A handler that adapts its rate re-declares it through its
  handle (``handle.every = n``).
* A run that ends fires exactly one of ``FIT_COMPLETED`` (all epochs done), ``STOPPED``
  (``stop()``, ``KeyboardInterrupt``, a non-finite loss pauses instead) or
  ``EXCEPTION_RAISED`` (an error in the model, loss, loader or a handler).
"""
from __future__ import annotations

import enum
import threading
from typing import Any, Callable

__all__ = ["Event", "RemovableHandle", "EventBus"]


class Event(str, enum.Enum):
    """Names of the points in a run where handlers are called."""

    FIT_STARTED = "fit_started"
    EPOCH_STARTED = "epoch_started"
    BATCH_COMPLETED = "batch_completed"
    METRICS_FLUSHED = "metrics_flushed"
    GRADIENTS_SAMPLED = "gradients_sampled"
    VALIDATION_COMPLETED = "validation_completed"
    EPOCH_COMPLETED = "epoch_completed"
    SETTING_CHANGED = "setting_changed"
    NOTICE = "notice"
    STATE_CHANGED = "state_changed"
    STOPPED = "stopped"
    FIT_COMPLETED = "fit_completed"
    EXCEPTION_RAISED = "exception_raised"


class RemovableHandle:
    """Returned by :meth:`EventBus.on`; ``handle.remove()`` unregisters the handler.

    Attributes:
        every: the declared throttle (call every n-th firing); assigning it re-declares it
            and the next call comes ``n`` firings later (an adaptive handler such as the
            gradient sampler re-declares its own rate this way).
    """

    def __init__(self, bus: "EventBus", event: Event, entry: list) -> None:
        self._bus, self._event, self._entry = bus, event, entry

    @property
    def every(self) -> int:
        return self._entry[1]

    @every.setter
    def every(self, n: int) -> None:
        if int(n) < 1:
            raise ValueError(f"every must be >= 1, got {n}")
        self._entry[1] = self._entry[2] = int(n)

    def remove(self) -> None:
        """Unregister the handler; calling it twice is harmless."""
        self._bus._remove(self._event, self._entry)

    def __enter__(self) -> "RemovableHandle":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()


class EventBus:
    """A registry of handlers per :class:`Event`, safe to modify from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handlers: dict[Event, tuple[list, ...]] = {}

    def on(self, event: Event | str, handler: Callable[..., Any], every: int = 1) -> RemovableHandle:
        """Call ``handler(trainer, **info)`` when ``event`` fires.

        Args:
            event: an :class:`Event` or its string value (e.g. ``"epoch_completed"``).
            handler: callable taking the trainer and keyword details of the event.
            every: call only every n-th firing (throttling declared here, not counted in
                the handler). Must be >= 1.

        Raises:
            ValueError: unknown event name or ``every < 1``.
        """
        try:
            event = Event(event)
        except ValueError:
            names = ", ".join(e.value for e in Event)
            raise ValueError(f"unknown event {event!r}; known events: {names}") from None
        if int(every) < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        entry = [handler, int(every), int(every)]  # [handler, every, firings left until the next call]
        with self._lock:
            self._handlers[event] = self._handlers.get(event, ()) + (entry,)
        return RemovableHandle(self, event, entry)

    def _remove(self, event: Event, entry: list) -> None:
        with self._lock:
            self._handlers[event] = tuple(e for e in self._handlers.get(event, ()) if e is not entry)

    def has(self, event: Event) -> bool:
        """True when at least one handler listens to ``event`` (a cheap dict lookup)."""
        return bool(self._handlers.get(event))

    def fire(self, event: Event, trainer: Any, **info: Any) -> None:
        """Call the handlers of ``event``; exceptions propagate to the loop, which fails the run."""
        for entry in self._handlers.get(event, ()):
            entry[2] -= 1
            if entry[2] <= 0:
                entry[2] = entry[1]
                entry[0](trainer, **info)
