"""LossChart / MetricChart: the arrays handed to bqplot equal what the run recorded.

Oracles: PyTorch (the loss of the first step and the final validation loss recomputed on the
same tensors), pandas (the EMA) and the History itself. No browser.
"""
import copy
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from nnwidgets import Trainer
from nnwidgets.history import History
from nnwidgets.widgets._decimate import MinMaxDecimator, smoothing_alpha
from nnwidgets.widgets.charts import LossChart, MetricChart, TrainingCharts



def classification_data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 8, generator=g)
    y = torch.randint(0, 3, (96,), generator=g)
    return x, y


@pytest.fixture(scope="module")
def lr_run():
    """Two one-epoch fits (6 steps each) with ``set(lr=0.1)`` in between; charts refreshed
    after each fit."""
    x, y = classification_data()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    initial = copy.deepcopy(model)
    train = DataLoader(TensorDataset(x, y), batch_size=16)           # no shuffle: batch 0 known
    val = DataLoader(TensorDataset(x, y), batch_size=96)             # one batch: val loss = CE
    t = Trainer(model, train, val, seed=0, epochs=1, device="cpu")
    charts = TrainingCharts()
    t.fit(epochs=1)
    charts.refresh(t)
    first = (charts.loss.raw.x.copy(), charts.loss.raw.y.copy())
    t.set(lr=0.1)
    t.fit(epochs=1)
    charts.refresh(t)
    return SimpleNamespace(t=t, charts=charts, first=first, initial=initial, x=x, y=y)


def test_loss_points_equal_history_and_pytorch(lr_run):
    t, chart = lr_run.t, lr_run.charts.loss
    a = t.history.arrays()
    assert t.history.n_steps == 12
    np.testing.assert_array_equal(chart.raw.x, np.arange(12, dtype=np.float32))
    np.testing.assert_array_equal(chart.raw.y, a["loss"])
    assert chart.raw.x.dtype == np.float32 and chart.raw.y.dtype == np.float32
    # PyTorch oracle: step 0's loss is CE of the initial model on the first batch.
    expected0 = F.cross_entropy(lr_run.initial(lr_run.x[:16]), lr_run.y[:16]).item()
    assert chart.raw.y[0] == pytest.approx(expected0, rel=1e-5)
    # the first refresh (6 steps) was a prefix of the second one
    np.testing.assert_array_equal(lr_run.first[1], a["loss"][:6])


def test_smoothed_line_is_pandas_ema(lr_run):
    chart, loss = lr_run.charts.loss, lr_run.t.history.arrays()["loss"]
    alpha = smoothing_alpha(12)
    assert alpha == pytest.approx(2 / (5 + 1))  # span = max(5, 12 / 50) = 5 steps
    expected = pd.Series(loss.astype(np.float64)).ewm(alpha=alpha, adjust=False).mean().to_numpy()
    np.testing.assert_array_equal(chart.smooth.x, np.arange(12, dtype=np.float32))
    np.testing.assert_allclose(chart.smooth.y, expected, rtol=1e-6)


def test_validation_loss_at_epoch_end_steps(lr_run):
    t, chart = lr_run.t, lr_run.charts.loss
    records = t.history.epoch_records
    assert [r["step"] for r in records] == [6, 12]
    np.testing.assert_array_equal(chart.val.x, [6, 12])
    np.testing.assert_allclose(chart.val.y, [r["val_loss"] for r in records], rtol=1e-6)
    with torch.no_grad():  # PyTorch oracle for the last epoch: CE of the final model on the val set
        expected = F.cross_entropy(t.model(lr_run.x), lr_run.y).item()
    assert chart.val.y[-1] == pytest.approx(expected, rel=1e-5)


def test_step_axes_reach_the_newest_epoch_record(lr_run):
    """Epoch records sit at x = n_steps (updates done), one past the newest loss point."""
    charts = lr_run.charts
    for scale in (charts.loss.x_scale, charts.metrics.x_scale):
        assert (scale.min, scale.max) == (0.0, 12.0)
    assert charts.loss.val.x[-1] == charts.metrics.series("accuracy")[0][-1] == 12


def test_marker_where_lr_changed(lr_run):
    for markers in (lr_run.charts.loss.markers, lr_run.charts.metrics.markers):
        assert markers.steps == [6]
        assert list(markers.labels.text) == ["lr 0.01\u21920.1"]
        # one vertical line from (6, 0) to (6, 1) (bqplot squeezes a (1, 2) array to (2,))
        np.testing.assert_array_equal(np.atleast_2d(markers.lines.x), [[6, 6]])
        np.testing.assert_array_equal(np.atleast_2d(markers.lines.y), [[0, 1]])
        np.testing.assert_array_equal(markers.labels.x, [6])


def test_only_the_newest_marker_labels_each_on_its_own_row_and_inside_the_plot():
    """Labels of close markers overlapped and the newest ones (at the right edge) were cut off."""
    h = History()
    h.append_steps(0, np.ones(100, np.float32), lr=0.1, t0=0, t1=1)
    for step, lr in ((10, 0.2), (12, 0.3), (60, 0.4), (95, 0.5), (96, 0.6)):
        h.append_event("setting", step=step, epoch=0, time_s=0.0, name="lr", old=0.1, new=lr)
    chart = LossChart()
    chart.refresh(fake(h))
    m = chart.markers
    assert m.steps == [10, 12, 60, 95, 96] and len(np.atleast_2d(m.lines.x)) == 5  # every line drawn
    assert m.shown() == [(60, "lr 0.1\u21920.4", "end"), (95, "lr 0.1\u21920.5", "end"), (96, "lr 0.1\u21920.6", "end")]
    assert len(m.labels.text) == 0 and list(m.labels_end.text) == [t for _, t, _ in m.shown()]
    assert len(set(m.labels_end.y.tolist())) == 3                 # one row each: no overlap
    assert m.labels_end.align == "end" and not m.labels_end.apply_clip and m.labels_end.x_offset < 0
    h.append_steps(0, np.ones(100, np.float32), lr=0.1, t0=1, t1=2)
    chart.refresh(fake(h))                                        # the axis grew to 200 steps:
    assert [side for *_, side in m.shown()] == ["start", "start", "start"]  # now in the left half
    np.testing.assert_array_equal(m.labels.x, [60, 95, 96])


def test_metric_chart_accuracy_train_and_val(lr_run):
    m, records = lr_run.charts.metrics, lr_run.t.history.epoch_records
    assert m.keys == ["accuracy", "val_accuracy"]
    for key in m.keys:
        x, y = m.series(key)
        np.testing.assert_array_equal(x, [6, 12])
        np.testing.assert_allclose(y, [r[key] for r in records], rtol=1e-6)
        line = m.mark_of(key)  # one line per mark here: what bqplot holds is the series itself
        np.testing.assert_array_equal(line.x, x)
        np.testing.assert_array_equal(line.y, y)
        assert list(line.labels) == [key.replace("_", " ")]
        assert line.line_style == ("dashed" if key.startswith("val_") else "solid")
    with torch.no_grad():
        acc = (lr_run.t.model(lr_run.x).argmax(1) == lr_run.y).float().mean().item()
    assert m.series("val_accuracy")[1][-1] == pytest.approx(acc, abs=1e-6)
    assert m.score_scale.min == 0.0 and m.score_scale.max == 1.0
    assert m.score_axis.visible and m.score_axis.label == "accuracy" and not m.value_axis.visible


def test_refresh_without_changes_sends_nothing(lr_run, monkeypatch):
    sent = []
    import ipywidgets
    monkeypatch.setattr(ipywidgets.Widget, "_send", lambda self, msg, buffers=None: sent.append(msg))
    lr_run.charts.refresh(lr_run.t)
    assert sent == []


@pytest.fixture(scope="module")
def c12_run():
    """Case C12's kind, as a slider makes it: 5 epochs train, then the learning rate goes from
    0.01 to 3 and the loss blows up at step 11 (1.35e8); the run rolls back to step 10."""
    torch.manual_seed(0)
    x = torch.randn(64, 8)
    y = x.sum(1, keepdim=True)
    model = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 1))
    nn.init.constant_(model[2].bias, 10.0)  # starts far off: R² of the first epochs < -1
    t = Trainer(model, [(x[:32], y[:32]), (x[32:], y[32:])], optimizer="sgd", lr=0.01, momentum=0.9, seed=0,
                epochs=5, device="cpu")
    t.fit()
    t.set(lr=3.0)
    with pytest.warns(RuntimeWarning, match="loss diverged at step 11"):
        t.fit(12)
    charts = TrainingCharts()
    charts.refresh(t)
    return t, charts


def test_c12_keeps_finite_points_and_marks_the_stop(c12_run):
    t, charts = c12_run
    assert t.state == "paused" and t.step == 10
    loss = t.history.arrays()["loss"]
    assert len(loss) == 10 and np.isfinite(loss).all()
    chart = charts.loss
    np.testing.assert_array_equal(chart.raw.x, np.arange(10, dtype=np.float32))
    np.testing.assert_array_equal(chart.raw.y, loss)
    assert np.isfinite(chart.smooth.y).all()
    assert chart.markers.steps == [10, 10, 10]
    assert chart.markers.shown() == [(10, "lr 0.01→3", "end"), (10, "loss diverged", "end"),
                                     (10, "paused", "end")]


def test_c12_regression_metrics_r2_clipped(c12_run):
    t, charts = c12_run
    m, records = charts.metrics, t.history.epoch_records
    assert set(m.keys) == {"mae", "r2"}
    np.testing.assert_allclose(m.series("mae")[1], [r["mae"] for r in records], rtol=1e-6)
    assert records[-1]["r2"] < -1
    np.testing.assert_allclose(m.series("r2")[1], [max(r["r2"], -1.0) for r in records], rtol=1e-6)
    assert m.mark_of("r2").scales["y"] is m.score_scale and m.mark_of("mae").scales["y"] is m.value_scale
    assert m.score_scale.min == -1.0
    assert {a.label for a in m.figure.axes if a.visible} == {"step", "R²", "MAE"}


def fake(h):
    return SimpleNamespace(history=h)


def test_nonfinite_losses_never_sent_and_log_toggle():
    h = History()
    h.append_steps(0, np.array([1.0, np.nan, 0.0, np.inf, -2.0, 3.0], dtype=np.float32), lr=0.1, t0=0, t1=1)
    h.append_epoch({"epoch": 0, "step": 6, "loss": 1.0, "val_loss": 0.0})
    chart = LossChart(log_floor=1e-6)
    chart.refresh(fake(h))
    np.testing.assert_array_equal(chart.raw.x, [0, 2, 4, 5])
    np.testing.assert_array_equal(chart.raw.y, [1, 0, -2, 3])
    ema = pd.Series([1.0, 0.0, -2.0, 3.0]).ewm(alpha=smoothing_alpha(6), adjust=False).mean()
    np.testing.assert_allclose(chart.smooth.y, ema, rtol=1e-6)

    chart.log_toggle.value = True
    assert type(chart.y_scale).__name__ == "LogScale"
    assert all(m.scales["y"] is chart.y_scale for m in (chart.raw, chart.smooth, chart.val))
    assert chart.y_axis.scale is chart.y_scale and chart.y_axis in chart.figure.axes
    np.testing.assert_array_equal(chart.raw.y, np.float32([1, 1e-6, 1e-6, 3]))
    np.testing.assert_array_equal(chart.val.y, np.float32([1e-6]))
    assert chart.markers.lines.scales["y"] is chart.markers.y_scale  # markers keep their [0, 1] scale
    h.append_steps(0, np.array([0.5], dtype=np.float32), lr=0.1, t0=1, t1=2)
    chart.refresh(fake(h))  # new points are clipped too while log is on
    assert chart.raw.y[-1] == np.float32(0.5) and chart.raw.y.min() == np.float32(1e-6)

    chart.log_toggle.value = False
    assert type(chart.y_scale).__name__ == "LinearScale" and chart.raw.scales["y"] is chart.y_scale
    np.testing.assert_array_equal(chart.raw.y, [1, 0, -2, 3, 0.5])


def _y_axes(figure):
    return [a for a in figure.axes if a.orientation == "vertical"]


def test_log_toggle_puts_marks_and_the_shown_y_axis_on_one_scale():
    """bqplot's front end ignores a new ``scale`` on an existing Axis (linear ticks stayed next
    to a log curve), so the toggle must swap whole axes and never reassign ``Axis.scale``."""
    from ipywidgets.widgets.widget import _instances
    chart = LossChart()
    lines = (chart.raw, chart.smooth, chart.val)
    linear = chart.y_scale
    reassigned = []
    for axis in chart.figure.axes:
        axis.observe(lambda change: reassigned.append(change), names="scale")
    before = set(_instances)
    for log, kind in ((True, "LogScale"), (False, "LinearScale"), (True, "LogScale")):
        chart.log_toggle.value = log
        assert reassigned == []             # no Axis got a new scale: the shown axis is swapped
        (y_axis,) = _y_axes(chart.figure)
        assert type(chart.y_scale).__name__ == kind
        assert y_axis is chart.y_axis and y_axis.scale is chart.y_scale
        assert all(m.scales["y"] is chart.y_scale and m.scales["x"] is chart.x_scale for m in lines)
        assert all(m.scales["y"] is chart.markers.y_scale for m in chart.markers.marks)  # [0, 1], not loss
    chart.log_toggle.value = False
    assert chart.y_scale is linear and _y_axes(chart.figure)[0].scale is linear
    assert set(_instances) == before        # no widget model created by the toggle


def test_long_run_is_decimated_min_max_preserving():
    rng = np.random.default_rng(0)
    loss = rng.random(100_000).astype(np.float32)
    loss[[10, 54_321]] = [-1.0, 9.0]
    h = History()
    for start in range(0, len(loss), 1000):
        h.append_steps(start // 1000, loss[start:start + 1000], lr=0.01, t0=0, t1=1)
    chart = LossChart()
    chart.refresh(fake(h))
    x, y = chart.raw.x, chart.raw.y
    assert len(x) <= chart._dec.max_points == 800 and len(chart.smooth.x) <= 300
    assert np.all(np.diff(x) > 0)
    np.testing.assert_array_equal(y, loss[x.astype(int)])           # every point is a real step
    assert y.min() == -1.0 and y.max() == 9.0                       # spikes survive
    np.testing.assert_array_equal(x[-300:], np.arange(99_700, 100_000))  # newest 300 raw
    assert chart.smooth.x[-1] == 99_999


def test_decimator_incremental_equals_bulk():
    rng = np.random.default_rng(1)
    v = rng.normal(size=20_000)
    a, b = MinMaxDecimator(1000, 400), MinMaxDecimator(1000, 400)
    a.extend(v)
    for i in range(0, len(v), 7):
        b.extend(v[i:i + 7])
    xa, ya = a.points()
    xb, yb = b.points()
    np.testing.assert_array_equal(xa, xb)   # the bucket layout depends on n only
    np.testing.assert_array_equal(ya, yb)
    np.testing.assert_allclose(a.means()[1], b.means()[1], rtol=1e-12)
    for x, y in ((xa, ya), (xb, yb)):
        assert len(x) <= 1000
        np.testing.assert_array_equal(y, v[x.astype(int)].astype(np.float32))
        assert y.max() == np.float32(v.max()) and y.min() == np.float32(v.min())
    mx, mean, count = b.means()
    assert count.sum() == len(v)
    assert np.sum(mean * count) == pytest.approx(v.sum())


def test_new_history_or_rollback_resets():
    h = History()
    h.append_steps(0, np.arange(1, 11, dtype=np.float32), lr=0.1, t0=0, t1=1)
    chart = LossChart()
    chart.refresh(fake(h))
    h.truncate_steps(4)
    chart.refresh(fake(h))
    np.testing.assert_array_equal(chart.raw.y, [1, 2, 3, 4])
    h2 = History()
    h2.append_steps(0, np.float32([7, 8]), lr=0.1, t0=0, t1=1)
    chart.refresh(fake(h2))
    np.testing.assert_array_equal(chart.raw.y, [7, 8])
    assert math.isclose(chart.smooth.y[0], 7)


def test_metric_chart_waits_for_first_epoch():
    h = History()
    h.append_steps(0, np.float32([1, 2]), lr=0.1, t0=0, t1=1)
    m = MetricChart()
    m.refresh(fake(h))
    assert m.keys == [] and [a.label for a in m.figure.axes if a.visible] == ["step"]
    assert all(len(mark.x) == 0 and len(mark.labels) == 0 for mark in m.marks.values())
    h.append_epoch({"epoch": 0, "step": 2, "loss": 1.5, "accuracy": 0.5, "accuracy_macro": 0.4, "lr": 0.1})
    m.refresh(fake(h))
    assert m.keys == ["accuracy", "accuracy_macro"]
    np.testing.assert_array_equal(m.series("accuracy_macro")[1], np.float32([0.4]))
    train = m.marks["score", False]  # both train metrics are lines of one mark: y is (2, points)
    assert list(train.labels) == ["accuracy", "accuracy macro"] and len(set(train.colors)) == 2
    # bqplot squeezes a (2, 1) y to (2,) - one line of two points - so one point is sent twice
    np.testing.assert_array_equal(train.y, np.float32([[0.5, 0.5], [0.4, 0.4]]))
    np.testing.assert_array_equal(train.x, np.float32([2, 2]))


def test_refresh_during_background_run_matches_fresh_chart():
    """Refreshing while the loop appends (as the panel's updater thread does) ends in the
    same arrays as one refresh after the run."""
    import time
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(2000, 8, generator=g), torch.randint(0, 3, (2000,), generator=g)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    t = Trainer(model, DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True),
                DataLoader(TensorDataset(x, y), batch_size=500), epochs=3, device="cpu")
    live = TrainingCharts()
    t.start()
    while t.state in ("idle", "running"):
        live.refresh(t)
        time.sleep(0.05)
    t.wait(60)
    live.refresh(t)
    assert t.state == "completed" and t.history.n_steps == 750
    fresh = TrainingCharts()
    fresh.refresh(t)
    for name in ("raw", "smooth", "val"):
        a, b = getattr(live.loss, name), getattr(fresh.loss, name)
        np.testing.assert_array_equal(a.x, b.x)
        np.testing.assert_allclose(a.y, b.y, rtol=1e-6)  # bucket sums added in another order
    assert live.metrics.keys == fresh.metrics.keys == ["accuracy", "val_accuracy"]
    for key in fresh.metrics.keys:
        np.testing.assert_array_equal(live.metrics.series(key)[1], fresh.metrics.series(key)[1])


def test_legends_sit_above_the_plots_not_on_the_data():
    c = TrainingCharts()
    for mark in [c.loss.raw, c.loss.smooth, c.loss.val, *c.metrics.marks.values()]:
        assert mark.display_legend is False
    assert [i.count("nnw-legend-item") for i in (c.loss.legend.value, c.metrics.legend.value)] == [3, 0]
    for label in ("train loss (per step)", "train loss (EMA)", "validation loss"):
        assert label in c.loss.legend.value
    h = History()
    h.append_epoch({"epoch": 0, "step": 3, "loss": 0.5, "accuracy": 0.7, "val_loss": 0.4, "val_accuracy": 0.8,
                    "lr": 0.01, "time_s": 1.0})
    c.metrics.refresh(SimpleNamespace(history=h))
    assert c.metrics.legend.value.count("nnw-legend-item") == 2 and "val accuracy" in c.metrics.legend.value
    assert "dashed" in c.metrics.legend.value.split("val accuracy")[0].rsplit("nnw-legend-item", 1)[1]


def test_step_ticks_are_whole_steps_at_most_8():
    from nnwidgets.widgets._marks import set_step_ticks, step_ticks
    assert step_ticks(3).tolist() == [0, 1, 2, 3] and step_ticks(8).tolist() == [0, 2, 4, 6, 8]
    assert step_ticks(3804).tolist() == [0, 500, 1000, 1500, 2000, 2500, 3000, 3500]
    for last in range(0, 5000, 7):
        ticks = step_ticks(last)
        assert len(ticks) <= 8 and ticks[0] == 0 and ticks[-1] <= max(last, 1) and np.all(ticks == np.round(ticks))
    c = TrainingCharts()
    h = History()
    h.append_steps(0, np.ones(3, np.float32), 0.01, 0.0, 1.0)
    c.refresh(SimpleNamespace(history=h))
    assert c.loss.x_axis.tick_values.tolist() == [0, 1, 2, 3] == c.metrics.x_axis.tick_values.tolist()
    h.append_steps(0, np.ones(20, np.float32), 0.01, 1.0, 2.0)
    c.refresh(SimpleNamespace(history=h))
    assert c.loss.x_axis.tick_values.tolist() == [0, 5, 10, 15, 20]
    sent = []
    c.loss.x_axis.observe(sent.append, "tick_values")
    set_step_ticks(c.loss.x_axis, 24)  # the same ticks: nothing sent
    assert sent == []


def test_repeated_paused_markers_are_one_marker_with_a_count():
    from nnwidgets.widgets._marks import EventMarkers
    import bqplot as bq
    m = EventMarkers(bq.LinearScale())
    ev = lambda step, kind, name, **kw: {"step": step, "epoch": 0, "kind": kind, "name": name, **kw}
    events = [ev(2, "state", "paused")] + [ev(s, "state", "paused") for s in (3, 4, 5, 6)]
    m.update(events)
    assert (m.steps, m.texts) == ([6], ["paused \u00d75"])
    m.update([ev(6, "setting", "lr", old=0.01, new=0.1), ev(9, "state", "paused")])  # only the new ones
    assert m.texts == ["paused \u00d75", "lr 0.01\u21920.1", "paused"] and m.steps == [6, 6, 9]


def test_hover_values_name_step_and_series(lr_run):
    """Every line with values to read has a tooltip of x (step) and y (its series), read from
    the points it draws (markers: bqplot takes a tooltip's x/y from the marker's datum)."""
    loss, m = lr_run.charts.loss, lr_run.charts.metrics
    for mark, series in ((loss.smooth, "train loss (EMA)"), (loss.val, "validation loss"),
                         (m.mark_of("accuracy"), "accuracy"), (m.mark_of("val_accuracy"), "val accuracy")):
        assert mark.marker == "circle" and mark.tooltip is not None, series
        assert list(mark.tooltip.fields) == ["x", "y"] and list(mark.tooltip.labels) == ["step", series]
        assert list(mark.tooltip.formats) == ["d", ".4g"]
    fresh = MetricChart()  # before the first epoch record the metric is not known yet
    assert all(list(mark.tooltip.labels) == ["step", "value"] for mark in fresh.marks.values())
