"""The run rule: the batch walk (analyze) agrees with the point-by-point step (the live bank)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfsdk.detect import Onset, RunRule
from perfsdk.detect._base import MAX_POINTS
from perfsdk.detect.runs import refused


def stepped_runs(rule, values, scores, expected, std, threshold):
    """The live bank's way: ``step`` at every point the detectors accept (a refused value, NaN or
    inf, moves no run)."""
    runs, run, onset, last = [], 0, None, -1
    for i, value in enumerate(values):
        if refused(value):
            continue
        flagged = Onset(i, value, expected[i], std[i], scores[i]) if abs(scores[i]) > threshold else None
        new_run, new_onset = rule.step(run, onset, value, threshold, flagged)
        if new_run != run + 1 and run >= rule.confirm:
            runs.append((onset.index, run, last))
        run, onset, last = new_run, new_onset, i
    if run >= rule.confirm:
        runs.append((onset.index, run, last))
    return runs


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 10**6), confirm=st.integers(1, 4), n=st.integers(0, 300),
       min_ratio=st.sampled_from([0.0, 0.2]), burst=st.floats(0.0, 0.3))
def test_batch_runs_equal_stepped_runs(seed, confirm, n, min_ratio, burst):
    rng = np.random.default_rng(seed)
    expected = 20.0 + rng.normal(0, 1, n)
    std = rng.uniform(0.5, 3.0, n)
    values = expected + rng.normal(0, 2, n)
    shifted = rng.random(n) < burst  # runs of slow and fast points
    values[shifted] += rng.choice([-15.0, 15.0, 40.0]) * rng.uniform(0.5, 1.5, shifted.sum())
    scores = (values - expected) / std
    scores[rng.random(n) < 0.05] = np.nan  # warming up
    refused = rng.random(n) < 0.05
    values[refused], scores[refused] = rng.choice([np.nan, np.inf, -1e200], refused.sum()), np.nan
    rule = RunRule(confirm, min_delta=1.0, min_ratio=min_ratio)
    assert rule.confirmed_runs(values, scores, expected, std, 3.0) == stepped_runs(
        rule, values.tolist(), scores.tolist(), expected.tolist(), std.tolist(), 3.0)


@pytest.mark.parametrize(("arrays", "message"), [
    ((np.full(100, 50.0), np.zeros(10), np.full(100, 10.0), np.ones(100)), "scores must be 1-D and as long as values"),
    ((np.full((10, 2), 50.0), np.zeros(10), np.zeros(10), np.ones(10)), "values must be 1-D"),
])
def test_confirmed_runs_refuses_arrays_of_other_lengths(arrays, message):
    """The kernel reads all four arrays by one index: a short one was read past its end."""
    with pytest.raises(ValueError, match=message):
        RunRule(confirm=1).confirmed_runs(*arrays, threshold=3.0)


@pytest.mark.parametrize("threshold", [-1.0, 0.0, float("nan")])
def test_confirmed_runs_refuses_a_threshold_that_is_not_positive(threshold):
    with pytest.raises(ValueError, match="threshold must be"):
        RunRule().confirmed_runs(np.ones(5), np.ones(5), np.ones(5), np.ones(5), threshold=threshold)


def test_a_confirm_past_the_maximum_is_a_value_error_naming_it():
    """``confirm=10**20`` reached the Numba kernels and failed there with a typing error."""
    assert RunRule(confirm=MAX_POINTS).confirm == MAX_POINTS
    with pytest.raises(ValueError, match="confirm"):
        RunRule(confirm=10**20)


def test_a_refused_value_moves_no_run_and_no_alert():
    """The live bank skips a value its detectors refuse; stepped by hand the rule does the same."""
    rule = RunRule(confirm=3)
    onset = Onset(0, 50.0, 10.0, 1.0, 40.0)
    assert rule.step(2, onset, float("nan"), 3.0, None) == (2, onset)
    pending, confirmed = rule.confirm_alert(None, 0, 50.0, None, onset, 3.0)
    for i, value in enumerate([float("nan"), 51.0, float("inf"), 52.0], start=1):
        pending, confirmed = rule.confirm_alert(pending, i, value, None)
    assert confirmed is not None and confirmed.index == 0
