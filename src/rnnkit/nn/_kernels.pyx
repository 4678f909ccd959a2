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
from libc.math cimport exp, log
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

    /* ---- LSTM, one step, all B rows, columns j0 .. j1-1 of H (a thread's share) -------------
       a [B, 4H]: pre-activations in (gate order i, f, g, o), activated gates out;
       c_prev [B, H] -> c [B, H] and h [B, H]. peep [3, H] (rows i, f, o) or NULL. Peepholes
       after Gers, Schraudolph & Schmidhuber (2002): i and f see c_{t-1}, o sees the new c_t.
       Without a forget gate (Hochreiter & Schmidhuber 1997) c_t = c_{t-1} + i*g and the f slot
       of the gates is set to 0. Every pointer is `restrict` so that the loops vectorise. */
    #define RK_LSTM_CELL(AI, AF, AG, AO, CPJ)                                                   \
            float i = rk_sigmoid((AI) + (use_peep ? pi[j] * (CPJ) : 0.0f));                     \
            float f = fg ? rk_sigmoid((AF) + (use_peep ? pf[j] * (CPJ) : 0.0f)) : 0.0f;         \
            float g = rk_tanh(AG);                                                              \
            float cj = (fg ? f * (CPJ) : (CPJ)) + i * g;                                        \
            float o = rk_sigmoid((AO) + (use_peep ? po[j] * cj : 0.0f));
    RK_INLINE void rk_lstm_fwd_row(int n, float* restrict ai, float* restrict af,
                                   float* restrict ag, float* restrict ao,
                                   const float* restrict cp, float* restrict c,
                                   float* restrict h, const float* restrict pi,
                                   const float* restrict pf, const float* restrict po,
                                   const int use_peep, const int fg) {
        for (int j = 0; j < n; j++) {
            RK_LSTM_CELL(ai[j], af[j], ag[j], ao[j], cp[j])
            ai[j] = i; af[j] = f; ag[j] = g; ao[j] = o;
            c[j] = cj;
            h[j] = o * rk_tanh(cj);
        }
    }
    /* the single step: c [B, H] updated in place, the gates not kept */
    RK_INLINE void rk_lstm_step_row(int n, const float* restrict ai, const float* restrict af,
                                    const float* restrict ag, const float* restrict ao,
                                    float* restrict c, float* restrict h,
                                    const float* restrict pi, const float* restrict pf,
                                    const float* restrict po, const int use_peep, const int fg) {
        for (int j = 0; j < n; j++) {
            float cpj = c[j];
            RK_LSTM_CELL(ai[j], af[j], ag[j], ao[j], cpj)
            (void)f;
            c[j] = cj;
            h[j] = o * rk_tanh(cj);
        }
    }
    #define RK_VARIANTS(CALL)                                     \
        if (peep) { if (fg) CALL(1, 1) else CALL(1, 0) }           \
        else { if (fg) CALL(0, 1) else CALL(0, 0) }
    RK_CLONES
    static void rk_lstm_fwd_cell(int B, int H, int j0, int j1, float* a, const float* c_prev,
                                 float* c, float* h, const float* peep, int fg) {
        const float *pi = peep ? peep + j0 : 0, *pf = peep ? peep + H + j0 : 0;
        const float *po = peep ? peep + 2 * H + j0 : 0;
        int n = j1 - j0;
        for (int b = 0; b < B; b++) {
            float* ab = a + (size_t)b * 4 * H + j0;
            const float* cp = c_prev + (size_t)b * H + j0;
            float* cb = c + (size_t)b * H + j0; float* hb = h + (size_t)b * H + j0;
            #define RK_CALL(P, F) rk_lstm_fwd_row(n, ab, ab + H, ab + 2 * H, ab + 3 * H, cp, cb, hb, pi, pf, po, P, F);
            RK_VARIANTS(RK_CALL)
            #undef RK_CALL
        }
    }
    RK_CLONES
    static void rk_lstm_step_cell(int B, int H, int j0, int j1, const float* a, float* c,
                                  float* h, const float* peep, int fg) {
        const float *pi = peep ? peep + j0 : 0, *pf = peep ? peep + H + j0 : 0;
        const float *po = peep ? peep + 2 * H + j0 : 0;
        int n = j1 - j0;
        for (int b = 0; b < B; b++) {
            const float* ab = a + (size_t)b * 4 * H + j0;
            float* cb = c + (size_t)b * H + j0; float* hb = h + (size_t)b * H + j0;
            #define RK_CALL(P, F) rk_lstm_step_row(n, ab, ab + H, ab + 2 * H, ab + 3 * H, cb, hb, pi, pf, po, P, F);
            RK_VARIANTS(RK_CALL)
            #undef RK_CALL
        }
    }

    /* Backward through one step, columns j0 .. j1-1. gates [B, 4H] activated (i, f, g, o);
       c_prev, c [B, H]; dh [B, H] from above and dh_rec [B, H] through the recurrence (their
       sum is dL/dh_t); dc [B, H]: dL/dc_t from step t+1 in, dL/dc_{t-1} out; dgates [B, 4H]
       out: dL/d(pre-activation); dpeep [3, H] accumulated. */
    RK_INLINE void rk_lstm_bwd_row(int n, const float* restrict gi, const float* restrict gf,
                                   const float* restrict gg, const float* restrict go,
                                   const float* restrict cp, const float* restrict c,
                                   const float* restrict dh, const float* restrict dhr,
                                   float* restrict dc, float* restrict dgi, float* restrict dgf,
                                   float* restrict dgg, float* restrict dgo,
                                   const float* restrict pi, const float* restrict pf,
                                   const float* restrict po, float* restrict dpi,
                                   float* restrict dpf, float* restrict dpo,
                                   const int use_peep, const int fg) {
        for (int j = 0; j < n; j++) {
            float i = gi[j], f = gf[j], g = gg[j], o = go[j], cj = c[j], cpj = cp[j];
            float tc = rk_tanh(cj);
            float dht = dh[j] + dhr[j];
            float dao = dht * tc * o * (1.0f - o);
            float dct = dc[j] + dht * o * (1.0f - tc * tc);
            if (use_peep) dct += dao * po[j];                    /* o_t saw c_t */
            float dai = dct * g * i * (1.0f - i);
            float dag = dct * i * (1.0f - g * g);
            float daf = fg ? dct * cpj * f * (1.0f - f) : 0.0f;
            float dcp = fg ? dct * f : dct;
            if (use_peep) {                                      /* i_t and f_t saw c_{t-1} */
                dcp += dai * pi[j] + daf * pf[j];
                dpi[j] += dai * cpj;
                dpf[j] += daf * cpj;
                dpo[j] += dao * cj;
            }
            dc[j] = dcp;
            dgi[j] = dai; dgf[j] = daf; dgg[j] = dag; dgo[j] = dao;
        }
    }
    RK_CLONES
    static void rk_lstm_bwd_cell(int B, int H, int j0, int j1, const float* gates,
                                 const float* c_prev, const float* c, const float* dh,
                                 const float* dh_rec, float* dc, float* dgates, const float* peep,
                                 float* dpeep, int fg) {
        const float *pi = peep ? peep + j0 : 0, *pf = peep ? peep + H + j0 : 0;
        const float *po = peep ? peep + 2 * H + j0 : 0;
        float *dpi = dpeep ? dpeep + j0 : 0, *dpf = dpeep ? dpeep + H + j0 : 0;
        float *dpo = dpeep ? dpeep + 2 * H + j0 : 0;
        int n = j1 - j0;
        for (int b = 0; b < B; b++) {
            size_t o4 = (size_t)b * 4 * H + j0, o1 = (size_t)b * H + j0;
            const float* gt = gates + o4; float* dg = dgates + o4;
            #define RK_CALL(P, F) rk_lstm_bwd_row(n, gt, gt + H, gt + 2 * H, gt + 3 * H, c_prev + o1, c + o1, dh + o1, dh_rec + o1, dc + o1, dg, dg + H, dg + 2 * H, dg + 3 * H, pi, pf, po, dpi, dpf, dpo, P, F);
            RK_VARIANTS(RK_CALL)
            #undef RK_CALL
        }
    }

    /* ---- tanh RNN, rows of [B, H], columns j0 .. j1-1 ---------------------------------------- */
    RK_CLONES
    static void rk_tanh_rows(int B, int H, int j0, int j1, float* a) {
        for (int b = 0; b < B; b++) {
            float* restrict ab = a + (size_t)b * H;
            for (int j = j0; j < j1; j++) ab[j] = rk_tanh(ab[j]);
        }
    }
    /* da = (dh + dh_rec) * (1 - h^2) */
    RK_CLONES
    static void rk_rnn_bwd_cell(int B, int H, int j0, int j1, const float* h, const float* dh,
                                const float* dh_rec, float* da) {
        for (int b = 0; b < B; b++) {
            size_t o = (size_t)b * H;
            const float* restrict hb = h + o; const float* restrict dhb = dh + o;
            const float* restrict dhrb = dh_rec + o; float* restrict dab = da + o;
            for (int j = j0; j < j1; j++) dab[j] = (dhb[j] + dhrb[j]) * (1.0f - hb[j] * hb[j]);
        }
    }

    /* ---- softmax rows ----------------------------------------------------------------------- */
    /* With AVX-512, explicit 16-lane versions (the compiler's own vectorisation of the loops
       below used 8 lanes for exp and none for the max: 3.1 ns per logit for the softmax of a
       33k vocabulary, now 0.3) */
    #if defined(__GNUC__) && defined(__x86_64__)
    #include <immintrin.h>
    #define RK_ROWS512 1
    static int rk_has512 = -1;
    static inline int rk_use512(void) {
        if (rk_has512 < 0) { __builtin_cpu_init(); rk_has512 = __builtin_cpu_supports("avx512f") != 0; }
        return rk_has512;
    }
    /* rk_exp on 16 lanes, the same steps */
    __attribute__((target("avx512f"))) static inline __attribute__((always_inline))
    __m512 rk_exp512(__m512 x) {
        x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.3f)), _mm512_set1_ps(88.3f));
        __m512 big = _mm512_set1_ps(12582912.0f);
        __m512 fn = _mm512_sub_ps(_mm512_fmadd_ps(x, _mm512_set1_ps(1.44269504088896341f), big), big);
        __m512 r = _mm512_fnmadd_ps(fn, _mm512_set1_ps(0.693359375f), x);
        r = _mm512_fmadd_ps(fn, _mm512_set1_ps(2.12194440e-4f), r);
        __m512 y = _mm512_set1_ps(1.9875691500e-4f);
        y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.3981999507e-3f));
        y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(8.3334519073e-3f));
        y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(4.1665795894e-2f));
        y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.6666665459e-1f));
        y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(5.0000001201e-1f));
        y = _mm512_add_ps(_mm512_fmadd_ps(y, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
        __m512i n = _mm512_cvtps_epi32(fn);
        __m512 p = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(n, _mm512_set1_epi32(127)), 23));
        return _mm512_mul_ps(y, p);
    }
    __attribute__((target("avx512f")))
    static float rk_row_max512(int V, const float* z) {
        __m512 m0 = _mm512_set1_ps(-INFINITY), m1 = m0;
        int v = 0;
        for (; v + 32 <= V; v += 32) {
            m0 = _mm512_max_ps(m0, _mm512_loadu_ps(z + v));
            m1 = _mm512_max_ps(m1, _mm512_loadu_ps(z + v + 16));
        }
        for (; v < V; v += 16) {
            __mmask16 k = V - v >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (V - v)) - 1u);
            m0 = _mm512_mask_max_ps(m0, k, m0, _mm512_maskz_loadu_ps(k, z + v));
        }
        return _mm512_reduce_max_ps(_mm512_max_ps(m0, m1));
    }
    /* sum of exp(z - m), z overwritten with the exps when store; lanes summed in float over
       the row, then in double */
    __attribute__((target("avx512f")))
    static double rk_exp_sum512(int V, float* z, float m, int store) {
        __m512 mv = _mm512_set1_ps(m), s0 = _mm512_setzero_ps(), s1 = s0;
        int v = 0;
        for (; v + 32 <= V; v += 32) {
            __m512 e0 = rk_exp512(_mm512_sub_ps(_mm512_loadu_ps(z + v), mv));
            __m512 e1 = rk_exp512(_mm512_sub_ps(_mm512_loadu_ps(z + v + 16), mv));
            if (store) { _mm512_storeu_ps(z + v, e0); _mm512_storeu_ps(z + v + 16, e1); }
            s0 = _mm512_add_ps(s0, e0);
            s1 = _mm512_add_ps(s1, e1);
        }
        for (; v < V; v += 16) {
            __mmask16 k = V - v >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (V - v)) - 1u);
            __m512 e = rk_exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, z + v), mv));
            if (store) _mm512_mask_storeu_ps(z + v, k, e);
            s0 = _mm512_mask_add_ps(s0, k, s0, e);
        }
        float lanes[16];
        _mm512_storeu_ps(lanes, _mm512_add_ps(s0, s1));
        double s = 0.0;
        for (int i = 0; i < 16; i++) s += lanes[i];
        return s;
    }
    #endif
    static float rk_row_max(int V, const float* z) {
        #ifdef RK_ROWS512
        if (rk_use512()) return rk_row_max512(V, z);
        #endif
        float m = z[0];
        for (int v = 1; v < V; v++) m = z[v] > m ? z[v] : m;
        return m;
    }
    /* z <- exp(z - m); returns the sum (accumulated in 8 float lanes, then in double) */
    RK_CLONES
    static double rk_exp_shift_sum(int V, float* z, float m) {
        #ifdef RK_ROWS512
        if (rk_use512()) return rk_exp_sum512(V, z, m, 1);
        #endif
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
        #ifdef RK_ROWS512
        if (rk_use512()) return rk_exp_sum512(V, (float*)z, m, 0);
        #endif
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
    /* Columns 16 q0 .. 16 q1 - 1 of B (q counts half panels, the unit of work of a thread),
       B[k, n] = b[n * ldb + k] when trans (a weight [N, K]), else b[k * ldb + n] */
    #define RK_NH 16
    #if defined(__GNUC__) && defined(__x86_64__)
    #include <immintrin.h>
    #define RK_HAVE_AVX512_KERNEL 1
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
    static void rk_pack_b(int K, int N, const float* b, int ldb, int trans, float* pb, int q0,
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
           most 768, of nearly equal size: each block beyond the first is one more pass over C,
           which rarely fits the caches (K = 650 in one block rather than 512 + 138: medium
           LSTM layer fwd+bwd 71 -> 66 ms; large, K = 1500 in 2 x 750 not 3 x 512: 466 -> 413) */
        const int MC = 120, KCMAX = 768;
        const int nkb = K > KCMAX ? (K + KCMAX - 1) / KCMAX : 1;
        const int KC = (K + nkb - 1) / nkb;
        for (int k0 = 0; k0 < K; k0 += KC) {
            int kc = K - k0 < KC ? K - k0 : KC;
            float bt = k0 == 0 ? beta : 1.0f;
            const float* bs = k0 == 0 ? bias : NULL;
            for (int m0 = 0; m0 < M; m0 += MC) {
                int m1 = M - m0 < MC ? M : m0 + MC;
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
                        const float* am = a + (size_t)m * rsa + (size_t)k0 * csa;
                        float* cm = c + (size_t)m * ldc + (size_t)q * RK_NH;
                        m += mr;
                        const float* bq = bs ? bs + (size_t)q * RK_NH : NULL;
                        #define RK_UK(MR) (wide ? rk_uk512(MR, 1, kc, am, rsa, csa, bp, cm, ldc, bt, nr, bq) \
                                                : rk_uk512(MR, 0, kc, am, rsa, csa, bp, cm, ldc, bt, nr, bq))
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
    /* y[N] = W[N, K] · x[K] (+ y when accumulate), W row-major with row stride ldw: the single
       step's product for one stream, streaming W once, unpacked. R = 4 rows at a time (1 for
       the last rows), each with two accumulators (chunks of 16 alternate between them), then one
       horizontal sum: every row is computed by the same sequence of operations wherever it
       falls, so splitting the rows between threads changes no result. */
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
    __attribute__((target("avx512f"))) static inline __attribute__((always_inline))
    void rk_gemv_rows(const int R, int K, const float* w, int ldw, const float* x, float* y,
                      int accumulate) {
        __m512 a[4], b[4];
        #pragma GCC unroll 4
        for (int r = 0; r < R; r++) { a[r] = _mm512_setzero_ps(); b[r] = _mm512_setzero_ps(); }
        rk_gemv_acc(R, K, w, ldw, x, a, b);
        #pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            float v = _mm512_reduce_add_ps(_mm512_add_ps(a[r], b[r]));
            y[r] = accumulate ? y[r] + v : v;
        }
    }
    __attribute__((target("avx512f")))
    static void rk_gemv512(int N, int K, const float* w, int ldw, const float* x, float* y,
                           int accumulate) {
        int n = 0;
        for (; n + 4 <= N; n += 4) rk_gemv_rows(4, K, w + (size_t)n * ldw, ldw, x, y + n, accumulate);
        for (; n < N; n++) rk_gemv_rows(1, K, w + (size_t)n * ldw, ldw, x, y + n, accumulate);
    }
    /* y[N] = W1[N, K1] · x1 + W2[N, K2] · x2 + (b1 + b2): a recurrent step's pre-activations
       for one stream in one pass over both weights (one horizontal sum per row, not two) */
    __attribute__((target("avx512f"))) static inline __attribute__((always_inline))
    void rk_gemv2_rows(const int R, int K1, const float* w1, const float* x1, int K2,
                       const float* w2, const float* x2, const float* b1, const float* b2,
                       float* y) {
        __m512 a[4], b[4];
        #pragma GCC unroll 4
        for (int r = 0; r < R; r++) { a[r] = _mm512_setzero_ps(); b[r] = _mm512_setzero_ps(); }
        rk_gemv_acc(R, K1, w1, K1, x1, a, b);
        rk_gemv_acc(R, K2, w2, K2, x2, a, b);
        #pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            y[r] = _mm512_reduce_add_ps(_mm512_add_ps(a[r], b[r])) + (b1[r] + b2[r]);
    }
    __attribute__((target("avx512f")))
    static void rk_gemv2_512(int N, int K1, const float* w1, const float* x1, int K2,
                             const float* w2, const float* x2, const float* b1,
                             const float* b2, float* y) {
        int n = 0;
        for (; n + 4 <= N; n += 4)
            rk_gemv2_rows(4, K1, w1 + (size_t)n * K1, x1, K2, w2 + (size_t)n * K2, x2, b1 + n,
                          b2 + n, y + n);
        for (; n < N; n++)
            rk_gemv2_rows(1, K1, w1 + (size_t)n * K1, x1, K2, w2 + (size_t)n * K2, x2, b1 + n,
                          b2 + n, y + n);
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
    static int rk_cpu_has_avx512(void) { return rk_use512(); }  /* the one CPU check (softmax rows) */
    #else
    #define RK_HAVE_AVX512_KERNEL 0
    static void rk_pack_b(int K, int N, const float* b, int ldb, int trans, float* pb, int q0,
                          int q1) {}
    static void rk_gemm512(int M, int N, int K, const float* a, size_t rsa, size_t csa,
                           const float* pb, float beta, float* c, int ldc, int q0, int q1,
                           const float* bias) {}
    static int rk_cpu_has_avx512(void) { return 0; }
    static void rk_gemv512(int N, int K, const float* w, int ldw, const float* x, float* y,
                           int accumulate) {}
    static void rk_gemv2_512(int N, int K1, const float* w1, const float* x1, int K2,
                             const float* w2, const float* x2, const float* b1,
                             const float* b2, float* y) {}
    static void rk_dot_gemm512(int B, int N, int K, const float* x, int ldx, const float* w,
                               int ldw, float* y, int ldy, int accumulate) {}
    #endif

    /* ---- a small thread pool ----------------------------------------------------------------
       rk_pool_run(nt, fn, arg) runs fn(tid, nt, arg) on the calling thread (tid 0) and nt-1
       persistent workers; rk_barrier(nt) inside fn waits for all nt. Every wait spins briefly,
       then yields, then sleeps on a futex: fast hand-offs when both cores are free, no cores
       burnt when the machine is shared (spin-waiting OpenMP ran 18x slower then). One job
       at a time: a call that finds the pool busy runs its job alone (nt = 1), with the same
       result, since every kernel splits its work so that each number is computed by the same
       instructions whatever the thread count. */
    #include <pthread.h>
    #include <sched.h>
    #include <stdatomic.h>
    #include <limits.h>
    #if defined(__linux__)
    #include <linux/futex.h>
    #include <sys/syscall.h>
    #include <unistd.h>
    static void rk_futex_wait(atomic_int* addr, int old) { syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, old, NULL, NULL, 0); }
    static void rk_futex_wake(atomic_int* addr) { syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0); }
    #else
    static void rk_futex_wait(atomic_int* addr, int old) { (void)addr; (void)old; sched_yield(); }
    static void rk_futex_wake(atomic_int* addr) { (void)addr; }
    #endif
    #if defined(__x86_64__) || defined(__i386__)
    #include <immintrin.h>
    #define rk_pause() _mm_pause()
    #else
    #define rk_pause() ((void)0)
    #endif
    #define RK_MAX_THREADS 64
    #define RK_SPIN 256      /* pause instructions: a few microseconds */
    #define RK_YIELDS 1024   /* sched_yield calls: some hundreds of microseconds on an idle core,
                                so a worker is still awake for the next step of a generation
                                loop (the output layer and sampling between two steps take
                                ~100 us; waking a sleeping worker cost ~40 us here) */
    static struct {
        pthread_mutex_t lock;
        int workers;                     /* worker threads started (tid 1 .. workers) */
        atomic_int job;                  /* bumped to start a job */
        atomic_int done;                 /* workers finished with the job */
        atomic_int sleepers;             /* threads asleep on a futex */
        atomic_int bar_count, bar_gen;   /* the barrier */
        void (*fn)(int, int, void*);
        void* arg;
        int nt;
        int first_job[RK_MAX_THREADS];   /* the job counter when worker tid was started */
    } rk_pool = {PTHREAD_MUTEX_INITIALIZER};
    static void rk_wait_change(atomic_int* addr, int old) {
        for (int i = 0; i < RK_SPIN; i++) {
            if (atomic_load(addr) != old) return;
            rk_pause();
        }
        /* then yield: when another process holds the other core and both our threads share
           one, the thread we wait for runs at once instead of after our time slice */
        for (int i = 0; i < RK_YIELDS; i++) {
            if (atomic_load(addr) != old) return;
            sched_yield();
        }
        atomic_fetch_add(&rk_pool.sleepers, 1);
        while (atomic_load(addr) == old) rk_futex_wait(addr, old);
        atomic_fetch_sub(&rk_pool.sleepers, 1);
    }
    static void rk_wake(atomic_int* addr) {
        if (atomic_load(&rk_pool.sleepers) > 0) rk_futex_wake(addr);
    }
    static void rk_barrier(int nt) {
        if (nt <= 1) return;
        int gen = atomic_load(&rk_pool.bar_gen);
        if (atomic_fetch_add(&rk_pool.bar_count, 1) == nt - 1) {
            atomic_store(&rk_pool.bar_count, 0);
            atomic_fetch_add(&rk_pool.bar_gen, 1);
            rk_wake(&rk_pool.bar_gen);
        } else {
            rk_wait_change(&rk_pool.bar_gen, gen);
        }
    }
    static void* rk_worker(void* p) {
        int tid = (int)(intptr_t)p;
        int seen = rk_pool.first_job[tid];   /* so that a late start still sees its first job */
        for (;;) {
            rk_wait_change(&rk_pool.job, seen);
            seen = atomic_load(&rk_pool.job);
            if (tid < rk_pool.nt) {
                rk_pool.fn(tid, rk_pool.nt, rk_pool.arg);
                atomic_fetch_add(&rk_pool.done, 1);
                rk_wake(&rk_pool.done);
            }
        }
        return NULL;
    }
    /* a child made by fork() has none of the parent's workers: start afresh */
    static void rk_pool_after_fork_child(void) {
        pthread_mutex_init(&rk_pool.lock, NULL);
        rk_pool.workers = 0;
        atomic_store(&rk_pool.job, 0);
        atomic_store(&rk_pool.done, 0);
        atomic_store(&rk_pool.sleepers, 0);
        atomic_store(&rk_pool.bar_count, 0);
        atomic_store(&rk_pool.bar_gen, 0);
    }
    static pthread_once_t rk_pool_once = PTHREAD_ONCE_INIT;
    static void rk_pool_init(void) { pthread_atfork(NULL, NULL, rk_pool_after_fork_child); }
    /* returns the number of threads that ran the job */
    static int rk_pool_run(int nt, void (*fn)(int, int, void*), void* arg) {
        if (nt > RK_MAX_THREADS) nt = RK_MAX_THREADS;
        if (nt > 1) pthread_once(&rk_pool_once, rk_pool_init);
        if (nt <= 1 || pthread_mutex_trylock(&rk_pool.lock) != 0) {
            fn(0, 1, arg);
            return 1;
        }
        while (rk_pool.workers < nt - 1) {
            pthread_t th;
            pthread_attr_t at;
            pthread_attr_init(&at);
            pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
            rk_pool.first_job[rk_pool.workers + 1] = atomic_load(&rk_pool.job);
            int ok = pthread_create(&th, &at, rk_worker, (void*)(intptr_t)(rk_pool.workers + 1)) == 0;
            pthread_attr_destroy(&at);
            if (!ok) break;
            rk_pool.workers++;
        }
        if (nt > rk_pool.workers + 1) nt = rk_pool.workers + 1;
        rk_pool.fn = fn; rk_pool.arg = arg; rk_pool.nt = nt;
        atomic_store(&rk_pool.done, 0);
        atomic_store(&rk_pool.bar_count, 0);
        atomic_fetch_add(&rk_pool.job, 1);     /* publishes fn, arg, nt (sequentially consistent) */
        rk_wake(&rk_pool.job);
        fn(0, nt, arg);
        int d;
        while ((d = atomic_load(&rk_pool.done)) != nt - 1) rk_wait_change(&rk_pool.done, d);
        pthread_mutex_unlock(&rk_pool.lock);
        return nt;
    }
    /* an even split of n units: this thread's [lo, hi) */
    static inline void rk_split(int n, int tid, int nt, int* lo, int* hi) {
        *lo = (int)((long long)n * tid / nt);
        *hi = (int)((long long)n * (tid + 1) / nt);
    }
    """
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
    float rk_row_max(int V, const float* z) noexcept nogil
    double rk_exp_shift_sum(int V, float* z, float m) noexcept nogil
    double rk_sum_exp_shift(int V, const float* z, float m) noexcept nogil
    void rk_add_scalar(int n, float* z, float s) noexcept nogil
    void rk_scale(int n, float* z, float s) noexcept nogil
    void rk_axpy1(int n, const float* x, float* y) noexcept nogil
    size_t rk_packed_size(int K, int N) noexcept nogil
    void rk_pack_b(int K, int N, const float* b, int ldb, int trans, float* pb, int q0,
                   int q1) noexcept nogil
    ctypedef void (*job_fn)(int, int, void*) noexcept nogil
    int rk_pool_run(int nt, job_fn fn, void* arg) noexcept nogil
    void rk_barrier(int nt) noexcept nogil
    void rk_split(int n, int tid, int nt, int* lo, int* hi) noexcept nogil
    void rk_gemm512(int M, int N, int K, const float* a, size_t rsa, size_t csa, const float* pb,
                    float beta, float* c, int ldc, int q0, int q1, const float* bias) noexcept nogil
    int rk_cpu_has_avx512() noexcept nogil
    void rk_gemv512(int N, int K, const float* w, int ldw, const float* x, float* y,
                    int accumulate) noexcept nogil
    void rk_gemv2_512(int N, int K1, const float* w1, const float* x1, int K2, const float* w2,
                      const float* x2, const float* b1, const float* b2, float* y) noexcept nogil
    void rk_dot_gemm512(int B, int N, int K, const float* x, int ldx, const float* w, int ldw,
                        float* y, int ldy, int accumulate) noexcept nogil
    int RK_HAVE_AVX512_KERNEL
    int RK_NR
    int RK_NH


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


def _check_matrix(name, x):
    if not isinstance(x, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(x).__name__}")
    if x.dtype != np.float32:
        raise ValueError(f"{name} must be float32, got {x.dtype}")
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {x.shape}")
    if not x.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (use np.ascontiguousarray)")


def _product_shape(a, b, c, bint trans_a, bint trans_b):
    _check_matrix("a", a)
    _check_matrix("b", b)
    m = a.shape[1] if trans_a else a.shape[0]
    k = a.shape[0] if trans_a else a.shape[1]
    kb = b.shape[1] if trans_b else b.shape[0]
    n = b.shape[0] if trans_b else b.shape[1]
    if k != kb:
        raise ValueError(f"inner dimensions differ: op(a) is [{m}, {k}], op(b) is [{kb}, {n}]")
    if c is not None:
        _check_matrix("c", c)
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


cdef void matmul_wt(int m, int n, int k, const float* a, const float* w, float beta,
                    float* c) noexcept nogil:
    """C[M, N] = A[M, K] · W[N, K]ᵀ + beta · C (beta 0 or 1): the single steps' products.

    One row (a single stream) goes through gemv, several times faster than a gemm with M = 1:
    ours on the native backend (2x OpenBLAS's AVX2 sgemv here), else BLAS's.
    """
    if m == 1 and native:
        rk_gemv512(n, k, w, k, a, c, beta != 0.0)
    elif m == 1:
        sgemv_rm(False, n, k, 1.0, w, k, a, beta, c)
    else:
        sgemm_rm(False, True, m, n, k, 1.0, a, k, w, k, beta, c, n)


# ---------------------------------------------------------------------------------------------
# The layers' matrix products: the packed AVX-512 kernel, or BLAS
# ---------------------------------------------------------------------------------------------
# On CPUs with AVX-512 the layers' products run on our packed-weight kernel. Measured on the
# per-step shapes (bench/bench_kernels.py), it runs at 2-3x the rate of numpy's and scipy's
# OpenBLAS there, and it does not depend on which kernel OpenBLAS picks at load time
# (OPENBLAS_CORETYPE). Elsewhere the layers call BLAS (scipy's OpenBLAS) single-threaded.
cdef bint native = rk_cpu_has_avx512() != 0
cdef int nthreads = 1
cdef bint step_flip = 0         # single steps alternate the order of their weight blocks


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


def set_num_threads(int n):
    """Threads the layers use (native backend; the BLAS backend runs on one of ours).

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


cdef inline int threads_for(bint nat) noexcept nogil:
    return nthreads if nat else 1


cdef inline int cdiv(int a, int b) noexcept nogil:
    return (a + b - 1) // b


cdef size_t pack_size(int k, int n) noexcept nogil:
    return rk_packed_size(k, n) if native else 1


cdef void pack_part(int tid, int nt, int k, int n, const float* b, int ldb, bint tb,
                    float* pack) noexcept nogil:
    """This thread's share of the half panels of op(B) [K, N] packed (see rk_pack_b)."""
    cdef int p0, p1
    rk_split(cdiv(n, RK_NH), tid, nt, &p0, &p1)
    rk_pack_b(k, n, b, ldb, tb, pack, p0, p1)


cdef void mm_rows(bint nat, int m0, int m1, int n, int k, const float* a, int lda, bint ta,
                  const float* b, int ldb, bint tb, float beta, float* c, int ldc,
                  const float* pack, const float* bias=NULL) noexcept nogil:
    """Rows m0 .. m1-1 of C[M, N] = op(A) · op(B) + beta · C, row-major (as sgemm_rm), plus
    bias [N] in every row when given (then beta must be 0).

    nat: on the packed kernel, with op(B) already packed into `pack`; else on BLAS. Splitting
    the rows between threads changes no result: each row is computed the same way.
    """
    if m1 <= m0 or n == 0:
        return
    cdef const float* am = a + m0 if ta else a + <size_t>m0 * lda
    if nat:
        if ta:
            rk_gemm512(m1 - m0, n, k, am, 1, lda, pack, beta, c + <size_t>m0 * ldc, ldc, 0,
                       cdiv(n, RK_NH), bias)
        else:
            rk_gemm512(m1 - m0, n, k, am, lda, 1, pack, beta, c + <size_t>m0 * ldc, ldc, 0,
                       cdiv(n, RK_NH), bias)
        return
    if bias != NULL:
        fill_rows(m1 - m0, n, c + <size_t>m0 * ldc, bias, NULL)
        beta = 1.0
    if m1 - m0 == 1 and not ta:   # one row: gemv, several times faster than gemm in BLAS
        if tb and native and (beta == 0.0 or beta == 1.0):
            rk_gemv512(n, k, b, ldb, am, c + <size_t>m0 * ldc, beta != 0.0)
        elif tb:
            sgemv_rm(False, n, k, 1.0, b, ldb, am, beta, c + <size_t>m0 * ldc)
        else:
            sgemv_rm(True, k, n, 1.0, b, ldb, am, beta, c + <size_t>m0 * ldc)
    else:
        sgemm_rm(ta, tb, m1 - m0, n, k, 1.0, am, lda, b, ldb, beta, c + <size_t>m0 * ldc, ldc)


cdef void mm(int m, int n, int k, const float* a, int lda, bint ta, const float* b, int ldb,
             bint tb, float beta, float* c, int ldc, float* pack) noexcept nogil:
    """The whole product on the calling thread (pack: pack_size(K, N) floats)."""
    if native:
        rk_pack_b(k, n, b, ldb, tb, pack, 0, cdiv(n, RK_NH))
    mm_rows(native, 0, m, n, k, a, lda, ta, b, ldb, tb, beta, c, ldc, pack)


def matmul(a, b, c=None, *, bint trans_a=False, bint trans_b=False, float beta=0.0):
    """C = op(a) · op(b) + beta · c through the layers' product on the current backend
    (see gemm_backend): the packed-weight kernel or BLAS. For tests and benchmarks."""
    cdef int m, n, k
    m, n, k = _product_shape(a, b, c, trans_a, trans_b)
    if c is None:
        c = np.zeros((m, n), dtype=np.float32)
        beta = 0.0
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
        mm(m, n, k, ap, lda, trans_a, bp, ldb, trans_b, beta, cp, n, pp)
    return c


def _time_step_product(a, w, bint trans_w, int reps):
    """Seconds for `reps` products C = a · op(w) with w packed once beforehand, as the
    recurrent product runs inside the time loop (for benchmarks). a [M, K]; w [N, K] when
    trans_w (a weight in PyTorch's layout), else [K, N]. One thread."""
    import time
    cdef int m, n, k
    m, n, k = _product_shape(a, w, None, False, trans_w)
    c = np.zeros((m, n), np.float32)
    cdef cnp.ndarray pack = np.empty(pack_size(k, n), np.float32)
    cdef float* ap = fptr(a)
    cdef float* wp = fptr(w)
    cdef float* cp = fptr(c)
    cdef float* pp = fptr(pack)
    cdef int ldw = w.shape[1], r
    cdef bint nat = native
    with nogil:
        mm(m, n, k, ap, k, False, wp, ldw, trans_w, 0.0, cp, n, pp)
    t0 = time.perf_counter()
    with nogil:
        for r in range(reps):
            mm_rows(nat, 0, m, n, k, ap, k, False, wp, ldw, trans_w, 0.0, cp, n, pp)
    return time.perf_counter() - t0


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
    """The cache's buffer `name` when it has this shape, else a new one stored there."""
    a = getattr(cache, name, None)
    if a is None or a.shape != shape:
        a = np.empty(shape, dtype)
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
    bint nat, fg
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


cdef void layer_forward_job(int tid, int nt, void* arg) noexcept nogil:
    cdef Layer* L = <Layer*>arg
    cdef int T = L.T, B = L.B, E = L.E, H = L.H, G = L.G, GH = L.G * L.H
    cdef int t, g, r0, r1, u0, u1, j0, j1
    cdef size_t S = <size_t>B * H, GS = <size_t>B * GH
    cdef size_t PH = rk_packed_size(H, H)
    # the input projection of all T steps is one product, before the loop
    rk_split(T * B, tid, nt, &r0, &r1)
    if L.nat:
        pack_part(tid, nt, E, GH, L.w_ih, E, True, L.pack_ih)
        rk_barrier(nt)
    mm_rows(L.nat, r0, r1, GH, E, L.x, E, False, L.w_ih, E, True, 0.0, L.gates, GH, L.pack_ih,
            L.bias)
    # this thread's hidden units: panels u0 .. u1-1, columns j0 .. j1-1
    rk_split(cdiv(H, RK_NH), tid, nt, &u0, &u1)
    j0 = min(u0 * RK_NH, H)
    j1 = min(u1 * RK_NH, H)
    if L.nat:
        for g in range(G):  # W_hh packed once per window, used T times (as oneDNN does)
            rk_pack_b(H, H, L.w_hh + <size_t>g * H * H, H, True, L.pack_hh + g * PH, u0, u1)
    rk_barrier(nt)
    for t in range(T):
        # only the recurrent product stays in the loop: gates_t += h_{t-1} · W_hhᵀ
        if L.nat:
            for g in range(G):
                rk_gemm512(B, H, H, L.hs + t * S, H, 1, L.pack_hh + g * PH, 1.0,
                           L.gates + t * GS + g * H, GH, u0, u1, NULL)
        else:
            matmul_wt(B, GH, H, L.hs + t * S, L.w_hh, 1.0, L.gates + t * GS)
        if L.kind == LSTM:
            if j1 > j0:
                rk_lstm_fwd_cell(B, H, j0, j1, L.gates + t * GS, L.cs + t * S,
                                 L.cs + (t + 1) * S, L.hs + (t + 1) * S, L.peep, L.fg)
        else:
            rk_tanh_rows(B, H, j0, j1, L.hs + (t + 1) * S)
        rk_barrier(nt)


cdef void layer_backward_job(int tid, int nt, void* arg) noexcept nogil:
    cdef Layer* L = <Layer*>arg
    cdef int T = L.T, B = L.B, E = L.E, H = L.H, GH = L.G * L.H
    cdef int t, r, r0, r1, u0, u1, j0, j1
    cdef size_t S = <size_t>B * H, GS = <size_t>B * GH
    rk_split(cdiv(H, RK_NH), tid, nt, &u0, &u1)
    j0 = min(u0 * RK_NH, H)
    j1 = min(u1 * RK_NH, H)
    if L.nat:
        rk_pack_b(GH, H, L.w_hh, H, False, L.pack_hh, u0, u1)
    if L.dpeep != NULL and j1 > j0:
        for r in range(3):
            memset(L.dpeep + r * H + j0, 0, (j1 - j0) * sizeof(float))
    for t in range(T - 1, -1, -1):
        if L.kind == LSTM:
            if j1 > j0:
                rk_lstm_bwd_cell(B, H, j0, j1, L.gates + t * GS, L.cs + t * S, L.cs + (t + 1) * S,
                                 L.dh + t * S, L.dh_rec, L.dc, L.dgates + t * GS, L.peep,
                                 L.dpeep, L.fg)
        else:
            rk_rnn_bwd_cell(B, H, j0, j1, L.hs + (t + 1) * S, L.dh + t * S, L.dh_rec,
                            L.dgates + t * GS)
        rk_barrier(nt)
        # only the recurrent product stays in the loop: dL/dh_{t-1} = dgates_t · W_hh
        if L.nat:
            rk_gemm512(B, H, GH, L.dgates + t * GS, GH, 1, L.pack_hh, 0.0, L.dh_rec, H, u0, u1,
                       NULL)
        else:
            sgemm_rm(False, False, B, H, GH, 1.0, L.dgates + t * GS, GH, L.w_hh, H, 0.0,
                     L.dh_rec, H)
    # the input and weight gradients of all T steps are one product each, after the loop
    rk_barrier(nt)
    if L.nat:
        pack_part(tid, nt, GH, E, L.w_ih, E, False, L.pack_ih)
        pack_part(tid, nt, T * B, E, L.x, E, False, L.pack_x)
        pack_part(tid, nt, T * B, H, L.hs, H, False, L.pack_h)
        rk_barrier(nt)
    rk_split(T * B, tid, nt, &r0, &r1)
    mm_rows(L.nat, r0, r1, E, GH, L.dgates, GH, False, L.w_ih, E, False, 0.0, L.dx, E,
            L.pack_ih)
    rk_split(GH, tid, nt, &r0, &r1)
    mm_rows(L.nat, r0, r1, E, T * B, L.dgates, GH, True, L.x, E, False, 0.0, L.dw_ih, E,
            L.pack_x)
    mm_rows(L.nat, r0, r1, H, T * B, L.dgates, GH, True, L.hs, H, False, 0.0, L.dw_hh, H,
            L.pack_h)
    col_sums(T * B, GH, r0, r1, L.dgates, L.db)


cdef int layer_threads(Layer* L) noexcept nogil:
    # below about a million multiply-adds per step (the tanh RNN at H = 200: 0.8 M) a step's
    # share is a few microseconds, no more than the hand-off at the barrier: one thread
    if not L.nat or <double>L.B * L.G * L.H * L.H < 1048576:
        return 1
    return nthreads


def _layer_forward(kind, cache, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_peep, forget_gate):
    """Checks, buffers and the threaded forward job of an LSTM (kind "lstm") or RNN ("rnn")."""
    cdef int G = 4 if kind == "lstm" else 1
    _f32("x", x, (None, None, None))
    cdef int T = x.shape[0], B = x.shape[1], E = x.shape[2]
    _f32("h0", h0, (B, None))
    cdef int H = h0.shape[1]
    if c0 is not None:
        _f32("c0", c0, (B, H))
    _f32("w_ih", w_ih, (G * H, E))
    _f32("w_hh", w_hh, (G * H, H))
    _f32("b_ih", b_ih, (G * H,))
    _f32("b_hh", b_hh, (G * H,))
    if w_peep is not None:
        _f32("w_peep", w_peep, (3, H))
    if T == 0:
        raise ValueError("x must have at least one time step")
    cache = _reuse(cache, kind)
    cdef Layer L
    memset(&L, 0, sizeof(Layer))
    L.kind, L.T, L.B, L.E, L.H, L.G = (LSTM if G == 4 else RNN), T, B, E, H, G
    L.nat, L.fg = native, bool(forget_gate)
    hs = _buf(cache, "hs", (T + 1, B, H))              # h_0 .. h_T
    hs[0] = h0
    L.hs = fptr(hs)
    if G == 4:
        cs = _buf(cache, "cs", (T + 1, B, H))          # c_0 .. c_T
        cs[0] = c0
        L.cs = fptr(cs)
        L.gates = fptr(_buf(cache, "gates", (T, B, 4 * H)))  # activated i, f, g, o
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
    return cache


def _layer_backward(kind, cache, dh, dhT, dcT):
    if not isinstance(cache, Cache) or cache.kind != kind or not hasattr(cache, "shape"):
        raise ValueError(f"cache must be the cache returned by {kind}_forward")
    cdef int G = 4 if kind == "lstm" else 1
    cdef int T, B, E, H
    T, B, E, H = cache.shape
    _f32("dh", dh, (T, B, H))
    _f32("dhT", dhT, (B, H))
    if dcT is not None:
        _f32("dcT", dcT, (B, H))
    cdef Layer L
    memset(&L, 0, sizeof(Layer))
    L.kind, L.T, L.B, L.E, L.H, L.G = (LSTM if G == 4 else RNN), T, B, E, H, G
    L.nat, L.fg = native, cache.forget_gate
    x, w_ih, w_hh, w_peep = cache.x, cache.w_ih, cache.w_hh, cache.w_peep
    L.x, L.w_ih, L.w_hh = fptr(x), fptr(w_ih), fptr(w_hh)
    L.peep = fptr(w_peep) if w_peep is not None else NULL
    L.hs = fptr(cache.hs)
    if G == 4:
        L.cs = fptr(cache.cs)
        L.gates = fptr(cache.gates)
    dgates = _buf(cache, "dgates", (T, B, G * H))
    dx = _buf(cache, "dx", (T, B, E))
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
    L.pack_x = fptr(_packbuf(cache, "pack_x", pack_size(T * B, E)))
    L.pack_h = fptr(_packbuf(cache, "pack_h", pack_size(T * B, H)))
    with nogil:
        rk_pool_run(layer_threads(&L), layer_backward_job, &L)
    db_hh[...] = db_ih
    return dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dw_peep


def lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_peep=None, forget_gate=True, cache=None):
    """One LSTM layer over a window (see reference.lstm_forward): (h, hT, cT, cache).

    x [T, B, E], h0 / c0 [B, H], w_ih [4H, E], w_hh [4H, H], b_ih / b_hh [4H], w_peep [3, H]
    or None; all float32 and C-contiguous. h [T, B, H] is a view into the cache. `cache`, from
    an earlier call with the same shapes, is reused (no allocation; its arrays are overwritten).
    """
    if c0 is None:
        raise ValueError("c0 must be a numpy array, got NoneType")
    cache = _layer_forward("lstm", cache, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_peep, forget_gate)
    hs, cs = cache.hs, cache.cs
    T = x.shape[0]
    return hs[1:], hs[T].copy(), cs[T].copy(), cache


def lstm_backward(dh, dhT, dcT, cache):
    """Gradients of an LSTM window (see reference.lstm_backward):
    (dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dw_peep); dw_peep is None without peepholes.

    dh [T, B, H], dhT / dcT [B, H]. The results live in the cache's buffers.
    """
    if dcT is None:
        raise ValueError("dcT must be a numpy array, got NoneType")
    return _layer_backward("lstm", cache, dh, dhT, dcT)


def rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, cache=None):
    """One tanh-RNN layer over a window (see reference.rnn_forward): (h, hT, cache).

    x [T, B, E], h0 [B, H], w_ih [H, E], w_hh [H, H], b_ih / b_hh [H]; `cache` as lstm_forward.
    """
    cache = _layer_forward("rnn", cache, x, h0, None, w_ih, w_hh, b_ih, b_hh, None, True)
    hs = cache.hs
    return hs[1:], hs[x.shape[0]].copy(), cache


def rnn_backward(dh, dhT, cache):
    """Gradients of a tanh-RNN window (see reference.rnn_backward):
    (dx, dh0, dw_ih, dw_hh, db_ih, db_hh)."""
    dx, dh0, _, dw_ih, dw_hh, db_ih, db_hh, _ = _layer_backward("rnn", cache, dh, dhT, None)
    return dx, dh0, dw_ih, dw_hh, db_ih, db_hh


# ---------------------------------------------------------------------------------------------
# Single steps (generation, scoring): no allocation with workspaces
# ---------------------------------------------------------------------------------------------
# A step streams the weights once and is bound by memory bandwidth. On the native backend it
# runs on our gemv (one stream: W_ih and W_hh in one pass, biases added) or dot-product kernel
# (a few streams), both reading the weights unpacked, split over threads by hidden units like
# the windows (one barrier: every thread has read h before any writes it); else on BLAS.
# Successive steps visit the gates in opposite orders, so the step starts on the weights the
# last one read most recently, still in cache (H = 200, one thread: 13.7 -> 12.3 us). Each
# output is computed the same way in either order.
ctypedef struct Step:
    int kind, B, E, H, G
    bint nat, fg, flip
    const float* x                     # [B, E]
    const float* w_ih                  # [G*H, E]
    const float* w_hh                  # [G*H, H]
    const float* b_ih                  # [G*H]
    const float* b_hh                  # [G*H]
    const float* peep                  # [3, H] or NULL
    float* gates                       # [B, G*H] workspace
    float* h                           # [B, H] in place
    float* c                           # [B, H] in place (LSTM)


cdef void step_job(int tid, int nt, void* arg) noexcept nogil:
    cdef Step* S = <Step*>arg
    cdef int B = S.B, E = S.E, H = S.H, GH = S.G * S.H
    cdef int b, g, gi, r, j, u0, u1, j0, j1
    cdef float* gb
    rk_split(cdiv(H, RK_NH), tid, nt, &u0, &u1)
    j0 = min(u0 * RK_NH, H)
    j1 = min(u1 * RK_NH, H)
    if S.nat:
        for gi in range(S.G if j1 > j0 else 0):
            g = S.G - 1 - gi if S.flip else gi
            r = g * H + j0
            if B == 1:   # one stream: both weights streamed once, biases added, one pass
                rk_gemv2_512(j1 - j0, E, S.w_ih + <size_t>r * E, S.x, H, S.w_hh + <size_t>r * H,
                             S.h, S.b_ih + r, S.b_hh + r, S.gates + r)
            else:
                rk_dot_gemm512(B, j1 - j0, E, S.x, E, S.w_ih + <size_t>r * E, E, S.gates + r,
                               GH, 0)
                rk_dot_gemm512(B, j1 - j0, H, S.h, H, S.w_hh + <size_t>r * H, H, S.gates + r,
                               GH, 1)
                for b in range(B):
                    gb = S.gates + <size_t>b * GH
                    for j in range(r, r + j1 - j0):
                        gb[j] += S.b_ih[j] + S.b_hh[j]
    else:
        fill_rows(B, GH, S.gates, S.b_ih, S.b_hh)
        matmul_wt(B, GH, E, S.x, S.w_ih, 1.0, S.gates)
        matmul_wt(B, GH, H, S.h, S.w_hh, 1.0, S.gates)
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
    if not S.nat or <double>S.G * S.H * (S.E + S.H) * S.B < 131072:
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


def _check_step(x, h, c, w_ih, w_hh, b_ih, b_hh, w_peep, gates, int G, gates_name):
    """The full checks of a step's inputs (with their error messages)."""
    _f32("x", x, (None, None))
    cdef int B = x.shape[0], E = x.shape[1]
    _f32("h", h, (B, None))
    cdef int H = h.shape[1]
    if c is not None:
        _f32("c", c, (B, H))
    _f32("w_ih", w_ih, (G * H, E))
    _f32("w_hh", w_hh, (G * H, H))
    _f32("b_ih", b_ih, (G * H,))
    _f32("b_hh", b_hh, (G * H,))
    if w_peep is not None:
        _f32("w_peep", w_peep, (3, H))
    if gates is not None:
        _f32(gates_name, gates, (B, G * H))


def lstm_step(x, h, c, w_ih, w_hh, b_ih, b_hh, w_peep=None, forget_gate=True, gates=None):
    """One LSTM step for B streams, updating h [B, H] and c [B, H] in place; returns (h, c).

    x [B, E]. gates, a [B, 4H] float32 workspace, makes the call allocation-free.
    """
    cdef Py_ssize_t B = dim_or(x, 2, 0), E = dim_or(x, 2, 1), H = dim_or(h, 2, 1)
    if not (B >= 0 and H >= 0 and is_f32(x, B, E) and is_f32(h, B, H) and is_f32(c, B, H)
            and is_f32(w_ih, 4 * H, E) and is_f32(w_hh, 4 * H, H) and is_f32(b_ih, 4 * H, -1)
            and is_f32(b_hh, 4 * H, -1) and (w_peep is None or is_f32(w_peep, 3, H))
            and (gates is None or is_f32(gates, B, 4 * H))):
        _check_step(x, h, c, w_ih, w_hh, b_ih, b_hh, w_peep, gates, 4, "gates")
    if gates is None:
        gates = np.empty((B, 4 * H), np.float32)
    cdef Step S
    S.kind, S.B, S.E, S.H, S.G = LSTM, B, E, H, 4
    S.nat, S.fg = native, bool(forget_gate)
    global step_flip
    step_flip = S.flip = not step_flip
    S.x, S.w_ih, S.w_hh, S.b_ih, S.b_hh = fptr(x), fptr(w_ih), fptr(w_hh), fptr(b_ih), fptr(b_hh)
    S.peep = fptr(w_peep) if w_peep is not None else NULL
    S.gates, S.h, S.c = fptr(gates), fptr(h), fptr(c)
    with nogil:
        rk_pool_run(step_threads(&S), step_job, &S)
    return h, c


def rnn_step(x, h, w_ih, w_hh, b_ih, b_hh, work=None):
    """One tanh-RNN step for B streams, updating h [B, H] in place; returns h.

    x [B, E]; work, a [B, H] float32 workspace, makes the call allocation-free.
    """
    cdef Py_ssize_t B = dim_or(x, 2, 0), E = dim_or(x, 2, 1), H = dim_or(h, 2, 1)
    if not (B >= 0 and H >= 0 and is_f32(x, B, E) and is_f32(h, B, H)
            and is_f32(w_ih, H, E) and is_f32(w_hh, H, H) and is_f32(b_ih, H, -1)
            and is_f32(b_hh, H, -1) and (work is None or is_f32(work, B, H))):
        _check_step(x, h, None, w_ih, w_hh, b_ih, b_hh, None, work, 1, "work")
    if work is None:
        work = np.empty((B, H), np.float32)
    cdef Step S
    memset(&S, 0, sizeof(Step))
    S.kind, S.B, S.E, S.H, S.G = RNN, B, E, H, 1
    S.nat = native
    global step_flip
    step_flip = S.flip = not step_flip
    S.x, S.w_ih, S.w_hh, S.b_ih, S.b_hh = fptr(x), fptr(w_ih), fptr(w_hh), fptr(b_ih), fptr(b_hh)
    S.gates, S.h = fptr(work), fptr(h)
    with nogil:
        rk_pool_run(step_threads(&S), step_job, &S)
    return h


# ---------------------------------------------------------------------------------------------
# Output layer: logits, softmax cross-entropy, log-softmax
# ---------------------------------------------------------------------------------------------
ctypedef struct Softmax:
    int N, H, V
    bint nat, log_probs                # log_probs: write log-probabilities (log_softmax)
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


cdef void softmax_forward_job(int tid, int nt, void* arg) noexcept nogil:
    cdef Softmax* S = <Softmax*>arg
    cdef int N = S.N, H = S.H, V = S.V, n, r0, r1
    cdef float m, zt
    cdef double s
    cdef float* zr
    if S.nat:
        pack_part(tid, nt, H, V, S.w, H, True, S.pack_w)
        rk_barrier(nt)
    rk_split(N, tid, nt, &r0, &r1)
    mm_rows(S.nat, r0, r1, V, H, S.h, H, False, S.w, H, True, 0.0, S.z, V, S.pack_w, S.b)
    for n in range(r0, r1):
        zr = S.z + <size_t>n * V
        m = rk_row_max(V, zr)                          # row-wise max: no overflow in exp
        if S.log_probs:
            s = rk_sum_exp_shift(V, zr, m)
            rk_add_scalar(V, zr, <float>(-m - log(s)))
        else:
            zt = zr[S.targets[n]] - m
            s = rk_exp_shift_sum(V, zr, m)             # one pass: exp and its sum
            S.inv[n] = <float>(1.0 / s)
            S.row_loss[n] = log(s) - zt


cdef void softmax_backward_job(int tid, int nt, void* arg) noexcept nogil:
    cdef Softmax* S = <Softmax*>arg
    cdef int N = S.N, H = S.H, V = S.V, n, r0, r1
    cdef float d = S.dloss
    rk_split(N, tid, nt, &r0, &r1)
    for n in range(r0, r1):
        # d loss / d logits = softmax - onehot, in place
        rk_scale(V, S.z + <size_t>n * V, S.inv[n] * d)
        S.z[<size_t>n * V + S.targets[n]] -= d
    if S.nat:
        pack_part(tid, nt, V, H, S.w, H, False, S.pack_w)
        pack_part(tid, nt, N, H, S.h, H, False, S.pack_h)
    rk_barrier(nt)
    mm_rows(S.nat, r0, r1, H, V, S.z, V, False, S.w, H, False, 0.0, S.dh, H, S.pack_w)
    rk_split(V, tid, nt, &r0, &r1)
    mm_rows(S.nat, r0, r1, H, N, S.z, V, True, S.h, H, False, 0.0, S.dw, H, S.pack_h)
    col_sums(N, V, r0, r1, S.z, S.db)


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
    S.N, S.H, S.V, S.nat, S.log_probs = N, H, V, native, False
    S.h, S.w, S.b = fptr(h), fptr(w), fptr(b)
    S.targets = <const int64_t*>cnp.PyArray_DATA(tg)
    S.z = fptr(_buf(cache, "z", (N, V)))                 # logits, then exp(z - max)
    S.inv = fptr(_buf(cache, "inv", (N,)))               # 1 / sum exp(z - max) per row
    row_loss = _buf(cache, "row_loss", (N,), np.float64)
    S.row_loss = <double*>cnp.PyArray_DATA(row_loss)
    S.pack_w = fptr(_packbuf(cache, "pack_w", max(pack_size(H, V), pack_size(V, H))))
    with nogil:
        rk_pool_run(threads_for(S.nat), softmax_forward_job, &S)
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
    S.N, S.H, S.V, S.nat, S.dloss = N, H, V, native, dloss
    S.h, S.w, S.z, S.inv = fptr(cache.h), fptr(cache.w), fptr(z), fptr(cache.inv)
    S.targets = <const int64_t*>cnp.PyArray_DATA(cache.targets)
    dh = _buf(cache, "dh", (N, H))
    dw = _buf(cache, "dw", (V, H))
    db = _buf(cache, "db", (V,))
    S.dh, S.dw, S.db = fptr(dh), fptr(dw), fptr(db)
    S.pack_w = fptr(_packbuf(cache, "pack_w", max(pack_size(H, V), pack_size(V, H))))
    S.pack_h = fptr(_packbuf(cache, "pack_h", pack_size(N, H)))
    with nogil:
        rk_pool_run(threads_for(S.nat), softmax_backward_job, &S)
    return dh, dw, db


def log_softmax(h, w, b, out=None):
    """Natural-log probabilities [N, V] of softmax(h wᵀ + b); h [N, H], w [V, H], b [V].

    out, an [N, V] float32 array, makes the call allocation-free when N is small (a few
    streams: BLAS gemv/gemm, no packing); many rows go through the packed kernel and threads.
    """
    _decoder_args(h, w, b)
    cdef int N = h.shape[0], H = h.shape[1], V = w.shape[0]
    if out is None:
        out = np.empty((N, V), np.float32)
    else:
        _f32("out", out, (N, V))
    cdef Softmax S
    memset(&S, 0, sizeof(Softmax))
    # packing w costs about one pass over it: worth it from a few rows on
    S.N, S.H, S.V, S.nat, S.log_probs = N, H, V, native and N >= 8, True
    S.h, S.w, S.b, S.z = fptr(h), fptr(w), fptr(b), fptr(out)
    pack = np.empty(rk_packed_size(H, V), np.float32) if S.nat else None
    S.pack_w = fptr(pack) if S.nat else NULL
    with nogil:
        rk_pool_run(threads_for(S.nat), softmax_forward_job, &S)
    return out


# ---------------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------------
cdef enum:
    SAMPLE_CHUNK = 256


cdef int64_t sample_row(int V, const float* lp, double u, double* chunk_sums) noexcept nogil:
    """The smallest id i with sum_{j<=i} exp(lp_j) > u · sum_j exp(lp_j) (inverse CDF).

    One vectorised pass sums exp over chunks of 256 ids; only the chunk where the cumulative sum
    crosses the threshold is walked id by id.
    """
    cdef int nchunks = cdiv(V, SAMPLE_CHUNK), ch, v, v0, v1
    cdef double total = 0.0, target, acc
    for ch in range(nchunks):
        v0 = ch * SAMPLE_CHUNK
        v1 = min(V, v0 + SAMPLE_CHUNK)
        chunk_sums[ch] = rk_sum_exp_shift(v1 - v0, lp + v0, 0.0)
        total += chunk_sums[ch]
    target = u * total
    acc = 0.0
    for ch in range(nchunks):
        if acc + chunk_sums[ch] > target or ch == nchunks - 1:
            v0 = ch * SAMPLE_CHUNK
            v1 = min(V, v0 + SAMPLE_CHUNK)
            for v in range(v0, v1):
                acc += exp(lp[v])
                if acc > target:
                    return v
            return v1 - 1      # rounding left the threshold past the last id
        acc += chunk_sums[ch]
    return V - 1


def sample(log_probs, uniforms):
    """One id per row of log_probs [N, V] (natural log, e.g. from log_softmax; need not be
    normalised) by inverting the cumulative distribution at uniforms [N] (floats in [0, 1)).

    Returns int64 ids [N]. The same uniforms give the same ids: seed the generator for
    reproducible samples.
    """
    _f32("log_probs", log_probs, (None, None))
    cdef int N = log_probs.shape[0], V = log_probs.shape[1]
    if V == 0:
        raise ValueError("log_probs must have at least one column")
    u = np.ascontiguousarray(uniforms, dtype=np.float64)
    if u.shape != (N,):
        raise ValueError(f"uniforms must have shape [{N}], got {list(np.shape(uniforms))}")
    if N and (u.min() < 0.0 or u.max() >= 1.0):
        raise ValueError("uniforms must be in [0, 1)")
    out = np.empty(N, np.int64)
    sums = np.empty(cdiv(V, SAMPLE_CHUNK), np.float64)
    cdef const float* lp = fptr(log_probs)
    cdef const double* up = <const double*>cnp.PyArray_DATA(u)
    cdef int64_t* op = <int64_t*>cnp.PyArray_DATA(out)
    cdef double* sp = <double*>cnp.PyArray_DATA(sums)
    cdef int n
    with nogil:
        for n in range(N):
            op[n] = sample_row(V, lp + <size_t>n * V, up[n], sp)
    return out


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

