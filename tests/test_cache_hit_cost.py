"""The controller's cost on a hit, interleaved (benches/eval/cache_hit_cost.py), run once in its
quick mode: the three variants run over every key and the table is made."""

from __future__ import annotations


def test_cache_hit_cost_runs_every_variant():
    from cache_hit_cost import KEYS, measure, report, variants

    assert all(get(key) == key for get in variants().values() for key in KEYS[:100])
    times = measure(3)
    assert set(times) == {"lru_cache", "no controller", "default controller"}
    assert all(len(v) == 3 and min(v) > 0 for v in times.values())
    rows = report(times)
    assert len(rows) == 5 and "| no controller |" in rows[3] and "1.000x" in rows[3]
