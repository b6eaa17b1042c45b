"""RotatingWriter: Arrow IPC (or Parquet) files, rotated, that appear only complete.

Layout (a hive-partitioned dataset that pyarrow.dataset, DuckDB, polars and
pandas read directly)::

    <root>/<table>/service=<name>/date=<YYYY-MM-DD>/part-<utc time>-<pid>-<tag>-<seq>.arrow

The tag names the writer: drawn once per writer (and afresh in a forked child), so
``<pid>-<tag>`` tells one process's files from another's even where pids repeat
(containers that all run as pid 1), and ``perfsdk analyze`` judges each one's spans
as its own series. ``<seq>`` counts the writer's files and keeps their names unique.

A file is written under a hidden temporary name (``.part-....tmp``, which
dataset readers skip), one record batch at a time; when it reaches
``max_bytes`` or ``max_age_s`` (or the date changes, or on flush/close) it is
closed, fsynced and renamed into place. A reader therefore never sees a
half-written file. A crash leaves the open file hidden (readers skip it);
``perfsdk.export.recover`` reads it back up to its last complete batch. So does
a write error: the file's rows are counted in ``rows_lost`` and its path logged
(and the file in ``abandoned_files``). A file that holds no complete batch when
its write fails (a full disk takes the first one) is removed: there is nothing in
it to recover, and a disk that stays full would otherwise gather one empty hidden
file per attempt.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa
import pyarrow.ipc as ipc

from perfsdk._runtime import at_fork, fsync_path, held_here, log_quietly, owned_lock, replace_atomically
from perfsdk.export.options import check_options
from perfsdk.export.schema import with_metadata

__all__ = ["RotatingWriter"]

log = logging.getLogger("perfsdk.export")

_INHERITED: list[Any] = []  # open files a forked child inherited and must leave alone


def _safe(value: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in value) or "_"


class RotatingWriter:
    """Writes record batches of one table into rotated, atomically published files."""

    def __init__(
        self, root: str | os.PathLike[str], table: str, schema: pa.Schema, service: str,
        fmt: str = "arrow", max_bytes: int = 64 * 2**20, max_age_s: float = 60.0, tag: str | None = None,
        date: str | None = None,
    ) -> None:
        check_options(fmt, max_bytes, max_age_s)
        #: Names every file of this writer: the ``tag`` given (``analyze`` finds its own earlier output by
        #: it), else one drawn now (``_new_tag``) -- per writer, not per file, so the files tell their writer.
        self.tag = tag or _new_tag()
        self._tag_drawn = not tag  # a forked child draws its own; a given tag it keeps
        if date is not None and (not isinstance(date, str) or _as_date(date) != date):
            raise ValueError(f"date must be a day as YYYY-MM-DD, got {date!r}")
        #: The ``date=`` partition (``YYYY-MM-DD``) of every file, whatever the clock says: ``analyze`` files
        #: anomalies under the day they happened, not the day it ran. None: today's (UTC), rotating at midnight.
        self.date = date
        #: Called as each file opens: more metadata for it (the span export records its drops so far).
        self.file_metadata: Callable[[], dict[str, str]] | None = None
        self.root = Path(root)
        self.table = table
        self.service = service
        self.schema = with_metadata(schema, table, service)
        self.fmt = fmt
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self._reset_counts()
        self._rows_open = 0  # rows in the file now open
        self._lock = owned_lock()  # a call from inside its own (a signal handler) must not nest in it
        self._writer: Any = None
        self._sink: Any = None
        self._tmp: Path | None = None
        self._final: Path | None = None
        self._opened_at = 0.0
        self._date = ""
        self._seq = 0
        at_fork(self._after_fork)

    def _reset_counts(self) -> None:
        self.files_written = 0
        self.rows_written = 0
        self.abandoned_files = 0  # files given up after a write error, kept (hidden) for ``recover``
        self.rows_lost = 0  # rows of files that could not be published (closed or renamed into place)

    def write(self, batch: pa.RecordBatch | pa.Table) -> None:
        """Append ``batch`` (raises OSError on disk trouble: the caller counts it; RuntimeError from
        inside this writer's own call, a signal handler's, whose file is half written)."""
        if held_here(self._lock):
            raise RuntimeError(f"a write to the {self.table} table from inside its own write (a signal handler)")
        with self._lock:
            today = self.date or _today()
            if self._writer is not None and self._stale(today):
                self._publish()
            if self._writer is None:
                self._open(today)
            table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
            try:
                self._writer.write_table(table.replace_schema_metadata(self._file_schema.metadata))
            except BaseException as exc:
                self._abandon(exc)
                raise
            self.rows_written += table.num_rows
            self._rows_open += table.num_rows
            if self._sink.tell() >= self.max_bytes:
                self._publish()

    def flush(self) -> None:
        """Publish the open file now (its rows become visible to readers); from inside this writer's
        own call (a signal handler), nothing: the file is half written."""
        if held_here(self._lock):
            return
        with self._lock:
            if self._writer is not None:
                self._publish()

    close = flush

    def publish_stale(self) -> None:
        """Publish the open file if ``max_age_s`` has passed since it opened, or its day is over:
        called periodically, so rows become readable without waiting for the next write. Never
        waits: a write in progress checks the age itself."""
        if held_here(self._lock) or not self._lock.acquire(blocking=False):
            return
        try:
            if self._writer is not None and self._stale(self.date or _today()):
                self._publish()
        finally:
            self._lock.release()

    def _stale(self, today: str) -> bool:
        return today != self._date or time.monotonic() - self._opened_at > self.max_age_s

    def _open(self, date: str) -> None:
        directory = self.root / self.table / f"service={_safe(self.service)}" / f"date={date}"
        directory.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        # pid and tag name the writer (unique across processes and writers of one partition), seq the file
        name = f"part-{stamp}-{os.getpid()}-{self.tag}-{self._seq:06d}.{self.fmt}"
        tmp = directory / f".{name}.tmp"
        schema = self.schema
        if self.file_metadata is not None:
            schema = self.schema.with_metadata({**self.schema.metadata, **self.file_metadata()})
        sink = pa.OSFile(str(tmp), "wb")
        try:
            if self.fmt == "arrow":
                writer = ipc.new_file(sink, schema)
            else:
                import pyarrow.parquet as pq  # only for Parquet files: it loads pyarrow's compute and file systems

                writer = pq.ParquetWriter(sink, schema)
        except BaseException:  # no rows in it yet: neither the descriptor nor an empty hidden file is kept
            _close_and_remove(sink, tmp)
            raise
        self._writer, self._sink, self._tmp, self._final = writer, sink, tmp, directory / name
        self._file_schema = schema
        self._opened_at = time.monotonic()
        self._date = date

    def _publish(self) -> None:
        writer, sink, tmp, final = self._writer, self._sink, self._tmp, self._final
        rows, self._rows_open = self._rows_open, 0
        self._writer = self._sink = self._tmp = self._final = None
        try:
            try:
                writer.close()
            finally:
                sink.close()
            assert tmp is not None and final is not None
            fsync_path(tmp)
            os.replace(tmp, final)  # atomic: readers see the whole file or none of it
        except BaseException as exc:  # the disk filled, or the directory went away: these rows are not out
            self._lost(rows, tmp, exc)
            raise
        fsync_path(final.parent)
        self.files_written += 1

    def _abandon(self, exc: BaseException) -> None:
        """Give up the open file after a failed write, keeping it (hidden) for ``recover`` if it
        holds a complete batch (counted in ``abandoned_files``), else removing it.

        Its earlier batches are complete on disk; the failed one may be cut
        short, and ``recover`` stops there. They will not be published: lost,
        counted and named (``_lost``). The next write opens a new file.
        """
        sink, tmp, rows = self._sink, self._tmp, self._rows_open
        self._rows_open = 0
        self._writer = self._sink = self._tmp = self._final = None
        try:
            sink.close()  # no footer: the writer's close could fail the same way
        except Exception:
            pass  # it is already broken; the caller reports the original error
        self._lost(rows, tmp, exc)

    def _lost(self, rows: int, tmp: Path | None, exc: BaseException) -> None:
        """Count the rows of a file that will not be published, and name the file if it is still
        there: they were exported as far as the caller knew, and only ``recover`` gets them back.
        A file without a row in it is removed (best effort): nothing in it can be recovered."""
        self.rows_lost += rows
        if tmp is None:
            return
        if not rows:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass  # (the caller reports the original error)
            return
        try:
            kept = tmp.exists()
        except OSError:
            kept = False
        if kept:
            self.abandoned_files += 1
            log_quietly(log, logging.WARNING, "perfsdk: %d rows of the %s table could not be published (%s): "
                        "counted as lost; perfsdk.export.recover(%r) reads back their complete batches",
                        rows, self.table, exc, str(tmp))

    def _after_fork(self) -> None:
        """In a forked child: forget the parent's open file without touching it, and its counts
        (every count a child reports is its own); a drawn tag is drawn again (the child's files are its own).

        The child shares the file's descriptor and offset with the parent;
        writing a footer or renaming it would corrupt the parent's file.
        """
        _INHERITED.append((self._writer, self._sink))  # never closed here: the parent owns them
        self._writer = self._sink = self._tmp = self._final = None
        if self._tag_drawn:  # its detectors judge its own spans alone: ``analyze`` must tell its files apart
            self.tag = _new_tag()
        self._rows_open = 0
        self._reset_counts()
        self._lock = owned_lock()


#: Hex digits in a drawn tag: not 8, the form of the tag earlier writers drew for each file, so
#: ``perfsdk.export.analyze.process_of`` tells their files (one pid, a tag each) from a writer's.
_TAG_DIGITS = 12


def _new_tag() -> str:
    """A random tag for one writer's files, in a form that no older writer's per-file tag has."""
    return uuid.uuid4().hex[:_TAG_DIGITS]


def _close_and_remove(sink: Any, tmp: Path) -> None:
    """Close a file that failed to open for writing and remove it (best effort: the caller
    raises the original error)."""
    try:
        sink.close()
    except Exception:
        pass
    try:
        tmp.unlink(missing_ok=True)
    except OSError:
        pass


def _as_date(text: str) -> str | None:
    """``text`` as a ``YYYY-MM-DD`` day written back, or None if it is not one."""
    try:
        return datetime.strptime(text, "%Y-%m-%d").strftime("%Y-%m-%d")
    except ValueError:
        return None


def _today() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d")


def write_table_atomically(path: str | os.PathLike[str], table: pa.Table) -> Path:
    """``table`` as one Arrow IPC file at ``path``: written beside it, synced, then renamed into place,
    so a reader sees the whole file or none of it.

    >>> import tempfile
    >>> path = write_table_atomically(Path(tempfile.mkdtemp()) / "t.arrow", pa.table({"x": [1, 2]}))
    >>> pa.ipc.open_file(path).read_all().num_rows
    2
    """
    def write(tmp: Path) -> None:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)

    return replace_atomically(path, write)
