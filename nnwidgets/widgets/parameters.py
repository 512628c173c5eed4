"""Per-layer parameter table with a freeze toggle per layer.

Rows come from :func:`nnwidgets.stats.summary` (name, type, weight shape, parameter count,
trainable count), followed by a totals row. Each layer that owns parameters gets a
``Checkbox``; ticking it calls ``trainer.freeze(name, True)``, which takes effect at the next
optimizer step (``requires_grad=False``, so the optimizer leaves those weights alone).

Module names and types are user text: they are inserted ``html.escape``d, so a layer named
``<img src=x onerror=alert(1)>`` shows literally.

Refresh is cheap: it compares a signature of the model's parameters (``requires_grad`` and
lazy/materialised, one pass over the parameter tensors) with the previous one and recomputes
the summary only when it changed (a freeze was applied, a lazy layer was materialised).
"""
from __future__ import annotations

import html
import threading
from typing import Any, Callable

import ipywidgets as w
from torch import nn

from ..stats import summary
from ._cursor import Mark

__all__ = ["ParametersView"]

_COLUMNS = ("layer", "type", "shape", "params", "trainable", "frozen")


def _cell(text: str, bold: bool = False, right: bool = False) -> w.HTML:
    value = html.escape(text)
    style = "text-align:right;" if right else ""
    return w.HTML(f'<div style="{style}">{"<b>" + value + "</b>" if bold else value}</div>')


def _set_cell(cell: w.HTML, text: str, right: bool = False) -> None:
    style = "text-align:right;" if right else ""
    value = f'<div style="{style}">{html.escape(text)}</div>'
    if cell.value != value:
        cell.value = value


class ParametersView:
    """Parameter-count table of ``trainer.model`` with freeze toggles.

    Args:
        trainer: the Trainer whose model is shown.
        notify: ``notify(message)`` for errors from ``trainer.freeze`` (default: ignored).

    Attributes:
        widget: the ``ipywidgets.VBox``.
        freeze_boxes: ``{layer name: Checkbox}`` for every layer that owns parameters.
        cells: ``{layer name: {column: HTML}}``; the totals row is under ``"(total)"``.
        table: the last ``summary(model)`` DataFrame.

    Example:
        >>> view = ParametersView(trainer)             # doctest: +SKIP
        >>> view.freeze_boxes["0"].value = True        # trainer.freeze("0", True)  # doctest: +SKIP
    """

    title = "Parameters"

    def __init__(self, trainer: Any, notify: Callable[[str], None] | None = None) -> None:
        self.trainer = trainer
        self._notify = notify or (lambda message: None)
        self._local = threading.local()
        self._signature: tuple | None = None
        self._names: list[str] | None = None
        self.freeze_boxes: dict[str, w.Checkbox] = {}
        self.cells: dict[str, dict[str, w.HTML]] = {}
        self.table = None
        self.grid = w.GridBox(layout=w.Layout(grid_template_columns="repeat(6, max-content)",
                                              grid_gap="2px 16px", max_height="420px", overflow="auto"))
        self.widget = w.VBox([self.grid])
        self.refresh(trainer)

    @staticmethod
    def _model_signature(model: nn.Module) -> tuple:
        return tuple((p.requires_grad, nn.parameter.is_lazy(p)) for p in model.parameters())

    def refresh(self, trainer: Any, mark: Mark | None = None) -> None:
        """Recompute the table when the parameters' frozen/materialised state changed (``mark``,
        the panel's :class:`~nnwidgets.widgets._cursor.Mark`, is not needed here)."""
        sig = self._model_signature(trainer.model)
        if sig == self._signature:
            return
        df = summary(trainer.model)
        self.table, self._signature = df, sig
        names = df["name"].tolist()
        if names != self._names:
            self._build(df)
        else:
            self._update(df)

    def _build(self, df: Any) -> None:
        self._names = df["name"].tolist()
        self.freeze_boxes, self.cells = {}, {}
        children = [_cell(c, bold=True, right=c in ("params", "trainable")) for c in _COLUMNS]
        for r in df.itertuples(index=False):
            name = r.name or "(root)"
            row = {"layer": _cell(name), "type": _cell(r.type), "shape": _cell(r.shape),
                   "params": _cell(f"{r.params:,}", right=True), "trainable": _cell(f"{r.trainable:,}", right=True)}
            self.cells[r.name] = row
            children += list(row.values())
            if r.params > 0 or r.shape:
                box = w.Checkbox(value=bool(r.frozen), indent=False, description="",
                                 tooltip="freeze this layer (from the next step on)",
                                 layout=w.Layout(width="auto"))
                box.observe(self._freeze_observer(r.name), names="value")
                self.freeze_boxes[r.name] = box
                children.append(box)
            else:
                children.append(w.HTML(""))
        a = df.attrs
        total = {"layer": _cell("total", bold=True), "type": _cell(""), "shape": _cell(""),
                 "params": _cell(f"{a['total_params']:,}", right=True),
                 "trainable": _cell(f"{a['trainable_params']:,}", right=True)}
        self.cells["(total)"] = total
        children += list(total.values()) + [w.HTML("")]
        old = self.grid.children
        self.grid.children = children
        for child in old:
            child.close()

    def _update(self, df: Any) -> None:
        self._local.syncing = True
        try:
            for r in df.itertuples(index=False):
                row = self.cells[r.name]
                _set_cell(row["shape"], r.shape)
                _set_cell(row["params"], f"{r.params:,}", right=True)
                _set_cell(row["trainable"], f"{r.trainable:,}", right=True)
                if r.name in self.freeze_boxes:
                    self.freeze_boxes[r.name].value = bool(r.frozen)
        finally:
            self._local.syncing = False
        a, total = df.attrs, self.cells["(total)"]
        _set_cell(total["params"], f"{a['total_params']:,}", right=True)
        _set_cell(total["trainable"], f"{a['trainable_params']:,}", right=True)

    def _freeze_observer(self, name: str) -> Callable[[dict], None]:
        def observer(change: dict) -> None:
            if getattr(self._local, "syncing", False):
                return
            try:
                self.trainer.freeze(name, bool(change["new"]))
            except (KeyError, RuntimeError, ValueError) as e:
                self._notify(str(e))
        return observer
