"""``@cached``: memoize a function in an AdaptiveCache, as ``functools.lru_cache`` does."""

from __future__ import annotations

import functools
from collections import namedtuple
from typing import Any, Callable, TypeVar

from perfsdk._runtime import check_bool, check_int
from perfsdk.adapt.cache import MAX_ENTRIES, AdaptiveCache, check_memoizable

__all__ = ["CacheInfo", "cached"]

F = TypeVar("F", bound=Callable[..., Any])
CacheInfo = namedtuple("CacheInfo", ["hits", "misses", "maxsize", "currsize"])  # functools' fields
_UNSET: Any = object()  # an argument not given (maxsize=None is refused, so None cannot mean that)


def cached(fn: Any = _UNSET, /, typed: bool = False, *, maxsize: Any = _UNSET, **cache_options: Any) -> Any:
    """Memoize a function in an ``AdaptiveCache``, as ``functools.lru_cache`` does.

    ``@cached``, ``@cached(maxsize=...)`` (or ``@cached(256)``, as lru_cache takes it) or
    ``cached(fn, maxsize=..., **options)``: ``maxsize`` is the starting capacity (the controller may
    move it within ``min_capacity`` / ``max_capacity``); other options go to ``AdaptiveCache`` (its
    ``name``, in decisions, is the function's ``__qualname__`` unless given). Keys as
    lru_cache makes them (``typed=True`` is not supported); async and generator functions, and
    objects whose ``__call__`` is one, are refused (their result can be used once). The wrapper has
    ``cache_info()`` (lru_cache's named tuple: hits, misses, maxsize — the
    current capacity — and currsize), ``cache_clear()`` (which, as lru_cache's,
    also starts the hits and misses it reports from zero), and ``cache`` (the
    AdaptiveCache: ``cache.stats()``, ``cache.decisions()``, counting since it was made).

    >>> @cached(maxsize=256, controller=None)
    ... def square(x):
    ...     return x * x
    >>> square(4), square(4), square.cache_info()
    (16, 16, CacheInfo(hits=1, misses=1, maxsize=256, currsize=1))
    >>> cached(abs, maxsize=64).cache_info().maxsize
    64
    """
    if fn is not _UNSET and not callable(fn):  # @cached(256): the maxsize, by position
        if maxsize is not _UNSET:
            raise TypeError(f"cached() got maxsize twice: {fn!r} by position and maxsize={maxsize!r}")
        fn, maxsize = _UNSET, fn
    if maxsize is _UNSET:
        maxsize = 128
    if maxsize is None:
        raise ValueError("maxsize must be an integer >= 1 (a cache perfsdk sizes needs a bound; "
                         "functools.cache is the unbounded one), got None")
    check_int("maxsize", maxsize, minimum=1, maximum=MAX_ENTRIES)
    check_bool("typed", typed)
    if typed:
        raise ValueError("typed=True is not supported: wrap the function in functools.lru_cache for that")

    def decorate(function: F) -> F:
        check_memoizable(function)  # before the cache is made (and a controller given bound to it)
        options = {"name": getattr(function, "__qualname__", None) or "cache", **cache_options}
        cache = AdaptiveCache(maxsize, **options)
        wrapper = cache.memoize(function, alone=True)  # compiled: a hit never runs Python code
        functools.update_wrapper(wrapper, function)
        cleared = [0, 0]  # hits and misses at the last cache_clear() (the cache's own counters go
                          # on: the controller's evidence is their differences)

        def cache_info() -> Any:
            stats = cache.stats()
            return CacheInfo(stats["hits"] - cleared[0], stats["misses"] - cleared[1], stats["capacity"],
                             stats["size"])

        def cache_clear() -> None:
            cache.clear()
            stats = cache.stats()
            cleared[:] = [stats["hits"], stats["misses"]]

        wrapper.cache = cache  # type: ignore[attr-defined]
        wrapper.cache_info = cache_info  # type: ignore[attr-defined]
        wrapper.cache_clear = cache_clear  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate if fn is _UNSET else decorate(fn)
