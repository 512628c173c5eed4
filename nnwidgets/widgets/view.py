"""The View protocol: what a tab of the :class:`~nnwidgets.widgets.panel.TrainingPanel` is.

A view is any object with

* ``widget``: the ``ipywidgets.Widget`` the tab shows;
* ``refresh(trainer)``: bring the widget up to date from ``trainer.history`` and the trainer's
  state. It reads, never drives the loop (DESIGN.md: views only subscribe), and runs on the
  panel's updater thread, never on the training thread.

and optionally

* ``refresh(trainer, mark=None)``: a ``mark`` keyword receives the panel's
  :class:`~nnwidgets.widgets._cursor.Mark` of this refresh (taken once per refresh, shared by
  every view refreshed then). A view passes it to its own
  :class:`~nnwidgets.widgets._cursor.Cursor` to learn what is new (``cursor.advance(mark)``);
  called by hand without one, it advances the cursor to ``trainer.history`` as it stands;
* ``refresh(trainer, force=False)``: a view with its own throttle (Network, Decision boundary)
  takes ``force`` to draw at once; the panel passes ``force=True`` only while the run is not
  running (its refresh after a pause or the run's end is the last one, and a throttled view
  showed a stale step: 1586 of a run that ended at 1950); while running it calls ``refresh`` at
  most once per ``view_interval_s`` and the view keeps its own, slower rate;
* ``refresh_hidden`` (default ``False``): refresh this view while its tab is hidden too. The
  built-in views leave it ``False``: a hidden tab costs nothing and catches up from the history
  when it is shown;
* ``title``: the tab's default title (the built-in views' titles).

:func:`check_view` (called by ``TrainingPanel.add_tab``) checks the first two and finds the
optional ones once; it raises ``TypeError`` naming what a view lacks.

Example:
    >>> import ipywidgets
    >>> class StepCount:
    ...     def __init__(self):
    ...         self.widget = ipywidgets.Label()
    ...     def refresh(self, trainer):
    ...         self.widget.value = f"step {trainer.step}"
    >>> check_view(StepCount())
    ViewInfo(takes_mark=False, takes_force=False, refresh_hidden=False)
"""
from __future__ import annotations

import inspect
from typing import Any, NamedTuple, Protocol, runtime_checkable

from ._cursor import Mark

__all__ = ["View", "ViewInfo", "check_view", "refresh_view"]


@runtime_checkable
class View(Protocol):
    """A tab's view: ``widget`` and ``refresh(trainer)``; see the module docstring."""

    widget: Any

    def refresh(self, trainer: Any, *, mark: Mark | None = None) -> None:
        """Bring ``widget`` up to date (``mark``: the panel's mark of this refresh)."""


class ViewInfo(NamedTuple):
    """What the panel knows of one view, found once by :func:`check_view`.

    Attributes:
        takes_mark: ``refresh`` accepts ``mark=`` (it then gets the panel's mark).
        takes_force: ``refresh`` accepts ``force=``.
        refresh_hidden: refresh the view while its tab is hidden too.
    """

    takes_mark: bool
    takes_force: bool
    refresh_hidden: bool


def check_view(view: Any) -> ViewInfo:
    """Check that ``view`` is a :class:`View`; return its :class:`ViewInfo`.

    Raises:
        TypeError: ``view`` has no ``widget`` attribute, its ``widget`` is not an
            ``ipywidgets.Widget``, it has no callable ``refresh``, or ``refresh`` cannot be
            called as ``refresh(trainer)``; the message names what is missing.
    """
    import ipywidgets

    kind = type(view).__name__
    missing = [name for name in ("widget", "refresh") if not hasattr(view, name)]
    if missing:
        raise TypeError(f"a view needs {' and '.join(missing)}: {kind} has no "
                        f"{' and no '.join(f'.{m}' for m in missing)} (a view is an object with .widget, the "
                        "ipywidgets widget shown in its tab, and refresh(trainer), which updates it)")
    if not isinstance(view.widget, ipywidgets.Widget):
        raise TypeError(f"a view's .widget must be an ipywidgets widget: {kind}.widget is "
                        f"{type(view.widget).__name__}")
    if not callable(view.refresh):
        raise TypeError(f"a view's .refresh must be callable as refresh(trainer): {kind}.refresh is "
                        f"{type(view.refresh).__name__}")
    try:
        sig = inspect.signature(view.refresh)
    except (TypeError, ValueError):  # a builtin or C callable: assume refresh(trainer)
        return ViewInfo(False, False, bool(getattr(view, "refresh_hidden", False)))
    try:
        sig.bind(None)
    except TypeError:
        raise TypeError(f"a view's refresh must be callable as refresh(trainer): {kind}.refresh{sig} "
                        "cannot take one argument") from None
    params = sig.parameters
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())

    def takes(name: str) -> bool:
        p = params.get(name)
        return var_kw or (p is not None and p.kind in (inspect.Parameter.KEYWORD_ONLY,
                                                      inspect.Parameter.POSITIONAL_OR_KEYWORD))
    return ViewInfo(takes("mark"), takes("force"), bool(getattr(view, "refresh_hidden", False)))


def refresh_view(view: Any, info: ViewInfo, trainer: Any, mark: Mark, force: bool = False) -> None:
    """Call ``view.refresh`` as ``info`` says it can be called: with ``mark=`` or without, and
    with ``force=True`` when asked and the view takes it."""
    kw: dict[str, Any] = {"mark": mark} if info.takes_mark else {}
    if force and info.takes_force:
        kw["force"] = True
    view.refresh(trainer, **kw)
