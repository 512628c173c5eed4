"""Shared bqplot pieces of the charts: event markers and setting x/y together."""
from __future__ import annotations

from typing import Any

import bqplot as bq
import numpy as np

__all__ = ["EventMarkers", "set_xy", "set_lines", "event_label"]

_STATES = {"paused", "stopped", "failed"}
_KIND_COLOR = {"setting": "#7f7f7f", "nonfinite": "#d62728", "error": "#d62728",
               "paused": "#ff7f0e", "stopped": "#ff7f0e", "failed": "#d62728"}
_LABEL_CHARS = 28


def set_xy(mark: bq.Mark, x: np.ndarray, y: np.ndarray) -> None:
    """Set ``mark.x`` and ``mark.y`` in one comm message (float32 binary buffers)."""
    with mark.hold_sync():
        mark.x = np.ascontiguousarray(x, dtype=np.float32)
        mark.y = np.ascontiguousarray(y, dtype=np.float32)


def set_lines(mark: bq.Lines, x: np.ndarray, y: np.ndarray) -> None:
    """Set ``k`` lines over a shared x on one ``Lines`` mark, in one comm message.

    bqplot squeezes every length-1 dimension of ``y``: a ``(k, 1)`` array (k lines, one point
    each) would arrive as ``(k,)``, i.e. one line of ``k`` points. A single point is therefore
    sent twice (a zero-length segment, drawn as the point); a single line goes as ``(n,)``.

    Args:
        mark: the ``Lines`` mark.
        x: ``(n,)`` x values shared by all lines.
        y: ``(k, n)`` one row per line (``NaN``: a gap).
    """
    x, y = np.asarray(x, np.float32), np.asarray(y, np.float32).reshape(-1, len(x))
    if len(x) == 1 and len(y) > 1:
        x, y = np.repeat(x, 2), np.repeat(y, 2, axis=1)
    set_xy(mark, x, y[0] if len(y) == 1 else y)


def _num(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


def event_label(ev: dict) -> str | None:
    """Short marker text for an event record, or ``None`` if the event gets no marker.

    Markers: every ``"setting"`` (``"lr 0.01→0.1"``, ``"freeze 0"``), ``"nonfinite"``
    (``"loss inf"``), ``"error"`` and the states paused/stopped/failed. Text is cut to
    28 characters; bqplot draws it as SVG text (never parsed as HTML).
    """
    kind, name = ev.get("kind"), str(ev.get("name", ""))
    if kind == "setting":
        if name.startswith("frozen:"):
            text = f"{'freeze' if ev.get('new') else 'unfreeze'} {name[7:]}"
        elif ev.get("old") is None:
            text = f"{name} {_num(ev.get('new'))}"
        else:
            text = f"{name} {_num(ev.get('old'))}\u2192{_num(ev.get('new'))}"
    elif kind == "nonfinite":
        text = f"{name or 'loss'} {ev.get('new') or 'non-finite'}"
    elif kind == "error":
        text = "error"
    elif kind == "state" and name in _STATES:
        text = name
    else:
        return None
    return text if len(text) <= _LABEL_CHARS else text[:_LABEL_CHARS - 1] + "\u2026"


class EventMarkers:
    """Vertical dashed lines with a short label at the step of each notable event.

    The lines span the plot height through their own fixed ``[0, 1]`` y scale, so they do not
    disturb the data axis (linear or log). Only the newest ``max_markers`` are shown.

    Args:
        x_scale: the chart's step scale.
        max_markers: most markers shown.

    Attributes:
        lines (bq.Lines), labels (bq.Label): the marks; ``marks`` is both, for a Figure.
        steps (list[int]), texts (list[str]), kinds (list[str]): every marker so far.
        n_events: number of event records read.
    """

    def __init__(self, x_scale: bq.Scale, max_markers: int = 100) -> None:
        self.max_markers = int(max_markers)
        self.y_scale = bq.LinearScale(min=0.0, max=1.0)
        sc = {"x": x_scale, "y": self.y_scale}
        self.lines = bq.Lines(scales=sc, colors=["#7f7f7f"], line_style="dashed", stroke_width=1,
                              preserve_domain={"y": True})
        self.labels = bq.Label(scales=sc, default_size=11, font_unit="px", x_offset=3, align="start",
                               preserve_domain={"y": True})
        self.marks = (self.lines, self.labels)
        self.reset()

    def reset(self) -> None:
        """Remove all markers."""
        self.n_events = 0
        self.steps: list[int] = []
        self.texts: list[str] = []
        self.kinds: list[str] = []
        self._send()

    def update(self, events: list[dict]) -> None:
        """Read the event records from index ``n_events`` on and redraw if any is marked."""
        new = events[self.n_events:]
        self.n_events = len(events)
        added = False
        for ev in new:
            text = event_label(ev)
            if text is not None:
                self.steps.append(int(ev["step"]))
                self.texts.append(text)
                self.kinds.append(ev["name"] if ev["kind"] == "state" else ev["kind"])
                added = True
        if added:
            self._send()

    def _send(self) -> None:
        steps = np.asarray(self.steps[-self.max_markers:], dtype=np.float32)
        texts = self.texts[-self.max_markers:]
        colors = [_KIND_COLOR.get(k, "#7f7f7f") for k in self.kinds[-self.max_markers:]]
        k = len(steps)
        label_y = (0.97 - 0.08 * (np.arange(k) % 4)).astype(np.float32)  # stagger close labels
        with self.lines.hold_sync():
            if k:
                self.lines.x = np.repeat(steps[:, None], 2, axis=1)
                self.lines.y = np.tile(np.array([0.0, 1.0], np.float32), (k, 1))
                self.lines.colors = colors
            else:
                self.lines.x = self.lines.y = np.zeros(0, np.float32)
        with self.labels.hold_sync():
            self.labels.x, self.labels.y = steps, label_y
            self.labels.text = np.asarray(texts, dtype=str)
            self.labels.colors = colors or ["#7f7f7f"]
