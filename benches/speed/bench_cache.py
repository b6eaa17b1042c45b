"""AdaptiveCache speed, side by side (issue 6 targets).

* a get that hits: ``AdaptiveCache.get`` and a ``@perfsdk.cached`` call vs
  ``functools.lru_cache`` (target: within 1.5x) and ``cachetools.LRUCache``
  (target: at least 3x faster);
* the controller's cost, amortised: the same zipf workload through a cache
  without a controller and with one deciding every 10,000 gets, in advisory
  mode so both caches do the same work otherwise (target: under 5 %).

    make bench
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from benchutil import bench_per_event, per_item
from perfsdk import AdaptiveCache, CacheController, cached

KEYS = list(range(1000)) * 20


def _load(key):
    return key
HITS = "cache: get that hits (ns/get)"


@pytest.mark.benchmark(group=HITS)
def test_functools_lru_cache_hit(benchmark):
    @functools.lru_cache(maxsize=2048)
    def f(k):
        return k

    for k in range(1000):
        f(k)
    bench_per_event(benchmark, KEYS, f, anchor="functools.lru_cache")


@pytest.mark.benchmark(group=HITS)
def test_cachetools_lru_hit(benchmark):
    cachetools = pytest.importorskip("cachetools")
    cache = cachetools.LRUCache(2048)
    for k in range(1000):
        cache[k] = k
    bench_per_event(benchmark, KEYS, cache.__getitem__, anchor="cachetools.LRUCache")


@pytest.mark.benchmark(group=HITS)
def test_adaptive_cache_get_hit(benchmark):
    cache = AdaptiveCache(2048, controller=None)
    for k in range(1000):
        cache[k] = k
    bench_per_event(benchmark, KEYS, cache.get)


@pytest.mark.benchmark(group=HITS)
def test_cached_decorator_hit(benchmark):
    @cached(maxsize=2048, controller=None)
    def f(k):
        return k

    for k in range(1000):
        f(k)
    bench_per_event(benchmark, KEYS, f)


SHUFFLED = np.random.default_rng(1).permutation(10_000).tolist()  # issue 16's case: every get a hit
CONTROLLED = "cache: hit with the default controller, 10,000 shuffled keys (ns/get)"


@pytest.mark.benchmark(group=CONTROLLED)
def test_lru_cache_hit_shuffled(benchmark):
    f = functools.lru_cache(maxsize=16_384)(_load)
    for k in SHUFFLED:
        f(k)
    bench_per_event(benchmark, SHUFFLED, f, anchor="functools.lru_cache, shuffled")


@pytest.mark.benchmark(group=CONTROLLED)
def test_adaptive_cache_hit_default_controller(benchmark):
    cache = AdaptiveCache(16_384)  # every default: a controller deciding every 10,000 gets or 30 s
    for k in SHUFFLED:
        cache.get_or_load(k, _load)
    bench_per_event(benchmark, SHUFFLED, cache.get)


@pytest.mark.benchmark(group=CONTROLLED)
def test_adaptive_cache_hit_no_controller(benchmark):
    cache = AdaptiveCache(16_384, controller=None, window=0.01)  # the same W-TinyLFU policy, fixed
    for k in SHUFFLED:
        cache.get_or_load(k, _load)
    bench_per_event(benchmark, SHUFFLED, cache.get)


@pytest.mark.benchmark(group=CONTROLLED)
def test_cached_hit_default_controller(benchmark):
    f = cached(maxsize=16_384)(_load)
    for k in SHUFFLED:
        f(k)
    bench_per_event(benchmark, SHUFFLED, f)


WORKLOAD = (np.random.default_rng(0).zipf(1.2, 100_000) % 20_000).tolist()
CONTROL = "cache: zipf workload, get_or_load (ns/op)"


def _workload(benchmark, make_cache, anchor=None):
    """The whole workload through a fresh cache per round (the same work every round)."""

    def run(cache):
        get_or_load = cache.get_or_load
        for key in WORKLOAD:
            get_or_load(key, _load)

    per_item(benchmark, len(WORKLOAD), anchor)
    benchmark.pedantic(run, setup=lambda: ((make_cache(),), {}), rounds=15, iterations=1)


@pytest.mark.benchmark(group=CONTROL)
def test_workload_without_controller(benchmark):
    _workload(benchmark, lambda: AdaptiveCache(2000, controller=None, window=0.01), anchor="no controller")


@pytest.mark.benchmark(group=CONTROL)
def test_workload_with_controller(benchmark):
    # advisory: every decision is computed and recorded, none applied, so the
    # workload itself (hit ratio, evictions) is the same as without a controller
    _workload(benchmark, lambda: AdaptiveCache(2000, controller=CacheController(), mode="advisory"))
