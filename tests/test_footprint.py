"""A small footprint: what `import perfsdk` and `perfsdk.init()` load, and what waits for first use."""

from __future__ import annotations

import subprocess
import sys
import textwrap

HEAVY = ("numba", "llvmlite", "scipy", "statsmodels", "pandas", "pyarrow")


def loaded_after(code: str, watch: tuple[str, ...] = HEAVY) -> set[str]:
    script = textwrap.dedent(f"""
        import sys
        {textwrap.indent(textwrap.dedent(code), "        ").strip()}
        print(" ".join(m for m in {watch!r} if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


def test_import_and_init_load_no_heavy_library():
    assert loaded_after("import perfsdk") == set()
    out = subprocess.run([sys.executable, "-c", "import sys, perfsdk; print(sorted(m for m in sys.modules "
                          "if m.split('.')[0] in ('numpy', 'perfsdk') or m.startswith('opentelemetry.sdk')))"],
                         capture_output=True, text=True, check=True)
    # names load on first use: the package itself is its version and the runtime layer
    assert eval(out.stdout) == ["perfsdk", "perfsdk._runtime", "perfsdk._runtime.callbacks", "perfsdk._runtime.faults",
                                "perfsdk._runtime.files", "perfsdk._runtime.forks", "perfsdk._runtime.hooks",
                                "perfsdk._runtime.lazy", "perfsdk._runtime.locks", "perfsdk._runtime.startup", "perfsdk._runtime.traced",
                                "perfsdk._runtime.validate", "perfsdk._runtime.worker", "perfsdk._version"]
    assert loaded_after("""
        import perfsdk
        from opentelemetry.sdk.trace import TracerProvider
        sdk = perfsdk.init(tracer_provider=TracerProvider(), sample_resources=False)
        @perfsdk.monitor
        def f(): return 1
        [f() for _ in range(100)]
        cache = perfsdk.AdaptiveCache(100)
        [cache.get_or_load(k, str) for k in range(1000)]
        perfsdk.ZScoreDetector().update(1.0)
        sdk.shutdown()
    """) == set()


def test_the_span_path_runs_without_numpy_through_learning_and_an_incident():
    """Detector state is a buffer of doubles read through memoryviews: a service that only
    traces never loads numpy (7,200 objects for its collector to scan), past the default
    detector's learning period and through an anomaly and its explanation."""
    assert loaded_after("""
        import perfsdk
        from opentelemetry.sdk.trace import TracerProvider
        found = []
        sdk = perfsdk.init(tracer_provider=TracerProvider(), sample_resources=False, on_anomaly=found.append)
        tracer = sdk.tracer_provider.get_tracer("t")
        t = 10**15
        for i in range(1200):  # 1 ms a request, then 100 ms: one incident
            span = tracer.start_span("GET /cart", start_time=t)
            t += 1_000_000 + 10_000 * (i % 7) + (99_000_000 if i >= 1000 else 0)
            span.end(end_time=t)
            t += 1_000_000
        sdk.force_flush()
        assert found and sdk.stats()["anomalies"] >= 1, sdk.stats()
        assert found[0].index == 1000 and "std above the expected" in str(found[0]), found[0]
        sdk.shutdown()
    """, watch=(*HEAVY, "numpy")) == set()


def test_heavy_libraries_load_when_first_needed():
    assert loaded_after("""
        import perfsdk
        perfsdk.ZScoreDetector(window=8).update_many([1.0] * 20)
    """) == {"numba", "llvmlite", "scipy"}  # numba brings scipy
    assert "pyarrow" in loaded_after("""
        import tempfile, perfsdk
        from opentelemetry.sdk.trace import TracerProvider
        perfsdk.init(tracer_provider=TracerProvider(), export_dir=tempfile.mkdtemp(), sample_resources=False).shutdown()
    """)


def test_exporting_spans_and_tables_does_not_load_pandas():
    """pyarrow's ``pa.array`` imports pandas (33,000 objects for the host's collector to scan);
    the writers build their columns from buffers instead. Nor numpy.ma (``np.unique`` imports it:
    3,000 objects and cyclic garbage, made while the host serves)."""
    assert not {"pandas", "numpy.ma"} & loaded_after("""
        import tempfile, perfsdk
        from opentelemetry.sdk.trace import TracerProvider
        sdk = perfsdk.init(tracer_provider=TracerProvider(), export_dir=tempfile.mkdtemp(), sample_resources=False)
        tracer = sdk.tracer_provider.get_tracer("t")
        for i in range(50):
            with tracer.start_as_current_span("GET /a", attributes={"http.target": "/a?x=1", "n": i}):
                pass
        sdk.export.anomalies.add({"series": "GET /a", "detector": "z", "service.name": "s", "details": [("k", "v")]})
        sdk.export.decisions.add({"timestamp": 1, "service.name": "s", "controller": "c", "mode": "auto", "state": 1,
                                  "action": "hold", "applied": True, "q_values": [0.0, 1.0],
                                  "state_features": {"hit_ratio": 0.5}})
        sdk.force_flush()
        assert sdk.stats()["export"]["spans_exported"] == 50, sdk.stats()
        assert not sdk.stats()["faults"], sdk.stats()
        sdk.shutdown()
    """, watch=("pandas", "numpy.ma"))


MEMORY = textwrap.dedent("""
    import functools, gc, sys
    def rss_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 / 2**20
    import perfsdk
    perfsdk.AdaptiveCache  # its modules (numpy, the compiled core) are not the cache's memory
    which, n = sys.argv[1], int(sys.argv[2])
    gc.collect(); before = rss_mb()
    if which == "empty":
        cache = perfsdk.AdaptiveCache(n)
    elif which == "adaptive":
        cache = perfsdk.AdaptiveCache(n)
        for k in range(n):
            cache[k] = k
    else:
        @functools.lru_cache(maxsize=n)
        def f(k):
            return k
        for k in range(n):
            f(k)
    gc.collect()
    print(rss_mb() - before)
""")


def added_mb(which: str, n: int) -> float:
    out = subprocess.run([sys.executable, "-c", MEMORY, which, str(n)], capture_output=True, text=True, check=True)
    return float(out.stdout)


def test_cache_memory_follows_the_entries_held_not_the_limits():
    if not sys.platform.startswith("linux"):
        import pytest
        pytest.skip("reads /proc/self/statm")
    assert added_mb("empty", 10**7) < 16  # was 2.2 GB: every array sized for max_capacity up front
    held, lru = added_mb("adaptive", 300_000), added_mb("lru", 300_000)
    assert held <= 1.5 * lru, (held, lru)


GC_OBJECTS = textwrap.dedent("""
    import gc, sys, tempfile
    from opentelemetry.sdk.trace import TracerProvider
    provider = TracerProvider()
    if sys.argv[1] != "otel":
        import perfsdk
        sdk = perfsdk.init(tracer_provider=provider, sample_resources=False,
                           export_dir=tempfile.mkdtemp() if sys.argv[1] == "export" else None)
        with provider.get_tracer("t").start_as_current_span("GET /a"):
            pass
        sdk.force_flush()
    gc.collect()
    print(len(gc.get_objects()))
""")


def tracked_objects(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", GC_OBJECTS, mode], capture_output=True, text=True, check=True)
    return int(out.stdout)


def test_objects_the_host_collector_scans():
    """A full collection's time follows the objects it tracks (timing it here would be noise)."""
    otel = tracked_objects("otel")
    assert tracked_objects("init") <= 1.25 * otel  # 1.11x: no numpy (detector state is a buffer of doubles)
    assert tracked_objects("export") <= 1.80 * otel  # + pyarrow; no pandas, no pyarrow.compute


def test_start_up_objects_go_to_the_oldest_generation_without_bringing_on_a_full_collection():
    """perfsdk's start-up (its lazy imports, init) pauses the collector and moves what it made
    straight to the oldest generation (perfsdk._runtime.startup): nothing it made is collected
    young, and no collection ran inside it; the host's own settings are left as they were."""
    script = """
import gc
from perfsdk._runtime import long_lived_startup
gc.collect()  # past the first full collection, as a host serving is
full = gc.get_stats()[-1]["collections"]
young = gc.get_stats()[0]["collections"]
with long_lived_startup():
    assert not gc.isenabled()
    made = [[i] for i in range(50_000)]  # would bring on ~70 young collections
assert gc.isenabled() and gc.get_stats()[0]["collections"] == young and gc.get_count()[1:] == (0, 0)
oldest = {id(o) for o in gc.get_objects(generation=2)}
assert all(id(o) in oldest for o in made[::997])
assert gc.get_stats()[-1]["collections"] == full
gc.freeze()  # a host that froze its own objects: left alone
with long_lived_startup():
    assert gc.isenabled()
assert gc.get_freeze_count() > 0
gc.unfreeze()
gc.disable()  # a host that turned the collector off: left off
with long_lived_startup():
    pass
assert not gc.isenabled()
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr
