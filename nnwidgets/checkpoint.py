"""Checkpoints that ``torch.load`` reads with its safe default (``weights_only=True``).

A checkpoint is a plain dict: state dicts of the model and optimizer, counters and settings
as Python numbers, and the history as lists of Python floats/ints/strings. Nothing needs
unpickling of arbitrary classes, so loading one never asks for ``weights_only=False``.
"""
from __future__ import annotations

import os
import pickle
from typing import Any

import torch

from ._compiled import load_plain_state_dict, plain_state_dict
from .history import History

__all__ = ["FORMAT", "CheckpointError", "checkpoint_dict", "save_checkpoint", "load_checkpoint", "restore"]

FORMAT = "nnwidgets-checkpoint-1"


class CheckpointError(RuntimeError):
    """A file that is not a safe nnwidgets checkpoint."""


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


def save_checkpoint(trainer: Any, path: str | os.PathLike) -> str:
    """Write ``trainer``'s checkpoint to ``path`` (parent folders created); returns the path.

    Raises:
        RuntimeError: while a step is running (pause or stop the trainer first).
    """
    if trainer.state == "running":
        raise RuntimeError("cannot save while training runs; pause() or stop() first")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.save(checkpoint_dict(trainer), path)
    return str(path)


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(weights_only=True)``.

    Raises:
        CheckpointError: the file needs ``weights_only=False`` (e.g. a whole pickled module,
            or numpy scalars inside): since PyTorch 2.6 ``torch.load`` refuses to unpickle
            arbitrary objects, because a pickle can run any code. nnwidgets never retries
            unsafely; if you trust the file, load it yourself with
            ``torch.load(path, weights_only=False)`` and re-save the state dicts.
        CheckpointError: the file is a valid torch file but not an nnwidgets checkpoint.
    """
    try:
        ck = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path} cannot be loaded safely: it holds Python objects that torch.load(weights_only=True) "
            "refuses (the default since PyTorch 2.6, because unpickling can run arbitrary code). "
            "nnwidgets will not retry unsafely. If you trust the file, load it with "
            "torch.load(path, weights_only=False) yourself and save model.state_dict() instead. "
            f"Detail: {str(e).splitlines()[0]}") from e
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an nnwidgets checkpoint (no format key {FORMAT!r}); "
                              "for a bare state dict use model.load_state_dict(torch.load(path))")
    return ck


def restore(trainer: Any, ck: dict[str, Any]) -> None:
    """Put a loaded checkpoint into ``trainer`` (model, optimizer, counters, history).

    Model keys are matched by their plain names, so a compiled or plain model takes a
    checkpoint of either (also one saved with ``_orig_mod.`` keys)."""
    load_plain_state_dict(trainer.model, ck["model"])
    if ck.get("optimizer_name") == type(trainer.optimizer).__name__:
        trainer.optimizer.load_state_dict(ck["optimizer"])
    trainer.epoch, trainer.step = int(ck["epoch"]), int(ck["step"])
    trainer._target_epochs = int(ck.get("target_epochs", trainer.epoch))
    trainer.history = History.from_dict(ck["history"])
    trainer._state = "stopped" if trainer.epoch < trainer._target_epochs else "completed"
