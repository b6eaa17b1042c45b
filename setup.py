"""Build the Cython extensions in perfsdk/_native.

Compiler directives are global (scikit-learn style): bounds and wraparound
checks are off for speed; set PERFSDK_CYTHON_DEBUG=1 at build time to turn the
checks (and the C compiler's debug info) back on while hunting a bug.
``-ffp-contract=off`` keeps the C compiler from fusing multiply-adds, so the
per-event (Cython) and batch (Numba) engines compute bit-identical results.
The Cython engines' slot offsets come from ``perfsdk/_native/layout.py``
through a generated ``_layout.pxi``.
"""

import os
import runpy
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("PERFSDK_CYTHON_DEBUG", "") == "1"

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "embedsignature": True,
}

# The state layouts have one definition, perfsdk/_native/layout.py; the Cython engines
# include it as a generated _layout.pxi (cythonize sees the include as a dependency).
runpy.run_path("perfsdk/_native/layout.py")["write_pxi"]("perfsdk/_native/_layout.pxi")

extensions = [
    Extension(
        f"perfsdk._native.{pyx.stem}",
        [str(pyx)],
        # -g0, after Python's own -g: no debug info (11.8 of the extensions' 14.5 MB); GCC and Clang generate
        # the same code with or without it. PERFSDK_CYTHON_DEBUG=1 keeps it, for a debugger.
        extra_compile_args=["-O3", "-ffp-contract=off", *([] if DEBUG else ["-g0"])],
    )
    for pyx in sorted(Path("perfsdk/_native").glob("*.pyx"))
]

setup(ext_modules=cythonize(extensions, compiler_directives=directives))
