/* Inline float exp and normal CDF written so that GCC vectorizes loops over
 * them at baseline x86-64 (no libm call, no branch): the tape spends much of
 * a transformer's time in gelu and softmax. Not installed. */
#ifndef MP_TAPE_FASTMATH_H
#define MP_TAPE_FASTMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* Hot loops get AVX-512 (x86-64-v4) and AVX2+FMA (x86-64-v3) clones picked
 * at load time (GCC on x86-64 with glibc, through ifunc); elsewhere only the
 * baseline vectorized loop. Each string of target_clones is one clone, so
 * the ISA levels are named ("avx2,fma" made an AVX2 clone without FMA and an
 * FMA clone on SSE vectors; GCC before 12, which cannot name the levels,
 * still gets those two). Two flavours:
 * - MP__SIMD_CLONES_FMA (gelu, softmax): the clones contract a * b + c into
 *   FMA instructions (fp-contract=fast, which -std=c11 otherwise turns off),
 *   so their results differ from the baseline's by FMA rounding. (The
 *   AVX-512 clone: gelu's backward 23 % faster than the AVX2 one on the
 *   development machine's AMD EPYC; the FMAs: gelu 20 % and softmax
 *   10-14 % less time.)
 * - MP__SIMD_CLONES (element-wise sums and products, layer norm): no
 *   contraction, so every clone gives the baseline's bits — mul_add stays
 *   exactly mul then add, and a layer norm the same whichever clone the
 *   CPU gets.
 * Functions called from a clone must be inlined into it (a call runs the
 * baseline build). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__GLIBC__) && __GNUC__ >= 12
#define MP__CLONE_LIST target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")
#elif defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__GLIBC__)
#define MP__CLONE_LIST target_clones("avx2", "fma", "default")
#endif
#ifdef MP__CLONE_LIST
#define MP__SIMD_CLONES __attribute__((MP__CLONE_LIST))
#define MP__SIMD_CLONES_FMA __attribute__((MP__CLONE_LIST, optimize("fp-contract=fast")))
#else
#define MP__SIMD_CLONES
#define MP__SIMD_CLONES_FMA
#endif

/* e^x for x in [-87, 88] (a NaN x arrives here as -87): Cody-Waite reduction
 * x = k ln2 + r, |r| <= ln2/2, then a degree-7 Taylor polynomial in r
 * (truncation < 1e-8) and 2^k from the exponent bits. */
static inline float mp__exp_in_range(float xc)
{
    const float shifter = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    float k = (xc * 1.44269504088896341f + shifter) - shifter;
    float r = xc - k * 0.693359375f;
    r = r - k * -2.12194440e-4f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t bits = ((int32_t)k + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* e^x with relative error < 3e-7 on [-87, 88]; 0 below -87 (so that
 * exp(-inf) = 0 exactly, as softmax needs; e^-87 is near the smallest normal
 * float), e^88 above 88 (2^k must stay a normal float) and NaN for NaN.
 * Every value is computed unconditionally and then selected, so GCC can
 * if-convert (it does not speculate FP operations under -ftrapping-math). */
static inline float mp__expf(float x)
{
    float lo = x >= -87.0f ? x : -87.0f; /* NaN too: the exponent stays in range */
    float xc = lo > 88.0f ? 88.0f : lo;
    float e = mp__exp_in_range(xc);
    float r0 = x < -87.0f ? 0.0f : e;
    return x == x ? r0 : x; /* NaN in, NaN out */
}

/* mp__expf for x <= 0, -inf or NaN only (softmax's x - max, the normal
 * density's -x^2/2): the same values without the clamp at 88, one compare
 * and select fewer per value (gelu 12-14 % and softmax 3-8 % less time). */
static inline float mp__expf_nonpos(float x)
{
    float xc = x >= -87.0f ? x : -87.0f; /* NaN too */
    float e = mp__exp_in_range(xc);
    float r0 = x < -87.0f ? 0.0f : e;
    return x == x ? r0 : x;
}

/* Returns Phi(x) = P(N(0,1) <= x) = erfc(-x/sqrt 2)/2 with absolute error
 * < 2e-7, from the Abramowitz-Stegun 7.1.26 form erfc(a) = t P(t) e^(-a^2),
 * t = 1/(1 + 0.3275911 a), a >= 0, reflected for the other sign; and
 * *pdf = phi(x) = e^(-x^2/2)/sqrt(2 pi) from the same exponential (one e^x
 * instead of two in gelu's derivative). */
static inline float mp__normal_cdf_pdf(float x, float *pdf)
{
    float z = x * 0.70710678118654752f;
    float a = fabsf(z);
    float t = 1.0f / (1.0f + 0.3275911f * a);
    float p = 0.5f * 1.061405429f; /* the coefficients halved (exactly): p = P(t)/2 */
    p = p * t - 0.5f * 1.453152027f;
    p = p * t + 0.5f * 1.421413741f;
    p = p * t - 0.5f * 0.284496736f;
    p = p * t + 0.5f * 0.254829592f;
    float e = mp__expf_nonpos(-a * a);
    *pdf = 0.39894228040143268f * e;
    float half_erfc_a = t * p * e;
    float upper = 1.0f - half_erfc_a;
    return z < 0.0f ? half_erfc_a : upper;
}

/* Phi(x) alone (the unused density is optimized away). */
static inline float mp__normal_cdf(float x)
{
    float pdf;
    return mp__normal_cdf_pdf(x, &pdf);
}

#endif
