# cython: language_level=3
"""BankPath's C interface: the span processor's common path calls ``observe_c`` without a
Python call."""


cdef class BankPath:
    cdef public dict _series

    cdef object observe_c(self, object name, double value, object timestamp, bint error, object context)
