"""ARIMA forecasts: the mean path and its prediction interval, from a fitted model's lags."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from perfsdk.detect._fitting import ArimaFit

__all__ = ["Forecast", "forecast_ahead"]


@dataclass(frozen=True)
class Forecast:
    """``h``-step-ahead forecast: mean and a prediction interval per step."""

    mean: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    std: np.ndarray
    level: float


def forecast_ahead(model: ArimaFit, taps: list[tuple[int, float]], past_y: list[float], w_lags: list[float],
                   e_lags: list[float], h: int, level: float) -> Forecast:
    """``h`` steps ahead from the lags (``past_y`` oldest first; ``w_lags``, ``e_lags``
    most recent first). The interval uses the model's innovation variance and its
    psi-weights, as statsmodels' ``get_forecast`` does once its filter has converged."""
    p, _, q = model.order
    means = np.empty(h)
    for k in range(h):
        w_hat = model.intercept + sum(a * w for a, w in zip(model.ar, w_lags))
        w_hat += sum(t * e for t, e in zip(model.ma, e_lags))
        y_hat = w_hat - sum(c * past_y[-lag] for lag, c in taps)
        means[k] = y_hat
        w_lags = [w_hat, *w_lags[:-1]] if p else []
        e_lags = [0.0, *e_lags[:-1]] if q else []
        past_y.append(y_hat)
    std = np.sqrt(model.sigma2 * np.cumsum(_psi_weights(model, taps, h) ** 2))
    from statistics import NormalDist  # here: it brings fractions and decimal, objects a host collects

    half = NormalDist().inv_cdf(0.5 + level / 2.0) * std
    return Forecast(mean=means, lower=means - half, upper=means + half, std=std, level=level)


def _psi_weights(model: ArimaFit, taps: list[tuple[int, float]], h: int) -> np.ndarray:
    """MA(infinity) weights of the full model, differencing included."""
    phi_poly = np.r_[1.0, -np.asarray(model.ar, dtype=float)]
    diff_poly = np.zeros(max([lag for lag, _ in taps], default=0) + 1)
    diff_poly[0] = 1.0
    for lag, c in taps:
        diff_poly[lag] = c
    ar_full = np.convolve(phi_poly, diff_poly)  # 1 - a_1 B - a_2 B^2 ...
    theta = np.r_[1.0, np.asarray(model.ma, dtype=float)]
    psi = np.zeros(h)
    for k in range(h):
        acc = theta[k] if k < len(theta) else 0.0
        for i in range(1, min(k, len(ar_full) - 1) + 1):
            acc -= ar_full[i] * psi[k - i]
        psi[k] = acc
    return psi
