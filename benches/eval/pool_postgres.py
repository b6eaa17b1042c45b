"""AdaptivePool on a real PostgreSQL, a contended workload (issue 12).

48 client threads, each running a transaction that updates one of 8 hot rows
and reads a 200-row range, against a private PostgreSQL server: first every
fixed size in a sweep (the best fixed size in hindsight), then the adaptive
pool starting from one connection per client thread, for 120 s: the issue gives
it 60 s to settle, so its p99 is judged over the 60 s after them (the 30 s
before are shown too). Reported: throughput,
p50/p99 latency (acquire to release, as the client sees it), mean connections.

    .venv/bin/python benches/eval/pool_postgres.py            # two rounds, ~6 minutes
    .venv/bin/python benches/eval/pool_postgres.py --quick    # the test suite's run (seconds)
    .venv/bin/python benches/eval/pool_postgres.py --decisions  # ... and every decision, explained
"""

from __future__ import annotations

import argparse
import math
import sys
import threading
import time
from pathlib import Path
from typing import Collection

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

from perfsdk import AdaptivePool, PoolController  # noqa: E402

CLIENTS = 48


def nearest_rank(values: list[float], q: float) -> float:
    """The ``q``-th percentile by nearest rank (as the pool's own ``IntervalRecord.percentiles``)."""
    return float(np.percentile(values, q, method="inverted_cdf")) if values else float("nan")


def prepare(dsn: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS hot, items")
        conn.execute("CREATE TABLE hot (id int PRIMARY KEY, n bigint NOT NULL)")
        conn.execute("INSERT INTO hot SELECT g, 0 FROM generate_series(1, 8) g")
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, price int NOT NULL)")
        conn.execute("INSERT INTO items SELECT g, g % 97 FROM generate_series(1, 100000) g")
        conn.execute("ANALYZE")


def run(pool: AdaptivePool, seconds: float, measure_after: float = 0.0, settling_from: float | None = None) -> dict:
    """Closed-loop clients for ``seconds``; figures from ``measure_after`` on (``latencies``: every
    transaction's, in seconds, so rounds can be pooled), and with ``settling_from``, the same for
    the transactions started from then until ``measure_after`` (``r["settling"]``)."""
    stop = time.monotonic() + seconds
    start_measuring = time.monotonic() + measure_after
    start_settling = time.monotonic() + (measure_after if settling_from is None else settling_from)
    latencies: list[list[float]] = [[] for _ in range(CLIENTS)]
    settling: list[list[float]] = [[] for _ in range(CLIENTS)]
    sizes: list[int] = []
    trajectory: list[int] = []  # the size every second from the start

    def client(i: int) -> None:
        k = i
        while time.monotonic() < stop:
            t0 = time.monotonic()
            with pool.connection(timeout=30) as conn:
                with conn.transaction():
                    conn.execute("UPDATE hot SET n = n + 1 WHERE id = %s", (1 + k % 8,))
                    conn.execute("SELECT sum(price) FROM items WHERE id BETWEEN %s AND %s",
                                 (k * 37 % 99000, k * 37 % 99000 + 200)).fetchone()
            t1 = time.monotonic()
            if t0 >= start_measuring:
                latencies[i].append(t1 - t0)
            elif t0 >= start_settling:
                settling[i].append(t1 - t0)
            k += CLIENTS

    def sample_size() -> None:
        ticks = 0
        while time.monotonic() < stop:
            if time.monotonic() >= start_measuring:
                sizes.append(pool.target)
            if ticks % 10 == 0:
                trajectory.append(pool.target)
            ticks += 1
            time.sleep(0.1)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    threads.append(threading.Thread(target=sample_size))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    r = summary([x for lat in latencies for x in lat], seconds - measure_after,
                sum(sizes) / max(len(sizes), 1), trajectory)
    if settling_from is not None:
        r["settling"] = summary([x for lat in settling for x in lat], measure_after - settling_from, math.nan, [])
    return r


def summary(latencies: list[float], seconds: float, connections: float, trajectory: list[int]) -> dict:
    return {"tx_s": len(latencies) / seconds, "p50_ms": nearest_rank(latencies, 50) * 1e3,
            "p99_ms": nearest_rank(latencies, 99) * 1e3, "connections": connections,
            "trajectory": trajectory, "latencies": latencies, "seconds": seconds}


def pooled(runs: list[dict]) -> dict:
    """Several rounds' runs of one pool as one: their transactions together."""
    together = summary([x for r in runs for x in r["latencies"]], sum(r["seconds"] for r in runs),
                       sum(r["connections"] for r in runs) / len(runs), runs[-1]["trajectory"])
    if all("settling" in r for r in runs):
        together["settling"] = pooled([r["settling"] for r in runs])
    return together


def settled_after(trajectory: list[int], good: Collection[int]) -> int | None:
    """Seconds from which the size stays within one controller step (x/÷ 1.25, one at least) of
    a ``good`` size (fixed sizes whose p99 is within the issue's 1.2x of the best's: on a shared
    machine the sweep's best moves between runs among sizes alike) to the end (None: never)."""
    near = [any(abs(size - g) <= max(1, round(0.25 * g)) for g in good) for size in trajectory]
    if not near or not near[-1]:
        return None
    last_out = max((i for i, ok in enumerate(near) if not ok), default=-1)
    return last_out + 1


def main(dsn: str, quick: bool, all_decisions: bool = False, rounds: int = 1) -> list[str]:
    """Each round sweeps the fixed sizes (in turn forwards and backwards) then runs the adaptive pool;
    the verdicts are per round and over the rounds pooled (a size's p99 over all its transactions:
    the best of eight sizes measured once each is partly luck, the winner's curse)."""
    import psycopg

    prepare(dsn)
    factory = lambda: psycopg.connect(dsn)  # noqa: E731
    sweep = [4, 8, 48] if quick else [2, 4, 6, 8, 12, 16, 24, 48]
    seconds = 2.0 if quick else 8.0
    # the issue gives the pool 60 s to settle: its p99 is judged after them, over as long again
    adaptive_s, settle_s = (8.0, 4.0) if quick else (120.0, 60.0)
    fixed: dict[int, list[dict]] = {n: [] for n in sweep}
    adaptive: list[dict] = []
    out: list[str] = []
    for round_ in range(rounds):
        for size in sweep if round_ % 2 == 0 else sweep[::-1]:
            with AdaptivePool(factory, min_size=size, max_size=size, size=size, controller=None,
                              reset=lambda c: c.rollback()) as pool:
                fixed[size].append(run(pool, seconds, measure_after=seconds / 4))
        with AdaptivePool(factory, min_size=1, max_size=48, size=48, reset=lambda c: c.rollback(),
                          controller=PoolController(interval_seconds=1.0)) as pool:
            adaptive.append(run(pool, adaptive_s, measure_after=settle_s, settling_from=settle_s / 2))
            decisions = pool.decisions()
        if rounds > 1:
            out += [f"### Round {round_ + 1}", ""]
        out += verdict({n: runs[-1] for n, runs in fixed.items()}, adaptive[-1], settle_s) + [""]
        if all_decisions:
            out += ["decisions:", *(f"- {d}" for d in decisions), ""]
        elif decisions:
            out += [f"last decision: {decisions[-1]}", ""]
    if rounds > 1:
        out += [f"### The {rounds} rounds pooled", ""]
        out += verdict({n: pooled(runs) for n, runs in fixed.items()}, pooled(adaptive), settle_s, settling=False)
    return out


def verdict(results: dict[int, dict], r: dict, settle_s: float, settling: bool = True) -> list[str]:
    """The table and the issue's targets for the fixed sizes' ``results`` and the adaptive pool's ``r``."""
    rows = ["| pool | tx/s | p50 ms | p99 ms | connections |", "| --- | ---: | ---: | ---: | ---: |"]
    for size, f in results.items():
        rows.append(f"| fixed {size} | {f['tx_s']:.0f} | {f['p50_ms']:.1f} | {f['p99_ms']:.1f} | {size} |")
    if "settling" in r:
        early = r["settling"]
        rows.append(f"| adaptive, {settle_s / 2:.0f}-{settle_s:.0f} s (settling) | {early['tx_s']:.0f} | "
                    f"{early['p50_ms']:.1f} | {early['p99_ms']:.1f} | |")
    rows.append(f"| adaptive (from 48; after {settle_s:.0f} s, settled) | {r['tx_s']:.0f} | {r['p50_ms']:.1f} | "
                f"{r['p99_ms']:.1f} | {r['connections']:.1f} |")
    best = min(results, key=lambda n: results[n]["p99_ms"])
    one_each = results[max(results)]
    rows.append("")
    rows.append(f"best fixed size by p99: {best}; adaptive p99 / best: {r['p99_ms'] / results[best]['p99_ms']:.2f}x, "
                f"throughput / best's: {r['tx_s'] / results[best]['tx_s']:.2f}, p99 / one connection per client: "
                f"{r['p99_ms'] / one_each['p99_ms']:.2f}x")
    if settling:
        good = sorted(n for n in results if results[n]["p99_ms"] <= 1.2 * results[best]["p99_ms"])
        when = settled_after(r["trajectory"], good)
        rows.append(f"adaptive size, every 5 s: {' '.join(str(n) for n in r['trajectory'][::5])}; within a step "
                    f"of {', '.join(map(str, good))} (p99 within 1.2x of the best's) from "
                    f"{'never' if when is None else f'{when} s'} (target: within 60 s)")
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--decisions", action="store_true", help="print every decision, not only the last")
    parser.add_argument("--dsn", help="an existing server (default: a private one, started and stopped here)")
    parser.add_argument("--rounds", type=int, default=2, help="sweep and adaptive run this many times (default 2)")
    args = parser.parse_args()
    rounds = 1 if args.quick else args.rounds
    if args.dsn:
        print("\n".join(main(args.dsn, args.quick, args.decisions, rounds)))
    else:
        from postgres_server import private_server

        with private_server() as server:
            print("\n".join(main(server.dsn, args.quick, args.decisions, rounds)))
