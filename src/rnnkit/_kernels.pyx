# cython: language_level=3, cdivision=True, embedsignature=True
# (boundscheck, wraparound and initializedcheck are set in setup.py: off, or on with RNNKIT_DEBUG=1)
"""Compiled hot loops of rnnkit. The specification of every function is in reference.py.

Dimension letters: T time steps, B batch (streams), E input size, H hidden size, V vocabulary,
N rows of the output layer; M, N, K are also the sizes of a matrix product C[M, N] = A[M, K] · B[K, N].
All buffers are float32 and row-major (C order), inputs time-major, weights in PyTorch's layout.

Structure (as in gensim's word2vec_inner): each `def` checks and unpacks its inputs and raises
ValueError, then calls, inside `with nogil:`, `cdef ... noexcept nogil` code on raw pointers.
The element-wise passes (gate nonlinearities, cell update, softmax) are C functions below, compiled
once per instruction set (AVX-512, AVX2+FMA, baseline x86-64) and chosen at load time, so the wheel
stays portable. Matrix products go through BLAS.
"""
import numpy as np

cimport numpy as cnp
from libc.stdint cimport int64_t
from libc.math cimport log
from libc.string cimport memcpy, memset
from scipy.linalg.cython_blas cimport sgemm as blas_sgemm
from scipy.linalg.cython_blas cimport sgemv as blas_sgemv

cnp.import_array()


cdef extern from *:
    """
    #include <math.h>
    #include <stdint.h>
    #include <string.h>

    /* One copy of each element-wise pass per instruction set, picked at load time by the
       dynamic loader (GNU ifunc); elsewhere the baseline build only. */
    #if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(RNNKIT_NO_CLONES)
    #define RK_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
    #else
    #define RK_CLONES
    #endif
    #define RK_INLINE static inline __attribute__((always_inline))

    /* exp, sigmoid and tanh written so that the compiler vectorises them (libm's are scalar
       calls). exp: Cephes' expf (range reduction by ln 2, degree-6 polynomial), rel. error < 1e-7. */
    RK_INLINE float rk_exp(float x) {
        x = x < -87.3f ? -87.3f : x;
        x = x > 88.3f ? 88.3f : x;
        /* n = round(x / ln 2) by the 1.5 * 2^23 trick: branch-free, so the loop vectorises */
        float fn = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
        int n = (int)fn;
        float r = x - fn * 0.693359375f + fn * 2.12194440e-4f;
        float y = 1.9875691500e-4f;
        y = y * r + 1.3981999507e-3f;
        y = y * r + 8.3334519073e-3f;
        y = y * r + 4.1665795894e-2f;
        y = y * r + 1.6666665459e-1f;
        y = y * r + 5.0000001201e-1f;
        y = y * r * r + r + 1.0f;
        int32_t bits = (int32_t)(n + 127) << 23;           /* 2^n */
        float p;
        memcpy(&p, &bits, sizeof p);
        return y * p;
    }
    /* σ(x) = 1 / (1 + e^-x): no overflow since rk_exp clamps its argument */
    RK_INLINE float rk_sigmoid(float x) { return 1.0f / (1.0f + rk_exp(-x)); }
    /* tanh: the odd/even rational minimax approximation Eigen and PyTorch use,
       |error| < 4e-7 on all of R (clamped where tanh rounds to ±1 in float32) */
    RK_INLINE float rk_tanh(float x) {
        float xc = x < -7.90531110763549805f ? -7.90531110763549805f : x;
        xc = xc > 7.90531110763549805f ? 7.90531110763549805f : xc;
        float x2 = xc * xc;
        float p = -2.76076847742355e-16f;
        p = p * x2 + 2.00018790482477e-13f;
        p = p * x2 + -8.60467152213735e-11f;
        p = p * x2 + 5.12229709037114e-08f;
        p = p * x2 + 1.48572235717979e-05f;
        p = p * x2 + 6.37261928875436e-04f;
        p = p * x2 + 4.89352455891786e-03f;
        p = p * xc;
        float q = 1.19825839466702e-06f;
        q = q * x2 + 1.18534705686654e-04f;
        q = q * x2 + 2.26843463243900e-03f;
        q = q * x2 + 4.89352518554385e-03f;
        float t = p / q;
        return fabsf(x) < 0.0004f ? x : t;
    }

    /* ---- LSTM, one step, all B rows ------------------------------------------------------
       a [B, 4H]: pre-activations in (gate order i, f, g, o), activated gates out;
       c_prev [B, H] -> c [B, H] and h [B, H]. peep [3, H] (rows i, f, o) or NULL. Peepholes
       after Gers, Schraudolph & Schmidhuber (2002): i and f see c_{t-1}, o sees the new c_t.
       Without a forget gate (Hochreiter & Schmidhuber 1997) c_t = c_{t-1} + i*g and the f slot
       of the gates is set to 0. Every pointer is `restrict` so that the loop vectorises. */
    #define RK_LSTM_CELL(AI, AF, AG, AO, CPJ)                                                   \
            float i = rk_sigmoid((AI) + (use_peep ? peep[j] * (CPJ) : 0.0f));                   \
            float f = fg ? rk_sigmoid((AF) + (use_peep ? peep[H + j] * (CPJ) : 0.0f)) : 0.0f;   \
            float g = rk_tanh(AG);                                                              \
            float cj = (fg ? f * (CPJ) : (CPJ)) + i * g;                                        \
            float o = rk_sigmoid((AO) + (use_peep ? peep[2 * H + j] * cj : 0.0f));
    RK_INLINE void rk_lstm_fwd_row(int H, float* restrict ai, float* restrict af,
                                   float* restrict ag, float* restrict ao,
                                   const float* restrict cp, float* restrict c,
                                   float* restrict h, const float* restrict peep,
                                   const int use_peep, const int fg) {
        for (int j = 0; j < H; j++) {
            RK_LSTM_CELL(ai[j], af[j], ag[j], ao[j], cp[j])
            ai[j] = i; af[j] = f; ag[j] = g; ao[j] = o;
            c[j] = cj;
            h[j] = o * rk_tanh(cj);
        }
    }
    /* the single step: c [B, H] updated in place, the gates not kept */
    RK_INLINE void rk_lstm_step_row(int H, const float* restrict a, float* restrict c,
                                    float* restrict h, const float* restrict peep,
                                    const int use_peep, const int fg) {
        for (int j = 0; j < H; j++) {
            float cpj = c[j];
            RK_LSTM_CELL(a[j], a[H + j], a[2 * H + j], a[3 * H + j], cpj)
            (void)f;
            c[j] = cj;
            h[j] = o * rk_tanh(cj);
        }
    }
    RK_CLONES
    static void rk_lstm_fwd_cell(int B, int H, float* a, const float* c_prev, float* c, float* h,
                                 const float* peep, int fg) {
        for (int b = 0; b < B; b++) {
            float* ab = a + (size_t)b * 4 * H;
            float *ai = ab, *af = ab + H, *ag = ab + 2 * H, *ao = ab + 3 * H;
            const float* cp = c_prev + (size_t)b * H;
            float* cb = c + (size_t)b * H; float* hb = h + (size_t)b * H;
            if (peep) {
                if (fg) rk_lstm_fwd_row(H, ai, af, ag, ao, cp, cb, hb, peep, 1, 1);
                else rk_lstm_fwd_row(H, ai, af, ag, ao, cp, cb, hb, peep, 1, 0);
            } else {
                if (fg) rk_lstm_fwd_row(H, ai, af, ag, ao, cp, cb, hb, peep, 0, 1);
                else rk_lstm_fwd_row(H, ai, af, ag, ao, cp, cb, hb, peep, 0, 0);
            }
        }
    }
    RK_CLONES
    static void rk_lstm_step_cell(int B, int H, const float* a, float* c, float* h,
                                  const float* peep, int fg) {
        for (int b = 0; b < B; b++) {
            const float* ab = a + (size_t)b * 4 * H;
            float* cb = c + (size_t)b * H; float* hb = h + (size_t)b * H;
            if (peep) {
                if (fg) rk_lstm_step_row(H, ab, cb, hb, peep, 1, 1);
                else rk_lstm_step_row(H, ab, cb, hb, peep, 1, 0);
            } else {
                if (fg) rk_lstm_step_row(H, ab, cb, hb, peep, 0, 1);
                else rk_lstm_step_row(H, ab, cb, hb, peep, 0, 0);
            }
        }
    }

    /* Backward through one step. gates [B, 4H] activated (i, f, g, o); c_prev, c [B, H];
       dh [B, H] from above and dh_rec [B, H] through the recurrence (their sum is dL/dh_t);
       dc [B, H]: dL/dc_t from step t+1 in, dL/dc_{t-1} out; dgates [B, 4H] out: dL/d(pre-act);
       dpeep [3, H] accumulated. */
    RK_INLINE void rk_lstm_bwd_row(int H, const float* restrict gt, const float* restrict cp,
                                   const float* restrict c, const float* restrict dh,
                                   const float* restrict dhr, float* restrict dc,
                                   float* restrict dg, const float* restrict peep,
                                   float* restrict dpeep, const int use_peep, const int fg) {
        const float* gi = gt; const float* gf = gt + H; const float* gg = gt + 2 * H;
        const float* go = gt + 3 * H;
        for (int j = 0; j < H; j++) {
            float i = gi[j], f = gf[j], g = gg[j], o = go[j], cj = c[j], cpj = cp[j];
            float tc = rk_tanh(cj);
            float dht = dh[j] + dhr[j];
            float dao = dht * tc * o * (1.0f - o);
            float dct = dc[j] + dht * o * (1.0f - tc * tc);
            if (use_peep) dct += dao * peep[2 * H + j];          /* o_t saw c_t */
            float dai = dct * g * i * (1.0f - i);
            float dag = dct * i * (1.0f - g * g);
            float daf = fg ? dct * cpj * f * (1.0f - f) : 0.0f;
            float dcp = fg ? dct * f : dct;
            if (use_peep) {                                      /* i_t and f_t saw c_{t-1} */
                dcp += dai * peep[j] + daf * peep[H + j];
                dpeep[j] += dai * cpj;
                dpeep[H + j] += daf * cpj;
                dpeep[2 * H + j] += dao * cj;
            }
            dc[j] = dcp;
            dg[j] = dai; dg[H + j] = daf; dg[2 * H + j] = dag; dg[3 * H + j] = dao;
        }
    }
    RK_CLONES
    static void rk_lstm_bwd_cell(int B, int H, const float* gates, const float* c_prev,
                                 const float* c, const float* dh, const float* dh_rec, float* dc,
                                 float* dgates, const float* peep, float* dpeep, int fg) {
        for (int b = 0; b < B; b++) {
            size_t o4 = (size_t)b * 4 * H, o1 = (size_t)b * H;
            const float* gt = gates + o4; float* dg = dgates + o4;
            if (peep) {
                if (fg) rk_lstm_bwd_row(H, gt, c_prev + o1, c + o1, dh + o1, dh_rec + o1, dc + o1, dg, peep, dpeep, 1, 1);
                else rk_lstm_bwd_row(H, gt, c_prev + o1, c + o1, dh + o1, dh_rec + o1, dc + o1, dg, peep, dpeep, 1, 0);
            } else {
                if (fg) rk_lstm_bwd_row(H, gt, c_prev + o1, c + o1, dh + o1, dh_rec + o1, dc + o1, dg, peep, dpeep, 0, 1);
                else rk_lstm_bwd_row(H, gt, c_prev + o1, c + o1, dh + o1, dh_rec + o1, dc + o1, dg, peep, dpeep, 0, 0);
            }
        }
    }

    /* ---- tanh RNN --------------------------------------------------------------------------- */
    RK_CLONES
    static void rk_tanh_inplace(size_t n, float* a) {
        for (size_t k = 0; k < n; k++) a[k] = rk_tanh(a[k]);
    }
    /* da = (dh + dh_rec) * (1 - h^2), n = B*H */
    RK_CLONES
    static void rk_rnn_bwd_cell(size_t n, const float* restrict h, const float* restrict dh,
                                const float* restrict dh_rec, float* restrict da) {
        for (size_t k = 0; k < n; k++) da[k] = (dh[k] + dh_rec[k]) * (1.0f - h[k] * h[k]);
    }

    /* ---- softmax rows ----------------------------------------------------------------------- */
    static float rk_row_max(int V, const float* z) {
        float m = z[0];
        for (int v = 1; v < V; v++) m = z[v] > m ? z[v] : m;
        return m;
    }
    /* z <- exp(z - m); returns the sum (accumulated in 8 float lanes, then in double) */
    RK_CLONES
    static double rk_exp_shift_sum(int V, float* z, float m) {
        float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        int v = 0;
        for (; v + 8 <= V; v += 8)
            for (int k = 0; k < 8; k++) { float e = rk_exp(z[v + k] - m); z[v + k] = e; acc[k] += e; }
        double s = 0.0;
        for (; v < V; v++) { float e = rk_exp(z[v] - m); z[v] = e; s += e; }
        for (int k = 0; k < 8; k++) s += acc[k];
        return s;
    }
    /* out = z - m - log(sum exp(z - m)) without writing z */
    RK_CLONES
    static double rk_sum_exp_shift(int V, const float* z, float m) {
        float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        int v = 0;
        for (; v + 8 <= V; v += 8)
            for (int k = 0; k < 8; k++) acc[k] += rk_exp(z[v + k] - m);
        double s = 0.0;
        for (; v < V; v++) s += rk_exp(z[v] - m);
        for (int k = 0; k < 8; k++) s += acc[k];
        return s;
    }
    RK_CLONES
    static void rk_add_scalar(int n, float* z, float s) {
        for (int k = 0; k < n; k++) z[k] += s;
    }
    RK_CLONES
    static void rk_scale(int n, float* z, float s) {
        for (int k = 0; k < n; k++) z[k] *= s;
    }
    /* y[n] += x[n] */
    RK_CLONES
    static void rk_axpy1(int n, const float* x, float* y) {
        for (int k = 0; k < n; k++) y[k] += x[k];
    }

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
    /* B[k, n] = b[n * ldb + k] when trans (a weight [N, K]), else b[k * ldb + n] */
    static void rk_pack_b(int K, int N, const float* b, int ldb, int trans, float* pb) {
        int P = (N + RK_NR - 1) / RK_NR;
        for (int p = 0; p < P; p++) {
            float* dst = pb + (size_t)p * K * RK_NR;
            int n0 = p * RK_NR, nr = N - n0 < RK_NR ? N - n0 : RK_NR;
            if (trans) {
                for (int k = 0; k < K; k++) {
                    int j = 0;
                    for (; j < nr; j++) dst[(size_t)k * RK_NR + j] = b[(size_t)(n0 + j) * ldb + k];
                    for (; j < RK_NR; j++) dst[(size_t)k * RK_NR + j] = 0.0f;
                }
            } else {
                for (int k = 0; k < K; k++) {
                    const float* src = b + (size_t)k * ldb + n0;
                    int j = 0;
                    for (; j < nr; j++) dst[(size_t)k * RK_NR + j] = src[j];
                    for (; j < RK_NR; j++) dst[(size_t)k * RK_NR + j] = 0.0f;
                }
            }
        }
    }
    #if defined(__GNUC__) && defined(__x86_64__)
    #include <immintrin.h>
    #define RK_HAVE_AVX512_KERNEL 1
    __attribute__((target("avx512f"))) static inline __attribute__((always_inline))
    void rk_uk512(const int mr, int kc, const float* a, size_t rsa, size_t csa, const float* b,
                  float* c, int ldc, float beta, int nr) {
        __m512 acc0[RK_MR], acc1[RK_MR];
        #pragma GCC unroll 16
        for (int r = 0; r < mr; r++) { acc0[r] = _mm512_setzero_ps(); acc1[r] = _mm512_setzero_ps(); }
        for (int k = 0; k < kc; k++) {
            __m512 b0 = _mm512_loadu_ps(b + (size_t)k * RK_NR);
            __m512 b1 = _mm512_loadu_ps(b + (size_t)k * RK_NR + 16);
            const float* ak = a + (size_t)k * csa;
            #pragma GCC unroll 16
            for (int r = 0; r < mr; r++) {
                __m512 av = _mm512_set1_ps(ak[(size_t)r * rsa]);
                acc0[r] = _mm512_fmadd_ps(av, b0, acc0[r]);
                acc1[r] = _mm512_fmadd_ps(av, b1, acc1[r]);
            }
        }
        __mmask16 m0 = nr >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1u);
        __mmask16 m1 = nr >= 32 ? (__mmask16)0xFFFF : nr <= 16 ? (__mmask16)0 : (__mmask16)((1u << (nr - 16)) - 1u);
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
    /* panels p0 .. p1-1 only: threads split the columns of C, so every element of C is computed
       by the same instructions in the same order whatever the thread count */
    __attribute__((target("avx512f")))
    static void rk_gemm512(int M, int N, int K, const float* a, size_t rsa, size_t csa,
                           const float* pb, float beta, float* c, int ldc, int p0, int p1) {
        const int KC = 384, MC = 120;   /* A block of MC x KC in L2, B slice of KC x 32 in L1 */
        for (int k0 = 0; k0 < K; k0 += KC) {
            int kc = K - k0 < KC ? K - k0 : KC;
            float bt = k0 == 0 ? beta : 1.0f;
            for (int m0 = 0; m0 < M; m0 += MC) {
                int m1 = M - m0 < MC ? M : m0 + MC;
                for (int p = p0; p < p1; p++) {
                    const float* bp = pb + (size_t)p * K * RK_NR + (size_t)k0 * RK_NR;
                    int nr = N - p * RK_NR < RK_NR ? N - p * RK_NR : RK_NR;
                    for (int m = m0; m < m1; m += RK_MR) {
                        const float* am = a + (size_t)m * rsa + (size_t)k0 * csa;
                        float* cm = c + (size_t)m * ldc + (size_t)p * RK_NR;
                        switch (m1 - m < RK_MR ? m1 - m : RK_MR) {
                            case 10: rk_uk512(10, kc, am, rsa, csa, bp, cm, ldc, bt, nr); break;
                            case 9: rk_uk512(9, kc, am, rsa, csa, bp, cm, ldc, bt, nr); break;
                            case 8: rk_uk512(8, kc, am, rsa, csa, bp, cm, ldc, bt, nr); break;
                            case 7: rk_uk512(7, kc, am, rsa, csa, bp, cm, ldc, bt, nr); break;
                            case 6: rk_uk512(6, kc, am, rsa, csa, bp, cm, ldc, bt, nr); break;
                            case 5: rk_uk512(5, kc, am, rsa, csa, bp, cm, ldc, bt, nr); break;
                            case 4: rk_uk512(4, kc, am, rsa, csa, bp, cm, ldc, bt, nr); break;
                            case 3: rk_uk512(3, kc, am, rsa, csa, bp, cm, ldc, bt, nr); break;
                            case 2: rk_uk512(2, kc, am, rsa, csa, bp, cm, ldc, bt, nr); break;
                            default: rk_uk512(1, kc, am, rsa, csa, bp, cm, ldc, bt, nr); break;
                        }
                    }
                }
            }
        }
    }
    static int rk_cpu_has_avx512(void) { __builtin_cpu_init(); return __builtin_cpu_supports("avx512f"); }
    #else
    #define RK_HAVE_AVX512_KERNEL 0
    static void rk_gemm512(int M, int N, int K, const float* a, size_t rsa, size_t csa,
                           const float* pb, float beta, float* c, int ldc, int p0, int p1) {}
    static int rk_cpu_has_avx512(void) { return 0; }
    #endif
    """
    void rk_lstm_fwd_cell(int B, int H, float* a, const float* c_prev, float* c, float* h,
                          const float* peep, int fg) noexcept nogil
    void rk_lstm_bwd_cell(int B, int H, const float* gates, const float* c_prev, const float* c,
                          const float* dh, const float* dh_rec, float* dc, float* dgates,
                          const float* peep, float* dpeep, int fg) noexcept nogil
    void rk_lstm_step_cell(int B, int H, const float* a, float* c, float* h, const float* peep,
                           int fg) noexcept nogil
    void rk_tanh_inplace(size_t n, float* a) noexcept nogil
    void rk_rnn_bwd_cell(size_t n, const float* h, const float* dh, const float* dh_rec,
                         float* da) noexcept nogil
    float rk_row_max(int V, const float* z) noexcept nogil
    double rk_exp_shift_sum(int V, float* z, float m) noexcept nogil
    double rk_sum_exp_shift(int V, const float* z, float m) noexcept nogil
    void rk_add_scalar(int n, float* z, float s) noexcept nogil
    void rk_scale(int n, float* z, float s) noexcept nogil
    void rk_axpy1(int n, const float* x, float* y) noexcept nogil
    size_t rk_packed_size(int K, int N) noexcept nogil
    void rk_pack_b(int K, int N, const float* b, int ldb, int trans, float* pb) noexcept nogil
    void rk_gemm512(int M, int N, int K, const float* a, size_t rsa, size_t csa, const float* pb,
                    float beta, float* c, int ldc, int p0, int p1) noexcept nogil
    int rk_cpu_has_avx512() noexcept nogil
    int RK_HAVE_AVX512_KERNEL
    int RK_NR


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


def matmul(a, b, c=None, *, bint trans_a=False, bint trans_b=False, float beta=0.0):
    """C = op(a) · op(b) + beta · c through the layers' product `mm` on the current backend
    (see gemm_backend): the packed-weight kernel or BLAS. For tests and benchmarks."""
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
    if m == 0 or n == 0 or k == 0:
        c *= beta
        return c
    cdef cnp.ndarray pack = np.empty(pack_size(k, n), np.float32)
    cdef float* ap = fptr(a)
    cdef float* bp = fptr(b)
    cdef float* cp = fptr(c)
    cdef float* pp = fptr(pack)
    cdef int lda = a.shape[1], ldb = b.shape[1]
    with nogil:
        mm(m, n, k, ap, lda, trans_a, bp, ldb, trans_b, beta, cp, n, pp, False)
    return c


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


cdef void matmul_wt(int m, int n, int k, const float* a, const float* w, float beta,
                    float* c) noexcept nogil:
    """C[M, N] = A[M, K] · W[N, K]ᵀ + beta · C: every forward product (x·W_ihᵀ, h·W_hhᵀ, h·Wᵀ).

    One row (a single stream) goes through gemv, which BLAS runs several times faster than a
    gemm with M = 1.
    """
    if m == 1:
        sgemv_rm(False, n, k, 1.0, w, k, a, beta, c)
    else:
        sgemm_rm(False, True, m, n, k, 1.0, a, k, w, k, beta, c, n)


# The matrix products of the layers run on our packed-weight AVX-512 kernel where the CPU has
# AVX-512, else on BLAS (scipy's OpenBLAS). Measured on the per-step shapes (bench/bench_kernels.py)
# the packed kernel runs at 2x the rate of OpenBLAS's AVX2 kernel, and it does not depend on
# which kernel OpenBLAS picks at load time (OPENBLAS_CORETYPE).
cdef bint native = rk_cpu_has_avx512() != 0


def gemm_backend(name=None):
    """The backend of the layers' matrix products: 'native' (packed AVX-512 kernel) or 'blas'.

    With a name, switch to it (for tests and benchmarks); 'native' needs a CPU with AVX-512.
    """
    global native
    if name is not None:
        if name not in ("native", "blas"):
            raise ValueError(f"backend must be 'native' or 'blas', got {name!r}")
        if name == "native" and not rk_cpu_has_avx512():
            raise ValueError("the native backend needs a CPU with AVX-512; use 'blas'")
        native = name == "native"
    return "native" if native else "blas"


cdef size_t pack_size(int k, int n) noexcept nogil:
    return rk_packed_size(k, n) if native else 1


cdef void mm(int m, int n, int k, const float* a, int lda, bint ta, const float* b, int ldb,
             bint tb, float beta, float* c, int ldc, float* pack, bint prepacked) noexcept nogil:
    """C[M, N] = op(A) · op(B) + beta · C, row-major, as sgemm_rm.

    On the native backend op(B) is first packed into `pack` (pack_size(K, N) floats) unless
    `prepacked` says it already is (a weight packed once before the time loop).
    """
    if not native:
        sgemm_rm(ta, tb, m, n, k, 1.0, a, lda, b, ldb, beta, c, ldc)
        return
    if not prepacked:
        rk_pack_b(k, n, b, ldb, tb, pack)
    if ta:
        rk_gemm512(m, n, k, a, 1, lda, pack, beta, c, ldc, 0, (n + RK_NR - 1) // RK_NR)
    else:
        rk_gemm512(m, n, k, a, lda, 1, pack, beta, c, ldc, 0, (n + RK_NR - 1) // RK_NR)


def _packbuf(cache, name, size_t size):
    a = getattr(cache, name, None)
    if a is None or a.shape[0] < size:
        a = np.empty(size, np.float32)
        setattr(cache, name, a)
    return a


cdef void fill_rows(int m, int n, float* c, const float* b1, const float* b2) noexcept nogil:
    """Every row of C[M, N] = b1 + b2 (b2 may be NULL)."""
    cdef int r, j
    for j in range(n):
        c[j] = b1[j] + (b2[j] if b2 != NULL else 0.0)
    for r in range(1, m):
        memcpy(c + <size_t>r * n, c, n * sizeof(float))


cdef void col_sums(int m, int n, const float* a, float* out) noexcept nogil:
    """out[N] = the sum of the M rows of A[M, N], in row order (deterministic)."""
    cdef int r
    memset(out, 0, n * sizeof(float))
    for r in range(m):
        rk_axpy1(n, a + <size_t>r * n, out)


# ---------------------------------------------------------------------------------------------
# checks (def layer)
# ---------------------------------------------------------------------------------------------
cdef inline float* fptr(cnp.ndarray a):
    return <float*>cnp.PyArray_DATA(a)


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


def _buf(cache, name, shape):
    """The cache's buffer `name` when it has this shape, else a new one stored there."""
    a = getattr(cache, name, None)
    if a is None or a.shape != shape:
        a = np.empty(shape, np.float32)
        setattr(cache, name, a)
    return a


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


def _reuse(cache, kind):
    if cache is None:
        return Cache(kind)
    if not isinstance(cache, Cache) or cache.kind != kind:
        got = f"a {cache.kind} cache" if isinstance(cache, Cache) else type(cache).__name__
        raise ValueError(f"cache must be a {kind} cache returned by an earlier {kind}_forward "
                         f"call, got {got}")
    return cache


# ---------------------------------------------------------------------------------------------
# LSTM
# ---------------------------------------------------------------------------------------------
cdef void lstm_forward_loop(int T, int B, int E, int H, const float* x, const float* w_ih,
                            const float* w_hh, const float* b_ih, const float* b_hh,
                            const float* peep, bint fg, float* gates, float* hs,
                            float* cs, float* packw, float* scratch) noexcept nogil:
    """gates [T, B, 4H] (activated, out), hs [T+1, B, H] and cs [T+1, B, H] (h_0, c_0 in row 0);
    packw [pack_size(H, 4H)], scratch [pack_size(E, 4H)] workspaces."""
    cdef int t
    cdef size_t G = <size_t>B * 4 * H, S = <size_t>B * H
    # the input projection of all T steps is one product, before the loop
    fill_rows(T * B, 4 * H, gates, b_ih, b_hh)
    mm(T * B, 4 * H, E, x, E, False, w_ih, E, True, 1.0, gates, 4 * H, scratch, False)
    if native:
        rk_pack_b(H, 4 * H, w_hh, H, True, packw)      # once per window, used T times
    for t in range(T):
        mm(B, 4 * H, H, hs + t * S, H, False, w_hh, H, True, 1.0, gates + t * G, 4 * H, packw,
           True)
        rk_lstm_fwd_cell(B, H, gates + t * G, cs + t * S, cs + (t + 1) * S, hs + (t + 1) * S,
                         peep, fg)


def lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_peep=None, forget_gate=True, cache=None):
    """One LSTM layer over a window (see reference.lstm_forward): (h, hT, cT, cache).

    x [T, B, E], h0 / c0 [B, H], w_ih [4H, E], w_hh [4H, H], b_ih / b_hh [4H], w_peep [3, H]
    or None; all float32 and C-contiguous. h [T, B, H] is a view into the cache.
    """
    _f32("x", x, (None, None, None))
    cdef int T = x.shape[0], B = x.shape[1], E = x.shape[2]
    _f32("h0", h0, (B, None))
    cdef int H = h0.shape[1]
    _f32("c0", c0, (B, H))
    _f32("w_ih", w_ih, (4 * H, E))
    _f32("w_hh", w_hh, (4 * H, H))
    _f32("b_ih", b_ih, (4 * H,))
    _f32("b_hh", b_hh, (4 * H,))
    if w_peep is not None:
        _f32("w_peep", w_peep, (3, H))
    if T == 0:
        raise ValueError("x must have at least one time step")
    cache = _reuse(cache, "lstm")
    cdef cnp.ndarray gates = _buf(cache, "gates", (T, B, 4 * H))  # activated i, f, g, o
    cdef cnp.ndarray hs = _buf(cache, "hs", (T + 1, B, H))        # h_0 .. h_T
    cdef cnp.ndarray cs = _buf(cache, "cs", (T + 1, B, H))        # c_0 .. c_T
    hs[0] = h0
    cs[0] = c0
    cdef const float* pp = fptr(w_peep) if w_peep is not None else NULL
    cdef bint fg = bool(forget_gate)
    cdef const float* xp = fptr(x)
    cdef const float* wi = fptr(w_ih)
    cdef const float* wh = fptr(w_hh)
    cdef const float* bi = fptr(b_ih)
    cdef const float* bh = fptr(b_hh)
    cdef float* gp = fptr(gates)
    cdef float* hp = fptr(hs)
    cdef float* cp = fptr(cs)
    cdef float* packw = fptr(_packbuf(cache, "packw", max(pack_size(H, 4 * H),
                                                          pack_size(4 * H, H))))
    cdef float* scratch = fptr(_packbuf(cache, "scratch", max(
        pack_size(E, 4 * H), pack_size(4 * H, E), pack_size(T * B, E), pack_size(T * B, H))))
    with nogil:
        lstm_forward_loop(T, B, E, H, xp, wi, wh, bi, bh, pp, fg, gp, hp, cp, packw, scratch)
    cache.x, cache.w_ih, cache.w_hh, cache.w_peep, cache.forget_gate = x, w_ih, w_hh, w_peep, fg
    cache.shape = (T, B, E, H)
    return hs[1:], hs[T].copy(), cs[T].copy(), cache


cdef void lstm_backward_loop(int T, int B, int E, int H, const float* x, const float* w_ih,
                             const float* w_hh, const float* peep, bint fg, const float* gates,
                             const float* hs, const float* cs, const float* dh, float* dh_rec,
                             float* dc, float* dgates, float* dx, float* dw_ih, float* dw_hh,
                             float* db, float* dpeep, float* packw,
                             float* scratch) noexcept nogil:
    """dh_rec [B, H] and dc [B, H] hold dL/dh_T, dL/dc_T on entry and dL/dh_0, dL/dc_0 on exit."""
    cdef int t
    cdef size_t G = <size_t>B * 4 * H, S = <size_t>B * H
    if dpeep != NULL:
        memset(dpeep, 0, 3 * H * sizeof(float))
    if native:
        rk_pack_b(4 * H, H, w_hh, H, False, packw)     # once per window, used T times
    for t in range(T - 1, -1, -1):
        rk_lstm_bwd_cell(B, H, gates + t * G, cs + t * S, cs + (t + 1) * S, dh + t * S, dh_rec,
                         dc, dgates + t * G, peep, dpeep, fg)
        # only the recurrent product stays in the loop: dL/dh_{t-1} = dgates_t · W_hh
        mm(B, H, 4 * H, dgates + t * G, 4 * H, False, w_hh, H, False, 0.0, dh_rec, H, packw,
           True)
    # the weight and input gradients of all T steps are one product each, after the loop
    mm(T * B, E, 4 * H, dgates, 4 * H, False, w_ih, E, False, 0.0, dx, E, scratch, False)
    mm(4 * H, E, T * B, dgates, 4 * H, True, x, E, False, 0.0, dw_ih, E, scratch, False)
    mm(4 * H, H, T * B, dgates, 4 * H, True, hs, H, False, 0.0, dw_hh, H, scratch, False)
    col_sums(T * B, 4 * H, dgates, db)


def lstm_backward(dh, dhT, dcT, cache):
    """Gradients of an LSTM window (see reference.lstm_backward):
    (dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dw_peep); dw_peep is None without peepholes.

    dh [T, B, H], dhT / dcT [B, H]. The results live in the cache's buffers.
    """
    if not isinstance(cache, Cache) or cache.kind != "lstm" or not hasattr(cache, "shape"):
        raise ValueError("cache must be the cache returned by lstm_forward")
    cdef int T, B, E, H
    T, B, E, H = cache.shape
    _f32("dh", dh, (T, B, H))
    _f32("dhT", dhT, (B, H))
    _f32("dcT", dcT, (B, H))
    w_peep = cache.w_peep
    cdef cnp.ndarray dgates = _buf(cache, "dgates", (T, B, 4 * H))
    cdef cnp.ndarray dx = _buf(cache, "dx", (T, B, E))
    cdef cnp.ndarray dh0 = _buf(cache, "dh0", (B, H))
    cdef cnp.ndarray dc0 = _buf(cache, "dc0", (B, H))
    cdef cnp.ndarray dw_ih = _buf(cache, "dw_ih", (4 * H, E))
    cdef cnp.ndarray dw_hh = _buf(cache, "dw_hh", (4 * H, H))
    cdef cnp.ndarray db_ih = _buf(cache, "db_ih", (4 * H,))
    cdef cnp.ndarray db_hh = _buf(cache, "db_hh", (4 * H,))
    dw_peep = _buf(cache, "dw_peep", (3, H)) if w_peep is not None else None
    dh0[...] = dhT
    dc0[...] = dcT
    cdef const float* pp = fptr(w_peep) if w_peep is not None else NULL
    cdef float* dpp = fptr(dw_peep) if w_peep is not None else NULL
    cdef bint fg = cache.forget_gate
    cdef const float* xp = fptr(cache.x)
    cdef const float* wi = fptr(cache.w_ih)
    cdef const float* wh = fptr(cache.w_hh)
    cdef const float* gp = fptr(cache.gates)
    cdef const float* hp = fptr(cache.hs)
    cdef const float* cp = fptr(cache.cs)
    cdef const float* dhp = fptr(dh)
    cdef float* p_dh0 = fptr(dh0)
    cdef float* p_dc0 = fptr(dc0)
    cdef float* p_dg = fptr(dgates)
    cdef float* p_dx = fptr(dx)
    cdef float* p_dwi = fptr(dw_ih)
    cdef float* p_dwh = fptr(dw_hh)
    cdef float* p_dbi = fptr(db_ih)
    cdef float* p_dbh = fptr(db_hh)
    cdef float* packw = fptr(cache.packw)
    cdef float* scratch = fptr(cache.scratch)
    with nogil:
        lstm_backward_loop(T, B, E, H, xp, wi, wh, pp, fg, gp, hp, cp, dhp, p_dh0, p_dc0,
                           p_dg, p_dx, p_dwi, p_dwh, p_dbi, dpp, packw, scratch)
        memcpy(p_dbh, p_dbi, 4 * H * sizeof(float))
    return dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dw_peep


def lstm_step(x, h, c, w_ih, w_hh, b_ih, b_hh, w_peep=None, forget_gate=True, gates=None):
    """One LSTM step for B streams, updating h [B, H] and c [B, H] in place; returns (h, c).

    x [B, E]. gates, a [B, 4H] float32 workspace, makes the call allocation-free.
    """
    _f32("x", x, (None, None))
    cdef int B = x.shape[0], E = x.shape[1]
    _f32("h", h, (B, None))
    cdef int H = h.shape[1]
    _f32("c", c, (B, H))
    _f32("w_ih", w_ih, (4 * H, E))
    _f32("w_hh", w_hh, (4 * H, H))
    _f32("b_ih", b_ih, (4 * H,))
    _f32("b_hh", b_hh, (4 * H,))
    if w_peep is not None:
        _f32("w_peep", w_peep, (3, H))
    if gates is None:
        gates = np.empty((B, 4 * H), np.float32)
    else:
        _f32("gates", gates, (B, 4 * H))
    cdef float* gp = fptr(gates)
    cdef float* hp = fptr(h)
    cdef float* cp = fptr(c)
    cdef const float* xp = fptr(x)
    cdef const float* wi = fptr(w_ih)
    cdef const float* wh = fptr(w_hh)
    cdef const float* bi = fptr(b_ih)
    cdef const float* bh = fptr(b_hh)
    cdef const float* pp = fptr(w_peep) if w_peep is not None else NULL
    cdef bint fg = bool(forget_gate)
    with nogil:
        fill_rows(B, 4 * H, gp, bi, bh)
        matmul_wt(B, 4 * H, E, xp, wi, 1.0, gp)
        matmul_wt(B, 4 * H, H, hp, wh, 1.0, gp)
        rk_lstm_step_cell(B, H, gp, cp, hp, pp, fg)
    return h, c


# ---------------------------------------------------------------------------------------------
# tanh RNN
# ---------------------------------------------------------------------------------------------
def rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, cache=None):
    """One tanh-RNN layer over a window (see reference.rnn_forward): (h, hT, cache).

    x [T, B, E], h0 [B, H], w_ih [H, E], w_hh [H, H], b_ih / b_hh [H].
    """
    _f32("x", x, (None, None, None))
    cdef int T = x.shape[0], B = x.shape[1], E = x.shape[2]
    _f32("h0", h0, (B, None))
    cdef int H = h0.shape[1]
    _f32("w_ih", w_ih, (H, E))
    _f32("w_hh", w_hh, (H, H))
    _f32("b_ih", b_ih, (H,))
    _f32("b_hh", b_hh, (H,))
    if T == 0:
        raise ValueError("x must have at least one time step")
    cache = _reuse(cache, "rnn")
    cdef cnp.ndarray hs = _buf(cache, "hs", (T + 1, B, H))  # h_0 .. h_T
    hs[0] = h0
    cdef float* hp = fptr(hs)
    cdef const float* xp = fptr(x)
    cdef const float* wi = fptr(w_ih)
    cdef const float* wh = fptr(w_hh)
    cdef const float* bi = fptr(b_ih)
    cdef const float* bh = fptr(b_hh)
    cdef size_t S = <size_t>B * H
    cdef int t
    cdef float* packw = fptr(_packbuf(cache, "packw", pack_size(H, H)))
    cdef float* scratch = fptr(_packbuf(cache, "scratch", max(
        pack_size(E, H), pack_size(H, E), pack_size(T * B, E), pack_size(T * B, H))))
    with nogil:
        fill_rows(T * B, H, hp + S, bi, bh)
        mm(T * B, H, E, xp, E, False, wi, E, True, 1.0, hp + S, H, scratch, False)
        if native:
            rk_pack_b(H, H, wh, H, True, packw)
        for t in range(T):
            mm(B, H, H, hp + t * S, H, False, wh, H, True, 1.0, hp + (t + 1) * S, H, packw, True)
            rk_tanh_inplace(S, hp + (t + 1) * S)
    cache.x, cache.w_ih, cache.w_hh, cache.shape = x, w_ih, w_hh, (T, B, E, H)
    return hs[1:], hs[T].copy(), cache


def rnn_backward(dh, dhT, cache):
    """Gradients of a tanh-RNN window (see reference.rnn_backward):
    (dx, dh0, dw_ih, dw_hh, db_ih, db_hh)."""
    if not isinstance(cache, Cache) or cache.kind != "rnn" or not hasattr(cache, "shape"):
        raise ValueError("cache must be the cache returned by rnn_forward")
    cdef int T, B, E, H
    T, B, E, H = cache.shape
    _f32("dh", dh, (T, B, H))
    _f32("dhT", dhT, (B, H))
    cdef cnp.ndarray da = _buf(cache, "da", (T, B, H))
    cdef cnp.ndarray dx = _buf(cache, "dx", (T, B, E))
    cdef cnp.ndarray dh0 = _buf(cache, "dh0", (B, H))
    cdef cnp.ndarray dw_ih = _buf(cache, "dw_ih", (H, E))
    cdef cnp.ndarray dw_hh = _buf(cache, "dw_hh", (H, H))
    cdef cnp.ndarray db_ih = _buf(cache, "db_ih", (H,))
    cdef cnp.ndarray db_hh = _buf(cache, "db_hh", (H,))
    dh0[...] = dhT
    cdef const float* xp = fptr(cache.x)
    cdef const float* wi = fptr(cache.w_ih)
    cdef const float* wh = fptr(cache.w_hh)
    cdef const float* hp = fptr(cache.hs)
    cdef const float* dhp = fptr(dh)
    cdef float* dap = fptr(da)
    cdef float* dhr = fptr(dh0)
    cdef float* p_dx = fptr(dx)
    cdef float* p_dwi = fptr(dw_ih)
    cdef float* p_dwh = fptr(dw_hh)
    cdef float* p_dbi = fptr(db_ih)
    cdef float* p_dbh = fptr(db_hh)
    cdef size_t S = <size_t>B * H
    cdef int t
    cdef float* packw = fptr(cache.packw)
    cdef float* scratch = fptr(cache.scratch)
    with nogil:
        if native:
            rk_pack_b(H, H, wh, H, False, packw)
        for t in range(T - 1, -1, -1):
            rk_rnn_bwd_cell(S, hp + (t + 1) * S, dhp + t * S, dhr, dap + t * S)
            mm(B, H, H, dap + t * S, H, False, wh, H, False, 0.0, dhr, H, packw, True)
        mm(T * B, E, H, dap, H, False, wi, E, False, 0.0, p_dx, E, scratch, False)
        mm(H, E, T * B, dap, H, True, xp, E, False, 0.0, p_dwi, E, scratch, False)
        mm(H, H, T * B, dap, H, True, hp, H, False, 0.0, p_dwh, H, scratch, False)
        col_sums(T * B, H, dap, p_dbi)
        memcpy(p_dbh, p_dbi, H * sizeof(float))
    return dx, dh0, dw_ih, dw_hh, db_ih, db_hh


def rnn_step(x, h, w_ih, w_hh, b_ih, b_hh, work=None):
    """One tanh-RNN step for B streams, updating h [B, H] in place; returns h.

    x [B, E]; work, a [B, H] float32 workspace, makes the call allocation-free.
    """
    _f32("x", x, (None, None))
    cdef int B = x.shape[0], E = x.shape[1]
    _f32("h", h, (B, None))
    cdef int H = h.shape[1]
    _f32("w_ih", w_ih, (H, E))
    _f32("w_hh", w_hh, (H, H))
    _f32("b_ih", b_ih, (H,))
    _f32("b_hh", b_hh, (H,))
    if work is None:
        work = np.empty((B, H), np.float32)
    else:
        _f32("work", work, (B, H))
    cdef float* ap = fptr(work)
    cdef float* hp = fptr(h)
    cdef const float* xp = fptr(x)
    cdef const float* wi = fptr(w_ih)
    cdef const float* wh = fptr(w_hh)
    cdef const float* bi = fptr(b_ih)
    cdef const float* bh = fptr(b_hh)
    with nogil:
        fill_rows(B, H, ap, bi, bh)
        matmul_wt(B, H, E, xp, wi, 1.0, ap)
        matmul_wt(B, H, H, hp, wh, 1.0, ap)
        rk_tanh_inplace(<size_t>B * H, ap)
        memcpy(hp, ap, <size_t>B * H * sizeof(float))
    return h


# ---------------------------------------------------------------------------------------------
# output layer
# ---------------------------------------------------------------------------------------------
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
    cdef cnp.ndarray z = _buf(cache, "z", (N, V))     # logits, then exp(z - max)
    cdef cnp.ndarray inv = _buf(cache, "inv", (N,))   # 1 / sum exp(z - max) per row
    cdef float* zp = fptr(z)
    cdef float* ip = fptr(inv)
    cdef const float* hp = fptr(h)
    cdef const float* wp = fptr(w)
    cdef const float* bp = fptr(b)
    cdef const int64_t* tp = <const int64_t*>cnp.PyArray_DATA(tg)
    cdef double loss = 0.0, s
    cdef float m, zt
    cdef int n
    cdef float* scratch = fptr(_packbuf(cache, "scratch", max(
        pack_size(H, V), pack_size(V, H), pack_size(N, H))))
    with nogil:
        fill_rows(N, V, zp, bp, NULL)
        mm(N, V, H, hp, H, False, wp, H, True, 1.0, zp, V, scratch, False)
        for n in range(N):
            m = rk_row_max(V, zp + <size_t>n * V)              # row-wise max: no overflow
            zt = zp[<size_t>n * V + tp[n]] - m
            s = rk_exp_shift_sum(V, zp + <size_t>n * V, m)     # one pass: exp and its sum
            ip[n] = <float>(1.0 / s)
            loss += log(s) - zt
    cache.h, cache.w, cache.targets, cache.consumed = h, w, tg, False
    return loss, cache


def softmax_xent_backward(dloss, cache):
    """Gradients (dh [N, H], dw [V, H], db [V]) of loss_sum · dloss; writes into the cache."""
    if not isinstance(cache, Cache) or cache.kind != "softmax_xent" or not hasattr(cache, "z"):
        raise ValueError("cache must be the cache returned by softmax_xent_forward")
    if cache.consumed:
        raise ValueError("softmax_xent_backward already ran on this cache (it works in place); "
                         "run softmax_xent_forward again")
    cache.consumed = True
    cdef cnp.ndarray z = cache.z
    cdef int N = z.shape[0], V = z.shape[1], H = cache.h.shape[1]
    cdef cnp.ndarray dh = _buf(cache, "dh", (N, H))
    cdef cnp.ndarray dw = _buf(cache, "dw", (V, H))
    cdef cnp.ndarray db = _buf(cache, "db", (V,))
    cdef float* zp = fptr(z)
    cdef const float* ip = fptr(cache.inv)
    cdef const float* hp = fptr(cache.h)
    cdef const float* wp = fptr(cache.w)
    cdef const int64_t* tp = <const int64_t*>cnp.PyArray_DATA(cache.targets)
    cdef float d = dloss
    cdef float* p_dh = fptr(dh)
    cdef float* p_dw = fptr(dw)
    cdef float* p_db = fptr(db)
    cdef float* scratch = fptr(cache.scratch)
    cdef int n
    with nogil:
        for n in range(N):
            # d loss / d logits = softmax - onehot (in place)
            rk_scale(V, zp + <size_t>n * V, ip[n] * d)
            zp[<size_t>n * V + tp[n]] -= d
        mm(N, H, V, zp, V, False, wp, H, False, 0.0, p_dh, H, scratch, False)
        mm(V, H, N, zp, V, True, hp, H, False, 0.0, p_dw, H, scratch, False)
        col_sums(N, V, zp, p_db)
    return dh, dw, db


def log_softmax(h, w, b, out=None):
    """Natural-log probabilities [N, V] of softmax(h wᵀ + b); h [N, H], w [V, H], b [V].

    out, an [N, V] float32 array, makes the call allocation-free.
    """
    _decoder_args(h, w, b)
    cdef int N = h.shape[0], H = h.shape[1], V = w.shape[0]
    if out is None:
        out = np.empty((N, V), np.float32)
    else:
        _f32("out", out, (N, V))
    cdef float* zp = fptr(out)
    cdef const float* hp = fptr(h)
    cdef const float* wp = fptr(w)
    cdef const float* bp = fptr(b)
    cdef float m
    cdef double s
    cdef int n
    with nogil:
        fill_rows(N, V, zp, bp, NULL)
        matmul_wt(N, V, H, hp, wp, 1.0, zp)
        for n in range(N):
            m = rk_row_max(V, zp + <size_t>n * V)
            s = rk_sum_exp_shift(V, zp + <size_t>n * V, m)
            rk_add_scalar(V, zp + <size_t>n * V, <float>(-m - log(s)))
    return out


# ---------------------------------------------------------------------------------------------
# embedding
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


def embedding_backward(dx, ids, int V, out=None):
    """dweight [V, E]: the rows of dx [T, B, E] added up per id, in order (deterministic)."""
    _f32("dx", dx, (None, None, None))
    cdef int E = dx.shape[2]
    ix = _ids("ids", ids, V, 2)
    if ix.shape[0] != dx.shape[0] or ix.shape[1] != dx.shape[1]:
        raise ValueError(f"ids {list(ix.shape)} and dx {list(dx.shape)} differ in [T, B]")
    if out is None:
        out = np.zeros((V, E), np.float32)
    else:
        _f32("out", out, (V, E))
        out.fill(0)
    cdef const int64_t* ip = <const int64_t*>cnp.PyArray_DATA(ix)
    cdef const float* dp = fptr(dx)
    cdef float* op = fptr(out)
    cdef size_t n, count = ix.size
    with nogil:
        for n in range(count):
            rk_axpy1(E, dp + n * E, op + <size_t>ip[n] * E)
    return out
