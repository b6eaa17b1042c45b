# cython: language_level=3
"""ZScoreCore's C interface: other engines (the alert pipeline, the detector bank's
common path) call ``step`` without a Python call."""

from cpython.float cimport PyFloat_Check, PyFloat_AS_DOUBLE

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


cdef double _point_slow(object x) except? -1.0


cdef inline double as_point(object x) except? -1.0:
    """``x`` as the per-event ``update`` verbs take it: a float (numpy's too) at C speed, anything
    else by ``perfsdk.detect._base.as_point``'s rules -- errors naming ``x``, an int too large for
    a float is +-inf (rejected and counted), never an OverflowError."""
    if PyFloat_Check(x):
        return PyFloat_AS_DOUBLE(x)
    return _point_slow(x)
