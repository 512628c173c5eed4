"""Every widget model of the chart and gradient views exists before they are displayed.

Marks, scales and axes created by a refresh (the panel's updater thread) and attached to a
figure already on the page left the Metrics chart empty in the browser (``widget model not
found``, ``s.model.getScales is not a function``); a refresh may only write data, labels,
colours and visibility.
"""
from types import SimpleNamespace

import numpy as np
import torch
from ipywidgets.widgets.widget import _instances
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nnwidgets import Trainer
from nnwidgets.history import History
from nnwidgets.widgets.charts import TrainingCharts
from nnwidgets.widgets.gradients import GradientView


def test_no_widget_model_is_made_after_construction():
    """A classification run, a log toggle, then a regression history on the same views."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 8, generator=g), torch.randint(0, 3, (64,), generator=g)
    torch.manual_seed(0)
    t = Trainer(nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3)), DataLoader(TensorDataset(x, y), 16),
                DataLoader(TensorDataset(x, y), 64), epochs=2, device="cpu", macro=True)
    charts, grads = TrainingCharts(), GradientView()
    charts.refresh(t)
    grads.refresh(t)
    figures = (charts.loss.figure, charts.metrics.figure, grads.norm_figure, grads.hist_figure)
    shown = {id(f): (list(f.marks), list(f.axes)) for f in figures}
    before = set(_instances)
    t.fit()
    t.set(lr=0.1)
    charts.refresh(t)
    grads.refresh(t)
    charts.loss.log_toggle.value = True
    h = History()  # a regression run on the same charts: other metric names, other axis
    h.append_steps(0, np.float32([1, 2]), lr=0.1, t0=0, t1=1)
    h.append_epoch({"epoch": 0, "step": 2, "loss": 1.5, "mae": 0.5, "r2": 0.1, "val_mae": 0.6, "val_r2": 0.0})
    charts.refresh(SimpleNamespace(history=h))
    assert set(_instances) == before
    assert charts.metrics.keys == ["mae", "r2", "val_mae", "val_r2"]
    assert {id(f): (list(f.marks), list(f.axes)) for f in figures if f is not charts.loss.figure} == \
        {k: v for k, v in shown.items() if k != id(charts.loss.figure)}
