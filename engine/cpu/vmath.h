/* vmath.h — the CPU backend's FP32 exp, one algorithm in three bodies
 * (portable scalar, AVX2 8 lanes, AVX-512 16 lanes) that give the same
 * bits for every input, so a value never depends on which kernel, which
 * vector lane or which tail loop computed it (internal to engine/cpu).
 *
 * exp(x) = 2^k * exp(r), k = rint(x * log2 e), r = x - k ln2:
 *  - x is clamped to [EXP_LO, EXP_HI] (min then max, as minps/maxps do:
 *    "x < hi ? x : hi", so a NaN becomes hi; NaN is restored at the end);
 *  - k from one FMA against 1.5 * 2^23 (the sum's low mantissa bits are k,
 *    rounded to nearest even; |k| <= 150 fits easily);
 *  - r in two FMAs (Cody-Waite with ln2 = LN2_HI + LN2_LO: k * LN2_HI and
 *    x are both multiples of 2^-24 and |x - k LN2_HI| < 1, so the first FMA
 *    is exact; the second rounds once);
 *  - exp(r), |r| <= ln2 / 2, by Taylor's degree-7 polynomial in Horner form,
 *    one FMA a step (truncation error < 6e-9 relative);
 *  - times 2^k as two exact-in-range powers, (p * 2^(k>>1)) * 2^(k - (k>>1)):
 *    both factors are normal for k in [-150, 128] and the product is rounded
 *    once, so overflow gives +inf and the subnormal range is rounded once
 *    (not flushed).
 * Each step is an IEEE operation with one rounding (fmaf is fused on every
 * body: the scalar body calls fmaf, a hardware FMA where the caller is
 * compiled for it and a correctly rounded libm call otherwise), so every
 * lane computes exactly what eng_vm_exp computes.
 *
 * Accuracy against double exp (tests/unit/test_engine_vmath.c, docs/engine.md):
 * at most 1 ulp over [-104, 89] (every float of that range checked once by
 * hand; the unit test sweeps 2^24 inputs); exp(x) = +inf for x > ~88.7228
 * (where the true value rounds past FLT_MAX), subnormal results below
 * x ~ -87.34 rounded once, +0 for x < ~-103.97; exp(+-0) = 1, exp(+inf) =
 * +inf, exp(-inf) = +0, exp(NaN) = a quiet NaN. */
#ifndef ENG_CPU_VMATH_H
#define ENG_CPU_VMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define ENG_VM_X86 1
#endif

#define ENG_VM_EXP_HI  89.0f                    /* exp(89) overflows: +inf */
#define ENG_VM_EXP_LO  -104.0f                  /* exp(-104) < 2^-150: rounds to +0 */
#define ENG_VM_LOG2E   1.44269502162933349609375f   /* float(log2 e) */
#define ENG_VM_SHIFTER 12582912.0f              /* 1.5 * 2^23: its ulp is 1 */
#define ENG_VM_SHIFTER_BITS 0x4b400000
#define ENG_VM_LN2_HI  0.693147182464599609375f     /* float(ln 2) */
#define ENG_VM_LN2_LO  -1.90465421e-09f             /* float(ln 2 - LN2_HI) */
/* 1/k!, k = 7 .. 2 (1/1! and 1/0! are the last two Horner steps' 1). */
#define ENG_VM_C7 1.98412701e-4f
#define ENG_VM_C6 1.38888892e-3f
#define ENG_VM_C5 8.33333377e-3f
#define ENG_VM_C4 4.16666679e-2f
#define ENG_VM_C3 1.66666672e-1f
#define ENG_VM_C2 0.5f

static inline float eng_vm_f32(int32_t b) { float f; memcpy(&f, &b, sizeof f); return f; }
static inline int32_t eng_vm_bits(float f) { int32_t b; memcpy(&b, &f, sizeof b); return b; }

/* The portable body: exactly what each vector lane below computes. */
static inline float eng_vm_exp(float x)
{
    float xc = x < ENG_VM_EXP_HI ? x : ENG_VM_EXP_HI;       /* minps(x, hi) */
    xc = xc > ENG_VM_EXP_LO ? xc : ENG_VM_EXP_LO;           /* maxps(xc, lo) */
    float t = fmaf(xc, ENG_VM_LOG2E, ENG_VM_SHIFTER);
    float kf = t - ENG_VM_SHIFTER;
    int32_t k = eng_vm_bits(t) - ENG_VM_SHIFTER_BITS;
    float r = fmaf(kf, -ENG_VM_LN2_HI, xc);
    r = fmaf(kf, -ENG_VM_LN2_LO, r);
    float p = ENG_VM_C7;
    p = fmaf(p, r, ENG_VM_C6);
    p = fmaf(p, r, ENG_VM_C5);
    p = fmaf(p, r, ENG_VM_C4);
    p = fmaf(p, r, ENG_VM_C3);
    p = fmaf(p, r, ENG_VM_C2);
    p = fmaf(p, r, 1.0f);
    p = fmaf(p, r, 1.0f);
    int32_t k1 = k >> 1, k2 = k - k1;                       /* arithmetic shift, as vpsrad */
    float y = p * eng_vm_f32((k1 + 127) << 23) * eng_vm_f32((k2 + 127) << 23);
    return x != x ? x + x : y;
}

#ifdef ENG_VM_X86
/* The same target strings as matmul.c's kernels, so these inline there. */
#define ENG_VM_AVX2   __attribute__((target("avx2,fma,f16c")))
#define ENG_VM_AVX512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl")))

/* The vector body, once for both widths (W = 256 or 512 bits): the scalar
 * body's steps in the same order, lane for lane; declares y_, exp(x)
 * before the NaN select. */
#define ENG_VM_EXP_BODY(W, x)                                                                     \
    __m##W xc_ = _mm##W##_min_ps(x, _mm##W##_set1_ps(ENG_VM_EXP_HI));                            \
    xc_ = _mm##W##_max_ps(xc_, _mm##W##_set1_ps(ENG_VM_EXP_LO));                                  \
    __m##W sh_ = _mm##W##_set1_ps(ENG_VM_SHIFTER);                                                \
    __m##W t_ = _mm##W##_fmadd_ps(xc_, _mm##W##_set1_ps(ENG_VM_LOG2E), sh_);                      \
    __m##W kf_ = _mm##W##_sub_ps(t_, sh_);                                                        \
    __m##W##i k_ = _mm##W##_sub_epi32(_mm##W##_castps_si##W(t_), _mm##W##_set1_epi32(ENG_VM_SHIFTER_BITS)); \
    __m##W r_ = _mm##W##_fmadd_ps(kf_, _mm##W##_set1_ps(-ENG_VM_LN2_HI), xc_);                    \
    r_ = _mm##W##_fmadd_ps(kf_, _mm##W##_set1_ps(-ENG_VM_LN2_LO), r_);                            \
    __m##W p_ = _mm##W##_set1_ps(ENG_VM_C7);                                                      \
    p_ = _mm##W##_fmadd_ps(p_, r_, _mm##W##_set1_ps(ENG_VM_C6));                                  \
    p_ = _mm##W##_fmadd_ps(p_, r_, _mm##W##_set1_ps(ENG_VM_C5));                                  \
    p_ = _mm##W##_fmadd_ps(p_, r_, _mm##W##_set1_ps(ENG_VM_C4));                                  \
    p_ = _mm##W##_fmadd_ps(p_, r_, _mm##W##_set1_ps(ENG_VM_C3));                                  \
    p_ = _mm##W##_fmadd_ps(p_, r_, _mm##W##_set1_ps(ENG_VM_C2));                                  \
    p_ = _mm##W##_fmadd_ps(p_, r_, _mm##W##_set1_ps(1.0f));                                       \
    p_ = _mm##W##_fmadd_ps(p_, r_, _mm##W##_set1_ps(1.0f));                                       \
    __m##W##i k1_ = _mm##W##_srai_epi32(k_, 1), k2_ = _mm##W##_sub_epi32(k_, k1_);                \
    __m##W##i b_ = _mm##W##_set1_epi32(127);                                                      \
    __m##W s1_ = _mm##W##_castsi##W##_ps(_mm##W##_slli_epi32(_mm##W##_add_epi32(k1_, b_), 23));  \
    __m##W s2_ = _mm##W##_castsi##W##_ps(_mm##W##_slli_epi32(_mm##W##_add_epi32(k2_, b_), 23));  \
    __m##W y_ = _mm##W##_mul_ps(_mm##W##_mul_ps(p_, s1_), s2_)

ENG_VM_AVX2 static inline __m256 eng_vm_exp8(__m256 x)
{
    ENG_VM_EXP_BODY(256, x);
    return _mm256_blendv_ps(y_, _mm256_add_ps(x, x), _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

ENG_VM_AVX512 static inline __m512 eng_vm_exp16(__m512 x)
{
    ENG_VM_EXP_BODY(512, x);
    return _mm512_mask_add_ps(y_, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), x, x);
}
#endif

#endif
