"""Detector presets: what watches each span name and each resource metric by default.

``perfsdk.init()`` (live) and ``perfsdk analyze`` (offline) build their
detectors here, so the two judge a series with the same detector.

>>> make = span_detectors(["zscore"], threshold=None)["zscore"]
>>> make("GET /cart")
ZScoreDetector(window=128, threshold=3.0, warmup=20, min_std=0.0, name='GET /cart')
"""

from __future__ import annotations

from typing import Callable, Sequence

from perfsdk._runtime import check_number
from perfsdk.detect.pipeline import default_detector
from perfsdk.detect.protocol import Detector
from perfsdk.detect.zscore import ZScoreDetector

__all__ = ["DETECTOR_KINDS", "DetectorFactory", "resource_detectors", "span_detectors", "traffic_detectors"]

DETECTOR_KINDS = ("zscore", "arima", "default")

#: Makes the detector of one series, given the series' name.
DetectorFactory = Callable[[str], Detector]


def span_detectors(kinds: Sequence[str], threshold: float | None = None) -> dict[str, DetectorFactory]:
    """Detectors for span durations: quick to warm up, since routes differ in traffic."""
    if isinstance(kinds, str):
        kinds = (kinds,)
    if threshold is not None:
        check_number("threshold", threshold, low=0.0, low_open=True)
    factories: dict[str, DetectorFactory] = {}
    for kind in kinds:
        if kind == "zscore":
            factories[kind] = lambda name: ZScoreDetector(
                window=128, warmup=20, threshold=threshold or 3.0, name=name
            )
        elif kind == "arima":
            from perfsdk.detect.arima import ArimaDetector  # numpy and its fitting load with the first one

            factories[kind] = lambda name: ArimaDetector(threshold=threshold or 5.0, name=name)
        elif kind == "default":
            # alerts by tail probability, one per incident: a z threshold does not apply
            factories[kind] = lambda name: default_detector(name=name)
        else:
            raise ValueError(f"detectors must be drawn from {DETECTOR_KINDS}, got {kind!r}")
    if not factories:
        raise ValueError(f"detectors must name at least one of {DETECTOR_KINDS}")
    return factories


def resource_detectors(threshold: float | None = None) -> dict[str, DetectorFactory]:
    """Resource metrics come once per interval: a short window, a short warm-up."""
    # min_std 1 in each metric's unit (%, MB, threads, ms): one more thread is not 100 sigma
    return {"zscore": lambda name: ZScoreDetector(
        window=60, warmup=10, threshold=threshold or 4.0, min_std=1.0, name=name
    )}


def traffic_detectors(threshold: float | None = None) -> dict[str, DetectorFactory]:
    """The span rate and error share, per half-second sample: a sample already sums many spans, so
    one is evidence (no confirmation run: the bank has ``confirm=1``), at 5 std (bursts of sessions
    reach 4.4 std in normal traffic)."""
    return {"zscore": lambda name: ZScoreDetector(
        window=120, warmup=20, threshold=threshold or 5.0, min_std=1.0, name=name
    )}
