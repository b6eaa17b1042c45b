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


@pytest.fixture
def grouping_work(monkeypatch):
    """The incident tracker's work, counted (not timed): the incidents weighed (``_Group.closed_at``)
    and the onsets read (``_onset``), as two lists the test clears and reads."""
    from perfsdk.instrument import incidents as tracking

    examined: list[object] = []
    read: list[object] = []
    closed_at, onset = tracking._Group.closed_at, tracking._onset
    monkeypatch.setattr(tracking._Group, "closed_at", lambda g, when, w: examined.append(g) or closed_at(g, when, w))
    monkeypatch.setattr(tracking, "_onset", lambda a: read.append(a) or onset(a))
    return examined, read
