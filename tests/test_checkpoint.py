"""Checkpoints (case C19): ``trainer.save(path)`` writes state dicts and plain numbers, so plain
``torch.load(path)`` with its safe default (``weights_only=True`` since PyTorch 2.6) reads it;
``Trainer.load`` reproduces the predictions and continues the run; files that need
``weights_only=False`` are refused with an explanation and never loaded unsafely."""
from __future__ import annotations

import copy
import time

import numpy as np
import pytest
import torch
from torch import nn

import nnwidgets as nw
from nnwidgets.checkpoint import FORMAT, CheckpointError, load_checkpoint

from _engine_util import same_params

CPU = dict(device="cpu")


def _c19_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Dropout(0.5), nn.Linear(4, 3))


def _data(n=3):
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(6, 8, generator=g), torch.randint(0, 3, (6,), generator=g)) for _ in range(n)]


def _trained(tmp_path, epochs=2):
    model, data = _c19_model(), _data()
    t = nw.Trainer(model, data, data[:1], lr=0.1, momentum=0.9, epochs=epochs, **CPU)
    torch.manual_seed(1)
    t.fit()
    path = t.save(tmp_path / "run" / "ck.pt")
    return t, model, data, path


def _plain(obj) -> bool:
    if isinstance(obj, dict):
        return all(_plain(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return all(_plain(v) for v in obj)
    return obj is None or type(obj) in (int, float, str, bool) or isinstance(obj, torch.Tensor)


def test_c19_checkpoint_loads_with_plain_torch_load_default(tmp_path):
    t, model, data, path = _trained(tmp_path)
    ck = torch.load(path)                                     # the default: weights_only=True
    torch.load(path, weights_only=True)                       # said explicitly, for older torch defaults
    assert ck["format"] == FORMAT and (ck["epoch"], ck["step"]) == (2, 6) and ck["task"] == "multiclass"
    assert ck["settings"] == {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.0, "dropout": 0.5}
    assert ck["history"]["loss"] == pytest.approx(t.history.steps.loss.tolist())
    assert _plain(ck)
    fresh = _c19_model(seed=7)
    fresh.load_state_dict(ck["model"])
    x = torch.randn(5, 8)
    model.eval(), fresh.eval()
    assert torch.equal(model(x), fresh(x))


def test_c19_trainer_load_reproduces_predictions_and_continues_the_run(tmp_path):
    t, model, data, path = _trained(tmp_path)
    fresh = _c19_model(seed=7)
    loaded = nw.Trainer.load(path, fresh, data, data[:1], lr=0.1, momentum=0.9, **CPU)
    x = torch.randn(5, 8)
    model.eval(), fresh.eval()
    assert torch.equal(model(x), fresh(x))
    model.train(), fresh.train()
    assert (loaded.epoch, loaded.step, loaded.state) == (2, 6, "completed")
    assert loaded.history.n_steps == 6 and loaded.history.epoch_records == t.history.epoch_records
    # both continue one epoch with the same dropout draws: identical weights (momentum restored)
    torch.manual_seed(3)
    t.fit(epochs=1)
    torch.manual_seed(3)
    loaded.fit(epochs=1)
    assert same_params(model, fresh) and (loaded.epoch, loaded.step) == (3, 9)
    assert np.array_equal(loaded.history.steps.loss, t.history.steps.loss)
    assert loaded.history.steps.step.tolist() == list(range(9))


def test_c19_numpy_scalars_in_the_history_are_saved_as_python_numbers(tmp_path):
    t, *_ = _trained(tmp_path)
    t.history.append_epoch({"epoch": np.int64(9), "loss": np.float64(0.52), "accuracy": np.float32(0.41)})
    path = t.save(tmp_path / "np.pt")
    row = torch.load(path)["history"]["epochs"][-1]
    assert row == {"epoch": 9, "loss": 0.52, "accuracy": pytest.approx(0.41)} and type(row["loss"]) is float


def test_c19_save_while_running_is_refused(tmp_path):
    t = nw.Trainer(_c19_model(), _data(50), epochs=10_000, grad_stats=False, **CPU)
    t.start()
    try:
        deadline = time.monotonic() + 10
        while t.step < 2 and time.monotonic() < deadline:
            time.sleep(0.001)
        with pytest.raises(RuntimeError, match=r"cannot save while training runs; pause\(\) or stop\(\) first"):
            t.save(tmp_path / "ck.pt")
        t.pause()
        assert t.wait(5)
        assert torch.load(t.save(tmp_path / "ck.pt"))["step"] == t.step
    finally:
        t.stop()
        t.wait(5)


# ---------------------------------------------------------------- files that need weights_only=False
SPRUNG = []


def _spring():
    SPRUNG.append(True)
    return {}


class Trap:
    """Unpickling this runs ``_spring`` - what a malicious checkpoint would do."""

    def __reduce__(self):
        return (_spring, ())


UNSAFE = r"weights_only=True\) refuses \(the default since PyTorch 2\.6.*will not retry unsafely"


@pytest.mark.parametrize("payload", [
    lambda m: m,                                                                    # a whole nn.Module
    lambda m: {"format": FORMAT, "model": m.state_dict(), "history": {"loss": [np.float64(0.52), np.float32(0.41)]}},
    lambda m: {"format": FORMAT, "model": m.state_dict(), "extra": Trap()},
], ids=["whole_module", "numpy_scalars", "code_on_unpickle"])
def test_c19_files_needing_weights_only_false_are_refused_never_loaded_unsafely(tmp_path, monkeypatch, payload):
    path = tmp_path / "unsafe.pt"
    torch.save(payload(_c19_model()), path)
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)
    monkeypatch.setattr(torch, "load", spy)
    fresh = _c19_model(seed=7)
    before = copy.deepcopy(fresh)
    with pytest.raises(CheckpointError, match=UNSAFE):
        nw.Trainer.load(path, fresh, _data(), **CPU)
    with pytest.raises(CheckpointError, match=UNSAFE):
        load_checkpoint(path)
    assert calls == [True, True] and SPRUNG == [] and same_params(fresh, before)


def test_a_bare_state_dict_is_not_a_checkpoint_and_says_what_to_do(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(_c19_model().state_dict(), path)
    with pytest.raises(CheckpointError, match=r"is not an nnwidgets checkpoint .*model\.load_state_dict\(torch\.load"):
        nw.Trainer.load(path, _c19_model(), _data(), **CPU)


def test_checkpoint_of_an_adam_run_restores_its_state(tmp_path):
    model, data = _c19_model(), _data()
    t = nw.Trainer(model, data, optimizer="adam", lr=0.01, epochs=1, **CPU)
    t.fit()
    t.save(tmp_path / "adam.pt")
    fresh = _c19_model(seed=7)
    loaded = nw.Trainer.load(tmp_path / "adam.pt", fresh, data, optimizer="adam", lr=0.01, **CPU)
    sa, sb = t.optimizer.state_dict()["state"], loaded.optimizer.state_dict()["state"]
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k]["exp_avg"], sb[k]["exp_avg"]) for k in sa)
    torch.manual_seed(4)
    t.fit(epochs=1)
    torch.manual_seed(4)
    loaded.fit(epochs=1)
    assert same_params(model, fresh)


# ---------------------------------------------------------------- failures never lose data
def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _identical(model, state) -> bool:
    now = model.state_dict()
    return now.keys() == state.keys() and all(torch.equal(now[k], state[k]) for k in state)


def test_a_save_that_fails_half_way_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    t, model, data, path = _trained(tmp_path)
    before = torch.load(path)
    real_save = torch.save

    def half_then_fail(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        f.seek(0)
        f.truncate(100)  # half a file on disk, then the disk "fills up"
        raise RuntimeError("PytorchStreamWriter failed writing file data/3: file write failed")
    monkeypatch.setattr(torch, "save", half_then_fail)
    t.fit(epochs=1)
    with pytest.raises(CheckpointError, match=r"could not write the checkpoint .*ck\.pt \(RuntimeError: "
                                              r"PytorchStreamWriter failed.*any previous file there is unchanged\. "
                                              r"Check the free disk space") as info:
        t.save(path)
    assert isinstance(info.value.__cause__, RuntimeError)
    monkeypatch.setattr(torch, "save", real_save)
    after = torch.load(path)                            # the old file, whole
    assert after["step"] == before["step"] == 6 and torch.equal(after["model"]["0.weight"], before["model"]["0.weight"])
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["ck.pt"]  # no temporary file left behind
    t.save(path)                                        # and the next save replaces it
    assert torch.load(path)["step"] == 9


def test_save_to_a_folder_or_an_unwritable_place_is_explained(tmp_path):
    t, *_ = _trained(tmp_path)
    with pytest.raises(CheckpointError, match=r"cannot save a checkpoint to .*run: it is a folder; give a file "
                                              r"name, e\.g\. .*run/checkpoint\.pt"):
        t.save(tmp_path / "run")
    (tmp_path / "plain_file").write_text("not a folder")
    with pytest.raises(CheckpointError, match=r"cannot save a checkpoint to .*plain_file/ck\.pt: the folder "
                                              r".*plain_file cannot be written \(.*Error: .*\); choose a folder "
                                              r"you can write to") as info:
        t.save(tmp_path / "plain_file" / "ck.pt")
    assert isinstance(info.value.__cause__, OSError)


def _damaged(tmp_path, kind):
    path = tmp_path / "ck.pt"
    if kind == "truncated":
        _, _, _, good = _trained(tmp_path)
        data = open(good, "rb").read()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("epoch,loss\n0,0.52\n")
    elif kind == "folder":
        path.mkdir()
    return path


@pytest.mark.parametrize("kind, message, cause", [
    ("truncated", r"ck\.pt: the file is damaged or incomplete \(truncated by an interrupted copy or download.*"
                  r"RuntimeError: PytorchStreamReader failed.*\); use an earlier checkpoint or save again", RuntimeError),
    ("empty", r"ck\.pt: the file is empty \(a save that never finished\?\); use an earlier checkpoint", EOFError),
    ("text", r"ck\.pt: it is not a PyTorch file \(.*\); pass a checkpoint written by trainer\.save\(path\)", Exception),
    ("folder", r"ck\.pt: it is a folder; pass the file that trainer\.save\(\) wrote", IsADirectoryError),
    ("missing", r"nope\.pt: no such file \(check the name and the working folder", FileNotFoundError),
])
def test_unreadable_files_are_one_explained_checkpoint_error(tmp_path, kind, message, cause):
    path = tmp_path / "nope.pt" if kind == "missing" else _damaged(tmp_path, kind)
    fresh = _c19_model(seed=7)
    state = _state(fresh)
    with pytest.raises(CheckpointError, match=r"^cannot load .*" + message) as info:
        nw.Trainer.load(path, fresh, _data(), **CPU)
    assert isinstance(info.value.__cause__, cause)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)
    assert _identical(fresh, state)


class _Wider(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(8, 5), nn.ReLU(), nn.Dropout(0.5), nn.Linear(5, 3))


@pytest.mark.parametrize("build, message", [
    (lambda: nn.Sequential(nn.Linear(8, 5), nn.ReLU(), nn.Dropout(0.5), nn.Linear(5, 3)),
     r"shapes differ: 0\.weight: checkpoint \(4, 8\), model \(5, 8\), 0\.bias: checkpoint \(4,\), model \(5,\)"),
    (lambda: nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Dropout(0.5), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 3)),
     r"missing in the checkpoint: 5\.weight, 5\.bias"),
    (lambda: _Wider(), r"missing in the checkpoint: body\.0\.weight.*not in the model: 0\.weight"),
], ids=["wrong_shapes", "missing_keys", "other_names"])
def test_a_checkpoint_that_does_not_fit_leaves_the_model_bit_identical(tmp_path, build, message):
    _, _, data, path = _trained(tmp_path)
    torch.manual_seed(11)
    other = build()
    state = _state(other)
    p_before = [m.p for m in other.modules() if isinstance(m, nn.Dropout)]
    full = r"ck\.pt does not fit this model \(.*" + message + r".*\); the model was not changed\. Build the model"
    with pytest.raises(CheckpointError, match=full):
        nw.Trainer.load(path, other, data, dropout=0.1, **CPU)
    with pytest.raises(CheckpointError, match=full):
        load_checkpoint(path, model=other)
    assert _identical(other, state) and [m.p for m in other.modules() if isinstance(m, nn.Dropout)] == p_before


def test_an_optimizer_state_that_does_not_fit_is_refused_before_the_model_changes(tmp_path):
    model, data = _c19_model(), _data()
    groups = torch.optim.SGD([{"params": model[0].parameters()}, {"params": model[3].parameters(), "lr": 0.01}], lr=0.1)
    t = nw.Trainer(model, data, optimizer=groups, epochs=1, **CPU)
    t.fit()
    path = t.save(tmp_path / "groups.pt")
    fresh = _c19_model(seed=7)
    state = _state(fresh)
    with pytest.raises(CheckpointError, match=r"groups\.pt: the optimizer state holds parameter groups of sizes "
                                              r"\[2, 2\], this optimizer \[4\]; the model was not changed"):
        nw.Trainer.load(path, fresh, data, optimizer="sgd", **CPU)
    assert _identical(fresh, state)
    assert nw.Trainer.load(path, fresh, data, optimizer="adam", **CPU).step == 3  # another kind: weights only


def test_an_incomplete_checkpoint_dict_is_refused(tmp_path):
    _, _, data, path = _trained(tmp_path)
    ck = torch.load(path)
    del ck["optimizer"]
    ck["step"] = -1
    torch.save(ck, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"bad\.pt is an incomplete nnwidgets checkpoint: no optimizer state "
                                              r"dict; step is -1, not a count >= 0; use an earlier checkpoint"):
        nw.Trainer.load(tmp_path / "bad.pt", _c19_model(), data, **CPU)


def test_restoring_a_checkpoint_changes_the_state_through_run_control(tmp_path):
    from nnwidgets.checkpoint import restore
    t, _, _, path = _trained(tmp_path, epochs=2)
    fresh = nw.Trainer(_c19_model(), _data(), lr=0.1, momentum=0.9, epochs=5, **CPU)
    seen = []
    fresh.on("state_changed", lambda trainer, old, new: seen.append((old, new)))
    restore(fresh, load_checkpoint(path, model=fresh.model), path)
    assert seen == [("idle", "completed")] and fresh.state == "completed" and fresh.epoch == 2


def test_a_file_that_is_no_checkpoint_is_named_so_never_with_unsafe_loading_advice(tmp_path):
    import nnwidgets as nw
    from nnwidgets.checkpoint import CheckpointError
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"garbage" * 50)
    with pytest.raises(CheckpointError, match=r"garbage\.pt: it is not a PyTorch file \(") as info:
        nw.Trainer.load(str(path), torch.nn.Linear(2, 2), [(torch.zeros(2, 2), torch.zeros(2).long())])
    assert "weights_only=False" not in str(info.value)


@pytest.mark.parametrize("kind, settings, cls", [
    ("adam", dict(lr=0.003, momentum=0.8, weight_decay=0.001), torch.optim.Adam),
    ("sgd", dict(lr=0.07, momentum=0.9, weight_decay=0.002), torch.optim.SGD),
])
def test_load_without_optimizer_rebuilds_the_saved_kind_with_its_settings_and_state(tmp_path, kind, settings, cls):
    model, data = _c19_model(), _data()
    t = nw.Trainer(model, data, optimizer=kind, epochs=1, **settings, **CPU)
    t.fit()
    t.save(tmp_path / "ck.pt")
    fresh = _c19_model(seed=7)
    loaded = nw.Trainer.load(tmp_path / "ck.pt", fresh, data, **CPU)  # no optimizer= given
    assert type(loaded.optimizer) is cls
    a, b = t.optimizer.state_dict(), loaded.optimizer.state_dict()
    assert [{k: v for k, v in g.items() if k != "params"} for g in a["param_groups"]] == \
        [{k: v for k, v in g.items() if k != "params"} for g in b["param_groups"]]
    assert loaded.settings == t.settings
    assert a["state"].keys() == b["state"].keys()
    for k in a["state"]:
        for name, v in a["state"][k].items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(b["state"][k][name]))
    torch.manual_seed(4)
    t.fit(epochs=1)
    torch.manual_seed(4)
    loaded.fit(epochs=1)
    assert same_params(model, fresh)


def test_load_with_an_explicit_optimizer_uses_that_one(tmp_path):
    model, data = _c19_model(), _data()
    t = nw.Trainer(model, data, optimizer="adam", epochs=1, **CPU)
    t.fit()
    t.save(tmp_path / "ck.pt")
    loaded = nw.Trainer.load(tmp_path / "ck.pt", _c19_model(seed=7), data, optimizer="sgd", lr=0.05, **CPU)
    assert type(loaded.optimizer) is torch.optim.SGD and loaded.settings["lr"] == 0.05
