"""The shared detector check suite, run over every detector configuration."""

from __future__ import annotations

import pytest

from perfsdk import AlertPipeline, ArimaDetector, ZScoreDetector, default_detector
from perfsdk.checks import yield_checks

DETECTORS = [
    ZScoreDetector(window=32),
    ZScoreDetector(window=256, threshold=4.0),
    ZScoreDetector(alpha=0.05),
    ZScoreDetector(window=8, warmup=3, min_std=0.5, name="latency"),
    ArimaDetector.from_params((2, 1, 2), ar=[0.5, -0.2], ma=[0.3, 0.1], sigma2=25.0, warmup=20),
    # fitted inline so that the stream position of every fit is deterministic
    ArimaDetector(order=(1, 0, 1), warmup=100, refit_every=150, background=False),
    ArimaDetector(order="auto", warmup=150, background=False),
    ArimaDetector(order=(1, 0, 0), season=12, warmup=100, background=False, name="seasonal"),
    # alert scores: 0.0 while learning (``warming_score``), not NaN
    default_detector(),
    AlertPipeline(ArimaDetector(order=(1, 0, 0), warmup=100, background=False), season=24, learning=100),
    # an order searched for: a copy that lost its member's fit history searched it again at its next fit
    AlertPipeline(ArimaDetector(order="auto", warmup=150, background=False), learning=100),
]

CASES = [(d, check) for d in DETECTORS for check in yield_checks(d)]


@pytest.mark.parametrize(
    "detector,check", CASES, ids=[f"{d!r}-{c.__name__}" for d, c in CASES]
)
def test_detector_check(detector, check):
    check()


def test_corrupt_snapshots_are_refused_not_trusted():
    from perfsdk._native import kernels as K

    det = ZScoreDetector(window=8)
    snap = det.snapshot()
    snap[K.ZS_POS] = 1e9
    with pytest.raises(ValueError, match="position"):
        det.restore(snap)
    arima = ArimaDetector(order=(1, 1, 1))
    snap = arima.snapshot()
    snap[K.AR_HIST_POS] = -3
    with pytest.raises(ValueError, match="history position"):
        arima.restore(snap)


def test_check_pickle_compares_a_background_arima_at_rest():
    """An ArimaDetector as users build one fits in the background; its copy drops a fit in flight by
    design, so ``check_pickle`` waits for the fits (it failed on every such detector)."""
    from perfsdk.checks import check_pickle, check_stream

    check_pickle(ArimaDetector(order=(1, 0, 0)), check_stream())
