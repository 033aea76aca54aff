/* Tape: every op's first and second derivatives against central finite
 * differences, PyTorch reference values (tests/fixtures/tape_ops.txt written
 * by tools/gen_tape_fixtures.py), aliasing, create_graph semantics, arena
 * reuse, borrowed leaves, statistics, numerics and bad inputs. */
#include "test_util.h"

#include <stdlib.h>

#include "tape/tape_internal.h"

#define MAXIN 6
#define MAXN 512

/* ---- op cases --------------------------------------------------------------------
 * Each case builds out = f(x_0..x_{nin-1}); the tested scalar is
 * L = sum(W * out + 0.5 * out^2) with a fixed W, so that even linear ops
 * have a non-zero Hessian through their backward pass. */
typedef mp_status (*build_fn)(mp_tape *t, const mp_var *x, mp_var *out);

enum { U, P, A, D, B }; /* input modes: uniform [-1,1], positive, away from 0, distinct, wide [-3,3] */

typedef struct {
    const char *name;
    int nin;
    int32_t r[MAXIN], c[MAXIN];
    int mode[MAXIN];
    build_fn f;
} opcase;

#define B2(name, call) \
    static mp_status name(mp_tape *t, const mp_var *x, mp_var *o) { (void)x; return call; }

B2(b_matmul_nn, mp_matmul(t, x[0], x[1], 0, 0, o))
B2(b_matmul_tn, mp_matmul(t, x[0], x[1], 1, 0, o))
B2(b_matmul_nt, mp_matmul(t, x[0], x[1], 0, 1, o))
B2(b_matmul_tt, mp_matmul(t, x[0], x[1], 1, 1, o))
B2(b_matmul_same, mp_matmul(t, x[0], x[0], 1, 0, o))
B2(b_add, mp_add(t, x[0], x[1], o))
B2(b_sub, mp_sub(t, x[0], x[1], o))
B2(b_mul, mp_mul(t, x[0], x[1], o))
B2(b_div, mp_div(t, x[0], x[1], o))
B2(b_add_xx, mp_add(t, x[0], x[0], o))
B2(b_mul_xx, mp_mul(t, x[0], x[0], o))
B2(b_div_xx, mp_div(t, x[0], x[0], o))
B2(b_scale, mp_scale(t, x[0], -1.5f, o))
B2(b_add_scalar, mp_add_scalar(t, x[0], 0.75f, o))
B2(b_sum_all, mp_sum(t, x[0], MP_REDUCE_ALL, o))
B2(b_sum_row, mp_sum(t, x[0], MP_REDUCE_PER_ROW, o))
B2(b_sum_col, mp_sum(t, x[0], MP_REDUCE_PER_COL, o))
B2(b_mean_all, mp_mean(t, x[0], MP_REDUCE_ALL, o))
B2(b_mean_row, mp_mean(t, x[0], MP_REDUCE_PER_ROW, o))
B2(b_mean_col, mp_mean(t, x[0], MP_REDUCE_PER_COL, o))
B2(b_relu, mp_relu(t, x[0], o))
B2(b_tanh, mp_tanh(t, x[0], o))
B2(b_sigmoid, mp_sigmoid(t, x[0], o))
B2(b_gelu, mp_gelu(t, x[0], o))
B2(b_exp, mp_exp(t, x[0], o))
B2(b_log, mp_log(t, x[0], o))
B2(b_sqrt, mp_sqrt(t, x[0], o))
B2(b_square, mp_square(t, x[0], o))
B2(b_softmax, mp_softmax(t, x[0], o))
B2(b_log_softmax, mp_log_softmax(t, x[0], o))
static const int32_t ce_labels[] = {0, 2, 1, 3};
B2(b_cross_entropy, mp_cross_entropy(t, x[0], ce_labels, 3, o))
B2(b_mse, mp_mse(t, x[0], x[1], o))
B2(b_layer_norm, mp_layer_norm(t, x[0], x[1], x[2], 1e-5f, o))
B2(b_layer_norm_plain, mp_layer_norm(t, x[0], MP_VAR_NONE, MP_VAR_NONE, 1e-5f, o))
static const int32_t gather_idx[] = {2, 0, 2, 3, 1};
B2(b_gather_rows, mp_gather_rows(t, x[0], gather_idx, 5, o))
B2(b_concat_rows, mp_concat(t, x[0], x[1], MP_AXIS_ROWS, o))
B2(b_concat_cols, mp_concat(t, x[0], x[1], MP_AXIS_COLS, o))
B2(b_slice_rows, mp_slice(t, x[0], MP_AXIS_ROWS, 1, 2, o))
B2(b_slice_cols, mp_slice(t, x[0], MP_AXIS_COLS, 1, 3, o))
B2(b_reshape, mp_reshape(t, x[0], 2, 6, o))
B2(b_transpose, mp_transpose(t, x[0], o))
B2(b_conv2d, mp_conv2d(t, x[0], x[1], x[2], 2, 4, 4, 3, 1, 1, o))
B2(b_conv2d_s2, mp_conv2d(t, x[0], x[1], MP_VAR_NONE, 1, 5, 5, 3, 2, 0, o))
B2(b_maxpool, mp_maxpool2d(t, x[0], 2, 4, 4, o))
B2(b_bmm_nn, mp_batch_matmul(t, x[0], x[1], 2, 0, 0, o))
B2(b_bmm_nt, mp_batch_matmul(t, x[0], x[1], 2, 0, 1, o))
B2(b_bmm_tn, mp_batch_matmul(t, x[0], x[1], 2, 1, 0, o))
B2(b_split_heads, mp_split_heads(t, x[0], 2, 3, 2, o))
B2(b_merge_heads, mp_merge_heads(t, x[0], 2, 3, 2, o))

/* Composed graphs. */
static mp_status b_mlp(mp_tape *t, const mp_var *x, mp_var *o)
{
    static const float target[4] = {0.5f, -0.25f, 1.0f, 0.0f};
    mp_var h, y, tg;
    MP_TRY(mp_matmul(t, x[0], x[1], 0, 0, &h));
    MP_TRY(mp_add(t, h, x[2], &h));
    MP_TRY(mp_tanh(t, h, &h));
    MP_TRY(mp_matmul(t, h, x[3], 0, 0, &y));
    MP_TRY(mp_add(t, y, x[4], &y));
    MP_TRY(mp_tape_leaf(t, 4, 1, target, 4, 0, &tg));
    return mp_mse(t, y, tg, o);
}

/* One pre-LN attention block: batch 2, seq 3, width 4, 2 heads. */
static mp_status b_attention(mp_tape *t, const mp_var *x, mp_var *o)
{
    mp_var n, q, k, v, s, p, a, m;
    MP_TRY(mp_layer_norm(t, x[0], MP_VAR_NONE, MP_VAR_NONE, 1e-5f, &n));
    MP_TRY(mp_matmul(t, n, x[1], 0, 0, &q));
    MP_TRY(mp_matmul(t, n, x[2], 0, 0, &k));
    MP_TRY(mp_matmul(t, n, x[3], 0, 0, &v));
    MP_TRY(mp_split_heads(t, q, 2, 3, 2, &q));
    MP_TRY(mp_split_heads(t, k, 2, 3, 2, &k));
    MP_TRY(mp_split_heads(t, v, 2, 3, 2, &v));
    MP_TRY(mp_batch_matmul(t, q, k, 4, 0, 1, &s));
    MP_TRY(mp_scale(t, s, 0.70710678f, &s));
    MP_TRY(mp_softmax(t, s, &p));
    MP_TRY(mp_batch_matmul(t, p, v, 4, 0, 0, &a));
    MP_TRY(mp_merge_heads(t, a, 2, 3, 2, &m));
    MP_TRY(mp_gelu(t, m, &m));
    return mp_add(t, x[0], m, o);
}

static mp_status b_conv_net(mp_tape *t, const mp_var *x, mp_var *o)
{
    static const int32_t labels[2] = {1, 2};
    mp_var c, r, p, y;
    MP_TRY(mp_conv2d(t, x[0], x[1], x[2], 1, 4, 4, 3, 1, 1, &c)); /* 2 x (2*4*4) */
    MP_TRY(mp_relu(t, c, &r));
    MP_TRY(mp_maxpool2d(t, r, 2, 4, 4, &p)); /* 2 x 8 */
    MP_TRY(mp_matmul(t, p, x[3], 0, 0, &y));  /* 2 x 3 */
    return mp_cross_entropy(t, y, labels, 2, o);
}

static const opcase cases[] = {
    {"matmul_nn", 2, {3, 4}, {4, 5}, {U, U}, b_matmul_nn},
    {"matmul_tn", 2, {4, 4}, {3, 5}, {U, U}, b_matmul_tn},
    {"matmul_nt", 2, {3, 5}, {4, 4}, {U, U}, b_matmul_nt},
    {"matmul_tt", 2, {4, 5}, {3, 4}, {U, U}, b_matmul_tt},
    {"matmul_same", 1, {3}, {4}, {U}, b_matmul_same},
    {"add", 2, {3, 3}, {4, 4}, {U, U}, b_add},
    {"add_row", 2, {3, 1}, {4, 4}, {U, U}, b_add},
    {"add_col", 2, {3, 3}, {4, 1}, {U, U}, b_add},
    {"add_scalar1", 2, {3, 1}, {4, 1}, {U, U}, b_add},
    {"add_outer", 2, {3, 1}, {1, 4}, {U, U}, b_add},
    {"sub_row", 2, {1, 3}, {4, 4}, {U, U}, b_sub},
    {"sub_col", 2, {3, 3}, {4, 1}, {U, U}, b_sub},
    {"mul", 2, {3, 3}, {4, 4}, {U, U}, b_mul},
    {"mul_row", 2, {3, 1}, {4, 4}, {U, U}, b_mul},
    {"mul_col", 2, {3, 3}, {1, 4}, {U, U}, b_mul},
    {"div", 2, {3, 3}, {4, 4}, {U, P}, b_div},
    {"div_row", 2, {3, 1}, {4, 4}, {U, P}, b_div},
    {"div_col", 2, {3, 3}, {1, 4}, {U, P}, b_div},
    {"add_xx", 1, {3}, {4}, {U}, b_add_xx},
    {"mul_xx", 1, {3}, {4}, {U}, b_mul_xx},
    {"div_xx", 1, {3}, {4}, {P}, b_div_xx},
    {"scale", 1, {3}, {4}, {U}, b_scale},
    {"add_scalar", 1, {3}, {4}, {U}, b_add_scalar},
    {"sum_all", 1, {3}, {4}, {U}, b_sum_all},
    {"sum_row", 1, {3}, {4}, {U}, b_sum_row},
    {"sum_col", 1, {3}, {4}, {U}, b_sum_col},
    {"mean_all", 1, {3}, {4}, {U}, b_mean_all},
    {"mean_row", 1, {3}, {4}, {U}, b_mean_row},
    {"mean_col", 1, {3}, {4}, {U}, b_mean_col},
    {"relu", 1, {3}, {4}, {A}, b_relu},
    {"tanh", 1, {3}, {4}, {B}, b_tanh},
    {"sigmoid", 1, {3}, {4}, {B}, b_sigmoid},
    {"gelu", 1, {3}, {4}, {B}, b_gelu},
    {"exp", 1, {3}, {4}, {U}, b_exp},
    {"log", 1, {3}, {4}, {P}, b_log},
    {"sqrt", 1, {3}, {4}, {P}, b_sqrt},
    {"square", 1, {3}, {4}, {U}, b_square},
    {"softmax", 1, {3}, {4}, {B}, b_softmax},
    {"log_softmax", 1, {3}, {4}, {B}, b_log_softmax},
    {"cross_entropy", 1, {3}, {4}, {B}, b_cross_entropy},
    {"mse", 2, {3, 3}, {4, 4}, {U, U}, b_mse},
    {"layer_norm", 3, {3, 1, 1}, {5, 5, 5}, {B, U, U}, b_layer_norm},
    {"layer_norm_plain", 1, {3}, {5}, {B}, b_layer_norm_plain},
    {"gather_rows", 1, {4}, {3}, {U}, b_gather_rows},
    {"concat_rows", 2, {2, 4}, {3, 3}, {U, U}, b_concat_rows},
    {"concat_cols", 2, {3, 3}, {2, 4}, {U, U}, b_concat_cols},
    {"slice_rows", 1, {4}, {3}, {U}, b_slice_rows},
    {"slice_cols", 1, {3}, {5}, {U}, b_slice_cols},
    {"reshape", 1, {3}, {4}, {U}, b_reshape},
    {"transpose", 1, {3}, {4}, {U}, b_transpose},
    {"conv2d", 3, {2, 3, 1}, {32, 18, 3}, {U, U, U}, b_conv2d},
    {"conv2d_s2", 2, {2, 2}, {25, 9}, {U, U}, b_conv2d_s2},
    {"maxpool2d", 1, {2}, {32}, {D}, b_maxpool},
    {"batch_matmul_nn", 2, {6, 8}, {4, 2}, {U, U}, b_bmm_nn},
    {"batch_matmul_nt", 2, {6, 4}, {4, 4}, {U, U}, b_bmm_nt},
    {"batch_matmul_tn", 2, {8, 8}, {3, 2}, {U, U}, b_bmm_tn},
    {"split_heads", 1, {6}, {4}, {U}, b_split_heads},
    {"merge_heads", 1, {12}, {2}, {U}, b_merge_heads},
    {"mlp", 5, {4, 3, 1, 5, 1}, {3, 5, 5, 1, 1}, {U, U, U, U, U}, b_mlp},
    {"attention", 4, {6, 4, 4, 4}, {4, 4, 4, 4}, {U, U, U, U}, b_attention},
    {"conv_net", 4, {2, 2, 1, 8}, {16, 9, 2, 3}, {U, U, U, U}, b_conv_net},
};
#define NCASES ((int)(sizeof cases / sizeof cases[0]))

/* ---- helpers ------------------------------------------------------------------------- */
static uint64_t g_rng;
static double urand(void)
{
    g_rng = g_rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(g_rng >> 11) / 9007199254740992.0;
}

static void gen_input(float *x, int n, int mode)
{
    for (int i = 0; i < n; i++) {
        double u = urand();
        switch (mode) {
        case P: x[i] = (float)(0.5 + 1.5 * u); break;
        case A: x[i] = (float)((u < 0.5 ? -1 : 1) * (0.2 + 0.8 * urand())); break;
        case B: x[i] = (float)(6 * u - 3); break;
        case D: x[i] = (float)i * 0.05f; break;
        default: x[i] = (float)(2 * u - 1);
        }
    }
    if (mode == D) /* distinct values with gaps of 0.05 >> the FD step, shuffled */
        for (int i = n - 1; i > 0; i--) {
            int j = (int)(urand() * (i + 1));
            float tmp = x[i];
            x[i] = x[j];
            x[j] = tmp;
        }
}

typedef struct {
    float x[MAXIN][MAXN];
    float w[MAXN];
    int n[MAXIN];
    int nw;
} inputs;

static void make_inputs(const opcase *c, inputs *in, uint64_t seed)
{
    g_rng = seed;
    for (int i = 0; i < c->nin; i++) {
        in->n[i] = c->r[i] * c->c[i];
        ck_assert_int_le(in->n[i], MAXN);
        gen_input(in->x[i], in->n[i], c->mode[i]);
    }
    for (int i = 0; i < MAXN; i++) in->w[i] = (float)(2 * urand() - 1);
}

/* Records the case and L = sum(W*out + 0.5*out^2); leaves in xv. */
static mp_var record_loss(mp_tape *t, const opcase *c, const inputs *in, mp_var *xv, mp_var *outv)
{
    for (int i = 0; i < c->nin; i++)
        MP_CK_OK(mp_tape_leaf(t, c->r[i], c->c[i], in->x[i], (size_t)in->n[i], MP_LEAF_REQUIRES_GRAD, &xv[i]));
    mp_var out, w, half, sum, l;
    mp_status st = c->f(t, xv, &out);
    ck_assert_msg(st == MP_OK, "%s: build failed: %s", c->name, mp_tape_error(t));
    int32_t r, cc;
    MP_CK_OK(mp_tape_shape(t, out, &r, &cc));
    ck_assert_int_le(r * cc, MAXN);
    MP_CK_OK(mp_tape_leaf(t, r, cc, in->w, (size_t)(r * cc), 0, &w));
    MP_CK_OK(mp_scale(t, out, 0.5f, &half));
    MP_CK_OK(mp_add(t, w, half, &sum));
    MP_CK_OK(mp_mul(t, out, sum, &l));
    MP_CK_OK(mp_sum(t, l, MP_REDUCE_ALL, &l));
    if (outv) *outv = out;
    return l;
}

static float eval_loss(mp_tape *t, const opcase *c, const inputs *in)
{
    mp_var xv[MAXIN];
    MP_CK_OK(mp_tape_reset(t));
    mp_var l = record_loss(t, c, in, xv, NULL);
    float v;
    MP_CK_OK(mp_tape_scalar(t, l, &v));
    return v;
}

/* Gradients of L into g[i][...]; with v != NULL, the Hessian-vector product
 * H v through create_graph instead. */
static void eval_grads(mp_tape *t, const opcase *c, const inputs *in, const inputs *v, float g[][MAXN])
{
    mp_var xv[MAXIN], gv[MAXIN];
    MP_CK_OK(mp_tape_reset(t));
    mp_var l = record_loss(t, c, in, xv, NULL);
    MP_CK_OK(mp_tape_backward(t, l, v != NULL));
    for (int i = 0; i < c->nin; i++) MP_CK_OK(mp_tape_grad(t, xv[i], &gv[i]));
    if (v) {
        mp_var s = MP_VAR_NONE;
        for (int i = 0; i < c->nin; i++) {
            mp_var vv, p;
            MP_CK_OK(mp_tape_leaf(t, c->r[i], c->c[i], v->x[i], (size_t)in->n[i], 0, &vv));
            MP_CK_OK(mp_mul(t, gv[i], vv, &p));
            MP_CK_OK(mp_sum(t, p, MP_REDUCE_ALL, &p));
            if (s == MP_VAR_NONE) s = p;
            else MP_CK_OK(mp_add(t, s, p, &s));
        }
        MP_CK_OK(mp_tape_backward(t, s, 0));
        for (int i = 0; i < c->nin; i++) MP_CK_OK(mp_tape_grad(t, xv[i], &gv[i]));
    }
    for (int i = 0; i < c->nin; i++) MP_CK_OK(mp_tape_read(t, gv[i], g[i], MAXN));
}

static void assert_close(const char *what, const char *name, int inp, const float *got, const double *want, int n,
                         double rtol)
{
    double scale = 1.0;
    for (int k = 0; k < n; k++) scale = fmax(scale, fabs(want[k]));
    for (int k = 0; k < n; k++) {
        double err = fabs(got[k] - want[k]);
        ck_assert_msg(isfinite(got[k]) && err <= rtol * (fabs(want[k]) + 0.1 * scale),
                      "%s %s: input %d element %d: got %.6g, expected %.6g", name, what, inp, k, (double)got[k],
                      want[k]);
    }
}

/* ---- first derivatives against central differences -------------------------------- */
START_TEST(op_gradients_match_finite_differences)
{
    const opcase *c = &cases[_i];
    static inputs in, tmp;
    static float g[MAXIN][MAXN];
    double fd[MAXN];
    mp_tape *t;
    MP_CK_OK(mp_tape_create(&t));
    make_inputs(c, &in, 1000 + (uint64_t)_i);
    eval_grads(t, c, &in, NULL, g);
    const float h = 1e-2f;
    for (int i = 0; i < c->nin; i++) {
        for (int k = 0; k < in.n[i]; k++) {
            tmp = in;
            tmp.x[i][k] = in.x[i][k] + h;
            double lp = eval_loss(t, c, &tmp);
            tmp.x[i][k] = in.x[i][k] - h;
            double lm = eval_loss(t, c, &tmp);
            fd[k] = (lp - lm) / (2.0 * h);
        }
        assert_close("gradient", c->name, i, g[i], fd, in.n[i], 2e-2);
    }
    mp_tape_destroy(t);
}
END_TEST

/* ---- second derivatives: H v via create_graph against differences of gradients ------- */
START_TEST(op_hessian_vector_products_match_finite_differences)
{
    const opcase *c = &cases[_i];
    static inputs in, v, tmp;
    static float hv[MAXIN][MAXN], gp[MAXIN][MAXN], gm[MAXIN][MAXN];
    double fd[MAXN];
    mp_tape *t;
    MP_CK_OK(mp_tape_create(&t));
    make_inputs(c, &in, 2000 + (uint64_t)_i);
    g_rng = 77 + (uint64_t)_i;
    for (int i = 0; i < c->nin; i++) gen_input(v.x[i], in.n[i], U);
    eval_grads(t, c, &in, &v, hv);
    const float h = 3e-3f; /* small enough not to cross the relu/max-pool kinks of conv_net */
    tmp = in;
    for (int i = 0; i < c->nin; i++)
        for (int k = 0; k < in.n[i]; k++) tmp.x[i][k] = in.x[i][k] + h * v.x[i][k];
    eval_grads(t, c, &tmp, NULL, gp);
    for (int i = 0; i < c->nin; i++)
        for (int k = 0; k < in.n[i]; k++) tmp.x[i][k] = in.x[i][k] - h * v.x[i][k];
    eval_grads(t, c, &tmp, NULL, gm);
    for (int i = 0; i < c->nin; i++) {
        for (int k = 0; k < in.n[i]; k++) fd[k] = ((double)gp[i][k] - gm[i][k]) / (2.0 * h);
        assert_close("Hessian-vector product", c->name, i, hv[i], fd, in.n[i], 3e-2);
    }
    mp_tape_destroy(t);
}
END_TEST

/* ---- gradient semantics ------------------------------------------------------------- */
static mp_tape *new_tape(void)
{
    mp_tape *t;
    MP_CK_OK(mp_tape_create(&t));
    return t;
}
static int64_t stat(const mp_tape *t, int32_t which)
{
    int64_t v = -1;
    MP_CK_OK(mp_tape_stat(t, which, &v));
    return v;
}
static void read_all(mp_tape *t, mp_var v, float *buf, size_t n) { MP_CK_OK(mp_tape_read(t, v, buf, n)); }

static const float X6[6] = {0.5f, -1.0f, 2.0f, 0.25f, -0.75f, 1.5f};

START_TEST(aliased_operands_accumulate)
{
    mp_tape *t = new_tape();
    mp_var x, y, a, m, s, g;
    float buf[6];
    MP_CK_OK(mp_tape_leaf(t, 2, 3, X6, 6, MP_LEAF_REQUIRES_GRAD, &x));
    MP_CK_OK(mp_mul(t, x, x, &m));   /* d/dx sum(x*x + x + x) = 2x + 2 */
    MP_CK_OK(mp_add(t, x, x, &a));
    MP_CK_OK(mp_add(t, m, a, &y));
    MP_CK_OK(mp_sum(t, y, MP_REDUCE_ALL, &s));
    MP_CK_OK(mp_tape_backward(t, s, 0));
    MP_CK_OK(mp_tape_grad(t, x, &g));
    read_all(t, g, buf, 6);
    for (int i = 0; i < 6; i++) ck_assert_float_eq_tol(buf[i], 2 * X6[i] + 2, 1e-6);
    /* The intermediate's gradient is the seed broadcast: all ones. */
    MP_CK_OK(mp_tape_grad(t, m, &g));
    read_all(t, g, buf, 6);
    for (int i = 0; i < 6; i++) ck_assert_float_eq(buf[i], 1.0f);
    mp_tape_destroy(t);
}
END_TEST

START_TEST(grads_without_create_graph_are_constants)
{
    for (int cg = 0; cg <= 1; cg++) {
        mp_tape *t = new_tape();
        mp_var x, c, s, g, gg, s2;
        float buf[6];
        MP_CK_OK(mp_tape_leaf(t, 2, 3, X6, 6, MP_LEAF_REQUIRES_GRAD, &x));
        MP_CK_OK(mp_mul(t, x, x, &c));
        MP_CK_OK(mp_mul(t, c, x, &c)); /* x^3 */
        MP_CK_OK(mp_sum(t, c, MP_REDUCE_ALL, &s));
        MP_CK_OK(mp_tape_backward(t, s, cg));
        MP_CK_OK(mp_tape_grad(t, x, &g)); /* 3x^2 */
        ck_assert_int_eq(!!(t->nodes[g].flags & MP__NODE_RG), cg);
        MP_CK_OK(mp_sum(t, g, MP_REDUCE_ALL, &s2));
        MP_CK_OK(mp_tape_backward(t, s2, 0));
        MP_CK_OK(mp_tape_grad(t, x, &gg)); /* 6x with create_graph, else 0 */
        read_all(t, gg, buf, 6);
        for (int i = 0; i < 6; i++) ck_assert_float_eq_tol(buf[i], cg ? 6 * X6[i] : 0.0f, 1e-5);
        mp_tape_destroy(t);
    }
}
END_TEST

START_TEST(unrelated_and_constant_vars_get_zero_grads)
{
    mp_tape *t = new_tape();
    mp_var x, u, k, s, g, later;
    float buf[6];
    MP_CK_OK(mp_tape_leaf(t, 2, 3, X6, 6, MP_LEAF_REQUIRES_GRAD, &x));
    MP_CK_OK(mp_tape_leaf(t, 3, 2, X6, 6, MP_LEAF_REQUIRES_GRAD, &u));
    MP_CK_OK(mp_tape_leaf(t, 2, 3, X6, 6, 0, &k));
    MP_CK_OK(mp_mul(t, x, k, &s));
    MP_CK_OK(mp_sum(t, s, MP_REDUCE_ALL, &s));
    mp_var g0 = 12345;
    MP_CK_STATUS(mp_tape_grad(t, x, &g0), MP_ERR_STATE);
    ck_assert_int_eq(g0, 12345);
    MP_CK_OK(mp_tape_backward(t, s, 0));
    MP_CK_OK(mp_tape_fill(t, 1, 4, 2.0f, &later));
    mp_var list[3] = {u, k, later};
    for (int j = 0; j < 3; j++) {
        int32_t r, c, r2, c2;
        MP_CK_OK(mp_tape_grad(t, list[j], &g));
        MP_CK_OK(mp_tape_shape(t, g, &r, &c));
        MP_CK_OK(mp_tape_shape(t, list[j], &r2, &c2));
        ck_assert(r == r2 && c == c2);
        read_all(t, g, buf, 6);
        for (int i = 0; i < r * c; i++) ck_assert_float_eq(buf[i], 0.0f);
    }
    MP_CK_OK(mp_tape_grad(t, x, &g));
    read_all(t, g, buf, 6);
    for (int i = 0; i < 6; i++) ck_assert_float_eq(buf[i], X6[i]);
    mp_tape_destroy(t);
}
END_TEST

START_TEST(backward_replaces_earlier_grads)
{
    mp_tape *t = new_tape();
    mp_var x, a, b, g;
    float v;
    const float one = 3.0f;
    MP_CK_OK(mp_tape_leaf(t, 1, 1, &one, 1, MP_LEAF_REQUIRES_GRAD, &x));
    MP_CK_OK(mp_square(t, x, &a));
    MP_CK_OK(mp_scale(t, x, 5.0f, &b));
    MP_CK_OK(mp_tape_backward(t, a, 0));
    MP_CK_OK(mp_tape_grad(t, x, &g));
    MP_CK_OK(mp_tape_scalar(t, g, &v));
    ck_assert_float_eq(v, 6.0f);
    MP_CK_OK(mp_tape_backward(t, b, 0));
    MP_CK_OK(mp_tape_grad(t, x, &g));
    MP_CK_OK(mp_tape_scalar(t, g, &v));
    ck_assert_float_eq(v, 5.0f);
    MP_CK_OK(mp_tape_grad(t, a, &g)); /* a is unrelated to b: zero */
    MP_CK_OK(mp_tape_scalar(t, g, &v));
    ck_assert_float_eq(v, 0.0f);
    mp_tape_destroy(t);
}
END_TEST

/* Second-order MAML on a tiny MLP: the meta-gradient of
 * Lq(p - a * grad Ls(p)) against central differences of the meta-loss. */
static void mlp_loss(mp_tape *t, const mp_var *p, const float *x, const float *y, int n, mp_var *loss)
{
    mp_var xv, yv, h, o;
    MP_CK_OK(mp_tape_leaf(t, n, 1, x, (size_t)n, 0, &xv));
    MP_CK_OK(mp_tape_leaf(t, n, 1, y, (size_t)n, 0, &yv));
    MP_CK_OK(mp_matmul(t, xv, p[0], 0, 0, &h));
    MP_CK_OK(mp_add(t, h, p[1], &h));
    MP_CK_OK(mp_tanh(t, h, &h));
    MP_CK_OK(mp_matmul(t, h, p[2], 0, 0, &o));
    MP_CK_OK(mp_add(t, o, p[3], &o));
    MP_CK_OK(mp_mse(t, o, yv, loss));
}

static const int32_t maml_r[4] = {1, 1, 8, 1}, maml_c[4] = {8, 8, 1, 1};
static const float maml_xs[5] = {-2, -1, 0, 1, 2}, maml_ys[5] = {0.9f, 0.8f, 0.1f, -0.7f, -0.9f};
static const float maml_xq[4] = {-1.5f, -0.5f, 0.5f, 1.5f}, maml_yq[4] = {1.0f, 0.5f, -0.4f, -1.0f};

static float maml_step(mp_tape *t, float p0[4][8], int want_grad, float grad[4][8])
{
    mp_var p[4], g[4], q[4], ls, lq;
    MP_CK_OK(mp_tape_reset(t));
    for (int i = 0; i < 4; i++)
        MP_CK_OK(mp_tape_leaf(t, maml_r[i], maml_c[i], p0[i], (size_t)(maml_r[i] * maml_c[i]), MP_LEAF_REQUIRES_GRAD, &p[i]));
    mlp_loss(t, p, maml_xs, maml_ys, 5, &ls);
    MP_CK_OK(mp_tape_backward(t, ls, 1));
    for (int i = 0; i < 4; i++) {
        MP_CK_OK(mp_tape_grad(t, p[i], &g[i]));
        MP_CK_OK(mp_scale(t, g[i], -0.3f, &q[i]));
        MP_CK_OK(mp_add(t, p[i], q[i], &q[i]));
    }
    mlp_loss(t, q, maml_xq, maml_yq, 4, &lq);
    float v;
    MP_CK_OK(mp_tape_scalar(t, lq, &v));
    if (want_grad) {
        MP_CK_OK(mp_tape_backward(t, lq, 0));
        for (int i = 0; i < 4; i++) {
            MP_CK_OK(mp_tape_grad(t, p[i], &g[i]));
            read_all(t, g[i], grad[i], 8);
        }
    }
    return v;
}

START_TEST(second_order_maml_matches_finite_differences)
{
    float p[4][8], grad[4][8], dummy[4][8];
    g_rng = 5;
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < 8; k++) p[i][k] = (float)(urand() * 2 - 1);
    mp_tape *t = new_tape();
    maml_step(t, p, 1, grad);
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < maml_r[i] * maml_c[i]; k++) {
            float keep = p[i][k];
            p[i][k] = keep + 1e-2f;
            double lp = maml_step(t, p, 0, dummy);
            p[i][k] = keep - 1e-2f;
            double lm = maml_step(t, p, 0, dummy);
            p[i][k] = keep;
            double fd = (lp - lm) / 2e-2;
            ck_assert_msg(fabs(grad[i][k] - fd) <= 1e-2 * fabs(fd) + 2e-3, "param %d[%d]: %g vs fd %g", i, k,
                          (double)grad[i][k], fd);
        }
    mp_tape_destroy(t);
}
END_TEST

/* ---- arena, reuse, borrowed leaves, statistics ------------------------------------------- */
START_TEST(cycles_keep_memory_constant_and_allocate_nothing)
{
    float p[4][8], grad[4][8];
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < 8; k++) p[i][k] = 0.1f * (float)(k - i);
    mp_test_install_failing_allocator();
    mp_tape *t = new_tape();
    maml_step(t, p, 1, grad);
    maml_step(t, p, 1, grad); /* warm-up: the first reset merges the arena blocks */
    int64_t high = stat(t, MP_TAPE_STAT_ARENA_HIGH), heap = stat(t, MP_TAPE_STAT_HEAP_BYTES);
    int64_t nodes = stat(t, MP_TAPE_STAT_NODES);
    ck_assert_int_gt(high, 0);
    ck_assert_int_gt(nodes, 50);
    mp_test_fail_after(0); /* from now on every allocation fails */
    for (int c = 0; c < 1000; c++) maml_step(t, p, 1, grad);
    ck_assert_int_eq(stat(t, MP_TAPE_STAT_ARENA_HIGH), high);
    ck_assert_int_eq(stat(t, MP_TAPE_STAT_HEAP_BYTES), heap);
    ck_assert_int_eq(stat(t, MP_TAPE_STAT_NODES), nodes);
    ck_assert_int_eq(mp_test_alloc_count(), 0);
    mp_test_alloc_reset();
    MP_CK_OK(mp_tape_reset(t));
    ck_assert_int_eq(stat(t, MP_TAPE_STAT_NODES), 0);
    ck_assert_int_eq(stat(t, MP_TAPE_STAT_ARENA_USED), 0);
    mp_tape_destroy(t);
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

START_TEST(arena_grows_across_blocks_and_merges_on_reset)
{
    mp_tape *t = new_tape();
    static float big[100000];
    mp_var v, s;
    for (int rep = 0; rep < 3; rep++) {
        for (int i = 0; i < 20; i++) MP_CK_OK(mp_tape_leaf(t, 1000, 100, big, 100000, 0, &v));
        MP_CK_OK(mp_sum(t, v, MP_REDUCE_ALL, &s));
        ck_assert_int_ge(stat(t, MP_TAPE_STAT_ARENA_USED), 20 * 400000);
        MP_CK_OK(mp_tape_reset(t));
        ck_assert_int_eq(t->arena.nblk, 1);
    }
    mp_tape_destroy(t);
}
END_TEST

START_TEST(borrowed_leaves_are_not_copied_or_written)
{
    mp_tape *t = new_tape();
    float data[6], copy[6], buf[6];
    memcpy(data, X6, sizeof data);
    memcpy(copy, X6, sizeof copy);
    int64_t used = stat(t, MP_TAPE_STAT_ARENA_USED);
    mp_var x, y, s, g;
    MP_CK_OK(mp_tape_leaf(t, 2, 3, data, 6, MP_LEAF_BORROW | MP_LEAF_REQUIRES_GRAD, &x));
    ck_assert_int_eq(stat(t, MP_TAPE_STAT_ARENA_USED), used); /* no copy */
    ck_assert_ptr_eq(t->nodes[x].val, data);
    MP_CK_OK(mp_reshape(t, x, 3, 2, &y));
    MP_CK_OK(mp_tanh(t, y, &y));
    MP_CK_OK(mp_sum(t, y, MP_REDUCE_ALL, &s));
    MP_CK_OK(mp_tape_backward(t, s, 1));
    MP_CK_OK(mp_tape_grad(t, x, &g));
    read_all(t, g, buf, 6);
    for (int i = 0; i < 6; i++) ck_assert_float_eq_tol(buf[i], 1 - tanhf(X6[i]) * tanhf(X6[i]), 1e-6);
    ck_assert_int_eq(memcmp(data, copy, sizeof data), 0);
    mp_var before = (mp_var)stat(t, MP_TAPE_STAT_NODES), o = 777;
    MP_CK_STATUS(mp_tape_leaf(t, 2, 3, NULL, 6, MP_LEAF_BORROW, &o), MP_ERR_NULL_POINTER);
    MP_CK_ERROR_MENTIONS("data");
    ck_assert_int_eq(o, 777);
    ck_assert_int_eq(stat(t, MP_TAPE_STAT_NODES), before);
    mp_tape_destroy(t);
}
END_TEST

START_TEST(stats_report_nodes_and_reject_unknown_keys)
{
    mp_tape *t = new_tape();
    mp_var x;
    ck_assert_int_eq(stat(t, MP_TAPE_STAT_NODES), 0);
    ck_assert_int_gt(stat(t, MP_TAPE_STAT_HEAP_BYTES), 0);
    MP_CK_OK(mp_tape_fill(t, 4, 4, 1.0f, &x));
    ck_assert_int_eq(stat(t, MP_TAPE_STAT_NODES), 1);
    ck_assert_int_ge(stat(t, MP_TAPE_STAT_ARENA_USED), 64);
    ck_assert_int_ge(stat(t, MP_TAPE_STAT_ARENA_HIGH), stat(t, MP_TAPE_STAT_ARENA_USED));
    int64_t v = 42;
    MP_CK_STATUS(mp_tape_stat(t, 99, &v), MP_ERR_INVALID_ARGUMENT);
    MP_CK_ERROR_MENTIONS("mp_tape_stat");
    ck_assert_str_eq(mp_tape_error(t), mp_last_error());
    ck_assert_int_eq(v, 42);
    MP_CK_STATUS(mp_tape_stat(t, MP_TAPE_STAT_NODES, NULL), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_tape_stat(NULL, MP_TAPE_STAT_NODES, &v), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_tape_reset(NULL), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_tape_create(NULL), MP_ERR_NULL_POINTER);
    ck_assert_ptr_nonnull(mp_tape_error(NULL));
    mp_tape_destroy(NULL);
    mp_tape_destroy(t);
}
END_TEST

START_TEST(out_of_memory_is_reported_and_records_nothing)
{
    mp_test_install_failing_allocator();
    for (long k = 0; k < 6; k++) { /* every allocation of create can fail */
        mp_tape *t = (mp_tape *)0x1;
        mp_test_fail_after(k);
        mp_status st = mp_tape_create(&t);
        mp_test_alloc_reset();
        if (st == MP_OK) {
            mp_tape_destroy(t);
            break;
        }
        ck_assert_int_eq(st, MP_ERR_OUT_OF_MEMORY);
        ck_assert_ptr_eq(t, (mp_tape *)0x1);
        ck_assert_int_eq(mp_live_allocations(), 0);
    }
    mp_tape *t = new_tape();
    static float big[1 << 20];
    mp_var x, o = 777;
    MP_CK_OK(mp_tape_leaf(t, 2, 3, X6, 6, MP_LEAF_REQUIRES_GRAD, &x));
    mp_test_fail_after(0);
    MP_CK_STATUS(mp_tape_leaf(t, 1024, 1024, big, 1 << 20, 0, &o), MP_ERR_OUT_OF_MEMORY);
    ck_assert_int_eq(o, 777);
    ck_assert_int_eq(stat(t, MP_TAPE_STAT_NODES), 1);
    mp_test_alloc_reset();
    mp_var y = x, s, g = 777;
    for (int i = 0; i < 200; i++) MP_CK_OK(mp_tanh(t, y, &y));
    MP_CK_OK(mp_sum(t, y, MP_REDUCE_ALL, &s));
    int64_t n = stat(t, MP_TAPE_STAT_NODES);
    mp_test_fail_after(0); /* backward needs more than the 256 node slots: fails */
    MP_CK_STATUS(mp_tape_backward(t, s, 0), MP_ERR_OUT_OF_MEMORY);
    MP_CK_ERROR_MENTIONS("out of memory");
    ck_assert_int_eq(stat(t, MP_TAPE_STAT_NODES), n);
    MP_CK_STATUS(mp_tape_grad(t, x, &g), MP_ERR_STATE);
    for (int i = 0; i < 100 && mp_tanh(t, x, &o) == MP_OK; i++) {} /* an op fails the same way */
    ck_assert_int_eq(stat(t, MP_TAPE_STAT_NODES), 256);
    mp_test_alloc_reset();
    MP_CK_OK(mp_tape_backward(t, s, 0));
    MP_CK_OK(mp_tape_grad(t, x, &g));
    mp_tape_destroy(t);
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

Suite *mp_test_tape_suite(void)
{
    Suite *s = suite_create("tape");
    TCase *fd = tcase_create("finite_differences");
    tcase_add_loop_test(fd, op_gradients_match_finite_differences, 0, NCASES);
    tcase_add_loop_test(fd, op_hessian_vector_products_match_finite_differences, 0, NCASES);
    suite_add_tcase(s, fd);
    TCase *sem = tcase_create("semantics");
    tcase_add_test(sem, aliased_operands_accumulate);
    tcase_add_test(sem, grads_without_create_graph_are_constants);
    tcase_add_test(sem, unrelated_and_constant_vars_get_zero_grads);
    tcase_add_test(sem, backward_replaces_earlier_grads);
    tcase_add_test(sem, second_order_maml_matches_finite_differences);
    suite_add_tcase(s, sem);
    TCase *mem = tcase_create("memory");
    tcase_add_test(mem, cycles_keep_memory_constant_and_allocate_nothing);
    tcase_add_test(mem, arena_grows_across_blocks_and_merges_on_reset);
    tcase_add_test(mem, borrowed_leaves_are_not_copied_or_written);
    tcase_add_test(mem, stats_report_nodes_and_reject_unknown_keys);
    tcase_add_test(mem, out_of_memory_is_reported_and_records_nothing);
    suite_add_tcase(s, mem);
    return s;
}
