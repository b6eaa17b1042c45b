# cython: language_level=3
"""PipelineCore's C interface: the detector bank's common path calls ``step``
without a Python call."""

from perfsdk._native._state cimport StateOwner
from perfsdk._native._zscore cimport ZScoreCore


cdef class PipelineCore(StateOwner):
    cdef Py_ssize_t _channels, _average, _stride, _ring, _period
    cdef object _update0, _update1
    cdef ZScoreCore _z0, _z1  # the members, when they are Z-scores: stepped in C
    cdef readonly double last_base
    cdef readonly double last_lo
    cdef readonly double last_hi

    cdef double _season(self, double x) noexcept
    cdef double _step(self, double x, double r0, double r1) noexcept
    cdef double step(self, double x) except? -1.0
