"""TrafficModel on traffic recorded from a real service: simulated shoppers with a known chain,
over real HTTP, exported by perfsdk -- what it learns is checked against the truth."""

from __future__ import annotations

import json
import re
import urllib.request
from collections import Counter

import numpy as np
import pyarrow as pa
import pytest

from perfsdk.demo.serve import recorded_shop
from perfsdk.demo.users import CHAIN, Shoppers
from perfsdk.export.schema import SPANS
from perfsdk.testgen import Scenario
from perfsdk.testgen.model import TrafficModel, route_durations

pytest.importorskip("opentelemetry.instrumentation.flask")

ROUTES = {"home": "GET /", "search": "GET /search", "product": "GET /products/<int:pid>", "cart": "POST /cart/<int:pid>",
          "checkout": "POST /checkout"}


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return tmp_path_factory.mktemp("spans")


@pytest.fixture(scope="module")
def recorded(export):
    """~8 s of shoppers (20 sessions a second) against the shop, exported."""
    with recorded_shop(str(export), products=300) as shop:
        report = Shoppers(shop.url, rate=20, seconds=8, think_median_s=0.05, products=300, seed=3).run()
        leak = urllib.request.Request(shop.url + "/search?q=mug&email=alice%40example.com",
                                      headers={"X-Session-Id": "one-off"})
        urllib.request.urlopen(leak, timeout=10).read()
    return TrafficModel.from_arrow(export), report


def test_it_learns_the_sessions_the_mix_and_the_chain(recorded):
    model, report = recorded
    assert report.errors == 0
    assert model.sessions == report.sessions + 1  # + the one-off request
    counts = {r.key: r.count for r in model.routes}
    assert counts[ROUTES["search"]] == report.pages["search"] + 1
    assert all(counts[ROUTES[page]] == n for page, n in report.pages.items() if page != "search")
    learned = model.transition_probabilities()
    index = {r.key: i for i, r in enumerate(model.routes)}
    for page, row in CHAIN.items():
        i = index[ROUTES[page]]
        seen = model.transitions[i].sum()
        if seen < 60:
            continue
        truth = {ROUTES[p]: q / (1 - row.get("$end", 0)) for p, q in row.items() if p != "$end"}
        l1 = sum(abs(learned[i, index[k]] - truth.get(k, 0.0)) for k in index)
        assert l1 < 6 / np.sqrt(seen), (page, l1, seen)  # sampling error, a few standard errors
    think_median = float(np.median(model.think_times_s))
    assert 0.045 < think_median < 0.15  # 50 ms of thinking, plus the client's own time (a busy machine's)
    assert 14 < model.session_rate < 26  # 20 sessions a second (Poisson; over the recorded window)


def test_route_durations_are_the_spans_the_model_summarises(recorded, export):
    from perfsdk.export import read

    model, _ = recorded
    durations = route_durations(read(export, table="spans"))
    assert sorted(durations) == sorted(r.key for r in model.routes)
    for route in model.routes:
        assert len(durations[route.key]) == route.count
        assert np.percentile(durations[route.key], 95) == pytest.approx(route.p95_ms)


def test_it_learns_parameter_values_but_never_a_redacted_one(recorded):
    model, _ = recorded
    product = next(r for r in model.routes if r.key == ROUTES["product"])
    assert product.path_params["pid"].most_common(1)[0][0] == "1"  # Zipf: product 1 is the most popular
    search = next(r for r in model.routes if r.key == ROUTES["search"])
    assert set(search.query_params["q"]) >= {"mug", "lamp"}
    assert search.query_params["email"] == {}  # its value was redacted before it reached the disk
    text = json.dumps([model.generate(v).data for v in ("replay", "flash_sale", "error_paths")])
    assert "alice" not in text and "example.com" not in text
    assert "alice" not in json.dumps(model.profile())


def test_replay_and_variants_are_valid_scenarios(recorded):
    model, _ = recorded
    replay = model.generate("replay", duration_s=20, stages=4)
    assert isinstance(replay, Scenario) and replay.duration_s == pytest.approx(20)
    sessions = sum(s["arrival_rate"] * s["duration_s"] for s in replay.stages)
    assert sessions == pytest.approx(model.sessions, rel=1e-3)  # every recorded session, compressed in time
    assert {t["name"] for t in replay.tasks} == {r.key for r in model.routes}
    product_step = next(t for t in replay.tasks if t["name"] == ROUTES["product"])["steps"][0]
    pid = product_step["path"].removeprefix("/products/{").removesuffix("}")
    assert pid.startswith("pid") and replay.generators[pid]["kind"] == "choice"

    flash = model.generate("flash_sale", duration_s=30, stages=6, spike=5)
    rates = [s["arrival_rate"] for s in flash.stages]
    assert min(rates[2:4]) > 2 * max(rates[:2] + rates[4:])  # the middle third spikes
    assert len(flash.generators[pid]["values"]) == 3  # on the few hottest items
    cold = model.generate("cold_cache")
    assert cold.generators[pid]["kind"] == "sequence"
    long = model.generate("long_sessions")
    assert np.mean(long.session["length"]["values"]) > 2 * np.mean(replay.session["length"]["values"])
    errors = model.generate("error_paths")
    assert "not-a-valid-value" in errors.generators[pid]["values"]
    with pytest.raises(ValueError, match="variant must be one of"):
        model.generate("chaos")


def test_a_table_without_server_spans_is_a_clear_error():
    empty = pa.Table.from_pylist([], schema=SPANS)
    with pytest.raises(ValueError, match="no HTTP server spans"):
        TrafficModel.from_table(empty)


def test_without_route_templates_values_in_paths_become_parameters():
    from perfsdk.export.redact import Redactor

    redact = Redactor()
    rows = []
    for i, path in enumerate(["/orders/12345", "/orders/777", "/users/alice@example.com/cart", "/health"]):
        attributes = redact({"http.request.method": "GET", "http.target": path, "session.id": f"s{i}"})
        rows.append({"trace_id": f"{i:032x}", "span_id": f"{i:016x}", "name": "GET", "kind": "SERVER",
                     "start_time": i * 10**9, "end_time": i * 10**9 + 10**6, "duration_ms": 1.0,
                     "status_code": "UNSET", "service.name": "shop", "attributes": list(attributes.items())})
    model = TrafficModel.from_table(pa.Table.from_pylist(rows, schema=SPANS))
    assert sorted(r.key for r in model.routes) == ["GET /health", "GET /orders/{id}", "GET /users/{value}/cart"]
    orders = next(r for r in model.routes if r.key == "GET /orders/{id}")
    assert set(orders.path_params["id"]) == {"12345", "777"}
    assert "alice" not in json.dumps(model.profile()) and "alice" not in model.generate().to_json()


def test_the_cli_writes_a_scenario_and_runs_it_or_says_what_is_wrong(recorded, export, tmp_path, capsys):
    from perfsdk.cli import main

    out = tmp_path / "replay.json"
    assert main(["testgen", "--from", str(export), "--out", str(out), "--duration", "4"]) == 0
    scenario = Scenario.load(out)
    assert scenario.duration_s == pytest.approx(4) and len(scenario.tasks) == len(recorded[0].routes)
    assert main(["testgen", "--from", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.json")]) == 2
    assert main(["testgen", "--from", str(export), "--out", str(tmp_path / "y.json"), "--variant", "chaos"]) == 2
    assert "no such file" in capsys.readouterr().err and not list(tmp_path.glob("[xy].json"))
    assert main(["loadtest", str(out), "--dry-run"]) == 0
    assert "open model" in capsys.readouterr().out
    results = tmp_path / "results.json"
    with recorded_shop(None, products=300) as shop:
        status = main(["loadtest", str(out), "--host", shop.url, "--duration", "3", "--json-out", str(results)])
    assert status in (0, 1) and json.loads(results.read_text())["requests"] > 0  # 1: an assertion failed
    assert main(["loadtest", str(tmp_path / "missing.json"), "--host", "http://127.0.0.1:9"]) == 2


def _model(requests: list[tuple[str, str, str | None, float]]) -> TrafficModel:
    """A model of server spans: (method, target, route template or None, start in seconds)."""
    rows = []
    for i, (method, target, route, start_s) in enumerate(requests):
        attributes = {"http.request.method": method, "http.target": target, "session.id": f"s{i // 5}"}
        if route is not None:
            attributes["http.route"] = route
        start = int(start_s * 1e9)
        rows.append({"trace_id": f"{i:032x}", "span_id": f"{i:016x}", "name": f"{method} {route or target}",
                     "kind": "SERVER", "start_time": start, "end_time": start + 10**6, "duration_ms": 1.0,
                     "status_code": "UNSET", "service.name": "shop", "attributes": list(attributes.items())})
    return TrafficModel.from_table(pa.Table.from_pylist(rows, schema=SPANS))


def test_one_odd_request_is_left_out_or_bounded_and_noted_never_fatal():
    normal = [("GET", f"/products/{i % 50}", "/products/<int:pid>", i * 0.5) for i in range(200)]
    probe = "/wp-content/plugins/" + "x" * 200 + "/readme.txt"
    odd = [("GET", probe, None, 10.0), ("GET", "/search?utm=" + "a" * 1001, "/search", 11.0),
           ("GET", "/s?" + "&".join(f"k{j}={j}" for j in range(60)), "/s", 12.0),
           ("PROPFIND", "/dav/", None, 13.0), ("GET", "http://proxy.example/x?y=1", None, 14.0),
           ("GET", "/q?gr%C3%B6%C3%9Fe=1", "/q", 15.0)]
    scenario = _model(normal + odd).generate()  # it validates
    tasks = {t["name"]: t["steps"][0] for t in scenario.tasks}
    assert not any("wp-content" in name for name in tasks) and "GET /products/<int:pid>" in tasks
    search = tasks["GET /search"]["query"]["utm"].strip("{}")
    assert scenario.generators[search]["kind"] == "sequence"  # its one value was too long to keep
    assert len(tasks["GET /s"]["query"]) == 50 and "k0" in tasks["GET /s"]["query"]
    assert tasks["PROPFIND /dav/"]["method"] == "GET"
    assert tasks["GET /x"] == {"method": "GET", "path": "/x", "query": {"y": "{y}"}}  # not /http://proxy...
    assert all(name.isascii() for name in scenario.generators)  # ?größe=1 has a generator all the same
    notes = "\n".join(scenario.metadata["notes"])
    assert "GET /wp-content/plugins/xxx" in notes and "(235 characters): left out (1 request)" in notes
    assert "GET /search: ?utm: 1 of its 1 values left out, longer than 1000 characters" in notes
    assert "GET /s: 10 of its 60 query parameters left out" in notes
    assert "PROPFIND /dav/: PROPFIND is not a method a scenario sends; sent as GET" in notes
    assert max(len(note) for note in scenario.metadata["notes"]) < 300


def test_one_request_or_a_few_milliseconds_of_traffic_make_a_valid_scenario():
    one = _model([("GET", "/cart", None, 0.0)]).generate()
    assert one.duration_s == 1.0 and one.stages == [{"duration_s": 1.0, "arrival_rate": 1.0}]
    burst = _model([("GET", "/cart", None, i * 5e-5) for i in range(20)])  # 20 requests in a millisecond
    assert burst.generate().duration_s == 1.0
    assert len(burst.generate(duration_s=4.5).stages) == 4  # stages of a second or more


@pytest.mark.parametrize("duration", [0.5, 0.999, 1e-4, 0.0, -5.0, float("inf"), float("nan")])
def test_a_duration_under_a_second_or_not_finite_is_refused_naming_it(duration):
    """inf failed deep inside as "cannot convert float NaN to integer", and 0.5 gave a 0.5 s stage
    though every stage lasts a second at least (MIN_STAGE_S)."""
    model = _model([("GET", "/cart", None, i * 0.5) for i in range(20)])
    with pytest.raises(ValueError, match=re.escape(f"duration_s must be a finite number >= 1, got {duration!r}")):
        model.generate(duration_s=duration)
    assert model.generate(duration_s=1.0).stages == [{"duration_s": 1.0, "arrival_rate": 4.0}]  # the least


def test_when_no_route_fits_a_scenario_the_error_says_why():
    model = _model([("GET", "/static/" + "a" * 250, None, i) for i in range(5)])
    with pytest.raises(ValueError, match=r"no route of the recorded traffic fits in a scenario: GET /static/a+\.\.\. "
                                         r"\(262 characters\): left out \(5 requests\), its key is longer"):
        model.generate()


def _spans(rows: list[dict], start_s: float = 1.7e9) -> pa.Table:
    """Server spans from (attributes, and optionally name, start_s, service) rows."""
    out = []
    for i, row in enumerate(rows):
        start = int((start_s + row.get("start_s", i)) * 1e9)
        out.append({"trace_id": f"{i + 1:032x}", "span_id": f"{i + 1:016x}", "name": row.get("name", "GET"),
                    "kind": "SERVER", "start_time": start, "end_time": start + 10**6, "duration_ms": 1.0,
                    "status_code": "UNSET", "service.name": row.get("service", "shop"),
                    "attributes": list(row["attributes"].items())})
    return pa.Table.from_pylist(out, schema=SPANS)


def test_without_a_target_the_path_comes_from_url_full_or_the_span_name_templated():
    """The raw span name was the route: every id its own route ("GET GET /orders/100000"), and a
    token or a query's values in the name reached the LLM prompt."""
    rows = [{"attributes": {"http.request.method": "GET", "url.full": f"https://shop.example/orders/{100 + k}?x=1",
                            "session.id": "a"}, "name": "GET"} for k in range(3)]
    rows += [{"attributes": {"http.request.method": "GET", "session.id": "b"}, "name": f"GET /orders/{200 + k}"}
             for k in range(3)]
    rows += [{"attributes": {"http.request.method": "GET", "session.id": "c"},
              "name": "GET /password-reset/Tk3n9aZq81LmPw2x7"},
             {"attributes": {"http.request.method": "POST", "http.route": "", "session.id": "c"},
              "name": "POST /pay?card=4111111111111111&cvv=123"}]
    model = TrafficModel.from_table(_spans(rows))
    assert sorted(r.key for r in model.routes) == ["GET /orders/{id}", "GET /password-reset/{token}", "POST /pay"]
    orders = next(r for r in model.routes if r.key == "GET /orders/{id}")
    assert orders.count == 6 and set(orders.path_params["id"]) == {"100", "101", "102", "200", "201", "202"}
    profile = json.dumps(model.profile())
    assert "Tk3n9aZq81LmPw2x7" not in profile and "cvv=123" not in profile and "4111" not in profile


def test_url_query_is_the_query_of_url_path():
    rows = [{"attributes": {"http.request.method": "GET", "http.route": "/search", "url.path": "/search",
                            "url.query": f"q=mug{k % 3}", "session.id": f"s{k}"}} for k in range(6)]
    rows.append({"attributes": {"http.request.method": "GET", "http.route": "/search", "http.target": "/search?q=cup",
                                "url.query": "q=ignored", "session.id": "t"}})
    model = TrafficModel.from_table(_spans(rows))
    assert dict(model.routes[0].query_params["q"]) == {"mug0": 2, "mug1": 2, "mug2": 2, "cup": 1}
    assert model.generate().tasks[0]["steps"][0]["query"] == {"q": "{q}"}


def test_spans_of_two_services_are_refused_naming_them_unless_one_is_chosen():
    """A frontend and the backend it calls made one user chain of both services' routes."""
    rows = []
    for k in range(6):
        rows.append({"attributes": {"http.request.method": "GET", "http.target": f"/products/{k}",
                                    "session.id": f"s{k}"}, "service": "frontend", "start_s": k})
        rows.append({"attributes": {"http.request.method": "GET", "http.target": f"/stock/{k}",
                                    "session.id": f"s{k}"}, "service": "inventory", "start_s": k + 0.01})
    table = _spans(rows)
    with pytest.raises(ValueError, match=re.escape("2 services (frontend (6 requests), inventory (6 requests))")):
        TrafficModel.from_table(table)
    model = TrafficModel.from_table(table, service="frontend")
    assert [r.key for r in model.routes] == ["GET /products/{id}"] and model.service == "frontend"
    with pytest.raises(ValueError, match="service 'nope'"):
        TrafficModel.from_table(table, service="nope")


def test_requests_no_session_or_client_tells_apart_are_a_session_each_and_noted():
    """All of them were one session "client:?", which the runner then cut at 1,000 requests."""
    rows = [{"attributes": {"http.request.method": "GET", "http.target": "/"}, "start_s": k * 0.1} for k in range(1500)]
    model = TrafficModel.from_table(_spans(rows))
    assert model.sessions == 1500
    notes = model.generate().metadata["notes"]
    assert any("1,500 requests with no session key" in note and "each trace taken as a session" in note
               for note in notes)


def test_a_session_longer_than_the_runner_sends_is_noted():
    from perfsdk.testgen import locust_runner
    from perfsdk.testgen.scenario import MAX_SESSION_REQUESTS

    assert locust_runner._Sessions.MAX_TASKS == MAX_SESSION_REQUESTS
    rows = [{"attributes": {"http.request.method": "GET", "http.target": "/", "session.id": "bot"},
             "start_s": k * 0.01} for k in range(MAX_SESSION_REQUESTS + 5)]
    notes = TrafficModel.from_table(_spans(rows)).generate().metadata["notes"]
    assert "1 of 1 sessions longer than the 1000 requests a simulated session sends (the longest 1005): " \
           "they are cut there" in notes


def test_a_span_dated_at_the_epoch_is_left_out_and_noted():
    """One span of a clock not yet set stretched the window to 54 years and the arrivals to nothing."""
    rows = [{"attributes": {"http.request.method": "GET", "http.target": "/", "session.id": f"s{k}"},
             "start_s": k * 0.5} for k in range(200)]
    clean = TrafficModel.from_table(_spans(rows))
    with_epoch = TrafficModel.from_table(pa.concat_tables([_spans(rows), _spans(rows[:1], start_s=0.0)]))
    assert with_epoch.window_s == clean.window_s and with_epoch.requests == 200
    assert with_epoch.generate().stages == clean.generate().stages
    assert "1 request left out, dated before 2000 among 200 later: a clock not yet set" in \
        with_epoch.generate().metadata["notes"]


def _keys(rows: list[dict]) -> dict[str, int]:
    return {r.key: r.count for r in TrafficModel.from_table(_spans(rows)).routes}


def test_a_query_with_no_path_takes_the_path_from_the_span_name():
    """The target "?q=1" was not empty, so the name was not used, and the route was "GET " (empty)."""
    rows = [{"attributes": {"http.request.method": "GET", "url.query": "q=1", "session.id": "a"},
             "name": "GET /search"},
            {"attributes": {"http.request.method": "GET", "url.full": "https://shop.example?q=2", "session.id": "a"},
             "name": "GET /search"},
            {"attributes": {"http.request.method": "GET", "http.target": "?q=3", "session.id": "a"},
             "name": "GET /search"}]
    model = TrafficModel.from_table(_spans(rows))
    assert [(r.key, r.count) for r in model.routes] == [("GET /search", 3)]
    assert set(model.routes[0].query_params["q"]) == {"1", "2", "3"}


def test_a_span_name_that_is_no_http_path_is_left_out_and_noted():
    """"GET" (today's name of a span with no route), "process_payment", "SELECT orders" became routes."""
    names = ["GET", "process_payment", "SELECT orders", "grpc.health.v1.Health/Check", "HTTP GET"]
    rows = [{"attributes": {"session.id": "a"}, "name": name} for name in names]
    rows += [{"attributes": {"session.id": "b"}, "name": "get /x/1"},
             {"attributes": {"session.id": "b", "url.query": "q=1"}, "name": "process_payment"}]
    model = TrafficModel.from_table(_spans(rows))
    assert [r.key for r in model.routes] == ["GET /x/{id}"]
    assert "6 server spans with no HTTP path (e.g. 'GET'): left out" in model.notes
    assert "6 server spans with no HTTP path" in "\n".join(model.generate().metadata["notes"])
    with pytest.raises(ValueError, match=r"none of the 5 server spans has an HTTP path .*e\.g\. 'GET'"):
        TrafficModel.from_table(_spans(rows[:5]))


def test_the_method_in_the_span_name_is_the_requests_when_no_attribute_says_it():
    rows = [{"attributes": {"session.id": "a"}, "name": "POST /orders/5"},
            {"attributes": {"session.id": "a", "http.target": "/orders/6"}, "name": "delete /orders/6"},
            {"attributes": {"session.id": "a", "http.request.method": "PUT"}, "name": "POST /orders/7"},
            {"attributes": {"session.id": "a", "http.target": "/orders/8"}, "name": "orders"}]
    assert _keys(rows) == {"POST /orders/{id}": 1, "DELETE /orders/{id}": 1, "PUT /orders/{id}": 1,
                           "GET /orders/{id}": 1}


def test_spans_before_2000_kept_when_half_or_more_are_noted():
    rows = [{"attributes": {"http.request.method": "GET", "http.target": "/", "session.id": f"s{k}"},
             "start_s": k * 0.5} for k in range(4)]
    model = TrafficModel.from_table(pa.concat_tables([_spans(rows[:2]), _spans(rows, start_s=0.0)]))
    assert model.requests == 6
    assert "4 requests dated before 2000 among 2 later: kept, being half or more of them (a clock not yet set " \
           "would stretch the arrival window)" in model.notes
    assert TrafficModel.from_table(_spans(rows, start_s=0.0)).notes == []  # all of them early: a test clock


def test_a_table_without_trace_ids_makes_a_session_of_each_request_and_one_without_a_column_says_which():
    rows = [{"attributes": {"http.request.method": "GET", "http.target": "/"}, "start_s": k * 0.1} for k in range(5)]
    table = _spans(rows).drop_columns(["trace_id"])
    model = TrafficModel.from_table(table)
    assert model.sessions == 5
    assert any("each request taken as a session (no trace_id column)" in note for note in model.notes)
    assert sorted(route_durations(table)) == ["GET /"]
    with pytest.raises(ValueError, match="the spans table lacks the column attributes"):
        TrafficModel.from_table(_spans(rows).drop_columns(["attributes"]))


def test_an_empty_service_name_is_no_second_service_and_an_unknown_one_lists_those_there(tmp_path):
    from perfsdk.export import read

    rows = [{"attributes": {"http.request.method": "GET", "http.target": "/", "session.id": "a"},
             "service": "shop" if k < 3 else ""} for k in range(4)]
    table = _spans(rows)
    assert TrafficModel.from_table(table).requests == 4
    with pytest.raises(ValueError, match=re.escape("no HTTP server spans of service 'shp' to learn from: "
                                                   "the server spans are of 'shop'")):
        TrafficModel.from_table(table, service="shp")


#: 30 users' names: lowercase words, as a route's fixed words are (no digit, nothing a pattern sees as a value);
#: "qz" makes them text no profile holds otherwise
NAMES = [a + b + "qz" for a in ("al", "bo", "ca", "de", "ed") for b in ("ice", "b", "rol", "ve", "na", "x")]


def test_a_path_position_of_many_names_is_a_parameter_and_fixed_route_words_stay():
    """``/users/alice/orders``: a user's name was a route word, a route of its own, and in the LLM's
    prompt. A position after one prefix taking many distinct texts is a parameter; a route table's
    words -- few, or each requested again and again -- stay."""
    rows = []
    for k, name in enumerate(NAMES):
        for path in (f"/users/{name}/orders", f"/users/{name}", f"/api/v1/users/{k}/orders", "/cart",
                     f"/categories/{('lamps', 'mugs', 'rugs')[k % 3]}"):
            rows.append({"attributes": {"http.request.method": "GET", "http.target": path, "session.id": name}})
    resources = [f"{word}s" for word in ("order", "user", "cart", "item", "invoice", "refund", "coupon", "review",
                                         "address", "payment", "shipment", "store", "brand", "tag", "image",
                                         "report", "webhook", "token", "plan", "price", "tax", "quote")]
    for k in range(30):  # 22 resources of an API, each requested 30 times: more requests each than resources
        rows += [{"attributes": {"http.request.method": "GET", "http.target": f"/api/v2/{r}", "session.id": f"a{k}"}}
                 for r in resources]
    model = TrafficModel.from_table(_spans(rows))
    assert sorted(r.key for r in model.routes) == sorted(
        ["GET /users/{name}/orders", "GET /users/{name}", "GET /api/v1/users/{id}/orders", "GET /cart",
         "GET /categories/lamps", "GET /categories/mugs", "GET /categories/rugs"]
        + [f"GET /api/v2/{r}" for r in resources])
    orders = next(r for r in model.routes if r.key == "GET /users/{name}/orders")
    assert orders.path_params["name"] == Counter(NAMES)
    assert "path segments taken as values ({name}): after /users/ (30 distinct, 30 of them requested once or " \
           "twice)" in model.notes
    scenario = model.generate()
    step = next(t for t in scenario.tasks if t["name"] == "GET /users/{name}/orders")["steps"][0]
    assert set(scenario.generators[step["path"].split("/")[2].strip("{}")]["values"]) == set(NAMES)  # replayed
    assert not any(name in json.dumps(model.profile()) for name in NAMES)
    assert sorted(route_durations(_spans(rows))) == sorted(r.key for r in model.routes)  # the same keys


#: 30 resources of an API, no digit in their names
RESOURCES = [f"{word}s" for word in (
    "order", "user", "cart", "item", "invoice", "refund", "coupon", "review", "address", "payment", "shipment", "store",
    "brand", "tag", "image", "report", "webhook", "token", "plan", "price", "tax", "quote", "label", "badge", "bundle",
    "carrier", "channel", "domain", "event", "feed")]
#: 150 more names of users, as ``NAMES`` are made
MORE_NAMES = [a + b + c + "qz" for a in ("al", "bo", "ca", "de", "ed") for b in ("ice", "b", "rol", "ve", "na", "x")
              for c in ("y", "w", "o", "u", "e")]


def _get(target: str, session: str = "s") -> dict:
    return {"attributes": {"http.request.method": "GET", "http.target": target, "session.id": session}}


@pytest.mark.parametrize(("prefix", "words", "requests_each"), [
    ("/api/v2/", 22, 10), ("/api/v2/", 22, 20), ("/api/v2/", 30, 10), ("/api/v2/", 30, 20), ("/", 20, 15)])
def test_a_route_table_stays_routes_whatever_the_recording_size(prefix, words, requests_each):
    """22 endpoints requested 20 times each were one ``GET /api/v2/{name}`` (30 times each: 22 routes):
    whether a position took values hung on how many requests were recorded. A route table's words
    each recur, and are kept (noted: names that recur as often look the same)."""
    rows = [_get(prefix + word, f"s{k}") for k in range(requests_each) for word in RESOURCES[:words]]
    model = TrafficModel.from_table(_spans(rows))
    assert sorted(r.key for r in model.routes) == sorted(f"GET {prefix}{word}" for word in RESOURCES[:words])
    assert not [note for note in model.notes if "taken as values" in note]
    assert f"path segments kept as route words, though many after one prefix: after {prefix} ({words} distinct): " \
           "most of them requested 3 times or more" in " ".join(model.notes)


@pytest.mark.parametrize(("case", "why"), [
    ("a few requests each", "36 distinct, 18 of them requested once or twice"),
    ("sub-paths, a few requests each", "30 distinct, 30 of them requested once or twice"),
    ("more than a route table", "150 distinct, more than fixed words would be")])
def test_users_with_a_few_requests_each_or_many_are_a_parameter(case, why):
    """Values have a long tail (many seen once or twice), under sub-paths too, and more texts after one
    prefix than a route table holds are values however often each was requested."""
    if case == "a few requests each":
        names = (NAMES + MORE_NAMES)[:36]
        rows = [_get(f"/users/{name}", name) for k, name in enumerate(names) for _ in range((1, 2, 3, 5)[k % 4])]
        expected = {"GET /users/{name}": names}
    elif case.startswith("sub-paths"):
        names = NAMES
        rows = [_get(f"/users/{name}/{page}", name) for name in names for page in ("orders", "profile")]
        expected = {"GET /users/{name}/orders": names, "GET /users/{name}/profile": names}
    else:
        names = MORE_NAMES
        rows = [_get(f"/users/{name}", name) for name in names for _ in range(5)]
        expected = {"GET /users/{name}": names}
    model = TrafficModel.from_table(_spans(rows))
    assert {r.key: sorted(r.path_params["name"]) for r in model.routes} == \
        {key: sorted(values) for key, values in expected.items()}
    assert f"path segments taken as values ({{name}}): after /users/ ({why})" in model.notes
    assert not any(name in json.dumps(model.profile()) for name in names)


@pytest.mark.parametrize("shape", ["leaf", "sub-paths", "resources with actions"])
def test_words_each_requested_often_stay_routes_and_it_is_noted(shape):
    """The trade-off, pinned. 30 users each requesting ``/users/NAME`` (or its ``/orders`` and
    ``/profile``) 20 times look just like a route table: each recurs, and what follows them cannot
    tell -- 22 resources each with ``/new``, ``/edit`` and an id (``/orders/new``, ``/users/new``) have
    the shape of ``/users/alice/orders``, and a rule that took a shared sub-path for values merged such
    route tables into ``/{name}/new``. They stay routes, and the note says so."""
    if shape == "leaf":
        rows, routes, prefix = [_get(f"/users/{name}", name) for name in NAMES for _ in range(20)], 30, "/users/"
    elif shape == "sub-paths":
        rows = [_get(f"/users/{name}/{page}", name) for name in NAMES for page in ("orders", "profile") * 10]
        routes, prefix = 60, "/users/"
    else:
        rows = [_get(f"/{word}{action}", f"s{k}") for k in range(30) for word in RESOURCES[:22]
                for action in ("", "/new", "/7/edit", f"/{k}")]
        routes, prefix = 22 * 4, "/"
    model = TrafficModel.from_table(_spans(rows))
    assert len(model.routes) == routes and not [note for note in model.notes if "taken as values" in note]
    assert any(note.startswith(f"path segments kept as route words, though many after one prefix: after {prefix} ")
               and "names requested as often look the same" in note for note in model.notes)


def test_two_positions_of_values_in_one_path_keep_their_own_values():
    """``/users/{name}/repos/{name}`` and ``/orders/{id}/items/{id}``: one parameter name for two
    positions, the last one's values learned for both, so a replay sent repo names as users. A
    repeated parameter is numbered, as a scenario numbers generators (``{name_2}``)."""
    repos = MORE_NAMES[:60]
    rows = [_get(f"/users/{name}/repos/{repos[2 * k + j]}", name) for k, name in enumerate(NAMES) for j in range(2)]
    rows += [_get(f"/orders/{100 + k}/items/{k % 3}") for k in range(10)]
    model = TrafficModel.from_table(_spans(rows))
    params = {r.key: r.path_params for r in model.routes}
    assert params == {
        "GET /users/{name}/repos/{name_2}": {"name": Counter(NAMES * 2), "name_2": Counter(repos)},
        "GET /orders/{id}/items/{id_2}": {"id": Counter(str(100 + k) for k in range(10)),
                                          "id_2": Counter(str(k % 3) for k in range(10))}}
    scenario = model.generate()
    paths = {t["name"]: t["steps"][0]["path"] for t in scenario.tasks}
    user, repo = re.fullmatch(r"/users/\{(\w+)\}/repos/\{(\w+)\}", paths["GET /users/{name}/repos/{name_2}"]).groups()
    assert set(scenario.generators[user]["values"]) == set(NAMES)  # each position replays its own values
    assert set(scenario.generators[repo]["values"]) == set(repos)
    order, item = re.fullmatch(r"/orders/\{(\w+)\}/items/\{(\w+)\}", paths["GET /orders/{id}/items/{id_2}"]).groups()
    assert set(scenario.generators[order]["values"]) == {str(100 + k) for k in range(10)}
    assert set(scenario.generators[item]["values"]) == {"0", "1", "2"}
    assert sorted(route_durations(_spans(rows))) == sorted(params)  # the same keys


def test_a_bare_query_key_that_is_a_value_is_left_out_and_noted_and_a_flag_stays():
    """``/search?alice``: a query key with no value, the key itself the user's data, went into the
    LLM's prompt as a parameter's name."""
    rows = [{"attributes": {"http.request.method": "GET", "http.target": f"/search?{name}", "session.id": name}}
            for name in NAMES]
    rows += [{"attributes": {"http.request.method": "GET", "http.target": target, "session.id": "b"}}
             for target in ("/reset?Tk3n9aZq81LmPw2x7", "/reset?lang", "/find?blue+mug", "/find?sort",
                            "/docs?edit", "/docs?print&page=2", "/docs?page", "/docs?size=l&edit")]
    model = TrafficModel.from_table(_spans(rows))
    params = {r.key: sorted(r.query_params) for r in model.routes}
    assert params == {"GET /search": [], "GET /reset": ["lang"], "GET /find": ["sort"],
                      "GET /docs": ["edit", "page", "print", "size"]}
    assert "GET /search: 30 bare query keys (no '=', in 30 requests) left out as values: 30 distinct, 30 of them " \
           "requested once or twice" in model.notes
    assert "GET /reset: 1 bare query key (no '=', in 1 request) left out as values: they read as data (ids, keys, " \
           "tokens, addresses) or are no parameter name" in model.notes
    assert any(note.startswith("GET /find: 1 bare query key") for note in model.notes)
    profile = json.dumps(model.profile())
    assert not any(name in profile for name in NAMES + ["Tk3n9aZq81LmPw2x7", "blue"])
    docs = next(t for t in model.generate().tasks if t["name"] == "GET /docs")["steps"][0]
    assert list(docs["query"]) == ["edit", "print", "page", "size"]  # the order they were first sent in
