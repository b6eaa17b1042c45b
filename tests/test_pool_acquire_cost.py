"""What the controller adds at 10,000 acquisitions a second (benches/eval/pool_acquire_cost.py),
run once in a short mode: every variant lends at the paced rate and both shares are computed."""

from __future__ import annotations

import math


def test_pool_acquire_cost_runs_every_variant():
    from pool_acquire_cost import RATE, measure, paced, shares

    cpu, acquisitions = paced(lambda: 1, lambda conn: None, 0.05)
    assert acquisitions == RATE * 0.05 and cpu > 0
    cpu_us, controlled, metrics_us = measure(rounds=1, seconds=1.2)  # an interval (1 s) closes in each
    assert set(cpu_us) == {"loop", "fixed", "default controller", "with OTel metrics"}
    assert len(metrics_us) == 1 and metrics_us[0] > 0  # the SDK's histograms were recorded into
    assert all(len(v) == 1 and v[0] > 0 for v in cpu_us.values())
    assert controlled[0]["size"] >= 1 and controlled[0]["controller_us"] >= 0
    by_totals, by_decisions = shares(cpu_us, controlled)
    assert math.isfinite(by_totals) and by_decisions >= 0
