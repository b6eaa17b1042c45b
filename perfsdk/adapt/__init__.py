"""Adaptive controllers: the tabular Q-learner, the generic controller, the adaptive cache."""

from perfsdk.adapt.cache import AdaptiveCache
from perfsdk.adapt.cache_controller import CacheController
from perfsdk.adapt.cached import CacheInfo, cached
from perfsdk.adapt.controller import Controller, Evidence, Target
from perfsdk.adapt.decision import Action, Decision, SettingMove
from perfsdk.adapt.qlearner import Discretizer, QLearner

__all__ = [
    "Action", "AdaptiveCache", "CacheController", "CacheInfo", "Controller", "Decision", "Discretizer",
    "Evidence", "QLearner", "SettingMove", "Target", "cached",
]
