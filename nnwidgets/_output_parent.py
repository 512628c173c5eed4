"""Output of the training thread goes to the ``%%train`` cell that started the run.

A kernel tags every output message with a *parent*: the request (a cell's
``execute_request``) it belongs to, and front ends show it under that cell. Output written on
another thread has no request of its own:

* ipykernel 6 (6.29-6.31) patches ``threading.Thread`` so a thread started while a cell runs
  inherits that cell's parent; a thread started later (Start pressed in the panel: a widget
  message, not a cell) gets the newest cell's.
* ipykernel 7 dropped that: the thread's output goes to whatever cell runs when it is written
  (``OutStream.parent_header`` falls back to the global parent); 7.0.2+ adds
  ``OutStream.set_thread_parent(parent)`` for a thread to claim a parent.

So ``%%train`` captures the parent of its own cell (:func:`capture`) and the training thread
adopts it each time a run starts (a ``STATE_CHANGED`` → ``"running"`` handler, which runs on
the training thread): a ``print`` or a warning inside the user's ``forward`` appears under the
``%%train`` cell on both majors, never in a later cell.
"""
from __future__ import annotations

import sys
import threading
from typing import Any, Callable

__all__ = ["capture", "route_run_output"]


def capture(shell: Any) -> dict | None:
    """The parent message of the request the kernel runs now (``kernel.get_parent()``), or
    ``None`` outside a kernel (terminal IPython) or when the kernel has none."""
    kernel = getattr(shell, "kernel", None)
    try:
        parent = kernel.get_parent() if kernel is not None else None
    except Exception:  # noqa: BLE001 - an older or foreign kernel
        return None
    return parent if isinstance(parent, dict) and parent.get("header") else None


def adopt(parent: dict) -> None:
    """Route the calling thread's ``sys.stdout`` / ``sys.stderr`` output to ``parent``:
    ``OutStream.set_thread_parent`` (ipykernel ≥ 7.0.2), else ipykernel 6's per-thread map
    (``_thread_to_parent_header``); a stream of neither kind is left alone."""
    from jupyter_client.session import extract_header
    for stream in (sys.stdout, sys.stderr):
        setter = getattr(stream, "set_thread_parent", None)
        if callable(setter):
            setter(parent)
            continue
        per_thread = getattr(stream, "_thread_to_parent_header", None)
        if isinstance(per_thread, dict):
            per_thread[threading.get_ident()] = extract_header(parent)


def route_run_output(trainer: Any, shell: Any) -> Callable[[], None] | None:
    """Make every run of ``trainer`` on a background thread write its output under the cell
    that runs now. Returns the handle's ``remove`` (``None`` when there is no parent to keep).

    Example:
        >>> route_run_output(trainer, get_ipython())   # in %%train, before trainer.start()  # doctest: +SKIP
    """
    parent = capture(shell)
    if parent is None:
        return None

    def on_state(_trainer: Any, new: str = "", **_: Any) -> None:
        if new == "running" and threading.current_thread() is not threading.main_thread():
            try:
                adopt(parent)
            except Exception:  # noqa: BLE001 - a handler's error would fail the run; output only
                pass

    return trainer.on("state_changed", on_state).remove
