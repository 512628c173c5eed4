"""A Voilà dashboard cleans up after its pages: reloads and closed tabs leave no training behind.

The server runs with the options ``nnwidgets demo`` gives Voilà (``_cli.cleanup_options``, with
short culling times) and serves a notebook whose panel trains at once and pauses when no page
has shown it for ``UNSEEN_S`` seconds. Every kernel writes ``alive-<pid>.json`` (state, time)
next to the notebook every 0.2 s, so the test counts kernel processes (children of the server
PID running ipykernel) and kernels still training.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import psutil

import _kernel_probe as kp
from nnwidgets import _cli

UNSEEN_S = 6
RELOADS = 5

ALIVE = """\
import json, os, threading, time
def _alive():
    me = f"alive-{os.getpid()}.json"
    while True:
        data = {"t": time.time(), "state": panel.trainer.state, "step": panel.trainer.step,
                "messages": [m for _, m in panel.status.messages]}
        with open(me + ".tmp", "w") as f:
            json.dump(data, f)
        os.replace(me + ".tmp", me)
        time.sleep(0.2)
threading.Thread(target=_alive, daemon=True).start()
"""

PANEL = f"""\
from nnwidgets import Trainer
from nnwidgets.widgets.panel import TrainingPanel
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 3))
panel = TrainingPanel(Trainer(model, loader, val_loader, epochs=400, lr=0.01), pause_unseen_s={UNSEEN_S})
panel.add_class("test-run-panel")
panel.trainer.start()
panel
"""


def _kernels(server) -> list[psutil.Process]:
    out = []
    for c in psutil.Process(server.pid).children(recursive=True):
        try:
            if c.is_running() and c.status() != psutil.STATUS_ZOMBIE and "ipykernel" in " ".join(c.cmdline()):
                out.append(c)
        except psutil.Error:
            pass
    return out


def _alive(folder: Path, pids: set[int]) -> dict[int, dict]:
    out = {}
    for f in folder.glob("alive-*.json"):
        pid = int(f.stem.split("-")[1])
        if pid in pids:
            try:
                out[pid] = json.loads(f.read_text())
            except ValueError:
                pass
    return out


def _training(folder: Path, server) -> list[int]:
    """PIDs of live kernels whose trainer is running (their file written in the last 2 s)."""
    now = time.time()
    alive = _alive(folder, {k.pid for k in _kernels(server)})
    return [pid for pid, d in alive.items() if d["state"] == "running" and now - d["t"] < 2]


def test_reloads_and_a_closed_tab_leave_no_kernel_training(page, write_notebook, voila_server):
    nb = write_notebook("cleanup", [kp.SETUP, PANEL, ALIVE])
    folder = nb.parent
    server = voila_server(nb, *_cli.cleanup_options(idle_timeout_s=4, interval_s=1))
    kp.open_voila(page, server)
    ui = kp.PanelUI(page).wait_visible()
    kp.wait_until("one kernel training", lambda: _training(folder, server), 60, page=page)

    for _ in range(RELOADS):
        page.reload(wait_until="domcontentloaded", timeout=180_000)
        ui.wait_visible()
    counts = kp.wait_until("at most one kernel left after the reloads",
                           lambda: len(ks := _kernels(server)) <= 1 and len(ks) or None, 30, page=page)
    training = kp.wait_until("the page's kernel training", lambda: _training(folder, server), 30, page=page)
    assert counts == 1 and len(training) == 1, (counts, training)
    log = server.log_path.read_text()
    assert "_xsrf" not in log and log.count("Kernel shutdown") >= RELOADS, server.log_tail()

    # a tab closed without Voilà's shutdown request (no beforeunload: a crash, a lost network)
    (pid,) = training
    page.close()
    state = kp.wait_until("the orphaned run paused", lambda: (d := _alive(folder, {pid}).get(pid))
                          and d["state"] == "paused" and d, UNSEEN_S + 30)
    assert any(m.startswith("Paused: no page has shown this panel") for m in state["messages"]), state
    kp.wait_until("the idle kernel culled", lambda: not _kernels(server), 30)
    assert "Culling kernel" in server.log_path.read_text() or "culled" in server.log_path.read_text().lower(), \
        server.log_tail()
