"""Cases C01-C06 and C18 of ``shared/cases/`` run through ``nnwidgets.Trainer``: features,
targets and loaders as users really pass them.

Each test feeds a case's data to the Trainer and checks what the Trainer did with it: the
notice or the error it gave, and the numbers it recorded. PyTorch is the oracle: loss values
come from ``torch.nn.functional`` on the hand-fixed tensors, weights from the hand-written
loop in ``_engine_util.oracle``. The other cases: ``test_engine_cases_grads.py`` (C13, C14,
C21), ``test_engine_cases_runs.py`` (C12, C24, C25, C26, C28, errors in user code),
``test_engine_metrics.py`` (C08, C10, C15), ``test_checkpoint.py`` (C19).
"""
from __future__ import annotations

import copy
import sys
import threading
import time
import types

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

import nnwidgets as nw
from nnwidgets.data import DataError

from _engine_util import (LABELS, LOGITS, Echo, events, first_loss, fit_one, notice, notice_codes, oracle,
                          same_params)

CPU = dict(device="cpu")


# ---------------------------------------------------------------- C01 feature dtypes
C01 = pd.DataFrame({"bachelor": [120, 340, 560, 80], "associate": [60, 150, 210, 40],
                    "income": [41000, 52000, 61000, 38000]})


@pytest.mark.parametrize("scale", [None, 100.0], ids=["int64", "float64"])
def test_c01_features_cast_to_model_dtype_with_notice_and_train(scale):
    values = C01[["bachelor", "associate"]].values                # int64
    X = torch.tensor(values if scale is None else values / scale)  # numpy division -> float64
    assert X.dtype == (torch.int64 if scale is None else torch.float64)
    y = torch.tensor(C01["income"].values / 1000.0, dtype=torch.float32).view(-1, 1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))
    init = copy.deepcopy(model)
    t = nw.Trainer(model, DataLoader(TensorDataset(X, y), batch_size=2), epochs=2, lr=1e-6, **CPU)
    t.fit()
    assert t.state == "completed" and t.history.n_steps == 4
    msg = notice(t, "cast_features")
    assert str(X.dtype) in msg and "torch.float32" in msg and "x.float()" in msg
    batches = [(X[:2].float(), y[:2]), (X[2:].float(), y[2:])]
    ref, losses = oracle(init, batches, F.mse_loss, 4, lr=1e-6)
    assert np.allclose(t.history.steps.loss, losses, rtol=1e-6)
    assert same_params(model, ref) and all(p.dtype == torch.float32 for p in model.parameters())


# ---------------------------------------------------------------- C02 label dtype and range
C02 = pd.DataFrame({"x1": [0.5, 1.2, 3.3, 0.9], "label": LABELS})
CE_0_4218 = F.cross_entropy(LOGITS, torch.tensor(LABELS)).item()


def test_c02_canonical_labels_loss_0_4218_without_notice():
    t = fit_one(Echo(), [(LOGITS, torch.tensor(LABELS))])
    assert abs(first_loss(t) - 0.4218) < 1e-4 and abs(first_loss(t) - CE_0_4218) < 1e-6
    assert "labels_to_int64" not in notice_codes(t)


@pytest.mark.parametrize("labels, dtype", [
    (torch.tensor(C02.values[:, 1]), "torch.float64"),                 # mixed frame -> float64
    (torch.tensor(C02["label"].values.astype("int32")), "torch.int32"),  # np.int32 / CSV readers
], ids=["float64", "int32"])
def test_c02_whole_number_labels_cast_to_int64_with_notice(labels, dtype):
    t = fit_one(Echo(), [(LOGITS, labels)])
    assert t.task == "multiclass" and t.state == "completed"
    msg = notice(t, "labels_to_int64")
    assert dtype in msg and "torch.int64" in msg and "y.long()" in msg
    assert abs(first_loss(t) - 0.4218) < 1e-4 and abs(first_loss(t) - CE_0_4218) < 1e-6


def _fails_before_step_1(labels, match):
    model = Echo()
    t = nw.Trainer(model, [(LOGITS, labels)], epochs=1, **CPU)
    with pytest.raises(DataError, match=match):
        t.fit()
    assert t.state == "failed" and isinstance(t.error, DataError) and t.history.n_steps == 0
    assert [e["name"] for e in events(t, "error")] == ["failed"]
    return t


def test_c02_one_based_labels_stop_saying_they_look_1_based():
    _fails_before_step_1(torch.tensor(C02["label"].values + 1),
                         r"look 1-based: the first batch has labels 1\.\.3, but with C=3 .*y = y - 1")


@pytest.mark.parametrize("labels, match", [
    (torch.tensor([0, 1, 5, 1]), r"Class label 5 is out of range: .*min 0, max 5.*C=3.*\[0, 2\]"),
    (torch.tensor([0, -1, 2, 1]), r"negative labels \(min -1, max 2\).*0\.\.2"),
], ids=["above", "negative"])
def test_c02_out_of_range_labels_stop_naming_min_max_and_c(labels, match):
    _fails_before_step_1(labels, match)


def test_c02_zero_d_float_target_of_an_unbatched_sample_is_cast_and_trains():
    logits, target = torch.tensor([7.2, 0.1]), torch.tensor(1.0)   # one unbatched sample
    t = fit_one(Echo(), [(logits, target)])
    assert t.task == "multiclass" and "labels_to_int64" in notice_codes(t)
    assert first_loss(t) == pytest.approx(F.cross_entropy(logits, torch.tensor(1)).item(), rel=1e-6)
    assert t.history.epoch_records[0]["accuracy"] == 0.0           # argmax 0, label 1


def test_c02_out_of_range_label_in_a_later_batch_fails_the_run_with_history_kept():
    """A bad label in a later batch fails the run with the first batch's error naming that batch
    (epoch, step), PyTorch's IndexError as its cause; state failed, the steps before it kept."""
    batches = [(LOGITS, torch.tensor(LABELS)), (LOGITS, torch.tensor([0, 1, 7, 1]))]
    t = nw.Trainer(Echo(), batches, epochs=1, **CPU)
    with pytest.raises(DataError, match=r"Class label 7 is out of range: the batch at epoch 0, step 1 has labels "
                                        r"min 0, max 7, .*C=3 .*\[0, 2\]") as err:
        t.fit()
    assert isinstance(err.value.__cause__, IndexError) and err.value.code == "labels_out_of_range"
    assert t.state == "failed" and t.history.n_steps == 1
    assert "step 1" in events(t, "error")[0]["message"]


def test_training_with_every_layer_frozen_names_the_cause_and_the_fix():
    model = nn.Linear(3, 3)
    for p in model.parameters():
        p.requires_grad_(False)
    t = nw.Trainer(model, [(LOGITS, torch.tensor(LABELS))], epochs=1, **CPU)
    with pytest.raises(RuntimeError, match=r"No parameter of the model requires a gradient at epoch 0, step 0 "
                                           r"\(are all layers frozen\?\).*trainer\.freeze\(name, False\)"):
        t.fit()
    assert t.state == "failed"


# ---------------------------------------------------------------- C03 labels [N, 1]
def test_c03_labels_n_by_1_squeezed_with_notice_loss_0_4218():
    df = pd.DataFrame({"f1": [0.1, 0.4, 0.3, 0.9], "label": LABELS})
    y = torch.tensor(df[["label"]].values)                      # [4, 1] int64
    t = fit_one(Echo(), DataLoader(TensorDataset(LOGITS, y), batch_size=4))
    msg = notice(t, "squeeze_target")
    assert "[4, 1]" in msg and "[4]" in msg and "squeeze(1)" in msg
    assert abs(first_loss(t) - 0.4218) < 1e-4 and abs(first_loss(t) - CE_0_4218) < 1e-6


# ---------------------------------------------------------------- C05 regression [N] vs [N, 1]
@pytest.mark.parametrize("pred, target", [
    (torch.tensor([[1.0], [2.0], [3.0]]), torch.tensor([1.0, 2.0, 3.0])),
    (torch.tensor([1.0, 2.0, 3.0]), torch.tensor([[1.0], [2.0], [3.0]])),
], ids=["target_N", "target_N1"])
def test_c05_target_reshaped_to_output_shape_loss_zero(pred, target):
    t = fit_one(Echo(), [(pred, target)])
    assert t.task == "regression"
    msg = notice(t, "reshape_target")
    assert str(list(target.shape)) in msg and str(list(pred.shape)) in msg
    assert first_loss(t) == 0.0                                 # broadcasting would give 1.3333


def test_c05_snippet_regression_converges_to_the_true_weights():
    torch.manual_seed(0)
    x = torch.randn(100, 2)
    y = 10 + 9 * x[:, 0] - 2 * x[:, 1] + torch.randn(100)       # shape [100]
    model = nn.Linear(2, 1)
    init = copy.deepcopy(model)
    t = nw.Trainer(model, [(x, y)], lr=0.1, epochs=200, grad_stats=False, **CPU)
    t.fit()
    assert "reshape_target" in notice_codes(t) and t.history.n_steps == 200
    losses = t.history.steps.loss.to_numpy()
    assert losses[-1] < 1.5
    assert np.allclose(model.weight.detach().numpy().ravel(), [9.08, -1.87], atol=0.05)
    ref, ref_losses = oracle(init, [(x, y.view(-1, 1))], F.mse_loss, 200, lr=0.1)
    assert np.allclose(losses, ref_losses, rtol=1e-5)
    assert torch.allclose(model.weight, ref.weight, atol=1e-6)


# ---------------------------------------------------------------- C06 BCE / MSE target dtypes
class RecordingBCE(nn.BCEWithLogitsLoss):
    """BCEWithLogitsLoss that remembers the dtypes and shapes it was called with."""

    def forward(self, output, target):
        loss = super().forward(output, target)
        self.seen = (target.dtype, tuple(target.shape), loss.dtype)
        return loss


class RecordingMSE(nn.MSELoss):
    def forward(self, output, target):
        loss = super().forward(output, target)
        self.seen = (target.dtype, tuple(target.shape), loss.dtype)
        return loss


C06 = pd.DataFrame({"spam": [0, 1, 1, 0], "price": [1, 2, 3, 4]})
BIN_LOGITS = torch.tensor([[-0.5], [0.3], [1.2], [0.1]])
PRED = torch.tensor([[1.5], [2.0], [2.5], [4.0]])


@pytest.mark.parametrize("target", [torch.tensor(C06[["spam"]].values), torch.tensor(C06["spam"].values)],
                         ids=["int64_N1", "int64_N"])
def test_c06_bce_target_cast_to_float32_loss_0_5090(target):
    loss = RecordingBCE()
    t = fit_one(Echo(), [(BIN_LOGITS, target)], loss=loss)
    assert t.task == "binary" and "cast_target" in notice_codes(t)
    assert loss.seen == (torch.float32, (4, 1), torch.float32)
    oracle_loss = F.binary_cross_entropy_with_logits(BIN_LOGITS, target.view(-1, 1).float()).item()
    assert abs(first_loss(t) - 0.5090) < 1e-4 and abs(first_loss(t) - oracle_loss) < 1e-6


@pytest.mark.parametrize("target", [torch.tensor(C06[["price"]].values), torch.tensor(C06[["price"]].values / 1.0)],
                         ids=["int64", "float64"])
def test_c06_mse_target_cast_to_output_dtype_loss_0_1250_float32(target):
    loss = RecordingMSE()
    t = fit_one(Echo(), [(PRED, target)], loss=loss)
    msg = notice(t, "cast_target")
    assert str(target.dtype) in msg and "torch.float32" in msg
    assert loss.seen == (torch.float32, (4, 1), torch.float32)   # a float64 target made a float64 loss
    assert abs(first_loss(t) - 0.125) < 1e-6


def test_c06_auto_loss_on_int64_targets_infers_task_and_casts():
    t = fit_one(Echo(), [(BIN_LOGITS, torch.tensor(C06[["spam"]].values))])
    assert t.task == "binary" and isinstance(t.loss_fn, nn.BCEWithLogitsLoss)
    assert abs(first_loss(t) - 0.5090) < 1e-4
    t = fit_one(Echo(), [(PRED, torch.tensor(C06[["price"]].values))])
    assert t.task == "regression" and isinstance(t.loss_fn, nn.MSELoss)
    assert abs(first_loss(t) - 0.125) < 1e-6


# ---------------------------------------------------------------- C18 DataLoader workers
def test_c18_notebook_dataset_falls_back_to_zero_workers_without_starting_any(monkeypatch):
    class RowsDataset(Dataset):
        def __init__(self):
            self.x, self.y = torch.randn(8, 3), torch.randint(0, 2, (8,))

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return self.x[i], self.y[i]

    notebook_main = types.ModuleType("__main__")                # a kernel's __main__ has no __file__
    RowsDataset.__module__, RowsDataset.__qualname__ = "__main__", "RowsDataset"
    notebook_main.RowsDataset = RowsDataset
    monkeypatch.setitem(sys.modules, "__main__", notebook_main)

    def no_workers(*a, **k):
        raise AssertionError("worker processes were started")
    monkeypatch.setattr(torch.utils.data.dataloader, "_MultiProcessingDataLoaderIter", no_workers)

    loader = DataLoader(RowsDataset(), batch_size=4, num_workers=2, multiprocessing_context="spawn")
    t = nw.Trainer(nn.Linear(3, 2), loader, epochs=2, **CPU)
    t.fit()
    assert t.state == "completed" and t.history.n_steps == 4
    msg = notice(t, "workers_fallback")
    assert "RowsDataset" in msg and "num_workers=2 -> 0" in msg and "'spawn'" in msg and ".py module" in msg


def test_c18_first_batch_timeout_raises_data_error_instead_of_hanging():
    release = threading.Event()

    class Stuck:
        def __iter__(self):
            release.wait(30)
            yield torch.zeros(2, 3), torch.zeros(2, dtype=torch.long)

    t = nw.Trainer(nn.Linear(3, 2), Stuck(), epochs=1, first_batch_timeout_s=0.2, **CPU)
    t0 = time.perf_counter()
    try:
        with pytest.raises(DataError, match=r"no batch within 0\.2 s.*num_workers=0"):
            t.fit()
    finally:
        release.set()
    assert time.perf_counter() - t0 < 5 and t.state == "failed"
