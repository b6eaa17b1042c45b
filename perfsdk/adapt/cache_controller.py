"""CacheController: the generic controller, configured for a cache's objective and features."""

from __future__ import annotations

import math
import os

from perfsdk._runtime import check_bool, check_int, check_number
from perfsdk.adapt.controller import MAX_INTERVAL, Controller
from perfsdk.adapt.fleet import Fleet
from perfsdk.adapt.qlearner import Discretizer, QLearner

__all__ = ["CacheController", "GROW_ELASTICITY", "SHRINK_ELASTICITY", "SHRINK_POINTS"]

#: The default objective's prices, per unit of log-capacity (see ``CacheController``):
#: shrinking 20 % must cost under a quarter of a point of hit ratio, and under a tenth of
#: the hits relative to the hit ratio (a cache that hits little has little to give) ...
SHRINK_POINTS = 0.0025 / math.log(1 / 0.8)
SHRINK_ELASTICITY = 0.1
#: ... and growing must clearly pay: 25 % more memory, at least 4.5 % more hits (relative).
GROW_ELASTICITY = 0.2


class CacheController(Controller):
    """Sizes an AdaptiveCache with a Q-learner and lets it tune its window by ARC's rule.

    Parameters
    ----------
    interval, interval_seconds
        A decision every ``interval`` operations (gets; 10**12 at most) or every ``interval_seconds``
        (30 s by default; None: by count only), whichever comes first. The clock is read
        every 64 gets, so an idle cache is left alone: it has nothing to learn from.
    min_operations
        An interval with fewer gets than this (default: 1,000, or ``interval`` if smaller)
        is too little evidence to judge a size: the decision is "keep", says so, and the
        gets count toward the next interval.
    miss_cost, memory_cost
        Prices, if the user has them: the reward per interval is ``-(miss_ratio *
        miss_cost + capacity * memory_cost)``, what a miss costs and what holding one
        entry costs, per operation, in the same unit (either alone: the other is 1 / 1e-5).
    target_hit_ratio
        Instead of prices: reward ``-(10 * shortfall below the target + capacity /
        max_capacity)``, i.e. the smallest cache that meets the target.
    step
        Grow multiplies the capacity by ``step``, shrink divides by it.
    cooldown
        Intervals after a capacity change during which it may not change again.
    learner
        A ``QLearner`` to start from (e.g. one loaded or merged from a fleet).
    fleet
        A directory the service's instances share (see ``perfsdk.adapt.fleet``).
    adapt_window
        Move the window (the policy) by ARC's rule (``tune_window``); False keeps it.

    With neither prices nor a target (the default), the capacity the cache was given is
    the reference, and the objective needs no prices: below it, memory saved is worth
    ``SHRINK_POINTS`` of hit ratio per unit of log-capacity, or ``SHRINK_ELASTICITY`` times
    the hit ratio if that is less (shrinking 20 % must cost less than a quarter of a point,
    and less than 2.2 % of the hits); above it, memory added costs ``GROW_ELASTICITY``
    times the hit ratio per unit of log-capacity (25 % more memory must bring at least
    4.5 % more hits). All are ratios, so the rule is the same for a cache of 100 or 10**8.

    Examples
    --------
    >>> controller = CacheController(interval=1000, miss_cost=1.0, memory_cost=1e-6)
    >>> controller.reward(hit_ratio=0.9, capacity=1000, max_capacity=4000)
    -0.101
    >>> default = CacheController()
    >>> default.reward(0.8, 1000, 4000, reference=1000)      # at the size given: the misses
    -0.2
    >>> round(default.reward(0.797, 800, 4000, reference=1000), 4)   # 20 % less for 0.3 points: worse
    -0.2005
    >>> round(default.reward(0.799, 800, 4000, reference=1000), 4)   # 20 % less for 0.1 points: better
    -0.1985
    """

    #: ``shrink_loss_share``: a shrink would lose at least half the hits -- the cache sits
    #: just above a cliff in its hit curve (a loop that just fits). The size above it, where a
    #: shrink loses nothing, is another state: else the learned value of shrinking, ruinous at
    #: the cliff, held the cache in the room above it for tens of intervals.
    discretizer = Discretizer({
        "hit_ratio": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
        "ghost_ratio": [0.005, 0.02, 0.05, 0.1],
        "capacity_position": [0.25, 0.5, 0.75],
        "shrink_loss_share": [0.5],
    })

    def __init__(
        self, *, interval: int = 10_000, interval_seconds: float | None = 30.0, min_operations: int | None = None,
        miss_cost: float | None = None, memory_cost: float | None = None, target_hit_ratio: float | None = None,
        step: float = 1.25, cooldown: int = 1, learner: QLearner | None = None, epsilon: float = 0.05,
        seed: int = 0, max_decisions: int = 1000, adapt_window: bool = True,
        fleet: Fleet | str | os.PathLike[str] | None = None,
    ) -> None:
        priced = miss_cost is not None or memory_cost is not None
        self.miss_cost = check_number("miss_cost", 1.0 if miss_cost is None else miss_cost, low=0.0, high=1e12)
        self.memory_cost = check_number("memory_cost", 1e-5 if memory_cost is None else memory_cost,
                                        low=0.0, high=1e12)
        if target_hit_ratio is not None:
            check_number("target_hit_ratio", target_hit_ratio, low=0.0, high=1.0, low_open=True, high_open=True)
            if priced:
                raise ValueError("give target_hit_ratio or miss_cost/memory_cost, not both: a target "
                                 "replaces the costs (the smallest cache that meets it)")
        self.target_hit_ratio = target_hit_ratio
        #: "reference" (the default: the capacity given), "prices" or "target"
        self.objective = "target" if target_hit_ratio is not None else "prices" if priced else "reference"
        self.adapt_window = check_bool("adapt_window", adapt_window)
        check_int("interval", interval, minimum=10, maximum=MAX_INTERVAL)
        self.min_operations = min(1000, int(interval)) if min_operations is None else check_int(
            "min_operations", min_operations, minimum=1)
        super().__init__(self.discretizer, interval=interval, interval_seconds=interval_seconds, step=step,
                         cooldown=cooldown, learner=learner, epsilon=epsilon, seed=seed,
                         max_decisions=max_decisions, fleet=fleet)

    def reward(self, hit_ratio: float, capacity: float, max_capacity: int, reference: float | None = None) -> float:
        """The reward of an interval with this hit ratio at this capacity (``reference``: the
        capacity the cache was given, which the default objective honours)."""
        if self.target_hit_ratio is not None:
            shortfall = max(0.0, self.target_hit_ratio - hit_ratio)
            return -(10.0 * shortfall + capacity / max_capacity)
        if self.objective == "reference":
            stretch = math.log(capacity / reference) if reference else 0.0
            price = GROW_ELASTICITY * hit_ratio if stretch > 0 else min(SHRINK_POINTS, SHRINK_ELASTICITY * hit_ratio)
            return -((1.0 - hit_ratio) + price * stretch)
        return -((1.0 - hit_ratio) * self.miss_cost + capacity * self.memory_cost)
