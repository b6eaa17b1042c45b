"""Helpers shared by the benches (see benches/ratios.py for how they are read)."""

from __future__ import annotations


def per_item(benchmark, items: int, anchor: str | None = None) -> None:
    """Record how many items one call handles, so ratios.py reports per-item cost."""
    benchmark.extra_info["items"] = items
    if anchor:
        benchmark.extra_info["anchor"] = anchor
