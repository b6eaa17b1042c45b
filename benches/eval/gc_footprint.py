"""What perfsdk adds to the host's full garbage collections (issue 11).

A full collection walks every object the collector tracks, so its time follows
what a library leaves alive. Each variant runs in a fresh process, in turns
(the order rotates each round), and reports the objects tracked and the
minimum of 30 timed ``gc.collect()`` calls:

* ``otel``: the OpenTelemetry SDK, a ``TracerProvider`` and 1,200 spans over 20 names;
* ``numpy``: the same, with numpy imported (what a host that uses numpy carries anyway);
* ``perfsdk``: the same under ``perfsdk.init()`` (the default detector on every name,
  past its learning period), no export;
* ``perfsdk+export``: the same with ``export_dir`` (pyarrow, numpy and the writer).

    .venv/bin/python benches/eval/gc_footprint.py            # 8 rounds, about 30 s
    .venv/bin/python benches/eval/gc_footprint.py --quick    # the test suite's run
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import textwrap

VARIANTS = ("otel", "numpy", "perfsdk", "perfsdk+export")

SCRIPT = textwrap.dedent("""
    import gc, json, sys, tempfile, time
    from opentelemetry.sdk.trace import TracerProvider
    variant, timings = sys.argv[1], int(sys.argv[2])
    provider = TracerProvider()
    sdk = None
    if variant == "numpy":
        import numpy
    elif variant.startswith("perfsdk"):
        import perfsdk
        sdk = perfsdk.init(tracer_provider=provider, sample_resources=False,
                           export_dir=tempfile.mkdtemp() if variant.endswith("export") else None)
    tracer = provider.get_tracer("bench")
    for i in range(1200):  # past the default detector's learning period (388 a name) on 2 names
        with tracer.start_as_current_span(f"GET /route{i % 20 if i < 400 else i % 2}"):
            pass
    if sdk is not None:
        sdk.force_flush()
    gc.collect()
    best = float("inf")
    for _ in range(timings):
        start = time.perf_counter()
        gc.collect()
        best = min(best, time.perf_counter() - start)
    print(json.dumps({"objects": len(gc.get_objects()), "ms": best * 1e3,
                      "numpy": "numpy" in sys.modules}))
    if sdk is not None:
        sdk.shutdown()
""")


def run_once(variant: str, timings: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", SCRIPT, variant, str(timings)],
                         capture_output=True, text=True, timeout=300)
    if out.returncode:
        raise RuntimeError(f"{variant}: {out.stderr.strip()}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def evaluate(rounds: int, timings: int) -> dict[str, list[dict[str, float]]]:
    results: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    for r in range(rounds):
        order = VARIANTS[r % len(VARIANTS):] + VARIANTS[:r % len(VARIANTS)]
        for variant in order:
            results[variant].append(run_once(variant, timings))
    return results


def table(results: dict[str, list[dict[str, float]]]) -> list[str]:
    base_ms = statistics.median(r["ms"] for r in results["otel"])
    base_objects = statistics.median(r["objects"] for r in results["otel"])
    lines = ["| variant | objects tracked | vs otel | full gc.collect(), ms (median of per-process minima) "
             "| vs otel | numpy loaded |", "| --- | ---: | ---: | ---: | ---: | --- |"]
    for variant, runs in results.items():
        objects = statistics.median(r["objects"] for r in runs)
        ms = statistics.median(r["ms"] for r in runs)
        lines.append(f"| {variant} | {objects:,.0f} | {objects / base_objects:.2f}x | {ms:.2f} | "
                     f"{ms / base_ms:.2f}x | {'yes' if all(r['numpy'] for r in runs) else 'no'} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="one round of 3 timings (the test suite's run)")
    args = parser.parse_args(argv)
    results = evaluate(1, 3) if args.quick else evaluate(args.rounds, 30)
    print("\n".join(table(results)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
