"""Cases C13, C14 and C21 of ``shared/cases/`` run through ``nnwidgets.Trainer``: gradient
norms that vanish, gradients that must be cleared every step, parameters without gradients.
Plain PyTorch (the hand-written loop, ``.grad`` after one ``backward()``) is the oracle."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nnwidgets as nw
from nnwidgets.events import Event
from nnwidgets.stats import activation_after, flag_vanishing

from _engine_util import c13_stack, events, fit_one, oracle

CPU = dict(device="cpu")


# ---------------------------------------------------------------- C13 vanishing gradients
@pytest.mark.parametrize("act, flagged", [(nn.Sigmoid, True), (nn.ReLU, False)], ids=["sigmoid", "relu"])
def test_c13_vanishing_gradients_flagged_for_sigmoid_not_relu(act, flagged):
    model, x, y = c13_stack(act)
    probe = copy.deepcopy(model)
    F.cross_entropy(probe(x), y).backward()                       # oracle: the first step's gradients
    expected = [math.sqrt(m.weight.grad.norm() ** 2 + m.bias.grad.norm() ** 2)
                for m in probe if isinstance(m, nn.Linear)]
    t = fit_one(model, [(x, y)], epochs=2, grad_every=1)
    steps, names, norms = t.history.gradient_norms()
    assert steps[0] == 1 and names == [str(i) for i in range(0, 21, 2)] and norms.shape == (2, 11)
    assert np.allclose(norms[0], expected, rtol=1e-4)
    messages = flag_vanishing(norms[-1], names, activation_after(model))
    if flagged:
        assert norms[-1][0] / norms[-1][-1] < 1e-6
        assert messages and "layer '0'" in messages[0] and "Sigmoid" in messages[0]
    else:
        assert norms[-1][0] / norms[-1][-1] > 1e-4 and messages == []


# ---------------------------------------------------------------- C14 gradients cleared every step
def _c14():
    torch.manual_seed(0)
    X = torch.randn(64, 2)
    Y = X @ torch.tensor([[2.0], [-3.0]]) + 1
    return X, Y, nn.Linear(2, 1)


def test_c14_loss_at_step_10_is_1_7577():
    X, Y, model = _c14()
    init = copy.deepcopy(model)
    t = fit_one(model, [(X, Y)], epochs=40, lr=0.05)
    losses = t.history.steps.loss.to_numpy()
    assert abs(losses[10] - 1.7577) < 1e-3
    _, ref = oracle(init, [(X, Y)], F.mse_loss, 40, lr=0.05)
    assert np.allclose(losses, ref, rtol=1e-5)


def test_c14_custom_step_gets_cleared_grads_and_same_losses():
    X, Y, model = _c14()
    stale = []

    def step(m, batch):
        stale.append([p.grad is not None for p in m.parameters()])
        x, y = batch
        return F.mse_loss(m(x), y)

    t = fit_one(model, [(X, Y)], epochs=40, lr=0.05, step=step)
    assert not any(any(s) for s in stale)                         # zero_grad(set_to_none=True) before each
    assert abs(t.history.steps.loss.iloc[10] - 1.7577) < 1e-3


def test_c14_custom_step_calling_backward_itself_gets_a_clear_error():
    X, Y, _ = _c14()
    model = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))

    def step(m, batch):
        x, y = batch
        loss = F.mse_loss(m(x), y)
        loss.backward()                                          # accumulates into .grad
        return loss

    t = nw.Trainer(model, [(X, Y)], epochs=2, step=step, **CPU)
    with pytest.raises(RuntimeError, match=r"step function called loss\.backward\(\) itself; return the loss"):
        t.fit()
    assert t.state == "failed" and t.history.n_steps == 0


# ---------------------------------------------------------------- C21 parameters without gradients
def _c21_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 3))


C21_DATA = [(torch.randn(4, 8), torch.tensor([0, 1, 2, 0]))] * 3


def test_c21_frozen_layer_is_labelled_not_a_crash():
    model = _c21_model()
    for p in model[0].parameters():
        p.requires_grad_(False)
    frozen_before = [p.detach().clone() for p in model[0].parameters()]
    stats = []
    t = nw.Trainer(model, C21_DATA, epochs=2, grad_every=1, **CPU)
    t.on(Event.BATCH_COMPLETED, lambda tr, **_: stats.append(nw.gradient_stats(tr.model)))
    t.fit()
    assert t.state == "completed" and len(stats) == 6
    df = stats[-1]
    assert df.loc[df.has_grad, "name"].tolist() == ["2.weight", "2.bias"]
    assert df.loc[df.status == "frozen", "name"].tolist() == ["0.weight", "0.bias"]
    assert df.loc[df.status == "frozen", "norm"].isna().all()
    steps, names, norms = t.history.gradient_norms()
    assert len(steps) == 6 and np.isfinite(norms[:, names.index("2")]).all()
    assert "0" not in names or np.isnan(norms[:, names.index("0")]).all()
    assert all(torch.equal(a, b) for a, b in zip(frozen_before, model[0].parameters()))
    assert nw.summary(model).set_index("name").loc["0", "frozen"]


def test_c21_layer_frozen_mid_run_gets_nan_norms_and_keeps_its_weights():
    model = _c21_model()
    t = nw.Trainer(model, C21_DATA, epochs=2, grad_every=1, **CPU)
    kept = {}

    def freeze_after_2(tr, step, **_):
        if step == 2:
            tr.freeze("0")
            kept["w"] = [p.detach().clone() for p in tr.model[0].parameters()]
    t.on(Event.BATCH_COMPLETED, freeze_after_2)
    t.fit()
    steps, names, norms = t.history.gradient_norms()
    col = norms[:, names.index("0")]
    assert steps.tolist() == [1, 2, 3, 4, 5, 6]
    assert np.isfinite(col[:2]).all() and np.isnan(col[2:]).all() and np.isfinite(norms[:, names.index("2")]).all()
    assert all(torch.equal(a, b) for a, b in zip(kept["w"], model[0].parameters()))
    assert any(e["name"] == "frozen:0" and e["new"] is True for e in events(t, "setting"))
