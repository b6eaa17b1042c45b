# cython: language_level=3
cdef class StateOwner:
    cdef double* _s
    cdef object _state
    cdef object _slots
    cdef object _array
    cdef double[::1] _view
    cdef int _adopt(self, object state, Py_ssize_t min_size, str what) except -1
