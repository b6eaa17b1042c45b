"""Incidents: anomalies close in time, grouped, with the likely origin first.

When a database slows down, the route that calls it slows down too, and so
may CPU and memory: one cause, several anomalies. An ``Incident`` groups the
anomalies of related series that start within ``window_s`` of each other and
ranks them by evidence, so a person reads the likely cause first:

- **unexplained excess**: how many milliseconds over its expected a span is,
  less what its slowest anomalous callee (learned from parent/child links)
  accounts for. A slow query explains its route's 40 ms; a 0.5 ms blip on a
  query explains nothing, so the route stays first however many callers the
  blip has. A span half of whose excess was collector pauses is explained;
  a span *faster* than expected explains nothing about its callers (a cache
  that got faster is not why its route got slower) and ranks last;
- a span name failing in a run (an ``errors`` anomaly) comes before any
  slowness, unless a span it calls is failing too;
- process metrics (CPU, memory, collector pauses) next: context, or the
  cause when every slow span is explained by them;
- then earlier onset, then the larger deviation.

Grouping is not done on the application's thread: ``IncidentTracker.add`` only
queues an anomaly, the sink's background worker groups what is queued
(``group_pending``), and ``incidents()`` groups whatever is still queued first,
so it always sees every anomaly added before it was called.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import AbstractSet, Callable, Iterable

from perfsdk._runtime import at_fork, owned_lock
from perfsdk.detect import Anomaly

__all__ = ["Incident", "IncidentTracker", "gc_explains"]


def _onset(a: Anomaly) -> datetime | None:
    onset = a.details.get("onset")
    return onset if isinstance(onset, datetime) else a.timestamp


def _series(a: Anomaly) -> str:
    return str(a.details.get("series", a.detector))


def gc_explains(paused_ms: float, excess_ms: float) -> bool:
    """Do collector pauses explain a span's excess over its expected? When they make up half or more.

    >>> gc_explains(30.0, 40.0), gc_explains(5.0, 40.0)
    (True, False)
    """
    return excess_ms > 0 and paused_ms >= 0.5 * excess_ms


def _excess(a: Anomaly) -> float | None:
    """How far a span's duration is over its expected (ms; negative when it got faster); None for
    a process metric. Signed: a callee that got faster explains none of its caller's slowness."""
    if a.details.get("source") == "resource" or a.details.get("metric", "duration_ms") != "duration_ms":
        return None
    return a.value - a.expected


def _clock(t: datetime | None) -> str:
    return "?" if t is None else t.strftime("%H:%M:%S.%f")[:-3]


def _describe(a: Anomaly) -> str:
    unit = " ms" if a.details.get("metric", "duration_ms") == "duration_ms" else ""
    cause = a.details.get("likely_cause")
    return (
        f"{a.details.get('series', a.detector)!r} at {a.value:.4g}{unit} against an expected "
        f"{a.expected:.4g}{unit} ({a.size} {a.direction}), from {_clock(_onset(a))}"
        + (f" -- likely cause: {cause}" if cause else "")
    )


@dataclass
class Incident:
    """Anomalies that started within a short window of each other.

    ``members`` are ranked: the likely origin first. ``callers[name]`` holds
    the anomalous series that call ``name`` (from span parent links).
    """

    members: list[Anomaly]
    callers: dict[str, list[str]] = field(default_factory=dict)

    @property
    def origin(self) -> Anomaly:
        return self.members[0]

    @property
    def started(self) -> datetime | None:
        times = [t for t in (_onset(a) for a in self.members) if t is not None]
        return min(times) if times else None

    @property
    def ended(self) -> datetime | None:
        times = [a.timestamp for a in self.members if a.timestamp is not None]
        return max(times) if times else None

    def __str__(self) -> str:
        names = list(dict.fromkeys(a.details.get("series", a.detector) for a in self.members))
        origin = self.origin
        origin_name = origin.details.get("series", origin.detector)
        text = (
            f"Incident from {_clock(self.started)} to {_clock(self.ended)}: "
            f"{len(self.members)} anomal{'y' if len(self.members) == 1 else 'ies'} on "
            f"{', '.join(repr(n) for n in names)}. Likely origin: {_describe(origin)}"
        )
        if self.callers.get(origin_name):
            text += f"; it is called by {', '.join(repr(c) for c in self.callers[origin_name])}"
        rest = self.members[1:]
        if rest:
            text += ". Then: " + "; ".join(_describe(a) for a in rest)
        return text + "."


class _Group:
    """An incident's members and what grouping asks of them (latest onset, onsets, series), kept as
    they join: weighing a new anomaly looks at each open incident once, not at every member."""

    __slots__ = ("members", "onsets", "resource_onsets", "series", "scanned")

    def __init__(self) -> None:
        self.members: list[Anomaly] = []
        self.onsets: list[datetime] = []  # sorted: the latest onset last
        self.resource_onsets: list[datetime] = []  # the process metrics' alone, sorted
        self.series: dict[str, None] = {}  # in order of first arrival, as the members name them
        self.scanned = True  # in the tracker's scanned set

    def append(self, anomaly: Anomaly) -> None:
        self.members.append(anomaly)
        self.series.setdefault(_series(anomaly), None)
        onset = _onset(anomaly)
        if onset is not None:
            insort(self.onsets, onset)
            if anomaly.details.get("source") == "resource":
                insort(self.resource_onsets, onset)

    def closed_at(self, when: datetime, window_s: float) -> bool:
        """No member began within ``window_s`` before ``when`` (a group with no onset never opens)."""
        return not self.onsets or (when - self.onsets[-1]).total_seconds() > window_s

    def coincides(self, when: datetime, coincide_s: float, process_wide: bool) -> bool:
        """Some onset (a process metric's, unless ``process_wide``) is within ``coincide_s`` of
        ``when``: the nearest one each side decides."""
        onsets = self.onsets if process_wide else self.resource_onsets
        i = bisect_left(onsets, when)
        return any(abs((when - t).total_seconds()) <= coincide_s for t in onsets[max(i - 1, 0):i + 1])


class IncidentTracker:
    """Groups anomalies into incidents (bounded: the newest ``max_incidents``).

    ``ancestors(name)`` returns the names that call ``name``, directly or not.

    A span anomaly joins the latest incident still open (a member began within
    ``window_s`` before it) that holds a related series: the same name, or one that
    calls it or that it calls; otherwise it opens an incident of its own -- two
    routes failing for two reasons a few seconds apart are two incidents, and one
    long run of anomalies no longer chains every fault of an afternoon into one.
    A process metric (CPU, memory, collector pauses, the traffic) belongs to no route:
    it joins the latest incident with a member within ``coincide_s`` of it, and
    relates a span anomaly to that incident in the same way.

    ``add`` only queues (it runs on the application's thread, and grouping weighs every open
    incident); ``group_pending`` (the sink's worker) and ``incidents()`` do the grouping, in
    the order the anomalies were added. At most ``max_pending`` wait (default: no bound, for a
    caller that groups a batch itself, as the report does); beyond that an anomaly is dropped
    and counted in ``dropped_members``, as one past ``max_members`` is.

    Grouping an anomaly weighs the incidents still open, not their members: each incident keeps
    its latest onset and its series as members join. While anomalies come in onset order (the
    report's batch; mostly, live) an incident closed for one is closed for every later one, so it
    leaves the scanned set; one that comes earlier than an anomaly already grouped weighs every
    incident kept, as any anomaly did. Without a cap (the report's), the work is the anomalies
    times the incidents open at once, not the square of a long run's anomalies.
    """

    def __init__(
        self, ancestors: Callable[[str], AbstractSet[str]], window_s: float = 30.0,
        max_incidents: int = 100, max_members: int = 50, coincide_s: float = 5.0,
        max_pending: int | None = None,
    ) -> None:
        self.ancestors = ancestors
        self.window_s = window_s
        self.coincide_s = min(coincide_s, window_s)
        self.max_members = max_members
        self.max_pending = math.inf if max_pending is None else max_pending
        self.dropped_members = 0
        self._groups: deque[_Group] = deque(maxlen=max_incidents)
        self._scanned: list[_Group] = []  # the incidents of _groups maybe still open, oldest first
        self._swept_to: datetime | None = None  # every incident out of _scanned is closed from here on
        self._pending: deque[Anomaly] = deque()
        self._lock = owned_lock()  # taken by the notification thread: see perfsdk._runtime.locks
        self._drop_lock = owned_lock()
        at_fork(self._after_fork)

    def add(self, anomaly: Anomaly) -> None:
        """Queue ``anomaly`` for grouping (no lock, no graph walk: the application's thread)."""
        if len(self._pending) < self.max_pending:
            self._pending.append(anomaly)  # atomic; racing threads may pass the bound by a few
        else:
            with self._drop_lock:
                self.dropped_members += 1

    def group_pending(self) -> None:
        """Group the queued anomalies into incidents, oldest first."""
        ancestry: dict[str, AbstractSet[str]] = {}  # asked once a batch: anomalies share names
        with self._lock:
            pending = self._pending
            while pending:
                anomaly = pending.popleft()
                group = self._home(anomaly, ancestry)
                if group is None:
                    self._new_incident(anomaly)
                elif len(group.members) < self.max_members:
                    group.append(anomaly)
                    if not group.scanned and _onset(anomaly) is not None:  # an earlier anomaly reopened it
                        group.scanned = True
                        self._scanned = [g for g in self._groups if g.scanned]
                else:
                    with self._drop_lock:
                        self.dropped_members += 1

    def _new_incident(self, anomaly: Anomaly) -> None:
        if len(self._groups) == self._groups.maxlen and self._groups[0].scanned:
            del self._scanned[0]  # the oldest incident, about to be dropped from _groups
        group = _Group()
        group.append(anomaly)
        self._groups.append(group)
        self._scanned.append(group)

    def _home(self, anomaly: Anomaly, ancestry: dict[str, AbstractSet[str]]) -> _Group | None:
        """The incident ``anomaly`` belongs to, or None for a new one (under the lock); ``ancestry``
        keeps the ancestors asked for."""
        if not self._groups:
            return None
        when = _onset(anomaly)
        if when is None:
            return self._groups[-1]
        name = _series(anomaly)
        process_wide = anomaly.details.get("source") == "resource"
        def ancestors(of: str) -> AbstractSet[str]:
            found = ancestry.get(of)
            if found is None:
                found = ancestry[of] = self.ancestors(of)
            return found

        callers = ancestors(name)  # once per anomaly, not once per member of every incident
        related: dict[str, bool] = {name: True}

        def relates(other: str) -> bool:  # the same name, a caller of it, or a name it calls
            known = related.get(other)
            if known is None:
                known = related[other] = other in callers or name in ancestors(other)
            return known

        in_order = self._swept_to is None or when >= self._swept_to
        if in_order:
            self._swept_to = when
        scan = self._scanned if in_order else list(self._groups)
        for i in range(len(scan) - 1, -1, -1):  # the latest incident first
            group = scan[i]
            if group.closed_at(when, self.window_s):
                if in_order:  # no later anomaly (onset >= when) can open it again
                    group.scanned = False
                    del scan[i]
                continue
            if (group.coincides(when, self.coincide_s, process_wide)
                    or (not process_wide and any(relates(s) for s in group.series))):
                return group
        return None

    def incidents(self) -> list[Incident]:
        """Every anomaly added so far, grouped (what the worker has not grouped yet is, now)."""
        self.group_pending()
        with self._lock:
            groups = [list(g.members) for g in self._groups]
        return [self._rank(group) for group in groups]

    def _rank(self, members: Iterable[Anomaly]) -> Incident:
        members = list(members)
        names = {_series(a) for a in members}
        callers = {n: sorted(self.ancestors(n) & names - {n}) for n in names}
        explained: dict[str, float] = {}  # per series: the largest excess of an anomalous callee
        failing_callers: set[str] = set()  # series that call a failing series
        for a in members:
            excess = _excess(a)
            if excess is not None and excess > 0:  # only a slower callee explains a caller's slowness
                for caller in callers[_series(a)]:
                    explained[caller] = max(explained.get(caller, 0.0), excess)
            if a.details.get("metric") == "errors":
                failing_callers.update(callers[_series(a)])

        def key(a: Anomaly) -> tuple:
            onset = _onset(a)
            excess = _excess(a)
            if a.details.get("metric") == "errors":  # a failure explains itself, unless a callee failed first
                rank, unexplained = (2, 0.0) if _series(a) in failing_callers else (0, math.inf)
            elif excess is None:
                rank, unexplained = 1, 0.0  # a process metric
            elif excess < 0:
                rank, unexplained = 3, excess  # faster than expected: after every slow span
            else:
                unexplained = excess - explained.get(_series(a), 0.0)
                paused = float(a.details.get("gc_pause_ms") or 0.0)
                rank = 0 if unexplained > 0 and not gc_explains(paused, excess) else 2
            return (rank, -unexplained, onset.timestamp() if onset else 0.0, -abs(a.score))

        return Incident(sorted(members, key=key), {n: c for n, c in callers.items() if c})

    def _after_fork(self) -> None:
        self._lock = owned_lock()
        self._drop_lock = owned_lock()
        self._groups.clear()
        self._scanned.clear()
        self._swept_to = None
        self._pending.clear()
        self.dropped_members = 0
