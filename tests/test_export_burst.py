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
    try:
        burst(provider.get_tracer("t"), threads=4, spans=25_000)
        assert sdk.force_flush()
        stats = sdk.stats()["export"]
        assert stats["spans_dropped"] == 0 and stats["spans_exported"] == 100_000
    finally:
        sdk.shutdown()
    assert read(tmp_path).num_rows == 100_000


@pytest.mark.parametrize("on_full", ["drop", "block"])
def test_with_a_tiny_queue_every_span_is_on_disk_or_counted(tmp_path, on_full):
    provider = TracerProvider()
    sdk = perfsdk.init(tracer_provider=provider, export_dir=str(tmp_path), sample_resources=False,
                       export_queue_bytes=16 * 1024, export_on_full=on_full)  # 16 spans
    try:
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
