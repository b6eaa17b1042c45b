"""Running a scenario with Locust: the locustfile it becomes, the run in a subprocess, the results.

``locustfile_source`` turns a ``Scenario`` into a self-contained Locust file. The
scenario travels in it as data -- one JSON string literal that ``json.loads``
reads -- and the code around it is the same for every scenario, so no string a
scenario holds is ever run. The file has three parts:

- **sessions**: a session runs the tasks its chain (or the task weights) draws,
  with think times between them and one ``X-Session-Id`` header on all its
  requests; templates are filled by ``str.format_map`` with a fresh value of the
  named generator at each use (URL-encoded in a path or query). Requests are
  named by their task, so Locust's statistics are per task; a status below 400,
  or one in the step's ``expect_status``, is a success.
- **load**: a ``LoadTestShape`` for the stages. Closed model: each stage's users
  and spawn rate; a user runs sessions one after another, with a think time
  between them. Open model: sessions
  arrive as a Poisson process at the stage's rate on a clock of their own (how
  fast the service answers never moves an arrival -- k6's and Gatling's
  arrival-rate executors); a free user takes the next arrival and waits for it;
  an arrival due while no user is free is *late*, and how late is counted
  (coordinated omission made visible, not hidden); the pool of users grows to
  carry the arrivals, up to ``max_users``.
- **results**: at exit, JSON to the path in ``PERFSDK_LOADTEST_RESULTS``: per
  task counts, failures and p50/p95/p99 from Locust's own statistics, sessions,
  achieved and scheduled arrival rates, late arrivals and the worst lateness.

The users are ``FastHttpUser``: measured against the same server, it spends about
a third of ``HttpUser``'s CPU a request (about 300 us against 1,000 here). The
file's own work a request (drawing sessions and values, filling templates) is
about 5 us, 2 % of that; a seeded run adds a few us a session.

``run_locust`` runs that file with the real Locust, headless, in a subprocess --
importing Locust would patch this process's standard library with gevent -- and
reads the results back into a ``LoadTestResult`` checked against the scenario's
assertions.

The session sampler (``_Weighted`` to ``_open_users``) is plain Python that runs
here (tests, the dry run's estimates) and, copied verbatim by ``inspect``, in
the locustfile: one implementation, tested where it is written.

>>> from perfsdk.testgen.scenario import Scenario
>>> scenario = Scenario.from_dict({
...     "version": 1, "name": "browse",
...     "load": {"model": "closed", "stages": [{"duration_s": 5, "users": 2}]},
...     "tasks": [{"name": "home", "steps": [{"method": "GET", "path": "/"}]}],
... })
>>> source = locustfile_source(scenario, seed=7)
>>> code = compile(source, "locustfile.py", "exec")
>>> print(dry_run_plan(scenario).splitlines()[0])
Scenario 'browse': closed model, 1 stage, 5 s
"""

from __future__ import annotations

import bisect
import functools
import importlib.util
import inspect
import itertools
import json
import math
import os
import random
import string
import subprocess
import sys
import tempfile
import uuid
from collections import deque
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence
from urllib.parse import quote, quote_plus

from perfsdk._runtime import check_int, check_number, check_str
from perfsdk.testgen.scenario import Limits, Scenario, host_problem

__all__ = ["AssertionOutcome", "LoadTestError", "LoadTestResult", "TaskFigures", "dry_run_plan",
           "locustfile_source", "run_locust"]

RESULTS_ENV = "PERFSDK_LOADTEST_RESULTS"
INSTALL_HINT = "pip install 'perfsdk[loadtest]'"
SESSION_HEADER = "X-Session-Id"
RESULTS_FORMAT = 1


class LoadTestError(RuntimeError):
    """A load test that could not run or whose run cannot be trusted (the message says which and why)."""


# -- the session sampler: runs here and, copied by inspect.getsource, in the locustfile ---------------


class _Weighted:
    """Items drawn by weight (zero weights never): one bisect over the cumulative weights a draw."""

    __slots__ = ("items", "cumulative", "total")

    def __init__(self, items: Sequence[Any], weights: Sequence[float] | None = None) -> None:
        pairs = zip(items, weights) if weights is not None else ((item, 1.0) for item in items)
        kept = [(item, float(weight)) for item, weight in pairs if weight > 0]
        self.items = [item for item, _ in kept]
        self.cumulative = list(itertools.accumulate(weight for _, weight in kept))
        self.total = self.cumulative[-1] if kept else 0.0

    def __bool__(self) -> bool:
        return bool(self.items)

    def pick(self, rng: random.Random) -> Any:
        i = bisect.bisect_right(self.cumulative, rng.random() * self.total)
        return self.items[min(i, len(self.items) - 1)]  # min: rounding at the very top


def _distribution(spec: Mapping[str, Any] | None) -> Callable[[random.Random], float]:
    """A sampler of one of the scenario's distributions (absent: always 0)."""
    if spec is None:
        return lambda rng: 0.0
    kind = spec["kind"]
    if kind == "constant":
        value = float(spec["value"])
        return lambda rng: value
    if kind == "uniform":
        low, high = float(spec["low"]), float(spec["high"])
        return lambda rng: rng.uniform(low, high)
    if kind == "exponential":
        mean = float(spec["mean"])
        return (lambda rng: rng.expovariate(1.0 / mean)) if mean > 0 else (lambda rng: 0.0)
    if kind == "lognormal":
        mu, sigma = math.log(spec["median"]), float(spec["sigma"])
        return lambda rng: rng.lognormvariate(mu, sigma)
    if kind == "empirical":
        return _Weighted([float(v) for v in spec["values"]], spec.get("weights")).pick
    raise ValueError(f"unknown distribution kind {kind!r}")


def _generators(specs: Mapping[str, Mapping[str, Any]], encode: Callable[[str], str] = str,
                counters: dict[str, Iterator[int]] | None = None) -> dict[str, Callable[[random.Random], str]]:
    """Each generator as a function of a session's random source, giving the text a template gets.

    ``encode`` (for a URL path or query) is applied here, once a value, not once a request: to a
    choice's values and a sequence's prefix; integers and UUIDs are digits, letters and '-', which
    no URL encoding changes. ``counters``: the sequences' counters, shared by every encoding.
    """
    counters = {} if counters is None else counters
    draws: dict[str, Callable[[random.Random], str]] = {}
    for name, spec in specs.items():
        kind = spec["kind"]
        if kind == "choice":
            draws[name] = _Weighted([encode(str(v)) for v in spec["values"]], spec.get("weights")).pick
            if spec.get("otherwise"):
                draws[name] = _or_else(draws[name], spec["otherwise"])
        elif kind == "int":
            draws[name] = _int_draw(int(spec["low"]), int(spec["high"]))
        elif kind == "sequence":
            # one counter for the run, whichever session asks: every key is new (a cold cache)
            counter = counters.setdefault(name, itertools.count(int(spec.get("start", 0))))
            draws[name] = _sequence_draw(encode(str(spec.get("prefix", ""))), counter)
        elif kind == "uuid":
            draws[name] = _uuid_draw
        else:
            raise ValueError(f"unknown generator kind {kind!r} for {name!r}")
    return draws


def _int_draw(low: int, high: int) -> Callable[[random.Random], str]:
    return lambda rng: str(rng.randint(low, high))


def _or_else(pick: Callable[[random.Random], str], otherwise: dict[str, Any]) -> Callable[[random.Random], str]:
    """``pick``, except for ``otherwise["share"]`` of the draws: an integer in [low, high]."""
    share, other = float(otherwise["share"]), _int_draw(int(otherwise["low"]), int(otherwise["high"]))
    return lambda rng: other(rng) if rng.random() < share else pick(rng)


def _sequence_draw(prefix: str, counter: Iterator[int]) -> Callable[[random.Random], str]:
    return lambda rng: prefix + str(next(counter))


def _uuid_draw(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _path_segment(text: str) -> str:
    """A value as one path segment: everything but unreserved characters percent-encoded ('/' too),
    and a value "." or ".." too, or a normalising server would walk the path out of the route."""
    if text in (".", ".."):  # unreserved, so quote() leaves them be
        return text.replace(".", "%2E")
    return quote(text, safe="")


class _Values:
    """``str.format_map``'s mapping: a generator's name gives a fresh value at each use."""

    __slots__ = ("draws", "rng")

    def __init__(self, draws: Mapping[str, Callable[[random.Random], str]], rng: random.Random) -> None:
        self.draws, self.rng = draws, rng

    def __getitem__(self, name: str) -> str:
        return self.draws[name](self.rng)


def _has_fields(template: str) -> bool:
    return any(name is not None for _, name, _, _ in string.Formatter().parse(template))


def _encoded(template: str, encode: Callable[[str], str]) -> str:
    """``template`` with its literal text encoded now; its fields are left for values encoded alike."""
    parts = []
    for literal, name, _, _ in string.Formatter().parse(template):
        parts.append(encode(literal).replace("{", "{{").replace("}", "}}"))
        if name is not None:
            parts.append("{" + name + "}")
    return "".join(parts)


def _fill_json(value: Any, values: Any) -> Any:
    """A JSON body with every string filled as a template (keys stay as written)."""
    if isinstance(value, str):
        return value.format_map(values)
    if isinstance(value, list):
        return [_fill_json(item, values) for item in value]
    if isinstance(value, dict):
        return {key: _fill_json(item, values) for key, item in value.items()}
    return value


def _json_has_fields(value: Any) -> bool:
    if isinstance(value, str):
        return _has_fields(value)
    if isinstance(value, list):
        return any(_json_has_fields(item) for item in value)
    if isinstance(value, dict):
        return any(_json_has_fields(item) for item in value.values())
    return False


class _Step:
    """One request of a task, compiled once: what never changes is built (and encoded) here; a
    request fills the templates with values the generators drew, already encoded for where they go."""

    __slots__ = ("method", "path", "path_fixed", "query", "query_fixed", "headers", "body", "body_fixed",
                 "expect")

    # what a path's literal text keeps as written: RFC 3986 pchar and '/'; '%' keeps escapes already there
    PATH_SAFE = "/%:@!$&'()*+,;=~"

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.method = str(spec["method"])
        self.path = _encoded(spec["path"], lambda literal: quote(literal, safe=self.PATH_SAFE))
        self.path_fixed = not _has_fields(self.path)
        if self.path_fixed:
            self.path = self.path.format_map({})
        query = spec.get("query", {})
        self.query = "&".join(quote_plus(key) + "=" + _encoded(template, quote_plus)  # keys are not templates
                              for key, template in query.items())
        self.query_fixed = not _has_fields(self.query)
        if self.query_fixed:
            self.query = self.query.format_map({})
        self.headers = [(key, template, None if _has_fields(template) else template.format_map({}))
                        for key, template in spec.get("headers", {}).items()]
        self.body = spec.get("json")
        self.body_fixed = not _json_has_fields(self.body)
        if self.body_fixed and self.body is not None:
            self.body = _fill_json(self.body, {})  # '{{' -> '{' once
        self.expect = frozenset(spec["expect_status"]) if "expect_status" in spec else None

    def url(self, path_values: _Values, query_values: _Values) -> str:
        path = self.path if self.path_fixed else self.path.format_map(path_values)
        if not self.query:
            return path
        return path + "?" + (self.query if self.query_fixed else self.query.format_map(query_values))

    def headers_for(self, values: _Values, session_headers: dict[str, str]) -> dict[str, str]:
        if not self.headers:
            return session_headers
        out = {key: fixed if fixed is not None else template.format_map(values)
               for key, template, fixed in self.headers}
        out.update(session_headers)  # the session's id is on every request, whatever a step says
        return out

    def body_for(self, values: _Values) -> Any:
        return self.body if self.body_fixed else _fill_json(self.body, values)


class _Sessions:
    """What one session does: its tasks in order, and the think times between them.

    With ``session.length``: exactly that many tasks (a draw per session), the chain's
    ``$end`` ignored (rows renormalised), a task with no row going back to ``start``.
    Without it: until the chain reaches ``$end`` or a task with no row, at most
    ``MAX_TASKS``. Without ``session.transitions``: tasks drawn by ``weight`` (one a
    session unless a length is given). ``start`` defaults to the weights.
    """

    END = -1
    MAX_TASKS = 1000  # scenario.MAX_SESSION_REQUESTS: a literal, as this class is copied into the locustfile

    def __init__(self, scenario: Mapping[str, Any]) -> None:
        tasks = scenario["tasks"]
        index = {task["name"]: i for i, task in enumerate(tasks)}
        index["$end"] = self.END
        session = scenario.get("session", {})
        self.steps = [len(task["steps"]) for task in tasks]
        self.by_weight = _Weighted(range(len(tasks)), [task.get("weight", 1) for task in tasks])
        self.start = self._row(session["start"], index) if "start" in session else self.by_weight
        self.length = _distribution(session["length"]) if "length" in session else None
        self.chained = "transitions" in session
        self.next = {index[source]: self._row({k: p for k, p in row.items() if self.length is None or k != "$end"},
                                              index)
                     for source, row in session.get("transitions", {}).items()}
        self.think = _distribution(session.get("think_time_s"))

    @staticmethod
    def _row(row: Mapping[str, float], index: Mapping[str, int]) -> _Weighted:
        return _Weighted([index[name] for name in row], list(row.values()))

    def plan(self, rng: random.Random) -> list[int]:
        """The task indices of one session."""
        tasks = [self.start.pick(rng)]
        if self.length is not None:
            n = min(self.MAX_TASKS, max(1, round(self.length(rng))))
            while len(tasks) < n:
                row = self.next.get(tasks[-1]) if self.chained else self.by_weight
                tasks.append((row if row else self.start).pick(rng))
            return tasks
        while self.chained and len(tasks) < self.MAX_TASKS:
            row = self.next.get(tasks[-1])
            following = row.pick(rng) if row else self.END
            if following == self.END:
                break
            tasks.append(following)
        return tasks

    def estimate(self, draws: int = 500, seed: int = 0) -> tuple[float, float, float]:
        """Mean tasks, requests and think seconds a session (drawn, so it holds for any chain)."""
        rng = random.Random(seed)
        tasks = requests = think = 0.0
        for _ in range(draws):
            plan = self.plan(rng)
            tasks += len(plan)
            requests += sum(self.steps[t] for t in plan)
            think += sum(self.think(rng) for _ in range(len(plan) - 1))
        return tasks / draws, requests / draws, think / draws


class _Arrivals:
    """Open-model session arrivals: a Poisson process at each stage's rate (piecewise constant),
    drawn on a clock of its own -- how fast the service answers never moves an arrival.

    ``take`` hands arrivals out in order; ``due_by(t)`` counts those due by ``t``.
    """

    def __init__(self, stages: Sequence[tuple[float, float]], end_s: float, rng: random.Random) -> None:
        self.spans: list[tuple[float, float]] = []  # (stage end, rate), cut at end_s
        t = 0.0
        for duration, rate in stages:
            t += duration
            self.spans.append((min(t, end_s), rate))
            if t >= end_s:
                break
        self.rng = rng
        self.clock = 0.0  # the last arrival drawn
        self.stage = 0
        self.pending: deque[float] = deque()  # drawn, not taken yet
        self.taken = 0

    def _draw(self) -> bool:
        """The next arrival into ``pending`` (False: none before the end). A unit-rate exponential
        spent through the stages' rates: exact for a rate that changes between stages."""
        need = self.rng.expovariate(1.0)
        while self.stage < len(self.spans):
            stage_end, rate = self.spans[self.stage]
            room = (stage_end - self.clock) * rate
            if rate > 0 and room >= need:
                self.clock += need / rate
                self.pending.append(self.clock)
                return True
            need -= room
            self.clock = stage_end
            self.stage += 1
        return False

    def take(self) -> tuple[int, float] | None:
        """(index, due time) of the next arrival, None when none is left."""
        if not self.pending and not self._draw():
            return None
        self.taken += 1
        return self.taken - 1, self.pending.popleft()

    def due_by(self, t: float) -> int:
        while (not self.pending or self.pending[-1] <= t) and self._draw():
            pass
        return self.taken + sum(1 for due in self.pending if due <= t)


def _mean_rate(stages: Sequence[tuple[float, float]], end_s: float) -> float:
    """The stages' arrival rate averaged over [0, end_s]."""
    sessions, t = 0.0, 0.0
    for duration, rate in stages:
        sessions += rate * max(0.0, min(t + duration, end_s) - t)
        t += duration
    return sessions / end_s if end_s > 0 else 0.0


def _open_users(rate: float, estimate: tuple[float, float, float], request_s: float = 0.05) -> int:
    """Users to start an open-model stage with (Little's law with room to spare; the pool grows
    from there when arrivals find no user free). ``request_s``: a guess at one request's time."""
    _, requests, think = estimate
    return math.ceil(1.5 * rate * (requests * request_s + think)) + 2


_SAMPLER = (_Weighted, _distribution, _generators, _int_draw, _or_else, _sequence_draw, _uuid_draw, _path_segment,
            _Values, _has_fields, _encoded, _fill_json, _json_has_fields, _Step, _Sessions, _Arrivals, _mean_rate,
            _open_users)

# -- the Locust side: fixed code, the same for every scenario --------------------------------------------

_HEADER = '''\
"""A Locust file generated by perfsdk from a load-test scenario (perfsdk.testgen.locust_runner).

The scenario is data: SCENARIO below is read by json.loads, and no string in it is ever run.
Run it:  locust -f THIS_FILE --headless --host URL [--only-summary]
With PERFSDK_LOADTEST_RESULTS=path.json set, the results are written there as JSON at exit.
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
import os
import random
import string
import time
import uuid
from collections import deque
from typing import Any, Callable, Iterator, Mapping, Sequence
from urllib.parse import quote, quote_plus

import gevent
import locust
from locust import FastHttpUser, LoadTestShape, events, task
from locust.stats import StatsEntry

'''

_GLUE = '''

# -- the run: everything below is the same for every scenario ----------------------------------------

OPEN = SCENARIO["load"]["model"] == "open"
STAGES = SCENARIO["load"]["stages"]
EDGES = list(itertools.accumulate(stage["duration_s"] for stage in STAGES))
END_S = EDGES[-1] if DURATION_S is None else min(EDGES[-1], DURATION_S)
RATES = [(stage["duration_s"], stage.get("arrival_rate", 0.0)) for stage in STAGES]
BASE_SEED = SEED if SEED is not None else random.SystemRandom().getrandbits(48)
SESSIONS = _Sessions(SCENARIO)
GENERATORS = SCENARIO.get("generators", {})
# the same generators three times: values as they are (headers, JSON), and encoded for a path or a query
COUNTERS = {}
DRAWS = _generators(GENERATORS, str, COUNTERS)
PATH_DRAWS = _generators(GENERATORS, _path_segment, COUNTERS)
QUERY_DRAWS = _generators(GENERATORS, quote_plus, COUNTERS)


def _sends_path_params():
    """Whether the HTTP client sends a path's ";params" as given: geventhttpclient before 2.6 (the
    newest on Python 3.10) rebuilds the path with urlparse, which drops the last segment's
    ("/cart;sid=1" went as "/cart"). With it, ";" goes escaped: a WSGI server decodes %3B back."""
    import re
    from importlib.metadata import version
    try:
        found = re.match(r"(\\d+)\\.(\\d+)", version("geventhttpclient"))
    except Exception:  # not installed where this runs: Locust's own client then, whatever it is
        return True
    return found is None or (int(found.group(1)), int(found.group(2))) >= (2, 6)


if not _sends_path_params():
    _Step.PATH_SAFE = _Step.PATH_SAFE.replace(";", "")
TASKS = [(t["name"], [_Step(step) for step in t["steps"]]) for t in SCENARIO["tasks"]]
ARRIVALS = _Arrivals(RATES, END_S, random.Random(BASE_SEED)) if OPEN else None
ESTIMATE = SESSIONS.estimate(seed=BASE_SEED) if OPEN else None
THINK_RNG = random.Random(BASE_SEED + 1)
SUCCESS_CODES = frozenset(range(100, 400))
SHARED_RNG = random.Random(BASE_SEED + 2)
# a uuid4's version and variant bits, as uuid.UUID(version=4) sets them
UUID4_CLEAR, UUID4_SET = ~((0xF000 << 64) | (0xC000 << 48)), (0x4000 << 64) | (0x8000 << 48)


class _Run:
    """What the run did beyond Locust's request statistics."""

    def __init__(self):
        self.origin = None  # perf_counter at the shape's first tick: the arrivals' clock starts there
        self.stopped = None
        self.sessions = 0
        self.next_session = 0
        self.busy = 0  # users inside a session
        self.answered = 0  # requests that got an HTTP response (any status)
        self.late = 0
        self.missed = 0
        self.max_lateness_s = 0.0
        self.max_start_lag_s = 0.0  # on-time arrivals started after their time: the generator's own delay
        self.peak_users = 0

    def begin(self):
        if self.origin is None:
            self.origin = time.perf_counter()

    def clock(self):
        return time.perf_counter() - self.origin

    def stop(self):
        if self.stopped is not None or self.origin is None:
            return
        self.stopped = self.clock()
        if ARRIVALS is not None:
            backlog = ARRIVALS.due_by(self.stopped) - ARRIVALS.taken
            if backlog > 0:  # due and never taken: no user was free for them before the end
                self.missed = backlog
                self.max_lateness_s = max(self.max_lateness_s, self.stopped - ARRIVALS.pending[0])


RUN = _Run()


def _send(client, name, step, values, path_values, query_values, session_headers):
    url = step.url(path_values, query_values)
    headers = step.headers_for(values, session_headers)
    body = step.body_for(values)
    if step.expect is None:  # below 400 (ScenarioUser.on_start) is a success
        response = client.request(step.method, url, name=name, headers=headers, json=body, data=b"")
    else:
        with client.request(step.method, url, name=name, headers=headers, json=body, data=b"",
                            catch_response=True) as response:
            if response.status_code in step.expect:
                response.success()
            else:
                response.failure(getattr(response, "error", None)
                                 or f"HTTP {response.status_code} is not in expect_status")
    if response.status_code:
        RUN.answered += 1


def _run_session(client, index):
    # seeded: session k draws the same whoever runs it, at the price of seeding a generator (some
    # microseconds); unseeded, the sessions share one
    rng = random.Random(BASE_SEED * 1_000_003 + index) if SEED is not None else SHARED_RNG
    session_headers = {SESSION_HEADER: "%032x" % (rng.getrandbits(128) & UUID4_CLEAR | UUID4_SET)}
    values, path_values, query_values = _Values(DRAWS, rng), _Values(PATH_DRAWS, rng), _Values(QUERY_DRAWS, rng)
    RUN.sessions += 1
    RUN.busy += 1
    try:
        for position, task_index in enumerate(SESSIONS.plan(rng)):
            if position:
                gevent.sleep(SESSIONS.think(rng))
            name, steps = TASKS[task_index]
            for step in steps:
                _send(client, name, step, values, path_values, query_values, session_headers)
    finally:
        RUN.busy -= 1


class ScenarioUser(FastHttpUser):
    """Open model: runs one session per arrival it takes. Closed model: sessions one after another.

    FastHttpUser: measured, it spends about a third of HttpUser's CPU a request.
    """

    def on_start(self):
        # the scenario's rule, every status below 400 a success (Locust's list leaves out 300 and 305)
        self.client.client.valid_response_codes = SUCCESS_CODES

    def wait_time(self):
        # open: the arrival clock paces sessions; closed: a user thinks between its sessions
        return 0.0 if OPEN else SESSIONS.think(THINK_RNG)

    @task
    def session(self):
        if not OPEN:
            RUN.next_session += 1
            _run_session(self.client, RUN.next_session - 1)
            return
        arrival = ARRIVALS.take()
        if arrival is None:  # no arrival left before the end: idle until the shape stops the test
            gevent.sleep(max(END_S - RUN.clock(), 0.0) + 1.0)
            return
        index, due = arrival
        wait = due - RUN.clock()
        if wait > 0:
            gevent.sleep(wait)
            RUN.max_start_lag_s = max(RUN.max_start_lag_s, RUN.clock() - due)
        else:  # due while no user was free: coordinated omission, counted rather than hidden
            RUN.late += 1
            RUN.max_lateness_s = max(RUN.max_lateness_s, -wait)
        _run_session(self.client, index)


class ScenarioShape(LoadTestShape):
    """The stages. Closed model: each stage's users and spawn rate. Open model: users enough to
    carry the arrivals -- an estimate to start with, more whenever arrivals wait (never fewer)."""

    target = 0
    applied = -1  # the stage whose load was last asked for

    def tick(self):
        RUN.begin()
        now = RUN.clock()
        if now >= END_S:
            return None
        index = min(bisect.bisect_right(EDGES, now), len(STAGES) - 1)
        boundary = min(EDGES[index], END_S)
        if index == self.applied and boundary - now < 1.0:
            # Locust ticks about once a second: wait here so the next stage (or the end) comes on time
            gevent.sleep(boundary - now)
            now = max(RUN.clock(), boundary)
            if now >= END_S:
                return None
            index = min(bisect.bisect_right(EDGES, now), len(STAGES) - 1)
        self.applied = index
        stage = STAGES[index]
        if not OPEN:
            users = int(stage["users"])
            return users, float(stage.get("spawn_rate", max(users, 1)))
        backlog = ARRIVALS.due_by(now) - ARRIVALS.taken
        need = max(_open_users(stage["arrival_rate"], ESTIMATE), math.ceil(1.25 * (RUN.busy + backlog)) + 2)
        grown = min(MAX_USERS, max(self.target, need))
        spawn_rate = float(max(100, grown - self.target))  # any growth within about a second
        self.target = grown
        return grown, spawn_rate


def _figures(entry):
    count = entry.num_requests
    def percentile(q):
        return float(entry.get_response_time_percentile(q)) if count else None
    return {"count": count, "failures": entry.num_failures,
            "error_rate": entry.num_failures / count if count else 0.0,
            "p50_ms": percentile(0.5), "p95_ms": percentile(0.95), "p99_ms": percentile(0.99)}


def _results(environment):
    stats = environment.stats
    by_task = {}  # a task's steps may use several methods: one entry a task, merged by Locust
    for (name, _method), entry in stats.entries.items():
        if name not in by_task:
            by_task[name] = StatsEntry(stats, name, "", use_response_times_cache=False)
        by_task[name].extend(entry)
    empty = StatsEntry(stats, "", "", use_response_times_cache=False)
    duration = RUN.stopped or 0.0
    window = min(duration, END_S)  # the arrivals end at END_S; stopping takes a moment more
    runner = environment.runner
    return {
        "format": RESULTS_FORMAT,
        "scenario": SCENARIO["name"],
        "load_model": SCENARIO["load"]["model"],
        "seed": SEED,
        "locust_version": locust.__version__,
        "duration_s": duration,
        "requests": stats.total.num_requests,
        "failures": stats.total.num_failures,
        "answered": RUN.answered,
        "tasks": {name: _figures(by_task.get(name, empty)) for name, _ in TASKS},
        "total": _figures(stats.total),
        "sessions_started": RUN.sessions,
        "achieved_arrival_rate": RUN.sessions / window if window > 0 else 0.0,
        "scheduled_arrival_rate": _mean_rate(RATES, END_S) if OPEN else None,
        "arrivals_scheduled": ARRIVALS.due_by(window) if OPEN else None,
        "late_arrivals": RUN.late + RUN.missed,
        "arrivals_missed": RUN.missed,
        "max_lateness_ms": 1000.0 * RUN.max_lateness_s,
        "max_start_lag_ms": 1000.0 * RUN.max_start_lag_s,
        "peak_users": RUN.peak_users,
        "errors": [{"task": e.name, "method": e.method, "error": str(e.error), "occurrences": e.occurrences}
                   for e in sorted(stats.errors.values(), key=lambda e: -e.occurrences)[:20]],
        "exceptions": [{"count": e["count"], "message": e["msg"], "traceback": e["traceback"]}
                       for e in (runner.exceptions.values() if runner else [])][:20],
    }


@events.spawning_complete.add_listener
def _on_spawned(user_count, **_kwargs):
    RUN.peak_users = max(RUN.peak_users, user_count)


@events.test_stop.add_listener
def _on_test_stop(environment, **_kwargs):
    RUN.stop()


@events.quitting.add_listener
def _write_results(environment, **_kwargs):
    RUN.stop()
    path = os.environ.get(RESULTS_ENV)
    if not path:
        return
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as out:  # written whole, then renamed: never read half-written
        json.dump(_results(environment), out, indent=2)
    os.replace(tmp, path)
'''


def locustfile_source(scenario: Scenario, *, seed: int | None = None, duration_s: float | None = None,
                      max_users: int = Limits.max_users) -> str:
    """The self-contained Locust file that runs ``scenario`` (see the module docstring).

    ``seed`` makes the sessions' draws and the arrival times repeatable; ``duration_s``
    caps the run (default: the scenario's stages); ``max_users`` caps the open model's
    pool of users (arrivals beyond what they carry are counted late).
    """
    if not isinstance(scenario, Scenario):
        raise TypeError(f"scenario must be a perfsdk.testgen.Scenario, got {type(scenario).__name__}")
    if seed is not None:
        seed = check_int("seed", seed)
    if duration_s is not None:
        duration_s = check_number("duration_s", duration_s, low=0.0, low_open=True)
    max_users = check_int("max_users", max_users, minimum=1)
    if not _Sessions(scenario.data).start:  # what the schema lets through but no session can run
        raise ValueError("scenario: no task can start a session (every task has weight 0 and there is no "
                         "session.start)")
    # ensure_ascii: the literal below is pure ASCII whatever the scenario holds; repr makes it a
    # Python string literal that evaluates back to exactly that text and nothing else
    data = json.dumps(scenario.data, ensure_ascii=True)  # key order kept: query strings keep theirs
    settings = "\n".join([
        f"SCENARIO = json.loads({data!r})",
        f"SEED = {seed!r}",
        f"DURATION_S = {duration_s!r}",
        f"MAX_USERS = {max_users!r}",
        f"RESULTS_ENV = {RESULTS_ENV!r}",
        f"RESULTS_FORMAT = {RESULTS_FORMAT!r}",
        f"SESSION_HEADER = {SESSION_HEADER!r}",
    ])
    return _HEADER + settings + "\n\n# -- the session sampler (perfsdk.testgen.locust_runner) --\n\n" + \
        _sampler_source() + _GLUE


@functools.lru_cache(maxsize=1)
def _sampler_source() -> str:
    try:
        return "\n\n".join(inspect.getsource(part) for part in _SAMPLER)
    except (OSError, TypeError) as exc:  # perfsdk installed without its .py files
        raise RuntimeError(f"cannot emit a locustfile: the source of perfsdk.testgen.locust_runner is not "
                           f"readable ({exc})") from None


# -- results ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskFigures:
    """One task's requests (all its steps) over the run, from Locust's statistics."""

    count: int
    failures: int
    error_rate: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


@dataclass(frozen=True)
class AssertionOutcome:
    """One of the scenario's assertions against what was measured (``task`` None: all requests)."""

    task: str | None
    metric: str
    limit: float
    measured: float | None
    passed: bool

    def __str__(self) -> str:
        where = f"task {self.task!r}" if self.task is not None else "all requests"
        measured = "nothing measured" if self.measured is None else f"{self.measured:g}"
        return (f"{'PASS' if self.passed else 'FAIL'} {self.metric} of {where}: {measured} "
                f"(must be below {self.limit:g})")


@dataclass
class LoadTestResult:
    """What a Locust run measured (see the module docstring for each figure).

    Parameters
    ----------
    tasks, total
        Per task (a task's requests are named by it) and over all requests.
    sessions_started, achieved_arrival_rate
        Sessions begun, and per second of the run.
    scheduled_arrival_rate, arrivals_scheduled
        Open model: the scenario's rate averaged over the run, and the arrivals its
        Poisson process drew in the run (None for the closed model).
    late_arrivals, arrivals_missed, max_lateness_ms
        Open model: arrivals due while no user was free (started late, or never), and the
        worst lateness -- what a closed-model test hides (coordinated omission).
    max_start_lag_ms
        Open model: the worst delay of an arrival a user was waiting for -- Locust's own lag
        (large when its process is short of CPU; then the achieved rate is the generator's).
    assertions
        The scenario's assertions checked against this run (``run_locust`` fills it).

    Examples
    --------
    >>> figures = TaskFigures(count=10, failures=1, error_rate=0.1, p50_ms=3.0, p95_ms=9.0, p99_ms=12.0)
    >>> result = LoadTestResult(scenario="s", load_model="closed", duration_s=5.0, requests=10, failures=1,
    ...                         answered=10, tasks={"home": figures}, total=figures, sessions_started=4,
    ...                         achieved_arrival_rate=0.8)
    >>> result.error_rate
    0.1
    """

    scenario: str
    load_model: str
    duration_s: float
    requests: int
    failures: int
    answered: int
    tasks: dict[str, TaskFigures]
    total: TaskFigures
    sessions_started: int
    achieved_arrival_rate: float
    scheduled_arrival_rate: float | None = None
    arrivals_scheduled: int | None = None
    late_arrivals: int = 0
    arrivals_missed: int = 0
    max_lateness_ms: float = 0.0
    max_start_lag_ms: float = 0.0
    peak_users: int = 0
    seed: int | None = None
    locust_version: str = ""
    errors: list[dict[str, Any]] = field(default_factory=list)
    assertions: list[AssertionOutcome] = field(default_factory=list)

    @property
    def error_rate(self) -> float:
        return self.total.error_rate

    @property
    def passed(self) -> bool:
        """Every assertion held (True when the scenario has none)."""
        return all(outcome.passed for outcome in self.assertions)

    def check(self, scenario: Scenario) -> list[AssertionOutcome]:
        """The scenario's assertions against this run; a task that made no request fails its own."""
        outcomes = []
        for assertion in scenario.assertions:
            task, metric, limit = assertion.get("task"), assertion["metric"], float(assertion["below"])
            figures = self.total if task is None else self.tasks.get(task)
            measured = None
            if figures is not None and figures.count:
                measured = getattr(figures, metric)
            outcomes.append(AssertionOutcome(task, metric, limit, measured,
                                             measured is not None and measured < limit))
        return outcomes

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    def summary(self) -> str:
        """A few lines for a person: per task, then the sessions and (open model) the arrivals."""
        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value:g}"

        width = max([len(name) for name in self.tasks] + [len("all requests")])
        lines = [f"{self.scenario!r}: {self.requests} requests in {self.duration_s:.1f} s, "
                 f"{100.0 * self.error_rate:.2f} % failed ({self.load_model} model, up to {self.peak_users} users)",
                 f"  {'task':<{width}}  {'count':>7}  {'errors':>7}  {'p50 ms':>7}  {'p95 ms':>7}  {'p99 ms':>7}"]
        for name, figures in [*self.tasks.items(), ("all requests", self.total)]:
            lines.append(f"  {name:<{width}}  {figures.count:>7}  {100.0 * figures.error_rate:>6.2f}%  "
                         f"{ms(figures.p50_ms):>7}  {ms(figures.p95_ms):>7}  {ms(figures.p99_ms):>7}")
        lines.append(f"  sessions: {self.sessions_started} ({self.achieved_arrival_rate:.3g}/s)")
        if self.scheduled_arrival_rate is not None:
            lines.append(f"  arrivals: {self.achieved_arrival_rate:.3g}/s achieved of {self.scheduled_arrival_rate:.3g}/s "
                         f"scheduled; {self.late_arrivals} late ({self.arrivals_missed} never started), "
                         f"worst {self.max_lateness_ms:.0f} ms late; Locust's own start lag at most "
                         f"{self.max_start_lag_ms:.0f} ms")
        return "\n".join(lines)

    @classmethod
    def from_results(cls, data: Mapping[str, Any]) -> "LoadTestResult":
        """From the JSON the locustfile writes; ``LoadTestError`` when it is not that."""
        try:
            if data.get("format") != RESULTS_FORMAT:
                raise ValueError(f"results format {data.get('format')!r}, expected {RESULTS_FORMAT}")
            return cls(
                scenario=str(data["scenario"]), load_model=str(data["load_model"]),
                duration_s=float(data["duration_s"]), requests=int(data["requests"]),
                failures=int(data["failures"]), answered=int(data["answered"]),
                tasks={str(name): TaskFigures(**figures) for name, figures in data["tasks"].items()},
                total=TaskFigures(**data["total"]), sessions_started=int(data["sessions_started"]),
                achieved_arrival_rate=float(data["achieved_arrival_rate"]),
                scheduled_arrival_rate=data["scheduled_arrival_rate"],
                arrivals_scheduled=data["arrivals_scheduled"], late_arrivals=int(data["late_arrivals"]),
                arrivals_missed=int(data["arrivals_missed"]), max_lateness_ms=float(data["max_lateness_ms"]),
                max_start_lag_ms=float(data["max_start_lag_ms"]),
                peak_users=int(data["peak_users"]), seed=data["seed"],
                locust_version=str(data["locust_version"]), errors=list(data["errors"]))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise LoadTestError(f"the load test's results are not what perfsdk writes: {exc!r}") from None


# -- running ------------------------------------------------------------------------------------------


def run_locust(scenario: Scenario, host: str | None = None, *, duration_s: float | None = None,
               workdir: str | os.PathLike[str] | None = None, timeout_s: float | None = None,
               seed: int | None = None, max_users: int = Limits.max_users) -> LoadTestResult:
    """Run ``scenario`` against ``host`` with Locust, headless, in a subprocess; its results.

    ``host`` (default: the scenario's ``host``) is a base URL like ``http://127.0.0.1:8000``.
    ``duration_s`` caps the run (default: the scenario's stages). ``workdir`` keeps the
    locustfile, its log and the results there (default: a temporary directory, removed).
    ``timeout_s`` (default: the run plus 60 s) is when a run that has not ended is stopped.
    Raises ``LoadTestError`` when Locust is not installed, exits with an error, writes no
    results, raises in the generated code, or none of the requests got an answer.
    """
    if not isinstance(scenario, Scenario):
        raise TypeError(f"scenario must be a perfsdk.testgen.Scenario, got {type(scenario).__name__}")
    if host is None:
        host = scenario.data.get("host")
        if host is None:
            raise ValueError("host is needed: the scenario names none (pass one like http://127.0.0.1:8000)")
    host = check_str("host", host)
    problem = host_problem(host.rstrip("/"))
    if problem:
        raise ValueError(problem)
    duration = scenario.duration_s if duration_s is None else min(
        scenario.duration_s, check_number("duration_s", duration_s, low=0.0, low_open=True))
    timeout = duration + 60.0 if timeout_s is None else check_number("timeout_s", timeout_s, low=0.0, low_open=True)
    source = locustfile_source(scenario, seed=seed, duration_s=duration, max_users=max_users)
    if importlib.util.find_spec("locust") is None:  # finds it without importing it
        raise LoadTestError(f"Locust is not installed for {sys.executable}: {INSTALL_HINT}")

    where = tempfile.TemporaryDirectory(prefix="perfsdk-loadtest-") if workdir is None else nullcontext(workdir)
    with where as directory:
        folder = Path(directory).resolve()  # absolute: Locust runs inside it (a relative one would be found twice)
        folder.mkdir(parents=True, exist_ok=True)
        locustfile, results, log = folder / "locustfile.py", folder / "results.json", folder / "locust.log"
        results.unlink(missing_ok=True)  # an older run's results must not pass for this one's
        locustfile.write_text(source, encoding="utf-8")
        command = [sys.executable, "-m", "locust", "-f", str(locustfile), "--headless", "--host", host.rstrip("/"),
                   "--only-summary",
                   # failed requests are results, not a failed run: the assertions judge them
                   "--exit-code-on-error", "0"]
        env = {**os.environ, RESULTS_ENV: str(results)}
        with open(log, "wb") as out:
            # cwd: Locust reads locust.conf and pyproject.toml from it; the caller's must not steer the run
            process = subprocess.Popen(command, cwd=folder, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                       stderr=subprocess.STDOUT)
            try:
                code = process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _stop(process)
                raise LoadTestError(f"Locust did not finish within timeout_s={timeout:g} s (the run was to last "
                                    f"{duration:g} s); stopped it. Its log ends:\n{_tail(log)}") from None
            finally:
                if process.poll() is None:  # interrupted (KeyboardInterrupt): never leave it running
                    _stop(process)
        if code != 0:
            hint = f"\n(is Locust installed? {INSTALL_HINT})" if b"No module named" in log.read_bytes() else ""
            raise LoadTestError(f"Locust exited with status {code}. Its log ends:\n{_tail(log)}{hint}")
        if not results.exists():
            raise LoadTestError(f"Locust exited without writing results to {results}. Its log ends:\n{_tail(log)}")
        try:
            data = json.loads(results.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise LoadTestError(f"cannot read the load test's results {results}: {exc}") from None
    if data.get("exceptions"):  # the generated code failed: its figures are not the scenario's
        first = data["exceptions"][0]
        keep = "" if workdir is not None else " (workdir=, or --workdir DIR on the command line, keeps the locustfile)"
        raise LoadTestError(f"the generated locustfile raised {sum(e['count'] for e in data['exceptions'])} "
                            f"time(s){keep}: {first['message']}\n{first['traceback']}")
    result = LoadTestResult.from_results(data)
    if result.requests and not result.answered:
        first_error = result.errors[0]["error"] if result.errors else "no error recorded"
        raise LoadTestError(f"none of the {result.requests} requests got an answer from {host}: {first_error}")
    result.assertions = result.check(scenario)
    return result


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM first (Locust shuts down and writes what it has), SIGKILL if it lingers."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _tail(log: Path, lines: int = 25, chars: int = 4000) -> str:
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    tail = "\n".join(text.rstrip().splitlines()[-lines:])[-chars:]
    return tail or "(empty)"


# -- the dry run ----------------------------------------------------------------------------------------


def dry_run_plan(scenario: Scenario, *, max_rows: int = 40) -> str:
    """The plan ``perfsdk loadtest --dry-run`` prints: stages, rates, tasks, chain, assertions."""
    if not isinstance(scenario, Scenario):
        raise TypeError(f"scenario must be a perfsdk.testgen.Scenario, got {type(scenario).__name__}")
    return "\n".join(_plan_lines(scenario, max_rows))


def _plan_lines(scenario: Scenario, max_rows: int) -> Iterator[str]:
    stages, is_open = scenario.stages, scenario.load_model == "open"
    sessions = _Sessions(scenario.data)
    estimate = sessions.estimate()
    noun = "stage" if len(stages) == 1 else "stages"
    yield f"Scenario {scenario.name!r}: {scenario.load_model} model, {len(stages)} {noun}, {scenario.duration_s:g} s"
    if scenario.data.get("host"):
        yield f"Host: {scenario.data['host']} (the runner's --host wins)"
    rates = [(stage["duration_s"], stage.get("arrival_rate", 0.0)) for stage in stages]
    if is_open:
        first = _open_users(rates[0][1], estimate)
        yield (f"Load: sessions arrive as a Poisson process at each stage's rate; users start at {first} and "
               f"grow when an arrival finds none free (late arrivals are counted)")
    else:
        yield "Load: users, each running sessions one after another (thinking between them)"
    start = 0.0
    for i, stage in enumerate(stages[:max_rows]):
        span = f"  stage {i + 1:<3} {start:g}-{start + stage['duration_s']:g} s"
        if is_open:
            yield f"{span}  {stage['arrival_rate']:g} sessions/s"
        else:
            spawn = stage.get("spawn_rate", max(stage["users"], 1))
            yield f"{span}  {stage['users']} users (spawning {spawn:g}/s)"
        start += stage["duration_s"]
    if len(stages) > max_rows:
        yield f"  ... {len(stages) - max_rows} more stages"
    if is_open:
        mean = _mean_rate(rates, scenario.duration_s)
        yield f"  on average {mean:.4g} sessions/s, about {mean * scenario.duration_s:.0f} sessions"
    tasks, requests, think = estimate
    yield (f"Sessions: about {tasks:.3g} tasks ({requests:.3g} requests) and {think:.3g} s of think time each "
           f"(from 500 drawn); length {_describe(scenario.session.get('length'))}, think time "
           f"{_describe(scenario.session.get('think_time_s'))}; one {SESSION_HEADER} header a session")
    total = sessions.by_weight.total or 1.0
    yield f"Tasks ({len(scenario.tasks)}):"
    for task in scenario.tasks[:max_rows]:
        weight = task.get("weight", 1)
        yield f"  {task['name']}  weight {weight:g} ({100.0 * weight / total:.1f} %)"
        for step in task["steps"]:
            query = "&".join(f"{k}={v}" for k, v in step.get("query", {}).items())
            expect = f"  expect {step['expect_status']}" if "expect_status" in step else ""
            body = "  + JSON body" if "json" in step else ""
            yield f"    {step['method']} {step['path']}{'?' + query if query else ''}{body}{expect}"
    if len(scenario.tasks) > max_rows:
        yield f"  ... {len(scenario.tasks) - max_rows} more tasks"
    session = scenario.session
    if "transitions" in session:
        yield "Chain:" + (" ($end ignored: the session length decides)" if "length" in session else "")
        yield f"  start -> {_row_text(session['start']) if 'start' in session else 'by weight'}"
        rows = list(session["transitions"].items())
        for source, row in rows[:max_rows]:
            yield f"  {source} -> {_row_text(row) if row else '(no row: ends the session)'}"
        if len(rows) > max_rows:
            yield f"  ... {len(rows) - max_rows} more rows"
    else:
        yield "Chain: none (each task drawn by weight)"
    if scenario.assertions:
        yield "Assertions:"
        for assertion in scenario.assertions:
            where = f"task {assertion['task']!r}" if "task" in assertion else "all requests"
            yield f"  {assertion['metric']} of {where} below {assertion['below']:g}"
    else:
        yield "Assertions: none"


def _row_text(row: Mapping[str, float], top: int = 8) -> str:
    ranked = sorted(row.items(), key=lambda item: -item[1])
    text = ", ".join(f"{name} {100.0 * p:.1f} %" for name, p in ranked[:top])
    return text + (f", ... {len(ranked) - top} more" if len(ranked) > top else "")


def _describe(spec: Mapping[str, Any] | None) -> str:
    if spec is None:
        return "not given"
    kind = spec["kind"]
    if kind == "constant":
        return f"{spec['value']:g}"
    if kind == "uniform":
        return f"uniform {spec['low']:g}-{spec['high']:g}"
    if kind == "exponential":
        return f"exponential, mean {spec['mean']:g}"
    if kind == "lognormal":
        return f"lognormal, median {spec['median']:g}, sigma {spec['sigma']:g}"
    values = spec["values"]
    return f"empirical over {len(values)} values ({min(values):g}-{max(values):g})"
