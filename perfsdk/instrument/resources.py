"""ResourceSampler: process CPU, memory, threads and GC pauses, as streams.

A background ``Worker`` ticks every ``interval_s``, samples and feeds each metric into a
detector of its own (a ``DetectorBank`` keyed by metric name), so a CPU spike
or a sudden jump in memory is caught like a slow span. Given the span bank, it also
follows the traffic: spans a second and the share of them that failed, so a surge or a
dependency that starts failing (fast errors: no span is slow) is caught too.
"""

from __future__ import annotations

import gc
import os
import resource
import threading
import time
from collections import deque
from datetime import datetime, timezone
from typing import Any

from perfsdk._runtime import Faults, Worker, at_fork, check_number
from perfsdk.instrument.bank import DetectorBank
from perfsdk.instrument.sink import AnomalySink

CPU = "process.cpu.utilization"  # percent of one core
RSS = "process.memory.rss_mb"
THREADS = "process.thread.count"
GC_PAUSE = "process.gc.pause_ms"  # total collector pause time in the interval
SPAN_RATE = "spans.rate"  # spans ended a second
SPAN_ERRORS = "spans.error_percent"  # of the spans ended in the interval, the share with an error status
#: The traffic streams are read at least this often: a surge ramps up within a second or two, and
#: half-second samples see it one sample sooner than whole seconds (the process metrics keep their pace).
TRAFFIC_INTERVAL_S = 0.5
UNITS = {CPU: "%", RSS: "MB", THREADS: "{thread}", GC_PAUSE: "ms", SPAN_RATE: "{span}/s", SPAN_ERRORS: "%"}

__all__ = ["CPU", "GC_PAUSE", "RSS", "SPAN_ERRORS", "SPAN_RATE", "THREADS", "TRAFFIC_INTERVAL_S", "UNITS",
           "GcPauses", "ResourceSampler", "resident_mb"]

_PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 2**20 if hasattr(os, "sysconf") else 4096 / 2**20


def resident_mb() -> float:
    """Current resident set size (MB); the peak where /proc is not available."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE_MB
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class GcPauses:
    """The collector's pauses, from ``gc.callbacks``: a running total (the sampler's
    ``process.gc.pause_ms``) and the most recent ones with their wall-clock times, so a
    slow span can be told it sat through one (a pause is the process's, not the route's).

    >>> pauses = GcPauses()
    >>> pauses.recent.extend([(1_000_000, 3_000_000), (9_000_000, 10_000_000)])
    >>> pauses.during(2_000_000, 9_500_000)   # ms of pause inside the span, collections
    (1.5, 2)
    """

    def __init__(self, keep: int = 256) -> None:
        self.total_ns = 0
        self.recent: deque[tuple[int, int]] = deque(maxlen=keep)  # (start, end), wall-clock ns
        self._started_wall = self._started = 0
        at_fork(self._after_fork)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started_wall, self._started = time.time_ns(), time.perf_counter_ns()
        elif self._started:
            paused = time.perf_counter_ns() - self._started  # the duration on a clock that never jumps
            self.total_ns += paused
            self.recent.append((self._started_wall, self._started_wall + paused))
            self._started = 0

    def install(self) -> None:
        if self._on_gc not in gc.callbacks:
            gc.callbacks.append(self._on_gc)

    def uninstall(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    def during(self, start_ns: int, end_ns: int) -> tuple[float, int]:
        """Milliseconds of collector pause within ``start_ns``..``end_ns``, and how many collections."""
        paused, collections = 0, 0
        for began, ended in list(self.recent):  # a copy: a collection may append meanwhile
            overlap = min(ended, end_ns) - max(began, start_ns)
            if overlap > 0:
                paused += overlap
                collections += 1
        return paused / 1e6, collections

    def _after_fork(self) -> None:
        self._started = 0


class ResourceSampler:
    """Samples resource metrics on a background thread into ``bank``."""

    def __init__(self, bank: DetectorBank, sink: AnomalySink, faults: Faults, interval_s: float = 1.0,
                 writer: Any = None, service: str = "", traffic: DetectorBank | None = None,
                 gc_pauses: GcPauses | None = None, traffic_bank: DetectorBank | None = None) -> None:
        check_number("resource_interval_s", interval_s, low=0.0, low_open=True)
        self.bank = bank
        self.sink = sink
        self.writer = writer  # a TableWriter for the resources table, or None
        self.service = service
        self.faults = faults
        self.traffic = traffic  # the span bank, whose totals give the traffic metrics
        self.traffic_bank = traffic_bank or bank  # the traffic metrics' detectors
        self._last_totals = traffic.totals() if traffic is not None else (0, 0)
        self.interval_s = float(interval_s)
        self.samples = 0
        self.last: dict[str, float] = {}
        self._own_pauses = gc_pauses is None  # installed and removed with the sampler, else its owner's
        self.gc_pauses = gc_pauses or GcPauses()
        self._last_pause_ns = self.gc_pauses.total_ns
        self._last_cpu = time.process_time()
        self._last_wall = self._last_traffic_wall = time.monotonic()
        # with traffic to follow, tick faster and read the process metrics every ``process_every`` ticks
        self.process_every = 1
        if traffic is not None and self.interval_s > TRAFFIC_INTERVAL_S:
            self.process_every = round(self.interval_s / TRAFFIC_INTERVAL_S)
        self._ticks = 0
        self._worker: Worker[Any] = Worker("perfsdk-resources", tick=self._tick,
                                           tick_interval_s=self.interval_s / self.process_every, faults=faults)
        at_fork(self._after_fork)

    def start(self) -> None:
        if self._own_pauses:
            self.gc_pauses.install()
        self._last_cpu, self._last_wall = time.process_time(), time.monotonic()
        self._worker.start()

    def stop(self) -> None:
        if self._own_pauses:
            self.gc_pauses.uninstall()
        self._worker.shutdown()

    @property
    def running(self) -> bool:
        return self._worker.alive

    def _tick(self) -> None:
        with self.faults.guard("resource sampler"):
            self.sample()

    def read(self, process: bool = True) -> dict[str, float]:
        """Read the metrics now: the process's (``process``; CPU is averaged since their previous
        read) and the traffic (since its previous read)."""
        cpu, wall = time.process_time(), time.monotonic()
        values: dict[str, float] = {}
        if process:
            elapsed = max(wall - self._last_wall, 1e-9)
            values.update({
                CPU: 100.0 * (cpu - self._last_cpu) / elapsed,
                RSS: resident_mb(),
                THREADS: float(threading.active_count()),
                GC_PAUSE: (self.gc_pauses.total_ns - self._last_pause_ns) / 1e6,
            })
            self._last_pause_ns = self.gc_pauses.total_ns
            self._last_cpu, self._last_wall = cpu, wall
        if self.traffic is not None:
            elapsed = max(wall - self._last_traffic_wall, 1e-9)
            spans, errors = self.traffic.totals()
            new_spans, new_errors = spans - self._last_totals[0], errors - self._last_totals[1]
            values[SPAN_RATE] = new_spans / elapsed
            values[SPAN_ERRORS] = 100.0 * new_errors / new_spans if new_spans > 0 else 0.0
            self._last_totals, self._last_traffic_wall = (spans, errors), wall
        return values

    def sample(self) -> dict[str, float]:
        """Read the metrics and feed them to their detectors; returns what was read."""
        values = self.read(process=self._ticks % self.process_every == 0)
        self._ticks += 1
        now = datetime.now(timezone.utc)
        for metric, value in values.items():
            bank = self.traffic_bank if metric in (SPAN_RATE, SPAN_ERRORS) else self.bank
            for anomaly in bank.observe(metric, value, now):
                anomaly.details.update(source="resource", metric=metric)  # type: ignore[attr-defined]
                self.sink.publish(anomaly)
        if self.writer is not None:
            for metric, value in values.items():  # each row on its own: a failed write skips none of the others
                with self.faults.guard("resource export"):
                    self.writer.add({"timestamp": now, "service.name": self.service, "metric": metric,
                                     "value": value, "unit": UNITS[metric]})
        self.samples += 1
        self.last = values
        return values

    def _after_fork(self) -> None:
        """In a forked child, every baseline starts afresh (the worker restarts its own ticks): the
        child's CPU time starts near zero and its span bank empty, so the parent's would make the
        first sample's CPU hugely negative and its traffic wrong."""
        self._last_pause_ns = self.gc_pauses.total_ns
        self._last_cpu = time.process_time()
        self._last_wall = self._last_traffic_wall = time.monotonic()
        self._last_totals = (0, 0)
