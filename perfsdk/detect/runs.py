"""The run-confirmation rule: when flagged points become an anomaly worth reporting.

One slow request among thousands (a GC pause, a scheduler hiccup) is noise; a
route that is slow on every request is news. A point *starts* a run when its
score is beyond the threshold and the change is material (at least
``min_delta`` and ``min_ratio`` of the expected value away from it). The run
*continues* while each next value stays beyond the band the onset broke, on
the same side, and materially so -- judged against the state before the
trouble began, since the detector has learned the run's first points by then,
which widens its own band. A run that reaches ``confirm`` points is one
anomaly, explained by its onset.

The live ``DetectorBank`` applies ``step`` point by point; ``perfsdk
analyze`` applies ``confirmed_runs`` over a batch's scores, which walks the
same ``step``: the two report the same anomalies for the same series.

>>> rule = RunRule(confirm=2)
>>> values = np.array([10.0, 10.0, 50.0, 52.0, 10.0])
>>> z = np.array([0.0, 0.1, 40.0, 3.5, 0.0])
>>> rule.confirmed_runs(values, z, np.full(5, 10.0), np.ones(5), threshold=3.0)
[(2, 2, 3)]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from perfsdk._native import kernels
from perfsdk._runtime import check_int, check_number

__all__ = ["DEFAULT_CONFIRM", "Onset", "RunRule"]

#: Flagged points in a row before an anomaly is reported, live and offline.
DEFAULT_CONFIRM = 3


@dataclass(frozen=True)
class Onset:
    """The first point of a run: what it was, and what it was compared with."""

    index: int
    value: float
    expected: float
    std: float
    score: float
    timestamp: Any = None


class RunRule:
    """Confirm runs of flagged points (see the module docstring).

    Parameters
    ----------
    confirm
        Points in a run before it is reported.
    min_delta, min_ratio
        A flagged point must also be a material change:
        ``abs(value - expected) >= max(min_delta, min_ratio * abs(expected))``.
        A route going from 0.59 ms to 0.63 ms can be 3.5 standard deviations
        out and still not worth anyone's time.
    """

    def __init__(self, confirm: int = DEFAULT_CONFIRM, min_delta: float = 0.0, min_ratio: float = 0.0) -> None:
        self.confirm = check_int("confirm", confirm, minimum=1)
        self.min_delta = check_number("min_delta", min_delta, low=0.0)
        self.min_ratio = check_number("min_ratio", min_ratio, low=0.0)

    def material(self, value: float, expected: float) -> bool:
        return abs(value - expected) >= max(self.min_delta, self.min_ratio * abs(expected))

    def continues(self, onset: Onset, value: float, threshold: float) -> bool:
        """Is ``value`` still out, on the same side, of the band the onset broke?"""
        deviation = value - onset.expected
        return (deviation * onset.score > 0 and abs(deviation) > threshold * onset.std
                and self.material(value, onset.expected))

    def step(self, run: int, onset: Onset | None, value: float, threshold: float,
             flagged: Onset | None) -> tuple[int, Onset | None]:
        """The run after ``value``: extended, started (``flagged`` is this point's onset
        record if its score was beyond the threshold), or ended. The run is reported when
        it reaches ``confirm``."""
        if run and onset is not None and self.continues(onset, value, threshold):
            return run + 1, onset
        if flagged is not None and self.material(value, flagged.expected):
            return 1, flagged
        return 0, None

    def confirmed_runs(self, values: np.ndarray, scores: np.ndarray, expected: np.ndarray, std: np.ndarray,
                       threshold: float) -> list[tuple[int, int, int]]:
        """``(onset index, length, last index)`` of every run that reached ``confirm``.

        ``step`` over a whole batch, in compiled code (``kernels_runs``): the same
        comparisons, so the batch and the live bank report the same runs.
        """
        v, z, e, s = (np.ascontiguousarray(a, dtype=np.float64) for a in (values, scores, expected, std))
        onsets, lengths, ends = kernels.confirmed_runs(
            v, z, e, s, float(threshold), self.confirm, self.min_delta, self.min_ratio)
        return list(zip(onsets.tolist(), lengths.tolist(), ends.tolist()))
