"""Non-finite values from the data (nnwidgets.checks.diagnose): a loss that turns NaN because its batch
already holds NaN/inf is named as a data problem with the data fix, and that batch is skipped
when the run resumes, so it is not retried forever. The hand-written loop over the clean batches
is the oracle for the weights the resumed run must reach."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nnwidgets as nw
from nnwidgets.checks import diagnose as _diagnose
from nnwidgets.engine import rollback
from nnwidgets.checks.diagnose import batch_ring, find_batch, nonfinite_in

from _engine_util import events, oracle, same_params

CPU = dict(device="cpu")


def batches(n: int, nan_at: int, where: str = "features"):
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(n):
        x, y = torch.randn(4, 3, generator=g), torch.randn(4, 1, generator=g)
        if i == nan_at:
            if where == "features":
                x[2, 1] = math.nan
            else:
                y[0, 0] = math.inf
        out.append((x, y))
    return out


def test_nan_features_pause_with_the_data_fix_and_resuming_skips_that_batch():
    data = batches(6, nan_at=3)
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    init = copy.deepcopy(model)
    t = nw.Trainer(model, data, epochs=1, lr=0.05, **CPU)
    with pytest.warns(RuntimeWarning, match=r"loss became nan at step 3 \(epoch 0\) because the batch at step 3 has "
                                            r"1 NaN \(columns \[1\]\) in its features: the loss is nan whatever the "
                                            r"learning rate\. Training paused, the weights after step 2 are kept; that "
                                            r"batch is skipped when the run resumes \(resume\(\) or fit\(\)\), and batches with NaN/inf data in later "
                                            r"epochs are skipped with a notice\. Clean "
                                            r"the data: df\.dropna\(\) .*torch\.nan_to_num\(x\)"):
        t.fit()
    assert t.state == "paused" and t.step == 3
    (ev,) = events(t, "nonfinite")
    assert ev["name"] == "data" and ev["new"] == "nan" and "learning rate 0.05" not in ev["message"]
    t.fit()  # resumes after the poisoned batch
    assert t.state == "completed" and t.step == 5 and len(events(t, "nonfinite")) == 1
    clean = data[:3] + data[4:]
    ref, losses = oracle(init, clean, F.mse_loss, 5, lr=0.05)
    assert same_params(model, ref) and np.allclose(t.history.steps.loss, losses, rtol=1e-6)


def test_inf_targets_are_named_as_the_targets():
    t = nw.Trainer(nn.Linear(3, 1), batches(4, nan_at=2, where="targets"), epochs=1, **CPU)
    with pytest.warns(RuntimeWarning, match=r"the batch at step 2 has 1 inf in its targets"):
        t.fit()
    t.fit()
    assert t.state == "completed" and t.step == 3


def test_a_poisoned_batch_found_after_it_was_applied_rolls_back_and_is_not_run_again(monkeypatch):
    monkeypatch.setattr(rollback, "SNAPSHOT_INTERVAL_S", 0.0)  # a snapshot at every verified flush
    data = batches(20, nan_at=15)
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    init = copy.deepcopy(model)
    t = nw.Trainer(model, data, epochs=2, lr=0.05, flush_interval_s=1e9, **CPU)  # flushes: steps 0..9, epoch end
    with pytest.warns(RuntimeWarning, match=r"at step 15 .*1 NaN \(columns \[1\]\) in its features.*rolled back to "
                                            r"the weights before step 9; that batch is skipped"):
        t.fit()
    assert t.step == 9 and t.history.n_steps == 9
    t.fit()  # epoch 0 ends with the batches it had consumed; epoch 1 meets the NaN once more: skipped, no pause
    assert t.state == "completed" and t.epoch == 2 and t.step == t.history.n_steps == 9 + 19
    assert [e["message"].split(" (epoch")[0] for e in events(t, "nonfinite")] == ["loss became nan at step 15"]
    assert [e["message"] for e in events(t, "notice") if e["name"] == "data_batch_skipped"] == [
        "skipped batch at step 24 (epoch 1): 1 NaN (columns [1]) in its features, as at step 15; "
        "skipped so far: 1"]  # epoch 1 starts at step 9; skipped at its position, before it was applied
    ref, _ = oracle(init, data[:9] + data[:15] + data[16:], F.mse_loss, 28, lr=0.05)
    assert same_params(model, ref)  # epoch 0: the steps before the rollback target; epoch 1: all but the NaN batch


def test_a_nan_batch_of_a_shuffled_loader_pauses_once_then_is_skipped_wherever_it_comes(monkeypatch):
    monkeypatch.setattr(rollback, "SNAPSHOT_INTERVAL_S", 0.0)
    from torch.utils.data import DataLoader, TensorDataset
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 3, generator=g), torch.randn(40, 1, generator=g)
    x[20, :] = math.nan
    torch.manual_seed(0)
    t = nw.Trainer(nn.Linear(3, 1), DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True), epochs=4,
                   lr=0.05, **CPU)
    with pytest.warns(RuntimeWarning, match=r"because the batch at step \d+ has 3 NaN"):
        t.fit()
    t.fit()
    assert t.state == "completed" and t.epoch == 4 and len(events(t, "nonfinite")) == 1
    skips = [e["message"] for e in events(t, "notice") if e["name"] == "data_batch_skipped"]
    assert len(skips) == 3 and all(f"skipped so far: {i + 1}" in m for i, m in enumerate(skips))
    assert t.step == t.history.n_steps and all(torch.isfinite(p).all() for p in t.model.parameters())


def test_a_batch_no_longer_held_is_said_so(monkeypatch):
    monkeypatch.setattr(_diagnose, "HOLD_BYTES", 1)  # keeps the last batch only
    t = nw.Trainer(nn.Linear(3, 1), batches(20, nan_at=15), epochs=1, flush_interval_s=1e9, **CPU)
    with pytest.warns(RuntimeWarning, match=r"at step 15 .*learning rate 0.01.*Usual fixes: .*\(that batch was no "
                                            r"longer held to check it for NaN/inf\)"):
        t.fit()
    assert events(t, "nonfinite")[0]["name"] == "loss"


def test_ring_holds_at_most_hold_bytes_and_finds_by_step():
    batch = (torch.zeros(128, 784), torch.zeros(128, dtype=torch.int64))  # 402,432 bytes
    ring = batch_ring(batch)
    assert ring.maxlen == min(64, _diagnose.HOLD_BYTES // 402_432) == 64
    assert batch_ring((torch.zeros(4096, 4096), torch.zeros(1))).maxlen == 1
    for s in range(70):
        ring.append((s, s * 10))
    assert find_batch(ring, 69) == 690 and find_batch(ring, 6) == 60 and find_batch(ring, 5) is None


def test_nonfinite_in_looks_into_nested_inputs_and_ignores_integers():
    assert nonfinite_in(((torch.ones(2, 2), torch.tensor([1, 2])), torch.zeros(2))) is None
    x = {"num": torch.tensor([[1.0, math.inf], [math.nan, 0.0]]), "cat": torch.tensor([0, 1])}
    assert nonfinite_in((x, torch.zeros(2))) == "1 NaN and 1 inf (columns [0, 1]) in its features"


class PoisonedInEpoch:
    """Re-iterable batches; in epoch ``bad_epoch`` batch ``bad_index`` has a NaN feature."""

    def __init__(self, data, bad_epoch: int, bad_index: int):
        self.data, self.bad, self.epoch = data, (bad_epoch, bad_index), -1

    def __len__(self):
        return len(self.data)

    def __iter__(self):
        self.epoch += 1
        for i, (x, y) in enumerate(self.data):
            if (self.epoch, i) == self.bad:
                x = x.clone()
                x[0, 0] = math.nan
            yield x, y


def test_a_rollback_to_the_epoch_start_goes_on_after_the_poisoned_batch_instead_of_running_it_again(monkeypatch):
    monkeypatch.setattr(rollback, "SNAPSHOT_INTERVAL_S", 1e9)  # snapshots only at the start and at epoch ends
    data = batches(20, nan_at=-1)
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    init = copy.deepcopy(model)
    t = nw.Trainer(model, PoisonedInEpoch(data, 1, 15), epochs=2, lr=0.05, flush_interval_s=1e9, **CPU)
    with pytest.warns(RuntimeWarning, match=r"at step 35 \(epoch 1\) because the batch at step 35 has 1 NaN .*rolled "
                                            r"back to the weights before step 20"):
        t.fit()
    t.fit()
    assert t.state == "completed" and t.step == 20 and len(events(t, "nonfinite")) == 1
    ref, _ = oracle(init, data, F.mse_loss, 20, lr=0.05)
    assert same_params(model, ref)  # epoch 1's applied steps were rolled back; its rest was consumed
    assert math.isnan(t.history.epoch_records[1]["loss"])  # an epoch left without a step has no loss


def _nan_row_loader():
    """40 samples, one row of NaN (sample 20), batches of 8 without shuffling: batch 2 of every epoch."""
    from torch.utils.data import DataLoader, TensorDataset
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 3, generator=g), torch.randn(40, 1, generator=g)
    x[20, :] = math.nan
    return DataLoader(TensorDataset(x, y), batch_size=8, shuffle=False), x, y


def test_a_nan_batch_of_an_unshuffled_loader_pauses_once_then_is_skipped_in_every_later_epoch():
    loader, x, y = _nan_row_loader()
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    init = copy.deepcopy(model)
    t = nw.Trainer(model, loader, epochs=3, lr=0.05, **CPU)
    with pytest.warns(RuntimeWarning, match=r"loss became nan at step 2 \(epoch 0\) because the batch at step 2 has "
                                            r"3 NaN \(columns \[0, 1, 2\]\) in its features"):
        t.fit()
    assert t.state == "paused" and t.step == 2
    t.fit()  # resumes past it; epochs 1 and 2 meet the same batch: skipped with a counted notice
    assert t.state == "completed" and t.epoch == 3 and t.step == 12
    assert len(events(t, "nonfinite")) == 1
    assert [e["message"] for e in events(t, "notice") if e["name"] == "data_batch_skipped"] == [
        "skipped batch at step 6 (epoch 1): 3 NaN (columns [0, 1, 2]) in its features, as at step 2; skipped so far: 1",
        "skipped batch at step 10 (epoch 2): 3 NaN (columns [0, 1, 2]) in its features, as at step 2; skipped so far: 2"]
    clean = [(x[i:i + 8], y[i:i + 8]) for i in (0, 8, 24, 32)]
    ref, losses = oracle(init, clean * 3, F.mse_loss, 12, lr=0.05)
    assert same_params(model, ref) and np.allclose(t.history.steps.loss, losses, rtol=1e-6)
    assert t.history.n_steps == t.step and t.history.steps.step.tolist() == list(range(12))
    assert len(t.history.epoch_records) == 3 and all(np.isfinite(r["loss"]) for r in t.history.epoch_records)


def test_a_nonfinite_loss_on_clean_data_still_pauses_after_a_data_nan_was_skipped():
    loader, x, y = _nan_row_loader()
    armed = [True]

    def loss(out, target):  # clean data, but a NaN loss once at step 7 (as a too high learning rate would)
        value = F.mse_loss(out, target)
        if armed[0] and t.step == 7:
            armed[0] = False
            return value * math.nan
        return value
    t = nw.Trainer(nn.Linear(3, 1), loader, epochs=3, lr=0.05, loss=loss, task="regression", **CPU)
    with pytest.warns(RuntimeWarning, match="because the batch at step 2 has"):
        t.fit()
    with pytest.warns(RuntimeWarning, match=r"loss became nan at step 7 \(epoch 1\) with learning rate 0.05"):
        t.fit()
    assert t.state == "paused" and t.step == 7 and [e["name"] for e in events(t, "nonfinite")] == ["data", "loss"]
    t.fit()
    assert t.state == "completed" and t.step == 12
    assert len([e for e in events(t, "notice") if e["name"] == "data_batch_skipped"]) == 2
