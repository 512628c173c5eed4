"""The View protocol (widgets/view.py): every built-in view conforms, add_tab checks a user's view."""
import threading
import time

import ipywidgets
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nnwidgets import Trainer
from nnwidgets.widgets._cursor import Mark
from nnwidgets.widgets.boundary import DecisionBoundaryView
from nnwidgets.widgets.charts import LossChart, MetricChart, TrainingCharts
from nnwidgets.widgets.controls import ControlsView
from nnwidgets.widgets.gradients import GradientView
from nnwidgets.widgets.network import NetworkView
from nnwidgets.widgets.panel import TrainingPanel
from nnwidgets.widgets.parameters import ParametersView
from nnwidgets.widgets.status import StatusView
from nnwidgets.widgets.view import View, ViewInfo, check_view

from _engine_util import wait_for


def trainer(features=2):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, features, generator=g)
    y = (x[:, 0] > 0).long()
    return Trainer(nn.Sequential(nn.Linear(features, 8), nn.ReLU(), nn.Linear(8, 2)),
                   DataLoader(TensorDataset(x, y), batch_size=32), epochs=1000, device="cpu")


@pytest.fixture
def panels():
    made = []
    yield made
    for p in made:
        p.trainer.stop()
        p.close()
        p.trainer.wait(5)


def test_every_built_in_view_conforms_and_takes_the_mark():
    t = trainer()
    x = t.train_data.dataset.tensors[0]
    views = [TrainingCharts(), LossChart(), MetricChart(), GradientView(), StatusView(t), ControlsView(t),
             ParametersView(t), NetworkView(t), DecisionBoundaryView(t, x)]
    try:
        for view in views:
            assert isinstance(view, View), type(view).__name__
            info = check_view(view)
            assert info.takes_mark and not info.refresh_hidden, type(view).__name__
            assert isinstance(view.title, str) and view.title
            view.refresh(t, mark=Mark.of(t.history))   # the panel's call
            view.refresh(t)                            # by hand
        assert check_view(views[7]).takes_force and check_view(views[8]).takes_force   # network, boundary
        assert not check_view(views[0]).takes_force
    finally:
        views[8].close()


class OldStyle:
    """A user's view as written before the protocol: refresh(trainer) only."""

    def __init__(self):
        self.widget, self.calls = ipywidgets.Label(), []

    def refresh(self, trainer):
        self.calls.append(trainer.step)


def test_a_user_view_without_mark_is_still_called_with_the_trainer(panels):
    t = trainer()
    p = TrainingPanel(t, charts=False, gradients=False, parameters=False)
    panels.append(p)
    view = OldStyle()
    assert check_view(view) == ViewInfo(takes_mark=False, takes_force=False, refresh_hidden=False)
    p.add_tab("old", view)
    p.tab.selected_index = len(p.views) - 1
    p.refresh()
    assert view.calls and view.calls[-1] == t.step


@pytest.mark.parametrize("view, message", [
    (object(), r"a view needs widget and refresh: object has no \.widget and no \.refresh"),
    (type("NoRefresh", (), {"widget": ipywidgets.Label()})(), r"a view needs refresh: NoRefresh has no \.refresh"),
    (type("NoWidget", (), {"refresh": lambda self, t: None})(), r"a view needs widget: NoWidget has no \.widget"),
    (type("NotAWidget", (), {"widget": "hello", "refresh": lambda self, t: None})(),
     r"\.widget must be an ipywidgets widget: NotAWidget\.widget is str"),
    (type("NotCallable", (), {"widget": ipywidgets.Label(), "refresh": 3})(),
     r"\.refresh must be callable as refresh\(trainer\): NotCallable\.refresh is int"),
    (type("NoArgs", (), {"widget": ipywidgets.Label(), "refresh": lambda self: None})(),
     r"refresh must be callable as refresh\(trainer\): NoArgs\.refresh\(\) cannot take one argument"),
    (type("TwoArgs", (), {"widget": ipywidgets.Label(), "refresh": lambda self, t, u: None})(),
     r"TwoArgs\.refresh\(t, u\) cannot take one argument"),
])
def test_add_tab_refuses_what_is_not_a_view_and_names_what_is_missing(panels, view, message):
    p = TrainingPanel(trainer(), charts=False, gradients=False, parameters=False)
    panels.append(p)
    n = len(p.views)
    with pytest.raises(TypeError, match=message):
        p.add_tab("bad", view)
    assert len(p.views) == n and len(p.tab.children) == n     # nothing was added


class Hidden:
    refresh_hidden = True

    def __init__(self):
        self.widget, self.marks = ipywidgets.Label(), []

    def refresh(self, trainer, *, mark=None):
        self.marks.append(mark)


def test_refresh_hidden_views_get_the_same_mark_as_the_tab_shown(panels):
    t = trainer()
    p = TrainingPanel(t, charts=False, gradients=False, parameters=False)
    panels.append(p)
    hidden, shown = Hidden(), Hidden()
    shown.refresh_hidden = False
    p.add_tab("hidden", hidden)
    p.add_tab("shown", shown)
    p.tab.selected_index = len(p.views) - 1
    hidden.marks.clear(), shown.marks.clear()
    p.refresh()
    assert len(hidden.marks) == len(shown.marks) == 1
    assert isinstance(shown.marks[0], Mark) and hidden.marks[0] is shown.marks[0]   # one mark per refresh
    assert shown.marks[0].history is t.history
    p.tab.selected_index = 0
    p.refresh()
    assert len(hidden.marks) == 2 and len(shown.marks) == 1   # a hidden tab without the flag is left alone


def test_the_mark_is_taken_on_the_updater_thread(panels, monkeypatch):
    t = trainer()
    p = TrainingPanel(t)   # every tab
    panels.append(p)
    threads = []
    real = Mark.of.__func__

    def spy(cls, history):
        threads.append(threading.current_thread().name)
        return real(cls, history)
    monkeypatch.setattr(Mark, "of", classmethod(spy))
    t.start()
    assert wait_for(lambda: t.step > 20, 10)
    time.sleep(0.5)
    t.stop()
    assert t.wait(5)
    assert threads and set(threads) == {"nnwidgets-panel-updater"}
