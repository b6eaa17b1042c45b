"""DetectorBank: streaming detectors kept per series name, bounded.

Spans are keyed by name, resource metrics by metric name. Detectors are
created on first sight of a name; past ``max_names`` every new name shares
one overflow series (counted), so a cardinality explosion -- a span name with
an id in it -- cannot grow memory without bound.

An anomaly is *emitted* only when a detector flags ``confirm`` points in a
row, once per such run: one slow request among thousands (a GC pause, a
scheduler hiccup) is noise; a route that is slow on every request is news.
The emitted anomaly explains the run's first point -- measured against the
state before the trouble began -- and carries the run in its details.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from perfsdk.detect import Anomaly

OVERFLOW = "(other names)"

DetectorFactory = Callable[[str], Any]


@dataclass
class Series:
    """What the bank keeps for one name."""

    detectors: list[Any]
    slots: list[tuple[int, Any, float]]  # (k, detector, threshold): the hot loop's view
    runs: list[int]
    onsets: list[Any]  # per detector: the current run's first point
    lock: threading.Lock | None  # only for detectors whose update is not atomic
    errors: int = 0
    anomalies: int = 0

    @property
    def count(self) -> int:
        return int(self.detectors[0].n_seen)


class DetectorBank:
    """Per-name detectors, thread-safe, with a cap on the number of names.

    Parameters
    ----------
    factories
        ``kind -> factory(name)``: the detectors every new name gets, e.g.
        ``{"zscore": lambda name: ZScoreDetector(window=128, name=name)}``.
    max_names
        Distinct names kept; later names share the overflow series.
    confirm
        Consecutive flagged points before an anomaly is emitted.
    min_delta, min_ratio
        A flagged point must also be a material change:
        ``abs(value - expected) >= max(min_delta, min_ratio * abs(expected))``.
        A route going from 0.59 ms to 0.63 ms can be 3.5 standard deviations
        out and still not worth anyone's time.

    The common path -- a normal value for a known name -- takes no lock: a
    detector whose ``update`` is atomic under the GIL (``atomic_update``: it
    runs in compiled code without calling back into Python, as the Z-score
    detector's does) is updated directly; others get a lock per name. Runs,
    anomalies and new names are handled under the bank's lock.

    Examples
    --------
    >>> from perfsdk import ZScoreDetector
    >>> bank = DetectorBank({"zscore": lambda n: ZScoreDetector(window=16, warmup=8, name=n)},
    ...                     max_names=2, confirm=2)
    >>> for i in range(20):
    ...     _ = bank.observe("GET /", 10.0 + i % 3)
    >>> bank.observe("GET /", 95.0), len(bank.observe("GET /", 97.0))
    ((), 1)
    >>> _ = bank.observe("GET /a", 1.0); _ = bank.observe("GET /b", 1.0)
    >>> bank.names(), bank.overflowed
    (['GET /', 'GET /a', '(other names)'], 1)
    """

    def __init__(
        self, factories: Mapping[str, DetectorFactory], max_names: int = 1000, confirm: int = 3,
        min_delta: float = 0.0, min_ratio: float = 0.0,
    ) -> None:
        if not factories:
            raise ValueError("factories must name at least one detector")
        if isinstance(max_names, bool) or not isinstance(max_names, int) or max_names < 1:
            raise ValueError(f"max_names must be an integer >= 1, got {max_names!r}")
        if isinstance(confirm, bool) or not isinstance(confirm, int) or confirm < 1:
            raise ValueError(f"confirm must be an integer >= 1, got {confirm!r}")
        for label, v in (("min_delta", min_delta), ("min_ratio", min_ratio)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
                raise ValueError(f"{label} must be a number >= 0, got {v!r}")
        self.min_delta = float(min_delta)
        self.min_ratio = float(min_ratio)
        self.factories = dict(factories)
        self.max_names = max_names
        self.confirm = confirm
        self.overflowed = 0  # observations that fell into the overflow series
        self._series: dict[str, Series] = {}
        self._lock = threading.Lock()

    def _series_for(self, name: str) -> Series:
        """The series for a name not seen on the lock-free path (takes the lock)."""
        with self._lock:
            series = self._series.get(name)
            if series is None and len(self._series) >= self.max_names:
                self.overflowed += 1
                name = OVERFLOW
                series = self._series.get(name)
            if series is None:
                detectors = [make(name) for make in self.factories.values()]
                atomic = all(getattr(d, "atomic_update", False) for d in detectors)
                for d in detectors:
                    if hasattr(d, "flag_threshold"):  # remember out-of-band points' explanations
                        d.flag_threshold = float(d.threshold)
                series = self._series[name] = Series(
                    detectors, [(k, d, float(d.threshold)) for k, d in enumerate(detectors)],
                    [0] * len(detectors), [None] * len(detectors),
                    None if atomic else threading.Lock(),
                )
            return series

    def observe(
        self, name: str, value: float, timestamp: Any = None, error: bool = False,
        context: Mapping[str, Any] | None = None,
    ) -> Sequence[Anomaly]:
        """Feed one value; return the anomalies it completes (usually none)."""
        series = self._series.get(name) or self._series_for(name)
        if error:
            with self._lock:
                series.errors += 1
        lock = series.lock  # None for atomic detectors: the common path takes no lock
        if lock is not None:
            lock.acquire()
        try:
            emitted: Sequence[Anomaly] = ()
            runs = series.runs
            for k, det, threshold in series.slots:
                z = det.update(value)
                if runs[k] or z > threshold or z < -threshold:  # NaN (warming up) is neither
                    emitted = self._advance_run(series, k, det, threshold, name, value, z,
                                                timestamp, context, emitted)
            return emitted
        finally:
            if lock is not None:
                lock.release()

    def _advance_run(self, series: Series, k: int, det: Any, threshold: float, name: str,
                     value: float, z: float, timestamp: Any, context: Mapping[str, Any] | None,
                     emitted: Sequence[Anomaly]) -> Sequence[Anomaly]:
        """Start, extend or end detector ``k``'s run; emit when it reaches ``confirm``."""
        onset = self._explain(det, value, z, timestamp) if z > threshold or z < -threshold else None
        with self._lock:
            if series.runs[k] and self._continues(series.onsets[k], value, threshold):
                series.runs[k] += 1
            elif onset is not None and self._material(value, onset[2]):
                series.runs[k] = 1
                series.onsets[k] = onset
            else:
                series.runs[k] = 0
                return emitted
            if series.runs[k] != self.confirm:
                return emitted
            series.anomalies += 1
            onset = series.onsets[k]
        return (*emitted, self._anomaly(det, name, onset, timestamp, context))

    @staticmethod
    def _explain(det: Any, value: float, z: float, timestamp: Any) -> tuple:
        """The onset record (index, value, expected, std, z, timestamp) of the point just
        scored ``z``. A lock-free detector remembers its flagged points, so this is the
        point's own explanation even if another thread has updated the detector since;
        the others are still under their series' lock here."""
        flagged = getattr(det, "flagged_point", None)
        point = flagged(value, z) if flagged is not None else None
        index, expected, std = point if point is not None else (det.n_seen - 1, det.last_expected, det.last_std)
        return index, value, expected, std, z, timestamp

    def _continues(self, onset: tuple, value: float, threshold: float) -> bool:
        """Is ``value`` still out, on the same side, of the band the onset broke?

        Judged against the state *before* the run: the detector has learned
        the run's first points by now, which widens its own band.
        """
        _, _, expected, std, z, _ = onset
        deviation = value - expected
        return (
            deviation * z > 0 and abs(deviation) > threshold * std
            and self._material(value, expected)
        )

    def _material(self, value: float, expected: float) -> bool:
        return abs(value - expected) >= max(self.min_delta, self.min_ratio * abs(expected))

    def _anomaly(self, det: Any, name: str, onset: tuple, confirmed_at: Any,
                 context: Mapping[str, Any] | None) -> Anomaly:
        """The run's first point, explained; the run's length and end in ``details``."""
        index, value, expected, std, z, timestamp = onset
        details = dict(det._details)
        details.update(series=name, run=self.confirm, onset=timestamp, confirmed_at=confirmed_at)
        if context:
            details.update(context)
        return Anomaly(
            detector=f"{name} [{type(det).__name__}]", index=index, value=float(value),
            expected=float(expected), std=float(std), score=float(z),
            threshold=det.threshold, timestamp=timestamp, details=details,
        )

    def names(self) -> list[str]:
        with self._lock:
            return list(self._series)

    def summary(self) -> dict[str, dict[str, int]]:
        """Per name: observations, errors, anomalies emitted."""
        with self._lock:
            return {
                name: {"count": s.count, "errors": s.errors, "anomalies": s.anomalies}
                for name, s in self._series.items()
            }

    def detectors(self, name: str) -> Sequence[Any]:
        with self._lock:
            series = self._series.get(name)
            return list(series.detectors) if series else []

    def after_fork(self) -> None:
        """In a forked child: forget everything, with a fresh lock (the old one
        may have been held by a thread that does not exist here)."""
        self._lock = threading.Lock()
        self._series = {}
        self.overflowed = 0
