"""Presence: does any page still show this panel? A tiny anywidget view answers by pinging.

Why: a Voilà page that is closed or reloaded leaves its kernel behind when Voilà's shutdown
request does not arrive (a browser crash, a lost network, a mobile browser killing the tab, or
Voilà's own ``403 '_xsrf' argument missing``), and a kernel whose training thread keeps the
panel updating is never *idle* to the server: every widget message on IOPub counts as kernel
activity (``jupyter_server``'s ``MappingKernelManager.start_watching_activity``), so kernel
culling never removes it. Such a kernel trains on for nobody.

The kernel cannot see the page's websocket, and the kernel's last activity is our own
messages, so neither tells whether anybody watches. The browser can: ``js/presence.js`` sends
one custom message (``{"type": "ping"}``, a few bytes) every ``interval_ms`` while a view of it
is rendered, and nothing is sent from the kernel. :class:`Presence` keeps the time of the last
ping; :meth:`Presence.unseen_for` says how long no page has pinged. The panel pauses its run
when that exceeds its ``pause_unseen_s`` (see :class:`~nnwidgets.widgets.panel.TrainingPanel`);
a paused panel sends nothing, so the server's idle culling can then shut the kernel down.

Background tabs: Chromium throttles timers of a hidden page to one run per minute after five
minutes hidden, so a timeout must stay well above 60 s for a page left in a background tab.
"""
from __future__ import annotations

import threading
import time
from typing import Any

import anywidget
import traitlets

from .network import esm_path

__all__ = ["Presence", "PresenceWidget"]


class PresenceWidget(anywidget.AnyWidget):
    """The anywidget model: ``interval_ms`` between two pings of each rendered view."""

    _esm = esm_path("presence.js")
    interval_ms = traitlets.Int(5000).tag(sync=True)


class Presence:
    """Time since a page last showed the panel.

    Args:
        interval_s: seconds between two pings of a rendered view (≥ 0.25).

    Attributes:
        widget: the :class:`PresenceWidget` (hidden; put it in the panel's children).
        pings: number of pings received. last_ping: ``time.monotonic()`` of the newest, or
            ``None`` before the first.

    Example:
        >>> p = Presence(interval_s=5.0)            # doctest: +SKIP
        >>> p.unseen_for()                          # None until a page has shown it  # doctest: +SKIP
    """

    def __init__(self, interval_s: float = 5.0) -> None:
        self.widget = PresenceWidget(interval_ms=int(max(0.25, float(interval_s)) * 1000))
        self.pings = 0
        self.last_ping: float | None = None
        self._lock = threading.Lock()
        self.widget.on_msg(self._on_msg)

    def _on_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "ping":
            self.seen()

    def seen(self, now: float | None = None) -> None:
        """Record a ping (called for every message of a view; tests call it directly)."""
        with self._lock:
            self.pings += 1
            self.last_ping = time.monotonic() if now is None else now

    def unseen_for(self, now: float | None = None) -> float | None:
        """Seconds since the last ping, or ``None`` if no page has ever shown the panel (a
        panel built in a script, or by nbclient, is never paused for want of a page)."""
        with self._lock:
            last = self.last_ping
        return None if last is None else (time.monotonic() if now is None else now) - last

    def close(self) -> None:
        self.widget.close()
