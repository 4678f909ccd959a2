"""The compiled kernels, or an error that says how to build them."""
from __future__ import annotations

from ..errors import RnnkitError


def kernels():
    """The compiled module rnnkit.nn._kernels, or an RnnkitError that says how to build it."""
    try:
        from . import (
            _kernels,  # compiled: imported on first use so a missing build is an error
        )
    except ImportError as e:
        raise RnnkitError(
            f"rnnkit's compiled extension is missing ({e}); build it with `pip install .` "
            f"(or `pip install -e .` in a source checkout), which needs a C compiler") from None
    return _kernels
