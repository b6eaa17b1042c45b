"""The LLM hook against a real OpenAI-compatible server on loopback (tests/llm_server.py), and the
offline default: answers become Scenarios with provenance; hostile or malformed answers are all
refused before anything runs; repairs; retries honouring Retry-After; timeouts; what leaves the
process (no e-mail address, no token); the API key header."""

from __future__ import annotations

import copy
import json
import socket
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import pyarrow as pa
import pytest
from llm_server import LLMServer, Reply, answer, error, llm_server, rate_limited, slow  # noqa: F401

from perfsdk.detect import Anomaly
from perfsdk.export.schema import SPANS
from perfsdk.testgen import (
    Limits, LLMError, LLMScenarioGenerator, ModelScenarioGenerator, Scenario, ScenarioGenerator,
    ScenarioRejected,
)
from perfsdk.testgen.model import TrafficModel
from perfsdk.testgen.scenario import SCHEMA, SCHEMA_VERSION

EMAIL = "alice.secret@example.com"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNlY3JldA"
API_TOKEN = "sk-live-9f8e7d6c5b4a39281706f5e4d3c2b1a0"
SECRETS = (EMAIL, JWT, API_TOKEN, "alice.secret", "c2lnbmF0dXJl")
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def _spans() -> pa.Table:
    """SERVER spans of a small shop: 12 sessions browsing, carting and checking out -- plus spans with an
    e-mail address and a token where they can reach a route key (no http.route: the raw path is used)
    and in attributes that must never leave."""
    rows: list[dict[str, Any]] = []

    def span(session: str, t: float, method: str, route: str | None, target: str, status: int = 200,
             duration_ms: float = 12.0, extra: dict[str, str] | None = None) -> None:
        attributes = {"http.request.method": method, "http.target": target,
                      "http.response.status_code": str(status), "session.id": session, **(extra or {})}
        if route is not None:
            attributes["http.route"] = route
        start = T0 + timedelta(seconds=t)
        rows.append({
            "trace_id": f"{len(rows) + 1:032x}", "span_id": f"{len(rows) + 1:016x}", "parent_span_id": None,
            "name": f"{method} {route or target}", "kind": "SERVER", "start_time": start,
            "end_time": start + timedelta(milliseconds=duration_ms), "duration_ms": duration_ms,
            "status_code": "ERROR" if status >= 500 else "UNSET", "status_message": None,
            "service.name": "shop", "scope.name": "opentelemetry.instrumentation.flask",
            "attributes": list(attributes.items()),
        })

    for k in range(12):
        t = k * 4.0
        session = f"s{k}"
        span(session, t, "GET", "/", "/")
        span(session, t + 1, "GET", "/products/<int:pid>", f"/products/{k % 4 + 1}?ref=home", duration_ms=20.0,
             extra={"user.email": EMAIL, "http.request.header.authorization": f"Bearer {JWT}"})
        span(session, t + 2, "POST", "/cart", "/cart", status=500 if k == 3 else 200)
        span(session, t + 3, "POST", "/checkout", "/checkout", duration_ms=80.0)
    span("s99", 60.0, "GET", None, f"/users/{EMAIL}/orders")
    span("s99", 61.0, "GET", None, f"/password-reset/{JWT}")
    return pa.Table.from_pylist(rows, schema=SPANS)


@pytest.fixture(scope="module")
def model() -> TrafficModel:
    return TrafficModel.from_table(_spans())


GOOD: dict[str, Any] = {
    "version": 1,
    "name": "Flash sale on checkout (5x spike)",
    "host": "http://127.0.0.1:8000",
    "load": {"model": "open", "stages": [{"duration_s": 20, "arrival_rate": 2.0},
                                          {"duration_s": 20, "arrival_rate": 10.0},
                                          {"duration_s": 20, "arrival_rate": 2.0}]},
    "generators": {"pid": {"kind": "choice", "values": ["1", "2"], "weights": [3, 1]}},
    "tasks": [
        {"name": "GET /products/<int:pid>", "weight": 3, "steps": [{"method": "GET", "path": "/products/{pid}"}]},
        {"name": "POST /cart", "weight": 2,
         "steps": [{"method": "POST", "path": "/cart", "json": {"product": "{pid}", "quantity": 1}}]},
        {"name": "POST /checkout", "weight": 1, "steps": [{"method": "POST", "path": "/checkout"}]},
    ],
    "assertions": [{"task": "POST /checkout", "metric": "p95_ms", "below": 250},
                   {"metric": "error_rate", "below": 0.01}],
    "metadata": {"generated_by": "a person, honestly", "reviewed": True},
}


def good(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(GOOD)
    data.update(changes)
    return data


def generator(server: LLMServer, **kwargs: Any) -> LLMScenarioGenerator:
    kwargs.setdefault("timeout_s", 5.0)
    kwargs.setdefault("backoff_s", 0.01)
    return LLMScenarioGenerator(server.base_url, "test-model", **kwargs)


# -- a correct answer ---------------------------------------------------------------------------
def test_a_correct_answer_becomes_a_scenario_with_provenance(llm_server: LLMServer, model: TrafficModel,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PERFSDK_LLM_API_KEY", raising=False)
    llm_server.script(answer(GOOD))
    scenario = generator(llm_server).generate(model, "a flash sale on checkout with a 5× spike")

    assert isinstance(scenario, Scenario)
    assert [t["name"] for t in scenario.tasks] == ["GET /products/<int:pid>", "POST /cart", "POST /checkout"]
    assert [s["arrival_rate"] for s in scenario.stages] == [2.0, 10.0, 2.0]
    meta = scenario.metadata
    assert meta["generated_by"] == "perfsdk.testgen.LLMScenarioGenerator"  # not what the answer claimed
    assert "reviewed" not in meta
    assert meta["llm_model"] == "test-model"
    assert meta["llm_host"] == f"127.0.0.1:{llm_server.port}"
    assert meta["schema_version"] == SCHEMA_VERSION
    assert (meta["attempts"], meta["repairs"], meta["http_retries"]) == (1, 0, 0)
    assert meta["goal"] == "a flash sale on checkout with a 5× spike"
    assert meta["routes_from"] == "traffic"

    (request,) = llm_server.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["content-type"] == "application/json"
    body = request.json
    assert body["model"] == "test-model" and body["temperature"] == 0
    assert body["response_format"] == {"type": "json_schema",
                                       "json_schema": {"name": "scenario", "schema": SCHEMA, "strict": False}}
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert meta["prompt_sha256"] == __import__("hashlib").sha256(
        json.dumps(body["messages"], sort_keys=True).encode()).hexdigest()
    prompt = body["messages"][1]["content"]
    assert "a flash sale on checkout with a 5× spike" in prompt
    for route in ("GET /products/<int:pid>", "POST /cart", "POST /checkout"):
        assert route in prompt  # the profile is there: routes, shares, latencies
    assert '"p95_ms"' in prompt and '"session_rate_per_s"' in prompt


def test_the_models_notes_are_in_the_scenario_the_llm_wrote(llm_server: LLMServer, model: TrafficModel) -> None:
    """The docs promise them in every generated scenario; the LLM's scenarios had none."""
    noted = TrafficModel.from_table(_spans())
    noted.notes = ["3 server spans with no HTTP path (e.g. 'process_payment'): left out"]
    llm_server.script(answer(good(metadata={"notes": ["the LLM's own"]})), answer(GOOD))
    scenario = generator(llm_server).generate(noted, "a flash sale on checkout")
    assert scenario.metadata["notes"] == noted.notes  # (the answer's metadata is never taken)
    assert model.notes == [] and "notes" not in generator(llm_server).generate(model, "a flash sale").metadata


def test_a_fenced_json_block_is_accepted(llm_server: LLMServer, model: TrafficModel) -> None:
    llm_server.script(answer("Here is the scenario:\n```json\n" + json.dumps(GOOD, indent=2) + "\n```\nEnjoy."))
    scenario = generator(llm_server).generate(model, "flash sale")
    assert scenario.name == GOOD["name"]


def test_an_openapi_spec_sets_the_routes_a_step_may_request(llm_server: LLMServer, model: TrafficModel) -> None:
    spec = {"openapi": "3.0.3", "servers": [{"url": "http://shop.local/api"}],
            "paths": {"/products/{id}": {"get": {}, "parameters": []}, "/cart": {"post": {}}}}
    data = good(tasks=[{"name": "GET /api/products/{id}", "steps": [{"method": "GET", "path": "/api/products/{pid}"}]},
                       {"name": "POST /cart", "steps": [{"method": "POST", "path": "/cart"}]}],
                assertions=[])
    on_checkout = good(tasks=[*data["tasks"], GOOD["tasks"][2]], assertions=[])
    llm_server.script(answer(data), answer(on_checkout))
    gen = generator(llm_server, openapi=spec, max_repairs=0)

    scenario = gen.generate(model, "browse")
    assert scenario.metadata["routes_from"] == "openapi"
    assert "routes_in_openapi_spec" in llm_server.requests[0].json["messages"][1]["content"]
    with pytest.raises(ScenarioRejected) as info:  # observed, but not in the spec
        gen.generate(model, "browse and buy")
    assert info.value.problems[0][0] == "$.tasks[2].steps[0].path"


# -- hostile and malformed answers: all refused -------------------------------------------------
def _step(method: str, path: str, **more: Any) -> dict[str, Any]:
    return good(tasks=[{"name": "GET /products/<int:pid>", "steps": [{"method": method, "path": path, **more}]}],
                assertions=[])


HOSTILE: dict[str, tuple[Reply, str, str]] = {  # name: (reply, the problem's path, words in its message)
    "truncated JSON": (answer('{"version": 1, "name": "x", "load": {"model": "op'), "$", "not JSON"),
    "prose": (answer("Sure! I would run a flash sale with lots of users."), "$", "not JSON"),
    "cut off at the token limit": (answer('{"version": 1, "tasks": [', finish_reason="length"), "$", "cut off"),
    "an array": (answer(json.dumps([GOOD])), "$", "is an array, not a JSON object"),
    "empty": (answer(""), "$", "empty"),
    "a refusal": (Reply(content=None, refusal="I can't help with that."), "$", "refused"),
    "NaN rate": (answer(json.dumps(GOOD).replace("10.0", "NaN")), "$", "NaN is not a JSON number"),
    "Infinity users": (answer(json.dumps(GOOD).replace("10.0", "Infinity")), "$", "Infinity"),
    "a number too large": (answer(json.dumps(GOOD).replace("10.0", "1e400")), "$", "too large a number"),
    "an integer too large for a float": (answer(json.dumps(GOOD).replace("10.0", "1" + "0" * 400)),
                                         "$.load.stages[1].arrival_rate", "too large a number"),
    "nested a million deep": (answer("[" * 1_000_000), "$", "not JSON"),
    "wrong version": (answer(good(version=2)), "$.version", "1 was expected"),
    "no tasks": (answer({k: v for k, v in GOOD.items() if k != "tasks"}), "$", "'tasks' is a required property"),
    "an unknown route": (answer(_step("GET", "/admin/export-all-users")), "$.tasks[0].steps[0].path",
                         "not a route of the observed traffic"),
    "a known path, another method": (answer(_step("DELETE", "/cart")), "$.tasks[0].steps[0].path", "not a route"),
    "a placeholder where the route is literal": (answer(_step("POST", "/{pid}", )), "$.tasks[0].steps[0].path",
                                                 "not a route"),
    "a protocol-relative path": (answer(_step("GET", "//evil.example.com/products/1")),
                                 "$.tasks[0].steps[0].path", "not a route"),
    "a dot segment on a parameter": (answer(_step("GET", "/products/..")), "$.tasks[0].steps[0].path", "not a route"),
    "dots in percent-encoding": (answer(_step("GET", "/products/%2e%2e")), "$.tasks[0].steps[0].path", "not a route"),
    "a slash in percent-encoding": (answer(_step("GET", "/products/..%2F..%2Fadmin")), "$.tasks[0].steps[0].path",
                                    "not a route"),
    "'..' as a generator value in a path": (answer(good(generators={"pid": {"kind": "choice", "values": ["1", ".."]}},
                                                         tasks=[GOOD["tasks"][0]], assertions=[])),
                                             "$.generators.pid.values[1]", "walks out of the route"),
    "a header over two lines": (answer(_step("GET", "/products/{pid}", headers={"X-A": "1\r\nHost: evil.example"})),
                                "$.tasks[0].steps[0].headers['X-A']", "should not be valid"),
    "a header ending in a newline": (answer(_step("GET", "/products/{pid}", headers={"X-A": "1\n"})),
                                     "$.tasks[0].steps[0].headers['X-A']", "should not be valid"),
    "a foreign host": (answer(good(host="https://evil.example.com")), "$.host", "not on the allowlist"),
    "a foreign host with a port": (answer(good(host="http://attacker.example:8000")), "$.host", "allowlist"),
    "credentials in the host": (answer(good(host="http://user:pw@127.0.0.1")), "$.host", "does not match"),
    "an absurd arrival rate": (answer(good(load={"model": "open",
                                                 "stages": [{"duration_s": 60, "arrival_rate": 1e9}]})),
                               "$.load.stages[0].arrival_rate", "above the cap"),
    "absurd users": (answer(good(load={"model": "closed", "stages": [{"duration_s": 60, "users": 10_000_000,
                                                                       "spawn_rate": 10}]})),
                     "$.load.stages[0].users", "above the cap"),
    "an absurd duration": (answer(good(load={"model": "open", "stages": [{"duration_s": 1e7, "arrival_rate": 1}]})),
                           "$.load.stages", "above the cap"),
    "task weights whose sum overflows": (answer(good(tasks=[{**task, "weight": 1e308} for task in GOOD["tasks"]])),
                                         "$.tasks", "the tasks' weights sum beyond the largest number a float holds"),
    "code in a path": (answer(_step("GET", "/products/{pid}; __import__('os').system('rm -rf /')")),
                       "$.tasks[0].steps[0].path", "not a route"),
    "a format-string attack in a path": (answer(_step("GET", "/products/{pid.__class__.__mro__}")),
                                         "$.tasks[0].steps[0].path", "not a plain generator name"),
    "code in a task name": (answer(good(tasks=[{"name": "__import__('os').system('id')",
                                                "steps": [{"method": "GET", "path": "/"}]}], assertions=[])),
                            "$.tasks[0].name", "neither a route key nor a plain label"),
    "markup in a task name": (answer(good(tasks=[{"name": "<script>alert(1)</script>",
                                                  "steps": [{"method": "GET", "path": "/"}]}], assertions=[])),
                              "$.tasks[0].name", "plain label"),
    "a template in the scenario's name": (answer(good(name="{{ config.__class__ }}")), "$.name", "plain label"),
    "a Host header": (answer(_step("GET", "/products/{pid}", headers={"Host": "evil.example.com"})),
                      "$.tasks[0].steps[0].headers['Host']", "where or as whom"),
    "an Authorization header": (answer(_step("GET", "/", headers={"authorization": "Bearer x"})),
                                "$.tasks[0].steps[0].headers['authorization']", "as whom"),
    **{f"an {header} header": (answer(_step("GET", "/products/{pid}", headers={header: "/admin"})),
                               f"$.tasks[0].steps[0].headers['{header}']", "where or as whom")
       for header in ("X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override", "X-Original-URL",
                      "X-Rewrite-URL", "X-Forwarded-Prefix", "X-Forwarded-Port", "X-Forwarded-Server",
                      "X-Forwarded-Uri", "x-forwarded-ssl")},  # any X-Forwarded-*, as the docs say
    "Python code as the answer": (answer("__import__('os').system('touch pwned')"), "$", "not JSON"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_every_hostile_or_malformed_answer_is_refused(llm_server: LLMServer, model: TrafficModel,
                                                      case: str) -> None:
    reply, path, words = HOSTILE[case]
    llm_server.script(reply)
    with pytest.raises(ScenarioRejected) as info:
        generator(llm_server, max_repairs=0).generate(model, "a flash sale on checkout")
    assert isinstance(info.value, ValueError)
    assert info.value.attempts == 1
    assert any(p == path and words in m for p, m in info.value.problems), info.value.problems
    assert "nothing was run" in str(info.value) and path in str(info.value)


def test_refusals_are_a_hundred_percent(llm_server: LLMServer, model: TrafficModel) -> None:
    """The whole hostile set, one after the other through one generator: every answer refused."""
    llm_server.script(*(copy.deepcopy(reply) for reply, _, _ in HOSTILE.values()))
    gen = generator(llm_server, max_repairs=0)
    refused = 0
    for _ in HOSTILE:
        with pytest.raises(ScenarioRejected):
            gen.generate(model, "a flash sale")
        refused += 1
    assert refused / len(HOSTILE) == 1.0
    assert len(llm_server.requests) == len(HOSTILE)


# -- repairs ------------------------------------------------------------------------------------
def test_a_repair_quotes_the_problems_and_a_repaired_answer_is_accepted(llm_server: LLMServer,
                                                                        model: TrafficModel) -> None:
    hostile = good(host="https://evil.example.com")
    hostile["tasks"][0]["steps"][0]["path"] = "/admin/users"
    llm_server.script(answer(hostile), answer(GOOD))
    scenario = generator(llm_server, max_repairs=2).generate(model, "flash sale on checkout")

    assert (scenario.metadata["attempts"], scenario.metadata["repairs"]) == (2, 1)
    first, second = (r.json["messages"] for r in llm_server.requests)
    assert second[:2] == first  # the same prompt, then the exchange
    assert second[2] == {"role": "assistant", "content": json.dumps(hostile)}
    assert second[3]["role"] == "user"
    repair = second[3]["content"]
    assert "$.host: host 'evil.example.com' is not on the allowlist" in repair
    assert "$.tasks[0].steps[0].path: GET /admin/users is not a route of the observed traffic" in repair
    assert "nothing was run" in repair


def test_repairs_are_bounded_then_a_clear_error(llm_server: LLMServer, model: TrafficModel) -> None:
    llm_server.script(answer("not json"), answer(good(host="https://evil.example.com")),
                      answer(_step("GET", "/nope")))
    with pytest.raises(ScenarioRejected) as info:
        generator(llm_server, max_repairs=2).generate(model, "flash sale")
    assert info.value.attempts == 3 and len(llm_server.requests) == 3
    assert [p for p, _ in info.value.problems] == ["$.tasks[0].steps[0].path"]  # the last answer's
    assert "after 3 answers (2 repairs)" in str(info.value)


# -- retries, timeouts, transport errors --------------------------------------------------------
def test_429_with_retry_after_in_seconds_is_honoured(llm_server: LLMServer, model: TrafficModel) -> None:
    llm_server.script(rate_limited("1"), answer(GOOD))
    start = time.monotonic()
    scenario = generator(llm_server).generate(model, "flash sale")
    waited = time.monotonic() - start
    assert 1.0 <= waited < 2.5
    assert scenario.metadata["http_retries"] == 1 and len(llm_server.requests) == 2


def test_429_with_retry_after_as_an_http_date_is_honoured(llm_server: LLMServer, model: TrafficModel) -> None:
    when = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=2)
    llm_server.script(rate_limited(format_datetime(when, usegmt=True)), answer(GOOD))
    generator(llm_server).generate(model, "flash sale")
    arrived = datetime.now(timezone.utc)
    assert arrived >= when - timedelta(milliseconds=50)
    assert arrived < when + timedelta(seconds=1.5)


def test_a_retry_after_beyond_the_timeout_fails_at_once(llm_server: LLMServer, model: TrafficModel) -> None:
    llm_server.script(rate_limited("120"))
    start = time.monotonic()
    with pytest.raises(LLMError, match=r"HTTP 429 .*retry in 120 s, beyond .* timeout_s=5") as info:
        generator(llm_server).generate(model, "flash sale")
    assert time.monotonic() - start < 1.0
    assert info.value.status == 429


def test_500_then_success_backs_off_and_retries(llm_server: LLMServer, model: TrafficModel) -> None:
    llm_server.script(error(500, "The server had an error"), error(503, "overloaded"), answer(GOOD))
    scenario = generator(llm_server, backoff_s=0.05).generate(model, "flash sale")
    assert scenario.metadata["http_retries"] == 2 and len(llm_server.requests) == 3


def test_retries_are_bounded(llm_server: LLMServer, model: TrafficModel) -> None:
    llm_server.script(*(error(502, "bad gateway") for _ in range(3)))
    with pytest.raises(LLMError, match=r"failed 3 times \(max_retries=2\); the last: HTTP 502 \(bad gateway\)"):
        generator(llm_server, max_retries=2).generate(model, "flash sale")


def test_the_timeout_covers_the_whole_exchange_repairs_included(llm_server: LLMServer,
                                                                model: TrafficModel) -> None:
    llm_server.script(answer(_step("GET", "/nope")), slow(5.0, answer(GOOD)))
    start = time.monotonic()
    with pytest.raises(LLMError, match="within timeout_s=0.6"):
        generator(llm_server, timeout_s=0.6).generate(model, "flash sale")
    assert time.monotonic() - start < 1.2 and len(llm_server.requests) == 2


def test_a_slow_server_is_an_llm_error_within_the_timeout(llm_server: LLMServer, model: TrafficModel) -> None:
    llm_server.script(slow(5.0, answer(GOOD)))
    start = time.monotonic()
    with pytest.raises(LLMError, match=r"no answer from http://127\.0\.0\.1:\d+/v1/chat/completions within "
                                       r"timeout_s=0\.4"):
        generator(llm_server, timeout_s=0.4).generate(model, "flash sale")
    assert time.monotonic() - start < 1.0


@pytest.mark.parametrize("where", ["headers", "body"])
def test_a_server_dripping_its_reply_is_cut_off_at_the_timeout(llm_server: LLMServer, model: TrafficModel,
                                                                where: str) -> None:
    """A byte every 0.1 s never trips a socket timeout; the deadline still holds."""
    llm_server.script(answer(GOOD, drip=where))
    start = time.monotonic()
    with pytest.raises(LLMError, match=r"no answer from .* within timeout_s=0\.5"):
        generator(llm_server, timeout_s=0.5).generate(model, "flash sale")
    assert time.monotonic() - start < 1.0


def test_connection_refused_is_an_llm_error(model: TrafficModel) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gen = LLMScenarioGenerator(f"http://127.0.0.1:{port}/v1", "m", timeout_s=2)
    with pytest.raises(LLMError, match=rf"connection refused by 127\.0\.0\.1:{port}: is the LLM server running"):
        gen.generate(model, "flash sale")


def test_a_body_that_is_not_json_is_an_llm_error(llm_server: LLMServer, model: TrafficModel) -> None:
    llm_server.script(Reply(raw=b"<html>502 Bad Gateway from some proxy</html>"))
    with pytest.raises(LLMError, match=r"answered HTTP 200 with a body that is not JSON: <html>502 Bad Gateway"):
        generator(llm_server).generate(model, "flash sale")


def test_a_4xx_is_an_llm_error_with_the_servers_message(llm_server: LLMServer, model: TrafficModel) -> None:
    llm_server.script(error(400, "The model `gpt-9` does not exist. " + "x" * 2000))
    with pytest.raises(LLMError, match=r"refused the request: HTTP 400: The model `gpt-9` does not exist") as info:
        generator(llm_server, max_retries=3).generate(model, "flash sale")
    assert info.value.status == 400 and len(llm_server.requests) == 1  # not retried
    assert len(str(info.value)) < 500  # truncated


def test_a_redirect_is_not_followed_so_the_key_stays(llm_server: LLMServer, model: TrafficModel,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERFSDK_LLM_API_KEY", "sk-test-123")
    llm_server.script(error(307, "moved", Location="http://elsewhere.example/v1/chat/completions"))
    with pytest.raises(LLMError, match=r"redirected \(HTTP 307\) to 'http://elsewhere.example/.*not followed"):
        generator(llm_server).generate(model, "flash sale")
    assert len(llm_server.requests) == 1


def test_a_wrong_base_url_says_so(llm_server: LLMServer, model: TrafficModel) -> None:
    gen = LLMScenarioGenerator(f"http://127.0.0.1:{llm_server.port}/v2", "m")
    with pytest.raises(LLMError, match=r"HTTP 404: Unknown request URL: POST /v2/chat/completions \(is base_url"):
        gen.generate(model, "flash sale")


# -- what leaves the process --------------------------------------------------------------------
def test_no_raw_attribute_value_ever_appears_in_a_prompt(llm_server: LLMServer, model: TrafficModel,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PERFSDK_LLM_API_KEY", raising=False)
    # planted in paths without route templates: the model already made those segments parameters
    assert not any(EMAIL in r.key or JWT in r.key for r in model.routes)
    anomalies: list[Anomaly | dict[str, Any]] = [
        Anomaly("zscore(window=64)", index=7, value=950.0, expected=80.0, std=20.0, score=43.5, threshold=4.0,
                timestamp=T0, details={"series": f"GET /users/{EMAIL}/orders", "metric": "duration_ms",
                                       "trace_id": "0af7651916cd43dd8448eb211c80319c"}),
        {"series": "POST /checkout", "metric": "duration_ms", "value": 400.0, "expected": 80.0, "score": 9.1,
         "threshold": 4.0, "timestamp": T0, "details": [("note", f"token={API_TOKEN}")]},
    ]
    goal = f"flash sale for {EMAIL}, call with Authorization: Bearer {JWT} and api_key={API_TOKEN}"
    llm_server.script(answer(_step("GET", "/nope")), answer(GOOD))  # a repair: a second prompt
    scenario = generator(llm_server).generate(model, goal, anomalies=anomalies)

    assert len(llm_server.requests) == 2
    for request in llm_server.requests:
        sent = request.body.decode() + json.dumps(request.json, ensure_ascii=False)
        for secret in SECRETS:
            assert secret not in sent
        assert "0af7651916cd43dd8448eb211c80319c" not in sent  # trace ids stay home
    prompt = llm_server.requests[0].json["messages"][1]["content"]
    assert "GET /users/REDACTED/orders" in prompt and "Bearer REDACTED" in prompt
    assert "recent_anomalies" in prompt and "950.0" in prompt
    assert all(secret not in json.dumps(scenario.metadata) for secret in SECRETS)


def test_no_name_in_a_path_nor_bare_query_key_reaches_the_prompt() -> None:
    """Without route templates, ``/users/alice/orders`` was a route of its own and ``/search?alice`` a
    query parameter named ``alice``: both went into the prompt as they were recorded. A route table's
    words, each requested again and again, still reach it as routes of their own."""
    names = [a + b + "qz" for a in ("al", "bo", "ca", "de", "ed") for b in ("ice", "b", "rol", "ve", "na", "x")]
    resources = [f"{word}s" for word in ("order", "user", "cart", "item", "invoice", "refund", "coupon", "review",
                                         "address", "payment", "shipment", "store", "brand", "tag", "image",
                                         "report", "webhook", "token", "plan", "price", "tax", "quote")]
    rows = []
    for k, name in enumerate(names):
        api = [f"/api/v2/{r}" for r in resources] if k < 10 else []  # 22 words, 10 requests each
        for target in (f"/users/{name}/orders", f"/search?{name}", f"/api/v1/users/{k}/orders", "/docs?edit", *api):
            start = T0 + timedelta(seconds=len(rows))
            rows.append({"trace_id": f"{len(rows) + 1:032x}", "span_id": f"{len(rows) + 1:016x}", "name": "GET",
                         "kind": "SERVER", "start_time": start, "end_time": start + timedelta(milliseconds=5),
                         "duration_ms": 5.0, "status_code": "UNSET", "service.name": "shop",
                         "attributes": [("http.request.method", "GET"), ("http.target", target), ("session.id", name)]})
    model = TrafficModel.from_table(pa.Table.from_pylist(rows, schema=SPANS))
    messages = LLMScenarioGenerator("http://127.0.0.1:9/v1", "m").prompt(model, "a flash sale")
    prompt = json.dumps(messages)
    assert not [name for name in names if name in prompt]
    sent = json.loads(messages[1]["content"].partition("(aggregates only):\n")[2])["traffic_profile"]["routes"]
    assert {r["route"]: r["query_params"] for r in sent} == {
        "GET /users/{name}/orders": [], "GET /search": [], "GET /api/v1/users/{id}/orders": [],
        "GET /docs": ["edit"], **{f"GET /api/v2/{r}": [] for r in resources}}  # a flag's name is no value


def test_the_api_key_is_sent_only_when_its_variable_is_set(llm_server: LLMServer, model: TrafficModel,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PERFSDK_LLM_API_KEY", raising=False)
    monkeypatch.setenv("MY_LLM_KEY", "sk-test-123")
    llm_server.script(answer(GOOD), answer(GOOD), answer(GOOD))
    generator(llm_server).generate(model, "flash sale")
    generator(llm_server, api_key_env="MY_LLM_KEY").generate(model, "flash sale")
    monkeypatch.setenv("PERFSDK_LLM_API_KEY", "sk-default-456")
    generator(llm_server).generate(model, "flash sale")

    without, custom, default = llm_server.requests
    assert "authorization" not in without.headers
    assert custom.headers["authorization"] == "Bearer sk-test-123"
    assert default.headers["authorization"] == "Bearer sk-default-456"
    assert all(b"sk-" not in r.body for r in llm_server.requests)


def test_a_401_says_whether_a_key_was_sent(llm_server: LLMServer, model: TrafficModel,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PERFSDK_LLM_API_KEY", raising=False)
    llm_server.script(error(401, "Incorrect API key provided"))
    with pytest.raises(LLMError, match=r"HTTP 401: Incorrect API key provided \(\$PERFSDK_LLM_API_KEY is not set"):
        generator(llm_server).generate(model, "flash sale")


# -- arguments ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, error_type, words", [
    ({"base_url": "ftp://x/v1"}, ValueError, "base_url must be an http"),
    ({"base_url": "http://user:secret@host/v1"}, ValueError, "must not carry credentials"),
    ({"model": ""}, ValueError, "model must name"),
    ({"timeout_s": 0}, ValueError, "timeout_s"),
    ({"max_retries": -1}, ValueError, "max_retries"),
    ({"max_repairs": 1.5}, TypeError, "max_repairs"),
    ({"allowed_hosts": "localhost"}, TypeError, "not one string"),
    ({"limits": {"max_users": 5}}, TypeError, "limits must be"),
    ({"openapi": {"openapi": "3.0.0"}}, ValueError, "'paths' mapping"),
])
def test_bad_arguments_are_named(kwargs: dict[str, Any], error_type: type, words: str) -> None:
    args = {"base_url": "http://127.0.0.1:1/v1", "model": "m", **kwargs}
    with pytest.raises(error_type, match=words):
        LLMScenarioGenerator(args.pop("base_url"), args.pop("model"), **args)


def test_an_empty_goal_is_refused_before_any_request(llm_server: LLMServer, model: TrafficModel) -> None:
    with pytest.raises(ValueError, match="goal must say what the test is for"):
        generator(llm_server).generate(model, "   ")
    assert llm_server.requests == []


def test_allowed_hosts_and_limits() -> None:
    gen = LLMScenarioGenerator("http://127.0.0.1:1/v1", "m", limits=Limits(max_users=5, allowed_hosts=("shop",)))
    assert gen.limits == Limits(max_users=5, allowed_hosts=("shop",))
    gen = LLMScenarioGenerator("http://127.0.0.1:1/v1", "m", allowed_hosts=["staging.local"])
    assert gen.limits.allowed_hosts == ("staging.local",)


# -- the offline default ------------------------------------------------------------------------
@pytest.mark.parametrize("goal, plan", [
    ("a flash sale on checkout with a 5× spike", {"variant": "flash_sale", "spike": 5.0}),
    ("spike of 3x for 90 s", {"variant": "flash_sale", "spike": 3.0, "duration_s": 90.0}),
    ("Flash Sale", {"variant": "flash_sale", "spike": 5.0}),
    ("cold cache after a deploy", {"variant": "cold_cache"}),
    ("long sessions, 10 minutes", {"variant": "long_sessions", "duration_s": 600.0}),
    ("error paths", {"variant": "error_paths"}),
    ("what users do, at 2 times the rate", {"variant": "replay", "rate_scale": 2.0}),
    ("normal traffic", {"variant": "replay"}),
])
def test_the_offline_default_maps_a_goal_to_a_variant(goal: str, plan: dict[str, Any]) -> None:
    assert ModelScenarioGenerator().plan(goal) == plan


def test_the_offline_default_generates_from_the_model(model: TrafficModel) -> None:
    scenario = ModelScenarioGenerator().generate(model, "a flash sale with a 4x spike for 30 s")
    assert scenario.metadata["variant"] == "flash_sale"
    assert scenario.metadata["scenario_generator"] == "perfsdk.testgen.ModelScenarioGenerator"
    assert scenario.duration_s == pytest.approx(30.0, abs=0.01)
    rates = [s["arrival_rate"] for s in scenario.stages]
    assert max(rates) > 2 * (sum(rates) / len(rates)) / 1.5  # the middle third is spiked
    with pytest.raises(Exception, match="above the cap"):
        ModelScenarioGenerator(limits=Limits(max_duration_s=10)).generate(model, "replay for 30 s")


def test_a_duration_given_outranks_the_goals(model: TrafficModel) -> None:
    assert ModelScenarioGenerator(duration_s=45).plan("flash sale for 10 minutes")["duration_s"] == 45.0
    assert ModelScenarioGenerator(duration_s=45).generate(model, "cold cache").duration_s == pytest.approx(45.0)
    with pytest.raises(ValueError, match="duration_s"):
        ModelScenarioGenerator(duration_s=0)


def test_both_are_scenario_generators() -> None:
    assert isinstance(ModelScenarioGenerator(), ScenarioGenerator)
    assert isinstance(LLMScenarioGenerator("http://127.0.0.1:1/v1", "m"), ScenarioGenerator)


def test_testgen_duration_with_an_llm_is_the_most_the_scenario_may_last(llm_server: LLMServer, tmp_path,
                                                                        capsys) -> None:
    """``perfsdk testgen --llm-url ... --duration 30`` ignored --duration: the model was told an hour."""
    import pyarrow.ipc as ipc

    from perfsdk.cli import main

    folder = tmp_path / "export" / "spans" / "service=shop" / "date=2024-05-01"
    folder.mkdir(parents=True)
    with ipc.new_file(str(folder / "part-1.arrow"), SPANS) as f:
        f.write_table(_spans())
    short = good(load={"model": "open", "stages": [{"duration_s": 10, "arrival_rate": 2.0},
                                                   {"duration_s": 20, "arrival_rate": 10.0}]})
    llm_server.script(answer(GOOD), answer(short))  # 60 s first: refused, and asked again
    out = tmp_path / "s.json"
    assert main(["testgen", "--from", str(tmp_path / "export"), "--out", str(out), "--goal", "a flash sale",
                 "--llm-url", llm_server.base_url, "--llm-model", "m", "--duration", "30"]) == 0, capsys.readouterr()
    assert Scenario.load(out).duration_s == 30
    first = llm_server.requests[0].json["messages"][0]["content"]
    assert "30 s for all stages together" in first


# -- one redaction for spans and prompts --------------------------------------------------------
PROMPT_SECRETS = [  # what the span export's redaction catches and the prompt's own filter did not
    "db at postgresql://app:hunter2@db.internal:5432/shop",
    "jdbc:sqlserver://db:1433;user=app;password=hunter2",
    "Server=db;User Id=app;Pwd=hunter2 with spaces;Encrypt=yes",
    "GET /reset;jsessionid=hunter2?code=hunter2",
    "connect scott/hunter2@//db.example:1521/ORCL",
    "run mytool --password hunter2 --db-token hunter2",
    "SAS sv=2020&sig=hunter2%3D",
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEhunter2\n-----END RSA PRIVATE KEY-----",
    '{"x-api-key": "hunter2"}',
]
OLD_FILTER_CAUGHT = {  # what the prompt's own filter caught, and the span export's does not by default
    f"reset link for {JWT}": "reset link for REDACTED",
    f"key {API_TOKEN} in use": "key REDACTED in use",
    "trace 0af7651916cd43dd8448eb211c80319c": "trace REDACTED",
    "send token abc123def": "send token REDACTED",
    "header basic dXNlcjpodW50ZXIy": "header basic REDACTED",
    "a basic checkout flow": "a basic REDACTED flow",  # as before: a word after "basic" goes in a prompt
}


def test_a_prompt_is_redacted_as_span_text_is_and_more() -> None:
    """``clean`` had a filter of its own, narrower than the span export's: a URL's user-info, a connection
    string's password, a ;jsessionid reached the LLM. It is now the export's free-text redaction, with long
    opaque tokens (which spans keep: trace ids) -- and it still catches what its own filter did."""
    from perfsdk.export.redact import Redactor
    from perfsdk.testgen.llm import clean

    for text in PROMPT_SECRETS:
        assert "hunter2" in Redactor(scrub_values=False).message(text)  # (a secret to lose)
        assert "hunter2" not in clean(text), text
        assert "hunter2" not in Redactor().message(text), text
    assert {text: clean(text) for text in OLD_FILTER_CAUGHT} == OLD_FILTER_CAUGHT
    assert Redactor().message("trace 0af7651916cd43dd8448eb211c80319c") == "trace 0af7651916cd43dd8448eb211c80319c"


def test_no_secret_of_a_goal_reaches_the_prompt_and_a_long_text_is_not_cut(model: TrafficModel) -> None:
    from perfsdk.testgen.llm import clean

    goal = "flash sale; " + "; ".join(PROMPT_SECRETS)
    messages = LLMScenarioGenerator("http://127.0.0.1:9/v1", "m").prompt(model, goal)
    assert "hunter2" not in json.dumps(messages) and "flash sale" in messages[1]["content"]
    long = "problem: " + "x " * 30_000 + "answer again"
    assert clean(long) == long  # a repair request is never cut (a span's value would be, at 1024)
