"""The ``nnwidgets`` console script.

``nnwidgets demo [--port N] [--no-browser] [--notebook NAME] [--Class.option=value ...]`` serves
a demo notebook as a Voilà dashboard on http://127.0.0.1:N/ (default port 8866; nothing is
fetched from the internet) until Ctrl-C. Voilà runs the notebook each time the page is loaded;
options written ``--Class.option=value`` are passed on to Voilà (they override ours).

Each page load starts a kernel and, in the demos, a training run. So that closing or reloading
the tab does not leave them running (8 reloads used to leave 10 kernels training at once), the
demo configures three layers (:func:`cleanup_options`):

1. Voilà's own shutdown request works: the page sends it from ``beforeunload`` with the
   ``_xsrf`` cookie, but Voilà 0.5 never sets that cookie, so every request was refused
   (``403 '_xsrf' argument missing from POST``) and no kernel was ever shut down. The demo sets
   jupyter_server's ``disable_check_xsrf`` (``--Voila.tornado_settings=disable_check_xsrf=True``).
   What that opens: the server listens on 127.0.0.1 only and has no token anyway; its only
   non-GET endpoints are this shutdown (which needs the kernel's random 128-bit id) and
   ``DELETE /api/kernels/<id>`` (a cross-site DELETE is stopped by CORS).
2. Kernel culling for a page that went away without a request (a crash, a lost network): the
   server shuts down a kernel with no connection that has been idle ``cull_idle_timeout`` s
   (``MappingKernelManager.cull_idle_timeout=300``, checked every ``cull_interval=30`` s;
   ``cull_connected=False``: an open page is never culled, however long it is left idle).
3. A running kernel is never idle to the server (the panel's widget messages are activity), so
   the panel pauses a run when no page has shown it for 120 s (``TrainingPanel(pause_unseen_s=
   "auto")`` in a Voilà kernel; see :mod:`nnwidgets.widgets.presence`); paused, it falls silent
   and layer 2 shuts the kernel down.

Ctrl-C works even when the command was started as a background job (``nnwidgets demo &`` in a
script, then ``fg``): such a job inherits SIGINT as *ignored*, and so would Voilà. ``main()``
therefore puts Python's default SIGINT handler back, and Voilà starts with SIGINT reset to the
default (then its own Python turns it into KeyboardInterrupt again).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import webbrowser
from pathlib import Path
from typing import Sequence

__all__ = ["main", "demo_dir", "find_notebook", "voila_command", "cleanup_options"]

DEFAULT_PORT = 8866
DEFAULT_NOTEBOOK = "01_quickstart.ipynb"
_STARTUP_TIMEOUT_S = 120.0
_STOP_TIMEOUT_S = 15.0
CULL_IDLE_TIMEOUT_S = 300
CULL_INTERVAL_S = 30


def demo_dir() -> Path:
    """The folder holding the demo notebooks: ``nnwidgets/demo_notebooks`` inside an installed
    wheel, else ``<repo>/demo_notebooks`` in a source checkout.

    Raises:
        FileNotFoundError: neither exists.
    """
    package = Path(__file__).resolve().parent
    for candidate in (package / "demo_notebooks", package.parent / "demo_notebooks"):
        if candidate.is_dir() and any(candidate.glob("*.ipynb")):
            return candidate
    raise FileNotFoundError(f"no demo notebooks found in {package / 'demo_notebooks'} "
                            f"or {package.parent / 'demo_notebooks'}")


def find_notebook(name: str = DEFAULT_NOTEBOOK) -> Path:
    """The demo notebook called ``name`` (``.ipynb`` optional; ``"01"`` matches its prefix), or
    the notebook at path ``name`` if that file exists.

    Raises:
        FileNotFoundError: no such notebook; the message lists the available ones.
    """
    given = Path(name).expanduser()
    if given.suffix == ".ipynb" and given.is_file():
        return given.resolve()
    folder = demo_dir()
    available = sorted(p.name for p in folder.glob("*.ipynb"))
    stem = name.removesuffix(".ipynb")
    matches = [n for n in available if n.removesuffix(".ipynb") == stem] or \
              [n for n in available if n.startswith(stem)]
    if len(matches) != 1:
        raise FileNotFoundError(f"no demo notebook {name!r}; available: {', '.join(available)}")
    return folder / matches[0]


def cleanup_options(idle_timeout_s: int = CULL_IDLE_TIMEOUT_S, interval_s: int = CULL_INTERVAL_S) -> list[str]:
    """Voilà options that shut down the kernels of closed pages (layers 1 and 2 of the module
    doc): Voilà's shutdown request accepted, and kernels with no page connected culled after
    ``idle_timeout_s`` s without activity, checked every ``interval_s`` s."""
    return ["--Voila.tornado_settings=disable_check_xsrf=True",
            f"--MappingKernelManager.cull_idle_timeout={int(idle_timeout_s)}",
            f"--MappingKernelManager.cull_interval={int(interval_s)}",
            "--MappingKernelManager.cull_connected=False"]


def voila_command(notebook: Path, port: int, extra: Sequence[str] = ()) -> list[str]:
    """The Voilà command line: this Python, local address only, exactly ``port``, no browser,
    :func:`cleanup_options`, then ``extra`` (``--Class.option=value``; the last value wins)."""
    return [sys.executable, "-m", "voila", str(notebook), f"--port={port}", "--no-browser",
            "--Voila.ip=127.0.0.1", "--Voila.port_retries=0", *cleanup_options(), *extra]


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _wait_listening(proc: subprocess.Popen, port: int, timeout_s: float) -> bool:
    """True once something accepts connections on the port (a TCP connect: a page request
    would make Voilà start a kernel and run the notebook)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.2)
    return False


def _stop(proc: subprocess.Popen) -> int:
    """Ctrl-C for Voilà (it shuts its kernels down), then SIGTERM, then SIGKILL."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            break
        proc.send_signal(sig)
        try:
            proc.wait(_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            continue
    return proc.wait()


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _default_sigint() -> None:
    """In the Voilà child before exec: SIGINT back to the default action (an ignored signal
    stays ignored across exec, and Python then never installs its KeyboardInterrupt handler)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def demo(port: int = DEFAULT_PORT, open_browser: bool = True, notebook: str = DEFAULT_NOTEBOOK,
         voila_options: Sequence[str] = ()) -> int:
    """Serve a demo notebook with Voilà until Ctrl-C (or SIGTERM); returns the exit status."""
    if importlib.util.find_spec("voila") is None:
        print("nnwidgets demo needs Voilà: pip install nnwidgets[demo]", file=sys.stderr)
        return 2
    try:
        path = find_notebook(notebook)
    except FileNotFoundError as e:
        print(f"nnwidgets demo: {e}", file=sys.stderr)
        return 2
    if not _port_free(port):
        print(f"nnwidgets demo: port {port} on 127.0.0.1 is in use; pass another with --port", file=sys.stderr)
        return 2
    env = dict(os.environ)
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").is_file():  # a source checkout: its kernel imports this nnwidgets
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(checkout), env.get("PYTHONPATH")) if p)
    url = f"http://127.0.0.1:{port}/"
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    # own session: a terminal's Ctrl-C reaches only this process, which forwards it once
    proc = subprocess.Popen(voila_command(path, port, voila_options), env=env, start_new_session=True, preexec_fn=_default_sigint)
    try:
        if not _wait_listening(proc, port, _STARTUP_TIMEOUT_S):
            print(f"nnwidgets demo: Voilà did not start (exit status {proc.poll()})", file=sys.stderr)
            _stop(proc)
            return 1
        print(f"nnwidgets demo: serving {path.name} at {url} (Ctrl-C to stop)", flush=True)
        if open_browser:
            webbrowser.open(url)
        return proc.wait()
    except KeyboardInterrupt:
        print("nnwidgets demo: stopping Voilà ...", file=sys.stderr, flush=True)
        _stop(proc)
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nnwidgets`` console script; returns the exit status."""
    parser = argparse.ArgumentParser(prog="nnwidgets", description="Live, steerable PyTorch training widgets.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    d = commands.add_parser("demo", help="serve a demo notebook as a Voilà dashboard on 127.0.0.1",
                            description="Serve a demo notebook as a Voilà dashboard on 127.0.0.1 (offline).")
    d.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    d.add_argument("--no-browser", action="store_true", help="do not open a web browser")
    d.add_argument("--notebook", default=DEFAULT_NOTEBOOK, metavar="NAME",
                   help=f"demo notebook to serve (default {DEFAULT_NOTEBOOK}), or a path to any .ipynb")
    d.epilog = ("Options written --Class.option=value go to Voilà, e.g. "
                f"--MappingKernelManager.cull_idle_timeout=60 (default {CULL_IDLE_TIMEOUT_S} s).")
    args, rest = parser.parse_known_args(argv)
    if args.command != "demo":
        parser.error(f"unknown command {args.command!r}")  # unreachable: argparse checks choices
    bad = [a for a in rest if not re.fullmatch(r"--[A-Za-z_]\w*\.\w+=.*", a, flags=re.S)]
    if bad:
        parser.error(f"unrecognized arguments: {' '.join(bad)} (Voilà options are written --Class.option=value)")
    # Ctrl-C must stop the demo even if this process inherited SIGINT as ignored (a background job)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.default_int_handler) if main_thread else None
    try:
        return demo(port=args.port, open_browser=not args.no_browser, notebook=args.notebook, voila_options=rest)
    finally:
        if main_thread and previous is not None:  # None: a handler not set from Python
            signal.signal(signal.SIGINT, previous)


if __name__ == "__main__":
    sys.exit(main())
