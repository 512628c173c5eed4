"""The one History cursor of the views: what is new since a view last looked.

Three small pieces, all read on the panel's updater thread (never on the training thread):

* :class:`Mark`: where a :class:`~nnwidgets.history.History` stood at one moment: its step,
  epoch, event and gradient-sample counts, its rollback count (``History.truncations``) and the
  epoch and event lists themselves (History swaps those lists on every append, so the ones held
  here are a consistent snapshot). ``Mark.of(history)`` is O(1); the panel takes ONE per refresh
  and hands it to every view it refreshes, so the status line and the charts agree on the step.
* :class:`Changes`: what lies between two marks: the first step row, epoch record and event a
  view has not seen yet, new gradient samples, and whether the view must redraw from the start
  (``reset``: its first look, another History object such as a loaded checkpoint's, or a
  rollback that truncated the rows it drew).
* :class:`Cursor`: one view's position. ``cursor.advance(mark)`` returns the :class:`Changes`
  since the previous call and moves on. A view keeps one cursor and nothing else of the history's
  counts; the panel refreshes a hidden tab only when it is shown, so positions are per view, but
  the rules (what is new, when to redraw) live here once.

Example:
    >>> from nnwidgets.history import History
    >>> import numpy as np
    >>> h, cursor = History(), Cursor()
    >>> h.append_steps(0, np.ones(3, np.float32), lr=0.1, t0=0.0, t1=1.0)
    >>> ch = cursor.advance(Mark.of(h)); (ch.reset, ch.steps_from, ch.now.n_steps)
    (True, 0, 3)
    >>> h.append_steps(0, np.ones(2, np.float32), lr=0.1, t0=1.0, t1=2.0)
    >>> ch = cursor.advance(h); (ch.reset, ch.steps_from, ch.now.n_steps)
    (False, 3, 5)
    >>> h.truncate_steps(1); h.append_steps(0, np.ones(9, np.float32), lr=0.1, t0=1.0, t1=2.0)
    >>> ch = cursor.advance(h); (ch.reset, ch.truncated, ch.steps_from, ch.now.n_steps)
    (True, True, 0, 10)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Mark", "Changes", "Cursor"]


@dataclass(frozen=True, eq=False)
class Mark:
    """Where a History stood at one moment (see the module docstring).

    Attributes:
        history: the History object itself (a view compares identity: another object means
            another run, e.g. a loaded checkpoint).
        truncations: ``history.truncations``, read first, so a rollback that happens while the
            counts are read is seen at the latest by the next mark.
        n_steps: step rows. epochs, events: the epoch and event records (list snapshots).
        gradient_samples: gradient samples ever recorded.
    """

    history: Any
    truncations: int
    n_steps: int
    epochs: list
    events: list
    gradient_samples: int
    n_epochs: int
    n_events: int

    @classmethod
    def of(cls, history: Any) -> "Mark":
        """The mark of ``history`` now (O(1): a few counters and two list references; the
        counts are taken now, so a list that grows in place later does not move the mark)."""
        truncations = int(getattr(history, "truncations", 0))  # first: see Mark.truncations
        epochs, events = history.epoch_records, history.event_records
        return cls(history, truncations, int(history.n_steps), epochs, events,
                   int(getattr(history, "gradient_samples", 0)), len(epochs), len(events))


@dataclass(frozen=True, eq=False)
class Changes:
    """What is new at ``now`` for a reader that last saw ``prev`` (``None``: never looked).

    Attributes:
        prev, now: the two marks.
        new_history: ``prev`` is ``None`` or of another History object.
        truncated: the same History was rolled back in between (rows were removed).
        reset: ``new_history or truncated``, or rows fewer than at ``prev``: redraw from the start.
        steps_from: the first step row not yet read (``0`` on reset); new rows are
            ``steps_from .. now.n_steps - 1``.
        epochs_from: the first epoch record not yet read (``0`` on reset).
        events_from: the first event not yet read: ``0`` for a new History, else the count at
            ``prev`` (a rollback keeps the events, so a notices box does not repeat them; a
            chart that redraws on ``reset`` reads ``now.events`` whole).
    """

    prev: Mark | None
    now: Mark

    @property
    def new_history(self) -> bool:
        return self.prev is None or self.prev.history is not self.now.history

    @property
    def truncated(self) -> bool:
        return not self.new_history and self.now.truncations != self.prev.truncations  # type: ignore[union-attr]

    @property
    def reset(self) -> bool:
        p, n = self.prev, self.now
        return (self.new_history or self.truncated or n.n_steps < p.n_steps  # type: ignore[union-attr]
                or n.n_epochs < p.n_epochs)  # type: ignore[union-attr]

    @property
    def steps_from(self) -> int:
        return 0 if self.reset else self.prev.n_steps  # type: ignore[union-attr]

    @property
    def epochs_from(self) -> int:
        return 0 if self.reset else self.prev.n_epochs  # type: ignore[union-attr]

    @property
    def events_from(self) -> int:
        if self.new_history or self.now.n_events < self.prev.n_events:  # type: ignore[union-attr]
            return 0
        return self.prev.n_events  # type: ignore[union-attr]

    @property
    def new_steps(self) -> bool:
        """Step rows were added (or must be re-read after a reset)."""
        return self.now.n_steps > self.steps_from

    @property
    def new_epochs(self) -> list:
        """Epoch records not yet read (all of them on reset)."""
        return self.now.epochs[self.epochs_from:self.now.n_epochs]

    @property
    def new_events(self) -> list:
        """Events not yet read (see ``events_from``)."""
        return self.now.events[self.events_from:self.now.n_events]

    @property
    def new_gradients(self) -> bool:
        """Gradient samples were added (or this is another History)."""
        return self.new_history or self.now.gradient_samples != self.prev.gradient_samples  # type: ignore[union-attr]

    def __bool__(self) -> bool:
        """Anything to show: a reset, new step rows, epoch records, events or gradient samples."""
        return self.reset or self.new_steps or bool(self.new_epochs) or bool(self.new_events) or self.new_gradients


class Cursor:
    """One reader's position in the history: :meth:`advance` returns what is new since its last
    call. Not thread-safe: a view's cursor is advanced by whoever refreshes the view (the panel's
    updater thread, or a caller by hand: both move the same cursor, so nothing is read twice).

    Attributes:
        seen: the :class:`Mark` of the last :meth:`advance` (``None`` before the first).
    """

    def __init__(self) -> None:
        self.seen: Mark | None = None

    def advance(self, source: Any) -> Changes:
        """The :class:`Changes` from :attr:`seen` to ``source`` (a :class:`Mark`, or a History
        whose mark is taken now); ``source`` becomes :attr:`seen`."""
        now = source if isinstance(source, Mark) else Mark.of(source)
        changes = Changes(self.seen, now)
        self.seen = now
        return changes

    def reset(self) -> None:
        """Forget the position: the next :meth:`advance` reads from the start (``reset`` True)."""
        self.seen = None
