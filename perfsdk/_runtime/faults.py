"""Faults inside perfsdk: caught, counted, logged once per kind, never raised.

Everything perfsdk runs on the application's path or in the background (span
processing, callbacks, exports, the resource sampler, controllers, fits) goes
through ``Faults.guard`` or ``Faults.record``, so a bug in perfsdk or in a
user's callback costs a counter increment and one log line, not the
application's request.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from contextlib import contextmanager
from typing import Iterator

from perfsdk._runtime.forks import at_fork

__all__ = ["FAULTS", "Faults"]

log = logging.getLogger("perfsdk")


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
        self._lock = threading.Lock()
        at_fork(self._after_fork)

    def record(self, kind: str, exc: BaseException) -> None:
        with self._lock:
            self._counts[kind] += 1
            first = kind not in self._logged
            self._logged.add(kind)
        if first:
            log.error("perfsdk: %s failed (%s); counted in stats()['faults'], logged once",
                      kind, exc, exc_info=exc)

    @contextmanager
    def guard(self, kind: str) -> Iterator[None]:
        """Run the block; a fault in it is recorded as ``kind`` and swallowed."""
        try:
            yield
        except Exception as exc:
            self.record(kind, exc)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    def _after_fork(self) -> None:
        # the lock may have been held by a thread that does not exist in the child
        self._lock = threading.Lock()


#: Faults of background work that no handle owns (fits, callbacks of standalone caches).
FAULTS = Faults()
