"""Arrow export: schemas, the span exporter, table writers, redaction, reading back."""

from perfsdk.export.reader import read, recover
from perfsdk.export.redact import Redactor
from perfsdk.export.schema import ANOMALIES, DECISIONS, RESOURCES, SPANS
from perfsdk.export.spans import ArrowSpanExporter
from perfsdk.export.tables import TableWriter, anomaly_row

__all__ = ["ANOMALIES", "DECISIONS", "RESOURCES", "SPANS", "ArrowSpanExporter", "Redactor",
           "TableWriter", "anomaly_row", "read", "recover"]
