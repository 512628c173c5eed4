"""Steps/s of ``%%train`` as users run it — background thread, torch's default settings, the
panel open in a real browser on the same machine — against the hand-written loop.

Two parts, in this order (``--headless-only`` runs the first alone):

headless  one Python process, no browser: the reference loop on the main thread,
          ``Trainer.start(); trainer.wait()`` (the background thread ``%%train`` runs) and
          ``Trainer.fit()``, interleaved round by round (``_dashboard_headless``).
browser   per front end (Voilà, JupyterLab) and workload: a generated notebook with a
          "reference" button (the hand-written loop, run by its on_click on the kernel's shell
          thread, blocking it like a user's cell) and a ``%%train --no-start`` panel; headless
          Chromium clicks reference, Start, reference, ... (``_dashboard_browser``). With
          ``--anchors``, livelossplot (redrawing every epoch) and Lightning (default progress
          bar) run the same way on the Voilà page, each inside an Output widget.

Workloads (``_dashboard_workloads``): ``quickstart`` (penguins MLP, validation every epoch,
16 steps/epoch), ``W1`` and ``W2`` (``overhead.py``'s). A round's ratio is measured ÷ the mean
of the reference runs just before and after it; the ratio reported is the median over rounds.
Nothing calls ``torch.set_num_threads``. Run it with nothing else busy on the machine.

Usage::

    python benchmarks/dashboard.py [--workloads quickstart,W1,W2] [--frontends voila,lab]
        [--rounds 3] [--epochs-scale 1.0] [--anchors] [--headless-only] [--json PATH]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _dashboard_workloads import TARGETS, WORKLOADS  # noqa: E402

LAB_WORKLOADS_DEFAULT = ("quickstart",)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version
    out = {}
    for pkg in ("torch", "nnwidgets", "ipykernel", "ipywidgets", "voila", "jupyterlab", "bqplot",
                "playwright", "livelossplot", "lightning"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def _chromium_version() -> str | None:
    import shutil
    import subprocess
    path = shutil.which("chromium")
    if not path:
        return None
    try:
        return subprocess.run([path, "--version"], capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception:  # noqa: BLE001
        return None


def table(doc: dict) -> str:
    head = (f"{'workload':10} {'front end':9} {'mode':13} {'steps/s':>8} {'ratio':>6} {'target':>6}  "
            f"{'msg/s':>6} {'KB/s':>7} {'chromium':>8} {'kernel':>6} {'other':>5}  per round")
    lines = [head, "-" * len(head)]
    for r in doc["headless"]:
        for mode, m in r["modes"].items():
            tgt = "" if mode == "reference" else f"{r['target']:.2f}" if mode == "start" else ""
            lines.append(f"{r['workload']:10} {'headless':9} {mode:13} {m['steps_per_s']:8.1f} {m['ratio']:6.3f} "
                         f"{tgt:>6}  {'':6} {'':7} {'':8} {'':6} {m['other_cpu']:5.2f}  "
                         + " ".join(f"{x:.3f}" for x in m["ratio_per_round"]))
    for r in doc["browser"]:
        if "error" in r:
            lines.append(f"{r['workload']:10} {r['frontend']:9} FAILED: {r['error'].splitlines()[-1][:80]}")
            continue
        lines.append(f"{r['workload']:10} {r['frontend']:9} {'reference':13} {r['reference']['steps_per_s']:8.1f} "
                     f"{1.0:6.3f}")
        for mode, m in r["modes"].items():
            b = m["browser"]
            tgt = f"{r['target']:.2f}" if mode == "nnwidgets" else "anchor"
            lines.append(f"{r['workload']:10} {r['frontend']:9} {mode:13} {m['steps_per_s']:8.1f} {m['ratio']:6.3f} "
                         f"{tgt:>6}  {b['ws_messages_per_s']:6.1f} {b['ws_kb_per_s']:7.1f} {b['chromium']:8.2f} "
                         f"{b['kernel']:6.2f} {b['other_cpu']:5.2f}  "
                         + " ".join(f"{x:.3f}" for x in m["ratio_per_round"]))
    for r in doc["browser"]:
        m = r.get("modes", {}).get("nnwidgets", {})
        if m.get("shown_overhead") is not None:
            lines.append(f"{r['workload']} {r['frontend']}: the panel showed overhead {100 * m['shown_overhead']:.1f} %; "
                         f"measured slowdown 1 - ratio = {100 * (1 - m['ratio']):.1f} %")
    lines.append("msg/s, KB/s: WebSocket frames received by the page; chromium, kernel: CPU s per wall s; other: "
                 "CPU s/s of processes outside this benchmark (medians over the measured runs). "
                 "Headless target applies to start().")
    busy, total = contended(doc)
    if busy:
        lines.append(f"WARNING: {busy} of {total} timed runs had other processes using > {doc['quiet_limit']} "
                     "CPU s/s; on 2 cores the reference (torch's default 2 threads) slows down many times over "
                     "then, so these ratios are not reliable. Rerun on a quiet machine.")
    return "\n".join(lines)


def contended(doc: dict) -> tuple[int, int]:
    """(timed runs with other CPU above the quiet limit, all timed runs)."""
    others = [rec[m]["other_cpu"] for r in doc["headless"] for rec in r["rounds"] for m in rec]
    for r in doc["browser"]:
        if "error" in r:
            continue
        others += [x["other_cpu"] for x in r["reference"]["per_run"]]
        others += [rec["browser"]["other_cpu"] for row in r["rounds"] for rec in row.values()]
    return sum(o > doc["quiet_limit"] for o in others), len(others)


def summary(doc: dict) -> dict:
    """The figures of the table as JSON (the file holds every per-round number as well)."""
    out = {"date": doc["date"], "torch": doc["torch"], "cpu_count": doc["cpu_count"],
           "loadavg_before": doc["loadavg_before"], "loadavg_after": doc.get("loadavg_after"),
           "contended_runs": "%d of %d" % contended(doc), "rows": []}
    for r in doc["headless"]:
        for mode, m in r["modes"].items():
            out["rows"].append({"workload": r["workload"], "frontend": "headless", "mode": mode,
                                "steps_per_s": round(m["steps_per_s"], 1), "ratio": round(m["ratio"], 4),
                                "target": r["target"] if mode == "start" else None,
                                "other_cpu": round(m["other_cpu"], 3)})
    for r in doc["browser"]:
        if "error" in r:
            out["rows"].append({"workload": r["workload"], "frontend": r["frontend"], "error": True})
            continue
        for mode, m in r["modes"].items():
            out["rows"].append({"workload": r["workload"], "frontend": r["frontend"], "mode": mode,
                                "steps_per_s": round(m["steps_per_s"], 1), "ratio": round(m["ratio"], 4),
                                "target": r["target"] if mode == "nnwidgets" else None,
                                "shown_overhead": m.get("shown_overhead"),
                                **{k: round(v, 3) for k, v in m["browser"].items()}})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", default="quickstart,W1,W2")
    ap.add_argument("--frontends", default="voila,lab")
    ap.add_argument("--lab-workloads", default=",".join(LAB_WORKLOADS_DEFAULT),
                    help="workloads also run in JupyterLab (default quickstart; 'all' for every workload)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs-scale", type=float, default=1.0, help="scales every workload's epochs per run")
    ap.add_argument("--max-run-s", type=float, default=30.0,
                    help="a measured run still going after this many seconds is stopped (Stop button / "
                         "trainer.stop(); anchors: at the next epoch end); its steps/s counts")
    ap.add_argument("--quiet-limit", type=float, default=0.25,
                    help="before each timed run, wait until other processes use < this many CPU s/s")
    ap.add_argument("--quiet-wait", type=float, default=10.0,
                    help="... for at most this many seconds (0: do not wait; the load is recorded anyway)")
    ap.add_argument("--anchors", action="store_true", help="also livelossplot and Lightning (Voilà page)")
    ap.add_argument("--headless-only", action="store_true")
    ap.add_argument("--no-headless", action="store_true", help="skip the headless rows")
    ap.add_argument("--screenshots", default=None, help="folder for a full-page screenshot per page")
    ap.add_argument("--json", default=None,
                    help="default benchmarks/results/dashboard-<date>-cpu-<n>core.json")
    args = ap.parse_args(argv)
    workloads = [w for w in args.workloads.split(",") if w]
    for w in workloads:
        if w not in WORKLOADS:
            ap.error(f"unknown workload {w!r}; known: {', '.join(WORKLOADS)}")
    lab_workloads = workloads if args.lab_workloads == "all" else \
        [w for w in args.lab_workloads.split(",") if w in workloads]
    frontends = [] if args.headless_only else [f for f in args.frontends.split(",") if f]
    for f in frontends:
        if f not in ("voila", "lab"):
            ap.error(f"unknown front end {f!r}; use voila and/or lab")

    today = dt.date.today().isoformat()
    json_path = Path(args.json or HERE / "results" / f"dashboard-{today}-cpu-{os.cpu_count()}core.json")
    import torch
    doc = {
        "benchmark": "benchmarks/dashboard.py", "date": dt.datetime.now().isoformat(timespec="seconds"),
        "argv": sys.argv[1:], "cpu_count": os.cpu_count(), "platform": platform.platform(),
        "python": platform.python_version(), "torch": torch.__version__,
        "torch_threads_default": torch.get_num_threads(), "versions": _versions(),
        "chromium": _chromium_version() if frontends else None,
        "loadavg_before": os.getloadavg(), "rounds": args.rounds, "epochs_scale": args.epochs_scale,
        "max_run_s": args.max_run_s, "quiet_limit": args.quiet_limit, "quiet_wait": args.quiet_wait,
        "targets": {w: {"browser": b, "headless": h} for w, (b, h) in TARGETS.items()},
        "workloads": {w: WORKLOADS[w] for w in workloads}, "headless": [], "browser": [],
    }
    t_start = time.perf_counter()

    if not args.no_headless:
        from _dashboard_headless import run_workload
        _log(f"headless: {', '.join(workloads)} ({args.rounds} rounds, torch threads {torch.get_num_threads()})")
        for w in workloads:
            doc["headless"].append(run_workload(w, args.rounds, args.epochs_scale, args.max_run_s, log=_log,
                                                quiet_limit=args.quiet_limit, quiet_wait=args.quiet_wait))

    if frontends:
        from _dashboard_browser import launch_browser, run_frontend
        shots = Path(args.screenshots) if args.screenshots else None
        with launch_browser() as browser:
            for fe in frontends:
                for w in (workloads if fe == "voila" else lab_workloads):
                    _log(f"{fe} {w}: starting")
                    try:
                        doc["browser"].append(run_frontend(
                            browser, fe, w, args.rounds, args.epochs_scale, args.anchors and fe == "voila",
                            args.max_run_s, log=_log,
                            screenshot=shots / f"dashboard-{fe}-{w}.png" if shots else None,
                            quiet_limit=args.quiet_limit, quiet_wait=args.quiet_wait))
                    except Exception:  # noqa: BLE001 - report the others, say which one failed
                        err = traceback.format_exc()
                        _log(err)
                        doc["browser"].append({"frontend": fe, "workload": w, "error": err})

    doc["loadavg_after"] = os.getloadavg()
    doc["total_s"] = time.perf_counter() - t_start
    print(table(doc))
    print(f"total {doc['total_s']:.0f}s; load average before {doc['loadavg_before']}, after {doc['loadavg_after']}")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    print(json.dumps(summary(doc), indent=1))
    print(f"wrote {json_path}", file=sys.stderr)
    return 1 if any("error" in r for r in doc["browser"]) else 0


if __name__ == "__main__":
    sys.exit(main())
