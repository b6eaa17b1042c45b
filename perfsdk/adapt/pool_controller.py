"""PoolController: the generic controller, configured for a connection pool."""

from __future__ import annotations

import os
from perfsdk._runtime import check_int, check_number
from perfsdk.adapt.controller import MAX_INTERVAL_SECONDS, Controller
from perfsdk.adapt.fleet import Fleet
from perfsdk.adapt.pool_forecast import MAX_HORIZON, MAX_SEASON, ArrivalForecast
from perfsdk.adapt.qlearner import Discretizer, QLearner

__all__ = ["LATENCY_FLOOR_MS", "MIN_INTERVAL_S", "PoolController"]

#: The shortest latency (ms) a pool's reward tells apart: 10 µs, well below a database round trip.
LATENCY_FLOOR_MS = 0.01
#: The shortest ``interval_seconds``: an interval must hold acquisitions to judge, and the pool's
#: thread wakes once an interval, busy or idle (at a microsecond it kept a core busy doing nothing).
MIN_INTERVAL_S = 0.01


class PoolController(Controller):
    """Sizes an ``AdaptivePool`` with a Q-learner, once an interval, off the application's path.

    Parameters
    ----------
    interval_seconds
        Seconds per decision (the pool's maintenance thread decides); 0.01 at least, a week at most.
    connection_weight
        The trade-off between latency and connections: the reward is
        ``-latency_ms * (1 + connection_weight * size / max_size)``, so at
        ``max_size`` a request's latency counts ``connection_weight`` more. Of two
        sizes with the same latency, the smaller wins; a size that cuts latency by
        more than that share is worth its connections. The latency is the
        interval's tail: its p95, moving to its p99 as the interval reaches 1,000
        acquisitions (ten requests beyond the 99th percentile: a p99 measured, not
        one request's luck).
    min_acquisitions
        An interval with fewer acquisitions teaches nothing (the size is kept).
    step
        Grow multiplies the size by ``step``, shrink divides by it (one connection at least); a
        move that turns round narrows the next (``narrows``).
    cooldown
        Intervals after a change during which the size may not change again.
    learner
        A ``QLearner`` to start from (e.g. one merged from a fleet's).
    epsilon
        The share of intervals with a random move. 0 by default: the what-ifs teach every
        action every interval, and a random move would only cost a live pool latency.
    forecast_horizon
        Intervals ahead the pool forecasts its arrival rate (``ArrivalForecast``) to grow
        before a surge rather than after the queue forms (5 is a good start; 1,000 at most); 0,
        the default: no forecasting. Off by default: its fits load statsmodels, which added about 240 MB
        to the demo shop's resident memory. On a simulated rush at the same hour every day
        (with ``forecast_season``) it cut the waits around the rush by 36 % on average, in
        simulation (25-45 % by seed; ``benches/eval/pool_eval.py --forecast``).
    forecast_season
        The arrival rate's period in intervals, if it has one (86400 for a daily cycle at 1 s;
        604,800, a week at 1 s, at most).
    fleet
        A directory the service's instances share (see ``perfsdk.adapt.fleet``): what this
        controller learns is published there, and it starts from what the others learned.

    Examples
    --------
    >>> PoolController(connection_weight=0.25).reward(latency_ms=20.0, size=8, max_size=32)
    -21.25
    """

    #: Up to 64 intervals between a settled pool's decisions (a minute at the default second): a
    #: change of load decides at once whatever the stretch (``pool_policy.load_steady``), and a
    #: decision is about half a millisecond of CPU, a few per cent of a busy pool's own work
    #: when made every 16 s (docs/benchmarks.md).
    settled_stretch = 64
    #: A reversal narrows the step (``Controller.step``): near its best a pool's tail is flat
    #: within its noise, and whole steps kept it moving between 9 and 14 connections, the best 12
    #: (``benches/eval/pool_eval.py``). The what-ifs price whatever step is asked of them.
    narrows = True

    discretizer = Discretizer({
        "utilisation": [0.5, 0.8, 0.95],
        "waited_share": [0.01, 0.1, 0.5],
        "hold_trend": [0.1, 0.5, 1.5],
    })  # what the load and the database are like, not the size: a move does not change the state

    def __init__(
        self, *, interval_seconds: float = 1.0, connection_weight: float = 0.1, min_acquisitions: int = 20,
        step: float = 1.25, cooldown: int = 1, learner: QLearner | None = None, epsilon: float = 0.0,
        seed: int = 0, max_decisions: int = 1000, forecast_horizon: int = 0, forecast_season: int | None = None,
        fleet: Fleet | str | os.PathLike[str] | None = None,
    ) -> None:
        self.forecast_horizon = check_int("forecast_horizon", forecast_horizon, minimum=0, maximum=MAX_HORIZON)
        if forecast_season is not None:
            check_int("forecast_season", forecast_season, minimum=2, maximum=MAX_SEASON)
        check_number("interval_seconds", interval_seconds, low=MIN_INTERVAL_S, high=MAX_INTERVAL_SECONDS)
        self.forecast_season = forecast_season
        self.connection_weight = check_number("connection_weight", connection_weight, low=0.0, high=100.0)
        self.min_acquisitions = check_int("min_acquisitions", min_acquisitions, minimum=1)
        super().__init__(self.discretizer, interval=10, interval_seconds=interval_seconds, step=step,
                         cooldown=cooldown, learner=learner, epsilon=epsilon, seed=seed,
                         max_decisions=max_decisions, fleet=fleet)

    def arrival_forecast(self) -> ArrivalForecast | None:
        """A forecaster for the pool this controller drives (None: forecasting is off)."""
        if not self.forecast_horizon:
            return None
        return ArrivalForecast(horizon=self.forecast_horizon, season=self.forecast_season)

    def successor(self) -> "PoolController":
        """A controller for the pool that replaces this one's (SQLAlchemy's ``engine.dispose()``):
        the same settings, a copy of the learned table (the old pool's thread may still decide on
        its own) and the moves already tried (not tried again once each); the fleet's directory
        is shared anew (a ``Fleet`` serves one controller: the successor publishes what it
        learns from then on)."""
        fleet = self.fleet
        with self.locked():
            learner, started, taken = self.learner.copy(), set(self._started), set(self._taken)
        successor = PoolController(
            interval_seconds=self.interval_seconds or 1.0, connection_weight=self.connection_weight,
            min_acquisitions=self.min_acquisitions, step=self.step, cooldown=self.cooldown, learner=learner,
            max_decisions=self.decisions.maxlen or 1000, forecast_horizon=self.forecast_horizon,
            forecast_season=self.forecast_season,
            fleet=None if fleet is None else Fleet(fleet.directory, every=fleet.every, max_files=fleet.max_files,
                                                   max_age_s=fleet.max_age_s))
        successor._started, successor._taken = started, taken
        return successor

    def reward(self, latency_ms: float, size: int, max_size: int) -> float:
        """The reward of an interval with this tail latency (ms) at this size. A latency under
        ``LATENCY_FLOOR_MS`` counts as that: below it the timings are the pool's own overhead and
        the clock's jitter, which a decision must not follow (it would wander, and connections
        would cost nothing), so there the smaller size wins.

        >>> controller = PoolController()
        >>> controller.reward(0.0004, 2, 32) == controller.reward(0.0009, 2, 32) > controller.reward(0.0004, 3, 32)
        True
        """
        return -max(latency_ms, LATENCY_FLOOR_MS) * (1.0 + self.connection_weight * size / max_size)
