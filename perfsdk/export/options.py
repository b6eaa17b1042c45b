"""File options of the Arrow export, checked without loading pyarrow."""

from __future__ import annotations

from perfsdk._runtime import check_choice, check_int, check_number

__all__ = ["FORMATS", "SPAN_BYTES_ESTIMATE", "check_options"]

FORMATS = ("arrow", "parquet")
#: Roughly what one ended span waiting for the export holds in a typical service (its columns
#: and a dozen HTTP attributes measure 900 bytes): the smallest span queue allowed, and what
#: sizes a chunk under a small bound (the bound itself counts each chunk's measured bytes).
SPAN_BYTES_ESTIMATE = 1024


def check_options(fmt: str, max_bytes: int, max_age_s: float) -> None:
    """Raise naming the first bad file option."""
    check_choice("format", fmt, FORMATS)
    check_int("max_bytes", max_bytes, minimum=1)
    check_number("max_age_s", max_age_s, low=0.0, low_open=True)
