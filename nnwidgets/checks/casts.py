"""The plain-PyTorch cast a message names, matched to the dtype at hand.

A float16 model is not helped by ``x.float()``: notices and errors name ``x.half()``,
``x.bfloat16()``, ``x.double()`` or ``x.to(<dtype>)`` as the dtype requires.
"""
from __future__ import annotations

import torch

__all__ = ["cast_expr"]

_METHODS = {torch.float32: "float", torch.float16: "half", torch.bfloat16: "bfloat16", torch.float64: "double",
            torch.int64: "long", torch.int32: "int", torch.bool: "bool"}


def cast_expr(var: str, dtype: torch.dtype) -> str:
    """The expression that casts tensor ``var`` to ``dtype``.

    Example:
        >>> cast_expr("x", torch.float16)
        'x.half()'
        >>> cast_expr("y", torch.uint8)
        'y.to(torch.uint8)'
    """
    method = _METHODS.get(dtype)
    return f"{var}.{method}()" if method else f"{var}.to({dtype})"
