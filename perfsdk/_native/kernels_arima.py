"""Numba kernels of the ARIMA detector (its batch engine); the layout is ``layout.AR_*``."""

from __future__ import annotations

import numpy as np

from perfsdk._native.config import kernel
from perfsdk._native.layout import (  # the state's slots: one definition, shared with Cython
    AR_P, AR_Q, AR_M, AR_NTAPS, AR_WARMUP,
    AR_HISTORY, AR_REFIT_EVERY, AR_SHIFT_RUN, AR_THRESHOLD, AR_SCALE_BETA,
    AR_SCALE_CLIP, AR_COUNT, AR_REJECTED, AR_FITTED, AR_FIT_STATE,
    AR_SINCE_FIT, AR_RUN, AR_SCALE, AR_HIST_POS, AR_YRING_POS,
    AR_INTERCEPT, AR_SIGMA2, AR_RETRY_AT, AR_LAGS, AR_HEADER, FIT_IDLE, FIT_REQUESTED,
    MAX_MAGNITUDE, MEAN_ABS_TO_STD, SCALE_FLOOR_OF_LEVEL, SCALE_FLOOR_OF_SIGMA, arima_layout, arima_offsets,
)

__all__ = ["arima_forecast_one", "arima_layout", "arima_replay", "arima_update_many"]


_arima_offsets_of = kernel(arima_offsets)  # the one definition, in layout.py, compiled


@kernel
def _arima_offsets(state):
    p = np.int64(state[AR_P])
    q = np.int64(state[AR_Q])
    ntaps = np.int64(state[AR_NTAPS])
    phi, theta, tap_lag, tap_coef, wlag, elag, yring, hist = _arima_offsets_of(
        p, q, np.int64(state[AR_M]), ntaps
    )
    return p, q, ntaps, phi, theta, tap_lag, tap_coef, wlag, elag, yring, hist


@kernel
def arima_forecast_one(state, x):
    """One-step forecast ``y_hat`` of the next point, and ``w``, the value ``x`` differenced.

    Needs the last M points in the y ring (the caller checks that).
    """
    p, q, ntaps, phi, theta, tap_lag, tap_coef, wlag, elag, yring, hist = _arima_offsets(state)
    m = np.int64(state[AR_M])
    w_hat = state[AR_INTERCEPT]
    for i in range(p):
        w_hat += state[phi + i] * state[wlag + i]
    for j in range(q):
        w_hat += state[theta + j] * state[elag + j]
    integ = 0.0
    pos = np.int64(state[AR_YRING_POS])
    for k in range(ntaps):
        slot = pos - np.int64(state[tap_lag + k])
        if slot < 0:
            slot += m
        integ += state[tap_coef + k] * state[yring + slot]
    return w_hat - integ, x + integ


@kernel
def _arima_floored_scale(state, y_hat):
    """The running residual scale, floored (``layout.SCALE_FLOOR_OF_SIGMA``/``_OF_LEVEL`` say why)."""
    floor = SCALE_FLOOR_OF_SIGMA * np.sqrt(state[AR_SIGMA2])
    level = SCALE_FLOOR_OF_LEVEL * abs(y_hat)
    if level > floor:
        floor = level
    if state[AR_SCALE] < floor:
        return floor
    return state[AR_SCALE]


@kernel
def _arima_standardised(e, scale):
    """``e / scale``; with no spread at all, the Z-score's constant-series rule: 0 for an exact
    forecast, +-inf for any other error (never NaN)."""
    if scale > 0.0:
        return e / scale
    if e == 0.0:
        return 0.0
    return np.inf if e > 0.0 else -np.inf


@kernel
def _arima_push(state, x, w, e, has_lags, record):
    """Shift x into the y ring and, with ``has_lags``, w and e into the lags.

    With ``record`` x also goes into the history ring and counts as learned.
    """
    p, q, ntaps, phi, theta, tap_lag, tap_coef, wlag, elag, yring, hist = _arima_offsets(state)
    m = np.int64(state[AR_M])
    if has_lags:
        for i in range(p - 1, 0, -1):
            state[wlag + i] = state[wlag + i - 1]
        if p > 0:
            state[wlag] = w
        for j in range(q - 1, 0, -1):
            state[elag + j] = state[elag + j - 1]
        if q > 0:
            state[elag] = e
    if m > 0:
        pos = np.int64(state[AR_YRING_POS])
        state[yring + pos] = x
        pos += 1
        if pos == m:
            pos = 0
        state[AR_YRING_POS] = pos
    if record:
        hp = np.int64(state[AR_HIST_POS])
        state[hist + hp] = x
        hp += 1
        if hp == np.int64(state[AR_HISTORY]):
            hp = 0
        state[AR_HIST_POS] = hp
        state[AR_COUNT] += 1.0


@kernel
def _arima_wants_fit(state):
    if state[AR_FIT_STATE] != FIT_IDLE:
        return False
    if state[AR_RETRY_AT] > 0.0 and state[AR_COUNT] >= state[AR_RETRY_AT]:
        return True
    if state[AR_FITTED] == 0.0:
        return False
    if state[AR_REFIT_EVERY] > 0.0 and state[AR_SINCE_FIT] >= state[AR_REFIT_EVERY]:
        return True
    return state[AR_SHIFT_RUN] > 0.0 and state[AR_RUN] >= state[AR_SHIFT_RUN]


@kernel
def arima_update_many(state, xs, start, z_out, expected_out, std_out, details):
    """Score then learn ``xs[start:]``; return the index it stopped at.

    It stops early, right after the point that made the detector request a
    fit (``state[AR_FIT_STATE] == FIT_REQUESTED``), so the caller can fit
    and resume at exactly that stream position, as the per-event path does.
    """
    n = xs.shape[0]
    threshold = state[AR_THRESHOLD]
    beta = state[AR_SCALE_BETA]
    clip = state[AR_SCALE_CLIP]
    for i in range(start, n):
        x = xs[i]
        if not abs(x) <= MAX_MAGNITUDE:  # NaN, infinite, or too large to square
            state[AR_REJECTED] += 1.0
            z_out[i] = np.nan
            if details:
                expected_out[i] = np.nan
                std_out[i] = np.nan
            continue
        z = np.nan
        y_hat = np.nan
        scale = np.nan
        w = np.nan
        e = np.nan
        has_lags = state[AR_FITTED] != 0.0 and state[AR_COUNT] >= state[AR_LAGS]
        if has_lags:
            y_hat, w = arima_forecast_one(state, x)
            e = x - y_hat
            scale = _arima_floored_scale(state, y_hat)
            if state[AR_COUNT] >= state[AR_WARMUP]:
                z = _arima_standardised(e, scale)
                if abs(z) > threshold:
                    state[AR_RUN] += 1.0
                else:
                    state[AR_RUN] = 0.0
            a = abs(e)
            if a > clip * scale:
                a = clip * scale
            state[AR_SCALE] = scale + beta * (a * MEAN_ABS_TO_STD - scale)
        if state[AR_FITTED] != 0.0:
            state[AR_SINCE_FIT] += 1.0
        z_out[i] = z
        if details:
            expected_out[i] = y_hat
            std_out[i] = scale
        _arima_push(state, x, w, e, has_lags, True)
        if _arima_wants_fit(state):
            state[AR_FIT_STATE] = FIT_REQUESTED
            return i + 1
    return n


@kernel
def arima_replay(state, ys):
    """Rebuild the lags from ``ys`` (the history, oldest first) under the current model.

    Run after new coefficients are installed: the lagged differences and
    residuals are recomputed by running the model over the recent past, so
    the stream goes on at the same position with consistent state. Counters,
    scale and history are left as they are.
    """
    p, q, ntaps, phi, theta, tap_lag, tap_coef, wlag, elag, yring, hist = _arima_offsets(state)
    m = np.int64(state[AR_M])
    for i in range(p):
        state[wlag + i] = 0.0
    for j in range(q):
        state[elag + j] = 0.0
    for k in range(m):
        state[yring + k] = 0.0
    state[AR_YRING_POS] = 0.0
    lags = np.int64(state[AR_LAGS])
    for i in range(ys.shape[0]):
        has_lags = i >= lags
        y_hat = np.nan
        w = np.nan
        if has_lags:
            y_hat, w = arima_forecast_one(state, ys[i])
        _arima_push(state, ys[i], w, ys[i] - y_hat, has_lags, False)
