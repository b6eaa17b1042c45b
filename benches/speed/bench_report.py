"""``perfsdk report`` on a large export (issue 15 target: 1 M spans rendered in under 10 s, page under 5 MB).

The directory: 1 M server spans over 50 routes (``bench_export.synthetic_spans``:
the real span schema through the real rotating writer), the anomalies
``perfsdk analyze`` finds in them, and an adaptive cache's decisions on the
same timeline. The suite runs it once, untimed, on 20,000 spans.

    .venv/bin/pytest benches/speed/bench_report.py --benchmark-enable --benchmark-only
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from bench_export import synthetic_spans
from benchutil import per_item
from perfsdk.export import DECISIONS
from perfsdk.export.analyze import analyze
from perfsdk.export.reader import read
from perfsdk.export.writer import RotatingWriter
from perfsdk.report import write_report

MAX_BYTES = 5 * 2**20


def cache_decisions(root, t0_ns: int, t1_ns: int, every_s: float = 1.0) -> int:
    """A decision a second over the spans' time range, shaped as ``decision_row`` writes them."""
    t = np.arange(t0_ns, t1_ns, int(every_s * 1e9), dtype=np.int64)
    n = len(t)
    rng = np.random.default_rng(1)
    capacity = np.clip(500 + np.cumsum(rng.choice([-25, 0, 25], n)), 100, 2000).astype(np.float64)
    before = np.r_[500.0, capacity[:-1]]
    actions = np.where(capacity > before, "grow", np.where(capacity < before, "shrink", "keep"))
    hit_ratio = np.clip(0.5 + capacity / 4000 + rng.normal(0, 0.02, n), 0, 1)
    writer = RotatingWriter(root, "decisions", DECISIONS, "shop")
    writer.write(pa.table({
        "timestamp": pa.array(t, DECISIONS.field("timestamp").type), "service.name": ["shop"] * n,
        "controller": ["products"] * n, "mode": ["auto"] * n, "state": pa.array(np.zeros(n, np.int64)),
        "state_features": pa.array([[("hit_ratio", float(h)), ("capacity", float(c))] for h, c in zip(hit_ratio, capacity)],
                                   DECISIONS.field("state_features").type),
        "action": actions, "q_values": pa.array([[0.0, 0.0, 0.0]] * n, DECISIONS.field("q_values").type),
        "reward": -hit_ratio, "value_before": before, "value_after": capacity, "applied": np.ones(n, bool),
        "guardrail": pa.nulls(n, pa.string()),
        "explanation": [f"products: {a} (capacity {b:g} -> {c:g}) after an interval with hit ratio {h:.0%}"
                        for a, b, c, h in zip(actions, before, capacity, hit_ratio)],
    }, schema=DECISIONS))
    writer.close()
    return n


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory, request):
    quick = request.config.getoption("benchmark_disable")
    n = 20_000 if quick else 1_000_000
    root = tmp_path_factory.mktemp("report-bench")
    synthetic_spans(root, n)
    analyze(root, progress=False)  # the anomalies table
    times = read(root, columns=["start_time"])["start_time"]
    import pyarrow.compute as pc

    bounds = pc.min_max(pc.cast(times, pa.int64())).as_py()
    cache_decisions(root, bounds["min"], bounds["max"])
    return root, n


@pytest.mark.benchmark(group="perfsdk report (spans/s)")
def test_report(benchmark, export_dir, tmp_path):
    root, n = export_dir
    out = tmp_path / "report.html"
    per_item(benchmark, n)
    page = benchmark.pedantic(write_report, args=(root,), kwargs={"out": out}, rounds=3, iterations=1)
    size = page.stat().st_size
    benchmark.extra_info["bytes"] = size
    assert size < MAX_BYTES
    text = page.read_text(encoding="utf-8")
    assert text.count("p50 and p99 latency</figcaption>") == 6 and "cache products: capacity" in text
