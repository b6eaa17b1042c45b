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
current chunk under a lock and ships a full one to the writer; when the writer
has no room it keeps the full chunk and counts each span it cannot take, so
every span is either written or counted as dropped.

>>> from opentelemetry.sdk.trace import TracerProvider
>>> provider = TracerProvider()
>>> shipped = []
>>> collector = SpanCollector(lambda chunk, timeout: shipped.append(chunk) or True, chunk_rows=2)
>>> for name in ("GET /a", "GET /b", "GET /a"):
...     with provider.get_tracer("t").start_as_current_span(name) as span:
...         pass
...     collector.add(span)
True
True
True
>>> [chunk.size for chunk in shipped], collector.current.size, collector.dropped
([2], 1, 0)
>>> [shipped[0].strings[code] for code in shipped[0].name]
['GET /a', 'GET /b']
"""

from cpython.long cimport PyLong_AsUnsignedLongLongMask
from cpython.pythread cimport (NOWAIT_LOCK, WAIT_LOCK, PyThread_acquire_lock, PyThread_allocate_lock,
                               PyThread_free_lock, PyThread_release_lock, PyThread_type_lock)
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t
from libc.string cimport memcpy

import sys
from collections.abc import Mapping
import time

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
    cdef Py_ssize_t _nbytes, _nbytes_rows

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
        self._nbytes_rows = -1

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

    @property
    def nbytes(self):
        """The memory this chunk holds, in bytes: its column buffers, and its lists and their
        values (each value counted where it appears, so values shared between spans are
        counted more than once: a bound on these bytes errs on the side of less memory).

        Measured rather than assumed, so a bound in bytes holds several times more small
        spans than large ones. Computed once the rows stop changing (the collector asks
        when it ships the chunk; the writer when it has written it).
        """
        if self._nbytes_rows != self.size:
            self._nbytes = self._measure()
            self._nbytes_rows = self.size
        return self._nbytes

    cdef Py_ssize_t _measure(self) except -1:
        cdef Py_ssize_t total = (self.trace_hi.nbytes + self.trace_lo.nbytes + self.span_id.nbytes
                                 + self.parent_id.nbytes + self.has_parent.nbytes + self.start.nbytes
                                 + self.end.nbytes + self.name.nbytes + self.kind.nbytes + self.status.nbytes
                                 + self.scope.nbytes + self.service.nbytes + self.attr_ends.nbytes)
        total += CHUNK_OVERHEAD + 8 * (len(self.keys) + len(self.values) + len(self.strings))
        for row_message in self.messages:  # (row, status description): an error storm's texts count
            total += 64 + _object_bytes(row_message[1])
        for text in self.strings:
            total += _object_bytes(text)
        for value in self.values:  # keys are the instrumentation's constants, shared by every span
            total += _object_bytes(value)
        return total

    cdef int32_t _code(self, object text) except -2:
        """The code of a name, scope or service in this chunk's table (-1 for None)."""
        if text is None:
            return -1
        code = self._codes.get(text)
        if code is None:
            code = len(self.strings)
            self.strings.append(text if type(text) is str else str(text))
            self._codes[text] = code  # keyed as given: a name that is not a str is converted once
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
        cdef Py_ssize_t row = self.size
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
        cdef Py_ssize_t n_keys = len(self.keys)
        if attributes:
            try:
                self.keys.extend(attributes)
                self.values.extend(attributes.values())
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
        self.size = row + 1
        return 0


cdef class SpanCollector:
    """The application's side of the span export: ``add`` an ended span, never blocking
    for longer than ``timeout`` (the ``"block"`` policy's wait; 0 drops at once).

    ``ship(chunk, timeout)`` hands a chunk to the writer and says whether it took it.
    A full chunk the writer has no room for stays here; until it is shipped, each
    span that arrives is dropped and counted in ``dropped``.
    """

    cdef readonly SpanColumns current
    cdef readonly Py_ssize_t chunk_rows
    cdef readonly long long dropped, shipped
    cdef public double timeout
    cdef object _ship
    cdef PyThread_type_lock _lock

    def __cinit__(self, ship, Py_ssize_t chunk_rows=4096, double timeout=0.0):
        self._ship = ship
        self.chunk_rows = chunk_rows
        self.timeout = timeout
        self.current = SpanColumns(chunk_rows)
        self.dropped = 0
        self.shipped = 0
        self._lock = PyThread_allocate_lock()
        if self._lock == NULL:
            raise MemoryError("no lock for the span collector")

    def __dealloc__(self):
        if self._lock != NULL:
            PyThread_free_lock(self._lock)

    cdef inline void _acquire(self):
        if not PyThread_acquire_lock(self._lock, NOWAIT_LOCK):
            with nogil:  # another thread holds it: wait without the GIL
                PyThread_acquire_lock(self._lock, WAIT_LOCK)

    def add(self, span):
        """Store an ended span for the writer: True, or False if it was dropped (counted)."""
        self._acquire()
        try:
            if not self._room():
                return False
            self.current._append(span)
            self._ship_if_full()
            return True
        finally:
            PyThread_release_lock(self._lock)

    def add_read(self, span, name, context, parent, start, end, status):
        """``add`` for a caller that has read these fields of ``span`` already (the span processor)."""
        self._acquire()
        try:
            if not self._room():
                return False
            self.current._store(span, name, context, parent, start, end, status)
            self._ship_if_full()
            return True
        finally:
            PyThread_release_lock(self._lock)

    cdef bint _room(self) except -1:  # under the lock
        """Is there room for a span? If not, it is counted as dropped."""
        if self.current.size >= self.current.capacity and not self._ship_current(self.timeout):
            self.dropped += 1
            return False
        return True

    cdef int _ship_if_full(self) except -1:  # under the lock
        if self.current.size >= self.current.capacity:
            self._ship_current(0.0)  # now, if the writer has room (else on the next span)
        return 0

    cdef bint _ship_current(self, double timeout) except -1:  # under the lock
        chunk = self.current
        if not self._ship(chunk, timeout):
            return False
        self.shipped += chunk.size
        self.current = SpanColumns(self.chunk_rows)
        return True

    def seal(self, double timeout=0.0, double older_than_s=0.0):
        """Ship the current chunk if it has rows (and its first is at least ``older_than_s``
        old); True if nothing is left behind. With ``older_than_s`` (the writer's periodic
        call) a busy lock is not waited for."""
        if older_than_s > 0.0:
            if not PyThread_acquire_lock(self._lock, NOWAIT_LOCK):
                return False
        else:
            self._acquire()
        try:
            if self.current.size == 0:
                return True
            if older_than_s > 0.0 and time.monotonic() - self.current.opened < older_than_s:
                return False
            return self._ship_current(timeout)
        finally:
            PyThread_release_lock(self._lock)

    def reset(self):
        """In a forked child: a fresh lock and an empty chunk (the parent's spans are the parent's)."""
        self._lock = PyThread_allocate_lock()  # the parent's may have been held at the fork
        self.current = SpanColumns(self.chunk_rows)


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
