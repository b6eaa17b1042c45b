"""Adaptive controllers: the tabular Q-learner, the generic controller, the adaptive cache and pool."""

from perfsdk.adapt.cache import AdaptiveCache
from perfsdk.adapt.cache_controller import CacheController
from perfsdk.adapt.cached import CacheInfo, cached
from perfsdk.adapt.controller import Controller, Evidence, Target
from perfsdk.adapt.decision import Action, Decision, SettingMove
from perfsdk.adapt.pool import AdaptivePool, PoolClosed, PoolTimeout
from perfsdk.adapt.pool_controller import PoolController
from perfsdk.adapt.qlearner import Discretizer, QLearner

__all__ = [
    "Action", "AdaptiveCache", "AdaptivePool", "CacheController", "CacheInfo", "Controller", "Decision", "Discretizer",
    "Evidence", "PoolClosed", "PoolController", "PoolTimeout", "QLearner", "SettingMove", "Target", "cached",
]
