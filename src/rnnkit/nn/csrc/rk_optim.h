/* rnnkit kernels: the optimizer's element-wise pass (Adam), one pass over the flat buffers.

   Adam's step as reference.adam_step specifies it, per element, in float32, every operation
   rounded on its own (no fused multiply-add: the compiler must not contract b1 m + c1 g, so
   the functions below are compiled with fp-contract off), hence the same bits on every path,
   for every thread split, and as numpy's:
       m = b1 m + c1 g          (c1 = 1 - b1)
       v = b2 v + c2 (g g)      (c2 = 1 - b2)
       p = p - step (m / (sqrt(v) + eps))
   It replaces nine numpy and BLAS passes over [P] with one (reading p, g, m, v, writing p, m,
   v): 14.6 -> 3 ms a step for the 8.2M parameters of the Multi30k translator, 2 threads. */
#ifndef RK_OPTIM_H
#define RK_OPTIM_H

#include <math.h>
#include <stddef.h>
#include "rk_cpu.h"

#define RK_EXACT __attribute__((optimize("fp-contract=off")))

RK_EXACT static void rk_adam_c(size_t n, float* p, const float* g, float* m, float* v, float b1,
                               float c1, float b2, float c2, float step, float eps) {
    for (size_t i = 0; i < n; i++) {
        float mi = b1 * m[i] + c1 * g[i];
        float vi = b2 * v[i] + c2 * (g[i] * g[i]);
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i] - step * (mi / (sqrtf(vi) + eps));
    }
}
#ifdef RK_X86
#include <immintrin.h>
/* the 16- and 8-lane copies, one body: P is the intrinsics' prefix (_mm512, _mm256), VT the
   vector type, W its lanes; the tail goes through rk_adam_c */
#define RK_ADAM_SIMD(NAME, TARGET, P, VT, W)                                                     \
__attribute__((target(TARGET))) RK_EXACT                                                        \
static void NAME(size_t n, float* p, const float* g, float* m, float* v, float b1, float c1,   \
                 float b2, float c2, float step, float eps) {                                   \
    const VT B1 = P##_set1_ps(b1), C1 = P##_set1_ps(c1), B2 = P##_set1_ps(b2),                  \
             C2 = P##_set1_ps(c2), ST = P##_set1_ps(step), EP = P##_set1_ps(eps);               \
    size_t i = 0;                                                                               \
    for (; i + W <= n; i += W) {                                                                \
        VT gi = P##_loadu_ps(g + i);                                                            \
        VT mi = P##_add_ps(P##_mul_ps(B1, P##_loadu_ps(m + i)), P##_mul_ps(C1, gi));            \
        VT vi = P##_add_ps(P##_mul_ps(B2, P##_loadu_ps(v + i)),                                 \
                           P##_mul_ps(C2, P##_mul_ps(gi, gi)));                                 \
        P##_storeu_ps(m + i, mi);                                                               \
        P##_storeu_ps(v + i, vi);                                                               \
        VT d = P##_div_ps(mi, P##_add_ps(P##_sqrt_ps(vi), EP));                                 \
        P##_storeu_ps(p + i, P##_sub_ps(P##_loadu_ps(p + i), P##_mul_ps(ST, d)));               \
    }                                                                                           \
    rk_adam_c(n - i, p + i, g + i, m + i, v + i, b1, c1, b2, c2, step, eps);                    \
}
RK_ADAM_SIMD(rk_adam512, "avx512f", _mm512, __m512, 16)
RK_ADAM_SIMD(rk_adam256, "avx2", _mm256, __m256, 8)
#undef RK_ADAM_SIMD
#endif
/* SGD's step, p = p - lr g (the product rounded, then the difference: reference.sgd_step), and
   the squares of a block summed for the gradient's norm: lane i % 32 of 32 double accumulators
   takes element i's square (exact in double), each lane in order, then the lanes 0..31 in order
   (reference.sum_squares): the same bits on every path, vectorised or not. Plain C, compiled
   once per path by RK_MULTI, with fp-contract off like Adam's pass. */
RK_EXACT RK_INLINE void rk_sgd_impl(size_t n, float* p, const float* g, float lr) {
    for (size_t i = 0; i < n; i++) p[i] = p[i] - lr * g[i];
}
#define RK_SQ_LANES 32   /* independent chains: 8 ymm or 4 zmm adds in flight (8 lanes ran at
                            0.63 ms for 4.2M entries on 1 thread, bound by the adds' latency) */
RK_EXACT RK_INLINE double rk_sum_squares_impl(size_t n, const float* x) {
    double lane[RK_SQ_LANES] = {0};
    size_t i = 0;
    for (; i + RK_SQ_LANES <= n; i += RK_SQ_LANES)
        for (int j = 0; j < RK_SQ_LANES; j++) lane[j] += (double)x[i + j] * (double)x[i + j];
    for (int j = 0; i + j < n; j++) lane[j] += (double)x[i + j] * (double)x[i + j];
    double s = 0.0;
    for (int j = 0; j < RK_SQ_LANES; j++) s += lane[j];
    return s;
}
#if defined(__GNUC__) && defined(__x86_64__) && !defined(RNNKIT_NO_CLONES)
#define RK_EXACT_MULTI(ret, name, params, args)                                                  \
    __attribute__((target("arch=x86-64-v4"))) RK_EXACT static ret name##_v4 params {             \
        return name##_impl args; }                                                              \
    __attribute__((target("arch=x86-64-v3"))) RK_EXACT static ret name##_v3 params {             \
        return name##_impl args; }                                                              \
    RK_EXACT static ret name##_v1 params { return name##_impl args; }                           \
    static ret name params {                                                                    \
        if (rk_isa == RK_ISA_AVX512) return name##_v4 args;                                     \
        if (rk_isa == RK_ISA_AVX2) return name##_v3 args;                                       \
        return name##_v1 args;                                                                  \
    }
#else
#define RK_EXACT_MULTI(ret, name, params, args) static ret name params { return name##_impl args; }
#endif
RK_EXACT_MULTI(void, rk_sgd, (size_t n, float* p, const float* g, float lr), (n, p, g, lr))
RK_EXACT_MULTI(double, rk_sum_squares, (size_t n, const float* x), (n, x))

/* the selected path's copy (rk_isa, rk_cpu.h) */
static void rk_adam(size_t n, float* p, const float* g, float* m, float* v, float b1, float c1,
                    float b2, float c2, float step, float eps) {
#ifdef RK_X86
    if (rk_isa == RK_ISA_AVX512) { rk_adam512(n, p, g, m, v, b1, c1, b2, c2, step, eps); return; }
    if (rk_isa == RK_ISA_AVX2) { rk_adam256(n, p, g, m, v, b1, c1, b2, c2, step, eps); return; }
#endif
    rk_adam_c(n, p, g, m, v, b1, c1, b2, c2, step, eps);
}

#endif /* RK_OPTIM_H */
