# cython: language_level=3
"""ZScoreCore's C interface: other engines (the alert pipeline, the detector bank's
common path) call ``step`` without a Python call."""

from perfsdk._native._state cimport StateOwner

cdef enum:
    FLAG_RING = 8  # flagged points remembered per detector


cdef class ZScoreCore(StateOwner):
    cdef readonly double last_expected
    cdef readonly double last_std
    cdef public double flag_threshold
    cdef double _flagged[FLAG_RING][5]  # index, value, expected, std, z
    cdef int _flag_next

    cdef double _score(self, double x) noexcept
    cdef void _learn(self, double x) noexcept
    cdef bint _accept(self, double x) except -1
    cdef double step(self, double x) except? -1.0
