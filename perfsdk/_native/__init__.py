"""Compiled hot paths: Cython per-event objects and Numba batch kernels.

Importing this package checks that the Cython extensions were built and match
the Python side: every compiled module carries the state layout it was built
from (``layout.py``, through the generated ``_layout.pxi``), and the ARIMA
engines must place the variable-length parts of its state where the Numba
kernels do. A missing or stale build fails here, with the command that fixes
it, instead of as a bare ImportError or a silent mismatch deep in a detector.

In a source checkout (perfsdk's own ``setup.py`` and ``pyproject.toml`` above the
package, not under site-packages: built in place, or installed editable) a build
also falls behind when a ``.pyx`` / ``.pxd`` / ``.pxi`` is edited after it, and
the fix is rebuilding. An installed copy (a wheel) has no build of its own to go
stale -- its sources' times are whenever it was unpacked -- so there only the
layouts are checked, and the fix is reinstalling.

Nothing here loads numpy: the per-event engines work on ``state_buffer``s, and
the span export's column buffers (numpy arrays, for pyarrow) load numpy when
the export starts (pyarrow imports it too).
"""

from __future__ import annotations

import importlib.machinery
from pathlib import Path
from typing import TYPE_CHECKING

from perfsdk._native import kernels, layout
from perfsdk._version import __version__


def _source_checkout(package: Path) -> bool:
    """Whether ``package`` (this directory) is in perfsdk's source checkout rather than installed:
    perfsdk's own ``setup.py`` and ``pyproject.toml`` two levels up, and no site-packages on the way."""
    if {"site-packages", "dist-packages"} & set(package.parts):
        return False
    root = package.parent.parent
    try:
        return (root / "setup.py").is_file() and 'name = "perfsdk"' in (root / "pyproject.toml").read_text("utf-8")
    except (OSError, UnicodeDecodeError):
        return False


_CHECKOUT = _source_checkout(Path(__file__).parent)
_REBUILD_HINT = (
    "Rebuild them from the project root with `pip install -e .` "
    "(or `python setup.py build_ext --inplace`)."
)
_REINSTALL_HINT = (
    "This installed perfsdk is incomplete or mixes files of two builds: reinstall it "
    f"(`pip install --force-reinstall --no-deps perfsdk=={__version__}`)."
)


def _hint() -> str:
    """What fixes a bad build: rebuilding it in a source checkout, reinstalling an installed copy."""
    return _REBUILD_HINT if _CHECKOUT else _REINSTALL_HINT


try:
    from perfsdk._native import (
        _arima, _bankpath, _cache, _pipeline, _pool, _qlearn, _spancols, _spanpath, _state, _zscore)
except ImportError as exc:  # pragma: no cover - exercised by a subprocess test
    raise ImportError(
        f"perfsdk's compiled extensions are missing ({exc}). {_hint()}"
    ) from exc


def _check_fresh() -> None:
    here = Path(__file__).parent
    expected = layout.constants()
    for module in (_zscore, _arima, _qlearn, _cache, _pipeline, _bankpath):
        if module.LAYOUT != expected:
            raise ImportError(
                f"perfsdk's compiled extension {module.__name__} is stale: its state layout "
                f"does not match perfsdk/_native/layout.py. {_hint()}"
            )
    # the variable-length parts of an ARIMA state: the same offsets in both engines
    for p, q, m, ntaps, history in ((0, 0, 0, 0, 1), (2, 1, 1, 1, 7), (3, 4, 26, 3, 512)):
        offsets = layout.arima_layout(p, q, m, ntaps, history)
        state = _state.state_buffer(offsets["size"])
        for slot, value in zip((layout.AR_P, layout.AR_Q, layout.AR_M, layout.AR_NTAPS, layout.AR_HISTORY),
                               (p, q, m, ntaps, history)):
            state[slot] = value
        core = _arima.ArimaCore()
        core._bind(state)
        if core.offsets != offsets:
            raise ImportError(
                f"perfsdk's compiled extension {_arima.__name__} places the ARIMA state's parts at "
                f"{core.offsets}, the Numba kernels at {offsets}. {_hint()}"
            )
    if _CHECKOUT:  # an installed copy's file times say when it was unpacked, not when it was built
        stale = _older_than_sources(here)
        if stale:
            raise ImportError(f"{stale} {_REBUILD_HINT}")


def _older_than_sources(here: Path) -> str | None:
    """Which compiled extension in ``here`` is older than a source it was built from, if one is."""
    # the included and cimported sources (.pxi, .pxd) may change any extension; _layout.pxi is layout.py's
    included = [p for p in [*here.glob("*.pxi"), *here.glob("*.pxd")] if p.name != "_layout.pxi"]
    # layout.py is checked by content above (a new function there rebuilds nothing)
    # this interpreter's builds only: another Python's, built beside them later, makes no stale one fresh
    built = [p for p in here.glob("_*.*") if p.name.endswith(importlib.machinery.EXTENSION_SUFFIXES[0])]
    for source in sorted([*here.glob("*.pyx"), *included]):  # every extension's source
        compiled = [p for p in built if p.name.startswith(source.stem + ".")] if source.suffix == ".pyx" else built
        if compiled and source.stat().st_mtime > max(p.stat().st_mtime for p in compiled) + 1:
            return f"perfsdk's compiled extension {compiled[0].name} is older than {source.name}."
    return None


_check_fresh()

ZScoreCore = _zscore.ZScoreCore
ArimaCore = _arima.ArimaCore
QCore = _qlearn.QCore
CacheCore = _cache.CacheCore
CachedFunction = _cache.CachedFunction
PipelineCore = _pipeline.PipelineCore
state_buffer = _state.state_buffer
if TYPE_CHECKING:
    from perfsdk._native._state import Slots as Slots  # what state_buffer returns, typed (only a stub name)
from perfsdk._native._spancols import (  # noqa: E402 (after the build check)
    KIND_NAMES, STATUS_NAMES, SpanCollector, SpanColumns, kept_attributes, redact_texts, take_strings)
from perfsdk._native._spanpath import SpanPath  # noqa: E402
from perfsdk._native._bankpath import BankPath, stepping  # noqa: E402
from perfsdk._native._pool import SAMPLES, IntervalRecord, Lent, LendingPath, Waiter  # noqa: E402

__all__ = ["KIND_NAMES", "SAMPLES", "STATUS_NAMES", "ArimaCore", "BankPath", "CacheCore", "CachedFunction", "IntervalRecord",
           "Lent", "LendingPath", "PipelineCore", "QCore", "SpanCollector", "SpanColumns", "SpanPath", "Waiter",
           "ZScoreCore", "kept_attributes", "kernels", "layout", "redact_texts", "state_buffer", "stepping", "take_strings"]
