"""A finished run as static HTML and text: what a saved notebook shows where the panel was.

A widget view needs a live kernel (or saved widget state) to render; ``jupyter nbconvert --to
html`` skips a widget output without state and takes the next format of the same output
(``text/html``, then ``text/plain``). So the panel's display carries this summary once its run
has ended: the state and final numbers, the loss curve as an inline SVG (no plotting
library), and the epoch table (the first and last rows when there are many). UI-free: reads
``trainer.history`` only. Every user string is escaped.
"""
from __future__ import annotations

import html
import math
from typing import Any

import numpy as np

__all__ = ["ENDED", "summary_html", "summary_text"]

ENDED = ("completed", "stopped", "failed")
"""Trainer states after which a summary is shown."""
_ROWS = 10          # epoch rows shown at each end of a long table
_POINTS = 200       # points of the SVG loss curve (stride-decimated)
_W, _H = 480, 140   # SVG size, px


def _fmt(v: Any) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.4g}" if math.isfinite(v) else str(float(v))
    return str(v)


def _headline(trainer: Any) -> str:
    h = trainer.history
    line = f"nnwidgets run {trainer.state}: epoch {trainer.epoch}/{trainer.target_epochs}, step {trainer.step}"
    rows = h.epoch_records
    if rows:
        last = rows[-1]
        line += "; last epoch: " + ", ".join(f"{k} {_fmt(v)}" for k, v in last.items()
                                             if k not in ("epoch", "step", "time_s") and isinstance(v, (int, float)))
    return line


def _error(trainer: Any) -> str | None:
    errors = [e for e in trainer.history.event_records if e.get("kind") == "error"]
    if errors:
        return str(errors[-1].get("message", ""))
    return f"{type(trainer.error).__name__}: {trainer.error}" if getattr(trainer, "error", None) else None


MAX_NOTES = 12  # notices listed in a static summary (the newest)


def _notes(trainer: Any, extra: list[tuple[str, str]] | None) -> list[tuple[str, str]]:
    """``(kind, message)`` of what the run said, oldest first: its notices and non-finite /
    diverged pauses from the history, then ``extra`` (e.g. the training thread's output that
    the panel caught); the newest :data:`MAX_NOTES`."""
    said = [(str(e.get("kind")), str(e.get("message", ""))) for e in trainer.history.event_records
            if e.get("kind") in ("notice", "nonfinite") and e.get("message")]
    return (said + list(extra or []))[-MAX_NOTES:]


def summary_text(trainer: Any, extra: list[tuple[str, str]] | None = None) -> str:
    """State, epoch/step and the last epoch's numbers, the error of a failed run, then what the
    run said (:func:`_notes`), one line each."""
    err = _error(trainer) if trainer.state == "failed" else None
    lines = [_headline(trainer)] + ([f"error: {err}"] if err else [])
    return "\n".join(lines + [f"{kind}: {msg}" for kind, msg in _notes(trainer, extra)])


def _svg(trainer: Any) -> str:
    """Training loss per step (grey) and validation loss per epoch (orange) as an inline SVG;
    '' without steps."""
    loss = np.asarray(trainer.history.loss_since(0), dtype=np.float64)
    if loss.size < 2:
        return ""
    idx = np.unique(np.linspace(0, loss.size - 1, min(_POINTS, loss.size)).astype(int))
    x, y = idx.astype(np.float64), loss[idx]
    val = [(r["step"], r["val_loss"]) for r in trainer.history.epoch_records
           if isinstance(r.get("val_loss"), float) and math.isfinite(r["val_loss"])]
    ys = np.concatenate([y[np.isfinite(y)], [v for _, v in val]])
    if ys.size == 0:
        return ""
    lo, hi = float(ys.min()), float(ys.max())
    hi = hi if hi > lo else lo + 1.0
    sx = (_W - 50) / max(1.0, float(loss.size - 1))

    def pt(s: float, v: float) -> str:
        return f"{40 + s * sx:.1f},{_H - 20 - (v - lo) / (hi - lo) * (_H - 30):.1f}"

    train = " ".join(pt(s, v) for s, v in zip(x, y) if math.isfinite(v))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" role="img" '
             f'aria-label="loss per step">',
             f'<polyline fill="none" stroke="#7f7f7f" stroke-width="1" points="{train}"/>']
    if val:
        parts.append(f'<polyline fill="none" stroke="#ff7f0e" stroke-width="2" '
                     f'points="{" ".join(pt(s - 1, v) for s, v in val)}"/>')
    parts += [f'<text x="2" y="14" font-size="11">{_fmt(hi)}</text>',
              f'<text x="2" y="{_H - 20}" font-size="11">{_fmt(lo)}</text>',
              f'<text x="40" y="{_H - 4}" font-size="11">loss per step (grey)'
              + (", validation loss per epoch (orange)" if val else "") + f", steps 0-{loss.size}</text>",
              "</svg>"]
    return "".join(parts)


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p>No epoch completed.</p>"
    cols = [k for k in rows[-1] if k != "time_s"]
    shown = rows if len(rows) <= 2 * _ROWS else [*rows[:_ROWS], None, *rows[-_ROWS:]]
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = []
    for r in shown:
        if r is None:
            body.append(f'<tr><td colspan="{len(cols)}">… {len(rows) - 2 * _ROWS} epochs …</td></tr>')
        else:
            r = {**r, "epoch": int(r["epoch"]) + 1} if "epoch" in r else r  # counted from 1, as in "epoch 3/3"
            body.append("<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c, '')))}</td>" for c in cols) + "</tr>")
    return f'<table class="nnwidgets-epochs"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def summary_html(trainer: Any, extra: list[tuple[str, str]] | None = None) -> str:
    """The static summary: headline, the error of a failed run, what the run said (notices,
    pauses, ``extra`` output), the loss SVG, the epoch table. Every text is escaped."""
    err = _error(trainer) if trainer.state == "failed" else None
    parts = ['<div class="nnwidgets-summary">', f"<p><b>{html.escape(_headline(trainer))}</b></p>"]
    if err:
        parts.append(f'<p style="color:#d62728">error: {html.escape(err)}</p>')
    notes = _notes(trainer, extra)
    if notes:
        parts.append('<ul class="nnwidgets-notes">' + "".join(
            f'<li><b>{html.escape(kind)}</b>: {html.escape(msg)}</li>' for kind, msg in notes) + "</ul>")
    parts += [_svg(trainer), _table(trainer.history.epoch_records),
              "<p><i>Static summary saved with the notebook; the live panel needs a running kernel.</i></p>",
              "</div>"]
    return "".join(parts)
