"""Arrow export: the exporter, files that appear only complete, redaction, reading back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

import perfsdk
from perfsdk.export import SPANS, ArrowSpanExporter, Redactor, TableWriter, read, recover
from perfsdk.export.schema import SCHEMA_VERSION


def make_spans(provider: TracerProvider, n: int, name: str = "GET /cart", **attributes):
    tracer = provider.get_tracer("test")
    for i in range(n):
        with tracer.start_as_current_span(name, attributes=attributes) as span:
            if i % 10 == 9:
                span.set_status(Status(StatusCode.ERROR, "boom"))


def provider_for(exporter, service="shop"):
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def published(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("part-*") if not p.name.startswith("."))


def test_spans_round_trip_with_schema_metadata_and_partitions(tmp_path):
    exporter = ArrowSpanExporter(str(tmp_path))
    provider = provider_for(exporter)
    make_spans(provider, 20, **{"http.route": "/cart", "http.status_code": 200})
    provider.shutdown()
    (path,) = published(tmp_path)
    assert path.relative_to(tmp_path).parts[:3] == (
        "spans", "service=shop", f"date={datetime.now(timezone.utc):%Y-%m-%d}")
    with pa.memory_map(str(path)) as f:
        table = pa.ipc.open_file(f).read_all()
    meta = table.schema.metadata
    assert meta[b"perfsdk.schema_version"] == SCHEMA_VERSION.encode()
    assert meta[b"service.name"] == b"shop" and meta[b"perfsdk.version"] == perfsdk.__version__.encode()
    assert table.schema.remove_metadata().equals(SPANS)
    rows = read(tmp_path).to_pylist()
    assert len(rows) == 20 and sum(r["status_code"] == "ERROR" for r in rows) == 2
    row = rows[0]
    assert len(row["trace_id"]) == 32 and len(row["span_id"]) == 16 and row["parent_span_id"] is None
    assert row["duration_ms"] == pytest.approx((row["end_time"] - row["start_time"]).total_seconds() * 1e3, abs=1e-3)
    assert dict(row["attributes"]) == {"http.route": "/cart", "http.status_code": "200"}
    assert row["kind"] == "INTERNAL" and row["service.name"] == "shop" and row["scope.name"] == "test"


class _PublicOnly:
    """A ReadableSpan seen through its public API only (no SDK fields)."""

    def __init__(self, span):
        self._span = span

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._span, name)


def _columns_as_rows(chunk):
    from perfsdk.export.spans import KIND_NAMES, STATUS_NAMES

    names = chunk.strings
    return [(int(chunk.trace_hi[i]) << 64 | int(chunk.trace_lo[i]), int(chunk.span_id[i]),
             int(chunk.parent_id[i]) if chunk.has_parent[i] else None, names[chunk.name[i]],
             KIND_NAMES[chunk.kind[i]], int(chunk.start[i]), int(chunk.end[i]), STATUS_NAMES[chunk.status[i]],
             dict(chunk.messages).get(i), names[chunk.scope[i]] if chunk.scope[i] >= 0 else None,
             names[chunk.service[i]],
             dict(zip(chunk.keys[chunk.attr_ends[i]:chunk.attr_ends[i + 1]],
                      chunk.values[chunk.attr_ends[i]:chunk.attr_ends[i + 1]])))
            for i in range(chunk.size)]


def test_span_columns_read_through_fields_agree_with_the_public_api():
    """The span columns read the SDK's fields (and SpanContext's tuple layout) for speed; an
    OpenTelemetry release that changes them must show up here, not as wrong files."""
    from perfsdk.export.spans import spans_to_columns

    provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
    tracer = provider.get_tracer("scope-a")
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with tracer.start_as_current_span("parent", kind=SpanKind.SERVER) as parent:
        with tracer.start_as_current_span("child", attributes={"a": 1, "b": ("x", "y")}) as child:
            child.set_status(Status(StatusCode.ERROR, "boom"))
    ended = memory.get_finished_spans()
    rows = _columns_as_rows(spans_to_columns(ended))
    assert rows == _columns_as_rows(spans_to_columns([_PublicOnly(span) for span in ended]))
    child_row, parent_row = rows
    assert child_row[:3] == (child.context.trace_id, child.context.span_id, parent.context.span_id)
    assert parent_row[2] is None and child_row[1:] != parent_row[1:]
    assert child_row[3:] == ("child", "INTERNAL", child.start_time, child.end_time, "ERROR", "boom", "scope-a",
                             "shop", {"a": 1, "b": ("x", "y")})
    assert (parent_row[4], parent_row[8], parent_row[11]) == ("SERVER", None, {})


def test_a_span_that_cannot_be_stored_leaves_no_trace_in_its_chunk():
    """A span whose values cannot be read is refused whole: the next span's row is its own."""
    from perfsdk.export.spans import SpanColumns

    provider = TracerProvider()
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("t").start_as_current_span("ok", attributes={"k": "v"}):
        pass
    good = memory.get_finished_spans()[0]
    bad = SimpleNamespace(**{field: getattr(good, field) for field in
                             ("context", "parent", "status", "instrumentation_scope", "name", "kind",
                              "resource", "attributes")}, start_time="not a time", end_time=good.end_time)
    chunk = SpanColumns(4)
    with pytest.raises(TypeError):
        chunk.append(bad)
    assert chunk.append(good) and chunk.size == 1
    assert _columns_as_rows(chunk)[0][3] == "ok" and chunk.keys == ["k"] and chunk.messages == []


def test_waiting_spans_are_not_the_collectors_to_scan():
    """Ended spans wait for the writer as numbers in buffers and references in two lists,
    not as an object a span: the collector's count, which starts young collections, does
    not grow with them."""
    import gc

    from perfsdk._native import SpanCollector

    provider = TracerProvider()
    tracer = provider.get_tracer("t")
    collector = SpanCollector(4096)
    ended = []
    for i in range(2000):
        with tracer.start_as_current_span("GET /cart", attributes={"http.method": "GET", "n": i}) as span:
            pass
        ended.append(span)
    gc.collect()
    before = len(gc.get_objects())
    for span in ended:
        collector.add(span)
    assert len(gc.get_objects()) - before < 10


def test_pandas_and_duckdb_read_the_files_without_perfsdk(tmp_path):
    duckdb = pytest.importorskip("duckdb")
    exporter = ArrowSpanExporter(str(tmp_path), format="parquet")
    provider = provider_for(exporter)
    make_spans(provider, 30, name="GET /cart")
    make_spans(provider, 10, name="POST /checkout")
    provider.shutdown()
    frame = read(tmp_path).to_pandas()
    assert frame.groupby("name").size().to_dict() == {"GET /cart": 30, "POST /checkout": 10}
    glob = str(tmp_path / "spans" / "**" / "*.parquet")
    counts = duckdb.sql(
        f"SELECT name, count(*) AS n, max(service) AS service FROM read_parquet('{glob}', hive_partitioning = true) "
        "GROUP BY name ORDER BY name"
    ).fetchall()
    assert counts == [("GET /cart", 30, "shop"), ("POST /checkout", 10, "shop")]


def test_files_rotate_by_size_and_by_age(tmp_path):
    exporter = ArrowSpanExporter(str(tmp_path / "size"), max_bytes=4096)
    provider = provider_for(exporter)
    make_spans(provider, 200)
    provider.shutdown()
    assert len(published(tmp_path / "size")) > 3
    assert read(tmp_path / "size").num_rows == 200

    exporter = ArrowSpanExporter(str(tmp_path / "age"), max_age_s=0.05, timer=False)  # rotated by writes alone
    provider = provider_for(exporter)
    make_spans(provider, 5)
    time.sleep(0.1)
    make_spans(provider, 5)  # the first file is older than 50 ms: rotated before this write
    assert len(published(tmp_path / "age")) == 1
    provider.shutdown()
    assert len(published(tmp_path / "age")) == 2 and read(tmp_path / "age").num_rows == 10


def test_read_filters_by_service_time_and_name(tmp_path):
    exporter = ArrowSpanExporter(str(tmp_path))
    for service in ("shop", "billing"):
        provider = provider_for(exporter, service)
        make_spans(provider, 5, name=f"{service}-op")
        provider.force_flush()
    middle = datetime.now(timezone.utc)
    provider = provider_for(exporter, "shop")
    make_spans(provider, 3, name="late-op")
    exporter.force_flush()
    assert read(tmp_path, service="billing").column("name").to_pylist() == ["billing-op"] * 5
    assert read(tmp_path, start=middle).column("name").to_pylist() == ["late-op"] * 3
    assert read(tmp_path, end=middle, service="shop").num_rows == 5
    assert read(tmp_path, name="late-op", columns=["name", "duration_ms"]).num_columns == 2
    assert read(tmp_path, table="anomalies").num_rows == 0
    with pytest.raises(ValueError, match="timezone-aware"):
        read(tmp_path, start=datetime.now())
    with pytest.raises(ValueError, match="table"):
        read(tmp_path, table="logs")
    exporter.shutdown()  # its timer thread ends with it (later tests count perfsdk's threads)


def test_default_redaction_keeps_secrets_off_disk(tmp_path):
    exporter = ArrowSpanExporter(str(tmp_path))
    provider = provider_for(exporter)
    make_spans(provider, 1, **{
        "http.request.header.authorization": "Bearer s3cr3t", "http.request.header.cookie": "sid=1",
        "user.email": "alice@example.com", "db.password": "hunter2", "auth_token": "t0k",
        "http.route": "/cart",
    })
    provider.shutdown()
    assert dict(read(tmp_path).to_pylist()[0]["attributes"]) == {"http.route": "/cart"}
    raw = b"".join(p.read_bytes() for p in published(tmp_path))
    for secret in (b"s3cr3t", b"sid=1", b"alice@example.com", b"hunter2", b"t0k"):
        assert secret not in raw
    assert exporter.stats()["attributes_redacted"] == 5


def test_keyed_hashing_joins_without_revealing(tmp_path):
    redactor = Redactor(hash_keys=["enduser.id"], opt_in=["user.email"], hash_key=b"fleet-key")
    exporter = ArrowSpanExporter(str(tmp_path), redactor=redactor)
    provider = provider_for(exporter)
    make_spans(provider, 2, **{"enduser.id": "alice", "user.email": "a@example.com"})
    provider.shutdown()
    values = [dict(r["attributes"]) for r in read(tmp_path).to_pylist()]
    assert values[0]["enduser.id"] == values[1]["enduser.id"] != "alice"
    assert values[0]["enduser.id"] == Redactor(hash_key=b"fleet-key").hash("alice")
    assert values[0]["user.email"] == "a@example.com"  # opted in
    assert Redactor(allow=["http.route"])({"http.route": "/", "x": "y"}) == {"http.route": "/"}


def test_eight_threads_exporting_concurrently_lose_nothing(tmp_path):
    exporter = ArrowSpanExporter(str(tmp_path), max_bytes=64 * 1024)
    source = TracerProvider(resource=Resource.create({"service.name": "shop"}))
    tracer = source.get_tracer("t")
    batches = []
    for b in range(8 * 25):
        spans = []
        for i in range(50):
            span = tracer.start_span(f"op{i % 5}")
            span.end()
            spans.append(span)
        batches.append(spans)

    def work(k):
        for spans in batches[k::8]:
            assert exporter.export(spans).name == "SUCCESS"

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    exporter.shutdown()
    table = read(tmp_path)
    assert table.num_rows == 8 * 25 * 50 == exporter.stats()["spans_exported"]
    assert len(set(table.column("span_id").to_pylist())) == table.num_rows


def test_sigkill_mid_write_leaves_finished_files_readable(tmp_path):
    script = textwrap.dedent(f"""
        import sys, pyarrow as pa
        from perfsdk.export.writer import RotatingWriter
        from perfsdk.export.schema import RESOURCES
        from datetime import datetime, timezone
        writer = RotatingWriter({str(tmp_path)!r}, "resources", RESOURCES, "svc", max_bytes=20_000)
        now = datetime.now(timezone.utc)
        i = 0
        while True:
            rows = [{{"timestamp": now, "service.name": "svc", "metric": "m", "value": float(i * 100 + j),
                      "unit": "ms"}} for j in range(100)]
            writer.write(pa.Table.from_pylist(rows, schema=RESOURCES))
            i += 1
            if writer.files_written >= 3:
                print("ready", flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = published(tmp_path)
    assert len(finished) >= 3
    table = read(tmp_path, table="resources")  # every finished file reads; the open one is hidden
    assert table.num_rows % 100 == 0 and table.num_rows >= 300
    for tmp in tmp_path.rglob(".part-*.tmp"):  # the open file: whole batches, or nothing
        assert recover(tmp).num_rows % 100 == 0


def test_recover_at_every_stage_of_a_files_life(tmp_path):
    """A SIGKILL can land anywhere: before the magic bytes, inside the schema, inside a
    batch. At every cut, recover() returns the whole batches written so far (maybe none)."""
    from perfsdk.export.schema import RESOURCES

    now = datetime.now(timezone.utc)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, RESOURCES) as writer:
        for i in range(3):
            writer.write_batch(pa.RecordBatch.from_pylist(
                [{"timestamp": now, "service.name": "svc", "metric": "m", "value": float(i * 100 + j),
                  "unit": "ms"} for j in range(100)], schema=RESOURCES))
    whole = sink.getvalue().to_pybytes()
    part = tmp_path / "resources" / "service=svc" / "date=2026-11-29" / ".part-x.arrow.tmp"
    part.parent.mkdir(parents=True)
    cuts = sorted({*range(0, 1200), *range(1200, len(whole), 97), len(whole)})
    recovered = []
    for cut in cuts:
        part.write_bytes(whole[:cut])
        table = recover(part)
        assert table.schema == RESOURCES and table.num_rows % 100 == 0, cut
        recovered.append(table.num_rows)
    assert recovered[0] == 0 and recovered[-1] == 300 and recovered == sorted(recovered)
    part.write_bytes(b"PAR1 not arrow")
    with pytest.raises(ValueError, match="not an Arrow IPC file"):
        recover(part)


def test_an_unusable_export_dir_fails_init_at_once_and_changes_nothing(tmp_path):
    from opentelemetry import trace

    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the export directory should be")
    before = trace.get_tracer_provider()
    with pytest.raises(ValueError, match="export_dir .*not-a-dir.* cannot be used"):
        perfsdk.init(service_name="shop", export_dir=str(blocker))
    with pytest.raises(TypeError, match="export_dir must be a path"):
        perfsdk.init(service_name="shop", export_dir=123)
    assert trace.get_tracer_provider() is before  # no global provider left behind


def test_an_export_dir_that_breaks_later_is_reported_and_the_application_goes_on(tmp_path, caplog):
    import shutil

    target = tmp_path / "export"
    provider = TracerProvider()
    sdk = perfsdk.init(tracer_provider=provider, export_dir=str(target), sample_resources=False)
    try:
        shutil.rmtree(target)
        target.write_text("the disk was reorganised under us")

        @perfsdk.monitor
        def handler():
            return "served"

        assert [handler() for _ in range(5)] == ["served"] * 5
        sdk.force_flush()
        stats = sdk.stats()
        assert stats["export"]["spans_failed"] == 5 and stats["export"]["spans_exported"] == 0
        assert stats["faults"]["arrow span export"] >= 1
        assert "arrow span export failed" in caplog.text
    finally:
        sdk.shutdown()


def test_init_exports_spans_anomalies_and_resources(tmp_path):
    provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
    sdk = perfsdk.init(tracer_provider=provider, export_dir=str(tmp_path), resource_interval_s=0.02,
                       detectors=("zscore",))
    tracer = provider.get_tracer("t")
    t0 = time.time_ns()
    for i in range(60):  # durations set exactly, not slept: a busy machine cannot make a normal span slow
        start = t0 + i * 10**8
        tracer.start_span("job", start_time=start).end(end_time=start + (500_000 if i < 55 else 30_000_000))
    time.sleep(0.2)  # a few resource samples
    sdk.shutdown()
    assert read(tmp_path).num_rows == 60
    anomalies = read(tmp_path, table="anomalies").to_pylist()
    assert [a["series"] for a in anomalies] == ["job"] and anomalies[0]["value"] > 20
    assert dict(anomalies[0]["details"])["run"] == "3"
    resources = read(tmp_path, table="resources")
    assert set(resources.column("metric").to_pylist()) >= {"process.cpu.utilization", "process.memory.rss_mb"}


def test_init_exports_every_adaptive_cache_decision(tmp_path):
    provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
    sdk = perfsdk.init(tracer_provider=provider, export_dir=str(tmp_path), sample_resources=False)
    try:
        cache = perfsdk.AdaptiveCache(capacity=50, name="prices", controller=perfsdk.CacheController(interval=100))
        for i in range(3000):
            cache.get_or_load((i * 7919) % 400, lambda key: key)
        sdk.force_flush()
    finally:
        sdk.shutdown()
    rows = read(tmp_path, table="decisions").to_pylist()
    assert len(rows) == len(cache.decisions()) >= 5  # a decision every 100 gets, or fewer once settled
    assert {r["controller"] for r in rows} == {"prices"} and {r["service.name"] for r in rows} == {"shop"}
    assert rows[-1]["explanation"] == str(cache.decisions()[-1])
    after = perfsdk.AdaptiveCache(capacity=50, controller=perfsdk.CacheController(interval=100))
    for i in range(300):
        after.get_or_load(i % 80, lambda key: key)  # perfsdk shut down: nothing more is exported
    assert read(tmp_path, table="decisions").num_rows == len(rows)


def test_table_writer_rejects_unknown_tables_and_bad_options(tmp_path):
    with pytest.raises(ValueError, match="table"):
        TableWriter(str(tmp_path), "logs", "svc")
    with pytest.raises(ValueError, match="format"):
        ArrowSpanExporter(str(tmp_path), format="csv")
    with pytest.raises(ValueError, match="max_bytes"):
        ArrowSpanExporter(str(tmp_path), max_bytes=0)


def test_a_failed_write_keeps_earlier_batches_recoverable(tmp_path):
    from perfsdk.export.schema import RESOURCES
    from perfsdk.export.writer import RotatingWriter

    writer = RotatingWriter(tmp_path, "resources", RESOURCES, "svc")
    now = datetime.now(timezone.utc)
    good = pa.Table.from_pylist([{"timestamp": now, "service.name": "svc", "metric": "m", "value": 1.0,
                                  "unit": "ms"}] * 100, schema=RESOURCES)
    writer.write(good)
    writer.write(good)
    with pytest.raises(Exception):
        writer.write(pa.table({"wrong": [1]}))  # a batch the file cannot take
    (tmp,) = list(tmp_path.rglob(".part-*.tmp"))  # kept, hidden, not deleted
    assert recover(tmp).num_rows == 200 and writer.abandoned_files == 1
    writer.write(good)  # the writer goes on with a new file
    writer.close()
    assert read(tmp_path, table="resources").num_rows == 100


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_leaves_the_parents_open_files_alone(tmp_path):
    provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
    sdk = perfsdk.init(tracer_provider=provider, export_dir=str(tmp_path), sample_resources=False)
    try:
        tracer = provider.get_tracer("t")
        span = TracerProvider(resource=provider.resource).get_tracer("t").start_span("before-fork")
        span.end()
        assert sdk.export.spans.export([span]).name == "SUCCESS"
        assert sdk.export.spans._writers["shop"]._writer is not None  # an open file at the fork
        pid = os.fork()
        if pid == 0:
            try:
                with tracer.start_as_current_span("in-child"):
                    pass
                sdk.shutdown()
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        with tracer.start_as_current_span("after-fork"):
            pass
    finally:
        sdk.shutdown()
    names = sorted(read(tmp_path).column("name").to_pylist())
    assert names.count("before-fork") == 1 and names.count("after-fork") == 1
    assert names.count("in-child") == 1


def test_read_keeps_the_files_schema_metadata(tmp_path):
    for service in ("shop", "billing"):
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        provider.add_span_processor(SimpleSpanProcessor(ArrowSpanExporter(str(tmp_path))))
        provider.get_tracer("t").start_span("GET /").end()
        provider.shutdown()
    metadata = read(tmp_path).schema.metadata
    assert metadata[b"perfsdk.schema_version"] == str(SCHEMA_VERSION).encode()
    assert metadata[b"perfsdk.table"] == b"spans" and metadata[b"service.name"] == b"billing,shop"
    one = next(tmp_path.rglob("part-*.arrow"))
    assert read(one).schema.metadata[b"perfsdk.table"] == b"spans"


def test_a_script_that_ends_without_shutdown_keeps_its_spans(tmp_path):
    script = textwrap.dedent(f"""
        import perfsdk
        perfsdk.init(service_name="shop", export_dir={str(tmp_path)!r}, sample_resources=False)

        @perfsdk.monitor
        def checkout(cart):
            return cart

        for i in range(3000):
            checkout(i)
    """)  # no shutdown(): the process simply ends, as a quick start's script does
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    assert read(tmp_path).num_rows == 3000


def test_a_status_message_is_scrubbed_and_cut_as_attributes_are(tmp_path):
    sdk = perfsdk.init(service_name="shop", export_dir=tmp_path, sample_resources=False)

    @perfsdk.monitor
    def login(user, card):
        raise ValueError(f"bad password for {user}, card {card} " + "x" * 200_000)

    try:
        with pytest.raises(ValueError):
            login("alice@example.com", "4111 1111 1111 1111")
    finally:
        sdk.shutdown()
    message = read(tmp_path).column("status_message")[0].as_py()
    assert "alice" not in message and "4111" not in message and "REDACTED" in message
    assert len(message) <= Redactor().max_value_chars + 3


def test_a_file_of_another_schema_is_an_error_naming_it_not_rows_of_nulls(tmp_path):
    from perfsdk.export.reader import read_file

    provider = provider_for(ArrowSpanExporter(str(tmp_path)))
    make_spans(provider, 5)
    provider.shutdown()
    own = next(tmp_path.rglob("part-*.arrow"))
    foreign = tmp_path / "spans" / "foreign.arrow"
    with pa.ipc.new_file(foreign, pa.schema([("foo", pa.int64())])) as f:
        f.write_table(pa.table({"foo": [1, 2]}))
    for path in (tmp_path, foreign):  # the export directory, or the file alone
        with pytest.raises(ValueError, match=r"foreign\.arrow: not a perfsdk spans file: no columns trace_id, "):
            read(path)
    foreign.unlink()
    assert read(tmp_path).num_rows == 5

    retyped = read(own).set_column(SPANS.get_field_index("duration_ms"), "duration_ms",
                                   pa.array(["1.5"] * 5))
    with pa.ipc.new_file(foreign, retyped.schema) as f:
        f.write_table(retyped)
    with pytest.raises(ValueError, match="foreign.arrow: not a perfsdk spans file: column duration_ms is string, "
                                         "not double"):
        read(tmp_path)
    truncated = own.read_bytes()
    foreign.write_bytes(truncated[: len(truncated) // 2])
    with pytest.raises(ValueError, match="foreign.arrow: not a complete Arrow IPC or Parquet file"):
        read_file(foreign)


@pytest.mark.parametrize("kwargs,error,argument", [
    ({"start": "2024-01-01"}, TypeError, "start"), ({"table": ["spans"]}, ValueError, "table"),
    ({"columns": ["nope"]}, ValueError, "nope"), ({"columns": "name"}, TypeError, "columns"),
    ({"service": 5}, TypeError, "service"), ({"name": 3}, TypeError, "name"),
])
def test_read_refuses_bad_arguments_naming_them(tmp_path, kwargs, error, argument):
    with pytest.raises(error, match=argument):
        read(tmp_path, **kwargs)


def test_rows_whose_file_cannot_be_published_are_counted_failed_not_exported(tmp_path):
    import shutil

    root = tmp_path / "export"
    sdk = perfsdk.init(service_name="shop", export_dir=root, sample_resources=False)

    @perfsdk.monitor
    def step():
        return None

    for _ in range(100):
        step()
    assert sdk.export.drain(10.0)  # written into the open (hidden) file
    shutil.rmtree(root)  # the directory goes away before the file is published
    sdk.shutdown()
    export = sdk.stats()["export"]
    assert (export["spans_exported"], export["spans_failed"], export["files_written"]) == (0, 100, 0)


@pytest.mark.parametrize("text", [pa.large_string(), pa.dictionary(pa.int32(), pa.string())])
def test_spans_written_by_other_tools_with_other_string_types_still_read(tmp_path, text):
    """polars and pandas write text as large or dictionary-encoded strings: the same kind, read as ours."""
    import pyarrow.ipc as ipc

    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    rows = {"trace_id": ["t"], "span_id": ["s"], "parent_span_id": [None], "name": ["GET /"], "kind": ["SERVER"],
            "start_time": [start], "end_time": [start], "duration_ms": [1.0], "status_code": ["OK"],
            "status_message": [None], "service.name": ["shop"], "scope.name": [None], "attributes": [[("k", "v")]]}
    table = pa.table(rows, schema=SPANS)
    table = table.cast(pa.schema([pa.field(f.name, text if f.type == pa.string() else f.type, f.nullable)
                                  for f in SPANS]))
    where = tmp_path / "spans" / "service=shop" / "date=2024-01-01"
    where.mkdir(parents=True)
    with ipc.new_file(str(where / "part-0.arrow"), table.schema) as writer:
        writer.write_table(table)
    spans = read(tmp_path)
    assert spans.num_rows == 1 and spans.column("name").to_pylist() == ["GET /"]


def test_closing_the_export_keeps_one_deadline_even_with_a_write_stuck(tmp_path):
    """Closing waited 30 s for the queue, then for ever for the file lock a stuck write held (a hung
    disk): now one deadline for every wait, and what it gave up on is counted."""
    sdk = perfsdk.init(service_name="shop", export_dir=tmp_path, sample_resources=False)
    release = threading.Event()

    class StuckFile:
        rows_written = 0

        def write(self, batch):
            release.wait(60)

        def flush(self):
            pass

    sdk.export.spans._writer = lambda service: StuckFile()

    @perfsdk.monitor
    def checkout(i):
        return i

    try:
        for i in range(10):
            checkout(i)
        closing = threading.Thread(target=sdk.export.close, kwargs={"timeout_s": 0.5})
        closing.start()
        closing.join(20)
        assert not closing.is_alive()  # it waited 30 s, then for ever
        faults = sdk.faults.snapshot()
        assert faults["perfsdk-span-export at shutdown"] == 1 and faults["arrow span export flush"] == 1
    finally:
        release.set()
        sdk.shutdown()


def test_exporting_nothing_succeeds_and_counts_nothing(tmp_path):
    """``export([])`` (an OTel processor may call it) failed on joining no columns and counted a fault."""
    exporter = ArrowSpanExporter(str(tmp_path))
    assert exporter.export([]) == SpanExportResult.SUCCESS
    stats = exporter.stats()
    assert (stats["spans_exported"], stats["spans_failed"], stats["faults"]) == (0, 0, {})


def run_on_a_small_disk(script: str, *args: str) -> dict:
    """``SMALL_DISK`` and ``script`` in a child process, which sets how large its files may grow
    (``RLIMIT_FSIZE``: a write beyond fails with EFBIG, as on a full disk); what it prints last, as
    JSON, and its stderr."""
    import json

    code = textwrap.dedent(SMALL_DISK) + textwrap.dedent(script)
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return {**json.loads(done.stdout.splitlines()[-1]), "stderr": done.stderr}


SMALL_DISK = """
    import glob, json, os, resource, signal, sys
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from perfsdk.export import ArrowSpanExporter, read, recover

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead of killing us

    def limit(size):
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    def exporter_at(root, **options):
        exporter = ArrowSpanExporter(root, timer=False, **options)
        provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        return exporter, provider, provider.get_tracer("t")

    def open_file(root):
        return (glob.glob(f"{root}/spans/*/*/.part-*.tmp") or [None])[0]
"""


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs RLIMIT_FSIZE and SIGXFSZ (POSIX)")
def test_a_file_that_cannot_be_published_after_its_write_counts_its_spans_once(tmp_path):
    """A write whose file then reached ``max_bytes`` and could not be closed (its footer did not fit) was
    counted failed by the exporter and lost by the writer: -1 spans exported and 4 failed, of 3."""
    found = run_on_a_small_disk("""
    exporter, provider, tracer = exporter_at(sys.argv[1] + "/dry")
    with tracer.start_as_current_span("GET /a"):
        pass
    one_span = os.path.getsize(open_file(sys.argv[1] + "/dry"))  # a file of one span, before its footer
    exporter, provider, tracer = exporter_at(sys.argv[1] + "/full", max_bytes=1)  # published after each write
    limit(one_span + 8)  # each span's batch fits; its file's footer does not
    for _ in range(3):
        with tracer.start_as_current_span("GET /a"):
            pass
    limit(resource.RLIM_INFINITY)
    provider.shutdown()
    stats = exporter.stats()
    print(json.dumps({"exported": stats["spans_exported"], "failed": stats["spans_failed"],
                      "readable": read(sys.argv[1] + "/full").num_rows}))
    """, str(tmp_path))
    assert (found["exported"], found["failed"], found["readable"]) == (0, 3, 0)


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs RLIMIT_FSIZE and SIGXFSZ (POSIX)")
def test_a_write_error_counts_the_open_files_spans_lost_and_names_the_file_to_recover(tmp_path):
    """A failed write gives up the open file: its 50 earlier spans were counted exported, never published,
    and nothing said where they were. Now they are counted failed and the hidden file is named."""
    found = run_on_a_small_disk("""
    exporter, provider, tracer = exporter_at(sys.argv[1])
    for i in range(50):
        with tracer.start_as_current_span(f"GET /{i}"):
            pass
    hidden = open_file(sys.argv[1])
    limit(os.path.getsize(hidden) + 100)  # the disk fills up: the next batch does not fit
    with tracer.start_as_current_span("GET /fails"):
        pass
    limit(resource.RLIM_INFINITY)  # room again
    for i in range(5):
        with tracer.start_as_current_span(f"GET /after{i}"):
            pass
    provider.shutdown()
    stats = exporter.stats()
    print(json.dumps({"exported": stats["spans_exported"], "failed": stats["spans_failed"], "hidden": hidden,
                      "readable": read(sys.argv[1]).num_rows, "recovered": recover(hidden).num_rows}))
    """, str(tmp_path))
    assert (found["exported"], found["failed"], found["readable"]) == (5, 51, 5)  # 56 spans, each counted once
    assert found["recovered"] == 50
    assert "50 rows of the spans table could not be published" in found["stderr"]
    assert f"perfsdk.export.recover({found['hidden']!r})" in found["stderr"]


def wait_for(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_an_idle_exporters_last_file_is_published_at_its_max_age(tmp_path):
    """``max_age_s`` was looked at only when the next batch came: an idle service's last spans stayed
    in a hidden file for as long as it was idle. The exporter's timer publishes it."""
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    before = set(threading.enumerate())
    provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
    provider.add_span_processor(BatchSpanProcessor(ArrowSpanExporter(str(tmp_path), max_age_s=0.5),
                                                   schedule_delay_millis=50))
    try:
        make_spans(provider, 10)
        assert wait_for(lambda: len(published(tmp_path)) == 1, timeout_s=10)
        assert read(tmp_path).num_rows == 10 and not list(tmp_path.rglob(".part-*"))
        assert timers(before)  # the exporter's own
    finally:
        provider.shutdown()
    assert not timers(before)  # ended by shutdown


def test_init_publishes_an_idle_services_files_at_their_max_age(tmp_path):
    """perfsdk.init's export checks its files' age on its writer's tick: no thread of the exporter's own."""
    before = set(threading.enumerate())
    provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
    sdk = perfsdk.init(tracer_provider=provider, export_dir=tmp_path, sample_resources=False)
    try:
        sdk.export.spans.max_age_s = 0.5  # (60 s by default; read as the span file opens)
        make_spans(provider, 10)
        assert wait_for(lambda: len(published(tmp_path / "spans")) == 1, timeout_s=10)
        assert read(tmp_path).num_rows == 10 and not timers(before)
    finally:
        sdk.shutdown()


def timers(before: set[threading.Thread]) -> list[threading.Thread]:
    """Span exporters' own timer threads started since ``before``."""
    return [t for t in threading.enumerate() if t.name == "perfsdk-span-files" and t not in before]


def test_read_reads_a_directory_of_arrow_and_parquet_files_both(tmp_path):
    """An export whose format changed (a restart with format="parquet") holds both kinds: read() took
    the first file's format for all and called a healthy file of the other kind corrupt."""
    for fmt, name in (("arrow", "GET /a"), ("parquet", "GET /b"), ("arrow", "GET /c")):
        provider = provider_for(ArrowSpanExporter(str(tmp_path), format=fmt))
        make_spans(provider, 3, name=name)
        provider.shutdown()
    assert {p.suffix for p in published(tmp_path)} == {".arrow", ".parquet"}
    spans = read(tmp_path)
    assert sorted(spans.column("name").to_pylist()) == ["GET /a"] * 3 + ["GET /b"] * 3 + ["GET /c"] * 3
    assert read(tmp_path / "spans", name="GET /b").num_rows == 3  # the table's directory, filtered
    assert spans.schema.metadata[b"perfsdk.table"] == b"spans"


def test_rows_a_table_cannot_write_are_counted_by_why(tmp_path):
    """Rows of the anomalies, resources and decisions tables that could not be written were dropped
    with no count anywhere: now each is counted, by why, and close() counts what it gives up."""
    root = tmp_path / "export"
    root.write_text("a file where the export directory should be")  # every write fails
    writer = TableWriter(str(root), "resources", "shop", batch_rows=4)
    row = {"timestamp": datetime.now(timezone.utc), "service.name": "shop", "metric": "m", "value": 1.0, "unit": "ms"}
    failed = 0
    for _ in range(30):
        try:
            writer.add(row)
        except OSError:
            failed += 1
    with pytest.raises(ValueError):
        writer.add("not a row")  # type: ignore[arg-type]
    assert failed == 1  # the 4th row's add tried; the next ones back off (tests/test_export_failures.py)
    assert writer.stats() == {"rows_written": 0, "rows_buffered": 16, "rows_skipped": 1, "rows_dropped": 14,
                              "rows_lost": 0, "rows_unwritten": 0,
                              "abandoned_files": 0}  # the last 4 batches kept for another try
    with pytest.raises(OSError):
        writer.close()
    assert writer.stats()["rows_buffered"] == 0 and writer.stats()["rows_unwritten"] == 16


def test_a_table_or_the_span_exporter_called_from_inside_its_own_call_waits_for_nothing_and_loses_nothing(tmp_path):
    """A signal handler runs on the main thread wherever it is: inside a table's flush, or the span
    exporter's write (under a SimpleSpanProcessor, on the application's thread). A flush from there
    waited for the lock its own thread held, for ever (the exporter's, for its timeout) -- and with the
    file half written it could not have written. From inside, a table buffers the row and its flush
    and close say False; the exporter counts the spans it cannot write and its flush says False.
    The next flush from outside writes what was buffered."""
    provider = TracerProvider()
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("t").start_as_current_span("GET /a"):
        pass
    span = memory.get_finished_spans()[0]
    table = TableWriter(str(tmp_path), "resources", "shop", batch_rows=1)
    exporter = ArrowSpanExporter(str(tmp_path), timer=False)
    row = {"timestamp": datetime.now(timezone.utc), "service.name": "shop", "metric": "m", "value": 1.0, "unit": "ms"}
    found: list = []

    def interrupted():
        with table._lock:
            table.add(row)  # batch_rows=1: outside, this add would write
            found.append((table.flush(), table.close(), table.stats()["rows_buffered"]))
        with exporter._lock:
            found.append((exporter.export([span]), exporter.force_flush(1000), exporter.stats()["spans_failed"]))

    thread = threading.Thread(target=interrupted, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "a call from inside a table or the exporter waited for its own thread"
    assert found == [(False, False, 1), (SpanExportResult.FAILURE, False, 1)]
    assert exporter.faults.snapshot() == {"arrow span export": 1, "arrow span export flush": 1}
    assert table.flush() and exporter.export([span]) is SpanExportResult.SUCCESS
    exporter.shutdown()
    assert read(tmp_path, table="resources").num_rows == 1 and read(tmp_path).num_rows == 1


def test_flush_says_false_and_stats_count_the_rows_when_a_table_cannot_be_written(tmp_path):
    """force_flush() returned True while every write of the other tables failed, and their rows
    were neither in stats() nor written."""
    import shutil

    root = tmp_path / "export"
    sdk = perfsdk.init(service_name="shop", export_dir=root, sample_resources=False)
    try:
        shutil.rmtree(root)
        root.write_text("")  # the export directory is gone, a file in its place
        sdk.export.resources.add({"timestamp": datetime.now(timezone.utc), "service.name": "shop",
                                  "metric": "m", "value": 1.0, "unit": "ms"})
        assert sdk.force_flush(2000) is False
        assert sdk.stats()["export"]["tables"]["resources"]["rows_buffered"] == 1
    finally:
        sdk.shutdown()
    tables = sdk.stats()["export"]["tables"]
    assert tables["resources"]["rows_unwritten"] == 1 and tables["anomalies"]["rows_unwritten"] == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_childs_export_counts_are_its_own(tmp_path):
    """The child reported the parent's exported spans and files as its own."""
    from threads import in_child

    sdk = perfsdk.init(service_name="shop", export_dir=tmp_path, sample_resources=False)

    @perfsdk.monitor
    def step(i):
        return i

    try:
        for i in range(50):
            step(i)
        assert sdk.force_flush(10000) and sdk.stats()["export"]["spans_exported"] == 50

        def counts_its_own():
            for i in range(3):
                step(i)
            flushed = sdk.force_flush(10000)
            export = sdk.stats()["export"]
            return flushed and (export["spans_exported"], export["files_written"], export["spans_queued"]) == (3, 1, 0)

        assert in_child(counts_its_own)
    finally:
        sdk.shutdown()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_writers_files_share_its_tag_and_a_forked_childs_writer_draws_its_own(tmp_path):
    """Each file drew a tag of its own, so the tag named no writer and ``analyze`` could tell processes only by
    pid (one series for containers all running as pid 1). A given tag is kept, in the child too."""
    from threads import in_child

    from perfsdk.export.analyze import process_of
    from perfsdk.export.schema import RESOURCES
    from perfsdk.export.writer import RotatingWriter

    batch = pa.table({"timestamp": [datetime.now(timezone.utc)], "service.name": ["shop"], "metric": ["m"],
                      "value": [1.0], "unit": ["ms"]}, schema=RESOURCES)
    drawn = RotatingWriter(tmp_path / "drawn", "resources", RESOURCES, "shop", max_bytes=1)  # a file a write
    given = RotatingWriter(tmp_path / "given", "resources", RESOURCES, "shop", max_bytes=1, tag="mine")
    for writer in (drawn, given):
        writer.write(batch)
        writer.write(batch)
    parent_tag = drawn.tag

    def writes_as_its_own_writer():
        for writer in (drawn, given):
            writer.write(batch)
            writer.write(batch)
        return drawn.tag != parent_tag and given.tag == "mine"

    assert in_child(writes_as_its_own_writer)
    writers = [process_of(f) for f in published(tmp_path / "drawn")]
    assert len(writers) == 4 and len(set(writers)) == 2  # two files of the parent's writer, two of the child's
    assert writers.count(f"{os.getpid()}-{parent_tag}") == 2
    given_writers = {process_of(f) for f in published(tmp_path / "given")}
    assert len(given_writers) == 2 and all(w.endswith("-mine") for w in given_writers)


def test_a_file_that_fails_to_open_leaves_no_hidden_file_and_no_descriptor(tmp_path, monkeypatch):
    from perfsdk.export import writer as writer_module
    from perfsdk.export.writer import RotatingWriter
    from perfsdk.export.schema import RESOURCES

    def no_header(sink, schema):
        raise OSError("no room for the file's header")

    writer = RotatingWriter(tmp_path, "resources", RESOURCES, "shop")
    batch = pa.table({"timestamp": [datetime.now(timezone.utc)], "service.name": ["shop"], "metric": ["m"],
                      "value": [1.0], "unit": ["ms"]}, schema=RESOURCES)
    descriptors = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    monkeypatch.setattr(writer_module.ipc, "new_file", no_header)
    with pytest.raises(OSError, match="header"):
        writer.write(batch)
    monkeypatch.undo()
    assert list(tmp_path.rglob(".part-*")) == []
    if descriptors is not None:
        assert len(os.listdir("/proc/self/fd")) == descriptors
    writer.write(batch)  # the next write opens a file of its own
    writer.close()
    assert read(tmp_path, table="resources").num_rows == 1
