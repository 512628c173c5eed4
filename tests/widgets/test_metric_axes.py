"""MetricChart places a metric by its display facts, not its name: an F1 metric lands on the
bounded 0-1 score axis."""
from __future__ import annotations

import pytest
import torch
import torchmetrics
from torch import nn

import nnwidgets as nw
from nnwidgets.widgets.charts import MetricChart


def test_an_f1_metric_lands_on_the_bounded_score_axis():
    torch.manual_seed(0)
    data = [(torch.randn(16, 4), torch.randint(0, 3, (16,))) for _ in range(3)]
    t = nw.Trainer(nn.Linear(4, 3), data, data, epochs=2, device="cpu",
                   metrics={"f1": torchmetrics.F1Score(task="multiclass", num_classes=3)})
    t.fit()
    chart = MetricChart()
    chart.refresh(t)
    assert "f1" in chart.keys and "val_f1" in chart.keys
    assert chart.mark_of("f1").scales["y"] is chart.score_scale
    assert chart.mark_of("val_f1").scales["y"] is chart.score_scale
    assert chart.score_scale.min == 0.0 and chart.score_axis.visible and "f1" in chart.score_axis.label


def test_a_mape_metric_lands_on_the_unbounded_value_axis_unclipped():
    """MAPE (torchmetrics: lower is better, lower bound 0, no upper bound) is not a 0-1 score: it
    goes on the right value axis labelled "MAPE", values sent as recorded (a MAPE above 1 is not
    clipped), beside MAE, not beside an accuracy-like score."""
    g = torch.Generator().manual_seed(0)
    data = []
    for _ in range(3):
        y = 1.0 + torch.rand(16, 1, generator=g)
        data.append((y * (1.0 + 2.0 * torch.randn(16, 1, generator=g)), y))  # errors around 150 %
    from _engine_util import Echo
    t = nw.Trainer(Echo(), data, data, epochs=2, device="cpu",
                   metrics={"mape": torchmetrics.MeanAbsolutePercentageError(), "r2": torchmetrics.R2Score()})
    t.fit()
    chart = MetricChart()
    chart.refresh(t)
    recorded = [r["mape"] for r in t.history.epoch_records]
    assert min(recorded) > 1.0  # above 1: would be clipped if drawn on a 0-1 axis
    for key in ("mape", "val_mape"):
        assert chart.mark_of(key).scales["y"] is chart.value_scale
    assert chart.series("mape")[1].tolist() == pytest.approx(recorded, rel=1e-6)
    assert chart.value_axis.visible and chart.value_axis.label == "MAPE"
    assert chart.mark_of("r2").scales["y"] is chart.score_scale and chart.score_axis.label == "R²"
