"""Streaming anomaly detectors and the records they emit."""

from perfsdk.detect.anomaly import Anomaly
from perfsdk.detect.zscore import ZScoreDetector

__all__ = ["Anomaly", "ZScoreDetector"]
