"""Live detection on a real service (issue 14): false incidents in normal traffic, faults found.

The demo shop (``perfsdk.demo.service``: Flask on werkzeug, SQLAlchemy over SQLite,
OpenTelemetry's Flask instrumentation) runs in a process of its own with
``perfsdk.init()``'s defaults -- the default detector on every span name, the
resource sampler -- and simulated shoppers (``perfsdk.demo.users``) use it from
another process at a steady rate. After a learning period comes a long stretch of
normal traffic, then a fault schedule with recorded ground truth:

- a latency spike on the product pages (+40 ms);
- a burst of slow report queries on search (a span name never seen before);
- the payment provider failing at checkout (inside the ``charge_payment`` span);
- a 4x traffic surge.

Scored from the incidents the SDK itself grouped and ranked live (written by the
service into ``run.json``):

- **false incidents**: incidents that began in normal traffic (after the learning
  period, outside every fault window and its grace), per 10 minutes of it;
- **detected within**: seconds from a fault's start to the first incident member
  on a series the fault touches (its route, the spans inside it, and for a failing
  dependency the error rate; every series for the surge);
- **own incident**: no incident holds members touched by two faults;
- **origin**: the incident's first member is the faulty span (the route, or the
  span inside it where the fault is).

    .venv/bin/python benches/eval/live_detection.py            # about 17 minutes
    .venv/bin/python benches/eval/live_detection.py --quick    # about a minute, one fault (the suite's)
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perfsdk.demo.run import DemoPlan, _Service
from perfsdk.demo.scoring import ROUTE_CALLS, ROUTE_SERIES, SECOND

GRACE_S = 10.0  # after a fault ends, anomalies may still be the fault's (a recovering queue, a window)


@dataclass(frozen=True)
class Plan:
    rate: float  # sessions a second (about 4.4 requests each)
    learning_s: float
    normal_s: float
    fault_s: float
    gap_s: float
    faults: tuple[tuple[str, str, str, float], ...]  # name, kind, route, amount

    @property
    def total_s(self) -> float:
        return self.learning_s + self.normal_s + len(self.faults) * (self.fault_s + self.gap_s)

    def schedule(self) -> list[tuple[str, str, str, float, float, float]]:
        """The faults as ``DemoPlan.faults`` rows: start and end as fractions of the whole run."""
        rows, at = [], self.learning_s + self.normal_s
        for name, kind, route, amount in self.faults:
            rows.append((name, kind, route, at / self.total_s, (at + self.fault_s) / self.total_s, amount))
            at += self.fault_s + self.gap_s
        return rows


FULL = Plan(rate=12.0, learning_s=150.0, normal_s=600.0, fault_s=20.0, gap_s=40.0, faults=(
    ("latency spike on product pages", "latency", "product", 40.0),
    ("slow report queries on search", "slow_queries", "search", 60_000),
    ("payment provider failing", "failing", "checkout", 0.0),
    ("traffic surge", "surge", "*", 4.0),
))
QUICK = Plan(rate=20.0, learning_s=25.0, normal_s=10.0, fault_s=6.0, gap_s=9.0, faults=(
    ("latency spike on product pages", "latency", "product", 40.0),
))


def touched(fault: dict[str, Any]) -> set[str] | None:
    """The series a fault shows on (None: every series)."""
    if fault["kind"] == "surge":
        return None
    series = {ROUTE_SERIES[fault["route"]], *ROUTE_CALLS.get(fault["route"], ())}
    if fault["kind"] == "failing":
        series.add("spans.error_percent")
    return series


def faulty_span(fault: dict[str, Any]) -> str | None:
    """Where the fault really is: the span inside the route that does the slow or failing work."""
    if fault["kind"] == "surge":
        return None
    calls = ROUTE_CALLS.get(fault["route"], ())
    if fault["kind"] == "slow_queries":
        return "db.report_query"
    if fault["kind"] in ("failing", "latency") and calls:
        return calls[-1]
    return ROUTE_SERIES[fault["route"]]


def score(run: dict[str, Any], plan: Plan) -> dict[str, Any]:
    t0 = int(run["load_started_ns"])
    learned = t0 + int(plan.learning_s * SECOND)
    end = t0 + int(plan.total_s * SECOND)
    faults = run["faults"]
    windows = [(f["start_ns"], f["end_ns"] + int(GRACE_S * SECOND)) for f in faults]
    incidents = run["incidents"]

    def began(incident: dict[str, Any]) -> int:
        return min(m["confirmed_ns"] for m in incident["members"] if m["confirmed_ns"] is not None)

    def in_fault(t: int) -> bool:
        return any(a <= t <= b for a, b in windows)

    normal_ns = (end - learned) - sum(min(b, end) - max(a, learned) for a, b in windows if b > learned)
    false = [i for i in incidents if learned <= began(i) < end and not in_fault(began(i))]
    per_fault = []
    for fault in faults:
        series = touched(fault)
        window = (fault["start_ns"], fault["end_ns"] + int(GRACE_S * SECOND))
        mine = [i for i in incidents if any((series is None or m["series"] in series)
                                            and window[0] <= m["confirmed_ns"] <= window[1] for m in i["members"])]
        hits = [m["confirmed_ns"] for i in mine for m in i["members"]
                if (series is None or m["series"] in series) and window[0] <= m["confirmed_ns"] <= window[1]]
        first = min(mine, key=began) if mine else None
        others = [f for f in faults if f is not fault and f["kind"] != "surge"]
        shared = first is not None and fault["kind"] != "surge" and any(
            m["series"] in (touched(o) or set()) - (series or set()) for o in others for m in first["members"])
        per_fault.append({
            "fault": fault["name"], "detected_s": (min(hits) - fault["start_ns"]) / SECOND if hits else math.nan,
            "incidents": len(mine), "own_incident": first is not None and not shared,
            "origin": first["members"][0]["series"] if first else None, "faulty_span": faulty_span(fault),
            "text": first["text"][:400] if first else "",
        })
    return {
        "normal_minutes": normal_ns / SECOND / 60, "false_incidents": len(false),
        "false_per_10_min": 10 * len(false) / max(normal_ns / SECOND / 60, 1e-9),
        "false_texts": [i["text"][:300] for i in false], "faults": per_fault,
        "requests": run.get("sdk_stats", {}).get("spans"), "gc_attributed": sum(
            1 for i in incidents if any((m.get("likely_cause") or "").startswith("garbage") for m in i["members"])),
    }


def run(plan: Plan, out: Path, seed: int = 0) -> dict[str, Any]:
    demo = DemoPlan(load_s=plan.total_s, products=2000, faults=tuple(plan.schedule()))
    # the shoppers start at wall-clock time {at}: a new process takes a second or two to import
    shoppers = ("import time; from perfsdk.demo.users import Shoppers; s = Shoppers({url!r}, rate={rate}, "
                "seconds={seconds}, think_median_s=0.3, products=2000, seed={seed}, workers=64); "
                "time.sleep(max(0.0, {at} - time.time())); s.run()")
    with _Service("perfsdk", out, demo, "sqlite://", seed) as service:
        service.order("arm")
        with urllib.request.urlopen(service.url + "/", timeout=30) as first:  # starts the schedule's clock
            first.read()
        started, began = time.monotonic(), time.time()
        steady = subprocess.Popen([sys.executable, "-c", shoppers.format(
            url=service.url, rate=plan.rate, seconds=plan.total_s, seed=seed, at=0.0)])
        surge = next((f for f in demo.fault_specs() if f.kind == "surge"), None)
        extra = None
        if surge is not None:  # its shoppers are ready before the fault and start with it
            time.sleep(max(0.0, surge.start_s - 15.0 - (time.monotonic() - started)))
            at = began + surge.start_s
            extra = subprocess.Popen([sys.executable, "-c", shoppers.format(
                url=service.url, rate=plan.rate * (surge.amount - 1), seconds=surge.end_s - surge.start_s,
                seed=seed + 1, at=at)])
        while steady.poll() is None:
            time.sleep(5.0)
            print(f"  {time.monotonic() - started:.0f} s of {plan.total_s:.0f}", file=sys.stderr, flush=True)
        if extra is not None:
            extra.wait()
    return score(service.summary, plan)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a minute, one fault (no targets judged)")
    parser.add_argument("--out", help="keep the service's export here")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    with tempfile.TemporaryDirectory() as tmp:
        result = run(plan, Path(args.out or tmp) / "perfsdk", args.seed)
    print(json.dumps(result, indent=1))
    print(f"false incidents: {result['false_incidents']} in {result['normal_minutes']:.1f} min of normal traffic "
          f"({result['false_per_10_min']:.2f} per 10 min; target <= 1)")
    for f in result["faults"]:
        print(f"{f['fault']}: detected after {f['detected_s']:.2f} s (target <= 2), own incident: "
              f"{f['own_incident']}, origin {f['origin']!r} (faulty span {f['faulty_span']!r})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
