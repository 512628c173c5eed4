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
