"""Case C30 of ``shared/cases/`` and more inputs as users pass them, run through
``nnwidgets.Trainer``: inputs that are a tuple or dict of tensors, layers the optimizer never
sees, and labels as pandas gives them.

PyTorch is the oracle: the hand-written loop of the case on a copy of the same model and the
same batches gives the losses a Trainer run must reproduce.
"""
from __future__ import annotations

import copy
import re

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

import nnwidgets as nw
from nnwidgets.data import DataError

from _engine_util import LOGITS, Echo, first_loss, fit_one, notice, notice_codes

CPU = dict(device="cpu")


# ---------------------------------------------------------------- C30 tuple / dict inputs
class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(4, 3)
        self.lin = nn.Linear(2 + 3, 3)

    def forward(self, x_num, x_cat):
        return self.lin(torch.cat([x_num, self.emb(x_cat)], dim=1))


class DictInputs(TwoInputs):
    def forward(self, batch):
        return super().forward(batch["num"], batch["cat"])


class KeywordInputs(TwoInputs):
    def forward(self, num, cat):
        return super().forward(num, cat)


def _c30(kind):
    torch.manual_seed(0)
    num, cat = torch.randn(64, 2), torch.randint(0, 4, (64,))
    y = cat % 3
    model = {"tuple": TwoInputs, "dict": DictInputs, "kwargs": KeywordInputs}[kind]()
    idx = [torch.randint(0, 64, (16,)) for _ in range(200)]
    pack = (lambda i: (num[i], cat[i])) if kind == "tuple" else (lambda i: {"num": num[i], "cat": cat[i]})
    return model, [(pack(i), y[i]) for i in idx], (num, cat, y)


@pytest.mark.parametrize("kind, call, forward", [
    ("tuple", "model(*x)", "TwoInputs.forward(x_num, x_cat)"),
    ("dict", "model(x)", "DictInputs.forward(batch)"),
    ("kwargs", "model(**x)", "KeywordInputs.forward(num, cat)"),
])
def test_c30_tuple_and_dict_inputs_train_like_the_hand_written_loop(kind, call, forward):
    model, batches, (num, cat, y) = _c30(kind)
    ref = copy.deepcopy(model)
    t = nw.Trainer(model, batches, optimizer="adam", lr=0.05, epochs=1, grad_stats=False, **CPU)
    t.fit()
    msg = notice(t, "inputs_call")
    assert f"calling {call} ({forward})" in msg and "[16, 2] torch.float32" in msg and "[16] torch.int64" in msg
    opt = torch.optim.Adam(ref.parameters(), lr=0.05)
    losses = []
    for x, target in batches:                                            # the case's loop
        out = ref(*x) if isinstance(x, tuple) else ref(**x) if kind == "kwargs" else ref(x)
        loss = F.cross_entropy(out, target)
        opt.zero_grad(); loss.backward(); opt.step()
        losses.append(loss.item())
    steps = t.history.steps.loss.to_numpy()
    assert len(steps) == 200 and np.allclose(steps, losses, rtol=1e-4, atol=1e-6)
    assert steps[0] > 1.0 and steps[-1] < 0.2
    whole = (num, cat) if kind == "tuple" else {"num": num, "cat": cat}
    with torch.no_grad():
        expected = F.cross_entropy(TwoInputs.forward(model, num, cat), y).item()
    assert t.evaluate([(whole, y)])["loss"] == pytest.approx(expected, rel=1e-6)


class RowsTwoInputs(Dataset):
    def __init__(self, num, cat, y):
        self.num, self.cat, self.y = num, cat, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return (self.num[i], self.cat[i]), self.y[i]


def test_c30_dataloader_of_pairs_with_float64_numbers_casts_only_the_floating_tensor():
    torch.manual_seed(0)
    num, cat = torch.randn(64, 2, dtype=torch.float64), torch.randint(0, 4, (64,))   # df.values -> float64
    model = TwoInputs()
    with torch.no_grad():
        expected_first = F.cross_entropy(model(num[:16].float(), cat[:16]), cat[:16] % 3).item()
    loader = DataLoader(RowsTwoInputs(num, cat, cat % 3), batch_size=16)  # collates x as a list [num, cat]
    t = nw.Trainer(model, loader, optimizer="adam", lr=0.05, epochs=15, grad_stats=False, **CPU)
    t.fit()
    assert "calling model(*x)" in notice(t, "inputs_call")
    msg = notice(t, "cast_features")
    assert "x[0] torch.float64" in msg and "x[1]" not in msg             # category indices stay int64
    assert t.state == "completed" and t.history.epoch_records[-1]["loss"] < 0.2
    assert first_loss(t) == pytest.approx(expected_first, rel=1e-6)    # the float64 inputs cast to float32


@pytest.mark.parametrize("batch, found", [
    (((torch.zeros(4, 2), torch.zeros(4, dtype=torch.long)), torch.zeros(4, dtype=torch.long)),
     r"a tuple of 2 \(\[4, 2\] torch\.float32, \[4\] torch\.int64\), but Three\.forward\(a, b, c\) takes neither "
     r"model\(\*x\) nor model\(x\)"),
    (({"num": torch.zeros(4, 2)}, torch.zeros(4, dtype=torch.long)),
     r"a dict of 1 \('num': \[4, 2\] torch\.float32\), but Three\.forward\(a, b, c\) takes neither model\(\*\*x\)"),
], ids=["tuple", "dict"])
def test_c30_inputs_the_forward_cannot_take_stop_before_step_1_naming_both_and_the_fix(batch, found):
    class Three(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(()))

        def forward(self, a, b, c):
            return a

    t = nw.Trainer(Three(), [batch], epochs=1, **CPU)
    with pytest.raises(DataError, match=found + r".*Fix: make forward take .*or pass step=lambda model, batch"):
        t.fit()
    assert t.state == "failed" and t.history.n_steps == 0


# ---------------------------------------------------------------- parameters the optimizer never sees
class ListNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = [nn.Linear(3, 3), nn.Linear(3, 3)]                 # a plain list: not registered

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


class HalfNet(ListNet):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(3, 3)

    def forward(self, x):
        return self.head(super().forward(x))


def test_a_model_without_registered_parameters_names_the_plain_list_and_the_fix():
    with pytest.raises(ValueError, match=r"ListNet has no registered parameters, so the optimizer would get an "
                                         r"empty parameter list: its layers are in layers \(a plain Python list, "
                                         r"24 parameters\).*Fix: self\.layers = nn\.ModuleList\(\[\.\.\.\]\)"):
        nw.Trainer(ListNet(), [(LOGITS, torch.tensor([0, 1, 2, 1]))], **CPU)


def test_layers_in_a_plain_list_beside_registered_ones_are_named_in_a_notice():
    model = HalfNet()
    frozen = [p.detach().clone() for layer in model.layers for p in layer.parameters()]
    t = fit_one(model, [(LOGITS, torch.tensor([0, 1, 2, 1]))], epochs=3, lr=0.1)
    msg = notice(t, "unregistered_layers")
    assert re.search(r"HalfNet keeps layers \(a plain Python list, 24 parameters\).*never updates them"
                     r".*Fix: self\.layers = nn\.ModuleList", msg)
    assert all(torch.equal(a, p) for a, p in zip(frozen, (p for layer in model.layers for p in layer.parameters())))
    assert "unregistered_layers" not in notice_codes(fit_one(Echo(), [(LOGITS, torch.tensor([0, 1, 2, 1]))]))


# ---------------------------------------------------------------- labels as pandas gives them
SPECIES = pd.DataFrame({"species": ["Adelie", "Gentoo", "Chinstrap", "Adelie"]})


def test_bool_one_hot_labels_from_get_dummies_become_int64_class_indices():
    onehot = torch.tensor(pd.get_dummies(SPECIES["species"]).values)     # pandas 2+: bool columns
    assert onehot.dtype == torch.bool
    t = fit_one(Echo(), [(LOGITS, onehot)])
    msg = notice(t, "onehot_target")
    assert "[4, 3] torch.bool are one-hot rows over 3 classes" in msg and "int64" in msg
    labels = onehot.long().argmax(1)                                     # Adelie 0, Chinstrap 1, Gentoo 2
    assert first_loss(t) == pytest.approx(F.cross_entropy(LOGITS, labels).item(), rel=1e-6)


class RowsWithNames(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        return LOGITS[i], SPECIES["species"][i]


@pytest.mark.parametrize("data", [
    lambda: DataLoader(RowsWithNames(), batch_size=4),                    # collated to a list of str
    lambda: [(LOGITS, SPECIES["species"].to_numpy())],                    # numpy object array
    lambda: [(LOGITS, SPECIES["species"].values)],                        # pandas string array
], ids=["dataset", "numpy_object", "pandas_values"])
def test_string_labels_stop_with_a_fix_that_works(data):
    t = nw.Trainer(Echo(), data(), epochs=1, **CPU)
    with pytest.raises(DataError, match=r"Targets are strings .*'Adelie', 'Gentoo', 'Chinstrap'.*int64 class indices"
                                        r".*pd\.factorize\(df\[col\]\).*astype\('category'\)\.cat\.codes"):
        t.fit()
    codes = torch.tensor(pd.factorize(SPECIES["species"])[0])           # the fix, as the message gives it
    cat_codes = torch.tensor(SPECIES["species"].astype("category").cat.codes.values).long()
    assert codes.tolist() == [0, 1, 2, 0] and cat_codes.tolist() == [0, 2, 1, 0]
    assert fit_one(Echo(), [(LOGITS, codes)]).state == "completed"


@pytest.mark.parametrize("y, match, code", [
    (torch.randint(0, 3, (8, 1, 1)), r"Targets torch\.int64 \[8, 1, 1\] look like class labels, but labels for an "
                                     r"output \[8, 3\] must be shaped \[8\] \(or \[8, 1\]\)\. Fix: y = y\.reshape\(8\)",
     "label_shape"),
    (torch.eye(4)[torch.arange(8) % 4], r"Targets \[8, 4\] look one-hot over 4 classes, but the model outputs 3 values "
                                        r"per sample\. Make the last layer output 4", "onehot_width"),
    (torch.arange(8).float() % 3 + 0.5, r"Targets torch\.float32 \[8\] fit no task for an output \[8, 3\]",
     "target_form"),
])
def test_targets_that_fit_no_task_say_what_they_look_like_instead_of_naming_mseloss(y, match, code):
    """No loss given: these used to be taken for regression and fail with "MSELoss needs a
    target shaped like the output", a loss the user never chose."""
    import nnwidgets as nw
    from nnwidgets.data import DataError
    t = nw.Trainer(torch.nn.Linear(4, 3), [(torch.randn(8, 4), y)], epochs=1, device="cpu")
    with pytest.raises(DataError, match=match) as info:
        t.fit()
    assert info.value.code == code and "MSELoss" not in str(info.value)
