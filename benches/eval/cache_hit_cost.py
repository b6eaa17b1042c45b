"""What the default controller adds to an ``AdaptiveCache`` hit, in interleaved rounds (issue 16).

``benches/speed/bench_cache.py`` times the same three gets one after the other (pytest-benchmark's
way), and on a shared machine whose speed drifts within a minute that drift lands in a ratio of a
few per cent. Here the variants take turns, round by round, and the minimum and median of each are
compared -- 10,000 shuffled keys, every get a hit:

* ``lru_cache``: ``functools.lru_cache`` (the anchor);
* ``no controller``: ``AdaptiveCache(16_384, controller=None, window=0.01)``, the same W-TinyLFU policy, fixed;
* ``default controller``: ``AdaptiveCache(16_384)`` with every default (a decision every 10,000 gets or
  30 s; fewer once settled: see ``perfsdk.adapt.controller.SETTLED_STRETCH``).

    .venv/bin/python benches/eval/cache_hit_cost.py            # 300 rounds, about 15 s
    .venv/bin/python benches/eval/cache_hit_cost.py --quick    # the test suite's run
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import numpy as np

from perfsdk import AdaptiveCache

KEYS = np.random.default_rng(1).permutation(10_000).tolist()


def _load(key: int) -> int:
    return key


def variants() -> dict:
    """The three gets, each over a cache already holding every key."""
    controlled = AdaptiveCache(16_384)
    fixed = AdaptiveCache(16_384, controller=None, window=0.01)
    lru = functools.lru_cache(maxsize=16_384)(_load)
    for key in KEYS:
        controlled.get_or_load(key, _load)
        fixed.get_or_load(key, _load)
        lru(key)
    return {"lru_cache": lru, "no controller": fixed.get, "default controller": controlled.get}


def measure(rounds: int) -> dict[str, list[float]]:
    """ns per get of each variant, one figure a round; the variants' order rotates."""
    gets = variants()
    names = list(gets)
    times: dict[str, list[float]] = {name: [] for name in names}
    clock = time.perf_counter_ns
    for r in range(rounds):
        for name in names[r % 3:] + names[:r % 3]:
            get = gets[name]
            started = clock()
            for key in KEYS:
                get(key)
            times[name].append((clock() - started) / len(KEYS))
    return times


def report(times: dict[str, list[float]]) -> list[str]:
    base = times["no controller"]
    rows = ["| get | min ns | median ns | min vs no controller | median vs no controller |",
            "| --- | ---: | ---: | ---: | ---: |"]
    for name, values in times.items():
        rows.append(f"| {name} | {min(values):.1f} | {statistics.median(values):.1f} | "
                    f"{min(values) / min(base):.3f}x | {statistics.median(values) / statistics.median(base):.3f}x |")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few rounds (the test suite's run)")
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args(argv)
    print("\n".join(report(measure(5 if args.quick else args.rounds))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
