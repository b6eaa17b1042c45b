"""PerfSpanProcessor: the OpenTelemetry SpanProcessor that feeds the detectors.

Added to any SDK ``TracerProvider``, it sees every span -- from perfsdk's
``@monitor`` or from any OTel instrumentation library -- and at span end feeds
its duration (ms) into the per-name detectors of a ``DetectorBank``. It also
learns which span names call which (from parent links, into a ``CallGraph``),
which incidents use to weigh a callee against its callers.

A span name that first appears as its caller turns slow has no history to be
judged by: its detectors are still learning. It is judged against its caller
instead: if it takes half or more of the caller's excess, it is reported as a
suspect (``details["new_span_name"]``), not left to warm up on faulty values.

Its contract with the host: ``on_start``/``on_end`` never raise (faults are
counted), never block on I/O, and keep only bounded state. They are compiled
(``perfsdk._native.SpanPath``, this class's base): OpenTelemetry calls them for
every span on the application's thread.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import replace
from datetime import datetime, timezone
from typing import AbstractSet, Any

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor

from perfsdk._native import SpanPath
from perfsdk._runtime import Faults, at_fork, inside_perfsdk, owned_lock
from perfsdk.detect import Anomaly
from perfsdk.instrument.bank import DetectorBank
from perfsdk.instrument.incidents import gc_explains
from perfsdk.instrument.sink import AnomalySink

__all__ = ["CallGraph", "PerfSpanProcessor", "ns_to_datetime"]

MAX_OPEN_SPANS = 100_000  # spans in flight whose names are remembered for parent links
MAX_CALL_EDGES = 10_000
LEARN_ALL_SPANS = 10_000  # follow every trace for this many spans, then one in 16
NEW_NAME_MARGIN_NS = 5_000_000_000  # first seen up to this long before its caller's onset: new with it
NEW_NAME_SHARE = 0.5  # a new callee taking this share of its caller's excess is a suspect
#: The share of a provider's ``force_flush`` deadline perfsdk's processor (first in line) may spend:
#: the processors behind it -- the application's exporters -- keep the rest.
FLUSH_SHARE = 0.1


def ns_to_datetime(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc)


class CallGraph:
    """Which span names call which (bounded: ``MAX_CALL_EDGES``, then counted in ``dropped``).

    Its own object, not the processor's maps: the incidents of a ``PerfSDK`` handle keep ranking
    by it after the processor, shut down, let go of everything. ``callers`` (callee -> callers) is
    read without the lock on the processor's compiled path; everything else takes it.
    """

    def __init__(self) -> None:
        self.callers: dict[str, set[str]] = {}
        self.dropped = 0
        self._callees: dict[str, set[str]] = {}  # callers reversed
        self._ancestry: dict[str, frozenset[str]] = {}  # name -> its ancestors, until a new edge
        self._edges = 0
        self._lock = owned_lock()  # the notification thread's incidents read it: see perfsdk._runtime.locks
        at_fork(self._after_fork)

    def learn(self, caller: str, callee: str) -> bool:
        """Remember that ``caller`` calls ``callee``; True if the edge is new."""
        with self._lock:
            if self._edges >= MAX_CALL_EDGES:
                self.dropped += 1
                return False
            known = self.callers.setdefault(callee, set())
            if caller in known:
                return False
            known.add(caller)
            self._callees.setdefault(caller, set()).add(callee)
            self._edges += 1
            self._ancestry.clear()  # rare: a new edge may give any name new ancestors
            return True

    def callees(self, name: str) -> list[str]:
        with self._lock:
            return list(self._callees.get(name, ()))

    def ancestors(self, name: str) -> AbstractSet[str]:
        """Span names that call ``name``, directly or through other spans. Walked once and kept
        until a new edge is learned (rare after warm-up): incidents ask for every member."""
        with self._lock:
            found = self._ancestry.get(name)
            if found is None:
                seen: set[str] = set()
                frontier = [name]
                while frontier:  # walks only the ancestors, never the whole graph
                    for caller in self.callers.get(frontier.pop(), ()):
                        if caller not in seen:
                            seen.add(caller)
                            frontier.append(caller)
                if len(self._ancestry) >= MAX_CALL_EDGES:
                    self._ancestry.clear()  # bounded: a name asked for again is walked again
                found = self._ancestry[name] = frozenset(seen)
            return found

    def _after_fork(self) -> None:
        self._lock = owned_lock()  # the graph is structural: the child's code calls the same way


class PerfSpanProcessor(SpanPath, SpanProcessor):
    """Feeds span durations into a DetectorBank and publishes the anomalies.

    The per-span path (``on_start``, ``on_end``) is compiled (``perfsdk._native.SpanPath``);
    the rare paths are here: a new call edge, the anomalies a span completes, a fault.
    """

    def __init__(self, bank: DetectorBank, sink: AnomalySink, faults: Faults | None = None,
                 export: Any = None, gc_pauses: Any = None, incident_window_s: float = 30.0,
                 calls: CallGraph | None = None) -> None:
        self.bank = bank
        self.calls = calls or CallGraph()
        self._callers = self.calls.callers  # the compiled path finds a known edge here, without a lock
        self.sink = sink
        self.observe = bank.observe
        self.export = export  # an ArrowExport: every ended span is stored for the Arrow files
        self.store_span = None if export is None else export.collector.add_read  # False: dropped
        self.gc_pauses = gc_pauses  # a GcPauses: a slow span that sat through a collection is told so
        if gc_pauses is not None:
            gc_pauses.install()  # watched while the processor runs; shutdown() stops watching
        self.faults = faults or Faults()
        self.max_open_spans = MAX_OPEN_SPANS
        self.learn_all_spans = LEARN_ALL_SPANS
        self._slow: dict[str, tuple[int, float, Anomaly]] = {}  # name -> (onset ns, excess, anomaly)
        self._suspects: set[str] = set()  # new names already reported
        self.incident_window_ns = int(incident_window_s * 1e9)  # a slow caller's new callees are judged this long
        at_fork(self._after_fork)

    # -- the rare paths of on_start/on_end (SpanPath) --------------------------------
    def _new_edge(self, caller: str, callee: str) -> bool:
        """Learn the edge; True when it is new under a slow caller: the callee is judged once its
        span was observed (``_judge_newcomer``), when a name seen for the first time has a series."""
        return self.calls.learn(caller, callee) and caller in self._slow

    def _anomalies(self, anomalies: Any, name: str, span: ReadableSpan, start: int, end: int) -> None:
        for anomaly in anomalies:
            self.sink.publish(self._with_span(anomaly, span, end))
            # the anomaly's series: the overflow series' anomalies are not this span name's
            self._remember_slow(str(anomaly.details.get("series", name)), anomaly, start)

    def _dropped_span(self) -> None:
        self.export.dropped_span()

    def _fault(self, where: str, exc: BaseException) -> None:
        self.faults.record(where, exc)

    def shutdown(self) -> None:
        """Stop, and let go of everything (``release``): OpenTelemetry cannot remove a processor
        from its provider, so a dead one stays in the provider's list for the process's life (one
        per ``init()`` after a ``shutdown()``); it must cost a few bytes, not its detectors, sink,
        export and maps. The ``PerfSDK`` handle keeps what its ``stats()`` reads."""
        self._shutdown = True
        if self.gc_pauses is not None:
            self.gc_pauses.uninstall()
        self.release()

    def wait_in_flight(self, timeout_s: float) -> bool:
        """Wait, up to ``timeout_s``, until no span is inside ``on_end`` (once shut down, a span only
        passes through: one that was inside as shutdown began finishes storing and judging it): True
        if none is. ``PerfSDK.shutdown`` waits so before it closes the export and the sink, so that
        span is written, not left behind them (one still inside then is dropped and counted by the
        closed export). Polls: the span path takes no lock to be waited on. Called on a thread that
        is itself inside ``on_end`` (a signal handler's ``shutdown()`` that interrupted the span's
        Python part), it does not wait: that span cannot finish before it returns."""
        if _inside_on_end(sys._getframe(1)):
            return self._in_flight == 0
        deadline = time.monotonic() + timeout_s
        pause = 0.0002
        while self._in_flight > 0:
            if time.monotonic() >= deadline:
                return False
            time.sleep(pause)
            pause = min(pause * 2, 0.01)
        return True

    def release(self) -> bool:
        """Let go of the detectors, sink, export and maps once stopped and no span is still inside
        ``on_end`` on another thread (it would find them gone, and its anomaly lost); False if one
        is (``PerfSDK.shutdown`` asks again once the sink is closed)."""
        if not self._shutdown or self._in_flight:
            return False
        self.observe = None  # type: ignore[assignment]
        self.store_span = None
        self.bank = self.sink = self.calls = None  # type: ignore[assignment]
        self.export = self.gc_pauses = None
        self._open, self._callers = {}, {}
        self._slow, self._suspects = {}, set()
        return True

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Give the queued anomaly notifications a tenth of ``timeout_millis`` to be delivered; True.

        Called by the provider's ``force_flush``, where perfsdk's processor goes first
        (``provider.add_first``): OpenTelemetry gives the processors one deadline in turn, and skips
        those behind one that used it up (and, in releases before the fix of opentelemetry-python
        #4631, one that returned False). So perfsdk takes a share (``FLUSH_SHARE``) and never says
        False: its spans need no flushing, and its notifications go on being delivered on its own
        thread (``PerfSDK.force_flush`` waits for them and says whether they were). From a thread
        inside perfsdk (a signal handler) it does not wait at all, counted: the notification
        thread may need the lock that thread holds."""
        sink = self.sink
        if sink is None:
            return True
        if inside_perfsdk():
            self.faults.count("flush inside perfsdk")
            return True
        sink.flush(timeout_millis / 1000.0 * FLUSH_SHARE)
        return True

    # -- new span names ------------------------------------------------------
    def _remember_slow(self, name: str, anomaly: Anomaly, start: int) -> None:
        """A span anomaly above its expected makes ``name`` a slow caller for a while: its new
        callees, known now or learned later, are judged against its excess."""
        onset = anomaly.details.get("onset")
        onset_ns = onset if isinstance(onset, int) else start
        excess = anomaly.value - anomaly.expected
        if excess <= 0 or anomaly.details.get("metric") == "errors":
            return
        if name not in self._slow and len(self._slow) >= self.bank.max_names:
            self._slow.clear()  # bounded: old slow callers are forgotten first
        self._slow[name] = (onset_ns, excess, anomaly)
        for callee in self.calls.callees(name):
            self._judge_newcomer(callee, name)

    def _judge_newcomer(self, callee: str, caller: str) -> None:
        """Report ``callee`` as a suspect if it first appeared as ``caller`` turned slow and
        takes half or more of ``caller``'s excess."""
        slow = self._slow.get(caller)
        known = self.bank.newcomer(callee)
        if slow is None or known is None or callee in self._suspects or callee == caller:
            return
        onset_ns, excess, caller_anomaly = slow
        first_seen, count, typical = known
        if (not isinstance(first_seen, int) or not onset_ns - NEW_NAME_MARGIN_NS <= first_seen
                or first_seen > onset_ns + self.incident_window_ns or not typical >= NEW_NAME_SHARE * excess):
            return
        self._suspects.add(callee)
        lead_s = (onset_ns - first_seen) / 1e9
        when = f"{lead_s:.1f} s before" if lead_s >= 0 else f"{-lead_s:.1f} s after"
        first = ns_to_datetime(first_seen)
        sibling_info = [self.bank.newcomer(other) for other in self.calls.callees(caller) if other != callee]
        siblings = [info[2] for info in sibling_info if info is not None and not math.isnan(info[2])]
        among = (f"; its siblings under {caller!r} typically take at most {max(siblings):.1f} ms" if siblings
                 else f"; {caller!r} calls nothing else")
        details = {
            "series": callee, "source": "span", "metric": "duration_ms", "new_span_name": True,
            "caller": caller, "spans": count, "onset": first, "confirmed_at": ns_to_datetime(time.time_ns()),
            "siblings_typical_ms": max(siblings) if siblings else None,
            "likely_cause": (f"a new span name: first seen {when} {caller!r} turned slow, typically {typical:.1f} ms "
                             f"-- {100 * min(typical / excess, 9.99):.0f} % of the caller's {excess:.1f} ms over "
                             f"its expected{among}"),
        }
        self.sink.publish(Anomaly(
            detector=f"{callee} [new span name]", index=count - 1, value=typical, expected=0.0, std=0.0,
            score=math.inf, threshold=caller_anomaly.threshold, timestamp=first, details=details,
        ))

    def _attribute_gc(self, details: dict[str, Any], anomaly: Anomaly, span: ReadableSpan) -> None:
        """A span that sat through collector pauses says how long; when they make up half or more
        of its excess over the expected, the pause is named as the likely cause (a collection stops
        every thread: a healthy route is slow for the process's reasons, not its own)."""
        if self.gc_pauses is None or not span.start_time or not span.end_time:
            return
        paused_ms, collections = self.gc_pauses.during(span.start_time, span.end_time)
        if not collections:
            return
        details.update(gc_pause_ms=round(paused_ms, 3), gc_collections=collections)
        excess = anomaly.value - anomaly.expected
        if gc_explains(paused_ms, excess):
            details["likely_cause"] = (f"garbage collection: the span sat through {paused_ms:.1f} ms of collector "
                                       f"pauses ({collections} collection{'s' if collections > 1 else ''}), "
                                       f"{100 * paused_ms / excess:.0f} % of its {excess:.1f} ms over the expected")

    def _with_span(self, anomaly: Anomaly, span: ReadableSpan, end: int) -> Anomaly:
        details: dict[str, Any] = dict(anomaly.details)
        onset = details.get("onset")
        details.setdefault("metric", "duration_ms")  # or "errors": a run of failed spans
        details.update(
            source="span",
            onset=ns_to_datetime(onset) if isinstance(onset, int) else onset,
            # confirmed when the confirming span ended: never before the onset span began
            confirmed_at=ns_to_datetime(max(end, onset) if isinstance(onset, int) else end),
            trace_id=f"{span.context.trace_id:032x}" if span.context else None,
            span_id=f"{span.context.span_id:016x}" if span.context else None,
            parent_span_id=f"{span.parent.span_id:016x}" if span.parent else None,
        )
        self._attribute_gc(details, anomaly, span)
        timestamp = anomaly.timestamp
        return replace(
            anomaly, details=details,
            timestamp=ns_to_datetime(timestamp) if isinstance(timestamp, int) else timestamp,
        )

    @property
    def spans(self) -> int:
        """Spans processed (the per-name counts, which the detectors keep atomically)."""
        return sum(s["count"] for s in self.bank.summary().values())

    @property
    def errors(self) -> int:
        return sum(s["errors"] for s in self.bank.summary().values())

    @property
    def edges_dropped(self) -> int:
        return 0 if self.calls is None else self.calls.dropped

    def ancestors(self, name: str) -> AbstractSet[str]:
        """Span names that call ``name``, directly or through other spans (``CallGraph``)."""
        return frozenset() if self.calls is None else self.calls.ancestors(name)

    def _after_fork(self) -> None:
        self._open = {}
        self.spans_ended = 0
        self.spans_invalid = 0
        self.spans_after_shutdown = 0
        self._in_flight = 0  # the threads that were inside on_end at the fork are not the child's
        self._trace_mask = 0
        self._slow = {}
        self._suspects = set()


_INSTRUMENT_DIR = os.path.dirname(os.path.abspath(__file__))
_OUTSIDE_ON_END = {os.path.join(_INSTRUMENT_DIR, name) for name in ("sdk.py", "decorator.py")}


def _inside_on_end(frame: Any) -> bool:
    """Whether a frame below ``frame`` is the span path's Python part (this package's modules but the
    handle's and the decorator's: ``on_end``'s own is compiled, the code it calls is here)."""
    while frame is not None:
        name = frame.f_code.co_filename
        if name.startswith(_INSTRUMENT_DIR) and name not in _OUTSIDE_ON_END:
            return True
        frame = frame.f_back
    return False
