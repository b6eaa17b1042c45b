"""The runtime layer: the worker, the fork-reset registry, suppressed callbacks,
argument validation -- and get_or_load's one load per key."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import perfsdk
from perfsdk import AdaptiveCache, ArimaDetector, CacheController
from perfsdk._native import layout
from perfsdk._runtime import (
    Faults, Worker, at_fork, call_user, check_int, check_number, long_lived_startup, replace_atomically, write_atomically,
)
from threads import in_child, wait_until

needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


# -- the worker -------------------------------------------------------------------------
def test_worker_is_bounded_counts_drops_and_flushes_with_a_deadline():
    release = threading.Event()
    worker = Worker("test-worker", max_queue=3, max_batch=2)
    assert worker.submit(release.wait)  # occupies the thread
    time.sleep(0.05)
    assert all(worker.submit(lambda: None) for _ in range(3))
    assert not worker.submit(lambda: None) and worker.dropped == 1  # full: dropped, counted
    assert worker.flush(0.05) is False  # the deadline passes while the first task blocks
    release.set()
    assert worker.flush(5.0) and worker.stats()["handled"] == 4
    worker.shutdown()
    assert not worker.submit(lambda: None) and not worker.alive


def test_an_item_submitted_as_a_parked_workers_thread_leaves_is_handled():
    """The lock-free path saw the parked thread (a blocked callback outliving shutdown) still set
    and queued behind it just as it left: the item waited for the next submit or flush. Here
    the thread has just left (what that race leaves behind)."""
    handled = threading.Event()
    worker = Worker("test-parked")
    leaving = threading.Thread(target=lambda: None)
    leaving.start()
    leaving.join()
    worker._thread, worker._parking = leaving, True
    assert worker.submit(handled.set)
    assert handled.wait(5.0)  # it waited for good
    worker.shutdown()


def test_a_failing_task_is_counted_and_the_worker_goes_on():
    faults = Faults()
    done = []
    worker = Worker("test-faulty", faults=faults, max_batch=1)
    worker.submit(lambda: 1 / 0)
    worker.submit(lambda: done.append(1))
    assert worker.flush(5.0) and done == [1] and faults.snapshot() == {"test-faulty": 1}
    worker.shutdown()


def test_a_task_raising_a_base_exception_is_counted_and_the_worker_goes_on():
    """``sys.exit()`` in an on_decision callback (or asyncio.CancelledError) killed the shared
    callback thread: nothing queued behind it ran again, and nothing counted it."""
    import asyncio
    import sys

    faults = Faults()
    done = []
    worker = Worker("test-exiting", faults=faults, max_batch=1)
    worker.submit(lambda: sys.exit("a callback decided to exit"))
    worker.submit(lambda: (_ for _ in ()).throw(asyncio.CancelledError()))
    worker.submit(lambda: done.append(1))
    assert worker.flush(5.0) and done == [1] and faults.snapshot() == {"test-exiting": 2}
    worker.shutdown()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the thread's end, on purpose
def test_a_worker_whose_thread_died_starts_another_on_the_next_submit():
    """A thread ended by an exception past the worker's guards (here counting the fault raises, as a
    logging handler may) was still taken as running: the lock-free submit queued to it for good."""
    class Exiting(Faults):
        def record(self, kind, exc):
            raise SystemExit("a logging handler exits")

    worker = Worker("test-dead-thread", faults=Exiting(), max_batch=1)
    assert worker.submit(lambda: 1 / 0)
    wait_until(lambda: not worker.alive)  # the thread ended
    handled = threading.Event()
    assert worker.submit(handled.set)
    assert handled.wait(5.0)
    worker.shutdown()


def test_shutdown_waits_for_a_stuck_user_callback_one_second_at_most_and_counts_it():
    """A blocked on_decision callback held sdk.shutdown() for 15 s (three 5 s waits on the one
    delivery worker); user callbacks now have their own worker, parked with a short deadline."""
    from perfsdk._runtime import FAULTS, USER_CALLBACKS, park_shared_workers

    release = threading.Event()
    before = FAULTS.snapshot().get("perfsdk-callbacks at shutdown", 0)
    assert USER_CALLBACKS.submit(release.wait)
    started = time.monotonic()
    try:
        assert park_shared_workers(30.0) is False  # perfsdk's own workers would get 30 s
        assert time.monotonic() - started < 10.0  # generous: it waits USER_CALLBACKS.park_timeout_s (1 s)
        assert FAULTS.snapshot()["perfsdk-callbacks at shutdown"] == before + 1
    finally:
        release.set()
    assert USER_CALLBACKS.flush(5.0)
    assert USER_CALLBACKS.submit(lambda: None) and USER_CALLBACKS.flush(5.0)  # works again after


def test_a_worker_flushed_from_its_own_thread_does_not_wait_for_itself():
    """sdk.shutdown() from inside an on_anomaly callback waited 10 s: a flush from the worker's own
    thread waited for the item that was calling it."""
    worker = Worker("test-self-flush")
    answers: list[bool] = []
    started = time.monotonic()
    assert worker.submit(lambda: answers.append(worker.flush(10.0)))
    assert worker.flush(30.0) and answers == [True]  # nothing else was queued
    assert time.monotonic() - started < 5.0  # generous: it took 10 s
    assert worker.submit(lambda: worker.shutdown(10.0)) and worker.flush(30.0)
    worker._thread and worker._thread.join(5.0)
    assert not worker.alive


def test_a_worker_shut_down_while_its_work_blocks_counts_it():
    faults = Faults()
    release = threading.Event()
    worker = Worker("test-stuck", faults=faults)
    try:
        assert worker.submit(release.wait)
        worker.shutdown(0.2)
        assert faults.snapshot() == {"test-stuck at shutdown": 1}  # it used to be left running, uncounted
    finally:
        release.set()


def inside_own_lock(lock, calls):
    """Run ``calls()`` on a thread that holds ``lock``, as a signal handler runs inside the call it
    interrupted; a call that waits for the lock its own thread holds fails the test, not hangs it."""
    found: list = []

    def interrupted():
        with lock:
            found.append(calls())

    thread = threading.Thread(target=interrupted, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "a call from inside the lock waited for the lock its own thread held"
    return found[0]


def test_a_worker_called_from_inside_its_own_lock_waits_for_nothing_and_loses_nothing():
    """A signal handler runs on the main thread between two bytecodes, wherever it is: inside a
    worker's submit, holding its lock. A flush from there (a SIGTERM handler's) waited for that lock
    for ever. From inside, flush returns at once (False: work is pending), submit queues the item
    without waking the thread, stats reads the counts as they stand, shutdown stops without waiting
    (counted); what was queued is handled once the lock is let go."""
    faults = Faults()
    release = threading.Event()
    done: list[int] = []
    worker = Worker("test-inside", faults=faults)
    try:
        assert worker.submit(release.wait)  # the thread busy -- once it has taken the item (a loaded
        deadline = time.monotonic() + 10  # machine can leave it queued a while: then two were counted)
        while worker.stats()["queued"] and time.monotonic() < deadline:
            time.sleep(0.001)
        found = inside_own_lock(worker._lock, lambda: (
            worker.submit(lambda: done.append(1)), worker.flush(5.0), worker.stats()["queued"], worker.park(5.0)))
        assert found == (True, False, 1, False)
        release.set()
        assert worker.flush(5.0) and done == [1] and worker.stats()["handled"] == 2
        inside_own_lock(worker._lock, lambda: worker.shutdown(5.0))
        assert faults.snapshot() == {"test-inside at shutdown": 1}
        assert not worker.submit(lambda: None)  # shut down
    finally:
        release.set()


def test_a_fault_counted_from_inside_a_count_is_not_waited_for_nor_lost():
    """A signal handler that counted a fault (a flush handed to a thread, say) while its thread was
    inside a count waited for the counts' lock for ever. It is queued, and counted by the next reader."""
    faults = Faults()
    seen = inside_own_lock(faults._lock, lambda: (
        faults.record("handler", RuntimeError("inside")), faults.count("handler"), faults.snapshot())[-1])
    assert seen == {"handler": 2} and faults.snapshot() == {"handler": 2} and faults.total() == 2


# -- the fork registry ------------------------------------------------------------------
class Resettable:
    def __init__(self):
        self.resets = 0
        at_fork(self._after_fork)

    def _after_fork(self):
        self.resets += 1


@needs_fork
def test_fork_registry_resets_live_objects_and_holds_them_weakly():
    import gc
    import weakref

    kept = Resettable()
    gone = weakref.ref(Resettable())
    gc.collect()
    assert gone() is None  # joining the registry keeps nothing alive
    assert in_child(lambda: kept.resets == 1)


@needs_fork
def test_a_worker_queue_does_not_follow_into_a_forked_child():
    release = threading.Event()
    ran = []
    worker = Worker("test-fork")
    worker.submit(release.wait)
    worker.submit(lambda: ran.append("parent's"))
    time.sleep(0.05)

    def child():
        worker.submit(lambda: ran.append("child's"))
        return worker.flush(5.0) and ran == ["child's"]

    assert in_child(child)
    release.set()
    assert worker.flush(5.0) and ran == ["parent's"]
    worker.shutdown()


@needs_fork
def test_a_forked_childs_worker_and_anomaly_sink_count_from_zero():
    """A child's stats()['notifications_dropped'] carried the parent's drops: the worker's
    fork reset emptied its queue but kept its handled and dropped counts."""
    from perfsdk.detect import Anomaly
    from perfsdk.instrument.incidents import IncidentTracker
    from perfsdk.instrument.sink import AnomalySink

    release = threading.Event()

    class BlockedTracker(IncidentTracker):  # holds the sink's worker, so its queue fills
        def group_pending(self):
            release.wait(10.0)
            super().group_pending()

    worker = Worker("test-fork-counts", max_queue=1)
    sink = AnomalySink(BlockedTracker(lambda name: set()), Faults(), max_queue=1)
    try:
        assert worker.submit(lambda: None) and worker.flush(5.0)  # handled: 1
        worker.submit(release.wait)
        for index in range(3):  # one handled (blocked), one queued at most: the rest dropped
            worker.submit(lambda: None)
            sink.publish(Anomaly(detector="z", index=index, value=9.0, expected=1.0, std=1.0, score=8.0,
                                 threshold=3.0))
        assert worker.handled == 1 and worker.dropped >= 1 and sink.notifications_dropped >= 1

        def child():
            fresh = (worker.handled, worker.dropped, sink.total, sink.notifications_dropped) == (0, 0, 0, 0)
            assert worker.submit(lambda: None) and worker.flush(5.0)
            return fresh and worker.stats() == {"submitted": 1, "handled": 1, "dropped": 0, "queued": 0}

        assert in_child(child)
        assert worker.handled == 1 and worker.dropped >= 1 and sink.notifications_dropped >= 1  # the parent's kept
    finally:
        release.set()
        worker.shutdown()
        sink.close()


@needs_fork
def test_a_cache_whose_lock_was_held_at_fork_works_in_the_child():
    """A thread inside the cache (a slow Python __hash__) when another thread forks:
    without the reset, the child's first get would wait forever for a thread it lacks."""
    inside, release = threading.Event(), threading.Event()

    class SlowKey:
        def __hash__(self):
            inside.set()
            release.wait(10)
            return 1

        def __eq__(self, other):
            return self is other

    cache = AdaptiveCache(capacity=100, controller=None)
    cache["a"] = 1
    holder = threading.Thread(target=lambda: cache.get(SlowKey()))
    holder.start()
    inside.wait(5)

    def child():
        cache.put("b", 2)  # would hang here
        cache.check_invariants() if hasattr(cache, "check_invariants") else None
        return cache.get("b") == 2 and "a" not in cache  # emptied: the held operation may have torn it

    try:
        assert in_child(child)
    finally:
        release.set()
        holder.join()
    assert cache.get("a") == 1  # the parent keeps its entries


@needs_fork
def test_a_key_being_loaded_by_another_thread_at_fork_is_loaded_again_in_the_child():
    """A thread inside get_or_load's loader when another thread forks: the child's caller of
    that key would wait for good for a load that does not run there."""
    inside, release = threading.Event(), threading.Event()
    cache = AdaptiveCache(capacity=100, controller=None)

    def slow(key):
        inside.set()
        release.wait(10)
        return "parent's"

    loader = threading.Thread(target=lambda: cache.get_or_load("cfg", slow))
    loader.start()
    inside.wait(5)

    def child():
        return cache.get_or_load("cfg", lambda key: "child's") == "child's"

    try:
        assert in_child(child)
    finally:
        release.set()
        loader.join()
    assert cache["cfg"] == "parent's"


@needs_fork
def test_an_arima_fit_in_flight_at_fork_is_asked_again_in_the_child():
    from perfsdk.detect._fitting import FITS

    rng = np.random.default_rng(3)
    y = 100 + np.cumsum(rng.normal(0, 1, 600))
    started, release = threading.Event(), threading.Event()
    FITS.submit(lambda: (started.set(), release.wait(10)))  # hold the parent's fit worker
    started.wait(5)
    det = ArimaDetector(order=(1, 1, 0), warmup=200)
    det.update_many(y[:300])  # asks for a fit at 200: queued behind the held one

    def child():
        det.wait_for_fits()
        return det.model is not None and det.fits == 1

    try:
        assert det.fits == 0  # the fit is in flight (a quick stand-in model scores meanwhile)
        assert in_child(child)
    finally:
        release.set()
    det.wait_for_fits()
    assert det.fits == 1


# -- callbacks --------------------------------------------------------------------------
def test_user_callbacks_run_with_instrumentation_suppressed():
    seen = []
    call_user(lambda: seen.append(otel_context.get_value(otel_context._SUPPRESS_INSTRUMENTATION_KEY)))
    assert seen == [True] and otel_context.get_value(otel_context._SUPPRESS_INSTRUMENTATION_KEY) is None


def test_spans_started_inside_on_anomaly_are_not_recorded():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("app")

    def on_anomaly(anomaly):
        # what an instrumented HTTP client does: it checks the key before making a span
        if not otel_context.get_value(otel_context._SUPPRESS_INSTRUMENTATION_KEY):
            tracer.start_span("POST /webhook").end()

    sdk = perfsdk.init(tracer_provider=provider, on_anomaly=on_anomaly, confirm=1, sample_resources=False,
                       detectors=("zscore",))
    try:
        for i in range(60):
            start = 10**18 + i * 10**9
            tracer.start_span("GET /slow", start_time=start).end(end_time=start + (10**9 if i == 59 else 10**7))
        sdk.force_flush()
        assert sdk.stats()["anomalies"] >= 1
        assert "POST /webhook" not in {s.name for s in exporter.get_finished_spans()}
    finally:
        sdk.shutdown()


# -- validation -------------------------------------------------------------------------
def test_a_wrong_type_is_a_type_error_and_a_wrong_value_a_value_error():
    with pytest.raises(TypeError, match="window must be an integer, got True"):
        check_int("window", True)
    with pytest.raises(ValueError, match=r"step must be a finite number in \(1, 16\], got 1"):
        check_number("step", 1, low=1.0, high=16.0, low_open=True)
    with pytest.raises(TypeError, match="interval must be an integer"):
        CacheController(interval=1.5)
    with pytest.raises(TypeError, match="window must be an integer"):
        perfsdk.ZScoreDetector(window="64")


# -- get_or_load ------------------------------------------------------------------------
def test_get_or_load_loads_once_while_sixteen_threads_wait():
    cache = AdaptiveCache(capacity=100, controller=None)
    loads, gate = [], threading.Barrier(16)

    def slow_loader(key):
        loads.append(key)
        time.sleep(0.2)  # everyone else arrives while this runs
        return key * 2

    def caller(results):
        gate.wait()
        results.append(cache.get_or_load(21, slow_loader))

    results: list[int] = []
    threads = [threading.Thread(target=caller, args=(results,)) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert loads == [21] and results == [42] * 16


def test_a_failed_load_reaches_every_waiter_and_caches_nothing():
    cache = AdaptiveCache(capacity=100, controller=None)
    gate = threading.Barrier(8)
    calls = []

    def failing(key):
        calls.append(key)
        time.sleep(0.2)
        raise ConnectionError("database down")

    errors = []

    def caller():
        gate.wait()
        try:
            cache.get_or_load("k", failing)
        except ConnectionError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(errors) == 8 and "k" not in cache
    assert cache.get_or_load("k", lambda key: "up again") == "up again"  # the next call loads anew


def test_a_loader_that_loads_its_own_key_gets_an_error_not_a_deadlock():
    cache = AdaptiveCache(capacity=10, controller=None)
    with pytest.raises(RuntimeError, match="inside its own loader"):
        cache.get_or_load("k", lambda key: cache.get_or_load(key, str))


def test_layout_constants_come_from_one_module():
    from perfsdk.adapt.cache_policy import GHOST_BANDS

    assert GHOST_BANDS == layout.CACHE_GHOST_BANDS


def test_cached_functions_run_once_per_arguments_while_callers_wait():
    calls = []
    gate = threading.Barrier(8)

    @perfsdk.cached(maxsize=16, controller=None)
    def slow_price(sku, currency="EUR"):
        calls.append((sku, currency))
        time.sleep(0.2)
        return f"{sku}:{currency}"

    results = []

    def caller():
        gate.wait()
        results.append(slow_price("A-1", currency="USD"))

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [("A-1", "USD")] and results == ["A-1:USD"] * 8


# -- the fixes of the CLI review ---------------------------------------------------------
def test_a_number_too_large_for_a_float_is_a_value_error_naming_it():
    """``float(10**400)`` raised OverflowError out of the public API (neither TypeError nor ValueError)."""
    from fractions import Fraction

    for huge in (10**400, -(10**400), Fraction(10**400, 3)):
        with pytest.raises(ValueError, match="^threshold must be a finite number > 0, got a number too large"):
            check_number("threshold", huge, low=0.0, low_open=True)
    assert check_number("timeout_s", 10**400, finite=False) == float("inf")  # an infinity where one is allowed
    with pytest.raises(ValueError, match="^alpha must be"):
        perfsdk.QLearner(4, 2, alpha=10**400)


def test_two_threads_replacing_one_file_each_write_their_own_temporary(tmp_path):
    """The temporary was named for the process only: two threads shared it, one's rename took the
    other's file (FileNotFoundError) and readers saw a mix of both writes."""
    target = tmp_path / "q.json"
    both_written = threading.Barrier(2, timeout=5)
    temporaries, errors = [], []

    def replace(payload):
        def write(tmp):
            tmp.write_text(payload)
            temporaries.append(tmp)
            both_written.wait()  # both temporaries written before either is renamed

        try:
            replace_atomically(target, write)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=replace, args=(payload,)) for payload in ("A" * 1000, "B" * 1000)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(set(temporaries)) == 2
    assert target.read_text() in ("A" * 1000, "B" * 1000) and list(tmp_path.iterdir()) == [target]


def test_atomic_writes_take_any_legal_name_give_opens_mode_and_clean_up_a_failure(tmp_path):
    long_name = tmp_path / ("r" * 245 + ".json")  # 250 bytes: legal, but its temporary was longer than 255
    assert write_atomically(long_name, "{}").read_text() == "{}"
    plain = tmp_path / "plain"
    plain.write_text("")  # the mode a new file gets (0o666 less the umask), not mkstemp's 0o600
    assert long_name.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777

    def fail(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        replace_atomically(tmp_path / "x.json", fail)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([long_name.name, "plain"])


@needs_fork
def test_a_fork_during_another_threads_start_up_leaves_the_childs_collector_on():
    """The start-up's thread does not exist in the child, so it never ended there: the collector it
    paused stayed off for good and its depth kept every later start-up from acting."""
    import gc

    import perfsdk._runtime.startup as startup

    gc.collect()  # start-up pauses the collector only once the process has had a full collection
    inside, leave = threading.Event(), threading.Event()

    def start_up():
        with long_lived_startup():
            inside.set()
            leave.wait(5)

    thread = threading.Thread(target=start_up)
    thread.start()
    try:
        assert inside.wait(5) and not gc.isenabled()  # paused by the other thread's start-up

        def child():
            with long_lived_startup():
                pass
            return gc.isenabled() and startup._depth == 0

        assert in_child(child)
    finally:
        leave.set()
        thread.join()
    assert gc.isenabled()


def test_lazy_names_example_holds_in_a_fresh_process():
    """Its example used json without importing it (a KeyError where json was not loaded yet)."""
    import subprocess
    import sys

    code = "import doctest, perfsdk._runtime.lazy as m; raise SystemExit(doctest.testmod(m).failed)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_worker_submitted_counts_the_batch_being_handled():
    """``submitted`` counted handled and queued items only: 3, then 0 while they ran, then 3."""
    started, release = threading.Event(), threading.Event()
    worker = Worker("test-stats")

    def slow():
        started.set()
        release.wait(5)

    for _ in range(3):
        assert worker.submit(slow)
    assert started.wait(5)
    assert worker.stats()["submitted"] == 3 and worker.stats()["handled"] == 0
    release.set()
    assert worker.flush(5) and worker.stats() == {"submitted": 3, "handled": 3, "dropped": 0, "queued": 0}
    worker.shutdown()


# -- logging that fails ------------------------------------------------------------------
def test_a_log_handler_that_raises_costs_a_count_not_the_caller_nor_a_worker_thread(monkeypatch):
    """perfsdk's first-fault log line ran the application's log handlers unguarded: one that raised
    sent perfsdk's error into the application's code, and out of a worker into threading.excepthook."""
    import logging

    class Broken(logging.Handler):
        def emit(self, record):
            raise RuntimeError("log sink down")

    hooked = []
    monkeypatch.setattr(threading, "excepthook", hooked.append)
    handler = Broken()
    logging.getLogger("perfsdk").addHandler(handler)
    worker = Worker("test-broken-log", faults=Faults())
    try:
        faults = Faults()
        faults.record("demo", ValueError("boom"))  # logged (the first of its kind): the handler raises
        assert faults.snapshot() == {"demo": 1, "perfsdk logging": 1}
        assert worker.submit(lambda: 1 / 0) and worker.flush(5.0)  # counted, logged: the handler raises
        assert worker.submit(lambda: None) and worker.flush(5.0)
        assert worker.stats()["handled"] == 2 and hooked == []
        assert worker.faults.snapshot() == {"test-broken-log": 1, "perfsdk logging": 1}
    finally:
        logging.getLogger("perfsdk").removeHandler(handler)
        worker.shutdown()


@needs_fork
def test_a_log_handler_that_raises_stops_no_fork_reset():
    """A reset that fails in a forked child is logged; a log handler that raised there skipped every
    reset after it (the child kept the parent's held locks)."""
    import logging

    class Broken(logging.Handler):
        def emit(self, record):
            raise RuntimeError("log sink down")

    class FailsToReset:
        def __init__(self):
            at_fork(self._after_fork)

        def _after_fork(self):
            raise ValueError("a broken reset")

    failing, later = FailsToReset(), Resettable()
    handler = Broken()
    logging.getLogger("perfsdk").addHandler(handler)
    try:
        assert in_child(lambda: later.resets == 1)
    finally:
        logging.getLogger("perfsdk").removeHandler(handler)
        del failing  # (registered weakly: alive until here)
