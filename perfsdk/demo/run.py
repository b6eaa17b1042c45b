"""``perfsdk demo``: the whole SDK at work on a real service, against the traditional way, measured.

The shop (``perfsdk.demo.shop``) is run twice, each time in a fresh process
(``perfsdk.demo.service``), on the same seeded load:

1. **warm-up**: simulated shoppers (``perfsdk.demo.users``: Poisson arrivals, a
   Markov chain over the pages, log-normal think times) use the shop while it is
   recorded. From the first run's recording perfsdk's testgen learns a traffic
   model and writes the load test: the observed mix and sessions, at the observed
   arrival rate, with a surge stage (``SURGE`` times the arrivals) in it;
2. **the load test**, run with Locust, while a fault schedule strikes: a latency
   spike on one route, a burst of slow queries, a traffic surge, a memory leak and
   a payment dependency that starts failing. The service records when each
   fault really began and ended;
3. **fault finding**: the faults a load test can see (slow and failing answers) are
   switched on together, as defects waiting in a release, and the run's load test
   -- the hand-written uniform one for "traditional", the generated one for perfsdk
   -- runs until ``find_s``; how long it took until a request had shown each fault
   is its time to surface them;
4. the runs are scored alike (``perfsdk.demo.scoring``) and the table is printed,
   and written with both runs' Arrow files and an HTML report into the output
   directory.

"traditional" is a fixed LRU cache, a fixed pool of the usual rule of thumb and
alerts on static thresholds; "perfsdk" is the adaptive cache and pool and the
default detector. Every figure comes from this run's measurements.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from perfsdk.demo.scoring import (SECOND, StaticThresholds, anomaly_alerts, merge_alerts, score_alerts,
                                  server_spans, surfaced_after)
from perfsdk.demo.service import LATENT_KINDS, FaultSpec

__all__ = ["CTRL_C_STATUSES", "MARK", "SURGE", "DemoPlan", "DemoResult", "TableRow", "run_demo"]

SURGE = 5.0  # the surge's arrivals, times the normal rate
MARK = ".perfsdk-demo"  # in an output directory the demo made, which a later run may replace
#: How a child ends when Ctrl-C reached it: killed by SIGINT, or exiting 130 (128 + SIGINT) as the shop does.
#: The user stopped the demo: never reported as the child failing.
CTRL_C_STATUSES = (-signal.SIGINT, 128 + signal.SIGINT)
PAPER = {  # the seed paper's Table 1: traditional, AI-driven
    "p50": (200.0, 160.0), "p99": (800.0, 500.0), "cpu": (85.0, 65.0), "recall": (82.0, 95.0),
}


@dataclass(frozen=True)
class DemoPlan:
    """How long each phase lasts, how busy it is, and when the faults strike (fractions of the load test)."""

    warm_up_s: float = 25.0
    load_s: float = 55.0
    find_s: float = 10.0
    sessions_per_s: float = 8.0
    products: int = 2000
    cache_capacity: int = 200
    faults: tuple[tuple[str, str, str, float, float, float], ...] = (
        # name, kind, route, start, end (fractions of the load test), amount
        ("latency spike on product pages", "latency", "product", 0.25, 0.38, 40.0),
        ("burst of slow search queries", "slow_queries", "search", 0.42, 0.55, 60_000),
        ("traffic surge", "surge", "*", 0.60, 0.78, SURGE),
        ("memory leak in the cart", "memory_leak", "cart", 0.80, 1.0, 2 * 2**20),
        ("payment provider failing", "failing", "checkout", 0.86, 0.96, 0.0),
    )

    @classmethod
    def quick(cls) -> "DemoPlan":
        return cls(warm_up_s=4.0, load_s=10.0, find_s=4.0, sessions_per_s=6.0, products=500)

    def fault_specs(self) -> list[FaultSpec]:
        return [FaultSpec(name, kind, route, round(a * self.load_s, 3), round(b * self.load_s, 3), amount)
                for name, kind, route, a, b, amount in self.faults]

    @property
    def surge(self) -> FaultSpec:
        return next(f for f in self.fault_specs() if f.kind == "surge")

    @property
    def normal_until_s(self) -> float:
        """Normal load: before the first fault."""
        return min(f.start_s for f in self.fault_specs())


@dataclass
class TableRow:
    row: str
    compared: str
    unit: str
    traditional: float
    perfsdk: float
    better: str  # "lower" or "higher"
    paper_traditional: float | None = None
    paper_ai: float | None = None

    @property
    def winner(self) -> str:
        a, b = self.traditional, self.perfsdk
        if math.isnan(a) or math.isnan(b):
            return ""
        if math.isclose(a, b, rel_tol=0.02, abs_tol=1e-9):
            return "tie"
        return "perfsdk" if (b < a) == (self.better == "lower") else "traditional"


@dataclass
class DemoResult:
    out: Path
    rows: list[TableRow]
    seconds: float
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    report: Path | None = None

    def table(self) -> str:
        """The table as text, a row per figure, saying who won it."""
        labels = [f"{r.row} ({r.unit})" for r in self.rows]
        width = max(map(len, labels), default=0)  # the longest label: a new row never shifts its figures
        lines = [f"{'':{width}} {'traditional':>12} {'perfsdk':>12}  {'winner':<11} paper (trad. -> AI)"]
        for label, r in zip(labels, self.rows):
            paper = f"{r.paper_traditional:g} -> {r.paper_ai:g}" if r.paper_traditional is not None else ""
            lines.append(f"{label:{width}} {_fmt(r.traditional):>12} {_fmt(r.perfsdk):>12}  "
                         f"{r.winner or '-':<11} {paper}".rstrip())
        return "\n".join(lines)


def run_demo(out: str | os.PathLike[str], *, quick: bool = False, database_url: str = "sqlite://", seed: int = 0,
             plan: DemoPlan | None = None, progress: Callable[[str], None] = print) -> DemoResult:
    """Run both variants (see the module docstring) into ``out``; the table, the files and the report."""
    plan = plan or (DemoPlan.quick() if quick else DemoPlan())
    _check_database(database_url)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is not a directory: choose an empty or new directory")
    if out.exists() and any(out.iterdir()):
        # comparison.arrow: an output from before the mark
        if not (out / MARK).exists() and not (out / "comparison.arrow").exists():
            raise ValueError(f"{out} is not empty and holds no earlier demo run: choose an empty or new directory")
        shutil.rmtree(out)  # an earlier demo's output: replaced, never mixed with this one
    out.mkdir(parents=True, exist_ok=True)
    # first: a run that fails midway leaves a directory the next run may replace
    (out / MARK).write_text("Written by perfsdk demo: the next run with this --out replaces this directory.\n",
                            encoding="utf-8")
    started = time.monotonic()
    runs: dict[str, dict[str, Any]] = {}
    uniform = _uniform_load_test(plan)
    scenario = finding = None
    for variant in ("perfsdk", "traditional"):  # perfsdk's recording first: its testgen writes the load test
        with _Service(variant, out / variant, plan, database_url, seed) as service:
            progress(f"[{variant}] warm-up: shoppers for {plan.warm_up_s:g} s")
            _shoppers(service.url, plan, seed)
            service.order("flush")
            if scenario is None:
                scenario, finding = _load_test(out / variant, plan, progress)
                scenario.save(out / "scenario.json")
            progress(f"[{variant}] load test: Locust for {plan.load_s:g} s, faults on schedule")
            service.order("arm")
            result = _with_progress(lambda: _locust(scenario, service.url, plan.load_s, seed, out / variant),
                                    plan.load_s, lambda s: progress(f"[{variant}]   {s:.0f} s of {plan.load_s:g}"))
            assert finding is not None
            hunt = finding if variant == "perfsdk" else uniform
            progress(f"[{variant}] fault finding: {hunt.data['name']} for {plan.find_s:g} s, faults left on")
            service.order("latent")
            _locust(hunt, service.url, plan.find_s, seed, out / variant / "finding")
        runs[variant] = {**service.summary, "locust": result.summary()}
    progress("scoring")
    rows = _rows(out, runs, plan)
    seconds = time.monotonic() - started
    demo = DemoResult(out, rows, seconds, runs)
    _write_tables(out, demo, plan, quick, database_url, seed)
    demo.report = _report(out, progress)
    return demo


def _check_database(url: str) -> None:
    """``ValueError`` unless ``url`` is a SQLAlchemy URL of the two databases the shop runs on."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        backend = make_url(url).get_backend_name()
    except (ArgumentError, ValueError):
        backend = None
    if backend not in ("sqlite", "postgresql"):
        raise ValueError(f"--db (database_url) must be a SQLAlchemy URL for SQLite or PostgreSQL, got {url!r}")


class _Service:
    """The shop in a subprocess (``perfsdk.demo.service``): started, ordered about, stopped."""

    def __init__(self, variant: str, export_dir: Path, plan: DemoPlan, database_url: str, seed: int) -> None:
        self.variant, self.export_dir = variant, export_dir
        faults = json.dumps([asdict(f) for f in plan.fault_specs()])
        self.command = [sys.executable, "-m", "perfsdk.demo.service", "--variant", variant, "--export",
                        str(export_dir), "--db", database_url, "--products", str(plan.products),
                        "--cache-capacity", str(plan.cache_capacity), "--faults", faults, "--seed", str(seed)]
        self.summary: dict[str, Any] = {}

    def __enter__(self) -> "_Service":
        # its stderr to a file: a pipe nobody reads until the end could fill and stall the shop
        self.export_dir.mkdir(parents=True, exist_ok=True)
        self.log = self.export_dir / "service.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=log, text=True)
        assert self.process.stdout is not None
        try:
            line = self.process.stdout.readline()  # blocks until READY, or EOF if it died
        except BaseException:  # Ctrl-C while it starts: __exit__ will not run, so it is stopped here
            self.process.kill()
            self.process.wait()
            raise
        if not line.startswith("READY "):
            self.process.kill()
            self.process.wait()
            self._raise_if_interrupted()
            raise RuntimeError(f"the {self.variant} shop did not start: {self._last_words()}")
        self.url = line.split()[1]
        return self

    def _raise_if_interrupted(self) -> None:
        """``KeyboardInterrupt`` when the shop ended by Ctrl-C: the user stopped the demo, the shop did not fail."""
        if self.process.returncode in CTRL_C_STATUSES:
            raise KeyboardInterrupt from None

    def _last_words(self) -> str:
        """The last line of the shop's log (a traceback's, its exception), and where the rest is."""
        try:
            lines = [line for line in self.log.read_text(encoding="utf-8", errors="replace").splitlines()
                     if line.strip()]
        except OSError:
            lines = []
        return f"{lines[-1].strip() if lines else 'it said nothing'} (its log: {self.log})"

    def order(self, what: str) -> None:
        request = urllib.request.Request(f"{self.url}/_demo/{what}", data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()

    def __exit__(self, exc_type: type[BaseException] | None, *exc: Any) -> None:
        # Ctrl-C under way: the shop is stopped (or found dead of the same Ctrl-C) and the interrupt
        # is what the caller reports, not how the shop ended
        interrupted = exc_type is not None and not issubclass(exc_type, Exception)
        try:
            self.order("stop")
            self.process.communicate(timeout=60)
        except BaseException as exc:
            died = self.process.poll()  # ended before its stop order: it crashed (or was killed)
            self.process.kill()
            self.process.wait()
            if interrupted:
                return
            self._raise_if_interrupted()
            if not isinstance(exc, Exception):
                raise
            # how the shop ended, not the refused order (an OSError: "cannot write DIR: Connection refused")
            if died is not None:
                raise RuntimeError(f"the {self.variant} shop failed (status {died}): {self._last_words()}") from exc
            raise RuntimeError(f"the {self.variant} shop did not stop when told ({exc}), and was killed: "
                               f"{self._last_words()}") from exc
        if interrupted:
            return
        self._raise_if_interrupted()
        if self.process.returncode != 0:
            raise RuntimeError(f"the {self.variant} shop failed (status {self.process.returncode}): "
                               f"{self._last_words()}")
        self.summary = json.loads((self.export_dir / "run.json").read_text(encoding="utf-8"))


def _shoppers(url: str, plan: DemoPlan, seed: int) -> None:
    """Simulated shoppers in their own process (no GIL shared with anything measured)."""
    # SIGINT's default action: Ctrl-C ends it at once and quietly (the demo says it was interrupted)
    code = (f"import signal; signal.signal(signal.SIGINT, signal.SIG_DFL); "
            f"from perfsdk.demo.users import Shoppers; Shoppers({url!r}, rate={plan.sessions_per_s}, "
            f"seconds={plan.warm_up_s}, think_median_s=0.3, products={plan.products}, seed={seed}, workers=32).run()")
    subprocess.run([sys.executable, "-c", code], check=True)


def _load_test(recording: Path, plan: DemoPlan, progress: Callable[[str], None]) -> tuple[Any, Any]:
    """perfsdk's testgen: the recorded mix and sessions at the recorded rate, with the surge in its
    place (the load test), and the same at the recorded rate alone (the fault-finding test)."""
    from perfsdk.testgen.model import TrafficModel
    from perfsdk.testgen.scenario import Scenario

    model = TrafficModel.from_arrow(recording)
    rate = model.sessions / max(model.arrival_window_s, 1e-9)
    progress(f"learned the traffic: {model.requests} requests in {model.sessions} sessions "
             f"({rate:.1f} sessions/s), {len(model.routes)} routes")
    data = json.loads(model.generate("replay", duration_s=plan.load_s, stages=1,
                                     name="the shop's recorded traffic, with a surge").to_json())
    surge = plan.surge
    data["load"]["stages"] = [
        {"duration_s": surge.start_s, "arrival_rate": round(rate, 4)},
        {"duration_s": round(surge.end_s - surge.start_s, 3), "arrival_rate": round(rate * surge.amount, 4)},
        {"duration_s": round(plan.load_s - surge.end_s, 3), "arrival_rate": round(rate, 4)},
    ]
    load_test = Scenario.from_dict(data)
    data["name"] = "the generated test"
    data["load"]["stages"] = [{"duration_s": plan.find_s, "arrival_rate": round(rate, 4)}]
    data["assertions"] = []
    return load_test, Scenario.from_dict(data)


def _uniform_load_test(plan: DemoPlan) -> Any:
    """The traditional load test, as people write one by hand: every page equally often, one request
    a session, at the warm-up's request rate (about four requests a shopper's session)."""
    from perfsdk.testgen.scenario import Scenario

    pages = {"home": ("GET", "/", {}), "search": ("GET", "/search", {"q": "{word}"}),
             "product": ("GET", "/products/{product}", {}),
             "cart": ("POST", "/cart/{product}", {"quantity": "1"}), "checkout": ("POST", "/checkout", {})}
    return Scenario.from_dict({
        "version": 1, "name": "the hand-written uniform test",
        "load": {"model": "open", "stages": [{"duration_s": plan.find_s, "arrival_rate": 4 * plan.sessions_per_s}]},
        "generators": {"product": {"kind": "int", "low": 1, "high": plan.products},
                       "word": {"kind": "choice", "values": ["lamp", "chair", "desk", "mug"]}},
        "tasks": [{"name": name, "weight": 1,
                   "steps": [{"method": method, "path": path, **({"query": query} if query else {})}]}
                  for name, (method, path, query) in pages.items()],
    })


def _locust(scenario: Any, url: str, seconds: float, seed: int, workdir: Path) -> Any:
    from perfsdk.testgen.locust_runner import run_locust

    return run_locust(scenario, url, seed=seed, duration_s=seconds, workdir=workdir / "locust")


def _with_progress(work: Callable[[], Any], expected_s: float, tick: Callable[[float], None]) -> Any:
    """Run ``work``, ticking from a thread every tenth of ``expected_s`` (at least every 5 s).

    The work runs in the caller's thread, where Ctrl-C lands: it stops what it started (Locust)
    before the interrupt goes on. A tick's error (stdout gone: ``BrokenPipeError``) is raised
    once the work is done."""
    done = threading.Event()
    failed: list[BaseException] = []
    began = time.monotonic()
    step = min(5.0, max(1.0, expected_s / 10))

    def ticker() -> None:
        try:
            while not done.wait(step):
                tick(time.monotonic() - began)
        except BaseException as exc:  # handed to the caller's thread
            failed.append(exc)

    thread = threading.Thread(target=ticker, name="perfsdk-demo-progress", daemon=True)
    thread.start()
    try:
        result = work()
    finally:
        done.set()
        thread.join()
    if failed:
        raise failed[0]
    return result


def _rows(out: Path, runs: dict[str, dict[str, Any]], plan: DemoPlan) -> list[TableRow]:
    from perfsdk.export import read

    figures: dict[str, dict[str, float]] = {}
    for variant, run in runs.items():
        spans = read(out / variant)
        t0 = int(run["load_started_ns"])
        faults = run["faults"]
        until = min((f["start_ns"] for f in run["latent"]), default=math.inf)  # then fault finding began
        load = server_spans(spans, t0, None if math.isinf(until) else int(until))
        normal = server_spans(spans, t0, t0 + int(plan.normal_until_s * SECOND))
        surge = next(f for f in faults if f["kind"] == "surge")
        high = server_spans(spans, surge["start_ns"], surge["end_ns"])
        samples = [s for s in run["samples"] if t0 <= s["t_ns"] < until]
        warm = [s for s in run["samples"] if s["t_ns"] < t0]
        thresholds = StaticThresholds(server_spans(spans, None, t0), max(s["rss_mb"] for s in warm))
        surfaced = surfaced_after(spans, run["latent"], thresholds)
        run["surfaced_s"] = surfaced
        if variant == "traditional":
            alerts = thresholds.alerts(load, samples)
        else:
            anomalies = read(out / variant, table="anomalies")
            alerts = [a for a in anomaly_alerts(anomalies) if t0 <= a.start_ns < until]
        score = score_alerts(faults, alerts)
        wall = (samples[-1]["t_ns"] - samples[0]["t_ns"]) / SECOND if len(samples) > 1 else math.nan
        figures[variant] = {
            "p50": _percentile(normal, 50), "p99": _percentile(high, 99),
            "connections": _mean(samples, "pool_size"), "entries": _mean(samples, "cache_entries"),
            "hit_ratio": samples[-1]["cache_hit_ratio"] if samples else math.nan,
            "cpu": 100 * (samples[-1]["cpu_s"] - samples[0]["cpu_s"]) / wall if len(samples) > 1 else math.nan,
            "rss": max((s["rss_mb"] for s in samples), default=math.nan),
            "recall": 100 * score.recall, "precision": 100 * score.precision, "ttd": score.mean_detect_s,
            "surfaced": max(surfaced.values()) if surfaced and not any(map(math.isnan, surfaced.values()))
            else math.nan,
            "requests": float(load.num_rows),
            "errors": 100 * float(pc.sum(pc.equal(load["status_code"], "ERROR")).as_py() or 0) / max(load.num_rows, 1),
        }
        run["score"] = {**asdict(score), "alerts_detail": [asdict(a) for a in merge_alerts(alerts)]}
    t, p = figures["traditional"], figures["perfsdk"]
    normal_s, surge_s = plan.normal_until_s, plan.surge.end_s - plan.surge.start_s
    return [
        TableRow("p50 latency, normal load", f"server spans of the load test's first {normal_s:g} s (no fault yet)",
                 "ms", t["p50"], p["p50"], "lower", *PAPER["p50"]),
        TableRow("p99 latency, high load", f"server spans during the {SURGE:g}x surge ({surge_s:g} s)",
                 "ms", t["p99"], p["p99"], "lower", *PAPER["p99"]),
        TableRow("connections held", "database connections open, mean over the load test", "conns",
                 t["connections"], p["connections"], "lower"),
        TableRow("cache entries held", "product cache entries, mean over the load test", "entries",
                 t["entries"], p["entries"], "lower"),
        TableRow("cache hit ratio", "product cache hits / lookups, whole run", "ratio",
                 t["hit_ratio"], p["hit_ratio"], "higher"),
        TableRow("CPU", "the service process's CPU time over the load test's wall time", "% of a core",
                 t["cpu"], p["cpu"], "lower", *PAPER["cpu"]),
        TableRow("peak memory", "the service process's resident memory, highest sample", "MB",
                 t["rss"], p["rss"], "lower"),
        TableRow("failures detected (recall)", f"of the {len(plan.faults)} injected faults, alerted on the "
                 "series they touch, by 5 s after they ended", "%", t["recall"], p["recall"], "higher",
                 *PAPER["recall"]),
        TableRow("alert precision", "alerts (one a series per 10 s) raised inside a fault's window", "%",
                 t["precision"], p["precision"], "higher"),
        TableRow("time to detect", "fault start to its first alert, mean over the detected faults", "s",
                 t["ttd"], p["ttd"], "lower"),
        TableRow("load test time to surface every fault", "the hand-written uniform test (traditional) and the "
                 f"generated one (perfsdk) against the {len(LATENT_KINDS)} faults a test can see, left on: from its "
                 "first request until one had shown each (blank: not all within "
                 f"{plan.find_s:g} s)", "s", t["surfaced"], p["surfaced"], "lower"),
        TableRow("requests served", "server spans during the load test", "requests",
                 t["requests"], p["requests"], "higher"),
        TableRow("error responses", "server spans with an error status during the load test", "%",
                 t["errors"], p["errors"], "lower"),
    ]


def _write_tables(out: Path, demo: DemoResult, plan: DemoPlan, quick: bool, database_url: str, seed: int) -> None:
    """``comparison.arrow`` (the table) and ``faults.arrow`` (the ground truth), each written whole."""
    from perfsdk.export.writer import write_table_atomically

    info = {"quick": quick, "seconds": round(demo.seconds, 1), "seed": seed,
            "database": database_url.split(":", 1)[0], "plan": asdict(plan)}
    comparison = pa.table({
        "row": [r.row for r in demo.rows], "compared": [r.compared for r in demo.rows],
        "unit": [r.unit for r in demo.rows],
        "traditional": pa.array([_or_none(r.traditional) for r in demo.rows], pa.float64()),
        "perfsdk": pa.array([_or_none(r.perfsdk) for r in demo.rows], pa.float64()),
        "better": [r.better for r in demo.rows],
        "paper_traditional": pa.array([r.paper_traditional for r in demo.rows], pa.float64()),
        "paper_ai": pa.array([r.paper_ai for r in demo.rows], pa.float64()),
        "winner": [r.winner for r in demo.rows],
    }).replace_schema_metadata({"perfsdk.demo": json.dumps(info)})
    faults = [dict(f, run=variant) for variant, run in demo.runs.items() for f in run["faults"]]
    truth = pa.table({
        "run": [f["run"] for f in faults], "fault": [f["name"] for f in faults],
        "kind": [f["kind"] for f in faults], "route": [f["route"] for f in faults],
        "start_ns": pa.array([f["start_ns"] for f in faults], pa.int64()),
        "end_ns": pa.array([f["end_ns"] for f in faults], pa.int64()),
    })
    write_table_atomically(out / "comparison.arrow", comparison)
    write_table_atomically(out / "faults.arrow", truth)
    (out / "runs.json").write_text(json.dumps({v: {k: r[k] for k in r if k != "samples"}
                                               for v, r in demo.runs.items()}, default=str), encoding="utf-8")


def _report(out: Path, progress: Callable[[str], None]) -> Path | None:
    try:
        from perfsdk.report import write_report
    except ImportError:  # the report is not built into this version
        return None
    path = write_report(out, out / "report.html")
    progress(f"report: {path}")
    return Path(path)


def _percentile(spans: pa.Table, q: float) -> float:
    return float(np.percentile(spans["duration_ms"].to_numpy(), q)) if spans.num_rows else math.nan


def _mean(samples: Sequence[dict[str, float]], key: str) -> float:
    return float(np.mean([s[key] for s in samples])) if samples else math.nan


def _or_none(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}" if abs(value) < 1 else f"{value:.1f}"
