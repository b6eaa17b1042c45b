"""The statistics of the regression gate, pure: samples in, numbers out.

Benchmark times are skewed and a noisy machine adds outliers, so everything here
is rank-based: the Mann-Whitney U test, the Hodges-Lehmann shift (on log times, so
it reads as a ratio) with its distribution-free confidence interval, the
Benjamini-Hochberg adjustment across benchmarks, and change points in a series of
per-run medians found by binary segmentation with a permutation test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Sequence

import numpy as np

__all__ = ["Shift", "benjamini_hochberg", "change_points", "mann_whitney_p", "shift_ratio"]


def _positive_samples(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    if array.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(array)) or np.any(array <= 0):
        raise ValueError(f"{name} must hold finite times > 0")
    return array


def mann_whitney_p(current: Sequence[float] | np.ndarray, baseline: Sequence[float] | np.ndarray,
                   alternative: str = "two-sided") -> float:
    """P-value of the Mann-Whitney U test: do the two samples come from one distribution?

    ``alternative="greater"`` asks only whether ``current`` tends to be larger
    (slower), ``"less"`` whether it tends to be smaller. Exact for small samples
    without ties, the normal approximation otherwise (scipy's ``method="auto"``).

    >>> round(mann_whitney_p([1.0, 1.1, 1.2, 1.3], [2.0, 2.1, 2.2, 2.3]), 4)
    0.0286
    >>> round(mann_whitney_p([1.0, 1.1, 1.2, 1.3], [2.0, 2.1, 2.2, 2.3], "less"), 4)
    0.0143
    >>> mann_whitney_p([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    1.0
    """
    from scipy.stats import mannwhitneyu

    x, y = _positive_samples(current, "current"), _positive_samples(baseline, "baseline")
    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError(f"alternative must be 'two-sided', 'greater' or 'less', got {alternative!r}")
    if np.ptp(np.concatenate([x, y])) == 0:  # all equal: nothing to tell apart (scipy would divide by 0)
        return 1.0
    return float(mannwhitneyu(x, y, alternative=alternative, method="auto").pvalue)


@dataclass(frozen=True)
class Shift:
    """How much slower ``current`` is than ``baseline``: a ratio of typical times and its interval.

    ``ratio`` is exp of the Hodges-Lehmann estimate on log times (the median of all
    pairwise log differences): 1.10 reads "10 % slower". ``low``/``high`` bound it
    at the given confidence (Moses' distribution-free interval).
    """

    ratio: float
    low: float
    high: float
    confidence: float

    def __str__(self) -> str:
        return f"x{self.ratio:.3f} [{self.low:.3f}, {self.high:.3f}]"


def shift_ratio(current: Sequence[float] | np.ndarray, baseline: Sequence[float] | np.ndarray,
                confidence: float = 0.95) -> Shift:
    """The Hodges-Lehmann ratio of ``current`` to ``baseline`` with its confidence interval.

    >>> s = shift_ratio([1.1, 1.21, 1.32, 1.43], [1.0, 1.1, 1.2, 1.3])
    >>> round(s.ratio, 3), s.low < s.ratio < s.high
    (1.1, True)
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    x = np.log(_positive_samples(current, "current"))
    y = np.log(_positive_samples(baseline, "baseline"))
    differences = np.sort((x[:, None] - y[None, :]).ravel())
    n, m = x.size, y.size
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    # Moses: the k-th smallest and largest pairwise differences, k from U's normal approximation
    k = int(math.floor(n * m / 2 - z * math.sqrt(n * m * (n + m + 1) / 12)))
    k = min(max(k, 0), (n * m - 1) // 2)
    return Shift(ratio=math.exp(float(np.median(differences))), low=math.exp(float(differences[k])),
                 high=math.exp(float(differences[n * m - 1 - k])), confidence=confidence)


def benjamini_hochberg(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """P-values adjusted for the false discovery rate across many tests (Benjamini-Hochberg).

    Reject where the adjusted p is at most the rate you accept.

    >>> benjamini_hochberg([0.01, 0.04, 0.03, 0.5]).round(3).tolist()
    [0.04, 0.053, 0.053, 0.5]
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.size == 0:
        return p.copy()
    if np.any(~np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise ValueError("p_values must lie in [0, 1]")
    order = np.argsort(p)
    scaled = p[order] * p.size / np.arange(1, p.size + 1)
    monotone = np.minimum.accumulate(scaled[::-1])[::-1]  # step-up: never above a larger p's value
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(monotone, 1.0)
    return adjusted


def _best_split(rows: np.ndarray, min_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the largest mean-shift statistic t(n-t)/n * (mean before - mean after)^2, and where."""
    n = rows.shape[1]
    cumulative = np.cumsum(rows, axis=1)
    total = cumulative[:, -1:]
    split = np.arange(min_size, n - min_size + 1)
    before = cumulative[:, split - 1] / split
    after = (total - cumulative[:, split - 1]) / (n - split)
    statistic = split * (n - split) / n * (before - after) ** 2
    best = np.argmax(statistic, axis=1)
    return statistic[np.arange(rows.shape[0]), best], split[best]


def change_points(series: Sequence[float] | np.ndarray, *, alpha: float = 0.01, min_size: int = 2,
                  permutations: int = 199, seed: int = 0) -> list[int]:
    """Where the level of ``series`` changes: the indices at which a new segment starts.

    Binary segmentation (as E-divisive means does it): take the split that best
    separates two means, keep it if fewer than ``alpha`` of ``permutations``
    shuffles of the segment separate as well, and look again on each side.
    Segments are at least ``min_size`` long. Seeded, so the answer is repeatable.

    >>> change_points([1.0, 1.01, 0.99, 1.0, 1.02, 0.98, 1.2, 1.21, 1.19, 1.2, 1.22, 1.18])
    [6]
    >>> change_points([1.0, 1.01, 0.99, 1.0, 1.02, 0.98])
    []
    """
    if min_size < 1:
        raise ValueError(f"min_size must be >= 1, got {min_size!r}")
    if permutations < 1:
        raise ValueError(f"permutations must be >= 1, got {permutations!r}")
    values = np.asarray(series, dtype=np.float64).ravel()
    if not np.all(np.isfinite(values)):
        raise ValueError("series must be finite")
    rng = np.random.default_rng(seed)
    found: list[int] = []

    def segment(start: int, stop: int) -> None:
        part = values[start:stop]
        if part.size < 2 * min_size or np.ptp(part) == 0:
            return
        observed, at = _best_split(part[None, :], min_size)
        shuffled = rng.permuted(np.broadcast_to(part, (permutations, part.size)), axis=1)
        null, _ = _best_split(shuffled, min_size)
        p_value = (1 + np.count_nonzero(null >= observed[0] * (1 - 1e-12))) / (1 + permutations)
        if p_value <= alpha:
            found.append(start + int(at[0]))
            segment(start, start + int(at[0]))
            segment(start + int(at[0]), stop)

    segment(0, values.size)
    return sorted(found)
