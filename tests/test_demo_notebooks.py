"""Run every demo notebook under nbclient and check the numbers it prints.

The kernel is this interpreter (a ``python3`` kernelspec written to a temporary
``JUPYTER_PATH``, which takes precedence over user and system kernelspecs), importing this
checkout (``PYTHONPATH``), with ``NNWIDGETS_WAIT=1`` so every ``%%train`` cell blocks until its
run ends, and ``OMP_NUM_THREADS=1``: on a small shared machine two intra-op threads per
training step spin against other processes and made a run ~30x slower.
"""
from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("palmerpenguins")
pytest.importorskip("sklearn")

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO_ROOT / "demo_notebooks"
MINE = ["01_quickstart.ipynb", "02_regression.ipynb", "03_vanishing_gradients.ipynb"]
CELL_TIMEOUT_S = 300
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory) -> dict:
    """Environment for the notebook kernels (see module docstring)."""
    jupyter_path = tmp_path_factory.mktemp("jupyter")
    spec_dir = jupyter_path / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (nnwidgets tests)", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    env = {k: v for k, v in os.environ.items() if k != "NNWIDGETS_WAIT"}
    env.update(NNWIDGETS_WAIT="1", OMP_NUM_THREADS="1", JUPYTER_PATH=str(jupyter_path),
               PYTHONPATH=os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p))
    return env


_executed: dict[str, tuple] = {}


@pytest.fixture(scope="module")
def run_notebook(kernel_env):
    """``run_notebook(name, **env) -> (executed notebook, stdout text, seconds)``; each runs once.
    ``env``: variables for the kernel on top of :func:`kernel_env` (``None`` removes one)."""
    def run(name: str, **env: str | None):
        key = (name, tuple(sorted(env.items())))
        if key not in _executed:
            nb = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
            kernel = {**kernel_env, **env}
            kernel = {k: v for k, v in kernel.items() if v is not None}
            with pytest.MonkeyPatch.context() as mp:  # the kernelspec lookup reads JUPYTER_PATH
                mp.setenv("JUPYTER_PATH", kernel_env["JUPYTER_PATH"])
                client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=CELL_TIMEOUT_S,
                                                 resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
                t0 = time.perf_counter()
                client.execute(env=kernel)
                seconds = time.perf_counter() - t0
            text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                             for o in c.outputs if o.output_type == "stream")
            print(f"{name} {env or ''}: executed in {seconds:.1f} s")
            _executed[key] = (nb, text, seconds)
        return _executed[key]
    return run


def _number(pattern: str, text: str) -> float:
    m = re.search(pattern, text)
    assert m, f"{pattern!r} not found in the notebook's output:\n{text}"
    return float(m.group(1))


def _widget_views(nb) -> int:
    return sum(WIDGET_VIEW in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)


def _static_panels(nb) -> list[str]:
    """``text/plain`` of the outputs where a panel was replaced by its static summary: under
    nbclient (``nbconvert --execute``) a ``%%train`` cell that waited for its run shows the
    run statically (``nnwidgets._summary``), as the saved notebook will."""
    return [o["data"]["text/plain"] for c in nb.cells if c.cell_type == "code" for o in c.outputs
            if '<div class="nnwidgets-summary">' in o.get("data", {}).get("text/html", "")]


@pytest.mark.parametrize("name", MINE)
def test_saved_without_outputs_on_the_python3_kernel(name):
    nb = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    assert code[0].source.startswith("%load_ext nnwidgets")
    assert any(c.source.startswith("%%train ") for c in code)


def test_quickstart(run_notebook):
    """Run All (``NNWIDGETS_WAIT=1``) of a 300-epoch run generalises. The default run is 3,000
    epochs: 300 (4,800 steps) ended ~3 s after the panel appeared once training ran at the
    speed of a hand-written loop, too soon to steer in the dashboard."""
    source = "".join(c.source for c in nbformat.read(NOTEBOOK_DIR / "01_quickstart.ipynb", as_version=4).cells)
    assert 'os.environ.get("NNWIDGETS_DEMO_EPOCHS", 3000)' in source
    nb, text, seconds = run_notebook("01_quickstart.ipynb", NNWIDGETS_DEMO_EPOCHS="300")
    assert "250 training and 83 validation penguins, 9 features" in text
    assert "completed after 300 epochs" in text
    assert _number(r"validation accuracy (\d\.\d+)", text) >= 0.9
    assert _number(r"validation loss (\d+\.\d+)", text) < 0.3
    assert _widget_views(nb) == 0 and len(_static_panels(nb)) == 1  # the panel, as a static summary
    assert _static_panels(nb)[0].startswith("nnwidgets run completed: epoch 300/300")
    table = next(o for c in nb.cells for o in c.get("outputs", []) if "text/html" in o.get("data", {})
                 and "nnwidgets-summary" not in o["data"]["text/html"])
    assert "val_accuracy" in table["data"]["text/html"] and ">299<" in table["data"]["text/html"]  # last epoch
    assert seconds < 45


def test_quickstart_as_a_dashboard(run_notebook):
    """As Voilà runs it: no ``NNWIDGETS_WAIT`` and Voilà's kernel variables (Voilà executes
    through nbclient too; ``VOILA_BASE_URL`` tells its live pages apart from nbconvert, where
    ``%%train`` waits), so ``%%train`` returns while the run goes on. The
    last cell said "running: no epoch finished yet" under a live panel; it must say what is true
    then. ``NNWIDGETS_DEMO_EPOCHS`` sets the length of the run (a long one here: still running)."""
    nb, text, _ = run_notebook("01_quickstart.ipynb", NNWIDGETS_WAIT=None, VOILA_BASE_URL="/",
                               SERVER_SOFTWARE="voila/0.5.13", NNWIDGETS_DEMO_EPOCHS="100000")
    assert re.search(r"Training in the background: \d+ of 100000 epochs had finished when this cell ran\. "
                     r"The panel above is live", text), text
    assert "no epoch finished yet" not in text and "completed" not in text
    assert _widget_views(nb) == 1


def test_regression(run_notebook):
    nb, text, _ = run_notebook("02_regression.ipynb")
    r2 = _number(r"validation MAE \d+ g, R² (-?\d\.\d+)", text)
    mae_g = _number(r"validation MAE (\d+) g", text)
    assert r2 >= 0.7
    assert 100 < mae_g < 400  # body mass std is ~800 g
    assert "completed at epoch 40" in text
    assert _number(r"val_r2 (-?\d\.\d+)", text) == pytest.approx(r2, abs=0.01)  # Trainer agrees
    assert _number(r"val_mae (\d+) g", text) == pytest.approx(mae_g, abs=2)
    assert _widget_views(nb) == 0 and len(_static_panels(nb)) == 1


def test_vanishing_gradients(run_notebook):
    nb, text, _ = run_notebook("03_vanishing_gradients.ipynb")
    sigmoid = next(line for line in text.splitlines() if line.startswith("sigmoid:"))
    relu = next(line for line in text.splitlines() if line.startswith("relu:"))
    assert "completed at epoch 5" in sigmoid and "completed at epoch 5" in relu
    assert _number(r"(\d+) layers flagged", sigmoid) >= 2
    assert _number(r"(\d+) layers flagged", relu) == 0
    assert _number(r"ratio (\d\.\de[-+]\d+)", sigmoid) < 1e-4
    assert _number(r"ratio (\d\.\de[-+]\d+)", relu) > 1e-2
    assert "Vanishing gradient: layer '0' (followed by Sigmoid)" in text
    assert _number(r"validation accuracy (\d\.\d+)", relu) > _number(r"validation accuracy (\d\.\d+)", sigmoid) + 0.3
    assert _widget_views(nb) == 0 and len(_static_panels(nb)) == 2  # one panel per run, static
