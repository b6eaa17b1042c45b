"""Instrumentation overhead, side by side (issue 4 targets).

* a span through the OTel SDK alone vs with PerfSpanProcessor added (target:
  the processor adds at most 1 us a span);
* ``@monitor`` before ``init()`` vs a bare call (target: under 300 ns added);
* spans/s through the processor alone (``on_start`` + ``on_end``).

    make bench
"""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider

import perfsdk
from benchutil import per_item
from perfsdk._runtime import HOOKS, Faults
from perfsdk.detect import span_detectors
from perfsdk.instrument import DetectorBank, PerfSpanProcessor
from perfsdk.instrument.incidents import IncidentTracker
from perfsdk.instrument.sink import AnomalySink

LOOP = 5_000
NAMES = [f"GET /route{i}" for i in range(20)]


def _processor() -> PerfSpanProcessor:
    faults = Faults()
    bank = DetectorBank(span_detectors(["zscore"]), min_delta=1.0, min_ratio=0.2)
    return PerfSpanProcessor(bank, AnomalySink(IncidentTracker(lambda n: set()), faults), faults)


def _spans(provider: TracerProvider, n: int) -> None:
    tracer = provider.get_tracer("bench")
    for i in range(n):
        with tracer.start_as_current_span(NAMES[i % 20]):
            pass


@pytest.mark.benchmark(group="span cost: OTel SDK alone vs with PerfSpanProcessor (ns/span)")
def test_otel_sdk_alone(benchmark):
    provider = TracerProvider()
    per_item(benchmark, LOOP, anchor="OTel SDK alone")
    benchmark(_spans, provider, LOOP)


@pytest.mark.benchmark(group="span cost: OTel SDK alone vs with PerfSpanProcessor (ns/span)")
def test_otel_sdk_with_perf_processor(benchmark):
    provider = TracerProvider()
    processor = _processor()
    provider.add_span_processor(processor)
    _spans(provider, 2_000)  # past the detectors' warm-up
    per_item(benchmark, LOOP)
    benchmark(_spans, provider, LOOP)
    assert processor.faults.snapshot() == {}
    processor.sink.close()


@pytest.mark.benchmark(group="span cost: OTel SDK alone vs with PerfSpanProcessor (ns/span)")
def test_otel_sdk_with_perfsdk_and_arrow_export(benchmark, tmp_path):
    """What perfsdk.init(export_dir=...) adds to a span: detectors and the Arrow export.
    The export's writes run on its worker thread; the timed loop pays for the hand-off and
    for the GIL the writer takes: each round waits until its spans are written (not for the
    fsync that publishes a file, which happens once a minute in a service)."""
    provider = TracerProvider()
    sdk = perfsdk.init(tracer_provider=provider, export_dir=str(tmp_path), sample_resources=False)
    export = sdk.processor.export
    try:
        _spans(provider, 2_000)
        sdk.force_flush()

        def spans_written():
            _spans(provider, LOOP)
            export.drain(30.0)

        per_item(benchmark, LOOP)
        benchmark(spans_written)
        sdk.force_flush()
        stats = sdk.stats()["export"]
        assert stats["spans_dropped"] == stats["spans_failed"] == stats["spans_queued"] == 0
        assert stats["spans_exported"] >= 2_000 + LOOP
    finally:
        sdk.shutdown()


@pytest.mark.benchmark(group="processor alone: on_start + on_end (spans/s)")
def test_processor_throughput(benchmark):
    provider = TracerProvider()
    tracer = provider.get_tracer("bench")
    spans = []
    for i in range(LOOP):
        span = tracer.start_span(NAMES[i % 20])
        span.end()
        spans.append(span)
    processor = _processor()

    def run():
        for span in spans:
            processor.on_start(span)
            processor.on_end(span)

    per_item(benchmark, LOOP)
    benchmark(run)
    assert processor.spans >= LOOP
    processor.sink.close()


def bare(x):
    return x


@perfsdk.monitor
def monitored(x):
    return x


@pytest.mark.benchmark(group="@monitor before init() vs a bare call (ns/call)")
def test_bare_call(benchmark):
    def run():
        for i in range(LOOP):
            bare(i)

    per_item(benchmark, LOOP, anchor="bare call")
    benchmark(run)


@pytest.mark.benchmark(group="@monitor before init() vs a bare call (ns/call)")
def test_monitor_uninitialised(benchmark):
    assert HOOKS.tracer is None

    def run():
        for i in range(LOOP):
            monitored(i)

    per_item(benchmark, LOOP)
    benchmark(run)
