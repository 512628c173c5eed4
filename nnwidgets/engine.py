"""The Trainer: one training loop for any ``nn.Module``, blocking or in the background,
steerable while it runs. Imports no UI (ipywidgets, bqplot, anywidget, IPython).

States: ``idle → running ⇄ paused → stopped | completed | failed``; a stopped, paused or
completed run can be started again and continues from where it is.
"""
from __future__ import annotations

import collections.abc
import math
import threading
import warnings
import time
from typing import Any, Callable

import torch
from torch import nn

from . import hyperparams as hp
from ._compiled import named_modules, plain_name
from ._errors import explain
from ._interrupt import InterruptGuard
from ._loop import WARMUP_STEPS, LoopMixin, PauseRun, StopRun
from ._metrics import MetricSet
from ._scale import StallWatch
from ._schedule import SchedulePlan, check_scheduler, lr_set_message
from ._setup import build_optimizer, prepare_first_batch, resolve_device
from ._speed import Speed, SpeedMeter
from ._threads import ThreadTuner
from .data import DataError
from .events import Event, EventBus, RemovableHandle
from .history import History

__all__ = ["Trainer", "STATES"]

STATES = ("idle", "running", "paused", "stopped", "completed", "failed")


class Trainer(LoopMixin):
    """Trains ``model`` on ``train_data``; steerable from any thread while it runs.

    Args:
        model: any ``nn.Module``. Its output for a batch ``x`` is ``model(x)``: logits
            ``(N, C)`` for multiclass, ``(N, 1)`` or ``(N,)`` logits for binary, ``(N, D)``
            values for regression.
        train_data: a DataLoader, or any re-iterable of ``(x, y)`` batches (also dicts with
            ``x``/``y`` keys). A one-shot generator is refused.
        val_data: optional, same form; evaluated after every epoch under ``eval()``/``no_grad()``.
        task: ``"auto"`` (from the loss, the output width and the targets), ``"multiclass"``,
            ``"binary"`` or ``"regression"``.
        loss: ``"auto"`` (CrossEntropyLoss / BCEWithLogitsLoss / MSELoss from the task), a name
            (``"cross_entropy"``, ``"bce"``, ``"mse"``, ``"l1"``, ``"huber"``), an ``nn.Module``
            or a callable ``loss(output, target) -> scalar tensor``.
        optimizer: ``"sgd"``, ``"adam"``, ``"adamw"``, ``"rmsprop"`` or a ``torch.optim.Optimizer``
            built on ``model.parameters()``.
        lr: learning rate (default 0.01 for a named optimizer; ``None`` keeps an instance's own).
        momentum: SGD/RMSprop momentum, or Adam's first beta (``None``: 0 for SGD, 0.9 for Adam).
        weight_decay: L2 penalty coefficient (``None``: 0, or 0.01 for AdamW).
        dropout: probability ``p`` for every ``nn.Dropout`` (``None`` keeps the model's).
        epochs: epochs to train per ``fit()``/``start()`` of a fresh or completed run.
        device: ``"auto"`` (cuda, then mps, then cpu), ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``.
        seed: if given, ``torch.manual_seed(seed)`` (shuffling, dropout).
        step: optional custom step ``step(model, batch) -> loss`` (or a dict with ``loss``,
            ``outputs``, ``targets``); the batch is moved to the device as is. The Trainer still
            calls ``zero_grad(set_to_none=True)``, ``backward()`` and ``optimizer.step()``.
        metrics: optional ``{name: torchmetrics.Metric}`` replacing the defaults (accuracy for
            classification; MAE and R² for regression).
        macro: also report ``accuracy_macro`` (per-class mean) for multiclass.
        scheduler: optional LR scheduler built on the Trainer's optimizer. OneCycleLR / CyclicLR,
            and one whose ``T_max`` / ``total_iters`` equals steps per epoch x epochs, are stepped
            after every optimizer step; ReduceLROnPlateau once per epoch with the validation loss
            (training loss without validation data); others once per epoch (a notice says which;
            rule in :mod:`nnwidgets._schedule`).
        grad_stats: record per-layer gradient norms and log10|g| histograms.
        grad_every: ``"auto"`` (sample as often as costs ≤ 2 % of step time) or every n steps.
        flush_interval_s: seconds between fetches of the buffered losses (default 0.1).
        first_batch_timeout_s: seconds to wait for the first batch before giving up.
        threads: torch intra-op threads of the thread that runs the loop, on CPU: ``"auto"``
            (measured at run start: 1 or torch's count, whichever trains faster, re-checked every
            30 s; the choice is a notice), a count ``n >= 1``, or ``None`` (leave torch's setting).
            The count the loop's thread had is put back when a run ends. See
            :mod:`nnwidgets._threads` for why and the measurements.
        scheduler_interval: ``"auto"`` (the rule under ``scheduler``), ``"step"`` or ``"epoch"``.

    Raises:
        TypeError: ``model`` is not an ``nn.Module`` or ``train_data`` is not iterable.
        ValueError: unknown optimizer/device name, a setting out of range, ``dropout`` for a
            model without dropout layers, a model without registered parameters (layers in a
            plain Python list: the message names it and the fix, ``nn.ModuleList``), or a
            scheduler bound to another optimizer.

    Example:
        >>> trainer = Trainer(model, loader, epochs=5, lr=0.05, momentum=0.9)  # doctest: +SKIP
        >>> history = trainer.fit()                                          # doctest: +SKIP
        >>> history.epochs[["epoch", "loss", "accuracy"]]                    # doctest: +SKIP
    """

    def __init__(self, model: nn.Module, train_data: Any, val_data: Any = None, *, task: str = "auto",
                 loss: Any = "auto", optimizer: Any = "sgd", lr: float | None = None,
                 momentum: float | None = None, weight_decay: float | None = None,
                 dropout: float | None = None, epochs: int = 10, device: str = "auto", seed: int | None = None,
                 step: Callable[..., Any] | None = None, metrics: dict | None = None, macro: bool = False,
                 scheduler: Any = None, grad_stats: bool = True, grad_every: int | str = "auto",
                 flush_interval_s: float = 0.1, first_batch_timeout_s: float = 60.0,
                 threads: int | str | None = "auto", scheduler_interval: str = "auto") -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        for name, d in (("train_data", train_data), ("val_data", val_data)):
            if d is None and name == "val_data":
                continue
            if not hasattr(d, "__iter__"):
                raise TypeError(f"{name} must be a DataLoader or an iterable of (x, y) batches, got {type(d).__name__}")
            if isinstance(d, collections.abc.Iterator):  # iter() would start DataLoader workers
                raise TypeError(f"{name} is a one-shot iterator ({type(d).__name__}); it would be empty from the "
                                "second epoch on - pass a DataLoader or a list of batches")
        if task not in ("auto", "multiclass", "binary", "regression"):
            raise ValueError(f"task must be 'auto', 'multiclass', 'binary' or 'regression', got {task!r}")
        if int(epochs) < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        if seed is not None:
            torch.manual_seed(seed)
        self.model, self.train_data, self.val_data = model, train_data, val_data
        self.epochs, self.grad_every, self.flush_interval_s = int(epochs), grad_every, float(flush_interval_s)
        self.first_batch_timeout_s, self.scheduler = float(first_batch_timeout_s), scheduler
        self._task_arg, self._loss_arg, self._metrics_arg, self._macro = task, loss, metrics, macro
        self._custom_step, self._grad_stats = step, grad_stats
        self._tuner = ThreadTuner(threads)
        self._meter = SpeedMeter()
        self.device = resolve_device(device)
        self._on_cpu = self.device.type == "cpu"
        self.model.to(self.device)
        for name, v in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay)):
            if v is not None and (not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0 or (name == "lr" and v == 0)):
                raise ValueError(f"{name} must be a finite number{' > 0' if name == 'lr' else ' >= 0'}, got {v!r}")
        if momentum is not None and momentum >= 1:  # as set(): SGD accepts it and diverges
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        self.optimizer = build_optimizer(optimizer, model, lr, momentum, weight_decay)
        check_scheduler(scheduler, scheduler_interval, self.optimizer)
        self._scheduler_interval = scheduler_interval
        if isinstance(optimizer, torch.optim.Optimizer):
            given = {k: v for k, v in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay)) if v is not None}
            hp.apply_settings({k: hp.validate_setting(k, v, self.optimizer, model) for k, v in given.items()},
                              self.optimizer, model)
        if dropout is not None:
            hp.apply_settings({"dropout": hp.validate_setting("dropout", dropout, self.optimizer, model)},
                              self.optimizer, model)
        self.history = History()
        self._bus = EventBus()
        self._ctl = threading.Condition()
        self._guard = InterruptGuard(on_defer=lambda: setattr(self, "_attention", True))
        self._pending = hp.PendingSettings()
        self._freeze_pending: dict[str, bool] = {}
        self._state, self.error, self._thread = "idle", None, None
        self._loop_active, self._background = False, False
        self._stop_requested = self._pause_requested = self._attention = False
        self._steps_allowed = 0
        self._step_granted = False  # a step_once() allowance taken by the loop, not yet used by a step
        self.epoch, self.step, self._target_epochs = 0, 0, 0
        self._prepared = None
        self._batch_iter = self._pending_batch = None
        self._loss_buf: list = []
        self._n_buf: list = []
        self._stat_buf: list = []  # the target guard's per-step stats, beside _loss_buf
        self._snap, self._snap_t = None, 0.0
        self._epoch_loss_sum, self._epoch_n, self._epoch_first_step = 0.0, 0, 0
        self._probe = None
        self._step_time: float | None = None
        self._timed_s, self._timed_steps = 0.0, 0
        self._tool_time = 0.0   # wall seconds of nnwidgets' own work (flushes, gradient statistics)
        self._tool_cpu = 0.0    # the same work in CPU seconds of the loop's thread (trainer.speed)
        self._run_wall = 0.0
        self._phase = "starting"
        self._t_start = time.perf_counter()
        self._next_grad_step: float = 1

    # ------------------------------------------------------------------ properties
    @property
    def state(self) -> str:
        """``"idle" | "running" | "paused" | "stopped" | "completed" | "failed"``."""
        return self._state

    @property
    def task(self) -> str:
        """The task in use (decided on the first batch when ``task="auto"``)."""
        return self._prepared.task if self._prepared is not None else self._task_arg

    @property
    def loss_fn(self) -> Any:
        """The loss function in use (``None`` before the first batch was checked)."""
        return self._prepared.loss_fn if self._prepared is not None else None

    @property
    def settings(self) -> dict[str, float | None]:
        """Current ``lr``, ``momentum``, ``weight_decay``, ``dropout`` (``None`` where absent)."""
        return hp.read_settings(self.optimizer, self.model)

    @property
    def overhead(self) -> float:
        """Share of the run's wall time spent in nnwidgets' own work (flushes, gradient
        statistics, settings) rather than in the model and optimizer; 0..1."""
        wall = time.perf_counter() - self._t_start if self._loop_active else self._run_wall
        return self._tool_time / wall if wall > 0 else 0.0

    @property
    def speed(self) -> Speed | None:
        """The loop's recent speed (last ~5 s of running): steps/s, the rate it would reach
        alone, and the overhead the user gets (see :mod:`nnwidgets._speed`); ``None`` before the
        first steps were committed."""
        return self._meter.speed

    @property
    def threads(self) -> int | None:
        """Torch threads of the loop's thread: in use while running, else the count an
        ``"auto"`` run chose (``None`` when left to torch or not decided yet)."""
        return self._tuner.threads if self._tuner.threads is not None else self._tuner.chosen

    @property
    def steps_per_epoch(self) -> int | None:
        """``len(train_data)`` when the loader has a length, else ``None``."""
        try:
            return len(self.train_data)
        except TypeError:
            return None

    @property
    def target_epochs(self) -> int:
        """The epoch count the current run trains up to."""
        return max(self._target_epochs, self.epochs if self._state == "idle" else 0)

    # ------------------------------------------------------------------ running
    def fit(self, epochs: int | None = None) -> History:
        """Train in the calling thread until done, stopped, interrupted or paused.

        Args:
            epochs: epochs to train from here (default: finish the current run, or
                ``self.epochs`` more for a fresh or completed one).

        Returns:
            The :class:`History` (also ``trainer.history``).

        Raises:
            RuntimeError: the Trainer is already running in the background.
            Exception: an error in the model, loss or data is re-raised after the run was
                marked failed; the history and the last completed step are kept. A class
                label out of range in a later batch becomes a ``DataError`` naming the fix.
            KeyboardInterrupt: only for a Ctrl-C that arrived after the last step, raised once
                the run has ended. Earlier, Ctrl-C ends the run at a step boundary ("stopped",
                ``fit()`` returns): weights, ``step`` and the history always agree, and
                ``fit()`` continues from there (see :mod:`nnwidgets._interrupt`).

        Warns:
            RuntimeWarning: the loss became non-finite; the run is paused (``fit()`` again
                or ``resume()`` continues, e.g. after ``set(lr=...)``).
        """
        installed = self._guard.install()
        try:
            self._begin(epochs, background=False)
            self._run()
        finally:
            late = self._guard.uninstall() if installed else False
        if late:
            raise KeyboardInterrupt
        if self._state == "failed" and self.error is not None:
            raise self.error
        last = self.history.event_records[-2:]
        if self._state == "paused" and last and last[0]["kind"] == "nonfinite":
            warnings.warn(last[0]["message"], RuntimeWarning, stacklevel=2)
        return self.history

    def start(self, epochs: int | None = None) -> "Trainer":
        """Train in a background thread and return at once (sliders can steer it). On a run
        paused in the background this is :meth:`resume`."""
        with self._ctl:
            if self._loop_active and self._state == "paused" and epochs is None:
                self._pause_requested, self._attention = False, True
                self._ctl.notify_all()
                return self
        self._begin(epochs, background=True)
        torch.get_num_threads()  # fixes this thread's own count before the loop's thread sets its
        self._thread = threading.Thread(target=self._run, name="nnwidgets-trainer", daemon=True)
        self._thread.start()
        return self

    def pause(self) -> None:
        """Pause at the next step boundary (any thread)."""
        with self._ctl:
            self._pause_requested, self._attention, self._steps_allowed = True, True, 0

    def resume(self) -> None:
        """Continue a paused run; with no loop running (paused by a blocking ``fit()``,
        stopped, completed or failed) start one in the background, like :meth:`start`."""
        with self._ctl:
            self._pause_requested = False
            self._attention = True
            if self._loop_active:
                self._ctl.notify_all()
                return
        if self._state != "running":
            self.start()

    def step_once(self) -> None:
        """Run exactly one optimizer step, then stay paused."""
        with self._ctl:
            self._pause_requested, self._attention = True, True
            self._steps_allowed += 1
            if self._loop_active:
                self._ctl.notify_all()
                return
        self._steps_allowed = 1
        self.start()

    def stop(self) -> None:
        """Stop within one step; the model keeps its last completed step. A run left paused by
        a blocking ``fit()`` (no loop active) becomes ``"stopped"`` at once."""
        with self._ctl:
            self._stop_requested, self._attention = True, True
            self._ctl.notify_all()
            if not self._loop_active and self._state == "paused":
                self._record("state", name="stopped", new="stopped", message=f"stopped at epoch {self.epoch}, step {self.step}")
                self._set_state("stopped")

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the background run ends or pauses (a requested stop is waited for);
        True when it did within ``timeout`` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._ctl:
            # a pause that resume()/step_once() has lifted but the loop has not left yet is no pause
            while self._loop_active and not (self._state == "paused" and self._pause_requested
                                             and self._steps_allowed == 0 and not self._stop_requested):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._ctl.wait(0.05 if left is None else min(left, 0.05))
        return True

    def set(self, **settings: float) -> None:
        """Change ``lr``, ``momentum``, ``weight_decay`` and/or ``dropout`` from any thread.

        Applied to every param group (and a scheduler's base learning rates) before the
        next optimizer step, or when the run ends if no step follows (e.g. a change made
        during the last validation); each change is recorded in ``history.events``.

        Raises:
            ValueError: unknown name, value out of range, or a setting the optimizer/model lacks.
        """
        checked = {k: hp.validate_setting(k, v, self.optimizer, self.model) for k, v in settings.items()}
        with self._ctl:
            self._pending.put(checked)
            if not self._loop_active:
                self._apply_pending()
            else:
                self._attention = True
                self._ctl.notify_all()

    def freeze(self, layer: str, frozen: bool = True) -> None:
        """Freeze (``requires_grad=False``) or unfreeze the parameters of module ``layer``
        (a name from :func:`nnwidgets.summary`) from the next step on (or when the run ends,
        if no step follows).

        A ``torch.compile``d model takes the plain names (``"0"``; ``"_orig_mod.0"`` also works).

        Raises:
            KeyError: no module of that name.
        """
        layer, modules = plain_name(layer), named_modules(self.model)
        if layer not in modules:
            raise KeyError(f"no module named {layer!r}; names are: {', '.join(n for n in modules if n)}")
        with self._ctl:
            self._freeze_pending[layer] = bool(frozen)
            if not self._loop_active:
                self._apply_pending()
            else:
                self._attention = True
                self._ctl.notify_all()

    def to(self, device: str | torch.device) -> "Trainer":
        """Move model, optimizer state and metrics to ``device`` (not while a step runs:
        pause first).

        Raises:
            RuntimeError: the run is running (pause it first).
            ValueError: the device is unknown or unavailable.
        """
        dev = resolve_device(device)
        with self._ctl:
            if self._loop_active and self._state != "paused":
                raise RuntimeError("cannot change the device while training runs; pause() first")
            old = self.device
            self.model.to(dev)
            for st in self.optimizer.state.values():
                for k, v in st.items():
                    if torch.is_tensor(v) and k != "step":
                        st[k] = v.to(dev)
            self.device, self._snap, self._on_cpu = dev, None, dev.type == "cpu"
            if self._prepared is not None:
                self._train_metrics.to(dev)
                self._val_metrics.to(dev)
                if isinstance(self._prepared.loss_fn, nn.Module):
                    self._prepared.loss_fn.to(dev)
                self._make_probe()
            self._record("setting", name="device", old=str(old), new=str(dev),
                         message=f"device changed from {old} to {dev}")
        return self

    def set_optimizer(self, optimizer: Any) -> None:
        """Replace the optimizer (a name or instance) keeping lr, momentum and weight decay;
        only while not running (pause first).

        Raises:
            RuntimeError: the run is running.
            ValueError: unknown optimizer name.
        """
        with self._ctl:
            if self._loop_active and self._state != "paused":
                raise RuntimeError("cannot change the optimizer while training runs; pause() first")
            s, old = self.settings, type(self.optimizer).__name__
            momentum = s["momentum"] or None  # 0 or absent: the new optimizer's default (0.9 for Adam)
            self.optimizer = build_optimizer(optimizer, self.model.parameters(), s["lr"], momentum, s["weight_decay"])
            self._snap = None
            self._record("setting", name="optimizer", old=old, new=type(self.optimizer).__name__,
                         message=f"optimizer changed from {old} to {type(self.optimizer).__name__}")

    def save(self, path: str) -> str:
        """Save a checkpoint that ``torch.load(path)`` reads with ``weights_only=True``:
        model and optimizer state dicts, epoch, step, settings and the history as plain
        numbers. Returns the path.

        The file is written under a temporary name and renamed into place: a save that fails
        leaves an earlier checkpoint at ``path`` intact.

        Raises:
            RuntimeError: while running (pause or stop first).
            nnwidgets.checkpoint.CheckpointError: ``path`` is a folder or cannot be written.
        """
        from .checkpoint import save_checkpoint
        with self._ctl:
            return save_checkpoint(self, path)

    @classmethod
    def load(cls, path: str, model: nn.Module, train_data: Any, val_data: Any = None, **kwargs: Any) -> "Trainer":
        """A Trainer for ``model`` continuing from the checkpoint at ``path`` (weights,
        optimizer state when the optimizer kind matches, epoch/step counters, history).

        The whole file is checked (structure, history, every weight's key and shape against
        ``model``) before ``model`` is touched: a checkpoint that does not fit leaves it as it was.

        Raises:
            nnwidgets.checkpoint.CheckpointError: the file is missing, damaged, truncated, not a
                safe nnwidgets checkpoint (never retried with ``weights_only=False``), or does
                not fit ``model`` (see :func:`nnwidgets.checkpoint.load_checkpoint`).
        """
        from .checkpoint import load_checkpoint, restore
        ck = load_checkpoint(path, map_location=resolve_device(kwargs.get("device", "auto")), model=model)
        trainer = cls(model, train_data, val_data, **kwargs)
        restore(trainer, ck, path)
        return trainer

    def on(self, event: Event | str, handler: Callable[..., Any], every: int = 1) -> RemovableHandle:
        """Call ``handler(trainer, **info)`` at ``event`` (see :mod:`nnwidgets.events`);
        returns a handle with ``.remove()``."""
        return self._bus.on(event, handler, every=every)

    # ------------------------------------------------------------------ internals
    def _begin(self, epochs: int | None, background: bool) -> None:
        with self._ctl:
            if self._loop_active:
                raise RuntimeError("the trainer is already running; use pause()/stop() or wait()")
            unfinished = self._state in ("paused", "stopped", "failed") and self.epoch < self._target_epochs
            if epochs is not None:
                self._target_epochs = self.epoch + int(epochs)
            elif not unfinished:
                self._target_epochs = self.epoch + self.epochs
            if self._state == "failed":
                self._batch_iter = self._pending_batch = None
            self._stop_requested, self.error = False, None
            self._pause_requested = self._steps_allowed > 0  # step_once() starts paused after one step
            self._attention = True
            self._loop_active, self._background = True, background

    def _run(self) -> None:
        now = self._last_flush = self._last_commit_t = time.perf_counter()
        self._t_start = now - self._run_wall  # time_s keeps counting across restarts
        notice = self._tuner.begin(self.device)
        self._mark_window()
        self._set_state("running")
        self._mode_at_start = self.model.training
        self.model.train()
        ending, message = "completed", "training completed"
        try:
            if self._prepared is None:
                self._prepare()
            self._warm_until = WARMUP_STEPS  # only the very first steps of a trainer are flushed one by one
            self._snapshot(force=True)
            self._last_commit_t = time.perf_counter()  # the first-batch checks are no step time
            self._mark_window()
            if notice:
                self._record("notice", name="threads", message=notice)
            self._bus.fire(Event.FIT_STARTED, self, epoch=self.epoch, step=self.step)
            self._run_epochs()
        except StopRun:
            self._guard.open = False
            ending, message = "stopped", f"stopped at epoch {self.epoch}, step {self.step}"
        except PauseRun:
            self._guard.open = False
            ending, message = "paused", f"paused at epoch {self.epoch}, step {self.step}"
        except KeyboardInterrupt:
            self._guard.open = False
            ending, message = "stopped", f"interrupted at epoch {self.epoch}, step {self.step}"
        except BaseException as e:  # noqa: BLE001 - user code may raise anything; the kernel must live
            self._guard.open = False
            e = explain(e, self._phase, self.epoch, self.step,
                        self._prepared.width if self._prepared is not None else None)
            ending, self.error = "failed", e
            message = f"{type(e).__name__} during {self._phase} at epoch {self.epoch}, step {self.step}: {e}"
            if hasattr(e, "add_note"):
                e.add_note(f"nnwidgets: the run failed during {self._phase} at epoch {self.epoch}, step {self.step}; "
                           "history is kept and the model holds the weights of the last completed step")
        self._finish(ending, message)

    def _finish(self, ending: str, message: str) -> None:
        self._guard.open = False
        try:
            self._flush()
            last = self.history.gradient_norms()[0][-1:]
            if ending != "failed" and self._probe is not None and (not len(last) or last[0] < self.step) \
                    and any(p.grad is not None for p in self.model.parameters()):
                self._sample_gradients()  # the gradient view ends at the run's last step
        except DataError as e:  # a buffered batch broke a first-batch decision (nnwidgets._batch_guard)
            if ending != "failed":
                ending, self.error = "failed", e
                message = f"DataError at epoch {self.epoch}, step {self.step}: {e}"
        except Exception:  # noqa: BLE001 - a failing flush must not hide the run's own ending
            self._loss_buf, self._n_buf, self._stat_buf = [], [], []
        self.optimizer.zero_grad(set_to_none=True)
        self.model.train(getattr(self, "_mode_at_start", True))
        self._tuner.end()
        self._run_wall = time.perf_counter() - self._t_start
        kind = "error" if ending == "failed" else "state"
        with self._ctl:
            if self._pending or self._freeze_pending:  # a set()/freeze() after the last step (e.g. in validation)
                self._apply_pending()
            self._record(kind, name=ending, new=ending, message=message)
            self._loop_active = False
            self._set_state(ending)
            self._ctl.notify_all()
        event = {"completed": Event.FIT_COMPLETED, "failed": Event.EXCEPTION_RAISED}.get(ending, Event.STOPPED)
        try:
            self._bus.fire(event, self, message=message, error=self.error)
        except Exception:  # noqa: BLE001
            pass

    def _prepare(self) -> None:
        self._phase = "checking the first batch"
        self._guard.enter()  # an interrupt here leaves nothing half-built
        prep = prepare_first_batch(self.model, self.train_data, self.device, task=self._task_arg,
                                   loss=self._loss_arg, metrics=self._metrics_arg, macro=self._macro,
                                   custom_step=self._custom_step is not None, timeout_s=self.first_batch_timeout_s)
        self._guard.open = False
        if isinstance(prep.loss_fn, nn.Module):
            prep.loss_fn.to(self.device)
        self._prepared, self._loss_fn = prep, prep.loss_fn
        if prep.loader is not self.train_data:
            self.train_data = prep.loader
        self._train_metrics = MetricSet(prep.task, prep.metrics, self.device, prep.threshold)
        self._val_metrics = MetricSet(prep.task, {k: m.clone() for k, m in prep.metrics.items()}, self.device,
                                      prep.threshold)
        if self.scheduler is not None:
            self._schedule = SchedulePlan(self.scheduler, self.optimizer, self._scheduler_interval,
                                          self.steps_per_epoch, self._target_epochs, self.val_data is not None)
            self._per_step = self._schedule.per_step
            prep.notices += self._schedule.notices
        for n in prep.notices:
            self._record("notice", name=n.code, message=n.message)
        if prep.scale is not None:  # a regression target far off the outputs' scale: say so if the loss stalls
            self._bus.on(Event.EPOCH_COMPLETED, StallWatch(prep.scale))
        self._make_probe()

    def _make_probe(self) -> None:
        if self._grad_stats:
            from .stats import GradientProbe
            self._probe = GradientProbe(self.model)
            self._next_grad_step = self.step + 1

    def _attend(self) -> None:
        """Everything requested from other threads, handled at a step boundary."""
        self._guard.check()  # a Ctrl-C deferred during the last step (fit() on the main thread)
        with self._ctl:
            self._attention = False
            if self._pending or self._freeze_pending:
                self._flush()
                self._apply_pending()
            if self._stop_requested:
                raise StopRun()
            if not self._pause_requested:
                return
            if self._steps_allowed > 0:
                self._steps_allowed -= 1
                self._step_granted = True  # given back if the epoch ends before the step is taken
                self._attention = True
                return
            self._flush()
            if not self._background:
                raise PauseRun()
            self._set_state("paused")
            self._record("state", name="paused", new="paused", message=f"paused at epoch {self.epoch}, step {self.step}")
            while self._pause_requested and not self._stop_requested and self._steps_allowed == 0:
                self._ctl.wait(0.5)
                if self._pending or self._freeze_pending:
                    self._apply_pending()
            if self._stop_requested:
                raise StopRun()
            if self._steps_allowed > 0:
                self._steps_allowed -= 1
                self._step_granted = True
            self._last_commit_t = self._last_flush = time.perf_counter()  # the pause is no step time
            self._mark_window()
            self._attention = True
            self._set_state("running")
            self._record("state", name="resumed", new="running", message=f"resumed at epoch {self.epoch}, step {self.step}")

    def _apply_pending(self) -> None:
        changes = self._pending.take()
        for name, old, new in hp.apply_settings(changes, self.optimizer, self.model, self.scheduler):
            message = f"{name} changed from {old:g} to {new:g}" if old is not None else f"{name} set to {new:g}"
            if name == "lr" and self.scheduler is not None:
                message += "; " + lr_set_message(self.scheduler, new)
            self._record("setting", name=name, old=old, new=new, message=message)
            self._bus.fire(Event.SETTING_CHANGED, self, name=name, old=old, new=new)
        frozen, self._freeze_pending = self._freeze_pending, {}
        modules = named_modules(self.model)
        for layer, flag in frozen.items():
            for p in modules[layer].parameters():
                p.requires_grad_(not flag)
            self._record("setting", name=f"frozen:{layer}", old=not flag, new=flag,
                         message=f"layer {layer} {'frozen' if flag else 'unfrozen'}")

    def _set_state(self, state: str) -> None:
        if state != self._state:
            old, self._state = self._state, state
            self._bus.fire(Event.STATE_CHANGED, self, old=old, new=state)

    def _record(self, kind: str, *, name: str = "", old: Any = None, new: Any = None, message: str = "") -> None:
        ev = self.history.append_event(kind, step=self.step, epoch=self.epoch,
                                       time_s=time.perf_counter() - self._t_start, name=name, old=old, new=new,
                                       message=message)
        if kind == "notice":
            self._bus.fire(Event.NOTICE, self, **ev)

    def __repr__(self) -> str:
        return (f"Trainer(state={self._state!r}, epoch={self.epoch}/{self.target_epochs}, step={self.step}, "
                f"device={self.device}, optimizer={type(self.optimizer).__name__})")
