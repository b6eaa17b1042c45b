"""Fleet: a peer's bad table, a share that refuses writes, tables of instances long gone, skewed clocks."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import numpy as np
import pytest

from perfsdk import PoolController
from perfsdk.adapt.fleet import EXPIRE_FACTOR, Fleet
from perfsdk.adapt.qlearner import MAX_VISITS, QLearner

HOUR = 3600.0


def instance(directory: Path, **fleet_options) -> PoolController:
    """A controller with a fleet attached (as ``bind`` does), syncing only when told."""
    controller = PoolController(fleet=Fleet(directory, **fleet_options))
    controller.fleet.attach("pool")
    controller.fleet.own_path.parent.mkdir(parents=True, exist_ok=True)
    return controller


def peer_table(controller: PoolController, path: Path, visits: float = 10, q: float = -5.0, state: int = 3,
               age_s: float = 0.0) -> Path:
    """A peer's table at ``path``: ``q`` learned ``visits`` times in ``state``, written ``age_s`` ago
    (negative: by a clock ahead of this one)."""
    peer = QLearner(controller.learner.n_states, controller.learner.n_actions, **controller.learner._params_no_size())
    peer.q[state], peer.visits[state] = q, visits
    peer.save(path)
    mtime = time.time() - age_s
    os.utime(path, (mtime, mtime))
    return path


def test_a_peer_table_with_inf_or_huge_visits_is_rejected_and_the_learner_stays_finite(tmp_path):
    """A peer's +inf visits passed load() and merge made inf / inf: the live learner took NaN
    Q-values in every state (pool sizing stopped on every instance); two peers' 1e308 summed to inf."""
    me = instance(tmp_path)
    folder = me.fleet.own_path.parent
    for name, visits in (("inf", np.inf), ("big1", 1e308), ("big2", 1e308), ("over", MAX_VISITS + 2)):
        peer_table(me, folder / f"peer-{name}.qtable", visits=visits)
    me.fleet.sync(me, publish=False)
    assert me.fleet.stats()["tables_rejected"] == 4 and me.fleet.stats()["tables_read"] == 0
    assert not me.learner.visits.any() and np.isfinite(me.learner.q).all()  # left as it was

    for path in folder.iterdir():
        path.unlink()
    for name in ("a", "b"):  # the most a learner holds, twice: the merge's sum stops at the cap
        peer_table(me, folder / f"peer-{name}.qtable", visits=MAX_VISITS)
    me.fleet.sync(me, publish=False)
    assert me.fleet.stats()["tables_read"] == 2
    assert (me.learner.visits[3] == MAX_VISITS).all() and (me.learner.q[3] == -5.0).all()
    assert np.isfinite(me.learner.q).all()


def test_a_failed_publish_still_reads_the_peers_and_a_failed_read_still_publishes(tmp_path, monkeypatch):
    """A full disk or read-only share made every sync end at the publish: the instance never read
    its peers again, though their tables were readable."""
    me = instance(tmp_path)
    peer_table(me, me.fleet.own_path.parent / "peer-1-aaaa.qtable")

    def full_disk(self, path):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(QLearner, "save", full_disk)
        with pytest.raises(OSError, match="No space"):  # raised, as before: the controller counts it
            me.fleet.sync(me)
    stats = me.fleet.stats()
    assert stats["published"] == 0 and stats["tables_read"] == 1 and stats["states_adopted"] == 1
    assert isinstance(me.fleet.last_error, OSError) and (me.learner.q[3] == -5.0).all()

    def unreadable(self, pattern):
        raise PermissionError(errno.EACCES, "Permission denied")

    with monkeypatch.context() as patched:
        patched.setattr(Path, "glob", unreadable)
        with pytest.raises(PermissionError):
            me.fleet.sync(me)
    assert me.fleet.stats()["published"] == 1 and me.fleet.own_path.is_file()


def test_tables_long_expired_are_removed_but_fresh_ones_and_its_own_are_kept(tmp_path, monkeypatch):
    """Each restart, forked worker and dispose publishes under a new name and nothing removed a
    table: 50,005 expired ones made each sync take 315 ms listing and statting them all."""
    me = instance(tmp_path, max_age_s=HOUR)
    folder = me.fleet.own_path.parent
    me.fleet.sync(me)  # its own table, then left unwritten long past the expiry
    old = time.time() - 10 * HOUR
    os.utime(me.fleet.own_path, (old, old))
    ages = {"fresh": 0.1 * HOUR, "stale": 1.5 * HOUR, "expired": (EXPIRE_FACTOR + 0.5) * HOUR,
            "ancient": 1000 * HOUR}
    for name, age in ages.items():
        peer_table(me, folder / f"{name}.qtable", age_s=age)
    me.fleet.sync(me, publish=False)
    stats = me.fleet.stats()
    assert stats["tables_removed"] == 2 and stats["tables_read"] == 1 and stats["tables_rejected"] == 0
    assert sorted(p.name for p in folder.iterdir()) == sorted(["fresh.qtable", "stale.qtable", me.fleet.own_path.name])

    real_unlink = Path.unlink

    def beaten_to_it(self, missing_ok=False):  # another instance removes the same file first
        real_unlink(self)
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(self))

    peer_table(me, folder / "expired.qtable", age_s=(EXPIRE_FACTOR + 0.5) * HOUR)
    monkeypatch.setattr(Path, "unlink", beaten_to_it)
    me.fleet.sync(me, publish=False)  # no fault, and not counted here: the other instance removed it
    assert me.fleet.last_error is None and me.fleet.stats()["tables_removed"] == 2
    assert not (folder / "expired.qtable").exists()


def test_a_table_from_a_clock_ahead_ages_as_one_from_a_clock_behind(tmp_path):
    """A table dated a year ahead (a skewed clock) was never aged out and always sorted newest:
    read for a year after its instance was gone, ahead of tables truly written minutes ago."""
    me = instance(tmp_path, max_age_s=HOUR, max_files=1)
    folder = me.fleet.own_path.parent
    peer_table(me, folder / "year-ahead.qtable", q=-9.0, age_s=-365 * 24 * HOUR)
    peer_table(me, folder / "hours-ahead.qtable", q=-9.0, age_s=-1.5 * HOUR)
    peer_table(me, folder / "half-hour-ahead.qtable", q=-8.0, age_s=-0.5 * HOUR)
    peer_table(me, folder / "minutes-ago.qtable", q=-7.0, age_s=0.1 * HOUR)
    me.fleet.sync(me, publish=False)
    assert me.fleet.stats()["tables_read"] == 1 and (me.learner.q[3] == -7.0).all()  # the nearest to now
    assert me.fleet.stats()["tables_removed"] == 1 and not (folder / "year-ahead.qtable").exists()
    assert (folder / "hours-ahead.qtable").exists()  # ignored, not yet removed
