"""The gate's history: one Arrow IPC file per run in a directory.

Each file holds one row per sample (``run_id``, ``timestamp``, ``benchmark``,
``sample``, ``seconds``) and the run's metadata in the schema (machine, python,
git commit, the comparability key). A file is written to a temporary name and
renamed into place, so a reader never sees half a run; files that are torn,
foreign, of a newer format, hold a time that is not finite and >= 0, or are left
over from an interrupted write are skipped and named.

Bounded: a check reads only the newest ``HISTORY_RUNS`` run files (chosen by name,
which starts with the run's UTC time), and ``prune_history`` removes the oldest
beyond the ``KEEP_RUNS`` kept (both in ``perfsdk.perfgate.defaults``).
"""

from __future__ import annotations

import json
import numbers
import os
import platform
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pyarrow as pa

from perfsdk.perfgate.defaults import HISTORY_RUNS, KEEP_RUNS
from perfsdk.perfgate.stats import checked_times

__all__ = ["FORMAT", "HISTORY_RUNS", "KEEP_RUNS", "Run", "prune_history", "read_history", "run_metadata",
           "write_run"]

#: Schema metadata key (and value) that marks a file as one of ours.
FORMAT = ("perfsdk.perfgate", "1")
SUFFIX = ".arrow"
PARTIAL_SUFFIX = ".partial"
#: A run file's name: ``run-<UTC time>-<run id>.arrow``; sorted by name, oldest first (``_name_time``).
RUN_NAME = re.compile(r"run-\d{8}T\d{12}Z-[0-9a-f]+" + re.escape(SUFFIX))

SCHEMA = pa.schema([
    ("run_id", pa.string()),
    ("timestamp", pa.timestamp("us", tz="UTC")),
    ("benchmark", pa.string()),
    ("sample", pa.int32()),
    ("seconds", pa.float64()),
])


@dataclass(frozen=True)
class Run:
    """One recorded run: its samples per benchmark (seconds per round) and where it ran."""

    run_id: str
    timestamp: datetime
    samples: Mapping[str, np.ndarray]
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def comparable_key(self) -> str:
        """Runs are compared only with runs that share this key (same kind of machine and Python)."""
        return self.metadata.get("comparable", "")


def _git_commit(directory: Path) -> str:
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True,
                              timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def run_metadata(source_dir: Path | str = ".") -> dict[str, str]:
    """What is recorded about this run. ``comparable`` leaves the host name out: CI gets a new host each run."""
    python = f"{platform.python_implementation()} {platform.python_version()}"
    cpus = os.cpu_count() or 0
    return {
        "machine": json.dumps({"node": platform.node(), "system": platform.system(),
                               "machine": platform.machine(), "processor": platform.processor(), "cpus": cpus}),
        "python": python,
        "git_commit": _git_commit(Path(source_dir)),
        "comparable": (f"{platform.system()}/{platform.machine()}/{cpus} cpus/"
                       f"{platform.python_implementation()} {sys.version_info.major}.{sys.version_info.minor}"),
    }


def _utc(timestamp: datetime) -> datetime:
    """``timestamp`` in UTC, refused unless it is an aware ``datetime`` that UTC can hold."""
    if not isinstance(timestamp, datetime):
        raise TypeError(f"timestamp must be a datetime, got {type(timestamp).__name__}")
    if timestamp.utcoffset() is None:
        raise ValueError(f"timestamp must be timezone-aware, got {timestamp} (naive): a naive time could be "
                         "local or UTC, and a wrong guess puts the run hours out of place in the history; "
                         "pass e.g. datetime.now(timezone.utc), or attach its tzinfo")
    try:
        return timestamp.astimezone(timezone.utc)
    except OverflowError:
        raise ValueError(f"timestamp {timestamp} is out of range in UTC") from None


def _name_time(utc: datetime) -> str:
    """A UTC time as a run file's name spells it: fixed width (a 4-digit year too), so names sort as times."""
    return (f"{utc.year:04d}{utc.month:02d}{utc.day:02d}T{utc.hour:02d}{utc.minute:02d}{utc.second:02d}"
            f"{utc.microsecond:06d}Z")


def write_run(directory: Path | str, samples: Mapping[str, Sequence[float] | np.ndarray], *,
              metadata: Mapping[str, str] | None = None, timestamp: datetime | None = None) -> Run:
    """Add one run to ``directory`` (made if missing), atomically; returns what was written. A
    benchmark with no samples, or a time that is not finite and >= 0, is refused (``ValueError``),
    not stored for every later check to trip on. The directory grows by a file a run:
    ``prune_history`` bounds it.

    ``timestamp`` (default: now) is when the run was made, a timezone-aware ``datetime`` in any
    zone: it is stored, named and returned in UTC, so file names sort in true time order
    whatever zone each writer was in. A naive one is refused (``ValueError``) rather than
    guessed at: ``datetime.now()`` gives local time and ``datetime.utcnow()`` UTC, both naive,
    and either guess would silently place the other's runs hours off among the plugin's own.
    """
    utc = datetime.now(timezone.utc) if timestamp is None else _utc(timestamp)
    checked = {name: checked_times(values, f"benchmark {name!r}") for name, values in samples.items()}
    if not checked:
        raise ValueError("no benchmarks to record")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    run = Run(run_id=uuid.uuid4().hex[:12], timestamp=utc, samples=checked, metadata=dict(metadata or {}))
    names = [name for name, values in run.samples.items() for _ in range(values.size)]
    table = pa.table({
        "run_id": pa.array([run.run_id] * len(names), pa.string()),
        "timestamp": pa.array([utc] * len(names), pa.timestamp("us", tz="UTC")),
        "benchmark": pa.array(names, pa.string()),
        "sample": pa.array([i for values in run.samples.values() for i in range(values.size)], pa.int32()),
        "seconds": pa.array(np.concatenate([*run.samples.values(), np.empty(0)]), pa.float64()),
    }, schema=SCHEMA.with_metadata({**run.metadata, FORMAT[0]: FORMAT[1]}))
    final = directory / f"run-{_name_time(utc)}-{run.run_id}{SUFFIX}"
    partial = directory / f".{final.name}{PARTIAL_SUFFIX}"
    try:
        with pa.OSFile(str(partial), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        os.replace(partial, final)
    finally:
        partial.unlink(missing_ok=True)
    return run


class _NotARun(ValueError):
    """A file that reads but is not a run this version can use: skipped with this as its reason."""


def _read_run(path: Path) -> Run:
    with pa.memory_map(str(path)) as source:
        table = pa.ipc.open_file(source).read_all()
    metadata = {key.decode(): value.decode() for key, value in (table.schema.metadata or {}).items()}
    version = metadata.pop(FORMAT[0], None)
    if version is None:
        raise _NotARun("not a perf-gate run (no format mark)")
    if version != FORMAT[1]:
        newer = version.isdigit() and int(version) > int(FORMAT[1])
        raise _NotARun(f"format version {version}, {'newer than' if newer else 'not'} the version {FORMAT[1]} "
                       f"this perfsdk reads{' (written by a newer perfsdk)' if newer else ''}")
    if not table.schema.equals(SCHEMA):
        raise _NotARun(f"unexpected columns {table.schema.names}")
    if table.num_rows == 0:
        raise _NotARun("no samples")
    missing = [name for name in table.column_names if table.column(name).null_count]
    if missing:
        raise _NotARun(f"missing values in column {missing[0]!r}")
    run_ids = set(table.column("run_id").to_pylist())
    if len(run_ids) != 1:
        raise _NotARun(f"{len(run_ids)} run ids in one file")
    names = table.column("benchmark").combine_chunks().dictionary_encode()  # codes in order of first row
    codes = names.indices.to_numpy(zero_copy_only=False)
    order = np.lexsort((table.column("sample").to_numpy(), codes))  # by benchmark, then round
    runs = np.split(table.column("seconds").to_numpy()[order], np.cumsum(np.bincount(codes))[:-1])
    try:
        samples = {str(name): checked_times(seconds, f"benchmark {name!r}")
                   for name, seconds in zip(names.dictionary.to_pylist(), runs)}
    except ValueError as exc:
        raise _NotARun(str(exc)) from None
    try:
        timestamp = table.column("timestamp")[0].as_py()
    except OverflowError:  # stored as microseconds since 1970, it can lie beyond a datetime's years 1-9999
        raise _NotARun(f"timestamp out of range ({table.column('timestamp')[0].value} us since 1970)") from None
    return Run(run_id=run_ids.pop(), timestamp=timestamp, samples=samples, metadata=metadata)


def _files(directory: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The run files in ``directory``, oldest first (by name), and the other files with why each is not one."""
    runs, others = [], []
    for path in sorted(p for p in directory.iterdir() if p.is_file()):
        if RUN_NAME.fullmatch(path.name):
            runs.append(path)
        elif path.name.endswith(PARTIAL_SUFFIX):
            others.append((path, "being written by another run, or left over from an interrupted write"))
        else:
            others.append((path, "not named as a run file (run-<UTC time>-<run id>.arrow)"))
    return runs, others


def _count(value: int, name: str) -> int:
    """A number of run files: an integer (not a ``bool``) of 1 or more, or an error naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value!r}")
    return int(value)


def read_history(directory: Path | str, limit: int = HISTORY_RUNS) -> tuple[list[Run], list[tuple[Path, str]]]:
    """The newest ``limit`` run files in ``directory`` (by name: no older file is opened, so a
    check costs the same however long the history), as runs oldest first, and the files skipped
    with the reason for each: those among them that cannot be used, and the directory's other files.

    The runs are ordered by the time stored in them, not by name: earlier versions named a run
    given a non-UTC ``timestamp`` by its wall-clock time, so such a file's name can be off by its
    UTC offset (which can only move it across the edge of the ``limit`` newest, or of those
    ``prune_history`` keeps)."""
    limit = _count(limit, "limit")
    directory = Path(directory)
    if not directory.exists():
        return [], []
    paths, skipped = _files(directory)
    runs = []
    for path in paths[-limit:]:
        try:
            runs.append(_read_run(path))
        except _NotARun as exc:
            skipped.append((path, str(exc)))
        except FileNotFoundError:
            skipped.append((path, "removed while being read (pruned by another run)"))
        except (OSError, ValueError, pa.ArrowException) as exc:
            skipped.append((path, f"unreadable: {exc}"))
    runs.sort(key=lambda run: run.timestamp)
    return runs, sorted(skipped)


def prune_history(directory: Path | str, keep: int = KEEP_RUNS) -> list[Path]:
    """Remove the oldest run files of ``directory`` beyond the newest ``keep`` (other files are
    never touched), and return them, oldest first, so the caller can say what went."""
    keep = _count(keep, "keep")
    directory = Path(directory)
    if not directory.exists():
        return []
    paths, _ = _files(directory)
    removed = paths[:-keep]
    for path in removed:
        path.unlink(missing_ok=True)  # another run pruning at once may have removed it first
    return removed
