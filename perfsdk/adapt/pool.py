"""AdaptivePool: a thread-safe pool of connections that learns its size while the application runs.

The right number of database connections depends on the load and on the
database: too few and requests queue in the application, too many and the
database slows down under its own contention. The pool measures both (the
wait for a connection, and how long a connection is held at each level of
concurrency), and once an interval its ``PoolController`` (the generic
controller of ``perfsdk.adapt.controller``) decides keep, shrink or grow
within the limits a person set, explaining each decision.

Serving is first come, first served with direct hand-off: a returned
connection goes to the longest waiter, never back to the returning thread.
Connections are made and retired off the caller's path, on the pool's
maintenance thread; a connection in use is never closed by a shrink. The
lending path itself -- ``acquire`` and ``release`` when a connection is idle or
nobody waits -- is compiled (``perfsdk._native.LendingPath``, this class's base).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import deque
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Mapping

from perfsdk._runtime import (
    Faults, Worker, at_fork, check_bool, check_callable, check_choice, check_int, check_number, check_str,
)
from perfsdk._native import IntervalRecord, Lent, LendingPath, Waiter
from perfsdk.adapt.controller import Evidence
from perfsdk.adapt.decision import Action, Decision, SettingMove
from perfsdk.adapt.pool_controller import PoolController
from perfsdk.adapt.pool_metrics import PoolMetrics
from perfsdk.adapt.pool_policy import PoolEvidence, load_steady

__all__ = ["AdaptivePool", "PoolClosed", "PoolTimeout"]

log = logging.getLogger("perfsdk.pool")

#: The largest ``max_size``: the pool keeps hold times per concurrency level up to it (in every
#: interval's record too), and no database serves more connections from one process.
MAX_SIZE = 10_000
#: The lifetime counts ``stats()`` reports (a forked child starts them from zero).
COUNTS = ("opened", "retired", "factory_errors", "check_failures", "reset_failures", "timeouts", "shed",
          "leaks_reported", "closed_in_use")


class PoolTimeout(TimeoutError):
    """No connection came within the timeout (or too many were already waiting)."""


class PoolClosed(RuntimeError):
    """The pool is closed."""


class AdaptivePool(LendingPath):
    """A pool of any connection-like resource that ``factory()`` makes.

    Parameters
    ----------
    factory
        Makes one connection (e.g. ``lambda: psycopg.connect(dsn)``). Called on
        the pool's own thread; if it raises, the pool retries with back-off and
        a waiting caller's ``PoolTimeout`` names the error.
    min_size, max_size
        Hard limits for the size (the controller and ``resize``); ``max_size`` is 10,000 at most.
        The size is 1 at least: ``min_size=0`` lets idle connections be retired down to none
        (``max_idle``), to be opened again when a caller comes.
    size
        The starting size (default ``min_size``, 1 at least); the pool opens that many in the background.
    timeout
        Default seconds ``acquire`` waits before raising ``PoolTimeout``.
    check
        Called with a connection before it is lent again; if it raises, the
        connection is retired and another is tried (e.g. ``lambda c: c.execute("SELECT 1")``).
    reset
        Called with a connection when it comes back (e.g. roll back an open
        transaction); if it raises, the connection is retired.
    close_connection
        Closes a retired connection (default: its ``close()``), on the pool's thread (in
        ``close()``, on its caller's).
    max_lifetime, max_idle
        Connections older than this, or idle longer than this (seconds), are retired
        (idle ones only while the pool has more than ``min_size``).
    max_waiting
        Callers that may wait at once; beyond it ``acquire`` raises ``PoolTimeout``
        at once (0: no limit), shedding load early.
    leak_timeout
        A connection held longer than this is reported once (logged, counted in
        ``stats()``) with the stack that took it; None: not watched.
    burst
        While callers wait, the pool opens up to this share more than its size (at least eight,
        within ``max_size`` and the database's fitted best concurrency), and retires the extra
        connections as the queue clears -- a spike is served in milliseconds, not at the next
        decision. 0: never more than the size (the default without a controller: a fixed pool
        keeps its size); 0.5 with one.
    controller
        A ``PoolController``, ``"default"`` for one with default settings, or
        ``None`` for a pool of fixed size.
    mode
        ``"auto"`` applies decisions; ``"advisory"`` only records them.
    name
        Names the pool in decisions, metrics and errors.
    on_decision
        Called with every ``Decision`` on a background thread (while
        ``perfsdk.init(export_dir=...)`` runs they also go to the Arrow ``decisions`` table).
    meter_provider
        Where the pool's OpenTelemetry metrics go (``db.client.connection.*``, see
        ``perfsdk.adapt.pool_metrics``); default OTel's global provider, ``False`` for none.
    warm
        Open the first connections (and start the pool's threads) now; False: at the first
        ``acquire`` -- what SQLAlchemy's own pools do after ``engine.dispose()``, which
        leaves a fresh pool behind that may never be used.

    Examples
    --------
    >>> import sqlite3
    >>> pool = AdaptivePool(lambda: sqlite3.connect(":memory:", check_same_thread=False),
    ...                     min_size=1, max_size=4, controller=None)
    >>> with pool.connection() as conn:
    ...     conn.execute("SELECT 1 + 1").fetchone()
    (2,)
    >>> pool.stats()["size"], pool.stats()["in_use"]
    (1, 0)
    >>> pool.close()
    """

    # the books (``_reset_books``), set anew in a forked child
    callbacks_dropped: int
    last_factory_error: BaseException | None
    _backoff: float
    _decision_due: float
    _closing_record: IntervalRecord
    _last_interval: dict[str, float]
    _closed_event: threading.Event

    value_name = "size"  # the controller's guardrails: "min_size", "max_size"

    def __init__(
        self, factory: Callable[[], Any], *, min_size: int = 1, max_size: int = 32, size: int | None = None,
        timeout: float = 30.0, check: Callable[[Any], Any] | None = None, reset: Callable[[Any], Any] | None = None,
        close_connection: Callable[[Any], Any] | None = None, max_lifetime: float = 3600.0,
        max_idle: float = 600.0, max_waiting: int = 0, leak_timeout: float | None = None, burst: float | None = None,
        controller: PoolController | str | None = "default", mode: str = "auto", name: str = "pool",
        on_decision: Callable[[Decision], Any] | None = None, meter_provider: Any = None, warm: bool = True,
    ) -> None:
        check_callable("factory", factory)
        check_bool("warm", warm)
        check_int("min_size", min_size, minimum=0, maximum=MAX_SIZE)
        check_int("max_size", max_size, minimum=max(1, min_size), maximum=MAX_SIZE)
        size = max(1, min_size) if size is None else size
        check_int("size", size, minimum=max(1, min_size), maximum=max_size)
        check_number("timeout", timeout, low=0.0)
        for label, fn in (("check", check), ("reset", reset), ("close_connection", close_connection),
                          ("on_decision", on_decision)):
            if fn is not None:
                check_callable(label, fn)
        check_number("max_lifetime", max_lifetime, low=0.0, low_open=True)
        check_number("max_idle", max_idle, low=0.0, low_open=True)
        check_int("max_waiting", max_waiting, minimum=0)
        if burst is None:
            burst = 0.0 if controller is None else 0.5
        check_number("burst", burst, low=0.0, high=10.0)
        if leak_timeout is not None:
            check_number("leak_timeout", leak_timeout, low=0.0, low_open=True)
        check_choice("mode", mode, ("auto", "advisory"))
        check_str("name", name)
        if meter_provider is not None and meter_provider is not False and not callable(
                getattr(meter_provider, "get_meter", None)):
            raise TypeError(f"meter_provider must be an OpenTelemetry MeterProvider (with get_meter), None or "
                            f"False, got {meter_provider!r}")
        if controller == "default":
            controller = PoolController()
        if controller is not None and not isinstance(controller, PoolController):
            raise TypeError(f"controller must be a PoolController, 'default' or None, got {controller!r}")
        self.faults = Faults()
        self.factory = factory
        self.min_size, self.max_size = min_size, max_size
        self.timeout = float(timeout)
        self.check, self.reset = check, reset
        self.close_connection = close_connection or _close
        self.max_lifetime, self.max_idle = float(max_lifetime), float(max_idle)
        self.max_waiting = max_waiting
        self.burst = float(burst)
        self.leak_timeout = leak_timeout
        self.controller = controller
        self.mode = mode
        self.name = name
        self.on_decision = on_decision
        self._target = size
        self._closed = False
        self._evidence = PoolEvidence(max_size)
        self._forecast = controller.arrival_forecast() if controller is not None else None
        self._reset_books()
        self._maker: Worker[Callable[[], Any]] = Worker(f"perfsdk-pool-{name}-open", max_queue=max_size + 1,
                                                        faults=self.faults)
        self._ticker: Worker[Callable[[], Any]] = Worker(
            f"perfsdk-pool-{name}", tick=self._maintain, faults=self.faults,
            tick_interval_s=controller.interval_seconds if controller is not None else 1.0)
        self.metrics = PoolMetrics(self, meter_provider) if meter_provider is not False else None
        self._started = False
        if controller is not None:  # last of what may raise: a constructor that fails leaves it unbound
            controller.bind(name, self.faults)
        if warm:
            self._start()
        at_fork(self._after_fork)

    def _start(self) -> None:
        """The pool's threads, and its first connections opening in the background (once; never once
        it is closed)."""
        with self._lock:
            if self._started or self._closed:
                return
            self._started = True
            self._ticker.start()  # under the lock: a close() racing the first acquire ends the thread it started
        self._maker.submit(functools.partial(self._fill, True))

    # -- the lending path's rare parts (acquire and release are LendingPath's) -------------------
    def _wait(self, waiter: Waiter, timeout: float) -> Lent:
        """Wait in the queue. Whatever raises here (an interrupt: KeyboardInterrupt) loses nothing:
        ``LendingPath._take`` then takes the waiter out of the queue, or gives back what it was handed."""
        self._refill()  # grow toward the target off the caller's path
        if timeout >= threading.TIMEOUT_MAX:
            got = waiter.ready.acquire()  # as good as forever (a longer one overflows the lock)
        else:
            got = waiter.ready.acquire(timeout=timeout) if timeout > 0 else waiter.ready.acquire(blocking=False)
        if not got:
            with self._lock:
                if waiter.record is None and waiter.error is None:  # not served meanwhile
                    message = self._shortage(f"no connection within {timeout:g} s")  # this caller counted
                    self._count_change(time.monotonic())
                    self._waiters.remove(waiter)
                    self._counts["timeouts"] += 1
                    self._record.timeouts += 1
                    raise PoolTimeout(message)
        if waiter.error is not None:
            raise waiter.error
        assert waiter.record is not None
        return waiter.record

    def _check_timeout(self, timeout: float, failures: int, error: BaseException,
                       counted: bool = False) -> PoolTimeout:
        """No connection passed ``check`` within ``timeout``: the deadline passed after a failed
        check, or while waiting for the next connection (``counted``: that wait's timeout was)."""
        failed = f"{failures} failed their check, the last with {error!r}"  # user code: outside the lock
        with self._lock:
            message = self._shortage(f"no connection passed its check within {timeout:g} s ({failed})")
            if not counted:
                self._counts["timeouts"] += 1
                self._record.timeouts += 1
        return PoolTimeout(message)

    def _closed_error(self, why: str = "is closed") -> PoolClosed:
        return PoolClosed(f"pool {self.name!r} {why}")

    def _shed_error(self) -> PoolTimeout:  # under the lock
        self._counts["shed"] += 1
        self._record.shed += 1
        return PoolTimeout(self._shortage(f"{len(self._waiters)} callers already waiting "
                                          f"(max_waiting={self.max_waiting})"))

    def _refill(self) -> None:
        self._maker.submit(self._fill)

    def _retire_later(self, records: list[Lent]) -> None:
        """Have ``records`` closed on the pool's thread, not the caller's: a close can block (a TCP
        close to a dead peer) where the caller has a timeout to keep. Once the pool is closed, here
        (its thread is gone); if the thread has too many closes queued, they are left to the garbage
        collector, counted."""
        if not records:
            return
        if not self._closed and self._ticker.submit(functools.partial(self._retire, records)):
            return
        if self._closed:
            self._retire(records)
        else:
            self.faults.record("closing a connection", RuntimeError(
                f"{len(records)} retired connections left unclosed: {self._ticker.max_queue} closes already queued"))

    @contextmanager
    def connection(self, timeout: float | None = None) -> Iterator[Any]:
        """``with pool.connection() as conn:`` -- acquired, and released however the block ends."""
        conn = self.acquire(timeout)
        try:
            yield conn
        finally:
            self.release(conn)

    # -- size ------------------------------------------------------------------------------
    @property
    def size(self) -> int:
        """Connections open or being opened."""
        with self._lock:
            return self._open_count()

    @property
    def target(self) -> int:
        """The size the pool keeps (the controller's or ``resize``'s)."""
        return self._target

    def resize(self, size: int) -> None:
        """Keep ``size`` connections (within the limits): growing opens them in the background,
        shrinking retires idle ones now and busy ones as they come back. ``PoolClosed`` once closed."""
        check_int("size", size, minimum=max(1, self.min_size), maximum=self.max_size)
        if self._closed:
            raise self._closed_error()
        self._set_target(size)

    def _set_target(self, size: int, before: int | None = None) -> bool:
        """Keep ``size`` connections -- if ``before`` is given, only if the target still is
        ``before`` (False: resized meanwhile; see ``apply_if``)."""
        retire: list[Lent] = []
        with self._lock:
            if before is not None and self._target != before:
                return False
            self._target = size
            while self._idle and self._open_count() > size:
                retire.append(self._idle.pop(0))  # the longest idle first
            self._count_retired(retire)
        self._retire_later(retire)
        self._maker.submit(functools.partial(self._fill, True))
        return True

    def _fill(self, eager: bool = False) -> None:
        """Open connections (on the maker thread), backing off on errors: up to the target when
        ``eager`` (a new size) or while callers wait, else up to ``min_size`` (connections that
        sat idle past ``max_idle`` come back only when there is demand for them). ``close`` cuts a
        back-off short, and the factory is never called once it has."""
        while True:
            if self._backoff:
                self._closed_event.wait(self._backoff)
            with self._lock:
                if self._closed:
                    self._turn_away_stranded()  # the open that failed was the last hope of callers it serves
                    return
                goal = (self._burst_limit() if self._waiters
                        else self._target if eager else min(self.min_size, self._target))
                if self._open_count() >= goal:
                    return
                self._opening += 1
            started = time.monotonic()
            try:
                conn = self.factory()
                self._check_new(conn)
            except BaseException as exc:  # asyncio.CancelledError, SystemExit too: this thread goes on
                self._factory_failed(exc)
                continue
            self._backoff = 0.0
            self.last_factory_error = None
            now = time.monotonic()
            if self.metrics is not None:
                with self.faults.guard("pool metrics"):
                    self.metrics.record_create(now - started)
            record = Lent(conn, now)
            with self._lock:
                self._opening -= 1
                self._counts["opened"] += 1
                closing = False
                if self._waiters:  # (a closed pool's too, when its close serves them)
                    self._hand_off(record, now)
                elif self._closed:  # closed while it was being opened: retired, and counted so, at once
                    closing = True
                    self._count_retired([record])
                else:
                    self._idle.append(record)
            if closing:
                self._retire([record])
                return

    def _check_new(self, conn: Any) -> None:
        """Refuse what is not a new connection: the books know connections by identity, so an
        object lent twice would be two callers' at once."""
        if conn is None:
            raise TypeError(f"pool {self.name!r}: the factory returned None, not a connection (a missing return?)")
        with self._lock:
            held = id(conn) in self._in_use or any(record.conn is conn for record in self._idle)
        if held:
            raise ValueError(f"pool {self.name!r}: the factory returned a {type(conn).__qualname__} the pool "
                             "already holds: each call must make a new connection")

    def _factory_failed(self, exc: BaseException) -> None:
        """The factory raised (or made no new connection): counted, logged once, backed off, and named
        by a waiting caller's ``PoolTimeout``. A BaseException is a fault as well (it would have ended
        the thread)."""
        with self._lock:
            self._opening -= 1
            self._counts["factory_errors"] += 1
            first = self._counts["factory_errors"] == 1
        self.last_factory_error = exc
        self._backoff = min(5.0, max(0.05, self._backoff * 2))
        if not isinstance(exc, Exception):
            self.faults.record("the connection factory", exc)
        elif first:
            log.warning("perfsdk: pool %r could not open a connection (retrying with back-off): %r", self.name, exc)

    def _new_record(self, now: float, waiting: int) -> IntervalRecord:
        """An interval's record, keeping hold times per concurrency level as ``PoolEvidence`` does."""
        return IntervalRecord(started=now, last_change=now, waiting_start=waiting, levels=self._evidence.levels)

    def _count_retired(self, records: list[Lent]) -> None:  # under the lock
        self._counts["retired"] += len(records)

    def _burst_limit(self) -> int:
        """The most connections open while callers wait (see ``burst``)."""
        return self._evidence.burst_limit(self._target, self.max_size, self.burst)

    def _retire(self, records: list[Lent]) -> None:
        """Close ``records``; a close that fails is counted, and the others are closed all the same. A
        BaseException (asyncio.CancelledError, SystemExit) is counted too: on the pool's threads it would
        end the thread; on the application's (``close``), the first is raised once all are closed."""
        interrupted = None
        for record in records:
            try:
                self.close_connection(record.conn)
            except BaseException as exc:
                self.faults.record("closing a connection", exc)
                if not isinstance(exc, Exception):
                    interrupted = interrupted or exc
        if interrupted is not None and not (self._ticker.on_worker_thread or self._maker.on_worker_thread):
            raise interrupted

    def _shortage(self, what: str) -> str:  # under the lock
        message = (f"pool {self.name!r}: {what}: size {self._open_count()} "
                   f"(target {self._target}, max {self.max_size}), {len(self._in_use)} in use, "
                   f"{len(self._idle)} idle, {self._opening} being opened, {len(self._waiters)} waiting")
        if self.last_factory_error is not None:
            message += f"; opening a connection last failed with {self.last_factory_error!r}"
        return message

    # -- maintenance and the controller (on the pool's thread) -------------------------------
    def _maintain(self) -> None:
        now = time.monotonic()
        retire: list[Lent] = []
        with self._lock:
            if self._closed:
                return
            keep: list[Lent] = []
            total = self._open_count()
            for record in self._idle:
                too_old = now - record.created > self.max_lifetime
                too_idle = now - record.returned > self.max_idle and total > self.min_size
                if too_old or too_idle:
                    retire.append(record)
                    total -= 1
                else:
                    keep.append(record)
            self._idle = keep
            self._count_retired(retire)
            leaks = [r for r in self._in_use.values() if self.leak_timeout is not None and not r.leak_reported
                     and now - r.taken > self.leak_timeout]
            for record in leaks:
                record.leak_reported = True
                self._counts["leaks_reported"] += 1
        self._retire(retire)
        for record in leaks:
            log.warning("perfsdk: pool %r: a connection has been held for %.1f s (leak_timeout=%s); taken at:\n%s",
                        self.name, now - record.taken, self.leak_timeout, record.stack or "")
        self._decide(now)
        self._maker.submit(self._fill)  # the maker opens (a hanging factory never stalls this thread)

    def _decide(self, now: float) -> None:
        controller = self.controller
        with self._lock:
            if self._closed:  # its record stays put: what ``_lifetime_counts`` read at the close stays exact
                return
            self._count_change(now)
            record, self._record = self._record, self._new_record(now, len(self._waiters))
            record.waiting_end = len(self._waiters)
            self._acquired_before += record.acquisitions
        self._evidence.absorb(record)
        self._last_interval = self._interval_summary(record, now)
        if self.metrics is not None:
            started = time.thread_time()
            with self.faults.guard("pool metrics"):
                self.metrics.record_interval(record.waits, record.holds)
            self._metrics_cpu += time.thread_time() - started
        if controller is None:
            return
        if not record.acquisitions and not record.waiting_end and not self._in_use:
            if self._forecast is not None:  # its series keeps its pace: a season's quiet hours count
                with self.faults.guard("the arrival forecast"):
                    self._forecast.update(record.arrival_rate(now))
            return  # an idle pool has nothing to learn from and nothing to say: no decision
        started = time.thread_time()
        # settled, and the load as it was: no decision until the stretched interval is due
        if not (now < self._decision_due and load_steady(record, self._closing_record)):
            self._closing_record = record
            try:
                if self._forecast is not None:
                    self._forecast.update(record.arrival_rate(now))
                decision = controller.decide(self)
                self.callbacks_dropped += controller.deliver(decision, self.on_decision, self.faults)
            except Exception as exc:
                self.faults.record("the pool controller", exc)
            if self._forecast is None:  # a forecast needs its series at a steady pace: never stretched
                self._decision_due = controller.next_due_at(now)
        self._evidence.decay()  # the hold-time relation fades an interval at a time, decided or not
        self._controller_cpu += time.thread_time() - started

    # the controller's target
    @property
    def value(self) -> int:
        return self._target

    @property
    def min_value(self) -> int:
        return max(1, self.min_size)

    @property
    def max_value(self) -> int:
        return self.max_size

    def evidence(self, candidates: Mapping[Action, int]) -> Evidence:
        """What the interval that just ended says (the controller asks; see ``pool_policy``)."""
        assert self.controller is not None
        controller = self.controller
        record = self._closing_record
        return self._evidence(record, record.last_change, self._target, self.min_size, self.max_size,
                              lambda latency_ms, size: controller.reward(latency_ms, size, self.max_size), candidates,
                              controller.min_acquisitions,
                              self._forecast.expected_surge() if self._forecast is not None else None)

    def apply(self, value: int, setting: SettingMove | None) -> None:
        """Resize to what the controller decided."""
        self._set_target(value)

    def apply_if(self, value: int, setting: SettingMove | None, before: int) -> bool:
        """Resize to what the controller decided at ``before`` -- unless ``resize`` changed the size
        while it decided (False: the person's size stands)."""
        return self._set_target(value, before)

    # -- reporting -------------------------------------------------------------------------
    def _interval_summary(self, record: IntervalRecord, now: float) -> dict[str, float]:
        elapsed = max(now - record.started, 1e-9)
        wait_p50, wait_p99 = record.percentiles("waits", (50, 99))
        hold_p50, hold_p99 = record.percentiles("holds", (50, 99))
        return {
            "seconds": elapsed, "acquisitions": record.acquisitions, "waited": record.waited,
            "timeouts": record.timeouts, "wait_p50_ms": wait_p50 * 1e3, "wait_p99_ms": wait_p99 * 1e3,
            "hold_p50_ms": hold_p50 * 1e3, "hold_p99_ms": hold_p99 * 1e3,
            "mean_in_use": record.busy_area / elapsed, "mean_waiting": record.queue_area / elapsed,
        }

    def stats(self) -> dict[str, Any]:
        """Size, idle, in use, waiting, lifetime counts, the last interval's wait and hold percentiles, and
        the CPU seconds its controller has spent deciding (``controller_cpu_s``) and its OTel histograms
        recording (``metrics_cpu_s``)."""
        with self._lock:
            out: dict[str, Any] = {
                "name": self.name, "size": self._open_count(),
                "target": self._target, "min_size": self.min_size, "max_size": self.max_size,
                "idle": len(self._idle), "in_use": len(self._in_use), "waiting": len(self._waiters),
                "opening": self._opening, "closed": self._closed, **self._lifetime_counts()(),
            }
        out["last_interval"] = dict(self._last_interval)
        out["decisions"] = self.controller.decided if self.controller is not None else 0
        out["callbacks_dropped"] = self.callbacks_dropped
        out["controller_cpu_s"] = self._controller_cpu
        out["metrics_cpu_s"] = self._metrics_cpu
        out["faults"] = self.faults.snapshot()
        return out

    def _lifetime_counts(self) -> Callable[[], dict[str, int]]:  # under the lock
        """Reads the lifetime counts (``acquisitions`` and ``COUNTS``) from what they are made of, not from
        the pool. Taken at the close, it stays exact after it (the interval record no longer turns over)
        and after the pool is gone: the metrics carry a disposed pool's counts forward with it."""
        acquired_before, record, counts = self._acquired_before, self._record, self._counts
        return lambda: {"acquisitions": acquired_before + record.acquisitions, **counts}

    def decisions(self) -> list[Decision]:
        return list(self.controller.decisions) if self.controller is not None else []

    # -- closing -----------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        """Whether ``close`` was called."""
        return self._closed

    def close(self, timeout: float | None = 5.0, *, serve_waiting: bool = False, close_idle: bool = True) -> None:
        """Close the pool: waiters get ``PoolClosed``, idle connections close now, connections
        in use close when they come back -- or, after ``timeout`` seconds, here (counted in
        ``stats()["closed_in_use"]``); ``timeout=None``: whenever they come back. Idempotent.

        ``serve_waiting``: callers already waiting keep their place and get the connections that
        come back, within their timeouts (as SQLAlchemy's pools serve them after
        ``engine.dispose()``). ``close_idle=False``: idle connections are let go unclosed
        (``engine.dispose(close=False)``: in a forked child they may be the parent's)."""
        if timeout is not None:  # longer than a lock can wait: as good as for ever
            timeout = min(check_number("timeout", timeout, low=0.0), threading.TIMEOUT_MAX)
        check_bool("serve_waiting", serve_waiting)
        check_bool("close_idle", close_idle)
        with self._lock:
            if self._closed:
                return
            self._closed = True
            counts = self._lifetime_counts()
            idle, self._idle = self._idle, []
            self._count_retired(idle)
            if serve_waiting:
                self._turn_away_stranded()
            else:
                self._turn_away_waiters("was closed while waiting")
        self._closed_event.set()  # a factory's back-off ends: no connection is opened after this
        if self.metrics is not None:
            with self.faults.guard("pool metrics"):
                self.metrics.closed(self, counts)
        try:  # interrupted (Ctrl-C, or a close's own BaseException, raised once all are closed): threads end
            if close_idle:
                self._retire(idle)
            deadline = time.monotonic() + (timeout or 0.0)
            while timeout is not None and time.monotonic() < deadline:
                with self._lock:
                    if not self._in_use:
                        break
                time.sleep(0.01)
            with self._lock:
                stuck = list(self._in_use.values()) if timeout is not None else []
                for record in stuck:
                    del self._in_use[id(record.conn)]
                    self._closed_lent.add(id(record.conn))  # its borrower's release will be a no-op
                self._count_retired(stuck)
                self._counts["closed_in_use"] += len(stuck)
                self._turn_away_stranded()
            if stuck:
                log.warning("perfsdk: pool %r closed %d connections still in use after %.1f s",
                            self.name, len(stuck), timeout)
            self._retire(stuck)
        finally:
            self._ticker.shutdown(timeout or 0.1)
            self._maker.shutdown(0.1)

    def __enter__(self) -> "AdaptivePool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _after_fork(self) -> None:
        """In a forked child: the parent's connections are the parent's (never reuse a socket
        across a fork); the pool starts empty and opens its own, and its counts and interval are
        its own (``opened == retired`` after its close). What the controller learned is kept. A
        connection lent across the fork is the parent's: its release in the child is a no-op (and
        closes nothing: the socket is the parent's too)."""
        parents = self._closed_lent | set(self._in_use)
        self._reset_books()
        self._closed_lent = parents

    def _reset_books(self) -> None:
        """A new pool's connections, queue and counts -- and a forked child's (see ``_after_fork``)."""
        self._lock = threading.Lock()
        self._idle = []  # most recently returned last
        self._in_use = {}
        self._waiters = deque()
        self._opening = 0  # connections the maintenance thread is making
        self._closed_lent = set()
        self._counts = dict.fromkeys(COUNTS, 0)
        self._acquired_before = 0  # acquisitions in the intervals before the current one
        self._controller_cpu = 0.0  # CPU seconds the controller's decisions took (on the pool's thread)
        self._metrics_cpu = 0.0  # CPU seconds recording the OTel histograms took (on the pool's thread)
        self._decision_due = 0.0  # a settled pool skips decisions until then, while its load is steady
        self.callbacks_dropped = 0
        self.last_factory_error = None
        self._backoff = 0.0
        self._record = self._new_record(time.monotonic(), 0)
        self._closing_record = self._record  # the interval the controller is judging
        self._last_interval = {}
        self._closed_event = threading.Event()  # set by close(): a factory's back-off ends there
        if self._closed:
            self._closed_event.set()

    def __repr__(self) -> str:
        s = self.stats()
        return f"AdaptivePool({self.name!r}, size={s['size']}, in_use={s['in_use']}, waiting={s['waiting']})"


def _close(conn: Any) -> None:
    close = getattr(conn, "close", None)
    if close is not None:
        close()
