"""Shared helpers for the engine tests: a fixed-output model and the plain-PyTorch oracle.

``Echo`` returns its input, so a batch's features *are* its logits (or predictions): losses
and metrics of a run through ``nnwidgets.Trainer`` are then known exactly and can be compared
with ``torch.nn.functional`` on the same tensors. ``oracle`` is the hand-written loop
(``zero_grad -> forward -> loss -> backward -> step``) a Trainer run must reproduce.
"""
from __future__ import annotations

import copy
import time
from typing import Any, Callable, Iterable

import torch
from torch import nn

__all__ = ["Echo", "oracle", "same_params", "events", "notice_codes", "notice", "fit_one", "first_loss",
           "LOGITS", "LABELS"]

# The logits and labels of cases C02/C03 (CrossEntropyLoss = 0.4218).
LOGITS = torch.tensor([[2.0, 0.5, 0.1], [0.2, 1.5, 0.3], [0.1, 0.2, 1.9], [0.3, 1.1, 0.2]])
LABELS = [0, 1, 2, 1]


class Echo(nn.Module):
    """``forward(x) = x + 0 * b``: output == input bit for bit; ``b`` keeps backward and the
    optimizer step valid (its gradient is 0, so it stays 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.b = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0 * self.b


def oracle(model: nn.Module, batches: Iterable[Any], loss_fn: Callable, steps: int, *,
           optimizer: Callable[..., torch.optim.Optimizer] | None = None,
           lr: float = 0.01, momentum: float = 0.0) -> tuple[nn.Module, list[float]]:
    """Train a deep copy of ``model`` for ``steps`` optimizer steps over ``batches`` (cycled)
    with the hand-written PyTorch loop; returns ``(trained copy, losses)``."""
    m = copy.deepcopy(model)
    m.train()
    opt = (optimizer(m.parameters()) if optimizer is not None
           else torch.optim.SGD(m.parameters(), lr=lr, momentum=momentum))
    batches = list(batches)
    losses = []
    for i in range(steps):
        x, y = batches[i % len(batches)]
        opt.zero_grad()
        loss = loss_fn(m(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return m, losses


def same_params(a: nn.Module, b: nn.Module) -> bool:
    """True when every parameter of ``a`` equals the one of ``b`` exactly."""
    pa, pb = list(a.parameters()), list(b.parameters())
    return len(pa) == len(pb) and all(torch.equal(x.detach(), y.detach()) for x, y in zip(pa, pb))


def events(trainer: Any, kind: str | None = None) -> list[dict]:
    """The trainer's event records, optionally of one kind."""
    return [e for e in trainer.history.event_records if kind is None or e["kind"] == kind]


def notice_codes(trainer: Any) -> list[str]:
    """Names of the notices recorded so far."""
    return [e["name"] for e in events(trainer, "notice")]


def notice(trainer: Any, code: str) -> str:
    """The message of the first notice named ``code`` (fails the test if there is none)."""
    found = [e["message"] for e in events(trainer, "notice") if e["name"] == code]
    assert found, f"no {code!r} notice; notices: {notice_codes(trainer)}"
    return found[0]


def fit_one(model: nn.Module, batches: Any, **kw: Any) -> Any:
    """A finished CPU run (one epoch unless ``epochs=`` is given) of ``model`` on ``batches``."""
    import nnwidgets as nw
    t = nw.Trainer(model, batches, epochs=kw.pop("epochs", 1), device="cpu", **kw)
    t.fit()
    return t


def first_loss(trainer: Any) -> float:
    """The loss recorded for the first step."""
    return float(trainer.history.steps.loss.iloc[0])


def c13_stack(act: type) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """Case C13: 10 x (Linear(16, 16) + act) + Linear(16, 3) and one batch of 64 (seed 0)."""
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(10):
        layers += [nn.Linear(16, 16), act()]
    layers.append(nn.Linear(16, 3))
    model = nn.Sequential(*layers)
    x, y = torch.randn(64, 16), torch.randint(0, 3, (64,))
    return model, x, y


def wait_for(cond: Callable[[], Any], timeout: float) -> bool:
    """Poll ``cond`` every 2 ms until it is truthy or ``timeout`` seconds pass; its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.002)
    return bool(cond())
