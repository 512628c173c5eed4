"""The ``%%train`` cell magic (also usable as the line magic ``%train``): parse the line, build a :class:`~nnwidgets.Trainer` and a
``TrainingPanel`` exactly as a Python user would, show the panel, start training.

No training logic lives here. Loaded by ``%load_ext nnwidgets`` (see
:func:`nnwidgets.load_ipython_extension`); the widget classes are imported on first use.
"""
from __future__ import annotations

import argparse
import difflib
import os
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from . import _frontend
from ._names import OPTIMIZERS, TASKS

__all__ = ["TrainMagics", "register", "WAIT_ENV", "DEFAULT_PANEL_NAME"]

WAIT_ENV = "NNWIDGETS_WAIT"
"""Environment variable: ``1`` makes every ``%%train`` behave as if ``--wait`` was given (Run All
in a front end); ``0`` never waits, not even where nbclient runs the notebook (see
:mod:`nnwidgets._frontend`); unset or empty: wait under nbclient / nbconvert / papermill only."""

DEFAULT_PANEL_NAME = "_nnw_panel"
"""Notebook variable that always holds the panel of the latest ``%%train`` cell."""

_OPTIMIZERS = OPTIMIZERS
_TASKS = ("auto",) + TASKS


def _wait_from_env() -> bool | None:
    """``NNWIDGETS_WAIT``: True, False (``0``/``false``/``no``/``off``) or None (unset/empty)."""
    value = os.environ.get(WAIT_ENV, "").strip().lower()
    return None if not value else value not in ("0", "false", "no", "off")


def _lookup(user_ns: dict, expr: str, role: str) -> Any:
    """The notebook object named ``expr`` (a variable name, or an expression such as
    ``loaders[0]``), or a UsageError that names the closest defined variable."""
    if expr.isidentifier():
        if expr in user_ns:
            return user_ns[expr]
        public = [k for k in user_ns if not k.startswith("_")]
        close = difflib.get_close_matches(expr, public, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UsageError(f"{role}: name {expr!r} is not defined in the notebook{hint}")
    try:
        return eval(expr, user_ns)  # noqa: S307 - the notebook's own expression, in its own namespace
    except Exception as e:  # noqa: BLE001
        raise UsageError(f"{role}: could not evaluate {expr!r}: {type(e).__name__}: {e}") from None


def _threads_arg(text: str) -> int | str | None:
    """``--threads``: ``auto``, ``torch`` (leave torch's setting: ``threads=None``) or a count."""
    if text in ("auto", "torch"):
        return None if text == "torch" else "auto"
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"takes auto, torch or a thread count >= 1, got {text!r}")
    return int(text)


def _check_loader(loader: Any, expr: str, role: str) -> None:
    """A UsageError when ``loader`` is not iterable or yields no batch."""
    from torch import nn
    if not hasattr(loader, "__iter__") or isinstance(loader, (nn.Module, str, bytes)):
        raise UsageError(f"{role} {expr!r} is a {type(loader).__name__}, not a DataLoader "
                         "or an iterable of (x, y) batches")
    try:
        empty = len(loader) == 0
    except TypeError:  # no length: look at the first batch of a fresh iterator
        if iter(loader) is loader:
            return  # a one-shot iterator: the Trainer refuses it with its own message
        empty = next(iter(loader), None) is None
    if empty:
        raise UsageError(f"{role} {expr!r} yields no batches (is the dataset empty, or "
                         "drop_last=True with fewer rows than batch_size?)")


def _resolve_loss(user_ns: dict, name: str | None) -> Any:
    if name is None or name == "auto":
        return "auto"
    from .checks.targets import LOSS_NAMES, _loss_key
    if _loss_key(name) in LOSS_NAMES:
        return name
    if name in user_ns:
        return user_ns[name]
    raise UsageError(f"--loss: unknown loss {name!r}; use one of {', '.join(['auto', *LOSS_NAMES])} "
                     "or the name of a loss module/function defined in the notebook")


def _refuse_to_replace(user_ns: dict, name: str) -> None:
    """A UsageError when ``--name NAME`` would replace a notebook variable that is not a view
    made by nnwidgets (a TrainingPanel or a text report): naming it, its type and the fix."""
    if name not in user_ns:
        return
    value = user_ns[name]
    if type(value).__module__.startswith("nnwidgets.") and hasattr(value, "trainer"):
        return  # an earlier panel: replacing it is what re-running a cell does
    raise UsageError(f"--name {name}: the notebook variable {name!r} holds a {type(value).__name__}, not a "
                     f"training panel, and %%train would replace it. Choose another --name, or add --overwrite "
                     f"to replace {name!r}.")


def reattach_hint(name: str) -> str:
    """The line shown under a panel in JupyterLab / Notebook: how to show the live run again when
    the panel cannot be (a reopened notebook or a reloaded page reads "model not found")."""
    return (f"Panel bound to {name}: after reopening the notebook or reloading the page, run "
            f"display({name}) in a new cell to show the live run again.")


def _display_panel(panel: Any, name: str | None = None) -> Any:
    """Show the panel (and, outside Voilà, how to show it again under ``name``); returns the
    panel's display handle (``None`` where display gives none)."""
    from IPython.display import display
    shown = panel if any(hasattr(panel, a) for a in ("_repr_mimebundle_", "_ipython_display_")) else panel.widget
    handle = display(shown, display_id=True)
    if name is not None and not _frontend.in_voila():  # a Voilà page reload is a new kernel: nothing to re-attach
        import html
        text = reattach_hint(name)
        display({"text/plain": text, "text/html": f'<div class="nnw-reattach" style="color:#777;font-size:12px">'
                                                  f"{html.escape(text)}</div>"}, raw=True)
    return handle


@magics_class
class TrainMagics(Magics):
    """IPython magics of nnwidgets (one instance per shell; it remembers the panels it made)."""

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell, **kwargs)
        from ._reruns import Runs
        self._runs = Runs()

    @magic_arguments("%train")  # usage line reads "%%train ..."
    @argument("model", help="name of the torch.nn.Module to train")
    @argument("train_loader", help="name of the training DataLoader (or re-iterable of (x, y) batches)")
    @argument("--val", metavar="VAL", default=None, help="name of the validation DataLoader")
    @argument("--epochs", type=int, default=10, metavar="N", help="epochs to train (default 10)")
    @argument("--lr", type=float, default=None, metavar="X", help="learning rate (default 0.01)")
    @argument("--momentum", type=float, default=None, metavar="X",
              help="momentum (SGD/RMSprop) or Adam's first beta")
    @argument("--weight-decay", type=float, default=None, metavar="X", help="L2 weight decay")
    @argument("--dropout", type=float, default=None, metavar="P",
              help="dropout probability p for every nn.Dropout of the model")
    @argument("--optimizer", default="sgd", choices=_OPTIMIZERS, help="optimizer (default sgd)")
    @argument("--loss", default=None, metavar="NAME",
              help="auto, cross_entropy, nll, bce, mse, l1, smooth_l1, huber, or a notebook name")
    @argument("--task", default="auto", choices=_TASKS, help="task (default: from loss, output and targets)")
    @argument("--device", default="auto", help="auto (cuda, mps, cpu), cpu, cuda, cuda:N or mps")
    @argument("--seed", type=int, default=None, metavar="N", help="torch.manual_seed for shuffling/dropout")
    @argument("--threads", type=_threads_arg, default="auto", metavar="N|auto|torch",
              help="torch threads of the training thread: auto (measured: 1 or torch's count, whichever "
                   "trains faster), a count, or 'torch' to leave torch's setting")
    @argument("--name", default=None, metavar="NAME",
              help=f"bind the panel to this notebook variable (default {DEFAULT_PANEL_NAME}); "
                   "its .trainer is the Trainer")
    @argument("--overwrite", action="store_true",
              help="let --name replace a notebook variable that is not a training panel")
    @argument("--wait", action="store_true",
              help=f"block until training ends (Run All); also when ${WAIT_ENV}=1, and by default where "
                   "nbclient / nbconvert --execute / papermill runs the notebook")
    @argument("--no-start", action="store_true", help="show the panel but do not start training")
    @line_cell_magic
    def train(self, line: str, cell: str | None = None) -> None:
        """Train MODEL on TRAIN_LOADER with a live, steerable panel.

        The cell body (optional) runs first in the notebook namespace, so a model and loaders
        built there start from fresh weights each time the cell is re-run. Then a
        nnwidgets.Trainer is built from the options, its TrainingPanel is shown, and
        training starts in a background thread: the cell returns at once and the panel's
        sliders (learning rate, momentum, weight decay, dropout) change the running loop.
        Re-running a cell stops its earlier run and closes that panel (a cell is known by the
        notebook's cell id, else by --name, else by the model's variable name); an earlier run
        of the same model object in another cell is stopped and its panel's buttons turned
        off. The new panel's notices say so. IPython refuses a
        %%train cell without a body: write the line as %train (single %) instead.

        With --wait (or the environment variable NNWIDGETS_WAIT=1, for Run All, where
        sliders cannot act) the cell blocks until training ends, and a failed run is
        reported as a short error. Where nbclient runs the notebook (jupyter nbconvert
        --execute, papermill), which shuts the kernel down after the last cell, the cell
        waits by default (NNWIDGETS_WAIT=0: never) and, when the run has ended, replaces the
        panel's output with a static summary (final numbers, loss curve, epoch table) that the
        saved notebook shows. Without a widget front end (terminal
        IPython) no panel is made: the run trains in the foreground and prints one line
        per epoch; Ctrl-C stops it at a step boundary. The panel is bound to the notebook
        variable given by --name, or else to _nnw_panel; panel.trainer is the Trainer
        and panel.trainer.history its History. --name refuses to replace a notebook variable
        that is not a panel unless --overwrite is given. A line under the panel says how to show
        the live run again after the notebook is reopened: display(NAME) in a new cell.

        Example::

            %%train model train_loader --val val_loader --epochs 30 --lr 0.05 --momentum 0.9 --name run
            model = nn.Sequential(nn.Linear(9, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 3))
        """
        args = parse_argstring(TrainMagics.train, line)
        shell = self.shell
        if args.name is not None and not args.name.isidentifier():
            raise UsageError(f"--name: {args.name!r} is not a valid Python variable name")
        if args.name is not None and not args.overwrite:
            _refuse_to_replace(shell.user_ns, args.name)
        if cell and cell.strip():
            result = shell.run_cell(cell, store_history=False)
            if not result.success:
                err = result.error_in_exec or result.error_before_exec
                raise UsageError(f"the cell body failed ({type(err).__name__}: {err}); nothing was trained")
        ns = shell.user_ns
        model = _lookup(ns, args.model, "model")
        from torch import nn
        if not isinstance(model, nn.Module):
            raise UsageError(f"model {args.model!r} is a {type(model).__name__}, not a torch.nn.Module")
        train_data = _lookup(ns, args.train_loader, "train_loader")
        _check_loader(train_data, args.train_loader, "train_loader")
        val_data = None
        if args.val is not None:
            val_data = _lookup(ns, args.val, "--val")
            _check_loader(val_data, args.val, "--val")
        loss = _resolve_loss(ns, args.loss)
        from ._reruns import cell_key, note
        key = cell_key(shell, args.model, args.name)
        retired = self._runs.retire(key, model, ns, args.name)

        from .engine import Trainer
        try:
            trainer = Trainer(model, train_data, val_data, task=args.task, loss=loss, optimizer=args.optimizer,
                              lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
                              dropout=args.dropout, epochs=args.epochs, device=args.device, seed=args.seed,
                              threads=args.threads)
        except (TypeError, ValueError, RuntimeError) as e:
            raise UsageError(str(e)) from None
        front = _frontend.front_end(shell)
        from ._output_parent import route_run_output
        route_run_output(trainer, shell)  # the training thread's prints appear under this cell
        if front == _frontend.TEXT:
            from ._text import TextReport
            view: Any = TextReport(trainer)
        else:
            from .widgets.panel import TrainingPanel
            view = TrainingPanel(trainer)
        self._runs.add(view, key)
        for message in retired:
            note(view, message)
        ns[args.name or DEFAULT_PANEL_NAME] = view
        if front == _frontend.TEXT:
            if not args.no_start:
                _fit_text(view)
            return
        # no re-attach hint in a batch run (nbclient, nbconvert): its saved output has no live run to show again
        shown = _display_panel(view, None if front == _frontend.BATCH else args.name or DEFAULT_PANEL_NAME)
        if args.no_start:
            return
        env = _wait_from_env()
        wait = args.wait or bool(env) or (env is None and front == _frontend.BATCH)
        if wait and not args.wait and env is None:
            note(view, "nbclient runs this notebook (nbconvert --execute, papermill): nothing can steer the run "
                       "and the kernel stops after the last cell, so this cell waits for the run to end; "
                       f"{WAIT_ENV}=0 trains in the background instead")
        trainer.start()
        if wait:
            try:
                _wait(trainer)
            finally:
                if shown is not None and front == _frontend.BATCH and hasattr(view, "static_bundle"):
                    shown.update(view.static_bundle(), raw=True)  # the saved notebook shows the run, statically
                elif shown is not None:
                    shown.update(view)  # the same live view; its bundle now carries the static summary too


    @line_magic
    def nnwidgets(self, line: str) -> Any:
        """%nnwidgets check: which front-end pieces are present (ipywidgets, its JupyterLab and
        Notebook halves, bqplot and anywidget with their lab extensions, ipykernel, Voilà),
        where this kernel runs, and the one command that installs what is missing. Returns
        the nnwidgets.check() result (shown as a table)."""
        if line.split() != ["check"]:
            raise UsageError("usage: %nnwidgets check  (which front-end pieces are present and the command "
                             "that installs what is missing)")
        from ._check import check
        return check(self.shell)


def _failure(trainer: Any) -> str:
    events = [e for e in trainer.history.event_records if e.get("kind") == "error"]
    return events[-1]["message"] if events else f"{type(trainer.error).__name__}: {trainer.error}"


def _fit_text(report: Any) -> None:
    """Train in the foreground, printing one line per epoch; a failure becomes one short
    UsageError line (Ctrl-C ends the run at a step boundary, see :mod:`nnwidgets._interrupt`)."""
    try:
        report.trainer.fit()
    except Exception:  # noqa: BLE001 - the run recorded it; one line instead of a traceback
        raise UsageError(f"training failed: {_failure(report.trainer)}") from None
    report.end()


def _wait(trainer: Any) -> None:
    """Block until the run ends; a failure or Ctrl-C becomes one short UsageError line."""
    try:
        trainer.wait()
    except KeyboardInterrupt:
        trainer.stop()
        trainer.wait(10)
        raise UsageError(f"interrupted: training stopped at epoch {trainer.epoch}, step {trainer.step}") from None
    if trainer.state == "failed":
        raise UsageError(f"training failed: {_failure(trainer)}")


def register(ipython: Any) -> None:
    """Register the ``%%train`` cell magic (and ``%train`` line magic) on an IPython shell."""
    ipython.register_magics(TrainMagics)
