"""Readable errors for two inputs PyTorch rejects deep inside the loader or the model (pure torch).

- a Dataset whose samples differ in length: the DataLoader's default collate fails with "stack expects
  each tensor to be equal size"; :func:`ragged_error` names the sizes and the padding fix;
- float ids fed to an ``nn.Embedding`` (categorical columns read as float from a CSV / ``df.values``):
  :func:`float_ids_error` names the dtype, whether the values are whole numbers, and ``x.long()``.
"""
from __future__ import annotations

import re
from typing import Any

import torch

from .._notices import DataError

__all__ = ["ragged_error", "float_ids_error"]

_STACK = re.compile(r"stack expects each tensor to be equal size, but got (\[[^\]]*\]) at entry (\d+) "
                    r"and (\[[^\]]*\]) at entry (\d+)")


def ragged_error(e: BaseException) -> DataError | None:
    """A DataError for the default collate's unequal-size failure on the first batch, else None."""
    m = _STACK.search(str(e)) if isinstance(e, RuntimeError) else None
    if m is None:
        return None
    err = DataError(f"The DataLoader could not stack the first batch: sample {m[2]} has shape {m[1]} and sample "
                    f"{m[4]} has shape {m[3]} (the default collate needs samples of one size). For sequences of "
                    "different lengths, pad them in a collate_fn: DataLoader(ds, batch_size=..., collate_fn=lambda b: "
                    "(torch.nn.utils.rnn.pad_sequence([x for x, _ in b], batch_first=True), torch.tensor([y for _, y "
                    "in b]))); for images, resize them to one size in the Dataset's transform.", "ragged_batch")
    err.__cause__ = e
    return err


def float_ids_error(e: BaseException, x: Any) -> DataError | None:
    """A DataError for an ``nn.Embedding`` given floating indices on the first forward, else None."""
    msg = str(e)
    if not ("'indices'" in msg and "embedding" in msg):
        return None
    found = ""
    if isinstance(x, torch.Tensor) and x.is_floating_point():
        whole = bool(torch.isfinite(x).all() and (x == x.round()).all())
        found = (f" The features are {x.dtype} {list(x.shape)}" +
                 (", all whole numbers" if whole else ", with fractional values (not ids)") + ".")
    err = DataError("The model's nn.Embedding got floating-point indices; it needs int64 (or int32) ids." + found +
                    " Fix: x = x.long() (e.g. torch.tensor(df[cat_cols].values, dtype=torch.long)); keep numeric "
                    "columns in a separate float tensor and yield ((x_num, x_cat), y) from the Dataset.",
                    "embedding_float_ids")
    err.__cause__ = e
    return err
