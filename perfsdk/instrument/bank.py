"""DetectorBank: streaming detectors kept per series name, bounded.

Spans are keyed by name, resource metrics by metric name. Detectors are
created on first sight of a name; past ``max_names`` every new name shares
one overflow series (counted), so a cardinality explosion -- a span name with
an id in it -- cannot grow memory without bound. The overflow series' anomalies
are its own: named ``(other names)`` (``details["overflow"]`` says why), never
after whichever name's span completed the run -- the series mixes them all.

An anomaly is *emitted* when a detector's flagged points make a confirmed
run (``perfsdk.detect.RunRule``, the rule ``perfsdk analyze`` applies too),
once per run; it explains the run's first point -- measured against the state
before the trouble began -- and carries the run in its details. A detector
with its own alerting (``AlertPipeline``) raises alerts, and the same number
of points in a row must stay beyond the band an alert broke before it is
emitted (``RunRule.confirm_alert``): one slow request is not an incident.

A name that starts failing is news at once, however fast its failures are:
``confirm`` or more failed spans in a row that the name's own error rate
makes less likely than ``ERROR_RUN_CHANCE`` (one in 100,000) emit an
``errors`` anomaly (a name that never fails: at its ``confirm``-th failure
in a row; one failing one time in ten: at its fifth). Then it is quiet until
``ERROR_RECOVERY`` spans in a row succeed. The anomaly (an ``ErrorRun``) is
explained by what decided it: the run, from its first failure, and its chance.

A value the detectors refuse (NaN, inf: counted, their state unchanged) moves
no run and no alert either: it neither confirms nor breaks one.

A return to normal is not news. Once a fault has lasted long enough for a
detector to learn its level, the first normal values look anomalous against
it. The bank remembers the level each series had before its last anomaly; an
alert on the opposite side that lands back near that level -- within the
material-change tolerance, or between the two and nearer to it
(``RunRule.back_to_normal``) -- is counted as ``returns_to_normal`` instead
of being emitted.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from perfsdk._native import BankPath, stepping
from perfsdk._runtime import at_fork, check_int, owned_lock
from perfsdk.detect import (
    DEFAULT_CONFIRM, AlertPipeline, Anomaly, Detector, DetectorFactory, Onset, RunRule, ZScoreDetector,
)
from perfsdk.detect.runs import PendingAlert

__all__ = ["OVERFLOW", "DetectorBank", "ErrorRun"]

OVERFLOW = "(other names)"
OVERFLOW_NOTE = "the span names past max_span_names share this series: no single name is the anomalous one"
#: An error run is an anomaly when the name's error rate gives it less chance than this.
ERROR_RUN_CHANCE = 1e-5
#: The same, as an ``errors`` anomaly's threshold: its score is ``-log10(chance)``.
ERROR_RUN_THRESHOLD = -math.log10(ERROR_RUN_CHANCE)
#: After an errors anomaly, spans in a row that must succeed before another can be raised.
ERROR_RECOVERY = 30


class ErrorRun(Anomaly):
    """An ``errors`` anomaly: ``run`` failed spans in a row (``value``, 100 % of them) where the
    name fails ``expected`` % of the time. The run's chance at that rate, ``(expected / 100) ** run``,
    is what decided it, and the record reads on the log scale that chance lives on:
    ``score = log10(value / expected) / std = -log10(chance)`` with ``std = 1 / run`` decade (each
    failure in a row is as much evidence again), ``threshold = -log10(ERROR_RUN_CHANCE)``, and the
    normal band ``expected * 10 ** (-+threshold * std)`` %: within 0 .. 100 %, below the run's 100 %
    exactly when its chance is below ``ERROR_RUN_CHANCE``.

    >>> a = ErrorRun("pay [errors]", index=7, value=100.0, expected=10.0, std=1 / 6, score=6.0,
    ...              threshold=5.0, timestamp=7)
    >>> print(a)
    #7 at 7: 6 failed spans in a row where 10 % fail: chance 1e-06, below 1e-05 (score 6.0 = -log10(chance) \
> 5; normal failure share on that log scale 1.5 .. 68 %) [pay [errors]]
    """

    @property
    def lower(self) -> float:
        return self.expected * 10.0 ** (-self.threshold * self.std)

    @property
    def upper(self) -> float:
        return self.expected * 10.0 ** (self.threshold * self.std)

    def __str__(self) -> str:
        where = f"#{self.index}" if self.timestamp is None else f"#{self.index} at {self.timestamp}"
        return (f"{where}: {round(1.0 / self.std)} failed spans in a row where {self.expected:.2g} % fail: chance "
                f"{10.0 ** -self.score:.1g}, below {10.0 ** -self.threshold:.1g} (score {self.score:.1f} = "
                f"-log10(chance) > {self.threshold:g}; normal failure share on that log scale {self.lower:.2g} .. "
                f"{self.upper:.2g} %) [{self.detector}]")


@dataclass
class Series:
    """What the bank keeps for one name."""

    detectors: list[Detector]
    slots: list[tuple[int, Detector, float, int]]  # (k, detector, threshold, stepping): run-rule detectors
    pipelines: list[tuple[int, AlertPipeline, float, int]]  # the same, of detectors that raise their own alerts
    runs: list[int]
    onsets: list[Onset | None]  # per detector: the current run's first point
    pending: list[PendingAlert | None]  # per alerting detector: its alert waiting for confirmation
    alerts: list[Anomaly | None]  # per alerting detector: its last alert, explained
    lock: threading.Lock | None  # only for detectors whose update is not atomic
    first_seen: Any = None  # the timestamp of the name's first value
    errors: int = 0
    anomalies: int = 0
    returns_to_normal: int = 0
    failing: bool = False  # an error run is under way, or its anomaly waits for a recovery
    error_run: int = 0  # failed spans in a row (while failing: successes in a row, negated)
    error_onset: Any = None  # the timestamp of the run's first failure
    error_alerted: bool = False
    outage: tuple[int, int] = (0, 0)  # (spans, errors) of alerted error runs: not the name's usual rate
    before: tuple[float, float] | None = None  # (value, expected) of the last anomaly emitted
    name: str = ""  # the series' own name (OVERFLOW for every name past the cap)

    @property
    def count(self) -> int:
        return int(self.detectors[0].n_seen)


def _about(name: str) -> dict[str, Any]:
    """An anomaly's ``series`` detail, and for the overflow series why it names no span."""
    return {"series": name, "overflow": OVERFLOW_NOTE} if name == OVERFLOW else {"series": name}


def _checked_factories(factories: Any) -> dict[str, DetectorFactory]:
    """``factories`` as a dict, each factory called once now: a wrong one is refused here, naming
    the argument, not a fault on every span it would have watched."""
    if not isinstance(factories, Mapping):
        raise TypeError(f"factories must be a mapping of kind -> factory(name), got {factories!r}")
    if not factories:
        raise ValueError("factories must name at least one detector")
    for kind, make in factories.items():
        if not callable(make):
            raise TypeError(f"factories[{kind!r}] must be a callable factory(name) -> detector, got {make!r}")
        try:
            probe = make("factories probe")
        except TypeError as exc:
            raise TypeError(f"factories[{kind!r}] must take the series name: {exc}") from exc
        if not isinstance(probe, Detector):
            raise TypeError(f"factories[{kind!r}] must return a detector (perfsdk.detect.Detector), got {probe!r}")
    return dict(factories)


class DetectorBank(BankPath):
    """Per-name detectors, thread-safe, with a cap on the number of names.

    Parameters
    ----------
    factories
        ``kind -> factory(name)``: the detectors every new name gets, e.g.
        ``{"zscore": lambda name: ZScoreDetector(window=128, name=name)}``
        (``perfsdk.detect.span_detectors`` makes the presets).
    max_names
        Distinct names kept; later names share the overflow series.
    confirm, min_delta, min_ratio
        The run-confirmation rule (``perfsdk.detect.RunRule``).

    ``observe(name, value, timestamp=None, error=False, context=None)`` feeds one
    value and returns the anomalies it completes (usually none). Its common
    path -- a normal value for a known name -- is compiled
    (``perfsdk._native.BankPath``, this class's base) and takes no lock: a
    detector whose ``update`` is atomic under the GIL (``atomic_update``) is
    updated directly; others get a lock per name. Runs, anomalies and new
    names are handled here, under the bank's lock.

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
        self, factories: Mapping[str, DetectorFactory], max_names: int = 1000, confirm: int = DEFAULT_CONFIRM,
        min_delta: float = 0.0, min_ratio: float = 0.0,
    ) -> None:
        self.factories = _checked_factories(factories)
        self.max_names = check_int("max_names", max_names, minimum=1)
        self.rule = RunRule(confirm, min_delta, min_ratio)
        self.confirm = self.rule.confirm
        self.overflowed = 0  # observations that fell into the overflow series
        self._series: dict[str, Series] = {}
        self._lock = owned_lock()  # the resource sampler reads the totals under it: see perfsdk._runtime.locks
        at_fork(self._after_fork)

    def _series_for(self, name: str, timestamp: Any = None) -> Series:
        """The series for a name not seen on the lock-free path (takes the lock)."""
        with self._lock:
            series = self._series.get(name)
            if series is None and len(self._series) >= self.max_names:
                self.overflowed += 1
                name = OVERFLOW
                series = self._series.get(name)
            if series is None:
                detectors = [make(name) for make in self.factories.values()]
                # an alert pipeline's check is an update and then its explanation: under a lock
                atomic = all(d.atomic_update and not isinstance(d, AlertPipeline) for d in detectors)
                series = self._series[name] = Series(
                    detectors, [(k, d, float(d.threshold), stepping(d)) for k, d in enumerate(detectors)
                                if not isinstance(d, AlertPipeline)],
                    [(k, d, float(d.threshold), stepping(d, AlertPipeline.check)) for k, d in enumerate(detectors)
                     if isinstance(d, AlertPipeline)],
                    [0] * len(detectors), [None] * len(detectors), [None] * len(detectors),
                    [None] * len(detectors),
                    None if atomic else threading.Lock(), first_seen=timestamp, name=name,
                )
            return series

    def _advance_run(self, series: Series, k: int, det: Detector, threshold: float, name: str,
                     value: float, z: float, timestamp: Any, context: Mapping[str, Any] | None,
                     emitted: Sequence[Anomaly]) -> Sequence[Anomaly]:
        """Start, extend or end detector ``k``'s run; emit when it reaches ``confirm``."""
        flagged = None
        if z > threshold or z < -threshold:
            index, expected, std = det.explain_point(value, z)
            flagged = Onset(index, value, expected, std, z, timestamp)
        with self._lock:
            series.runs[k], series.onsets[k] = self.rule.step(
                series.runs[k], series.onsets[k], value, threshold, flagged)
            if series.runs[k] != self.confirm:
                return emitted
            onset = series.onsets[k]
            assert onset is not None
            if self._returning(series, onset.value, onset.expected):
                return emitted
            series.anomalies += 1
        return (*emitted, self._anomaly(det, name, onset, timestamp, context))

    def _follow_errors(self, series: Series, name: str, error: bool, timestamp: Any,
                       context: Mapping[str, Any] | None) -> Sequence[Anomaly]:
        """Count a failure (or a success after failures); an errors anomaly when the run is unlikely."""
        with self._lock:
            if series.error_alerted:
                spans, errs = series.outage
                series.outage = (spans + 1, errs + error)
            if error:
                series.errors += 1
                if series.error_run <= 0:
                    series.error_run, series.error_onset = 0, timestamp
                series.error_run += 1
                series.failing = True
            elif series.error_alerted:
                series.error_run = min(series.error_run, 0) - 1  # successes in a row, negated
                if -series.error_run >= ERROR_RECOVERY:
                    series.failing = series.error_alerted = False
                    series.error_run = 0
                return ()
            else:
                series.failing, series.error_run = False, 0
                return ()
            run = series.error_run
            if series.error_alerted or run < self.confirm:
                return ()
            spans, errs = series.outage
            first = series.count - run + 1  # the run's first failure (this span is not counted yet)
            before = first - spans  # usual spans before the run
            usual = (series.errors - errs - run + 1) / (before + 2)  # their error rate, smoothed: in (0, 1)
            score = -run * math.log10(usual)  # -log10(chance), never an underflow to 0
            if not score > ERROR_RUN_THRESHOLD:
                return ()
            series.error_alerted = True
            series.outage = (spans + run - 1, errs + run)  # (this span joins the count after)
            series.anomalies += 1
            onset = series.error_onset
        chance = usual ** run
        details: dict[str, Any] = {
            **_about(name), "metric": "errors", "run": run, "onset": onset, "confirmed_at": timestamp,
            "usual_error_percent": 100.0 * usual, "chance": chance,
            "likely_cause": f"{run} failed spans in a row; {name!r} fails {100 * usual:.2g} % of the time "
                            f"(chance of such a run {chance:.1g})",
        }
        if context:
            details.update(context)
        return (ErrorRun(detector=f"{name} [errors]", index=first, value=100.0, expected=100.0 * usual,
                         std=1.0 / run, score=score, threshold=ERROR_RUN_THRESHOLD, timestamp=onset,
                         details=details),)

    def _advance_alert(self, series: Series, k: int, det: AlertPipeline, name: str, value: float,
                       alert: Anomaly | None, timestamp: Any, context: Mapping[str, Any] | None,
                       emitted: Sequence[Anomaly]) -> Sequence[Anomaly]:
        """Start or follow detector ``k``'s alert; emit when ``confirm`` points confirm it."""
        flagged = None
        if alert is not None:
            flagged = Onset(alert.index, value, alert.expected, alert.std, alert.score, timestamp)
        with self._lock:
            if alert is not None:
                series.alerts[k] = alert
            series.pending[k], run = self.rule.confirm_alert(
                series.pending[k], det.n_seen - 1, value, timestamp, flagged,
                alert.threshold if alert is not None else 0.0)
            if run is None or self._returning(series, run.value, run.expected):
                return emitted
            series.anomalies += 1
            raised = series.alerts[k]
        assert raised is not None
        details = {**raised.details, **_about(name), "run": self.confirm, "onset": run.timestamp,
                   "confirmed_at": timestamp}
        if context:
            details.update(context)
        return (*emitted, dataclasses.replace(
            raised, detector=f"{name} [{type(det).__name__}]", index=run.index, value=run.value,
            score=run.score, timestamp=run.timestamp, details=details))

    def _returning(self, series: Series, value: float, expected: float) -> bool:
        """Is an anomaly at ``value`` (against ``expected``) the series coming back to the level
        it had before its last anomaly? Counted, not emitted; otherwise remembered as the new
        last anomaly. Called under the bank's lock (anomalies are rare)."""
        if self.rule.back_to_normal(series.before, value, expected):
            series.before = None
            series.returns_to_normal += 1
            return True
        series.before = (value, expected)
        return False

    def _anomaly(self, det: Detector, name: str, onset: Onset, confirmed_at: Any,
                 context: Mapping[str, Any] | None) -> Anomaly:
        """The run's first point, explained; the run's length and end in ``details``."""
        details = dict(det.details)
        details.update(_about(name), run=self.confirm, onset=onset.timestamp, confirmed_at=confirmed_at)
        if context:
            details.update(context)
        return Anomaly(
            detector=f"{name} [{type(det).__name__}]", index=onset.index, value=float(onset.value),
            expected=float(onset.expected), std=float(onset.std), score=float(onset.score),
            threshold=det.threshold, timestamp=onset.timestamp, details=details,
        )

    def names(self) -> list[str]:
        with self._lock:
            return list(self._series)

    def totals(self) -> tuple[int, int]:
        """Observations and errors, summed over every name (the traffic the bank has seen)."""
        with self._lock:
            series = list(self._series.values())
        return sum(s.count for s in series), sum(s.errors for s in series)

    def summary(self) -> dict[str, dict[str, int]]:
        """Per name: observations, errors, anomalies emitted, returns to normal not emitted."""
        with self._lock:
            return {
                name: {"count": s.count, "errors": s.errors, "anomalies": s.anomalies,
                       "returns_to_normal": s.returns_to_normal}
                for name, s in self._series.items()
            }

    def newcomer(self, name: str) -> tuple[Any, int, float] | None:
        """``(first_seen, count, typical value)`` of a name, or None if it has no series of its
        own. The typical value is its Z-score window's mean (NaN without a Z-score)."""
        series = self._series.get(name)
        if series is None:
            return None
        typical = math.nan
        for det in series.detectors:
            z = getattr(det, "detector", det)  # an alert pipeline's raw detector
            if isinstance(z, ZScoreDetector) and z.n_learned:
                typical = z.window_mean
                break
        return series.first_seen, series.count, typical

    def _after_fork(self) -> None:
        """In a forked child: forget everything, with a fresh lock (the old one
        may have been held by a thread that does not exist here)."""
        self._lock = owned_lock()
        self._series = {}
        self.overflowed = 0
