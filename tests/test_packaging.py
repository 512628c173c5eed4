"""The built wheel ships the front-end and the demo notebooks, and the views find their JS in it."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Build the wheel once (hatchling from the current environment, no network)."""
    out = tmp_path_factory.mktemp("wheel")
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
           "-q", "-w", str(out), str(REPO)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"wheel build failed:\n{done.stdout}\n{done.stderr}"
    wheels = list(out.glob("nnwidgets-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_contains_the_network_js(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        assert "nnwidgets/js/network.js" in names
        assert z.read("nnwidgets/js/network.js") == (REPO / "js" / "network.js").read_bytes()
        assert {"nnwidgets/_graph.py", "nnwidgets/widgets/network.py", "nnwidgets/widgets/boundary.py"} <= names


def test_wheel_contains_the_demo_notebooks(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    assert "nnwidgets/demo_notebooks/04_playground.ipynb" in names
    if not (REPO / "demo_notebooks" / "01_quickstart.ipynb").is_file():
        pytest.skip("demo_notebooks/01_quickstart.ipynb is not in the repository yet (written for the panel issue)")
    assert "nnwidgets/demo_notebooks/01_quickstart.ipynb" in names


def test_installed_wheel_loads_its_own_js(wheel, tmp_path):
    with zipfile.ZipFile(wheel) as z:
        z.extractall(tmp_path)
    code = ("import nnwidgets.widgets.network as n; print(n.esm_path()); "
            "print(str(n.NetworkWidget._esm).startswith('// nnwidgets network diagram'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    path, ok = done.stdout.split()
    assert Path(path) == tmp_path / "nnwidgets" / "js" / "network.js" and ok == "True"
