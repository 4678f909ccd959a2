# cython: language_level=3, cdivision=True, embedsignature=True
# (boundscheck, wraparound and initializedcheck are set in setup.py: off, or on with RNNKIT_DEBUG=1)
"""Compiled hot loops of rnnkit. The specification of every function is in reference.py.

Dimension letters: M, N, K are the sizes of a matrix product C[M, N] = A[M, K] · B[K, N].
All buffers are float32 and row-major (C order).
"""
import numpy as np

cimport numpy as cnp
from scipy.linalg.cython_blas cimport sgemm as blas_sgemm

cnp.import_array()


cdef void sgemm_rm(bint trans_a, bint trans_b, int m, int n, int k, float alpha,
                   const float* a, int lda, const float* b, int ldb,
                   float beta, float* c, int ldc) noexcept nogil:
    """Row-major C[M, N] = alpha · op(A) · op(B) + beta · C.

    BLAS is column-major, and a row-major matrix read as column-major is its transpose, so we
    compute Cᵀ = op(B)ᵀ · op(A)ᵀ: the same call with the operands (and their flags) swapped.
    op(A) is [M, K] (A is [K, M] when trans_a), op(B) is [K, N] (B is [N, K] when trans_b);
    lda, ldb, ldc are row strides in elements.
    """
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    if m == 0 or n == 0:
        return
    blas_sgemm(&tb, &ta, &n, &m, &k, &alpha, <float*>b, &ldb, <float*>a, &lda, &beta, c, &ldc)


def _check_matrix(name, x):
    if not isinstance(x, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(x).__name__}")
    if x.dtype != np.float32:
        raise ValueError(f"{name} must be float32, got {x.dtype}")
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {x.shape}")
    if not x.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (use np.ascontiguousarray)")


def sgemm(a, b, c=None, *, bint trans_a=False, bint trans_b=False, float alpha=1.0,
          float beta=0.0):
    """C = alpha · op(a) · op(b) + beta · c for row-major float32 matrices; returns c.

    The Python twin of the sgemm_rm helper the kernels use, so that it can be tested alone.
    When c is None a new [M, N] array is returned (beta is then ignored).
    """
    _check_matrix("a", a)
    _check_matrix("b", b)
    cdef int m = a.shape[1] if trans_a else a.shape[0]
    cdef int k = a.shape[0] if trans_a else a.shape[1]
    cdef int kb = b.shape[1] if trans_b else b.shape[0]
    cdef int n = b.shape[0] if trans_b else b.shape[1]
    if k != kb:
        raise ValueError(f"inner dimensions differ: op(a) is [{m}, {k}], op(b) is [{kb}, {n}]")
    if c is None:
        c = np.zeros((m, n), dtype=np.float32)
        beta = 0.0
    else:
        _check_matrix("c", c)
        if c.shape[0] != m or c.shape[1] != n:
            raise ValueError(f"c must have shape ({m}, {n}), got {c.shape}")
    cdef float[:, ::1] av = a
    cdef float[:, ::1] bv = b
    cdef float[:, ::1] cv = c
    cdef int lda = a.shape[1], ldb = b.shape[1], ldc = n
    cdef float* ap = &av[0, 0] if a.size else NULL
    cdef float* bp = &bv[0, 0] if b.size else NULL
    cdef float* cp = &cv[0, 0] if c.size else NULL
    if k == 0:
        # BLAS leaves C untouched when K = 0 only if beta = 1; the product is zero
        c *= beta
        return c
    with nogil:
        sgemm_rm(trans_a, trans_b, m, n, k, alpha, ap, max(lda, 1), bp, max(ldb, 1),
                 beta, cp, max(ldc, 1))
    return c
