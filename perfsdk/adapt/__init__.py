"""Adaptive controllers: the tabular Q-learner and the adaptive cache."""

from perfsdk.adapt.cache import AdaptiveCache, CacheController, Decision, cached
from perfsdk.adapt.qlearner import Discretizer, QLearner

__all__ = ["AdaptiveCache", "CacheController", "Decision", "Discretizer", "QLearner", "cached"]
