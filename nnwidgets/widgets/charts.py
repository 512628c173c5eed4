"""Live training charts (bqplot): loss per step and metrics per epoch, with event markers.

Both charts put the step on x, where *step* counts optimizer updates: the training loss of
step ``k`` (computed on the weights after ``k`` updates) sits at ``x = k``, an epoch's
validation numbers at ``x = epoch_records[i]["step"]`` (the updates done when the epoch
ended), and an event at ``x = event["step"]`` (a setting change at ``x = 6`` acts from the
update of step 6 on; a non-finite loss at ``x = 2`` is the loss of step 2).

Cost per refresh is O(1) in the run length: each chart keeps a
:class:`~nnwidgets.widgets._cursor.Cursor`, so only the losses, epoch records and events added
since its last refresh are read (``History.loss_since``), the per-step series go through
:class:`~nnwidgets.widgets._decimate.MinMaxDecimator`, every line holds ≤ ``max_points``
float32 points, x and y of a mark are set together under ``hold_sync()``, and a mark whose
data did not change is not sent again. A refresh in which the cursor finds nothing new does
nothing; one after a rollback (rows removed) or with another History redraws from the start.
"""
from __future__ import annotations

import math
import threading
from typing import Any

import bqplot as bq
import ipywidgets as widgets
import numpy as np

from ..metrics import MetricInfo, metric_info
from ._cursor import Cursor, Mark
from ._decimate import MinMaxDecimator, ema, smoothing_alpha, stride_decimate
from .download import HistoryDownload
from ._marks import EventMarkers, chart_figure, hover_tooltip, legend_html, set_lines, set_step_ticks, set_xy

__all__ = ["LossChart", "MetricChart", "TrainingCharts"]

_BLUE, _ORANGE = "#1f77b4", "#ff7f0e"
_COLORS = ["#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2"]
_Y_LABEL_OFFSET = "50px"  # the y-axis title beyond tick labels such as "0.500" (bqplot's default overlapped them)
_NOT_METRICS = {"epoch", "step", "loss", "val_loss", "lr", "time_s"}
# the loss chart's smoothing picker: (label, EMA span in steps); 0 = auto (~2 % of the run), 1 = none
SMOOTHING_OPTIONS = [("auto (2 % of run)", 0), ("none", 1), ("5 steps", 5), ("20 steps", 20),
                     ("100 steps", 100), ("500 steps", 500)]
_ZOOM_PAD = 0.05  # the metric chart's "zoom to data": 5 % of the data range above and below


class LossChart:
    """Training loss per step (raw, faint, plus an EMA line), validation loss per epoch, event
    markers, and a log-scale toggle for the loss axis.

    Smoothed line: exponential moving average with ``alpha = 2 / (span + 1)``,
    ``span = max(5, n_steps / 50)`` steps (:func:`~nnwidgets.widgets._decimate.smoothing_alpha`),
    computed over the decimator's bucket means (a bucket of ``c`` steps counts as ``c`` steps)
    and thinned by stride to ≤ ``smooth_points`` points. Raw line: the newest ``tail`` losses
    as they are, older ones as per-bucket min and max, ≤ ``max_points`` points in all.
    Validation line: ≤ ``epoch_points`` points (stride, newest kept). With the defaults an
    update after new steps sends ≈ 8–9 KB, one that also adds an epoch and a marker ≤ 14 KB.
    Non-finite losses are never sent. On the log scale, values ≤ ``log_floor`` are sent as
    ``log_floor`` (zero or negative losses would break a log axis).

    Args:
        max_points: most points of the raw loss line (≤ 2,000; at 8 bytes per point the
            defaults keep one update of the chart under 16 KB).
        tail: newest steps shown undecimated.
        smooth_points: most points of the smoothed line.
        epoch_points: most points of the validation line.
        max_markers: most event markers shown (the newest).
        log_floor: smallest loss shown on the log scale.
        height: CSS height of the figure.

    Attributes:
        widget: ``VBox([HBox([log toggle, legend]), figure])``; legend: ``HTML`` drawn above the
            plot (bqplot's legend sat on the data).
        raw, smooth, val: the bqplot ``Lines`` marks; ``markers``: :class:`EventMarkers`.
        log_toggle: ``ToggleButton``; ``True`` puts the loss lines on a ``LogScale`` and shows
            the y axis drawn with it. y_scale, y_axis: the loss scale and y axis in use.

    Example:
        >>> chart = LossChart(); chart.refresh(trainer)   # doctest: +SKIP
        >>> display(chart.widget)                          # doctest: +SKIP
    """

    title = "Loss"

    def __init__(self, *, max_points: int = 800, tail: int = 300, smooth_points: int = 300,
                 epoch_points: int = 200, max_markers: int = 50, log_floor: float = 1e-8,
                 height: str = "320px") -> None:
        self.smooth_points, self.epoch_points = int(smooth_points), int(epoch_points)
        self.log_floor = float(log_floor)
        self._dec = MinMaxDecimator(max_points, tail)
        self.x_scale = bq.LinearScale()
        # both loss scales and both loss axes exist from the start; the toggle swaps them
        self._y_scales = {False: bq.LinearScale(), True: bq.LogScale()}
        # ".3~g": ticks 1.1, 0.9, 0.05 (".3g" printed "1.10" above "0.900")
        self._y_axes = {log: bq.Axis(scale=scale, side="left", label="loss", tick_format=".3~g",
                                  label_offset=_Y_LABEL_OFFSET)
                        for log, scale in self._y_scales.items()}
        self.y_scale: bq.Scale = self._y_scales[False]
        self.y_axis: bq.Axis = self._y_axes[False]
        sc = {"x": self.x_scale, "y": self.y_scale}
        self.raw = bq.Lines(scales=dict(sc), colors=[_BLUE], opacities=[0.3], stroke_width=1,
                            labels=["train loss (per step)"], display_legend=False)
        # hover values: bqplot's tooltip reads x/y from a marker, so the EMA line (≤ smooth_points
        # points) carries small markers, barely wider than the line
        self.smooth = bq.Lines(scales=dict(sc), colors=[_BLUE], stroke_width=2.5, marker="circle", marker_size=12,
                               labels=["train loss (EMA)"], display_legend=False,
                               tooltip=hover_tooltip("train loss (EMA)"))
        self.val = bq.Lines(scales=dict(sc), colors=[_ORANGE], stroke_width=2, marker="circle",
                            marker_size=24, labels=["validation loss"], display_legend=False,
                            tooltip=hover_tooltip("validation loss"))
        self.markers = EventMarkers(self.x_scale, max_markers=max_markers)
        self.x_axis = bq.Axis(scale=self.x_scale, label="step", tick_format="d")
        axes = [self.x_axis, self.y_axis]
        self.figure = chart_figure([self.raw, self.smooth, self.val, *self.markers.marks], axes, "Loss", height)
        self.legend = widgets.HTML(legend_html([("train loss (per step)", _BLUE, "faint"),
                                                ("train loss (EMA)", _BLUE, "solid"),
                                                ("validation loss", _ORANGE, "solid")]))
        self.log_toggle = widgets.ToggleButton(value=False, description="log scale", icon="line-chart",
                                               tooltip="Loss axis on a log scale")
        self.log_toggle.observe(self._on_log, "value")
        self.smoothing = widgets.Dropdown(options=SMOOTHING_OPTIONS, value=0, description="smoothing",
                                          layout=widgets.Layout(width="260px"),
                                          style={"description_width": "initial"})
        self.smoothing.observe(self._on_smoothing, "value")
        self.widget = widgets.VBox([widgets.HBox([self.log_toggle, self.smoothing, self.legend], layout=widgets.Layout(
            flex_flow="row wrap", align_items="center", grid_gap="4px 16px")), self.figure])
        self._lock = threading.RLock()  # refresh (updater thread) vs. toggle (kernel thread)
        self.reset()

    def reset(self) -> None:
        """Forget the run shown (the next refresh reads the history from the start)."""
        with self._lock:
            self.cursor = Cursor()
            self._dec.reset()
            self._val_x: list[float] = []
            self._val_y: list[float] = []
            self._sent: dict[str, tuple[np.ndarray, np.ndarray]] = {}
            self.markers.reset()
            for mark in (self.raw, self.smooth, self.val):
                set_xy(mark, np.zeros(0, np.float32), np.zeros(0, np.float32))

    def refresh(self, trainer: Any, mark: Mark | None = None) -> None:
        """Bring the chart up to date with ``trainer.history`` (any object with a ``history``).

        Reads only what was appended since the last call (``mark``: the panel's
        :class:`~nnwidgets.widgets._cursor.Mark` of this refresh; by hand, the history as it
        stands); a new History object or a rollback (rows removed) redraws from the start.
        """
        with self._lock:
            ch = self.cursor.advance(mark if mark is not None else trainer.history)
            if ch.reset:
                self.reset()
                self.cursor.seen = ch.now
            now = ch.now
            if ch.new_steps:
                start = ch.steps_from
                self._dec.extend(now.history.loss_since(start)[:now.n_steps - start])
                self._send_steps()
            new = ch.new_epochs
            if new:
                for r in new:
                    v = r.get("val_loss")
                    if v is not None and math.isfinite(v):
                        self._val_x.append(float(r["step"]))
                        self._val_y.append(float(v))
                x, y = stride_decimate(np.asarray(self._val_x, np.float32), np.asarray(self._val_y, np.float32),
                                       self.epoch_points)
                self._send("val", x, y)
            self.markers.update(now.events if ch.reset else ch.new_events)
            self.markers.set_range(now.n_steps)

    def _send_steps(self) -> None:
        self._send("raw", *self._dec.points())
        mx, mean, count = self._dec.means()
        sm = ema(mean, count, self.smoothing_alpha()).astype(np.float32)
        self._send("smooth", *stride_decimate(mx.astype(np.float32), sm, self.smooth_points))

    def smoothing_alpha(self) -> float:
        """EMA factor of the smoothed line: the ``smoothing`` picker's span ``s`` steps gives
        ``2 / (s + 1)``; ``0`` (auto) :func:`~nnwidgets.widgets._decimate.smoothing_alpha` of the
        run length; ``1`` (none) is 1.0 (the line follows the per-step losses)."""
        span = int(self.smoothing.value)
        return smoothing_alpha(self._dec.n) if span == 0 else 2.0 / (span + 1.0)

    def _on_smoothing(self, change: dict) -> None:
        with self._lock:
            if self._dec.n:
                self._send_steps()

    def _send(self, name: str, x: np.ndarray, y: np.ndarray) -> None:
        """Set ``x``/``y`` of mark ``name`` together, clipping y to ``log_floor`` on a log axis."""
        self._sent[name] = (x, y)
        if self.log_toggle.value:
            y = np.maximum(y, np.float32(self.log_floor))
        set_xy(getattr(self, name), x, y)

    def _on_log(self, change: dict) -> None:
        """Swap the loss scale of the three loss lines and the y axis shown.

        The axis is swapped in ``figure.axes`` rather than given a new ``scale``: bqplot's
        front end (0.13) keeps drawing an Axis with the scale it was created with (its
        ``change:scale`` handler rescales with the old scale view), so a LogScale set on the
        old axis left linear ticks next to a log-scaled curve. Both scales and both axes are
        made in ``__init__``: no widget model is created here.
        """
        log = bool(change["new"])
        with self._lock:
            self.y_scale, self.y_axis = self._y_scales[log], self._y_axes[log]
            with self.figure.hold_sync():
                for mark in (self.raw, self.smooth, self.val):
                    mark.scales = {"x": self.x_scale, "y": self.y_scale}
                self.figure.axes = [self.x_axis, self.y_axis]
                for name, (x, y) in list(self._sent.items()):
                    self._send(name, x, y)


def score_tick_format(span: float) -> str:
    """d3 format of the score axis for a window ``span`` tall: 2 decimals down to a 0.2 span,
    then one more per decade (a 0.95-1.0 window has ticks 0.005 apart: ``.3f``, never the
    "0.99 0.99 0.98" that ``.2f`` gave)."""
    if not span > 0 or span >= 0.2:
        return ".2f"
    return f".{min(6, 2 + math.ceil(math.log10(0.2 / span)))}f"


class MetricChart:
    """Per-epoch metrics, train (solid) and validation (dashed), on x = step, with markers.

    The metrics are the keys of ``history.epoch_records`` other than epoch/step/loss/lr/time_s:
    ``accuracy`` (and ``accuracy_macro``) for classification, ``r2`` and ``mae`` for regression,
    each with its ``val_`` twin when validation data is given. Where a metric is drawn comes from
    its :class:`~nnwidgets.metrics.MetricInfo` (``trainer.metric_info``): bounded metrics use the
    left axis (accuracy, F1 on [0, 1]; R² on [-1, 1], values below -1 drawn at -1), all others
    (MAE, ...) the right axis.

    Every widget model exists from construction: four multi-line ``Lines`` marks (left/right
    axis × train/validation, one line per metric), both y axes (hidden until used) and the
    markers. Metric names are known only at the first epoch record; marks made then by the
    panel's thread and added to a figure on the page left it empty in the browser (``widget
    model not found``), so a refresh only writes data, labels, colours and visibility. All
    lines share the x of the epoch records (``NaN``, a gap, where a value is not finite).

    Args:
        max_points: most points per line (stride decimation, newest kept).
        max_markers: most event markers shown (the newest).
        height: CSS height of the figure.

    Attributes:
        widget: ``VBox([legend, figure])``; figure: the bqplot ``Figure``; legend: ``HTML``, one entry
            per metric line (set at the first epoch record). keys: metric keys shown, in record order.
        marks: ``{(axis, val): Lines}``, axis ``"score"`` (left) or ``"value"`` (right), ``val``
            True for the dashed validation mark. score_axis, value_axis: the y axes.

    Example:
        >>> chart = MetricChart(); chart.refresh(trainer)   # doctest: +SKIP
        >>> chart.series("val_accuracy")                     # (x, y) float32 as sent  # doctest: +SKIP
    """

    title = "Metrics"

    def __init__(self, *, max_points: int = 200, max_markers: int = 50, height: str = "280px") -> None:
        self.max_points = int(max_points)
        self.x_scale = bq.LinearScale()
        self.score_scale = bq.LinearScale(min=0.0, max=1.0)
        self.value_scale = bq.LinearScale()
        self.marks: dict[tuple[str, bool], bq.Lines] = {}
        for axis, scale in (("score", self.score_scale), ("value", self.value_scale)):
            for val in (False, True):
                self.marks[axis, val] = bq.Lines(
                    x=np.zeros(0, np.float32), y=np.zeros(0, np.float32), scales={"x": self.x_scale, "y": scale},
                    marker="circle", marker_size=20, line_style="dashed" if val else "solid", stroke_width=2,
                    labels=[], display_legend=False, tooltip=hover_tooltip("value"))
        self.markers = EventMarkers(self.x_scale, max_markers=max_markers)
        self.x_axis = bq.Axis(scale=self.x_scale, label="step", tick_format="d")
        self.score_axis = bq.Axis(scale=self.score_scale, side="left", label="", tick_format=".2f", visible=False,
                                  label_offset=_Y_LABEL_OFFSET)
        self.value_axis = bq.Axis(scale=self.value_scale, side="right", label="", tick_format=".3g", visible=False,
                                  label_offset=_Y_LABEL_OFFSET)
        self.figure = chart_figure([*self.marks.values(), *self.markers.marks],
                                   [self.x_axis, self.score_axis, self.value_axis], "Metrics", height)
        self.legend = widgets.HTML()
        self.zoom_toggle = widgets.ToggleButton(value=False, description="zoom to data", icon="search-plus",
                                                tooltip="Left axis from the lowest to the highest value shown "
                                                        "instead of the metric's whole range (e.g. 0-1)")
        self.zoom_toggle.observe(lambda change: self._fit_score_axis(), "value")
        self.widget = widgets.VBox([widgets.HBox([self.zoom_toggle, self.legend], layout=widgets.Layout(
            flex_flow="row wrap", align_items="center", grid_gap="4px 16px")), self.figure])
        self.reset()

    def reset(self) -> None:
        """Forget the run shown: empty lines, hidden y axes, no markers."""
        self.cursor = Cursor()
        self._infos: dict[str, MetricInfo] = {}
        self.keys: list[str] = []
        self._rows: dict[tuple[str, bool], list[str]] = {k: [] for k in self.marks}
        self._x: list[float] = []
        self._y: dict[str, list[float]] = {}
        self._sent: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.markers.reset()
        self._score_range = (0.0, 1.0)
        self._fit_score_axis()
        for mark in self.marks.values():
            set_xy(mark, np.zeros(0, np.float32), np.zeros(0, np.float32))
            mark.labels = []
            mark.tooltip.labels = ["step", "value"]
        for axis in (self.score_axis, self.value_axis):
            axis.visible, axis.label = False, ""
        if self.legend.value:
            self.legend.value = ""

    def _info(self, key: str) -> MetricInfo:
        return self._infos.get(key.removeprefix("val_")) or metric_info(key)

    def _bounded(self, base: str) -> bool:
        return self._info(base).bounded

    def series(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)`` float32 of metric ``key`` as last sent (``KeyError`` if not shown)."""
        return self._sent[key]

    def mark_of(self, key: str) -> bq.Lines:
        """The ``Lines`` mark that draws metric ``key``."""
        return next(self.marks[slot] for slot, keys in self._rows.items() if key in keys)

    def _assign(self, keys: list[str], infos: dict[str, MetricInfo]) -> None:
        """Give each metric key a line in one of the four marks (its :class:`MetricInfo` says
        which axis); label the axes."""
        self.keys = list(keys)
        bases = list(dict.fromkeys(k.removeprefix("val_") for k in keys))
        self._infos = {b: infos.get(b) or metric_info(b) for b in bases}
        lows = [self._info(b).low for b in bases if self._bounded(b)]
        if lows:
            self._score_range = (min(0.0, *lows), self._score_range[1])
            self._fit_score_axis()
        for key in keys:
            axis = "score" if self._bounded(key.removeprefix("val_")) else "value"
            self._rows[axis, key.startswith("val_")].append(key)
            self._y[key] = []
        for slot, rows in self._rows.items():
            with self.marks[slot].hold_sync():
                self.marks[slot].labels = [k.replace("_", " ") for k in rows]
                if len(rows) == 1:  # the hover value names its metric ("val accuracy 0.9531")
                    self.marks[slot].tooltip.labels = ["step", rows[0].replace("_", " ")]
                self.marks[slot].colors = [self.color(k) for k in rows] or [_COLORS[0]]
        self.legend.value = legend_html([(k.replace("_", " "), self.color(k),
                                          "dashed" if k.startswith("val_") else "solid") for k in keys])
        left = [b for b in bases if self._bounded(b)]
        right = [b for b in bases if not self._bounded(b)]
        with self.score_axis.hold_sync():
            self.score_axis.label = ", ".join(self._info(b).label for b in left)
            self.score_axis.visible = bool(left)
        with self.value_axis.hold_sync():
            self.value_axis.label = ", ".join(self._info(b).label for b in right)
            self.value_axis.visible = bool(right)

    def color(self, key: str) -> str:
        """CSS colour of metric ``key``'s line: with one metric, train blue and validation orange
        (as on the loss chart, and as in TensorBoard's and livelossplot's two-run plots); with
        several, one colour per metric, its validation twin dashed in the same colour."""
        bases = list(self._infos)
        base = key.removeprefix("val_")
        if len(bases) == 1:
            return _ORANGE if key.startswith("val_") else _BLUE
        return _COLORS[bases.index(base) % len(_COLORS)]

    def _fit_score_axis(self) -> None:
        """Set the left (score) axis: the metric's whole range (``[low, high]``, e.g. 0-1), or with
        ``zoom_toggle`` on, the finite values sent padded by 5 % of their spread (at least 0.01
        in all), shifted back inside the whole range where the padding crosses one of its ends
        (accuracies at 1.0: the window ends at 1.0 and keeps its height)."""
        lo, hi = self._score_range
        if self.zoom_toggle.value:
            ys = [y for slot in (("score", False), ("score", True)) for k in self._rows.get(slot, ())
                  if k in self._sent for y in self._sent[k][1]]
            ys = np.asarray(ys, np.float64)
            ys = ys[np.isfinite(ys)]
            if ys.size:
                a, b = float(ys.min()), float(ys.max())
                pad = max((b - a) * _ZOOM_PAD, (0.01 - (b - a)) / 2, 0.0)
                a, b = a - pad, b + pad
                if b > hi:          # past an end of the range: shift the window back inside
                    a, b = a - (b - hi), hi
                if a < lo:
                    a, b = lo, min(hi, b + (lo - a))
                lo, hi = a, b
        # the format first: bqplot's front end (0.13) redraws the ticks on a domain change, not on
        # a tick_format change, so a format sent after the domain showed only one change later
        fmt = score_tick_format(hi - lo)
        if self.score_axis.tick_format != fmt:
            self.score_axis.tick_format = fmt
        if self.score_scale.min != lo or self.score_scale.max != hi:
            with self.score_scale.hold_sync():
                self.score_scale.min, self.score_scale.max = lo, hi

    def refresh(self, trainer: Any, mark: Mark | None = None) -> None:
        """Add the epoch records and events that appeared since the last call (``mark``: as for
        :meth:`LossChart.refresh`); a new History or a rollback redraws from the start."""
        ch = self.cursor.advance(mark if mark is not None else trainer.history)
        if ch.reset:
            self.reset()
            self.cursor.seen = ch.now
        new = ch.new_epochs
        if new:
            if not self.keys:
                self._assign([k for k, v in new[0].items() if k not in _NOT_METRICS and isinstance(v, (int, float))],
                             getattr(trainer, "metric_info", {}))
            for r in new:
                self._x.append(float(r["step"]))
                for key, ys in self._y.items():
                    v = r.get(key)
                    ok = isinstance(v, (int, float)) and math.isfinite(v)
                    ys.append(self._info(key).clip(float(v)) if ok else math.nan)
            self._send()
        self.markers.update(ch.now.events if ch.reset else ch.new_events)
        self.markers.set_range(ch.now.n_steps)

    def _send(self) -> None:
        n = len(self._x)
        idx, _ = stride_decimate(np.arange(n), np.arange(n), self.max_points)
        x = np.asarray(self._x, np.float32)[idx]
        for slot, rows in self._rows.items():
            if not rows:
                continue
            y = np.asarray([self._y[k] for k in rows], np.float32)[:, idx]  # (lines, points)
            for key, row in zip(rows, y):
                self._sent[key] = (x, row)
            set_lines(self.marks[slot], x, y)
        if self.zoom_toggle.value:
            self._fit_score_axis()


class TrainingCharts:
    """:class:`LossChart` above :class:`MetricChart`, refreshed together.

    Args:
        loss_kwargs, metric_kwargs: keyword arguments of the two charts.

    Attributes:
        loss, metrics: the two charts; download: :class:`~nnwidgets.widgets.download.HistoryDownload`
            (CSV links of the history shown); widget: ``VBox`` of the three.
    """

    title = "Training charts"

    def __init__(self, *, loss_kwargs: dict | None = None, metric_kwargs: dict | None = None) -> None:
        self.loss = LossChart(**(loss_kwargs or {}))
        self.metrics = MetricChart(**(metric_kwargs or {}))
        self.download = HistoryDownload(lambda: self.loss.cursor.seen.history if self.loss.cursor.seen else None)
        self.widget = widgets.VBox([self.loss.widget, self.metrics.widget, self.download.widget])

    def refresh(self, trainer: Any, mark: Mark | None = None) -> None:
        """Refresh both charts with one :class:`~nnwidgets.widgets._cursor.Mark` (``mark``, or the
        history's now; see :meth:`LossChart.refresh`). Both step axes span ``[0, n_steps]``
        (the newest epoch record sits at ``x = n_steps``), so markers line up in the two charts."""
        mark = mark if mark is not None else Mark.of(trainer.history)
        self.loss.refresh(trainer, mark)
        self.metrics.refresh(trainer, mark)
        last = float(max(mark.n_steps, 1))
        for scale in (self.loss.x_scale, self.metrics.x_scale):
            if scale.min != 0.0 or scale.max != last:
                with scale.hold_sync():
                    scale.min, scale.max = 0.0, last
        for axis in (self.loss.x_axis, self.metrics.x_axis):
            set_step_ticks(axis, int(last))

    def reset(self) -> None:
        """Reset both charts."""
        self.loss.reset()
        self.metrics.reset()
