"""Fitting ARIMA models with statsmodels, off the application's path.

``fit_arima`` and ``choose_order`` are plain functions (statsmodels does the
estimation); ``FITS`` runs them on one background thread with a bounded
queue, so a detector's ``update`` never waits for a fit and a flood of fit
requests cannot grow memory without bound.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from perfsdk._runtime import Worker

__all__ = ["AUTO_MAX_D", "AUTO_MAX_P", "AUTO_MAX_Q", "FITS", "SEASON_CANDIDATES", "ArimaFit", "FitError",
           "choose_order", "detect_season", "differencing_taps", "fit_arima", "quick_fit", "robust_sample"]

#: Orders searched by ``order="auto"`` (AR and MA up to 2; d from a unit-root test).
AUTO_MAX_P = 2
AUTO_MAX_Q = 2
AUTO_MAX_D = 2
#: Periods ``season="auto"`` looks for: a day and a week of 5-minute samples.
SEASON_CANDIDATES = (288, 2016)
#: A period counts when the series correlates this much with itself one period back.
SEASON_MIN_CORR = 0.5


class FitError(Exception):
    """A fit that failed or did not converge (the detector keeps its old model)."""


@dataclass(frozen=True)
class ArimaFit:
    """Coefficients of a fitted ARIMA(p, d, q) model (statsmodels' SARIMAX convention).

    On the differenced series ``w``: ``w_t = intercept + sum(ar[i] w_{t-1-i})
    + sum(ma[j] e_{t-1-j}) + e_t`` with ``Var(e) = sigma2``.
    """

    order: tuple[int, int, int]
    intercept: float
    ar: tuple[float, ...]
    ma: tuple[float, ...]
    sigma2: float
    aic: float = field(default=float("nan"), repr=False, compare=False)
    n_obs: int = field(default=0, repr=False, compare=False)
    season: int | None = None  # the seasonal difference's period, if the model has one


def differencing_taps(d: int, season: int | None) -> list[tuple[int, float]]:
    """Nonzero lags of (1 - B)^d (1 - B^s): ``w_t = y_t + sum(coef * y_{t-lag})``.

    >>> differencing_taps(1, None)
    [(1, -1.0)]
    >>> differencing_taps(1, 24)
    [(1, -1.0), (24, -1.0), (25, 1.0)]
    """
    poly = np.array([1.0])
    for _ in range(d):
        poly = np.convolve(poly, [1.0, -1.0])
    if season:
        seasonal = np.zeros(season + 1)
        seasonal[0], seasonal[season] = 1.0, -1.0
        poly = np.convolve(poly, seasonal)
    return [(int(lag), float(poly[lag])) for lag in np.flatnonzero(poly[1:]) + 1]  # in C: a daily season scans 86,401


def _sarimax(y: np.ndarray, order: tuple[int, int, int], season: int | None) -> Any:
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    p, d, q = order
    return SARIMAX(
        y,
        order=order,
        seasonal_order=(0, 1, 0, season) if season else (0, 0, 0, 0),
        trend="c" if d == 0 and not season else "n",
        simple_differencing=True,
    )


def fit_arima(y: np.ndarray, order: tuple[int, int, int], season: int | None = None) -> ArimaFit:
    """Fit ARIMA ``order`` to ``y`` by maximum likelihood (statsmodels SARIMAX).

    Raises ``FitError`` if statsmodels fails, does not converge, or returns
    coefficients that are not finite.
    """
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    p, d, q = order
    # Fit on the standardised series: the optimiser is far better conditioned
    # when a metric at 1000 +/- 2 is not asked to find an intercept of ~400.
    center = float(np.mean(y))
    w = y
    for _ in range(d):
        w = np.diff(w)
    if season:
        w = w[season:] - w[:-season]
    spread = float(np.std(w)) if len(w) > 1 else 0.0
    spread = spread if spread > 0.0 and math.isfinite(spread) else 1.0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # statsmodels' warnings become our counted errors
            warnings.simplefilter("error", ConvergenceWarning)
            result = _sarimax((y - center) / spread, order, season).fit(disp=False, maxiter=200)
    except ConvergenceWarning as exc:
        raise FitError(f"ARIMA{order} did not converge: {exc}") from None
    except Exception as exc:  # statsmodels raises many kinds (LinAlgError, ValueError, ...)
        raise FitError(f"ARIMA{order} fit failed: {type(exc).__name__}: {exc}") from None
    params = dict(zip(result.model.param_names, np.asarray(result.params, dtype=float).tolist()))
    ar = tuple(params[f"ar.L{i}"] for i in range(1, p + 1))
    intercept = params.get("intercept", 0.0) * spread
    if "intercept" in params:  # undo the centring: w = y - center had intercept c'
        intercept += center * (1.0 - sum(ar))
    fit = ArimaFit(
        order=order,
        intercept=intercept,
        ar=ar,
        ma=tuple(params[f"ma.L{j}"] for j in range(1, q + 1)),
        sigma2=params["sigma2"] * spread * spread,
        aic=float(result.aic),
        n_obs=int(result.nobs),
        season=season,
    )
    values = (fit.intercept, *fit.ar, *fit.ma, fit.sigma2)
    if not all(np.isfinite(values)) or fit.sigma2 <= 0.0:
        raise FitError(f"ARIMA{order} fit gave unusable coefficients {values}")
    return fit


def choose_order(y: np.ndarray, season: int | None = None) -> ArimaFit:
    """Pick (p, d, q): d by repeated ADF unit-root tests, then p, q by AIC.

    Returns the best fit found; raises ``FitError`` if no candidate fits.
    """
    from statsmodels.tsa.stattools import adfuller

    w = y
    if season:
        w = y[season:] - y[:-season]
    d = 0
    while d < AUTO_MAX_D:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # FutureWarning about its return type
                p_value = adfuller(w, autolag="AIC")[1]
        except Exception:  # too short or constant: no evidence of a unit root
            break
        if p_value <= 0.05:
            break
        w = np.diff(w)
        d += 1
    best: ArimaFit | None = None
    errors = []
    for p in range(AUTO_MAX_P + 1):
        for q in range(AUTO_MAX_Q + 1):
            try:
                fit = fit_arima(y, (p, d, q), season)
            except FitError as exc:
                errors.append(str(exc))
                continue
            if best is None or fit.aic < best.aic:
                best = fit
    if best is None:
        raise FitError(f"no ARIMA order fitted (d={d}): {'; '.join(errors[:3])}")
    return best


def detect_season(y: np.ndarray, candidates: tuple[int, ...] = SEASON_CANDIDATES) -> int | None:
    """The period among ``candidates`` that ``y`` repeats with, or None.

    A candidate needs two whole periods of data; the series (a straight-line
    trend removed) must correlate at least ``SEASON_MIN_CORR`` with itself one
    period back, and more than half a period back -- a slow drift or a level
    shift correlates with itself at every short lag, a cycle only at its period.
    Of the periods that pass, the one whose seasonal difference leaves the least
    variance wins (the shorter one when within 10 %): a weekly series with a
    daily shape is weekly, a daily one is daily.

    >>> t = np.arange(6 * 288)
    >>> noise = np.random.default_rng(0).normal(0, 0.3, len(t))
    >>> detect_season(np.sin(2 * np.pi * t / 288) + noise), detect_season(noise)
    (288, None)
    >>> detect_season(np.cumsum(noise)) is None   # a random walk is not a cycle
    True
    """
    y = np.asarray(y, dtype=np.float64)
    n = len(y)
    t = np.arange(n, dtype=np.float64)
    if n > 2:
        y = y - np.polyval(np.polyfit(t, y, 1), t)
    best: tuple[float, int] | None = None
    for period in sorted(candidates):
        if n < 2 * period + 10:
            continue
        at_period, at_half = _lag_corr(y, period), _lag_corr(y, period // 2)
        if not (at_period >= SEASON_MIN_CORR and at_period > at_half):
            continue
        left = float(np.var(y[period:] - y[:-period]))
        if best is None or left < 0.9 * best[0]:
            best = (left, period)
    return None if best is None else best[1]


def _lag_corr(y: np.ndarray, lag: int) -> float:
    a, b = y[lag:], y[:-lag]
    sa, sb = float(np.std(a)), float(np.std(b))
    if not (sa > 0 and sb > 0):
        return 0.0
    return float(np.mean((a - a.mean()) * (b - b.mean())) / (sa * sb))


def robust_sample(y: np.ndarray, k: float = 6.0) -> np.ndarray:
    """``y`` with outliers pulled in to ``k`` robust deviations (1.4826 MAD) of its
    median, so a spike in the fit window neither drives the order choice nor
    inflates the residual scale. A level shift or a trend widens the MAD with it
    and is left alone.

    >>> robust_sample(np.array([1.0, 2.0, 1.0, 2.0, 50.0, 2.0, 1.0, 2.0])).tolist()
    [1.0, 2.0, 1.0, 2.0, 6.4478, 2.0, 1.0, 2.0]
    """
    y = np.asarray(y, dtype=np.float64)
    center = float(np.median(y)) if len(y) else 0.0
    spread = 1.4826 * float(np.median(np.abs(y - center))) if len(y) else 0.0
    if not spread > 0.0:
        return y
    return np.clip(y, center - k * spread, center + k * spread)


def quick_fit(y: np.ndarray, order: tuple[int, int, int], season: int | None = None) -> ArimaFit:
    """A model in closed form, for the first points and when every fit fails: never raises.

    The series differenced as ``order`` says, then AR(1) by Yule-Walker on it
    (the AR(1) term only if ``order`` has one; MA terms 0). Crude, but it
    forecasts and scores from a few dozen points on, while statsmodels fits
    the real model off the application's path.
    """
    p, d, q = order
    w = np.asarray(y, dtype=np.float64)
    for _ in range(d):
        w = np.diff(w)
    if season and len(w) > season:
        w = w[season:] - w[:-season]
    mean = float(np.mean(w)) if len(w) else 0.0
    dev = w - mean
    var = float(np.mean(dev * dev)) if len(w) else 0.0
    phi = 0.0
    if p and len(w) > 2 and var > 0.0:
        phi = float(np.clip(np.mean(dev[1:] * dev[:-1]) / var, -0.95, 0.95))
    sigma2 = var * (1.0 - phi * phi)
    scale = max(abs(mean), float(np.mean(np.abs(y))) if len(y) else 0.0, 1.0)
    sigma2 = max(sigma2, (1e-6 * scale) ** 2)  # a flat start still gets a finite scale
    intercept = mean * (1.0 - phi) if d == 0 and not season else 0.0
    return ArimaFit(order=order, intercept=intercept, ar=(phi,) + (0.0,) * (p - 1) if p else (),
                    ma=(0.0,) * q, sigma2=sigma2, n_obs=len(w), season=season if season and len(y) > season else None)


#: The background thread fits run on (256 may wait; more are refused, and the detector asks later).
FITS: Worker = Worker("perfsdk-fits", max_queue=256, max_batch=1, shared=True)
