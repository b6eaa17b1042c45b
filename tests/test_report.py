"""``perfsdk report``: the HTML page's content, without a browser (tests/test_report_browser.py opens it in one).

The demo-shaped directory is built from real runs: the demo shop served on
loopback, driven by simulated shoppers over HTTP, its OpenTelemetry spans,
anomalies and the adaptive pool's and a cache's decisions exported by
``perfsdk.init(export_dir=...)``, with a fault injected and recorded as ground truth.
"""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import datetime, timezone
from html import escape
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

import perfsdk
from perfsdk.cli import main
from perfsdk.export import read
from perfsdk.report import judged_winner, write_report
from perfsdk.report.data import grouped_percentiles

PRODUCT = "GET /products/<int:pid>"


# -- building directories ----------------------------------------------------------
def record_run(export: Path, *, adaptive: bool, seed: int) -> list[dict]:
    """~6 s of shoppers against the demo shop, exported; a latency fault on the product page
    from 2.5 s to 4 s. With ``adaptive``, a cache sized every 100 gets runs alongside (the shop's
    own cache decides every 10,000: too rarely for a short run). Returns the faults injected."""
    from perfsdk.demo.serve import recorded_shop
    from perfsdk.demo.users import Shoppers

    faults: list[dict] = []
    with recorded_shop(str(export), products=300, adaptive=adaptive, seed=seed) as shop:
        def inject() -> None:
            time.sleep(2.5)
            start = time.time_ns()
            shop.shop.slow_ms["product"] = 60.0
            time.sleep(1.5)
            shop.shop.slow_ms.clear()
            faults.append({"fault": "latency spike", "route": PRODUCT, "start_ns": start, "end_ns": time.time_ns()})

        def cache_traffic() -> None:
            cache = perfsdk.AdaptiveCache(capacity=20, name="prices", controller=perfsdk.CacheController(interval=100))
            rng = np.random.default_rng(seed)
            for key in rng.zipf(1.3, 3000) % 400:
                cache.get_or_load(int(key), lambda k: k)
                time.sleep(0.0015)

        workers = [threading.Thread(target=inject)]
        if adaptive:
            workers.append(threading.Thread(target=cache_traffic))
        for w in workers:
            w.start()
        Shoppers(shop.url, rate=25, seconds=6, think_median_s=0.03, products=300, seed=seed).run()
        for w in workers:
            w.join()
    return faults


def write_ipc(path: Path, table: pa.Table) -> None:
    with ipc.new_file(str(path), table.schema) as writer:
        writer.write_table(table)


def comparison_table(root: Path) -> pa.Table:
    """A Table 1 as the demo writes it: measured rows (p50 from the runs' own spans), a row each side
    wins, a row not measured."""
    p50 = {run: float(np.percentile(read(root / run)["duration_ms"].to_numpy(), 50)) for run in ("traditional", "perfsdk")}
    rows = [
        ("p50 latency, normal load", "median of every request's server span", "ms",
         p50["traditional"], p50["perfsdk"], "lower", 200.0, 160.0),
        ("failure detection", "share of injected faults alerted on", "%", 50.0, 100.0, "higher", 82.0, 95.0),
        ("test execution time", "load test until every fault surfaced", "s", 120.0, 150.0, "lower", 120.0, 80.0),
        ("connections held", "mean pool size", "connections", None, 3.0, "lower", None, None),
    ]
    columns = list(zip(*rows))
    return pa.table({
        "row": columns[0], "compared": columns[1], "unit": columns[2],
        "traditional": pa.array(columns[3], pa.float64()), "perfsdk": pa.array(columns[4], pa.float64()),
        "better": columns[5], "paper_traditional": pa.array(columns[6], pa.float64()),
        "paper_ai": pa.array(columns[7], pa.float64()),
        "winner": [judged_winner(t, p, b) for t, p, b in zip(columns[3], columns[4], columns[5])],
    }).replace_schema_metadata({"perfsdk.demo": json.dumps({"quick": True, "seconds": 12.5, "seed": 0,
                                                             "database": "sqlite"})})


def build_demo_dir(root: Path) -> Path:
    """The layout ``perfsdk demo`` writes: comparison.arrow, faults.arrow, traditional/ and perfsdk/."""
    faults = []
    for seed, run in enumerate(("traditional", "perfsdk")):
        for f in record_run(root / run, adaptive=run == "perfsdk", seed=seed):
            faults.append(dict(f, run=run))
    write_ipc(root / "faults.arrow", pa.table({
        "fault": [f["fault"] for f in faults], "route": [f["route"] for f in faults],
        "start_ns": pa.array([f["start_ns"] for f in faults], pa.int64()),
        "end_ns": pa.array([f["end_ns"] for f in faults], pa.int64()),
        "run": [f["run"] for f in faults]}))
    write_ipc(root / "comparison.arrow", comparison_table(root))
    return root


def shared_demo_dir(tmp_path_factory) -> Path:
    """One demo directory for the whole session (this module and the browser test's)."""
    root = tmp_path_factory.getbasetemp() / "report-demo"
    done = root / ".complete"
    if not done.exists():
        pytest.importorskip("opentelemetry.instrumentation.flask")
        root.mkdir(exist_ok=True)
        build_demo_dir(root)
        done.touch()
    return root


def export_without_decisions(root: Path) -> Path:
    """A plain export: spans with exact durations (a slow stretch the live detector flags) and resources."""
    provider = TracerProvider(resource=Resource.create({"service.name": "jobs"}))
    sdk = perfsdk.init(tracer_provider=provider, export_dir=str(root), resource_interval_s=0.02)
    tracer = provider.get_tracer("t")
    t0 = time.time_ns()
    for i in range(600):  # durations set exactly, not slept: a busy machine cannot make a normal span slow
        start = t0 + i * 10**7
        slow = 500 <= i < 510  # after the default detector's learning period (388 spans)
        tracer.start_span("job", start_time=start).end(end_time=start + (30_000_000 if slow else 500_000 + i * 100))
    time.sleep(0.2)
    sdk.shutdown()
    return root


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = shared_demo_dir(tmp_path_factory)
    page = write_report(root, out=root.parent / "demo-report.html")
    return root, page.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    root = export_without_decisions(tmp_path_factory.mktemp("plain"))
    return root, write_report(root).read_text(encoding="utf-8")


# -- reading the page --------------------------------------------------------------
class Cells(HTMLParser):
    """The comparison rows' numeric cells: {column: data-value} per row, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, str]] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and a.get("class") == "comparison-row":
            self.rows.append({})
        elif tag == "td" and "data-value" in a and self.rows:
            column = [c for c in a["class"].split() if c not in ("num", "win")][0]
            self.rows[-1][column] = a["data-value"]


def section(page: str, anchor: str) -> str:
    start = page.index(f'<section id="{anchor}"')
    return page[start:page.index("</section>", start)]


# -- the demo directory ------------------------------------------------------------
def test_table_1_comes_first_and_shows_exactly_what_comparison_arrow_holds(demo):
    root, page = demo
    assert page.index('id="table-1"') < page.index('id="run-traditional"') < page.index('id="run-perfsdk"')
    table = ipc.open_file(str(root / "comparison.arrow")).read_all().to_pylist()
    parser = Cells()
    parser.feed(page)
    assert len(parser.rows) == len(table)
    for shown, row in zip(parser.rows, table):
        for column in ("traditional", "perfsdk", "paper_traditional", "paper_ai"):
            value = row[column]
            assert shown[column] == ("" if value is None else repr(value)), (row["row"], column)
    table_1 = section(page, "table-1")
    for row in table:
        assert escape(row["row"]) in table_1 and escape(row["compared"]) in table_1
    winners = [row["winner"] for row in table]
    assert (f"perfsdk better on {winners.count('perfsdk')} of 4 rows, traditional on {winners.count('traditional')}, "
            f"ties 0, not measured 1.") in table_1
    assert "traditional</td>" in table_1 and "(recorded" not in table_1  # winners honest, and as recorded
    assert '<td class="num traditional win"' in table_1  # the row traditional won is marked as its win
    assert "seconds" in table_1 and "latency spike" in table_1  # run info and the ground truth


def test_each_run_has_every_section_with_faults_shaded(demo):
    _, page = demo
    for run in ("traditional", "perfsdk"):
        body = section(page, f"run-{run}")
        for heading in ("Latency per route", "ARIMA forecast bands", "Adaptive caches", "Connection pools",
                        "Decision timeline", "Incidents"):
            assert f"<h3>{heading}" in body, (run, heading)
        assert f"{PRODUCT}: p50 and p99 latency" in body.replace("&lt;", "<").replace("&gt;", ">")
        assert body.count('class="fault"') >= 5  # the fault is shaded on the time axes
        assert "95% one-step-ahead prediction interval" in body and "ARIMA(1,0," in body
        assert "latency spike" in body
    traditional, adaptive = section(page, "run-traditional"), section(page, "run-perfsdk")
    assert "No cache decisions in this run" in traditional and "No pool decisions in this run" in traditional
    assert "cache prices: capacity" in adaptive and "cache prices: hit ratio per interval" in adaptive
    assert "pool shop-db: size" in adaptive and "pool shop-db: wait and latency per interval" in adaptive
    assert "after an interval with" in adaptive  # the decisions' explanations, in the table and the tooltips


def test_incidents_are_listed_with_their_likely_origin_and_the_fault_they_match(demo):
    root, page = demo
    for run in ("traditional", "perfsdk"):
        anomalies = read(root / run, table="anomalies")
        body = section(page, f"run-{run}")
        if anomalies.num_rows == 0:
            assert "No incidents: no anomalies in this run." in body
            continue
        incidents = body[body.index("<h3>Incidents"):]
        assert "Likely origin:" in incidents and "injected fault it overlaps" in incidents
        faults = pa.ipc.open_file(root / "faults.arrow").read_all().to_pylist()
        (fault,) = [f for f in faults if f["run"] == run]
        stamps = [t.timestamp() * 1e9 for t, s in zip(anomalies["timestamp"].to_pylist(),
                                                      anomalies["series"].to_pylist()) if s == PRODUCT and t]
        if any(fault["start_ns"] <= t <= fault["end_ns"] for t in stamps):  # flagged during the spike
            assert "latency spike (GET /products/&lt;int:pid&gt;)" in incidents


def test_the_page_is_self_contained_and_small(demo):
    _, page = demo
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "@import" not in page and "url(" not in page and "<script src" not in page
    assert len(page.encode()) < 1_000_000


# -- a plain export directory ------------------------------------------------------
def test_an_export_directory_renders_without_table_1_and_says_what_is_missing(plain):
    root, page = plain
    assert 'id="table-1"' not in page and f"Export directory {root}" in page
    assert "job: p50 and p99 latency" in page  # no server spans: by span name
    assert "spans by name (no server spans" in page
    assert "No cache decisions in this run" in page and "No pool decisions in this run" in page
    assert "No decisions in this run: nothing adaptive was sized." in page
    assert "Process resources" in page and "process.cpu.utilization" in page
    assert read(root, table="anomalies").num_rows >= 1
    assert "anomaly (live detector) and its normal band" in page and "Likely origin: &#x27;job&#x27;" in page


def test_a_run_with_spans_only_renders_every_section_saying_what_is_empty(tmp_path):
    provider = TracerProvider(resource=Resource.create({"service.name": "quiet"}))
    sdk = perfsdk.init(tracer_provider=provider, export_dir=str(tmp_path), sample_resources=False)
    for _ in range(5):
        with provider.get_tracer("t").start_as_current_span("tick"):
            pass
    sdk.shutdown()
    page = write_report(tmp_path).read_text(encoding="utf-8")
    assert "too few buckets with data to fit a model" in page
    assert "No incidents: no anomalies in this run." in page and "No decisions in this run" in page


def test_tables_with_no_rows_still_render(tmp_path):
    from perfsdk.export.schema import SPANS

    (tmp_path / "spans").mkdir()
    write_ipc(tmp_path / "spans" / "part-empty.arrow", SPANS.empty_table())
    page = write_report(tmp_path).read_text(encoding="utf-8")
    assert "No rows in any perfsdk table" in page


def test_a_recorded_winner_the_numbers_contradict_is_flagged(tmp_path):
    export_dir = tmp_path / "perfsdk"
    provider = TracerProvider()
    sdk = perfsdk.init(tracer_provider=provider, export_dir=str(export_dir), sample_resources=False)
    with provider.get_tracer("t").start_as_current_span("x"):
        pass
    sdk.shutdown()
    write_ipc(tmp_path / "comparison.arrow", pa.table({
        "row": ["p99", "recall"], "traditional": [800.0, 0.8], "perfsdk": [500.0, 0.9],
        "better": ["lower", "higher"], "winner": ["traditional", ""]}))
    page = write_report(tmp_path).read_text(encoding="utf-8")
    assert "(recorded traditional; the numbers say perfsdk)" in page
    assert "(from the numbers)" in page
    assert 'id="run-perfsdk"' in page and 'id="run-traditional"' not in page


# -- bad input ---------------------------------------------------------------------
def test_bad_input_is_a_clear_error_and_writes_nothing(tmp_path, capsys):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match="no such directory"):
        write_report(missing)
    assert main(["report", str(missing)]) == 2
    assert f"perfsdk report: error: {missing}: no such directory" in capsys.readouterr().err

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("hello")
    out = tmp_path / "r.html"
    assert main(["report", str(empty), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "no perfsdk tables found" in err and "spans/" in err and "decisions/" in err and "comparison.arrow" in err
    assert not out.exists() and not (empty / "report.html").exists()

    a_file = tmp_path / "file.arrow"
    a_file.write_bytes(b"x")
    assert main(["report", str(a_file)]) == 2
    assert "not a directory" in capsys.readouterr().err

    bad_table = tmp_path / "bad"
    bad_table.mkdir()
    write_ipc(bad_table / "comparison.arrow", pa.table({"x": [1]}))
    assert main(["report", str(bad_table)]) == 2
    assert "not a demo comparison table" in capsys.readouterr().err


def test_a_demo_table_of_the_wrong_types_or_cut_short_is_an_error_naming_it(tmp_path, capsys):
    good = {"row": ["p50"], "traditional": [1.0], "perfsdk": [2.0], "better": ["lower"]}
    strings = tmp_path / "strings"
    strings.mkdir()
    write_ipc(strings / "comparison.arrow", pa.table(dict(good, traditional=["1.0"], perfsdk=["2.0"])))
    assert main(["report", str(strings)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{strings / 'comparison.arrow'}: not a demo comparison table file: " \
        "column traditional is string, not double; column perfsdk is string, not double" in err

    cut = tmp_path / "cut"
    cut.mkdir()
    write_ipc(cut / "comparison.arrow", pa.table(good))
    whole = (cut / "comparison.arrow").read_bytes()
    (cut / "comparison.arrow").write_bytes(whole[: len(whole) // 2])
    assert main(["report", str(cut)]) == 2
    assert f"{cut / 'comparison.arrow'}: not a complete Arrow IPC or Parquet file" in capsys.readouterr().err

    faults = tmp_path / "faults"
    faults.mkdir()
    write_ipc(faults / "comparison.arrow", pa.table(good))
    write_ipc(faults / "faults.arrow", pa.table({"start_ns": ["abc"], "end_ns": ["x"]}))
    assert main(["report", str(faults)]) == 2
    assert f"{faults / 'faults.arrow'}: not a demo faults table file: column start_ns is string" \
        in capsys.readouterr().err


def test_the_cli_writes_where_asked_and_says_where(plain, tmp_path, capsys):
    root, _ = plain
    out = tmp_path / "page.html"
    assert main(["report", str(root), "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert str(out) in capsys.readouterr().out
    assert main(["report", str(root), "--out", str(tmp_path / "no" / "such" / "dir.html")]) == 2
    assert "cannot write" in capsys.readouterr().err
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_cut_short_table_file_is_named_and_skipped_as_analyze_does(plain, tmp_path):
    """One such file made the report refuse the whole directory with pyarrow's own message."""
    import shutil
    import subprocess
    import sys

    root = tmp_path / "export"
    shutil.copytree(plain[0], root)
    cut = []
    for table in ("spans", "resources"):
        first = sorted((root / table).rglob("*.arrow"))[0]
        cut.append(first.with_name("part-zz-cut.arrow"))
        cut[-1].write_bytes(first.read_bytes()[:300])
    done = subprocess.run([sys.executable, "-m", "perfsdk.cli", "report", str(root)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    page = (root / "report.html").read_text(encoding="utf-8")
    for f in cut:
        assert escape(f"{f}: not a complete Arrow IPC or Parquet file") in page
    spans = re.search(r"<b>spans</b>: [^<]*", plain[1]).group()
    assert spans.startswith("<b>spans</b>: 600 in") and spans in page  # every readable span is there
    assert page.count("skipped (unreadable)") == 1


# -- the arithmetic ----------------------------------------------------------------
def test_grouped_percentiles_match_numpy():
    rng = np.random.default_rng(7)
    groups = rng.integers(0, 40, 5000)
    values = rng.gamma(2.0, 3.0, 5000)
    got = grouped_percentiles(groups, values, 42, (0, 50, 99, 100))
    for g in range(42):
        mine = values[groups == g]
        expected = np.percentile(mine, (0, 50, 99, 100)) if len(mine) else np.full(4, np.nan)
        np.testing.assert_allclose(got[:, g], expected, rtol=1e-12)


def test_buckets_cover_the_run():
    from perfsdk.report.data import Buckets

    t0 = int(datetime(2026, 11, 28, tzinfo=timezone.utc).timestamp() * 1e9)
    b = Buckets.over(t0, t0 + 3600 * 10**9)
    assert b.width_s == 30 and b.count == 120
    assert b.index(np.array([t0, t0 + 3600 * 10**9])).tolist() == [0, 119]


def test_a_span_off_a_clock_never_set_and_long_names_keep_the_page_small(tmp_path):
    """One span stamped at the epoch made every time axis a tick a day for 54 years (118,074 tick
    labels, 15.6 MB); a 200,000-character route name went whole into every title, caption and row;
    the spans' service was left out of the summary."""
    provider = TracerProvider(resource=Resource.create({"service.name": "clockless"}))
    sdk = perfsdk.init(tracer_provider=provider, export_dir=str(tmp_path), sample_resources=False)
    tracer = provider.get_tracer("t")
    now = time.time_ns()
    long_name = "GET /" + "a" * 200_000
    for i in range(60):
        for name in ("GET /home", long_name):
            tracer.start_span(name, start_time=now + i * 10**9).end(end_time=now + i * 10**9 + 2 * 10**6)
    tracer.start_span("GET /home", start_time=1).end(end_time=2 * 10**6)  # a clock never set
    sdk.shutdown()
    page = write_report(tmp_path).read_text(encoding="utf-8")
    assert len(page) < 1_000_000, len(page)
    assert page.count('class="tick"') < 400 and "1970-01-01" in page  # dates, about 8 a plot
    assert "<b>services</b>: clockless</li>" in page


# -- tables written directly (as another writer, or perfsdk analyze, would) ------------
T0 = 1_700_000_000 * 10**9  # 2023-11-14T22:13:20Z


def at(t_ns: int) -> datetime:
    return datetime.fromtimestamp(t_ns / 1e9, timezone.utc)


def write_rows(root: Path, table: str, rows: list[dict], nullable: bool = False) -> None:
    """``rows`` as one file of ``table`` (``nullable``: every field may be null, as another writer's)."""
    from perfsdk.export.schema import TABLES

    schema = pa.schema([f.with_nullable(True) for f in TABLES[table]]) if nullable else TABLES[table]
    folder = root / table
    folder.mkdir(parents=True, exist_ok=True)
    write_ipc(folder / f"part-{len(list(folder.iterdir()))}.arrow", pa.Table.from_pylist(rows, schema=schema))


def span_row(name: str, start_ns: int, duration_ms: float, i: int) -> dict:
    end = start_ns + (int(duration_ms * 1e6) if np.isfinite(duration_ms) else 0)
    return {"trace_id": "t" * 32, "span_id": f"{i:016x}", "name": name, "kind": "SERVER", "start_time": start_ns,
            "end_time": end, "duration_ms": duration_ms, "status_code": "OK", "service.name": "shop"}


def anomaly_row(t_ns: int | None, k: int, source: str = "span", series: str = "GET /a") -> dict:
    when = None if t_ns is None else at(t_ns)
    return {"timestamp": when, "service.name": "shop", "series": series, "source": source, "metric": "duration_ms",
            "detector": "zscore", "index": k, "value": 50.0, "expected": 2.0, "std": 1.0, "score": 9.0,
            "threshold": 3.0, "lower": 0.0, "upper": 4.0, "onset": when, "confirmed_at": when}


def test_every_incident_is_counted_and_the_table_says_what_it_does_not_list(tmp_path):
    """The report rebuilt incidents with the live tracker's caps (newest 100 incidents, 50 anomalies
    each): 150 incidents were summarised as "in 100 incidents", the first (120 anomalies) gone."""
    write_rows(tmp_path, "spans", [span_row("GET /a", T0 + i * 60 * 10**9, 2.0, i) for i in range(400)])
    rows = [anomaly_row(T0 + k * 10**7, k) for k in range(120)]  # one incident of 120 in 1.2 s
    rows += [anomaly_row(T0 + (k + 1) * 120 * 10**9, 1000 + k) for k in range(149)]  # 149 alone, 2 min apart
    write_rows(tmp_path, "anomalies", rows)
    page = write_report(tmp_path).read_text(encoding="utf-8")
    assert "<b>anomalies</b>: 269, in 150 incidents</li>" in page
    listed = re.findall(r"<tr><td class=num>\d+</td><td>([^<]*)</td><td>[^<]*</td><td class=num>(\d+)</td>", page)
    assert len(listed) == 50 and listed[0] == ("2023-11-14 22:13:20.000", "120")
    assert "100 more incidents not listed." in page



@pytest.mark.parametrize("distinct", [False, True])
def test_grouping_a_long_steady_run_weighs_only_the_open_incidents(tmp_path, grouping_work, distinct):
    """One anomaly every 10 s never leaves a 30 s gap: the report's tracker weighed each against every
    incident and every member of each, closed ones too (16,000 anomalies: 64 s on one series, 210 s
    on distinct ones). Counted, not timed: each anomaly weighs the 3 incidents still open and the one
    that just closed, and each member's onset is read a fixed number of times."""
    from perfsdk.export.schema import TABLES
    from perfsdk.report.data import incidents

    examined, read = grouping_work
    k = 3000
    rows = [anomaly_row(T0 + i * 10 * 10**9, i, series=f"GET /r{i}" if distinct else "GET /a") for i in range(k)]
    grouped = incidents(pa.Table.from_pylist(rows, schema=TABLES["anomalies"]), tmp_path)
    assert [len(i.members) for i in grouped] == ([1] * k if distinct else [k])  # every anomaly kept
    assert len(examined) <= 4 * k  # it was k * k / 2 incidents with distinct series
    assert len(read) <= 4 * k  # it was k * k / 2 onsets on one series

def test_anomalies_found_by_analyze_are_not_called_the_live_detectors(tmp_path):
    write_rows(tmp_path, "spans", [span_row("GET /a", T0 + i * 10**9, 2.0, i) for i in range(60)])
    write_rows(tmp_path, "anomalies", [anomaly_row(T0 + 30 * 10**9, 1, source="analyze")])
    page = write_report(tmp_path).read_text(encoding="utf-8")
    assert "anomaly (perfsdk analyze, offline) and its normal band" in page
    assert "anomaly (live detector)" not in page
    assert "1 found offline by perfsdk analyze, 0 live" in page


def test_the_summary_dates_the_run_and_tables_date_times_across_days(tmp_path):
    write_rows(tmp_path, "spans", [span_row("GET /a", T0 + i * 3600 * 10**9, 2.0, i) for i in range(30)])
    write_rows(tmp_path, "anomalies", [anomaly_row(T0 + 25 * 3600 * 10**9, 1)])
    page = write_report(tmp_path).read_text(encoding="utf-8")
    assert "<b>from</b>: 2023-11-14T22:13:20.000Z to 2023-11-16T03:13:20.002Z (104,400.0 s)" in page
    assert "<td>2023-11-15 23:13:20.000</td>" in page  # the incident's and the anomaly's time


def test_the_forecast_text_names_the_estimator_it_uses(tmp_path):
    rng = np.random.default_rng(0)
    write_rows(tmp_path, "spans", [span_row("GET /a", T0 + i * 10**8, float(d), i)
                                   for i, d in enumerate(rng.lognormal(1.0, 0.1, 3000))])
    page = write_report(tmp_path).read_text(encoding="utf-8")
    text = page[page.index("<h3>ARIMA forecast bands</h3>"):page.index("<h3>Adaptive caches")]
    assert "maximum likelihood" not in text and "Hannan-Rissanen" in text and "<svg" in text


def test_an_anomaly_with_no_time_is_not_drawn_and_said(tmp_path):
    write_rows(tmp_path, "spans", [span_row("GET /a", T0 + i * 10**9, 5.0, i) for i in range(50)])
    write_rows(tmp_path, "anomalies", [anomaly_row(None, 7)])
    page = write_report(tmp_path).read_text(encoding="utf-8")
    assert '"nan"' not in page
    assert "1 of its anomalies have no time and are not marked" in page


@pytest.mark.parametrize("table, row, said", [
    ("anomalies", dict(anomaly_row(T0, 1), series=None), "1 anomalies row with no series"),
    ("decisions", {"timestamp": at(T0), "service.name": "shop", "controller": None, "mode": "auto", "state": 1,
                   "action": "keep", "applied": True}, "1 decisions row with no controller"),
    ("decisions", {"timestamp": None, "service.name": "shop", "controller": "c", "mode": "auto", "state": 1,
                   "action": "keep", "applied": True}, "1 decisions row with no timestamp"),
    ("spans", dict(span_row("GET /b", T0, 1.0, 99), name=None), "1 spans row with no name"),
    ("resources", {"timestamp": at(T0), "service.name": "shop", "metric": None, "value": 1.0},
     "1 resources row with no metric"),
])
def test_rows_missing_a_required_value_are_left_out_and_counted(tmp_path, table, row, said):
    """Each of these raised (AttributeError, IndexError, TypeError, ...) and no page was written."""
    write_rows(tmp_path, "spans", [span_row("GET /a", T0 + i * 10**9, 2.0, i) for i in range(10)])
    write_rows(tmp_path, table, [row], nullable=True)
    page = write_report(tmp_path).read_text(encoding="utf-8")
    assert f"<b>left out (a required value missing or not a number)</b>: {said}</li>" in page


def test_spans_whose_duration_is_not_a_number_are_left_out_and_counted(tmp_path):
    durations = [1.0, 2.0, 3.0, 4.0] * 25 + [float("nan")] * 30
    write_rows(tmp_path, "spans", [span_row("GET /n", T0 + i * 10**8, d, i) for i, d in enumerate(durations)])
    page = write_report(tmp_path).read_text(encoding="utf-8")
    row = re.search(r'<table class="routes">.*?</table>', page).group(0)
    assert re.findall(r"<td class=num>([^<]*)</td>", row) == ["100", "0", "2.5", "4", "4", "4", "0"]
    assert "30 spans whose duration_ms is not a finite number" in page


def test_many_controllers_plot_the_busiest_and_say_how_many_more(tmp_path):
    """500 caches made 1,001 plots and a 4.5 MB page."""
    write_rows(tmp_path, "decisions", [
        {"timestamp": at(T0 + i * 30 * 10**9), "service.name": "shop", "controller": f"cache-{c:03d}", "mode": "auto",
         "state": 1, "state_features": [("hit_ratio", 0.5)], "action": "grow", "q_values": [1.0], "reward": 0.1,
         "value_before": 100.0 + i, "value_after": 101.0 + i, "applied": True, "guardrail": None,
         "explanation": "grew"} for c in range(100) for i in range(5 if c else 6)])
    page = write_report(tmp_path).read_text(encoding="utf-8")
    assert page.count("<svg") == 13 and len(page) < 300_000
    assert "94 more caches not plotted" in page and "70 more controllers not drawn" in page
    assert "cache cache-000: capacity" in page  # the busiest is among those plotted


def decision_row(t_ns: int, service: str, controller: str, before: float, after: float) -> dict:
    return {"timestamp": at(t_ns), "service.name": service, "controller": controller, "mode": "auto", "state": 1,
            "state_features": [("hit_ratio", 0.5)], "action": "grow" if after > before else "keep",
            "q_values": [1.0], "reward": 0.1, "value_before": before, "value_after": after, "applied": True,
            "guardrail": None, "explanation": f"{service} {controller}"}


def two_services(root: Path, services: tuple[str, ...] = ("web", "batch")) -> str:
    """``web``: GET /health at 1 ms, 100 MB RSS, cache ``prices`` at 10 -> 20; ``batch``: 100 ms, 1000 MB,
    ``prices`` at 500 -> 600, and an anomaly on its GET /health. The page, with ``services`` of them."""
    figures = {"web": (1.0, 100.0, 10.0), "batch": (100.0, 1000.0, 500.0)}
    for service in services:
        latency, rss, capacity = figures[service]
        write_rows(root, "spans", [dict(span_row("GET /health", T0 + i * 10**9, latency, i), **{"service.name": service})
                                   for i in range(60)])
        write_rows(root, "resources", [{"timestamp": at(T0 + i * 5 * 10**8), "service.name": service,
                                        "metric": "process.memory.rss_mb", "value": rss, "unit": "MB"}
                                       for i in range(120)])  # one a bucket: a line, not dots
        write_rows(root, "decisions", [decision_row(T0 + i * 10**10, service, "prices", capacity, capacity + 10 * i)
                                       for i in range(1, 3)])
    if "batch" in services:
        write_rows(root, "anomalies", [dict(anomaly_row(T0 + 30 * 10**9, 1, series="GET /health"),
                                            **{"service.name": "batch", "value": 400.0})])
    return write_report(root).read_text(encoding="utf-8")


LINE_LEGEND = r'<span class="swatch line"[^>]*></span>([^<]*)</span>'


def figure(page: str, caption: str) -> str:
    start = page.index(f"<figcaption>{caption}</figcaption>")
    return page[start:page.index("</figure>", start)]


def test_a_directory_of_several_services_shows_each_services_own_figures(tmp_path):
    """Two services sharing a directory were one route row (p50 50.5 ms: neither's), one RSS line at
    550 MB (neither's) and one cache ``prices`` whose plot jumped between the two."""
    page = two_services(tmp_path)
    table = re.search(r'<table class="routes">.*?</table>', page).group(0)
    rows = [re.findall(r"<td[^>]*>([^<]*)</td>", row) for row in re.findall(r"<tr><td.*?</tr>", table)]
    assert rows == [["batch", "GET /health", "60", "0", "100", "100", "100", "100", "1"],
                    ["web", "GET /health", "60", "0", "1", "1", "1", "1", "0"]]
    assert "<th>service</th><th>route</th>" in table
    assert "50.5" not in page
    # the latency plots are each service's, the anomaly marked on batch's only
    assert "anomaly (live detector)" in figure(page, "GET /health (batch): p50 and p99 latency")
    assert "anomaly (live detector)" not in figure(page, "GET /health (web): p50 and p99 latency")
    # a resource line per service, at each service's own RSS
    rss = figure(page, "process.memory.rss_mb")
    assert re.findall(LINE_LEGEND, rss) == ["batch", "web"]
    heights = {name: {y for y in re.findall(r"[ML][\d.]+ ([\d.]+)", d)}
               for d, name in re.findall(r'<path class="series" d="([^"]*)"[^>]*><title>([^<]*)</title>', rss)}
    assert set(heights) == {"batch", "web"} and all(len(ys) == 1 for ys in heights.values())
    assert float(heights["batch"].pop()) < float(heights["web"].pop())  # batch's line above web's: 1000 > 100
    from perfsdk.report.data import Buckets, Run, resource_metrics

    run = Run.read("x", tmp_path)
    buckets = Buckets.over(run.t0_ns, run.t1_ns)
    (metric,), more = resource_metrics(run.resources, buckets, 6, 10)
    assert (metric.metric, metric.unit, metric.services, more) == ("process.memory.rss_mb", "MB", ["batch", "web"], 0)
    assert set(metric.means[0][np.isfinite(metric.means[0])]) == {1000.0}
    assert set(metric.means[1][np.isfinite(metric.means[1])]) == {100.0}
    # a controller per service: its own values, plots and timeline lane
    assert "cache prices (batch): capacity" in page and "cache prices (web): capacity" in page
    decisions = re.search(r'<table class="decisions">.*?</table>', page).group(0)
    assert "<th>time</th><th>service</th><th>controller</th>" in decisions
    assert "<td>web</td><td>prices</td><td>grow</td><td class=num>10 → 20</td>" in decisions
    assert "<td>batch</td><td>prices</td><td>grow</td><td class=num>500 → 510</td>" in decisions
    assert "10 → 510" not in decisions and "500 → 20" not in decisions
    assert "<b>services</b>: batch, web</li>" in page and "services pooled" not in page  # no longer so


def test_one_service_shows_no_service_column(tmp_path):
    page = two_services(tmp_path, services=("web",))
    assert "<th>service</th>" not in page and "(web)" not in page
    assert "GET /health: p50 and p99 latency" in page and "cache prices: capacity" in page
    rss = figure(page, "process.memory.rss_mb")
    assert re.findall(LINE_LEGEND, rss) == ["process.memory.rss_mb"]


def test_group_keys_key_by_every_column():
    from perfsdk.report.data import group_keys

    table = pa.table({"service.name": ["web", "batch", "web", "batch"], "name": ["b", "a", "a", "a"]})
    keys, group = group_keys(table, ["service.name", "name"])
    assert keys == [("batch", "a"), ("web", "a"), ("web", "b")] and group.tolist() == [2, 0, 1, 0]
    assert group_keys(table.slice(0, 0), ["name"])[0] == []
