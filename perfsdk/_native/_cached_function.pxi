# Included by _cache.pyx: the compiled memoizing wrapper behind @perfsdk.cached.

from types import MethodType

cdef object _KEYWORDS = object()


cdef class CachedFunction:
    """A function memoized in a CacheCore: ``perfsdk.cached``'s compiled wrapper.

    Keys as ``functools.lru_cache`` makes them: a lone int or str argument is
    its own key; otherwise the positional arguments, plus the keyword ones.
    The function runs outside the cache's lock, once per key while concurrent
    callers of the same key wait for it.
    """

    cdef object _fn
    cdef CacheCore _core
    cdef dict __dict__  # functools.update_wrapper copies __name__, __doc__, __wrapped__ here

    def __cinit__(self, fn, CacheCore core):
        self._fn = fn
        self._core = core

    def __call__(self, *args, **kwargs):
        cdef object key, value
        if kwargs:
            key = (_KEYWORDS, args, frozenset(kwargs.items()))  # the marker: no positional call can match
        elif len(args) == 1 and (type(args[0]) is int or type(args[0]) is str):
            key = args[0]
        else:
            key = args
        value = self._core._get(key, _MISSING)
        if value is _MISSING:  # loaded once, while concurrent callers with these arguments wait
            return self._core._load(key, self._fn, args, kwargs)
        return value

    def __get__(self, instance, owner):
        """As a method: bound to the instance (which becomes part of the key)."""
        if instance is None:
            return self
        return MethodType(self, instance)
