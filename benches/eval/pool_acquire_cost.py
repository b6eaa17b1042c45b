"""What the default controller adds to a pool lending 10,000 connections a second (issue 12).

``benches/speed/bench_pool.py`` times acquire + release in a tight loop, where both pools run the
same compiled path and the controller's own work -- a decision once an interval on the pool's
thread -- is spread over hundreds of thousands of acquisitions. At an ordinary rate that work
weighs more. Here one thread lends 10,000 connections a second (bursts of 100 every 10 ms,
each released at once: uncontended) for a few seconds, and the process's CPU time, every thread
counted, is compared between:

* ``loop``: the same paced loop with no pool (its own cost: pacing, sleeping);
* ``fixed``: ``AdaptivePool(controller=None)``;
* ``default controller``: ``AdaptivePool()`` with every default;
* ``with OTel metrics``: the same with an OpenTelemetry SDK ``MeterProvider`` (a real one, read
  by an in-memory reader), whose histograms take about 10 µs a ``record``: what recording the
  pool's wait and use times costs is timed where it runs (``stats()["metrics_cpu_s"]``).

What the controller adds, as a share of the pool's own work (``fixed - loop``), is timed two
ways: the CPU its decisions took (``stats()["controller_cpu_s"]``: on the pool's thread, from
``time.thread_time``), and the difference of the runs' totals (``default controller - fixed``:
the honest total, but a difference of two noisy figures). The variants take turns, round by
round; medians over the rounds.

``--settled S`` also keeps one controlled pool lending for S seconds and reports what its
decisions cost over the second half, once it has settled, against the pool's own work as the
rounds measured it.

    .venv/bin/python benches/eval/pool_acquire_cost.py                # 8 rounds of 4 s, about 140 s
    .venv/bin/python benches/eval/pool_acquire_cost.py --settled 240  # ... then one pool for 4 minutes
    .venv/bin/python benches/eval/pool_acquire_cost.py --quick        # the test suite's run
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any, Callable

from perfsdk import AdaptivePool

RATE = 10_000  # acquisitions a second
BURST = 100


class Conn:
    """A connection that costs nothing (the pool's own work is what is measured)."""

    closed = False

    def close(self) -> None:
        self.closed = True


def paced(acquire: Callable[[], Any], release: Callable[[Any], None], seconds: float) -> tuple[float, int]:
    """Lend RATE a second for ``seconds``; returns (process CPU seconds, acquisitions)."""
    bursts = int(seconds * RATE / BURST)
    period = BURST / RATE
    cpu = time.process_time()
    start = time.perf_counter()
    for b in range(bursts):
        for _ in range(BURST):
            release(acquire())
        delay = start + (b + 1) * period - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    return time.process_time() - cpu, bursts * BURST


def run_variant(name: str, seconds: float) -> tuple[float, dict[str, Any]]:
    """CPU microseconds per acquisition of one variant's run, and what its pool did."""
    if name == "loop":
        conn = Conn()
        cpu, n = paced(lambda: conn, lambda c: None, seconds)
        return cpu / n * 1e6, {}
    options: dict[str, Any] = {"controller": None} if name == "fixed" else {}
    if name == "with OTel metrics":
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader

        options["meter_provider"] = MeterProvider(metric_readers=[InMemoryMetricReader()])
    pool = AdaptivePool(Conn, size=2, **options)
    try:
        pool.release(pool.acquire(timeout=10))
        cpu, n = paced(pool.acquire, pool.release, seconds)
        stats = pool.stats()
        return cpu / n * 1e6, {"decisions": stats["decisions"], "size": stats["size"],
                               "controller_us": stats["controller_cpu_s"] / n * 1e6,
                               "metrics_us": stats["metrics_cpu_s"] / n * 1e6}
    finally:
        pool.close()


VARIANTS = ["loop", "fixed", "default controller", "with OTel metrics"]


def measure(rounds: int, seconds: float) -> tuple[dict[str, list[float]], list[dict[str, Any]], list[float]]:
    """CPU µs per acquisition of each variant, a figure a round; what the controlled pool did; and
    the µs per acquisition the OTel histograms' recording took."""
    cpu: dict[str, list[float]] = {name: [] for name in VARIANTS}
    controlled, metrics = [], []
    for r in range(rounds):
        shift = r % len(VARIANTS)
        for name in VARIANTS[shift:] + VARIANTS[:shift]:
            us, did = run_variant(name, seconds)
            cpu[name].append(us)
            if name == "default controller":
                controlled.append(did)
            elif name == "with OTel metrics":
                metrics.append(did["metrics_us"])
    return cpu, controlled, metrics


def shares(cpu: dict[str, list[float]], controlled: list[dict[str, Any]]) -> tuple[float, float]:
    """What the controller adds, as a share of the pool's own CPU (medians over the rounds): from
    the runs' CPU time (noisy: the difference of two totals), and from the CPU its decisions took."""
    loop, fixed, with_controller = (statistics.median(cpu[name]) for name in ("loop", "fixed", "default controller"))
    pool = max(fixed - loop, 1e-9)
    return (with_controller - fixed) / pool, statistics.median(did["controller_us"] for did in controlled) / pool


def settled_cost(seconds: float) -> tuple[float, int, int]:
    """One controlled pool lending for ``seconds``: µs per acquisition its controller spent over
    the second half, the decisions it made then, and those before."""
    pool = AdaptivePool(Conn, size=2)
    try:
        pool.release(pool.acquire(timeout=10))
        paced(pool.acquire, pool.release, seconds / 2)
        before = pool.stats()
        _, n = paced(pool.acquire, pool.release, seconds / 2)
        after = pool.stats()
    finally:
        pool.close()
    spent = after["controller_cpu_s"] - before["controller_cpu_s"]
    return spent / n * 1e6, after["decisions"] - before["decisions"], before["decisions"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two short rounds (the test suite's run)")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--settled", type=float, default=0.0, metavar="S",
                        help="also run one controlled pool for S seconds (its second half: settled)")
    args = parser.parse_args()
    rounds, seconds = (2, 1.0) if args.quick else (args.rounds, args.seconds)
    cpu, controlled, metrics = measure(rounds, seconds)
    print(f"{RATE:,} acquisitions a second, {rounds} rounds of {seconds:g} s; CPU µs per acquisition:")
    for name, values in cpu.items():
        print(f"  {name:<20} median {statistics.median(values):.3f}  min {min(values):.3f}  max {max(values):.3f}")
    print("  the controlled pool's decisions, size at the end: "
          + ", ".join(f"{did['decisions']} {did['size']}" for did in controlled))
    by_totals, by_decisions = shares(cpu, controlled)
    print(f"the controller adds {by_decisions:.2%} to the pool's own CPU, timed in its decisions "
          f"({by_totals:+.1%} from the runs' totals; target < 2 %)")
    pool = statistics.median(cpu["fixed"]) - statistics.median(cpu["loop"])
    print(f"recording the wait and use histograms into an OTel SDK MeterProvider adds "
          f"{statistics.median(metrics) / max(pool, 1e-9):.1%} to the pool's own CPU, timed where it runs "
          f"({statistics.median(metrics):.3f} µs an acquisition)")
    if args.settled:
        us, late, early = settled_cost(args.settled)
        print(f"one pool for {args.settled:g} s: {early} decisions in the first half, {late} in the second, "
              f"where the controller adds {us / max(pool, 1e-9):.2%} to the pool's own CPU ({us:.4f} µs an "
              f"acquisition; target < 2 %)")


if __name__ == "__main__":
    main()
