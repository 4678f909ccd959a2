# cython: language_level=3, cdivision=True, embedsignature=True
# (boundscheck, wraparound and initializedcheck are set in setup.py: off, or on with RNNKIT_DEBUG=1)
"""Compiled hot loops of rnnkit. The specification of every function is in reference.py.

Dimension letters: T time steps, B batch (streams), E input size, H hidden size, V vocabulary,
N rows of the output layer; M, N, K are also the sizes of a matrix product C[M, N] = A[M, K] · B[K, N].
All buffers are float32 and row-major (C order), inputs time-major, weights in PyTorch's layout.

Structure (as in gensim's word2vec_inner): each `def` checks and unpacks its inputs and raises
ValueError, then calls, inside `with nogil:`, `cdef ... noexcept nogil` code on raw pointers.
The C is in csrc/*.h, one header per concept (docs/kernels.md): the element-wise passes (gate
nonlinearities, cell update, softmax) are compiled once per instruction set (AVX-512, AVX2+FMA,
baseline x86-64) and follow the path selected at load time, so the wheel stays portable; matrix products run on
the packed GEMM (AVX-512 or AVX2+FMA, chosen at load time from the one table in rk_isa.h,
overridable with RNNKIT_ISA or set_isa) where the CPU has one, else on BLAS (the table at the
top of rk_gemm.h says which entry point serves which case).
"""
import numpy as np

cimport numpy as cnp
from libc.stdint cimport int64_t
from libc.math cimport log
from libc.string cimport memcpy, memset
from scipy.linalg.cython_blas cimport sgemm as blas_sgemm
from scipy.linalg.cython_blas cimport sgemv as blas_sgemv

cnp.import_array()


# The C kernels live in csrc/, one header per concept (docs/kernels.md lists them).
cdef extern from "csrc/rk_cpu.h":
    int RK_ISA_GENERIC, RK_ISA_AVX2, RK_ISA_AVX512, RK_ISA_COUNT
    int rk_isa
    int rk_isa_supported(int isa) noexcept nogil
    int rk_isa_best() noexcept nogil
    void rk_cpu_family_model(int* family, int* model) noexcept nogil

cdef extern from "csrc/rk_cells.h":
    void rk_lstm_fwd_cell(int B, int H, int j0, int j1, float* a, const float* c_prev, float* c,
                          float* h, const float* peep, int fg) noexcept nogil
    void rk_lstm_bwd_cell(int B, int H, int j0, int j1, const float* gates,
                          const float* c_prev, const float* c, const float* dh,
                          const float* dh_rec, float* dc, float* dgates, const float* peep,
                          float* dpeep, int fg) noexcept nogil
    void rk_lstm_step_cell(int B, int H, int j0, int j1, const float* a, float* c, float* h,
                           const float* peep, int fg) noexcept nogil
    void rk_tanh_rows(int B, int H, int j0, int j1, float* a) noexcept nogil
    void rk_rnn_bwd_cell(int B, int H, int j0, int j1, const float* h, const float* dh,
                         const float* dh_rec, float* da) noexcept nogil

cdef extern from "csrc/rk_softmax.h":
    void rk_add_scalar(int n, float* z, float s) noexcept nogil
    void rk_scale(int n, float* z, float s) noexcept nogil
    void rk_axpy1(int n, const float* x, float* y) noexcept nogil
    void rk_topk_row(int V, const float* z, int k, int64_t* idx, float* val) noexcept nogil
    void rk_topk_row_shifted(int V, const float* z, float c, float scale, int k, int64_t* idx,
                             float* val) noexcept nogil

cdef extern from "csrc/rk_gemm.h":
    int RK_NH
    size_t rk_packed_size(int K, int N) noexcept nogil
    ctypedef struct rk_blocking_t:
        int mc, kc_max
    rk_blocking_t rk_blocking
    const char* rk_blocking_uarch
    int rk_pack_a_mode

cdef extern from "csrc/rk_isa.h":
    # the one dispatch table (rk_isa_table): these call the selected path's kernel
    int rk_isa_select(int isa) noexcept nogil
    const char* rk_isa_name(int isa) noexcept nogil
    int rk_isa_packed(int isa) noexcept nogil
    float rk_row_max(int V, const float* z) noexcept nogil
    double rk_exp_sum(int V, float* z, float m, int store) noexcept nogil
    void rk_pack_b(int K, int N, const float* b, int ldb, int trans, float* pb, int q0,
                   int q1) noexcept nogil
    void rk_gemm(int M, int N, int K, const float* a, size_t rsa, size_t csa, const float* pb,
                    float beta, float* c, int ldc, int q0, int q1, const float* bias) noexcept nogil
    void rk_gemv(int N, int K1, const float* w1, int ldw1, const float* x1, int K2,
                    const float* w2, int ldw2, const float* x2, const float* b1, const float* b2,
                    float* y, int accumulate) noexcept nogil
    void rk_dot_gemm(int B, int N, int K, const float* x, int ldx, const float* w, int ldw,
                        float* y, int ldy, int accumulate) noexcept nogil

cdef extern from "csrc/rk_attention.h":
    void rk_attend(int T, int S, int H, int D, const float* q, size_t ldq, const float* keys,
                   size_t ldk, const float* enc, size_t lde, const unsigned char* valid,
                   float* alpha, float* ctx, size_t ldc) noexcept nogil

cdef extern from "csrc/rk_optim.h":
    void rk_adam(size_t n, float* p, const float* g, float* m, float* v, float b1, float c1,
                 float b2, float c2, float step, float eps) noexcept nogil
    void rk_sgd(size_t n, float* p, const float* g, float lr) noexcept nogil
    double rk_sum_squares(size_t n, const float* x) noexcept nogil

cdef extern from "csrc/rk_pool.h":
    ctypedef void (*job_fn)(int, int, void*) noexcept nogil
    int rk_pool_run(int nt, job_fn fn, void* arg) noexcept nogil
    void rk_barrier(int nt) noexcept nogil
    void rk_split(int n, int tid, int nt, int* lo, int* hi) noexcept nogil
    float* rk_scratch(size_t n) noexcept nogil


# ---------------------------------------------------------------------------------------------
# BLAS helpers
# ---------------------------------------------------------------------------------------------
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


cdef void sgemv_rm(bint trans, int m, int n, float alpha, const float* a, int lda,
                   const float* x, float beta, float* y) noexcept nogil:
    """Row-major y = alpha · op(A) · x + beta · y, A [M, N] with row stride lda.

    op(A) = A gives y [M] from x [N]; trans gives y [N] from x [M]. Column-major BLAS sees Aᵀ,
    so the flag is flipped.
    """
    cdef char t = b'N' if trans else b'T'
    cdef int one = 1
    if m == 0 or n == 0:
        return
    blas_sgemv(&t, &n, &m, &alpha, <float*>a, &lda, <float*>x, &one, &beta, y, &one)


def _product_shape(a, b, c, bint trans_a, bint trans_b):
    _f32("a", a, (None, None))
    _f32("b", b, (None, None))
    m = a.shape[1] if trans_a else a.shape[0]
    k = a.shape[0] if trans_a else a.shape[1]
    kb = b.shape[1] if trans_b else b.shape[0]
    n = b.shape[0] if trans_b else b.shape[1]
    if k != kb:
        raise ValueError(f"inner dimensions differ: op(a) is [{m}, {k}], op(b) is [{kb}, {n}]")
    if c is not None:
        _f32("c", c, (None, None))
        if c.shape[0] != m or c.shape[1] != n:
            raise ValueError(f"c must have shape ({m}, {n}), got {c.shape}")
    return m, n, k


def sgemm(a, b, c=None, *, bint trans_a=False, bint trans_b=False, float alpha=1.0,
          float beta=0.0):
    """C = alpha · op(a) · op(b) + beta · c for row-major float32 matrices; returns c.

    The Python twin of the sgemm_rm helper, so that it can be tested alone.
    When c is None a new [M, N] array is returned (beta is then ignored).
    """
    cdef int m, n, k
    m, n, k = _product_shape(a, b, c, trans_a, trans_b)
    if c is None:
        c = np.zeros((m, n), dtype=np.float32)
        beta = 0.0
    if m == 0 or n == 0 or k == 0:
        # BLAS leaves C untouched when K = 0 only if beta = 1; the product is zero
        c *= beta
        return c
    cdef float* ap = fptr(a)
    cdef float* bp = fptr(b)
    cdef float* cp = fptr(c)
    cdef int lda = a.shape[1], ldb = b.shape[1]
    with nogil:
        sgemm_rm(trans_a, trans_b, m, n, k, alpha, ap, lda, bp, ldb, beta, cp, n)
    return c


# ---------------------------------------------------------------------------------------------
# The layers' matrix products: the packed kernel (AVX-512 or AVX2), or BLAS
# ---------------------------------------------------------------------------------------------
# On CPUs with AVX-512 or AVX2+FMA the layers' products run on our packed-weight kernel. Measured
# on the per-step shapes (bench/bench_kernels.py), it runs at 2-3x the rate of numpy's and scipy's
# OpenBLAS there, and it does not depend on which kernel OpenBLAS picks at load time
# (OPENBLAS_CORETYPE). Elsewhere (the generic path) the layers call BLAS (scipy's OpenBLAS)
# single-threaded. Which kernel runs on which path is the table in csrc/rk_isa.h.
ISAS = ("generic", "avx2", "avx512")           # the paths, in the order of RK_ISA_*
cdef bint use_packed = 0        # the layers' products on the packed kernel
cdef int nthreads = 1
cdef bint step_flip = 0         # single steps alternate the order of their weight blocks


def supported_isas():
    """The instruction-set paths this CPU can run, best last (a subset of ISAS)."""
    return [name for i, name in enumerate(ISAS) if rk_isa_supported(i)]


def get_isa():
    """The selected instruction-set path: 'avx512', 'avx2' or 'generic'."""
    return ISAS[rk_isa]


def set_isa(name):
    """Select an instruction-set path ('avx512', 'avx2', 'generic'; 'best': the best this CPU
    supports) for every kernel that follows, and the default backend of that path ('packed', or
    'blas' on 'generic'). ValueError when the CPU cannot run it. For tests and benchmarks; at
    start-up the module takes RNNKIT_ISA, else the best path. Returns the path now selected."""
    global use_packed
    if name == "best":
        name = ISAS[rk_isa_best()]
    if name not in ISAS:
        raise ValueError(f"the instruction-set path must be one of {', '.join(ISAS)} or best, "
                         f"got {name!r}")
    cdef int isa = ISAS.index(name)
    if rk_isa_select(isa) != 0:
        raise ValueError(f"this CPU cannot run the {name} path; it supports "
                         f"{', '.join(supported_isas())}")
    use_packed = rk_isa_packed(isa) != 0
    return name


def _isa_from_env():
    """The path named by RNNKIT_ISA, else the best one; an unknown or unsupported request
    warns (RuntimeWarning) and takes the best supported path."""
    import os
    import warnings
    want = os.environ.get("RNNKIT_ISA", "").strip().lower()
    best = ISAS[rk_isa_best()]
    if not want or want == "best":
        return best
    if want not in ISAS:
        warnings.warn(f"RNNKIT_ISA={want!r} is not one of {', '.join(ISAS)}, best; "
                      f"using the best path this CPU supports, {best}", RuntimeWarning,
                      stacklevel=2)
        return best
    if not rk_isa_supported(ISAS.index(want)):
        warnings.warn(f"RNNKIT_ISA={want}: this CPU cannot run that path; using the best it "
                      f"supports, {best}", RuntimeWarning, stacklevel=2)
        return best
    return want


set_isa(_isa_from_env())


def cpu_info():
    """What the kernels know of the CPU: its family and model numbers (CPUID), the paths it
    supports, the selected path and the blocking of the packed products on it."""
    cdef int family = 0, model = 0
    rk_cpu_family_model(&family, &model)
    return {"family": family, "model": model, "supported_isas": supported_isas(),
            "isa": get_isa(), "gemm_backend": gemm_backend(),
            "blocking": {"mc": rk_blocking.mc, "kc_max": rk_blocking.kc_max,
                         "measured_on": rk_blocking_uarch.decode()}}


PACK_A = ("never", "auto", "always")


def set_blocking(int mc, int kc_max, pack_a="auto"):
    """Set the blocking of the packed products (MC rows of A per block, K cut into the fewest
    blocks of at most kc_max) until the next set_isa, which takes the CPU's row again, and when
    A's block is copied into the kernels' order first (pack_a: 'auto', the rule in
    rk_gemm.h; 'never'; 'always'; the copy changes no bits). Returns the previous (mc, kc_max,
    pack_a). For benchmarks that look for a better row of the blocking table on a new CPU
    (bench/bench_gemm.py --blocking, --pack-a): kc_max sets where the sum over K is cut, so
    another value gives other bits. ValueError for mc < 1, kc_max < 16 or another pack_a."""
    if mc < 1 or kc_max < 16:
        raise ValueError(f"the blocking needs mc >= 1 and kc_max >= 16, got {mc} and {kc_max}")
    if pack_a not in PACK_A:
        raise ValueError(f"pack_a must be one of {', '.join(PACK_A)}, got {pack_a!r}")
    global rk_blocking_uarch, rk_pack_a_mode
    old = (rk_blocking.mc, rk_blocking.kc_max, PACK_A[rk_pack_a_mode])
    rk_pack_a_mode = PACK_A.index(pack_a)
    rk_blocking.mc, rk_blocking.kc_max = mc, kc_max
    rk_blocking_uarch = "set by set_blocking"
    return old


def gemm_backend(name=None):
    """The backend of the layers' matrix products: 'packed' (our packed GEMM on the selected
    instruction-set path, see get_isa) or 'blas'.

    With a name, switch to it (for tests and benchmarks); 'packed' needs the avx2 or avx512 path.
    """
    global use_packed
    if name is not None:
        if name not in ("packed", "blas"):
            raise ValueError(f"backend must be 'packed' or 'blas', got {name!r}")
        if name == "packed" and not rk_isa_packed(rk_isa):
            raise ValueError(f"the packed backend needs the avx2 or avx512 path (selected: "
                             f"{get_isa()}); use 'blas'")
        use_packed = name == "packed"
    return "packed" if use_packed else "blas"


def set_num_threads(int n):
    """Threads the layers use (packed backend; the BLAS backend runs on one of ours).

    Results do not depend on it: every number is computed the same way whatever the count.
    """
    global nthreads
    if n < 1:
        raise ValueError(f"the number of threads must be at least 1, got {n}")
    nthreads = min(n, 64)


def get_num_threads():
    """Threads the layers use (see set_num_threads)."""
    return nthreads


def _default_threads():
    import os
    env = os.environ.get("RNNKIT_NUM_THREADS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise ValueError(f"RNNKIT_NUM_THREADS must be a whole number, got {env!r}") from None
    try:
        return max(1, min(len(os.sched_getaffinity(0)), 4))
    except AttributeError:
        return max(1, min(os.cpu_count() or 1, 4))


nthreads = _default_threads()


cdef inline int threads_for(bint packed) noexcept nogil:
    return nthreads if packed else 1


cdef inline int cdiv(int a, int b) noexcept nogil:
    return (a + b - 1) // b


cdef size_t pack_size(int k, int n) noexcept nogil:
    return rk_packed_size(k, n) if use_packed else 1


cdef inline void split_cols(int n, int tid, int nt, int* u0, int* u1, int* c0,
                            int* c1) noexcept nogil:
    """This thread's share of n columns, in whole half panels of RK_NH: panels u0 .. u1-1,
    columns c0 .. c1-1 (a column's sums then do not depend on the thread count)."""
    rk_split(cdiv(n, RK_NH), tid, nt, u0, u1)
    c0[0] = min(u0[0] * RK_NH, n)
    c1[0] = min(u1[0] * RK_NH, n)


cdef void pack_part(int tid, int nt, int k, int n, const float* b, int ldb, bint tb,
                    float* pack) noexcept nogil:
    """This thread's share of the half panels of op(B) [K, N] packed (see rk_pack_b)."""
    cdef int p0, p1
    rk_split(cdiv(n, RK_NH), tid, nt, &p0, &p1)
    rk_pack_b(k, n, b, ldb, tb, pack, p0, p1)


cdef void mm_rows(bint packed, int m0, int m1, int n, int k, const float* a, int lda, bint ta,
                  const float* b, int ldb, bint tb, float beta, float* c, int ldc,
                  const float* pack, const float* bias=NULL) noexcept nogil:
    """Rows m0 .. m1-1 of C[M, N] = op(A) · op(B) + beta · C, row-major (as sgemm_rm), plus
    bias [N] in every row when given (then beta must be 0).

    packed: on the packed kernel, with op(B) already packed into `pack`; else on BLAS. Splitting
    the rows between threads changes no result: each row is computed the same way.
    """
    if m1 <= m0 or n == 0:
        return
    cdef const float* am = a + m0 if ta else a + <size_t>m0 * lda
    if packed:
        if ta:
            rk_gemm(m1 - m0, n, k, am, 1, lda, pack, beta, c + <size_t>m0 * ldc, ldc, 0,
                       cdiv(n, RK_NH), bias)
        else:
            rk_gemm(m1 - m0, n, k, am, lda, 1, pack, beta, c + <size_t>m0 * ldc, ldc, 0,
                       cdiv(n, RK_NH), bias)
        return
    if bias != NULL:
        fill_rows(m1 - m0, n, c + <size_t>m0 * ldc, bias, NULL)
        beta = 1.0
    if m1 - m0 == 1 and not ta:   # one row: gemv, several times faster than gemm in BLAS
        if tb and use_packed and (beta == 0.0 or beta == 1.0):
            rk_gemv(n, k, b, ldb, am, 0, NULL, 0, NULL, NULL, NULL, c + <size_t>m0 * ldc,
                       beta != 0.0)
        elif tb:
            sgemv_rm(False, n, k, 1.0, b, ldb, am, beta, c + <size_t>m0 * ldc)
        else:
            sgemv_rm(True, k, n, 1.0, b, ldb, am, beta, c + <size_t>m0 * ldc)
    else:
        sgemm_rm(ta, tb, m1 - m0, n, k, 1.0, am, lda, b, ldb, beta, c + <size_t>m0 * ldc, ldc)


ctypedef struct Product:
    int m, n, k, lda, ldb
    bint packed, ta, tb
    bint dot                           # a few rows of A times Bᵀ: dot products, columns split
    float beta
    const float* a                     # op(A) [M, K]
    const float* b                     # op(B) [K, N]
    float* c                           # [M, N]
    float* pack                        # pack_size(K, N): op(B) packed


cdef void product_job(int tid, int nt, void* arg) noexcept nogil:
    """The whole product, split over threads as the layers split theirs (rows of C)."""
    cdef Product* P = <Product*>arg
    cdef int r0, r1, u0, u1, n0, n1, r
    if P.dot:   # each thread streams its columns' rows of B once (blocks of RK_NH columns)
        split_cols(P.n, tid, nt, &u0, &u1, &n0, &n1)
        if n1 <= n0:
            return
        if P.beta != 0.0 and P.beta != 1.0:
            for r in range(P.m):
                rk_scale(n1 - n0, P.c + <size_t>r * P.n + n0, P.beta)
        rk_dot_gemm(P.m, n1 - n0, P.k, P.a, P.lda, P.b + <size_t>n0 * P.ldb, P.ldb, P.c + n0,
                    P.n, P.beta != 0.0)
        return
    if P.packed:
        pack_part(tid, nt, P.k, P.n, P.b, P.ldb, P.tb, P.pack)
        rk_barrier(nt)
    rk_split(P.m, tid, nt, &r0, &r1)
    mm_rows(P.packed, r0, r1, P.n, P.k, P.a, P.lda, P.ta, P.b, P.ldb, P.tb, P.beta, P.c, P.n,
            P.pack)


def matmul(a, b, c=None, *, bint trans_a=False, bint trans_b=False, float beta=0.0):
    """C = op(a) · op(b) + beta · c through the layers' product on the current backend
    (see gemm_backend): the packed-weight kernel or BLAS, on the layers' threads. The 2-D
    products of the attention and of the adaptive softmax's clusters, tests and benchmarks."""
    cdef int m, n, k
    m, n, k = _product_shape(a, b, c, trans_a, trans_b)
    if c is None:
        c = np.zeros((m, n), dtype=np.float32)
        beta = 0.0
    if m == 0 or n == 0 or k == 0:
        c *= beta
        return c
    cdef Product P
    P.m, P.n, P.k, P.lda, P.ldb = m, n, k, a.shape[1], b.shape[1]
    P.packed, P.ta, P.tb, P.beta = use_packed, trans_a, trans_b, beta
    # a few rows times a transposed B (the attention's and the clusters' weights [N, K]):
    # packing B would cost more than the product
    P.dot = use_packed and m < 8 and trans_b and not trans_a
    P.packed = P.packed and not P.dot
    P.a, P.b, P.c = fptr(a), fptr(b), fptr(c)
    pack = None
    P.pack = rk_scratch(pack_size(k, n)) if P.packed else NULL   # kept between calls
    if P.packed and P.pack == NULL:
        pack = np.empty(pack_size(k, n), np.float32)
        P.pack = fptr(pack)
    with nogil:
        rk_pool_run(threads_for(P.packed or P.dot), product_job, &P)
    return c


# Weights packed once for many products: a decoding run multiplies every step's rows by the
# same weights (the output layer, the decoder's W_ih and W_hh), which the kernels would
# otherwise pack again at every step (the output layer at Multi30k's size: 8 MB each step).
cdef class PackedWeight:
    """A weight w [R, C] packed for the packed GEMM as `groups` blocks of R / groups rows, each
    block packed as its transpose [C, R / groups] (the panels rk_pack_b writes, the same on the
    avx2 and avx512 paths), made by pack_weight. A kernel that takes one uses it exactly where
    it would have packed w itself, so the results are the same bits; it is valid only while w
    is unchanged (a decoding state holds one for one search), and the kernels check that it was
    made from the very array they are given."""
    cdef readonly object data          # float32 [groups * rk_packed_size(C, R / groups)]
    cdef readonly int rows, cols, groups
    cdef size_t source                 # the address of w's data
    cdef size_t block                  # floats per block

    def __repr__(self):
        return (f"PackedWeight(rows={self.rows}, cols={self.cols}, groups={self.groups}, "
                f"{self.data.nbytes / 2 ** 20:.1f} MB)")


def pack_weight(w, int groups=1):
    """w [R, C] (float32, C-contiguous; R a multiple of groups) packed for the packed GEMM
    (see PackedWeight), or None on the BLAS backend, where nothing is packed."""
    _f32("w", w, (None, None))
    cdef int R = w.shape[0], C = w.shape[1], g
    if groups < 1 or R % groups:
        raise ValueError(f"groups must divide the {R} rows of w, got {groups}")
    if not use_packed or R == 0 or C == 0:
        return None
    cdef int n = R // groups
    cdef PackedWeight pw = PackedWeight.__new__(PackedWeight)
    pw.rows, pw.cols, pw.groups, pw.block = R, C, groups, rk_packed_size(C, n)
    pw.data = np.empty(groups * pw.block, np.float32)
    pw.source = <size_t>cnp.PyArray_DATA(w)
    cdef float* dst = fptr(pw.data)
    cdef const float* src = fptr(w)
    with nogil:
        for g in range(groups):
            rk_pack_b(C, n, src + <size_t>g * n * C, C, True, dst + <size_t>g * pw.block, 0,
                      cdiv(n, RK_NH))
    return pw


cdef const float* packed_for(object packed, object w, int rows, int cols, int groups,
                             str name) except? NULL:
    """The packed data of `packed` (a PackedWeight of w [rows, cols] in `groups` blocks), or
    NULL when packed is None or the backend does not pack; ValueError when it is not w's."""
    if packed is None or not use_packed:
        return NULL
    if not isinstance(packed, PackedWeight):
        raise ValueError(f"{name} must be a PackedWeight from pack_weight, got "
                         f"{type(packed).__name__}")
    cdef PackedWeight pw = <PackedWeight>packed
    if (pw.rows != rows or pw.cols != cols or pw.groups != groups
            or pw.source != <size_t>cnp.PyArray_DATA(w)):
        raise ValueError(f"{name} was not packed from this weight ([{rows}, {cols}] in "
                         f"{groups} block(s)): got {pw!r}")
    return fptr(pw.data)


cdef void fill_rows(int m, int n, float* c, const float* b1, const float* b2) noexcept nogil:
    """Every row of C[M, N] = b1 + b2 (b2 may be NULL)."""
    cdef int r, j
    if m <= 0:
        return
    for j in range(n):
        c[j] = b1[j] + (b2[j] if b2 != NULL else 0.0)
    for r in range(1, m):
        memcpy(c + <size_t>r * n, c, n * sizeof(float))


cdef void col_sums(int m, int n, int j0, int j1, const float* a, float* out) noexcept nogil:
    """out[j] = the sum of column j of A[M, N] for j in j0 .. j1-1, in row order."""
    cdef int r
    if j1 <= j0:
        return
    memset(out + j0, 0, (j1 - j0) * sizeof(float))
    for r in range(m):
        rk_axpy1(j1 - j0, a + <size_t>r * n + j0, out + j0)


# ---------------------------------------------------------------------------------------------
# checks (def layer)
# ---------------------------------------------------------------------------------------------
cdef inline float* fptr(cnp.ndarray a):
    return <float*>cnp.PyArray_DATA(a)


cdef inline double* dptr(cnp.ndarray a):
    return <double*>cnp.PyArray_DATA(a)


cdef inline int64_t* iptr(cnp.ndarray a):
    return <int64_t*>cnp.PyArray_DATA(a)


def _f32(name, a, shape):
    """a, checked: a float32 C-contiguous numpy array of the given shape (None = any size)."""
    if not isinstance(a, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(a).__name__}")
    if a.dtype != np.float32:
        raise ValueError(f"{name} must be float32, got {a.dtype} (convert with .astype(np.float32))")
    if a.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, a.shape)):
        want = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
        raise ValueError(f"{name} must have shape {want}, got {list(a.shape)}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (use np.ascontiguousarray)")
    return a


def _ids(name, ids, int V, ndim):
    """Token ids as a C-contiguous int64 array, every one checked to be in [0, V)."""
    if not isinstance(ids, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(ids).__name__}")
    if ids.dtype.kind not in "iu":
        raise ValueError(f"{name} must be integers, got {ids.dtype}")
    if ids.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {list(ids.shape)}")
    if ids.size:
        lo, hi = ids.min(), ids.max()
        if lo < 0 or hi >= V:
            raise ValueError(f"{name} must be in [0, {V}), got values in [{lo}, {hi}]")
    return np.ascontiguousarray(ids, dtype=np.int64)


class Cache:
    """Buffers of one layer's window: what backward needs plus its workspaces.

    Pass it back to the next forward call (`cache=`) to reuse its buffers when the shapes match:
    no allocation then, but the arrays returned by the earlier forward and backward calls
    are overwritten.
    """

    def __init__(self, kind):
        self.kind = kind

    def __repr__(self):
        bufs = {k: list(v.shape) for k, v in vars(self).items() if isinstance(v, np.ndarray)}
        return f"Cache({self.kind!r}, {bufs})"


def _buf(cache, name, shape, dtype=np.float32):
    """The cache's buffer `name` of this shape (also set as cache.<name>): a view of the largest
    one the cache has held, so calls whose sizes vary (length buckets: a batch's tokens change
    every batch) reuse its memory instead of a fresh array whose page faults cost more than the
    work (output layer, 960 x 8,000 logits, 2 threads: 13 ms with a fixed size, 21 with varying
    ones, before)."""
    cdef Py_ssize_t n = 1, d
    for d in shape:
        n *= d
    key = name + "_capacity"
    store = getattr(cache, key, None)
    if store is None or store.dtype != np.dtype(dtype) or store.shape[0] < n:
        store = np.empty(n, dtype)
        setattr(cache, key, store)
    a = store[:n].reshape(shape)
    setattr(cache, name, a)
    return a


def _packbuf(cache, name, size_t size):
    """A workspace of at least `size` floats kept in the cache."""
    a = getattr(cache, name, None)
    if a is None or a.shape[0] < size:
        a = np.empty(size, np.float32)
        setattr(cache, name, a)
    return a


def _reuse(cache, kind):
    if cache is None:
        return Cache(kind)
    if not isinstance(cache, Cache) or cache.kind != kind:
        got = f"a {cache.kind} cache" if isinstance(cache, Cache) else type(cache).__name__
        raise ValueError(f"cache must be a {kind} cache returned by an earlier {kind}_forward "
                         f"call, got {got}")
    return cache


# ---------------------------------------------------------------------------------------------
# Recurrent layers (LSTM, tanh RNN): one window, split over threads
# ---------------------------------------------------------------------------------------------
# Work split, with nt threads: the big products before and after the time loop by rows of C;
# inside the loop, thread k owns a slice of the H hidden units (16-column half panels): it computes
# those columns of every gate (W_hh packed per gate), their cell update and, backward, those
# columns of dL/dh_{t-1}. One barrier per step: h_t (forward) or dgates_t (backward) is read in
# full by the next product.
cdef enum:
    LSTM = 0
    RNN = 1

ctypedef struct Layer:
    int kind, T, B, E, H, G            # G gates: 4 (LSTM) or 1 (RNN)
    bint packed, fg
    int N                              # rows of every step together: T*B, or sum(bs)
    const int* bs                      # [T] rows of step t (the first bs[t] sequences)
    const int64_t* off                 # [T] first row of step t in x, gates, dh, dgates, dx
    float* hprev                       # [N, H] h_0 .. h_{T-1} as their steps read them, or NULL
    const float* x                     # [T, B, E]
    const float* w_ih                  # [G*H, E]
    const float* w_hh                  # [G*H, H]
    const float* bias                  # [G*H] b_ih + b_hh
    const float* peep                  # [3, H] or NULL
    float* gates                       # [T, B, G*H] activated gates (RNN: hs + B*H)
    float* hs                          # [T+1, B, H] h_0 .. h_T
    float* cs                          # [T+1, B, H] c_0 .. c_T (LSTM)
    float* pack_hh                     # packed W_hh: G * pack_size(H, H)
    float* pack_ih                     # packed W_ih: pack_size(E, G*H) or pack_size(G*H, E)
    float* pack_x                      # packed x: pack_size(T*B, E)
    float* pack_h                      # packed h_0 .. h_{T-1}: pack_size(T*B, H)
    const float* dh                    # [T, B, H] from above
    float* dh_rec                      # [B, H] dL/dh_t through the recurrence; dL/dh_0 at the end
    float* dc                          # [B, H] dL/dc_t; dL/dc_0 at the end
    float* dgates                      # [T, B, G*H]
    float* dx                          # [T, B, E]
    float* dw_ih                       # [G*H, E]
    float* dw_hh                       # [G*H, H]
    float* db                          # [G*H]
    float* dpeep                       # [3, H] or NULL


cdef inline size_t prev_row(Layer* L, int t) noexcept nogil:
    """The first row of h_t and c_t (what step t reads) in hs and cs: h_0 is rows 0 .. B-1, the
    state after step t rows B + off[t] ...; a step reads the first bs[t] rows of the last."""
    return 0 if t == 0 else <size_t>L.B + <size_t>L.off[t - 1]


cdef void layer_forward_job(int tid, int nt, void* arg) noexcept nogil:
    cdef Layer* L = <Layer*>arg
    cdef int T = L.T, E = L.E, H = L.H, G = L.G, GH = L.G * L.H
    cdef int t, g, n, r0, r1, u0, u1, j0, j1
    cdef size_t o, p, q
    cdef size_t PH = rk_packed_size(H, H)
    # the input projection of all T steps is one product, before the loop
    rk_split(L.N, tid, nt, &r0, &r1)
    if L.packed:
        pack_part(tid, nt, E, GH, L.w_ih, E, True, L.pack_ih)
        rk_barrier(nt)
    mm_rows(L.packed, r0, r1, GH, E, L.x, E, False, L.w_ih, E, True, 0.0, L.gates, GH, L.pack_ih,
            L.bias)
    # this thread's hidden units: panels u0 .. u1-1, columns j0 .. j1-1
    split_cols(H, tid, nt, &u0, &u1, &j0, &j1)
    if L.packed:
        for g in range(G):  # W_hh packed once per window, used T times (as oneDNN does)
            rk_pack_b(H, H, L.w_hh + <size_t>g * H * H, H, True, L.pack_hh + g * PH, u0, u1)
    rk_barrier(nt)
    for t in range(T):
        # step t: rows o .. o+n-1 of gates; h_t, c_t from row p of hs, cs; h_t+1, c_t+1 at q
        n, o, p = L.bs[t], <size_t>L.off[t], prev_row(L, t)
        q = <size_t>L.B + o
        # only the recurrent product stays in the loop: gates_t += h_{t-1} · W_hhᵀ
        if L.packed:
            for g in range(G):
                rk_gemm(n, H, H, L.hs + p * H, H, 1, L.pack_hh + g * PH, 1.0,
                           L.gates + o * GH + g * H, GH, u0, u1, NULL)
        else:
            mm_rows(False, 0, n, GH, H, L.hs + p * H, H, False, L.w_hh, H, True, 1.0,
                    L.gates + o * GH, GH, NULL)
        if L.kind == LSTM:
            if j1 > j0:
                rk_lstm_fwd_cell(n, H, j0, j1, L.gates + o * GH, L.cs + p * H, L.cs + q * H,
                                 L.hs + q * H, L.peep, L.fg)
        else:
            rk_tanh_rows(n, H, j0, j1, L.hs + q * H)
        rk_barrier(nt)


cdef void layer_backward_job(int tid, int nt, void* arg) noexcept nogil:
    cdef Layer* L = <Layer*>arg
    cdef int T = L.T, E = L.E, H = L.H, GH = L.G * L.H
    cdef int t, r, n, r0, r1, u0, u1, j0, j1
    cdef size_t o, p, q
    cdef const float* hprev = L.hs
    split_cols(H, tid, nt, &u0, &u1, &j0, &j1)
    if L.packed:
        rk_pack_b(GH, H, L.w_hh, H, False, L.pack_hh, u0, u1)
    if L.dpeep != NULL and j1 > j0:
        for r in range(3):
            memset(L.dpeep + r * H + j0, 0, (j1 - j0) * sizeof(float))
    # dh_rec and dc hold dL/dh, dL/dc of every sequence; step t updates the first bs[t] rows (a
    # sequence's rows wait with dhT, dcT until its last step)
    for t in range(T - 1, -1, -1):
        n, o, p = L.bs[t], <size_t>L.off[t], prev_row(L, t)
        q = <size_t>L.B + o
        if L.kind == LSTM:
            if j1 > j0:
                rk_lstm_bwd_cell(n, H, j0, j1, L.gates + o * GH, L.cs + p * H, L.cs + q * H,
                                 L.dh + o * H, L.dh_rec, L.dc, L.dgates + o * GH, L.peep,
                                 L.dpeep, L.fg)
        else:
            rk_rnn_bwd_cell(n, H, j0, j1, L.hs + q * H, L.dh + o * H, L.dh_rec,
                            L.dgates + o * GH)
        rk_barrier(nt)
        # only the recurrent product stays in the loop: dL/dh_{t-1} = dgates_t · W_hh
        if L.packed:
            rk_gemm(n, H, GH, L.dgates + o * GH, GH, 1, L.pack_hh, 0.0, L.dh_rec, H, u0, u1,
                       NULL)
        else:
            sgemm_rm(False, False, n, H, GH, 1.0, L.dgates + o * GH, GH, L.w_hh, H, 0.0,
                     L.dh_rec, H)
    # the input and weight gradients of all T steps are one product each, after the loop; with
    # sequences of different lengths the states the steps read are gathered into their rows
    if L.hprev != NULL:
        t = tid
        while t < T:
            memcpy(L.hprev + <size_t>L.off[t] * H, L.hs + prev_row(L, t) * H,
                   <size_t>L.bs[t] * H * sizeof(float))
            t += nt
        hprev = L.hprev
    rk_barrier(nt)
    if L.packed:
        pack_part(tid, nt, GH, E, L.w_ih, E, False, L.pack_ih)
        pack_part(tid, nt, L.N, E, L.x, E, False, L.pack_x)
        pack_part(tid, nt, L.N, H, hprev, H, False, L.pack_h)
        rk_barrier(nt)
    rk_split(L.N, tid, nt, &r0, &r1)
    mm_rows(L.packed, r0, r1, E, GH, L.dgates, GH, False, L.w_ih, E, False, 0.0, L.dx, E,
            L.pack_ih)
    rk_split(GH, tid, nt, &r0, &r1)
    mm_rows(L.packed, r0, r1, E, L.N, L.dgates, GH, True, L.x, E, False, 0.0, L.dw_ih, E,
            L.pack_x)
    mm_rows(L.packed, r0, r1, H, L.N, L.dgates, GH, True, hprev, H, False, 0.0, L.dw_hh, H,
            L.pack_h)
    col_sums(L.N, GH, r0, r1, L.dgates, L.db)


cdef int layer_threads(Layer* L) noexcept nogil:
    # below about a million multiply-adds per step (the tanh RNN at H = 200: 0.8 M) a step's
    # share is a few microseconds, no more than the hand-off at the barrier: one thread
    if not L.packed or <double>L.B * L.G * L.H * L.H < 1048576:
        return 1
    return nthreads


def _steps(cache, int B, int rows, batch_sizes):
    """A window's steps (see reference.steps_of): their rows and first rows, int32 and int64
    arrays kept in the cache, from batch_sizes [T] (sequences of different lengths, longest
    first, x [N, E]) or, without it, `rows` // B steps of B rows (x [T, B, E])."""
    if batch_sizes is None:
        bs = _buf(cache, "bs", (rows // B,), np.int32)
        bs[...] = B
    else:
        given = np.asarray(batch_sizes)
        if (given.ndim != 1 or given.size == 0 or given[0] != B or np.any(np.diff(given) > 0)
                or given.min() < 1 or given.sum(dtype=np.int64) != rows):
            raise ValueError(f"batch_sizes must fall from B = {B} to at least 1 and add up to "
                             f"the {rows} rows of x")
        bs = _buf(cache, "bs", (given.size,), np.int32)
        bs[...] = given
    off = _buf(cache, "off", (bs.size,), np.int64)
    off[0] = 0
    np.cumsum(bs[:bs.size - 1], out=off[1:])
    return bs, off


def _layer_forward(kind, cache, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_peep, forget_gate,
                   batch_sizes=None):
    """Checks, buffers and the threaded forward job of an LSTM (kind "lstm") or RNN ("rnn")."""
    cdef int G = 4 if kind == "lstm" else 1
    cdef int T, B, E, H, N
    cdef int[::1] bsv
    cdef int64_t[::1] offv
    ragged = batch_sizes is not None
    B, E, H = _check_cell(2 if ragged else 3, x, "h0", h0, "c0", c0, w_ih, w_hh, b_ih, b_hh,
                          w_peep, G, ragged)
    N = x.shape[0] if ragged else x.shape[0] * B
    if N == 0:
        raise ValueError("x must have at least one time step")
    cache = _reuse(cache, kind)
    bs, off = _steps(cache, B, N, batch_sizes)
    bsv, offv = bs, off
    T = bs.shape[0]
    cdef Layer L
    memset(&L, 0, sizeof(Layer))
    L.kind, L.T, L.B, L.E, L.H, L.G = (LSTM if G == 4 else RNN), T, B, E, H, G
    L.N, L.bs, L.off = N, &bsv[0], &offv[0]
    L.packed, L.fg = use_packed, bool(forget_gate)
    hs = _buf(cache, "hs", (B + N, H))                # h_0, then every step's rows
    hs[:B] = h0
    L.hs = fptr(hs)
    if G == 4:
        cs = _buf(cache, "cs", (B + N, H))            # c_0, then every step's rows
        cs[:B] = c0
        L.cs = fptr(cs)
        L.gates = fptr(_buf(cache, "gates", (N, 4 * H)))  # activated i, f, g, o
    else:
        L.gates = L.hs + <size_t>B * H                  # pre-activations become h_t in place
    L.x, L.w_ih, L.w_hh = fptr(x), fptr(w_ih), fptr(w_hh)
    bias = _buf(cache, "bias", (G * H,))
    np.add(b_ih, b_hh, out=bias)
    L.bias = fptr(bias)
    L.peep = fptr(w_peep) if w_peep is not None else NULL
    L.pack_hh = fptr(_packbuf(cache, "pack_hh", G * pack_size(H, H)))
    L.pack_ih = fptr(_packbuf(cache, "pack_ih", max(pack_size(E, G * H), pack_size(G * H, E))))
    with nogil:
        rk_pool_run(layer_threads(&L), layer_forward_job, &L)
    cache.x, cache.w_ih, cache.w_hh, cache.w_peep, cache.forget_gate = x, w_ih, w_hh, w_peep, L.fg
    cache.shape = (T, B, E, H)
    cache.ragged = ragged
    # each sequence's final state: its row of its last step
    cache.last = (B + off[np.count_nonzero(bs[None, :] > np.arange(B)[:, None], axis=1) - 1]
                  + np.arange(B)) if ragged else None
    return cache


def _final(cache, states):
    """Each sequence's state after its last step [B, H] (a copy)."""
    T, B, E, H = cache.shape
    return states[cache.last] if cache.ragged else states[states.shape[0] - B:].copy()


def _outputs(cache):
    """h_1 .. h_T: [T, B, H], or [N, H] with batch_sizes (a view into the cache)."""
    T, B, E, H = cache.shape
    hs = cache.hs[B:]
    return hs if cache.ragged else hs.reshape(T, B, H)


def _layer_backward(kind, cache, dh, dhT, dcT):
    if not isinstance(cache, Cache) or cache.kind != kind or not hasattr(cache, "shape"):
        raise ValueError(f"cache must be the cache returned by {kind}_forward")
    cdef int G = 4 if kind == "lstm" else 1
    cdef int T, B, E, H, N
    cdef int[::1] bsv = cache.bs
    cdef int64_t[::1] offv = cache.off
    T, B, E, H = cache.shape
    N = cache.hs.shape[0] - B
    rows = [N] if cache.ragged else [T, B]   # the leading dimensions of dh and dx
    _f32("dh", dh, tuple(rows + [H]))
    _f32("dhT", dhT, (B, H))
    if dcT is not None:
        _f32("dcT", dcT, (B, H))
    cdef Layer L
    memset(&L, 0, sizeof(Layer))
    L.kind, L.T, L.B, L.E, L.H, L.G = (LSTM if G == 4 else RNN), T, B, E, H, G
    L.N, L.bs, L.off = N, &bsv[0], &offv[0]
    L.packed, L.fg = use_packed, cache.forget_gate
    x, w_ih, w_hh, w_peep = cache.x, cache.w_ih, cache.w_hh, cache.w_peep
    L.x, L.w_ih, L.w_hh = fptr(x), fptr(w_ih), fptr(w_hh)
    L.peep = fptr(w_peep) if w_peep is not None else NULL
    L.hs = fptr(cache.hs)
    if cache.ragged:   # the states each step reads, gathered into its rows
        L.hprev = fptr(_buf(cache, "hprev", (N, H)))
    if G == 4:
        L.cs = fptr(cache.cs)
        L.gates = fptr(cache.gates)
    dgates = _buf(cache, "dgates", (N, G * H))
    dx = _buf(cache, "dx", tuple(rows + [E]))
    dh0 = _buf(cache, "dh0", (B, H))
    dw_ih = _buf(cache, "dw_ih", (G * H, E))
    dw_hh = _buf(cache, "dw_hh", (G * H, H))
    db_ih = _buf(cache, "db_ih", (G * H,))
    db_hh = _buf(cache, "db_hh", (G * H,))
    dh0[...] = dhT
    L.dh, L.dh_rec, L.dgates, L.dx = fptr(dh), fptr(dh0), fptr(dgates), fptr(dx)
    L.dw_ih, L.dw_hh, L.db = fptr(dw_ih), fptr(dw_hh), fptr(db_ih)
    dc0 = dw_peep = None
    if G == 4:
        dc0 = _buf(cache, "dc0", (B, H))
        dc0[...] = dcT
        L.dc = fptr(dc0)
        if w_peep is not None:
            dw_peep = _buf(cache, "dw_peep", (3, H))
            L.dpeep = fptr(dw_peep)
    L.pack_hh = fptr(_packbuf(cache, "pack_hh", pack_size(G * H, H)))
    L.pack_ih = fptr(_packbuf(cache, "pack_ih", pack_size(G * H, E)))
    L.pack_x = fptr(_packbuf(cache, "pack_x", pack_size(N, E)))
    L.pack_h = fptr(_packbuf(cache, "pack_h", pack_size(N, H)))
    with nogil:
        rk_pool_run(layer_threads(&L), layer_backward_job, &L)
    db_hh[...] = db_ih
    return dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dw_peep


def lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_peep=None, forget_gate=True, cache=None,
                 batch_sizes=None):
    """One LSTM layer over a window (see reference.lstm_forward): (h, hT, cT, cache).

    x [T, B, E], h0 / c0 [B, H], w_ih [4H, E], w_hh [4H, H], b_ih / b_hh [4H], w_peep [3, H]
    or None; all float32 and C-contiguous. h [T, B, H] is a view into the cache. With
    batch_sizes [T] (sequences of different lengths, longest first), x is [N, E] and h [N, H]
    (reference.steps_of). `cache`, from an earlier call with the same shapes, is reused (no
    allocation; its arrays are overwritten).
    """
    cache = _layer_forward("lstm", cache, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_peep, forget_gate,
                           batch_sizes)
    return _outputs(cache), _final(cache, cache.hs), _final(cache, cache.cs), cache


def lstm_backward(dh, dhT, dcT, cache):
    """Gradients of an LSTM window (see reference.lstm_backward):
    (dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dw_peep); dw_peep is None without peepholes.

    dh [T, B, H] (with batch_sizes [N, H]), dhT / dcT [B, H]. The results live in the cache's
    buffers.
    """
    if dcT is None:
        raise ValueError("dcT must be a numpy array, got NoneType")
    return _layer_backward("lstm", cache, dh, dhT, dcT)


def rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, cache=None, batch_sizes=None):
    """One tanh-RNN layer over a window (see reference.rnn_forward): (h, hT, cache).

    x [T, B, E], h0 [B, H], w_ih [H, E], w_hh [H, H], b_ih / b_hh [H]; `cache` and
    batch_sizes as lstm_forward.
    """
    cache = _layer_forward("rnn", cache, x, h0, None, w_ih, w_hh, b_ih, b_hh, None, True,
                           batch_sizes)
    return _outputs(cache), _final(cache, cache.hs), cache


def rnn_backward(dh, dhT, cache):
    """Gradients of a tanh-RNN window (see reference.rnn_backward):
    (dx, dh0, dw_ih, dw_hh, db_ih, db_hh)."""
    dx, dh0, _, dw_ih, dw_hh, db_ih, db_hh, _ = _layer_backward("rnn", cache, dh, dhT, None)
    return dx, dh0, dw_ih, dw_hh, db_ih, db_hh


# ---------------------------------------------------------------------------------------------
# Single steps (generation, scoring): no allocation with workspaces
# ---------------------------------------------------------------------------------------------
# A step streams the weights once and is bound by memory bandwidth. On the packed backend it
# runs on our gemv (one stream: W_ih and W_hh in one pass, biases added) or dot-product kernel
# (a few streams), both reading the weights unpacked, or, from STEP_GEMM_MIN_B streams on (a
# beam over a batch), on the packed GEMM: each thread packs its own columns of the weights into
# its scratch and multiplies every stream by them. All split over threads by hidden units like
# the windows (one barrier: every thread has read h before any writes it); else on BLAS.
# Successive steps visit the gates in opposite orders, so the step starts on the weights the
# last one read most recently, still in cache (H = 200, one thread: 13.7 -> 12.3 us). Each
# output is computed the same way in either order.
ctypedef struct Step:
    int kind, B, E, H, G
    bint packed, fg, flip
    const float* x                     # [B, E]
    const float* w_ih                  # [G*H, E]
    const float* w_hh                  # [G*H, H]
    const float* b_ih                  # [G*H]
    const float* b_hh                  # [G*H]
    const float* peep                  # [3, H] or NULL
    float* gates                       # [B, G*H] workspace
    float* h                           # [B, H] in place
    float* c                           # [B, H] in place (LSTM)
    float* bsum                        # [G*H] b_ih + b_hh (packed GEMM path), or NULL
    float* pack                        # per-thread scratch, pack_stride floats each, or NULL
    size_t pack_stride
    const float* pih                   # W_ih packed per gate (pack_weight, G groups), or NULL
    const float* phh                   # W_hh likewise; both or neither
    size_t pih_block, phh_block        # floats per gate of each
    const float* table                 # [n, G*H] input_table's rows (x then NULL), or NULL
    const int64_t* ids                 # [B] the streams' rows of the table


cdef int step_gemm_min_b = 8    # streams from which a step runs on the packed GEMM


cdef inline bint step_on_gemm(Py_ssize_t B, Py_ssize_t E, Py_ssize_t H,
                              Py_ssize_t GH) noexcept nogil:
    # packing costs one pass over the weights per step: worth it from 8 streams while they
    # fit in L2 (H = 96, E = 64: 2.0x at 192 streams), from 32 above (H = 256: 0.96x at 16,
    # 1.17x at 32, 1.6x at 64; H = 650: 1.2x at 32 to 320), 2 threads, Zen 5
    return use_packed and B >= (step_gemm_min_b if GH * (E + H) <= 262144
                                else 4 * step_gemm_min_b)


def step_packs(Py_ssize_t B, Py_ssize_t E, Py_ssize_t H, int groups):
    """Whether a step of B streams (lstm_step: groups 4, rnn_step: 1) runs on the packed GEMM,
    so that weights packed before (its `packed` argument) are used."""
    return step_on_gemm(B, E, H, groups * H)


def log_softmax_packs(Py_ssize_t N):
    """Whether log_softmax of N rows runs on the packed GEMM (uses its `packed` argument)."""
    return use_packed and N >= 8


def _step_gemm_min_b(n=None):
    """The number of streams from which a single step runs on the packed GEMM rather than the
    dot-product kernel (for benchmarks and tests; returns the value in force)."""
    global step_gemm_min_b
    if n is not None:
        step_gemm_min_b = max(2, int(n))
    return step_gemm_min_b


cdef inline void gather_cols(const Step* S, int col, int n) noexcept nogil:
    """Columns col .. col+n-1 of every stream's gates from its row of the input table."""
    cdef int b, GH = S.G * S.H
    if n <= 0:
        return
    for b in range(S.B):
        memcpy(S.gates + <size_t>b * GH + col, S.table + <size_t>S.ids[b] * GH + col,
               n * sizeof(float))


cdef inline bint gate_panels(int G, int H, int g, int tid, int nt, int* q,
                             int* j) noexcept nogil:
    """This thread's half panels q .. j-1 of gate g when the threads share the G x P full
    panels (32 columns of a gate) of a step's product, pairs kept whole; False: none."""
    cdef int nh = cdiv(H, RK_NH), P = cdiv(nh, 2), k0, k1, p, k
    rk_split(G * P, tid, nt, &k0, &k1)
    p, k = max(k0 - g * P, 0), min(k1 - g * P, P)
    q[0], j[0] = 2 * p, min(2 * k, nh)
    return p < k


cdef void table_job(int tid, int nt, void* arg) noexcept nogil:
    """input_table's product: rows B of x times the packed W_ih, with the bias sums, as the
    packed branch of step_job computes its input part (the same panels, split the same way)."""
    cdef Step* S = <Step*>arg
    cdef int H = S.H, g, q, j
    for g in range(S.G):
        if gate_panels(S.G, H, g, tid, nt, &q, &j):
            rk_gemm(S.B, H, S.E, S.x, S.E, 1, S.pih + g * S.pih_block, 0.0, S.gates + g * H,
                    S.G * H, q, j, S.bsum + g * H)


cdef void step_job(int tid, int nt, void* arg) noexcept nogil:
    cdef Step* S = <Step*>arg
    cdef int B = S.B, E = S.E, H = S.H, GH = S.G * S.H
    cdef int b, g, gi, r, j, u0, u1, j0, j1, q, c0, c1
    cdef float* gb
    cdef float* pk
    split_cols(H, tid, nt, &u0, &u1, &j0, &j1)
    if S.packed and B > 1 and (S.pih != NULL or S.pack != NULL):
        # many streams on the packed GEMM: the threads share the G x P full panels (32 columns
        # of a gate) rather than each gate's columns, so every panel runs on the wide kernel
        # (H = 96, 2 threads: three half panels each, one of them narrow, before: 9% slower);
        # the cell pass after the barrier needs every gate of a column anyway. Each column's
        # sums are the same instructions whichever thread computes them.
        for gi in range(S.G):      # this thread's panels of each gate: one product call
            g = S.G - 1 - gi if S.flip else gi
            if not gate_panels(S.G, H, g, tid, nt, &q, &j):
                continue
            if S.pih != NULL:      # weights packed before: the same GEMMs on their panels
                if S.table != NULL:
                    gather_cols(S, g * H + q * RK_NH, min(j * RK_NH, H) - q * RK_NH)
                else:
                    rk_gemm(B, H, E, S.x, E, 1, S.pih + g * S.pih_block, 0.0, S.gates + g * H,
                            GH, q, j, S.bsum + g * H)
                rk_gemm(B, H, H, S.h, H, 1, S.phh + g * S.phh_block, 1.0, S.gates + g * H, GH,
                        q, j, NULL)
            else:                  # these columns packed into the thread's scratch, then GEMMs
                pk = S.pack + <size_t>tid * S.pack_stride
                c0, c1 = q * RK_NH, min(j * RK_NH, H)
                r = g * H + c0
                q = cdiv(c1 - c0, RK_NH)
                if S.table != NULL:
                    gather_cols(S, r, c1 - c0)
                else:
                    rk_pack_b(E, c1 - c0, S.w_ih + <size_t>r * E, E, True, pk, 0, q)
                    rk_gemm(B, c1 - c0, E, S.x, E, 1, pk, 0.0, S.gates + r, GH, 0, q,
                            S.bsum + r)
                rk_pack_b(H, c1 - c0, S.w_hh + <size_t>r * H, H, True, pk, 0, q)
                rk_gemm(B, c1 - c0, H, S.h, H, 1, pk, 1.0, S.gates + r, GH, 0, q, NULL)
    elif S.packed:   # one stream, or a few: each thread's columns of every gate
        for gi in range(S.G if j1 > j0 else 0):
            g = S.G - 1 - gi if S.flip else gi
            r = g * H + j0
            if S.table != NULL:   # the input part from the table, then the recurrent product
                gather_cols(S, r, j1 - j0)
                rk_dot_gemm(B, j1 - j0, H, S.h, H, S.w_hh + <size_t>r * H, H, S.gates + r, GH,
                            1)
            elif B == 1:   # one stream: both weights streamed once, biases added, one pass
                rk_gemv(j1 - j0, E, S.w_ih + <size_t>r * E, E, S.x, H, S.w_hh + <size_t>r * H,
                           H, S.h, S.b_ih + r, S.b_hh + r, S.gates + r, 0)
            else:        # a few streams: dot products over the unpacked weights
                rk_dot_gemm(B, j1 - j0, E, S.x, E, S.w_ih + <size_t>r * E, E, S.gates + r,
                               GH, 0)
                rk_dot_gemm(B, j1 - j0, H, S.h, H, S.w_hh + <size_t>r * H, H, S.gates + r,
                               GH, 1)
                for b in range(B):
                    gb = S.gates + <size_t>b * GH
                    for j in range(r, r + j1 - j0):
                        gb[j] += S.b_ih[j] + S.b_hh[j]
    else:
        if S.table != NULL:
            gather_cols(S, 0, GH)
        else:
            fill_rows(B, GH, S.gates, S.b_ih, S.b_hh)
            mm_rows(False, 0, B, GH, E, S.x, E, False, S.w_ih, E, True, 1.0, S.gates, GH, NULL)
        mm_rows(False, 0, B, GH, H, S.h, H, False, S.w_hh, H, True, 1.0, S.gates, GH, NULL)
    rk_barrier(nt)
    if j1 <= j0:
        return
    if S.kind == LSTM:
        rk_lstm_step_cell(B, H, j0, j1, S.gates, S.c, S.h, S.peep, S.fg)
    else:
        rk_tanh_rows(B, H, j0, j1, S.gates)
        for b in range(B):
            memcpy(S.h + <size_t>b * H + j0, S.gates + <size_t>b * H + j0,
                   (j1 - j0) * sizeof(float))


cdef int step_threads(Step* S) noexcept nogil:
    # a hand-off to a waiting worker costs about a microsecond: threads for steps that stream
    # more than 512 KB of weights (an LSTM step with H = 200, one stream: 12 -> 7 us; H = 650:
    # 150 -> 75 us); below, one core streams them from its own cache faster
    if not S.packed or <double>S.G * S.H * (S.E + S.H) * S.B < 131072:
        return 1
    return nthreads


cdef inline bint is_f32(object a, Py_ssize_t d0, Py_ssize_t d1):
    """a is a C-contiguous float32 array of shape [d0] (d1 < 0) or [d0, d1]: the fast check of
    the per-step entry points (the full checks, with their messages, run when it fails)."""
    if not cnp.PyArray_Check(a):
        return False
    cdef cnp.ndarray arr = <cnp.ndarray>a
    if cnp.PyArray_TYPE(arr) != cnp.NPY_FLOAT32 or not cnp.PyArray_IS_C_CONTIGUOUS(arr):
        return False
    if d1 < 0:
        return cnp.PyArray_NDIM(arr) == 1 and cnp.PyArray_DIM(arr, 0) == d0
    return (cnp.PyArray_NDIM(arr) == 2 and cnp.PyArray_DIM(arr, 0) == d0
            and cnp.PyArray_DIM(arr, 1) == d1)


cdef inline Py_ssize_t dim_or(object a, int ndim, int i):
    """Dimension i of a when a is an ndim-D numpy array, else -1."""
    if cnp.PyArray_Check(a) and cnp.PyArray_NDIM(<cnp.ndarray>a) == ndim:
        return cnp.PyArray_DIM(<cnp.ndarray>a, i)
    return -1


def _check_cell(int xdim, x, hname, h, cname, c, w_ih, w_hh, b_ih, b_hh, w_peep, int G,
                ragged=False):
    """The full checks (with their messages) of the inputs of a window (x [T, B, E]; ragged:
    the rows of its steps [N, E], B from h) or a step (x [B, E]) of a cell with G gates (LSTM 4,
    c required; RNN 1, c None): (B, E, H)."""
    _f32("x", x, (None,) * xdim)
    if ragged:
        _f32(hname, h, (None, None))
    cdef int B = h.shape[0] if ragged else x.shape[xdim - 2], E = x.shape[xdim - 1]
    _f32(hname, h, (B, None))
    cdef int H = h.shape[1]
    if G == 4:
        _f32(cname, c, (B, H))
    _f32("w_ih", w_ih, (G * H, E))
    _f32("w_hh", w_hh, (G * H, H))
    _f32("b_ih", b_ih, (G * H,))
    _f32("b_hh", b_hh, (G * H,))
    if w_peep is not None:
        _f32("w_peep", w_peep, (3, H))
    return B, E, H


cdef Py_ssize_t table_rows(object ids, object table, Py_ssize_t GH) except -1:
    """The number of streams B, once ids [B] (int64) are checked to be rows of table [V, GH]."""
    if not (cnp.PyArray_Check(ids) and cnp.PyArray_TYPE(<cnp.ndarray>ids) == cnp.NPY_INT64
            and cnp.PyArray_NDIM(<cnp.ndarray>ids) == 1
            and cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>ids)):
        raise ValueError("with a table, x must be the streams' rows of it: a contiguous 1-D "
                         "int64 array")
    if not is_f32(table, dim_or(table, 2, 0), GH):
        _f32("table", table, (None, GH))
    cdef Py_ssize_t B = cnp.PyArray_DIM(<cnp.ndarray>ids, 0), V = table.shape[0], i
    cdef const int64_t* p = <const int64_t*>cnp.PyArray_DATA(<cnp.ndarray>ids)
    cdef bint bad = False
    with nogil:
        for i in range(B):
            bad |= p[i] < 0 or p[i] >= V
    if bad:
        raise ValueError(f"x must be rows of the table, in [0, {V}), got values in "
                         f"[{ids.min()}, {ids.max()}]")
    return B


cdef object run_step(int kind, x, h, c, w_ih, w_hh, b_ih, b_hh, w_peep, bint fg, gates,
                     gates_name, packed, table):
    """lstm_step and rnn_step: checks (fast, then the full ones when they fail), one step."""
    cdef int G = 4 if kind == LSTM else 1
    cdef Py_ssize_t B = dim_or(x, 2, 0), E = dim_or(x, 2, 1), H = dim_or(h, 2, 1)
    if table is not None:   # x: the streams' rows of the table
        if H < 0:
            _f32("h", h, (None, None))
        B, E = table_rows(x, table, G * H), dim_or(w_ih, 2, 1)
    if not (B >= 0 and H >= 0 and (table is not None or is_f32(x, B, E)) and is_f32(h, B, H)
            and (kind != LSTM or is_f32(c, B, H))
            and is_f32(w_ih, G * H, E) and is_f32(w_hh, G * H, H) and is_f32(b_ih, G * H, -1)
            and is_f32(b_hh, G * H, -1) and (w_peep is None or is_f32(w_peep, 3, H))
            and (gates is None or is_f32(gates, B, G * H))):
        # with a table, the same checks on an input of the size the table stands for
        B, E, H = _check_cell(2, x if table is None else np.empty((B, max(E, 0)), np.float32),
                              "h", h, "c", c, w_ih, w_hh, b_ih, b_hh, w_peep, G)
        if gates is not None:
            _f32(gates_name, gates, (B, G * H))
    if gates is None:
        gates = np.empty((B, G * H), np.float32)
    cdef Step S
    memset(&S, 0, sizeof(Step))
    S.kind, S.B, S.E, S.H, S.G = kind, B, E, H, G
    S.packed, S.fg = use_packed, fg
    global step_flip
    step_flip = S.flip = not step_flip
    S.w_ih, S.w_hh, S.b_ih, S.b_hh = fptr(w_ih), fptr(w_hh), fptr(b_ih), fptr(b_hh)
    if table is not None:
        S.table, S.ids = fptr(table), <const int64_t*>cnp.PyArray_DATA(x)
    else:
        S.x = fptr(x)
    S.peep = fptr(w_peep) if w_peep is not None else NULL
    S.gates, S.h = fptr(gates), fptr(h)
    S.c = fptr(c) if kind == LSTM else NULL
    cdef int nt = step_threads(&S), i
    cdef float* scratch
    cdef Py_ssize_t GH = G * H
    cdef const float* pih = NULL
    cdef const float* phh = NULL
    if packed is not None:
        if not isinstance(packed, tuple) or len(packed) != 2:
            raise ValueError("packed must be (pack_weight(w_ih, G), pack_weight(w_hh, G)) or None")
        pih = packed_for(packed[0], w_ih, GH, E, G, "packed[0]")
        phh = packed_for(packed[1], w_hh, GH, H, G, "packed[1]")
    with nogil:
        if step_on_gemm(B, E, H, GH):
            # each thread's pack holds at most all H columns of one gate, K = max(E, H)
            # (weights packed before: the bias sums only)
            S.pack_stride = 0 if pih != NULL else rk_packed_size(max(E, H), <int>H)
            scratch = rk_scratch((GH + 15) // 16 * 16 + nt * S.pack_stride)
            if scratch != NULL:
                S.bsum = scratch
                S.pack = scratch + (GH + 15) // 16 * 16
                if pih != NULL:
                    S.pih, S.phh = pih, phh
                    S.pih_block, S.phh_block = rk_packed_size(E, <int>H), rk_packed_size(H, <int>H)
                for i in range(GH):
                    S.bsum[i] = S.b_ih[i] + S.b_hh[i]
        rk_pool_run(nt, step_job, &S)


def lstm_step(x, h, c, w_ih, w_hh, b_ih, b_hh, w_peep=None, forget_gate=True, gates=None,
              packed=None, table=None):
    """One LSTM step for B streams, updating h [B, H] and c [B, H] in place; returns (h, c).

    x [B, E]. gates, a [B, 4H] float32 workspace, makes the call allocation-free. packed,
    (pack_weight(w_ih, 4), pack_weight(w_hh, 4)), spares the step packing the weights when it
    runs on the packed GEMM (many streams); the results are the same bits.

    table, input_table(emb, w_ih, b_ih, b_hh, 4) [V, 4H]: x is then the streams' rows of it,
    ids [B] int64, and the step reads its input part x W_ih^T + b_ih + b_hh from them instead
    of computing it; on the packed GEMM the results are those of lstm_step(emb[ids], ...), bit
    for bit.
    """
    run_step(LSTM, x, h, c, w_ih, w_hh, b_ih, b_hh, w_peep, bool(forget_gate), gates, "gates",
             packed, table)
    return h, c


def rnn_step(x, h, w_ih, w_hh, b_ih, b_hh, work=None, packed=None, table=None):
    """One tanh-RNN step for B streams, updating h [B, H] in place; returns h.

    x [B, E]; work, a [B, H] float32 workspace, makes the call allocation-free; packed and
    table as lstm_step's, with groups 1.
    """
    run_step(RNN, x, h, None, w_ih, w_hh, b_ih, b_hh, None, True, work, "work", packed, table)
    return h


def input_table(emb, w_ih, b_ih, b_hh, int groups, packed=None):
    """The input part of a step's gates for every row of emb [V, E]: [V, G*H] float32, row v =
    emb[v] W_ih^T + b_ih + b_hh, computed as lstm_step (groups 4) or rnn_step (groups 1) computes
    it on the packed GEMM, so a step given the table and ids (table=) makes the same bits as
    one given emb[ids], and its product shrinks to h W_hh^T. A decoder whose input is a
    token's embedding alone computes the rows of the tokens a search feeds, each once
    (nn/recurrent.RecurrentStack.token_rows). packed: pack_weight(w_ih, groups), or None
    (packed here)."""
    _f32("emb", emb, (None, None))
    cdef Py_ssize_t V = emb.shape[0], E = emb.shape[1]
    _f32("w_ih", w_ih, (None, E))
    cdef Py_ssize_t GH = w_ih.shape[0]
    if groups < 1 or GH % groups:
        raise ValueError(f"groups must divide the {GH} rows of w_ih, got {groups}")
    _f32("b_ih", b_ih, (GH,))
    _f32("b_hh", b_hh, (GH,))
    out = np.empty((V, GH), np.float32)
    cdef Step S
    memset(&S, 0, sizeof(Step))
    S.B, S.E, S.G, S.H = V, E, groups, GH // groups
    S.x, S.gates = fptr(emb), fptr(out)
    cdef Py_ssize_t i
    cdef const float* b1 = fptr(b_ih)
    cdef const float* b2 = fptr(b_hh)
    cdef const float* w = fptr(w_ih)
    if not use_packed or V == 0 or GH == 0:
        # the step's own fallback: the bias sums, then the product (mm_rows)
        with nogil:
            fill_rows(V, GH, S.gates, b1, b2)
            mm_rows(False, 0, V, GH, E, S.x, E, False, w, E, True, 1.0, S.gates, GH, NULL)
        return out
    if packed is None:
        packed = pack_weight(w_ih, groups)
    S.pih = packed_for(packed, w_ih, GH, E, groups, "packed")
    S.pih_block = rk_packed_size(E, S.H)
    bsum = np.empty(GH, np.float32)
    S.bsum = fptr(bsum)
    cdef int nt = nthreads if <double>V * E * GH >= 131072 else 1
    with nogil:
        for i in range(GH):
            S.bsum[i] = b1[i] + b2[i]
        rk_pool_run(nt, table_job, &S)
    return out


# ---------------------------------------------------------------------------------------------
# Output layer: logits, softmax cross-entropy, log-softmax
# ---------------------------------------------------------------------------------------------
ctypedef struct Softmax:
    int N, H, V
    bint packed, log_probs                # log_probs: write log-probabilities (log_softmax)
    bint prepacked                     # pack_w holds w packed before (pack_weight)
    bint dot                           # a few rows: dot products over unpacked w, V split
    float scale                        # log_probs are multiplied by it (log10: 1 / ln 10)
    int topk                           # > 0: each row's topk best log-probabilities only
    int chunk                          # rows per product (softmax_chunk)
    int64_t* top_idx                   # [N, topk] their words
    float* top_val                     # [N, topk] their values
    const float* h                     # [N, H]
    const float* w                     # [V, H]
    const float* b                     # [V]
    const int64_t* targets             # [N]
    float* z                           # [N, V] logits -> exp(z - max) -> d loss / d logits
    float* inv                         # [N] 1 / sum exp(z - max)
    double* row_loss                   # [N]
    float* pack_w                      # pack_size(H, V) forward, pack_size(V, H) backward
    float* pack_h                      # pack_size(N, H)
    float* dh                          # [N, H]
    float* dw                          # [V, H]
    float* db                          # [V]
    float dloss


cdef void row_stats(Softmax* S, int n0, int n1, float* z) noexcept nogil:
    """Rows n0 .. n1-1 of the logits, at z (row n0 first): each row's max and sum of exps,
    then its log-probabilities in place, its best entries (topk) or its loss (cross-entropy)."""
    cdef int V = S.V, n
    cdef float m, zt
    cdef double s
    cdef float* zr
    for n in range(n0, n1):
        zr = z + <size_t>(n - n0) * V
        m = rk_row_max(V, zr)                          # row-wise max: no overflow in exp
        if S.log_probs:
            s = rk_exp_sum(V, zr, m, False)
            if S.topk > 0:       # the best entries of the row below, not the row itself
                rk_topk_row_shifted(V, zr, <float>(-m - log(s)), S.scale, S.topk,
                                    S.top_idx + <size_t>n * S.topk, S.top_val + <size_t>n * S.topk)
                continue
            rk_add_scalar(V, zr, <float>(-m - log(s)))
            if S.scale != 1.0:   # while the row is in cache: no second pass over [N, V]
                rk_scale(V, zr, S.scale)
        else:
            zt = zr[S.targets[n]] - m
            s = rk_exp_sum(V, zr, m, True)             # one pass: exp and its sum
            S.inv[n] = <float>(1.0 / s)
            S.row_loss[n] = log(s) - zt


# the logits of a chunk of rows stay in L2 (a quarter of it) between the product and the
# rows' passes: at bench_seq2seq's decoding step (320 rows x 8,000 words, each thread's 160
# rows 5 MB of logits before) the output layer took 3.52-3.59 instead of 3.72-3.83 ms (2
# threads, Zen 5, alternating runs; from 64 KB to 384 KB alike)
cdef size_t chunk_bytes = 262144


def _softmax_chunk_bytes(n=None):
    """The bytes of logits per chunk of rows of the output layer's forward (for tests; returns
    the value in force)."""
    global chunk_bytes
    if n is not None:
        chunk_bytes = max(1, int(n))
    return chunk_bytes


cdef inline int softmax_chunk(int N, int V, bint packed) noexcept nogil:
    """Rows per product in softmax_forward_job: on the packed GEMM, as many as fill
    chunk_bytes, 8 at least on the avx512 path and 12 on avx2, two blocks of its 6-row kernel
    (8 rows ran as 4 + 4, too few accumulators: the 10,001-word PTB output layer's forward,
    400 rows, 2 threads, 10.5 -> 9.6 ms; 1 thread 20.8 -> 19.7; the avx512 path best at 8,
    Zen 4); on BLAS, all rows at once."""
    cdef size_t rows = chunk_bytes // (4 * <size_t>max(V, 1))
    if not packed or rows >= <size_t>N:
        return max(N, 1)
    return max(12 if rk_isa == RK_ISA_AVX2 else 8, <int>rows)


cdef void softmax_forward_job(int tid, int nt, void* arg) noexcept nogil:
    cdef Softmax* S = <Softmax*>arg
    cdef int N = S.N, H = S.H, V = S.V, n, r0, r1, u0, u1, v0, v1, c0, c1
    cdef float* zc
    if S.dot:
        # few rows: each thread streams its words' rows of w once (blocks of RK_NH words, so
        # a logit's sums do not depend on the thread count): bias, then + h · w_v
        split_cols(V, tid, nt, &u0, &u1, &v0, &v1)
        if v1 > v0:
            for n in range(N):
                memcpy(S.z + <size_t>n * V + v0, S.b + v0, (v1 - v0) * sizeof(float))
            if N == 1:
                rk_gemv(v1 - v0, H, S.w + <size_t>v0 * H, H, S.h, 0, NULL, 0, NULL, NULL, NULL,
                        S.z + v0, 1)
            else:
                rk_dot_gemm(N, v1 - v0, H, S.h, H, S.w + <size_t>v0 * H, H, S.z + v0, V, 1)
        rk_barrier(nt)
        rk_split(N, tid, nt, &r0, &r1)
        row_stats(S, r0, r1, S.z + <size_t>r0 * V)
        return
    if S.packed and not S.prepacked:
        pack_part(tid, nt, H, V, S.w, H, True, S.pack_w)
        rk_barrier(nt)
    rk_split(N, tid, nt, &r0, &r1)
    # this thread's rows a chunk at a time: their product, then their passes while the logits
    # are in cache (each row computed as mm_rows computes it, whatever the chunk). The best
    # entries alone need no [N, V] array: every chunk's logits go to the thread's first rows
    c0 = r0
    while c0 < r1:
        c1 = min(c0 + S.chunk, r1)
        zc = S.z + <size_t>(r0 if S.topk > 0 else c0) * V
        mm_rows(S.packed, 0, c1 - c0, V, H, S.h + <size_t>c0 * H, H, False, S.w, H, True, 0.0,
                zc, V, S.pack_w, S.b)
        row_stats(S, c0, c1, zc)
        c0 = c1


cdef void softmax_backward_job(int tid, int nt, void* arg) noexcept nogil:
    cdef Softmax* S = <Softmax*>arg
    cdef int N = S.N, H = S.H, V = S.V, n, r0, r1, v0, v1
    cdef int64_t t
    cdef float d = S.dloss
    cdef float* zr
    # d loss / d logits = softmax - onehot, in place, by columns: this thread's columns of
    # every row, whose sum (the bias gradient, rows in order) is taken while the row's part is
    # in cache (one pass over the [N, V] logits instead of two)
    rk_split(V, tid, nt, &v0, &v1)
    if v1 > v0:
        memset(S.db + v0, 0, (v1 - v0) * sizeof(float))
        for n in range(N):
            zr = S.z + <size_t>n * V
            rk_scale(v1 - v0, zr + v0, S.inv[n] * d)
            t = S.targets[n]
            if v0 <= t < v1:
                zr[t] -= d
            rk_axpy1(v1 - v0, zr + v0, S.db + v0)
    if S.packed:
        pack_part(tid, nt, V, H, S.w, H, False, S.pack_w)
        pack_part(tid, nt, N, H, S.h, H, False, S.pack_h)
    rk_barrier(nt)
    rk_split(N, tid, nt, &r0, &r1)
    mm_rows(S.packed, r0, r1, H, V, S.z, V, False, S.w, H, False, 0.0, S.dh, H, S.pack_w)
    mm_rows(S.packed, v0, v1, H, N, S.z, V, True, S.h, H, False, 0.0, S.dw, H, S.pack_h)


def _decoder_args(h, w, b):
    _f32("h", h, (None, None))
    _f32("w", w, (None, h.shape[1]))
    _f32("b", b, (w.shape[0],))
    if w.shape[0] == 0:
        raise ValueError("w must have at least one row (a vocabulary of size 0)")


def softmax_xent_forward(h, w, b, targets, cache=None):
    """Summed cross-entropy (natural log) of targets under softmax(h wᵀ + b): (loss_sum, cache).

    h [N, H], w [V, H], b [V], targets [N] integers in [0, V). The cache keeps the softmax in
    its logits buffer; softmax_xent_backward overwrites it with the gradient (once per forward).
    """
    _decoder_args(h, w, b)
    cdef int N = h.shape[0], H = h.shape[1], V = w.shape[0]
    tg = _ids("targets", targets, V, 1)
    if tg.shape[0] != N:
        raise ValueError(f"targets must have {N} entries (one per row of h), got {tg.shape[0]}")
    cache = _reuse(cache, "softmax_xent")
    cdef Softmax S
    memset(&S, 0, sizeof(Softmax))
    S.N, S.H, S.V, S.packed, S.log_probs = N, H, V, use_packed, False
    S.h, S.w, S.b = fptr(h), fptr(w), fptr(b)
    S.targets = <const int64_t*>cnp.PyArray_DATA(tg)
    S.z = fptr(_buf(cache, "z", (N, V)))                 # logits, then exp(z - max)
    S.inv = fptr(_buf(cache, "inv", (N,)))               # 1 / sum exp(z - max) per row
    row_loss = _buf(cache, "row_loss", (N,), np.float64)
    S.row_loss = <double*>cnp.PyArray_DATA(row_loss)
    S.pack_w = fptr(_packbuf(cache, "pack_w", max(pack_size(H, V), pack_size(V, H))))
    S.chunk = softmax_chunk(N, V, S.packed)
    with nogil:
        rk_pool_run(threads_for(S.packed), softmax_forward_job, &S)
    cache.h, cache.w, cache.targets, cache.consumed = h, w, tg, False
    return float(row_loss.sum()), cache                 # summed in a fixed order


def softmax_xent_backward(dloss, cache):
    """Gradients (dh [N, H], dw [V, H], db [V]) of loss_sum · dloss; writes into the cache."""
    if not isinstance(cache, Cache) or cache.kind != "softmax_xent" or not hasattr(cache, "z"):
        raise ValueError("cache must be the cache returned by softmax_xent_forward")
    if cache.consumed:
        raise ValueError("softmax_xent_backward already ran on this cache (it works in place); "
                         "run softmax_xent_forward again")
    cache.consumed = True
    z = cache.z
    cdef int N = z.shape[0], V = z.shape[1], H = cache.h.shape[1]
    cdef Softmax S
    memset(&S, 0, sizeof(Softmax))
    S.N, S.H, S.V, S.packed, S.dloss = N, H, V, use_packed, dloss
    S.h, S.w, S.z, S.inv = fptr(cache.h), fptr(cache.w), fptr(z), fptr(cache.inv)
    S.targets = <const int64_t*>cnp.PyArray_DATA(cache.targets)
    dh = _buf(cache, "dh", (N, H))
    dw = _buf(cache, "dw", (V, H))
    db = _buf(cache, "db", (V,))
    S.dh, S.dw, S.db = fptr(dh), fptr(dw), fptr(db)
    S.pack_w = fptr(_packbuf(cache, "pack_w", max(pack_size(H, V), pack_size(V, H))))
    S.pack_h = fptr(_packbuf(cache, "pack_h", pack_size(N, H)))
    with nogil:
        rk_pool_run(threads_for(S.packed), softmax_backward_job, &S)
    return dh, dw, db


def log_softmax(h, w, b, out=None, float scale=1.0, packed=None):
    """Natural-log probabilities [N, V] of softmax(h wᵀ + b); h [N, H], w [V, H], b [V]; times
    `scale` when given (1 / ln 10: log10 probabilities, in the same pass).

    out, an [N, V] float32 array, makes the call allocation-free. Fewer than 8 rows are dot
    products over the unpacked w, its words split between the threads; more go through the
    packed kernel (w packed into the thread's scratch, kept between calls). packed,
    pack_weight(w), spares that packing (a decoding run: the same w at every step); the
    results are the same bits.
    """
    _decoder_args(h, w, b)
    if out is None:
        out = np.empty((h.shape[0], w.shape[0]), np.float32)
    else:
        _f32("out", out, (h.shape[0], w.shape[0]))
    run_log_softmax(h, w, b, out, scale, packed, 0, NULL, NULL)
    return out


def log_softmax_topk(h, w, b, int k, float scale=1.0, packed=None, work=None):
    """The k best entries of each row of log_softmax(h, w, b, scale=scale), best first:
    (words [N, k] int64, values [N, k] float32), without writing the [N, V] log-probabilities.

    The same as topk_rows(lp, k) and np.take_along_axis(lp, words, 1) for lp = log_softmax(...)
    on the same path, bit for bit (ties to the lower word, a NaN ranked as -inf): each row's
    top k are taken while its logits are in cache, by the threads that computed them. The
    first cut of a beam search step (its K best continuations are among each row's K best).
    scale must be > 0; work, an [N, V] float32 array, is the call's scratch (allocation-free
    calls; what it holds afterwards is unspecified); packed as log_softmax's.
    """
    _decoder_args(h, w, b)
    cdef int N = h.shape[0], V = w.shape[0]
    if k < 1 or k > V:
        raise ValueError(f"k must be in [1, {V}], got {k}")
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    if work is None:
        work = np.empty((N, V), np.float32)
    else:
        _f32("work", work, (N, V))
    words = np.empty((N, k), np.int64)
    values = np.empty((N, k), np.float32)
    run_log_softmax(h, w, b, work, scale, packed, k, iptr(words), fptr(values))
    return words, values


cdef run_log_softmax(h, w, b, out, float scale, packed, int topk, int64_t* top_idx,
                     float* top_val):
    """log_softmax (topk 0: every log-probability into out) and log_softmax_topk (out is its
    scratch; each row's topk best into top_idx, top_val), on checked arguments."""
    cdef int N = h.shape[0], H = h.shape[1], V = w.shape[0]
    cdef Softmax S
    memset(&S, 0, sizeof(Softmax))
    # packing w costs about one pass over it: worth it from a few rows on; below, the rows'
    # dot products stream w once, its words split between the threads
    S.N, S.H, S.V, S.packed, S.log_probs = N, H, V, log_softmax_packs(N), True
    S.dot = use_packed and not S.packed
    S.scale = scale
    S.topk, S.top_idx, S.top_val = topk, top_idx, top_val
    S.h, S.w, S.b, S.z = fptr(h), fptr(w), fptr(b), fptr(out)
    # the packed weights go into this thread's scratch, kept between calls: a fresh [V, H]
    # buffer per decoding step cost its page faults every step (8 MB at Multi30k's size)
    pack = None
    cdef const float* pre = packed_for(packed, w, V, H, 1, "packed")
    S.prepacked = S.packed and pre != NULL
    S.pack_w = <float*>pre if S.prepacked else (rk_scratch(rk_packed_size(H, V)) if S.packed
                                                else NULL)
    if S.packed and S.pack_w == NULL:
        pack = np.empty(rk_packed_size(H, V), np.float32)
        S.pack_w = fptr(pack)
    S.chunk = softmax_chunk(N, V, S.packed)
    with nogil:
        rk_pool_run(threads_for(S.packed or S.dot), softmax_forward_job, &S)


# ---------------------------------------------------------------------------------------------
# Embedding
# ---------------------------------------------------------------------------------------------
def embedding_forward(ids, weight, out=None):
    """Rows of weight [V, E] for ids [T, B]: x [T, B, E] (out, if given, is filled)."""
    _f32("weight", weight, (None, None))
    cdef int V = weight.shape[0], E = weight.shape[1]
    ix = _ids("ids", ids, V, 2)
    if out is None:
        out = np.empty((ix.shape[0], ix.shape[1], E), np.float32)
    else:
        _f32("out", out, (ix.shape[0], ix.shape[1], E))
    cdef const int64_t* ip = <const int64_t*>cnp.PyArray_DATA(ix)
    cdef const float* wp = fptr(weight)
    cdef float* op = fptr(out)
    cdef size_t n, count = ix.size
    with nogil:
        for n in range(count):
            memcpy(op + n * E, wp + <size_t>ip[n] * E, E * sizeof(float))
    return out


def embedding_backward(dx, ids, int V, out=None, bint accumulate=False):
    """dweight [V, E]: the rows of dx [T, B, E] added up per id, in order (deterministic); into
    `out` when given, which is cleared first unless `accumulate` (then the rows are added to
    what it holds: a caller that keeps it zero outside the rows it last wrote clears only
    those)."""
    _f32("dx", dx, (None, None, None))
    cdef int E = dx.shape[2]
    ix = _ids("ids", ids, V, 2)
    if ix.shape[0] != dx.shape[0] or ix.shape[1] != dx.shape[1]:
        raise ValueError(f"ids {list(ix.shape)} and dx {list(dx.shape)} differ in [T, B]")
    if out is None:
        out = np.zeros((V, E), np.float32)
    else:
        _f32("out", out, (V, E))
        if not accumulate:
            out.fill(0)
    cdef const int64_t* ip = <const int64_t*>cnp.PyArray_DATA(ix)
    cdef const float* dp = fptr(dx)
    cdef float* op = fptr(out)
    cdef size_t n, count = ix.size
    with nogil:
        for n in range(count):
            rk_axpy1(E, dp + n * E, op + <size_t>ip[n] * E)
    return out


def topk_rows(z, int k, out=None):
    """The k largest entries of each row of z [R, V] (float32), best first: indices [R, k]
    (int64). Ties go to the earlier index, a NaN counts as -inf: np.argsort(-z, axis=1,
    kind="stable")[:, :k] for rows without NaN, in one pass over z (reference.topk_rows)."""
    _f32("z", z, (None, None))
    cdef int R = z.shape[0], V = z.shape[1]
    if k < 1 or k > V:
        raise ValueError(f"k must be in [1, {V}], got {k}")
    if out is None:
        out = np.empty((R, k), np.int64)
    elif (not isinstance(out, np.ndarray) or out.dtype != np.int64 or out.shape != (R, k)
          or not out.flags.c_contiguous):
        raise ValueError(f"out must be a C-contiguous int64 array of shape [{R}, {k}]")
    val = np.empty(k, np.float32)
    cdef const float* zp = fptr(z)
    cdef float* vp = fptr(val)
    cdef int64_t* op = <int64_t*>cnp.PyArray_DATA(out)
    cdef int r
    with nogil:
        for r in range(R):
            rk_topk_row(V, zp + <size_t>r * V, k, op + <size_t>r * k, vp)
    return out


def beam_select(cand, cand_lp, scores, greedy, last, int eos, worst, penalties):
    """One step of beam search's bookkeeping: reference.beam_select (its docstring says what
    goes in and out), for the rows' candidates cand [A*K, r] (int64) and their float32
    log-probabilities cand_lp [A*K, r] (topk_rows, or log_softmax_topk), in one pass per input:
    an input's K*r candidates are merged into its K best by insertion, stable as the
    reference's argsort."""
    if (not isinstance(cand, np.ndarray) or cand.dtype != np.int64 or cand.ndim != 2
            or not cand.flags.c_contiguous):
        raise ValueError("cand must be a C-contiguous [rows, r] int64 array")
    _f32("cand_lp", cand_lp, (cand.shape[0], cand.shape[1]))
    sc = np.ascontiguousarray(scores, np.float64)
    if sc.ndim != 2:
        raise ValueError(f"scores must be [A, K], got {list(sc.shape)}")
    cdef Py_ssize_t A = sc.shape[0], K = sc.shape[1], r = cand.shape[1]
    if K < 1 or cand.shape[0] != A * K or r < 1 or r > K:
        raise ValueError(f"cand {list(cand.shape)} must have K rows per input of scores "
                         f"{list(sc.shape)} and 1 to K candidates per row")
    gr = np.ascontiguousarray(greedy, np.int64)
    la = np.ascontiguousarray(last, np.bool_).view(np.uint8)
    wo = np.ascontiguousarray(worst, np.float64)
    if gr.shape != (A,) or la.shape != (A,) or wo.shape != (A,):
        raise ValueError(f"greedy, last and worst must be [{A}]")
    cdef double pen_eos = penalties[0], pen_other = penalties[1]
    new_rows = np.empty((A, K), np.int64)
    new_tokens = np.empty((A, K), np.int64)
    new_scores = np.empty((A, K), np.float64)
    per_input = np.empty((4, A), np.int64)      # new_greedy, kept, g_row, g_tok
    new_greedy, kept, g_row, g_tok = per_input
    g_done = np.empty(A, np.bool_)
    g_score = np.empty(A, np.float64)
    end_ids = np.empty((3, A * K), np.int64)     # input, row, token of each one that ends
    e_sc = np.empty((2, A * K), np.float64)      # score, normalized score of each
    fallback = np.empty(A, np.int64)
    cdef const double* wop = dptr(wo)
    cdef int64_t* fbp = iptr(fallback)
    cdef Py_ssize_t n_fb = 0
    cdef double nm
    tv = np.empty(K, np.float64)
    ti = np.empty(K, np.int64)
    cdef const float* zp = fptr(cand_lp)
    cdef const double* sp = dptr(sc)
    cdef const int64_t* gp = iptr(gr)
    cdef const unsigned char* lap = <const unsigned char*>cnp.PyArray_DATA(la)
    cdef int64_t* cp = iptr(cand)
    cdef double* tvp = dptr(tv)
    cdef int64_t* tip = iptr(ti)
    cdef int64_t* nr = iptr(new_rows)
    cdef int64_t* nt = iptr(new_tokens)
    cdef double* ns = dptr(new_scores)
    cdef int64_t* ng = iptr(per_input)
    cdef int64_t* kp = ng + A
    cdef int64_t* grp = ng + 2 * A
    cdef int64_t* gtp = ng + 3 * A
    cdef unsigned char* gd = <unsigned char*>cnp.PyArray_DATA(g_done)
    cdef double* gsp = dptr(g_score)
    cdef int64_t* eip = iptr(end_ids)
    cdef int64_t* erp = eip + A * K
    cdef int64_t* etp = eip + 2 * A * K
    cdef double* esp = dptr(e_sc)
    cdef double* enp = esp + A * K
    cdef Py_ssize_t i, k, j, q, row, n_end = 0, slot, gk, g0
    cdef int64_t g, tok
    cdef double tot, v, best_v, NEG = -np.inf
    cdef bint ends, isg, nan_seen
    with nogil:
        for i in range(A):
            # the input's K best of its K*r candidates, best first; ties keep the earlier one
            for q in range(K):
                tvp[q] = NEG
                tip[q] = -1
            for k in range(K):
                row = i * K + k
                for j in range(r):
                    tot = sp[i * K + k] + <double>zp[row * r + j]
                    if tot > tvp[K - 1]:      # NaN and -inf never enter
                        q = K - 1
                        while q > 0 and tot > tvp[q - 1]:
                            tvp[q] = tvp[q - 1]
                            tip[q] = tip[q - 1]
                            q -= 1
                        tvp[q] = tot
                        tip[q] = k * r + j
            # the greedy path: the argmax token of its row (the first NaN, as np.argmax)
            g = gp[i]
            g0 = g if g > 0 else 0
            row = i * K + g0
            gk = 0
            best_v = <double>zp[row * r]
            nan_seen = best_v != best_v
            for j in range(1, r):
                if nan_seen:
                    break
                v = <double>zp[row * r + j]
                if v != v or v > best_v:
                    best_v = v
                    gk = j
                    nan_seen = v != v
            grp[i] = row
            gtp[i] = cp[row * r + gk]
            gsp[i] = sp[i * K + g0] + best_v
            gd[i] = g < 0
            ng[i] = -1
            for q in range(K):
                nr[i * K + q] = i * K
                nt[i * K + q] = eos
                ns[i * K + q] = NEG
            slot = 0
            for q in range(K):
                if tip[q] < 0:
                    break
                row = i * K + tip[q] // r
                tok = cp[row * r + tip[q] % r]
                ends = tok == eos or lap[i] != 0
                isg = g >= 0 and row == grp[i] and tok == gtp[i]
                if ends:
                    nm = tvp[q] / (pen_eos if tok == eos else pen_other)
                    if nm > wop[i]:   # else never returned: n_best finished rank above it
                        eip[n_end] = i
                        erp[n_end] = row
                        etp[n_end] = tok
                        esp[n_end] = tvp[q]
                        enp[n_end] = nm
                        n_end += 1
                    if isg:
                        gd[i] = 1
                else:
                    nr[i * K + slot] = row
                    nt[i * K + slot] = tok
                    ns[i * K + slot] = tvp[q]
                    if isg:
                        ng[i] = slot
                    slot += 1
            kp[i] = slot
            if not gd[i] and ng[i] < 0:
                fbp[n_fb] = i
                n_fb += 1
    return (new_rows, new_tokens, new_scores, new_greedy, kept, g_done, g_row, g_tok, g_score,
            (end_ids[0, :n_end], end_ids[1, :n_end], end_ids[2, :n_end], e_sc[0, :n_end],
             e_sc[1, :n_end]), fallback[:n_fb])


def beam_next(new_rows, new_tokens, new_scores, new_greedy, kept, last, worst, double penalty,
              history):
    """The end of a beam search step: reference.beam_next (its docstring says what goes in and
    out), in one pass instead of some twenty numpy calls per step."""
    cdef Py_ssize_t A = new_scores.shape[0], K = new_scores.shape[1]
    nr = np.ascontiguousarray(new_rows, np.int64)
    nt = np.ascontiguousarray(new_tokens, np.int64)
    ns = np.ascontiguousarray(new_scores, np.float64)
    ng = np.ascontiguousarray(new_greedy, np.int64)
    kp = np.ascontiguousarray(kept, np.int64)
    la = np.ascontiguousarray(last, np.bool_).view(np.uint8)
    wo = np.ascontiguousarray(worst, np.float64)
    hi = np.ascontiguousarray(history, np.int64)
    if (nr.shape != (A, K) or nt.shape != (A, K) or ng.shape != (A,) or kp.shape != (A,)
            or la.shape != (A,) or wo.shape != (A,) or hi.ndim != 2 or hi.shape[0] != A * K):
        raise ValueError(f"beam_next: the step's arrays must be [A, K] = [{A}, {K}], [A] and "
                         f"history [A*K, t]")
    cdef Py_ssize_t T = hi.shape[1], n = 0, i, k, j, row
    going = np.empty(A, np.int64)
    cdef int64_t* gp = iptr(going)
    cdef const int64_t* nrp = iptr(nr)
    cdef const int64_t* ntp = iptr(nt)
    cdef const double* nsp = dptr(ns)
    cdef const int64_t* ngp = iptr(ng)
    cdef const int64_t* kpp = iptr(kp)
    cdef const unsigned char* lap = <const unsigned char*>cnp.PyArray_DATA(la)
    cdef const double* wop = dptr(wo)
    cdef double best, NEG = -np.inf
    with nogil:
        for i in range(A):
            if lap[i] or kpp[i] <= 0:
                continue
            if ngp[i] < 0 and wop[i] > NEG:
                best = nsp[i * K]
                for k in range(1, K):
                    if nsp[i * K + k] > best:
                        best = nsp[i * K + k]
                if best / penalty <= wop[i]:
                    continue
            gp[n] = i
            n += 1
    going = going[:n]
    rows = np.empty(n * K, np.int64)
    tokens = np.empty(n * K, np.int64)
    scores = np.empty((n, K), np.float64)
    greedy = np.empty(n, np.int64)
    new_hist = np.empty((n * K, T + 1), np.int64)
    cdef int64_t* rp = iptr(rows)
    cdef int64_t* tp = iptr(tokens)
    cdef double* sp = dptr(scores)
    cdef int64_t* grp = iptr(greedy)
    cdef const int64_t* hp = iptr(hi)
    cdef int64_t* hn = iptr(new_hist)
    with nogil:
        for j in range(n):
            i = gp[j]
            grp[j] = ngp[i]
            for k in range(K):
                row = nrp[i * K + k]
                rp[j * K + k] = row
                tp[j * K + k] = ntp[i * K + k]
                sp[j * K + k] = nsp[i * K + k]
                if T:
                    memcpy(hn + (j * K + k) * (T + 1), hp + row * T, T * sizeof(int64_t))
                hn[(j * K + k) * (T + 1) + T] = ntp[i * K + k]
    return going, rows, tokens, scores, greedy, new_hist


# ---------------------------------------------------------------------------------------------
# Attention (nn/attention.py's dot and general scores)
# ---------------------------------------------------------------------------------------------
ctypedef struct Attend:
    int T, S, H, D, B
    const float* q
    size_t qt, qb                       # strides of q [T, B, H] in floats
    const float* keys
    size_t kb, ks
    const float* enc
    size_t eb, es
    const unsigned char* mask           # [B, S]
    float* alpha                        # [B, T, S]
    float* ctx
    size_t ct, cb                       # strides of the context rows [T, B, >= D]


cdef void attend_job(int tid, int nt, void* arg) noexcept nogil:
    cdef Attend* A = <Attend*>arg
    cdef int b, b0, b1
    rk_split(A.B, tid, nt, &b0, &b1)
    for b in range(b0, b1):
        rk_attend(A.T, A.S, A.H, A.D, A.q + b * A.qb, A.qt, A.keys + b * A.kb, A.ks,
                  A.enc + b * A.eb, A.es, A.mask + <size_t>b * A.S,
                  A.alpha + <size_t>b * A.T * A.S, A.ctx + b * A.cb, A.ct)


cdef size_t _rows(a, int axis, str name) except? 0:
    """The stride of a float32 array's axis in floats (its last axis must be contiguous)."""
    if (not isinstance(a, np.ndarray) or a.ndim != 3 or a.dtype != np.float32
            or a.strides[2] != 4 or a.strides[axis] < 0 or a.strides[axis] % 4):
        raise ValueError(f"{name} must be a 3-D float32 array with contiguous rows")
    return a.strides[axis] // 4


def attend(q, keys, enc, mask, alpha, ctx):
    """Attention of decoder states q [T, B, H] over keys [S, B, H] and states enc [S, B, D]
    (mask [B, S]: the real positions): alpha [B, T, S] (softmax of q . key over the real
    positions) and ctx [T, B, >= D] (its first D columns: sum_s alpha enc_s) are written.
    reference.attend is the specification; a view with contiguous rows serves for each array
    (e.g. ctx the first D columns of [T, B, D + H]). One sentence per thread at a time."""
    cdef int T = q.shape[0], B = q.shape[1], H = q.shape[2], S = keys.shape[0]
    cdef int D = enc.shape[2]
    if (keys.shape[1:] != (B, H) or enc.shape[:2] != (S, B) or alpha.shape != (B, T, S)
            or ctx.shape[:2] != (T, B) or ctx.shape[2] < D or mask.shape != (B, S)):
        raise ValueError(f"attend: q {list(q.shape)}, keys {list(keys.shape)}, enc "
                         f"{list(enc.shape)}, mask {list(mask.shape)}, alpha "
                         f"{list(alpha.shape)} and ctx {list(ctx.shape)} do not agree")
    _f32("alpha", alpha, (B, T, S))
    m = np.ascontiguousarray(mask, np.bool_).view(np.uint8)
    cdef Attend A
    A.T, A.S, A.H, A.D, A.B = T, S, H, D, B
    A.qt, A.qb = _rows(q, 0, "q"), _rows(q, 1, "q")
    A.ks, A.kb = _rows(keys, 0, "keys"), _rows(keys, 1, "keys")
    A.es, A.eb = _rows(enc, 0, "enc"), _rows(enc, 1, "enc")
    A.ct, A.cb = _rows(ctx, 0, "ctx"), _rows(ctx, 1, "ctx")
    A.q = <const float*>cnp.PyArray_DATA(q)
    A.keys = <const float*>cnp.PyArray_DATA(keys)
    A.enc = <const float*>cnp.PyArray_DATA(enc)
    A.ctx = <float*>cnp.PyArray_DATA(ctx)
    A.mask = <const unsigned char*>cnp.PyArray_DATA(m)
    A.alpha = fptr(alpha)
    # a hand-off costs about a microsecond: threads from some 64k multiply-adds on
    cdef int nt = nthreads if <double>B * T * S * (H + D) >= 65536 else 1
    with nogil:
        rk_pool_run(nt, attend_job, &A)


# ---------------------------------------------------------------------------------------------
# Optimizer
# ---------------------------------------------------------------------------------------------
ctypedef struct AdamArgs:
    size_t n
    float* p
    const float* g
    float* m
    float* v
    float b1, c1, b2, c2, step, eps

cdef size_t FLAT_BLOCK = 4096   # the threads' unit: their parts start on whole vectors


cdef inline void flat_part(size_t n, int tid, int nt, size_t* i0, size_t* i1) noexcept nogil:
    """This thread's entries i0 .. i1-1 of a flat buffer of n (whole FLAT_BLOCKs but the last)."""
    cdef int k0, k1
    rk_split(<int>((n + FLAT_BLOCK - 1) // FLAT_BLOCK), tid, nt, &k0, &k1)
    i0[0] = k0 * FLAT_BLOCK
    i1[0] = min(<size_t>k1 * FLAT_BLOCK, n)


cdef void adam_job(int tid, int nt, void* arg) noexcept nogil:
    cdef AdamArgs* A = <AdamArgs*>arg
    cdef size_t i0, i1
    flat_part(A.n, tid, nt, &i0, &i1)
    if i1 > i0:
        rk_adam(i1 - i0, A.p + i0, A.g + i0, A.m + i0, A.v + i0, A.b1, A.c1, A.b2, A.c2,
                A.step, A.eps)


ctypedef struct FlatArgs:          # sgd_step, sum_squares
    size_t n
    float* p
    const float* g
    float lr
    double* part                   # [blocks] the sums of squares of NORM_BLOCK entries


cdef void sgd_job(int tid, int nt, void* arg) noexcept nogil:
    cdef FlatArgs* A = <FlatArgs*>arg
    cdef size_t i0, i1
    flat_part(A.n, tid, nt, &i0, &i1)
    if i1 > i0:
        rk_sgd(i1 - i0, A.p + i0, A.g + i0, A.lr)


cdef size_t NORM_BLOCK = 65536   # floats per partial sum of squares (optim.grad_norm's unit)


cdef void sum_squares_job(int tid, int nt, void* arg) noexcept nogil:
    cdef FlatArgs* A = <FlatArgs*>arg
    cdef int k0, k1, k
    rk_split(<int>((A.n + NORM_BLOCK - 1) // NORM_BLOCK), tid, nt, &k0, &k1)
    for k in range(k0, k1):
        A.part[k] = rk_sum_squares(min(NORM_BLOCK, A.n - k * NORM_BLOCK), A.g + k * NORM_BLOCK)


cdef Py_ssize_t _flat(str name, a, Py_ssize_t n, bint write) except -1:
    """The length of a contiguous 1-D float32 array (of length n unless n < 0)."""
    if (not isinstance(a, np.ndarray) or a.dtype != np.float32 or a.ndim != 1
            or (n >= 0 and a.shape[0] != n) or not a.flags.c_contiguous):
        raise ValueError(f"{name} must be a contiguous 1-D float32 array"
                         + (" of the length of params" if n >= 0 else ""))
    if write and not a.flags.writeable:
        raise ValueError(f"{name} must be writeable")
    return a.shape[0]


def sgd_step(params, grads, double lr):
    """params -= lr grads in place over contiguous 1-D float32 buffers, lr rounded to float32 and
    each product rounded before the difference, as reference.sgd_step (the same bits on every
    path and thread count)."""
    cdef Py_ssize_t n = _flat("params", params, -1, True)
    _flat("grads", grads, n, False)
    cdef FlatArgs A
    A.n, A.p, A.g, A.lr = n, fptr(params), fptr(grads), <float>lr
    cdef int nt = nthreads if n >= 65536 else 1
    with nogil:
        rk_pool_run(nt, sgd_job, &A)


def sum_squares(x):
    """The sum of the squares of a contiguous 1-D float32 array, as a float: blocks of 65,536
    entries, each summed in 32 double lanes (reference.sum_squares), the blocks' sums added in
    order, so the same bits on every path and thread count."""
    cdef Py_ssize_t n = _flat("x", x, -1, False)
    cdef Py_ssize_t nb = (n + NORM_BLOCK - 1) // NORM_BLOCK
    parts = np.zeros(nb, np.float64)
    cdef FlatArgs A
    A.n, A.g, A.part = n, fptr(x), dptr(parts)
    cdef int nt = nthreads if nb > 1 else 1
    if nb:
        with nogil:
            rk_pool_run(nt, sum_squares_job, &A)
    cdef double total = 0.0
    cdef Py_ssize_t k
    for k in range(nb):
        total += parts[k]
    return total


def adam_step(params, grads, m, v, double beta1, double beta2, double step, double eps):
    """One Adam step in place over flat float32 buffers params, grads, m, v [P] (contiguous):
    m = beta1 m + (1 - beta1) g; v = beta2 v + (1 - beta2) g^2; params -= step m / (sqrt(v) +
    eps), every operation rounded in float32 as reference.adam_step computes it (the same bits,
    on every path and thread count): beta1, beta2, 1 - beta1, 1 - beta2 (computed in double),
    step and eps are rounded to float32 first. step and eps carry the bias corrections
    (nn/optim.Adam)."""
    cdef Py_ssize_t n = _flat("params", params, -1, True)
    _flat("grads", grads, n, False)
    _flat("m", m, n, True)
    _flat("v", v, n, True)
    cdef AdamArgs A
    A.n = n
    A.p, A.g, A.m, A.v = fptr(params), fptr(grads), fptr(m), fptr(v)
    A.b1, A.b2, A.step, A.eps = <float>beta1, <float>beta2, <float>step, <float>eps
    A.c1, A.c2 = <float>(1.0 - beta1), <float>(1.0 - beta2)
    # a hand-off costs about a microsecond: threads from some 64k elements on
    cdef int nt = nthreads if n >= 65536 else 1
    with nogil:
        rk_pool_run(nt, adam_job, &A)
