# cython: language_level=3
"""Compiled core of the adaptive cache: W-TinyLFU with a movable window, and a ghost list.

``CacheCore`` keeps entries in slots: a dict maps each key to its slot, C
arrays link the slots into three recency lists (window, probation,
protected) and keep each key's hash, and Python lists hold the keys and
values. A hit is one dict lookup and a relink.

New keys enter the *window* (an LRU list holding ``window_capacity`` of the
``capacity`` entries). A key pushed out of the window joins the *main* area
if there is room, or if a count-min sketch of recent access frequencies says
it is used more often than main's next victim, which it then evicts (TinyLFU
admission). Main is a segmented LRU: keys admitted land in *probation*; a
hit there promotes them to *protected* (80 % of main), whose overflow is
demoted back to probation, so a key must prove itself twice to be hard to
evict. With the window at the whole capacity this is plain LRU; with a 1 %
window it is W-TinyLFU (Caffeine's policy). The controller moves the window
between the two. Evicted keys go to a ghost list -- a ring of the last
``capacity`` evictions, each remembering when and from where it was evicted --
so the controller can see what a larger or differently split cache would have hit.

A resize may be gradual (``resize(..., steps=n)``, the controller's): it makes at most ``n``
moves and evictions at once, and each later operation ``CATCH_UP_STEPS`` more until the cache
is within its new bounds -- so a decision never stalls the get that made it. Meanwhile the
cache may hold more than its new ``capacity`` (and the window or protected more than their
shares), never more than it held when the resize came (at most the old capacity): a put of
a new key makes its ``CATCH_UP_STEPS`` too, one eviction at least for itself, so the size only
falls; a get or a removal only lowers it. The deep-hit marker's move to a new depth (a resize,
a new ``shrink_step``) and a halving of the frequency sketch are spread over later gets the same
way (``MARKER_STEPS`` links, ``AGE_SLICE`` counters a get): no walk of a whole window or sketch.

Exceptions: a key's ``__hash__`` or ``__eq__`` may raise; every step that can
call them runs before the step changes anything, so the exception reaches the
caller and the cache stays whole (an eviction it interrupted happens at the
next put).

Thread safety: every operation runs under the cache's own lock -- with a GIL,
a flag tested and set under it (two stores when uncontended); on free-threaded
builds, a real lock. Keys and values leaving the cache are released only
after the lock is, so a finaliser may use the cache. Used from inside one of
its own operations (a key's ``__hash__``/``__eq__``, a finaliser the garbage
collector runs at an allocation mid-operation), the cache cannot wait for its
own lock: a get misses, a put is skipped, a load or memoized function runs
uncached (each counted in ``reentered``); anything else raises RuntimeError.
"""

cimport cython
import copy
import reprlib
import sys
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memset
from libc.math cimport INFINITY
from libc.stdint cimport uint64_t, uint8_t
from cpython.pyport cimport PY_SSIZE_T_MAX
include "_clock.pxi"  # _monotonic(): time.monotonic() in C

cdef enum:
    MIN_CLOCK_STRIDE = 64  # operations between two readings of the clock for a deadline (see _pace)
    MAX_CLOCK_STRIDE = 1024
cdef double CLOCK_PACE = 0.1  # seconds: about how often the clock is read, and how late a deadline may be met

cdef enum:
    WINDOW = 0
    PROBATION = 1
    PROTECTED = 2

include "_layout.pxi"  # CACHE_GHOST_BANDS, CACHE_PROBATION_SHARE: one definition, in layout.py
include "_cache_lock.pxi"  # CacheLock: the cache's own lock
include "_cache_sketch.pxi"  # Sketch: access frequencies, for admission

cdef enum: EAGER_SKETCH = 65536  # capacities up to this get their sketch (<= 1 MB) with their first entry
cdef enum: CATCH_UP_STEPS = 8  # moves and evictions each operation makes while a gradual resize is not done
cdef enum: MARKER_STEPS = 64  # links the deep-hit marker moves at each get while it is not at its depth
cdef long long NEVER = 0x7FFFFFFFFFFFFFFF
cdef Py_ssize_t ALL_STEPS = PY_SSIZE_T_MAX  # a resize done at once
STEPS_PER_OPERATION = CATCH_UP_STEPS  # (their Python names)
MARKER_LINKS_PER_GET = MARKER_STEPS
COUNTERS_HALVED_PER_GET = AGE_SLICE
include "_cache_loading.pxi"  # _Loading: a load in flight, which callers of its key wait for

cdef object _MISSING = object()
cdef object _short = reprlib.Repr()  # arguments in an error message: long ones cut
cdef double DEFAULT_LOAD_WAIT_S = 10.0  # how long a caller waits for another's load of its key, by default
cdef enum:
    INITIAL_SLOTS = 64  # slots (and ghost ring positions) a new cache starts with


cdef void* _regrow(void* block, size_t size) except NULL:
    """``realloc``, or MemoryError (the block is then untouched)."""
    cdef void* grown = realloc(block, size)
    if grown == NULL:
        raise MemoryError("cannot grow the cache's arrays")
    return grown
cdef double PROTECTED_SHARE = 1.0 - CACHE_PROBATION_SHARE  # of the main area, as in Caffeine
cdef enum:
    GHOST_BANDS = CACHE_GHOST_BANDS


@cython.final  # never subclassed: its C methods are called directly, and may be inlined
cdef class CacheCore:
    """W-TinyLFU with a movable window, and a ghost list; see the module docstring."""

    cdef dict _index
    cdef list _keys
    cdef list _values
    cdef Py_ssize_t* _prev
    cdef Py_ssize_t* _next
    cdef Py_ssize_t* _free
    cdef uint8_t* _segment  # per slot: WINDOW, PROBATION or PROTECTED
    cdef Py_ssize_t _nfree
    cdef Py_ssize_t _slots  # slots allocated: they grow with the entries held, up to max_capacity + 1
    cdef Py_ssize_t _head[3]
    cdef Py_ssize_t _tail[3]
    cdef Py_ssize_t _count_in[3]
    cdef readonly Py_ssize_t window_capacity
    cdef Py_ssize_t _protected_capacity
    cdef double _share  # the window's share as set (window_capacity rounds it)
    cdef readonly Py_ssize_t size
    cdef readonly Py_ssize_t capacity
    cdef readonly Py_ssize_t max_capacity
    cdef dict _ghost  # key -> its position in the ring
    cdef list _ring_keys  # the ring holds the ghost keys (so the dict never drops the last reference)
    cdef long long* _ring_code  # per ring position: eviction number << 1 | from main; -1: gone
    cdef Py_ssize_t _ring_head, _ring_len, _ring_size
    cdef uint64_t* _hashes  # per slot: hash(key), for the frequency sketch (admission calls no Python)
    cdef list _dropped  # keys and values released after the lock (finalisers may use the cache)
    cdef list _orphans  # (slot, key) whose key failed as the index was rebuilt: freed as the operation ends
    cdef readonly Py_ssize_t ghost_capacity  # capacity, or 0: no ghost ring (keeps_ghosts off)
    cdef Sketch _sketch
    cdef readonly long long hits, misses, evictions, ghost_hits, rejected, ops
    cdef readonly long long key_faults  # keys whose hash or equality failed, or whose hash changed, when dropped
    cdef readonly long long reentered
    """Gets, puts and loads that went without the cache: the calling thread was inside one of the
    cache's own operations (a finaliser, a key's ``__hash__``), whose lock it cannot wait for."""
    cdef readonly long long load_wait_timeouts
    """Waits of ``load_wait_s`` that ran out: for a key's first load, given up (the waiter loads the
    key anew, stored; what the given-up load returns later is not stored); for the load that replaced
    one, not given up again (the waiter loads for itself, uncached)."""
    cdef double _load_wait_s
    cdef long long _hits_in[3]  # gets that hit each segment (probation_hits, protected_hits)
    cdef readonly long long window_deep_hits
    """Hits on window entries at or beyond the window's position ``window_capacity / shrink_step``:
    what a window that much smaller would have missed -- with the window the whole cache (plain
    LRU), exactly what shrinking the cache by that step would lose (LRU's stack property).
    Counted while the marker stands at that position (since ``deep_since``)."""
    cdef long long* _stamp  # per slot: when it last went to the window's head (the window is in stamp order)
    cdef long long _clock  # the last stamp given
    cdef double _shrink_step  # 0: the deep hits are not followed
    cdef Py_ssize_t _depth  # the window position the marker belongs at (0: not followed)
    cdef Py_ssize_t _marker_at  # the window position it stands at (moving to _depth: see _move_marker)
    cdef Py_ssize_t _marker  # the slot at window position _marker_at (-1: the window holds no more than that)
    cdef readonly long long deep_since
    """The ``ops`` count since which the marker has stood at its depth, and ``window_deep_hits``
    counted (2**63 - 1 while it is still moving there: a few thousand gets at most)."""
    cdef long long _ghost_ages[2][GHOST_BANDS]
    cdef Py_ssize_t _ghost_from[2]  # ghost keys evicted from the window, from main
    cdef bint _count_always, _counting  # _counting: the window is not the whole cache, or _count_always
    cdef double _next_time
    cdef long long _next_at
    cdef long long _check_at  # the operation count at which the slow check runs: one compare a get (0:
                              # every get, while a gradual resize is caught up with)
    cdef long long _planned_at  # ... what it is for the interval and the clock alone
    cdef long long _clock_stride  # a power of two: the clock is read every this many operations...
    cdef double _clock_read  # ...paced to once every CLOCK_PACE seconds or so (see _pace)
    cdef long long _scheduled_at  # ops when the next interval was scheduled
    cdef public object on_interval
    cdef dict _loading  # key -> _Loading, while that key is being loaded
    cdef CacheLock _lock

    def __cinit__(self, Py_ssize_t capacity, Py_ssize_t max_capacity):
        # Memory follows the entries held, not the limits: the slot arrays and the ghost
        # ring start small and grow by half as they fill (amortised O(1)), the frequency sketch
        # is made with the first entry for a small cache, else when it first gets half full --
        # before that nothing is evicted, so nothing needs admitting (Caffeine waits the same way).
        if capacity < 1 or max_capacity < capacity:
            raise ValueError("need 1 <= capacity <= max_capacity")
        lock_init(&self._lock)
        self._check_at = 0x7FFFFFFFFFFFFFFF  # no interval hook until one is scheduled
        self._clock_stride = MIN_CLOCK_STRIDE
        self.max_capacity = max_capacity
        self._grow_slots(min(max_capacity + 1, INITIAL_SLOTS))  # a new key is placed before the
        self._grow_ring(min(max_capacity, INITIAL_SLOTS))        # eviction it causes: +1
        self._empty()
        memset(self._ghost_ages, 0, sizeof(self._ghost_ages))
        self.capacity = capacity
        self.window_capacity = capacity  # plain LRU until resize() moves the window
        self._share = 1.0
        self._protected_capacity = 0
        self.ghost_capacity = capacity
        self._load_wait_s = DEFAULT_LOAD_WAIT_S

    cdef int _grow_slots(self, Py_ssize_t slots) except -1:
        """Room for ``slots`` slots; the new ones go on the free stack (taken lowest first).
        A failed allocation leaves the cache as it was (an array may just be larger)."""
        cdef Py_ssize_t i, old = self._slots
        if slots <= old:
            return 0
        self._prev = <Py_ssize_t*> _regrow(self._prev, slots * sizeof(Py_ssize_t))
        self._next = <Py_ssize_t*> _regrow(self._next, slots * sizeof(Py_ssize_t))
        self._free = <Py_ssize_t*> _regrow(self._free, slots * sizeof(Py_ssize_t))
        self._segment = <uint8_t*> _regrow(self._segment, slots)
        self._hashes = <uint64_t*> _regrow(self._hashes, slots * sizeof(uint64_t))
        self._stamp = <long long*> _regrow(self._stamp, slots * sizeof(long long))
        if self._keys is None:
            self._keys, self._values = [], []
        self._keys.extend([None] * (slots - old))
        self._values.extend([None] * (slots - old))
        for i in range(slots - 1, old - 1, -1):
            self._free[self._nfree] = i
            self._nfree += 1
        self._slots = slots
        return 0

    cdef int _grow_ring(self, Py_ssize_t ring_size) except -1:
        """Room for ``ring_size`` ghosts. The ghosts stay where they are, but for one part of a
        wrapped ring -- the smaller that can move -- so that few of their dict entries are
        rewritten: none as the ring first fills (it wraps only once full at ``ghost_capacity``)."""
        cdef Py_ssize_t old_size = self._ring_size, head = self._ring_head
        cdef Py_ssize_t wrapped = head + self._ring_len - old_size  # ghosts past the array's end, at its start
        if ring_size <= old_size:
            return 0
        self._ring_code = <long long*> _regrow(self._ring_code, ring_size * sizeof(long long))
        if self._ring_keys is None:
            self._ring_keys = [None] * ring_size
        else:
            self._ring_keys.extend([None] * (ring_size - old_size))
        self._ring_size = ring_size
        if wrapped > 0:
            if old_size + wrapped <= ring_size and wrapped <= old_size - head:
                self._move_ghosts(0, old_size, wrapped)  # the newer part, on after the older
            else:  # the older part, to the end of the array
                self._ring_head = ring_size - (old_size - head)
                self._move_ghosts(head, self._ring_head, old_size - head)
        return 0

    cdef int _move_ghosts(self, Py_ssize_t source, Py_ssize_t target, Py_ssize_t count) except -1:
        """Move ``count`` ring positions from ``source`` on to ``target`` on (higher: copied from the
        last, so the two may overlap), and the ghosts' dict entries with them."""
        cdef Py_ssize_t i
        cdef long long code
        cdef object key
        cdef list broken = []
        for i in range(count - 1, -1, -1):
            code = self._ring_code[source + i]
            key = self._ring_keys[source + i]
            self._ring_keys[source + i] = None
            self._ring_keys[target + i] = key
            self._ring_code[target + i] = code
            if code >= 0:
                try:
                    self._ghost[key] = target + i  # the key is in the dict already: no new entry
                except Exception:  # its hash or equality fails now: no longer a ghost
                    self.key_faults += 1
                    self._ghost_from[code & 1] -= 1
                    self._ring_code[target + i] = -1
                    broken.append((key, source + i))  # its entry still holds the old position
        if broken:
            self._dropped.append(self._ghost)
            self._ghost = self._without(self._ghost, broken)
        return 0

    cdef int _empty(self) except -1:
        """No entries, no ghosts: every slot free, the lists and the ring empty (set afresh,
        not walked, so this also repairs lists an interrupted operation left half-linked)."""
        cdef Py_ssize_t i, slots = self._slots
        for i in range(slots):
            self._free[i] = slots - 1 - i
        self._nfree = slots
        self._index = {}
        self._keys = [None] * slots
        self._values = [None] * slots
        self._ghost = {}
        self._ring_keys = [None] * self._ring_size
        self._ring_head = self._ring_len = 0
        self._ghost_from[0] = self._ghost_from[1] = 0
        for i in range(3):
            self._head[i] = self._tail[i] = -1
            self._count_in[i] = 0
        self.size = 0
        self._marker = -1
        self._dropped = []
        self._orphans = []
        self._loading = {}
        return 0

    def __dealloc__(self):
        free(self._prev)
        free(self._next)
        free(self._free)
        free(self._segment)
        free(self._hashes)
        free(self._stamp)
        free(self._ring_code)
        sketch_free(&self._sketch)
        lock_free(&self._lock)

    # -- locking and the linked list (the lock: _cache_lock.pxi) ----------------------
    cdef inline int _acquire(self) except -1:
        if lock_acquire(&self._lock):  # this thread holds it, mid-operation: see reentry_error
            reentry_error()
        return 0

    cdef inline void _release(self) noexcept:
        lock_release(&self._lock)

    cdef inline list _take_dropped(self):
        # under the lock: hand the released objects to the caller, who lets go of them
        # after releasing the lock
        cdef list dropped = self._dropped
        if dropped:
            self._dropped = []
        return dropped

    cdef inline void _unlink(self, Py_ssize_t slot) noexcept:
        cdef uint8_t seg = self._segment[slot]
        cdef Py_ssize_t p = self._prev[slot], n = self._next[slot]
        if seg == WINDOW and self._marker >= 0:
            # an entry in front of the marker (or the marker itself) leaves: the one behind moves up to its position
            if slot == self._marker or self._stamp[slot] > self._stamp[self._marker]:
                self._marker = self._next[self._marker]
        if p >= 0:
            self._next[p] = n
        else:
            self._head[seg] = n
        if n >= 0:
            self._prev[n] = p
        else:
            self._tail[seg] = p
        self._count_in[seg] -= 1

    cdef inline void _push_front(self, Py_ssize_t slot, uint8_t seg) noexcept:
        self._segment[slot] = seg
        self._prev[slot] = -1
        self._next[slot] = self._head[seg]
        if self._head[seg] >= 0:
            self._prev[self._head[seg]] = slot
        self._head[seg] = slot
        if self._tail[seg] < 0:
            self._tail[seg] = slot
        self._count_in[seg] += 1
        if seg == WINDOW:
            # always stamped (a store): the window stays in stamp order, so the marker can start
            # following at any time without restamping it
            self._clock += 1
            self._stamp[slot] = self._clock
            if self._depth:  # everything moves one position back: the marker's predecessor is now at its position
                if self._marker >= 0:
                    self._marker = self._prev[self._marker]
                elif self._count_in[WINDOW] == self._marker_at + 1:
                    self._marker = self._tail[WINDOW]

    cdef inline void _touch(self, Py_ssize_t slot, bint hit) noexcept:
        """A use (``hit``: a get, else a put over the key): most recent in its list; from
        probation, promoted to protected."""
        cdef uint8_t seg = self._segment[slot]
        cdef Py_ssize_t demoted
        self._hits_in[seg] += hit
        if seg == PROBATION:
            self._unlink(slot)
            self._push_front(slot, PROTECTED)
            if self._count_in[PROTECTED] > self._protected_capacity:
                demoted = self._tail[PROTECTED]
                self._unlink(demoted)
                self._push_front(demoted, PROBATION)
        elif slot != self._head[seg]:
            if hit and self._marker >= 0 and seg == WINDOW and self._stamp[slot] <= self._stamp[self._marker] \
                    and self._marker_at == self._depth:  # (not at a depth it passes on its way there)
                self.window_deep_hits += 1  # a get only: a put over the key is no hit a smaller window loses
            self._unlink(slot)
            self._push_front(slot, seg)

    @property
    def probation_hits(self):
        """Hits on main's probation segment: its least valuable fifth, what shrinking would lose."""
        return self._hits_in[PROBATION]

    @property
    def protected_hits(self):
        """Hits on main's protected segment: the keys the frequency filter keeps (their fall tells
        that the popular keys changed)."""
        return self._hits_in[PROTECTED]

    # -- operations -------------------------------------------------------------------
    @property
    def next_interval_at(self):
        """``ops`` count at which the ``on_interval`` hook runs next (0: never)."""
        return self._next_at

    @next_interval_at.setter
    def next_interval_at(self, long long value):
        self._next_at = value
        self._scheduled_at = self.ops
        self._plan_check()

    @property
    def clock_stride(self):
        """Gets between two readings of the clock while a deadline is set (64 to 1,024: see ``_pace``)."""
        return self._clock_stride

    @property
    def next_interval_time(self):
        """``monotonic()`` time after which the hook runs, within about 0.1 s (0: never; read
        only while ``next_interval_at`` is set; the clock is read every 64th to 1,024th
        operation, paced to the cache's rate)."""
        return self._next_time

    @next_interval_time.setter
    def next_interval_time(self, double value):
        self._next_time = value
        self._plan_check()

    cdef inline void _plan_check(self) noexcept:
        # a get compares its count with _check_at, nothing else: the next interval's count, or,
        # when a deadline is set, the next multiple of the clock stride (the clock is read there);
        # while a gradual resize is caught up with, every get (it makes a few steps: see _tick)
        if not self._next_at:
            self._planned_at = 0x7FFFFFFFFFFFFFFF
        elif self._next_time:
            self._planned_at = min(self._next_at, (self.ops | (self._clock_stride - 1)) + 1)
        else:
            self._planned_at = self._next_at
        self._check_at = 0 if self._behind() else self._planned_at

    cdef inline bint _behind(self) noexcept:
        """Work left that every get does a share of (see _tick): a gradual resize, the marker's move
        to a new depth, a halving of the sketch."""
        return self._over() or self._marker_at != self._depth or self._sketch.to_halve != 0

    cdef inline bint _over(self) noexcept:
        """Over the bounds the last resize set: a gradual resize not done yet (or an eviction an
        exception interrupted)."""
        return (self.size > self.capacity or self._count_in[WINDOW] > self.window_capacity
                or self._count_in[PROTECTED] > self._protected_capacity)

    cdef inline void _pace(self, double now) noexcept:
        # Reading the clock every 64 gets costs a busy cache ~1 % of a hit. So the stride follows
        # the rate: it doubles while the clock is read more often than every CLOCK_PACE / 4 s
        # (and the interval has run 16 strides: a short burst does not stretch it), and when
        # reads are more than CLOCK_PACE apart, halves as often as it takes to read within it
        # again at the rate just seen. Capped, a deadline after a busy spell is late by at
        # most MAX_CLOCK_STRIDE gets, once.
        cdef double gap = now - self._clock_read
        if (gap < CLOCK_PACE / 4 and self._clock_stride < MAX_CLOCK_STRIDE
                and self.ops - self._scheduled_at >= 16 * self._clock_stride):
            self._clock_stride *= 2
        while gap > CLOCK_PACE and self._clock_stride > MIN_CLOCK_STRIDE:
            self._clock_stride //= 2
            gap /= 2
        self._clock_read = now

    cdef int _tick(self) except -1:
        # the slow path of a get whose count reached _check_at: a step of a gradual resize, the
        # clock, the interval's end
        cdef bint due
        cdef double now
        cdef list dropped
        if self._behind():
            if self._over():
                self._rebalance(CATCH_UP_STEPS, self.size)
            if self._marker_at != self._depth:
                self._move_marker(MARKER_STEPS)
            if self._sketch.to_halve:
                sketch_halve(&self._sketch)
            self._plan_check()
            dropped = self._take_dropped()
            if dropped:  # let go of them after the lock (a finaliser may use the cache)
                self._release()
                dropped = None
                self._acquire()
            if self.ops < self._planned_at:
                return 0
        due = self.ops >= self._next_at
        if not due and self._next_time:
            now = _monotonic()
            due = now >= self._next_time
            self._pace(now)
        if due:
            if self.on_interval is None:
                return 0
            self._next_at = 0  # the hook sets the next ones
            self._next_time = 0.0
            self._plan_check()
            self._release()
            try:
                self.on_interval()
            finally:
                self._acquire()
        else:
            self._plan_check()
        return 0

    def get(self, key, default=None):
        """The value for ``key`` (and it becomes most recent), or ``default``."""
        return self._get(key, default)

    cdef inline object _get(self, object key, object default):
        cdef object slot_obj, value, position
        cdef long long band, code
        cdef Py_ssize_t slot
        if lock_acquire(&self._lock):  # inside one of this cache's operations (a finaliser): a miss
            self.reentered += 1
            return default
        try:
            slot_obj = self._index.get(key)
            if slot_obj is None:
                position = self._ghost.get(key)
                if self._counting and sketch_count(&self._sketch, <uint64_t> hash(key)):
                    self._age()
                self.misses += 1
                if position is not None:
                    self.ghost_hits += 1
                    code = self._ring_code[<Py_ssize_t> position]
                    band = (self.evictions - (code >> 1)) * GHOST_BANDS // self.capacity
                    if band < GHOST_BANDS:
                        self._ghost_ages[code & 1][band] += 1
                value = default
            else:
                slot = <Py_ssize_t> slot_obj
                self._touch(slot, True)
                self.hits += 1
                if self._counting and sketch_count(&self._sketch, self._hashes[slot]):
                    self._age()
                value = self._values[slot]
            self.ops += 1
            if self.ops >= self._check_at:
                self._tick()
            return value
        finally:
            self._release()

    def get_or_load(self, key, loader):
        """The value for ``key``, or ``loader(key)`` -- called outside the lock, once while
        concurrent callers of the same key wait for it -- stored and returned."""
        if not callable(loader):  # before the lookup: the same call fails the same way, hit or miss
            raise TypeError(f"loader must be callable, got {loader!r}")
        cdef object value = self._get(key, _MISSING)
        if value is _MISSING:
            return self._load(key, loader, (key,), None)
        return value

    cdef object _load(self, object key, object loader, tuple args, dict kwargs):
        """A missed ``key``: load it with ``loader(*args, **kwargs)``, or wait for the load
        already running -- ``load_wait_s`` at most, then give that load up and load the key
        anew (see _cache_loading.pxi)."""
        cdef _Loading loading, late = None  # late: a load this caller waited load_wait_s for
        cdef object slot_obj, greenlet = _current_greenlet()
        cdef bint leader, alone, replacing
        cdef double deadline = 0.0
        while True:
            leader = alone = False
            if lock_acquire(&self._lock):  # inside one of this cache's operations: its miss is counted
                return _call(loader, args, kwargs)
            try:
                slot_obj = self._index.get(key)
                if slot_obj is not None:  # loaded and stored since the miss
                    return self._values[<Py_ssize_t> slot_obj]
                loading = self._loading.get(key)
                replacing = loading is not None and loading is late
                if replacing:  # still running: given up, this caller leads the load that replaces it
                    self._give_up(key, loading)
                    loading = None
                if loading is None:
                    loading = _Loading.__new__(_Loading)
                    loading.owner = THREAD_ID()
                    loading.greenlet = greenlet
                    loading.replacement = replacing
                    self._loading[key] = loading
                    leader = True
                elif loading.owner == THREAD_ID():
                    if loading.greenlet is greenlet:
                        raise RuntimeError(_calling_itself(key, loader, args, kwargs))
                    # another greenlet of this thread leads (gevent, SQLAlchemy's asyncio bridge): waiting
                    # on its gate would block the thread, and the leader with it -- this one loads too
                    alone = True
                elif not loading.gate:
                    loading.gate = PyThread_allocate_lock()
                    if not loading.gate:
                        raise MemoryError("cannot allocate a lock to wait for a load")
                    PyThread_acquire_lock(loading.gate, WAIT_LOCK)  # closed until the load is in
            finally:
                self._release()
            if alone:
                return self._call_loader(key, loader, args, kwargs, loading)
            if leader:
                return self._lead(key, loader, args, kwargs, loading)
            if deadline == 0.0:
                deadline = _monotonic() + self._load_wait_s
            if not loading_wait(loading, deadline):
                if loading.replacement:  # a replacement is not given up (loads of a backend slower than
                    # load_wait_s would replace each other and none be stored): this caller loads for
                    # itself, uncached, and the replacement is stored when it ends
                    self._acquire()
                    self.load_wait_timeouts += 1
                    self._release()
                    return _call(loader, args, kwargs)
                late = loading  # still running: given up next time round (unless it ended, or
                deadline = 0.0  # another waiter gave it up)
                continue
            if loading.abandoned or loading.given_up:
                deadline = 0.0  # a new load of the key (or this caller's own): a new wait
                continue  # its leader was interrupted, or it was given up: loaded anew, one caller at a time
            if loading.error is not None:
                _raise_shared(loading.error)
            return loading.value

    cdef int _give_up(self, object key, _Loading loading) except -1:
        """Under the lock: a caller waited ``load_wait_s`` for ``loading``, the key's load in flight:
        superseded (whatever it returns is not stored: it read the data before the load that replaces
        it), counted, and its other waiters let through -- to the load that replaces it, not to load
        the key each for itself."""
        self._supersede(key)
        loading.given_up = True
        self.load_wait_timeouts += 1
        loading_open(loading)
        return 0

    cdef object _lead(self, object key, object loader, tuple args, dict kwargs, _Loading loading):
        """Load ``key`` for ``loading``'s waiters: they get its value or its ``Exception``; any other
        exception (KeyboardInterrupt, SystemExit) is this caller's alone, and one waiter loads anew."""
        cdef list dropped
        try:
            value = self._call_loader(key, loader, args, kwargs, loading)
            loading.value = value
            return value
        except BaseException as exc:
            if isinstance(exc, Exception):
                loading.error = exc
            else:
                loading.abandoned = True
            raise
        finally:
            self._acquire()
            try:
                self._end_load(key, loading)
            finally:
                loading_open(loading)
                dropped = self._take_dropped()
                self._release()

    cdef object _call_loader(self, object key, object loader, tuple args, dict kwargs, _Loading loading):
        """``loader``'s value, stored unless a write or removal of the key superseded ``loading``."""
        cdef object value = _call(loader, args, kwargs)
        self._put(key, value, loading)
        return value

    cdef int _end_load(self, object key, _Loading loading) except -1:
        """Under the lock: ``loading`` is over; its entry goes -- by identity if its key fails now
        or was mutated while it loaded (the dict cannot find it): an entry left behind made the
        key's later callers wait for good, or raise as if called from inside their own loader."""
        try:
            if self._loading.get(key) is loading:
                del self._loading[key]
                return 0
        except Exception:
            pass
        for other in self._loading.values():  # superseded (gone), or no longer found by its key
            if other is loading:
                self._dropped.append(self._loading)  # released after the lock (it holds the keys)
                self._loading = self._without(self._loading, [(key, loading)])
                self.key_faults += 1
                break
        return 0

    def put(self, key, value):
        """Store ``value`` (a new key enters the window); returns True. A load of ``key`` in
        flight is superseded: the value it read before this write is not stored."""
        return self._put(key, value, None)

    cdef object _put(self, object key, object value, _Loading loading):
        """Store ``value``; ``loading``: the load it comes from, whose leader stores it unless a
        write or removal of the key superseded it (then nothing is stored: returns False)."""
        cdef list dropped  # released when this call returns, after the lock
        if lock_acquire(&self._lock):  # inside one of this cache's operations (a finaliser): skipped
            self.reentered += 1
            return False
        try:
            if loading is not None and loading.superseded:
                return False
            return self._store(key, value, loading is None)
        finally:
            dropped = self._take_dropped()
            self._release()

    cdef object _store(self, object key, object value, bint supersede):
        """``_put`` under the lock (``supersede``: the key's load in flight, if any, is superseded)."""
        cdef object slot_obj, position
        cdef Py_ssize_t slot, limit
        cdef uint64_t h
        # Every step that may call the key's __hash__/__eq__ comes before the
        # step that changes anything, so an exception leaves the cache whole.
        h = <uint64_t> hash(key)
        slot_obj = self._index.get(key)
        if supersede and self._loading:
            self._supersede(key)
        if slot_obj is not None:
            slot = <Py_ssize_t> slot_obj
            self._dropped.append(self._values[slot])
            self._values[slot] = value
            self._touch(slot, False)
            if self._over():  # a gradual resize's step (or what an exception interrupted)
                self._rebalance(CATCH_UP_STEPS, self.size)
            return True
        if self._nfree == 0:  # before anything changes: this may fail (MemoryError)
            self._grow_slots(min(self.max_capacity + 1, self._slots + self._slots // 2))
        position = self._ghost.pop(key, None)
        if position is not None:
            self._forget_ghost(<Py_ssize_t> position)
        limit = max(self.capacity, self.size)  # the size after: capacity, or while a gradual shrink
        slot = self._free[self._nfree - 1]     # is caught up with, no more than before
        self._index[key] = slot
        self._nfree -= 1
        self._keys[slot] = key
        self._values[slot] = value
        self._hashes[slot] = h
        self._push_front(slot, WINDOW)
        self.size += 1
        if self._sketch.cells == NULL and (self.capacity <= EAGER_SKETCH or 2 * self.size >= self.capacity):
            # at the first entry where it is small (a short trace needs every early count), else
            # when half full: admission is coming, and an empty large cache holds no sketch
            sketch_init(&self._sketch, self.capacity)
        self._rebalance(CATCH_UP_STEPS, limit)
        return True

    cdef int _supersede(self, object key) except -1:
        """A write or removal of ``key``: its load in flight, if any, must not store the value it
        read before (its callers still get it), and later callers load anew."""
        cdef _Loading loading = self._loading.pop(key, None)
        if loading is not None:
            loading.superseded = True
        return 0

    cdef int _rebalance(self, Py_ssize_t steps, Py_ssize_t limit) except -1:
        """Move window overflow into main (admission decides who stays), demote protected's, and
        evict to fit: ``steps`` moves and evictions at most (the rest: see ``_tick``), but as many
        evictions as it takes to bring the size down to ``limit``."""
        cdef Py_ssize_t candidate, victim
        cdef Py_ssize_t main_quota = self.capacity - self.window_capacity
        while self._count_in[WINDOW] > self.window_capacity and steps > 0:
            steps -= 1
            candidate = self._tail[WINDOW]
            if self._count_in[PROBATION] + self._count_in[PROTECTED] < main_quota:
                self._unlink(candidate)
                self._push_front(candidate, PROBATION)
                continue
            victim = self._main_victim()
            if victim >= 0 and sketch_frequency(&self._sketch, self._hashes[candidate]) > sketch_frequency(&self._sketch, self._hashes[victim]):
                self._evict(victim)  # first: it may raise, and then nothing has moved
                self._unlink(candidate)
                self._push_front(candidate, PROBATION)
            else:
                self._evict(candidate)
                if main_quota:
                    self.rejected += 1
        while self._count_in[PROTECTED] > self._protected_capacity and steps > 0:  # after a resize
            steps -= 1
            victim = self._tail[PROTECTED]
            self._unlink(victim)
            self._push_front(victim, PROBATION)
        while self.size > self.capacity and (steps > 0 or self.size > limit):  # after a resize: main first
            steps -= 1
            victim = self._main_victim()
            self._evict(victim if victim >= 0 else self._tail[WINDOW])
        if self._orphans:
            self._free_orphans()
        if self._check_at == 0 or self._over():  # a gradual resize: gets help until it is done
            self._plan_check()
        return 0

    cdef int _free_orphans(self) except -1:
        """Free the slots whose keys failed while the index was rebuilt (see ``_unmap``): out of
        the index already, they leave the lists once the operation that found them is done
        with its own (an eviction in progress may hold one as its candidate)."""
        cdef list orphans = self._orphans
        self._orphans = []
        for slot, key in orphans:
            if self._keys[<Py_ssize_t> slot] is key:  # not dropped meanwhile
                self._free_slot(<Py_ssize_t> slot)
        return 0

    cdef inline Py_ssize_t _main_victim(self) noexcept:
        """Main's least valuable entry: probation's least recent, else protected's (-1: main is empty)."""
        return self._tail[PROBATION] if self._count_in[PROBATION] > 0 else self._tail[PROTECTED]

    cdef int _evict(self, Py_ssize_t slot) except -1:
        """Drop ``slot`` and remember its key in the ghost ring (the oldest ghost makes room)."""
        cdef object key = self._keys[slot]
        cdef long long origin = 0 if self._segment[slot] == WINDOW else 1
        cdef Py_ssize_t position
        cdef long long faults
        if self._ring_len == self._ring_size and self._ring_len < self.ghost_capacity:
            self._grow_ring(min(self.max_capacity, self._ring_size + self._ring_size // 2))  # before anything changes
        faults = self.key_faults
        self._drop(slot)
        self.evictions += 1
        if self.key_faults != faults or not self.ghost_capacity:  # a key the dict could not find, or no
            return 0                                                 # ghosts kept: no ghost of it
        if self._ring_len >= self.ghost_capacity and self._ring_len:
            self._drop_oldest_ghost()
            if self._ring_len >= self.ghost_capacity:  # after a shrink: two out per one in, not all at once
                self._drop_oldest_ghost()
        position = (self._ring_head + self._ring_len) % self._ring_size
        try:
            self._ghost[key] = position
        except Exception:  # the key's hash or equality fails now: it is simply not a ghost
            self.key_faults += 1
            self._dropped.append(key)
            return 0
        self._ring_keys[position] = key
        self._ring_code[position] = (self.evictions << 1) | origin
        self._ring_len += 1
        self._ghost_from[origin] += 1
        return 0

    cdef int _drop_oldest_ghost(self) except -1:
        cdef Py_ssize_t position = self._ring_head
        cdef object key = self._ring_keys[position]
        if self._ring_code[position] >= 0:
            self._unmap(self._ghost, key, position)
            self._forget_ghost(position)
        self._dropped.append(key)  # the ring held the last reference: released after the lock
        self._ring_keys[position] = None
        self._ring_head = (position + 1) % self._ring_size
        self._ring_len -= 1
        return 0

    cdef int _unmap(self, dict table, object key, Py_ssize_t at) except -1:
        """Remove ``key``, mapped to ``at``, from ``table`` (the index or the ghosts). A key whose
        hash or equality fails now, or whose hash changed since it was stored (a mutated key),
        cannot be found by the dict -- or finds another entry: the table is then rebuilt without
        that one entry, by identity (O(its size), on this path only), and it is counted in
        ``key_faults``. One broken key must not break the cache for every other."""
        cdef object found, other
        cdef bint index = table is self._index
        try:
            found = table.pop(key)
        except Exception:
            found = None
        if found is not None and <Py_ssize_t> found == at:
            return 0
        rebuilt = self._without(table, [(key, at)])
        if found is not None:  # another entry answered (its key equals the mutated one): it stays
            other = self._keys[<Py_ssize_t> found] if index else self._ring_keys[<Py_ssize_t> found]
            self._keep(rebuilt, other, found, not index)
        if index:
            self._index = rebuilt
        else:
            self._ghost = rebuilt
        self._dropped.append(table)  # released after the lock (it holds the keys too)
        self.key_faults += 1
        return 0

    cdef dict _without(self, dict table, list gone):
        """``table`` (the index, the ghosts or the loads in flight) without the entries ``gone``
        ((key, value) pairs, the key by identity), as a new dict; a key that fails now is left
        out too (see ``_keep``)."""
        cdef dict rebuilt = {}
        cdef bint ghosts = table is self._ghost
        cdef set leaving = {(id(key), at) for key, at in gone}
        for k, v in table.items():  # iterating hashes nothing
            if (id(k), v) not in leaving:
                self._keep(rebuilt, k, v, ghosts)
        return rebuilt

    cdef int _keep(self, dict rebuilt, object k, object v, bint ghosts) except -1:
        try:
            rebuilt[k] = v
        except Exception:  # the key fails now: a ghost is no longer one, a cached entry an orphan
            self.key_faults += 1
            if ghosts:
                self._forget_ghost(<Py_ssize_t> v)
            elif type(v) is not _Loading:  # (a load in flight is no longer waited for: callers load anew)
                self._orphans.append((v, k))  # no longer cached, once the operation is done
        return 0

    cdef inline void _forget_ghost(self, Py_ssize_t position) noexcept:
        """The key at ``position`` is no longer a ghost (asked for again, or aged out)."""
        self._ghost_from[self._ring_code[position] & 1] -= 1
        self._ring_code[position] = -1

    cdef int _drop(self, Py_ssize_t slot) except -1:
        """Take ``slot`` out of the cache (its key and value are released after the lock)."""
        self._unmap(self._index, self._keys[slot], slot)
        self._free_slot(slot)
        return 0

    cdef int _free_slot(self, Py_ssize_t slot) except -1:
        """Unlink ``slot`` (no longer in the index) and free it."""
        self._unlink(slot)
        self._dropped.append(self._keys[slot])
        self._dropped.append(self._values[slot])
        self._keys[slot] = None
        self._values[slot] = None
        self._free[self._nfree] = slot
        self._nfree += 1
        self.size -= 1
        return 0

    def pop(self, key, default=None):
        """Remove ``key``; return its value or ``default``. A load of ``key`` in flight is
        superseded (an invalidation: the value it read is not stored)."""
        cdef list dropped
        self._acquire()
        try:
            slot_obj = self._index.get(key)
            if self._loading:
                self._supersede(key)
            if slot_obj is None:
                return default
            value = self._values[<Py_ssize_t> slot_obj]
            self._drop(<Py_ssize_t> slot_obj)
            if self._orphans:
                self._free_orphans()
            return value
        finally:
            dropped = self._take_dropped()
            self._release()

    def popitem(self):
        """Remove and return the first (key, value) in ``keys_by_recency`` order, atomically and
        without counting it as a use (``MutableMapping.popitem`` gets the key: a hit, a promotion,
        and a race with other threads); KeyError when empty."""
        cdef list dropped
        cdef Py_ssize_t slot = -1
        cdef int seg
        self._acquire()
        try:
            for seg in (WINDOW, PROTECTED, PROBATION):
                slot = self._head[seg]
                if slot >= 0:
                    break
            if slot < 0:
                raise KeyError("popitem(): the cache is empty")
            item = (self._keys[slot], self._values[slot])
            self._drop(slot)
            if self._orphans:
                self._free_orphans()
            return item
        finally:
            dropped = self._take_dropped()
            self._release()

    def setdefault(self, key, default=None):
        """``key``'s value -- a use as a put over it is (recent, not counted as a hit) -- or else
        ``default``, stored as ``put`` stores it; atomically (``MutableMapping.setdefault`` gets,
        then puts: a hit counted, and another thread's put in between overwritten)."""
        cdef list dropped
        cdef Py_ssize_t slot
        self._acquire()
        try:
            slot_obj = self._index.get(key)
            if slot_obj is None:
                self._store(key, default, True)
                return default
            slot = <Py_ssize_t> slot_obj
            self._touch(slot, False)
            return self._values[slot]
        finally:
            dropped = self._take_dropped()
            self._release()

    def contains(self, key):
        self._acquire()
        try:
            return key in self._index
        finally:
            self._release()

    def resize(self, Py_ssize_t capacity, double window_share=-1.0, Py_ssize_t steps=-1):
        """Set the capacity (1..max_capacity) and, optionally, the window's share of it.

        The share is kept when not given; entries are evicted to fit -- all of them now, or with
        ``steps`` >= 0 at most that many moves and evictions now and ``CATCH_UP_STEPS`` at each
        later operation until the cache fits (see the module docstring); the deep-hit marker moves
        to its new depth as far as ``steps`` links now, the rest at later gets. A resize that fails
        (MemoryError: a wider frequency sketch) changes nothing.
        """
        if capacity < 1 or capacity > self.max_capacity:
            raise ValueError(f"capacity must be in 1..{self.max_capacity}, got {capacity}")
        if not window_share <= 1.0:  # NaN too
            raise ValueError(f"window_share must be in (0, 1], got {window_share}")
        cdef list dropped
        cdef Sketch wider
        memset(&wider, 0, sizeof(Sketch))
        self._acquire()
        try:
            if self._sketch.cells != NULL and not sketch_fits(&self._sketch, capacity):
                # a larger cache needs a wider sketch (counts restart): made first, as it may fail; or,
                # where a new cache would have none yet, none until it is half full (see _store)
                if capacity <= EAGER_SKETCH or 2 * self.size >= capacity:
                    sketch_init(&wider, capacity)
                sketch_free(&self._sketch)
                self._sketch = wider
            if window_share <= 0.0:
                window_share = self._share  # kept as a share, so repeated resizes do not drift it
            self._share = window_share
            self.capacity = capacity
            self.ghost_capacity = capacity if self.ghost_capacity else 0  # stays 0 while ghosts are not kept
            self.window_capacity = max(1, min(capacity, <Py_ssize_t> (window_share * capacity + 0.5)))
            self._protected_capacity = <Py_ssize_t> (PROTECTED_SHARE * (capacity - self.window_capacity))
            self._counting = self._count_always or self.window_capacity < capacity
            self._sketch.reset_at = 10 * capacity
            self._rebalance(ALL_STEPS if steps < 0 else steps, max(capacity, self.size))
            self._aim_marker(ALL_STEPS if steps < 0 else steps)
        finally:
            dropped = self._take_dropped()
            self._release()

    @property
    def catching_up(self):
        """Whether a gradual resize is not done yet: the cache holds more than its capacity, or
        the window or protected more than their shares (every operation makes a few steps)."""
        return self._over()

    @property
    def counters_to_halve(self):
        """Counters of the frequency sketch a halving under way has still to halve (``AGE_SLICE``
        a get; 0: none under way)."""
        return self._sketch.to_halve

    @property
    def ghost_keys(self):
        """Evicted keys the ghost ring keeps referenced (up to ``capacity``, until it turns over)."""
        return self._ring_len

    @property
    def shrink_step(self):
        """Follow ``window_deep_hits`` for a window ``shrink_step`` times smaller (0: do not;
        costs a few instructions a hit on the window while set)."""
        return self._shrink_step

    @shrink_step.setter
    def shrink_step(self, double step):
        if not (step == 0.0 or step > 1.0):  # NaN too
            raise ValueError(f"shrink_step must be 0 (off) or above 1, got {step}")
        self._acquire()
        try:
            self._shrink_step = step
            self._aim_marker(MARKER_STEPS)
        finally:
            self._release()

    cdef void _aim_marker(self, Py_ssize_t links) noexcept:
        """Set the marker's depth from the window's capacity and the step, and move it ``links``
        links toward it at most: the rest ``MARKER_STEPS`` a get (see _tick), so a resize or a new
        step never walks a large window under the lock (a 1M-entry window took 20-70 ms)."""
        cdef Py_ssize_t depth = 0
        if self._shrink_step != 0.0:
            depth = max(1, <Py_ssize_t> (self.window_capacity / self._shrink_step))
        if depth != self._depth:
            if not self._depth:  # starting to follow: from the head (the window is in stamp order)
                self._marker, self._marker_at = self._head[WINDOW], 0
            self._depth = depth
            self.deep_since = NEVER
        self._move_marker(links)
        self._plan_check()

    cdef void _move_marker(self, Py_ssize_t links) noexcept:
        """Move the marker toward its depth, ``links`` links at most, from where it stands or from
        the nearer end of the window, whichever is closer."""
        cdef Py_ssize_t depth = self._depth, n = self._count_in[WINDOW], at = self._marker_at
        cdef Py_ssize_t slot = self._marker, here
        if depth == 0 or n <= depth:  # not followed, or the window ends before the depth: no slot there
            slot, at = -1, depth
        else:
            here = abs(at - depth) if slot >= 0 else PY_SSIZE_T_MAX
            if depth < here and depth <= n - 1 - depth:
                slot, at = self._head[WINDOW], 0
            elif n - 1 - depth < here:
                slot, at = self._tail[WINDOW], n - 1
            while at < depth and links > 0:
                slot, at, links = self._next[slot], at + 1, links - 1
            while at > depth and links > 0:
                slot, at, links = self._prev[slot], at - 1, links - 1
        self._marker, self._marker_at = slot, at
        if at == depth and self.deep_since == NEVER:
            self.deep_since = self.ops

    @property
    def count_frequencies(self):
        """Feed the frequency sketch even while the window is the whole cache (an adaptive
        cache may move it back, and then needs recent frequencies)."""
        return self._count_always

    @count_frequencies.setter
    def count_frequencies(self, bint value):
        self._count_always = value
        self._counting = value or self.window_capacity < self.capacity

    def age_frequencies(self):
        """Halve the frequency sketch, as it halves every ``10 * capacity`` counts: when popularity
        has moved, the keys the filter turns away stop losing to stale counts. A small sketch is
        halved now, a large one ``AGE_SLICE`` counters now and as many at each later get."""
        self._acquire()
        try:
            self._age()
        finally:
            self._release()

    cdef void _age(self) noexcept:
        sketch_age(&self._sketch)
        self._plan_check()  # the rest of the halving: a slice a get

    @property
    def window_share(self):
        """The window's share of the capacity: 1.0 is plain LRU, 0.01 is W-TinyLFU
        (``window_capacity`` is it in entries, rounded, at least one)."""
        return self._share

    def keys_by_recency(self):
        """Keys (a snapshot): the window's, then protected's, then probation's, each most
        recent first. With the window the whole cache (plain LRU): most to least recent."""
        return self._snapshot(False, -1)

    def items_by_recency(self, Py_ssize_t limit=-1):
        """(key, value) pairs in ``keys_by_recency`` order, the first ``limit`` (all: -1);
        a snapshot with no effect on recency."""
        return self._snapshot(True, limit)

    cdef list _snapshot(self, bint with_values, Py_ssize_t limit):
        """The first ``limit`` entries (all: -1), read under the lock: the size read before it
        may be another put's old one (a snapshot cut short, missing an entry never removed)."""
        cdef Py_ssize_t slot
        cdef int seg
        out = []
        self._acquire()
        try:
            if limit < 0:
                limit = self.size
            for seg in (WINDOW, PROTECTED, PROBATION):
                slot = self._head[seg]
                while slot >= 0 and len(out) < limit:
                    out.append((self._keys[slot], self._values[slot]) if with_values else self._keys[slot])
                    slot = self._next[slot]
            return out
        finally:
            self._release()

    def clear(self):
        """Drop every entry and the ghost list (statistics stay as they are); loads in flight
        are superseded (their values are not stored)."""
        cdef list dropped
        cdef Py_ssize_t victim
        cdef _Loading loading
        self._acquire()
        try:
            while self.size:
                victim = self._main_victim()
                self._drop(victim if victim >= 0 else self._tail[WINDOW])
            for loading in self._loading.values():  # every load in flight is superseded
                loading.superseded = True
            self._dropped.append(self._loading)
            self._loading = {}
            self._plan_check()  # a gradual resize's catching up is over
            self._orphans = []  # dropped with the rest
            self._forget_ghosts()
        finally:
            dropped = self._take_dropped()
            self._release()

    cdef int _forget_ghosts(self) except -1:
        """Under the lock: empty the ghost ring (its keys are released after the lock)."""
        self._dropped.append(self._ghost)
        self._dropped.append(self._ring_keys)
        self._ghost = {}
        self._ring_keys = [None] * self._ring_size
        self._ring_head = self._ring_len = 0
        self._ghost_from[0] = self._ghost_from[1] = 0
        return 0

    @property
    def keeps_ghosts(self):
        """Whether evicted keys are kept in the ghost ring (``ghost_hits`` and the what-ifs a
        controller reads). Off, the cache keeps no reference to a key once its entry is gone."""
        return self.ghost_capacity != 0  # (capacity is at least 1)

    @keeps_ghosts.setter
    def keeps_ghosts(self, bint value):
        cdef list dropped
        self._acquire()
        try:
            self.ghost_capacity = self.capacity if value else 0
            if not value:
                self._forget_ghosts()
        finally:
            dropped = self._take_dropped()
            self._release()

    @property
    def load_wait_s(self):
        """How long a caller waits for another caller's load of its key (seconds) before it gives
        that load up and loads the key anew, stored (``load_wait_timeouts``): what the load given
        up returns later is not stored, and the key's later callers wait for the new load. The new
        load is not given up in turn: a caller that waits it out loads for itself, uncached."""
        return self._load_wait_s

    @load_wait_s.setter
    def load_wait_s(self, double seconds):
        if not 0.0 < seconds < INFINITY:  # NaN too
            raise ValueError(f"load_wait_s must be a finite number of seconds > 0, got {seconds}")
        self._load_wait_s = seconds

    def _after_fork(self):
        """In a forked child: free the lock another thread of the parent may have held.

        That thread does not exist here, so it would never let go. An operation it was
        in the middle of may have left the lists half-linked: if the lock was held, the
        cache starts empty (statistics stay). Loads other threads had in flight are
        forgotten -- their loaders do not run here, and a caller of their key would wait
        for good; the next one loads it. Returns whether the lock was held.
        """
        cdef bint held = lock_reset_after_fork(&self._lock)
        cdef size_t me = THREAD_ID()
        self._loading = {key: loading for key, loading in self._loading.items()  # (others' keys not hashed)
                         if (<_Loading> loading).owner == me}
        if not held:
            return False
        self._empty()
        return True

    @property
    def structure_bytes(self):
        """Bytes held by the cache's own structures (slot arrays, lists, dicts, ghost ring,
        sketch), not by the keys and values: what an empty cache costs, and what grows."""
        cdef Py_ssize_t total = self._slots * (3 * sizeof(Py_ssize_t) + 1 + sizeof(uint64_t) + sizeof(long long))
        total += self._ring_size * sizeof(long long)
        if self._sketch.cells != NULL:
            total += 4 * (self._sketch.width_mask + 1)
        return total + sum(sys.getsizeof(x) for x in (self._keys, self._values, self._ring_keys,
                                                        self._index, self._ghost, self._loading))

    @staticmethod
    def monotonic():
        """The clock ``next_interval_time`` is read against (seconds)."""
        return _monotonic()

    def check_invariants(self):
        """Raise AssertionError naming the first broken invariant (for tests; walks everything)."""
        cdef Py_ssize_t slot, prev, n, seg, total = 0, slots = self._slots, i, position, marker
        self._acquire()
        try:
            linked = set()
            for seg in range(3):
                n, prev, slot = 0, -1, self._head[seg]
                while slot >= 0:
                    _expect(0 <= slot < slots and slot not in linked, "a slot linked twice or out of range")
                    linked.add(slot)
                    _expect(self._segment[slot] == seg and self._prev[slot] == prev, "a broken link")
                    _expect(self._index.get(self._keys[slot]) == slot, "the index and the lists disagree")
                    _expect(self._hashes[slot] == <uint64_t> hash(self._keys[slot]), "a stale hash")
                    prev, slot, n = slot, self._next[slot], n + 1
                _expect(self._tail[seg] == prev and self._count_in[seg] == n, "a list's tail or count")
                total += n
            _expect(total == self.size == len(self._index), "size")
            _expect(self._nfree + self.size == slots, "the free list's length")
            _expect(not ({self._free[i] for i in range(self._nfree)} & linked), "a linked slot marked free")
            _expect(all(self._keys[i] is None and self._values[i] is None for i in range(slots) if i not in linked),
                    "a free slot still holding a key or value")
            # over capacity, or the window or protected over their shares: only while a gradual
            # resize is caught up with, and then every get makes a few of its steps
            _expect(self.size <= self.capacity or self._check_at == 0, "size over capacity")
            _expect(self._count_in[WINDOW] <= self.window_capacity or self._check_at == 0, "window over its share")
            _expect(self._count_in[PROTECTED] <= self._protected_capacity or self._check_at == 0,
                    "protected over its share")
            n, slot, prev, marker = 0, self._head[WINDOW], -1, -1
            while slot >= 0:
                _expect(prev < 0 or self._stamp[slot] < self._stamp[prev], "window stamps out of order")
                if self._depth and n == self._marker_at:
                    marker = slot
                prev, slot, n = slot, self._next[slot], n + 1
            _expect(self._marker == marker, "the deep-hit marker is not at the position it stands at")
            _expect(self._marker_at == self._depth or self._check_at == 0, "the deep-hit marker left short of its depth")
            _expect(self._sketch.to_halve == 0 or self._check_at == 0, "a halving of the sketch left unfinished")
            origins = [0, 0]
            for i in range(self._ring_len):
                position = (self._ring_head + i) % self._ring_size
                if self._ring_code[position] >= 0:
                    _expect(self._ghost.get(self._ring_keys[position]) == position, "ghost ring and dict disagree")
                    origins[self._ring_code[position] & 1] += 1
            _expect(origins == [self._ghost_from[0], self._ghost_from[1]] == [
                        sum(1 for p in self._ghost.values() if self._ring_code[p] & 1 == o) for o in (0, 1)],
                    "ghost origin counts")
            _expect(not (self._ghost.keys() & self._index.keys()), "a key both cached and a ghost")
        finally:
            self._release()

    def ghost_hits_by_age(self):
        """Ghost hits so far by how long ago the key was evicted, in sixteenths of the
        capacity's evictions: (from the window, from main), 16 counts each. Band 0 is
        the margin a small move changes; bands 0-3 what growing by a quarter would hit."""
        return ([self._ghost_ages[0][i] for i in range(GHOST_BANDS)],
                [self._ghost_ages[1][i] for i in range(GHOST_BANDS)])

    def ghost_hits_within(self, int bands):
        """Ghost hits so far on keys evicted within the first ``bands`` sixteenths of the
        capacity's evictions: (from the window, from main)."""
        cdef long long window = 0, main = 0
        cdef int i
        for i in range(min(max(bands, 0), GHOST_BANDS)):
            window += self._ghost_ages[0][i]
            main += self._ghost_ages[1][i]
        return window, main

    def ghost_origins(self):
        """(keys in the ghost list evicted from the window, from main)."""
        return self._ghost_from[0], self._ghost_from[1]


cdef inline object _call(object function, tuple args, dict kwargs):
    return function(*args, **kwargs) if kwargs else function(*args)


cdef str _calling_itself(object key, object loader, tuple args, dict kwargs):
    """The error for a loader asking for its own key: it would wait for its own result for ever."""
    if kwargs is None:  # get_or_load's
        return f"get_or_load({_short.repr(key)}) called again from inside its own loader"
    name = getattr(loader, "__qualname__", None) or repr(loader)
    arguments = [_short.repr(a) for a in args] + [f"{k}={_short.repr(v)}" for k, v in kwargs.items()]
    return (f"{name}({', '.join(arguments)}) called itself with the same arguments: a memoized "
            f"function cannot wait for its own result")


cdef int _raise_shared(object error) except -1:
    """Raise, in a waiter, a copy of the exception its leader's load raised (``from`` it): raising
    the object itself rewrote the leader's traceback and context. The same type, so a waiter's
    ``except`` still matches it; the object itself where no copy equal to it can be made."""
    cdef object twin = _exception_copy(error)
    if twin is None:
        raise error
    raise twin from error


cdef type _MemberDescriptor = type(OSError.__dict__["errno"])  # a slot's (types.MemberDescriptorType)
cdef tuple _OSERROR_FIELDS = ("errno", "strerror", "filename", "filename2", "characters_written")


cdef object _exception_copy(object error):
    """A copy of ``error`` -- its type, ``args``, ``__dict__`` (with a ``__notes__`` list of its own),
    slots along the MRO and OSError's fields -- checked against it: the same type, ``args``,
    ``str()`` and attributes; None if it cannot be made or is not the same."""
    cdef type kind = type(error)
    cdef list state
    try:
        twin = copy.copy(error)  # by its __reduce__ (a class may know what a copy needs)...
    except Exception:
        twin = None
    try:
        if type(twin) is not kind:  # ...or without its __init__, which may want other arguments
            twin = kind.__new__(kind, *error.args)
        elif getattr(twin, "__dict__", None) is getattr(error, "__dict__", twin):
            # a reducer that hands the original's __dict__ over (tblib's, which Dask's distributed
            # installs for every exception): a note or attribute set on the copy was set on the original
            twin.__dict__ = dict(error.__dict__)
        twin.__traceback__ = None  # (such a reducer hands the original's traceback over too)
        # what a __reduce__ may not rebuild (MaxRetryError's drops its pool and remakes its message),
        # or __new__ not set (an OSError subclass with its own __init__ leaves errno and strerror None)
        twin.args = error.args
        state = _exception_state(error)
        for descriptor, name, value in state:
            if descriptor is None:
                twin.__dict__[name] = value
            elif _field(descriptor, twin) is not value:  # (OSError's filename2 set to None shows in str())
                descriptor.__set__(twin, value)
        notes = twin.__dict__.get("__notes__") if hasattr(twin, "__dict__") else None
        if type(notes) is list:
            twin.__notes__ = list(notes)  # its own: a note a waiter adds is not the leader's
        if type(twin) is not kind or not _same(twin.args, error.args) or str(twin) != str(error):
            return None
        for descriptor, name, value in state:
            if not _same(twin.__dict__.get(name, _MISSING) if descriptor is None else _field(descriptor, twin), value):
                return None
        return twin
    except Exception:  # a class that refuses any of it: no copy
        return None


cdef list _exception_state(object error):
    """(descriptor, name, value) for what an exception holds beside its ``args``: its ``__dict__``
    items (descriptor None), the slots set along its class's MRO, and OSError's fields."""
    cdef list state = []
    cdef object members = getattr(error, "__dict__", None)
    if members:
        for name, value in members.items():
            state.append((None, name, value))
    for klass in type(error).__mro__:
        slots = klass.__dict__.get("__slots__", ())
        for name in ((slots,) if isinstance(slots, str) else slots):
            if name in ("__dict__", "__weakref__"):
                continue  # the dict is copied item by item
            if name.startswith("__") and not name.endswith("__") and klass.__name__.lstrip("_"):
                name = f"_{klass.__name__.lstrip('_')}{name}"  # as Python mangles a private slot
            descriptor = klass.__dict__.get(name)
            if type(descriptor) is _MemberDescriptor:
                _add_field(state, descriptor, name, error)
    if isinstance(error, OSError):
        for name in _OSERROR_FIELDS:
            _add_field(state, OSError.__dict__.get(name), name, error)
    return state


cdef int _add_field(list state, object descriptor, str name, object error) except -1:
    """``error``'s value of the slot or field ``descriptor``, to ``state`` -- if it has one."""
    cdef object value
    if descriptor is not None:
        value = _field(descriptor, error)
        if value is not _MISSING:  # an empty slot stays empty
            state.append((descriptor, name, value))
    return 0


cdef object _field(object descriptor, object error):
    """``error``'s value of the slot or field ``descriptor``, or _MISSING where it is empty."""
    try:
        return descriptor.__get__(error, type(error))
    except AttributeError:
        return _MISSING


cdef bint _same(object a, object b) except -1:
    return a is b or (type(a) is type(b) and bool(a == b))


cdef inline void _expect(bint condition, str what) except *:
    if not condition:
        raise AssertionError(what)


include "_cached_function.pxi"  # CachedFunction: @cached's compiled wrapper
