"""What the report shows, computed from the Arrow tables alone.

Everything is aggregated before it is drawn, so a report's cost and size do not
grow with the spans: spans go into at most ``MAX_BUCKETS`` time buckets, per
route, with numpy (one sort for all routes' percentiles); controllers' series
come from the decisions table with ``pyarrow.compute``; incidents are rebuilt
from the anomalies table with the same ``IncidentTracker`` the live SDK uses,
the call graph learned from the spans' parent links.

A directory may hold several services (the tables are partitioned by
``service.name``): routes, controllers and resource metrics are keyed by their
service too (``group_keys``), so two services' same-named routes are two rows,
never one blended figure.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from functools import partial
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from perfsdk.detect import Anomaly
from perfsdk.export.reader import check_columns, read_file, read_readable
from perfsdk.export.schema import TABLES
from perfsdk.instrument.incidents import Incident, IncidentTracker

__all__ = ["COMPARISON", "FAULTS", "MAX_BUCKETS", "RUNS", "SERVICE", "Buckets", "Controller", "Demo", "Fault",
           "ResourceMetric", "Run", "RouteLatency", "controllers", "group_keys", "grouped_percentiles", "incidents",
           "is_export_dir", "load", "resource_metrics", "route_latency"]

MAX_BUCKETS = 120  # points per time series: enough to see a fault, few enough to stay small
COMPARISON, FAULTS = "comparison.arrow", "faults.arrow"
RUNS = ("traditional", "perfsdk")  # a demo directory's two runs, in the order the table reads
SERVICE = "service.name"  # every table's column: what keys a route, a controller, a resource series
SPAN_COLUMNS = ["name", "kind", "start_time", "end_time", "duration_ms", "status_code", "service.name"]
#: What the report reads of a demo's tables (``perfsdk.demo`` writes them); non-nullable: must be there.
_COMPARISON_COLUMNS = pa.schema([
    pa.field("row", pa.string(), nullable=False), pa.field("compared", pa.string()), pa.field("unit", pa.string()),
    pa.field("traditional", pa.float64(), nullable=False), pa.field("perfsdk", pa.float64(), nullable=False),
    pa.field("better", pa.string(), nullable=False), pa.field("paper_traditional", pa.float64()),
    pa.field("paper_ai", pa.float64()), pa.field("winner", pa.string()),
])
_FAULT_COLUMNS = pa.schema([
    pa.field("run", pa.string()), pa.field("fault", pa.string()), pa.field("route", pa.string()),
    pa.field("start_ns", pa.int64(), nullable=False), pa.field("end_ns", pa.int64(), nullable=False),
])
INCIDENT_WINDOW_S = 30.0  # as the live SDK's default (perfsdk.init(incident_window_s=...))
_BUCKET_WIDTHS_S = (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400)


def is_export_dir(path: Path) -> bool:
    """Does ``path`` hold perfsdk tables (as ``perfsdk.init(export_dir=...)`` lays them out)?"""
    return any(_has_files(path / table) for table in TABLES)


def _has_files(root: Path) -> bool:
    if not root.is_dir():
        return False
    for _, _, files in os.walk(root):
        if any(not f.startswith(".") and f.endswith((".arrow", ".parquet")) for f in files):
            return True
    return False


def grouped_percentiles(groups: np.ndarray, values: np.ndarray, n_groups: int, qs: Sequence[float]) -> np.ndarray:
    """Percentiles of ``values`` within each group, for all groups with one sort.

    Returns an array ``(len(qs), n_groups)``, NaN for an empty group; each value
    is what ``np.percentile(group_values, q)`` gives (linear interpolation).

    >>> g = np.array([1, 0, 1, 1, 0]); v = np.array([5.0, 2.0, 1.0, 3.0, 4.0])
    >>> grouped_percentiles(g, v, 3, [50, 100]).tolist()
    [[3.0, 3.0, nan], [4.0, 5.0, nan]]
    """
    order = np.lexsort((values, groups))
    ordered = values[order]
    counts = np.bincount(groups, minlength=n_groups)[:n_groups]
    starts = np.cumsum(counts) - counts
    out = np.full((len(qs), n_groups), np.nan)
    has = counts > 0
    for row, q in enumerate(qs):
        pos = starts[has] + q / 100.0 * (counts[has] - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, starts[has] + counts[has] - 1)
        frac = pos - lo
        out[row, has] = ordered[lo] + (ordered[hi] - ordered[lo]) * frac
    return out


def group_keys(table: pa.Table, columns: Sequence[str]) -> tuple[list[tuple[Any, ...]], np.ndarray]:
    """The distinct combinations of ``columns`` (sorted) and each row's index into them.

    The one place the report's grouping keys are built: routes, controllers and
    resource series are all keyed by their service as well as their name, so a
    directory shared by several services never blends them. The columns must
    hold no null (``Run.read`` leaves such rows out).

    >>> t = pa.table({"service.name": ["web", "batch", "web"], "name": ["GET /", "GET /", "GET /"]})
    >>> keys, group = group_keys(t, ["service.name", "name"])
    >>> keys, group.tolist()
    ([('batch', 'GET /'), ('web', 'GET /')], [1, 0, 1])
    """
    if table.num_rows == 0:
        return [], np.zeros(0, dtype=np.int64)
    code = np.zeros(table.num_rows, dtype=np.int64)
    dictionaries = []
    for column in columns:  # one integer a row: the combination's position in the product of the dictionaries
        encoded = pc.dictionary_encode(table[column].combine_chunks())
        dictionaries.append(encoded.dictionary.to_pylist())
        code = code * len(dictionaries[-1]) + encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    codes, group = np.unique(code, return_inverse=True)
    parts = np.unravel_index(codes, [len(d) for d in dictionaries])
    keys = [tuple(d[i] for d, i in zip(dictionaries, row)) for row in zip(*(p.tolist() for p in parts))]
    order = sorted(range(len(keys)), key=keys.__getitem__)
    rank = np.empty(len(keys), dtype=np.int64)
    rank[order] = np.arange(len(keys))
    return [keys[i] for i in order], rank[group.ravel()]


@dataclass(frozen=True)
class Buckets:
    """Equal time buckets over a run: ``count`` of ``width_s`` seconds from ``t0_ns``."""

    t0_ns: int
    width_s: float
    count: int

    @classmethod
    def over(cls, t0_ns: int, t1_ns: int, max_buckets: int = MAX_BUCKETS) -> "Buckets":
        """The narrowest round width that covers ``[t0, t1]`` in at most ``max_buckets``.

        >>> b = Buckets.over(0, 60 * 10**9)
        >>> b.width_s, b.count
        (0.5, 120)
        """
        span_s = max((t1_ns - t0_ns) / 1e9, 1e-3)
        width = next((w for w in _BUCKET_WIDTHS_S if span_s / w <= max_buckets),
                     span_s / max_buckets)
        return cls(t0_ns, float(width), max(1, min(max_buckets, math.ceil(span_s / width + 1e-9))))

    def index(self, t_ns: np.ndarray) -> np.ndarray:
        i = ((t_ns - self.t0_ns) // int(self.width_s * 1e9)).astype(np.int64)
        return np.clip(i, 0, self.count - 1)

    @property
    def centers_s(self) -> np.ndarray:
        """Bucket midpoints in seconds from ``t0_ns``: where a bucket's figure is drawn."""
        return (np.arange(self.count) + 0.5) * self.width_s


@dataclass
class RouteLatency:
    """One service's route's spans: overall figures and per-bucket p50/p99 (NaN: no span that bucket)."""

    route: str
    service: str
    count: int
    errors: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    p50_series: np.ndarray | None = None
    p99_series: np.ndarray | None = None
    count_series: np.ndarray | None = None


def route_latency(spans: pa.Table, buckets: Buckets, top: int) -> tuple[list[RouteLatency], str]:
    """Per-route latency, busiest first; the ``top`` busiest get their per-bucket series.

    Routes are the server spans' names (OpenTelemetry's HTTP server
    instrumentations name them ``METHOD route-template``, e.g. ``GET
    /products/<int:pid>``); a service with no server spans (only ``@monitor``)
    is shown by span name. A route is one service's: two services' same-named
    routes are two. Returns the routes and which kind was used.
    """
    if spans.num_rows == 0:
        return [], "SERVER"
    server = pc.equal(spans["kind"], "SERVER")
    kind = "SERVER"
    if pc.any(server).as_py():
        spans = spans.filter(server)
    else:
        kind = "any"
    names, route = group_keys(spans, [SERVICE, "name"])
    duration = spans["duration_ms"].to_numpy()
    errors = pc.equal(spans["status_code"], "ERROR").to_numpy(zero_copy_only=False)
    n = len(names)
    overall = grouped_percentiles(route, duration, n, (50, 95, 99, 100))
    counts = np.bincount(route, minlength=n)
    error_counts = np.bincount(route, weights=errors.astype(np.float64), minlength=n)
    order = np.argsort(-counts, kind="stable")
    busiest = order[:top]
    routes = [RouteLatency(names[i][1], names[i][0], int(counts[i]), int(error_counts[i]), *overall[:, i].tolist())
              for i in order]
    if len(busiest):
        slot = np.full(n, -1, dtype=np.int64)
        slot[busiest] = np.arange(len(busiest))
        chosen = slot[route]
        keep = chosen >= 0
        start = pc.cast(spans["start_time"], pa.int64()).to_numpy(zero_copy_only=False)
        group = chosen[keep] * buckets.count + buckets.index(start[keep])
        n_groups = len(busiest) * buckets.count
        series = grouped_percentiles(group, duration[keep], n_groups, (50, 99))
        per_bucket = np.bincount(group, minlength=n_groups)
        for k, route_stats in enumerate(routes[:len(busiest)]):
            window = slice(k * buckets.count, (k + 1) * buckets.count)
            route_stats.p50_series = series[0, window]
            route_stats.p99_series = series[1, window]
            route_stats.count_series = per_bucket[window]
    return routes, kind


@dataclass
class Controller:
    """One service's adaptive cache's or pool's decisions, as arrays over time."""

    name: str
    service: str
    kind: str  # "cache", "pool" or "controller"
    rows: pa.Table  # its decisions, in time order

    @property
    def t_ns(self) -> np.ndarray:
        return pc.cast(self.rows["timestamp"], pa.int64()).to_numpy(zero_copy_only=False)

    def column(self, name: str) -> np.ndarray:
        return self.rows[name].to_numpy(zero_copy_only=False).astype(np.float64)

    def feature(self, name: str) -> np.ndarray:
        """A state feature over time (NaN where a decision did not record it)."""
        looked_up = pc.map_lookup(self.rows["state_features"], pa.scalar(name), "first")
        return pc.fill_null(looked_up, math.nan).to_numpy(zero_copy_only=False).astype(np.float64)

    @property
    def held(self) -> np.ndarray:
        """The value the target held after each decision: the new one if applied, else the old
        (an advisory controller's ``value_after`` is only a recommendation)."""
        applied = self.rows["applied"].to_numpy(zero_copy_only=False)
        return np.where(applied, self.column("value_after"), self.column("value_before"))


def controllers(decisions: pa.Table) -> list[Controller]:
    """The decisions, split by service and controller; a cache is known by its hit ratio, a pool by its
    utilisation."""
    if decisions.num_rows == 0:
        return []
    decisions = decisions.sort_by("timestamp")
    keys, group = group_keys(decisions, [SERVICE, "controller"])
    order = np.argsort(group, kind="stable")  # each controller's rows together, still in time order
    ends = np.cumsum(np.bincount(group, minlength=len(keys)))
    out = []
    for (service, name), start, end in zip(keys, np.r_[0, ends[:-1]], ends):
        rows = decisions.take(pa.array(order[start:end]))
        features = set(pc.unique(rows["state_features"].combine_chunks().keys).to_pylist())
        kind = "cache" if "hit_ratio" in features else "pool" if "utilisation" in features else "controller"
        out.append(Controller(name, service, kind, rows))
    return out


@dataclass
class ResourceMetric:
    """One resource metric's bucket means, a line per service (``means[k]`` is ``services[k]``'s).

    The resources table has no process id: several processes of one service
    writing the same metric are one line, the mean of their samples.
    """

    metric: str
    unit: str
    services: list[str]
    means: np.ndarray  # (len(services), buckets): NaN where a service has no sample
    more_services: int = 0  # services with this metric left out (those with the fewest samples)


def resource_metrics(resources: pa.Table, buckets: Buckets, top_metrics: int,
                     top_services: int) -> tuple[list[ResourceMetric], int]:
    """The first ``top_metrics`` metrics (by name), each with the ``top_services`` services that
    sampled it most; and how many metrics were left out."""
    keys, group = group_keys(resources, ["metric", SERVICE])
    metrics = sorted({metric for metric, _ in keys})
    chosen = metrics[:top_metrics]
    samples = np.bincount(group, minlength=len(keys))
    slot = np.full(len(keys), -1, dtype=np.int64)  # a chosen series' row in the sums, or -1
    picked: list[tuple[str, list[int], int]] = []
    for metric in chosen:
        mine = [g for g, (m, _) in enumerate(keys) if m == metric]
        busiest = sorted(sorted(mine, key=lambda g: -samples[g])[:top_services])  # then by service name
        slot[busiest] = np.arange(len(busiest)) + sum(len(p[1]) for p in picked)
        picked.append((metric, busiest, len(mine) - len(busiest)))
    n_series = sum(len(p[1]) for p in picked)
    row = slot[group]
    keep = row >= 0
    t = pc.cast(resources["timestamp"], pa.int64()).to_numpy(zero_copy_only=False)[keep]
    values = resources["value"].to_numpy(zero_copy_only=False).astype(np.float64)[keep]
    cell = row[keep] * buckets.count + buckets.index(t)
    counts = np.bincount(cell, minlength=n_series * buckets.count)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (np.bincount(cell, weights=values, minlength=n_series * buckets.count) / counts)
    means = means.reshape(n_series, buckets.count)
    has_unit = pc.is_valid(resources["unit"]).to_numpy(zero_copy_only=False)
    out = []
    for metric, busiest, more in picked:
        rows = slot[busiest]
        with_unit = np.flatnonzero(has_unit & np.isin(group, busiest))
        unit = resources["unit"][int(with_unit[0])].as_py() if len(with_unit) else ""
        out.append(ResourceMetric(metric, unit, [keys[g][1] for g in busiest], means[rows], more))
    return out, len(metrics) - len(chosen)


def incidents(anomalies: pa.Table, path: Path) -> list[Incident]:
    """The anomalies grouped into incidents as the live SDK groups them, likely origin first.

    The live tracker learns which span names call which from the spans it
    sees; here the same call graph is read from the spans' parent links (only
    when more than one span series has anomalies: it relates them). The live
    tracker's caps (the newest 100 incidents, 50 anomalies each) bound a
    process's memory; a report shows every anomaly, so its tracker holds all
    of them. It is given them in onset order, so it weighs each against the
    incidents still open only: the work grows with the anomalies times the
    incidents open at once, not with the square of a long run's anomalies.
    Each service's anomalies are grouped apart, as each service's process
    groups its own: two services' same-named routes are not one series.
    """
    if anomalies.num_rows == 0:
        return []
    services: dict[str, list[Anomaly]] = {}  # each service's own tracker, as each process has its own
    for anomaly in sorted((_anomaly(row) for row in anomalies.to_pylist()), key=_onset_key):
        services.setdefault(str(anomaly.details.get(SERVICE, "")), []).append(anomaly)
    span_series = {(a.details.get(SERVICE), a.details.get("series")) for members in services.values()
                   for a in members if a.details.get("source") != "resource"}
    graphs = _call_graph(path) if len(span_series) > 1 else {}  # it relates series: read it when it can
    out: list[Incident] = []
    for service, members in sorted(services.items()):
        callers = graphs.get(service, {})
        tracker = IncidentTracker(partial(_ancestors, callers), window_s=INCIDENT_WINDOW_S,
                                  max_incidents=len(members), max_members=len(members))
        for anomaly in members:  # in onset order: those with no time last, in the latest incident
            tracker.add(anomaly)
        out += tracker.incidents()
        assert tracker.dropped_members == 0  # no cap it could meet
    if len(services) > 1:
        out.sort(key=lambda i: i.started.timestamp() if i.started is not None else math.inf)
    return out


def _anomaly(row: dict[str, Any]) -> Anomaly:
    details = {k: v for k, v in (row.get("details") or [])}
    details.update({k: row[k] for k in ("series", "source", "metric", "onset", "confirmed_at", "trace_id",
                                        "span_id", "service.name") if row.get(k) is not None})
    return Anomaly(detector=row["detector"], index=int(row["index"] or 0), value=_num(row["value"]),
                   expected=_num(row["expected"]), std=_num(row["std"]), score=_num(row["score"]),
                   threshold=_num(row["threshold"]), timestamp=row["timestamp"], details=details)


def _num(value: Any) -> float:
    return math.nan if value is None else float(value)


def _onset_key(a: Anomaly) -> float:
    onset = a.details.get("onset", a.timestamp)
    return onset.timestamp() if isinstance(onset, datetime) else math.inf


def _ancestors(callers: dict[str, set[str]], name: str) -> set[str]:
    seen: set[str] = set()
    frontier = [name]
    while frontier:
        for caller in callers.get(frontier.pop(), ()):
            if caller not in seen:
                seen.add(caller)
                frontier.append(caller)
    return seen


def _call_graph(path: Path) -> dict[str, dict[str, set[str]]]:
    """service -> callee -> the span names of that service that called it, from every span's parent
    link (a service's process sees only its own spans' links)."""
    columns = ["trace_id", "span_id", "parent_span_id", "name", SERVICE]
    spans, _ = read_readable(path, columns=columns)  # (Run names the unreadable files)
    children = spans.filter(pc.is_valid(spans["parent_span_id"])).select(["trace_id", "parent_span_id", "name",
                                                                          SERVICE])
    if children.num_rows == 0:
        return {}
    parents = spans.select(["trace_id", "span_id", "name", SERVICE]).rename_columns(
        ["trace_id", "parent_span_id", "caller", SERVICE])
    edges = children.join(parents, keys=["trace_id", "parent_span_id", SERVICE], join_type="inner")
    pairs = edges.group_by([SERVICE, "caller", "name"]).aggregate([])
    graph: dict[str, dict[str, set[str]]] = {}
    for service, caller, callee in zip(pairs[SERVICE].to_pylist(), pairs["caller"].to_pylist(),
                                       pairs["name"].to_pylist()):
        if caller != callee:
            graph.setdefault(service, {}).setdefault(callee, set()).add(caller)
    return graph


@dataclass
class Run:
    """One export directory's tables, read for the report."""

    name: str
    path: Path
    spans: pa.Table
    anomalies: pa.Table
    decisions: pa.Table
    resources: pa.Table
    t0_ns: int = 0
    t1_ns: int = 0
    services: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # files that could not be read, and why
    dropped: list[str] = field(default_factory=list)  # rows left out (a required value missing), how many and why

    @classmethod
    def read(cls, name: str, path: Path) -> "Run":
        tables, skipped = {}, []
        for t in TABLES:
            tables[t], unreadable = read_readable(path, table=t, columns=SPAN_COLUMNS if t == "spans" else None)
            skipped += unreadable
        dropped: list[str] = []
        for t in TABLES:
            tables[t] = _complete_rows(t, tables[t], dropped)
        run = cls(name, path, tables["spans"], tables["anomalies"], tables["decisions"], tables["resources"],
                  skipped=skipped, dropped=dropped)
        columns = [run.spans["start_time"], run.spans["end_time"], run.anomalies["timestamp"],
                   run.decisions["timestamp"], run.resources["timestamp"]]
        bounds = [pc.min_max(pc.cast(c, pa.int64())).as_py() for c in columns]
        starts = [b["min"] for b in bounds if b["min"] is not None]
        ends = [b["max"] for b in bounds if b["max"] is not None]
        run.t0_ns, run.t1_ns = (min(starts), max(ends)) if starts else (0, 10**9)
        services: set[str] = set()
        for table in tables.values():
            if "service.name" in table.column_names:
                services.update(s for s in pc.unique(table["service.name"]).to_pylist() if s)
        run.services = sorted(services)
        return run

    @property
    def empty(self) -> bool:
        return not any(t.num_rows for t in (self.spans, self.anomalies, self.decisions, self.resources))


def _complete_rows(table: str, rows: pa.Table, dropped: list[str]) -> pa.Table:
    """``rows`` without those missing a value the schema requires (a file from another writer), or
    with a span duration that is no finite number; each kind left out is told in ``dropped``.
    Bad data in a stream is rejected and counted, not a reason to lose the whole report."""
    required = [f.name for f in TABLES[table] if not f.nullable and f.name in rows.column_names]
    for column in required:
        missing = rows[column].null_count
        if missing:
            rows = rows.filter(pc.is_valid(rows[column]))
            dropped.append(f"{missing:,} {table} row{'s' if missing > 1 else ''} with no {column}")
    if table == "spans" and rows.num_rows:
        finite = pc.is_finite(rows["duration_ms"])
        bad = rows.num_rows - pc.sum(finite).as_py()
        if bad:
            rows = rows.filter(finite)
            dropped.append(f"{bad:,} span{'s' if bad > 1 else ''} whose duration_ms is not a finite number")
    return rows


@dataclass(frozen=True)
class Fault:
    """An injected fault: the ground truth a demo run recorded."""

    fault: str
    route: str
    start_ns: int
    end_ns: int
    run: str = ""  # the run it was injected into, when the table says


@dataclass
class Demo:
    """A demo directory: the comparison table, the faults and the runs' export directories."""

    comparison: pa.Table
    info: dict[str, Any]
    faults: list[Fault]
    runs: list[tuple[str, Path]]


def load(path: Path) -> tuple[Demo | None, list[tuple[str, Path]]]:
    """What ``path`` holds: a demo directory (its table, faults and runs) or one export directory.

    Raises ``FileNotFoundError`` or ``ValueError`` (saying where it looked) when there is nothing to show.
    """
    import json

    if not path.exists():
        raise FileNotFoundError(f"{path}: no such directory")
    if not path.is_dir():
        raise ValueError(f"{path}: not a directory (give the export directory, or a demo's output directory)")
    if (path / COMPARISON).is_file():
        comparison = read_file(path / COMPARISON)
        check_columns(path / COMPARISON, comparison.schema, _COMPARISON_COLUMNS, "demo comparison table")
        raw = (comparison.schema.metadata or {}).get(b"perfsdk.demo", b"{}")
        try:
            info = json.loads(raw)
        except ValueError:
            info = {}
        faults = []
        if (path / FAULTS).is_file():
            table = read_file(path / FAULTS)
            check_columns(path / FAULTS, table.schema, _FAULT_COLUMNS, "demo faults table")
            faults = [Fault(str(r.get("fault") or ""), str(r.get("route") or ""), int(r["start_ns"]), int(r["end_ns"]),
                            str(r.get("run") or ""))
                      for r in table.to_pylist() if r.get("start_ns") is not None and r.get("end_ns") is not None]
        runs = [(name, path / name) for name in RUNS if (path / name).is_dir()]
        return Demo(comparison, info if isinstance(info, dict) else {}, faults, runs), runs
    if is_export_dir(path):
        return None, [(path.name or str(path), path)]
    looked = ", ".join(f"{t}/" for t in TABLES)
    raise ValueError(f"{path}: no perfsdk tables found (looked for {looked} with .arrow or .parquet files, "
                     f"and for a demo's {COMPARISON})")
