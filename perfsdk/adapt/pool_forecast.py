"""ArrivalForecast: a pool's arrival rate, forecast a few intervals ahead with perfsdk's ARIMA.

A pool that sizes itself only from what it measured grows after the queue
has formed. Connections take time to open and the controller moves a step
at a time, so at the start of a surge (a morning ramp, a campaign) requests
wait. The forecaster follows the arrival rate once an interval and says
when it expects the rate to rise well above today's; the pool then asks for
enough connections ahead of it (``PoolEvidence``'s floor).

The model is ``ArimaDetector(order=(1, 1, 1))`` (a differenced AR with a
drift: it extrapolates a ramp), with a seasonal difference when the rate has
a known period (``season``, in intervals), fitted by statsmodels on the
pool's own thread, never on the application's. A surge is judged against a
smoothed level (``LEVEL_WEIGHT``), or the last interval's rate where that is
higher (never against a low interval alone), and must clear the forecast's
uncertainty (``SURGE_CONFIDENCE``): the model's own, or the error its
forecasts have made, whichever is larger (a seasonal model fitted to a rate
without a season forecast 40 % above it for hundreds of intervals, sure of
itself). Judged by its mean against the last interval, a flat rate of 50/s
(Poisson) announced a surge in 8 % of its intervals, and in 30-90 % with a
season of 24 (up to 89/s).
"""

from __future__ import annotations

import math
from statistics import NormalDist

from perfsdk._runtime import check_int, check_number

__all__ = ["ArrivalForecast", "MAX_HORIZON", "MAX_SEASON"]

#: The longest season, in intervals: a week of one-second intervals. The detector keeps two
#: seasons of history (about 10 MB at this bound); a longer one allocated it all at once
#: (10**8 intervals: 800 MB at construction).
MAX_SEASON = 7 * 86400
#: The furthest a forecast looks ahead, in intervals (a pool prepares a few intervals ahead).
MAX_HORIZON = 1000
#: The weight of each interval's rate in today's level (an exponentially weighted mean: about
#: the last five intervals).
LEVEL_WEIGHT = 0.2
#: A surge must be forecast with this confidence: the lower bound of the one-sided prediction
#: interval at the forecast's peak reaches ``surge`` times today's level.
SURGE_CONFIDENCE = 0.99
_SURGE_Z = NormalDist().inv_cdf(SURGE_CONFIDENCE)


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
        Intervals before the first fit (no forecast before it); with a ``season``, at least that
        season and 20 intervals more (a seasonal difference needs a season to difference against).
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

    Examples
    --------
    >>> forecast = ArrivalForecast(horizon=5, warmup=40)
    >>> for t in range(80):
    ...     forecast.update(100.0 + 10.0 * max(0, t - 50))      # flat, then a ramp
    >>> 420 < forecast.peak() < 450    # the ramp goes on: more within 5 intervals (now 390)
    True
    """

    def __init__(self, *, horizon: int = 5, season: int | None = None, warmup: int = 60,
                 surge: float = 1.2) -> None:
        self.horizon = check_int("horizon", horizon, minimum=1, maximum=MAX_HORIZON)
        self.surge = check_number("surge", surge, low=1.0)
        check_int("warmup", warmup, minimum=1)  # (the detector says how few it can fit on)
        if season is not None:
            warmup = max(warmup, check_int("season", season, minimum=2, maximum=MAX_SEASON) + 20)
        from perfsdk.detect.arima import ArimaDetector  # with the first pool, not with perfsdk

        self.detector = ArimaDetector(order=(1, 1, 1), season=season, warmup=warmup, history=max(512, 2 * warmup),
                                      refit_every=max(60, warmup), background=False, name="pool arrivals")
        self.last = self.level = math.nan
        self.error = math.nan  # the forecasts' root mean square error a step ahead (weighted as ``level``)
        self._ahead = math.nan  # the last forecast made for the interval now running

    def update(self, rate: float) -> None:
        """The rate of the interval that just ended."""
        if math.isfinite(rate) and rate >= 0:
            self.detector.update(rate)
            self.level = _weighted(self.level, rate)
            self.error = math.sqrt(_weighted(self.error ** 2, (rate - self._ahead) ** 2))
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
