"""The demo shop: a real Flask service over SQLAlchemy, with perfsdk's cache and pool in it.

A product catalogue, search, a cart and checkout, served over HTTP; product
lookups go through an ``AdaptiveCache`` and database connections come from an
``AdaptivePool`` (SQLAlchemy's engine on ``AdaptiveSQLAlchemyPool``). SQLite
by default (embedded: nothing to install), PostgreSQL by URL. Each request's
``X-Session-Id`` header becomes the server span's ``session.id`` attribute, so
exported spans say which requests were one user's session (perfsdk's
redactor hashes it: still joinable, never in clear). Two calls inside the
routes have spans of their own, as a real service's instrumentation gives
them: ``charge_payment`` (the payment provider, in checkout) and
``db.report_query`` (the slow report query, which only the slow-query fault
runs: a span name never seen before the fault).

>>> app = create_app("sqlite://", products=50)
>>> client = app.test_client()
>>> client.get("/products/7").get_json()["id"]
7
>>> client.get("/search?q=lamp").status_code
200
>>> app.extensions["shop"].close()
"""

from __future__ import annotations

import atexit
import random
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from typing import Any

import flask
import sqlalchemy
from sqlalchemy import text

from perfsdk.adapt import AdaptiveCache
from perfsdk.adapt.sqlalchemy_pool import AdaptiveSQLAlchemyPool

__all__ = ["SESSION_HEADER", "Shop", "create_app"]

SESSION_HEADER = "X-Session-Id"
#: Counts to ``:n`` the slow way (SQLite and PostgreSQL both run it): the "slow query" fault.
SLOW_QUERY = text("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < :n) "
                  "SELECT count(*) FROM c")
WORDS = ("lamp", "chair", "desk", "mug", "kettle", "rug", "shelf", "clock", "vase", "stool", "mirror", "sofa")


@dataclass
class Shop:
    """The service's parts, for the demo to read and to inject faults into."""

    engine: sqlalchemy.engine.Engine
    cache: AdaptiveCache
    slow_ms: dict[str, float] = field(default_factory=dict)  # route -> extra latency (a fault)
    failing: set[str] = field(default_factory=set)  # routes whose dependency fails (a fault)
    slow_query_rows: dict[str, int] = field(default_factory=dict)  # route -> rows a slow query counts (a fault)
    leak_bytes: dict[str, int] = field(default_factory=dict)  # route -> bytes kept for ever a request (a fault)
    leaked: list[bytes] = field(default_factory=list)

    def close(self) -> None:
        self.engine.dispose()


def create_app(database_url: str = "sqlite://", *, products: int = 2000, cache_capacity: int = 500,
               adaptive: bool = True, pool_size: int = 4, max_pool_size: int = 16, seed: int = 0,
               tracer_provider: Any = None) -> flask.Flask:
    """The shop over ``database_url`` with ``products`` products; ``adaptive`` gives it perfsdk's
    cache and pool sizing (else a fixed-size LRU cache and a fixed pool of ``pool_size``). Its own
    spans go to ``tracer_provider`` (default: the global one)."""
    from opentelemetry import trace

    tracer = trace.get_tracer("perfsdk.demo.shop", tracer_provider=tracer_provider)
    engine = _engine(database_url, adaptive, pool_size, max_pool_size)
    _create_schema(engine, products, seed)
    cache = AdaptiveCache(cache_capacity, name="products", controller="default" if adaptive else None)
    shop = Shop(engine, cache)
    app = flask.Flask("perfsdk-demo-shop")
    app.extensions["shop"] = shop

    @app.after_request  # (not before_request: an instrumentor registered later starts its span after it)
    def mark_session(response: flask.Response) -> flask.Response:
        session = flask.request.headers.get(SESSION_HEADER)
        if session:
            from opentelemetry import trace

            trace.get_current_span().set_attribute("session.id", session[:64])
        return response

    def fault(route: str) -> None:
        delay = shop.slow_ms.get(route, 0.0)
        if delay:
            threading.Event().wait(delay / 1e3)
        rows = shop.slow_query_rows.get(route, 0)
        if rows:  # a real query the database has to work through, holding a pooled connection
            with tracer.start_as_current_span("db.report_query"), engine.connect() as conn:
                conn.execute(SLOW_QUERY, {"n": rows}).scalar_one()
        leak = shop.leak_bytes.get(route, 0)
        if leak:
            shop.leaked.append(bytes(leak))
        if route in shop.failing:
            flask.abort(503, description=f"{route}: the payment provider is unavailable")

    def product(pid: int) -> dict[str, Any] | None:
        def load(key: int) -> dict[str, Any] | None:
            with engine.connect() as conn:
                row = conn.execute(text("SELECT id, name, price FROM products WHERE id = :id"),
                                   {"id": key}).first()
            return None if row is None else {"id": row.id, "name": row.name, "price": row.price}
        return cache.get_or_load(pid, load)

    @app.get("/")
    def home() -> dict[str, Any]:
        fault("home")
        return {"shop": "perfsdk demo", "products": products}

    @app.get("/products/<int:pid>")
    def show_product(pid: int) -> Any:
        fault("product")
        found = product(pid)
        if found is None:
            flask.abort(404, description=f"no product {pid}")
        return found

    @app.get("/search")
    def search() -> dict[str, Any]:
        fault("search")
        term = flask.request.args.get("q", "")[:50]
        page = max(0, min(flask.request.args.get("page", 0, type=int), 100))
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id, name, price FROM products WHERE name LIKE :t "
                                     "ORDER BY id LIMIT 10 OFFSET :o"), {"t": f"%{term}%", "o": page * 10}).all()
        return {"results": [{"id": r.id, "name": r.name, "price": r.price} for r in rows]}

    @app.post("/cart/<int:pid>")
    def add_to_cart(pid: int) -> Any:
        fault("cart")
        session = flask.request.headers.get(SESSION_HEADER, "anonymous")[:64]
        quantity = flask.request.args.get("quantity", 1, type=int)
        if not 1 <= quantity <= 10:
            flask.abort(422, description="quantity must be a whole number from 1 to 10")
        if product(pid) is None:
            flask.abort(404, description=f"no product {pid}")
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO cart (session, pid, quantity) VALUES (:s, :p, :q)"),
                         {"s": session, "p": pid, "q": quantity})
        return {"added": pid}, 201

    @app.post("/checkout")
    def checkout() -> Any:
        with tracer.start_as_current_span("charge_payment"):  # the payment provider: where its faults strike
            fault("checkout")
        session = flask.request.headers.get(SESSION_HEADER, "anonymous")[:64]
        with engine.begin() as conn:
            total = conn.execute(text("SELECT coalesce(sum(c.quantity * p.price), 0) FROM cart c "
                                      "JOIN products p ON p.id = c.pid WHERE c.session = :s"),
                                 {"s": session}).scalar_one()
            conn.execute(text("INSERT INTO orders (session, total) VALUES (:s, :t)"), {"s": session, "t": total})
            conn.execute(text("DELETE FROM cart WHERE session = :s"), {"s": session})
        return {"total": total}

    return app


def _engine(url: str, adaptive: bool, pool_size: int, max_pool_size: int) -> sqlalchemy.engine.Engine:
    kwargs: dict[str, Any] = {}
    parsed = sqlalchemy.engine.make_url(url)  # sqlite+pysqlite:// is SQLite too
    sqlite = parsed.get_backend_name() == "sqlite"
    if sqlite:
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        if parsed.database in (None, "", ":memory:"):  # a file all connections share, gone with the process
            directory = tempfile.mkdtemp(prefix="perfsdk-demo-")
            atexit.register(shutil.rmtree, directory, True)
            parsed = parsed.set(database=f"{directory}/shop.db")
    if adaptive:
        engine = sqlalchemy.create_engine(parsed, poolclass=AdaptiveSQLAlchemyPool, min_size=1, size=pool_size,
                                          max_size=max_pool_size, name="shop-db", **kwargs)
    else:
        engine = sqlalchemy.create_engine(parsed, pool_size=pool_size, max_overflow=0, **kwargs)
    if sqlite:
        @sqlalchemy.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.execute("PRAGMA journal_mode=WAL")
            dbapi_connection.execute("PRAGMA busy_timeout=30000")
    return engine


def _create_schema(engine: sqlalchemy.engine.Engine, products: int, seed: int) -> None:
    rng = random.Random(seed)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS products (id integer PRIMARY KEY, name text, price integer)"))
        conn.execute(text("CREATE TABLE IF NOT EXISTS cart (session text, pid integer, quantity integer)"))
        conn.execute(text("CREATE TABLE IF NOT EXISTS orders (session text, total integer)"))
        if conn.execute(text("SELECT count(*) FROM products")).scalar_one() == 0:
            conn.execute(text("INSERT INTO products (id, name, price) VALUES (:id, :name, :price)"),
                         [{"id": i, "name": f"{rng.choice(WORDS)} {rng.choice(WORDS)} {i}",
                           "price": rng.randint(2, 400)} for i in range(1, products + 1)])
