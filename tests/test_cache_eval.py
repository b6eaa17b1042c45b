"""The cache evaluation bench (benches/eval/cache_eval.py): its reference policies are right."""

from __future__ import annotations

import functools

import numpy as np
import pytest

import cache_eval


@pytest.fixture(scope="module")
def trace():
    rng = np.random.default_rng(0)
    return np.concatenate([rng.zipf(1.2, 6000) % 800, np.arange(3000) % 300]).astype(np.int64)


def test_mattson_matches_a_simulated_lru_at_every_capacity(trace):
    hits_at = cache_eval.lru_hits_at_every_capacity(trace)
    for capacity in (1, 10, 100, 299, 300, 700):
        assert hits_at[min(capacity, len(hits_at) - 1)] == cache_eval.lru_hits(trace, capacity)


def test_belady_is_the_ceiling(trace):
    for capacity in (20, 100, 400):
        best = cache_eval.belady_hits(trace, capacity)
        for name in ("LRU", "ARC", "perfsdk W-TinyLFU (fixed 1 %)", "perfsdk adaptive"):
            assert cache_eval.POLICIES[name](trace, capacity) <= best, name


def test_arc_resists_a_scan_that_flushes_lru():
    hot = list(range(50)) * 20
    scan = list(range(1000, 3000))
    trace = np.array(hot + scan + hot, dtype=np.int64)
    assert cache_eval.arc_hits(trace, 100) > cache_eval.lru_hits(trace, 100)


def test_real_traces_load(shared_data):
    oltp = cache_eval.load_trace("arc/OLTP.lis.gz", shared_data / "cache-traces", limit=5000)
    loop = cache_eval.load_trace("lirs/loop.trace.gz", shared_data / "cache-traces", limit=5000)
    assert len(oltp) == len(loop) == 5000 and oltp.min() == 0 and loop.dtype == np.int64
    rows = cache_eval.hit_ratio_table(limit=3000, runs={"lirs/gli.trace.gz": [250]})
    assert rows[0]["Belady (optimum)"] >= max(v for k, v in rows[0].items() if isinstance(v, float))


def test_moving_popularity_costs_at_most_a_few_per_cent_against_lru_and_wins_in_small_caches():
    """``cache_eval.py --shifts`` (seeded, no shared data; about a second): four zipf phases over
    fresh key ranges. Without the popularity watch a cache of 8,000 missed 30 % more than LRU on
    zipf 1.2; without holding recency for three times the capacity, 8 % more."""
    rows = cache_eval.shifts_table()
    assert [row["popularity"] for row in rows] == ["zipf 1.2 over 20,000 keys", "zipf 1.05 over 50,000 keys",
                                                   "zipf 1.4 over 5,000 keys"]
    assert all(row["capacity 500: misses / LRU's"] < 0.95 for row in rows)  # frequency wins, moves answered
    assert all(ratio < 1.05 for row in rows for key, ratio in row.items() if key.startswith("capacity"))


def test_sizing_a_plain_lru_cache_finds_a_loop_and_keeps_to_it():
    """``cache_eval.py --seeds``, the loop-then-zipf trace (seeded, no shared data; a few
    seconds): sizing alone on a plain LRU policy within 1.1x of the best fixed LRU on each of
    four learner seeds, the whole cache below it. When exploration could try a shrink its
    evidence measured as losing every hit, seed 3 reached 1.23x (it shrank off a loop that just
    fits, twice); while the cliff and the room above it were one learner state, seed 0 stayed
    1.115x (grown past the loop by exploring, it held the room for about 80 intervals)."""
    sizing = functools.partial(cache_eval.sizing_row, miss_cost=1.0, memory_cost=2e-5, start=2000, lo=250, hi=16_000)
    rows = cache_eval.seeds_table({"loop then zipf": cache_eval.phase_trace("loop then zipf")}, sizing, 4)
    alone, whole = rows
    assert alone["comparison"] == "sizing alone (LRU)" and whole["comparison"] == "adaptive"
    assert alone["worst"] < 1.1 and whole["worst"] < 1.0


def test_the_seeds_table_runs(shared_data, capsys):
    assert cache_eval.main(["--quick", "--seeds", "1"]) == 0
    assert "| OLTP (real) | adaptive |" in capsys.readouterr().out
