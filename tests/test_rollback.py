"""Rollback snapshots on their own (nnwidgets.engine.rollback): weights, buffers and optimizer
state come back exactly as they were, with the caller's marks; snapshots are throttled."""
from __future__ import annotations

import copy

import torch
from torch import nn

from nnwidgets.engine.rollback import Rollback


def _model_and_adam():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    return model, opt


def _train(model, opt, steps=3):
    for _ in range(steps):
        opt.zero_grad()
        model(torch.randn(16, 4)).pow(2).mean().backward()
        opt.step()


def test_restore_puts_back_weights_buffers_and_optimizer_state_with_the_marks():
    model, opt = _model_and_adam()
    _train(model, opt)
    rb = Rollback()
    assert rb.take(model, opt, {"step": 3}, force=True)
    want_model, want_opt = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    _train(model, opt, steps=2)
    assert rb.restore(model, opt) == {"step": 3}
    for k, v in model.state_dict().items():
        assert torch.equal(v, want_model[k]), k
    got = opt.state_dict()["state"]
    for i, st in want_opt["state"].items():
        for k, v in st.items():
            assert torch.equal(torch.as_tensor(got[i][k]), torch.as_tensor(v)), (i, k)


def test_a_restored_run_continues_exactly_as_the_original():
    model, opt = _model_and_adam()
    _train(model, opt)
    rb = Rollback()
    rb.take(model, opt, {}, force=True)
    torch.manual_seed(1)
    _train(model, opt, steps=2)
    after = copy.deepcopy(model.state_dict())
    rb.restore(model, opt)
    torch.manual_seed(1)
    _train(model, opt, steps=2)
    assert all(torch.equal(v, after[k]) for k, v in model.state_dict().items())


def test_snapshots_are_throttled_unless_forced_and_reuse_their_tensors():
    model, opt = _model_and_adam()
    rb = Rollback(interval_s=3600)
    assert rb.take(model, opt, {"step": 0}, force=True)
    copies = rb._snap["tensors"]
    assert not rb.take(model, opt, {"step": 1}) and rb.marks == {"step": 0}
    assert rb.take(model, opt, {"step": 2}, force=True) and rb.marks == {"step": 2}
    assert rb.take(model, opt, {"step": 3}, force=True) and rb._snap["tensors"] is copies  # two sets, copy_, no allocation


def test_a_pending_snapshot_becomes_the_target_only_when_its_loss_was_good():
    model, opt = _model_and_adam()
    rb = Rollback()
    rb.take(model, opt, {"step": 0}, force=True)
    target = copy.deepcopy(model.state_dict())
    _train(model, opt)
    assert rb.take(model, opt, {"step": 5}, force=True, pending=True)
    assert rb.marks == {"step": 0} and rb.pending_marks == {"step": 5}
    rb.resolve(False)                                           # its loss was out of range: dropped
    assert rb.pending_marks is None and rb.marks == {"step": 0}
    rb.restore(model, opt)
    assert all(torch.equal(v, target[k]) for k, v in model.state_dict().items())
    _train(model, opt)
    rb.take(model, opt, {"step": 5}, force=True, pending=True)
    rb.resolve(True, loss=0.5)
    assert rb.marks == {"step": 5, "loss": 0.5} and rb.pending_marks is None


def test_nothing_to_restore_changes_nothing():
    model, opt = _model_and_adam()
    before = copy.deepcopy(model.state_dict())
    rb = Rollback()
    assert rb.restore(model, opt) is None
    rb.take(model, opt, {}, force=True)
    rb.clear()
    assert rb.restore(model, opt) is None and rb.marks is None
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
