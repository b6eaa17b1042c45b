"""The generated load test's own work a request, against Locust's own cost a request (issue 13).

A generated locustfile does some work of its own for each request: draw the session's
chain and think times, draw the named generators' values, fill the path, query, header and
JSON templates. The target: at most 5 % of what Locust itself spends a request.

* **Locust's cost a request**: real headless runs (``run_locust``, ``FastHttpUser``) of a
  closed-model scenario with no think time against a minimal HTTP/1.1 server on loopback,
  in their own process: the CPU time that process used (``RUSAGE_CHILDREN``) in a long run
  less a 2 s one, over the requests it sent more (start-up cancels out). It includes the
  generated code's own work, so the share below errs high.
* **The generated code's own work a request**: the same sampler and the same step objects the
  locustfile runs (``perfsdk.testgen.locust_runner``'s ``_Sessions``, ``_generators``,
  ``_Values``, ``_Step``: copied verbatim into every locustfile), driven here for whole
  sessions as ``_run_session`` drives them, with a client that sends nothing.

    .venv/bin/python benches/eval/testgen_overhead.py            # about 30 s
    .venv/bin/python benches/eval/testgen_overhead.py --quick    # the test suite's run
"""

from __future__ import annotations

import argparse
import random
import resource
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote_plus

from perfsdk.testgen import Scenario, run_locust
from perfsdk.testgen import locust_runner as runner

SCENARIO = {  # a replay's shape: a chain of three routes, path and query parameters, a JSON body
    "version": 1, "name": "overhead",
    "load": {"model": "closed", "stages": [{"duration_s": 10, "users": 8, "spawn_rate": 100}]},
    "generators": {"pid": {"kind": "choice", "values": [str(i) for i in range(500)]},
                   "q": {"kind": "choice", "values": ["red", "blue shoes", "gift/card"], "weights": [3, 2, 1]},
                   "n": {"kind": "int", "low": 1, "high": 5}},
    "tasks": [
        {"name": "home", "steps": [{"method": "GET", "path": "/"}]},
        {"name": "product", "steps": [{"method": "GET", "path": "/products/{pid}"}]},
        {"name": "search", "steps": [{"method": "GET", "path": "/search", "query": {"q": "{q}"}}]},
        {"name": "cart", "steps": [{"method": "POST", "path": "/cart/{pid}", "json": {"qty": "{n}"}}]},
    ],
    "session": {"start": {"home": 0.7, "search": 0.3},
                "transitions": {"home": {"product": 0.6, "search": 0.3, "$end": 0.1},
                                "search": {"product": 0.8, "$end": 0.2},
                                "product": {"cart": 0.3, "product": 0.4, "$end": 0.3},
                                "cart": {"home": 0.2, "$end": 0.8}},
                "think_time_s": {"kind": "constant", "value": 0.0}},
}


class _Ok(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real service
    disable_nagle_algorithm = True  # no 40 ms stalls between the header and the body
    wbufsize = 1 << 16  # one write an answer (flushed after each request)

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # Locust drops its connections when it stops: nothing to report


def locust_run(scenario: Scenario, seconds: float) -> tuple[float, int]:
    """(CPU seconds of the Locust process, requests sent) for a headless run of ``seconds``."""
    server = _Server(("127.0.0.1", 0), _Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        result = run_locust(scenario, f"http://127.0.0.1:{server.server_port}", duration_s=seconds, seed=1)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    finally:
        server.shutdown()
        thread.join(timeout=5)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), result.requests


def locust_cpu_per_request(scenario: Scenario, seconds: float) -> tuple[float, int]:
    """(CPU µs a request, requests) of Locust: a short run and a long one, the difference over
    the difference (Locust's start-up -- imports, spawning -- cancels out)."""
    short_cpu, short_requests = locust_run(scenario, 2.0)
    long_cpu, long_requests = locust_run(scenario, seconds)
    return (long_cpu - short_cpu) / max(long_requests - short_requests, 1) * 1e6, long_requests - short_requests


def generated_work_per_request(scenario: Scenario, sessions: int) -> float:
    """µs a request of the generated code's own work: whole sessions as ``_run_session`` runs
    them (a seeded generator, the session header, the chain, think times, values, templates)."""
    data = scenario.data
    plans = runner._Sessions(data)
    generators = data.get("generators", {})
    counters: dict = {}
    draws = runner._generators(generators, str, counters)
    path_draws = runner._generators(generators, runner._path_segment, counters)
    query_draws = runner._generators(generators, quote_plus, counters)
    tasks = [[runner._Step(step) for step in task["steps"]] for task in data["tasks"]]
    requests = 0
    started = time.perf_counter()
    for index in range(sessions):
        rng = random.Random(1_000_003 + index)
        headers = {runner.SESSION_HEADER: "%032x" % rng.getrandbits(128)}
        values = runner._Values(draws, rng)
        path_values, query_values = runner._Values(path_draws, rng), runner._Values(query_draws, rng)
        for position, task_index in enumerate(plans.plan(rng)):
            if position:
                plans.think(rng)
            for step in tasks[task_index]:
                step.url(path_values, query_values)
                step.headers_for(values, headers)
                step.body_for(values)
                requests += 1
    return (time.perf_counter() - started) / max(requests, 1) * 1e6


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 4 s run (the test suite's)")
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args(argv)
    scenario = Scenario.from_dict(SCENARIO)
    seconds = 4.0 if args.quick else args.seconds
    own = min(generated_work_per_request(scenario, 2_000 if args.quick else 20_000) for _ in range(3))
    locust_us, requests = locust_cpu_per_request(scenario, seconds)
    share = own / locust_us
    print(f"Locust (FastHttpUser, headless, in its own process): {locust_us:.0f} µs of CPU a request "
          f"({requests:,} requests more in {seconds:g} s than in 2 s)")
    print(f"the generated code's own work: {own:.1f} µs a request = {share:.1%} of Locust's (target <= 5 %)")
    return {"locust_us": locust_us, "own_us": own, "share": share, "requests": requests}


if __name__ == "__main__":
    main()
