"""Output of a training thread (``print``, ``warnings``) goes to its panel, not into a cell.

A thread started by ``%%train`` has no cell of its own: what user code prints or warns on it
(in ``forward``, a loss function, a ``collate_fn``) appeared in whatever cell ran later. Here
``sys.stdout`` / ``sys.stderr`` are wrapped once by a :class:`ThreadRouter` that sends a write
to the sink registered for the **writing thread** and passes every other thread's writes
(the kernel's main thread above all) to the stream it wraps, unchanged; ``warnings.showwarning``
is wrapped the same way. Nothing is redirected for a thread that is not registered.

Usage (the panel does this from a ``STATE_CHANGED`` handler, which runs on the training thread)::

    route_current_thread(lambda kind, text: status.log(text, kind=kind))   # kind: "output" | "warning"
    ...
    unroute_current_thread()   # flushes a last line without a newline
"""
from __future__ import annotations

import sys
import threading
import warnings
import weakref
from typing import Any, Callable

__all__ = ["ThreadRouter", "route_current_thread", "unroute_current_thread", "routed_threads"]

Sink = Callable[[str, str], None]   # sink(kind, text)
_LOCK = threading.Lock()
# thread → its line buffer; keyed by the Thread object (weakly), not its ident: idents are reused
_ROUTES: "weakref.WeakKeyDictionary[threading.Thread, _LineBuffer]" = weakref.WeakKeyDictionary()
_MAX_LINE = 2000                          # characters kept of one line


class _LineBuffer:
    """Collects writes until a newline; each complete line goes to ``sink("output", line)``."""

    def __init__(self, sink: Sink) -> None:
        self.sink, self.partial = sink, ""

    def write(self, text: str) -> None:
        *lines, self.partial = (self.partial + text).split("\n")
        self.partial = self.partial[-_MAX_LINE:]
        for line in lines:
            if line.strip():
                self.sink("output", line[:_MAX_LINE])

    def flush(self) -> None:
        if self.partial.strip():
            self.sink("output", self.partial)
        self.partial = ""


class ThreadRouter:
    """A text stream that sends each write to the sink of the writing thread, if it has one,
    else to ``stream`` (attributes other than ``write``/``flush`` are those of ``stream``).

    Args:
        stream: the stream wrapped (``sys.stdout`` or ``sys.stderr`` when installed).
    """

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        buf = _ROUTES.get(threading.current_thread()) if _ROUTES else None
        if buf is None:
            return self.stream.write(text)
        buf.write(str(text))
        return len(text)

    def flush(self) -> None:
        if threading.current_thread() not in _ROUTES:
            self.stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def _showwarning(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001 - warnings' signature
    buf = _ROUTES.get(threading.current_thread()) if _ROUTES else None
    if buf is None or file is not None:
        return _showwarning.original(message, category, filename, lineno, file, line)
    text = warnings.formatwarning(message, category, filename, lineno, line).strip()
    buf.sink("warning", text)


_showwarning.original = warnings.showwarning


def _install() -> None:
    """Wrap ``sys.stdout``, ``sys.stderr`` and ``warnings.showwarning`` (again if someone
    replaced them since); wrapping is idempotent."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, ThreadRouter):
            setattr(sys, name, ThreadRouter(stream))
    if warnings.showwarning is not _showwarning:
        _showwarning.original = warnings.showwarning
        warnings.showwarning = _showwarning


def route_current_thread(sink: Sink) -> None:
    """Send what the calling thread prints (``"output"``, line by line) and warns
    (``"warning"``, the formatted warning) to ``sink(kind, text)`` until
    :func:`unroute_current_thread`. Lines are cut to 2,000 characters; blank lines are dropped.

    Raises:
        RuntimeError: called on the main thread (its output belongs in its cell).
    """
    if threading.current_thread() is threading.main_thread():
        raise RuntimeError("the main thread's output belongs in its cell: route only worker threads")
    with _LOCK:
        _install()
        _ROUTES[threading.current_thread()] = _LineBuffer(sink)


def unroute_current_thread(thread: threading.Thread | None = None) -> None:
    """Stop routing ``thread`` (default: the calling thread); a last line without a newline is
    sent first. Nothing happens for a thread that is not routed."""
    with _LOCK:
        buf = _ROUTES.pop(thread or threading.current_thread(), None)
    if buf is not None:
        buf.flush()


def routed_threads() -> int:
    """Number of live threads routed now."""
    return sum(t.is_alive() for t in list(_ROUTES))
