"""Shared pieces of the panel and network browser tests.

Notebook side: cell sources that build seeded synthetic data and small models, start training
with ``%%train`` (so the panel is the one users get), and a *probe* cell that starts a daemon
thread writing what the kernel sees (trainer state, step, ``optimizer.param_groups[*]["lr"]``,
the learning rates that arrived from the browser with the step at arrival, setting events) to
``probe.json`` next to the notebook every 0.1 s. The kernel's cwd is the notebook's folder in
Voila, JupyterLab and Notebook 7, so the test reads that file to check kernel-side effects of
real browser input.

Browser side: small helpers on top of Playwright (a real mouse drag on a slider handle,
reading points of bqplot lines, waiting on a condition with a readable failure).
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any, Callable

PROBE_FILE = "probe.json"

# A layer name that runs script if anything inserts it as HTML (module names may not contain
# ".", hence ``__xss=1``: a sloppy-mode inline handler assigns the global ``window.__xss``).
XSS_NAME = "<img src=x onerror=__xss=1>"
SCRIPT_NAME = "<script>__xss2=1</script><b>bold?</b>"

SETUP = """\
import json, os, threading, time
from collections import OrderedDict
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset, default_collate
torch.set_num_threads(1)  # the test machine is small and shared with the browser and server
%load_ext nnwidgets

def paced(batch):
    # ~3 ms per batch: the run stays at a few hundred steps/s, so the small test machine still
    # serves the browser, and the first seconds of the loss line are drawn point by point
    time.sleep(0.003)
    return default_collate(batch)

g = torch.Generator().manual_seed(0)
X = torch.randn(2048, 2, generator=g)
y = ((X[:, 0] > 0).long() + (X[:, 1] > 0).long())          # 3 classes: 0, 1, 2
Xv = torch.randn(256, 2, generator=g)
yv = ((Xv[:, 0] > 0).long() + (Xv[:, 1] > 0).long())
loader = DataLoader(TensorDataset(X, y), batch_size=8, shuffle=True, generator=g, collate_fn=paced)
val_loader = DataLoader(TensorDataset(Xv, yv), batch_size=256)
"""

# 2-8-8-3 MLP; the hidden layer named ``hidden_name`` (a plain name or an XSS payload).
MLP_BODY = """\
torch.manual_seed(0)
model = nn.Sequential(OrderedDict([
    ("fc1", nn.Linear(2, 8)), ("act1", nn.ReLU()),
    ({hidden_name!r}, nn.Linear(8, 8)), ("act2", nn.ReLU()),
    ("out", nn.Linear(8, 3)),
]))
"""

CONV_SETUP = """\
gc = torch.Generator().manual_seed(1)
Xc = torch.randn(256, 1, 8, 8, generator=gc)
yc = (Xc.mean((1, 2, 3)) > 0).long()
conv_loader = DataLoader(TensorDataset(Xc, yc), batch_size=8, shuffle=True, generator=gc)
"""

# A small conv net (block view), one module named ``script_name``.
CONV_BODY = """\
torch.manual_seed(0)
conv_model = nn.Sequential(OrderedDict([
    ("conv", nn.Conv2d(1, 4, 3, padding=1)), ("relu", nn.ReLU()),
    ({script_name!r}, nn.MaxPool2d(2)), ("flat", nn.Flatten()),
    ("head", nn.Linear(4 * 4 * 4, 2)),
]))
"""
CONV_PANEL_CLASS = "test-conv-panel"


def train_cell(body: str, *, epochs: int = 400, lr: float = 0.01, val: bool = True, extra: str = "") -> str:
    """``%%train`` cell (panel bound to ``run``), training in the background; ``body`` builds
    ``model``. With the defaults a run lasts many minutes (256 paced steps per epoch), so it
    is still running whenever the test acts; the test stops it."""
    v = "--val val_loader " if val else ""
    return (f"%%train model loader {v}--epochs {epochs} --lr {lr} --momentum 0.9 --seed 0 --name run {extra}\n"
            f"{body}")


PROBE = """\
_probe_arrivals = []   # learning rates that reached the kernel from the browser, with the step then
def _probe_on_lr(change):
    _probe_arrivals.append({"value": change["new"], "step": run.trainer.step, "state": run.trainer.state})
run.controls.lr.observe(_probe_on_lr, names="value")

def _probe_loop():
    t = run.trainer
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline and not os.path.exists("probe.stop"):
        events = [e for e in t.history.event_records if e["kind"] in ("setting", "state")]
        data = {
            "t": time.time(), "state": t.state, "step": t.step, "epoch": t.epoch,
            "lr_groups": [g["lr"] for g in t.optimizer.param_groups],
            "lr_widget": run.controls.lr.value, "arrivals": list(_probe_arrivals),
            "events": [{k: e[k] for k in ("step", "kind", "name", "old", "new")} for e in events],
            "tabs": [title for title, _ in run.views],
            "messages": [m for _, m in run.status.messages],
        }
        with open("probe.tmp", "w") as f:
            json.dump(data, f, default=str)
        os.replace("probe.tmp", "probe.json")
        time.sleep(0.1)
threading.Thread(target=_probe_loop, name="test-probe", daemon=True).start()
_ = run.add_class("test-run-panel")   # lets the test find this panel (add_class returns the panel)
"""


def panel_notebook(hidden_name: str = "fc2", *, epochs: int = 400, start: bool = False) -> list[str]:
    """Cells: setup, ``%%train`` of the 2-8-8-3 MLP (hidden layer ``hidden_name``), probe.
    Unless ``start``, the panel waits for its Start button (``--no-start``)."""
    body = MLP_BODY.format(hidden_name=hidden_name)
    return [SETUP, train_cell(body, epochs=epochs, extra="" if start else "--no-start"), PROBE]


def network_notebook(script_name: str = SCRIPT_NAME) -> list[str]:
    """Cells of :func:`panel_notebook` (2-8-8-3 MLP, ``--no-start``) plus a second panel
    (``conv``, class ``CONV_PANEL_CLASS``, ``--no-start``) on a small conv net with a module
    named ``script_name``."""
    conv = (f"%%train conv_model conv_loader --epochs 5 --lr 0.01 --name conv --no-start\n"
            f"{CONV_BODY.format(script_name=script_name)}")
    return panel_notebook() + [CONV_SETUP, conv, f"_ = conv.add_class({CONV_PANEL_CLASS!r})"]


# --------------------------------------------------------------------------------------------
# Reading the probe
# --------------------------------------------------------------------------------------------


def read_probe(folder: Path) -> dict | None:
    try:
        return json.loads((Path(folder) / PROBE_FILE).read_text())
    except (OSError, ValueError):
        return None


def wait_until(what: str, fn: Callable[[], Any], timeout: float = 60.0, interval: float = 0.1,
               page: Any = None) -> Any:
    """Call ``fn`` until it returns something truthy (returned); AssertionError after
    ``timeout`` s naming ``what`` and the last value seen."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = fn()
        except Exception as e:  # noqa: BLE001 - a locator that is not there yet
            last = e
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}"[:3000])
        if page is not None:
            page.wait_for_timeout(interval * 1000)
        else:
            time.sleep(interval)


def wait_probe(folder: Path, what: str, pred: Callable[[dict], Any], timeout: float = 60.0,
               page: Any = None) -> dict:
    """The newest probe record for which ``pred(record)`` is truthy."""
    def check():
        p = read_probe(folder)
        return p if p is not None and pred(p) else None
    return wait_until(f"kernel probe: {what} (last probe: {read_probe(folder)})", check, timeout, page=page)


# --------------------------------------------------------------------------------------------
# Browser helpers
# --------------------------------------------------------------------------------------------


# One <g class="curve"> per line of a bqplot Lines mark: <path class="line" d="M..L.."> and a
# <text class="curve_label"> holding the line's label.
_LINE_POINTS_JS = """
([root, title]) => {
  const out = {};
  const rootEl = document.querySelector(root);
  if (!rootEl) return null;
  for (const fig of rootEl.querySelectorAll('.bqplot.figure')) {
    const head = fig.querySelector('text.mainheading');
    if (!head || head.textContent !== title) continue;
    for (const curve of fig.querySelectorAll('svg.svg-figure g.curve')) {
      const label = curve.querySelector('text.curve_label');
      const path = curve.querySelector('path.line');
      if (!label || !path) continue;
      const d = path.getAttribute('d') || '';
      out[label.textContent] = (d.match(/[ML]/g) || []).length;
    }
    return out;
  }
  return null;
}
"""

# The legend of a chart is the HTML row (``.nnw-legend``) in the chart's box, above the figure.
_LEGEND_JS = """
([root, title]) => {
  const rootEl = document.querySelector(root);
  for (const fig of (rootEl ? rootEl.querySelectorAll('.bqplot.figure') : [])) {
    const head = fig.querySelector('text.mainheading');
    if (!head || head.textContent !== title) continue;
    for (let box = fig.parentElement; box && box !== rootEl; box = box.parentElement) {
      const legend = box.querySelector('.nnw-legend');
      if (legend) return [...legend.querySelectorAll('.nnw-legend-item')].map(t => t.textContent);
    }
    return [];
  }
  return null;
}
"""


PANEL_CLASS = "test-run-panel"


class PanelUI:
    """A TrainingPanel in the page, found by the CSS class the probe cell adds to it.

    Args:
        page: the Playwright page.
        css_class: the class the notebook added to the panel (``run.add_class(...)``).
    """

    def __init__(self, page, css_class: str = PANEL_CLASS) -> None:
        self.page = page
        self.selector = f".{css_class}"
        self.root = page.locator(self.selector).first

    def wait_visible(self, timeout: float = 120.0) -> "PanelUI":
        self.root.wait_for(state="visible", timeout=timeout * 1000)
        self.page.locator(f"{self.selector} .widget-slider").first.wait_for(state="visible", timeout=30_000)
        return self

    def button(self, label: str):
        return self.root.locator("button.widget-button", has_text=re.compile(rf"^\s*{label}\s*$")).first

    def slider(self, description: str):
        return self.root.locator(".widget-slider", has_text=description).first

    def tab(self, title: str):
        return self.root.locator(".lm-TabBar-tab", has_text=title).first

    def open_tab(self, title: str) -> None:
        self.tab(title).click()
        wait_until(f"tab {title!r} to be current",
                   lambda: "lm-mod-current" in (self.tab(title).get_attribute("class") or ""), 10, page=self.page)

    def state_text(self) -> str:
        """The status line's state (first HTML widget of the status box)."""
        return self.root.locator(".widget-html").first.inner_text().strip()

    def info_text(self) -> str:
        """``epoch a/b · step n/m · ...`` label of the status line."""
        return self.root.locator(".widget-html", has_text="step ").first.inner_text().strip()

    def shown_step(self) -> int:
        m = re.search(r"step ([\d,]+)", self.info_text())
        return int(m.group(1).replace(",", "")) if m else -1

    def legend(self, figure_title: str) -> list[str]:
        """Legend entries of the chart whose bqplot figure is titled ``figure_title`` (the HTML
        legend above the figure)."""
        return self.page.evaluate(_LEGEND_JS, [self.selector, figure_title]) or []

    def line_points(self, figure_title: str) -> dict[str, int]:
        """``{line label: number of points drawn}`` for the bqplot figure titled ``figure_title``."""
        return self.page.evaluate(_LINE_POINTS_JS, [self.selector, figure_title]) or {}


def drag_slider(page, slider, dx: float) -> tuple[str, str]:
    """Drag the handle of the ipywidgets slider ``slider`` (a locator of ``.widget-slider``) by
    ``dx`` pixels with the mouse (down, several moves, up); returns the readout text before and
    after."""
    before = slider.locator(".widget-readout").inner_text().strip()
    handle = slider.locator(".noUi-handle").first
    handle.scroll_into_view_if_needed()
    box = handle.bounding_box()
    assert box, "slider handle has no bounding box (not visible?)"
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    for k in range(1, 11):
        page.mouse.move(x + dx * k / 10, y)
        page.wait_for_timeout(20)
    page.mouse.up()
    after = wait_until("slider readout to change after the drag",
                       lambda: (t := slider.locator(".widget-readout").inner_text().strip()) != before and t,
                       timeout=10, page=page)
    return before, after


def open_voila(page, server, timeout: float = 180.0) -> None:
    """Load a Voila dashboard; Voila answers only once the notebook has run, which takes a while
    on a busy machine (torch import, kernel start), hence the long timeout."""
    page.goto(server.url(), wait_until="domcontentloaded", timeout=timeout * 1000)


def js_undefined(page, name: str) -> bool:
    return page.evaluate(f"() => typeof window[{name!r}] === 'undefined'")


DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
UPDATE_ENV = "NNWIDGETS_UPDATE_SCREENSHOTS"


def screenshot_paths(artifacts_dir: Path, name: str, readme: bool = True) -> list[Path]:
    """Where a screenshot goes: always ``<artifacts_dir>/<name>``, and also
    ``docs/images/<name>`` when ``readme`` and ``$NNWIDGETS_UPDATE_SCREENSHOTS=1`` (so test runs
    do not rewrite committed images)."""
    import os
    out = [Path(artifacts_dir) / name]
    if readme and os.environ.get(UPDATE_ENV, "").strip() not in ("", "0"):
        out.append(DOCS_IMAGES / name)
    return out


def save_screenshot(locator, paths: list[Path]) -> None:
    data = locator.screenshot()
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
