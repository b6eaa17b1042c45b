"""ArrowExport: the Arrow files ``perfsdk.init(export_dir=...)`` writes.

Spans (through OpenTelemetry's ``BatchSpanProcessor`` and perfsdk's
``ArrowSpanExporter``), anomalies, resource samples, and the decisions of
every adaptive controller in the process, each a table of its own.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.trace.export import BatchSpanProcessor

from perfsdk._runtime import Faults, suppressed
from perfsdk.adapt.controller import DECISION_DELIVERY
from perfsdk.export import ArrowSpanExporter, TableWriter, decision_row

__all__ = ["ArrowExport"]


class ArrowExport:
    """The writers of one ``export_dir``; flushed and closed with the SDK."""

    def __init__(self, directory: str, service: str, fmt: str, redactor: Any, faults: Faults) -> None:
        self.spans = ArrowSpanExporter(directory, format=fmt, redactor=redactor, faults=faults)
        self.span_processor = BatchSpanProcessor(self.spans)
        self.anomalies = TableWriter(directory, "anomalies", service, format=fmt, batch_rows=64)
        self.resources = TableWriter(directory, "resources", service, format=fmt, batch_rows=256)
        self.decisions = TableWriter(directory, "decisions", service, format=fmt, batch_rows=64)
        self.service = service
        self.faults = faults

    def add_decision(self, decision: Any) -> None:
        """A controller's decision as a row of the decisions table (called on the decisions worker)."""
        with self.faults.guard("decision export"):
            self.decisions.add(decision_row(decision, self.service))

    def flush(self, timeout_millis: int) -> bool:
        ok = self.span_processor.force_flush(timeout_millis) and self.spans.force_flush()
        ok = DECISION_DELIVERY.flush(timeout_millis / 1000.0) and ok  # decisions still on their way to the table
        with suppressed():
            for writer in (self.anomalies, self.resources, self.decisions):
                with self.faults.guard("export flush"):
                    writer.flush()
        return ok

    def close(self) -> None:
        self.span_processor.shutdown()  # flushes the exporter and publishes its files
        DECISION_DELIVERY.flush(5.0)
        with suppressed():
            for writer in (self.anomalies, self.resources, self.decisions):
                with self.faults.guard("export close"):
                    writer.close()
