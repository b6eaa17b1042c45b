"""Which OpenTelemetry ``TracerProvider`` perfsdk joins, or the one it creates, and where its
processor goes in it."""

from __future__ import annotations

import logging
import weakref

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import (
    ConcurrentMultiSpanProcessor, SpanProcessor, SynchronousMultiSpanProcessor, TracerProvider,
)

from perfsdk._runtime import Faults

log = logging.getLogger("perfsdk")

__all__ = ["add_first", "tracer_provider"]

#: The providers perfsdk made: one found global again is a former ``init()``'s, not the application's.
_MADE: weakref.WeakSet[TracerProvider] = weakref.WeakSet()


def tracer_provider(
    service_name: str | None, given: TracerProvider | None, otlp_endpoint: str | None, faults: Faults
) -> tuple[TracerProvider, bool]:
    """The provider to add perfsdk's processors to, and whether perfsdk created it.

    ``given``, else the application's global SDK provider, else a new one
    (resource from the ``OTEL_*`` variables unless ``service_name`` is given,
    OTLP/HTTP export if ``otlp_endpoint``). A new one is *not* made global here:
    ``init`` does that once everything else stood up, so a failed ``init``
    leaves nothing behind.
    """
    if given is not None:
        if not hasattr(given, "add_span_processor"):
            raise TypeError(f"tracer_provider must be an OpenTelemetry SDK TracerProvider, got {given!r}")
        return given, False
    current = trace.get_tracer_provider()
    if hasattr(current, "add_span_processor"):
        if current in _MADE:
            wanted = current.resource.attributes.get("service.name")  # type: ignore[attr-defined]
            if (service_name is not None and service_name != wanted) or otlp_endpoint is not None:
                log.warning("perfsdk: init() after shutdown(): OpenTelemetry sets the global TracerProvider "
                            "once, so perfsdk joins the one an earlier init() made (service.name %r); "
                            "service_name and otlp_endpoint cannot be applied to it (pass tracer_provider= "
                            "for another)", wanted)
        elif service_name is not None or otlp_endpoint is not None:
            log.warning("perfsdk: the application already has an OpenTelemetry SDK TracerProvider; "
                        "perfsdk joins it, and service_name/otlp_endpoint (which configure a provider "
                        "perfsdk creates) are not applied")
        return current, False  # type: ignore[return-value]
    attributes = {"service.name": service_name} if service_name else {}
    provider = TracerProvider(resource=Resource.create(attributes))
    if otlp_endpoint:
        with faults.guard("OTLP exporter set-up"):
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            endpoint = None if otlp_endpoint == "env" else otlp_endpoint
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    _MADE.add(provider)
    return provider, True


def add_first(provider: TracerProvider, processor: SpanProcessor, faults: Faults) -> bool:
    """Add perfsdk's ``processor`` to ``provider`` ahead of the processors already there: True if
    it went first.

    OpenTelemetry's ``SynchronousMultiSpanProcessor`` calls a provider's processors one after the
    other, in the order they were added, and stops at the first that raises: behind an
    application's processor that raised in ``on_end``, perfsdk's never saw the span -- it vanished
    from detection and from the Arrow files, without a count. perfsdk's own processor never raises,
    so running first changes nothing for the ones behind it: an application's processor that
    raises does so as before, to whoever ended the span, and the processors behind it are skipped
    as before.

    OpenTelemetry offers no public way to choose the place: the processor is added the public way,
    then moved to the front of the multi-processor's ``_span_processors`` tuple under its ``_lock``
    (as ``add_span_processor`` itself changes it). Where that layout is not found (another
    OpenTelemetry version, a provider of the application's own), it stays where it was added, as
    before, counted in ``faults`` (``span processor order``) and logged once. (With a
    ``ConcurrentMultiSpanProcessor`` every processor sees every span: it is left where it was.)
    """
    provider.add_span_processor(processor)
    multi = getattr(provider, "_active_span_processor", None)
    if isinstance(multi, ConcurrentMultiSpanProcessor):
        return False
    try:
        if not (isinstance(multi, SynchronousMultiSpanProcessor)
                and type(multi).on_end is SynchronousMultiSpanProcessor.on_end):
            raise TypeError(f"the provider's span processors are called by {type(multi).__name__}, not "
                            "OpenTelemetry's SynchronousMultiSpanProcessor")
        with multi._lock:
            current = multi._span_processors
            if not isinstance(current, tuple) or not any(p is processor for p in current):
                raise TypeError(f"SynchronousMultiSpanProcessor._span_processors is {type(current).__name__}, "
                                "not the tuple perfsdk's processor was added to")
            multi._span_processors = (processor, *(p for p in current if p is not processor))
        return True
    except Exception as exc:  # (an OpenTelemetry version whose layout differs): added, not first
        faults.record("span processor order", RuntimeError(
            f"perfsdk's span processor could not be put first ({exc}): a processor before it that raises in "
            "on_end hides spans from perfsdk"))
        return False
