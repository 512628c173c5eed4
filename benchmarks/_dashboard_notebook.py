"""The notebook ``dashboard.py`` opens in Voilà / JupyterLab, for one workload.

Cells:
1. setup — the workload's data, ``make_model``, ``reference`` and ``attach_clock``
   (``_dashboard_workloads``), and ``emit(kind, **record)``, which appends one JSON line to the
   results file the driver polls (the kernel's only channel for numbers);
2. ``%load_ext nnwidgets``;
3. a "reference" button (class ``bench-ref``): its on_click runs ``reference(EPOCHS)`` on a
   fresh model where ipywidgets calls it — the kernel's shell thread, blocking it like a user's
   cell — then emits the steps/s and shows them (class ``bench-ref-result``);
4. ``%%train ... --no-start --name run``: the panel, displayed, not started;
5. the panel gets the class ``bench-panel``; ``attach_clock`` emits one ``run`` record at the
   end of every run (steps/s, ending, notices) and shows its steps/s (``bench-run-result``);
6. (anchors) a "livelossplot" and a "lightning" button over an Output widget: each runs the same
   model and data under ``with anchor_out:`` so the browser renders their plots / progress bars,
   for EPOCHS epochs or until MAX_RUN_S s have passed (checked at epoch ends).
"""
from __future__ import annotations

from pathlib import Path

from _dashboard_workloads import WORKLOADS, setup_source

CHANNEL = '''\
import json, os, threading
RESULTS = {results!r}
MAX_RUN_S = {max_run_s!r}
_emit_lock = threading.Lock()

def emit(kind, **record):
    record.update(kind=kind, t=time.time())
    with _emit_lock, open(RESULTS, "a") as f:
        f.write(json.dumps(record, default=str) + "\\n")

reference(max(1, EPOCHS // 10))  # warm-up
emit("setup_done", torch_threads=torch.get_num_threads())
'''

CONTROLS = '''\
import ipywidgets as widgets
from IPython.display import display

ref_button = widgets.Button(description="reference")
ref_button.add_class("bench-ref")
ref_result = widgets.HTML("ref: not run yet")
ref_result.add_class("bench-ref-result")
_ref_count = [0]

def _on_reference(_):
    steps, secs = reference(EPOCHS)
    _ref_count[0] += 1
    th = threading.current_thread()
    emit("reference", seq=_ref_count[0], steps=steps, seconds=secs, steps_per_s=steps / secs,
         thread=th.name, main_thread=th is threading.main_thread())
    ref_result.value = f"ref {_ref_count[0]}: {steps / secs:.1f} steps/s"

ref_button.on_click(_on_reference)
run_result = widgets.HTML("run: not run yet")
run_result.add_class("bench-run-result")
display(widgets.HBox([ref_button, ref_result, run_result]))
'''

TRAIN = '''\
%%train model train_loader {val}--epochs {epochs} --lr {lr} --momentum {momentum} --no-start --name run
model = make_model()
'''

HOOKS = '''\
_ = run.add_class("bench-panel")

def _on_run_end(record):
    emit("run", **record)
    try:  # an exception in a handler would fail the run
        run_result.value = f" | run: {record['steps_per_s']:.1f} steps/s ({record['ending']})"
    except Exception:
        pass

attach_clock(run.trainer, _on_run_end)
emit("ready", state=run.trainer.state)
'''

ANCHORS = '''\
%matplotlib inline
anchor_out = widgets.Output()
anchor_out.add_class("bench-anchor-out")

def _anchor_record(name, steps, secs, epochs):
    th = threading.current_thread()
    emit("anchor", name=name, steps=steps, seconds=secs, steps_per_s=steps / secs, epochs=epochs,
         thread=th.name, main_thread=th is threading.main_thread())

def _run_livelossplot(_):
    from livelossplot import PlotLosses
    with anchor_out:
        anchor_out.clear_output()
        model = make_model()
        opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
        loss_fn = nn.CrossEntropyLoss()
        liveloss = PlotLosses()
        steps, epoch, t0 = 0, 0, time.perf_counter()
        while epoch < EPOCHS and time.perf_counter() - t0 < MAX_RUN_S:
            model.train()
            total, n = 0.0, 0
            for xb, yb in train_loader:
                opt.zero_grad()
                loss = loss_fn(model(xb), yb)
                loss.backward()
                opt.step()
                total += loss.item() * len(yb)
                n += len(yb)
                steps += 1
            logs = {"loss": total / n}
            if val_loader is not None:
                model.eval()
                with torch.no_grad():
                    val_loss, correct, m = 0.0, 0, 0
                    for xb, yb in val_loader:
                        out = model(xb)
                        val_loss += loss_fn(out, yb).item() * len(yb)
                        correct += (out.argmax(1) == yb).sum().item()
                        m += len(yb)
                logs.update(val_loss=val_loss / m, val_accuracy=correct / m)
            liveloss.update(logs)
            liveloss.send()
            epoch += 1
        secs = time.perf_counter() - t0
    _anchor_record("livelossplot", steps, secs, epoch)

def _run_lightning(_):
    import lightning as L

    class Lit(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.model, self.loss_fn = make_model(), nn.CrossEntropyLoss()

        def training_step(self, batch, batch_idx):
            xb, yb = batch
            loss = self.loss_fn(self.model(xb), yb)
            self.log("train_loss", loss, prog_bar=True)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=LR, momentum=MOMENTUM)

    class LitVal(Lit):
        def validation_step(self, batch, batch_idx):
            xb, yb = batch
            out = self.model(xb)
            self.log("val_loss", self.loss_fn(out, yb), prog_bar=True)
            self.log("val_acc", (out.argmax(1) == yb).float().mean(), prog_bar=True)

    class TimeBudget(L.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            if time.perf_counter() - t0 >= MAX_RUN_S:
                trainer.should_stop = True

    with anchor_out:
        anchor_out.clear_output()
        t0 = time.perf_counter()
        trainer = L.Trainer(max_epochs=EPOCHS, enable_checkpointing=False, logger=False,
                            callbacks=[TimeBudget()])
        module = LitVal() if val_loader is not None else Lit()
        trainer.fit(module, train_loader, val_loader)
        secs = time.perf_counter() - t0
    _anchor_record("lightning", trainer.global_step, secs, trainer.current_epoch)

llp_button = widgets.Button(description="livelossplot")
llp_button.add_class("bench-llp")
llp_button.on_click(_run_livelossplot)
lit_button = widgets.Button(description="lightning")
lit_button.add_class("bench-lightning")
lit_button.on_click(_run_lightning)
display(widgets.VBox([widgets.HBox([llp_button, lit_button]), anchor_out]))
'''


def notebook_cells(workload: str, epochs: int, results: Path, max_run_s: float,
                   anchors: bool) -> list[str]:
    """Code cells of the benchmark notebook for ``workload`` (see the module docstring)."""
    w = WORKLOADS[workload]
    cells = [
        setup_source(workload, epochs) + "\n" + CHANNEL.format(results=str(results), max_run_s=float(max_run_s)),
        "%load_ext nnwidgets",
        CONTROLS,
        TRAIN.format(val="--val val_loader " if w["val"] else "", epochs=int(epochs), lr=w["lr"],
                     momentum=w["momentum"]),
        HOOKS,
    ]
    if anchors:
        cells.append(ANCHORS)
    return cells
