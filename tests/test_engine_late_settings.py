"""A ``set()`` or ``freeze()`` that arrives after the last step of a run (during the last
epoch's validation) is applied when the run ends and recorded as a setting event, so a
checkpoint saved then stores the new value (it was held silently for the next run)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import nnwidgets as nw
from nnwidgets.events import Event


def _batches(n, seed):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(4, 3, generator=g), torch.randint(0, 2, (4,), generator=g)) for _ in range(n)]


class LastValidation:
    """Validation batches; on the pass after ``epoch`` it calls ``action(trainer)`` first."""

    def __init__(self, action, epoch):
        self.batches, self.action, self.epoch, self.trainer = _batches(2, 1), action, epoch, None

    def __iter__(self):
        if self.trainer is not None and self.trainer.epoch == self.epoch:
            self.action(self.trainer)
        return iter(self.batches)


def _run(action, background, tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    val = LastValidation(action, epoch=1)
    t = nw.Trainer(model, _batches(3, 0), val, epochs=2, lr=0.1, device="cpu", grad_stats=False)
    val.trainer = t
    seen = []
    t.on(Event.SETTING_CHANGED, lambda tr, name, old, new, **_: seen.append((name, old, new)))
    if background:
        t.start()
        assert t.wait(30)
    else:
        t.fit()
    assert t.state == "completed" and t.step == 6
    return t, seen, torch.load(t.save(tmp_path / "ck.pt"))


@pytest.mark.parametrize("background", [False, True], ids=["fit", "start"])
def test_a_setting_changed_during_the_last_validation_is_applied_when_the_run_ends(tmp_path, background):
    t, seen, ck = _run(lambda tr: tr.set(lr=0.5, weight_decay=0.01), background, tmp_path)
    assert t.settings["lr"] == 0.5 and t.optimizer.param_groups[0]["weight_decay"] == 0.01
    assert seen == [("lr", 0.1, 0.5), ("weight_decay", 0.0, 0.01)]
    events = [e for e in t.history.event_records if e["kind"] == "setting"]
    assert [(e["name"], e["step"], e["message"]) for e in events] == [
        ("lr", 6, "lr changed from 0.1 to 0.5"), ("weight_decay", 6, "weight_decay changed from 0 to 0.01")]
    assert t.history.event_records[-1]["name"] == "completed"  # recorded before the run's ending
    assert ck["settings"]["lr"] == 0.5 and ck["optimizer"]["param_groups"][0]["lr"] == 0.5


def test_a_freeze_during_the_last_validation_is_applied_when_the_run_ends(tmp_path):
    t, _, ck = _run(lambda tr: tr.freeze("0"), False, tmp_path)
    assert [p.requires_grad for p in t.model.parameters()] == [False, False, True, True]
    event = [e for e in t.history.event_records if e["kind"] == "setting"][-1]
    assert (event["name"], event["new"], event["message"]) == ("frozen:0", True, "layer 0 frozen")
    assert any(e["name"] == "frozen:0" for e in ck["history"]["events"])
