# cython: language_level=3
"""The detector bank's per-value path, compiled.

``DetectorBank.observe`` runs for every ended span on the application's thread.
Its common case -- a known name, a normal value -- is a dictionary look-up and
one update of each of the name's detectors. In Python that was about 2.5 µs a
span in place (the bank's ``observe``, the pipeline's ``check``, two ``update``
calls); here the look-up and the loop are C, and a Z-score or an alert
pipeline with the compiled engines is stepped without a Python call. What is
rare stays in Python, in the subclass: a new name, a failure, a run or an alert
to follow, and any detector whose ``update`` is Python's.
"""

from libc.math cimport fabs

from perfsdk._native._pipeline cimport PipelineCore
from perfsdk._native._pipeline import _keeps
from perfsdk._native._zscore cimport ZScoreCore

include "_layout.pxi"  # MAX_MAGNITUDE: what every detector refuses, one definition in layout.py

#: How a detector is updated: through its Python ``update`` (or ``check``), or stepped in C.
STEP_PYTHON = 0
STEP_ZSCORE = 1
STEP_PIPELINE = 2


def stepping(det, check_python=None):
    """How the common path updates ``det``: ``STEP_ZSCORE``/``STEP_PIPELINE`` when its
    ``update`` is the compiled engine's own, ``STEP_PYTHON`` otherwise (a detector that
    overrides ``update`` -- or, for a pipeline, ``check_python``, its Python ``check`` --
    in its class or on the instance is called as written). Decided once, when the bank makes
    a name's series."""
    if isinstance(det, ZScoreCore) and _keeps(det, "update", ZScoreCore.update):
        return STEP_ZSCORE
    if (isinstance(det, PipelineCore) and _keeps(det, "update", PipelineCore.update)
            and (check_python is None or _keeps(det, "check", check_python))):
        return STEP_PIPELINE
    return STEP_PYTHON


cdef inline double _step(object det, int kind, double value) except? -1.0:
    if kind == STEP_ZSCORE:
        return (<ZScoreCore> det).step(value)
    if kind == STEP_PIPELINE:
        return (<PipelineCore> det).step(value)
    return det.update(value)


cdef class BankPath:
    """The common path of ``DetectorBank.observe`` (see the module docstring).

    The subclass keeps ``_series`` (name -> its ``Series``: ``slots`` are ``(k, detector,
    threshold, stepping)``, ``pipelines`` ``(k, pipeline, threshold, stepping)``, ``name`` the
    series' own: the overflow series' for a name past the cap) and defines
    the rare paths: ``_series_for(name, timestamp)``, ``_follow_errors``, ``_advance_run``,
    ``_advance_alert``, and a pipeline's ``explain_alert(value, score, timestamp)``.
    """

    def __cinit__(self, *args, **kwargs):
        self._series = {}

    def observe(self, name, double value, timestamp=None, bint error=False, context=None):
        """Feed one value (a number: anything else is a TypeError, before anything is counted);
        return the anomalies it completes (usually none)."""
        return self.observe_c(name, value, timestamp, error, context)

    cdef object observe_c(self, object name, double value, object timestamp, bint error, object context):
        """``observe`` for C callers (the span processor's common path)."""
        cdef double z, threshold
        cdef int kind
        cdef list runs, pending
        # NaN, infinite, too large to square: every detector refuses it (counted, its state unchanged),
        # so it is no point of any run or alert either -- it neither extends nor ends one
        cdef bint refused = not fabs(value) <= MAX_MAGNITUDE
        series = self._series.get(name)
        if series is None:
            series = self._series_for(name, timestamp)
            name = series.name  # past the cap, the overflow series': its anomalies are not this name's
        emitted = ()
        if error or series.failing:  # rare: a failure, or the spans after one
            emitted = self._follow_errors(series, name, error, timestamp, context)
        lock = series.lock  # None for atomic detectors: the common path takes no lock
        if lock is not None:
            lock.acquire()
        try:
            runs = series.runs
            for k, det, threshold, kind in series.slots:
                z = _step(det, kind, value)
                if refused:
                    continue
                if runs[k] or z > threshold or z < -threshold:  # NaN (warming up) is neither
                    emitted = self._advance_run(series, k, det, threshold, name, value, z,
                                                timestamp, context, emitted)
            pending = series.pending
            for k, pipeline, threshold, kind in series.pipelines:
                if kind == STEP_PYTHON:
                    alert = pipeline.check(value, timestamp)
                else:
                    z = _step(pipeline, kind, value)
                    # rare: only now pay for the explanation (under the lock: of this point)
                    alert = pipeline.explain_alert(value, z, timestamp) if z >= threshold else None
                if refused:
                    continue
                if alert is not None or pending[k] is not None:
                    emitted = self._advance_alert(series, k, pipeline, name, value, alert, timestamp,
                                                  context, emitted)
            return emitted
        finally:
            if lock is not None:
                lock.release()
