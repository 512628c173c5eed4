"""Which Trainers have a live run on which model: two runs must not train one model at once.

Two threads training one model object fail inside autograd: one thread's ``optimizer.step()``
changes in place the weights the other's backward pass still needs ("one of the variables
needed for gradient computation has been modified by an inplace operation"), and the run that
was there first is the one that dies. So a run is registered under its model when it begins
(:func:`claim`, under a lock) and removed when it ends (:func:`release`, from the run's
``finally``); a second Trainer's ``fit()``/``start()`` on a model whose run is *running* is
refused with a ``RuntimeError`` before the model is touched. A run paused in the background
holds no graph, so another Trainer may train the model meanwhile; resuming the paused run is
then refused while that other run is running (:func:`resuming`).

The registry holds weak references (model → set of Trainers); a ``torch.compile``d model is
keyed by the module it wraps (both train the same parameters).
"""
from __future__ import annotations

import threading
import weakref
from contextlib import contextmanager
from typing import Any, Iterator

__all__ = ["claim", "release", "resuming", "live_runs"]

_lock = threading.Lock()
_runs: "weakref.WeakKeyDictionary[Any, weakref.WeakSet]" = weakref.WeakKeyDictionary()


def _key(model: Any) -> Any:
    return getattr(model, "_orig_mod", model)


def _training(trainer: Any) -> bool:
    """``trainer`` has a loop that runs or is about to (a pause already lifted counts)."""
    c = trainer._control
    return c.active and not (c.state == "paused" and c.pause_requested and c.steps_allowed == 0
                             and not c.stop_requested)


def _busy(model: Any, trainer: Any) -> Any:
    """Another Trainer whose run on ``model`` is training (not paused), or ``None``."""
    for other in list(_runs.get(_key(model), ())):
        if other is not trainer and _training(other):
            return other
    return None


def _refuse(other: Any) -> RuntimeError:
    return RuntimeError(f"this model is being trained by another Trainer ({other.state}, epoch {other.epoch}, "
                        f"step {other.step}); stop it first (other.stop()) or pause it (other.pause()) "
                        "before training it with this Trainer")


@contextmanager
def resuming(trainer: Any) -> Iterator[None]:
    """Around lifting a pause of ``trainer``'s run: raise if another Trainer's run on its model
    is training; otherwise hold the registry's lock while the pause is lifted (no other run can
    be claimed in between)."""
    with _lock:
        other = _busy(trainer.model, trainer)
        if other is not None:
            raise _refuse(other)
        yield


def claim(trainer: Any) -> None:
    """Register ``trainer``'s run on its model; raise (registering nothing) if another
    Trainer's run on that model is running."""
    with _lock:
        other = _busy(trainer.model, trainer)
        if other is None:
            _runs.setdefault(_key(trainer.model), weakref.WeakSet()).add(trainer)
    if other is not None:
        raise _refuse(other)


def release(trainer: Any) -> None:
    """Remove ``trainer``'s run from the registry (idempotent)."""
    with _lock:
        runs = _runs.get(_key(trainer.model))
        if runs is not None:
            runs.discard(trainer)
            if not runs:
                _runs.pop(_key(trainer.model), None)


def live_runs(model: Any) -> list[Any]:
    """The Trainers with a live (running or paused) run on ``model``."""
    with _lock:
        return list(_runs.get(_key(model), ()))
