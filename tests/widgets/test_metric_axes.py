"""MetricChart places a metric by its display facts, not its name: an F1 metric lands on the
bounded 0-1 score axis."""
from __future__ import annotations

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
