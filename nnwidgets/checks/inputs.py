"""Inputs that are not one tensor: how the model is called, and what its output is.

Decided once on the first batch (case C30 and model outputs that are not one tensor), replayed
on every batch by :class:`nnwidgets.data.BatchPlan` with a few attribute checks and no host sync:

* a tuple or list of tensors ``(x_num, x_cat)`` -> ``model(*x)`` when ``forward`` takes that many
  arguments, else ``model(x)``; a dict ``{"num": ..., "cat": ...}`` -> ``model(**x)`` when every
  key names a ``forward`` argument, else ``model(x)``. Each floating tensor is cast to the model's
  dtype; integer tensors (category indices for ``nn.Embedding``) are never cast.
* an output that is a tuple (an RNN's ``(output, hidden)``) -> element 0; a dict or a
  Hugging Face-style object with ``logits`` -> its logits. Anything else stops before step 1.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .casts import cast_expr
from .targets import DataError, Notice

__all__ = ["InputPlan", "plan_inputs", "pick_output", "plan_output", "describe", "move_to"]


def describe(obj: Any) -> str:
    """Short text for a batch element: ``[16, 2] torch.float32`` for a tensor, else its type."""
    if isinstance(obj, torch.Tensor):
        return f"{list(obj.shape)} {obj.dtype}"
    return type(obj).__name__


def move_to(obj: Any, device: torch.device) -> Any:
    """Tensors in (nested) tuples, lists and dicts moved to ``device`` (non_blocking)."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, (list, tuple)):
        return type(obj)(move_to(o, device) for o in obj)
    if isinstance(obj, dict):
        return {k: move_to(v, device) for k, v in obj.items()}
    return obj


def _fix(t: Any, dtype: torch.dtype | None, device: torch.device, on_cpu: bool) -> Any:
    if not isinstance(t, torch.Tensor):
        return move_to(t, device)
    if not (on_cpu and t.is_cpu):
        t = t.to(device, non_blocking=True)
    return t if dtype is None or t.dtype == dtype else t.to(dtype)


@dataclass(slots=True)
class InputPlan:
    """How nested inputs are moved, cast and passed to the model.

    Attributes:
        call: ``"args"`` (``model(*x)``), ``"kwargs"`` (``model(**x)``) or ``"one"`` (``model(x)``).
        dtypes: per element (tuple for a tuple/list, dict for a dict) the dtype a floating tensor
            is cast to, or None to leave it (integer and bool tensors, other objects).
    """

    call: str
    dtypes: Any

    def apply(self, x: Any, device: torch.device, on_cpu: bool) -> Any:
        """``x`` moved to ``device`` as it is nested, floating tensors cast (no host sync)."""
        if isinstance(x, dict):
            get = self.dtypes.get
            return {k: _fix(v, get(k), device, on_cpu) for k, v in x.items()}
        return type(x)(_fix(v, d, device, on_cpu) for v, d in zip(x, self.dtypes))

    def call_model(self, model: nn.Module, x: Any) -> Any:
        """``model(*x)``, ``model(**x)`` or ``model(x)`` as planned."""
        if self.call == "args":
            return model(*x)
        if self.call == "kwargs":
            return model(**x)
        return model(x)


def _signature(model: nn.Module) -> inspect.Signature | None:
    try:
        return inspect.signature(model.forward)
    except (TypeError, ValueError):  # builtins, C extensions
        return None


def _binds(sig: inspect.Signature | None, *args: Any, **kwargs: Any) -> bool:
    if sig is None:
        return False
    try:
        sig.bind(*args, **kwargs)
    except TypeError:
        return False
    return True


def _dtypes(x: Any, want: torch.dtype) -> tuple[Any, list[str]]:
    """Per-element cast targets and the names of the elements cast; raises on NaN/inf/complex."""
    items = list(x.items()) if isinstance(x, dict) else list(enumerate(x))
    out, cast = {}, []
    for key, v in items:
        name = f"x[{key!r}]" if isinstance(x, dict) else f"x[{key}]"
        if not isinstance(v, torch.Tensor) or not (v.is_floating_point() or v.is_complex()):
            out[key] = None
            continue
        if v.is_complex():
            raise DataError(f"Input {name} is {v.dtype} {list(v.shape)}; the model expects real {want} values. "
                            f"Fix: {name} = {name}.real, or build it as {want}.", "feature_dtype")
        if not bool(torch.isfinite(v).all()):
            raise DataError(f"Input {name} {describe(v)} of the first batch contains "
                            f"{int((~torch.isfinite(v)).sum())} NaN/inf values; the loss would be NaN from step "
                            "1. Fix: df.dropna() or df.fillna(...) before building tensors.", "nonfinite_features")
        out[key] = want if v.dtype != want else None
        if v.dtype != want:
            cast.append(f"{name} {v.dtype}")
    return (out if isinstance(x, dict) else tuple(out[i] for i in range(len(items)))), cast


def plan_inputs(model: nn.Module, x: Any, want: torch.dtype) -> tuple[InputPlan | None, list[Notice]]:
    """Decide how to call ``model`` with nested inputs ``x``.

    Args:
        model: the model; ``inspect.signature(model.forward)`` decides ``*x`` against ``x``.
        x: the first batch's inputs: a tensor (returns ``(None, [])``), a tuple/list of tensors,
            e.g. ``((N, 2) float32, (N,) int64)``, or a dict of them.
        want: the model's floating dtype, e.g. ``torch.float32``.

    Returns:
        ``(plan, notices)``: an ``inputs_call`` notice saying how the model is called, and a
        ``cast_features`` notice when floating tensors of another dtype are cast.

    Raises:
        DataError: ``input_call`` when ``forward`` takes neither the elements nor the whole
            (names what was found and the fix); ``feature_dtype`` / ``nonfinite_features`` for a
            complex or NaN/inf floating tensor; ``bad_inputs`` for an empty tuple or dict.
    """
    if isinstance(x, torch.Tensor) or not isinstance(x, (tuple, list, dict)):
        return None, []
    kind = "dict" if isinstance(x, dict) else type(x).__name__
    found = (", ".join(f"{k!r}: {describe(v)}" for k, v in x.items()) if isinstance(x, dict)
             else ", ".join(describe(v) for v in x))
    if not x:
        raise DataError(f"The batch's inputs are an empty {kind}. Each batch must be (inputs, targets) with at "
                        "least one input tensor.", "bad_inputs")
    sig = _signature(model)
    name = f"{type(model).__name__}.forward{sig if sig is not None else '(...)'}"
    params = sig.parameters if sig is not None else {}
    if isinstance(x, dict):
        by_name = all(isinstance(k, str) for k in x) and _binds(sig, **x)
        one = sig is None or _binds(sig, x)
        call = "kwargs" if by_name and (all(k in params for k in x) or not one) else "one" if one else None
    else:
        call = "args" if _binds(sig, *x) or sig is None else "one" if _binds(sig, x) else None
    if call is None:
        raise DataError(f"The batch's inputs are a {kind} of {len(x)} ({found}), but {name} takes neither "
                        f"{'model(**x)' if kind == 'dict' else 'model(*x)'} nor model(x). Fix: make forward take "
                        f"{'one argument per key' if kind == 'dict' else f'{len(x)} arguments'} (or the whole "
                        f"{kind}), or pass step=lambda model, batch: ... that calls the model and returns the loss.",
                        "input_call")
    dtypes, cast = _dtypes(x, want)
    how = {"args": "model(*x)", "kwargs": "model(**x)", "one": "model(x)"}[call]
    notices = [Notice("inputs_call", f"The batch's inputs are a {kind} of {len(x)} ({found}); calling {how} "
                      f"({name}). They are moved to the device as they are; integer tensors (category indices) "
                      "are never cast.")]
    if cast:
        notices.append(Notice("cast_features", f"Inputs {', '.join(cast)} are cast to the model's {want} on every "
                              f"batch (nn.Linear would fail with 'mat1 and mat2 must have the same dtype'). Fix in "
                              f"PyTorch: build them with dtype={want} (e.g. {cast_expr('x_num', want)})."))
    return InputPlan(call, dtypes), notices


def pick_output(output: Any, pick: tuple[str, Any]) -> Any:
    """The planned element of a model output: ``output[0]``, ``output["logits"]`` or ``output.logits``."""
    kind, key = pick
    return getattr(output, key) if kind == "attr" else output[key]


def plan_output(output: Any) -> tuple[Any, tuple[str, Any] | None, list[Notice]]:
    """Decide which tensor of the model's output the loss and metrics use.

    Args:
        output: what ``model(x)`` returned for the first batch.

    Returns:
        ``(tensor, pick, notices)``; ``pick`` is None for a tensor, else replayed per batch with
        :func:`pick_output`; an ``output_tuple`` or ``output_logits`` notice says what was chosen.

    Raises:
        DataError: ``output_type`` naming the type found and the fix.
    """
    if isinstance(output, torch.Tensor):
        return output, None, []
    kind = type(output).__name__
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        parts = ", ".join(describe(o) for o in output)
        return output[0], ("index", 0), [Notice(
            "output_tuple", f"The model returns a {kind} of {len(output)} ({parts}), e.g. an RNN's "
            f"(output, hidden); using element 0, {describe(output[0])}, as the output for the loss and metrics. "
            "Fix in PyTorch: return one tensor from forward (out, _ = self.rnn(x); return self.head(out)).")]
    logits = None
    if isinstance(output, dict) and isinstance(output.get("logits"), torch.Tensor):
        logits, pick = output["logits"], ("key", "logits")
    elif not isinstance(output, dict) and isinstance(getattr(output, "logits", None), torch.Tensor):
        logits, pick = output.logits, ("attr", "logits")
    if logits is not None:
        return logits, pick, [Notice(
            "output_logits", f"The model returns a {kind}; using its 'logits' {describe(logits)} as the output "
            "for the loss and metrics. Fix in PyTorch: return the logits tensor from forward.")]
    what = (f"a dict with keys {sorted(map(str, output))}" if isinstance(output, dict)
            else f"a {kind} of {len(output)} ({', '.join(describe(o) for o in output)})"
            if isinstance(output, (tuple, list)) else f"a {kind}")
    raise DataError(f"The model returned {what}, but the loss needs one tensor per batch (logits or values). "
                    "Fix: return a tensor from forward (for a tuple, the first element must be it; for a dict, "
                    "key it 'logits'), or pass step=lambda model, batch: ... that returns the loss.", "output_type")
