"""Regenerate perfsdk/data/sample_latency.csv, the CSV `perfsdk detect` demos on.

Two days of per-minute p95 latency (ms) of a checkout endpoint: a daily cycle,
log-normal noise, five short spikes (GC pauses, a slow dependency) and, on the
second afternoon, a deploy that adds ~50 ms for good (a level shift).

    python examples/make_sample_latency.py
"""

from __future__ import annotations

import csv
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "perfsdk" / "data" / "sample_latency.csv"


def main() -> None:
    rng = np.random.default_rng(20261128)
    n = 2 * 24 * 60
    minutes = np.arange(n)
    daily = 18.0 * np.sin(2 * np.pi * (minutes - 9 * 60) / (24 * 60))
    latency = (95.0 + daily) * rng.lognormal(0.0, 0.04, n)
    for start, length, factor in [(400, 2, 3.2), (1333, 1, 4.5), (1900, 3, 2.6), (2210, 1, 3.8), (2750, 2, 3.0)]:
        latency[start : start + length] *= factor
    latency[2400:] += 50.0  # the deploy
    t0 = datetime(2026, 11, 26, tzinfo=timezone.utc)
    with OUT.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["timestamp", "value"])
        for i, v in enumerate(latency):
            writer.writerow([(t0 + timedelta(minutes=int(i))).strftime("%Y-%m-%dT%H:%M:%SZ"), f"{v:.2f}"])


if __name__ == "__main__":
    main()
