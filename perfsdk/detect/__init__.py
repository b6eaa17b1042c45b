"""Streaming anomaly detectors and the records they emit."""

from perfsdk.detect._fitting import ArimaFit, FitError
from perfsdk.detect.anomaly import Anomaly
from perfsdk.detect.arima import ArimaDetector, Forecast
from perfsdk.detect.zscore import ZScoreDetector

__all__ = ["Anomaly", "ArimaDetector", "ArimaFit", "FitError", "Forecast", "ZScoreDetector"]
