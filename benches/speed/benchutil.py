"""Helpers shared by the benches (see benches/ratios.py for how they are read)."""

from __future__ import annotations


def per_item(benchmark, items: int, anchor: str | None = None) -> None:
    """Record how many items one call handles, so ratios.py reports per-item cost."""
    benchmark.extra_info["items"] = items
    if anchor:
        benchmark.extra_info["anchor"] = anchor


def bench_per_event(benchmark, events: list, fn, anchor: str | None = None) -> None:
    """Time ``fn(x)`` for every event in one call (so timer overhead vanishes)."""

    def run() -> None:
        for x in events:
            fn(x)

    per_item(benchmark, len(events), anchor)
    benchmark(run)


def empty(x) -> None:
    """The floor: an empty Python function."""
