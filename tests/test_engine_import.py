"""The engine loads no UI: ``import nnwidgets.engine`` (then ``import nnwidgets``, the other
engine modules, and a whole training run with a checkpoint) must not import ipywidgets,
bqplot, anywidget or IPython. Checked in one fresh interpreter, stage by stage, since this
test process may already have imported them."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UI = ("ipywidgets", "bqplot", "anywidget", "IPython", "nnwidgets.widgets")

STAGES = {
    "import nnwidgets.engine": "import nnwidgets.engine",
    "import nnwidgets": "import nnwidgets",
    "engine modules": "import nnwidgets.history, nnwidgets.events, nnwidgets.data, nnwidgets.hyperparams, "
                      "nnwidgets.checkpoint, nnwidgets.stats",
    "a run": """
import torch
from torch import nn
import nnwidgets as nw
t = nw.Trainer(nn.Linear(2, 2), [(torch.randn(4, 2), torch.tensor([0, 1, 0, 1]))], epochs=2, device="cpu")
t.fit()
t.history.steps, t.history.epochs, t.history.events, t.history.gradients
nw.summary(t.model), nw.gradient_stats(t.model)
t.save(CKPT)
nw.Trainer.load(CKPT, nn.Linear(2, 2), t.train_data, device="cpu")
""",
}


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """``{stage: UI modules in sys.modules after it}`` from one fresh interpreter."""
    script = textwrap.dedent(f"""
        import json, sys
        CKPT = {str(tmp_path_factory.mktemp("ck") / "ck.pt")!r}
        UI = {UI!r}
        out = {{}}
        for name, code in {STAGES!r}.items():
            exec(code)
            out[name] = sorted(m for m in sys.modules if any(m == u or m.startswith(u + ".") for u in UI))
        print(json.dumps(out))
    """)
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("stage", list(STAGES))
def test_engine_loads_no_ui(loaded, stage):
    assert loaded[stage] == []
