# Included by _cache.pyx: the cache's own lock.
#
# With a GIL, compiled code between two Python-level calls runs without interruption,
# so testing and setting a flag is atomic: the uncontended lock costs two stores
# where a real lock costs ~25 ns a get. The flag stays set while the holder runs
# Python code (a key's __hash__, a finaliser the garbage collector calls); another
# thread then waits with the GIL released. Free-threaded builds use a real lock.
# The holder's identity turns re-entry (the cache used from inside one of its own
# operations: a key's __hash__, a finaliser the garbage collector runs at an allocation
# mid-operation) into an answer instead of a deadlock: ``lock_acquire`` returns 1 without
# taking the lock, and the operation goes without the cache (a get misses, a put is skipped,
# a memoized function runs uncached: ``CacheCore.reentered``) or raises (see ``reentry_error``),
# as the adaptive pool's ``DeferringLock`` defers what its holder's finalisers give back.

from cpython.pythread cimport (
    PyThread_type_lock, PyThread_allocate_lock, PyThread_free_lock,
    PyThread_acquire_lock, PyThread_release_lock, NOWAIT_LOCK, WAIT_LOCK, PyLockStatus, PY_LOCK_ACQUIRED,
)

cdef extern from *:
    """
    #ifdef Py_GIL_DISABLED
    #define PERFSDK_GIL_GUARDED 0
    #else
    #define PERFSDK_GIL_GUARDED 1
    #endif
    /* a thread's identity for free: the address of a thread-local byte */
    #if defined(_MSC_VER)
    static __declspec(thread) char perfsdk_thread_marker;
    #else
    static __thread char perfsdk_thread_marker;
    #endif
    #define PERFSDK_THREAD_ID() ((size_t) &perfsdk_thread_marker)
    """
    const bint GIL_GUARDED "PERFSDK_GIL_GUARDED"
    size_t THREAD_ID "PERFSDK_THREAD_ID" ()

cdef extern from "<sched.h>" nogil:
    int sched_yield()

cdef extern from "<unistd.h>" nogil:
    int usleep(unsigned int usec)


cdef struct CacheLock:
    PyThread_type_lock lock  # free-threaded builds only
    bint busy  # with a GIL: the lock, a flag only ever tested and set under the GIL
    size_t owner  # the thread holding it


cdef int lock_init(CacheLock* l) except -1:
    l.lock = PyThread_allocate_lock()
    if not l.lock:
        raise MemoryError("cannot allocate the cache's lock")
    l.busy = False
    l.owner = 0
    return 0


cdef void lock_free(CacheLock* l) noexcept:
    if l.lock:
        PyThread_free_lock(l.lock)


cdef inline int lock_acquire(CacheLock* l) except -1:
    """0: taken; 1: the calling thread holds it already (not taken, nothing to release)."""
    if GIL_GUARDED:
        if not l.busy:
            l.busy = True
            l.owner = THREAD_ID()
            return 0
    elif PyThread_acquire_lock(l.lock, NOWAIT_LOCK):
        l.owner = THREAD_ID()
        return 0
    return _lock_wait(l)


cdef int _lock_wait(CacheLock* l) except -1:
    cdef size_t me = THREAD_ID()
    cdef int spins = 0
    if l.owner == me:
        return 1  # waiting would be for ever: the caller goes on without the cache, or raises
    if GIL_GUARDED:
        while l.busy:  # the holder is running Python code; let it finish
            with nogil:
                if spins < 64:
                    sched_yield()
                else:
                    usleep(50)  # a long hold (a slow __hash__): stop burning a core
            spins += 1
        l.busy = True
    else:
        with nogil:
            PyThread_acquire_lock(l.lock, WAIT_LOCK)
    l.owner = me
    return 0


cdef int reentry_error() except -1:
    raise RuntimeError(
        "the cache was used from inside one of its own operations (a key's __hash__ or __eq__, "
        "or a finaliser the garbage collector ran mid-operation): only get, put, get_or_load and "
        "memoized functions work there (they go without the cache)")


cdef inline void lock_release(CacheLock* l) noexcept:
    l.owner = 0
    if GIL_GUARDED:
        l.busy = False
    else:
        PyThread_release_lock(l.lock)


cdef bint lock_reset_after_fork(CacheLock* l) noexcept:
    """In a forked child: free the lock (its holder, if any, did not survive the fork).
    Returns whether it was held."""
    cdef bint held
    if GIL_GUARDED:
        held = l.busy
    else:
        held = not PyThread_acquire_lock(l.lock, NOWAIT_LOCK)
        if held:
            l.lock = PyThread_allocate_lock()  # the old one stays locked: leave it
        else:
            PyThread_release_lock(l.lock)
    l.busy = False
    l.owner = 0
    return held
