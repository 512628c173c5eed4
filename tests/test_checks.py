"""The one form of a check (nnwidgets.checks): a periodic check reports through history.events,
the NOTICE event and, in fit(), a CheckWarning; the vanishing-gradient check is one of them."""
from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import nnwidgets as nw
from nnwidgets.checks import check_classes
from nnwidgets.checks.base import Check, CheckWarning, Finding, When
from nnwidgets.checks.vanishing import VanishingGradients

CPU = dict(device="cpu")


def _data(n=16, width=8, classes=3):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n * 16, width, generator=g), torch.randint(0, classes, (n * 16,), generator=g)
    return [(x[i:i + 16], y[i:i + 16]) for i in range(0, n * 16, 16)]


def _deep(act, depth=10):
    torch.manual_seed(0)
    layers = []
    for _ in range(depth):
        layers += [nn.Linear(8, 8), act()]
    return nn.Sequential(*layers, nn.Linear(8, 3))


def test_finding_message_has_found_expected_and_fix():
    f = Finding("x", "loss is 12.", expected="below 10", fix="lower the learning rate")
    assert f.message == "loss is 12. Expected: below 10. Fix: lower the learning rate."


def test_vanishing_gradients_in_a_sigmoid_net_warn_fit_users_once_and_are_recorded():
    t = nw.Trainer(_deep(nn.Sigmoid), _data(), epochs=3, lr=0.1, grad_every=1, **CPU)
    notices = []
    t.on("notice", lambda trainer, **ev: notices.append(ev["name"]))
    with pytest.warns(CheckWarning, match=r"Vanishing gradients at step \d+ in \d+ layer\(s\): layer '0' "
                                          r"\(followed by Sigmoid\).*Expected: .*Fix: use ReLU"):
        t.fit()
    ev = t.history.events
    assert list(ev.name).count("vanishing_gradients") == 1 and notices.count("vanishing_gradients") == 1


def test_a_relu_net_gets_no_vanishing_report():
    t = nw.Trainer(_deep(nn.ReLU, depth=3), _data(), epochs=3, lr=0.1, grad_every=1, **CPU)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CheckWarning)
        t.fit()
    assert "vanishing_gradients" not in set(t.history.events.name)
    assert [str(w.message).split(" (")[0] for w in caught] == ["Treating this run as multiclass"]  # the first batch's


def test_background_runs_record_without_warning():
    t = nw.Trainer(_deep(nn.Sigmoid), _data(), epochs=2, lr=0.1, grad_every=1, **CPU)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CheckWarning)
        t.start().wait()
    assert "vanishing_gradients" in set(t.history.events.name)


def test_every_check_class_declares_code_and_when():
    classes = check_classes()
    assert VanishingGradients in classes
    for cls in classes:
        assert cls.code and cls.when in (When.PERIODIC, When.EPOCH_END), cls


def test_a_new_check_is_a_subclass_that_runs_at_its_declared_time():
    class LossAbove(Check):
        code, when = "loss_above", When.EPOCH_END

        def run(self, trainer, *, metrics, **info):
            if metrics["loss"] > 0:
                return Finding(self.code, f"loss {metrics['loss']:.3g}", "0", "none")

    t = nw.Trainer(_deep(nn.ReLU), _data(n=2), epochs=3, lr=0.1, **CPU)
    LossAbove().attach(t)
    with pytest.warns(CheckWarning, match="loss .* Expected: 0. Fix: none."):
        t.fit()
    assert list(t.history.events.name).count("loss_above") == 1  # once per Trainer


def test_a_check_warning_names_the_users_line_not_ipythons():
    """A report reached through IPython's frames (``%train`` is called by ``run_line_magic`` in
    IPython's ``interactiveshell.py``) warns at the user's cell line, past IPython's frames."""
    import os
    import types

    import IPython

    from nnwidgets.checks.base import report
    ipython_file = os.path.join(os.path.dirname(os.path.abspath(IPython.__file__)), "core", "interactiveshell.py")
    trainer = types.SimpleNamespace(_record=lambda *a, **k: None,
                                    _control=types.SimpleNamespace(active=True, background=False))
    scope = {"report": report, "trainer": trainer}
    # IPython's frames: run_line_magic -> a <decorator-gen-N> wrapper -> nnwidgets (here: report)
    exec(compile("def run_line_magic():\n    decorated()\n", ipython_file, "exec"), scope)
    exec(compile("def decorated():\n    report(trainer, 'vanishing', 'vanishing_gradients')\n",
                 "<decorator-gen-123>", "exec"), scope)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CheckWarning)
        exec(compile("x = 1\nrun_line_magic()\n", "<ipython-input-7-abc>", "exec"), scope)   # the cell, line 2
    assert [(w.filename, w.lineno, str(w.message)) for w in caught] == [("<ipython-input-7-abc>", 2, "vanishing")]
