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

import numpy as np

from perfsdk.adapt.controller import Evidence
from perfsdk.adapt.decision import Action

__all__ = ["IntervalRecord", "PoolEvidence", "percentile", "usl_fit"]

SAMPLES = 2048  # wait and hold samples kept an interval (a ring): bounded memory, percentiles to ~0.1 %
DECAY = 0.8


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values`` by nearest rank; NaN for none.

    >>> percentile([1.0, 2.0, 3.0, 4.0], 50), percentile([], 99)
    (2.0, nan)
    """
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def usl_fit(points: list[tuple[int, float, float]]) -> tuple[float, float, float]:
    """``hold(n) = a + b (n - 1) + c n (n - 1)`` with ``a > 0`` and ``b, c >= 0`` through
    (level, hold, weight) points by weighted least squares: the Universal Scalability Law's
    time per request (contention ``b``, coherency ``c``), so it rises convexly and never
    falls below ``a``. Terms whose fit comes out negative are dropped.

    >>> [round(x, 6) for x in usl_fit([(1, 1.0, 1), (4, 1.36, 1), (8, 2.12, 1)])]
    [1.0, 0.0, 0.02]
    """
    basis = [lambda n: 1.0, lambda n: n - 1.0, lambda n: n * (n - 1.0)]
    best: tuple[float, tuple[float, float, float]] | None = None
    for terms in ((0, 1, 2), (0, 2), (0, 1), (0,)):
        rows = [[basis[t](n) * math.sqrt(w) for t in terms] for n, _, w in points]
        target = [h * math.sqrt(w) for _, h, w in points]
        fitted = np.linalg.lstsq(np.array(rows), np.array(target), rcond=None)[0]
        coef = [0.0, 0.0, 0.0]
        for t, value in zip(terms, fitted):
            coef[t] = float(value)
        if coef[0] <= 0 or coef[1] < 0 or coef[2] < 0:
            continue
        residual = sum(w * (h - (coef[0] + coef[1] * (n - 1) + coef[2] * n * (n - 1))) ** 2 for n, h, w in points)
        if best is None or residual < best[0] - 1e-15:
            best = (residual, (coef[0], coef[1], coef[2]))
    if best is None:  # even a constant fits no better than this: the weighted mean
        mean = sum(h * w for _, h, w in points) / sum(w for _, _, w in points)
        return mean, 0.0, 0.0
    return best[1]


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

    def elapse(self, now: float, in_use: int, waiting: int) -> None:
        """Advance the time integrals to ``now`` (call before the counts change)."""
        span = now - self.last_change
        if span > 0:
            self.busy_area += in_use * span
            self.queue_area += waiting * span
            self.last_change = now

    def lent(self, waited: float) -> None:
        n = self.acquisitions
        self.acquisitions = n + 1
        if waited > 0:
            self.waited += 1
        _put(self.waits, n, waited)

    def returned(self, held: float, latency: float) -> None:
        n = self.releases
        self.releases = n + 1
        _put(self.holds, n, held)
        _put(self.latencies, n, latency)


def _put(ring: list[float], n: int, value: float) -> None:
    """The ``n``-th sample into a ring of SAMPLES."""
    if n < SAMPLES:
        ring.append(value)
    else:
        ring[n % SAMPLES] = value


class PoolEvidence:
    """Turns a pool's interval into ``Evidence`` (see the module docstring).

    ``hold_sum``/``hold_count`` keep, per concurrency level (connections in use when
    one was taken), a decayed sum and count of hold times: weighted by ``DECAY`` at every
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
        (with enough samples), else the Universal Scalability Law's curve through the levels
        seen; NaN when fewer than two levels were seen (a saturated pool sees only its size):
        the trend is unknown then, not flat, and the controller learns no estimate for it."""
        level = max(1, min(level, len(self.hold_sum) - 1))
        if self.hold_count[level] >= 5:
            return self.hold_sum[level] / self.hold_count[level]
        seen = [(n, self.hold_sum[n] / c, c) for n, c in enumerate(self.hold_count) if c >= 1]
        if len(seen) < 2:
            return math.nan
        a, b, c = usl_fit(seen)
        return a + b * (level - 1) + c * level * (level - 1)

    def decay(self) -> None:
        self.hold_sum = [s * DECAY for s in self.hold_sum]
        self.hold_count = [c * DECAY for c in self.hold_count]

    def __call__(self, record: IntervalRecord, now: float, size: int, min_size: int, max_size: int,
                 reward: Callable[[float, int], float], candidates: Mapping[Action, int],
                 min_acquisitions: int, surge: float | None = None) -> Evidence:
        """``reward(p95_ms, size)`` is the controller's trade-off; ``surge``, an arrival rate
        forecast for the next intervals (``ArrivalForecast.expected_surge``)."""
        elapsed = max(now - record.started, 1e-9)
        utilisation = record.busy_area / elapsed / max(size, 1)
        in_system = (record.busy_area + record.queue_area) / elapsed  # L, Little's law
        latencies = record.latencies
        p95 = percentile(latencies, 95)
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
            "arrival_forecast": math.nan if surge is None else surge,
        }
        if record.acquisitions < min_acquisitions or not math.isfinite(p95):
            return Evidence(features, 0.0, cold=True,
                            summary=f"{record.acquisitions} acquisitions: too few to judge the size")
        earned = reward(p95 * 1e3, size)
        now_latency = self.latency(size, in_system)
        estimates: dict[Action, float] = {}  # p95 (ms) at each other size: the model's change, applied
        if math.isfinite(now_latency) and now_latency > 0:  # to what was measured; none where unknown
            estimates = {action: p95 * 1e3 * self.latency(other, in_system) / now_latency
                         for action, other in candidates.items()
                         if math.isfinite(self.latency(other, in_system))}
        what_if = {action: reward(p95_ms, candidates[action]) for action, p95_ms in estimates.items()}
        summary = (f"p95 {p95 * 1e3:.2f} ms (wait p95 {features['wait_p95_ms']:.2f} ms, hold p50 "
                   f"{features['hold_p50_ms']:.2f} ms), {utilisation:.0%} of {size} connections busy, "
                   f"{features['waited_share']:.0%} of {record.acquisitions} acquisitions waited, "
                   f"{in_system:.1f} requests in the system on average, hold time "
                   f"{features['hold_trend']:+.0%} from 1 to {max(size, 2)} in use")
        if estimates:
            summary += "; estimated p95 " + ", ".join(
                f"{candidates[action]} connections {p95_ms:.2f} ms" for action, p95_ms in estimates.items())
        floor = None
        if surge is not None and features["arrival_rate"] > 0:
            floor = self.surge_floor(size, max_size, in_system, surge / features["arrival_rate"])
            if floor > size:
                summary += (f"; arrivals forecast to reach {surge:.0f}/s (now {features['arrival_rate']:.0f}/s): "
                            f"{floor} connections serve that best")
            else:
                floor = None
        return Evidence(features, earned, what_if, summary, modelled=True, floor=floor)

    def surge_floor(self, size: int, max_size: int, in_system: float, ratio: float) -> int:
        """The size, from ``size`` up to ``size * ratio``, that the measured hold-time relation says
        serves ``ratio`` times today's load best (Little's law: ``ratio`` times as many requests
        present); proportional growth where the relation is unknown.

        >>> evidence = PoolEvidence(16)
        >>> for level in [1, 2, 3, 4] * 5:
        ...     evidence.record_hold(level, 0.010)            # hold time does not grow with concurrency
        >>> evidence.surge_floor(4, 16, in_system=4.0, ratio=2.0)
        8
        """
        top = min(max_size, math.ceil(size * ratio))
        load = in_system * ratio
        latencies = {n: self.latency(n, load) for n in range(size, top + 1)}
        if not all(math.isfinite(v) for v in latencies.values()):
            return top
        return min(latencies, key=lambda n: (round(latencies[n], 12), n))

    def latency(self, size: int, in_system: float) -> float:
        """A request's expected time (s) at ``size`` connections with ``in_system`` requests present."""
        busy = max(1.0, min(float(size), in_system))
        hold = self.hold_at(int(round(busy)))
        if not math.isfinite(hold):
            return math.nan
        return max(hold, in_system * hold / size)
