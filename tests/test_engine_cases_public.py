"""Inputs from public bug reports (not in ``shared/cases/``) run through ``nnwidgets.Trainer``.

Each test names its report. PyTorch is the oracle: losses are recomputed with
``torch.nn.functional`` on the same tensors; accuracy by hand from the outputs.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

import nnwidgets as nw
from nnwidgets.data import DataError

from _engine_util import LABELS, LOGITS, Echo, first_loss, fit_one, notice, notice_codes

Y = torch.tensor(LABELS)


def _trainer(model, batches, **kw):
    return nw.Trainer(model, batches, device="cpu", epochs=1, grad_stats=False, **kw)


# pytorch/pytorch#11959 (soft targets for CrossEntropyLoss): probabilities as targets stop before step 1
def test_soft_label_targets_stop_naming_soft_labels():
    probs = torch.softmax(torch.randn(4, 3, generator=torch.Generator().manual_seed(0)), 1)
    with pytest.raises(DataError, match=r"Targets \[4, 3\] torch.float32 .* not one-hot \(soft labels"):
        fit_one(Echo(), [(LOGITS, probs)], loss=nn.CrossEntropyLoss())


# z814081807/DeepNER#19, mindee/doctr#379: reduction='none' -> "grad can be implicitly created only for scalar outputs"
def test_per_sample_loss_stops_before_step_one_naming_shape_and_fix():
    with pytest.raises(DataError, match=r"returned a tensor of shape \[4\] \(reduction='none'\?\).*"
                                        r"reduction='mean'.*loss.mean\(\)") as e:
        fit_one(Echo(), [(LOGITS, Y)], loss=nn.CrossEntropyLoss(reduction="none"))
    assert e.value.code == "loss_not_scalar"


# swz30/MPRNet#108, bnu-wangxun/Deep_Metric#26: a loss returning a Python float ('float' has no attribute 'backward')
def test_loss_returning_a_python_float_stops_naming_the_item_call():
    def loss(out, y):
        return F.cross_entropy(out, y).item()
    with pytest.raises(DataError, match=r"returned float 0.42\d+, not a tensor.*\.item\(\)") as e:
        fit_one(Echo(), [(LOGITS, Y)], loss=loss)
    assert e.value.code == "loss_not_tensor"


# AnubhavGupta3377/Text-Classification-Models-Pytorch#9, yanx27/Pointnet_Pointnet2_pytorch#30:
# NLLLoss on raw scores gives a negative loss (PyTorch: -1.625 here) that runs to -inf
def test_nll_on_raw_scores_stops_before_step_one():
    assert F.nll_loss(LOGITS, Y).item() == pytest.approx(-1.625)           # what PyTorch would train on
    with pytest.raises(DataError, match=r"NLLLoss expects log-probabilities.*nn.LogSoftmax\(dim=1\).*"
                                        r"nn.CrossEntropyLoss\(\)") as e:
        fit_one(Echo(), [(LOGITS, Y)], loss=nn.NLLLoss())
    assert e.value.code == "nll_needs_log_probs"


def test_nll_on_log_softmax_trains_with_pytorchs_loss():
    t = fit_one(nn.Sequential(Echo(), nn.LogSoftmax(dim=1)), [(LOGITS, Y)], loss=nn.NLLLoss())
    assert first_loss(t) == pytest.approx(F.nll_loss(LOGITS.log_softmax(1), Y).item(), abs=1e-6)  # 0.4218


# vkhoi/KTH-Action-Recognition#8, pytorch/pytorch#59765: uint8 labels ("expected scalar type Long but found Byte")
def test_uint8_labels_are_cast_to_int64_with_the_right_loss():
    t = fit_one(Echo(), [(LOGITS, Y.to(torch.uint8))], loss=nn.CrossEntropyLoss())
    assert first_loss(t) == pytest.approx(F.cross_entropy(LOGITS, Y).item(), abs=1e-6)
    assert "torch.uint8" in notice(t, "labels_to_int64")


# sacdallago/biotrainer#67, pytorch/pytorch#122757: class weights left on another device / dtype than the output
def test_class_weights_of_another_dtype_are_moved_to_the_output():
    w = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    loss = nn.CrossEntropyLoss(weight=w)
    t = fit_one(Echo(), [(LOGITS, Y)], loss=loss)
    assert first_loss(t) == pytest.approx(F.cross_entropy(LOGITS, Y, weight=w.float()).item(), abs=1e-6)
    assert loss.weight.dtype == torch.float32
    msg = notice(t, "loss_tensors_moved")
    assert "weight torch.float64 on cpu" in msg and "loss_fn.to(device)" in msg


def test_bce_pos_weight_of_another_dtype_is_moved():
    x, y = torch.tensor([[0.5], [-1.0]]), torch.tensor([[1.0], [0.0]])
    pw = torch.tensor([3.0], dtype=torch.float64)
    t = fit_one(Echo(), [(x, y)], loss=nn.BCEWithLogitsLoss(pos_weight=pw))
    want = F.binary_cross_entropy_with_logits(x, y, pos_weight=pw.float()).item()
    assert first_loss(t) == pytest.approx(want, abs=1e-6) and "pos_weight" in notice(t, "loss_tensors_moved")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_class_weights_on_the_cpu_follow_a_cuda_model():
    w = torch.tensor([1.0, 2.0, 3.0])
    t = nw.Trainer(Echo(), [(LOGITS, Y)], loss=nn.CrossEntropyLoss(weight=w), device="cuda", epochs=1,
                   grad_stats=False)
    t.fit()
    assert first_loss(t) == pytest.approx(F.cross_entropy(LOGITS, Y, weight=w).item(), abs=1e-5)
    assert "on cpu" in notice(t, "loss_tensors_moved")


# ikostrikov/pytorch-a2c-ppo-acktr-gail#192: drop_last=True with batch_size > dataset gives an empty loader
def test_drop_last_with_a_batch_larger_than_the_dataset_names_both():
    ds = TensorDataset(torch.randn(10, 3), torch.randint(0, 3, (10,)))
    with pytest.raises(DataError, match=r"no batches \(batch_size=16, drop_last=True\)"):
        fit_one(nn.Linear(3, 3), DataLoader(ds, batch_size=16, drop_last=True))


# transfer learning with every parameter frozen ("element 0 of tensors does not require grad")
def test_all_parameters_frozen_names_the_fix():
    m = nn.Linear(3, 3).requires_grad_(False)
    with pytest.raises(RuntimeError, match=r"No parameter of the model requires a gradient.*requires_grad_\(True\)"):
        fit_one(m, [(LOGITS, Y)])


class _Bag(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb, self.out = nn.Embedding(10, 4), nn.Linear(4, 3)

    def forward(self, x):
        return self.out(self.emb(x).mean(1))


# pytorch/pytorch#116598, adesgautam/clip-search#1: float ids into nn.Embedding
def test_float_ids_into_an_embedding_stop_naming_dtype_and_fix():
    x = torch.randint(0, 10, (8, 5), generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 3, (8,), generator=torch.Generator().manual_seed(1))
    with pytest.raises(DataError, match=r"nn.Embedding got floating-point indices.*torch.float32 \[8, 5\], all whole "
                                        r"numbers.*x = x.long\(\)") as e:
        fit_one(_Bag(), [(x.float(), y)])
    assert e.value.code == "embedding_float_ids"
    torch.manual_seed(0)
    model = _Bag()
    want = F.cross_entropy(model(x), y).item()                            # int64 ids stay int64 (no cast)
    assert first_loss(fit_one(model, [(x, y)])) == pytest.approx(want, abs=1e-6)


class _Ragged(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        return torch.ones(i + 1), 0


# lucidrains/imagen-pytorch#288, abhishekkrthakur/captcha-recognition-pytorch#1: sequences of different lengths
def test_samples_of_different_lengths_stop_naming_sizes_and_padding():
    with pytest.raises(DataError, match=r"sample 0 has shape \[1\] and sample 1 has shape \[2\].*pad_sequence") as e:
        fit_one(nn.Linear(3, 3), DataLoader(_Ragged(), batch_size=2))
    assert e.value.code == "ragged_batch"


class _Trailing(nn.Module):
    def __init__(self):
        super().__init__()
        self.b = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return (x + 0 * self.b).unsqueeze(-1)                              # [N, C, 1]


# model output [N, C, 1] (Conv1d head / unsqueeze) with class labels [N]: "Expected target size [N, 1], got [N]"
@pytest.mark.parametrize("loss", [nn.CrossEntropyLoss(), "auto"], ids=["cross_entropy", "auto"])
def test_output_with_a_trailing_size_one_dimension_names_flatten(loss):
    with pytest.raises(DataError, match=r"\[4, 3, 1\].*left over.*out.flatten\(1\) \(shape \[4, 3\]\)"):
        fit_one(_Trailing(), [(LOGITS, Y)], loss=loss)


# discuss.pytorch.org/t/how-to-calculate-accuracy-for-multi-label-classification/94906:
# multi-hot float targets with BCEWithLogitsLoss -> accuracy per label (correct/total over all N x C values)
def test_multilabel_accuracy_counts_every_label():
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([[1, 0, 1, 0], [0, 1, 1, 0], [1, 1, 0, 0], [0, 0, 0, 1], [1, 0, 0, 1], [0, 1, 0, 1]]).float()
    t = _trainer(Echo(), [(x, y)], val_data=[(x, y)], loss=nn.BCEWithLogitsLoss())
    t.fit()
    rec = t.history.epoch_records[-1]
    assert rec["val_accuracy"] == pytest.approx(((x > 0).float() == y).float().mean().item(), abs=1e-6)  # 0.375
    assert rec["val_loss"] == pytest.approx(F.binary_cross_entropy_with_logits(x, y).item(), abs=1e-6)
    assert "binary_threshold" in notice_codes(t)
