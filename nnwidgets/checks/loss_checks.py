"""First-batch checks of the loss itself (pure torch): what it holds and what it returns.

Called by :func:`nnwidgets._plan.plan_batches` around its probe of the loss on the first batch:
a loss module whose ``weight`` / ``pos_weight`` sits on another device or dtype than the model
output is moved with it (a notice); a loss that returns a Python number or a non-scalar tensor
stops before step 1 naming what it returned and the fix, instead of failing inside ``backward``.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .._notices import DataError, Notice

__all__ = ["align_loss", "check_loss_value", "check_nll_input"]


def align_loss(loss_fn: Any, output: torch.Tensor) -> list[Notice]:
    """Move a loss module's floating tensors (``weight``, ``pos_weight``) to the output's device and dtype.

    PyTorch fails with "Expected all tensors to be on the same device" (class weights left on the CPU
    while the model runs on CUDA) or "expected scalar type Float but found Double" (weights from numpy).
    """
    if not isinstance(loss_fn, nn.Module):
        return []
    off = [(n, t) for n, t in list(loss_fn.named_buffers()) + list(loss_fn.named_parameters())
           if t.is_floating_point() and (t.device != output.device or t.dtype != output.dtype)]
    if not off:
        return []
    found = ", ".join(f"{n} {t.dtype} on {t.device}" for n, t in off)
    loss_fn.to(device=output.device, dtype=output.dtype)
    return [Notice("loss_tensors_moved", f"The loss {type(loss_fn).__name__} holds {found}, but the model output is "
                   f"{output.dtype} on {output.device}; moved the loss to it. Fix in PyTorch: "
                   f"loss_fn = loss_fn.to(device) and build the weights with dtype={output.dtype} "
                   f"(e.g. torch.tensor(w, dtype={output.dtype}, device=device)).")]


def check_loss_value(value: Any, name: str) -> None:
    """Raise when the loss on the first batch is not one scalar tensor (``backward`` needs one)."""
    if not isinstance(value, torch.Tensor):
        raise DataError(f"The loss {name} returned {type(value).__name__} {value!r}, not a tensor, so there is no "
                        "graph to backpropagate ('float' object has no attribute 'backward'). Fix: return the "
                        "tensor itself; call .item() / float() / .numpy() only on a copy you log.", "loss_not_tensor")
    if value.numel() != 1:
        red = " (reduction='none'?)" if value.dim() else ""
        raise DataError(f"The loss {name} returned a tensor of shape {list(value.shape)}{red}, but backward needs "
                        "one number (PyTorch: grad can be implicitly created only for scalar outputs). Fix: use the "
                        "default reduction='mean' (e.g. nn.CrossEntropyLoss()), or return loss.mean() from a "
                        "per-sample loss.", "loss_not_scalar")


def check_nll_input(loss_fn: Any, output: torch.Tensor) -> None:
    """NLLLoss on raw scores: the loss is -output[label], unbounded below; it runs to -inf and reads as a bad lr."""
    import torch.nn.functional as F
    if not (isinstance(loss_fn, nn.NLLLoss) or loss_fn is F.nll_loss) or output.dim() < 2 or not output.numel():
        return
    if not output.is_floating_point():
        return
    lse = output.float().logsumexp(1)
    if bool((lse.abs() < 1e-2).all()):
        return  # log-probabilities
    if bool(((output >= 0) & (output <= 1)).all()):
        return  # probabilities: the softmax_before_nll notice says what to do
    raise DataError(f"NLLLoss expects log-probabilities (each row's logsumexp is 0), but the model output "
                    f"{list(output.shape)} holds raw scores (max {float(output.max()):.4g}, row logsumexp up to "
                    f"{float(lse.abs().max()):.4g}). NLLLoss is then -output[label], unbounded below: the loss "
                    "turns negative and runs to -inf. Fix: end the model in nn.LogSoftmax(dim=1), or use "
                    "nn.CrossEntropyLoss() on the raw scores.", "nll_needs_log_probs")
