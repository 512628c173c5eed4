"""DivergenceWatch: the starting level, the blow-up test and the rollback-target test."""
import numpy as np

from nnwidgets.checks.divergence import FACTOR, IN_RANGE, START_STEPS, DivergenceWatch


def test_c12_blow_up_in_the_first_windows_is_caught_at_step_1():
    w = DivergenceWatch()
    assert w.first_diverged(np.array([2.16e4])) is None and w.in_range(np.array([2.16e4]))
    w.observe(np.array([2.16e4]))
    assert w.start == 2.16e4 and w.limit() == 2.16e7
    assert w.first_diverged(np.array([1.27e12])) == 0
    assert w.describe(1.27e12) == "1.27e+12, 5.9e+07x its starting level 2.16e+04"


def test_a_blow_up_inside_the_first_window_is_judged_against_the_losses_before_it():
    assert DivergenceWatch().first_diverged(np.array([2.3, 2.2, 2.1, 5e3, np.inf])) == 3


def test_noise_and_a_falling_loss_are_not_divergence():
    w = DivergenceWatch()
    rng = np.random.default_rng(0)
    first = 2.3 + 0.1 * rng.standard_normal(START_STEPS)
    w.observe(first)
    assert abs(w.start - np.median(first)) < 1e-12
    late = np.abs(0.01 + 0.5 * rng.standard_normal(1000))  # converged, noisy minibatches
    assert w.first_diverged(late) is None and w.in_range(late)
    assert w.first_diverged(np.array([FACTOR * w.start * 0.99])) is None


def test_the_starting_level_stops_at_START_STEPS_losses_and_skips_non_finite():
    w = DivergenceWatch()
    w.observe(np.array([np.nan, 1.0] + [3.0] * (START_STEPS - 1)))
    assert w.start == 3.0
    w.observe(np.array([100.0] * 50))
    assert w.start == 3.0


def test_in_range_is_what_a_rollback_may_return_to():
    w = DivergenceWatch()
    w.observe(np.array([1.0]))
    assert w.in_range(np.array([0.5, IN_RANGE * 1.0]))
    assert not w.in_range(np.array([0.5, IN_RANGE * 1.01]))
    assert not w.in_range(np.array([0.5, np.nan]))
    assert w.first_diverged(np.array([0.5, np.nan, 1e9])) is None  # non-finite first: reported as such


def test_a_blow_up_judged_within_the_first_window_is_described_against_that_window():
    w = DivergenceWatch()  # no level yet: the window's first loss is the level
    assert w.first_diverged(np.array([1.1, 2.4e8])) == 1
    assert w.describe(2.4e8) == "2.4e+08, 2.2e+08x its starting level 1.1"
