"""Bench helpers: full sizes under `make bench`, small ones in the test suite.

The test suite runs with ``--benchmark-disable``: each bench body runs once,
untimed, so no bench rots. Sizes shrink then, to keep the suite fast; the
full runs (``make bench``) use the sizes the targets are stated for.
"""

from __future__ import annotations

import pytest
from postgres_server import postgres  # noqa: F401  (a fixture: a private PostgreSQL server)


@pytest.fixture
def full_size(benchmark):
    """``full_size(n, quick)``: ``n`` when timing, ``quick`` in the test suite."""

    def pick(n: int, quick: int) -> int:
        return quick if benchmark.disabled else n

    return pick
