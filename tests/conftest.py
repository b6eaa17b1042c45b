"""Shared fixtures: where the project's real data lives, a private PostgreSQL server."""

from __future__ import annotations

from pathlib import Path

import pytest
from postgres_server import postgres  # noqa: F401  (a fixture)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (real labelled data; read in place, never copied in)."""
    if not DATA.is_dir():
        pytest.skip(f"shared data folder {DATA} is absent")
    return DATA


@pytest.fixture(autouse=True)
def _process_faults_stay_with_their_test():
    """Some tests make the process-wide ``FAULTS`` count on purpose (a callback left stuck at
    shutdown); every ``stats()["faults"]`` includes it, so it must not carry into the next test."""
    from perfsdk._runtime import FAULTS

    before = FAULTS.snapshot()
    yield
    with FAULTS._lock:
        FAULTS._counts.clear()
        FAULTS._counts.update(before)
