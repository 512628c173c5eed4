"""Display facts of metrics (nnwidgets.metrics): from torchmetrics where it knows them, from the
table of known names otherwise; the Trainer exposes them for the views."""
from __future__ import annotations

import math

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
