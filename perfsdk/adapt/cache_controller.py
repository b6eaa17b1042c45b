"""CacheController: the generic controller, configured for a cache's costs and features."""

from __future__ import annotations

import os
from perfsdk._runtime import check_bool, check_number
from perfsdk.adapt.controller import Controller
from perfsdk.adapt.fleet import Fleet
from perfsdk.adapt.qlearner import Discretizer, QLearner

__all__ = ["CacheController"]


class CacheController(Controller):
    """Sizes an AdaptiveCache with a Q-learner and lets it tune its window by ARC's rule.

    Parameters
    ----------
    interval
        Operations (gets) per decision.
    interval_seconds
        Also decide once this many seconds have passed since the last decision
        (the clock is read every 64 gets, so an idle cache is left alone: it has
        nothing to learn from).
    miss_cost, memory_cost
        The reward per interval is ``-(miss_ratio * miss_cost + capacity *
        memory_cost)``: what a miss costs, and what holding one entry costs,
        per operation, in the same unit.
    target_hit_ratio
        Instead of costs: reward ``-(10 * shortfall below the target +
        capacity / max_capacity)``, i.e. the smallest cache that meets the target.
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

    Examples
    --------
    >>> controller = CacheController(interval=1000, miss_cost=1.0, memory_cost=1e-6)
    >>> controller.reward(hit_ratio=0.9, capacity=1000, max_capacity=4000)
    -0.101
    """

    discretizer = Discretizer({
        "hit_ratio": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
        "ghost_ratio": [0.005, 0.02, 0.05, 0.1],
        "capacity_position": [0.25, 0.5, 0.75],
    })

    def __init__(
        self, *, interval: int = 10_000, interval_seconds: float | None = None, miss_cost: float = 1.0,
        memory_cost: float = 1e-5, target_hit_ratio: float | None = None, step: float = 1.25,
        cooldown: int = 1, learner: QLearner | None = None, epsilon: float = 0.05, seed: int = 0,
        max_decisions: int = 1000, adapt_window: bool = True,
        fleet: Fleet | str | os.PathLike[str] | None = None,
    ) -> None:
        self.miss_cost = check_number("miss_cost", miss_cost, low=0.0, high=1e12)
        self.memory_cost = check_number("memory_cost", memory_cost, low=0.0, high=1e12)
        if target_hit_ratio is not None:
            check_number("target_hit_ratio", target_hit_ratio, low=0.0, high=1.0, low_open=True, high_open=True)
            if (miss_cost, memory_cost) != (1.0, 1e-5):
                raise ValueError("give target_hit_ratio or miss_cost/memory_cost, not both: a target "
                                 "replaces the costs (the smallest cache that meets it)")
        self.target_hit_ratio = target_hit_ratio
        self.adapt_window = check_bool("adapt_window", adapt_window)
        super().__init__(self.discretizer, interval=interval, interval_seconds=interval_seconds, step=step,
                         cooldown=cooldown, learner=learner, epsilon=epsilon, seed=seed,
                         max_decisions=max_decisions, fleet=fleet)

    def reward(self, hit_ratio: float, capacity: float, max_capacity: int) -> float:
        """The reward of an interval with this hit ratio at this capacity."""
        if self.target_hit_ratio is not None:
            shortfall = max(0.0, self.target_hit_ratio - hit_ratio)
            return -(10.0 * shortfall + capacity / max_capacity)
        return -((1.0 - hit_ratio) * self.miss_cost + capacity * self.memory_cost)
