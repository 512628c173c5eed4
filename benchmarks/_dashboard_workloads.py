"""Workloads of ``dashboard.py``: one source text per workload, shared by the notebook and the
headless process, so the reference loop that is timed is the same code in both.

Each workload is a block of Python source (:func:`setup_source`) that defines, in the namespace
it is executed in: ``train_loader``, ``val_loader`` (or None), ``make_model()``, ``LR``,
``MOMENTUM``, ``EPOCHS`` and ``reference(epochs)`` — the loop a user writes by hand
(``zero_grad → forward → loss → backward → step``, ``loss.item()`` per step, and with a
validation loader a pass under ``eval()``/``no_grad()`` after every epoch) on a fresh model,
returning ``(steps, seconds)``; and ``attach_clock(trainer, on_done)`` (:data:`CLOCK`), which
times every run of a Trainer through its public events.

W1 and W2 come from ``benchmarks/overhead.py``'s ``workload()`` (imported, not copied).
"""
from __future__ import annotations

from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent

# Epochs of one measured run, chosen so that a run lasts ~5-10 s at the reference rate on the
# 2-core machine (quickstart ~2,200 steps/s with 16 steps/epoch + validation; W1 ~1,900 steps/s,
# 57 steps/epoch; W2 ~500 steps/s, 157 steps/epoch at overhead.py's 20,000 rows).
WORKLOADS: dict[str, dict] = {
    "quickstart": {"epochs": 700, "lr": 0.05, "momentum": 0.9, "val": True,
                   "describe": "penguins_species(batch_size=16, seed=0), MLP F-32-C with Dropout(0.2), "
                               "SGD lr 0.05 momentum 0.9, validation every epoch"},
    "W1": {"epochs": 220, "lr": 0.01, "momentum": 0.9, "val": False,
           "describe": "overhead.workload('W1'): load_digits, MLP 64-128-64-10, batch 32, SGD lr 0.01 momentum 0.9"},
    "W2": {"epochs": 20, "lr": 0.01, "momentum": 0.9, "val": False,
           "describe": "overhead.workload('W2'): 20,000 x 784 random rows, MLP 784-256-128-10, batch 128, "
                       "SGD lr 0.01 momentum 0.9 (full 20,000 rows, not reduced)"},
}

TARGETS = {  # (browser, headless)
    "quickstart": (0.90, 0.95),
    "W1": (0.95, 0.97),
    "W2": (0.98, 0.99),
}

_DATA = {
    "quickstart": """\
from nnwidgets.datasets import penguins_species
train_loader, val_loader, features, classes = penguins_species(batch_size=16, seed=0)

def make_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(len(features), 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, len(classes)))
""",
    "W1": """\
from overhead import workload
make_model, train_loader = workload("W1")
val_loader = None
""",
    "W2": """\
from overhead import workload
make_model, train_loader = workload("W2")
val_loader = None
""",
}

REFERENCE = '''\
def reference(epochs):
    """The hand-written loop, on a fresh model; returns (steps, seconds)."""
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    loss_fn = nn.CrossEntropyLoss()
    steps, t0 = 0, time.perf_counter()
    for epoch in range(epochs):
        model.train()
        for xb, yb in train_loader:
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            loss.item()
            steps += 1
        if val_loader is not None:
            model.eval()
            with torch.no_grad():
                val_loss, correct, n = 0.0, 0, 0
                for xb, yb in val_loader:
                    out = model(xb)
                    val_loss += loss_fn(out, yb).item() * len(yb)
                    correct += (out.argmax(1) == yb).sum().item()
                    n += len(yb)
    return steps, time.perf_counter() - t0
'''


# Times every run of a Trainer through its public events, the same way in the kernel of the
# dashboard and in the headless process: from the state "running" to the run's end event.
CLOCK = '''\
import threading as _threading

def attach_clock(trainer, on_done):
    """Call on_done(record) at the end of every run of trainer (steps/s from trainer.step and
    wall time between the state "running" and fit_completed / stopped / exception_raised;
    the events other than state/setting changes recorded since the previous run's end)."""
    mark, seen = {}, [len(trainer.history.event_records)]

    def started(t, old=None, new=None, **_):
        if new == "running" and not mark:
            mark.update(t0=time.perf_counter(), step0=t.step, epoch0=t.epoch)

    def ended(t, ending):
        if not mark:
            return
        t1 = time.perf_counter()
        m = dict(mark)
        mark.clear()
        events = list(t.history.event_records)
        new, seen[0] = events[seen[0]:], len(events)
        steps, secs = t.step - m["step0"], t1 - m["t0"]
        speed = getattr(t, "speed", None)  # what the panel's status line shows (last ~5 s)
        on_done({"ending": ending, "steps": steps, "seconds": secs,
                 "shown_overhead": None if speed is None else speed.overhead,
                 "shown_alone_steps_per_s": None if speed is None else speed.alone_steps_per_s,
                 "threads": None if speed is None else speed.threads,
                 "steps_per_s": steps / secs if secs > 0 else 0.0, "epochs": t.epoch - m["epoch0"],
                 "epoch": t.epoch, "thread": _threading.current_thread().name,
                 "notices": [{k: (v if isinstance(v, (int, float, str, bool, type(None))) else str(v))
                              for k, v in e.items()}
                             for e in new if e.get("kind") not in ("state", "setting")]})

    trainer.on("state_changed", started)
    for ev in ("fit_completed", "stopped", "exception_raised"):
        trainer.on(ev, lambda t, _ev=ev, **_: ended(t, _ev))
'''


def epochs_for(name: str, scale: float) -> int:
    return max(1, round(WORKLOADS[name]["epochs"] * scale))


def setup_source(name: str, epochs: int) -> str:
    """Python source that builds the data, ``make_model``, ``reference`` of workload ``name``."""
    if name not in WORKLOADS:
        raise ValueError(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}")
    w = WORKLOADS[name]
    head = ("import sys, time\n"
            f"sys.path.insert(0, {str(BENCH_DIR)!r})  # benchmarks/overhead.py\n"
            "import torch\nfrom torch import nn\n")
    return (head + _DATA[name] + f"LR, MOMENTUM, EPOCHS = {w['lr']!r}, {w['momentum']!r}, {int(epochs)}\n\n"
            + REFERENCE + "\n\n" + CLOCK)


def build(name: str, epochs: int) -> dict:
    """Execute :func:`setup_source` in a fresh namespace and return it."""
    ns: dict = {"__name__": f"dashboard_{name}"}
    exec(compile(setup_source(name, epochs), f"<workload {name}>", "exec"), ns)  # noqa: S102 - our own source
    return ns
