"""perfsdk: the performance SDK that lives inside a Python service.

>>> import perfsdk
>>> det = perfsdk.ZScoreDetector(window=64, threshold=3.0)
"""

from perfsdk._version import __version__
from perfsdk.adapt import AdaptiveCache, CacheController, Decision, Discretizer, QLearner, cached
from perfsdk.detect import Anomaly, ArimaDetector, ArimaFit, Forecast, ZScoreDetector
from perfsdk.instrument import DetectorBank, Incident, PerfSDK, PerfSpanProcessor, init, monitor

__all__ = [
    "AdaptiveCache", "Anomaly", "ArimaDetector", "ArimaFit", "CacheController", "Decision",
    "DetectorBank", "Discretizer", "Forecast", "Incident", "PerfSDK", "PerfSpanProcessor", "QLearner",
    "ZScoreDetector", "__version__", "cached", "init", "monitor",
]
