"""Scoring a demo run: the alerts each side raised, matched against the faults really injected.

Both sides are scored by the same rules:

- **alerts**: ``traditional`` alerts come from static thresholds set on the warm-up
  (a route's p95 over a 5-second window above twice its warm-up p95, its error rate
  above 5 %, or the process's memory above 1.5 times its warm-up peak), raised when
  the window closes; ``perfsdk``'s are the anomalies it exported, raised when confirmed.
- **recall**: a fault is detected when an alert on a series it touches is raised
  between its start and ``grace_s`` after its end (``surge`` touches every series; a
  memory leak its route and the process's memory; a failing dependency its route and
  the share of failed requests).
- **precision**: alerts on one series less than ``merge_s`` apart are one (what a
  pager would send); one is true when it was raised inside any fault's window (plus
  the grace): a slow query holding the pool's connections really does slow other routes.
- **time to detect**: from a fault's start to the first alert that detects it.

>>> from datetime import datetime, timezone
>>> faults = [{"name": "spike", "kind": "latency", "route": "product", "start_ns": 10 * SECOND,
...            "end_ns": 20 * SECOND}]
>>> alerts = [Alert("GET /products/<int:pid>", 12 * SECOND, 13 * SECOND, "p95 41 ms > 8 ms"),
...           Alert("GET /", 50 * SECOND, 51 * SECOND, "p95 9 ms > 8 ms")]
>>> score = score_alerts(faults, alerts)
>>> score.recall, score.precision, score.detect_s, score.alerts
(1.0, 0.5, {'spike': 2.0}, 2)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["Alert", "DetectionScore", "ROUTE_CALLS", "ROUTE_SERIES", "StaticThresholds", "anomaly_alerts",
           "merge_alerts", "score_alerts", "server_spans", "surfaced_after"]

SECOND = 1_000_000_000
RSS_SERIES = "process.memory.rss_mb"
ERROR_SERIES = "spans.error_percent"
#: The shop's routes (the fault schedule's names) and the span names the Flask instrumentation gives them.
ROUTE_SERIES = {
    "home": "GET /",
    "product": "GET /products/<int:pid>",
    "search": "GET /search",
    "cart": "POST /cart/<int:pid>",
    "checkout": "POST /checkout",
}
#: The spans inside a route (the shop's own): a fault on the route shows on them too.
ROUTE_CALLS = {"search": ("db.report_query",), "checkout": ("charge_payment",)}


@dataclass(frozen=True)
class Alert:
    """One alert: the series it is about, when it was raised (and, merged, the last one), and why."""

    series: str
    start_ns: int
    end_ns: int
    why: str = ""


@dataclass
class DetectionScore:
    recall: float
    precision: float
    detect_s: dict[str, float]  # fault -> seconds from its start to its first detecting alert
    alerts: int
    missed: list[str] = field(default_factory=list)

    @property
    def mean_detect_s(self) -> float:
        return float(np.mean(list(self.detect_s.values()))) if self.detect_s else math.nan


def server_spans(spans: pa.Table, start_ns: int | None = None, end_ns: int | None = None) -> pa.Table:
    """The server spans (one a request) that started in ``[start_ns, end_ns)``."""
    starts = pc.cast(spans["start_time"], pa.int64())
    keep = pc.equal(spans["kind"], "SERVER")
    if start_ns is not None:
        keep = pc.and_(keep, pc.greater_equal(starts, start_ns))
    if end_ns is not None:
        keep = pc.and_(keep, pc.less(starts, end_ns))
    return spans.filter(keep)


class StaticThresholds:
    """The traditional alerting: fixed thresholds set once, on the warm-up.

    ``factor`` times each route's warm-up p95 (and at least ``min_ms`` above it), an
    error rate of ``error_rate``, ``memory_factor`` times the warm-up's peak memory.
    """

    def __init__(self, warm_up: pa.Table, warm_up_rss_mb: float, *, factor: float = 2.0, min_ms: float = 5.0,
                 error_rate: float = 0.05, memory_factor: float = 1.5, window_s: float = 5.0,
                 min_requests: int = 3) -> None:
        self.latency_ms: dict[str, float] = {}
        for name, durations in _by_name(server_spans(warm_up)).items():
            p95 = float(np.percentile(durations, 95))
            self.latency_ms[name] = max(factor * p95, p95 + min_ms)
        self.error_rate, self.window_s, self.min_requests = error_rate, window_s, min_requests
        self.rss_mb = memory_factor * warm_up_rss_mb

    def alerts(self, spans: pa.Table, samples: Sequence[Mapping[str, float]]) -> list[Alert]:
        """The windows that broke a threshold, as alerts (not merged)."""
        spans = server_spans(spans)
        out: list[Alert] = []
        if spans.num_rows:
            window = int(self.window_s * SECOND)
            starts = pc.cast(spans["start_time"], pa.int64()).to_numpy()
            durations = spans["duration_ms"].to_numpy()
            errors = pc.equal(spans["status_code"], "ERROR").to_numpy(zero_copy_only=False)
            names = np.asarray(spans["name"].to_pylist(), dtype=object)
            buckets = (starts - starts.min()) // window
            for name in np.unique(names):
                mine = names == name
                limit = self.latency_ms.get(str(name))
                for bucket in np.unique(buckets[mine]):
                    here = mine & (buckets == bucket)
                    if here.sum() < self.min_requests:
                        continue
                    closed = int(starts.min() + (bucket + 1) * window)  # evaluated when the window closes
                    p95 = float(np.percentile(durations[here], 95))
                    failed = float(errors[here].mean())
                    if limit is not None and p95 > limit:
                        out.append(Alert(str(name), closed, closed, f"p95 {p95:.1f} ms > {limit:.1f} ms"))
                    elif failed > self.error_rate:
                        out.append(Alert(str(name), closed, closed,
                                         f"errors {100 * failed:.0f} % > {100 * self.error_rate:.0f} %"))
        for sample in samples:  # (errors are judged per route above; memory is the process's)
            if sample["rss_mb"] > self.rss_mb:
                t = int(sample["t_ns"])
                out.append(Alert(RSS_SERIES, t, t, f"memory {sample['rss_mb']:.0f} MB > {self.rss_mb:.0f} MB"))
        return out


def anomaly_alerts(anomalies: pa.Table) -> list[Alert]:
    """perfsdk's exported anomalies as alerts, raised when confirmed."""
    if not anomalies.num_rows:
        return []
    point = _nanoseconds(anomalies["timestamp"])
    raised = np.where(np.isnan(confirmed := _nanoseconds(anomalies["confirmed_at"])), point, confirmed)
    out = []
    for series, at, value, expected in zip(anomalies["series"].to_pylist(), raised,
                                           anomalies["value"].to_pylist(), anomalies["expected"].to_pylist()):
        if not math.isnan(at):
            out.append(Alert(series, int(at), int(at), f"{value:.1f} against {expected:.1f} expected"))
    return out


def merge_alerts(alerts: Iterable[Alert], merge_s: float = 10.0) -> list[Alert]:
    """Alerts on one series less than ``merge_s`` apart, as one (what a pager would send)."""
    gap = int(merge_s * SECOND)
    merged: list[Alert] = []
    last: dict[str, int] = {}
    for alert in sorted(alerts, key=lambda a: (a.start_ns, a.series)):
        at = last.get(alert.series)
        if at is not None and alert.start_ns - merged[at].end_ns < gap:
            previous = merged[at]
            merged[at] = Alert(previous.series, previous.start_ns, max(previous.end_ns, alert.end_ns), previous.why)
            continue
        last[alert.series] = len(merged)
        merged.append(alert)
    return merged


def score_alerts(faults: Sequence[Mapping[str, Any]], alerts: Sequence[Alert], grace_s: float = 5.0,
                 merge_s: float = 10.0) -> DetectionScore:
    """Recall, precision and time to detect (see the module docstring)."""
    grace = int(grace_s * SECOND)
    detect_s: dict[str, float] = {}
    for fault in faults:
        touched = _series_of(fault)
        hits = [a.start_ns for a in alerts if (touched is None or a.series in touched)
                and fault["start_ns"] <= a.start_ns <= fault["end_ns"] + grace]
        if hits:
            detect_s[fault["name"]] = (min(hits) - fault["start_ns"]) / SECOND
    pages = merge_alerts(alerts, merge_s)
    true = sum(any(f["start_ns"] <= a.start_ns <= f["end_ns"] + grace for f in faults) for a in pages)
    return DetectionScore(
        recall=len(detect_s) / len(faults) if faults else math.nan,
        precision=true / len(pages) if pages else math.nan,
        detect_s=detect_s, alerts=len(pages),
        missed=[f["name"] for f in faults if f["name"] not in detect_s])


def surfaced_after(spans: pa.Table, latent: Sequence[Mapping[str, Any]], thresholds: StaticThresholds) -> dict[str, float]:
    """For each latent fault, seconds from the load test's first request after the faults went on
    to the first request that showed it: an error from a failing route, or an answer slower than
    the route's static threshold from a slow one (NaN: none did)."""
    if not latent:
        return {}
    after = server_spans(spans, min(f["start_ns"] for f in latent))
    if not after.num_rows:
        return {f["name"]: math.nan for f in latent}
    starts = pc.cast(after["start_time"], pa.int64()).to_numpy()
    names = np.asarray(after["name"].to_pylist(), dtype=object)
    failed = pc.equal(after["status_code"], "ERROR").to_numpy(zero_copy_only=False)
    durations = after["duration_ms"].to_numpy()
    first = starts.min()
    out = {}
    for fault in latent:
        route = ROUTE_SERIES.get(fault["route"], fault["route"])
        shows = failed if fault["kind"] == "failing" else durations > thresholds.latency_ms.get(route, math.inf)
        hits = starts[(names == route) & shows]
        out[fault["name"]] = (hits.min() - first) / SECOND if len(hits) else math.nan
    return out


def _series_of(fault: Mapping[str, Any]) -> set[str] | None:
    if fault["kind"] == "surge":
        return None
    series = {ROUTE_SERIES.get(fault["route"], fault["route"]), *ROUTE_CALLS.get(fault["route"], ())}
    if fault["kind"] == "memory_leak":
        series.add(RSS_SERIES)
    if fault["kind"] == "failing":
        series.add(ERROR_SERIES)
    return series


def _by_name(spans: pa.Table) -> dict[str, np.ndarray]:
    names = np.asarray(spans["name"].to_pylist(), dtype=object)
    durations = spans["duration_ms"].to_numpy()
    return {str(n): durations[names == n] for n in np.unique(names)} if len(names) else {}


def _nanoseconds(column: pa.ChunkedArray) -> np.ndarray:
    """A timestamp column as float nanoseconds, NaN where null."""
    return pc.cast(column, pa.int64()).to_numpy(zero_copy_only=False).astype(np.float64)
