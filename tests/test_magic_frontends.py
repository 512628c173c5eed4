"""``%%train`` where no widget can steer: text in terminal IPython (no kernel), and waiting for
the run under nbclient (``nbconvert --execute``, papermill), which stops the kernel after the
last cell. See :mod:`nnwidgets._frontend` for how each is recognised."""
from __future__ import annotations

import re
import threading

import pytest
import torch
from IPython.core.error import UsageError
from IPython.terminal.interactiveshell import TerminalInteractiveShell
from IPython.testing import globalipapp
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nnwidgets import _frontend
from nnwidgets._frontend import BATCH, LIVE, TEXT, front_end
from nnwidgets._magic import DEFAULT_PANEL_NAME, WAIT_ENV
from nnwidgets._text import TextReport, epoch_line

from _notebooks import execute_notebook


# ---------------------------------------------------------------- detection
class _Kernel:
    def __init__(self, parent=None, fails=False):
        self.parent, self.fails = parent, fails

    def get_parent(self):
        if self.fails:
            raise AttributeError("no get_parent in this kernel")
        return self.parent


class _Shell:
    def __init__(self, kernel):
        self.kernel = kernel


def _request(allow_stdin, msg_type="execute_request"):
    return {"header": {"msg_type": msg_type}, "metadata": {}, "content": {"code": "", "allow_stdin": allow_stdin}}


@pytest.fixture
def no_voila(monkeypatch):
    for k in (*_frontend._VOILA_ENV, "SERVER_SOFTWARE"):
        monkeypatch.delenv(k, raising=False)


@pytest.mark.parametrize("shell, expected", [
    (None, TEXT),                                                       # no IPython
    (_Shell(None), TEXT),                                               # no kernel
    (_Shell(_Kernel(_request(False))), BATCH),                          # nbclient: kc.allow_stdin = False
    (_Shell(_Kernel(_request(True))), LIVE),                            # JupyterLab, Notebook 7, VS Code
    (_Shell(_Kernel({**_request(None), "content": {}})), LIVE),         # field missing: assume a front end
    (_Shell(_Kernel(_request(False, msg_type="comm_msg"))), LIVE),      # a widget callback
    (_Shell(_Kernel(fails=True)), LIVE),                                # an unknown kernel
], ids=["no_ipython", "no_kernel", "nbclient", "jupyterlab", "no_field", "widget_callback", "foreign_kernel"])
def test_front_end_detection(no_voila, shell, expected):
    assert front_end(shell) == expected


@pytest.mark.parametrize("env", [{"VOILA_BASE_URL": "/"}, {"VOILA_PREHEAT": "True"},
                                 {"SERVER_SOFTWARE": "voila/0.5.13"}])
def test_voila_runs_notebooks_through_nbclient_but_its_pages_are_live(no_voila, monkeypatch, env):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert front_end(_Shell(_Kernel(_request(False)))) == LIVE


def test_the_test_shell_is_a_terminal_shell_without_kernel():
    globalipapp.start_ipython()
    shell = globalipapp.get_ipython()
    assert isinstance(shell, TerminalInteractiveShell) and front_end(shell) == TEXT


# ---------------------------------------------------------------- text in terminal IPython
def _loader(n=64):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    return DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True, generator=g)


@pytest.fixture
def tip(monkeypatch):
    """The in-process terminal shell, with its real front-end detection (text)."""
    monkeypatch.delenv(WAIT_ENV, raising=False)
    globalipapp.start_ipython()
    shell = globalipapp.get_ipython()
    shell.run_line_magic("load_ext", "nnwidgets")
    shell.user_ns.update(nn=nn, torch=torch, train_loader=_loader(), val_loader=_loader(32))
    # the in-process shell is shared by the whole session: forget runs of earlier test files, or
    # this file's first cell is "a re-run" of theirs (and says so in its output)
    from nnwidgets._reruns import Runs
    shell.magics_manager.registry["TrainMagics"]._runs = Runs()
    yield shell
    for name in ("model", "boom", "Boom", DEFAULT_PANEL_NAME, "run"):
        shell.user_ns.pop(name, None)


BODY = "torch.manual_seed(0)\nmodel = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))\n"
LINE = r"epoch {k}/3  loss \d\.\d+  accuracy 0?\.\d+  val_loss \d\.\d+  val_accuracy 0?\.\d+  lr 0\.1"


def test_terminal_ipython_prints_one_line_per_epoch_instead_of_a_widget_repr(tip, capsys):
    updaters = [t for t in threading.enumerate() if t.name == "nnwidgets-panel-updater"]
    tip.run_cell_magic("train", "model train_loader --val val_loader --epochs 3 --lr 0.1", BODY)
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert len(lines) == 4, out
    for k in (1, 2, 3):
        assert re.fullmatch(LINE.format(k=k), lines[k - 1]), lines[k - 1]
    assert lines[3] == "training completed (3 epochs, 12 steps)"
    assert "TrainingPanel" not in out and "children=" not in out
    report = tip.user_ns[DEFAULT_PANEL_NAME]
    assert isinstance(report, TextReport) and report.trainer.state == "completed"
    assert [t for t in threading.enumerate() if t.name == "nnwidgets-panel-updater"] == updaters  # no panel
    row = report.trainer.history.epoch_records[-1]
    assert lines[2] == epoch_line(row, 3)


def test_terminal_ipython_shows_a_failed_run_as_one_error_line(tip, capsys):
    tip.run_cell("class Boom(nn.Module):\n"
                 "    def __init__(self):\n"
                 "        super().__init__(); self.fc = nn.Linear(4, 3)\n"
                 "    def forward(self, x):\n"
                 "        raise RuntimeError('boom in forward')\n")
    with pytest.raises(UsageError, match=r"^training failed: RuntimeError during checking the first batch at epoch 0, "
                                         r"step 0: .*boom in forward"):
        tip.run_cell_magic("train", "boom train_loader --name run", "boom = Boom()\n")
    assert tip.user_ns["run"].trainer.state == "failed"


def test_a_rerun_in_the_terminal_notes_the_earlier_run(tip, capsys):
    tip.run_cell_magic("train", "model train_loader --epochs 1", BODY)
    tip.run_cell_magic("train", "model train_loader --epochs 1", BODY)
    out = capsys.readouterr().out
    assert re.search(r"^note: this cell ran before: its earlier run was stopped \(epoch 1, step 4, completed\) and "
                     r"its panel closed$", out, re.M), out


# ---------------------------------------------------------------- nbclient
NOTEBOOK = [
    "%load_ext nnwidgets\nimport os, torch\nfrom torch import nn\nfrom torch.utils.data import DataLoader, TensorDataset\n"
    "g = torch.Generator().manual_seed(0)\nx = torch.randn(64, 4, generator=g)\ny = (x[:, 0] > 0).long()\n"
    "loader = DataLoader(TensorDataset(x, y), batch_size=16)\n"
    "def net():\n    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))\n",
    "%%train model loader --epochs 30 --name a\nmodel = net()\n",
    "print('A', a.trainer.state, a.trainer.step, [m for _, m in a.status.messages if 'nbclient' in m])",
    "os.environ['VOILA_BASE_URL'] = '/'  # as in a kernel that Voila started",
    "%%train model2 loader --epochs 100000 --name b\nmodel2 = net()\n",
    "print('B', b.trainer.state)\nb.trainer.stop(); b.trainer.wait(10)\ndel os.environ['VOILA_BASE_URL']\n"
    "os.environ['NNWIDGETS_WAIT'] = '0'",
    "%%train model3 loader --epochs 100000 --name c\nmodel3 = net()\n",
    "print('C', c.trainer.state)\nc.trainer.stop(); c.trainer.wait(10)",
]


@pytest.mark.slow
def test_nbclient_runs_a_train_cell_to_completion_without_wait(tmp_path, monkeypatch):
    """``jupyter nbconvert --execute`` / papermill are nbclient: with no ``--wait`` and no
    ``NNWIDGETS_WAIT``, the cell waits and says why; in Voilà (its variables) and with
    ``NNWIDGETS_WAIT=0`` it returns while the run goes on."""
    nb = execute_notebook(NOTEBOOK, tmp_path, monkeypatch, drop=(WAIT_ENV, *_frontend._VOILA_ENV, "SERVER_SOFTWARE"))
    text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []) if o["output_type"] == "stream")
    assert re.search(r"^A completed 120 \['nbclient runs this notebook \(nbconvert --execute, papermill\): nothing "
                     r"can steer the run and the kernel stops after the last cell, so this cell waits for the run "
                     r"to end; NNWIDGETS_WAIT=0 trains in the background instead'\]$", text, re.M), text
    assert re.search(r"^B (idle|running)$", text, re.M), text
    assert re.search(r"^C (idle|running)$", text, re.M), text


def test_a_check_warning_under_train_in_terminal_ipython_names_the_users_cell(tip):
    """It named IPython's interactiveshell.py (the first frame outside nnwidgets is IPython's
    run_cell_magic), not the cell."""
    import warnings

    from nnwidgets import CheckWarning
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = tip.run_cell("%%train model train_loader --epochs 1 --lr 0.1\n" + BODY)
    assert result.success
    found = [(w.filename, w.lineno) for w in caught if issubclass(w.category, CheckWarning)
             and str(w.message).startswith("Treating this run as multiclass")]
    assert len(found) == 1 and found[0][0].startswith("<ipython-input-") and found[0][1] == 1, found
