"""The two kinds of report the first-batch checks give: a :class:`Notice` (something fixed)
and a :class:`DataError` (something that cannot be trained on as given). Public through
:mod:`nnwidgets.data`."""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DataError", "Notice"]


class DataError(ValueError):
    """A batch, target, loss or loader that cannot be trained on as given.

    The message says what was found (shapes, dtypes, values), what is expected
    and the plain-PyTorch fix; ``code`` is a short stable id (``"labels_one_based"``).
    """

    def __init__(self, message: str, code: str = "data_error") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Notice:
    """Something nnwidgets fixed in the data, and how to fix it in plain PyTorch.

    Attributes:
        code: Short id, e.g. ``"cast_features"``, ``"squeeze_target"``.
        message: What was found, what was done, and the plain-PyTorch fix.
    """

    code: str
    message: str
