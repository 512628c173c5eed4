"""nnwidgets._graph: layer structure and the bounded edge sample, PyTorch as the oracle."""
from __future__ import annotations

import json
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from nnwidgets import Trainer
from nnwidgets._graph import MAX_COLUMNS, extract, layer_state, sample


def mlp_2_8_8_3() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 3))


def mnist_mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))


def split(graph, buf):
    """(edges per pair as (k, 3) arrays, stats rows per column as (r, 5) arrays)."""
    s = graph.structure
    n_edges = 3 * sum(s["edge_counts"])
    edges = np.split(buf[:n_edges].reshape(-1, 3), np.cumsum(s["edge_counts"])[:-1])
    stats = np.split(buf[n_edges:].reshape(-1, 5), np.cumsum(s["stat_rows"])[:-1])
    return edges, stats


def test_2_8_8_3_columns_activations_and_dropout():
    g = extract(mlp_2_8_8_3())
    cols = g.structure["columns"]
    assert g.kind == "mlp"
    assert [c["size"] for c in cols] == [2, 8, 8, 3]
    assert [c["activation"] for c in cols] == ["", "ReLU", "Tanh", ""]
    assert [c["dropout"] for c in cols] == [False, True, False, False]
    assert [c["name"] for c in cols] == ["input", "0", "3", "5"]
    assert not any(c["collapsed"] for c in cols)
    assert g.structure["edge_counts"] == [16, 64, 24]
    assert g.structure["params"] == sum(p.numel() for p in mlp_2_8_8_3().parameters())
    json.dumps(g.structure, allow_nan=False)


def test_2_8_8_3_buffer_holds_every_weight_and_neuron_stats():
    model = mlp_2_8_8_3()
    g = extract(model)
    buf = sample(g)
    assert buf.dtype == np.float32 and buf.nbytes == g.nbytes == 4 * (3 * 104 + 5 * 19)
    edges, stats = split(g, buf)
    for lin, e, s in zip([model[0], model[3], model[5]], edges, stats):
        w = lin.weight.detach()
        rebuilt = torch.full_like(w, float("nan"))
        rebuilt[torch.from_numpy(e[:, 1]).long(), torch.from_numpy(e[:, 0]).long()] = torch.from_numpy(e[:, 2])
        torch.testing.assert_close(rebuilt, w)
        std, mean = torch.std_mean(w, dim=1, correction=0)
        expected = torch.stack([mean, std, w.amin(1), w.amax(1), lin.bias.detach()], 1)
        torch.testing.assert_close(torch.from_numpy(s), expected)


def test_784_256_10_collapses_wide_layers_and_keeps_the_strongest_edges():
    model = mnist_mlp()
    g = extract(model, max_neurons=16, max_edges=1024)
    cols = g.structure["columns"]
    assert [c["size"] for c in cols] == [784, 256, 10]
    assert [c["collapsed"] for c in cols] == [True, True, False]
    assert g.structure["edge_counts"] == [128, 128]
    assert g.structure["stat_rows"] == [1, 10]
    buf = sample(g)
    bound = 4 * (3 * 1024 + 5 * 16 * MAX_COLUMNS)
    assert buf.nbytes == g.nbytes == 4 * (3 * 256 + 5 * 11) <= bound
    edges, stats = split(g, buf)
    for lin, e in zip([model[1], model[3]], edges):
        w = lin.weight.detach()
        src, dst = e[:, 0].astype(int), e[:, 1].astype(int)
        assert (src < w.shape[1]).all() and (dst < w.shape[0]).all()
        np.testing.assert_array_equal(e[:, 2], w.numpy()[dst, src])
        kth = torch.topk(w.abs().reshape(-1), len(e)).values[-1].item()
        assert np.abs(e[:, 2]).min() >= kth
        assert len({(a, b) for a, b in zip(src, dst)}) == len(e)
    w1 = model[1].weight.detach()
    expected = [w1.mean().item(), w1.std(correction=0).item(), w1.min().item(), w1.max().item(),
                model[1].bias.detach().mean().item()]
    np.testing.assert_allclose(stats[0][0], expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("max_edges", [1, 100, 4096])
def test_edge_total_never_exceeds_max_edges(max_edges):
    layers = [nn.Linear(16, 16) for _ in range(20)]
    g = extract(nn.Sequential(*layers), max_edges=max_edges)
    assert sum(g.structure["edge_counts"]) <= max(max_edges, len(layers))
    assert sample(g).nbytes == g.nbytes


def test_nested_sequentials_norms_and_bare_linear():
    model = nn.Sequential(nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU()),
                          nn.Sequential(nn.Linear(6, 5), nn.Sigmoid(), nn.Dropout(0.1)), nn.Linear(5, 2))
    g = extract(model)
    cols = g.structure["columns"]
    assert [c["name"] for c in cols] == ["input", "0.0", "1.0", "2"]
    assert [c["norm"] for c in cols] == ["", "BatchNorm1d", "", ""]
    assert [c["activation"] for c in cols] == ["", "ReLU", "Sigmoid", ""]
    single = extract(nn.Linear(3, 2))
    assert single.kind == "mlp" and [c["size"] for c in single.structure["columns"]] == [3, 2]


class Custom(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(2, 4), nn.Linear(4, 2)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x))) + x


class ResidualSequential(nn.Sequential):
    def forward(self, x):
        return super().forward(x) + x


@pytest.mark.parametrize("model", [Custom(), ResidualSequential(nn.Linear(2, 2)), nn.Sequential(nn.LazyLinear(3)),
                                   nn.Sequential(nn.Linear(2, 3), nn.Linear(4, 1))])
def test_anything_not_a_plain_linear_sequence_is_drawn_as_blocks(model):
    assert extract(model).kind == "blocks"


def test_conv_net_gives_one_block_per_leaf_with_output_shapes():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(0.25),
                          nn.Linear(4 * 13 * 13, 10))
    model.train()
    g = extract(model, torch.zeros(2, 1, 28, 28, dtype=torch.float64))
    leaves = [n for n, m in model.named_modules() if next(m.children(), None) is None]
    blocks = g.structure["blocks"]
    assert g.kind == "blocks" and [b["name"] for b in blocks] == leaves
    assert [b["type"] for b in blocks] == ["Conv2d", "ReLU", "MaxPool2d", "Flatten", "Dropout", "Linear"]
    assert [b["shape"] for b in blocks] == [[4, 26, 26], [4, 26, 26], [4, 13, 13], [676], [676], [10]]
    assert [b["params"] for b in blocks] == [40, 0, 0, 0, 0, 6770]
    assert model.training
    assert all(not m._forward_hooks for m in model.modules())
    assert sample(g).nbytes == 0
    model.eval()
    extract(model, torch.zeros(1, 1, 28, 28))
    assert not model.training
    assert [b["shape"] for b in extract(model).structure["blocks"]] == [None] * 6


def test_a_failing_example_leaves_shapes_unknown_and_no_hooks():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
    g = extract(model, torch.zeros(2, 5))
    assert [b["shape"] for b in g.structure["blocks"]] == [None, None]
    assert all(not m._forward_hooks for m in model.modules()) and model.training


def test_layer_state_follows_freeze_dropout_and_gradient_norms():
    model = mlp_2_8_8_3()
    x, y = torch.randn(64, 2), torch.randint(0, 3, (64,))
    trainer = Trainer(model, [(x, y)], epochs=2, device="cpu", grad_every=1)
    g = extract(model)
    trainer.freeze("3")
    trainer.set(dropout=0.4)
    trainer.fit()
    st = layer_state(g, trainer.history)
    json.dumps(st, allow_nan=False)
    steps, names, norms = trainer.history.gradient_norms()
    last = dict(zip(names, norms[-1].tolist()))
    assert st["frozen"] == [False, False, True, False]
    assert st["dropout"] == [None, 0.4, None, None]
    assert st["grad_step"] == int(steps[-1])
    assert st["grad_norm"][0] is None and st["grad_norm"][2] is None  # input; frozen layer has no gradient
    assert st["grad_norm"][1] == pytest.approx(last["0"]) and st["grad_norm"][3] == pytest.approx(last["5"])
    trainer.freeze("3", False)
    assert layer_state(g)["frozen"] == [False] * 4 and layer_state(g)["grad_norm"] == [None] * 4


def test_module_names_are_kept_verbatim_for_text_insertion():
    name = "<script>alert(1)</script>"
    g = extract(nn.Sequential(OrderedDict([(name, nn.Linear(2, 3)), ("act", nn.ReLU())])))
    assert g.structure["columns"][1]["name"] == name
    b = extract(nn.Sequential(OrderedDict([(name, nn.Conv2d(1, 1, 1))])))
    assert b.structure["blocks"][0]["name"] == name


@pytest.mark.parametrize("kwargs", [{"max_neurons": 0}, {"max_edges": 0}])
def test_bad_limits_are_refused(kwargs):
    with pytest.raises(ValueError, match="max_neurons and max_edges must be >= 1"):
        extract(nn.Linear(2, 2), **kwargs)
