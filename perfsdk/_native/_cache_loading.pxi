# Included by _cache.pyx: loads in flight, so a missing key is loaded once.
#
# ``CacheCore.get_or_load`` (and ``@cached``) register the load of a missing key
# under the cache's lock; concurrent callers of the same key find it and wait on
# its gate -- a lock made by the first waiter only, so an uncontended miss costs
# one small object and a dict entry -- and get its value, or its exception (a
# failed load caches nothing), as Caffeine's and cachetools' loading caches do.


cdef class _Loading:
    """One load in flight."""

    cdef object value
    cdef object error
    cdef size_t owner  # the loading thread (a loader asking for its own key is an error)
    cdef PyThread_type_lock gate  # made and held by the first waiter; the loader lets it go

    def __dealloc__(self):
        if self.gate:
            PyThread_free_lock(self.gate)
