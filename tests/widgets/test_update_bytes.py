"""Bytes one chart refresh sends to the browser: ≤ 16 KB, and independent of the run length.

A recording comm replaces ``comm.create_comm`` (what ipywidgets calls to open a widget's
comm), so every message a widget would send to the front end is captured as
``(msg_type, data, buffers)``. Bytes of a message = ``len(json.dumps(data))`` + the byte
size of its binary buffers (``memoryview(b).nbytes``; numpy arrays travel as buffers).
Run with ``-s`` to see the measured numbers.
"""
import json

import comm
import numpy as np
import pytest
from comm.base_comm import BaseComm

from nnwidgets.history import History

BUDGET = 16 * 1024  # bytes per chart update (DESIGN.md)


class RecordingComm(BaseComm):
    """A comm that keeps what it would publish instead of sending it to a kernel."""

    log: list = []

    def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
        RecordingComm.log.append((msg_type, data, list(buffers or [])))


def message_bytes(data, buffers):
    return len(json.dumps(data, default=str)) + sum(memoryview(b).nbytes for b in buffers)


@pytest.fixture
def recorder(monkeypatch):
    monkeypatch.setattr(comm, "create_comm", lambda **kw: RecordingComm(**kw))
    RecordingComm.log = []
    return RecordingComm


class Fake:
    def __init__(self, history):
        self.history = history


def long_history(n_steps, steps_per_epoch=500):
    """A History as a run of ``n_steps`` writes it: noisy decaying losses, one epoch record
    per ``steps_per_epoch`` steps, an lr change every 10 epochs."""
    rng = np.random.default_rng(0)
    h = History()
    for e, start in enumerate(range(0, n_steps, steps_per_epoch)):
        k = min(steps_per_epoch, n_steps - start)
        s = np.arange(start, start + k)
        h.append_steps(e, (2.0 / np.sqrt(1 + s / 100) + 0.1 * rng.random(k)).astype(np.float32),
                       lr=0.01, t0=0.0, t1=1.0)
        h.append_epoch({"epoch": e, "step": start + k, "loss": 1.0, "accuracy": 0.5 + 0.4 * e / (n_steps / 500),
                        "val_loss": 1.1, "val_accuracy": 0.5, "lr": 0.01, "time_s": 1.0})
        if e % 10 == 9:
            h.append_event("setting", step=start + k, epoch=e, time_s=1.0, name="lr", old=0.01, new=0.02,
                           message="lr changed")
    return h


def measure(chart_cls, n_steps, recorder, with_epoch=False):
    """Bytes sent by one refresh of a fresh-but-caught-up chart after 10 more steps (and, with
    ``with_epoch``, one more epoch record and one event)."""
    h = long_history(n_steps)
    chart = chart_cls()
    chart.refresh(Fake(h))
    recorder.log = []
    h.append_steps(10_000, np.full(10, 0.5, np.float32), lr=0.01, t0=1.0, t1=2.0)
    if with_epoch:
        h.append_epoch({"epoch": 10_000, "step": n_steps + 10, "loss": 0.5, "accuracy": 0.9,
                        "val_loss": 0.6, "val_accuracy": 0.8, "lr": 0.01, "time_s": 2.0})
        h.append_event("setting", step=n_steps + 10, epoch=10_000, time_s=2.0, name="lr", old=0.02, new=0.04)
    chart.refresh(Fake(h))
    msgs = [(d, b) for t, d, b in recorder.log if t == "comm_msg"]
    return sum(message_bytes(d, b) for d, b in msgs), len(msgs)


@pytest.mark.parametrize("name", ["LossChart", "MetricChart"])
def test_bytes_after_10_steps_bounded_and_flat(recorder, name):
    """The common update (new steps only): ≤ 16 KB and the same for 1k and 100k steps."""
    from nnwidgets.widgets import charts
    chart_cls = getattr(charts, name)
    small, n_small = measure(chart_cls, 1_000, recorder)
    large, n_large = measure(chart_cls, 100_000, recorder)
    print(f"\n{name} refresh after 10 more steps: 1k-step run {small} B in {n_small} message(s), "
          f"100k-step run {large} B in {n_large} message(s)")
    assert small <= BUDGET and large <= BUDGET
    assert large <= 1.2 * small
    if name == "LossChart":
        assert n_large == 2  # the raw and the smoothed line, x and y together
    else:
        assert n_small == n_large == 0  # no new epoch: nothing to send


@pytest.mark.parametrize("name", ["LossChart", "MetricChart"])
def test_bytes_with_new_epoch_and_marker_bounded(recorder, name):
    """The largest update (steps + an epoch record + a marker): ≤ 16 KB at every run length;
    epoch lines and markers are capped, so 1M steps (2,000 epochs, 200 events) cost at most
    1.2 x 500k steps (1,000 epochs, 100 events): beyond the caps, no growth."""
    from nnwidgets.widgets import charts
    chart_cls = getattr(charts, name)
    sizes = {n: measure(chart_cls, n, recorder, with_epoch=True) for n in (1_000, 100_000, 500_000, 1_000_000)}
    print(f"\n{name} refresh after 10 steps + 1 epoch + 1 marker: "
          + ", ".join(f"{n:,}-step run {b} B in {k} message(s)" for n, (b, k) in sizes.items()))
    assert all(b <= BUDGET for b, _ in sizes.values())
    assert sizes[1_000_000][0] <= 1.2 * sizes[500_000][0]


def test_recorder_sees_binary_float32_buffers(recorder):
    from nnwidgets.widgets.charts import LossChart
    h = History()
    chart = LossChart()
    chart.refresh(Fake(h))
    recorder.log = []
    h.append_steps(0, np.float32([3.0, 2.0, 1.0]), lr=0.1, t0=0, t1=1)
    chart.refresh(Fake(h))
    raw_msgs = [(d, b) for t, d, b in recorder.log if t == "comm_msg" and "x" in d.get("state", {})]
    assert raw_msgs, "x/y updates were sent"
    for data, buffers in raw_msgs:
        assert {"x", "y"} <= set(data["state"])  # x and y in ONE message (hold_sync)
        assert data["state"]["y"]["dtype"] == "float32"
        assert sum(memoryview(b).nbytes for b in buffers) == 2 * 4 * data["state"]["y"]["shape"][0]


def _deep_model(n_linear):
    """``n_linear`` Linear layers with nested names (``encoder.blocks.17.0``), as real models have."""
    from torch import nn
    blocks = nn.ModuleList([nn.Sequential(nn.Linear(8, 8), nn.ReLU()) for _ in range(n_linear - 1)])
    return nn.ModuleDict({"encoder": nn.ModuleDict({"blocks": blocks}), "head": nn.Linear(8, 3)})


def _gradient_update_bytes(recorder, n_linear, samples):
    """Bytes of the first refresh of a GradientView (labels, lines, heat map, flags) and of the
    refresh after one more gradient sample, for a run with ``samples`` samples (40-bin
    histograms; norms spread over 8 decades so that many layers are flagged as vanishing)."""
    from types import SimpleNamespace
    from torch import nn
    from nnwidgets.widgets.gradients import GradientView
    model = _deep_model(n_linear)
    layers = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    rng, h = np.random.default_rng(0), History()
    edges = np.linspace(-12.0, 2.0, 41)

    def sample(step):
        norms = (rng.random(len(layers)) * 10.0 ** -rng.integers(0, 8, len(layers))).astype(np.float32)
        h.append_gradients(step, layers, norms, rng.integers(0, 100, (len(layers), 40)).astype(np.float32), edges)

    for s in range(samples):
        sample(10 * s)
    view, trainer = GradientView(), SimpleNamespace(history=h, model=model)
    sizes = []
    for _ in range(2):
        recorder.log = []
        view.refresh(trainer)
        sizes.append(sum(message_bytes(d, b) for t, d, b in recorder.log if t == "comm_msg"))
        sample(10 * samples)
    return sizes, view


@pytest.mark.parametrize("n_linear", [5, 30, 100])
def test_gradients_tab_update_within_budget_for_many_layers(recorder, n_linear):
    """Issue 10: Gradients-tab updates levelled off at ~17 KB (3,000 y values + x + a 40-bin
    heat map + every flagged layer listed). Now the first update (labels included) and the
    next one stay ≤ 16 KB for 5 to 100 layers after 5,000 samples, and lines and heat map keep
    their shape: every layer, the newest sample last, at least 2 bins."""
    sizes, view = _gradient_update_bytes(recorder, n_linear, 5_000)
    print(f"\nGradients tab, {n_linear} layers, 5,000 samples: first update {sizes[0]} B, next {sizes[1]} B")
    assert max(sizes) <= BUDGET, sizes
    assert view.lines.y.shape[0] == n_linear and view.lines.x[-1] == 50_000
    assert view.heatmap.color.shape[0] == n_linear and view.heatmap.color.shape[1] >= 2
    np.testing.assert_allclose(view.heatmap.color.sum(1), 1.0, rtol=1e-5)  # merged bins keep each layer's share
    assert len(view.heatmap.column) == view.heatmap.color.shape[1] + 1
    assert view.heatmap.column[0] == -12.0 and view.heatmap.column[-1] == 2.0
    if n_linear == 100:
        assert view.flags.value.count("<li>") <= 9 and "more layer(s)" in view.flags.value


def test_gradients_tab_short_run_sends_everything(recorder):
    """Few layers, few samples: nothing is thinned or merged (all samples, all 40 bins)."""
    sizes, view = _gradient_update_bytes(recorder, 5, 50)
    assert view.lines.y.shape == (5, 51) and view.heatmap.color.shape == (5, 40)
    assert max(sizes) <= BUDGET
