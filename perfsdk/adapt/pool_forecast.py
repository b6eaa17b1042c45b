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
pool's own thread, never on the application's.
"""

from __future__ import annotations

import math

from perfsdk._runtime import check_int, check_number

__all__ = ["ArrivalForecast", "MAX_HORIZON", "MAX_SEASON"]

#: The longest season, in intervals: a week of one-second intervals. The detector keeps two
#: seasons of history (about 10 MB at this bound); a longer one allocated it all at once
#: (10**8 intervals: 800 MB at construction).
MAX_SEASON = 7 * 86400
#: The furthest a forecast looks ahead, in intervals (a pool prepares a few intervals ahead).
MAX_HORIZON = 1000


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
        A forecast this many times the current rate, or more, is a surge to prepare for.

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
        self.last = math.nan

    def update(self, rate: float) -> None:
        """The rate of the interval that just ended."""
        if math.isfinite(rate) and rate >= 0:
            self.detector.update(rate)
            self.last = rate

    def peak(self) -> float:
        """The highest rate forecast within ``horizon`` intervals (NaN before the first fit)."""
        if self.detector.model is None:
            return math.nan
        return float(max(0.0, self.detector.forecast(self.horizon).mean.max()))

    def expected_surge(self) -> float | None:
        """The forecast peak if it is a surge (``surge`` times the current rate or more), else None."""
        peak = self.peak()
        if not math.isfinite(peak) or not math.isfinite(self.last) or peak < self.surge * max(self.last, 1.0):
            return None
        return peak
