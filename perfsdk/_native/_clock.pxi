# Included by the extensions that read the clock on a hot path (_cache.pyx, _pool.pyx).
#
# time.monotonic() without a Python call: the same clock (CLOCK_MONOTONIC, which is what
# CPython's time.monotonic reads on POSIX), so times taken here and in Python compare.

from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC

cdef inline double _monotonic() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9
