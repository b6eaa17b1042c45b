"""Adaptive controllers: the tabular Q-learner (the adaptive cache and pool build on it)."""

from perfsdk.adapt.qlearner import Discretizer, QLearner

__all__ = ["Discretizer", "QLearner"]
