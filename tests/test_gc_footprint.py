"""What perfsdk adds to the host's full collections (benches/eval/gc_footprint.py), run once in
its quick mode: every variant runs, the span path leaves numpy unloaded, the table is made."""

from __future__ import annotations


def test_gc_footprint_runs_every_variant_and_the_span_path_stays_without_numpy():
    from gc_footprint import VARIANTS, evaluate, table

    results = evaluate(1, 3)
    assert set(results) == set(VARIANTS) and all(len(runs) == 1 for runs in results.values())
    assert [results[v][0]["numpy"] for v in VARIANTS] == [False, True, False, True]
    otel, traced = results["otel"][0]["objects"], results["perfsdk"][0]["objects"]
    assert traced < 1.5 * otel, (traced, otel)  # timing here would be noise: objects are what it walks
    rows = table(results)
    assert len(rows) == 2 + len(VARIANTS) and rows[2].startswith("| otel | ") and "| 1.00x |" in rows[2]
