"""The shared detector check suite, run over every detector configuration."""

from __future__ import annotations

import collections
import datetime
import decimal
import enum
import fractions
import math
import time
import types

import numpy as np
import pytest

from perfsdk import AlertPipeline, ArimaDetector, ZScoreDetector, default_detector
from perfsdk.checks import check_no_mutable_defaults, check_river_verbs, check_stream, yield_checks

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


def test_checks_hold_under_python_O():
    """``python -O`` strips ``assert``: the suite raised nothing there, and vouched for any detector."""
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    script = textwrap.dedent("""
        import sys
        from perfsdk import ZScoreDetector
        from perfsdk.checks import check_detector

        if not sys.flags.optimize:
            sys.exit("not run under -O")

        class Misnamed(ZScoreDetector):
            def __repr__(self):  # round-trips, but to another class
                return "ZScoreDetector(window=32)"

        check_detector(Misnamed(window=32))
    """)
    done = subprocess.run([sys.executable, "-O", "-c", script], capture_output=True, text=True,
                          cwd=Path(__file__).parent.parent, timeout=300)
    assert done.returncode != 0, "a broken detector passed check_detector under python -O"
    assert "AssertionError: repr 'ZScoreDetector(window=32)' should name the class" in done.stderr, done.stderr


class _LearnsNothing(ZScoreDetector):
    def learn_one(self, x):
        if not math.isfinite(float(x)) or abs(float(x)) > 1e150:
            super().learn_one(x)  # still refuses and counts bad values, as the other checks look at


class _ScoreLearns(ZScoreDetector):
    def score_one(self, x):
        z = super().score_one(x)
        super().learn_one(x)
        return z


class _ScoreDoubled(ZScoreDetector):
    def score_one(self, x):
        return 2.0 * super().score_one(x)


@pytest.mark.parametrize("broken,message", [
    (_LearnsNothing, "but update scores it"),  # what it never learned shows in the next scores
    (_ScoreLearns, "changed the state"),
    (_ScoreDoubled, r"score_one\(.*\) gave"),
])
def test_river_verbs_are_checked(broken, message):
    with pytest.raises(AssertionError, match=message):
        check_river_verbs(broken(window=32), check_stream())


def test_check_river_verbs_compares_states_after_learning():
    """A ``learn_one`` that drifts only on the last point leaves every score right but the state wrong."""
    stream = check_stream()

    class LastPointTwice(ZScoreDetector):
        def learn_one(self, x):
            super().learn_one(x)
            if float(x) == float(stream[-1]):
                super().learn_one(x)

    with pytest.raises(AssertionError, match="learn_one leaves a different state than update_many"):
        check_river_verbs(LastPointTwice(window=32), stream)


class _Kind(enum.Enum):
    FAST = 1


def _detector_with_default(default):
    class WithDefault(ZScoreDetector):
        def __init__(self, window=32, extra=default, **kw):
            super().__init__(window=window, **kw)

    return WithDefault(window=32)


class _Box:
    pass


class _Zone(datetime.tzinfo):  # a tzinfo of one's own may hold anything
    def __init__(self):
        self.offsets = []


@pytest.mark.parametrize("default", [
    collections.deque(), bytearray(b"x"), types.SimpleNamespace(), _Box(), (1, []), frozenset({_Box()}), [1], {},
    np.zeros(2), np.zeros(1, dtype=[("a", "f8")])[0], [].append, _Box().__init__, _Zone(),
], ids=lambda d: type(d).__name__)
def test_mutable_defaults_are_flagged_by_name(default):
    with pytest.raises(AssertionError, match="parameter 'extra' of WithDefault has a default that may be mutable"):
        check_no_mutable_defaults(_detector_with_default(default), check_stream())


@pytest.mark.parametrize("default", [
    None, True, 3, 2.5, 1j, "auto", b"x", (1, "a", (None,)), frozenset({1, 2}), _Kind.FAST,
    np.float64, np.float32(3.0), np.int64(5), np.bool_(True), fractions.Fraction(1, 3), decimal.Decimal("0.1"),
    datetime.timedelta(seconds=5), datetime.date(2026, 1, 1), datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc),
    datetime.time(12), datetime.timezone.utc, range(3), time.monotonic, math.sqrt, _detector_with_default, _Box,
    (np.float64, range(2)), dict.fromkeys,
], ids=lambda d: type(d).__name__)
def test_immutable_defaults_pass(default):
    check_no_mutable_defaults(_detector_with_default(default), check_stream())
