"""Serve the demo shop on loopback, instrumented by OpenTelemetry and recorded by perfsdk."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import flask

from perfsdk.demo.shop import create_app
from perfsdk.export.redact import Redactor
from perfsdk.instrument import init

__all__ = ["RecordedShop", "recorded_shop", "shop_redactor"]


def shop_redactor() -> Redactor:
    """The default redaction, plus: session ids hashed (still joinable into sessions), the
    shop's harmless query parameters (``q``, ``page``, ``quantity``) kept so a traffic model can
    learn them."""
    return Redactor(hash_keys=["session.id"], safe_params=["q", "page", "quantity"])


@dataclass
class RecordedShop:
    url: str
    app: flask.Flask
    sdk: Any  # perfsdk.PerfSDK

    @property
    def shop(self) -> Any:
        return self.app.extensions["shop"]


@contextmanager
def recorded_shop(export_dir: str | None, *, service: str = "shop", **shop_options: Any) -> Iterator[RecordedShop]:
    """The shop (``create_app(**shop_options)``) on a free loopback port, its spans exported to
    ``export_dir`` by ``perfsdk.init``; everything stopped and flushed on exit."""
    from opentelemetry.instrumentation.flask import FlaskInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from werkzeug.serving import WSGIRequestHandler, make_server

    class QuietHandler(WSGIRequestHandler):
        def log_request(self, *args: Any, **kwargs: Any) -> None:  # the spans are the record
            pass

    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    app = create_app(**shop_options)
    FlaskInstrumentor().instrument_app(app, tracer_provider=provider)
    try:  # perfsdk last, once the app is built (docs/instrumentation.md says why)
        sdk = init(tracer_provider=provider, export_dir=export_dir, redactor=shop_redactor(),
                   sample_resources=False)
    except BaseException:
        FlaskInstrumentor().uninstrument_app(app)
        app.extensions["shop"].close()
        raise
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="perfsdk-demo-shop", daemon=True)
    thread.start()
    try:
        yield RecordedShop(f"http://127.0.0.1:{server.server_port}", app, sdk)
    finally:
        server.shutdown()
        thread.join(5.0)
        FlaskInstrumentor().uninstrument_app(app)
        sdk.shutdown()
        app.extensions["shop"].close()
