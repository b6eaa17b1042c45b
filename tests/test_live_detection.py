"""Live detection (issue 14), run once in its quick mode: the demo shop with perfsdk's defaults,
shoppers from another process, a latency fault after the learning period
(benches/eval/live_detection.py; the full run is 17 minutes)."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("opentelemetry.instrumentation.flask")


def test_a_latency_fault_on_a_live_service_is_one_incident_with_the_route_as_origin(tmp_path):
    from live_detection import QUICK, run

    result = run(QUICK, tmp_path / "perfsdk")
    (fault,) = result["faults"]
    assert result["requests"] > 1000  # the shoppers really drove the shop
    assert not math.isnan(fault["detected_s"]) and fault["detected_s"] < 5.0  # (the full run: <= 2 s)
    assert fault["own_incident"] and fault["origin"] == fault["faulty_span"] == "GET /products/<int:pid>"
