"""StatusView: one epoch number in every state, where a run stopped, the overhead line."""
from types import SimpleNamespace

import numpy as np

import pytest
import torch
from torch import nn

from nnwidgets import Trainer
from nnwidgets._speed import Speed
from nnwidgets.history import History
from nnwidgets.widgets.status import StatusView


def fake(state, *, step=94, epoch=5, target=30, spe=17):
    return SimpleNamespace(state=state, step=step, epoch=epoch, target_epochs=target, steps_per_epoch=spe,
                           overhead=0.02, history=History(), error=None)


def test_epoch_is_the_same_running_and_paused():
    """It read "epoch 6/30 · step 85" running, then "epoch 5/30 · step 94" paused."""
    view = StatusView(fake("idle", step=0, epoch=0))
    assert view.info.value.startswith("epoch 1/30 · step 0/510")
    shown = {}
    for state in ("running", "paused", "stopped"):
        view.refresh(fake(state))
        shown[state] = view.info.value.split(" · ")[0]
    assert shown == {"running": "epoch 6/30", "paused": "epoch 6/30", "stopped": "epoch 6/30"}
    view.refresh(fake("completed", step=510, epoch=30))
    assert view.info.value.startswith("epoch 30/30 · step 510/510")


def test_an_interrupted_run_says_where_it_stopped():
    x, y = torch.randn(8, 3), torch.randint(0, 2, (8,))
    pressed = []

    def step(model, batch):  # Ctrl-C arriving once, during the third step
        if t.step == 2 and not pressed:
            pressed.append(True)
            raise KeyboardInterrupt
        return nn.functional.cross_entropy(model(batch[0]), batch[1])

    t = Trainer(nn.Linear(3, 2), [(x, y)] * 4, epochs=3, step=step, device="cpu")
    t.fit()
    assert t.state == "stopped" and t.step == 2
    view = StatusView(t)
    assert view.halted.value.endswith("Interrupted at step 2 (epoch 1/3). Start continues from there.</span>")
    assert view.info.value.startswith("train loss ") and " · epoch 1/3 · step 2/12" in view.info.value
    t.resume()  # runs on in the background; a finished run says nothing about stopping
    assert t.wait(20) and t.state == "completed"
    view.refresh(t)
    assert view.halted.value == ""


def test_stop_and_pause_name_their_step():
    t = Trainer(nn.Linear(3, 2), [(torch.randn(8, 3), torch.randint(0, 2, (8,)))] * 4, epochs=3, device="cpu")
    t.step_once()
    assert t.wait(20) and t.state == "paused"
    view = StatusView(t)
    assert "Paused at step 1 (epoch 1/3). Resume continues from there." in view.halted.value
    t.stop()
    assert t.wait(20) and t.state == "stopped"
    view.refresh(t)
    assert "Stopped at step 1 (epoch 1/3). Start continues from there." in view.halted.value
def test_overhead_is_the_slowdown_against_the_rate_alone():
    """It read "overhead 3.8 %" (nnwidgets' own work) while the run went 20x slower than the
    loop alone; now it shows 1 - steps/s / the rate alone, measured by the engine."""
    view = StatusView(fake("running"))
    run = fake("running")
    run.speed = Speed(steps_per_s=50.0, alone_steps_per_s=1000.0, overhead=0.95, own_share=0.01, threads=2)
    view.refresh(run)
    assert "overhead 95.0 % (alone ~1,000 steps/s, 2 threads)" in view.info.value
    run.speed = Speed(steps_per_s=980.0, alone_steps_per_s=1000.0, overhead=0.02, own_share=0.01, threads=1)
    view.refresh(run)
    assert "overhead 2.0 % (alone ~1,000 steps/s, 1 thread)" in view.info.value
    view.refresh(fake("running"))   # no reading yet (no steps committed): nothing claimed
    assert "overhead" not in view.info.value


def test_numbers_first_train_loss_of_the_last_50_steps_then_validation():
    h = History()
    losses = np.arange(1, 81, dtype=np.float32) / 100  # steps 0..79: 0.01 .. 0.80
    losses[-1] = np.inf  # a non-finite loss is left out of the mean
    h.append_steps(0, losses, 0.01, 0.0, 1.0)
    view = StatusView(SimpleNamespace(**{**vars(fake("running", step=80, epoch=0, spe=80)), "history": h}))
    expected = float(np.mean(losses[30:79]))  # the newest 50 steps, less the inf
    assert view.info.value.startswith(f"train loss {expected:.3g} · epoch 1/30"), view.info.value
    h.append_epoch({"epoch": 0, "step": 80, "loss": 0.4, "accuracy": 0.9, "val_loss": 0.2451,
                    "val_accuracy": 0.96666, "lr": 0.01, "time_s": 1.0})
    view.refresh(SimpleNamespace(**{**vars(fake("running", step=80, epoch=1, spe=80)), "history": h}))
    assert view.info.value.startswith(f"train loss {expected:.3g} · val loss 0.245 · val accuracy 0.967 · epoch 2/30")
    h2 = History()  # no validation data: the training metric
    h2.append_epoch({"epoch": 0, "step": 0, "loss": 0.4, "r2": 0.51234, "mae": 0.3, "lr": 0.01, "time_s": 1.0})
    view.refresh(SimpleNamespace(**{**vars(fake("running", step=0, epoch=1)), "history": h2}))
    assert view.info.value.startswith("r2 0.512 · epoch 2/30"), view.info.value


class _Watched:
    """A validation 'loader' of ``n`` batches that records, as each batch is taken,
    ``trainer.phase``, ``trainer.val_progress`` and what the status view shows then."""

    def __init__(self, batches, view_of):
        self.batches, self.view_of, self.seen = batches, view_of, []

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        for b in self.batches:
            t, view = self.view_of()
            view.refresh(t)
            self.seen.append((t.phase, t.val_progress, view.state.value, view.info.value))
            yield b


def test_validation_pass_shows_validating_with_its_batch_progress():
    torch.manual_seed(0)
    x, y = torch.randn(8, 3), torch.randint(0, 2, (8,))
    box = {}
    val = _Watched([(x, y)] * 3, lambda: (box["t"], box["view"]))
    t = Trainer(nn.Linear(3, 2), [(x, y)] * 2, val, epochs=1, device="cpu")
    box["t"], box["view"] = t, StatusView(t)
    t.fit()
    # the trainer is running while fit() validates; batches done so far / 3
    assert [(p, v) for p, v, *_ in val.seen] == [("validating", (0, 3)), ("validating", (1, 3)),
                                                  ("validating", (2, 3))]
    assert all(">validating</b>" in s for _, _, s, _ in val.seen)
    assert [[p for p in i.split(" · ") if "validating" in p] for *_, i in val.seen] == [
        [f"validating {k}/3 batches"] for k in range(3)]
    assert all(f"validating {k}/3 batches · epoch 1/1" in i for k, (*_, i) in enumerate(val.seen))
    assert (t.phase, t.val_progress) == (None, (3, 3))  # the pass is over; its progress stays readable
    box["view"].refresh(t)
    assert "validating" not in box["view"].info.value and "validating" not in box["view"].state.value


def test_validating_is_read_only_when_the_engine_has_it():
    view = StatusView(fake("running"))  # an engine without phase / val_progress
    assert "validating" not in view.info.value
    t = fake("running")
    t.phase, t.val_progress = "validating", (4, None)  # a loader without length
    view.refresh(t)
    assert "validating 4 batches · epoch 6/30" in view.info.value and ">validating</b>" in view.state.value
    t.state = "paused"  # paused between batches: the state says paused
    view.refresh(t)
    assert "validating" not in view.info.value and ">paused</b>" in view.state.value


def _blow_up():
    torch.manual_seed(0)
    X = torch.randn(64, 8) * 50.0
    model = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 1))
    return Trainer(model, [(X, X.sum(1, keepdim=True))] * 4, lr=0.1, momentum=0.9, epochs=10, device="cpu")


def test_a_divergence_is_labelled_diverged_with_its_step_in_the_message_only():
    """The notices read "nonfinite (epoch 0, step 0) loss diverged at step 1 ...": the kind,
    and the step the run went back to beside the step where it blew up."""
    t = _blow_up()
    with pytest.warns(RuntimeWarning, match="diverged"):
        t.fit()
    (ev,) = [e for e in t.history.event_records if e["kind"] == "nonfinite"]
    assert (ev["new"], ev["step"]) == ("diverged", 0)             # the event keeps its kind; recorded at step 0
    view = StatusView(t)
    (kind, text), = [m for m in view.messages if m[0] in ("diverged", "nonfinite")]
    assert kind == "diverged" and text == ev["message"]
    assert text.startswith("loss diverged at step 1 (epoch 0): 1.27e+12") and "(epoch 0, step 0)" not in text
    assert '<b>diverged</b> loss diverged at step 1 (epoch 0)' in view.notices.value


def test_reinitialize_is_a_notice_and_the_old_numbers_are_marked_until_the_next_epoch():
    torch.manual_seed(0)
    x, y = torch.randn(32, 3), torch.randint(0, 2, (32,))
    t = Trainer(nn.Linear(3, 2), [(x[:16], y[:16]), (x[16:], y[16:])], [(x, y)], epochs=2, lr=0.1, device="cpu")
    t.fit()
    view = StatusView(t)
    before = view.info.value.split(" · epoch")[0]
    assert before.startswith("train loss ") and " · val loss " in before and " · val accuracy " in before
    t.reinitialize(seed=1)
    view.refresh(t)
    (kind, text), = [m for m in view.messages if m[0] == "reinitialized"]
    assert text == f"(epoch 2, step 4) weights reinitialized: reset_parameters() of 1 layers, optimizer state cleared"
    assert view.info.value.startswith(f"before reinitialize: {before} · epoch 2/2"), view.info.value
    t.step_once()                                                  # one step on the fresh weights
    assert t.wait(20) and t.step == 5
    view.refresh(t)
    fresh = float(t.history.steps.loss[4])
    assert view.info.value.startswith(f"train loss {fresh:.3g} (since reinitialize) · epoch 3/4"), view.info.value
    t.resume()                                                     # the rest of the epoch: its record ends the mark
    assert t.wait(20) and t.state == "completed" and t.epoch == 4 and t.step == 8
    view.refresh(t)
    after = view.info.value.split(" · epoch")[0]
    fresh = float(np.mean(t.history.steps.loss[4:]))                # the fresh weights' steps only
    last = t.history.epoch_records[-1]
    assert after == f"train loss {fresh:.3g} · val loss {last['val_loss']:.3g} · val accuracy {last['val_accuracy']:.3g}"
