"""Checkpoints that ``torch.load`` reads with its safe default (``weights_only=True``).

A checkpoint is a plain dict: state dicts of the model and optimizer, counters and settings
as Python numbers, and the history as lists of Python floats/ints/strings. Nothing needs
unpickling of arbitrary classes, so loading one never asks for ``weights_only=False``.

Nothing is lost on a failure:

* :func:`save_checkpoint` writes a temporary file in the target folder and ``os.replace``-s it
  into place, so a save that fails half-way (disk full, an interrupt) leaves the previous
  checkpoint at that path as it was (a rename within one folder is atomic on POSIX and Windows).
* :func:`load_checkpoint` and :meth:`Trainer.load <nnwidgets.engine.Trainer.load>` check the
  whole file - its structure, the history, and that the weights fit the model key by key and
  shape by shape - before anything is put into the caller's model or optimizer.

Every failure is a :class:`CheckpointError` naming the path, what is wrong and the fix; the
error of torch or the operating system is kept as its ``__cause__``.
"""
from __future__ import annotations

import contextlib
import os
import pickle
import uuid
from typing import Any

import torch

from ._compiled import load_plain_state_dict, plain_state_dict
from .history import History

__all__ = ["FORMAT", "CheckpointError", "checkpoint_dict", "save_checkpoint", "load_checkpoint", "check_model",
           "restore"]

FORMAT = "nnwidgets-checkpoint-1"
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since PyTorch 1.6 is a zip archive


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be written or read, or that does not fit the model."""


def checkpoint_dict(trainer: Any) -> dict[str, Any]:
    """The checkpoint of ``trainer`` as a dict of state dicts and plain Python values.

    The model's keys are its plain names: a ``torch.compile``d model is saved without the
    ``_orig_mod.`` prefix, so the checkpoint loads into the plain model."""
    return {
        "format": FORMAT,
        "model": plain_state_dict(trainer.model.state_dict()),
        "optimizer": trainer.optimizer.state_dict(),
        "optimizer_name": type(trainer.optimizer).__name__,
        "epoch": int(trainer.epoch),
        "step": int(trainer.step),
        "target_epochs": int(trainer.target_epochs),
        "task": str(trainer.task),
        "settings": {k: (None if v is None else float(v)) for k, v in trainer.settings.items()},
        "history": trainer.history.to_dict(),
    }


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def save_checkpoint(trainer: Any, path: str | os.PathLike) -> str:
    """Write ``trainer``'s checkpoint to ``path`` (parent folders created); returns the path.

    The file is written next to ``path`` under a temporary name and renamed into place, so an
    existing checkpoint at ``path`` is replaced only by a complete one.

    Raises:
        RuntimeError: while a step is running (pause or stop the trainer first).
        CheckpointError: ``path`` is a folder, the folder cannot be created or written, or
            writing failed (e.g. the disk is full); the previous file at ``path`` is unchanged.
    """
    if trainer.state == "running":
        raise RuntimeError("cannot save while training runs; pause() or stop() first")
    target = os.fspath(path)
    if os.path.isdir(target):
        raise CheckpointError(f"cannot save a checkpoint to {target}: it is a folder; give a file name, "
                              f"e.g. {os.path.join(target, 'checkpoint.pt')}")
    folder = os.path.dirname(os.path.abspath(target))
    tmp = os.path.join(folder, f".{os.path.basename(target)}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        os.makedirs(folder, exist_ok=True)
        handle = open(tmp, "xb")  # noqa: SIM115 - closed below; mode from the umask like any new file
    except OSError as e:
        raise CheckpointError(f"cannot save a checkpoint to {target}: the folder {folder} cannot be written "
                              f"({_first_line(e)}); choose a folder you can write to") from e
    try:
        with handle:
            torch.save(checkpoint_dict(trainer), handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if not isinstance(e, Exception):  # KeyboardInterrupt: the old file stays, the interrupt goes on
            raise
        raise CheckpointError(f"could not write the checkpoint {target} ({_first_line(e)}); any previous file "
                              "there is unchanged. Check the free disk space and that the folder is writable, "
                              "then save again") from e
    return str(path)


def _read_error(path: str, e: BaseException) -> CheckpointError:
    """A CheckpointError for a ``torch.load`` that raised ``e`` (what is wrong, and the fix)."""
    if isinstance(e, IsADirectoryError) or os.path.isdir(path):
        return CheckpointError(f"cannot load {path}: it is a folder; pass the file that trainer.save() wrote")
    if isinstance(e, FileNotFoundError):
        return CheckpointError(f"cannot load {path}: no such file (check the name and the working folder "
                               f"{os.getcwd()})")
    if isinstance(e, OSError):
        return CheckpointError(f"cannot load {path}: the file cannot be read ({_first_line(e)})")
    with contextlib.suppress(OSError), open(path, "rb") as f:
        start = f.read(4)
        if start and start != _ZIP_MAGIC and not start.startswith(b"\x80"):  # neither zip nor pickle: not
            return CheckpointError(f"cannot load {path}: it is not a PyTorch file ({_first_line(e)}); pass a "
                                   "checkpoint written by trainer.save(path)")  # a checkpoint, never "unsafe"
    if isinstance(e, pickle.UnpicklingError) and "weights only" in str(e).lower():
        return CheckpointError(
            f"{path} cannot be loaded safely: it holds Python objects that torch.load(weights_only=True) "
            "refuses (the default since PyTorch 2.6, because unpickling can run arbitrary code). "
            "nnwidgets will not retry unsafely. If you trust the file, load it with "
            "torch.load(path, weights_only=False) yourself and save model.state_dict() instead. "
            f"Detail: {str(e).splitlines()[0]}")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        head = b""
    if not head:
        return CheckpointError(f"cannot load {path}: the file is empty (a save that never finished?); "
                               "use an earlier checkpoint or save again")
    if head == _ZIP_MAGIC:
        return CheckpointError(f"cannot load {path}: the file is damaged or incomplete (truncated by an "
                               "interrupted copy or download, or a save from an older version that failed "
                               f"half-way; {_first_line(e)}); use an earlier checkpoint or save again")
    return CheckpointError(f"cannot load {path}: it is not a PyTorch file ({_first_line(e)}); pass a "
                           "checkpoint written by trainer.save(path)")


def _check_structure(path: str, ck: Any) -> None:
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an nnwidgets checkpoint (no format key {FORMAT!r}); "
                              "for a bare state dict use model.load_state_dict(torch.load(path))")
    problems = []
    if not isinstance(ck.get("model"), dict):
        problems.append("no model state dict")
    opt = ck.get("optimizer")
    if not (isinstance(opt, dict) and isinstance(opt.get("param_groups"), list) and isinstance(opt.get("state"), dict)):
        problems.append("no optimizer state dict")
    for key in ("epoch", "step"):
        if not (isinstance(ck.get(key), int) and ck[key] >= 0):
            problems.append(f"{key} is {ck.get(key)!r}, not a count >= 0")
    if not isinstance(ck.get("history"), dict):
        problems.append("no history")
    else:
        try:
            History.from_dict(ck["history"])
        except Exception as e:  # noqa: BLE001 - any malformed column
            problems.append(f"a history that cannot be read ({_first_line(e)})")
    if problems:
        raise CheckpointError(f"{path} is an incomplete nnwidgets checkpoint: {'; '.join(problems)}; "
                              "use an earlier checkpoint or save again")


def check_model(ck: dict[str, Any], model: torch.nn.Module, path: str | os.PathLike = "the checkpoint") -> None:
    """Check that the weights of checkpoint ``ck`` fit ``model`` (same keys, same shapes),
    without changing ``model``.

    Raises:
        CheckpointError: keys missing or unexpected, or shapes that differ (the first few named).
    """
    own, saved = plain_state_dict(model.state_dict()), plain_state_dict(ck["model"])
    missing = [k for k in own if k not in saved]
    unexpected = [k for k in saved if k not in own]
    shapes = [f"{k}: checkpoint {tuple(saved[k].shape)}, model {tuple(own[k].shape)}" for k in own
              if k in saved and torch.is_tensor(own[k]) and torch.is_tensor(saved[k]) and saved[k].shape != own[k].shape]
    problems = []
    for label, items in (("missing in the checkpoint", missing), ("not in the model", unexpected),
                         ("shapes differ", shapes)):
        if items:
            more = f" and {len(items) - 5} more" if len(items) > 5 else ""
            problems.append(f"{label}: {', '.join(items[:5])}{more}")
    if problems:
        raise CheckpointError(f"{os.fspath(path)} does not fit this model ({'; '.join(problems)}); the model "
                              "was not changed. Build the model with the same layers and sizes as the one "
                              "that was saved, then load again")


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu", *,
                    model: torch.nn.Module | None = None) -> dict[str, Any]:
    """Read and check a checkpoint with ``torch.load(weights_only=True)``.

    Args:
        path: a file written by :meth:`Trainer.save <nnwidgets.engine.Trainer.save>`.
        map_location: device the tensors are loaded to.
        model: when given, also check that the weights fit it (:func:`check_model`); the
            model is not changed.

    Raises:
        CheckpointError: the path is missing, a folder or unreadable; the file is empty,
            damaged or incomplete (truncated), or not a PyTorch file; it needs
            ``weights_only=False`` (e.g. a whole pickled module, or numpy scalars inside):
            since PyTorch 2.6 ``torch.load`` refuses to unpickle arbitrary objects, because a
            pickle can run any code, and nnwidgets never retries unsafely (if you trust the
            file, load it yourself with ``torch.load(path, weights_only=False)`` and re-save
            the state dicts); it is a valid torch file but not a (complete) nnwidgets
            checkpoint; or it does not fit ``model``.
    """
    name = os.fspath(path)
    try:
        ck = torch.load(name, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - every failure becomes one explained error
        raise _read_error(name, e) from e
    _check_structure(name, ck)
    if model is not None:
        check_model(ck, model, name)
    return ck


def restore(trainer: Any, ck: dict[str, Any], path: str | os.PathLike = "the checkpoint") -> None:
    """Put a loaded checkpoint into ``trainer`` (model, optimizer, counters, history); every
    check is done before the first change. Model keys are matched by their plain names, so a
    compiled or plain model takes a checkpoint of either (also one saved with ``_orig_mod.`` keys).

    Raises:
        CheckpointError: the weights do not fit the model, or the optimizer state (same
            optimizer kind) does not fit the optimizer's parameter groups.
    """
    check_model(ck, trainer.model, path)
    history = History.from_dict(ck["history"])
    same_kind = ck.get("optimizer_name") == type(trainer.optimizer).__name__
    if same_kind:
        saved = [len(g.get("params", ())) for g in ck["optimizer"]["param_groups"]]
        own = [len(g["params"]) for g in trainer.optimizer.param_groups]
        if saved != own:
            raise CheckpointError(f"{os.fspath(path)}: the optimizer state holds parameter groups of sizes "
                                  f"{saved}, this optimizer {own}; the model was not changed. Build the "
                                  "optimizer as when it was saved (same groups), or pass another optimizer kind")
    load_plain_state_dict(trainer.model, ck["model"])
    if same_kind:
        trainer.optimizer.load_state_dict(ck["optimizer"])
    epoch = int(ck["epoch"])
    trainer._restored(epoch, int(ck["step"]), int(ck.get("target_epochs", epoch)), history)
