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
from operator import attrgetter
from typing import Any, Callable, Sequence

import numpy as np
import pyarrow as pa
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, StatusCode

from perfsdk._runtime import Faults, at_fork
from perfsdk.export.redact import Redactor
from perfsdk.export.schema import SPANS, STRING_MAP, TS
from perfsdk.export.options import check_options
from perfsdk.export.writer import RotatingWriter

__all__ = ["ArrowSpanExporter", "spans_to_batch"]

log = logging.getLogger("perfsdk.export")


def spans_to_batch(spans: Sequence[ReadableSpan], service: str, redactor: Redactor) -> pa.RecordBatch:
    """One record batch of the SPANS table from OTel spans (redacted).

    The SDK's own spans are read through their fields (its properties cost a
    function call each, 13 of them a span); any other ``ReadableSpan`` through
    the public API.
    """
    getters = _SDK_FIELDS if all(type(s) is ReadableSpan for s in spans) else _PUBLIC_FIELDS
    (contexts, parents, start_times, end_times, statuses, scopes, names, kinds,
     attributes) = (list(map(get, spans)) for get in getters)  # one column at a time, in C
    starts = np.array([t or 0 for t in start_times], dtype=np.int64)
    ends = np.array([t or 0 for t in end_times], dtype=np.int64)
    columns = [
        _hex_ids(*_trace_words(contexts)),
        _hex_ids([0 if c is None else c.span_id for c in contexts]),
        _hex_ids([0 if p is None else p.span_id for p in parents], valid=[p is not None for p in parents]),
        pa.array(names, pa.string()),
        pa.array([_KIND_NAMES[k] for k in kinds], pa.string()),
        pa.array(starts, TS),
        pa.array(ends, TS),
        pa.array((ends - starts) / 1e6, pa.float64()),
        pa.array([_STATUS_NAMES[st.status_code] for st in statuses], pa.string()),
        pa.array([st.description for st in statuses], pa.string()),
        pa.array([service] * len(spans), pa.string()),
        pa.array([None if sc is None else sc.name for sc in scopes], pa.string()),
        pa.array([list(redactor(a).items()) if a else [] for a in attributes], STRING_MAP),
    ]
    return pa.RecordBatch.from_arrays(columns, schema=SPANS)


_FIELDS = ("context", "parent", "start_time", "end_time", "status", "instrumentation_scope", "name", "kind",
           "attributes")
_PUBLIC_FIELDS = [attrgetter(name) for name in _FIELDS]
_SDK_FIELDS = [attrgetter(f"_{name}") for name in _FIELDS]  # the properties' own fields
_LOW64 = (1 << 64) - 1


def _trace_words(contexts: Sequence[Any]) -> tuple[list[int], list[int]]:
    """128-bit trace ids as their high and low 64-bit words."""
    ids = [0 if c is None else c.trace_id for c in contexts]
    return [i >> 64 for i in ids], [i & _LOW64 for i in ids]


def _hex_ids(*words: list[int], valid: list[bool] | None = None) -> pa.Array:
    """Ids as lowercase hex strings (16 characters per 64-bit word), built in C: formatting
    ids one by one in Python was the largest cost of a span's row."""
    n = len(words[0])
    packed = np.empty((n, len(words)), dtype=">u8")
    for column, values in enumerate(words):
        packed[:, column] = np.array(values, dtype=np.uint64)
    width = 16 * len(words)
    data = pa.py_buffer(packed.tobytes().hex().encode())
    offsets = pa.py_buffer(np.arange(0, width * (n + 1), width, dtype=np.int32))
    nulls = None
    if valid is not None and not all(valid):
        nulls = pa.py_buffer(np.packbits(np.array(valid, dtype=bool), bitorder="little"))
    return pa.StringArray.from_buffers(n, offsets, data, nulls)


_KIND_NAMES = {kind: kind.name for kind in SpanKind}  # an enum's .name is a descriptor call
_STATUS_NAMES = {code: code.name for code in StatusCode}


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
