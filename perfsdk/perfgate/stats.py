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

__all__ = ["MAX_SAMPLES", "Shift", "benjamini_hochberg", "change_points", "checked_times", "mann_whitney_p",
           "run_samples", "shift_ratio", "thinned"]

#: The most samples a run of one benchmark keeps (pytest-benchmark takes ~150,000 rounds of a fast
#: function): more add nothing the rank tests can use, and the Hodges-Lehmann shift compares every
#: pair -- 150,000 a side would be a 100 GiB matrix.
MAX_SAMPLES = 1_000
#: A time below the timer's resolution reads 0 s; it counts as this (1 ns), so its log is finite.
TIME_FLOOR_S = 1e-9


def _positive_samples(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    if array.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(array)) or np.any(array <= 0):
        raise ValueError(f"{name} must hold finite times > 0")
    return array


def thinned(values: Sequence[float] | np.ndarray, limit: int = MAX_SAMPLES) -> np.ndarray:
    """At most ``limit`` samples standing for ``values``: evenly spaced order statistics, the fastest
    and slowest among them, so the distribution keeps its shape and the run its level.

    >>> thinned(np.arange(10.0), limit=4).tolist()
    [0.0, 3.0, 6.0, 9.0]
    >>> thinned([3.0, 1.0, 2.0]).tolist()
    [3.0, 1.0, 2.0]
    """
    array = np.asarray(values, dtype=np.float64).ravel()
    if limit < 2:
        raise ValueError(f"limit must be >= 2, got {limit!r}")
    if array.size <= limit:
        return array
    return np.sort(array)[np.round(np.linspace(0, array.size - 1, limit)).astype(np.intp)]


def checked_times(seconds: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    """``seconds`` as a flat float array, refused (``name`` says whose) unless there is one at least
    and each is finite and >= 0: a time the gate would have to drop or alter to use is an error, not
    a sample.

    >>> checked_times([0.5, -1e-6], "benchmark 'b'")
    Traceback (most recent call last):
    ValueError: benchmark 'b': sample 1 is -1e-06 s; times must be finite and >= 0
    """
    array = np.asarray(seconds, dtype=np.float64).ravel()
    if array.size == 0:
        raise ValueError(f"{name}: no samples")
    bad = np.flatnonzero(~np.isfinite(array) | (array < 0))
    if bad.size:
        more = f" (and {bad.size - 1} more)" if bad.size > 1 else ""
        raise ValueError(f"{name}: sample {bad[0]} is {float(array[bad[0]])!r} s{more}; times must be finite and >= 0")
    return array


def run_samples(seconds: Sequence[float] | np.ndarray, name: str = "samples") -> np.ndarray:
    """A benchmark run's times as the gate keeps them (``checked_times``; ``name`` says whose): at most
    ``MAX_SAMPLES`` (``thinned``), none below ``TIME_FLOOR_S`` (a coarse timer reads 0 s for a fast round).

    >>> run_samples([0.0, 2e-9, 1e-9]).tolist()
    [1e-09, 2e-09, 1e-09]
    """
    return np.maximum(thinned(checked_times(seconds, name)), TIME_FLOOR_S)


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
    """The Hodges-Lehmann ratio of ``current`` to ``baseline`` with its confidence interval (on at
    most ``MAX_SAMPLES`` a side: ``thinned``).

    >>> s = shift_ratio([1.1, 1.21, 1.32, 1.43], [1.0, 1.1, 1.2, 1.3])
    >>> round(s.ratio, 3), s.low < s.ratio < s.high
    (1.1, True)
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    x = np.log(thinned(_positive_samples(current, "current")))
    y = np.log(thinned(_positive_samples(baseline, "baseline")))
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
