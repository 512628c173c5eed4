"""A run from start to end: prepare, loop, end in a state; and the step-boundary work.

:meth:`Runner.run` reads top to bottom: timing and threads start, the first batch is checked
once per Trainer (:meth:`Runner.prepare`), the run's handlers are attached, ``FIT_STARTED``
fires, the :class:`~nnwidgets.engine.loop.Loop` runs its epochs, and whatever ends it (all
epochs, ``stop()``, a pause of a blocking ``fit()``, Ctrl-C, an error) becomes one ending in
:meth:`Runner.finish`: ``completed``, ``stopped``, ``paused`` or ``failed``, recorded in the
history, set through :class:`~nnwidgets.engine.control.RunControl` and announced by exactly one
of ``FIT_COMPLETED`` / ``STOPPED`` / ``EXCEPTION_RAISED``.

:meth:`Runner.attend` is what the loop does at a step boundary when another thread asked for
something: apply settings and freezes, stop, pause (and wait), take one step.
"""
from __future__ import annotations

from typing import Any

from torch import nn

from .. import hyperparams as hp
from .._compiled import named_modules
from .._errors import explain
from .._metrics import MetricSet
from .._schedule import lr_set_message
from .._setup import prepare_first_batch
from ..data import DataError
from . import owners
from .control import PauseRun, StopRun
from .events import Event
from .loop import WARMUP_STEPS, Where

__all__ = ["Runner"]


class Runner:
    """Starts and ends the runs of one Trainer (held as ``trainer._runner``)."""

    def __init__(self, trainer: Any) -> None:
        self.t = trainer
        self._mode_at_start = True  # model.train() mode before the run, put back at its end
        self.interrupted = False  # the last run ended by Ctrl-C (KeyboardInterrupt)

    def run(self) -> None:
        try:
            self._run()
        finally:
            owners.release(self.t)  # registered by Trainer._begin (owners.claim)

    def _run(self) -> None:
        t, loop, control = self.t, self.t._loop, self.t._control
        self.interrupted = False
        t._ledger.start_run()
        notice = t._tuner.begin(t.device)
        with control.lock:
            control.move("running")
        self._mode_at_start = t.model.training
        t.model.train()
        loop.phase = "training"
        ending, message, how = "completed", "training completed", None
        try:
            if t._prepared is None:
                self.prepare()
            loop.warm_until = WARMUP_STEPS  # only the very first steps of a trainer are flushed one by one
            loop.snapshot(start=True)
            t._ledger.restart_window()  # the first-batch checks are no step time
            if notice:
                t._record("notice", name="threads", message=notice)
            t._bus.fire(Event.FIT_STARTED, t, epoch=t.epoch, step=t.step)
            loop.run_epochs()
        except StopRun:
            ending, message = "stopped", f"stopped at epoch {t.epoch}, step {t.step}"
        except PauseRun:
            ending, message = "paused", f"paused at epoch {t.epoch}, step {t.step}"
        except KeyboardInterrupt:
            ending, message, how = "stopped", f"interrupted at epoch {t.epoch}, step {t.step}", "interrupted"
            self.interrupted = True
        except BaseException as e:  # noqa: BLE001 - user code may raise anything; the kernel must live
            t._guard.open = False
            where = loop.where
            e = explain(e, where, t.epoch, t.step, t._prepared.width if t._prepared is not None else None)
            ending, t.error = "failed", e
            message = f"{type(e).__name__} during {where} at epoch {t.epoch}, step {t.step}: {e}"
            if hasattr(e, "add_note"):
                e.add_note(f"nnwidgets: the run failed during {where} at epoch {t.epoch}, step {t.step}; "
                           "history is kept and the model holds the weights of the last completed step")
        self.finish(ending, message, how)

    def finish(self, ending: str, message: str, how: str | None = None) -> None:
        """End the run in state ``ending``; the history's state event is named ``how``
        (default: the state; ``"interrupted"`` for Ctrl-C), so views need not parse ``message``."""
        t, loop, control = self.t, self.t._loop, self.t._control
        t._guard.open = False
        loop.phase = None
        try:
            loop.flush()
            if ending != "failed" and t._grads is not None:
                t._grads.last(t)  # the gradient view ends at the run's last step
        except DataError as e:  # a buffered batch broke a first-batch decision (nnwidgets.checks.batch_guard)
            if ending != "failed":
                ending, t.error = "failed", e
                message = f"DataError at epoch {t.epoch}, step {t.step}: {e}"
        except Exception:  # noqa: BLE001 - a failing flush must not hide the run's own ending
            t._ledger.discard()
        t.optimizer.zero_grad(set_to_none=True)
        t.model.train(self._mode_at_start)
        t._tuner.end()
        t._ledger.end_run()
        with control.lock:
            if control.pending:  # a set()/freeze() after the last step (e.g. in validation)
                self.apply_pending()
            control.move(ending, message, kind="error" if ending == "failed" else "state", name=how)
            control.end()
        event = {"completed": Event.FIT_COMPLETED, "failed": Event.EXCEPTION_RAISED}.get(ending, Event.STOPPED)
        try:
            t._bus.fire(event, t, message=message, error=t.error)
        except Exception:  # noqa: BLE001
            pass

    def prepare(self) -> None:
        """Check the first batch; decide task, loss and metrics; attach the run's handlers."""
        t, opts, loop = self.t, self.t._options, self.t._loop
        loop.where = Where.FIRST_BATCH
        t._guard.enter()  # an interrupt here leaves nothing half-built
        prep = prepare_first_batch(t.model, t.train_data, t.device, task=opts.task, loss=opts.loss,
                                   metrics=opts.metrics, macro=opts.macro, custom_step=opts.step is not None,
                                   timeout_s=t.first_batch_timeout_s)
        t._guard.open = False
        if isinstance(prep.loss_fn, nn.Module):
            prep.loss_fn.to(t.device)
        t._prepared = prep
        if prep.loader is not t.train_data:
            t.train_data = prep.loader
        loop.train_metrics = MetricSet(prep.task, prep.metrics, t.device, prep.threshold)
        loop.val_metrics = MetricSet(prep.task, {k: m.clone() for k, m in prep.metrics.items()}, t.device,
                                     prep.threshold)
        from ..checks.base import report
        from ..handlers import attach_run_handlers
        for n in prep.notices:  # the first-batch checks' notices: the same path as every report
            report(t, n.message, n.code)
        for n in attach_run_handlers(t, prep):
            t._record("notice", name=n.code, message=n.message)

    def attend(self) -> None:
        """Everything requested from other threads, handled at a step boundary."""
        t, loop, control = self.t, self.t._loop, self.t._control
        t._guard.check()  # a Ctrl-C deferred during the last step (fit() on the main thread)
        with control.lock:
            control.attention = False
            if control.pending:
                loop.flush()
                self.apply_pending()
            if control.stop_requested:
                raise StopRun()
            if not control.pause_requested or control.grant_step():
                return
            loop.flush()
            if not control.background:
                raise PauseRun()
            control.move("paused", f"paused at epoch {t.epoch}, step {t.step}")
            loop.phase = None
            control.hold(self.apply_pending)
            if control.stop_requested:
                raise StopRun()
            control.grant_step()
            t._ledger.restart_window()  # the pause is no step time
            control.attention = True
            loop.phase = "training"
            control.move("running", f"resumed at epoch {t.epoch}, step {t.step}", name="resumed")

    def apply_pending(self) -> None:
        """Apply waiting settings and freezes (under the control's lock), recording each."""
        t = self.t
        changes, frozen = t._control.take()
        for name, old, new in hp.apply_settings(changes, t.optimizer, t.model, t.scheduler):
            message = f"{name} changed from {old:g} to {new:g}" if old is not None else f"{name} set to {new:g}"
            if name == "lr" and t.scheduler is not None:
                message += "; " + lr_set_message(t.scheduler, new)
            t._record("setting", name=name, old=old, new=new, message=message)
            t._bus.fire(Event.SETTING_CHANGED, t, name=name, old=old, new=new)
        modules = named_modules(t.model)
        for layer, flag in frozen.items():
            for p in modules[layer].parameters():
                p.requires_grad_(not flag)
            t._record("setting", name=f"frozen:{layer}", old=not flag, new=flag,
                      message=f"layer {layer} {'frozen' if flag else 'unfrozen'}")
