"""The Trainer, the engine's public front: one training loop for any ``nn.Module``, blocking
or in the background, steerable while it runs. Imports no UI (ipywidgets, bqplot, anywidget,
IPython).

It checks the arguments and wires the parts: :class:`~nnwidgets.engine.control.RunControl`
(state and requests), :class:`~nnwidgets.engine.run.Runner` (a run's start and end),
:class:`~nnwidgets.engine.loop.Loop` (epochs, steps, evaluation),
:class:`~nnwidgets.engine.ledger.Ledger` (buffered losses, timing),
:class:`~nnwidgets.engine.rollback.Rollback` (snapshots) and the
:class:`~nnwidgets.engine.events.EventBus` the handlers (:mod:`nnwidgets.handlers`) and checks
(:mod:`nnwidgets.checks`) attach to.

States: ``idle → running ⇄ paused → stopped | completed | failed``; a stopped, paused or
completed run can be started again and continues from where it is.
"""
from __future__ import annotations

import threading
import warnings
from typing import Any, Callable

import torch
from torch import nn

from .. import hyperparams as hp
from .._compiled import named_modules, plain_name
from .._interrupt import InterruptGuard, in_ipython
from .._names import OPTIMIZER_LABELS
from .._schedule import check_scheduler
from .._setup import build_optimizer, resolve_device
from .._speed import Speed
from .._threads import ThreadTuner
from ..handlers.gradients import GradientSampler
from ..history import History
from ..metrics import MetricInfo, metric_info
from .control import STATES, RunControl
from .events import Event, EventBus, RemovableHandle
from .ledger import Ledger
from . import owners
from .loop import Loop
from .options import Options, check_arguments
from .rollback import Rollback
from .run import Runner

__all__ = ["Trainer", "STATES"]



class Trainer:
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
        check_arguments(model, train_data, val_data, task, epochs)
        if seed is not None:
            torch.manual_seed(seed)
        self.model, self.train_data, self.val_data = model, train_data, val_data
        self.epochs, self.first_batch_timeout_s = int(epochs), float(first_batch_timeout_s)
        self.scheduler = scheduler
        self._options = Options(task, loss, metrics, macro, step, scheduler_interval)
        self.device = resolve_device(device)
        self.model.to(self.device)
        for name, v in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay)):
            if v is not None:
                hp.check_range(name, v)
        self.optimizer = build_optimizer(optimizer, model, lr, momentum, weight_decay)
        check_scheduler(scheduler, scheduler_interval, self.optimizer)
        if isinstance(optimizer, torch.optim.Optimizer):
            given = {k: v for k, v in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay)) if v is not None}
            hp.apply_settings({k: hp.validate_setting(k, v, self.optimizer, model) for k, v in given.items()},
                              self.optimizer, model)
        if dropout is not None:
            hp.apply_settings({"dropout": hp.validate_setting("dropout", dropout, self.optimizer, model)},
                              self.optimizer, model)
        self.history = History()
        self.error: BaseException | None = None
        self.epoch, self.step, self._target_epochs = 0, 0, 0
        self._bus = EventBus()
        self._control = RunControl(self._bus, self, self._record)
        self._guard = InterruptGuard(on_defer=lambda: setattr(self._control, "attention", True))
        self._tuner = ThreadTuner(threads)
        self._ledger = Ledger(flush_interval_s)
        self._rollback = Rollback()
        self._loop = Loop(self)
        self._runner = Runner(self)
        self._grads = GradientSampler(grad_every) if grad_stats else None
        self._prepared = self._schedule = self._thread = None

    # ------------------------------------------------------------------ properties
    @property
    def state(self) -> str:
        """``"idle" | "running" | "paused" | "stopped" | "completed" | "failed"``."""
        return self._control.state

    @property
    def phase(self) -> str | None:
        """What the running loop does: ``"training"``, ``"validating"`` (the validation pass
        after an epoch), or ``None`` (no loop running, or paused)."""
        return self._loop.phase

    @property
    def val_progress(self) -> tuple[int, int | None]:
        """Validation batches ``(done, total)`` of the current (or last) validation pass;
        ``total`` is ``len(val_data)``, ``None`` for data without a length. Plain counters,
        no device synchronisation."""
        return self._loop.val_done, self._loop.val_total

    @property
    def metric_info(self) -> dict[str, MetricInfo]:
        """Display facts (range, higher is better, label) of each metric the history records,
        by name without the ``val_`` prefix (``{}`` before the first batch was checked);
        see :mod:`nnwidgets.metrics`."""
        prep = self._prepared
        if prep is None:
            return {}
        return {"loss": metric_info("loss"), **{k: metric_info(k, m) for k, m in prep.metrics.items()}}

    @property
    def flush_interval_s(self) -> float:
        """Seconds between fetches of the buffered losses."""
        return self._ledger.flush_interval_s

    @property
    def grad_every(self) -> int | str | None:
        """``"auto"`` or n (gradient statistics every n steps); ``None`` without ``grad_stats``."""
        return self._grads.every if self._grads is not None else None

    @property
    def task(self) -> str:
        """The task in use (decided on the first batch when ``task="auto"``)."""
        return self._prepared.task if self._prepared is not None else self._options.task

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
        return self._ledger.overhead(self._control.active)

    @property
    def speed(self) -> Speed | None:
        """The loop's recent speed (last ~5 s of running): steps/s, the rate it would reach
        alone, and the overhead the user gets (see :mod:`nnwidgets._speed`); ``None`` before the
        first steps were committed."""
        return self._ledger.meter.speed

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
        return max(self._target_epochs, self.epochs if self.state == "idle" else 0)

    # ------------------------------------------------------------------ running
    def fit(self, epochs: int | None = None) -> History:
        """Train in the calling thread until done, stopped, interrupted or paused.

        Args:
            epochs: epochs to train from here (default: finish the current run, or
                ``self.epochs`` more for a fresh or completed one).

        Returns:
            The :class:`History` (also ``trainer.history``).

        Raises:
            RuntimeError: the Trainer is already running in the background, or another
                Trainer is training the same model object (stop or pause it first); raised
                before the model is touched.
            Exception: an error in the model, loss or data is re-raised after the run was
                marked failed; the history and the last completed step are kept. A class
                label out of range in a later batch becomes a ``DataError`` naming the fix.
            KeyboardInterrupt: for a Ctrl-C that arrived after the last step, raised once
                the run has ended. Earlier, Ctrl-C ends the run at a step boundary ("stopped"):
                weights, ``step`` and the history always agree, and ``fit()`` continues from
                there (see :mod:`nnwidgets._interrupt`); in IPython or a notebook ``fit()`` then
                returns (the kernel lives), in a plain Python script it raises
                ``KeyboardInterrupt`` so the script stops.

        Warns:
            RuntimeWarning: the loss became non-finite; the run is paused (``fit()`` again
                or ``resume()`` continues, e.g. after ``set(lr=...)``).
        """
        installed = self._guard.install()
        try:
            self._begin(epochs, background=False)
            self._runner.run()
        finally:
            late = self._guard.uninstall() if installed else False
        if late:
            raise KeyboardInterrupt
        if self._runner.interrupted and not in_ipython():  # a script: Ctrl-C stops it, once the run is consistent
            raise KeyboardInterrupt(f"training interrupted at epoch {self.epoch}, step {self.step}; the model "
                                    "holds the weights of that step (state 'stopped'; fit() continues from there)")
        if self.state == "failed" and self.error is not None:
            raise self.error
        last = self.history.event_records[-2:]
        if self.state == "paused" and last and last[0]["kind"] == "nonfinite":
            warnings.warn(last[0]["message"], RuntimeWarning, stacklevel=2)
        return self.history

    def start(self, epochs: int | None = None) -> "Trainer":
        """Train in a background thread and return at once (sliders can steer it). On a run
        paused in the background this is :meth:`resume`.

        Raises:
            RuntimeError: already running, or another Trainer is training the same model
                object (stop or pause it first; see :mod:`nnwidgets.engine.owners`)."""
        control = self._control
        with control.lock:
            if control.active and control.state == "paused" and epochs is None:
                with owners.resuming(self):
                    control.pause_requested, control.attention = False, True
                    control.lock.notify_all()
                return self
        self._begin(epochs, background=True)
        torch.get_num_threads()  # fixes this thread's own count before the loop's thread sets its
        self._thread = threading.Thread(target=self._runner.run, name="nnwidgets-trainer", daemon=True)
        try:
            self._thread.start()
        except BaseException:
            with control.lock:
                control.end()
            owners.release(self)
            raise
        return self

    def pause(self) -> None:
        """Pause at the next step boundary (any thread)."""
        self._control.request_pause()

    def resume(self) -> None:
        """Continue a paused run; with no loop running (paused by a blocking ``fit()``,
        stopped, completed or failed) start one in the background, like :meth:`start`."""
        with self._control.lock, owners.resuming(self):  # lock order: the control's, then the registry's
            active = self._control.request_resume()
        if not active and self.state != "running":
            self.start()

    def step_once(self) -> None:
        """Run exactly one optimizer step, then stay paused."""
        with self._control.lock, owners.resuming(self):  # lock order: the control's, then the registry's
            active = self._control.request_step()
        if not active:
            self.start()

    def stop(self) -> None:
        """Stop within one step; the model keeps its last completed step. A run left paused by
        a blocking ``fit()`` (no loop active) becomes ``"stopped"`` at once."""
        control = self._control
        control.request_stop()
        with control.lock:
            if not control.active and control.state == "paused":
                control.move("stopped", f"stopped at epoch {self.epoch}, step {self.step}")

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the background run ends or pauses (a requested stop is waited for);
        True when it did within ``timeout`` s."""
        return self._control.wait(timeout)

    def allowed(self, action: str) -> bool:
        """Whether ``action`` (``"start"``, ``"pause"``, ``"step"``, ``"stop"``, ``"configure"``:
        change the optimizer kind or device) may be asked in the current state; what the panel's
        buttons follow (:data:`nnwidgets.engine.control.ACTIONS`)."""
        return self._control.allowed(action)

    def evaluate(self, data: Any) -> dict[str, float]:
        """Loss and metrics of the model on ``data`` under ``eval()`` and ``no_grad()``.

        The model's previous train/eval mode is restored afterwards (also on errors).
        Loss is the mean over samples (weighted by batch size). Stop requests are honoured
        between batches.

        Returns:
            ``{"loss": float, <metric>: float, ...}``.

        Raises:
            RuntimeError: before the first ``fit()``/``start()`` (the task and loss are
                decided on the first batch).
        """
        return self._loop.evaluate(data)

    def set(self, **settings: float) -> None:
        """Change ``lr``, ``momentum``, ``weight_decay`` and/or ``dropout`` from any thread.

        Applied to every param group (and a scheduler's base learning rates) before the
        next optimizer step, or when the run ends if no step follows (e.g. a change made
        during the last validation); each change is recorded in ``history.events``.

        Raises:
            ValueError: unknown name, value out of range, or a setting the optimizer/model lacks.
        """
        checked = {k: hp.validate_setting(k, v, self.optimizer, self.model) for k, v in settings.items()}
        with self._control.lock:
            if not self._control.put(settings=checked):
                self._runner.apply_pending()

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
        with self._control.lock:
            if not self._control.put(freeze=(layer, bool(frozen))):
                self._runner.apply_pending()

    def to(self, device: str | torch.device) -> "Trainer":
        """Move model, optimizer state and metrics to ``device`` (not while a step runs:
        pause first).

        Raises:
            RuntimeError: the run is running (pause it first).
            ValueError: the device is unknown or unavailable.
        """
        dev = resolve_device(device)
        with self._control.lock:
            if self._control.active and self.state != "paused":
                raise RuntimeError("cannot change the device while training runs; pause() first")
            old = self.device
            self.model.to(dev)
            for st in self.optimizer.state.values():
                for k, v in st.items():
                    if torch.is_tensor(v) and k != "step":
                        st[k] = v.to(dev)
            self.device = dev
            self._rollback.clear()
            if self._prepared is not None:
                self._loop.train_metrics.to(dev)
                self._loop.val_metrics.to(dev)
                if isinstance(self._prepared.loss_fn, nn.Module):
                    self._prepared.loss_fn.to(dev)
                if self._grads is not None:
                    self._grads.reset(self.model)
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
        with self._control.lock:
            if self._control.active and self.state != "paused":
                raise RuntimeError("cannot change the optimizer while training runs; pause() first")
            s, old = self.settings, type(self.optimizer).__name__
            momentum = s["momentum"] or None  # 0 or absent: the new optimizer's default (0.9 for Adam)
            self.optimizer = build_optimizer(optimizer, self.model.parameters(), s["lr"], momentum, s["weight_decay"])
            self._rollback.clear()
            self._record("setting", name="optimizer", old=old, new=type(self.optimizer).__name__,
                         message=f"optimizer changed from {old} to {type(self.optimizer).__name__}")

    def reinitialize(self, seed: int | None = None) -> int:
        """Fresh weights: each layer's own ``reset_parameters()`` (PyTorch's default
        initialisation of ``Linear``, ``Conv*``, ``BatchNorm*``, ...), the optimizer state
        (momentum buffers) cleared, and these weights made the rollback target. Step counter,
        epoch, settings and history go on; a ``setting`` event ``"weights"`` marks the restart on
        the charts. The cure when a loss blew up from weights that were never in range (the
        ``diverged`` message says so). Only while not running (pause first).

        Args:
            seed: passed to ``torch.manual_seed`` first, for the same fresh weights every time
                (``None``: the global generator as it is).

        Returns:
            The number of layers reset.

        Raises:
            RuntimeError: the run is running.
        """
        with self._control.lock:
            if self._control.active and self.state != "paused":
                raise RuntimeError("cannot reinitialize the weights while training runs; pause() first")
            if seed is not None:
                torch.manual_seed(seed)
            n = 0
            with torch.no_grad():
                for module in self.model.modules():
                    reset = getattr(module, "reset_parameters", None)
                    if callable(reset):
                        reset()
                        n += 1
            self.optimizer.state.clear()
            self._loop.in_range = True
            self._rollback.clear()
            self._loop.snapshot(start=True)
            self._record("setting", name="weights", old=None, new="reinitialized",
                         message=f"weights reinitialized: reset_parameters() of {n} layers, optimizer state cleared")
        return n

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
        from ..checkpoint import save_checkpoint
        with self._control.lock:
            return save_checkpoint(self, path)

    @classmethod
    def load(cls, path: str, model: nn.Module, train_data: Any, val_data: Any = None, **kwargs: Any) -> "Trainer":
        """A Trainer for ``model`` continuing from the checkpoint at ``path`` (weights,
        optimizer state when the optimizer kind matches, epoch/step counters, history).

        Without ``optimizer=`` the saved optimizer kind (``"sgd"``, ``"adam"``, ``"adamw"``,
        ``"rmsprop"``) is rebuilt and its state dict loaded, settings (lr, momentum/betas,
        weight decay) included; an ``optimizer=`` given here is used instead.

        The whole file is checked (structure, history, every weight's key and shape against
        ``model``) before ``model`` is touched: a checkpoint that does not fit leaves it as it was.

        Raises:
            nnwidgets.checkpoint.CheckpointError: the file is missing, damaged, truncated, not a
                safe nnwidgets checkpoint (never retried with ``weights_only=False``), or does
                not fit ``model`` (see :func:`nnwidgets.checkpoint.load_checkpoint`).
        """
        from ..checkpoint import load_checkpoint, restore
        ck = load_checkpoint(path, map_location=resolve_device(kwargs.get("device", "auto")), model=model)
        if "optimizer" not in kwargs:  # rebuild the optimizer kind that was saved (its state follows)
            saved = {label: name for name, label in OPTIMIZER_LABELS.items()}.get(ck.get("optimizer_name"))
            if saved is not None:
                kwargs["optimizer"] = saved
        trainer = cls(model, train_data, val_data, **kwargs)
        restore(trainer, ck, path)
        return trainer

    def on(self, event: Event | str, handler: Callable[..., Any], every: int = 1) -> RemovableHandle:
        """Call ``handler(trainer, **info)`` at ``event`` (see :mod:`nnwidgets.events`);
        returns a handle with ``.remove()``."""
        return self._bus.on(event, handler, every=every)

    # ------------------------------------------------------------------ internals
    def _begin(self, epochs: int | None, background: bool) -> None:
        control = self._control
        with control.lock:
            if control.active:
                raise RuntimeError("the trainer is already running; use pause()/stop() or wait()")
            unfinished = control.state in ("paused", "stopped", "failed") and self.epoch < self._target_epochs
            if epochs is not None:
                self._target_epochs = self.epoch + int(epochs)
            elif not unfinished:
                self._target_epochs = self.epoch + self.epochs
            owners.claim(self)  # another Trainer training this model: refused before the model is touched
            if control.state == "failed":
                self._loop.batch_iter = self._loop.pending_batch = None
            self.error = None
            control.begin(background)

    def _restored(self, epoch: int, step: int, target_epochs: int, history: History) -> None:
        """Counters and history from a checkpoint (:func:`nnwidgets.checkpoint.restore`)."""
        with self._control.lock:
            self.epoch, self.step, self._target_epochs, self.history = epoch, step, target_epochs, history
            self._control.move("stopped" if epoch < target_epochs else "completed")

    def _record(self, kind: str, *, name: str = "", old: Any = None, new: Any = None, message: str = "") -> None:
        ev = self.history.append_event(kind, step=self.step, epoch=self.epoch,
                                       time_s=self._ledger.elapsed(), name=name, old=old, new=new,
                                       message=message)
        if kind == "notice":
            self._bus.fire(Event.NOTICE, self, **ev)

    def __repr__(self) -> str:
        return (f"Trainer(state={self.state!r}, epoch={self.epoch}/{self.target_epochs}, step={self.step}, "
                f"device={self.device}, optimizer={type(self.optimizer).__name__})")
