/* rnnkit kernels: the packed AVX-512 GEMM, gemv and dot-gemm.

   Which product entry point to use (the same table is in docs/kernels.md):

   entry point      where        computes                                 use it for
   sgemm            .pyx def     C = a op(A) op(B) + b C on BLAS          tests of the BLAS helper
   sgemm_rm         .pyx cdef    the same, row-major over column-major    BLAS backend, M > 1 rows
   sgemv_rm         .pyx cdef    y = a op(A) x + b y on BLAS              BLAS backend, one row
   matmul           .pyx def     C = op(A) op(B) + b C, current backend,  tests, bench_gemm.py
                                 threaded like the layers
   mm_rows          .pyx cdef    rows m0..m1-1 of op(A) op(B) + bias +    every product of a window
                                 b C: packed kernel (op(B) packed          and of the output layer
                                 before) or BLAS/gemv                      (input projection, the
                                                                           backward products, logits)
   rk_gemm512       this file    columns 16 q0..16 q1-1 of A B + bias +   the recurrent product in
                                 b C, B packed by rk_pack_b                the time loop: W_hh packed
                                                                           once per window, threads
                                                                           split the columns
   rk_gemv512       this file    y = W1 x1 (+ W2 x2) + (b1 + b2) or + y,  a single step with one
                                 W unpacked                                stream (B = 1)
   rk_dot_gemm512   this file    Y = X Wᵀ (+ Y), W unpacked                a single step with a few
                                                                           streams (B > 1)

   Each has an AVX2+FMA twin (rk_pack_b256, rk_gemm256, rk_gemv256, rk_dot_gemm256, below);
   rk_isa.h holds the one table of which runs on which path, and the dispatching names the
   module calls (rk_pack_b, rk_gemm, rk_gemv, rk_dot_gemm). Every result is computed by the
   same instructions in the same order whatever the thread split. */
#ifndef RK_GEMM_H
#define RK_GEMM_H

#include <stddef.h>
#include "rk_cpu.h"
#include "rk_math.h"

/* ---- matrix products on packed weights -------------------------------------------------
   C[M, N] = A[M, K] · B[K, N] + beta · C with B packed once into panels of 32 columns:
   panel p holds B[k, 32p .. 32p+31] for k = 0 .. K-1 (zero-padded past N), so the inner
   loop streams 128 contiguous bytes per k. The weights do not change over a window, so the
   recurrent product packs W_hh once per call and reuses it for all T steps (as oneDNN does).
   A is read in place through strides: A[m, k] = a[m * rsa + k * csa].
   The micro-kernel keeps an MR x 32 block of C in 2 * MR AVX-512 registers. On CPUs without
   AVX-512 the kernels call BLAS instead (see `gemm_backend` in the module). */
#define RK_NR 32
#define RK_MR 10
static size_t rk_packed_size(int K, int N) { return (size_t)((N + RK_NR - 1) / RK_NR) * RK_NR * (size_t)K; }
/* Columns 16 q0 .. 16 q1 - 1 of B (q counts half panels, the unit of work of a thread),
   B[k, n] = b[n * ldb + k] when trans (a weight [N, K]), else b[k * ldb + n] */
#define RK_NH 16

/* Blocking of the packed products, per microarchitecture, chosen at load time from the CPU's
   family and model (rk_blocking_select, called by rk_isa_select). MC rows of A per block (a
   block of MC x KC in L2; the row split changes no result), K cut into the fewest blocks of
   at most KC_MAX (each block beyond the first is one more pass over C; the cut points change
   the rounding, so a row with another KC_MAX gives other bits on that CPU, still the same for
   every thread count). AMD Zen 5 and Zen 4 have been measured, and Zen 4 gains nothing from
   another MC or KC_MAX (docs/kernels.md: within the noise on every shape, KC_MAX 512 or 1024
   worse), so every CPU gets Zen 5's numbers until a measurement on another one (Intel's cores
   have 1-2 MB of L2; bench/bench_gemm.py --blocking) argues for a row of its own, placed
   before the last one. */
typedef struct { int mc, kc_max; } rk_blocking_t;
typedef struct {
    int family, model_lo, model_hi;   /* CPUID family and model range; family 0: any CPU */
    int isa;                          /* RK_ISA_*; -1: any path */
    const char* uarch;                /* what the row was measured on */
    rk_blocking_t b;
} rk_blocking_row;
static const rk_blocking_row rk_blocking_table[] = {
    /* K = 650 in one block rather than 512 + 138: medium LSTM layer fwd+bwd 71 -> 66 ms;
       large, K = 1500 in 2 x 750 not 3 x 512: 466 -> 413 (AVX-512 path, Zen 5) */
    {0, 0, 0, -1, "AMD Zen 5 (family 0x1a), also measured on Zen 4; the default", {120, 768}},
};
static rk_blocking_t rk_blocking = {120, 768};
/* whether A's block is copied first (rk_pack_a below): 0 never; 1 where it pays
   (rk_pack_a_pays); 2 always. 1 but for measurements (set_blocking in the module) */
static int rk_pack_a_mode = 1;
static const char* rk_blocking_uarch = "";
static void rk_blocking_select(int isa) {
    int family, model;
    rk_cpu_family_model(&family, &model);
    int n = (int)(sizeof rk_blocking_table / sizeof rk_blocking_table[0]);
    for (int i = 0; i < n; i++) {
        const rk_blocking_row* r = &rk_blocking_table[i];
        if ((r->family == 0 || (r->family == family && model >= r->model_lo && model <= r->model_hi))
            && (r->isa < 0 || r->isa == isa)) {
            rk_blocking = r->b;
            rk_pack_a_mode = 1;
            rk_blocking_uarch = r->uarch;
            return;
        }
    }
}
/* A's block (rows m0 .. m1-1 of the product, columns k0 .. k0+kc-1 of A read through rsa,
   csa) copied into this thread's buffer as the micro-kernels read it: row block ib (the rows
   that the kernel's nb nearly equal blocks of at most mr_max give it) as kc x mr, k-major, so
   a k's mr values are adjacent and the kernel reads one stream instead of mr rows, or (a
   transposed A, the weight gradients' dLᵀ · h) instead of a new cache line and page per k.
   The copy changes no value and the kernels run the same FMAs in the same order on it: the
   same bits. NULL when the buffer cannot be had (then A is read in place).
   Where it pays (rk_pack_a_pays; Zen 4, best of 7 alternating runs of the kernel alone,
   GFLOP/s in place -> packed, one thread): a block of at least 2048 columns, on both paths
   (700 x 2600 x 650: 101.9 -> 106.8 avx512, 93.6 -> 98.5 avx2; 400 x 10000 x 200: 97.0 ->
   102.6, 82.7 -> 88.6; 20 x 6000 x 1500: 75.6 -> 92.2, 46.2 -> 46.8), and a transposed A on
   the avx2 path (2600 x 650 x 700: 81.5 -> 94.9; 10000 x 200 x 400: 76.2 -> 81.2), not on
   avx512, whose ten rows of a k share one line (109.1 in place, 101.3 packed). With few
   columns the copy is not paid back (400 x 200 x 10000 packed: 107.1 -> 83.9 avx512). */
static inline int rk_pack_a_pays(int wide_kernel, size_t csa, int cols) {
    if (rk_pack_a_mode != 1) return rk_pack_a_mode == 2;
    return cols >= 2048 || (!wide_kernel && csa != 1);
}
static float* rk_pack_a(int m0, int m1, int mr_max, int kc, const float* a, size_t rsa,
                        size_t csa) {
    static __thread float* buf = NULL;   /* not rk_scratch: its caller may hold that one */
    static __thread size_t cap = 0;
    if (!rk_grow(&buf, &cap, (size_t)(m1 - m0) * kc)) return NULL;
    int nb = (m1 - m0 + mr_max - 1) / mr_max;
    for (int ib = 0, m = m0; ib < nb; ib++) {
        int mr = (m1 - m0) / nb + (ib < (m1 - m0) % nb);
        float* dst = buf + (size_t)(m - m0) * kc;
        const float* src = a + (size_t)m * rsa;
        for (int k = 0; k < kc; k++)   /* the writes in order; mr read streams */
            for (int r = 0; r < mr; r++) dst[(size_t)k * mr + r] = src[(size_t)k * csa + (size_t)r * rsa];
        m += mr;
    }
    return buf;
}
#ifdef RK_X86
#include <immintrin.h>
/* a 16 x 16 block transposed in registers: r[i] holds row i on entry, column i on exit */
__attribute__((target("avx512f"))) static inline __attribute__((always_inline))
void rk_transpose16(__m512* r) {
    __m512 t[16];
    #pragma GCC unroll 8
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    #pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]);
        __m512d c = _mm512_castps_pd(t[4 * i + 2]), d = _mm512_castps_pd(t[4 * i + 3]);
        r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    #pragma GCC unroll 4
    for (int i = 0; i < 2; i++)
        #pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            t[8 * i + j] = _mm512_shuffle_f32x4(r[8 * i + j], r[8 * i + 4 + j], 0x88);
            t[8 * i + 4 + j] = _mm512_shuffle_f32x4(r[8 * i + j], r[8 * i + 4 + j], 0xdd);
        }
    #pragma GCC unroll 8
    for (int j = 0; j < 8; j++) {
        r[j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0x88);
        r[j + 8] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0xdd);
    }
}
/* 16 columns per vector: a masked load per k (B as stored), or (trans: a weight [N, K])
   16 x 16 blocks of the weight transposed in registers */
__attribute__((target("avx512f")))
static void rk_pack_b512(int K, int N, const float* b, int ldb, int trans, float* pb, int q0,
                      int q1) {
    for (int q = q0; q < q1; q++) {
        float* dst = pb + (size_t)(q / 2) * K * RK_NR + (q % 2) * RK_NH;
        int n0 = q * RK_NH, nr = N - n0 < RK_NH ? N - n0 : RK_NH;
        if (trans) {
            const float* src = b + (size_t)n0 * ldb;
            for (int k0 = 0; k0 < K; k0 += 16) {
                int kr = K - k0 < 16 ? K - k0 : 16;
                __mmask16 km = kr == 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << kr) - 1u);
                __m512 r[16];
                #pragma GCC unroll 16
                for (int i = 0; i < 16; i++)
                    r[i] = i < nr ? _mm512_maskz_loadu_ps(km, src + (size_t)i * ldb + k0)
                                  : _mm512_setzero_ps();
                rk_transpose16(r);
                for (int i = 0; i < kr; i++) _mm512_storeu_ps(dst + (size_t)(k0 + i) * RK_NR, r[i]);
            }
        } else {
            __mmask16 m = nr >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1u);
            for (int k = 0; k < K; k++)
                _mm512_storeu_ps(dst + (size_t)k * RK_NR,
                                 _mm512_maskz_loadu_ps(m, b + (size_t)k * ldb + n0));
        }
    }
}
__attribute__((target("avx512f"))) static inline __attribute__((always_inline))
void rk_uk512(const int mr, const int wide, int kc, const float* a, size_t rsa, size_t csa,
              const float* b, float* c, int ldc, float beta, int nr, const float* bias) {
    /* wide: both 16-column halves of the panel; else the first only (a last panel of at
       most 16 columns, e.g. H = 200 = 6 * 32 + 8, costs half the work). bias (or NULL):
       the accumulators start from bias[n] rather than 0 */
    __m512 acc0[RK_MR], acc1[RK_MR];
    __mmask16 m0 = nr >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1u);
    __mmask16 m1 = nr >= 32 ? (__mmask16)0xFFFF : nr <= 16 ? (__mmask16)0 : (__mmask16)((1u << (nr - 16)) - 1u);
    __m512 c0 = bias ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();
    __m512 c1 = bias ? _mm512_maskz_loadu_ps(m1, bias + 16) : _mm512_setzero_ps();
    #pragma GCC unroll 16
    for (int r = 0; r < mr; r++) { acc0[r] = c0; acc1[r] = c1; }
    for (int k = 0; k < kc; k++) {
        __m512 b0 = _mm512_loadu_ps(b + (size_t)k * RK_NR);
        __m512 b1 = wide ? _mm512_loadu_ps(b + (size_t)k * RK_NR + 16) : b0;
        const float* ak = a + (size_t)k * csa;
        #pragma GCC unroll 16
        for (int r = 0; r < mr; r++) {
            __m512 av = _mm512_set1_ps(ak[(size_t)r * rsa]);
            acc0[r] = _mm512_fmadd_ps(av, b0, acc0[r]);
            if (wide) acc1[r] = _mm512_fmadd_ps(av, b1, acc1[r]);
        }
    }
    __m512 bv = _mm512_set1_ps(beta);
    #pragma GCC unroll 16
    for (int r = 0; r < mr; r++) {
        float* cr = c + (size_t)r * ldc;
        if (beta != 0.0f) {  /* C is never read when beta = 0: it may hold NaN */
            acc0[r] = _mm512_fmadd_ps(bv, _mm512_maskz_loadu_ps(m0, cr), acc0[r]);
            acc1[r] = _mm512_fmadd_ps(bv, _mm512_maskz_loadu_ps(m1, cr + 16), acc1[r]);
        }
        _mm512_mask_storeu_ps(cr, m0, acc0[r]);
        _mm512_mask_storeu_ps(cr + 16, m1, acc1[r]);
    }
}
/* columns 16 q0 .. 16 q1 - 1 of C only (half panels q0 .. q1-1): threads split the columns
   of C, and every element of C is computed by the same instructions in the same order
   whatever the split. C = A · B + bias (a row vector [N], or NULL) + beta C: a bias added
   this way spares a pass that fills C with it first (and reading C back, beta = 1) */
__attribute__((target("avx512f")))
static void rk_gemm512(int M, int N, int K, const float* a, size_t rsa, size_t csa,
                       const float* pb, float beta, float* c, int ldc, int q0, int q1,
                       const float* bias) {
    /* A block of MC x KC (at most 360 KB) in L2. K is cut into the fewest blocks of at
       most KC_MAX, of nearly equal size (rk_blocking above) */
    const int MC = rk_blocking.mc, KCMAX = rk_blocking.kc_max;
    const int nkb = K > KCMAX ? (K + KCMAX - 1) / KCMAX : 1;
    const int KC = (K + nkb - 1) / nkb;
    for (int k0 = 0; k0 < K; k0 += KC) {
        int kc = K - k0 < KC ? K - k0 : KC;
        float bt = k0 == 0 ? beta : 1.0f;
        const float* bs = k0 == 0 ? bias : NULL;
        for (int m0 = 0; m0 < M; m0 += MC) {
            int m1 = M - m0 < MC ? M : m0 + MC;
            const float* ab = rk_pack_a_pays(1, csa, (q1 - q0) * RK_NH)
                ? rk_pack_a(m0, m1, RK_MR, kc, a + (size_t)k0 * csa, rsa, csa) : NULL;
            for (int q = q0; q < q1; ) {
                /* a whole panel, or one half of it */
                int wide = q % 2 == 0 && q + 1 < q1 && N - q * RK_NH > RK_NH;
                const float* bp = pb + (size_t)(q / 2) * K * RK_NR + (size_t)k0 * RK_NR
                                  + (q % 2) * RK_NH;
                int nr = N - q * RK_NH;
                nr = nr < (wide ? RK_NR : RK_NH) ? nr : (wide ? RK_NR : RK_NH);
                /* rows in nb blocks of nearly equal size (64 = 10 + 9 * 6, not 6 * 10 + 4):
                   a short last block has too few accumulators to hide the FMA latency */
                int nb = (m1 - m0 + RK_MR - 1) / RK_MR;
                for (int ib = 0, m = m0; ib < nb; ib++) {
                    int mr = (m1 - m0) / nb + (ib < (m1 - m0) % nb);
                    const float* am = ab ? ab + (size_t)(m - m0) * kc
                                         : a + (size_t)m * rsa + (size_t)k0 * csa;
                    size_t ra = ab ? 1 : rsa, ca = ab ? (size_t)mr : csa;
                    float* cm = c + (size_t)m * ldc + (size_t)q * RK_NH;
                    m += mr;
                    const float* bq = bs ? bs + (size_t)q * RK_NH : NULL;
                    #define RK_UK(MR) (wide ? rk_uk512(MR, 1, kc, am, ra, ca, bp, cm, ldc, bt, nr, bq) \
                                            : rk_uk512(MR, 0, kc, am, ra, ca, bp, cm, ldc, bt, nr, bq))
                    switch (mr) {
                        case 10: RK_UK(10); break;
                        case 9: RK_UK(9); break;
                        case 8: RK_UK(8); break;
                        case 7: RK_UK(7); break;
                        case 6: RK_UK(6); break;
                        case 5: RK_UK(5); break;
                        case 4: RK_UK(4); break;
                        case 3: RK_UK(3); break;
                        case 2: RK_UK(2); break;
                        default: RK_UK(1); break;
                    }
                }
                q += wide ? 2 : 1;
            }
        }
    }
}
/* gemv: W row-major, unpacked, streamed once. R = 4 rows at a time (1 for the last rows),
   each with two accumulators (chunks of 16 alternate between them), then one horizontal sum:
   every row is computed by the same sequence of operations wherever it falls, so splitting
   the rows between threads changes no result. */
__attribute__((target("avx512f"))) static inline __attribute__((always_inline))
void rk_gemv_acc(const int R, int K, const float* w, int ldw, const float* x, __m512* a,
                 __m512* b) {
    /* a[r], b[r] += the products of rows r < R of W with x, chunks of 16 alternating */
    __mmask16 tail = (__mmask16)((1u << (K & 15)) - 1u);
    int K16 = K & ~15, K32 = K & ~31, k = 0;
    for (; k < K32; k += 32) {
        __m512 xa = _mm512_loadu_ps(x + k), xb = _mm512_loadu_ps(x + k + 16);
        #pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            a[r] = _mm512_fmadd_ps(_mm512_loadu_ps(w + (size_t)r * ldw + k), xa, a[r]);
            b[r] = _mm512_fmadd_ps(_mm512_loadu_ps(w + (size_t)r * ldw + k + 16), xb, b[r]);
        }
    }
    if (k < K16) {
        __m512 xa = _mm512_loadu_ps(x + k);
        #pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            a[r] = _mm512_fmadd_ps(_mm512_loadu_ps(w + (size_t)r * ldw + k), xa, a[r]);
        k += 16;
    }
    if (tail) {
        __m512 xa = _mm512_maskz_loadu_ps(tail, x + k);
        #pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            b[r] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, w + (size_t)r * ldw + k), xa, b[r]);
    }
}
/* rows r < R of y = W1 · x1 + W2 · x2 (K2 = 0: no second term), then + (b1 + b2) when b1
   (both biases given), else + y when accumulate, else stored */
__attribute__((target("avx512f"))) static inline __attribute__((always_inline))
void rk_gemv_rows(const int R, int K1, const float* w1, int ldw1, const float* x1, int K2,
                  const float* w2, int ldw2, const float* x2, const float* b1, const float* b2,
                  float* y, int accumulate) {
    __m512 a[4], b[4];
    #pragma GCC unroll 4
    for (int r = 0; r < R; r++) { a[r] = _mm512_setzero_ps(); b[r] = _mm512_setzero_ps(); }
    rk_gemv_acc(R, K1, w1, ldw1, x1, a, b);
    if (K2 > 0) rk_gemv_acc(R, K2, w2, ldw2, x2, a, b);
    #pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        float v = _mm512_reduce_add_ps(_mm512_add_ps(a[r], b[r]));
        y[r] = b1 ? v + (b1[r] + b2[r]) : accumulate ? y[r] + v : v;
    }
}
/* y[N] = W1[N, K1] · x1[K1] + W2[N, K2] · x2[K2] + (b1 + b2) [N], weights row-major with row
   strides ldw1, ldw2. K2 = 0 drops the second product; b1 = b2 = NULL drops the biases, and
   then accumulate adds y. The single step for one stream: y = W · x (+ y), or a recurrent
   step's pre-activations in one pass over both weights (one horizontal sum per row, not two). */
__attribute__((target("avx512f")))
static void rk_gemv512(int N, int K1, const float* w1, int ldw1, const float* x1, int K2,
                       const float* w2, int ldw2, const float* x2, const float* b1,
                       const float* b2, float* y, int accumulate) {
    int n = 0;
    for (; n + 4 <= N; n += 4)
        rk_gemv_rows(4, K1, w1 + (size_t)n * ldw1, ldw1, x1, K2, w2 + (size_t)n * ldw2, ldw2, x2,
                     b1 ? b1 + n : NULL, b2 ? b2 + n : NULL, y + n, accumulate);
    for (; n < N; n++)
        rk_gemv_rows(1, K1, w1 + (size_t)n * ldw1, ldw1, x1, K2, w2 + (size_t)n * ldw2, ldw2, x2,
                     b1 ? b1 + n : NULL, b2 ? b2 + n : NULL, y + n, accumulate);
}
/* Y[B, N] = X[B, K] · W[N, K]ᵀ (+ Y when accumulate), all row-major, W unpacked: the
   single step's product for a few streams, where packing W would cost more than the
   product. Blocks of NB weight rows x BB streams, one accumulator per output (chunks of 16
   along K, then one horizontal sum), so an output is computed the same way in any block. */
__attribute__((target("avx512f"))) static inline __attribute__((always_inline))
void rk_dot_block(const int NB, const int BB, int K, const float* w, int ldw, const float* x,
                  int ldx, float* y, int ldy, int accumulate) {
    __m512 acc[4][4];
    __mmask16 tail = (__mmask16)((1u << (K & 15)) - 1u);
    int K16 = K & ~15, k;
    #pragma GCC unroll 4
    for (int i = 0; i < NB; i++)
        #pragma GCC unroll 4
        for (int j = 0; j < BB; j++) acc[i][j] = _mm512_setzero_ps();
    for (k = 0; k < K16; k += 16) {
        __m512 wv[4], xv[4];
        #pragma GCC unroll 4
        for (int i = 0; i < NB; i++) wv[i] = _mm512_loadu_ps(w + (size_t)i * ldw + k);
        #pragma GCC unroll 4
        for (int j = 0; j < BB; j++) xv[j] = _mm512_loadu_ps(x + (size_t)j * ldx + k);
        #pragma GCC unroll 4
        for (int i = 0; i < NB; i++)
            #pragma GCC unroll 4
            for (int j = 0; j < BB; j++) acc[i][j] = _mm512_fmadd_ps(wv[i], xv[j], acc[i][j]);
    }
    if (tail) {
        __m512 wv[4], xv[4];
        #pragma GCC unroll 4
        for (int i = 0; i < NB; i++) wv[i] = _mm512_maskz_loadu_ps(tail, w + (size_t)i * ldw + k);
        #pragma GCC unroll 4
        for (int j = 0; j < BB; j++) xv[j] = _mm512_maskz_loadu_ps(tail, x + (size_t)j * ldx + k);
        #pragma GCC unroll 4
        for (int i = 0; i < NB; i++)
            #pragma GCC unroll 4
            for (int j = 0; j < BB; j++) acc[i][j] = _mm512_fmadd_ps(wv[i], xv[j], acc[i][j]);
    }
    #pragma GCC unroll 4
    for (int i = 0; i < NB; i++)
        #pragma GCC unroll 4
        for (int j = 0; j < BB; j++) {
            float v = _mm512_reduce_add_ps(acc[i][j]);
            float* o = y + (size_t)j * ldy + i;
            *o = accumulate ? *o + v : v;
        }
}
__attribute__((target("avx512f")))
static void rk_dot_gemm512(int B, int N, int K, const float* x, int ldx, const float* w,
                           int ldw, float* y, int ldy, int accumulate) {
    for (int n = 0; n < N; n += 4) {
        int nb = N - n < 4 ? N - n : 4;
        for (int b = 0; b < B; b += 4) {
            int bb = B - b < 4 ? B - b : 4;
            const float* wn = w + (size_t)n * ldw; const float* xb = x + (size_t)b * ldx;
            float* yo = y + (size_t)b * ldy + n;
            #define RK_DB(NB, BB) rk_dot_block(NB, BB, K, wn, ldw, xb, ldx, yo, ldy, accumulate)
            #define RK_DB_ROW(NB) switch (bb) { case 4: RK_DB(NB, 4); break; case 3: RK_DB(NB, 3); break; \
                                                case 2: RK_DB(NB, 2); break; default: RK_DB(NB, 1); }
            switch (nb) {
                case 4: RK_DB_ROW(4) break;
                case 3: RK_DB_ROW(3) break;
                case 2: RK_DB_ROW(2) break;
                default: RK_DB_ROW(1)
            }
            #undef RK_DB_ROW
            #undef RK_DB
        }
    }
}
/* ---- the same products with AVX2 and FMA (8 lanes, 16 ymm registers) --------------------
   The packing is shared: rk_pack_b256 writes exactly the panels rk_pack_b512 writes, and the
   micro-kernel works on one 16-column half panel at a time, MR256 = 6 rows x 2 ymm = 12
   accumulators + 2 for B + 1 broadcast = 15 of the 16 registers (the classic 6 x 16 shape).
   Every element of C is computed as on the AVX-512 path (bias, then one FMA per k in order,
   then beta C, the same K blocks), so the packed products give the same bits on both paths. */
#define RK_MR256 6
/* an 8 x 8 block transposed in registers: r[i] holds row i on entry, column i on exit */
__attribute__((target("avx2,fma"))) static inline __attribute__((always_inline))
void rk_transpose8(__m256* r) {
    __m256 t[8], s[8];
    #pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    #pragma GCC unroll 2
    for (int i = 0; i < 2; i++) {
        s[4 * i] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        s[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        s[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        s[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    #pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2f128_ps(s[i], s[4 + i], 0x20);
        r[4 + i] = _mm256_permute2f128_ps(s[i], s[4 + i], 0x31);
    }
}
/* rk_pack_b512 on 8 lanes: the same panels, bit for bit */
__attribute__((target("avx2,fma")))
static void rk_pack_b256(int K, int N, const float* b, int ldb, int trans, float* pb, int q0,
                         int q1) {
    for (int q = q0; q < q1; q++) {
        float* dst = pb + (size_t)(q / 2) * K * RK_NR + (q % 2) * RK_NH;
        int n0 = q * RK_NH, nr = N - n0 < RK_NH ? N - n0 : RK_NH;
        if (trans) {
            for (int k0 = 0; k0 < K; k0 += 8) {
                int kr = K - k0 < 8 ? K - k0 : 8;
                __m256i km = rk_mask8(kr);
                for (int h = 0; h < 2; h++) {   /* weight rows (columns of B) 8h .. 8h+7 */
                    const float* src = b + (size_t)(n0 + 8 * h) * ldb + k0;
                    __m256 r[8];
                    #pragma GCC unroll 8
                    for (int i = 0; i < 8; i++)
                        r[i] = 8 * h + i < nr ? _mm256_maskload_ps(src + (size_t)i * ldb, km)
                                              : _mm256_setzero_ps();
                    rk_transpose8(r);
                    for (int i = 0; i < kr; i++)
                        _mm256_storeu_ps(dst + (size_t)(k0 + i) * RK_NR + 8 * h, r[i]);
                }
            }
        } else {
            __m256i m0 = rk_mask8(nr), m1 = rk_mask8(nr - 8);
            for (int k = 0; k < K; k++) {
                const float* src = b + (size_t)k * ldb + n0;
                _mm256_storeu_ps(dst + (size_t)k * RK_NR, _mm256_maskload_ps(src, m0));
                _mm256_storeu_ps(dst + (size_t)k * RK_NR + 8,
                                 nr > 8 ? _mm256_maskload_ps(src + 8, m1) : _mm256_setzero_ps());
            }
        }
    }
}
/* an mr x 16 block of C (one half panel, nr of its columns real) */
__attribute__((target("avx2,fma"))) static inline __attribute__((always_inline))
void rk_uk256(const int mr, const int full, int kc, const float* a, size_t rsa, size_t csa,
              const float* b, float* c, int ldc, float beta, int nr, const float* bias) {
    __m256 acc0[RK_MR256], acc1[RK_MR256];
    __m256i m0 = rk_mask8(nr), m1 = rk_mask8(nr - 8);
    __m256 c0 = _mm256_setzero_ps(), c1 = c0;
    if (bias) {
        c0 = full ? _mm256_loadu_ps(bias) : _mm256_maskload_ps(bias, m0);
        c1 = full ? _mm256_loadu_ps(bias + 8) : _mm256_maskload_ps(bias + 8, m1);
    }
    #pragma GCC unroll 6
    for (int r = 0; r < mr; r++) { acc0[r] = c0; acc1[r] = c1; }
    for (int k = 0; k < kc; k++) {
        __m256 b0 = _mm256_loadu_ps(b + (size_t)k * RK_NR);
        __m256 b1 = _mm256_loadu_ps(b + (size_t)k * RK_NR + 8);
        const float* ak = a + (size_t)k * csa;
        #pragma GCC unroll 6
        for (int r = 0; r < mr; r++) {
            __m256 av = _mm256_broadcast_ss(ak + (size_t)r * rsa);
            acc0[r] = _mm256_fmadd_ps(av, b0, acc0[r]);
            acc1[r] = _mm256_fmadd_ps(av, b1, acc1[r]);
        }
    }
    __m256 bv = _mm256_set1_ps(beta);
    #pragma GCC unroll 6
    for (int r = 0; r < mr; r++) {
        float* cr = c + (size_t)r * ldc;
        if (full) {
            if (beta != 0.0f) {  /* C is never read when beta = 0: it may hold NaN */
                acc0[r] = _mm256_fmadd_ps(bv, _mm256_loadu_ps(cr), acc0[r]);
                acc1[r] = _mm256_fmadd_ps(bv, _mm256_loadu_ps(cr + 8), acc1[r]);
            }
            _mm256_storeu_ps(cr, acc0[r]);
            _mm256_storeu_ps(cr + 8, acc1[r]);
        } else {
            if (beta != 0.0f) {
                acc0[r] = _mm256_fmadd_ps(bv, _mm256_maskload_ps(cr, m0), acc0[r]);
                acc1[r] = _mm256_fmadd_ps(bv, _mm256_maskload_ps(cr + 8, m1), acc1[r]);
            }
            _mm256_maskstore_ps(cr, m0, acc0[r]);
            _mm256_maskstore_ps(cr + 8, m1, acc1[r]);
        }
    }
}
/* rk_gemm512 on 8 lanes: columns 16 q0 .. 16 q1 - 1 of C = A · B + bias + beta C, B packed
   by rk_pack_b512 or rk_pack_b256; the same blocks of K and rows (rk_blocking) */
__attribute__((target("avx2,fma")))
static void rk_gemm256(int M, int N, int K, const float* a, size_t rsa, size_t csa,
                       const float* pb, float beta, float* c, int ldc, int q0, int q1,
                       const float* bias) {
    const int MC = rk_blocking.mc, KCMAX = rk_blocking.kc_max;
    const int nkb = K > KCMAX ? (K + KCMAX - 1) / KCMAX : 1;
    const int KC = (K + nkb - 1) / nkb;
    for (int k0 = 0; k0 < K; k0 += KC) {
        int kc = K - k0 < KC ? K - k0 : KC;
        float bt = k0 == 0 ? beta : 1.0f;
        const float* bs = k0 == 0 ? bias : NULL;
        for (int m0 = 0; m0 < M; m0 += MC) {
            int m1 = M - m0 < MC ? M : m0 + MC;
            const float* ab = rk_pack_a_pays(0, csa, (q1 - q0) * RK_NH)
                ? rk_pack_a(m0, m1, RK_MR256, kc, a + (size_t)k0 * csa, rsa, csa) : NULL;
            /* both half panels of a panel for one block of rows, then the next block: each row
               of a panel is one 128-byte line pair of which a half panel reads one line, so the
               two halves use every line of the panel while it is in L1 (one half at a time,
               the panel's lines were half used and B read again from L2; the weight gradient
               of a 10,000-word output layer, 10,000 x 400 -> 200 with A transposed: 79 -> 89
               GFLOP/s, the other output products within 2%, best of 8 alternating runs, 1
               thread, Zen 4) */
            for (int qa = q0, qz; qa < q1; qa = qz) {
                qz = qa % 2 == 0 && qa + 1 < q1 ? qa + 2 : qa + 1;
                /* rows in nb blocks of nearly equal size, as rk_gemm512 */
                int nb = (m1 - m0 + RK_MR256 - 1) / RK_MR256;
                for (int ib = 0, m = m0; ib < nb; ib++) {
                    int mr = (m1 - m0) / nb + (ib < (m1 - m0) % nb);
                    const float* am = ab ? ab + (size_t)(m - m0) * kc
                                         : a + (size_t)m * rsa + (size_t)k0 * csa;
                    size_t ra = ab ? 1 : rsa, ca = ab ? (size_t)mr : csa;
                    for (int q = qa; q < qz; q++) {
                        const float* bp = pb + (size_t)(q / 2) * K * RK_NR + (size_t)k0 * RK_NR
                                          + (q % 2) * RK_NH;
                        int nr = N - q * RK_NH < RK_NH ? N - q * RK_NH : RK_NH;
                        int full = nr == RK_NH;
                        const float* bq = bs ? bs + (size_t)q * RK_NH : NULL;
                        float* cm = c + (size_t)m * ldc + (size_t)q * RK_NH;
                        #define RK_UK8(MR) (full ? rk_uk256(MR, 1, kc, am, ra, ca, bp, cm, ldc, bt, nr, bq) \
                                                 : rk_uk256(MR, 0, kc, am, ra, ca, bp, cm, ldc, bt, nr, bq))
                        switch (mr) {
                            case 6: RK_UK8(6); break;
                            case 5: RK_UK8(5); break;
                            case 4: RK_UK8(4); break;
                            case 3: RK_UK8(3); break;
                            case 2: RK_UK8(2); break;
                            default: RK_UK8(1); break;
                        }
                        #undef RK_UK8
                    }
                    m += mr;
                }
            }
        }
    }
}
/* the horizontal sum of 8 lanes, in a fixed order */
__attribute__((target("avx2,fma"))) static inline __attribute__((always_inline))
float rk_hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
/* rk_gemv_acc on 8 lanes: a[r], b[r] += rows r < R of W times x, chunks of 8 alternating */
__attribute__((target("avx2,fma"))) static inline __attribute__((always_inline))
void rk_gemv_acc256(const int R, int K, const float* w, int ldw, const float* x, __m256* a,
                    __m256* b) {
    int K8 = K & ~7, K16 = K & ~15, k = 0;
    for (; k < K16; k += 16) {
        __m256 xa = _mm256_loadu_ps(x + k), xb = _mm256_loadu_ps(x + k + 8);
        #pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            a[r] = _mm256_fmadd_ps(_mm256_loadu_ps(w + (size_t)r * ldw + k), xa, a[r]);
            b[r] = _mm256_fmadd_ps(_mm256_loadu_ps(w + (size_t)r * ldw + k + 8), xb, b[r]);
        }
    }
    if (k < K8) {
        __m256 xa = _mm256_loadu_ps(x + k);
        #pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            a[r] = _mm256_fmadd_ps(_mm256_loadu_ps(w + (size_t)r * ldw + k), xa, a[r]);
        k += 8;
    }
    if (K & 7) {
        __m256i tail = rk_mask8(K & 7);
        __m256 xa = _mm256_maskload_ps(x + k, tail);
        #pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            b[r] = _mm256_fmadd_ps(_mm256_maskload_ps(w + (size_t)r * ldw + k, tail), xa, b[r]);
    }
}
__attribute__((target("avx2,fma"))) static inline __attribute__((always_inline))
void rk_gemv_rows256(const int R, int K1, const float* w1, int ldw1, const float* x1, int K2,
                     const float* w2, int ldw2, const float* x2, const float* b1,
                     const float* b2, float* y, int accumulate) {
    __m256 a[4], b[4];
    #pragma GCC unroll 4
    for (int r = 0; r < R; r++) { a[r] = _mm256_setzero_ps(); b[r] = _mm256_setzero_ps(); }
    rk_gemv_acc256(R, K1, w1, ldw1, x1, a, b);
    if (K2 > 0) rk_gemv_acc256(R, K2, w2, ldw2, x2, a, b);
    #pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        float v = rk_hsum256(_mm256_add_ps(a[r], b[r]));
        y[r] = b1 ? v + (b1[r] + b2[r]) : accumulate ? y[r] + v : v;
    }
}
/* rk_gemv512 on 8 lanes (the same arguments) */
__attribute__((target("avx2,fma")))
static void rk_gemv256(int N, int K1, const float* w1, int ldw1, const float* x1, int K2,
                       const float* w2, int ldw2, const float* x2, const float* b1,
                       const float* b2, float* y, int accumulate) {
    int n = 0;
    for (; n + 4 <= N; n += 4)
        rk_gemv_rows256(4, K1, w1 + (size_t)n * ldw1, ldw1, x1, K2, w2 + (size_t)n * ldw2, ldw2,
                        x2, b1 ? b1 + n : NULL, b2 ? b2 + n : NULL, y + n, accumulate);
    for (; n < N; n++)
        rk_gemv_rows256(1, K1, w1 + (size_t)n * ldw1, ldw1, x1, K2, w2 + (size_t)n * ldw2, ldw2,
                        x2, b1 ? b1 + n : NULL, b2 ? b2 + n : NULL, y + n, accumulate);
}
/* rk_dot_block on 8 lanes: NB <= 4 weight rows x BB <= 2 streams (8 accumulators, 4 + 2
   loads: 14 of the 16 registers), one accumulator per output, one horizontal sum */
__attribute__((target("avx2,fma"))) static inline __attribute__((always_inline))
void rk_dot_block256(const int NB, const int BB, int K, const float* w, int ldw, const float* x,
                     int ldx, float* y, int ldy, int accumulate) {
    __m256 acc[4][2];
    int K8 = K & ~7, k;
    #pragma GCC unroll 4
    for (int i = 0; i < NB; i++)
        #pragma GCC unroll 2
        for (int j = 0; j < BB; j++) acc[i][j] = _mm256_setzero_ps();
    for (k = 0; k < K8; k += 8) {
        __m256 wv[4], xv[2];
        #pragma GCC unroll 4
        for (int i = 0; i < NB; i++) wv[i] = _mm256_loadu_ps(w + (size_t)i * ldw + k);
        #pragma GCC unroll 2
        for (int j = 0; j < BB; j++) xv[j] = _mm256_loadu_ps(x + (size_t)j * ldx + k);
        #pragma GCC unroll 4
        for (int i = 0; i < NB; i++)
            #pragma GCC unroll 2
            for (int j = 0; j < BB; j++) acc[i][j] = _mm256_fmadd_ps(wv[i], xv[j], acc[i][j]);
    }
    if (K & 7) {
        __m256i tail = rk_mask8(K & 7);
        __m256 wv[4], xv[2];
        #pragma GCC unroll 4
        for (int i = 0; i < NB; i++) wv[i] = _mm256_maskload_ps(w + (size_t)i * ldw + k, tail);
        #pragma GCC unroll 2
        for (int j = 0; j < BB; j++) xv[j] = _mm256_maskload_ps(x + (size_t)j * ldx + k, tail);
        #pragma GCC unroll 4
        for (int i = 0; i < NB; i++)
            #pragma GCC unroll 2
            for (int j = 0; j < BB; j++) acc[i][j] = _mm256_fmadd_ps(wv[i], xv[j], acc[i][j]);
    }
    #pragma GCC unroll 4
    for (int i = 0; i < NB; i++)
        #pragma GCC unroll 2
        for (int j = 0; j < BB; j++) {
            float v = rk_hsum256(acc[i][j]);
            float* o = y + (size_t)j * ldy + i;
            *o = accumulate ? *o + v : v;
        }
}
/* rk_dot_gemm512 on 8 lanes (the same arguments) */
__attribute__((target("avx2,fma")))
static void rk_dot_gemm256(int B, int N, int K, const float* x, int ldx, const float* w,
                           int ldw, float* y, int ldy, int accumulate) {
    for (int n = 0; n < N; n += 4) {
        int nb = N - n < 4 ? N - n : 4;
        for (int b = 0; b < B; b += 2) {
            const float* wn = w + (size_t)n * ldw; const float* xb = x + (size_t)b * ldx;
            float* yo = y + (size_t)b * ldy + n;
            #define RK_DB8(NB) (B - b >= 2 ? rk_dot_block256(NB, 2, K, wn, ldw, xb, ldx, yo, ldy, accumulate) \
                                           : rk_dot_block256(NB, 1, K, wn, ldw, xb, ldx, yo, ldy, accumulate))
            switch (nb) {
                case 4: RK_DB8(4); break;
                case 3: RK_DB8(3); break;
                case 2: RK_DB8(2); break;
                default: RK_DB8(1);
            }
            #undef RK_DB8
        }
    }
}
#endif

#endif /* RK_GEMM_H */
