"""Tests for nnwidgets.data: batch checks and canonicalisation (cases C01-C08, C18).

PyTorch is the oracle: every loss value is compared with the loss of the
hand-fixed tensors from the case scripts in shared/cases/.
"""
import subprocess
import sys
import threading
import types

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, RandomSampler, TensorDataset, random_split
from torchmetrics import Accuracy
from torchmetrics.classification import BinaryAccuracy, MulticlassAccuracy

from nnwidgets.data import (DataError, Notice, check_num_classes, first_batch, make_loss, plan_batches,
                            prepare_features, resolve_task, safe_loader, split_batch)

LOGITS = torch.tensor([[2.0, 0.5, 0.1], [0.2, 1.5, 0.3], [0.1, 0.2, 1.9], [0.3, 1.1, 0.2]])  # C02/C03
LABELS = [0, 1, 2, 1]
X4 = torch.randn(4, 2)
BIN_LOGITS = torch.tensor([[-0.5], [0.3], [1.2], [0.1]])  # C06
PRED = torch.tensor([[1.5], [2.0], [2.5], [4.0]])  # C06


def plan_for(y, output=LOGITS, task="auto", loss=None, model=None, x=X4):
    """Run the engine's sequence on one batch; return (plan, loss_fn, canonical y, all notices)."""
    model = model if model is not None else nn.Linear(2, output.shape[-1] if output.dim() > 1 else 1)
    probe = make_loss(loss, "regression") if loss is not None else None
    task, notices = resolve_task(task, probe, output, y)
    loss_fn = make_loss(loss, task)
    plan = plan_batches(model, x, y, output, task, loss_fn, None)
    _, y_fixed = plan.apply(x, y)
    return plan, loss_fn, y_fixed, notices + plan.notices


def codes(notices):
    return [n.code for n in notices]


# --- split_batch -------------------------------------------------------------------------------

@pytest.mark.parametrize("batch", [(1, 2), [1, 2], {"x": 1, "y": 2}, {"input": 1, "target": 2},
                                   {"features": 1, "label": 2}, {"features": 1, "labels": 2}])
def test_split_batch_accepts_pairs_and_dicts(batch):
    assert split_batch(batch) == (1, 2)


@pytest.mark.parametrize("batch, found", [(torch.zeros(4, 3), r"a single Tensor of shape \[4, 3\]"),
                                          ((1, 2, 3), "a tuple of 3 items"),
                                          ({"image": 1, "y": 2}, r"a dict with keys \['image', 'y'\]")])
def test_split_batch_names_what_it_got(batch, found):
    with pytest.raises(DataError, match=found + r".*Expected a pair \(x, y\)") as e:
        split_batch(batch)
    assert e.value.code == "bad_batch" and isinstance(e.value, ValueError)


# --- C01 features -------------------------------------------------------------------------------

@pytest.mark.parametrize("values, found", [([[120, 60], [340, 150]], "torch.int64"),
                                           ([[1.2, 0.6], [3.4, 1.5]], "torch.float64")])
def test_features_from_pandas_are_cast_to_model_dtype(values, found):
    model = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))
    x = torch.tensor(pd.DataFrame(values).values)
    fixed, notices = prepare_features(model, x, None)
    assert fixed.dtype == torch.float32 and torch.equal(fixed, x.float())
    assert model(fixed).dtype == torch.float32  # the forward that raised "mat1 and mat2" now runs
    assert codes(notices) == ["cast_features"]
    msg = notices[0].message
    assert found in msg and "torch.float32" in msg and ".float()" in msg
    assert "torch.tensor(df.values, dtype=torch.float32)" in msg


def test_features_follow_a_float64_model_and_are_untouched_when_right():
    model = nn.Linear(2, 1).double()
    x = torch.tensor([[1, 2]])
    assert prepare_features(model, x, None)[0].dtype == torch.float64
    same = torch.randn(3, 2, dtype=torch.float64)
    fixed, notices = prepare_features(model, same, None)
    assert fixed is same and notices == []


def test_integer_token_ids_for_an_embedding_stay_integer():
    model = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(8, 2))
    x = torch.tensor([[1, 2], [3, 4]])
    fixed, notices = prepare_features(model, x, torch.float32)
    assert fixed is x and notices == []


def test_bool_and_nan_features_stop_with_the_fix():
    model = nn.Linear(2, 1)
    with pytest.raises(DataError, match=r"Features have dtype torch.bool.*x = x.to\(torch.float32\)"):
        prepare_features(model, torch.tensor([[True, False]]), None)
    with pytest.raises(DataError, match=r"2 NaN/inf values \(columns \[1\]\).*fillna") as e:
        prepare_features(model, torch.tensor([[1.0, float("nan")], [2.0, float("inf")]]), None)
    assert e.value.code == "nonfinite_features"


def test_plan_casts_features_of_later_batches_too():
    model = nn.Linear(2, 3)
    x_raw = torch.tensor([[1, 2], [3, 4], [5, 6], [7, 8]])
    x, _ = prepare_features(model, x_raw, torch.float32)
    plan = plan_batches(model, x, torch.tensor(LABELS), LOGITS, "multiclass", nn.CrossEntropyLoss(), torch.float32)
    later, _ = plan.apply(torch.tensor([[9, 10]]), torch.tensor([2]))
    assert later.dtype == torch.float32 and later.tolist() == [[9.0, 10.0]]


# --- C02 / C03 / C08 multiclass -----------------------------------------------------------------

@pytest.mark.parametrize("y, found", [
    (torch.tensor(pd.DataFrame({"x1": [0.5, 1.2, 3.3, 0.9], "label": LABELS}).values[:, 1]), "torch.float64"),
    (torch.tensor(LABELS, dtype=torch.int32), "torch.int32"),
    (torch.tensor(LABELS, dtype=torch.int16), "torch.int16"),
    (torch.tensor(LABELS, dtype=torch.uint8), "torch.uint8")])
def test_class_labels_become_int64(y, found):
    plan, loss_fn, y_fixed, notices = plan_for(y)
    assert y_fixed.dtype == torch.int64 and y_fixed.tolist() == LABELS
    assert "labels_to_int64" in codes(notices) and isinstance(loss_fn, nn.CrossEntropyLoss)
    msg = next(n.message for n in notices if n.code == "labels_to_int64")
    assert found in msg and "y.long()" in msg
    assert round(loss_fn(LOGITS, y_fixed).item(), 4) == 0.4218


def test_zero_d_float_target_for_an_unbatched_output():
    output, y = torch.tensor([7.2, 0.1]), torch.tensor(1.0)  # C02 d
    plan, loss_fn, y_fixed, notices = plan_for(y, output=output, task="multiclass")
    assert y_fixed.dtype == torch.int64 and y_fixed.dim() == 0
    assert torch.isclose(loss_fn(output, y_fixed), F.cross_entropy(output, torch.tensor(1)))


def test_n_by_1_labels_are_squeezed():  # C03
    y = torch.tensor(pd.DataFrame({"label": LABELS})[["label"]].values)
    plan, loss_fn, y_fixed, notices = plan_for(y, loss=nn.CrossEntropyLoss())
    assert codes(notices) == ["squeeze_target"] and y_fixed.shape == (4,)
    assert "[4, 1]" in notices[0].message and "[4]" in notices[0].message and "squeeze(1)" in notices[0].message
    assert round(loss_fn(LOGITS, y_fixed).item(), 4) == 0.4218


@pytest.mark.parametrize("onehot", [F.one_hot(torch.tensor(LABELS), 3), F.one_hot(torch.tensor(LABELS), 3).float()])
def test_one_hot_targets_become_class_indices(onehot):
    plan, loss_fn, y_fixed, notices = plan_for(onehot)
    assert "onehot_target" in codes(notices) and y_fixed.tolist() == LABELS and y_fixed.dtype == torch.int64
    assert round(loss_fn(LOGITS, y_fixed).item(), 4) == 0.4218
    assert Accuracy(task="multiclass", num_classes=3)(LOGITS, y_fixed).item() == 1.0


def test_soft_and_fractional_labels_stop():
    soft = torch.tensor([[0.7, 0.2, 0.1]] * 4)
    with pytest.raises(DataError, match=r"Targets \[4, 3\] torch.float32 .* not one-hot.*argmax") as e:
        plan_for(soft, task="multiclass")
    assert e.value.code == "soft_targets"
    with pytest.raises(DataError, match=r"fractional values \(e.g. \[0.5\]\).*task='regression'"):
        plan_for(torch.tensor([0.5, 1.0, 2.0, 1.0]), loss="cross_entropy")


def test_one_based_labels_are_named():
    with pytest.raises(DataError, match=r"look 1-based.*labels 1\.\.3.*C=3.*y = y - 1") as e:
        plan_for(torch.tensor([1, 2, 3, 2]), loss=nn.CrossEntropyLoss())
    assert e.value.code == "labels_one_based"


def test_out_of_range_labels_name_min_max_and_both_fixes():
    with pytest.raises(DataError, match=r"min 0, max 5.*C=3.*\[0, 2\].*nn.Linear\(\.\.\., 6\).*remap") as e:
        plan_for(torch.tensor([0, 1, 5, 1]), loss="cross_entropy")
    assert e.value.code == "labels_out_of_range"


def test_negative_labels_stop_but_ignore_index_is_allowed():
    with pytest.raises(DataError, match=r"negative labels \(min -1, max 2\)") as e:
        plan_for(torch.tensor([-1, 0, 1, 2]), loss=nn.CrossEntropyLoss())
    assert e.value.code == "negative_labels"
    y = torch.tensor([0, -100, 2, 1])
    plan, loss_fn, y_fixed, _ = plan_for(y, loss=nn.CrossEntropyLoss())
    assert torch.isclose(loss_fn(LOGITS, y_fixed), F.cross_entropy(LOGITS, y))


def test_cross_entropy_on_one_output_and_wrong_target_shape():
    with pytest.raises(DataError, match=r"1 value per sample.*always be 0") as e:
        plan_for(torch.tensor([0, 1, 0, 1]), output=BIN_LOGITS, loss="cross_entropy")
    assert e.value.code == "output_width"
    with pytest.raises(DataError, match=r"Targets have shape \[4, 2\].*output \[4, 3\].*\[4\]"):
        plan_for(torch.tensor([[0, 1]] * 4), loss="cross_entropy")


def test_softmax_before_cross_entropy_is_noticed_and_model_unchanged():
    model = nn.Sequential(nn.Linear(2, 3), nn.Softmax(dim=1))
    plan, *_ = plan_for(torch.tensor(LABELS), output=LOGITS.softmax(1), model=model, loss=nn.CrossEntropyLoss())
    assert codes(plan.notices) == ["softmax_before_ce"] and "raw logits" in plan.notices[0].message
    assert isinstance(model[-1], nn.Softmax)
    by_values, *_ = plan_for(torch.tensor(LABELS), output=LOGITS.softmax(1), loss=nn.CrossEntropyLoss())
    assert codes(by_values.notices) == ["softmax_before_ce"]
    log_model = nn.Sequential(nn.Linear(2, 3), nn.LogSoftmax(dim=1))
    logp, *_ = plan_for(torch.tensor(LABELS), output=LOGITS.log_softmax(1), model=log_model, loss="cross_entropy")
    assert codes(logp.notices) == ["softmax_before_ce"] and "LogSoftmax" in logp.notices[0].message
    clean, *_ = plan_for(torch.tensor(LABELS), loss="cross_entropy")
    assert clean.notices == []
    nll, *_ = plan_for(torch.tensor(LABELS), output=LOGITS.log_softmax(1), model=log_model, loss="nll")
    assert nll.notices == []


def test_metric_num_classes_must_match_output_width():  # C08 c
    with pytest.raises(DataError, match=r"'acc' \(MulticlassAccuracy\) has num_classes=2.*outputs 3 values") as e:
        check_num_classes({"acc": Accuracy(task="multiclass", num_classes=2)}, 3)
    assert e.value.code == "num_classes_mismatch"
    with pytest.raises(DataError, match="num_classes=4"):
        check_num_classes([MulticlassAccuracy(num_classes=4)], 3)
    assert check_num_classes({"acc": MulticlassAccuracy(num_classes=3), "bin": BinaryAccuracy()}, 3) is None
    assert check_num_classes(None, 3) is None


# --- C05 / C06 binary and regression ------------------------------------------------------------

@pytest.mark.parametrize("y", [torch.tensor(pd.DataFrame({"spam": [0, 1, 1, 0]})[["spam"]].values),
                               torch.tensor([0, 1, 1, 0]), torch.tensor([0.0, 1.0, 1.0, 0.0], dtype=torch.float64)])
def test_binary_targets_take_the_output_dtype_and_shape(y):
    plan, loss_fn, y_fixed, notices = plan_for(y, output=BIN_LOGITS)
    assert isinstance(loss_fn, nn.BCEWithLogitsLoss) and "cast_target" in codes(notices)
    assert y_fixed.dtype == torch.float32 and y_fixed.shape == (4, 1)
    loss = loss_fn(BIN_LOGITS, y_fixed)
    assert loss.dtype == torch.float32 and round(loss.item(), 4) == 0.5090


def test_binary_target_n_by_1_against_output_n():
    y = torch.tensor([[0], [1], [1], [0]])
    plan, loss_fn, y_fixed, notices = plan_for(y, output=BIN_LOGITS.view(-1), loss="bce")
    assert y_fixed.shape == (4,) and "reshape_target" in codes(notices)
    assert round(loss_fn(BIN_LOGITS.view(-1), y_fixed).item(), 4) == 0.5090


def test_binary_errors():
    with pytest.raises(DataError, match=r"targets in \{0, 1\}.*values \[1, 2\].*y - 1") as e:
        plan_for(torch.tensor([1, 2, 2, 1]), output=BIN_LOGITS, loss="bce")
    assert e.value.code == "binary_target_values"
    with pytest.raises(DataError, match=r"BCELoss needs probabilities.*min -0.5, max 1.2.*BCEWithLogitsLoss"):
        plan_for(torch.tensor([0.0, 1, 1, 0]), output=BIN_LOGITS, loss=nn.BCELoss())
    with pytest.raises(DataError, match=r"\[4\] \(4 values\).*\[4, 2\] \(8 values\).*CrossEntropyLoss"):
        plan_for(torch.tensor([0, 1, 1, 0]), output=torch.randn(4, 2), loss="bce")


def test_sigmoid_before_bce_with_logits_is_noticed():
    model = nn.Sequential(nn.Linear(2, 1), nn.Sigmoid())
    plan, *_ = plan_for(torch.tensor([[0.0], [1], [1], [0]]), output=BIN_LOGITS.sigmoid(), model=model, loss="bce")
    assert codes(plan.notices) == ["sigmoid_before_bce"]


@pytest.mark.parametrize("pred, target", [(torch.tensor([[1.0], [2.0], [3.0]]), torch.tensor([1.0, 2.0, 3.0])),
                                          (torch.tensor([1.0, 2.0, 3.0]), torch.tensor([[1.0], [2.0], [3.0]]))])
def test_regression_target_takes_the_output_shape(pred, target):  # C05
    plan, loss_fn, y_fixed, notices = plan_for(target, output=pred, x=torch.randn(3, 2), loss="mse")
    assert codes(notices) == ["reshape_target"] and y_fixed.shape == pred.shape
    assert str(list(target.shape)) in notices[0].message and str(list(pred.shape)) in notices[0].message
    assert loss_fn(pred, y_fixed).item() == 0.0


def test_reshape_notice_says_mse_would_broadcast_to_n_by_n():
    _, _, _, notices = plan_for(torch.tensor([1.0, 2.0, 3.0]), output=torch.zeros(3, 1), x=torch.randn(3, 2))
    assert "broadcast them to [3, 3]" in next(n.message for n in notices if n.code == "reshape_target")


def test_c05_regression_trains_right_through_the_plan():
    torch.manual_seed(0)
    x = torch.randn(100, 2)
    y = 10 + 9 * x[:, 0] - 2 * x[:, 1] + torch.randn(100)  # shape [100], output [100, 1]
    model = nn.Linear(2, 1)
    with torch.no_grad():
        output = model(x)
    task, _ = resolve_task("auto", None, output, y)
    loss_fn = make_loss("auto", task)
    plan = plan_batches(model, x, y, output, task, loss_fn, None)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(200):
        xb, yb = plan.apply(x, y)
        opt.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
    assert task == "regression" and loss.item() < 1.5
    assert model.weight.detach().view(-1).tolist() == pytest.approx([9.08, -1.87], abs=0.01)


@pytest.mark.parametrize("y, dtype", [(torch.tensor([[1], [2], [3], [4]]), torch.int64),
                                      (torch.tensor([[1.0], [2.0], [3.0], [4.0]], dtype=torch.float64), torch.float64)])
def test_regression_targets_take_the_output_dtype(y, dtype):  # C06
    plan, loss_fn, y_fixed, notices = plan_for(y, output=PRED, loss=nn.MSELoss())
    assert codes(notices) == ["cast_target"] and str(dtype) in notices[0].message
    loss = loss_fn(PRED, y_fixed)
    assert loss.dtype == torch.float32 and loss.item() == pytest.approx(0.125, abs=1e-6)


def test_regression_shape_mismatch_names_both_shapes():
    with pytest.raises(DataError, match=r"Target shape \[4, 3\] \(12 values\).*output shape \[4, 1\]") as e:
        plan_for(torch.randn(4, 3), output=PRED, loss="mse")
    assert e.value.code == "target_shape"
    with pytest.raises(DataError, match="NaN or inf"):
        plan_for(torch.tensor([[1.0], [float("nan")], [3.0], [4.0]]), output=PRED, loss="mse")


# --- tasks, losses, batch sizes -----------------------------------------------------------------

@pytest.mark.parametrize("loss, task", [
    (nn.CrossEntropyLoss(), "multiclass"), (nn.NLLLoss(), "multiclass"), (nn.BCEWithLogitsLoss(), "binary"),
    (nn.BCELoss(), "binary"), (nn.MSELoss(), "regression"), (nn.L1Loss(), "regression"),
    (nn.SmoothL1Loss(), "regression"), (nn.HuberLoss(), "regression"), (F.cross_entropy, "multiclass"),
    (F.binary_cross_entropy_with_logits, "binary"), (F.mse_loss, "regression"), ("huber", "regression")])
def test_task_follows_the_loss(loss, task):
    assert resolve_task("auto", loss, LOGITS, torch.tensor(LABELS)) == (task, [])


@pytest.mark.parametrize("output, y, task", [
    (LOGITS, torch.tensor(LABELS), "multiclass"), (LOGITS, torch.tensor([0.0, 1.0, 2.0, 1.0]), "multiclass"),
    (LOGITS, F.one_hot(torch.tensor(LABELS), 3).float(), "multiclass"),
    (BIN_LOGITS, torch.tensor([0, 1, 1, 0]), "binary"), (BIN_LOGITS, torch.tensor([[0.0], [1], [1], [0]]), "binary"),
    (LOGITS, torch.tensor([[1, 1, 0], [0, 1, 0], [0, 0, 0], [1, 0, 1]]), "binary"),
    (PRED, torch.tensor([1, 2, 3, 4]), "regression"), (PRED, torch.tensor([0.5, 1.0, 0.0, 1.0]), "regression"),
    (torch.zeros(4, 2), torch.randn(4, 2), "regression")])
def test_task_from_the_data(output, y, task):
    got, notices = resolve_task("auto", None, output, y)
    assert got == task and codes(notices) == ["task_inferred"] and task in notices[0].message


def test_task_errors():
    with pytest.raises(DataError, match=r"task='regression' does not match the loss CrossEntropyLoss.*'multiclass'"):
        resolve_task("regression", nn.CrossEntropyLoss(), LOGITS, torch.tensor(LABELS))
    with pytest.raises(DataError, match="task='classification' is not one of"):
        resolve_task("classification", None, LOGITS, torch.tensor(LABELS))
    assert resolve_task("binary", None, LOGITS, torch.tensor(LABELS)) == ("binary", [])


def test_make_loss():
    assert [type(make_loss("auto", t)) for t in ("multiclass", "binary", "regression")] == [
        nn.CrossEntropyLoss, nn.BCEWithLogitsLoss, nn.MSELoss]
    assert type(make_loss(None, "binary")) is nn.BCEWithLogitsLoss
    names = {"cross_entropy": nn.CrossEntropyLoss, "CrossEntropy": nn.CrossEntropyLoss, "bce": nn.BCEWithLogitsLoss,
             "mse": nn.MSELoss, "l1": nn.L1Loss, "huber": nn.HuberLoss, "smooth-l1": nn.SmoothL1Loss}
    assert all(type(make_loss(name, "auto")) is cls for name, cls in names.items())
    mine = nn.L1Loss(reduction="sum")
    assert make_loss(mine, "regression") is mine and make_loss(F.mse_loss, "auto") is F.mse_loss
    assert type(make_loss(nn.HuberLoss, "auto")) is nn.HuberLoss
    with pytest.raises(DataError, match=r"Unknown loss 'hinge'. Valid names: 'auto', 'cross_entropy', 'nll', 'bce'"):
        make_loss("hinge", "binary")
    with pytest.raises(DataError, match="resolve the task first"):
        make_loss("auto", "auto")


def test_batch_size_mismatch_names_both():
    with pytest.raises(DataError, match=r"x has 4 rows \[4, 2\], y has 3 \[3\]") as e:
        plan_batches(nn.Linear(2, 3), X4, torch.tensor([0, 1, 2]), LOGITS, "multiclass", None)
    assert e.value.code == "batch_size_mismatch"


def test_a_loss_that_still_fails_is_reported_with_shapes():
    def picky(output, target):
        raise RuntimeError("boom")
    with pytest.raises(DataError, match=r"loss failed on the first batch \(output \[4, 3\].*boom") as e:
        plan_batches(nn.Linear(2, 3), X4, torch.tensor(LABELS), LOGITS, "multiclass", picky)
    assert e.value.code == "loss_failed"


@pytest.mark.parametrize("y, output, task, last", [
    (torch.tensor([[0], [1], [2], [1]]), LOGITS, "multiclass", torch.tensor([[2]])),
    (F.one_hot(torch.tensor(LABELS), 3).float(), LOGITS, "multiclass", torch.tensor([[0.0, 0.0, 1.0]])),
    (torch.tensor([1, 2, 3, 4]), PRED, "regression", torch.tensor([5])),
    (torch.tensor([[1.0], [2.0], [3.0], [4.0]]), PRED.view(-1), "regression", torch.tensor([[5.0]]))])
def test_the_plan_works_on_the_last_smaller_batch(y, output, task, last):
    plan, loss_fn, first, _ = plan_for(y, output=output, task=task)
    x_last, y_last = plan.apply(torch.randn(1, 2), last)
    assert y_last.shape == (1,) + first.shape[1:] and y_last.dtype == first.dtype
    assert torch.isfinite(loss_fn(output[:1], y_last))


def test_apply_without_planned_ops_returns_the_same_tensors():
    plan, *_ = plan_for(torch.tensor(LABELS))
    x, y = X4, torch.tensor(LABELS)
    assert plan.apply(x, y)[0] is x and plan.apply(x, y)[1] is y and plan.y_ops == ()


def test_notice_is_a_small_frozen_dataclass():
    n = Notice("cast_features", "text")
    assert (n.code, n.message) == ("cast_features", "text")
    with pytest.raises(AttributeError):
        n.code = "other"


def test_data_module_loads_no_ui():
    code = ("import sys, nnwidgets.data; bad = [m for m in ('ipywidgets', 'IPython', 'bqplot', 'anywidget') "
            "if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


# --- C18 loaders ----------------------------------------------------------------------------------

class RowsDataset(Dataset):
    def __init__(self, n=8):
        self.x = torch.arange(n * 3, dtype=torch.float32).view(n, 3)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], i % 2


@pytest.fixture
def notebook(monkeypatch):
    """Pretend RowsDataset was defined in a Jupyter kernel: __main__ without __file__."""
    monkeypatch.setattr(RowsDataset, "__module__", "__main__")
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))


def collate_sum(batch):
    return torch.stack([b[0] for b in batch]), torch.tensor([b[1] for b in batch])


def test_workers_fall_back_in_a_notebook_with_spawn(notebook):
    loader = DataLoader(RowsDataset(), batch_size=4, num_workers=2, multiprocessing_context="spawn", shuffle=True,
                        drop_last=True, collate_fn=collate_sum, persistent_workers=True, prefetch_factor=3)
    new, notices = safe_loader(loader)
    assert new is not loader and new.num_workers == 0 and new.batch_size == 4 and new.drop_last
    assert new.collate_fn is collate_sum and isinstance(new.sampler, RandomSampler) and not new.persistent_workers
    assert [tuple(xb.shape) for xb, _ in new] == [(4, 3), (4, 3)]  # C18 right value
    assert codes(notices) == ["workers_fallback"]
    msg = notices[0].message
    assert "RowsDataset" in msg and "'spawn'" in msg and ".py module" in msg and "num_workers=0" in msg


def test_default_start_method_and_wrapped_datasets_are_seen(notebook, monkeypatch):
    monkeypatch.setattr(torch.multiprocessing, "get_start_method", lambda allow_none=False: "forkserver")
    train, _ = random_split(RowsDataset(), [6, 2], generator=torch.Generator().manual_seed(0))
    new, notices = safe_loader(DataLoader(train, batch_size=3, num_workers=2))
    assert new.num_workers == 0 and [len(xb) for xb, _ in new] == [3, 3] and "'forkserver'" in notices[0].message


def test_loader_is_kept_when_workers_are_safe(notebook, monkeypatch):
    fork = DataLoader(RowsDataset(), batch_size=4, num_workers=2, multiprocessing_context="fork")
    assert safe_loader(fork) == (fork, [])
    plain = DataLoader(TensorDataset(torch.zeros(8, 3)), batch_size=4, num_workers=2, multiprocessing_context="spawn")
    assert safe_loader(plain) == (plain, [])
    zero = DataLoader(RowsDataset(), batch_size=4)
    assert safe_loader(zero) == (zero, [])
    batches = [(torch.zeros(2, 3), torch.zeros(2))]
    assert safe_loader(batches) == (batches, [])
    script = types.ModuleType("__main__")
    script.__file__ = "/tmp/train.py"
    monkeypatch.setitem(sys.modules, "__main__", script)
    spawn = DataLoader(RowsDataset(), batch_size=4, num_workers=2, multiprocessing_context="spawn")
    assert safe_loader(spawn) == (spawn, [])


def test_first_batch_returns_the_iterator_to_continue():
    loader = DataLoader(RowsDataset(8), batch_size=3)
    batch, it = first_batch(loader)
    assert batch[0].tolist()[0] == [0.0, 1.0, 2.0]
    assert [len(b[0]) for b in it] == [3, 2]


def test_first_batch_times_out_instead_of_hanging():
    release = threading.Event()

    def stuck():
        release.wait(10)
        yield (torch.zeros(1), torch.zeros(1))

    class Stuck:
        num_workers = 2

        def __iter__(self):
            return stuck()

    try:
        with pytest.raises(DataError, match=r"no batch within 0.2 s \(num_workers=2\).*num_workers=0") as e:
            first_batch(Stuck(), timeout_s=0.2)
        assert e.value.code == "first_batch_timeout"
    finally:
        release.set()


def test_first_batch_of_an_empty_loader_and_dataset_errors():
    with pytest.raises(DataError, match=r"yielded no batches \(batch_size=4, drop_last=True\)") as e:
        first_batch(DataLoader(RowsDataset(3), batch_size=4, drop_last=True))
    assert e.value.code == "empty_loader"

    class Broken(Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            raise KeyError("row 0 missing")
    with pytest.raises(KeyError, match="row 0 missing"):
        first_batch(DataLoader(Broken()))
