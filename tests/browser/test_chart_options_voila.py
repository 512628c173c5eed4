"""The Training charts' options in a Voila dashboard, as a person uses them: "zoom to data" turns
the accuracy axis from 0-1 to the values' own window with tick labels that all differ, and
"CSV of the history" gives links whose files hold the run's epochs (decoded here and compared with
what the kernel recorded). Model: the 2-8-8-3 MLP of ``_kernel_probe``."""
from __future__ import annotations

import base64
import csv
import io

import _kernel_probe as kp

# tick labels of each axis of the figure titled ``title``
_TICKS_JS = """
([sel, title]) => { for (const fig of document.querySelector(sel).querySelectorAll('.bqplot.figure')) {
  const head = fig.querySelector('text.mainheading');
  if (!head || head.textContent !== title) continue;
  return [...fig.querySelectorAll('g.axis')].filter(a => getComputedStyle(a).visibility !== 'hidden'
      && a.getAttribute('visibility') !== 'hidden')
    .map(a => [...a.querySelectorAll('g.tick text')].map(t => t.textContent)); }
  return null; }
"""


def _score_ticks(page, panel) -> list[str]:
    axes = page.evaluate(_TICKS_JS, [panel.selector, "Metrics"]) or []
    return next((ticks for ticks in axes if ticks and all("." in t for t in ticks)), [])


def test_zoom_to_data_and_csv_links(page, write_notebook, voila_server, notebook_dir, artifacts_dir):
    nb = write_notebook("panel", kp.panel_notebook(start=True))
    kp.open_voila(page, voila_server(nb))
    panel = kp.PanelUI(page).wait_visible()
    kp.wait_probe(notebook_dir, "3 epochs", lambda p: p["epoch"] >= 3, 180, page)
    full = kp.wait_until("the accuracy axis", lambda: _score_ticks(page, panel), 20, page=page)
    assert float(full[0]) == 0.0 and float(full[-1]) == 1.0, full

    panel.root.locator("button.widget-toggle-button", has_text="zoom to data").first.click()
    zoomed = kp.wait_until("a zoomed accuracy axis",
                           lambda: (t := _score_ticks(page, panel)) and float(t[0]) > 0.0 and t, 20, page=page)
    print("accuracy ticks:", full, "->", zoomed)
    assert len(set(zoomed)) == len(zoomed) and float(zoomed[-1]) <= 1.0, zoomed
    kp.save_screenshot(panel.root, [artifacts_dir / "chart-options-voila.png"])

    panel.button("CSV of the history").click()
    link = page.locator(f'{panel.selector} a[download="epochs.csv"]').first
    link.wait_for(state="attached", timeout=20_000)
    href = link.get_attribute("href")
    assert href.startswith("data:text/csv;base64,")
    rows = list(csv.DictReader(io.StringIO(base64.b64decode(href.split(",", 1)[1]).decode())))
    probe = kp.read_probe(notebook_dir)
    assert 3 <= len(rows) <= probe["epoch"] + 1, (len(rows), probe["epoch"])
    assert [int(r["epoch"]) for r in rows] == list(range(len(rows)))
    assert all(0.0 <= float(r["val_accuracy"]) <= 1.0 for r in rows)
    for name in ("steps", "events"):
        assert page.locator(f'{panel.selector} a[download="{name}.csv"]').count() == 1
    (notebook_dir / "probe.stop").touch()
    panel.button("Stop").click()
