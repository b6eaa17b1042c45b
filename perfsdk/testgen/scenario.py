"""Scenario: a load test as data -- versioned JSON with a published JSON Schema.

A scenario says who arrives (an open model's arrival rate per stage, or a
closed model's users), what a session does (tasks: one or a few HTTP
steps; a Markov chain over them; think times; session lengths), where the
values in paths, queries and bodies come from (named generators), and what
must hold (assertions on per-task latency percentiles and error rates).

Nothing in a scenario is ever evaluated as code: templates are plain
strings whose ``{name}`` placeholders name generators, and a generator is
one of a few kinds of data (a choice, an integer range, a sequence of new
keys, a UUID). Loading checks the JSON Schema first, then what a schema
cannot say (placeholders that name no generator, stages that end before
they start, probabilities that do not sum to one, caps), and reports every
problem at once with its JSON path.

>>> scenario = Scenario.from_dict({
...     "version": 1, "name": "browse",
...     "load": {"model": "open", "stages": [{"duration_s": 10, "arrival_rate": 2.0}]},
...     "tasks": [{"name": "GET /products/{id}", "weight": 1,
...                "steps": [{"method": "GET", "path": "/products/{product}"}]}],
...     "generators": {"product": {"kind": "int", "low": 1, "high": 100}},
... })
>>> scenario.duration_s, [t["name"] for t in scenario.tasks]
(10.0, ['GET /products/{id}'])
>>> Scenario.from_dict({"version": 1, "name": "x", "load": {"model": "open", "stages": []}, "tasks": []})
Traceback (most recent call last):
...
perfsdk.testgen.scenario.ScenarioError: 2 problems in the scenario:
  $.load.stages: [] should be non-empty
  $.tasks: [] should be non-empty
"""

from __future__ import annotations

import json
import math
import os
import re
import string
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping
from urllib.parse import urlsplit

from perfsdk._runtime import write_atomically

__all__ = ["HTTP_METHODS", "MAX_ASSERTIONS", "MAX_GENERATORS", "MAX_NAME_CHARS", "MAX_QUERY_PARAMS", "MAX_SESSION_REQUESTS",
           "MAX_TASKS",
           "MAX_VALUE_CHARS", "ROUTE_PARAMETER", "SCHEMA", "SCHEMA_VERSION", "Limits", "Scenario", "ScenarioError",
           "host_problem", "placeholders"]

SCHEMA_VERSION = 1
#: The schema's caps, for what writes scenarios (``TrafficModel.generate`` leaves out what exceeds them).
MAX_NAME_CHARS = 200  # a task's or the scenario's name
MAX_VALUE_CHARS = 1000  # a choice generator's value
MAX_QUERY_PARAMS = 50  # a step's query parameters (and headers)
MAX_GENERATORS = 200
MAX_TASKS = 500
MAX_SESSION_REQUESTS = 1000  # requests one simulated session sends at most (the Locust runner's cap)
MAX_ASSERTIONS = 200
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

_NAME = {"type": "string", "minLength": 1, "maxLength": MAX_NAME_CHARS}
_NUMBER = {"type": "number"}
_DISTRIBUTION = {
    "description": "A distribution of non-negative numbers (seconds, or counts).",
    "oneOf": [
        {"type": "object", "additionalProperties": False, "required": ["kind", "value"],
         "properties": {"kind": {"const": "constant"}, "value": {"type": "number", "minimum": 0}}},
        {"type": "object", "additionalProperties": False, "required": ["kind", "low", "high"],
         "properties": {"kind": {"const": "uniform"}, "low": {"type": "number", "minimum": 0},
                        "high": {"type": "number", "minimum": 0}}},
        {"type": "object", "additionalProperties": False, "required": ["kind", "mean"],
         "properties": {"kind": {"const": "exponential"}, "mean": {"type": "number", "minimum": 0}}},
        {"type": "object", "additionalProperties": False, "required": ["kind", "median", "sigma"],
         "properties": {"kind": {"const": "lognormal"}, "median": {"type": "number", "exclusiveMinimum": 0},
                        "sigma": {"type": "number", "minimum": 0, "maximum": 10}}},
        {"type": "object", "additionalProperties": False, "required": ["kind", "values"],
         "properties": {"kind": {"const": "empirical"},
                        "values": {"type": "array", "minItems": 1, "maxItems": 4096,
                                   "items": {"type": "number", "minimum": 0}},
                        "weights": {"type": "array", "maxItems": 4096, "items": {"type": "number", "minimum": 0}}}},
    ],
}
_GENERATOR = {
    "description": "Where a placeholder's values come from: data, never code.",
    "oneOf": [
        {"type": "object", "additionalProperties": False, "required": ["kind", "values"],
         "properties": {"kind": {"const": "choice"},
                        "values": {"type": "array", "minItems": 1, "maxItems": 10000,
                                   "items": {"type": "string", "maxLength": MAX_VALUE_CHARS}},
                        "weights": {"type": "array", "maxItems": 10000, "items": {"type": "number", "minimum": 0}},
                        "otherwise": {
                            "type": "object", "additionalProperties": False, "required": ["share", "low", "high"],
                            "properties": {"share": {"type": "number", "minimum": 0, "maximum": 1},
                                           "low": {"type": "integer"}, "high": {"type": "integer"}},
                            "description": "A share of draws that are none of the values but an integer "
                                           "in [low, high]: the keys a sample never saw (a long tail)."}}},
        {"type": "object", "additionalProperties": False, "required": ["kind", "low", "high"],
         "properties": {"kind": {"const": "int"}, "low": {"type": "integer"}, "high": {"type": "integer"}}},
        {"type": "object", "additionalProperties": False, "required": ["kind"],
         "properties": {"kind": {"const": "sequence"}, "prefix": {"type": "string", "maxLength": 100},
                        "start": {"type": "integer", "minimum": 0}},
         "description": "New keys never seen before: prefix + a counter (a cold cache)."},
        {"type": "object", "additionalProperties": False, "required": ["kind"],
         "properties": {"kind": {"const": "uuid"}}},
    ],
}
_TEMPLATE = {"type": "string", "maxLength": 2000,
             "description": "Text with {generator} placeholders; {{ and }} for literal braces."}
_STEP = {
    "type": "object", "additionalProperties": False, "required": ["method", "path"],
    "properties": {
        "method": {"enum": list(HTTP_METHODS)},
        "path": {**_TEMPLATE, "pattern": "^/"},
        "query": {"type": "object", "maxProperties": MAX_QUERY_PARAMS, "additionalProperties": _TEMPLATE},
        "headers": {"type": "object", "maxProperties": MAX_QUERY_PARAMS,
                    # a header's name is an HTTP token and its value one line (RFC 9110): the client
                    # refuses anything else at every request, so the scenario must not validate
                    # (no character outside the allowed, not a whole-string pattern: "$" also matches
                    # before a final newline)
                    "propertyNames": {"not": {"pattern": "[^!#$%&'*+.^_`|~0-9A-Za-z-]"}, "minLength": 1,
                                      "maxLength": 200},
                    "additionalProperties": {**_TEMPLATE, "not": {"pattern": "[\\r\\n\\x00]"}}},
        "json": {"description": "A JSON body; its strings are templates."},
        "expect_status": {"type": "array", "items": {"type": "integer", "minimum": 100, "maximum": 599},
                          "description": "Statuses that count as success (default: below 400)."},
    },
}
SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://perfsdk.dev/scenario.schema.json",
    "title": "perfsdk load-test scenario",
    "type": "object",
    "additionalProperties": False,
    "required": ["version", "name", "load", "tasks"],
    "properties": {
        "version": {"const": SCHEMA_VERSION},
        "name": _NAME,
        "description": {"type": "string", "maxLength": 5000},
        "host": {"type": "string", "pattern": "^https?://[^/?#@\\s]+$",
                 "description": "Where to send requests (the runner's --host wins)."},
        "metadata": {"type": "object", "description": "Provenance: who made it, from what.",
                     "additionalProperties": {"type": ["string", "number", "boolean", "null", "object", "array"]}},
        "load": {
            "type": "object", "additionalProperties": False, "required": ["model", "stages"],
            "properties": {
                "model": {"enum": ["open", "closed"],
                          "description": "open: sessions arrive at a rate, whatever the service does; "
                                         "closed: a number of users, each starting a session after the last."},
                "stages": {"type": "array", "minItems": 1, "maxItems": 100, "items": {
                    "type": "object", "additionalProperties": False, "required": ["duration_s"],
                    "properties": {
                        "duration_s": {"type": "number", "exclusiveMinimum": 0},
                        "arrival_rate": {"type": "number", "minimum": 0,
                                         "description": "Open model: sessions started a second."},
                        "users": {"type": "integer", "minimum": 0, "description": "Closed model: users."},
                        "spawn_rate": {"type": "number", "exclusiveMinimum": 0,
                                       "description": "Closed model: users started a second."},
                    }}},
            },
        },
        "generators": {"type": "object", "maxProperties": MAX_GENERATORS,
                       "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]{0,63}$"},
                       "additionalProperties": _GENERATOR},
        "tasks": {"type": "array", "minItems": 1, "maxItems": MAX_TASKS, "items": {
            "type": "object", "additionalProperties": False, "required": ["name", "steps"],
            "properties": {
                "name": _NAME,
                "weight": {"type": "number", "minimum": 0, "description": "Share when no session chain is given."},
                "steps": {"type": "array", "minItems": 1, "maxItems": 20, "items": _STEP},
            }}},
        "session": {
            "type": "object", "additionalProperties": False,
            "description": "A Markov chain over tasks; without it, tasks are drawn by weight.",
            "properties": {
                "start": {"type": "object", "additionalProperties": {"type": "number", "minimum": 0}},
                "transitions": {"type": "object", "additionalProperties": {
                    "type": "object", "additionalProperties": {"type": "number", "minimum": 0}}},
                "length": _DISTRIBUTION,
                "think_time_s": _DISTRIBUTION,
            },
        },
        "assertions": {"type": "array", "maxItems": MAX_ASSERTIONS, "items": {
            "type": "object", "additionalProperties": False, "required": ["metric", "below"],
            "properties": {
                "task": {"type": "string", "description": "A task's name; absent: all requests."},
                "metric": {"enum": ["p50_ms", "p95_ms", "p99_ms", "error_rate"]},
                "below": {"type": "number", "minimum": 0},
            }}},
    },
}

_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
def shortened(text: str, limit: int = 80) -> str:
    """``text`` as a message quotes it: a route key or a value can be thousands of characters.

    >>> shortened("x" * 100, limit=4)
    'xxxx... (100 characters)'
    """
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"
#: A route template's parameters (how services name their routes, e.g. ``http.route``): Flask/werkzeug
#: ``<conv:name>``, OpenAPI/FastAPI ``{name}``, Express ``:name`` (after a slash, or starting a segment).
ROUTE_PARAMETER = re.compile(r"<(?:(?P<conv>[A-Za-z_]\w*)(?:\([^)]*\))?:)?(?P<a>[A-Za-z_]\w*)>"
                             r"|\{(?P<b>[A-Za-z_]\w*)(?::[^}]*)?\}|(?:(?<=/)|^):(?P<c>[A-Za-z_]\w*)")


class ScenarioError(ValueError):
    """A scenario that does not hold: ``problems`` lists (JSON path, message), every one found."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        lines = "\n".join(f"  {path}: {message}" for path, message in problems)
        noun = "problem" if len(problems) == 1 else "problems"
        super().__init__(f"{len(problems)} {noun} in the scenario:\n{lines}")


@dataclass(frozen=True)
class Limits:
    """Caps a scenario must stay within (a generated one above all)."""

    max_arrival_rate: float = 1000.0  # sessions a second
    max_users: int = 1000
    max_duration_s: float = 3600.0
    allowed_hosts: tuple[str, ...] | None = None  # None: any host; else the scenario's host must be one


def placeholders(template: str) -> list[str]:
    """The generator names a template's ``{...}`` fields use (``{{``/``}}`` are literal braces).

    >>> placeholders("/products/{product}?page={page}&x={{y}}")
    ['product', 'page']
    """
    names = []
    for _, field, spec, conversion in string.Formatter().parse(template):
        if field is None:
            continue
        if spec or conversion or not _FIELD.match(field):
            raise ValueError(f"placeholder {{{field}{'!' + conversion if conversion else ''}"
                             f"{':' + spec if spec else ''}}} is not a plain generator name")
        names.append(field)
    return names


_HOST = re.compile(SCHEMA["properties"]["host"]["pattern"])


def host_problem(host: str) -> str | None:
    """Why ``host`` is no base URL to send requests to, or None. The schema's pattern lets through
    ports and IPv6 addresses no URL parser takes, and Locust then fails on every request.

    >>> host_problem("http://[::1]:8000") is None, host_problem("http://127.0.0.1:99999").endswith("range 0-65535")
    (True, True)
    """
    why = ""
    if _HOST.match(host):
        try:
            parts = urlsplit(host)
            if parts.hostname and parts.port != 0:  # .port raises on a port out of range or not a number
                return None
            why = "no host name" if not parts.hostname else "port 0"
        except ValueError as exc:
            why = str(exc)
    return (f"host must be a base URL like http://127.0.0.1:8000 (no path), got {host!r}"
            + (f": {why[:1].lower()}{why[1:]}" if why else ""))


class Scenario:
    """A validated scenario (``from_dict``, ``load``); ``data`` is its JSON."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    # -- loading -----------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any, limits: Limits = Limits()) -> "Scenario":
        """Validate (schema, then meaning) and wrap; ``ScenarioError`` lists every problem."""
        problems = schema_problems(data)
        if not problems:
            problems = semantic_problems(data, limits)
        if problems:
            raise ScenarioError(problems)
        return cls(json.loads(json.dumps(data)))  # a private copy: nobody changes it under us

    @classmethod
    def from_json(cls, text: str, limits: Limits = Limits()) -> "Scenario":
        try:
            data = json.loads(text, parse_constant=_refuse_constant)
        except ValueError as exc:
            if not isinstance(exc, json.JSONDecodeError):
                raise ScenarioError([("$", str(exc))]) from None
            raise ScenarioError([("$", f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")]) from None
        return cls.from_dict(data, limits)

    @classmethod
    def load(cls, path: str | os.PathLike[str], limits: Limits = Limits()) -> "Scenario":
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ScenarioError([("$", f"cannot read {path}: {exc}")]) from None
        return cls.from_json(text, limits)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write it (atomically: a reader never sees half a scenario)."""
        write_atomically(path, self.to_json())

    def to_json(self) -> str:
        return json.dumps(self.data, indent=2, sort_keys=False) + "\n"

    # -- reading ------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return str(self.data["name"])

    @property
    def load_model(self) -> str:
        return str(self.data["load"]["model"])

    @property
    def stages(self) -> list[dict[str, Any]]:
        return list(self.data["load"]["stages"])

    @property
    def duration_s(self) -> float:
        return float(sum(stage["duration_s"] for stage in self.data["load"]["stages"]))

    @property
    def tasks(self) -> list[dict[str, Any]]:
        return list(self.data["tasks"])

    @property
    def generators(self) -> dict[str, dict[str, Any]]:
        return dict(self.data.get("generators", {}))

    @property
    def session(self) -> dict[str, Any]:
        return dict(self.data.get("session", {}))

    @property
    def assertions(self) -> list[dict[str, Any]]:
        return list(self.data.get("assertions", []))

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self.data.get("metadata", {}))

    def with_metadata(self, **items: Any) -> "Scenario":
        data = json.loads(json.dumps(self.data))
        data.setdefault("metadata", {}).update(items)
        return Scenario(data)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Scenario) and other.data == self.data

    def __repr__(self) -> str:
        return (f"Scenario({self.name!r}, {self.load_model} model, {len(self.stages)} stages, "
                f"{self.duration_s:g} s, {len(self.tasks)} tasks)")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"not JSON: {name} is not a number JSON allows")


def _non_finite(value: Any, where: str) -> Iterator[tuple[str, str]]:
    """Numbers no cap compares sensibly with: NaN slips past every comparison, and an integer
    beyond a float's range (JSON allows ``1`` and 400 zeros) breaks every sum and format."""
    if isinstance(value, float) and not math.isfinite(value):
        yield where, f"{value} is not a finite number"
    elif isinstance(value, int) and abs(value) > sys.float_info.max:  # (str() of 4,300+ digits raises)
        yield where, f"an integer of about {int(value.bit_length() * 0.30103) + 1:,} digits is too large a number"
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _non_finite(item, f"{where}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _non_finite(item, f"{where}.{key}" if _FIELD.match(str(key)) else f"{where}[{key!r}]")


def _path(parts: Any) -> str:
    out = "$"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if _FIELD.match(str(part)) else f"[{part!r}]")
    return out


def schema_problems(data: Any) -> list[tuple[str, str]]:
    """Every place ``data`` breaks the JSON Schema (the most specific message each); first, a
    number no float holds (NaN, infinity, an integer too large), which the schema cannot see."""
    import jsonschema

    unusable = list(_non_finite(data, "$"))
    if unusable:
        return unusable

    validator = jsonschema.Draft202012Validator(SCHEMA)
    problems = []
    for error in sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path]):
        best = jsonschema.exceptions.best_match([error])
        message = best.message
        shown = repr(best.instance)  # the offending value, echoed whole: its start is enough to know it
        if shown in message:
            message = message.replace(shown, shortened(shown))
        message = message if len(message) <= 300 else message[:140] + " ... " + message[-155:]
        problems.append((_path(best.absolute_path), message))
    return problems


def semantic_problems(data: Mapping[str, Any], limits: Limits) -> list[tuple[str, str]]:
    """What the schema cannot say (see the module docstring)."""
    return list(_semantic(data, limits))


def _semantic(data: Mapping[str, Any], limits: Limits) -> Iterator[tuple[str, str]]:
    load = data["load"]
    model = load["model"]
    total = 0.0
    for i, stage in enumerate(load["stages"]):
        where = f"$.load.stages[{i}]"
        total += stage["duration_s"]
        if model == "open":
            if "arrival_rate" not in stage:
                yield where, "an open-model stage needs arrival_rate (sessions a second)"
            elif stage["arrival_rate"] > limits.max_arrival_rate:
                yield f"{where}.arrival_rate", (f"{stage['arrival_rate']:g} sessions/s is above the cap "
                                                f"of {limits.max_arrival_rate:g}")
            for key in ("users", "spawn_rate"):
                if key in stage:
                    yield f"{where}.{key}", f"{key} belongs to the closed model (load.model is 'open')"
        else:
            if "users" not in stage:
                yield where, "a closed-model stage needs users"
            elif stage["users"] > limits.max_users:
                yield f"{where}.users", f"{stage['users']} users is above the cap of {limits.max_users}"
            if "arrival_rate" in stage:
                yield f"{where}.arrival_rate", "arrival_rate belongs to the open model (load.model is 'closed')"
    if total > limits.max_duration_s:
        yield "$.load.stages", f"the stages last {total:g} s, above the cap of {limits.max_duration_s:g} s"

    host = data.get("host")
    wrong_host = None if host is None else host_problem(host)
    if wrong_host:
        yield "$.host", wrong_host
    elif host is not None and limits.allowed_hosts is not None:
        bare = (urlsplit(host).hostname or "").lower()
        if bare not in {h.lower() for h in limits.allowed_hosts}:
            yield "$.host", f"host {bare!r} is not on the allowlist ({', '.join(limits.allowed_hosts) or 'empty'})"

    generators = data.get("generators", {})
    for name, gen in generators.items():
        where = f"$.generators.{name}"
        if gen["kind"] == "int":
            yield from _range(where, gen)
        if gen["kind"] == "choice" and "weights" in gen:
            yield from _weights(f"{where}.weights", gen["weights"], len(gen["values"]))
        if gen["kind"] == "choice" and "otherwise" in gen:
            yield from _range(f"{where}.otherwise", gen["otherwise"])

    names = [task["name"] for task in data["tasks"]]
    seen: set[str] = set()
    for i, task in enumerate(data["tasks"]):
        if task["name"] in seen:
            yield f"$.tasks[{i}].name", f"task name {task['name']!r} is used twice"
        seen.add(task["name"])
        for j, step in enumerate(task["steps"]):
            for where, template in _templates(step, f"$.tasks[{i}].steps[{j}]"):
                try:
                    used = placeholders(template)
                except ValueError as exc:
                    yield where, str(exc)
                    continue
                for field in used:
                    if field not in generators:
                        yield where, f"placeholder {{{field}}} names no generator (generators: {sorted(generators)})"
    weights = [task.get("weight", 1) for task in data["tasks"]]
    if "session" not in data and not any(weight > 0 for weight in weights):
        yield "$.tasks", "every task has weight 0: nothing would run"
    yield from _summable("$.tasks", _total(weights), "the tasks' weights")

    session = data.get("session", {})
    known = set(names)
    start = session.get("start")
    if start is not None:
        yield from _chain_row("$.session.start", start, known)
    for source, row in session.get("transitions", {}).items():
        where = f"$.session.transitions[{source!r}]"
        if source not in known:
            yield where, f"{source!r} is not a task"
        yield from _chain_row(where, row, known | {"$end"}, allow_empty=True)
    for key in ("length", "think_time_s"):
        dist = session.get(key)
        if dist is not None:
            yield from _distribution(f"$.session.{key}", dist)

    for i, assertion in enumerate(data.get("assertions", [])):
        task = assertion.get("task")
        if task is not None and task not in known:
            yield f"$.assertions[{i}].task", f"{task!r} is not a task"
        if assertion["metric"] == "error_rate" and assertion["below"] > 1:
            yield f"$.assertions[{i}].below", "an error rate is a share: between 0 and 1"


def _templates(step: Mapping[str, Any], where: str) -> Iterator[tuple[str, str]]:
    yield f"{where}.path", step["path"]
    for key in ("query", "headers"):
        for name, value in step.get(key, {}).items():
            yield f"{where}.{key}[{name!r}]", value
    if "json" in step:
        yield from _json_strings(step["json"], f"{where}.json")


def _json_strings(value: Any, where: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _json_strings(item, f"{where}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _json_strings(item, f"{where}[{key!r}]")


def _weights(where: str, weights: list[float], n: int) -> Iterator[tuple[str, str]]:
    if len(weights) != n:
        yield where, f"{len(weights)} weights for {n} values"
    else:
        total = _total(weights)
        if not total > 0:
            yield where, "the weights sum to 0"
        else:
            yield from _summable(where, total, "the weights")


def _summable(where: str, total: float, what: str) -> Iterator[tuple[str, str]]:
    """Finite weights whose sum (``total``, by ``_total``) is not (two of 1e308) are refused: every
    draw would be a share of an infinite total, and the last item drawn every time."""
    if not math.isfinite(total):
        yield where, f"{what} sum beyond the largest number a float holds (about 1.8e308): scale them down"


def _total(weights: Iterable[float]) -> float:
    """The sum as a float: inf where it overflows. (A sum of integers, each within a float's range,
    can leave it, and then every comparison with a float raises OverflowError.)"""
    return sum(float(weight) for weight in weights)


def _chain_row(where: str, row: Mapping[str, float], known: set[str],
               allow_empty: bool = False) -> Iterator[tuple[str, str]]:
    for name in row:
        if name not in known:
            yield f"{where}[{name!r}]", f"{name!r} is not a task"
    total = _total(row.values())
    if row and not math.isclose(total, 1.0, abs_tol=1e-3):
        yield where, f"the probabilities sum to {total:.4g}, not 1"
    if not row and not allow_empty:
        yield where, "no task to start with"


def _range(where: str, spec: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    if spec["low"] > spec["high"]:
        yield where, f"low ({spec['low']}) is above high ({spec['high']})"


def _distribution(where: str, dist: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    if dist["kind"] == "uniform":
        yield from _range(where, dist)
    if dist["kind"] == "empirical" and "weights" in dist:
        yield from _weights(f"{where}.weights", dist["weights"], len(dist["values"]))
