/* Layer norm as two fused ops whose backward passes are compositions of
 * recorded ops (so every order of derivative is available):
 *   r = ln_rstd(x)    = 1 / sqrt(var(x) + eps), rows x 1 (biased variance, as PyTorch)
 *   y = ln_apply(x, r) = (x - mean(x)) * r
 * then y * gamma + beta. Two passes over x instead of eight recorded ops. */
#include "tape/tape_internal.h"

#include <math.h>

static float row_mean(const float *x, int32_t C) { return (float)(mp__sum8(x, (size_t)C) / C); }

void mp__fwd_ln_rstd(mp_tape *t, mp__node *o)
{
    const mp__node *X = mp__nd(t, o->in[0]);
    int32_t C = X->cols;
    for (int32_t i = 0; i < X->rows; i++) {
        const float *restrict x = X->val + (size_t)i * C;
        float mu = row_mean(x, C), acc[8] = {0}; /* two passes: no cancellation */
        int32_t j = 0;
        for (; j + 8 <= C; j += 8)
            for (int l = 0; l < 8; l++) acc[l] += (x[j + l] - mu) * (x[j + l] - mu);
        double v = 0;
        for (; j < C; j++) v += (x[j] - mu) * (x[j] - mu);
        for (int l = 0; l < 8; l++) v += acc[l];
        o->val[i] = (float)(1.0 / sqrt(v / C + o->f));
    }
}
/* dr/dx = -r^3 (x - mean)/C = -(r^2 / C) y with y = (x - mean) r. */
mp_status mp__bwd_ln_rstd(mp_tape *t, mp_var v, mp_var g)
{
    mp_var x = mp__nd(t, v)->in[0], r2, c, y;
    float invc = 1.0f / (float)mp__nd(t, x)->cols;
    MP_TRY(mp__binary(t, MP__OP_LN_APPLY, x, v, &y));
    MP_TRY(mp__mul(t, v, v, 1.0f, &r2));
    MP_TRY(mp__mul(t, g, r2, -invc, &c));
    MP_TRY(mp__mul(t, y, c, 1.0f, &c));
    return mp__acc(t, x, c);
}

void mp__fwd_ln_apply(mp_tape *t, mp__node *o)
{
    const mp__node *X = mp__nd(t, o->in[0]);
    const float *r = mp__nd(t, o->in[1])->val;
    int32_t C = X->cols;
    for (int32_t i = 0; i < X->rows; i++) {
        const float *restrict x = X->val + (size_t)i * C;
        float *restrict y = o->val + (size_t)i * C;
        float mu = row_mean(x, C), ri = r[i];
        for (int32_t j = 0; j < C; j++) y[j] = (x[j] - mu) * ri;
    }
}
/* With r an independent input: dx = r (g - mean(g)), dr = rowsum(g (x - mean)) = rowsum(g y) / r. */
mp_status mp__bwd_ln_apply(mp_tape *t, mp_var v, mp_var g)
{
    mp__node n = *mp__nd(t, v);
    float invc = 1.0f / (float)n.cols;
    mp_var m, c;
    if (mp__need(t, n.in[0])) {
        MP_TRY(mp__sum(t, g, MP_REDUCE_PER_ROW, invc, &m));
        MP_TRY(mp__sub(t, g, m, &c));
        MP_TRY(mp__mul(t, c, n.in[1], 1.0f, &c));
        MP_TRY(mp__acc(t, n.in[0], c));
    }
    if (mp__need(t, n.in[1])) {
        MP_TRY(mp__mul(t, g, v, 1.0f, &c));
        MP_TRY(mp__sum(t, c, MP_REDUCE_PER_ROW, 1.0f, &c));
        MP_TRY(mp__div(t, c, n.in[1], &c));
        MP_TRY(mp__acc(t, n.in[1], c));
    }
    return MP_OK;
}

static mp_status record_ln(mp_tape *t, mp_var x, mp_var gamma, mp_var beta, float eps, mp_var *out)
{
    const mp__node *X = mp__nd(t, x);
    mp_var r, y;
    MP_TRY(mp__record(t, MP__OP_LN_RSTD, X->rows, 1, x, MP_VAR_NONE, NULL, eps, NULL, &r));
    MP_TRY(mp__binary(t, MP__OP_LN_APPLY, x, r, &y));
    if (gamma != MP_VAR_NONE) MP_TRY(mp__mul(t, y, gamma, 1.0f, &y));
    if (beta != MP_VAR_NONE) MP_TRY(mp__add(t, y, beta, &y));
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
