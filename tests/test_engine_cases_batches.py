"""Every batch keeps to what the first batch decided (nnwidgets.checks.batch_guard): a later batch
that breaks it fails the run with the first batch's error naming that batch, before its step is
applied (or rolled back to the last verified weights when it was found after being applied).

PyTorch is the oracle: the hand-written loop over the batches before the broken one gives the
weights and losses the failed run must keep.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nnwidgets as nw
from nnwidgets.engine import rollback
from nnwidgets.checks.batch_guard import TargetGuard, fetch, target_guard
from nnwidgets.data import DataError

from _engine_util import LOGITS, LABELS, Echo, notice, oracle, same_params

CPU = dict(device="cpu")


def binary_batches(n: int, bad_at: int | None, value: float = 2.0):
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(n):
        x = torch.randn(4, 2, generator=g)
        y = torch.randint(0, 2, (4, 1), generator=g).float()
        if i == bad_at:
            y[1, 0] = value
        out.append((x, y))
    return out


def run_failing(model, batches, match, code, **kw):
    t = nw.Trainer(model, batches, epochs=1, lr=0.1, **CPU, **kw)
    with pytest.raises(DataError, match=match) as err:
        t.fit()
    assert err.value.code == code and t.state == "failed"
    return t, err.value


def test_bce_target_2_in_batch_3_fails_before_its_step_with_the_weights_of_step_2():
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    init = copy.deepcopy(model)
    batches = binary_batches(5, bad_at=2)
    t, err = run_failing(model, batches, r"BCEWithLogitsLoss needs targets in \{0, 1\}, but the batch at epoch 0, "
                         r"step 2 has values outside 0/1 \(min 0, max 2\)\..*Fix: labels 1/2 -> y - 1.*the run "
                         r"stopped before applying that batch; the weights after step 1 are kept",
                         "binary_target_values", loss=nn.BCEWithLogitsLoss())
    ref, losses = oracle(init, batches[:2], F.binary_cross_entropy_with_logits, 2, lr=0.1)
    assert t.history.n_steps == 2 and np.allclose(t.history.steps.loss, losses, rtol=1e-6)
    assert same_params(model, ref)
    assert (t.history.steps.loss > 0).all()  # the negative loss of the 2.0 target was never recorded


def test_a_broken_batch_found_after_it_was_applied_rolls_back_to_the_last_verified_weights(monkeypatch):
    monkeypatch.setattr(rollback, "SNAPSHOT_INTERVAL_S", 0.0)  # a snapshot at every verified flush
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    init = copy.deepcopy(model)
    batches = binary_batches(30, bad_at=20, value=-1.0)
    t, err = run_failing(model, batches, r"the batch at epoch 0, step 20 has values outside 0/1 \(min -1, max 1\).*"
                         r"that batch had been applied, so the run rolled back to the weights before step 9",
                         "binary_target_values", flush_interval_s=1e9)  # flushes: steps 0..9, then epoch end
    ref, _ = oracle(init, batches[:9], F.binary_cross_entropy_with_logits, 9, lr=0.1)
    assert t.step == 9 and t.history.n_steps == 9 and same_params(model, ref)


def test_multi_hot_rows_after_one_hot_rows_stop_instead_of_argmax():
    onehot = F.one_hot(torch.tensor(LABELS), 3).float()
    multi = onehot.clone()
    multi[0, 2] = 1.0  # row 0: classes 0 and 2
    t, _ = run_failing(Echo(), [(LOGITS, onehot), (LOGITS, multi)],
                       r"one-hot rows over 3 classes in the first batch, but the batch at epoch 0, step 1 has rows "
                       r"that are not \(row sums min 1, max 2\).*nn.BCEWithLogitsLoss\(\)", "onehot_rows")
    assert t.history.n_steps == 1
    assert t.history.steps.loss.iloc[0] == pytest.approx(F.cross_entropy(LOGITS, torch.tensor(LABELS)).item())


def test_bool_one_hot_rows_with_an_empty_row_stop():
    onehot = F.one_hot(torch.tensor(LABELS), 3).bool()
    empty = onehot.clone()
    empty[3] = False
    run_failing(Echo(), [(LOGITS, onehot), (LOGITS, empty)], r"step 1 has rows that are not \(row sums min 0, max 1\)",
                "onehot_rows")


FLOAT_BINARY_NOTICE = ("Treating this run as binary (0/1 targets, one output per target -> BCEWithLogitsLoss). "
                       "The targets are torch.float32 and all 0 or 1 in the first batch; if they are values to "
                       "predict, pass task='regression' (or loss='mse'). Every batch is checked: a later target "
                       "other than 0 or 1 stops the run.")


def regression_batches():
    x = torch.tensor([[0.5], [-0.2], [0.1], [0.3]])
    return [(x, torch.tensor([[0.0], [1.0], [1.0], [0.0]])), (x, torch.tensor([[0.37], [1.5], [0.0], [2.25]]))]


def test_float_targets_that_start_all_0_1_are_binary_with_a_notice_and_a_later_value_says_task_regression():
    t, _ = run_failing(nn.Linear(1, 1), regression_batches(),
                       r"the batch at epoch 0, step 1 has values outside 0/1 \(min 0, max 2.25\)\. The task was "
                       r"inferred from float targets .* pass task='regression' \(or loss='mse'\)",
                       "binary_target_values")
    assert notice(t, "task_inferred") == FLOAT_BINARY_NOTICE
    assert t.history.n_steps == 1


def test_fractional_values_inside_0_1_are_caught_as_well():
    batches = regression_batches()
    batches[1] = (batches[1][0], torch.tensor([[0.37], [1.0], [0.0], [1.0]]))
    run_failing(nn.Linear(1, 1), batches, r"step 1 has 1 values between 0 and 1 \(not 0 or 1\)\..*task='regression'",
                "binary_target_values")


def test_the_same_data_with_task_regression_trains_as_the_hand_written_loop():
    torch.manual_seed(0)
    model = nn.Linear(1, 1)
    init = copy.deepcopy(model)
    t = nw.Trainer(model, regression_batches(), epochs=1, lr=0.1, task="regression", **CPU)
    t.fit()
    ref, losses = oracle(init, regression_batches(), F.mse_loss, 2, lr=0.1)
    assert t.state == "completed" and np.allclose(t.history.steps.loss, losses, rtol=1e-6) and same_params(model, ref)


def test_int_0_1_labels_get_no_float_caveat():
    x = torch.tensor([[0.5], [-0.2], [0.1], [0.3]])
    t = nw.Trainer(nn.Linear(1, 1), [(x, torch.tensor([0, 1, 1, 0]))], epochs=1, **CPU)
    t.fit()
    assert "values to predict" not in notice(t, "task_inferred") and t.task == "binary"


def test_float_labels_with_a_fraction_in_a_later_batch_stop_instead_of_truncating():
    whole, frac = torch.tensor([0.0, 1.0, 2.0, 1.0]), torch.tensor([0.0, 1.5, 2.0, 1.0])
    run_failing(Echo(), [(LOGITS, whole), (LOGITS, frac)], r"CrossEntropyLoss needs int64 class indices, but the batch "
                r"at epoch 0, step 1 has 1 fractional float labels", "fractional_labels")


@pytest.mark.parametrize("labels, match, code", [
    ([1, 2, 3, 3], r"Class labels look 1-based: the batch at epoch 0, step 1 has labels 1\.\.3, but with C=3",
     "labels_one_based"),
    ([0, -2, 1, 1], r"the batch at epoch 0, step 1 has negative labels \(min -2, max 1\)", "negative_labels"),
])
def test_label_range_of_a_later_batch_gets_the_first_batch_texts(labels, match, code):
    run_failing(Echo(), [(LOGITS, torch.tensor([1, 2, 1, 1])), (LOGITS, torch.tensor(labels))], match, code)


def test_ignore_index_labels_in_a_later_batch_are_not_an_error():
    later = torch.tensor([0, -100, 2, 1])
    t = nw.Trainer(Echo(), [(LOGITS, torch.tensor(LABELS)), (LOGITS, later)], epochs=1, **CPU)
    t.fit()
    assert t.state == "completed"
    assert t.history.steps.loss.iloc[1] == pytest.approx(F.cross_entropy(LOGITS, later).item(), rel=1e-6)


def test_a_target_dtype_change_stops_naming_both_dtypes():
    run_failing(Echo(), [(LOGITS, torch.tensor(LABELS)), (LOGITS, torch.tensor([0.0, 1.5, 2.0, 1.0]))],
                r"Targets changed dtype: the first batch had torch.int64, a later batch has torch.float32 \[4\]",
                "target_dtype_changed")


def test_regression_targets_are_not_checked_and_fetch_transfers_losses_alone():
    assert target_guard("regression", nn.MSELoss(), torch.zeros(4), (), 1, "MSELoss", False) is None
    values, stats = fetch([torch.tensor(1.5), torch.tensor(2.5)], [(), ()])
    assert values.tolist() == [1.5, 2.5] and stats is None


def test_fetch_returns_each_batchs_stats_beside_its_loss():
    guard = TargetGuard("labels", torch.int64, False, 3, -100, "CrossEntropyLoss")
    rows = [guard.stats(y, y) for y in (torch.tensor([0, 2, 1]), torch.tensor([1, 1, 5]))]
    values, stats = fetch([torch.tensor(0.25), torch.tensor(0.5)], rows)
    assert values.tolist() == [0.25, 0.5] and stats.tolist() == [[0, 2], [1, 5]]
    i, err = guard.first_error(stats, epoch=3, first_step=40)
    assert i == 1 and err.code == "labels_out_of_range" and "the batch at epoch 3, step 41" in str(err)


def test_a_broken_batch_still_buffered_when_the_run_is_stopped_fails_it(monkeypatch):
    monkeypatch.setattr(rollback, "SNAPSHOT_INTERVAL_S", 0.0)
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    init = copy.deepcopy(model)
    batches = binary_batches(20, bad_at=12)
    t = nw.Trainer(model, batches, epochs=1, lr=0.1, flush_interval_s=1e9, **CPU)
    t.on(nw.Event.BATCH_COMPLETED, lambda tr, step, epoch: tr.stop() if step == 14 else None)
    with pytest.raises(DataError, match=r"the batch at epoch 0, step 12 has values outside 0/1.*rolled back to the "
                                        r"weights before step 9"):
        t.fit()
    assert t.state == "failed" and t.step == 9
    ref, _ = oracle(init, batches[:9], F.binary_cross_entropy_with_logits, 9, lr=0.1)
    assert same_params(model, ref)


def test_int_labels_for_cross_entropy_on_cpu_cost_nothing_per_step_and_keep_the_message():
    """PyTorch's CPU CrossEntropyLoss / NLLLoss check the label range themselves: the guard
    does no per-step reduction there and reads the failing batch's range for the same text."""
    y = torch.tensor(LABELS)
    lazy = target_guard("multiclass", nn.CrossEntropyLoss(), y, (), 3, "CrossEntropyLoss", False, torch.device("cpu"))
    assert lazy.lazy and lazy.stats(y, y) == ()
    assert target_guard("multiclass", nn.NLLLoss(), y, (), 3, "NLLLoss", False, torch.device("cpu")).lazy
    meta = torch.device("meta")  # any other device: the guard reduces per step
    eager = target_guard("multiclass", nn.CrossEntropyLoss(), y, (), 3, "CrossEntropyLoss", False, meta)
    assert not eager.lazy and len(eager.stats(y, y)) == 2
    t = nw.Trainer(Echo(), [(LOGITS, y), (LOGITS, torch.tensor([0, 1, 2, 5]))], epochs=1, **CPU)
    with pytest.raises(DataError, match=r"Class label 5 is out of range: the batch at epoch 0, step 1 has labels min 0, "
                                        r"max 5, but the model outputs C=3 values"):
        t.fit()
    assert t._prepared.plan.guard.lazy and t.step == 1
