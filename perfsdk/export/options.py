"""File options of the Arrow export, checked without loading pyarrow."""

from __future__ import annotations

from perfsdk._runtime import check_choice, check_int, check_number

__all__ = ["FORMATS", "SPAN_BYTES_ESTIMATE", "check_options"]

FORMATS = ("arrow", "parquet")
#: What one ended span waiting for the export costs, roughly (the SDK's ReadableSpan and its
#: attributes): the span queue's bound in bytes, divided by this, is its bound in spans.
SPAN_BYTES_ESTIMATE = 1024


def check_options(fmt: str, max_bytes: int, max_age_s: float) -> None:
    """Raise naming the first bad file option."""
    check_choice("format", fmt, FORMATS)
    check_int("max_bytes", max_bytes, minimum=1)
    check_number("max_age_s", max_age_s, low=0.0, low_open=True)
