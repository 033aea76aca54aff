/* Layer norm, composed from recorded ops so that every order of derivative
 * comes for free: y = (x - mean) / sqrt(var + eps) * gamma + beta, with the
 * biased variance over each row (as PyTorch's layer_norm). */
#include "tape/tape_internal.h"

static mp_status record_ln(mp_tape *t, mp_var x, mp_var gamma, mp_var beta, float eps, mp_var *out)
{
    float inv = 1.0f / (float)mp__nd(t, x)->cols;
    mp_var mu, xc, sq, var, sd, y;
    MP_TRY(mp__sum(t, x, MP_REDUCE_PER_ROW, inv, &mu));
    MP_TRY(mp__sub(t, x, mu, &xc));
    MP_TRY(mp__unary(t, MP__OP_SQUARE, xc, 0.0f, 0, &sq));
    MP_TRY(mp__sum(t, sq, MP_REDUCE_PER_ROW, inv, &var));
    MP_TRY(mp__add_scalar(t, var, eps, &var));
    MP_TRY(mp__unary(t, MP__OP_SQRT, var, 0.0f, 0, &sd));
    MP_TRY(mp__div(t, xc, sd, &y));
    if (gamma != MP_VAR_NONE) MP_TRY(mp__mul(t, y, gamma, 1.0f, &y));
    if (beta != MP_VAR_NONE) MP_TRY(mp__add(t, y, beta, &y));
    *out = y;
    return MP_OK;
}

static mp_status check_affine(mp_tape *t, const char *fn, const char *arg, mp_var p, int32_t cols)
{
    if (p == MP_VAR_NONE) return MP_OK;
    MP_TRY(mp__check_var(t, fn, arg, p));
    const mp__node *P = mp__nd(t, p);
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
    MP_TRY(check_affine(t, fn, "gamma", gamma, cols));
    MP_TRY(check_affine(t, fn, "beta", beta, cols));
    MP_REQUIRE(eps > 0.0f && eps < 1.0f, t->err, MP_ERR_INVALID_ARGUMENT,
               "%s: eps = %g, expected 0 < eps < 1", fn, (double)eps);
    mp__mark m = mp__tape_mark(t);
    mp_status st = record_ln(t, x, gamma, beta, eps, out);
    if (st != MP_OK) mp__tape_rollback(t, m);
    return st;
}
