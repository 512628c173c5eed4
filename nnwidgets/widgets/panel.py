"""TrainingPanel: controls, status and tabbed views of one Trainer, kept live by ONE thread.

Layout (an ``ipywidgets.VBox``, usable in any layout and in Voilà)::

    controls   Start / Pause / Step / Stop · optimizer · device · sliders
    status     state · progress · steps/s · ETA · overhead · notices and errors
    Tab        Training charts | Gradients | Parameters | Network | Decision boundary

Each tab is a view (:mod:`~nnwidgets.widgets.view`: ``.widget`` to show, ``refresh(trainer)`` to
update, optionally taking the refresh's ``mark=``); ``panel.views`` is the list of ``(title,
view)`` and :meth:`TrainingPanel.add_tab` appends one, checked. Each refresh takes ONE
:class:`~nnwidgets.widgets._cursor.Mark` of the history (on the updater thread) and hands it to
every view it refreshes; each view's cursor turns it into what is new for that view. The Network tab is added
for every model, the Decision boundary tab when the training features have 2 columns.

The updater thread (a daemon, started by the constructor) calls ``refresh`` of the status and the
controls under ``hold_sync()`` at most once per ``update_interval_s`` (≥ 0.2 s, so ≤ 5 Hz), and
of the tab shown at most once per ``view_interval_s`` (1 s), while the run is running; hidden
tabs cost nothing (selecting one wakes the thread). In any other state it checks a cheap signature (state, step, events, settings, frozen
layers) once per ``IDLE_INTERVAL_S`` and refreshes only when something changed, so a finished
run gets one final refresh and then costs almost nothing. A button click wakes it early
(still throttled); the run pausing, stopping or ending wakes it at once (not throttled), so
Pause, Step and Stop show within ~0.1 s, and so does the loop applying a setting (≤ 10 such
early refreshes per second), so a slider's marker shows within ~0.1 s of the loop taking it. An exception raised by a view is written once into the notices box; the
thread keeps going. ``close()`` stops and joins the thread and closes the widgets; it does not
stop training (call ``trainer.stop()`` for that).

Nobody watching: with ``pause_unseen_s`` set (by default only in a Voilà kernel) the panel
holds a hidden :class:`~nnwidgets.widgets.presence.Presence` view that pings the kernel every
few seconds from each page showing it; when a page has shown the panel and then none has
pinged for ``pause_unseen_s`` seconds while the run is running, the updater thread calls
``trainer.pause()`` and says so in the notices. Why only in Voilà: there a kernel belongs to
one page load and a closed page means an abandoned run (the kernel's widget messages keep it
"active", so idle culling alone never removes it; see :mod:`~nnwidgets.widgets.presence`); in
JupyterLab or Notebook a run is expected to go on while its tab is closed.

Output of the training thread (``print``, warnings raised in ``forward``, the loss, a
``collate_fn``) goes into the notices as ``output`` / ``warning`` entries, never into a later
cell (:mod:`~nnwidgets.widgets._thread_output`).
"""
from __future__ import annotations

import collections
import os
import time
import threading
from typing import Any

import ipywidgets as w

from .boundary import DecisionBoundaryView
from .charts import TrainingCharts
from .controls import ControlsView
from .gradients import GradientView
from .network import NetworkView
from .parameters import ParametersView
from .presence import Presence
from .status import StatusView
from ._cursor import Mark
from ._thread_output import route_current_thread, unroute_current_thread
from .view import ViewInfo, check_view, refresh_view

__all__ = ["TrainingPanel", "panel", "MIN_INTERVAL_S", "VIEW_INTERVAL_S", "IDLE_INTERVAL_S", "PAUSE_UNSEEN_S",
           "in_voila"]

MIN_INTERVAL_S = 0.2   # ≤ 5 refreshes per second
VIEW_INTERVAL_S = 1.0  # the tab shown: ≤ 1 refresh per second while running
IDLE_INTERVAL_S = 1.0  # signature checks while nothing runs
PAUSE_UNSEEN_S = 120.0  # "auto" in Voilà: > 60 s, the timer period of a long-hidden Chromium tab
_SHARE_WINDOW_S = 5.0
_SETTING_WAKE_S = 0.1  # at most one early refresh per applied setting this often


def in_voila() -> bool:
    """True in a kernel started by Voilà (it puts ``VOILA_*`` variables in the kernel's
    environment: ``VOILA_BASE_URL`` at start, ``VOILA_KERNEL_ID`` before the notebook runs)."""
    return any(k in os.environ for k in ("VOILA_KERNEL_ID", "VOILA_BASE_URL", "VOILA_REQUEST_URL"))


def _pause_unseen(value: Any) -> float | None:
    if value == "auto":
        return PAUSE_UNSEEN_S if in_voila() else None
    if value is None:
        return None
    if isinstance(value, str) or not float(value) > 0:
        raise ValueError(f"pause_unseen_s must be a number of seconds > 0, None or 'auto', got {value!r}")
    return float(value)


def _two_feature_inputs(trainer: Any) -> Any:
    """The training features ``(N, 2)`` when they can be read without iterating a loader
    (a ``TensorDataset`` behind a DataLoader, or a list of batches); else ``None``."""
    data = trainer.train_data
    x = None
    tensors = getattr(getattr(data, "dataset", None), "tensors", None)
    if tensors:
        x = tensors[0]
    elif isinstance(data, (list, tuple)) and data:
        first = data[0]
        x = first.get("x") if isinstance(first, dict) else first[0] if isinstance(first, (list, tuple)) else None
    shape = getattr(x, "shape", None)
    return x if shape is not None and len(shape) == 2 and shape[1] == 2 else None


def _close_tree(widget: Any) -> None:
    for child in getattr(widget, "children", ()):
        _close_tree(child)
    widget.close()


class TrainingPanel(w.VBox):
    """Live panel for one :class:`~nnwidgets.engine.Trainer` (an ``ipywidgets.VBox``).

    Args:
        trainer: the Trainer to show and steer.
        update_interval_s: seconds between refreshes of the status and controls while running (≥ 0.2).
        view_interval_s: seconds between refreshes of the tab shown while running (≥
            ``update_interval_s``; default 1.0). Each chart update costs the training thread time
            (the GIL, serialising, the browser drawing on the same cores), so the tabs update less
            often than the status line; a click, a tab change and the end of a run refresh at once.
        charts, gradients, parameters: include the Training charts, Gradients and
            Parameters tabs.
        pause_unseen_s: pause a running run when a page showed the panel and none has for this
            many seconds (``None``: never; ``"auto"``, the default: ``PAUSE_UNSEEN_S`` = 120 s
            in a Voilà kernel, else never). Pages ping every ``min(5, pause_unseen_s / 4)`` s.

    Attributes:
        trainer: the Trainer. controls: :class:`ControlsView`. status: :class:`StatusView`.
        views: list of ``(title, view)`` shown as tabs, in order.
        tab: the ``ipywidgets.Tab``. refreshes: number of refreshes done so far.
        pause_unseen_s: the resolved timeout (``None``: off). presence: the
            :class:`~nnwidgets.widgets.presence.Presence`, or ``None`` when off.

    Raises:
        ValueError: ``update_interval_s`` < 0.2, ``view_interval_s`` < ``update_interval_s``,
            or ``pause_unseen_s`` not ``None``, ``"auto"`` or a number > 0.

    Example:
        >>> p = TrainingPanel(Trainer(model, loader, epochs=20))   # doctest: +SKIP
        >>> p                                                      # shows it; press Start  # doctest: +SKIP
    """

    def __init__(self, trainer: Any, *, update_interval_s: float = 0.2, view_interval_s: float = VIEW_INTERVAL_S,
                 charts: bool = True, gradients: bool = True, parameters: bool = True,
                 pause_unseen_s: float | str | None = "auto") -> None:
        if not update_interval_s >= MIN_INTERVAL_S:
            raise ValueError(f"update_interval_s must be >= {MIN_INTERVAL_S} s (at most 5 refreshes per "
                             f"second), got {update_interval_s!r}")
        if not view_interval_s >= update_interval_s:
            raise ValueError(f"view_interval_s must be >= update_interval_s ({update_interval_s} s), "
                             f"got {view_interval_s!r}")
        self.pause_unseen_s = _pause_unseen(pause_unseen_s)
        self.trainer = trainer
        self.update_interval_s, self.view_interval_s = float(update_interval_s), float(view_interval_s)
        self.refreshes = 0
        self.views: list[tuple[str, Any]] = []
        self._infos: dict[int, ViewInfo] = {}  # id(view) -> how to refresh it (check_view)
        self._failed_views: set[tuple[str, str]] = set()
        self._closed, self._wake, self._urgent = threading.Event(), threading.Event(), threading.Event()
        self._shares: collections.deque = collections.deque()
        self.status = StatusView(trainer)
        self.controls = ControlsView(trainer, notify=self.status.log, on_action=self._wake.set)
        for view in (self.status, self.controls):
            self._infos[id(view)] = check_view(view)
        self.tab = w.Tab()
        self.presence = None if self.pause_unseen_s is None else Presence(min(5.0, self.pause_unseen_s / 4))
        self._paused_for: float | None = None
        hidden = [] if self.presence is None else [self.presence.widget]
        super().__init__(children=[self.controls.widget, self.status.widget, self.tab, *hidden])
        tabs: list[tuple[str, Any]] = []
        if charts:
            tabs.append(("Training charts", TrainingCharts))
        if gradients:
            tabs.append(("Gradients", GradientView))
        if parameters:
            tabs.append(("Parameters", lambda: ParametersView(trainer, notify=self.status.log)))
        tabs.append(("Network", lambda: NetworkView(trainer)))
        x = _two_feature_inputs(trainer)
        if x is not None:
            tabs.append(("Decision boundary", lambda: DecisionBoundaryView(trainer, x)))
        for title, factory in tabs:
            try:
                self.add_tab(title, factory())
            except Exception as e:  # noqa: BLE001 - an optional view must not break the panel
                self.status.log(f"the {title} tab could not be built: {type(e).__name__}: {e}")
        self.tab.observe(lambda _: self._wake.set(), "selected_index")  # a tab shown catches up at once
        self._routed: threading.Thread | None = None
        self._setting_woke = -float("inf")  # perf_counter of the last early refresh for a setting
        self._output_handle = self._state_handle(trainer)
        self._setting_handle = self._setting_wake(trainer)
        self._thread = threading.Thread(target=self._run, name="nnwidgets-panel-updater", daemon=True)
        self._thread.start()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """The widget view (ipywidgets'). Once a run has ended (completed, stopped, failed) the
        bundle also carries a static summary (``text/html``: final numbers, loss curve, epoch
        table; ``text/plain``: one line, see :mod:`nnwidgets._summary`), which a saved notebook
        shows where no widget can render (``nbconvert --to html``). In Colab its custom widget
        manager is turned on first (:func:`nnwidgets._frontend.enable_colab_widgets`), with a notice."""
        from .._frontend import enable_colab_widgets
        from .._summary import ENDED
        notice = enable_colab_widgets()
        if notice and not getattr(self, "_colab_noted", False):
            self._colab_noted = True
            self.status.log(notice, kind="notice")
        bundle = super()._repr_mimebundle_(**kwargs)
        if isinstance(bundle, dict) and self.trainer.state in ENDED:
            bundle = {**bundle, **self.static_bundle()}
        return bundle

    def static_bundle(self) -> dict[str, str]:
        """The run as static output, no widget: ``{"text/html": ..., "text/plain": ...}`` (state,
        final numbers, loss curve as SVG, epoch table; see :mod:`nnwidgets._summary`). ``%%train``
        puts it in place of the panel's output when nbclient ran the cell (nobody can steer,
        and a saved widget would need its JavaScript to render)."""
        from .._summary import summary_html, summary_text
        caught = [(k, m) for k, m in reversed(self.status.messages) if k in ("output", "warning")]  # oldest first
        return {"text/html": summary_html(self.trainer, caught), "text/plain": summary_text(self.trainer, caught)}

    def add_tab(self, title: str, view: Any) -> None:
        """Append a tab showing ``view.widget``; ``view.refresh(trainer)`` is then called by the
        updater thread like the built-in views (with ``mark=`` when ``refresh`` takes it; while
        the tab is shown, or always when ``view.refresh_hidden`` is true). See
        :mod:`nnwidgets.widgets.view`.

        Raises:
            TypeError: ``view`` is not a view (no ``.widget`` widget or no ``refresh(trainer)``);
                the message names what is missing.
        """
        info = check_view(view)
        self._infos[id(view)] = info
        self.views.append((title, view))
        self.tab.children = [v.widget for _, v in self.views]
        for i, (t, _) in enumerate(self.views):
            self.tab.set_title(i, t)

    def _state_handle(self, trainer: Any) -> Any:
        """A ``STATE_CHANGED`` handler (it runs on the thread that trains) that

        * wakes the updater at once when the run pauses, stops or ends, so Pause, Step and Stop
          show within a frame or two (they waited for the 0.2 s throttle, and a Step for the
          1 s idle poll: ~1.2 s); not for ``running``, so a Step does not flash "running";
        * routes the training thread's ``print`` and warnings into the notices (kinds
          ``"output"`` / ``"warning"``; see :mod:`~nnwidgets.widgets._thread_output`) from its
          start to its end. A blocking ``fit()`` on the main thread keeps its output in its cell.
        """
        from ..events import Event

        def on_state(_trainer: Any, new: str = "", **_: Any) -> None:
            if new != "running":
                self._wake.set()
                self._urgent.set()
            if threading.current_thread() is threading.main_thread():
                return
            if new == "running":
                self._routed = threading.current_thread()
                route_current_thread(lambda kind, text: self.status.log(text, kind=kind))
            elif new in ("completed", "stopped", "failed"):
                unroute_current_thread()
        on = getattr(trainer, "on", None)
        return on(Event.STATE_CHANGED, on_state) if on is not None else None

    def _setting_wake(self, trainer: Any) -> Any:
        """A ``SETTING_CHANGED`` handler (on the thread that trains, once per applied ``set()``)
        that wakes the updater at once, so the chart's marker and the slider show the setting
        within a frame or two of the loop applying it. Before, a ``set()`` from code waited for
        the tab's next refresh (up to 1 s), and a slider's own wake only came at the updater's next
        0.2 s turn: slider → marker in JupyterLab while the quickstart trains, median 0.15-0.20 s
        before, 0.095 s after. At most one such early refresh per ``_SETTING_WAKE_S``; closer
        changes (a ``set()`` per step from code) wait for the throttled refresh."""
        from ..events import Event

        def on_setting(_trainer: Any, **_: Any) -> None:
            self._wake.set()
            now = time.perf_counter()
            if now - self._setting_woke >= _SETTING_WAKE_S:
                self._setting_woke = now
                self._urgent.set()
        on = getattr(trainer, "on", None)
        return on(Event.SETTING_CHANGED, on_setting) if on is not None else None

    # ---------------------------------------------------------------- the updater thread
    def _signature(self) -> tuple:
        t = self.trainer
        return (t.state, t.step, len(t.history.event_records), tuple(t.settings.values()),
                id(t.optimizer), str(t.device), tuple(p.requires_grad for p in t.model.parameters()))

    def _run(self) -> None:
        last_sig, last_refresh, last_views = None, -float("inf"), -float("inf")
        tick = (time.perf_counter(), time.thread_time())
        while not self._closed.is_set():
            kicked = self._wake.is_set()
            self._wake.clear()
            running = False
            try:
                running = self.trainer.state == "running"
                sig = None if running else self._signature()
                if running or kicked or sig != last_sig:
                    now = time.perf_counter()
                    views = kicked or not running or now - last_views >= self.view_interval_s - 1e-3
                    self.refresh(views=views)
                    last_refresh = time.perf_counter()
                    last_views = now if views else last_views
                    last_sig = None if running else self._signature()
                if running:
                    self._pause_if_unseen()
            except Exception as e:  # noqa: BLE001 - the thread must outlive any error
                self._log_once("panel", e)
            tick = self._account(tick, running)
            gap = max(0.0, last_refresh + self.update_interval_s - time.perf_counter())
            self._urgent.wait(gap)  # a pause/stop/end of the run cuts the throttle short
            self._urgent.clear()
            if self._closed.is_set():
                break
            if self.trainer.state != "running" and not self._wake.is_set():
                self._wake.wait(IDLE_INTERVAL_S)

    def _pause_if_unseen(self) -> None:
        """Pause the running run when a page showed the panel and none has for ``pause_unseen_s``."""
        unseen = None if self.presence is None else self.presence.unseen_for()
        if unseen is not None and unseen > self.pause_unseen_s and self._paused_for != self.presence.last_ping:
            self._paused_for = self.presence.last_ping  # once per silence: a Resume from Python is obeyed
            self.trainer.pause()
            self.status.log(f"Paused: no page has shown this panel for {unseen:.0f} s (closed or lost). "
                            "Resume continues from there.", kind="notice")

    def _account(self, since: tuple[float, float], running: bool) -> tuple[float, float]:
        """CPU share of this thread while the run is running: the thread's CPU seconds
        (``time.thread_time()``) over the wall seconds of the same loop turns, summed over the
        turns of the last ``_SHARE_WINDOW_S`` s of running; a turn is counted only when the run
        was running at its refresh. So the share is ≤ 1 (one thread) and time when the trainer
        is idle, paused or done is never counted: ``status.ui_share`` then keeps the value of
        the run's last seconds. (It was the CPU of one refresh over that refresh's own wall time
        whenever the previous turn was > 5 s old, ~100 % after a busy kernel.)

        Args:
            since: ``(perf_counter, thread_time)`` at the start of this turn.
            running: the trainer's state was ``"running"`` in this turn.

        Returns:
            ``(perf_counter, thread_time)`` now: the start of the next turn.
        """
        now = (time.perf_counter(), time.thread_time())
        if running:
            shares = self._shares
            shares.append((now[0], now[0] - since[0], now[1] - since[1]))  # (end, wall s, cpu s)
            while len(shares) > 1 and now[0] - shares[0][0] > _SHARE_WINDOW_S:
                shares.popleft()
            wall = sum(w for _, w, _ in shares)
            self.status.ui_share = min(1.0, sum(c for *_, c in shares) / wall) if wall > 0 else 0.0
        return now

    def visible_views(self) -> list[tuple[str, Any]]:
        """``(title, view)`` of the tab shown now (none when no tab is selected)."""
        i = self.tab.selected_index
        return [self.views[i]] if i is not None and 0 <= i < len(self.views) else []

    def _views_to_refresh(self) -> list[tuple[str, Any]]:
        """The tab shown, and every other view that asked for ``refresh_hidden``."""
        shown = self.visible_views()
        return [(t, v) for t, v in self.views
                if any(v is s for _, s in shown) or self._info(v).refresh_hidden]

    def _info(self, view: Any) -> ViewInfo:
        info = self._infos.get(id(view))
        if info is None:  # put into self.views without add_tab
            info = self._infos[id(view)] = check_view(view)
        return info

    def refresh(self, every_tab: bool = False, views: bool = True) -> None:
        """Refresh the status, the controls and the tab shown (the updater thread calls this;
        safe to call by hand). Hidden tabs cost nothing: a tab catches up from the history when
        it is selected (the selection wakes the updater). ``every_tab=True`` refreshes all tabs,
        ``views=False`` none."""
        t = self.trainer
        views = (self.views if every_tab else self._views_to_refresh()) if views else []
        mark = Mark.of(t.history)  # once per refresh, shared by every view refreshed now
        force = t.state != "running"  # paused or ended: the last refresh draws past the views' throttles
        with self.hold_sync():
            for title, view in [("Status", self.status), ("Controls", self.controls)] + views:
                try:
                    with view.widget.hold_sync():
                        refresh_view(view, self._info(view), t, mark, force)
                except Exception as e:  # noqa: BLE001 - one broken view must not stop the others
                    self._log_once(title, e)
        self.refreshes += 1

    def _log_once(self, title: str, error: BaseException) -> None:
        key = (title, f"{type(error).__name__}: {error}")
        if key not in self._failed_views:
            self._failed_views.add(key)
            self.status.log(f"refreshing the {title} view failed: {key[1]} (the panel keeps updating the others)",
                            kind="error")

    def supersede(self, message: str) -> None:
        """Mark this panel as replaced by a newer one training the same model: ``message`` goes
        into the notices and Start/Pause/Step/Stop stay disabled (two threads must never train
        one model). Called by ``%%train``; the charts stay readable."""
        self.controls.superseded = True
        self.status.log(message)
        self._wake.set()

    def close(self) -> None:
        """Stop and join the updater thread (≤ 1 s), close the widgets. Training goes on."""
        for flag in (getattr(self, "_closed", None), getattr(self, "_wake", None), getattr(self, "_urgent", None)):
            if flag is not None:  # absent when __init__ raised
                flag.set()
        for name in ("_output_handle", "_setting_handle"):
            handle = getattr(self, name, None)
            if handle is not None:
                handle.remove()
        if getattr(self, "_routed", None) is not None:
            unroute_current_thread(self._routed)  # a closed panel takes no more output
        thread = getattr(self, "_thread", None)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=1.0)
        for _, view in [("Status", getattr(self, "status", None)), ("Controls", getattr(self, "controls", None))] \
                + list(getattr(self, "views", [])):
            if view is not None:
                try:
                    view.close() if hasattr(view, "close") else _close_tree(view.widget)
                except Exception:  # noqa: BLE001 - closing must always finish
                    pass
        if getattr(self, "tab", None) is not None:
            self.tab.close()
        if getattr(self, "presence", None) is not None:
            self.presence.close()
        super().close()


def panel(model: Any, train_data: Any, val_data: Any = None, **trainer_kwargs: Any) -> TrainingPanel:
    """Build a :class:`~nnwidgets.engine.Trainer` and its :class:`TrainingPanel`; nothing starts
    until Start is pressed (or ``panel.trainer.start()`` is called).

    Args:
        model, train_data, val_data, **trainer_kwargs: as for ``Trainer``.

    Example:
        >>> p = panel(model, train_loader, val_loader, epochs=30, lr=0.05)   # doctest: +SKIP
        >>> p                                                                 # doctest: +SKIP
    """
    from ..engine import Trainer
    return TrainingPanel(Trainer(model, train_data, val_data, **trainer_kwargs))
