"""The compiled modules: present, fresh, and a helpful error when they are not."""

from __future__ import annotations

import importlib.machinery
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import perfsdk._native as native
from perfsdk._native import _arima, kernels, kernels_arima, layout


def test_layout_of_compiled_module_matches_kernels():
    native._check_fresh()


def test_one_layout_source_for_both_engines():
    """The Numba kernels read their slots from layout.py, and so do the compiled modules
    (through the _layout.pxi that setup.py generates from it)."""
    assert kernels_arima.AR_HEADER is layout.AR_HEADER and kernels.ZS_HEADER == layout.ZS_HEADER
    assert _arima.LAYOUT == layout.constants()


@pytest.mark.parametrize("slot", ["ZS_HEADER", "AR_COUNT", "QL_STEPS", "CACHE_GHOST_BANDS"])
def test_stale_layout_is_reported_with_rebuild_hint(monkeypatch, slot):
    monkeypatch.setattr(layout, slot, getattr(layout, slot) + 1)
    with pytest.raises(ImportError, match="stale.*pip install -e ."):
        native._check_fresh()


def test_arima_engines_disagreeing_on_variable_offsets_is_reported(monkeypatch):
    """The variable-length parts of an ARIMA state are covered too."""
    real = layout.arima_layout

    def shifted(*args):
        offsets = real(*args)
        return {**offsets, "elag": offsets["elag"] + 1}

    monkeypatch.setattr(layout, "arima_layout", shifted)
    with pytest.raises(ImportError, match="ARIMA state's parts"):
        native._check_fresh()


def test_missing_extension_fails_at_first_use_with_rebuild_hint():
    code = textwrap.dedent(
        """
        import importlib.abc, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name == "perfsdk._native._zscore":
                    raise ImportError("No module named 'perfsdk._native._zscore'")
        sys.meta_path.insert(0, Block())
        import perfsdk  # loads no extension yet: names load on first use
        try:
            perfsdk.ZScoreDetector
        except ImportError as exc:
            print(exc)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "compiled extensions are missing" in out.stdout
    assert "pip install -e ." in out.stdout


@pytest.mark.parametrize("n", [2**62, 2**60])
def test_a_state_too_large_to_address_is_refused_not_wrapped_around(n):
    """``8 * n`` overflowed: 2**62 slots made an empty buffer that the engines wrote past."""
    with pytest.raises(ValueError, match="larger than the address space"):
        native.state_buffer(n)


# -- a source checkout vs an installed copy -----------------------------------------------------------

def _project(root, name="perfsdk"):
    root.mkdir(parents=True)
    (root / "setup.py").write_text("")
    (root / "pyproject.toml").write_text(f'[project]\nname = "{name}"\n')
    package = root / "perfsdk" / "_native"
    package.mkdir(parents=True)
    return package


def test_a_source_checkout_is_told_from_an_installed_copy(tmp_path):
    assert native._source_checkout(_project(tmp_path / "src"))
    assert not native._source_checkout(_project(tmp_path / "lib" / "site-packages"))  # even with a setup.py beside
    assert not native._source_checkout(_project(tmp_path / "app", name="shop"))  # installed into another project
    bare = tmp_path / "target" / "perfsdk" / "_native"
    bare.mkdir(parents=True)
    assert not native._source_checkout(bare)
    here = Path(native.__file__).parent
    if (here.parent.parent / "setup.py").is_file() and "site-packages" not in here.parts:
        assert native._CHECKOUT  # these tests, run from the checkout


def test_an_extension_older_than_its_sources_is_named(tmp_path):
    built = tmp_path / f"_zscore{importlib.machinery.EXTENSION_SUFFIXES[0]}"  # this interpreter's build
    for name in ("_zscore.pyx", "_zscore.pxd", "_clock.pxi", "_layout.pxi", built.name):
        (tmp_path / name).write_text("")
    assert native._older_than_sources(tmp_path) is None
    os.utime(tmp_path / "_layout.pxi", (time.time() + 60, time.time() + 60))  # layout.py's: checked by content
    assert native._older_than_sources(tmp_path) is None
    os.utime(tmp_path / "_clock.pxi", (time.time() + 60, time.time() + 60))
    assert native._older_than_sources(tmp_path) == f"perfsdk's compiled extension {built.name} is older than _clock.pxi."
    other = tmp_path / "_zscore.cpython-399-x86_64-linux-gnu.so"  # another Python's build, newer: no excuse
    other.write_text("")
    os.utime(other, (time.time() + 120, time.time() + 120))
    assert native._older_than_sources(tmp_path) == f"perfsdk's compiled extension {built.name} is older than _clock.pxi."


def test_an_installed_copy_is_not_judged_by_its_file_times(monkeypatch):
    """A wheel's files are dated when it was unpacked: a .pyx written after its .so said "stale" and
    told a wheel's user to run `pip install -e .` from a project root they do not have."""
    monkeypatch.setattr(native, "_older_than_sources", lambda here: "perfsdk's compiled extension X is older than Y.")
    with pytest.raises(ImportError, match=r"older than Y\. Rebuild .*pip install -e \."):
        native._check_fresh()
    monkeypatch.setattr(native, "_CHECKOUT", False)
    native._check_fresh()


def test_an_installed_copy_with_a_stale_layout_is_told_to_reinstall(monkeypatch):
    monkeypatch.setattr(native, "_CHECKOUT", False)
    monkeypatch.setattr(layout, "ZS_HEADER", layout.ZS_HEADER + 1)
    with pytest.raises(ImportError, match="stale") as caught:
        native._check_fresh()
    assert "pip install --force-reinstall --no-deps perfsdk==" in str(caught.value)
    assert "pip install -e" not in str(caught.value)


@pytest.mark.parametrize("where", ["site-packages", "checkout"])
def test_sources_newer_than_the_build_only_fail_a_checkout(tmp_path, where):
    """The package copied as a wheel installs it (into site-packages) and as a source checkout, its
    .pyx files then dated after its .so files: imported in a fresh process."""
    here = Path(native.__file__).parent.parent
    if not any(here.joinpath("_native").glob("_zscore.*.so")):
        pytest.skip("no in-place build to copy")
    root = tmp_path / ("lib/python/site-packages" if where == "site-packages" else "src")
    shutil.copytree(here, root / "perfsdk", ignore=shutil.ignore_patterns("*.c", "__pycache__"))
    if where == "checkout":
        (root / "setup.py").write_text("")
        (root / "pyproject.toml").write_text('[project]\nname = "perfsdk"\n')
    later = time.time() + 60
    for source in (root / "perfsdk" / "_native").glob("*.pyx"):
        os.utime(source, (later, later))
    code = "import perfsdk._native as n; print(n.__file__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(root)})
    if where == "site-packages":
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == str(root / "perfsdk" / "_native" / "__init__.py")
    else:
        assert out.returncode != 0 and "is older than" in out.stderr and "pip install -e ." in out.stderr
