"""The static summary a saved notebook shows where the panel was (``nnwidgets._summary``):
in the panel's display bundle once the run has ended, and in a notebook that nbclient ran and
nbconvert turned into HTML."""
from __future__ import annotations


import pytest
import torch
from torch import nn

import nnwidgets as nw
from nnwidgets import _frontend
from nnwidgets._magic import WAIT_ENV
from nnwidgets._summary import summary_html, summary_text

from _notebooks import execute_notebook

WIDGET = "application/vnd.jupyter.widget-view+json"


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 3, generator=g)
    return [(x[i:i + 8], (x[i:i + 8, 0] > 0).long()) for i in range(0, 32, 8)]


def _bundle(panel):
    b = panel._repr_mimebundle_()
    return b[0] if isinstance(b, tuple) else b


def test_bundle_gains_the_summary_when_the_run_ends():
    torch.manual_seed(0)
    p = nw.panel(nn.Linear(3, 2), _data(), _data()[:1], epochs=3, lr=0.1, device="cpu", threads=1)
    try:
        before = _bundle(p)
        assert WIDGET in before and "text/html" not in before  # nothing ended yet: the live view only
        p.trainer.fit()
        after = _bundle(p)
        assert after[WIDGET] == before[WIDGET]
        rows = p.trainer.history.epoch_records
        assert len(rows) == 3
        assert after["text/plain"].startswith("nnwidgets run completed: epoch 3/3, step 12; last epoch: loss ")
        html = after["text/html"]
        assert "<b>nnwidgets run completed: epoch 3/3, step 12" in html
        assert html.count("<tr><td>") == 3 and f"<td>{rows[-1]['val_loss']:.4g}</td>" in html
        assert "<tr><td>3</td><td>12</td>" in html  # the last epoch, counted from 1 like the headline
        assert "<svg" in html and "validation loss per epoch" in html
    finally:
        p.close()


def test_long_tables_show_both_ends_and_a_failed_run_its_escaped_error():
    class Boom(nn.Linear):
        def forward(self, x):
            if getattr(self, "calls", 0) >= 30:
                raise RuntimeError("<script>x</script> broke")
            self.calls = getattr(self, "calls", 0) + 1
            return super().forward(x)

    t = nw.Trainer(Boom(3, 2), _data()[:1], epochs=40, device="cpu", threads=1)
    with pytest.raises(RuntimeError):
        t.fit()
    html = summary_html(t)
    assert t.state == "failed" and "nnwidgets run failed" in html
    assert "&lt;script&gt;x&lt;/script&gt; broke" in html and "<script>" not in html
    assert html.count("<tr><td>") == 20 and "… 9 epochs …" in html  # 29 epochs: 10 + 10 shown
    assert summary_text(t).splitlines()[1].startswith("error: ")


NOTEBOOK = [
    "import torch\nfrom torch import nn\ntorch.manual_seed(0)\n"
    "x = torch.randn(32, 3)\ndata = [(x[i:i + 8], (x[i:i + 8, 0] > 0).long()) for i in range(0, 32, 8)]\n"
    "model = nn.Linear(3, 2)\n%load_ext nnwidgets",
    "%train model data --val data --epochs 3 --threads 1 --name run",
]


@pytest.mark.slow
def test_nbconvert_html_of_an_executed_notebook_shows_the_summary(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    from nbconvert import HTMLExporter
    nb = execute_notebook(NOTEBOOK, tmp_path, monkeypatch, drop=(WAIT_ENV, *_frontend._VOILA_ENV, "SERVER_SOFTWARE"))
    path = tmp_path / "run.ipynb"
    nbformat.write(nb, path)
    saved = nbformat.read(path, as_version=4)
    (out,) = [o for o in saved.cells[1].outputs if o["output_type"] == "display_data"]
    # nbclient ran it: the panel's output was replaced by the static summary (no widget to render)
    assert set(out["data"]) == {"text/html", "text/plain"}
    assert out["data"]["text/plain"].startswith("nnwidgets run completed: epoch 3/3, step 12; last epoch: loss ")
    body, _ = HTMLExporter().from_notebook_node(saved)
    assert "nnwidgets run completed: epoch 3/3, step 12" in body
    assert body.count('<table class="nnwidgets-epochs">') == 1 and "<svg" in body
    assert "TrainingPanel(children" not in body


def test_a_paused_run_says_why_and_what_the_training_thread_printed():
    x = torch.randn(16, 3)
    x[13] = float("nan")  # in the second batch (a NaN in the first stops before step 0)
    t = nw.Trainer(nn.Linear(3, 2), [(x[:8], (x[:8, 0] > 0).long()), (x[8:], (x[8:, 0] > 0).long())], epochs=3,
                   device="cpu")
    with pytest.warns(RuntimeWarning):
        t.fit()
    assert t.state == "paused"
    text = summary_text(t, [("output", "said <b>in</b> forward")])
    lines = text.splitlines()
    assert lines[0].startswith("nnwidgets run paused: epoch 0/3, step 1")
    assert any(line.startswith("nonfinite: loss became nan at step 1 (epoch 0) because the batch at step 1 has 3 NaN")
               for line in lines), lines
    assert lines[-1] == "output: said <b>in</b> forward"
    page = summary_html(t, [("output", "said <b>in</b> forward")])
    assert "<li><b>output</b>: said &lt;b&gt;in&lt;/b&gt; forward</li>" in page and "loss became nan" in page
