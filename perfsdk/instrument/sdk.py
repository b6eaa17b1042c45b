"""``perfsdk.init()``: put perfsdk inside an application, and the handle it returns."""

from __future__ import annotations

import logging
import os
import threading
from typing import Any, Callable, Sequence

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from perfsdk._version import __version__
from perfsdk.detect import Anomaly, ArimaDetector, ZScoreDetector
from perfsdk.instrument._guard import Faults
from perfsdk.instrument.bank import DetectorBank
from perfsdk.instrument.incidents import Incident, IncidentTracker
from perfsdk.instrument.decorator import ACTIVE
from perfsdk.instrument.processor import PerfSpanProcessor
from perfsdk.instrument.resources import ResourceSampler
from perfsdk.instrument.sink import AnomalySink

log = logging.getLogger("perfsdk")

DETECTOR_KINDS = ("zscore", "arima")


def span_detector_factories(kinds: Sequence[str], threshold: float | None) -> dict[str, Callable[[str], Any]]:
    """Detectors for span durations: quick to warm up, since routes differ in traffic."""
    factories: dict[str, Callable[[str], Any]] = {}
    for kind in kinds:
        if kind == "zscore":
            factories[kind] = lambda name: ZScoreDetector(
                window=128, warmup=20, threshold=threshold or 3.0, name=name
            )
        elif kind == "arima":
            factories[kind] = lambda name: ArimaDetector(threshold=threshold or 5.0, name=name)
        else:
            raise ValueError(f"detectors must be drawn from {DETECTOR_KINDS}, got {kind!r}")
    return factories


def resource_detector_factories(threshold: float | None) -> dict[str, Callable[[str], Any]]:
    """Resource metrics come once per interval: a short window, a short warm-up."""
    # min_std 1 in each metric's unit (%, MB, threads, ms): one more thread is not 100 sigma
    return {"zscore": lambda name: ZScoreDetector(
        window=60, warmup=10, threshold=threshold or 4.0, min_std=1.0, name=name
    )}


class Export:
    """The Arrow export that ``init(export_dir=...)`` sets up: spans, anomalies, resources,
    and the decisions of every adaptive cache in the process."""

    def __init__(self, directory: str, service: str, fmt: str, redactor: Any, faults: Faults) -> None:
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        from perfsdk.export import ArrowSpanExporter, TableWriter

        self.spans = ArrowSpanExporter(directory, format=fmt, redactor=redactor, faults=faults)
        self.span_processor = BatchSpanProcessor(self.spans)
        self.anomalies = TableWriter(directory, "anomalies", service, format=fmt, batch_rows=64)
        self.resources = TableWriter(directory, "resources", service, format=fmt, batch_rows=256)
        self.decisions = TableWriter(directory, "decisions", service, format=fmt, batch_rows=64)
        self.service = service
        self.faults = faults

    def add_decision(self, decision: Any) -> None:
        """A cache's decision as a row of the decisions table (called off the application's path)."""
        with self.faults.guard("decision export"):
            self.decisions.add(decision.as_row(self.service))

    @staticmethod
    def _decisions_delivered() -> None:
        """Wait for cache decisions still on their way to the table (queued off the app's path)."""
        from perfsdk.adapt.cache import CALLBACKS  # the cache module imports the instrumentation

        CALLBACKS.join()

    def flush(self, timeout_millis: int) -> bool:
        ok = self.span_processor.force_flush(timeout_millis) and self.spans.force_flush()
        self._decisions_delivered()
        for writer in (self.anomalies, self.resources, self.decisions):
            with self.faults.guard("export flush"):
                writer.flush()
        return ok

    def after_fork(self) -> None:
        self.spans.after_fork()
        self.anomalies.after_fork()
        self.resources.after_fork()
        self.decisions.after_fork()

    def close(self) -> None:
        self.span_processor.shutdown()  # flushes the exporter and publishes its files
        self._decisions_delivered()
        for writer in (self.anomalies, self.resources, self.decisions):
            with self.faults.guard("export close"):
                writer.close()


class PerfSDK:
    """The handle ``perfsdk.init()`` returns: counters, anomalies, incidents, shutdown."""

    def __init__(
        self, provider: TracerProvider, owns_provider: bool, processor: PerfSpanProcessor,
        sink: AnomalySink, sampler: ResourceSampler | None, faults: Faults,
        incidents: IncidentTracker, export: Export | None = None,
    ) -> None:
        self.tracer_provider = provider
        self.processor = processor
        self.sampler = sampler
        self.faults = faults
        self._sink = sink
        self._incidents = incidents
        self.export = export
        self._owns_provider = owns_provider
        self._closed = False
        self._lock = threading.Lock()

    def anomalies(self) -> list[Anomaly]:
        """The most recent anomalies (bounded; ``stats()['anomalies']`` counts them all)."""
        return self._sink.recent()

    def incidents(self) -> list[Incident]:
        """Recent anomalies grouped into incidents, likely origin first."""
        return self._incidents.incidents()

    def stats(self) -> dict[str, Any]:
        """Counters: spans, errors, names, overflow, anomalies, drops and faults."""
        bank = self.processor.bank
        return {
            "spans": self.processor.spans,
            "span_errors": self.processor.errors,
            "span_names": len(bank.names()),
            "max_span_names": bank.max_names,
            "overflowed_spans": bank.overflowed,
            "anomalies": self._sink.total,
            "notifications_dropped": self._sink.notifications_dropped,
            "incident_members_dropped": self._incidents.dropped_members,
            "open_spans_untracked": self.processor.open_dropped,
            "call_edges_dropped": self.processor.edges_dropped,
            "resource_samples": self.sampler.samples if self.sampler else 0,
            "faults": self.faults.snapshot(),
            "export": self.export.spans.stats() if self.export else None,
            "per_span": bank.summary(),
        }

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Deliver queued anomaly notifications and flush the tracer provider's exporters."""
        ok = self._sink.flush(timeout_millis / 1000.0)
        if self.export is not None:
            ok = self.export.flush(timeout_millis) and ok
        if self._owns_provider:
            ok = self.tracer_provider.force_flush(timeout_millis) and ok
        return ok

    def shutdown(self) -> None:
        """Flush and stop; safe to call more than once."""
        global _HANDLE
        with self._lock:
            if self._closed:
                return
            self._closed = True
        with self.faults.guard("shutdown"):
            if self.sampler is not None:
                self.sampler.stop()
            self._sink.flush(5.0)
            self.processor.shutdown()
            self._sink.close()
            if self.export is not None:
                self.export.close()
            if self._owns_provider:
                self.tracer_provider.shutdown()
        with _INIT_LOCK:
            if _HANDLE is self:
                _HANDLE = None
                ACTIVE.tracer = None
                ACTIVE.decisions = None

    def _after_fork(self) -> None:
        self.faults.after_fork()
        if self.export is not None:
            self.export.after_fork()
        self.processor.bank.after_fork()
        self.processor.after_fork()
        self._incidents.after_fork()
        self._sink.after_fork()
        if self.sampler is not None:
            self.sampler.bank.after_fork()
            self.sampler.after_fork()


_HANDLE: PerfSDK | None = None
_INIT_LOCK = threading.Lock()


def init(
    service_name: str | None = None,
    *,
    tracer_provider: TracerProvider | None = None,
    detectors: Sequence[str] = ("zscore",),
    threshold: float | None = None,
    on_anomaly: Callable[[Anomaly], Any] | None = None,
    max_span_names: int = 1000,
    confirm: int = 3,
    min_delta_ms: float = 1.0,
    min_ratio: float = 0.2,
    sample_resources: bool = True,
    resource_interval_s: float = 1.0,
    incident_window_s: float = 30.0,
    max_anomalies: int = 1000,
    meter_provider: Any = None,
    otlp_endpoint: str | None = None,
    export_dir: str | None = None,
    export_format: str = "arrow",
    redactor: Any = None,
) -> PerfSDK:
    """Start perfsdk in this process and return its handle.

    perfsdk adds its span processor to ``tracer_provider``, or to the
    application's global OpenTelemetry SDK ``TracerProvider`` if it already has
    one; otherwise it creates one (resource from the standard ``OTEL_*``
    variables, ``OTEL_SERVICE_NAME`` included, unless ``service_name`` is given)
    and makes it global. ``otlp_endpoint`` (or ``OTEL_EXPORTER_OTLP_ENDPOINT``
    with ``otlp_endpoint="env"``) also exports spans over OTLP/HTTP from a
    provider perfsdk created.

    Parameters
    ----------
    detectors
        Which detectors watch each span name: ``"zscore"``, ``"arima"``, or both.
    threshold
        Score threshold for them (default: each detector's own).
    on_anomaly
        Called with every ``Anomaly``, on perfsdk's notification thread.
    max_span_names
        Distinct span names with detectors of their own; the rest share one.
    confirm
        Consecutive anomalous spans of a name before an anomaly is emitted.
    min_delta_ms, min_ratio
        An anomalous span must also be a material change: at least
        ``min_delta_ms`` and ``min_ratio`` of the expected duration away from it.
    sample_resources, resource_interval_s
        Sample CPU, memory, threads and GC pauses every ``resource_interval_s``.
    incident_window_s
        Anomalies starting within this many seconds of each other form one incident.
    export_dir, export_format, redactor
        Write spans, anomalies and resource samples to Arrow (or Parquet)
        files under ``export_dir`` (see ``perfsdk.export``); span attributes
        pass through ``redactor`` (default: sensitive keys dropped).

    A second ``init`` while perfsdk is running returns the running handle.
    """
    global _HANDLE
    if detectors and isinstance(detectors, str):
        detectors = (detectors,)
    factories = span_detector_factories(list(detectors), threshold)
    if not factories:
        raise ValueError("detectors must name at least one of 'zscore', 'arima'")
    if threshold is not None and not (isinstance(threshold, (int, float)) and threshold > 0):
        raise ValueError(f"threshold must be a positive number, got {threshold!r}")
    if on_anomaly is not None and not callable(on_anomaly):
        raise ValueError(f"on_anomaly must be callable, got {on_anomaly!r}")
    for label, value, minimum in (("max_span_names", max_span_names, 1), ("confirm", confirm, 1),
                                  ("max_anomalies", max_anomalies, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{label} must be an integer >= {minimum}, got {value!r}")
    for label, number in (("min_delta_ms", min_delta_ms), ("min_ratio", min_ratio),
                          ("incident_window_s", incident_window_s)):
        if isinstance(number, bool) or not isinstance(number, (int, float)) or not number >= 0:
            raise ValueError(f"{label} must be a number >= 0, got {number!r}")
    with _INIT_LOCK:
        if _HANDLE is not None:
            log.warning("perfsdk.init() called again; returning the running handle")
            return _HANDLE
        faults = Faults()
        span_bank = DetectorBank(factories, max_names=max_span_names, confirm=confirm,
                                 min_delta=min_delta_ms, min_ratio=min_ratio)
        provider, owns = _provider(service_name, tracer_provider, otlp_endpoint, faults)
        service = str(provider.resource.attributes.get("service.name", "unknown_service"))
        export = Export(export_dir, service, export_format, redactor, faults) if export_dir else None
        processor_box: list[PerfSpanProcessor] = []
        incidents = IncidentTracker(lambda name: processor_box[0].ancestors(name), incident_window_s)
        sink = AnomalySink(incidents, faults, on_anomaly, meter_provider, max_anomalies,
                           writer=export.anomalies if export else None, service=service)
        processor = PerfSpanProcessor(span_bank, sink, faults)
        processor_box.append(processor)
        provider.add_span_processor(processor)
        if export is not None:
            provider.add_span_processor(export.span_processor)
        sampler = None
        if sample_resources:
            resource_bank = DetectorBank(resource_detector_factories(threshold), max_names=16, confirm=2)
            sampler = ResourceSampler(resource_bank, sink, faults, resource_interval_s,
                                      writer=export.resources if export else None, service=service)
            sampler.start()
        _HANDLE = PerfSDK(provider, owns, processor, sink, sampler, faults, incidents, export)
        ACTIVE.tracer = provider.get_tracer("perfsdk", __version__)
        ACTIVE.decisions = export.add_decision if export is not None else None
        return _HANDLE


def _provider(
    service_name: str | None, given: TracerProvider | None, otlp_endpoint: str | None, faults: Faults
) -> tuple[TracerProvider, bool]:
    if given is not None:
        if not hasattr(given, "add_span_processor"):
            raise ValueError("tracer_provider must be an OpenTelemetry SDK TracerProvider")
        return given, False
    current = trace.get_tracer_provider()
    if hasattr(current, "add_span_processor"):
        return current, False  # type: ignore[return-value]
    attributes = {"service.name": service_name} if service_name else {}
    provider = TracerProvider(resource=Resource.create(attributes))
    if otlp_endpoint:
        with faults.guard("OTLP exporter set-up"):
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            endpoint = None if otlp_endpoint == "env" else otlp_endpoint
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    trace.set_tracer_provider(provider)
    return provider, True


def _after_fork_in_child() -> None:
    handle = _HANDLE
    if handle is not None and not handle._closed:
        handle._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
