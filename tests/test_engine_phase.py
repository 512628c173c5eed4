"""trainer.phase and trainer.val_progress: what the loop does, for the panel's status line."""
from __future__ import annotations

import torch
from torch import nn

import nnwidgets as nw


def _data(n):
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(8, 4, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(n)]


def test_phase_and_validation_progress_during_a_run():
    seen = []

    class Val:  # validation batches that report what the trainer says while they are read
        def __init__(self, batches):
            self.batches = batches

        def __len__(self):
            return len(self.batches)

        def __iter__(self):
            for b in self.batches:
                seen.append((t.phase, t.val_progress))
                yield b

    t = nw.Trainer(nn.Linear(4, 3), _data(5), Val(_data(3)), epochs=2, device="cpu")
    assert t.phase is None and t.val_progress == (0, None)
    phases = []
    t.on("batch_completed", lambda trainer, **_: phases.append(trainer.phase))
    t.fit()
    assert set(phases) == {"training"}
    assert seen[:3] == [("validating", (0, 3)), ("validating", (1, 3)), ("validating", (2, 3))]
    assert t.phase is None and t.val_progress == (3, 3)


def test_validation_data_without_a_length_has_no_total():
    def gen_batches():
        yield from _data(2)

    class NoLen:
        def __iter__(self):
            return gen_batches()

    t = nw.Trainer(nn.Linear(4, 3), _data(2), NoLen(), epochs=1, device="cpu")
    t.fit()
    assert t.val_progress == (2, None)
