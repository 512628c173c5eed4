"""``nnwidgets demo``: notebook lookup, the Voilà command line, and a real served page."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from nnwidgets import _cli

REPO_ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_demo_notebooks_are_found_in_the_source_checkout():
    assert _cli.demo_dir() == REPO_ROOT / "demo_notebooks"
    assert _cli.find_notebook().name == "01_quickstart.ipynb"
    assert _cli.find_notebook("02_regression").name == "02_regression.ipynb"
    assert _cli.find_notebook("03").name == "03_vanishing_gradients.ipynb"


def test_a_notebook_path_is_served_as_given(tmp_path):
    nb = tmp_path / "mine.ipynb"
    nb.write_text("{}")
    assert _cli.find_notebook(str(nb)) == nb.resolve()


def test_unknown_notebook_lists_the_available_ones(capsys):
    with pytest.raises(FileNotFoundError, match=r"no demo notebook 'nope'; available: 01_quickstart.ipynb, "):
        _cli.find_notebook("nope")
    assert _cli.main(["demo", "--notebook", "nope", "--no-browser"]) == 2
    assert "no demo notebook 'nope'; available: 01_quickstart.ipynb" in capsys.readouterr().err


def test_voila_command_is_local_and_on_exactly_that_port():
    cmd = _cli.voila_command(Path("/x/01_quickstart.ipynb"), 9123)
    assert cmd[:3] == [sys.executable, "-m", "voila"]
    assert {"--port=9123", "--no-browser", "--Voila.ip=127.0.0.1", "--Voila.port_retries=0"} <= set(cmd)


def test_voila_command_cleans_up_after_closed_pages_and_passes_options_on():
    cmd = _cli.voila_command(Path("/x/01_quickstart.ipynb"), 9123, ["--MappingKernelManager.cull_idle_timeout=60"])
    assert "--Voila.tornado_settings=disable_check_xsrf=True" in cmd  # Voilà's shutdown beacon is accepted
    assert "--MappingKernelManager.cull_idle_timeout=300" in cmd and "--MappingKernelManager.cull_interval=30" in cmd
    assert "--MappingKernelManager.cull_connected=False" in cmd
    assert cmd[-1] == "--MappingKernelManager.cull_idle_timeout=60"  # given last: it wins


def test_other_arguments_than_voila_options_are_refused(capsys):
    with pytest.raises(SystemExit) as e:
        _cli.main(["demo", "--no-browser", "--cull"])
    assert e.value.code == 2
    assert "unrecognized arguments: --cull (Voilà options are written --Class.option=value)" in capsys.readouterr().err


def test_port_in_use_is_refused(capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert _cli.main(["demo", "--no-browser", "--port", str(port)]) == 2
    assert f"port {port} on 127.0.0.1 is in use" in capsys.readouterr().err


def test_no_subcommand_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        _cli.main([])
    assert e.value.code == 2 and "COMMAND" in capsys.readouterr().err


def _command() -> list[str]:
    script = shutil.which("nnwidgets", path=str(Path(sys.executable).parent))
    if script:
        return [script]
    return [sys.executable, "-c", "import sys; from nnwidgets._cli import main; sys.exit(main())"]


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _kill_groups(procs) -> None:
    """SIGKILL the process group of each process still alive (never pytest's own group)."""
    for p in procs:
        try:
            group = os.getpgid(p.pid)
            if group != os.getpgrp():
                os.killpg(group, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


@pytest.mark.slow
def test_demo_serves_the_quickstart_dashboard_and_stops_on_ctrl_c(tmp_path):
    """Started like a background job of a script (SIGINT inherited as ignored, which Voilà would
    inherit too), the demo still stops on Ctrl-C within 15 s and leaves no Voilà or kernel."""
    pytest.importorskip("voila")
    psutil = pytest.importorskip("psutil")
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {k: v for k, v in os.environ.items() if k != "NNWIDGETS_WAIT"}  # the dashboard must not block
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    env["OMP_NUM_THREADS"] = "1"
    log = tmp_path / "demo.log"
    with open(log, "wb") as out:  # own session: its group (and Voilà's, the kernel's) can be killed
        proc = subprocess.Popen([*_command(), "demo", "--no-browser", "--port", str(port)], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                preexec_fn=_ignore_sigint, start_new_session=True)
    family = [proc]
    try:
        html, deadline = None, time.monotonic() + 180
        while html is None and time.monotonic() < deadline and proc.poll() is None:
            family = [proc, *psutil.Process(proc.pid).children(recursive=True)]
            try:  # Voilà runs the notebook while answering this request
                with urllib.request.urlopen(url, timeout=180) as response:
                    assert response.status == 200
                    html = response.read().decode()
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.5)
        assert html is not None, f"no page at {url}; log:\n{log.read_text()}"
        assert f"serving 01_quickstart.ipynb at {url}" in log.read_text()
        assert '"kernelId": "' in html  # Voilà's bootstrap: the page connects to this kernel
        assert "application/vnd.jupyter.widget-view+json" in html  # the panel, a widget view
        assert "250 training and 83 validation penguins" in html  # the notebook really ran
        assert "Traceback" not in html
        children = psutil.Process(proc.pid).children(recursive=True)
        family = [proc, *children]
        assert len(children) >= 2, children  # Voilà and the notebook's kernel
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal does
        assert proc.wait(15) == 0, log.read_text()
        assert time.monotonic() - t0 < 15
        with pytest.raises(OSError):  # Voilà is gone too
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        assert "Kernel shutdown" in log.read_text()
        _, alive = psutil.wait_procs(children, timeout=10)
        assert alive == [], f"left behind: {alive}"
    finally:
        _kill_groups(family)
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
