# cython: language_level=3
"""Per-event engine of the Z-score detector.

``ZScoreCore`` updates the detector's float64 state array one point at a time
through a raw pointer (no per-call buffer acquisition), which is what keeps
``update`` close to the cost of an empty Python call. The arithmetic mirrors
``kernels.zscore_update_many`` operation for operation: the two engines share
the state array and must agree bit for bit.
"""

from cpython.long cimport PyLong_CheckExact, PyLong_AsDouble
from libc.math cimport sqrt, copysign, fabs, NAN, INFINITY

from perfsdk._native._state cimport StateOwner


include "_layout.pxi"  # the state's slots, generated from layout.py (one definition)


cdef void _resync(double* s, Py_ssize_t window) noexcept nogil:
    # Exact two-pass recompute of a full window; see kernels._zscore_resync.
    cdef double total = 0.0, shift, correction = 0.0, m2 = 0.0, d
    cdef Py_ssize_t i
    for i in range(window):
        total += s[ZS_HEADER + i]
    shift = total / window
    for i in range(window):
        d = s[ZS_HEADER + i] - shift
        correction += d
        m2 += d * d
    m2 -= correction * correction / window
    if m2 < 0.0:
        m2 = 0.0
    s[ZS_SHIFT] = shift
    s[ZS_MEAN] = correction / window
    s[ZS_M2] = m2


cdef object _as_point = None


cdef double _point_slow(object x) except? -1.0:
    # as_point (_zscore.pxd) for anything but a float: one set of rules, _base.as_point's
    global _as_point
    if PyLong_CheckExact(x):
        try:
            return PyLong_AsDouble(x)
        except OverflowError:
            pass  # too large for a float: as_point makes it +-inf
    if _as_point is None:
        from perfsdk.detect._base import as_point as python_as_point  # not at import: it imports us
        _as_point = python_as_point
    return _as_point(x, "x")


cdef class ZScoreCore(StateOwner):
    """The per-event verbs on a Z-score state array; subclassed by ZScoreDetector.

    Attributes (declared in ``_zscore.pxd``): ``last_expected``, the expected value (mean) the
    last scored point was compared with; ``last_std``, the standard deviation it was divided
    by; ``flag_threshold``: ``update`` remembers points scoring beyond it (|z|), with their
    explanation, in a small ring, so a caller updating without a lock reads its own point's
    explanation back with ``flagged_point`` even after other threads' updates (``last_*``
    would be theirs).
    """

    def __cinit__(self):
        self.last_expected = NAN
        self.last_std = NAN
        self.flag_threshold = INFINITY
        self._flag_next = 0
        for i in range(FLAG_RING):
            self._flagged[i][1] = NAN  # matches no value

    def _bind(self, state):
        """Adopt ``state`` (1-D, C-contiguous float64) as this detector's state."""
        self._adopt(state, ZS_HEADER, "a Z-score state")

    cdef double _score(self, double x) noexcept:
        cdef double* s = self._s
        cdef double count = s[ZS_COUNT], var, std, dev
        if count < s[ZS_WARMUP]:
            self.last_expected = NAN
            self.last_std = NAN
            return NAN
        if s[ZS_MODE] != 0.0:
            var = s[ZS_M2]
        elif count < s[ZS_WINDOW]:
            var = s[ZS_M2] / (count - 1.0)
        else:
            var = s[ZS_M2] / (s[ZS_WINDOW] - 1.0)
        std = sqrt(var)
        if std < s[ZS_MIN_STD]:
            std = s[ZS_MIN_STD]
        dev = (x - s[ZS_SHIFT]) - s[ZS_MEAN]
        self.last_expected = s[ZS_SHIFT] + s[ZS_MEAN]
        self.last_std = std
        if std > 0.0:
            return dev / std
        if dev == 0.0:
            return 0.0
        return copysign(INFINITY, dev)

    cdef void _learn(self, double x) noexcept:
        cdef double* s = self._s
        cdef double count = s[ZS_COUNT], mean = s[ZS_MEAN], m2 = s[ZS_M2]
        cdef double diff, incr, delta, old, new_mean, shift
        cdef Py_ssize_t window, pos
        if s[ZS_MODE] != 0.0:
            if count == 0.0:
                mean = x
                m2 = 0.0
            else:
                diff = x - mean
                incr = s[ZS_ALPHA] * diff
                mean = mean + incr
                m2 = (1.0 - s[ZS_ALPHA]) * (m2 + diff * incr)
            s[ZS_MEAN] = mean
            s[ZS_M2] = m2
        else:
            window = <Py_ssize_t> s[ZS_WINDOW]
            pos = <Py_ssize_t> s[ZS_POS]
            if count < s[ZS_WINDOW]:
                if count == 0.0:
                    s[ZS_SHIFT] = x
                shift = s[ZS_SHIFT]
                s[ZS_HEADER + pos] = x
                pos += 1
                if pos == window:
                    pos = 0
                delta = (x - shift) - mean
                mean = mean + delta / (count + 1.0)
                m2 = m2 + delta * ((x - shift) - mean)
                s[ZS_MEAN] = mean
                s[ZS_M2] = m2
            else:
                old = s[ZS_HEADER + pos]
                s[ZS_HEADER + pos] = x
                pos += 1
                if pos == window:
                    pos = 0
                shift = s[ZS_SHIFT]
                new_mean = mean + (x - old) * s[ZS_INV_WINDOW]
                m2 = m2 + (x - old) * (((x - shift) - new_mean) + ((old - shift) - mean))
                s[ZS_MEAN] = new_mean
                s[ZS_SINCE_RESYNC] += 1.0
                if s[ZS_SINCE_RESYNC] == s[ZS_WINDOW] or m2 < s[ZS_M2] * ZS_RESYNC_DROP:
                    # every window, and at once when M2 fell so far (an extreme left the window) that
                    # what is left of it is the subtraction's rounding error
                    _resync(s, window)
                    s[ZS_SINCE_RESYNC] = 0.0
                else:
                    s[ZS_M2] = m2
            s[ZS_POS] = <double> pos
        s[ZS_COUNT] = count + 1.0

    cdef bint _accept(self, double x) except -1:
        if self._s == NULL:
            raise RuntimeError("detector is not initialised (use its constructor)")
        if not fabs(x) <= MAX_MAGNITUDE:  # NaN, infinite, or too large to square
            self._s[ZS_REJECTED] += 1.0
            return False
        return True

    cdef double step(self, double x) except? -1.0:
        """``update`` for C callers (the alert pipeline, the detector bank's common path)."""
        cdef double z, learned = x
        cdef double* f
        cdef double* s
        if not self._accept(x):
            return NAN
        z = self._score(x)
        s = self._s
        if s[ZS_CLIP] > 0.0 and s[ZS_COUNT] >= s[ZS_WARMUP]:
            # bounded influence (kernels.zscore_update_many): an isolated extreme is learned at the
            # clip -- where the spread is 0 nothing is (a constant series must learn its first change)
            if fabs(z) > s[ZS_CLIP] and self.last_std > 0.0:
                if s[ZS_EXTREME] == 0.0:
                    learned = self.last_expected + copysign(s[ZS_CLIP] * self.last_std, z)
                s[ZS_EXTREME] = 1.0
            else:
                s[ZS_EXTREME] = 0.0
        if fabs(z) > self.flag_threshold:  # rare; NaN (warming up) never
            f = self._flagged[self._flag_next]
            self._flag_next = (self._flag_next + 1) % FLAG_RING
            f[0] = self._s[ZS_COUNT] + self._s[ZS_REJECTED]
            f[1] = x
            f[2] = self.last_expected
            f[3] = self.last_std
            f[4] = z
        self._learn(learned)
        return z

    def update(self, x):
        """Score ``x`` against the state, then learn it; return the z-score.

        NaN during warm-up; NaN (and the ``rejected`` counter bumped, state
        untouched) when ``x`` is NaN, infinite or beyond +-``MAX_MAGNITUDE`` (1e150).
        ``x`` is any number (``as_point``); an object, not a C double, so that a wrong
        type's error names it and an int too large for a float is rejected like inf.
        """
        return self.step(as_point(x))

    def flagged_point(self, double x, double z):
        """(index, expected, std) of a recent point scoring ``z`` beyond ``flag_threshold``
        for value ``x``, or None if it has left the ring (or never entered it)."""
        cdef int i, k
        for k in range(FLAG_RING):  # newest first
            i = (self._flag_next - 1 - k + FLAG_RING) % FLAG_RING
            if self._flagged[i][1] == x and self._flagged[i][4] == z:
                return int(self._flagged[i][0]), self._flagged[i][2], self._flagged[i][3]
        return None

    def _score_one(self, double x):
        if self._s == NULL:
            raise RuntimeError("detector is not initialised (use its constructor)")
        if not fabs(x) <= MAX_MAGNITUDE:
            return NAN
        return self._score(x)

    def _learn_one(self, double x):
        self.step(x)  # as ``update`` learns it (bounded influence needs the score)
