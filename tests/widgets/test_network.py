"""NetworkView: what it sends (one bounded float32 buffer), how often (≤ 2 Hz), and what it follows."""
from __future__ import annotations

import json
import re
import statistics
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from nnwidgets import Trainer
from nnwidgets._graph import MAX_COLUMNS
from nnwidgets.widgets.network import NetworkView, NetworkWidget, esm_path

REPO = Path(__file__).resolve().parents[2]


def make_trainer(model: nn.Module, n_features: int, n_classes: int = 3, **kw) -> Trainer:
    torch.manual_seed(0)
    x, y = torch.randn(128, n_features), torch.randint(0, n_classes, (128,))
    data = [(x[i:i + 32], y[i:i + 32]) for i in range(0, 128, 32)]
    return Trainer(model, data, device="cpu", **kw)


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 3))


def mnist_mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))


def record(view: NetworkView) -> list:
    """Replace the widget's transport by a recorder of ``(message, buffers)``."""
    sent: list = []
    view.widget._send = lambda msg, buffers=None: sent.append((msg, list(buffers or [])))
    return sent


def test_esm_is_the_repository_js_file_and_exports_render():
    path = esm_path()
    assert path == REPO / "js" / "network.js"
    assert "export default { render }" in path.read_text()
    assert "export default" in str(NetworkWidget._esm)


def test_js_never_parses_strings_as_html():
    src = (REPO / "js" / "network.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "DOMParser", "eval("):
        assert sink not in src, sink
    assert not re.search(r"\bimport\b.*\bfrom\b|https?://(?!www\.w3\.org)", src), "no imports, no CDN"


def test_weights_travel_as_one_binary_float32_buffer():
    model = mlp()
    trainer = make_trainer(model, 2, epochs=1)
    view = NetworkView(trainer)
    sent = record(view)
    trainer.fit()
    view.refresh(trainer, force=True)
    msg, buffers = sent[-1]
    assert msg["method"] == "update" and msg["buffer_paths"] == [["weights"]]
    assert "weights" not in msg["state"] and set(msg["state"]) == {"state"}
    assert len(buffers) == 1 and len(buffers[0]) == view.graph.nbytes == 1628
    assert len(json.dumps(msg)) < 1024
    floats = np.frombuffer(buffers[0], dtype=np.float32)
    w0 = model[0].weight.detach().numpy()
    np.testing.assert_array_equal(floats[2:48:3], w0.reshape(-1))   # pair 0 sent whole, row-major
    assert view.widget.state["step"] == trainer.step == 4


def test_buffer_is_bounded_and_constant_for_784_256_10():
    trainer = make_trainer(mnist_mlp(), 784, n_classes=10, epochs=3)
    view = NetworkView(trainer, max_neurons=16, max_edges=1024)
    sent = record(view)
    first = view.last_update_nbytes
    trainer.fit()
    view.refresh(trainer, force=True)
    assert sent, "training changed the weights, so an update must be sent"
    sizes = [len(b[0]) for _, b in sent]
    bound = 4 * (3 * 1024 + 5 * 16 * MAX_COLUMNS)
    assert first == sizes[-1] == view.graph.nbytes == 3292 <= bound
    assert [c["collapsed"] for c in view.widget.structure["columns"]] == [True, True, False]


def test_refresh_is_throttled_to_two_per_second():
    model = mlp()
    trainer = make_trainer(model, 2)
    view = NetworkView(trainer)
    sent = record(view)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 1.3:
        with torch.no_grad():
            model[0].weight.add_(0.01)       # something new to send at every call
        view.refresh(trainer)
        time.sleep(0.01)
    elapsed = time.monotonic() - t0
    assert 2 <= len(sent) <= 1 + elapsed / 0.5
    with pytest.raises(ValueError, match="at most 2 updates per second"):
        NetworkView(trainer, interval_s=0.2)


def test_nothing_is_sent_when_nothing_changed():
    trainer = make_trainer(mlp(), 2)
    view = NetworkView(trainer)
    sent = record(view)
    view.refresh(trainer, force=True)
    view.refresh(trainer, force=True)
    assert sent == [] and view.updates == 1


def test_view_follows_freeze_toggles_and_dropout_slider():
    trainer = make_trainer(mlp(), 2, epochs=1)
    view = NetworkView(trainer)
    trainer.freeze("3")
    trainer.set(dropout=0.5)
    view.refresh(trainer, force=True)
    assert view.widget.state["frozen"] == [False, False, True, False]
    assert view.widget.state["dropout"] == [None, 0.5, None, None]
    trainer.freeze("3", False)
    trainer.fit()
    view.refresh(trainer, force=True)
    st = view.widget.state
    assert st["frozen"] == [False] * 4
    assert st["grad_norm"][0] is None and all(v > 0 for v in st["grad_norm"][1:])
    json.dumps(st, allow_nan=False)


def test_block_view_for_a_conv_net_and_a_hostile_module_name():
    name = "<script>alert(1)</script>"
    model = nn.Sequential(OrderedDict([(name, nn.Conv2d(1, 4, 3)), ("act", nn.ReLU()), ("flat", nn.Flatten()),
                                       ("fc", nn.Linear(4 * 6 * 6, 3))]))
    trainer = Trainer(model, [(torch.randn(8, 1, 8, 8), torch.randint(0, 3, (8,)))], device="cpu", epochs=1)
    view = NetworkView(trainer, example=torch.zeros(1, 1, 8, 8))
    blocks = view.widget.structure["blocks"]
    assert view.widget.structure["kind"] == "blocks"
    assert [b["name"] for b in blocks] == [name, "act", "flat", "fc"]
    assert blocks[0]["shape"] == [4, 6, 6] and blocks[3]["shape"] == [3]
    assert view.widget.weights == b"" and view.last_update_nbytes == 0
    trainer.fit()
    view.refresh(trainer, force=True)
    assert view.widget.state["grad_norm"][0] > 0 and view.widget.state["grad_norm"][1] is None


def test_reset_rereads_a_changed_model():
    trainer = make_trainer(mlp(), 2)
    view = NetworkView(trainer)
    trainer.model[5] = nn.Linear(8, 4)
    view.reset()
    assert [c["size"] for c in view.widget.structure["columns"]] == [2, 8, 8, 4]


@pytest.mark.parametrize("make, n_in, expected_ms", [(mlp, 2, 50), (mnist_mlp, 784, 100)])
def test_refresh_cost(make, n_in, expected_ms, capsys):
    model = make()
    trainer = make_trainer(model, n_in, n_classes=3 if n_in == 2 else 10)
    view = NetworkView(trainer)
    record(view)
    costs = []
    for _ in range(20):
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(1.001)
        view.refresh(trainer, force=True)
        costs.append(view.last_refresh_s * 1e3)
    median = statistics.median(costs)
    with capsys.disabled():
        print(f"\nNetworkView.refresh {make.__name__}: median {median:.2f} ms, "
              f"{view.last_update_nbytes} bytes of weights per update")
    assert median < expected_ms


def test_up_to_32_units_per_layer_are_drawn_as_neurons():
    """A 32-unit hidden layer is 32 neurons (it was collapsed to a bar above 16); 33 collapses."""
    from torch import nn
    for hidden, collapsed in ((32, False), (33, True)):
        model = nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, 3))
        view = NetworkView(make_trainer(model, 2))
        cols = view.widget.structure["columns"]
        assert view.graph.structure["max_neurons"] == 32
        assert [(c["size"], c["collapsed"]) for c in cols] == [(2, False), (hidden, collapsed), (3, False)]
        if not collapsed:  # both pairs sent whole: 2·32 + 32·3 edges
            assert view.widget.structure["edge_counts"] == [64, 96]
