"""What ``dashboard.py`` reads while the browser runs: the kernel's results file, CPU time of
the processes involved, and the WebSocket frames the page receives.

* :class:`Channel` — JSON lines the kernel appends (``emit(...)`` in the notebook), read
  incrementally; waiting on it pumps Playwright so page events keep flowing.
* :class:`CpuMeter` — user+system CPU seconds (``psutil``, i.e. ``/proc/<pid>/stat``) of
  process groups: the Chromium this script launched (descendants of this process named
  ``chromium``/``chrome``, so no other browser on the machine is counted), the kernel
  (descendants of the server running ``ipykernel``), the server process, and the driver
  (this process and Playwright's node driver).
* :class:`WsMeter` — frames and bytes received by the page over WebSockets.
* :class:`MachineMeter` / :func:`wait_quiet` — CPU used on the whole machine by processes
  other than this one and its descendants (servers, kernels, Chromium): on a shared 2-core
  machine the reference loop under torch's default thread count slows down many times over as
  soon as anything else runs, so every measurement records this "other" load, and rounds wait
  (up to a limit) until it is low.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable

import psutil


class Channel:
    def __init__(self, path: Path) -> None:
        self.path, self._pos, self._buf = Path(path), 0, ""
        self.records: list[dict] = []

    def poll(self) -> list[dict]:
        try:
            with open(self.path) as f:
                f.seek(self._pos)
                chunk = f.read()
                self._pos = f.tell()
        except FileNotFoundError:
            return self.records
        self._buf += chunk
        *lines, self._buf = self._buf.split("\n")
        for line in lines:
            if line.strip():
                self.records.append(json.loads(line))
        return self.records

    def of(self, kind: str, **match: Any) -> list[dict]:
        return [r for r in self.poll() if r.get("kind") == kind
                and all(r.get(k) == v for k, v in match.items())]

    def wait(self, what: str, pred: Callable[[], Any], timeout: float, page=None,
             every: Callable[[], None] | None = None) -> Any:
        """Poll until ``pred()`` is truthy (returned); ``every()`` is called on each poll;
        TimeoutError naming ``what``."""
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            got = pred()
            if got:
                return got
            if every is not None:
                every()
            if time.monotonic() > deadline:
                tail = self.records[-3:]
                raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}; last records: {tail}")
            if page is not None:
                page.wait_for_timeout(100)  # lets Playwright dispatch page/websocket events
            else:
                time.sleep(0.1)


def _cpu(procs: list[psutil.Process]) -> dict[int, float]:
    out = {}
    for p in procs:
        try:
            t = p.cpu_times()
            out[p.pid] = t.user + t.system
        except psutil.Error:
            pass
    return out


class CpuMeter:
    """CPU seconds per wall second of named process groups over an interval."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.me = psutil.Process(os.getpid())

    def groups(self) -> dict[str, list[psutil.Process]]:
        mine = self.me.children(recursive=True)
        chromium = [p for p in mine if _name(p).startswith(("chromium", "chrome"))]
        driver = [self.me] + [p for p in mine if _name(p) == "node"]
        try:
            server = psutil.Process(self.server_pid)
            below = server.children(recursive=True)
        except psutil.Error:
            server, below = None, []
        kernel = [p for p in below if "ipykernel" in " ".join(_cmdline(p))]
        return {"chromium": chromium, "kernel": kernel, "server": [server] if server else [], "driver": driver}

    def snapshot(self) -> dict:
        return {"t": time.perf_counter(), "cpu": {k: _cpu(v) for k, v in self.groups().items()}}

    @staticmethod
    def rates(a: dict, b: dict) -> dict[str, float]:
        """CPU s/s per group between snapshots ``a`` and ``b`` (a process that started in
        between counts from zero; one that ended in between is lost)."""
        wall = b["t"] - a["t"]
        out = {}
        for group, after in b["cpu"].items():
            before = a["cpu"].get(group, {})
            used = sum(t - before.get(pid, 0.0) for pid, t in after.items())
            out[group] = used / wall if wall > 0 else 0.0
        out["n_chromium_processes"] = len(b["cpu"].get("chromium", {}))
        return out


def _name(p: psutil.Process) -> str:
    try:
        return p.name()
    except psutil.Error:
        return ""


def _cmdline(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except psutil.Error:
        return []


class MachineMeter:
    """Machine-wide busy CPU s/s, split into this process tree ("own") and the rest ("other")."""

    def __init__(self) -> None:
        self.me = psutil.Process(os.getpid())

    def snapshot(self) -> dict:
        t = psutil.cpu_times()  # steal (the hypervisor gave the CPU to someone else) counts as other
        busy = sum(getattr(t, f, 0.0) for f in ("user", "nice", "system", "irq", "softirq", "steal"))
        own = sum(_cpu([self.me] + self.me.children(recursive=True)).values())
        return {"t": time.perf_counter(), "busy": busy, "own": own}

    @staticmethod
    def rates(a: dict, b: dict) -> dict[str, float]:
        wall = b["t"] - a["t"]
        if wall <= 0:
            return {"machine_cpu": 0.0, "other_cpu": 0.0}
        busy = (b["busy"] - a["busy"]) / wall
        own = (b["own"] - a["own"]) / wall
        return {"machine_cpu": busy, "other_cpu": max(0.0, busy - own)}


def wait_quiet(meter: MachineMeter, limit: float, max_wait: float, sleep=time.sleep,
               window: float = 0.5) -> dict:
    """Wait until other processes use < ``limit`` CPU s/s over a ``window``-s window, at most
    ``max_wait`` s (0: just measure one window). Returns the wait and the last reading."""
    t0 = time.monotonic()
    while True:
        a = meter.snapshot()
        sleep(window)
        other = MachineMeter.rates(a, meter.snapshot())["other_cpu"]
        waited = time.monotonic() - t0
        if other < limit or waited >= max_wait:
            return {"quiet_wait_s": round(waited, 2), "other_cpu_before": round(other, 3), "quiet": other < limit}


class WsMeter:
    """Counts WebSocket frames received by ``page`` (attach before navigating)."""

    def __init__(self, page) -> None:
        self.frames, self.bytes, self.sockets = 0, 0, 0
        page.on("websocket", self._on_ws)

    def _on_ws(self, ws) -> None:
        self.sockets += 1
        ws.on("framereceived", self._on_frame)

    def _on_frame(self, payload) -> None:
        self.frames += 1
        self.bytes += len(payload.encode("utf-8")) if isinstance(payload, str) else len(payload)

    def snapshot(self) -> dict:
        return {"t": time.perf_counter(), "frames": self.frames, "bytes": self.bytes}

    @staticmethod
    def rates(a: dict, b: dict) -> dict[str, float]:
        wall = b["t"] - a["t"]
        return {"ws_messages_per_s": (b["frames"] - a["frames"]) / wall if wall > 0 else 0.0,
                "ws_kb_per_s": (b["bytes"] - a["bytes"]) / 1024 / wall if wall > 0 else 0.0,
                "ws_messages": b["frames"] - a["frames"], "ws_kb": (b["bytes"] - a["bytes"]) / 1024}
