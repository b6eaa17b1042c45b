"""The compiled modules: present, fresh, and a helpful error when they are not."""

from __future__ import annotations

import subprocess
import sys
import textwrap

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
