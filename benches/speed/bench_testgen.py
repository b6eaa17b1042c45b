"""Learning a traffic model from exported spans (issue 13 target: 1 M spans in 5 s or less).

Synthetic HTTP server spans shaped like a shop's: 8 routes (two with path
parameters, one with query parameters), sessions of a Markov chain with
exponential think times, as the span table perfsdk exports.

    make bench    # or: .venv/bin/pytest benches/speed/bench_testgen.py --benchmark-enable
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from benchutil import per_item
from perfsdk.export.schema import SPANS
from perfsdk.testgen.model import TrafficModel

ROUTES = [("GET", "/", ""), ("GET", "/search", "?q={w}&page={p}"), ("GET", "/products/<int:pid>", ""),
          ("POST", "/cart", ""), ("POST", "/checkout", ""), ("GET", "/cart", ""), ("GET", "/account", ""),
          ("GET", "/categories/<slug>", "")]


def shop_spans(n: int, seed: int = 0) -> pa.Table:
    """``n`` SERVER spans in sessions of ~6 requests (a random walk over ``ROUTES``)."""
    rng = np.random.default_rng(seed)
    k = len(ROUTES)
    chain = rng.dirichlet(np.ones(k), size=k)
    route = np.empty(n, dtype=np.int64)
    route[0] = 0
    session_start = rng.random(n) < 1 / 6
    draws = rng.random(n)
    cumulative = chain.cumsum(axis=1)
    for i in range(1, n):  # the walk (setup, not timed)
        route[i] = 0 if session_start[i] else min(k - 1, int(np.searchsorted(cumulative[route[i - 1]], draws[i])))
    session = np.cumsum(session_start)
    think = rng.exponential(2e9, n).astype(np.int64)
    start = np.cumsum(think + 5_000_000)
    duration = rng.lognormal(np.log(5e6), 0.5, n).astype(np.int64)
    words = np.array(["lamp", "mug", "desk", "rug"])
    pids = rng.zipf(1.3, n) % 5000
    attributes = []
    for i in range(n):
        method, template, query = ROUTES[route[i]]
        target = template.replace("<int:pid>", str(pids[i])).replace("<slug>", f"c{pids[i] % 40}")
        if query:
            target += query.format(w=words[i % 4], p=i % 3)
        attributes.append([("http.request.method", method), ("http.route", template), ("http.target", target),
                           ("http.response.status_code", "200"), ("session.id", f"s{session[i]}")])
    return pa.Table.from_pydict({
        "trace_id": [f"{i:032x}" for i in range(n)], "span_id": [f"{i:016x}" for i in range(n)],
        "parent_span_id": pa.nulls(n, pa.string()),
        "name": [f"{ROUTES[r][0]} {ROUTES[r][1]}" for r in route], "kind": ["SERVER"] * n,
        "start_time": pa.array(start, pa.timestamp("ns", tz="UTC")),
        "end_time": pa.array(start + duration, pa.timestamp("ns", tz="UTC")),
        "duration_ms": duration / 1e6, "status_code": ["UNSET"] * n, "status_message": pa.nulls(n, pa.string()),
        "service.name": ["shop"] * n, "scope.name": ["opentelemetry.instrumentation.flask"] * n,
        "attributes": attributes,
    }, schema=SPANS)


@pytest.mark.benchmark(group="testgen: learn a traffic model (spans/s)")
def test_learn_a_traffic_model(benchmark, full_size):
    n = full_size(1_000_000, 5_000)
    table = shop_spans(n)
    per_item(benchmark, n)
    model = benchmark.pedantic(TrafficModel.from_table, args=(table,), rounds=3, iterations=1)
    assert model.requests == n and len(model.routes) == len(ROUTES)
    assert model.sessions == pytest.approx(n / 6, rel=0.1)
