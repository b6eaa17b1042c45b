"""The span export under a burst: nothing lost in silence."""

from __future__ import annotations

import threading

import pyarrow.ipc as ipc
import pytest
from opentelemetry.sdk.trace import TracerProvider

import perfsdk
from perfsdk.export import read


def burst(tracer, threads: int, spans: int) -> None:
    def work():
        for i in range(spans):
            with tracer.start_as_current_span("GET /burst", attributes={"i": i, "route": "/burst"}):
                pass

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def test_a_burst_of_100_000_spans_reaches_disk_whole_with_default_settings(tmp_path):
    provider = TracerProvider()
    sdk = perfsdk.init(tracer_provider=provider, export_dir=str(tmp_path), sample_resources=False)
    export = sdk.export
    burst_over = stall_writer(sdk)  # the worst case: the writer gets no time until the burst is over
    try:
        burst(provider.get_tracer("t"), threads=4, spans=25_000)
        queued = export.stats()
        burst_over.set()
        assert queued["spans_dropped"] == 0 and queued["queued_bytes"] <= queued["max_queue_bytes"]
        assert sdk.force_flush()
        stats = sdk.stats()["export"]
        assert stats["spans_dropped"] == 0 and stats["spans_exported"] == 100_000
        assert stats["queued_bytes"] == 0
    finally:
        burst_over.set()
        sdk.shutdown()
    assert read(tmp_path).num_rows == 100_000


def test_the_queue_bound_counts_each_chunks_measured_bytes():
    from perfsdk._native import SpanColumns

    provider = TracerProvider()
    tracer = provider.get_tracer("t")
    small, large = SpanColumns(64), SpanColumns(64)
    for i in range(64):
        with tracer.start_as_current_span("GET /a", attributes={"i": i}) as span:
            pass
        small.append(span)
        with tracer.start_as_current_span("GET /a", attributes={f"k{j}": "v" * 100 for j in range(12)}) as span:
            pass
        large.append(span)
    assert 64 * 80 < small.nbytes < 64 * 400  # columns, and one int each
    assert large.nbytes > small.nbytes + 64 * 12 * 100  # and a dozen 100-character texts each
    nested = SpanColumns(64)  # the same texts inside a map attribute (OpenTelemetry keeps Mappings)
    for i in range(64):
        with tracer.start_as_current_span("GET /a", attributes={"m": {f"k{j}": "v" * 100 for j in range(12)}}) as span:
            pass
        nested.append(span)
    if isinstance(span.attributes.get("m"), dict):  # (an OpenTelemetry before 1.3x drops map attributes)
        assert nested.nbytes > small.nbytes + 64 * 12 * 100  # counted too: they were sized as an empty dict


def stall_writer(sdk) -> threading.Event:
    """Hold the export's writer until the returned event is set."""
    write_columns = sdk.export.spans.write_columns
    go = threading.Event()

    def stalled_writer(chunks):
        go.wait(60)
        write_columns(chunks)

    sdk.export.spans.write_columns = stalled_writer
    return go


@pytest.mark.parametrize("on_full", ["drop", "block"])
def test_with_a_tiny_queue_every_span_is_on_disk_or_counted(tmp_path, on_full):
    provider = TracerProvider()
    sdk = perfsdk.init(tracer_provider=provider, export_dir=str(tmp_path), sample_resources=False,
                       export_queue_bytes=16 * 1024, export_on_full=on_full)  # a few chunks of 16 spans
    try:
        if on_full == "drop":  # drops for sure: the writer is held through the burst
            go = stall_writer(sdk)
            try:
                burst(provider.get_tracer("t"), threads=4, spans=2_000)
            finally:
                go.set()
        else:
            burst(provider.get_tracer("t"), threads=4, spans=2_000)
        sdk.force_flush()
        stats = sdk.stats()["export"]
    finally:
        sdk.shutdown()
    on_disk = read(tmp_path).num_rows
    assert on_disk + stats["spans_dropped"] == 8_000  # exact: nothing unaccounted
    if on_full == "drop":
        assert stats["spans_dropped"] > 0
        files = sorted(tmp_path.rglob("part-*.arrow"))
        recorded = [int(ipc.open_file(str(f)).schema.metadata[b"perfsdk.spans_dropped"]) for f in files]
        assert recorded == sorted(recorded)  # each file says how many were lost before it opened
