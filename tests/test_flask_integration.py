"""A real Flask app, instrumented by opentelemetry-instrumentation-flask, served on
loopback and driven by real HTTP requests: perfsdk's defaults must flag the route
that becomes slow, and only that route, within a few requests."""

from __future__ import annotations

import contextlib
import threading
import time
import urllib.request

import pytest

flask = pytest.importorskip("flask")
FlaskInstrumentor = pytest.importorskip("opentelemetry.instrumentation.flask").FlaskInstrumentor

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

import perfsdk  # noqa: E402


SLOW_S = 0.040  # what a dependency of /checkout adds when it gets slow
WARM_UP = 420  # requests a route; the default detector learns for 388 spans a name


@contextlib.contextmanager
def shop():
    app = flask.Flask("shop")
    slow = {"delay_s": 0.0}

    @app.route("/products")
    def products():
        return "products"

    @app.route("/cart")
    def cart():
        return "cart"

    @app.route("/checkout")
    def checkout():
        time.sleep(0.002 + slow["delay_s"])
        return "ok"

    provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
    finished = InMemorySpanExporter()  # what the spans measured, to check the test's premise
    provider.add_span_processor(SimpleSpanProcessor(finished))
    sdk = perfsdk.init(tracer_provider=provider, sample_resources=False)
    FlaskInstrumentor().instrument_app(app, tracer_provider=provider)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        yield base, slow, sdk, finished
    finally:
        server.shutdown()
        FlaskInstrumentor().uninstrument_app(app)
        sdk.shutdown()


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def slowest_ms(finished: InMemorySpanExporter, name: str) -> float:
    return max((s.end_time - s.start_time) / 1e6 for s in finished.get_finished_spans() if s.name == name)


def test_slow_route_is_flagged_and_only_that_route():
    # The premise: /checkout was faster before than after. A machine that stalls one warm-up
    # request for longer than the slowdown itself (a shared CI host) breaks it: the detector
    # bounds such a stall's influence (ZScoreDetector(clip=...), docs/detectors.md), but the
    # range it has seen still includes it, and the alert comes a few requests later than the
    # five allowed here -- so such a run is measured again, at most twice.
    for _attempt in range(3):
        with shop() as (base, slow, sdk, finished):
            for _ in range(WARM_UP):
                for route in ("/products", "/cart", "/checkout"):
                    assert get(base + route)
            warm_up_slowest = slowest_ms(finished, "GET /checkout")
            if warm_up_slowest >= 1e3 * SLOW_S:
                continue
            assert sdk.anomalies() == []
            slow["delay_s"] = SLOW_S  # a dependency of /checkout got slow
            sent_slow = 0
            while not sdk.anomalies() and sent_slow < 36:
                for route in ("/products", "/cart", "/checkout"):
                    get(base + route)
                sent_slow += 1
            for _ in range(10):  # and keep the traffic going a little
                for route in ("/products", "/cart", "/checkout"):
                    get(base + route)
            sdk.force_flush()
            anomalies, stats = sdk.anomalies(), sdk.stats()
            break
    else:
        pytest.fail(f"a warm-up request to /checkout took as long as the slowdown in three runs "
                    f"(the last: {warm_up_slowest:.0f} ms)")
    flagged = {a.details["series"] for a in anomalies}
    assert flagged == {"GET /checkout"}, ([str(a) for a in anomalies], f"slowest warm-up checkout "
                                          f"{warm_up_slowest:.1f} ms", stats["per_span"])
    assert sent_slow <= 5  # confirmed by the third slow request (a span may end after its response)
    anomaly = anomalies[0]
    assert anomaly.value >= 40 and anomaly.expected < 20
    per_span = stats["per_span"]
    assert per_span["GET /checkout"]["count"] == WARM_UP + sent_slow + 10
    assert set(per_span) == {"GET /products", "GET /cart", "GET /checkout"}
