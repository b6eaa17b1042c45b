"""Instrumentation: init, @monitor, the span processor, anomalies, incidents, resources."""

from __future__ import annotations

import asyncio
import functools
import gc
import inspect
import logging
import math
import os
import threading
import time
import types

import numpy as np
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import perfsdk
from perfsdk import ArimaDetector, ZScoreDetector
from perfsdk._runtime import Faults
from perfsdk.detect.presets import resource_detectors
from perfsdk.instrument import DetectorBank, PerfSpanProcessor, resources
from perfsdk.instrument.incidents import IncidentTracker
from perfsdk.instrument.sink import AnomalySink


@pytest.fixture
def traced():
    """A TracerProvider with an in-memory exporter, and perfsdk initialised on it."""
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    seen: list = []
    sdk = perfsdk.init(tracer_provider=provider, on_anomaly=seen.append, detectors=("zscore",),
                       sample_resources=False, meter_provider=MeterProvider(metric_readers=[reader]))
    yield sdk, exporter, reader, seen
    sdk.shutdown()


def spans_by_name(exporter):
    return {s.name: s for s in exporter.get_finished_spans()}


def test_monitor_traces_sync_async_and_generators(traced):
    sdk, exporter, _, _ = traced

    @perfsdk.monitor
    def plain(x, *, scale=2):
        """Doc."""
        return x * scale

    @perfsdk.monitor("co", attributes={"tier": "gold"})
    async def co(x):
        await asyncio.sleep(0)
        return plain(x)

    @perfsdk.monitor("gen")
    def gen(n):
        for i in range(n):
            yield plain(i)
        return "done"

    @perfsdk.monitor("agen")
    async def agen(n):
        for i in range(n):
            await asyncio.sleep(0)
            yield plain(i)

    async def consume():
        return [x async for x in agen(3)]

    assert plain(3) == 6 and plain.__doc__ == "Doc." and plain.__name__ == "plain"
    assert inspect.signature(plain) == inspect.signature(plain.__wrapped__)
    assert asyncio.run(co(4)) == 8
    assert list(gen(3)) == [0, 2, 4]
    assert asyncio.run(consume()) == [0, 2, 4]
    spans = exporter.get_finished_spans()
    names = [s.name for s in spans]
    assert names.count("co") == 1 and names.count("gen") == 1 and names.count("agen") == 1
    by_id = {s.context.span_id: s for s in spans}
    # calls made inside the traced bodies are children of their spans
    for parent in ("co", "gen", "agen"):
        children = [s for s in spans if s.parent and by_id.get(s.parent.span_id, None) is not None
                    and by_id[s.parent.span_id].name == parent]
        assert children and all(c.name.endswith("plain") for c in children), parent
    assert spans_by_name(exporter)["co"].attributes["tier"] == "gold"
    # between generator steps the caller's context does not see the generator's span
    g = gen(2)
    next(g)
    with sdk.tracer_provider.get_tracer("t").start_as_current_span("outside"):
        pass
    assert spans_by_name(exporter)["outside"].parent is None
    g.close()
    assert sdk.stats()["spans"] == len(exporter.get_finished_spans())


def test_exceptions_are_recorded_and_reraised_unchanged(traced):
    _, exporter, _, _ = traced
    boom = KeyError("missing")

    @perfsdk.monitor("fails")
    def fails():
        raise boom

    @perfsdk.monitor("gen_fails")
    def gen_fails():
        yield 1
        raise boom

    with pytest.raises(KeyError) as caught:
        fails()
    assert caught.value is boom
    with pytest.raises(KeyError):
        list(gen_fails())
    for name in ("fails", "gen_fails"):
        span = spans_by_name(exporter)[name]
        assert span.status.status_code is StatusCode.ERROR
        assert span.events[0].name == "exception"
    assert traced[0].stats()["span_errors"] == 2


def test_uninitialised_monitor_calls_straight_through():
    @perfsdk.monitor
    def f(x):
        return x + 1

    assert f(1) == 2  # no provider, no span, no error


def test_slow_span_is_flagged_explained_and_grouped(traced):
    sdk, _, reader, seen = traced
    delay = {"db": 0.0005}

    @perfsdk.monitor("db.query")
    def db():
        time.sleep(delay["db"])

    @perfsdk.monitor("GET /checkout")
    def checkout():
        db()

    @perfsdk.monitor("GET /home")
    def home():
        time.sleep(0.0005)

    for _ in range(60):
        checkout()
        home()
    delay["db"] = 0.03
    for _ in range(5):
        checkout()
        home()
    assert sdk.force_flush()
    flagged = {a.details["series"] for a in sdk.anomalies()}
    assert flagged == {"db.query", "GET /checkout"}
    a = next(a for a in sdk.anomalies() if a.details["series"] == "db.query")
    assert a.value > 25 and a.expected < 10 and a.score > a.threshold
    assert a.details["source"] == "span" and len(a.details["trace_id"]) == 32
    assert [x.detector for x in seen] == [x.detector for x in sdk.anomalies()]  # the callback saw them
    (incident,) = sdk.incidents()
    assert incident.origin.details["series"] == "db.query"  # the callee, not its caller
    text = str(incident)
    assert "Likely origin: 'db.query'" in text and "called by 'GET /checkout'" in text
    points = [p for rm in reader.get_metrics_data().resource_metrics for sm in rm.scope_metrics
              for m in sm.metrics if m.name == "perfsdk.anomalies" for p in m.data.data_points]
    assert sum(p.value for p in points) == 2
    assert {p.attributes["perfsdk.series"] for p in points} == flagged


def test_anomalies_are_logged(traced, caplog):
    sdk, _, _, _ = traced
    tracer = sdk.tracer_provider.get_tracer("t")
    with caplog.at_level(logging.WARNING, logger="perfsdk.anomaly"):
        t0 = time.time_ns()
        for i in range(40):  # exact durations: a busy machine cannot fake or hide the anomaly
            start = t0 + i * 10**8
            tracer.start_span("job", start_time=start).end(end_time=start + (200_000 if i < 35 else 20_000_000))
        sdk.force_flush()
    assert "perfsdk anomaly" in caplog.text and "job" in caplog.text


def test_callback_fault_is_counted_not_raised():
    provider = TracerProvider()
    sdk = perfsdk.init(tracer_provider=provider, sample_resources=False, confirm=1, detectors=("zscore",),
                       on_anomaly=lambda a: 1 / 0)
    try:
        tracer = provider.get_tracer("t")
        t0 = time.time_ns()
        for i in range(30):
            start = t0 + i * 10**8
            tracer.start_span("x", start_time=start).end(end_time=start + (200_000 if i < 25 else 20_000_000))
        sdk.force_flush()
        assert sdk.stats()["faults"] == {"on_anomaly callback": sdk.stats()["anomalies"]}
    finally:
        sdk.shutdown()


def test_processor_fault_is_counted_and_the_span_still_ends():
    made = []

    def broken(name):  # the bank calls it once as it is made, to check it; it breaks after that
        made.append(name)
        if len(made) > 1:
            raise RuntimeError("detector factory broke")
        return ZScoreDetector(name=name)

    faults = Faults()
    sink = AnomalySink(IncidentTracker(lambda n: set()), faults)
    processor = PerfSpanProcessor(DetectorBank({"broken": broken}), sink, faults)
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(processor)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("t").start_as_current_span("request"):
        pass
    assert len(exporter.get_finished_spans()) == 1
    assert faults.snapshot() == {"span processor on_end": 1}
    sink.close()


def test_cardinality_explosion_stays_within_the_cap():
    provider = TracerProvider()
    sdk = perfsdk.init(tracer_provider=provider, sample_resources=False, max_span_names=500)
    try:
        tracer = provider.get_tracer("t")
        for i in range(100_000):
            tracer.start_span(f"GET /users/{i}").end()
        stats = sdk.stats()
        assert stats["spans"] == 100_000
        assert stats["span_names"] == 501  # the cap plus the shared overflow series
        assert stats["overflowed_spans"] == 100_000 - 500
        assert stats["per_span"]["(other names)"]["count"] == 100_000 - 500
        assert len(sdk.processor._open) == 0
    finally:
        sdk.shutdown()


def test_eight_threads_exact_counts_no_faults_bounded_state():
    provider = TracerProvider()
    sdk = perfsdk.init(tracer_provider=provider, sample_resources=False)
    tracer = provider.get_tracer("t")
    errors: list[BaseException] = []

    def work(k):  # 50,000 spans a thread: 25,000 parents, each with a child
        try:
            for i in range(25_000):
                with tracer.start_as_current_span(f"op{i % 4}"):
                    with tracer.start_as_current_span(f"child{k % 2}"):
                        pass
        except BaseException as exc:  # pragma: no cover - the assertion reports it
            errors.append(exc)

    try:
        threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stats = sdk.stats()
        assert not errors and stats["faults"] == {}
        assert stats["spans"] == 8 * 50_000
        assert {n: s["count"] for n, s in stats["per_span"].items()} == {
            **{f"op{j}": 8 * 25_000 // 4 for j in range(4)}, "child0": 100_000, "child1": 100_000
        }
        assert len(sdk.processor._open) == 0 and len(sdk.anomalies()) <= 1000
    finally:
        sdk.shutdown()


def test_shutdown_is_idempotent_and_init_twice_returns_the_handle():
    provider = TracerProvider()
    sdk = perfsdk.init(tracer_provider=provider)
    assert perfsdk.init(tracer_provider=provider) is sdk
    assert sdk.sampler is not None and sdk.sampler.running
    sdk.shutdown()
    sdk.shutdown()
    assert not sdk.sampler.running

    @perfsdk.monitor
    def f():
        return 1

    assert f() == 1 and sdk.stats()["spans"] == 0


@pytest.mark.parametrize(
    "kwargs,argument,error",
    [({"detectors": ["lstm"]}, "detectors", ValueError), ({"threshold": -1}, "threshold", ValueError),
     ({"on_anomaly": 3}, "on_anomaly", TypeError), ({"max_span_names": 0}, "max_span_names", ValueError),
     ({"confirm": 0}, "confirm", ValueError), ({"min_ratio": -0.1}, "min_ratio", ValueError),
     ({"confirm": "3"}, "confirm", TypeError), ({"threshold": "high"}, "threshold", TypeError),
     ({"tracer_provider": object()}, "tracer_provider", TypeError)],
)
def test_bad_init_arguments_name_the_argument(kwargs, argument, error):
    """A wrong type is a TypeError, a wrong value a ValueError; both name the argument."""
    with pytest.raises(error, match=argument):
        perfsdk.init(**kwargs)


def test_resource_sampler_flags_a_cpu_spike_and_a_memory_jump(monkeypatch):
    """The sampler's clocks are this test's (a busy loop's share of a CPU is the machine's load's
    to decide); the memory is real."""
    clock = {"wall": 0.0, "cpu": 0.0}
    monkeypatch.setattr(resources, "time", types.SimpleNamespace(
        monotonic=lambda: clock["wall"], process_time=lambda: clock["cpu"], perf_counter_ns=time.perf_counter_ns))
    faults = Faults()
    sink = AnomalySink(IncidentTracker(lambda n: set()), faults)
    try:
        bank = DetectorBank({"zscore": lambda n: ZScoreDetector(window=30, warmup=10, threshold=4.0, name=n)},
                            confirm=2)
        sampler = resources.ResourceSampler(bank, sink, faults, interval_s=1.0)

        def sample(busy: float) -> None:  # one second, this share of it on the CPU
            clock["wall"] += 1.0
            clock["cpu"] += busy
            sampler.sample()

        for k in range(15):
            sample(0.01 + 0.002 * (k % 3))
        for _ in range(2):
            sample(0.95)
        ballast = bytearray(300 * 2**20)
        ballast[:: 4096] = b"x" * len(ballast[:: 4096])  # touch every page so it is resident
        for _ in range(2):
            sample(0.01)
        flagged = {a.details["metric"] for a in sink.recent()}
        assert resources.CPU in flagged and resources.RSS in flagged
        cpu = next(a for a in sink.recent() if a.details["metric"] == resources.CPU)
        assert cpu.value > 50 and cpu.expected < 30 and cpu.details["source"] == "resource"
        del ballast
    finally:
        sink.close()


def test_resource_sampler_follows_the_traffic_a_surge_and_failing_requests(monkeypatch):
    """Fast errors slow no span: the share of failed spans is a stream of its own, as is the rate."""
    ticks = iter(range(10**6))  # the sampler's clock: one second a sample, whatever this machine does
    monkeypatch.setattr(resources, "time", types.SimpleNamespace(
        monotonic=lambda: float(next(ticks)), process_time=time.process_time, perf_counter_ns=time.perf_counter_ns))
    faults = Faults()
    sink = AnomalySink(IncidentTracker(lambda n: set()), faults)
    spans = DetectorBank({"zscore": lambda n: ZScoreDetector(window=30, warmup=10, name=n)})
    bank = DetectorBank(resource_detectors(), confirm=2)
    sampler = resources.ResourceSampler(bank, sink, faults, interval_s=1.0, traffic=spans)
    rng = np.random.default_rng(3)

    def interval(requests: int, failing: float) -> dict[str, float]:
        for _ in range(requests):
            spans.observe("GET /pay", float(rng.normal(10, 1)), error=bool(rng.random() < failing))
        return sampler.sample()

    for _ in range(20):
        interval(int(rng.poisson(40)), 0.01)
    before = len(sink.recent())
    surge = [interval(int(rng.poisson(160)), 0.01) for _ in range(3)]
    assert all(v[resources.SPAN_RATE] > 100 for v in surge)  # per second of the sampler's own clock
    for _ in range(10):
        interval(int(rng.poisson(40)), 0.01)
    outage = [interval(int(rng.poisson(40)), 0.5) for _ in range(3)]
    assert all(v[resources.SPAN_ERRORS] > 25 for v in outage)
    flagged = {a.details["metric"] for a in sink.recent()[before:]}
    assert flagged == {resources.SPAN_RATE, resources.SPAN_ERRORS}
    sink.close()


def test_service_name_comes_from_the_environment(tmp_path):
    import subprocess
    import sys

    code = (
        "import perfsdk\n"
        "sdk = perfsdk.init(sample_resources=False)\n"
        "print(sdk.tracer_provider.resource.attributes['service.name'])\n"
        "sdk.shutdown()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "OTEL_SERVICE_NAME": "from-env"})
    assert out.stdout.strip() == "from-env"


def test_init_after_shutdown_rejoins_its_provider_and_says_why_a_new_name_cannot_apply():
    """OpenTelemetry sets the global provider once: a second init() joins the first one's, whose
    spans still reach perfsdk. The warning used to say the *application* had a provider."""
    import subprocess
    import sys

    code = (
        "import logging, perfsdk\n"
        "logging.basicConfig(level=logging.WARNING, format='%(message)s')\n"
        "perfsdk.init(service_name='first', sample_resources=False).shutdown()\n"
        "sdk = perfsdk.init(service_name='second', sample_resources=False)\n"
        "@perfsdk.monitor\n"
        "def work():\n"
        "    return 1\n"
        "for _ in range(5):\n"
        "    work()\n"
        "print(sdk.stats()['spans'], sdk.tracer_provider.resource.attributes['service.name'])\n"
        "sdk.shutdown()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.split() == ["5", "first"]
    assert "init() after shutdown()" in out.stderr and "service.name 'first'" in out.stderr
    assert "the application already has" not in out.stderr


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_starts_clean_with_working_threads():
    provider = TracerProvider()
    sdk = perfsdk.init(tracer_provider=provider, resource_interval_s=0.05)
    tracer = provider.get_tracer("t")
    try:
        for _ in range(10):
            tracer.start_span("parent-work").end()
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report, then leave without running pytest's teardown
            ok = 0
            try:
                clean = sdk.stats()["spans"] == 0 and sdk.processor.bank.names() == []
                tracer.start_span("child-work").end()
                counted = sdk.stats()["spans"] == 1
                time.sleep(0.3)
                sampling = sdk.sampler.running and sdk.stats()["resource_samples"] > 0
                ok = int(clean and counted and sampling)
            finally:
                os.write(write, str(ok).encode())
                os._exit(0)
        os.close(write)
        answer = os.read(read, 8)
        os.waitpid(pid, 0)
        assert answer == b"1"
        assert sdk.stats()["spans"] == 10  # the parent is untouched
    finally:
        sdk.shutdown()


def test_processor_reads_any_readable_span_through_the_public_api():
    """Spans that are not the SDK's own ReadableSpan (no private fields) work too."""
    from types import SimpleNamespace

    from opentelemetry.trace import SpanContext, Status

    faults = Faults()
    sink = AnomalySink(IncidentTracker(lambda n: set()), faults)
    processor = PerfSpanProcessor(DetectorBank({"z": lambda n: ZScoreDetector(window=8, warmup=4, name=n)},
                                               confirm=1), sink, faults)
    for i in range(12):
        duration_ms = 1.0 if i < 10 else 50.0
        processor.on_end(SimpleNamespace(
            name="foreign", context=SpanContext(1, i + 1, False), parent=None,
            start_time=0, end_time=int(duration_ms * 1e6), status=Status(StatusCode.UNSET),
        ))
    assert faults.snapshot() == {}
    assert processor.spans == 12 and [a.value for a in sink.recent()] == [50.0]
    sink.close()


class InterruptedZScore(ZScoreDetector):
    """Another thread's update lands right after each of ours, before the bank reads the
    explanation -- the interleaving lock-free updates allow, made certain."""

    def update(self, x):
        z = super().update(x)
        super().update(10.0)  # the other thread's normal point
        return z


def test_an_anomaly_explains_its_own_point_even_when_another_thread_updated_in_between():
    bank = DetectorBank({"zscore": lambda n: InterruptedZScore(window=30, warmup=10, threshold=4.0, name=n)},
                        confirm=2)
    for i in range(40):
        bank.observe("GET /", 10.0 + (i % 3) * 0.1)
    assert not bank.observe("GET /", 60.0)
    (anomaly,) = bank.observe("GET /", 61.0)
    # the numbers reproduce the score: they are the onset's own, not the interloper's
    assert anomaly.value == 60.0 and anomaly.expected == pytest.approx(10.1, abs=0.05)
    assert (anomaly.value - anomaly.expected) / anomaly.std == pytest.approx(anomaly.score, rel=1e-12)


@pytest.mark.parametrize("kwargs,argument,error", [
    ({"redactor": "x"}, "redactor", TypeError), ({"service_name": 123}, "service_name", TypeError),
    ({"service_name": " "}, "service_name", ValueError), ({"threshold": float("inf")}, "threshold", ValueError), ({"export_format": "csv"}, "export_format", ValueError),
    ({"sample_resources": "yes"}, "sample_resources", TypeError),
])
def test_init_refuses_bad_arguments_before_changing_anything(kwargs, argument, error):
    from opentelemetry import trace

    before = trace.get_tracer_provider()
    with pytest.raises(error, match=argument):
        perfsdk.init(**kwargs)
    assert trace.get_tracer_provider() is before


def test_no_perfsdk_thread_outlives_shutdown():
    import threading

    from perfsdk import AdaptiveCache, CacheController

    sdk = perfsdk.init(tracer_provider=TracerProvider(), resource_interval_s=0.05, on_anomaly=lambda a: None)
    cache = AdaptiveCache(100, controller=CacheController(interval=10), on_decision=lambda d: None)
    for k in range(200):
        cache.get_or_load(k % 150, str)
    ArimaDetector(order=(1, 0, 0), warmup=60).update_many(np.random.default_rng(1).normal(size=100))
    sdk.shutdown()
    assert [t.name for t in threading.enumerate() if t.name.startswith("perfsdk")] == []
    decided = len(cache.decisions())
    for k in range(200):  # the cache goes on working; its deliveries start a thread again
        cache.get_or_load(k % 150, str)
    assert len(cache.decisions()) > decided


def test_options_that_exclude_each_other_are_refused():
    from perfsdk import CacheController

    with pytest.raises(ValueError, match="set them on your provider"):
        perfsdk.init(tracer_provider=TracerProvider(), service_name="shop")
    with pytest.raises(ValueError, match="target_hit_ratio or miss_cost"):
        CacheController(target_hit_ratio=0.9, miss_cost=5.0)
    with pytest.raises(ValueError, match="window or alpha"):
        ZScoreDetector(window=10, alpha=0.1)


def test_the_default_detector_in_the_span_bank_raises_one_anomaly_per_incident():
    from perfsdk.detect import span_detectors
    from perfsdk.instrument import DetectorBank

    bank = DetectorBank(span_detectors(["default"]), confirm=3)
    rng = np.random.default_rng(5)
    emitted = [a for x in rng.uniform(9.0, 11.0, 600) for a in bank.observe("GET /cart", float(x))]
    assert emitted == []  # a healthy route: nothing
    slow = [a for _ in range(20) for a in bank.observe("GET /cart", 45.0)]  # a dependency got slow
    assert len(slow) == 1  # one incident, one anomaly -- no run rule needed, none repeated
    anomaly = slow[0]
    assert anomaly.details["series"] == "GET /cart" and "AlertPipeline" in anomaly.detector
    assert anomaly.details["onset"] == anomaly.details["confirmed_at"] and anomaly.value == 45.0
    assert bank.summary()["GET /cart"]["anomalies"] == 1


def test_the_bank_steps_compiled_detectors_in_c_and_calls_an_overridden_update_as_written():
    """The bank's common path is compiled (BankPath): a Z-score or an alert pipeline is stepped
    from C, with exactly the results of its own ``update``; a subclass that overrides ``update``
    is called through it."""
    from perfsdk._native import stepping
    from perfsdk._native._bankpath import STEP_PIPELINE, STEP_PYTHON, STEP_ZSCORE
    from perfsdk.detect import AlertPipeline, default_detector

    class Clipped(ZScoreDetector):
        calls = 0

        def update(self, x: float) -> float:
            Clipped.calls += 1
            return super().update(min(x, 12.0))

    assert stepping(ZScoreDetector(window=16)) == STEP_ZSCORE
    assert stepping(default_detector(), AlertPipeline.check) == STEP_PIPELINE
    assert stepping(Clipped(window=16)) == STEP_PYTHON
    patched = ZScoreDetector(window=16)
    patched.update = lambda x: 0.0  # type: ignore[method-assign]
    assert stepping(patched) == STEP_PYTHON  # replaced on the instance: called as written too
    values = [10.0 + (i * 7919 % 13) / 4 for i in range(700)] + [60.0] * 6
    banked = DetectorBank({"z": lambda n: ZScoreDetector(window=32, warmup=8, name=n),
                           "default": lambda n: default_detector(name=n)}, confirm=3)
    alone_z, alone_p = ZScoreDetector(window=32, warmup=8), default_detector()
    found = [a for x in values for a in banked.observe("GET /", x)]
    z, p = banked._series["GET /"].detectors
    for x in values:
        alone_z.update(x), alone_p.update(x)
    assert np.array_equal(z.state, alone_z.state) and np.array_equal(p.state, alone_p.state)
    assert {a.detector for a in found} == {"GET / [ZScoreDetector]", "GET / [AlertPipeline]"}
    clipped = DetectorBank({"z": lambda n: Clipped(window=32, warmup=8, name=n)}, confirm=3)
    assert [a for x in values for a in clipped.observe("GET /", x)] == []  # clipped at 12: within its band
    assert Clipped.calls == len(values)


def test_a_slow_span_that_sat_through_a_collection_is_told_so():
    """A collection stops every thread: a healthy route then looks slow. The anomaly says how much of
    its excess was collector pause, and names it as the likely cause (issue 14)."""
    provider = TracerProvider()
    sdk = perfsdk.init(tracer_provider=provider, confirm=1, sample_resources=False, detectors=("zscore",))
    try:
        tracer = provider.get_tracer("test")
        for _ in range(200):
            with tracer.start_as_current_span("GET /healthy"):
                pass
        heap = [{"n": i} for i in range(600_000)]  # a heap a full collection takes a while to walk
        with tracer.start_as_current_span("GET /healthy"):
            gc.collect()
        del heap
        sdk.force_flush()
        anomaly = max((a for a in sdk.anomalies() if a.details.get("series") == "GET /healthy"),
                      key=lambda a: a.value)  # the collected span (a stray pause may flag another)
        assert anomaly.details["gc_collections"] >= 1
        assert anomaly.details["gc_pause_ms"] >= 0.5 * (anomaly.value - anomaly.expected)
        assert anomaly.details["likely_cause"].startswith("garbage collection")
        assert "likely cause: garbage collection" in str(sdk.incidents()[-1])
    finally:
        sdk.shutdown()
    assert not any(getattr(cb, "__self__", None).__class__.__name__ == "GcPauses" for cb in gc.callbacks)


def test_incidents_split_by_relation_not_only_by_time():
    """Within one window: a caller and its callee are one incident; an unrelated route is another;
    a process metric joins the incident it coincides with (issue 14: every anomaly of a run used to
    chain into one incident)."""
    from datetime import datetime, timedelta, timezone

    from perfsdk.detect import Anomaly

    t0 = datetime(2026, 11, 30, tzinfo=timezone.utc)
    calls = {"db.query": {"GET /checkout"}}
    tracker = IncidentTracker(lambda name: calls.get(name, set()), window_s=30.0)

    def anomaly(series, at_s, source="span"):
        return Anomaly(detector="z", index=0, value=50.0, expected=5.0, std=1.0, score=45.0, threshold=3.0,
                       timestamp=t0 + timedelta(seconds=at_s), details={"series": series, "source": source})

    for a in (anomaly("GET /checkout", 0), anomaly("db.query", 2), anomaly("process.cpu.utilization", 4, "resource"),
              anomaly("GET /search", 10), anomaly("spans.rate", 20, "resource"), anomaly("GET /search", 35),
              anomaly("db.query", 50)):
        tracker.add(a)
    groups = [[a.details["series"] for a in i.members] for i in tracker.incidents()]
    assert sorted(groups[0]) == ["GET /checkout", "db.query", "process.cpu.utilization"]
    assert groups[1:] == [["GET /search", "GET /search"], ["spans.rate"], ["db.query"]]
    assert groups[0][0] == "db.query"  # the callee ranks first: the likely origin


def _anomaly_at(series, value, expected, at_s=0.0, **details):
    from datetime import datetime, timedelta, timezone

    from perfsdk.detect import Anomaly

    when = datetime(2026, 11, 30, tzinfo=timezone.utc) + timedelta(seconds=at_s)
    return Anomaly(detector="z", index=0, value=value, expected=expected, std=1.0, score=value - expected,
                   threshold=3.0, timestamp=when, details={"series": series, "source": "span", **details})


def test_the_origin_is_ranked_by_evidence_not_by_how_many_callers_are_anomalous():
    """Issue 14: a 2.9 ms blip on a query called by three anomalous routes used to be named the origin
    of a 40 ms slowdown of one of them. The query explains 2.5 ms of the route's 40: the route is first.
    When the query is the slow part, it is first."""
    calls = {"SELECT": {"GET /a", "GET /b", "GET /c"}}
    tracker = IncidentTracker(lambda name: calls.get(name, set()), window_s=30.0)
    for a in (_anomaly_at("GET /a", 42.0, 2.0, 0.0), _anomaly_at("SELECT", 2.9, 0.4, 0.5),
              _anomaly_at("GET /b", 5.5, 3.0, 1.0), _anomaly_at("GET /c", 5.4, 3.0, 1.5)):
        tracker.add(a)
    (incident,) = tracker.incidents()
    assert incident.origin.details["series"] == "GET /a"
    tracker = IncidentTracker(lambda name: calls.get(name, set()), window_s=30.0)
    for a in (_anomaly_at("GET /a", 42.0, 2.0, 0.0), _anomaly_at("SELECT", 40.1, 0.4, 0.5)):
        tracker.add(a)
    (incident,) = tracker.incidents()
    assert [a.details["series"] for a in incident.members] == ["SELECT", "GET /a"]
    assert "Likely origin: 'SELECT'" in str(incident) and "called by 'GET /a'" in str(incident)


def test_a_slowdown_explained_by_collector_pauses_ranks_after_the_process_metrics():
    tracker = IncidentTracker(lambda name: set(), window_s=30.0)
    gc_anomaly = _anomaly_at("process.gc.pause_ms", 60.0, 2.0, 0.2)
    gc_anomaly.details["source"] = "resource"  # type: ignore[index]
    for a in (_anomaly_at("GET /healthy", 50.0, 2.0, 0.0, gc_pause_ms=47.0), gc_anomaly):
        tracker.add(a)
    (incident,) = tracker.incidents()
    assert incident.origin.details["series"] == "process.gc.pause_ms"


@pytest.mark.parametrize("kind", ["default", "zscore"])
def test_a_return_to_normal_is_not_an_anomaly(kind):
    """A fault long enough for the detector to learn its level, then the fix: the first normal
    values look anomalous against the faulty level. They are counted as a return, not emitted."""
    from perfsdk.detect import span_detectors

    bank = DetectorBank(span_detectors([kind]), confirm=3, min_delta=1.0, min_ratio=0.2)
    rng = np.random.default_rng(7)

    def feed(level, n):
        return [a for x in rng.uniform(0.9, 1.1, n) * level for a in bank.observe("GET /pay", float(x))]

    assert feed(4.0, 600) == []
    fault = feed(40.0, 800)
    assert len(fault) == 1 and fault[0].value > 30  # the fault: one anomaly
    assert feed(4.0, 400) == []  # the fix: nothing paged
    stats = bank.summary()["GET /pay"]
    assert stats["returns_to_normal"] == 1 and stats["anomalies"] == 1
    again = feed(40.0, 20)  # the same fault again is news again
    assert len(again) == 1 and again[0].value > 30


def test_a_new_span_name_that_appears_with_the_fault_is_the_suspect():
    """Issue 14: a new slow SQL statement warmed up on faulty values and was never blamed. Its caller
    turns slow as it appears; it takes nearly all of the caller's excess: it is reported, and the
    incident names it as the origin."""
    provider = TracerProvider()
    sdk = perfsdk.init(tracer_provider=provider, sample_resources=False, detectors=("default",))
    try:
        tracer = provider.get_tracer("test")
        rng = np.random.default_rng(3)
        t = time.time_ns() - 10**12
        for ms in rng.uniform(1.8, 2.2, 600):
            tracer.start_span("GET /search", start_time=t).end(end_time=t + int(ms * 1e6))
            t += 50_000_000
        for _ in range(30):  # the fault: every search now runs a new, slow statement
            from opentelemetry import trace as otel_trace

            route = tracer.start_span("GET /search", start_time=t)
            ctx = otel_trace.set_span_in_context(route)
            tracer.start_span("SELECT report", context=ctx, start_time=t + 10**6).end(end_time=t + 41 * 10**6)
            route.end(end_time=t + 42 * 10**6)
            t += 50_000_000
        sdk.force_flush()
        suspect = next(a for a in sdk.anomalies() if a.details.get("new_span_name"))
        assert suspect.details["series"] == "SELECT report" and suspect.details["caller"] == "GET /search"
        assert suspect.value == pytest.approx(40.0) and "a new span name" in suspect.details["likely_cause"]
        assert "calls nothing else" in suspect.details["likely_cause"]  # no siblings to compare it with
        (incident,) = sdk.incidents()
        assert incident.origin.details["series"] == "SELECT report"
        assert "Likely origin: 'SELECT report'" in str(incident)
        for a in sdk.anomalies():
            assert a.details["onset"] <= a.details["confirmed_at"]
    finally:
        sdk.shutdown()


def test_a_name_that_starts_failing_is_an_anomaly_however_fast_its_failures():
    """Issue 14: a payment provider that fails fast makes no span slow. Failed spans in a row that the
    name's own error rate makes unlikely are an anomaly at once; a name that often fails needs more;
    after the anomaly it is quiet until the name recovers."""
    from perfsdk.detect import span_detectors

    bank = DetectorBank(span_detectors(["default"]), confirm=3)
    observe = lambda name, error: list(bank.observe(name, 2.0, None, error))  # noqa: E731
    for _ in range(500):
        assert observe("charge_payment", False) == []
    assert observe("charge_payment", True) == [] and observe("charge_payment", True) == []
    (failing,) = observe("charge_payment", True)  # the third in a row: chance (1/502)^3
    assert failing.details["metric"] == "errors" and failing.details["run"] == 3
    assert failing.detector == "charge_payment [errors]" and "3 failed spans in a row" in str(
        failing.details["likely_cause"])
    assert all(observe("charge_payment", True) == [] for _ in range(50))  # one anomaly for the outage
    for _ in range(30):
        observe("charge_payment", False)
    assert [len(observe("charge_payment", True)) for _ in range(3)] == [0, 0, 1]  # recovered: news again
    rng = np.random.default_rng(2)
    flaky = [bool(e) for e in rng.random(2000) < 0.1]  # fails one time in ten
    for e in flaky:
        bank.observe("GET /flaky", 2.0, None, e)
    assert bank.summary()["GET /flaky"]["anomalies"] == 0  # runs of 3-4 are its normal
    assert [len(observe("GET /flaky", True)) for _ in range(7)].index(1) >= 4


def test_a_failing_callee_is_the_origin_of_its_callers_failures():
    calls = {"charge_payment": {"POST /checkout"}}
    tracker = IncidentTracker(lambda name: calls.get(name, set()), window_s=30.0)
    for a in (_anomaly_at("POST /checkout", 100.0, 0.1, 0.0, metric="errors"),
              _anomaly_at("charge_payment", 100.0, 0.1, 0.1, metric="errors"),
              _anomaly_at("POST /checkout", 1.0, 9.0, 0.5)):  # failing fast: faster than usual
        tracker.add(a)
    (incident,) = tracker.incidents()
    assert incident.origin.details["series"] == "charge_payment"


@pytest.mark.parametrize("stall_ms", [0.0, 100.0, 300.0, 5000.0])
def test_one_stalled_span_does_not_hide_a_later_slowdown(stall_ms):
    # The default span detector, fed as perfsdk.init() feeds it: 2 ms spans, one of them stalled
    # by the host (a GC pause, a descheduled thread) while it learns, then a 20x slowdown.
    from perfsdk.detect.presets import span_detectors
    from perfsdk.instrument.bank import DetectorBank

    bank = DetectorBank(span_detectors(("default",)))
    rng = np.random.default_rng(7)
    for i in range(420):
        value = stall_ms if (i == 250 and stall_ms) else 2.1 + abs(rng.normal(0, 0.15))
        assert bank.observe("GET /checkout", value) == ()
    slow = 0
    while not bank.observe("GET /checkout", 42.0 + abs(rng.normal(0, 0.15))):
        slow += 1
        assert slow < 10, f"the slowdown went unflagged for {slow} spans after a {stall_ms} ms stall"


def test_a_span_that_ends_before_it_starts_is_counted_and_never_judged():
    # OpenTelemetry stamps spans by the wall clock: one stepped back mid-span gives end < start.
    # Fed to the detectors as -60,000 ms, it widened the normal band so that a real 20x
    # slowdown right after it went unseen.
    import random

    from opentelemetry import trace as otel_trace

    sdk = perfsdk.init(service_name="clock", sample_resources=False, detectors=("zscore",))
    try:
        tracer, rng, now = otel_trace.get_tracer("lib"), random.Random(0), time.time_ns()

        def span(ms):
            nonlocal now
            s = tracer.start_span("step", start_time=now)
            s.end(end_time=now + int(ms * 1e6))
            now += abs(int(ms * 1e6)) + 1000

        for _ in range(300):
            span(10 + rng.random())
        span(-60_000)
        for _ in range(20):
            span(10 + rng.random())
        for _ in range(20):
            span(200)
    finally:
        sdk.shutdown()
    stats = sdk.stats()
    assert stats["spans_invalid"] == 1 and stats["anomalies"] >= 1


def test_monitor_keeps_attributes_static_methods_and_async_callable_objects(tmp_path):
    class Shop:
        @perfsdk.monitor
        @staticmethod
        def price(x):
            return 2 * x

    class Slow:
        async def __call__(self, seconds):
            await asyncio.sleep(seconds)
            return seconds

    slow = perfsdk.monitor(Slow())
    tagged = perfsdk.monitor(lambda: 1, attributes={"tier": "gold"})

    async def sleeper(seconds):
        await asyncio.sleep(seconds)

    assert inspect.iscoroutinefunction(perfsdk.monitor(functools.partial(sleeper, 0.01)))  # a partial, seen through
    sdk = perfsdk.init(service_name="shop", export_dir=tmp_path, sample_resources=False)
    try:
        assert Shop().price(3) == 6 and Shop.price(4) == 8
        assert asyncio.run(slow(0.05)) == 0.05
        assert tagged() == 1
    finally:
        sdk.shutdown()
    rows = perfsdk.export.read(tmp_path).to_pylist()
    durations = {row["name"]: row["duration_ms"] for row in rows}
    assert durations[perfsdk.instrument.decorator._default_name(slow.__wrapped__)] >= 40  # the await, not the call
    assert any(dict(row["attributes"]).get("tier") == "gold" for row in rows)
    assert sum(row["name"].endswith("price") for row in rows) == 2


def _slow_spans(tracer, name, t, normal_ms, slow_ms, n_normal=40, n_slow=4):
    """``n_normal`` spans of ``name`` around ``normal_ms``, then ``n_slow`` of ``slow_ms``; the next start."""
    for i in range(n_normal + n_slow):
        ms = normal_ms + (i % 3) * 0.1 if i < n_normal else slow_ms
        tracer.start_span(name, start_time=t).end(end_time=t + int(ms * 1e6))
        t += 10**6
    return t


def test_incidents_are_grouped_off_the_applications_thread_and_incidents_sees_every_anomaly():
    """A span's end used to group its anomaly into incidents on the application's thread, walking
    a copy of the whole call graph twice for every member of every open incident (0.8 s in one
    span.end() with 10,000 call edges)."""
    provider = TracerProvider()
    sdk = perfsdk.init(tracer_provider=provider, sample_resources=False, detectors=("zscore",))
    asked_on: list[str] = []
    walk = sdk._incidents.ancestors
    sdk._incidents.ancestors = lambda name: asked_on.append(threading.current_thread().name) or walk(name)
    try:
        tracer, t = provider.get_tracer("t"), time.time_ns()
        for r in range(20):
            t = _slow_spans(tracer, f"route{r}", t, 10.0, 60.0)
        assert threading.current_thread().name not in asked_on  # span.end() grouped nothing
        assert sum(len(i.members) for i in sdk.incidents()) == sdk.stats()["anomalies"] == 20
    finally:
        sdk.shutdown()


def test_grouping_asks_for_each_names_ancestors_once_not_once_per_member():
    asked: list[str] = []
    tracker = IncidentTracker(lambda name: asked.append(name) or set(), window_s=30.0)
    for r in range(100):  # 100 open incidents of unrelated routes
        tracker.add(_anomaly_at(f"route{r}", 50.0, 10.0, r * 0.01))
    assert asked == []  # add() only queues
    tracker.group_pending()
    assert len(asked) == 100  # once per name (it was twice per member of every open incident: 9,900)
    assert len(tracker.incidents()) == 100



@pytest.mark.parametrize("distinct", [False, True])
def test_grouping_weighs_the_open_incidents_not_every_member_ever(grouping_work, distinct):
    """Without caps (the report's tracker) grouping walked every incident kept and every member of
    each, closed ones too, for each new anomaly: quadratic in a long run. Counted per anomaly: the
    incidents open within the window (3, one anomaly every 10 s) and the one that just closed; two
    onset reads (its own, and when it joins), however many members the incidents hold."""
    examined, read = grouping_work
    k = 1000
    tracker = IncidentTracker(lambda name: set(), window_s=30.0, max_incidents=k, max_members=k)
    most_examined = most_read = 0
    for i in range(k):
        tracker.add(_anomaly_at(f"route{i}" if distinct else "route", 50.0, 10.0, i * 10.0))
        examined.clear()
        read.clear()
        tracker.group_pending()
        most_examined, most_read = max(most_examined, len(examined)), max(most_read, len(read))
    assert (most_examined, most_read) == ((4, 2) if distinct else (1, 2))  # it was up to k of each
    assert [len(i.members) for i in tracker.incidents()] == ([1] * k if distinct else [k])


def test_an_anomaly_added_late_still_joins_and_reopens_a_closed_incident():
    """Live, anomalies reach the tracker out of onset order: one earlier than an anomaly already
    grouped may join an incident closed for that anomaly, and keeps it open for the next."""
    tracker = IncidentTracker(lambda name: set(), window_s=30.0)
    for series, at_s in (("GET /a", 0.0), ("GET /b", 40.0), ("GET /a", 20.0), ("GET /a", 45.0)):
        tracker.add(_anomaly_at(series, 50.0, 10.0, at_s))
        tracker.group_pending()  # one at a time, as the sink's worker may
    assert [[a.timestamp.second for a in i.members] for i in tracker.incidents()] == [[0, 20, 45], [40]]

def test_the_call_graph_is_walked_once_until_a_new_edge():
    faults = Faults()
    sink = AnomalySink(IncidentTracker(lambda n: set()), faults)
    processor = PerfSpanProcessor(DetectorBank({"z": lambda n: ZScoreDetector(name=n)}), sink, faults)
    processor.calls.learn("GET /a", "db")
    processor.calls.learn("db", "socket")
    first = processor.ancestors("socket")
    assert first == {"db", "GET /a"} and processor.ancestors("socket") is first  # kept, not walked again
    processor.calls.learn("GET /b", "db")
    assert processor.ancestors("socket") == {"db", "GET /a", "GET /b"}  # a new edge: walked again
    assert processor.calls.callees("db") == ["socket"]
    sink.close()


def test_a_shut_processor_lets_go_of_its_state():
    """OpenTelemetry cannot remove a processor: each init() after a shutdown() left the dead one in the
    provider holding its detectors, sink, incidents, export and maps (~4 MB a cycle)."""
    import weakref

    provider = TracerProvider()
    sdk = perfsdk.init(tracer_provider=provider, sample_resources=False)
    tracer = provider.get_tracer("t")
    for i in range(300):
        with tracer.start_as_current_span(f"name{i % 30}"):
            with tracer.start_as_current_span("child"):
                pass
    processor = sdk.processor
    bank, sink = weakref.ref(processor.bank), weakref.ref(sdk._sink)
    sdk.shutdown()
    assert sdk.stats()["spans"] == 600  # the handle still reads its counters
    assert processor.bank is None and processor.sink is None and processor.observe is None
    assert processor._callers == {} and processor._open == {}
    assert len(sdk._incidents.ancestors("child")) == 30  # its incidents still rank by the call graph
    del sdk
    gc.collect()
    assert processor in provider._active_span_processor._span_processors  # still there, and light:
    assert bank() is None and sink() is None


def test_a_blocked_on_anomaly_holds_shutdown_one_second_counted():
    """A callback that blocked made shutdown() wait 15 s and left the notification thread running,
    uncounted. It now runs on the callbacks' worker, as on_decision does."""
    release = threading.Event()
    provider = TracerProvider()
    sdk = perfsdk.init(tracer_provider=provider, sample_resources=False, detectors=("zscore",),
                       on_anomaly=lambda a: release.wait(60))
    try:
        _slow_spans(provider.get_tracer("t"), "r", time.time_ns(), 5.0, 50.0)
        assert sdk._sink._worker.flush(5.0)  # perfsdk's own notifications are not held up
        before = _callback_overruns()
        started = time.monotonic()
        sdk.shutdown()
        took = time.monotonic() - started
        assert took < 3.0, f"shutdown took {took:.1f} s"  # it took 15 s
        assert _callback_overruns() == before + 1  # counted (process-wide, as for on_decision)
        assert "perfsdk-anomalies" not in [t.name for t in threading.enumerate()]
    finally:
        release.set()


def _callback_overruns() -> int:
    from perfsdk._runtime import FAULTS

    return FAULTS.snapshot().get("perfsdk-callbacks at shutdown", 0)


def test_shutdown_from_inside_on_anomaly_does_not_wait_for_itself():
    provider = TracerProvider()
    before = _callback_overruns()
    box: dict = {}

    def stop(anomaly):
        started = time.monotonic()
        box["sdk"].shutdown()
        box["took"] = time.monotonic() - started

    sdk = box["sdk"] = perfsdk.init(tracer_provider=provider, sample_resources=False, detectors=("zscore",),
                                    on_anomaly=stop)
    try:
        _slow_spans(provider.get_tracer("t"), "r", time.time_ns(), 5.0, 50.0)
        deadline = time.monotonic() + 20
        while "took" not in box and time.monotonic() < deadline:
            time.sleep(0.01)
        assert box["took"] < 3.0  # it took 10 s
        assert sdk.faults.snapshot() == {} and _callback_overruns() == before
    finally:
        sdk.shutdown()


def test_anomalies_of_the_overflow_series_are_its_own_not_a_span_names():
    """A steady 40 ms route past max_span_names was reported as anomalous against the overflow
    series' 2 ms, under its own name (and its name went into the metric's attributes)."""
    from perfsdk.instrument.bank import OVERFLOW

    bank = DetectorBank({"z": lambda n: ZScoreDetector(window=64, warmup=16, name=n)}, max_names=2, confirm=3)
    bank.observe("a", 1.0)
    bank.observe("b", 1.0)
    for i in range(200):
        assert bank.observe(f"GET /user/{i}", 2.0 + (i % 3) * 0.1) == ()
    emitted = [a for _ in range(5) for a in bank.observe("GET /report/42", 40.0)]
    (anomaly,) = emitted
    assert anomaly.details["series"] == OVERFLOW and anomaly.detector.startswith(OVERFLOW)
    assert "max_span_names" in anomaly.details["overflow"]
    errors = [a for i in range(5) for a in bank.observe(f"GET /fail/{i}", 2.0, None, True)]
    assert [a.details["series"] for a in errors] == [OVERFLOW]


def test_a_bad_meter_provider_is_refused_before_anything_starts(tmp_path):
    with pytest.raises(TypeError, match="meter_provider"):
        perfsdk.init(meter_provider=object(), export_dir=tmp_path, sample_resources=False)
    assert [t.name for t in threading.enumerate() if t.name.startswith("perfsdk")] == []


def test_a_failed_init_stops_what_it_had_started(tmp_path, monkeypatch):
    from perfsdk.instrument import sdk as sdk_module

    class BrokenSampler:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("sampler broke")

    monkeypatch.setattr(sdk_module, "ResourceSampler", BrokenSampler)
    provider = TracerProvider()
    with pytest.raises(RuntimeError, match="sampler broke"):
        perfsdk.init(tracer_provider=provider, export_dir=tmp_path)
    assert [t.name for t in threading.enumerate() if t.name.startswith("perfsdk")] == []
    assert not any(type(getattr(cb, "__self__", None)).__name__ == "GcPauses" for cb in gc.callbacks)
    (processor,) = [p for p in provider._active_span_processor._span_processors if isinstance(p, PerfSpanProcessor)]
    assert processor._shutdown and processor.bank is None
    assert sdk_module._HANDLE is None


def test_a_callee_that_got_faster_is_not_the_origin_of_its_callers_slowdown():
    calls = {"cache.get": {"GET /checkout"}}
    tracker = IncidentTracker(lambda name: calls.get(name, set()), window_s=30.0)
    cpu = _anomaly_at("process.cpu.utilization", 90.0, 20.0, 0.2, source="resource")
    for a in (_anomaly_at("GET /checkout", 90.0, 50.0, 0.0), _anomaly_at("cache.get", 1.0, 41.0, 0.0), cpu):
        tracker.add(a)
    (incident,) = tracker.incidents()
    # the route's 40 ms are its own; the faster cache explains none of them, and ranks last
    assert [a.details["series"] for a in incident.members] == ["GET /checkout", "process.cpu.utilization",
                                                                "cache.get"]


def test_a_new_name_that_appears_after_its_caller_turned_slow_is_judged():
    """The edge used to be judged before the new name's first span was observed (it had no series
    yet), and never again."""
    from opentelemetry import trace as otel_trace

    provider = TracerProvider()
    sdk = perfsdk.init(tracer_provider=provider, sample_resources=False, detectors=("zscore",))
    try:
        tracer, t = provider.get_tracer("t"), time.time_ns()

        def request(route_ms, callee_ms=None):
            nonlocal t
            root = tracer.start_span("GET /search", start_time=t)
            if callee_ms is not None:
                tracer.start_span("db.report_query", context=otel_trace.set_span_in_context(root),
                                  start_time=t).end(end_time=t + int(callee_ms * 1e6))
            root.end(end_time=t + int(route_ms * 1e6))
            t += 100 * 10**6

        for i in range(60):
            request(10.0 + (i % 3) * 0.2)
        for _ in range(4):
            request(70.0)  # the route is slow before the new statement's first span ends
        for _ in range(6):
            request(70.0, 58.0)
        sdk.force_flush()
        suspects = [a for a in sdk.anomalies() if a.details.get("new_span_name")]
        assert [a.details["series"] for a in suspects] == ["db.report_query"]
        assert suspects[0].details["caller"] == "GET /search"
    finally:
        sdk.shutdown()


def test_a_forked_childs_sink_and_tracker_forget_the_parents_counts():
    from perfsdk.detect import Anomaly

    tracker = IncidentTracker(lambda n: set(), max_pending=1)
    sink = AnomalySink(tracker, Faults())
    anomaly = Anomaly(detector="z", index=0, value=9.0, expected=1.0, std=1.0, score=8.0, threshold=3.0)
    sink.publish(anomaly)
    tracker.add(anomaly)  # past max_pending: dropped, counted
    assert (sink.total, tracker.dropped_members) == (1, 1)
    sink._after_fork()
    tracker._after_fork()  # what the fork registry calls in a child
    assert (sink.total, tracker.dropped_members, sink.recent(), tracker.incidents()) == (0, 0, [], [])
    sink.close()


def test_a_span_as_long_as_the_clock_allows_is_measured_not_invalid():
    from types import SimpleNamespace

    from opentelemetry.trace import SpanContext, Status

    faults = Faults()
    sink = AnomalySink(IncidentTracker(lambda n: set()), faults)
    processor = PerfSpanProcessor(DetectorBank({"z": lambda n: ZScoreDetector(name=n)}), sink, faults)
    processor.on_end(SimpleNamespace(name="eon", context=SpanContext(1, 1, False), parent=None,
                                     start_time=-2**63, end_time=2**63 - 1, status=Status(StatusCode.UNSET)))
    assert (processor.spans_invalid, processor.spans_ended, processor.spans) == (0, 1, 1)
    assert faults.snapshot() == {}
    sink.close()


def test_a_meter_provider_that_fails_when_asked_leaves_no_export_thread(tmp_path):
    """It passes the up-front check (it has get_meter) and fails inside the export's constructor,
    which had already started its writer."""

    class BrokenMeters:
        def get_meter(self, *args, **kwargs):
            raise RuntimeError("meter provider broken")

    with pytest.raises(RuntimeError, match="meter provider broken"):
        perfsdk.init(meter_provider=BrokenMeters(), export_dir=tmp_path, sample_resources=False)
    assert [t.name for t in threading.enumerate() if t.name.startswith("perfsdk")] == []


def test_a_span_still_ending_when_the_processor_shuts_down_publishes_its_anomaly():
    """shutdown() let go of the sink and the detectors at once: a span inside on_end on another
    thread then published to None (an AttributeError counted as a fault, the anomaly lost)."""
    from perfsdk.instrument.processor import CallGraph

    entered, release = threading.Event(), threading.Event()

    class HeldDetector(ZScoreDetector):
        def update(self, x):  # a Python update: the bank calls it as written
            score = super().update(x)
            if self.n_seen > 30:  # the span that completes the run waits here
                entered.set()
                release.wait(10)
            return score

    faults = Faults()
    calls = CallGraph()
    sink = AnomalySink(IncidentTracker(calls.ancestors), faults)
    bank = DetectorBank({"z": lambda name: HeldDetector(window=16, warmup=10, threshold=3.0, name=name)},
                        confirm=1, min_delta=0.0, min_ratio=0.0)
    processor = PerfSpanProcessor(bank, sink, faults, calls=calls)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("t")

    def span(ms):
        tracer.start_span("route", start_time=0).end(end_time=int(ms * 1e6))

    for i in range(30):
        span(10 + (i % 3) * 0.1)
    outlier = threading.Thread(target=span, args=(500.0,))
    outlier.start()
    assert entered.wait(10)
    processor.shutdown()
    assert processor.bank is bank  # still in use: not let go yet
    release.set()
    outlier.join(10)
    assert faults.snapshot() == {} and sink.total == 1
    assert processor.release() and processor.bank is None and processor.sink is None
    sink.close(5.0)


def test_the_export_writing_at_shutdown_leaves_the_callbacks_their_time(tmp_path, monkeypatch):
    """The export's close (its own deadline: queued spans are data) ate the callbacks' budget:
    they got 0 s, were counted as overrunning, and their thread outlived shutdown()."""
    from perfsdk.detect import Anomaly
    from perfsdk.instrument import sdk as sdk_module

    monkeypatch.setattr(sdk_module, "SHUTDOWN_TIMEOUT_S", 1.0)
    ran = []
    closed = threading.Event()  # the callbacks run only once the export has closed: in what is left
    sdk = perfsdk.init(service_name="svc", export_dir=tmp_path, sample_resources=False,
                       on_anomaly=lambda anomaly: (closed.wait(10), time.sleep(0.05), ran.append(anomaly)))
    closing = sdk.export.close

    def slow_close(*args, **kwargs):  # a large span queue being written, past the whole budget
        time.sleep(1.2)
        closing(*args, **kwargs)
        closed.set()

    sdk.export.close = slow_close
    for i in range(10):
        sdk._sink.publish(Anomaly("d", index=i, value=9.0, expected=1.0, std=1.0, score=8.0, threshold=3.0,
                                  details={"series": "x"}))
    before = _callback_overruns()
    sdk.shutdown()
    assert len(ran) == 10 and _callback_overruns() == before
    assert [t.name for t in threading.enumerate() if t.name.startswith("perfsdk")] == []


def _echo(*args):
    return args


class _Echo:
    """A callable object, at module level so that it pickles."""

    def __call__(self, *args):
        return args


def test_monitor_on_a_partial_an_object_or_a_builtin_binds_and_pickles_as_the_callable_does(traced):
    """A closure around them bound ``self`` as a class attribute where they did not, and could
    not be pickled."""
    import pickle

    _, exporter, _, _ = traced

    class Plain:
        h, p, b = _Echo(), functools.partial(_echo, "p"), len

    class Monitored:
        h, p, b = perfsdk.monitor(_Echo()), perfsdk.monitor(functools.partial(_echo, "p")), perfsdk.monitor(len)

    class Text(str):  # a method descriptor binds: its wrapper too
        upper = perfsdk.monitor(str.upper)

    assert Monitored().h(1) == Plain().h(1) == (1,) and Monitored().p(1) == Plain().p(1) == ("p", 1)
    assert Monitored().b([1, 2]) == Plain().b([1, 2]) == 2
    assert Text("ab").upper() == "AB" and Text.upper("cd") == "CD"
    partial = perfsdk.monitor("echo", attributes={"tier": "gold"})(functools.partial(_echo, "p"))
    copy = pickle.loads(pickle.dumps(partial))
    assert copy(1) == ("p", 1) and copy.__perfsdk_span__ == "echo" and copy.__wrapped__.args == ("p",)
    assert pickle.loads(pickle.dumps(perfsdk.monitor(_Echo())))(2) == (2,)
    assert [dict(s.attributes) for s in exporter.get_finished_spans() if s.name == "echo"] == [{"tier": "gold"}]


def test_a_partial_or_an_object_is_named_after_what_it_calls_not_its_address(traced):
    _, exporter, _, _ = traced
    perfsdk.monitor(functools.partial(functools.partial(_echo, 1), 2))()
    perfsdk.monitor(_Echo())(3)
    assert [s.name for s in exporter.get_finished_spans()] == ["_echo", "_Echo"]


async def _echo_stream(log):
    received = None
    try:
        while True:
            try:
                received = yield received
            except ValueError as exc:
                received = f"caught {exc}"
    finally:
        log.append("finally")


async def _drive(make):
    """What a caller sees of an async generator driven by asend, athrow and aclose."""
    log: list = []
    stream = make(log)
    seen = [await stream.asend(None), await stream.asend("hello"), await stream.athrow(ValueError("boom"))]
    await stream.aclose()
    return seen, log


def test_an_async_generator_forwards_asend_athrow_and_aclose_with_or_without_a_tracer():
    """Before init() the wrapper iterated with ``async for``: what was sent was dropped, a
    thrown exception did not reach the generator, aclose() did not run its finally."""
    expected = ([None, "hello", "caught boom"], ["finally"])
    monitored = perfsdk.monitor(_echo_stream)
    assert asyncio.run(_drive(_echo_stream)) == expected
    assert asyncio.run(_drive(monitored)) == expected  # before init()
    sdk = perfsdk.init(tracer_provider=TracerProvider(), sample_resources=False)
    try:
        assert asyncio.run(_drive(monitored)) == expected
        assert sdk.stats()["spans"] == 1
    finally:
        sdk.shutdown()


def test_a_fault_in_another_span_processor_is_counted_and_the_call_returns_as_undecorated():
    """OpenTelemetry's multi-processor does not catch a processor's exceptions: they came out of the
    wrapper, before the function ran (on_start) or in place of its result or exception (on_end)."""
    from opentelemetry.sdk.trace import SpanProcessor

    from perfsdk._runtime import FAULTS

    class Flaky(SpanProcessor):
        def __init__(self, hook):
            self.hook = hook

        def on_start(self, span, parent_context=None):
            if self.hook == "on_start":
                raise RuntimeError("on_start broke")

        def on_end(self, span):
            if self.hook == "on_end":
                raise KeyError("on_end broke")

    boom = ValueError("the application's own")

    @perfsdk.monitor
    def pay(x):
        return x * 10

    @perfsdk.monitor
    def fails():
        raise boom

    @perfsdk.monitor
    def steps():
        yield 1
        return "done"

    @perfsdk.monitor
    async def later(x):
        return x

    @perfsdk.monitor
    async def stream():
        yield 2

    async def consume():
        return [item async for item in stream()]

    for hook in ("on_start", "on_end"):
        provider = TracerProvider()
        provider.add_span_processor(Flaky(hook))
        sdk = perfsdk.init(tracer_provider=provider, sample_resources=False)
        try:
            before = FAULTS.snapshot().get(f"@monitor span {hook[3:]}", 0)
            assert pay(4) == 40 and list(steps()) == [1] and asyncio.run(later(5)) == 5
            assert asyncio.run(consume()) == [2]
            with pytest.raises(ValueError) as caught:
                fails()
            assert caught.value is boom
            assert FAULTS.snapshot()[f"@monitor span {hook[3:]}"] - before == 5
            assert sdk.stats()["faults"][f"@monitor span {hook[3:]}"] >= 5
        finally:
            sdk.shutdown()


def test_an_application_processor_added_before_perfsdks_that_raises_in_on_end_hides_no_span_from_it(tmp_path):
    """OpenTelemetry's SynchronousMultiSpanProcessor calls a provider's processors in the order they
    were added and stops at the first that raises: behind the application's processor that raised in
    on_end, perfsdk's never saw a span -- not detected, not written, not counted. perfsdk's goes first;
    the application's still raises to whoever ended the span, and the processors behind it, added
    before perfsdk's or after, are skipped as they were without perfsdk."""
    from opentelemetry.sdk.trace import SpanProcessor

    class Failing(SpanProcessor):
        def on_end(self, span):
            raise RuntimeError("the application's processor")

    provider = TracerProvider()
    before, after = InMemorySpanExporter(), InMemorySpanExporter()
    provider.add_span_processor(Failing())
    provider.add_span_processor(SimpleSpanProcessor(before))
    sdk = perfsdk.init(tracer_provider=provider, export_dir=str(tmp_path), sample_resources=False)
    try:
        provider.add_span_processor(SimpleSpanProcessor(after))
        tracer = provider.get_tracer("app")
        for _ in range(10):
            with pytest.raises(RuntimeError, match="the application's processor"):
                with tracer.start_as_current_span("GET /cart"):
                    pass
        assert sdk.stats()["spans"] == 10 and "span processor order" not in sdk.stats()["faults"]
        assert before.get_finished_spans() == () and after.get_finished_spans() == ()
    finally:
        sdk.shutdown()
    from perfsdk.export import read

    assert read(tmp_path).num_rows == 10


def test_first_in_line_perfsdks_processor_leaves_the_applications_most_of_a_provider_flush():
    """In ``provider.force_flush(timeout)`` the processors share one deadline in turn, and OpenTelemetry
    skips those behind one that used it up (older releases: one that returned False). First in line,
    perfsdk's processor waited the whole timeout for a slow ``on_anomaly`` callback: the application's
    exporters were never flushed. It spends a tenth (``FLUSH_SHARE``) and says True."""
    from opentelemetry.sdk.trace import SpanProcessor

    from perfsdk._runtime import USER_CALLBACKS
    from perfsdk.instrument.processor import FLUSH_SHARE

    given: list[int] = []

    class Exporting(SpanProcessor):  # the application's BatchSpanProcessor, say
        def force_flush(self, timeout_millis=30000):
            given.append(timeout_millis)
            return True

    provider = TracerProvider()
    provider.add_span_processor(Exporting())
    sdk = perfsdk.init(tracer_provider=provider, sample_resources=False, on_anomaly=lambda anomaly: None)
    release = threading.Event()
    try:
        USER_CALLBACKS.submit(lambda: release.wait(30))  # a callback that holds the notifications up
        assert provider._active_span_processor._span_processors[0] is sdk.processor
        assert provider.force_flush(10_000) is True
        assert FLUSH_SHARE <= 0.1 and len(given) == 1
        assert given[0] >= 8_000  # 9 s of 10 left to it (and a second for a busy machine)
    finally:
        release.set()
        sdk.shutdown()


def test_a_provider_whose_processors_perfsdk_cannot_reorder_still_gets_it_last_counted():
    """Putting perfsdk's processor first reaches into OpenTelemetry's multi-processor: where its
    layout is not the one known (the application's own multi-processor, another OpenTelemetry
    version), the processor is added as before -- last -- and that is counted, never raised."""
    from opentelemetry.sdk.trace import SynchronousMultiSpanProcessor

    class Own(SynchronousMultiSpanProcessor):
        def on_end(self, span):  # the application's own way of calling them
            super().on_end(span)

    newer = SynchronousMultiSpanProcessor()
    newer._span_processors = []  # as a later version might keep them
    for multi in (Own(), newer):
        provider = TracerProvider(active_span_processor=multi)
        provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
        sdk = perfsdk.init(tracer_provider=provider, sample_resources=False)
        try:
            assert list(multi._span_processors)[-1] is sdk.processor
            with provider.get_tracer("app").start_as_current_span("GET /cart"):
                pass
            assert sdk.stats()["spans"] == 1 and sdk.stats()["faults"]["span processor order"] == 1
        finally:
            sdk.shutdown()


def test_a_generators_clean_up_on_close_runs_under_its_own_span(traced):
    """A generator's span is the current one while its own code runs: a ``finally:`` run by
    ``close()``/``aclose()`` is its code, but its spans were parented to the caller's."""
    sdk, exporter, _, _ = traced

    @perfsdk.monitor("cleanup")
    def cleanup():
        pass

    @perfsdk.monitor("steps")
    def steps():
        try:
            yield 1
            yield 2
        finally:
            cleanup()

    @perfsdk.monitor("async_steps")
    async def async_steps():
        try:
            yield 1
            yield 2
        finally:
            cleanup()

    @perfsdk.monitor("caller")
    def caller():
        for _ in steps():
            break  # leaves the loop: the generator is closed

    @perfsdk.monitor("async_caller")
    async def async_caller():
        stream = async_steps()
        async for _ in stream:
            break
        await stream.aclose()

    caller()
    asyncio.run(async_caller())
    finished = exporter.get_finished_spans()
    by_id = {span.context.span_id: span.name for span in finished}
    parents = sorted(by_id[span.parent.span_id] for span in finished if span.name == "cleanup")
    assert parents == ["async_steps", "steps"]


def test_a_generator_whose_close_raises_still_ends_its_span_failed(traced):
    sdk, exporter, _, _ = traced

    @perfsdk.monitor
    def cleanup_fails():
        try:
            yield 1
            yield 2
        finally:
            raise OSError("cleanup failed")

    @perfsdk.monitor
    async def async_cleanup_fails():
        try:
            yield 1
            yield 2
        finally:
            raise OSError("async cleanup failed")

    async def close_early():
        stream = async_cleanup_fails()
        await stream.__anext__()
        await stream.aclose()

    steps = cleanup_fails()
    next(steps)
    with pytest.raises(OSError, match="cleanup failed"):
        steps.close()
    with pytest.raises(OSError, match="async cleanup failed"):
        asyncio.run(close_early())
    spans = spans_by_name(exporter)
    for name in ("cleanup_fails", "async_cleanup_fails"):
        span = next(s for n, s in spans.items() if n.endswith(name))
        assert span.status.status_code is StatusCode.ERROR and span.events[0].name == "exception"
    assert len(sdk.processor._open) == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_spans_of_a_multiprocessing_child_are_written_though_it_leaves_with_os_exit(tmp_path):
    """A multiprocessing child ends with os._exit: atexit never runs there, its finalizers do."""
    import multiprocessing

    sdk = perfsdk.init(service_name="mp", export_dir=tmp_path, sample_resources=False)

    @perfsdk.monitor("work")
    def work(x):
        return x

    def child():
        for i in range(50):
            work(i)

    try:
        for i in range(10):
            work(i)
        process = multiprocessing.get_context("fork").Process(target=child)
        process.start()
        process.join(60)
        assert process.exitcode == 0
    finally:
        sdk.shutdown()
    names = perfsdk.export.read(tmp_path / "spans").column("name").to_pylist()
    assert names.count("work") == 60


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("method", ["fork", "forkserver"])
def test_a_multiprocessing_child_that_starts_perfsdk_itself_writes_its_spans(tmp_path, method):
    """``init()`` inside a pool's initializer or a process's target, perfsdk not running when the child
    forked: the child left with os._exit and wrote nothing (0 of 300 spans). A fresh interpreter: one
    that ever ran ``init()`` hooks every later child at fork, which hid it."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import multiprocessing, perfsdk

        @perfsdk.monitor("task")
        def task(i):
            return i

        def child(n):
            perfsdk.init(service_name="child", export_dir={str(tmp_path)!r}, sample_resources=False)
            for i in range(n):
                task(i)

        if __name__ == "__main__":
            processes = [multiprocessing.get_context({method!r}).Process(target=child, args=(100,))
                         for _ in range(3)]
            for p in processes:
                p.start()
            for p in processes:
                p.join(60)
            assert [p.exitcode for p in processes] == [0, 0, 0]
    """)
    (tmp_path / "main.py").write_text(script)
    from perfsdk.export import read

    subprocess.run([sys.executable, str(tmp_path / "main.py")], check=True, timeout=120, cwd=tmp_path)
    assert read(tmp_path / "spans").column("name").to_pylist().count("task") == 300


_SIGTERMED_APP = """
import signal, sys, time
import perfsdk

sdk = perfsdk.init(service_name="sig", export_dir=sys.argv[1], sample_resources=False)
if sys.argv[2] == "uvicorn":  # as uvicorn does: its own handler, then the original restored and re-raised
    original, caught = signal.getsignal(signal.SIGTERM), []
    signal.signal(signal.SIGTERM, lambda signum, frame: caught.append(signum))


@perfsdk.monitor("work")
def work(i):
    return i


for i in range(500):
    work(i)
print("ready", flush=True)
if sys.argv[2] == "uvicorn":
    while not caught:
        time.sleep(0.01)
    signal.signal(signal.SIGTERM, original)
    signal.raise_signal(signal.SIGTERM)
time.sleep(60)
"""


@pytest.mark.skipif(not hasattr(os, "kill") or os.name != "posix", reason="needs POSIX signals")
@pytest.mark.parametrize("server", ["plain", "uvicorn"])
def test_a_process_stopped_by_sigterm_writes_its_spans_and_still_dies_by_it(tmp_path, server):
    """SIGTERM's default action kills the process past ``atexit``: a container's stop, or uvicorn's
    exit (it re-raises the signal it caught), lost the last spans and left the open file hidden (0
    published files). perfsdk's handler, where the default was, shuts down, then dies by SIGTERM."""
    import signal
    import subprocess
    import sys

    from perfsdk.export import read

    (tmp_path / "app.py").write_text(_SIGTERMED_APP)
    out = tmp_path / "out"
    app = subprocess.Popen([sys.executable, str(tmp_path / "app.py"), str(out), server], stdout=subprocess.PIPE,
                           text=True)
    try:
        assert app.stdout.readline().strip() == "ready"
        app.send_signal(signal.SIGTERM)
        assert app.wait(60) == -signal.SIGTERM  # died by it, as it would have
    finally:
        app.kill()
        app.stdout.close()
    assert read(out).num_rows == 500 and not list(out.rglob(".part-*"))


def test_sigterm_is_handled_only_where_its_default_was_and_given_back(tmp_path):
    import signal

    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    sdk = perfsdk.init(service_name="sig", export_dir=tmp_path, sample_resources=False)
    assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    sdk.shutdown()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # given back

    def own(signum, frame):
        pass

    signal.signal(signal.SIGTERM, own)
    try:
        perfsdk.init(service_name="sig", export_dir=tmp_path, sample_resources=False).shutdown()
        assert signal.getsignal(signal.SIGTERM) is own  # the application's: never replaced
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    sdk = perfsdk.init(service_name="sig", export_dir=tmp_path, sample_resources=False, shutdown_on_sigterm=False)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    sdk.shutdown()
    with pytest.raises(TypeError, match="shutdown_on_sigterm"):
        perfsdk.init(shutdown_on_sigterm="yes")


def test_a_relative_export_dir_stays_where_it_was_after_a_chdir(tmp_path, monkeypatch):
    """A daemon changes directory after start-up: with ``export_dir="perf-data"`` the open file was
    renamed relative to the new one (failed, its 500 spans counted failed and left hidden, no recover
    hint) and later spans went to another directory."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    sdk = perfsdk.init(service_name="cwd", export_dir="perf-data", sample_resources=False)

    @perfsdk.monitor("f")
    def f(i):
        return i

    try:
        for i in range(50):
            f(i)
        assert sdk.export.drain(10.0)  # in the open file
        os.chdir(tmp_path / "elsewhere")
        for i in range(50):
            f(i)
        assert sdk.force_flush()
    finally:
        sdk.shutdown()
    from perfsdk.export import read

    assert sdk.stats()["export"]["spans_failed"] == 0
    assert read(tmp_path / "perf-data").num_rows == 100
    assert not (tmp_path / "elsewhere" / "perf-data").exists()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_childs_first_resource_sample_is_its_own():
    """The child kept the parent's CPU-time baseline (its own CPU time starts near zero: a hugely
    negative first sample) and traffic totals (its span bank starts empty)."""
    from threads import in_child

    started = time.process_time()
    while time.process_time() - started < 0.05 or time.process_time() < 0.5:  # a parent that has run
        sum(range(1000))
    faults = Faults()
    sink = AnomalySink(IncidentTracker(lambda n: set()), faults)
    spans = DetectorBank({"z": lambda n: ZScoreDetector(name=n)})
    for _ in range(100):
        spans.observe("GET /", 1.0)
    sampler = resources.ResourceSampler(DetectorBank(resource_detectors(), confirm=2), sink, faults,
                                        traffic=spans)
    try:
        def first_sample_is_the_childs():
            for i in range(150):
                spans.observe("GET /", 1.0, error=i % 2 == 1)
            values = sampler.read()
            return values[resources.CPU] >= 0.0 and values[resources.SPAN_ERRORS] == 50.0

        assert in_child(first_sample_is_the_childs)
    finally:
        sink.close()


def test_a_renamed_span_is_its_childrens_caller_under_its_new_name():
    """``span.update_name()`` (a server span named once its route is known) after the span started."""
    provider = TracerProvider()
    sdk = perfsdk.init(tracer_provider=provider, sample_resources=False)
    tracer = provider.get_tracer("t")
    try:
        for _ in range(3):
            with tracer.start_as_current_span("HTTP GET") as server:
                server.update_name("GET /checkout")
                with tracer.start_as_current_span("db.query"):
                    pass
        assert sdk.processor.calls.callers["db.query"] == {"GET /checkout"}
        assert set(sdk.processor.ancestors("db.query")) == {"GET /checkout"}
    finally:
        sdk.shutdown()


@pytest.mark.parametrize("factories", [
    {"z": 5}, ["zscore"], {"z": lambda name: "not a detector"}, {"z": lambda: ZScoreDetector()},
])
def test_a_bank_refuses_factories_that_make_no_detector(factories):
    with pytest.raises(TypeError, match="factories"):
        DetectorBank(factories)


def test_monitor_above_classmethod_keeps_it_a_classmethod(traced):
    _, exporter, _, _ = traced

    class Shop:
        @perfsdk.monitor
        @classmethod
        def make(cls):
            return cls

        @perfsdk.monitor("open")
        @classmethod
        def open(cls, hours):
            return cls, hours

    assert Shop.make() is Shop and Shop().make() is Shop and Shop.open(8) == (Shop, 8)
    names = [s.name for s in exporter.get_finished_spans()]
    assert names[-1] == "open" and sum(n.endswith("Shop.make") for n in names) == 2


def test_monitor_refuses_an_attribute_key_that_is_not_a_str():
    with pytest.raises(TypeError, match="attributes"):
        perfsdk.monitor("charge", attributes={3: "x"})


@pytest.mark.parametrize("fails_every", [None, 10, 4])
def test_an_errors_anomaly_is_explained_by_what_decided_it(fails_every):
    """It said score sqrt((1 - u) / u) against a threshold of 3 (2.99 and 1.73 for names failing one
    time in ten and in four: at or inside its own band), with a band of error percentages from -80
    to 100.4, and the index of the span that confirmed the run with the timestamp of its first."""
    from perfsdk.instrument.bank import ERROR_RUN_CHANCE

    bank = DetectorBank({"zscore": lambda n: ZScoreDetector(window=64, warmup=8, name=n)}, confirm=3)
    for i in range(1000):
        bank.observe("POST /pay", 20.0, i, error=fails_every is not None and i % fails_every == 0)
    anomalies, i = [], 1000
    while not anomalies:
        anomalies = [a for a in bank.observe("POST /pay", 20.0, i, error=True) if a.details["metric"] == "errors"]
        i += 1
    (a,) = anomalies
    run = a.details["run"]
    assert run == i - 1000 and a.index == a.timestamp == a.details["onset"] == 1000  # the run's first failure
    assert a.threshold == pytest.approx(-math.log10(ERROR_RUN_CHANCE))
    assert a.score == pytest.approx(-math.log10(a.details["chance"])) and abs(a.score) > a.threshold
    assert 0.0 < a.lower < a.expected < a.upper < a.value == 100.0
    assert f"{run} failed spans in a row" in str(a) and "chance" in str(a)


def test_a_refused_value_leaves_a_run_where_it_was():
    """A NaN is refused by the detectors, state unchanged: it also reset the bank's run, so a
    slowdown with a NaN in every other span was never reported."""
    def confirmed_at(stream):
        bank = DetectorBank({"zscore": lambda n: ZScoreDetector(window=64, warmup=8, name=n),
                             "pipeline": lambda n: perfsdk.AlertPipeline(
                                 ZScoreDetector(window=64, warmup=8), learning=50, name=n)}, confirm=3)
        found = {}
        for i, value in enumerate(stream):
            for a in bank.observe("GET /", value, i):
                found.setdefault(a.detector, (i, a.index))
        return found

    base = [10.0 + (i % 5) * 0.1 for i in range(100)]
    slow = [50.0, 51.0, 52.0, 53.0, 54.0]
    plain = confirmed_at(base + slow)
    assert set(plain) == {"GET / [ZScoreDetector]", "GET / [AlertPipeline]"}
    holey = confirmed_at(base + [v for s in slow for v in (s, math.nan)])
    # the same points confirm the same runs, at the same onsets (the NaNs count in the index)
    assert {k: (i - (i - 100) // 2, index - (index - 100) // 2) for k, (i, index) in holey.items()} == plain


def test_a_log_handler_that_raises_never_reaches_the_application():
    """perfsdk's first log line of a fault (a failing span processor's, here) ran the application's
    log handlers unguarded: a handler that raised failed the monitored call. The "init() called again"
    warning too."""
    from opentelemetry.sdk.trace import SpanProcessor

    class Broken(logging.Handler):
        def emit(self, record):
            raise RuntimeError("log sink down")

    class Failing(SpanProcessor):
        def on_end(self, span):
            raise ValueError("another processor's bug")

    provider = TracerProvider()
    provider.add_span_processor(Failing())
    handler = Broken()
    logging.getLogger().addHandler(handler)
    sdk = perfsdk.init(tracer_provider=provider, sample_resources=False)
    try:
        @perfsdk.monitor
        def checkout():
            return 42

        assert checkout() == 42
        assert perfsdk.init(tracer_provider=provider, sample_resources=False) is sdk
        assert sdk.stats()["faults"]["perfsdk logging"] >= 1
    finally:
        logging.getLogger().removeHandler(handler)
        sdk.shutdown()


def test_a_resource_row_that_cannot_be_added_skips_none_of_the_others():
    """The sampler guarded the whole loop of rows: the first that failed skipped the rest, uncounted."""
    class FailsOnce:
        def __init__(self):
            self.rows = []

        def add(self, row):
            if not self.rows and not getattr(self, "failed", False):
                self.failed = True
                raise OSError("disk full")
            self.rows.append(row)

    faults = Faults()
    sink = AnomalySink(IncidentTracker(lambda n: set()), faults)
    writer = FailsOnce()
    sampler = resources.ResourceSampler(DetectorBank(resource_detectors(), confirm=2), sink, faults, writer=writer)
    try:
        values = sampler.sample()
        assert len(writer.rows) == len(values) - 1 and faults.snapshot()["resource export"] == 1
    finally:
        sink.close()


def test_init_from_an_atexit_hook_is_refused_with_a_clear_error(tmp_path):
    """init() in an atexit hook returned a handle whose spans were never written (its own exit hook,
    registered then, never ran), or failed deep inside OpenTelemetry."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import atexit, sys
        import perfsdk

        def late():
            try:
                perfsdk.init(service_name="shop", export_dir=sys.argv[1], sample_resources=False)
            except RuntimeError as exc:
                print("refused:", exc)
            else:
                print("started")

        atexit.register(late)
    """)
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "refused: perfsdk.init() called while the interpreter is exiting" in done.stdout, done.stdout + done.stderr


class _Unreadable:
    def __str__(self):
        raise RuntimeError("no text")


def test_a_span_named_with_a_non_string_is_judged_under_its_text_or_counted_invalid(tmp_path):
    """OTel's SDK takes any object as a span's name: a non-str one was a fault a span (the detectors
    refused it), and one whose __str__ raised was lost from the export as a fault, not counted as a span."""
    provider = TracerProvider()
    sdk = perfsdk.init(tracer_provider=provider, service_name=None, export_dir=tmp_path, sample_resources=False)
    tracer = provider.get_tracer("t")
    for name in (42, ("a", "b"), _Unreadable(), "ok"):
        with tracer.start_as_current_span(name):
            pass
    sdk.shutdown()
    stats = sdk.stats()
    assert stats["faults"] == {} and stats["spans_invalid"] == 1
    assert set(stats["per_span"]) == {"42", "('a', 'b')", "ok"}
    names = perfsdk.export.read(tmp_path).column("name").to_pylist()
    assert sorted(names) == sorted(["42", "('a', 'b')", "REDACTED", "ok"])
