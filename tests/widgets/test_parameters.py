"""ParametersView: the summary table, the freeze toggles (PyTorch as the oracle), escaping."""

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nnwidgets import Trainer
from nnwidgets.widgets.parameters import ParametersView

from _engine_util import wait_for

EVIL = "<img src=x onerror=alert(1)>"



def loader(n=4000):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    return DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)



def model():
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))


def text(cell):
    return cell.value.split(">", 1)[1].rsplit("<", 1)[0]


def test_table_rows_and_totals_match_pytorch():
    m = model()
    view = ParametersView(Trainer(m, loader(), device="cpu"))
    assert list(view.cells) == ["0", "1", "2", "3", "4", "(total)"]
    assert set(view.freeze_boxes) == {"0", "2", "4"}  # ReLU owns no parameters: no toggle
    for name in ("0", "2", "4"):
        layer = m.get_submodule(name)
        n = sum(p.numel() for p in layer.parameters())
        row = view.cells[name]
        assert (text(row["type"]), text(row["shape"])) == ("Linear", str(tuple(layer.weight.shape)))
        assert text(row["params"]) == text(row["trainable"]) == f"{n:,}"
    total = sum(p.numel() for p in m.parameters())
    assert text(view.cells["(total)"]["params"]) == f"{total:,}" == "243"


def test_freeze_toggle_stops_updates_from_the_next_step():
    m = model()
    t = Trainer(m, loader(), epochs=1000, device="cpu", seed=0, lr=0.1)
    view = ParametersView(t)
    t.start()
    try:
        assert wait_for(lambda: t.step >= 5, 10)
        view.freeze_boxes["2"].value = True
        layer, other = m.get_submodule("2"), m.get_submodule("4")
        assert wait_for(lambda: not any(p.requires_grad for p in layer.parameters()), 1.0)
        ev = [e for e in t.history.event_records if e["name"] == "frozen:2"]
        assert len(ev) == 1 and ev[0]["new"] is True
        t.pause()
        assert wait_for(lambda: t.state == "paused", 2)
        frozen_w = [p.detach().clone() for p in layer.parameters()]
        other_w = [p.detach().clone() for p in other.parameters()]
        step = t.step
        t.resume()
        assert wait_for(lambda: t.step >= step + 50, 10)
        t.pause()
        assert wait_for(lambda: t.state == "paused", 2)
        assert all(torch.equal(a, b) for a, b in zip(frozen_w, layer.parameters()))
        assert not all(torch.equal(a, b) for a, b in zip(other_w, other.parameters()))
        assert all(p.grad is None for p in layer.parameters())
        view.refresh(t)
        assert view.freeze_boxes["2"].value is True
        assert text(view.cells["2"]["trainable"]) == "0"
        assert text(view.cells["(total)"]["trainable"]) == f"{243 - (16 * 8 + 8):,}"
    finally:
        t.stop()
        t.wait(5)


def test_refresh_shows_freezes_made_from_code_without_echo():
    t = Trainer(model(), loader(), device="cpu")
    view = ParametersView(t)
    calls = []
    real = t.freeze
    t.freeze = lambda *a, **k: (calls.append(a), real(*a, **k))
    real("0", True)
    view.refresh(t)
    assert view.freeze_boxes["0"].value is True and calls == []
    view.freeze_boxes["0"].value = False
    assert calls == [("0", False)] and all(p.requires_grad for p in t.model.parameters())


def test_module_names_render_as_text():
    m = nn.Sequential()
    m.add_module(EVIL, nn.Linear(2, 3))
    view = ParametersView(Trainer(m, loader(), device="cpu"))
    cell = view.cells[EVIL]["layer"].value
    assert "&lt;img src=x onerror=alert(1)&gt;" in cell and "<img" not in cell
    assert EVIL in view.freeze_boxes
