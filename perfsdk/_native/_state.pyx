# cython: language_level=3
"""StateOwner: the base of every compiled engine -- one float64 state buffer.

A detector's or learner's whole state is one buffer of doubles, shared by its
Cython per-event engine and its Numba batch kernels. ``StateOwner`` adopts
that buffer once and keeps a raw pointer into it, so the per-event code reads
and writes it without acquiring a buffer on every call; the held memoryview
is a buffer export, so the owner (an ``array.array``, a numpy array) refuses
to resize under the pointer.

The per-event path needs no numpy: states are made by ``state_buffer`` (an
``array.array`` of doubles) and read from Python through ``slots``, a
memoryview. ``state`` is the same memory as a numpy array, for the batch
paths and for people; numpy loads the first time it is asked for.

>>> slots = state_buffer(3)
>>> slots[1] = 2.5
>>> slots.tolist()
[0.0, 2.5, 0.0]
>>> state_buffer(2**62)
Traceback (most recent call last):
ValueError: a state of 4611686018427387904 slots is larger than the address space
"""

from array import array

from cpython.pyport cimport PY_SSIZE_T_MAX


def state_buffer(Py_ssize_t n):
    """A new state of ``n`` zeros: a writable memoryview of doubles (no numpy).

    A size whose bytes overflow is refused: ``8 * n`` would wrap around to a small buffer
    that the engines then write past."""
    if n < 0:
        raise ValueError(f"a state has at least 0 slots, got {n}")
    if n > PY_SSIZE_T_MAX // 8:
        raise ValueError(f"a state of {n} slots is larger than the address space")
    return memoryview(array("d", bytes(8 * n)))


cdef class StateOwner:
    """Owns the state buffer and the pointer the compiled verbs work through."""

    def __cinit__(self):
        self._s = NULL

    cdef int _adopt(self, object state, Py_ssize_t min_size, str what) except -1:
        cdef double[::1] view = state  # 1-D, C-contiguous float64, or a clear TypeError/ValueError
        if view.shape[0] < min_size:
            raise ValueError(f"state array is too short for {what}")
        self._state = state
        self._slots = state if type(state) is memoryview else memoryview(state)
        self._array = None
        self._view = view
        self._s = &view[0]
        return 0

    @property
    def state(self):
        """The live state as a numpy array (writes reach the engine; read it, snapshot() it;
        don't rebind it). Loads numpy: per-event code reads ``slots``."""
        if self._array is None:
            import numpy as np
            self._array = np.asarray(self._state)
        return self._array

    @property
    def slots(self):
        """The live state as a memoryview of doubles: index it, slice it, assign to it."""
        return self._slots
