"""AlertPipeline: raw detector scores in, alerts worth paging for out; and the default detector.

A detector's raw score (a z-score, a forecast error over its scale) says how
unusual one point is; it does not say whether a person should be woken. The
pipeline, after Numenta's HTM anomaly likelihood (Ahmad et al. 2017), asks
how unusual the *recent scores* are given the scores this series usually
gets, so a noisy series and a quiet one alert alike, and it raises an
incident once, not on every point of it:

1. **Likelihood.** Each raw score ``r`` is squashed to ``r / (r + 3)``; the
   average of the last 10 is compared with the long-run mean and variance of
   such averages (memory ~2016 points, a week of 5-minute samples); the
   Gaussian tail probability ``p`` of that average becomes the score
   ``log(p) / log(1e-10)`` in [0, 1] (HTM's log-likelihood: 0.5 is p = 1e-5).
2. **Learning period.** No score before ``learning`` points (HTM: 288 + 100).
3. **Range rule.** A value beyond the range seen so far by more than
   ``range_tolerance`` of its width scores 1 (NAB's HTM detector does the
   same): a new extreme is news however the detector's model has drifted.
4. **Seasonality.** With ``season=P`` a second channel scores the seasonal
   difference ``x_t - x_(t-P)`` with its own Z-score; it counts while x_t and
   x_(t-P) correlate at least 0.5, i.e. while the seasonal-naive forecast
   explains the series better than its mean.
5. **Incidents.** The first point reaching ``threshold`` is an alert and
   opens an incident; until 30 points in a row score below 0.3 the incident
   stays open and its points score at most 0.3 -- one page per incident (NAB,
   like a person on call, counts only the first). A level shift is one
   incident: the detectors keep learning through it, so the new level is
   normal once they have (a Z-score window's length), and the incident ends.

Everything -- the members' states included -- lives in one float64 buffer;
``update`` runs in Cython (``_pipeline.pyx``), without numpy, ``update_many``
in Numba (``kernels_pipeline``), bit for bit alike.
"""

from __future__ import annotations

import copy
import itertools
import math
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from perfsdk._native import PipelineCore, kernels as K, state_buffer
from perfsdk._runtime import check_int, check_number, check_str
from perfsdk.detect._base import MAX_POINTS, StreamingDetector, as_scalar, check_slots
from perfsdk.detect.anomaly import Anomaly
from perfsdk.detect.zscore import ZScoreDetector

if TYPE_CHECKING:
    import numpy as np

    from perfsdk._native import Slots

__all__ = ["AlertPipeline", "default_detector"]

#: HTM's constants (``anomaly_likelihood.py``): averaging window, floors on the
#: distribution of averaged scores, and the learning period (288 + 100 points).
AVERAGE = 10
MIN_VAR = 0.0003
MIN_MEAN = 0.03
LEARNING = 388
#: Memory of the long-run distribution of averaged scores, in points.
MEMORY = 2016
#: A raw score r enters as r / (r + SQUASH): |z| = 3 is 0.5.
SQUASH = 3.0
#: An incident ends after QUIET points in a row scoring below RELEASE.
RELEASE = 0.3
QUIET = 30
#: The default member's bounded influence (``ZScoreDetector(clip=...)``), in standard deviations:
#: far beyond what a heavy-tailed latency's own spread gives (by Chebyshev's bound at most 0.16 %
#: of any distribution lies beyond 25), so only stalls are bounded. At 10, NAB's alerts lost 0.5.
MEMBER_CLIP = 25.0
#: The seasonal channel counts while corr(x_t, x_(t-season)) reaches this.
SEASON_CORR = 0.5

#: Batches run in chunks of this many points: the kernels' buffers stay in cache
#: and are reused, instead of a dozen arrays as long as the batch.
CHUNK = 1 << 16

_CHANNEL_NAMES = {0.0: "detector", 1.0: "seasonal", float(K.PL_RANGE_CHANNEL): "range"}


def _member_z() -> ZScoreDetector:
    """The default raw detector: a 256-point Z-score that scores from its 32nd point, an isolated
    point beyond ``MEMBER_CLIP`` standard deviations learned at it (one stalled request must not
    hide a slowdown smaller than itself for a whole window)."""
    return ZScoreDetector(window=256, warmup=32, clip=MEMBER_CLIP)


class AlertPipeline(StreamingDetector, PipelineCore):
    """Turns a streaming detector's raw scores into alerts: one per incident.

    Parameters
    ----------
    detector
        The raw detector (default: a 256-point Z-score scoring from its 32nd
        point). The pipeline takes it over: its state moves into the
        pipeline's state array.
    season
        Seasonal period in points (e.g. 288: a day of 5-minute samples; at most
        ``MAX_POINTS``, 10**7), or None. Adds the seasonal channel (see the module docstring).
    threshold
        Alert when the score reaches it (default 0.5: a tail probability of
        1e-5, HTM's choice).
    learning
        Points before the first score.
    range_tolerance
        A value beyond [min, max] seen so far by this share of max - min
        scores 1; None turns the rule off.
    name
        Name used in anomaly records.

    Attributes
    ----------
    state : numpy.ndarray
        The whole state: the pipeline's slots, then each member's.
    alerts, suppressed, rejected : int
        Incidents raised; points of open incidents that reached the threshold
        (not paged); NaN/inf values refused (every state left unchanged).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> xs = 100 + rng.uniform(-1, 1, 3000)
    >>> xs[2000:] += 8                       # a level shift
    >>> det = AlertPipeline()
    >>> [a.index for a in det.detect_many(xs)], det.suppressed > 0   # one page, then quiet
    ([2000], True)
    >>> scores = det.update_many(xs[:10]); bool(((scores >= 0) & (scores <= 1)).all())
    True

    References
    ----------
    S. Ahmad, A. Lavin, S. Purdy, Z. Agha, "Unsupervised real-time anomaly
    detection for streaming data", Neurocomputing 262, 2017 (the anomaly
    likelihood). A. Lavin, S. Ahmad, "Evaluating real-time anomaly detection
    algorithms -- the Numenta Anomaly Benchmark", ICMLA 2015.
    """

    _COUNT_AT = K.PL_COUNT
    rejected_slot = K.PL_REJECTED
    _N_PARAMS = K.PL_N_PARAMS
    #: 0.0, not NaN, while learning: an alert score is a level in [0, 1] that a dashboard or an
    #: alert rule reads, and a series being learned gives no reason to page; NaN stays the mark of
    #: a rejected value, so refused data is not mistaken for a new series.
    warming_score = 0.0

    def __init__(
        self,
        detector: Any = None,
        *,
        season: int | None = None,
        threshold: float = 0.5,
        learning: int = LEARNING,
        range_tolerance: float | None = 0.05,
        name: str | None = None,
    ) -> None:
        member = _member_z() if detector is None else detector
        if not isinstance(member, StreamingDetector) or isinstance(member, AlertPipeline):
            raise TypeError("detector must be a perfsdk streaming detector (a ZScoreDetector or an ArimaDetector), "
                            f"got {type(member).__name__}")
        if member.in_pipeline:  # its state lives in that pipeline's buffer: two would write one state
            raise ValueError(f"detector {member.name!r} already belongs to an AlertPipeline: give this one its "
                             "own (detector.clone())")
        if season is not None:
            check_int("season", season, minimum=2, maximum=MAX_POINTS)
        check_number("threshold", threshold, low=0.0, high=1.0, low_open=True)
        check_int("learning", learning, minimum=1)
        if range_tolerance is not None:
            check_number("range_tolerance", range_tolerance, low=0.0)
        if name is not None:
            check_str("name", name)
        self.detector = member
        self.season = None if season is None else int(season)
        self.threshold = float(threshold)
        self.learning = int(learning)
        self.range_tolerance = None if range_tolerance is None else float(range_tolerance)
        self._custom_name = name
        self.name = name or f"pipeline({member.name}" + (f", season={self.season})" if self.season else ")")
        self.members: list[StreamingDetector] = [member]
        if self.season:
            self.members.append(_member_z())
        self.atomic_update = all(m.atomic_update for m in self.members)
        channels = len(self.members)
        _, _, ring = K.pipeline_offsets(channels, AVERAGE)
        self._own = ring + (self.season or 0)  # the pipeline's slots; the members' follow
        sizes = [len(m.slots) for m in self.members]
        self._bounds = list(itertools.accumulate([self._own, *sizes]))
        whole = self._joined([m.slots for m in self.members])
        for m, lo, hi in zip(self.members, self._bounds[:-1], self._bounds[1:]):
            m._bind(whole[lo:hi])  # the member now works in the pipeline's buffer
            m.in_pipeline = True
        self._whole = whole
        self._whole_array: np.ndarray | None = None
        self._attach(whole[: self._own], self.members[0].update,
                   self.members[1].update if self.season else None)
        self._details = {"members": [m.name for m in self.members], "season": self.season,
                         "alert_threshold": self.threshold}

    # -- state ---------------------------------------------------------------
    def _fresh_own(self) -> Slots:
        own = state_buffer(self._own)
        own[K.PL_CHANNELS] = len(self.members)
        own[K.PL_AVERAGE] = AVERAGE
        own[K.PL_ALPHA] = 1.0 / MEMORY
        own[K.PL_LEARN] = self.learning
        own[K.PL_SQUASH] = SQUASH
        own[K.PL_MIN_VAR] = MIN_VAR
        own[K.PL_MIN_MEAN] = MIN_MEAN
        own[K.PL_RANGE_TOL] = -1.0 if self.range_tolerance is None else self.range_tolerance
        own[K.PL_THRESHOLD] = self.threshold
        own[K.PL_RELEASE] = min(RELEASE, self.threshold)
        own[K.PL_QUIET] = QUIET
        own[K.PL_SEASON] = self.season or 0
        own[K.PL_SEASON_CORR] = SEASON_CORR
        own[K.PL_SEASON_ALPHA] = 1.0 / (4 * self.season) if self.season else 0.0
        return own

    @property
    def state(self) -> np.ndarray:  # type: ignore[override]
        """The whole state as a numpy array: the pipeline's slots, then each member's."""
        if self._whole_array is None:
            import numpy as np

            self._whole_array = np.asarray(self._whole)
        return self._whole_array

    @property
    def slots(self) -> Slots:  # type: ignore[override]
        """The whole state as a memoryview of doubles."""
        return self._whole

    def _fresh_state(self) -> Slots:
        return self._joined([m._fresh_state() for m in self.members])

    def _joined(self, member_states: list[Slots]) -> Slots:
        """One buffer: fresh pipeline slots, then each member's state as given."""
        whole = state_buffer(self._bounds[-1])
        whole[: self._own] = self._fresh_own()
        for part, lo, hi in zip(member_states, self._bounds[:-1], self._bounds[1:]):
            whole[lo:hi] = part
        return whole

    def _check_snapshot(self, snap: Any) -> None:
        check_slots(snap, {
            "count": (K.PL_COUNT, 0, math.inf), "rejected": (K.PL_REJECTED, 0, math.inf),
            "incident": (K.PL_INCIDENT, 0, 2), "season position": (K.PL_S_POS, 0, max(self.season or 0, 1)),
        })
        first, stride, _ = K.pipeline_offsets(len(self.members), AVERAGE)
        for c in range(len(self.members)):
            check_slots(snap, {"channel position": (first + c * stride + K.PL_CH_POS, 0, AVERAGE)})
        for m, lo, hi in zip(self.members, self._bounds[:-1], self._bounds[1:]):
            # each member's part whole (its parameters too): a refused restore loads nothing
            m._checked(snap[lo:hi])

    def _load(self, snap: np.ndarray, detector_in_place: bool = False) -> None:
        """Put a checked snapshot in place. ``detector_in_place``: the detector holds its part
        already, with what its snapshot does not (an unpickled one: see ``__reduce__``)."""
        first = 1 if detector_in_place else 0
        for m, lo, hi in zip(self.members[first:], self._bounds[first:-1], self._bounds[first + 1:]):
            m.restore(snap[lo:hi])  # in place, through the member's hooks (ARIMA's: a new life for its fits)
        self.state[: self._own] = snap[: self._own]

    def reset(self) -> None:
        """Forget everything learned (the members too); parameters stay."""
        for m in self.members:
            m.reset()
        self._whole[: self._own] = self._fresh_own()

    def clone(self) -> "AlertPipeline":
        """A fresh, unfitted pipeline over a fresh clone of the detector."""
        params = self._params()
        params["detector"] = self.detector.clone()
        return type(self)(**params)

    def _params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"detector": self.detector}
        if self.season is not None:
            params["season"] = self.season
        params.update(threshold=self.threshold, learning=self.learning, range_tolerance=self.range_tolerance)
        if self._custom_name is not None:
            params["name"] = self._custom_name
        return params

    def __reduce__(self):
        """Pickled and copied whole: the detector as itself, through its own pickling, which keeps
        what a snapshot does not hold (an ``ArimaDetector``'s fit history: rebuilt from a clone
        and a snapshot, its next refit searched the order again); then this snapshot."""
        return (_restore_pipeline, (type(self), self._params(), self.snapshot()))

    def __copy__(self) -> "AlertPipeline":
        # a shallow copy would hand this pipeline's own detector to the copy (one detector, two pipelines)
        return copy.deepcopy(self)

    # -- counters ------------------------------------------------------------
    @property
    def alerts(self) -> int:
        """Incidents raised (alerts paged)."""
        return int(self._whole[K.PL_ALERTS])

    @property
    def suppressed(self) -> int:
        """Points of open incidents that reached the threshold: follow-ups, not paged."""
        return int(self._whole[K.PL_SUPPRESSED])

    @property
    def seasonal(self) -> bool:
        """Whether the seasonal channel counts now."""
        return bool(self._whole[K.PL_SEASON_ON])

    # -- River verbs -----------------------------------------------------------
    def score_one(self, x: float | Mapping[str, float]) -> float:
        """The score ``x`` would get, without learning it (River's verb; copies the state). The
        state is put back as it was, in the same life: an ARIMA member's fit in flight still lands
        (``restore`` would start a new life and drop it: ``score_one`` before every ``learn_one``
        left ARIMA without a fit)."""
        snap = self.snapshot()
        for m in self.members:
            m._previewing = True
        try:
            score = self.update(as_scalar(x))
        finally:
            for m, lo, hi in zip(self.members, self._bounds[:-1], self._bounds[1:]):
                m._previewing = False
                m._rewind(snap[lo:hi])
            self.state[: self._own] = snap[: self._own]
        return 0.0 if math.isnan(score) else score

    def learn_one(self, x: float | Mapping[str, float]) -> None:
        """Learn ``x`` (River's verb)."""
        self.update(as_scalar(x))

    # -- batches -------------------------------------------------------------
    def _run(self, values: np.ndarray, details: bool) -> tuple[np.ndarray, np.ndarray, Any]:
        """Both engines' batch path over the valid points of ``values``.

        Returns ``(scores, valid, explain)``: the scores of the valid points,
        where they are, and with ``details`` ``explain(rows)`` -> ``(channel,
        expected, std)`` of those rows (what ``check`` reports for them).
        """
        import numpy as np

        valid = np.abs(values) <= K.MAX_MAGNITUDE  # NaN, infinite, or too large to square: refused
        v = values if valid.all() else np.ascontiguousarray(values[valid])
        whole = self.state
        whole[K.PL_REJECTED] += len(values) - len(v)
        m = len(v)
        if details:
            r0, e0, s0 = self.members[0].update_many(v, details=True)
        else:
            r0 = self.members[0].update_many(v)
        r1 = gate = base = e1 = s1 = np.empty(0)
        if self.season:
            d, base, gate = np.empty(m), np.empty(m), np.empty(m)
            K.pipeline_season_many(whole, v, d, base, gate)
            # d is NaN until a season is seen: the member refuses (and counts) it, as ``update`` does
            if details:
                r1, e1, s1 = self.members[1].update_many(d, details=True)
            else:
                r1 = self.members[1].update_many(d)
        scores, channel = np.empty(m), np.empty(m)
        lo_hi = np.empty((m if details else 0, 2))
        K.pipeline_step_many(whole, v, r0, r1, gate, scores, channel, lo_hi)
        if not details:
            return scores, valid, None

        def explain(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            ch = channel[rows]
            expected, std = e0[rows].copy(), s0[rows].copy()
            if self.season:
                at = ch == 1.0
                expected[at], std[at] = e1[rows][at] + base[rows][at], s1[rows][at]
            at = ch == K.PL_RANGE_CHANNEL
            lo, hi = lo_hi[rows, 0][at], lo_hi[rows, 1][at]
            expected[at], std[at] = 0.5 * (lo + hi), hi - lo
            return ch, expected, std

        return scores, valid, explain

    def update_many(self, xs: Iterable[float] | np.ndarray, details: bool = False) -> Any:
        """``update`` over a batch, in compiled code: the alert score of each point.

        In [0, 1] (NaN for a rejected value), the same numbers as ``update``
        one by one. With ``details=True`` returns ``(scores, expected, std)``:
        what each point was compared with by the channel that scored it highest.
        """
        import numpy as np

        values = self._as_batch(xs)
        outs = [np.empty(len(values)) for _ in range(3 if details else 1)]
        for lo in range(0, len(values), CHUNK):
            chunk = values[lo : lo + CHUNK]
            scores, valid, explain = self._run(chunk, details)
            got = (scores, *explain(np.arange(len(scores)))[1:]) if details else (scores,)
            for out, a in zip(outs, got):
                out[lo : lo + len(chunk)] = a if len(a) == len(chunk) else _scatter(a, valid)
        return tuple(outs) if details else outs[0]

    def detect_many(
        self, xs: Iterable[float] | np.ndarray, timestamps: Sequence[Any] | None = None
    ) -> list[Anomaly]:
        """The alerts a person would be paged for, explained: the same as ``check`` one by one."""
        import numpy as np

        values = self._as_batch(xs)
        if timestamps is not None and len(timestamps) != len(values):
            raise ValueError(f"timestamps has {len(timestamps)} entries but xs has {len(values)}")
        first = self.n_seen
        alerts: list[Anomaly] = []
        for lo in range(0, len(values), CHUNK):
            scores, valid, explain = self._run(values[lo : lo + CHUNK], True)
            rows = np.flatnonzero(scores >= self.threshold)  # alerts are rare: explain only them
            if not len(rows):
                continue
            channel, expected, std = explain(rows)
            where = lo + np.flatnonzero(valid)[rows]  # positions in the caller's batch
            alerts.extend(
                self._alert(first + int(i), float(values[i]), float(scores[r]), channel[k], float(expected[k]),
                            float(std[k]), None if timestamps is None else timestamps[int(i)])
                for k, (r, i) in enumerate(zip(rows, where))
            )
        return alerts

    def check(self, x: float, timestamp: Any = None) -> Anomaly | None:
        """``update(x)``; the explained alert if ``x`` opens an incident, else None."""
        score = self.update(x)
        return self.explain_alert(x, score, timestamp) if score >= self.threshold else None

    def explain_alert(self, x: float, score: float, timestamp: Any = None) -> Anomaly:
        """The alert the point just updated (``x``, scoring ``score``) raises, explained (rare:
        only an alert pays for its explanation; call it before the next update)."""
        channel, expected, std = self._explain_last()
        return self._alert(self.n_seen - 1, float(x), score, channel, expected, std, timestamp)

    def _explain_last(self) -> tuple[float, float, float]:
        """(channel, expected, std) of the point just scored, as ``_run`` reports them."""
        channel = float(self._whole[K.PL_LAST_CHANNEL])
        if channel == K.PL_RANGE_CHANNEL:
            lo, hi = self.last_lo, self.last_hi
            return channel, 0.5 * (lo + hi), hi - lo
        member = self.members[int(channel)]
        expected = member.last_expected + (self.last_base if channel == 1.0 else 0.0)
        return channel, expected, member.last_std

    def explain_point(self, value: float, score: float) -> tuple[int, float, float]:
        """``(index, expected, std)`` of the point just scored (see ``Detector``)."""
        _, expected, std = self._explain_last()
        return self.n_seen - 1, expected, std

    @property
    def last_expected(self) -> float:  # type: ignore[override]
        return self._explain_last()[1]

    @property
    def last_std(self) -> float:  # type: ignore[override]
        return self._explain_last()[2]

    def _alert(self, index: int, value: float, score: float, channel: float, expected: float, std: float,
               timestamp: Any) -> Anomaly:
        kind = _CHANNEL_NAMES[float(channel)]
        if kind == "range":
            # the band expected +/- threshold * std is then exactly the tolerated range
            threshold = 0.5 + float(self.range_tolerance or 0.0)
        else:
            threshold = float(self.members[int(channel)].threshold)
        z = (value - expected) / std if std > 0 else math.copysign(math.inf, value - expected)
        details = {
            **self._details, "channel": kind, "alert_score": score,
            "tail_probability": max(math.exp(score * K.LOG_TAIL_FLOOR) - K.TAIL_FLOOR, 0.0),
            "averaged_over": AVERAGE,
        }
        return Anomaly(detector=self.name, index=index, value=value, expected=expected, std=std, score=z,
                       threshold=threshold, timestamp=timestamp, details=details)


def _scatter(a: np.ndarray, valid: np.ndarray) -> np.ndarray:
    import numpy as np

    out = np.full(len(valid), np.nan)
    out[valid] = a
    return out


def _restore_pipeline(cls: type, params: dict[str, Any], snapshot: np.ndarray) -> AlertPipeline:
    pipeline = cls(**params)  # takes the unpickled detector over, its state as it was
    pipeline._load(pipeline._checked(snapshot), detector_in_place=True)
    return pipeline


def default_detector(*, name: str | None = None) -> AlertPipeline:
    """A fresh instance of perfsdk's default detector: ``perfsdk.init()`` puts one on every
    span name, and ``perfsdk analyze`` judges exported spans with it.

    A 256-point Z-score and a daily seasonal channel (288 points: a day of
    5-minute samples; it only counts on series that repeat daily) through the
    alert pipeline: ``check(value, timestamp)`` returns an explained alert
    once per incident, ``detect_many(values, timestamps)`` the same alerts
    for a batch, ``update_many(values)`` a score in [0, 1] per point.

    >>> det = default_detector()
    >>> det.threshold
    0.5
    """
    return AlertPipeline(_member_z(), season=288, name=name)
