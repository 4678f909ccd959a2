/* rnnkit kernels: global attention of a sentence's queries over its S positions (scores,
   softmax over the real positions, context vectors), for nn/attention.py's dot and general
   scores. One sentence per call; the module splits the sentences between the threads. */
#ifndef RK_ATTENTION_H
#define RK_ATTENTION_H

#include <math.h>
#include <stddef.h>
#include "rk_cpu.h"
#include "rk_math.h"

/* x . y over n floats, in 16 lanes (one zmm, two ymm: the same sums on both), then in order */
RK_INLINE float rk_att_dot(int n, const float* restrict x, const float* restrict y) {
    float acc[16] = {0};
    int i = 0;
    for (; i + 16 <= n; i += 16)
        for (int k = 0; k < 16; k++) acc[k] += x[i + k] * y[i + k];
    float s = 0.0f;
    for (; i < n; i++) s += x[i] * y[i];
    for (int k = 0; k < 16; k++) s += acc[k];
    return s;
}

/* T queries q + t*ldq [H] of one sentence over its positions s < S: keys + s*ldk [H], states
   enc + s*lde [D], valid [S] (nonzero: a real position). alpha [T, S] out: softmax over the real
   positions of q . key (0 elsewhere; uniform when none is real, as a -1e30 score gives);
   ctx + t*ldc [D] out: sum_s alpha_ts enc_s. */
RK_INLINE void rk_attend_impl(int T, int S, int H, int D, const float* q, size_t ldq,
                              const float* keys, size_t ldk, const float* enc, size_t lde,
                              const unsigned char* valid, float* alpha, float* ctx,
                              size_t ldc) {
    for (int t = 0; t < T; t++) {
        float* a = alpha + (size_t)t * S;
        const float* qt = q + (size_t)t * ldq;
        float m = -INFINITY;
        for (int s = 0; s < S; s++)
            if (valid[s]) {
                a[s] = rk_att_dot(H, qt, keys + (size_t)s * ldk);
                m = a[s] > m ? a[s] : m;
            }
        float sum = 0.0f;
        for (int s = 0; s < S; s++) {
            a[s] = m == -INFINITY ? 1.0f : valid[s] ? rk_exp(a[s] - m) : 0.0f;
            sum += a[s];
        }
        for (int s = 0; s < S; s++) a[s] = a[s] / sum;
        float* c = ctx + (size_t)t * ldc;
        for (int d = 0; d < D; d++) c[d] = 0.0f;
        for (int s = 0; s < S; s++) {
            float w = a[s];
            if (w == 0.0f) continue;
            const float* e = enc + (size_t)s * lde;
            for (int d = 0; d < D; d++) c[d] += w * e[d];
        }
    }
}
RK_MULTI(rk_attend, (int T, int S, int H, int D, const float* q, size_t ldq, const float* keys,
                     size_t ldk, const float* enc, size_t lde, const unsigned char* valid,
                     float* alpha, float* ctx, size_t ldc),
         (T, S, H, D, q, ldq, keys, ldk, enc, lde, valid, alpha, ctx, ldc))

#endif /* RK_ATTENTION_H */
