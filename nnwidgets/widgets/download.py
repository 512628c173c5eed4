"""A "download CSV" control for the run's history, for people who cannot run Python next to the
panel (a Voilà dashboard): one click builds ``steps.csv``, ``epochs.csv`` and ``events.csv`` from
``History`` (the tables :meth:`~nnwidgets.history.History.to_csv` writes) as ``data:`` links the
browser saves. Nothing is built or sent until the button is clicked."""
from __future__ import annotations

import base64
import html
from typing import Any, Callable

import ipywidgets as widgets

__all__ = ["HistoryDownload", "csv_links"]

TABLES = ("steps", "epochs", "events")


def csv_links(history: Any, tables: tuple[str, ...] = TABLES) -> str:
    """HTML with one ``<a download="NAME.csv" href="data:text/csv;base64,...">`` per table of
    ``history`` (``history.steps``, ``.epochs``, ``.events``, pandas DataFrames), with row counts."""
    items = []
    for name in tables:
        df = getattr(history, name)
        data = base64.b64encode(df.to_csv(index=False).encode()).decode()
        items.append(f'<a download="{name}.csv" href="data:text/csv;base64,{data}" '
                     f'style="margin-right:14px;text-decoration:underline">{html.escape(name)}.csv</a>'
                     f'<span style="color:#666;margin-right:18px">({len(df)} rows)</span>')
    return f'<span class="nnw-csv-links" style="font-size:12px">{"".join(items)}</span>'


class HistoryDownload:
    """Button "CSV of the history" and, once clicked, the links of :func:`csv_links` (as of the
    click; click again for newer rows).

    Args:
        get_history: returns the ``History`` shown (``None`` before a run).

    Attributes:
        widget: ``HBox([button, links])``; button: ``Button``; links: ``HTML``.
    """

    def __init__(self, get_history: Callable[[], Any]) -> None:
        self._get_history = get_history
        self.button = widgets.Button(description="CSV of the history", icon="download",
                                     tooltip="Links to steps.csv, epochs.csv and events.csv as of now")
        self.links = widgets.HTML()
        self.button.on_click(lambda _: self.build())
        self.widget = widgets.HBox([self.button, self.links], layout=widgets.Layout(
            flex_flow="row wrap", align_items="center", grid_gap="4px 16px"))

    def build(self) -> str:
        """Build the links from the history now (``"no run yet"`` without one); returns the HTML."""
        h = self._get_history()
        self.links.value = csv_links(h) if h is not None else '<span style="font-size:12px">no run yet</span>'
        return self.links.value
