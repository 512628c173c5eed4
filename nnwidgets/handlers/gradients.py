"""Samples per-layer gradient norms and log10|g| histograms into the history.

Every sample is one batched device computation and one transfer
(:class:`nnwidgets.stats.GradientProbe`). How often is declared on the bus: after each sample
the handler re-declares its ``every`` so that sampling costs about ``GRAD_BUDGET`` of step time
(``grad_every="auto"``: ``every = ceil(cost_s / (GRAD_BUDGET * step_s))``, 1..10,000), or every
n steps as the user asked. Fires ``GRADIENTS_SAMPLED`` after each sample.
"""
from __future__ import annotations

import math
import time
from typing import Any

from ..engine.events import Event
from .base import Handler

__all__ = ["GradientSampler", "GRAD_BUDGET"]

GRAD_BUDGET = 0.01    # gradient statistics may take at most this share of step time


class GradientSampler(Handler):
    """``BATCH_COMPLETED`` handler (the first sample after the first step).

    Args:
        every: ``"auto"`` or a step count ``n >= 1``.
    """

    def __init__(self, every: int | str = "auto") -> None:
        self.every = every
        self.probe = None
        self._handle = None

    @classmethod
    def create(cls, trainer: Any, prepared: Any) -> "GradientSampler | None":
        """The Trainer's own sampler (made with it: ``to()`` and a run's end use it too)."""
        return trainer._grads

    def attach(self, trainer: Any) -> None:
        self.reset(trainer.model)
        self._handle = trainer.on(Event.BATCH_COMPLETED, self)

    def reset(self, model: Any) -> None:
        """A new probe for ``model`` (after a move to another device); next sample next step."""
        from ..stats import GradientProbe
        self.probe = GradientProbe(model)
        if self._handle is not None:
            self._handle.every = 1

    def __call__(self, trainer: Any, **info: Any) -> None:
        t0, c0 = time.perf_counter(), time.thread_time()
        sample = self.probe.to_host(self.probe.compute())
        trainer.history.append_gradients(trainer.step, self.probe.layer_names, sample.norms, sample.hist,
                                         sample.edges)
        cost = trainer._ledger.charge(t0, c0)
        every, step_s = self.every, trainer._ledger.step_time
        if every == "auto":
            every = 10 if step_s is None else math.ceil(cost / (GRAD_BUDGET * max(step_s, 1e-6)))
        self._handle.every = max(1, min(int(every), 10_000))
        trainer._bus.fire(Event.GRADIENTS_SAMPLED, trainer, step=trainer.step)

    def last(self, trainer: Any) -> None:
        """At a run's end: a sample of the last step's gradients, unless there is one."""
        if self.probe is None or not any(p.grad is not None for p in trainer.model.parameters()):
            return
        last = trainer.history.gradient_norms()[0][-1:]
        if not len(last) or last[0] < trainer.step:
            self(trainer)
