"""perfsdk: the performance SDK that lives inside a Python service.

>>> import perfsdk
>>> det = perfsdk.ZScoreDetector(window=64, threshold=3.0)
"""

from perfsdk._version import __version__
from perfsdk.detect import Anomaly, ArimaDetector, ArimaFit, Forecast, ZScoreDetector

__all__ = ["Anomaly", "ArimaDetector", "ArimaFit", "Forecast", "ZScoreDetector", "__version__"]
