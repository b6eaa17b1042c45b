"""Worker: the one background worker every perfsdk background job runs on.

Modelled on OpenTelemetry's ``BatchProcessor`` (``sdk/_shared_internal``): a
bounded queue that ``submit`` never blocks on (a full queue drops the item and
counts it), one daemon thread that handles items in batches, ``flush`` with a
deadline, and a reset in a forked child (the parent's queued work and counts are the
parent's; a thread starts again on first use). A worker may also run a
periodic ``tick`` (the resource sampler's).

Items are zero-argument callables unless a ``handle(batch)`` is given.

>>> done = []
>>> worker = Worker("demo")
>>> worker.submit(lambda: done.append(1)), worker.flush(5.0), done
(True, True, [1])
>>> worker.shutdown()
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any, Callable, Generic, Sequence, TypeVar

from perfsdk._runtime.faults import FAULTS, Faults
from perfsdk._runtime.forks import at_fork
from perfsdk._runtime.locks import held_here, owned_lock

__all__ = ["Worker", "park_shared_workers"]

T = TypeVar("T")


def _run_each(batch: Sequence[Callable[[], Any]]) -> None:
    for task in batch:
        task()


class Worker(Generic[T]):
    """A daemon thread behind a bounded queue (see the module docstring).

    Parameters
    ----------
    name
        The thread's name, and the fault kind its failures are counted under.
    handle
        Called with each batch (a list); default: call each item.
    max_queue
        Items that may wait; beyond it ``submit`` drops and counts.
    max_batch
        Items handed to ``handle`` at once.
    min_batch, linger_s
        Wait up to ``linger_s`` for ``min_batch`` items before handling fewer (a
        flush never waits): few wake-ups and large batches for work with a fixed
        cost per batch, such as writing Arrow record batches. Default: no waiting.
    tick, tick_interval_s
        Also call ``tick()`` every ``tick_interval_s`` seconds once ``start()`` is called.
    faults
        Where a failing batch or tick is counted (default: the process-wide ``FAULTS``).
    shared
        A process-wide worker (fits, decision delivery): ``park_shared_workers`` ends its
        thread when perfsdk shuts down; it starts again on the next ``submit``.
    park_timeout_s
        For a shared worker running the user's code (callbacks), which may block: the most
        ``park_shared_workers`` waits for it (default: as long as for perfsdk's own work).
    """

    def __init__(self, name: str, handle: Callable[[list[T]], Any] | None = None, *,
                 max_queue: int = 2048, max_batch: int = 256, min_batch: int = 1, linger_s: float = 0.0,
                 tick: Callable[[], Any] | None = None, tick_interval_s: float | None = None,
                 faults: Faults | None = None, shared: bool = False,
                 park_timeout_s: float | None = None) -> None:
        self.name = name
        self._handle: Callable[[list[T]], Any] = handle or _run_each  # type: ignore[assignment]
        self.max_queue = max_queue
        self.max_batch = max_batch
        self.min_batch = max(1, min(min_batch, max_batch, max_queue))  # a full queue never lingers
        self.linger_s = linger_s
        self._tick = tick
        self.tick_interval_s = tick_interval_s
        self.faults = faults or FAULTS
        self.park_timeout_s = park_timeout_s
        self._ticking = False
        self._shutdown = False
        self._parking = False  # stop the thread once the queue is empty (it starts again on use)
        self._reset()
        at_fork(self._after_fork)
        if shared:
            _SHARED.append(self)

    def _reset(self) -> None:
        """A new worker's state, and a forked child's: the counts too, so every count a
        child reports is its own (the parent's drops are not the child's)."""
        self.handled = 0
        self.dropped = 0
        self._queue: collections.deque[T] = collections.deque()
        self._lock = owned_lock()  # a call from inside it (a signal handler) must not wait for it
        self._cond = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._in_progress = 0  # items the worker is handling now
        self._finished = 0  # items handled or failed
        self._flushing = 0  # callers waiting in flush(): no lingering for them
        self._linger_until = 0.0

    # -- the caller's side --------------------------------------------------------
    def submit(self, item: T, timeout_s: float = 0.0) -> bool:
        """Queue ``item``; False (and counted in ``dropped``) if the queue is full or shut.

        With ``timeout_s`` a full queue is waited on for that long first (a caller
        that prefers a bounded wait to a loss); the default never waits.
        """
        queue = self._queue
        if self._thread is not None and len(queue) < self.max_queue and not self._shutdown:
            queue.append(item)  # atomic: no lock on the application's path (the bound may
            queued = len(queue)  # be passed by a few items when threads race: it stays a bound)
            if not (self._parking or queued == 1 or queued == self.min_batch) or held_here(self._lock):
                return True  # (from inside the worker's own call -- a signal handler -- no wake-up: the
                # worker polls, and the next submit or flush starts a thread if it has none)
            if self._parking:  # its thread may be leaving right now, past the item: keep one running
                with self._lock:
                    self._parking = False
                    self._ensure_thread()
                    self._cond.notify()
            else:  # wake the worker (it also polls)
                with self._lock:
                    self._cond.notify()
            return True
        return self._submit_locked(item, timeout_s)

    def _submit_locked(self, item: T, timeout_s: float) -> bool:
        """The rare path: no thread yet, a full queue (wait or drop, counted), or shut down. From
        inside the worker's own call (a signal handler) nothing waits and no thread is started: the
        item is queued if there is room (the next submit or flush starts the thread), else dropped."""
        if held_here(self._lock):
            if len(self._queue) < self.max_queue and not self._shutdown:
                self._queue.append(item)
                return True
            self.dropped += 1
            return False
        with self._lock:
            queue = self._queue
            if len(queue) >= self.max_queue or self._shutdown:
                if not self._wait_for_room(timeout_s):
                    self.dropped += 1
                    return False
            queue.append(item)
            self._parking = False
            self._ensure_thread()
            self._cond.notify()
        return True

    def _wait_for_room(self, timeout_s: float) -> bool:  # under self._lock
        if timeout_s <= 0 or self._shutdown:
            return False
        deadline = time.monotonic() + timeout_s
        self._ensure_thread()
        while len(self._queue) >= self.max_queue and not self._shutdown:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._cond.wait(remaining)
        return not self._shutdown

    def start(self) -> None:
        """Start ticking (a worker without ``tick`` starts on its first ``submit``)."""
        with self._cond:
            self._shutdown = False
            self._ticking = self._tick is not None
            self._ensure_thread()
            self._cond.notify_all()

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until everything submitted so far is handled; False if the deadline passed.

        Called from the worker's own thread (an item that shuts perfsdk down), it cannot wait:
        the work it would wait for runs on this thread after the caller returns. Nor from inside
        the worker's own call (a signal handler that interrupted a ``submit``): the worker needs the
        lock that call holds. It returns at once: True if nothing else is queued."""
        if self.on_worker_thread:
            return not self._queue
        if held_here(self._lock):
            return not self._queue and not self._in_progress
        deadline = time.monotonic() + timeout_s
        with self._cond:
            target = self._finished + self._in_progress + len(self._queue)
            self._flushing += 1
            self._cond.notify_all()
            try:
                while self._finished < target and (self._queue or self._in_progress):
                    if self._thread is None or not self._thread.is_alive():
                        self._ensure_thread()
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._cond.wait(min(remaining, 0.5))
            finally:
                self._flushing -= 1
        return True

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """Handle what is queued (within the deadline), then stop the thread. Work still running
        at the deadline is left to finish on the daemon thread, counted as ``park`` counts it; so is
        all of it when called from inside the worker's own call (a signal handler), which cannot wait."""
        if held_here(self._lock):
            self._shutdown, self._ticking = True, False  # the thread ends once the queue is handled
            self._overran(0.0)
            return
        deadline = time.monotonic() + timeout_s
        if not self.flush(timeout_s):
            self._overran(timeout_s)
        with self._cond:
            self._shutdown = True
            self._ticking = False
        self._end_thread(max(0.0, deadline - time.monotonic()))  # one deadline for both waits

    def park(self, timeout_s: float = 5.0) -> bool:
        """Handle what is queued, then end the thread; the next ``submit`` starts a new one.

        For process-wide workers when ``perfsdk`` shuts down: no thread of perfsdk's
        outlives ``shutdown()``, yet a cache used afterwards still works. Work still running
        at the deadline (a blocked callback) is left to finish on the daemon thread, and
        counted as a fault ("<name> at shutdown"). From inside the worker's own call (a signal
        handler) nothing is done: False.
        """
        if held_here(self._lock):
            return False
        deadline = time.monotonic() + timeout_s
        done = self.flush(timeout_s)
        if not done:
            self._overran(timeout_s)
        with self._cond:
            if self._queue or self._ticking:
                return False
            self._parking = True
        self._end_thread(max(0.0, deadline - time.monotonic()))  # one deadline for both waits
        return done and not self.alive

    def _overran(self, timeout_s: float) -> None:
        self.faults.record(f"{self.name} at shutdown", TimeoutError(
            f"work still running after {timeout_s:g} s more at shutdown: left to finish on its daemon thread"))

    def _end_thread(self, timeout_s: float) -> None:
        """Wake the thread to see it should stop (shutdown or parking), and wait for it."""
        with self._cond:
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)

    @property
    def alive(self) -> bool:
        """Is the worker's thread running?"""
        thread = self._thread
        return thread is not None and thread.is_alive()

    @property
    def on_worker_thread(self) -> bool:
        """Is the caller running on the worker's thread?"""
        return self._thread is threading.current_thread()

    def stats(self) -> dict[str, int]:
        """Counts: ``submitted`` (items accepted: handled, being handled or queued; it never goes
        down), ``handled``, ``dropped`` (refused), ``queued``. Read under the lock, so an item
        moving from the queue to the batch being handled is counted once, not zero times (by a
        thread already inside it -- a signal handler -- too: the owned lock lets its holder in)."""
        with self._lock:
            queued = len(self._queue)
            return {"submitted": self.handled + self._in_progress + queued, "handled": self.handled,
                    "dropped": self.dropped, "queued": queued}

    # -- the worker's side ----------------------------------------------------------
    def _ensure_thread(self) -> None:  # under self._cond
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            self._serve()
        finally:  # left by an exception past the guards (a faults object's own): a new thread
            with self._cond:
                if self.on_worker_thread:
                    self._thread = None  # submit() starts one; a ticking worker or queued work, now
                    if (self._queue or self._ticking) and not (self._shutdown or self._parking):
                        self._ensure_thread()

    def _serve(self) -> None:
        next_tick = time.monotonic() + (self.tick_interval_s or 0.0)
        while True:
            with self._cond:
                while self._lingering():
                    self._cond.wait(max(self._linger_until - time.monotonic(), 0.0))
                while not self._queue:
                    if self._shutdown or self._parking:
                        self._thread = None if self.on_worker_thread else self._thread
                        return
                    if self._ticking and self.tick_interval_s:
                        wait = next_tick - time.monotonic()
                        if wait <= 0:
                            break
                        self._cond.wait(wait)
                    else:
                        self._cond.wait(0.25)  # submit's lock-free path may miss a wake-up: poll too
                batch = [self._queue.popleft() for _ in range(min(len(self._queue), self.max_batch))]
                self._in_progress = len(batch)
                self._linger_until = 0.0
                tick = self._ticking and self.tick_interval_s and time.monotonic() >= next_tick
            if batch:
                try:
                    self._handle(batch)
                except BaseException as exc:  # a bug in a job, or its SystemExit or CancelledError, must not
                    self.faults.record(self.name, exc)  # kill the worker (one thread serves many jobs)
                finally:
                    with self._cond:
                        self.handled += len(batch)
                        self._finished += len(batch)
                        self._in_progress = 0
                        self._cond.notify_all()
            if tick:
                next_tick = time.monotonic() + (self.tick_interval_s or 0.0)
                try:
                    self._tick()  # type: ignore[misc]
                except BaseException as exc:
                    self.faults.record(f"{self.name} tick", exc)

    def _lingering(self) -> bool:  # under self._cond
        """Wait for a fuller batch? Only while fewer than ``min_batch`` items wait, nobody
        is flushing or stopping, and the first of them has not waited ``linger_s`` yet."""
        if not self._queue or len(self._queue) >= self.min_batch or self._flushing \
                or self._shutdown or self._parking:
            return False
        now = time.monotonic()
        if not self._linger_until:
            self._linger_until = now + self.linger_s
        return now < self._linger_until

    def _after_fork(self) -> None:
        # The parent's queued items and counts are the parent's; the thread did not survive the fork.
        self._reset()
        if self._ticking and not self._shutdown:
            self.start()


_SHARED: list[Worker[Any]] = []


def park_shared_workers(timeout_s: float = 5.0) -> bool:
    """Finish and end the threads of every process-wide worker (``perfsdk`` shutting down); one
    running the user's code is waited for no longer than its ``park_timeout_s``."""
    return all([worker.park(timeout_s if worker.park_timeout_s is None else min(timeout_s, worker.park_timeout_s))
                for worker in _SHARED])
