# cython: language_level=3
"""Per-event engine of the ARIMA detector.

``ArimaCore`` advances the detector's float64 state array one point at a
time: one-step forecast, standardised residual, running scale, lag shift.
The arithmetic mirrors ``kernels.arima_update_many`` (and the helpers it
calls) operation for operation, so the two engines agree bit for bit.
Fitting never happens here: when the state asks for a fit, ``update`` calls
the subclass's Python hook ``_fit_requested`` (rare), and new coefficients are
swapped in by its ``_apply_pending`` at the start of the next call.
"""

from libc.math cimport copysign, fabs, sqrt, INFINITY, NAN

from perfsdk._native._state cimport StateOwner
from perfsdk._native._zscore cimport as_point

include "_layout.pxi"  # the state's slots, generated from layout.py (one definition)



cdef inline void _shift_in(double* s, Py_ssize_t lags, Py_ssize_t n, double newest) noexcept:
    """Lags s[lags .. lags+n) move one back; ``newest`` becomes lag 1."""
    cdef Py_ssize_t i
    for i in range(n - 1, 0, -1):
        s[lags + i] = s[lags + i - 1]
    if n > 0:
        s[lags] = newest


cdef inline void _ring_put(double* s, Py_ssize_t ring, Py_ssize_t pos_at, Py_ssize_t size, double x) noexcept:
    """Write ``x`` at the ring's position (kept in s[pos_at]) and advance it."""
    cdef Py_ssize_t pos = <Py_ssize_t> s[pos_at]
    s[ring + pos] = x
    pos += 1
    if pos == size:
        pos = 0
    s[pos_at] = <double> pos


cdef inline double _floored_scale(double* s, double y_hat) noexcept:
    # kernels_arima._arima_floored_scale: SCALE_FLOOR_OF_* (layout.py) say why
    cdef double floor = SCALE_FLOOR_OF_SIGMA * sqrt(s[AR_SIGMA2])
    cdef double level = SCALE_FLOOR_OF_LEVEL * fabs(y_hat)
    if level > floor:
        floor = level
    if s[AR_SCALE] < floor:
        return floor
    return s[AR_SCALE]


cdef inline double _standardised(double e, double scale) noexcept:
    # kernels_arima._arima_standardised: with no spread at all, the Z-score's constant-series rule
    if scale > 0.0:
        return e / scale
    if e == 0.0:
        return 0.0
    return copysign(INFINITY, e)


cdef class ArimaCore(StateOwner):
    """The per-event verbs on an ARIMA state array; subclassed by ArimaDetector."""

    cdef Py_ssize_t _p, _q, _m, _ntaps, _history
    cdef Py_ssize_t _phi, _theta, _tap_lag, _tap_coef, _wlag, _elag, _yring, _hist
    cdef public bint _has_pending
    """Set (by the fitting worker) when new coefficients wait to be swapped in."""
    cdef readonly double last_expected
    """The forecast the last scored point was compared with."""
    cdef readonly double last_std
    """The residual scale the last scored point was divided by."""

    def __cinit__(self):
        self._has_pending = False
        self.last_expected = NAN
        self.last_std = NAN

    def _bind(self, state):
        """Adopt ``state`` (1-D, C-contiguous float64) as this detector's state."""
        cdef double[::1] view = state
        if view.shape[0] < AR_HEADER:
            raise ValueError("state array is too short for an ARIMA state")
        self._p = <Py_ssize_t> view[AR_P]
        self._q = <Py_ssize_t> view[AR_Q]
        self._m = <Py_ssize_t> view[AR_M]
        self._ntaps = <Py_ssize_t> view[AR_NTAPS]
        self._history = <Py_ssize_t> view[AR_HISTORY]
        self._phi = AR_HEADER
        self._theta = self._phi + self._p
        self._tap_lag = self._theta + self._q
        self._tap_coef = self._tap_lag + self._ntaps
        self._wlag = self._tap_coef + self._ntaps
        self._elag = self._wlag + self._p
        self._yring = self._elag + self._q
        self._hist = self._yring + self._m
        if view.shape[0] != self._hist + self._history:
            raise ValueError("state array size does not match its ARIMA layout")
        self._adopt(state, AR_HEADER, "an ARIMA state")

    @property
    def offsets(self):
        """Where this engine reads the state's variable-length parts (checked against
        ``kernels.arima_layout`` at import: the two engines must agree)."""
        return {"phi": self._phi, "theta": self._theta, "tap_lag": self._tap_lag,
                "tap_coef": self._tap_coef, "wlag": self._wlag, "elag": self._elag,
                "yring": self._yring, "hist": self._hist, "size": self._hist + self._history}

    cdef inline double _forecast(self, double x, double* w) noexcept:
        # kernels.arima_forecast_one
        cdef double* s = self._s
        cdef double w_hat = s[AR_INTERCEPT], integ = 0.0
        cdef Py_ssize_t i, slot, pos = <Py_ssize_t> s[AR_YRING_POS]
        for i in range(self._p):
            w_hat += s[self._phi + i] * s[self._wlag + i]
        for i in range(self._q):
            w_hat += s[self._theta + i] * s[self._elag + i]
        for i in range(self._ntaps):
            slot = pos - <Py_ssize_t> s[self._tap_lag + i]
            if slot < 0:
                slot += self._m
            integ += s[self._tap_coef + i] * s[self._yring + slot]
        w[0] = x + integ
        return w_hat - integ

    cdef inline void _push(self, double x, double w, double e, bint has_lags) noexcept:
        # kernels._arima_push with record=True
        cdef double* s = self._s
        if has_lags:
            _shift_in(s, self._wlag, self._p, w)
            _shift_in(s, self._elag, self._q, e)
        if self._m > 0:
            _ring_put(s, self._yring, AR_YRING_POS, self._m, x)
        _ring_put(s, self._hist, AR_HIST_POS, self._history, x)
        s[AR_COUNT] += 1.0

    cdef inline bint _wants_fit(self) noexcept:
        # kernels._arima_wants_fit
        cdef double* s = self._s
        if s[AR_FIT_STATE] != FIT_IDLE:
            return False
        if s[AR_RETRY_AT] > 0.0 and s[AR_COUNT] >= s[AR_RETRY_AT]:
            return True
        if s[AR_FITTED] == 0.0:
            return False
        if s[AR_REFIT_EVERY] > 0.0 and s[AR_SINCE_FIT] >= s[AR_REFIT_EVERY]:
            return True
        return s[AR_SHIFT_RUN] > 0.0 and s[AR_RUN] >= s[AR_SHIFT_RUN]

    def update(self, x):
        """Score ``x`` by its one-step forecast error, then learn it; return the score.

        NaN while warming up (no model yet); NaN, with ``rejected`` bumped and
        the state untouched, when ``x`` is NaN, infinite or beyond +-``MAX_MAGNITUDE`` (1e150).
        ``x`` is any number (``as_point``: a wrong type's error names it, an int too large for
        a float is infinite); converted first, so a refused type leaves even a landed fit waiting.
        """
        return self._step(as_point(x))

    cdef object _step(self, double x):
        cdef double* s = self._s
        cdef double z = NAN, y_hat = NAN, scale = NAN, w = NAN, e = NAN, a
        cdef bint has_lags
        if s == NULL:
            raise RuntimeError("detector is not initialised (use its constructor)")
        if self._has_pending:
            self._apply_pending()
        if not fabs(x) <= MAX_MAGNITUDE:  # NaN, infinite, or too large to square
            s[AR_REJECTED] += 1.0
            return NAN
        has_lags = s[AR_FITTED] != 0.0 and s[AR_COUNT] >= s[AR_LAGS]
        if has_lags:
            y_hat = self._forecast(x, &w)
            e = x - y_hat
            scale = _floored_scale(s, y_hat)
            if s[AR_COUNT] >= s[AR_WARMUP]:
                z = _standardised(e, scale)
                if fabs(z) > s[AR_THRESHOLD]:
                    s[AR_RUN] += 1.0
                else:
                    s[AR_RUN] = 0.0
            a = fabs(e)
            if a > s[AR_SCALE_CLIP] * scale:
                a = s[AR_SCALE_CLIP] * scale
            s[AR_SCALE] = scale + s[AR_SCALE_BETA] * (a * MEAN_ABS_TO_STD - scale)
        if s[AR_FITTED] != 0.0:
            s[AR_SINCE_FIT] += 1.0
        self.last_expected = y_hat
        self.last_std = scale
        self._push(x, w, e, has_lags)
        if self._wants_fit():
            s[AR_FIT_STATE] = FIT_REQUESTED
            self._fit_requested()
        return z

    def _score_one(self, double x):
        """The score ``x`` would get, without learning it (NaN if not scorable)."""
        cdef double w, y_hat
        if self._s == NULL:
            raise RuntimeError("detector is not initialised (use its constructor)")
        if not fabs(x) <= MAX_MAGNITUDE or self._s[AR_FITTED] == 0.0 or self._s[AR_COUNT] < self._s[AR_LAGS] \
                or self._s[AR_COUNT] < self._s[AR_WARMUP]:
            return NAN
        y_hat = self._forecast(x, &w)
        return _standardised(x - y_hat, _floored_scale(self._s, y_hat))

    def _learn_one(self, double x):
        """Learn ``x`` without reporting its score (River's learn_one)."""
        self._step(x)
