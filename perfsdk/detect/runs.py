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

>>> import numpy as np
>>> rule = RunRule(confirm=2)
>>> values = np.array([10.0, 10.0, 50.0, 52.0, 10.0])
>>> z = np.array([0.0, 0.1, 40.0, 3.5, 0.0])
>>> rule.confirmed_runs(values, z, np.full(5, 10.0), np.ones(5), threshold=3.0)
[(2, 2, 3)]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from perfsdk._native import kernels
from perfsdk._runtime import check_int, check_number
from perfsdk.detect._base import MAX_POINTS

if TYPE_CHECKING:
    import numpy as np

__all__ = ["ALERT_PATIENCE", "DEFAULT_CONFIRM", "Onset", "PendingAlert", "RunRule", "refused"]

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


@dataclass
class PendingAlert:
    """An alert waiting for confirmation: the band it broke, and the current run beyond it."""

    alert: Onset
    threshold: float
    run: Onset | None = None  # the first point of the current run beyond the band
    length: int = 0
    idle: int = 0  # points in a row inside the band


#: An unconfirmed alert is forgotten after this many points in a row inside its band (the
#: alert pipeline's own incidents end after as many quiet points).
ALERT_PATIENCE = 30


def refused(value: float) -> bool:
    """Is ``value`` one every detector refuses (NaN, inf, beyond ``MAX_MAGNITUDE``: counted, its
    state unchanged)? Then it is no point of any run either: it neither extends nor ends one."""
    return not abs(value) <= kernels.MAX_MAGNITUDE


class RunRule:
    """Confirm runs of flagged points (see the module docstring).

    Parameters
    ----------
    confirm
        Points in a run before it is reported (``MAX_POINTS`` at most).
    min_delta, min_ratio
        A flagged point must also be a material change:
        ``abs(value - expected) >= max(min_delta, min_ratio * abs(expected))``.
        A route going from 0.59 ms to 0.63 ms can be 3.5 standard deviations
        out and still not worth anyone's time.
    """

    def __init__(self, confirm: int = DEFAULT_CONFIRM, min_delta: float = 0.0, min_ratio: float = 0.0) -> None:
        self.confirm = check_int("confirm", confirm, minimum=1, maximum=MAX_POINTS)  # (the kernels count in int64)
        self.min_delta = check_number("min_delta", min_delta, low=0.0)
        self.min_ratio = check_number("min_ratio", min_ratio, low=0.0)

    def material(self, value: float, expected: float) -> bool:
        return abs(value - expected) >= max(self.min_delta, self.min_ratio * abs(expected))

    def back_to_normal(self, before: tuple[float, float] | None, value: float, expected: float) -> bool:
        """Is an anomaly at ``value`` (against ``expected``) the series coming back to the level it
        had before its last anomaly, ``before = (value, expected)`` of that one? It is when it goes
        the other way and lands within the material-change tolerance of that level, or between the
        two and nearer to that level. A detector that learned a fault's level flags the fix: not
        news. Going past the old level (faster than ever after a slowdown) still is.

        >>> rule = RunRule(min_delta=1.0, min_ratio=0.2)
        >>> rule.back_to_normal((40.0, 4.0), 4.3, 39.0), rule.back_to_normal((40.0, 4.0), 0.5, 39.0)
        (True, False)
        """
        if before is None:
            return False
        old_value, normal = before
        if (value - expected) * (old_value - normal) >= 0:
            return False  # the same way as the last anomaly (or no way at all)
        between = (value - normal) * (old_value - normal) > 0 and abs(value - normal) < abs(value - old_value)
        return between or not self.material(value, normal)

    def continues(self, onset: Onset, value: float, threshold: float) -> bool:
        """Is ``value`` still out, on the same side, of the band the onset broke?"""
        deviation = value - onset.expected
        return (deviation * onset.score > 0 and abs(deviation) > threshold * onset.std
                and self.material(value, onset.expected))

    def step(self, run: int, onset: Onset | None, value: float, threshold: float,
             flagged: Onset | None) -> tuple[int, Onset | None]:
        """The run after ``value``: extended, started (``flagged`` is this point's onset
        record if its score was beyond the threshold), or ended. The run is reported when
        it reaches ``confirm``. A value the detectors refuse leaves it as it was (``refused``)."""
        if refused(value):
            return run, onset
        if run and onset is not None and self.continues(onset, value, threshold):
            return run + 1, onset
        if flagged is not None and self.material(value, flagged.expected):
            return 1, flagged
        return 0, None

    def confirm_alert(self, pending: PendingAlert | None, index: int, value: float, timestamp: Any,
                      alert: Onset | None = None, threshold: float = 0.0) -> tuple[PendingAlert | None, Onset | None]:
        """Confirm a self-alerting detector's alert (``AlertPipeline``) as ``step`` confirms raw scores.

        ``alert`` is this point's alert, if it raised one (``threshold``: the band's width in its
        ``std``). The alert is reported once ``confirm`` points in a row stay beyond the band it
        broke; a run that breaks off can start again, beyond the same band, until
        ``ALERT_PATIENCE`` points in a row are inside it. Returns the pending state and, when
        confirmed, the run's first point (its ``expected``/``std`` the alert's). One slow
        request is never paged for; a fault right after it still is. A value the detectors
        refuse moves nothing (``refused``).

        >>> rule, pending, out = RunRule(confirm=2), None, []
        >>> for i, x in enumerate([50.0, 10.0, 48.0, 49.0]):
        ...     alert = Onset(i, x, 10.0, 1.0, 40.0) if i == 0 else None
        ...     pending, confirmed = rule.confirm_alert(pending, i, x, None, alert, 3.0)
        ...     out.append(confirmed and confirmed.index)
        >>> out
        [None, None, None, 2]
        """
        if refused(value):
            return pending, None
        if alert is not None:
            if not self.material(value, alert.expected):
                return pending, None
            pending = PendingAlert(alert, threshold)
        if pending is None:
            return None, None
        if alert is not None or self.continues(pending.alert, value, pending.threshold):
            if not pending.length:
                deviation = value - pending.alert.expected
                pending.run = alert or Onset(index, value, pending.alert.expected, pending.alert.std,
                                             deviation / pending.alert.std if pending.alert.std > 0
                                             else float((deviation > 0) - (deviation < 0)) * math.inf, timestamp)
            pending.length += 1
            pending.idle = 0
            if pending.length == self.confirm:
                return None, pending.run
            return pending, None
        pending.length, pending.run = 0, None
        pending.idle += 1
        return (None if pending.idle >= ALERT_PATIENCE else pending), None

    def confirmed_runs(self, values: np.ndarray, scores: np.ndarray, expected: np.ndarray, std: np.ndarray,
                       threshold: float) -> list[tuple[int, int, int]]:
        """``(onset index, length, last index)`` of every run that reached ``confirm``.

        ``step`` over a whole batch, in compiled code (``kernels_runs``): the same
        comparisons, so the batch and the live bank report the same runs.
        """
        import numpy as np

        arrays = {name: np.ascontiguousarray(a, dtype=np.float64)
                  for name, a in (("values", values), ("scores", scores), ("expected", expected), ("std", std))}
        for name, a in arrays.items():  # the kernel reads all four by one index: it must not run past one
            if a.ndim != 1 or len(a) != len(arrays["values"]):
                raise ValueError(f"{name} must be 1-D and as long as values ({len(arrays['values'])} points), "
                                 f"got shape {a.shape}")
        threshold = check_number("threshold", threshold, low=0.0, low_open=True)
        onsets, lengths, ends = kernels.confirmed_runs(
            *arrays.values(), threshold, self.confirm, self.min_delta, self.min_ratio)
        return list(zip(onsets.tolist(), lengths.tolist(), ends.tolist()))
