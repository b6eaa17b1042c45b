# cython: language_level=3
"""Compiled core of the adaptive cache: an LRU list, a ghost list, a frequency sketch.

``CacheCore`` keeps entries in slots: a dict maps each key to its slot, C
arrays link the slots in recency order, and Python lists hold the keys and
values. A hit is one dict lookup and a relink. Evicted keys go to a bounded
ghost list, so the controller can see what a larger cache would have hit. An
optional TinyLFU-style admission filter (a count-min sketch of recent
frequencies) keeps a one-off key from evicting a popular one.

Thread safety: every operation runs under one C-level lock (acquired without
holding up other threads when contended). Do not touch the cache from a key's
``__hash__``/``__eq__``.
"""

from cpython.pythread cimport (
    PyThread_type_lock, PyThread_allocate_lock, PyThread_free_lock,
    PyThread_acquire_lock, PyThread_release_lock, NOWAIT_LOCK, WAIT_LOCK,
)
from libc.stdlib cimport malloc, free
from libc.string cimport memset
from libc.stdint cimport uint64_t, uint8_t


cdef class CacheCore:
    """LRU with ghost list and optional frequency admission; see module docstring."""

    cdef dict _index
    cdef list _keys
    cdef list _values
    cdef Py_ssize_t* _prev
    cdef Py_ssize_t* _next
    cdef Py_ssize_t* _free
    cdef Py_ssize_t _nfree
    cdef Py_ssize_t _head, _tail
    cdef readonly Py_ssize_t size
    cdef readonly Py_ssize_t capacity
    cdef readonly Py_ssize_t max_capacity
    cdef dict _ghost
    cdef readonly Py_ssize_t ghost_capacity
    cdef uint8_t* _sketch
    cdef uint64_t _width_mask
    cdef Py_ssize_t _sketch_adds, _sketch_reset_at
    cdef public bint admission
    """Frequency admission on: a new key must be used more often than the victim."""
    cdef readonly long long hits, misses, evictions, ghost_hits, rejected, ops
    cdef public long long next_interval_at
    """``ops`` count at which the ``on_interval`` hook runs next (0: never)."""
    cdef public object on_interval
    cdef PyThread_type_lock _lock

    def __cinit__(self, Py_ssize_t capacity, Py_ssize_t max_capacity):
        cdef Py_ssize_t i, width = 64
        if capacity < 1 or max_capacity < capacity:
            raise ValueError("need 1 <= capacity <= max_capacity")
        self._lock = PyThread_allocate_lock()
        self._prev = <Py_ssize_t*> malloc(max_capacity * sizeof(Py_ssize_t))
        self._next = <Py_ssize_t*> malloc(max_capacity * sizeof(Py_ssize_t))
        self._free = <Py_ssize_t*> malloc(max_capacity * sizeof(Py_ssize_t))
        while width < 4 * max_capacity:
            width *= 2
        self._sketch = <uint8_t*> malloc(4 * width)
        if not (self._lock and self._prev and self._next and self._free and self._sketch):
            raise MemoryError("cannot allocate the cache's arrays")
        memset(self._sketch, 0, 4 * width)
        self._width_mask = width - 1
        self._sketch_reset_at = 10 * max_capacity
        for i in range(max_capacity):
            self._free[i] = max_capacity - 1 - i
        self._nfree = max_capacity
        self._index = {}
        self._keys = [None] * max_capacity
        self._values = [None] * max_capacity
        self._ghost = {}
        self._head = self._tail = -1
        self.capacity = capacity
        self.max_capacity = max_capacity
        self.ghost_capacity = capacity

    def __dealloc__(self):
        free(self._prev)
        free(self._next)
        free(self._free)
        free(self._sketch)
        if self._lock:
            PyThread_free_lock(self._lock)

    # -- locking and the linked list -----------------------------------------------
    cdef inline void _acquire(self) noexcept:
        if not PyThread_acquire_lock(self._lock, NOWAIT_LOCK):
            with nogil:
                PyThread_acquire_lock(self._lock, WAIT_LOCK)

    cdef inline void _release(self) noexcept:
        PyThread_release_lock(self._lock)

    cdef inline void _unlink(self, Py_ssize_t slot) noexcept:
        cdef Py_ssize_t p = self._prev[slot], n = self._next[slot]
        if p >= 0:
            self._next[p] = n
        else:
            self._head = n
        if n >= 0:
            self._prev[n] = p
        else:
            self._tail = p

    cdef inline void _push_front(self, Py_ssize_t slot) noexcept:
        self._prev[slot] = -1
        self._next[slot] = self._head
        if self._head >= 0:
            self._prev[self._head] = slot
        self._head = slot
        if self._tail < 0:
            self._tail = slot

    # -- frequency sketch (count-min, 4 rows of saturating 8-bit counters) ---------
    cdef inline uint64_t _mix(self, uint64_t h, uint64_t row) noexcept:
        h = (h + row * 0x9E3779B97F4A7C15ULL) * 0xBF58476D1CE4E5B9ULL
        return (h ^ (h >> 31)) & self._width_mask

    cdef inline void _count(self, object key) except *:
        cdef uint64_t h = <uint64_t> hash(key), r
        cdef uint8_t* cell
        cdef Py_ssize_t i, n
        for r in range(4):
            cell = self._sketch + r * (self._width_mask + 1) + self._mix(h, r)
            if cell[0] < 255:
                cell[0] += 1
        self._sketch_adds += 1
        if self._sketch_adds >= self._sketch_reset_at:  # age: halve every counter
            n = 4 * (self._width_mask + 1)
            for i in range(n):
                self._sketch[i] >>= 1
            self._sketch_adds = 0

    cdef inline int _frequency(self, object key) except -1:
        cdef uint64_t h = <uint64_t> hash(key), r
        cdef int best = 255, c
        for r in range(4):
            c = self._sketch[r * (self._width_mask + 1) + self._mix(h, r)]
            if c < best:
                best = c
        return best

    # -- operations -------------------------------------------------------------------
    cdef inline void _tick(self) except *:
        self.ops += 1
        if self.next_interval_at and self.ops >= self.next_interval_at and self.on_interval is not None:
            self.next_interval_at = 0  # the hook sets the next one
            self._release()
            try:
                self.on_interval()
            finally:
                self._acquire()

    def get(self, key, default=None):
        """The value for ``key`` (and it becomes most recent), or ``default``."""
        cdef object slot_obj, value
        cdef Py_ssize_t slot
        self._acquire()
        try:
            slot_obj = self._index.get(key)
            if slot_obj is None:
                self.misses += 1
                if key in self._ghost:
                    self.ghost_hits += 1
                if self.admission:
                    self._count(key)
                value = default
            else:
                slot = <Py_ssize_t> slot_obj
                if slot != self._head:
                    self._unlink(slot)
                    self._push_front(slot)
                self.hits += 1
                if self.admission:
                    self._count(key)
                value = self._values[slot]
            if self.next_interval_at:
                self._tick()
            else:
                self.ops += 1
            return value
        finally:
            self._release()

    def peek(self, key, default=None):
        """The value for ``key`` without touching recency or statistics."""
        self._acquire()
        try:
            slot_obj = self._index.get(key)
            return default if slot_obj is None else self._values[<Py_ssize_t> slot_obj]
        finally:
            self._release()

    def put(self, key, value):
        """Store ``value``; returns False if the admission filter turned the key away."""
        cdef object slot_obj
        cdef Py_ssize_t slot
        self._acquire()
        try:
            slot_obj = self._index.get(key)
            if slot_obj is not None:
                slot = <Py_ssize_t> slot_obj
                self._values[slot] = value
                if slot != self._head:
                    self._unlink(slot)
                    self._push_front(slot)
                return True
            if self.size >= self.capacity:
                if self.admission and self._frequency(key) <= self._frequency(self._keys[self._tail]):
                    self.rejected += 1
                    return False
                self._evict_one()
            slot = self._free[self._nfree - 1]
            self._nfree -= 1
            self._keys[slot] = key
            self._values[slot] = value
            self._index[key] = slot
            self._push_front(slot)
            self.size += 1
            self._ghost.pop(key, None)
            return True
        finally:
            self._release()

    cdef void _evict_one(self) except *:
        cdef Py_ssize_t slot = self._tail
        cdef object key = self._keys[slot]
        self._unlink(slot)
        del self._index[key]
        self._keys[slot] = None
        self._values[slot] = None
        self._free[self._nfree] = slot
        self._nfree += 1
        self.size -= 1
        self.evictions += 1
        self._ghost[key] = None
        while len(self._ghost) > self.ghost_capacity:
            del self._ghost[next(iter(self._ghost))]

    def pop(self, key, default=None):
        """Remove ``key``; return its value or ``default``."""
        cdef Py_ssize_t slot
        self._acquire()
        try:
            slot_obj = self._index.pop(key, None)
            if slot_obj is None:
                return default
            slot = <Py_ssize_t> slot_obj
            value = self._values[slot]
            self._unlink(slot)
            self._keys[slot] = None
            self._values[slot] = None
            self._free[self._nfree] = slot
            self._nfree += 1
            self.size -= 1
            return value
        finally:
            self._release()

    def contains(self, key):
        self._acquire()
        try:
            return key in self._index
        finally:
            self._release()

    def resize(self, Py_ssize_t capacity):
        """Set the capacity (1..max_capacity), evicting least recent entries to fit."""
        if capacity < 1 or capacity > self.max_capacity:
            raise ValueError(f"capacity must be in 1..{self.max_capacity}, got {capacity}")
        self._acquire()
        try:
            while self.size > capacity:
                self._evict_one()
            self.capacity = capacity
            self.ghost_capacity = capacity
        finally:
            self._release()

    def keys_by_recency(self):
        """Keys, most recent first (a snapshot)."""
        cdef Py_ssize_t slot
        out = []
        self._acquire()
        try:
            slot = self._head
            while slot >= 0:
                out.append(self._keys[slot])
                slot = self._next[slot]
            return out
        finally:
            self._release()

    def clear(self):
        """Drop every entry and the ghost list (statistics stay)."""
        self._acquire()
        try:
            while self.size:
                self._evict_one()
            self._ghost.clear()
        finally:
            self._release()

    def ghost_size(self):
        return len(self._ghost)
