"""ArrowSpanExporter: OpenTelemetry spans to rotated Arrow (or Parquet) files.

A real OTel ``SpanExporter``: put it behind a ``BatchSpanProcessor`` and
spans are written off the application's threads, a batch at a time. perfsdk's
own export skips OpenTelemetry's queue: its processor stores each ended span
in column buffers (``perfsdk._native._spancols``) and the writer turns whole
chunks of them into a record batch (``columns_to_batch``), in C but for the
attributes' redaction.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Callable, Sequence

import numpy as np
import pyarrow as pa
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from perfsdk._native import KIND_NAMES, STATUS_NAMES, SpanColumns, kept_attributes, take_strings
from perfsdk._runtime import TRACED_FUNCTIONS, Faults, Worker, at_fork, held_here, owned_lock
from perfsdk.export.columns import column, strings, validity
from perfsdk.export.redact import Redactor
from perfsdk.export.schema import FUNCTIONS_KEY, SPANS, STRING_MAP, TS
from perfsdk.export.options import check_options
from perfsdk.export.writer import RotatingWriter

__all__ = ["ArrowSpanExporter", "SpanColumns", "columns_to_batch", "spans_to_columns"]

log = logging.getLogger("perfsdk.export")

PUBLISH_CHECK_S = 1.0  # how often open files are checked for max_age_s (a file is published this late at most)


def spans_to_columns(spans: Sequence[ReadableSpan],
                     unreadable: Callable[[ReadableSpan, Exception], None] | None = None) -> SpanColumns:
    """Ended spans as one chunk of columns (what ``columns_to_batch`` writes). A span that cannot be
    stored (a name whose ``__str__`` raises) raises, unless ``unreadable`` is given: it is then told,
    and the span left out (a span that cannot be stored leaves no trace in the chunk)."""
    chunk = SpanColumns(max(1, len(spans)))
    for span in spans:
        try:
            chunk.append(span)
        except Exception as exc:
            if unreadable is None:
                raise
            unreadable(span, exc)
    return chunk


def columns_to_batch(chunks: Sequence[SpanColumns], redactor: Redactor) -> pa.RecordBatch:
    """One record batch of the SPANS table from chunks of span columns, attributes, names and
    status messages redacted.

    Every column but the attributes is built in C: numpy slices of the chunks'
    buffers, hex ids from their bytes, and each string column a ``take`` from the
    small table of distinct values (from buffers, see ``export.columns``: ``pa.array``
    would import pandas into the host).
    """
    chunks = [chunk for chunk in chunks if chunk.size]
    n = sum(chunk.size for chunk in chunks)

    def joined(field: str, shift: Sequence[int] | None = None) -> np.ndarray:
        parts = [getattr(chunk, field)[:chunk.size] for chunk in chunks]
        if shift is not None:  # codes into the joined string table
            parts = [np.where(part >= 0, part + offset, -1) for part, offset in zip(parts, shift)]
        return np.concatenate(parts) if len(parts) != 1 else parts[0]

    table_offsets = np.cumsum([0] + [len(chunk.strings) for chunk in chunks[:-1]]).tolist()
    table = [text.encode("utf-8", "replace") for chunk in chunks for text in chunk.strings]
    # a span named after a raw request target carries its query: names are redacted as free text
    # (each string a name uses once; the service and scope columns keep theirs as they are)
    name_codes = joined("name", table_offsets)
    texts = [text for chunk in chunks for text in chunk.strings]
    names = list(table)
    for code in set(name_codes.tolist()) - {-1}:
        names[code] = redactor.message(texts[code]).encode("utf-8", "replace")
    starts, ends = joined("start"), joined("end")
    has_parent = joined("has_parent").view(bool)
    columns = [
        _hex_ids(joined("trace_hi"), joined("trace_lo")),
        _hex_ids(joined("span_id")),
        _hex_ids(joined("parent_id"), valid=has_parent),
        _take(names, name_codes),
        _take(_KINDS, joined("kind")),
        column(starts, TS),
        column(ends, TS),
        column((ends - starts) / 1e6, pa.float64()),
        _take(_STATUSES, joined("status")),
        _messages(chunks, n, redactor),
        _take(table, joined("service", table_offsets)),
        _take(table, joined("scope", table_offsets)),
        _attributes_column(chunks, redactor),
    ]
    return pa.RecordBatch.from_arrays(columns, schema=SPANS)


_KINDS = [kind.encode() for kind in KIND_NAMES]
_STATUSES = [status.encode() for status in STATUS_NAMES]


def _take(table: list[bytes], codes: np.ndarray) -> pa.Array:
    """The string column ``table[codes]`` (null where a code is -1)."""
    offsets, data, valid = take_strings(table, np.ascontiguousarray(codes, dtype=np.int32))
    nulls = None if valid is None else validity(valid)
    return pa.StringArray.from_buffers(len(codes), pa.py_buffer(offsets), pa.py_buffer(data), nulls)


def _messages(chunks: Sequence[SpanColumns], n: int, redactor: Redactor) -> pa.Array:
    """The status descriptions, scrubbed and cut as attributes are: null but for the few
    spans that have one."""
    if not any(chunk.messages for chunk in chunks):
        return pa.nulls(n, pa.string())
    texts: list[str | None] = [None] * n
    offset = 0
    for chunk in chunks:
        for row, message in chunk.messages:
            texts[offset + row] = redactor.message(message)
        offset += chunk.size
    return strings(texts)


def _attributes_column(chunks: Sequence[SpanColumns], redactor: Redactor) -> pa.Array:
    """The chunks' redacted attributes as one map column: a chunk's attributes go through
    the redactor in one call, and the rows' ends are mended where it dropped any."""
    keys: list[str] = []
    texts: list[str] = []
    ends: list[np.ndarray] = [np.zeros(1, dtype=np.int32)]
    own_call = type(redactor).__call__ is Redactor.__call__  # a subclass's __call__ is respected
    for chunk in chunks:
        if own_call:
            chunk_keys, chunk_texts, row_ends = kept_attributes(
                chunk.keys, redactor.texts(chunk.keys, chunk.values), chunk.attr_ends, chunk.size)
        else:
            chunk_keys, chunk_texts, row_ends = _redacted_by_call(chunk, redactor)
        ends.append(row_ends[1:] + len(keys))
        keys.extend(chunk_keys)
        texts.extend(chunk_texts)
    offsets = np.concatenate(ends)
    return pa.MapArray.from_arrays(pa.Array.from_buffers(pa.int32(), len(offsets), [None, pa.py_buffer(offsets)]),
                                   strings(keys), strings(texts), type=STRING_MAP)


def _redacted_by_call(chunk: SpanColumns, redactor: Redactor) -> tuple[list[str], list[str], np.ndarray]:
    """A chunk's attributes through a redactor subclass's own ``__call__``, a row at a time."""
    keys: list[str] = []
    texts: list[str] = []
    row_ends = np.zeros(chunk.size + 1, dtype=np.int32)
    for row in range(chunk.size):
        a, b = chunk.attr_ends[row], chunk.attr_ends[row + 1]
        if b > a:
            kept = redactor(dict(zip(chunk.keys[a:b], chunk.values[a:b])))
            keys.extend(kept)
            texts.extend(kept.values())
        row_ends[row + 1] = len(keys)
    return keys, texts, row_ends


def _rows_of(batch: pa.RecordBatch, service: str) -> pa.RecordBatch:
    """The rows of one service, when spans of several share a batch (several providers in
    one process: rare, so ``pyarrow.compute`` is loaded only then)."""
    import pyarrow.compute as pc

    return batch.filter(pc.equal(batch.column("service.name"), service))


def _hex_ids(*words: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """Ids as lowercase hex strings (16 characters per 64-bit word), built in C: formatting
    ids one by one in Python was the largest cost of a span's row."""
    n = len(words[0])
    packed = np.empty((n, len(words)), dtype=">u8")
    for position, values in enumerate(words):
        packed[:, position] = values
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
        Rotate files at this size or age. A file reaches its age even when no span comes:
        ``publish_stale`` publishes it.
    timer
        Call ``publish_stale`` every ``PUBLISH_CHECK_S`` from a thread of its own (started by the
        first write, ended by ``shutdown``). False: the caller calls it, as ``perfsdk.init``'s
        export does from its writer's thread.

    Each file's metadata names the functions ``@monitor`` traces, by span name
    (``perfsdk.functions``: what ``perfsdk testgen --bench-out`` imports).
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
        max_bytes: int = 64 * 2**20, max_age_s: float = 60.0, faults: Faults | None = None, timer: bool = True,
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
        self._lock = owned_lock()  # a call from inside a write (a signal handler) must not wait for it
        self._shutdown = False
        #: More metadata for each new file (perfsdk's export records its drops so far there).
        self.file_metadata: Callable[[], dict[str, str]] | None = None
        self._functions_version = -1  # the registry's version the open files' metadata names
        check_options(format, max_bytes, max_age_s)
        self._timer: Worker[None] | None = None
        if timer:
            self._timer = Worker("perfsdk-span-files", tick=self.publish_stale, tick_interval_s=PUBLISH_CHECK_S,
                                 faults=self.faults)
        self._timer_started = False
        at_fork(self._after_fork)

    def _writer(self, service: str) -> RotatingWriter:
        writer = self._writers.get(service)
        if writer is None:
            writer = self._writers[service] = RotatingWriter(
                self.directory, "spans", SPANS, service, self.format, self.max_bytes, self.max_age_s
            )
            writer.file_metadata = self._file_metadata
        return writer

    def _file_metadata(self) -> dict[str, str]:
        """A new file's metadata: the functions ``@monitor`` traces, and what ``file_metadata`` adds
        (a failure leaves the key out and is counted: the file is written all the same)."""
        metadata: dict[str, str] = {}
        with self.faults.guard("span file metadata"):
            self._functions_version = TRACED_FUNCTIONS.version
            metadata[FUNCTIONS_KEY] = json.dumps(TRACED_FUNCTIONS.snapshot(), sort_keys=True)
            if TRACED_FUNCTIONS.unnamed:
                metadata[FUNCTIONS_KEY + "_unnamed"] = str(TRACED_FUNCTIONS.unnamed)
        with self.faults.guard("span file metadata"):
            if self.file_metadata is not None:
                metadata.update(self.file_metadata())
        return metadata

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Write ``spans``; one that cannot be read is counted failed (and a fault), not its batch."""
        return self.write_columns([spans_to_columns(spans, self._unreadable)])

    def _unreadable(self, span: ReadableSpan, exc: Exception) -> None:
        self.spans_failed += 1
        self.faults.record("arrow span export: unreadable span", exc)

    def write_columns(self, chunks: Sequence[SpanColumns]) -> SpanExportResult:
        """Write chunks of span columns (``SpanColumns``), one batch per service.

        Each span is counted once: exported when a writer took it (taken back into ``spans_failed``
        by ``stats()`` if its file is then lost: ``rows_lost``), else failed."""
        n = sum(chunk.size for chunk in chunks)
        if self._shutdown:  # (chunks a stuck writer still held when closing gave up on it)
            self.spans_failed += n
            return SpanExportResult.FAILURE
        if not n:
            return SpanExportResult.SUCCESS
        if held_here(self._lock):  # a span ended inside this thread's own write (a signal handler,
            self.spans_failed += n  # under a SimpleSpanProcessor): its files are half written
            self.faults.record("arrow span export", RuntimeError("spans exported from inside the exporter's own "
                                                                 "write (a signal handler): not written"))
            return SpanExportResult.FAILURE
        taken = 0  # spans a writer took, even if the same call then failed to publish their file
        try:
            batch = columns_to_batch(chunks, self.redactor)
            # (not np.unique: it imports numpy.ma, 3,000 objects and cyclic garbage, on the writer's first batch)
            services = {chunk.strings[code] for chunk in chunks for code in set(chunk.service[:chunk.size].tolist())}
            with self._lock:
                if TRACED_FUNCTIONS.version != self._functions_version:
                    # a function was decorated since the open files were named: its spans go to new
                    # files that name it (rare: once a function, bounded by the registry)
                    for writer in self._writers.values():
                        writer.flush()
                for service in sorted(services):
                    group = batch if len(services) == 1 else _rows_of(batch, service)
                    writer = self._writer(service)
                    before = writer.rows_written
                    try:
                        writer.write(group)
                    finally:
                        took = writer.rows_written - before
                        taken += took
                        self.spans_exported += took
                if self._shutdown:  # shut down (past its deadline) while this write hung: its files are
                    for writer in self._writers.values():  # published now, or they would stay hidden
                        writer.flush()
                elif self._timer is not None and not self._timer_started:
                    self._timer_started = True
                    self._timer.start()
            return SpanExportResult.SUCCESS
        except Exception as exc:
            self.spans_failed += n - taken
            self.faults.record("arrow span export", exc)
            return SpanExportResult.FAILURE

    def publish_stale(self) -> None:
        """Publish each open file older than ``max_age_s`` (or of a past day), so an idle
        service's last spans become readable without waiting for the next span. Never waits:
        while a write holds the files, it checks their age itself."""
        if held_here(self._lock) or not self._lock.acquire(blocking=False):
            return
        try:
            for writer in self._writers.values():
                with self.faults.guard("arrow span export publish"):  # its rows are counted lost (rows_lost)
                    writer.publish_stale()
        finally:
            self._lock.release()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Publish the open files, so everything exported so far is readable; False (counted) if
        a write still in progress (a stuck disk) holds them past ``timeout_millis``, or that write is
        this thread's own (a signal handler that interrupted it: it cannot wait for itself)."""
        if held_here(self._lock):
            self.faults.record("arrow span export flush", RuntimeError(
                "flushed from inside the exporter's own write (a signal handler): not published"))
            return False
        if not self._lock.acquire(timeout=max(timeout_millis, 0) / 1000.0):
            self.faults.record("arrow span export flush", TimeoutError(
                f"a write held the span files over {timeout_millis} ms: not published"))
            return False
        try:
            for writer in self._writers.values():
                writer.flush()
            return True
        except Exception as exc:
            self.faults.record("arrow span export flush", exc)
            return False
        finally:
            self._lock.release()

    def shutdown(self, timeout_millis: int = 30000) -> None:
        if not self._shutdown:
            deadline = time.monotonic() + max(timeout_millis, 0) / 1000.0
            self.force_flush(timeout_millis)
            self._shutdown = True
            if self._timer is not None:
                self._timer.shutdown(max(0.0, deadline - time.monotonic()))

    def _after_fork(self) -> None:
        """In a forked child: a fresh lock (each writer leaves the parent's open file alone), and
        counts from zero: every count a child reports is its own."""
        self._lock = owned_lock()
        self.spans_exported = self.spans_failed = 0
        self.redactor.dropped = self.redactor.rejected = 0

    def stats(self) -> dict[str, object]:
        lost = sum(w.rows_lost for w in self._writers.values())  # written, then their file not published
        return {
            "spans_exported": self.spans_exported - lost,
            "spans_failed": self.spans_failed + lost,
            "files_written": sum(w.files_written for w in self._writers.values()),
            "attributes_redacted": self.redactor.dropped,
            "values_rejected": self.redactor.rejected,  # unreadable: dropped (names, messages: REDACTED), counted
            "faults": self.faults.snapshot(),
        }
