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
The instruments are made once per ``MeterProvider`` and serve every pool
reporting there (the OTel SDK keeps the first instrument of a name and drops
the callbacks of the next): each collection observes every open pool, the
fresh one ``engine.dispose()`` leaves too.

The two counters are cumulative per pool name, as OTel reads a counter: a
backend takes a count that falls for a reset. So they sum every pool of a name
the provider has seen -- the open ones, the closed ones still lending to the
callers their close serves, and the totals of those gone -- and the fresh pool
of ``engine.dispose()`` goes on from the old one's count. A closed pool hands
over a reader of its counts that holds no reference to it
(``AdaptivePool._lifetime_counts``): it is kept only while something else keeps
it, and what it counts until it is gone is carried, once. The totals of at most
``MAX_RETIRED_NAMES`` names with no pool left are kept (beyond, the name gone
longest is forgotten, counted in the process-wide ``FAULTS``).
"""

from __future__ import annotations

import random
import threading
import weakref
from collections import Counter
from typing import Any, Callable, Iterable, Mapping, Sequence

from perfsdk._runtime import FAULTS, at_fork
from perfsdk._version import __version__

__all__ = ["PoolMetrics"]

#: The lifetime counts the counters read: carried past a pool's end into its name's totals.
LIFETIME = ("acquisitions", "timeouts", "shed")
#: Names with no pool left whose totals are kept (a name that comes back goes on from them).
MAX_RETIRED_NAMES = 1_000
POOL_NAME = "db.client.connection.pool.name"
#: Wait (and use) times recorded into the histograms an interval, at most: an even sample.
RECORDED_PER_INTERVAL = 32
STATE = "db.client.connection.state"


class PoolMetrics:
    """Reports a pool through ``meter_provider``'s instruments (default: OTel's global provider).

    The instruments hold the pool weakly: a pool that is closed stops reporting, and once
    dropped it can be collected.
    """

    def __init__(self, pool: Any, meter_provider: Any = None) -> None:
        from opentelemetry import metrics  # loaded with the first pool, not with perfsdk

        instruments = _Instruments.of(meter_provider or metrics.get_meter_provider())
        instruments.add(pool)
        self._instruments = instruments
        self._attrs = {POOL_NAME: pool.name}
        self.wait_time, self.use_time = instruments.wait_time, instruments.use_time
        self.create_time = instruments.create_time

    def record_interval(self, waits: Sequence[float], holds: Sequence[float]) -> None:
        """An interval's wait and use times (on the pool's thread), an even sample of each."""
        for seconds in _even_sample(waits):
            self.wait_time.record(seconds, self._attrs)
        for seconds in _even_sample(holds):
            self.use_time.record(seconds, self._attrs)

    def record_create(self, seconds: float) -> None:
        self.create_time.record(seconds, self._attrs)

    def closed(self, pool: Any, counts: Callable[[], Mapping[str, int]]) -> None:
        """``pool`` closed: its counters read ``counts`` (which must not hold the pool) from now on, and
        carry its last reading into the name's totals once the pool is gone."""
        self._instruments.closed(pool, counts)


class _Instruments:
    """One meter provider's pool instruments, made once: the gauges observe every open pool, the
    counters every pool of a name, gone ones too (see the module docstring)."""

    _lock = threading.Lock()  # the registry, and each provider's pools
    _by_provider: weakref.WeakKeyDictionary[Any, _Instruments] = weakref.WeakKeyDictionary()

    @classmethod
    def of(cls, meter_provider: Any) -> _Instruments:
        """``meter_provider``'s instruments, made with its first pool."""
        with cls._lock:
            instruments = cls._by_provider.get(meter_provider)
            if instruments is None:
                instruments = cls._by_provider[meter_provider] = cls(meter_provider.get_meter("perfsdk", __version__))
        return instruments

    @classmethod
    def _after_fork(cls) -> None:
        # a thread of the parent making instruments or collecting held it, and does not exist here
        cls._lock = threading.Lock()
        for instruments in list(cls._by_provider.values()):  # a child's pools count from zero: so do their names
            instruments._closed, instruments._retired = [], {}

    def __init__(self, meter: Any) -> None:
        self._pools: weakref.WeakSet[Any] = weakref.WeakSet()
        # closed pools' counts, read without them: (the pool, weakly; its name; the reader)
        self._closed: list[tuple[weakref.ref[Any], str, Callable[[], Mapping[str, int]]]] = []
        self._retired: dict[str, Counter[str]] = {}  # by name, the counts of pools gone (the longest gone first)
        observe, count = self._observer, self._counter
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
            "db.client.connection.timeouts", [count(lambda s: s["timeouts"] + s["shed"])],
            unit="{timeout}", description="Acquisitions that raised PoolTimeout (timed out or shed)")
        meter.create_observable_counter(
            "perfsdk.pool.acquisitions", [count(lambda s: s["acquisitions"])],
            unit="{acquisition}", description="Connections lent (the time histograms hold a sample of them)")
        self.wait_time = meter.create_histogram(
            "db.client.connection.wait_time", unit="s", description="Time to obtain a connection")
        self.use_time = meter.create_histogram(
            "db.client.connection.use_time", unit="s", description="Time between borrowing and returning")
        self.create_time = meter.create_histogram(
            "db.client.connection.create_time", unit="s", description="Time to create a connection")

    def add(self, pool: Any) -> None:
        with self._lock:
            self._pools.add(pool)

    def closed(self, pool: Any, counts: Callable[[], Mapping[str, int]]) -> None:
        with self._lock:
            forgotten = self._carry_gone()[1]  # here too: a provider that never collects keeps no closed pool
            self._closed.append((weakref.ref(pool), pool.name, counts))
        self._report_forgotten(forgotten)

    def _lifetime_totals(self) -> dict[str, Counter[str]]:
        """Each name's ``LIFETIME`` counts: its open pools', its closed pools' (read as they left them),
        and those of its pools gone. A pool found gone has its last reading carried into its name's
        totals here, in the same collection: its count never drops out for one."""
        with self._lock:
            pools = list(self._pools)  # held: none of them goes while this collection reads it
            readers, forgotten = self._carry_gone()
            totals = {name: Counter(counts) for name, counts in self._retired.items()}
        self._report_forgotten(forgotten)
        for pool in pools:
            reader = readers.get(id(pool))
            counts = reader() if reader is not None else pool.stats()
            totals.setdefault(pool.name, Counter()).update({key: counts[key] for key in LIFETIME})
        return totals

    def _carry_gone(self) -> tuple[dict[int, Callable[[], Mapping[str, int]]], list[str]]:  # under the lock
        """Carry the closed pools gone into their names' totals: the readers of those still here, by
        ``id``, and the names forgotten to keep the bound."""
        readers: dict[int, Callable[[], Mapping[str, int]]] = {}
        closed, forgotten = [], []
        for ref, name, read in self._closed:
            pool = ref()
            if pool is None:
                forgotten += self._retire(name, read())
            else:
                readers[id(pool)] = read
                closed.append((ref, name, read))
        self._closed = closed
        return readers, forgotten

    @staticmethod
    def _report_forgotten(names: list[str]) -> None:
        for name in names:
            FAULTS.record("pool metrics", RuntimeError(
                f"the counters' totals of pool {name!r} were forgotten: more than {MAX_RETIRED_NAMES} pool "
                "names with no pool left"))

    def _retire(self, name: str, counts: Mapping[str, int]) -> list[str]:  # under the lock
        """Carry a gone pool's counts into its name's totals; the names forgotten to keep the bound."""
        totals = self._retired.pop(name, Counter())  # put last: the name gone longest stays first
        totals.update({key: counts[key] for key in LIFETIME})
        self._retired[name] = totals
        if len(self._retired) <= MAX_RETIRED_NAMES:
            return []
        living = {pool.name for pool in self._pools}
        forgotten = next((n for n in self._retired if n not in living), None)
        if forgotten is None:
            return []
        del self._retired[forgotten]
        return [forgotten]

    def _observer(self, pick: Callable[[dict[str, Any]], list[tuple[float, str | None]]]) -> Callable[..., Any]:
        from opentelemetry.metrics import Observation

        def callback(options: Any) -> Iterable[Any]:
            with self._lock:
                pools = list(self._pools)
            observations = []
            for pool in pools:
                counts = pool.stats()
                if counts["closed"]:
                    continue
                attrs = {POOL_NAME: counts["name"]}
                observations += [Observation(value, attrs if state is None else {**attrs, STATE: state})
                                 for value, state in pick(counts)]
            return observations
        return callback

    def _counter(self, pick: Callable[[Mapping[str, int]], int]) -> Callable[..., Any]:
        from opentelemetry.metrics import Observation

        def callback(options: Any) -> Iterable[Any]:
            return [Observation(pick(counts), {POOL_NAME: name}) for name, counts in self._lifetime_totals().items()]
        return callback


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


at_fork(_Instruments._after_fork)
