"""Which OpenTelemetry ``TracerProvider`` perfsdk joins, or the one it creates."""

from __future__ import annotations

import logging
import weakref

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from perfsdk._runtime import Faults

log = logging.getLogger("perfsdk")

__all__ = ["tracer_provider"]

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
