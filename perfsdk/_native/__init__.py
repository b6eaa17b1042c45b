"""Compiled hot paths: Cython per-event objects and Numba batch kernels.

Importing this package checks that the Cython extensions were built and match
the Python side (the state layout they share with the Numba kernels). A
missing or stale build fails here, with the command that fixes it, instead of
as a bare ImportError or a silent mismatch deep in a detector.
"""

from __future__ import annotations

from pathlib import Path

from perfsdk._native import kernels

_REBUILD_HINT = (
    "Rebuild them from the project root with `pip install -e .` "
    "(or `python setup.py build_ext --inplace`)."
)

try:
    from perfsdk._native import _arima as _arima
    from perfsdk._native import _qlearn as _qlearn
    from perfsdk._native import _zscore as _zscore
except ImportError as exc:  # pragma: no cover - exercised by a subprocess test
    raise ImportError(
        f"perfsdk's compiled extensions are missing ({exc}). {_REBUILD_HINT}"
    ) from exc


def _check_fresh() -> None:
    here = Path(__file__).parent
    for module, prefix in ((_zscore, "ZS_"), (_arima, "AR_"), (_qlearn, "QL_")):
        expected = {
            k: v for k, v in vars(kernels).items() if k.startswith(prefix) and isinstance(v, int)
        }
        if module.LAYOUT != expected:
            raise ImportError(
                f"perfsdk's compiled extension {module.__name__} is stale: its state layout "
                f"does not match perfsdk/_native/kernels.py. {_REBUILD_HINT}"
            )
    for source in sorted(here.glob("*.pyx")):  # every extension, the shared base included
        compiled = [p for p in here.glob(source.stem + ".*") if p.suffix in (".so", ".pyd")]
        if compiled and source.stat().st_mtime > max(p.stat().st_mtime for p in compiled) + 1:
            raise ImportError(
                f"perfsdk's compiled extension {compiled[0].name} is older than "
                f"{source.name}. {_REBUILD_HINT}"
            )


_check_fresh()

ZScoreCore = _zscore.ZScoreCore
ArimaCore = _arima.ArimaCore
QCore = _qlearn.QCore

__all__ = ["ArimaCore", "QCore", "ZScoreCore", "kernels"]
