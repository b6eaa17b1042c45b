"""AdaptivePool on a real PostgreSQL (a private server: see postgres_server.py)."""

from __future__ import annotations

import threading

import pytest

from perfsdk import AdaptivePool, PoolController
from threads import wait_until

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

    rows = main(postgres.dsn, quick=True, all_decisions=True)
    assert rows[2].startswith("| fixed 4 |") and any(r.startswith("| adaptive") for r in rows)
    assert any(r.startswith("best fixed size by p99") for r in rows)
    assert any(r.startswith("adaptive size, every 5 s: 48 ") for r in rows)
    # 48 clients in a closed loop: the model's means cannot price the tail, so a smaller pool is
    # tried, said so, and what each size measured is what the next decision weighs
    decisions = [r for r in rows if r.startswith("- pool: ")]
    assert any("(to be tried)" in d for d in decisions) and any("(measured)" in d for d in decisions)
    assert any(d.startswith("- pool: shrink (size 48 -> ") for d in decisions)


def test_settling_is_judged_within_a_step_of_a_good_fixed_size_to_the_end():
    from pool_postgres import settled_after

    assert settled_after([48, 30, 12, 5, 4, 5, 4], good=[4]) == 3
    assert settled_after([48, 30, 4, 4, 9, 4], good=[4]) == 5
    assert settled_after([48, 30, 12], good=[4]) is None
    assert settled_after([48, 30, 12, 2, 6, 3, 7], good=[2, 6]) == 3  # between two good sizes: settled


def test_a_sqlalchemy_engine_on_the_adaptive_pool_keeps_its_events_and_recovers(postgres):
    sqlalchemy = pytest.importorskip("sqlalchemy")
    from perfsdk.adapt.sqlalchemy_pool import AdaptiveSQLAlchemyPool

    engine = sqlalchemy.create_engine(postgres.url, poolclass=AdaptiveSQLAlchemyPool, min_size=1, max_size=4,
                                      size=2, pool_pre_ping=True, pool_timeout=5, name="orders-db",
                                      controller=PoolController(interval_seconds=0.2))
    seen: dict[str, int] = {"connect": 0, "checkout": 0, "checkin": 0}
    for event in seen:
        sqlalchemy.event.listen(engine, event, lambda *args, _e=event: seen.__setitem__(_e, seen[_e] + 1))
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(25):
                with engine.begin() as conn:
                    conn.execute(sqlalchemy.text("SELECT pg_sleep(0.001)"))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    adaptive = engine.pool.adaptive
    assert seen["checkout"] == seen["checkin"] == 200 == adaptive.stats()["acquisitions"]
    stats = adaptive.stats()
    assert seen["connect"] == stats["opened"]  # SQLAlchemy's events fire for our records
    assert stats["opened"] - stats["retired"] <= 4  # (the controller may retire one and open another)
    assert "orders-db" in engine.pool.status() and engine.pool.checkedout() == 0

    with engine.connect() as conn:  # the server kills a connection: pre-ping notices, SQLAlchemy reconnects
        pid = conn.execute(sqlalchemy.text("SELECT pg_backend_pid()")).scalar()
    with psycopg.connect(postgres.dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with engine.connect() as conn:
        assert conn.execute(sqlalchemy.text("SELECT pg_backend_pid()")).scalar() != pid

    adaptive.mode = "advisory"  # the size stays where it is put: 4
    adaptive.resize(4)
    adaptive.timeout = 0.5
    held = [engine.connect() for _ in range(4)]  # all lent: the next waits its timeout, then a clear error
    with pytest.raises(sqlalchemy.exc.TimeoutError, match="orders-db.*4 in use"):
        engine.connect()
    engine.dispose()  # checked-out connections are closed when they come back, not before
    assert all(not c.closed for c in held)
    for c in held:
        c.close()
    assert adaptive.stats()["in_use"] == 0 and adaptive.stats()["opened"] == adaptive.stats()["retired"]
    with engine.connect() as conn:  # a fresh pool after dispose, as with SQLAlchemy's own pools
        assert conn.execute(sqlalchemy.text("SELECT 41 + 1")).scalar() == 42
    engine.dispose()
    engine.pool.adaptive.close()  # dispose() left a fresh pool behind, as SQLAlchemy does: close it too


def test_pre_ping_pings_connections_the_pool_opened_ahead_of_time(postgres):
    """SQLAlchemy skips the ping for a record it marked ``fresh`` when it connected; this pool connects
    them in the background, ahead of time: after the server ended their backends, the first request
    got a dead connection despite ``pool_pre_ping=True``."""
    sqlalchemy = pytest.importorskip("sqlalchemy")
    from perfsdk.adapt.sqlalchemy_pool import AdaptiveSQLAlchemyPool

    engine = sqlalchemy.create_engine(postgres.url, poolclass=AdaptiveSQLAlchemyPool, min_size=3, max_size=4,
                                      pool_pre_ping=True, controller=None, meter_provider=False, name="pinged")
    adaptive = engine.pool.adaptive
    wait_until(lambda: adaptive.stats()["idle"] >= 3, timeout=10.0)  # opened in the background, never lent
    pids = [record.conn.dbapi_connection.info.backend_pid for record in adaptive._idle]
    with psycopg.connect(postgres.dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (pids,))
        wait_until(lambda: not admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)",
                                             (pids,)).fetchone()[0], timeout=10.0)  # the backends ended
    for _ in range(3):
        with engine.connect() as conn:
            assert conn.execute(sqlalchemy.text("SELECT pg_backend_pid()")).scalar() not in pids
    engine.dispose()
    engine.pool.adaptive.close()


def test_the_flask_example_serves_real_http_through_the_adaptive_pool(postgres):
    import importlib.util
    import json
    import urllib.request
    from pathlib import Path

    from werkzeug.serving import make_server

    path = Path(__file__).resolve().parents[1] / "examples" / "flask_pool.py"
    spec = importlib.util.spec_from_file_location("flask_pool_example", path)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    app = example.create_app(postgres.url)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"

    def call(method: str, route: str, body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(base + route, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    counts: list[int] = []

    def client(i: int) -> None:
        for k in range(10):
            call("POST", "/orders", {"customer": i, "total": k})
            counts.append(len(call("GET", f"/orders?customer={i}")))

    try:
        threads = [threading.Thread(target=client, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(counts) == sorted(list(range(1, 11)) * 6)  # every order written, read back
        pool = call("GET", "/pool")
        assert pool["stats"]["acquisitions"] >= 6 * 20 and pool["stats"]["in_use"] == 0
        assert pool["stats"]["name"] == "shop-db" and pool["stats"]["faults"] == {}
    finally:
        server.shutdown()
        app.extensions["engine"].dispose()


def _flask_example():
    """``examples/flask_pool.py``, loaded as a module."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "flask_pool.py"
    spec = importlib.util.spec_from_file_location("flask_pool_example", path)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    return example


def _close(app) -> None:
    """The example's engine disposed, and the pool the dispose started closed with the first."""
    engine = app.extensions["engine"]
    first = engine.pool.adaptive
    engine.dispose()
    engine.pool.adaptive.close()
    first.close()


def test_the_flask_example_answers_a_bad_order_400_naming_the_field(tmp_path):
    """``int("x")`` on a customer, or a missing total, was a 500."""
    app = _flask_example().create_app(f"sqlite:///{tmp_path / 'shop.db'}")
    client = app.test_client()
    try:
        for body, field in (({"customer": "x", "total": 1}, "customer"), ({"customer": 1}, "total is missing"),
                            ({"customer": 1, "total": 2**40}, "total"), ({"customer": True, "total": 1}, "customer"),
                            ({"customer": 1, "total": 2.5}, "total"), ([1, 2], "JSON object")):
            response = client.post("/orders", json=body)
            assert response.status_code == 400 and field in response.get_json()["error"], body
        assert client.post("/orders", data="not json").status_code == 400
        assert "customer" in client.get("/orders?customer=abc").get_json()["error"]
        assert client.get("/orders?customer=99999999999").status_code == 400  # beyond the int column
        assert client.post("/orders", json={"customer": "7", "total": 3}).status_code == 200
        assert [order["total"] for order in client.get("/orders?customer=7").get_json()] == [3]
    finally:
        _close(app)


def test_the_flask_example_shows_a_quiet_interval_as_null_not_nan(tmp_path):
    """A quiet interval's percentiles are NaN in ``stats()``: ``GET /pool`` wrote a bare NaN, not JSON."""
    import json
    import math
    import time

    app = _flask_example().create_app(f"sqlite:///{tmp_path / 'shop.db'}")
    adaptive = app.extensions["engine"].pool.adaptive
    adaptive._ticker.shutdown(1.0)  # the test closes the intervals
    try:
        adaptive._decide(time.monotonic() + 1.0)
        adaptive._decide(time.monotonic() + 2.0)  # nothing lent in it
        assert math.isnan(adaptive.stats()["last_interval"]["wait_p99_ms"])

        def refuse(constant: str) -> None:
            raise AssertionError(f"{constant} is not JSON")

        body = json.loads(app.test_client().get("/pool").get_data(as_text=True), parse_constant=refuse)
        assert body["stats"]["last_interval"]["wait_p99_ms"] is None
        assert body["stats"]["last_interval"]["acquisitions"] == 0 and body["stats"]["name"] == "shop-db"
    finally:
        _close(app)


def test_rounds_are_pooled_by_their_transactions_not_by_averaging_their_percentiles():
    from pool_postgres import pooled, summary, verdict

    calm = summary([0.010] * 99 + [0.020], seconds=10.0, connections=4.0, trajectory=[4])
    stormy = summary([0.010] * 90 + [0.050] * 10, seconds=10.0, connections=2.0, trajectory=[2])
    both = pooled([calm, stormy])
    assert both["tx_s"] == 10.0 and both["connections"] == 3.0
    assert both["p99_ms"] == 50.0  # 11 of 200 beyond 10 ms: the 99th percentile is a stormy one
    rows = verdict({2: calm, 48: stormy}, both, 60.0, settling=False)
    assert rows[-1].startswith("best fixed size by p99: 2; adaptive p99 / best: 5.00x")  # 50 ms against 10
