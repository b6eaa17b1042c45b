"""A Flask service whose database connections come from perfsdk's adaptive pool.

The engine is SQLAlchemy's, in one line with ``poolclass=AdaptiveSQLAlchemyPool``;
the pool sizes itself while the service runs and explains each decision
(``GET /pool`` shows its stats and the last decisions; a figure with nothing to measure
yet, NaN in ``stats()``, is ``null``: JSON has no NaN). A request with a bad field is
answered 400, naming it.

    python examples/flask_pool.py postgresql+psycopg://user@127.0.0.1:5432/shop
    curl 'http://127.0.0.1:8000/orders?customer=7'; curl http://127.0.0.1:8000/pool
"""

from __future__ import annotations

import math
import re
import sys
from typing import Any

import flask
import sqlalchemy
from sqlalchemy import text

import perfsdk
from perfsdk.adapt.sqlalchemy_pool import AdaptiveSQLAlchemyPool


#: The range of an ``int`` column (PostgreSQL's): a value outside it failed in the database, as a 500.
INT_MIN, INT_MAX = -2**31, 2**31 - 1


def create_app(database_url: str) -> flask.Flask:
    engine = sqlalchemy.create_engine(database_url, poolclass=AdaptiveSQLAlchemyPool, max_size=16,
                                      pool_pre_ping=True, name="shop-db")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS orders (id serial PRIMARY KEY, customer int, total int)"))
    app = flask.Flask("shop")

    @app.errorhandler(400)
    def bad_request(error: Any) -> tuple[dict[str, str], int]:
        return {"error": error.description}, 400  # what was wrong, for a JSON client

    @app.get("/orders")
    @perfsdk.monitor("orders.list")
    def orders() -> list[dict[str, int]]:
        customer = _int_field("customer", flask.request.args.get("customer", "0"))
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id, total FROM orders WHERE customer = :c ORDER BY id LIMIT 20"),
                                {"c": customer})
            return [{"id": row.id, "total": row.total} for row in rows]

    @app.post("/orders")
    @perfsdk.monitor("orders.create")
    def create_order() -> dict[str, int]:
        body = flask.request.get_json(force=True, silent=True)
        if not isinstance(body, dict):
            flask.abort(400, "the body must be a JSON object with customer and total")
        customer, total = (_int_field(name, body[name]) if name in body else flask.abort(400, f"{name} is missing")
                           for name in ("customer", "total"))
        with engine.begin() as conn:
            new_id = conn.execute(text("INSERT INTO orders (customer, total) VALUES (:c, :t) RETURNING id"),
                                  {"c": customer, "t": total}).scalar_one()
        return {"id": new_id}

    @app.get("/pool")
    def pool() -> dict[str, object]:
        adaptive = engine.pool.adaptive  # type: ignore[attr-defined]
        return _json_safe({"stats": adaptive.stats(), "decisions": [str(d) for d in adaptive.decisions()[-5:]]})

    app.extensions["engine"] = engine
    return app


def _int_field(name: str, value: Any) -> int:
    """``value`` as the integer ``name`` must be, else a 400 naming it (``int("x")`` was a 500, and
    so was a number too large for the column)."""
    if isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]{1,10}", value):
        value = int(value)  # a query string's (ASCII digits: int() takes others, and thousands of them slowly)
    if isinstance(value, bool) or not isinstance(value, int) or not INT_MIN <= value <= INT_MAX:
        flask.abort(400, f"{name} must be an integer from {INT_MIN} to {INT_MAX}, got {value!r:.40}")
    return value


def _json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities as None (null): Flask wrote a bare NaN, which JSON has not."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value


if __name__ == "__main__":
    sdk = perfsdk.init(service_name="shop")
    try:
        create_app(sys.argv[1]).run(host="127.0.0.1", port=8000, threaded=True)
    finally:
        sdk.shutdown()
