"""The browser harness itself works: plain ipywidgets in Voila, JupyterLab and Notebook 7,
including a widget that a background thread keeps updating after its cell has finished."""

import time

import pytest

pytestmark = pytest.mark.browser

SLIDER = 'import ipywidgets as w\ns = w.IntSlider(value=3, description="probe")\ns'

# Runs after the cell has returned: it waits for the test to create the file "go" next to the
# notebook (the kernel's cwd), so the browser is certainly showing the slider before it starts.
THREAD = """\
import os, threading, time
def _bump():
    deadline = time.monotonic() + 120
    while not os.path.exists("go") and time.monotonic() < deadline:
        time.sleep(0.05)
    for i in range(1, 21):
        s.value = i
        time.sleep(0.1)
threading.Thread(target=_bump, daemon=True).start()
"""


def _readouts_seen(page, slider, until="20", timeout=30.0):
    """Poll the slider's readout text until it shows ``until``; return the values seen."""
    readout = slider.locator(".widget-readout")
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = readout.inner_text().strip()
        if not seen or seen[-1] != text:
            seen.append(text)
        if text == until:
            return seen
        page.wait_for_timeout(40)
    raise AssertionError(f"readout never reached {until!r}; saw {seen}")


def test_voila_renders_slider_and_thread_updates(page, write_notebook, voila_server, artifacts_dir):
    nb = write_notebook("probe", [SLIDER, THREAD])
    server = voila_server(nb)
    page.goto(server.url(), wait_until="domcontentloaded")
    slider = page.locator(".widget-slider", has_text="probe").first
    slider.wait_for(state="visible", timeout=60_000)
    assert page.get_by_text("probe", exact=True).first.is_visible()
    assert slider.locator(".widget-readout").inner_text().strip() == "3"
    (nb.parent / "go").touch()
    seen = _readouts_seen(page, slider)
    # Live updates, not one final render: intermediate values reached the browser.
    assert len(seen) >= 3, seen
    page.screenshot(path=str(artifacts_dir / "harness-smoke-voila.png"))


def test_lab_run_all_renders_slider_and_thread_updates(page, write_notebook, notebook_dir,
                                                       lab_server, jupyter_ui):
    write_notebook("probe", [SLIDER, THREAD])
    server = lab_server(notebook_dir)
    jupyter_ui.open(server, "probe.ipynb")
    jupyter_ui.run_all()
    jupyter_ui.wait_idle()
    slider = jupyter_ui.wait_for('.jp-OutputArea .widget-slider:has-text("probe")')
    assert slider.locator(".widget-readout").inner_text().strip() == "3"
    (notebook_dir / "go").touch()
    seen = _readouts_seen(page, slider)
    assert len(seen) >= 3, seen
    assert jupyter_ui.errors() == []


def test_notebook7_menu_run_all_renders_slider(page, write_notebook, notebook_dir,
                                               notebook_server, jupyter_ui):
    write_notebook("probe", [SLIDER])
    server = notebook_server(notebook_dir)
    jupyter_ui.open(server, "probe.ipynb")
    jupyter_ui.run_all(via="menu")
    jupyter_ui.wait_idle()
    slider = jupyter_ui.wait_for('.jp-OutputArea .widget-slider:has-text("probe")')
    assert slider.locator(".widget-readout").inner_text().strip() == "3"
    assert jupyter_ui.errors() == []
