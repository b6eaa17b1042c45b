"""The alert pipeline and the default detector (issue 14): causal, one engine as good as
the other, one alert per incident, bad data refused, and NAB's scorer on a few real files."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

import perfsdk
from perfsdk import AlertPipeline, ArimaDetector, ZScoreDetector, default_detector
from perfsdk._native import kernels as K
from perfsdk.checks import BAD_VALUES, check_stream

N = 2500


def _metric(n: int = N, seed: int = 0) -> np.ndarray:
    """A daily-cycled metric (period 288) with noise, spikes and a level shift."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    xs = 50 + 10 * np.sin(2 * np.pi * t / 288) + rng.normal(0, 1, n)
    xs[rng.choice(np.arange(500, n), 6, replace=False)] += 25
    xs[1800:] += 15
    return xs


def _with_bad(xs: np.ndarray, seed: int = 1) -> np.ndarray:
    xs = xs.copy()
    rng = np.random.default_rng(seed)
    xs[rng.choice(len(xs), 12, replace=False)] = rng.choice(BAD_VALUES, 12)
    return xs


PIPELINES = {
    "default": default_detector,
    "zscore": lambda: AlertPipeline(ZScoreDetector(window=64, warmup=16), learning=100),
    "arima": lambda: AlertPipeline(
        ArimaDetector.from_params((1, 0, 0), ar=[0.5], intercept=25.0, warmup=20), learning=100),
}


@pytest.fixture(params=list(PIPELINES))
def make(request):
    return PIPELINES[request.param]


def test_default_detector_is_fresh_and_exported():
    a, b = perfsdk.default_detector(), perfsdk.default_detector()
    assert a is not b and a.state is not b.state
    assert isinstance(a, perfsdk.AlertPipeline) and a.season == 288 and a.threshold == 0.5
    assert a.n_seen == 0 and np.array_equal(a.state, b.state)


def test_scores_are_in_unit_interval_and_rejected_are_nan(make):
    xs = _with_bad(_metric())
    scores = make().update_many(xs)
    bad = ~(np.abs(xs) <= 1e150)  # NaN, infinite, or too large to square
    assert np.isnan(scores[bad]).all()
    assert ((scores[~bad] >= 0.0) & (scores[~bad] <= 1.0)).all()


@pytest.mark.parametrize("stalls", [False, True])
def test_update_and_update_many_agree_bit_for_bit_even_interleaved(make, stalls):
    xs = _with_bad(_metric())
    if stalls:  # isolated values far beyond the default member's clip, and two in a row
        xs[[700, 1200, 1500, 1501]] = [1e4, -1e4, 5e3, 6e3]
    scalar, batch, mixed = make(), make(), make()
    want = np.array([scalar.update(float(x)) for x in xs])
    assert np.array_equal(batch.update_many(xs), want, equal_nan=True)
    assert np.array_equal(batch.state, scalar.state, equal_nan=True)
    out, i = [], 0
    for k, size in enumerate([1, 300, 7, 64, 1, 500, 3, 2000]):
        chunk = xs[i : i + size]
        out.extend(mixed.update_many(chunk) if k % 2 else [mixed.update(float(x)) for x in chunk])
        i += size
    assert np.array_equal(np.array(out), want, equal_nan=True)
    assert np.array_equal(mixed.state, scalar.state, equal_nan=True)


def test_check_one_by_one_gives_the_same_alerts_as_detect_many(make):
    xs = _with_bad(_metric())
    stamps = np.arange(len(xs)) * 300
    one = make()
    by_check = [a for x, t in zip(xs, stamps) if (a := one.check(float(x), int(t))) is not None]
    batch = make().detect_many(xs, stamps)
    assert by_check and [a.as_dict() for a in by_check] == [a.as_dict() for a in batch]
    for a in batch:
        assert math.isfinite(a.value) and math.isfinite(a.expected) and a.std > 0
        assert a.details["alert_score"] >= 0.5 and a.details["channel"] in ("detector", "seasonal", "range")
        assert a.timestamp == stamps[a.index] and str(a)


def test_causal_a_score_never_depends_on_later_points(make):
    xs = _metric()
    full = make().update_many(xs)
    for cut in (400, 1000, 1801):
        assert np.array_equal(make().update_many(xs[:cut]), full[:cut])
    tampered = xs.copy()
    tampered[1500:] = 0.0  # the future changes; the past's scores must not
    assert np.array_equal(make().update_many(tampered)[:1500], full[:1500])


def test_level_shift_raises_one_alert_then_goes_quiet():
    rng = np.random.default_rng(3)
    xs = 20 + rng.normal(0, 1, 6000)
    xs[3000:] += 12  # a new normal
    det = default_detector()
    alerts = [a.index for a in det.detect_many(xs)]
    assert alerts.count(3000) == 1 and not [i for i in alerts if 3000 < i]
    assert det.suppressed > 0  # the shift's follow-ups were seen and not paged
    assert det.state[K.PL_INCIDENT] == 0.0  # the new level became normal: the incident closed
    late = det.update_many(20 + 12 + rng.normal(0, 1, 500))
    assert late.max() < 0.5


def test_one_alert_per_incident_then_a_new_incident_alerts_again():
    rng = np.random.default_rng(4)
    xs = 100 + rng.uniform(-1, 1, 4000)
    xs[2000:2005] += 30  # one incident of five bad points
    xs[3000] -= 30  # a second, later
    alerts = [a.index for a in AlertPipeline().detect_many(xs)]
    assert alerts == [2000, 3000]


def test_nan_and_inf_are_rejected_counted_and_leave_every_state_unchanged(make):
    det = make()
    det.update_many(_metric()[:800])
    before = det.snapshot()
    for bad in BAD_VALUES:
        assert math.isnan(det.update(bad))
        assert det.check(bad) is None
    assert np.isnan(det.update_many(np.array(BAD_VALUES))).all()
    assert det.detect_many(np.array(BAD_VALUES)) == []
    after = det.snapshot()
    mask = np.ones(len(before), bool)
    mask[det.rejected_slot] = False
    assert np.array_equal(before[mask], after[mask])
    assert det.rejected == 4 * len(BAD_VALUES)  # update, check, update_many, detect_many
    assert det.n_seen == 800 + det.rejected


def test_snapshot_pickle_clone_reset(make):
    xs = check_stream(1200)
    det = make()
    det.update_many(xs[:700])
    snap = det.snapshot()
    tail = det.update_many(xs[700:])
    det.restore(snap)
    assert np.array_equal(det.update_many(xs[700:]), tail, equal_nan=True)
    copy = pickle.loads(pickle.dumps(det))
    assert np.array_equal(copy.state, det.state, equal_nan=True)
    assert np.array_equal(copy.update_many(xs[:300]), det.update_many(xs[:300]), equal_nan=True)
    clone = det.clone()
    assert repr(clone) == repr(det) and np.array_equal(clone.state, make().state)
    det.reset()
    assert np.array_equal(det.state, make().state)
    with pytest.raises(ValueError, match="shape"):
        det.restore(snap[:-1])


def test_members_live_in_the_one_state_array():
    det = default_detector()
    det.update_many(_metric()[:600])
    for member in det.members:
        assert np.shares_memory(member.state, det.state)
    assert det.members[0].n_seen == 600


def test_seasonal_channel_counts_only_on_a_cycle():
    cycled = default_detector()
    cycled.update_many(_metric()[:1500])
    assert cycled.seasonal
    rng = np.random.default_rng(5)
    flat = default_detector()
    flat.update_many(50 + rng.normal(0, 1, 1500))
    assert not flat.seasonal


def test_bad_parameters_are_refused():
    with pytest.raises(TypeError, match="detector"):
        AlertPipeline(object())
    with pytest.raises(ValueError, match="threshold"):
        AlertPipeline(threshold=1.5)
    with pytest.raises(ValueError, match="season"):
        AlertPipeline(season=1)


def test_nab_scorer_on_a_few_files(shared_data):
    """The default detector beats the raw Z-score on three real AWS series, scored by NAB's rules."""
    import nab

    if not nab.SCORER.is_file():
        pytest.skip(f"the shared NAB scorer {nab.SCORER} is absent")

    rows = {r["key"]: r for r in nab.evaluate(["default", "zscore"], jobs=1,
                                              only=["ec2_cpu_utilization_825cc2", "rds_cpu_utilization_e47b3b",
                                                    "art_daily_jumpsdown"])}
    assert rows["default"]["standard"] > rows["zscore"]["standard"]
    assert rows["default"]["standard"] > 50


def test_a_detector_belongs_to_one_pipeline():
    """A second pipeline over the same detector re-bound its state into its own buffer: the first
    went on writing into the second's, and a pickle of the first lost what it had learned."""
    member = ZScoreDetector(window=32, warmup=8)
    AlertPipeline(member, learning=50)
    with pytest.raises(ValueError, match="already belongs to an AlertPipeline"):
        AlertPipeline(member, learning=50)
    with pytest.raises(TypeError, match="a ZScoreDetector or an ArimaDetector"):
        AlertPipeline(AlertPipeline())


def test_an_anomalys_details_are_its_own():
    det = ZScoreDetector(window=16, warmup=4)
    [first] = det.detect_many(np.r_[np.ones(20) + np.arange(20) % 2 * 0.1, 100.0])
    first.details["note"] = "mine"  # was the detector's own dict: every later anomaly said it too
    assert "note" not in det._details


def test_an_alert_on_a_moved_level_says_the_points_together_are_unlikely():
    """Flagged on the averaged likelihood, a point inside its own band was explained by its band
    alone: the explanation contradicted the alert."""
    xs = 100 + np.random.default_rng(0).normal(0, 1, 3000)
    xs[2000:] += 2.5
    alert = AlertPipeline(range_tolerance=None).detect_many(xs)[0]
    assert alert.index >= 2000 and abs(alert.score) <= alert.threshold
    assert "inside the normal band" in str(alert) and "the last 10 points together are what is unlikely" in str(alert)


def test_river_verbs_on_an_arima_pipeline_let_its_fit_land():
    """``score_one`` put the state back with ``restore``, which starts a new life and drops the fit
    in flight: ``score_one`` before every ``learn_one`` left the ARIMA member without a fit (and
    filled the fit queue asking again)."""
    rng = np.random.default_rng(1)
    values = 100 + np.cumsum(rng.normal(0, 1, 300)) * 0.1 + rng.normal(0, 1, 300)
    arima = ArimaDetector(order=(1, 0, 1), warmup=60)
    pipeline = AlertPipeline(arima)
    for x in values:
        pipeline.score_one(float(x))
        pipeline.learn_one(float(x))
    before = pipeline.snapshot()
    pipeline.score_one(float(values[-1]) + 50.0)  # a preview leaves the state as it was
    assert np.array_equal(pipeline.snapshot(), before, equal_nan=True)
    arima.wait_for_fits()
    assert arima.fits == 1 and arima.fits_dropped == 0 and not arima.provisional


def test_a_refused_restore_leaves_every_member_as_it_was():
    """Members' parameters were checked only while loading: member 0 was overwritten before the
    seasonal member's different parameter refused the snapshot (half restored)."""
    rng = np.random.default_rng(0)
    det = default_detector()
    det.update_many(rng.normal(0, 1, 500))
    other = default_detector()
    other.update_many(rng.normal(50, 1, 800))
    snap = other.snapshot()
    snap[det._bounds[-2] + K.ZS_MIN_STD] = 1.0  # only the seasonal member's parameter differs
    before = det.snapshot()
    with pytest.raises(ValueError, match="different parameters"):
        det.restore(snap)
    assert np.array_equal(det.state, before, equal_nan=True)
    assert det.members[0].n_learned == det.n_learned == 500


def test_an_int_too_large_for_a_float_is_rejected_by_every_verb(make):
    """``10**400`` raised OverflowError; it is +-inf: rejected, counted, every state unchanged."""
    det = make()
    det.update_many(_metric()[:400])
    before = det.snapshot()
    assert math.isnan(det.update(10**400)) and det.check(-(10**400)) is None
    det.learn_one(10**400)
    assert det.score_one(10**400) == 0.0
    assert np.isnan(det.update_many([10**400])).all()
    after = det.snapshot()
    after[K.PL_REJECTED] = before[K.PL_REJECTED]
    assert det.rejected == 4 and np.array_equal(after, before, equal_nan=True)
    with pytest.raises(TypeError, match="^x must be a number, got '1'"):
        det.update("1")


@pytest.mark.parametrize("season", [2**62, 10**7 + 1])
def test_a_season_past_the_maximum_is_a_value_error_naming_it(season):
    """The season's ring lives in the state: 2**62 overflowed its size, 10**12 was a MemoryError."""
    with pytest.raises(ValueError, match=r"^season must be an integer in \[2, 1e\+07\]"):
        AlertPipeline(season=season)


@pytest.mark.parametrize("duplicate", [lambda p: pickle.loads(pickle.dumps(p)), __import__("copy").deepcopy,
                                       __import__("copy").copy], ids=["pickle", "deepcopy", "copy"])
def test_a_copied_pipeline_keeps_what_its_arima_knows_of_its_fits(duplicate):
    """The member was rebuilt as a clone and a snapshot: after a level shift, its refit due took
    its model for a stand-in and searched the order again (ARIMA(2, 1, 2) for (1, 0, 0)), and the
    copy scored 143 of the next 470 points differently."""
    rng = np.random.default_rng(3)
    y = np.empty(900)
    y[0] = 50.0
    for i in range(1, 400):
        y[i] = 50 + 0.6 * (y[i - 1] - 50) + rng.normal(0, 1)
    y[400:] = 120 + np.cumsum(rng.normal(0, 3, 500))  # a jump, then a random walk
    det = AlertPipeline(ArimaDetector(background=False), learning=50)
    det.update_many(y[:430])
    arima = det.detector
    assert arima.level_shifts == 1 and arima.fits == 1
    copy = duplicate(det)
    history = ("fits", "level_shifts", "provisional", "fit_failures", "model")
    assert [getattr(copy.detector, k) for k in history] == [getattr(arima, k) for k in history]
    assert np.array_equal(copy.state, det.state, equal_nan=True)
    assert np.array_equal(copy.update_many(y[430:]), det.update_many(y[430:]), equal_nan=True)
    assert copy.detector.stats() == arima.stats() and np.shares_memory(copy.detector.state, copy.state)
