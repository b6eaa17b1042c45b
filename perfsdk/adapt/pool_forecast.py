"""ArrivalForecast: a pool's arrival rate, forecast a few intervals ahead with perfsdk's ARIMA.

A pool that sizes itself only from what it measured grows after the queue
has formed. Connections take time to open and the controller moves a step
at a time, so at the start of a surge (a morning ramp, a campaign) requests
wait. The forecaster follows the arrival rate once an interval and says
when it expects the rate to rise well above today's; the pool then asks for
enough connections ahead of it (``PoolEvidence``'s floor).

The model is an ``ArimaDetector`` of order (0, 2, 2), Holt's linear trend: a level and a
slope, each corrected by every interval, so the forecast starts from the latest intervals and
extrapolates a ramp. With a known period (``season``, in intervals) it is (1, 1, 1) on the rate
less the rate a season before: the last season carries the shape (a rush), the model the offset
from it. statsmodels fits it on the pool's own thread, never on the application's, every 60
intervals (or every ``warmup``) on the last 512 (or two warm-ups). On arrivals at random the fit
lands on the edge of invertibility (an MA of -1: "the rate never moves"), where the detector's
forecast stays on the first interval of the fit's window until the next fit: a step from 50/s to
100/s was forecast at 47/s for 39 intervals, a ramp flat. So the fit is held where the forecast
weighs each interval at least ``LEVEL_WEIGHT`` in its level and ``SLOPE_WEIGHT`` in its slope
(``detector.held`` counts such fits, ``detector.fit_note`` says by how much): that step is now
forecast within 10/s 3-5 intervals after it, and a ramp of 3/s an interval as one.

A surge is judged against a smoothed level (``LEVEL_WEIGHT``), or the last interval's rate where
that is higher (never against a low interval alone), and must clear the forecast's uncertainty
(``SURGE_CONFIDENCE``): the model's own, or the error its forecasts have made, whichever is larger
(a seasonal model fitted to a rate without a season forecast 40 % above it for hundreds of
intervals, sure of itself). Judged by its mean against the last interval, a flat rate of 50/s
(Poisson) announced a surge in 8 % of its intervals, and in 30-90 % with a season of 24 (up to 89/s).
"""

from __future__ import annotations

import functools
import logging
import math
import numbers
from statistics import NormalDist
from typing import Any

from perfsdk._runtime import check_int, check_number

__all__ = ["ArrivalForecast", "MAX_HORIZON", "MAX_RATE", "MAX_SEASON", "MAX_WARMUP", "MIN_WARMUP"]

#: The longest season, in intervals: a week of one-second intervals. The detector keeps two
#: seasons of history (about 10 MB at this bound); a longer one allocated it all at once
#: (10**8 intervals: 800 MB at construction).
MAX_SEASON = 7 * 86400
#: The longest warm-up, in intervals (a week of one-second intervals, as ``MAX_SEASON``): the
#: detector keeps two of it, within its bound (above 5,000,000 the error named ``history``).
MAX_WARMUP = MAX_SEASON
#: The fewest intervals a first fit is made on.
MIN_WARMUP = 20
#: The furthest a forecast looks ahead, in intervals (a pool prepares a few intervals ahead).
MAX_HORIZON = 1000
#: The highest arrival rate taken, per second: no pool lends a billion connections a second, so a
#: higher one is a broken clock or counter (1e200 overflowed the forecast's error, half updated).
MAX_RATE = 1e9
#: The weight of each interval's rate in today's level (an exponentially weighted mean: about
#: the last five intervals), and the least it has in the forecast's level.
LEVEL_WEIGHT = 0.2
#: The least weight of each interval in the forecast's slope (Holt's alpha times beta): a ramp
#: is picked up within a few intervals, an interval's noise mostly left out.
SLOPE_WEIGHT = 0.02
#: A surge must be forecast with this confidence: the lower bound of the one-sided prediction
#: interval at the forecast's peak reaches ``surge`` times today's level.
SURGE_CONFIDENCE = 0.99
_SURGE_Z = NormalDist().inv_cdf(SURGE_CONFIDENCE)

log = logging.getLogger("perfsdk.pool")


class ArrivalForecast:
    """Forecasts a pool's arrival rate (acquisitions per second).

    Parameters
    ----------
    horizon
        Intervals ahead the pool prepares for (opening connections and a step or two of the
        controller); at most ``MAX_HORIZON`` (1,000).
    season
        The rate's period in intervals, if it has one (e.g. 86400 for a daily cycle at 1 s
        intervals); at most ``MAX_SEASON`` (604,800: a week at 1 s).
    warmup
        Intervals before the first fit (no forecast before it), ``MIN_WARMUP`` (20) to
        ``MAX_WARMUP`` (604,800); with a ``season``, at least that season and 20 intervals more
        (a seasonal difference needs a season to difference against).
    surge
        A forecast of this many times today's rate (``level``, or ``last`` where that is higher)
        or more, beyond the forecast's uncertainty (``SURGE_CONFIDENCE``), is a surge to prepare for.

    Attributes
    ----------
    level
        Today's rate: the intervals' rates, exponentially weighted (``LEVEL_WEIGHT``); NaN before the first.
    last
        The last interval's rate (one interval's noise: not what a surge is judged against).
    error
        How far the forecasts a step ahead have missed: their root mean square error, weighted as
        ``level`` is (NaN before the first forecast is checked).
    rejected
        Rates refused by ``update`` (not a number, NaN, infinite, negative or above ``MAX_RATE``).
    detector
        The ARIMA detector: its ``fits`` and ``fit_failures``, and ``held``, the fits held to
        follow the rate, with ``fit_note`` saying by how much.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> forecast = ArrivalForecast(horizon=5, warmup=60)
    >>> for t in range(150):        # 100/s at random, then a ramp of 10/s more each interval
    ...     forecast.update(float(rng.poisson(100 + 10 * max(0, t - 120))))
    >>> 400 < forecast.peak() < 480   # the ramp goes on: 440/s within 5 intervals (now 390)
    True
    """

    def __init__(self, *, horizon: int = 5, season: int | None = None, warmup: int = 60,
                 surge: float = 1.2) -> None:
        self.horizon = check_int("horizon", horizon, minimum=1, maximum=MAX_HORIZON)
        self.surge = check_number("surge", surge, low=1.0)
        warmup = check_int("warmup", warmup, minimum=MIN_WARMUP, maximum=MAX_WARMUP)
        if season is not None:
            warmup = max(warmup, check_int("season", season, minimum=2, maximum=MAX_SEASON) + MIN_WARMUP)
        self.detector: Any = _arrival_model()(
            order=(0, 2, 2) if season is None else (1, 1, 1), season=season, warmup=warmup,
            history=max(512, 2 * warmup), refit_every=max(60, warmup), quick_start=False, background=False,
            name="pool arrivals")
        self.last = self.level = math.nan
        self.error = math.nan  # the forecasts' root mean square error a step ahead (weighted as ``level``)
        self.rejected = 0
        self._ahead = math.nan  # the last forecast made for the interval now running

    def update(self, rate: float) -> None:
        """The rate of the interval that just ended. One that is no rate (see ``rejected``) is
        counted and changes nothing: the pool's thread calls this, and a bad interval must not stop it."""
        if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0.0 <= rate <= MAX_RATE:
            self.rejected += 1  # (NaN fails the comparison)
            return
        rate = float(rate)
        self.detector.update(rate)
        self.level = _weighted(self.level, rate)
        miss = rate - self._ahead  # a product, not ``** 2``: a wild forecast is inf, never OverflowError
        self.error = math.sqrt(_weighted(self.error * self.error, miss * miss))
        self.last, self._ahead = rate, math.nan

    def peak(self) -> float:
        """The highest rate forecast within ``horizon`` intervals (NaN before the first fit)."""
        return self._peak()[0]

    def _peak(self) -> tuple[float, float]:
        """The highest rate forecast within ``horizon`` intervals and the lower bound of its
        prediction interval (``SURGE_CONFIDENCE``; wider where the forecasts have erred by more
        than the model says); NaN before the first fit."""
        if self.detector.model is None:
            return math.nan, math.nan
        forecast = self.detector.forecast(self.horizon, level=2 * SURGE_CONFIDENCE - 1)  # one-sided
        self._ahead = float(forecast.mean[0])
        step = int(forecast.mean.argmax())
        lower = float(forecast.lower[step])
        if math.isfinite(self.error):
            lower = min(lower, float(forecast.mean[step]) - _SURGE_Z * self.error)
        return float(max(0.0, forecast.mean[step])), lower

    def expected_surge(self) -> float | None:
        """The forecast peak if it is a surge (even the low end of its prediction interval is
        ``surge`` times today's ``level``, or the ``last`` rate where higher, or more), else None."""
        peak, lower = self._peak()
        if not math.isfinite(self.level) or not lower >= self.surge * max(self.level, self.last, 1.0):  # NaN: none
            return None
        return peak


def _weighted(mean: float, value: float) -> float:
    """``mean`` moved toward ``value`` by ``LEVEL_WEIGHT`` (NaN: not started; a NaN value: kept)."""
    if math.isnan(value):
        return mean
    return value if math.isnan(mean) else mean + LEVEL_WEIGHT * (value - mean)


@functools.cache
def _arrival_model() -> type:
    """The detector's class, with its fits held (``_held``). Made with the first forecaster, not
    with perfsdk: the detector brings its compiled kernels, its fits statsmodels."""
    from perfsdk.detect import ArimaDetector, ArimaFit, FitError

    class _ArrivalModel(ArimaDetector):
        """An ``ArimaDetector`` whose fits are held where its forecasts follow the rate."""

        held = 0  # fits held (``_held``)
        fit_note: str | None = None  # the last held fit: by how much, and why

        def _fit_sample(self, ys: Any) -> Any:
            """statsmodels' fit, held (``_held``) on the same robust sample. One that fails is counted
            and the least-following model stands in: a forecaster is never left without a forecast
            for a warm-up more."""
            result = super()._fit_sample(ys)
            fit = result if isinstance(result, ArimaFit) else None
            try:
                held, note = _held(fit, ys, self.order, self.season)  # type: ignore[arg-type]
            except Exception as exc:  # numerical trouble in the residuals: a failed fit (``_install`` counts it)
                return FitError(f"holding the fit failed: {type(exc).__name__}: {exc}")
            if fit is None:  # counted here: what is installed is the stand-in, not the failure
                if self.last_fit_error is None:
                    log.warning("perfsdk: %s: %s (the least-following model stands in)", self.name, result)
                self.fit_failures += 1
                self.last_fit_error = str(result)
            if note is not None:
                self.held += 1
                self.fit_note = note
            return held

        def __reduce__(self) -> Any:
            """Pickled with its held fits' count and note, as the detector is with its fit history."""
            restore, (rebuild, args, history) = super().__reduce__()
            return restore, (rebuild, args, {**history, "held": self.held, "fit_note": self.fit_note})

    _ArrivalModel.__module__, _ArrivalModel.__qualname__ = __name__, "_ArrivalModel"  # pickled by name
    return _ArrivalModel


def __getattr__(name: str) -> Any:
    """``_ArrivalModel`` on first use (an unpickled forecaster asks for it by name)."""
    if name == "_ArrivalModel":
        return _arrival_model()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _held(fit: Any, y: Any, order: tuple[int, int, int], season: int | None) -> tuple[Any, str | None]:
    """``fit`` (None: it failed) held where the forecast weighs each interval at least ``LEVEL_WEIGHT``
    in its level (and ``SLOPE_WEIGHT`` in its slope; Holt's at most wholly); its variance then
    the held model's residuals'. On a rate at random, statsmodels' fit weighs it 0-2 %: an MA at -1,
    whose forecast the detector's one-step recursion never moves from the window's first interval.
    Returns the fit and, if held, a note saying how and why."""
    import numpy as np
    from scipy.signal import lfilter

    from perfsdk.detect import ArimaFit

    if order == (0, 2, 2):  # Holt: (1 - B)^2 y = e + (level + slope - 2) e' + (1 - level) e''
        level, slope = (0.0, 0.0) if fit is None else (1.0 - fit.ma[1], 1.0 + fit.ma[0] + fit.ma[1])
        new_level = min(max(level, LEVEL_WEIGHT), 1.0)
        new_slope = min(max(slope, SLOPE_WEIGHT), new_level)  # never more than the level: no overshoot
        ar: tuple[float, ...] = ()
        ma: tuple[float, ...] = (new_level + new_slope - 2.0, 1.0 - new_level)
        was = "failed" if fit is None else f"weighs an interval {level:.2f} in the level and {slope:.2f} in the slope"
        now = f"{new_level:.2f} and {new_slope:.2f}"
    else:  # (1, 1, 1) on the seasonal difference: the offset from the last season, followed as ``level``
        ar = (0.0,) if fit is None else fit.ar
        ma = (max(-1.0 if fit is None else fit.ma[0], LEVEL_WEIGHT - 1.0),)
        was = "failed" if fit is None else f"weighs an interval {1.0 + fit.ma[0]:.2f} in the offset from the last season"
        now = f"{1.0 + ma[0]:.2f}"
    if fit is not None and np.allclose(ar + ma, fit.ar + fit.ma, rtol=0.0, atol=1e-6):
        return fit, None  # (an optimiser's -0.8000001 is no hold)
    w = np.diff(y, order[1])
    if season:
        w = w[season:] - w[:-season]
    residuals = lfilter(np.r_[1.0, -np.asarray(ar)], np.r_[1.0, np.asarray(ma)], w)
    residuals = residuals[min(40, len(residuals) // 2):]  # the recursion's start (no errors yet) left out
    scale = max(1.0, float(np.mean(np.abs(y))))
    sigma2 = max(float(np.mean(residuals * residuals)), (1e-6 * scale) ** 2)  # a flat rate still has a scale
    held = ArimaFit(order=order, intercept=0.0, ar=ar, ma=ma, sigma2=sigma2, season=season)
    return held, (f"statsmodels' fit {was}; held at {now}, so the forecast follows the rate "
                  f"at least as fast as the level (a fit at -1 pins it to one interval)")
