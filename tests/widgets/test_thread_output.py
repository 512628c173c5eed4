"""Output of a training thread goes to its panel's notices; the main thread's stays where it was."""
from __future__ import annotations

import json
import re
import sys
import threading
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from nnwidgets import Trainer
from nnwidgets.widgets._thread_output import ThreadRouter, route_current_thread, routed_threads, \
    unroute_current_thread

from _notebooks import execute_notebook


def test_a_routed_thread_prints_and_warns_into_its_sink_only(capsys):
    got = []

    def work():
        route_current_thread(lambda kind, text: got.append((kind, text)))
        print("loss", 0.25)
        print("partial line", end="")
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            np.float64(1.0) / np.float64(0.0)  # RuntimeWarning: divide by zero
        unroute_current_thread()

    t = threading.Thread(target=work)
    t.start()
    print("main thread", 1 + 1)
    t.join()
    print("after", 3)
    assert isinstance(sys.stdout, ThreadRouter)
    assert capsys.readouterr().out == "main thread 2\nafter 3\n"
    assert got[0] == ("output", "loss 0.25")
    kind, text = got[1]
    assert kind == "warning" and re.search(r"RuntimeWarning: divide by zero encountered", text), text
    assert got[2] == ("output", "partial line")  # flushed when the route ends
    assert routed_threads() == 0


def test_the_main_thread_is_never_routed():
    with pytest.raises(RuntimeError, match="main thread's output belongs in its cell"):
        route_current_thread(lambda kind, text: None)


def test_panel_notices_get_the_training_threads_output(capsys):
    from nnwidgets.widgets.panel import TrainingPanel

    class Loud(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.calls = nn.Linear(3, 2), 0

        def forward(self, x):
            self.calls += 1
            if self.calls <= 2:
                print(f"forward call {self.calls}, batch {tuple(x.shape)}")
                warnings.warn(f"odd batch {self.calls}", UserWarning)
            return self.fc(x)

    data = [(torch.randn(4, 3), torch.randint(0, 2, (4,)))] * 3
    panel = TrainingPanel(Trainer(Loud(), data, epochs=1, device="cpu"), pause_unseen_s=None)
    try:
        panel.trainer.start()
        assert panel.trainer.wait(30) and panel.trainer.state == "completed"
        msgs = [(k, m) for k, m in reversed(panel.status.messages) if k in ("output", "warning")]
        assert msgs[0] == ("output", "forward call 1, batch (4, 3)")
        assert msgs[1][0] == "warning" and "UserWarning: odd batch 1" in msgs[1][1]
        assert ("output", "forward call 2, batch (4, 3)") in msgs
        assert capsys.readouterr().out == ""  # nothing reached the main thread's stream
        panel.refresh()
        assert "forward call 1, batch (4, 3)" in panel.status.notices.value
        panel.trainer.fit(epochs=1)  # a blocking fit on the main thread prints where it runs
    finally:
        panel.close()
    assert routed_threads() == 0


NOTEBOOK = [
    "import os, time, warnings\nimport numpy as np, torch\nfrom torch import nn\n%load_ext nnwidgets\n"
    "class Loud(nn.Module):\n"
    "    def __init__(self):\n"
    "        super().__init__(); self.fc = nn.Linear(3, 2); self.calls = 0\n"
    "    def forward(self, x):\n"
    "        self.calls += 1\n"
    "        if self.calls == 3:\n"
    "            time.sleep(0.5)\n"
    "            print('printed in forward')\n"
    "            np.log(np.zeros(1))  # RuntimeWarning: divide by zero\n"
    "        return self.fc(x)\n"
    "model = Loud()\n"
    "data = [(torch.randn(4, 3), torch.randint(0, 2, (4,)))] * 5",
    "%train model data --epochs 2 --name run --device cpu",
    "print('main', 1 + 1)",
    "run.trainer.wait(60); print('state', run.trainer.state)",
    "import json; print(json.dumps([m for k, m in run.status.messages if k in ('output', 'warning')]))",
]


@pytest.mark.slow
def test_in_a_real_kernel_thread_output_stays_out_of_later_cells(tmp_path, monkeypatch):
    nb = execute_notebook(NOTEBOOK, tmp_path, monkeypatch, NNWIDGETS_WAIT="0")

    def text(cell):
        return "".join(o.get("text", "") for o in cell.outputs if o["output_type"] == "stream")
    assert all("printed in forward" not in text(c) and "RuntimeWarning" not in text(c) for c in nb.cells[:4]), \
        [text(c) for c in nb.cells]
    assert text(nb.cells[2]) == "main 2\n"
    assert text(nb.cells[3]) == "state completed\n"
    routed = json.loads(text(nb.cells[4]))
    assert routed[-1] == "printed in forward", routed  # messages are newest first
    assert re.search(r"RuntimeWarning: divide by zero encountered in log", routed[-2]), routed
