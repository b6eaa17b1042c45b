"""The gate's history: one Arrow IPC file per run in a directory.

Each file holds one row per sample (``run_id``, ``timestamp``, ``benchmark``,
``sample``, ``seconds``) and the run's metadata in the schema (machine, python,
git commit, the comparability key). A file is written to a temporary name and
renamed into place, so a reader never sees half a run; files that are torn,
foreign or left over from an interrupted write are skipped and named.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pyarrow as pa

__all__ = ["FORMAT", "Run", "read_history", "run_metadata", "write_run"]

#: Schema metadata key (and value) that marks a file as one of ours.
FORMAT = ("perfsdk.perfgate", "1")
SUFFIX = ".arrow"
PARTIAL_SUFFIX = ".partial"

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


def write_run(directory: Path | str, samples: Mapping[str, Sequence[float] | np.ndarray], *,
              metadata: Mapping[str, str] | None = None, timestamp: datetime | None = None) -> Run:
    """Add one run to ``directory`` (made if missing), atomically; returns what was written."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    timestamp = timestamp or datetime.now(timezone.utc)
    run = Run(run_id=uuid.uuid4().hex[:12], timestamp=timestamp,
              samples={name: np.asarray(values, dtype=np.float64) for name, values in samples.items()},
              metadata=dict(metadata or {}))
    names = [name for name, values in run.samples.items() for _ in range(values.size)]
    table = pa.table({
        "run_id": pa.array([run.run_id] * len(names), pa.string()),
        "timestamp": pa.array([timestamp] * len(names), pa.timestamp("us", tz="UTC")),
        "benchmark": pa.array(names, pa.string()),
        "sample": pa.array([i for values in run.samples.values() for i in range(values.size)], pa.int32()),
        "seconds": pa.array(np.concatenate([*run.samples.values(), np.empty(0)]), pa.float64()),
    }, schema=SCHEMA.with_metadata({**run.metadata, FORMAT[0]: FORMAT[1]}))
    final = directory / f"run-{timestamp.strftime('%Y%m%dT%H%M%S%fZ')}-{run.run_id}{SUFFIX}"
    partial = directory / f".{final.name}{PARTIAL_SUFFIX}"
    try:
        with pa.OSFile(str(partial), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        os.replace(partial, final)
    finally:
        partial.unlink(missing_ok=True)
    return run


def _read_run(path: Path) -> Run:
    with pa.memory_map(str(path)) as source:
        table = pa.ipc.open_file(source).read_all()
    metadata = {key.decode(): value.decode() for key, value in (table.schema.metadata or {}).items()}
    if metadata.pop(FORMAT[0], None) != FORMAT[1]:
        raise ValueError("not a perf-gate run (no format mark)")
    if not table.schema.equals(SCHEMA):
        raise ValueError(f"unexpected columns {table.schema.names}")
    if table.num_rows == 0:
        raise ValueError("no samples")
    run_ids = set(table.column("run_id").to_pylist())
    if len(run_ids) != 1:
        raise ValueError(f"{len(run_ids)} run ids in one file")
    benchmarks = np.asarray(table.column("benchmark").to_pylist(), dtype=object)
    order = np.argsort(table.column("sample").to_numpy(), kind="stable")
    seconds = table.column("seconds").to_numpy()[order]
    benchmarks = benchmarks[order]
    samples = {str(name): seconds[benchmarks == name] for name in dict.fromkeys(benchmarks)}
    timestamp = table.column("timestamp")[0].as_py()
    return Run(run_id=run_ids.pop(), timestamp=timestamp, samples=samples, metadata=metadata)


def read_history(directory: Path | str) -> tuple[list[Run], list[tuple[Path, str]]]:
    """Every run in ``directory``, oldest first, and the files skipped with the reason for each."""
    directory = Path(directory)
    if not directory.exists():
        return [], []
    runs, skipped = [], []
    for path in sorted(p for p in directory.iterdir() if p.is_file()):
        if path.name.endswith(PARTIAL_SUFFIX):
            skipped.append((path, "being written by another run, or left over from an interrupted write"))
            continue
        try:
            runs.append(_read_run(path))
        except (OSError, ValueError, pa.ArrowException) as exc:
            skipped.append((path, f"unreadable: {exc}"))
    runs.sort(key=lambda run: run.timestamp)
    return runs, skipped
