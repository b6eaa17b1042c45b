"""Speed ratios before and after a change, measured in one run.

    .venv/bin/python benches/compare.py BASE_REV [--rounds 2]

Checks out ``BASE_REV`` in a temporary git worktree, builds its extensions in
place, then runs the ratio benches (each perfsdk path with its anchor)
alternately on that tree and on this one, ``--rounds`` times, and prints each
ratio's best (lowest) value before and after. Alternating rounds and ratios
within one tree's run are what survive a shared machine's noise; absolute
times here move by ±30 % from one run to the next.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
SELECT = ("floor or perfsdk_update_window or perfsdk_update_ewma or (perfsdk_arima_update and not many) "
          "or otel_sdk or processor_throughput or lru_cache_hit or adaptive_cache_get_hit or cached_decorator_hit "
          "or workload or otlp or arrow_span_exporter or analyze")
#: (what, group contains, the path, its anchor): path cost / anchor cost
RATIOS = [
    ("Z-score update (window 256) / empty call", "zscore: per-event", "test_perfsdk_update_window",
     "test_floor_empty_call"),
    ("Z-score update (EWMA) / empty call", "zscore: per-event", "test_perfsdk_update_ewma", "test_floor_empty_call"),
    ("ARIMA update / empty call", "arima(2,1,2): per-event", "test_perfsdk_arima_update", "test_floor_empty_call"),
    ("OTel span with PerfSpanProcessor / OTel span alone", "span cost", "test_otel_sdk_with_perf_processor",
     "test_otel_sdk_alone"),
    ("AdaptiveCache.get hit / functools.lru_cache hit", "cache: get that hits", "test_adaptive_cache_get_hit",
     "test_functools_lru_cache_hit"),
    ("@cached hit / functools.lru_cache hit", "cache: get that hits", "test_cached_decorator_hit",
     "test_functools_lru_cache_hit"),
    ("zipf get_or_load with controller / without", "cache: zipf", "test_workload_with_controller",
     "test_workload_without_controller"),
    ("Arrow export / OTLP protobuf encoding (per span)", "export:", "test_arrow_span_exporter_to_file",
     "test_otlp_protobuf_encoding"),
]
ABSOLUTE = [("processor alone, ns/span", "processor alone", "test_processor_throughput"),
            ("perfsdk analyze, ns/span", "perfsdk analyze", "test_analyze"),
            ("zipf get_or_load without controller, ns/op", "cache: zipf", "test_workload_without_controller")]


def run_benches(tree: Path, out: Path) -> None:
    speed = tree / "benches" / "speed"
    files = sorted(str(p) for p in (speed if speed.is_dir() else tree / "benches").glob("bench_*.py"))
    subprocess.run([sys.executable, "-m", "pytest", *files, "-q", "--benchmark-enable", "--benchmark-only",
                    "-k", SELECT, f"--benchmark-json={out}", "-p", "no:cacheprovider"],
                   cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)}, check=True, capture_output=True)


def per_item(path: Path) -> dict[tuple[str, str], float]:
    data = json.loads(path.read_text())
    return {(b["group"], b["name"]): b["stats"]["median"] / b["extra_info"].get("items", 1)
            for b in data["benchmarks"]}


def best(results: list[dict[tuple[str, str], float]], group: str, name: str) -> float:
    return min(v for r in results for (g, n), v in r.items() if group in g and n == name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", help="the git revision to compare with (e.g. HEAD~3)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", str(base), args.base], cwd=HERE, check=True,
                       capture_output=True)
        try:
            subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=base, check=True,
                           capture_output=True)
            results: dict[str, list[dict[tuple[str, str], float]]] = {"before": [], "after": []}
            for round_ in range(args.rounds):
                for label, tree in (("before", base), ("after", HERE)):
                    out = Path(tmp) / f"{label}{round_}.json"
                    run_benches(tree, out)
                    results[label].append(per_item(out))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=HERE, check=False)
    print(f"| ratio (best of {args.rounds} alternating rounds) | before ({args.base}) | after |")
    print("| --- | ---: | ---: |")
    for what, group, path, anchor in RATIOS:
        b = best(results["before"], group, path) / best(results["before"], group, anchor)
        a = best(results["after"], group, path) / best(results["after"], group, anchor)
        print(f"| {what} | {b:.2f} | {a:.2f} |")
    for what, group, path in ABSOLUTE:
        print(f"| {what} | {best(results['before'], group, path) * 1e9:.0f} | "
              f"{best(results['after'], group, path) * 1e9:.0f} |")


if __name__ == "__main__":
    main()
