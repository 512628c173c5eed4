"""``nw.check()`` / ``%nnwidgets check`` and Colab's widget manager. Missing packages are
simulated by monkeypatching the import lookup (``importlib.util.find_spec``) and the
metadata lookup (``importlib.metadata.version``)."""
from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
import types

import pytest
import torch
from IPython.core.error import UsageError
from IPython.testing import globalipapp
from torch import nn

import nnwidgets as nw
from nnwidgets import _check, _frontend
from nnwidgets._check import FrontEndCheck, check, detect_front_end


class _Kernel:
    def get_parent(self):
        return {}


class _KernelShell:
    kernel = _Kernel()


class _TerminalShell:
    kernel = None


@pytest.fixture
def clean_env(monkeypatch):
    for k in ("VSCODE_PID", "JPY_SESSION_NAME", "JPY_PARENT_PID", "SERVER_SOFTWARE", *_frontend._VOILA_ENV):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)


def _without(monkeypatch, *modules):
    """Make ``modules`` look uninstalled to the import lookup."""
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in modules else real(name, *a))


def _versions(monkeypatch, **versions):
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda dist: versions.get(dist) or real(dist))


def test_everything_present_here(clean_env):
    r = check(_KernelShell())
    names = [p.name for p in r.pieces]
    assert names == ["ipywidgets", "jupyterlab_widgets", "widgetsnbextension", "bqplot", "bqplot lab extension",
                     "anywidget", "anywidget lab extension", "ipykernel", "voila"]
    by = {p.name: p for p in r.pieces}
    for dist in ("ipywidgets", "bqplot", "anywidget", "ipykernel"):
        assert by[dist].version == importlib.metadata.version(dist) and by[dist].ok
    assert r.ok and r.missing == [] and r.fix is None
    assert r.front_end == "kernel (front end unknown)"
    text = str(r)
    assert text.splitlines()[0] == "nnwidgets front-end check: kernel (front end unknown)"
    assert text.endswith("nothing to fix") and repr(r) == text
    assert f"bqplot                   {importlib.metadata.version('bqplot')}" in text


def test_missing_packages_give_one_pip_command(clean_env, monkeypatch):
    _without(monkeypatch, "bqplot", "anywidget")
    r = check(_KernelShell())
    assert not r.ok and r.missing == ["bqplot", "anywidget"]
    assert r.fix == "%pip install -U bqplot anywidget   (in a notebook cell; then restart the kernel and reload the page)"
    by = {p.name: p for p in r.pieces}
    assert by["bqplot"].version is None and by["bqplot lab extension"].version is None
    assert "bqplot                   not found    MISSING" in str(r)
    # outside a kernel: a shell command
    assert check(_TerminalShell()).fix == "pip install -U bqplot anywidget"


def test_ipywidgets_7_and_ipykernel_7_0_0_are_problems(clean_env, monkeypatch):
    _versions(monkeypatch, ipywidgets="7.8.5", ipykernel="7.0.0")
    r = check(_KernelShell())
    assert r.missing == ["ipywidgets", "ipykernel"]
    assert r.fix.startswith('%pip install -U "ipywidgets>=8.1,<9" "ipykernel>=6.29,!=7.0.0"')
    assert "version 7.8.5: nnwidgets needs ipywidgets 8" in str(r)
    assert "PROBLEM" in str(r)


def test_lab_extensions_not_in_these_paths_are_reported_but_not_required(clean_env, monkeypatch, tmp_path):
    import jupyter_core.paths
    monkeypatch.setattr(jupyter_core.paths, "jupyter_path", lambda *parts: [str(tmp_path)])
    r = check(_KernelShell())
    by = {p.name: p for p in r.pieces}
    assert not by["bqplot lab extension"].ok and "needed where the Jupyter server runs" in by["bqplot lab extension"].note
    assert r.ok and r.fix is None
    (tmp_path / "anywidget").mkdir()
    (tmp_path / "anywidget" / "package.json").write_text("{}")
    assert {p.name: p for p in check(_KernelShell()).pieces}["anywidget lab extension"].note == f"in {tmp_path / 'anywidget'}"


def test_optional_voila_missing_is_fine(clean_env, monkeypatch):
    _without(monkeypatch, "voila")
    r = check(_KernelShell())
    assert r.ok and r.fix is None
    assert "voila                    not found    -" in str(r)


@pytest.mark.parametrize("env, shell, expected", [
    ({}, None, "plain Python"),
    ({}, _TerminalShell(), "terminal IPython"),
    ({}, _KernelShell(), "kernel (front end unknown)"),
    ({"VSCODE_PID": "123"}, _KernelShell(), "VS Code"),
    ({"JPY_SESSION_NAME": "/x/a.ipynb"}, _KernelShell(), "Jupyter server (JupyterLab or Notebook)"),
    ({"VOILA_KERNEL_ID": "k"}, _KernelShell(), "Voilà"),
])
def test_front_end_detection(clean_env, monkeypatch, env, shell, expected):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    if shell is None:
        monkeypatch.setattr("IPython.get_ipython", lambda: None)
    assert detect_front_end(shell) == expected


@pytest.fixture
def colab(clean_env, monkeypatch):
    calls = []
    output = types.SimpleNamespace(enable_custom_widget_manager=lambda: calls.append("enabled"))
    google = types.ModuleType("google")
    mod = types.ModuleType("google.colab")
    mod.output = output
    google.colab = mod
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", mod)
    monkeypatch.setitem(sys.modules, "google.colab.output", output)
    return calls


def test_colab_detected_and_its_widget_manager_enabled(colab):
    assert detect_front_end(_KernelShell()) == "Colab"
    assert _frontend.enable_colab_widgets() == _frontend.COLAB_NOTICE and colab == ["enabled"]
    r = check(_KernelShell())
    assert "enable_custom_widget_manager" in r.notes[0]


def test_not_colab_enables_nothing(clean_env):
    assert _frontend.enable_colab_widgets() is None


def test_colab_load_ext_and_shown_panel_enable_it_with_a_notice(colab, capsys):
    globalipapp.start_ipython()
    shell = globalipapp.get_ipython()
    nw.load_ipython_extension(shell)
    assert colab == ["enabled"]
    assert "nnwidgets: Colab: enabled its custom widget manager" in capsys.readouterr().out
    x, y = torch.randn(8, 3), torch.randint(0, 2, (8,))
    p = nw.panel(nn.Linear(3, 2), [(x, y)], epochs=1, device="cpu")
    before = len(colab)  # anywidget's own constructor enables it too (anywidget._util)
    try:
        bundle = p._repr_mimebundle_()
        bundle = bundle[0] if isinstance(bundle, tuple) else bundle
        assert "application/vnd.jupyter.widget-view+json" in bundle
        p._repr_mimebundle_()
        assert len(colab) == before + 2
        assert [m for _, m in p.status.messages if "enabled its custom widget manager" in m] == [_frontend.COLAB_NOTICE]
    finally:
        p.close()


def test_magic_and_public_function(clean_env):
    globalipapp.start_ipython()
    shell = globalipapp.get_ipython()
    shell.run_line_magic("load_ext", "nnwidgets")
    r = shell.run_line_magic("nnwidgets", "check")
    assert isinstance(r, FrontEndCheck) and r.pieces == check(shell).pieces
    with pytest.raises(UsageError, match=r"usage: %nnwidgets check"):
        shell.run_line_magic("nnwidgets", "chek")
    assert nw.check is _check.check and "check" in nw.__all__
