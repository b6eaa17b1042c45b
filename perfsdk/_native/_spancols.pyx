# cython: language_level=3
"""Ended spans written straight into column buffers, for the Arrow export.

perfsdk's export used to queue one tuple of plain values a span and build the
Arrow columns from those tuples on its writer thread: an allocation a span (one
more object for the collector's count, which is what starts young collections)
and about 3 us of Python a span on a thread that shares the GIL with the
application. Here an ended span's fields go into preallocated numpy buffers
(ids, times, and codes into a small table of the distinct names, scopes and
services) and its attributes into two flat lists, so the writer's columns are
slices and ``take``s, built in C.

``SpanColumns`` is one chunk of rows (one thread fills it, or a lock guards
it). ``SpanCollector`` is what the application's threads call: it fills the
current chunk under a lock and, once the chunk is full (in rows or in bytes),
moves it to the writer's queue, a list bounded in bytes that the collector
keeps itself. Nothing under the lock runs Python code of perfsdk's or the
writer's (a signal handler that ends a span cannot find the lock held by the
code it interrupted, nor a chunk half handed over); the writer is woken, and
callers wait for room, with the lock released. When the queue has no room, the
full chunk stays and each span that arrives is counted in ``dropped``: every
span is either written or counted.

>>> from opentelemetry.sdk.trace import TracerProvider
>>> provider = TracerProvider()
>>> woken = []
>>> collector = SpanCollector(chunk_rows=2, max_bytes=2**20, wake=lambda: woken.append(1))
>>> for name in ("GET /a", "GET /b", "GET /a"):
...     with provider.get_tracer("t").start_as_current_span(name) as span:
...         pass
...     collector.add(span)
True
True
True
>>> ready = collector.take(4)  # the writer's side
>>> [chunk.size for chunk in ready], collector.current.size, collector.dropped, len(woken)
([2], 1, 0, 1)
>>> [ready[0].strings[code] for code in ready[0].name]
['GET /a', 'GET /b']
>>> collector.done(ready)  # written: its bytes are free again
>>> collector.queued_bytes
0
"""

from cpython.long cimport PyLong_AsUnsignedLongLongMask
from cpython.object cimport PyObject
from cpython.pythread cimport (NOWAIT_LOCK, WAIT_LOCK, PyThread_acquire_lock, PyThread_allocate_lock,
                               PyThread_free_lock, PyThread_get_thread_ident, PyThread_release_lock,
                               PyThread_type_lock)
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t
from libc.string cimport memcpy

import sys
import threading
import time
from collections.abc import Mapping

from opentelemetry.trace import SpanKind, StatusCode

#: The kind and status columns' values, by the codes stored for them.
KIND_NAMES = tuple(kind.name for kind in SpanKind)
STATUS_NAMES = tuple(status.name for status in StatusCode)
cdef tuple _KINDS = tuple(SpanKind)
cdef tuple _STATUSES = tuple(StatusCode)


cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object text)


cdef enum: CHUNK_OVERHEAD = 2048  # a chunk's own objects: its arrays' headers, lists, the codes dict


cdef Py_ssize_t _object_bytes(object value, int depth=0) except -1:
    """What an attribute's value holds in memory, without a call for the common types: a
    sequence or a mapping (OpenTelemetry keeps both) with what it holds, to a depth of 8."""
    cdef type kind = type(value)
    if kind is str:
        if PyUnicode_IS_ASCII(value):
            return 49 + len(<str>value)  # what CPython allocates for ASCII text
        return sys.getsizeof(value)
    if kind is int or kind is float or kind is bool:
        return 32
    if depth < 8:
        if kind is tuple or kind is list:  # a sequence attribute
            return 40 + sum([8 + _object_bytes(item, depth + 1) for item in value])
        if isinstance(value, Mapping):  # a map attribute: its keys and values too
            return sys.getsizeof(value) + sum([_object_bytes(key, depth + 1) + _object_bytes(item, depth + 1)
                                               for key, item in value.items()])
    return sys.getsizeof(value)


cdef inline int32_t _member_code(object member, tuple members):
    """The index of an enum member, by identity (an enum's hash runs in Python); -1 if unknown."""
    cdef Py_ssize_t i
    for i in range(len(members)):
        if member is members[i]:
            return <int32_t>i
    return -1


cdef class SpanColumns:
    """Up to ``capacity`` ended spans, column by column.

    The numpy arrays are the rows' values (read ``[:size]``); ``name``, ``scope``
    and ``service`` are codes into ``strings`` (-1: none), ``kind`` and ``status``
    into ``KIND_NAMES`` and ``STATUS_NAMES``. Row ``i``'s attributes are
    ``keys[attr_ends[i]:attr_ends[i + 1]]`` with their ``values``; ``messages`` holds
    ``(row, status description)`` for the few spans that have one.

    ``nbytes`` is the memory the chunk holds: its column buffers, and its lists and
    their values (each value counted where it appears, so values shared between spans
    are counted more than once: a bound on these bytes errs on the side of less
    memory). Measured rather than assumed, so a bound in bytes holds several times
    more small spans than large ones; kept up to date as each row is stored, so the
    collector bounds the chunk being filled too (a span with a 100 KB SQL statement
    fills a chunk long before 4,096 of them).
    """

    cdef readonly Py_ssize_t capacity, size
    cdef readonly object trace_hi, trace_lo, span_id, parent_id, has_parent, start, end
    cdef readonly object name, kind, status, scope, service, attr_ends
    cdef readonly list strings, keys, values, messages
    cdef readonly double opened  # time.monotonic() at the first row
    cdef dict _codes
    cdef uint64_t* _trace_hi
    cdef uint64_t* _trace_lo
    cdef uint64_t* _span_id
    cdef uint64_t* _parent_id
    cdef uint8_t* _has_parent
    cdef int64_t* _start
    cdef int64_t* _end
    cdef int32_t* _name
    cdef int32_t* _kind
    cdef int32_t* _status
    cdef int32_t* _scope
    cdef int32_t* _service
    cdef int32_t* _attr_ends
    cdef object _last_resource
    cdef int32_t _last_service
    cdef readonly Py_ssize_t nbytes

    def __cinit__(self, Py_ssize_t capacity):
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        import numpy as np  # with the first chunk: the export's writer needs numpy anyway

        self.capacity = capacity
        self.size = 0
        self.trace_hi = self._ids(&self._trace_hi)
        self.trace_lo = self._ids(&self._trace_lo)
        self.span_id = self._ids(&self._span_id)
        self.parent_id = self._ids(&self._parent_id)
        cdef uint8_t[::1] flags = np.zeros(capacity, dtype=np.uint8)
        self.has_parent = flags.base
        self._has_parent = &flags[0]
        self.start = self._times(&self._start)
        self.end = self._times(&self._end)
        self.name = self._codes_array(&self._name, capacity)
        self.kind = self._codes_array(&self._kind, capacity)
        self.status = self._codes_array(&self._status, capacity)
        self.scope = self._codes_array(&self._scope, capacity)
        self.service = self._codes_array(&self._service, capacity)
        self.attr_ends = self._codes_array(&self._attr_ends, capacity + 1)
        self._attr_ends[0] = 0
        self.strings, self.keys, self.values, self.messages = [], [], [], []
        self._codes = {}
        self._last_resource = None
        self._last_service = -1
        self.opened = 0.0
        self.nbytes = CHUNK_OVERHEAD + (self.trace_hi.nbytes + self.trace_lo.nbytes + self.span_id.nbytes
                                        + self.parent_id.nbytes + self.has_parent.nbytes + self.start.nbytes
                                        + self.end.nbytes + self.name.nbytes + self.kind.nbytes
                                        + self.status.nbytes + self.scope.nbytes + self.service.nbytes
                                        + self.attr_ends.nbytes)

    cdef object _ids(self, uint64_t** pointer):
        import numpy as np
        cdef uint64_t[::1] view = np.empty(self.capacity, dtype=np.uint64)
        pointer[0] = &view[0]
        return view.base

    cdef object _times(self, int64_t** pointer):
        import numpy as np
        cdef int64_t[::1] view = np.empty(self.capacity, dtype=np.int64)
        pointer[0] = &view[0]
        return view.base

    cdef object _codes_array(self, int32_t** pointer, Py_ssize_t n):
        import numpy as np
        cdef int32_t[::1] view = np.empty(n, dtype=np.int32)
        pointer[0] = &view[0]
        return view.base

    def __len__(self):
        return self.size

    cdef int32_t _code(self, object text) except -2:
        """The code of a name, scope or service in this chunk's table (-1 for None)."""
        cdef Py_ssize_t size
        if text is None:
            return -1
        code = self._codes.get(text)
        if code is None:
            code = len(self.strings)
            stored = text if type(text) is str else str(text)
            size = 8 + _object_bytes(stored)
            self.strings.append(stored)
            self._codes[text] = code  # keyed as given: a name that is not a str is converted once
            self.nbytes += size
        return <int32_t>code

    cdef int32_t _service_code(self, object resource) except -2:
        """A provider's spans share one resource: its service name is looked up once a chunk."""
        if resource is self._last_resource and self._last_service >= 0:
            return self._last_service
        name = "unknown_service" if resource is None else str(
            resource.attributes.get("service.name", "unknown_service"))
        self._last_service = self._code(name)
        self._last_resource = resource
        return self._last_service

    def append(self, span):
        """Store one ended span; False when the chunk is full (nothing stored)."""
        if self.size >= self.capacity:
            return False
        self._append(span)
        return True

    cdef int _append(self, object span) except -1:
        """Store ``span`` in row ``size`` (the caller checked there is room).

        The SDK's spans are read through their fields (their properties cost several
        times as much), any other ``ReadableSpan`` through the public API;
        ``tests/test_export.py`` checks that both ways agree.
        """
        try:
            name, context, parent = span._name, span._context, span._parent
            start, end, status = span._start_time, span._end_time, span._status
        except AttributeError:  # not the SDK's span (or a future SDK's): what the public API says
            name, context, parent = span.name, span.context, span.parent
            start, end, status = span.start_time, span.end_time, span.status
        return self._store(span, name, context, parent, start, end, status)

    cdef int _store(self, object span, object name, object context, object parent, object start, object end,
                    object status) except -1:
        """``_append`` for a span whose first fields its caller has read already (the span
        processor reads them for the detectors): the rest is read here, the same two ways."""
        cdef Py_ssize_t row = self.size, i, added = 0
        cdef object attributes
        try:
            kind, scope, resource = span._kind, span._instrumentation_scope, span._resource
            attributes = span._attributes
            if attributes is not None:
                attributes = attributes._dict
            scope_name = None if scope is None else scope._name
        except AttributeError:
            kind, scope, resource = span.kind, span.instrumentation_scope, span.resource
            attributes = span.attributes
            scope_name = None if scope is None else scope.name
        try:
            status_code, message = status._status_code, status._description
        except AttributeError:
            status_code, message = status.status_code, status.description
        # SpanContext is a tuple (trace id, span id, ...), the SDK's and any other's
        trace_id, span_id = (0, 0) if context is None else (context[0], context[1])
        parent_id = None if parent is None else parent[1]
        # Every conversion that can fail comes first: a span that cannot be stored leaves no trace.
        cdef uint64_t trace_hi = PyLong_AsUnsignedLongLongMask(trace_id >> 64)
        cdef uint64_t trace_lo = PyLong_AsUnsignedLongLongMask(trace_id)
        cdef uint64_t span_low = PyLong_AsUnsignedLongLongMask(span_id)
        cdef uint64_t parent_low = 0 if parent_id is None else PyLong_AsUnsignedLongLongMask(parent_id)
        cdef int64_t start_ns = 0 if start is None else start
        cdef int64_t end_ns = 0 if end is None else end
        cdef int32_t name_code = self._code(name)
        cdef int32_t scope_code = self._code(scope_name)
        cdef int32_t service_code = self._service_code(resource)
        if message is not None:
            added = 64 + _object_bytes(message)
        cdef Py_ssize_t n_keys = len(self.keys)
        if attributes:
            try:
                self.keys.extend(attributes)
                self.values.extend(attributes.values())
                for i in range(n_keys, len(self.values)):  # keys are the instrumentation's constants,
                    added += 16 + _object_bytes(self.values[i])  # shared by every span: their pointers
            except BaseException:
                del self.keys[n_keys:], self.values[n_keys:]
                raise
        if message is not None:
            self.messages.append((row, message))
        if row == 0:
            self.opened = time.monotonic()
        self._trace_hi[row] = trace_hi
        self._trace_lo[row] = trace_lo
        self._span_id[row] = span_low
        self._parent_id[row] = parent_low
        self._has_parent[row] = parent_id is not None
        self._start[row] = start_ns
        self._end[row] = end_ns
        self._name[row] = name_code
        self._kind[row] = _member_code(kind, _KINDS)
        self._status[row] = _member_code(status_code, _STATUSES)
        self._scope[row] = scope_code
        self._service[row] = service_code
        self._attr_ends[row + 1] = <int32_t>len(self.keys)
        self.nbytes += added
        self.size = row + 1
        return 0


cdef struct ReadFields:  # a span's fields that add_read's caller read already (borrowed from its arguments)
    PyObject* name
    PyObject* context
    PyObject* parent
    PyObject* start
    PyObject* end
    PyObject* status


cdef enum:
    STORED = 1  # what SpanCollector._try_store did with a span
    NO_ROOM = 0
    INSIDE = -1  # not tried: the calling thread is inside the collector already
    CLOSED = 2  # not stored: the collector is closed (its export shut down)


cdef class SpanCollector:
    """The application's side of the span export, and the writer's queue.

    ``add`` stores an ended span in the current chunk; a chunk of ``chunk_rows``
    spans, or of ``chunk_bytes`` bytes (default: ``max_bytes``), moves to the queue
    if its bytes fit beside the queued ones (or the queue is empty), and
    ``wake()`` is called, the collector's lock released, to tell the writer. The
    writer ``take``s chunks from the queue and gives them back to ``done`` once
    written. A span is stored only while the queue and the current chunk hold less
    than ``max_bytes`` (or the queue is empty), so the spans waiting hold at most
    ``max_bytes`` and one span more; the others are dropped and counted in
    ``dropped``, after waiting up to ``timeout`` seconds for room (the ``"block"``
    policy; 0 drops at once). Nobody waits holding the lock: another thread's span
    waits only for the few microseconds a span takes to store.

    A span ended on a thread that is inside the collector already (a signal handler,
    or a garbage collection's callback, that ran between two of its steps) is
    dropped and counted: it cannot wait for the lock its own thread holds. So is
    every span that arrives once the collector is ``close``d (its export shut
    down): no writer would take it.
    """

    cdef readonly SpanColumns current
    cdef readonly Py_ssize_t chunk_rows, chunk_bytes, max_bytes
    cdef readonly Py_ssize_t queued_bytes  # of the chunks in the queue or being written
    cdef readonly long long dropped, shipped  # spans refused; spans moved to the queue
    cdef readonly bint closed  # no span is stored any more: each is dropped, counted
    cdef public double timeout
    cdef list _queue
    cdef object _wake, _room
    cdef unsigned long long _freed  # how many times the writer freed room: what a waiter waits on
    cdef long _holder  # the thread inside, or 0
    cdef PyThread_type_lock _lock

    def __cinit__(self, Py_ssize_t chunk_rows=4096, Py_ssize_t max_bytes=64 * 2**20, double timeout=0.0,
                  wake=None, Py_ssize_t chunk_bytes=0):
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1, got {max_bytes}")
        self.current = SpanColumns(chunk_rows)
        self.chunk_rows = chunk_rows
        self.max_bytes = max_bytes
        self.chunk_bytes = chunk_bytes if chunk_bytes > 0 else max_bytes
        self.timeout = timeout
        self._wake = wake
        self.closed = False
        self._start_afresh()

    cdef void _start_afresh(self) except *:
        """An empty queue, counts from zero, and a lock and room signal of its own."""
        self._lock = PyThread_allocate_lock()
        if self._lock == NULL:
            raise MemoryError("no lock for the span collector")
        self._holder = 0
        self._queue = []
        self.queued_bytes = 0
        self.dropped = self.shipped = 0
        self._freed = 0
        self._room = threading.Condition(threading.RLock())  # reentrant: a signal handler may wait too

    def __dealloc__(self):
        if self._lock != NULL:
            PyThread_free_lock(self._lock)

    @property
    def queued_chunks(self):
        """Chunks in the queue, not yet taken by the writer."""
        return len(self._queue)

    def close(self):
        """Store no more spans: each that arrives from now on is dropped and counted. Every span
        stored before this call is still sealed and taken as before (``seal``, ``take``). Taken
        under the lock, so a span being stored on another thread right now is stored whole first;
        on a thread inside the collector already (a signal handler), set at once."""
        if not self._enter():
            self.closed = True
            return
        try:
            self.closed = True
        finally:
            self._leave()

    # -- the lock ------------------------------------------------------------------------
    cdef inline bint _enter(self, bint wait=True):
        """Take the lock; False (not taken) if this thread holds it already, or it is busy and
        ``wait`` is False. Only C of perfsdk's runs while it is held (but a garbage collection's
        callbacks may run, and a span's own Python -- its resource's attributes, the properties of
        a span that is not the SDK's: hence the check for the thread inside)."""
        cdef long me = PyThread_get_thread_ident()
        if self._holder == me:
            return False
        if not PyThread_acquire_lock(self._lock, NOWAIT_LOCK):
            if not wait:
                return False
            with nogil:  # another thread holds it: wait without the GIL
                PyThread_acquire_lock(self._lock, WAIT_LOCK)
        self._holder = me
        return True

    cdef inline void _leave(self):
        self._holder = 0
        PyThread_release_lock(self._lock)

    # -- the application's side ----------------------------------------------------------
    def add(self, span):
        """Store an ended span for the writer: True, or False if it was dropped (counted)."""
        return self._add(span, NULL)

    def add_read(self, span, name, context, parent, start, end, status):
        """``add`` for a caller that has read these fields of ``span`` already (the span processor)."""
        cdef ReadFields read = ReadFields(name=<PyObject*>name, context=<PyObject*>context,
                                          parent=<PyObject*>parent, start=<PyObject*>start, end=<PyObject*>end,
                                          status=<PyObject*>status)
        return self._add(span, &read)

    cdef bint _add(self, object span, const ReadFields* read) except -1:
        """``add`` and ``add_read``: ``read`` is what the caller read of ``span`` already, or NULL."""
        cdef unsigned long long freed = 0
        cdef int outcome = self._try_store(span, read, &freed)
        return outcome == STORED or self._refused(outcome, freed, span, read)

    cdef bint _refused(self, int outcome, unsigned long long freed, object span, const ReadFields* read) except -1:
        """``add``'s rare path, its first try refused: wait for room and try again (the ``"block"``
        policy), until stored (True) or the wait is over (False, the span counted as dropped)."""
        cdef double deadline = 0.0, now
        while outcome == NO_ROOM and self.timeout > 0.0:
            now = time.monotonic()
            if deadline == 0.0:
                deadline = now + self.timeout
            if now >= deadline:
                break
            try:
                self._wait_for_room(freed, deadline)
            except BaseException:  # (a signal handler's KeyboardInterrupt): counted, then raised
                self.dropped += 1
                raise
            outcome = self._try_store(span, read, &freed)
            if outcome == STORED:
                return True
        self.dropped += 1
        return False

    cdef int _try_store(self, object span, const ReadFields* read, unsigned long long* freed) except -2:
        """Store the span if there is room: ``STORED``, ``NO_ROOM`` (with the room signal's count
        then in ``freed``), ``INSIDE`` or ``CLOSED``."""
        cdef SpanColumns handed = None
        cdef int outcome = NO_ROOM
        cdef bint room
        if not self._enter():
            return INSIDE
        try:
            if self.closed:
                return CLOSED
            room = self._has_room()
            if not room:  # the chunk may be full: to the writer, if it has room now
                handed = self._hand_over_if_due()
                room = handed is not None and self._has_room()
            if room:
                if read == NULL:
                    self.current._append(span)
                else:
                    self.current._store(span, <object>read.name, <object>read.context, <object>read.parent,
                                        <object>read.start, <object>read.end, <object>read.status)
                outcome = STORED
                if handed is None:
                    handed = self._hand_over_if_due()  # full now: to the writer at once if it has room
            else:
                freed[0] = self._freed
        finally:
            self._leave()
            if handed is not None and self._wake is not None:
                self._wake()
        return outcome

    cdef bint _has_room(self):  # under the lock
        """Room for a span: the chunk is not due, and it and the queue hold less than the bound
        (so they pass it by one span at most); with the queue empty a span always gets through,
        however small the bound."""
        cdef SpanColumns current = self.current
        if current.size == 0 and self.queued_bytes == 0:
            return True
        return self._filling(current) and self.queued_bytes + current.nbytes < self.max_bytes

    cdef inline bint _filling(self, SpanColumns current):
        """The chunk is below both its bounds, rows and bytes: not due for the writer."""
        return current.size < current.capacity and current.nbytes < self.chunk_bytes

    cdef SpanColumns _hand_over_if_due(self):  # under the lock
        cdef SpanColumns current = self.current
        if current.size == 0 or self._filling(current):
            return None
        return self._hand_over()

    cdef SpanColumns _hand_over(self):  # under the lock
        """Move the current chunk to the queue if it fits (or the queue is empty: a chunk larger
        than the bound is let through alone), a fresh one in its place; None if it does not fit."""
        cdef SpanColumns chunk = self.current
        if self.queued_bytes and self.queued_bytes + chunk.nbytes > self.max_bytes:
            return None
        fresh = SpanColumns(self.chunk_rows)  # (what can fail comes before anything changes)
        self._queue.append(chunk)
        self.queued_bytes += chunk.nbytes
        self.shipped += chunk.size
        self.current = fresh
        return chunk

    cdef int _wait_for_room(self, unsigned long long freed, double deadline) except -1:
        """Wait, holding nothing of the collector's, until the writer frees room (``done``) or
        the deadline passes."""
        cdef double remaining
        room = self._room
        with room:
            while self._freed == freed:
                remaining = deadline - time.monotonic()
                if remaining <= 0.0:
                    break
                room.wait(remaining)
        return 0

    def seal(self, double timeout=0.0, double older_than_s=0.0):
        """Move the current chunk to the queue if it has rows (and its first is at least
        ``older_than_s`` old), waiting up to ``timeout`` for room -- with the lock released, so
        the application's spans are stored (or dropped) meanwhile, never held up. True once every
        span stored before the call is in the queue. With ``older_than_s`` (the writer's periodic
        call) a busy lock is not waited for; called on a thread inside the collector already (a
        signal handler), False at once."""
        cdef double deadline = time.monotonic() + timeout
        cdef unsigned long long freed = 0
        cdef long long target = -1
        cdef SpanColumns handed
        while True:
            handed = None
            if not self._enter(older_than_s <= 0.0):
                return False
            try:
                if target < 0:
                    target = self.shipped + self.current.size
                if self.shipped >= target:  # (an application's span filled the chunk meanwhile)
                    return True
                if older_than_s > 0.0 and time.monotonic() - self.current.opened < older_than_s:
                    return False
                freed = self._freed
                handed = self._hand_over()
            finally:
                self._leave()
                if handed is not None and self._wake is not None:
                    self._wake()
            if handed is not None:
                return True
            if time.monotonic() >= deadline:
                return False
            self._wait_for_room(freed, deadline)

    # -- the writer's side ---------------------------------------------------------------
    def take(self, Py_ssize_t max_chunks):
        """Up to ``max_chunks`` chunks from the queue, oldest first: the writer's to write, then
        to give back to ``done`` (their bytes count against the bound until then)."""
        if not self._enter():
            return []
        try:
            chunks = self._queue[:max_chunks]
            del self._queue[:max_chunks]
        finally:
            self._leave()
        return chunks

    def done(self, chunks):
        """The writer is done with ``chunks`` (written, or counted as failed): their bytes are
        free, and whoever waits for room is woken."""
        cdef Py_ssize_t size = 0
        cdef SpanColumns chunk
        for chunk in chunks:
            size += chunk.nbytes
        self.queued_bytes -= size  # C, under the GIL: no other thread sees half of it
        self._freed += 1
        room = self._room
        with room:
            room.notify_all()

    def reset(self):
        """In a forked child: a fresh lock, an empty chunk and queue, and counts from zero (the
        parent's spans are the parent's; its lock may have been held at the fork)."""
        self.current = SpanColumns(self.chunk_rows)
        self._start_afresh()


def kept_attributes(list keys, list texts, const int32_t[::1] ends, Py_ssize_t rows):
    """The attributes left after redaction (``texts[i]`` None: dropped), as flat keys and texts
    and each row's end in them: the pieces of an Arrow map column.

    >>> import numpy as np
    >>> kept_attributes(["a", "token", "b"], ["1", None, "2"], np.array([0, 2, 3], np.int32), 2)
    (['a', 'b'], ['1', '2'], array([0, 1, 2], dtype=int32))
    """
    cdef Py_ssize_t row, i = 0, kept = 0
    import numpy as np
    kept_ends = np.empty(rows + 1, dtype=np.int32)
    cdef int32_t[::1] out = kept_ends
    out[0] = 0
    if None not in texts:  # nothing dropped: the rows' ends stand
        out[:] = ends[:rows + 1]
        return keys, texts, kept_ends
    kept_keys, kept_texts = [], []
    for row in range(rows):
        while i < ends[row + 1]:
            text = texts[i]
            if text is not None:
                kept_keys.append(keys[i])
                kept_texts.append(text)
                kept += 1
            i += 1
        out[row + 1] = <int32_t>kept
    return kept_keys, kept_texts, kept_ends


def take_strings(list table, const int32_t[::1] codes):
    """A string column's buffers from a table of distinct UTF-8 values and each row's code into
    it (-1: null): ``(offsets, data, valid)``, ``valid`` None when no row is null. What
    ``table.take(codes)`` does in pyarrow, without loading ``pyarrow.compute`` into the host.

    >>> import numpy as np
    >>> take_strings([b"GET", b"POST"], np.array([1, -1, 0], np.int32))
    (array([0, 4, 4, 7], dtype=int32), b'POSTGET', array([ True, False,  True]))
    """
    cdef Py_ssize_t n = codes.shape[0], i, total = 0, size
    cdef int32_t code
    cdef Py_ssize_t entries = len(table)
    import numpy as np
    lengths = np.fromiter(map(len, table), dtype=np.int64, count=entries)  # (of bytes: checked below)
    cdef const int64_t[::1] length = lengths
    offsets = np.empty(n + 1, dtype=np.int32)
    cdef int32_t[::1] offset = offsets
    cdef bint any_null = False
    offset[0] = 0
    for i in range(n):
        code = codes[i]
        if code < 0:
            any_null = True
        elif code >= entries:
            raise IndexError(f"string code {code} is not in a table of {entries}")
        else:
            total += length[code]
            if total > 2147483647:
                raise OverflowError("a string column of 2 GiB or more: write smaller batches")
        offset[i + 1] = <int32_t>total
    data = PyBytes_FromStringAndSize(NULL, total)
    cdef char* out = PyBytes_AS_STRING(data)
    cdef bytes value
    for i in range(n):
        code = codes[i]
        size = offset[i + 1] - offset[i]
        if size:
            value = table[code]  # bytes, or a TypeError
            memcpy(out + offset[i], PyBytes_AS_STRING(value), size)
    valid = None
    if any_null:
        valid = np.asarray(codes) >= 0
    return offsets, data, valid


def redact_texts(dict memos, list keys, list values, redact, Py_ssize_t max_entries):
    """The texts a ``Redactor`` writes for each ``(keys[i], values[i])`` (None: dropped) and how
    many were dropped: ``Redactor.texts``'s loop, compiled (a span writer redacts every
    attribute of every span). ``memos`` maps a short scalar type to its remembered
    ``(key, value) -> text`` outcomes; ``redact(key, value)`` decides the rest.
    """
    cdef Py_ssize_t i, n = len(keys), dropped = 0
    cdef list texts = [None] * n
    cdef object memo, text, value, key
    for i in range(n):
        key = keys[i]
        value = values[i]
        memo = memos.get(type(value))
        if memo is None:  # not a short scalar: not remembered
            text = redact(key, value)
        else:
            pair = (key, value)
            text = (<dict>memo).get(pair, _MISSING)
            if text is _MISSING:
                text = redact(key, value)
                if not (type(value) is str and len(<str>value) > 256):
                    if len(<dict>memo) >= max_entries:
                        (<dict>memo).clear()
                    (<dict>memo)[pair] = text
        if text is None:
            dropped += 1
        else:
            texts[i] = text
    return texts, dropped


cdef object _MISSING = object()
