/* Tape fast paths added for the second-order meta-step (docs/META.md,
 * performance): closed-form gelu derivatives and the one-pass gelu_mul, the
 * fused derivatives of layer norm, gelu and softmax, the fused forward ops
 * linear and mul_add (third node input), the element-wise kernels' exact
 * bits and the softmax family's lane reductions. Kept apart from
 * test_tape.c so that the two files can change independently. */
#include "test_util.h"

#include "core/internal.h"

#include <float.h>
#include <stdlib.h>
#include <string.h>

/* gelu^(k)(x) in double from the closed forms, phi the normal density:
 * k = 1: Phi + x phi, 2: phi (2 - x^2), 3: phi x (x^2 - 4), 4: phi (-x^4 + 7x^2 - 4). */
static double gelu_deriv_ref(double x, int k)
{
    double phi = exp(-0.5 * x * x) * 0.39894228040143267794, x2 = x * x;
    switch (k) {
    case 1: return 0.5 * erfc(-x / sqrt(2.0)) + x * phi;
    case 2: return phi * (2.0 - x2);
    case 3: return phi * x * (x2 - 4.0);
    default: return phi * (-x2 * x2 + 7.0 * x2 - 4.0);
    }
}

/* Differentiating sum(gelu^(k)(x)) with create_graph gives gelu^(k+1)(x)
 * element-wise, computed by the tape's order-(k+1) gelu node. Orders 2 and
 * 3 use the vectorized closed forms, order 4 the general Hermite path. */
START_TEST(gelu_higher_derivatives_match_closed_forms)
{
    enum { N = 41 };
    float x[N];
    for (int i = 0; i < N - 3; i++) x[i] = -6.0f + 12.0f * (float)i / (float)(N - 4);
    x[N - 3] = 0.0f, x[N - 2] = 14.0f, x[N - 1] = -30.0f; /* the density underflows at the ends */
    mp_tape *t;
    MP_CK_OK(mp_tape_create(&t));
    mp_var xv, cur, s;
    MP_CK_OK(mp_tape_leaf(t, 1, N, x, N, MP_LEAF_REQUIRES_GRAD, &xv));
    MP_CK_OK(mp_gelu(t, xv, &cur));
    for (int k = 1; k <= 4; k++) {
        MP_CK_OK(mp_sum(t, cur, MP_REDUCE_ALL, &s));
        MP_CK_OK(mp_tape_backward(t, s, 1));
        MP_CK_OK(mp_tape_grad(t, xv, &cur));
        float got[N];
        MP_CK_OK(mp_tape_read(t, cur, got, N));
        for (int i = 0; i < N; i++) {
            double want = gelu_deriv_ref(x[i], k);
            ck_assert_msg(fabs(got[i] - want) <= 2e-6 * (1.0 + fabs(want)),
                          "gelu order %d at x = %g: tape %.9g, closed form %.9g", k, (double)x[i],
                          (double)got[i], want);
        }
    }
    mp_tape_destroy(t);
}
END_TEST

/* The constant sweep's fused gelu_mul(g, x) = g gelu^(k)(x), orders 1-4
 * (1-3: the vectorized one-pass loops; 4: the general path), on lengths
 * that leave every vector remainder: differentiating the order-(k-1)
 * derivative recorded with create_graph, times weights w, with create_graph
 * 0 gives w gelu^(k)(x). */
static const int32_t gm_len[] = {1, 7, 9, 17, 33, 1000};
START_TEST(gelu_mul_matches_closed_forms)
{
    int32_t n = gm_len[_i];
    float *x = malloc(n * sizeof *x), *w = malloc(n * sizeof *w), *got = malloc(n * sizeof *got);
    ck_assert(x && w && got);
    for (int32_t i = 0; i < n; i++) {
        x[i] = n == 1 ? 0.7f : -6.0f + 12.0f * (float)((i * 37) % n) / (float)(n - 1);
        w[i] = 0.5f + (float)(i % 5) * 0.25f;
    }
    if (n > 2) x[0] = 14.0f, x[1] = -30.0f; /* the density underflows (not at the end: a loop that stops short) */
    mp_tape *t;
    MP_CK_OK(mp_tape_create(&t));
    for (int k = 1; k <= 4; k++) {
        mp_var xv, wv, cur, s;
        MP_CK_OK(mp_tape_reset(t));
        MP_CK_OK(mp_tape_leaf(t, 1, n, x, n, MP_LEAF_REQUIRES_GRAD, &xv));
        MP_CK_OK(mp_tape_leaf(t, 1, n, w, n, 0, &wv));
        MP_CK_OK(mp_gelu(t, xv, &cur));
        for (int level = 1; level < k; level++) { /* cur = gelu^(level)(x) */
            MP_CK_OK(mp_sum(t, cur, MP_REDUCE_ALL, &s));
            MP_CK_OK(mp_tape_backward(t, s, 1));
            MP_CK_OK(mp_tape_grad(t, xv, &cur));
        }
        MP_CK_OK(mp_mul(t, cur, wv, &s));
        MP_CK_OK(mp_sum(t, s, MP_REDUCE_ALL, &s));
        MP_CK_OK(mp_tape_backward(t, s, 0));
        MP_CK_OK(mp_tape_grad(t, xv, &cur));
        MP_CK_OK(mp_tape_read(t, cur, got, n));
        for (int32_t i = 0; i < n; i++) {
            double want = w[i] * gelu_deriv_ref(x[i], k);
            ck_assert_msg(fabs(got[i] - want) <= 2e-6 * (1.0 + fabs(want)),
                          "gelu_mul order %d, n = %d, x = %g: tape %.9g, closed form %.9g", k, (int)n, (double)x[i],
                          (double)got[i], want);
        }
    }
    mp_tape_destroy(t);
    free(x), free(w), free(got);
}
END_TEST

/* mp__heads_matmul's bad inputs: a clear status, nothing recorded. (Its
 * values and derivatives are checked with the other ops in test_tape.c:
 * cases heads_qk, heads_pv, heads_tn and heads_attention.) */
START_TEST(heads_matmul_rejects_bad_inputs)
{
    static const float x[24] = {0};
    static const int32_t qk[3] = {1, 1, 0}, bad_flag[3] = {2, 1, 0}, neg_flag[3] = {-1, 1, 0};
    mp_tape *t;
    MP_CK_OK(mp_tape_create(&t));
    mp_var q, k, odd, out = 12345;
    MP_CK_OK(mp_tape_leaf(t, 6, 4, x, 24, 0, &q));
    MP_CK_OK(mp_tape_leaf(t, 6, 4, x, 24, 0, &k));
    MP_CK_OK(mp_tape_leaf(t, 4, 6, x, 24, 0, &odd));
    int64_t before, after;
    MP_CK_OK(mp_tape_stat(t, MP_TAPE_STAT_NODES, &before));
    ck_assert_int_eq(mp__heads_matmul(NULL, q, k, 4, 2, 0, 1, qk, 1.0f, &out), MP_ERR_NULL_POINTER);
    ck_assert_int_eq(mp__heads_matmul(t, q, k, 4, 2, 0, 1, qk, 1.0f, NULL), MP_ERR_NULL_POINTER);
    ck_assert_int_eq(mp__heads_matmul(t, q, k + 1000, 4, 2, 0, 1, qk, 1.0f, &out), MP_ERR_UNKNOWN_VARIABLE);
    ck_assert_int_eq(mp__heads_matmul(t, q, k, 4, 2, 0, 1, bad_flag, 1.0f, &out), MP_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(mp__heads_matmul(t, q, k, 4, 2, 0, 1, neg_flag, 1.0f, &out), MP_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(mp__heads_matmul(t, q, k, 4, 2, 2, 1, qk, 1.0f, &out), MP_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(mp__heads_matmul(t, q, k, 5, 2, 0, 1, qk, 1.0f, &out), MP_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(mp__heads_matmul(t, q, k, 4, 0, 0, 1, qk, 1.0f, &out), MP_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(mp__heads_matmul(t, q, k, 4, 2, 0, 1, qk, NAN, &out), MP_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(mp__heads_matmul(t, q, k, 6, 3, 0, 1, qk, 1.0f, &out), MP_ERR_SHAPE_MISMATCH); /* 4 cols, 3 heads */
    ck_assert_int_eq(mp__heads_matmul(t, q, odd, 4, 2, 0, 1, qk, 1.0f, &out), MP_ERR_SHAPE_MISMATCH);
    ck_assert_ptr_nonnull(strstr(mp_tape_error(t), "mp__heads_matmul"));
    ck_assert_int_eq(mp__heads_matmul(t, q, k, 4, 2, 0, 0, qk, 1.0f, &out), MP_ERR_SHAPE_MISMATCH); /* 3x2 by 3x2 */
    MP_CK_OK(mp_tape_stat(t, MP_TAPE_STAT_NODES, &after));
    ck_assert_int_eq(after, before);
    ck_assert_int_eq(out, 12345);
    MP_CK_OK(mp__heads_matmul(t, q, k, 4, 2, 0, 1, qk, 1.0f, &out));
    int32_t r, c;
    MP_CK_OK(mp_tape_shape(t, out, &r, &c));
    ck_assert_int_eq(r, 12);
    ck_assert_int_eq(c, 3);
    mp_tape_destroy(t);
}
END_TEST

/* ---- fused derivatives of every order ---------------------------------------------
 * L(x) = sum(w * y + 0.5 (y * s)^2), y = f(x) for f = layer_norm (with gamma
 * and beta), gelu or softmax, 3 rows of 5. The Hessian-vector product comes
 * from fused nodes when the second sweep records constants and from composed
 * ops when it records a graph: both must agree, and differentiating the
 * composed one once more (third order) must match central differences of
 * u . H(x) v. */
enum { LR = 3, LC = 5, LN = LR * LC };
static const float ln_w[LN] = {0.3f, -0.7f, 1.1f, 0.2f, -0.4f, 0.9f, 0.5f, -1.2f, 0.8f, -0.1f,
                               0.6f, -0.3f, 0.4f, -0.9f, 1.0f};
static const float ln_s[LN] = {1.0f, 0.5f, -0.8f, 1.3f, 0.7f, -0.6f, 0.9f, 1.1f, -0.4f, 0.2f,
                               0.8f, -1.0f, 0.3f, 0.6f, -0.7f};
static const float ln_gamma[LC] = {1.2f, 0.8f, -0.5f, 1.0f, 0.6f}, ln_beta[LC] = {0.1f, -0.2f, 0.3f, 0.0f, 0.5f};

/* The op under test: y = f(x), 3 x 5. */
typedef mp_status (*unary_build)(mp_tape *t, mp_var x, mp_var *y);
static mp_status build_ln(mp_tape *t, mp_var x, mp_var *y)
{
    mp_var gm, bt;
    MP_TRY(mp_tape_leaf(t, 1, LC, ln_gamma, LC, 0, &gm));
    MP_TRY(mp_tape_leaf(t, 1, LC, ln_beta, LC, 0, &bt));
    return mp_layer_norm(t, x, gm, bt, 1e-5f, y);
}
static mp_status build_gelu(mp_tape *t, mp_var x, mp_var *y) { return mp_gelu(t, x, y); }
static mp_status build_softmax(mp_tape *t, mp_var x, mp_var *y) { return mp_softmax(t, x, y); }
static unary_build g_build = build_ln;

/* Records L1 = sum(w * y + 0.5 (y * s)^2) for y (3 x 5). */
static mp_var record_l1(mp_tape *t, mp_var y)
{
    mp_var w, s, p, l;
    MP_CK_OK(mp_tape_leaf(t, LR, LC, ln_w, LN, 0, &w));
    MP_CK_OK(mp_tape_leaf(t, LR, LC, ln_s, LN, 0, &s));
    MP_CK_OK(mp_mul(t, y, w, &l));
    MP_CK_OK(mp_mul(t, y, s, &p));
    MP_CK_OK(mp_mul(t, p, p, &p));
    MP_CK_OK(mp_scale(t, p, 0.5f, &p));
    MP_CK_OK(mp_add(t, l, p, &l));
    MP_CK_OK(mp_sum(t, l, MP_REDUCE_ALL, &l));
    return l;
}

/* Records L(x) and its gradient g (create_graph) and h = sum(g * v); *xv is x. */
static void ln_grad_dot(mp_tape *t, const float *x, const float *v, mp_var *xv, mp_var *h)
{
    mp_var y, p, g, vv;
    MP_CK_OK(mp_tape_reset(t));
    MP_CK_OK(mp_tape_leaf(t, LR, LC, x, LN, MP_LEAF_REQUIRES_GRAD, xv));
    MP_CK_OK(g_build(t, *xv, &y));
    MP_CK_OK(mp_tape_backward(t, record_l1(t, y), 1));
    MP_CK_OK(mp_tape_grad(t, *xv, &g));
    MP_CK_OK(mp_tape_leaf(t, LR, LC, v, LN, 0, &vv));
    MP_CK_OK(mp_mul(t, g, vv, &p));
    MP_CK_OK(mp_sum(t, p, MP_REDUCE_ALL, h));
}

/* H(x) v through the fused (create_graph 0) or composed (1) path. */
static void ln_hvp(mp_tape *t, const float *x, const float *v, int32_t graph, float *hv, mp_var *hvv, mp_var *xv)
{
    mp_var h;
    ln_grad_dot(t, x, v, xv, &h);
    MP_CK_OK(mp_tape_backward(t, h, graph));
    MP_CK_OK(mp_tape_grad(t, *xv, hvv));
    MP_CK_OK(mp_tape_read(t, *hvv, hv, LN));
}

/* _i: 0 layer norm, 1 gelu, 2 softmax (their constant sweeps record one
 * fused node: ln_bwd_y / ln_bwd_r, gelu_mul, softmax_grad_y). Gelu's
 * backward records gelu_mul nodes in both kinds of sweeps, so for gelu the
 * fused-vs-composed comparison is an identity and the third derivative
 * against finite differences carries the check. */
START_TEST(fused_and_composed_derivatives_agree_to_third_order)
{
    static const unary_build builds[3] = {build_ln, build_gelu, build_softmax};
    g_build = builds[_i];
    float x[LN], v[LN], u[LN], hv0[LN], hv1[LN], third[LN];
    for (int i = 0; i < LN; i++) {
        x[i] = (float)(-2.0 + 4.0 * ((i * 37) % LN) / (LN - 1.0)); /* distinct values, both signs */
        v[i] = (float)(0.9 * sin(1.7 * i + 0.3));
        u[i] = (float)(0.8 * cos(0.9 * i + 0.1));
    }
    mp_tape *t;
    MP_CK_OK(mp_tape_create(&t));
    mp_var xv, hvv, p, uv, k, tv;
    ln_hvp(t, x, v, 0, hv0, &hvv, &xv);
    ln_hvp(t, x, v, 1, hv1, &hvv, &xv);
    double scale = 0;
    for (int i = 0; i < LN; i++) scale = fmax(scale, fabs(hv0[i]));
    ck_assert_msg(scale > 0.1, "degenerate Hessian-vector product (max %g)", scale);
    for (int i = 0; i < LN; i++)
        ck_assert_msg(fabs(hv0[i] - hv1[i]) <= 2e-5 * (fabs(hv0[i]) + scale), "HVP %d: fused %.8g, composed %.8g", i,
                      (double)hv0[i], (double)hv1[i]);
    /* Third order: d/dx (u . H(x) v) through the composed graph. */
    MP_CK_OK(mp_tape_leaf(t, LR, LC, u, LN, 0, &uv));
    MP_CK_OK(mp_mul(t, hvv, uv, &p));
    MP_CK_OK(mp_sum(t, p, MP_REDUCE_ALL, &k));
    MP_CK_OK(mp_tape_backward(t, k, 0));
    MP_CK_OK(mp_tape_grad(t, xv, &tv));
    MP_CK_OK(mp_tape_read(t, tv, third, LN));
    double tscale = 0, worst = 0;
    for (int i = 0; i < LN; i++) tscale = fmax(tscale, fabs(third[i]));
    ck_assert_msg(tscale > 0.02, "degenerate third derivative (max %g)", tscale);
    for (int i = 0; i < LN; i++) {
        const float eps = 1e-2f, x0 = x[i];
        float hp[LN], hm[LN];
        x[i] = x0 + eps;
        ln_hvp(t, x, v, 0, hp, &hvv, &xv);
        x[i] = x0 - eps;
        ln_hvp(t, x, v, 0, hm, &hvv, &xv);
        x[i] = x0;
        double fd = 0;
        for (int j = 0; j < LN; j++) fd += (double)u[j] * ((double)hp[j] - (double)hm[j]) / (2.0 * eps);
        double err = fabs(fd - third[i]) / (fabs(fd) + 0.1 * tscale);
        if (err > worst) worst = err;
        ck_assert_msg(err <= 5e-3, "third derivative %d: tape %.7g, finite difference %.7g", i, (double)third[i], fd);
    }
    mp_tape_destroy(t);
}
END_TEST

/* Second-order sweeps through a layer norm: dL2/dx equals the same
 * computation composed of primitive ops (mean, sub, mul, sqrt, div), for
 * L1 = sum(w y + 0.5 (y s)^2), gx = dL1/dx with create_graph, L2 = sum(gx c),
 * from a constant and from a graph sweep. The adjoint of the norm's own
 * output y depends on which values the recorded backward reads (the fused
 * ln_bwd reads y, a composed one reads x - mean and r), so it is checked for
 * consistency instead: the same from a full sweep and from a sweep pruned
 * to y (mp_tape_backward_wrt), and not missing ln_bwd's share (it differs
 * from the share through the first backward's other consumers alone). */
static void ln_or_composed(mp_tape *t, const float *x, int composed, int32_t graph, int pruned, float *gy,
                           float *gx)
{
    static const float c[LN] = {0.7f, -0.2f, 0.5f, 1.1f, -0.9f, 0.3f, 0.8f, -0.6f, 0.4f, 0.1f,
                                -0.5f, 0.9f, -0.3f, 0.6f, 0.2f};
    static const float ones[LR] = {1, 1, 1};
    mp_var xv, y, p, g, cv, grad;
    MP_CK_OK(mp_tape_reset(t));
    MP_CK_OK(mp_tape_leaf(t, LR, LC, x, LN, MP_LEAF_REQUIRES_GRAD, &xv));
    if (composed) {
        mp_var mu, xc, var, r, one;
        MP_CK_OK(mp_mean(t, xv, MP_REDUCE_PER_ROW, &mu));
        MP_CK_OK(mp_sub(t, xv, mu, &xc));
        MP_CK_OK(mp_mul(t, xc, xc, &var));
        MP_CK_OK(mp_mean(t, var, MP_REDUCE_PER_ROW, &var));
        MP_CK_OK(mp_add_scalar(t, var, 1e-5f, &var));
        MP_CK_OK(mp_sqrt(t, var, &r));
        MP_CK_OK(mp_tape_leaf(t, LR, 1, ones, LR, 0, &one));
        MP_CK_OK(mp_div(t, one, r, &r));
        MP_CK_OK(mp_mul(t, xc, r, &y));
    } else {
        MP_CK_OK(mp_layer_norm(t, xv, MP_VAR_NONE, MP_VAR_NONE, 1e-5f, &y));
    }
    MP_CK_OK(mp_tape_backward(t, record_l1(t, y), 1));
    MP_CK_OK(mp_tape_grad(t, xv, &g));
    MP_CK_OK(mp_tape_leaf(t, LR, LC, c, LN, 0, &cv));
    MP_CK_OK(mp_mul(t, g, cv, &p));
    MP_CK_OK(mp_sum(t, p, MP_REDUCE_ALL, &p));
    if (pruned) {
        MP_CK_OK(mp_tape_backward_wrt(t, p, graph, &y, 1));
    } else {
        MP_CK_OK(mp_tape_backward(t, p, graph));
    }
    MP_CK_OK(mp_tape_grad(t, y, &grad));
    MP_CK_OK(mp_tape_read(t, grad, gy, LN));
    MP_CK_OK(mp_tape_grad(t, xv, &grad));
    MP_CK_OK(mp_tape_read(t, grad, gx, LN));
}

START_TEST(layer_norm_second_order_gradients_are_consistent)
{
    float x[LN], gy[2][LN], gx[2][LN], gyw[LN], gxw[LN];
    for (int i = 0; i < LN; i++) x[i] = (float)(-2.0 + 4.0 * ((i * 37) % LN) / (LN - 1.0));
    mp_tape *t;
    MP_CK_OK(mp_tape_create(&t));
    for (int32_t graph = 0; graph <= 1; graph++) {
        ln_or_composed(t, x, 1, graph, 0, gy[0], gx[0]);
        ln_or_composed(t, x, 0, graph, 0, gy[1], gx[1]);
        double sx = 0, sy = 0, diff = 0;
        for (int i = 0; i < LN; i++) sx = fmax(sx, fabs(gx[0][i])), sy = fmax(sy, fabs(gy[1][i]));
        ck_assert_msg(sx > 0.1 && sy > 0.1, "degenerate gradients (%g, %g)", sx, sy);
        for (int i = 0; i < LN; i++)
            ck_assert_msg(fabs(gx[1][i] - gx[0][i]) <= 1e-4 * (fabs(gx[0][i]) + sx),
                          "graph %d, dL2/dx %d: layer_norm %.7g, composed %.7g", graph, i, gx[1][i], gx[0][i]);
        /* Pruned to y: the same adjoint of y. */
        ln_or_composed(t, x, 0, graph, 1, gyw, gxw);
        for (int i = 0; i < LN; i++) {
            ck_assert_msg(gyw[i] == gy[1][i], "graph %d, dL2/dy %d: pruned %.9g, full %.9g", graph, i, gyw[i],
                          gy[1][i]);
            diff = fmax(diff, fabs(gy[1][i] - gy[0][i]));
        }
        ck_assert_msg(diff > 1e-2, "graph %d: the norm's output got no share from ln_bwd", graph);
    }
    mp_tape_destroy(t);
}
END_TEST

/* mp__tape_truncate keeps what was recorded before the point, drops the rest
 * and every gradient, and refuses a point from before a reset. */
START_TEST(truncate_keeps_the_prefix_and_drops_gradients)
{
    static const float x[4] = {1, 2, 3, 4};
    mp_tape *t;
    MP_CK_OK(mp_tape_create(&t));
    mp_var a, b, c, s, g;
    MP_CK_OK(mp_tape_leaf(t, 2, 2, x, 4, MP_LEAF_REQUIRES_GRAD, &a));
    MP_CK_OK(mp_tanh(t, a, &b));
    mp__tape_point p = mp__tape_here(t);
    int64_t used0, n;
    MP_CK_OK(mp_tape_stat(t, MP_TAPE_STAT_ARENA_USED, &used0));
    MP_CK_OK(mp_mul(t, b, b, &c));
    MP_CK_OK(mp_sum(t, c, MP_REDUCE_ALL, &s));
    MP_CK_OK(mp_tape_backward(t, s, 1));
    MP_CK_OK(mp_tape_grad(t, a, &g));
    ck_assert_int_eq(mp__tape_truncate(t, &p), 1);
    MP_CK_OK(mp_tape_stat(t, MP_TAPE_STAT_NODES, &n));
    ck_assert_int_eq(n, 2);
    MP_CK_OK(mp_tape_stat(t, MP_TAPE_STAT_ARENA_USED, &n));
    ck_assert_int_eq(n, used0);
    ck_assert_int_eq(mp_tape_grad(t, a, &g), MP_ERR_STATE);      /* gradients dropped */
    ck_assert_int_eq(mp_tape_read(t, c, (float[4]){0}, 4), MP_ERR_UNKNOWN_VARIABLE); /* c dropped */
    float bv[4];
    MP_CK_OK(mp_tape_read(t, b, bv, 4)); /* b kept, values intact */
    for (int i = 0; i < 4; i++) ck_assert_float_eq(bv[i], tanhf(x[i]));
    /* Recording goes on from the point: a new product of b differentiates. */
    MP_CK_OK(mp_mul(t, b, b, &c));
    MP_CK_OK(mp_sum(t, c, MP_REDUCE_ALL, &s));
    MP_CK_OK(mp_tape_backward(t, s, 0));
    MP_CK_OK(mp_tape_grad(t, a, &g));
    float gv[4];
    MP_CK_OK(mp_tape_read(t, g, gv, 4));
    for (int i = 0; i < 4; i++) {
        float th = tanhf(x[i]);
        ck_assert_float_eq_tol(gv[i], 2 * th * (1 - th * th), 1e-6f);
    }
    MP_CK_OK(mp_tape_reset(t));
    ck_assert_int_eq(mp__tape_truncate(t, &p), 0); /* a point from before the reset */
    MP_CK_OK(mp_tape_stat(t, MP_TAPE_STAT_NODES, &n));
    ck_assert_int_eq(n, 0);
    mp_tape_destroy(t);
}
END_TEST

/* ---- fused linear (op(a) op(b) + bias) and mul_add (x * s + b) ----------------------- */
static int64_t nodes_of(const mp_tape *t, int32_t stat)
{
    int64_t v = -1;
    MP_CK_OK(mp_tape_stat(t, stat, &v));
    return v;
}

/* mp__linear against a double-precision reference of op(a) op(b) + bias on
 * every path of the plain product: one sgemm (m <= 64; a transposed; b
 * transposed but too large for the tape's transposed copy) and 64-row
 * blocks (m = 65 and 150: a partial last block; b transposed through the
 * copy). The bias entries (0.5..1 in magnitude) are far above the
 * tolerance, so a block whose bias were skipped or added twice fails. Also:
 * one variable and no intermediate on the arena (the output only), and the
 * same values as mp_matmul then mp_add to rounding. */
START_TEST(linear_adds_the_bias_once_to_every_row)
{
    static const struct {
        int32_t m, k, n, ta, tb;
    } sh[] = {{1, 3, 7, 0, 0},   {5, 4, 3, 0, 0},     {64, 8, 5, 0, 0},    {65, 8, 5, 0, 0},  {150, 64, 64, 0, 0},
              {150, 16, 9, 0, 1}, {130, 130, 130, 0, 1}, {70, 6, 5, 1, 0}, {70, 6, 5, 1, 1}};
    mp_tape *t;
    MP_CK_OK(mp_tape_create(&t));
    for (size_t c = 0; c < sizeof sh / sizeof sh[0]; c++) {
        int32_t m = sh[c].m, k = sh[c].k, n = sh[c].n, ta = sh[c].ta, tb = sh[c].tb;
        float *a = malloc((size_t)m * k * sizeof(float)), *b = malloc((size_t)k * n * sizeof(float));
        float *bias = malloc((size_t)n * sizeof(float)), *got = malloc((size_t)m * n * sizeof(float));
        float *pair = malloc((size_t)m * n * sizeof(float));
        for (int32_t i = 0; i < m * k; i++) a[i] = sinf(0.37f * (float)i + 0.1f);
        for (int32_t i = 0; i < k * n; i++) b[i] = sinf(0.73f * (float)i + 0.5f);
        for (int32_t j = 0; j < n; j++) bias[j] = (j % 2 ? -1.0f : 1.0f) * (0.5f + 0.5f * fabsf(sinf(1.1f * (float)j)));
        MP_CK_OK(mp_tape_reset(t));
        mp_var av, bv, zv, out, z, sum;
        MP_CK_OK(mp_tape_leaf(t, ta ? k : m, ta ? m : k, a, (size_t)m * k, 0, &av));
        MP_CK_OK(mp_tape_leaf(t, tb ? n : k, tb ? k : n, b, (size_t)k * n, 0, &bv));
        MP_CK_OK(mp_tape_leaf(t, 1, n, bias, (size_t)n, 0, &zv));
        int64_t n0 = nodes_of(t, MP_TAPE_STAT_NODES), u0 = nodes_of(t, MP_TAPE_STAT_ARENA_USED);
        MP_CK_OK(mp__linear(t, av, bv, zv, ta, tb, &out));
        ck_assert_int_eq(nodes_of(t, MP_TAPE_STAT_NODES), n0 + 1);
        ck_assert_int_eq(nodes_of(t, MP_TAPE_STAT_ARENA_USED), u0 + (((int64_t)m * n * 4 + 63) & ~(int64_t)63));
        int32_t r, cc;
        MP_CK_OK(mp_tape_shape(t, out, &r, &cc));
        ck_assert(r == m && cc == n);
        MP_CK_OK(mp_tape_read(t, out, got, (size_t)m * n));
        MP_CK_OK(mp_matmul(t, av, bv, ta, tb, &z));
        MP_CK_OK(mp_add(t, z, zv, &sum));
        MP_CK_OK(mp_tape_read(t, sum, pair, (size_t)m * n));
        for (int32_t i = 0; i < m; i++)
            for (int32_t j = 0; j < n; j++) {
                double ref = bias[j], mag = fabs(bias[j]);
                for (int32_t q = 0; q < k; q++) {
                    double x = ta ? a[(size_t)q * m + i] : a[(size_t)i * k + q];
                    double y = tb ? b[(size_t)j * k + q] : b[(size_t)q * n + j];
                    ref += x * y;
                    mag += fabs(x * y);
                }
                float g = got[(size_t)i * n + j], p = pair[(size_t)i * n + j];
                ck_assert_msg(fabs(g - ref) <= 1e-5 * mag,
                              "%dx%dx%d ta %d tb %d: out[%d][%d] = %.8g, reference %.8g (bias %.4g)", (int)m, (int)k,
                              (int)n, (int)ta, (int)tb, (int)i, (int)j, (double)g, ref, (double)bias[j]);
                ck_assert_msg(fabs(g - p) <= 4 * FLT_EPSILON * mag,
                              "%dx%dx%d ta %d tb %d: out[%d][%d] = %.9g, matmul then add %.9g", (int)m, (int)k,
                              (int)n, (int)ta, (int)tb, (int)i, (int)j, (double)g, (double)p);
            }
        free(a), free(b), free(bias), free(got), free(pair);
    }
    mp_tape_destroy(t);
}
END_TEST

/* The fused ops and the pairs they replace, out = f(x0, x1, x2):
 * mp__linear / matmul + add (70 rows: two row blocks), layer norm with both
 * gamma and beta (mul_add) / plain layer norm + mul + add, and
 * mp__scale_shift per row / mul + add. */
typedef mp_status (*tri_build)(mp_tape *t, const mp_var *x, int fused, mp_var *out);
static mp_status tri_linear(mp_tape *t, const mp_var *x, int fused, mp_var *out)
{
    mp_var z;
    if (fused) return mp__linear(t, x[0], x[1], x[2], 0, 0, out);
    MP_TRY(mp_matmul(t, x[0], x[1], 0, 0, &z));
    return mp_add(t, z, x[2], out);
}
static mp_status tri_layer_norm(mp_tape *t, const mp_var *x, int fused, mp_var *out)
{
    mp_var y;
    if (fused) return mp_layer_norm(t, x[0], x[1], x[2], 1e-5f, out);
    MP_TRY(mp_layer_norm(t, x[0], MP_VAR_NONE, MP_VAR_NONE, 1e-5f, &y));
    MP_TRY(mp_mul(t, y, x[1], &y));
    return mp_add(t, y, x[2], out);
}
static mp_status tri_scale_shift(mp_tape *t, const mp_var *x, int fused, mp_var *out)
{
    mp_var y;
    if (fused) return mp__scale_shift(t, x[0], x[1], x[2], out);
    MP_TRY(mp_mul(t, x[0], x[1], &y));
    return mp_add(t, y, x[2], out);
}
enum { TRI_MAXN = 512 };
typedef struct {
    const char *name;
    int32_t r[3], c[3];
    tri_build f;
    int exact; /* the pair's values bit for bit (no BLAS involved) */
} tricase;
static const tricase tricases[] = {
    {"linear", {70, 3, 1}, {3, 4, 4}, tri_linear, 0},
    {"layer norm affine", {4, 1, 1}, {5, 5, 5}, tri_layer_norm, 1},
    {"scale_shift per row", {4, 4, 4}, {5, 1, 1}, tri_scale_shift, 1},
};
typedef float tri_vals[3][TRI_MAXN];

/* Records L = sum(W * out + 0.5 out^2) (W fixed); leaf i requires a
 * gradient when bit i of mask is set. */
static mp_var tri_loss(mp_tape *t, const tricase *c, tri_vals x, int mask, int fused, mp_var *xv)
{
    static float w[TRI_MAXN];
    for (int i = 0; i < TRI_MAXN; i++) w[i] = sinf(0.9f * (float)i + 0.4f);
    for (int i = 0; i < 3; i++)
        MP_CK_OK(mp_tape_leaf(t, c->r[i], c->c[i], x[i], (size_t)(c->r[i] * c->c[i]),
                              (mask >> i & 1) ? MP_LEAF_REQUIRES_GRAD : 0, &xv[i]));
    mp_var out, wv, half, l;
    MP_CK_OK(c->f(t, xv, fused, &out));
    int32_t r, cc;
    MP_CK_OK(mp_tape_shape(t, out, &r, &cc));
    ck_assert_int_le(r * cc, TRI_MAXN);
    MP_CK_OK(mp_tape_leaf(t, r, cc, w, (size_t)(r * cc), 0, &wv));
    MP_CK_OK(mp_scale(t, out, 0.5f, &half));
    MP_CK_OK(mp_add(t, wv, half, &half));
    MP_CK_OK(mp_mul(t, out, half, &l));
    MP_CK_OK(mp_sum(t, l, MP_REDUCE_ALL, &l));
    return l;
}

static double tri_eval(mp_tape *t, const tricase *c, tri_vals x, int mask)
{
    mp_var xv[3];
    float v;
    MP_CK_OK(mp_tape_reset(t));
    MP_CK_OK(mp_tape_scalar(t, tri_loss(t, c, x, mask, 1, xv), &v));
    return v;
}

/* Gradients of L for the three inputs (zeros for those not requiring one);
 * with dir != NULL the Hessian-vector product along dir (through
 * create_graph) instead; with wrt >= 0 the gradient of that input from a
 * sweep pruned to it (mp_tape_backward_wrt). */
static void tri_grads(mp_tape *t, const tricase *c, tri_vals x, int mask, int fused, tri_vals dir, int wrt,
                      tri_vals g)
{
    mp_var xv[3], gv[3];
    MP_CK_OK(mp_tape_reset(t));
    mp_var l = tri_loss(t, c, x, mask, fused, xv);
    if (wrt >= 0) {
        MP_CK_OK(mp_tape_backward_wrt(t, l, 0, &xv[wrt], 1));
        MP_CK_OK(mp_tape_grad(t, xv[wrt], &gv[0]));
        MP_CK_OK(mp_tape_read(t, gv[0], g[wrt], TRI_MAXN));
        return;
    }
    MP_CK_OK(mp_tape_backward(t, l, dir != NULL));
    for (int i = 0; i < 3; i++) MP_CK_OK(mp_tape_grad(t, xv[i], &gv[i]));
    if (dir) {
        mp_var s = MP_VAR_NONE, dv, p;
        for (int i = 0; i < 3; i++) {
            if (!(mask >> i & 1)) continue;
            MP_CK_OK(mp_tape_leaf(t, c->r[i], c->c[i], dir[i], (size_t)(c->r[i] * c->c[i]), 0, &dv));
            MP_CK_OK(mp_mul(t, gv[i], dv, &p));
            MP_CK_OK(mp_sum(t, p, MP_REDUCE_ALL, &p));
            if (s == MP_VAR_NONE) s = p;
            else MP_CK_OK(mp_add(t, s, p, &s));
        }
        MP_CK_OK(mp_tape_backward(t, s, 0));
        for (int i = 0; i < 3; i++) MP_CK_OK(mp_tape_grad(t, xv[i], &gv[i]));
    }
    for (int i = 0; i < 3; i++) MP_CK_OK(mp_tape_read(t, gv[i], g[i], TRI_MAXN));
}

static void tri_close(const char *what, const tricase *c, int mask, int i, const float *got, const double *want,
                      int n, double rtol)
{
    double scale = 1e-3;
    for (int k = 0; k < n; k++) scale = fmax(scale, fabs(want[k]));
    for (int k = 0; k < n; k++)
        ck_assert_msg(fabs(got[k] - want[k]) <= rtol * (fabs(want[k]) + 0.1 * scale),
                      "%s, inputs requiring gradients 0x%x: %s of input %d element %d: %.7g, expected %.7g", c->name,
                      mask, what, i, k, (double)got[k], want[k]);
}

/* _i = case * 8 + mask: every subset of the three inputs requires a
 * gradient (a constant bias, gamma or beta, as the backbone's in the
 * prompt-tuning scopes, or one that is learned). Gradients and
 * Hessian-vector products against central differences, and against the
 * composed pair (bit for bit where no BLAS is involved); gradients from a
 * sweep pruned to one input equal the full sweep's (the third input is
 * seen by the requires-grad flag and by backward_wrt's dependency marking:
 * with only the bias requiring a gradient, or pruned to the bias, it would
 * otherwise get none). */
START_TEST(fused_ops_differentiate_like_the_pair_for_every_constant_input)
{
    const tricase *c = &tricases[_i / 8];
    int mask = _i % 8;
    if (mask == 0) return; /* nothing to differentiate */
    static tri_vals x, dir, tmp, g, g2, hv, hv2, gp, gm, gw;
    int n[3];
    for (int i = 0; i < 3; i++) {
        n[i] = c->r[i] * c->c[i];
        for (int k = 0; k < n[i]; k++) {
            x[i][k] = sinf(1.3f * (float)k + 0.7f * (float)i + 0.2f) * (i == 0 && c->f == tri_layer_norm ? 2.5f : 1.0f);
            dir[i][k] = (mask >> i & 1) ? cosf(0.8f * (float)k + 1.1f * (float)i) : 0.0f;
        }
    }
    mp_tape *t;
    MP_CK_OK(mp_tape_create(&t));
    tri_grads(t, c, x, mask, 1, NULL, -1, g);
    tri_grads(t, c, x, mask, 0, NULL, -1, g2);
    tri_grads(t, c, x, mask, 1, dir, -1, hv);
    tri_grads(t, c, x, mask, 0, dir, -1, hv2);
    double fd[TRI_MAXN], pair[TRI_MAXN], gscale = 0, hscale = 0;
    for (int i = 0; i < 3; i++) {
        for (int k = 0; k < n[i]; k++) gscale = fmax(gscale, fabs(g[i][k])), hscale = fmax(hscale, fabs(hv[i][k]));
        if (!(mask >> i & 1)) { /* a constant: zero gradient */
            for (int k = 0; k < n[i]; k++) ck_assert(g[i][k] == 0.0f && hv[i][k] == 0.0f);
            continue;
        }
        for (int k = 0; k < n[i]; k++) {
            const float h = 1e-2f;
            memcpy(tmp, x, sizeof tmp);
            tmp[i][k] = x[i][k] + h;
            double lp = tri_eval(t, c, tmp, mask);
            tmp[i][k] = x[i][k] - h;
            fd[k] = (lp - tri_eval(t, c, tmp, mask)) / (2.0 * h);
        }
        tri_close("gradient vs finite differences", c, mask, i, g[i], fd, n[i], 5e-3);
        for (int k = 0; k < n[i]; k++) pair[k] = g2[i][k];
        tri_close("gradient vs the pair", c, mask, i, g[i], pair, n[i], c->exact ? 0.0 : 1e-6);
        for (int k = 0; k < n[i]; k++) pair[k] = hv2[i][k];
        tri_close("Hessian-vector product vs the pair", c, mask, i, hv[i], pair, n[i], c->exact ? 0.0 : 1e-6);
        tri_grads(t, c, x, mask, 1, NULL, i, gw);
        for (int k = 0; k < n[i]; k++)
            ck_assert_msg(gw[i][k] == g[i][k], "%s, mask 0x%x: pruned gradient of input %d element %d: %.9g, full %.9g",
                          c->name, mask, i, k, (double)gw[i][k], (double)g[i][k]);
    }
    ck_assert_msg(gscale > 0.1, "%s, mask 0x%x: degenerate gradients (max %g)", c->name, mask, gscale);
    /* Second order: differences of gradients along dir (zero on the constants). */
    const float h = 3e-3f;
    for (int s = 0; s < 2; s++) {
        for (int i = 0; i < 3; i++)
            for (int k = 0; k < n[i]; k++) tmp[i][k] = x[i][k] + (s ? -h : h) * dir[i][k];
        tri_grads(t, c, tmp, mask, 1, NULL, -1, s ? gm : gp);
    }
    for (int i = 0; i < 3; i++) {
        if (!(mask >> i & 1)) continue;
        for (int k = 0; k < n[i]; k++) fd[k] = ((double)gp[i][k] - gm[i][k]) / (2.0 * h);
        tri_close("Hessian-vector product vs finite differences", c, mask, i, hv[i], fd, n[i], 5e-3);
    }
    mp_tape_destroy(t);
}
END_TEST

/* A fused op whose inputs are the same variable (x * x + x, x * s + x, a b + b
 * with b a row, a b + a with a a row): the gradients (plain, pruned to the
 * leaves, recycling, and the Hessian-vector product of a create_graph
 * sweep) are those of the composed pair, bit for bit for mul_add and to
 * rounding for linear (whose bits depend on the BLAS kernel), and the
 * recycling sweep's equal the pruned sweep's bit for bit. Each leaf
 * requires a gradient, and the shared leaf gets the shares of every input
 * it is. */
enum { AL_R = 70, AL_C = 6 };
static float al_x[AL_R * AL_C], al_s[AL_C * AL_C], al_w[AL_R * AL_C]; /* al_s: s, b (1 x C) or b (C x C) */

/* Leaf shapes and the fused op of case c (0-3); x[0] is the shared leaf. */
static void al_shapes(int c, int32_t r[2], int32_t cc[2])
{
    static const int32_t shapes[4][4] = {{AL_R, AL_C, 0, 0}, {AL_R, AL_C, 1, AL_C}, {AL_R, 1, 1, AL_C}, {1, AL_C, AL_C, AL_C}};
    r[0] = shapes[c][0], cc[0] = shapes[c][1], r[1] = shapes[c][2], cc[1] = shapes[c][3];
}
static mp_status al_op(mp_tape *t, int c, const mp_var *v, int fused, mp_var *out)
{
    mp_var p;
    switch (c) {
    case 0: /* x * x + x */
        if (fused) return mp__scale_shift(t, v[0], v[0], v[0], out);
        MP_TRY(mp_mul(t, v[0], v[0], &p));
        return mp_add(t, p, v[0], out);
    case 1: /* x * s + x */
        if (fused) return mp__scale_shift(t, v[0], v[1], v[0], out);
        MP_TRY(mp_mul(t, v[0], v[1], &p));
        return mp_add(t, p, v[0], out);
    case 2: /* a b + b, b the bias row (k = 1) */
        if (fused) return mp__linear(t, v[0], v[1], v[1], 0, 0, out);
        MP_TRY(mp_matmul(t, v[0], v[1], 0, 0, &p));
        return mp_add(t, p, v[1], out);
    default: /* a b + a, a the bias row (m = 1) */
        if (fused) return mp__linear(t, v[0], v[1], v[0], 0, 0, out);
        MP_TRY(mp_matmul(t, v[0], v[1], 0, 0, &p));
        return mp_add(t, p, v[0], out);
    }
}

/* sweep: 0 backward, 1 backward_wrt the leaves, 2 recycling, 3 the
 * gradient of sum(g . g) over the leaves' gradients g (create_graph). */
static void al_grads(mp_tape *t, int c, int fused, int sweep, float g[2][AL_R * AL_C])
{
    int32_t r[2], cc[2];
    al_shapes(c, r, cc);
    int nl = r[1] ? 2 : 1;
    mp_var v[2], y, wv, l, gv;
    MP_CK_OK(mp_tape_reset(t));
    MP_CK_OK(mp_tape_leaf(t, r[0], cc[0], al_x, (size_t)r[0] * cc[0], MP_LEAF_REQUIRES_GRAD, &v[0]));
    if (nl == 2) MP_CK_OK(mp_tape_leaf(t, r[1], cc[1], al_s, (size_t)r[1] * cc[1], MP_LEAF_REQUIRES_GRAD, &v[1]));
    MP_CK_OK(al_op(t, c, v, fused, &y));
    int32_t yr, yc;
    MP_CK_OK(mp_tape_shape(t, y, &yr, &yc));
    MP_CK_OK(mp_tape_leaf(t, yr, yc, al_w, (size_t)yr * yc, 0, &wv));
    MP_CK_OK(mp_mul(t, y, y, &l));
    MP_CK_OK(mp_mul(t, l, wv, &l));
    MP_CK_OK(mp_sum(t, l, MP_REDUCE_ALL, &l));
    if (sweep == 0) MP_CK_OK(mp_tape_backward(t, l, 0));
    if (sweep == 1) MP_CK_OK(mp_tape_backward_wrt(t, l, 0, v, (size_t)nl));
    if (sweep == 2) MP_CK_OK(mp__tape_backward_wrt_recycle(t, l, v, (size_t)nl));
    if (sweep == 3) {
        mp_var s = MP_VAR_NONE, q;
        MP_CK_OK(mp_tape_backward(t, l, 1));
        for (int i = 0; i < nl; i++) {
            MP_CK_OK(mp_tape_grad(t, v[i], &gv));
            MP_CK_OK(mp_mul(t, gv, gv, &q));
            MP_CK_OK(mp_sum(t, q, MP_REDUCE_ALL, &q));
            if (s == MP_VAR_NONE) s = q;
            else MP_CK_OK(mp_add(t, s, q, &s));
        }
        MP_CK_OK(mp_tape_backward(t, s, 0));
    }
    for (int i = 0; i < nl; i++) {
        MP_CK_OK(mp_tape_grad(t, v[i], &gv));
        MP_CK_OK(mp_tape_read(t, gv, g[i], (size_t)r[i] * cc[i]));
    }
}

START_TEST(fused_ops_with_aliased_inputs_match_the_pair)
{
    static float gf[2][AL_R * AL_C], gp[2][AL_R * AL_C], gw[2][AL_R * AL_C];
    for (int i = 0; i < AL_R * AL_C; i++) {
        al_x[i] = 0.9f * sinf(0.61f * (float)i + 0.3f);
        al_w[i] = cosf(0.37f * (float)i) + 0.25f;
    }
    for (int j = 0; j < AL_C * AL_C; j++) al_s[j] = 0.6f + 0.5f * sinf(1.3f * (float)j);
    mp_tape *t;
    MP_CK_OK(mp_tape_create(&t));
    for (int c = 0; c < 4; c++) {
        int32_t r[2], cc[2];
        al_shapes(c, r, cc);
        int nl = r[1] ? 2 : 1, exact = c < 2;
        for (int sweep = 0; sweep < 4; sweep++) {
            memset(gf, 0, sizeof gf), memset(gp, 0, sizeof gp);
            al_grads(t, c, 1, sweep, gf);
            al_grads(t, c, 0, sweep, gp);
            for (int i = 0; i < nl; i++) {
                size_t n = (size_t)r[i] * cc[i];
                double scale = 0;
                for (size_t k = 0; k < n; k++) scale = fmax(scale, fabs(gp[i][k]));
                ck_assert_msg(scale > 0.1, "case %d sweep %d leaf %d: degenerate gradient (max %g)", c, sweep, i, scale);
                for (size_t k = 0; k < n; k++)
                    ck_assert_msg(exact ? gf[i][k] == gp[i][k] : fabs(gf[i][k] - gp[i][k]) <= 1e-6 * scale,
                                  "case %d sweep %d leaf %d element %zu: fused %.9g, pair %.9g", c, sweep, i, k,
                                  (double)gf[i][k], (double)gp[i][k]);
            }
            if (sweep == 2) { /* recycling: the pruned sweep's bits */
                memset(gw, 0, sizeof gw);
                al_grads(t, c, 1, 1, gw);
                ck_assert_msg(memcmp(gf, gw, sizeof gf) == 0, "case %d: recycling and pruned sweeps differ", c);
            }
        }
    }
    mp_tape_destroy(t);
}
END_TEST

/* Bad inputs of the two internal fused ops: a clear status naming the
 * function and the argument, nothing recorded. */
START_TEST(linear_and_scale_shift_reject_bad_inputs)
{
    static const float z[20] = {0};
    mp_tape *t;
    MP_CK_OK(mp_tape_create(&t));
    mp_var a, w, b15, b14, b25, s31, out = 12345;
    MP_CK_OK(mp_tape_leaf(t, 3, 4, z, 12, 0, &a));
    MP_CK_OK(mp_tape_leaf(t, 4, 5, z, 20, 0, &w));
    MP_CK_OK(mp_tape_leaf(t, 1, 5, z, 5, 0, &b15));
    MP_CK_OK(mp_tape_leaf(t, 1, 4, z, 4, 0, &b14));
    MP_CK_OK(mp_tape_leaf(t, 2, 5, z, 10, 0, &b25));
    MP_CK_OK(mp_tape_leaf(t, 3, 1, z, 3, 0, &s31));
    int64_t before = nodes_of(t, MP_TAPE_STAT_NODES), used = nodes_of(t, MP_TAPE_STAT_ARENA_USED);
#define REJECTS(call, status, text)                                                        \
    do {                                                                                   \
        MP_CK_STATUS(call, status);                                                        \
        MP_CK_ERROR_MENTIONS(text);                                                        \
    } while (0)
    REJECTS(mp__linear(NULL, a, w, b15, 0, 0, &out), MP_ERR_NULL_POINTER, "mp__linear: argument 'tape' is NULL");
    REJECTS(mp__linear(t, a, w, b15, 0, 0, NULL), MP_ERR_NULL_POINTER, "mp__linear: argument 'out'");
    REJECTS(mp__linear(t, a, w, b14, 0, 0, &out), MP_ERR_SHAPE_MISMATCH, "mp__linear: bias is 1x4, expected 1x5");
    REJECTS(mp__linear(t, a, w, b25, 0, 0, &out), MP_ERR_SHAPE_MISMATCH, "bias is 2x5, expected 1x5");
    REJECTS(mp__linear(t, a, a, b15, 0, 0, &out), MP_ERR_SHAPE_MISMATCH, "mp__linear: inner dimensions differ");
    REJECTS(mp__linear(t, a, w, b15, 0, 2, &out), MP_ERR_INVALID_ARGUMENT, "trans_b = 2");
    REJECTS(mp__linear(t, a, w, 99, 0, 0, &out), MP_ERR_UNKNOWN_VARIABLE, "mp__linear: argument 'bias' = 99");
    REJECTS(mp__linear(t, a, w, MP_VAR_NONE, 0, 0, &out), MP_ERR_UNKNOWN_VARIABLE, "'bias' = -1");
    REJECTS(mp__scale_shift(NULL, a, b14, b14, &out), MP_ERR_NULL_POINTER, "mp__scale_shift: argument 'tape'");
    REJECTS(mp__scale_shift(t, a, b14, b14, NULL), MP_ERR_NULL_POINTER, "mp__scale_shift: argument 'out'");
    REJECTS(mp__scale_shift(t, a, b15, b14, &out), MP_ERR_SHAPE_MISMATCH,
            "mp__scale_shift: s 1x5 and b 1x4 do not broadcast to x 3x4");
    REJECTS(mp__scale_shift(t, a, s31, b25, &out), MP_ERR_SHAPE_MISMATCH, "b 2x5");
    REJECTS(mp__scale_shift(t, s31, a, s31, &out), MP_ERR_SHAPE_MISMATCH, "s 3x4"); /* s wider than x */
    REJECTS(mp__scale_shift(t, a, 99, b14, &out), MP_ERR_UNKNOWN_VARIABLE, "mp__scale_shift: argument 's' = 99");
#undef REJECTS
    ck_assert_int_eq(nodes_of(t, MP_TAPE_STAT_NODES), before);
    ck_assert_int_eq(nodes_of(t, MP_TAPE_STAT_ARENA_USED), used);
    ck_assert_int_eq(out, 12345);
    int32_t r, c;
    MP_CK_OK(mp__linear(t, a, w, b15, 0, 0, &out));
    MP_CK_OK(mp_tape_shape(t, out, &r, &c));
    ck_assert(r == 3 && c == 5);
    MP_CK_OK(mp__scale_shift(t, a, s31, b14, &out));
    MP_CK_OK(mp_tape_shape(t, out, &r, &c));
    ck_assert(r == 3 && c == 4);
    mp_tape_destroy(t);
}
END_TEST

/* The element-wise kernels (vectorized, with AVX2/AVX-512 clones) give
 * exactly the float results of the scalar expressions for every broadcast
 * pattern and for lengths that leave vector tails (37 x 41 and friends). */
static float ew_val(int i, float f) { return sinf(f * (float)i + 0.3f) * (1.0f + 0.01f * (float)(i % 7)); }

START_TEST(elementwise_kernels_are_exact_for_every_broadcast)
{
    static const int32_t shapes[][2] = {{37, 41}, {1, 67}, {53, 1}, {3, 16}, {17, 33}};
    mp_tape *t;
    MP_CK_OK(mp_tape_create(&t));
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int32_t R = shapes[s][0], C = shapes[s][1];
        /* b's shapes: full, 1 x C, R x 1, 1 x 1 */
        const int32_t br[4] = {R, 1, R, 1}, bc[4] = {C, C, 1, 1};
        size_t n = (size_t)R * C;
        float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float)), *c = malloc(n * sizeof(float));
        float *got = malloc(n * sizeof(float));
        for (size_t i = 0; i < n; i++) a[i] = ew_val((int)i, 0.37f), b[i] = ew_val((int)i, 0.71f) + 1.5f, c[i] = ew_val((int)i, 1.3f);
        for (int vb = 0; vb < 4; vb++)
            for (int vc = 0; vc < 4; vc++) {
                MP_CK_OK(mp_tape_reset(t));
                mp_var av, bv, cv, y[6];
                MP_CK_OK(mp_tape_leaf(t, R, C, a, n, 0, &av));
                MP_CK_OK(mp_tape_leaf(t, br[vb], bc[vb], b, (size_t)br[vb] * bc[vb], 0, &bv));
                MP_CK_OK(mp_tape_leaf(t, br[vc], bc[vc], c, (size_t)br[vc] * bc[vc], 0, &cv));
                MP_CK_OK(mp_add(t, av, bv, &y[0]));
                MP_CK_OK(mp_sub(t, bv, av, &y[1]));
                MP_CK_OK(mp_mul(t, av, bv, &y[2]));
                MP_CK_OK(mp_div(t, av, bv, &y[3]));
                MP_CK_OK(mp__scale_shift(t, av, bv, cv, &y[4]));
                MP_CK_OK(mp_scale(t, av, -1.25f, &y[5]));
                for (int op = 0; op < 6; op++) {
                    MP_CK_OK(mp_tape_read(t, y[op], got, n));
                    for (int32_t i = 0; i < R; i++)
                        for (int32_t j = 0; j < C; j++) {
                            float x = a[(size_t)i * C + j];
                            float u = b[(size_t)(br[vb] == 1 ? 0 : i) * bc[vb] + (bc[vb] == 1 ? 0 : j)];
                            float w = c[(size_t)(br[vc] == 1 ? 0 : i) * bc[vc] + (bc[vc] == 1 ? 0 : j)];
                            volatile float p = x * u; /* rounded before the add, as the pair */
                            float want = op == 0 ? x + u : op == 1 ? u - x : op == 2 ? p : op == 3 ? x / u
                                       : op == 4 ? p + w : -1.25f * x;
                            ck_assert_msg(got[(size_t)i * C + j] == want,
                                          "op %d, %dx%d, b %dx%d, c %dx%d: (%d,%d) = %.9g, expected %.9g", op,
                                          (int)R, (int)C, (int)br[vb], (int)bc[vb], (int)br[vc], (int)bc[vc],
                                          (int)i, (int)j, (double)got[(size_t)i * C + j], (double)want);
                        }
                }
            }
        free(a), free(b), free(c), free(got);
    }
    mp_tape_destroy(t);
}
END_TEST

/* ---- softmax family against double-precision references ---------------------------
 * The row kernels reduce in eight lanes plus a scalar for the last C mod 8
 * entries, and softmax goes through its rows in blocks of about 1024 values:
 * rows of 1, 7, 9, 17, 24 and 33 columns, 1100 rows (two blocks or more at
 * every width). Row kinds, in turn: moderate logits; logits in +-80 with
 * +80 and -80 placed; logits in +-1e4 with +1e4 placed; every third entry
 * -inf; every entry -inf but one; 1e4 plus [0, 8) (large common offset);
 * optionally a NaN (then the whole row is NaN, as it always was: the max
 * skips NaN, the sum does not). Placed entries move along the row from one
 * row of a kind to the next, so each lands in the lanes and in the tail. */
static const int32_t sm_cols[] = {1, 7, 9, 17, 24, 33};
enum { SM_ROWS = 1100, SM_KINDS = 7 };

static double sm_unif(uint32_t *s) /* [0, 1) */
{
    *s = *s * 1664525u + 1013904223u;
    return (double)(*s >> 8) / 16777216.0;
}

static void sm_fill(float *x, int32_t C, int with_nan)
{
    uint32_t s = 977u * (uint32_t)C + 1u;
    int kinds = with_nan ? SM_KINDS : SM_KINDS - 1;
    for (int32_t i = 0; i < SM_ROWS; i++) {
        float *r = x + (size_t)i * C;
        int kind = i % kinds;
        int32_t at = (i / kinds) % C, at2 = (i / kinds + C / 2) % C;
        for (int32_t j = 0; j < C; j++) {
            double u = sm_unif(&s);
            switch (kind) {
            case 0: r[j] = (float)(6.0 * u - 3.0); break;
            case 1: r[j] = (float)(160.0 * u - 80.0); break;
            case 2: r[j] = (float)(2e4 * u - 1e4); break;
            case 3: r[j] = j % 3 == 1 ? -INFINITY : (float)(4.0 * u - 2.0); break;
            case 4: r[j] = -INFINITY; break;
            default: r[j] = (float)(1e4 + 8.0 * u); break;
            }
        }
        if (kind == 1) r[at2] = -80.0f, r[at] = 80.0f;
        if (kind == 2) r[at2] = -1e4f, r[at] = 1e4f;
        if (kind == 4) r[at] = (float)(2.0 * sm_unif(&s) - 1.0);
        if (kind == 6) r[at] = NAN;
    }
}

/* Softmax and log-softmax of one row in double from the float differences
 * x - max (the kernels' first step, exact for entries near the max; a wrong
 * max, from a reduction that missed entries, shows in the results). */
static void sm_ref(const float *x, int32_t C, double *p, double *lp)
{
    float m = -INFINITY;
    double sum = 0;
    for (int32_t j = 0; j < C; j++)
        if (x[j] > m) m = x[j];
    for (int32_t j = 0; j < C; j++) sum += exp((double)(x[j] - m));
    for (int32_t j = 0; j < C; j++) {
        p[j] = exp((double)(x[j] - m)) / sum;
        lp[j] = (double)(x[j] - m) - log(sum);
    }
}

/* Values: relative 1e-6 (exp 3e-7, the float sum's C/8 + 4 roundings, the
 * division; the worst seen: 2.5e-7) and 1e-37 absolute (exp is 0 below
 * -87); log-softmax within 1e-6 (1 + |value|). -inf gives exactly 0 (log:
 * -inf), a lone finite entry exactly 1 (log: 0); a NaN row is NaN. */
START_TEST(softmax_rows_match_a_double_reference)
{
    int32_t C = sm_cols[_i];
    size_t n = (size_t)SM_ROWS * C;
    float *x = malloc(n * sizeof *x), *p = malloc(n * sizeof *p), *lp = malloc(n * sizeof *lp);
    double *pr = malloc(C * sizeof *pr), *lpr = malloc(C * sizeof *lpr);
    ck_assert(x && p && lp && pr && lpr);
    sm_fill(x, C, 1);
    mp_tape *t;
    mp_var xv, pv, lpv;
    MP_CK_OK(mp_tape_create(&t));
    MP_CK_OK(mp_tape_leaf(t, SM_ROWS, C, x, n, 0, &xv));
    MP_CK_OK(mp_softmax(t, xv, &pv));
    MP_CK_OK(mp_log_softmax(t, xv, &lpv));
    MP_CK_OK(mp_tape_read(t, pv, p, n));
    MP_CK_OK(mp_tape_read(t, lpv, lp, n));
    double worst = 0, worst_log = 0;
    for (int32_t i = 0; i < SM_ROWS; i++) {
        const float *xr = x + (size_t)i * C;
        int kind = i % SM_KINDS, finite = 0;
        for (int32_t j = 0; j < C; j++) finite += isfinite(xr[j]) != 0;
        sm_ref(xr, C, pr, lpr);
        for (int32_t j = 0; j < C; j++) {
            size_t k = (size_t)i * C + j;
            if (kind == 6) {
                ck_assert_msg(isnan(p[k]) && isnan(lp[k]), "C = %d, NaN row %d, column %d: %g %g", (int)C, (int)i,
                              (int)j, (double)p[k], (double)lp[k]);
            } else if (xr[j] == -INFINITY) {
                ck_assert_msg(p[k] == 0.0f && lp[k] == -INFINITY, "C = %d, row %d, column %d (-inf): %g %g", (int)C,
                              (int)i, (int)j, (double)p[k], (double)lp[k]);
            } else if (finite == 1) {
                ck_assert_msg(p[k] == 1.0f && lp[k] == 0.0f, "C = %d, row %d, column %d (lone entry): %g %g",
                              (int)C, (int)i, (int)j, (double)p[k], (double)lp[k]);
            } else {
                double e = fabs(p[k] - pr[j]), el = fabs(lp[k] - lpr[j]);
                ck_assert_msg(e <= 1e-6 * pr[j] + 1e-37, "C = %d, row %d (kind %d), column %d: softmax %.9g, reference %.9g",
                              (int)C, (int)i, kind, (int)j, (double)p[k], pr[j]);
                ck_assert_msg(el <= 1e-6 * (1.0 + fabs(lpr[j])),
                              "C = %d, row %d (kind %d), column %d: log-softmax %.9g, reference %.9g", (int)C, (int)i,
                              kind, (int)j, (double)lp[k], lpr[j]);
                if (pr[j] > 1e-30) worst = fmax(worst, e / pr[j]);
                worst_log = fmax(worst_log, el / (1.0 + fabs(lpr[j])));
            }
        }
    }
    if (getenv("MP_TEST_VERBOSE"))
        printf("softmax C = %d: worst relative error %.3g, log-softmax %.3g\n", (int)C, worst, worst_log);
    mp_tape_destroy(t);
    free(x), free(p), free(lp), free(pr), free(lpr);
}
END_TEST

/* The first and second derivatives of L = sum(w * softmax(x)) and of
 * sum(w * log_softmax(x)) on the rows above (without the NaN kind) against
 * double references computed from the tape's own probabilities p:
 * dL/dx = p (w - <w, p>) (softmax_grad) and, along v, with dp = p (v - <v, p>),
 * H v = dp (w - <w, p>) - p <w, dp>, through the constant sweep (fused
 * softmax_grad_y) and through the recorded graph (composed ops); for
 * log-softmax dL/dx = w - p sum(w) (log_softmax_grad). Errors within 1e-6
 * of the terms' sizes, p (1 + |w|) (log-softmax: |w| + p (1 + |sum(w)|))
 * and p (1 + |v|) (1 + |w|) (the worst seen: 2.5e-7); exactly 0 at -inf
 * entries. */
START_TEST(softmax_derivatives_match_a_double_reference)
{
    int32_t C = sm_cols[_i];
    size_t n = (size_t)SM_ROWS * C;
    float *x = malloc(n * sizeof *x), *w = malloc(n * sizeof *w), *v = malloc(n * sizeof *v);
    float *p = malloc(n * sizeof *p), *g = malloc(n * sizeof *g), *hv[2] = {malloc(n * sizeof(float)), malloc(n * sizeof(float))};
    double *pr = malloc(C * sizeof *pr);
    ck_assert(x && w && v && p && g && hv[0] && hv[1] && pr);
    sm_fill(x, C, 0);
    uint32_t s = 4242u + (uint32_t)C;
    for (size_t k = 0; k < n; k++) {
        w[k] = (float)(2.0 * sm_unif(&s) - 1.0);
        v[k] = (float)(2.0 * sm_unif(&s) - 1.0);
    }
    mp_tape *t;
    MP_CK_OK(mp_tape_create(&t));
    mp_var xv, wv, vv, pv, l, gv, h, hvv;
    for (int log_sm = 0; log_sm < 2; log_sm++) {
        for (int graph = 0; graph < 2; graph++) {
            MP_CK_OK(mp_tape_reset(t));
            MP_CK_OK(mp_tape_leaf(t, SM_ROWS, C, x, n, MP_LEAF_REQUIRES_GRAD, &xv));
            MP_CK_OK(mp_tape_leaf(t, SM_ROWS, C, w, n, 0, &wv));
            MP_CK_OK(mp_tape_leaf(t, SM_ROWS, C, v, n, 0, &vv));
            MP_CK_OK(log_sm ? mp_log_softmax(t, xv, &pv) : mp_softmax(t, xv, &pv));
            MP_CK_OK(mp_mul(t, pv, wv, &l));
            MP_CK_OK(mp_sum(t, l, MP_REDUCE_ALL, &l));
            MP_CK_OK(mp_tape_backward(t, l, 1));
            MP_CK_OK(mp_tape_grad(t, xv, &gv));
            MP_CK_OK(mp_tape_read(t, pv, p, n));
            MP_CK_OK(mp_tape_read(t, gv, g, n));
            if (log_sm) break; /* log-softmax: first order only */
            MP_CK_OK(mp_mul(t, gv, vv, &h));
            MP_CK_OK(mp_sum(t, h, MP_REDUCE_ALL, &h));
            MP_CK_OK(mp_tape_backward(t, h, graph));
            MP_CK_OK(mp_tape_grad(t, xv, &hvv));
            MP_CK_OK(mp_tape_read(t, hvv, hv[graph], n));
        }
        double worst_g = 0, worst_h = 0;
        for (int32_t i = 0; i < SM_ROWS; i++) {
            const float *xr = x + (size_t)i * C, *wr = w + (size_t)i * C, *vr = v + (size_t)i * C, *gr = g + (size_t)i * C;
            double wp = 0, vp = 0, wsum = 0, wdp = 0;
            for (int32_t j = 0; j < C; j++) {
                float pj = p[(size_t)i * C + j];
                pr[j] = log_sm ? exp((double)pj) : pj; /* the tape's probabilities */
            }
            for (int32_t j = 0; j < C; j++) {
                wp += (double)wr[j] * pr[j];
                vp += (double)vr[j] * pr[j];
                wsum += wr[j];
            }
            for (int32_t j = 0; j < C; j++) wdp += (double)wr[j] * pr[j] * (vr[j] - vp);
            for (int32_t j = 0; j < C; j++) {
                double gref = log_sm ? wr[j] - pr[j] * wsum : pr[j] * (wr[j] - wp);
                double gscale = log_sm ? fabs(wr[j]) + pr[j] * (1.0 + fabs(wsum)) : pr[j] * (1.0 + fabs(wr[j]));
                double ge = fabs(gr[j] - gref);
                ck_assert_msg(ge <= 1e-6 * gscale + 1e-37, "%s C = %d, row %d, column %d: gradient %.9g, reference %.9g",
                              log_sm ? "log-softmax" : "softmax", (int)C, (int)i, (int)j, (double)gr[j], gref);
                if (xr[j] == -INFINITY && !log_sm) ck_assert_msg(gr[j] == 0.0f, "gradient %g at -inf", (double)gr[j]);
                if (gscale > 1e-30) worst_g = fmax(worst_g, ge / gscale);
                if (log_sm) continue;
                double dp = pr[j] * (vr[j] - vp), href = dp * (wr[j] - wp) - pr[j] * wdp;
                double hscale = pr[j] * (1.0 + fabs(vr[j])) * (1.0 + fabs(wr[j]));
                for (int graph = 0; graph < 2; graph++) {
                    float got = hv[graph][(size_t)i * C + j];
                    double he = fabs(got - href);
                    ck_assert_msg(he <= 1e-6 * hscale + 1e-37,
                                  "softmax C = %d, row %d, column %d: Hessian-vector product (%s) %.9g, reference %.9g",
                                  (int)C, (int)i, (int)j, graph ? "composed" : "fused", (double)got, href);
                    if (xr[j] == -INFINITY) ck_assert_msg(got == 0.0f, "HVP %g at -inf", (double)got);
                    if (hscale > 1e-30) worst_h = fmax(worst_h, he / hscale);
                }
            }
        }
        if (getenv("MP_TEST_VERBOSE"))
            printf("%s C = %d: worst gradient error %.3g, Hessian-vector product %.3g (relative to their scales)\n",
                   log_sm ? "log-softmax" : "softmax", (int)C, worst_g, log_sm ? NAN : worst_h);
    }
    mp_tape_destroy(t);
    free(x), free(w), free(v), free(p), free(g), free(hv[0]), free(hv[1]), free(pr);
}
END_TEST

Suite *mp_test_tape_fused_suite(void)
{
    Suite *s = suite_create("tape_fused");
    TCase *g = tcase_create("fused");
    tcase_add_test(g, gelu_higher_derivatives_match_closed_forms);
    tcase_add_loop_test(g, gelu_mul_matches_closed_forms, 0, (int)(sizeof gm_len / sizeof gm_len[0]));
    tcase_add_test(g, heads_matmul_rejects_bad_inputs);
    tcase_add_loop_test(g, fused_and_composed_derivatives_agree_to_third_order, 0, 3);
    tcase_add_test(g, truncate_keeps_the_prefix_and_drops_gradients);
    tcase_add_test(g, layer_norm_second_order_gradients_are_consistent);
    tcase_add_test(g, linear_adds_the_bias_once_to_every_row);
    tcase_add_loop_test(g, fused_ops_differentiate_like_the_pair_for_every_constant_input, 0,
                        8 * (int)(sizeof tricases / sizeof tricases[0]));
    tcase_add_test(g, linear_and_scale_shift_reject_bad_inputs);
    tcase_add_test(g, fused_ops_with_aliased_inputs_match_the_pair);
    tcase_add_test(g, elementwise_kernels_are_exact_for_every_broadcast);
    tcase_add_loop_test(g, softmax_rows_match_a_double_reference, 0, (int)(sizeof sm_cols / sizeof sm_cols[0]));
    tcase_add_loop_test(g, softmax_derivatives_match_a_double_reference, 0, (int)(sizeof sm_cols / sizeof sm_cols[0]));
    suite_add_tcase(s, g);
    return s;
}
