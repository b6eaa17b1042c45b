"""ArrowSpanExporter: OpenTelemetry spans to rotated Arrow (or Parquet) files.

A real OTel ``SpanExporter``: put it behind a ``BatchSpanProcessor`` and
spans are written off the application's threads, a batch at a time. Columns
are built for the whole batch at once (list comprehensions and numpy), never
row by row through pyarrow.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from typing import Callable, Sequence

import numpy as np
import pyarrow as pa
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from perfsdk._runtime import Faults, at_fork
from perfsdk.export.redact import Redactor
from perfsdk.export.schema import SPANS, STRING_MAP, TS
from perfsdk.export.options import check_options
from perfsdk.export.writer import RotatingWriter

__all__ = ["ArrowSpanExporter", "spans_to_batch"]

log = logging.getLogger("perfsdk.export")


def spans_to_batch(spans: Sequence[ReadableSpan], service: str, redactor: Redactor) -> pa.RecordBatch:
    """One record batch of the SPANS table from OTel spans (redacted)."""
    contexts = [s.context for s in spans]
    parents = [s.parent for s in spans]
    starts = np.fromiter((s.start_time or 0 for s in spans), dtype=np.int64, count=len(spans))
    ends = np.fromiter((s.end_time or 0 for s in spans), dtype=np.int64, count=len(spans))
    statuses = [s.status for s in spans]
    scopes = [s.instrumentation_scope for s in spans]
    columns = [
        pa.array([f"{c.trace_id:032x}" for c in contexts], pa.string()),
        pa.array([f"{c.span_id:016x}" for c in contexts], pa.string()),
        pa.array([None if p is None else f"{p.span_id:016x}" for p in parents], pa.string()),
        pa.array([s.name for s in spans], pa.string()),
        pa.array([s.kind.name for s in spans], pa.string()),
        pa.array(starts, TS),
        pa.array(ends, TS),
        pa.array((ends - starts) / 1e6, pa.float64()),
        pa.array([st.status_code.name for st in statuses], pa.string()),
        pa.array([st.description for st in statuses], pa.string()),
        pa.array([service] * len(spans), pa.string()),
        pa.array([None if sc is None else sc.name for sc in scopes], pa.string()),
        pa.array([list(redactor(s.attributes).items()) for s in spans], STRING_MAP),
    ]
    return pa.RecordBatch.from_arrays(columns, schema=SPANS)


class ArrowSpanExporter(SpanExporter):
    """Writes spans to ``<directory>/spans/service=<name>/date=<day>/`` files.

    Parameters
    ----------
    directory
        Root of the dataset (created if missing).
    format
        ``"arrow"`` (IPC files, default) or ``"parquet"``.
    redactor
        Attribute policy; default ``Redactor()`` drops sensitive keys.
    max_bytes, max_age_s
        Rotate files at this size or age.

    Failures (an unwritable directory, a full disk) are logged once, counted
    in ``stats()``, and answered with ``SpanExportResult.FAILURE``: the
    application goes on.

    Examples
    --------
    >>> import tempfile
    >>> from opentelemetry.sdk.trace import TracerProvider
    >>> from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    >>> from perfsdk.export import read
    >>> root = tempfile.mkdtemp()
    >>> exporter = ArrowSpanExporter(root)
    >>> provider = TracerProvider()
    >>> provider.add_span_processor(SimpleSpanProcessor(exporter))
    >>> with provider.get_tracer("demo").start_as_current_span("GET /cart"):
    ...     pass
    >>> provider.shutdown()
    >>> read(root).column("name").to_pylist()
    ['GET /cart']
    """

    def __init__(
        self, directory: str, *, format: str = "arrow", redactor: Redactor | None = None,
        max_bytes: int = 64 * 2**20, max_age_s: float = 60.0, faults: Faults | None = None,
    ) -> None:
        self.directory = directory
        self.format = format
        self.redactor = redactor or Redactor()
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self.faults = faults or Faults()
        self.spans_exported = 0
        self.spans_failed = 0
        self._writers: dict[str, RotatingWriter] = {}
        self._lock = threading.Lock()
        self._shutdown = False
        #: More metadata for each new file (perfsdk's export records its drops so far there).
        self.file_metadata: Callable[[], dict[str, str]] | None = None
        check_options(format, max_bytes, max_age_s)
        at_fork(self._after_fork)

    def _writer(self, service: str) -> RotatingWriter:
        writer = self._writers.get(service)
        if writer is None:
            writer = self._writers[service] = RotatingWriter(
                self.directory, "spans", SPANS, service, self.format, self.max_bytes, self.max_age_s
            )
            writer.file_metadata = self.file_metadata
        return writer

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            return SpanExportResult.FAILURE
        try:
            by_service: dict[str, list[ReadableSpan]] = defaultdict(list)
            for span in spans:
                by_service[str(span.resource.attributes.get("service.name", "unknown_service"))].append(span)
            with self._lock:
                for service, group in by_service.items():
                    self._writer(service).write(spans_to_batch(group, service, self.redactor))
                    self.spans_exported += len(group)
            return SpanExportResult.SUCCESS
        except Exception as exc:
            self.spans_failed += len(spans)
            self.faults.record("arrow span export", exc)
            return SpanExportResult.FAILURE

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Publish the open files, so everything exported so far is readable."""
        try:
            with self._lock:
                for writer in self._writers.values():
                    writer.flush()
            return True
        except Exception as exc:
            self.faults.record("arrow span export flush", exc)
            return False

    def shutdown(self) -> None:
        if not self._shutdown:
            self.force_flush()
            self._shutdown = True

    def _after_fork(self) -> None:
        """In a forked child: a fresh lock (each writer leaves the parent's open file alone)."""
        self._lock = threading.Lock()

    def stats(self) -> dict[str, object]:
        return {
            "spans_exported": self.spans_exported,
            "spans_failed": self.spans_failed,
            "files_written": sum(w.files_written for w in self._writers.values()),
            "attributes_redacted": self.redactor.dropped,
            "faults": self.faults.snapshot(),
        }
