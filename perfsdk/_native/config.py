"""Numba compilation flags, in one place: decorate kernels with ``@kernel``.

``fastmath`` stays off: it would let LLVM reorder and contract floating-point
operations, and the batch kernels must agree bit for bit with the Cython
per-event code. On-disk caching of compiled kernels is opt-in
(``PERFSDK_NUMBA_CACHE=1``) because a cache directory is a side effect an
embedded SDK should not impose on its host.
"""

from __future__ import annotations

import os
from typing import Any, Callable, TypeVar, cast

from numba import njit

__all__ = ["CACHE", "kernel"]

F = TypeVar("F", bound=Callable[..., Any])

CACHE = os.environ.get("PERFSDK_NUMBA_CACHE", "") == "1"


def kernel(fn: F) -> F:
    """Compile ``fn`` with perfsdk's Numba flags (nopython, nogil, exact math)."""
    return cast(F, njit(nogil=True, fastmath=False, cache=CACHE)(fn))
