"""Scenario: the JSON Schema, the checks it cannot express, every problem with its JSON path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perfsdk.testgen import Limits, Scenario, ScenarioError
from perfsdk.testgen.scenario import SCHEMA, placeholders


def valid() -> dict:
    return {
        "version": 1, "name": "shop browse",
        "host": "http://127.0.0.1:8000",
        "load": {"model": "open", "stages": [{"duration_s": 30, "arrival_rate": 5}, {"duration_s": 30,
                                                                                    "arrival_rate": 25}]},
        "generators": {"product": {"kind": "choice", "values": ["1", "2", "3"], "weights": [5, 2, 1]},
                       "term": {"kind": "sequence", "prefix": "q-"}},
        "tasks": [
            {"name": "GET /products/<int:pid>", "steps": [{"method": "GET", "path": "/products/{product}"}]},
            {"name": "GET /search", "steps": [{"method": "GET", "path": "/search", "query": {"q": "{term}"}}]},
            {"name": "POST /cart", "steps": [{"method": "POST", "path": "/cart",
                                              "json": {"item": "{product}", "note": "{{literal}}"}}]},
        ],
        "session": {
            "start": {"GET /products/<int:pid>": 0.6, "GET /search": 0.4},
            "transitions": {"GET /search": {"GET /products/<int:pid>": 1.0},
                            "GET /products/<int:pid>": {"POST /cart": 0.3, "GET /search": 0.2, "$end": 0.5}},
            "think_time_s": {"kind": "lognormal", "median": 1.0, "sigma": 0.5},
        },
        "assertions": [{"task": "GET /search", "metric": "p95_ms", "below": 200},
                       {"metric": "error_rate", "below": 0.01}],
    }


def problems_of(data, limits: Limits = Limits()) -> list[tuple[str, str]]:
    with pytest.raises(ScenarioError) as caught:
        Scenario.from_dict(data, limits)
    return caught.value.problems


def test_a_valid_scenario_loads_and_round_trips(tmp_path):
    scenario = Scenario.from_dict(valid())
    assert scenario.duration_s == 60 and scenario.load_model == "open" and len(scenario.tasks) == 3
    scenario.save(tmp_path / "s.json")
    assert Scenario.load(tmp_path / "s.json") == scenario
    assert not list(tmp_path.glob(".*"))  # the temp file was renamed into place
    tagged = scenario.with_metadata(source="test")
    assert tagged.metadata == {"source": "test"} and scenario.metadata == {}  # a copy, not a change


def test_the_published_schema_is_the_one_the_loader_uses():
    published = json.loads((Path(__file__).resolve().parents[1] / "docs" / "scenario.schema.json").read_text())
    assert published == SCHEMA


def test_every_problem_is_reported_with_its_json_path():
    data = valid()
    data["load"]["stages"][1]["arrival_rate"] = -1  # schema
    data["tasks"][0]["steps"][0]["method"] = "BREW"  # schema
    data["tasks"].append({"name": "GET /search", "steps": [{"method": "GET", "path": "/x/{nothing}"}]})
    data["session"]["start"] = {"GET /products/<int:pid>": 0.5}
    problems = dict(problems_of(data))
    assert set(problems) == {"$.load.stages[1].arrival_rate", "$.tasks[0].steps[0].method"}  # schema first
    data["load"]["stages"][1]["arrival_rate"] = 5
    data["tasks"][0]["steps"][0]["method"] = "GET"
    problems = problems_of(data)
    paths = [p for p, _ in problems]
    assert "$.tasks[3].name" in paths  # the name is used twice
    assert ("$.tasks[3].steps[0].path", "placeholder {nothing} names no generator (generators: "
                                        "['product', 'term'])") in problems
    assert ("$.session.start", "the probabilities sum to 0.5, not 1") in problems


@pytest.mark.parametrize("template", [
    "/x/{__import__('os').system('touch pwned')}",
    "/x/{product.__class__}", "/x/{product[0]}", "/x/{product!r}", "/x/{product:>10}", "/x/{0}",
])
def test_a_template_is_data_and_anything_else_is_refused(template):
    data = valid()
    data["tasks"][0]["steps"][0]["path"] = template
    (where, message), = problems_of(data)
    assert where == "$.tasks[0].steps[0].path" and "not a plain generator name" in message


def test_caps_and_the_host_allowlist():
    data = valid()
    data["load"]["stages"][0]["arrival_rate"] = 1e6
    data["load"]["stages"][1]["duration_s"] = 1e6
    data["host"] = "http://evil.example:80"
    problems = dict(problems_of(data, Limits(allowed_hosts=("127.0.0.1", "localhost"))))
    assert "above the cap of 1000" in problems["$.load.stages[0].arrival_rate"]
    assert "above the cap of 3600 s" in problems["$.load.stages"]
    assert problems["$.host"] == "host 'evil.example' is not on the allowlist (127.0.0.1, localhost)"


def test_the_closed_model_and_its_mismatches():
    data = valid()
    data["load"] = {"model": "closed", "stages": [{"duration_s": 10, "users": 5, "spawn_rate": 5},
                                                  {"duration_s": 10, "arrival_rate": 3}]}
    problems = dict(problems_of(data))
    assert problems == {"$.load.stages[1]": "a closed-model stage needs users",
                        "$.load.stages[1].arrival_rate": "arrival_rate belongs to the open model "
                                                         "(load.model is 'closed')"}


def test_not_json_or_not_readable_is_a_clear_error(tmp_path):
    with pytest.raises(ScenarioError, match=r"\$: not JSON: Expecting value at line 1 column 1"):
        Scenario.from_json("nope")
    with pytest.raises(ScenarioError, match="cannot read"):
        Scenario.load(tmp_path / "missing.json")
    assert problems_of([1, 2]) == [("$", "[1, 2] is not of type 'object'")]


def test_a_choice_may_draw_a_share_elsewhere_and_its_range_is_checked():
    data = valid()
    data["generators"]["product"]["otherwise"] = {"share": 0.3, "low": 1, "high": 5000}
    assert Scenario.from_dict(data).generators["product"]["otherwise"]["share"] == 0.3
    data["generators"]["product"]["otherwise"] = {"share": 0.3, "low": 9, "high": 1}
    assert ("$.generators.product.otherwise", "low (9) is above high (1)") in problems_of(data)
    data["generators"]["product"]["otherwise"] = {"share": 1.5, "low": 1, "high": 9}
    assert any(path.startswith("$.generators.product.otherwise") for path, _ in problems_of(data))


def test_placeholders_name_generators_and_double_braces_are_literal():
    assert placeholders("/a/{x}/b/{y}?z={{w}}") == ["x", "y"]
    assert placeholders("no fields") == []


def test_non_finite_numbers_are_refused_however_they_come():
    data = valid()
    data["load"]["stages"][0]["arrival_rate"] = float("nan")
    data["load"]["stages"][1]["duration_s"] = float("inf")
    assert problems_of(data) == [("$.load.stages[0].arrival_rate", "nan is not a finite number"),
                                 ("$.load.stages[1].duration_s", "inf is not a finite number")]
    text = json.dumps(valid()).replace('"arrival_rate": 5', '"arrival_rate": NaN', 1)
    with pytest.raises(ScenarioError, match="NaN is not a number JSON allows"):
        Scenario.from_json(text)


def test_an_integer_too_large_for_a_float_is_refused_with_its_path():
    big = "1" + "0" * 400
    text = json.dumps(valid()).replace('"arrival_rate": 5', f'"arrival_rate": {big}', 1)
    with pytest.raises(ScenarioError) as info:
        Scenario.from_json(text)
    assert info.value.problems == [("$.load.stages[0].arrival_rate",
                                    "an integer of about 401 digits is too large a number")]
    data = valid()
    data["session"] = {"think_time_s": {"kind": "constant", "value": -int(big)}}
    assert problems_of(data) == [("$.session.think_time_s.value",
                                  "an integer of about 401 digits is too large a number")]


def test_an_integer_of_more_digits_than_str_converts_is_refused_not_a_crash():
    """Counting its digits with str() raised ValueError past 4,300 digits (Python 3.11+)."""
    data = valid()
    data["session"] = {"think_time_s": {"kind": "constant", "value": 10**5000}}
    assert problems_of(data) == [("$.session.think_time_s.value",
                                  "an integer of about 5,001 digits is too large a number")]


def test_an_ipv6_host_can_be_allowed():
    data = valid()
    data["host"] = "http://[::1]:8000"
    assert Scenario.from_dict(data, Limits(allowed_hosts=("::1",))).data["host"] == "http://[::1]:8000"


@pytest.mark.parametrize("host,why", [
    ("http://127.0.0.1:99999", "port out of range 0-65535"),
    ("http://[::1", "invalid IPv6 URL"),
    ("http://127.0.0.1:abc", "port could not be cast to integer value as 'abc'"),
    ("http://:8000", "no host name"),
])
@pytest.mark.parametrize("limits", [Limits(), Limits(allowed_hosts=("127.0.0.1", "::1"))])
def test_a_host_the_pattern_passes_but_no_url_parser_takes_is_a_problem(host, why, limits):
    """The pattern let these through: Locust then failed on every request with a traceback (and
    the allowlist's own parse raised a bare ValueError)."""
    data = valid()
    data["host"] = host
    assert problems_of(data, limits) == [
        ("$.host", f"host must be a base URL like http://127.0.0.1:8000 (no path), got {host!r}: {why}")]


def test_a_long_value_is_quoted_by_its_start_and_length_not_whole():
    data = valid()
    data["tasks"][0]["name"] = "GET /" + "x" * 995
    data["generators"]["product"]["values"][0] = "a" * 5000
    problems = dict(problems_of(data))
    assert problems["$.tasks[0].name"] == f"{repr(data['tasks'][0]['name'])[:80]}... (1,002 characters) is too long"
    assert problems["$.generators.product.values[0]"] == f"'{'a' * 79}... (5,002 characters) is too long"


@pytest.mark.parametrize("headers", [{"X-A": "1\r\nHost: evil.example"}, {"X A": "1"}, {"X-A": "a\x00b"},
                                     {"X-A": "value\n"}, {"X-A\n": "1"}, {"": "1"}])
def test_a_header_the_http_client_would_refuse_is_refused_naming_it(headers):
    """A header value over two lines, or a name that is no HTTP token, validated and then failed
    every request of the load test (the client refuses it)."""
    data = valid()
    data["tasks"][0]["steps"][0]["headers"] = headers
    (where, _), = problems_of(data)
    assert where.startswith("$.tasks[0].steps[0].headers")
    data["tasks"][0]["steps"][0]["headers"] = {"X-Request-Id": "{term}", "Accept": "text/html; q=0.9"}
    Scenario.from_dict(data)


BIG_INT = int(1.7e308)  # within a float's range, as each weight is; two of them are not


@pytest.mark.parametrize("where,change", [
    ("$.tasks", lambda d: [t.update(weight=1e308) for t in d["tasks"]]),
    ("$.tasks", lambda d: [t.update(weight=BIG_INT) for t in d["tasks"]]),  # an int sum: OverflowError before
    ("$.generators.product.weights", lambda d: d["generators"]["product"].update(weights=[1e308, 1e308, 1])),
    ("$.generators.product.weights", lambda d: d["generators"]["product"].update(weights=[BIG_INT, BIG_INT, 1])),
    ("$.session.length.weights", lambda d: d["session"].update(
        length={"kind": "empirical", "values": [1, 2], "weights": [1e308, 1e308]})),
])
def test_finite_weights_whose_sum_overflows_are_refused_naming_the_field(where, change):
    """Each weight was finite, so the checks passed; their sum was inf, and every draw then took the
    last item (a share of an infinite total)."""
    data = valid()
    change(data)
    whose = "the tasks' weights" if where == "$.tasks" else "the weights"
    assert problems_of(data) == [(where, f"{whose} sum beyond the largest number a float holds (about 1.8e308): "
                                         f"scale them down")]
    huge = valid()  # huge weights whose sum a float holds are fine
    for task in huge["tasks"]:
        task["weight"] = 5e307
    Scenario.from_dict(huge)


def test_a_chain_row_of_integers_beyond_a_float_is_a_problem_not_an_overflow_error():
    data = valid()
    data["session"]["start"] = {"GET /products/<int:pid>": BIG_INT, "GET /search": BIG_INT}
    assert problems_of(data) == [("$.session.start", "the probabilities sum to inf, not 1")]
