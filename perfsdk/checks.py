"""Checks every streaming detector must pass (after River's ``check_estimator``).

Run them over a new detector in its tests::

    from perfsdk.checks import check_detector
    check_detector(MyDetector(...))

Each check raises ``AssertionError`` naming what broke. The checks feed the
detector a deterministic stream with noise, spikes, a level shift and bad
values (NaN, +/-inf, and numbers beyond +-1e150, whose squares overflow a variance: since
2026-12-01 a detector must refuse and count those too), so every code path of the engines
is exercised.
"""

from __future__ import annotations

import inspect
import math
import pickle
from typing import Any, Callable, Iterator

import numpy as np

from perfsdk import detect

BAD_VALUES = (float("nan"), float("inf"), float("-inf"), 1e300, -1e200)  # the last two: too large to square


def check_stream(n: int = 600, seed: int = 7) -> np.ndarray:
    """A latency-like test stream: noise, spikes, a level shift, bad values."""
    rng = np.random.default_rng(seed)
    xs = 100.0 + rng.normal(0.0, 5.0, n)
    xs[n // 2 :] += 40.0  # level shift
    xs[rng.choice(n, n // 50, replace=False)] *= 4.0  # spikes
    xs[rng.choice(n, n // 60, replace=False)] = rng.choice(BAD_VALUES, n // 60)
    return xs


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)


def check_repr(detector: Any, stream: np.ndarray) -> None:
    text = repr(detector)
    assert text.startswith(type(detector).__name__ + "("), f"repr {text!r} should name the class"
    namespace = {**{k: getattr(detect, k) for k in detect.__all__}, type(detector).__name__: type(detector)}
    rebuilt = eval(text, namespace)  # repr is the constructor call
    assert repr(rebuilt) == text, f"repr does not round-trip: {text!r} -> {rebuilt!r}"


def check_no_mutable_defaults(detector: Any, stream: np.ndarray) -> None:
    for name, param in inspect.signature(type(detector).__init__).parameters.items():
        assert not isinstance(param.default, (list, dict, set, np.ndarray)), (
            f"parameter {name!r} has a mutable default {param.default!r}"
        )


def check_score_before_learn(detector: Any, stream: np.ndarray) -> None:
    """A fresh detector's first point gets its ``warming_score``: NaN for a raw score, 0.0 for an
    alert score in [0, 1] (``AlertPipeline``), never a score made from nothing."""
    fresh = detector.clone()
    z = fresh.update(float(stream[0]))
    expected = getattr(detector, "warming_score", math.nan)
    assert _same(np.array([z]), np.array([expected])), (
        f"a fresh detector must not score its first point: expected {expected}, got {z}"
    )
    assert fresh.score_one(float(stream[1])) == 0.0, "score_one of an unwarmed detector must be 0.0"


def check_clone(detector: Any, stream: np.ndarray) -> None:
    warm = detector.clone()
    warm.update_many(stream[:50])
    clone = warm.clone()
    assert repr(clone) == repr(warm), "clone must keep the parameters"
    assert _same(clone.state, detector.clone().state), "clone must start unfitted"
    assert clone.state is not warm.state, "clone must not share state"


def check_determinism(detector: Any, stream: np.ndarray) -> None:
    a, b = detector.clone(), detector.clone()
    assert _same(a.update_many(stream), b.update_many(stream)), "same stream, different scores"
    assert _same(a.state, b.state), "same stream, different states"


def check_scalar_equals_batch(detector: Any, stream: np.ndarray) -> None:
    scalar, batch, mixed = detector.clone(), detector.clone(), detector.clone()
    expected = np.array([scalar.update(float(x)) for x in stream])
    assert _same(batch.update_many(stream), expected), "update_many differs from update"
    assert _same(batch.state, scalar.state), "update_many leaves a different state"
    # interleave the engines mid-stream: ragged chunks, alternating
    out, i, k = [], 0, 0
    for size in _ragged_sizes(len(stream)):
        chunk = stream[i : i + size]
        if k % 2:
            out.extend(mixed.update_many(chunk))
        else:
            out.extend(mixed.update(float(x)) for x in chunk)
        i, k = i + size, k + 1
    assert _same(np.array(out), expected), "interleaving update and update_many changes scores"
    assert _same(mixed.state, scalar.state), "interleaving leaves a different state"


def _ragged_sizes(n: int) -> Iterator[int]:
    sizes = [1, 7, 3, 64, 2, 129, 5]
    i, total = 0, 0
    while total < n:
        size = min(sizes[i % len(sizes)], n - total)
        yield size
        total, i = total + size, i + 1


def check_bad_input_leaves_state(detector: Any, stream: np.ndarray) -> None:
    det = detector.clone()
    det.update_many(stream[:100])
    before = det.snapshot()
    rejected = det.rejected
    for bad in BAD_VALUES:
        assert math.isnan(det.update(bad)), f"update({bad}) must return NaN"
        det.learn_one(bad)
        assert det.score_one(bad) == 0.0, f"score_one({bad}) must be 0.0"
    assert all(math.isnan(z) for z in det.update_many(np.array(BAD_VALUES)))
    after = det.snapshot()
    counters = [det.rejected_slot]
    mask = np.ones(len(before), bool)
    mask[counters] = False
    assert _same(before[mask], after[mask]), "bad values changed the state"
    assert det.rejected == rejected + 3 * len(BAD_VALUES), "bad values must be counted"


#: How long a check waits for a detector's background work (fits queued behind every clone's).
SETTLE_TIMEOUT_S = 300.0


def _settle(detector: Any) -> None:
    """Let a detector's background work land (an ``ArimaDetector``'s fits): a copy drops work in
    flight by design, so it is compared with the detector at rest."""
    wait = getattr(detector, "wait_for_fits", None)
    if wait is not None:
        assert wait(SETTLE_TIMEOUT_S), f"background fits did not land within {SETTLE_TIMEOUT_S:g} s"


def _knowledge_beyond_state(detector: Any) -> list[Any]:
    """What a detector, or each member of an ``AlertPipeline``, knows besides its state
    (``stats()``: an ``ArimaDetector``'s fit history, which decides how it refits)."""
    return [m.stats() for m in getattr(detector, "members", [detector]) if hasattr(m, "stats")]


def check_pickle(detector: Any, stream: np.ndarray) -> None:
    det = detector.clone()
    det.update_many(stream[:300])
    _settle(det)
    copy = pickle.loads(pickle.dumps(det))
    assert _same(copy.state, det.state), "pickling changed the state"
    assert _knowledge_beyond_state(copy) == _knowledge_beyond_state(det), (
        "pickling lost what the detector knows besides its state"
    )
    assert _same(copy.update_many(stream[300:]), det.update_many(stream[300:])), (
        "an unpickled detector scores differently"
    )


def check_snapshot_restore(detector: Any, stream: np.ndarray) -> None:
    det = detector.clone()
    det.update_many(stream[:200])
    snap = det.snapshot()
    tail = det.update_many(stream[200:])
    det.restore(snap)
    assert _same(det.update_many(stream[200:]), tail), "restore did not rewind the stream"
    other = detector.clone()
    other.restore(snap)
    other_tail = other.update_many(stream[200:])
    assert _same(other_tail, tail), "a snapshot restored into a clone scores differently"
    det.reset()
    assert _same(det.state, detector.clone().state), "reset must return to the fresh state"


def check_anomaly_explained(detector: Any, stream: np.ndarray) -> None:
    det = detector.clone()
    anomalies = det.detect_many(stream)
    assert anomalies, "the check stream has spikes and a level shift; nothing was flagged"
    for a in anomalies:
        assert abs(a.score) > a.threshold, f"{a} does not exceed its threshold"
        assert math.isfinite(a.value) and math.isfinite(a.expected), f"{a} lacks its explanation"
        assert a.detector == det.name and str(a)
    scalar = detector.clone()
    one_by_one = [a for i, x in enumerate(stream) if (a := scalar.check(float(x))) is not None]
    assert [(a.index, a.score) for a in one_by_one] == [(a.index, a.score) for a in anomalies], (
        "check() and detect_many() disagree"
    )


ALL_CHECKS: tuple[Callable[[Any, np.ndarray], None], ...] = (
    check_repr,
    check_no_mutable_defaults,
    check_score_before_learn,
    check_clone,
    check_determinism,
    check_scalar_equals_batch,
    check_bad_input_leaves_state,
    check_pickle,
    check_snapshot_restore,
    check_anomaly_explained,
)


def yield_checks(detector: Any) -> Iterator[Callable[[], None]]:
    """Each check, bound to ``detector`` (for one pytest case per check)."""
    stream = check_stream()
    for check in ALL_CHECKS:

        def bound(check=check) -> None:
            check(detector, stream)

        bound.__name__ = check.__name__
        yield bound


def check_detector(detector: Any) -> None:
    """Run every check on ``detector``; the first failure raises.

    >>> from perfsdk import ZScoreDetector
    >>> check_detector(ZScoreDetector(window=32))
    """
    for check in yield_checks(detector):
        check()
