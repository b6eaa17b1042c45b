"""TableWriter: rows of the anomalies, decisions and resources tables, batched."""

from __future__ import annotations

import time
from collections import deque
from datetime import datetime
from typing import Any, Callable, Mapping

from perfsdk.detect import Anomaly
from perfsdk.export.columns import batch_from_rows
from perfsdk.export.schema import TABLES
from perfsdk._runtime import at_fork, held_here, owned_lock
from perfsdk.export.writer import RotatingWriter

__all__ = ["NAMED_COLUMNS", "RETRY_MAX_S", "RETRY_MIN_S", "TableWriter", "anomaly_row", "decision_row"]

#: The columns of a table that may name a span (an anomaly's series is its span's name): what
#: ``TableWriter(redact=...)`` redacts (not the trace ids beside them, which a card number's
#: pattern can match).
NAMED_COLUMNS = {"anomalies": ("series", "detector", "details")}

#: After a failed write ``add`` tries no other for this long, twice as long after each failure in a
#: row, up to ``RETRY_MAX_S`` (``flush`` and ``close`` always try): a disk that stays full costs one
#: attempt every few seconds, not one a row.
RETRY_MIN_S = 0.25
RETRY_MAX_S = 4.0
KEPT_BATCHES = 4  # batches of rows kept while writes fail (or a write is still in progress)


class TableWriter:
    """Buffers rows (dicts keyed by column) and writes them ``batch_rows`` at a time.

    ``redact``, if given, is applied to the texts of the columns that may name a span
    (``NAMED_COLUMNS``), as the spans table writes span names (``Redactor.message``).

    A row that is not written is counted (``stats()``), never lost in silence: while
    writes fail (a full disk), or one is still in progress (a hung disk), the last
    ``4 * batch_rows`` rows are kept for the next attempt and older ones dropped; after a
    failure ``add`` waits ``RETRY_MIN_S`` (doubling, up to ``RETRY_MAX_S``) before it tries again.

    The rows are buffered under one lock, and the file written under another: the buffer's is
    never held for I/O, so ``stats()`` and ``add`` never wait for the disk (an ``add`` that finds
    a write in progress on another thread leaves its row for it, or the next one), and ``flush``
    and ``close`` wait for a write in progress no longer than their ``timeout_s``.

    A call on a thread already inside one of the table's own (a signal handler that interrupted
    it) waits for nothing and writes nothing -- its file is half written: ``add`` buffers the row
    for the next write, ``flush`` and ``close`` return False, their rows kept.
    """

    def __init__(self, directory: str, table: str, service: str, *, format: str = "arrow",
                 batch_rows: int = 1024, max_bytes: int = 64 * 2**20, max_age_s: float = 60.0,
                 redact: Callable[[str], str] | None = None) -> None:
        if table not in TABLES:
            raise ValueError(f"table must be one of {sorted(TABLES)}, got {table!r}")
        self.schema = TABLES[table]
        self.table = table
        self.batch_rows = batch_rows
        self.redact = redact
        self._named = NAMED_COLUMNS.get(table, ())
        self._writer = RotatingWriter(directory, table, self.schema, service, format, max_bytes, max_age_s)
        self._start_afresh()
        at_fork(self._after_fork)

    def _start_afresh(self) -> None:
        """A new table's state, and a forked child's (the parent's rows and counts are the parent's)."""
        self._rows: deque[dict[str, Any]] = deque()
        self._lock = owned_lock()  # the buffer and the counts: never held for I/O (see the class docstring)
        self._io_lock = owned_lock()  # the file: one write or publish at a time
        self._writing = 0  # rows in the write in progress
        self._written_before = 0  # the writer's rows_written when it began (it counts them as it goes)
        self._failures = 0  # failed writes in a row
        self._retry_at = 0.0  # add() tries no write before this (time.monotonic())
        self.closed = False
        self.rows_skipped = 0  # rows add() refused (not a mapping of columns, or their redaction failed)
        self.rows_dropped = 0  # rows given up after repeated write errors (bounded buffer)
        self.rows_unwritten = 0  # rows still buffered when the table was closed, or added after

    @property
    def max_buffered(self) -> int:
        """Rows kept while writes fail: older ones are dropped, counted in ``rows_dropped``."""
        return KEPT_BATCHES * self.batch_rows

    def add(self, row: Mapping[str, Any]) -> None:
        """Buffer ``row``, and write the buffer once it holds ``batch_rows`` (unless a write failed
        less than its back-off ago, or another thread's is in progress): a write that fails
        raises (the caller counts the fault), its rows kept for the next attempt. After ``close``
        the row is counted in ``rows_unwritten``."""
        try:
            row, redact = dict(row), self.redact
            if redact is not None:
                for column in self._named:
                    if column in row:
                        row[column] = _redacted(row[column], redact)
        except BaseException:
            with self._lock:
                self.rows_skipped += 1
            raise
        if held_here(self._lock) or held_here(self._io_lock):
            self._rows.append(row)  # (atomic) written by the next add or flush
            return
        with self._lock:
            if self.closed:
                self.rows_unwritten += 1
                return
            self._rows.append(row)
            self._bound()
            due = len(self._rows) >= self.batch_rows and time.monotonic() >= self._retry_at
        if due and self._io_lock.acquire(blocking=False):  # busy: the write in progress, or the next, takes it
            try:
                self._write()
            finally:
                self._io_lock.release()

    def flush(self, timeout_s: float | None = None) -> bool:
        """Write buffered rows and publish the open file: True, or False if called inside the
        table's own call (see the class docstring). A write that fails raises, its rows kept; so
        does a write in progress on another thread that holds the file over ``timeout_s``
        (``TimeoutError``; None: no limit)."""
        if held_here(self._lock) or held_here(self._io_lock):
            return False
        if not self._acquire_io(timeout_s):
            raise TimeoutError(f"a write to the {self.table} table held its file over {timeout_s:g} s "
                               "(a hung disk?): its rows stay buffered")
        try:
            self._write()
            self._writer.flush()
        finally:
            self._io_lock.release()
        return True

    def close(self, timeout_s: float | None = None) -> bool:
        """``flush``, then close the table: the rows that cannot be written even now are given up,
        counted in ``rows_unwritten`` (so are rows added later). A write in progress on another
        thread that holds the file over ``timeout_s`` gives them all up at once (``TimeoutError``).
        False, nothing done, if called inside the table's own call."""
        if held_here(self._lock) or held_here(self._io_lock):
            return False
        if not self._acquire_io(timeout_s):
            self.give_up()
            raise TimeoutError(f"a write to the {self.table} table held its file over {timeout_s:g} s "
                               "(a hung disk?): its buffered rows are counted unwritten")
        try:
            try:
                self._write()
                self._writer.flush()
            finally:
                self.give_up()
        finally:
            self._io_lock.release()
        return True

    def give_up(self) -> int:
        """Close the table without writing: the rows buffered are counted in ``rows_unwritten``
        (how many is returned), and so are rows added later, or given back by a write still in
        progress that fails. Never waits for the disk (a close past its deadline)."""
        with self._lock:
            self.closed = True
            left = len(self._rows)
            self.rows_unwritten += left
            self._rows.clear()
            return left

    def stats(self) -> dict[str, int]:
        """Rows written, and every row that was not, by why: ``rows_skipped`` (refused by ``add``),
        ``rows_dropped`` (past the buffer's bound while writes failed), ``rows_lost`` (written into
        a file that could not be published), ``rows_unwritten`` (still buffered at ``close``, or
        added after it); ``rows_buffered``, waiting for the next write or in one still in progress;
        and ``abandoned_files``, files given up after a write error and kept (hidden) for
        ``perfsdk.export.recover``. Never waits for the disk: read while a write may be going on."""
        writer = self._writer
        with self._lock:
            written = writer.rows_written
            writing = max(0, self._writing - (written - self._written_before)) if self._writing else 0
            return {"rows_written": written - writer.rows_lost,
                    "rows_buffered": len(self._rows) + writing,  # a row in one count, never both
                    "rows_skipped": self.rows_skipped, "rows_dropped": self.rows_dropped,
                    "rows_lost": writer.rows_lost, "rows_unwritten": self.rows_unwritten,
                    "abandoned_files": writer.abandoned_files}

    def publish_stale(self) -> None:
        """Publish the open file once it is ``max_age_s`` old (``RotatingWriter.publish_stale``);
        never waits for a write in progress."""
        if held_here(self._io_lock) or not self._io_lock.acquire(blocking=False):
            return
        try:
            self._writer.publish_stale()
        finally:
            self._io_lock.release()

    def _acquire_io(self, timeout_s: float | None) -> bool:
        return bool(self._io_lock.acquire(timeout=-1 if timeout_s is None else max(0.0, timeout_s)))

    def _bound(self) -> None:  # under self._lock
        excess = len(self._rows) - self.max_buffered
        if excess > 0:
            for _ in range(excess):
                self._rows.popleft()
            self.rows_dropped += excess

    def _write(self) -> None:
        """Write the buffered rows (the caller holds ``_io_lock``, not ``_lock``: rows are added
        meanwhile). On failure they go back in front of the newer ones, bounded, and ``add``
        backs off; rows the writer took before its file failed are its own to count (``rows_lost``)."""
        with self._lock:
            if not self._rows:
                return
            rows = list(self._rows)
            self._rows.clear()
            writer = self._writer
            self._writing = len(rows)
            self._written_before = before = writer.rows_written
        try:
            writer.write(batch_from_rows(rows, self.schema))
        except BaseException:
            back = rows[writer.rows_written - before:]
            with self._lock:
                self._writing = 0
                self._failures += 1
                self._retry_at = time.monotonic() + min(RETRY_MAX_S, RETRY_MIN_S * 2 ** min(self._failures - 1, 16))
                if self.closed:  # (given up while this write hung)
                    self.rows_unwritten += len(back)
                else:
                    self._rows.extendleft(reversed(back))
                    self._bound()
            raise
        with self._lock:
            self._writing = 0
            self._failures = 0
            self._retry_at = 0.0
            given_up = self.closed
        if given_up:  # the table closed (past its deadline) while this write hung: its file is published
            writer.flush()  # now, or its rows would sit in a hidden file counted written (a failure: rows_lost)

    def _after_fork(self) -> None:
        """In a forked child: the parent's buffered rows are the parent's to write, and its counts
        the parent's to report."""
        closed = self.closed
        self._start_afresh()
        self.closed = closed


def _redacted(value: Any, redact: Callable[[str], str]) -> Any:
    """``value`` with each text in it (the details' pairs too) through ``redact``."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_redacted(item, redact) for item in value)
    return value


_ANOMALY_COLUMNS = {"series", "source", "metric", "onset", "confirmed_at", "trace_id", "span_id"}


def anomaly_row(anomaly: Anomaly, service: str) -> dict[str, Any]:
    """An ``Anomaly`` as a row of the anomalies table (the rest goes to ``details``)."""
    d = anomaly.details
    return {
        "timestamp": anomaly.timestamp if isinstance(anomaly.timestamp, datetime) else None,
        "service.name": service,
        "series": str(d.get("series", anomaly.detector)),
        "source": d.get("source"),
        "metric": d.get("metric"),
        "detector": anomaly.detector,
        "index": anomaly.index,
        "value": anomaly.value,
        "expected": anomaly.expected,
        "std": anomaly.std,
        "score": anomaly.score,
        "threshold": anomaly.threshold,
        "lower": anomaly.lower,
        "upper": anomaly.upper,
        "onset": d.get("onset") if isinstance(d.get("onset"), datetime) else None,
        "confirmed_at": d.get("confirmed_at") if isinstance(d.get("confirmed_at"), datetime) else None,
        "trace_id": d.get("trace_id"),
        "span_id": d.get("span_id"),
        "details": [(k, str(v)) for k, v in d.items() if k not in _ANOMALY_COLUMNS],
    }


def decision_row(decision: Any, service: str) -> dict[str, Any]:
    """A controller's ``Decision`` as a row of the decisions table.

    The features are the learner's inputs and estimates; a second setting's
    move joins them as ``<name>`` (before) and ``<name>_after``; the whole
    explanation goes to ``explanation``.
    """
    features = dict(decision.features)
    setting = decision.setting
    if setting is not None:
        features.setdefault(setting.name, setting.before)
        features[f"{setting.name}_after"] = setting.after
    return {
        "explanation": str(decision),
        "timestamp": decision.timestamp, "service.name": service, "controller": decision.target,
        "mode": decision.mode, "state": decision.state, "state_features": list(features.items()),
        "action": str(decision.action), "q_values": list(decision.q_values), "reward": decision.reward,
        "value_before": float(decision.value_before), "value_after": float(decision.value_after),
        "applied": decision.applied, "guardrail": decision.guardrail,
    }
