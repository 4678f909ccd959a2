/* rnnkit kernels: the one dispatch table. Which explicit kernel runs on which instruction-set
   path, and the names the module calls (each goes through the selected row).

   path      needs              layers' products          single steps            softmax rows
   avx512    x86-64-v4          rk_gemm512 (packed)       rk_gemv512, dot512      16 lanes
   avx2      x86-64-v3          rk_gemm256 (packed)       rk_gemv256, dot256      8 lanes
   generic   any CPU            BLAS (scipy)              BLAS                    plain C

   The module selects the best path the CPU supports at load time, or the one RNNKIT_ISA names
   (`set_isa` for tests and benchmarks). The element-wise passes (cells, small vector passes)
   follow the same selection through RK_MULTI (rk_cpu.h): x86-64-v4, x86-64-v3 or baseline
   copies for the avx512, avx2 and generic paths. */
#ifndef RK_ISA_H
#define RK_ISA_H

#include <stddef.h>
#include "rk_cpu.h"
#include "rk_softmax.h"
#include "rk_gemm.h"

typedef void (*rk_pack_fn)(int K, int N, const float* b, int ldb, int trans, float* pb, int q0,
                           int q1);
typedef void (*rk_gemm_fn)(int M, int N, int K, const float* a, size_t rsa, size_t csa,
                           const float* pb, float beta, float* c, int ldc, int q0, int q1,
                           const float* bias);
typedef void (*rk_gemv_fn)(int N, int K1, const float* w1, int ldw1, const float* x1, int K2,
                           const float* w2, int ldw2, const float* x2, const float* b1,
                           const float* b2, float* y, int accumulate);
typedef void (*rk_dot_fn)(int B, int N, int K, const float* x, int ldx, const float* w, int ldw,
                          float* y, int ldy, int accumulate);
typedef struct {
    const char* name;         /* as RNNKIT_ISA and set_isa spell it */
    const char* needs;        /* the CPU features it needs */
    int packed;               /* the layers' products on the packed GEMM by default (else BLAS) */
    rk_pack_fn pack_b;        /* NULL: no packed GEMM on this path */
    rk_gemm_fn gemm;
    rk_gemv_fn gemv;
    rk_dot_fn dot_gemm;
    float (*row_max)(int V, const float* z);
    double (*exp_sum)(int V, float* z, float m, int store);
    int (*scan_gt)(int v, int V, const float* z, float thr);
} rk_isa_kernels;

static const rk_isa_kernels rk_isa_table[RK_ISA_COUNT] = {
    {"generic", "none", 0, NULL, NULL, NULL, NULL, rk_row_max_c, rk_exp_sum_c, rk_scan_gt_c},
#ifdef RK_X86
    {"avx2", "x86-64-v3", 1, rk_pack_b256, rk_gemm256, rk_gemv256, rk_dot_gemm256,
     rk_row_max256, rk_exp_sum256, rk_scan_gt256},
    {"avx512", "x86-64-v4", 1, rk_pack_b512, rk_gemm512, rk_gemv512, rk_dot_gemm512,
     rk_row_max512, rk_exp_sum512, rk_scan_gt512},
#else  /* never selected: rk_isa_supported says no */
    {"avx2", "x86-64-v3", 0, NULL, NULL, NULL, NULL, rk_row_max_c, rk_exp_sum_c, rk_scan_gt_c},
    {"avx512", "x86-64-v4", 0, NULL, NULL, NULL, NULL, rk_row_max_c, rk_exp_sum_c,
     rk_scan_gt_c},
#endif
};
static const rk_isa_kernels* rk_kern = &rk_isa_table[RK_ISA_GENERIC];

/* select a path: 0, or -1 when the CPU cannot run it (nothing changes then) */
static int rk_isa_select(int isa) {
    if (isa < 0 || isa >= RK_ISA_COUNT || !rk_isa_supported(isa)) return -1;
    rk_isa = isa;
    rk_kern = &rk_isa_table[isa];
    rk_blocking_select(isa);
    return 0;
}
static const char* rk_isa_name(int isa) { return rk_isa_table[isa].name; }
static int rk_isa_packed(int isa) { return rk_isa_table[isa].packed; }

/* the names the module calls: the selected path's kernel (the packed ones only when
   rk_isa_packed says the path has them) */
static inline void rk_pack_b(int K, int N, const float* b, int ldb, int trans, float* pb,
                             int q0, int q1) {
    rk_kern->pack_b(K, N, b, ldb, trans, pb, q0, q1);
}
static inline void rk_gemm(int M, int N, int K, const float* a, size_t rsa, size_t csa,
                           const float* pb, float beta, float* c, int ldc, int q0, int q1,
                           const float* bias) {
    rk_kern->gemm(M, N, K, a, rsa, csa, pb, beta, c, ldc, q0, q1, bias);
}
static inline void rk_gemv(int N, int K1, const float* w1, int ldw1, const float* x1, int K2,
                           const float* w2, int ldw2, const float* x2, const float* b1,
                           const float* b2, float* y, int accumulate) {
    rk_kern->gemv(N, K1, w1, ldw1, x1, K2, w2, ldw2, x2, b1, b2, y, accumulate);
}
static inline void rk_dot_gemm(int B, int N, int K, const float* x, int ldx, const float* w,
                               int ldw, float* y, int ldy, int accumulate) {
    rk_kern->dot_gemm(B, N, K, x, ldx, w, ldw, y, ldy, accumulate);
}
static inline float rk_row_max(int V, const float* z) { return rk_kern->row_max(V, z); }
static inline double rk_exp_sum(int V, float* z, float m, int store) {
    return rk_kern->exp_sum(V, z, m, store);
}

/* The k largest entries of a row z [V] (1 <= k <= V), best first: their indices in idx [k]
   (val [k] is scratch). Ties go to the earlier index and a NaN counts as -inf, so the result is
   np.argsort(-z, kind="stable")[:k] (reference.topk_rows) for rows without NaN. After the first k
   entries the selected path's scan skips every block of 32 that holds nothing above the current
   k-th value; an entry is inserted only when it beats it (a few dozen times per row on a peaked
   distribution). The beam search's first cut of every [rows, V] log-probability matrix. */
static inline void rk_topk_insert(int k, float* val, int64_t* idx, int n, float x, int64_t i) {
    int p = n < k ? n : k - 1;            /* the free slot: the end, or the k-th when full */
    while (p > 0 && val[p - 1] < x) {
        val[p] = val[p - 1];
        idx[p] = idx[p - 1];
        p--;
    }
    val[p] = x;
    idx[p] = i;
}
static void rk_topk_row(int V, const float* z, int k, int64_t* idx, float* val) {
    for (int v = 0; v < k; v++)
        rk_topk_insert(k, val, idx, v, z[v] == z[v] ? z[v] : -INFINITY, v);
    float thr = val[k - 1];
    int v = k;
    for (;;) {
        v = rk_kern->scan_gt(v, V, z, thr);
        int end = v + 32 <= V ? v + 32 : V;   /* a block with a hit, or the tail */
        for (; v < end; v++)
            if (z[v] > thr) {
                rk_topk_insert(k, val, idx, k, z[v], v);
                thr = val[k - 1];
            }
        if (end == V) break;
    }
}

/* rk_topk_row over f(z) = (z + c) * scale (scale > 0; 1: no product): the entries that
   log_softmax writes (c = -max - log sum exp), without writing them. idx [k] is rk_topk_row's
   of the f values, val [k] their f values (a NaN kept, as the [N, V] array would hold it). f is
   monotone, so the scan compares the raw z with the raw value of the current k-th: only an
   entry above it can have an f above the k-th's f. */
static inline float rk_shift_scale(float z, float c, float scale) {
    float t = z + c;
    return scale != 1.0f ? t * scale : t;
}
static void rk_topk_row_shifted(int V, const float* z, float c, float scale, int k,
                                int64_t* idx, float* val) {
    for (int v = 0; v < k; v++) {
        float f = rk_shift_scale(z[v], c, scale);
        rk_topk_insert(k, val, idx, v, f == f ? f : -INFINITY, v);
    }
    float thr = val[k - 1], thr_z = z[idx[k - 1]];
    if (thr_z != thr_z) thr_z = -INFINITY;
    int v = k;
    for (;;) {
        v = rk_kern->scan_gt(v, V, z, thr_z);
        int end = v + 32 <= V ? v + 32 : V;
        for (; v < end; v++)
            if (z[v] > thr_z) {
                float f = rk_shift_scale(z[v], c, scale);
                if (f > thr) {
                    rk_topk_insert(k, val, idx, k, f, v);
                    thr = val[k - 1];
                    thr_z = z[idx[k - 1]];
                }
            }
        if (end == V) break;
    }
    for (int j = 0; j < k; j++) val[j] = rk_shift_scale(z[idx[j]], c, scale);
}

#endif /* RK_ISA_H */
