/* Row-wise softmax and log-softmax, the pick/unpick pair (select one entry
 * per row, and its adjoint), and the losses built on them. */
#include "tape/tape_internal.h"

#include <math.h>
#include <string.h>

#include "tape/fastmath.h"

/* ---- row kernels ---------------------------------------------------------------------
 * Rows are often short (attention scores: 24 columns), so a row's reduction
 * runs in eight independent float lanes (one AVX vector, two SSE ones) that
 * end in a tree, with the last C mod 8 entries in one more scalar: the loops
 * vectorize without reassociation flags, as mp__sum8 does. A sum's error is
 * at most about C/8 + 4 float roundings (relative 4e-7 for 24 columns); the
 * double sums these replace were exact to float but one chain of dependent
 * scalar adds per row (softmax over rows of 24: 1.9 ns per value).
 * The helpers are inlined into each SIMD clone of their callers (fastmath.h). */
#if defined(__GNUC__)
#define ROW_INLINE static inline __attribute__((always_inline))
#else
#define ROW_INLINE static inline
#endif

/* x > m ? x : m, so a NaN x is skipped. */
ROW_INLINE float max_nan_skip(float x, float m) { return x > m ? x : m; }

/* The max of a row's entries that are not NaN, -inf if there are none:
 * exact, so the order does not matter. */
ROW_INLINE float row_max(const float *restrict x, int32_t C)
{
    float m[8], t = -INFINITY;
    for (int l = 0; l < 8; l++) m[l] = -INFINITY;
    int32_t j = 0;
    for (; C - j >= 8; j += 8)
        for (int l = 0; l < 8; l++) m[l] = max_nan_skip(x[j + l], m[l]);
    for (; j < C; j++) t = max_nan_skip(x[j], t);
    for (int l = 0; l < 4; l++) m[l] = max_nan_skip(m[l + 4], m[l]);
    for (int l = 0; l < 2; l++) m[l] = max_nan_skip(m[l + 2], m[l]);
    return max_nan_skip(max_nan_skip(m[1], m[0]), t);
}

/* a[0] + ... + a[7] + t, pairwise over the lanes. */
ROW_INLINE float lanes_sum(float *a, float t)
{
    for (int l = 0; l < 4; l++) a[l] += a[l + 4];
    for (int l = 0; l < 2; l++) a[l] += a[l + 2];
    return (a[0] + a[1]) + t;
}

ROW_INLINE float row_sum(const float *restrict x, int32_t C)
{
    float a[8] = {0}, t = 0.0f;
    int32_t j = 0;
    for (; C - j >= 8; j += 8)
        for (int l = 0; l < 8; l++) a[l] += x[j + l];
    for (; j < C; j++) t += x[j];
    return lanes_sum(a, t);
}

ROW_INLINE float row_dot(const float *restrict x, const float *restrict y, int32_t C)
{
    float a[8] = {0}, t = 0.0f;
    int32_t j = 0;
    for (; C - j >= 8; j += 8)
        for (int l = 0; l < 8; l++) a[l] += x[j + l] * y[j + l];
    for (; j < C; j++) t += x[j] * y[j];
    return lanes_sum(a, t);
}

/* Sum of e^x[j] over a row. */
ROW_INLINE float row_exp_sum(const float *restrict x, int32_t C)
{
    float a[8] = {0}, t = 0.0f;
    int32_t j = 0;
    for (; C - j >= 8; j += 8)
        for (int l = 0; l < 8; l++) a[l] += mp__expf_nonpos(x[j + l]);
    for (; j < C; j++) t += mp__expf_nonpos(x[j]);
    return lanes_sum(a, t);
}

/* Subtracting the row max keeps exp in range for huge logits (x - max is in
 * [-inf, 0]); -inf entries give exp(-inf) = 0 exactly, so their probability
 * and gradient are 0. A NaN entry makes its row NaN (through the sum).
 * The rows go in blocks of about SOFTMAX_BLOCK values, one step at a time
 * over the block: x - max per row, exp over the whole block in one loop
 * (short rows would each leave a vector remainder), then per row the sum and
 * the scaling. The rows of a step are independent, so the processor overlaps
 * them, where one row's chain of max, exp, sum and divide would keep it
 * waiting (1920 rows of 24: 0.6 ns per value instead of 1.9). */
enum { SOFTMAX_BLOCK = 1024 };
MP__SIMD_CLONES_FMA static void softmax_block(const float *restrict x, float *restrict y, int32_t rows, int32_t C,
                                          int log_out)
{
    float ls[SOFTMAX_BLOCK];
    int32_t nb = C < SOFTMAX_BLOCK ? SOFTMAX_BLOCK / C : 1;
    for (int64_t i0 = 0; i0 < rows; i0 += nb) { /* 64-bit: no overflow for rows near INT32_MAX */
        int32_t n = rows - i0 < nb ? (int32_t)(rows - i0) : nb;
        const float *restrict xb = x + (size_t)i0 * C;
        float *restrict yb = y + (size_t)i0 * C;
        for (int32_t i = 0; i < n; i++) {
            const float *restrict xr = xb + (size_t)i * C;
            float *restrict yr = yb + (size_t)i * C;
            float m = row_max(xr, C);
            for (int32_t j = 0; j < C; j++) yr[j] = xr[j] - m;
        }
        if (log_out) {
            for (int32_t i = 0; i < n; i++) ls[i] = row_exp_sum(yb + (size_t)i * C, C);
            for (int32_t i = 0; i < n; i++) ls[i] = logf(ls[i]); /* the sum is >= 1: the max gives e^0 = 1 */
            for (int32_t i = 0; i < n; i++) {
                float *restrict yr = yb + (size_t)i * C;
                float l = ls[i];
                for (int32_t j = 0; j < C; j++) yr[j] -= l;
            }
        } else {
            size_t nv = (size_t)n * C;
            for (size_t k = 0; k < nv; k++) yb[k] = mp__expf_nonpos(yb[k]); /* in [0, 1]: no overflow */
            for (int32_t i = 0; i < n; i++) {
                float *restrict yr = yb + (size_t)i * C;
                float r = 1.0f / row_sum(yr, C);
                for (int32_t j = 0; j < C; j++) yr[j] *= r;
            }
        }
    }
}

static void softmax_rows(mp_tape *t, mp__node *o, int log_out)
{
    softmax_block(mp__nd(t, o->in[0])->val, o->val, o->rows, o->cols, log_out);
}

/* ---- softmax: dx = softmax_grad(g, y) = y * (g - rowsum(g * y)) -----------------------
 * One fused node for the first-order pass; its own backward is composed:
 * d/dg = softmax_grad(h, y), d/dy = h (g - rowsum(g y)) - g rowsum(h y). */
void mp__fwd_softmax(mp_tape *t, mp__node *o) { softmax_rows(t, o, 0); }
mp_status mp__bwd_softmax(mp_tape *t, mp_var v, mp_var g)
{
    mp_var c;
    MP_TRY(mp__binary(t, MP__OP_SOFTMAX_GRAD, g, v, &c));
    return mp__acc(t, mp__nd(t, v)->in[0], c);
}

MP__SIMD_CLONES_FMA static void softmax_grad_block(const float *restrict g, const float *restrict y,
                                               float *restrict out, int32_t rows, int32_t C)
{
    for (int32_t i = 0; i < rows; i++) {
        const float *restrict gr = g + (size_t)i * C, *restrict yr = y + (size_t)i * C;
        float *restrict o = out + (size_t)i * C;
        float s = row_dot(gr, yr, C);
        for (int32_t j = 0; j < C; j++) o[j] = yr[j] * (gr[j] - s);
    }
}
void mp__fwd_softmax_grad(mp_tape *t, mp__node *o)
{
    softmax_grad_block(mp__nd(t, o->in[0])->val, mp__nd(t, o->in[1])->val, o->val, o->rows, o->cols);
}
mp_status mp__bwd_softmax_grad(mp_tape *t, mp_var v, mp_var h)
{
    mp__node n = *mp__nd(t, v);
    mp_var g = n.in[0], y = n.in[1], c, s, d, t1, t2;
    if (mp__need(t, g)) {
        MP_TRY(mp__binary(t, MP__OP_SOFTMAX_GRAD, h, y, &c));
        MP_TRY(mp__acc(t, g, c));
    }
    if (!mp__need(t, y)) return MP_OK;
    if (t->no_grad) { /* one constant node (softmax_grad_y) instead of eight */
        MP_TRY(mp__record(t, MP__OP_SOFTMAX_GRAD_Y, n.rows, n.cols, h, v, NULL, 0.0f, NULL, &c));
        return mp__acc(t, y, c);
    }
    MP_TRY(mp__mul(t, g, y, 1.0f, &s));
    MP_TRY(mp__sum(t, s, MP_REDUCE_PER_ROW, 1.0f, &s));
    MP_TRY(mp__sub(t, g, s, &d));
    MP_TRY(mp__mul(t, h, d, 1.0f, &t1));
    MP_TRY(mp__mul(t, h, y, 1.0f, &s));
    MP_TRY(mp__sum(t, s, MP_REDUCE_PER_ROW, 1.0f, &s));
    MP_TRY(mp__mul(t, g, s, 1.0f, &t2));
    MP_TRY(mp__sub(t, t1, t2, &c));
    return mp__acc(t, y, c);
}

/* softmax_grad_y(h, n) = h (g - rowsum(g y)) - g rowsum(h y) for the
 * softmax_grad node n = softmax_grad(g, y): its derivative with respect to
 * y, fused. Recorded only by sweeps that record constants, so it is never
 * differentiated. */
MP__SIMD_CLONES_FMA static void softmax_grad_y_block(const float *restrict h, const float *restrict g,
                                                 const float *restrict y, float *restrict out, int32_t rows,
                                                 int32_t C)
{
    for (int32_t i = 0; i < rows; i++) {
        const float *restrict hr = h + (size_t)i * C, *restrict gr = g + (size_t)i * C, *restrict yr = y + (size_t)i * C;
        float *restrict o = out + (size_t)i * C;
        float a1[8] = {0}, a2[8] = {0}, t1 = 0.0f, t2 = 0.0f;
        int32_t j = 0;
        for (; C - j >= 8; j += 8)
            for (int l = 0; l < 8; l++) {
                a1[l] += gr[j + l] * yr[j + l];
                a2[l] += hr[j + l] * yr[j + l];
            }
        for (; j < C; j++) {
            t1 += gr[j] * yr[j];
            t2 += hr[j] * yr[j];
        }
        float f1 = lanes_sum(a1, t1), f2 = lanes_sum(a2, t2);
        for (j = 0; j < C; j++) o[j] = hr[j] * (gr[j] - f1) - gr[j] * f2;
    }
}
void mp__fwd_softmax_grad_y(mp_tape *t, mp__node *o)
{
    const mp__node *N = mp__nd(t, o->in[1]);
    softmax_grad_y_block(mp__nd(t, o->in[0])->val, mp__nd(t, N->in[0])->val, mp__nd(t, N->in[1])->val, o->val,
                         o->rows, o->cols);
}
mp_status mp__bwd_softmax_grad_y(mp_tape *t, mp_var v, mp_var g)
{
    (void)g; /* recorded as a constant only (see above) */
    return mp__bwd_constant_only(t, v);
}

/* ---- log-softmax: dx = log_softmax_grad(g, y) = g - exp(y) rowsum(g) --------------------
 * Its backward: d/dg = h - rowsum(h exp(y)), d/dy = -h exp(y) rowsum(g). */
void mp__fwd_log_softmax(mp_tape *t, mp__node *o) { softmax_rows(t, o, 1); }
mp_status mp__bwd_log_softmax(mp_tape *t, mp_var v, mp_var g)
{
    mp_var c;
    MP_TRY(mp__binary(t, MP__OP_LOG_SOFTMAX_GRAD, g, v, &c));
    return mp__acc(t, mp__nd(t, v)->in[0], c);
}

MP__SIMD_CLONES_FMA static void log_softmax_grad_block(const float *restrict g, const float *restrict y,
                                                   float *restrict out, int32_t rows, int32_t C)
{
    for (int32_t i = 0; i < rows; i++) {
        const float *restrict gr = g + (size_t)i * C, *restrict yr = y + (size_t)i * C;
        float *restrict o = out + (size_t)i * C;
        float s = row_sum(gr, C);
        for (int32_t j = 0; j < C; j++) o[j] = gr[j] - mp__expf(yr[j]) * s; /* exp(-inf) = 0 */
    }
}
void mp__fwd_log_softmax_grad(mp_tape *t, mp__node *o)
{
    log_softmax_grad_block(mp__nd(t, o->in[0])->val, mp__nd(t, o->in[1])->val, o->val, o->rows, o->cols);
}
mp_status mp__bwd_log_softmax_grad(mp_tape *t, mp_var v, mp_var h)
{
    mp__node n = *mp__nd(t, v);
    mp_var g = n.in[0], y = n.in[1], p, s, c;
    MP_TRY(mp__unary(t, MP__OP_EXP, y, 0.0f, 0, &p));
    if (mp__need(t, g)) {
        MP_TRY(mp__mul(t, h, p, 1.0f, &s));
        MP_TRY(mp__sum(t, s, MP_REDUCE_PER_ROW, 1.0f, &s));
        MP_TRY(mp__sub(t, h, s, &c));
        MP_TRY(mp__acc(t, g, c));
    }
    if (!mp__need(t, y)) return MP_OK;
    MP_TRY(mp__sum(t, g, MP_REDUCE_PER_ROW, 1.0f, &s));
    MP_TRY(mp__mul(t, h, p, -1.0f, &c));
    MP_TRY(mp__mul(t, c, s, 1.0f, &c));
    return mp__acc(t, y, c);
}

/* ---- pick (rows x cols -> rows x 1, entry labels[i] of row i) and unpick ---------- */
void mp__fwd_pick(mp_tape *t, mp__node *o)
{
    const mp__node *A = mp__nd(t, o->in[0]);
    for (int32_t i = 0; i < o->rows; i++) o->val[i] = A->val[(size_t)i * A->cols + o->idx[i]];
}
mp_status mp__bwd_pick(mp_tape *t, mp_var v, mp_var g)
{
    mp__node n = *mp__nd(t, v);
    mp_var c;
    MP_TRY(mp__unpick(t, g, n.idx, mp__nd(t, n.in[0])->cols, &c));
    return mp__acc(t, n.in[0], c);
}
mp_status mp__pick(mp_tape *t, mp_var a, const int32_t *labels, mp_var *out)
{
    return mp__record(t, MP__OP_PICK, mp__nd(t, a)->rows, 1, a, MP_VAR_NONE, NULL, 0.0f, labels, out);
}

void mp__fwd_unpick(mp_tape *t, mp__node *o)
{
    const float *g = mp__nd(t, o->in[0])->val;
    memset(o->val, 0, (size_t)o->rows * o->cols * sizeof(float));
    for (int32_t i = 0; i < o->rows; i++) o->val[(size_t)i * o->cols + o->idx[i]] = g[i];
}
mp_status mp__bwd_unpick(mp_tape *t, mp_var v, mp_var g)
{
    mp__node n = *mp__nd(t, v);
    mp_var c;
    MP_TRY(mp__pick(t, g, n.idx, &c));
    return mp__acc(t, n.in[0], c);
}
mp_status mp__unpick(mp_tape *t, mp_var g, const int32_t *labels, int32_t cols, mp_var *out)
{
    return mp__record(t, MP__OP_UNPICK, mp__nd(t, g)->rows, cols, g, MP_VAR_NONE, NULL, 0.0f, labels, out);
}

/* ---- public entry points ---------------------------------------------------------- */
/* A row of only -inf has no distribution: rejected rather than giving NaN. */
static mp_status check_rows(mp_tape *t, const char *fn, const char *arg, mp_var *a)
{
    MP_TRY(mp__check_var(t, fn, arg, a));
    const mp__node *A = mp__nd(t, *a);
    for (int32_t i = 0; i < A->rows; i++) {
        const float *r = A->val + (size_t)i * A->cols;
        int32_t j = 0;
        while (j < A->cols && r[j] == -INFINITY) j++;
        MP_REQUIRE(j < A->cols, t->err, MP_ERR_NOT_FINITE,
                   "%s: row %d of the %dx%d input is all -inf (no distribution)", fn, (int)i, (int)A->rows,
                   (int)A->cols);
    }
    return MP_OK;
}

mp_status mp_softmax(mp_tape *t, mp_var a, mp_var *out)
{
    MP__START(t, out, "mp_softmax");
    MP_TRY(check_rows(t, "mp_softmax", "a", &a));
    mp_var r;
    mp_status st = mp__unary(t, MP__OP_SOFTMAX, a, 0.0f, 0, &r);
    return mp__emit(t, st, &r, out);
}

mp_status mp_log_softmax(mp_tape *t, mp_var a, mp_var *out)
{
    MP__START(t, out, "mp_log_softmax");
    MP_TRY(check_rows(t, "mp_log_softmax", "a", &a));
    mp_var r;
    mp_status st = mp__unary(t, MP__OP_LOG_SOFTMAX, a, 0.0f, 0, &r);
    return mp__emit(t, st, &r, out);
}

static mp_status record_ce(mp_tape *t, mp_var logits, const int32_t *labels, size_t n, mp_var *out)
{
    int32_t *lab = mp__arena_alloc(t, n * sizeof *lab);
    if (!lab) return mp__fail(t->err, MP_ERR_OUT_OF_MEMORY, "mp_cross_entropy: cannot copy %zu labels", n);
    memcpy(lab, labels, n * sizeof *lab);
    mp_var ls, p;
    MP_TRY(mp__unary(t, MP__OP_LOG_SOFTMAX, logits, 0.0f, 0, &ls));
    MP_TRY(mp__pick(t, ls, lab, &p));
    return mp__sum(t, p, MP_REDUCE_ALL, (float)(-1.0 / (double)n), out);
}

mp_status mp_cross_entropy(mp_tape *t, mp_var logits, const int32_t *labels, size_t n, mp_var *out)
{
    static const char fn[] = "mp_cross_entropy";
    MP__START(t, out, fn);
    MP_REQUIRE_PTR(labels, t->err, fn);
    MP_TRY(check_rows(t, fn, "logits", &logits));
    const mp__node *L = mp__nd(t, logits);
    MP_REQUIRE(n == (size_t)L->rows, t->err, MP_ERR_SHAPE_MISMATCH,
               "%s: n = %zu labels for logits of %dx%d (expected one per row)", fn, n, (int)L->rows, (int)L->cols);
    for (size_t i = 0; i < n; i++)
        MP_REQUIRE(labels[i] >= 0 && labels[i] < L->cols, t->err, MP_ERR_RANGE,
                   "%s: labels[%zu] = %d is outside [0, %d) for logits of %dx%d", fn, i, (int)labels[i],
                   (int)L->cols, (int)L->rows, (int)L->cols);
    mp__mark m = mp__tape_mark(t);
    mp_var r;
    mp_status st = record_ce(t, logits, labels, n, &r);
    if (st != MP_OK) mp__tape_rollback(t, m);
    return mp__emit(t, st, &r, out);
}

static mp_status record_mse(mp_tape *t, mp_var pred, mp_var target, mp_var *out)
{
    const mp__node *P = mp__nd(t, pred);
    double n = (double)P->rows * P->cols;
    mp_var d, sq;
    MP_TRY(mp__sub(t, pred, target, &d));
    MP_TRY(mp__unary(t, MP__OP_SQUARE, d, 0.0f, 0, &sq));
    return mp__sum(t, sq, MP_REDUCE_ALL, (float)(1.0 / n), out);
}

mp_status mp_mse(mp_tape *t, mp_var pred, mp_var target, mp_var *out)
{
    static const char fn[] = "mp_mse";
    MP__START(t, out, fn);
    MP__VAR(t, fn, pred);
    MP__VAR(t, fn, target);
    const mp__node *P = mp__nd(t, pred), *T = mp__nd(t, target);
    MP_REQUIRE(P->rows == T->rows && P->cols == T->cols, t->err, MP_ERR_SHAPE_MISMATCH,
               "%s: pred is %dx%d but target is %dx%d (expected equal shapes)", fn, (int)P->rows, (int)P->cols,
               (int)T->rows, (int)T->cols);
    mp__mark m = mp__tape_mark(t);
    mp_var r;
    mp_status st = record_mse(t, pred, target, &r);
    if (st != MP_OK) mp__tape_rollback(t, m);
    return mp__emit(t, st, &r, out);
}
