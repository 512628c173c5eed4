"""The loss ledger on its own (nnwidgets.engine.ledger): buffered device losses come back in one
fetch, the first non-finite one is found, commits keep the epoch's sums and the timing."""
from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from nnwidgets.engine.ledger import Ledger


def _filled(values, counts=None):
    led = Ledger(flush_interval_s=0.1)
    for v, n in zip(values, counts or [1] * len(values)):
        led.add(torch.tensor(float(v)), n, ())
    return led


def test_fetch_returns_every_buffered_loss_then_the_current_one():
    led = _filled([0.5, 0.25])
    got = led.fetch(torch.tensor(2.0))
    assert got.applied == 2 and got.bad is None and got.stats is None
    np.testing.assert_array_equal(got.values, [0.5, 0.25, 2.0])
    assert led.fetch() is not None and Ledger().fetch() is None  # nothing buffered: nothing fetched


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_fetch_finds_the_first_nonfinite_loss(bad):
    got = _filled([1.0, bad, 2.0, math.nan]).fetch()
    assert got.bad == 1
    assert _filled([1.0]).fetch(torch.tensor(bad)).bad == 1  # the current, not yet applied loss


def test_commit_weights_the_epoch_mean_by_batch_size_and_empties_the_buffer():
    led = _filled([1.0, 4.0], counts=[3, 1])
    got = led.fetch()
    t_prev, t_now = led.commit(got.values, time.perf_counter())
    assert led.epoch_mean == pytest.approx((1.0 * 3 + 4.0 * 1) / 4) and led.epoch_n == 4
    assert led.losses == [] and led.counts == [] and 0 <= t_prev <= t_now
    assert led.step_time is not None and led.step_time >= 0
    led.new_epoch()
    assert math.isnan(led.epoch_mean)
    led.new_epoch((6.0, 3))
    assert led.epoch_mean == 2.0


def test_due_after_the_flush_interval():
    led = Ledger(flush_interval_s=0.5)
    assert not led.due(led.last_flush + 0.4) and led.due(led.last_flush + 0.5)


def test_own_work_is_charged_and_overhead_is_a_share_of_wall_time():
    led = Ledger()
    led.start_run()
    t0, c0 = time.perf_counter(), time.thread_time()
    sum(range(200_000))
    wall = led.charge(t0, c0)
    assert wall > 0 and led.tool_time == pytest.approx(wall) and led.tool_cpu > 0
    assert 0 < led.overhead(active=True) <= 1
    led.end_run()
    assert led.run_wall > 0 and led.overhead(active=False) == pytest.approx(led.tool_time / led.run_wall)
