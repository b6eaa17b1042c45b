"""PerfSpanProcessor: the OpenTelemetry SpanProcessor that feeds the detectors.

Added to any SDK ``TracerProvider``, it sees every span -- from perfsdk's
``@monitor`` or from any OTel instrumentation library -- and at span end feeds
its duration (ms) into the per-name detectors of a ``DetectorBank``. It also
learns which span names call which (from parent links), which incidents use to
rank a callee above its callers.

Its contract with the host: ``on_start``/``on_end`` never raise (faults are
counted), never block on I/O, and keep only bounded state.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import StatusCode

from perfsdk._runtime import Faults, at_fork
from perfsdk.detect import Anomaly
from perfsdk.instrument.bank import DetectorBank
from perfsdk.instrument.sink import AnomalySink

__all__ = ["PerfSpanProcessor", "ns_to_datetime"]

MAX_OPEN_SPANS = 100_000  # spans in flight whose names are remembered for parent links
MAX_CALL_EDGES = 10_000
LEARN_ALL_SPANS = 10_000  # follow every trace for this many spans, then one in 16


ERROR = StatusCode.ERROR


def ns_to_datetime(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc)


class PerfSpanProcessor(SpanProcessor):
    """Feeds span durations into a DetectorBank and publishes the anomalies."""

    def __init__(self, bank: DetectorBank, sink: AnomalySink, faults: Faults | None = None,
                 export: Any = None, gc_pauses: Any = None) -> None:
        self.bank = bank
        self.sink = sink
        self.export = export  # an ArrowExport: every ended span is queued for the Arrow files
        self.gc_pauses = gc_pauses  # a GcPauses: a slow span that sat through a collection is told so
        if gc_pauses is not None:
            gc_pauses.install()  # watched while the processor runs; shutdown() stops watching
        self.faults = faults or Faults()
        self.open_dropped = 0
        self._ended = itertools.count(1)
        self.edges_dropped = 0
        self._open: dict[int, str] = {}
        self._callers: dict[str, set[str]] = {}
        self._n_edges = 0
        self._edges_lock = threading.Lock()
        self._trace_mask = 0  # trace ids with any of these bits set are not followed
        self._shutdown = False
        at_fork(self._after_fork)

    # -- the SpanProcessor contract ------------------------------------------
    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        # Remember the names of spans in flight, so a child's end can name its
        # caller. After the first LEARN_ALL_SPANS spans, only one trace in 16
        # is followed: the call graph is structural, and this is the costly part.
        if self._shutdown:
            return
        try:
            try:
                context = span._context  # the SDK's field (its property costs more)
            except AttributeError:
                context = span.context
            if context is None or context.trace_id & self._trace_mask:
                return
            if len(self._open) < MAX_OPEN_SPANS:
                self._open[context.span_id] = span.name
            else:
                self.open_dropped += 1
        except Exception as exc:
            self.faults.record("span processor on_start", exc)

    def on_end(self, span: ReadableSpan) -> None:
        if self._shutdown:
            return
        try:
            try:  # the SDK's ReadableSpan: its fields directly (its properties cost ~230 ns a span)
                name, context, parent = span._name, span._context, span._parent
                start, end = span._start_time, span._end_time
                error = span._status._status_code is ERROR
            except AttributeError:  # any other ReadableSpan: the public API
                name, context, parent = span.name, span.context, span.parent
                start, end, error = span.start_time, span.end_time, span.status.status_code is ERROR
            if self._open and context is not None:
                followed = self._open.pop(context.span_id, None)
                if followed is not None and parent is not None:
                    caller = self._open.get(parent.span_id)
                    if caller is not None:
                        self._learn_call(caller, name)
            if self.export is not None:
                self.export.enqueue(span)
            if start is None or end is None:
                return
            if next(self._ended) == LEARN_ALL_SPANS:  # itertools.count: atomic
                self._trace_mask = 0xF
            for anomaly in self.bank.observe(name, (end - start) / 1e6, start, error):
                self.sink.publish(self._with_span(anomaly, span))
        except Exception as exc:
            self.faults.record("span processor on_end", exc)

    def shutdown(self) -> None:
        self._shutdown = True
        if self.gc_pauses is not None:
            self.gc_pauses.uninstall()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.sink.flush(timeout_millis / 1000.0)

    # -- work ----------------------------------------------------------------
    def _learn_call(self, caller: str, callee: str) -> None:
        callers = self._callers.get(callee)
        if callers is not None and caller in callers:
            return  # the common case: a known edge, no lock
        with self._edges_lock:
            if self._n_edges >= MAX_CALL_EDGES:
                self.edges_dropped += 1
                return
            self._callers.setdefault(callee, set()).add(caller)
            self._n_edges += 1

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
        if excess > 0 and paused_ms >= 0.5 * excess:
            details["likely_cause"] = (f"garbage collection: the span sat through {paused_ms:.1f} ms of collector "
                                       f"pauses ({collections} collection{'s' if collections > 1 else ''}), "
                                       f"{100 * paused_ms / excess:.0f} % of its {excess:.1f} ms over the expected")

    def _with_span(self, anomaly: Anomaly, span: ReadableSpan) -> Anomaly:
        details: dict[str, Any] = dict(anomaly.details)
        onset, confirmed = details.get("onset"), details.get("confirmed_at")
        details.update(
            source="span", metric="duration_ms",
            onset=ns_to_datetime(onset) if isinstance(onset, int) else onset,
            confirmed_at=ns_to_datetime(confirmed) if isinstance(confirmed, int) else confirmed,
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

    def ancestors(self, name: str) -> set[str]:
        """Span names that call ``name``, directly or through other spans."""
        with self._edges_lock:  # on_end may add edges meanwhile
            graph = {callee: tuple(callers) for callee, callers in self._callers.items()}
        seen: set[str] = set()
        frontier = [name]
        while frontier:
            for caller in graph.get(frontier.pop(), ()):
                if caller not in seen:
                    seen.add(caller)
                    frontier.append(caller)
        return seen

    def _after_fork(self) -> None:
        self._edges_lock = threading.Lock()
        self._open = {}
        self._ended = itertools.count(1)
        self._trace_mask = 0
