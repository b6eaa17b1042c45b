"""Uncontended acquire + release, side by side on the same real psycopg connections (issue 12).

* ``AdaptivePool`` (fixed, and with its default controller) vs psycopg_pool's
  ``getconn``/``putconn`` and SQLAlchemy ``QueuePool``'s checkout/checkin
  (target: at least 2x faster than both);
* the controller's cost: with vs without it (target: under 2 % at 10,000 acquisitions a second).

Needs PostgreSQL (a private server, see tests/postgres_server.py).

    make bench
"""

from __future__ import annotations

import logging

import pytest

from benchutil import per_item
from perfsdk import AdaptivePool

psycopg = pytest.importorskip("psycopg")
LOOP = 2_000
GROUP = "pool: uncontended acquire + release (ns/pair)"


def pairs(acquire, release, n: int) -> None:
    for _ in range(n):
        release(acquire())


@pytest.mark.benchmark(group=GROUP)
def test_psycopg_pool_getconn_putconn(benchmark, postgres):
    from psycopg_pool import ConnectionPool

    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
    with ConnectionPool(postgres.dsn, min_size=2, max_size=2, open=True) as pool:
        pool.wait()
        per_item(benchmark, LOOP, anchor="psycopg_pool")
        benchmark(pairs, pool.getconn, pool.putconn, LOOP)


@pytest.mark.benchmark(group=GROUP)
def test_sqlalchemy_queuepool_checkout_checkin(benchmark, postgres):
    from sqlalchemy.pool import QueuePool

    pool = QueuePool(lambda: psycopg.connect(postgres.dsn), pool_size=2, max_overflow=0)
    per_item(benchmark, LOOP)
    benchmark(pairs, pool.connect, lambda fairy: fairy.close(), LOOP)
    pool.dispose()


@pytest.mark.benchmark(group=GROUP)
def test_adaptive_pool_fixed(benchmark, postgres):
    with AdaptivePool(lambda: psycopg.connect(postgres.dsn), size=2, controller=None) as pool:
        pool.release(pool.acquire(timeout=10))
        per_item(benchmark, LOOP)
        benchmark(pairs, pool.acquire, pool.release, LOOP)


@pytest.mark.benchmark(group=GROUP)
def test_adaptive_pool_with_controller(benchmark, postgres):
    with AdaptivePool(lambda: psycopg.connect(postgres.dsn), size=2) as pool:
        pool.release(pool.acquire(timeout=10))
        per_item(benchmark, LOOP)
        benchmark(pairs, pool.acquire, pool.release, LOOP)
