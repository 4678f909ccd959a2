/* rnnkit kernels: how vector code is chosen at run time (see docs/kernels.md). */
#ifndef RK_CPU_H
#define RK_CPU_H

/* One copy of each element-wise pass per instruction set, picked at load time by the
   dynamic loader (GNU ifunc); elsewhere the baseline build only. */
#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(RNNKIT_NO_CLONES)
#define RK_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define RK_CLONES
#endif
#define RK_INLINE static inline __attribute__((always_inline))

/* The one CPU check: explicit AVX-512 code (softmax rows, the packed GEMM) runs only when it
   says yes. */
#if defined(__GNUC__) && defined(__x86_64__)
#define RK_X86 1
static int rk_has512 = -1;
static inline int rk_use512(void) {
    if (rk_has512 < 0) { __builtin_cpu_init(); rk_has512 = __builtin_cpu_supports("avx512f") != 0; }
    return rk_has512;
}
static int rk_cpu_has_avx512(void) { return rk_use512(); }
#else
static int rk_cpu_has_avx512(void) { return 0; }
#endif

#endif /* RK_CPU_H */
