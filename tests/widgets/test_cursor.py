"""The History cursor of the views (widgets/_cursor.py): new rows, rollbacks, another History."""
from types import SimpleNamespace

import numpy as np

from nnwidgets.history import History
from nnwidgets.widgets._cursor import Changes, Cursor, Mark
from nnwidgets.widgets.charts import LossChart, MetricChart
from nnwidgets.widgets.status import StatusView


def steps(h, k, epoch=0, loss=1.0):
    h.append_steps(epoch, np.full(k, loss, np.float32), lr=0.1, t0=0.0, t1=1.0)


def epoch(h, e, step, val_loss=1.0):
    h.append_epoch({"epoch": e, "step": step, "loss": 1.0, "accuracy": 0.5 + e / 100,
                    "val_loss": val_loss, "val_accuracy": 0.5, "lr": 0.1, "time_s": 1.0})


def notice(h, step, text):
    h.append_event("notice", step=step, epoch=0, time_s=0.0, name="n", message=text)


def test_new_rows_epochs_events_and_gradient_samples():
    h, c = History(), Cursor()
    ch = c.advance(h)
    assert ch.reset and ch.new_history and not ch.truncated and not ch.new_steps and ch.new_epochs == []
    assert not c.advance(h)                                   # nothing new: falsy
    steps(h, 5), epoch(h, 0, 5), notice(h, 5, "a")
    h.append_gradients(5, ["0"], np.ones(1))
    ch = c.advance(Mark.of(h))
    assert not ch.reset and (ch.steps_from, ch.now.n_steps) == (0, 5) and ch.new_steps
    assert [r["epoch"] for r in ch.new_epochs] == [0] and [e["message"] for e in ch.new_events] == ["a"]
    assert ch.new_gradients and ch
    steps(h, 3), notice(h, 8, "b")
    ch = c.advance(h)
    assert (ch.steps_from, ch.now.n_steps, ch.epochs_from) == (5, 8, 1) and ch.new_epochs == []
    assert [e["message"] for e in ch.new_events] == ["b"] and not ch.new_gradients
    assert c.seen is ch.now


def test_a_rollback_is_seen_even_when_the_history_regrew_past_its_old_length():
    h, c = History(), Cursor()
    steps(h, 10), epoch(h, 0, 10), notice(h, 3, "kept")
    steps(h, 10, epoch=1), epoch(h, 1, 20)
    c.advance(h)
    h.truncate_steps(12), h.truncate_epochs(1)                # what Loop's rollback does
    steps(h, 30, epoch=1)                                     # ... and training went on: 42 > 20 rows
    ch = c.advance(h)
    assert ch.truncated and ch.reset and not ch.new_history
    assert (ch.steps_from, ch.epochs_from, ch.now.n_steps) == (0, 0, 42)
    assert [r["epoch"] for r in ch.new_epochs] == [0]
    assert ch.events_from == 1 and ch.new_events == []        # a rollback keeps the events: not new again
    assert not c.advance(h).reset                             # once


def test_a_truncation_that_removes_nothing_is_no_rollback():
    h, c = History(), Cursor()
    steps(h, 4), epoch(h, 0, 4)
    c.advance(h)
    h.truncate_steps(4), h.truncate_epochs(1)
    assert h.truncations == 0 and not c.advance(h).reset


def test_another_history_starts_over_events_included():
    a, b, c = History(), History(), Cursor()
    steps(a, 50), notice(a, 1, "a1"), notice(a, 2, "a2"), notice(a, 3, "a3")
    c.advance(a)
    steps(b, 80), notice(b, 1, "b1")                         # a loaded checkpoint: more steps, fewer events
    ch = c.advance(b)
    assert ch.new_history and ch.reset and ch.steps_from == 0 and [e["message"] for e in ch.new_events] == ["b1"]


def test_the_mark_reads_the_truncation_count_before_the_rows():
    """A rollback between the reads must be seen by the next mark: the count is read first and
    History raises it only after the rows are gone."""
    h = History()
    steps(h, 10)
    order = []

    class Spy:
        @property
        def truncations(self):
            order.append("truncations")
            return h.truncations

        @property
        def n_steps(self):
            order.append("n_steps")
            return h.n_steps
        epoch_records, event_records, gradient_samples = [], [], 0
    Mark.of(Spy())
    assert order == ["truncations", "n_steps"]
    prev = Changes(None, Mark.of(h)).now
    h.truncate_steps(3)
    assert h.n_steps == 3 and h.truncations == 1 and Changes(prev, Mark.of(h)).truncated


def test_charts_redraw_after_a_rollback_and_keep_no_removed_points():
    h = History()
    loss, metrics = LossChart(), MetricChart()
    fake = SimpleNamespace(history=h)
    steps(h, 10), epoch(h, 0, 10, val_loss=2.0)
    steps(h, 10, epoch=1), epoch(h, 1, 20, val_loss=3.0)
    loss.refresh(fake), metrics.refresh(fake)
    assert metrics.series("accuracy")[0].tolist() == [10.0, 20.0]
    h.truncate_steps(12), h.truncate_epochs(1)                # rolled back into epoch 1
    steps(h, 28, epoch=1, loss=0.5), epoch(h, 1, 40, val_loss=1.5)
    mark = Mark.of(h)
    loss.refresh(fake, mark), metrics.refresh(fake, mark)
    assert metrics.series("accuracy")[0].tolist() == [10.0, 40.0]     # the removed epoch is gone
    assert loss.val.x.tolist() == [10.0, 40.0] and loss.val.y.tolist() == [2.0, 1.5]
    assert loss._dec.n == 40 and float(np.max(loss.raw.x)) == 39.0   # re-read from step 0, not appended
    assert loss.cursor.seen is mark and metrics.cursor.seen is mark


def test_status_notices_are_not_repeated_by_a_rollback_or_by_the_panel_and_by_hand():
    h = History()
    t = SimpleNamespace(state="running", step=0, epoch=0, target_epochs=1, steps_per_epoch=10,
                        history=h, error=None)
    notice(h, 0, "first")
    view = StatusView(t)                                      # the constructor refreshes by hand
    view.refresh(t, mark=Mark.of(h))                          # then the panel: nothing new
    steps(h, 10), epoch(h, 0, 10), h.truncate_steps(5), h.truncate_epochs(0)
    notice(h, 5, "second")
    view.refresh(t, mark=Mark.of(h))
    view.refresh(t)
    assert [m for _, m in view.messages] == ["(epoch 0, step 5) second", "(epoch 0, step 0) first"]
