"""AdaptivePool on a real PostgreSQL (a private server: see postgres_server.py)."""

from __future__ import annotations

import threading

import pytest

from perfsdk import AdaptivePool, PoolController

psycopg = pytest.importorskip("psycopg")


def rollback(conn) -> None:
    """Return a connection clean: whatever its borrower left open is rolled back."""
    conn.rollback()


def test_threads_share_real_connections_transactions_are_reset_and_all_come_back(postgres):
    with psycopg.connect(postgres.dsn, autocommit=True) as setup:
        setup.execute("DROP TABLE IF EXISTS counters")
        setup.execute("CREATE TABLE counters (id int PRIMARY KEY, n int NOT NULL)")
        setup.execute("INSERT INTO counters SELECT g, 0 FROM generate_series(1, 8) g")
    pool = AdaptivePool(lambda: psycopg.connect(postgres.dsn), min_size=1, max_size=6, size=4, reset=rollback,
                        controller=PoolController(interval_seconds=0.2))
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for k in range(40):
                with pool.connection(timeout=10) as conn:
                    conn.execute("UPDATE counters SET n = n + 1 WHERE id = %s", (1 + (i + k) % 8,))
                    if k % 10 == 9:
                        continue  # left open: the pool's reset rolls it back
                    conn.commit()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with psycopg.connect(postgres.dsn) as check:
        total = check.execute("SELECT sum(n) FROM counters").fetchone()[0]
    assert total == 12 * 36  # every committed update, none of the abandoned ones
    stats = pool.stats()
    assert stats["in_use"] == 0 and stats["acquisitions"] == 12 * 40
    assert 1 <= stats["target"] <= 6
    pool.close()
    assert pool.stats()["opened"] == pool.stats()["retired"]


def test_a_connection_the_server_killed_is_retired_and_replaced(postgres):
    pool = AdaptivePool(lambda: psycopg.connect(postgres.dsn, autocommit=True), min_size=1, max_size=2, size=1,
                        check=lambda conn: conn.execute("SELECT 1"), controller=None)
    with pool.connection(timeout=10) as conn:
        pid = conn.info.backend_pid
    with psycopg.connect(postgres.dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pool.connection(timeout=10) as conn:  # the check fails on the dead one; a new one serves
        assert conn.execute("SELECT 40 + 2").fetchone()[0] == 42
        assert conn.info.backend_pid != pid
    assert pool.stats()["check_failures"] == 1
    pool.close()


def test_a_database_that_refuses_connections_gives_a_clear_timeout(postgres):
    bad = postgres.dsn.replace("dbname=postgres", "dbname=no_such_database")
    pool = AdaptivePool(lambda: psycopg.connect(bad, connect_timeout=2), min_size=0, max_size=2, size=1,
                        controller=None)
    with pytest.raises(TimeoutError, match="no_such_database"):
        pool.acquire(timeout=1.0)
    pool.close()


def test_the_postgres_evaluation_runs_in_its_quick_mode(postgres):
    """benches/eval/pool_postgres.py, run once in its quick mode so it never rots."""
    from pool_postgres import main

    rows = main(postgres.dsn, quick=True)
    assert rows[2].startswith("| fixed 4 |") and any(r.startswith("| adaptive") for r in rows)
    assert any(r.startswith("best fixed size by p99") for r in rows)
