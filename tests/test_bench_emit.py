"""`perfsdk testgen --bench-out`: a pytest-benchmark module for the hottest traced functions.

A real application module is traced by perfsdk in a subprocess (its functions decorated
with ``@monitor``, their spans exported to Arrow files); the module is generated from the
files, then run by pytest-benchmark in another subprocess, as a user would run it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pytest

from perfsdk.cli import main
from perfsdk.export.schema import FUNCTIONS_KEY
from perfsdk.testgen.bench import HotFunction, bench_module_source, hot_functions

APP = '''
import asyncio
import perfsdk


@perfsdk.monitor
def render_page():
    return sum(i * i for i in range(3000))


@perfsdk.monitor("pricing.quote")
def quote(sku, qty=1):
    return len(sku) * qty


@perfsdk.monitor
async def fetch_stock():
    await asyncio.sleep(0)
    return 3


@perfsdk.monitor
def rows():
    yield from range(50)


class Cart:
    @perfsdk.monitor
    def total(self):
        return 1


def make_helper():
    @perfsdk.monitor
    def helper():
        return 1
    return helper


def run(export_dir):
    sdk = perfsdk.init(service_name="shop", export_dir=export_dir)
    for _ in range(200):
        render_page()
    for _ in range(100):
        quote("sku-1", qty=2)
        asyncio.run(fetch_stock())
        list(rows())
        Cart().total()
    make_helper()()
    sdk.shutdown()
'''


def _env(*paths: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([*map(str, paths), os.environ.get("PYTHONPATH", "")])}


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    """An export directory of the app's traced calls, and the app's directory."""
    root = tmp_path_factory.mktemp("bench_emit")
    app = root / "app"
    app.mkdir()
    (app / "shopapp.py").write_text(APP)
    export = root / "export"
    subprocess.run([sys.executable, "-c", f"import shopapp; shopapp.run({str(export)!r})"],
                   env=_env(app), check=True, timeout=120)
    return export, app


def test_the_hottest_functions_are_ranked_by_total_time_and_named_by_their_module(traced):
    export, _ = traced
    found = {f.span_name: f for f in hot_functions(export, top=20)}
    assert set(found) == {"render_page", "pricing.quote", "fetch_stock", "rows", "Cart.total",
                          "make_helper.<locals>.helper"}
    assert found["render_page"].calls == 200 and found["pricing.quote"].calls == 100
    assert found["pricing.quote"].target == "shopapp:quote"  # a custom span name still finds its function
    assert found["Cart.total"].target == "shopapp:Cart.total"
    assert "inside another function" in found["make_helper.<locals>.helper"].skip_reason
    for f in found.values():
        assert 0 < f.p50_s <= f.p95_s and f.total_s > 0
    ranked = hot_functions(export, top=2)
    assert [f.total_s for f in ranked] == sorted((f.total_s for f in found.values()), reverse=True)[:2]


def test_the_emitted_module_benchmarks_what_it_can_and_says_what_it_needs(traced, tmp_path, capsys):
    export, app = traced
    bench = tmp_path / "bench_hot.py"
    assert main(["testgen", "--from", str(export), "--bench-out", str(bench), "--top", "10"]) == 0
    assert "render_page: 200 calls" in capsys.readouterr().out

    def run_benchmarks() -> tuple[dict[str, dict], str]:
        report = tmp_path / "report.json"
        done = subprocess.run(
            [sys.executable, "-m", "pytest", str(bench), "-q", "-rs", "-p", "no:cacheprovider", "--benchmark-only",
             "--benchmark-min-rounds=3", "--benchmark-max-time=0.01", f"--benchmark-json={report}"],
            env=_env(app), capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        benchmarks = json.loads(report.read_text())["benchmarks"]
        return {b["extra_info"]["span"]: b for b in benchmarks}, done.stdout

    measured, out = run_benchmarks()
    assert set(measured) == {"render_page", "fetch_stock", "rows"}  # no arguments needed
    assert measured["render_page"]["extra_info"]["traced_calls"] == 200
    assert measured["render_page"]["extra_info"]["traced_p95_s"] > 0
    assert "shopapp:quote(sku) takes arguments: set CASES['shopapp:quote'] = (args, kwargs)" in out
    assert "shopapp:Cart.total(self) takes arguments" in out
    assert "defined inside another function" in out

    # the user says how to call them, and they are benchmarked too
    with bench.open("a") as f:
        f.write(textwrap.dedent("""
            import shopapp
            CASES["shopapp:quote"] = (("sku-1",), {"qty": 2})
            CASES["shopapp:Cart.total"] = ((shopapp.Cart(),), {})
        """))
    measured, _ = run_benchmarks()
    assert {"pricing.quote", "Cart.total"} <= set(measured)


def test_names_from_the_traces_never_become_code(tmp_path):
    hostile = '"""\nimport os; os._exit(3)\n#'
    functions = [HotFunction(hostile, "", 5, 1.0, 0.1, 0.2, f"not importable: {hostile}")]
    source = bench_module_source(functions, source='x"""\nimport os; os._exit(4)')
    namespace: dict = {}
    exec(compile(source, "bench_hot.py", "exec"), namespace)  # nothing runs but the definitions
    assert namespace["TRACED"][0][0] == hostile


def test_targets_that_are_not_the_applications_are_not_imported():
    spans = pa.table({"name": ["a", "b", "c", "d"], "duration_ms": [1.0, 2.0, 3.0, 4.0]}).replace_schema_metadata(
        {FUNCTIONS_KEY: json.dumps({"a": ["os:abort"], "b": ["__main__:main"], "c": ["x;y:z"],
                                    "d": ["app:one", "app:two"]})})
    reasons = {f.span_name: f.skip_reason for f in hot_functions(spans)}
    assert "standard library" in reasons["a"]
    assert "__main__" in reasons["b"]
    assert "not an importable name" in reasons["c"]
    assert "several functions" in reasons["d"]
    assert all(not f.target for f in hot_functions(spans))


def test_bad_requests_get_clear_errors(traced, tmp_path, capsys):
    export, _ = traced
    assert main(["testgen", "--from", str(export)]) == 2
    assert "say what to write" in capsys.readouterr().err
    assert main(["testgen", "--from", str(export), "--bench-out", str(tmp_path / "b.py"), "--top", "0"]) == 2
    assert "--top must be at least 1" in capsys.readouterr().err
    empty = tmp_path / "nothing"
    empty.mkdir()
    assert main(["testgen", "--from", str(empty), "--bench-out", str(tmp_path / "b.py")]) == 2
    assert "no span of a function traced with @perfsdk.monitor" in capsys.readouterr().err
    assert not (tmp_path / "b.py").exists()
    with pytest.raises(ValueError, match="top must be an integer >= 1"):
        hot_functions(export, top=0)


def test_a_function_decorated_after_export_began_is_named_in_the_files(tmp_path):
    import perfsdk
    from perfsdk.export.reader import traced_functions

    @perfsdk.monitor
    def before_init():
        return 1

    sdk = perfsdk.init(service_name="late", export_dir=str(tmp_path), sample_resources=False)
    try:
        before_init()
        assert sdk.processor.export.drain(10.0)  # written: its file is open, its metadata made

        @perfsdk.monitor
        def decorated_later():
            return 2

        decorated_later()
    finally:
        sdk.shutdown()
    named = traced_functions(tmp_path)
    assert {"test_a_function_decorated_after_export_began_is_named_in_the_files.<locals>.before_init",
            "test_a_function_decorated_after_export_began_is_named_in_the_files.<locals>.decorated_later"} <= set(named)


def test_bad_function_metadata_is_skipped_not_fatal():
    deep = "[" * 100_000 + "]" * 100_000
    for document in ('{"a": []}', deep, "not json", '["a"]', '{"a": "b"}'):
        spans = pa.table({"name": ["a"], "duration_ms": [1.0]}).replace_schema_metadata({FUNCTIONS_KEY: document})
        assert hot_functions(spans) == []
    with pytest.raises(ValueError, match="no duration_ms column"):
        hot_functions(pa.table({"name": ["a"]}))


def test_odd_durations_and_missing_modules_still_make_a_module_that_runs(tmp_path):
    functions = [HotFunction("gone", "no_such_module_here:f", 3, float("inf"), float("nan"), float("inf"))]
    bench = tmp_path / "bench_odd.py"
    bench.write_text(bench_module_source(functions))
    done = subprocess.run([sys.executable, "-m", "pytest", str(bench), "-q", "-rs", "-p", "no:cacheprovider",
                           "--benchmark-only"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no_such_module_here:f cannot be imported here: ModuleNotFoundError" in done.stdout
