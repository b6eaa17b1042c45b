"""ArrowExport: the Arrow files ``perfsdk.init(export_dir=...)`` writes.

Spans, anomalies, resource samples, and the decisions of every adaptive
controller in the process, each a table of its own.

Spans do not go through OpenTelemetry's ``BatchSpanProcessor``, whose full
queue drops spans with one log line and nothing counted. perfsdk's span
processor hands each ended span to this export's ``SpanCollector``, which
stores its values in column buffers on the application's thread (no object a
span for the garbage collector: a queued span would keep a dozen alive) and
moves each full chunk (4,096 spans, or 4 MiB of them) to a queue bounded in
bytes: each chunk's own, measured as it fills (``SpanColumns.nbytes``), the
chunk being filled counted too, so the spans waiting hold at most
``max_queue_bytes`` (and one span more). A background worker writes the chunks
as Arrow batches, ships a partial chunk once its first span is a second old,
and publishes each file once it is ``max_age_s`` old, even when no span comes.
When the queue is full the policy applies: ``"drop"`` (the default) counts the span in
``stats()["export"]["spans_dropped"]``, adds it to the
``perfsdk.export.spans_dropped`` metric, logs (at most every 10 s) and records
the running count in the next file's metadata (``perfsdk.spans_dropped``), so
an analyst sees the gap; ``"block"`` waits up to ``block_timeout_s`` for room
first. Nothing waits holding the collector's lock (``force_flush`` waiting for
room holds up no span), and nothing is lost in silence: ``force_flush()`` and
``shutdown()`` write everything queued, and the rows of the other tables that
cannot be written are counted per table (``stats()["export"]["tables"]``); a span
that ends after the export closed (it was inside the processor as shutdown began)
is dropped and counted. Each span file's metadata also names the functions
``@monitor`` traces (``perfsdk.functions``), for ``perfsdk testgen --bench-out``.

The files' own work in ``flush`` and ``close`` (publishing: a footer, an fsync, a
rename; the other tables' last rows) runs on a thread of its own, waited for until
the caller's deadline: a disk that hangs (a stale NFS mount, a frozen file system)
holds up that thread, never the caller's, and what it had not done by then is
counted (a fault, and the tables' rows as ``rows_unwritten``).

After a failed span write (a full disk) the writer backs off as the tables do (``RETRY_MIN_S``, doubling
up to ``RETRY_MAX_S``): the chunks wait in the bounded queue meanwhile -- those past its bound dropped and
counted -- instead of each being redacted and built into a batch only to fail; a flush or close tries
at once.

The writer writes large batches (a chunk at least, or a second's spans): each batch
hands the GIL to pyarrow and back a few dozen times, and every hand-back can
make the application's threads wait (CPython's convoy effect), so fewer,
larger batches cost the application less.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from opentelemetry import metrics
from opentelemetry.sdk.trace.export import SpanExportResult

from perfsdk._runtime import DECISION_DELIVERY, Faults, Worker, at_fork, log_quietly, suppressed
from perfsdk._version import __version__
from perfsdk._native import SpanCollector
from perfsdk.export import ArrowSpanExporter, TableWriter, decision_row
from perfsdk.export.tables import RETRY_MAX_S, RETRY_MIN_S
from perfsdk.export.options import SPAN_BYTES_ESTIMATE

__all__ = ["ArrowExport"]

CHUNK_SPANS = 4096  # spans a chunk of columns holds (the writer's unit)
CHUNKS_PER_BATCH = 4  # chunks written as one batch, at most
LINGER_S = 1.0  # a partial chunk waits this long for more spans before it is written
CLOSE_TIMEOUT_S = 30.0  # closing waits this long in all for the queued spans and decisions to be written

log = logging.getLogger("perfsdk.export")


class ArrowExport:
    """The writers of one ``export_dir``; flushed and closed with the SDK.

    Parameters
    ----------
    max_queue_bytes
        The span queue's bound, in bytes, as the chunks measure themselves (the one being
        filled too): 64 MiB holds a burst of 350,000 spans of two short attributes (190 bytes
        each), 75,000 with a dozen HTTP attributes (900), about 31,500 with a dozen 100-character
        ones (2 KB), while the writer catches up. One chunk is always let in, however large,
        so a tiny bound slows the export but never stops it.
    on_full, block_timeout_s
        ``"drop"`` (counted, logged, recorded) or ``"block"`` (wait that long for
        room, then drop and count) when the queue is full.

    ``perfsdk.init`` checks these, as it checks all its arguments, before making one.
    """

    def __init__(self, directory: str, service: str, fmt: str, redactor: Any, faults: Faults, *,
                 max_queue_bytes: int = 64 * 2**20, on_full: str = "drop", block_timeout_s: float = 0.1,
                 meter_provider: Any = None) -> None:
        self.spans = ArrowSpanExporter(directory, format=fmt, redactor=redactor, faults=faults,
                                       timer=False)  # its files' age is checked by span_queue's tick
        chunk_spans = min(CHUNK_SPANS, max(1, max_queue_bytes // SPAN_BYTES_ESTIMATE))
        self.max_queue_bytes = max_queue_bytes
        self.span_queue: Worker[None] = Worker(  # its items only wake the writer: the chunks wait in the collector
            "perfsdk-span-export", self._write_spans, max_queue=1 << 16, max_batch=1 << 16, faults=faults,
            tick=self._tick, tick_interval_s=LINGER_S)
        #: Where ended spans wait: the chunk being filled, and the full ones queued for the writer.
        self.collector = SpanCollector(chunk_spans, max_queue_bytes, block_timeout_s if on_full == "block" else 0.0,
                                       wake=self._wake_writer, chunk_bytes=chunk_spans * SPAN_BYTES_ESTIMATE)
        self.spans.file_metadata = lambda: {"perfsdk.spans_dropped": str(self.collector.dropped)}
        self.spans_written = 0
        self._failures = 0  # span writes failed in a row
        self._failed_writes = 0  # span writes failed in all (a flush fails if one does meanwhile)
        self._retry_at = 0.0  # the writer tries no span write before this (time.monotonic()), but to close
        # an anomaly names its span: redacted as the spans table writes it
        self.anomalies = TableWriter(directory, "anomalies", service, format=fmt, batch_rows=64,
                                     redact=self.spans.redactor.message)
        self.resources = TableWriter(directory, "resources", service, format=fmt, batch_rows=256)
        self.decisions = TableWriter(directory, "decisions", service, format=fmt, batch_rows=64)
        self.tables = {"anomalies": self.anomalies, "resources": self.resources, "decisions": self.decisions}
        self.service = service
        self.faults = faults
        meter = (meter_provider or metrics.get_meter_provider()).get_meter("perfsdk", __version__)
        self._dropped_metric = meter.create_counter(
            "perfsdk.export.spans_dropped", unit="{span}",
            description="Spans perfsdk's Arrow export dropped because its queue was full")
        self._last_drop_log = 0.0
        self._drop_lock = threading.Lock()
        self._file_work: threading.Thread | None = None  # the last flush's file work (one at a time)
        self.span_queue.start()  # last: a constructor that fails leaves no thread behind
        at_fork(self._after_fork)

    # -- spans ------------------------------------------------------------------------
    def dropped_span(self) -> None:
        """Account for a span ``collector.add`` refused (the processor stores spans through it)."""
        with self.faults.guard("span export drop accounting"):
            self._dropped_metric.add(1)
            now = time.monotonic()
            with self._drop_lock:
                due = now - self._last_drop_log >= 10.0
                if due:
                    self._last_drop_log = now
            if due:
                log_quietly(log, logging.WARNING, "perfsdk: spans dropped: the span export queue is full (%d "
                            "bytes), or a span ended inside the collector on its own thread (a signal handler), or "
                            "after the export closed; %d spans dropped so far, counted in "
                            "stats()['export']['spans_dropped'] and in the files' metadata",
                            self.max_queue_bytes, self.collector.dropped, faults=self.faults)

    def _wake_writer(self) -> None:
        """The collector's call when a chunk is queued (or before a flush waits): the writer writes
        every chunk queued before this call (a wake-up that is lost, the next one or the writer's
        tick writes it)."""
        self.span_queue.submit(None)

    def _write_spans(self, wake_ups: list[None]) -> None:
        self._write_queued()

    def _write_queued(self) -> None:
        """Write the chunks queued so far, a few at a time (large batches: see above); the ones
        queued meanwhile have wake-ups of their own, so a writer that cannot keep up still ticks."""
        collector = self.collector
        left = collector.queued_chunks
        while left > 0:
            if time.monotonic() < self._retry_at and not collector.closed:
                return  # backing off after a failed write: the chunks wait (bounded; a flush tries now)
            chunks = collector.take(min(left, CHUNKS_PER_BATCH))
            if not chunks:
                return
            left -= len(chunks)
            written = False
            try:
                with suppressed():  # perfsdk's own writes are not the application's work
                    written = self.spans.write_columns(chunks) is not SpanExportResult.FAILURE
            finally:
                self.spans_written += sum(chunk.size for chunk in chunks)
                collector.done(chunks)
                if written:
                    self._failures, self._retry_at = 0, 0.0
                else:
                    self._failures += 1
                    self._failed_writes += 1
                    self._retry_at = time.monotonic() + min(RETRY_MAX_S,
                                                            RETRY_MIN_S * 2 ** min(self._failures - 1, 16))

    def _tick(self) -> None:
        """The writer's periodic call: a partial chunk waits at most ``LINGER_S`` for more spans,
        and a file at most its ``max_age_s`` to be published (an idle service's too)."""
        self.collector.seal(older_than_s=LINGER_S)
        self._write_queued()
        with suppressed():
            self.spans.publish_stale()
            for writer in self.tables.values():
                with self.faults.guard("export publish"):
                    writer.publish_stale()

    def _after_fork(self) -> None:
        """In a forked child: the parent's waiting spans are the parent's (its worker's queue
        was emptied too), and so are its counts."""
        self.collector.reset()
        self.spans_written = 0
        self._failures, self._failed_writes, self._retry_at = 0, 0, 0.0
        self._drop_lock = threading.Lock()
        self._last_drop_log = 0.0
        self._file_work = None  # (the parent's thread is not the child's)

    def stats(self) -> dict[str, Any]:
        """Counts, read without waiting for any write (a hung disk holds up no ``stats()``)."""
        collector = self.collector
        current = collector.current
        stats = {**self.spans.stats(), "spans_dropped": collector.dropped,
                 "spans_queued": collector.shipped - self.spans_written + current.size,
                 "queued_bytes": collector.queued_bytes + (current.nbytes if current.size else 0),
                 "max_queue_bytes": self.max_queue_bytes,
                 "tables": {name: writer.stats() for name, writer in self.tables.items()}}
        # span files given up after a write error, kept (hidden) for perfsdk.export.recover
        # (the exporter's own stats() does not say yet: read from its writers, which count them)
        writers = getattr(self.spans, "_writers", {})
        stats.setdefault("abandoned_files", sum(getattr(w, "abandoned_files", 0) for w in list(writers.values())))
        return stats

    # -- the other tables ---------------------------------------------------------------
    def add_decision(self, decision: Any) -> None:
        """A controller's decision as a row of the decisions table (called on the decisions worker)."""
        with self.faults.guard("decision export"):
            self.decisions.add(decision_row(decision, self.service))

    def drain(self, timeout_s: float) -> bool:
        """Wait until every span ended so far is written to the open files (which stay open:
        ``flush`` also publishes them, with an fsync)."""
        deadline = time.monotonic() + timeout_s
        if not self.collector.seal(timeout_s):
            return False
        failed_writes = self._failed_writes
        self._retry_at = 0.0  # a flush tries now, backing off or not
        self._wake_writer()  # handled once everything queued before it is written
        flushed = self.span_queue.flush(max(0.0, deadline - time.monotonic()))
        return flushed and self._failed_writes == failed_writes  # (one failed: spans lost, or left backing off)

    def flush(self, timeout_millis: int) -> bool:
        """``drain`` and publish every file; False if a span or a row could not be written in time.
        The files' work runs off the caller's thread (``_off_thread``): a hung disk costs the caller
        its deadline, no more."""
        timeout_s = timeout_millis / 1000.0
        deadline = time.monotonic() + timeout_s
        drained = self.drain(timeout_s)
        ok = DECISION_DELIVERY.flush(max(0.0, deadline - time.monotonic())) and drained  # decisions on their way

        def publish() -> bool:
            done = True
            if drained:
                done = self.spans.force_flush(int(max(0.0, deadline - time.monotonic()) * 1000))
            for writer in self.tables.values():
                try:
                    done = writer.flush(max(0.0, deadline - time.monotonic())) and done
                except Exception as exc:  # its rows stay buffered for the next attempt (counted if given up)
                    self.faults.record("export flush", exc)
                    done = False
            return done

        return self._off_thread("export flush", publish, deadline, exclusive=True) and ok

    def close(self, timeout_s: float | None = None) -> None:
        """Write what is queued and publish every file, within one deadline for all the waits:
        spans still queued then are left to the writer's daemon thread, counted as a fault
        ("perfsdk-span-export at shutdown"); rows of the other tables that cannot be written are
        counted per table (``rows_unwritten``) -- those of a table whose file is still busy at the
        deadline (a hung disk) too, counted as a fault ("export close"). Spans that end from now on
        are dropped and counted (``spans_dropped``). ``timeout_s``: default ``CLOSE_TIMEOUT_S``."""
        timeout_s = CLOSE_TIMEOUT_S if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout_s
        self.collector.close()  # every span stored before this is sealed below; later ones are counted
        self.collector.seal(timeout_s)
        self._wake_writer()
        self.span_queue.shutdown(max(0.0, deadline - time.monotonic()))  # writes every queued span first
        DECISION_DELIVERY.flush(max(0.0, deadline - time.monotonic()))

        def publish() -> bool:
            self.spans.shutdown(int(max(0.0, deadline - time.monotonic()) * 1000))  # publishes its files
            for writer in self.tables.values():
                with self.faults.guard("export close"):
                    writer.close(max(0.0, deadline - time.monotonic()))
            return True

        if not self._off_thread("export close", publish, deadline):
            for writer in self.tables.values():  # counted now: the process may end before that thread does
                writer.give_up()

    def _off_thread(self, what: str, work: Callable[[], bool], deadline: float, exclusive: bool = False) -> bool:
        """``work()`` (the files' part of a flush or close, which may wait on the disk) on a daemon
        thread of its own, waited for until ``deadline``: its result, or False -- counted as a fault
        (``what``) -- if it is still running then (it is left to finish), or failed. ``exclusive``
        (a flush): an earlier one still running is waited for first, until the same deadline, and
        if it is still running then (a hung disk) none is started (False, counted): repeated
        flushes do not pile up threads."""
        busy = self._file_work
        if exclusive and busy is not None and busy is not threading.current_thread():
            busy.join(max(0.0, deadline - time.monotonic()))
            if busy.is_alive():
                self.faults.record(what, TimeoutError(
                    "the export's files are still busy with an earlier flush (a hung disk?): not flushed"))
                return False
        result: list[bool] = []

        def run() -> None:
            with suppressed(), self.faults.guard(what):  # perfsdk's own writes are not the application's work
                result.append(bool(work()))

        thread = threading.Thread(target=run, name="perfsdk-export-files", daemon=True)
        try:
            thread.start()
        except RuntimeError:  # no new thread now (the interpreter finalizing): done here, as before
            run()
            return bool(result and result[0])
        if exclusive:
            self._file_work = thread
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            self.faults.record(what, TimeoutError(
                "the export's files were still being written at the deadline (a hung disk?): left to its daemon "
                "thread; the rows not written by then are counted"))
            return False
        return bool(result and result[0])
