"""The generated load test's own work against Locust's (benches/eval/testgen_overhead.py), run once in
its quick mode: a real headless Locust run in a subprocess, and the sampler driven here."""

from __future__ import annotations

import importlib.util
import sys

import pytest


@pytest.mark.skipif(importlib.util.find_spec("locust") is None,
                    reason="Locust is not installed: pip install 'perfsdk[loadtest]'")
def test_testgen_overhead_measures_both_sides():
    from testgen_overhead import main

    figures = main(["--quick"])
    assert figures["requests"] > 100 and figures["locust_us"] > 0 and figures["own_us"] > 0
    assert 0 < figures["share"] < 1
    assert "locust" not in sys.modules  # it ran in its own process
