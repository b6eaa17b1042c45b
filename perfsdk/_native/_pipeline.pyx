# cython: language_level=3
"""Per-event engine of the alert pipeline (``perfsdk.detect.pipeline``).

``PipelineCore.update(x)`` feeds ``x`` to the member detectors (their own
compiled ``update``), then turns their raw scores into one alert score in
[0, 1] on the pipeline's state array. The arithmetic mirrors
``kernels_pipeline`` operation for operation: the two engines share the
state array and must agree bit for bit.
"""

from libc.math cimport isnan, isinf, fabs, sqrt, erfc, log, NAN

from perfsdk._native._state cimport StateOwner
from perfsdk._native._zscore cimport ZScoreCore, as_point

include "_layout.pxi"  # the state's slots, generated from layout.py (one definition)


cdef double _channel_score(double* s, Py_ssize_t block, double r, Py_ssize_t average, double inv_average,
                           double learn, double squash, double alpha, double min_var, double min_mean) noexcept:
    # kernels_pipeline._channel_score
    cdef double u, total = 0.0, n, avg, score = 0.0, var, mean, zz, p, a, d
    cdef Py_ssize_t ring = block + PL_CH_HEADER, pos, k
    if isnan(r):
        return 0.0
    r = fabs(r)
    if isinf(r):
        u = 1.0
    else:
        u = r / (r + squash)
    pos = <Py_ssize_t> s[block + PL_CH_POS]
    total = s[block + PL_CH_SUM] + (u - s[ring + pos])
    s[ring + pos] = u
    pos += 1
    if pos == average:
        pos = 0
        total = 0.0
        for k in range(average):
            total += s[ring + k]
    s[block + PL_CH_POS] = <double> pos
    s[block + PL_CH_SUM] = total
    n = s[block + PL_CH_COUNT]
    if n + 1.0 >= average:
        avg = total * inv_average
    else:
        avg = total / (n + 1.0)
    if n >= learn:
        var = s[block + PL_CH_VAR]
        if var < min_var:
            var = min_var
        mean = s[block + PL_CH_MEAN]
        if mean < min_mean:
            mean = min_mean
        zz = (avg - mean) / sqrt(var)
        if zz > 0.0:
            p = 0.5 * erfc(zz * 0.7071067811865476)
            score = log(p + TAIL_FLOOR) * INV_LOG_TAIL_FLOOR
            if score > 1.0:
                score = 1.0
            elif score < 0.0:
                score = 0.0
    if n == 0.0:
        s[block + PL_CH_MEAN] = avg
        s[block + PL_CH_VAR] = 0.0
    else:
        a = alpha
        if n * alpha < 1.0:  # 1 / (n + 1) until the memory is full
            a = 1.0 / (n + 1.0)
            if a < alpha:
                a = alpha
        mean = s[block + PL_CH_MEAN]
        d = avg - mean
        s[block + PL_CH_MEAN] = mean + a * d
        var = (1.0 - a) * (s[block + PL_CH_VAR] + a * d * d)
        if var < 1e-200:  # kernels_pipeline: no subnormals
            var = 0.0
        s[block + PL_CH_VAR] = var
    s[block + PL_CH_COUNT] = n + 1.0
    s[block + PL_CH_LAST] = score
    return score


def _keeps(det, name, method):
    """Is ``det``'s ``name`` still ``method`` -- not overridden by its class, nor replaced on the
    instance (a patched method is called as written, so it cannot be stepped in C)?"""
    return getattr(type(det), name, None) is method and name not in getattr(det, "__dict__", ())


def _bound_own(bound, name, method):
    """The object ``bound`` is the method ``name`` of, if that is still ``method`` (see ``_keeps``);
    else None: how a compiled caller knows it may call the engine's C entry instead."""
    owner = getattr(bound, "__self__", None)
    if owner is not None and getattr(bound, "__name__", None) == name and _keeps(owner, name, method):
        return owner
    return None


cdef ZScoreCore _compiled_z(object update):
    """The Z-score whose bound ``update`` this is, if that is ZScoreCore's own (not overridden)."""
    owner = _bound_own(update, "update", ZScoreCore.update)
    return <ZScoreCore> owner if isinstance(owner, ZScoreCore) else None


cdef class PipelineCore(StateOwner):
    """The per-event verbs on an alert-pipeline state array; subclassed by AlertPipeline.

    Attributes (declared in ``_pipeline.pxd``): ``last_base``, the seasonal channel's reference
    value x(t - season) for the last point (NaN if none); ``last_lo`` and ``last_hi``, the range
    the last point was checked against (before learning it).
    """

    def __cinit__(self):
        self._update0 = None
        self._update1 = None
        self.last_base = NAN
        self.last_lo = NAN
        self.last_hi = NAN

    def _attach(self, state, update0, update1):
        """Adopt ``state`` (the pipeline's own slots) and the members' ``update`` verbs."""
        cdef double[::1] view = state
        if view.shape[0] < PL_HEADER:
            raise ValueError("state array is too short for an alert pipeline state")
        self._channels = <Py_ssize_t> view[PL_CHANNELS]
        self._average = <Py_ssize_t> view[PL_AVERAGE]
        self._period = <Py_ssize_t> view[PL_SEASON]
        self._stride = PL_CH_HEADER + self._average
        self._ring = PL_HEADER + self._channels * self._stride
        if view.shape[0] != self._ring + self._period:
            raise ValueError("state array size does not match its alert pipeline layout")
        self._adopt(state, PL_HEADER, "an alert pipeline state")
        self._update0 = update0
        self._update1 = update1
        # a member that is a Z-score with the compiled ``update`` is stepped in C
        self._z0 = _compiled_z(update0)
        self._z1 = _compiled_z(update1)

    @property
    def offsets(self):
        """(first channel block, block size, season ring): checked against ``kernels`` at import."""
        return PL_HEADER, self._stride, self._ring

    cdef double _season(self, double x) noexcept:
        # kernels_pipeline.pipeline_season_many, one point
        cdef double* s = self._s
        cdef Py_ssize_t pos = <Py_ssize_t> s[PL_S_POS]
        cdef double on = 0.0, d = NAN, b, n, a, da, db, va, vb
        self.last_base = NAN
        if s[PL_COUNT] >= self._period:
            b = s[self._ring + pos]
            self.last_base = b
            d = x - b
            n = s[PL_S_PAIRS] + 1.0
            a = 1.0 / n
            if a < s[PL_SEASON_ALPHA]:
                a = s[PL_SEASON_ALPHA]
            da = x - s[PL_S_MEAN_A]
            db = b - s[PL_S_MEAN_B]
            s[PL_S_MEAN_A] += a * da
            s[PL_S_MEAN_B] += a * db
            s[PL_S_VAR_A] = (1.0 - a) * (s[PL_S_VAR_A] + a * da * da)
            s[PL_S_VAR_B] = (1.0 - a) * (s[PL_S_VAR_B] + a * db * db)
            s[PL_S_COV] = (1.0 - a) * (s[PL_S_COV] + a * da * db)
            s[PL_S_PAIRS] = n
            va = s[PL_S_VAR_A]
            vb = s[PL_S_VAR_B]
            if n >= self._period and va > 0.0 and vb > 0.0 and s[PL_S_COV] >= s[PL_SEASON_CORR] * sqrt(va * vb):
                on = 1.0
        s[self._ring + pos] = x
        pos += 1
        if pos == self._period:
            pos = 0
        s[PL_S_POS] = <double> pos
        s[PL_SEASON_ON] = on
        return d

    cdef double _step(self, double x, double r0, double r1) noexcept:
        # kernels_pipeline.pipeline_step_many, one point
        cdef double* s = self._s
        cdef double count = s[PL_COUNT], best, s1, channel = 0.0, lo, hi, span, score
        cdef double tol = s[PL_RANGE_TOL], release = s[PL_RELEASE], inv_average = 1.0 / s[PL_AVERAGE]
        best = _channel_score(s, PL_HEADER, r0, self._average, inv_average, s[PL_LEARN], s[PL_SQUASH],
                              s[PL_ALPHA], s[PL_MIN_VAR], s[PL_MIN_MEAN])
        if self._channels > 1:
            s1 = _channel_score(s, PL_HEADER + self._stride, r1, self._average, inv_average, s[PL_LEARN],
                                s[PL_SQUASH], s[PL_ALPHA], s[PL_MIN_VAR], s[PL_MIN_MEAN])
            if s[PL_SEASON_ON] != 0.0 and s1 > best:
                best = s1
                channel = 1.0
        lo = s[PL_LO]
        hi = s[PL_HI]
        self.last_lo = lo
        self.last_hi = hi
        if tol >= 0.0 and count >= s[PL_LEARN]:
            span = hi - lo
            if span > 0.0 and (x > hi + tol * span or x < lo - tol * span):
                best = 1.0
                channel = PL_RANGE_CHANNEL
        score = best
        if s[PL_INCIDENT] != 0.0:
            if best >= s[PL_THRESHOLD]:
                s[PL_SUPPRESSED] += 1.0
            if score > release:
                score = release
            if best < release:
                s[PL_QUIET_RUN] += 1.0
                if s[PL_QUIET_RUN] >= s[PL_QUIET]:
                    s[PL_INCIDENT] = 0.0
            else:
                s[PL_QUIET_RUN] = 0.0
        elif best >= s[PL_THRESHOLD]:
            s[PL_INCIDENT] = 1.0
            s[PL_QUIET_RUN] = 0.0
            s[PL_ALERTS] += 1.0
        if count == 0.0:
            lo = x
            hi = x
        else:
            if x < lo:
                lo = x
            if x > hi:
                hi = x
        s[PL_LO] = lo
        s[PL_HI] = hi
        s[PL_COUNT] = count + 1.0
        s[PL_LAST_CHANNEL] = channel
        s[PL_LAST_LIKELIHOOD] = best
        return score

    cdef double step(self, double x) except? -1.0:
        """``update`` for C callers (the detector bank's common path)."""
        cdef double r0, r1 = NAN, x1
        if self._s == NULL:
            raise RuntimeError("detector is not initialised (use its constructor)")
        if not fabs(x) <= MAX_MAGNITUDE:  # NaN, infinite, or too large to square
            self._s[PL_REJECTED] += 1.0
            return NAN
        r0 = self._z0.step(x) if self._z0 is not None else self._update0(x)
        if self._period > 0:
            # NaN until a season is seen: the member refuses (and counts) it, as in the batch
            x1 = self._season(x)
            r1 = self._z1.step(x1) if self._z1 is not None else self._update1(x1)
        return self._step(x, r0, r1)

    def update(self, x):
        """Feed ``x`` to the members, score their raw scores, learn; return the alert score.

        In [0, 1]: 0 while learning; at or above ``threshold`` only for the
        first point of an incident. NaN (and ``rejected`` bumped, every state
        untouched) when ``x`` is NaN or infinite (an int too large for a float is infinite).
        """
        return self.step(as_point(x))
