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
from operator import itemgetter
from typing import Any, Callable, Sequence

import numpy as np
import pyarrow as pa
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, StatusCode

from perfsdk._runtime import Faults, at_fork
from perfsdk.export.columns import column, strings, validity
from perfsdk.export.redact import Redactor
from perfsdk.export.schema import SPANS, STRING_MAP, TS
from perfsdk.export.options import check_options
from perfsdk.export.writer import RotatingWriter

__all__ = ["ArrowSpanExporter", "SpanRow", "public_span_row", "row_attributes", "rows_to_batch", "span_row",
           "spans_to_batch"]

log = logging.getLogger("perfsdk.export")


#: trace id, span id, parent span id (or None), name, kind, start ns, end ns, status code,
#: status message, scope name, the number of attributes (None for none), service name, then
#: the attributes' keys, then their values: plain values in one flat tuple (see ``span_row``;
#: ``row_attributes`` gives the dict back).
SpanRow = tuple[Any, ...]
_FIELDS = 12  # the fixed fields before the attributes


def span_row(span: ReadableSpan) -> SpanRow:
    """The values an ended span's Arrow row is made of.

    perfsdk's export queues these rows, not the spans, and a row is one flat tuple
    of plain values (ints, strings, None; the attributes' keys and values follow the
    fixed fields): the garbage collector stops tracking such a tuple at its first
    young collection, and it is one allocation a span. A queued span keeps a dozen
    tracked objects alive, and so does a row holding a dict (CPython never untracks
    a tuple with a dict in it): they are scanned again and again, promoted to the
    oldest generation, and bring on full collections. The SDK's spans are read
    through their fields, which costs the application's thread a fraction of their
    properties (``SpanContext`` is a tuple of trace id, span id, ...); any other
    ``ReadableSpan`` through the public API. ``tests/test_export.py`` checks that
    both ways agree.
    """
    sdk: Any = span  # its private fields, checked against the public API by the tests
    try:
        context, parent, status, scope, attributes = (
            sdk._context, sdk._parent, sdk._status, sdk._instrumentation_scope, sdk._attributes)
        attributes = None if attributes is None else attributes._dict
        return (context[0], context[1], None if parent is None else parent[1], sdk._name,
                _NAME_OF[id(sdk._kind)], sdk._start_time or 0, sdk._end_time or 0,
                _NAME_OF[id(status._status_code)], status._description,
                None if scope is None else scope._name, len(attributes) if attributes else None,
                _service_name(sdk._resource), *(attributes or ()), *(attributes.values() if attributes else ()))
    except Exception:  # not the SDK's span (or a future SDK): what the public API says
        return public_span_row(span)


def public_span_row(span: ReadableSpan) -> SpanRow:
    """``span_row`` through the public ``ReadableSpan`` API only."""
    context, parent, status, scope = span.context, span.parent, span.status, span.instrumentation_scope
    attributes = dict(span.attributes) if span.attributes else {}
    return (0 if context is None else context.trace_id, 0 if context is None else context.span_id,
            None if parent is None else parent.span_id, span.name, span.kind.name, span.start_time or 0,
            span.end_time or 0, status.status_code.name, status.description,
            None if scope is None else scope.name, len(attributes) or None,
            _service_name(span.resource), *attributes, *attributes.values())


def row_attributes(row: SpanRow) -> dict[str, Any]:
    """A span row's attributes as a dict."""
    n = row[10] or 0
    return dict(zip(row[_FIELDS:_FIELDS + n], row[_FIELDS + n:]))


_NAME_OF = {id(member): member.name for member in (*SpanKind, *StatusCode)}  # enum hashes run in Python
_last_resource: tuple[Any, str] = (None, "unknown_service")  # a provider's spans share one resource


def _service_name(resource: Any) -> str:
    """The ``service.name`` of a span's resource (the last resource's, remembered)."""
    global _last_resource
    last = _last_resource  # one read and one write of a tuple: safe without a lock
    if last[0] is resource:
        return last[1]
    name = "unknown_service" if resource is None else str(
        resource.attributes.get("service.name", "unknown_service"))
    _last_resource = (resource, name)
    return name


def rows_to_batch(rows: Sequence[SpanRow], service: str, redactor: Redactor) -> pa.RecordBatch:
    """One record batch of the SPANS table from span rows (``span_row``), attributes redacted.

    Each column is built for the whole batch at once (``zip``, numpy, the hex
    ids in C), from buffers (``export.columns``: ``pa.array`` would import pandas
    into the host).
    """
    # A column at a time (``zip(*rows)`` would make an iterator a row, all alive at once: one
    # more object a span for the collector's count, which is what starts young collections).
    (trace_ids, span_ids, parent_ids, names, kinds, start_times, end_times, statuses, messages,
     scopes) = (list(map(itemgetter(k), rows)) for k in range(10))
    starts = np.array(start_times, dtype=np.int64)
    ends = np.array(end_times, dtype=np.int64)
    columns = [
        _hex_ids([i >> 64 for i in trace_ids], [i & _LOW64 for i in trace_ids]),
        _hex_ids(span_ids),
        _hex_ids([p or 0 for p in parent_ids], valid=[p is not None for p in parent_ids]),
        strings(names),
        strings(kinds),
        column(starts, TS),
        column(ends, TS),
        column((ends - starts) / 1e6, pa.float64()),
        strings(statuses),
        strings(messages),
        strings([service] * len(rows)),
        strings(scopes),
        _attributes_column(rows, redactor),
    ]
    return pa.RecordBatch.from_arrays(columns, schema=SPANS)


def _attributes_column(rows: Sequence[SpanRow], redactor: Redactor) -> pa.Array:
    """The rows' redacted attributes as one map column, built a row at a time into two
    flat lists: no dict a row stays alive meanwhile (each would be one more object for
    the collector's generations)."""
    keys: list[str] = []
    texts: list[str] = []
    ends = np.empty(len(rows) + 1, dtype=np.int32)
    ends[0] = 0
    own_call = type(redactor).__call__ is Redactor.__call__  # a subclass's __call__ is respected
    for i, row in enumerate(rows):
        n = row[10]
        if n:
            items = zip(row[_FIELDS:_FIELDS + n], row[_FIELDS + n:])
            if own_call:
                redactor.extend(items, keys, texts)
            else:
                kept = redactor(dict(items))
                keys.extend(kept)
                texts.extend(kept.values())
        ends[i + 1] = len(keys)
    offsets = pa.Array.from_buffers(pa.int32(), len(ends), [None, pa.py_buffer(ends)])
    return pa.MapArray.from_arrays(offsets, strings(keys), strings(texts), type=STRING_MAP)


def spans_to_batch(spans: Sequence[ReadableSpan], service: str, redactor: Redactor) -> pa.RecordBatch:
    """One record batch of the SPANS table from OTel spans (redacted)."""
    return rows_to_batch([span_row(s) for s in spans], service, redactor)


_LOW64 = (1 << 64) - 1


def _hex_ids(*words: Sequence[int], valid: list[bool] | None = None) -> pa.Array:
    """Ids as lowercase hex strings (16 characters per 64-bit word), built in C: formatting
    ids one by one in Python was the largest cost of a span's row."""
    n = len(words[0])
    packed = np.empty((n, len(words)), dtype=">u8")
    for position, values in enumerate(words):
        packed[:, position] = np.array(values, dtype=np.uint64)
    width = 16 * len(words)
    data = pa.py_buffer(packed.tobytes().hex().encode())
    offsets = pa.py_buffer(np.arange(0, width * (n + 1), width, dtype=np.int32))
    return pa.StringArray.from_buffers(n, offsets, data, None if valid is None else validity(valid))


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
        return self.write_rows([span_row(span) for span in spans])

    def write_rows(self, rows: Sequence[SpanRow]) -> SpanExportResult:
        """Write span rows (``span_row``), one batch per service."""
        if self._shutdown:
            return SpanExportResult.FAILURE
        try:
            by_service: dict[str, list[SpanRow]] = defaultdict(list)
            for row in rows:
                by_service[row[11]].append(row)
            with self._lock:
                for service, group in by_service.items():
                    self._writer(service).write(rows_to_batch(group, service, self.redactor))
                    self.spans_exported += len(group)
            return SpanExportResult.SUCCESS
        except Exception as exc:
            self.spans_failed += len(rows)
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
