# Included by _cache.pyx: the compiled memoizing wrapper behind @perfsdk.cached.

from types import MethodType

cdef object _KEYWORDS = object()


cdef class CachedFunction:
    """A function memoized in a CacheCore: ``perfsdk.cached``'s compiled wrapper.

    Keys as ``functools.lru_cache`` makes them: a lone int or str argument is
    its own key; otherwise the positional arguments, plus the keyword ones --
    each under ``tag`` where one is given (a cache several functions share:
    their results must not answer for each other). The function runs outside
    the cache's lock, once per key while concurrent callers of the same key
    wait for it.
    """

    cdef object _fn
    cdef CacheCore _core
    cdef object _tag
    cdef dict __dict__  # functools.update_wrapper copies __name__, __doc__, __wrapped__ here

    def __cinit__(self, fn, CacheCore core, tag=None):
        if not callable(fn):
            raise TypeError(f"the function to memoize must be callable, got {fn!r}")
        self._fn = fn
        self._core = core
        self._tag = tag

    def __call__(self, *args, **kwargs):
        cdef object key, value
        if kwargs:
            key = (_KEYWORDS, args, frozenset(kwargs.items()))  # the marker: no positional call can match
        elif len(args) == 1 and (type(args[0]) is int or type(args[0]) is str):
            key = args[0]
        else:
            key = args
        if self._tag is not None:
            key = (self._tag, key)
        value = self._core._get(key, _MISSING)
        if value is _MISSING:  # loaded once, while concurrent callers with these arguments wait
            return self._core._load(key, self._fn, args, kwargs)
        return value

    def __reduce__(self):
        # as functools.lru_cache's: pickled by name (a module-level @cached function), so a
        # process pool can send it; the receiving process finds it, and its own cache, by name
        name = getattr(self, "__qualname__", None)  # functools.update_wrapper set it
        if name is None:
            raise TypeError("a memoized function is pickled by name: decorate a module-level "
                            "function with @cached (or functools.update_wrapper the wrapper)")
        return name

    def __get__(self, instance, owner):
        """As a method: bound to the instance (which becomes part of the key)."""
        if instance is None:
            return self
        return MethodType(self, instance)
