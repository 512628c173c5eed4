"""Ctrl-C during ``fit()`` at a random moment: weights, step counter and history must agree
afterwards, and the Trainer must train again.

A background thread calls ``_thread.interrupt_main()`` (the same path as a SIGINT: Python's
handler runs in the main thread at the next bytecode) after a random delay of 0-50 ms (a fit here lasts ~40 ms) while a
tiny model trains. A ``BATCH_COMPLETED`` handler keeps a copy of the weights after every counted
step, so a half-applied ``optimizer.step()`` (SGD on CPU updates its parameters one by one in
Python) or an applied but uncounted step shows up as weights that match no counted step.
"""
from __future__ import annotations

import _thread
import random
import signal
import threading
import time

import pytest
import torch
from torch import nn

import nnwidgets as nw

TRIES = 80


def _data(n_batches=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 4, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(n_batches)]


def _trainer(seed):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))
    t = nw.Trainer(model, _data(), _data(3, seed=1), epochs=6, lr=0.05, momentum=0.9, device="cpu", threads=1)
    weights = {0: [p.detach().clone() for p in model.parameters()]}
    t.on("batch_completed", lambda tr, step, **_: weights.__setitem__(step, [p.detach().clone()
                                                                            for p in tr.model.parameters()]))
    return t, weights


def _fit_interrupted(trainer, delay_s):
    """``trainer.fit()`` with an interrupt after ``delay_s``; returns how it ended:
    ``"returned"`` (fit returned), ``"raised"`` (fit raised KeyboardInterrupt), ``"late"``
    (the interrupt came after fit had returned) or ``"early"`` (before fit's first line)."""
    go = threading.Event()

    def fire():
        go.wait()
        time.sleep(delay_s)
        _thread.interrupt_main()
    timer = threading.Thread(target=fire)
    timer.start()
    outcome = "returned"
    try:
        go.set()
        trainer.fit()
    except KeyboardInterrupt:
        outcome = "early" if trainer.state == "idle" and not trainer._control.active else "raised"
    while True:  # an interrupt that arrives after fit() returned lands here
        try:
            timer.join()
            time.sleep(0.002)
            return outcome
        except KeyboardInterrupt:
            outcome = "late" if outcome == "returned" else outcome


def _problem(trainer, weights):
    """What is inconsistent after an interrupt (None: all agrees)."""
    t = trainer
    if t.state not in ("stopped", "completed"):
        return f"state {t.state!r}"
    if t.history.n_steps != t.step or t.history.steps.step.tolist() != list(range(t.step)):
        return f"history has {t.history.n_steps} steps, trainer.step is {t.step}"
    if t.step not in weights:
        return f"step {t.step} was never reported by BATCH_COMPLETED"
    if not all(torch.equal(p, q) for p, q in zip(t.model.parameters(), weights[t.step])):
        return f"weights differ from those after step {t.step} (a half-applied or uncounted step)"
    if any(p.grad is not None for p in t.model.parameters()) or not t.model.training:
        return "gradients left or the model left in eval mode"
    return None


def run_trials(tries=TRIES, seed=0, max_delay_s=0.050):
    """``(counts by outcome, problems)`` over ``tries`` interrupted fits."""
    rng = random.Random(seed)
    counts, problems = {"returned": 0, "raised": 0, "late": 0, "early": 0}, []
    for i in range(tries):
        t, weights = _trainer(i)
        outcome = _fit_interrupted(t, rng.uniform(0.0, max_delay_s))
        counts[outcome] += 1
        problem = _problem(t, weights)
        if problem is None:
            try:
                t.fit(epochs=1)                      # usable afterwards
                problem = _problem(t, weights)
            except Exception as e:  # noqa: BLE001 - what the test reports
                problem = f"fit() again raised {type(e).__name__}: {e}"
        if problem is not None:
            problems.append((i, outcome, problem))
    return counts, problems


@pytest.fixture(autouse=True)
def python_sigint_handler():
    """Python's own Ctrl-C handler, as a script or a kernel has it. A test run started as a
    background job inherits SIGINT as ignored (SIG_IGN), and nnwidgets then leaves it alone."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def test_random_interrupts_leave_weights_counter_and_history_in_agreement():
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # what a script or a kernel has
    counts, problems = run_trials()
    print(f"{TRIES} interrupted fits: {counts}; inconsistent or unusable: {len(problems)}", problems[:5])
    assert counts["returned"] + counts["raised"] >= TRIES // 2  # most interrupts hit a running fit()
    assert problems == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back after every fit()


def test_an_interrupt_during_fit_stops_at_a_step_boundary_and_says_so():
    t, weights = _trainer(0)
    t.on("batch_completed", lambda tr, step, **_: _thread.interrupt_main() if step == 5 else None)
    t.fit()                                          # returns normally: the interrupt ends the run
    assert t.state == "stopped" and t.step == 5 and _problem(t, weights) is None
    assert t.history.event_records[-1]["message"] == "interrupted at epoch 0, step 5"
    t.fit()
    assert t.state == "completed" and _problem(t, weights) is None


def test_an_interrupt_that_arrives_after_the_last_step_is_raised_once_the_run_has_ended():
    t, weights = _trainer(0)
    t.on("epoch_completed", lambda tr, **_: _thread.interrupt_main())  # the epoch's bookkeeping follows
    with pytest.raises(KeyboardInterrupt):
        t.fit(epochs=1)
    assert t.state == "completed" and _problem(t, weights) is None
    assert t.epoch == len(t.history.epoch_records) == 1
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# ---------------------------------------------------------------- a plain Python script
_SCRIPT = r'''
import json, os, signal, sys
import torch
from torch import nn
import nnwidgets as nw

g = torch.Generator().manual_seed(0)
data = [(torch.randn(8, 4, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(12)]
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
t = nw.Trainer(model, data, epochs=6, lr=0.05, momentum=0.9, device="cpu", threads=1)
weights = {}

def after(tr, step, **_):
    weights[step] = [p.detach().clone() for p in tr.model.parameters()]
    if step == 5:
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the terminal
t.on("batch_completed", after)
try:
    t.fit()
finally:
    json.dump({"state": t.state, "step": t.step, "n_steps": t.history.n_steps,
               "same": t.step in weights and all(torch.equal(p, q) for p, q in zip(model.parameters(), weights[t.step])),
               "ipython_imported": "IPython" in sys.modules}, open(sys.argv[1], "w"))
print("CARRIED ON AFTER fit()")
'''


def test_ctrl_c_in_a_plain_script_stops_the_run_cleanly_then_stops_the_script(tmp_path):
    import json
    import os
    import subprocess
    import sys
    script, report = tmp_path / "train.py", tmp_path / "report.json"
    script.write_text(_SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (os.getcwd(), os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.run([sys.executable, str(script), str(report)], capture_output=True, text=True, timeout=120,
                          env=env, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert "CARRIED ON" not in proc.stdout, proc.stdout
    assert proc.returncode in (-signal.SIGINT, 128 + signal.SIGINT), (proc.returncode, proc.stderr[-2000:])
    assert "KeyboardInterrupt: training interrupted at epoch 0, step 5" in proc.stderr, proc.stderr[-2000:]
    r = json.loads(report.read_text())
    assert r["state"] == "stopped" and r["step"] == r["n_steps"] == 5 and r["same"], r


def test_fit_outside_ipython_reraises_the_interrupt_after_the_run_stopped(monkeypatch):
    monkeypatch.setattr("nnwidgets.engine.trainer.in_ipython", lambda: False)
    t, weights = _trainer(0)
    t.on("batch_completed", lambda tr, step, **_: _thread.interrupt_main() if step == 5 else None)
    with pytest.raises(KeyboardInterrupt, match="interrupted at epoch 0, step 5"):
        t.fit()
    assert t.state == "stopped" and t.step == 5 and _problem(t, weights) is None
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    t.fit()                                          # continues from step 5
    assert t.state == "completed" and _problem(t, weights) is None


def test_in_ipython_needs_a_running_shell_and_never_imports_ipython(monkeypatch):
    import sys
    import types
    from nnwidgets._interrupt import in_ipython
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    assert in_ipython() is False and "IPython" not in sys.modules
    fake = types.ModuleType("IPython")
    fake.get_ipython = lambda: None
    monkeypatch.setitem(sys.modules, "IPython", fake)
    assert in_ipython() is False
    fake.get_ipython = lambda: object()
    assert in_ipython() is True
