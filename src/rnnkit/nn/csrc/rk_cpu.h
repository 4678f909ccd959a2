/* rnnkit kernels: how vector code is chosen at run time (see docs/kernels.md). */
#ifndef RK_CPU_H
#define RK_CPU_H

#define RK_INLINE static inline __attribute__((always_inline))

/* The instruction-set paths of the explicit kernels (the packed GEMM family, softmax rows).
   rk_isa_table in rk_isa.h says which kernel runs on which path; this header says which paths
   the CPU can run, and which one is selected (the best, or RNNKIT_ISA through the module). */
enum { RK_ISA_GENERIC = 0, RK_ISA_AVX2 = 1, RK_ISA_AVX512 = 2, RK_ISA_COUNT = 3 };
#if defined(__GNUC__) && defined(__x86_64__)
#define RK_X86 1
#include <cpuid.h>
/* avx512: the x86-64-v4 level (AVX-512 F, BW, CD, DQ, VL: the explicit kernels use F, the
   element-wise copies may use the rest); avx2: x86-64-v3 (AVX2, FMA, BMI1/2, F16C, MOVBE) */
static int rk_isa_supported(int isa) {
    __builtin_cpu_init();
#if defined(__clang__)
    if (isa == RK_ISA_AVX512)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
               && __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512dq")
               && __builtin_cpu_supports("avx512vl") && rk_isa_supported(RK_ISA_AVX2);
    if (isa == RK_ISA_AVX2)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")
               && __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2");
#else
    if (isa == RK_ISA_AVX512) return __builtin_cpu_supports("x86-64-v4") != 0;
    if (isa == RK_ISA_AVX2) return __builtin_cpu_supports("x86-64-v3") != 0;
#endif
    return isa == RK_ISA_GENERIC;
}
/* the CPU's family and model as the vendors number them (base + extended fields) */
static void rk_cpu_family_model(int* family, int* model) {
    unsigned a = 0, b = 0, c = 0, d = 0;
    *family = *model = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    int fam = (a >> 8) & 0xF, mod = (a >> 4) & 0xF;
    if (fam == 0xF) fam += (a >> 20) & 0xFF;
    if (fam == 0x6 || fam >= 0xF) mod += ((a >> 16) & 0xF) << 4;
    *family = fam;
    *model = mod;
}
#else
static int rk_isa_supported(int isa) { return isa == RK_ISA_GENERIC; }
static void rk_cpu_family_model(int* family, int* model) { *family = *model = 0; }
#endif
static int rk_isa_best(void) {
    for (int isa = RK_ISA_COUNT - 1; isa > 0; isa--)
        if (rk_isa_supported(isa)) return isa;
    return RK_ISA_GENERIC;
}
/* the selected path: set once at load time by the module (rk_isa_select), changed only by
   its `set_isa` between calls, never while a kernel runs */
static int rk_isa = RK_ISA_GENERIC;

/* One copy of each element-wise pass per path, the one of the selected path called:
   RK_MULTI(name, (params), (args)) after `RK_INLINE void name_impl(params)` compiles the body
   for x86-64-v4 (the avx512 path), x86-64-v3 (avx2: AVX2, FMA) and the baseline (generic), and
   defines name() that calls the selected copy. So RNNKIT_ISA=avx2 on an AVX-512 CPU runs what an
   AVX2 CPU runs, and the tests cover every copy. Elsewhere: the baseline only. */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(RNNKIT_NO_CLONES)
#define RK_MULTI(name, params, args)                                                      \
    __attribute__((target("arch=x86-64-v4"))) static void name##_v4 params { name##_impl args; } \
    __attribute__((target("arch=x86-64-v3"))) static void name##_v3 params { name##_impl args; } \
    static void name##_v1 params { name##_impl args; }                                    \
    static void name params {                                                             \
        if (rk_isa == RK_ISA_AVX512) name##_v4 args;                                      \
        else if (rk_isa == RK_ISA_AVX2) name##_v3 args;                                   \
        else name##_v1 args;                                                              \
    }
#else
#define RK_MULTI(name, params, args) static void name params { name##_impl args; }
#endif

#endif /* RK_CPU_H */
