"""Run a notebook the way ``jupyter nbconvert --execute`` does: nbclient, a real ipykernel of
this Python (a kernel spec in a temporary ``JUPYTER_PATH``), the project on ``PYTHONPATH``."""
from __future__ import annotations

import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def execute_notebook(cells: list[str], tmp_path, monkeypatch, *, drop: tuple[str, ...] = (), **env_extra: str):
    """Execute ``cells`` (code sources) top to bottom and return the executed notebook node.

    Args:
        drop: environment variables the kernel must not inherit (e.g. ``NNWIDGETS_WAIT``);
            ``VOILA_*`` are never inherited.
        env_extra: more environment variables for the kernel (``OMP_NUM_THREADS=1`` is set).
    """
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    spec = tmp_path / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({"argv": [sys.executable, "-m", "ipykernel_launcher", "-f",
                                                           "{connection_file}"],
                                                  "display_name": "Python 3", "language": "python"}))
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("VOILA_")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    env.update(env_extra)
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute(env=env)
    return nb
