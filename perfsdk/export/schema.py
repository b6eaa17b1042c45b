"""The four Arrow tables perfsdk writes, and the metadata every file carries.

Column names follow OpenTelemetry's semantic conventions where they exist
(``service.name``, ``trace_id``, ``span_id``, ``status_code``, ...). Times are
UTC timestamps with nanosecond unit; durations carry their unit in the name.
``docs/arrow-schema.md`` documents every column. Bump ``SCHEMA_VERSION`` when
a column changes meaning or type (adding a nullable column is compatible).
"""

from __future__ import annotations

import pyarrow as pa

from perfsdk._version import __version__

__all__ = ["ANOMALIES", "DECISIONS", "RESOURCES", "SCHEMA_VERSION", "SPANS", "STRING_MAP", "TABLES", "TS",
           "with_metadata"]

SCHEMA_VERSION = "1"

TS = pa.timestamp("ns", tz="UTC")
STRING_MAP = pa.map_(pa.string(), pa.string())

SPANS = pa.schema([
    pa.field("trace_id", pa.string(), nullable=False),  # 32 hex digits
    pa.field("span_id", pa.string(), nullable=False),  # 16 hex digits
    pa.field("parent_span_id", pa.string()),  # null for a root span
    pa.field("name", pa.string(), nullable=False),
    pa.field("kind", pa.string(), nullable=False),  # INTERNAL, SERVER, CLIENT, PRODUCER, CONSUMER
    pa.field("start_time", TS, nullable=False),
    pa.field("end_time", TS, nullable=False),
    pa.field("duration_ms", pa.float64(), nullable=False),
    pa.field("status_code", pa.string(), nullable=False),  # UNSET, OK, ERROR
    pa.field("status_message", pa.string()),
    pa.field("service.name", pa.string(), nullable=False),
    pa.field("scope.name", pa.string()),  # the instrumentation library
    pa.field("attributes", STRING_MAP),  # after redaction
])

ANOMALIES = pa.schema([
    pa.field("timestamp", TS),  # the anomalous point (a run's first point)
    pa.field("service.name", pa.string(), nullable=False),
    pa.field("series", pa.string(), nullable=False),  # span name or resource metric
    pa.field("source", pa.string()),  # span, resource, analyze
    pa.field("metric", pa.string()),  # duration_ms, process.cpu.utilization, ...
    pa.field("detector", pa.string(), nullable=False),
    pa.field("index", pa.int64()),  # position in the detector's stream
    pa.field("value", pa.float64()),
    pa.field("expected", pa.float64()),
    pa.field("std", pa.float64()),
    pa.field("score", pa.float64()),
    pa.field("threshold", pa.float64()),
    pa.field("lower", pa.float64()),
    pa.field("upper", pa.float64()),
    pa.field("onset", TS),
    pa.field("confirmed_at", TS),
    pa.field("trace_id", pa.string()),
    pa.field("span_id", pa.string()),
    pa.field("details", STRING_MAP),  # the rest of the explanation (model, run, ...)
])

DECISIONS = pa.schema([
    pa.field("timestamp", TS, nullable=False),
    pa.field("service.name", pa.string(), nullable=False),
    pa.field("controller", pa.string(), nullable=False),  # e.g. AdaptiveCache name
    pa.field("mode", pa.string(), nullable=False),  # auto or advisory
    pa.field("state", pa.int64(), nullable=False),  # the learner's state index
    pa.field("state_features", pa.map_(pa.string(), pa.float64())),  # what the state was made of
    pa.field("action", pa.string(), nullable=False),
    pa.field("q_values", pa.list_(pa.float64())),  # one per action, at decision time
    pa.field("reward", pa.float64()),
    pa.field("value_before", pa.float64()),  # e.g. capacity
    pa.field("value_after", pa.float64()),
    pa.field("applied", pa.bool_(), nullable=False),
    pa.field("guardrail", pa.string()),  # the limit that clipped the action, if any
    pa.field("explanation", pa.string()),  # the whole decision in words
])

RESOURCES = pa.schema([
    pa.field("timestamp", TS, nullable=False),
    pa.field("service.name", pa.string(), nullable=False),
    pa.field("metric", pa.string(), nullable=False),  # process.cpu.utilization, ...
    pa.field("value", pa.float64(), nullable=False),
    pa.field("unit", pa.string()),  # %, MB, {thread}, ms
])

#: A span file's metadata key: JSON, span name -> the ``module:qualname`` of each function
#: ``@monitor`` traces under it (what ``perfsdk testgen --bench-out`` imports).
FUNCTIONS_KEY = "perfsdk.functions"

TABLES = {"spans": SPANS, "anomalies": ANOMALIES, "decisions": DECISIONS, "resources": RESOURCES}


def with_metadata(schema: pa.Schema, table: str, service: str) -> pa.Schema:
    """``schema`` carrying perfsdk's file metadata (version, schema version, service)."""
    return schema.with_metadata({
        "perfsdk.version": __version__,
        "perfsdk.schema_version": SCHEMA_VERSION,
        "perfsdk.table": table,
        "service.name": service,
    })
