"""The pool simulator (perfsdk/_native/kernels_pool.py) and its evaluation (benches/eval/pool_eval.py):
requests are conserved and served in order, the database follows the USL, the limiter ports step as
their Java originals do, and the evaluation runs in its quick mode."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

import pool_eval
from perfsdk import PoolController
from perfsdk._native import kernels as K
from perfsdk._native import kernels_pool as P

S, SIGMA, KAPPA = 0.0008, 0.0935, 0.0048  # the fitted backend (pool_eval.fit_backend), rounded


def run(limit, rates, *, capacity=None, costs=None, seed=3, timeout=1.0, work="lognormal", sigma=SIGMA,
        kappa=KAPPA, chunk=1.0):
    """Simulate to the end of ``rates``; (sim, done, acquired, areas)."""
    rates = np.asarray(rates, dtype=np.float64)
    costs = np.full(len(rates), S) if costs is None else np.asarray(costs, dtype=np.float64)
    sim = K.pool_sim_state(sigma=sigma, kappa=kappa, timeout=timeout, capacity=capacity or int(limit[P.PL_MAX]),
                           work=work, seed=seed)
    done, acquired = np.empty((64, 3)), np.empty((64, 2))  # small: the kernel asks for more
    pos, areas = np.zeros(2, np.int64), np.zeros(4)
    t = 0.0
    while t < len(rates):
        t = min(t + chunk, float(len(rates)))
        while K.pool_sim_advance(sim, limit, rates, costs, t, done, acquired, pos, areas):
            done = np.concatenate([done, np.empty_like(done)])
            acquired = np.concatenate([acquired, np.empty_like(acquired)])
    return sim, done[:pos[0]], acquired[:pos[1]], areas


def test_every_request_is_accounted_for_and_served_first_come_first_served():
    rates = [3000.0] * 3 + [9000.0] * 3 + [500.0] * 3  # an overload in the middle: waiters time out
    sim, done, acquired, _ = run(K.pool_limit_fixed(6), rates, timeout=0.2)
    c = K.pool_sim_counts(sim)
    assert c["timed_out"] > 1000 and c["completed"] > 10_000
    assert c["arrived"] == c["completed"] + c["timed_out"] + c["rejected"] + c["in_service"] + c["waiting"]
    assert len(done) == c["completed"] and len(acquired) == c["completed"] + c["in_service"]
    ids = acquired[:, 1]
    assert np.all(np.diff(ids) > 0)  # connections go out in arrival order
    assert done[:, 0].max() <= 0.2 + 1e-12  # nobody waited past the timeout
    assert done[:, 2].max() == 6 and done[:, 2].min() >= 1


def test_a_full_waiting_ring_refuses_and_counts():
    sim = K.pool_sim_state(sigma=SIGMA, kappa=KAPPA, timeout=10.0, capacity=1, queue_capacity=50)
    done, acquired = np.empty((20_000, 3)), np.empty((20_000, 2))
    pos, areas = np.zeros(2, np.int64), np.zeros(4)
    K.pool_sim_advance(sim, K.pool_limit_fixed(1), np.full(2, 5000.0), np.full(2, S), 2.0, done, acquired, pos, areas)
    c = K.pool_sim_counts(sim)
    assert c["rejected"] > 5000 and c["waiting"] == 50
    assert c["arrived"] == c["completed"] + c["timed_out"] + c["rejected"] + c["in_service"] + c["waiting"]


def test_time_integrals_are_the_sums_of_holds_and_waits():
    """Drained at the end (rate 0): connection-seconds in use are the holds' sum, waiter-seconds the waits'."""
    sim, done, _, areas = run(K.pool_limit_fixed(4), [4500.0] * 4 + [0.0] * 2, timeout=0.05)
    c = K.pool_sim_counts(sim)
    assert c["in_service"] == c["waiting"] == 0 and c["timed_out"] > 0
    assert areas[0] == pytest.approx(done[:, 1].sum(), rel=1e-9)
    assert areas[1] == pytest.approx(done[:, 0].sum() + 0.05 * c["timed_out"], rel=1e-9)
    assert areas[2] == pytest.approx(4 * 6.0)


def test_the_peak_is_the_most_requests_present_at_once():
    """``areas[3]``: in use plus waiting at their most -- what the pool's record keeps as ``peak`` and
    tells a closed loop by. It must see a queue that built and drained inside the interval (estimating
    it from the completions' levels and the waiters left at the end saw 9 where hundreds had waited)."""
    sim, done, _, areas = run(K.pool_limit_fixed(4), [6000.0] + [0.0] * 4, timeout=10.0, chunk=5.0)
    c = K.pool_sim_counts(sim)
    assert c["in_service"] == c["waiting"] == 0  # drained: nobody waits at the end
    waits = done[:, 0]
    assert areas[3] >= 4 + 100 and areas[3] <= c["arrived"]
    # a queue that long means someone waited about (peak - 4) holds behind it
    assert waits.max() > (areas[3] - 4) / 4 * np.median(done[:, 1]) * 0.3
    with pytest.raises(ValueError, match="areas"):  # a caller from before the peak was kept
        K.pool_sim_advance(sim, K.pool_limit_fixed(4), np.full(2, 1.0), np.full(2, S), 6.0, np.empty((64, 3)),
                           np.empty((64, 2)), np.zeros(2, np.int64), np.zeros(3))


def test_without_contention_every_request_holds_its_work_times_s():
    """sigma = kappa = 0: processor sharing at full speed for everyone, so a constant work takes s."""
    _, done, _, _ = run(K.pool_limit_fixed(64), [2000.0] * 2, work="constant", sigma=0.0, kappa=0.0)
    np.testing.assert_allclose(done[:, 1], S, rtol=1e-9)
    assert done[:, 0].max() == 0.0


def test_one_connection_is_an_m_m_1_queue():
    """Exponential work, one connection: mean time in the system 1 / (mu - lambda)."""
    _, done, _, _ = run(K.pool_limit_fixed(1), [600.0] * 200, work="exponential", timeout=100.0)
    mean = float((done[:, 0] + done[:, 1]).mean())
    assert mean == pytest.approx(1 / (1 / S - 600.0), rel=0.05)


def test_processor_sharing_slows_a_request_when_others_join():
    """Constant work: alone a request takes s; with n in service throughout, s (1 + sigma (n-1) + kappa n (n-1))."""
    _, done, _, _ = run(K.pool_limit_fixed(14), [60_000.0] * 2, work="constant", timeout=100.0, capacity=14)
    steady = done[done[:, 2] == 14][100:]  # taken with 14 in use: the pool stays full under this overload
    expected = S * (1 + SIGMA * 13 + KAPPA * 14 * 13)
    np.testing.assert_allclose(steady[:, 1], expected, rtol=1e-6)


def test_at_n_star_a_pool_outserves_one_far_above_it_under_overload():
    """Saturated, the pool keeps n in service: throughput n / hold(n), the USL's, peaks at N* ~ 14."""
    served = {}
    for n in (14, 48):
        sim, _, _, _ = run(K.pool_limit_fixed(n), [20_000.0] * 20, timeout=0.5)
        served[n] = K.pool_sim_counts(sim)["completed"] / 20.0
    usl = {n: n / (S * (1 + SIGMA * (n - 1) + KAPPA * n * (n - 1))) for n in served}
    assert served[14] > 1.4 * served[48]
    for n in served:
        assert served[n] == pytest.approx(usl[n], rel=0.03)


def test_same_seed_same_numbers():
    a = run(K.pool_limit_gradient2(initial_limit=20, min_limit=1, max_concurrency=48), [4000.0] * 4, seed=7)
    b = run(K.pool_limit_gradient2(initial_limit=20, min_limit=1, max_concurrency=48), [4000.0] * 4, seed=7)
    c = run(K.pool_limit_gradient2(initial_limit=20, min_limit=1, max_concurrency=48), [4000.0] * 4, seed=8)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert len(a[1]) != len(c[1]) or not np.array_equal(a[1], c[1])


def test_every_policy_sees_the_same_requests():
    """Arrivals and their work are drawn in arrival order whatever the pool does (common random numbers):
    without contention a request's hold is its work times s, so two pool sizes give the same holds."""
    rates = [1000.0] * 3 + [0.0]
    wide = run(K.pool_limit_fixed(64), rates, work="exponential", sigma=0.0, kappa=0.0)
    narrow = run(K.pool_limit_fixed(2), rates, work="exponential", sigma=0.0, kappa=0.0, capacity=64)
    assert K.pool_sim_counts(wide[0]) == K.pool_sim_counts(narrow[0])
    assert narrow[1][:, 0].max() > 0 and wide[1][:, 0].max() == 0  # one queued, the other did not
    np.testing.assert_allclose(np.sort(wide[1][:, 1]), np.sort(narrow[1][:, 1]), rtol=1e-9)


def test_queuepool_grows_to_overflow_on_demand_and_keeps_pool_size():
    limit = K.pool_limit_queuepool(5, 10)
    rates = [30_000.0] * 2 + [0.0] * 3
    sim, done, _, _ = run(limit, rates, capacity=15, timeout=0.1)
    assert done[:, 2].max() == 15  # 5 + 10 overflow in use at once
    assert limit[P.PL_QP_OPEN] == 5 and limit[P.PL_QP_IDLE] == 5  # overflow closed on return


def test_retire_surplus_closes_a_connection_back_beyond_pool_size_as_adaptivepool_does():
    """``AdaptivePool`` retires a connection that comes back while more than its size are open (a
    burst's), where a ``QueuePool`` keeps it idle while fewer than ``pool_size`` are idle: the
    simulated perfsdk pool kept its bursts' connections, counting up to ``pool_size`` too many."""
    rates = [30_000.0] * 2 + [50.0] * 3  # a burst to 15 in use, then a trickle (rarely two at once)
    kept = K.pool_limit_queuepool(5, 10)
    _, _, _, kept_areas = run(kept, rates, capacity=15, timeout=0.1, chunk=0.5)
    retired = K.pool_limit_queuepool(5, 10, retire_surplus=True)
    _, done, _, areas = run(retired, rates, capacity=15, timeout=0.1, chunk=0.5)
    assert done[:, 2].max() == 15 and retired[P.PL_QP_OPEN] == 5  # the burst happened, then was closed
    assert retired[P.PL_QP_IDLE] <= 5
    assert areas[2] < kept_areas[2]  # fewer connection-seconds: the surplus went as it came back


def test_the_simulated_perfsdk_pool_opens_its_size_and_retires_idle_ones_beyond_it():
    """As ``AdaptivePool.resize``: a grow opens up to the size at once (its maker thread), a shrink
    retires idle connections beyond it."""
    limit = K.pool_limit_fixed(pool_eval.START)
    pool = pool_eval.SimulatedPool(limit, PoolController(interval_seconds=1.0), size=6)
    assert limit[P.PL_QP_OPEN] == 6 == limit[P.PL_QP_IDLE]
    pool.apply(9, None)
    assert limit[P.PL_QP_OPEN] == 9 == limit[P.PL_QP_IDLE]
    pool.apply(4, None)
    assert limit[P.PL_QP_OPEN] == 4 == limit[P.PL_QP_IDLE] and limit[P.PL_QP_POOL_SIZE] == 4


def test_a_new_connection_takes_its_opening_time_and_an_idle_one_none():
    """``connect``: a caller with no idle connection waits that long for a new one (the real pool
    opens burst connections on a background thread: 2.2 ms to PostgreSQL on loopback here), unless
    a connection comes back first; an idle connection is taken at once."""
    rates = [200.0] * 2  # light load: rarely more than two at once
    _, done, _, _ = run(K.pool_limit_queuepool(2, 2, connect=0.002), rates, capacity=4, work="constant")
    waits = done[:, 0]
    assert waits[0] == pytest.approx(0.002)  # the first caller waited for the first connection to open
    assert waits.max() <= 0.002 + 1e-9  # no one longer: a new one opens in that time, if none came back
    assert 0 < np.sum(waits > 0) < 0.25 * len(waits)  # most found one idle (a hold is 0.8 ms)
    # busier: callers that find the one pooled connection busy get it back (0.8 ms) or a new one (2 ms)
    _, busy, _, _ = run(K.pool_limit_queuepool(1, 8, connect=0.002), [1000.0], capacity=9, work="constant")
    waited = busy[:, 0][busy[:, 0] > 0]
    assert waited.max() <= 0.002 + 1e-9 and (waited < 0.0019).sum() > 10  # many got a returned one first
    _, at_once, _, _ = run(K.pool_limit_queuepool(1, 8), [1000.0], capacity=9, work="constant")
    assert not at_once[:, 0].any()  # connect=0: a new one at once, nobody waits
    _, instant, _, _ = run(K.pool_limit_queuepool(2, 2), rates, capacity=4, work="constant")
    assert not instant[:, 0].any()  # connect=0 (the default): opened at once, as before


# ---- the ports of concurrency-limits (hand-computed steps of the Java) ---------------------

def sample(limit, rtt_ns, inflight, drop=False):
    return K.pool_limit_sample(limit, rtt_ns, inflight, drop)


def test_aimd_adds_one_when_half_used_and_backs_off_by_its_ratio():
    limit = K.pool_limit_aimd()  # initial 20, min 20, max 200, backoff 0.9, timeout 5 s
    assert sample(limit, 1_000_000, 10) == 21  # inflight * 2 >= limit
    assert sample(limit, 1_000_000, 10) == 21  # 20 < 21: unchanged
    assert sample(limit, 1_000_000, 10, drop=True) == 20  # (int) (21 * 0.9) = 18, clamped to min 20
    free = K.pool_limit_aimd(initial_limit=20, min_limit=1, max_limit=48)
    assert sample(free, 1_000_000, 20, drop=True) == 18
    assert sample(free, 5_000_000_001, 1) == 16  # rtt over the timeout counts as a drop: (int) 16.2
    assert sample(free, 5_000_000_000, 8) == 17  # at the timeout, not over it
    for _ in range(100):
        sample(free, 1, 48)
    assert free[P.PL_LIMIT] == 48  # max_limit


def test_vegas_steps():
    limit = K.pool_limit_vegas()  # initial 20, smoothing 1, alpha 3, beta 6, threshold 1 below 100
    limit[P.PL_VEGAS_PROBE_JITTER] = 0.9  # no probe before 0.9 * 30 * limit samples
    assert sample(limit, 1000, 20) == 20  # the first rtt is the no-load one
    assert limit[P.PL_VEGAS_RTT_NOLOAD] == 1000
    assert sample(limit, 2000, 20) == 19  # queue ceil(20 * (1 - 1/2)) = 10 > beta: limit - 1
    assert sample(limit, 1000, 19) == 25  # queue 0 <= threshold: limit + beta
    assert sample(limit, 1500, 5) == 25  # inflight * 2 < limit: no drift upward (nor down)
    assert sample(limit, 1500, 25) == 24  # ceil(25 / 3) = 9 > 6
    assert sample(limit, 1100, 24) == 24  # ceil(24 * 0.0909) = 3: not < alpha, not > beta
    assert sample(limit, 1050, 24) == 25  # ceil(24 * 0.0476) = 2 < alpha: + log10
    assert sample(limit, 1050, 1, drop=True) == 24  # a drop: - log10, whatever the inflight
    assert sample(limit, 900, 24) == 24 and limit[P.PL_VEGAS_RTT_NOLOAD] == 900  # a new minimum
    smooth = K.pool_limit_vegas(smoothing=0.5)
    smooth[P.PL_VEGAS_PROBE_JITTER] = 0.9
    sample(smooth, 1000, 20)
    assert sample(smooth, 2000, 20) == 19 and smooth[P.PL_ESTIMATE] == 19.5  # 0.5 * 20 + 0.5 * 19


def test_vegas_probes_a_new_no_load_rtt():
    limit = K.pool_limit_vegas(initial_limit=2, probe_multiplier=1)
    limit[P.PL_VEGAS_PROBE_JITTER] = 0.5  # probe once 0.5 * 1 * 2 <= count: at the first sample
    sample(limit, 5000, 1)
    assert limit[P.PL_VEGAS_RTT_NOLOAD] == 5000 and limit[P.PL_VEGAS_PROBE_COUNT] == 0
    assert 0.5 <= limit[P.PL_VEGAS_PROBE_JITTER] < 1.0  # drawn afresh


def test_gradient2_steps():
    limit = K.pool_limit_gradient2()  # initial 20, min 20, max 200, smoothing 0.2, queue 4, tolerance 1.5
    assert sample(limit, 1000, 20) == 20  # long = 1000: gradient 1, 20 + 4 smoothed: 20.8
    assert limit[P.PL_ESTIMATE] == pytest.approx(20.8)
    sample(limit, 4000, 20)  # long = mean(1000, 4000) in the warm-up; gradient 1.5 * 2500 / 4000
    expected = 20.8 * 0.8 + (20.8 * (1.5 * 2500 / 4000) + 4) * 0.2
    assert limit[P.PL_ESTIMATE] == pytest.approx(expected, rel=1e-12) and limit[P.PL_LIMIT] == 21
    before = limit[P.PL_ESTIMATE]
    assert sample(limit, 4000, 5) == int(before)  # inflight < limit / 2: app limited, unchanged
    for _ in range(7):
        sample(limit, 1000, 0)
    assert limit[P.PL_G2_LONG_COUNT] == 10  # warm-up over: an exponential average from here on
    long_rtt = limit[P.PL_G2_LONG_VALUE]
    sample(limit, 100, 0)  # long / short > 2: the long RTT decays by 0.95 after the average
    factor = 2 / 601
    assert limit[P.PL_G2_LONG_VALUE] == pytest.approx((long_rtt * (1 - factor) + 100 * factor) * 0.95, rel=1e-12)
    floor = K.pool_limit_gradient2(initial_limit=20, min_limit=1, max_concurrency=48)
    for _ in range(10):
        sample(floor, 1000, 48)
    for _ in range(200):
        sample(floor, 100_000, 48)  # rtt 100x the long one: gradient 0.5 each time
    assert floor[P.PL_LIMIT] < 20


def java_reference(kind: str, samples, **builder):
    """The three ``_update`` methods as the Java reads, in plain Python (the jitter aside: fixed)."""
    log10 = lambda t: max(1, int(math.log10(t))) if t < 1000 else int(math.sqrt(t))  # noqa: E731
    limits = []
    if kind == "aimd":
        limit = builder["initial_limit"]
        for rtt, inflight, drop in samples:
            if drop or rtt > 5e9:
                limit = int(limit * 0.9)
            elif inflight * 2 >= limit:
                limit += 1
            limit = min(builder["max_limit"], max(builder["min_limit"], limit))
            limits.append(limit)
    elif kind == "vegas":
        est, noload, count = float(builder["initial_limit"]), 0, 0
        for rtt, inflight, drop in samples:
            count += 1
            new = None
            if 0.75 * 30 * est <= count:
                count, noload = 0, rtt
            elif noload == 0 or rtt < noload:
                noload = rtt
            else:
                queue = math.ceil(est * (1 - noload / rtt))
                e = int(est)
                if drop:
                    new = est - log10(e)
                elif inflight * 2 < est:
                    pass
                elif queue <= log10(e):
                    new = est + 6 * log10(e)
                elif queue < 3 * log10(e):
                    new = est + log10(e)
                elif queue > 6 * log10(e):
                    new = est - log10(e)
            if new is not None:
                est = max(1.0, min(builder["max_concurrency"], new))
            limits.append(int(est))
    else:
        est, value, total, n = float(builder["initial_limit"]), 0.0, 0.0, 0
        for rtt, inflight, drop in samples:
            if n < 10:
                n += 1
                total += rtt
                value = total / n
            else:
                value = value * (1 - 2.0 / 601) + rtt * (2.0 / 601)
            long_rtt = value
            if long_rtt / rtt > 2:
                value = value * 0.95
            if not inflight < est / 2:
                new = est * max(0.5, min(1.0, 1.5 * long_rtt / rtt)) + 4
                new = est * 0.8 + new * 0.2
                est = max(builder["min_limit"], min(builder["max_concurrency"], new))
            limits.append(int(est))
    return limits


@pytest.mark.parametrize("kind", ["aimd", "vegas", "gradient2"])
def test_ports_agree_with_the_java_read_plainly_over_random_samples(kind):
    rng = np.random.default_rng(5)
    samples = [(int(rng.integers(1, 3_000_000)), int(rng.integers(1, 49)), bool(rng.random() < 0.02))
               for _ in range(3000)]
    builder = {"aimd": dict(initial_limit=20, min_limit=1, max_limit=48),
               "vegas": dict(initial_limit=20, max_concurrency=48),
               "gradient2": dict(initial_limit=20, min_limit=1, max_concurrency=48)}[kind]
    limit = getattr(K, f"pool_limit_{kind}")(**builder)
    if kind == "vegas":
        limit[P.PL_VEGAS_PROBE_JITTER] = 0.75
    got = []
    for rtt, inflight, drop in samples:
        got.append(sample(limit, rtt, inflight, drop))
        if kind == "vegas":
            limit[P.PL_VEGAS_PROBE_JITTER] = 0.75  # the reference's jitter is fixed
    assert got == java_reference(kind, samples, **builder)


# ---- the evaluation ----------------------------------------------------------------------------

def test_the_fit_reproduces_the_measurements():
    backend = pool_eval.fit_backend()
    for n, tx_s in pool_eval.MEASURED_TX_S.items():
        assert backend.throughput(n) == pytest.approx(tx_s, rel=1e-6)
    assert 13 < backend.n_star < 15 and 0.9 < backend.log_sd < 1.1


def test_the_simulated_pool_feeds_the_real_controller_once_a_second_until_settled():
    backend = pool_eval.fit_backend()
    scenario = pool_eval.Scenario("short", np.full(12, 4000.0), np.full(12, backend.s))
    run_ = pool_eval.run_policy("perfsdk PoolController", scenario, backend, seed=1)
    assert 6 <= len(run_.decisions) <= 12  # a second's interval each, fewer while settled on a steady load
    assert all(1 <= d.value_after <= pool_eval.MAX_SIZE for d in run_.decisions)
    assert run_.decisions[0].value_before == pool_eval.START and run_.decisions[-1].features["arrival_rate"] > 3000


def test_the_evaluation_runs_in_its_quick_mode(capsys):
    """benches/eval/pool_eval.py, run once in its quick mode so it never rots."""
    assert pool_eval.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "perfsdk PoolController" in out and "query cost x3 at mid-run" in out and "N* = 13.7" in out


# (a bug once: at size 1 a shrink stepped to 1, was never "taken", so it was "tried once" every interval)
def test_the_controller_leaves_size_one_when_the_load_needs_more():
    backend = pool_eval.fit_backend()
    scenario = pool_eval.Scenario("from 1", np.full(10, 3000.0), np.full(10, backend.s))
    run_ = pool_eval.controlled(scenario, backend, seed=1, start=1)
    assert max(d.value_after for d in run_.decisions) > 1


def test_a_new_instance_with_the_fleets_table_is_measured_against_one_alone():
    lines = pool_eval.fleet_settling(pool_eval.fit_backend(), seed=1, seconds=20)
    assert lines[0].startswith("Fleet learning") and len(lines) == 3
    adopted = re.search(r"\((\d+) states adopted\)", lines[2])
    assert adopted and int(adopted.group(1)) > 0, lines[2]  # the table was read


def test_a_forecasting_pool_grows_before_the_daily_rush_and_its_callers_wait_less():
    """The same controller with and without forecasting its arrivals, on two days with a rush at the
    same second of each: on the second day the forecasting pool is larger as the rush begins, grew
    for it on the forecast's word, and the requests around the rush wait less."""
    backend = pool_eval.fit_backend()
    scenario = pool_eval.rush_scenario(backend, days=2)
    at = pool_eval.RUSH_DAY_S + pool_eval.RUSH_AT - 1  # the second before the second day's rush
    reactive = pool_eval.controlled(scenario, backend, seed=1, controller=PoolController(interval_seconds=1.0))
    ahead = pool_eval.controlled(scenario, backend, seed=1, controller=PoolController(
        interval_seconds=1.0, forecast_horizon=5, forecast_season=pool_eval.RUSH_DAY_S))
    assert ahead.sizes[at] > reactive.sizes[at]
    assert any("arrivals forecast" in d.evidence and d.guardrail == "demand" for d in ahead.decisions)
    assert not any("arrivals forecast" in d.evidence for d in reactive.decisions)
    assert pool_eval.rush_waits(ahead, 2).mean() < pool_eval.rush_waits(reactive, 2).mean()


def test_the_forecast_comparison_runs_in_its_quick_mode(capsys):
    assert pool_eval.main(["--forecast", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "Ahead of a surge" in out and "forecasting (forecast_horizon=5" in out and "reactive (the default)" in out
