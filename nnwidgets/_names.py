"""The one source for the names users pass: optimizers, tasks, losses, devices; and the one
lookup of a model's floating dtype. The Trainer, the ``%%train`` magic and the panel's
pickers all read these."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["OPTIMIZERS", "OPTIMIZER_LABELS", "TASKS", "LOSS_NAMES", "DEFAULT_LOSS", "DEVICES", "DEVICE_HELP",
           "model_dtype"]

OPTIMIZER_LABELS = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop"}  # name -> shown label
OPTIMIZERS = tuple(OPTIMIZER_LABELS)
TASKS = ("multiclass", "binary", "regression")
# loss name -> (module class, the task it implies)
LOSS_NAMES = {"cross_entropy": (nn.CrossEntropyLoss, "multiclass"), "nll": (nn.NLLLoss, "multiclass"),
              "bce": (nn.BCEWithLogitsLoss, "binary"), "mse": (nn.MSELoss, "regression"),
              "l1": (nn.L1Loss, "regression"), "smooth_l1": (nn.SmoothL1Loss, "regression"),
              "huber": (nn.HuberLoss, "regression")}
DEFAULT_LOSS = {"multiclass": "cross_entropy", "binary": "bce", "regression": "mse"}
DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
DEVICE_HELP = "'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"


def model_dtype(model: nn.Module) -> torch.dtype:
    """Floating dtype of the model's first initialised floating parameter (torch's default
    dtype, float32 unless changed, for a model without one)."""
    for p in model.parameters():
        if p.is_floating_point() and not isinstance(p, nn.parameter.UninitializedParameter):
            return p.dtype
    return torch.get_default_dtype()
