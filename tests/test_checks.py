"""The shared detector check suite, run over every detector configuration."""

from __future__ import annotations

import pytest

from perfsdk import ZScoreDetector
from perfsdk.checks import yield_checks

DETECTORS = [
    ZScoreDetector(window=32),
    ZScoreDetector(window=256, threshold=4.0),
    ZScoreDetector(alpha=0.05),
    ZScoreDetector(window=8, warmup=3, min_std=0.5, name="latency"),
]

CASES = [(d, check) for d in DETECTORS for check in yield_checks(d)]


@pytest.mark.parametrize(
    "detector,check", CASES, ids=[f"{d!r}-{c.__name__}" for d, c in CASES]
)
def test_detector_check(detector, check):
    check()
