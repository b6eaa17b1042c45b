"""Faults inside perfsdk: caught, counted, logged once per kind, never raised.

Everything perfsdk runs on the application's path or in the background (span
processing, callbacks, exports, the resource sampler, controllers, fits) goes
through ``Faults.guard`` or ``Faults.record``, so a bug in perfsdk or in a
user's callback costs a counter increment and one log line, not the
application's request. Its log lines go through ``log_quietly``: a logging
handler that raises must not turn a counted fault into the application's
exception (or a worker thread's, reported to ``threading.excepthook``).
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from contextlib import contextmanager
from typing import Any, Iterator

from perfsdk._runtime.forks import at_fork
from perfsdk._runtime.locks import held_here, owned_lock

__all__ = ["FAULTS", "Faults", "log_quietly"]

log = logging.getLogger("perfsdk")

#: The fault kind of a log line that logging itself failed to write (counted, not logged).
LOGGING_FAILED = "perfsdk logging"


def log_quietly(logger: logging.Logger, level: int, message: str, *args: Any, faults: Faults | None = None,
                **kwargs: Any) -> None:
    """``logger.log(level, message, *args, **kwargs)``, an exception from logging itself (a
    handler whose ``emit`` raises, a full disk under a file handler) counted in ``faults``
    (default: ``FAULTS``) as ``"perfsdk logging"`` instead of raised: perfsdk logs on the
    application's threads and on its own workers, and a broken log sink must cost neither.

    >>> class Broken(logging.Handler):
    ...     def emit(self, record):
    ...         raise RuntimeError("log sink down")
    >>> demo, broken, faults = logging.getLogger("perfsdk.demo"), Broken(), Faults()
    >>> demo.addHandler(broken)
    >>> log_quietly(demo, logging.ERROR, "perfsdk: %s", "lost", faults=faults)  # nothing raised
    >>> faults.snapshot()
    {'perfsdk logging': 1}
    >>> demo.removeHandler(broken)
    """
    try:
        logger.log(level, message, *args, **kwargs)
    except Exception:
        (faults or FAULTS).count(LOGGING_FAILED)


class Faults:
    """Counts faults by kind; logs the first of each kind with its traceback.

    >>> faults = Faults()
    >>> with faults.guard("demo"):
    ...     raise RuntimeError("boom")
    >>> faults.snapshot(), faults.total()
    ({'demo': 1}, 1)
    """

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._logged: set[str] = set()
        self._lock = owned_lock()
        self._inside: deque[str] = deque()  # kinds counted from inside a count (see ``count``)
        at_fork(self._after_fork)

    def record(self, kind: str, exc: BaseException) -> None:
        if held_here(self._lock):
            self.count(kind)  # (not logged: the log line this thread is inside may be the first)
            return
        with self._lock:
            self._take_inside()
            self._counts[kind] += 1
            first = kind not in self._logged
            self._logged.add(kind)
        if first:
            log_quietly(log, logging.ERROR, "perfsdk: %s failed (%s); counted in stats()['faults'], logged once",
                        kind, exc, exc_info=exc, faults=self)

    def count(self, kind: str) -> None:
        """Count a fault of ``kind`` without logging it. A thread already inside a count (a signal
        handler that interrupted it) cannot wait for the lock it holds: its kind waits in a queue,
        counted by the next reader."""
        if held_here(self._lock):
            self._inside.append(kind)  # atomic
            return
        with self._lock:
            self._take_inside()
            self._counts[kind] += 1

    def _take_inside(self) -> None:  # under self._lock
        inside = self._inside
        while inside:
            self._counts[inside.popleft()] += 1

    @contextmanager
    def guard(self, kind: str) -> Iterator[None]:
        """Run the block; a fault in it is recorded as ``kind`` and swallowed."""
        try:
            yield
        except Exception as exc:
            self.record(kind, exc)

    def snapshot(self) -> dict[str, int]:
        if held_here(self._lock):  # (a signal handler inside a count: read as they stand)
            return dict(self._counts + Counter(self._inside))
        with self._lock:
            self._take_inside()
            return dict(self._counts)

    def total(self) -> int:
        return sum(self.snapshot().values())

    def _after_fork(self) -> None:
        """In a forked child: counts from zero (every count a child reports is its own), and a
        fresh lock (the parent's may have been held by a thread the child does not have)."""
        self._lock = owned_lock()
        self._counts = Counter()
        self._logged = set()
        self._inside = deque()


#: Faults of background work that no handle owns (fits, callbacks of standalone caches).
FAULTS = Faults()
