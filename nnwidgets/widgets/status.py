"""Run status: state, progress with ETA, steps/s, overhead, and the notices/errors box.

Everything the user or the run wrote (notices, error messages, module names) is inserted as
text: the HTML widgets here get ``html.escape``d strings only.

Where the numbers come from:

* ``train loss``: the mean of the newest ``LOSS_WINDOW`` (50) finite per-step training losses
  (one step's mini-batch loss is too noisy to read), recomputed only when steps were added;
  after ``trainer.reinitialize()`` (its ``weights reinitialized`` event is a notices entry) the
  old numbers read ``before reinitialize: ...`` until a step ran, then ``train loss ... (since
  reinitialize)`` until the next epoch record; the train loss leaves out the old weights' steps;
* ``val loss`` and the first validation metric (``val accuracy``, ``val r2``, ...): the newest
  epoch record; without validation data the first training metric (``accuracy``). They go
  first in the same text widget as the progress, so no widget message is added per refresh;
* ``validating 3/12 batches`` (and the state ``validating``): while the run is running and
  ``trainer.phase == "validating"``, from ``trainer.val_progress`` (see :func:`validating`);
* progress: ``trainer.step`` out of ``steps_per_epoch × target_epochs`` (epochs when the
  loader has no length);
* ``epoch k/N``: the epoch in progress, or the next one to run, counted from 1:
  ``k = min(trainer.epoch + 1, N)`` with ``trainer.epoch`` the completed epochs and
  ``N = trainer.target_epochs``. One formula in every state, so pausing does not change it
  (it showed 6/30 running and 5/30 paused at the same point); a completed run shows N/N;
* where a run stopped or paused (``stopped``: Stop or an interrupt): the newest matching state
  event of the engine (``"interrupted at epoch 0, step 2"``), shown with the same ``epoch k/N``;
* steps/s: optimizer steps per second of wall time over the last ``RATE_WINDOW_S`` seconds,
  sampled at each refresh from ``trainer.step`` (O(1) per refresh; ``History`` has no O(1)
  reader for the newest ``time_s``); before two samples exist while running, the average of
  the newest epoch record (``step / time_s``);
* ETA: remaining steps ÷ steps/s;
* overhead: ``trainer.speed.overhead``, the slowdown the user gets over the last ~5 s of
  running: ``1 − steps/s ÷ the rate the loop reaches alone`` (the loop thread's CPU time less
  nnwidgets' own work; see :mod:`nnwidgets._speed`), so waiting for the panel's thread, the
  kernel or the browser counts, with the rate alone and the loop's torch threads in brackets.
  :attr:`StatusView.ui_share` keeps the panel updater thread's own CPU share (``time.thread_time()``
  deltas ÷ wall-clock deltas over the last seconds of running, ≤ 1) for diagnosis.
"""
from __future__ import annotations

import collections
import html
import math
import threading
import time
from typing import Any

import ipywidgets as w
import numpy as np

from ._cursor import Cursor, Mark

__all__ = ["StatusView", "NOTICE_KINDS", "epoch_shown", "format_duration", "validating"]

NOTICE_KINDS = ("notice", "error", "nonfinite")
RATE_WINDOW_S = 5.0
LOSS_WINDOW = 50
_NOT_METRICS = {"epoch", "step", "loss", "val_loss", "lr", "time_s"}
_COLORS = {"output": "#333333", "warning": "#8a6d00", "notice": "#8a6d00", "error": "#b00020", "nonfinite": "#b00020",
           "diverged": "#b00020", "reinitialized": "#8a6d00", "panel": "#555555"}
_STATE_COLORS = {"running": "#2e7d32", "paused": "#8a6d00", "failed": "#b00020", "completed": "#1565c0"}
_FAILED_HINT = ("The history is kept and the model holds the weights of the last completed step. "
                "Fix the cause, then press Start to continue from there.")


def _is_restart(event: dict) -> bool:
    """``trainer.reinitialize()``'s event: ``setting`` ``weights`` → ``reinitialized``."""
    return event["kind"] == "setting" and event["name"] == "weights" and event.get("new") == "reinitialized"


def _label(event: dict) -> str:
    """The bold word of a notices entry: the event kind, but ``diverged`` for a finite blow-up
    (kind ``nonfinite``, ``new="diverged"``) and ``reinitialized`` for fresh weights."""
    if event["kind"] == "nonfinite" and event.get("new") == "diverged":
        return "diverged"
    return "reinitialized" if _is_restart(event) else event["kind"]


def epoch_shown(epoch: int, target: int) -> int:
    """``epoch k/N`` of the status line: the epoch in progress or next to run, from 1
    (``trainer.epoch`` counts completed epochs), capped at ``N = target``."""
    return min(int(epoch) + 1, max(int(target), 1))


def validating(trainer: Any, state: str) -> list[str]:
    """``["validating 3/12 batches"]`` while a running trainer's validation pass runs, else ``[]``.

    Reads ``trainer.phase`` (``"training"``, ``"validating"`` or ``None``) and
    ``trainer.val_progress`` (``(batches done, total or None)``), both optional: an engine
    without them shows nothing. ``"validating 3 batches"`` when the loader has no length.
    """
    if state != "running" or getattr(trainer, "phase", None) != "validating":
        return []
    done, total = getattr(trainer, "val_progress", None) or (0, None)
    return [f"validating {done:,}/{total:,} batches" if total else f"validating {done:,} batches"]


def format_duration(seconds: float) -> str:
    """``3725.2`` → ``"1:02:05"``; ``65`` → ``"1:05"``; non-finite or negative → ``"–"``."""
    if not (seconds >= 0) or seconds == float("inf"):
        return "–"
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


class StatusView:
    """State line, progress bar, rates and the newest-first notices/errors box.

    Args:
        trainer: the Trainer shown.
        max_notices: newest entries kept in the box.

    Attributes:
        widget: the ``ipywidgets.VBox``.
        state: ``HTML`` with the state name. progress: ``IntProgress``. info: ``HTML`` (escaped text, it wraps) with
            train loss, val loss and metric, epoch/step, steps/s, ETA and overhead. failure: ``HTML``, the error of a failed run.
        halted: ``HTML``, where a stopped or paused run stopped (``"Interrupted at step 2 (epoch
            1/30). Start continues from there."``), else empty.
        notices: ``HTML``, escaped entries newest first.
        ui_share: panel updater CPU share (0..1), written by the panel before each refresh.
        steps_per_s, eta_s: the last computed values (``None`` when unknown).
    """

    title = "Status"

    def __init__(self, trainer: Any, max_notices: int = 50) -> None:
        self.max_notices = int(max_notices)
        self.ui_share = 0.0
        self.steps_per_s: float | None = None
        self.eta_s: float | None = None
        self._lock = threading.Lock()
        self._items: list[tuple[str, str]] = []  # (kind, text) in arrival order
        self._added = 0  # entries ever added (the box is rebuilt when it changes)
        self.cursor = Cursor()  # what of the history this view has read
        self._shown_items = -1
        self._samples: collections.deque = collections.deque()
        self._loss_text = ""
        self._restart: tuple[int, int] | None = None  # (step, epoch records) of a reinitialize not yet trained on
        self._floor = 0  # the train loss is of steps from here on (the last reinitialize)
        self.state = w.HTML()
        self.progress = w.IntProgress(value=0, min=0, max=1, description="progress",
                                      layout=w.Layout(width="240px"))
        # HTML, not Label: a Label never wraps, and the numbers cut off at 900-1400 px wide
        self.info = w.HTML(layout=w.Layout(flex="1 1 320px", margin="0 0 0 8px"))
        self.failure = w.HTML()
        self.halted = w.HTML()
        self.notices = w.HTML(layout=w.Layout(max_height="140px", overflow="auto"))
        line = w.HBox([self.state, self.progress, self.info], layout=w.Layout(flex_flow="row wrap", align_items="center"))
        self.widget = w.VBox([line, self.halted, self.failure,
                              self.notices])
        self.refresh(trainer)

    def log(self, message: str, kind: str = "panel") -> None:
        """Add a message of the panel's own (a rejected setting, a view that failed) or a line the
        training thread printed (``kind="output"``/``"warning"``); any thread. The newest
        ``4 × max_notices`` entries are kept."""
        with self._lock:
            self._items.append((kind, str(message)))
            self._added += 1
            if len(self._items) > 4 * self.max_notices:
                del self._items[:-self.max_notices]

    @property
    def messages(self) -> list[tuple[str, str]]:
        """``(kind, text)`` of every entry, newest first (text unescaped)."""
        with self._lock:
            return list(reversed(self._items))

    def refresh(self, trainer: Any, mark: Mark | None = None) -> None:
        """Read the trainer and history; rebuild the notices box only when entries were added.

        ``mark``: the panel's :class:`~nnwidgets.widgets._cursor.Mark` of this refresh (by
        hand: the history as it stands); the view's cursor says which events are new."""
        ch = self.cursor.advance(mark if mark is not None else trainer.history)
        state = trainer.state
        color = _STATE_COLORS.get(state, "#333333")
        shown = "validating" if state == "running" and getattr(trainer, "phase", None) == "validating" else state
        self.state.value = f'<b style="color:{color}">{html.escape(shown)}</b>'
        self._restarted(ch)
        self._progress(trainer, state, ch)
        events = ch.now.events
        self._events(ch.new_events)
        self._halted(trainer, state, events)
        self._failure(trainer, state, events)

    # ---------------------------------------------------------------- pieces
    def _rate(self, trainer: Any, state: str, epochs: list[dict]) -> float | None:
        now, step = time.perf_counter(), trainer.step
        if state != "running":
            self._samples.clear()
            return None
        self._samples.append((now, step))
        while len(self._samples) > 2 and now - self._samples[0][0] > RATE_WINDOW_S:
            self._samples.popleft()
        t0, s0 = self._samples[0]
        if now - t0 > 0.1 and step > s0:
            return (step - s0) / (now - t0)
        if epochs and epochs[-1].get("time_s"):
            return epochs[-1]["step"] / epochs[-1]["time_s"]
        return None

    def _progress(self, trainer: Any, state: str, ch: Any) -> None:
        spe, target, step, epoch = trainer.steps_per_epoch, trainer.target_epochs, trainer.step, trainer.epoch
        if spe:
            total, done = max(1, spe * target), min(step, spe * target)
        else:
            total, done = max(1, target), min(epoch, target)
        with self.progress.hold_sync():
            self.progress.max = total
            self.progress.value = done
        rate = self._rate(trainer, state, ch.now.epochs)
        self.steps_per_s = rate
        self.eta_s = (spe * target - step) / rate if rate and spe else None
        parts = self._numbers(ch) + validating(trainer, state) + [
            f"epoch {epoch_shown(epoch, target)}/{target}", f"step {step:,}" + (f"/{spe * target:,}" if spe else "")]
        if rate:
            parts.append(f"{rate:,.1f} steps/s")
        if self.eta_s is not None:
            parts.append(f"ETA {format_duration(self.eta_s)}")
        speed = getattr(trainer, "speed", None)
        if speed is not None:
            threads = f", {speed.threads} thread{'s' * (speed.threads != 1)}" if speed.threads else ""
            parts.append(f"overhead {100 * speed.overhead:.1f} % (alone ~{speed.alone_steps_per_s:,.0f} steps/s{threads})")
        self.info.value = html.escape(" · ".join(parts))

    def _restarted(self, ch: Any) -> None:
        """Note a ``trainer.reinitialize()`` among the new events (a ``setting`` event ``weights``
        → ``reinitialized``): the numbers shown are the old weights' until the fresh ones train."""
        if ch.reset and (ch.new_history or self._floor > ch.now.n_steps):
            self._restart, self._floor = None, 0  # another history, or cut back to before the restart
        for e in ch.new_events:
            if _is_restart(e):
                self._restart = (min(int(e["step"]), int(ch.now.n_steps)), len(ch.now.epochs))
                self._loss_text = ""  # recomputed below, marked as from before the restart

    def _numbers(self, ch: Any) -> list[str]:
        """``["train loss 0.231", "val loss 0.245", "val accuracy 0.967"]`` (those known),
        recomputed only when the cursor's :class:`~nnwidgets.widgets._cursor.Changes` ``ch``
        has new steps or epochs (or a reset).

        After ``trainer.reinitialize()`` and until the next epoch record: the old numbers marked
        ``"before reinitialize: ..."`` while no step ran on the fresh weights, then only the
        train loss of the steps since the restart."""
        n, records = ch.now.n_steps, ch.now.epochs
        if self._restart is not None and len(records) > self._restart[1]:
            self._floor, self._restart, self._loss_text = self._restart[0], None, ""  # an epoch of the fresh weights
        if self._restart is not None and (ch.new_steps or not self._loss_text):
            since = self._restart[0]
            if n > since:
                recent = ch.now.history.loss_since(max(since, n - LOSS_WINDOW))
                recent = recent[np.isfinite(recent)]
                self._loss_text = (f"train loss {float(recent.mean()):.3g} (since reinitialize)" if len(recent)
                                   else "reinitialized")
            else:
                old = self._old_numbers(ch.now.history, n, records, self._floor)
                self._loss_text = f"before reinitialize: {old}" if old else "reinitialized"
        elif self._restart is None and (ch.new_steps or ch.new_epochs or ch.reset or not self._loss_text):
            self._loss_text = self._old_numbers(ch.now.history, n, records, self._floor)
        return [self._loss_text] if self._loss_text else []

    @staticmethod
    def _old_numbers(history: Any, n: int, records: list[dict], floor: int = 0) -> str:
        """``"train loss 0.231 · val loss 0.245 · val accuracy 0.967"`` from the newest
        ``LOSS_WINDOW`` steps (from step ``floor`` on) and the newest epoch record."""
        start = max(0, floor if floor < n else 0, n - LOSS_WINDOW)
        recent = history.loss_since(start)[:min(n, LOSS_WINDOW)]
        recent = recent[np.isfinite(recent)]
        parts = [f"train loss {float(recent.mean()):.3g}"] if len(recent) else []
        last = records[-1] if records else {}
        metrics = [k for k, v in last.items() if k not in _NOT_METRICS and isinstance(v, (int, float))]
        shown = ["val_loss"] + ([next((k for k in metrics if k.startswith("val_")), None)
                                 or next((k for k in metrics if not k.startswith("val_")), None)])
        for k in shown:
            v = last.get(k)
            if isinstance(v, (int, float)) and math.isfinite(v):
                parts.append(f"{k.replace('_', ' ')} {v:.3g}")
        return " · ".join(parts)

    def _events(self, events: list[dict]) -> None:
        """Add the notices among ``events`` (those new to this view) and rebuild the box if
        entries were added."""
        if events:
            new = [(_label(e), self._event_text(e)) for e in events if e["kind"] in NOTICE_KINDS or _is_restart(e)]
            with self._lock:
                self._items.extend(new)
                self._added += len(new)
        with self._lock:
            n = self._added
            if n == self._shown_items:
                return
            self._shown_items = n
            newest = list(reversed(self._items[-self.max_notices:]))
        self.notices.value = "".join(
            f'<div style="white-space:pre-wrap;color:{_COLORS.get(kind, "#333")}"><b>{html.escape(kind)}</b> '
            f"{html.escape(text)}</div>" for kind, text in newest)

    @staticmethod
    def _event_text(event: dict) -> str:
        """The entry's text: a ``nonfinite`` event's message names the step where the loss broke
        (the event itself is recorded at the step the run went back to, so no prefix there);
        other entries say when they were recorded."""
        text = event["message"] or event["name"]
        if event["kind"] == "nonfinite":
            return text
        return f"(epoch {event['epoch']}, step {event['step']}) {text}"

    def _halted(self, trainer: Any, state: str, events: list[dict]) -> None:
        text = ""
        if state in ("stopped", "paused"):
            ev = next((e for e in reversed(events[-50:]) if e["kind"] == "state" and e["new"] == state), None)
            if ev is not None:
                verb = ev["name"]  # the state, or how it was reached ("interrupted")
                n, again = trainer.target_epochs, "Resume" if state == "paused" else "Start"
                text = (f"{verb[:1].upper()}{verb[1:]} at step {ev['step']:,} (epoch {epoch_shown(ev['epoch'], n)}/{n})"
                        f". {again} continues from there.")
        value = f'<span style="color:{_STATE_COLORS["paused"]}">{html.escape(text)}</span>' if text else ""
        if self.halted.value != value:
            self.halted.value = value

    def _failure(self, trainer: Any, state: str, events: list[dict]) -> None:
        if state != "failed":
            if self.failure.value:
                self.failure.value = ""
            return
        errors = [e for e in events[-20:] if e["kind"] == "error"]
        if errors:
            message = errors[-1]["message"]
        else:
            err = trainer.error
            message = f"{type(err).__name__}: {err}" if err is not None else "the run failed"
        self.failure.value = (f'<div style="white-space:pre-wrap;color:#b00020"><b>Training failed.</b> '
                              f"{html.escape(message)}<br>{html.escape(_FAILED_HINT)}</div>")
