"""Arrow export and offline analysis speed, side by side (issue 5 targets).

* spans/s from OTel ``ReadableSpan``s to a written Arrow file, against
  OpenTelemetry's own OTLP protobuf encoding of the same spans (target: 3x);
* ``perfsdk analyze`` spans/s over a 10-million-span dataset (target: 5 M/s).

    make bench
"""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from benchutil import per_item
from perfsdk.export import SPANS, ArrowSpanExporter
from perfsdk.export.analyze import analyze
from perfsdk.export.writer import RotatingWriter

N_SPANS = 10_000


@pytest.fixture(scope="module")
def spans():
    provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
    tracer = provider.get_tracer("bench")
    out = []
    for i in range(N_SPANS):
        with tracer.start_as_current_span("GET /checkout") as parent:
            parent.set_attributes({"http.request.method": "GET", "http.route": "/checkout",
                                   "http.response.status_code": 200, "server.address": "shop.local"})
            with tracer.start_as_current_span("SELECT orders") as child:
                child.set_attributes({"db.system": "postgresql", "db.statement": "SELECT * FROM orders"})
        out.append(parent)
    return out  # the parents: one shape, attributes included


@pytest.mark.benchmark(group="export: ReadableSpans to bytes (spans/s)")
def test_otlp_protobuf_encoding(benchmark, spans):
    per_item(benchmark, len(spans), anchor="OTLP protobuf encoder")
    payload = benchmark(lambda: encode_spans(spans).SerializeToString())
    assert len(payload) > 100 * len(spans)


@pytest.mark.benchmark(group="export: ReadableSpans to bytes (spans/s)")
def test_arrow_span_exporter_to_file(benchmark, spans, tmp_path):
    exporter = ArrowSpanExporter(str(tmp_path))

    def run():
        exporter.export(spans)
        exporter.force_flush()  # the file is complete, fsynced and published

    per_item(benchmark, len(spans))
    benchmark(run)
    assert exporter.stats()["spans_failed"] == 0


def synthetic_spans(root, n: int, names: int = 50, seed: int = 0, service: str = "shop") -> None:
    """Write ``n`` spans straight to the spans table (as the exporter would lay them out)."""
    rng = np.random.default_rng(seed)
    t0 = int(datetime(2026, 11, 28, tzinfo=timezone.utc).timestamp() * 1e9)
    name_values = np.array([f"GET /route{i}" for i in range(names)], dtype=object)
    writer = RotatingWriter(root, "spans", SPANS, service, max_bytes=512 * 2**20)
    for lo in range(0, n, 1_000_000):
        m = min(n, lo + 1_000_000) - lo
        which = rng.integers(0, names, m)
        durations = rng.gamma(4.0, 2.5, m) * (1 + which / 10)
        starts = t0 + (lo + np.arange(m, dtype=np.int64)) * 1_000_000
        ids = [f"{i:032x}" for i in range(lo, lo + m)]
        writer.write(pa.table({
            "trace_id": ids, "span_id": [x[16:] for x in ids], "parent_span_id": pa.nulls(m, pa.string()),
            "name": name_values[which], "kind": pa.array(["SERVER"] * m),
            "start_time": pa.array(starts, SPANS.field("start_time").type),
            "end_time": pa.array(starts + (durations * 1e6).astype(np.int64), SPANS.field("end_time").type),
            "duration_ms": durations, "status_code": pa.array(["UNSET"] * m),
            "status_message": pa.nulls(m, pa.string()), "service.name": pa.array([service] * m),
            "scope.name": pa.array(["bench"] * m),
            "attributes": pa.array([[]] * m, SPANS.field("attributes").type),
        }, schema=SPANS))
    writer.close()


@pytest.mark.benchmark(group="perfsdk analyze (spans/s)")
def test_analyze(benchmark, tmp_path, full_size):
    n = full_size(10_000_000, 20_000)
    synthetic_spans(tmp_path, n)
    analyze(tmp_path, progress=False)  # compile the kernels, warm the page cache
    per_item(benchmark, n)
    result = benchmark.pedantic(analyze, args=(tmp_path,), kwargs={"progress": False}, rounds=3, iterations=1)
    assert result.spans == n
