"""A Flask service whose database connections come from perfsdk's adaptive pool.

The engine is SQLAlchemy's, in one line with ``poolclass=AdaptiveSQLAlchemyPool``;
the pool sizes itself while the service runs and explains each decision
(``GET /pool`` shows its stats and the last decisions).

    python examples/flask_pool.py postgresql+psycopg://user@127.0.0.1:5432/shop
    curl 'http://127.0.0.1:8000/orders?customer=7'; curl http://127.0.0.1:8000/pool
"""

from __future__ import annotations

import sys

import flask
import sqlalchemy
from sqlalchemy import text

import perfsdk
from perfsdk.adapt.sqlalchemy_pool import AdaptiveSQLAlchemyPool


def create_app(database_url: str) -> flask.Flask:
    engine = sqlalchemy.create_engine(database_url, poolclass=AdaptiveSQLAlchemyPool, max_size=16,
                                      pool_pre_ping=True, name="shop-db")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS orders (id serial PRIMARY KEY, customer int, total int)"))
    app = flask.Flask("shop")

    @app.get("/orders")
    @perfsdk.monitor("orders.list")
    def orders() -> list[dict[str, int]]:
        customer = flask.request.args.get("customer", type=int, default=0)
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id, total FROM orders WHERE customer = :c ORDER BY id LIMIT 20"),
                                {"c": customer})
            return [{"id": row.id, "total": row.total} for row in rows]

    @app.post("/orders")
    @perfsdk.monitor("orders.create")
    def create_order() -> dict[str, int]:
        body = flask.request.get_json(force=True)
        with engine.begin() as conn:
            new_id = conn.execute(text("INSERT INTO orders (customer, total) VALUES (:c, :t) RETURNING id"),
                                  {"c": int(body["customer"]), "t": int(body["total"])}).scalar_one()
        return {"id": new_id}

    @app.get("/pool")
    def pool() -> dict[str, object]:
        adaptive = engine.pool.adaptive  # type: ignore[attr-defined]
        return {"stats": adaptive.stats(), "decisions": [str(d) for d in adaptive.decisions()[-5:]]}

    app.extensions["engine"] = engine
    return app


if __name__ == "__main__":
    sdk = perfsdk.init(service_name="shop")
    try:
        create_app(sys.argv[1]).run(host="127.0.0.1", port=8000, threaded=True)
    finally:
        sdk.shutdown()
