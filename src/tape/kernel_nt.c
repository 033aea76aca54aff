/* A small-matrix kernel for C = alpha A B^T (+ C) with a short inner
 * dimension: attention's per-head q k^T and dO v^T blocks (24 x 24 by 16 in
 * the prompted transformer). OpenBLAS refuses those to its small-matrix
 * kernel (its permit wants k >= 32 for this layout) and packs both operands
 * for every block; here B's rows are transposed in registers (one 16 x 16
 * shuffle network per 16 rows) into a stack tile, and the product runs as
 * row broadcasts times tile rows with FMAs, p = 0..k-1 in order: the
 * same dot-product order as OpenBLAS's packed kernel, and the same bits on
 * the development machine's Cooperlake kernels (checked against
 * cblas_sgemm for a dozen shapes with and without C, and by the unchanged
 * hash of the transformer's meta-gradients). alpha times the sum is
 * rounded, then C added and rounded; OpenBLAS rounds alpha sum + C once, so
 * the two agree only when alpha sum is exact: adding into C, the kernel
 * takes alpha = +-2^e only (1, and attention's 1/sqrt(dh) for dh = 4^i;
 * checked against cblas_sgemm on 20 000 random shapes and strides, as was
 * overwriting C with any alpha). alpha = 0 declines too (OpenBLAS skips the
 * product: 0, not NaN, for an Inf in A or B). Wider or deeper blocks
 * (n > 32, k > 16) stay with OpenBLAS.
 *
 * AVX-512 only (x86-64 with GCC or clang), chosen at run time; elsewhere
 * mp__nt_small declines and the caller uses OpenBLAS. */
#include "tape/tape_internal.h"

#include <math.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define MP__NT_TARGET __attribute__((target("avx512f")))

/* r[i] = column i of the 16 x 16 block whose rows are r[0..15]. */
MP__NT_TARGET static inline void transpose16(__m512 r[16])
{
    __m512 t[16], u[16];
    _Pragma("GCC unroll 8") for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    _Pragma("GCC unroll 4") for (int i = 0; i < 4; i++) {
        __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]);
        __m512d c = _mm512_castps_pd(t[4 * i + 2]), d = _mm512_castps_pd(t[4 * i + 3]);
        u[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        u[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        u[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        u[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    /* u[4i + c] holds, in its 128-bit lane L, rows 4i..4i+3 at column 4L + c */
    _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) {
        __m512 a = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x88), b = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xdd);
        __m512 e = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x88), f = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xdd);
        r[c] = _mm512_shuffle_f32x4(a, e, 0x88);
        r[8 + c] = _mm512_shuffle_f32x4(a, e, 0xdd);
        r[4 + c] = _mm512_shuffle_f32x4(b, f, 0x88);
        r[12 + c] = _mm512_shuffle_f32x4(b, f, 0xdd);
    }
}

/* One output row block: rows i..i+R-1 (R = 4 or 1) of C, W = 1 or 2 vectors wide. */
#define NT_ROWS(R, W)                                                                               \
    do {                                                                                            \
        __m512 c0[R], c1[R];                                                                        \
        _Pragma("GCC unroll 4") for (int q = 0; q < (R); q++) c0[q] = c1[q] = _mm512_setzero_ps(); \
        const float *a = A + (size_t)i * lda;                                                       \
        for (int32_t p = 0; p < k; p++) {                                                           \
            __m512 b0 = _mm512_load_ps(&bt[p][0]), b1 = (W) > 1 ? _mm512_load_ps(&bt[p][16]) : b0;  \
            _Pragma("GCC unroll 4") for (int q = 0; q < (R); q++) {                                \
                __m512 x = _mm512_set1_ps(a[(size_t)q * lda + p]);                                  \
                c0[q] = _mm512_fmadd_ps(x, b0, c0[q]);                                              \
                if ((W) > 1) c1[q] = _mm512_fmadd_ps(x, b1, c1[q]);                                 \
            }                                                                                       \
        }                                                                                           \
        _Pragma("GCC unroll 4") for (int q = 0; q < (R); q++) {                                    \
            float *c = C + (size_t)(i + q) * ldc;                                                   \
            __m512 v = _mm512_mul_ps(c0[q], va);                                                    \
            if (acc) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m0, c));                            \
            _mm512_mask_storeu_ps(c, m0, v);                                                        \
            if ((W) > 1) {                                                                          \
                __m512 w = _mm512_mul_ps(c1[q], va);                                                \
                if (acc) w = _mm512_add_ps(w, _mm512_maskz_loadu_ps(m1, c + 16));                   \
                _mm512_mask_storeu_ps(c + 16, m1, w);                                               \
            }                                                                                       \
        }                                                                                           \
    } while (0)

MP__NT_TARGET static void nt_avx512(int32_t m, int32_t n, int32_t k, float alpha, const float *A, int32_t lda,
                                    const float *B, int32_t ldb, int acc, float *C, int32_t ldc)
{
    _Alignas(64) float bt[16][32]; /* B^T: row p = column p of B */
    const __mmask16 mk = (__mmask16)((1u << k) - 1);
    for (int32_t half = 0; half < 2 && 16 * half < n; half++) {
        int32_t rows = n - 16 * half < 16 ? n - 16 * half : 16;
        __m512 r[16];
        _Pragma("GCC unroll 16") for (int j = 0; j < 16; j++) r[j] =
            j < rows ? _mm512_maskz_loadu_ps(mk, B + (size_t)(16 * half + j) * ldb) : _mm512_setzero_ps();
        transpose16(r);
        _Pragma("GCC unroll 16") for (int p = 0; p < 16; p++) if (p < k) _mm512_store_ps(&bt[p][16 * half], r[p]);
    }
    const __m512 va = _mm512_set1_ps(alpha);
    const __mmask16 m0 = n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1);
    const __mmask16 m1 = n <= 16 ? 0 : n >= 32 ? (__mmask16)0xffff : (__mmask16)((1u << (n - 16)) - 1);
    int32_t i = 0;
    if (n <= 16) {
        for (; m - i >= 4; i += 4) NT_ROWS(4, 1);
        for (; i < m; i++) NT_ROWS(1, 1);
    } else {
        for (; m - i >= 4; i += 4) NT_ROWS(4, 2);
        for (; i < m; i++) NT_ROWS(1, 2);
    }
}

int mp__nt_small(int32_t m, int32_t n, int32_t k, float alpha, const float *A, int32_t lda, const float *B,
                 int32_t ldb, int acc, float *C, int32_t ldc)
{
    int e;
    if (m < 1 || n < 1 || n > 32 || k < 1 || k > 16 || alpha == 0.0f || (acc && fabsf(frexpf(alpha, &e)) != 0.5f) ||
        !__builtin_cpu_supports("avx512f"))
        return 0;
    nt_avx512(m, n, k, alpha, A, lda, B, ldb, acc, C, ldc);
    return 1;
}

#else

int mp__nt_small(int32_t m, int32_t n, int32_t k, float alpha, const float *A, int32_t lda, const float *B,
                 int32_t ldb, int acc, float *C, int32_t ldc)
{
    (void)m, (void)n, (void)k, (void)alpha, (void)A, (void)lda, (void)B, (void)ldb, (void)acc, (void)C, (void)ldc;
    return 0;
}

#endif
