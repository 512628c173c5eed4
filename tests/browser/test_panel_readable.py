"""The panel as a person reads it, in Voilà at 900 and 1400 px wide: nothing scrolls sideways,
the numbers are in the status line, legends sit above the plots, step ticks are whole and
distinct. Screenshots: ``test-artifacts/panel-readable-{900,1400}.png``."""
from __future__ import annotations

import re

import _kernel_probe as kp

# elements inside the panel that would show a horizontal scrollbar (or hide content sideways)
_OVERFLOW_JS = """
(sel) => [...document.querySelector(sel).querySelectorAll('*')]
  .filter(e => e.scrollWidth > e.clientWidth + 1 && ['auto', 'scroll'].includes(getComputedStyle(e).overflowX))
  .map(e => `${e.className.baseVal ?? e.className}: ${e.scrollWidth} > ${e.clientWidth}`)
"""
_X_TICKS_JS = """
([sel, title]) => { for (const fig of document.querySelector(sel).querySelectorAll('.bqplot.figure')) {
  const head = fig.querySelector('text.mainheading');
  if (head && head.textContent === title)
    return [...fig.querySelectorAll('g.axis')].filter(a => a.querySelector('text.axislabel')?.textContent === 'step')
      .flatMap(a => [...a.querySelectorAll('g.tick text')].map(t => t.textContent)); } return null; }
"""


def test_panel_reads_at_900_and_1400_px(page, write_notebook, voila_server, artifacts_dir):
    nb = write_notebook("panel", kp.panel_notebook(start=True))
    server = voila_server(nb)
    kp.open_voila(page, server)
    panel = kp.PanelUI(page).wait_visible()
    kp.wait_probe(nb.parent, "2 epochs", lambda p: p["epoch"] >= 2, 180, page)
    for width in (1400, 900):
        page.set_viewport_size({"width": width, "height": 1000})
        page.wait_for_timeout(1500)
        assert page.evaluate(_OVERFLOW_JS, panel.selector) == [], width
        info = panel.info_text()
        assert re.match(r"train loss [\d.e-]+ · val loss [\d.e-]+ · val accuracy [\d.]+ · epoch \d+/400", info), info
        for title in ("Loss", "Metrics"):
            ticks = page.evaluate(_X_TICKS_JS, [panel.selector, title])
            assert ticks and len(ticks) == len(set(ticks)) <= 8, (title, ticks)
        assert panel.root.locator(".bqplot.figure text.legendtext").count() == 0  # no legend on the data
        assert panel.legend("Loss") == ["train loss (per step)", "train loss (EMA)", "validation loss"]
        assert panel.legend("Metrics") == ["accuracy", "val accuracy"]
        panel.root.screenshot(path=str(artifacts_dir / f"panel-readable-{width}.png"))
    (nb.parent / "probe.stop").touch()
