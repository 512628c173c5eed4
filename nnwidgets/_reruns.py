"""One live run per cell, one training thread per model: what a new ``%%train`` does with the
runs of earlier ``%%train`` cells.

A ``%%train`` cell whose body rebuilds the model makes a new model object on every run, so
"the same model object" does not tell that a cell was run again: four re-runs used to leave
four trainings and four panel-updater threads running at once. A run belongs to a *cell*:

* the notebook cell id, when the front end sends one with the request (JupyterLab and
  Notebook 7 put ``cellId`` in the ``execute_request`` metadata);
* otherwise the ``--name`` variable, or for an unnamed run the model's variable name
  (``%%train model ...``): an earlier unnamed run of ``model`` is taken as the same cell.

A new run stops the earlier run of its cell and closes that panel (its updater thread ends);
an earlier run of the *same model object* from another cell is stopped and its panel marked
superseded, with its Start button disabled (two threads training one model fail inside
autograd). Each is said in the new panel's notices.
"""
from __future__ import annotations

import weakref
from typing import Any

__all__ = ["Runs", "cell_key"]


def cell_key(shell: Any, model_expr: str, name: str | None) -> tuple[str, str]:
    """The cell a ``%%train`` run belongs to (see the module docstring)."""
    kernel = getattr(shell, "kernel", None)
    try:
        parent = kernel.get_parent() if kernel is not None else {}
    except Exception:  # noqa: BLE001 - an older or foreign kernel: fall back to the names
        parent = {}
    cell_id = (parent.get("metadata") or {}).get("cellId") if isinstance(parent, dict) else None
    if cell_id:
        return ("cell", str(cell_id))
    return ("name", name) if name else ("model", model_expr)


def _stop(trainer: Any) -> str:
    """Stop a running or paused run (waiting up to 10 s); returns where it ended."""
    if getattr(trainer, "state", None) in ("running", "paused"):
        trainer.stop()
        trainer.wait(10)
    return f"epoch {trainer.epoch}, step {trainer.step}, {trainer.state}"


def note(view: Any, message: str) -> None:
    """Put ``message`` into the notices of a panel (or print it for a text report)."""
    if hasattr(view, "note"):
        view.note(message)
    else:
        view.status.log(message)


class Runs:
    """The views (panels or text reports) that one shell's ``%%train`` made, with their cells."""

    def __init__(self) -> None:
        self._cells: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def add(self, view: Any, key: tuple[str, str]) -> None:
        """Remember ``view`` as the run of cell ``key``."""
        self._cells[view] = key

    def retire(self, key: tuple[str, str], model: Any, user_ns: dict, name: str | None) -> list[str]:
        """Make room for a new run of ``model`` in cell ``key``: stop and close the earlier run
        of that cell (also a view that ``--name`` rebinds), stop and supersede any other run of
        the same model object. Returns messages for the new view's notices."""
        messages = []
        rebound = user_ns.get(name) if name else None
        for view, old_key in list(self._cells.items()):
            if old_key == key or view is rebound:
                where = _stop(view.trainer)
                view.close()
                self._cells.pop(view, None)
                messages.append(f"this cell ran before: its earlier run was stopped ({where}) and its panel closed")
            elif view.trainer.model is model:
                where = _stop(view.trainer)
                supersede = getattr(view, "supersede", None)
                if supersede is not None:
                    supersede("superseded: a newer %%train cell trains this model object; this panel's "
                              "controls are off (two runs must not train one model)")
                messages.append(f"another %%train of this model object was stopped ({where}); its panel stays, "
                                "with its controls off")
        return messages
