"""ZScoreDetector: numbers against naive references, stability, both engines, bad input."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import naive
from perfsdk import Anomaly, ZScoreDetector
from perfsdk._native import kernels


def series(n=2000, seed=1):
    rng = np.random.default_rng(seed)
    return 50.0 + 10.0 * np.sin(np.arange(n) / 40.0) + rng.normal(0, 3.0, n)


@pytest.mark.parametrize("window,warmup", [(2, 2), (16, 5), (256, 256)])
def test_rolling_matches_naive(window, warmup):
    xs = series()
    xs[[100, 700, 1500]] = [np.nan, np.inf, -np.inf]
    got = ZScoreDetector(window=window, warmup=warmup).update_many(xs)
    want = naive.rolling_zscores(xs, window, warmup)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


def test_ewma_matches_naive():
    xs = series()
    got = ZScoreDetector(alpha=0.05).update_many(xs)
    np.testing.assert_allclose(got, naive.ewma_zscores(xs, 0.05, 40), rtol=1e-9, atol=1e-12)


def test_no_drift_over_ten_million_points_with_large_offset():
    """Running sums would lose every digit here; the windowed state must not drift."""
    n, window = 10_000_000, 256
    rng = np.random.default_rng(3)
    xs = 1e9 + rng.uniform(-1.0, 1.0, n)
    det = ZScoreDetector(window=window)
    z = det.update_many(xs)
    checkpoints = np.r_[np.linspace(window, n - 1, 2000).astype(int), n - 1]
    windows = np.lib.stride_tricks.sliding_window_view(xs, window)
    ref = windows[checkpoints - window]  # the `window` points before each checkpoint
    # numpy on the raw values loses ~3e-7 itself; subtracting the offset first
    # (exact here) gives the true values, which the detector must match.
    ref, point = ref - 1e9, xs[checkpoints] - 1e9
    want = (point - ref.mean(axis=1)) / ref.std(axis=1, ddof=1)
    np.testing.assert_allclose(z[checkpoints], want, rtol=0, atol=1e-12)
    expected = det.state[kernels.ZS_SHIFT] + det.state[kernels.ZS_MEAN]
    np.testing.assert_allclose(expected, xs[-window:].mean(), rtol=1e-15)


def test_constant_series_rule():
    det = ZScoreDetector(window=8)
    det.update_many(np.full(8, 42.0))
    assert det.update(42.0) == 0.0
    assert det.update(42.5) == math.inf
    assert ZScoreDetector(window=8, min_std=0.25).update_many(np.r_[np.full(8, 42.0), 42.5])[-1] == 2.0


def test_warmup_returns_nan_then_scores():
    z = ZScoreDetector(window=10, warmup=3).update_many(series(6))
    assert np.isnan(z[:3]).all() and np.isfinite(z[3:]).all()


def test_check_returns_explained_anomaly():
    det = ZScoreDetector(window=50, threshold=4.0)
    det.update_many(series(200))
    assert det.check(52.0) is None
    a = det.check(500.0, timestamp="2026-11-28T10:00:00")
    assert isinstance(a, Anomaly)
    assert a.index == 201 and a.value == 500.0 and a.threshold == 4.0
    assert a.score == pytest.approx((500.0 - a.expected) / a.std)
    assert a.lower < a.expected < a.upper < a.value
    assert "above the expected" in str(a) and "2026-11-28T10:00:00" in str(a)
    assert a.as_dict()["details.window"] == 50


def test_detect_many_indices_count_rejected_points():
    xs = np.r_[series(100), np.nan, 1000.0]
    a = ZScoreDetector(window=50).detect_many(xs)[-1]
    assert a.index == 101 and a.value == 1000.0


def test_river_verbs_take_dicts():
    det = ZScoreDetector(window=4)
    for x in [1.0, 2.0, 3.0, 4.0]:
        det.learn_one({"latency": x})
    assert det.score_one({"latency": 2.5}) == 0.0
    assert det.score_one(10.0) == pytest.approx(abs(det._score_one(10.0)))
    with pytest.raises(ValueError, match="one-item dict"):
        det.learn_one({"a": 1.0, "b": 2.0})


@pytest.mark.parametrize(
    "kwargs,argument",
    [
        ({"window": 1}, "window"),
        ({"window": 2.5}, "window"),
        ({"window": True}, "window"),
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": 1.5}, "alpha"),
        ({"threshold": 0}, "threshold"),
        ({"threshold": float("nan")}, "threshold"),
        ({"warmup": 1}, "warmup"),
        ({"min_std": -1.0}, "min_std"),
        ({"clip": -1.0}, "clip"),
        ({"clip": float("nan")}, "clip"),
        ({"name": 3}, "name"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, argument):
    with pytest.raises((TypeError, ValueError), match=argument):  # TypeError for a wrong type
        ZScoreDetector(**kwargs)


def test_bad_batches_and_snapshots_are_refused():
    det = ZScoreDetector(window=8)
    with pytest.raises(ValueError, match="one-dimensional"):
        det.update_many(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="timestamps"):
        det.detect_many([1.0, 2.0], timestamps=[1])
    with pytest.raises(ValueError, match="shape"):
        det.restore(ZScoreDetector(window=16).snapshot())
    with pytest.raises(ValueError, match="different parameters"):
        det.restore(ZScoreDetector(window=8, threshold=4.0, warmup=3).snapshot())
    with pytest.raises(ValueError, match="different parameters"):
        det.restore(ZScoreDetector(window=8, clip=10.0).snapshot())


def test_clip_bounds_an_isolated_extreme_and_still_learns_a_level_shift():
    xs = 2.0 + 0.15 * np.random.default_rng(3).standard_normal(1200)
    xs[300] = 300.0  # one stalled request
    xs[400:405] += 1.5  # a change ten times its usual spread, smaller than the stall
    plain, bounded = ZScoreDetector(window=256), ZScoreDetector(window=256, clip=10.0)
    z_plain, z_bounded = plain.update_many(xs), bounded.update_many(xs)
    assert z_plain[300] == z_bounded[300] > 1000  # scores are unchanged: the stall is news either way
    assert z_plain[400] < 0.5  # learned as it was, the stall hides the change...
    assert z_bounded[400] > 5  # ...learned at 10 std, it does not
    shifted = xs.copy()
    shifted[600:] += 50.0  # a level shift: its second point on is learned as it is
    z_shift = ZScoreDetector(window=256, clip=10.0).update_many(shifted)
    assert z_shift[600] > 100 and abs(z_shift[1100]) < 3  # news, then the new normal


def test_clip_learns_a_constant_series_first_change_and_learn_one_learns_as_update_does():
    xs = np.zeros(400)
    xs[[100, 130, 160, 190]] = 1.0  # a spread of 0: no clip can apply, the change is learned
    plain, bounded = ZScoreDetector(window=256), ZScoreDetector(window=256, clip=25.0)
    assert np.array_equal(plain.update_many(xs), bounded.update_many(xs), equal_nan=True)
    stall = 2.0 + 0.1 * np.sin(np.arange(600.0))
    stall[300] = 500.0
    updated, learned = ZScoreDetector(window=64, clip=10.0), ZScoreDetector(window=64, clip=10.0)
    for x in stall:
        updated.update(x)
        learned.learn_one(x)
    assert np.array_equal(updated.state, learned.state)


def test_pickle_round_trip_is_exact():
    det = ZScoreDetector(window=32)
    det.update_many(series(100))
    copy = pickle.loads(pickle.dumps(det))
    assert np.array_equal(copy.state, det.state) and repr(copy) == repr(det)


finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
points = st.one_of(finite, finite, finite, st.sampled_from([math.nan, math.inf, -math.inf]))


@settings(max_examples=150, deadline=None)
@given(
    xs=st.lists(points, min_size=1, max_size=300),
    cuts=st.lists(st.integers(0, 300), max_size=6),
    window=st.integers(2, 20),
    ewma=st.booleans(),
    clip=st.sampled_from([0.0, 2.0]),
)
def test_any_interleaving_of_engines_is_bit_identical(xs, cuts, window, ewma, clip):
    xs = np.array(xs)
    make = lambda: (ZScoreDetector(alpha=0.2, warmup=2, clip=clip) if ewma
                    else ZScoreDetector(window=window, warmup=2, clip=clip))
    scalar = make()
    want = np.array([scalar.update(x) for x in xs])
    mixed = make()
    bounds = sorted({0, len(xs), *[c for c in cuts if c < len(xs)]})
    got = []
    for k, (lo, hi) in enumerate(zip(bounds, bounds[1:])):
        if k % 2:
            got.extend(mixed.update(x) for x in xs[lo:hi])
        else:
            got.extend(mixed.update_many(xs[lo:hi]))
    assert np.array_equal(np.array(got), want, equal_nan=True)
    assert np.array_equal(mixed.state, scalar.state)
    assert mixed.rejected == int((~np.isfinite(xs)).sum())


def test_an_extreme_leaving_the_window_leaves_the_exact_spread_behind():
    """A point 1e9 spreads out made the rolling M2 a rounding error once it left the window: the
    detector held 0.13 for a spread of 1.04 (23 false anomalies, two of them infinite)."""
    w = 64
    xs = 100 + np.random.default_rng(7).normal(0, 1, 1000)
    xs[357] = 3e9
    exact = np.array([(xs[i] - xs[i - w:i].mean()) / xs[i - w:i].std(ddof=1) for i in range(w, len(xs))])
    batch = ZScoreDetector(window=w).update_many(xs)[w:]
    per_event = ZScoreDetector(window=w)
    single = np.array([per_event.update(x) for x in xs])[w:]
    assert np.array_equal(batch, single)
    after = slice(358, None)  # from the window holding the extreme on
    assert np.allclose(batch[after], exact[after], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("batch", [
    ["1", "2", "3"], [None, 1.0, 2.0], np.array([1 + 5j, 2.0]), np.array(["2026-01-01"], dtype="datetime64[D]"),
])
def test_a_batch_takes_real_numbers_only_as_update_does(batch):
    """The batch path parsed strings, turned None into NaN and dropped imaginary parts, where
    ``update`` refuses all three: one rule for both paths."""
    det = ZScoreDetector(window=8, warmup=2)
    with pytest.raises(TypeError, match="xs must hold numbers|each of xs must be a number"):
        det.update_many(batch)
    if isinstance(batch, list):  # as update refuses "1" and None
        with pytest.raises(TypeError):
            det.update(batch[0])
    assert det.n_seen == 0


@pytest.mark.parametrize("verb", ["score_one", "learn_one"])
def test_river_verbs_refuse_text(verb):
    det = ZScoreDetector(window=8, warmup=2)
    for bad in ("1", {"x": "1"}, None):
        with pytest.raises(TypeError, match="x must be a number"):
            getattr(det, verb)(bad)


def test_a_batch_of_python_numbers_reads_as_update_reads_each():
    """An object array (a pandas object column, Fractions, bools) is taken one by one by ``update``'s rule."""
    from fractions import Fraction

    points = [1.0, Fraction(3, 2), True, np.float32(2.5), 4]
    batch = ZScoreDetector(window=8, warmup=2)
    single = ZScoreDetector(window=8, warmup=2)
    assert np.array_equal(batch.update_many(np.array(points, dtype=object)),
                          [single.update(x) for x in points], equal_nan=True)


def test_a_zero_dimensional_batch_is_refused():
    with pytest.raises(ValueError, match="xs must be one-dimensional, got shape \\(\\)"):
        ZScoreDetector().update_many(np.array(5.0))


@pytest.mark.parametrize(("slot", "value", "message"), [
    (kernels.ZS_SHIFT, math.inf, "mean, shift or M2 out of range"),
    (kernels.ZS_POS, 3.0, "5 points learned but the window's next slot is 3"),
    (kernels.ZS_HEADER + 1, 1e300, "its window holds a value no update accepts"),
])
def test_a_corrupt_snapshot_is_refused_naming_what(slot, value, message):
    det = ZScoreDetector(window=8, warmup=2)
    det.update_many([1.0, 2.0, 3.0, 4.0, 5.0])
    snap = det.snapshot()
    snap[slot] = value
    with pytest.raises(ValueError, match=message):
        ZScoreDetector(window=8, warmup=2).restore(snap)


HUGE = (10**400, -(10**400))


@pytest.mark.parametrize("huge", HUGE, ids=["plus", "minus"])
def test_an_int_too_large_for_a_float_is_rejected_like_inf(huge):
    """``update(10**400)`` raised OverflowError (naming nothing) from the C conversion, and so
    did every verb: an int beyond a float is +-inf -- rejected, counted, the state unchanged."""
    det = ZScoreDetector(window=4, warmup=2)
    det.update_many([1.0, 2.0, 3.0])
    before = det.snapshot()
    assert math.isnan(det.update(huge)) and det.check(huge) is None
    det.learn_one(huge)
    assert det.score_one(huge) == 0.0
    assert np.isnan(det.update_many([huge, huge])).all()
    assert det.rejected == 5 and det.n_learned == 3
    mask = np.arange(len(before)) != kernels.ZS_REJECTED
    assert np.array_equal(det.state[mask], before[mask])


@pytest.mark.parametrize("verb", ["update", "check"])
@pytest.mark.parametrize("bad", ["1", None, 1 + 2j, [1.0]])
def test_per_event_verbs_name_the_argument_they_refuse(verb, bad):
    """``update("1")`` said "must be real number, not str" (Cython's conversion), naming nothing."""
    det = ZScoreDetector(window=4, warmup=2)
    with pytest.raises(TypeError, match="^x must be a number, got "):
        getattr(det, verb)(bad)
    assert det.n_seen == 0


def test_update_takes_any_number_as_the_river_verbs_do():
    """Off the float fast path (ints, bools, numpy scalars, Fractions) ``update`` reads a point
    exactly as ``as_point`` does."""
    from fractions import Fraction

    points = [1, True, np.float32(2.5), np.int64(3), Fraction(7, 2), 2**60, np.float64(4.0)]
    one, batch = ZScoreDetector(window=4, warmup=2), ZScoreDetector(window=4, warmup=2)
    assert np.array_equal([one.update(x) for x in points], batch.update_many(np.array(points, dtype=object)),
                          equal_nan=True)
    assert np.array_equal(one.state, batch.state)


@pytest.mark.parametrize(
    "kwargs,argument",
    [
        ({"window": 2**62}, "window"),  # 8 * n overflowed: a header-sized state the ring wrote past
        ({"window": 10**7 + 1}, "window"),  # past MAX_POINTS: refused, not 80 MB and more allocated
        ({"alpha": 1}, "alpha"),  # the variance stays 0: every point of noise scored infinite
        ({"threshold": 10**400}, "threshold"),  # too large for a float: not an OverflowError
        ({"window": 8, "min_std": 10**400}, "min_std"),
    ],
)
def test_oversized_arguments_are_a_value_error_naming_them(kwargs, argument):
    with pytest.raises(ValueError, match=f"^{argument} must be"):
        ZScoreDetector(**kwargs)


def test_the_documented_largest_window_is_accepted():
    assert ZScoreDetector(window=10**7).window == 10**7


@pytest.mark.parametrize("kwargs,argument", [
    ({"alpha": 5e-324}, "alpha"),  # its default warm-up, 2 / alpha points, was an OverflowError
    ({"alpha": 1e-300}, "alpha"),  # ... or a 301-digit warm-up: it never scored
    ({"alpha": 1e-300, "warmup": 10**7 + 1}, "warmup"),
    ({"window": 8, "warmup": 10**7 + 1}, "warmup"),
])
def test_a_warmup_past_the_maximum_is_a_value_error_naming_what_set_it(kwargs, argument):
    with pytest.raises(ValueError, match=f"^{argument} must be"):
        ZScoreDetector(**kwargs)
    assert ZScoreDetector(alpha=2e-7).warmup == 10**7  # the largest default warm-up
    assert ZScoreDetector(alpha=1e-300, warmup=50).warmup == 50


@pytest.mark.parametrize("bad", [np.array([1.0]), np.array([1.0, 2.0]), np.datetime64("2024-01-01")])
def test_update_names_x_when_it_refuses_an_array_or_a_date(bad):
    det = ZScoreDetector(window=4, warmup=2)
    with pytest.raises(TypeError, match="^x must be a number, got "):
        det.update(bad)
    assert det.n_seen == 0
