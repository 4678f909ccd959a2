/* rnnkit kernels: global attention of a sentence's queries over its S positions (scores,
   softmax over the real positions, context vectors), for nn/attention.py's dot and general
   scores. One sentence per call; the module splits the sentences between the threads. */
#ifndef RK_ATTENTION_H
#define RK_ATTENTION_H

#include <math.h>
#include <stddef.h>
#include "rk_cpu.h"
#include "rk_math.h"

#define RK_ATT_QB 4    /* queries that read each key and state together */
#define RK_ATT_DC 64   /* context columns kept in registers per query */

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

/* Scores of nq queries q + u*ldq [H] against the real positions' keys, a key at a time (it
   stays in L1 for the block's queries); alpha [nq, S] out (real positions only), m [nq] out:
   each query's largest score. */
RK_INLINE void rk_att_scores(int nq, int S, int H, const float* q, size_t ldq,
                             const float* keys, size_t ldk, const unsigned char* valid,
                             float* alpha, float* m) {
    for (int u = 0; u < nq; u++) m[u] = -INFINITY;
    for (int s = 0; s < S; s++) {
        if (!valid[s]) continue;
        const float* y = keys + (size_t)s * ldk;
        for (int u = 0; u < nq; u++) {
            float v = rk_att_dot(H, q + u * ldq, y);
            alpha[(size_t)u * S + s] = v;
            m[u] = v > m[u] ? v : m[u];
        }
    }
}

/* ctx + u*ldc [D] = sum_s alpha_us enc_s for nq queries: RK_ATT_DC columns at a time in
   registers, each state read once for all of them; every sum in the order of s, skipping the
   zero weights (the bits of one query at a time). */
RK_INLINE void rk_att_context(int nq, int S, int D, const float* alpha, const float* enc,
                              size_t lde, float* ctx, size_t ldc) {
    int d0 = 0;
    for (; d0 + RK_ATT_DC <= D; d0 += RK_ATT_DC) {
        float acc[RK_ATT_QB][RK_ATT_DC] = {{0}};
        for (int s = 0; s < S; s++) {
            const float* e = enc + (size_t)s * lde + d0;
            for (int u = 0; u < nq; u++) {
                float w = alpha[(size_t)u * S + s];
                if (w == 0.0f) continue;
                for (int d = 0; d < RK_ATT_DC; d++) acc[u][d] += w * e[d];
            }
        }
        for (int u = 0; u < nq; u++)
            for (int d = 0; d < RK_ATT_DC; d++) ctx[u * ldc + d0 + d] = acc[u][d];
    }
    for (int u = 0; u < nq; u++) {
        float* c = ctx + u * ldc;
        const float* a = alpha + (size_t)u * S;
        for (int d = d0; d < D; d++) c[d] = 0.0f;
        for (int s = 0; s < S; s++) {
            float w = a[s];
            if (w == 0.0f) continue;
            const float* e = enc + (size_t)s * lde;
            for (int d = d0; d < D; d++) c[d] += w * e[d];
        }
    }
}

/* T queries q + t*ldq [H] of one sentence over its positions s < S: keys + s*ldk [H], states
   enc + s*lde [D], valid [S] (nonzero: a real position). alpha [T, S] out: softmax over the real
   positions of q . key (0 elsewhere; uniform when none is real, as a -1e30 score gives);
   ctx + t*ldc [D] out: sum_s alpha_ts enc_s. Queries go RK_ATT_QB at a time (each key and
   state is read once per block); every number is summed as for one query alone. */
RK_INLINE void rk_attend_impl(int T, int S, int H, int D, const float* q, size_t ldq,
                              const float* keys, size_t ldk, const float* enc, size_t lde,
                              const unsigned char* valid, float* alpha, float* ctx,
                              size_t ldc) {
    for (int t0 = 0; t0 < T; t0 += RK_ATT_QB) {
        int nq = T - t0 < RK_ATT_QB ? T - t0 : RK_ATT_QB;
        const float* qb = q + (size_t)t0 * ldq;
        float* ab = alpha + (size_t)t0 * S;
        float m[RK_ATT_QB];
        rk_att_scores(nq, S, H, qb, ldq, keys, ldk, valid, ab, m);
        for (int u = 0; u < nq; u++) {
            float* a = ab + (size_t)u * S;
            float sum = 0.0f;
            for (int s = 0; s < S; s++) {
                a[s] = m[u] == -INFINITY ? 1.0f : valid[s] ? rk_exp(a[s] - m[u]) : 0.0f;
                sum += a[s];
            }
            for (int s = 0; s < S; s++) a[s] = a[s] / sum;
        }
        float* cb = ctx + (size_t)t0 * ldc;
        /* constant block sizes, so that the compiler keeps the accumulators in registers */
        if (nq == RK_ATT_QB) rk_att_context(RK_ATT_QB, S, D, ab, enc, lde, cb, ldc);
        else if (nq == 3) rk_att_context(3, S, D, ab, enc, lde, cb, ldc);
        else if (nq == 2) rk_att_context(2, S, D, ab, enc, lde, cb, ldc);
        else rk_att_context(1, S, D, ab, enc, lde, cb, ldc);
    }
}
RK_MULTI(rk_attend, (int T, int S, int H, int D, const float* q, size_t ldq, const float* keys,
                     size_t ldk, const float* enc, size_t lde, const unsigned char* valid,
                     float* alpha, float* ctx, size_t ldc),
         (T, S, H, D, q, ldq, keys, ldk, enc, lde, valid, alpha, ctx, ldc))

#endif /* RK_ATTENTION_H */
