"""Display facts of metrics (nnwidgets.metrics): from torchmetrics where it knows them, from the
table of known names otherwise; the Trainer exposes them for the views."""
from __future__ import annotations

import math

import pytest
import torch
import torchmetrics
from torch import nn

import nnwidgets as nw
from nnwidgets.metrics import MetricInfo, metric_info


def test_torchmetrics_facts_are_used():
    f1 = metric_info("val_f1", torchmetrics.F1Score(task="multiclass", num_classes=3))
    assert f1.bounded and (f1.low, f1.high) == (0.0, 1.0) and f1.higher_is_better
    mae = metric_info("mae", torchmetrics.MeanAbsoluteError())
    assert not mae.bounded and not mae.higher_is_better and mae.label == "MAE"


def test_known_names_and_unknown_ones():
    r2 = metric_info("val_r2")
    assert (r2.low, r2.high, r2.label) == (-1.0, 1.0, "R²") and r2.clip(-5.0) == -1.0
    assert metric_info("f1_macro").bounded and metric_info("f1_macro").label == "f1_macro"
    assert metric_info("perplexity") == MetricInfo(label="perplexity")
    assert math.isnan(r2.clip(math.nan))


def test_trainer_metric_info_covers_its_metrics():
    torch.manual_seed(0)
    data = [(torch.randn(16, 4), torch.randint(0, 3, (16,))) for _ in range(3)]
    t = nw.Trainer(nn.Linear(4, 3), data, epochs=1, device="cpu",
                   metrics={"f1": torchmetrics.F1Score(task="multiclass", num_classes=3)})
    assert t.metric_info == {}
    t.fit()
    info = t.metric_info
    assert set(info) == {"loss", "f1"} and info["f1"].bounded and info["f1"].higher_is_better
    assert not info["loss"].higher_is_better


def mape_data(n_batches: int = 3, seed: int = 0):
    """Regression batches whose features are the predictions (the model is Echo: output == input)
    and targets kept away from 0 (MAPE divides by |y|)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        y = 1.0 + torch.rand(16, 1, generator=g)
        x = y * (1.0 + 0.3 * torch.randn(16, 1, generator=g))
        out.append((x, y))
    return out


def test_mape_facts_lower_is_better_unbounded_from_torchmetrics_and_known():
    m = torchmetrics.MeanAbsolutePercentageError()
    for name in ("mape", "val_mape"):
        info = metric_info(name, m)
        assert info == MetricInfo(low=0.0, high=None, higher_is_better=False, label="MAPE", unit="")
        assert not info.bounded and info.clip(7.5) == 7.5
    assert metric_info("val_mape") == MetricInfo(low=0.0, label="MAPE")  # no object: the KNOWN line
    assert metric_info("my_error", m) == MetricInfo(0.0, None, False, "my_error")  # any key: torchmetrics' facts


def test_mape_passed_to_the_trainer_equals_torchmetrics_by_hand():
    from _engine_util import Echo
    train, val = mape_data(3, seed=0), mape_data(2, seed=1)
    t = nw.Trainer(Echo(), train, val, epochs=2, device="cpu",
                   metrics={"mape": torchmetrics.MeanAbsolutePercentageError()})
    t.fit()
    assert t.metric_info["mape"] == MetricInfo(0.0, None, False, "MAPE")

    def by_hand(batches):
        x = torch.cat([b[0] for b in batches]).reshape(-1)
        y = torch.cat([b[1] for b in batches]).reshape(-1)
        tm = torchmetrics.functional.mean_absolute_percentage_error(x, y).item()
        plain = ((x - y).abs() / y.abs()).mean().item()
        assert tm == pytest.approx(plain, rel=1e-6)
        return tm

    want_train, want_val = by_hand(train), by_hand(val)
    assert 0.05 < want_train < 1.0  # a fraction, not percent
    ep = t.history.epochs
    for row in range(2):  # Echo's outputs never change, so both epochs give the same values
        assert ep["mape"].iloc[row] == pytest.approx(want_train, rel=1e-6)
        assert ep["val_mape"].iloc[row] == pytest.approx(want_val, rel=1e-6)
