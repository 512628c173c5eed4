"""Browser-test harness: real Jupyter servers and Voila, driven by a real (Debian) Chromium.

Fixtures (all tests in this folder are marked ``browser`` automatically):

``chromium_path``            session  path of Debian's ``chromium`` (skip locally / fail in CI if absent)
``browser``                  session  Playwright ``Browser`` on that executable (headless)
``page``                     function fresh context + page, 1400x1000; requests to anything but
                                      127.0.0.1/localhost are aborted; on failure a screenshot and
                                      the browser console are saved under ``test-artifacts/``
``artifacts_dir``            session  ``<repo>/test-artifacts`` (created)
``notebook_dir``             function empty temporary folder for notebooks
``write_notebook``           function ``write_notebook(name, cells, directory=None) -> Path``
``prepare_notebook``         function ``prepare_notebook(src) -> Path``: copy into notebook_dir, kernel python3
``voila_server``             function ``voila_server(notebook_path, *extra_args) -> Server``
``lab_server``               function ``lab_server(root_dir, *extra_args) -> Server``   (JupyterLab)
``notebook_server``          function ``notebook_server(root_dir, *extra_args) -> Server`` (Notebook 7)
``jupyter_ui``               function ``JupyterUI`` bound to ``page``: open / run_all / wait_idle / wait_for

``Server`` has ``kind``, ``base_url`` ("http://127.0.0.1:PORT/"), ``token``, ``root_dir``, ``pid``,
``log_path``, ``startup_s`` and ``url(path="")`` (adds the token); servers started through the
factories are stopped (kernels shut down first, leftovers killed by PID) at test teardown.
The context managers ``run_voila``/``run_lab``/``run_notebook`` do the same for other scopes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS_DIR = REPO_ROOT / "test-artifacts"
SERVER_START_TIMEOUT = float(os.environ.get("NNWIDGETS_SERVER_TIMEOUT", "90"))
SERVER_STOP_TIMEOUT = 10.0

# Debian chromium as root, offline, in a container.  Playwright adds --headless (headless=True)
# and a fresh temporary --user-data-dir itself (it refuses --user-data-dir in launch()).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-features=Translate,MediaRouter,OptimizationHints",
]

# Every request that does not go to the local servers is aborted (CI has no general network,
# and a page waiting on a CDN would only make tests slow and flaky).
_EXTERNAL_URL = re.compile(r"^(https?|wss?)://(?!(127\.0\.0\.1|localhost)(:\d+)?(/|$))")

KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}

_TIMINGS: list[tuple[str, float]] = []


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _missing(msg: str) -> None:
    """A missing browser prerequisite: an error in CI, a skip elsewhere."""
    if _in_ci():
        pytest.fail(f"{msg} (CI is set, so browser tests may not be skipped)", pytrace=False)
    pytest.skip(msg)


# --------------------------------------------------------------------------------------------
# pytest hooks
# --------------------------------------------------------------------------------------------

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        try:
            inside = Path(str(item.fspath)).resolve().is_relative_to(_HERE)
        except (OSError, ValueError):
            inside = False
        if inside:
            item.add_marker(pytest.mark.browser)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def pytest_terminal_summary(terminalreporter):
    if _TIMINGS:
        terminalreporter.section("browser harness timings")
        for label, seconds in _TIMINGS:
            terminalreporter.write_line(f"{seconds:7.2f}s  {label}")


# --------------------------------------------------------------------------------------------
# Browser
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS_DIR


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = shutil.which("chromium")
    if not path:
        _missing("Debian 'chromium' is not on PATH (bash scripts/setup.sh --test installs it as root)")
    return path


@pytest.fixture(scope="session")
def browser(chromium_path):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[test]')")
    t0 = time.perf_counter()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS, headless=True)
        _TIMINGS.append((f"chromium launch ({b.version})", time.perf_counter() - t0))
        try:
            yield b
        finally:
            b.close()


def _safe_name(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_")[-150:]


@pytest.fixture
def page(browser, request, artifacts_dir):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(30_000)
    blocked: list[str] = []

    def _abort(route):
        blocked.append(route.request.url)
        route.abort()

    context.route(_EXTERNAL_URL, _abort)
    pg = context.new_page()
    console: list[str] = []
    pg.on("console", lambda m: console.append(f"[{m.type}] {m.text}"))
    pg.on("pageerror", lambda e: console.append(f"[pageerror] {e}"))
    pg.console_messages_log = console  # for tests that want to assert on them
    pg.blocked_requests = blocked
    try:
        yield pg
    finally:
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            name = _safe_name(request.node.nodeid)
            with contextlib.suppress(Exception):
                pg.screenshot(path=str(artifacts_dir / f"FAILED-{name}.png"), full_page=True)
            with contextlib.suppress(Exception):
                (artifacts_dir / f"FAILED-{name}.console.txt").write_text(
                    "\n".join(console + [f"[blocked] {u}" for u in blocked]) + "\n"
                )
        with contextlib.suppress(Exception):
            context.close()


# --------------------------------------------------------------------------------------------
# Notebooks
# --------------------------------------------------------------------------------------------


@pytest.fixture
def notebook_dir(tmp_path) -> Path:
    d = tmp_path / "notebooks"
    d.mkdir()
    return d


def _ensure_kernelspec(nb) -> None:
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata.setdefault("language_info", {"name": "python"})


def write_notebook_file(path: Path, cells: str | Sequence) -> Path:
    """Write a notebook whose kernelspec is python3 (no "Select kernel" dialog in Lab).

    ``cells``: a string (one code cell) or a sequence of strings (code cells; a string that
    starts with ``"%%md\\n"`` becomes a markdown cell) or nbformat cell objects.
    """
    import nbformat

    if isinstance(cells, str):
        cells = [cells]
    nb = nbformat.v4.new_notebook()
    _ensure_kernelspec(nb)
    for c in cells:
        if isinstance(c, str):
            if c.startswith("%%md\n"):
                nb.cells.append(nbformat.v4.new_markdown_cell(c[len("%%md\n"):]))
            else:
                nb.cells.append(nbformat.v4.new_code_cell(c))
        else:
            nb.cells.append(c)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


@pytest.fixture
def write_notebook(notebook_dir) -> Callable[..., Path]:
    def _write(name: str, cells: str | Sequence, directory: Path | None = None) -> Path:
        if not name.endswith(".ipynb"):
            name += ".ipynb"
        return write_notebook_file(Path(directory or notebook_dir) / name, cells)

    return _write


@pytest.fixture
def prepare_notebook(notebook_dir) -> Callable[..., Path]:
    """Copy an existing notebook into notebook_dir, forcing kernelspec python3; returns the copy."""
    import nbformat

    def _prepare(src: str | Path, name: str | None = None) -> Path:
        src = Path(src)
        nb = nbformat.read(str(src), as_version=4)
        _ensure_kernelspec(nb)
        dest = notebook_dir / (name or src.name)
        nbformat.write(nb, str(dest))
        return dest

    return _prepare


# --------------------------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------------------------


@dataclass
class Server:
    kind: str  # "voila" | "lab" | "notebook"
    base_url: str  # "http://127.0.0.1:PORT/"
    token: str
    root_dir: Path
    proc: subprocess.Popen
    log_path: Path
    startup_s: float = 0.0
    notebook: str | None = None  # voila: the notebook it serves
    _log_file: object = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def url(self, path: str = "", **query: str) -> str:
        q = dict(query)
        if self.token:
            q["token"] = self.token
        u = self.base_url + path.lstrip("/")
        if q:
            u += ("&" if "?" in u else "?") + "&".join(f"{k}={v}" for k, v in q.items())
        return u

    def __str__(self) -> str:
        return self.url()

    def api(self, method: str, path: str, body=None, timeout: float = 10.0):
        """JSON REST call (Lab/Notebook): ``server.api("GET", "api/kernels")``."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url(path), data=data, method=method)
        if self.token:
            req.add_header("Authorization", f"token {self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
        return json.loads(raw) if raw else None

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "<no log>"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_env(state_dir: Path) -> dict:
    env = dict(os.environ)
    for sub in ("config", "data", "runtime", "ipython"):
        (state_dir / sub).mkdir(parents=True, exist_ok=True)
    env.update(
        JUPYTER_CONFIG_DIR=str(state_dir / "config"),  # no user config leaks in
        JUPYTER_DATA_DIR=str(state_dir / "data"),  # no user kernels/labextensions
        JUPYTER_RUNTIME_DIR=str(state_dir / "runtime"),
        JUPYTER_PREFER_ENV_PATH="1",  # the venv's python3 kernelspec wins
        JUPYTER_PLATFORM_DIRS="1",
        IPYTHONDIR=str(state_dir / "ipython"),  # no user startup files in kernels
        PYTHONUNBUFFERED="1",
        MPLBACKEND="Agg",
        BROWSER="true",  # never open a browser, whatever a flag says
    )
    env.pop("JUPYTER_TOKEN", None)
    return env


def _wait_ready(server: Server, ready_path: str, need_ok: bool) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    last = "no attempt"
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(
                f"{server.kind} server exited with {server.proc.returncode} during start-up:\n"
                + server.log_tail()
            )
        try:
            with urllib.request.urlopen(server.url(ready_path), timeout=2) as r:
                if r.status == 200 or not need_ok:
                    return
                last = f"HTTP {r.status}"
        except urllib.error.HTTPError as e:  # the server answers: up, unless we need a 200
            if not need_ok:
                return
            last = f"HTTP {e.code}"
        except (urllib.error.URLError, OSError) as e:
            last = repr(e)
        time.sleep(0.1)
    raise TimeoutError(
        f"{server.kind} server not ready after {SERVER_START_TIMEOUT:.0f}s ({last}):\n"
        + server.log_tail()
    )


def _descendants(pid: int) -> list:
    try:
        import psutil

        return psutil.Process(pid).children(recursive=True)
    except Exception:
        return []


def _stop_server(server: Server) -> None:
    proc = server.proc
    if proc.poll() is None and server.kind in ("lab", "notebook"):
        # Shut kernels down through the server first (clean kernel exit, no orphans).
        with contextlib.suppress(Exception):
            for k in server.api("GET", "api/kernels", timeout=5):
                with contextlib.suppress(Exception):
                    server.api("DELETE", f"api/kernels/{k['id']}", timeout=10)
    children = _descendants(proc.pid)  # kernels run in their own sessions: track them by PID
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(SERVER_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    leftovers = [c for c in children if c.is_running()]
    for c in leftovers:
        with contextlib.suppress(Exception):
            c.terminate()
    if leftovers:
        import psutil

        _, alive = psutil.wait_procs(leftovers, timeout=5)
        for c in alive:
            with contextlib.suppress(Exception):
                c.kill()
    if server._log_file is not None:
        server._log_file.close()


@contextlib.contextmanager
def _run_server(kind: str, cmd: list[str], cwd: Path, state_dir: Path, token: str,
                port: int, ready_path: str, need_ok: bool, root_dir: Path,
                notebook: str | None = None) -> Iterator[Server]:
    state_dir.mkdir(parents=True, exist_ok=True)
    log_path = state_dir / f"{kind}-{port}.log"
    log_file = open(log_path, "w")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=str(cwd), env=_server_env(state_dir), stdout=log_file,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = Server(kind=kind, base_url=f"http://127.0.0.1:{port}/", token=token,
                    root_dir=root_dir, proc=proc, log_path=log_path, notebook=notebook,
                    _log_file=log_file)
    try:
        _wait_ready(server, ready_path, need_ok)
        server.startup_s = time.perf_counter() - t0
        _TIMINGS.append((f"{kind} server start-up", server.startup_s))
        yield server
    finally:
        _stop_server(server)


@contextlib.contextmanager
def run_voila(notebook_path: str | Path, *extra_args: str, state_dir: Path) -> Iterator[Server]:
    """Voila serving one notebook at ``server.url()`` (kernel cwd = the notebook's folder)."""
    nb = Path(notebook_path).resolve()
    port = _free_port()
    cmd = [
        sys.executable, "-m", "voila", str(nb),
        "--no-browser",
        f"--port={port}",
        "--Voila.ip=127.0.0.1",
        "--Voila.port_retries=0",  # fail loudly instead of silently moving to another port
        "--VoilaConfiguration.show_tracebacks=True",
        # Notebook 7's lab-extension cannot load inside Voila (module federation error)
        '--VoilaConfiguration.extension_denylist=["@jupyter-notebook/lab-extension"]',
        *extra_args,
    ]
    with _run_server("voila", cmd, nb.parent, state_dir, "", port,
                     "voila/static/voila.js", need_ok=False, root_dir=nb.parent,
                     notebook=nb.name) as s:
        yield s


def _jupyter_cmd(app: str, root_dir: Path, state_dir: Path, token: str, port: int,
                 extra_args: Sequence[str]) -> list[str]:
    app_cls = "LabApp" if app == "lab" else "JupyterNotebookApp"
    settings = state_dir / "user-settings"
    notif = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notif.parent.mkdir(parents=True, exist_ok=True)
    # No "Would you like to receive official Jupyter news?" toast, no update checks.
    notif.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    cmd = [
        sys.executable, "-m", "jupyter", app,
        "--no-browser",
        "--allow-root",  # required when the tests run as root (CI); harmless otherwise
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root_dir}",
        "--ServerApp.terminals_enabled=False",
        # Safety net if pytest dies: idle kernels culled, then the server exits on its own.
        "--MappingKernelManager.cull_idle_timeout=900",
        "--MappingKernelManager.cull_interval=60",
        "--ServerApp.shutdown_no_activity_timeout=1200",
        f"--{app_cls}.expose_app_in_browser=True",  # window.jupyterapp for the helpers
        f"--{app_cls}.user_settings_dir={settings}",
        f"--{app_cls}.workspaces_dir={state_dir / 'workspaces'}",
    ]
    if app == "lab":
        cmd += [
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate",
            "--LabApp.collaborative=False",
        ]
    return cmd + list(extra_args)


@contextlib.contextmanager
def run_jupyter(app: str, root_dir: str | Path, *extra_args: str, state_dir: Path) -> Iterator[Server]:
    """``app`` = "lab" (JupyterLab) or "notebook" (Notebook 7), serving ``root_dir``."""
    root = Path(root_dir).resolve()
    port = _free_port()
    token = secrets.token_hex(16)
    cmd = _jupyter_cmd(app, root, state_dir, token, port, extra_args)
    with _run_server(app, cmd, root, state_dir, token, port, "api/status", need_ok=True,
                     root_dir=root) as s:
        yield s


def run_lab(root_dir, *extra_args, state_dir):
    return run_jupyter("lab", root_dir, *extra_args, state_dir=state_dir)


def run_notebook(root_dir, *extra_args, state_dir):
    return run_jupyter("notebook", root_dir, *extra_args, state_dir=state_dir)


@pytest.fixture
def voila_server(tmp_path_factory) -> Iterator[Callable[..., Server]]:
    with contextlib.ExitStack() as stack:
        def _start(notebook_path, *extra_args: str) -> Server:
            state = tmp_path_factory.mktemp("voila-state")
            return stack.enter_context(run_voila(notebook_path, *extra_args, state_dir=state))

        yield _start


@pytest.fixture
def lab_server(tmp_path_factory) -> Iterator[Callable[..., Server]]:
    with contextlib.ExitStack() as stack:
        def _start(root_dir, *extra_args: str) -> Server:
            state = tmp_path_factory.mktemp("lab-state")
            return stack.enter_context(run_lab(root_dir, *extra_args, state_dir=state))

        yield _start


@pytest.fixture
def notebook_server(tmp_path_factory) -> Iterator[Callable[..., Server]]:
    with contextlib.ExitStack() as stack:
        def _start(root_dir, *extra_args: str) -> Server:
            state = tmp_path_factory.mktemp("nb-state")
            return stack.enter_context(run_notebook(root_dir, *extra_args, state_dir=state))

        yield _start


# --------------------------------------------------------------------------------------------
# Driving JupyterLab / Notebook 7 / Voila pages
# --------------------------------------------------------------------------------------------

_JS_PANEL = """
(path) => {
  const app = window.jupyterapp;
  if (!app || !app.shell) return null;
  const w = app.shell.currentWidget;
  if (!w || !w.context || w.context.path !== path || !w.sessionContext) return null;
  return w;
}
"""


class JupyterUI:
    """Drive a notebook in JupyterLab or Notebook 7 through ``page``.

    ``open(server, "nb.ipynb")`` loads it and waits for an idle kernel; ``run_all()`` starts
    Run All (command API, or ``via="menu"``); ``wait_idle()`` waits until every code cell ran and
    the kernel is idle; ``wait_for(selector)`` returns a visible locator; ``errors()`` returns
    the text of error outputs.
    """

    def __init__(self, page):
        self.page = page
        self.server: Server | None = None
        self.path: str | None = None

    def open(self, server: Server, path: str, timeout: float = 90) -> None:
        if server.kind not in ("lab", "notebook"):
            raise ValueError(f"JupyterUI drives lab/notebook servers, not {server.kind}")
        self.server, self.path = server, path.lstrip("/")
        route = "lab/tree/" if server.kind == "lab" else "notebooks/"
        self.page.goto(server.url(route + self.path), wait_until="domcontentloaded")
        self._wait_js(
            "(path) => { const w = (" + _JS_PANEL + ")(path);"
            " return !!(w && w.context.isReady && w.sessionContext.session"
            " && w.sessionContext.session.kernel"
            " && w.sessionContext.session.kernel.status === 'idle'); }",
            timeout,
            "notebook open with an idle kernel",
        )

    def _wait_js(self, fn: str, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.accept_kernel_dialog()
            remaining = deadline - time.monotonic()
            try:
                self.page.wait_for_function(fn, arg=self.path,
                                            timeout=max(100, min(2000, remaining * 1000)))
                return
            except Exception as e:  # playwright TimeoutError: re-check dialogs, then retry
                if "Timeout" not in type(e).__name__ and "Timeout" not in str(e):
                    raise
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"timed out after {timeout}s waiting for: {what}") from None

    def accept_kernel_dialog(self) -> bool:
        """Accept a "Select Kernel" dialog if one is shown (kernelspec metadata avoids it)."""
        dlg = self.page.locator(".jp-Dialog")
        if dlg.count() and "kernel" in (dlg.first.inner_text() or "").lower():
            self.page.locator(".jp-Dialog .jp-mod-accept").first.click()
            return True
        return False

    def run_all(self, via: str = "command") -> None:
        """Start Run All Cells (does not wait; see wait_idle)."""
        if via == "command":
            self.page.evaluate(
                "() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
        elif via == "menu":
            self.page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).first.click()
            self.page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).first.click()
        else:
            raise ValueError(via)
        self.accept_kernel_dialog()

    def wait_idle(self, timeout: float = 120) -> None:
        """Wait until every code cell has an execution count and the kernel is idle."""
        self._wait_js(
            "(path) => { const w = (" + _JS_PANEL + ")(path); if (!w) return false;"
            " const k = w.sessionContext.session && w.sessionContext.session.kernel;"
            " if (!k || k.status !== 'idle') return false;"
            " const cells = w.content.widgets.filter(c => c.model.type === 'code');"
            " return cells.every(c => c.model.executionCount !== null"
            "   && c.promptNode && !/\\*/.test(c.promptNode.textContent || '')); }",
            timeout,
            "all cells executed and kernel idle",
        )

    def wait_for(self, selector: str, timeout: float = 60):
        loc = self.page.locator(selector).first
        loc.wait_for(state="visible", timeout=timeout * 1000)
        return loc

    def errors(self) -> list[str]:
        """Texts of error outputs (tracebacks) in the open notebook."""
        loc = self.page.locator('.jp-RenderedText[data-mime-type="application/vnd.jupyter.error"]')
        return [t for t in loc.all_inner_texts() if t.strip()]

    def stderr(self) -> list[str]:
        """Texts of stderr outputs (warnings, notices) in the open notebook."""
        loc = self.page.locator('.jp-RenderedText[data-mime-type="application/vnd.jupyter.stderr"]')
        return [t for t in loc.all_inner_texts() if t.strip()]


@pytest.fixture
def jupyter_ui(page) -> JupyterUI:
    return JupyterUI(page)
