"""Type stub for the compiled lending path of the connection pool (_pool.pyx)."""

import threading
from collections import deque
from typing import Any, Iterable

SAMPLES: int

class IntervalRecord:
    started: float
    busy_area: float
    queue_area: float
    last_change: float
    acquisitions: int
    releases: int
    waited: int
    timeouts: int
    shed: int
    waiting_start: int
    waiting_end: int
    peak: int
    @property
    def waits(self) -> list[float]: ...
    @property
    def holds(self) -> list[float]: ...
    @property
    def latencies(self) -> list[float]: ...
    @property
    def levels(self) -> int: ...
    def __init__(self, started: float = 0.0, *, last_change: float = 0.0, waiting_start: int = 0,
                 waiting_end: int = 0, busy_area: float = 0.0, queue_area: float = 0.0, peak: int = 0,
                 levels: int = 0) -> None: ...
    def arrival_rate(self, now: float) -> float: ...
    def elapse(self, now: float, in_use: int, waiting: int) -> None: ...
    def lent(self, waited: float) -> None: ...
    def returned(self, held: float, latency: float, level: int = -1) -> None: ...
    def percentiles(self, samples: str, qs: Iterable[float]) -> list[float]: ...
    def level_holds(self) -> tuple[list[float], list[float]]: ...

class Lent:
    conn: Any
    created: float
    returned: float
    taken: float
    waited: float
    level: int
    stack: str | None
    leak_reported: bool
    def __init__(self, conn: Any, now: float) -> None: ...

class Waiter:
    since: float
    ready: threading.Lock
    record: Lent | None
    error: BaseException | None
    stack: str | None
    def __init__(self, since: float, stack: str | None = None) -> None: ...

class LendingPath:
    _idle: list[Lent]
    _in_use: dict[int, Lent]
    _waiters: deque[Waiter]
    _record: IntervalRecord
    _counts: dict[str, int]
    _closed: bool
    _started: bool
    _target: int
    _opening: int
    max_waiting: int
    timeout: float
    max_lifetime: float
    check: Any
    reset: Any
    leak_timeout: float | None
    name: str
    _closed_lent: set[int]
    _lock: threading.Lock
    def acquire(self, timeout: float | None = None) -> Any: ...
    def release(self, conn: Any, *, broken: bool = False) -> None: ...
    def _abandon(self, waiter: Waiter) -> None: ...
    def _hand_off(self, record: Lent, now: float) -> None: ...
    def _open_count(self) -> int: ...
    def _count_change(self, now: float) -> None: ...
