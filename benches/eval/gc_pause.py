"""The host's garbage-collection pauses over a service run, with and without perfsdk (issue 11).

The demo shop (``perfsdk.demo.shop``: Flask over SQLAlchemy on SQLite, served by
werkzeug's threaded WSGI server on loopback, as ``perfsdk.demo.serve`` does,
with OpenTelemetry's Flask instrumentation) runs in a process of its own, one
process per run; simulated shoppers (``perfsdk.demo.users.Shoppers``: an open
model, the same arrivals and pages for every variant of a round) drive it from
another process, so the server's collector is measured alone. In the server,
``gc.callbacks`` time every collection (``time.perf_counter_ns``) from the first
request of the load to its last. Variants:

``otel``
    OpenTelemetry + Flask instrumentation only, no perfsdk loaded at all (the run
    checks): ``create_app`` imports perfsdk's cache, so this run executes the
    shop's own source with a plain LRU cache (an ``OrderedDict`` under a lock, what
    ``functools.lru_cache`` does) in its place, and SQLAlchemy's fixed ``QueuePool``
    (``adaptive=False``).
``perfsdk``
    The same shop, the same code, plus ``perfsdk.init(export_dir=...)`` as
    docs/instrumentation.md says a user does: once the app is built, before it serves
    (``--init-first``: before the app is built). Defaults: the default detector, the
    resource sampler, the Arrow export with the default redaction. The ratio of
    this to ``otel`` is the issue's "with / without perfsdk".
``demo``
    The demo shop as ``perfsdk demo`` runs it: perfsdk's ``AdaptiveCache`` and
    ``AdaptivePool`` with their controllers, plus the same ``init``. For reference.

Variants alternate within a round (the order rotates from round to round) on a
noisy machine; the table gives every round and the medians.

    .venv/bin/python benches/eval/gc_pause.py            # 3 rounds x 3 variants x 45 s: ~8 minutes
    .venv/bin/python benches/eval/gc_pause.py --quick    # the test suite's run (seconds)
    .venv/bin/python benches/eval/gc_pause.py --census   # and what the collector tracks at the end
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

# Nothing here imports perfsdk at module level: the ``otel`` server must run without it.

VARIANTS = ("otel", "perfsdk", "demo")
BASELINE, SUBJECT = "otel", "perfsdk"
PRODUCTS = 2000


class GcClock:
    """Times every collection, by generation (a ``gc.callbacks`` entry)."""

    def __init__(self) -> None:
        self.reset()
        self._started = self._started_cpu = 0

    def reset(self) -> None:
        self.pause_ns = [0, 0, 0]
        self.cpu_ns = [0, 0, 0]  # the collecting thread's CPU time: the collector's work without the waits
        self.count = [0, 0, 0]
        self.max_ns = [0, 0, 0]
        self.collected = 0

    def __call__(self, phase: str, info: dict[str, Any], clock: Callable[[], int] = time.perf_counter_ns,
                 cpu_clock: Callable[[], int] = time.thread_time_ns) -> None:
        if phase == "start":
            self._started_cpu = cpu_clock()
            self._started = clock()
            return
        took = clock() - self._started
        generation = info["generation"]
        self.cpu_ns[generation] += cpu_clock() - self._started_cpu
        self.pause_ns[generation] += took
        self.count[generation] += 1
        self.collected += info["collected"]
        if took > self.max_ns[generation]:
            self.max_ns[generation] = took

    def snapshot(self) -> dict[str, Any]:
        return {"pause_ms": sum(self.pause_ns) / 1e6, "pause_ms_by_gen": [p / 1e6 for p in self.pause_ns],
                "cpu_ms_by_gen": [c / 1e6 for c in self.cpu_ns], "collections": list(self.count),
                "max_pause_ms": [m / 1e6 for m in self.max_ns],
                "collected": self.collected}


class PlainLRUCache:
    """The shop's product cache without perfsdk: a bounded LRU under a lock, with the
    ``AdaptiveCache`` constructor and ``get_or_load`` the shop calls."""

    def __init__(self, capacity: int, name: str = "", controller: Any = None) -> None:
        self.capacity = capacity
        self._data: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_load(self, key: Any, loader: Callable[[Any], Any]) -> Any:
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
        value = loader(key)
        with self._lock:
            self._data[key] = value
            if len(self._data) > self.capacity:
                self._data.popitem(last=False)
        return value


def plain_shop_module() -> Any:
    """``perfsdk/demo/shop.py`` executed with ``PlainLRUCache`` as its cache and without
    perfsdk's pool: the same routes, the same SQL, no perfsdk object in it."""
    import importlib.util
    import types

    locations = importlib.util.find_spec("perfsdk").submodule_search_locations  # type: ignore[union-attr]
    path = Path(list(locations)[0]) / "demo" / "shop.py"  # (finding perfsdk.demo.shop would import perfsdk)
    adapt = types.ModuleType("perfsdk.adapt")
    adapt.AdaptiveCache = PlainLRUCache  # type: ignore[attr-defined]
    pool = types.ModuleType("perfsdk.adapt.sqlalchemy_pool")
    pool.AdaptiveSQLAlchemyPool = None  # type: ignore[attr-defined]  # adaptive=False never uses it
    stubs = {"perfsdk.adapt": adapt, "perfsdk.adapt.sqlalchemy_pool": pool}
    saved = {name: sys.modules.get(name) for name in stubs}
    spec = importlib.util.spec_from_file_location("gc_pause_plain_shop", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    sys.modules.update(stubs)
    try:
        spec.loader.exec_module(module)
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous
    return module


# -- the server process -----------------------------------------------------------------------
def serve(variant: str, census: bool, freeze: bool = False, init_last: bool = True) -> None:
    """Run the shop (``variant``) until told to stop; report on stdout.

    Protocol on stdin/stdout, one line each: ``ready <port>`` out; ``start`` in (the load
    begins: the clock is reset); ``stop`` in (the load ended); ``result <json>`` out.
    """
    clock = GcClock()
    gc.callbacks.insert(0, clock)  # first: its pause includes the other callbacks (perfsdk's own sampler)
    started = time.perf_counter()

    import itertools

    from opentelemetry import trace
    from opentelemetry.instrumentation.flask import FlaskInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from werkzeug.serving import WSGIRequestHandler, make_server

    class QuietHandler(WSGIRequestHandler):
        def log_request(self, *args: Any, **kwargs: Any) -> None:  # as perfsdk.demo.serve
            pass

    # The application's own OpenTelemetry set-up, the same in every variant; perfsdk.init()
    # then adds its processor to this provider (docs/instrumentation.md).
    provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
    trace.set_tracer_provider(provider)
    sdk = None
    export_dir = tempfile.mkdtemp(prefix="perfsdk-gc-pause-")
    def start_perfsdk() -> Any:
        import perfsdk

        return perfsdk.init(export_dir=export_dir)

    if variant in ("perfsdk", "demo") and not init_last:
        sdk = start_perfsdk()
    if variant == "demo":
        from perfsdk.demo.shop import create_app

        app = create_app(products=PRODUCTS, adaptive=True)
    else:
        app = plain_shop_module().create_app(products=PRODUCTS, adaptive=False)
    FlaskInstrumentor().instrument_app(app)
    if variant in ("perfsdk", "demo") and init_last:  # at the end of the host's start-up
        sdk = start_perfsdk()
    perfsdk_loaded = sorted(m for m in sys.modules if m == "perfsdk" or m.startswith("perfsdk."))
    if variant == "otel" and perfsdk_loaded:
        raise RuntimeError(f"the otel variant loaded perfsdk: {perfsdk_loaded}")

    served = itertools.count()
    shop_app = app.wsgi_app

    def counted(environ: Any, start_response: Any) -> Any:
        next(served)  # atomic under the GIL
        return shop_app(environ, start_response)

    app.wsgi_app = counted  # type: ignore[method-assign]
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="shop-server", daemon=True)
    thread.start()
    if freeze:  # what the start-up made, the collector never scans again (docs/production.md)
        gc.freeze()
    startup = clock.snapshot()
    startup_s = time.perf_counter() - started
    print(f"ready {server.server_port}", flush=True)

    for line in sys.stdin:
        if line.strip() == "start":
            before = {id(o) for o in gc.get_objects()} if census else set()
            clock.reset()
            first = next(served)
            window_started = time.perf_counter()
        elif line.strip() == "stop":
            window_s = time.perf_counter() - window_started
            result = clock.snapshot()
            requests = next(served) - first - 1
            break
    gc.callbacks.remove(clock)
    result.update(variant=variant, requests=requests, seconds=window_s, startup_pause_ms=startup["pause_ms"],
                  startup_collections=startup["collections"], startup_s=startup_s,
                  perfsdk_modules=len(perfsdk_loaded), tracked_objects=len(gc.get_objects()),
                  tracked_by_gen=[len(gc.get_objects(generation=g)) for g in range(3)])
    result["gc_stats"] = gc.get_stats()
    if census:
        result["census"] = object_census(before)
    server.shutdown()
    thread.join(5.0)
    if sdk is not None:
        sdk.shutdown()
        stats = sdk.stats()
        result["spans"] = stats["spans"]
        result["spans_exported"] = stats["export"]["spans_exported"] if stats["export"] else 0
        result["spans_dropped"] = stats["export"]["spans_dropped"] if stats["export"] else 0
    print("result " + json.dumps(result), flush=True)


def object_census(before: set[int], top: int = 30) -> dict[str, Any]:
    """What the collector tracks, by type (the largest counts), and what it tracks now that it
    did not when the load began (``before``: the ids then), by type."""
    from collections import Counter

    counts: Counter[str] = Counter()
    new: Counter[str] = Counter()
    for obj in gc.get_objects():
        kind = type(obj)
        name = f"{kind.__module__}.{kind.__qualname__}"
        counts[name] += 1
        if id(obj) not in before:
            new[name] += 1
    perfsdk_owned = sum(n for name, n in counts.items() if name.startswith("perfsdk"))
    return {"by_type": counts.most_common(top), "perfsdk_types": perfsdk_owned,
            "new_by_type": new.most_common(top), "new": sum(new.values())}


# -- the load process ---------------------------------------------------------------------------
def load(url: str, seconds: float, rate: float, seed: int) -> None:
    """Drive ``url`` with shoppers; ``go`` when the load starts, ``result <json>`` at its end."""
    from perfsdk.demo.users import Shoppers

    shoppers = Shoppers(url, rate=rate, seconds=seconds, products=PRODUCTS, seed=seed)
    print("go", flush=True)
    report = shoppers.run()
    print("result " + json.dumps({"requests": report.requests, "errors": report.errors,
                                  "sessions": report.sessions, "late_s": report.late_s}), flush=True)


# -- the parent -------------------------------------------------------------------------------
def _read_line(proc: subprocess.Popen[str], prefix: str, timeout_s: float) -> str:
    """The next stdout line of ``proc`` starting with ``prefix`` (its rest), within the timeout."""
    box: list[str] = []

    def read() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            if line.startswith(prefix):
                box.append(line[len(prefix):].strip())
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout_s)
    if not box:
        proc.kill()
        raise RuntimeError(f"no {prefix.strip()!r} from {proc.args} within {timeout_s} s "
                           f"(exit code {proc.poll()})")
    return box[0]


def run_once(variant: str, seconds: float, rate: float, seed: int, census: bool = False,
             freeze: bool = False, init_last: bool = True) -> dict[str, Any]:
    """One run of ``variant``: a server process, a load process; the server's figures."""
    me = str(Path(__file__).resolve())
    server_cmd = [sys.executable, me, "--serve", variant] + (["--census"] if census else []) \
        + (["--freeze"] if freeze else []) + ([] if init_last else ["--init-first"])
    log = tempfile.TemporaryFile("w+")  # the server's log (perfsdk logs its anomalies): shown if it fails
    server = subprocess.Popen(server_cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        port = int(_read_line(server, "ready ", 120.0))
        client = subprocess.Popen([sys.executable, me, "--load", f"http://127.0.0.1:{port}", "--seconds",
                                   str(seconds), "--rate", str(rate), "--seed", str(seed)],
                                  stdout=subprocess.PIPE, text=True)
        try:
            _read_line(client, "go", 120.0)
            server.stdin.write("start\n")  # type: ignore[union-attr]
            server.stdin.flush()  # type: ignore[union-attr]
            traffic = json.loads(_read_line(client, "result ", seconds + 300.0))
        finally:
            client.wait(30.0)
        server.stdin.write("stop\n")  # type: ignore[union-attr]
        server.stdin.flush()  # type: ignore[union-attr]
        result: dict[str, Any] = json.loads(_read_line(server, "result ", 120.0))
        server.wait(60.0)
    except Exception as exc:
        log.seek(0)
        raise RuntimeError(f"the {variant} run failed; its server said:\n{log.read()[-3000:]}") from exc
    finally:
        if server.poll() is None:
            server.kill()
        log.close()
    result["client"] = traffic
    return result


def evaluate(quick: bool, rounds: int | None = None, seconds: float | None = None, rate: float | None = None,
             variants: tuple[str, ...] | None = None, census: bool = False,
             freeze: bool = False, init_last: bool = True) -> dict[str, list[dict[str, Any]]]:
    """Every variant, ``rounds`` times, alternating (the order rotates each round)."""
    variants = variants or ((BASELINE, SUBJECT) if quick else VARIANTS)
    rounds = rounds or (1 if quick else 3)
    seconds = seconds or (2.0 if quick else 45.0)
    rate = rate or (5.0 if quick else 30.0)
    results: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    for r in range(rounds):
        order = variants[r % len(variants):] + variants[:r % len(variants)]
        for variant in order:
            results[variant].append(run_once(variant, seconds, rate, seed=r, census=census, freeze=freeze,
                                            init_last=init_last))
            if not quick:
                one = results[variant][-1]
                print(f"  round {r + 1} {variant}: {one['pause_ms']:.1f} ms GC pause, "
                      f"collections {one['collections']}, {one['requests']} requests", file=sys.stderr)
    return results


def table(results: dict[str, list[dict[str, Any]]]) -> list[str]:
    """A Markdown table (medians over rounds, every round's total pause) and the ratios."""
    rows = ["| variant | total GC pause, ms (each round) | median | per request, µs | collections gen 0/1/2 "
            "(each round) | gen 0+1 pause, ms (each round) | gen-2 pause, ms (each round) | collector CPU, ms "
            "(each round) | longest pause, ms | requests | tracked objects at end | startup pause, ms |",
            "| --- | --- | ---: | ---: | --- | --- | --- | --- | ---: | ---: | ---: | ---: |"]
    medians: dict[str, dict[str, float]] = {}
    for variant, runs in results.items():
        pauses = [r["pause_ms"] for r in runs]
        per_request = [r["pause_ms"] * 1e3 / max(r["requests"], 1) for r in runs]
        med = {"pause": statistics.median(pauses), "per_request": statistics.median(per_request)}
        medians[variant] = med
        collections = ", ".join("/".join(map(str, r["collections"])) for r in runs)
        young = ", ".join(f"{r['pause_ms_by_gen'][0] + r['pause_ms_by_gen'][1]:.0f}" for r in runs)
        old = ", ".join(f"{r['pause_ms_by_gen'][2]:.0f}" for r in runs)
        cpu = ", ".join(f"{sum(r['cpu_ms_by_gen']):.0f}" for r in runs)
        rows.append(
            f"| {variant} | {', '.join(f'{p:.0f}' for p in pauses)} | {med['pause']:.0f} | {med['per_request']:.1f} "
            f"| {collections} | {young} | {old} | {cpu} "
            f"| {max(max(r['max_pause_ms']) for r in runs):.1f} "
            f"| {round(statistics.median(r['requests'] for r in runs))} "
            f"| {round(statistics.median(r['tracked_objects'] for r in runs))} "
            f"| {statistics.median(r['startup_pause_ms'] for r in runs):.0f} |")
    rows.append("")
    base = medians.get(BASELINE)
    for variant, med in medians.items():
        if base is None or variant == BASELINE:
            continue
        runs, base_runs = results[variant], results[BASELINE]
        low = min(r["pause_ms"] for r in runs) / max(max(r["pause_ms"] for r in base_runs), 1e-9)
        high = max(r["pause_ms"] for r in runs) / max(min(r["pause_ms"] for r in base_runs), 1e-9)
        rows.append(f"{variant} / {BASELINE}: total GC pause {med['pause'] / max(base['pause'], 1e-9):.2f}x "
                    f"(medians; {low:.2f}-{high:.2f}x round against round), per request "
                    f"{med['per_request'] / max(base['per_request'], 1e-9):.2f}x")
    return rows


def census_lines(results: dict[str, list[dict[str, Any]]]) -> list[str]:
    lines = []
    for variant, runs in results.items():
        last = runs[-1]
        if "census" not in last:
            continue
        lines.append(f"{variant}: {last['tracked_objects']} tracked (by generation {last['tracked_by_gen']}), "
                     f"of perfsdk's types {last['census']['perfsdk_types']}")
        lines += [f"    {n:7d}  {name}" for name, n in last["census"]["by_type"]]
        lines.append(f"  tracked now, not when the load began: {last['census']['new']}")
        lines += [f"    {n:7d}  {name}" for name, n in last["census"]["new_by_type"]]
        lines.append(f"  collections since the process began: {[s['collections'] for s in last['gc_stats']]}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="two variants, one round of 2 s")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--seconds", type=float, help="load per run (default 45)")
    parser.add_argument("--rate", type=float, help="new shopper sessions a second (default 30: ~130 requests a second)")
    parser.add_argument("--variants", help=f"comma-separated, of {','.join(VARIANTS)}")
    parser.add_argument("--census", action="store_true", help="count the tracked objects by type at the end")
    parser.add_argument("--json", help="also write every run's figures to this file")
    parser.add_argument("--freeze", action="store_true", help="every server calls gc.freeze() once started")
    parser.add_argument("--init-first", action="store_true",
                        help="perfsdk.init() before the app is built (default: once it is built, as the docs say)")
    parser.add_argument("--serve", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--load", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.census, args.freeze, not args.init_first)
        return 0
    if args.load:
        load(args.load, args.seconds, args.rate, args.seed)
        return 0
    variants = tuple(args.variants.split(",")) if args.variants else None
    results = evaluate(args.quick, args.rounds, args.seconds, args.rate, variants, args.census, args.freeze,
                       init_last=not args.init_first)
    print("\n".join(table(results)))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    if args.census:
        print("\n".join(census_lines(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
