"""AnomalySink: where emitted anomalies go, without blocking the application.

On the caller's thread an anomaly is only appended to a bounded list and
queued for the incident tracker. Grouping it into incidents, logging, the OTel
metric and the Arrow row run on a background ``Worker`` behind a bounded
queue: a slow log handler delays other anomalies, never a request. The user's
``on_anomaly`` callback runs apart, on ``USER_CALLBACKS`` (as ``on_decision``
does): one that blocks holds up only the callbacks behind it, never perfsdk's
own notifications, and shutdown waits one second for it at most (then leaves
it running on its daemon thread, counted as a fault). A full queue drops the
notification (or the callback) and counts it.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import deque
from typing import Any, Callable

from perfsdk._runtime import USER_CALLBACKS, Faults, Worker, at_fork, call_guarded, owned_lock, suppressed
from perfsdk._version import __version__
from perfsdk.detect import Anomaly
from perfsdk.instrument.incidents import IncidentTracker

__all__ = ["AnomalySink"]

anomaly_log = logging.getLogger("perfsdk.anomaly")


class AnomalySink:
    """Records anomalies on the caller's thread; groups and notifies about them in the background."""

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
        self.callbacks_dropped = 0  # on_anomaly calls not queued: USER_CALLBACKS was full
        self._count_lock = owned_lock()  # taken by the notification thread too: see perfsdk._runtime.locks
        self._recent: deque[Anomaly] = deque(maxlen=max_anomalies)
        self._worker: Worker[Anomaly] = Worker("perfsdk-anomalies", self._notify_all, max_queue=max_queue,
                                               max_batch=64, faults=faults)
        self._closed = False
        at_fork(self._after_fork)

    @property
    def notifications_dropped(self) -> int:
        """Anomalies not notified (perfsdk's queue was full) or not handed to ``on_anomaly``."""
        return self._worker.dropped + self.callbacks_dropped

    def publish(self, anomaly: Anomaly) -> None:
        """Record ``anomaly`` now; group and notify (log, metric, export, callback) in the background."""
        with self._count_lock:
            self.total += 1
        self._recent.append(anomaly)
        self.incidents.add(anomaly)
        if not self._closed:
            self._worker.submit(anomaly)

    def recent(self) -> list[Anomaly]:
        return list(self._recent)

    def _notify_all(self, anomalies: list[Anomaly]) -> None:
        with self.faults.guard("incident grouping"):
            self.incidents.group_pending()  # before the callbacks: they may ask for incidents()
        with suppressed():  # perfsdk's own logging and export are not the application's work
            for anomaly in anomalies:
                self._notify(anomaly)

    def _notify(self, anomaly: Anomaly) -> None:
        # an anomaly names its span: the log line and the metric name it as the files do (a span
        # named after a raw request target carries its query)
        redact = _span_name_redaction(self.writer)
        with self.faults.guard("anomaly logging"):
            if anomaly_log.isEnabledFor(logging.WARNING):
                anomaly_log.warning("perfsdk anomaly: %s", _redacted_line(anomaly, redact))
        with self.faults.guard("anomaly metric"):
            self._counter.add(1, {
                "perfsdk.series": redact(str(anomaly.details.get("series", ""))),
                "perfsdk.detector": anomaly.detector.rsplit("[", 1)[-1].rstrip("]"),
                "perfsdk.source": str(anomaly.details.get("source", "")),
            })
        if self.writer is not None:
            from perfsdk.export.tables import anomaly_row  # loads pyarrow: only when exporting

            with self.faults.guard("anomaly export"):
                self.writer.add(anomaly_row(anomaly, self.service))
        if self.on_anomaly is not None and not USER_CALLBACKS.submit(
                functools.partial(call_guarded, self.on_anomaly, anomaly, self.faults, "on_anomaly callback")):
            with self._count_lock:
                self.callbacks_dropped += 1

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until queued notifications are delivered, ``on_anomaly`` calls included (or the
        timeout passes)."""
        deadline = time.monotonic() + timeout_s
        done = self._worker.flush(timeout_s)
        if self.on_anomaly is not None:
            done = USER_CALLBACKS.flush(max(0.0, deadline - time.monotonic())) and done
        return done

    def close(self, timeout_s: float = 5.0) -> None:
        """Deliver what is queued (within ``timeout_s``) and stop the worker. The ``on_anomaly``
        calls queued are not waited for here: ``park_shared_workers`` gives them their second."""
        if self._closed:
            return
        self._closed = True
        self._worker.shutdown(timeout_s)

    def _after_fork(self) -> None:
        self._count_lock = owned_lock()
        self._recent.clear()
        self.total = self.callbacks_dropped = 0  # the parent's anomalies are the parent's


def _span_name_redaction(writer: Any) -> Callable[[str], str]:
    """How span names are redacted: as the export's anomalies table redacts them (the user's
    ``redactor``), else -- nothing exported -- as the default ``Redactor`` would.

    >>> _span_name_redaction(None)("GET /reset?token=abc")
    'GET /reset?token=REDACTED'
    """
    redact = getattr(writer, "redact", None)
    return redact if redact is not None else _default_redaction()


def _redacted_line(anomaly: Anomaly, redact: Callable[[str], str]) -> str:
    """``str(anomaly)`` with the span's name in its detector (``zscore[GET /reset?token=abc]``)
    redacted on its own: redacting the whole line would let a URL in the name run on over the
    closing brackets."""
    text, detector = str(anomaly), anomaly.detector
    tail = f" [{detector}]"
    if not text.endswith(tail):
        return redact(text)
    name = detector.rstrip("]")  # "zscore[GET /reset?token=abc]", "GET /reset?token=abc [AlertPipeline]"
    return redact(text[: -len(tail)]) + f" [{redact(name)}{detector[len(name):]}]"


@functools.lru_cache(maxsize=1)
def _default_redaction() -> Callable[[str], str]:
    from perfsdk.export.redact import Redactor

    return Redactor().message
