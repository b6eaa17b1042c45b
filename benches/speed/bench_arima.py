"""ArimaDetector speed, side by side with statsmodels (issue 3 targets).

Per event, ARIMA(2,1,2): ``update`` vs statsmodels' per-point path (a new
observation through ``append`` -- what the issue names -- and through
``extend``, statsmodels' cheapest per-point path -- each followed by a one-step
``forecast``). Batch: ``update_many`` over 10^7 points. Fit: statsmodels
SARIMAX on a 500-point warm-up window, as the background worker runs it.

    make bench
"""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.tsa.statespace.sarimax import SARIMAX

from benchutil import bench_per_event, empty, per_item
from perfsdk import ArimaDetector
from perfsdk.detect._fitting import fit_arima

ORDER = (2, 1, 2)
AR, MA, SIGMA2 = [0.5, -0.2], [0.3, 0.1], 4.0
LOOP = 20_000


def _series(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 200.0 + np.cumsum(rng.normal(0.0, 2.0, n)) * 0.1 + rng.normal(0.0, 2.0, n)


def _detector() -> ArimaDetector:
    det = ArimaDetector.from_params(ORDER, ar=AR, ma=MA, sigma2=SIGMA2, warmup=10)
    det.update_many(_series(500, seed=1))
    return det


@pytest.fixture(scope="module")
def events() -> list[float]:
    return _series(LOOP).tolist()


PER_EVENT = "arima(2,1,2): per-event update (ns/event)"


@pytest.mark.benchmark(group=PER_EVENT)
def test_floor_empty_call(benchmark, events):
    bench_per_event(benchmark, events, empty, anchor="floor")


@pytest.mark.benchmark(group=PER_EVENT)
def test_perfsdk_arima_update(benchmark, events):
    bench_per_event(benchmark, events, _detector().update)


def _statsmodels_results():
    history = _series(500, seed=1)
    model = SARIMAX(history, order=ORDER, trend="n")
    return model.filter(np.r_[AR, MA, SIGMA2])


@pytest.mark.benchmark(group=PER_EVENT)
@pytest.mark.parametrize("method,points", [("append", 50), ("extend", 200)])
def test_statsmodels_per_point_and_forecast(benchmark, events, full_size, method, points):
    """A new observation through statsmodels, then a one-step forecast."""
    todo = events[: full_size(points, 3)]

    def run():
        results = _statsmodels_results()
        for x in todo:
            results = getattr(results, method)([x])
            results.forecast(1)

    per_item(benchmark, len(todo), anchor=f"statsmodels {method}")
    benchmark.pedantic(run, rounds=3, iterations=1)


@pytest.mark.benchmark(group="arima(2,1,2): update_many (points/s)")
def test_perfsdk_arima_update_many(benchmark, full_size):
    xs = _series(full_size(10_000_000, 10_000))
    det = _detector()
    snapshot = det.snapshot()

    def run():
        det.restore(snapshot)
        return det.update_many(xs)

    per_item(benchmark, len(xs))
    z = benchmark(run)
    assert np.isfinite(z).all()


@pytest.mark.benchmark(group="arima(2,1,2): fit on 500 points (statsmodels)")
def test_fit_time(benchmark):
    ys = _series(500, seed=2)
    per_item(benchmark, 1)
    fit = benchmark.pedantic(fit_arima, args=(ys, ORDER), rounds=5, iterations=1)
    assert fit.order == ORDER
