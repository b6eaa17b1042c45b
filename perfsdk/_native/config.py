"""Numba compilation flags, in one place.

``fastmath`` stays off: it would let LLVM reorder and contract floating-point
operations, and the batch kernels must agree bit for bit with the Cython
per-event code. On-disk caching of compiled kernels is opt-in
(``PERFSDK_NUMBA_CACHE=1``) because a cache directory is a side effect an
embedded SDK should not impose on its host.
"""

import os

NJIT_OPTIONS = {
    "nogil": True,
    "fastmath": False,
    "cache": os.environ.get("PERFSDK_NUMBA_CACHE", "") == "1",
}
