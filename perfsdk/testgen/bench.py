"""Benchmarks for the hottest traced functions: a pytest-benchmark module from the span files.

``@monitor`` records which function each span name stands for (``module:qualname``, in
each span file's metadata). ``hot_functions`` ranks the traced functions by their total
traced time (calls × mean duration: where the service spends its time), and
``bench_module_source`` writes a pytest-benchmark module that imports each one and
benchmarks it, with the traced calls, p50 and p95 in the benchmark's ``extra_info`` beside
its own figures. A function that takes arguments is skipped, naming them, until its entry
in the module's ``CASES`` says how to call it; one that cannot be imported (defined in
``__main__`` or inside another function, or several functions under one span name) is
listed and skipped with the reason.

Names from the traces never become code: every one is written as a Python string literal,
and a target is imported only if it is a dotted name of identifiers.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from perfsdk._runtime import check_int, write_atomically
from perfsdk.export.reader import read, traced_functions

__all__ = ["HotFunction", "bench_module", "bench_module_source", "hot_functions", "write_bench_module"]

_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")


@dataclass(frozen=True)
class HotFunction:
    """One traced function: how often and how long it ran, and where it lives."""

    span_name: str
    target: str  # "module:qualname" to import, or "" when there is none
    calls: int
    total_s: float
    p50_s: float
    p95_s: float
    skip_reason: str = ""  # why it cannot be benchmarked as it stands ("" when it can)


def hot_functions(spans: pa.Table | str | os.PathLike[str], *, top: int = 10) -> list[HotFunction]:
    """The ``top`` traced functions by total traced time, hottest first.

    ``spans`` is an export directory (or a table ``perfsdk.export.read`` returned);
    spans that no ``@monitor`` function stands for (HTTP server spans, a database
    client's) are not functions and are left out.
    """
    check_int("top", top, minimum=1)
    table = spans if isinstance(spans, pa.Table) else read(spans, columns=["name", "duration_ms"])
    missing = {"name", "duration_ms"} - set(table.column_names)
    if missing:
        raise ValueError(f"the spans have no {' or '.join(sorted(missing))} column: not perfsdk's span table")
    functions = traced_functions(table)
    if not functions or table.num_rows == 0:
        return []
    table = table.filter(pc.is_in(table.column("name"), value_set=pa.array(sorted(functions))))
    totals = table.group_by("name").aggregate([("duration_ms", "sum"), ("duration_ms", "count")])
    ranked = sorted(zip(totals.column("name").to_pylist(), totals.column("duration_ms_sum").to_pylist(),
                        totals.column("duration_ms_count").to_pylist()), key=lambda row: (-row[1], row[0]))
    hottest = []
    for name, total_ms, calls in ranked[:top]:
        durations = table.filter(pc.equal(table.column("name"), name)).column("duration_ms").to_numpy()
        p50, p95 = np.quantile(durations, [0.5, 0.95]) / 1000.0  # as the report and the traffic model take them
        target, reason = _importable(functions[name])
        hottest.append(HotFunction(name, target, int(calls), total_ms / 1000.0, float(p50), float(p95), reason))
    return hottest


def _importable(targets: list[str]) -> tuple[str, str]:
    """The one target to import, or "" and why not."""
    if len(targets) > 1:
        return "", f"several functions are traced under this span name: {', '.join(targets)}"
    module, _, qualname = targets[0].partition(":")
    if module == "__main__":
        return "", f"{qualname} is defined in __main__ (the script that ran): move it into a module to benchmark it"
    if module.partition(".")[0] in sys.stdlib_module_names:
        return "", f"{targets[0]}: {module!r} names a module of Python's standard library, not the application's"
    if "<locals>" in qualname or "<lambda>" in qualname:
        return "", f"{module}:{qualname} is defined inside another function: it cannot be imported"
    if not _DOTTED.match(module) or not _DOTTED.match(qualname):
        return "", f"{targets[0]!r} is not an importable name"
    return targets[0], ""


def bench_module_source(functions: list[HotFunction], *, source: str = "the traces") -> str:
    """A pytest-benchmark test module for ``functions`` (see the module's docstring)."""
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    rows = "".join(
        f"    ({f.span_name!r}, {f.target!r}, {f.calls}, {_number(f.total_s)}, {_number(f.p50_s)}, "
        f"{_number(f.p95_s)}, {f.skip_reason!r}),\n" for f in functions)
    cases = "".join(f"    # {f.target!r}: ((), {{}}),\n" for f in functions if f.target)
    return _TEMPLATE.format(count=len(functions), source=_comment(source), generated=generated,
                            rows=rows, cases=cases)


def bench_module(spans: pa.Table | str | os.PathLike[str], *, top: int = 10,
                 source: str | None = None) -> tuple[str, list[HotFunction]]:
    """``bench_module_source`` for the ``top`` hottest functions (``hot_functions``), and those
    functions; a ``ValueError`` when no span stands for a traced function. ``source`` names
    where the spans came from (default: ``spans``, a path)."""
    where = source if source is not None else "the spans" if isinstance(spans, pa.Table) else str(spans)
    functions = hot_functions(spans, top=top)
    if not functions:
        raise ValueError(f"{where}: no span of a function traced with @perfsdk.monitor "
                         f"(its files name none in their metadata)")
    return bench_module_source(functions, source=where), functions


def write_bench_module(spans: str | os.PathLike[str], out: str | os.PathLike[str], *,
                       top: int = 10) -> list[HotFunction]:
    """``bench_module`` for an export directory, written to ``out`` whole (beside it, then
    renamed) or not at all."""
    text, functions = bench_module(spans, top=top)
    write_atomically(out, text)
    return functions


def _number(value: float) -> str:
    """A float as a Python literal (a span file may hold an infinite or missing duration).

    >>> _number(0.00012345678), _number(float("inf")), _number(float("nan"))
    ('0.000123457', "float('inf')", "float('nan')")
    """
    return f"{value:.6g}" if np.isfinite(value) else f"float({str(value)!r})"


def _comment(text: str) -> str:
    """``text`` safe inside the generated docstring: one line, no quotes or backslashes."""
    return "".join(c if c.isprintable() and c not in "\"\\" else "?" for c in text)


_TEMPLATE = '''"""pytest-benchmark tests for the {count} hottest functions traced in {source}.

Generated by ``perfsdk testgen --bench-out`` on {generated}, hottest first (total traced
time). Run: ``pytest THIS_FILE --benchmark-only``. Each benchmark's ``extra_info`` holds the
traced calls, p50 and p95 (in production, with real arguments) beside its own figures.

A function that takes arguments is skipped, naming them, until CASES says how to call it:
``CASES["shop.pricing:quote"] = (("sku-1", 3), {{}})`` (positional, then keyword arguments).
"""

from __future__ import annotations

import asyncio
import collections
import importlib
import inspect

import pytest

#: (span name, "module:qualname", traced calls, total s, p50 s, p95 s, why it is skipped)
TRACED = [
{rows}]

#: "module:qualname" -> (args, kwargs) to call it with.
CASES: dict[str, tuple[tuple, dict]] = {{
{cases}}}


def resolve(target):
    """The function itself: imported, and past perfsdk's tracing wrapper (so a module that starts
    perfsdk on import does not trace and export every benchmark call)."""
    module, _, qualname = target.partition(":")
    try:
        found = importlib.import_module(module)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as exc:
        pytest.skip(f"{{target}} cannot be imported here: {{type(exc).__name__}}: {{exc}}")
    while getattr(found, "__perfsdk_span__", None) is not None:
        found = found.__wrapped__
    return found


def required_parameters(fn):
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p.name for p in parameters if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def run_to_end(fn, args, kwargs, loop):
    """One call of ``fn`` as the application makes it, to the end (awaited, or iterated)."""
    if inspect.iscoroutinefunction(fn):
        return lambda: loop.run_until_complete(fn(*args, **kwargs))
    if inspect.isasyncgenfunction(fn):
        async def drain():
            async for _ in fn(*args, **kwargs):
                pass
        return lambda: loop.run_until_complete(drain())
    if inspect.isgeneratorfunction(fn):
        return lambda: collections.deque(fn(*args, **kwargs), maxlen=0)
    return lambda: fn(*args, **kwargs)


@pytest.fixture(scope="module")
def loop():
    """One event loop for the async functions' calls (a loop a call would dwarf a fast one)."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.mark.parametrize("span, target, calls, total_s, p50_s, p95_s, skip_reason", TRACED,
                         ids=[row[0] for row in TRACED])
def test_traced_function(benchmark, loop, span, target, calls, total_s, p50_s, p95_s, skip_reason):
    if skip_reason:
        pytest.skip(skip_reason)
    fn = resolve(target)
    if target in CASES:
        args, kwargs = CASES[target]
    elif required_parameters(fn):
        pytest.skip(f"{{target}}({{', '.join(required_parameters(fn))}}) takes arguments: "
                    f"set CASES[{{target!r}}] = (args, kwargs)")
    else:
        args, kwargs = (), {{}}
    benchmark.extra_info.update(span=span, traced_calls=calls, traced_total_s=total_s,
                                traced_p50_s=p50_s, traced_p95_s=p95_s)
    benchmark(run_to_end(fn, args, kwargs, loop))
'''
