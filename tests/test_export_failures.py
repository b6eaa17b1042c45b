"""The export when the disk fails: full (every write raises ENOSPC) or hung (a write that never
returns: a stale NFS mount, a frozen file system). The disk is simulated -- the Arrow files' writes
go through ``FakeDisk`` -- so these need no mounts, and no test waits on a clock it does not own:
each asserts that a call returned while the write it must not wait for is still blocked.

The defects they were written against (each reproduced on a real 4 MiB tmpfs and an ext4 loop
mount frozen with ``fsfreeze``):

- a full disk left one empty hidden ``.part-*.tmp`` file per failed write attempt, never removed
  (66 in 20 s; 10,778 in 12 s with a busy cache controller, whose table retried on every row);
- on a hung disk ``stats()`` and ``force_flush(timeout_millis=1000)`` blocked the caller for as
  long as the disk hung (a table held its lock through the write), and ``shutdown()`` -- the one at
  interpreter exit too -- blocked until the disk came back (the tables' last write ran on the
  caller's thread, with no deadline);
- a span inside the processor's ``on_end`` as ``shutdown()`` began was stored after the export had
  closed: never written, never counted;
- ``init()`` called while another thread's ``shutdown()`` ran returned the handle shutting down,
  and nothing after was recorded.
"""

from __future__ import annotations

import errno
import threading
import time
import types
from datetime import datetime, timezone
from typing import Any, Callable

import pyarrow as pa
import pyarrow.ipc
import pytest
from opentelemetry.sdk.trace import TracerProvider

import perfsdk
from perfsdk._native import SpanCollector
from perfsdk.export import TableWriter, read, recover
from perfsdk.export import tables as tables_module
from perfsdk.export.schema import RESOURCES
from perfsdk.export.writer import RotatingWriter
from perfsdk.instrument import arrow_export
from perfsdk.instrument import sdk as sdk_module

SLACK_S = 10.0  # generous: a call that returns at all within this returned within its deadline


class FakeDisk:
    """The Arrow files' record-batch writes, through a switch: ``full`` makes each raise ENOSPC;
    ``freeze()`` makes each block until ``thaw()`` (``blocked`` is set once one does)."""

    def __init__(self) -> None:
        self.full = False
        self.attempts = 0
        self.blocked = threading.Event()
        self._frozen = False
        self._thawed = threading.Event()

    def freeze(self) -> None:
        self._thawed.clear()
        self.blocked.clear()
        self._frozen = True

    def thaw(self) -> None:
        self._frozen = False
        self._thawed.set()

    def write(self, real: Any, table: pa.Table) -> None:
        self.attempts += 1
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        if self._frozen:
            self.blocked.set()
            self._thawed.wait(SLACK_S * 3)
        real.write_table(table)


class _File:
    def __init__(self, disk: FakeDisk, real: Any) -> None:
        self._disk, self._real = disk, real

    def write_table(self, table: pa.Table) -> None:
        self._disk.write(self._real, table)

    def close(self) -> None:
        self._real.close()


@pytest.fixture
def disk(monkeypatch):
    fake = FakeDisk()
    new_file = pyarrow.ipc.new_file
    monkeypatch.setattr(pyarrow.ipc, "new_file", lambda sink, schema: _File(fake, new_file(sink, schema)))
    yield fake
    fake.thaw()  # a test that failed leaves no thread blocked


def hidden_files(root) -> list:
    return sorted(root.rglob(".part-*.tmp"))


def returns_within(call: Callable[[], Any], seconds: float = SLACK_S) -> tuple[bool, Any]:
    """``(returned, result)`` of ``call()`` run on a thread of its own: a call that hangs fails the
    test instead of hanging it."""
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(call()), daemon=True)
    thread.start()
    thread.join(seconds)
    return (not thread.is_alive(), out[0] if out else None)


def wait_for(condition: Callable[[], bool], seconds: float = SLACK_S) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def resource_row(value: float = 1.0) -> dict[str, Any]:
    return {"timestamp": datetime.now(timezone.utc), "service.name": "shop", "metric": "m", "value": value,
            "unit": "ms"}


DECISION = {"controller": "cache", "service.name": "shop", "mode": "advisory", "explanation": "a decision"}


# -- F1: a full disk ----------------------------------------------------------------------------
def test_a_full_disk_leaves_no_empty_hidden_file_behind(tmp_path, disk):
    """Each failed first write opened a file and left it (empty, hidden) for ``recover``, which
    could read nothing back from it: one such file per attempt. A file without a complete batch is
    removed now; one with batches in it is still kept, and counted."""
    writer = RotatingWriter(tmp_path, "resources", RESOURCES, "shop")
    batch = pa.Table.from_pylist([resource_row()] * 10, schema=RESOURCES)
    disk.full = True
    for _ in range(20):
        with pytest.raises(OSError):
            writer.write(batch)
    assert hidden_files(tmp_path) == [] and writer.abandoned_files == 0 and writer.rows_lost == 0
    disk.full = False
    writer.write(batch)  # a file with a batch in it, then the disk fills: kept for recover
    disk.full = True
    with pytest.raises(OSError):
        writer.write(batch)
    (kept,) = hidden_files(tmp_path)
    assert recover(kept).num_rows == 10 and writer.abandoned_files == 1 and writer.rows_lost == 10
    disk.full = False
    writer.write(batch)
    writer.close()
    assert read(tmp_path, table="resources").num_rows == 10 and hidden_files(tmp_path) == [kept]


def test_a_table_backs_off_after_a_failed_write_and_counts_every_row(tmp_path, disk, monkeypatch):
    """While writes failed, the buffer stayed at its bound, so every ``add`` tried (and failed) a
    write at once. Now ``add`` waits ``RETRY_MIN_S`` after a failure, doubling up to
    ``RETRY_MAX_S``; the rows meanwhile stay bounded, and each one is written or counted."""
    clock = [1000.0]
    monkeypatch.setattr(tables_module, "time", types.SimpleNamespace(monotonic=lambda: clock[0]))
    table = TableWriter(str(tmp_path), "resources", "shop", batch_rows=4)
    disk.full = True
    failed = 0

    def add(n: int) -> None:
        nonlocal failed
        for _ in range(n):
            try:
                table.add(resource_row())
            except OSError:
                failed += 1

    add(4)
    assert (failed, disk.attempts) == (1, 1)  # the 4th row tried
    add(200)
    assert (failed, disk.attempts) == (1, 1)  # backing off: no attempt, no error
    assert table.stats()["rows_buffered"] == table.max_buffered == 16
    intervals = []
    for _ in range(8):  # each interval: no attempt just before it ends, one right at its end
        wait = min(tables_module.RETRY_MAX_S, tables_module.RETRY_MIN_S * 2 ** len(intervals))
        clock[0] += wait - 0.01
        add(1)
        assert disk.attempts == len(intervals) + 1
        clock[0] += 0.01
        add(1)
        assert disk.attempts == len(intervals) + 2
        intervals.append(wait)
    assert intervals == [0.25, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]  # capped
    assert hidden_files(tmp_path) == []  # each attempt's empty file removed
    disk.full = False
    clock[0] += tables_module.RETRY_MAX_S
    add(1)
    stats = table.stats()
    assert stats["rows_written"] == 16 and stats["rows_buffered"] == 0
    table.close()
    stats = table.stats()
    added = 4 + 200 + 16 + 1
    assert stats["rows_written"] + stats["rows_dropped"] + stats["rows_unwritten"] + stats["rows_buffered"] == added
    assert read(tmp_path, table="resources").num_rows == stats["rows_written"] == 16
    assert stats["abandoned_files"] == 0


def test_the_export_stats_say_how_many_files_were_abandoned(tmp_path, disk):
    """``abandoned_files`` -- files given up after a write error, kept hidden for ``recover`` --
    was counted by each writer but in no ``stats()``."""
    provider = TracerProvider()
    sdk = perfsdk.init(tracer_provider=provider, export_dir=tmp_path, sample_resources=False)
    tracer = provider.get_tracer("t")
    try:
        def spans(n: int, written: bool = True) -> None:
            for _ in range(n):
                tracer.start_span("op").end()
            assert sdk.export.drain(SLACK_S) is written  # a failed write fails the flush

        spans(5)  # written into the open file
        disk.full = True
        spans(5, written=False)  # its next batch fails: the file (5 rows) is kept
        spans(5, written=False)  # a new file, its first batch failed: removed (a flush tries, backing off or not)
        stats = sdk.stats()["export"]
        assert stats["abandoned_files"] == 1 and len(hidden_files(tmp_path)) == 1
        assert stats["tables"]["resources"]["abandoned_files"] == 0
        assert stats["spans_exported"] == 0 and stats["spans_failed"] == 15
        disk.full = False
        spans(5)
        assert sdk.force_flush(int(SLACK_S * 1000))
    finally:
        sdk.shutdown()
    assert read(tmp_path).num_rows == 5 and recover(hidden_files(tmp_path)[0]).num_rows == 5


def test_the_span_writer_backs_off_after_a_failed_write_and_counts_every_span(tmp_path, disk, monkeypatch):
    """On a full disk every queued chunk was redacted, built into a batch and tried (a file opened and
    abandoned each time). The span writer now backs off as the tables do; the chunks wait in the
    bounded queue, a flush tries at once, and every span is written, failed or dropped -- counted."""
    clock = [1000.0]
    monkeypatch.setattr(arrow_export, "time", types.SimpleNamespace(monotonic=lambda: clock[0]))
    provider = TracerProvider()
    sdk = perfsdk.init(tracer_provider=provider, export_dir=tmp_path, sample_resources=False)
    export, tracer = sdk.export, provider.get_tracer("t")

    def spans(n: int) -> None:
        for _ in range(n):
            tracer.start_span("op").end()

    def writer_runs() -> None:  # what a full chunk or the writer's tick does: no flush's "try now"
        assert export.collector.seal(SLACK_S)
        export._wake_writer()
        assert export.span_queue.flush(SLACK_S)

    try:
        spans(5)
        assert export.drain(SLACK_S)
        disk.full = True
        spans(5)
        writer_runs()
        assert disk.attempts == 2 and export.stats()["spans_failed"] == 10  # with the 5 of its abandoned file
        for _ in range(3):  # backing off: the spans wait, untried
            spans(5)
            writer_runs()
        assert disk.attempts == 2 and export.stats()["spans_queued"] == 15
        clock[0] += arrow_export.RETRY_MIN_S
        writer_runs()  # one try when the wait is over (a batch of queued chunks), failed: a longer wait
        assert disk.attempts == 3
        clock[0] += arrow_export.RETRY_MIN_S
        writer_runs()
        assert disk.attempts == 3  # the second wait is twice the first
        disk.full = False
        assert sdk.force_flush(int(SLACK_S * 1000))  # a flush tries now, whatever the wait
        spans(5)
    finally:
        sdk.shutdown()
    stats = sdk.stats()["export"]
    assert stats["spans_exported"] + stats["spans_failed"] + stats["spans_dropped"] == 5 + 5 + 15 + 5
    assert stats["spans_queued"] == 0 and read(tmp_path).num_rows == stats["spans_exported"]


# -- F2: a hung disk: stats() and force_flush() ------------------------------------------------
def test_stats_and_flush_do_not_wait_for_a_write_that_hangs(tmp_path, disk):
    """The decisions table wrote on perfsdk's decision thread holding the lock that ``stats()`` and
    ``force_flush()`` take: with the write hung, both blocked the application's thread for as long
    as the disk hung. The rows are buffered under a lock never held for I/O, ``flush`` waits for a
    write in progress only until its deadline, and the files' work of ``force_flush`` runs on a
    thread of its own."""
    provider = TracerProvider()
    sdk = perfsdk.init(tracer_provider=provider, service_name=None, export_dir=tmp_path, sample_resources=False)
    decisions = sdk.export.decisions
    try:
        disk.freeze()
        writer = threading.Thread(target=lambda: [decisions.add(DECISION) for _ in range(decisions.batch_rows)],
                                  daemon=True)
        writer.start()
        assert disk.blocked.wait(SLACK_S)  # the 64th row's write hangs on that thread

        returned, stats = returns_within(sdk.stats)
        assert returned and stats["export"]["tables"]["decisions"]["rows_buffered"] == decisions.batch_rows
        returned, _ = returns_within(lambda: decisions.add(DECISION))  # another thread's row: buffered
        assert returned and decisions.stats()["rows_buffered"] == decisions.batch_rows + 1
        returned, flushed = returns_within(lambda: sdk.force_flush(200))
        assert returned and flushed is False and writer.is_alive()  # it returned while the write hung
        assert sdk.stats()["faults"].get("export flush", 0) >= 1
        with pytest.raises(TimeoutError):
            decisions.flush(timeout_s=0.05)
    finally:
        disk.thaw()
    writer.join(SLACK_S)
    assert sdk.force_flush(int(SLACK_S * 1000))
    sdk.shutdown()
    assert read(tmp_path, table="decisions").num_rows == decisions.batch_rows + 1


# -- F3: a hung disk: shutdown() ------------------------------------------------------------------
def test_shutdown_returns_by_its_deadline_while_a_tables_last_write_hangs(tmp_path, disk, monkeypatch):
    """``shutdown()`` (and so the interpreter's exit) wrote the tables' last rows on the caller's
    thread with no deadline: on a hung disk it never returned. They are written on a thread of
    their own now, waited for until the export's deadline (``CLOSE_TIMEOUT_S``); past it the caller
    returns, a fault counted, and the rows are accounted for -- written later if the disk comes
    back (the thread goes on), else counted."""
    monkeypatch.setattr(arrow_export, "CLOSE_TIMEOUT_S", 0.3)
    provider = TracerProvider()
    sdk = perfsdk.init(tracer_provider=provider, export_dir=tmp_path, sample_resources=False)
    sdk.export.resources.add(resource_row())  # buffered (256 a batch): written at close
    disk.freeze()
    try:
        returned, _ = returns_within(sdk.shutdown)
        assert returned and disk.blocked.is_set()  # shutdown returned; the write it started still hangs
        assert sdk.stats()["faults"].get("export close") == 1
        rows = sdk.stats()["export"]["tables"]["resources"]
        assert rows["rows_buffered"] + rows["rows_unwritten"] == 1  # in the hung write: not lost in silence
        sdk.export.resources.add(resource_row())  # a row after close: counted, never buffered for nobody
        assert sdk.stats()["export"]["tables"]["resources"]["rows_unwritten"] == rows["rows_unwritten"] + 1
    finally:
        disk.thaw()
    assert wait_for(lambda: sdk.stats()["export"]["tables"]["resources"]["rows_written"] == 1)
    assert wait_for(lambda: len(list((tmp_path / "resources").rglob("part-*.arrow"))) == 1)
    assert read(tmp_path, table="resources").num_rows == 1


def test_a_span_write_that_hangs_past_shutdown_publishes_its_file_when_it_ends(tmp_path, disk, monkeypatch):
    """A span write hung on the disk past ``shutdown()``'s deadline, then completed: its spans sat in a
    hidden file, counted exported, never published (a reader saw none of them)."""
    monkeypatch.setattr(arrow_export, "CLOSE_TIMEOUT_S", 0.3)
    provider = TracerProvider()
    sdk = perfsdk.init(tracer_provider=provider, export_dir=tmp_path, sample_resources=False)
    for _ in range(5):
        provider.get_tracer("t").start_span("op").end()
    disk.freeze()
    try:
        returned, _ = returns_within(sdk.shutdown)
        assert returned and disk.blocked.is_set()  # shutdown gave up; the span write still hangs
    finally:
        disk.thaw()
    assert wait_for(lambda: sdk.stats()["export"]["files_written"] == 1)
    assert read(tmp_path).num_rows == sdk.stats()["export"]["spans_exported"] == 5
    assert not list(tmp_path.rglob(".part-*"))


def test_a_close_past_its_deadline_counts_the_buffered_rows_unwritten(tmp_path, disk):
    """Rows still buffered (not in the write that hangs) when a table's close gives up are counted
    unwritten at once -- the process may end before the hung write does -- and never twice."""
    table = TableWriter(str(tmp_path), "resources", "shop", batch_rows=2)
    disk.freeze()
    writer = threading.Thread(target=lambda: [table.add(resource_row()) for _ in range(2)], daemon=True)
    writer.start()
    assert disk.blocked.wait(SLACK_S)
    table.add(resource_row())  # buffered beside the hung write
    try:
        with pytest.raises(TimeoutError):
            table.close(timeout_s=0.05)
        assert table.stats()["rows_unwritten"] == 1 and table.stats()["rows_buffered"] == 2
    finally:
        disk.thaw()
    writer.join(SLACK_S)
    stats = table.stats()
    assert (stats["rows_written"], stats["rows_unwritten"], stats["rows_buffered"]) == (2, 1, 0)
    # the hung write, ended after the table gave up, published its file: not left hidden, counted written
    assert len(list(tmp_path.rglob("part-*.arrow"))) == 1 and not list(tmp_path.rglob(".part-*"))


# -- F4: a span inside on_end as shutdown() begins ---------------------------------------------
def test_a_shutdown_inside_the_span_paths_own_python_code_does_not_wait_for_itself():
    """A signal handler's ``shutdown()`` that interrupted the span path's Python part (the processor's
    module) cannot wait for that span: it would stall the host's handler for ``IN_FLIGHT_WAIT_S``."""
    from perfsdk.instrument import processor as processor_module
    sdk = perfsdk.init(service_name="shop", sample_resources=False)
    try:
        processor = sdk.processor
        processor._in_flight = 1  # a span inside on_end: this thread's (below) or another's
        on_the_span_path = compile("result = processor.wait_in_flight(60.0)", processor_module.__file__, "exec")
        scope = {"processor": processor}
        exec(on_the_span_path, scope)  # as from a frame of the processor's own code: returns at once
        assert scope["result"] is False
        assert processor.wait_in_flight(0.01) is False  # from elsewhere it waits (here, its 0.01 s)
        processor._in_flight = 0
    finally:
        sdk.shutdown()


def _span_held_in_on_end(sdk, provider) -> tuple[threading.Thread, threading.Event, threading.Event]:
    """A span that another thread is ending, held inside the processor's ``on_end`` just before it
    stores the span for the export (past the check that the processor is not shut down)."""
    processor = sdk.processor
    store = processor.store_span
    inside, go = threading.Event(), threading.Event()

    def held_store(*args: Any) -> bool:
        if threading.current_thread().name == "ender":
            inside.set()
            go.wait(SLACK_S)
        return store(*args)

    processor.store_span = held_store
    ender = threading.Thread(target=lambda: provider.get_tracer("t").start_span("held").end(), name="ender")
    ender.start()
    assert inside.wait(SLACK_S)
    return ender, inside, go


def test_a_span_inside_on_end_as_shutdown_begins_is_written(tmp_path):
    """It was stored into the collector after the export had closed: never written, never
    counted. ``shutdown()`` now lets it finish (``IN_FLIGHT_WAIT_S``) before closing the export."""
    provider = TracerProvider()
    sdk = perfsdk.init(tracer_provider=provider, export_dir=tmp_path, sample_resources=False)
    for _ in range(3):
        provider.get_tracer("t").start_span("op").end()
    ender, _, go = _span_held_in_on_end(sdk, provider)
    closing = threading.Thread(target=sdk.shutdown)
    closing.start()
    assert wait_for(lambda: sdk.processor._shutdown)
    go.set()  # the span finishes while shutdown waits for it
    closing.join(SLACK_S)
    ender.join(SLACK_S)
    assert not closing.is_alive()
    export = sdk.stats()["export"]
    assert (export["spans_exported"], export["spans_dropped"], export["spans_queued"]) == (4, 0, 0)
    assert sorted(read(tmp_path).column("name").to_pylist()) == ["held", "op", "op", "op"]


def test_a_span_still_inside_on_end_after_the_export_closed_is_counted_dropped(tmp_path, monkeypatch):
    """One that outlasts the wait arrives at a closed collector: dropped and counted, not stranded
    in it (it stayed "queued" for ever)."""
    monkeypatch.setattr(sdk_module, "IN_FLIGHT_WAIT_S", 0.05)
    provider = TracerProvider()
    sdk = perfsdk.init(tracer_provider=provider, export_dir=tmp_path, sample_resources=False)
    provider.get_tracer("t").start_span("op").end()
    ender, _, go = _span_held_in_on_end(sdk, provider)
    returned, _ = returns_within(sdk.shutdown)
    assert returned and ender.is_alive()  # shut down with the span still inside
    assert sdk.export.collector.closed
    go.set()
    ender.join(SLACK_S)
    export = sdk.stats()["export"]
    assert (export["spans_exported"], export["spans_dropped"], export["spans_queued"]) == (1, 1, 0)
    assert read(tmp_path).num_rows == 1


def test_a_closed_collector_counts_each_span_dropped_and_still_seals_the_ones_before():
    provider = TracerProvider()
    tracer = provider.get_tracer("t")
    spans = []
    for name in ("a", "b", "c"):
        span = tracer.start_span(name)
        span.end()
        spans.append(span)
    collector = SpanCollector(chunk_rows=16, max_bytes=2**20)
    assert collector.add(spans[0]) and collector.add(spans[1])
    collector.close()
    assert not collector.add(spans[2]) and collector.dropped == 1 and collector.closed
    assert collector.seal(1.0)
    (chunk,) = collector.take(4)
    assert [chunk.strings[code] for code in chunk.name[:chunk.size]] == ["a", "b"]


def test_spans_that_end_after_shutdown_are_counted():
    """A span ended after ``shutdown()`` (an exit hook of the host's that ran after perfsdk's)
    reached a processor that let it pass uncounted."""
    provider = TracerProvider()
    sdk = perfsdk.init(tracer_provider=provider, sample_resources=False)
    provider.get_tracer("t").start_span("before").end()
    sdk.shutdown()
    for _ in range(3):
        provider.get_tracer("t").start_span("after").end()
    stats = sdk.stats()
    assert stats["spans"] == 1 and stats["spans_after_shutdown"] == 3


# -- F5: init() while another thread's shutdown() runs -----------------------------------------
def test_init_during_another_threads_shutdown_starts_afresh_and_keeps_the_provider_alive():
    """``init()`` returned the handle being shut down (it was still the running one until its
    shutdown ended), and nothing after was recorded. It starts afresh now. The provider perfsdk
    made is not shut down under the new handle: OpenTelemetry sets the global provider once, so the
    new ``init()`` joins the one the old handle owns -- the old shutdown hands it on instead."""
    provider = TracerProvider()
    old = perfsdk.init(tracer_provider=provider, sample_resources=False)
    old._owns_provider = True  # as if perfsdk had made it (the global one: its own tests use subprocesses)
    close, inside, go = old._sink.close, threading.Event(), threading.Event()

    def slow_close(timeout_s: float = 5.0) -> None:
        inside.set()
        go.wait(SLACK_S)
        close(timeout_s)

    old._sink.close = slow_close  # the old shutdown, half way
    closing = threading.Thread(target=old.shutdown)
    closing.start()
    new = None
    try:
        assert inside.wait(SLACK_S)
        returned, new = returns_within(lambda: perfsdk.init(tracer_provider=provider, sample_resources=False))
        assert returned and new is not old and not new.processor._shutdown
    finally:
        go.set()
        closing.join(SLACK_S)
    assert new is not None and not closing.is_alive()
    for _ in range(5):
        provider.get_tracer("t").start_span("after").end()
    try:
        assert new.stats()["spans"] == 5 and not new.processor._shutdown  # the old shutdown left it running
        assert new._owns_provider and perfsdk.init(tracer_provider=provider) is new
    finally:
        new.shutdown()
    assert new.processor._shutdown and sdk_module._HANDLE is None and sdk_module._CLOSING is None


def test_a_row_in_a_write_that_hangs_after_counting_is_counted_once(tmp_path, monkeypatch):
    """A write that counted its rows written and then hung publishing its file (a full file is closed
    and renamed inside the write) showed them as written *and* buffered: ``stats()`` added up to more
    rows than were given."""
    table = TableWriter(str(tmp_path), "resources", "shop", batch_rows=2, max_bytes=1)  # publish each write
    entered, release = threading.Event(), threading.Event()
    publish = RotatingWriter._publish

    def hanging_publish(self):
        entered.set()
        release.wait(SLACK_S * 3)
        publish(self)

    monkeypatch.setattr(RotatingWriter, "_publish", hanging_publish)
    writer = threading.Thread(target=lambda: [table.add(resource_row()) for _ in range(2)], daemon=True)
    writer.start()
    try:
        assert entered.wait(SLACK_S)  # counted written, now hung publishing
        stats = table.stats()
        assert (stats["rows_written"], stats["rows_buffered"]) == (2, 0)
        table.add(resource_row())  # a newer row: buffered beside it
        stats = table.stats()
        assert (stats["rows_written"], stats["rows_buffered"]) == (2, 1)
    finally:
        release.set()
    writer.join(SLACK_S)
    table.close()
    assert table.stats()["rows_written"] == 3 and read(tmp_path, table="resources").num_rows == 3
