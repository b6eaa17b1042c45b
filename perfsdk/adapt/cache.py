"""AdaptiveCache: a dict-like cache that learns its size and its admission policy.

The compiled core (``perfsdk._native.CacheCore``, W-TinyLFU with a movable
window in front of a segmented-LRU main area) does the per-access work. Every
``interval`` operations the core calls back; the cache's ``CacheController``
(the generic controller of ``perfsdk.adapt.controller``) asks the cache for
the interval's evidence (``cache_policy.CacheEvidence``: hit ratio, ghost hits,
what growing or shrinking would have earned, ARC's verdict on the window),
decides keep, shrink or grow under the limits and cooldown, and the cache
applies it. In advisory mode nothing is applied. Every decision is recorded,
explained.
"""

from __future__ import annotations

import functools
import inspect
import sys
import threading
from collections.abc import Mapping, MutableMapping
from typing import Any, Callable, Iterator

from perfsdk._native import CacheCore, CachedFunction
from perfsdk._runtime import (Faults, at_fork, check_bool, check_callable, check_choice, check_int, check_number,
                             check_str)
from perfsdk.adapt.cache_controller import CacheController
from perfsdk.adapt.cache_policy import MIN_WINDOW, CacheEvidence
from perfsdk.adapt.controller import Evidence
from perfsdk.adapt.decision import Action, Decision, SettingMove

__all__ = ["AdaptiveCache"]

#: The most entries a capacity may name (about 10**15: more than any machine holds), so that
#: the default ``max_capacity`` (four times the capacity) stays within the core's integers.
MAX_ENTRIES = 2**50
#: Moves and evictions a resize makes at once (tens of microseconds): a decision's finishes a few
#: steps per later operation (``CacheCore.resize``'s ``steps``), one by hand in further bursts before
#: it returns. Shrinking 1M entries at once held the GIL, every thread of the host, for 100-150 ms.
RESIZE_STEPS = 256
#: The kind under which ``stats()["faults"]`` counts keys and values ``sys.getsizeof`` failed on.
SIZING = "sizing a cached key or value (approx_bytes)"

_MISSING = object()


def check_memoizable(fn: Any) -> None:
    """Refuse what memoizing would break: a coroutine can be awaited once, a generator iterated
    once, so a cached one is spent for every later caller. An object that is not a function, a
    method or a ``functools.partial`` is judged by its class's ``__call__`` too."""
    calls = [(fn, "it is")]
    if not (inspect.isfunction(fn) or inspect.ismethod(fn) or isinstance(fn, functools.partial)):
        calls.append((getattr(type(fn), "__call__", None), "its __call__ is"))  # an instance of a class
    for test, what in ((inspect.iscoroutinefunction, "an async function"),
                       (inspect.isasyncgenfunction, "an async generator function"),
                       (inspect.isgeneratorfunction, "a generator function")):
        for call, it_is in calls:
            if test(call):
                name = getattr(fn, "__qualname__", None) or repr(fn)
                raise TypeError(f"cannot memoize {name}: {it_is} {what}, whose result can be used only once "
                                f"(memoize a function that returns the finished value)")


class AdaptiveCache(MutableMapping):
    """A thread-safe, dict-like LRU cache that sizes itself within limits a person sets.

    Parameters
    ----------
    capacity
        Starting capacity (entries).
    min_capacity, max_capacity
        Hard limits for the controller (default: capacity / 4 and capacity * 4).
    controller
        A ``CacheController``, ``"default"`` for one with default settings, or
        ``None`` for a plain, fixed-size LRU cache.
    mode
        ``"auto"`` applies decisions within the limits; ``"advisory"`` only
        records them (the cache never changes by itself).
    window
        The recency window's share of the capacity, in (0, 1]: 1.0 is plain
        LRU, 0.01 is W-TinyLFU (frequency admission behind a small window).
        Default: 1.0 without a controller, 0.01 with one (it moves it).
    name
        Names the cache in decisions.
    on_decision
        Called with every ``Decision``, on a background thread: a slow
        callback never holds up a get. (While ``perfsdk.init(export_dir=...)``
        runs, decisions also go to its Arrow ``decisions`` table.)
    load_wait_s
        How long a caller of ``get_or_load`` (or a memoized function) waits for
        another caller's load of the same key, in seconds (default: 10), before it
        gives that load up and loads the key anew, stored, while the key's other
        callers wait for its load (what the load given up returns later is not
        stored); that load is not given up in turn -- a caller that waits it out loads
        for itself, uncached (``stats()["load_wait_timeouts"]`` counts both): a hung
        load holds up its own caller, and the others for ``load_wait_s``, twice at most.

    Examples
    --------
    >>> cache = AdaptiveCache(capacity=2, controller=None)
    >>> cache["a"] = 1; cache["b"] = 2
    >>> cache.get("a"), cache.get("zzz", "default")
    (1, 'default')
    >>> cache["c"] = 3          # evicts "b", the least recently used
    >>> sorted(cache), cache.stats()["evictions"]
    (['a', 'c'], 1)
    >>> cache.get_or_load("d", lambda key: key.upper())
    'D'
    """

    value_name = "capacity"  # the controller's guardrails: "min_capacity", "max_capacity"

    def __init__(
        self, capacity: int = 1024, *, min_capacity: int | None = None, max_capacity: int | None = None,
        controller: CacheController | str | None = "default", mode: str = "auto",
        window: float | None = None, name: str = "cache",
        on_decision: Callable[[Decision], Any] | None = None, load_wait_s: float | None = None,
    ) -> None:
        check_int("capacity", capacity, minimum=1, maximum=MAX_ENTRIES)
        min_capacity = max(1, capacity // 4) if min_capacity is None else min_capacity
        max_capacity = min(capacity * 4, MAX_ENTRIES) if max_capacity is None else max_capacity
        check_int("min_capacity", min_capacity, minimum=1, maximum=capacity)
        check_int("max_capacity", max_capacity, minimum=capacity, maximum=MAX_ENTRIES)
        check_str("mode", mode)
        check_choice("mode", mode, ("auto", "advisory"))
        check_str("name", name)
        if on_decision is not None:
            check_callable("on_decision", on_decision)
        if controller == "default":
            controller = CacheController()
        if controller is not None and not isinstance(controller, CacheController):
            raise TypeError(f"controller must be a CacheController, 'default' or None, got {controller!r}")
        if window is None:
            window = 1.0 if controller is None else MIN_WINDOW
        check_number("window", window, low=0.0, high=1.0, low_open=True)
        wait_s = None if load_wait_s is None else check_number("load_wait_s", load_wait_s, low=0.0, low_open=True)
        self._core = CacheCore(capacity, max_capacity)
        self._core.resize(capacity, float(window))
        if wait_s is not None:
            self._core.load_wait_s = wait_s
        # the ghost ring (evicted keys) is the controller's evidence: without one, nothing reads it,
        # and it kept evicted keys -- a memoized function's arguments, `self` -- alive
        self._core.keeps_ghosts = controller is not None
        self._resizing = threading.RLock()  # a resize by hand, or the controller's apply_if (a finaliser of
        # an entry either evicts may resize: reentrant)
        self.faults = Faults()  # the controller's and the callbacks' faults, in stats()
        if controller is not None:  # last: a constructor that refuses an argument leaves it unbound
            controller.bind(name, self.faults)
        self.min_capacity, self.max_capacity = min_capacity, max_capacity
        self.mode = mode
        self.name = name
        self.controller = controller
        self.on_decision = on_decision
        self.callbacks_dropped = 0  # decisions not handed to on_decision: the queue was full
        # no Python layer on the hit path -- unless a subclass overrides it
        if type(self).get is AdaptiveCache.get:
            self.get = self._core.get  # type: ignore[method-assign]
        if type(self).get_or_load is AdaptiveCache.get_or_load:
            self.get_or_load = self._core.get_or_load  # type: ignore[method-assign]
        self._evidence = CacheEvidence(self._core, capacity)
        if controller is not None:
            self._core.count_frequencies = True  # the window may move back from LRU: keep counting
            self._core.on_interval = self._on_interval
            self._schedule_decision()
        at_fork(self._after_fork)

    # -- the controller's target (its hook runs every `interval` gets, outside the core's lock) --
    @property
    def value(self) -> int:
        return int(self._core.capacity)

    @property
    def min_value(self) -> int:
        return self.min_capacity

    @property
    def max_value(self) -> int:
        return self.max_capacity

    def evidence(self, candidates: Mapping[Action, int]) -> Evidence:
        """What the interval that just ended says (the controller asks; see ``cache_policy``)."""
        assert self.controller is not None
        return self._evidence(self.controller, self.min_capacity, self.max_capacity, candidates)

    def apply(self, value: int, setting: SettingMove | None) -> None:
        """Resize to what the controller decided (and move the window as the evidence proposed):
        ``RESIZE_STEPS`` at once, the rest a few per later operation (it runs inside a get)."""
        self._core.resize(value, self._core.window_share if setting is None else setting.after, RESIZE_STEPS)
        if self._evidence.popularity.take_ageing():  # the popular keys changed: old counts fade now
            self._core.age_frequencies()

    def apply_if(self, value: int, setting: SettingMove | None, before: int) -> bool:
        """``apply`` -- unless ``resize`` changed the capacity while the controller decided at
        ``before``, or is changing it now (False: the person's capacity stands). It runs inside a
        get: it never waits for a resize by hand."""
        if not self._resizing.acquire(blocking=False):
            return False
        try:
            if self._core.capacity != before:
                return False
            self.apply(value, setting)
            return True
        finally:
            self._resizing.release()

    def _on_interval(self) -> None:
        # Runs inside the get that closed the interval: bounded work only (~20-40 us);
        # the on_decision callback, which may do anything, runs on a background thread.
        try:
            controller = self.controller
            if controller is None:
                return  # the controller was taken away: the hook stops
            decision = controller.decide(self)
            self.callbacks_dropped += controller.deliver(decision, self.on_decision, self.faults)
        except Exception as exc:  # a controller fault must not break a cache read
            self.faults.record("the cache controller", exc)
        try:
            self._schedule_decision()
        except Exception as exc:
            self.faults.record("the cache controller", exc)

    def _schedule_decision(self) -> None:
        controller = self.controller
        if controller is None:
            return
        at_ops, deadline = controller.next_due(self._core.ops, CacheCore.monotonic())
        self._core.next_interval_at = at_ops
        if deadline is not None:
            self._core.next_interval_time = deadline

    # -- access ---------------------------------------------------------------------------
    def get(self, key: Any, default: Any = None) -> Any:
        """The value for ``key`` (it becomes most recent), or ``default``."""
        return self._core.get(key, default)  # instances call the compiled core directly

    def put(self, key: Any, value: Any) -> None:
        """Store ``value`` (a new key enters the recency window)."""
        self._core.put(key, value)

    def get_or_load(self, key: Any, loader: Callable[[Any], Any]) -> Any:
        """The cached value, or ``loader(key)`` -- called outside any lock -- stored and returned.

        One load per key: concurrent callers of a key being loaded wait for that
        load and get its value (or its exception; a failed load caches nothing),
        as Caffeine's and cachetools' loading caches do.
        """
        return self._core.get_or_load(key, loader)  # instances call the compiled core directly

    def __getitem__(self, key: Any) -> Any:
        value = self._core.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def __setitem__(self, key: Any, value: Any) -> None:
        self._core.put(key, value)

    def __delitem__(self, key: Any) -> None:
        if self._core.pop(key, _MISSING) is _MISSING:
            raise KeyError(key)

    def pop(self, key: Any, default: Any = _MISSING) -> Any:
        value = self._core.pop(key, _MISSING)
        if value is _MISSING:
            if default is _MISSING:
                raise KeyError(key)
            return default
        return value

    def popitem(self) -> tuple[Any, Any]:
        """Remove and return the first (key, value) in iteration order; atomic, and not a use
        (no hit counted, nothing promoted). KeyError when empty."""
        return self._core.popitem()

    def setdefault(self, key: Any, default: Any = None) -> Any:
        """``key``'s value (made recent, as a put over it would be, not counted as a hit), or
        ``default``, stored; atomic."""
        return self._core.setdefault(key, default)

    def __contains__(self, key: object) -> bool:
        return bool(self._core.contains(key))  # no effect on recency or statistics

    def __iter__(self) -> Iterator[Any]:
        return iter(self._core.keys_by_recency())

    # Bulk reads are snapshots: they must not count as traffic, promote keys or reorder them.
    def items(self) -> list[tuple[Any, Any]]:  # type: ignore[override]
        """(key, value) pairs, a snapshot in iteration order (no effect on recency or stats)."""
        return self._core.items_by_recency()

    def values(self) -> list[Any]:  # type: ignore[override]
        """Values, a snapshot in iteration order (no effect on recency or stats)."""
        return [value for _, value in self._core.items_by_recency()]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mapping):
            return NotImplemented
        return dict(self.items()) == dict(other.items())

    __hash__ = None  # type: ignore[assignment]  # mutable, like dict

    def __len__(self) -> int:
        return int(self._core.size)

    def clear(self) -> None:
        self._core.clear()

    # -- state ------------------------------------------------------------------------------
    @property
    def capacity(self) -> int:
        return int(self._core.capacity)

    def resize(self, capacity: int) -> None:
        """Set the capacity by hand (within min/max); evicts to fit before it returns, in bursts of
        ``RESIZE_STEPS`` between which other threads run (the controller's resizes are gradual:
        see ``apply``)."""
        check_int("capacity", capacity, minimum=1, maximum=MAX_ENTRIES)
        if not self.min_capacity <= capacity <= self.max_capacity:
            raise ValueError(f"resize({capacity}) is outside this cache's limits, min_capacity={self.min_capacity} "
                             f"and max_capacity={self.max_capacity} (by default a quarter and four times the "
                             f"capacity it was made with): they bound a hand resize as they bound the controller; "
                             f"set them when the cache is made")
        with self._resizing:
            self._core.resize(capacity, -1.0, RESIZE_STEPS)
            while self._core.catching_up:  # the lock and the GIL are free between bursts
                self._core.resize(capacity, -1.0, RESIZE_STEPS)

    def memoize(self, fn: Callable[..., Any], *, alone: bool = False) -> Callable[..., Any]:
        """``fn`` memoized in this cache, keyed on its arguments as ``functools.lru_cache`` keys
        them; compiled, so a hit runs no Python code. Each memoized function's keys are its
        own, so several can share a cache with other entries; ``alone=True`` where this cache
        holds nothing else (``@cached``'s own cache): the arguments are the keys, untagged.

        >>> cache = AdaptiveCache(100, controller=None)
        >>> square, cube = cache.memoize(lambda x: x * x), cache.memoize(lambda x: x ** 3)
        >>> square(3), cube(3), len(cache)
        (9, 27, 2)
        """
        check_bool("alone", alone)
        check_memoizable(fn)
        return CachedFunction(fn, self._core, None if alone else object())

    def decisions(self) -> list[Decision]:
        return list(self.controller.decisions) if self.controller else []

    def stats(self) -> dict[str, Any]:
        """Hits, misses, evictions, capacity, an approximate size in bytes, faults, and more
        (``catching_up``: a resize is still evicting to fit, a few entries each operation)."""
        core = self._core
        ops = core.hits + core.misses
        approx_bytes = self._approx_bytes()  # before the faults: it may count one
        faults = self.faults.snapshot()
        return {
            "hits": core.hits, "misses": core.misses,
            "hit_ratio": core.hits / ops if ops else 0.0,
            "evictions": core.evictions, "ghost_hits": core.ghost_hits, "key_faults": core.key_faults,
            "reentered": core.reentered, "load_wait_timeouts": core.load_wait_timeouts,
            "admission_rejections": core.rejected, "window_share": core.window_share,
            "size": core.size, "capacity": core.capacity, "catching_up": core.catching_up,
            "min_capacity": self.min_capacity, "max_capacity": self.max_capacity,
            "approx_bytes": approx_bytes, "mode": self.mode,
            "decisions": self.controller.decided if self.controller else 0,
            "decision_faults": sum(faults.values()) - faults.get(SIZING, 0), "faults": faults,
            "callbacks_dropped": self.callbacks_dropped,
        }

    def _approx_bytes(self) -> int:
        # The structures exactly; keys and values from a sample of 64 entries, not a copy of all,
        # and the evicted keys the ghost ring still holds at the sampled key size. An object
        # whose __sizeof__ fails (a dead weakref.proxy, a broken one) is left out and counted.
        core = self._core
        keys = values = 0.0
        sized = 0
        for k, v in core.items_by_recency(64):
            try:
                key_bytes, value_bytes = sys.getsizeof(k), sys.getsizeof(v)
            except Exception as exc:
                self.faults.record(SIZING, exc)
                continue
            keys, values, sized = keys + key_bytes, values + value_bytes, sized + 1
        if not sized:
            return int(core.structure_bytes)
        return int(core.structure_bytes + (core.size * (keys + values) + core.ghost_keys * keys) / sized)

    def _after_fork(self) -> None:
        # A thread of the parent may have held the core's lock (or been loading a key): it
        # does not exist here. The core frees its lock (empty if it was held mid-operation).
        # A decision another thread was making is lost with it: the controller's lock is made
        # afresh (see Controller._after_fork), and the next interval scheduled -- the get that
        # closed the interval unscheduled it for the decision to set it anew.
        self._core._after_fork()
        self._resizing = threading.RLock()
        if self.controller is not None and not self._core.next_interval_at:
            self._schedule_decision()

    def __reduce__(self) -> Any:
        raise TypeError(f"an AdaptiveCache cannot be copied or pickled (it holds live entries, a lock "
                        f"and a controller): make a new one, e.g. AdaptiveCache({self.capacity})")

    def __copy__(self) -> Any:
        return self.__reduce__()

    def __deepcopy__(self, memo: Any) -> Any:
        return self.__reduce__()

    def __repr__(self) -> str:
        return (f"AdaptiveCache(capacity={self.capacity}, min_capacity={self.min_capacity}, "
                f"max_capacity={self.max_capacity}, mode={self.mode!r}, size={len(self)})")
