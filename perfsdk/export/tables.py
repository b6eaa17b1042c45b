"""TableWriter: rows of the anomalies, decisions and resources tables, batched."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, Mapping

from perfsdk.detect import Anomaly
from perfsdk.export.columns import batch_from_rows
from perfsdk.export.schema import TABLES
from perfsdk._runtime import at_fork, held_here, owned_lock
from perfsdk.export.writer import RotatingWriter

__all__ = ["NAMED_COLUMNS", "TableWriter", "anomaly_row", "decision_row"]

#: The columns of a table that may name a span (an anomaly's series is its span's name): what
#: ``TableWriter(redact=...)`` redacts (not the trace ids beside them, which a card number's
#: pattern can match).
NAMED_COLUMNS = {"anomalies": ("series", "detector", "details")}


class TableWriter:
    """Buffers rows (dicts keyed by column) and writes them ``batch_rows`` at a time.

    ``redact``, if given, is applied to the texts of the columns that may name a span
    (``NAMED_COLUMNS``), as the spans table writes span names (``Redactor.message``).

    A row that is not written is counted (``stats()``), never lost in silence: while
    writes fail (a full disk), the last ``4 * batch_rows`` rows are kept for the next
    attempt and older ones dropped.

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
        self.batch_rows = batch_rows
        self.redact = redact
        self._named = NAMED_COLUMNS.get(table, ())
        self._writer = RotatingWriter(directory, table, self.schema, service, format, max_bytes, max_age_s)
        self._rows: list[dict[str, Any]] = []
        self._lock = owned_lock()  # see the class docstring, and perfsdk._runtime.locks
        self._reset_counts()
        at_fork(self._after_fork)

    def _reset_counts(self) -> None:
        self.rows_skipped = 0  # rows add() refused (not a mapping of columns, or their redaction failed)
        self.rows_dropped = 0  # rows given up after repeated write errors (bounded buffer)
        self.rows_unwritten = 0  # rows still buffered when the table was closed (its writes failing)

    def add(self, row: Mapping[str, Any]) -> None:
        """Buffer ``row``, and write the buffer once it holds ``batch_rows``: a write that fails
        raises (the caller counts the fault), its rows kept for the next attempt."""
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
        if held_here(self._lock):
            self._rows.append(row)  # (atomic) written by the next add or flush
            return
        with self._lock:
            self._rows.append(row)
            if len(self._rows) >= self.batch_rows:
                self._write()

    def flush(self) -> bool:
        """Write buffered rows and publish the open file: True, or False if called inside the
        table's own call (see the class docstring)."""
        if held_here(self._lock):
            return False
        with self._lock:
            self._write_and_publish()
        return True

    def close(self) -> bool:
        """``flush``; the rows that cannot be written even now are given up, counted in
        ``rows_unwritten``. False, nothing done, if called inside the table's own call."""
        if held_here(self._lock):
            return False
        with self._lock:
            try:
                self._write_and_publish()
            finally:
                self.rows_unwritten += len(self._rows)
                self._rows = []
        return True

    def stats(self) -> dict[str, int]:
        """Rows written, and every row that was not, by why: ``rows_skipped`` (refused by ``add``),
        ``rows_dropped`` (past the buffer's bound while writes failed), ``rows_lost`` (written into
        a file that could not be published), ``rows_unwritten`` (still buffered at ``close``); and
        ``rows_buffered``, waiting for the next write."""
        writer = self._writer
        with self._lock:
            return {"rows_written": writer.rows_written - writer.rows_lost, "rows_buffered": len(self._rows),
                    "rows_skipped": self.rows_skipped, "rows_dropped": self.rows_dropped,
                    "rows_lost": writer.rows_lost, "rows_unwritten": self.rows_unwritten}

    def publish_stale(self) -> None:
        """Publish the open file once it is ``max_age_s`` old (``RotatingWriter.publish_stale``)."""
        self._writer.publish_stale()

    def _write_and_publish(self) -> None:
        """``flush``'s work, under the lock its caller holds: ``close`` gives up what is left
        within the same hold, so no row added meanwhile is counted unwritten."""
        self._write()
        self._writer.flush()

    def _write(self) -> None:
        if not self._rows:
            return
        rows, self._rows = self._rows, []
        try:
            self._writer.write(batch_from_rows(rows, self.schema))
        except BaseException:
            # keep the rows for the next attempt, up to a bound; beyond it, count the loss
            keep = rows[-4 * self.batch_rows :]
            self.rows_dropped += len(rows) - len(keep)
            self._rows = keep + self._rows
            raise

    def _after_fork(self) -> None:
        """In a forked child: the parent's buffered rows are the parent's to write, and its counts
        the parent's to report."""
        self._rows = []
        self._lock = owned_lock()
        self._reset_counts()


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
