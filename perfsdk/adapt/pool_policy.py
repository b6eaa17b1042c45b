"""What a connection pool's interval says: its features, its reward, and what-ifs.

The pool records, under its lock, each acquisition's wait and each
connection's hold time together with how many connections were in use when
it was taken. At the end of an interval ``PoolEvidence`` turns that into the
controller's ``Evidence``:

- **features** (the learner's state): utilisation, the share of acquisitions
  that waited, the hold-time trend (how much longer a connection is held when
  more are in use: the database's contention, the Universal Scalability Law's
  rising curve), and where the size sits between its limits;
- **reward**: the controller's (``PoolController.reward``): low p95 request
  latency (wait + hold) at a low connection count;
- **what-ifs** for a grown or shrunk pool, from two measured relations: the
  hold time at each concurrency level (extrapolated along its fitted slope
  beyond the levels seen) and Little's law (the requests in the system,
  ``L``, are served ``n / hold(n)`` at a time, so a request spends
  ``max(hold(n), L * hold(n) / n)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping

from perfsdk.adapt.controller import Evidence
from perfsdk.adapt.decision import Action

__all__ = ["IntervalRecord", "PoolEvidence", "percentile"]

SAMPLES = 2048  # wait and hold samples kept an interval (a ring): bounded memory, percentiles to ~0.1 %


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values`` by nearest rank; NaN for none.

    >>> percentile([1.0, 2.0, 3.0, 4.0], 50), percentile([], 99)
    (2.0, nan)
    """
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


@dataclass
class IntervalRecord:
    """One interval's measurements (the pool updates it under its lock)."""

    started: float
    acquisitions: int = 0
    releases: int = 0
    waited: int = 0
    timeouts: int = 0
    shed: int = 0
    waits: list[float] = field(default_factory=list)  # seconds, a ring of SAMPLES
    holds: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)  # wait + hold, a request's whole time
    busy_area: float = 0.0  # integral of connections in use over time (connection-seconds)
    queue_area: float = 0.0  # integral of waiting requests over time
    last_change: float = 0.0


class PoolEvidence:
    """Turns a pool's interval into ``Evidence`` (see the module docstring).

    ``hold_by_level`` keeps, per concurrency level (connections in use when
    one was taken), a decayed sum and count of hold times: halved at every
    interval, so the relation follows a database whose cost changes.
    """

    def __init__(self, max_size: int) -> None:
        self.hold_sum = [0.0] * (max_size + 2)
        self.hold_count = [0.0] * (max_size + 2)

    def record_hold(self, level: int, seconds: float) -> None:
        level = min(level, len(self.hold_sum) - 1)
        self.hold_sum[level] += seconds
        self.hold_count[level] += 1.0

    def hold_at(self, level: int) -> float:
        """The expected hold time (s) with ``level`` connections in use: measured where seen
        (with enough samples), else a least-squares line through the levels seen."""
        level = max(1, min(level, len(self.hold_sum) - 1))
        if self.hold_count[level] >= 5:
            return self.hold_sum[level] / self.hold_count[level]
        seen = [(n, self.hold_sum[n] / c, c) for n, c in enumerate(self.hold_count) if c >= 1]
        if not seen:
            return math.nan
        weight = sum(c for _, _, c in seen)
        mean_n = sum(n * c for n, _, c in seen) / weight
        mean_h = sum(h * c for _, h, c in seen) / weight
        var = sum(c * (n - mean_n) ** 2 for n, _, c in seen)
        slope = 0.0 if var == 0 else max(0.0, sum(c * (n - mean_n) * (h - mean_h) for n, h, c in seen) / var)
        return max(mean_h + slope * (level - mean_n), 0.0)

    def decay(self) -> None:
        self.hold_sum = [s * 0.5 for s in self.hold_sum]
        self.hold_count = [c * 0.5 for c in self.hold_count]

    def __call__(self, record: IntervalRecord, now: float, size: int, min_size: int, max_size: int,
                 reward: Callable[[float, int], float], candidates: Mapping[Action, int],
                 min_acquisitions: int) -> Evidence:
        """``reward(p95_ms, size)`` is the controller's trade-off."""
        elapsed = max(now - record.started, 1e-9)
        utilisation = record.busy_area / elapsed / max(size, 1)
        in_system = (record.busy_area + record.queue_area) / elapsed  # L, Little's law
        latencies = record.latencies
        p95 = percentile(latencies, 95)
        mean_latency = sum(latencies) / len(latencies) if latencies else math.nan
        low, high = self.hold_at(1), self.hold_at(max(size, 2))
        features = {
            "utilisation": utilisation,
            "waited_share": record.waited / record.acquisitions if record.acquisitions else 0.0,
            "hold_trend": (high / low - 1.0) if low and low > 0 and math.isfinite(high) else 0.0,
            "size_position": (size - min_size) / (max_size - min_size) if max_size > min_size else 0.0,
            "arrival_rate": record.acquisitions / elapsed,
            "p95_ms": p95 * 1e3,
            "p99_ms": percentile(latencies, 99) * 1e3,
            "wait_p95_ms": percentile(record.waits, 95) * 1e3,
            "hold_p50_ms": percentile(record.holds, 50) * 1e3,
            "in_system": in_system,
            "timeouts": float(record.timeouts),
        }
        if record.acquisitions < min_acquisitions or not math.isfinite(p95):
            return Evidence(features, 0.0, cold=True,
                            summary=f"{record.acquisitions} acquisitions: too few to judge the size")
        earned = reward(p95 * 1e3, size)
        what_if: dict[Action, float] = {}
        now_latency = self.latency(size, in_system)
        tail = p95 / mean_latency if mean_latency > 0 else 1.0
        for action, other in candidates.items():
            estimate = self.latency(other, in_system)
            if math.isfinite(estimate) and math.isfinite(now_latency) and now_latency > 0:
                # the model's relative change, applied to what was measured
                what_if[action] = reward(p95 * 1e3 * estimate / now_latency, other)
            elif math.isfinite(estimate):
                what_if[action] = reward(estimate * tail * 1e3, other)
        summary = (f"p95 {p95 * 1e3:.2f} ms (wait p95 {features['wait_p95_ms']:.2f} ms, hold p50 "
                   f"{features['hold_p50_ms']:.2f} ms), {utilisation:.0%} of {size} connections busy, "
                   f"{features['waited_share']:.0%} of {record.acquisitions} acquisitions waited, "
                   f"{in_system:.1f} requests in the system on average, hold time "
                   f"{features['hold_trend']:+.0%} from 1 to {max(size, 2)} in use")
        if what_if:
            summary += "; estimated p95 " + ", ".join(
                f"{candidates[a]} connections {p95 * 1e3 * self.latency(candidates[a], in_system) / now_latency:.2f} ms"
                for a in what_if if now_latency > 0)
        return Evidence(features, earned, what_if, summary)

    def latency(self, size: int, in_system: float) -> float:
        """A request's expected time (s) at ``size`` connections with ``in_system`` requests present."""
        busy = max(1.0, min(float(size), in_system))
        hold = self.hold_at(int(round(busy)))
        if not math.isfinite(hold):
            return math.nan
        return max(hold, in_system * hold / size)
