"""Decision boundary of a 2-feature classifier: predicted class over a grid, training points on top.

Threading choice (why the model is never run from the UI thread while it trains): a forward
pass needs ``model.eval()`` (dropout off, batch-norm running statistics used and not updated).
Switching the mode from the UI thread while the training thread steps would make some training
steps run in eval mode. So the grid is evaluated **on the training thread**, by handlers
registered with :meth:`Trainer.on`:

* ``METRICS_FLUSHED`` (every ~0.1 s while running): evaluates when ``interval_s`` (1 s) has passed
  since the last evaluation. The flush runs between ``backward()`` and ``optimizer.step()``; a
  ``no_grad`` forward there leaves the gradients alone, and the mode is restored in ``finally``.
* ``STATE_CHANGED`` (paused, stopped, completed, failed, running): evaluates at once, so the
  picture shows the final weights of a run and of each ``step_once()``; when the run pauses or
  ends it also draws that result at once (the final refresh): a view nobody refreshes (shown on
  its own, or in a hidden tab) showed nothing, and a panel's last throttled refresh a stale step.

The constructor evaluates once on the calling thread and draws when the trainer is not running;
built while it runs, the next ``METRICS_FLUSHED`` evaluates and draws once, so a view shown on
its own is never blank. :meth:`DecisionBoundaryView.refresh` (the panel's updater thread, ≤ 1 Hz
by wall time while running; at once when the run is not running) only draws the newest stored
result. A handler error never reaches the loop: it is shown under the chart.
Cost on the training thread: one forward pass of ``grid²`` points (6,400 by default) per second.
"""
from __future__ import annotations

import html
import math
import threading
import time
from typing import Any

import bqplot as bq
import ipywidgets as w
import numpy as np
import torch
from torch import nn

from ..events import Event
from ._cursor import Mark

__all__ = ["DecisionBoundaryView", "MAX_GRID", "class_legend_html", "training_points"]

MAX_GRID = 100            # grid cells per axis, at most
MIN_INTERVAL_S = 1.0      # ≤ 1 evaluation and ≤ 1 redraw per second
_STRONG = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf"]   # Tableau 10


def _pale(hex_color: str, keep: float = 0.35) -> str:
    """``hex_color`` mixed with white (``keep`` of the colour), for the background cells."""
    rgb = [int(hex_color[i:i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(255 - (255 - c) * keep):02x}" for c in rgb)


def class_legend_html(names: list[str]) -> str:
    """The boundary's class legend, one entry per class ``k``: a swatch of the region's pale
    colour holding a dot of the point colour (``_STRONG[k % 10]``), then ``names[k]`` (escaped)."""
    def item(k: int, name: str) -> str:
        strong = _STRONG[k % len(_STRONG)]
        swatch = (f'<span style="display:inline-block;width:16px;height:16px;vertical-align:middle;margin-right:5px;'
                  f'background:{_pale(strong)};border:1px solid #ccc;text-align:center;line-height:16px">'
                  f'<span style="display:inline-block;width:8px;height:8px;border-radius:50%;background:{strong};'
                  f'vertical-align:middle"></span></span>')
        return f'<span class="nnw-legend-item" style="margin-right:14px;white-space:nowrap">{swatch}{html.escape(name)}</span>'
    return (f'<div class="nnw-legend nnw-class-legend" style="font-size:12px;line-height:22px">'
            f'{"".join(item(k, n) for k, n in enumerate(names))}</div>')


def _numpy(a: Any) -> np.ndarray:
    return a.detach().cpu().numpy() if torch.is_tensor(a) else np.asarray(a)


def _labels(y: Any) -> np.ndarray:
    """Class labels ``(N,)`` int from labels ``(N,)``/``(N, 1)`` (int or float) or one-hot ``(N, C)``."""
    y = _numpy(y)
    if y.ndim == 2 and y.shape[1] > 1:
        y = y.argmax(1)
    return np.rint(y.reshape(-1).astype(np.float64)).astype(np.int64)


def training_points(data: Any, max_points: int = 2000) -> tuple[np.ndarray, np.ndarray | None] | None:
    """``(X (n, F), y (n,) or None)`` from a DataLoader over a ``TensorDataset``, a
    ``TensorDataset``, or a list/tuple of ``(x, y)`` tensor batches; ``None`` for anything else
    (other loaders are not iterated: that could start worker processes or consume a stream)."""
    dataset = getattr(data, "dataset", data)
    if isinstance(dataset, torch.utils.data.TensorDataset):
        tensors = dataset.tensors
        return _numpy(tensors[0][:max_points]), _labels(tensors[1][:max_points]) if len(tensors) > 1 else None
    if isinstance(data, (list, tuple)) and data and all(isinstance(b, (list, tuple)) and len(b) == 2
                                                       and torch.is_tensor(b[0]) for b in data):
        xs, ys, n = [], [], 0
        for x, y in data:
            xs.append(_numpy(x))
            ys.append(_labels(y))
            n += len(xs[-1])
            if n >= max_points:
                break
        return np.concatenate(xs)[:max_points], np.concatenate(ys)[:max_points]
    return None


class DecisionBoundaryView:
    """The model's predicted class over a grid covering the data (bqplot ``HeatMap``), with the
    training points on top (``Scatter`` coloured by class).

    Args:
        trainer: the :class:`nnwidgets.Trainer`; its model must take ``(N, 2)`` float inputs.
        X: training inputs ``(N, 2)`` (tensor or array); the grid spans their range ± ``margin``.
        y: optional class labels ``(N,)`` (or one-hot ``(N, C)``) for the points' colours; when
            omitted and ``X`` equals the trainer's training features (see
            :func:`training_points`), the training labels are used.
        grid: cells per axis, 2..100 (default 80, i.e. 6,400 grid points).
        margin: extra range on each side, as a fraction of the data's span per axis.
        interval_s: minimum seconds between evaluations and between redraws (>= 1).
        max_points: training points drawn, at most (every k-th point beyond that).
        class_names: names of classes 0, 1, ... for the legend (default ``"class 0"``, ...);
            classes beyond the list are named ``"class k"``.

    Attributes:
        widget: the ``ipywidgets.VBox`` (class legend + figure + status line).
        legend: ``HTML``, the class legend (:func:`class_legend_html`): one entry per class the
            model predicts (or the labels hold), empty for regression.
        grid_points: float32 tensor ``(grid², 2)``; row ``i * grid + j`` is ``(xs[j], ys[i])``.
        xs, ys: float32 ``(grid,)`` cell centres.
        predictions: newest predicted classes ``(grid, grid)`` int (row = y index), or ``None``.
        evaluated_step: ``trainer.step`` of those predictions. error: last evaluation error text.

    Raises:
        ValueError: ``X`` is not ``(N, 2)``, ``grid`` outside 2..100, ``interval_s < 1``.

    Example:
        >>> view = DecisionBoundaryView(trainer, X, y)   # doctest: +SKIP
        >>> view.widget                                  # doctest: +SKIP
    """

    title = "Decision boundary"

    def __init__(self, trainer: Any, X: Any, y: Any = None, *, grid: int = 80, margin: float = 0.1,
                 interval_s: float = MIN_INTERVAL_S, max_points: int = 2000,
                 class_names: list[str] | None = None) -> None:
        self.class_names = [str(n) for n in class_names or []]
        self._trainer = trainer
        X = _numpy(X).astype(np.float64)
        if X.ndim != 2 or X.shape[1] != 2 or len(X) == 0:
            raise ValueError(f"DecisionBoundaryView needs inputs with 2 features, shape (N, 2); got {X.shape}")
        if not 2 <= int(grid) <= MAX_GRID:
            raise ValueError(f"grid must be between 2 and {MAX_GRID} cells per axis, got {grid}")
        if not interval_s >= MIN_INTERVAL_S:
            raise ValueError(f"interval_s must be >= {MIN_INTERVAL_S} (at most one evaluation per second)")
        self.grid, self.interval_s = int(grid), float(interval_s)
        lo, hi = X.min(0), X.max(0)
        span = np.where(hi > lo, hi - lo, 1.0)
        lo, hi = lo - margin * span, hi + margin * span
        self.xs = np.linspace(lo[0], hi[0], self.grid).astype(np.float32)
        self.ys = np.linspace(lo[1], hi[1], self.grid).astype(np.float32)
        gx, gy = np.meshgrid(self.xs, self.ys)                       # (grid_y, grid_x)
        self.grid_points = torch.from_numpy(np.stack([gx.ravel(), gy.ravel()], 1))
        if y is None:   # X is the trainer's own training data (as the panel passes it): take its labels
            found = training_points(trainer.train_data, len(X))
            if found is not None and found[1] is not None and np.array_equal(found[0], X):
                y = found[1]
        labels = None if y is None else _labels(y)
        keep = slice(None, None, max(1, math.ceil(len(X) / max_points)))
        self._n_labels = 0 if labels is None else int(labels.max()) + 1
        self.predictions: np.ndarray | None = None
        self.evaluated_step: int | None = None
        self.error = ""
        self._lock = threading.Lock()
        self._result: tuple | None = None          # (version, predictions, step, n_classes)
        self._version = self._drawn = 0
        self._last_eval = self._last_draw = -math.inf
        self._grid_cache: dict = {}
        self._draw_lock = threading.Lock()          # the updater thread and the training thread draw
        self._draw_next = trainer.state == "running"  # built while running: draw the first evaluation
        self._build(X[keep], None if labels is None else labels[keep])
        self._handles = [trainer.on(Event.METRICS_FLUSHED, self._on_flush),
                         trainer.on(Event.STATE_CHANGED, self._on_state)]
        if trainer.state != "running":
            self._evaluate(trainer)
        self.refresh(trainer, force=True)

    # ------------------------------------------------------------------ building
    def _build(self, X: np.ndarray, labels: np.ndarray | None) -> None:
        sx, sy = bq.LinearScale(), bq.LinearScale()
        c = max(2, self._n_labels)
        self._heat_scale = bq.ColorScale(colors=[_pale(k) for k in _STRONG[:c]], min=0, max=c - 1)
        self._point_scale = bq.ColorScale(colors=_STRONG[:c], min=0, max=c - 1)
        self.heat = bq.HeatMap(x=self.xs, y=self.ys, color=np.zeros((self.grid, self.grid), np.uint8),
                               scales={"x": sx, "y": sy, "color": self._heat_scale})
        point_kw = {"colors": [_STRONG[0]]} if labels is None else {
            "color": labels.astype(np.float32), "scales": {"x": sx, "y": sy, "color": self._point_scale}}
        point_kw.setdefault("scales", {"x": sx, "y": sy})
        self.points = bq.Scatter(x=X[:, 0].astype(np.float32), y=X[:, 1].astype(np.float32), stroke="white",
                                 default_size=28, **point_kw)
        axes = [bq.Axis(scale=sx, side="bottom", label="feature 0"), bq.Axis(scale=sy, side="left", label="feature 1")]
        self.figure = bq.Figure(marks=[self.heat, self.points], axes=axes, padding_x=0, padding_y=0,
                                fig_margin={"top": 10, "bottom": 40, "left": 50, "right": 10},
                                layout=w.Layout(width="420px", height="400px"))
        self.status = w.Label(value="")
        self.legend = w.HTML(value=class_legend_html(self._names(c)) if labels is not None else "")
        self.widget = w.VBox([self.legend, self.figure, self.status])

    def _names(self, c: int) -> list[str]:
        return [self.class_names[k] if k < len(self.class_names) else f"class {k}" for k in range(c)]

    # ------------------------------------------------------------------ evaluation (training thread)
    def _grid_on(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        key = (str(device), dtype)
        if key not in self._grid_cache:
            self._grid_cache = {key: self.grid_points.to(device=device, dtype=dtype)}
        return self._grid_cache[key]

    def _evaluate(self, trainer: Any) -> None:
        """One ``no_grad``/``eval()`` forward pass over the grid; never raises."""
        self._last_eval = time.monotonic()
        model = trainer.model
        try:
            ref = next((p for p in model.parameters() if p.is_floating_point()), None)
            dtype = ref.dtype if ref is not None else torch.float32
            was_training = model.training
            try:
                model.eval()
                with torch.no_grad():
                    out = model(self._grid_on(trainer.device, dtype))
            finally:
                model.train(was_training)
            preds, n_classes = self._classes(out, trainer)
        except Exception as exc:  # noqa: BLE001 - an error here must not fail the training run
            self.error = f"decision boundary not updated: {type(exc).__name__}: {exc}"
            return
        with self._lock:
            self._version += 1
            self._result = (self._version, preds.reshape(self.grid, self.grid), int(trainer.step), n_classes)
        self.error = ""

    def _classes(self, out: Any, trainer: Any) -> tuple[np.ndarray, int]:
        if not torch.is_tensor(out):
            raise TypeError(f"the model returned {type(out).__name__}, expected a tensor of logits")
        out = out.detach().float().reshape(len(self.grid_points), -1)  # (grid², C)
        if trainer.task == "regression":
            return out[:, 0].cpu().numpy().astype(np.float32), 0
        if out.shape[1] > 1:
            return out.argmax(1).cpu().numpy().astype(np.uint8), int(out.shape[1])
        threshold = 0.5 if isinstance(getattr(trainer, "loss_fn", None), nn.BCELoss) else 0.0
        return (out[:, 0] > threshold).cpu().numpy().astype(np.uint8), 2

    def _on_flush(self, trainer: Any, **_: Any) -> None:
        if self._draw_next or time.monotonic() - self._last_eval >= self.interval_s:
            self._evaluate(trainer)
        if self._draw_next:
            self._draw_next = False
            self._draw_now(trainer)

    def _on_state(self, trainer: Any, new: str = "", **_: Any) -> None:
        self._evaluate(trainer)
        if new and new != "running":  # paused or ended: the final picture, even where nothing refreshes the view
            self._draw_now(trainer)

    def _draw_now(self, trainer: Any) -> None:
        try:
            self.refresh(trainer, force=True)
        except Exception as exc:  # noqa: BLE001 - drawing must not fail the training run
            self.error = f"decision boundary not drawn: {type(exc).__name__}: {exc}"

    # ------------------------------------------------------------------ drawing (updater thread)
    def refresh(self, trainer: Any, force: bool = False, *, mark: Mark | None = None) -> None:
        """Draw the newest evaluated grid, at most once per ``interval_s``; never runs the model.

        Args:
            trainer: the Trainer (unused beyond the stored result; kept for the view contract).
            force: draw even if the last draw is younger than ``interval_s`` (implied when the
                trainer is not running: the run's last picture is never held back).
            mark: the panel's :class:`~nnwidgets.widgets._cursor.Mark` (not needed here).
        """
        with self._draw_lock:
            self._draw(trainer, force or trainer.state != "running")

    def _draw(self, trainer: Any, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._last_draw < self.interval_s:
            return
        with self._lock:
            result = self._result
        if result is None or result[0] == self._drawn:
            if self.error and self.status.value != self.error:
                self.status.value = self.error
            return
        self._last_draw = now
        version, preds, step, n_classes = result
        self._drawn, self.predictions, self.evaluated_step = version, preds, step
        c = max(2, n_classes, self._n_labels)
        if n_classes and self._heat_scale.max != c - 1:
            with self._heat_scale.hold_sync():
                self._heat_scale.colors = [_pale(_STRONG[k % 10]) for k in range(c)]
                self._heat_scale.max = c - 1
            with self._point_scale.hold_sync():
                self._point_scale.colors = [_STRONG[k % 10] for k in range(c)]
                self._point_scale.max = c - 1
        legend = class_legend_html(self._names(c)) if n_classes else ""
        if self.legend.value != legend:
            self.legend.value = legend
        if not n_classes and self._heat_scale.colors[0] != "#f7fbff":   # regression: a value map
            with self._heat_scale.hold_sync():
                self._heat_scale.colors = ["#f7fbff", "#6baed6", "#08306b"]
                self._heat_scale.min, self._heat_scale.max = None, None
        with self.heat.hold_sync():
            self.heat.color = preds
        what = "predicted value" if not n_classes else "predicted class"
        self.status.value = self.error or f"step {step}: {what} on a {self.grid}×{self.grid} grid"

    def reset(self, trainer: Any = None) -> None:
        """Evaluate again now (only when ``trainer`` is not running), e.g. after new weights were loaded."""
        if trainer is not None and trainer.state != "running":
            self._evaluate(trainer)
            self.refresh(trainer, force=True)

    def close(self) -> None:
        """Unregister the trainer handlers and close the widgets."""
        for h in self._handles:
            h.remove()
        self.widget.close()
        self.figure.close()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """Shown on its own: the current model's picture (evaluated now when the trainer is not
        running), then the widget."""
        self.reset(self._trainer)
        return self.widget._repr_mimebundle_(**kwargs)
