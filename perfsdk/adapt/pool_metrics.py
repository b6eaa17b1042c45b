"""A pool's OpenTelemetry metrics, named as OTel's database semantic conventions name them.

Counts are observed when the metrics are collected (nothing on the lending
path); wait and use times go to histograms on the pool's own thread, once an
interval, as an even sample of the interval's samples: at most
``RECORDED_PER_INTERVAL`` of each. An OTel SDK histogram takes about 10 µs a
``record`` here, so recording every sample of a pool lending 10,000 connections a
second would cost three times what the pool's own lending does; the sample keeps
each interval's distribution (the percentiles), evenly spaced from a random
start; the histograms' count is the samples recorded, and the count of
acquisitions is its own counter, ``perfsdk.pool.acquisitions``. Over many
intervals, a busy interval weighs no more than a quiet one with 32 or more.
With no OTel ``MeterProvider`` configured, OTel's API drops them all.

=========================================  =============  =========================
``db.client.connection.count``             up-down        by ``state`` (idle, used)
``db.client.connection.max``               up-down        ``max_size``
``db.client.connection.idle.min``          up-down        ``min_size``
``db.client.connection.pending_requests``  up-down        callers waiting
``db.client.connection.timeouts``          counter        ``PoolTimeout`` raised
``db.client.connection.wait_time``         histogram, s   acquire to lent
``db.client.connection.use_time``          histogram, s   lent to returned
``db.client.connection.create_time``       histogram, s   ``factory()`` calls
``perfsdk.pool.acquisitions``               counter        connections lent
=========================================  =============  =========================

Every point carries ``db.client.connection.pool.name`` (the pool's ``name``).
"""

from __future__ import annotations

import random
import weakref
from typing import Any, Callable, Iterable, Sequence

from perfsdk._version import __version__

__all__ = ["PoolMetrics"]

POOL_NAME = "db.client.connection.pool.name"
#: Wait (and use) times recorded into the histograms an interval, at most: an even sample.
RECORDED_PER_INTERVAL = 32
STATE = "db.client.connection.state"


class PoolMetrics:
    """Registers a pool's instruments with ``meter_provider`` (default: OTel's global one).

    The callbacks hold the pool weakly: a pool that is closed and dropped stops
    reporting and can be collected.
    """

    def __init__(self, pool: Any, meter_provider: Any = None) -> None:
        from opentelemetry import metrics  # loaded with the first pool, not with perfsdk

        meter = (meter_provider or metrics.get_meter_provider()).get_meter("perfsdk", __version__)
        self._pool = weakref.ref(pool)
        self._attrs = {POOL_NAME: pool.name}
        observe = self._observer
        meter.create_observable_up_down_counter(
            "db.client.connection.count", [observe(lambda s: [(s["idle"], "idle"), (s["in_use"], "used")])],
            unit="{connection}", description="Connections in the state the state attribute names")
        meter.create_observable_up_down_counter(
            "db.client.connection.max", [observe(lambda s: [(s["max_size"], None)])],
            unit="{connection}", description="The most open connections allowed")
        meter.create_observable_up_down_counter(
            "db.client.connection.idle.min", [observe(lambda s: [(s["min_size"], None)])],
            unit="{connection}", description="The fewest open connections kept")
        meter.create_observable_up_down_counter(
            "db.client.connection.pending_requests", [observe(lambda s: [(s["waiting"], None)])],
            unit="{request}", description="Callers waiting for a connection")
        meter.create_observable_counter(
            "db.client.connection.timeouts", [observe(lambda s: [(s["timeouts"] + s["shed"], None)])],
            unit="{timeout}", description="Acquisitions that raised PoolTimeout (timed out or shed)")
        meter.create_observable_counter(
            "perfsdk.pool.acquisitions", [observe(lambda s: [(s["acquisitions"], None)])],
            unit="{acquisition}", description="Connections lent (the time histograms hold a sample of them)")
        self.wait_time = meter.create_histogram(
            "db.client.connection.wait_time", unit="s", description="Time to obtain a connection")
        self.use_time = meter.create_histogram(
            "db.client.connection.use_time", unit="s", description="Time between borrowing and returning")
        self.create_time = meter.create_histogram(
            "db.client.connection.create_time", unit="s", description="Time to create a connection")

    def _observer(self, pick: Callable[[dict[str, Any]], list[tuple[float, str | None]]]) -> Callable[..., Any]:
        from opentelemetry.metrics import Observation

        def callback(options: Any) -> Iterable[Any]:
            pool = self._pool()
            if pool is None:
                return []
            counts = pool.stats()
            if counts["closed"]:
                return []
            return [Observation(value, self._attrs if state is None else {**self._attrs, STATE: state})
                    for value, state in pick(counts)]
        return callback

    def record_interval(self, waits: Sequence[float], holds: Sequence[float]) -> None:
        """An interval's wait and use times (on the pool's thread), an even sample of each."""
        for seconds in _even_sample(waits):
            self.wait_time.record(seconds, self._attrs)
        for seconds in _even_sample(holds):
            self.use_time.record(seconds, self._attrs)

    def record_create(self, seconds: float) -> None:
        self.create_time.record(seconds, self._attrs)


def _even_sample(samples: Sequence[float]) -> Sequence[float]:
    """At most ``RECORDED_PER_INTERVAL`` of ``samples``, evenly spaced.

    >>> picked = sorted(_even_sample(list(range(1000))))
    >>> len(picked), {b - a for a, b in zip(picked, picked[1:])} <= {31, 32}, _even_sample([0.1, 0.2])
    (32, True, [0.1, 0.2])
    """
    n = len(samples)
    if n <= RECORDED_PER_INTERVAL:
        return samples
    start = random.randrange(n)  # a random phase: no periodic pattern in the load lines up with the picks
    return [samples[(start + i * n // RECORDED_PER_INTERVAL) % n] for i in range(RECORDED_PER_INTERVAL)]
