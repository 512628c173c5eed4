"""Run control: the run's state machine, the requests other threads make of the loop, and
the settings and freezes waiting for the next step boundary.

:class:`RunControl` is the only place that changes the run state, and every change fires
``STATE_CHANGED``. States and who moves between them (``TRANSITIONS``)::

    idle ─start→ running ⇄ paused          (pause() / resume(), step_once())
    running | paused → stopped | completed | failed   (the run ends)
    stopped | completed | failed | paused → running    (start() again continues)
    idle | stopped | completed → stopped | completed   (a checkpoint was restored)

What a user (or the panel) may do in each state is :meth:`RunControl.allowed`: one table
(``ACTIONS``) instead of every view restating the state machine.

Threads: requests (``pause``, ``step``, ``stop``, ``set``, ``freeze``) come from any thread
and only write fields under :attr:`RunControl.lock`; the loop's thread reads them at a step
boundary (:meth:`Loop.attend <nnwidgets.engine.loop.Loop.attend>`), when ``attention`` is set
(one attribute read per step).
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

from .. import hyperparams as hp
from .events import Event, EventBus

__all__ = ["STATES", "TRANSITIONS", "ACTIONS", "RunControl", "StopRun", "PauseRun"]

STATES = ("idle", "running", "paused", "stopped", "completed", "failed")

# state -> the states it may move to
TRANSITIONS: dict[str, frozenset[str]] = {
    "idle": frozenset({"running", "stopped", "completed"}),
    "running": frozenset({"paused", "stopped", "completed", "failed"}),
    "paused": frozenset({"running", "stopped", "completed", "failed"}),
    "stopped": frozenset({"running", "stopped", "completed"}),
    "completed": frozenset({"running", "stopped", "completed"}),
    "failed": frozenset({"running"}),
}

# state -> what may be asked in it: start (or resume), pause, step (step_once), stop, and
# configure (change the optimizer kind or the device: only while no step runs)
ACTIONS: dict[str, frozenset[str]] = {
    "idle": frozenset({"start", "step", "configure"}),
    "running": frozenset({"pause", "stop"}),
    "paused": frozenset({"start", "step", "stop", "configure"}),
    "stopped": frozenset({"start", "step", "configure"}),
    "completed": frozenset({"start", "step", "configure"}),
    "failed": frozenset({"start", "step", "configure"}),
}


class StopRun(Exception):
    """Raised inside the loop to end a run at a step boundary."""


class PauseRun(Exception):
    """Raised inside a blocking ``fit()`` to return control to the caller paused."""


class RunControl:
    """State, requests and pending changes of one Trainer's run.

    Args:
        bus: the Trainer's :class:`EventBus` (``STATE_CHANGED`` is fired through it).
        owner: the Trainer, passed to handlers.
        record: ``record(kind, name=, new=, message=)`` writes an event into the history.

    Attributes:
        state: one of :data:`STATES` (read from any thread; written only by :meth:`move`).
        lock: the condition every request and the loop's boundary work hold.
        active: a loop is running (``fit()`` or the background thread).
        background: the active loop runs in the background thread.
        attention: the loop must look at the requests at its next step boundary.
        stop_requested, pause_requested: what was asked.
        steps_allowed: ``step_once()`` presses not yet taken by the loop.
        step_granted: a press taken by the loop, not yet used by a step (given back if the
            epoch ends first).
        settings: :class:`~nnwidgets.hyperparams.PendingSettings` waiting for the next step.
        freezes: ``{layer: frozen}`` waiting for the next step.
    """

    def __init__(self, bus: EventBus, owner: Any, record: Callable[..., None]) -> None:
        self._bus, self._owner, self._record = bus, owner, record
        self.state = "idle"
        self.lock = threading.Condition()
        self.active = self.background = False
        self.attention = self.stop_requested = self.pause_requested = False
        self.steps_allowed = 0
        self.step_granted = False
        self.settings = hp.PendingSettings()
        self.freezes: dict[str, bool] = {}

    # ------------------------------------------------------------------ the state machine
    def move(self, state: str, message: str | None = None, kind: str = "state", name: str | None = None) -> None:
        """Change the state (firing ``STATE_CHANGED`` when it differs); with ``message``, also
        record a ``kind`` event named ``name`` (default: the state) in the history first.

        Raises:
            RuntimeError: ``state`` cannot follow the current one (see :data:`TRANSITIONS`).
        """
        if state != self.state and state not in TRANSITIONS[self.state]:
            raise RuntimeError(f"a run cannot go from {self.state!r} to {state!r}")
        if message is not None:
            self._record(kind, name=name or state, new=state, message=message)
        if state != self.state:
            old, self.state = self.state, state
            self._bus.fire(Event.STATE_CHANGED, self._owner, old=old, new=state)

    def allowed(self, action: str) -> bool:
        """Whether ``action`` (``"start"``, ``"pause"``, ``"step"``, ``"stop"``, ``"configure"``)
        may be asked now."""
        return action in ACTIONS.get(self.state, ())

    def allowed_actions(self) -> frozenset[str]:
        """Every action :meth:`allowed` now."""
        return ACTIONS.get(self.state, frozenset())

    # ------------------------------------------------------------------ a run's start and end
    def begin(self, background: bool) -> None:
        """A loop starts (under the lock): requests of the previous run are cleared, except a
        ``step_once()`` press, which makes the run pause after one step.

        Raises:
            RuntimeError: a loop is already running.
        """
        if self.active:
            raise RuntimeError("the trainer is already running; use pause()/stop() or wait()")
        self.stop_requested = False
        self.pause_requested = self.steps_allowed > 0
        self.attention = True
        self.active, self.background = True, background

    def end(self) -> None:
        """The loop ended (under the lock): waiters of :meth:`wait` are woken."""
        self.active = False
        self.lock.notify_all()

    # ------------------------------------------------------------------ requests (any thread)
    def request_pause(self) -> None:
        with self.lock:
            self.pause_requested, self.attention, self.steps_allowed = True, True, 0

    def request_resume(self) -> bool:
        """Lift a pause; returns whether a loop is active (else the caller starts one)."""
        with self.lock:
            self.pause_requested, self.attention = False, True
            if self.active:
                self.lock.notify_all()
            return self.active

    def request_step(self) -> bool:
        """Allow one more step, then pause; returns whether a loop is active."""
        with self.lock:
            self.pause_requested, self.attention = True, True
            if self.active:
                self.steps_allowed += 1
                self.lock.notify_all()
            else:
                self.steps_allowed = 1
            return self.active

    def request_stop(self) -> None:
        with self.lock:
            self.stop_requested, self.attention = True, True
            self.lock.notify_all()

    def put(self, settings: dict[str, float] | None = None, freeze: tuple[str, bool] | None = None) -> bool:
        """Queue checked settings and/or a freeze (under the lock); returns whether a loop is
        active (else the caller applies them at once)."""
        if settings:
            self.settings.put(settings)
        if freeze is not None:
            self.freezes[freeze[0]] = freeze[1]
        if self.active:
            self.attention = True
            self.lock.notify_all()
        return self.active

    @property
    def pending(self) -> bool:
        """Settings or freezes are waiting."""
        return bool(self.settings) or bool(self.freezes)

    def take(self) -> tuple[dict[str, float], dict[str, bool]]:
        """The waiting settings and freezes, cleared (call under the lock)."""
        frozen, self.freezes = self.freezes, {}
        return self.settings.take(), frozen

    def grant_step(self) -> bool:
        """Take one ``step_once()`` press, if any (the loop, under the lock)."""
        if self.steps_allowed <= 0:
            return False
        self.steps_allowed -= 1
        self.step_granted = True
        self.attention = True
        return True

    def give_back_step(self) -> None:
        """An epoch ended before a granted step was taken: it is the next epoch's first."""
        if self.step_granted:
            with self.lock:
                self.steps_allowed += 1
                self.step_granted, self.attention = False, True

    def hold(self, apply_pending: Callable[[], None]) -> None:
        """Wait in the paused state (the loop's thread, under the lock) until resumed, stepped
        or stopped; waiting settings are applied while paused."""
        while self.pause_requested and not self.stop_requested and self.steps_allowed == 0:
            self.lock.wait(0.5)
            if self.pending:
                apply_pending()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the background run ends or pauses (a requested stop is waited for);
        True when it did within ``timeout`` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.lock:
            # a pause that resume()/step_once() has lifted but the loop has not left yet is no pause
            while self.active and not (self.state == "paused" and self.pause_requested
                                       and self.steps_allowed == 0 and not self.stop_requested):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self.lock.wait(0.05 if left is None else min(left, 0.05))
        return True
