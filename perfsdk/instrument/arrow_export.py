"""ArrowExport: the Arrow files ``perfsdk.init(export_dir=...)`` writes.

Spans, anomalies, resource samples, and the decisions of every adaptive
controller in the process, each a table of its own.

Spans do not go through OpenTelemetry's ``BatchSpanProcessor``, whose full
queue drops spans with one log line and nothing counted. perfsdk's span
processor hands each ended span to this export's bounded queue, as a row of
plain values (``span_row``: a queued span would keep a dozen objects alive for
the garbage collector to scan); a background worker writes them as Arrow batches.
When the queue is full the policy applies: ``"drop"`` (the default) counts the
span in ``stats()["export"]["spans_dropped"]``, adds it to the
``perfsdk.export.spans_dropped`` metric, logs (at most every 10 s) and records
the running count in the next file's metadata (``perfsdk.spans_dropped``), so
an analyst sees the gap; ``"block"`` waits up to ``block_timeout_s`` for room
first. Nothing is lost in silence; ``force_flush()`` and ``shutdown()`` write
everything queued.

The writer waits for large batches (8,192 spans, or one second): each batch
hands the GIL to pyarrow and back a few dozen times, and every hand-back can
make the application's threads wait (CPython's convoy effect), so fewer,
larger batches cost the application less.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from opentelemetry import metrics

from perfsdk._runtime import DECISION_DELIVERY, Faults, Worker, suppressed
from perfsdk._version import __version__
from perfsdk.export import ArrowSpanExporter, SpanRow, TableWriter, decision_row, span_row
from perfsdk.export.options import SPAN_BYTES_ESTIMATE

__all__ = ["ArrowExport"]

log = logging.getLogger("perfsdk.export")


class ArrowExport:
    """The writers of one ``export_dir``; flushed and closed with the SDK.

    Parameters
    ----------
    max_queue_bytes
        The span queue's bound, in bytes (``SPAN_BYTES_ESTIMATE`` a span): 64 MiB,
        about 65,000 spans, holds a burst of many thousand spans a second while
        the writer catches up.
    on_full, block_timeout_s
        ``"drop"`` (counted, logged, recorded) or ``"block"`` (wait that long for
        room, then drop and count) when the queue is full.

    ``perfsdk.init`` checks these, as it checks all its arguments, before making one.
    """

    def __init__(self, directory: str, service: str, fmt: str, redactor: Any, faults: Faults, *,
                 max_queue_bytes: int = 64 * 2**20, on_full: str = "drop", block_timeout_s: float = 0.1,
                 meter_provider: Any = None) -> None:
        self.spans = ArrowSpanExporter(directory, format=fmt, redactor=redactor, faults=faults)
        self.spans.file_metadata = lambda: {"perfsdk.spans_dropped": str(self.span_queue.dropped)}
        self.span_queue: Worker[SpanRow] = Worker(
            "perfsdk-span-export", self._write_spans, max_queue=max_queue_bytes // SPAN_BYTES_ESTIMATE,
            max_batch=16384, min_batch=8192, linger_s=1.0, faults=faults)  # few, large batches: see above
        self.block_timeout_s = block_timeout_s if on_full == "block" else 0.0
        self.anomalies = TableWriter(directory, "anomalies", service, format=fmt, batch_rows=64)
        self.resources = TableWriter(directory, "resources", service, format=fmt, batch_rows=256)
        self.decisions = TableWriter(directory, "decisions", service, format=fmt, batch_rows=64)
        self.service = service
        self.faults = faults
        meter = (meter_provider or metrics.get_meter_provider()).get_meter("perfsdk", __version__)
        self._dropped_metric = meter.create_counter(
            "perfsdk.export.spans_dropped", unit="{span}",
            description="Spans perfsdk's Arrow export dropped because its queue was full")
        self._last_drop_log = 0.0
        self._drop_lock = threading.Lock()

    # -- spans ------------------------------------------------------------------------
    def enqueue(self, span: Any) -> None:
        """Queue an ended span's row (on the application's thread: an append, or a counted drop)."""
        if not self.span_queue.submit(span_row(span), self.block_timeout_s):
            self._dropped_span()

    def _dropped_span(self) -> None:
        with self.faults.guard("span export drop accounting"):
            self._dropped_metric.add(1)
            now = time.monotonic()
            with self._drop_lock:
                due = now - self._last_drop_log >= 10.0
                if due:
                    self._last_drop_log = now
            if due:
                log.warning("perfsdk: the span export queue is full (%d spans); %d spans dropped so far, "
                            "counted in stats()['export']['spans_dropped'] and in the files' metadata",
                            self.span_queue.max_queue, self.span_queue.dropped)

    def _write_spans(self, rows: list[SpanRow]) -> None:
        with suppressed():  # perfsdk's own writes are not the application's work
            self.spans.write_rows(rows)

    def stats(self) -> dict[str, Any]:
        return {**self.spans.stats(), "spans_dropped": self.span_queue.dropped,
                "spans_queued": self.span_queue.stats()["queued"], "max_queued_spans": self.span_queue.max_queue}

    # -- the other tables ---------------------------------------------------------------
    def add_decision(self, decision: Any) -> None:
        """A controller's decision as a row of the decisions table (called on the decisions worker)."""
        with self.faults.guard("decision export"):
            self.decisions.add(decision_row(decision, self.service))

    def flush(self, timeout_millis: int) -> bool:
        timeout_s = timeout_millis / 1000.0
        ok = self.span_queue.flush(timeout_s) and self.spans.force_flush()
        ok = DECISION_DELIVERY.flush(timeout_s) and ok  # decisions still on their way to the table
        with suppressed():
            for writer in (self.anomalies, self.resources, self.decisions):
                with self.faults.guard("export flush"):
                    writer.flush()
        return ok

    def close(self) -> None:
        self.span_queue.shutdown(30.0)  # writes every queued span first
        self.spans.shutdown()  # publishes its files
        DECISION_DELIVERY.flush(5.0)
        with suppressed():
            for writer in (self.anomalies, self.resources, self.decisions):
                with self.faults.guard("export close"):
                    writer.close()
