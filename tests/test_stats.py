"""Tests for nnwidgets.stats, with PyTorch itself as the oracle."""
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from nnwidgets.stats import (GradientProbe, _count_slots, activation_after, flag_vanishing, format_summary,
                             gradient_stats, summary)


def backward(model, x, y):
    model.zero_grad(set_to_none=True)
    nn.CrossEntropyLoss()(model(x), y).backward()


def mlp(sizes, act=nn.ReLU):
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), act()]
    return nn.Sequential(*layers[:-1])


def oracle_hist(g, bins=40, lo=-12.0, hi=2.0):
    """Per-tensor-set oracle: log10|g| of non-zero finite elements, clamped into [lo, hi]."""
    a = torch.cat([t.reshape(-1) for t in g]).double().abs()
    a = a[(a > 0) & ~a.isnan()]
    return torch.histc(a.log10().clamp(lo, hi), bins=bins, min=lo, max=hi).numpy()


# ---------------------------------------------------------------- summary
def test_summary_two_linears_totals_46_and_rows():
    df = summary(nn.Sequential(nn.Linear(8, 4), nn.Linear(4, 2)))
    assert list(df.columns) == ["name", "type", "shape", "params", "trainable", "frozen"]
    assert df["name"].tolist() == ["0", "1"]
    assert df["shape"].tolist() == ["(4, 8)", "(2, 4)"]
    assert df["params"].tolist() == [36, 10]
    assert df.attrs["total_params"] == 46 and df.attrs["trainable_params"] == 46
    assert df.attrs["non_trainable_params"] == 0 and df.attrs["has_uninitialized"] is False


def test_summary_nested_names_param_free_leaves_and_frozen():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Sequential()
            self.encoder.add_module("fc1", nn.Linear(3, 5))
            self.encoder.add_module("act", nn.ReLU())
            self.drop = nn.Dropout(0.1)
            self.head = nn.Linear(5, 2, bias=False)

    net = Net()
    net.encoder.fc1.requires_grad_(False)
    df = summary(net).set_index("name")
    assert df.index.tolist() == ["encoder.fc1", "encoder.act", "drop", "head"]
    assert df.loc["encoder.act", "params"] == 0 and df.loc["encoder.act", "shape"] == ""
    assert bool(df.loc["encoder.fc1", "frozen"]) and df.loc["encoder.fc1", "trainable"] == 0
    assert not df.loc["encoder.act", "frozen"] and not df.loc["head", "frozen"]
    assert df.attrs["non_trainable_params"] == 20 and df.attrs["trainable_params"] == 10
    assert df.attrs["total_params"] == sum(p.numel() for p in net.parameters())


def test_summary_counts_tied_weights_once():
    emb, head = nn.Embedding(10, 4), nn.Linear(4, 10, bias=False)
    head.weight = emb.weight
    model = nn.Sequential(emb, nn.Linear(4, 4), head)
    df = summary(model)
    assert df["params"].tolist() == [40, 20, 0]
    assert df.attrs["total_params"] == sum(p.numel() for p in model.parameters()) == 60


def test_summary_lazy_without_and_with_input_size():
    model = nn.Sequential(nn.LazyLinear(4), nn.ReLU(), nn.Linear(4, 2))
    df = summary(model)
    assert df.loc[0, "shape"] == "uninitialized" and df.loc[0, "params"] == 0
    assert df.attrs["has_uninitialized"] is True and df.attrs["total_params"] == 10
    model.train()
    df = summary(model, input_size=(2, 7))
    assert df.loc[0, "shape"] == "(4, 7)" and df.attrs["total_params"] == 32 + 10
    assert df.attrs["has_uninitialized"] is False and model.training
    model.eval()
    summary(model, input_size=(2, 7))
    assert not model.training


def test_summary_bad_input_size_raises_and_restores_mode():
    model = nn.Sequential(nn.Linear(8, 4), nn.Dropout())
    with pytest.raises(ValueError, match=r"forward pass with torch.zeros\(\(2, 3\)\) failed"):
        summary(model, input_size=(2, 3))
    assert model.training


def test_format_summary_golden():
    model = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 300))
    model[0].requires_grad_(False)
    expected = "\n".join([
        "Layer  Type    Shape     Params  Trainable  Frozen",
        "--------------------------------------------------",
        "0      Linear  (4, 8)        36          0  yes",
        "1      ReLU                   0          0",
        "2      Linear  (300, 4)   1,500      1,500",
        "--------------------------------------------------",
        "Total params: 1,536",
        "Trainable params: 1,500",
        "Non-trainable params: 36",
    ])
    assert format_summary(summary(model)) == expected


# ---------------------------------------------------------------- gradient_stats
def test_gradient_stats_case_c21_frozen_and_values():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 3))
    model[0].requires_grad_(False)
    backward(model, torch.randn(4, 8), torch.tensor([0, 1, 2, 0]))
    df = gradient_stats(model).set_index("name")
    assert df["status"].tolist() == ["frozen", "frozen", "ok", "ok"]
    assert df.index[df["has_grad"]].tolist() == ["2.weight", "2.bias"]
    assert df.loc["2.weight", "layer"] == "2" and df.loc["2.weight", "shape"] == "(3, 4)"
    g = model[2].weight.grad
    assert df.loc["2.weight", "norm"] == pytest.approx(g.norm().item(), rel=1e-6)
    assert df.loc["2.weight", "mean_abs"] == pytest.approx(g.abs().mean().item(), rel=1e-6)
    assert df.loc["2.weight", "max_abs"] == pytest.approx(g.abs().max().item(), rel=1e-6)
    assert math.isnan(df.loc["0.weight", "norm"])


def test_gradient_stats_before_backward_is_no_gradient():
    df = gradient_stats(nn.Linear(3, 2))
    assert df["status"].tolist() == ["no gradient", "no gradient"]
    assert df["norm"].isna().all() and not df["has_grad"].any()


# ---------------------------------------------------------------- GradientProbe
def test_probe_norms_and_histograms_match_pytorch():
    torch.manual_seed(1)
    model = mlp((20, 32, 16, 5))
    backward(model, torch.randn(64, 20), torch.randint(0, 5, (64,)))
    model[0].weight.grad[:3] = 0.0  # exact zeros are excluded from the histogram
    probe = GradientProbe(model, bins=40, log10_range=(-12.0, 2.0))
    assert probe.layer_names == ["0", "2", "4"] and probe.layer_kinds == ["Linear"] * 3
    s = probe.to_host(probe.compute())
    assert s.norms.dtype == np.float32 and s.norms.shape == (3,)
    assert s.hist.dtype == np.float32 and s.hist.shape == (3, 40)
    assert s.edges.dtype == np.float64 and np.allclose(s.edges, np.linspace(-12, 2, 41))
    for k, i in enumerate([0, 2, 4]):
        grads = [model[i].weight.grad, model[i].bias.grad]
        ref = torch.sqrt(sum(g.norm() ** 2 for g in grads)).item()
        assert s.norms[k] == pytest.approx(ref, rel=1e-5)
        nonzero = sum(int((g != 0).sum()) for g in grads)
        assert s.hist[k].sum() == nonzero
        np.testing.assert_array_equal(s.hist[k], oracle_hist(grads))
    assert s.hist[0].sum() == 32 * 20 + 32 - 3 * 20


def test_probe_out_of_range_clamped_and_nan_ignored():
    layer = nn.Linear(2, 2)
    layer.weight.grad = torch.tensor([[1e-30, 1e5], [float("nan"), float("inf")]])
    layer.bias.grad = torch.tensor([0.0, 1e-3])
    probe = GradientProbe(layer, bins=14, log10_range=(-12.0, 2.0))
    s = probe.to_host(probe.compute())
    assert probe.layer_names == [""]
    expected = np.zeros(14, dtype=np.float32)
    expected[0], expected[-1], expected[9] = 1, 2, 1  # 1e-30 | 1e5, inf | 1e-3 in [-3, -2)
    np.testing.assert_array_equal(s.hist[0], expected)


def test_probe_missing_grads_frozen_layers_and_refresh():
    torch.manual_seed(2)
    model = mlp((6, 5, 4, 3))
    model[2].requires_grad_(False)
    probe = GradientProbe(model, bins=8)
    assert probe.layer_names == ["0", "4"]
    s = probe.to_host(probe.compute())  # before any backward: no gradients at all
    assert np.isnan(s.norms).all() and s.hist.sum() == 0
    model[2].requires_grad_(True)
    backward(model, torch.randn(8, 6), torch.randint(0, 3, (8,)))
    model[4].requires_grad_(False)  # stale gradient of a now-frozen layer is skipped
    s = probe.to_host(probe.compute())
    assert s.norms[0] == pytest.approx(torch.cat([model[0].weight.grad.flatten(),
                                                  model[0].bias.grad]).norm().item(), rel=1e-5)
    assert np.isnan(s.norms[1]) and s.hist[1].sum() == 0
    probe.refresh()
    assert probe.layer_names == ["0", "2"]
    s = probe.to_host(probe.compute())
    assert s.norms[1] == pytest.approx(torch.cat([model[2].weight.grad.flatten(),
                                                  model[2].bias.grad]).norm().item(), rel=1e-5)


def test_probe_float64_sparse_and_tied_parameters():
    emb = nn.Embedding(10, 4, sparse=True).double()
    head = nn.Linear(4, 10, bias=False).double()
    head.weight = emb.weight
    model = nn.Sequential(emb, nn.Linear(4, 4).double())
    model.add_module("head", head)
    probe = GradientProbe(model)
    assert probe.layer_names == ["0", "1"]  # tied weight belongs to its first owner
    model(torch.tensor([[1, 2]])).sum().backward()
    s = probe.to_host(probe.compute())
    assert s.norms[1] == pytest.approx(torch.cat([model[1].weight.grad.flatten(),
                                                  model[1].bias.grad]).norm().item(), rel=1e-5)
    assert np.isfinite(s.norms[0]) and s.hist[0].sum() > 0


def test_probe_leaves_grads_alone_and_matches_without_foreach(monkeypatch):
    torch.manual_seed(3)
    model = mlp((10, 8, 4))
    backward(model, torch.randn(16, 10), torch.randint(0, 4, (16,)))
    before = [p.grad.clone() for p in model.parameters()]
    probe = GradientProbe(model, bins=20)
    fast = probe.to_host(probe.compute())
    assert all(torch.equal(b, p.grad) for b, p in zip(before, model.parameters()))
    monkeypatch.delattr(torch, "_foreach_norm")
    monkeypatch.delattr(torch, "_foreach_add_")
    slow = probe.to_host(probe.compute())
    np.testing.assert_allclose(slow.norms, fast.norms, rtol=1e-6)
    np.testing.assert_array_equal(slow.hist, fast.hist)


def test_probe_default_dtype_float64_and_model_without_parameters():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        model = mlp((5, 4, 3))
        model[2].weight.grad = torch.ones(3, 4)  # first layer has no gradient: NaN via index_copy_
        probe = GradientProbe(model, bins=4, log10_range=(-2.0, 2.0))
        s = probe.to_host(probe.compute())
        assert s.norms.dtype == np.float32 and np.isnan(s.norms[0])
        assert s.norms[1] == pytest.approx(math.sqrt(12)) and s.hist[1].tolist() == [0, 0, 12, 0]
    finally:
        torch.set_default_dtype(old)
    empty = GradientProbe(nn.ReLU())
    s = empty.to_host(empty.compute())
    assert empty.layer_names == [] and s.norms.shape == (0,) and s.hist.shape == (0, 40)


def test_count_slots_histc_branch_equals_bincount_branch():
    torch.manual_seed(4)
    u = torch.cat([-torch.rand(1000) * 5, torch.tensor([-0.0, 0.0, -4.0]), torch.rand(300) * 5.9])
    sizes, offsets, n = [1003, 300], [5, 6], 12  # trunc(u) + offset in [1, 11]
    hist = _count_slots(u.clone(), sizes, offsets, n, use_histc=True)
    binc = _count_slots(u.clone(), sizes, offsets, n, use_histc=False)
    assert hist.dtype == binc.dtype == torch.float32
    torch.testing.assert_close(hist, binc, rtol=0, atol=0)
    expected = torch.bincount(torch.cat([u[:1003].trunc() + 5, u[1003:].trunc() + 6]).long(),
                              minlength=n).float()
    torch.testing.assert_close(binc, expected, rtol=0, atol=0)
    assert binc[5] == 2 + int(((u[:1000] > -1)).sum())  # -0.0 and 0.0 truncate to slot 0 + 5


def test_probe_rejects_bad_bins_and_range():
    with pytest.raises(ValueError, match="bins >= 1"):
        GradientProbe(nn.Linear(2, 2), bins=0)
    with pytest.raises(ValueError, match="low < high"):
        GradientProbe(nn.Linear(2, 2), log10_range=(1.0, 1.0))
    with pytest.raises(ValueError, match="-37 <= low"):
        GradientProbe(nn.Linear(2, 2), log10_range=(-45.0, 0.0))


# ---------------------------------------------------------------- vanishing gradients (case C13)
def c13_model(act):
    torch.manual_seed(0)
    layers = []
    for _ in range(10):
        layers += [nn.Linear(16, 16), act()]
    model = nn.Sequential(*layers, nn.Linear(16, 3))
    x, y = torch.randn(64, 16), torch.randint(0, 3, (64,))
    nn.CrossEntropyLoss()(model(x), y).backward()
    return model


def test_flag_vanishing_case_c13_sigmoid_flagged_relu_not():
    sig = c13_model(nn.Sigmoid)
    probe = GradientProbe(sig)
    s = probe.to_host(probe.compute())
    assert s.norms[0] / s.norms[-1] < 1e-6
    msgs = flag_vanishing(s.norms, probe.layer_names, activation_after(sig))
    assert msgs and "'0'" in msgs[0] and "Sigmoid" in msgs[0] and "'20'" in msgs[0]
    relu = c13_model(nn.ReLU)
    probe = GradientProbe(relu)
    s = probe.to_host(probe.compute())
    assert flag_vanishing(s.norms, probe.layer_names, activation_after(relu)) == []


def test_flag_vanishing_sequence_activations_nan_and_errors():
    names = ["a", "b", "c"]
    msgs = flag_vanishing([1e-9, float("nan"), 1.0], names, ["Tanh", "", ""])
    assert len(msgs) == 1 and "layer 'a' (followed by Tanh)" in msgs[0]
    assert flag_vanishing([1e-9, 1.0, float("nan")], names, ["", "", ""]) == []
    with pytest.raises(ValueError, match="2 norms for 3 layers"):
        flag_vanishing([1.0, 2.0], names, {})


def test_activation_after_skips_dropout_and_norm_layers():
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 4),
                          nn.Dropout(), nn.Sigmoid(), nn.Linear(4, 4), nn.Linear(4, 2))
    assert activation_after(model) == {"0": "ReLU", "1": "ReLU", "3": "Sigmoid", "6": "", "7": ""}


def test_stats_imports_no_ui():
    code = ("import sys, nnwidgets.stats; bad = [m for m in ('ipywidgets', 'IPython', 'bqplot', "
            "'anywidget') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_summary_shows_its_totals_and_stays_one_row_per_layer():
    df = summary(nn.Sequential(nn.Linear(8, 4), nn.Linear(4, 2)))
    assert isinstance(df, pd.DataFrame) and len(df) == 2 and df["params"].sum() == 46  # no totals row to double
    assert repr(df).splitlines()[-1] == "total params: 46 · trainable: 46 · non-trainable: 0"
    assert str(df).endswith("total params: 46 · trainable: 46 · non-trainable: 0")
    assert df._repr_html_().endswith("<p><b>total params: 46 · trainable: 46 · non-trainable: 0</b></p>")
    derived = df[df["frozen"]]
    assert type(derived) is pd.DataFrame and "total params" not in repr(derived)  # its totals would differ
    lazy = summary(nn.Sequential(nn.LazyLinear(3)))
    assert repr(lazy).endswith("total params: 0 · trainable: 0 · non-trainable: 0 (lazy parameters not counted)")
