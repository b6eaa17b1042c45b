"""Arrow export: schemas, the span exporter, table writers, redaction, reading back.

Everything perfsdk sees can be written as Apache Arrow (or Parquet) files that
pyarrow, pandas, polars and DuckDB read without perfsdk (DuckDB reads the
Parquet files with ``read_parquet``, and the Arrow files through a
``pyarrow.dataset``):

>>> import tempfile, duckdb
>>> from opentelemetry.sdk.trace import TracerProvider
>>> import perfsdk
>>> root = tempfile.mkdtemp()
>>> from opentelemetry.sdk.resources import Resource
>>> provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
>>> sdk = perfsdk.init(tracer_provider=provider, export_dir=root, sample_resources=False)
>>> for route in ["/cart", "/cart", "/checkout"]:
...     with sdk.tracer_provider.get_tracer("demo").start_as_current_span(f"GET {route}"):
...         pass
>>> sdk.shutdown()
>>> import pyarrow.dataset as ds
>>> spans = ds.dataset(f"{root}/spans", format="ipc", partitioning="hive")  # DuckDB scans it in place
>>> duckdb.sql('''
...     SELECT name, count(*) AS n, max(service) AS service FROM spans GROUP BY name ORDER BY name
... ''').fetchall()
[('GET /cart', 2, 'shop'), ('GET /checkout', 1, 'shop')]
>>> read(root).group_by("name").aggregate([("duration_ms", "count")]).sort_by("name").to_pylist()
[{'name': 'GET /cart', 'duration_ms_count': 2}, {'name': 'GET /checkout', 'duration_ms_count': 1}]
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from perfsdk._runtime import lazy_names

if TYPE_CHECKING:
    from perfsdk.export.options import FORMATS
    from perfsdk.export.reader import read, read_readable, recover
    from perfsdk.export.redact import Redactor
    from perfsdk.export.schema import ANOMALIES, DECISIONS, RESOURCES, SPANS
    from perfsdk.export.spans import ArrowSpanExporter, SpanColumns, spans_to_columns
    from perfsdk.export.tables import TableWriter, anomaly_row, decision_row

#: name -> the module that defines it. pyarrow is a large import: a process that
#: never exports (no ``export_dir``) never loads it, so the names load on first use.
_HOMES = {
    "FORMATS": "options", "read": "reader", "read_readable": "reader", "recover": "reader", "Redactor": "redact",
    "ANOMALIES": "schema", "DECISIONS": "schema", "RESOURCES": "schema", "SPANS": "schema",
    "ArrowSpanExporter": "spans", "SpanColumns": "spans", "spans_to_columns": "spans",
    "TableWriter": "tables", "anomaly_row": "tables", "decision_row": "tables",
}

__all__ = ["ANOMALIES", "DECISIONS", "FORMATS", "RESOURCES", "SPANS", "ArrowSpanExporter", "Redactor",
           "SpanColumns", "TableWriter", "anomaly_row", "decision_row", "read", "read_readable", "recover",
           "spans_to_columns"]


__getattr__, __dir__ = lazy_names(__name__, {name: f"{__name__}.{home}" for name, home in _HOMES.items()})
