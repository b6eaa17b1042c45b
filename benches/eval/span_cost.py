"""What perfsdk adds to an OpenTelemetry span, measured in interleaved rounds (issue 11).

pytest-benchmark times one variant's rounds after the other's, and on a shared
machine whose speed drifts by a third within a minute, that drift lands in the
ratio. Here the variants take turns, round by round, and the
minimum of each is compared (rounds of 4,096 spans: the export's chunk):

* ``otel``: a bare ``TracerProvider``;
* ``processor``: the same with perfsdk's span processor as ``perfsdk.init()`` makes it
  (the default detector on every name), without the export;
* ``export``: ``perfsdk.init(tracer_provider=..., export_dir=...)``; each round waits until
  its spans are written (``ArrowExport.drain``), so the writer's share of the GIL is inside it.

``--breakdown`` adds two variants that say where the processor's share goes: ``no-op
processor`` (OpenTelemetry's dispatch to any processor: a Python one that does nothing) and
``processor, no detectors`` (perfsdk's processor with the detector bank's ``observe`` a no-op).

    .venv/bin/python benches/eval/span_cost.py            # 60 rounds, about 40 s
    .venv/bin/python benches/eval/span_cost.py --breakdown  # ... and where the processor's share goes
    .venv/bin/python benches/eval/span_cost.py --quick    # the test suite's run
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

import perfsdk
from perfsdk._runtime import Faults
from perfsdk.detect import span_detectors
from perfsdk.instrument import DetectorBank, PerfSpanProcessor
from perfsdk.instrument.incidents import IncidentTracker
from perfsdk.instrument.sink import AnomalySink

NAMES = [f"GET /route{i}" for i in range(20)]


def spans(provider: TracerProvider, n: int) -> None:
    tracer = provider.get_tracer("bench")
    for i in range(n):
        with tracer.start_as_current_span(NAMES[i % 20]):
            pass


class NoOpProcessor(SpanProcessor):
    """A span processor that does nothing: what OpenTelemetry's dispatch to one costs."""

    def on_start(self, span, parent_context=None) -> None:  # type: ignore[no-untyped-def]
        pass

    def on_end(self, span) -> None:  # type: ignore[no-untyped-def]
        pass


def perfsdk_processor(observe: bool = True) -> PerfSpanProcessor:
    """perfsdk's span processor as ``perfsdk.init()`` makes it, without the export."""
    faults = Faults()
    processor = PerfSpanProcessor(DetectorBank(span_detectors(["default"]), min_delta=1.0, min_ratio=0.2),
                                  AnomalySink(IncidentTracker(lambda name: set()), faults), faults)
    if not observe:
        processor.observe = lambda *args: ()
    return processor


def measure(rounds: int, per_round: int, breakdown: bool = False) -> dict[str, list[float]]:
    """Seconds a span, each round, by variant."""
    providers = {"otel": TracerProvider(), "processor": TracerProvider()}
    providers["processor"].add_span_processor(perfsdk_processor())
    if breakdown:
        providers["no-op processor"] = TracerProvider()
        providers["no-op processor"].add_span_processor(NoOpProcessor())
        providers["processor, no detectors"] = TracerProvider()
        providers["processor, no detectors"].add_span_processor(perfsdk_processor(observe=False))
    providers["export"] = TracerProvider()
    export_dir = tempfile.mkdtemp(prefix="perfsdk-span-cost-")
    sdk = perfsdk.init(tracer_provider=providers["export"], export_dir=export_dir, sample_resources=False)
    export = sdk.processor.export
    try:
        for provider in providers.values():
            spans(provider, 2_000)  # past the detectors' warm-up
        export.drain(30.0)
        times: dict[str, list[float]] = {variant: [] for variant in providers}
        for _ in range(rounds):
            for variant, provider in providers.items():
                started = time.perf_counter()
                spans(provider, per_round)
                if variant == "export":
                    export.drain(30.0)
                times[variant].append((time.perf_counter() - started) / per_round)
        assert sdk.stats()["export"]["spans_dropped"] == 0
        return times
    finally:
        sdk.shutdown()


def report(times: dict[str, list[float]]) -> list[str]:
    base = min(times["otel"])
    rows = ["| variant | min µs a span | added µs | ratio (min) | ratio (median) |", "| --- | ---: | ---: | ---: | ---: |"]
    for variant, values in times.items():
        rows.append(f"| {variant} | {min(values) * 1e6:.2f} | {(min(values) - base) * 1e6:+.2f} | "
                    f"{min(values) / base:.2f}x | {statistics.median(values) / statistics.median(times['otel']):.2f}x |")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="three short rounds (the test suite's run)")
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--breakdown", action="store_true", help="also a no-op processor, and perfsdk's "
                        "without its detectors")
    args = parser.parse_args(argv)
    times = measure(3, 200, args.breakdown) if args.quick else measure(args.rounds, 4_096, args.breakdown)
    print("\n".join(report(times)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
