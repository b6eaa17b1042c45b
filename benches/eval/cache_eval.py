"""Adaptive cache evaluation on real traces (issue 6).

Hit ratio at equal capacity, on the ARC paper's OLTP trace and the LIRS traces
in ../shared/data/cache-traces, for:

* LRU (``AdaptiveCache(controller=None)``: functools.lru_cache's policy),
* ARC (a faithful implementation of Megiddo & Modha's algorithm, below),
* W-TinyLFU (the ``theine`` package, Caffeine's design),
* perfsdk with its window fixed at 1 % (W-TinyLFU),
* perfsdk adaptive: capacity pinned, the controller moving the window,
* Belady's optimum (a Numba simulation with next-use times), the ceiling.

And sizing: total cost (misses x miss_cost + entries held x memory_cost, per
request) of the adaptive cache against every fixed LRU capacity, the best
fixed capacity in hindsight coming from one pass of Mattson's stack-distance
algorithm (a Numba kernel with a Fenwick tree), on a stationary trace and on
phase-changing synthetic ones.

    .venv/bin/python benches/eval/cache_eval.py            # the tables (a few minutes)
    .venv/bin/python benches/eval/cache_eval.py --quick    # the first 50,000 requests of each trace
    .venv/bin/python benches/eval/cache_eval.py --shifts   # moving popularity at three capacities
    .venv/bin/python benches/eval/cache_eval.py --seeds 8  # sizing over the learner's seeds 0-7
"""

from __future__ import annotations

import argparse
import functools
import gzip
import heapq
import sys
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
from numba import njit

from perfsdk import AdaptiveCache, CacheController

TRACES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cache-traces"
HIT_RATIO_RUNS = {  # trace -> capacities
    "arc/OLTP.lis.gz": [1000, 5000, 15000],
    "lirs/gli.trace.gz": [250, 1000],
    "lirs/cs.trace.gz": [250, 1000],
    "lirs/cpp.trace.gz": [250, 1000],
    "lirs/multi2.trace.gz": [500, 2000],
    "lirs/sprite.trace.gz": [100, 500],
    "lirs/loop.trace.gz": [100, 500],
    "lirs/zigzag.trace.gz": [500, 2000],
}


def load_trace(relative: str, root: Path = TRACES, limit: int | None = None) -> np.ndarray:
    """Keys of a trace, in order, as dense integers."""
    keys: list[int] = []
    with gzip.open(root / relative, "rt", newline=None) as f:
        if relative.startswith("arc/"):
            for line in f:  # "start count ignore reqnum": keys start .. start+count-1
                start, count = line.split()[:2]
                keys.extend(range(int(start), int(start) + int(count)))
                if limit and len(keys) >= limit:
                    break
        else:
            for line in f:
                line = line.strip()
                if line and line != "*":
                    keys.append(int(line))
                    if limit and len(keys) >= limit:
                        break
    return np.unique(np.array(keys[:limit] if limit else keys, dtype=np.int64), return_inverse=True)[1]


# ---- policies ------------------------------------------------------------------------

def perfsdk_hits(trace: np.ndarray, capacity: int, **options) -> int:
    cache = AdaptiveCache(capacity, **options)
    get, put = cache.get, cache.put
    hits = 0
    for k in trace.tolist():
        if get(k) is None:
            put(k, True)
        else:
            hits += 1
    return hits


def lru_hits(trace, capacity):
    return perfsdk_hits(trace, capacity, controller=None)


def tinylfu_hits(trace, capacity):
    return perfsdk_hits(trace, capacity, controller=None, window=0.01)


def adaptive_policy_hits(trace, capacity):
    """Capacity pinned, so only the window (the policy) adapts: hit ratio at equal capacity."""
    return perfsdk_hits(trace, capacity, min_capacity=capacity, max_capacity=capacity,
                        controller=CacheController(interval=2000, miss_cost=1.0, memory_cost=0.0))


def wtinylfu_hits(trace, capacity):
    from theine import Cache

    cache = Cache(capacity)
    hits = 0
    for k in trace.tolist():
        if cache.get(k)[1]:
            hits += 1
        else:
            cache.set(k, True)
    cache.close()
    return hits


def arc_hits(trace, c):
    """ARC (Megiddo & Modha, FAST 2003), as in the paper's pseudocode."""
    t1, t2, b1, b2 = OrderedDict(), OrderedDict(), OrderedDict(), OrderedDict()
    p = 0.0
    hits = 0

    def replace(in_b2):
        if t1 and (len(t1) > p or (in_b2 and len(t1) == p)):
            old, _ = t1.popitem(last=False)
            b1[old] = None
        else:
            old, _ = t2.popitem(last=False)
            b2[old] = None

    for x in trace.tolist():
        if x in t1:
            del t1[x]
            t2[x] = None
            hits += 1
        elif x in t2:
            t2.move_to_end(x)
            hits += 1
        elif x in b1:
            p = min(c, p + max(len(b2) / len(b1), 1))
            replace(False)
            del b1[x]
            t2[x] = None
        elif x in b2:
            p = max(0.0, p - max(len(b1) / len(b2), 1))
            replace(True)
            del b2[x]
            t2[x] = None
        else:
            if len(t1) + len(b1) == c:
                if len(t1) < c:
                    b1.popitem(last=False)
                    replace(False)
                else:
                    t1.popitem(last=False)
            elif len(t1) + len(b1) < c and len(t1) + len(t2) + len(b1) + len(b2) >= c:
                if len(t1) + len(t2) + len(b1) + len(b2) == 2 * c:
                    b2.popitem(last=False)
                replace(False)
            t1[x] = None
    return hits


@njit(cache=False)
def belady_hits(trace, capacity):
    """Belady's MIN: evict the entry used again furthest in the future."""
    n = trace.shape[0]
    next_use = np.empty(n, np.int64)
    last = np.full(trace.max() + 1, n, np.int64)
    for i in range(n - 1, -1, -1):
        next_use[i] = last[trace[i]]
        last[trace[i]] = i
    in_cache = np.zeros(trace.max() + 1, np.bool_)
    current_next = np.zeros(trace.max() + 1, np.int64)
    heap = [(np.int64(0), np.int64(0))]
    heap.pop()
    size = 0
    hits = 0
    for i in range(n):
        k = trace[i]
        if in_cache[k]:
            hits += 1
        else:
            if size == capacity:
                while True:  # lazy deletion: skip stale heap entries
                    neg_next, victim = heapq.heappop(heap)
                    if in_cache[victim] and current_next[victim] == -neg_next:
                        break
                in_cache[victim] = False
                size -= 1
            in_cache[k] = True
            size += 1
        current_next[k] = next_use[i]
        heapq.heappush(heap, (-next_use[i], k))
    return hits


@njit(cache=False)
def stack_distances(trace):
    """Mattson: each access's LRU stack distance (1-based; 0 for a first access).

    A Fenwick tree over time marks each key's last access, so the distance is
    the number of marks after the previous access of this key: O(n log n).
    """
    n = trace.shape[0]
    tree = np.zeros(n + 1, np.int64)
    last = np.full(trace.max() + 1, -1, np.int64)
    out = np.zeros(n, np.int64)
    for t in range(n):
        k = trace[t]
        p = last[k]
        if p >= 0:
            # marks in (p, t): prefix(t) - prefix(p + 1)
            total = 0
            i = t
            while i > 0:
                total += tree[i]
                i -= i & -i
            i = p + 1
            while i > 0:
                total -= tree[i]
                i -= i & -i
            out[t] = total + 1
            i = p + 1
            while i <= n:
                tree[i] -= 1
                i += i & -i
        i = t + 1
        while i <= n:
            tree[i] += 1
            i += i & -i
        last[k] = t
    return out


def lru_hits_at_every_capacity(trace: np.ndarray) -> np.ndarray:
    """hits[c] = LRU hits with capacity c, for every c (one Mattson pass)."""
    d = stack_distances(trace)
    counts = np.bincount(d[d > 0], minlength=2)
    return np.concatenate(([0], np.cumsum(counts[1:])))


POLICIES = {
    "LRU": lru_hits, "ARC": arc_hits, "W-TinyLFU (theine)": wtinylfu_hits,
    "perfsdk W-TinyLFU (fixed 1 %)": tinylfu_hits, "perfsdk adaptive": adaptive_policy_hits,
    "Belady (optimum)": lambda t, c: belady_hits(t, c),
}


def hit_ratio_table(limit: int | None = None, runs=HIT_RATIO_RUNS) -> list[dict]:
    rows = []
    for name, capacities in runs.items():
        trace = load_trace(name, limit=limit)
        for c in capacities:
            row = {"trace": name.split("/")[1].split(".")[0], "capacity": c, "requests": len(trace)}
            for policy, fn in POLICIES.items():
                row[policy] = 100.0 * fn(trace, c) / len(trace)
            rows.append(row)
    return rows


# ---- sizing ------------------------------------------------------------------------------

PHASE_TRACES = ("zipf (stationary)", "moving hot set", "scan bursts", "loop then zipf")


def phase_trace(kind: str, n: int = 400_000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "zipf (stationary)":
        return rng.zipf(1.2, n) % 50_000
    if kind == "moving hot set":
        parts = [(rng.zipf(1.2, n // 4) % 20_000) + shift for shift in (0, 20_000, 40_000, 60_000)]
        return np.concatenate(parts)
    if kind == "scan bursts":
        base = rng.zipf(1.2, n) % 20_000
        for start in range(n // 8, n, n // 4):
            base[start : start + n // 16] = 100_000 + np.arange(n // 16)
        return base
    if kind == "loop then zipf":
        return np.concatenate([np.arange(n // 2) % 3_000, rng.zipf(1.2, n // 2) % 20_000])
    raise ValueError(kind)


def replay_cost(trace: np.ndarray, cache: AdaptiveCache, miss_cost: float, memory_cost: float) -> float:
    """Total cost of ``trace`` through ``cache``: misses x miss_cost + entries held x memory_cost."""
    get, put = cache.get, cache.put
    cost = 0.0
    for k in trace.tolist():
        cost += cache.capacity * memory_cost
        if get(k) is None:
            cost += miss_cost
            put(k, True)
    return cost


FIXED_GRID = 12  # fixed capacities of perfsdk's own policy tried, log-spaced over the limits


def sizing_row(trace: np.ndarray, miss_cost: float, memory_cost: float, start: int,
               lo: int, hi: int, seed: int = 0, own_policy: bool = True) -> dict:
    """Three comparisons, so policy and sizing are not mixed up:

    * sizing alone: the controller sizing a plain LRU cache (window fixed at 100 %)
      against every fixed LRU capacity (Mattson, exact);
    * the whole cache (sizing + its adaptive policy) against every fixed LRU capacity
      -- the issue's comparison;
    * the whole cache against its own policy at fixed capacities (a log grid; ``own_policy``).

    ``seed`` is the learner's (its exploration).
    """
    hits_at = lru_hits_at_every_capacity(trace)
    capacities = np.arange(lo, hi + 1)
    fixed = (len(trace) - hits_at[np.minimum(capacities, len(hits_at) - 1)]) * miss_cost \
        + capacities * memory_cost * len(trace)
    best_lru = float(fixed.min())

    def controller(**options):
        return CacheController(interval=2000, miss_cost=miss_cost, memory_cost=memory_cost, seed=seed, **options)

    lru_sized = replay_cost(trace, AdaptiveCache(start, min_capacity=lo, max_capacity=hi, window=1.0,
                                                 controller=controller(adapt_window=False)),
                            miss_cost, memory_cost)
    adaptive = AdaptiveCache(start, min_capacity=lo, max_capacity=hi, controller=controller())
    whole = replay_cost(trace, adaptive, miss_cost, memory_cost)
    row = {"best fixed LRU capacity": int(capacities[np.argmin(fixed)]), "best fixed LRU cost": best_lru,
           "sizing alone (LRU) / best fixed LRU": lru_sized / best_lru,
           "adaptive / best fixed LRU": whole / best_lru}
    if not own_policy:
        return row
    grid = sorted({int(c) for c in np.geomspace(lo, hi, FIXED_GRID).round()})
    same_policy = min(
        replay_cost(trace, AdaptiveCache(c, min_capacity=c, max_capacity=c, controller=controller()),
                    miss_cost, memory_cost)
        for c in grid)
    return {**row, "adaptive / own policy at best fixed capacity": whole / same_policy,
            "adaptive final capacity": adaptive.capacity}


DEFAULTS_TRACES = ("arc/OLTP.lis.gz", "lirs/gli.trace.gz", "lirs/cs.trace.gz", "lirs/cpp.trace.gz",
                   "lirs/multi2.trace.gz", "lirs/sprite.trace.gz", "lirs/loop.trace.gz", "lirs/zigzag.trace.gz")
DEFAULTS_SHARES = (0.01, 0.05, 0.10, 0.25, 0.50)  # capacities, as shares of the trace's distinct keys


def default_run(trace: np.ndarray, capacity: int, **options) -> tuple[float, float]:
    """Hit ratio and mean capacity of an ``AdaptiveCache(capacity, **options)`` over ``trace``."""
    cache = AdaptiveCache(capacity, **options)
    get, put = cache.get, cache.put
    hits, held, samples = 0, 0, 0
    for i, k in enumerate(trace.tolist()):
        if get(k) is None:
            put(k, True)
        else:
            hits += 1
        if i % 1000 == 0:
            held += cache.capacity
            samples += 1
    return hits / len(trace), held / max(samples, 1)


def defaults_row(name: str, trace: np.ndarray, share: float) -> dict:
    """The cache with every default against the same policy pinned at the capacity given (the
    issue's comparison: does the default objective honour the size the user asked for?) and
    against a plain fixed LRU of that size."""
    capacity = max(10, int(share * (int(trace.max()) + 1)))
    adaptive, mean_capacity = default_run(trace, capacity)
    pinned, _ = default_run(trace, capacity, min_capacity=capacity, max_capacity=capacity,
                            controller=CacheController(miss_cost=1.0, memory_cost=0.0))
    lru, _ = default_run(trace, capacity, controller=None)
    return {"trace": name, "capacity": f"{capacity} ({share:.0%})", "defaults": 100 * adaptive,
            "same policy, fixed": 100 * pinned, "LRU, fixed": 100 * lru,
            "defaults - fixed (points)": 100 * (adaptive - pinned),
            "mean capacity / given": mean_capacity / capacity}


def defaults_table(limit: int | None = None, traces=DEFAULTS_TRACES, shares=DEFAULTS_SHARES) -> list[dict]:
    runs = {"zipf 1.1 (200,000 keys)": np.random.default_rng(0).zipf(1.1, limit or 1_000_000) % 200_000}
    runs.update({t.split("/")[1].split(".")[0]: load_trace(t, limit=limit) for t in traces})
    return [defaults_row(name, np.unique(trace, return_inverse=True)[1], share)
            for name, trace in runs.items() for share in shares]


SHIFT_RUNS = ((1.2, 20_000), (1.05, 50_000), (1.4, 5_000))  # (zipf exponent, keys a phase)
SHIFT_CAPACITIES = (500, 2000, 8000)


def shifts_table(n: int = 400_000) -> list[dict]:
    """Popularity that moves beyond the evaluation's trace: four zipf phases over fresh key ranges,
    the capacity pinned; the adaptive cache's misses against LRU's at the same capacity (the
    popularity watch's generality check, docs/benchmarks.md)."""
    rows = []
    for alpha, keys in SHIFT_RUNS:
        rng = np.random.default_rng(5)
        trace = np.concatenate([(rng.zipf(alpha, n // 4) % keys) + phase * 10**6 for phase in range(4)])
        row: dict = {"popularity": f"zipf {alpha} over {keys:,} keys"}
        for capacity in SHIFT_CAPACITIES:
            lru = len(trace) - lru_hits(trace, capacity)
            ours = len(trace) - adaptive_policy_hits(trace, capacity)
            row[f"capacity {capacity:,}: misses / LRU's"] = ours / lru
        rows.append(row)
    return rows


def seeds_table(traces: dict[str, np.ndarray], sizing, seeds: int) -> list[dict]:
    """Sizing alone and the whole cache against the best fixed LRU, per learner seed and on average."""
    rows = []
    for kind, trace in traces.items():
        runs = [sizing(trace, seed=seed, own_policy=False) for seed in range(seeds)]
        for column in ("sizing alone (LRU) / best fixed LRU", "adaptive / best fixed LRU"):
            ratios = [run[column] for run in runs]
            rows.append({"trace": kind, "comparison": column.split(" / ")[0], "mean": float(np.mean(ratios)),
                         "worst": max(ratios), "by seed": " ".join(f"{r:.3f}" for r in ratios)})
    return rows


def markdown(rows: list[dict]) -> str:
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join(f"{v:.1f}" if isinstance(v, float) and v >= 10 or isinstance(v, float) and v > 1.5
                                       else f"{v:.3f}" if isinstance(v, float) else str(v) for v in r.values()) + " |")
    return "\n".join(lines)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="first 50,000 requests of each trace")
    parser.add_argument("--defaults", action="store_true",
                        help="only the default settings against the capacity given (issue 16)")
    parser.add_argument("--seeds", type=positive_int, metavar="K",
                        help="only the sizing comparisons, over the learner's seeds 0..K-1 (exploration)")
    parser.add_argument("--shifts", action="store_true",
                        help="only moving popularity at three capacities, against LRU (issue 16)")
    args = parser.parse_args(argv)
    started = time.time()
    if args.shifts:
        print("## Moving popularity: misses against LRU's at the same capacity\n")
        print(markdown(shifts_table(100_000 if args.quick else 400_000)))
        print(f"\n({time.time() - started:.0f} s)")
        return 0
    if not TRACES.is_dir():
        print(f"traces not found at {TRACES}", file=sys.stderr)
        return 2
    if args.defaults:
        print("## Default settings against the capacity given (hit ratio, %)\n")
        print(markdown(defaults_table(limit=50_000 if args.quick else None)))
        print(f"\n({time.time() - started:.0f} s)")
        return 0
    n = 100_000 if args.quick else 400_000
    traces = {kind: phase_trace(kind, n) for kind in PHASE_TRACES}
    traces["OLTP (real)"] = load_trace("arc/OLTP.lis.gz", limit=n if args.quick else None)
    sizing = functools.partial(sizing_row, miss_cost=1.0, memory_cost=2e-5, start=2000, lo=250, hi=16_000)
    if args.seeds:
        print(f"## Sizing over the learner's seeds 0-{args.seeds - 1}: cost / best fixed LRU\n")
        print(markdown(seeds_table(traces, sizing, args.seeds)))
        print(f"\n({time.time() - started:.0f} s)")
        return 0
    print("## Hit ratio (%) at equal capacity\n")
    print(markdown(hit_ratio_table(limit=50_000 if args.quick else None)))
    print("\n## Sizing: total cost against the best fixed capacity in hindsight\n")
    print(markdown([{"trace": kind, **sizing(trace)} for kind, trace in traces.items()]))
    print(f"\n({time.time() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
