"""Redaction by default: real-looking personal data, in every kind of attribute, never
reaches disk -- while routes, parameter names and harmless values stay analysable."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from perfsdk.export import ArrowSpanExporter, Redactor, read

PII = {
    "e-mail": "alice.smith+shop@example.co.uk",
    "card": "4539 1488 0343 6467",
    "token": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl",
    "session id": "a3f9c2d18e7b4c6f9e0d1a2b3c4d5e6f",
    "phone": "+44 20 7946 0958",
}


def carriers(value: str) -> dict[str, str]:
    """Every attribute kind personal data travels in, carrying ``value``."""
    from urllib.parse import quote

    q = quote(value, safe="")
    return {
        "http.target": f"/cart?who={q}&page=2",
        "http.url": f"https://shop.example/cart?who={q}",
        "url.full": f"https://user:{q}@shop.example/pay?ref={q}#frag={q}",
        "url.query": f"who={q}&sort=price",
        "url.original": f"/pay?ref={q}",
        "http.request.header.authorization": f"Bearer {value}",
        "http.request.header.cookie": f"session={value}",
        "http.request.header.x-forwarded-for": value,
        "http.request.header.x-api-key": value,
        "enduser.email": value,
        "user.phone": value,
        "app.session_id": value,
        "db.password": value,
    }


@pytest.mark.parametrize("kind", list(PII))
def test_personal_data_never_reaches_disk_by_default(tmp_path, kind):
    value = PII[kind]
    provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
    provider.add_span_processor(SimpleSpanProcessor(ArrowSpanExporter(str(tmp_path))))
    with provider.get_tracer("t").start_as_current_span("GET /cart", attributes=carriers(value)):
        pass
    provider.shutdown()
    written = dict(read(tmp_path).to_pylist()[0]["attributes"])
    text = repr(written)
    for form in {value, value.replace(" ", ""), value.replace("@", "%40"), value.replace(" ", "%20"),
                 value.replace("+", "%2B")}:
        assert form not in text, (kind, form, written)
    assert written["http.target"] == "/cart?who=REDACTED&page=REDACTED"  # route and names stay
    assert written["url.full"] == "https://shop.example/pay?ref=REDACTED"  # no user-info, no fragment


def test_values_in_clear_lose_e_mails_and_card_numbers_but_keep_ordinary_numbers():
    redactor = Redactor()
    out = redactor({"checkout.note": "mail bob@example.org, card 4111-1111-1111-1111",
                    "order.id": "1234567890123456", "http.route": "/orders/{id}"})
    assert out["checkout.note"] == "mail REDACTED, card REDACTED"
    assert out["order.id"] == "1234567890123456"  # fails the Luhn check: not a card number
    assert out["http.route"] == "/orders/{id}"


def test_safe_parameters_and_opt_in_keep_what_the_user_allows():
    redactor = Redactor(safe_params=["page", "sort"], opt_in=["enduser.email"])
    out = redactor({"http.target": "/search?q=alice&page=2&sort=price", "enduser.email": "a@b.co"})
    assert out == {"http.target": "/search?q=REDACTED&page=2&sort=price", "enduser.email": "a@b.co"}


@pytest.mark.parametrize("kwargs,error", [({"deny": "email"}, TypeError), ({"hash_key": "k"}, TypeError),
                                          ({"max_value_chars": 0}, ValueError), ({"safe_params": "page"}, TypeError)])
def test_bad_redactor_arguments_name_the_argument(kwargs, error):
    with pytest.raises(error, match=next(iter(kwargs))):
        Redactor(**kwargs)


def test_allow_keeps_only_its_keys_url_keys_included():
    """URL attributes were redacted and kept before ``allow`` was asked: only the allowed keys are kept."""
    redactor = Redactor(allow=["http.route", "url.full"], hash_keys=["enduser.id"], hash_key=b"k")
    out = redactor({"http.route": "/cart", "http.url": "https://shop.example/cart?x=1", "url.query": "a=1",
                    "url.full": "https://shop.example/cart?x=1", "user.id": "42", "enduser.id": "alice"})
    assert out == {"http.route": "/cart", "url.full": "https://shop.example/cart?x=REDACTED",
                   "enduser.id": redactor.hash("alice")}  # an allowed URL key is still redacted; hash_keys still hash


SECRETS_IN_TEXT = {  # a value where no URL key applies -> what is written
    "http.request.header.referer": (("https://shop.example/reset?reset_code=8f2a91c4&uid=7",),
                                    "https://shop.example/reset?reset_code=REDACTED&uid=REDACTED"),
    "db.connection_string": ("postgresql://app:hunter2@localhost:5432/shop", "postgresql://localhost:5432/shop"),
    "app.note": ("retry www.pay.example/v1/charge?sk_live_51Habc later", "retry www.pay.example/v1/charge?REDACTED later"),
    "http.target": ("/cart;jsessionid=8F2A91C4D5E6?page=2", "/cart?page=REDACTED"),
    "url.full": ("https://shop.example/cart;jsessionid=8F2A91C4D5E6", "https://shop.example/cart"),
    "url.query": ("sk_live_51Habcdef&page=2", "REDACTED&page=REDACTED"),
}


def test_a_url_in_any_text_written_in_clear_loses_its_secrets(tmp_path):
    """A secret in a URL reached disk wherever no URL key applied: in a header or a connection string, an
    exception's message, a span named after its raw target, a path's ;jsessionid, a parameter without a value."""
    provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
    provider.add_span_processor(SimpleSpanProcessor(ArrowSpanExporter(str(tmp_path))))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("GET /reset?token=abc123&email=alice@example.com",
                                      attributes={key: value for key, (value, _) in SECRETS_IN_TEXT.items()}):
        pass
    try:
        with tracer.start_as_current_span("charge"):
            raise ConnectionError("401 Unauthorized for url: https://pay:hunter2@api.example.com/v1/charge"
                                  "?api_key=sk_live_51Habc")
    except ConnectionError:
        pass
    provider.shutdown()
    named, failed = read(tmp_path).to_pylist()
    assert named["name"] == "GET /reset?token=REDACTED&email=REDACTED"
    assert dict(named["attributes"]) == {key: written for key, (_, written) in SECRETS_IN_TEXT.items()}
    assert failed["status_message"] == ("ConnectionError: 401 Unauthorized for url: "
                                        "https://api.example.com/v1/charge?api_key=REDACTED")
    text = repr(named) + repr(failed)
    for secret in ("abc123", "alice", "8f2a91c4", "hunter2", "sk_live", "jsessionid", "8F2A91C4D5E6"):
        assert secret not in text


def test_text_without_a_url_is_written_as_it_was():
    redactor = Redactor()
    for text in ("order #123 for the usual customer", "GET /orders/{id}", "timeout after 30 s; retried",
                 "a/b testing", "1.5 ms"):
        assert redactor({"app.note": text}) == {"app.note": text} and redactor.message(text) == text


def test_an_anomaly_names_its_span_as_the_spans_table_does(tmp_path):
    """A live anomaly's series is its span's name: written in clear to the anomalies table, it kept the
    query the spans table now redacts."""
    import numpy as np

    import perfsdk

    provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
    sdk = perfsdk.init(tracer_provider=provider, export_dir=tmp_path, sample_resources=False)
    tracer = provider.get_tracer("t")
    durations = 10 + np.random.default_rng(0).normal(0, 0.5, 600)
    durations[500:510] = 100.0  # an incident
    try:
        for i, duration in enumerate(durations):
            span = tracer.start_span("GET /reset?token=abc123", start_time=10**18 + i * 10**9)
            span.end(end_time=10**18 + i * 10**9 + int(duration * 1e6))
    finally:
        sdk.shutdown()
    anomalies, spans = read(tmp_path, table="anomalies"), read(tmp_path)
    assert anomalies.num_rows >= 1 and "abc123" not in repr(anomalies.to_pylist())
    assert set(anomalies.column("series").to_pylist()) == set(spans.column("name").to_pylist()) == {
        "GET /reset?token=REDACTED"}
    assert set(anomalies.column("trace_id").to_pylist()) <= set(spans.column("trace_id").to_pylist())  # joinable
