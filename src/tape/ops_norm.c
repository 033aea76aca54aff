/* Layer norm as fused ops whose derivatives are fused ops too:
 *   y = ln_norm(x)        = (x - mean(x)) r, r = 1/sqrt(var(x) + eps) per row
 *                           (biased variance, as PyTorch), then y * gamma + beta
 *                           (one mul_add node; see ops_elementwise.c);
 *                           the node keeps r (rows floats on the arena, behind
 *                           its idx pointer) for the ops below;
 *   dx = ln_bwd(g, y)     = r (g - mean(g) - y mean(g y)), the vector-Jacobian
 *                           product of ln_norm, one node instead of the ten of
 *                           a composed backward (what an inner step records);
 *                           its inputs are g and the ln_norm node y, and it
 *                           also reads r, a function of x = y's input.
 *   Its own derivatives, for an upstream a: with respect to g it is
 *   ln_bwd(a, y) again (g -> r (g - mean g - y mean(g y)) is symmetric);
 *   with respect to y at fixed r, -r (a mean(g y) + g rowsum(a y)/C); and
 *   through r with respect to x, -(r/C) rowsum(a dx) y (dr/dx = -(r^2/C) y).
 *   A sweep that records constants (create_graph = 0, the outer backward of
 *   the meta-step) records each as one fused node (ln_bwd_y, ln_bwd_r); a
 *   sweep that records a graph composes them from recorded ops (with
 *   r = ln_rstd(x), rows x 1), so every order stays available. */
#include "tape/tape_internal.h"

#include <math.h>

#include "tape/fastmath.h"

static inline float row_mean(const float *x, int32_t C) { return (float)(mp__sum8(x, (size_t)C) / C); }

/* Mean and 1/sqrt(var + eps) of one row. */
static inline float row_rstd(const float *restrict x, int32_t C, float eps, float *mean)
{
    float mu = row_mean(x, C), acc[8] = {0};
    int32_t j = 0;
    for (; C - j >= 8; j += 8)
        for (int l = 0; l < 8; l++) acc[l] += (x[j + l] - mu) * (x[j + l] - mu);
    double v = 0;
    for (; j < C; j++) v += (x[j] - mu) * (x[j] - mu);
    for (int l = 0; l < 8; l++) v += acc[l];
    *mean = mu;
    return (float)(1.0 / sqrt(v / C + eps));
}

/* The rstd of each row that an ln_norm node keeps (written once, by its
 * forward kernel, when it is recorded). */
static float *kept_rstd(const mp__node *n) { return (float *)(uintptr_t)n->idx; }

/* ---- r = ln_rstd(x) ------------------------------------------------------------- */
MP__SIMD_CLONES void mp__fwd_ln_rstd(mp_tape *t, mp__node *o)
{
    const mp__node *X = mp__nd(t, o->in[0]);
    int32_t C = X->cols;
    float mu;
    for (int32_t i = 0; i < X->rows; i++) o->val[i] = row_rstd(X->val + (size_t)i * C, C, o->f, &mu);
}
/* dr/dx = -r^3 (x - mean)/C = -(r^2 / C) y with y = ln_norm(x). */
mp_status mp__bwd_ln_rstd(mp_tape *t, mp_var v, mp_var g)
{
    const mp__node *n = mp__nd(t, v);
    mp_var x = n->in[0], r2, c, y;
    float invc = 1.0f / (float)mp__nd(t, x)->cols;
    MP_TRY(mp__ln_norm(t, x, n->f, &y));
    MP_TRY(mp__mul(t, v, v, 1.0f, &r2));
    MP_TRY(mp__mul(t, g, r2, -invc, &c));
    MP_TRY(mp__mul(t, y, c, 1.0f, &c));
    return mp__acc(t, x, c);
}

/* ---- y = ln_norm(x) ------------------------------------------------------------- */
MP__SIMD_CLONES void mp__fwd_ln_norm(mp_tape *t, mp__node *o)
{
    const mp__node *X = mp__nd(t, o->in[0]);
    int32_t C = X->cols;
    float *kept = kept_rstd(o);
    for (int32_t i = 0; i < X->rows; i++) {
        const float *restrict x = X->val + (size_t)i * C;
        float *restrict y = o->val + (size_t)i * C;
        float mu, r = row_rstd(x, C, o->f, &mu);
        kept[i] = r;
        for (int32_t j = 0; j < C; j++) y[j] = (x[j] - mu) * r;
    }
}
mp_status mp__bwd_ln_norm(mp_tape *t, mp_var v, mp_var g)
{
    const mp__node *Y = mp__nd(t, v);
    return mp__record_to(t, Y->in[0], MP__OP_LN_BWD, Y->rows, Y->cols, g, v, NULL, 0.0f);
}
mp_status mp__ln_norm(mp_tape *t, mp_var x, float eps, mp_var *out)
{
    const mp__node *X = mp__nd(t, x);
    mp__mark m = mp__tape_mark(t);
    float *kept = mp__arena_alloc(t, (size_t)X->rows * sizeof(float));
    if (!kept)
        return mp__fail(t->err, MP_ERR_OUT_OF_MEMORY, "mp_tape: out of memory recording a %dx%d layer norm",
                        (int)X->rows, (int)X->cols);
    mp_status st = mp__record(t, MP__OP_LN_NORM, X->rows, X->cols, x, MP_VAR_NONE, NULL, eps,
                              (const int32_t *)(const void *)kept, out);
    if (st != MP_OK) mp__tape_rollback(t, m);
    return st;
}

/* ---- dx = ln_bwd(g, y) = r (g - mean(g) - y mean(g y)) ----------------------------- */
MP__SIMD_CLONES void mp__fwd_ln_bwd(mp_tape *t, mp__node *o)
{
    const mp__node *G = mp__nd(t, o->in[0]), *Y = mp__nd(t, o->in[1]);
    const float *kept = kept_rstd(Y);
    int32_t C = Y->cols, acc = (o->flags & MP__NODE_ACC) != 0; /* += : a recycling sweep's in-place sum */
    float invc = 1.0f / (float)C;
    for (int32_t i = 0; i < Y->rows; i++) {
        const float *restrict y = Y->val + (size_t)i * C, *restrict g = G->val + (size_t)i * C;
        float *restrict out = o->val + (size_t)i * C;
        float r = kept[i], m1 = row_mean(g, C), m2 = (float)mp__dot8(g, y, C) * invc;
        if (acc)
            for (int32_t j = 0; j < C; j++) out[j] += r * (g[j] - m1 - y[j] * m2);
        else
            for (int32_t j = 0; j < C; j++) out[j] = r * (g[j] - m1 - y[j] * m2);
    }
}

/* ln_bwd_y(a, n) and ln_bwd_r(a, n) for the ln_bwd node n = ln_bwd(g, y):
 * the derivatives of sum(a * n) with respect to y (at fixed r) and, through
 * r, with respect to x (see the top of the file). They read g, y and r
 * through n. Recorded only by sweeps that record constants, so they are
 * never differentiated. */
MP__SIMD_CLONES void mp__fwd_ln_bwd_y(mp_tape *t, mp__node *o)
{
    const mp__node *A = mp__nd(t, o->in[0]), *N = mp__nd(t, o->in[1]);
    const mp__node *G = mp__nd(t, N->in[0]), *Y = mp__nd(t, N->in[1]);
    const float *kept = kept_rstd(Y);
    int32_t C = Y->cols, acc = (o->flags & MP__NODE_ACC) != 0;
    float invc = 1.0f / (float)C;
    for (int32_t i = 0; i < Y->rows; i++) {
        const float *restrict y = Y->val + (size_t)i * C, *restrict g = G->val + (size_t)i * C,
                              *restrict a = A->val + (size_t)i * C;
        float *restrict out = o->val + (size_t)i * C;
        float r = kept[i], m2 = (float)mp__dot8(g, y, C) * invc, ay = (float)mp__dot8(a, y, C) * invc;
        if (acc)
            for (int32_t j = 0; j < C; j++) out[j] += -r * (a[j] * m2 + g[j] * ay);
        else
            for (int32_t j = 0; j < C; j++) out[j] = -r * (a[j] * m2 + g[j] * ay);
    }
}
MP__SIMD_CLONES void mp__fwd_ln_bwd_r(mp_tape *t, mp__node *o)
{
    const mp__node *A = mp__nd(t, o->in[0]), *N = mp__nd(t, o->in[1]), *Y = mp__nd(t, N->in[1]);
    const float *kept = kept_rstd(Y);
    int32_t C = Y->cols, acc = (o->flags & MP__NODE_ACC) != 0;
    for (int32_t i = 0; i < Y->rows; i++) {
        const float *restrict y = Y->val + (size_t)i * C, *restrict a = A->val + (size_t)i * C,
                              *restrict dx = N->val + (size_t)i * C;
        float *restrict out = o->val + (size_t)i * C;
        float k = -kept[i] * (float)mp__dot8(a, dx, C) / (float)C;
        if (acc)
            for (int32_t j = 0; j < C; j++) out[j] += k * y[j];
        else
            for (int32_t j = 0; j < C; j++) out[j] = k * y[j];
    }
}
mp_status mp__bwd_ln_bwd_y(mp_tape *t, mp_var v, mp_var g)
{
    (void)g;
    return mp__bwd_constant_only(t, v);
}
mp_status mp__bwd_ln_bwd_r(mp_tape *t, mp_var v, mp_var g)
{
    (void)g;
    return mp__bwd_constant_only(t, v);
}

/* The same two derivatives as recorded ops (differentiable to every
 * order): into y, -r (a m2 + g Ay/C) with m2 = mean(g y), Ay = rowsum(a y);
 * into x, -(r/C) rowsum(a dx) y, dx the ln_bwd node v. */
static mp_status ln_bwd_composed(mp_tape *t, mp_var v, mp_var a, int32_t want_y, int32_t want_x)
{
    mp__node n = *mp__nd(t, v);
    mp_var g = n.in[0], y = n.in[1], x = mp__nd(t, y)->in[0], r, p, q, c;
    float invc = 1.0f / (float)mp__nd(t, y)->cols;
    MP_TRY(mp__record(t, MP__OP_LN_RSTD, n.rows, 1, x, MP_VAR_NONE, NULL, mp__nd(t, y)->f, NULL, &r));
    if (want_y) {
        mp_var m2, ay;
        MP_TRY(mp__mul(t, g, y, 1.0f, &p));
        MP_TRY(mp__sum(t, p, MP_REDUCE_PER_ROW, invc, &m2));
        MP_TRY(mp__mul(t, a, y, 1.0f, &p));
        MP_TRY(mp__sum(t, p, MP_REDUCE_PER_ROW, invc, &ay));
        MP_TRY(mp__mul(t, a, m2, 1.0f, &p));
        MP_TRY(mp__mul(t, g, ay, 1.0f, &q));
        MP_TRY(mp__add(t, p, q, &p));
        MP_TRY(mp__mul(t, p, r, -1.0f, &c));
        MP_TRY(mp__acc(t, y, c));
    }
    if (want_x) {
        MP_TRY(mp__mul(t, a, v, 1.0f, &p));
        MP_TRY(mp__sum(t, p, MP_REDUCE_PER_ROW, 1.0f, &p));
        MP_TRY(mp__mul(t, p, r, -invc, &p));
        MP_TRY(mp__mul(t, y, p, 1.0f, &c));
        MP_TRY(mp__acc(t, x, c));
    }
    return MP_OK;
}

mp_status mp__bwd_ln_bwd(mp_tape *t, mp_var v, mp_var a)
{
    mp__node n = *mp__nd(t, v);
    mp_var g = n.in[0], y = n.in[1], x = mp__nd(t, y)->in[0];
    if (mp__need(t, g)) MP_TRY(mp__record_to(t, g, MP__OP_LN_BWD, n.rows, n.cols, a, y, NULL, 0.0f));
    int32_t want_y = mp__need(t, y), want_x = mp__need(t, x);
    if (!t->no_grad) return want_y || want_x ? ln_bwd_composed(t, v, a, want_y, want_x) : MP_OK;
    if (want_y) MP_TRY(mp__record_to(t, y, MP__OP_LN_BWD_Y, n.rows, n.cols, a, v, NULL, 0.0f));
    if (want_x) MP_TRY(mp__record_to(t, x, MP__OP_LN_BWD_R, n.rows, n.cols, a, v, NULL, 0.0f));
    return MP_OK;
}

static mp_status record_ln(mp_tape *t, mp_var x, mp_var gamma, mp_var beta, float eps, mp_var *out)
{
    mp_var y;
    MP_TRY(mp__ln_norm(t, x, eps, &y));
    if (gamma != MP_VAR_NONE && beta != MP_VAR_NONE) MP_TRY(mp__mul_add(t, y, gamma, beta, &y));
    else if (gamma != MP_VAR_NONE) MP_TRY(mp__mul(t, y, gamma, 1.0f, &y));
    else if (beta != MP_VAR_NONE) MP_TRY(mp__add(t, y, beta, &y));
    *out = y;
    return MP_OK;
}

/* Checks an optional 1 x cols id *p (MP_VAR_NONE or turned into an index). */
static mp_status check_affine(mp_tape *t, const char *fn, const char *arg, mp_var *p, int32_t cols)
{
    if (*p == MP_VAR_NONE) return MP_OK;
    MP_TRY(mp__check_var(t, fn, arg, p));
    const mp__node *P = mp__nd(t, *p);
    MP_REQUIRE(P->rows == 1 && P->cols == cols, t->err, MP_ERR_SHAPE_MISMATCH,
               "%s: %s is %dx%d, expected 1x%d", fn, arg, (int)P->rows, (int)P->cols, (int)cols);
    return MP_OK;
}

mp_status mp_layer_norm(mp_tape *t, mp_var x, mp_var gamma, mp_var beta, float eps, mp_var *out)
{
    static const char fn[] = "mp_layer_norm";
    MP__START(t, out, fn);
    MP__VAR(t, fn, x);
    int32_t cols = mp__nd(t, x)->cols;
    MP_TRY(check_affine(t, fn, "gamma", &gamma, cols));
    MP_TRY(check_affine(t, fn, "beta", &beta, cols));
    MP_REQUIRE(eps > 0.0f && eps < 1.0f, t->err, MP_ERR_INVALID_ARGUMENT,
               "%s: eps = %g, expected 0 < eps < 1", fn, (double)eps);
    mp__mark m = mp__tape_mark(t);
    mp_var r;
    mp_status st = record_ln(t, x, gamma, beta, eps, &r);
    if (st != MP_OK) mp__tape_rollback(t, m);
    return mp__emit(t, st, &r, out);
}
