"""Options a learner has in TensorBoard / livelossplot, on the Training charts: a smoothing
picker, "zoom to data" on the metric axis, train/validation in two colours, CSV links of the
history. Oracles: pandas (EMA, CSV round trip) and the History's own records."""
import base64
import io
import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nnwidgets import Trainer
from nnwidgets.widgets.charts import SMOOTHING_OPTIONS, MetricChart, TrainingCharts
from nnwidgets.widgets.download import csv_links


@pytest.fixture(scope="module")
def run():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(160, 8, generator=g), torch.randint(0, 3, (160,), generator=g)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    t = Trainer(model, DataLoader(TensorDataset(x, y), batch_size=8), DataLoader(TensorDataset(x, y), batch_size=40),
                seed=0, epochs=4, lr=0.05, device="cpu")
    t.fit()
    charts = TrainingCharts()
    charts.refresh(t)
    return SimpleNamespace(t=t, charts=charts)


def test_smoothing_picker_sets_the_ema_span(run):
    chart, loss = run.charts.loss, run.t.history.arrays()["loss"].astype(np.float64)
    assert run.t.history.n_steps == 80 and [v for _, v in SMOOTHING_OPTIONS][:2] == [0, 1]
    auto = chart.smooth.y.copy()
    try:
        chart.smoothing.value = 20                       # span 20: alpha = 2 / 21
        np.testing.assert_allclose(chart.smooth.y, pd.Series(loss).ewm(span=20, adjust=False).mean(), rtol=1e-5)
        chart.smoothing.value = 1                        # none: the line is the losses themselves
        np.testing.assert_allclose(chart.smooth.y, loss, rtol=1e-6)
        assert chart.smoothing_alpha() == 1.0
    finally:
        chart.smoothing.value = 0
    np.testing.assert_array_equal(chart.smooth.y, auto)  # auto: span max(5, 80 / 50) = 5
    np.testing.assert_allclose(auto, pd.Series(loss).ewm(span=5, adjust=False).mean(), rtol=1e-5)


def test_zoom_to_data_spans_the_values_shown_and_back(run):
    m, records = run.charts.metrics, run.t.history.epoch_records
    assert (m.score_scale.min, m.score_scale.max) == (0.0, 1.0)
    vals = [r[k] for r in records for k in ("accuracy", "val_accuracy")]
    lo, hi = min(vals), max(vals)
    pad = max((hi - lo) * 0.05, (0.01 - (hi - lo)) / 2)
    try:
        m.zoom_toggle.value = True
        a, b = m.score_scale.min, m.score_scale.max
        assert 0.0 <= a <= lo and hi <= b <= 1.0                  # every value shown, inside [0, 1]
        assert b - a == pytest.approx(min(1.0, hi - lo + 2 * pad), abs=1e-6) and b - a < 1.0
        if hi + pad <= 1.0 and lo - pad >= 0.0:
            assert (a, b) == (pytest.approx(lo - pad, abs=1e-6), pytest.approx(hi + pad, abs=1e-6))
    finally:
        m.zoom_toggle.value = False
    assert (m.score_scale.min, m.score_scale.max) == (0.0, 1.0) and m.score_axis.tick_format == ".2f"


def test_score_ticks_have_enough_decimals_to_differ():
    """Ticks ~span/10 apart must print differently: 0-1 -> .2f, 0.95-1.0 -> .3f, 0.99-1.0 -> .4f."""
    from nnwidgets.widgets.charts import score_tick_format
    assert [score_tick_format(s) for s in (1.0, 2.0, 0.2, 0.05, 0.01, 0.0075, 0.0)] == \
        [".2f", ".2f", ".2f", ".3f", ".4f", ".4f", ".2f"]
    for lo, span in ((0.95, 0.05), (0.99, 0.01), (0.2, 0.6)):
        fmt = score_tick_format(span)
        labels = [format(lo + i * span / 10, fmt[1:]) for i in range(11)]
        assert len(set(labels)) == 11, labels


def test_zoom_follows_new_epochs_and_keeps_the_metric_range():
    """R² (range [-1, 1]) values 0.995, 0.999, 1.0: the zoomed axis ends at 1.0 (high bound) and
    is 0.01 tall (shifted down from 1.0025); a later epoch at 0.5 widens it on refresh."""
    recs = [{"epoch": i, "step": 10 * (i + 1), "loss": 1.0, "r2": v} for i, v in enumerate([0.995, 0.999, 1.0])]
    h = SimpleNamespace(epoch_records=recs, event_records=[], n_steps=30)
    m = MetricChart()
    m.zoom_toggle.value = True
    m.refresh(SimpleNamespace(history=h))
    assert m.score_scale.max == 1.0 and m.score_scale.min == pytest.approx(0.99, abs=1e-6)
    assert m.score_axis.tick_format == ".4f"
    recs.append({"epoch": 3, "step": 40, "loss": 1.0, "r2": 0.5})
    h.n_steps = 40
    m.refresh(SimpleNamespace(history=h))
    assert m.score_scale.min == pytest.approx(0.5 - 0.05, abs=1e-6) and m.score_scale.max == 1.0  # 0.55 tall, shifted


def test_train_blue_validation_orange_with_one_metric_one_colour_per_metric_with_several(run):
    m = run.charts.metrics
    assert list(m.mark_of("accuracy").colors) == ["#1f77b4"]
    assert list(m.mark_of("val_accuracy").colors) == ["#ff7f0e"]
    assert re.findall(r"border-top:2.5px (\w+) (#\w+)", m.legend.value) == [("solid", "#1f77b4"), ("dashed", "#ff7f0e")]
    recs = [{"epoch": 0, "step": 5, "loss": 1.0, "r2": 0.5, "mae": 2.0, "val_r2": 0.4, "val_mae": 2.5}]
    two = MetricChart()
    two.refresh(SimpleNamespace(history=SimpleNamespace(epoch_records=recs, event_records=[], n_steps=5)))
    assert two.color("r2") == two.color("val_r2") != two.color("mae") == two.color("val_mae")


def test_csv_links_hold_the_history_tables(run):
    h = run.t.history
    dl = run.charts.download
    assert dl.links.value == ""                          # nothing is built before the click
    dl.button.click()
    links = dict(re.findall(r'download="(\w+)\.csv" href="data:text/csv;base64,([^"]+)"', dl.links.value))
    assert sorted(links) == ["epochs", "events", "steps"]
    for name, data in links.items():
        back = pd.read_csv(io.StringIO(base64.b64decode(data).decode()))
        want = getattr(h, name)
        assert len(back) == len(want) and list(back.columns) == list(want.columns)
    steps = pd.read_csv(io.StringIO(base64.b64decode(links["steps"]).decode()))
    np.testing.assert_allclose(steps["loss"], h.arrays()["loss"], rtol=1e-6)
    epochs = pd.read_csv(io.StringIO(base64.b64decode(links["epochs"]).decode()))
    np.testing.assert_allclose(epochs["val_accuracy"], [r["val_accuracy"] for r in h.epoch_records], rtol=1e-6)
    assert "(80 rows)" in dl.links.value and csv_links(h) == dl.links.value
