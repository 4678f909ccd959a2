"""Builds the compiled kernels rnnkit.nn._kernels and rnnkit.models.ngram._ngram (everything else is in pyproject.toml).

Environment switches:
  RNNKIT_NATIVE=1  compile with -march=native (local builds only: the result is not portable)
  RNNKIT_DEBUG=1   turn Cython's bounds, wraparound and initialisation checks back on
"""
import glob
import os

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

debug = os.environ.get("RNNKIT_DEBUG") == "1"
compile_args = ["-O3"] + (["-march=native"] if os.environ.get("RNNKIT_NATIVE") == "1" else [])
# The safety checks are set here rather than in the .pyx header, because a header directive
# would override this switch. The other directives are in the header.
checks = {"boundscheck": debug, "wraparound": debug, "initializedcheck": debug}

extensions = [
    Extension(
        "rnnkit.nn._kernels",
        ["src/rnnkit/nn/_kernels.pyx"],
        # the C kernels: headers in src/rnnkit/nn/csrc, included as "csrc/rk_*.h"
        include_dirs=[numpy.get_include(), "src/rnnkit/nn"],
        depends=sorted(glob.glob("src/rnnkit/nn/csrc/*.h")),
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        # BLAS comes from scipy (cython_blas), so nothing to link; -pthread for the kernels'
        # own thread pool. Vector code is chosen at run time (csrc/rk_isa.h), not by -march.
        # -fno-trapping-math lets GCC evaluate both sides of a select (tanh's small-|x| branch,
        # the clamps) in the element-wise passes: without it only the AVX-512 copies vectorise
        # (masked division), and the AVX2 and generic copies of the LSTM cell run one float at
        # a time. It changes no value: rnnkit never reads the floating-point exception flags.
        extra_compile_args=compile_args + ["-pthread", "-fno-trapping-math"],
        extra_link_args=["-pthread"],
    ),
    Extension(
        "rnnkit.models.ngram._ngram",
        ["src/rnnkit/models/ngram/_ngram.pyx"],
        include_dirs=[numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=compile_args,
    ),
]

setup(ext_modules=cythonize(extensions, compiler_directives=checks))
