"""Scenario generators: from a traffic model and a goal in plain words to a validated Scenario.

``ScenarioGenerator`` is the protocol (``generate(model, goal) -> Scenario``).
``ModelScenarioGenerator`` is the default: it maps the goal to one of the traffic
model's own variants and never touches a network. ``LLMScenarioGenerator`` asks
an OpenAI-compatible chat-completions endpoint instead, and treats the answer
as untrusted input:

- what leaves the process is aggregates only (``TrafficModel.profile()``, a summary
  of recent anomalies and incidents) and the goal, every string passed through the
  span export's redaction of free text first (``Redactor.message``: URLs' secrets, secret pairs,
  credentials, e-mail addresses, card numbers, ...), long opaque tokens included;
- the answer is parsed as JSON (never evaluated), checked against the JSON Schema and
  the caps (``Limits``), its host against an allowlist, and every step against the
  routes seen in the traffic (or an OpenAPI spec); task and scenario names must be
  route keys or plain labels, and a step may not set headers that change where or
  as whom a request goes;
- a refused answer gets a bounded number of repairs (the problems quoted back),
  then ``ScenarioRejected``; transport failures are ``LLMError``.

The HTTP client is the standard library's: no dependency, no redirects followed
(an API key is never sent on to another host), retries with exponential backoff
and jitter on 429 and 5xx, honouring ``Retry-After``, within ``timeout_s``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import json
import math
import os
import random
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Protocol, Sequence, runtime_checkable
from urllib.parse import unquote, urlsplit

from perfsdk._runtime import check_int, check_number, check_str
from perfsdk._version import __version__
from perfsdk.export.redact import Redactor
from perfsdk.testgen.scenario import (
    HTTP_METHODS, ROUTE_PARAMETER, SCHEMA, SCHEMA_VERSION, Limits, Scenario, ScenarioError, placeholders,
    schema_problems, semantic_problems,
)

if TYPE_CHECKING:
    from perfsdk.detect import Anomaly
    from perfsdk.instrument.incidents import Incident
    from perfsdk.testgen.model import TrafficModel

__all__ = ["LLMError", "LLMScenarioGenerator", "ModelScenarioGenerator", "ScenarioGenerator",
           "ScenarioRejected", "clean"]

MAX_RESPONSE_BYTES = 4 * 1024 * 1024  # a scenario is kilobytes; more is a broken or hostile server
MAX_ECHO_CHARS = 32_000  # of a refused answer, quoted back in a repair
MAX_PROBLEMS_QUOTED = 50
MAX_ANOMALIES = 20  # the most recent, in the prompt
MAX_INCIDENTS = 10
MAX_BACKOFF_S = 30.0
DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")
#: Headers a generated step may not set: they change where a request goes, or as whom. Any
#: ``X-Forwarded-*`` header too (``FORBIDDEN_HEADER_PREFIX``): proxies read more than these.
FORBIDDEN_HEADERS = frozenset((
    "host", "authorization", "proxy-authorization", "cookie", "connection", "content-length",
    "transfer-encoding", "upgrade", "te", "trailer", "keep-alive", "proxy-connection", "forwarded",
    "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-real-ip", "x-forwarded-prefix",
    "x-forwarded-port", "x-forwarded-server",
    # a method or path a proxy or framework takes instead of the request's own
    "x-http-method-override", "x-http-method", "x-method-override", "x-original-url", "x-rewrite-url",
))
FORBIDDEN_HEADER_PREFIX = "x-forwarded-"
#: Path segments a normalising server resolves (to this route, or its parent): never sent as a route's.
DOT_SEGMENTS = (".", "..")


class LLMError(RuntimeError):
    """The endpoint could not be used: refused connection, timeout, an HTTP error, not the protocol.

    ``status`` is the HTTP status when there was one.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ScenarioRejected(ScenarioError):
    """The model's answers were refused: ``problems`` are the last answer's, ``attempts`` how many
    answers were asked for. Nothing from them was run."""

    def __init__(self, problems: list[tuple[str, str]], attempts: int) -> None:
        self.problems = problems
        self.attempts = attempts
        lines = "\n".join(f"  {path}: {message}" for path, message in problems)
        tries = "1 answer, no repair" if attempts == 1 else f"{attempts} answers ({attempts - 1} repairs)"
        ValueError.__init__(self, f"the LLM's scenario was refused after {tries}; nothing was run. "
                                  f"The last answer's problems:\n{lines}")


@runtime_checkable
class ScenarioGenerator(Protocol):
    """Writes a scenario for ``goal`` (plain words) from a traffic model."""

    def generate(self, model: TrafficModel, goal: str) -> Scenario: ...


# -- redaction of what leaves the process -------------------------------------------------------
MAX_PROMPT_TEXT_CHARS = 1_000_000  # one text of a prompt: never reached but by a hostile one, whose cost it bounds
#: The span export's free-text redaction, and more: a prompt joins nothing on trace ids, so long opaque
#: tokens (API keys, session ids, hashes) go too, and any word after "basic" or "digest".
_PROMPT_REDACTION = Redactor(opaque_tokens=True, max_value_chars=MAX_PROMPT_TEXT_CHARS)


def clean(text: str) -> str:
    """``text`` as it may leave the process: what the span export redacts in free text
    (``Redactor.message``: URLs' secrets, secret ``key=value`` pairs and options, authorization
    credentials, connect strings' passwords, JWTs, PEM private keys, e-mail addresses, card numbers),
    and long opaque tokens.

    >>> clean("ask alice@example.com; Authorization: Bearer abc.def-123456 api_key=s3cr3t")
    'ask REDACTED; Authorization: Bearer REDACTED api_key=REDACTED'
    >>> clean("replay /reset?code=8f2a91 with session 3f9c2d18e7b4c6f9e0d1a2b3c4d5e6f7a8b9")
    'replay /reset?code=REDACTED with session REDACTED'
    """
    return _PROMPT_REDACTION.message(text)


def _clean_all(value: Any) -> Any:
    """Every string in a JSON-like value (keys too) through ``clean``."""
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, Mapping):
        return {clean(str(k)): _clean_all(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean_all(v) for v in value]
    return value


# -- the offline default ------------------------------------------------------------------------
_MULTIPLIER = re.compile(r"(\d+(?:\.\d+)?)\s*(?:x|×|times)(?![a-z])")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(seconds?|secs?|s|minutes?|mins?|m|hours?|h)(?![a-z])")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0}
_RULES = (  # first match wins
    ("flash_sale", ("flash sale", "flash-sale", "spike", "surge", "burst")),
    ("cold_cache", ("cold",)),
    ("long_sessions", ("long session", "long-session", "longer session")),
    ("error_paths", ("error", "fail", "invalid", "bad input")),
)


class ModelScenarioGenerator:
    """The offline default: a goal mapped by keyword rules to one of the traffic model's variants.

    It never calls a network, so it is what runs unless someone points perfsdk at
    an LLM. "flash sale", "spike", "surge" -> ``flash_sale`` (the multiplier read from
    "5x", "5×" or "5 times", else ``spike``); "cold" -> ``cold_cache``; "long session"
    -> ``long_sessions``; "error", "fail" -> ``error_paths``; anything else ->
    ``replay`` (a multiplier then scales the arrival rate). A duration ("10 minutes",
    "90 s") sets the run's length.

    Parameters
    ----------
    limits
        Caps the scenario must stay within (``ScenarioError`` otherwise).
    spike
        The flash sale's multiplier when the goal names none.
    duration_s
        How long the scenario lasts; when None, the goal's duration if it names one, else
        ``TrafficModel.generate``'s default (a flag someone typed outranks words in a goal).

    Examples
    --------
    >>> ModelScenarioGenerator().plan("a flash sale on checkout with a 5× spike for 2 minutes")
    {'variant': 'flash_sale', 'spike': 5.0, 'duration_s': 120.0}
    >>> ModelScenarioGenerator().plan("twice the usual traffic, 2x")
    {'variant': 'replay', 'rate_scale': 2.0}
    """

    def __init__(self, *, limits: Limits = Limits(), spike: float = 5.0, duration_s: float | None = None) -> None:
        if not isinstance(limits, Limits):
            raise TypeError(f"limits must be a perfsdk.testgen.Limits, got {limits!r}")
        self.limits = limits
        self.spike = check_number("spike", spike, low=0.0, low_open=True)
        self.duration_s = None if duration_s is None else check_number("duration_s", duration_s, low=0.0,
                                                                        low_open=True)

    def plan(self, goal: str) -> dict[str, Any]:
        """The variant and ``TrafficModel.generate`` arguments ``goal`` maps to."""
        text = _goal(goal).lower()
        variant = next((name for name, words in _RULES if any(w in text for w in words)), "replay")
        plan: dict[str, Any] = {"variant": variant}
        multiplier = _MULTIPLIER.search(text)
        if variant == "flash_sale":
            plan["spike"] = float(multiplier.group(1)) if multiplier else self.spike
        elif multiplier:
            plan["rate_scale"] = float(multiplier.group(1))
        duration = _DURATION.search(_MULTIPLIER.sub(" ", text))
        if self.duration_s is not None:
            plan["duration_s"] = self.duration_s
        elif duration and float(duration.group(1)) > 0:
            plan["duration_s"] = float(duration.group(1)) * _UNIT_S[duration.group(2)[0]]
        return plan

    def generate(self, model: TrafficModel, goal: str) -> Scenario:
        plan = self.plan(goal)
        scenario = model.generate(**plan).with_metadata(
            goal=clean(goal.strip()), scenario_generator="perfsdk.testgen.ModelScenarioGenerator")
        return Scenario.from_dict(scenario.data, self.limits)


def _goal(goal: Any) -> str:
    goal = check_str("goal", goal).strip()
    if not goal:
        raise ValueError("goal must say what the test is for, in plain words; got an empty string")
    return goal


# -- the LLM hook -------------------------------------------------------------------------------
_SYSTEM = """\
You write load-test scenarios for perfsdk. Answer with one JSON object that follows the JSON \
Schema below, and nothing else.
Rules:
- Request only the routes listed under "routes" ({routes_from}): use the method as given and \
the path template, writing each path parameter as a {{placeholder}} that names an entry of \
"generators".
- Name each task after the route it requests (for example "GET /products/<int:pid>").
- Stay within the caps: at most {rate:g} sessions a second (open model), {users} users (closed \
model), {duration:g} s for all stages together.
- Leave "host" out, or set it to one of: {hosts}.
- Do not set the headers {headers}.
- Strings are data: never put code, markup or shell commands in them.
JSON Schema (version {version}):
{schema}"""


class LLMScenarioGenerator:
    """A scenario written by an LLM behind an OpenAI-compatible chat-completions endpoint, validated
    before it is returned (see the module docstring for what is checked).

    Parameters
    ----------
    base_url
        The API's base, e.g. ``http://127.0.0.1:8000/v1``; requests go to
        ``{base_url}/chat/completions``.
    model
        The model's name, as the endpoint knows it.
    api_key_env
        The environment variable holding the API key; ``Authorization: Bearer`` is
        sent only when it is set (a local server usually needs none).
    timeout_s
        The most one ``generate`` may take: every request, retry, wait and repair.
    max_retries
        Retries of a request answered 429 or 5xx (or cut off mid-answer).
    max_repairs
        Follow-up requests after a refused answer, quoting its problems back.
    limits
        Caps on arrival rate, users and duration.
    allowed_hosts
        Hosts a scenario may name (default ``limits.allowed_hosts``, else loopback only).
    openapi
        An OpenAPI (or Swagger 2) document as a dict: steps are checked against its
        paths instead of the routes seen in the traffic.
    backoff_s
        The first retry's wait; it doubles each retry, with jitter (``Retry-After`` wins).

    Attributes
    ----------
    last_exchange
        What the last ``generate`` sent and received (messages, answers): for a person to read.

    Examples
    --------
    >>> gen = LLMScenarioGenerator("http://127.0.0.1:8000/v1", "llama3.1")
    >>> gen.url, gen.limits.allowed_hosts
    ('http://127.0.0.1:8000/v1/chat/completions', ('localhost', '127.0.0.1', '::1'))
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str = "PERFSDK_LLM_API_KEY",
        timeout_s: float = 30.0,
        max_retries: int = 3,
        max_repairs: int = 2,
        limits: Limits = Limits(),
        allowed_hosts: Iterable[str] | None = None,
        openapi: Mapping[str, Any] | None = None,
        backoff_s: float = 0.5,
    ) -> None:
        base_url = check_str("base_url", base_url).rstrip("/")
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be an http:// or https:// URL with a host, got {base_url!r}")
        if parts.username is not None or parts.password is not None:
            raise ValueError(f"base_url must not carry credentials (user:password@); put the API key in "
                             f"${api_key_env} instead: got {parts.scheme}://...@{parts.hostname}")
        if parts.query or parts.fragment:
            raise ValueError(f"base_url must not have a query or fragment, got {base_url!r}")
        self.base_url = base_url
        self.url = base_url + "/chat/completions"
        self.model = check_str("model", model)
        if not model.strip():
            raise ValueError("model must name the model the endpoint serves, got an empty string")
        self.api_key_env = check_str("api_key_env", api_key_env)
        self.timeout_s = check_number("timeout_s", timeout_s, low=0.0, low_open=True)
        self.max_retries = check_int("max_retries", max_retries, minimum=0, maximum=20)
        self.max_repairs = check_int("max_repairs", max_repairs, minimum=0, maximum=10)
        self.backoff_s = check_number("backoff_s", backoff_s, low=0.0)
        if not isinstance(limits, Limits):
            raise TypeError(f"limits must be a perfsdk.testgen.Limits, got {limits!r}")
        if allowed_hosts is None:
            hosts = limits.allowed_hosts if limits.allowed_hosts is not None else DEFAULT_HOSTS
        elif isinstance(allowed_hosts, (str, bytes)):
            raise TypeError(f"allowed_hosts must be a collection of host names, not one string: "
                            f"got {allowed_hosts!r}")
        else:
            hosts = tuple(allowed_hosts)
            for host in hosts:
                check_str("allowed_hosts[...]", host)
        self.limits = dataclasses.replace(limits, allowed_hosts=tuple(hosts))
        self.openapi_routes = None if openapi is None else _openapi_routes(openapi)
        self.last_exchange: dict[str, Any] = {}
        self._random = random.Random()

    def __repr__(self) -> str:
        return f"LLMScenarioGenerator({self.base_url!r}, {self.model!r})"

    # -- the prompt ---------------------------------------------------------------------------------
    def prompt(self, model: TrafficModel, goal: str, *, anomalies: Iterable[Anomaly | Mapping[str, Any]] = (),
               incidents: Iterable[Incident] = ()) -> list[dict[str, str]]:
        """The messages the first request carries: exactly what leaves the process."""
        goal = _goal(goal)
        routes = self.openapi_routes
        profile = model.profile()
        if routes is not None:
            profile["routes_in_openapi_spec"] = sorted(r.key for r in routes)
        system = _SYSTEM.format(
            routes_from="the OpenAPI spec's routes under \"routes_in_openapi_spec\"" if routes is not None
            else "the routes seen in the recorded traffic",
            rate=self.limits.max_arrival_rate, users=self.limits.max_users,
            duration=self.limits.max_duration_s,
            hosts=", ".join(self.limits.allowed_hosts or ()) or "(none: leave it out)",
            headers=", ".join(sorted(FORBIDDEN_HEADERS)) + f", any {FORBIDDEN_HEADER_PREFIX}*",
            version=SCHEMA_VERSION,
            schema=json.dumps(SCHEMA, separators=(",", ":")))
        context: dict[str, Any] = {"traffic_profile": profile}
        recent = [_anomaly_summary(a) for a in list(anomalies)[-MAX_ANOMALIES:]]
        if recent:
            context["recent_anomalies"] = recent
        happened = [_incident_summary(i) for i in list(incidents)[-MAX_INCIDENTS:]]
        if happened:
            context["recent_incidents"] = happened
        user = (f"Goal: {clean(goal)}\n\nWhat the recorded traffic looks like (aggregates only):\n"
                f"{json.dumps(_clean_all(context), indent=1, default=str, ensure_ascii=False)}")
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    # -- generating ---------------------------------------------------------------------------------
    def generate(self, model: TrafficModel, goal: str, *, anomalies: Iterable[Anomaly | Mapping[str, Any]] = (),
                 incidents: Iterable[Incident] = ()) -> Scenario:
        """Ask, validate, repair up to ``max_repairs`` times; the scenario carries its provenance.

        Raises ``ScenarioRejected`` when no answer holds, ``LLMError`` when the endpoint fails.
        """
        messages = self.prompt(model, goal, anomalies=anomalies, incidents=incidents)
        prompt_sha256 = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()
        routes = self.openapi_routes if self.openapi_routes is not None else _model_routes(model)
        self.last_exchange = {"messages": messages, "answers": []}
        deadline = time.monotonic() + self.timeout_s
        retries = 0
        for attempt in range(1, self.max_repairs + 2):
            answer = self._complete(messages, deadline)
            retries += answer.retries
            self.last_exchange["answers"].append(answer.content)
            try:
                scenario = self._validate(answer, routes)
            except ScenarioError as exc:
                if attempt > self.max_repairs:
                    raise ScenarioRejected(exc.problems, attempt) from None
                messages = [*messages, {"role": "assistant", "content": answer.content[:MAX_ECHO_CHARS]},
                            {"role": "user", "content": _repair_request(exc.problems)}]
                self.last_exchange["messages"] = messages
                continue
            return scenario.with_metadata(
                generated_by="perfsdk.testgen.LLMScenarioGenerator", llm_model=self.model,
                llm_host=urlsplit(self.base_url).netloc, prompt_sha256=prompt_sha256,
                schema_version=SCHEMA_VERSION, attempts=attempt, repairs=attempt - 1, http_retries=retries,
                routes_from="openapi" if self.openapi_routes is not None else "traffic",
                goal=clean(goal.strip()),
                **({"notes": list(model.notes)} if model.notes else {}))  # what learning left out, as every scenario
        raise AssertionError("unreachable: the loop returns or raises")

    def _validate(self, answer: _Answer, routes: Sequence[_Route]) -> Scenario:
        """The answer as a Scenario, or ``ScenarioError`` with every problem found."""
        data = _parse(answer)
        if not isinstance(data, dict):
            kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
                type(data), "a number")
            raise ScenarioError([("$", f"the answer is {kind}, not a JSON object (a scenario)")])
        data.pop("metadata", None)  # provenance is ours to write, not the model's to claim
        try:
            problems = schema_problems(data)
            if not problems:
                problems = semantic_problems(data, self.limits) + _request_problems(data, routes)
        except RecursionError:
            problems = [("$", "nested too deeply to check")]
        if problems:
            raise ScenarioError(problems)
        return Scenario.from_dict(data, self.limits)

    # -- HTTP ---------------------------------------------------------------------------------------
    def _complete(self, messages: list[dict[str, str]], deadline: float) -> _Answer:
        """One answer to ``messages``."""
        body = json.dumps({
            "model": self.model,
            "messages": messages,
            "response_format": {"type": "json_schema",
                                "json_schema": {"name": "scenario", "schema": SCHEMA, "strict": False}},
            "temperature": 0,
        }).encode()
        reply, retries = self._post(body, deadline)
        choices = reply.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise LLMError(f"{self.url} answered without choices: not an OpenAI-compatible chat completion "
                           f"({_snippet(json.dumps(reply))})")
        message = choices[0].get("message")
        if not isinstance(message, dict):
            raise LLMError(f"{self.url} answered a choice without a message ({_snippet(json.dumps(choices[0]))})")
        reason, refusal = choices[0].get("finish_reason"), message.get("refusal")
        return _Answer(content=_text(message.get("content")), finish_reason=reason if isinstance(reason, str) else None,
                       refusal=refusal if isinstance(refusal, str) and refusal else None, retries=retries)

    def _post(self, body: bytes, deadline: float) -> tuple[dict[str, Any], int]:
        """POST with retries on 429/5xx (and a connection dropped mid-answer) until ``deadline``."""
        headers = {"Content-Type": "application/json", "Accept": "application/json",
                   "User-Agent": f"perfsdk/{__version__}"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        retry = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LLMError(f"no answer from {self.url} within timeout_s={self.timeout_s:g}")
            request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            wait: float | None
            try:
                status, raw, reply_headers = self._exchange(request, deadline)
                if status < 300:
                    return self._decode(raw, status), retry
                if status != 429 and status < 500:
                    raise LLMError(self._refused(status, raw, reply_headers), status)
                what = f"HTTP {status} ({_error_message(raw)})"
                wait = _retry_after(reply_headers)
            except (TimeoutError, socket.timeout):
                raise LLMError(f"no answer from {self.url} within timeout_s={self.timeout_s:g}") from None
            except (http.client.RemoteDisconnected, ConnectionResetError, http.client.IncompleteRead) as exc:
                status, what, wait = 0, f"the connection dropped ({type(exc).__name__})", None
            except http.client.HTTPException as exc:
                raise LLMError(f"{self.url} does not answer in HTTP: {exc!r}") from None
            except urllib.error.URLError as exc:
                raise LLMError(self._unreachable(exc.reason)) from None
            except OSError as exc:
                raise LLMError(self._unreachable(exc)) from None
            if retry >= self.max_retries:
                raise LLMError(f"{self.url} failed {retry + 1} times (max_retries={self.max_retries}); "
                               f"the last: {what}", status or None)
            asked = wait is not None
            if wait is None:
                wait = min(MAX_BACKOFF_S, self.backoff_s * 2.0 ** retry) * self._random.uniform(0.5, 1.0)
            left = deadline - time.monotonic()
            if wait > left:
                when = "asks to retry in" if asked else "would be retried after"
                raise LLMError(f"{self.url} answered {what} and {when} {wait:.3g} s, beyond the "
                               f"{max(left, 0):.3g} s left of timeout_s={self.timeout_s:g}", status or None)
            time.sleep(wait)
            retry += 1

    def _exchange(self, request: urllib.request.Request, deadline: float) -> tuple[int, bytes, Any]:
        """One request's status, body and headers, all of it by ``deadline`` (``TimeoutError`` else).

        A socket timeout bounds each read, not the reply: a server sending a byte at a time would
        hold the client for ever. So a watchdog shuts the connection at the deadline, whatever
        phase it is in (headers or body), and the error that causes is reported as the timeout.
        """
        watchdog = _Watchdog(deadline)
        opener = urllib.request.build_opener(_NoRedirects(), _WatchedHTTP(watchdog), _WatchedHTTPS(watchdog))
        try:
            try:
                with opener.open(request, timeout=max(deadline - time.monotonic(), 1e-3)) as response:
                    reply = (response.status, _read(response, self.url), response.headers)
            except urllib.error.HTTPError as exc:
                reply = (exc.code, _error_body(exc), exc.headers)
        except Exception:
            if watchdog.fired:
                raise TimeoutError from None
            raise
        finally:
            watchdog.stop()
        if watchdog.fired:  # an error body cut short reads as empty
            raise TimeoutError
        return reply

    def _decode(self, raw: bytes, status: int) -> dict[str, Any]:
        try:
            reply = json.loads(raw)
        except (ValueError, RecursionError):
            raise LLMError(f"{self.url} answered HTTP {status} with a body that is not JSON: "
                           f"{_snippet(raw.decode('utf-8', 'replace'))}", status) from None
        if not isinstance(reply, dict):
            raise LLMError(f"{self.url} answered JSON that is not an object: "
                           f"{_snippet(raw.decode('utf-8', 'replace'))}", status)
        if "error" in reply and "choices" not in reply:
            raise LLMError(f"{self.url} answered an error: {_error_message(raw)}", status)
        return reply

    def _refused(self, status: int, raw: bytes, headers: Any) -> str:
        if 300 <= status < 400:
            return (f"{self.url} redirected (HTTP {status}) to {headers.get('Location')!r}: not followed, so "
                    f"the API key never goes to another host; give the final URL as base_url")
        hint = ""
        if status in (401, 403):
            hint = (f" (is ${self.api_key_env} set to a valid key?)" if os.environ.get(self.api_key_env)
                    else f" (${self.api_key_env} is not set: no API key was sent)")
        elif status == 404:
            hint = " (is base_url the API's base, e.g. http://host:port/v1?)"
        return f"{self.url} refused the request: HTTP {status}: {_error_message(raw)}{hint}"

    def _unreachable(self, reason: Any) -> str:
        if isinstance(reason, (TimeoutError, socket.timeout)):
            return f"no answer from {self.url} within timeout_s={self.timeout_s:g}"
        if isinstance(reason, ConnectionRefusedError):
            return (f"connection refused by {urlsplit(self.base_url).netloc}: is the LLM server running "
                    f"at {self.base_url}?")
        if isinstance(reason, socket.gaierror):
            return f"cannot resolve the host of {self.base_url}: {reason}"
        return f"cannot reach {self.url}: {reason}"


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an error: following one would send the API key wherever it points."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class _Watchdog:
    """Shuts a connection down at ``deadline``: a read blocked on it then returns, whatever it waited
    for. ``fired`` says it did (the error the reader then meets is the deadline's doing)."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.fired = False
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._timer: threading.Timer | None = None

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sock = sock
            self._timer = threading.Timer(max(self.deadline - time.monotonic(), 0.0), self._cut)
            self._timer.daemon = True
            self._timer.start()

    def _cut(self) -> None:
        with self._lock:  # never after stop(): the socket may be closed and its descriptor reused
            if self._sock is None:
                return
            self.fired = True
            try:  # the socket's own shutdown: an SSLSocket's would also drop its TLS state under the reader
                socket.socket.shutdown(self._sock, socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self) -> None:
        with self._lock:
            self._sock = None
            if self._timer is not None:
                self._timer.cancel()


class _WatchedHTTP(urllib.request.HTTPHandler):
    """Plain HTTP whose connections a ``_Watchdog`` watches from the moment they connect."""

    def __init__(self, watchdog: _Watchdog) -> None:
        super().__init__()
        self.watchdog = watchdog

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_watched(http.client.HTTPConnection, self.watchdog), req)


class _WatchedHTTPS(urllib.request.HTTPSHandler):
    """HTTPS whose connections a ``_Watchdog`` watches from the moment they connect."""

    def __init__(self, watchdog: _Watchdog) -> None:
        super().__init__()
        self.watchdog = watchdog

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_watched(http.client.HTTPSConnection, self.watchdog), req,
                            context=self._context)  # type: ignore[attr-defined]


def _watched(base: type[http.client.HTTPConnection], watchdog: _Watchdog) -> Any:
    """``base`` with its socket handed to ``watchdog`` once connected (``do_open`` makes the instance)."""

    class Watched(base):  # type: ignore[valid-type,misc]
        def connect(self) -> None:
            super().connect()
            watchdog.watch(self.sock)

    return Watched


def _read(response: Any, url: str) -> bytes:
    raw: bytes = response.read(MAX_RESPONSE_BYTES + 1)
    if len(raw) > MAX_RESPONSE_BYTES:
        raise LLMError(f"{url} answered more than {MAX_RESPONSE_BYTES} bytes: refused unread")
    return raw


def _error_body(error: urllib.error.HTTPError) -> bytes:
    """An error response's body, or nothing if it cannot be read (the status says enough)."""
    try:
        return _read(error, error.geturl())
    except (OSError, http.client.HTTPException, LLMError):
        return b""


def _retry_after(headers: Any) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds, or an HTTP-date)."""
    if headers is None:
        return None
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            value = float(millis) / 1000.0
            if math.isfinite(value):
                return max(0.0, value)
        except ValueError:
            pass
    text = headers.get("Retry-After")
    if text is None:
        return None
    text = text.strip()
    try:
        value = float(text)
        return max(0.0, value) if math.isfinite(value) else None
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _error_message(raw: bytes) -> str:
    """The server's own words: OpenAI's ``{"error": {"message": ...}}``, else the body, truncated."""
    text = raw.decode("utf-8", "replace")
    try:
        error = json.loads(text).get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            text = error["message"]
        elif isinstance(error, str):
            text = error
    except (ValueError, AttributeError, RecursionError):
        pass
    return _snippet(text) or "(empty body)"


def _snippet(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _text(content: Any) -> str:
    """A message's content: a string, or (newer servers) a list of text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content
                       if isinstance(part, dict) and isinstance(part.get("text"), str))
    return ""


# -- checking an answer -------------------------------------------------------------------------
_FENCE = re.compile(r"```(?:json|JSON)?[ \t]*\r?\n(.*?)\r?\n?```", re.S)
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{[^{}]*\}")
#: A name that is not a route key: words, digits and a little punctuation -- no quotes, brackets,
#: braces or shell characters, so nothing that reads as code or markup.
_LABEL = re.compile(r"^[\w .,:/#+()×%!?@–—-]{1,200}$")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400: a number no cap compares sensibly with
        raise ValueError(f"{text} is too large a number")
    return value


@dataclasses.dataclass(frozen=True)
class _Answer:
    content: str
    finish_reason: str | None
    refusal: str | None  # structured outputs' way of saying no
    retries: int  # HTTP retries it took


def _parse(answer: _Answer) -> Any:
    """The answer's JSON (also from a ```json fenced block); never evaluated."""
    text = answer.content.strip()
    if not text and answer.refusal:
        raise ScenarioError([("$", f"the model refused: {_snippet(answer.refusal)}")])
    if not text:
        raise ScenarioError([("$", "the answer is empty")])
    candidates = [text] + [m.group(1) for m in _FENCE.finditer(text)]
    error = ""
    for candidate in candidates:
        try:
            return json.loads(candidate, parse_constant=_reject_constant, parse_float=_finite)
        except json.JSONDecodeError as exc:
            error = error or f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        except ValueError as exc:
            error = error or f"not JSON: {exc}"
        except RecursionError:
            error = error or "not JSON we accept: nested too deeply"
    if answer.finish_reason == "length":
        error += " (the answer was cut off at the token limit: finish_reason 'length')"
    raise ScenarioError([("$", error)])


@dataclasses.dataclass(frozen=True)
class _Route:
    """A route as segments, each a regex; ``params`` marks segments with a parameter."""

    key: str
    method: str
    segments: tuple[re.Pattern[str], ...]
    params: tuple[bool, ...]
    rest: bool  # the last segment takes the rest of the path (Flask's <path:...>)




def _route(method: str, template: str, key: str) -> _Route | None:
    path = template.split("?", 1)[0]
    if not path.startswith("/"):
        return None
    segments, params, rest = [], [], False
    parts = path.split("/")[1:]
    for i, part in enumerate(parts):
        pattern, last, has_param = "", 0, False
        for m in ROUTE_PARAMETER.finditer(part):
            pattern += re.escape(part[last:m.start()]) + "[^/]+"
            last, has_param = m.end(), True
            rest = rest or (m.group("conv") == "path" and i == len(parts) - 1)
        segments.append(re.compile(pattern + re.escape(part[last:])))
        params.append(has_param)
    return _Route(key, method.upper(), tuple(segments), tuple(params), rest)


def _model_routes(model: TrafficModel) -> list[_Route]:
    routes = (_route(r.method, r.route, r.key) for r in model.routes)
    return [r for r in routes if r is not None]


def _openapi_routes(spec: Mapping[str, Any]) -> list[_Route]:
    if not isinstance(spec, Mapping) or not isinstance(spec.get("paths"), Mapping):
        raise ValueError("openapi must be an OpenAPI or Swagger document as a dict, with a 'paths' mapping")
    prefixes = {str(spec.get("basePath", "")).rstrip("/")}
    for server in spec.get("servers") or ():
        if isinstance(server, Mapping) and isinstance(server.get("url"), str):
            prefixes.add(urlsplit(server["url"]).path.rstrip("/"))
    routes = []
    for path, item in spec["paths"].items():
        if not isinstance(item, Mapping):
            continue
        for method in item:
            if str(method).upper() in HTTP_METHODS:
                for prefix in sorted(prefixes):
                    route = _route(str(method), prefix + str(path), f"{str(method).upper()} {prefix}{path}")
                    if route is not None:
                        routes.append(route)
    if not routes:
        raise ValueError("openapi has no operations under 'paths': nothing a scenario could request")
    return routes


def _matches(route: _Route, method: str, template: str) -> bool:
    """Whether a step (method, path template) requests ``route``: a literal segment must match the
    route's, a segment with a placeholder must fall on a route parameter. A dot segment, or a
    slash or backslash spelled in percent-encoding, is refused wherever it is: a server that
    normalises the path would serve a route the traffic never showed (``/products/%2e%2e/admin``)."""
    if method != route.method:
        return False
    filled = [_fill(part) for part in template.split("?", 1)[0].split("/")[1:]]
    for literal, _ in filled:
        text = unquote(literal)
        if text in DOT_SEGMENTS or "/" in text or "\\" in text:
            return False
    n = len(route.segments)
    if len(filled) != n and not (route.rest and len(filled) > n):
        return False
    for i, (literal, templated) in enumerate(filled[:n]):  # beyond n: taken by the <path:...> parameter
        if templated and not route.params[i]:
            return False
        if not route.segments[i].fullmatch(literal):
            return False
    return True


def _fill(segment: str) -> tuple[str, bool]:
    """A template segment as a request might send it (a placeholder as any slash-free text), and
    whether it has a placeholder."""
    found = False

    def one(m: re.Match[str]) -> str:
        nonlocal found
        if m.group() in ("{{", "}}"):
            return m.group()[0]
        found = True
        return "x"

    return _PLACEHOLDER.sub(one, segment), found


def _request_problems(data: Mapping[str, Any], routes: Sequence[_Route]) -> list[tuple[str, str]]:
    """What a structurally valid answer may still get wrong: routes, names, headers."""
    problems = []
    keys = {r.key for r in routes}
    known = ", ".join(sorted(keys)[:30]) + (", ..." if len(keys) > 30 else "")
    if not _LABEL.match(data["name"]):
        problems.append(("$.name", "a scenario's name is a plain label (words, digits, . , : / # + ( ) - ...): "
                                   "no quotes, braces, brackets or shell characters"))
    for i, task in enumerate(data["tasks"]):
        if task["name"] not in keys and not _LABEL.match(task["name"]):
            problems.append((f"$.tasks[{i}].name", f"{_snippet(task['name'], 80)!r} is neither a route key "
                                                   f"nor a plain label (no quotes, braces, brackets or shell "
                                                   f"characters)"))
        for j, step in enumerate(task["steps"]):
            where = f"$.tasks[{i}].steps[{j}]"
            if not any(_matches(route, step["method"], step["path"]) for route in routes):
                problems.append((f"{where}.path", f"{step['method']} {_snippet(step['path'], 120)} is not a route "
                                                  f"of the observed traffic (routes: {known})"))
            for header in step.get("headers", {}):
                name = header.strip().lower()
                if name in FORBIDDEN_HEADERS or name.startswith(FORBIDDEN_HEADER_PREFIX):
                    problems.append((f"{where}.headers[{header!r}]",
                                     f"{header} may not be set by a generated scenario: it changes where or "
                                     f"as whom a request goes"))
    paths = [step["path"] for task in data["tasks"] for step in task["steps"]]
    return problems + _dot_values(data.get("generators", {}), paths)


def _dot_values(generators: Mapping[str, Any], paths: Sequence[str]) -> list[tuple[str, str]]:
    """A generator's "." or ".." drawn into any of ``paths`` (once a generator, however many steps
    use it): a server that normalises the path would serve a route the traffic never showed, as a
    literal dot segment would (``_matches`` refuses that)."""
    names: dict[str, None] = {}
    for path in paths:
        try:
            names.update(dict.fromkeys(placeholders(path.split("?", 1)[0])))
        except ValueError:  # the schema's check has said so
            pass
    problems = []
    for name in names:
        gen = generators.get(name, {})
        for k, value in enumerate(gen.get("values", ()) if gen.get("kind") == "choice" else ()):
            if value in DOT_SEGMENTS:
                problems.append((f"$.generators.{name}.values[{k}]",
                                 f"{value!r} may not be a value of a generator used in a path: as a path "
                                 f"segment it walks out of the route"))
    return problems


def _repair_request(problems: list[tuple[str, str]]) -> str:
    lines = [f"- {path}: {message}" for path, message in problems[:MAX_PROBLEMS_QUOTED]]
    if len(problems) > MAX_PROBLEMS_QUOTED:
        lines.append(f"- ... and {len(problems) - MAX_PROBLEMS_QUOTED} more")
    return clean("Your scenario was refused and nothing was run. Problems (JSON path: message):\n"
                 + "\n".join(lines)
                 + "\nAnswer again with the whole corrected scenario as one JSON object, nothing else.")


# -- what of the recent past goes into a prompt -------------------------------------------------
def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return round(number, 3) if math.isfinite(number) else None


def _when(value: Any) -> str | None:
    if value is None:
        return None
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _anomaly_summary(anomaly: Anomaly | Mapping[str, Any]) -> dict[str, Any]:
    """Which series, how far off, when: an anomaly's aggregates (never its trace or span ids)."""
    if isinstance(anomaly, Mapping):  # a row of the anomalies table
        row = dict(anomaly)
    else:
        details = dict(anomaly.details)
        row = {"series": details.get("series"), "metric": details.get("metric"), "detector": anomaly.detector,
               "value": anomaly.value, "expected": anomaly.expected, "score": anomaly.score,
               "threshold": anomaly.threshold, "timestamp": anomaly.timestamp}
    return {
        "series": str(row.get("series") or row.get("detector") or "?"),
        "metric": str(row.get("metric") or "duration_ms"),
        "value": _number(row.get("value")),
        "expected": _number(row.get("expected")),
        "score": _number(row.get("score")),
        "threshold": _number(row.get("threshold")),
        "when": _when(row.get("timestamp")),
    }


def _incident_summary(incident: Incident) -> dict[str, Any]:
    names = list(dict.fromkeys(str(a.details.get("series", a.detector)) for a in incident.members))
    return {"started": _when(incident.started), "ended": _when(incident.ended), "anomalies": len(incident.members),
            "likely_origin": names[0] if names else None, "series": names[:10]}
