"""Names of a ``torch.compile``d model as the user wrote them.

``torch.compile(model)`` returns a wrapper whose ``named_modules()`` and ``state_dict()``
put ``_orig_mod.`` before every name (``_orig_mod.0.weight``); a submodule compiled in place
(``model.encoder = torch.compile(model.encoder)``) gets ``encoder._orig_mod.fc.weight``.
Summaries, freeze names and checkpoints use the plain names, so a checkpoint of a compiled
model loads into the plain model and the other way round.
"""
from __future__ import annotations

from typing import Any, Mapping

from torch import nn

__all__ = ["PREFIX", "plain_name", "plain_state_dict", "named_modules", "load_plain_state_dict"]

PREFIX = "_orig_mod."


def plain_name(name: str) -> str:
    """``name`` without the ``_orig_mod`` parts a compiled wrapper adds (``"_orig_mod.0"`` -> ``"0"``)."""
    if "_orig_mod" not in name:
        return name
    return ".".join(part for part in name.split(".") if part != "_orig_mod")


def plain_state_dict(state: Mapping[str, Any]) -> dict[str, Any]:
    """A state dict with plain keys (the values are the same tensors, not copies)."""
    return {plain_name(k): v for k, v in state.items()}


def named_modules(model: nn.Module) -> dict[str, nn.Module]:
    """``{plain name: module}``; a compiled wrapper and the module it wraps share a name, and
    the wrapped module (listed after it) is the one kept."""
    return {plain_name(name): m for name, m in model.named_modules()}


def load_plain_state_dict(model: nn.Module, state: Mapping[str, Any]) -> None:
    """``model.load_state_dict(state)`` whether either side is compiled (keys matched by their
    plain names; keys the model does not know are passed on, so torch reports them).

    Raises:
        RuntimeError: missing or unexpected keys, or shapes that differ (torch's message).
    """
    own = {plain_name(k): k for k in model.state_dict()}
    model.load_state_dict({own.get(plain_name(k), k): v for k, v in state.items()})
