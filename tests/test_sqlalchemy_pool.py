"""AdaptiveSQLAlchemyPool on SQLite: what ``engine.dispose()`` leaves behind (PostgreSQL: test_pool_postgres.py)."""

from __future__ import annotations

import gc
import sqlite3
import threading
import weakref

import pytest

from perfsdk import PoolController

sqlalchemy = pytest.importorskip("sqlalchemy")
from perfsdk.adapt.sqlalchemy_pool import AdaptiveSQLAlchemyPool  # noqa: E402  (needs sqlalchemy)
from threads import wait_until  # noqa: E402


def engine_on(creator=None, **kwargs):
    kwargs.setdefault("controller", None)
    if creator is None:
        kwargs["connect_args"] = {"check_same_thread": False}
    else:
        kwargs["creator"] = creator
    return sqlalchemy.create_engine("sqlite://", poolclass=AdaptiveSQLAlchemyPool, meter_provider=False, **kwargs)


def test_dispose_serves_the_requests_already_waiting_as_queuepool_does():
    """They got perfsdk's PoolClosed (not even a SQLAlchemy error) because another thread disposed the engine."""
    engine = engine_on(min_size=1, max_size=1, pool_timeout=10)
    old = engine.pool
    held = engine.connect()
    result: list = []

    def request() -> None:
        try:
            with engine.connect() as conn:
                result.append(conn.execute(sqlalchemy.text("SELECT 1")).scalar())
        except Exception as exc:  # reported below
            result.append(exc)

    thread = threading.Thread(target=request)
    thread.start()
    wait_until(lambda: old.adaptive.stats()["waiting"] == 1)
    engine.dispose()
    held.close()  # comes back to the disposed pool: handed to the waiting request
    thread.join(10.0)
    assert result == [1]
    assert old.adaptive.closed and old.adaptive.stats()["opened"] == old.adaptive.stats()["retired"]
    with pytest.raises(sqlalchemy.exc.InvalidRequestError, match="dispose"):
        old.connect()  # a checkout that raced the dispose: a SQLAlchemy error, saying why
    engine.dispose()
    engine.pool.adaptive.close()


def test_the_fresh_pool_after_dispose_keeps_the_controllers_settings(tmp_path):
    """Its controller dropped forecast_horizon, forecast_season and the fleet."""
    controller = PoolController(forecast_horizon=5, forecast_season=120, fleet=tmp_path, interval_seconds=0.5)
    engine = engine_on(max_size=4, controller=controller)
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text("SELECT 1"))
    engine.dispose()
    fresh = engine.pool.adaptive.controller
    # what it learned goes on, in a table of its own (the old one's tick may still run)
    assert fresh is not controller and fresh.learner is not controller.learner
    assert (fresh.learner.q == controller.learner.q).all()
    assert (fresh.forecast_horizon, fresh.forecast_season, fresh.interval_seconds) == (5, 120, 0.5)
    assert fresh.fleet is not None and fresh.fleet.directory == controller.fleet.directory
    engine.dispose()
    engine.pool.adaptive.close()


def test_dispose_without_closing_ends_the_old_pools_threads_and_leaves_its_connections_alone():
    """``engine.dispose(close=False)`` (SQLAlchemy's call in a forked child) left the old pool running for
    good: its threads kept it alive, with its idle connections."""
    opened: list[sqlite3.Connection] = []

    def creator():
        opened.append(sqlite3.connect(":memory:", check_same_thread=False))
        return opened[-1]

    engine = engine_on(creator, min_size=2, max_size=4, name="not-closed")
    old = engine.pool.adaptive
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text("SELECT 1"))
    wait_until(lambda: old.stats()["idle"] == 2)
    engine.dispose(close=False)
    assert old.stats()["closed"]
    wait_until(lambda: not old._ticker.alive and not old._maker.alive)
    assert [c.execute("SELECT 1").fetchone() for c in opened] == [(1,), (1,)]  # not closed: let go
    assert not engine.pool.adaptive.closed
    engine.dispose()
    engine.pool.adaptive.close()


def test_a_connection_collected_inside_acquire_comes_back_to_that_caller_without_a_deadlock():
    """SQLAlchemy checks a garbage-collected connection back in from a finalizer, on whatever thread the
    collector runs: here a caller's, inside ``acquire`` holding the pool's lock (it allocated there),
    waiting for the very connection collected. That check-in waited for the lock its own thread held:
    the thread hung for good, and every other user of the pool behind it."""
    engine = engine_on(min_size=1, max_size=1)
    pool = engine.pool.adaptive
    wait_until(lambda: pool.stats()["idle"] == 1)
    got: list = []

    def caller() -> None:
        gc.disable()
        try:
            fairy = engine.raw_connection()  # the pool's only connection...
            cycle: list = [fairy]
            cycle.append(cycle)  # ... left in a reference cycle (as an exception's traceback leaves it)
            del fairy, cycle
            allocated = [[] for _ in range(2 * gc.get_threshold()[0] + 100)]  # the collector is due
        finally:
            gc.enable()
        got.append(pool.acquire(timeout=5.0))  # it collects at its first allocation, holding the lock
        pool.release(got[0])
        del allocated

    thread = threading.Thread(target=caller, daemon=True)
    thread.start()
    thread.join(10.0)
    assert not thread.is_alive(), "the check-in waited for the lock its own thread held"
    assert len(got) == 1 and pool.stats()["in_use"] == 0 and pool.stats()["faults"] == {}
    engine.dispose()


def test_the_fresh_pool_after_dispose_is_reported_in_the_metrics():
    """Its instruments had the old pool's names on the same meter: dropped, and the old pool, closed,
    reported nothing -- after ``engine.dispose()`` the pool's metrics were gone for good."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    engine = sqlalchemy.create_engine("sqlite://", poolclass=AdaptiveSQLAlchemyPool, max_size=4, controller=None,
                                      meter_provider=MeterProvider(metric_readers=[reader]),
                                      connect_args={"check_same_thread": False})

    def observed(name: str) -> list:
        return [p.value for rm in reader.get_metrics_data().resource_metrics for scope in rm.scope_metrics
                for metric in scope.metrics if metric.name == name for p in metric.data.data_points]

    with engine.connect() as conn:
        conn.execute(sqlalchemy.text("SELECT 1"))
    assert observed("perfsdk.pool.acquisitions") == [1]
    engine.dispose()
    for _ in range(3):
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
    assert observed("perfsdk.pool.acquisitions") == [4]  # the fresh pool's count goes on from the old one's
    assert observed("db.client.connection.max") == [4]
    engine.dispose()
    engine.pool.adaptive.close()


def test_the_pools_counters_go_on_across_dispose_counted_once_and_the_old_pool_is_let_go():
    """The fresh pool ``engine.dispose()`` makes reported its own counts from zero: the cumulative counters
    fell from 11 acquisitions and 1 timeout to 0 and 0, which every OTel backend reads as a reset."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    engine = sqlalchemy.create_engine("sqlite://", poolclass=AdaptiveSQLAlchemyPool, min_size=1, max_size=1,
                                      controller=None, pool_timeout=0.05, name="orders",
                                      meter_provider=MeterProvider(metric_readers=[reader]),
                                      connect_args={"check_same_thread": False})
    seen: list[tuple[int, int]] = []

    def observed() -> tuple[int, int]:
        counters = ("perfsdk.pool.acquisitions", "db.client.connection.timeouts")
        values = {(metric.name, p.attributes["db.client.connection.pool.name"]): p.value
                  for rm in reader.get_metrics_data().resource_metrics for scope in rm.scope_metrics
                  for metric in scope.metrics if metric.name in counters for p in metric.data.data_points}
        assert len(values) == 2  # one point each: the old pool and the fresh one are one series
        seen.append((values[counters[0], "orders"], values[counters[1], "orders"]))
        return seen[-1]

    def work(times: int) -> None:
        for _ in range(times):
            with engine.connect() as conn:
                conn.execute(sqlalchemy.text("SELECT 1"))
        with engine.connect(), pytest.raises(sqlalchemy.exc.TimeoutError):
            engine.connect()  # the only connection is out: a timeout (and an acquisition)

    work(10)
    assert observed() == (11, 1)
    old, held = engine.pool, engine.connect()
    served: list = []
    waiter = threading.Thread(target=lambda: served.append(old.connect()))
    waiter.start()
    wait_until(lambda: old.adaptive.stats()["waiting"] == 1)
    engine.dispose()
    held.close()  # handed to the waiting caller by the closed pool: counted after its close
    waiter.join(10.0)
    served.pop().close()
    gone = weakref.ref(old.adaptive)
    del old, held
    gc.collect()
    assert gone() is None  # the counters keep what it counted, not the pool
    assert observed() == (13, 1)  # no collection saw the old pool closed: its counts carried once, whole
    work(2)
    assert observed() == (16, 2)
    assert seen == sorted(seen)
    engine.dispose()
    engine.pool.adaptive.close()
