"""Cases C12, C24, C25, C26 and C28 of ``shared/cases/`` run through ``nnwidgets.Trainer``:
non-finite losses, memory over epochs, interrupts, steering from another thread, per-step
cost; plus errors raised by user code (model, loader). The hand-written PyTorch loop
(``_engine_util.oracle``) gives the weights and losses a run must end with."""
from __future__ import annotations

import copy
import gc
import os
import time
import tracemalloc
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

import nnwidgets as nw
from nnwidgets.events import Event

from _engine_util import events, oracle, same_params

CPU = dict(device="cpu")


# ---------------------------------------------------------------- C12 non-finite loss
def _c12(scale):
    torch.manual_seed(0)
    X = torch.randn(64, 8) * scale
    Y = X.sum(1, keepdim=True)
    model = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 1))
    return X, Y, model


def test_c12_blow_up_is_caught_at_step_1_and_rolls_back_to_weights_whose_loss_was_in_range():
    X, Y, model = _c12(50.0)
    init = copy.deepcopy(model)
    t = nw.Trainer(model, [(X, Y)], lr=0.1, momentum=0.9, epochs=10, **CPU)
    with pytest.warns(RuntimeWarning, match=r"loss diverged at step 1 \(epoch 1\): 1\.27e\+12, 5\.9e\+07x its starting "
                                            r"level 2\.16e\+04, with learning rate 0\.1 and momentum 0\.9; training paused, "
                                            r"rolled back to the weights before step 0, where the loss was 2\.16e\+04"):
        t.fit()                                                  # returns, paused, before the inf of step 2
    assert t.state == "paused" and t.step == 0 and t.epoch == 0 and t.error is None
    assert same_params(model, init)                              # step 0's weights gave 1.27e12: not kept
    assert t.history.n_steps == 0
    (ev,) = events(t, "nonfinite")
    assert ev["new"] == "diverged"
    for part in ("Lower the learning rate, then resume", "standardise the features", "clip"):
        assert part in ev["message"], part


def test_c12_resume_with_a_lower_learning_rate_trains_like_the_plain_loop():
    """The issue's complaint: after a blow-up the kept weights were already ruined, so resuming
    with lr 1e-5 failed at the same step every time. Now it trains, exactly as PyTorch does from
    the weights it rolled back to."""
    X, Y, model = _c12(50.0)
    init = copy.deepcopy(model)
    t = nw.Trainer(model, [(X, Y)], lr=0.1, momentum=0.9, epochs=10, **CPU)
    with pytest.warns(RuntimeWarning, match="diverged"):
        t.fit()
    t.set(lr=1e-5)
    t.fit()
    assert t.state == "completed" and t.step == 10 and t.history.n_steps == 10
    ref, ref_losses = oracle(init, [(X, Y)], F.mse_loss, 10, lr=1e-5, momentum=0.9)
    assert same_params(model, ref) and np.allclose(t.history.steps.loss, ref_losses, rtol=1e-5)
    assert ref_losses[-1] < 0.5 * ref_losses[0]  # 21,571 -> 5,540 in 10 steps


def test_without_weights_in_range_the_message_says_so_and_reinitialize_starts_again():
    X, Y, model = _c12(1.0)
    t = nw.Trainer(model, [(X, Y)], lr=1e-3, epochs=3, **CPU)
    t.fit()
    start = t.history.steps.loss.iloc[0]
    t.set_optimizer("sgd")                           # a new optimizer: no rollback target is kept
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(300.0)                            # weights ruined outside the run (e.g. a bad checkpoint)
    ruined = copy.deepcopy(model)
    with pytest.warns(RuntimeWarning, match=r"loss diverged at step 3 .*no weights from before the blow-up are kept: "
                                            r"this run started from weights whose loss was already out of range\. "
                                            r"Only fresh weights help now: trainer\.reinitialize\(\)"):
        t.fit(6)                                     # 6 epochs more
    assert t.state == "paused" and t.step == 3 and same_params(model, ruined)
    assert t.reinitialize(seed=0) == 2                               # the two Linear layers
    torch.manual_seed(0)
    fresh = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 1))
    assert same_params(model, fresh) and not t.optimizer.state
    assert events(t, "setting")[-1]["name"] == "weights"
    t.fit()
    assert t.state == "completed" and t.step == 9  # fit(6) asked for 6 epochs more than the 3 done
    assert np.isfinite(t.history.steps.loss).all() and t.history.steps.loss.iloc[-1] < 10 * start


def test_c12_resume_after_a_transient_nonfinite_loss_retries_that_batch():
    torch.manual_seed(0)
    x, y = torch.randn(8, 3), torch.randn(8, 1)
    model = InfAt(3)                               # one batch per epoch; step 3 gives inf once
    init = copy.deepcopy(model.lin)
    t = nw.Trainer(model, [(x, y)], epochs=6, lr=0.05, **CPU)
    t.fit()
    assert t.state == "paused" and t.step == 3
    t.fit()
    assert t.state == "completed" and t.step == 6 and t.history.n_steps == 6
    ref, ref_losses = oracle(init, [(x, y)], F.mse_loss, 6, lr=0.05)
    assert same_params(model.lin, ref) and np.allclose(t.history.steps.loss, ref_losses, rtol=1e-6)
    assert [(r["epoch"], r["step"]) for r in t.history.epoch_records] == [(e, e + 1) for e in range(6)]


def test_c12_standardised_features_stay_finite():
    X, Y, model = _c12(1.0)
    t = nw.Trainer(model, [(X, Y)], lr=0.1, momentum=0.9, epochs=30, grad_stats=False, **CPU)
    t.fit()
    assert t.state == "completed" and t.history.n_steps == 30
    assert np.isfinite(t.history.steps.loss).all() and not events(t, "nonfinite")


class InfAt(nn.Module):
    """Linear regression whose training forward returns inf at its ``bad_at``-th call."""

    def __init__(self, bad_at):
        super().__init__()
        self.lin, self.calls, self.bad_at = nn.Linear(3, 1), 0, bad_at

    def forward(self, x):
        out = self.lin(x)
        if torch.is_grad_enabled() and self.training:
            if self.calls == self.bad_at:
                out = out * float("inf")
            self.calls += 1
        return out


def _late_nonfinite():
    torch.manual_seed(0)
    batches = [(torch.randn(8, 3), torch.randn(8, 1)) for _ in range(5)]
    model = InfAt(17)                       # step 17 (epoch 3), after the one-by-one warm-up flushes
    init = copy.deepcopy(model)
    t = nw.Trainer(model, batches, epochs=6, lr=0.05, flush_interval_s=3600, **CPU)
    t.fit()
    return t, model, init, batches


def test_c12_late_nonfinite_rolls_back_to_consistent_finite_weights():
    t, model, init, batches = _late_nonfinite()
    assert t.state == "paused"
    (ev,) = events(t, "nonfinite")
    assert "at step 17" in ev["message"]
    ref, ref_losses = oracle(init.lin, batches, F.mse_loss, t.step, lr=0.05)
    assert same_params(model.lin, ref)                           # weights of the step count kept
    assert t.history.n_steps == t.step and np.allclose(t.history.steps.loss, ref_losses, rtol=1e-6)


def test_c12_late_nonfinite_adds_no_epoch_record_for_the_bad_epoch():
    t, *_ = _late_nonfinite()
    assert [r["epoch"] for r in t.history.epoch_records] == [0, 1, 2]
    assert t.epoch == 3


def test_c12_late_nonfinite_keeps_the_steps_verified_at_the_last_epoch_end():
    t, *_ = _late_nonfinite()
    assert t.step == 15 and t.history.n_steps == 15               # the epoch end before step 17


def test_c12_resume_after_a_rollback_keeps_history_and_epoch_losses_consistent():
    t, model, *_ = _late_nonfinite()
    t.fit()
    assert t.state == "completed" and t.epoch == 6 and t.history.n_steps == t.step
    steps = t.history.steps
    assert steps.step.tolist() == list(range(t.step)) and np.isfinite(steps.loss).all()
    rows = t.history.epoch_records
    assert [r["epoch"] for r in rows] == list(range(6)) and [r["step"] for r in rows] == sorted(r["step"] for r in rows)
    for r in rows:                           # equal batch sizes: the epoch loss is the mean of its steps
        assert r["loss"] == pytest.approx(steps.loss[steps.epoch == r["epoch"]].mean(), rel=1e-6)
    assert all(torch.isfinite(p).all() for p in model.parameters())


# ---------------------------------------------------------------- C24 history holds numbers
def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_c24_history_holds_plain_numbers_not_tensors():
    torch.manual_seed(0)
    data = [(torch.randn(16, 4), torch.randint(0, 3, (16,))) for _ in range(3)]
    t = nw.Trainer(nn.Linear(4, 3), data, data, epochs=2, **CPU)
    t.fit()
    for row in t.history.epoch_records:
        for k, v in row.items():
            assert type(v) in (int, float), (k, type(v))
    for ev in t.history.event_records:
        assert not any(isinstance(v, torch.Tensor) for v in ev.values())
    for k, a in t.history.arrays().items():
        assert isinstance(a, np.ndarray), k
    tensors = _tensors_reachable_from(t)
    assert len(tensors) > 10 and not [x for x in tensors if x.grad_fn is not None]   # no graph is kept


def _tensors_reachable_from(root) -> list:
    """Tensors reachable from ``root`` through containers and instances (not through classes,
    modules or functions, which would reach the whole process)."""
    skip = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType)
    seen, todo, found = set(), [root], []
    while todo:
        o = todo.pop()
        if id(o) in seen or isinstance(o, skip):
            continue
        seen.add(id(o))
        if isinstance(o, torch.Tensor):
            found.append(o)
        else:
            todo.extend(gc.get_referents(o))
    return found


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc (Linux)")
def test_c24_memory_does_not_grow_with_epochs():
    torch.manual_seed(0)
    # activations of 125 KB (below malloc's mmap threshold, so RSS is not allocator noise):
    # a graph kept per step (train or validation) would add ~250 KB x 80+ steps
    model = nn.Sequential(nn.Linear(16, 1000), nn.Tanh(), nn.Linear(1000, 1))
    data = [(torch.randn(32, 16), torch.randn(32, 1)) for _ in range(20)]
    t = nw.Trainer(model, data, data[:5], epochs=2, lr=1e-3, **CPU)
    t.fit()
    gc.collect()
    rss2 = _rss_bytes()
    tracemalloc.start()
    t.fit(epochs=4)
    gc.collect()
    py_growth = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    rss6 = _rss_bytes()
    assert t.history.n_steps == 120 and t.state == "completed"
    assert rss6 - rss2 < 8 * 2**20             # kept graphs would add ~20 MB (train) + ~5 MB (validation)
    assert py_growth < 2**20                   # Python-side growth: the history rows only


# ---------------------------------------------------------------- C25 interrupt mid-epoch
class StopAt(Dataset):
    """Raises KeyboardInterrupt when item ``stop_at`` is fetched (the notebook's stop button)."""

    def __init__(self, n, stop_at):
        g = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(n, 8, generator=g), torch.randint(0, 3, (n,), generator=g)
        self.stop_at, self.armed = stop_at, True

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        if self.armed and i == self.stop_at:
            self.armed = False
            raise KeyboardInterrupt
        return self.x[i], self.y[i]


def _c25_model():
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Dropout(0.5), nn.Linear(4, 3))


def test_c25_interrupt_stops_the_whole_run_at_the_last_completed_step():
    model = _c25_model()
    init = copy.deepcopy(model)
    ds = StopAt(12, stop_at=8)                      # batch_size 4: interrupted fetching batch 2
    t = nw.Trainer(model, DataLoader(ds, batch_size=4), epochs=3, lr=0.1, **CPU)
    torch.manual_seed(5)
    t.fit()                                         # returns normally, no traceback
    assert t.state == "stopped" and t.error is None and t.step == 2 and t.history.n_steps == 2
    assert model.training is True and all(p.grad is None for p in model.parameters())
    assert any("interrupted at epoch 0, step 2" in e["message"] for e in events(t, "state"))
    # oracle: same RNG sequence (one DataLoader iterator, then dropout in two forwards)
    clean = StopAt(12, stop_at=-1)
    torch.manual_seed(5)
    it = iter(DataLoader(clean, batch_size=4))
    ref, ref_losses = oracle(init, [next(it), next(it)], F.cross_entropy, 2, lr=0.1)
    assert same_params(model, ref) and np.allclose(t.history.steps.loss, ref_losses, rtol=1e-6)
    # a later fit() continues from step 2
    t.fit()
    assert t.state == "completed" and t.epoch == 3
    assert t.history.steps.step.tolist() == list(range(t.history.n_steps))
    assert t.history.n_steps == t.step and t.step > 2 and t.history.steps.loss.iloc[:2].tolist() == \
        pytest.approx(ref_losses, rel=1e-6)


def test_c25_interrupt_during_validation_restores_train_mode_and_clears_grads():
    model = _c25_model()
    train = DataLoader(StopAt(8, stop_at=-1), batch_size=4)
    val = DataLoader(StopAt(8, stop_at=4), batch_size=4)
    t = nw.Trainer(model, train, val, epochs=3, **CPU)
    t.fit()
    assert t.state == "stopped" and t.step == 2 and t.history.epoch_records == []
    assert model.training is True and all(p.grad is None for p in model.parameters())
    assert any("interrupted at epoch 0, step 2" in e["message"] for e in events(t, "state"))


# ---------------------------------------------------------------- user code raising
class Boom(Exception):
    pass


class FailingForward(nn.Module):
    def __init__(self, fail_at):
        super().__init__()
        torch.manual_seed(0)
        self.lin, self.calls, self.fail_at = nn.Linear(3, 2), 0, fail_at

    def forward(self, x):
        if torch.is_grad_enabled() and self.training:
            if self.calls == self.fail_at:
                raise Boom("forward broke")
            self.calls += 1
        return self.lin(x)


def _batches(n=4):
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(4, 3, generator=g), torch.randint(0, 2, (4,), generator=g)) for _ in range(n)]


def test_exception_in_forward_fails_the_run_keeping_history_and_weights():
    model, data = FailingForward(5), _batches()
    init = copy.deepcopy(model.lin)
    t = nw.Trainer(model, data, epochs=3, lr=0.1, **CPU)
    with pytest.raises(Boom, match="forward broke"):
        t.fit()
    assert t.state == "failed" and isinstance(t.error, Boom) and t.step == 5 and t.history.n_steps == 5
    ref, ref_losses = oracle(init, data, F.cross_entropy, 5, lr=0.1)
    assert same_params(model.lin, ref) and np.allclose(t.history.steps.loss, ref_losses, rtol=1e-6)
    (err,) = events(t, "error")
    assert "forward pass" in err["message"] and "step 5" in err["message"] and err["step"] == 5
    assert model.training is True and all(p.grad is None for p in model.parameters())


def test_exception_in_loader_fails_the_run_naming_the_phase_and_step():
    data = _batches()

    class Failing:
        def __iter__(self):
            for i, b in enumerate(data):
                if i == 3:
                    raise Boom("loader broke")
                yield b

    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    init = copy.deepcopy(model)
    t = nw.Trainer(model, Failing(), epochs=3, lr=0.1, **CPU)
    with pytest.raises(Boom, match="loader broke"):
        t.fit()
    assert t.state == "failed" and t.error is not None and t.history.n_steps == 3
    ref, _ = oracle(init, data, F.cross_entropy, 3, lr=0.1)
    assert same_params(model, ref)
    (err,) = events(t, "error")
    assert "loading a batch" in err["message"] and "step 3" in err["message"]


def test_exception_in_background_run_is_kept_not_raised():
    model = FailingForward(2)
    t = nw.Trainer(model, _batches(), epochs=2, **CPU)
    t.start()
    assert t.wait(10)
    assert t.state == "failed" and isinstance(t.error, Boom) and t.history.n_steps == 2


# ---------------------------------------------------------------- C26 settings and Stop while running
def test_c26_set_lr_from_another_thread_reaches_every_param_group_by_the_next_step():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    opt = torch.optim.SGD([{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 0.02}],
                          lr=0.01)
    used = []                                       # (steps completed, lr of each group) at opt.step()
    opt.register_step_pre_hook(lambda o, a, k: used.append((t.step, [g["lr"] for g in o.param_groups])))
    data = [(torch.randn(16, 8), torch.randint(0, 3, (16,))) for _ in range(50)]
    t = nw.Trainer(model, data, optimizer=opt, epochs=1000, grad_stats=False, **CPU)
    t.start()
    try:
        deadline = time.monotonic() + 10
        while t.step < 20 and time.monotonic() < deadline:
            time.sleep(0.001)
        t0 = time.perf_counter()
        t.set(lr=0.5)
        k = t.step
        while not (used and used[-1][1] == [0.5, 0.5]) and time.perf_counter() - t0 < 5:
            time.sleep(0.0005)
        latency = time.perf_counter() - t0
        time.sleep(0.02)
        t1 = time.perf_counter()
        t.stop()
        stop_step = t.step
        assert t.wait(2)
        stop_latency = time.perf_counter() - t1
    finally:
        t.stop()
        t.wait(5)
    assert t.state == "stopped"
    assert latency < 0.5 and stop_latency < 0.5
    later = [lrs for s, lrs in used if s >= k + 1]
    assert later and all(lrs == [0.5, 0.5] for lrs in later)
    assert [g["lr"] for g in opt.param_groups] == [0.5, 0.5]
    assert t.step <= stop_step + 1
    change = [e for e in events(t, "setting") if e["name"] == "lr"]
    assert len(change) == 1 and change[0]["old"] == 0.01 and change[0]["new"] == 0.5


# ---------------------------------------------------------------- C28 nothing per step
def test_c28_history_flushes_far_fewer_than_steps():
    torch.manual_seed(0)
    data = [(torch.randn(8, 8), torch.randn(8, 1)) for _ in range(2000)]
    model = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 1))
    t = nw.Trainer(model, data, epochs=1, **CPU)
    flushes = []
    t.on(Event.METRICS_FLUSHED, lambda tr, step, **_: flushes.append(step))
    t0 = time.perf_counter()
    t.fit()
    wall = time.perf_counter() - t0
    assert t.history.n_steps == 2000
    assert len(flushes) < 2000 / 10
    assert len(flushes) <= 10 + 5 + 1.5 * wall / t.flush_interval_s     # warm-up + epoch end + ~10 Hz
    steps, _, _ = t.history.gradient_norms()
    assert 0 < len(steps) < 2000 / 5                                  # gradient statistics sampled


def test_a_blow_up_at_step_1_of_a_fresh_trainer_is_caught_not_crashed():
    """lr 1e3 on a classifier: the loss goes 1.1 -> 5.8e3 at step 1, before any starting level
    was stored; the message compares it with the loss of step 0."""
    torch.manual_seed(0)
    x = torch.randn(64, 4)
    y = (x[:, 0] > 0).long()
    t = nw.Trainer(nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2)), [(x, y)] * 4, epochs=3, lr=1e3,
                   momentum=0.9, **CPU)
    with pytest.warns(RuntimeWarning, match=r"loss diverged at step 1 \(epoch 0\): [\d.e+]+, [\d.e+]+x its starting "
                                            r"level [\d.]+, with learning rate 1000"):
        t.fit()
    assert t.state == "paused" and t.error is None and t.step == 0
