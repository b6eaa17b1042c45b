"""The compiled modules: present, fresh, and a helpful error when they are not."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import perfsdk._native as native
from perfsdk._native import kernels


def test_layout_of_compiled_module_matches_kernels():
    native._check_fresh()


def test_stale_layout_is_reported_with_rebuild_hint(monkeypatch):
    monkeypatch.setattr(kernels, "ZS_HEADER", kernels.ZS_HEADER + 1)
    with pytest.raises(ImportError, match="stale.*pip install -e ."):
        native._check_fresh()


def test_missing_extension_fails_at_import_with_rebuild_hint():
    code = textwrap.dedent(
        """
        import importlib.abc, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name == "perfsdk._native._zscore":
                    raise ImportError("No module named 'perfsdk._native._zscore'")
        sys.meta_path.insert(0, Block())
        try:
            import perfsdk
        except ImportError as exc:
            print(exc)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "compiled extensions are missing" in out.stdout
    assert "pip install -e ." in out.stdout
