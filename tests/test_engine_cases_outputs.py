"""Cases C29 and C32 of ``shared/cases/``, and model outputs that are not one tensor, run through
``nnwidgets.Trainer``: what the model's output means, and batches it cannot train on.

PyTorch is the oracle: accuracy is recomputed from the trained model's outputs with the right
threshold, losses with ``torch.nn.functional`` on the same tensors.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import nnwidgets as nw
from nnwidgets.data import DataError

from _engine_util import LOGITS, Echo, events, first_loss, fit_one, notice, notice_codes

CPU = dict(device="cpu")


# ---------------------------------------------------------------- C29 sigmoid outputs + BCELoss
def _c29_data():
    torch.manual_seed(0)
    X = torch.randn(400, 2)
    return X, (X[:, 0] > 0.67).float().unsqueeze(1)


class Reshuffled:
    """The snippet's batches: a fresh ``torch.randperm(400)`` per epoch, 32 samples per batch."""

    def __init__(self, X, Y):
        self.X, self.Y = X, Y

    def __iter__(self):
        perm = torch.randperm(len(self.X))
        for i in range(0, len(self.X), 32):
            yield self.X[perm[i:i + 32]], self.Y[perm[i:i + 32]]


@pytest.mark.parametrize("last, loss, threshold", [
    ([nn.Sigmoid()], nn.BCELoss(), 0.5),                 # the case: probabilities
    ([], nn.BCEWithLogitsLoss(), 0.0),                   # logits
], ids=["sigmoid_bce", "logits_bce_with_logits"])
def test_c29_binary_accuracy_thresholds_probabilities_at_half_and_logits_at_zero(last, loss, threshold):
    X, Y = _c29_data()                                                   # the snippet, seed 0
    model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 1), *last)
    t = nw.Trainer(model, Reshuffled(X, Y), [(X, Y)], loss=loss, lr=0.5, epochs=30, grad_stats=False, **CPU)
    t.fit()
    with torch.no_grad():
        out = model(X)
    right = ((out > threshold).float() == Y).float().mean().item()       # the oracle
    val = t.history.epoch_records[-1]["val_accuracy"]
    assert val == pytest.approx(right, abs=1e-6) and val == 1.0
    assert t.evaluate([(X, Y)])["accuracy"] == pytest.approx(right, abs=1e-6)
    msg = notice(t, "binary_threshold")
    assert f"output > {threshold:g} as class 1" in msg
    if threshold == 0.5:
        assert "ends in nn.Sigmoid" in msg and "probabilities" in msg
        assert ((out > 0).float() == Y).float().mean().item() == pytest.approx(0.2475)  # the old, wrong figure
        assert "sigmoid_before_bce" not in notice_codes(t)


def test_c29_bce_loss_alone_decides_probabilities():
    """A model that squashes to [0, 1] without ending in nn.Sigmoid: BCELoss takes probabilities."""
    probs = torch.tensor([[0.2], [0.7], [0.4], [0.9]])
    target = torch.tensor([[0.0], [1.0], [1.0], [1.0]])
    t = fit_one(Echo(), [(probs, target)], loss=nn.BCELoss())
    assert "BCELoss takes probabilities" in notice(t, "binary_threshold")
    assert t.history.epoch_records[0]["accuracy"] == pytest.approx(0.75)   # 0.4 < 0.5 is wrong; at 0: 0.75 too
    t = fit_one(Echo(), [(probs, 1 - target)], loss=nn.BCELoss())
    assert t.history.epoch_records[0]["accuracy"] == pytest.approx(0.25)   # at 0 it would be 0.0


def test_c29_sigmoid_with_bce_with_logits_is_its_own_notice_and_thresholds_at_half():
    model = nn.Sequential(Echo(), nn.Sigmoid())
    x, target = torch.tensor([[-2.0], [1.0], [3.0], [-0.5]]), torch.tensor([[0.0], [1.0], [1.0], [1.0]])
    t = fit_one(model, [(x, target)], loss=nn.BCEWithLogitsLoss())
    assert "sigmoid_before_bce" in notice_codes(t) and "output > 0.5" in notice(t, "binary_threshold")
    assert t.history.epoch_records[0]["accuracy"] == pytest.approx(0.75)


@pytest.mark.parametrize("last, loss", [(nn.LogSoftmax(dim=1), nn.NLLLoss()), (nn.Softmax(dim=1), nn.NLLLoss()),
                                        (nn.Softmax(dim=1), nn.CrossEntropyLoss())],
                         ids=["logsoftmax_nll", "softmax_nll", "softmax_ce"])
def test_multiclass_models_ending_in_softmax_score_by_argmax(last, loss):
    labels = torch.tensor([0, 1, 2, 0])                                  # argmax of LOGITS: 0, 1, 2, 1
    model = nn.Sequential(Echo(), last)
    t = fit_one(model, [(LOGITS, labels)], loss=loss)
    assert t.task == "multiclass" and t.history.epoch_records[0]["accuracy"] == pytest.approx(0.75)
    with torch.no_grad():
        assert first_loss(t) == pytest.approx(loss(model(LOGITS), labels).item(), rel=1e-6)
    if isinstance(last, nn.Softmax):
        assert {"softmax_before_nll", "softmax_before_ce"} & set(notice_codes(t))


# ---------------------------------------------------------------- outputs that are not one tensor
class GRUClassifier(nn.Module):
    """Returns what nn.GRU returns, (output, hidden), after a linear head on the output."""

    def __init__(self):
        super().__init__()
        self.rnn, self.head = nn.GRU(3, 4, batch_first=True), nn.Linear(4, 2)

    def forward(self, x):
        out, hidden = self.rnn(x)
        return self.head(out[:, -1]), hidden


class DictOut(nn.Module):
    def __init__(self, as_object: bool):
        super().__init__()
        self.lin, self.as_object = nn.Linear(3, 2), as_object

    def forward(self, x):
        logits = self.lin(x)
        if self.as_object:  # a Hugging Face ModelOutput-like object
            return type("SequenceClassifierOutput", (), {"logits": logits, "loss": None})()
        return {"logits": logits, "hidden": x}


def _seq_data():
    torch.manual_seed(0)
    return torch.randn(8, 5, 3), torch.randint(0, 2, (8,))


@pytest.mark.parametrize("make, code, said", [
    (GRUClassifier, "output_tuple", r"tuple of 2 \(\[8, 2\] torch\.float32, \[1, 8, 4\] torch\.float32\).*element 0"),
    (lambda: DictOut(False), "output_logits", r"returns a dict; using its 'logits' \[8, 2\]"),
    (lambda: DictOut(True), "output_logits", r"returns a SequenceClassifierOutput; using its 'logits'"),
], ids=["rnn_tuple", "dict", "hf_object"])
def test_outputs_that_are_not_one_tensor_use_the_logits_with_a_notice(make, code, said):
    x, y = _seq_data()
    if not isinstance(make(), GRUClassifier):
        x = x[:, 0]
    torch.manual_seed(0)
    model = make()
    t = fit_one(model, [(x, y)], epochs=3, lr=0.1)
    import re
    assert re.search(said, notice(t, code))
    torch.manual_seed(0)
    ref = make()
    opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    losses = []
    for _ in range(3):                                                   # the oracle: the logits by hand
        out = ref(x)
        logits = out[0] if isinstance(out, tuple) else out["logits"] if isinstance(out, dict) else out.logits
        loss = F.cross_entropy(logits, y)
        opt.zero_grad(); loss.backward(); opt.step()
        losses.append(loss.item())
    assert np.allclose(t.history.steps.loss, losses, rtol=1e-5)
    assert t.evaluate([(x, y)])["loss"] == pytest.approx(F.cross_entropy(
        model(x)[0] if isinstance(model, GRUClassifier) else DictOut.forward(model, x)["logits"]
        if not model.as_object else model(x).logits, y).item(), rel=1e-5)


@pytest.mark.parametrize("out, found", [
    ({"hidden": torch.zeros(2, 2)}, r"a dict with keys \['hidden'\]"),
    ((None, torch.zeros(2, 2)), r"a tuple of 2 \(NoneType, \[2, 2\] torch\.float32\)"),
    ("text", r"a str"),
], ids=["dict_without_logits", "tuple_of_none_first", "str"])
def test_an_output_without_a_tensor_to_use_stops_before_step_1_naming_the_type(out, found):
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(()))

        def forward(self, x):
            return out

    t = nw.Trainer(Odd(), [(torch.zeros(2, 3), torch.tensor([0, 1]))], epochs=1, **CPU)
    with pytest.raises(DataError, match=found + r", but the loss needs one tensor per batch.*Fix: return a tensor"):
        t.fit()
    assert t.state == "failed" and t.history.n_steps == 0


# ---------------------------------------------------------------- C32 BatchNorm, last batch of one
def _c32(drop_last=False, epochs=2):
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(9, 4), torch.randint(0, 2, (9,)))
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    t = nw.Trainer(model, DataLoader(data, batch_size=4, drop_last=drop_last), epochs=epochs, lr=0.1, **CPU)
    return t, model, data


def test_c32_batchnorm_and_a_last_batch_of_one_is_announced_before_step_1_and_skipped():
    t, model, data = _c32()
    t.fit()                                                             # PyTorch alone fails after 2 steps
    assert t.state == "completed" and t.history.n_steps == 4           # 2 steps per epoch, the 1-sample batch skipped
    before = notice(t, "batchnorm_last_batch")
    assert "BatchNorm1d" in before and "9 samples, batch_size=4: 2 batches of 4, then 1" in before
    assert "drop_last=True" in before
    first = [e for e in events(t, "notice") if e["name"] == "batchnorm_last_batch"][0]
    assert first["step"] == 0
    skipped = [e for e in events(t, "notice") if e["name"] == "batch_skipped"]
    assert len(skipped) == 1 and skipped[0]["step"] == 2                # announced once, where it first happened
    assert "more than 1 value per channel" in skipped[0]["message"] and "drop_last=True" in skipped[0]["message"]
    ref, _, _ = _c32(drop_last=True)                                    # the fix gives the same steps
    ref.fit()
    assert "batchnorm_last_batch" not in notice_codes(ref)
    assert np.allclose(t.history.steps.loss, ref.history.steps.loss, rtol=1e-6)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), ref.model.state_dict().values()))


def test_c32_no_notice_without_batchnorm_or_when_the_last_batch_is_larger():
    data = TensorDataset(torch.randn(10, 4), torch.randint(0, 2, (10,)))
    bn = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    assert "batchnorm_last_batch" not in notice_codes(fit_one(bn, DataLoader(data, batch_size=4)))  # 4, 4, 2
    plain = nn.Sequential(nn.Linear(4, 2))
    assert "batchnorm_last_batch" not in notice_codes(fit_one(plain, DataLoader(data, batch_size=3)))
