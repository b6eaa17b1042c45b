"""The Locust runner: real Locust runs (in a subprocess) against a real HTTP server on loopback.

The server is a small Flask app on werkzeug's threaded server that records every request
(its session header, raw path, query, body, arrival time), so the tests check what the
service saw, not only what Locust says it sent. The session sampler and the arrival process
are also checked on their own, without Locust, where their numbers are exact.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import logging
import random
import re
import socket
import sys
import threading
import time
from collections import Counter, defaultdict
from typing import Any
from urllib.parse import unquote

import pytest
from flask import Flask, request
from werkzeug.serving import WSGIRequestHandler, make_server

from perfsdk.testgen import LoadTestError, LoadTestResult, Scenario, locustfile_source, run_locust
from perfsdk.testgen import locust_runner
from perfsdk.testgen.locust_runner import AssertionOutcome, TaskFigures, dry_run_plan

needs_locust = pytest.mark.skipif(importlib.util.find_spec("locust") is None,
                                  reason="Locust is not installed: pip install 'perfsdk[loadtest]'")
HOSTILE = "'); import os; os.system('touch {marker}'); ('"
SESSION_ID = re.compile(r"^[0-9a-f]{32}$")


# -- the service under load ----------------------------------------------------------------------------


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args: object, **kwargs: object) -> None:
        pass


class Service:
    """A Flask app that records what it is sent; ``delay_s`` makes every answer slow."""

    def __init__(self) -> None:
        self.seen: list[dict] = []
        self.delay_s = 0.0
        self.lock = threading.Lock()
        app = Flask("load-target")

        @app.route("/", defaults={"rest": ""}, methods=["GET", "POST"])
        @app.route("/<path:rest>", methods=["GET", "POST"])
        def anything(rest: str):
            if self.delay_s:
                time.sleep(self.delay_s)
            raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI") or request.full_path
            with self.lock:
                self.seen.append({"sid": request.headers.get("X-Session-Id"), "method": request.method,
                                  "raw": raw, "path": request.path, "args": dict(request.args),
                                  "json": request.get_json(silent=True), "headers": dict(request.headers),
                                  "t": time.monotonic()})
            if rest == "broken":
                return "broken on purpose", 500
            if rest == "missing":
                return "not here", 404
            return "ok"

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_Quiet)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def reset(self, delay_s: float = 0.0) -> None:
        with self.lock:
            self.seen = []
        self.delay_s = delay_s

    def sessions(self) -> dict[str, list[dict]]:
        out = defaultdict(list)
        for hit in self.seen:
            out[hit["sid"]].append(hit)
        return out


@pytest.fixture(scope="module")
def service():
    server = Service()
    yield server
    server.server.shutdown()
    server.thread.join(timeout=5)


def task_of(path: str) -> str:
    return path.strip("/").split("/")[0]


# -- scenarios ---------------------------------------------------------------------------------------------


def shop(load: dict, **extra) -> Scenario:
    """Five tasks; a session is home, then item or broken, then buy or missing (or home again)."""
    return Scenario.from_dict({
        "version": 1, "name": "shop", "load": load,
        "generators": {"item": {"kind": "choice", "values": ["a b", "c/d", "e"], "weights": [1, 1, 2]},
                       "n": {"kind": "int", "low": 1, "high": 9},
                       "key": {"kind": "sequence", "prefix": "new-", "start": 0}},
        "tasks": [
            {"name": "home", "weight": 3, "steps": [{"method": "GET", "path": "/home"}]},
            {"name": "item", "weight": 1, "steps": [{"method": "GET", "path": "/item/{item}",
                                                      "query": {"n": "{n}", "key": "{key}"}}]},
            {"name": "buy", "steps": [{"method": "POST", "path": "/buy",
                                       "json": {"item": "{item}", "n": "{n}", "literal": "{{kept}}"}}]},
            {"name": "missing", "steps": [{"method": "GET", "path": "/missing", "expect_status": [404]}]},
            {"name": "broken", "steps": [{"method": "GET", "path": "/broken"}]},
        ],
        **extra,
    })


CHAIN = {"start": {"home": 1.0},
         "transitions": {"home": {"item": 0.8, "broken": 0.2}, "item": {"buy": 0.5, "missing": 0.5},
                         "buy": {"$end": 1.0}}}
SEQUENCES = [["home", "item", "buy"], ["home", "item", "missing"], ["home", "broken", "home"]]


def assert_no_locust_here() -> None:
    """Importing Locust patches the standard library with gevent: it must stay in the subprocess."""
    assert "locust" not in sys.modules
    assert "gevent" not in sys.modules


# -- the sampler and the arrivals on their own (no Locust) ------------------------------------------------


def test_a_session_follows_the_chain_for_exactly_its_length() -> None:
    sessions = locust_runner._Sessions(shop({"model": "closed", "stages": [{"duration_s": 1, "users": 1}]},
                                            session={**CHAIN, "length": {"kind": "constant", "value": 3}}).data)
    names = ["home", "item", "buy", "missing", "broken"]
    rng = random.Random(5)
    plans = [[names[t] for t in sessions.plan(rng)] for _ in range(4000)]
    assert all(plan in SEQUENCES for plan in plans)  # $end ignored; 'broken' (no row) goes back to start
    after_home = Counter(plan[1] for plan in plans)
    assert after_home["item"] / len(plans) == pytest.approx(0.8, abs=0.03)
    after_item = Counter(plan[2] for plan in plans if plan[1] == "item")
    assert after_item["buy"] / sum(after_item.values()) == pytest.approx(0.5, abs=0.04)


def test_without_a_length_a_session_ends_at_end_and_without_a_chain_tasks_go_by_weight() -> None:
    load = {"model": "closed", "stages": [{"duration_s": 1, "users": 1}]}
    chained = locust_runner._Sessions(shop(load, session=CHAIN).data)
    rng = random.Random(1)
    lengths = Counter(len(chained.plan(rng)) for _ in range(2000))
    assert set(lengths) == {2, 3}  # home-broken (a dead end) or home-item-(buy|missing)
    assert lengths[2] / 2000 == pytest.approx(0.2, abs=0.03)

    by_weight = locust_runner._Sessions(shop(load, session={"length": {"kind": "constant", "value": 4}}).data)
    drawn = Counter(t for _ in range(2000) for t in by_weight.plan(rng))
    total = sum(drawn.values())
    assert total == 8000
    assert drawn[0] / total == pytest.approx(3 / 7, abs=0.02)  # home: weight 3 of 3+1+1+1+1
    assert drawn[1] / total == pytest.approx(1 / 7, abs=0.02)
    assert [len(locust_runner._Sessions(shop(load).data).plan(rng)) for _ in range(5)] == [1] * 5


def test_generators_draw_data_encoded_for_where_it_goes() -> None:
    specs: dict[str, dict[str, Any]] = {"word": {"kind": "choice", "values": ["a b/c", "d"], "weights": [1, 0]},
             "key": {"kind": "sequence", "prefix": "k ", "start": 7}, "n": {"kind": "int", "low": -2, "high": -2},
             "id": {"kind": "uuid"}}
    counters: dict = {}
    raw = locust_runner._generators(specs, str, counters)
    path = locust_runner._generators(specs, locust_runner._path_segment, counters)
    query = locust_runner._generators(specs, locust_runner.quote_plus, counters)
    rng = random.Random(0)
    assert [raw["word"](rng), path["word"](rng), query["word"](rng)] == ["a b/c", "a%20b%2Fc", "a+b%2Fc"]
    assert [raw["key"](rng), path["key"](rng), query["key"](rng)] == ["k 7", "k%208", "k+9"]  # one counter
    assert raw["n"](rng) == path["n"](rng) == "-2"
    assert re.match(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$", path["id"](rng))
    step = locust_runner._Step({"method": "GET", "path": "/a b/{word}/{{x}}", "query": {"q r": "x {word}"}})
    values = [locust_runner._Values(d, random.Random(1)) for d in (path, query)]
    assert step.url(*values) == "/a%20b/a%20b%2Fc/%7Bx%7D?q+r=x+a+b%2Fc"


def test_a_dot_value_in_a_path_is_encoded_not_a_dot_segment() -> None:
    """quote() leaves "." and ".." as they are: /users/{uid}/orders with uid ".." asked a normalising
    server for /orders."""
    assert [locust_runner._path_segment(v) for v in (".", "..", "...", "a.b")] == ["%2E", "%2E%2E", "...", "a.b"]
    specs = {"uid": {"kind": "choice", "values": [".."]}}
    path = locust_runner._generators(specs, locust_runner._path_segment, {})
    step = locust_runner._Step({"method": "GET", "path": "/users/{uid}/orders"})
    values = [locust_runner._Values(path, random.Random(0))] * 2
    assert step.url(*values) == "/users/%2E%2E/orders"


def test_a_choice_draws_its_otherwise_share_from_the_range() -> None:
    specs = {"pid": {"kind": "choice", "values": ["7"], "otherwise": {"share": 0.25, "low": 100, "high": 199}}}
    draw = locust_runner._generators(specs, str, {})["pid"]
    rng = random.Random(3)
    drawn = [draw(rng) for _ in range(4000)]
    others = [int(v) for v in drawn if v != "7"]
    assert all(100 <= v <= 199 for v in others)
    assert 0.22 < len(others) / len(drawn) < 0.28  # 0.25, within ~4 standard errors (seeded: exact each run)


def test_arrivals_are_a_poisson_process_at_each_stages_rate() -> None:
    stages = [(10.0, 50.0), (10.0, 0.0), (10.0, 200.0)]
    arrivals = locust_runner._Arrivals(stages, 30.0, random.Random(3))
    times = []
    while (arrival := arrivals.take()) is not None:
        times.append(arrival[1])
    counts = [sum(lo <= t < lo + 10 for t in times) for lo in (0, 10, 20)]
    assert counts[0] == pytest.approx(500, abs=4 * 500 ** 0.5)
    assert counts[1] == 0
    assert counts[2] == pytest.approx(2000, abs=4 * 2000 ** 0.5)
    gaps = [b - a for a, b in zip(times, times[1:]) if b < 10]
    mean = sum(gaps) / len(gaps)
    cv = (sum((g - mean) ** 2 for g in gaps) / len(gaps)) ** 0.5 / mean
    assert mean == pytest.approx(1 / 50, rel=0.1) and cv == pytest.approx(1.0, abs=0.1)  # exponential gaps
    assert locust_runner._mean_rate(stages, 30.0) == pytest.approx((500 + 2000) / 30)
    again = locust_runner._Arrivals(stages, 15.0, random.Random(3))
    assert again.due_by(15.0) == counts[0] and again.take() == (0, times[0])  # same seed, same clock


# -- the locustfile: the scenario is data ----------------------------------------------------------------


def hostile(marker: str) -> Scenario:
    evil = HOSTILE.format(marker=marker)
    return Scenario.from_dict({
        "version": 1, "name": evil, "description": evil, "metadata": {evil: evil},
        "load": {"model": "closed", "stages": [{"duration_s": 1, "users": 2}]},
        "generators": {"v": {"kind": "choice", "values": [evil]}},
        "tasks": [{"name": evil, "steps": [{"method": "POST", "path": "/x" + evil, "query": {evil: "{v}"},
                                            "headers": {"X-Evil": evil}, "json": {evil: ["{v}", evil]}}]}],
        "assertions": [{"task": evil, "metric": "error_rate", "below": 0.5}],
    })


def test_the_locustfile_holds_the_scenario_as_one_json_literal(tmp_path) -> None:
    scenario = hostile(str(tmp_path / "pwned"))
    source = locustfile_source(scenario, seed=1)
    tree = ast.parse(source)
    carriers = [node for node in ast.walk(tree) if isinstance(node, ast.Constant)
                and isinstance(node.value, str) and "os.system" in node.value]
    assert len(carriers) == 1
    call = next(node for node in ast.walk(tree) if isinstance(node, ast.Call) and carriers[0] in node.args)
    assert ast.unparse(call.func) == "json.loads"
    literal = carriers[0].value
    assert isinstance(literal, str) and json.loads(literal) == scenario.data

    # the code is the same for every scenario: only the SCENARIO line differs
    plain = shop({"model": "open", "stages": [{"duration_s": 2, "arrival_rate": 1}]})
    differ = [(a, b) for a, b in zip(source.splitlines(), locustfile_source(plain, seed=1).splitlines()) if a != b]
    assert len(differ) == 1 and differ[0][0].startswith("SCENARIO = json.loads(")


@needs_locust
def test_hostile_strings_stay_inert_in_a_real_run(service, tmp_path) -> None:
    marker = tmp_path / "pwned"
    scenario = hostile(str(marker))
    evil = HOSTILE.format(marker=marker)
    service.reset()
    result = run_locust(scenario, service.url, seed=2)
    assert not marker.exists()
    assert result.requests > 0 and list(result.tasks) == [evil]
    assert result.tasks[evil].failures == 0
    for hit in service.seen:
        assert unquote(hit["raw"].split("?")[0]) == "/x" + evil
        assert hit["args"] == {evil: evil}
        assert hit["headers"]["X-Evil"] == evil
        assert hit["json"] == {evil: [evil, evil]}
    assert [o.passed for o in result.assertions] == [True]
    assert_no_locust_here()


# -- real runs ----------------------------------------------------------------------------------------------


@needs_locust
def test_a_relative_workdir_runs(service, tmp_path, monkeypatch) -> None:
    """Locust runs inside the work directory: a relative one was looked for inside itself, and
    `make demo` (`perfsdk demo --out perfsdk-demo`) failed with "Could not find ...locustfile.py"."""
    monkeypatch.chdir(tmp_path)
    scenario = shop({"model": "closed", "stages": [{"duration_s": 1, "users": 2, "spawn_rate": 100}]})
    result = run_locust(scenario, service.url, seed=3, workdir="relative/wd")
    assert_no_locust_here()
    assert result.requests > 0 and (tmp_path / "relative" / "wd" / "locustfile.py").exists()


@needs_locust
def test_closed_model_run_follows_the_chain_and_checks_the_assertions(service, tmp_path) -> None:
    scenario = shop({"model": "closed", "stages": [{"duration_s": 2, "users": 3, "spawn_rate": 100},
                                                    {"duration_s": 2, "users": 6, "spawn_rate": 100}]},
                    session={**CHAIN, "length": {"kind": "constant", "value": 3},
                             "think_time_s": {"kind": "constant", "value": 0.01}},
                    assertions=[{"metric": "p95_ms", "below": 5000},
                                {"task": "broken", "metric": "error_rate", "below": 0.5}])
    service.reset()
    result = run_locust(scenario, service.url, seed=11, workdir=tmp_path)
    assert_no_locust_here()
    assert (tmp_path / "locustfile.py").exists() and (tmp_path / "locust.log").exists()

    assert result.load_model == "closed" and 3.8 <= result.duration_s <= 5.0
    assert result.peak_users == 6
    assert result.scheduled_arrival_rate is None and result.late_arrivals == 0
    seen = Counter(task_of(hit["path"]) for hit in service.seen)
    for name, figures in result.tasks.items():  # Locust's counts are the service's (requests cut at the end aside)
        assert abs(figures.count - seen[name]) <= 6, name
    assert result.requests == sum(f.count for f in result.tasks.values())
    assert result.tasks["missing"].failures == 0  # 404 is expected there
    assert result.tasks["broken"].error_rate == 1.0
    assert result.failures == result.tasks["broken"].count

    sessions = service.sessions()
    assert all(sid is not None and SESSION_ID.match(sid) for sid in sessions)
    assert len(sessions) == pytest.approx(result.sessions_started, abs=6)
    complete = 0
    for hits in sessions.values():
        names = [task_of(hit["path"]) for hit in hits]
        assert any(names == seq[:len(names)] for seq in SEQUENCES), names  # one id, one session, in order
        complete += len(names) == 3
        assert all(b["t"] - a["t"] >= 0.009 for a, b in zip(hits, hits[1:]))  # think time between tasks
    assert complete >= 100
    second = Counter(task_of(hits[1]["path"]) for hits in sessions.values() if len(hits) >= 2)
    assert second["item"] / sum(second.values()) == pytest.approx(0.8, abs=0.1)

    items = [hit for hit in service.seen if task_of(hit["path"]) == "item"]
    assert {hit["path"][len("/item/"):] for hit in items} <= {"a b", "c/d", "e"}  # one segment, decoded
    assert all("%2F" in hit["raw"] for hit in items if hit["path"].endswith("c/d"))
    assert all(1 <= int(hit["args"]["n"]) <= 9 for hit in items)
    keys = [hit["args"]["key"] for hit in items]
    assert len(set(keys)) == len(keys) and all(k.startswith("new-") for k in keys)
    bodies = [hit["json"] for hit in service.seen if task_of(hit["path"]) == "buy"]
    assert bodies and all(b["item"] in {"a b", "c/d", "e"} and b["literal"] == "{kept}" for b in bodies)

    assert [(o.task, o.metric, o.passed) for o in result.assertions] == [
        (None, "p95_ms", True), ("broken", "error_rate", False)]
    assert not result.passed
    assert result.check(scenario) == result.assertions
    assert json.loads(result.to_json())["tasks"]["home"]["count"] == result.tasks["home"].count
    assert "broken" in result.summary()


@needs_locust
def test_open_model_keeps_the_scheduled_arrival_rate(service) -> None:
    scenario = shop({"model": "open", "stages": [{"duration_s": 2, "arrival_rate": 30},
                                                  {"duration_s": 2, "arrival_rate": 60}]},
                    session={"length": {"kind": "constant", "value": 2}})
    service.reset()
    result = run_locust(scenario, service.url, seed=4)
    assert_no_locust_here()
    assert result.scheduled_arrival_rate == pytest.approx(45.0)
    assert result.achieved_arrival_rate == pytest.approx(45.0, rel=0.10)
    assert result.late_arrivals <= 0.02 * result.sessions_started
    assert result.arrivals_scheduled == pytest.approx(180, abs=4 * 180 ** 0.5)  # Poisson, 45/s for 4 s
    sessions = service.sessions()
    assert len(sessions) == pytest.approx(result.sessions_started, abs=3)
    assert all(SESSION_ID.match(sid) and len(hits) <= 2 for sid, hits in sessions.items())
    starts = sorted(hits[0]["t"] for hits in sessions.values())
    middle = starts[0] + 2.0
    first, second = sum(t < middle for t in starts), sum(t >= middle for t in starts)
    assert second / first == pytest.approx(2.0, rel=0.35)  # the second stage's rate is twice the first's
    drawn = Counter(task_of(hit["path"]) for hit in service.seen)
    assert drawn["home"] / sum(drawn.values()) == pytest.approx(3 / 7, abs=0.07)  # by weight, no chain


@needs_locust
def test_open_model_counts_late_arrivals_when_the_service_is_slow(service) -> None:
    scenario = shop({"model": "open", "stages": [{"duration_s": 3, "arrival_rate": 20}]})
    service.reset(delay_s=0.25)
    try:
        result = run_locust(scenario, service.url, seed=6, max_users=2)
    finally:
        service.reset()
    # two users carry at most 8 sessions a second: the other arrivals still come, and wait
    assert result.scheduled_arrival_rate == pytest.approx(20.0)
    assert result.achieved_arrival_rate < 0.6 * 20.0
    assert result.late_arrivals >= 20 and result.arrivals_missed > 0
    assert result.max_lateness_ms > 500
    assert result.peak_users == 2


# -- failures are clear errors -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


SHORT = {"model": "closed", "stages": [{"duration_s": 1, "users": 1}]}


@needs_locust
def test_an_unreachable_host_is_a_clear_error() -> None:
    host = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(LoadTestError, match=f"requests got an answer from {re.escape(host)}"):
        run_locust(shop(SHORT), host)


@needs_locust
def test_a_broken_locustfile_is_a_clear_error(service, monkeypatch) -> None:
    monkeypatch.setattr(locust_runner, "locustfile_source",
                        lambda *args, **kwargs: "raise RuntimeError('broken on purpose')\n")
    with pytest.raises(LoadTestError, match=r"(?s)exited with status \d+.*broken on purpose"):
        run_locust(shop(SHORT), service.url)


@needs_locust
def test_an_exception_in_the_generated_code_is_a_clear_error(service, monkeypatch) -> None:
    emit = locust_runner.locustfile_source
    monkeypatch.setattr(locust_runner, "locustfile_source",  # a bug planted where every request goes
                        lambda *args, **kwargs: emit(*args, **kwargs) + "\n_Step.url = lambda *a: 1 / 0\n")
    with pytest.raises(LoadTestError, match=r"(?s)the generated locustfile raised \d+ time\(s\).*division by zero"):
        run_locust(shop(SHORT), service.url)


@needs_locust
def test_a_run_past_its_timeout_is_stopped(service) -> None:
    with pytest.raises(LoadTestError, match=r"did not finish within timeout_s=0\.5 s"):
        run_locust(shop({"model": "closed", "stages": [{"duration_s": 30, "users": 1}]}), service.url,
                   timeout_s=0.5)


def test_without_locust_the_error_says_how_to_install_it(monkeypatch) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "locust" else find_spec(name, *args))
    with pytest.raises(LoadTestError, match=re.escape("pip install 'perfsdk[loadtest]'")):
        run_locust(shop(SHORT), "http://127.0.0.1:9")


def test_bad_arguments_name_what_was_wrong() -> None:
    with pytest.raises(TypeError, match="scenario must be"):
        run_locust({"name": "x"}, "http://127.0.0.1:9")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="host must be a base URL"):
        run_locust(shop(SHORT), "ftp://127.0.0.1/x")
    for host, why in [("http://127.0.0.1:99999", "port out of range"), ("http://[::1", "invalid IPv6 URL")]:
        with pytest.raises(ValueError, match=re.escape(f"got {host!r}: {why}")):  # was Locust's traceback
            run_locust(shop(SHORT), host)
    with pytest.raises(ValueError, match="duration_s"):
        run_locust(shop(SHORT), "http://127.0.0.1:9", duration_s=0)
    with pytest.raises(TypeError, match="seed"):
        locustfile_source(shop(SHORT), seed="1")  # type: ignore[arg-type]
    idle = shop(SHORT, session={"think_time_s": {"kind": "constant", "value": 1}})
    for task in idle.data["tasks"]:
        task["weight"] = 0
    with pytest.raises(ValueError, match="no task can start a session"):
        locustfile_source(idle)


# -- results, assertions, the plan ---------------------------------------------------------------------------


def test_assertions_are_checked_against_the_figures() -> None:
    scenario = shop(SHORT, assertions=[{"task": "home", "metric": "p95_ms", "below": 50},
                                       {"task": "item", "metric": "p99_ms", "below": 50},
                                       {"task": "buy", "metric": "p50_ms", "below": 50},
                                       {"metric": "error_rate", "below": 0.01}])
    home = TaskFigures(count=100, failures=0, error_rate=0.0, p50_ms=5.0, p95_ms=20.0, p99_ms=60.0)
    none = TaskFigures(count=0, failures=0, error_rate=0.0, p50_ms=None, p95_ms=None, p99_ms=None)
    result = LoadTestResult(scenario="shop", load_model="closed", duration_s=1.0, requests=100, failures=2,
                            answered=100, tasks={"home": home, "item": home, "buy": none},
                            total=TaskFigures(100, 2, 0.02, 5.0, 20.0, 60.0), sessions_started=10,
                            achieved_arrival_rate=10.0)
    outcomes = result.check(scenario)
    assert outcomes == [AssertionOutcome("home", "p95_ms", 50.0, 20.0, True),
                        AssertionOutcome("item", "p99_ms", 50.0, 60.0, False),
                        AssertionOutcome("buy", "p50_ms", 50.0, None, False),  # nothing measured fails
                        AssertionOutcome(None, "error_rate", 0.01, 0.02, False)]
    assert str(outcomes[1]) == "FAIL p99_ms of task 'item': 60 (must be below 50)"
    with pytest.raises(LoadTestError, match="not what perfsdk writes"):
        LoadTestResult.from_results({"format": 1, "scenario": "x"})


def test_the_dry_run_plan_shows_stages_rates_tasks_chain_and_assertions() -> None:
    scenario = shop({"model": "open", "stages": [{"duration_s": 10, "arrival_rate": 2},
                                                  {"duration_s": 5, "arrival_rate": 8}]},
                    session={**CHAIN, "think_time_s": {"kind": "exponential", "mean": 0.5}},
                    assertions=[{"task": "home", "metric": "p95_ms", "below": 200}])
    plan = dry_run_plan(scenario)
    assert plan.splitlines()[0] == "Scenario 'shop': open model, 2 stages, 15 s"
    for expected in ("stage 1   0-10 s  2 sessions/s", "stage 2   10-15 s  8 sessions/s",
                     "on average 4 sessions/s, about 60 sessions", "GET /item/{item}?n={n}&key={key}",
                     "GET /missing  expect [404]", "start -> home 100.0 %", "home -> item 80.0 %, broken 20.0 %",
                     "p95_ms of task 'home' below 200", "think time exponential, mean 0.5"):
        assert expected in plan, expected
    closed = dry_run_plan(shop(SHORT))
    assert "stage 1   0-1 s  1 users (spawning 1/s)" in closed and "Chain: none" in closed


def test_locust_stays_out_of_this_process() -> None:
    assert_no_locust_here()
