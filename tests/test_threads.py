"""The training thread's torch thread count: measured choice, overrides, the count put back."""
import threading

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nnwidgets import Trainer
from nnwidgets._threads import PREFER_MORE, PROBES, SWITCH_GAIN, ThreadTuner

CPU = torch.device("cpu")


def feed(tuner, rate, windows=1):
    """Report `windows` timed windows at `rate` steps/s; returns the notices."""
    out = []
    for _ in range(windows):
        out.append(tuner.observe(int(rate * tuner.window_s), tuner.window_s))
    return [n for n in out if n]


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_auto_probes_one_then_n_and_keeps_the_faster(two_threads):
    tuner = ThreadTuner("auto")
    assert tuner.begin(CPU) is None and tuner.threads == 1 and torch.get_num_threads() == 1
    rates = {1: 2400.0, 2: 1000.0}            # 2 threads lose (the thread penalty measured on 2 cores)
    notices, windows = [], 0
    while tuner.chosen is None:
        notices += feed(tuner, rates[tuner.threads])
        windows += 1
    assert windows == 2                       # one window each: 2.4x apart is a clear winner (CLEAR_WIN)
    assert tuner.chosen == 1 and torch.get_num_threads() == 1
    assert notices == ["training uses 1 torch thread: 2,400 steps/s with 1 torch thread against 1,000 steps/s with "
                       "2 torch threads, measured over the first 0.8 s (threads='auto'; Trainer(threads=n) or "
                       "%%train --threads n fixes the count, threads=None leaves torch's setting)"]
    assert tuner.decided_now and not tuner.probing
    tuner.end()
    assert torch.get_num_threads() == 2       # the count the run started with is put back


def test_close_rates_take_all_probe_windows(two_threads):
    tuner = ThreadTuner("auto")
    tuner.begin(CPU)
    windows = 0
    while tuner.chosen is None and windows < 10:
        feed(tuner, 1000.0 if tuner.threads == 1 else 1100.0)
        windows += 1
    assert windows == 2 * PROBES and tuner.chosen == 2   # 10 % faster: more than PREFER_MORE
    tuner.end()


def test_more_threads_must_win_clearly(two_threads):
    for r2, chosen in ((2400 * PREFER_MORE * 1.02, 2), (2400 * PREFER_MORE * 0.98, 1)):
        tuner = ThreadTuner("auto")
        tuner.begin(CPU)
        for _ in range(2 * PROBES):
            feed(tuner, 2400.0 if tuner.threads == 1 else r2)
        assert tuner.chosen == chosen
        tuner.end()


def test_one_disturbed_window_does_not_decide(two_threads):
    """The median of PROBES windows per count: one window slowed by another program (a browser
    drawing, a test run) does not flip the choice."""
    tuner = ThreadTuner("auto")
    tuner.begin(CPU)
    seen = {1: iter([1000.0] * PROBES), 2: iter([1500.0, 100.0] + [1500.0] * PROBES)}
    for _ in range(2 * PROBES):
        feed(tuner, next(seen[tuner.threads]))
    assert tuner.chosen == 2
    tuner.end()


def test_recheck_switches_when_the_other_count_is_faster(two_threads):
    tuner = ThreadTuner("auto", window_s=0.25, reprobe_s=1.0)
    tuner.begin(CPU)
    for _ in range(2 * PROBES):
        feed(tuner, 1000.0 if tuner.threads == 1 else 1500.0)
    assert tuner.chosen == 2
    # the browser starts drawing: 2 threads collapse, 1 thread would not
    rates = {1: 1800.0, 2: 60.0}
    notices, windows = [], 0
    while tuner.chosen == 2 and windows < 12:
        notices += feed(tuner, rates[tuner.threads])
        windows += 1
    assert tuner.chosen == 1 and tuner.threads == 1 and windows == 5  # 4 windows = reprobe_s, then 1 re-check
    assert notices == ["training switched from 2 torch threads to 1 torch thread: 1,800 steps/s with 1 torch "
                       "thread against 60 steps/s with 2 torch threads (re-checked while running)"]
    assert 1800.0 > SWITCH_GAIN * 60.0
    tuner.end()


def test_fixed_count_and_none(two_threads):
    tuner = ThreadTuner(1)
    assert tuner.begin(CPU) == "training uses 1 torch thread (threads=1; torch's setting here is 2)"
    assert torch.get_num_threads() == 1 and feed(tuner, 100.0, 8) == []
    tuner.end()
    assert torch.get_num_threads() == 2
    tuner = ThreadTuner(None)
    assert tuner.begin(CPU) is None and tuner.threads is None and torch.get_num_threads() == 2
    tuner.end()


@pytest.mark.parametrize("bad", [0, -1, 1.5, "fast", True])
def test_bad_setting_is_refused(bad):
    with pytest.raises(ValueError, match=r"threads must be 'auto', a thread count >= 1 or None"):
        ThreadTuner(bad)
    with pytest.raises(ValueError, match=r"threads must be"):
        Trainer(nn.Linear(2, 2), [(torch.zeros(4, 2), torch.zeros(4, dtype=torch.long))], threads=bad)


def test_background_run_chooses_reports_and_restores(two_threads):
    """Trainer.start() (what %%train runs): the loop's thread decides, says so, and puts its count
    back; the caller's thread keeps its own count throughout."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(2048, 16, generator=g), torch.randint(0, 4, (2048,), generator=g)
    t = Trainer(nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 4)),
                DataLoader(TensorDataset(x, y), batch_size=32), epochs=1000, device="cpu")
    seen = []
    t.on("metrics_flushed", lambda tr, **_: seen.append(torch.get_num_threads()))
    t.start()
    try:
        assert t.wait(0.01) is False
        deadline = threading.Event()
        while not deadline.wait(0.05):
            if any(e["name"] == "threads" for e in t.history.event_records):
                break
        assert torch.get_num_threads() == 2   # the caller's count is untouched
    finally:
        t.stop()
        t.wait(10)
    notes = [e["message"] for e in t.history.event_records if e["name"] == "threads"]
    assert len(notes) == 1 and notes[0].startswith(f"training uses {t.threads} torch thread")
    assert set(seen) <= {1, 2} and {1, 2} <= set(seen)       # both counts were timed
    assert t.speed is not None and t.speed.threads in (1, 2) and t.speed.steps_per_s > 0
