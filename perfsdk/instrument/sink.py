"""AnomalySink: where emitted anomalies go, without blocking the application.

On the caller's thread an anomaly is only appended to a bounded list and to
the incident tracker. Logging, the OTel metric and the user's ``on_anomaly``
callback run on one dispatcher thread behind a bounded queue: a slow log
handler or callback delays other anomalies, never a request. A full queue
drops the notification and counts it.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from typing import Any, Callable

from perfsdk.detect import Anomaly
from perfsdk.instrument._guard import Faults
from perfsdk.instrument.incidents import IncidentTracker

anomaly_log = logging.getLogger("perfsdk.anomaly")


class AnomalySink:
    def __init__(
        self,
        incidents: IncidentTracker,
        faults: Faults,
        on_anomaly: Callable[[Anomaly], Any] | None = None,
        meter_provider: Any = None,
        max_anomalies: int = 1000,
        max_queue: int = 1000,
        writer: Any = None,
        service: str = "",
    ) -> None:
        from opentelemetry import metrics

        from perfsdk._version import __version__

        provider = meter_provider or metrics.get_meter_provider()
        meter = provider.get_meter("perfsdk", __version__)
        self._counter = meter.create_counter(
            "perfsdk.anomalies", unit="{anomaly}",
            description="Anomalies perfsdk detected, by series (span name or resource metric) and detector",
        )
        self.incidents = incidents
        self.faults = faults
        self.writer = writer  # a TableWriter for the anomalies table, or None
        self.service = service
        self.on_anomaly = on_anomaly
        self.total = 0  # anomalies published (anomalies are rare: a lock costs nothing here)
        self.notifications_dropped = 0
        self._count_lock = threading.Lock()
        self._recent: deque[Anomaly] = deque(maxlen=max_anomalies)
        self._max_queue = max_queue
        self._queue: queue.Queue[Anomaly | None] = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None
        self._closed = False
        self._start()

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="perfsdk-anomalies", daemon=True)
        self._thread.start()

    def publish(self, anomaly: Anomaly) -> None:
        """Record ``anomaly`` now; notify (log, metric, callback) in the background."""
        with self._count_lock:
            self.total += 1
        self._recent.append(anomaly)
        self.incidents.add(anomaly)
        if self._closed:
            return
        try:
            self._queue.put_nowait(anomaly)
        except queue.Full:
            with self._count_lock:
                self.notifications_dropped += 1

    def recent(self) -> list[Anomaly]:
        return list(self._recent)

    def _run(self) -> None:
        while True:
            anomaly = self._queue.get()
            try:
                if anomaly is None:
                    return
                self._notify(anomaly)
            finally:
                self._queue.task_done()

    def _notify(self, anomaly: Anomaly) -> None:
        with self.faults.guard("anomaly logging"):
            anomaly_log.warning("perfsdk anomaly: %s", anomaly)
        with self.faults.guard("anomaly metric"):
            self._counter.add(1, {
                "perfsdk.series": str(anomaly.details.get("series", "")),
                "perfsdk.detector": anomaly.detector.rsplit("[", 1)[-1].rstrip("]"),
                "perfsdk.source": str(anomaly.details.get("source", "")),
            })
        if self.writer is not None:
            from perfsdk.export.tables import anomaly_row

            with self.faults.guard("anomaly export"):
                self.writer.add(anomaly_row(anomaly, self.service))
        if self.on_anomaly is not None:
            with self.faults.guard("on_anomaly callback"):
                self.on_anomaly(anomaly)

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until queued notifications are delivered (or the timeout passes)."""
        done = threading.Event()

        def wait() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=wait, daemon=True).start()
        return done.wait(timeout_s)

    def close(self, timeout_s: float = 5.0) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._queue.put(None, timeout=timeout_s)
        except queue.Full:
            return
        if self._thread is not None:
            self._thread.join(timeout_s)

    def after_fork(self) -> None:
        self._count_lock = threading.Lock()
        self._recent.clear()
        self._queue = queue.Queue(maxsize=self._max_queue)
        if not self._closed:
            self._start()
