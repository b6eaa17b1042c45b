"""What the package declares and ships: its dependencies (every third-party import declared, the
floors that work), its license, and a wheel without the generated C (an opt-in build)."""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib", reason="Python 3.11's tomllib reads pyproject.toml (these checks "
                                  "concern the project's files, not the interpreter: 3.11+ runs them)")

ROOT = Path(__file__).resolve().parents[1]
if not (ROOT / "pyproject.toml").is_file() or not (ROOT / "perfsdk").is_dir():
    pytest.skip("not in a source checkout", allow_module_level=True)
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
#: Imports that an extra (or the host) provides, not the core install: module prefix -> (extra, distribution).
OPTIONAL_IMPORTS = {
    "flask": ("demo", "flask"),
    "werkzeug": ("demo", "flask"),  # Flask's own WSGI layer
    "sqlalchemy": ("demo", "sqlalchemy"),  # and AdaptivePool's adapter, for a service that has it
    "opentelemetry.instrumentation.flask": ("demo", "opentelemetry-instrumentation-flask"),
    "opentelemetry.exporter.otlp.proto.http": ("otlp", "opentelemetry-exporter-otlp-proto-http"),
    "distributed": ("dask", "dask"),  # dask[distributed]
    "pytest": (None, None),  # the perf gate is a pytest plugin: it runs inside pytest
    "_pytest": (None, None),
}


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.-]+", requirement).group()).lower()


def _imports() -> dict[str, set[str]]:
    """Every absolute import of a module outside the standard library and perfsdk -> the files."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / "perfsdk").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [f"{node.module}.{alias.name}" for alias in node.names]  # maybe a submodule
            else:
                continue
            for module in modules:
                if module.split(".")[0] not in sys.stdlib_module_names and module.split(".")[0] != "perfsdk":
                    found.setdefault(module, set()).add(str(path.relative_to(ROOT)))
    return found


def _distribution(module: str, candidates: dict[str, list[str]]) -> str | None:
    """The installed distribution whose files hold ``module``'s top package, or for a namespace
    package (``opentelemetry``), its first regular package on the way down."""
    parts = module.split(".")
    for depth in range(1, len(parts) + 1):
        try:
            spec = importlib.util.find_spec(".".join(parts[:depth]))  # imports the parents only
        except (ImportError, ValueError):  # ``from X import name``: no module X.name
            return None
        if spec is None:
            return None
        if spec.origin and spec.origin not in ("built-in", "frozen"):
            origin = Path(spec.origin).resolve()
            for name in candidates.get(parts[0], ()):
                files = importlib.metadata.distribution(name).files or ()
                if any(f.name == origin.name and Path(f.locate()).resolve() == origin for f in files):
                    return _name(name)
            return None
    return None


def test_every_third_party_import_is_declared():
    """scipy was imported directly (perf gate, traffic model, pool forecast) but came only through
    statsmodels: a statsmodels that dropped it would break perfsdk without a word from pip."""
    core = {_name(r) for r in PROJECT["project"]["dependencies"]}
    extras = {extra: {_name(r) for r in reqs} for extra, reqs in PROJECT["project"]["optional-dependencies"].items()}
    candidates = importlib.metadata.packages_distributions()
    problems = []
    for module, files in sorted(_imports().items()):
        optional = next((v for k, v in OPTIONAL_IMPORTS.items() if module == k or module.startswith(k + ".")), None)
        if optional is not None:
            extra, dist = optional
            if extra is not None and dist not in extras.get(extra, set()):
                problems.append(f"{module}: the {extra!r} extra does not declare {dist}")
            continue
        dist = _distribution(module, candidates)
        if dist is None:
            problems.append(f"{module} ({', '.join(sorted(files))}): not installed here, or no distribution owns it")
        elif dist not in core:
            problems.append(f"{module} ({', '.join(sorted(files))}): {dist} is not a declared dependency")
    assert not problems, "\n".join(problems)


def _floor(name: str) -> tuple[int, ...]:
    requirement = next(r for r in PROJECT["project"]["dependencies"] if _name(r) == name)
    return tuple(int(x) for x in re.search(r">=\s*([0-9.]+)", requirement).group(1).split("."))


def test_the_floors_that_were_found_wanting():
    # pyarrow 14's MapArray.from_arrays takes no type= (apache/arrow GH-39515, in 15): the span export
    # failed on every batch
    assert _floor("pyarrow") >= (15,)
    # mannwhitneyu(method=) is scipy 1.7's; 1.7 caps numpy below 1.23, under perfsdk's numpy floor
    assert _floor("scipy") >= (1, 8) and _floor("numpy") >= (1, 23)
    # the SPDX license string and license-files (PEP 639): setuptools 69-76 refuse the file
    setuptools = next(r for r in PROJECT["build-system"]["requires"] if _name(r) == "setuptools")
    assert tuple(int(x) for x in re.search(r">=\s*([0-9.]+)", setuptools).group(1).split(".")) >= (77,)


def test_the_license_is_there_and_shipped():
    assert PROJECT["project"]["license"] == "MIT"
    assert PROJECT["project"]["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "Copyright (c) 2026 perfsdk contributors" in text
    assert 'THE SOFTWARE IS PROVIDED "AS IS"' in text


def test_the_generated_c_is_left_out_of_wheel_and_sdist():
    assert "*.c" in PROJECT["tool"]["setuptools"]["exclude-package-data"]["perfsdk._native"]
    assert "exclude perfsdk/_native/*.c" in (ROOT / "MANIFEST.in").read_text().splitlines()


def test_the_sdist_ships_no_half_a_test_suite():
    # setuptools' default took tests/test_*.py without conftest.py, the helpers or the benches
    assert "prune tests" in (ROOT / "MANIFEST.in").read_text().splitlines()


@pytest.mark.skipif(os.environ.get("PERFSDK_WHEEL_TEST") != "1",
                    reason="builds the extensions (a minute or more): set PERFSDK_WHEEL_TEST=1")
def test_the_wheel_holds_what_an_install_needs_and_no_c(tmp_path):
    """Built from a copy of the checkout (a build writes into the tree it builds)."""
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", "*.so", "*.c", "_layout.pxi", ".benchmarks",
        ".hypothesis", ".mypy_cache", ".artifacts", "perf-data", "perfsdk-demo"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(source)],
                   check=True)
    (wheel,) = (tmp_path / "dist").glob("perfsdk-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if n.endswith(".c")]
    assert any(re.fullmatch(r"perfsdk-[^/]+\.dist-info/licenses/LICENSE", n) for n in names)
    stems = sorted(p.stem for p in (ROOT / "perfsdk" / "_native").glob("*.pyx"))
    for stem in stems:
        assert any(re.fullmatch(rf"perfsdk/_native/{stem}\.[^/]+\.(so|pyd)", n) for n in names), stem
        assert f"perfsdk/_native/{stem}.pyi" in names and f"perfsdk/_native/{stem}.pyx" in names
    assert {"perfsdk/py.typed", "perfsdk/data/sample_latency.csv", "perfsdk/_native/_layout.pxi"} <= set(names)
    assert wheel.stat().st_size < 5_000_000
