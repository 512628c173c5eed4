"""The package's own features as EventBus handlers (nnwidgets.handlers): declared throttling,
discovery, and nothing on the per-step event when nothing needs it."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import nnwidgets as nw
from nnwidgets.engine.events import Event, EventBus
from nnwidgets.handlers import GradientSampler, SchedulerStepper, handler_classes


def _data(n=8):
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(8, 4, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(n)]


def test_every_is_declared_and_can_be_redeclared():
    bus, calls = EventBus(), []
    handle = bus.on(Event.BATCH_COMPLETED, lambda t, **i: calls.append(i["step"]), every=3)
    for step in range(1, 8):
        bus.fire(Event.BATCH_COMPLETED, None, step=step)
    assert calls == [3, 6]
    handle.every = 2  # the next call comes 2 firings later
    for step in range(8, 12):
        bus.fire(Event.BATCH_COMPLETED, None, step=step)
    assert calls == [3, 6, 9, 11] and handle.every == 2
    with pytest.raises(ValueError, match="every must be >= 1"):
        handle.every = 0


def test_the_package_handlers_are_found():
    assert {GradientSampler, SchedulerStepper} <= set(handler_classes())


def test_a_run_without_gradient_statistics_or_scheduler_has_no_per_step_handler():
    t = nw.Trainer(nn.Linear(4, 3), _data(), epochs=1, grad_stats=False, device="cpu")
    t.fit()
    assert not t._bus.has(Event.BATCH_COMPLETED)


def test_gradient_sampling_every_n_steps_is_declared_on_the_bus():
    t = nw.Trainer(nn.Linear(4, 3), _data(), epochs=2, grad_every=3, device="cpu")
    t.fit()
    steps, _, _ = t.history.gradient_norms()
    assert steps.tolist() == [1, 4, 7, 10, 13, 16]  # the first after step 1, then every 3; 16 is the last step


def test_a_per_step_scheduler_is_stepped_by_its_handler():
    model = nn.Linear(4, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=16)
    t = nw.Trainer(model, _data(), epochs=2, optimizer=opt, scheduler=sched, device="cpu")
    t.fit()
    lrs = t.history.steps.lr.to_numpy()
    assert len(set(lrs.round(8))) > 8 and sched.last_epoch == 15
