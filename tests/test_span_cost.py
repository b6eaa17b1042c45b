"""What perfsdk adds to a span, interleaved with bare OTel (benches/eval/span_cost.py), run once
in its quick mode: the three variants run, every exported span reaches the writer, the table is made."""

from __future__ import annotations


def test_span_cost_runs_every_variant_and_writes_every_span():
    from span_cost import measure, report

    times = measure(3, 200)  # asserts inside: no span dropped
    assert set(times) == {"otel", "processor", "export"} and all(len(v) == 3 for v in times.values())
    assert all(t > 0 for values in times.values() for t in values)
    rows = report(times)
    assert len(rows) == 5 and rows[2].startswith("| otel | ") and "+0.00" in rows[2]
    assert set(measure(2, 100, breakdown=True)) == {"otel", "processor", "no-op processor",
                                                    "processor, no detectors", "export"}
