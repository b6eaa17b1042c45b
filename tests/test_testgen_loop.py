"""The closed loop of issue 13, run once in its quick mode: service -> spans -> model -> scenario
-> Locust -> spans -> model (benches/eval/testgen_fidelity.py)."""

from __future__ import annotations

import pytest

pytest.importorskip("opentelemetry.instrumentation.flask")


def test_the_closed_loop_runs_and_the_replay_resembles_the_recording():
    from testgen_fidelity import closed_loop, report

    run = closed_loop(seconds=12.0, rate=4.0)
    compared = run["comparison"]
    assert run["result"].failures == 0
    # a replay of the service's own traffic, against the same unchanged service, passes its own
    # assertions: the p95 limits come from server-side durations and allow the client's round trip
    outcomes = run["result"].assertions
    assert any(o.metric == "p95_ms" for o in outcomes) and run["result"].passed, [str(o) for o in outcomes]
    assert {r.key for r in run["replayed"].routes} == {r.key for r in run["recorded"].routes}
    # a few dozen sessions: loose bounds that still fail if the replay ignores the model
    assert compared["route_mix_tv"] < 0.2 and compared["think_time_ks"] < 0.3
    assert 0.5 < compared["arrival_rate_ratio"] < 2.0
    assert set(compared["p50_ratio"]) == set(compared["p95_ratio"]) and all(
        0.2 < ratio < 5.0 for ratio in compared["p50_ratio"].values())
    assert any(line.startswith("| route_mix_tv |") for line in report(run))
    assert any("; p50 " in line for line in report(run))


def test_the_replay_beside_new_shoppers_is_told_apart_from_them():
    """The concurrent mode (the full run's default): one recording of both populations at once,
    split by User-Agent, each learned on its own."""
    from testgen_fidelity import closed_loop

    run = closed_loop(seconds=10.0, rate=4.0, concurrent=True)
    assert run["result"].failures == 0
    users, replay = run["beside"], run["replayed"]
    assert users.requests > 0 and replay.requests > 0
    assert replay.requests == run["result"].requests  # the replay's spans are exactly Locust's requests
    assert run["comparison"]["route_mix_tv"] < 0.3 and run["same_time"]["p95_ratio"]
    assert all(low <= high for low, high in run["p95_interval"].values())
