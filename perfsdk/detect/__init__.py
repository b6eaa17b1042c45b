"""Streaming anomaly detectors, the protocol they share, their presets, the run rule, the alert pipeline.

The ARIMA detector and its fitting (numpy at import, statsmodels at the first fit) load on first use.
"""

from typing import TYPE_CHECKING

from perfsdk._runtime import lazy_names
from perfsdk.detect.anomaly import Anomaly
from perfsdk.detect.pipeline import AlertPipeline, default_detector
from perfsdk.detect.presets import (
    DETECTOR_KINDS, DetectorFactory, resource_detectors, span_detectors, traffic_detectors,
)
from perfsdk.detect.protocol import Detector
from perfsdk.detect.runs import DEFAULT_CONFIRM, Onset, RunRule
from perfsdk.detect.zscore import ZScoreDetector

if TYPE_CHECKING:
    from perfsdk.detect._fitting import ArimaFit, FitError
    from perfsdk.detect.arima import ArimaDetector, Forecast

__getattr__, __dir__ = lazy_names(__name__, {"ArimaFit": "perfsdk.detect._fitting", "FitError": "perfsdk.detect._fitting",
                                             "ArimaDetector": "perfsdk.detect.arima", "Forecast": "perfsdk.detect.arima"})

__all__ = [
    "DEFAULT_CONFIRM", "DETECTOR_KINDS", "AlertPipeline", "Anomaly", "ArimaDetector", "ArimaFit", "Detector",
    "DetectorFactory", "FitError", "Forecast", "Onset", "RunRule", "ZScoreDetector", "default_detector",
    "resource_detectors", "span_detectors", "traffic_detectors",
]
