"""The compiled kernels, or an error that says how to build them."""
from __future__ import annotations

from ..errors import missing_build


def kernels():
    """The compiled module rnnkit.nn._kernels, or an RnnkitError that says how to build it."""
    try:
        # imported on first use, so that a missing build is an RnnkitError, not an ImportError
        from . import _kernels
    except ImportError as e:
        raise missing_build(e) from None
    return _kernels
