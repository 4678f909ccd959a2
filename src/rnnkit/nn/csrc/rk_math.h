/* rnnkit kernels: exp, sigmoid and tanh that the compiler vectorises (libm's are scalar calls). */
#ifndef RK_MATH_H
#define RK_MATH_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "rk_cpu.h"

/* *buf grown to hold n floats (64-byte aligned; kept and grown, never shrunk, its contents not
   kept when it grows): the per-thread buffers (rk_scratch, rk_pack_a). NULL, and *cap 0, when
   the memory is not there. */
static inline float* rk_grow(float** buf, size_t* cap, size_t n) {
    if (n > *cap) {
        free(*buf);
        *buf = (float*)aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
        *cap = *buf ? n : 0;
    }
    return *buf;
}

/* exp: Cephes' expf (range reduction by ln 2, degree-6 polynomial), rel. error < 1e-7.
   The constants, shared by the scalar rk_exp, the 16-lane rk_exp512 and the 8-lane rk_exp256: */
#define RK_EXP_LO (-87.3f)
#define RK_EXP_HI 88.3f
#define RK_LOG2E 1.44269504088896341f
#define RK_ROUND 12582912.0f       /* 1.5 * 2^23: x + it - it rounds x to an integer */
#define RK_LN2_HI 0.693359375f     /* ln 2 = RK_LN2_HI - RK_LN2_LO, the first exact in float */
#define RK_LN2_LO 2.12194440e-4f
#define RK_EXP_P0 1.9875691500e-4f
#define RK_EXP_P1 1.3981999507e-3f
#define RK_EXP_P2 8.3334519073e-3f
#define RK_EXP_P3 4.1665795894e-2f
#define RK_EXP_P4 1.6666665459e-1f
#define RK_EXP_P5 5.0000001201e-1f
RK_INLINE float rk_exp(float x) {
    x = x < RK_EXP_LO ? RK_EXP_LO : x;
    x = x > RK_EXP_HI ? RK_EXP_HI : x;
    /* n = round(x / ln 2) by the 1.5 * 2^23 trick: branch-free, so the loop vectorises */
    float fn = (x * RK_LOG2E + RK_ROUND) - RK_ROUND;
    int n = (int)fn;
    float r = x - fn * RK_LN2_HI + fn * RK_LN2_LO;
    float y = RK_EXP_P0;
    y = y * r + RK_EXP_P1;
    y = y * r + RK_EXP_P2;
    y = y * r + RK_EXP_P3;
    y = y * r + RK_EXP_P4;
    y = y * r + RK_EXP_P5;
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
#ifdef RK_X86
#include <immintrin.h>
/* rk_exp on 16 lanes, the same steps */
__attribute__((target("avx512f"))) static inline __attribute__((always_inline))
__m512 rk_exp512(__m512 x) {
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(RK_EXP_LO)), _mm512_set1_ps(RK_EXP_HI));
    __m512 big = _mm512_set1_ps(RK_ROUND);
    __m512 fn = _mm512_sub_ps(_mm512_fmadd_ps(x, _mm512_set1_ps(RK_LOG2E), big), big);
    __m512 r = _mm512_fnmadd_ps(fn, _mm512_set1_ps(RK_LN2_HI), x);
    r = _mm512_fmadd_ps(fn, _mm512_set1_ps(RK_LN2_LO), r);
    __m512 y = _mm512_set1_ps(RK_EXP_P0);
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(RK_EXP_P1));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(RK_EXP_P2));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(RK_EXP_P3));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(RK_EXP_P4));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(RK_EXP_P5));
    y = _mm512_add_ps(_mm512_fmadd_ps(y, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
    __m512i n = _mm512_cvtps_epi32(fn);
    __m512 p = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(n, _mm512_set1_epi32(127)), 23));
    return _mm512_mul_ps(y, p);
}
/* lanes i < n set (n <= 0: none, n >= 8: all): the masks of the 8-lane loads and stores */
__attribute__((target("avx2,fma"))) static inline __attribute__((always_inline))
__m256i rk_mask8(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
/* rk_exp on 8 lanes (AVX2 and FMA), the same steps */
__attribute__((target("avx2,fma"))) static inline __attribute__((always_inline))
__m256 rk_exp256(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(RK_EXP_LO)), _mm256_set1_ps(RK_EXP_HI));
    __m256 big = _mm256_set1_ps(RK_ROUND);
    __m256 fn = _mm256_sub_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(RK_LOG2E), big), big);
    __m256 r = _mm256_fnmadd_ps(fn, _mm256_set1_ps(RK_LN2_HI), x);
    r = _mm256_fmadd_ps(fn, _mm256_set1_ps(RK_LN2_LO), r);
    __m256 y = _mm256_set1_ps(RK_EXP_P0);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(RK_EXP_P1));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(RK_EXP_P2));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(RK_EXP_P3));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(RK_EXP_P4));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(RK_EXP_P5));
    y = _mm256_add_ps(_mm256_fmadd_ps(y, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
    __m256i n = _mm256_cvtps_epi32(fn);
    __m256 p = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n, _mm256_set1_epi32(127)), 23));
    return _mm256_mul_ps(y, p);
}
#endif

#endif /* RK_MATH_H */
