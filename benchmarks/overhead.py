"""Overhead of nnwidgets against a hand-written PyTorch loop, as steps/s ratios.

Runs, in one process and interleaved round by round, the bare loop
(``zero_grad → forward → loss → backward → step``, ``loss.item()`` per step) and
``Trainer.fit()`` on the same model architecture, data and DataLoader, alone
("trainer") and with a live ``TrainingPanel`` attached ("panel": built with all its tabs —
charts, gradients, parameters, network diagram — and updating from its own thread, no browser).

Workloads (issue 2):
  W1  ``load_digits`` MLP 64-128-64-10, batch 32 (~1 ms/step on a CPU core)
  W2  20,000 x 784 random data, MLP 784-256-128-10, batch 128

Targets: ratio >= 0.95 on W1 and >= 0.98 on W2, gradient statistics on.

Usage::

    python benchmarks/overhead.py [--rounds 7] [--epochs 3] [--workloads W1,W2] [--modes trainer,panel] [--json out.json]

Prints a table and a JSON document. Each round runs ``--epochs`` epochs (one ``fit()`` call,
as a user trains several epochs per call) of every mode back to back;
the ratio of a mode is the median over rounds of (its steps/s ÷ the bare loop's steps/s in
the same round), so slow phases of a busy machine hit both sides of each ratio alike.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def workload(name: str) -> tuple[callable, DataLoader]:
    """Model factory and loader of workload ``name``."""
    g = torch.Generator().manual_seed(0)
    if name == "W1":
        from sklearn.datasets import load_digits
        X, y = load_digits(return_X_y=True)
        data = TensorDataset(torch.tensor(X / 16.0, dtype=torch.float32), torch.tensor(y))
        sizes, batch = (64, 128, 64, 10), 32
    else:
        data = TensorDataset(torch.randn(20_000, 784, generator=g), torch.randint(0, 10, (20_000,), generator=g))
        sizes, batch = (784, 256, 128, 10), 128

    def make_model() -> nn.Module:
        torch.manual_seed(0)
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        return nn.Sequential(*layers[:-1])

    return make_model, DataLoader(data, batch_size=batch, shuffle=True, generator=g)


def bare_epochs(model: nn.Module, opt: torch.optim.Optimizer, loader: DataLoader, epochs: int) -> tuple[int, float]:
    """The hand-written loop; returns (steps, seconds)."""
    ce = nn.CrossEntropyLoss()
    t0, steps = time.perf_counter(), 0
    for _ in range(epochs):
        for xb, yb in loader:
            opt.zero_grad()
            loss = ce(model(xb), yb)
            loss.backward()
            opt.step()
            loss.item()
            steps += 1
    return steps, time.perf_counter() - t0


def timed_fit(trainer, epochs: int) -> tuple[int, float]:
    s0, t0 = trainer.step, time.perf_counter()
    trainer.fit(epochs=epochs)
    return trainer.step - s0, time.perf_counter() - t0


def run(name: str, rounds: int, modes: list[str], epochs: int) -> dict:
    import nnwidgets as nw
    make_model, loader = workload(name)
    bare_model = make_model()
    bare_opt = torch.optim.SGD(bare_model.parameters(), lr=0.01, momentum=0.9)
    runners = {"bare": lambda: bare_epochs(bare_model, bare_opt, loader, epochs)}
    keep = []
    for mode in modes:
        trainer = nw.Trainer(make_model(), loader, lr=0.01, momentum=0.9, device="cpu", grad_stats=True)
        if mode == "panel":
            from nnwidgets.widgets.panel import TrainingPanel
            keep.append(TrainingPanel(trainer))  # all its tabs: charts, gradients, parameters, network
        runners[mode] = (lambda t=trainer: timed_fit(t, epochs))
    for fn in runners.values():  # warm-up round (first-batch checks, allocator, caches)
        fn()
    rates: dict[str, list[float]] = {m: [] for m in runners}
    for _ in range(rounds):
        for mode, fn in runners.items():
            steps, secs = fn()
            rates[mode].append(steps / secs)
    for p in keep:
        if hasattr(p, "close"):
            p.close()
    base = statistics.median(rates["bare"])
    out = {"workload": name, "steps_per_epoch": len(loader), "rounds": rounds, "epochs_per_round": epochs,
           "ms_per_step_bare": 1e3 / base, "modes": {}}
    for mode, r in rates.items():
        per_round = [a / b for a, b in zip(r, rates["bare"])]
        out["modes"][mode] = {"steps_per_s": statistics.median(r), "ratio": statistics.median(per_round),
                              "ratio_per_round": per_round}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--epochs", type=int, default=3, help="epochs per mode per round (one fit() call)")
    ap.add_argument("--workloads", default="W1,W2")
    ap.add_argument("--modes", default="trainer,panel", help="comma list of trainer, panel")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads for all modes (default 1)")
    ap.add_argument("--json", default=None, help="also write the JSON here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = [run(w, args.rounds, args.modes.split(","), args.epochs) for w in args.workloads.split(",")]
    targets = {"W1": 0.95, "W2": 0.98}
    print(f"{'workload':8} {'mode':12} {'steps/s':>9} {'ratio':>6} {'target':>6}  ms/step(bare)")
    for r in results:
        for mode, m in r["modes"].items():
            tgt = "" if mode == "bare" else f"{targets.get(r['workload'], 0):.2f}"
            print(f"{r['workload']:8} {mode:12} {m['steps_per_s']:9.1f} {m['ratio']:6.3f} {tgt:>6}  "
                  f"{r['ms_per_step_bare']:.2f}")
    doc = {"torch": torch.__version__, "threads": args.threads, "results": results}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
    print(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
