"""Fleet learning: the instances of a service share what their controllers learned.

Each instance publishes what its learner learned itself to a shared directory
(one file an instance, written atomically by ``QLearner.save``) and reads the
others' when it starts and every ``every`` decisions. What it reads is merged
(``QLearner.merge``: visit-weighted) and fills in the states this instance
has not learned in itself -- a new instance starts from the fleet's policy,
and an instance's own evidence is never overwritten by the fleet's
(``Controller.adopt``). What it adopted it does not publish
(``Controller.own_table``): republished, a second-hand copy would count again
with every instance and outweigh the one that has the evidence. Files and I/O
happen on perfsdk's background worker, never on the application's path;
unreadable or foreign files -- another table size or gamma, anything but a
regular file, a file larger than a table takes, a table no learner holds
(inf visits) -- are skipped and counted. A table's age is how far its
modification time lies from now either way (a clock a year ahead is no
fresher than one a year behind); tables older than ``EXPIRE_FACTOR`` times
``max_age_s`` are removed (each restart or forked worker publishes under a
new name: kept, they piled up and every sync listed them all).

    PoolController(fleet="/shared/perfsdk-fleet")   # or CacheController(fleet=...)
"""

from __future__ import annotations

import heapq
import os
import secrets
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perfsdk._runtime import at_fork, check_int, check_number

if TYPE_CHECKING:
    from perfsdk.adapt.controller import Controller
    from perfsdk.adapt.qlearner import QLearner

__all__ = ["Fleet"]

SUFFIX = ".qtable"
#: Tables this many times ``max_age_s`` old are removed, not just ignored: a margin for instances
#: whose clocks differ (instances sharing a directory should share ``max_age_s``).
EXPIRE_FACTOR = 2.0


class Fleet:
    """A shared directory of learned tables (see the module docstring).

    Parameters
    ----------
    directory
        Shared by the instances (a network or host directory); one subdirectory a target name.
    every
        Decisions between publishing this instance's table and reading the others'.
    max_files
        The newest this many tables are read (bounded work however many instances came and went).
    max_age_s
        Tables older than this are ignored (instances long gone, a service since changed), and
        removed at ``EXPIRE_FACTOR`` times it (counted in ``tables_removed``). Age is the distance
        of a table's modification time from now, either way (a clock skewed ahead ages too).

    Examples
    --------
    >>> import tempfile
    >>> from perfsdk import PoolController
    >>> directory = tempfile.mkdtemp()
    >>> PoolController(fleet=directory).fleet.stats()
    {'published': 0, 'tables_read': 0, 'tables_rejected': 0, 'states_adopted': 0, 'tables_removed': 0}
    """

    # set anew in a forked child (``_after_fork``)
    counts: dict[str, int]
    last_error: BaseException | None
    _lock: threading.Lock

    def __init__(self, directory: str | os.PathLike[str], *, every: int = 30, max_files: int = 32,
                 max_age_s: float = 7 * 86400.0) -> None:
        if not isinstance(directory, (str, os.PathLike)) or not str(directory):
            raise TypeError(f"directory must be a path, got {directory!r}")
        self.directory = Path(directory)
        self.every = check_int("every", every, minimum=1)
        self.max_files = check_int("max_files", max_files, minimum=1)
        self.max_age_s = check_number("max_age_s", max_age_s, low=0.0, low_open=True)
        self._folder: Path | None = None
        self._pid, self._token = os.getpid(), secrets.token_hex(4)
        self._after_fork()
        at_fork(self._after_fork)

    def _after_fork(self) -> None:
        """A new fleet's lock and counts -- and a forked child's: a sync running on a thread of the
        parent held the lock, and that thread is not here to let it go (the child's syncs, and the
        work queued behind them on perfsdk's worker, waited for ever); the child is another instance."""
        self.counts = {"published": 0, "tables_read": 0, "tables_rejected": 0, "states_adopted": 0,
                       "tables_removed": 0}
        self.last_error = None
        self._lock = threading.Lock()  # one sync at a time

    def attach(self, target_name: str) -> None:
        """The table's folder: one a target name (a cache and a pool learn different things).
        A ``Fleet`` serves one controller: a second would write over the first's file."""
        if self._folder is not None:
            raise ValueError(f"this Fleet already serves the target {self._folder.name!r}: give each "
                             "controller its own Fleet (they may share the directory)")
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in target_name) or "target"
        if not safe.strip("."):  # "." or ".." would be the fleet's directory or its parent
            safe = safe.replace(".", "_")
        self._folder = self.directory / safe

    @property
    def own_path(self) -> Path:
        assert self._folder is not None, "attach() first"
        if os.getpid() != self._pid:  # a forked child is another instance
            self._pid, self._token = os.getpid(), secrets.token_hex(4)
        return self._folder / f"{socket.gethostname()}-{self._pid}-{self._token}{SUFFIX}"

    def due(self, decisions: int) -> bool:
        """Publish and read every ``every`` decisions (and once at the start: see ``Controller.bind``)."""
        return decisions % self.every == 0

    def sync(self, controller: "Controller", publish: bool = True) -> None:
        """Publish this instance's table (unless ``publish`` is false: a new instance has learned
        nothing yet), then adopt the fleet's in the states not seen here (on the background
        worker; faults are counted and the next sync tries again). Each goes on when the other
        fails: a read-only or full share still lets this instance read its peers."""
        with self._lock:
            try:
                self._sync(controller, publish)
                self.last_error = None
            except Exception as exc:  # a full disk, a directory gone: the controller goes on alone
                self.last_error = exc
                raise

    def _sync(self, controller: "Controller", publish: bool) -> None:
        own = self.own_path
        mine = controller.own_table()
        try:
            if publish:
                own.parent.mkdir(parents=True, exist_ok=True)
                mine.save(own)
                self.counts["published"] += 1
        finally:  # a failed publish still raises (and is counted) after the read; both: chained
            self._read(controller, mine, own)

    def _read(self, controller: "Controller", mine: "QLearner", own: Path) -> None:
        """Merge the newest tables (at most ``max_files``, younger than ``max_age_s``) into the
        controller; remove those past ``EXPIRE_FACTOR * max_age_s`` (never this instance's own)."""
        from perfsdk.adapt.qlearner import QLearner

        now = time.time()
        files = []
        for path in own.parent.glob(f"*{SUFFIX}") if own.parent.is_dir() else ():
            if path == own:
                continue
            try:
                age = abs(now - path.stat().st_mtime)
                if age > EXPIRE_FACTOR * self.max_age_s:  # (an owner alive republishes at its next sync)
                    path.unlink()
                    self.counts["tables_removed"] += 1
            except OSError:  # removed meanwhile (another instance expired it too); a read-only share's
                continue
            if age <= self.max_age_s:
                files.append((age, path))
        others = []
        for _, path in heapq.nsmallest(self.max_files, files):
            try:  # a FIFO, a huge file: refused before reading (a read would block or fill the memory)
                table = QLearner.load(path, max_bytes=mine.max_file_bytes())
                if (table.n_states, table.n_actions) != (mine.n_states, mine.n_actions):
                    raise ValueError(f"{path}: {table.n_states} states, this controller has {mine.n_states}")
                if table.gamma != mine.gamma:  # values in other units (see QLearner.merge)
                    raise ValueError(f"{path}: gamma {table.gamma}, this controller's is {mine.gamma}")
            except (OSError, ValueError):
                self.counts["tables_rejected"] += 1
                continue
            others.append(table)
            self.counts["tables_read"] += 1
        if others:
            fleet = others[0].merge(others[1:])
            self.counts["states_adopted"] += controller.adopt(fleet)

    def stats(self) -> dict[str, int]:
        return dict(self.counts)
