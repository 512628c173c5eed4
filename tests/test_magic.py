"""``%%train`` against a real in-process IPython shell (``IPython.testing.globalipapp``)."""
from __future__ import annotations

import re

import pytest
import torch
from IPython.core.error import UsageError
from IPython.testing import globalipapp
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nnwidgets import _frontend
from nnwidgets._magic import DEFAULT_PANEL_NAME, WAIT_ENV, TrainMagics

OPTIONS = ["--val", "--epochs", "--lr", "--momentum", "--weight-decay", "--dropout", "--optimizer",
           "--loss", "--task", "--device", "--seed", "--threads", "--name", "--overwrite", "--wait", "--no-start"]


def _loader(n: int = 64, batch_size: int = 16) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()  # 3 classes
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True, generator=g)


@pytest.fixture
def ip(monkeypatch):
    """The in-process shell, seen as a live widget front end (it has no kernel, so ``%%train``
    would otherwise print text: tests/test_magic_frontends.py)."""
    monkeypatch.delenv(WAIT_ENV, raising=False)
    monkeypatch.setattr(_frontend, "front_end", lambda shell: _frontend.LIVE)
    globalipapp.start_ipython()  # once per process; later calls do nothing
    shell = globalipapp.get_ipython()
    shell.run_line_magic("load_ext", "nnwidgets")
    shell.user_ns.update(
        nn=nn, torch=torch, train_loader=_loader(), val_loader=_loader(32),
        model=nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 3)),
        empty_loader=DataLoader(TensorDataset(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))),
        not_a_model=[1, 2, 3],
    )
    yield shell
    for value in list(shell.user_ns.values()):
        trainer = getattr(value, "trainer", None)
        if trainer is not None and hasattr(trainer, "wait"):
            trainer.stop()
            trainer.wait(10)
            value.close()  # ends the panel's updater thread
    for name in ("run", "run2", DEFAULT_PANEL_NAME, "model", "counter", "fresh", "gated", "plain", "boom", "Boom"):
        shell.user_ns.pop(name, None)


def test_options_reach_the_trainer(ip):
    ip.run_line_magic("train", "model train_loader --val val_loader --epochs 3 --lr 0.2 --momentum 0.5 "
                      "--weight-decay 0.001 --dropout 0.3 --device cpu --seed 1 --threads 1 --name run --no-start")
    panel = ip.user_ns["run"]
    trainer = panel.trainer
    assert DEFAULT_PANEL_NAME not in ip.user_ns  # only unnamed runs are bound there
    assert trainer.model is ip.user_ns["model"]
    assert trainer.val_data is ip.user_ns["val_loader"]
    assert trainer.epochs == 3
    assert trainer.device == torch.device("cpu")
    assert trainer.settings == pytest.approx({"lr": 0.2, "momentum": 0.5, "weight_decay": 0.001, "dropout": 0.3})
    assert type(trainer.optimizer).__name__ == "SGD"
    assert trainer.state == "idle"  # --no-start
    assert trainer._tuner.setting == 1


def test_optimizer_task_and_loss(ip):
    ip.run_line_magic("train", "model train_loader --optimizer adam --lr 0.003 --task multiclass "
                      "--loss cross_entropy --name run --no-start")
    trainer = ip.user_ns["run"].trainer
    assert type(trainer.optimizer).__name__ == "Adam"
    assert trainer.settings["lr"] == pytest.approx(0.003)
    assert trainer.task == "multiclass"


def test_wait_trains_to_completion(ip):
    ip.run_line_magic("train", "model train_loader --val val_loader --epochs 2 --lr 0.1 --wait --name run")
    trainer = ip.user_ns["run"].trainer
    assert trainer.state == "completed"
    assert [r["epoch"] for r in trainer.history.epoch_records] == [0, 1]
    assert trainer.history.n_steps == 2 * 4  # 64 rows / batch 16, two epochs
    assert "val_accuracy" in trainer.history.epoch_records[-1]


def test_env_variable_means_wait(ip, monkeypatch):
    monkeypatch.setenv(WAIT_ENV, "1")
    ip.run_line_magic("train", "model train_loader --epochs 2")
    assert ip.user_ns[DEFAULT_PANEL_NAME].trainer.state == "completed"


class _GatedLoader:
    """Re-iterable batches that are held back until ``gate`` is set."""

    def __init__(self, batches, gate):
        self.batches, self.gate = batches, gate

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        for batch in self.batches:
            assert self.gate.wait(30)
            yield batch


def test_without_wait_returns_while_training_runs_in_background(ip):
    import threading
    gate = threading.Event()
    ip.user_ns["gated"] = _GatedLoader(list(ip.user_ns["train_loader"]), gate)
    ip.run_line_magic("train", "model gated --epochs 2 --name run")  # returns although no batch came yet
    trainer = ip.user_ns["run"].trainer
    assert trainer.history.n_steps == 0 and trainer.state in ("idle", "running")
    gate.set()
    assert trainer.wait(30)
    assert trainer.state == "completed" and trainer.history.n_steps == 2 * 4


def test_body_runs_first_and_rerun_gives_fresh_model(ip):
    body = ("counter = globals().get('counter', 0) + 1\n"
            "fresh = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))\n")
    ip.run_cell_magic("train", "fresh train_loader --epochs 1 --wait --name run", body)
    first = ip.user_ns["run"].trainer
    assert ip.user_ns["counter"] == 1 and first.model is not None
    ip.run_cell_magic("train", "fresh train_loader --epochs 1 --wait --name run", body)
    second = ip.user_ns["run"].trainer
    assert ip.user_ns["counter"] == 2
    assert second.model is ip.user_ns["fresh"] and second.model is not first.model


def test_rerun_stops_the_previous_run(ip):
    ip.run_line_magic("train", "model train_loader --epochs 500 --name run")
    first = ip.user_ns["run"].trainer
    ip.run_line_magic("train", "model train_loader --epochs 1 --wait --name run")
    assert first.state in ("stopped", "completed")
    assert ip.user_ns["run"].trainer is not first


def test_line_magic_form(ip):
    ip.run_line_magic("train", "model train_loader --epochs 1 --wait --name run")
    assert ip.user_ns["run"].trainer.state == "completed"


def test_empty_cell_body_points_to_line_magic(ip):
    # IPython itself refuses a %%train cell without a body and suggests the line magic.
    with pytest.raises(UsageError, match=re.escape("Did you mean the line magic %train (single %)?")):
        ip.run_cell_magic("train", "model train_loader", "")


@pytest.mark.parametrize("line, message", [
    ("modle train_loader", "model: name 'modle' is not defined in the notebook; did you mean 'model'?"),
    ("model train_lodaer", "train_loader: name 'train_lodaer' is not defined in the notebook; "
                           "did you mean 'train_loader'?"),
    ("model train_loader --val vall_loader", "--val: name 'vall_loader' is not defined in the notebook; "
                                             "did you mean 'val_loader'?"),
    ("zzzzzz train_loader", "model: name 'zzzzzz' is not defined in the notebook"),
    ("not_a_model train_loader", "model 'not_a_model' is a list, not a torch.nn.Module"),
    ("model empty_loader", "train_loader 'empty_loader' yields no batches"),
    ("model train_loader --val empty_loader", "--val 'empty_loader' yields no batches"),
    ("model model", "train_loader 'model' is a Sequential, not a DataLoader"),
    ("model train_loader --lr abc", "argument --lr: invalid float value: 'abc'"),
    ("model train_loader --epochs 1.5", "argument --epochs: invalid int value: '1.5'"),
    ("model train_loader --optimizer lbfgs", "argument --optimizer: invalid choice: 'lbfgs'"),
    ("model train_loader --task ranking", "argument --task: invalid choice: 'ranking'"),
    ("model train_loader --lr -1", "lr must be a finite number > 0, got -1.0"),
    ("model train_loader --epochs 0", "epochs must be >= 1, got 0"),
    ("model train_loader --loss hinge", "--loss: unknown loss 'hinge'; use one of auto, cross_entropy"),
    ("model train_loader --name 1run", "--name: '1run' is not a valid Python variable name"),
    ("model train_loader --threads many", "argument --threads: takes auto, torch or a thread count >= 1, got 'many'"),
    ("model train_loader --threads 0", "argument --threads: takes auto, torch or a thread count >= 1, got '0'"),
    ("model train_loader --device tpu", "unknown device 'tpu'; use 'auto', 'cpu', 'cuda'"),
    ("model", "the following arguments are required: train_loader"),
])
def test_errors_are_short_usage_errors(ip, line, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        ip.run_cell_magic("train", line, "# body\n")
    assert DEFAULT_PANEL_NAME not in ip.user_ns  # nothing was built


def test_dropout_on_a_model_without_dropout(ip):
    ip.user_ns["plain"] = nn.Sequential(nn.Linear(4, 3))
    with pytest.raises(UsageError, match="dropout"):
        ip.run_cell_magic("train", "plain train_loader --dropout 0.5", "# body\n")


def test_failing_body_stops_before_training(ip):
    with pytest.raises(UsageError, match=re.escape("the cell body failed (ZeroDivisionError: division by zero); "
                                                   "nothing was trained")):
        ip.run_cell_magic("train", "model train_loader", "1 / 0\n")


def test_failed_run_with_wait_is_one_short_error(ip):
    ip.run_cell("class Boom(nn.Module):\n"
                "    def __init__(self):\n"
                "        super().__init__(); self.fc = nn.Linear(4, 3)\n"
                "    def forward(self, x):\n"
                "        raise RuntimeError('boom in forward')\n")
    with pytest.raises(UsageError, match=r"^training failed: .*boom in forward"):
        ip.run_cell_magic("train", "boom train_loader --wait --name run", "boom = Boom()\n")
    assert ip.user_ns["run"].trainer.state == "failed"


def test_help_lists_every_option(ip, capsys):
    doc = TrainMagics.train.__doc__
    assert doc.lstrip(": \n").startswith("%%train")
    for option in OPTIONS + ["model", "train_loader", WAIT_ENV, DEFAULT_PANEL_NAME]:
        assert option in doc, option
    assert ip.object_inspect_text("%%train").count("--weight-decay") >= 1
    ip.run_cell("%%train?")
    shown = capsys.readouterr().out
    for option in OPTIONS:
        assert option in shown, option


def test_panel_is_displayed(ip, monkeypatch):
    import IPython.display
    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj, **kw: shown.append(obj))
    ip.run_line_magic("train", "model train_loader --name run --no-start")
    panel = ip.user_ns["run"]
    assert len(shown) == 2 and shown[0] in (panel, getattr(panel, "widget", panel))  # then the re-attach hint


def test_rerun_with_name_closes_the_old_panel(ip):
    ip.run_line_magic("train", "model train_loader --epochs 500 --name run")
    first = ip.user_ns["run"]
    ip.run_line_magic("train", "model train_loader --epochs 1 --name run --no-start")
    assert first.trainer.state == "stopped"
    assert first._closed.is_set() and not first._thread.is_alive()  # updater thread ended
    assert ip.user_ns["run"] is not first


def test_new_run_of_the_same_model_stops_the_old_one_and_marks_its_panel_superseded(ip):
    ip.run_line_magic("train", "model train_loader --epochs 500 --name run")
    first = ip.user_ns["run"]
    ip.run_line_magic("train", "model train_loader --epochs 1 --name run2 --no-start")
    assert first.trainer.state == "stopped"
    assert ip.user_ns["run"] is first and not first._closed.is_set()
    first.refresh()
    buttons = (first.controls.start_button, first.controls.pause_button, first.controls.step_button,
               first.controls.stop_button)
    assert all(b.disabled for b in buttons)  # Start would train one model from two threads
    assert any(text.startswith("superseded: a newer %%train cell trains this model object")
               for _, text in first.status.messages)
    assert any(re.match(r"another %%train of this model object was stopped \(epoch 0, step \d+, stopped\); its "
                        r"panel stays, with its controls off", text) for _, text in ip.user_ns["run2"].status.messages)


def _alive(name):
    import threading
    return [t for t in threading.enumerate() if t.name == name and t.is_alive()]


def test_rerunning_an_unnamed_cell_that_rebuilds_the_model_leaves_one_live_run(ip):
    import time
    before = {n: set(_alive(n)) for n in ("nnwidgets-trainer", "nnwidgets-panel-updater")}
    body = "model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))\n"
    panels = []
    for _ in range(4):
        ip.run_cell_magic("train", "model train_loader --epochs 100000", body)
        panels.append(ip.user_ns[DEFAULT_PANEL_NAME])
    assert len({id(p.trainer.model) for p in panels}) == 4  # four model objects: identity cannot tell
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(len(set(_alive(n)) - before[n]) > 1 for n in before):
        time.sleep(0.05)
    assert {n: len(set(_alive(n)) - before[n]) for n in before} == {"nnwidgets-trainer": 1,
                                                                     "nnwidgets-panel-updater": 1}
    assert all(p.trainer.state == "stopped" and p._closed.is_set() for p in panels[:3])
    assert panels[3].trainer.state == "running"
    assert any(re.match(r"this cell ran before: its earlier run was stopped \(epoch \d+, step \d+, stopped\) and "
                        r"its panel closed", text) for _, text in panels[3].status.messages)


def test_a_cell_is_known_by_the_front_ends_cell_id_else_by_its_names():
    from nnwidgets._reruns import cell_key

    class Kernel:
        def __init__(self, metadata):
            self.metadata = metadata

        def get_parent(self):
            return {"header": {}, "metadata": self.metadata, "content": {}}

    class Shell:
        def __init__(self, kernel=None):
            self.kernel = kernel

    assert cell_key(Shell(Kernel({"cellId": "3f2a"})), "model", "run") == ("cell", "3f2a")
    assert cell_key(Shell(Kernel({})), "model", "run") == ("name", "run")
    assert cell_key(Shell(), "net", None) == ("model", "net")
    assert cell_key(object(), "net", None) == ("model", "net")  # no kernel at all (terminal IPython)


def test_name_refuses_to_replace_a_variable_that_is_not_a_panel(ip):
    ip.user_ns["run"] = {"lr": 0.1}
    with pytest.raises(UsageError, match=re.escape(
            "--name run: the notebook variable 'run' holds a dict, not a training panel, and %%train would "
            "replace it. Choose another --name, or add --overwrite to replace 'run'.")):
        ip.run_line_magic("train", "model train_loader --name run --no-start")
    assert ip.user_ns["run"] == {"lr": 0.1}
    ip.run_line_magic("train", "model train_loader --name run --no-start --overwrite")
    first = ip.user_ns["run"]
    assert type(first).__name__ == "TrainingPanel"
    ip.run_line_magic("train", "model train_loader --name run --no-start")  # a panel: replaced, no flag needed
    assert ip.user_ns["run"] is not first and type(ip.user_ns["run"]).__name__ == "TrainingPanel"


def test_the_cell_output_says_how_to_show_the_run_again(ip, monkeypatch):
    from nnwidgets import _magic
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda *objs, **kw: shown.append((objs, kw)))
    ip.run_line_magic("train", "model train_loader --name run --no-start")
    (panel,), _ = shown[0]
    assert panel is ip.user_ns["run"]
    (bundle,), kw = shown[1]
    assert kw == {"raw": True}
    assert bundle["text/plain"] == _magic.reattach_hint("run") == (
        "Panel bound to run: after reopening the notebook or reloading the page, run display(run) in a new cell "
        "to show the live run again.")
    assert "display(run)" in bundle["text/html"]
    shown.clear()
    monkeypatch.setenv("VOILA_KERNEL_ID", "x")  # Voilà: a reload is a new kernel, nothing to re-attach
    ip.run_line_magic("train", "model train_loader --name run --no-start")
    assert len(shown) == 1
