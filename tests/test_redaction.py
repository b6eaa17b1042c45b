"""Redaction by default: real-looking personal data, in every kind of attribute, never
reaches disk -- while routes, parameter names and harmless values stay analysable."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from perfsdk.export import ArrowSpanExporter, Redactor, read
from perfsdk.export.redact import REDACTED

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


def written_back(tmp_path, spans: dict[str, dict[str, object]], status: str | None = None) -> list[dict]:
    """``spans`` (name -> attributes) through the default ``ArrowSpanExporter``, read back from disk."""
    from opentelemetry.trace import Status, StatusCode

    provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
    provider.add_span_processor(SimpleSpanProcessor(ArrowSpanExporter(str(tmp_path))))
    tracer = provider.get_tracer("t")
    for name, attributes in spans.items():
        with tracer.start_as_current_span(name, attributes=attributes) as span:
            if status is not None:
                span.set_status(Status(StatusCode.ERROR, status))
    provider.shutdown()
    return read(tmp_path).to_pylist()


USER_INFO = {  # a password with an unencoded "#", "/", "?" or "@" -> what is written
    "postgresql://app:hunter2#x@db.internal:5432/shop": "postgresql://db.internal:5432/shop",
    "postgresql://app:hunter2/x@db.internal:5432/shop": "postgresql://db.internal:5432/shop",
    "postgresql://app:hunter2?x@db.internal:5432/shop?sslmode=require":
        "postgresql://db.internal:5432/shop?sslmode=REDACTED",
    "https://bob:hunter2#x@api.example/v1?page=2": "https://api.example/v1?page=REDACTED",
    "mongodb+srv://app:hun/ter2@cluster0.example.net/db": "mongodb+srv://cluster0.example.net/db",
    # more than one "@" could end the user-info: nothing tells which, nothing of it is kept
    "postgresql://app:hun@ter2/x@db.internal:5432/shop": REDACTED,
    "postgresql://app:1234/hunter2@db.internal:5432/shop": REDACTED,  # "app:1234" reads as a host and port
    "https://bob:hunter2@api.example/u?mail=a@b.example": REDACTED,
}


@pytest.mark.parametrize("key", ["url.full", "db.connection_string"])
def test_user_info_with_an_unencoded_delimiter_never_leaks(tmp_path, key):
    """urlsplit ended the authority at the password's first "#", "/" or "?": "app:hunter2" was taken for
    the host and written ('postgresql://app:hunter2', 'postgresql://app:hunter2/REDACTED:5432/shop')."""
    rows = written_back(tmp_path, {f"s{i}": {key: url} for i, url in enumerate(USER_INFO)})
    assert [dict(row["attributes"])[key] for row in rows] == list(USER_INFO.values())
    for secret in ("hunter2", "hun", "ter2", "1234", "bob", "app:"):
        assert secret not in repr(rows)


def test_a_url_without_user_info_keeps_its_at_signs_where_they_are_harmless():
    redactor = Redactor()
    assert redactor.url("https://social.example/@alice/posts") == "https://social.example/@alice/posts"
    assert redactor.url("https://shop.example/u?mail=a@b.example") == "https://shop.example/u?mail=REDACTED"
    assert redactor.url("redis://:hunter2@cache:6379/0") == "redis://cache:6379/0"
    assert redactor.url("postgresql://app:pw@db1:5432,db2:5433/shop") == "postgresql://db1:5432,db2:5433/shop"


HOST_PARAMETERS = {  # ";parameters" in the authority -> what is written
    "jdbc:sqlserver://db.internal:1433;databaseName=shop;user=app;password=hunter2":
        "jdbc:sqlserver://db.internal:1433;databaseName=shop;user=app;password=REDACTED",
    "https://api.example;sid=hunter2/v1": "https://api.example;sid=REDACTED/v1",
    "jdbc:sqlserver://db:1433;integratedSecurity=false;accessToken=hunter2;encrypt=true":
        "jdbc:sqlserver://db:1433;integratedSecurity=false;accessToken=REDACTED;encrypt=true",
}


@pytest.mark.parametrize("key", ["http.url", "db.connection_string"])
def test_secret_parameters_of_a_host_are_redacted(tmp_path, key):
    """Only the path's ";parameters" were stripped: the host's were written as they were."""
    rows = written_back(tmp_path, {f"s{i}": {key: url} for i, url in enumerate(HOST_PARAMETERS)})
    assert [dict(row["attributes"])[key] for row in rows] == list(HOST_PARAMETERS.values())
    assert "hunter2" not in repr(rows)


CONNECTION_STRINGS = {  # not URLs: key=value pairs -> what is written
    "Server=db.internal;Database=shop;User Id=app;Password=hunter2;":
        "Server=db.internal;Database=shop;User Id=app;Password=REDACTED;",
    "host=db.internal port=5432 dbname=shop user=app password=hunter2":
        "host=db.internal port=5432 dbname=shop user=app password=REDACTED",
    "host=db password='hunter2 with spaces' sslmode=require": "host=db password=REDACTED sslmode=require",
    "Server=db;Pwd=hunter2 with spaces;Encrypt=yes": "Server=db;Pwd=REDACTED;Encrypt=yes",
    "Driver={ODBC};Server=db;PWD={hunter2;x};": "Driver={ODBC};Server=db;PWD=REDACTED;",
    "AccountName=shop;AccountKey=hunter2+x==;EndpointSuffix=core.windows.net":
        "AccountName=shop;AccountKey=REDACTED;EndpointSuffix=core.windows.net",
    "AccountName=shop;AccountKey=hunter2+x/y==;EndpointSuffix=core.windows.net":  # "x/y==;..." reads as a path
        "AccountName=shop;AccountKey=REDACTED",
}


def test_connection_strings_that_are_not_urls_lose_their_secrets(tmp_path):
    """ADO.NET's and libpq's key=value connection strings were written in clear."""
    rows = written_back(tmp_path, {f"s{i}": {"db.connection_string": text}
                                   for i, text in enumerate(CONNECTION_STRINGS)})
    assert [dict(row["attributes"])["db.connection_string"] for row in rows] == list(CONNECTION_STRINGS.values())
    assert "hunter2" not in repr(rows)


STATEMENTS = {  # a statement with literals -> what is written
    "UPDATE users SET password = 'hunter2' WHERE id = 7": "UPDATE users SET password = ? WHERE id = ?",
    "SELECT * FROM sessions WHERE api_token = 'hun''ter2' AND n IN (1, 2.5, 0x1F)":
        "SELECT * FROM sessions WHERE api_token = ? AND n IN (?, ?, ?)",
    "SELECT t2.c3 FROM t2 WHERE email = $1 AND note = $$hunter2$$ LIMIT 10":
        "SELECT t2.c3 FROM t2 WHERE email = $1 AND note = ? LIMIT ?",
    'INSERT INTO logins VALUES ("bob", "hunter2': "INSERT INTO logins VALUES (?, ?",  # cut short: to the end
}


@pytest.mark.parametrize("key", ["db.statement", "db.query.text"])
def test_statement_literals_are_replaced(tmp_path, key):
    """OpenTelemetry's conventions recommend sanitizing literals; they were written in clear."""
    rows = written_back(tmp_path, {f"s{i}": {key: text} for i, text in enumerate(STATEMENTS)})
    assert [dict(row["attributes"])[key] for row in rows] == list(STATEMENTS.values())
    assert "hunter2" not in repr(rows)
    assert Redactor(statement_keys=())({key: "SELECT 1"}) == {key: "SELECT 1"}  # the user may keep them


def test_pairs_and_bearer_tokens_in_messages_are_redacted(tmp_path):
    """A status message or an exception.message attribute carried 'password=...' and 'Bearer ...' in clear."""
    rows = written_back(tmp_path, {"login": {
        "exception.message": "login failed: user=bob password=hunter2",
        "app.error": "rejected {'user': 'bob', \"api_key\": \"hunter2\"} with X-Api-Key: hunter2 (bearer hunter2)",
    }}, status="401: header Authorization: Bearer hunter2 rejected")
    (row,) = rows
    assert dict(row["attributes"]) == {
        "exception.message": "login failed: user=bob password=REDACTED",
        "app.error": "rejected {'user': 'bob', \"api_key\": REDACTED} with X-Api-Key: REDACTED (bearer REDACTED)"}
    assert row["status_message"] == "401: header Authorization: Bearer REDACTED rejected"


def test_free_text_is_scanned_for_pairs_only_and_keeps_harmless_ones():
    redactor = Redactor()
    for text in ("KeyError: 'token'", "TokenExpiredError: Signature has expired", "retry=3 timeout=30s; a=b",
                 "password = ?", "host=db user=app"):
        assert redactor.message(text) == text
    assert redactor.message("the password is hunter2") == "the password is hunter2"  # prose: not recognised


SECRET_KEYS = ["rpc.request.metadata.x-jwt-assertion", "http.request.header.x-amz-signature",
               "http.request.header.x-amz-security-token", "http.request.header.x-hub-signature-256",
               "app.accessKeyId", "app.sid", "app.passphrase", "http.request.header.x-csrf-token",
               "messaging.rocketmq.message.keys"]
HARMLESS_KEYS = ["http.request.method", "http.route", "book.author", "app.monkey", "http.request.header.:authority",
                 "server.address", "db.operation.name", "process.pid", "code.function", "inside.count"]


def test_keys_naming_a_secret_are_dropped_and_harmless_ones_kept():
    """'x-jwt-assertion' and 'x-amz-signature' were written in clear."""
    redactor = Redactor()
    written = redactor({key: "hunter2" for key in SECRET_KEYS + HARMLESS_KEYS})
    assert written == {key: "hunter2" for key in HARMLESS_KEYS}


@pytest.mark.parametrize("exported", [True, False])
def test_an_anomaly_is_logged_and_counted_under_its_redacted_name(tmp_path, caplog, exported):
    """The sink logged the raw span name and put it into the 'perfsdk.series' metric attribute."""
    import logging

    import numpy as np
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    import perfsdk

    reader = InMemoryMetricReader()
    provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
    durations = 10 + np.random.default_rng(0).normal(0, 0.5, 600)
    durations[500:510] = 100.0  # an incident
    with caplog.at_level(logging.WARNING, logger="perfsdk.anomaly"):
        sdk = perfsdk.init(tracer_provider=provider, sample_resources=False,
                           export_dir=tmp_path if exported else None,
                           meter_provider=MeterProvider(metric_readers=[reader]))
        try:
            tracer = provider.get_tracer("t")
            for i, duration in enumerate(durations):
                span = tracer.start_span("GET /reset?token=abc123", start_time=10**18 + i * 10**9)
                span.end(end_time=10**18 + i * 10**9 + int(duration * 1e6))
            sdk.force_flush()
        finally:
            sdk.shutdown()
    series = {p.attributes["perfsdk.series"] for rm in reader.get_metrics_data().resource_metrics
              for sm in rm.scope_metrics for m in sm.metrics if m.name == "perfsdk.anomalies"
              for p in m.data.data_points}
    assert series == {"GET /reset?token=REDACTED"}
    assert "perfsdk anomaly" in caplog.text and "GET /reset?token=REDACTED" in caplog.text
    assert "abc123" not in caplog.text


def test_the_sink_redacts_span_names_as_the_export_does_or_by_default():
    """Without an export the log line and the metric still carried the raw span name."""
    from perfsdk.instrument.sink import _span_name_redaction

    assert _span_name_redaction(None)("GET /login?password=hunter2") == "GET /login?password=REDACTED"
    kept = Redactor(scrub_values=False)
    writer = type("Writer", (), {"redact": staticmethod(kept.message)})()
    assert _span_name_redaction(writer)("GET /login?password=hunter2") == "GET /login?password=hunter2"  # the user's


ADVERSARIAL_UNITS = ["=", ":", "@", "'", '"', "a;", "pwd:", "password=", "://", "password={", "(/", "[,", "a=b ",
                     # the command-line, connect-string, scheme, JWT, private-key, comment and opaque-token scans
                     "--password ", "--key,", "a/b@", "=a/", "eyJaaaa.", "-----BEGIN PRIVATE KEY-----", "token 1",
                     "basic ", "/*", "-- ", "a1", "password:\n",
                     "-eyJ"]  # each "eyJ" after a "-" was tried to the run's end: 7 s at 100 KB
TIMED_KEYS = ["url.full", "http.target", "db.statement", "exception.message", "app.note"]


def _redaction_time(redactor, key, text):
    import time

    best = float("inf")
    for _ in range(2):
        redactor._memo = {kind: {} for kind in redactor._memo}
        started = time.perf_counter()
        redactor({key: text})
        best = min(best, time.perf_counter() - started)
    return best


@pytest.mark.parametrize("opaque_tokens", [False, True])
@pytest.mark.parametrize("max_value_chars", [1024, 100_000])
def test_adversarial_values_are_redacted_in_linear_time(max_value_chars, opaque_tokens):
    """A URL was parsed whole before its cut, and each secret pair's value scanned to the end of the
    text: '//x;' + 'pwd:' * N took 1.4 s at 16 KB, 'jdbc:sqlserver://db;' + 'password=' * N 24 s at
    100 KB (the regex engine holds the GIL: the host's threads stalled)."""
    redactor = Redactor(max_value_chars=max_value_chars, opaque_tokens=opaque_tokens)
    for unit in ADVERSARIAL_UNITS:
        for prefix in ("", "//x;", "jdbc:sqlserver://db;"):
            for key in TIMED_KEYS:
                small = prefix + (unit * (10_000 // len(unit) + 1))[:10_000]
                big = prefix + (unit * (100_000 // len(unit) + 1))[:100_000]
                t_small, t_big = _redaction_time(redactor, key, small), _redaction_time(redactor, key, big)
                # linear: ten times the text, about ten times the time (quadratic: a hundred); a ratio, not a
                # timing -- the slack absorbs a shared machine's pauses
                assert t_big < 20 * t_small + 0.1, (key, prefix, unit, t_small, t_big)
        assert len(redactor.message(unit * 100_000)) <= max_value_chars + 3


PORTED_URLS = {  # a host with a port, and an "@" later on -> what is written
    "http://localhost:8000/api/users?email=alice@example.com": "http://localhost:8000/api/users?email=REDACTED",
    "http://orders-svc:8080/v1/users/bob@shop.example": "http://orders-svc:8080/v1/users/REDACTED",
    "https://social.example:443/@bob": "https://social.example:443/@bob",
    "http://10.0.0.5:9200/_search?q=user:alice@x.y": "http://10.0.0.5:9200/_search?q=REDACTED",
    # a password with an unencoded "/": still never written
    "postgresql://app:hunter2/x@db:5432/shop": "postgresql://db:5432/shop",
    "postgresql://app:1234/hunter2@db:5432/shop": REDACTED,
    "postgresql://app:/hunter2@db:5432/shop": REDACTED,
}


def test_a_host_with_a_port_keeps_its_route_when_an_at_sign_follows():
    """'host:8000/...@...' was read as a user-info that might run to the later '@': written 'REDACTED'."""
    redactor = Redactor()
    assert {url: redactor({"url.full": url})["url.full"] for url in PORTED_URLS} == PORTED_URLS


SQL_KEPT = {  # a statement -> what is written: literals go, nothing else changes
    "SELECT price/100 AS p FROM t WHERE id = ?": "SELECT price/? AS p FROM t WHERE id = ?",
    "SELECT a/2, a%3 FROM t": "SELECT a/?, a%? FROM t",
    "SELECT * FROM t WHERE id = %s /*controller='users',framework='django',traceparent='00-ab-cd-01'*/":
        "SELECT * FROM t WHERE id = %s /*controller=?,framework=?,traceparent=?*/",
    "SELECT id FROM users WHERE email = :email AND pwd = :pwd AND token = @token":
        "SELECT id FROM users WHERE email = :email AND pwd = :pwd AND token = @token",
    "SELECT 1 /* alice@example.com */": "SELECT ? /* REDACTED */",
}


@pytest.mark.parametrize("key", ["db.statement", "db.query.text"])
def test_statements_lose_their_literals_only(key):
    """The statement was scrubbed again as free text: 'price/100' became 'price/', a sqlcommenter
    comment was cut, ':email' became REDACTED."""
    redactor = Redactor()
    assert {sql: redactor({key: sql})[key] for sql in SQL_KEPT} == SQL_KEPT


def test_bearer_tokens_in_capitals_and_escaped_quotes_are_redacted():
    redactor = Redactor()
    assert redactor.message("Authorization: BEARER abc.def") == "Authorization: BEARER REDACTED"
    assert redactor.message("token rejected: BEARER abc.def") == "token rejected: BEARER REDACTED"
    assert redactor.message('{"password":"hun\\"ter2", "page": 2}') == '{"password":REDACTED, "page": 2}'
    assert redactor.message('Server=db;Password="hun""ter2";Encrypt=yes') == "Server=db;Password=REDACTED;Encrypt=yes"


def test_the_anomaly_log_line_keeps_its_closing_brackets():
    from perfsdk.detect import Anomaly
    from perfsdk.instrument.sink import _redacted_line, _span_name_redaction

    anomaly = Anomaly("zscore[GET /reset?token=abc]", index=9, value=101.2, expected=100.2, std=1.1, score=3.9,
                      threshold=3.0)
    line = _redacted_line(anomaly, _span_name_redaction(None))
    assert line.endswith(" [zscore[GET /reset?token=REDACTED]]") and "abc" not in line


# -- free-text forms that reached disk in clear (each checked to leak before the fix) -----------------
PRIVATE_KEYS = {  # a PEM private key in a text -> what is written: its body never is
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEAhunter2\n-----END RSA PRIVATE KEY-----":
        "-----BEGIN RSA PRIVATE KEY-----REDACTED-----END RSA PRIVATE KEY-----",
    "cfg: -----BEGIN EC PRIVATE KEY-----\\nMHcCAQEEIhunter2\\n-----END EC PRIVATE KEY----- loaded":
        "cfg: -----BEGIN EC PRIVATE KEY-----REDACTED-----END EC PRIVATE KEY----- loaded",
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEhunter2\n-----END OPENSSH PRIVATE KEY-----":
        "-----BEGIN OPENSSH PRIVATE KEY-----REDACTED-----END OPENSSH PRIVATE KEY-----",
    "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHDBOBgkqhkiG9w0BBQ0whunter2":  # cut short: to the end
        "-----BEGIN ENCRYPTED PRIVATE KEY-----REDACTED",
    "-----BEGIN CERTIFICATE-----\nMIIBhunter2\n-----END CERTIFICATE-----":  # public: kept
        "-----BEGIN CERTIFICATE-----\nMIIBhunter2\n-----END CERTIFICATE-----",
}


def test_a_private_keys_body_never_reaches_disk(tmp_path):
    """A PEM private key in an attribute or a status message was written whole."""
    rows = written_back(tmp_path, {f"s{i}": {"app.config": text} for i, text in enumerate(PRIVATE_KEYS)},
                        status=next(iter(PRIVATE_KEYS)))
    assert [dict(row["attributes"])["app.config"] for row in rows] == list(PRIVATE_KEYS.values())
    assert all(row["status_message"] == next(iter(PRIVATE_KEYS.values())) for row in rows)
    assert repr(rows).count("hunter2") == 1  # the certificate's, kept, and nothing else


SECRETS_IN_FREE_TEXT = {  # a text -> what is written
    # an Azure SAS signature, outside a URL ("sig" names a secret, as "signature" does)
    "SAS sv=2020-08-04&sr=b&sig=hunter2%3D expired": "SAS sv=2020-08-04&sr=b&sig=REDACTED expired",
    # Oracle-style connect strings: the password between "/" and "@"
    "connect scott/hunter2@//db.example:1521/ORCL failed": "connect scott/REDACTED@//db.example:1521/ORCL failed",
    "ORA-01017 for scott/hunter2@orcl": "ORA-01017 for scott/REDACTED@orcl",
    "jdbc:oracle:thin:scott/hunter2@db:1521:ORCL": "jdbc:oracle:thin:scott/REDACTED@db:1521:ORCL",
    "dsn='app/hunter2@10.0.0.5:1521/svc'": "dsn='app/REDACTED:1521/svc'",  # (then read as an e-mail address)
    # command lines: an option naming a secret, its value after a space (after "=": a pair already)
    "exec mytool --password hunter2 --verbose": "exec mytool --password REDACTED --verbose",
    "exec mytool --api-key hunter2 --token 'hun ter2' --user bob":
        "exec mytool --api-key REDACTED --token REDACTED --user bob",
    "exec mytool --password=hunter2": "exec mytool --password=REDACTED",
    "exec mytool --password --verbose": "exec mytool --password --verbose",  # no value: the next option
    "exec mysql -p hunter2": "exec mysql -p hunter2",  # "-p" means too many things: not read
    # credentials after an authorization scheme, and JSON Web Tokens anywhere
    "auth Basic dXNlcjpodW50ZXIy rejected": "auth Basic REDACTED rejected",
    "invalid token 5f2ahunter2": "invalid token REDACTED",
    "reset link /password-reset/eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJodW50ZXIyIn0.c2ln":
        "reset link /password-reset/REDACTED",
    "cookie jwt-eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJodW50ZXIyIn0.c2ln set": "cookie jwt-REDACTED set",  # after a "-"
    # a line break after the separator
    "config password:\n  hunter2": "config password:\n  REDACTED",
    # a login without a scheme (the password may hold a "/"); an image's digest is no login
    "connecting to app:hunter2@db:5432/shop": "connecting to app:REDACTED@db:5432/shop",
    "redis-cli -u app:1234/hunter2@cache": "redis-cli -u app:REDACTED@cache",
    "pull nginx:1.25@sha256:0a1b2c": "pull nginx:1.25@sha256:0a1b2c",
    # a Digest authorization: the response (a hash of the password) and the user go, the challenge stays
    'Authorization: Digest username="bob", realm="shop", nonce="dcd98b71", uri="/cart", '
    'response="6629fae49393a05397450978507c4ef1hunter2"':
        'Authorization: Digest username=REDACTED, realm="shop", nonce=REDACTED, uri="/cart", response=REDACTED',
}


def test_secrets_in_free_text_are_redacted(tmp_path):
    """Each of these was written in clear: a SAS signature, an Oracle connect string's password, a command
    line's --password, a Basic credential, a token after "token", a JWT in a path, a YAML-style value."""
    rows = written_back(tmp_path, {f"s{i}": {"exception.message": text}
                                   for i, text in enumerate(SECRETS_IN_FREE_TEXT)})
    assert [dict(row["attributes"])["exception.message"] for row in rows] == list(SECRETS_IN_FREE_TEXT.values())
    kept = repr([value for text, value in SECRETS_IN_FREE_TEXT.items() if text == value])
    assert repr(rows).count("hunter2") == kept.count("hunter2")


def _regex_operators(parsed):
    """The operators of a parsed pattern, nested ones too."""
    for op, av in parsed:
        yield str(op)
        for item in av if isinstance(av, (tuple, list)) else (av,):
            for sub in item if isinstance(item, (tuple, list)) else (item,):
                if hasattr(sub, "data"):  # a SubPattern
                    yield from _regex_operators(sub)


def test_the_patterns_compile_on_python_3_10():
    """perfsdk supports Python 3.10, whose re has no possessive quantifiers ("a*+") or atomic groups
    ("(?>a)"): a pattern with one made importing perfsdk.export.redact raise re.error there."""
    import importlib
    import re

    from perfsdk.export import redact

    parser = getattr(re, "_parser", None) or importlib.import_module("sre_parse")
    patterns = {name: value for name, value in vars(redact).items() if isinstance(value, re.Pattern)}
    assert len(patterns) > 20
    for name, pattern in patterns.items():
        operators = set(_regex_operators(parser.parse(pattern.pattern, pattern.flags)))
        assert not operators & {"POSSESSIVE_REPEAT", "ATOMIC_GROUP"}, name


def test_a_command_lines_arguments_lose_their_secrets():
    """process.command_args is a list: its items are joined with commas, and an option's value follows one."""
    redactor = Redactor()
    written = redactor({"process.command_args": ("mytool", "--password", "hunter2", "--verbose", "out.txt"),
                        "process.command_line": "mytool --db-password \"hun ter2\" out.txt"})
    assert written == {"process.command_args": "mytool,--password,REDACTED,--verbose,out.txt",
                       "process.command_line": "mytool --db-password REDACTED out.txt"}


ORDINARY_TEXTS = [  # no secret: written as they are
    "GET /a/b@c", "/users/@me/settings", "https://social.example/@bob/posts", "http://registry:4873/@babel/core",
    "uses: actions/checkout@v4", "uses actions/setup-python@main", "Cannot find module lodash/fp@latest",
    "git checkout origin/feature@HEAD", "redis key user/42@session", "image library/nginx@sha256:0d17b565c37b", "pkg/fp@v2",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)", "a basic checkout flow",
    "token expired", "the token bucket refilled 10 tokens", "Basic auth failed", "negotiate terms",
    "SAS token sv=2020&sr=b", "retry --timeout 30 --verbose", "Digest auth required", "with digest sha256:0d17b5",
    "trace 0af7651916cd43dd8448eb211c80319c span b7ad6b7169203331",
    "-----BEGIN PUBLIC KEY-----x-----END PUBLIC KEY-----",
]


def test_ordinary_texts_are_not_taken_for_secrets():
    """What the new forms must not eat: paths with an "@" (a path starts with "/"; a package or an action at a
    version or digest), English after a scheme's name, options naming nothing secret, trace ids."""
    redactor = Redactor()
    assert {text: redactor.message(text) for text in ORDINARY_TEXTS} == {text: text for text in ORDINARY_TEXTS}


SQL_COMMENTS = {  # a statement -> what is written: its comments are free text
    "SELECT 1 /* password=hunter2 */": "SELECT ? /* password=REDACTED */",
    "SELECT a FROM t -- login user=bob token: hunter2\nWHERE b = $1":
        "SELECT a FROM t -- login user=bob token: REDACTED\nWHERE b = $1",
    "SELECT a FROM t /*app=shop,password=hunter2": "SELECT a FROM t /*app=shop,password=REDACTED",  # unclosed
    "SELECT * FROM t /*user='bob',password='hunter2'*/": "SELECT * FROM t /*user=?,password=?*/",  # literals: ?
    "SELECT a FROM t /* see https://x.example/r?key=hunter2 */":
        "SELECT a FROM t /* see https://x.example/r?key=REDACTED */",
    "SELECT /*+ INDEX(t idx) */ a FROM t -- route=/users/{id}":
        "SELECT /*+ INDEX(t idx) */ a FROM t -- route=/users/{id}",
    "SELECT a FROM t # login password=hunter2\nWHERE b = 1":  # MySQL's comment
        "SELECT a FROM t # login password=REDACTED\nWHERE b = ?",
    "SELECT data #> '{a,b}', x # 5 FROM t": "SELECT data #> ?, x # ? FROM t",  # PostgreSQL's operators
}


def test_secrets_in_a_statements_comments_are_redacted():
    """A statement kept everything but its literals: an unquoted 'password=...' in a comment was written."""
    redactor = Redactor()
    assert {sql: redactor({"db.statement": sql})["db.statement"] for sql in SQL_COMMENTS} == SQL_COMMENTS


def test_a_database_urls_password_with_a_slash_after_a_numeric_user_never_leaks():
    """'app:1234' reads as a host and port: 'postgresql://app:1234/x@db' was written as it was (the password
    '1234/x'). A database's path has no "@"; a web URL's often does, and keeps its route."""
    redactor = Redactor()
    for url in ("postgresql://app:1234/hunter2@db", "mysql://app:99/hunter2@db/shop"):
        assert redactor({"db.connection_string": url}) == {"db.connection_string": REDACTED}
        assert redactor.message(f"connect to {url} failed") == "connect to REDACTED failed"
    assert redactor.message("jdbc:mysql://u:1/hunter2@db") == "jdbc:REDACTED"
    for url in ("http://registry:4873/pkg/lodash@4.17.21", "https://social.example:443/u/bob@home"):
        assert redactor.url(url) == url


def test_opaque_tokens_are_an_explicit_option():
    """Long opaque tokens (with letters and digits) go only when asked: span attributes are joined on trace
    ids and hashes, which look the same."""
    text = "trace 0af7651916cd43dd8448eb211c80319c key sk-live-9f8e7d6c5b4a39281706f5e4d3c2b1a0 basic checkout"
    assert Redactor().message(text) == text
    assert Redactor(opaque_tokens=True).message(text) == "trace REDACTED key REDACTED basic REDACTED"
    with pytest.raises(TypeError, match="opaque_tokens"):
        Redactor(opaque_tokens="yes")


class _BrokenStr(str):
    def __str__(self):
        raise RuntimeError("broken __str__")

    def __getitem__(self, index):
        raise RuntimeError("broken __getitem__")


class _BrokenInt(int):
    def __str__(self):
        raise RuntimeError("broken __str__")

    __repr__ = __str__


class _BrokenKey(str):
    def lower(self):
        raise RuntimeError("broken lower")


def test_one_unreadable_value_costs_only_itself(tmp_path):
    """A value whose redaction raised (an int too long for str(), a broken __str__, a broken key) failed the
    whole batch: every span in it was lost. It is now dropped and counted; everything else is written."""
    import warnings

    from opentelemetry.trace import Status, StatusCode

    exporter = ArrowSpanExporter(str(tmp_path))
    provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    bad = {"huge": 10**5000, "int": _BrokenInt(7), "items": (_BrokenInt(1), 2), _BrokenKey("odd"): "v"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # OpenTelemetry's own, about attribute types
        with tracer.start_as_current_span("before", attributes={"a": "1"}):
            pass
        attributes = {**bad, "ok": "fine", "text": _BrokenStr("kept")}
        with tracer.start_as_current_span("GET /x", attributes=attributes) as span:
            span.set_status(Status(StatusCode.ERROR, _BrokenStr("boom")))
        with tracer.start_as_current_span("after", attributes={"a": "2", "lone": "a\ud800b"}):
            pass
    provider.shutdown()
    rows = read(tmp_path).to_pylist()
    assert [row["name"] for row in rows] == ["before", "GET /x", "after"]
    assert dict(rows[1]["attributes"]) == {"ok": "fine", "text": "kept"}
    assert rows[1]["status_message"] == "boom"  # a str subclass is read as the str it is
    assert dict(rows[2]["attributes"]) == {"a": "2", "lone": "a?b"}
    stats = exporter.stats()
    assert stats["spans_exported"] == 3 and stats["spans_failed"] == 0
    assert stats["values_rejected"] == len(bad) and stats["attributes_redacted"] >= len(bad)


def test_unreadable_names_and_messages_are_written_redacted():
    redactor = Redactor(hash_keys=["enduser.id"], hash_key=b"k")
    assert redactor.message(_BrokenInt(3)) == REDACTED and redactor.rejected == 1
    assert redactor({"enduser.id": "a\ud800"})["enduser.id"].startswith("hmac:")  # hashed, not lost


def test_a_span_that_cannot_be_stored_costs_only_itself(tmp_path):
    """A span named by a str subclass whose __str__ raises made the column store raise: the exporter lost its
    whole batch (every span a BatchSpanProcessor handed it). It is counted failed; the others are written."""
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    exporter = ArrowSpanExporter(str(tmp_path), timer=False)
    provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=60_000))
    tracer = provider.get_tracer("t")
    for name in ("before", _BrokenStr("GET /x"), "after"):
        with tracer.start_as_current_span(name):
            pass
    provider.shutdown()  # one batch of three
    assert [row["name"] for row in read(tmp_path).to_pylist()] == ["before", "after"]
    stats = exporter.stats()
    assert (stats["spans_exported"], stats["spans_failed"]) == (2, 1)
    assert stats["faults"] == {"arrow span export: unreadable span": 1}
