"""Headless rows of ``dashboard.py``: no browser, no kernel, one Python process.

Per workload, interleaved round by round with torch's DEFAULT thread settings (nothing here
calls ``torch.set_num_threads``):

``reference``  the hand-written loop on the main thread (a fresh model each round)
``start``      ``Trainer.start(); trainer.wait()`` — the background thread ``%%train`` runs
``fit``        ``Trainer.fit()`` on the main thread

Each Trainer continues its completed run with ``epochs`` more per round (``start()``/``fit()``
on a completed run), timed by ``attach_clock`` (state "running" → end event). The ratio of a
mode is the median over rounds of (its steps/s ÷ the reference's steps/s in the same round).
"""
from __future__ import annotations

import statistics
import threading
import time

import torch

from _dashboard_meters import MachineMeter, wait_quiet
from _dashboard_workloads import TARGETS, build, epochs_for

MODES = ("reference", "start", "fit")


def _timed_trainer_run(trainer, records: list, background: bool, max_run_s: float,
                       epochs: int | None = None) -> dict:
    """One run of ``trainer`` (``start()+wait()`` or ``fit()``), stopped through the public
    ``stop()`` after ``max_run_s`` s; returns its clock record."""
    n = len(records)
    timer = threading.Timer(max_run_s, trainer.stop)
    timer.daemon = True
    timer.start()
    t0 = time.perf_counter()
    try:
        if background:
            trainer.start(epochs)
            trainer.wait()
        else:
            trainer.fit(epochs)
    finally:
        timer.cancel()
    wall = time.perf_counter() - t0
    deadline = time.monotonic() + 5  # the end event fires before wait() returns; be safe anyway
    while len(records) == n and time.monotonic() < deadline:
        time.sleep(0.01)
    if len(records) == n:
        raise RuntimeError(f"no end-of-run record from the trainer (state {trainer.state!r})")
    rec = dict(records[-1])
    rec["wall_s"] = wall
    rec["stopped_early"] = rec["ending"] != "fit_completed"
    return rec


def run_workload(name: str, rounds: int, scale: float, max_run_s: float, log=print,
                 quiet_limit: float = 0.25, quiet_wait: float = 10.0) -> dict:
    import nnwidgets as nw

    epochs = epochs_for(name, scale)
    ns = build(name, epochs)
    trainers, records = {}, {}
    for mode in ("start", "fit"):
        records[mode] = []
        t = nw.Trainer(ns["make_model"](), ns["train_loader"], ns["val_loader"], epochs=epochs,
                       lr=ns["LR"], momentum=ns["MOMENTUM"])
        ns["attach_clock"](t, records[mode].append)
        trainers[mode] = t

    machine = MachineMeter()

    def one(mode: str, ep: int | None = None) -> dict:
        gate = wait_quiet(machine, quiet_limit, quiet_wait)
        a = machine.snapshot()
        rec = _one(mode, ep)
        rec.update(gate, **MachineMeter.rates(a, machine.snapshot()))
        return rec

    def _one(mode: str, ep: int | None = None) -> dict:
        if mode == "reference":
            steps, secs = ns["reference"](ep or epochs)
            return {"steps": steps, "seconds": secs, "steps_per_s": steps / secs,
                    "thread": threading.current_thread().name}
        return _timed_trainer_run(trainers[mode], records[mode], background=(mode == "start"),
                                  max_run_s=max_run_s, epochs=ep)

    # warm-up: first-batch checks, allocator, caches (a short reference; one short run each)
    warmup = {mode: _one(mode, max(1, epochs // 10)) for mode in MODES}
    per_round: list[dict] = []
    for r in range(rounds):
        row = {m: one(m) for m in MODES}
        per_round.append(row)
        log(f"  headless {name} round {r + 1}/{rounds}: "
            + ", ".join(f"{m} {row[m]['steps_per_s']:.0f}" for m in MODES) + " steps/s; other CPU "
            + ", ".join(f"{row[m]['other_cpu']:.2f}" for m in MODES))
    modes = {}
    for m in MODES:
        rates = [row[m]["steps_per_s"] for row in per_round]
        ratios = [row[m]["steps_per_s"] / row["reference"]["steps_per_s"] for row in per_round]
        modes[m] = {"steps_per_s": statistics.median(rates), "ratio": statistics.median(ratios),
                    "ratio_per_round": ratios, "steps_per_s_per_round": rates,
                    "other_cpu": statistics.median(row[m]["other_cpu"] for row in per_round)}
    return {
        "workload": name, "epochs_per_run": epochs, "steps_per_epoch": len(ns["train_loader"]),
        "torch_threads": torch.get_num_threads(), "target": TARGETS[name][1],
        "modes": modes, "rounds": per_round,
        "warmup": warmup,  # notices such as the engine's thread choice often come from this first run
        "notices": {m: [n for row in [warmup] + per_round for n in row[m].get("notices", [])]
                    for m in ("start", "fit")},
    }
