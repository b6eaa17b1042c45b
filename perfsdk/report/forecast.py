"""ARIMA forecast bands for a route's per-bucket median latency, fitted by statsmodels.

The report fits once, offline, over a whole series of at most a few hundred
buckets. The coefficients come from statsmodels' Hannan-Rissanen estimator
(``ARIMA.fit(method="hannan_rissanen")``: two regressions, no iterative
optimiser -- milliseconds, where maximum likelihood took up to two seconds a
route on a busy machine); statsmodels' Kalman filter then runs the model over
the series with its gaps (empty buckets), which gives both the one-step-ahead
prediction of every bucket with its prediction interval and the forecast past
the end. perfsdk's streaming ``ArimaDetector`` is built for the other job --
scoring a live stream point by point -- and compiling its kernels would cost
more than the whole report's time budget.

The model is ARIMA(1,0,1) with a constant on the log of the median: latency
varies by factors, not by milliseconds, and a band on the log scale never goes
below zero. ARIMA(1,0,0) stands in when the first estimate is not stationary
and invertible.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> median = np.exp(1.0 + 0.1 * rng.standard_normal(60)); median[40] = 30.0
>>> band = forecast_band(median, horizon=5)
>>> band.order, band.ahead_mean.shape, 40 in band.outside.tolist()
((1, 0, 1), (5,), True)
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["LEVEL", "MIN_POINTS", "ForecastBand", "forecast_band"]

LEVEL = 0.95
MIN_POINTS = 24  # buckets with data below which a fit says nothing


@dataclass
class ForecastBand:
    """One-step-ahead predictions with their ``LEVEL`` interval, and the forecast past the end (in ms)."""

    order: tuple[int, int, int]
    mean: np.ndarray  # one per bucket (NaN for the first: nothing to predict it from)
    lower: np.ndarray
    upper: np.ndarray
    ahead_mean: np.ndarray  # the next ``horizon`` buckets
    ahead_lower: np.ndarray
    ahead_upper: np.ndarray
    outside: np.ndarray  # indices of buckets whose median fell outside the band

    @property
    def label(self) -> str:
        p, d, q = self.order
        return f"ARIMA({p},{d},{q})"


def forecast_band(median_ms: np.ndarray, horizon: int) -> ForecastBand | str:
    """The band for ``median_ms`` (NaN: an empty bucket), or why there is none."""
    y = np.asarray(median_ms, dtype=np.float64)
    ok = np.isfinite(y) & (y > 0)
    if ok.sum() < MIN_POINTS:
        return f"too few buckets with data to fit a model ({int(ok.sum())}, {MIN_POINTS} needed)"
    logs = np.where(ok, np.log(np.where(ok, y, 1.0)), np.nan)
    # the estimator needs a series without gaps: fill them for the estimate only
    filled = np.interp(np.arange(len(logs)), np.flatnonzero(ok), logs[ok])
    reasons = []
    for order in ((1, 0, 1), (1, 0, 0)):
        try:
            params = _estimate(filled, order)
        except Exception as exc:  # statsmodels raises many kinds (LinAlgError, ValueError, ...)
            reasons.append(f"ARIMA{order}: {type(exc).__name__}: {exc}")
            continue
        if params is None:
            reasons.append(f"ARIMA{order}: not stationary and invertible")
            continue
        return _band(logs, order, params, horizon)
    return "no model fitted (" + "; ".join(reasons) + ")"


def _estimate(series: np.ndarray, order: tuple[int, int, int]) -> np.ndarray | None:
    """Hannan-Rissanen coefficients (const, ar, ma, sigma2), or None if unusable."""
    from statsmodels.tsa.arima.model import ARIMA

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = ARIMA(series, order=order, trend="c").fit(method="hannan_rissanen")
    params = np.asarray(result.params, dtype=np.float64)
    names = list(result.model.param_names)
    roots = [abs(params[names.index(n)]) for n in ("ar.L1", "ma.L1") if n in names]
    if not np.all(np.isfinite(params)) or any(r >= 0.99 for r in roots) or params[-1] <= 0:
        return None
    return params


def _band(logs: np.ndarray, order: tuple[int, int, int], params: np.ndarray, horizon: int) -> ForecastBand:
    from statsmodels.tsa.arima.model import ARIMA

    alpha = 1.0 - LEVEL
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = ARIMA(logs, order=order, trend="c").filter(params)
        inside = result.get_prediction(start=1)
        interval = np.asarray(inside.conf_int(alpha=alpha))
        ahead = result.get_forecast(horizon)
        ahead_interval = np.asarray(ahead.conf_int(alpha=alpha))
    n = len(logs)
    mean, lower, upper = (np.full(n, np.nan) for _ in range(3))
    mean[1:], lower[1:], upper[1:] = (np.exp(np.asarray(v, dtype=np.float64))
                                      for v in (inside.predicted_mean, interval[:, 0], interval[:, 1]))
    observed = np.exp(logs)
    with np.errstate(invalid="ignore"):
        outside = np.flatnonzero((observed < lower) | (observed > upper))
    return ForecastBand(order, mean, lower, upper, np.exp(np.asarray(ahead.predicted_mean, dtype=np.float64)),
                        np.exp(ahead_interval[:, 0]), np.exp(ahead_interval[:, 1]), outside)
