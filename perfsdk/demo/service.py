"""One run of the demo shop, in a process of its own: "traditional" or with perfsdk.

The demo (``perfsdk.demo.run``) starts this module twice, once per variant, so
that each run's CPU time and memory are its own::

    python -m perfsdk.demo.service --variant perfsdk --export DIR [--db URL] [--faults JSON]

- **traditional**: a fixed-size LRU cache, a fixed SQLAlchemy ``QueuePool`` of the
  usual rule of thumb (``cores x 2 + 1``, HikariCP's advice), and OpenTelemetry's own
  ``BatchSpanProcessor`` writing the spans to Arrow (the record the demo measures
  both runs from; alerting is done afterwards, on static thresholds).
- **perfsdk**: ``AdaptiveCache`` and ``AdaptivePool`` (starting from the same sizes),
  ``perfsdk.init`` with the default detector watching every span and the process's
  resources, its export writing spans, anomalies and decisions.

The process prints ``READY <url>`` once it serves, then takes orders on a few
``/_demo/...`` routes (never traced): ``arm`` (the fault schedule starts at the next
request that is not an order), ``latent`` (the faults a load test can find -- every
one but the surge and the leak -- switched on together and left on, as defects
waiting in a release), ``flush`` (spans written so far reach the files) and ``stop``. On ``stop`` it writes ``run.json`` into the export directory: the faults as
they were really applied (wall-clock nanoseconds), the CPU time and peak memory of
the loaded phase, and a sample of the pool and cache every quarter second. Ctrl-C
(SIGINT) ends it with status 130 and one line on stderr, writing no ``run.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

__all__ = ["FAULT_KINDS", "VARIANTS", "FaultSpec", "rule_of_thumb_pool_size", "main"]

VARIANTS = ("traditional", "perfsdk")
FAULT_KINDS = ("latency", "slow_queries", "memory_leak", "surge", "failing")
LATENT_KINDS = ("latency", "slow_queries", "failing")  # what shows in a response: a load test can find it
SAMPLE_INTERVAL_S = 0.25
MAX_SAMPLES = 4 * 3600  # an hour of samples, then the oldest half goes


@dataclass(frozen=True)
class FaultSpec:
    """A fault the schedule injects ``start_s``..``end_s`` after the load starts.

    ``amount`` is per kind: extra milliseconds (``latency``), rows the slow query
    counts (``slow_queries``), bytes kept a request (``memory_leak``), the arrival
    rate's factor (``surge``: applied by the load, recorded here); unused for ``failing``.
    """

    name: str
    kind: str
    route: str
    start_s: float
    end_s: float
    amount: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {', '.join(FAULT_KINDS)}, got {self.kind!r}")
        if not 0 <= self.start_s < self.end_s:
            raise ValueError(f"fault {self.name!r}: need 0 <= start_s < end_s, got {self.start_s}..{self.end_s}")


def rule_of_thumb_pool_size(cores: int | None = None) -> int:
    """HikariCP's fixed pool size: ``cores x 2 + effective spindles`` (one disk).

    >>> rule_of_thumb_pool_size(2)
    5
    """
    return 2 * (cores or os.cpu_count() or 1) + 1


class _Schedule:
    """Applies the faults on time once armed; records when each one really began and ended.

    A route's setting is what its active faults make together (latencies, rows and leaked bytes
    add up; failing while any says so): a fault that ends as another on the same route begins,
    or while one overlaps it, leaves the other in force. Each fault is recorded by its name,
    so names must be unique.
    """

    def __init__(self, shop: Any, faults: Sequence[FaultSpec]) -> None:
        names = [f.name for f in faults]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"fault names must be unique: {', '.join(map(repr, repeated))} given more than once")
        self.shop, self.faults = shop, list(faults)
        self._active: list[FaultSpec] = []
        self.armed = False
        self.load_started_ns: int | None = None
        self.applied: list[dict[str, Any]] = []
        self.latent: list[dict[str, Any]] = []  # faults left on for the load tests to find
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def on_request(self) -> None:
        """The first request after ``arm`` starts the clock (the load's first request)."""
        if self.armed and self.load_started_ns is None:
            with self._lock:
                if self.load_started_ns is None:
                    self.load_started_ns = time.time_ns()
                    self._thread = threading.Thread(target=self._run, name="perfsdk-demo-faults", daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        assert self.load_started_ns is not None
        origin = time.monotonic()
        # at the same time, ends before starts: a fault that follows another takes over from it
        events = sorted([(f.start_s, True, f) for f in self.faults] + [(f.end_s, False, f) for f in self.faults],
                        key=lambda e: (e[0], e[1]))
        began: dict[str, int] = {}
        for at, starting, fault in events:
            if self._stop.wait(max(0.0, origin + at - time.monotonic())):
                break
            self._apply(fault, starting)
            if starting:
                began[fault.name] = time.time_ns()
            else:
                self.applied.append({**asdict(fault), "start_ns": began.pop(fault.name), "end_ns": time.time_ns()})
        now = time.time_ns()  # stopped early: what was under way ends now
        for fault in self.faults:
            if fault.name in began:
                self._apply(fault, False)
                self.applied.append({**asdict(fault), "start_ns": began[fault.name], "end_ns": now})

    def _apply(self, fault: FaultSpec, on: bool) -> None:
        """Switch ``fault`` on or off, and set its route to what the faults active on it make."""
        if on:
            self._active.append(fault)
        elif fault in self._active:
            self._active.remove(fault)
        shop, route = self.shop, fault.route
        amounts = [f.amount for f in self._active if f.kind == fault.kind and f.route == route]
        if fault.kind == "latency":
            shop.slow_ms[route] = float(sum(amounts))
        elif fault.kind == "slow_queries":
            shop.slow_query_rows[route] = int(sum(amounts))
        elif fault.kind == "memory_leak":
            shop.leak_bytes[route] = int(sum(amounts))
        elif fault.kind == "failing":
            (shop.failing.add if amounts else shop.failing.discard)(route)
        # "surge" is the load's doing: recorded, nothing to apply here

    def switch_on_latent(self) -> list[dict[str, Any]]:
        """The faults a load test can surface (slow or failing answers), all on from now."""
        self.stop()  # the schedule is over: what it had under way ends first
        now = time.time_ns()
        for fault in self.faults:
            if fault.kind in LATENT_KINDS and fault not in self._active:  # asked twice: on once
                self._apply(fault, True)
                self.latent.append({**asdict(fault), "start_ns": now})
        return self.latent

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)


class _Sampler:
    """The pool's and the cache's size (and the process's memory) every quarter second."""

    def __init__(self, read: Callable[[], dict[str, float]]) -> None:
        self.read = read
        self.samples: list[dict[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="perfsdk-demo-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL_S):
            try:
                sample = {"t_ns": float(time.time_ns()), **self.read()}
            except Exception as exc:  # a sample is not worth the run
                print(f"sampler: {exc!r}", file=sys.stderr)
                continue
            if len(self.samples) >= MAX_SAMPLES:
                del self.samples[: MAX_SAMPLES // 2]
            self.samples.append(sample)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2.0)


def serve(variant: str, export_dir: str, *, database_url: str = "sqlite://", products: int = 2000,
          cache_capacity: int = 200, faults: Sequence[FaultSpec] = (), seed: int = 0,
          announce: Callable[[str], None] = print) -> dict[str, Any]:
    """Serve one variant until ``POST /_demo/stop``; returns (and writes) the run's summary."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    import flask
    from opentelemetry.instrumentation.flask import FlaskInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from werkzeug.serving import WSGIRequestHandler, make_server

    from perfsdk.demo.serve import shop_redactor
    from perfsdk.demo.shop import create_app
    from perfsdk.instrument.resources import resident_mb

    class QuietHandler(WSGIRequestHandler):
        def log_request(self, *args: Any, **kwargs: Any) -> None:  # the spans are the record
            pass

    Path(export_dir).mkdir(parents=True, exist_ok=True)
    provider = TracerProvider(resource=Resource.create({"service.name": f"shop-{variant}"}))
    pool_size = rule_of_thumb_pool_size()
    sdk = None
    app = create_app(database_url, products=products, cache_capacity=cache_capacity,
                     adaptive=variant == "perfsdk", pool_size=pool_size, max_pool_size=4 * pool_size, seed=seed,
                     tracer_provider=provider)
    shop = app.extensions["shop"]
    schedule = _Schedule(shop, faults)
    stopping = threading.Event()
    control = flask.Blueprint("demo-control", __name__, url_prefix="/_demo")

    @control.post("/arm")
    def arm() -> dict[str, Any]:
        schedule.armed = True
        return {"armed": True}

    @control.post("/latent")
    def latent() -> dict[str, Any]:
        return {"latent": schedule.switch_on_latent()}

    @control.post("/flush")
    def flush() -> dict[str, Any]:
        flushed = sdk.force_flush(10_000) if sdk is not None else provider.force_flush(10_000)
        return {"flushed": bool(flushed)}

    @control.post("/stop")
    def stop() -> dict[str, Any]:
        stopping.set()
        return {"stopping": True}

    app.register_blueprint(control)

    @app.before_request
    def start_the_clock() -> None:
        if not flask.request.path.startswith("/_demo/"):
            schedule.on_request()

    def read_sample() -> dict[str, float]:
        pool, cache = shop.engine.pool, shop.cache.stats()
        return {"pool_size": float(pool.size()), "pool_in_use": float(pool.checkedout()),
                "cache_capacity": float(cache["capacity"]), "cache_entries": float(cache["size"]),
                "cache_hit_ratio": float(cache["hit_ratio"]), "rss_mb": resident_mb(),
                "cpu_s": time.process_time()}

    FlaskInstrumentor().instrument_app(app, tracer_provider=provider, excluded_urls="/_demo/")
    if variant == "perfsdk":  # last, once the app is built (docs/instrumentation.md says why)
        from perfsdk.instrument import init

        sdk = init(tracer_provider=provider, export_dir=export_dir, redactor=shop_redactor(),
                   detectors=("default",))
    else:
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        from perfsdk.export.spans import ArrowSpanExporter

        provider.add_span_processor(BatchSpanProcessor(
            ArrowSpanExporter(export_dir, redactor=shop_redactor()), max_queue_size=1 << 17))
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="perfsdk-demo-shop", daemon=True)
    thread.start()
    sampler = _Sampler(read_sample)
    announce(f"READY http://127.0.0.1:{server.server_port}")
    stopping.wait()
    sampler.stop()
    schedule.stop()
    server.shutdown()
    thread.join(5.0)
    FlaskInstrumentor().uninstrument_app(app)
    incidents = []
    if sdk is not None:
        sdk.shutdown()
        incidents = [_incident_record(i) for i in sdk.incidents()]
    provider.shutdown()
    shop.close()
    summary = {
        "variant": variant, "database": database_url.split(":", 1)[0], "pool_rule_of_thumb": pool_size,
        "cache_capacity": cache_capacity, "load_started_ns": schedule.load_started_ns,
        "faults": schedule.applied, "latent": schedule.latent, "samples": sampler.samples,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "sdk_stats": _jsonable(sdk.stats()) if sdk is not None else None,
        "incidents": incidents,
        "heavy_modules": sorted(m for m in ("numba", "scipy", "statsmodels", "pandas") if m in sys.modules),
    }
    (Path(export_dir) / "run.json").write_text(json.dumps(summary), encoding="utf-8")
    return summary


def _incident_record(incident: Any) -> dict[str, Any]:
    """An incident as the SDK grouped and ranked it live: its members (origin first) and its text."""
    def ns(t: Any) -> int | None:
        return None if t is None else int(t.timestamp() * 1e9)

    return {
        "text": str(incident),
        "members": [{"series": a.details.get("series", a.detector), "source": a.details.get("source"),
                     "onset_ns": ns(a.details.get("onset") or a.timestamp),
                     "confirmed_ns": ns(a.details.get("confirmed_at") or a.timestamp),
                     "value": a.value, "expected": a.expected, "likely_cause": a.details.get("likely_cause")}
                    for a in incident.members],
    }


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perfsdk.demo.service", description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", choices=VARIANTS, required=True)
    parser.add_argument("--export", required=True, help="the run's export directory")
    parser.add_argument("--db", default="sqlite://", help="SQLAlchemy URL (default: an embedded SQLite file)")
    parser.add_argument("--products", type=int, default=2000)
    parser.add_argument("--cache-capacity", type=int, default=200)
    parser.add_argument("--faults", default="[]", help="the schedule: a JSON list of FaultSpec fields")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    faults = [FaultSpec(**f) for f in json.loads(args.faults)]
    try:
        serve(args.variant, args.export, database_url=args.db, products=args.products,
              cache_capacity=args.cache_capacity, faults=faults, seed=args.seed,
              announce=lambda line: print(line, flush=True))
    except KeyboardInterrupt:  # Ctrl-C to the demo's process group: a line in the log, not a traceback
        print("interrupted (Ctrl-C): stopped without writing run.json", file=sys.stderr)
        return 130  # 128 + SIGINT: the demo reads it as the user's interrupt, not as the shop failing
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
