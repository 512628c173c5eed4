"""``nnwidgets.History``: columnar step storage (1M steps <= 64 MB), DataFrames on request,
CSV export, a plain-Python dict round trip, lock-free snapshots while a writer appends."""
from __future__ import annotations

import io
import math
import threading
import tracemalloc

import numpy as np
import pandas as pd
import pytest
import torch

from nnwidgets.history import History

MB = 2**20


def _small() -> History:
    h = History()
    h.append_steps(0, np.array([0.9, 0.8]), lr=0.1, t0=0.0, t1=0.02)
    h.append_steps(1, np.array([0.7], dtype=np.float32), lr=0.05, t0=0.02, t1=0.03)
    h.append_epoch({"epoch": 0, "step": 2, "loss": 0.85, "accuracy": 0.5, "lr": 0.1, "time_s": 0.02})
    h.append_epoch({"epoch": 1, "step": 3, "loss": 0.7, "accuracy": 0.75, "lr": 0.05, "time_s": 0.03})
    h.append_event("setting", step=2, epoch=1, time_s=0.02, name="lr", old=0.1, new=0.05,
                   message='lr changed from 0.1 to 0.05, "quoted", with commas')
    h.append_event("notice", step=0, epoch=0, time_s=0.0, name="cast_features", message="Features are int64")
    h.append_gradients(1, ["0", "2"], np.array([0.5, np.nan]))
    h.append_gradients(3, ["0", "2"], np.array([0.25, 1.5]), hist=np.ones((2, 4)), edges=np.linspace(-12, 2, 5))
    return h


# ---------------------------------------------------------------- 1M steps
def test_one_million_steps_fit_in_64_mb():
    tracemalloc.start()
    try:
        h = History()
        chunk = np.arange(1000, dtype=np.float32) / 1000 + 1   # losses in [1, 2)
        for i in range(1000):                                  # as the loop flushes: chunks of steps
            h.append_steps(i // 100, chunk, lr=0.01, t0=i * 0.1, t1=(i + 1) * 0.1)
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert h.n_steps == 1_000_000
    assert h.nbytes() <= 64 * MB and current <= 64 * MB and peak <= 64 * MB
    a = h.arrays()
    assert a["step"][-1] == 999_999 and a["epoch"][-1] == 9 and a["epoch"][100_000] == 1
    assert a["loss"][123_456] == chunk[456] and np.all(a["lr"] == np.float32(0.01))
    assert a["time_s"][-1] == pytest.approx(100.0) and np.all(np.diff(a["time_s"]) >= 0)
    assert np.array_equal(h.loss_since(999_000), chunk)


# ---------------------------------------------------------------- DataFrames
def test_steps_dataframe_values_and_dtypes():
    df = _small().steps
    assert list(df.columns) == ["step", "epoch", "loss", "lr", "time_s"]
    assert df.step.tolist() == [0, 1, 2] and df.epoch.tolist() == [0, 0, 1]
    assert df.loss.tolist() == pytest.approx([0.9, 0.8, 0.7], rel=1e-6)
    assert df.lr.tolist() == pytest.approx([0.1, 0.1, 0.05], rel=1e-6)
    assert df.time_s.tolist() == pytest.approx([0.01, 0.02, 0.03], rel=1e-5)   # spread between flushes
    assert all(df[c].dtype == np.float64 for c in ("loss", "lr", "time_s"))


def test_epochs_events_gradients_dataframes():
    h = _small()
    ep = h.epochs
    assert ep.epoch.tolist() == [0, 1] and ep.accuracy.tolist() == [0.5, 0.75] and ep.loss.tolist() == [0.85, 0.7]
    ev = h.events
    assert list(ev.columns) == ["step", "epoch", "time_s", "kind", "name", "old", "new", "message"]
    assert ev.kind.tolist() == ["setting", "notice"] and ev.new.tolist()[0] == 0.05
    gr = h.gradients
    assert list(gr.columns) == ["step", "layer", "norm"]
    assert gr.step.tolist() == [1, 1, 3, 3] and gr.layer.tolist() == ["0", "2", "0", "2"]
    assert gr.norm.iloc[0] == 0.5 and math.isnan(gr.norm.iloc[1]) and gr.norm.iloc[3] == 1.5
    assert list(History().events.columns) == list(ev.columns) and History().steps.empty
    assert History().gradients.empty and list(History().gradients.columns) == ["step", "layer", "norm"]


def test_gradient_norms_and_last_histogram():
    h = _small()
    steps, layers, norms = h.gradient_norms()
    assert steps.tolist() == [1, 3] and layers == ["0", "2"] and norms.dtype == np.float32 and norms.shape == (2, 2)
    names, edges, counts, step = h.last_histogram()
    assert names == ["0", "2"] and step == 3 and counts.shape == (2, 4) and edges.tolist() == [-12, -8.5, -5, -1.5, 2]
    h.append_gradients(4, ["2"], np.array([1.0]))               # layer set changed: a new series
    steps, layers, norms = h.gradient_norms()
    assert steps.tolist() == [4] and layers == ["2"] and norms.shape == (1, 1)
    assert History().last_histogram() is None


def test_truncate_steps_forgets_the_tail():
    h = _small()
    h.truncate_steps(1)
    assert h.n_steps == 1 and h.steps.loss.tolist() == pytest.approx([0.9])
    h.append_steps(0, np.array([0.3]), lr=0.1, t0=0.0, t1=0.1)
    assert h.steps.loss.tolist() == pytest.approx([0.9, 0.3])


# ---------------------------------------------------------------- CSV and dict round trips
def test_to_csv_writes_four_tables_that_read_back(tmp_path):
    h = _small()
    paths = h.to_csv(tmp_path / "run")
    assert [p.rsplit("/", 1)[-1] for p in paths] == ["steps.csv", "epochs.csv", "events.csv", "gradients.csv"]
    steps = pd.read_csv(paths[0])
    pd.testing.assert_frame_equal(steps, h.steps, check_dtype=False)
    events = pd.read_csv(paths[2])
    assert events.message.tolist() == h.events.message.tolist()        # quotes and commas survive
    assert pd.read_csv(paths[1]).accuracy.tolist() == [0.5, 0.75]
    assert len(pd.read_csv(paths[3])) == 4


def _plain_types(obj) -> bool:
    if isinstance(obj, dict):
        return all(isinstance(k, str) and _plain_types(v) for k, v in obj.items())
    if isinstance(obj, list):
        return all(_plain_types(v) for v in obj)
    return obj is None or type(obj) in (int, float, str, bool)


def test_to_dict_holds_plain_python_and_round_trips():
    h = _small()
    h.append_epoch({"epoch": np.int64(2), "step": 4, "loss": np.float64(0.6), "accuracy": torch.tensor(0.875),
                    "lr": np.float32(0.05), "time_s": 0.04})
    d = h.to_dict()
    assert _plain_types(d)
    back = History.from_dict(d)
    for k, v in h.arrays().items():
        assert np.array_equal(back.arrays()[k], v), k
    assert back.epoch_records[:2] == h.epoch_records[:2]
    assert back.epoch_records[2] == {"epoch": 2, "step": 4, "loss": 0.6, "accuracy": 0.875, "lr": pytest.approx(0.05),
                                     "time_s": 0.04}
    assert back.event_records == h.event_records
    buf = io.BytesIO()
    torch.save(d, buf)
    buf.seek(0)
    assert torch.load(buf, weights_only=True)["loss"] == d["loss"]


def test_to_dict_keeps_non_finite_losses():
    h = History()
    h.append_steps(0, np.array([1.0, np.inf, np.nan]), lr=0.1, t0=0, t1=1)
    loss = History.from_dict(h.to_dict()).arrays()["loss"]
    assert loss[0] == 1.0 and np.isposinf(loss[1]) and np.isnan(loss[2])


# ---------------------------------------------------------------- concurrent readers
def test_readers_never_see_unwritten_rows_while_the_writer_grows_the_columns():
    h = History(capacity=16)                   # many reallocations
    bad, done = [], threading.Event()

    def read():
        while not done.is_set():
            a = h.arrays()
            n = len(a["loss"])
            if not (len(a["epoch"]) == len(a["lr"]) == len(a["time_s"]) == n and np.all(a["loss"] > 0)
                    and np.all(a["lr"] > 0)):
                bad.append(n)
            h.loss_since(max(0, n - 10))
            h.steps if n < 5000 else None

    readers = [threading.Thread(target=read) for _ in range(2)]
    for r in readers:
        r.start()
    try:
        for i in range(3000):
            h.append_steps(0, np.full(7, 1.0 + i), lr=0.5, t0=i, t1=i + 1)
    finally:
        done.set()
        for r in readers:
            r.join(10)
    assert not bad and h.n_steps == 21_000


def test_repr_names_the_counts():
    assert repr(_small()) == "History(steps=3, epochs=2, events=2, last epoch loss=0.7)"


def test_epochs_before_the_first_epoch_has_the_columns_every_run_has():
    from nnwidgets.history import History
    e = History().epochs
    assert e.empty and list(e.columns) == ["epoch", "step", "loss", "lr", "time_s"]
    assert e[["epoch", "loss"]].empty
