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

    .venv/bin/python benches/eval/span_cost.py            # 60 rounds, about 40 s
    .venv/bin/python benches/eval/span_cost.py --quick    # the test suite's run
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from opentelemetry.sdk.trace import TracerProvider

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


def measure(rounds: int, per_round: int) -> dict[str, list[float]]:
    """Seconds a span, each round, by variant."""
    bare, with_processor, with_export = TracerProvider(), TracerProvider(), TracerProvider()
    export_dir = tempfile.mkdtemp(prefix="perfsdk-span-cost-")
    sdk = perfsdk.init(tracer_provider=with_export, export_dir=export_dir, sample_resources=False)
    export = sdk.processor.export
    faults = Faults()
    with_processor.add_span_processor(PerfSpanProcessor(
        DetectorBank(span_detectors(["default"]), min_delta=1.0, min_ratio=0.2),
        AnomalySink(IncidentTracker(lambda name: set()), faults), faults))
    try:
        for provider in (bare, with_processor, with_export):
            spans(provider, 2_000)  # past the detectors' warm-up
        export.drain(30.0)
        times: dict[str, list[float]] = {"otel": [], "processor": [], "export": []}
        for _ in range(rounds):
            for variant, provider in (("otel", bare), ("processor", with_processor), ("export", with_export)):
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
    args = parser.parse_args(argv)
    times = measure(3, 200) if args.quick else measure(args.rounds, 4_096)
    print("\n".join(report(times)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
