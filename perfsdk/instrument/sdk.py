"""``perfsdk.init()``: put perfsdk inside an application, and the handle it returns."""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from perfsdk._runtime import (
    FAULTS, HOOKS, Faults, at_fork, check_bool, check_callable, check_choice, check_int, check_number, check_str,
    inside_perfsdk, log_quietly, long_lived_startup, owned_lock, park_shared_workers,
)
from perfsdk._version import __version__
from perfsdk.detect import DEFAULT_CONFIRM, Anomaly, resource_detectors, span_detectors, traffic_detectors
from perfsdk.export.options import FORMATS, SPAN_BYTES_ESTIMATE
from perfsdk.export.redact import Redactor
from perfsdk.instrument.bank import DetectorBank
from perfsdk.instrument.incidents import Incident, IncidentTracker
from perfsdk.instrument.processor import CallGraph, PerfSpanProcessor
from perfsdk.instrument.provider import add_first, tracer_provider as tracer_provider_for
from perfsdk.instrument.resources import GcPauses, ResourceSampler
from perfsdk.instrument.sink import AnomalySink

__all__ = ["PerfSDK", "init"]

log = logging.getLogger("perfsdk")

#: The most ``shutdown()`` waits for perfsdk's queued work, all of it (the span export's own
#: writing aside); the user's callbacks get one second of it (``USER_CALLBACKS``).
SHUTDOWN_TIMEOUT_S = 5.0
#: Of it, the most ``shutdown()`` waits for a span that was inside the processor's ``on_end`` as it
#: shut (another thread's): it stores and judges the span in microseconds, unless its export waits
#: for room (``export_on_full="block"``, 0.1 s). One still inside then is dropped, counted.
IN_FLIGHT_WAIT_S = 1.0


class PerfSDK:
    """The handle ``perfsdk.init()`` returns: counters, anomalies, incidents, shutdown."""

    def __init__(
        self, provider: TracerProvider, owns_provider: bool, processor: PerfSpanProcessor,
        sink: AnomalySink, sampler: ResourceSampler | None, faults: Faults,
        incidents: IncidentTracker, export: Any = None,
    ) -> None:
        self.tracer_provider = provider
        self.processor = processor
        self._bank, self._calls = processor.bank, processor.calls  # kept: a processor lets go at shutdown
        self.sampler = sampler
        self.faults = faults
        self._sink = sink
        self._incidents = incidents
        self.export = export
        self._owns_provider = owns_provider
        self._closed = False
        self._lock = owned_lock()
        self._handed: dict[str, threading.Event] = {}  # set once the work a signal handler asked for is done
        at_fork(self._after_fork)

    def anomalies(self) -> list[Anomaly]:
        """The most recent anomalies (bounded; ``stats()['anomalies']`` counts them all)."""
        return self._sink.recent()

    def incidents(self) -> list[Incident]:
        """Recent anomalies grouped into incidents, likely origin first."""
        return self._incidents.incidents()

    def stats(self) -> dict[str, Any]:
        """Counters: spans, errors, names, overflow, anomalies, drops and faults."""
        bank = self._bank
        spans, errors = bank.totals()
        return {
            "spans": spans,
            "span_errors": errors,
            "spans_invalid": self.processor.spans_invalid,  # ended before they started, or unreadably named
            "spans_after_shutdown": self.processor.spans_after_shutdown,  # ended once shut down: not recorded
            "span_names": len(bank.names()),
            "max_span_names": bank.max_names,
            "overflowed_spans": bank.overflowed,
            "anomalies": self._sink.total,
            "notifications_dropped": self._sink.notifications_dropped,
            "incident_members_dropped": self._incidents.dropped_members,
            "open_spans_untracked": self.processor.open_dropped,
            "call_edges_dropped": self._calls.dropped,
            "resource_samples": self.sampler.samples if self.sampler else 0,
            "faults": {**FAULTS.snapshot(), **self.faults.snapshot()},  # background jobs' too
            "export": self.export.stats() if self.export else None,
            "per_span": bank.summary(),
        }

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Deliver queued anomaly notifications, write and publish the Arrow files, and flush the
        tracer provider's exporters (if perfsdk made it).

        Called on a thread that is inside perfsdk -- a signal handler (a SIGTERM handler) that
        interrupted it, or a finalizer -- it cannot wait: perfsdk's work may wait for the lock that
        thread holds. The flush is handed to a thread of its own, which does it as soon as the
        interrupted code lets go, and False is returned at once (``_hand_over``)."""
        if inside_perfsdk():
            self._hand_over("flush", lambda: self._flush(timeout_millis))
            return False
        return self._flush(timeout_millis)

    def _flush(self, timeout_millis: int) -> bool:
        ok = self._sink.flush(timeout_millis / 1000.0)
        if self.export is not None:
            ok = self.export.flush(timeout_millis) and ok
        if self._owns_provider:
            ok = self.tracer_provider.force_flush(timeout_millis) and ok
        return ok

    def shutdown(self) -> None:
        """Flush and stop; safe to call more than once, from any thread (an ``on_anomaly``
        callback too). Queued notifications and callbacks are waited for ``SHUTDOWN_TIMEOUT_S``
        in all, the Arrow export's queued spans and decisions for its own 30 s
        (``arrow_export.CLOSE_TIMEOUT_S``: they are data); work still running then is left to
        finish on its daemon thread, counted.

        Called on a thread that is inside perfsdk (a signal handler that interrupted it), it is
        handed to a thread of its own, as ``force_flush`` is, and returns at once; a later
        ``shutdown()`` -- the one at the interpreter's exit too -- waits for what was handed over.

        From its start the handle is no longer the running one: an ``init()`` meanwhile (on another
        thread) starts perfsdk afresh instead of returning it. A span that was inside the processor
        on another thread as it shut is waited for (``IN_FLIGHT_WAIT_S``), then written; spans that
        end later are counted (``stats()["spans_after_shutdown"]``), not recorded."""
        if inside_perfsdk():
            self._hand_over("shutdown", self._shut_down)
            return
        for handed in list(self._handed.values()):  # (Events: a signal handler's shutdown() inside
            handed.wait(self._longest_shutdown_s())  # this wait may wait too)
        self._shut_down()

    def _longest_shutdown_s(self) -> float:
        """The most a shutdown waits: ``SHUTDOWN_TIMEOUT_S``, and the export's own for its writing."""
        if self.export is None:
            return SHUTDOWN_TIMEOUT_S
        from perfsdk.instrument.arrow_export import CLOSE_TIMEOUT_S  # (loaded with the export)

        return SHUTDOWN_TIMEOUT_S + CLOSE_TIMEOUT_S

    def _shut_down(self) -> None:
        global _HANDLE, _CLOSING
        with self._lock:
            if self._closed:
                return
            self._closed = True
        with _INIT_LOCK:  # from here on init() starts afresh: it never returns a handle shutting down
            if _HANDLE is self:
                _HANDLE = None
                _CLOSING = self  # (the exit hook still finds it, and waits for a shutdown handed over)
                HOOKS.clear()
                _unhook_sigterm()
        deadline = time.monotonic() + SHUTDOWN_TIMEOUT_S
        with self.faults.guard("shutdown"):
            if self.sampler is not None:
                self.sampler.stop()
            self.processor.shutdown()  # no span publishes an anomaly after this
            # a span inside on_end on another thread as it shut is let finish: its anomalies reach the
            # sink before it closes, its row the export before it closes (one later still is counted there)
            self.processor.wait_in_flight(min(IN_FLIGHT_WAIT_S, max(0.0, deadline - time.monotonic())))
            self._sink.close(max(0.0, deadline - time.monotonic()))
            self.processor.release()  # (if a span was still in on_end at shutdown: it has ended now)
            if self.export is not None:
                writing = time.monotonic()
                self.export.close()
                deadline += time.monotonic() - writing  # the export's writing has its own deadline
            if self._owns_provider:
                self._shut_provider()
        with _INIT_LOCK:
            if _CLOSING is self:
                _CLOSING = None
            successor = _HANDLE is not None
        if not successor:  # (a handle started meanwhile uses the shared workers: they stay)
            with self.faults.guard("shutdown"):  # no thread of perfsdk's outlives shutdown()
                park_shared_workers(max(0.0, deadline - time.monotonic()))

    def _shut_provider(self) -> None:
        """Shut down the provider perfsdk made -- unless an ``init()`` made while this shutdown ran
        joined it (OpenTelemetry sets the global provider once, so a new ``init()`` finds this one):
        shutting it would shut the new handle's processor with it, and nothing would be recorded.
        The new handle owns the provider then, and shuts it down in its turn. Decided and done under
        the init lock, so that no ``init()`` joins the provider between the two."""
        with _INIT_LOCK:
            successor = _HANDLE
            if successor is not None and successor.tracer_provider is self.tracer_provider:
                successor._owns_provider = True
                return
            self.tracer_provider.shutdown()

    def _after_fork(self) -> None:
        """In a forked child: no work is pending. A hand-over's thread stayed in the parent, and its
        Event, never set here, would hold the child's shutdown for its whole timeout and refuse the
        child's own hand-overs as pending."""
        self._handed = {}

    def _hand_over(self, what: str, work: Callable[[], Any]) -> None:
        """Run ``work`` (a flush, a shutdown) on a thread of its own: the calling thread holds one of
        perfsdk's locks (``perfsdk._runtime.locks``), and the work may wait for it. The thread gets it
        once the code the signal interrupted goes on (or unwinds: a handler's ``sys.exit()``).
        Counted (``stats()["faults"]["<what> inside perfsdk"]``); one at a time of each kind (a request
        made while one is pending is left to it)."""
        self.faults.count(f"{what} inside perfsdk")
        pending = self._handed.get(what)
        if pending is not None and not pending.is_set():
            return
        done = self._handed[what] = threading.Event()
        threading.Thread(target=self._run_handed_over, args=(what, work, done), name=f"perfsdk-{what}",
                         daemon=True).start()  # (an exit waits for a shutdown in its own shutdown())

    def _run_handed_over(self, what: str, work: Callable[[], Any], done: threading.Event) -> None:
        try:
            with self.faults.guard(f"{what} handed to a thread"):
                work()
        finally:
            done.set()


_HANDLE: PerfSDK | None = None  # the running handle (None from the moment its shutdown begins)
_CLOSING: PerfSDK | None = None  # a handle whose shutdown is under way
_INIT_LOCK = owned_lock()  # (shutdown takes it: a signal handler's must see it held)
_EXIT_HOOKED = False
_EXITED = False  # perfsdk's exit hook has run: the process is on its way out
_FINALIZED_PID = 0  # the multiprocessing child whose exit shutdown is registered with its finalizers


def _shutdown_at_exit() -> None:
    """At interpreter exit: the running handle, if any, is shut down -- its buffered spans and
    rows written -- as an explicit ``shutdown()`` would."""
    global _EXITED
    _EXITED = True
    handle = _HANDLE if _HANDLE is not None else _CLOSING  # (one shutting down: a shutdown handed over is waited for)
    if handle is not None:
        handle.shutdown()


def _shutdown_at_child_exit(shutdown: Callable[[], None]) -> None:
    """In a forked ``multiprocessing`` child, as it starts: the child ends with ``os._exit``, past
    ``atexit``, but runs multiprocessing's finalizers first (``util._exit_function``) -- the exit
    shutdown goes there too, bounded as ``shutdown()`` is. (Not from perfsdk's own fork hook: the
    child's start clears the finalizers registered before it, then runs these after-fork hooks.)"""
    global _FINALIZED_PID
    from multiprocessing.util import Finalize

    Finalize(None, shutdown, exitpriority=0)
    _FINALIZED_PID = os.getpid()


def _hook_sigterm() -> None:
    """``_on_sigterm`` as SIGTERM's handler, where SIGTERM would kill the process as it is (its
    default action) and a handler can be set (the main thread)."""
    try:
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL):
            signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError, AttributeError):  # no SIGTERM here, or not the main interpreter
        pass


def _unhook_sigterm() -> None:
    """SIGTERM's default action back, if perfsdk's handler is still the one set."""
    try:
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is _on_sigterm:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
    except (ValueError, OSError, AttributeError):
        pass


def _on_sigterm(signum: int, frame: Any) -> None:
    """SIGTERM, its default action perfsdk's: perfsdk shut down (its spans written, its files
    published), then the process dies by SIGTERM, as it would have. The main thread interrupted
    inside perfsdk (holding what a shutdown needs) cannot shut down here: a thread does, and sends
    the signal when done -- the application runs on meanwhile, as briefly as the shutdown takes."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM kills at once

    def shut_down_then_die() -> None:
        try:
            _shutdown_at_exit()
        finally:
            os.kill(os.getpid(), signal.SIGTERM)

    if inside_perfsdk():
        threading.Thread(target=shut_down_then_die, name="perfsdk-sigterm", daemon=True).start()
        return
    try:
        _shutdown_at_exit()
    finally:
        signal.raise_signal(signal.SIGTERM)


def _hook_child_exit() -> None:
    """An ``init()`` inside a ``multiprocessing`` child (a pool's initializer, a process's target) whose
    exit shutdown no after-fork hook registered -- perfsdk was not running when it forked -- registers
    it now: a fork or forkserver child ends with ``os._exit``, past ``atexit`` (it wrote nothing)."""
    import multiprocessing

    if _FINALIZED_PID != os.getpid() and multiprocessing.parent_process() is not None:
        _shutdown_at_child_exit(_shutdown_at_exit)


def init(
    service_name: str | None = None,
    *,
    tracer_provider: TracerProvider | None = None,
    detectors: Sequence[str] = ("default",),
    threshold: float | None = None,
    on_anomaly: Callable[[Anomaly], Any] | None = None,
    max_span_names: int = 1000,
    confirm: int = DEFAULT_CONFIRM,
    min_delta_ms: float = 1.0,
    min_ratio: float = 0.2,
    sample_resources: bool = True,
    resource_interval_s: float = 1.0,
    incident_window_s: float = 30.0,
    max_anomalies: int = 1000,
    meter_provider: Any = None,
    otlp_endpoint: str | None = None,
    export_dir: str | None = None,
    export_format: str = "arrow",
    export_queue_bytes: int = 64 * 2**20,
    export_on_full: str = "drop",
    redactor: Any = None,
    shutdown_on_sigterm: bool = True,
) -> PerfSDK:
    """Start perfsdk in this process and return its handle.

    perfsdk adds its span processor to ``tracer_provider``, or to the
    application's global OpenTelemetry SDK ``TracerProvider`` if it already has
    one; otherwise it creates one (resource from the standard ``OTEL_*``
    variables, ``OTEL_SERVICE_NAME`` included, unless ``service_name`` is given)
    and makes it global. ``otlp_endpoint`` (or ``OTEL_EXPORTER_OTLP_ENDPOINT``
    with ``otlp_endpoint="env"``) also exports spans over OTLP/HTTP from a
    provider perfsdk created.

    Parameters
    ----------
    detectors
        Which detectors watch each span name: ``"default"`` (``perfsdk.default_detector()``:
        alerts by likelihood, one per incident, after a learning period of 388 spans a
        name; a new name that appears as its caller turns slow is judged against the
        caller at once), ``"zscore"`` or ``"arima"`` (raw scores through the run rule,
        ``confirm``), or several.
    threshold
        Score threshold for them (default: each detector's own).
    on_anomaly
        Called with every ``Anomaly``, on perfsdk's callback thread (``on_decision``'s): one that
        blocks holds up only callbacks, and ``shutdown()`` waits one second for it (counted).
    meter_provider
        Where the ``perfsdk.anomalies`` counter goes (an OpenTelemetry ``MeterProvider``;
        default: the global one).
    max_span_names
        Distinct span names with detectors of their own; the rest share one.
    confirm
        Spans of a name in a row beyond the band before an anomaly is emitted: a raw
        detector's run, or the default detector's alert confirmed by the spans after it;
        also the fewest failed spans in a row that make an ``errors`` anomaly.
    min_delta_ms, min_ratio
        An anomalous span must also be a material change: at least
        ``min_delta_ms`` and ``min_ratio`` of the expected duration away from it.
    sample_resources, resource_interval_s
        Sample CPU, memory, threads and GC pauses every ``resource_interval_s``.
    incident_window_s
        Anomalies on related series (the same name, or a caller and its callee) starting
        within this many seconds of each other form one incident.
    export_dir, export_format, redactor
        Write spans, anomalies and resource samples to Arrow (or Parquet)
        files under ``export_dir`` (a relative one is resolved now: a later ``os.chdir``, a
        daemon's, moves nothing; see ``perfsdk.export``); span attributes
        pass through ``redactor`` (default: values under secret-naming keys and headers dropped;
        URL credentials and query values, secret ``key=value`` pairs and bearer tokens in text,
        SQL literals, e-mail addresses and card numbers redacted: docs/production.md says
        exactly what is and is not).
    export_queue_bytes, export_on_full
        The span export's queue bound (64 MiB, each chunk of spans at its measured size:
        75,000 spans of a dozen HTTP attributes, 350,000 small ones) and what
        happens when it is full: ``"drop"`` (counted in
        ``stats()["export"]["spans_dropped"]``, a metric, the log and the next
        file's metadata) or ``"block"`` (wait up to 0.1 s for room, then drop).
    shutdown_on_sigterm
        Where SIGTERM still has its default action (it kills the process past ``atexit``: a
        container's stop, uvicorn's exit, which re-raises it, lost the last spans and left the open
        files hidden), perfsdk's handler shuts perfsdk down, then dies by SIGTERM as the default would.
        Installed from the main thread only, never over a handler the application set; an
        explicit ``shutdown()`` puts the default back.

    A second ``init`` while perfsdk is running returns the running handle; one called while the
    running handle's ``shutdown()`` is under way on another thread starts perfsdk afresh (the handle
    shutting down records nothing more). ``init`` called while the interpreter exits (from an
    ``atexit`` hook) raises ``RuntimeError``: nothing it recorded could be written any more.
    """
    global _HANDLE
    factories = span_detectors(detectors, threshold)
    if on_anomaly is not None:
        check_callable("on_anomaly", on_anomaly)
    if meter_provider is not None and not callable(getattr(meter_provider, "get_meter", None)):
        raise TypeError(f"meter_provider must be an OpenTelemetry MeterProvider (with get_meter), "
                        f"got {meter_provider!r}")
    check_int("max_span_names", max_span_names, minimum=1)
    check_int("confirm", confirm, minimum=1)
    check_int("max_anomalies", max_anomalies, minimum=1)
    check_number("min_delta_ms", min_delta_ms, low=0.0)
    check_number("min_ratio", min_ratio, low=0.0)
    check_number("incident_window_s", incident_window_s, low=0.0)
    check_number("resource_interval_s", resource_interval_s, low=0.0, low_open=True)
    if service_name is not None and not check_str("service_name", service_name).strip():
        raise ValueError("service_name must name the service, got an empty string (None: from OTEL_SERVICE_NAME)")
    if tracer_provider is not None and (service_name is not None or otlp_endpoint is not None):
        raise ValueError("service_name and otlp_endpoint configure a TracerProvider perfsdk creates; "
                         "with tracer_provider=..., set them on your provider instead")
    if otlp_endpoint is not None:
        check_str("otlp_endpoint", otlp_endpoint)
    check_bool("sample_resources", sample_resources)
    check_bool("shutdown_on_sigterm", shutdown_on_sigterm)
    check_choice("export_format", export_format, FORMATS)
    check_int("export_queue_bytes", export_queue_bytes, minimum=SPAN_BYTES_ESTIMATE)
    check_choice("export_on_full", export_on_full, ("drop", "block"))
    if redactor is not None and not isinstance(redactor, Redactor):
        raise TypeError(f"redactor must be a perfsdk.export.Redactor, got {redactor!r}")
    if _HANDLE is None and _interpreter_exiting():
        raise RuntimeError("perfsdk.init() called while the interpreter is exiting (from an atexit hook?): "
                           "its threads would never run and nothing it records would be written; "
                           "call init() while the application starts")
    if export_dir is not None:
        export_dir = _usable_directory(export_dir)
    # Nothing above changed anything; nothing below is made global until all of it stood up.
    with _INIT_LOCK, long_lived_startup():  # what init makes lives as long as the process
        if _HANDLE is not None:
            log_quietly(log, logging.WARNING, "perfsdk.init() called again; returning the running handle")
            return _HANDLE
        faults = Faults()
        undo: list[Callable[[], Any]] = []  # what stood up so far is taken down if anything after fails
        try:
            span_bank = DetectorBank(factories, max_names=max_span_names, confirm=confirm,
                                     min_delta=min_delta_ms, min_ratio=min_ratio)
            provider, owns = tracer_provider_for(service_name, tracer_provider, otlp_endpoint, faults)
            if owns:
                undo.append(provider.shutdown)
            service = str(provider.resource.attributes.get("service.name", "unknown_service"))
            export = None
            if export_dir:
                from perfsdk.instrument.arrow_export import ArrowExport  # loads pyarrow: only when exporting

                export = ArrowExport(export_dir, service, export_format, redactor, faults,
                                     max_queue_bytes=export_queue_bytes, on_full=export_on_full,
                                     meter_provider=meter_provider)
                undo.append(export.close)
            calls = CallGraph()  # the processor learns it; the incidents rank by it, after shutdown too
            incidents = IncidentTracker(calls.ancestors, incident_window_s,
                                        max_pending=1000)  # grouped by the sink's worker: as many as its queue holds
            sink = AnomalySink(incidents, faults, on_anomaly, meter_provider, max_anomalies,
                               writer=export.anomalies if export else None, service=service)
            undo.append(sink.close)
            pauses = GcPauses()  # one gc callback: the pause metric and the slow spans' explanations
            undo.append(pauses.uninstall)
            processor = PerfSpanProcessor(span_bank, sink, faults, export=export, gc_pauses=pauses,
                                          incident_window_s=incident_window_s, calls=calls)
            undo.append(processor.shutdown)  # it stays in the provider: shut, it costs nothing
            add_first(provider, processor, faults)  # (a processor before it that raised hid spans from it)
            sampler = None
            if sample_resources:
                resource_bank = DetectorBank(resource_detectors(threshold), max_names=16, confirm=2)
                traffic_bank = DetectorBank(traffic_detectors(threshold), max_names=2, confirm=1)
                sampler = ResourceSampler(resource_bank, sink, faults, resource_interval_s,
                                          writer=export.resources if export else None, service=service,
                                          traffic=span_bank, gc_pauses=pauses, traffic_bank=traffic_bank)
                undo.append(sampler.stop)
                sampler.start()
        except BaseException:
            _take_down(undo)
            raise
        if owns:
            trace.set_tracer_provider(provider)
        _HANDLE = PerfSDK(provider, owns, processor, sink, sampler, faults, incidents, export)
        global _EXIT_HOOKED
        if not _EXIT_HOOKED:  # a script that ends without shutdown() keeps its spans (before OTel's own hook)
            atexit.register(_shutdown_at_exit)
            from multiprocessing.util import register_after_fork  # and so does a multiprocessing child

            register_after_fork(_shutdown_at_exit, _shutdown_at_child_exit)
            _EXIT_HOOKED = True
        _hook_child_exit()
        if shutdown_on_sigterm:
            _hook_sigterm()
        HOOKS.tracer = provider.get_tracer("perfsdk", __version__)
        HOOKS.decisions = export.add_decision if export is not None else None
        return _HANDLE


def _interpreter_exiting() -> bool:
    """Is the process on its way out: perfsdk's exit hook run, or the interpreter's ``atexit``
    hooks running on the main thread (marked stopped by then)? An ``init()`` now would start
    threads nobody joins and register an exit hook that never runs: nothing it records would
    be written."""
    main = threading.main_thread()
    return (_EXITED or sys.is_finalizing()
            or (threading.current_thread() is main and not main.is_alive()))


def _take_down(undo: list[Callable[[], Any]]) -> None:
    """A failed ``init()`` leaves nothing behind: what it stood up (the export's and the sampler's
    threads, the gc callback, a provider it created) is stopped, newest first."""
    for stop in reversed(undo):
        try:
            stop()
        except Exception:  # the error that failed init() is the one to raise
            log_quietly(log, logging.DEBUG, "perfsdk: %r failed while undoing a failed init()", stop, exc_info=True)


def _usable_directory(path: Any) -> str:
    """``path`` as a directory perfsdk can write to (created if missing), or a clear error now
    -- not a fault on every export later."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"export_dir must be a path (str or os.PathLike), got {path!r}")
    directory = os.path.abspath(os.fspath(path))  # a later os.chdir (a daemon's) moves no file
    try:
        os.makedirs(directory, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=directory, prefix=".perfsdk-probe-")
        probe.close()
    except OSError as exc:
        raise ValueError(f"export_dir {directory!r} cannot be used: {exc.strerror or exc}") from None
    return str(directory)
