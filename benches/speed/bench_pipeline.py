"""The default detector's speed (issue 14 targets), side by side with ZScoreDetector.

Per event: ``default_detector().check(x, t)`` (target <= 1 us) vs
``ZScoreDetector.update`` and the floor (an empty Python call). Batch:
``detect_many`` (target >= 5 M points/s) and ``update_many`` over 10^7 points
vs ``ZScoreDetector.update_many`` -- the pipeline runs two Z-scores (the
series and its seasonal difference) and scores both, so read the ratio.

    make bench            # then: .venv/bin/python benches/ratios.py .benchmarks/latest.json
"""

from __future__ import annotations

import numpy as np
import pytest

from bench_zscore import _latencies
from benchutil import bench_per_event, empty, per_item
from perfsdk import ZScoreDetector, default_detector

LOOP = 20_000
WARM = 3_000  # past the learning period: every point is fully scored


@pytest.fixture(scope="module")
def events() -> list[float]:
    return _latencies(LOOP).tolist()


PER_EVENT = "default detector: per-event check (ns/event)"


@pytest.mark.benchmark(group=PER_EVENT)
def test_floor_empty_call(benchmark, events):
    bench_per_event(benchmark, events, empty, anchor="floor")


@pytest.mark.benchmark(group=PER_EVENT)
def test_zscore_update(benchmark, events):
    det = ZScoreDetector(window=256)
    det.update_many(_latencies(WARM))
    bench_per_event(benchmark, events, det.update, anchor="zscore")


@pytest.mark.benchmark(group=PER_EVENT)
def test_default_detector_check(benchmark, events):
    det = default_detector()
    det.update_many(_latencies(WARM))
    bench_per_event(benchmark, events, det.check)


BATCH = "default detector: batch (points/s)"


@pytest.fixture(scope="module")
def batch() -> np.ndarray:
    return _latencies(10_000_000)


@pytest.mark.benchmark(group=BATCH)
def test_zscore_update_many(benchmark, batch, full_size):
    xs = batch[: full_size(len(batch), 10_000)]
    det = ZScoreDetector(window=256)
    det.update_many(xs[:10])

    def run():
        det.reset()
        return det.update_many(xs)

    per_item(benchmark, len(xs), anchor="zscore")
    benchmark(run)


@pytest.mark.benchmark(group=BATCH)
@pytest.mark.parametrize("verb", ["detect_many", "update_many"])
def test_default_detector_batch(benchmark, batch, full_size, verb):
    xs = batch[: full_size(len(batch), 10_000)]
    det = default_detector()
    getattr(det, verb)(xs[:WARM])  # compile outside the timing

    def run():
        det.reset()
        return getattr(det, verb)(xs)

    per_item(benchmark, len(xs))
    out = benchmark(run)
    if verb == "update_many":
        assert ((out >= 0) & (out <= 1)).all()
