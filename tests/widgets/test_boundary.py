"""DecisionBoundaryView: grid bounds, PyTorch-oracle predictions, ≤ 1 Hz, thread safety, mode restored."""
from __future__ import annotations

import math
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nnwidgets import Trainer
from nnwidgets.widgets.boundary import DecisionBoundaryView, training_points

REPO = Path(__file__).resolve().parents[2]


def moons(n: int = 200, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(n, generator=g) * math.pi
    half = n // 2
    x = torch.cat([torch.stack([t[:half].cos(), t[:half].sin()], 1),
                   torch.stack([1 - t[half:].cos(), 0.5 - t[half:].sin()], 1)])
    x = x + 0.1 * torch.randn(x.shape, generator=g)
    return x, torch.cat([torch.zeros(half), torch.ones(n - half)]).long()


class ModeSpy(nn.Module):
    """A 2-16-2 MLP that records ``(training, grad_enabled)`` of every forward pass."""

    def __init__(self, n_out: int = 2) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, n_out))
        self.calls: list[tuple[bool, bool]] = []

    def forward(self, x):
        self.calls.append((self.training, torch.is_grad_enabled()))
        return self.net(x)


def make(model: nn.Module | None = None, epochs: int = 3, **kw) -> tuple[Trainer, torch.Tensor, torch.Tensor]:
    x, y = moons()
    loader = DataLoader(TensorDataset(x, y), batch_size=20, shuffle=True, generator=torch.Generator().manual_seed(0))
    return Trainer(model or ModeSpy(), loader, epochs=epochs, lr=0.3, momentum=0.9, device="cpu", **kw), x, y


def oracle(model: nn.Module, view: DecisionBoundaryView) -> np.ndarray:
    was = model.training
    model.eval()
    with torch.no_grad():
        out = model(view.grid_points)
    model.train(was)
    return out.argmax(1).reshape(view.grid, view.grid).numpy()


def test_grid_covers_the_data_and_is_bounded():
    trainer, x, y = make()
    view = DecisionBoundaryView(trainer, x, y, grid=80)
    assert view.heat.color.shape == (80, 80) and view.grid_points.shape == (6400, 2)
    assert view.xs[0] < x[:, 0].min() and view.xs[-1] > x[:, 0].max()
    assert view.ys[0] < x[:, 1].min() and view.ys[-1] > x[:, 1].max()
    np.testing.assert_array_equal(view.grid_points[81].numpy(), [view.xs[1], view.ys[1]])
    for bad, match in [({"grid": 101}, "between 2 and 100"), ({"interval_s": 0.5}, "at most one evaluation")]:
        with pytest.raises(ValueError, match=match):
            DecisionBoundaryView(trainer, x, y, **bad)
    with pytest.raises(ValueError, match=r"2 features, shape \(N, 2\); got \(200, 3\)"):
        DecisionBoundaryView(trainer, torch.randn(200, 3))


def test_predictions_match_pytorch_and_change_after_training():
    trainer, x, y = make(epochs=5)
    model = trainer.model
    view = DecisionBoundaryView(trainer, x, y)
    before = view.predictions.copy()
    np.testing.assert_array_equal(before, oracle(model, view))
    trainer.fit()
    view.refresh(trainer, force=True)
    assert view.evaluated_step == trainer.step
    np.testing.assert_array_equal(view.predictions, oracle(model, view))
    assert (view.predictions != before).any()
    np.testing.assert_array_equal(view.heat.color, view.predictions)
    assert view.status.value.startswith(f"step {trainer.step}: predicted class")


@pytest.mark.parametrize("training", [True, False])
def test_train_eval_mode_is_restored(training):
    trainer, x, y = make()
    trainer.model.train(training)
    DecisionBoundaryView(trainer, x, y)
    assert trainer.model.training is training
    assert trainer.model.calls == [(False, False)]


def test_background_training_never_sees_eval_mode_and_evaluates_at_most_once_a_second():
    trainer, x, y = make(epochs=400)
    model = trainer.model
    view = DecisionBoundaryView(trainer, x, y)
    heat_msgs: list = []
    view.heat._send = lambda msg, buffers=None: heat_msgs.append((msg, list(buffers or [])))
    t0 = time.monotonic()
    trainer.start()
    while time.monotonic() - t0 < 2.6 and trainer.state in ("idle", "running"):
        view.refresh(trainer)        # the panel's updater thread does this
        time.sleep(0.05)
    trainer.stop()
    trainer.wait(30)
    elapsed = time.monotonic() - t0
    view.refresh(trainer, force=True)
    train_calls = [c for c in model.calls if c[1]]
    eval_calls = [c for c in model.calls if not c[1]]
    assert train_calls and all(mode for mode, _ in train_calls), "a training step ran in eval mode"
    assert all(not mode for mode, _ in eval_calls)
    # initial + one per second while running + one per state change (running, stopped)
    assert 2 <= len(eval_calls) <= 1 + math.floor(elapsed) + 1 + 2
    assert 1 <= len(heat_msgs) <= 2 + elapsed
    assert all(sum(len(b) for b in bufs) <= 16_384 for _, bufs in heat_msgs)
    assert heat_msgs[-1][0]["buffer_paths"], "predictions travel as a binary buffer"
    np.testing.assert_array_equal(view.predictions, oracle(model, view))
    assert model.training


def test_binary_single_logit_is_thresholded_at_zero_and_labels_come_from_the_trainer():
    trainer, x, y = make(model=ModeSpy(n_out=1), epochs=1, task="binary")
    view = DecisionBoundaryView(trainer, x)          # as the panel builds it: no y
    np.testing.assert_array_equal(view.points.color, y.numpy().astype(np.float32))
    with torch.no_grad():
        trainer.model.eval()
        expected = (trainer.model(view.grid_points)[:, 0] > 0).reshape(view.grid, view.grid).numpy()
    np.testing.assert_array_equal(view.predictions, expected)
    assert training_points([(x[:5], y[:5]), (x[5:9], y[5:9])], max_points=7)[0].shape == (7, 2)


class FailsOnGrid(ModeSpy):
    def forward(self, x):
        if len(x) == 400:
            raise RuntimeError("no grids here")
        return super().forward(x)


def test_an_evaluation_error_is_shown_and_never_fails_the_run():
    trainer, x, y = make(model=FailsOnGrid(), epochs=2)
    view = DecisionBoundaryView(trainer, x, y, grid=20)
    trainer.fit()
    view.refresh(trainer, force=True)
    assert trainer.state == "completed"
    assert "no grids here" in view.error and view.status.value == view.error
    assert view.predictions is None


def test_close_removes_the_handlers():
    trainer, x, y = make(epochs=1)
    view = DecisionBoundaryView(trainer, x, y)
    evaluated = view._version
    view.close()
    trainer.fit()
    assert view._version == evaluated == 1


@pytest.mark.slow
def test_playground_notebook_runs_top_to_bottom(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(REPO / "demo_notebooks" / "04_playground.ipynb", as_version=4)
    monkeypatch.setenv("NNWIDGETS_WAIT", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    accuracy = float(text.rsplit("training accuracy", 1)[1].split()[0])
    assert "state: completed" in text and accuracy >= 0.95, text[-500:]


def _legend(view):
    """``[(region colour, point colour, name)]`` read back from the legend HTML."""
    import re
    return re.findall(r'background:(#[0-9a-f]{6});border:1px solid #ccc.*?background:(#[0-9a-f]{6});'
                      r'vertical-align:middle"></span></span>([^<]*)</span>', view.legend.value)


def test_class_legend_names_each_class_with_its_region_and_point_colours():
    trainer, x, y = make(ModeSpy(n_out=3))
    view = DecisionBoundaryView(trainer, x, y, class_names=["Adelie", "<b>Gentoo</b>"])
    assert view.widget.children[0] is view.legend
    # colours are those of the scales the heat map and the points are drawn with
    heat, points = view.heat.scales["color"].colors, view.points.scales["color"].colors
    assert _legend(view) == [(heat[0], points[0], "Adelie"), (heat[1], points[1], "&lt;b&gt;Gentoo&lt;/b&gt;"),
                             (heat[2], points[2], "class 2")]  # 3 outputs: 3 classes, escaped names
    assert len(heat) == 3
    plain = DecisionBoundaryView(trainer, x, y)
    assert [n for *_, n in _legend(plain)] == ["class 0", "class 1", "class 2"]


def test_a_view_built_while_running_is_drawn_at_the_end_without_any_refresh():
    """Shown on its own (nobody calls refresh) it stayed blank: all class 0, no step label."""
    trainer, x, y = make(epochs=60)
    trainer.start()
    while trainer.step == 0 and trainer.state in ("idle", "running"):
        time.sleep(0.01)
    view = DecisionBoundaryView(trainer, x, y)                  # built while running: no evaluation here
    assert trainer.wait(60) and trainer.state == "completed" and trainer.step == 600
    assert view.evaluated_step == 600                            # drawn by the run's end, not by a refresh
    np.testing.assert_array_equal(view.heat.color, oracle(trainer.model, view))
    assert len(np.unique(view.heat.color)) == 2
    assert view.status.value == "step 600: predicted class on a 80×80 grid"


def test_a_throttled_refresh_after_the_run_draws_its_last_step():
    """The tab showed step 1586 of a run that ended at 1950: its refresh after the end fell
    inside the 1 s throttle and nothing refreshed it again."""
    trainer, x, y = make(epochs=3)
    view = DecisionBoundaryView(trainer, x, y)
    assert view.evaluated_step == 0
    trainer.fit()                                                # the run's end evaluates (step 30)
    with view._lock:
        view._result = (view._result[0] + 1, view._result[1], 30, view._result[3])
    view._last_draw = time.monotonic()                           # a draw just now: inside the throttle
    view.refresh(trainer)                                        # not running: drawn anyway
    assert view.evaluated_step == 30 and view.status.value.startswith("step 30: ")


def test_displaying_the_view_draws_the_current_model():
    trainer, x, y = make(epochs=1)
    view = DecisionBoundaryView(trainer, x, y)
    before = view.heat.color.copy()
    trainer.reinitialize(seed=3)                                 # new weights, no run: nothing evaluated them
    assert view._repr_mimebundle_()
    np.testing.assert_array_equal(view.heat.color, oracle(trainer.model, view))
    assert (view.heat.color != before).any()


def test_the_panel_forces_throttled_views_once_the_run_is_not_running():
    from nnwidgets.widgets.panel import TrainingPanel

    class Throttled:
        def __init__(self):
            import ipywidgets
            self.widget, self.calls = ipywidgets.Label(), []

        def refresh(self, trainer, force=False):
            self.calls.append((trainer.state, force))

    trainer, x, y = make(epochs=1)
    p = TrainingPanel(trainer)
    try:
        view = Throttled()
        p.add_tab("T", view)
        p.tab.selected_index = len(p.views) - 1
        trainer.fit()
        view.calls.clear()
        p.refresh()
        assert view.calls == [("completed", True)]
    finally:
        p.close()
