"""perfsdk: the performance SDK that lives inside a Python service.

``import perfsdk`` loads almost nothing: each name below loads its part of
the SDK (and numpy, OpenTelemetry's SDK, pyarrow) the first time it is used.

>>> import perfsdk
>>> det = perfsdk.ZScoreDetector(window=64, threshold=3.0)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from perfsdk._runtime import lazy_names
from perfsdk._version import __version__

if TYPE_CHECKING:
    from perfsdk.adapt import (
        Action, AdaptiveCache, AdaptivePool, CacheController, Controller, Decision, Discretizer, PoolClosed,
        PoolController, PoolTimeout, QLearner, cached,
    )
    from perfsdk.detect import (
        AlertPipeline, Anomaly, ArimaDetector, ArimaFit, Detector, Forecast, RunRule, ZScoreDetector, default_detector,
    )
    from perfsdk.instrument import Incident, PerfSDK, init, monitor

_HOMES = {
    **dict.fromkeys(["Action", "AdaptiveCache", "AdaptivePool", "CacheController", "Controller", "Decision",
                     "Discretizer", "PoolClosed", "PoolController", "PoolTimeout", "QLearner", "cached"],
                    "perfsdk.adapt"),
    **dict.fromkeys(["AlertPipeline", "Anomaly", "ArimaDetector", "ArimaFit", "Detector", "Forecast", "RunRule",
                     "ZScoreDetector", "default_detector"], "perfsdk.detect"),
    **dict.fromkeys(["Incident", "PerfSDK", "init", "monitor"], "perfsdk.instrument"),
}
__getattr__, __dir__ = lazy_names(__name__, _HOMES)

__all__ = [
    "Action", "AdaptiveCache", "AdaptivePool", "AlertPipeline", "Anomaly", "ArimaDetector", "ArimaFit",
    "CacheController", "Controller", "Decision", "Detector", "Discretizer", "Forecast", "Incident", "PerfSDK",
    "PoolClosed", "PoolController", "PoolTimeout", "QLearner", "RunRule", "ZScoreDetector", "__version__", "cached",
    "default_detector", "init", "monitor",
]
