# cython: language_level=3
"""The connection pool's lending path, compiled.

``acquire`` and ``release`` run on the application's thread around every query,
so what they cost is added to every query. This base class of
``perfsdk.AdaptivePool`` does the common path in C: lend an idle connection,
take one back (to the idle stack, or straight to the longest waiter), and
record what the interval measures (``IntervalRecord``). What is rare stays in
Python, in the subclass: waiting for a connection (``_wait``), opening and
closing connections (``_refill``, ``_retire_later``), the burst limit, the errors,
the controller.

Every change to the pool's books happens under its lock (``_lock``, a
``DeferringLock`` shared with the subclass's slow paths); connections are
closed and callbacks run only after the lock is released.
"""

cimport cython
from cpython.long cimport PyLong_FromVoidPtr
from cpython.pythread cimport PyThread_get_thread_ident
from libc.math cimport INFINITY, NAN, ceil
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy

import time
import traceback
from _thread import allocate_lock

from perfsdk._runtime import check_bool, check_number

include "_clock.pxi"  # _monotonic(): time.monotonic() in C

cdef enum:
    RING = 2048
    WAITS = 0  # the rings, in one block
    HOLDS = 1
    LATENCIES = 2
SAMPLES = RING  # wait, hold and latency samples kept an interval (a ring): bounded memory, percentiles to ~0.1 %
cdef dict _RINGS = {"waits": WAITS, "holds": HOLDS, "latencies": LATENCIES}


cdef double _select(double* values, Py_ssize_t n, Py_ssize_t k) noexcept nogil:
    """The ``k``-th smallest of ``values[:n]`` (reordering them), by Hoare's selection: O(n)."""
    cdef Py_ssize_t low = 0, high = n - 1, i, j
    cdef double pivot, swap
    while low < high:
        pivot = values[(low + high) // 2]
        i, j = low, high
        while i <= j:
            while values[i] < pivot:
                i += 1
            while values[j] > pivot:
                j -= 1
            if i <= j:
                swap = values[i]; values[i] = values[j]; values[j] = swap
                i += 1
                j -= 1
        if k <= j:
            high = j
        elif k >= i:
            low = i
        else:
            break
    return values[k]


@cython.final
cdef class IntervalRecord:
    """One interval of a pool's measurements (the pool updates it under its lock).

    Counts; the time integrals of connections in use and of callers waiting
    (``busy_area``, ``queue_area``: Little's law's L); rings of the last SAMPLES
    waits, holds and latencies (wait + hold); the most requests in the system at
    once (``peak``); and, with ``levels``, hold times summed (and their squares) per
    concurrency level (connections in use when one was taken; the last level takes every
    level above): what ``PoolEvidence.absorb`` learns the database's contention from, and
    how far to trust it.

    >>> record = IntervalRecord(started=0.0, levels=4)
    >>> record.lent(0.0); record.returned(0.002, 0.002, level=2)
    >>> record.acquisitions, record.holds, record.level_holds()
    (1, [0.002], ([0.0, 0.0, 0.002, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 4e-06, 0.0]))
    >>> record.elapse(1.0, in_use=3, waiting=1); record.busy_area, record.queue_area, record.peak
    (3.0, 1.0, 4)
    """

    cdef public double started, busy_area, queue_area, last_change
    cdef public long long acquisitions, releases, waited, timeouts, shed
    cdef public long long waiting_start, waiting_end, peak
    cdef readonly Py_ssize_t levels
    cdef double* _rings  # waits, holds, latencies: RING each
    cdef double* _level_sum
    cdef double* _level_count
    cdef double* _level_squares

    def __cinit__(self, *args, **kwargs):
        self._rings = <double*> malloc(3 * RING * sizeof(double))
        if self._rings == NULL:
            raise MemoryError("cannot allocate an interval record")
        self._level_sum = NULL
        self._level_count = NULL
        self._level_squares = NULL

    def __init__(self, double started=0.0, *, double last_change=0.0, long long waiting_start=0,
                 long long waiting_end=0, double busy_area=0.0, double queue_area=0.0, long long peak=0,
                 Py_ssize_t levels=0):
        if levels < 0:
            raise ValueError(f"levels must be >= 0, got {levels}")
        if self._level_sum != NULL:  # __init__ called again
            free(self._level_sum)
            free(self._level_count)
            free(self._level_squares)
            self._level_sum = self._level_count = self._level_squares = NULL
        self.levels = 0  # (none until allocated: a failed allocation leaves no level to write through)
        if levels:
            self._level_sum = <double*> calloc(levels, sizeof(double))
            self._level_count = <double*> calloc(levels, sizeof(double))
            self._level_squares = <double*> calloc(levels, sizeof(double))
            if self._level_sum == NULL or self._level_count == NULL or self._level_squares == NULL:
                raise MemoryError("cannot allocate an interval record's levels")
        self.levels = levels
        self.started, self.last_change = started, last_change
        self.waiting_start, self.waiting_end = waiting_start, waiting_end
        self.busy_area, self.queue_area = busy_area, queue_area
        self.peak = max(peak, waiting_start)
        self.acquisitions = self.releases = self.waited = self.timeouts = self.shed = 0

    def __dealloc__(self):
        free(self._rings)
        free(self._level_sum)
        free(self._level_count)
        free(self._level_squares)

    def arrival_rate(self, double now):
        """Requests that arrived a second: those served, plus those that timed out, were shed or
        piled up in the queue (what the pool served says nothing of what it could not)."""
        cdef long long growth = max(0, self.waiting_end - self.waiting_start)
        return (self.acquisitions + growth + self.timeouts + self.shed) / max(now - self.started, 1e-9)

    cpdef void elapse(self, double now, Py_ssize_t in_use, Py_ssize_t waiting) noexcept:
        """Advance the time integrals to ``now`` (call before the counts change)."""
        cdef double span = now - self.last_change
        if span > 0:
            self.busy_area += in_use * span
            self.queue_area += waiting * span
            self.last_change = now
        if in_use + waiting > self.peak:
            self.peak = in_use + waiting

    cpdef lent(self, double waited):
        """An acquisition, after ``waited`` seconds (0: an idle connection was there)."""
        cdef long long n = self.acquisitions
        self.acquisitions = n + 1
        if waited > 0:
            self.waited += 1
        self._rings[WAITS * RING + n % RING] = waited

    cpdef returned(self, double held, double latency, Py_ssize_t level=-1):
        """A connection back after ``held`` seconds, its borrower's request ``latency`` (wait + hold),
        taken with ``level`` connections in use (-1: not known)."""
        cdef long long n = self.releases
        self.releases = n + 1
        self._rings[HOLDS * RING + n % RING] = held
        self._rings[LATENCIES * RING + n % RING] = latency
        if level >= 0 and self.levels:
            if level >= self.levels:
                level = self.levels - 1
            self._level_sum[level] += held
            self._level_count[level] += 1.0
            self._level_squares[level] += held * held

    @property
    def waits(self):
        """The interval's waits (s), the last SAMPLES of them."""
        return self._samples(WAITS)

    @property
    def holds(self):
        """How long each connection was held (s), the last SAMPLES."""
        return self._samples(HOLDS)

    @property
    def latencies(self):
        """Each request's wait + hold (s), the last SAMPLES."""
        return self._samples(LATENCIES)

    cdef inline Py_ssize_t _filled(self, int ring):
        """How many of ``ring``'s slots hold samples (waits go in at lending, the others at return)."""
        return min(self.acquisitions if ring == WAITS else self.releases, RING)

    cdef list _samples(self, int ring):
        cdef double* values = self._rings + ring * RING
        return [values[i] for i in range(self._filled(ring))]

    def percentiles(self, str samples, qs):
        """The nearest-rank percentiles ``qs`` (0-100) of ``samples`` ("waits", "holds" or
        "latencies"), NaN for none: by selection in C, no sort.

        >>> record = IntervalRecord()
        >>> for ms in [4, 1, 3, 2]:
        ...     record.returned(ms / 1e3, ms / 1e3)
        >>> record.percentiles("holds", [50, 100]), record.percentiles("waits", [99])
        ([0.002, 0.004], [nan])
        """
        if samples not in _RINGS:
            raise ValueError(f"samples must be one of {sorted(_RINGS)}, got {samples!r}")
        cdef int ring = _RINGS[samples]
        cdef Py_ssize_t n = self._filled(ring), k
        cdef double q
        cdef double* work
        out = []
        if n == 0:
            return [NAN for _ in qs]
        work = <double*> malloc(n * sizeof(double))
        if work == NULL:
            raise MemoryError("cannot allocate a percentile's work space")
        try:
            memcpy(work, self._rings + ring * RING, n * sizeof(double))
            for q in qs:
                k = min(n - 1, max(0, <Py_ssize_t> ceil(q / 100.0 * n) - 1))
                out.append(_select(work, n, k))
        finally:
            free(work)
        return out

    def level_holds(self):
        """(sums, counts, squares): hold seconds, connections returned and squared hold seconds,
        per concurrency level."""
        return ([self._level_sum[i] for i in range(self.levels)],
                [self._level_count[i] for i in range(self.levels)],
                [self._level_squares[i] for i in range(self.levels)])


@cython.final
cdef class Lent:
    """A pooled connection and what the pool knows about it."""

    cdef public object conn
    cdef public double created, returned, taken, waited  # waited: how long its current borrower waited
    cdef public Py_ssize_t level  # connections in use when it was taken (the hold-time relation)
    cdef public object stack  # who took it (kept only with a leak_timeout)
    cdef public bint leak_reported
    cdef public bint checking  # lent to a caller whose ``check`` has not passed it yet: not in the interval's record

    def __init__(self, conn, double now):
        self.conn = conn
        self.created = self.returned = now  # returned: when it last became idle
        self.taken = self.waited = 0.0
        self.level = 0
        self.stack = None
        self.leak_reported = False
        self.checking = False


@cython.final
cdef class Waiter:
    """A caller waiting for a connection; the hand-off sets ``record`` (or ``error``) and releases ``ready``."""

    cdef public double since
    cdef public object ready, record, error
    cdef public object stack  # who waits (kept only with a leak_timeout): the connection's taker
    cdef public bint checking  # the caller checks what it is handed (``Lent.checking``)

    def __init__(self, double since, stack=None, bint checking=False):
        self.since = since
        self.ready = allocate_lock()
        self.ready.acquire()
        self.record = None
        self.error = None
        self.stack = stack
        self.checking = checking


@cython.final
@cython.auto_pickle(False)  # a lock is not pickled (as a threading.Lock is not)
cdef class DeferringLock:
    """A lock that knows which thread holds it, so that thread never waits for it.

    A garbage collection runs finalizers on whatever thread allocated at that moment -- maybe one
    holding the lock -- and SQLAlchemy gives a collected connection back from one: taking the lock
    there would wait for ever. Such work is ``defer``red instead, and runs as soon as the lock is
    released, on the thread that releases it. ``with lock:``, ``acquire`` and ``release`` work as a ``threading.Lock``'s.

    >>> lock, ran = DeferringLock(), []
    >>> with lock:
    ...     lock.held_here(), lock.defer(ran.append, ("after",)), ran
    (True, None, [])
    >>> ran, lock.held_here(), lock.locked()
    (['after'], False, False)
    """

    cdef object _raw, _acquire, _release
    cdef unsigned long _holder  # the holding thread's id; 0: none
    cdef list _deferred  # (function, arguments), in the order deferred

    def __init__(self, lock=None):
        self._raw = allocate_lock() if lock is None else lock
        self._acquire, self._release = self._raw.acquire, self._raw.release
        self._holder = 0
        self._deferred = []

    cdef inline int take(self) except -1:
        self._acquire()
        self._holder = PyThread_get_thread_ident()
        return 0

    cdef inline int give(self) except -1:
        self._holder = 0
        self._release()
        if self._deferred:
            self._run_deferred()
        return 0

    cdef int _run_deferred(self) except -1:
        while self._deferred:  # one at a time: what an interrupt leaves runs at the next release
            function, arguments = self._deferred.pop(0)
            function(*arguments)
        return 0

    cpdef bint held_here(self):
        """Whether the calling thread holds the lock."""
        return self._holder == PyThread_get_thread_ident()

    cpdef defer(self, function, tuple arguments):
        """Call ``function(*arguments)`` once the lock is released (by the thread holding it now)."""
        self._deferred.append((function, arguments))

    def acquire(self, blocking=True, timeout=-1):
        got = self._acquire(blocking, timeout)
        if got:
            self._holder = PyThread_get_thread_ident()
        return got

    def release(self):
        self.give()

    def locked(self):
        return self._raw.locked()

    def __enter__(self):
        self.take()
        return True

    def __exit__(self, *exc_info):
        self.give()


cdef inline double _timeout_seconds(object timeout) except -1.0:
    """A caller's timeout in seconds: a finite number >= 0 (a float's check stays in C)."""
    cdef double seconds
    if type(timeout) is float:
        seconds = timeout
        if 0.0 <= seconds < INFINITY:
            return seconds
    return check_number("timeout", timeout, low=0.0)


cdef inline bint _flag_is_set(value):  # a flag that is set: True, or a nonzero int (psycopg2)
    return value is True or (type(value) is int and value != 0)


cdef class LendingPath:
    """The lending path of a connection pool (see the module docstring).

    The subclass sets the books and settings declared here, and defines the rare paths this
    class calls: ``_start()`` (the pool's threads, once), ``_wait(waiter, timeout)`` (a
    caller queued: returns its ``Lent`` or raises; if anything raises once the caller is queued,
    ``_abandon`` takes it out of the queue), ``_closed_error(why)`` and ``_shed_error()``
    (the exceptions to raise, built under the lock), ``_check_timeout(timeout, failures, error,
    counted=False)`` (the one to raise when no connection passed ``check`` in time; ``counted``:
    a wait's own timeout ended it, counted already), ``_burst_limit()``, ``_retire_later(records)``
    (has connections closed off the caller's thread, called outside the lock) and ``_refill()``
    (asks for connections to be opened); and ``faults``, where a give-back that failed after it was
    deferred (see ``DeferringLock``) is counted.

    Interrupts (Ctrl-C: a signal handler's exception, raised wherever Python code runs on the main
    thread) lose no connection: under the lock, the Python calls come before the books change.
    """

    cdef public list _idle  # Lent, the most recently returned last
    cdef public dict _in_use  # id(connection) -> Lent
    cdef public object _waiters  # a deque of Waiter, the longest waiting first
    cdef public IntervalRecord _record
    cdef public dict _counts
    cdef public bint _closed, _started
    cdef public Py_ssize_t _target, _opening, max_waiting
    cdef public double timeout, max_lifetime
    cdef public object check, reset, leak_timeout, name
    # id(connection) of those lent when close() closed them, or when the process forked (the parent's):
    # their release is a no-op
    cdef public set _closed_lent
    cdef DeferringLock _books

    def __cinit__(self, *args, **kwargs):
        self._idle = []
        self._in_use = {}
        self._closed_lent = set()
        self._counts = {}
        self._record = IntervalRecord()
        self._books = DeferringLock()

    @property
    def _lock(self):
        """The pool's lock: every change to its books is made holding it. Set to a plain lock, it is
        wrapped in a ``DeferringLock``."""
        return self._books

    @_lock.setter
    def _lock(self, lock):
        self._books = lock if isinstance(lock, DeferringLock) else DeferringLock(lock)

    # -- lending -------------------------------------------------------------------------------
    def acquire(self, timeout=None):
        """A connection, lent to the caller until ``release``; ``PoolTimeout`` if none comes
        within ``timeout`` seconds (default: the pool's ``timeout``). A connection that fails
        ``check`` is retired and another taken, within the same timeout: idle ones gone stale
        (a database restarted) one after the other, and once a connection opened meanwhile
        fails too (the database is down), backing off. Then the ``PoolTimeout`` says how
        many failed, and the last error. Only the connection that passes is counted as lent (in
        ``stats()`` and the interval's measurements); the others only in ``check_failures``."""
        cdef double seconds = self.timeout if timeout is None else _timeout_seconds(timeout)
        if self.check is None:
            return self._take(seconds).conn
        cdef double started = _monotonic()
        cdef double deadline = started + seconds, left = seconds
        cdef Lent record
        cdef int failures = 0, fresh_failures = 0
        error = None
        while True:
            try:
                record = self._take(left, started, failures > 0, True)
            except TimeoutError:  # the pool's PoolTimeout, counted already
                if error is None:
                    raise
                raise self._check_timeout(seconds, failures, error, counted=True) from error
            try:
                self.check(record.conn)
            except Exception as exc:
                self._count("check_failures")
                self._give_back(record.conn, True, _monotonic())
                failures += 1
                error = exc
                if record.created >= started:  # opened for this caller, and failing: back off
                    fresh_failures += 1
                    time.sleep(max(0.0, min(deadline - _monotonic(), 0.005 * 2 ** min(fresh_failures, 7))))
                left = deadline - _monotonic()
                if left <= 0.0:
                    raise self._check_timeout(seconds, failures, exc) from exc
            except BaseException:  # e.g. KeyboardInterrupt in the check: the connection is not lost
                self._give_back(record.conn, True, _monotonic())
                raise
            else:
                try:
                    self._passed_check(record, started, failures)
                except BaseException:  # an interrupt while the lock was busy: not lent, so it goes back
                    self._give_back(record.conn, False, _monotonic())
                    raise
                return record.conn

    cdef int _passed_check(self, Lent record, double started, int failures) except -1:
        """``record`` passed its check: lent now, in the interval's record too. After failed ones, its
        caller waited from when it came (``started``)."""
        self._books.take()
        try:
            if failures:
                record.waited = record.taken - started
            record.checking = False
            self._record.lent(record.waited)
        finally:
            self._books.give()
        return 0

    def release(self, conn, *, broken=False):
        """Give ``conn`` back (``broken=True``: it is retired, not lent again; ``TypeError`` for a
        ``broken`` that is not a bool). ``ValueError`` for a connection this pool has not lent
        (before ``reset`` touches it); a no-op for one ``close`` closed while it was lent, or lent
        when the process forked. A connection that says it is ``closed`` or ``broken``, or cannot
        say (the attribute raises), is retired: the pool always takes it back. Called on a thread
        that holds the pool's lock (from a finalizer, in a garbage collection), it takes the
        connection back as that thread releases the lock (``DeferringLock``)."""
        cdef bint retire = False, reset_failed = False  # C flags: cheaper than objects on this path
        if broken is not False:
            retire = check_bool("broken", broken)
        if self.reset is not None and not retire:
            if PyLong_FromVoidPtr(<void*> conn) not in self._in_use:  # settled before reset touches it:
                self._give_back(conn, True, _monotonic())  # a no-op if close() closed it, else the error
                return
            try:
                self.reset(conn)
            except Exception:
                retire = reset_failed = True
            except BaseException:  # e.g. KeyboardInterrupt in the reset: the connection is not lost
                self._give_back(conn, True, _monotonic())
                raise
        if not retire:
            retire = self._unusable(conn)  # e.g. a psycopg connection whose server went away
        self._give_back(conn, retire, _monotonic(), None, reset_failed)

    cdef int _unusable(self, conn) except -1:
        """Whether ``conn`` says it is closed or broken (psycopg 3's bool ``closed``/``broken``,
        psycopg2's int ``closed``; a method or other object there says nothing), or cannot say."""
        try:
            return _flag_is_set(getattr(conn, "closed", False)) or _flag_is_set(getattr(conn, "broken", False))
        except Exception:  # its state is unknown: not lent again
            return True
        except BaseException:  # e.g. KeyboardInterrupt in a property: the connection is not lost
            self._give_back(conn, True, _monotonic())
            raise

    def _abandon(self, Waiter waiter):
        """A caller stopped waiting without taking its verdict (interrupted): it leaves the queue,
        and a connection handed to it meanwhile goes back (else the next release would feed a dead
        waiter, or the connection be lent for good). Idempotent; a second interrupt meanwhile is
        dropped (the first goes on): it cannot lose the connection."""
        cdef double now = _monotonic()
        self._lock_steadily()
        try:
            if waiter.record is None:
                if waiter.error is None and waiter in self._waiters:
                    self._elapse(now)
                    self._waiters.remove(waiter)
                return
        finally:
            self._books.give()
        self._give_back(None, False, now, waiter)

    cdef object _lock_steadily(self):
        """Take the pool's lock even if an interrupt lands while it is busy; the first such interrupt
        is returned (None if none), for the caller to raise once its books are straight, or drop."""
        interrupted = None
        while True:
            try:
                self._books.take()
                return interrupted
            except BaseException as exc:
                if interrupted is None:
                    interrupted = exc

    cdef Lent _take(self, double timeout, double since=0.0, bint again=False, bint checking=False):
        """A connection within ``timeout``; ``again``: a caller whose last one failed its check,
        queued at the front with its arrival time ``since`` (first come, first served); ``checking``:
        one that checks what it gets (``Lent.checking``)."""
        if not self._started and not self._closed:
            self._start()
        cdef object stack = "".join(traceback.format_stack(limit=9)) if self.leak_timeout is not None else None
        cdef double now = _monotonic()
        cdef list idle, expired = None
        cdef Lent record = None
        cdef Waiter waiter = None
        error = None  # the shedding's, raised once the lock is released
        self._books.take()
        try:
            if self._closed:
                raise self._closed_error()
            idle = self._idle
            while idle:
                record = idle.pop()
                if now - record.created <= self.max_lifetime:
                    self._lend(record, now, 0.0, stack, checking)
                    break
                if expired is None:
                    expired = []
                expired.append(record)
                record = None
            if record is None:
                if again:
                    waiter = Waiter(since, stack, checking)
                    self._elapse(now)
                    self._waiters.appendleft(waiter)
                elif self.max_waiting and len(self._waiters) >= self.max_waiting:
                    error = self._shed_error()
                else:
                    waiter = Waiter(now, stack, checking)
                    self._elapse(now)
                    self._waiters.append(waiter)
            if expired is not None:
                self._counts["retired"] += len(expired)
        finally:
            self._books.give()
        if expired is None and record is not None:
            return record
        try:
            if expired is not None:
                self._retire_later(expired)
            if error is not None:
                raise error
            if waiter is None:
                return record
            return self._wait(waiter, timeout)
        except BaseException:  # an interrupt once lent or queued: the place and the connection are given up
            if waiter is not None:
                self._abandon(waiter)
            elif record is not None:
                self._give_back(record.conn, False, _monotonic())
            raise

    cdef int _lend(self, Lent record, double now, double waited, object stack, bint checking) except -1:
        # under the lock; ``stack``: the taker's frames, captured on its own thread (a hand-off runs on another)
        self._elapse(now)
        self._in_use[PyLong_FromVoidPtr(<void*> record.conn)] = record
        record.taken = now
        record.waited = waited
        record.level = len(self._in_use)
        record.stack = stack
        record.leak_reported = False  # a new loan, reported if it leaks too
        record.checking = checking
        if not checking:  # else once it passes (``_passed_check``)
            self._record.lent(waited)
        return 0

    cdef int _give_back(self, conn, bint broken, double now, Waiter waiter=None, bint reset_failed=False) except -1:
        """Take ``conn`` back: to the longest waiter, the idle stack, or retired. Once the pool is closed,
        callers still waiting (a ``close`` that serves them) get what comes back, and nothing else is kept.
        ``waiter``: one who stopped waiting gives back what it was handed, if it still holds it.
        ``reset_failed``: its ``reset`` raised (counted with it)."""
        cdef Lent record, retire = None
        cdef double held
        cdef Py_ssize_t limit = 0, waiting
        if self._books.held_here():  # a finalizer in a garbage collection this thread ran holding the lock
            self._books.defer(self._give_back_deferred, (conn, broken, now, waiter, reset_failed))
            return 0
        # an interrupt while the lock is busy (a release's) is raised once the connection is back
        interrupted = self._lock_steadily()
        try:
            if waiter is not None:
                if waiter.record is None:  # given back already
                    return 0
                conn, waiter.record = waiter.record.conn, None
            key = PyLong_FromVoidPtr(<void*> conn)
            record = self._in_use.get(key)  # its record holds it: no other live object has its id
            if record is None:
                closed_meanwhile = key in self._closed_lent  # close() closed it: nothing to give back
                self._closed_lent.discard(key)
                if interrupted is not None and waiter is None:  # the caller's interrupt, not lost
                    raise interrupted
                if closed_meanwhile:
                    return 0
                raise ValueError(f"this connection is not lent by pool {self.name!r} (released twice?)")
            waiting = len(self._waiters)
            if waiting and not self._closed:
                try:
                    limit = self._burst_limit()  # Python code, where an interrupt may land: before the books change
                except BaseException as exc:  # the connection goes back all the same; raised once it is
                    limit, interrupted = self._target, interrupted or exc
            self._elapse(now)
            del self._in_use[key]
            record.stack = None
            if reset_failed:
                self._counts["reset_failures"] += 1
            if not record.checking:  # a connection that failed its check was never lent in the record
                held = now - record.taken
                self._record.returned(held, record.waited + held, record.level)
            if broken or now - record.created > self.max_lifetime:
                retire = record
            elif waiting and (self._closed or self._open_now() + 1 <= limit):  # + 1: this one
                self._hand_off(record, now)
            elif self._closed or self._open_now() + 1 > self._target:  # a surplus one (a shrink, or a burst over)
                retire = record
            else:
                record.returned = now
                self._idle.append(record)
            if retire is not None:
                self._counts["retired"] += 1
                if self._closed:
                    try:
                        self._turn_away_stranded()
                    except BaseException as exc:  # raised once the retired connection is closed
                        interrupted = interrupted or exc
        finally:
            self._books.give()
        if retire is not None:
            self._retire_later([retire])
            if not self._closed:
                self._refill()  # a broken one is replaced
        if interrupted is not None and waiter is None:  # (an abandoning caller's own interrupt goes on)
            raise interrupted
        return 0

    def _give_back_deferred(self, conn, bint broken, double now, Waiter waiter, bint reset_failed):
        """A give-back deferred until this thread released the lock (see ``DeferringLock``). Its caller
        (a finalizer) has returned, so nobody is left to raise to: a failure is counted -- an interrupt
        too, as Python ignores one raised in a finalizer. Raised here, it would leave the release that
        ran this half done (a connection lent and never recorded as given to its caller); a Ctrl-C
        that lands just here is counted, not delivered (press it again)."""
        try:
            self._give_back(conn, broken, now, waiter, reset_failed)
        except BaseException as exc:
            self.faults.record("giving back a connection", exc)

    def _hand_off(self, Lent record, double now):
        """Lend ``record`` to the longest waiter (under the lock, with a caller waiting)."""
        cdef Waiter waiter = self._waiters.popleft()
        self._lend(record, now, max(now - waiter.since, 1e-9), waiter.stack, waiter.checking)
        waiter.record = record
        waiter.ready.release()

    cpdef int _turn_away_waiters(self, str why) except -1:
        """Fail every waiting caller with the pool's ``PoolClosed`` saying ``why`` (under the lock)."""
        cdef Waiter waiter
        self._elapse(_monotonic())
        while self._waiters:
            error = self._closed_error(why)  # Python code before the books change: an interrupt loses nobody
            waiter = self._waiters.popleft()
            waiter.error = error
            waiter.ready.release()
        return 0

    cpdef int _turn_away_stranded(self) except -1:
        """A closed pool serves the callers already waiting (``close(serve_waiting=True)``) with what
        comes back; once nothing is in use or being opened, nothing will: they are told now, not at
        their timeouts (under the lock)."""
        if self._closed and self._waiters and not self._in_use and not self._opening:
            self._turn_away_waiters("was closed with no connection left to come back to this caller")
        return 0

    # -- the books -----------------------------------------------------------------------------
    cdef inline Py_ssize_t _open_now(self) noexcept:  # under the lock: idle, lent, and being opened
        return len(self._idle) + len(self._in_use) + self._opening

    def _open_count(self):
        """Connections idle, lent and being opened (under the lock)."""
        return self._open_now()

    cdef inline void _elapse(self, double now) noexcept:  # under the lock, before in use or waiting change
        self._record.elapse(now, len(self._in_use), len(self._waiters))

    def _count_change(self, double now):
        """Advance the interval's time integrals (under the lock, before in use or waiting change)."""
        self._elapse(now)

    cdef int _count(self, str what) except -1:
        self._books.take()
        try:
            self._counts[what] += 1
        finally:
            self._books.give()
        return 0
