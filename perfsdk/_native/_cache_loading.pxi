# Included by _cache.pyx: loads in flight, so a missing key is loaded once.
#
# ``CacheCore.get_or_load`` (and ``@cached``) register the load of a missing key
# under the cache's lock; concurrent callers of the same key find it and wait on
# its gate -- a lock made by the first waiter only, so an uncontended miss costs
# one small object and a dict entry -- and get its value, or a copy of its
# exception (a failed load caches nothing), as Caffeine's and cachetools' loading
# caches do. A waiter waits ``load_wait_s`` at most for one load: a load still
# running then (hung, or slow) is given up -- superseded, so whatever it returns
# later is not stored (it read the data before the newer load did), and out of
# the way, so that the waiter loads the key anew, stored, while the load's other
# waiters and later callers wait for that load (a hung load holds up its own caller
# only, after the first ``load_wait_s``). Only an ``Exception`` is shared: a
# KeyboardInterrupt or SystemExit is its caller's alone, the load is abandoned,
# and one waiter loads the key anew (each waiter's wait starts afresh).
# A write or removal of the key while it loads (put, pop, del, clear) supersedes
# the load: its leader, which read the value before that write, does not store
# it (its callers still get it), and later callers load anew. Greenlets (gevent,
# SQLAlchemy's asyncio bridge) share a thread: a caller on the leader's thread but
# in another greenlet loads the key itself, as waiting would block the leader too.

from cpython.exc cimport PyErr_CheckSignals

cdef extern from "pythread.h":
    ctypedef long long PY_TIMEOUT_T
    PyLockStatus PyThread_acquire_lock_timed(PyThread_type_lock, PY_TIMEOUT_T microseconds, int intr_flag) nogil

cdef enum: WAIT_SLICE_US = 20000  # a waiter looks at its signals at least this often (microseconds)


cdef class _Loading:
    """One load in flight."""

    cdef object value
    cdef object error
    cdef size_t owner  # the loading thread (a loader asking for its own key is an error)...
    cdef object greenlet  # ...and greenlet (None: the thread's main one, or no greenlets in use)
    cdef PyThread_type_lock gate  # made and held by the first waiter; let go once (loading_open)
    cdef bint opened  # its gate was let go: by its leader as the load ended, or as it was given up
    cdef bint superseded  # the key was written or removed since the load began: its value is not stored
    cdef bint abandoned  # its leader was interrupted (not by an Exception): no value, no error to share
    cdef bint given_up  # a waiter waited load_wait_s for it: superseded, its waiters let through to load anew
    cdef bint replacement  # it replaces a load given up: never given up itself (a slow backend would chain them)

    def __dealloc__(self):
        if self.gate:
            PyThread_free_lock(self.gate)


cdef object _getcurrent = None  # greenlet.getcurrent, once a program has imported greenlet


cdef object _current_greenlet():
    """The running greenlet, or None on a thread's main greenlet or where the greenlet module
    is not imported (it is never imported here: a program without it has no greenlets)."""
    global _getcurrent
    if _getcurrent is None:
        module = sys.modules.get("greenlet")
        _getcurrent = getattr(module, "getcurrent", None)
        if _getcurrent is None:
            return None
    current = _getcurrent()
    return None if current.parent is None else current


cdef void loading_open(_Loading loading) noexcept:
    """Under the cache's lock: let ``loading``'s waiters through -- once, whether its leader ends
    the load or a waiter gives it up first (a second release would let two waiters hold the gate)."""
    if loading.gate and not loading.opened:
        loading.opened = True
        PyThread_release_lock(loading.gate)


cdef int loading_wait(_Loading loading, double deadline) except -1:
    """Wait for ``loading``'s leader to let its gate go, until ``deadline`` (``_monotonic()``);
    1: it did, 0: the time is up. In short slices with signals looked at between them (as
    ``threading.Lock.acquire`` does): Ctrl-C or a signal-based timeout reaches this waiter,
    raised to it alone, while the load goes on for its leader and other waiters."""
    cdef PyLockStatus got
    cdef double left
    cdef PY_TIMEOUT_T slice_us
    while True:
        left = deadline - _monotonic()
        slice_us = WAIT_SLICE_US if left * 1e6 >= WAIT_SLICE_US else (<PY_TIMEOUT_T> (left * 1e6) if left > 0.0 else 0)
        with nogil:
            got = PyThread_acquire_lock_timed(loading.gate, slice_us, 1)
        if got == PY_LOCK_ACQUIRED:
            PyThread_release_lock(loading.gate)  # the next waiter's turn
            return 1
        PyErr_CheckSignals()  # a handler's exception propagates from here
        if left <= 0.0:
            return 0
