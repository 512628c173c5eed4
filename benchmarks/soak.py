"""Soak: 100,000 training steps with a TrainingPanel attached; memory and bytes per tab update.

A tiny model (2 inputs → 5 Linear layers → 3 classes, so every tab exists, the Decision
boundary tab included) trains with ``Trainer.start()`` while a ``TrainingPanel`` refreshes
from its own thread exactly as in a notebook. No browser and no kernel: a recording comm
replaces ``comm.create_comm`` (as ``tests/widgets/test_update_bytes.py`` does), so every message
a widget would send to the front end is kept and measured instead of sent. The main thread
selects each tab in turn (every ``--tab-every-s`` seconds), so every tab is refreshed again and
again over the whole run, as a user clicking through the tabs would make it. The first layer
is frozen at 40 % of the steps and unfrozen at 60 % (the Parameters tab changes only then).

Measured:

* **RSS** of the process (``psutil`` when installed, else ``VmRSS`` of ``/proc/self/status``)
  every ``--sample-every`` steps (a ``BATCH_COMPLETED`` handler with ``every=``). The
  reference is the first sample at or after ``--warmup`` steps; the drift is
  ``max |RSS - reference| / reference`` over the later samples. Pass: ≤ 5 %.
* **Bytes per update** of every tab: the comm messages that one refresh of the panel's updater
  thread sends for the widgets of that tab (see :class:`TabMeter`), ``len(json.dumps(data)) + buffer bytes`` per message
  (numpy arrays travel as binary buffers). An update that sends nothing is not counted.
  Status and controls are measured the same way. Pass: max ≤ 16 KB (16,384 B) for every tab.

Usage::

    python benchmarks/soak.py                       # 100,000 steps, ~2-4 min on 2 cores
    python benchmarks/soak.py --steps 20000 --json /tmp/soak.json   # quicker look

Prints a table and the pass/fail lines; writes the JSON (default
``benchmarks/results/soak-<date>-cpu-<n>core.json``). Exit status 1 when a criterion fails.
"""
from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import platform
import sys
import threading
import time

import comm
import numpy as np
import torch
from comm.base_comm import BaseComm
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

BUDGET_B = 16 * 1024  # bytes per chart update (DESIGN.md)
RSS_LIMIT = 0.05


# ---------------------------------------------------------------- measuring
def rss_bytes() -> int:
    """Resident set size of this process in bytes."""
    try:
        import psutil
        return int(psutil.Process().memory_info().rss)
    except ImportError:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    raise RuntimeError("no way to read RSS (no psutil, no /proc/self/status)")


def message_bytes(data: dict, buffers: list) -> int:
    """Bytes of one comm message: its JSON text plus its binary buffers."""
    return len(json.dumps(data, default=str)) + sum(memoryview(b).nbytes for b in buffers)


class RecordingComm(BaseComm):
    """Keeps the size of what it would publish, by widget (comm id), into the open bucket."""

    bucket: dict | None = None  # comm id -> [bytes, messages] while a panel refresh runs
    lock = threading.Lock()
    outside: dict = {}  # comm id -> [bytes, messages] sent outside a panel refresh

    def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
        if msg_type != "comm_msg":
            return
        n = message_bytes(data or {}, list(buffers or []))
        with RecordingComm.lock:
            b = RecordingComm.bucket
            slot = (b if b is not None else RecordingComm.outside).setdefault(self.comm_id, [0, 0])
            slot[0] += n
            slot[1] += 1


def widget_tree(root) -> set[str]:
    """Model ids of ``root`` and of every widget it holds in a trait (children, marks, axes,
    scales, layouts, ...)."""
    import ipywidgets as w
    seen, todo = set(), [root]
    while todo:
        x = todo.pop()
        if isinstance(x, (list, tuple)):
            todo.extend(x)
        elif isinstance(x, dict):
            todo.extend(x.values())
        elif isinstance(x, w.Widget) and x.model_id not in seen:
            seen.add(x.model_id)
            todo.extend(getattr(x, name) for name in x.keys)
    return seen


class TabMeter:
    """Bytes per panel refresh of each view: a wrapper around ``panel.refresh`` opens a bucket,
    the recording comm fills it by comm id, and the bytes of the widgets of each view (its
    ``widget_tree``) are one update of that view. Measured at the panel level because the panel
    refreshes a view inside ``view.widget.hold_sync()``: the view's own messages leave when that
    block ends, after ``view.refresh`` has returned."""

    def __init__(self, panel) -> None:
        self.updates: dict[str, list[tuple[int, int, int]]] = collections.defaultdict(list)  # (step, bytes, msgs)
        self.owner: dict[str, str] = {}
        for title, view in [("Status", panel.status), ("Controls", panel.controls), *panel.views]:
            for mid in widget_tree(view.widget):
                self.owner.setdefault(mid, title)
        self.unowned = [0, 0]
        inner, trainer = panel.refresh, panel.trainer

        def refresh(*a, **kw):
            step = int(trainer.step)
            with RecordingComm.lock:
                RecordingComm.bucket = {}
            try:
                return inner(*a, **kw)
            finally:
                with RecordingComm.lock:
                    bucket, RecordingComm.bucket = RecordingComm.bucket, None
                per: dict[str, list[int]] = {}
                for mid, (n, k) in bucket.items():
                    title = self.owner.get(mid)
                    slot = per.setdefault(title, [0, 0]) if title else self.unowned
                    slot[0] += n
                    slot[1] += k
                for title, (n, k) in per.items():
                    self.updates[title].append((step, n, k))

        panel.refresh = refresh

    def outside(self) -> dict:
        """``{view title: [bytes, messages]}`` sent outside a panel refresh (tab clicks, a
        freeze applied by the training thread, ...)."""
        out: dict[str, list[int]] = {}
        for mid, (n, k) in RecordingComm.outside.items():
            slot = out.setdefault(self.owner.get(mid, "(other)"), [0, 0])
            slot[0] += n
            slot[1] += k
        return out

    def summary(self) -> dict:
        out = {}
        for title, rows in self.updates.items():
            b = np.array([r[1] for r in rows])
            late = [r[1] for r in rows if r[0] >= rows[-1][0] // 2]
            out[title] = {"updates": len(rows), "max_bytes": int(b.max()), "median_bytes": int(np.median(b)),
                          "max_bytes_second_half": int(max(late)) if late else None,
                          "max_at_step": int(rows[int(b.argmax())][0])}
        return out


# ---------------------------------------------------------------- the run
def build(steps: int, seed: int = 0):
    """Tiny 2-feature, 3-class problem: 500 training rows in batches of 5 (100 steps per
    epoch), 100 validation rows; MLP 2-16-16-16-16-3 (5 Linear layers)."""
    from nnwidgets import Trainer
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(600, 2, generator=g)
    y = ((x[:, 0] > 0).long() + (x[:, 1] > 0.5).long())
    train = DataLoader(TensorDataset(x[:500], y[:500]), batch_size=5, shuffle=True, generator=g)
    val = DataLoader(TensorDataset(x[500:], y[500:]), batch_size=50)
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Linear(2, 16), nn.ReLU()]
    for _ in range(3):
        layers += [nn.Linear(16, 16), nn.ReLU()]
    model = nn.Sequential(*layers, nn.Linear(16, 3))
    epochs = -(-steps // len(train))
    return Trainer(model, train, val, epochs=epochs, lr=0.05, momentum=0.9, device="cpu", threads=1, seed=seed)


def run(args) -> dict:
    comm.create_comm = lambda **kw: RecordingComm(**kw)  # before any widget exists
    from nnwidgets.widgets.panel import TrainingPanel
    from nnwidgets.events import Event

    trainer = build(args.steps)
    rss: list[tuple[int, float, int]] = []
    t0 = time.perf_counter()
    trainer.on(Event.BATCH_COMPLETED, lambda t, **_: rss.append((t.step, time.perf_counter() - t0, rss_bytes())),
               every=args.sample_every)
    panel = TrainingPanel(trainer)
    meter = TabMeter(panel)
    titles = [t for t, _ in panel.views]
    rss.append((0, 0.0, rss_bytes()))
    trainer.start()
    i, last_switch, frozen = 0, time.perf_counter(), None
    while trainer.state in ("idle", "running"):
        time.sleep(0.1)
        if frozen is None and trainer.step >= 0.4 * args.steps:
            trainer.freeze("0")  # a user freezing the first layer: Parameters, Gradients, Network change
            frozen = True
        elif frozen and trainer.step >= 0.6 * args.steps:
            trainer.freeze("0", False)
            frozen = False
        if time.perf_counter() - last_switch >= args.tab_every_s:
            i = (i + 1) % len(titles)
            panel.tab.selected_index = i  # what a click on the tab does
            last_switch = time.perf_counter()
    trainer.wait()
    wall = time.perf_counter() - t0
    time.sleep(2 * panel.update_interval_s)
    panel.refresh(every_tab=True)  # the final state of every tab, as a finished run shows it
    rss.append((trainer.step, time.perf_counter() - t0, rss_bytes()))
    notices = panel.status.notices.value
    panel.close()

    after = [r for r in rss if r[0] >= args.warmup]
    ref = after[0][2]
    drift = max(abs(r[2] - ref) for r in after) / ref
    tabs = meter.summary()
    result = {
        "date": datetime.date.today().isoformat(), "steps": trainer.step, "state": trainer.state,
        "epochs": trainer.epoch, "wall_s": round(wall, 1), "steps_per_s": round(trainer.step / wall, 1),
        "warmup_steps": args.warmup, "sample_every": args.sample_every, "tab_every_s": args.tab_every_s,
        "rss_source": "psutil" if _has_psutil() else "/proc/self/status",
        "rss_mb_start": round(rss[0][2] / 2**20, 1), "rss_mb_after_warmup": round(ref / 2**20, 1),
        "rss_mb_end": round(rss[-1][2] / 2**20, 1), "rss_mb_max_after_warmup": round(max(r[2] for r in after) / 2**20, 1),
        "rss_drift_after_warmup": round(drift, 4),
        "rss_samples": [[s, round(t, 2), round(b / 2**20, 2)] for s, t, b in rss],
        "budget_bytes": BUDGET_B, "tabs": tabs, "bytes_outside_refreshes": meter.outside(),
        "bytes_of_widgets_outside_the_views": meter.unowned[0],
        "pass_rss": drift <= RSS_LIMIT,
        "pass_bytes": all(v["max_bytes"] <= BUDGET_B for v in tabs.values()),
        "panel_notices_html": notices, "tabs_refreshed": sorted(tabs), "tabs_expected": titles,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "numpy": np.__version__}, "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "loadavg": os.getloadavg(),
    }
    return result


def _has_psutil() -> bool:
    try:
        import psutil  # noqa: F401
        return True
    except ImportError:
        return False


def report(r: dict) -> str:
    lines = [f"soak: {r['steps']:,} steps ({r['epochs']} epochs, {r['state']}) in {r['wall_s']} s "
             f"({r['steps_per_s']} steps/s), panel attached, tabs cycled every {r['tab_every_s']} s",
             f"RSS ({r['rss_source']}): start {r['rss_mb_start']} MB, after {r['warmup_steps']:,}-step warm-up "
             f"{r['rss_mb_after_warmup']} MB, end {r['rss_mb_end']} MB, max after warm-up "
             f"{r['rss_mb_max_after_warmup']} MB: drift {100 * r['rss_drift_after_warmup']:.1f} %",
             f"{'tab':<20}{'updates':>8}{'median B':>10}{'max B':>8}{'max B (2nd half)':>18}"]
    for title, v in r["tabs"].items():
        lines.append(f"{title:<20}{v['updates']:>8}{v['median_bytes']:>10}{v['max_bytes']:>8}"
                     f"{v['max_bytes_second_half']:>18}")
    missing = sorted(set(r["tabs_expected"]) - set(r["tabs"]))
    lines.append(f"PASS RSS flat within 5 % after warm-up: {r['pass_rss']}")
    lines.append(f"PASS max bytes per update of every tab <= {r['budget_bytes']} B: {r['pass_bytes']}"
                 + (f" (never refreshed with a change: {missing})" if missing else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--warmup", type=int, default=10_000, help="steps before the RSS reference")
    ap.add_argument("--sample-every", type=int, default=2_000, help="steps between RSS samples")
    ap.add_argument("--tab-every-s", type=float, default=2.0, help="seconds each tab stays selected")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    r = run(args)
    print(report(r))
    path = args.json or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                     f"soak-{r['date']}-cpu-{os.cpu_count()}core.json")
    with open(path, "w") as f:
        json.dump(r, f, indent=1)
    print(f"wrote {path}")
    return 0 if r["pass_rss"] and r["pass_bytes"] and not set(r["tabs_expected"]) - set(r["tabs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
