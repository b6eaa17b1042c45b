"""The Anomaly record: one flagged point, with everything needed to explain it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

__all__ = ["Anomaly"]


@dataclass(frozen=True)
class Anomaly:
    """A point whose score went beyond the detector's threshold.

    Parameters
    ----------
    detector
        The detector's name (e.g. ``"zscore(window=256)"`` or a span name).
    index
        Position of the point in the stream offered to the detector (rejected
        points count, so it lines up with the caller's own row numbers).
    value
        The observed value.
    expected
        What the detector expected instead (rolling mean, or a forecast).
    std
        The scale the deviation was measured in.
    score
        Signed score: ``(value - expected) / std``.
    threshold
        ``|score|`` above this is an anomaly.
    lower, upper
        The normal band at this threshold: ``expected -/+ threshold * std``.
    timestamp
        The caller's timestamp for the point, if one was given.
    details
        Detector-specific context (model order, coefficients, window, ...).

    Examples
    --------
    >>> a = Anomaly("zscore(window=30)", index=41, value=250.0, expected=100.0,
    ...             std=10.0, score=15.0, threshold=3.0)
    >>> print(a)
    #41: value 250 is 15.0 std above the expected 100 (std 10, normal band 70 .. 130 at |score| <= 3) [zscore(window=30)]
    """

    detector: str
    index: int
    value: float
    expected: float
    std: float
    score: float
    threshold: float
    timestamp: Any = None
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def lower(self) -> float:
        return self.expected - self.threshold * self.std

    @property
    def upper(self) -> float:
        return self.expected + self.threshold * self.std

    @property
    def direction(self) -> str:
        return "above" if self.score > 0 else "below"

    @property
    def size(self) -> str:
        """How far out, in words: ``"3.2 std"``, or ``"infinitely many std"`` off a series with no
        spread (a new span name measured against an expected 0)."""
        return "infinitely many std" if math.isinf(self.score) else f"{abs(self.score):.1f} std"

    def as_dict(self) -> dict[str, Any]:
        """Flat dict of every field plus the band, e.g. for JSON or Arrow."""
        return {
            "detector": self.detector,
            "index": self.index,
            "timestamp": self.timestamp,
            "value": self.value,
            "expected": self.expected,
            "std": self.std,
            "score": self.score,
            "threshold": self.threshold,
            "lower": self.lower,
            "upper": self.upper,
            **{f"details.{k}": v for k, v in self.details.items()},
        }

    def __str__(self) -> str:
        """What was flagged and why. An alert pipeline can flag a point inside its own band: the
        last few points together were what was unlikely (a level that moved), and it says so.

        >>> print(Anomaly("pipeline", index=9, value=101.2, expected=100.2, std=1.1, score=0.9, threshold=3.0,
        ...               details={"tail_probability": 2e-6, "averaged_over": 10}))
        #9: value 101.2 is 0.9 std above the expected 100.2 (std 1.1, inside the normal band 96.9 .. 103.5 at \
|score| <= 3); the last 10 points together are what is unlikely (tail probability 2e-06) [pipeline]
        """
        where = f"#{self.index}" if self.timestamp is None else f"#{self.index} at {self.timestamp}"
        text = (f"{where}: value {self.value:.5g} is {self.size} {self.direction} the expected "
                f"{self.expected:.5g} (std {self.std:.3g}, normal band {self.lower:.5g} .. "
                f"{self.upper:.5g} at |score| <= {self.threshold:g})")
        tail = self.details.get("tail_probability")
        if abs(self.score) <= self.threshold and tail is not None:
            text = text.replace("normal band", "inside the normal band") + (
                f"; the last {self.details.get('averaged_over', 'few')} points together are what is unlikely "
                f"(tail probability {tail:.2g})")
        return f"{text} [{self.detector}]"
