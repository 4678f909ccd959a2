"""The compiled kernels (or an error that says how to build them), and the threads they and
BLAS use."""
from __future__ import annotations

import functools
from contextlib import contextmanager

from ..errors import missing_build


def kernels():
    """The compiled module rnnkit.nn._kernels, or an RnnkitError that says how to build it."""
    try:
        # imported on first use, so that a missing build is an RnnkitError, not an ImportError
        from . import _kernels
    except ImportError as e:
        raise missing_build(e) from None
    return _kernels


_controller = None   # threadpoolctl's view of the loaded BLAS and OpenMP libraries


@contextmanager
def thread_limit(threads: int | None = None):
    """Threads of the kernels and of BLAS for the block (None: the kernels' current count):
    results are deterministic per count.

    With the packed backend the kernels' own pool does the threading, and BLAS (numpy's and
    scipy's products between the kernels) is held to one thread: OpenBLAS's threads spin after
    each call and took the cores from the pool's (PTB small config, 2 threads: 6,500 tokens/s
    with both pools at 2 threads, 14,200 with BLAS at 1; beam-3 captions of 64 images: the LSTM
    step 230 -> 77 us, the output layer 125 -> 18 us).
    """
    global _controller
    K = kernels()
    if _controller is None:
        from threadpoolctl import ThreadpoolController
        _controller = ThreadpoolController()    # ~0.3 ms once; each limit() then ~12 us
    old = K.get_num_threads()
    n = old if threads is None else threads
    blas = 1 if K.gemm_backend() == "packed" else n
    try:
        K.set_num_threads(n)
        with _controller.limit(limits=blas, user_api="blas"):   # not OpenMP: not ours
            yield
    finally:
        K.set_num_threads(old)


def held_threads(fn):
    """Decorator: run fn under thread_limit() (the decoding and scoring entry points)."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        with thread_limit():
            return fn(*args, **kwargs)
    return run
