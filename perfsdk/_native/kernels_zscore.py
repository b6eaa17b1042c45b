"""Numba kernels of the Z-score detector (its batch engine); the layout is ``layout.ZS_*``."""

from __future__ import annotations

import math

import numpy as np

from perfsdk._native.config import kernel
from perfsdk._native.layout import (  # the state's slots: one definition, shared with Cython
    ZS_MODE, ZS_WINDOW, ZS_INV_WINDOW, ZS_ALPHA, ZS_WARMUP,
    ZS_MIN_STD, ZS_COUNT, ZS_REJECTED, ZS_POS, ZS_MEAN,
    ZS_M2, ZS_SINCE_RESYNC, ZS_SHIFT, ZS_CLIP, ZS_EXTREME, ZS_HEADER, ZS_MODE_WINDOW,
    ZS_MODE_EWMA, ZS_RESYNC_DROP, MAX_MAGNITUDE,
)

__all__ = ["zscore_update_many"]


@kernel
def _zscore_resync(state, window):
    """Recompute shift, mean and M2 of a full window exactly (two-pass).

    Run every ``window`` replacements, so rounding error from the O(1) rolling
    update never accumulates beyond one window: no drift over 10^7+ points.
    The window's approximate mean becomes the new shift, so the running mean
    is a small number near 0 and a metric at 1e9 +/- 1 keeps all its digits.
    """
    total = 0.0
    for i in range(window):
        total += state[ZS_HEADER + i]
    shift = total / window
    correction = 0.0
    m2 = 0.0
    for i in range(window):
        d = state[ZS_HEADER + i] - shift
        correction += d
        m2 += d * d
    m2 -= correction * correction / window
    if m2 < 0.0:
        m2 = 0.0
    return shift, correction / window, m2


@kernel
def zscore_update_many(state, xs, z_out, expected_out, std_out, details):
    """Score then learn every point of ``xs``, writing z-scores to ``z_out``.

    With ``details`` the expected value and standard deviation each point was
    scored against go to ``expected_out`` / ``std_out`` (for explanations).
    NaN/inf points are rejected: counted, scored NaN, state untouched.
    """
    ewma = state[ZS_MODE] == ZS_MODE_EWMA
    window = np.int64(state[ZS_WINDOW])
    inv_window = state[ZS_INV_WINDOW]
    alpha = state[ZS_ALPHA]
    warmup = state[ZS_WARMUP]
    min_std = state[ZS_MIN_STD]
    count = state[ZS_COUNT]
    rejected = state[ZS_REJECTED]
    pos = np.int64(state[ZS_POS])
    mean = state[ZS_MEAN]
    m2 = state[ZS_M2]
    since = np.int64(state[ZS_SINCE_RESYNC])
    shift = state[ZS_SHIFT]
    clip = state[ZS_CLIP]
    extreme = state[ZS_EXTREME]

    for i in range(xs.shape[0]):
        x = xs[i]
        if not abs(x) <= MAX_MAGNITUDE:  # NaN, infinite, or too large to square
            rejected += 1.0
            z_out[i] = np.nan
            if details:
                expected_out[i] = np.nan
                std_out[i] = np.nan
            continue

        # ---- score x against the state (before learning it)
        if count < warmup:
            z = np.nan
            std = np.nan
        else:
            if ewma:
                var = m2
            elif count < window:
                var = m2 / (count - 1.0)
            else:
                var = m2 / (window - 1.0)
            std = math.sqrt(var)
            if std < min_std:
                std = min_std
            dev = (x - shift) - mean
            if std > 0.0:
                z = dev / std
            elif dev == 0.0:
                z = 0.0
            else:
                z = math.copysign(math.inf, dev)
        z_out[i] = z
        if details:
            expected_out[i] = shift + mean if count >= warmup else np.nan
            std_out[i] = std

        # ---- bounded influence: an isolated extreme is learned at the clip (a run, as it is;
        # where the spread is 0 nothing is: a constant series must learn its first change)
        if clip > 0.0 and count >= warmup:
            if abs(z) > clip and std > 0.0:
                if extreme == 0.0:
                    x = (shift + mean) + math.copysign(clip * std, z)
                extreme = 1.0
            else:
                extreme = 0.0

        # ---- learn x
        if ewma:
            if count == 0.0:
                mean = x
                m2 = 0.0
            else:
                diff = x - mean
                incr = alpha * diff
                mean = mean + incr
                m2 = (1.0 - alpha) * (m2 + diff * incr)
        elif count < window:
            if count == 0.0:
                shift = x
            state[ZS_HEADER + pos] = x
            pos += 1
            if pos == window:
                pos = 0
            delta = (x - shift) - mean
            mean = mean + delta / (count + 1.0)
            m2 = m2 + delta * ((x - shift) - mean)
        else:
            old = state[ZS_HEADER + pos]
            state[ZS_HEADER + pos] = x
            pos += 1
            if pos == window:
                pos = 0
            new_mean = mean + (x - old) * inv_window
            new_m2 = m2 + (x - old) * (((x - shift) - new_mean) + ((old - shift) - mean))
            mean = new_mean
            since += 1
            if since == window or new_m2 < m2 * ZS_RESYNC_DROP:  # see _zscore.pyx: an extreme left
                shift, mean, m2 = _zscore_resync(state, window)
                since = 0
            else:
                m2 = new_m2
        count += 1.0

    state[ZS_COUNT] = count
    state[ZS_REJECTED] = rejected
    state[ZS_POS] = pos
    state[ZS_MEAN] = mean
    state[ZS_M2] = m2
    state[ZS_SINCE_RESYNC] = since
    state[ZS_SHIFT] = shift
    state[ZS_EXTREME] = extreme
