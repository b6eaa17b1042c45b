# Included by _cache.pyx: loads in flight, so a missing key is loaded once.
#
# ``CacheCore.get_or_load`` (and ``@cached``) register the load of a missing key
# under the cache's lock; concurrent callers of the same key find it and wait on
# its gate -- a lock made by the first waiter only, so an uncontended miss costs
# one small object and a dict entry -- and get its value, or its exception (a
# failed load caches nothing), as Caffeine's and cachetools' loading caches do.
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
    cdef PyThread_type_lock gate  # made and held by the first waiter; the loader lets it go
    cdef bint superseded  # the key was written or removed since the load began: its value is not stored

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


cdef int loading_wait(_Loading loading) except -1:
    """Wait for ``loading``'s leader to let its gate go, in short slices with signals looked at
    between them (as ``threading.Lock.acquire`` does): Ctrl-C or a signal-based timeout reaches
    this waiter, raised to it alone, while the load goes on for its leader and other waiters."""
    cdef PyLockStatus got
    while True:
        with nogil:
            got = PyThread_acquire_lock_timed(loading.gate, WAIT_SLICE_US, 1)
        if got == PY_LOCK_ACQUIRED:
            PyThread_release_lock(loading.gate)  # the next waiter's turn
            return 0
        PyErr_CheckSignals()  # a handler's exception propagates from here
