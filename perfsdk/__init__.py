"""perfsdk: the performance SDK that lives inside a Python service.

>>> import perfsdk
>>> det = perfsdk.ZScoreDetector(window=64, threshold=3.0)
"""

from perfsdk._version import __version__
from perfsdk.adapt import (
    Action, AdaptiveCache, CacheController, Controller, Decision, Discretizer, QLearner, cached,
)
from perfsdk.detect import Anomaly, ArimaDetector, ArimaFit, Detector, Forecast, RunRule, ZScoreDetector
from perfsdk.instrument import Incident, PerfSDK, init, monitor

__all__ = [
    "Action", "AdaptiveCache", "Anomaly", "ArimaDetector", "ArimaFit", "CacheController", "Controller",
    "Decision", "Detector", "Discretizer", "Forecast", "Incident", "PerfSDK", "QLearner", "RunRule",
    "ZScoreDetector", "__version__", "cached", "init", "monitor",
]
