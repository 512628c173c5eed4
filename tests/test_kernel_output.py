"""A real kernel (jupyter_client): output written by the training thread of ``%%train`` is
shown in the panel's notices, never in a later cell, on ipykernel 6 and 7 (the panel's per-thread
stream routing, :mod:`nnwidgets.widgets._thread_output`; below it the thread keeps the ``%%train``
cell as its parent, :mod:`nnwidgets._output_parent`).

CI runs this file (with ``test_magic*.py``) once with the project's ipykernel 7 and once in
``.venv-ipk6`` with ipykernel 6 (``scripts/test.sh``); ``NNWIDGETS_EXPECT_IPYKERNEL`` names
the major the run expects, so a run that silently used the other one fails.
"""
from __future__ import annotations

import json
import os
import queue
import sys
import time

import pytest

jupyter_client = pytest.importorskip("jupyter_client")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPECT_ENV = "NNWIDGETS_EXPECT_IPYKERNEL"

SETUP = """
import threading, ipykernel, torch
from torch import nn
print("ipykernel", ipykernel.__version__)
gate = threading.Event()

class Gated:
    def __iter__(self):
        gate.wait(30)
        yield torch.randn(8, 3), torch.randint(0, 2, (8,))
    def __len__(self):
        return 1

class Talks(nn.Linear):
    said = False
    def forward(self, x):
        if not Talks.said:
            Talks.said = True
            print("said-by-forward", flush=True)
        return super().forward(x)

model, loader = Talks(3, 2), Gated()
%load_ext nnwidgets
"""


@pytest.fixture
def kernel(tmp_path, monkeypatch):
    spec = tmp_path / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({"argv": [sys.executable, "-m", "ipykernel_launcher", "-f",
                                                           "{connection_file}"],
                                                  "display_name": "Python 3", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOILA_") and k != "NNWIDGETS_WAIT"}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    km = jupyter_client.KernelManager(kernel_name="python3")
    km.start_kernel(env=env, cwd=str(tmp_path))
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        yield kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def _run(kc, code, timeout=60):
    """Execute ``code`` as a front end does (``allow_stdin`` true: a live notebook) and wait
    for its reply; returns the msg_id."""
    msg_id = kc.execute(code, allow_stdin=True)
    reply = kc.get_shell_msg(timeout=timeout)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = kc.get_shell_msg(timeout=timeout)
    assert reply["content"]["status"] == "ok", reply["content"]
    return msg_id


def _streams(kc, seconds):
    out, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            msg = kc.get_iopub_msg(timeout=0.2)
        except queue.Empty:
            continue
        if msg["msg_type"] == "stream":
            out.append((msg["parent_header"].get("msg_id"), msg["content"]["text"]))
    return out


@pytest.mark.slow
def test_training_thread_output_goes_to_the_panel_never_to_a_later_cell(kernel):
    setup = _run(kernel, SETUP)
    train = _run(kernel, "%train model loader --epochs 1 --threads 1 --name run")
    later = _run(kernel, "gate.set()\nimport time\ntime.sleep(2)\nprint('later-cell', run.trainer.state)\n"
                       "print('in-notices', any('said-by-forward' in m for _, m in run.status.messages))")
    streams = _streams(kernel, 3)
    text = {mid: "".join(t for m, t in streams if m == mid) for mid in (setup, train, later)}
    version = text[setup].split("ipykernel ", 1)[1].split()[0]
    print(f"\nkernel ran ipykernel {version}")
    expected = os.environ.get(EXPECT_ENV)
    if expected:
        assert version.split(".")[0] == expected, f"this run expects ipykernel {expected}.x, the kernel has {version}"
    assert "in-notices True" in text[later], (version, streams)
    assert "said-by-forward" not in text[later], (version, streams)
    assert "later-cell completed" in text[later]
