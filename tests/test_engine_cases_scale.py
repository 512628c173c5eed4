"""Regression targets far off the outputs' scale (nnwidgets.checks.scale): salaries ~5e4 against outputs
~0.1. A first-batch notice suggests standardising; a diverging (non-finite) or stalling loss names
the target scale as the likely cause. Scales and the first loss come from PyTorch."""
from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nnwidgets as nw
from nnwidgets.checks.scale import RATIO

from _engine_util import events, notice, notice_codes

CPU = dict(device="cpu")


def salaries(standardise: bool = False):
    torch.manual_seed(0)
    X = torch.randn(64, 3)
    y = 50_000 + 20_000 * X[:, :1] + 5_000 * torch.randn(64, 1)
    if standardise:
        y = (y - y.mean()) / y.std()
    return [(X[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16)]


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 1))


def run(data, **kw):
    t = nw.Trainer(mlp(), data, device="cpu", **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        t.fit()
    return t


def test_first_batch_notice_gives_the_scales_and_the_standardising_fix():
    data = salaries()
    x, y = data[0]
    with torch.no_grad():
        out = mlp()(x).double()
    y64 = y.double()
    mean, std = y64.mean().item(), y64.std().item()
    scale = max(out.abs().mean().item(), 0.1)
    ratio = max(abs(mean), std) / scale
    mse = F.mse_loss(out, y64).item()
    assert ratio > RATIO and mean == pytest.approx(51_300, rel=0.01)
    t = run(data, epochs=1, lr=1e-9)
    assert notice(t, "target_scale") == (
        f"The first MSE-style loss will be about {mse:.3g}: the regression targets are around {mean:.3g} (std "
        f"{std:.3g}) while the model's outputs started around {scale:.2g}, {ratio:.0f}x apart: standardise the "
        "target: y = (y - y.mean()) / y.std() (or sklearn's StandardScaler) on the training set, train on that, and "
        "map predictions back with pred * std + mean. Unscaled, training is likely to diverge (NaN) or crawl.")
    assert t.history.steps.loss.iloc[0] == pytest.approx(mse, rel=1e-5)


def test_a_diverging_loss_names_the_target_scale_as_the_likely_cause():
    t = run(salaries(), epochs=4, lr=0.01)  # SGD on ~5e4 targets: inf at step 3
    assert t.state == "paused"
    (ev,) = events(t, "nonfinite")
    assert "Likely cause: the regression targets are around 5.13e+04 (std 1.77e+04)" in ev["message"]
    assert "y = (y - y.mean()) / y.std()" in ev["message"] and "Usual fixes: lower the learning rate" in ev["message"]


def test_a_stalling_loss_names_the_target_scale_once():
    t = run(salaries(), epochs=5, lr=0.01, optimizer="adam")  # Adam moves ~lr per step: the loss barely moves
    losses = t.history.epoch_records
    assert t.state == "completed" and losses[2]["loss"] > 0.5 * losses[0]["loss"]
    assert notice_codes(t).count("target_scale_stall") == 1
    msg = notice(t, "target_scale_stall")
    assert msg.startswith(f"After 3 epochs the training loss is still {losses[2]['loss']:.3g} "
                          f"({losses[2]['loss'] / losses[0]['loss']:.0%} of the first epoch's {losses[0]['loss']:.3g}). "
                          "Likely cause: the regression targets are around 5.13e+04")


def test_standardised_targets_get_neither_notice():
    t = run(salaries(standardise=True), epochs=5, lr=0.01, optimizer="adam")
    assert t.state == "completed"
    assert "target_scale" not in notice_codes(t) and "target_scale_stall" not in notice_codes(t)
