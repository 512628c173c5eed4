"""Run control on its own (nnwidgets.engine.control): the transition table is enforced, every
change fires STATE_CHANGED, and the allowed actions per state are what the panel shows."""
from __future__ import annotations

import threading

import pytest

from nnwidgets.engine.control import ACTIONS, STATES, TRANSITIONS, RunControl
from nnwidgets.engine.events import Event, EventBus


def _control():
    bus, seen, records = EventBus(), [], []
    bus.on(Event.STATE_CHANGED, lambda owner, old, new: seen.append((old, new)))
    control = RunControl(bus, owner="T", record=lambda kind, **kw: records.append((kind, kw["name"])))
    return control, seen, records


def test_every_state_has_transitions_and_actions():
    assert set(TRANSITIONS) == set(STATES) == set(ACTIONS)
    assert all(set(v) <= set(STATES) for v in TRANSITIONS.values())


def test_moves_fire_the_state_event_and_record_when_told():
    control, seen, records = _control()
    control.move("running")
    control.move("paused", "paused at epoch 0, step 3")
    control.move("paused")  # no change: no event
    control.move("running", "resumed", name="resumed")
    assert seen == [("idle", "running"), ("running", "paused"), ("paused", "running")]
    assert records == [("state", "paused"), ("state", "resumed")]


@pytest.mark.parametrize("old,new", [("idle", "paused"), ("idle", "failed"), ("failed", "completed")])
def test_a_move_the_table_does_not_allow_is_refused(old, new):
    control, _, _ = _control()
    control.state = old
    with pytest.raises(RuntimeError, match=f"cannot go from '{old}' to '{new}'"):
        control.move(new)


def test_allowed_actions_follow_the_state():
    control, _, _ = _control()
    assert control.allowed("start") and control.allowed("configure") and not control.allowed("pause")
    control.move("running")
    assert control.allowed_actions() == {"pause", "stop"}
    control.move("paused")
    assert control.allowed("stop") and control.allowed("step") and control.allowed("start")


def test_requests_and_pending_changes():
    control, _, _ = _control()
    assert control.request_step() is False and control.steps_allowed == 1  # no loop: the caller starts one
    with control.lock:
        control.begin(background=True)
        assert control.pause_requested  # a step press makes the run pause after one step
        assert control.put(settings={"lr": 0.1}, freeze=("0", True)) is True and control.pending
        assert control.take() == ({"lr": 0.1}, {"0": True}) and not control.pending
        assert control.grant_step() and not control.grant_step()
    with pytest.raises(RuntimeError, match="already running"):
        control.begin(background=False)
    control.request_stop()
    assert control.stop_requested and control.attention


def test_wait_returns_when_the_loop_ends():
    control, _, _ = _control()
    with control.lock:
        control.begin(background=True)
    assert control.wait(timeout=0.05) is False

    def end():
        with control.lock:
            control.end()
    threading.Timer(0.05, end).start()
    assert control.wait(timeout=5) is True
