"""ZScoreDetector speed, side by side with its anchors (issue 2 targets).

Per event: ``update`` vs the floor (an empty Python call in the same loop) and
vs River's rolling variance. Batch: ``update_many`` over 10^7 points vs a
vectorised numpy rolling z-score and pandas' rolling mean/std.

    make bench            # then: .venv/bin/python benches/ratios.py .benchmarks/latest.json
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from benchutil import bench_per_event, empty, per_item
from perfsdk import ZScoreDetector

WINDOW = 256
LOOP = 20_000  # events per timed call, so timer overhead vanishes


def _latencies(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return 100.0 + rng.gamma(4.0, 5.0, n)


@pytest.fixture(scope="module")
def events() -> list[float]:
    return _latencies(LOOP).tolist()


def _warm(det: ZScoreDetector) -> ZScoreDetector:
    det.update_many(_latencies(2 * WINDOW))
    return det


# ---- per event -------------------------------------------------------------


PER_EVENT = "zscore: per-event update (ns/event)"


@pytest.mark.benchmark(group=PER_EVENT)
def test_floor_empty_call(benchmark, events):
    bench_per_event(benchmark, events, empty, anchor="floor")


@pytest.mark.benchmark(group=PER_EVENT)
def test_perfsdk_update_window(benchmark, events):
    bench_per_event(benchmark, events, _warm(ZScoreDetector(window=WINDOW)).update)


@pytest.mark.benchmark(group=PER_EVENT)
def test_perfsdk_update_ewma(benchmark, events):
    bench_per_event(benchmark, events, _warm(ZScoreDetector(alpha=0.01)).update)


@pytest.mark.benchmark(group=PER_EVENT)
def test_river_rolling_var(benchmark, events):
    from river import stats, utils

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        rolling = utils.Rolling(stats.Var(), window_size=WINDOW)
    for x in _latencies(2 * WINDOW):
        rolling.update(x)
    mean, var, learn = rolling.obj.mean.get, rolling.get, rolling.update

    def score_then_learn(x):
        (x - mean()) / (var() ** 0.5)
        learn(x)

    bench_per_event(benchmark, events, score_then_learn, anchor="river")


# ---- batch -----------------------------------------------------------------


@pytest.fixture(scope="module")
def batch(request) -> np.ndarray:
    return _latencies(10_000_000)


@pytest.mark.benchmark(group="zscore: update_many, window 256 (points/s)")
def test_perfsdk_update_many(benchmark, batch, full_size):
    xs = batch[: full_size(len(batch), 10_000)]
    det = ZScoreDetector(window=WINDOW)
    det.update_many(xs[:10])  # compile outside the timing

    def run():
        det.reset()
        return det.update_many(xs)

    per_item(benchmark, len(xs))
    z = benchmark(run)
    assert np.isfinite(z[WINDOW:]).all()


def numpy_rolling_z(xs: np.ndarray, window: int) -> np.ndarray:
    """Vectorised z of each point against the previous `window` points (cumsum-based)."""
    c1 = np.concatenate(([0.0], np.cumsum(xs)))
    c2 = np.concatenate(([0.0], np.cumsum(xs * xs)))
    s1 = c1[window:-1] - c1[:-window - 1]
    s2 = c2[window:-1] - c2[:-window - 1]
    mean = s1 / window
    var = (s2 - s1 * mean) / (window - 1)
    z = np.full(len(xs), np.nan)
    z[window:] = (xs[window:] - mean) / np.sqrt(var)
    return z


@pytest.mark.benchmark(group="zscore: update_many, window 256 (points/s)")
def test_numpy_vectorised_rolling_z(benchmark, batch, full_size):
    xs = batch[: full_size(len(batch), 10_000)]
    per_item(benchmark, len(xs), anchor="numpy")
    z = benchmark(numpy_rolling_z, xs, WINDOW)
    want = ZScoreDetector(window=WINDOW).update_many(xs)
    np.testing.assert_allclose(z[WINDOW:], want[WINDOW:], atol=1e-6)  # same quantity


@pytest.mark.benchmark(group="zscore: update_many, window 256 (points/s)")
def test_pandas_rolling_z(benchmark, batch, full_size):
    import pandas as pd

    xs = batch[: full_size(len(batch), 10_000)]

    def run():
        s = pd.Series(xs)
        rolling = s.rolling(WINDOW)
        return ((s - rolling.mean().shift(1)) / rolling.std().shift(1)).to_numpy()

    per_item(benchmark, len(xs), anchor="pandas")
    z = benchmark(run)
    want = ZScoreDetector(window=WINDOW).update_many(xs)
    np.testing.assert_allclose(z[WINDOW:], want[WINDOW:], atol=1e-6)
