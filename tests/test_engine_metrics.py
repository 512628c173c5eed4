"""Metrics, epoch losses and validation of ``nnwidgets.Trainer`` (cases C08, C10, C15).

The models return fixed outputs (``Echo`` returns its input; ``EpochLogits`` returns a table
row per epoch), so every metric of a run is known exactly; torchmetrics, numpy and
``torch.nn.functional`` on the whole epoch's tensors are the oracles.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchmetrics
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.classification import MulticlassAccuracy

import nnwidgets as nw
from nnwidgets.data import DataError
from nnwidgets.events import Event

from _engine_util import Echo

CPU = dict(device="cpu")

# C08: 8 of 10 right, but both minority classes wrong -> micro 0.8, macro 1/3.
C08_PREDS = torch.tensor([0, 0, 0, 0, 0, 0, 0, 0, 1, 2])
C08_TARGET = torch.tensor([0, 0, 0, 0, 0, 0, 0, 0, 2, 1])
C08_LOGITS = F.one_hot(C08_PREDS, 3).float() * 2 - 1          # argmax == C08_PREDS


def c08_loader():
    return DataLoader(TensorDataset(C08_LOGITS, C08_TARGET), batch_size=4)   # batches 4, 4, 2


# ---------------------------------------------------------------- C08 accuracy
def test_c08_accuracy_is_correct_over_total_and_macro_only_when_asked():
    t = nw.Trainer(Echo(), c08_loader(), c08_loader(), epochs=1, **CPU)
    t.fit()
    row = t.history.epoch_records[0]
    micro = torchmetrics.Accuracy(task="multiclass", num_classes=3)(C08_PREDS, C08_TARGET).item()
    assert row["accuracy"] == pytest.approx(0.8, abs=1e-6) and row["accuracy"] == pytest.approx(micro, abs=1e-7)
    assert row["val_accuracy"] == pytest.approx(0.8, abs=1e-6)     # per-batch mean would be 0.667
    assert not any("macro" in k for k in row)


def test_c08_macro_accuracy_is_labelled_accuracy_macro():
    t = nw.Trainer(Echo(), c08_loader(), c08_loader(), epochs=1, macro=True, **CPU)
    t.fit()
    row = t.history.epoch_records[0]
    macro = MulticlassAccuracy(num_classes=3)(C08_PREDS, C08_TARGET).item()
    assert row["accuracy"] == pytest.approx(0.8, abs=1e-6)
    assert row["accuracy_macro"] == pytest.approx(1 / 3, abs=1e-4) and row["accuracy_macro"] == pytest.approx(macro)
    assert row["val_accuracy_macro"] == pytest.approx(1 / 3, abs=1e-4)
    assert "accuracy_macro" in t.history.epochs.columns


def test_c08_num_classes_disagreeing_with_the_output_width_is_reported_before_training():
    metric = torchmetrics.Accuracy(task="multiclass", num_classes=2)
    t = nw.Trainer(Echo(), c08_loader(), metrics={"accuracy": metric}, epochs=1, **CPU)
    with pytest.raises(DataError, match=r"num_classes=2, but the model outputs 3 values per sample"):
        t.fit()
    assert t.state == "failed" and t.history.n_steps == 0


def test_binary_accuracy_thresholds_logits_at_zero():
    logits = torch.tensor([[-0.5], [0.3], [1.2], [0.1]])
    target = torch.tensor([[0.0], [1.0], [1.0], [0.0]])
    t = nw.Trainer(Echo(), [(logits, target)], epochs=1, **CPU)
    t.fit()
    assert t.task == "binary"
    assert t.history.epoch_records[0]["accuracy"] == pytest.approx(0.75)   # sigmoid(0.1) > 0.5: wrong


# ---------------------------------------------------------------- C10 metrics reset per epoch
TRAIN_PER_EPOCH = [F.one_hot(torch.tensor(p), 3).float() for p in ([1, 1, 2, 2], [0, 0, 0, 0])]  # wrong, right
VAL_PER_EPOCH = [TRAIN_PER_EPOCH[1], TRAIN_PER_EPOCH[0]]                                         # right, wrong


class EpochLogits(nn.Module):
    """Returns fixed logits ``(4, 3)`` chosen by ``self.epoch`` and by train/eval mode."""

    def __init__(self):
        super().__init__()
        self.b, self.epoch = nn.Parameter(torch.zeros(())), 0

    def forward(self, x):
        table = TRAIN_PER_EPOCH if self.training else VAL_PER_EPOCH
        return table[min(self.epoch, 1)] + 0 * self.b


def test_c10_each_split_has_its_own_metric_reset_every_epoch():
    model = EpochLogits()
    data = [(torch.zeros(4, 2), torch.zeros(4, dtype=torch.long))]
    t = nw.Trainer(model, data, data, epochs=2, **CPU)
    t.on(Event.EPOCH_STARTED, lambda tr, epoch, **_: setattr(model, "epoch", epoch))
    t.fit()
    rows = t.history.epoch_records
    assert [r["accuracy"] for r in rows] == [0.0, 1.0]             # without reset: [0.0, 0.5]
    assert [r["val_accuracy"] for r in rows] == [1.0, 0.0]         # a shared object would mix splits


# ---------------------------------------------------------------- epoch loss weighted by batch size
def test_epoch_loss_is_weighted_by_batch_size_when_the_last_batch_is_smaller():
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(10, 3, generator=g) * 3, torch.randint(0, 3, (10,), generator=g)
    vlogits, vlabels = torch.randn(7, 3, generator=g) * 3, torch.randint(0, 3, (7,), generator=g)
    train = DataLoader(TensorDataset(logits, labels), batch_size=4)      # 4, 4, 2
    val = DataLoader(TensorDataset(vlogits, vlabels), batch_size=3)      # 3, 3, 1
    t = nw.Trainer(Echo(), train, val, epochs=1, **CPU)
    t.fit()
    row = t.history.epoch_records[0]
    whole = F.cross_entropy(logits, labels).item()
    per_batch = np.mean([F.cross_entropy(logits[i:i + 4], labels[i:i + 4]).item() for i in (0, 4, 8)])
    assert abs(whole - per_batch) > 1e-3                                # the test can tell them apart
    assert row["loss"] == pytest.approx(whole, rel=1e-6)
    assert row["val_loss"] == pytest.approx(F.cross_entropy(vlogits, vlabels).item(), rel=1e-6)
    assert t.evaluate(val)["loss"] == pytest.approx(row["val_loss"], rel=1e-7)


def test_regression_mae_and_r2_equal_the_numpy_and_torchmetrics_oracles():
    g = torch.Generator().manual_seed(1)
    pred = torch.randn(11, 1, generator=g) * 2 + 1
    target = pred + 0.5 * torch.randn(11, 1, generator=g)
    t = nw.Trainer(Echo(), DataLoader(TensorDataset(pred, target), batch_size=4),
                   DataLoader(TensorDataset(pred, target), batch_size=5), epochs=1, **CPU)
    t.fit()
    row = t.history.epoch_records[0]
    p, y = pred.numpy().astype(np.float64).ravel(), target.numpy().astype(np.float64).ravel()
    mae = np.abs(p - y).mean()
    r2 = 1 - ((y - p) ** 2).sum() / ((y - y.mean()) ** 2).sum()
    assert t.task == "regression"
    for prefix in ("", "val_"):
        assert row[prefix + "mae"] == pytest.approx(mae, rel=1e-5)
        assert row[prefix + "r2"] == pytest.approx(r2, rel=1e-5)
        assert row[prefix + "mae"] == pytest.approx(torchmetrics.functional.mean_absolute_error(pred, target).item(),
                                                    rel=1e-6)
    assert row["loss"] == pytest.approx(F.mse_loss(pred, target).item(), rel=1e-6)


# ---------------------------------------------------------------- C15 evaluation mode
def _dropout_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Dropout(0.5), nn.Linear(4, 3))


def _data(n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(5, 8, generator=g), torch.randint(0, 3, (5,), generator=g)) for _ in range(n)]


def test_c15_two_evaluations_of_the_same_batches_are_bit_identical():
    model = _dropout_model()
    val = _data(2, seed=1)
    t = nw.Trainer(model, _data(), val, epochs=2, **CPU)
    t.fit()
    outputs = []
    handle = model.register_forward_hook(lambda m, i, o: outputs.append(o.clone()))
    first, second = t.evaluate(val), t.evaluate(val)
    handle.remove()
    assert first == second
    assert len(outputs) == 4 and all(torch.equal(a, b) for a, b in zip(outputs[:2], outputs[2:]))
    assert first["loss"] == pytest.approx(t.history.epoch_records[-1]["val_loss"], rel=1e-7)


def test_c15_validation_runs_under_eval_and_no_grad_training_under_train():
    model = _dropout_model()
    seen = []
    model.register_forward_pre_hook(lambda m, i: seen.append((m.training, torch.is_grad_enabled())))
    t = nw.Trainer(model, _data(3), _data(2, seed=1), epochs=3, **CPU)
    t.fit()
    assert set(seen) == {(True, True), (False, False)}
    assert seen.count((True, True)) == t.history.n_steps == 9
    assert seen.count((False, False)) == 1 + 3 * 2                  # first-batch check + 2 val batches/epoch


def test_c15_model_is_in_train_mode_at_the_first_training_batch_of_every_epoch():
    model = _dropout_model()
    model.eval()                                   # e.g. left in eval by the user's own validate()
    first_batch, at_first = [], {"armed": False}

    def pre_hook(m, inputs):
        if at_first["armed"] and torch.is_grad_enabled():
            first_batch.append(m.training)
            at_first["armed"] = False
    model.register_forward_pre_hook(pre_hook)
    t = nw.Trainer(model, _data(3), _data(2, seed=1), epochs=3, **CPU)
    t.on(Event.EPOCH_STARTED, lambda tr, **_: at_first.update(armed=True))
    t.fit()
    assert first_batch == [True, True, True]


@pytest.mark.parametrize("mode", [True, False], ids=["train", "eval"])
def test_c15_evaluate_restores_the_previous_mode(mode):
    model = _dropout_model()
    t = nw.Trainer(model, _data(), epochs=1, **CPU)
    t.fit()
    model.train(mode)
    t.evaluate(_data(2, seed=1))
    assert model.training is mode and all(m.training is mode for m in model.modules())


def test_c15_mode_restored_when_validation_raises():
    model = _dropout_model()

    class BadVal:
        def __iter__(self):
            yield _data(1, seed=1)[0]
            raise RuntimeError("val loader broke")

    t = nw.Trainer(model, _data(), BadVal(), epochs=2, **CPU)
    with pytest.raises(RuntimeError, match="val loader broke"):
        t.fit()
    assert t.state == "failed" and model.training is True
    assert "validation" in [e for e in t.history.event_records if e["kind"] == "error"][0]["message"]


def test_evaluate_before_fit_says_what_to_do():
    t = nw.Trainer(_dropout_model(), _data(), epochs=1, **CPU)
    with pytest.raises(RuntimeError, match=r"call fit\(\) or start\(\) first"):
        t.evaluate(_data())
