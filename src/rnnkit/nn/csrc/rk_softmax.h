/* rnnkit kernels: softmax rows (max, exp and its sum) and small vector passes. */
#ifndef RK_SOFTMAX_H
#define RK_SOFTMAX_H

#include <math.h>
#include <stdint.h>
#include "rk_math.h"

/* ---- softmax rows ----------------------------------------------------------------------- */
/* Explicit 16-lane (AVX-512) and 8-lane (AVX2) versions, chosen by rk_isa_table (rk_isa.h):
   the compiler's own vectorisation of the plain loops below used 8 lanes for exp and none for
   the max: 3.1 ns per logit for the softmax of a 33k vocabulary, 0.3 with AVX-512 */
#ifdef RK_X86
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
/* the same on 8 lanes (AVX2 and FMA) */
__attribute__((target("avx2,fma")))
static float rk_row_max256(int V, const float* z) {
    __m256 m0 = _mm256_set1_ps(-INFINITY), m1 = m0;
    int v = 0;
    for (; v + 16 <= V; v += 16) {
        m0 = _mm256_max_ps(m0, _mm256_loadu_ps(z + v));
        m1 = _mm256_max_ps(m1, _mm256_loadu_ps(z + v + 8));
    }
    m0 = _mm256_max_ps(m0, m1);
    float lanes[8], m;
    _mm256_storeu_ps(lanes, m0);
    m = lanes[0];
    for (int i = 1; i < 8; i++) m = lanes[i] > m ? lanes[i] : m;
    for (; v < V; v++) m = z[v] > m ? z[v] : m;
    return m;
}
__attribute__((target("avx2,fma")))
static double rk_exp_sum256(int V, float* z, float m, int store) {
    __m256 mv = _mm256_set1_ps(m), s0 = _mm256_setzero_ps(), s1 = s0;
    int v = 0;
    for (; v + 16 <= V; v += 16) {
        __m256 e0 = rk_exp256(_mm256_sub_ps(_mm256_loadu_ps(z + v), mv));
        __m256 e1 = rk_exp256(_mm256_sub_ps(_mm256_loadu_ps(z + v + 8), mv));
        if (store) { _mm256_storeu_ps(z + v, e0); _mm256_storeu_ps(z + v + 8, e1); }
        s0 = _mm256_add_ps(s0, e0);
        s1 = _mm256_add_ps(s1, e1);
    }
    if (v + 8 <= V) {
        __m256 e = rk_exp256(_mm256_sub_ps(_mm256_loadu_ps(z + v), mv));
        if (store) _mm256_storeu_ps(z + v, e);
        s0 = _mm256_add_ps(s0, e);
        v += 8;
    }
    if (v < V) {
        __m256i k = rk_mask8(V - v);
        __m256 e = rk_exp256(_mm256_sub_ps(_mm256_maskload_ps(z + v, k), mv));
        if (store) _mm256_maskstore_ps(z + v, k, e);
        s1 = _mm256_add_ps(s1, _mm256_and_ps(e, _mm256_castsi256_ps(k)));
    }
    float lanes[8];
    _mm256_storeu_ps(lanes, _mm256_add_ps(s0, s1));
    double s = 0.0;
    for (int i = 0; i < 8; i++) s += lanes[i];
    return s;
}
#endif
/* the plain C versions (the generic path) */
static float rk_row_max_c(int V, const float* z) {
    float m = z[0];
    for (int v = 1; v < V; v++) m = z[v] > m ? z[v] : m;
    return m;
}
/* The sum of exp(z[v] - m) over a row z [V], accumulated in 8 float lanes, then in double;
   z overwritten with the exps when store (the softmax), left as it is otherwise (log-softmax).
   The flag is a constant in each copy of the loop, so both stay vectorised. */
RK_INLINE double rk_exp_sum_lanes(int V, float* z, float m, const int store) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int v = 0;
    for (; v + 8 <= V; v += 8)
        for (int k = 0; k < 8; k++) {
            float e = rk_exp(z[v + k] - m);
            if (store) z[v + k] = e;
            acc[k] += e;
        }
    double s = 0.0;
    for (; v < V; v++) {
        float e = rk_exp(z[v] - m);
        if (store) z[v] = e;
        s += e;
    }
    for (int k = 0; k < 8; k++) s += acc[k];
    return s;
}
/* the generic path's (avx2 and avx512 have rk_exp_sum256 and rk_exp_sum512) */
static double rk_exp_sum_c(int V, float* z, float m, int store) {
    return store ? rk_exp_sum_lanes(V, z, m, 1) : rk_exp_sum_lanes(V, z, m, 0);
}
RK_INLINE void rk_add_scalar_impl(int n, float* z, float s) {
    for (int k = 0; k < n; k++) z[k] += s;
}
RK_MULTI(rk_add_scalar, (int n, float* z, float s),
         (n, z, s))
RK_INLINE void rk_scale_impl(int n, float* z, float s) {
    for (int k = 0; k < n; k++) z[k] *= s;
}
RK_MULTI(rk_scale, (int n, float* z, float s),
         (n, z, s))
/* y[n] += x[n] */
RK_INLINE void rk_axpy1_impl(int n, const float* x, float* y) {
    for (int k = 0; k < n; k++) y[k] += x[k];
}
RK_MULTI(rk_axpy1, (int n, const float* x, float* y),
         (n, x, y))

/* Top-k scans: from v, the start of the first block of 32 entries of z [V] holding one above
   thr (a NaN is never above), or the first v with fewer than 32 entries left. The k-th best of
   a row only rises, so after the first blocks almost every block is passed by one compare. */
#ifdef RK_X86
__attribute__((target("avx512f")))
static int rk_scan_gt512(int v, int V, const float* z, float thr) {
    __m512 t = _mm512_set1_ps(thr);
    for (; v + 32 <= V; v += 32) {
        __mmask16 a = _mm512_cmp_ps_mask(_mm512_loadu_ps(z + v), t, _CMP_GT_OQ);
        __mmask16 b = _mm512_cmp_ps_mask(_mm512_loadu_ps(z + v + 16), t, _CMP_GT_OQ);
        if (a | b) return v;
    }
    return v;
}
__attribute__((target("avx2")))
static int rk_scan_gt256(int v, int V, const float* z, float thr) {
    __m256 t = _mm256_set1_ps(thr);
    for (; v + 32 <= V; v += 32) {
        __m256 a = _mm256_cmp_ps(_mm256_loadu_ps(z + v), t, _CMP_GT_OQ);
        __m256 b = _mm256_cmp_ps(_mm256_loadu_ps(z + v + 8), t, _CMP_GT_OQ);
        __m256 c = _mm256_cmp_ps(_mm256_loadu_ps(z + v + 16), t, _CMP_GT_OQ);
        __m256 d = _mm256_cmp_ps(_mm256_loadu_ps(z + v + 24), t, _CMP_GT_OQ);
        if (_mm256_movemask_ps(_mm256_or_ps(_mm256_or_ps(a, b), _mm256_or_ps(c, d)))) return v;
    }
    return v;
}
#endif
static int rk_scan_gt_c(int v, int V, const float* z, float thr) {
    for (; v + 32 <= V; v += 32) {
        int hit = 0;
        for (int j = 0; j < 32; j++) hit |= z[v + j] > thr;
        if (hit) return v;
    }
    return v;
}

#endif /* RK_SOFTMAX_H */
