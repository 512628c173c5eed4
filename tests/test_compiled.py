"""A ``torch.compile``d model: summary and freeze names without ``_orig_mod.``, checkpoints that
load into the plain model (and the other way round). ``backend="eager"`` runs TorchDynamo
without a C compiler; the checkpoint tests also build the prefixed state dict by hand."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import nnwidgets as nw
from nnwidgets.checkpoint import CheckpointError
from nnwidgets._compiled import plain_name, plain_state_dict


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def batches():
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(8, 4, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(3)]


def test_plain_name_drops_every_orig_mod_part():
    assert plain_name("_orig_mod.0.weight") == "0.weight"
    assert plain_name("encoder._orig_mod.fc.bias") == "encoder.fc.bias"
    assert plain_name("_orig_mod") == "" and plain_name("orig_mod.x") == "orig_mod.x"


def test_summary_of_a_compiled_model_has_the_plain_names():
    model = mlp()
    compiled = torch.compile(model)  # lazy: nothing is compiled until it is called
    assert any(n.startswith("_orig_mod.") for n, _ in compiled.named_modules())
    plain, comp = nw.summary(model), nw.summary(compiled)
    assert list(comp["name"]) == list(plain["name"]) == ["0", "1", "2"]
    assert list(comp["params"]) == [40, 0, 27] and comp.attrs["total_params"] == 67


def test_compiled_model_trains_freezes_and_saves_a_checkpoint_the_plain_model_loads(tmp_path):
    model = mlp()
    compiled = torch.compile(model, backend="eager")
    t = nw.Trainer(compiled, batches(), epochs=1, lr=0.1, device="cpu", grad_stats=True)
    t.fit()
    assert t.state == "completed" and t.history.n_steps == 3
    assert t.history.gradient_norms()[1] == ["0", "2"]  # the gradient view's layer names
    t.freeze("0")
    t.freeze("_orig_mod.2")  # the name model.named_modules() gives works as well
    assert not any(p.requires_grad for p in model.parameters())
    path = t.save(str(tmp_path / "ck.pt"))
    saved = torch.load(path, weights_only=True)["model"]
    assert sorted(saved) == ["0.bias", "0.weight", "2.bias", "2.weight"]
    plain = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    t2 = nw.Trainer.load(path, plain, batches(), device="cpu")
    x = batches()[0][0]
    assert t2.step == 3 and torch.equal(plain(x), model(x))


def test_a_checkpoint_with_orig_mod_keys_loads_into_the_plain_model_and_back(tmp_path):
    model = mlp()
    t = nw.Trainer(model, batches(), epochs=1, lr=0.1, device="cpu")
    t.fit()
    path = t.save(str(tmp_path / "ck.pt"))
    ck = torch.load(path, weights_only=True)
    ck["model"] = {"_orig_mod." + k: v for k, v in ck["model"].items()}  # as an older save of a compiled model
    torch.save(ck, tmp_path / "prefixed.pt")
    plain = copy.deepcopy(mlp())
    nw.Trainer.load(str(tmp_path / "prefixed.pt"), plain, batches(), device="cpu")
    x = batches()[0][0]
    assert torch.equal(plain(x), model(x))
    compiled_target = torch.compile(copy.deepcopy(mlp()), backend="eager")
    nw.Trainer.load(path, compiled_target, batches(), device="cpu")  # plain keys into a compiled model
    assert torch.equal(compiled_target._orig_mod(x), model(x))
    assert plain_state_dict(compiled_target.state_dict()).keys() == model.state_dict().keys()


def test_load_still_reports_keys_that_do_not_match(tmp_path):
    t = nw.Trainer(mlp(), batches(), epochs=1, device="cpu")
    path = t.save(str(tmp_path / "ck.pt"))
    with pytest.raises(CheckpointError, match=r"shapes differ: 2.weight: checkpoint \(3, 8\), model \(5, 8\)"):
        nw.Trainer.load(path, nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 5)), batches(), device="cpu")
