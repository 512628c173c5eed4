"""Live network diagram: neurons, layers and weights of the model being trained.

The browser side is ``js/network.js`` (plain ESM, no CDN imports), loaded as anywidget's
``_esm``. Python sends three traits:

* ``structure`` (JSON): the layout from :func:`nnwidgets._graph.extract`, sent when the view is
  built or :meth:`NetworkView.reset` (not per update);
* ``state`` (JSON, a few hundred bytes): per layer gradient norm, frozen flag, dropout ``p``,
  plus step, epoch and an update counter ``version``;
* ``weights`` (``bytes``): ONE float32 buffer of sampled edges and incoming-weight statistics.
  ipywidgets moves ``bytes`` trait values out of the JSON into a binary message part
  (``_remove_buffers``), so the weights travel as raw float32, never as lists. Its size is fixed
  by the graph (``graph.nbytes``: 1,628 bytes for a 2-8-8-3 MLP, 6,364 bytes for 784-256-10 with
  the defaults) and never exceeds ``4 × (3 × max(max_edges, 63) + 5 × max_neurons × 64)`` bytes.

:meth:`NetworkView.refresh` is throttled by wall time to at most one update per ``interval_s``
(0.5 s: ≤ 2 Hz) and sends nothing when nothing changed (a paused run). It reads the weights,
``requires_grad`` flags and dropout modules at each update, so freeze toggles and the dropout
slider show up at the next update. It never runs the model.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from .._graph import extract, layer_state, sample
from ._cursor import Mark

__all__ = ["NetworkView", "NetworkWidget", "esm_path"]

MIN_INTERVAL_S = 0.5   # ≤ 2 updates per second


def esm_path(name: str = "network.js") -> Path:
    """Path of a front-end module: ``nnwidgets/js/<name>`` in an installed wheel (pyproject
    force-includes ``js/`` there), else ``<repo>/js/<name>`` in a source checkout.

    Raises:
        FileNotFoundError: neither exists (a broken install).
    """
    package = Path(__file__).resolve().parent.parent
    candidates = (package / "js" / name, package.parent / "js" / name)
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"nnwidgets front-end file {name!r} not found in "
                            f"{' or '.join(str(c.parent) for c in candidates)}; reinstall nnwidgets")


class NetworkWidget(anywidget.AnyWidget):
    """The anywidget model behind :class:`NetworkView` (traits described in the module doc)."""

    _esm = esm_path("network.js")
    structure = traitlets.Dict().tag(sync=True)
    state = traitlets.Dict().tag(sync=True)
    weights = traitlets.Bytes(b"").tag(sync=True)


class NetworkView:
    """Columns of neurons (MLPs) or one block per module (anything else), live.

    Edges are coloured by the sign of the weight (blue positive, orange negative) with width and
    opacity ∝ |w|; each layer is tinted by its newest gradient norm on a log scale; activation,
    normalisation and dropout ``p`` are named under the layer; frozen layers are drawn dashed and
    grey; hovering a neuron shows the mean, std, min and max of its incoming weights and its bias.
    Columns wider than ``max_neurons`` are drawn as one stacked bar with the count, and only the
    strongest edges to and from them are sent.

    Args:
        trainer: the :class:`nnwidgets.Trainer` shown.
        max_neurons: columns wider than this are collapsed (default 32: a 32-unit hidden layer is
            drawn as 32 neurons, closer together than up to 16).
        max_edges: sampled edges in total, over all layers (default 1,024).
        example: optional input batch, used once (if the trainer is not running) to show the
            output shape of each block in the block view.
        interval_s: minimum seconds between two updates (>= 0.5, i.e. ≤ 2 Hz).

    Attributes:
        widget: the :class:`NetworkWidget` to place in a layout.
        graph: the :class:`nnwidgets._graph.Graph` drawn.
        last_update_nbytes: bytes of the weight buffer in the newest update (0 before one).
        last_refresh_s: seconds the newest non-skipped :meth:`refresh` took.
        updates: number of updates sent.

    Raises:
        ValueError: ``interval_s < 0.5``, or ``max_neurons``/``max_edges`` < 1.

    Example:
        >>> view = NetworkView(trainer)     # doctest: +SKIP
        >>> view.widget                     # doctest: +SKIP
    """

    title = "Network"

    def __init__(self, trainer: Any, *, max_neurons: int = 32, max_edges: int = 1024, example: Any = None,
                 interval_s: float = MIN_INTERVAL_S) -> None:
        if not interval_s >= MIN_INTERVAL_S:
            raise ValueError(f"interval_s must be >= {MIN_INTERVAL_S} (at most 2 updates per second), got {interval_s}")
        self.max_neurons, self.max_edges, self.interval_s = int(max_neurons), int(max_edges), float(interval_s)
        self._example = example
        self.widget = NetworkWidget()
        self.updates, self.last_update_nbytes, self.last_refresh_s = 0, 0, 0.0
        self._build(trainer)

    def _build(self, trainer: Any) -> None:
        example = None if trainer.state == "running" else self._example
        self.graph = extract(trainer.model, example, max_neurons=self.max_neurons, max_edges=self.max_edges)
        self._trainer, self._model = trainer, trainer.model
        self._last_t = -math.inf
        self._sent: tuple | None = None
        self.widget.structure = dict(self.graph.structure)
        self.refresh(trainer, force=True)

    def refresh(self, trainer: Any, force: bool = False, *, mark: Mark | None = None) -> None:
        """Send the current weights and layer state, at most once per ``interval_s``.

        Args:
            trainer: the Trainer (its model, history, step and epoch are read).
            force: update even if the last update is younger than ``interval_s``.
            mark: the panel's :class:`~nnwidgets.widgets._cursor.Mark` (not needed here).
        """
        now = time.monotonic()
        if not force and now - self._last_t < self.interval_s:
            return
        if trainer.model is not self._model:
            self._build(trainer)
            return
        self._last_t = now
        t0 = time.perf_counter()
        payload = sample(self.graph).tobytes()
        state = layer_state(self.graph, trainer.history)
        state.update(step=int(trainer.step), epoch=int(trainer.epoch))
        key = (payload, repr(sorted(state.items())))
        if key != self._sent:
            self._sent = key
            self.updates += 1
            state["version"] = self.updates
            with self.widget.hold_sync():
                self.widget.weights = payload
                self.widget.state = state
            self.last_update_nbytes = len(payload)
        self.last_refresh_s = time.perf_counter() - t0

    def reset(self, trainer: Any = None) -> None:
        """Re-read the model's structure (after layers were replaced) and redraw.

        Args:
            trainer: the Trainer to show from now on (default: the one shown so far).
        """
        self._build(trainer if trainer is not None else self._trainer)

    def close(self) -> None:
        """Close the widget (the browser view goes away)."""
        self.widget.close()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)
