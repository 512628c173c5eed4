"""Shared bqplot pieces of the charts: the figure, event markers, setting x/y together."""
from __future__ import annotations

from typing import Any

import html

import bqplot as bq
import ipywidgets as widgets
import numpy as np

__all__ = ["EventMarkers", "chart_figure", "hover_tooltip", "event_label", "legend_html", "set_lines", "set_step_ticks", "set_xy",
           "step_ticks"]

_STATES = {"paused", "stopped", "failed"}
_KIND_COLOR = {"setting": "#7f7f7f", "nonfinite": "#d62728", "error": "#d62728",
               "paused": "#ff7f0e", "stopped": "#ff7f0e", "failed": "#d62728"}
_LABEL_CHARS = 24
LABEL_ROWS = (0.62, 0.08)  # first label row, row spacing (fractions of the plot height)


def chart_figure(marks: list, axes: list, title: str, height: str) -> bq.Figure:
    """A chart ``Figure`` of CSS ``height``, as wide as its container: ``width="auto"``, since
    ``100%`` plus the widget's 2 px margins overflowed the chart's box by 4 px and put a
    horizontal scrollbar under every chart; ``min_width=0`` lets it shrink. The legend is :func:`legend_html`
    above the figure, not bqplot's (drawn inside the plot, over the data). The left and right
    margins leave room for the axis titles beside tick labels such as ``0.500``."""
    return bq.Figure(marks=marks, axes=axes, title=title,
                     fig_margin={"top": 36, "bottom": 44, "left": 72, "right": 64},
                     layout=widgets.Layout(width="auto", min_width="0", height=height))


def hover_tooltip(series: str, x_label: str = "step") -> bq.Tooltip:
    """The tooltip of a point of a line: ``step 256`` / ``<series> 0.2314`` (x as a whole number,
    y to 4 significant digits). bqplot shows it when the mouse is over one of the line's markers
    (``marker=...``): a marker's datum holds ``x`` and ``y``; a bare line's path holds neither.

    Args:
        series: the y label (``"validation loss"``; change ``tooltip.labels`` to rename it).
        x_label: the x label (``"step"``).
    """
    return bq.Tooltip(fields=["x", "y"], labels=[x_label, series], formats=["d", ".4g"])


def legend_html(entries: list[tuple[str, str, str]]) -> str:
    """A one-line legend drawn above a chart (outside the plot, so it never hides data):
    ``entries`` are ``(label, CSS colour, "solid" | "dashed" | "faint")``; labels are escaped.
    Built when the series are known (construction, the first epoch), never per refresh."""
    def item(label: str, color: str, style: str) -> str:
        line = (f'<span style="display:inline-block;width:22px;margin-right:5px;vertical-align:middle;'
                f'border-top:{"1px" if style == "faint" else "2.5px"} {"dashed" if style == "dashed" else "solid"} '
                f'{color};opacity:{0.45 if style == "faint" else 1}"></span>')
        return f'<span class="nnw-legend-item" style="margin-right:18px;white-space:nowrap">{line}{html.escape(label)}</span>'
    return f'<div class="nnw-legend" style="font-size:12px;line-height:20px">{"".join(item(*e) for e in entries)}</div>'


def step_ticks(last: int, max_ticks: int = 8) -> np.ndarray:
    """Whole-step tick values for a step axis ``[0, last]``: multiples of the smallest of
    1, 2, 5, 10, 20, 50, ... that gives at most ``max_ticks`` ticks. (d3's own ticks at
    ``tick_format="d"`` read "0 1 1 2 3 3" on a 3-step run: ticks at 0.5 steps, rounded.)

    Example:
        >>> step_ticks(3).tolist(), step_ticks(1000).tolist()[:3]
        ([0.0, 1.0, 2.0, 3.0], [0.0, 200.0, 400.0])
    """
    last, power = max(int(last), 1), 1
    while True:
        for step in (power, 2 * power, 5 * power):
            if last // step + 1 <= max_ticks:
                return np.arange(0, last + 1, step, dtype=np.float32)
        power *= 10


def set_step_ticks(axis: bq.Axis, last: int) -> None:
    """Give ``axis`` the :func:`step_ticks` of ``[0, last]``; a message only when they change
    (a new tick fits, or the spacing grows: a few times per doubling of the run). bqplot has no
    way back to its own ticks once ``tick_values`` was set, so the ticks are always ours."""
    values = step_ticks(last)
    current = axis.tick_values
    if current is None or not np.array_equal(np.asarray(current, np.float32), values):
        axis.tick_values = values


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
    24 characters; bqplot draws it as SVG text (never parsed as HTML).
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
    """Vertical dashed lines at the step of each notable event, the newest few labelled.

    The lines span the plot height through their own fixed ``[0, 1]`` y scale, so they do not
    disturb the data axis (linear or log). Only the newest ``max_markers`` lines are drawn and
    only the newest ``max_labels`` get their text, each on its own row in the middle band of the
    plot (``LABEL_ROWS``; the legend sits in a corner above or below it; row = marker number mod
    ``max_labels``: labels never overlap each other and keep their row while newer ones arrive). A label in the right half of the step axis ends at its line, one in
    the left half starts there, so none runs past the plot's edge. Older markers keep their
    line; every event is also in the notices box and ``history.events``. A state marker that
    repeats the one before it (Step pressed five times: five "paused") is one marker at the
    newest step, ``"paused ×5"``.

    Args:
        x_scale: the chart's step scale.
        max_markers: most marker lines shown.
        max_labels: most labels shown (the newest).

    Attributes:
        lines (bq.Lines); labels, labels_end (bq.Label, text right / left of its line): the
            marks; ``marks`` is all three, for a Figure.
        steps (list[int]), texts (list[str]), kinds (list[str]): every marker so far.

    Which events are new is the chart's :class:`~nnwidgets.widgets._cursor.Cursor`'s business:
    :meth:`update` gets only those (all of them after :meth:`reset`).
    """

    def __init__(self, x_scale: bq.Scale, max_markers: int = 100, max_labels: int = 3) -> None:
        self.max_markers, self.max_labels = int(max_markers), max(1, int(max_labels))
        self.y_scale = bq.LinearScale(min=0.0, max=1.0)
        sc = {"x": x_scale, "y": self.y_scale}
        self.lines = bq.Lines(scales=sc, colors=["#7f7f7f"], line_style="dashed", stroke_width=1,
                              preserve_domain={"y": True})
        self.labels, self.labels_end = (
            bq.Label(scales=sc, default_size=11, font_unit="px", x_offset=offset, align=align,
                     apply_clip=False, preserve_domain={"y": True})
            for align, offset in (("start", 4), ("end", -4)))
        self.marks = (self.lines, self.labels, self.labels_end)
        self._x_max = 0.0
        self.reset()

    def reset(self) -> None:
        """Remove all markers."""
        self._repeats = 1
        self.steps: list[int] = []
        self.texts: list[str] = []
        self.kinds: list[str] = []
        self._sides: list[str] | None = None
        self._send()

    def update(self, new: list[dict]) -> None:
        """Add the markers of the event records ``new`` (those not given before) and redraw if
        any is marked."""
        added = False
        for ev in new:
            text = event_label(ev)
            if text is not None:
                kind = ev["name"] if ev["kind"] == "state" else ev["kind"]
                if ev["kind"] == "state" and self.kinds and self.kinds[-1] == kind:
                    # Step pressed again and again: one "paused ×n" marker at the newest step
                    self._repeats += 1
                    self.steps[-1], self.texts[-1] = int(ev["step"]), f"{text} \u00d7{self._repeats}"
                else:
                    self._repeats = 1
                    self.steps.append(int(ev["step"]))
                    self.texts.append(text)
                    self.kinds.append(kind)
                added = True
        if added:
            self._send()

    def set_range(self, x_max: float) -> None:
        """The step axis now ends at ``x_max``: move labels that crossed its middle (O(max_labels))."""
        self._x_max = float(x_max)
        if self._label_sides() != self._sides:
            self._send_labels()

    def shown(self) -> list[tuple[int, str, str]]:
        """``(step, text, "start" | "end")`` of every labelled marker, oldest first."""
        first = max(0, len(self.steps) - self.max_labels)
        return list(zip(self.steps[first:], self.texts[first:], self._label_sides()))

    def _label_sides(self) -> list[str]:
        first = max(0, len(self.steps) - self.max_labels)
        return ["end" if s > 0.5 * self._x_max else "start" for s in self.steps[first:]]

    def _send(self) -> None:
        steps = np.asarray(self.steps[-self.max_markers:], dtype=np.float32)
        colors = [_KIND_COLOR.get(k, "#7f7f7f") for k in self.kinds[-self.max_markers:]]
        k = len(steps)
        with self.lines.hold_sync():
            if k:
                self.lines.x = np.repeat(steps[:, None], 2, axis=1)
                self.lines.y = np.tile(np.array([0.0, 1.0], np.float32), (k, 1))
                self.lines.colors = colors
            else:
                self.lines.x = self.lines.y = np.zeros(0, np.float32)
        self._send_labels()

    def _send_labels(self) -> None:
        self._sides = self._label_sides()
        first = len(self.steps) - len(self._sides)
        for mark, side in ((self.labels, "start"), (self.labels_end, "end")):
            idx = [first + i for i, s in enumerate(self._sides) if s == side]
            with mark.hold_sync():
                mark.x = np.asarray([self.steps[i] for i in idx], np.float32)
                mark.y = np.asarray([LABEL_ROWS[0] - LABEL_ROWS[1] * (i % self.max_labels) for i in idx],
                                    np.float32)
                mark.text = np.asarray([self.texts[i] for i in idx], dtype=str)
                mark.colors = [_KIND_COLOR.get(self.kinds[i], "#7f7f7f") for i in idx] or ["#7f7f7f"]
