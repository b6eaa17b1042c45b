"""Faults inside perfsdk: caught, counted, logged once per kind, never raised.

Everything perfsdk runs on the application's path (span processing,
callbacks, the resource sampler) goes through ``Faults.guard`` or
``Faults.record``, so a bug in perfsdk or in a user's callback costs a counter
increment and one log line, not the application's request.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from contextlib import contextmanager
from typing import Iterator

log = logging.getLogger("perfsdk")


class Faults:
    """Counts faults by kind; logs the first of each kind with its traceback."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._logged: set[str] = set()
        self._lock = threading.Lock()

    def record(self, kind: str, exc: BaseException) -> None:
        with self._lock:
            self.counts[kind] += 1
            first = kind not in self._logged
            self._logged.add(kind)
        if first:
            log.error("perfsdk: %s failed (%s); counted in stats()['faults'], logged once",
                      kind, exc, exc_info=exc)

    @contextmanager
    def guard(self, kind: str) -> Iterator[None]:
        try:
            yield
        except Exception as exc:
            self.record(kind, exc)

    def after_fork(self) -> None:
        self._lock = threading.Lock()

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)
