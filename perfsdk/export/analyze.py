"""``perfsdk analyze``: run the batch detectors over exported spans.

The unit of work is one partition of the spans dataset (one service on one
day): within it, spans are grouped by process (the writer a file's name names, ``process_of``:
a fleet's processes share a partition, and each one's detectors saw only its own spans), service
and name (two services whose names map to one directory share a partition, never a
series), kept in the order they were exported (the order they ended), and each series' durations go
through a detector's Numba batch kernel. A local run and a Dask run split the work the
same way, so they produce identical results.

Each name's series is judged exactly as the live processor judges it: the
same detector preset (``perfsdk.detect.span_detectors``; by default
``perfsdk.default_detector()``, whose alerts confirm themselves, one per
incident) or the same run rule for the raw detectors (``perfsdk.detect.RunRule``:
a flagged, material onset, then ``confirm`` points beyond the band it broke),
and the same rule that a return to normal is not an anomaly. An anomaly is the
run's first point, with the run's length and end.
"""

from __future__ import annotations

import bisect
import os
import re
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from perfsdk.detect import DEFAULT_CONFIRM, AlertPipeline, Onset, RunRule, span_detectors
from perfsdk.export.reader import UNREADABLE, partition_root, read_file, table_root, unreadable
from perfsdk.export.schema import ANOMALIES, SPANS
from perfsdk.export.writer import RotatingWriter

__all__ = ["Analysis", "analyze", "analyze_partition", "export_root", "process_of", "span_partitions"]

SPAN_COLUMNS = ["name", "start_time", "duration_ms", "service.name", "trace_id", "span_id"]
_SPAN_TYPES = pa.schema([SPANS.field(c).with_nullable(True) for c in SPAN_COLUMNS])  # so every file concatenates


def span_partitions(path: str | os.PathLike[str]) -> list[list[str]]:
    """Published span files, grouped by partition directory (sorted, so runs are reproducible), under
    an export directory, its spans table, or one of the table's ``service=``/``date=`` partitions."""
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    if root.is_file():
        return [[str(root)]]
    root = table_root(root, "spans")
    levels = ["service=*", "date=*", "part-*"]
    below = levels[len(_partition_names(root)):]  # what is left of the layout below a partition given
    groups: dict[str, list[str]] = defaultdict(list)
    for file in sorted(root.glob("/".join(below))):  # spans partitions only
        if file.suffix in (".arrow", ".parquet"):
            groups[str(file.parent)].append(str(file))
    return [groups[k] for k in sorted(groups)]


def export_root(path: str | os.PathLike[str]) -> Path:
    """The export directory that a spans file or directory belongs to: where ``analyze`` writes
    its anomalies table by default, beside the spans table, never inside it (a reader of the
    spans would meet the anomalies' files there).

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> (root / "spans" / "service=shop" / "date=2026-01-01").mkdir(parents=True)
    >>> [export_root(root / p) == root for p in ("spans/service=shop/date=2026-01-01/part-1.arrow", "spans", "")]
    [True, True, True]
    """
    path = Path(os.path.abspath(path))
    directory = partition_root(path if path.is_dir() else path.parent)
    return directory.parent if directory.name == "spans" else directory


def _partition_names(directory: Path) -> list[str]:
    """The ``service=``/``date=`` partitions ``directory`` is inside of (itself included), outermost first."""
    return list(directory.relative_to(partition_root(directory)).parts)


#: A span file's name as ``RotatingWriter`` makes it: ``part-<utc time>-<pid>-<tag>-<seq>``.
_FILE_NAME = re.compile(r"part-[^-]+-(\d+)-(.+)-\d+")
#: The tag earlier writers drew afresh for each file (``RotatingWriter`` draws one per writer now, of 12
#: hex digits): it names no writer, so such files are told apart by their pid alone.
_PER_FILE_TAG = re.compile(r"[0-9a-f]{8}")


def process_of(file: str | os.PathLike[str]) -> str:
    """The writer of a span file, from its name: ``<pid>-<tag>``, one process's spans, which its own live
    detectors judged (the tag tells processes of one pid on different hosts apart); ``<pid>`` for a file
    of an earlier writer, whose tag was drawn per file; "" for a name not of that form.

    >>> process_of("spans/service=shop/date=2026-01-01/part-20260101T000000000000-1-5e6f7a8b9c0d-000007.arrow")
    '1-5e6f7a8b9c0d'
    >>> process_of("spans/service=shop/date=2026-01-01/part-20260101T000000000000-4242-1a2b3c4d-000007.arrow")
    '4242'
    """
    match = _FILE_NAME.fullmatch(Path(file).name.rsplit(".", 1)[0])
    if not match:
        return ""
    pid, tag = match.groups()
    return pid if _PER_FILE_TAG.fullmatch(tag) else f"{pid}-{tag}"


def _process_details(process: str) -> list[tuple[str, str]]:
    """An anomaly's details naming its series' process (``process_of``): the pid, and the writer
    (``<pid>-<tag>``) where the files' names tell it."""
    if not process:
        return []
    pid, _, tag = process.partition("-")  # a pid has no "-"; a tag given to the writer may
    return [("pid", pid)] + ([("writer", process)] if tag else [])


def _check_out(out: Path) -> None:
    """``ValueError`` naming ``out`` unless the anomalies can go there: a directory (or none yet),
    outside every spans table."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"out {out} is a file: give a directory (the anomalies table goes under it)")
    absolute = Path(os.path.abspath(out))
    for directory in (absolute, *absolute.parents):
        if directory.name == "spans" and any(directory.glob("service=*")):
            raise ValueError(f"out {out} is inside the spans table {directory}: give a directory beside it "
                             f"(such as {directory.parent}), or the spans would no longer read")


def analyze_partition(
    files: Sequence[str], detector: str = "default", threshold: float | None = None,
    min_delta_ms: float = 1.0, min_ratio: float = 0.2, confirm: int = DEFAULT_CONFIRM,
) -> tuple[pa.Table, dict[tuple[str, str], dict[str, Any]], list[str]]:
    """Anomalies (as an ANOMALIES table), per-(service, name) figures (``Analysis.names``), and the
    files that could not be read (named, with why), for one partition.

    A series is one process's spans of one (service, name) (``process_of``): a fleet's processes
    write side by side into one partition, and each one's detector judged its own spans alone, live."""
    make = span_detectors([detector], threshold)[detector]
    rule = RunRule(confirm, min_delta_ms, min_ratio)
    tables, skipped, process_of_file = [], [], []
    for f in files:  # a corrupt or foreign file is named and skipped; the rest goes on
        try:
            tables.append(read_file(f, table="spans").select(SPAN_COLUMNS).cast(_SPAN_TYPES))
            process_of_file.append(process_of(f))
        except UNREADABLE as exc:  # (a cast Arrow cannot do, too)
            skipped.append(unreadable(f, exc))
    if not tables:
        return ANOMALIES.empty_table(), {}, skipped
    spans = pa.concat_tables(tables)
    name_codes, names = _codes(spans.column("name"))
    # a series is a (service, name): the services of a partition are one unless two names
    # map to one directory ("shop api", "shop/api"), and those are never one series
    service_codes, services = _codes(spans.column("service.name"))
    processes = sorted(set(process_of_file))
    process_codes = np.repeat([processes.index(p) for p in process_of_file], [t.num_rows for t in tables])
    codes = (service_codes.astype(np.int64) * len(names) + name_codes) * len(processes) + process_codes
    durations = spans.column("duration_ms").to_numpy()
    times_ns = spans.column("start_time").cast(pa.int64()).to_numpy()
    if len(names) * len(services) * len(processes) <= 2**16:
        codes = codes.astype(np.uint16)  # numpy's stable sort is a radix sort for 16-bit keys
    order = np.argsort(codes, kind="stable")  # by series, keeping export order within one
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    hits: list[np.ndarray] = []
    parts: dict[str, list[np.ndarray]] = defaultdict(list)
    figures: dict[tuple[str, str], dict[str, Any]] = {}
    for group in np.split(order, bounds):
        if not len(group):
            continue
        service, name = services[service_codes[group[0]]], names[name_codes[group[0]]]
        det = make(name)
        values = durations[group]
        if isinstance(det, AlertPipeline):  # it raises alerts; they are confirmed as the live bank does
            found, z, expected, std, bands = _confirmed_alerts(rule, det.detect_many(values), values)
        else:
            z, expected, std = det.update_many(values, details=True)
            found = rule.confirmed_runs(values, z, expected, std, det.threshold)
            bands = np.full(len(values), det.threshold)
        found = _without_returns(rule, found, values, expected)
        starts = np.array([start for start, _, _ in found], dtype=np.int64)
        lengths = np.array([length for _, length, _ in found], dtype=np.int64)
        ends = np.array([end for _, _, end in found], dtype=np.int64)
        _add_figures(figures, (service, name), {
            "spans": len(group), "anomalies": len(starts), "series": 1,
            "max_score": float(np.nanmax(np.abs(z[starts]))) if len(starts) else 0.0,
            # the time range of the anomalies, here where the series is at hand (``summary`` needs no
            # group_by: Acero warns of every unaligned buffer in the tables gathered from Dask)
            "first": _utc(times_ns[group[starts]].min()) if len(starts) else None,
            "last": _utc(times_ns[group[ends]].max()) if len(starts) else None,
        })
        if len(starts):
            hits.append(group[starts])
            for key, column in (("z", z), ("expected", expected), ("std", std)):
                parts[key].append(column[starts])
            parts["run"].append(lengths)
            parts["index"].append(starts)  # in the series, as the live detector counts: not the partition's row
            parts["threshold"].append(bands[starts])
            parts["detector"].append(np.full(len(starts), f"{name} [{type(det).__name__}]", dtype=object))
            parts["process"].append(np.full(len(starts), processes[process_codes[group[0]]], dtype=object))
            parts["run_end"].append(group[ends])
    return _anomaly_table(spans, hits, parts), figures, skipped


def _utc(ns: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=int(ns) // 1000)


def _add_figures(into: dict[tuple[str, str], dict[str, Any]], key: tuple[str, str], figures: dict[str, Any]) -> None:
    """Add one series' (or partition's) figures to ``into[key]``: the one place they are summed, over
    the processes of a partition and over the partitions of a run."""
    mine = into.get(key)
    if mine is None:
        into[key] = dict(figures)
        return
    for count in ("spans", "anomalies", "series"):
        mine[count] += figures[count]
    mine["max_score"] = max(mine["max_score"], figures["max_score"])
    for bound, pick in (("first", min), ("last", max)):
        known = [t for t in (mine[bound], figures[bound]) if t is not None]
        mine[bound] = pick(known) if known else None


def _codes(column: pa.ChunkedArray) -> tuple[np.ndarray, list[Any]]:
    """Each row's code into the column's distinct values (a null is one of them), and those values."""
    encoded = pc.dictionary_encode(column, null_encoding="encode").combine_chunks()
    return encoded.indices.to_numpy(), encoded.dictionary.to_pylist()


def _confirmed_alerts(rule: RunRule, alerts: list[Any], values: np.ndarray) -> tuple[
        list[tuple[int, int, int]], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(onset, length, end)`` of each alert ``confirm`` points confirmed (``RunRule.confirm_alert``,
    point by point from each alert while it waits), and the score, expected, std and threshold at
    each onset: the threshold is the confirmed alert's own (each of the pipeline's channels has its
    own), so the band written is the one the alert broke."""
    n = len(values)
    z, expected, std, bands = (np.full(n, np.nan) for _ in range(4))
    raised = {a.index: a for a in alerts}  # a fresh detector: its indices are positions
    starts = sorted(raised)
    found: list[tuple[int, int, int]] = []
    pending = None
    i = starts[0] if starts else n
    while i < n:
        alert = raised.get(i)
        flagged = alert and Onset(i, float(values[i]), alert.expected, alert.std, alert.score)
        # the band a run is confirmed beyond: this point's alert's, else the waiting alert's
        band = alert.threshold if alert else pending.threshold if pending else 0.0
        pending, run = rule.confirm_alert(pending, i, float(values[i]), None, flagged, band)
        if run is not None:
            found.append((run.index, rule.confirm, i))
            z[run.index], expected[run.index], std[run.index] = run.score, run.expected, run.std
            bands[run.index] = band
        i += 1
        if pending is None:  # nothing waits for confirmation: on to the next alert
            k = bisect.bisect_left(starts, i)
            i = starts[k] if k < len(starts) else n
    return found, z, expected, std, bands


def _without_returns(rule: RunRule, found: list[tuple[int, int, int]], values: np.ndarray,
                     expected: np.ndarray) -> list[tuple[int, int, int]]:
    """The anomalies that are not a return to normal (``RunRule.back_to_normal``), as the live bank."""
    kept, before = [], None
    for run in found:
        value, normal = float(values[run[0]]), float(expected[run[0]])
        if rule.back_to_normal(before, value, normal):
            before = None
            continue
        before = (value, normal)
        kept.append(run)
    return kept


def _anomaly_table(spans: pa.Table, hits: list[np.ndarray], parts: dict[str, list[np.ndarray]]) -> pa.Table:
    if not hits:
        return ANOMALIES.empty_table()
    idx = np.concatenate(hits)
    cat = {k: np.concatenate(v) for k, v in parts.items()}
    taken = spans.take(pa.array(idx))
    ends = spans.column("start_time").take(pa.array(np.concatenate(parts["run_end"])))
    value = taken.column("duration_ms").to_numpy()
    return pa.table({
        "timestamp": taken.column("start_time"),
        "service.name": taken.column("service.name"),
        "series": taken.column("name"),
        "source": pa.array(["analyze"] * len(idx), pa.string()),
        "metric": pa.array(["duration_ms"] * len(idx), pa.string()),
        "detector": pa.array(cat["detector"].tolist(), pa.string()),
        "index": pa.array(cat["index"], pa.int64()),
        "value": value,
        "expected": cat["expected"],
        "std": cat["std"],
        "score": cat["z"],
        "threshold": cat["threshold"],
        "lower": cat["expected"] - cat["threshold"] * cat["std"],
        "upper": cat["expected"] + cat["threshold"] * cat["std"],
        "onset": taken.column("start_time"),
        "confirmed_at": ends,
        "trace_id": taken.column("trace_id"),
        "span_id": taken.column("span_id"),
        # run -> its length; pid and writer -> the process whose spans the series is, where the files' names say
        "details": pa.array([[("run", str(run))] + _process_details(process)
                             for run, process in zip(cat["run"].tolist(), cat["process"].tolist())],
                            ANOMALIES.field("details").type),
    }, schema=ANOMALIES)


@dataclass
class Analysis:
    """What ``analyze`` found: the anomalies table and per-name figures."""

    anomalies: pa.Table
    #: (service, name) -> spans, anomalies, series (one a process and partition), max_score, first and last
    #: (the anomalies' first onset and last confirmation, UTC; None without anomalies)
    names: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    spans: int = 0
    partitions: int = 0
    seconds: float = 0.0
    skipped: list[str] = field(default_factory=list)  # files that could not be read, and why

    def summary(self, top: int = 10) -> str:
        lines = [f"{self.spans:,} spans in {self.partitions} partition(s), {self.anomalies.num_rows:,} "
                 f"anomalies, {self.seconds:.2f} s ({self.spans / max(self.seconds, 1e-9):,.0f} spans/s)"]
        lines += [f"skipped (unreadable): {why}" for why in self.skipped]
        worst = sorted(self.names.items(), key=lambda kv: (-kv[1]["anomalies"], -kv[1]["max_score"]))
        worst = [(n, f) for n, f in worst if f["anomalies"]][:top]
        if worst:
            lines.append("worst span names:")
            for key, f in worst:
                series = f" ({f['series']} series)" if f["series"] > 1 else ""
                lines.append(
                    f"  {key[1]} ({key[0]}): {f['anomalies']} anomalies in {f['spans']:,} spans{series}, max score "
                    f"{f['max_score']:.1f}, from {f['first']:%Y-%m-%d %H:%M:%S} to {f['last']:%Y-%m-%d %H:%M:%S}"
                )
        return "\n".join(lines)


def analyze(
    path: str | os.PathLike[str], *, out: str | os.PathLike[str] | None = None,
    detector: str = "default", threshold: float | None = None, scheduler: str | None = None,
    progress: bool = True, confirm: int = DEFAULT_CONFIRM,
) -> Analysis:
    """Analyse every partition under ``path``; write the anomalies table under ``out`` (a directory,
    outside the spans table: ``export_root(path)`` is the usual one), replacing an earlier run's.

    With ``scheduler`` (a Dask distributed scheduler address, or a ``Client``)
    each partition is a task on the cluster (``pip install perfsdk[dask]``).
    """
    started = time.perf_counter()
    if out is not None:
        _check_out(Path(out))  # now, not after the whole analysis
    if threshold is not None and detector == "default":
        raise ValueError("threshold applies to the zscore or arima detector: the default detector alerts on "
                         "a tail probability, not a score threshold")
    span_detectors([detector], threshold)  # bad options fail now, not in the first task
    RunRule(confirm)
    partitions = span_partitions(path)
    if not partitions:
        raise FileNotFoundError(
            f"no span files under {path} (looked for spans/service=*/date=*/part-*.arrow or .parquet)")
    options: dict[str, Any] = {"detector": detector, "threshold": threshold, "confirm": confirm}
    if scheduler is not None:
        results = _on_dask(scheduler, partitions, options)
    else:
        results = []
        for i, files in enumerate(partitions):
            results.append(analyze_partition(files, **options))
            if progress:
                _progress(i + 1, len(partitions), started)
    if sum(len(unreadable) for _, _, unreadable in results) == sum(len(files) for files in partitions):
        raise ValueError(f"no span file under {path} could be read: "
                         + "; ".join(why for _, _, unreadable in results for why in unreadable))
    tables = [table for table, _, _ in results]
    anomalies = pa.concat_tables(tables) if tables else ANOMALIES.empty_table()
    names: dict[tuple[str, str], dict[str, Any]] = {}
    skipped: list[str] = []
    for _, figures, unreadable in results:
        skipped += unreadable
        for name, f in figures.items():
            _add_figures(names, name, f)
    if out is not None:
        _replace_output(Path(out), anomalies)
    return Analysis(anomalies, names, sum(f["spans"] for f in names.values()), len(partitions),
                    time.perf_counter() - started, skipped)


def _replace_output(out: Path, anomalies: pa.Table) -> None:
    """Write ``anomalies`` under ``out``, then delete an earlier run's output (a second run replaces
    it, never adds a copy); if writing fails, what was written goes and the earlier output stays."""
    pattern = "anomalies/service=*/date=*/part-*-analyze-*"
    earlier = set(out.glob(pattern))
    # filed under the day each happened (UTC), as the live export files them, not the day of the run
    services = anomalies.column("service.name")
    dates = pc.strftime(anomalies.column("timestamp"), format="%Y-%m-%d")
    try:
        for seq, (service, date) in enumerate(sorted(set(zip(services.to_pylist(), dates.to_pylist())))):
            # (a tag of its own: two services whose names map to one directory must not share file names)
            writer = RotatingWriter(out, "anomalies", ANOMALIES, service, tag=f"analyze-{seq}", date=date)
            writer.write(anomalies.filter(pc.and_(pc.equal(services, service), pc.equal(dates, date))))
            writer.close()
    except BaseException:
        for new in set(out.glob(pattern)) - earlier:
            new.unlink(missing_ok=True)
        raise
    for old in earlier:
        old.unlink(missing_ok=True)


def _progress(done: int, total: int, started: float) -> None:
    elapsed = time.perf_counter() - started
    if elapsed < 1.0 and done < total:
        return  # quick runs print nothing
    width = 30
    filled = int(width * done / total)
    sys.stderr.write(f"\ranalyzing [{'#' * filled}{'.' * (width - filled)}] {done}/{total} partitions, {elapsed:.1f} s")
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def _on_dask(scheduler: Any, partitions: list[list[str]], options: dict[str, Any]) -> list[Any]:
    try:
        from distributed import Client
    except ImportError as exc:
        raise ImportError("--scheduler needs Dask: pip install 'perfsdk[dask]'") from exc
    if isinstance(scheduler, Client):
        client = scheduler
    else:
        try:
            client = Client(scheduler, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise ConnectionError(f"cannot reach the Dask scheduler at {scheduler} within 10 s "
                                  f"({type(exc).__name__})") from None
    try:
        futures = client.map(analyze_partition, partitions, pure=False, **options)
        return [(_aligned(table), figures, skipped) for table, figures, skipped in client.gather(futures)]
    finally:
        if client is not scheduler:
            client.close()


def _aligned(table: pa.Table) -> pa.Table:
    """``table`` copied into buffers of its own: a table Dask gathered may sit unaligned in the
    message it came in, and every Acero query of it (``group_by``, joins) warns of each buffer."""
    sink = pa.BufferOutputStream()  # a buffer of Arrow's allocator; IPC pads each body buffer to 8 bytes
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return pa.ipc.open_stream(sink.getvalue()).read_all()
