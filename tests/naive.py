"""Naive reference implementations: slow, obviously right, for comparisons."""

from __future__ import annotations

import math

import numpy as np


def rolling_zscores(xs, window: int, warmup: int, min_std: float = 0.0) -> np.ndarray:
    """z of each finite point against the (up to) last ``window`` finite points, ddof=1."""
    seen: list[float] = []
    out = np.full(len(xs), np.nan)
    for i, x in enumerate(xs):
        if not math.isfinite(x):
            continue
        if len(seen) >= warmup:
            ref = np.array(seen[-window:])
            std = max(float(np.std(ref, ddof=1)), min_std)
            dev = x - float(np.mean(ref))
            out[i] = dev / std if std > 0 else (0.0 if dev == 0 else math.copysign(math.inf, dev))
        seen.append(float(x))
    return out


def ewma_zscores(xs, alpha: float, warmup: int) -> np.ndarray:
    """z against the exponentially weighted mean/variance (Finch 2009), computed in float math."""
    out = np.full(len(xs), np.nan)
    mean = var = 0.0
    n = 0
    for i, x in enumerate(xs):
        if not math.isfinite(x):
            continue
        if n >= warmup:
            std = math.sqrt(var)
            out[i] = (x - mean) / std if std > 0 else (0.0 if x == mean else math.copysign(math.inf, x - mean))
        if n == 0:
            mean, var = x, 0.0
        else:
            diff = x - mean
            mean += alpha * diff
            var = (1 - alpha) * (var + alpha * diff * diff)
        n += 1
    return out
