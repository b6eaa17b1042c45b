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
- **what-ifs** for a grown or shrunk pool, from the measured hold time at each
  concurrency level (the Universal Scalability Law's curve between and beyond
  the levels seen) and queueing: with ``n`` connections, arrivals ``lambda``
  and hold ``h``, requests wait as in an M/M/n queue (Erlang C: the chance
  of waiting, and its exponential tail) while ``lambda * h < n``, and the
  tail judged is that of hold + wait, the holds spread as the interval's
  were, at the mean hold the queue's busy levels give at that size (more
  connections let a burst contend in the database); beyond, the
  pool is saturated and Little's law gives what a request spends with ``L``
  requests in the system, ``L * h / n``. In a closed loop (clients that each
  wait for their last answer) these means cannot price the tail, so what each
  size measured under the same load is kept for ``MEASURED_FOR`` intervals and
  weighs first (``remember``, ``estimate``): measured, on the line between two
  sizes measured, the model's change beyond them, and a smaller size not yet
  measured is tried.

The hold-time relation is kept per level and fades (``DECAY`` an interval);
when the database's cost changes over time (a slower query plan), the levels
seen in the interval say by how much, and the levels not seen are rescaled
with them -- else old cheap samples at low levels and new dear ones at high
levels would read as contention.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Mapping

import numpy as np

from perfsdk._native import SAMPLES, IntervalRecord  # the pool records an interval in C (re-exported here)
from perfsdk.adapt.controller import Evidence
from perfsdk.adapt.decision import Action

__all__ = ["SAMPLES", "IntervalRecord", "PoolEvidence", "erlang_c", "load_steady", "usl_fit"]

DECAY = 0.8
STEADY = 1.25  # a settled pool skips decisions while arrivals and use stay within this factor of the last judged
TAIL_ACQUISITIONS = 1000  # an interval with this many acquisitions is judged on its p99 (ten beyond it)
BURST_HEADROOM = 8  # the fewest extra connections a burst may open (a small pool's share is too few for a spike)
MODEL_MARGIN = 0.05  # how much better a grow only the model estimates must promise, where a burst covers the rest
RETROGRADE = 1.1  # a level above the fitted peak must serve this many times less for the peak to cap the pool
MEASURED_FOR = 30  # intervals a size's measured tail stands for, under a load like the one it was measured at
NOISE_PRIOR = 0.1  # how much one interval's tail differs from the last at the same size, until measured
MAX_MARGIN = 0.1  # the most better a measured size must promise to be moved to
FALL_Z = 3.0  # standard errors by which a level beyond the fitted peak must serve less for its ceiling to be sure
#: The share of acquisitions that waited from which most callers wait: with open arrivals, a doubtful
#: ceiling the pool sits at is raised by one to measure (as when it falls behind), and a shrink is not tried on the model's
#: "nearly as well" (the connection it frees would go to a waiting caller; in a closed loop the
#: clients take turns at any size, and trying smaller sizes is how the pool finds its best).
MOST_WAITED = 0.5


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


def load_steady(record: IntervalRecord, last: IntervalRecord) -> bool:
    """Whether an interval (``record``, closed) looks like the last one judged (``last``): nobody
    waiting at its end (``waiting_end``), no timeouts, nothing shed, and arrivals, connections in use and the share
    of acquisitions that waited all as they were (within ``STEADY`` times, or 0.05 for the share).
    A settled pool skips the decision on such an interval until its stretched one is due (see
    ``Controller.next_due_at``): the decision would find what the last one did, and at an
    ordinary rate it costs more than the lending it watches.

    >>> last = IntervalRecord(started=0.0, busy_area=2.0)
    >>> for _ in range(100):
    ...     last.lent(0.0)
    >>> last.last_change = 1.0
    >>> now = IntervalRecord(started=1.0, busy_area=2.2)
    >>> for _ in range(110):
    ...     now.lent(0.0)
    >>> now.last_change = 2.0
    >>> steady = load_steady(now, last)
    >>> now.waiting_end = 3
    >>> steady, load_steady(now, last)
    (True, False)
    >>> now.waiting_end = 0
    >>> for _ in range(100):
    ...     now.lent(0.0)           # arrivals nearly doubled
    >>> load_steady(now, last)
    False
    """
    if record.waiting_end or record.timeouts or record.shed:
        return False

    def near(a: float, b: float, floor: float) -> bool:
        return abs(a - b) <= max(floor, (STEADY - 1.0) * max(a, b))

    def rates(r: IntervalRecord) -> tuple[float, float, float]:
        span = max(r.last_change - r.started, 1e-9)
        return r.acquisitions / span, r.busy_area / span, r.waited / r.acquisitions if r.acquisitions else 0.0

    (arrivals, in_use, waited), (arrivals_then, in_use_then, waited_then) = rates(record), rates(last)
    return near(arrivals, arrivals_then, 1.0) and near(in_use, in_use_then, 0.5) and abs(waited - waited_then) <= 0.05


class PoolEvidence:
    """Turns a pool's interval into ``Evidence`` (see the module docstring).

    ``hold_sum``/``hold_count`` keep, per concurrency level (connections in use when
    one was taken), a decayed sum and count of hold times (``hold_squares``, of their
    squares: how far each level's mean can be trusted), weighted by ``DECAY`` at every
    interval, so the relation follows a database whose cost changes.
    """

    def __init__(self, max_size: int) -> None:
        self.levels = max_size + 2  # concurrency levels kept (an interval's record keeps as many)
        self.hold_sum = [0.0] * self.levels
        self.hold_count = [0.0] * self.levels
        self.hold_squares = [0.0] * self.levels
        self.new_sum = [0.0] * self.levels  # this interval's share of the sums
        self.new_count = [0.0] * self.levels
        self.new_squares = [0.0] * self.levels
        self.last_ceiling: int | None = None
        self.intervals = 0  # intervals seen (``decay``)
        self.ceiling_witnessed = 0  # the interval at which ``ceiling`` last found its peak (``lapse_ceiling``)
        self.ceiling_sure = False  # whether its fall lay beyond the noise of the levels' means (``probe_ceiling``)
        self.probed = 0  # the level probing raised a doubtful ceiling to (0: none)
        self._fit: tuple[float, float, float] | None = None  # the curve through the levels seen (until they change)
        self.burst_ok = True  # whether the pool may open more than its size while callers wait
        #: size -> (tail ms, averaged; the load then; when it was last measured)
        self.measured: dict[int, tuple[float, float, float]] = {}
        self.last_size: int | None = None  # the size of the last interval judged
        #: How much one interval's tail differs from the last at the same size and load (a decayed mean
        #: of the absolute log ratio): what a measured size must promise beyond to be moved to.
        self.noise = NOISE_PRIOR

    def record_hold(self, level: int, seconds: float) -> None:
        """One connection back after ``seconds``, taken with ``level`` connections in use."""
        self._add(level, seconds, 1.0, seconds * seconds)

    def absorb(self, record: IntervalRecord) -> None:
        """An interval's hold times per level, as the pool recorded them (``IntervalRecord.level_holds``)."""
        for level, (seconds, count, squares) in enumerate(zip(*record.level_holds())):
            if count:
                self._add(level, seconds, count, squares)

    def _add(self, level: int, seconds: float, count: float, squares: float) -> None:
        level = min(level, len(self.hold_sum) - 1)
        self.hold_sum[level] += seconds
        self.hold_count[level] += count
        self.hold_squares[level] += squares
        self.new_sum[level] += seconds
        self.new_count[level] += count
        self.new_squares[level] += squares
        self._fit = None

    def follow_cost(self) -> float:
        """Rescale what earlier intervals measured by how much this interval's holds differ from
        them at the same levels (the median ratio over three or more levels with 5+ samples each
        side: a pool that sees only its top levels cannot tell a cost from contention); returns it."""
        ratios, weights = [], []
        for level, (total, count, new, k) in enumerate(
                zip(self.hold_sum, self.hold_count, self.new_sum, self.new_count)):
            old_count = count - k
            if k >= 5 and old_count >= 5 and total - new > 0:
                ratios.append((new / k) / ((total - new) / old_count))
                weights.append(k)
        if len(ratios) < 3:  # one or two levels cannot tell a change in cost from contention
            return 1.0
        order = sorted(range(len(ratios)), key=ratios.__getitem__)
        half, acc, ratio = sum(weights) / 2, 0.0, 1.0
        for i in order:
            acc += weights[i]
            if acc >= half:
                ratio = ratios[i]
                break
        self.hold_sum = [(total - new) * ratio + new for total, new in zip(self.hold_sum, self.new_sum)]
        self.hold_squares = [(total - new) * ratio * ratio + new
                             for total, new in zip(self.hold_squares, self.new_squares)]
        self._fit = None
        return ratio

    def hold_at(self, level: int) -> float:
        """The expected hold time (s) with ``level`` connections in use: measured where seen
        (with enough samples), else the Universal Scalability Law's curve through the levels
        seen; NaN when fewer than two levels were seen (a saturated pool sees only its size):
        the trend is unknown then, not flat, and the controller learns no estimate for it."""
        level = max(1, min(level, len(self.hold_sum) - 1))
        if self.hold_count[level] >= 5:
            return self.hold_sum[level] / self.hold_count[level]
        fit = self.curve()
        if fit is None:
            return math.nan
        a, b, c = fit
        return a + b * (level - 1) + c * level * (level - 1)

    def curve(self) -> tuple[float, float, float] | None:
        """The Universal Scalability Law's curve through the levels seen (``usl_fit``), fitted once
        until they change; None with fewer than two levels."""
        if self._fit is None:
            seen = [(n, self.hold_sum[n] / c, c) for n, c in enumerate(self.hold_count) if c >= 1]
            if len(seen) < 2:
                return None
            self._fit = usl_fit(seen)
        return self._fit

    def seen_hold(self, size: int, offered: float, hold: float) -> float:
        """The mean hold an arrival meets at ``size`` connections with ``offered`` erlangs (``hold``
        where the relation is unknown): the measured hold at each level the M/M/n queue's busy
        connections take -- an arrival finding ``k`` busy is the ``k + 1``th, one that waits the
        ``size``th.

        >>> evidence = PoolEvidence(16)
        >>> for level in list(range(1, 9)) * 5:
        ...     evidence.record_hold(level, 0.001 * (1 + 0.1 * (level - 1)))
        >>> round(evidence.seen_hold(4, 2.0, 0.001) * 1e3, 3), round(evidence.seen_hold(8, 2.0, 0.001) * 1e3, 3)
        (1.183, 1.2)
        """
        if size < 1 or offered <= 0:
            return hold
        levels = self.level_holds(size)
        if not np.isfinite(levels).all():
            return hold
        size = len(levels)  # (within the levels kept)
        if offered >= size:  # saturated: nearly every arrival waits and starts the size-th
            return float(levels[-1])
        # offered^k / k!, k busy connections found (Poisson, truncated at the size), in logs (no overflow);
        # the last takes the arrivals that wait too (M/M/n), who start the size-th
        log_weights = np.concatenate([[0.0], np.cumsum(np.log(offered / np.arange(1, size)))])
        weights = np.exp(log_weights - log_weights.max())
        weights[-1] += weights[-1] * offered / size / (1.0 - offered / size)
        return float(weights @ levels / weights.sum())

    def level_holds(self, top: int) -> np.ndarray:
        """``hold_at`` for levels 1 to ``top`` (the curve fitted once for all of them)."""
        return np.array([self.hold_at(level) for level in range(1, max(1, min(top, len(self.hold_sum) - 1)) + 1)])

    def decay(self) -> None:
        self.intervals += 1
        self.hold_sum = [s * DECAY for s in self.hold_sum]
        self.hold_count = [c * DECAY for c in self.hold_count]
        self.hold_squares = [s * DECAY for s in self.hold_squares]
        self._fit = None
        self.new_sum = [0.0] * len(self.new_sum)
        self.new_count = [0.0] * len(self.new_count)
        self.new_squares = [0.0] * len(self.new_squares)

    def __call__(self, record: IntervalRecord, now: float, size: int, min_size: int, max_size: int,
                 reward: Callable[[float, int], float], candidates: Mapping[Action, int],
                 min_acquisitions: int, surge: float | None = None) -> Evidence:
        """``reward(latency_ms, size)`` is the controller's trade-off, given the interval's tail
        latency (p95, moving to p99 as the interval reaches ``TAIL_ACQUISITIONS``); ``surge``, an arrival rate
        forecast for the next intervals (``ArrivalForecast.expected_surge``)."""
        elapsed = max(now - record.started, 1e-9)
        utilisation = record.busy_area / elapsed / max(size, 1)
        in_system = (record.busy_area + record.queue_area) / elapsed  # L, Little's law
        growth = record.waiting_end - record.waiting_start
        arrivals = record.arrival_rate(now)
        p95, p99 = record.percentiles("latencies", (95, 99))
        (wait_p95,) = record.percentiles("waits", (95,))
        (hold_p50,) = record.percentiles("holds", (50,))
        cost_change = self.follow_cost()
        busy = max(2, round(record.busy_area / elapsed))
        low, high = self.hold_at(1), self.hold_at(busy)
        features = {
            "utilisation": utilisation,
            "waited_share": record.waited / record.acquisitions if record.acquisitions else 0.0,
            "hold_trend": (high / low - 1.0) if low and low > 0 and math.isfinite(high) else 0.0,
            "size_position": (size - min_size) / (max_size - min_size) if max_size > min_size else 0.0,
            "arrival_rate": arrivals,
            "cost_change": cost_change,
            "p95_ms": p95 * 1e3,
            "p99_ms": p99 * 1e3,
            "wait_p95_ms": wait_p95 * 1e3,
            "hold_p50_ms": hold_p50 * 1e3,
            "in_system": in_system,
            "timeouts": float(record.timeouts),
            "arrival_forecast": math.nan if surge is None else surge,
        }
        if record.acquisitions < min_acquisitions or not math.isfinite(p95):
            return Evidence(features, 0.0, cold=True,
                            summary=f"{record.acquisitions} acquisitions: too few to judge the size")
        # the tail the interval can measure: p95, moving to p99 as ten or more requests lie beyond it
        # (both come from the same samples: p95 finite, p99 too)
        reach = min(1.0, record.acquisitions / TAIL_ACQUISITIONS)
        tail = p95 + reach * (p99 - p95)
        quantile = 0.95 + 0.04 * reach
        holds = np.sort(np.asarray(record.holds, dtype=float))  # sorted once: each size's estimate reads it
        earned = reward(tail * 1e3, size)
        peak = record.peak or math.inf
        # Little's law where the pool is saturated, or where the requests present hardly vary (a closed
        # loop of clients: the peak is about the mean; Poisson arrivals swing by its square root and more)
        closed_loop = peak <= in_system + max(1.0, math.sqrt(in_system))
        queued = in_system >= size or closed_loop
        # A burst serves callers the size keeps waiting -- but not a closed loop's: there the queue
        # is the clients taking turns, and more connections only add contention in the database.
        self.burst_ok = not closed_loop
        # In a closed loop the model's means cannot price the tail (a database's lock queues, not the
        # pool's), and the load is the clients whatever the size: what each size measured is kept and
        # weighed, and a smaller size is tried (open arrivals move with the hour: the model follows
        # them). The first interval at a new size (opening cold connections) is weighed, not kept.
        first_at_size, self.last_size = size != self.last_size, size
        known = {size: tail * 1e3}
        if closed_loop:
            known = self.remember(size, tail * 1e3, in_system, now, MEASURED_FOR * elapsed, keep=not first_at_size)
            # this interval's luck applies to every size alike: the others are weighed as if measured now
            known = {n: t * tail * 1e3 / known[size] for n, t in known.items()}
        estimates: dict[Action, float] = {}  # the tail (ms) at each other size; none where unknown
        how: dict[Action, str] = {}
        measured: set[Action] = set()  # estimated from what was measured (at that size, or either side)
        # (a closed loop's arrivals are its clients' answers: they follow the size, not drive it)
        driving = math.inf if closed_loop else arrivals
        model = functools.lru_cache(maxsize=None)(  # the size itself is asked for by both moves
            lambda n: self.latency(n, in_system, driving, queued, elapsed, peak, holds, quantile))
        for action, other in candidates.items():
            estimate = self.estimate(other, known, model, optimistic=closed_loop and other < size)
            if estimate is not None:
                estimates[action], how[action] = estimate
                if how[action] in ("measured", "interpolated"):
                    measured.add(action)
                    # a move must promise more than the noise (10 % at most: a pool stuck a step off the
                    # best, in noise it cannot see past, costs more than a few moves)
                    estimates[action] *= 1.0 + min(self.noise, MAX_MARGIN)
                elif other > size and self.burst_ok:  # a grow on the model's word alone: connections cost,
                    estimates[action] *= 1.0 + MODEL_MARGIN  # and the burst covers a spike (none in a closed loop)
                    how[action] += f" +{MODEL_MARGIN:.0%}, a grow's margin"
        what_if = {action: reward(tail_ms, candidates[action]) for action, tail_ms in estimates.items()}
        summary = (f"p95 {p95 * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms (judged on {tail * 1e3:.2f} ms; wait p95 "
                   f"{features['wait_p95_ms']:.2f} ms, hold p50 "
                   f"{features['hold_p50_ms']:.2f} ms), {utilisation:.0%} of {size} connections busy, "
                   f"{features['waited_share']:.0%} of {record.acquisitions} acquisitions waited, "
                   f"{in_system:.1f} requests in the system on average, hold time "
                   f"{features['hold_trend']:+.0%} from 1 to {busy} in use")
        if abs(cost_change - 1.0) > 0.25:
            summary += f", {cost_change:.2g}x what earlier intervals measured at the same levels"
        if estimates:
            summary += "; estimated " + ", ".join(
                f"{candidates[action]} connections {tail_ms:.2f} ms ({how[action]})"
                for action, tail_ms in estimates.items())
        floor = None
        queue_grew = growth > max(2, 0.05 * record.acquisitions)
        behind = queue_grew or (utilisation > 1.0 and not closed_loop)
        most_waited = features["waited_share"] >= MOST_WAITED
        if not closed_loop and (behind or most_waited):
            doubted = self.last_ceiling
            if self.probe_ceiling(size, max_size):
                why = (f"{features['waited_share']:.0%} waited at it" if most_waited
                       else "the pool fell behind at it")
                summary += (f"; the ceiling at {doubted} connections rests on a fall within the noise of its "
                            f"levels' means and {why}: raised to {self.last_ceiling} to measure")
        if behind:
            # falling behind (the queue grew, or callers kept a burst over the size busy -- not a closed
            # loop's clients taking turns, who keep any size busy): keep up now
            floor = self.keep_up(size, max_size, arrivals, record.waiting_end, elapsed)
            if floor > size:
                why = (f"the queue grew by {growth}" if queue_grew
                       else f"{utilisation:.0%} of the size busy (its burst in use)")
                summary += (f"; {why} (arrivals {arrivals:.0f}/s, served "
                            f"{record.acquisitions / elapsed:.0f}/s): {floor} connections keep up")
            else:
                floor = None
        if floor is None and surge is not None and arrivals > 0:
            floor = self.surge_floor(size, max_size, in_system, surge / arrivals,
                                     None if queued else arrivals, holds, quantile, elapsed)
            if floor > size:
                summary += (f"; arrivals forecast to reach {surge:.0f}/s (now {arrivals:.0f}/s): "
                            f"{floor} connections serve that best")
            else:
                floor = None
        lapsed = self.last_ceiling  # (read before it is asked to lapse)
        if floor is None and not record.timeouts and self.lapse_ceiling():
            summary += f"; the ceiling at {lapsed} connections lapsed (not seen again in {MEASURED_FOR} intervals)"
        ceiling = self.ceiling(max_size)
        if ceiling is not None and ceiling < max_size:
            summary += f"; beyond {ceiling} connections the database serves less (its fitted USL curve)"
        return Evidence(features, earned, what_if, summary, modelled=True, measured=frozenset(measured),
                        floor=floor, ceiling=ceiling, shrink_frees=closed_loop or not most_waited)

    def remember(self, size: int, tail_ms: float, load: float, now: float, horizon_s: float,
                 keep: bool = True) -> dict[int, float]:
        """Keep the tail measured at ``size`` under ``load`` (the requests present in a closed loop),
        averaged with the last at that size if its load was alike (``keep=False``: weigh it, don't
        keep it); return the tails measured at each size under a load like this one within the last
        ``horizon_s`` seconds, this one's at ``size``.

        >>> evidence = PoolEvidence(32)
        >>> evidence.remember(8, 20.0, 48.0, now=1.0, horizon_s=30.0)
        {8: 20.0}
        >>> evidence.remember(10, 30.0, 48.0, now=2.0, horizon_s=30.0)
        {8: 20.0, 10: 30.0}
        >>> evidence.remember(8, 10.0, 100.0, now=3.0, horizon_s=30.0)   # another load: 10's is not this
        {8: 10.0}
        >>> evidence.remember(10, 40.0, 48.0, now=40.0, horizon_s=30.0)  # what 8 measured has expired
        {10: 40.0}
        """
        self.measured = {n: m for n, m in self.measured.items() if now - m[2] <= horizon_s}
        last = self.measured.get(size)
        if last is not None and _alike(last[1], load):
            if keep and tail_ms > 0 and last[0] > 0:
                self.noise = 0.7 * self.noise + 0.3 * abs(math.log(tail_ms / last[0]))
            tail_ms = 0.5 * (tail_ms + last[0])
        if keep:
            self.measured[size] = (tail_ms, load, now)
        known = {n: t for n, (t, then, _) in self.measured.items() if _alike(then, load)}
        known[size] = tail_ms
        return dict(sorted(known.items()))

    @staticmethod
    def estimate(other: int, known: Mapping[int, float], model: Callable[[int], float],
                 optimistic: bool = False) -> tuple[float, str] | None:
        """The tail (ms) at ``other`` connections: measured there; else between two sizes measured, on
        the line through them; else the model's change from the nearest size measured (no worse than
        that when ``optimistic``, a smaller size worth trying: the part of the tail the model does not
        explain, a database's own queues, taken to shrink with the connections, the rest to stay -- in
        a closed loop the clients keep the database as busy at either size). None where the model
        knows nothing.

        >>> model = lambda n: 0.048 / n                  # Little's law (s): fewer connections, longer waits
        >>> PoolEvidence.estimate(6, {4: 20.0, 8: 12.0}, model)
        (16.0, 'interpolated')
        >>> PoolEvidence.estimate(4, {8: 12.0}, model)
        (24.0, 'modelled')
        >>> PoolEvidence.estimate(4, {8: 60.0}, model, optimistic=True)  # 6 ms explained, 54 not: 60 - 27
        (33.0, 'to be tried')
        """
        if other in known:
            return known[other], "measured"
        below = [n for n in known if n < other]
        above = [n for n in known if n > other]
        if below and above:
            lo, hi = max(below), min(above)
            return known[lo] + (known[hi] - known[lo]) * (other - lo) / (hi - lo), "interpolated"
        nearest = max(below) if below else min(above)
        here, there = model(nearest), model(other)
        if not (math.isfinite(here) and math.isfinite(there)) or here <= 0:
            return None
        if optimistic:  # what the model does not explain, taken as growing with the connections
            excess = max(known[nearest] - 1e3 * here, 0.0)
            return known[nearest] - excess * (1.0 - other / nearest), "to be tried"
        return known[nearest] * there / here, "modelled"

    def burst_limit(self, size: int, max_size: int, burst: float) -> int:
        """The most connections open while callers wait: ``burst`` as a share more than ``size``,
        ``BURST_HEADROOM`` at least, within ``max_size`` and the ceiling -- none in a closed loop.

        >>> PoolEvidence(32).burst_limit(20, 32, 0.5), PoolEvidence(32).burst_limit(2, 32, 0.5)
        (30, 10)
        """
        if burst <= 0 or not self.burst_ok:
            return size
        limit = min(max_size, size + max(BURST_HEADROOM, math.ceil(size * burst)))
        return limit if self.last_ceiling is None else max(size, min(limit, self.last_ceiling))

    def ceiling(self, max_size: int) -> int | None:
        """The concurrency that serves most by the fitted USL curve (``n / hold(n)`` peaks at
        ``sqrt((a - b) / c)``), once three levels are measured, the curve bends, and a level
        measured above the peak really served ``RETROGRADE`` times less than the best level
        at or below it; None before. It is sure (``ceiling_sure``) where that fall exceeds
        ``FALL_Z`` standard errors of the two means, else doubtful (``probe_ceiling``). The last
        one found stands while that does not hold: in a congestion collapse every level is slow
        at once and the curve flattens -- the moment not to forget the peak -- until it lapses
        (``lapse_ceiling``).

        The measured fall is what tells a database that serves less from a process whose
        requests share the CPU: there a connection's hold lengthens with the requests in
        flight, whatever the pool's size, and throughput stays flat -- no reason to queue
        callers at one connection.

        >>> evidence = PoolEvidence(64)
        >>> for level in list(range(1, 13)) * 5:
        ...     evidence.record_hold(level, 0.001 * (1 + 0.02 * level * (level - 1)))
        >>> evidence.ceiling(64)   # the peak: sqrt(1 / 0.02) = 7.1; 12 serve 14 % less
        8
        >>> shared = PoolEvidence(64)
        >>> for level in list(range(1, 9)) * 5:
        ...     shared.record_hold(level, 0.001 * level * (1 + 0.001 * (level - 1)))
        >>> shared.ceiling(64) is None   # holds grow with the level, throughput flat: no ceiling
        True
        """
        measured = {n: self.hold_sum[n] / c for n, c in enumerate(self.hold_count) if c >= 5 and n >= 1}
        if len(measured) >= 3:
            a, b, c = usl_fit([(n, hold, self.hold_count[n]) for n, hold in measured.items()])
            if c > 0 and a > b:
                peak = min(max_size, math.ceil(math.sqrt((a - b) / c)))
                served = {n: n / hold for n, hold in measured.items() if hold > 0}
                top = max((n for n in served if n <= peak), key=served.__getitem__, default=None)
                fell = [] if top is None else [n for n in served if n > peak and served[n] * RETROGRADE <= served[top]]
                if fell and top is not None:  # (the holds' spread is asked only then)
                    spread = self.spread(measured)
                    falls = [self._fall(n, served[n], top, served[top], spread) for n in fell]
                    self.ceiling_sure = max(falls) > FALL_Z
                    if self.ceiling_sure:
                        self.probed = 0
                    self.last_ceiling = max(peak, self.probed)
                    self.ceiling_witnessed = self.intervals
        return self.last_ceiling

    def _fall(self, level: int, served: float, best_level: int, best: float, spread: float) -> float:
        """How many standard errors of the two levels' mean holds ``level`` served less than
        ``best_level``, holds varying by ``spread`` (their coefficient of variation) and the decayed
        counts taken as the samples (fewer than the weights' effective number: cautious). A level
        reached only in bursts holds few samples, and where holds vary as widely as a database's
        do, its mean alone is no fall."""
        error = spread * math.hypot(served / math.sqrt(self.hold_count[level]),
                                    best / math.sqrt(self.hold_count[best_level]))
        return (best - served) / error if error > 0 else math.inf

    def spread(self, levels: Mapping[int, float]) -> float:
        """The holds' coefficient of variation within a level, pooled over ``levels`` (level -> mean
        hold): one level's few samples say little of their own spread, and a database's holds
        vary about their mean alike at every level.

        >>> evidence = PoolEvidence(8)
        >>> for level, hold in [(1, 1.0), (1, 3.0), (2, 2.0), (2, 6.0)]:
        ...     evidence.record_hold(level, hold)
        >>> evidence.spread({1: 2.0, 2: 4.0})
        0.5
        """
        squared = count = 0.0
        for level, mean in levels.items():
            k = self.hold_count[level]
            squared += max(0.0, self.hold_squares[level] / k / (mean * mean) - 1.0) * k
            count += k
        return math.sqrt(squared / count) if count else 0.0

    def probe_ceiling(self, size: int, max_size: int) -> bool:
        """Raise a doubtful ceiling (its fall within the noise: ``ceiling_sure`` false) by one
        connection, the pool at it and most of its callers waiting, or the pool falling behind (True: raised). A ceiling fitted on a few
        samples at levels reached in bursts is often wrong, and it binds only once the load grows
        or the queries dear: the level above fills with samples, and the next ``ceiling`` finds
        the fall sure, or the peak higher (a probe stands until it does).

        >>> evidence = PoolEvidence(32)
        >>> evidence.last_ceiling = 7
        >>> evidence.probe_ceiling(7, 32), evidence.last_ceiling, evidence.probe_ceiling(6, 32)
        (True, 8, False)
        >>> evidence.ceiling_sure = True
        >>> evidence.probe_ceiling(8, 32)
        False
        """
        if self.last_ceiling is None or self.ceiling_sure or size < self.last_ceiling or self.last_ceiling >= max_size:
            return False
        self.last_ceiling = self.probed = self.last_ceiling + 1
        return True

    def lapse_ceiling(self) -> bool:
        """Forget a ceiling that ``ceiling`` has not found again for ``MEASURED_FOR`` intervals
        (``decay`` counts them), whether or not it still holds (True: forgotten) -- asked only
        while the pool keeps up (in a congestion collapse the peak must stand): capped there, the
        pool never measures the levels above it that could show it wrong (a noisy level, a query
        cost since changed). A ceiling the levels still show is set again by the next ``ceiling``.

        >>> evidence = PoolEvidence(64)
        >>> for level in list(range(1, 13)) * 5:
        ...     evidence.record_hold(level, 0.001 * (1 + 0.02 * level * (level - 1)))
        >>> evidence.ceiling(64)
        8
        >>> for _ in range(MEASURED_FOR + 1):
        ...     evidence.decay()          # levels above 8 no longer measured: nothing witnesses it
        >>> evidence.lapse_ceiling(), evidence.last_ceiling
        (True, None)
        """
        if self.last_ceiling is None or self.intervals - self.ceiling_witnessed <= MEASURED_FOR:
            return False
        self.last_ceiling, self.probed = None, 0
        return True

    def keep_up(self, size: int, max_size: int, arrivals: float, waiting: int, elapsed: float) -> int:
        """Connections that serve ``arrivals`` a second at 85 % utilisation and drain ``waiting``
        within two intervals -- no more than the size the hold-time relation says serves most
        (beyond it more connections serve less: the Universal Scalability Law's peak).

        >>> evidence = PoolEvidence(32)
        >>> for level in [1, 2, 3, 4] * 5:
        ...     evidence.record_hold(level, 0.010)
        >>> evidence.keep_up(4, 32, arrivals=1000.0, waiting=50, elapsed=1.0)  # 11.8 + 0.25
        13
        """
        hold = self.hold_at(max(size, 1))
        if not math.isfinite(hold):
            return min(max_size, max(size + 1, round(size * 2)))  # the relation unknown: double
        needed = math.ceil(arrivals * hold / 0.85 + waiting * hold / (2 * elapsed))
        ceiling = self.ceiling(max_size)
        return max(size, min(max_size, needed, max_size if ceiling is None else ceiling))

    def surge_floor(self, size: int, max_size: int, in_system: float, ratio: float, arrivals: float | None = None,
                    holds: np.ndarray | None = None, quantile: float = 0.95, interval: float = 1.0) -> int:
        """The size, from ``size`` up to ``size * ratio``, that the measured hold-time relation says
        serves ``ratio`` times today's load best: with ``arrivals`` (open arrivals, a second), the
        arrivals ``ratio`` times as many, queueing as ``latency`` prices them (an M/M/n queue: at
        the same mean load, randomly arriving requests need more connections than Little's law's
        means say); without (a closed loop, a standing queue), Little's law with ``ratio`` times as
        many requests present. Proportional growth where the relation is unknown. Where no size
        in reach keeps up with the forecast arrivals (the database's own limit, or a forecast
        overshooting), the size that serves most by the relation, and never beyond the ceiling.

        >>> evidence = PoolEvidence(16)
        >>> for level in [1, 2, 3, 4] * 5:
        ...     evidence.record_hold(level, 0.010)            # hold time does not grow with concurrency
        >>> evidence.surge_floor(4, 16, in_system=4.0, ratio=2.0)
        8
        >>> evidence.surge_floor(2, 16, in_system=0.8, ratio=5.0)   # Little's law: 4 requests, 4 connections
        4
        >>> evidence.surge_floor(2, 16, in_system=0.8, ratio=5.0, arrivals=80.0)  # 400/s at 10 ms, at random
        9
        >>> contended = PoolEvidence(48)
        >>> for level in list(range(1, 13)) * 5:
        ...     contended.record_hold(level, 0.001 * (1 + 0.02 * level * (level - 1)))  # serves most at 7-8
        >>> contended.surge_floor(4, 48, in_system=2.0, ratio=4.0, arrivals=1000.0)  # 4000/s: beyond any size
        7
        """
        top = min(max_size, math.ceil(size * ratio))
        if top <= size:
            return size
        load = in_system * ratio
        if arrivals is None:  # saturated: Little's law
            latencies = {n: self.latency(n, load) for n in range(size, top + 1)}
        else:  # a size the arrivals would keep fully busy cannot keep up, whatever the means say
            surge = arrivals * ratio
            holds_at = {n: self.hold_at(n) for n in range(size, top + 1)}
            if all(math.isfinite(h) and h > 0 for h in holds_at.values()) and all(
                    surge * h >= n for n, h in holds_at.items()):
                most = max(holds_at, key=lambda n: (n / holds_at[n], -n))  # what the database serves best
                ceiling = self.ceiling(max_size)
                return max(size, most if ceiling is None else min(most, ceiling))
            latencies = {n: self.latency(n, load, surge, queued=False, interval=interval, holds=holds, quantile=quantile)
                         for n, h in holds_at.items() if not (math.isfinite(h) and surge * h >= n)}
        if not latencies or not all(math.isfinite(v) for v in latencies.values()):
            return top
        return min(latencies, key=lambda n: (round(latencies[n], 12), n))

    def latency(self, size: int, in_system: float, arrivals: float = math.inf, queued: bool = True,
                interval: float = 1.0, peak: float = math.inf, holds: np.ndarray | None = None,
                quantile: float = 0.95) -> float:
        """A request's time (s) at ``size`` connections with ``in_system`` requests present and
        ``arrivals`` a second; NaN where the hold-time relation is unknown.

        ``queued`` (a standing queue now: clients in a closed loop, or a backlog): Little's law,
        ``L * h / n``, plus -- where ``arrivals`` (finite: open arrivals) keep more than ``size``
        connections busy -- the backlog growing over the ``interval``. Else the arrivals are the load: the hold plus the 95th percentile of an
        M/M/n queue's wait while the pool keeps up, and a queue growing over the ``interval``
        when it would not -- with ``holds`` (the interval's), the ``quantile`` of hold + wait
        (``sum_quantile``) at the mean hold the queue's busy levels give (``seen_hold``). At
        ``peak`` connections or more (the most requests ever present at once), nobody waits: a
        closed loop of N clients never needs more than N. No connection serves nobody: infinite."""
        if size < 1:
            return math.inf
        busy = max(1.0, min(float(size), in_system))
        hold = self.hold_at(int(round(busy)))
        if not math.isfinite(hold):
            return math.nan
        little = max(hold, in_system * hold / size)
        offered = arrivals * hold  # connections the arrivals keep busy
        if queued or not math.isfinite(offered):
            if size >= peak:
                return hold
            if math.isfinite(offered) and offered > size:  # a backlog this size cannot drain: it grows
                return little + _backlog_growth(offered, size, interval)
            return little
        shaped = None
        if holds is not None and len(holds) >= 20 and hold > 0 and holds.mean() > 0:
            # the hold an arrival meets: the busy connections take the M/M/n queue's levels, capped at
            # the size (or the most ever present): more connections let a burst contend in the database
            hold = self.seen_hold(int(min(size, peak)), offered, hold)
            offered = arrivals * hold
            shaped = holds * (hold / holds.mean())  # the interval's spread of holds, at that mean (sorted)
        spread = 1.0 if shaped is None else _sorted_quantile(shaped, quantile) / hold
        if size >= peak:
            return hold * spread
        if offered >= size:
            return max(little * spread, hold * spread + _backlog_growth(offered, size, interval))
        waits = erlang_c(size, offered)  # near saturation the M/M/n tail is long: no longer than half an interval
        if shaped is not None:
            return sum_quantile(shaped, waits, (size - offered) / hold, quantile, interval / 2)
        tail = math.log(waits / 0.05) * hold / (size - offered) if waits > 0.05 else 0.0
        return hold + min(tail, interval / 2)


def _backlog_growth(offered: float, size: int, interval: float) -> float:
    """The mean extra wait (s) over an ``interval`` in which arrivals that keep ``offered`` connections
    busy meet ``size`` (fewer): the queue grows by the difference, half of it on average."""
    return interval * (offered - size) / (2 * size)


def sum_quantile(ordered: np.ndarray, waits: float, rate: float, quantile: float, longest: float) -> float:
    """The ``quantile`` of a request's time, hold + wait, where holds are like ``ordered`` (sorted) and the
    wait is an M/M/n queue's: zero, or with chance ``waits`` exponential at ``rate`` (1/s), at
    most ``longest``. The tail of the sum, not the sum of the means: where holds spread widely,
    a short wait hardly moves the 99th percentile.

    >>> holds = np.full(100, 0.001)
    >>> round(sum_quantile(holds, 0.0, 1000.0, 0.99, 0.5), 6), round(sum_quantile(holds, 0.5, 1000.0, 0.99, 0.5), 5)
    (0.001, 0.00491)
    """
    base = _sorted_quantile(ordered, quantile)
    if waits <= 0.0:
        return base
    beyond = 1.0 - quantile

    def exceeds(t: float) -> float:  # P(hold + wait > t)
        below = ordered[:np.searchsorted(ordered, t, side="right")]
        return (len(ordered) - len(below) + waits * np.exp(-rate * (t - below)).sum()) / len(ordered)

    # a bound: the longest hold plus the wait exceeded by the share beyond alone
    lo, hi = base, min(base + longest, float(ordered[-1]) + max(0.0, math.log(waits / beyond) / rate))
    if exceeds(hi) > beyond:
        return hi
    for _ in range(64):  # to a thousandth (bounded, whatever the bracket)
        if hi - lo <= 1e-3 * lo:
            break
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if exceeds(mid) > beyond else (lo, mid)
    return hi


def _sorted_quantile(ordered: np.ndarray, quantile: float) -> float:
    """``np.quantile`` (linear) of values already sorted, without sorting them again."""
    position = quantile * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (position - low))


def _alike(a: float, b: float) -> bool:
    """Two loads alike enough for a tail measured under one to stand for the other (``STEADY``)."""
    return abs(a - b) <= max(1.0, (STEADY - 1.0) * max(a, b))


def erlang_c(servers: int, offered: float) -> float:
    """The chance an arrival waits in an M/M/``servers`` queue with ``offered`` erlangs (< servers).

    >>> round(erlang_c(10, 8.0), 4), erlang_c(4, 0.0)
    (0.4092, 0.0)
    """
    blocking = 1.0  # Erlang B, by its stable recurrence
    for k in range(1, servers + 1):
        blocking = offered * blocking / (k + offered * blocking)
    return servers * blocking / (servers - offered * (1.0 - blocking))
