"""``perfsdk demo``: both runs end to end (quick), the table from measurement, the scoring rules."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from perfsdk.demo.run import DemoPlan, DemoResult, TableRow
from perfsdk.demo.scoring import (SECOND, Alert, StaticThresholds, merge_alerts, score_alerts,
                                  server_spans)
from perfsdk.demo.service import FaultSpec
from perfsdk.export import read
from perfsdk.testgen.scenario import Scenario



@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    # find_spec, never import: importing Locust patches this process's standard library with gevent
    if importlib.util.find_spec("locust") is None:
        pytest.skip("the demo's load test runs with Locust (pip install locust)")
    out = tmp_path_factory.mktemp("demo") / "run"
    done = subprocess.run([sys.executable, "-m", "perfsdk.cli", "demo", "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return out, done


def comparison(out: Path) -> dict[str, dict]:
    table = pa.ipc.open_file(out / "comparison.arrow").read_all()
    return {row["row"]: row for row in table.to_pylist()}


def test_quick_demo_writes_both_runs_the_table_and_the_ground_truth(demo) -> None:
    out, done = demo
    rows = comparison(out)
    assert {"p50 latency, normal load", "p99 latency, high load", "connections held", "CPU",
            "failures detected (recall)", "alert precision", "load test time to surface every fault"} <= set(rows)
    for name in ("p50 latency, normal load", "p99 latency, high load", "connections held", "CPU", "peak memory"):
        row = rows[name]
        assert math.isfinite(row["traditional"]) and math.isfinite(row["perfsdk"]), name
        assert row["winner"] in ("perfsdk", "traditional", "tie")
    info = json.loads(pa.ipc.open_file(out / "comparison.arrow").schema.metadata[b"perfsdk.demo"])
    assert info["quick"] is True and info["database"] == "sqlite"
    truth = pa.ipc.open_file(out / "faults.arrow").read_all().to_pylist()
    kinds = {(f["run"], f["kind"]) for f in truth}
    assert kinds == {(run, kind) for run in ("traditional", "perfsdk") for kind in
                     ("latency", "slow_queries", "surge", "memory_leak", "failing")}
    assert all(f["start_ns"] < f["end_ns"] for f in truth)
    for variant in ("traditional", "perfsdk"):
        assert server_spans(read(out / variant)).num_rows > 100
    Scenario.load(out / "scenario.json")  # the generated load test, valid
    for line in ("p50 latency, normal load", "failures detected", "winner"):
        assert line in done.stdout
    assert "[perfsdk] load test" in done.stdout  # progress while it runs
    assert "locust" not in sys.modules  # the load ran in a subprocess; this process was never patched


def test_the_table_is_measured_from_the_runs_files(demo) -> None:
    """The p50 row is recomputed here from the exported spans and the recorded load start."""
    out, _ = demo
    rows = comparison(out)
    runs = json.loads((out / "runs.json").read_text())
    plan = DemoPlan.quick()
    for variant in ("traditional", "perfsdk"):
        t0 = runs[variant]["load_started_ns"]
        normal = server_spans(read(out / variant), t0, t0 + int(plan.normal_until_s * SECOND))
        expected = float(np.percentile(normal["duration_ms"].to_numpy(), 50))
        assert rows["p50 latency, normal load"][variant] == pytest.approx(expected)


def test_the_perfsdk_run_exports_its_decisions_and_uses_the_adaptive_pool(demo) -> None:
    out, _ = demo
    runs = json.loads((out / "runs.json").read_text())
    assert runs["perfsdk"]["sdk_stats"] is not None and runs["traditional"]["sdk_stats"] is None
    assert runs["perfsdk"]["locust"] and runs["traditional"]["locust"]


def test_each_load_test_hunts_the_latent_faults_after_the_load(demo) -> None:
    """The hand-written uniform test (traditional) and the generated one (perfsdk), against the
    faults a test can see, switched on together after the scheduled load."""
    out, _ = demo
    runs = json.loads((out / "runs.json").read_text())
    for variant in ("traditional", "perfsdk"):
        latent = runs[variant]["latent"]
        assert {f["kind"] for f in latent} == {"latency", "slow_queries", "failing"}
        assert min(f["start_ns"] for f in latent) >= max(f["end_ns"] for f in runs[variant]["faults"])
        assert set(runs[variant]["surfaced_s"]) == {f["name"] for f in latent}
    assert (out / "traditional" / "finding" / "locust" / "locustfile.py").exists()
    assert "hand-written uniform" in (out / "traditional" / "finding" / "locust" / "locustfile.py").read_text()


def test_demo_refuses_a_directory_it_did_not_write(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    done = subprocess.run([sys.executable, "-m", "perfsdk.cli", "demo", "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "not empty" in done.stderr and "Traceback" not in done.stderr
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_demo_refuses_a_database_it_cannot_use(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "perfsdk.cli", "demo", "--quick", "--out", str(tmp_path / "x"),
                           "--db", "mysql://localhost/shop"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--db" in done.stderr


def run_demo_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "perfsdk.cli", "demo", "--quick", *args], capture_output=True,
                          text=True, timeout=120)


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("perfsdk demo: error: ") and "Traceback" not in done.stderr
    return done.stderr


@pytest.mark.parametrize("db,message", [
    ("postgresqlnonsense", "--db (database_url) must be a SQLAlchemy URL"),  # passed the prefix check
    ("sqlite+pysqlite:///shop.db", "is not a directory"),  # a SQLite URL: refused as not one before
])
def test_demo_checks_db_as_a_url_then_out_in_one_line(tmp_path: Path, db: str, message: str) -> None:
    """--out a file was a NotADirectoryError traceback."""
    (tmp_path / "notdir.txt").write_text("mine")
    done = run_demo_cli("--out", str(tmp_path / "notdir.txt"), "--db", db)
    assert message in one_line_error(done)
    assert (tmp_path / "notdir.txt").read_text() == "mine"


def test_a_demo_that_did_not_start_says_why_in_one_line_and_may_run_again_there(tmp_path: Path) -> None:
    """It was a RuntimeError with the shop's traceback in it, and the directory it left behind
    (``perfsdk/``) was then refused as "holds no earlier demo run"."""
    out = tmp_path / "d1"
    for _ in range(2):
        err = one_line_error(run_demo_cli("--out", str(out), "--db", "sqlite+nosuchdriver://"))
        assert "the perfsdk shop did not start: sqlalchemy.exc.NoSuchModuleError: " in err
        assert f"(its log: {out / 'perfsdk' / 'service.log'})" in err
        assert "Traceback" in (out / "perfsdk" / "service.log").read_text()


# -- scoring rules, on hand-made alerts -------------------------------------------------------

FAULTS = [
    {"name": "spike", "kind": "latency", "route": "product", "start_ns": 10 * SECOND, "end_ns": 20 * SECOND},
    {"name": "surge", "kind": "surge", "route": "*", "start_ns": 30 * SECOND, "end_ns": 40 * SECOND},
    {"name": "leak", "kind": "memory_leak", "route": "cart", "start_ns": 50 * SECOND, "end_ns": 60 * SECOND},
]


def test_a_fault_is_detected_only_on_a_series_it_touches() -> None:
    wrong_route = [Alert("GET /search", 12 * SECOND, 12 * SECOND)]
    assert score_alerts(FAULTS[:1], wrong_route).recall == 0.0
    assert score_alerts(FAULTS[:1], wrong_route).precision == 1.0  # inside the window: caused by the fault
    surge_any = [Alert("GET /search", 31 * SECOND, 31 * SECOND)]
    assert score_alerts(FAULTS[1:2], surge_any).recall == 1.0
    leak_memory = [Alert("process.memory.rss_mb", 58 * SECOND, 58 * SECOND)]
    assert score_alerts(FAULTS[2:], leak_memory).detect_s == {"leak": 8.0}


def test_alerts_before_a_fault_or_after_its_grace_are_false() -> None:
    early = Alert("GET /products/<int:pid>", 9 * SECOND, 9 * SECOND)
    late = Alert("GET /products/<int:pid>", 26 * SECOND, 26 * SECOND)
    score = score_alerts(FAULTS[:1], [early, late], grace_s=5.0)
    assert score.recall == 0.0 and score.precision == 0.0 and score.missed == ["spike"]
    assert math.isnan(score.mean_detect_s)


def test_alerts_close_together_on_one_series_merge() -> None:
    alerts = [Alert("a", 0, SECOND), Alert("a", 5 * SECOND, 6 * SECOND), Alert("b", 2 * SECOND, 2 * SECOND),
              Alert("a", 30 * SECOND, 31 * SECOND)]
    merged = merge_alerts(alerts, merge_s=10.0)
    assert [(a.series, a.start_ns // SECOND, a.end_ns // SECOND) for a in merged] == [
        ("a", 0, 6), ("b", 2, 2), ("a", 30, 31)]


def _spans(rows: list[tuple[str, float, float, str]]) -> pa.Table:
    """Server spans: (name, start second, duration ms, status)."""
    return pa.table({
        "name": [r[0] for r in rows], "kind": ["SERVER"] * len(rows),
        "start_time": pa.array([int(r[1] * SECOND) for r in rows], pa.timestamp("ns", tz="UTC")),
        "duration_ms": [r[2] for r in rows], "status_code": [r[3] for r in rows],
    })


def test_static_thresholds_fire_on_slow_windows_errors_and_memory() -> None:
    warm = _spans([("GET /", t / 10, 2.0 + (t % 3), "UNSET") for t in range(100)])
    rules = StaticThresholds(warm, warm_up_rss_mb=100.0)
    assert rules.latency_ms["GET /"] == pytest.approx(9.0)  # p95 4 ms: at least 5 ms above it
    load = _spans([("GET /", 20 + t / 10, 2.0, "UNSET") for t in range(50)]
                  + [("GET /", 30 + t / 10, 50.0, "UNSET") for t in range(50)]
                  + [("GET /", 40 + t / 10, 2.0, "ERROR" if t % 4 == 0 else "UNSET") for t in range(50)])
    samples = [{"t_ns": 45.0 * SECOND, "rss_mb": 120.0}, {"t_ns": 46.0 * SECOND, "rss_mb": 151.0}]
    alerts = rules.alerts(load, samples)
    whys = sorted(a.why.split()[0] for a in alerts)
    assert whys == ["errors", "memory", "p95"]
    assert next(a for a in alerts if a.why.startswith("p95")).start_ns == 35 * SECOND  # when the window closed


def test_fault_specs_are_checked() -> None:
    with pytest.raises(ValueError, match="fault kind"):
        FaultSpec("x", "meteor", "home", 0, 1)
    with pytest.raises(ValueError, match="start_s < end_s"):
        FaultSpec("x", "latency", "home", 5, 1)
    assert {f.kind for f in DemoPlan().fault_specs()} == {"latency", "slow_queries", "surge", "memory_leak",
                                                          "failing"}


def test_demo_names_what_it_needs_when_it_is_missing(tmp_path: Path, monkeypatch, capsys) -> None:
    from perfsdk import cli

    monkeypatch.setattr(cli, "DEMO_NEEDS", ("flask", "not_installed_anywhere"))
    assert cli.main(["demo", "--quick", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "not_installed_anywhere" in err and "pip install 'perfsdk[demo]'" in err and "flask" not in err
    assert not (tmp_path / "x").exists()


class _Recording(dict):
    """A shop's per-route setting that remembers every value it was set to."""

    def __init__(self) -> None:
        super().__init__()
        self.history: list[tuple[str, float]] = []

    def __setitem__(self, route: str, value: float) -> None:
        self.history.append((route, value))
        super().__setitem__(route, value)


def _run_schedule(faults: list[FaultSpec]) -> tuple[types.SimpleNamespace, Any]:
    from perfsdk.demo.service import _Schedule

    shop = types.SimpleNamespace(slow_ms=_Recording(), slow_query_rows={}, leak_bytes={}, failing=set())
    schedule = _Schedule(shop, faults)
    schedule.armed = True
    schedule.on_request()
    assert schedule._thread is not None
    schedule._thread.join(10.0)
    return shop, schedule


def test_faults_on_one_route_hand_over_and_add_up_instead_of_cancelling() -> None:
    """A fault that began as another ended was switched off by the other's end (its start came first
    at the same time), and an overlapping one's end switched off the first: both recorded as applied."""
    shop, schedule = _run_schedule([FaultSpec("first", "latency", "product", 0.0, 0.05, 40.0),
                                    FaultSpec("second", "latency", "product", 0.05, 0.1, 80.0),
                                    FaultSpec("long", "latency", "search", 0.0, 0.1, 40.0),
                                    FaultSpec("short", "latency", "search", 0.02, 0.04, 10.0)])
    by_route = {r: [v for route, v in shop.slow_ms.history if route == r] for r in ("product", "search")}
    assert by_route["product"] == [40.0, 0.0, 80.0, 0.0]  # the second fault holds until its own end
    assert by_route["search"] == [40.0, 50.0, 40.0, 0.0]  # the short one comes and goes on top
    assert sorted(f["name"] for f in schedule.applied) == ["first", "long", "second", "short"]


def test_a_schedule_refuses_two_faults_of_one_name() -> None:
    from perfsdk.demo.service import _Schedule

    with pytest.raises(ValueError, match="'spike'"):
        _Schedule(types.SimpleNamespace(), [FaultSpec("spike", "latency", "a", 0, 1, 5.0),
                                            FaultSpec("spike", "latency", "b", 2, 3, 5.0)])



# -- Ctrl-C ---------------------------------------------------------------------------------------


def _group_members(pgid: int) -> list[str]:
    """The live processes (zombies aside) of process group ``pgid``, as ``pid command``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile
            continue
        state, _ppid, group = stat.rsplit(")", 1)[1].split()[:3]
        if int(group) == pgid and state != "Z":
            members.append(f"{entry.name} {command[:120]}")
    return members


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="lists a process group's members from /proc")
@pytest.mark.parametrize("to,started", [
    # make's Ctrl-C: the whole group, the shop and Locust too, during the load test (the shop, dead
    # of SIGINT, was reported as failing: "the perfsdk shop failed (status -2): KeyboardInterrupt")
    ("group", Path("perfsdk") / "locust" / "locustfile.py"),
    # the demo's process alone, as the shop starts or the shoppers shop (a raw traceback)
    ("main", Path("perfsdk") / "service.log"),
])
def test_ctrl_c_ends_the_demo_in_one_line_with_status_130_and_stops_its_children(tmp_path: Path, to: str,
                                                                                  started: Path) -> None:
    if importlib.util.find_spec("locust") is None:  # find_spec: importing Locust patches this process
        pytest.skip("the demo's load test runs with Locust (pip install locust)")
    out = tmp_path / "run"
    demo = subprocess.Popen([sys.executable, "-m", "perfsdk.cli", "demo", "--quick", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not (out / started).exists():
            assert demo.poll() is None and time.monotonic() < deadline, f"{started} never appeared"
            time.sleep(0.05)
        (os.killpg if to == "group" else os.kill)(demo.pid, signal.SIGINT)
        stdout, stderr = demo.communicate(timeout=60)
        assert demo.returncode == 130, stderr
        assert stderr == (f"perfsdk demo: interrupted; {out}/ holds an incomplete run, "
                          "which the next demo there replaces\n")
        assert "Traceback" not in stdout
        deadline = time.monotonic() + 5  # the demo waited for its children: none should be left
        while _group_members(demo.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _group_members(demo.pid) == []
        assert "Traceback" not in (out / "perfsdk" / "service.log").read_text()
    finally:
        if demo.poll() is None or _group_members(demo.pid):
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


KILLED_BY_CTRL_C = "os.kill(os.getpid(), signal.SIGINT); signal.pause()"  # status -2


@pytest.mark.parametrize("ending,answered,reported", [
    (KILLED_BY_CTRL_C, True, KeyboardInterrupt), (KILLED_BY_CTRL_C, False, KeyboardInterrupt),
    ("sys.exit(130)", True, KeyboardInterrupt),  # the shop's own exit on Ctrl-C
    ("sys.exit(130)", False, KeyboardInterrupt),
    ("sys.exit(3)", True, RuntimeError),  # a real failure is still one
    ("sys.exit(3)", False, RuntimeError),  # ...its refused stop order was "cannot write DIR: Connection refused"
    ("os.kill(os.getpid(), signal.SIGKILL)", False, RuntimeError),  # a crash: status -9
])
def test_a_shop_ended_by_ctrl_c_is_an_interrupt_not_a_failure(tmp_path: Path, ending: str, answered: bool,
                                                              reported: type) -> None:
    """``answered``: the shop took the stop order before it ended; else nothing listens (refused)."""
    from perfsdk.demo.run import _Service

    service = _Service("perfsdk", tmp_path / "shop", DemoPlan.quick(), "sqlite://", 0)
    service.command = [sys.executable, "-c", "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                       f"print('READY http://127.0.0.1:{_closed_port()}', flush=True); {ending}"]
    with pytest.raises(reported) as caught:
        with service:
            service.process.wait(timeout=30)  # it ended while the demo ran
            if answered:
                service.order = lambda what: None  # type: ignore[method-assign]
    if reported is RuntimeError:
        status = -9 if "SIGKILL" in ending else 3
        assert f"the perfsdk shop failed (status {status})" in str(caught.value)


def test_an_interrupt_under_way_is_not_replaced_by_the_shops_stop_failing(tmp_path: Path) -> None:
    """Ctrl-C in fault finding was "cannot write ...: Connection reset by peer": the stop order to the
    shop, dead of the same Ctrl-C, failed and its error replaced the interrupt."""
    from perfsdk.demo.run import _Service

    service = _Service("perfsdk", tmp_path / "shop", DemoPlan.quick(), "sqlite://", 0)
    service.command = [sys.executable, "-c", f"print('READY http://127.0.0.1:{_closed_port()}', flush=True)"]
    with pytest.raises(KeyboardInterrupt):
        with service:
            service.process.wait(timeout=30)
            raise KeyboardInterrupt


# -- the printed table -------------------------------------------------------------------------------


def test_the_table_lines_up_however_long_a_rows_label() -> None:
    """The label column was 38 wide: 'load test time to surface every fault (s)' (41) pushed its row's
    figures three columns right."""
    rows = [TableRow("p50 latency, normal load", "", "ms", 1.1, 0.939, "lower", 200.0, 160.0),
            TableRow("load test time to surface every fault", "", "s", 0.309, 0.845, "lower"),
            TableRow("a label longer than any the demo has today, to be sure", "", "%", 1234.0, math.nan,
                     "higher")]
    lines = DemoResult(Path("out"), rows, 1.0).table().splitlines()
    header, body = lines[0], lines[1:]
    for name in ("traditional", "perfsdk"):  # right-aligned under its heading
        end = header.index(name) + len(name)
        for line in body:
            assert line[end - 1] != " " and line[end] == " ", (name, line)
    for row, line in zip(rows, body):
        assert line.startswith(f"{row.row} ({row.unit}) ")
    assert [line.split()[-1] for line in body] == ["160", "traditional", "-"]  # the winner (or paper) last


# -- the incident text ----------------------------------------------------------------------------


def test_an_incident_says_infinitely_many_std_as_its_anomaly_does() -> None:
    """A series that was constant at 0 ms scores inf: the incident read "(inf std above)" where the
    anomaly (service.log) reads "infinitely many std above the expected 0"."""
    from perfsdk.detect import Anomaly
    from perfsdk.instrument.incidents import Incident

    def anomaly(value: float, expected: float, std: float, score: float) -> Anomaly:
        return Anomaly("z", index=0, value=value, expected=expected, std=std, score=score, threshold=3.0,
                       details={"series": "GET /", "source": "span"})

    infinite = anomaly(12.0, 0.0, 0.0, math.inf)
    assert "infinitely many std above the expected 0" in str(infinite)
    text = str(Incident([infinite]))
    assert "against an expected 0 ms (infinitely many std above)" in text and "inf std" not in text
    assert "(15.0 std below)" in str(Incident([anomaly(50.0, 200.0, 10.0, -15.0)]))
