"""Targets as pandas and numpy give them, before they are a tensor: the fix that works.

``torch.as_tensor`` turns numbers into a tensor, but not strings: class names ("Adelie",
"Gentoo") must become integer codes first. Used by :mod:`nnwidgets.checks.targets` for its
``target_dtype`` errors.
"""
from __future__ import annotations

from typing import Any

__all__ = ["is_text", "target_type_message"]

_FACTORIZE = ("codes, classes = pd.factorize(df[col]); y = torch.tensor(codes) (int64; classes holds the names), "
              "or y = torch.tensor(df[col].astype('category').cat.codes.values).long()")


def is_text(y: Any) -> bool:
    """True for strings or a list/tuple/array/Series of strings (object, str or bytes dtype)."""
    if isinstance(y, (str, bytes)):
        return True
    if isinstance(y, (list, tuple)):
        return bool(y) and all(isinstance(v, (str, bytes)) for v in y)
    kind = getattr(getattr(y, "dtype", None), "kind", None)
    if kind in ("O", "U", "S", "T"):  # numpy object/str/bytes, numpy 2 StringDType
        return True
    return str(getattr(y, "dtype", "")) in ("string", "str", "category")


def target_type_message(y: Any) -> str:
    """What the targets are and the fix, for targets that are not a real-valued tensor."""
    if is_text(y):
        values = [y] if isinstance(y, (str, bytes)) else list(y)[:3]
        return (f"Targets are strings ({type(y).__name__}, e.g. {values}), but a loss needs numbers: int64 class "
                f"indices 0..C-1. Fix: {_FACTORIZE}.")
    dtype = getattr(y, "dtype", None)
    found = f"{type(y).__name__} of dtype {dtype}" if dtype is not None else type(y).__name__
    return (f"Targets must be a real-valued torch.Tensor, got {found}. Expected int64 class labels or float32 "
            "values; fix: y = torch.as_tensor(y) (for class names: pd.factorize(df[col])[0]).")
