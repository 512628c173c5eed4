"""Browser rows of ``dashboard.py``: the ``%%train`` panel in Voilà / JupyterLab, headless
Chromium, real clicks.

For one (front end, workload): write the notebook (``_dashboard_notebook``), start the server
with the browser-test harness (``tests/browser/conftest.py``: ``run_voila`` / ``run_lab``,
``JupyterUI``, ``CHROMIUM_ARGS``), open it, wait until the panel is rendered, then click in this
order::

    reference, [Start, reference, (livelossplot, reference, lightning, reference)] x rounds

Each measured item's ratio is its steps/s ÷ the mean of the reference runs just before and
just after it. A measured run that has not finished after ``max_run_s`` s is ended with a
real click on the panel's Stop button (its steps/s still counts; ``stopped_early`` says so); the
next Start then finishes that run's remaining epochs. During every measured run the page's
WebSocket frames and the CPU time of Chromium, the kernel, the server and this driver are
recorded.
"""
from __future__ import annotations

import contextlib
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "browser"))

from conftest import _EXTERNAL_URL, CHROMIUM_ARGS, JupyterUI, run_lab, run_voila, write_notebook_file  # noqa: E402
from _kernel_probe import PanelUI, wait_until  # noqa: E402

from _dashboard_meters import Channel, CpuMeter, MachineMeter, WsMeter, wait_quiet  # noqa: E402
from _dashboard_notebook import notebook_cells  # noqa: E402
from _dashboard_workloads import TARGETS, epochs_for  # noqa: E402

PANEL_CLASS = "bench-panel"
ANCHORS = (("livelossplot", "bench-llp"), ("lightning", "bench-lightning"))


@contextlib.contextmanager
def launch_browser():
    """Playwright + Debian chromium (headless), closed on exit."""
    from playwright.sync_api import sync_playwright
    path = shutil.which("chromium")
    if not path:
        raise RuntimeError("Debian 'chromium' is not on PATH")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


class Session:
    """One page on one server, with the channel and meters; the clicking protocol."""

    def __init__(self, page, server, channel: Channel, ws: WsMeter, panel: PanelUI, run_timeout: float,
                 max_run_s: float, log, quiet_limit: float, quiet_wait: float) -> None:
        self.page, self.server, self.channel, self.ws, self.panel = page, server, channel, ws, panel
        self.cpu, self.machine = CpuMeter(server.pid), MachineMeter()
        self.quiet_limit, self.quiet_wait = quiet_limit, quiet_wait
        self.run_timeout, self.max_run_s, self.log = run_timeout, max_run_s, log

    def settle(self, quiet: float = 0.15, max_s: float = 30.0) -> dict:
        """Wait until Chromium uses < ``quiet`` CPU s/s over a 1-s window (page load and first
        renders done), at most ``max_s`` s; returns what was seen."""
        t0, last = time.monotonic(), None
        while time.monotonic() - t0 < max_s:
            a = self.cpu.snapshot()
            self.page.wait_for_timeout(1000)
            last = CpuMeter.rates(a, self.cpu.snapshot())["chromium"]
            if last < quiet:
                break
        return {"settle_s": time.monotonic() - t0, "chromium_cpu_s_per_s": last}

    def _gate(self) -> dict:
        return wait_quiet(self.machine, self.quiet_limit, self.quiet_wait,
                          sleep=lambda s: self.page.wait_for_timeout(s * 1000))

    def reference(self) -> dict:
        gate = self._gate()
        n = len(self.channel.of("reference"))
        m0, c0 = self.machine.snapshot(), self.cpu.snapshot()
        self.page.locator("button.bench-ref").first.click()
        rec = self.channel.wait("a reference run", lambda: self.channel.of("reference")[n:], self.run_timeout,
                                self.page)[0]
        return {**rec, **gate, **MachineMeter.rates(m0, self.machine.snapshot()),
                "cpu": CpuMeter.rates(c0, self.cpu.snapshot())}

    def _measure(self, click, kind: str, name: str | None, stop=None) -> dict:
        """Click, wait for the ``kind`` record, with meters around it."""
        match = {"name": name} if name else {}
        gate = self._gate()
        n = len(self.channel.of(kind, **match))
        cpu0, ws0, m0 = self.cpu.snapshot(), self.ws.snapshot(), self.machine.snapshot()
        t0 = time.monotonic()
        click()
        stopped = []

        def stop_late():
            if stop is not None and not stopped and time.monotonic() - t0 > self.max_run_s:
                stopped.append(time.monotonic() - t0)
                stop()

        rec = self.channel.wait(f"the end of a {name or kind} run", lambda: self.channel.of(kind, **match)[n:],
                                self.run_timeout + self.max_run_s, self.page, every=stop_late)[0]
        self.page.wait_for_timeout(50)
        cpu1, ws1, m1 = self.cpu.snapshot(), self.ws.snapshot(), self.machine.snapshot()
        out = {**rec, **gate}
        out["browser"] = {**CpuMeter.rates(cpu0, cpu1), **WsMeter.rates(ws0, ws1), **MachineMeter.rates(m0, m1),
                          "wall_s": cpu1["t"] - cpu0["t"]}
        out["stop_clicked_after_s"] = stopped[0] if stopped else None
        return out

    def nnwidgets_run(self) -> dict:
        start = self.panel.button("Start")
        wait_until("the panel's Start button to be enabled", start.is_enabled, 60, page=self.page)
        self.panel.root.locator(".bqplot.figure").first.scroll_into_view_if_needed()
        rec = self._measure(start.click, "run", None, stop=self.panel.button("Stop").click)
        rec["stopped_early"] = rec.get("ending") != "fit_completed"
        return rec

    def anchor_run(self, name: str, css: str) -> dict:
        rec = self._measure(self.page.locator(f"button.{css}").first.click, "anchor", name)
        rec["stopped_early"] = rec.get("seconds", 0) >= self.max_run_s
        return rec


def _open_voila(page, nb: Path, state: Path, stack: contextlib.ExitStack, timeout: float):
    server = stack.enter_context(run_voila(nb, state_dir=state))
    page.goto(server.url(), wait_until="domcontentloaded", timeout=timeout * 1000)
    return server


def _open_lab(page, nb: Path, state: Path, stack: contextlib.ExitStack, timeout: float):
    server = stack.enter_context(run_lab(nb.parent, state_dir=state))
    ui = JupyterUI(page)
    ui.open(server, nb.name, timeout=timeout)
    ui.run_all()
    ui.wait_idle(timeout=timeout)
    if ui.errors():
        raise RuntimeError(f"errors in the notebook: {ui.errors()}")
    return server


def run_frontend(browser, frontend: str, workload: str, rounds: int, scale: float, anchors: bool,
                 max_run_s: float, log=print, screenshot: Path | None = None, quiet_limit: float = 0.25,
                 quiet_wait: float = 10.0) -> dict:
    epochs = epochs_for(workload, scale)
    with tempfile.TemporaryDirectory(prefix=f"nnw-dash-{frontend}-{workload}-") as tmp, \
            contextlib.ExitStack() as stack:
        tmp = Path(tmp)
        results = tmp / "results.jsonl"
        nb = write_notebook_file(tmp / "nb" / f"bench_{workload}.ipynb",
                                 notebook_cells(workload, epochs, results, max_run_s, anchors))
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        stack.callback(context.close)
        context.set_default_timeout(60_000)
        context.route(_EXTERNAL_URL, lambda route: route.abort())
        page = context.new_page()
        console: list[str] = []
        page.on("pageerror", lambda e: console.append(
            f"[pageerror] {e.message} | " + " | ".join((e.stack or "").splitlines()[1:4])))
        ws = WsMeter(page)
        channel = Channel(results)
        t0 = time.perf_counter()
        opener = _open_voila if frontend == "voila" else _open_lab
        server = opener(page, nb, tmp / "state", stack, timeout=300)
        channel.wait("the notebook's 'ready' record", lambda: channel.of("ready"), 300, page)
        panel = PanelUI(page, PANEL_CLASS).wait_visible(timeout=120)
        load_s = time.perf_counter() - t0
        log(f"  {frontend} {workload}: page ready after {load_s:.0f}s ({epochs} epochs per run)")
        s = Session(page, server, channel, ws, panel, run_timeout=600, max_run_s=max_run_s, log=log,
                    quiet_limit=quiet_limit, quiet_wait=quiet_wait)

        settled = s.settle()
        warmup = s.reference()  # the first click after page load; not counted
        log(f"  {frontend} {workload}: settled in {settled['settle_s']:.1f}s; warm-up reference "
            f"{warmup['steps_per_s']:.0f} steps/s")
        items = [("nnwidgets", None)] + (list(ANCHORS) if anchors else [])
        refs = [s.reference()]
        per_round = []
        for r in range(rounds):
            row = {}
            for name, css in items:
                rec = s.nnwidgets_run() if name == "nnwidgets" else s.anchor_run(name, css)
                refs.append(s.reference())
                base = (refs[-2]["steps_per_s"] + refs[-1]["steps_per_s"]) / 2
                rec["ref_before"], rec["ref_after"] = refs[-2]["steps_per_s"], refs[-1]["steps_per_s"]
                rec["ref_other_cpu"] = [refs[-2]["other_cpu"], refs[-1]["other_cpu"]]
                rec["ratio"] = rec["steps_per_s"] / base
                row[name] = rec
            per_round.append(row)
            log(f"  {frontend} {workload} round {r + 1}/{rounds}: ref {refs[-1]['steps_per_s']:.0f} steps/s; "
                + "; ".join(f"{n} {row[n]['steps_per_s']:.0f} steps/s ratio {row[n]['ratio']:.3f} "
                            f"(other CPU {row[n]['browser']['other_cpu']:.2f})"
                            + (" (stopped at max-run-s)" if row[n].get("stopped_early") else "")
                            for n, _ in items))
        if screenshot is not None:
            with contextlib.suppress(Exception):
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshot), full_page=True)
                if anchors:  # the last anchor's output, below the panel
                    page.locator(".bench-anchor-out").first.scroll_into_view_if_needed()
                    page.screenshot(path=str(screenshot.with_name(screenshot.stem + "-anchors.png")))
        setup = (channel.of("setup_done") or [{}])[0]
        modes = {}
        for name, _ in items:
            recs = [row[name] for row in per_round]
            modes[name] = {
                "steps_per_s": statistics.median(r["steps_per_s"] for r in recs),
                "ratio": statistics.median(r["ratio"] for r in recs),
                "ratio_per_round": [r["ratio"] for r in recs],
                # the status line's overhead figure at the run's end, next to 1 - ratio (issue: within 5 points)
                "shown_overhead": _median_or_none([r.get("shown_overhead") for r in recs]),
                "browser": {k: statistics.median(r["browser"][k] for r in recs)
                            for k in ("ws_messages_per_s", "ws_kb_per_s", "chromium", "kernel", "server", "driver",
                                      "other_cpu")},
            }
        return {
            "frontend": frontend, "workload": workload, "epochs_per_run": epochs, "target": TARGETS[workload][0],
            "kernel_torch_threads": setup.get("torch_threads"), "page_ready_s": load_s,
            "server_startup_s": server.startup_s, "settle": settled, "warmup_reference": warmup,
            "reference": {"steps_per_s": statistics.median(r["steps_per_s"] for r in refs),
                          "per_run": refs,
                          "on_main_thread": all(r.get("main_thread") for r in refs)},
            "modes": modes, "rounds": per_round, "page_errors": console,
        }


def _median_or_none(values: list) -> float | None:
    values = [v for v in values if isinstance(v, (int, float))]
    return statistics.median(values) if values else None
