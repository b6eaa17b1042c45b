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
