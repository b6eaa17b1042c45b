"""Checks every streaming detector must pass (after River's ``check_estimator``).

Run them over a new detector in its tests::

    from perfsdk.checks import check_detector
    check_detector(MyDetector(...))

Each check raises ``AssertionError`` naming what broke, under ``python -O`` too. The checks
feed the detector a deterministic stream with noise, spikes, a level shift and bad
values (NaN, +/-inf, and numbers beyond +-1e150, whose squares overflow a variance: since
2026-12-01 a detector must refuse and count those too), so every code path of the engines
is exercised.
"""

from __future__ import annotations

import datetime
import enum
import inspect
import math
import numbers
import pickle
import types
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


def _same(a: Any, b: Any) -> bool:
    return np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)


def _require(condition: Any, message: str) -> None:
    """``assert``, but kept under ``python -O``, which strips asserts: a check suite that passes
    everything there would vouch for a broken detector."""
    if not condition:
        raise AssertionError(message)


def check_repr(detector: Any, stream: np.ndarray) -> None:
    text = repr(detector)
    _require(text.startswith(type(detector).__name__ + "("), f"repr {text!r} should name the class")
    namespace = {**{k: getattr(detect, k) for k in detect.__all__}, type(detector).__name__: type(detector)}
    rebuilt = eval(text, namespace)  # repr is the constructor call
    _require(repr(rebuilt) == text, f"repr does not round-trip: {text!r} -> {rebuilt!r}")


#: Defaults known to be immutable; tuples and frozensets of them too (``_immutable``): numbers
#: (numpy's scalars too), strings, enums, classes, datetime's values, ranges, and functions (a tzinfo
#: and a bound method or builtin are judged in ``_immutable``).
_IMMUTABLE_DEFAULTS = (type(None), bool, numbers.Number, np.generic, str, bytes, enum.Enum, type,
                       datetime.date, datetime.time, datetime.timedelta, range, types.FunctionType)


def _immutable(value: Any) -> bool:
    if isinstance(value, (tuple, frozenset)):
        return all(_immutable(v) for v in value)
    if isinstance(value, np.void):  # a structured scalar may be a view: writing it writes its array
        return False
    if isinstance(value, datetime.tzinfo):  # a user's tzinfo subclass may hold anything
        return type(value) is datetime.timezone
    if isinstance(value, (types.MethodType, types.BuiltinFunctionType)):  # bound: shares its __self__
        owner = value.__self__  # (a builtin function's is its module: time.monotonic)
        return owner is None or isinstance(owner, types.ModuleType) or _immutable(owner)
    return isinstance(value, _IMMUTABLE_DEFAULTS)


def check_no_mutable_defaults(detector: Any, stream: np.ndarray) -> None:
    """Only defaults known to be immutable pass: a list of mutable types misses the ones it does not
    name (a ``deque``, a user's class), and one default object is shared by every instance."""
    for name, param in inspect.signature(type(detector).__init__).parameters.items():
        default = param.default
        _require(default is inspect.Parameter.empty or _immutable(default), (
            f"parameter {name!r} of {type(detector).__name__} has a default that may be mutable: "
            f"{default!r} ({type(default).__name__}); a default must be None, a number (numpy's too), "
            "str, bytes, an enum, a class, a function, a date, time or timedelta, a range, or a tuple or "
            "frozenset of these (build anything else in __init__)"
        ))


def check_score_before_learn(detector: Any, stream: np.ndarray) -> None:
    """A fresh detector's first point gets its ``warming_score``: NaN for a raw score, 0.0 for an
    alert score in [0, 1] (``AlertPipeline``), never a score made from nothing."""
    fresh = detector.clone()
    z = fresh.update(float(stream[0]))
    expected = getattr(detector, "warming_score", math.nan)
    _require(_same(np.array([z]), np.array([expected])),
             f"a fresh detector must not score its first point: expected {expected}, got {z}")
    _require(fresh.score_one(float(stream[1])) == 0.0, "score_one of an unwarmed detector must be 0.0")


def check_clone(detector: Any, stream: np.ndarray) -> None:
    warm = detector.clone()
    warm.update_many(stream[:50])
    clone = warm.clone()
    _require(repr(clone) == repr(warm), "clone must keep the parameters")
    _require(_same(clone.state, detector.clone().state), "clone must start unfitted")
    _require(clone.state is not warm.state, "clone must not share state")


def check_determinism(detector: Any, stream: np.ndarray) -> None:
    a, b = detector.clone(), detector.clone()
    _require(_same(a.update_many(stream), b.update_many(stream)), "same stream, different scores")
    _require(_same(a.state, b.state), "same stream, different states")


def check_scalar_equals_batch(detector: Any, stream: np.ndarray) -> None:
    scalar, batch, mixed = detector.clone(), detector.clone(), detector.clone()
    expected = np.array([scalar.update(float(x)) for x in stream])
    _require(_same(batch.update_many(stream), expected), "update_many differs from update")
    _require(_same(batch.state, scalar.state), "update_many leaves a different state")
    # interleave the engines mid-stream: ragged chunks, alternating
    out, i, k = [], 0, 0
    for size in _ragged_sizes(len(stream)):
        chunk = stream[i : i + size]
        if k % 2:
            out.extend(mixed.update_many(chunk))
        else:
            out.extend(mixed.update(float(x)) for x in chunk)
        i, k = i + size, k + 1
    _require(_same(np.array(out), expected), "interleaving update and update_many changes scores")
    _require(_same(mixed.state, scalar.state), "interleaving leaves a different state")


def check_river_verbs(detector: Any, stream: np.ndarray) -> None:
    """River's evaluation scores each point with ``score_one``, then learns it with ``learn_one``:
    that must score and learn as ``update`` does, and the score must only read (a verb that learns
    twice, or not at all, would pass every other check)."""
    batch, verbs = detector.clone(), detector.clone()
    expected = batch.update_many(stream)
    for x, z in zip(stream, expected):
        before = verbs.snapshot()
        score = verbs.score_one(float(x))
        _require(_same(verbs.state, before), f"score_one({x}) changed the state: it must not learn")
        # River's score is "how anomalous": |z|, 0.0 where update gives no score (warming, refused)
        _require(_same(score, 0.0 if math.isnan(z) else abs(z)),
                 f"score_one({x}) gave {score}, but update scores it {z}")
        verbs.learn_one(float(x))
    _require(_same(verbs.state, batch.state), "learn_one leaves a different state than update_many")
    _require(_knowledge_beyond_state(verbs) == _knowledge_beyond_state(batch),
             "learn_one leaves the detector knowing other things than update_many")


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
        _require(math.isnan(det.update(bad)), f"update({bad}) must return NaN")
        det.learn_one(bad)
        _require(det.score_one(bad) == 0.0, f"score_one({bad}) must be 0.0")
    _require(all(math.isnan(z) for z in det.update_many(np.array(BAD_VALUES))),
             f"update_many({BAD_VALUES}) must return NaN for each")
    after = det.snapshot()
    counters = [det.rejected_slot]
    mask = np.ones(len(before), bool)
    mask[counters] = False
    _require(_same(before[mask], after[mask]), "bad values changed the state")
    _require(det.rejected == rejected + 3 * len(BAD_VALUES), "bad values must be counted")


#: How long a check waits for a detector's background work (fits queued behind every clone's).
SETTLE_TIMEOUT_S = 300.0


def _settle(detector: Any) -> None:
    """Let a detector's background work land (an ``ArimaDetector``'s fits): a copy drops work in
    flight by design, so it is compared with the detector at rest."""
    wait = getattr(detector, "wait_for_fits", None)
    if wait is not None:
        _require(wait(SETTLE_TIMEOUT_S), f"background fits did not land within {SETTLE_TIMEOUT_S:g} s")


def _knowledge_beyond_state(detector: Any) -> list[Any]:
    """What a detector, or each member of an ``AlertPipeline``, knows besides its state
    (``stats()``: an ``ArimaDetector``'s fit history, which decides how it refits)."""
    return [m.stats() for m in getattr(detector, "members", [detector]) if hasattr(m, "stats")]


def check_pickle(detector: Any, stream: np.ndarray) -> None:
    det = detector.clone()
    det.update_many(stream[:300])
    _settle(det)
    copy = pickle.loads(pickle.dumps(det))
    _require(_same(copy.state, det.state), "pickling changed the state")
    _require(_knowledge_beyond_state(copy) == _knowledge_beyond_state(det),
             "pickling lost what the detector knows besides its state")
    _require(_same(copy.update_many(stream[300:]), det.update_many(stream[300:])),
             "an unpickled detector scores differently")


def check_snapshot_restore(detector: Any, stream: np.ndarray) -> None:
    det = detector.clone()
    det.update_many(stream[:200])
    snap = det.snapshot()
    tail = det.update_many(stream[200:])
    det.restore(snap)
    _require(_same(det.update_many(stream[200:]), tail), "restore did not rewind the stream")
    other = detector.clone()
    other.restore(snap)
    other_tail = other.update_many(stream[200:])
    _require(_same(other_tail, tail), "a snapshot restored into a clone scores differently")
    det.reset()
    _require(_same(det.state, detector.clone().state), "reset must return to the fresh state")


def check_anomaly_explained(detector: Any, stream: np.ndarray) -> None:
    det = detector.clone()
    anomalies = det.detect_many(stream)
    _require(anomalies, "the check stream has spikes and a level shift; nothing was flagged")
    for a in anomalies:
        _require(abs(a.score) > a.threshold, f"{a} does not exceed its threshold")
        _require(math.isfinite(a.value) and math.isfinite(a.expected), f"{a} lacks its explanation")
        _require(a.detector == det.name, f"{a} names detector {a.detector!r}, not {det.name!r}")
        _require(str(a), f"{a!r} has no text")
    scalar = detector.clone()
    one_by_one = [a for i, x in enumerate(stream) if (a := scalar.check(float(x))) is not None]
    _require([(a.index, a.score) for a in one_by_one] == [(a.index, a.score) for a in anomalies],
             "check() and detect_many() disagree")


ALL_CHECKS: tuple[Callable[[Any, np.ndarray], None], ...] = (
    check_repr,
    check_no_mutable_defaults,
    check_score_before_learn,
    check_clone,
    check_determinism,
    check_scalar_equals_batch,
    check_river_verbs,
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
