"""GradientView: norms per layer, log10|g| heat map and vanishing-gradient flags (case C13)."""
from collections import OrderedDict
from types import SimpleNamespace

import numpy as np
import pytest
from torch import nn

from nnwidgets import Trainer
from nnwidgets.history import History
from nnwidgets.widgets.gradients import GradientView

from _engine_util import c13_stack



def c13_trainer(act, epochs=2):
    """Case C13: 10 x (Linear(16, 16) + act) + Linear(16, 3), one batch of 64."""
    model, x, y = c13_stack(act)
    t = Trainer(model, [(x, y)], epochs=epochs, grad_every=1, seed=0, device="cpu")
    t.fit()
    return t


@pytest.fixture(scope="module")
def sigmoid_run():
    t = c13_trainer(nn.Sigmoid)
    view = GradientView()
    view.refresh(t)
    return t, view


def test_c13_sigmoid_first_layers_flagged(sigmoid_run):
    t, view = sigmoid_run
    _, layers, norms = t.history.gradient_norms()
    assert norms[-1, 0] / norms[-1, -1] < 1e-6  # the case's symptom, as recorded
    assert view.flagged and "layer '0' (followed by Sigmoid)" in view.flagged[0]
    assert "Sigmoid" in view.flags.value and "Vanishing gradients in" in view.flags.value
    assert "&#x27;0&#x27;" in view.flags.value   # quotes escaped: text, never HTML
    flagged_layers = [m.split("'")[1] for m in view.flagged]
    assert flagged_layers[0] == "0" and "20" not in flagged_layers


def test_c13_relu_not_flagged():
    view = GradientView()
    view.refresh(c13_trainer(nn.ReLU))
    assert view.flagged == []
    assert view.flags.value.startswith("No vanishing gradients")


def test_norm_lines_equal_history(sigmoid_run):
    t, view = sigmoid_run
    steps, layers, norms = t.history.gradient_norms()
    assert len(layers) == 11 and len(steps) == 2
    # PyTorch oracle for the layer list: every Linear, in model order
    assert layers == [name for name, m in t.model.named_modules() if isinstance(m, nn.Linear)]
    assert view.lines.labels == [f"{n} (Linear)" for n in layers]
    np.testing.assert_array_equal(view.lines.x, steps.astype(np.float32))
    np.testing.assert_array_equal(view.lines.y, norms.T)
    assert type(view.lines.scales["y"]).__name__ == "LogScale"


def test_heatmap_is_share_of_elements_per_bin(sigmoid_run):
    t, view = sigmoid_run
    names, edges, counts, step = t.history.last_histogram()
    np.testing.assert_allclose(view.heatmap.color, counts / counts.sum(1, keepdims=True), rtol=1e-6)
    np.testing.assert_allclose(view.heatmap.column, edges, rtol=1e-6)
    assert list(view.heatmap.row) == [f"{n} (Linear)" for n in names]
    # the vanishing first layer's mass sits far left of the last layer's
    centres = (edges[:-1] + edges[1:]) / 2
    mean_log = (view.heatmap.color * centres).sum(1)
    assert mean_log[0] < mean_log[-1] - 3
    assert f"step {step}" in view.hist_figure.title


def test_frozen_layer_named_and_gap():
    t = c13_trainer(nn.ReLU, epochs=1)
    t.freeze("0")
    t.fit(epochs=1)
    view = GradientView()
    view.refresh(t)
    assert view.lines.labels[0] == "0 (Linear) frozen"
    assert np.isnan(view.lines.y[0, -1]) and np.isfinite(view.lines.y[1:, -1]).all()
    assert "Frozen (no gradient): 0 (Linear)" in view.flags.value


def test_user_strings_escaped_and_refresh_skips_when_unchanged(monkeypatch):
    model = nn.Sequential(OrderedDict([("<b>x</b>", nn.Linear(2, 2)), ("act", nn.Sigmoid()),
                                       ("out", nn.Linear(2, 1))]))
    h = History()
    h.append_gradients(5, ["<b>x</b>", "out"], np.float32([1e-9, 0.0]))
    h.append_gradients(9, ["<b>x</b>", "out"], np.float32([np.nan, 1.0]))
    h.append_gradients(12, ["<b>x</b>", "out"], np.float32([1e-9, 1.0]))
    view = GradientView()
    trainer = SimpleNamespace(history=h, model=model)
    view.refresh(trainer)
    assert "<b>x</b>" not in view.flags.value and "&lt;b&gt;x&lt;/b&gt;" in view.flags.value
    assert "Sigmoid" in view.flags.value
    np.testing.assert_array_equal(view.lines.x, [5, 9, 12])
    np.testing.assert_array_equal(view.lines.y, np.float32([[1e-9, np.nan, 1e-9], [np.nan, 1.0, 1.0]]))
    sent = []
    import ipywidgets
    monkeypatch.setattr(ipywidgets.Widget, "_send", lambda self, msg, buffers=None: sent.append(msg))
    view.refresh(trainer)
    assert sent == []


def test_many_samples_are_thinned():
    h = History()
    layers = [f"l{i}" for i in range(6)]
    for s in range(5000):
        h.append_gradients(s, layers, np.full(6, 0.5, np.float32))
    view = GradientView(max_values=3000, max_bytes=10**6)
    view.refresh(SimpleNamespace(history=h, model=nn.Sequential()))
    assert view.lines.y.shape == (6, 500) and view.lines.x[-1] == 4999  # max_values // layers
    assert view.heatmap.color is None
    small = GradientView(max_bytes=4000)  # the byte budget: (6 lines + x) x k float32 <= 4000 B - labels
    small.refresh(SimpleNamespace(history=h, model=nn.Sequential()))
    k = small.lines.y.shape[1]
    assert 100 <= k and 7 * k * 4 <= 4000 and small.lines.x[-1] == 4999


def test_one_sample_of_many_layers_stays_one_point_per_layer():
    """bqplot squeezes a (layers, 1) y to (layers,) - one line through every layer's norm - so
    the first sample is sent twice."""
    h = History()
    h.append_gradients(1, ["a", "b", "c"], np.float32([0.1, 0.2, 0.3]))
    view = GradientView()
    view.refresh(SimpleNamespace(history=h, model=nn.Sequential()))
    np.testing.assert_array_equal(view.lines.x, [1, 1])
    np.testing.assert_array_equal(view.lines.y, np.float32([[0.1, 0.1], [0.2, 0.2], [0.3, 0.3]]))


def test_norm_chart_reaches_the_newest_sample_and_colour_bar_is_readable(sigmoid_run):
    t, view = sigmoid_run
    newest = int(t.history.gradient_norms()[0][-1])
    assert view.norm_figure.title == f"Gradient norm per layer (step {newest})"
    assert (view.x_scale.min, view.x_scale.max) == (0.0, newest)
    # no bqplot ColorAxis (its colour bar threw in rescale_axis in JupyterLab and blanked the heat
    # map); the key is HTML above the plot, with the scale's colours from 0 % to 100 %
    assert [type(a).__name__ for a in view.hist_figure.axes] == ["Axis", "Axis"]
    assert view.widget.children.index(view.color_key) == view.widget.children.index(view.hist_figure) - 1
    assert "0 %" in view.color_key.value and "100 %" in view.color_key.value
    assert all(c in view.color_key.value for c in view.heatmap.scales["color"].colors)
    assert (view.heatmap.scales["color"].min, view.heatmap.scales["color"].max) == (0.0, 1.0)


def test_hover_names_the_layer_and_the_heat_map_cell():
    view = GradientView()
    assert list(view.lines.tooltip.fields) == ["name"] and list(view.lines.tooltip.labels) == ["layer"]
    tip = view.heatmap.tooltip
    assert list(tip.fields) == ["row", "column", "color"] and list(tip.labels) == ["layer", "log10|g| from", "share"]
    assert list(tip.formats) == ["", ".2f", ".1%"]


def test_the_panels_gradients_tab_names_the_runs_last_sample_once_it_ends():
    """After the run, the title "Gradient norm per layer (step N)" read an older sample's step."""
    import time

    from nnwidgets.widgets.panel import TrainingPanel
    model, x, y = c13_stack(nn.ReLU)
    t = Trainer(model, [(x, y)] * 7, epochs=30, grad_every=3, seed=0, device="cpu")
    p = TrainingPanel(t)
    try:
        titles = [title for title, _ in p.views]
        p.tab.selected_index = titles.index("Gradients")
        view = p.views[p.tab.selected_index][1]
        t.start()
        assert t.wait(60) and t.state == "completed" and t.step == 210
        steps, _, _ = t.history.gradient_norms()
        deadline = time.monotonic() + 5
        while view.norm_figure.title != f"Gradient norm per layer (step {int(steps[-1])})" and time.monotonic() < deadline:
            time.sleep(0.05)                                     # the panel's updater thread refreshes it
        assert int(steps[-1]) == 210                             # the run's last step is sampled too
        assert view.norm_figure.title == "Gradient norm per layer (step 210)"
        assert view.x_scale.max == 210.0
    finally:
        p.close()
