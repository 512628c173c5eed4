"""nnwidgets: live, steerable PyTorch training in Jupyter notebooks and Voila dashboards.

Plain Python::

    import nnwidgets as nw
    trainer = nw.Trainer(model, train_loader, val_loader, epochs=20, lr=0.05, momentum=0.9)
    history = trainer.fit()

In a notebook, ``%load_ext nnwidgets`` then ``%%train model train_loader --val val_loader``
shows a :class:`TrainingPanel` and trains in the background. The widget classes are imported
on first use, so ``import nnwidgets`` (and ``nnwidgets.engine``) loads no UI library.
"""
from __future__ import annotations

from typing import Any

from .engine import STATES, Trainer
from .engine.events import Event
from .history import History
from .checks.base import CheckWarning
from .stats import gradient_stats, summary

__all__ = ["Trainer", "History", "Event", "STATES", "CheckWarning", "summary", "gradient_stats", "load_checkpoint",
           "TrainingPanel", "panel", "NetworkView", "DecisionBoundaryView", "check", "load_ipython_extension"]
__version__ = "0.1.0"

_WIDGETS = {"TrainingPanel": "nnwidgets.widgets.panel", "panel": "nnwidgets.widgets.panel",
            "NetworkView": "nnwidgets.widgets.network", "DecisionBoundaryView": "nnwidgets.widgets.boundary"}


def __getattr__(name: str) -> Any:
    if name in _WIDGETS:
        import importlib
        return getattr(importlib.import_module(_WIDGETS[name]), name)
    if name == "check":
        from ._check import check
        return check
    if name == "load_checkpoint":
        from .checkpoint import load_checkpoint
        return load_checkpoint
    raise AttributeError(f"module 'nnwidgets' has no attribute {name!r}")


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext nnwidgets``: registers the ``%%train`` magic and ``%nnwidgets check``; in Colab
    it also turns on Colab's custom widget manager and says so."""
    from ._frontend import enable_colab_widgets
    from ._magic import register
    register(ipython)
    notice = enable_colab_widgets()
    if notice:
        from IPython.display import display
        display({"text/plain": f"nnwidgets: {notice}"}, raw=True)
