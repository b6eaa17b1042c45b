# cython: language_level=3
"""StateOwner: the base of every compiled engine -- one float64 state array.

A detector's or learner's whole state is one numpy array, shared by its
Cython per-event engine and its Numba batch kernels. ``StateOwner`` adopts
that array once and keeps a raw pointer into it, so the per-event code reads
and writes it without acquiring a buffer on every call; the held memoryview
is a buffer export, so numpy refuses to resize the array under the pointer.
"""


cdef class StateOwner:
    """Owns the state array and the pointer the compiled verbs work through."""

    def __cinit__(self):
        self._s = NULL

    cdef int _adopt(self, object state, Py_ssize_t min_size, str what) except -1:
        cdef double[::1] view = state  # 1-D, C-contiguous float64, or a clear TypeError/ValueError
        if view.shape[0] < min_size:
            raise ValueError(f"state array is too short for {what}")
        self._state = state
        self._view = view
        self._s = &view[0]
        return 0

    @property
    def state(self):
        """The live state array (read it, snapshot() it; don't rebind it)."""
        return self._state
