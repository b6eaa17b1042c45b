"""A small footprint: what `import perfsdk` and `perfsdk.init()` load, and what waits for first use."""

from __future__ import annotations

import subprocess
import sys
import textwrap

HEAVY = ("numba", "llvmlite", "scipy", "statsmodels", "pandas", "pyarrow")


def loaded_after(code: str) -> set[str]:
    script = textwrap.dedent(f"""
        import sys
        {textwrap.indent(textwrap.dedent(code), "        ").strip()}
        print(" ".join(m for m in {HEAVY!r} if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_import_and_init_load_no_heavy_library():
    assert loaded_after("import perfsdk") == set()
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
