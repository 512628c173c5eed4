"""The speed reading behind the panel's overhead figure: arithmetic, and a real slowdown seen."""
import threading
import time

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nnwidgets import Trainer
from nnwidgets._speed import SpeedMeter


def test_reading_is_steps_over_wall_and_over_the_models_own_cpu_time():
    m = SpeedMeter(window_s=5.0)
    assert m.speed is None
    m.observe(100, wall_s=1.0, cpu_s=0.5, own_s=0.1, threads=1)   # waited half the time
    s = m.speed
    assert s.steps_per_s == 100.0 and s.alone_steps_per_s == pytest.approx(250.0)
    assert s.overhead == pytest.approx(0.6) and s.own_share == pytest.approx(0.1) and s.threads == 1


def test_window_keeps_only_the_last_seconds():
    m = SpeedMeter(window_s=2.0)
    m.observe(10, 1.0, 0.1, 0.0)             # a slow start
    for _ in range(4):
        m.observe(100, 1.0, 1.0, 0.0)        # then alone and at full speed
    assert m.speed.steps_per_s == pytest.approx(100.0) and m.speed.overhead == pytest.approx(0.0)
    m.observe(0, 1.0, 1.0, 0.0)              # nothing committed: ignored
    assert m.speed.steps_per_s == pytest.approx(100.0)


def _hog_gil(stop: threading.Event) -> None:
    while not stop.is_set():                 # pure Python bursts (holding the GIL) and short sleeps,
        for _ in range(20):                  # like a busy UI thread
            sum(range(2000))
        time.sleep(0.002)


def test_a_thread_competing_for_the_gil_shows_as_overhead():
    """The old figure (nnwidgets' own work) stayed at a few % while the loop ran far slower; the
    reading now counts the time the loop's thread waits."""
    torch.manual_seed(0)
    x, y = torch.randn(4096, 8), torch.randint(0, 3, (4096,))
    loader = DataLoader(TensorDataset(x, y), batch_size=16)

    def run(with_hog):
        t = Trainer(nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3)), loader, epochs=100,
                    device="cpu", threads=1, grad_stats=False)
        stop = threading.Event()
        hogs = [threading.Thread(target=_hog_gil, args=(stop,), daemon=True) for _ in range(2)]
        for hog in hogs if with_hog else ():  # two: the loop's thread gets a clear minority of the GIL
            hog.start()
        t.start()
        time.sleep(1.5)
        t.stop()
        t.wait(10)
        stop.set()
        return t.speed

    alone, hogged = run(False), run(True)
    assert alone.overhead < 0.35
    # margins that hold on a machine busy with other work too (there "alone" already reads ~0.25)
    assert hogged.overhead > alone.overhead + 0.15 and hogged.steps_per_s < 0.85 * alone.steps_per_s
    # the rate alone stays an estimate of the same loop's speed (within a factor of 2 on a busy box)
    assert 0.5 < hogged.alone_steps_per_s / alone.alone_steps_per_s < 2.0
