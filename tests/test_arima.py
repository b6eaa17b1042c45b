"""ArimaDetector: statsmodels as the oracle, fitting off the path, refits, bad input."""

from __future__ import annotations

import math
import pickle
import threading

import numpy as np
import pytest
from statsmodels.tsa.arima.model import ARIMA
from statsmodels.tsa.arima_process import arma_generate_sample
from statsmodels.tsa.statespace.sarimax import SARIMAX

from perfsdk import ArimaDetector, ArimaFit
from perfsdk._native import kernels as K
from perfsdk.detect._fitting import FITS, choose_order

# (order, season, ar, ma, intercept)
MODELS = [
    ((1, 0, 1), None, [0.6], [0.3], 5.0),
    ((2, 0, 0), None, [0.5, -0.3], [], -2.0),
    ((0, 0, 2), None, [], [0.5, 0.2], 3.0),
    ((2, 1, 2), None, [0.5, -0.2], [0.3, 0.1], 0.0),
    ((0, 1, 1), None, [], [-0.4], 0.0),
    ((1, 2, 1), None, [0.3], [0.2], 0.0),
    ((1, 0, 1), 12, [0.5], [0.3], 0.0),
]
SIGMA2 = 4.0


def simulate(order, season, ar, ma, n=800, seed=1, offset=1000.0):
    rng = np.random.default_rng(seed)
    y = arma_generate_sample(np.r_[1, -np.array(ar)], np.r_[1, ma], n, scale=2.0,
                             distrvs=rng.standard_normal)
    for _ in range(order[1]):
        y = np.cumsum(y)
    if season:
        for t in range(season, n):
            y[t] += y[t - season]
    return y + offset


def statsmodels_results(y, order, season, ar, ma, intercept):
    with_const = order[1] == 0 and not season
    model = SARIMAX(y, order=order, seasonal_order=(0, 1, 0, season) if season else (0, 0, 0, 0),
                    trend="c" if with_const else "n")
    params = ([intercept] if with_const else []) + list(ar) + list(ma) + [SIGMA2]
    return model.filter(np.array(params))


def known(order, season, ar, ma, intercept, **kwargs):
    kwargs.setdefault("warmup", order[1] + (season or 0) + 1)
    return ArimaDetector.from_params(order, ar=ar, ma=ma, intercept=intercept, sigma2=SIGMA2,
                                     season=season, **kwargs)


@pytest.mark.parametrize("order,season,ar,ma,intercept", MODELS, ids=[f"{m[0]}s{m[1]}" for m in MODELS])
def test_one_step_forecasts_equal_statsmodels(order, season, ar, ma, intercept):
    y = simulate(order, season, ar, ma)
    _, forecasts, _ = known(order, season, ar, ma, intercept).update_many(y, details=True)
    oracle = statsmodels_results(y, order, season, ar, ma, intercept).predict()
    burn = 100 + (season or 0)
    np.testing.assert_allclose(forecasts[burn:], oracle[burn:], rtol=1e-8)


@pytest.mark.parametrize("order,season,ar,ma,intercept", MODELS, ids=[f"{m[0]}s{m[1]}" for m in MODELS])
def test_forecast_h_equals_statsmodels(order, season, ar, ma, intercept):
    y = simulate(order, season, ar, ma)
    det = known(order, season, ar, ma, intercept)
    det.update_many(y)
    ours = det.forecast(24, level=0.95)
    theirs = statsmodels_results(y, order, season, ar, ma, intercept).get_forecast(24)
    interval = theirs.conf_int(alpha=0.05)
    np.testing.assert_allclose(ours.mean, theirs.predicted_mean, rtol=1e-6)
    np.testing.assert_allclose(ours.lower, interval[:, 0], rtol=1e-4)
    np.testing.assert_allclose(ours.upper, interval[:, 1], rtol=1e-4)


def test_scalar_path_equals_batch_path_exactly():
    order, season, ar, ma, c = MODELS[3]
    y = simulate(order, season, ar, ma, n=400)
    y[[50, 120]] = [np.nan, np.inf]
    scalar, batch = known(order, season, ar, ma, c), known(order, season, ar, ma, c)
    want = [scalar.update(v) for v in y]
    assert np.array_equal(batch.update_many(y), want, equal_nan=True)
    assert np.array_equal(batch.state, scalar.state, equal_nan=True)


def test_fit_recovers_the_model_and_detects_a_spike():
    order, season, ar, ma, c = MODELS[0]
    y = simulate(order, season, ar, ma, n=700, seed=4)
    y[650] += 30.0  # ~15 sigma
    det = ArimaDetector(order=(1, 0, 1), warmup=500, background=False)
    anomalies = det.detect_many(y)
    assert det.fits == 1 and det.model is not None
    # the same estimate as statsmodels' other ARIMA implementation (mean form)
    reference = ARIMA(y[:500], order=(1, 0, 1)).fit()
    assert det.model.ar[0] == pytest.approx(reference.params[1], abs=0.02)
    assert det.model.ma[0] == pytest.approx(reference.params[2], abs=0.02)
    spike = [a for a in anomalies if a.index == 650]
    assert spike, [a.index for a in anomalies]
    a = spike[0]
    assert a.details["order"] == (1, 0, 1) and a.details["ar"] == det.model.ar
    assert a.lower < a.expected < a.upper < a.value
    assert "above the expected" in str(a)


def test_update_never_waits_for_a_background_fit():
    y = simulate((1, 1, 1), None, [0.4], [0.2], n=2000, seed=2)
    det = ArimaDetector(order=(1, 1, 1), warmup=300)
    started = threading.Event()
    release = threading.Event()
    FITS.submit(lambda: (started.set(), release.wait(10)))  # occupy the worker
    started.wait(5)
    try:
        scores = det.update_many(y[:1000])  # asks for a fit at 300; the worker is busy
        assert det.state[K.AR_FIT_STATE] == K.FIT_IN_FLIGHT and det.provisional
        # nothing blocks, and the closed-form stand-in scores while the fit waits
        assert np.isnan(scores[:32]).all() and np.isfinite(scores[32:]).all()
    finally:
        release.set()
    det.wait_for_fits()
    assert det.model is not None and det.fits == 1 and not det.provisional
    scores = det.update_many(y[1000:])
    assert np.isfinite(scores).all()


def test_failed_fit_is_counted_and_keeps_the_previous_model(caplog):
    det = ArimaDetector(order=(1, 1, 1), warmup=100, history=100, refit_every=100,
                        shift_run=0, background=False)
    rng = np.random.default_rng(0)
    det.update_many(100 + np.cumsum(rng.normal(size=200)))
    model = det.model
    assert det.fits == 2 and det.fit_failures == 0
    det.update_many(np.full(100, 42.0))  # the refit at 300 sees a flat line: it cannot fit
    assert det.fits == 2 and det.fit_failures == 1 and det.last_fit_error.startswith("ARIMA(1, 1, 1)")
    assert det.model == model
    assert "keeping the previous model" in caplog.text


def test_unfitted_detector_backs_off_after_a_failed_fit():
    det = ArimaDetector(order=(1, 1, 1), warmup=100, background=False)
    det.update_many(np.full(250, 7.0))
    # never "no model": the closed-form stand-in scores; the fit is retried at 100 and 200, not every point
    assert det.provisional and det.model is not None and det.fit_failures == 2
    assert det.state[K.AR_RETRY_AT] == 300


def test_level_shift_triggers_a_refit():
    rng = np.random.default_rng(5)
    y = 50 + rng.normal(0, 1, 1200)
    y[800:] += 25.0
    det = ArimaDetector(order=(1, 0, 0), warmup=300, refit_every=0, shift_run=5, background=False)
    flagged = [a.index for a in det.detect_many(y)]
    assert det.level_shifts == 1 and det.fits == 2
    assert 800 in flagged and max(flagged) < 810  # re-anchored: the new level is normal at once
    assert det.model.intercept / (1 - det.model.ar[0]) == pytest.approx(75, abs=0.5)  # refit on new data
    assert det.state[K.AR_REGIME_START] == 800


def test_refit_every_swaps_parameters_without_losing_position():
    y = simulate((1, 1, 1), None, [0.4], [0.2], n=1500, seed=3)
    det = ArimaDetector(order=(1, 1, 1), warmup=300, refit_every=400, background=False)
    det.update_many(y)
    assert det.fits == 4  # at 300, 700, 1100, 1500
    assert det.n_seen == 1500
    fresh = known((1, 1, 1), None, det.model.ar, det.model.ma, 0.0)
    fresh.update_many(y[-det.history:])  # same model over the same history ...
    assert det.forecast(1).mean[0] == pytest.approx(fresh.forecast(1).mean[0], rel=1e-12)


def test_auto_order_picks_differencing_by_unit_root():
    rng = np.random.default_rng(6)
    walk = np.cumsum(rng.normal(size=400))
    noise = arma_generate_sample([1, -0.5], [1], 400, distrvs=rng.standard_normal)
    assert choose_order(walk).order[1] == 1
    assert choose_order(noise).order[1] == 0
    det = ArimaDetector(order="auto", warmup=300, background=False)
    det.update_many(walk)
    assert det.model is not None and det.model.order[1] == 1 and det.name == "arima(auto)"


def test_seasonal_detector_follows_a_daily_cycle():
    rng = np.random.default_rng(7)
    t = np.arange(24 * 30)
    y = 100 + 20 * np.sin(2 * np.pi * t / 24) + rng.normal(0, 1, len(t))
    y[700] += 12
    det = ArimaDetector(order=(1, 0, 1), season=24, warmup=300, background=False)
    flagged = {a.index for a in det.detect_many(y)}
    assert 700 in flagged and len(flagged) < 10


def test_pickle_keeps_the_fitted_model():
    y = simulate((1, 1, 1), None, [0.4], [0.2], n=500, seed=8)
    det = ArimaDetector(order=(1, 1, 1), warmup=300, background=False)
    det.update_many(y)
    copy = pickle.loads(pickle.dumps(det))
    assert copy.model == det.model
    tail = simulate((1, 1, 1), None, [0.4], [0.2], n=100, seed=9)
    assert np.array_equal(copy.update_many(tail), det.update_many(tail))


@pytest.mark.parametrize(
    "kwargs,argument",
    [
        ({"order": (1, 3, 1)}, "order"),
        ({"order": (1, 1)}, "order"),
        ({"order": "best"}, "order"),
        ({"season": 1}, "season"),
        ({"threshold": -1}, "threshold"),
        ({"warmup": 5}, "warmup"),
        ({"warmup": 300, "history": 100}, "history"),
        ({"refit_every": -1}, "refit_every"),
        ({"scale_beta": 2.0}, "scale_beta"),
        ({"background": "yes"}, "background"),
        ({"order": (1, 0, 0), "model": ArimaFit((1, 0, 0), 0.0, (), (), 1.0)}, "model"),
        ({"order": "auto", "model": ArimaFit((1, 0, 0), 0.0, (0.5,), (), 1.0)}, "model"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, argument):
    with pytest.raises((TypeError, ValueError), match=argument):  # TypeError for a wrong type
        ArimaDetector(**kwargs)


def test_forecast_refuses_bad_requests():
    det = ArimaDetector(order=(1, 1, 1))
    with pytest.raises(ValueError, match="warming up"):
        det.forecast(3)
    det = known(*MODELS[0])
    with pytest.raises(ValueError, match="too few points to forecast from yet"):
        det.forecast(3)  # its lags hold zeros, not data (it forecast from them)
    det.update_many(np.full(40, 10.0))
    with pytest.raises(ValueError, match="h must be"):
        det.forecast(0)
    with pytest.raises(ValueError, match="level"):
        det.forecast(3, level=1.5)
    with pytest.raises(TypeError, match="level must be a number"):
        det.forecast(3, level="0.9")
    assert math.isfinite(det.forecast(3).mean[-1])


def test_a_fit_asked_for_before_a_reset_never_lands_after_it():
    det = ArimaDetector(order=(1, 0, 0), warmup=200)
    det.update_many(1000 + np.random.default_rng(3).normal(0, 5, 250))  # the fit is asked for at 200
    FITS.flush()  # ...and delivered, not yet installed
    det.reset()
    det.update(3.0)
    assert det.model is None and det.fits == 0
    with pytest.raises(ValueError, match="warming up"):
        det.forecast(1)


def test_pickling_keeps_what_the_detector_knows_of_its_fits():
    """After a level shift a refit is due: an unpickled copy took its model for a stand-in, searched
    the order again and scored differently from there on; its counters read 0."""
    rng = np.random.default_rng(5)
    y = np.empty(900)
    y[0] = 0.0
    for i in range(1, 900):
        y[i] = 0.5 * y[i - 1] + rng.normal()
    y += 40.0
    y[500:] += 30.0
    det = ArimaDetector(order="auto", background=False, warmup=200)
    det.update_many(y[:520])
    assert det.level_shifts == 1 and det.fits == 1 and not det.provisional
    copy = pickle.loads(pickle.dumps(det))
    assert (copy.fits, copy.level_shifts, copy.provisional) == (1, 1, False)
    assert np.array_equal(copy.update_many(y[520:]), det.update_many(y[520:]), equal_nan=True)
    det.reset()
    assert (det.fits, det.level_shifts, det.n_seen) == (0, 0, 0)


def test_season_auto_finds_a_daily_cycle_and_models_it():
    """Issue 14: seasonality is detected, not only configured. Five days of 5-minute samples of a
    daily cycle: once the history holds two days the refit models the period, and the forecast a
    day ahead follows the cycle; a series without one gets no period."""
    rng = np.random.default_rng(4)
    t = np.arange(5 * 288)
    cycle = 50 + 10 * np.sin(2 * np.pi * t / 288)
    det = ArimaDetector(season="auto", refit_every=400, background=False)
    det.update_many(cycle + rng.normal(0, 0.5, len(t)))
    assert det.model is not None and det.model.season == 288 and det.details["season"] == 288
    ahead = det.forecast(288).mean
    truth = 50 + 10 * np.sin(2 * np.pi * np.arange(len(t), len(t) + 288) / 288)
    assert np.abs(ahead - truth).mean() < 1.5
    anomaly = det.check(truth[0] + 8.0)  # 8 above a cycle the model expects: flagged
    assert anomaly is not None and anomaly.score > det.threshold
    plain = ArimaDetector(season="auto", refit_every=400, background=False)
    plain.update_many(50 + rng.normal(0, 0.5, len(t)))
    assert plain.model is not None and plain.model.season is None
    snap = det.snapshot()
    again = ArimaDetector(season="auto", refit_every=400, background=False)
    again.restore(snap)
    assert again.model == det.model and again.model.season == 288


def test_season_auto_is_refused_with_known_coefficients():
    with pytest.raises(ValueError, match="season='auto'"):
        ArimaDetector((1, 0, 0), season="auto", model=ArimaFit((1, 0, 0), 0.0, (0.5,), (), 1.0))


@pytest.mark.parametrize("order", ["auto", (1, 1, 0), (0, 1, 1)])
def test_a_detector_that_has_seen_nothing_pickles_and_copies(order):
    """Its differencing taps are written with its first model: the snapshot check refused the zeros
    before it, so pickling a fresh detector (or a pipeline over one) raised "snapshot is corrupt"."""
    import copy

    from perfsdk import AlertPipeline

    for det in (ArimaDetector(order=order), AlertPipeline(ArimaDetector(order=order))):
        assert pickle.loads(pickle.dumps(det)).n_seen == 0
        assert copy.deepcopy(det).n_seen == 0


def test_check_explains_an_anomaly_with_the_model_that_scored_it():
    """A background fit that landed before ``check`` was installed by its ``update``, but the
    explanation had been read before: the old model's coefficients, with the new one's forecast."""
    rng = np.random.default_rng(0)
    y = np.zeros(300)
    for i in range(1, 300):
        y[i] = 0.8 * y[i - 1] + rng.normal()
    y += 100
    det = ArimaDetector(order=(1, 0, 0), warmup=200)
    det.update_many(y[:200])
    stand_in = det.model
    FITS.flush()  # the fit has landed; the next update installs it
    assert det._has_pending
    a = det.check(y[199] + 30)
    assert a is not None and det.model != stand_in and det.fits == 1
    assert a.details["ar"] == det.model.ar and a.details["intercept"] == det.model.intercept
    assert a.expected == pytest.approx(det.model.intercept + det.model.ar[0] * y[199], rel=1e-12)


def test_verbs_refuse_a_wrong_type_naming_it_and_take_a_huge_int_as_inf():
    det = ArimaDetector.from_params((1, 0, 0), ar=[0.5], intercept=50.0, warmup=5)
    det.update_many(np.full(10, 100.0))
    before = det.snapshot()
    for verb in ("update", "check"):
        with pytest.raises(TypeError, match="^x must be a number, got '1'"):
            getattr(det, verb)("1")
    assert math.isnan(det.update(10**400)) and det.check(-(10**400)) is None
    det.learn_one(10**400)
    assert det.score_one(10**400) == 0.0 and np.isnan(det.update_many([10**400])).all()
    after = det.snapshot()
    after[K.AR_REJECTED] = before[K.AR_REJECTED]
    assert det.rejected == 4 and np.array_equal(after, before, equal_nan=True)


@pytest.mark.parametrize(
    "kwargs,argument",
    [
        ({"season": 2**62}, "season"),
        ({"season": 2_500_001}, "season"),  # its default warm-up holds two seasons, within 10**7
        ({"history": 10**7 + 1}, "history"),
        ({"warmup": 10**7 + 1}, "warmup"),
    ],
)
def test_arguments_sizing_the_state_have_a_maximum(kwargs, argument):
    """The state holds the history and the seasonal lags whole: a huge one was allocated (24 GB for
    season=10**9) or failed with numpy's message instead of naming the argument."""
    with pytest.raises(ValueError, match=f"^{argument} must be an integer in"):
        ArimaDetector(order=(1, 0, 0), **kwargs)
    det = ArimaDetector.from_params((1, 0, 0), ar=[0.5], warmup=5)
    with pytest.raises(ValueError, match=r"^h must be an integer in \[1, 1e\+07\]"):
        det.forecast(10**12)


def test_the_residual_scale_has_a_floor():
    """Exact forecasts drove the running scale to a subnormal (each new error is clipped at a few
    scales, so it could not grow back): after a flat stretch every ordinary point was flagged, the
    explanation saying "std 5.5e-206". It stops at a share of the model's innovation std, and grows
    back within a few hundred points."""
    det = ArimaDetector.from_params((0, 1, 0), sigma2=1.0, warmup=5)
    det.update_many(np.full(50_000, 100.0))
    noise = 100.0 + np.random.default_rng(0).normal(0, 1, 2000)
    one_by_one = det.clone()
    one_by_one.restore(det.snapshot())
    zs = det.update_many(noise)
    assert np.isfinite(zs).all() and not (np.abs(zs[300:]) > det.threshold).any()
    assert np.array_equal(zs, [one_by_one.update(x) for x in noise])  # the engines floor it alike
    assert one_by_one.last_std > 0.5  # grown back
    anomaly = det.check(130.0)
    assert anomaly is not None and 0.3 < anomaly.std < 3.0


def test_a_scale_of_zero_scores_as_the_z_score_scores_a_constant_series():
    """With no spread at all (a restored state whose model has none), an exactly forecast point
    scores 0 and any other +-inf, in both engines, as ``ZScoreDetector`` does: not NaN."""
    det = ArimaDetector.from_params((0, 1, 0), sigma2=1.0, warmup=3)
    det.update_many(np.zeros(10))
    snap = det.snapshot()
    snap[K.AR_SIGMA2] = snap[K.AR_SCALE] = 0.0
    for values, scores in (([0.0, 0.0, 2.0], [0.0, 0.0, math.inf]), ([-3.0], [-math.inf])):
        det.restore(snap)
        batch = det.clone()
        batch.restore(snap)
        assert [det.update(x) for x in values] == scores
        assert batch.update_many(values).tolist() == scores
        assert np.array_equal(batch.state, det.state)


def test_scale_beta_must_leave_the_scale_a_memory():
    """At 1 the scale was the last error alone: one exactly forecast point made it 0, and every
    later point scored NaN or +-inf."""
    with pytest.raises(ValueError, match=r"^scale_beta must be a finite number in \(0, 1\)"):
        ArimaDetector(scale_beta=1.0)
    assert ArimaDetector(scale_beta=0.999).scale_beta == 0.999
