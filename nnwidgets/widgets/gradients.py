"""Gradient view (bqplot): per-layer gradient norms over steps, a log10|g| heat map, and a
line naming the layers whose gradients vanish.

Reads ``history.gradient_norms()``, ``history.last_histogram()`` and the model's modules
(for layer types, frozen flags and activations); never touches the training loop.
"""
from __future__ import annotations

import html
import json
from typing import Any

import bqplot as bq
import ipywidgets as widgets
import numpy as np
from torch import nn

from ..checks.vanishing import layer_messages
from ..stats import activation_after
from ._cursor import Cursor, Mark
from ._decimate import stride_decimate
from ._marks import set_lines

__all__ = ["GradientView", "color_key_html"]

_MAX_FLAGS = 8  # vanishing layers listed by name in the flags line; the rest are counted
_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
            "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94"]

_HEAT_COLORS = ("#f7fbff", "#6baed6", "#08306b")  # share 0 → 0.5 → 1


def color_key_html(label: str = "share of the layer's gradient elements") -> str:
    """The heat map's colour key: a gradient strip from 0 % to 100 % (``_HEAT_COLORS``), drawn
    as HTML above the plot."""
    strip = ("display:inline-block;width:160px;height:10px;vertical-align:middle;margin:0 6px;"
             f"border:1px solid #ccc;background:linear-gradient(to right,{','.join(_HEAT_COLORS)})")
    return (f'<div class="nnw-color-key" style="font-size:12px;line-height:20px">{html.escape(label)}: '
            f'0 %<span style="{strip}"></span>100 %</div>')


def _is_frozen(module: nn.Module | None) -> bool:
    params = list(module.parameters(recurse=False)) if module is not None else []
    return bool(params) and not any(p.requires_grad for p in params)


class GradientView:
    """Per-layer gradient norms (log y axis), a log10|g| histogram heat map, and flags.

    * Norm chart: one line per layer, labelled ``"<layer> (<type>)"`` (``"... frozen"`` when
      all its parameters have ``requires_grad=False``), x = step of the gradient sample (the
      axis spans ``[0, newest sample]``, the title names that step), y = L2 norm of the
      layer's gradient on a ``LogScale``. "No gradient" (NaN) and zero norms
      are sent as NaN, which bqplot draws as a gap. Samples are thinned by stride so that
      ``layers × points ≤ max_values`` (and ≤ ``max_points`` per line).
    * Heat map (``GridHeatMap``): layers on y (first layer on top), log10|g| bins on x, colour =
      share of the layer's gradient elements in the bin, from the newest histogram. A vanishing
      layer's mass sits far to the left of the others.
    * Flags (``HTML``, every user string escaped): :func:`nnwidgets.stats.flag_vanishing` on
      the newest sample's norms with :func:`nnwidgets.stats.activation_after` of the model
      (a layer below ``ratio`` × the last layer's norm), plus the list of frozen layers.

    Bytes per update: one refresh sends the new norm lines (x and y), the heat map's colours
    and, when the layer set or the frozen layers changed, the labels. All of it is kept under
    ``max_bytes`` (default 12,000 B, leaving ~4 KB of the 16 KB budget of DESIGN.md for titles,
    the flags line and JSON framing): the label text (sent twice: legend and heat-map rows) is
    counted first, the heat map gets at most a third of what is left (its log10|g| bins are
    merged in groups, ``>= 2`` bins kept, when ``layers × bins`` does not fit) and the norm
    lines the rest (``(layers + 1) × points`` float32 values). The flags list at most
    ``_MAX_FLAGS`` layers. Measured (``tests/widgets/test_update_bytes.py``): ≤ 16 KB for up to 100
    layers with ~25-character names, first update included; far longer or many more layer names
    than that can exceed it on the update that sends the labels.

    Args:
        ratio: threshold passed to ``flag_vanishing``.
        max_points: most points per line.
        max_values: most float32 values the norm chart's y sends in one update (all lines);
            ``max_bytes`` may allow fewer.
        max_bytes: budget of one update's arrays and labels, bytes (see above).
        height, hist_height: CSS heights of the norm chart and of the heat map.

    Attributes:
        widget: ``VBox([flags, norm figure, colour key, heat map figure])``.
        color_key (widgets.HTML): the heat map's colour key (:func:`color_key_html`).
        lines (bq.Lines), heatmap (bq.GridHeatMap), flags (widgets.HTML).
        flagged (list[str]): the current ``flag_vanishing`` messages.
        cursor: the view's :class:`~nnwidgets.widgets._cursor.Cursor` (new gradient samples).
    """

    title = "Gradients"

    def __init__(self, *, ratio: float = 1e-4, max_points: int = 2000, max_values: int = 3000,
                 max_bytes: int = 12_000, height: str = "300px", hist_height: str = "300px") -> None:
        self.ratio, self.max_points, self.max_values = float(ratio), int(max_points), int(max_values)
        self.max_bytes = int(max_bytes)
        self.x_scale = xs = bq.LinearScale(min=0.0)
        ys = bq.LogScale()
        self.lines = bq.Lines(scales={"x": xs, "y": ys}, stroke_width=1.5, display_legend=True,
                              tooltip=bq.Tooltip(fields=["name"], labels=["layer"]))  # hover a line: its layer
        layout = widgets.Layout(width="100%", height=height)
        margin = {"top": 40, "bottom": 40, "left": 110, "right": 140}  # left: room for layer names
        self.norm_figure = bq.Figure(
            marks=[self.lines], title="Gradient norm per layer", legend_location="top-right", fig_margin=margin,
            axes=[bq.Axis(scale=xs, label="step", tick_format="d"),
                  bq.Axis(scale=ys, side="left", label="‖g‖₂", tick_format=".0e",
                          label_offset="45px")], layout=layout)
        rows, cols = bq.OrdinalScale(reverse=True), bq.LinearScale()  # first layer on top
        colors = bq.ColorScale(colors=list(_HEAT_COLORS), min=0.0, max=1.0)
        self.heatmap = bq.GridHeatMap(color=None, scales={"row": rows, "column": cols,
                                      "color": colors}, stroke="transparent", null_color="#ffffff",
                                      tooltip=bq.Tooltip(fields=["row", "column", "color"], formats=["", ".2f", ".1%"],
                                                         labels=["layer", "log10|g| from", "share"]))
        # No bqplot ColorAxis: its colour bar reads ``this.colors.length`` in ``rescale_axis``
        # before its own render has set it when the figure is laid out in a hidden tab
        # (JupyterLab), throws, and the heat map stayed blank; an HTML key above the plot instead.
        self.color_key = widgets.HTML(value=color_key_html(), layout=widgets.Layout(margin="0 0 0 110px"))
        self.hist_figure = bq.Figure(
            marks=[self.heatmap], title="log10|g| per layer", layout=widgets.Layout(width="100%", height=hist_height),
            fig_margin=margin,
            axes=[bq.Axis(scale=cols, label="log10 |g|", tick_format=".0f"), bq.Axis(scale=rows, side="left")])
        self.flags = widgets.HTML(value="No gradient samples yet.")
        self.widget = widgets.VBox([self.flags, self.norm_figure, self.color_key, self.hist_figure])
        self.reset()

    def reset(self) -> None:
        """Forget the run shown."""
        self.cursor = Cursor()
        self._labels_key: tuple | None = None  # (layers, frozen layers) whose labels were sent
        self._model: nn.Module | None = None
        self._modules: dict[str, nn.Module] = {}
        self._acts: dict[str, str] = {}
        self.flagged: list[str] = []

    def _labels(self, layers: list[str], frozen: list[bool]) -> list[str]:
        out = []
        for name, fz in zip(layers, frozen):
            m = self._modules.get(name)
            kind = type(m).__name__ if m is not None else "?"
            out.append(f"{name or '(model)'} ({kind}){' frozen' if fz else ''}")
        return out

    def refresh(self, trainer: Any, mark: Mark | None = None) -> None:
        """Redraw from ``trainer.history`` and ``trainer.model`` if the cursor finds a new
        gradient sample (a histogram comes with one) or another History, or the frozen layers
        changed since the last call; otherwise do nothing (no copy of the samples is read).
        ``mark``: the panel's :class:`~nnwidgets.widgets._cursor.Mark` of this refresh."""
        ch = self.cursor.advance(mark if mark is not None else trainer.history)
        model = trainer.model
        if model is not self._model:
            self._model = model
            self._modules = dict(model.named_modules())
            self._acts = activation_after(model)
        frozen_names = tuple(name for name, m in self._modules.items() if _is_frozen(m))
        if not ch.new_gradients and self._labels_key is not None and frozen_names == self._labels_key[1]:
            return
        h = ch.now.history
        steps, layers, norms = h.gradient_norms()
        last = h.last_histogram()
        frozen = [name in frozen_names for name in layers]
        labels_changed = (tuple(layers), frozen_names) != self._labels_key
        self._labels_key = (tuple(layers), frozen_names)
        labels = self._labels(layers, frozen)
        # float32 values this update may send (x + y of the norm lines, the heat map's colours)
        label_bytes = 2 * len(json.dumps(labels)) + 12 * len(labels) if labels_changed else 0
        values = max(512, (self.max_bytes - label_bytes) // 4)
        heat_bins = 0
        if last is not None and np.ndim(last[2]) == 2 and len(layers):
            heat_bins = max(2, min(np.shape(last[2])[1], values // 3 // len(layers)))
        if len(steps):
            self._send_norms(steps, norms, labels, labels_changed, values - heat_bins * len(layers))
        if last is not None:
            self._send_histogram(last, labels, heat_bins)
        frozen_labels = self._labels(list(frozen_names), [False] * len(frozen_names))
        self._send_flags(norms[-1] if len(steps) else None, layers, frozen_labels)

    def _send_norms(self, steps: np.ndarray, norms: np.ndarray, labels: list[str], labels_changed: bool,
                    values: int) -> None:
        L = norms.shape[1]
        per_line = max(2, min(self.max_points, self.max_values // max(L, 1), values // (L + 1)))
        idx, _ = stride_decimate(np.arange(len(steps)), np.arange(len(steps)), per_line)
        y = norms[idx].T.astype(np.float32)  # (L, k)
        y[~(y > 0)] = np.nan                  # NaN / 0 / negative: a gap on the log axis
        with self.lines.hold_sync():
            if labels_changed:
                self.lines.labels = labels
                self.lines.colors = [_PALETTE[i % len(_PALETTE)] for i in range(L)]
            set_lines(self.lines, steps[idx].astype(np.float32), y)
        newest = int(steps[-1])
        if self.x_scale.max != max(newest, 1):  # the axis ends at the newest sample, as the title says
            self.x_scale.max = float(max(newest, 1))
        self.norm_figure.title = f"Gradient norm per layer (step {newest})"

    def _send_histogram(self, last: tuple, labels: list[str], bins: int) -> None:
        names, edges, counts, step = last
        counts = np.asarray(counts, dtype=np.float32)
        if len(names) != len(labels) or counts.ndim != 2:
            return
        if 0 < bins < counts.shape[1]:  # merge neighbouring bins: `bins` groups of near-equal width
            starts = np.linspace(0, counts.shape[1], bins + 1).astype(int)
            counts = np.add.reduceat(counts, starts[:-1], axis=1)
            edges = np.asarray(edges)[starts]
        total = counts.sum(1, keepdims=True)
        share = np.divide(counts, total, out=np.zeros_like(counts), where=total > 0)
        if len(labels) == 1:  # bqplot squeezes a (1, bins) colour array to 1-D: add a blank row
            share, labels = np.concatenate([share, np.zeros_like(share)]), [*labels, " "]
        with self.heatmap.hold_sync():  # colour first: row/column are validated against its shape
            self.heatmap.color = share
            self.heatmap.row = np.asarray(labels, dtype=str)
            self.heatmap.column = np.asarray(edges, dtype=np.float32)
        self.hist_figure.title = f"log10|g| per layer (step {int(step)})"

    def _send_flags(self, norms: np.ndarray | None, layers: list[str], frozen_labels: list[str]) -> None:
        parts = []
        if norms is None:
            parts.append("No gradient samples yet.")
            self.flagged = []
        else:
            self.flagged = layer_messages(norms, layers, self._acts, ratio=self.ratio)  # the check's diagnosis
            if self.flagged:
                items = "".join(f"<li>{html.escape(msg)}</li>" for msg in self.flagged[:_MAX_FLAGS])
                if len(self.flagged) > _MAX_FLAGS:
                    items += f"<li>… and {len(self.flagged) - _MAX_FLAGS} more layer(s)</li>"
                parts.append(f"<b style='color:#d62728'>Vanishing gradients in {len(self.flagged)} "
                             f"layer(s):</b><ul style='margin:2px 0'>{items}</ul>")
            else:
                parts.append(f"No vanishing gradients: every layer's gradient norm is at least "
                             f"{self.ratio:.0e} × that of the last layer.")
        if frozen_labels:
            parts.append("Frozen (no gradient): " + html.escape(", ".join(frozen_labels)))
        self.flags.value = "<br>".join(parts)
