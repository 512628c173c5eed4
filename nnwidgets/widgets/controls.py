"""Run buttons and live-setting sliders: the only view that steers the loop.

Every observer here calls a public :class:`~nnwidgets.engine.Trainer` method (``start``,
``resume``, ``pause``, ``step_once``, ``stop``, ``set``, ``set_optimizer``, ``to``) and nothing
else; the Trainer validates, stores the request under its lock and the training thread applies it
between two optimizer steps. Errors (``ValueError`` from ``set``, ``RuntimeError`` from ``to``)
are passed to ``notify`` (the panel's notices box), never raised into the kernel.

Feedback loops: :meth:`ControlsView.refresh` writes a widget only when the Trainer's value
changed since the previous refresh (a change made by the engine, a scheduler, or
``trainer.set()`` from code), and it writes under a per-thread guard that the observers check,
so following the Trainer never echoes a ``set()`` back.

Weight decay can be 0, which a log slider cannot show: an "apply" checkbox sits next to the
slider. Unchecked means ``weight_decay=0`` and the slider is greyed out (disabled) with a tooltip
saying so; checking it applies the slider's value (a value set on the slider from code also
checks it).
"""
from __future__ import annotations

import contextlib
import math
import threading
from typing import Any, Callable

import ipywidgets as w
import torch

from .._names import OPTIMIZER_LABELS
from ..engine.control import ACTIONS
from ..hyperparams import dropout_modules
from ._cursor import Mark

__all__ = ["ControlsView", "available_devices", "log_range", "OPTIMIZER_CHOICES", "BUTTON_STATES", "LOG_STEP"]

OPTIMIZER_CHOICES = tuple((label, name) for name, label in OPTIMIZER_LABELS.items())
_BUTTONS = ("start", "pause", "step", "stop")
# (start, pause, step, stop) enabled per Trainer state: read from the engine's table
BUTTON_STATES = {state: tuple(a in actions for a in _BUTTONS) for state, actions in ACTIONS.items()}
NO_DROPOUT = ("no nn.Dropout in this model: add nn.Dropout(p) after a hidden layer "
              "to tune the dropout probability")


def available_devices() -> list[str]:
    """``["cpu"]`` plus ``"cuda:N"`` for each visible GPU and ``"mps"`` where available."""
    out = ["cpu"]
    if torch.cuda.is_available():
        out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append("mps")
    return out


LOG_STEP = 0.02  # log sliders move in steps of 10**0.02 (x1.047); ~1 px per step at SLIDER_WIDTH
SLIDER_WIDTH = "460px"


def log_range(value: float | None, lo: float, hi: float) -> tuple[float, float]:
    """Exponent range ``(min, max)`` of a base-10 log slider: ``[lo, hi]`` widened to whole
    decades so that it holds ``value`` (a learning rate of 1e6 gets ``max = 6``; without it the
    slider showed 1.0e+0 while the optimizer used 1e6). ``None`` or ``value <= 0``: ``(lo, hi)``."""
    if value is None or not value > 0 or not math.isfinite(value):
        return lo, hi
    e = math.log10(value)
    return min(lo, math.floor(e + 1e-9)), max(hi, math.ceil(e - 1e-9))


def _device_name(device: Any) -> str:
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        return f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cuda:0"
    return str(dev)


class ControlsView:
    """Start / Pause / Step / Stop, learning rate, momentum, weight decay, dropout ``p``,
    optimizer and device pickers for one Trainer.

    Args:
        trainer: the :class:`~nnwidgets.engine.Trainer` to steer.
        notify: ``notify(message)`` shows an error or notice to the user (default: ignored).
        on_action: called after every button click or setting request (the panel uses it to
            refresh soon).

    Attributes:
        widget: the ``ipywidgets.VBox`` to place in a layout.
        start_button, pause_button, step_button, stop_button: ``ipywidgets.Button``.
        reinitialize_button: ``ipywidgets.Button``: :meth:`Trainer.reinitialize` (fresh weights),
            enabled where the optimizer and device may change (not while running).
        lr: ``FloatLogSlider`` (1e-5..1, base 10, widened by whole decades to hold the Trainer's
            value, see :func:`log_range`; steps of ``LOG_STEP`` = 0.02 in log10).
            momentum: ``FloatSlider`` (0..0.99).
        weight_decay: ``FloatLogSlider`` (1e-6..1, widened likewise) with ``weight_decay_on``
            (``Checkbox`` "apply"; unchecked: weight decay 0, slider disabled).
        dropout: ``FloatSlider`` (0..0.9), disabled with ``dropout_note`` when the model has
            no dropout layer.
        optimizer: ``Dropdown`` (sgd/adam/adamw/rmsprop). device: ``Dropdown``.

    Example:
        >>> view = ControlsView(trainer)          # doctest: +SKIP
        >>> view.lr.value = 0.05                  # same as trainer.set(lr=0.05)  # doctest: +SKIP
    """

    title = "Controls"

    def __init__(self, trainer: Any, notify: Callable[[str], None] | None = None,
                 on_action: Callable[[], None] | None = None) -> None:
        self.trainer = trainer
        self.superseded = False  # set by TrainingPanel.supersede: the buttons stay off
        self._notify = notify or (lambda message: None)
        self._on_action = on_action or (lambda: None)
        self._local = threading.local()
        self._seen: dict[str, Any] = {}
        btn = lambda d, icon, tip: w.Button(description=d, icon=icon, tooltip=tip,  # noqa: E731
                                             layout=w.Layout(width="90px"))
        self.start_button = btn("Start", "play", "start training, or resume a paused run")
        self.pause_button = btn("Pause", "pause", "pause at the next step boundary")
        self.step_button = btn("Step", "step-forward", "run exactly one optimizer step, then pause")
        self.stop_button = btn("Stop", "stop", "stop within one step; the model keeps its last completed step")
        self.start_button.on_click(lambda _: self._act(self._start))
        self.pause_button.on_click(lambda _: self._act(trainer.pause))
        self.step_button.on_click(lambda _: self._act(trainer.step_once))
        self.stop_button.on_click(lambda _: self._act(trainer.stop))
        self.reinitialize_button = w.Button(description="Reinitialize", icon="refresh", layout=w.Layout(width="120px"),
                                            tooltip="fresh weights (each layer's reset_parameters()), optimizer state "
                                                    "cleared; step count and history go on")
        self.reinitialize_button.on_click(lambda _: self._act(trainer.reinitialize))

        style = {"description_width": "110px"}
        wide = w.Layout(width=SLIDER_WIDTH)
        s = trainer.settings
        lo, hi = log_range(s["lr"], -5, 0)
        self.lr = w.FloatLogSlider(base=10, min=lo, max=hi, value=s["lr"], step=LOG_STEP, readout_format=".2e",
                                   description="learning rate", continuous_update=False, style=style, layout=wide)
        self.momentum = w.FloatSlider(value=min(s["momentum"] or 0.0, 0.99), min=0.0, max=0.99, step=0.01,
                                      readout_format=".2f", description="momentum", continuous_update=False,
                                      style=style, layout=w.Layout(width=SLIDER_WIDTH))
        wd = s["weight_decay"] or 0.0
        lo, hi = log_range(wd, -6, 0)
        self.weight_decay = w.FloatLogSlider(base=10, min=lo, max=hi, value=wd if wd > 0 else 1e-4, step=LOG_STEP,
                                             readout_format=".2e", description="weight decay",
                                             continuous_update=False, style=style, layout=w.Layout(width=SLIDER_WIDTH))
        self.weight_decay_on = w.Checkbox(value=wd > 0, description="apply", indent=False,
                                          tooltip="apply this weight decay; unchecked: weight_decay = 0",
                                          layout=w.Layout(width="70px"))
        self._show_weight_decay_state(s["weight_decay"])
        self.dropout = w.FloatSlider(value=s["dropout"] or 0.0, min=0.0, max=0.9, step=0.05, readout_format=".2f",
                                     description="dropout p", continuous_update=False, style=style,
                                     layout=w.Layout(width=SLIDER_WIDTH))
        self.dropout_note = w.Label()
        if not dropout_modules(trainer.model):
            self.dropout.disabled = True
            self.dropout.tooltip = self.dropout_note.value = NO_DROPOUT
        self.optimizer = w.Dropdown(options=list(OPTIMIZER_CHOICES), description="optimizer", style=style,
                                    layout=w.Layout(width="240px"))
        self.device = w.Dropdown(options=available_devices(), description="device", style=style,
                                 layout=w.Layout(width="240px"))
        for name in ("lr", "momentum", "dropout"):
            getattr(self, name).observe(self._setting_observer(name), names="value")
        self.weight_decay.observe(self._on_weight_decay, names="value")
        self.weight_decay_on.observe(self._on_weight_decay, names="value")
        self.optimizer.observe(self._on_optimizer, names="value")
        self.device.observe(self._on_device, names="value")

        buttons = w.HBox([self.start_button, self.pause_button, self.step_button, self.stop_button])
        wrap = w.Layout(flex_flow="row wrap")
        self.widget = w.VBox([
            w.HBox([buttons, self.optimizer, self.device, self.reinitialize_button], layout=wrap),
            w.HBox([self.lr, self.momentum], layout=wrap),
            w.HBox([self.weight_decay, self.weight_decay_on, self.dropout, self.dropout_note], layout=wrap),
        ])
        self.refresh(trainer)

    # ---------------------------------------------------------------- user actions
    @contextlib.contextmanager
    def _syncing(self):
        """Widget writes made inside come from the Trainer: observers on this thread ignore them."""
        self._local.syncing = True
        try:
            yield
        finally:
            self._local.syncing = False

    def _quiet(self) -> bool:
        return getattr(self._local, "syncing", False)

    def _act(self, action: Callable[[], Any]) -> None:
        try:
            action()
        except (RuntimeError, ValueError, KeyError) as e:
            self._notify(str(e))
        self._on_action()

    def _start(self) -> None:
        state = self.trainer.state
        if state == "paused":
            self.trainer.resume()
        elif state != "running":
            self.trainer.start()
        self.start_button.disabled = True  # until the next refresh shows the new state

    def _request(self, name: str, value: float) -> None:
        try:
            self.trainer.set(**{name: value})
        except ValueError as e:
            self._notify(str(e))
            self._seen.pop(name, None)  # the next refresh puts the Trainer's value back
        self._on_action()

    def _setting_observer(self, name: str) -> Callable[[dict], None]:
        def observer(change: dict) -> None:
            if not self._quiet():
                self._request(name, change["new"])
        return observer

    def _on_weight_decay(self, change: dict) -> None:
        if self._quiet():
            return
        if change["owner"] is self.weight_decay and not self.weight_decay_on.value:
            with self._syncing():
                self.weight_decay_on.value = True  # a value put on the slider turns weight decay on
        self._show_weight_decay_state(self.trainer.settings["weight_decay"])
        self._request("weight_decay", self.weight_decay.value if self.weight_decay_on.value else 0.0)

    def _on_optimizer(self, change: dict) -> None:
        if self._quiet() or change["new"] not in dict(OPTIMIZER_CHOICES).values():
            return
        self._act(lambda: self.trainer.set_optimizer(change["new"]))
        self._seen.pop("optimizer", None)

    def _on_device(self, change: dict) -> None:
        if not self._quiet():
            self._act(lambda: self.trainer.to(change["new"]))
            self._seen.pop("device", None)

    # ---------------------------------------------------------------- following the Trainer
    def refresh(self, trainer: Any, mark: Mark | None = None) -> None:
        """Enable/disable by state; move a widget only where the Trainer's value changed
        (``mark``, the panel's :class:`~nnwidgets.widgets._cursor.Mark`, is not needed here)."""
        state = trainer.state
        for button, action in zip((self.start_button, self.pause_button, self.step_button, self.stop_button), _BUTTONS):
            button.disabled = self.superseded or not trainer.allowed(action)
        self.start_button.description = "Resume" if state == "paused" else "Start"
        self.optimizer.disabled = self.device.disabled = not trainer.allowed("configure")
        self.reinitialize_button.disabled = self.superseded or not trainer.allowed("configure")
        s = trainer.settings
        kind = type(trainer.optimizer).__name__
        with self._syncing():
            self._follow("optimizer", kind, self._show_optimizer)
            self._follow("device", _device_name(trainer.device), self._show_device)
            self._follow("lr", s["lr"], lambda v: self._show_log(self.lr, v))
            self._follow("momentum", s["momentum"], lambda v: self._show_optional(
                self.momentum, v, f"{kind} has no momentum setting"))
            self._follow("weight_decay", s["weight_decay"], self._show_weight_decay)
            if s["dropout"] is not None:
                self._follow("dropout", s["dropout"], lambda v: setattr(self.dropout, "value", v))

    def _follow(self, name: str, value: Any, show: Callable[[Any], None]) -> None:
        if name in self._seen and self._seen[name] == value:
            return
        self._seen[name] = value
        show(value)

    @staticmethod
    def _show_optional(slider: w.Widget, value: float | None, reason: str) -> None:
        slider.disabled = value is None
        slider.tooltip = reason if value is None else None
        slider.value = slider.min if value is None else min(max(value, slider.min), slider.max)

    def _show_weight_decay(self, value: float | None) -> None:
        if value is not None:
            self.weight_decay_on.value = value > 0
            if value > 0:
                self._show_log(self.weight_decay, value)
        self._show_weight_decay_state(value)

    def _show_weight_decay_state(self, value: float | None) -> None:
        """Grey the slider out unless weight decay is applied; both off without the setting."""
        self.weight_decay_on.disabled = value is None
        self.weight_decay.disabled = value is None or not self.weight_decay_on.value
        if value is None:
            self.weight_decay.tooltip = f"{type(self.trainer.optimizer).__name__} has no weight_decay setting"
        elif not self.weight_decay_on.value:
            self.weight_decay.tooltip = "weight decay is off (0): check 'apply' to use this value"
        else:
            self.weight_decay.tooltip = None

    @staticmethod
    def _show_log(slider: w.FloatLogSlider, value: float) -> None:
        """Widen the slider's range to hold ``value`` first, so the value is not clipped."""
        lo, hi = log_range(value, slider.min, slider.max)
        with slider.hold_sync():
            slider.min, slider.max = lo, hi
            slider.value = value

    def _show_optimizer(self, kind: str) -> None:
        key = kind.lower()
        names = dict(OPTIMIZER_CHOICES).values()
        if key not in names:
            self.optimizer.options = list(OPTIMIZER_CHOICES) + [(f"{kind} (custom)", key)]
        elif len(self.optimizer.options) != len(OPTIMIZER_CHOICES):
            self.optimizer.options = list(OPTIMIZER_CHOICES)
        self.optimizer.value = key

    def _show_device(self, name: str) -> None:
        if name not in self.device.options:
            self.device.options = list(self.device.options) + [name]
        self.device.value = name
