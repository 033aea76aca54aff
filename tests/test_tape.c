/* Tape: every op's first and second derivatives against central finite
 * differences, PyTorch reference values (tests/fixtures/tape_ops.txt written
 * by tools/gen_tape_fixtures.py), aliasing, create_graph semantics, arena
 * reuse, borrowed leaves, statistics, numerics and bad inputs. */
#include "test_util.h"

#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tape/fastmath.h"
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
B2(b_bmm_tt, mp_batch_matmul(t, x[0], x[1], 2, 1, 1, o))
B2(b_split_heads, mp_split_heads(t, x[0], 2, 3, 2, o))
B2(b_merge_heads, mp_merge_heads(t, x[0], 2, 3, 2, o))
B2(b_split_heads4, mp_split_heads(t, x[0], 2, 3, 4, o))
B2(b_merge_heads4, mp_merge_heads(t, x[0], 2, 3, 4, o))
B2(b_concat_bcast, mp__concat_bcast(t, x[0], x[1], o))

static const int32_t heads_qk[3] = {1, 1, 0}, heads_pv[3] = {0, 1, 1};
B2(b_heads_qk, mp__heads_matmul(t, x[0], x[1], 4, 2, 0, 1, heads_qk, 1.0f, o))
B2(b_heads_pv, mp__heads_matmul(t, x[0], x[1], 4, 2, 0, 0, heads_pv, 1.0f, o))
B2(b_heads_tn, mp__heads_matmul(t, x[0], x[1], 4, 2, 1, 0, heads_qk, -1.5f, o))

/* Internal fused ops (src/core/internal.h): a linear layer and x * s + b. */
B2(b_linear_nn, mp__linear(t, x[0], x[1], x[2], 0, 0, o))
B2(b_linear_tt, mp__linear(t, x[0], x[1], x[2], 1, 1, o))
B2(b_linear_nt, mp__linear(t, x[0], x[1], x[2], 0, 1, o))
B2(b_scale_shift, mp__scale_shift(t, x[0], x[1], x[2], o))

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

/* The same block with the products on the merged head layout in place (the
 * 1/sqrt(dh) scale folded into the first product). */
static mp_status b_heads_attention(mp_tape *t, const mp_var *x, mp_var *o)
{
    mp_var n, q, k, v, s, p, m;
    MP_TRY(mp_layer_norm(t, x[0], MP_VAR_NONE, MP_VAR_NONE, 1e-5f, &n));
    MP_TRY(mp_matmul(t, n, x[1], 0, 0, &q));
    MP_TRY(mp_matmul(t, n, x[2], 0, 0, &k));
    MP_TRY(mp_matmul(t, n, x[3], 0, 0, &v));
    MP_TRY(mp__heads_matmul(t, q, k, 4, 2, 0, 1, heads_qk, 0.70710678f, &s));
    MP_TRY(mp_softmax(t, s, &p));
    MP_TRY(mp__heads_matmul(t, p, v, 4, 2, 0, 0, heads_pv, 1.0f, &m));
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
    {"mul_col", 2, {3, 3}, {4, 1}, {U, U}, b_mul},
    {"div", 2, {3, 3}, {4, 4}, {U, P}, b_div},
    {"div_row", 2, {3, 1}, {4, 4}, {U, P}, b_div},
    {"div_col", 2, {3, 3}, {4, 1}, {U, P}, b_div},
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
    /* Broadcasting on the left operand and both operands transposed (added
     * last so that the earlier cases keep their inputs and fixtures). */
    {"div_left_row", 2, {1, 3}, {4, 4}, {U, P}, b_div},
    {"div_left_col", 2, {3, 3}, {1, 4}, {U, P}, b_div},
    {"mul_left_col", 2, {3, 3}, {1, 4}, {U, U}, b_mul},
    {"batch_matmul_tt", 2, {8, 6}, {3, 4}, {U, U}, b_bmm_tt},
    {"heads_qk", 2, {6, 6}, {4, 4}, {U, U}, b_heads_qk},
    {"heads_pv", 2, {12, 6}, {3, 4}, {U, U}, b_heads_pv},
    {"heads_tn", 2, {6, 6}, {4, 4}, {U, U}, b_heads_tn},
    {"heads_attention", 4, {6, 4, 4, 4}, {4, 4, 4, 4}, {U, U, U, U}, b_heads_attention},
    /* The fused linear (70 rows: two row blocks of the plain product, the
     * second partial; _nt through the transposed copy of w) and mul_add. */
    {"linear_nn", 3, {3, 4, 1}, {4, 5, 5}, {U, U, U}, b_linear_nn},
    {"linear_tt", 3, {4, 5, 1}, {3, 4, 5}, {U, U, U}, b_linear_tt},
    {"linear_blocks", 3, {70, 3, 1}, {3, 2, 2}, {U, U, U}, b_linear_nn},
    {"linear_blocks_nt", 3, {70, 2, 1}, {3, 3, 2}, {U, U, U}, b_linear_nt},
    {"scale_shift_row", 3, {3, 1, 1}, {4, 4, 4}, {U, U, U}, b_scale_shift},
    {"scale_shift_col", 3, {3, 3, 3}, {4, 1, 1}, {U, U, U}, b_scale_shift},
    {"scale_shift_mixed", 3, {3, 1, 3}, {4, 1, 4}, {U, U, U}, b_scale_shift},
    {"scale_shift_full", 3, {3, 3, 1}, {4, 4, 1}, {U, U, U}, b_scale_shift},
    /* Heads of width 1 (the patch embedding's per-example transpose). */
    {"split_heads_dh1", 1, {6}, {4}, {U}, b_split_heads4},
    {"merge_heads_dh1", 1, {24}, {1}, {U}, b_merge_heads4},
    /* Column concatenation with a one-row operand repeated (the prompt row of every example). */
    {"concat_bcast_left", 2, {1, 4}, {3, 2}, {U, U}, b_concat_bcast},
    {"concat_bcast_right", 2, {4, 1}, {2, 3}, {U, U}, b_concat_bcast},
};
#define NCASES ((int)(sizeof cases / sizeof cases[0]))

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
/* The node behind a public id (the test looks inside the tape). */
static const mp__node *node_of(mp_tape *t, mp_var v)
{
    MP_CK_OK(mp__check_var(t, "node_of", "v", &v));
    return &t->nodes[v];
}

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

/* ---- finite-difference tolerances -----------------------------------------------------
 * rtol for assert_close. Measured worst cases (max over elements of
 * |got - fd| / (|fd| + 0.1 scale)) on the seeds below and on 7 other seed
 * sets: gradients <= 2.1e-3 for every single op (log: its third derivative
 * at 0.5 is 16), HVPs <= 1.1e-3 (mlp). Two composed graphs are worse
 * conditioned and get their own allowance: conv_net (gradients up to
 * 8.8e-3: a difference step can straddle a relu or max-pool kink) and
 * attention (gradients up to 6.1e-3, HVPs up to 7.0e-3: layer norm, softmax
 * and gelu stacked give large third derivatives; heads_attention is the same
 * block with the in-place head products, on other inputs). Every allowance is more
 * than twice the worst case measured; on the committed seeds the worst are
 * 4.0e-3 (conv_net gradient), 1.3e-3 (log gradient) and 1.8e-3 (attention
 * HVP). Before: 2e-2 and 3e-2 for everything. */
static double fd_rtol(const opcase *c, int hvp)
{
    if (strcmp(c->name, "conv_net") == 0 && !hvp) return 2e-2;
    if (strcmp(c->name, "attention") == 0 || strcmp(c->name, "heads_attention") == 0) return hvp ? 2e-2 : 1.5e-2;
    return 5e-3;
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
        assert_close("gradient", c->name, i, g[i], fd, in.n[i], fd_rtol(c, 0));
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
        assert_close("Hessian-vector product", c->name, i, hv[i], fd, in.n[i], fd_rtol(c, 1));
    }
    mp_tape_destroy(t);
}
END_TEST

/* ---- PyTorch reference values ---------------------------------------------------------- */
/* Reads one "<tag> rows cols values..." record into buf (double). */
static void read_record(FILE *f, const char *tag, int32_t rows, int32_t cols, double *buf)
{
    char got[16];
    int r, c;
    ck_assert_int_eq(fscanf(f, "%15s %d %d", got, &r, &c), 3);
    ck_assert_str_eq(got, tag);
    ck_assert_msg(r == rows && c == cols, "fixture %s is %dx%d, expected %dx%d", tag, r, c, (int)rows, (int)cols);
    for (int k = 0; k < r * c; k++) ck_assert_int_eq(fscanf(f, "%lf", &buf[k]), 1);
}

START_TEST(op_matches_pytorch)
{
    const opcase *c = &cases[_i];
    FILE *f = fopen(mp_test_path("tests/fixtures/tape_ops.txt"), "r");
    ck_assert_msg(f != NULL, "missing tests/fixtures/tape_ops.txt (run tools/gen_tape_fixtures.py)");
    char line[64], name[64];
    int nin = -1, found = 0;
    while (!found && fscanf(f, "%63s", line) == 1) {
        if (strcmp(line, "case") == 0 && fscanf(f, "%63s %d", name, &nin) == 2 && strcmp(name, c->name) == 0) found = 1;
    }
    ck_assert_msg(found, "case %s not in the fixture file", c->name);
    ck_assert_int_eq(nin, c->nin);
    static inputs in, v;
    static double ref[MAXIN][MAXN], tmp[MAXN];
    static float g[MAXIN][MAXN], hv[MAXIN][MAXN], out[MAXN];
    for (int i = 0; i < nin; i++) {
        in.n[i] = c->r[i] * c->c[i];
        read_record(f, "x", c->r[i], c->c[i], tmp);
        for (int k = 0; k < in.n[i]; k++) in.x[i][k] = (float)tmp[k];
    }
    for (int i = 0; i < nin; i++) {
        read_record(f, "v", c->r[i], c->c[i], tmp);
        for (int k = 0; k < in.n[i]; k++) v.x[i][k] = (float)tmp[k];
    }
    mp_tape *t = new_tape();
    mp_var xv[MAXIN], outv;
    record_loss(t, c, &in, xv, &outv); /* for the output shape */
    int32_t r, cc;
    MP_CK_OK(mp_tape_shape(t, outv, &r, &cc));
    read_record(f, "w", r, cc, tmp);
    for (int k = 0; k < r * cc; k++) in.w[k] = (float)tmp[k];
    MP_CK_OK(mp_tape_reset(t));
    record_loss(t, c, &in, xv, &outv);
    read_record(f, "out", r, cc, tmp);
    read_all(t, outv, out, MAXN);
    assert_close("output vs PyTorch", c->name, -1, out, tmp, r * cc, 1e-4);
    eval_grads(t, c, &in, NULL, g);
    eval_grads(t, c, &in, &v, hv);
    for (int i = 0; i < nin; i++) read_record(f, "g", c->r[i], c->c[i], ref[i]);
    for (int i = 0; i < nin; i++) assert_close("gradient vs PyTorch", c->name, i, g[i], ref[i], in.n[i], 1e-4);
    for (int i = 0; i < nin; i++) read_record(f, "hv", c->r[i], c->c[i], ref[i]);
    for (int i = 0; i < nin; i++) assert_close("Hessian-vector product vs PyTorch", c->name, i, hv[i], ref[i], in.n[i], 1e-4);
    fclose(f);
    mp_tape_destroy(t);
}
END_TEST

/* ---- gradient semantics ------------------------------------------------------------- */

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
        ck_assert_int_eq(!!(node_of(t, g)->flags & MP__NODE_RG), cg);
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

START_TEST(backward_wrt_prunes_other_paths)
{
    mp_tape *t = new_tape();
    mp_var x, y, a, b, s, g;
    float v;
    const float one = 3.0f, two = 2.0f;
    MP_CK_OK(mp_tape_leaf(t, 1, 1, &one, 1, MP_LEAF_REQUIRES_GRAD, &x));
    MP_CK_OK(mp_tape_leaf(t, 1, 1, &two, 1, MP_LEAF_REQUIRES_GRAD, &y));
    MP_CK_OK(mp_mul(t, x, y, &a));  /* depends on x and y */
    MP_CK_OK(mp_square(t, y, &b));  /* depends on y only */
    MP_CK_OK(mp_add(t, a, b, &s));
    MP_CK_OK(mp_tape_backward_wrt(t, s, 1, &x, 1));
    MP_CK_OK(mp_tape_grad(t, x, &g));
    MP_CK_OK(mp_tape_scalar(t, g, &v));
    ck_assert_float_eq(v, 2.0f);
    MP_CK_OK(mp_tape_grad(t, a, &g));
    MP_CK_OK(mp_tape_scalar(t, g, &v));
    ck_assert_float_eq(v, 1.0f);
    MP_CK_OK(mp_tape_grad(t, y, &g)); /* not on a path from x: reads zero */
    MP_CK_OK(mp_tape_scalar(t, g, &v));
    ck_assert_float_eq(v, 0.0f);
    MP_CK_OK(mp_tape_grad(t, x, &g)); /* d/dy of ds/dx = 1 through create_graph */
    MP_CK_OK(mp_tape_backward_wrt(t, g, 0, &y, 1));
    MP_CK_OK(mp_tape_grad(t, y, &g));
    MP_CK_OK(mp_tape_scalar(t, g, &v));
    ck_assert_float_eq(v, 1.0f);
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

static int g_maml_pruned; /* 1: mp_tape_backward_wrt for both sweeps; 2: the final one recycling */

static float maml_step(mp_tape *t, float p0[4][8], int want_grad, float grad[4][8])
{
    mp_var p[4], g[4], q[4], ls, lq;
    MP_CK_OK(mp_tape_reset(t));
    for (int i = 0; i < 4; i++)
        MP_CK_OK(mp_tape_leaf(t, maml_r[i], maml_c[i], p0[i], (size_t)(maml_r[i] * maml_c[i]), MP_LEAF_REQUIRES_GRAD, &p[i]));
    mlp_loss(t, p, maml_xs, maml_ys, 5, &ls);
    if (g_maml_pruned) MP_CK_OK(mp_tape_backward_wrt(t, ls, 1, p, 4));
    else MP_CK_OK(mp_tape_backward(t, ls, 1));
    for (int i = 0; i < 4; i++) {
        MP_CK_OK(mp_tape_grad(t, p[i], &g[i]));
        MP_CK_OK(mp_scale(t, g[i], -0.3f, &q[i]));
        MP_CK_OK(mp_add(t, p[i], q[i], &q[i]));
    }
    mlp_loss(t, q, maml_xq, maml_yq, 4, &lq);
    float v;
    MP_CK_OK(mp_tape_scalar(t, lq, &v));
    if (want_grad) {
        if (g_maml_pruned == 2) MP_CK_OK(mp__tape_backward_wrt_recycle(t, lq, p, 4));
        else if (g_maml_pruned) MP_CK_OK(mp_tape_backward_wrt(t, lq, 0, p, 4));
        else MP_CK_OK(mp_tape_backward(t, lq, 0));
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
    float pruned[4][8];
    g_maml_pruned = 1;
    maml_step(t, p, 1, pruned);
    g_maml_pruned = 0;
    maml_step(t, p, 1, grad);
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < maml_r[i] * maml_c[i]; k++) ck_assert_float_eq(pruned[i][k], grad[i][k]);
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

/* The recycling backward (the outer loop of src/meta/task.c): the same
 * gradients bit for bit, the sweep's values on the scratch region with dead
 * buffers reused, the wrt gradients moved to the arena (readable after the
 * next recycling sweep has reused the region), every other gradient zero. */
START_TEST(recycling_backward_is_bit_identical_and_reuses_buffers)
{
    float p[4][8], plain[4][8], rec[4][8], again[4][8];
    g_rng = 11;
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < 8; k++) p[i][k] = (float)(urand() * 2 - 1);
    mp_tape *t = new_tape();
    g_maml_pruned = 1;
    maml_step(t, p, 1, plain);
    int64_t used_plain = stat(t, MP_TAPE_STAT_ARENA_USED), nodes_plain = stat(t, MP_TAPE_STAT_NODES);
    g_maml_pruned = 2;
    maml_step(t, p, 1, rec);
    g_maml_pruned = 0;
    for (int i = 0; i < 4; i++) ck_assert_mem_eq(plain[i], rec[i], sizeof(float) * (size_t)(maml_r[i] * maml_c[i]));
    int32_t in_place = 0; /* a product added onto its gradient slot replaces a product and an add */
    for (int32_t i = 0; i < t->n; i++) in_place += (t->nodes[i].flags & MP__NODE_ACC) != 0;
    ck_assert_int_gt(in_place, 0);
    ck_assert_int_eq(stat(t, MP_TAPE_STAT_NODES) + in_place, nodes_plain); /* otherwise the same ops */
    int64_t used_rec = stat(t, MP_TAPE_STAT_ARENA_USED);
    ck_assert_int_lt(used_rec, used_plain);
    /* The sweep recorded `swept` bytes of values (the arena difference plus
     * the four 64-byte gradients copied back); without reuse the scratch
     * region would need that plus a 64-byte header per value. */
    int64_t swept = used_plain - used_rec + 4 * 64;
    ck_assert_msg((int64_t)t->sarena.high < swept, "scratch high %lld, sweep recorded %lld bytes",
                  (long long)t->sarena.high, (long long)swept);

    /* A second recycling sweep reuses the region; the first one's gradients
     * were copied out and keep their values. An intermediate reads zero. */
    mp_var pv[4], ls, g0, mid;
    MP_CK_OK(mp_tape_reset(t));
    for (int i = 0; i < 4; i++)
        MP_CK_OK(mp_tape_leaf(t, maml_r[i], maml_c[i], p[i], (size_t)(maml_r[i] * maml_c[i]), MP_LEAF_REQUIRES_GRAD, &pv[i]));
    mlp_loss(t, pv, maml_xs, maml_ys, 5, &ls);
    MP_CK_OK(mp_tape_backward_wrt(t, ls, 0, pv, 4));
    MP_CK_OK(mp_tape_grad(t, pv[0], &g0));
    read_all(t, g0, plain[0], 8);
    MP_CK_OK(mp_tape_backward_wrt(t, ls, 0, pv, 4));
    MP_CK_OK(mp_tape_grad(t, ls - 1, &mid)); /* the mse's input depends on p */
    float midv[5];
    read_all(t, mid, midv, 5);
    ck_assert_float_ne(midv[0], 0.0f);
    MP_CK_OK(mp__tape_backward_wrt_recycle(t, ls, pv, 4));
    MP_CK_OK(mp_tape_grad(t, pv[0], &g0));
    ck_assert_int_eq(node_of(t, g0)->flags & MP__NODE_SCRATCH, 0); /* moved to the arena */
    mp_var ls3;
    MP_CK_OK(mp_scale(t, ls, 3.0f, &ls3));
    MP_CK_OK(mp__tape_backward_wrt_recycle(t, ls3, pv, 4)); /* reuses the scratch region */
    read_all(t, g0, again[0], 8);
    ck_assert_mem_eq(again[0], plain[0], sizeof plain[0]);
    MP_CK_OK(mp_tape_grad(t, ls - 1, &mid));
    read_all(t, mid, midv, 5);
    for (int k = 0; k < 5; k++) ck_assert_float_eq(midv[k], 0.0f);
    mp_tape_destroy(t);
}
END_TEST

/* In a recycling sweep a product's contribution is added onto the gradient
 * slot's buffer in place (sgemm with beta = 1, an MP__NODE_ACC node instead
 * of a product and an add) when the slot is the only holder of its buffer
 * and alpha is a power of two; the gradients are those of the plain sweep
 * bit for bit. Cases: 0 two plain products into one operand; 1 two per-head
 * products (merged layout, alpha 1/4) into one operand; not in place: 2 a
 * shared operand's summed gradient (a sum of several products: in place it
 * would be summed in another order) onto a plain product's; 3 alpha 0.3;
 * 4 a slot shared with another variable's (an add's two inputs), whose
 * gradient keeps its value. The element-wise contributions too: 5 layer
 * norm, gelu and a product of x with itself into x (ln_bwd, gelu_mul,
 * mul); 6 the same through their recorded backward (a second-order sweep:
 * ln_bwd, ln_bwd_y, ln_bwd_r, gelu_mul of orders 1 and 2, mul). */
static const int ip_want_acc[7] = {1, 1, 0, 0, 0, 1, 1};
static void ip_graph(mp_tape *t, int c, mp_var *leaf, int *nleaf, mp_var *loss)
{
    static float a[48], w1[48], w2[48], q[96], k1[96], k2[96];
    for (int i = 0; i < 48; i++) {
        a[i] = 0.05f * (float)((i * 7) % 11) - 0.2f;
        w1[i] = 0.03f * (float)((i * 5) % 13) - 0.15f;
        w2[i] = 0.04f * (float)((i * 3) % 7) - 0.1f;
    }
    for (int i = 0; i < 96; i++) {
        q[i] = 0.02f * (float)((i * 11) % 17) - 0.15f;
        k1[i] = 0.03f * (float)((i * 13) % 7) - 0.1f;
        k2[i] = 0.01f * (float)((i * 5) % 19) - 0.09f;
    }
    mp_var p1, p2, s;
    if (c >= 5) { /* p1 = ln(x) w1 + gelu(x) (row sums), p2 = x * x; case 6: the gradient's square sum */
        mp_var wl, ln, ge, l0, y = MP_VAR_NONE;
        MP_CK_OK(mp_tape_leaf(t, 6, 8, a, 48, MP_LEAF_REQUIRES_GRAD, &leaf[0]));
        MP_CK_OK(mp_tape_leaf(t, 1, 8, w1, 8, MP_LEAF_REQUIRES_GRAD, &leaf[1]));
        MP_CK_OK(mp_tape_leaf(t, 6, 8, w2, 48, 0, &wl));
        if (c == 6) { /* the normalised y as a variable of its own, read again below */
            MP_CK_OK(mp_layer_norm(t, leaf[0], MP_VAR_NONE, MP_VAR_NONE, 1e-5f, &y));
            MP_CK_OK(mp_mul(t, y, leaf[1], &ln));
        } else
            MP_CK_OK(mp_layer_norm(t, leaf[0], leaf[1], MP_VAR_NONE, 1e-5f, &ln));
        MP_CK_OK(mp_mul(t, ln, wl, &ln));
        MP_CK_OK(mp_gelu(t, leaf[0], &ge));
        MP_CK_OK(mp_add(t, ln, ge, &p1));
        MP_CK_OK(mp_mul(t, leaf[0], leaf[0], &p2));
        *nleaf = 2;
        if (c == 6) {
            mp_var gx, gw, sq;
            MP_CK_OK(mp_mul(t, p1, p1, &l0));
            MP_CK_OK(mp_add(t, l0, p2, &l0));
            MP_CK_OK(mp_sum(t, l0, MP_REDUCE_ALL, &l0));
            MP_CK_OK(mp_tape_backward(t, l0, 1));
            MP_CK_OK(mp_tape_grad(t, leaf[0], &gx));
            MP_CK_OK(mp_tape_grad(t, leaf[1], &gw));
            MP_CK_OK(mp_mul(t, gx, gx, &sq));
            MP_CK_OK(mp_sum(t, sq, MP_REDUCE_ALL, &s));
            MP_CK_OK(mp_mul(t, gw, gw, &sq));
            MP_CK_OK(mp_sum(t, sq, MP_REDUCE_ALL, &sq));
            MP_CK_OK(mp_add(t, s, sq, &s));
            /* x and y used once more after the first backward: their slots
             * exist when the recorded ln_bwd is reached, so ln_bwd_r and
             * ln_bwd_y add in place */
            MP_CK_OK(mp_mul(t, leaf[0], wl, &sq));
            MP_CK_OK(mp_sum(t, sq, MP_REDUCE_ALL, &sq));
            MP_CK_OK(mp_add(t, s, sq, &s));
            MP_CK_OK(mp_mul(t, y, wl, &sq));
            MP_CK_OK(mp_sum(t, sq, MP_REDUCE_ALL, &sq));
            MP_CK_OK(mp_add(t, s, sq, loss));
            return;
        }
    } else if (c == 0 || c == 4) { /* a (6x8) w1 (8x6) and a w2 (8x6); case 4 also a + x */
        MP_CK_OK(mp_tape_leaf(t, 6, 8, a, 48, MP_LEAF_REQUIRES_GRAD, &leaf[0]));
        MP_CK_OK(mp_tape_leaf(t, 8, 6, w1, 48, MP_LEAF_REQUIRES_GRAD, &leaf[1]));
        MP_CK_OK(mp_tape_leaf(t, 8, 6, w2, 48, 0, &leaf[2]));
        MP_CK_OK(mp_matmul(t, leaf[0], leaf[1], 0, 0, &p1));
        if (c == 0) MP_CK_OK(mp_matmul(t, leaf[0], leaf[2], 0, 0, &p2));
        else {
            MP_CK_OK(mp_tape_leaf(t, 6, 8, w2, 48, MP_LEAF_REQUIRES_GRAD, &leaf[2]));
            MP_CK_OK(mp_add(t, leaf[0], leaf[2], &p2)); /* a's and x's slots share one gradient */
        }
        *nleaf = 3;
    } else if (c == 1 || c == 3) { /* 2 examples x 4 rows, 2 heads of width 6: q k1^T and q k2^T per head */
        static const int32_t qk[3] = {1, 1, 0};
        float alpha = c == 1 ? 0.25f : 0.3f;
        MP_CK_OK(mp_tape_leaf(t, 8, 12, q, 96, MP_LEAF_REQUIRES_GRAD, &leaf[0]));
        MP_CK_OK(mp_tape_leaf(t, 8, 12, k1, 96, MP_LEAF_REQUIRES_GRAD, &leaf[1]));
        MP_CK_OK(mp_tape_leaf(t, 8, 12, k2, 96, MP_LEAF_REQUIRES_GRAD, &leaf[2]));
        MP_CK_OK(mp__heads_matmul(t, leaf[0], leaf[1], 4, 2, 0, 1, qk, alpha, &p1));
        MP_CK_OK(mp__heads_matmul(t, leaf[0], leaf[2], 4, 2, 0, 1, qk, alpha, &p2));
        *nleaf = 3;
    } else { /* x_i w for the 3 blocks x_i (4x4) of x (12x4): w's gradient is a summed product; and a w */
        MP_CK_OK(mp_tape_leaf(t, 12, 4, q, 48, MP_LEAF_REQUIRES_GRAD, &leaf[0]));
        MP_CK_OK(mp_tape_leaf(t, 4, 6, w1, 24, MP_LEAF_REQUIRES_GRAD, &leaf[1]));
        MP_CK_OK(mp_tape_leaf(t, 5, 4, a, 20, MP_LEAF_REQUIRES_GRAD, &leaf[2]));
        mp_var ix = leaf[0], iw = leaf[1]; /* mp__bmm_ex takes node indices */
        MP_CK_OK(mp__check_var(t, "ip_graph", "x", &ix));
        MP_CK_OK(mp__check_var(t, "ip_graph", "w", &iw));
        MP_CK_OK(mp__bmm_ex(t, ix, iw, 3, 0, 0, 0, 1, 0, &p1));
        p1 = mp__pub(t, p1);
        MP_CK_OK(mp_matmul(t, leaf[2], leaf[1], 0, 0, &p2));
        *nleaf = 3;
    }
    /* loss = sum(p1^2) + sum(p2^2) / 2 */
    mp_var l1, l2;
    MP_CK_OK(mp_mul(t, p1, p1, &l1));
    MP_CK_OK(mp_sum(t, l1, MP_REDUCE_ALL, &l1));
    MP_CK_OK(mp_mul(t, p2, p2, &l2));
    MP_CK_OK(mp_scale(t, l2, 0.5f, &l2));
    MP_CK_OK(mp_sum(t, l2, MP_REDUCE_ALL, &l2));
    MP_CK_OK(mp_add(t, l1, l2, &s));
    *loss = s;
}

START_TEST(recycling_backward_adds_contributions_in_place)
{
    int c = _i;
    float plain[3][96], rec[3][96];
    int32_t r[3] = {0, 0, 0}, cc[3] = {0, 0, 0};
    mp_tape *t = new_tape();
    for (int sweep = 0; sweep < 2; sweep++) {
        mp_var leaf[3], loss, g;
        int nl;
        MP_CK_OK(mp_tape_reset(t));
        ip_graph(t, c, leaf, &nl, &loss);
        int32_t before = t->n;
        if (sweep == 0) MP_CK_OK(mp_tape_backward_wrt(t, loss, 0, leaf, (size_t)nl));
        else MP_CK_OK(mp__tape_backward_wrt_recycle(t, loss, leaf, (size_t)nl));
        int acc = 0, ops[MP__OP_COUNT_] = {0};
        for (int32_t i = before; i < t->n; i++)
            if (t->nodes[i].flags & MP__NODE_ACC) {
                ops[t->nodes[i].op]++;
                acc += c < 5 && (t->nodes[i].op == MP__OP_MATMUL || t->nodes[i].op == MP__OP_BMM);
            }
        /* the kinds each case is about (the losses' own products add in place too) */
        if (c == 5) acc = ops[MP__OP_LN_BWD] > 0 && ops[MP__OP_GELU_MUL] > 0 && ops[MP__OP_MUL] > 0;
        if (c == 6) acc = ops[MP__OP_LN_BWD_R] > 0 && ops[MP__OP_LN_BWD_Y] > 0 && ops[MP__OP_GELU_MUL] > 0;
        if (sweep == 0) ck_assert_int_eq(acc, 0);
        else ck_assert_msg((acc > 0) == ip_want_acc[c], "case %d: %d in-place sums of the kinds tested", c, acc);
        for (int i = 0; i < nl; i++) {
            MP_CK_OK(mp_tape_shape(t, leaf[i], &r[i], &cc[i]));
            MP_CK_OK(mp_tape_grad(t, leaf[i], &g));
            read_all(t, g, sweep ? rec[i] : plain[i], (size_t)(r[i] * cc[i]));
        }
    }
    for (int i = 0; i < 3; i++)
        ck_assert_msg(memcmp(plain[i], rec[i], sizeof(float) * (size_t)(r[i] * cc[i])) == 0,
                      "case %d: leaf %d's gradient differs between the plain and the recycling sweep", c, i);
    if (c == 4) /* x's gradient is p2's: a + x's gradient, untouched by a's product contribution */
        for (int i = 0; i < 48; i++) ck_assert_float_eq(rec[2][i], plain[2][i]);
    mp_tape_destroy(t);
}
END_TEST

/* A product contribution with a long inner dimension is not added in place:
 * OpenBLAS splits k > its block depth and adds C to the first partial sum,
 * which differs from the add's sum in the last bits. loss = sum((X1 w)^2) +
 * sum((X2 w)^2) with X_i k x 64: w's gradient is X1^T G1 + X2^T G2, inner
 * dimension k; in place for k = 128, recorded and added for k = 1000, and
 * the recycling sweep's gradient is the plain sweep's bit for bit. */
START_TEST(recycling_backward_adds_long_products_as_nodes)
{
    enum { N = 64 };
    int32_t k = _i ? 1000 : 128;
    float *x = malloc(sizeof(float) * 2 * (size_t)k * N), w[N * N], plain[N * N], rec[N * N];
    ck_assert_ptr_nonnull(x);
    for (int32_t i = 0; i < 2 * k * N; i++) x[i] = (float)((i * 37 + 11) % 201) / 100.0f - 1.0f;
    for (int i = 0; i < N * N; i++) w[i] = (float)((i * 53 + 7) % 97) / 480.0f - 0.1f;
    mp_tape *t = new_tape();
    for (int sweep = 0; sweep < 2; sweep++) {
        mp_var x1, x2, wv, p1, p2, l, g;
        MP_CK_OK(mp_tape_reset(t));
        MP_CK_OK(mp_tape_leaf(t, k, N, x, (size_t)k * N, MP_LEAF_BORROW, &x1));
        MP_CK_OK(mp_tape_leaf(t, k, N, x + (size_t)k * N, (size_t)k * N, MP_LEAF_BORROW, &x2));
        MP_CK_OK(mp_tape_leaf(t, N, N, w, N * N, MP_LEAF_REQUIRES_GRAD, &wv));
        MP_CK_OK(mp_matmul(t, x1, wv, 0, 0, &p1));
        MP_CK_OK(mp_matmul(t, x2, wv, 0, 0, &p2));
        MP_CK_OK(mp_mul(t, p1, p1, &p1));
        MP_CK_OK(mp_mul(t, p2, p2, &p2));
        MP_CK_OK(mp_add(t, p1, p2, &l));
        MP_CK_OK(mp_sum(t, l, MP_REDUCE_ALL, &l));
        int32_t before = t->n;
        if (sweep == 0) MP_CK_OK(mp_tape_backward_wrt(t, l, 0, &wv, 1));
        else MP_CK_OK(mp__tape_backward_wrt_recycle(t, l, &wv, 1));
        int acc = 0;
        for (int32_t i = before; i < t->n; i++)
            acc += (t->nodes[i].flags & MP__NODE_ACC) && t->nodes[i].op == MP__OP_MATMUL;
        ck_assert_msg(acc == (sweep == 1 && k <= 128), "k = %d, sweep %d: %d in-place products", (int)k, sweep, acc);
        MP_CK_OK(mp_tape_grad(t, wv, &g));
        read_all(t, g, sweep ? rec : plain, N * N);
    }
    ck_assert_msg(memcmp(plain, rec, sizeof plain) == 0, "k = %d: the recycling sweep's gradient differs", (int)k);
    mp_tape_destroy(t);
    free(x);
}
END_TEST

/* mp__nt_small (kernel_nt.c): C = alpha A B^T (+ C) for n <= 32, k <= 16
 * on AVX-512 CPUs, against a double reference, with padded leading
 * dimensions (the padding stays untouched); where it declines (other
 * shapes, or a CPU without AVX-512) nothing is written. */
START_TEST(nt_small_kernel_matches_a_double_reference)
{
    static const int32_t ms[] = {1, 3, 4, 5, 16, 24}, ns[] = {1, 8, 15, 16, 17, 24, 31, 32, 33}, ks[] = {1, 7, 16, 17};
    enum { LD = 40, ROWS = 26 };
    static float xa[ROWS * LD], xb[40 * LD], xc[ROWS * LD], xc0[ROWS * LD];
    for (int i = 0; i < ROWS * LD; i++) xa[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
    for (int i = 0; i < 40 * LD; i++) xb[i] = (float)((i * 53) % 97) / 40.0f - 1.2f;
    int done = 0;
    for (size_t mi = 0; mi < sizeof ms / sizeof ms[0]; mi++)
        for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++)
            for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++)
                for (int acc = 0; acc < 2; acc++) {
                    int32_t m = ms[mi], n = ns[ni], k = ks[ki];
                    float alpha = acc ? 0.5f : 1.3f;
                    for (int i = 0; i < ROWS * LD; i++) xc[i] = xc0[i] = (float)(i % 13) - 6.0f;
                    int ran = mp__nt_small(m, n, k, alpha, xa, LD - 1, xb, LD - 3, acc, xc, LD);
                    if (n > 32 || k > 16) ck_assert_int_eq(ran, 0);
                    done += ran;
                    for (int32_t i = 0; i < ROWS; i++)
                        for (int32_t j = 0; j < LD; j++) {
                            float got = xc[i * LD + j];
                            if (!ran || i >= m || j >= n) {
                                ck_assert_msg(got == xc0[i * LD + j], "m=%d n=%d k=%d: C[%d][%d] written", (int)m, (int)n,
                                              (int)k, (int)i, (int)j);
                                continue;
                            }
                            double want = 0, mag = 0;
                            for (int32_t p = 0; p < k; p++) {
                                double x = (double)xa[i * (LD - 1) + p] * xb[j * (LD - 3) + p];
                                want += x;
                                mag += fabs(x);
                            }
                            want = alpha * want + (acc ? xc0[i * LD + j] : 0.0);
                            ck_assert_msg(fabs(got - want) <= 1e-6 * (fabs(alpha) * mag + fabs(xc0[i * LD + j])) + 1e-7,
                                          "m=%d n=%d k=%d acc=%d: C[%d][%d] = %.9g, want %.9g", (int)m, (int)n, (int)k,
                                          acc, (int)i, (int)j, (double)got, want);
                        }
                }
    ck_assert_int_eq(mp__nt_small(0, 4, 4, 1.0f, xa, LD, xb, LD, 0, xc, LD), 0);
    /* declined: adding into C with alpha not a power of two (OpenBLAS
     * rounds alpha sum + C once), and alpha = 0 (OpenBLAS skips the product) */
    for (int i = 0; i < ROWS * LD; i++) xc[i] = xc0[i] = (float)(i % 13) - 6.0f;
    ck_assert_int_eq(mp__nt_small(4, 8, 8, 0.3f, xa, LD, xb, LD, 1, xc, LD), 0);
    ck_assert_int_eq(mp__nt_small(4, 8, 8, 0.0f, xa, LD, xb, LD, 0, xc, LD), 0);
    ck_assert_int_eq(mp__nt_small(4, 8, 8, 0.0f, xa, LD, xb, LD, 1, xc, LD), 0);
    ck_assert(memcmp(xc, xc0, sizeof xc) == 0);
    if (!__builtin_cpu_supports("avx512f")) ck_assert_int_eq(done, 0);
    else ck_assert_int_gt(done, 0);
}
END_TEST

/* mp__nt_small's masked loads and stores stay inside the operands: each of
 * A (m x k), B (n x k) and C (m x n), tightly packed, ends at a page whose
 * successor is PROT_NONE, so one float read or written past an operand
 * faults (ASan does not see masked intrinsics, valgrind lacks AVX-512).
 * Results equal the same call on ordinary buffers. */
static float *guarded(size_t floats, void **map, size_t *span)
{
    long pg = sysconf(_SC_PAGESIZE);
    size_t bytes = floats * sizeof(float);
    *span = (bytes + (size_t)pg - 1) / (size_t)pg * (size_t)pg;
    ck_assert_int_eq(posix_memalign(map, (size_t)pg, *span + (size_t)pg), 0);
    ck_assert_int_eq(mprotect((char *)*map + *span, (size_t)pg, PROT_NONE), 0);
    return (float *)((char *)*map + *span - bytes);
}

static void unguard(void *map, size_t span)
{
    ck_assert_int_eq(mprotect((char *)map + span, (size_t)sysconf(_SC_PAGESIZE), PROT_READ | PROT_WRITE), 0);
    free(map);
}

START_TEST(nt_small_kernel_stays_inside_its_operands)
{
    static const int32_t ms[] = {1, 3, 5}, ns[] = {1, 15, 16, 17, 31, 32}, ks[] = {1, 7, 16};
    int done = 0;
    for (size_t mi = 0; mi < 3; mi++)
        for (size_t ni = 0; ni < 6; ni++)
            for (size_t ki = 0; ki < 3; ki++)
                for (int acc = 0; acc < 2; acc++) {
                    int32_t m = ms[mi], n = ns[ni], k = ks[ki];
                    void *ma, *mb, *mc;
                    size_t la, lb, lc;
                    float *a = guarded((size_t)m * k, &ma, &la), *b = guarded((size_t)n * k, &mb, &lb),
                          *c = guarded((size_t)m * n, &mc, &lc);
                    float ra[5 * 16], rb[32 * 16], rc[5 * 32];
                    for (int32_t i = 0; i < m * k; i++) a[i] = ra[i] = (float)((i * 7) % 11) - 5.0f;
                    for (int32_t i = 0; i < n * k; i++) b[i] = rb[i] = (float)((i * 5) % 13) * 0.25f - 1.0f;
                    for (int32_t i = 0; i < m * n; i++) c[i] = rc[i] = (float)(i % 9) - 4.0f;
                    int ran = mp__nt_small(m, n, k, 0.5f, a, k, b, k, acc, c, n);
                    ck_assert_int_eq(mp__nt_small(m, n, k, 0.5f, ra, k, rb, k, acc, rc, n), ran);
                    ck_assert_msg(memcmp(c, rc, sizeof(float) * (size_t)(m * n)) == 0, "m=%d n=%d k=%d acc=%d",
                                  (int)m, (int)n, (int)k, acc);
                    done += ran;
                    unguard(ma, la);
                    unguard(mb, lb);
                    unguard(mc, lc);
                }
    if (__builtin_cpu_supports("avx512f")) ck_assert_int_eq(done, 3 * 6 * 3 * 2);
    else ck_assert_int_eq(done, 0);
}
END_TEST

START_TEST(recycling_backward_out_of_memory_records_nothing)
{
    float p[4][8];
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < 8; k++) p[i][k] = 0.1f * (float)(k - i);
    /* 3000 points: the sweep's working set (3000 x 8 values) outgrows the
     * first 64 KB block of the scratch region. */
    static float xs[3000], ys[3000];
    for (int i = 0; i < 3000; i++) {
        xs[i] = (float)i / 1500.0f - 1.0f;
        ys[i] = 0.5f * xs[i];
    }
    mp_test_install_failing_allocator();
    int failed = 0;
    for (long k = 0;; k++) {
        ck_assert_int_lt(k, 50);
        mp_tape *t = new_tape();
        mp_var pv[4], ls, g;
        for (int i = 0; i < 4; i++)
            MP_CK_OK(mp_tape_leaf(t, maml_r[i], maml_c[i], p[i], (size_t)(maml_r[i] * maml_c[i]), MP_LEAF_REQUIRES_GRAD, &pv[i]));
        mlp_loss(t, pv, xs, ys, 3000, &ls);
        MP_CK_OK(mp_tape_backward(t, ls, 0));
        MP_CK_OK(mp_tape_grad(t, pv[2], &g));
        int64_t nodes = stat(t, MP_TAPE_STAT_NODES), used = stat(t, MP_TAPE_STAT_ARENA_USED),
                high = stat(t, MP_TAPE_STAT_ARENA_HIGH);
        mp_test_fail_after(k);
        mp_status st = mp__tape_backward_wrt_recycle(t, ls, pv, 4);
        mp_test_alloc_reset();
        if (st == MP_OK) {
            mp_tape_destroy(t);
            break;
        }
        failed++;
        ck_assert_int_eq(st, MP_ERR_OUT_OF_MEMORY);
        ck_assert_int_eq(stat(t, MP_TAPE_STAT_NODES), nodes);
        ck_assert_int_eq(stat(t, MP_TAPE_STAT_ARENA_USED), used);
        ck_assert_int_eq(stat(t, MP_TAPE_STAT_ARENA_HIGH), high);
        mp_var g2;
        MP_CK_OK(mp_tape_grad(t, pv[2], &g2)); /* the previous gradients stay */
        ck_assert_int_eq(g2, g);
        for (mp_var i = 0; i < t->n; i++) ck_assert_int_eq(t->nodes[i].flags & MP__NODE_KEEP, 0);
        mp_tape_destroy(t);
    }
    ck_assert_int_gt(failed, 0);
    ck_assert_int_eq(mp_live_allocations(), 0);
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
    for (int c = 0; c < 3; c++) { /* warm-up: a reset merges the blocks of the cycle before it */
        g_maml_pruned = 2 - c;
        maml_step(t, p, 1, grad);
    }
    int64_t high = stat(t, MP_TAPE_STAT_ARENA_HIGH), heap = stat(t, MP_TAPE_STAT_HEAP_BYTES);
    int64_t nodes = stat(t, MP_TAPE_STAT_NODES);
    ck_assert_int_gt(high, 0);
    ck_assert_int_gt(nodes, 50);
    mp_test_fail_after(0); /* from now on every allocation fails */
    for (int c = 0; c < 1000; c++) {
        g_maml_pruned = c % 3; /* plain, pruned and recycling final backward */
        maml_step(t, p, 1, grad);
    }
    g_maml_pruned = 0;
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
    ck_assert_ptr_eq(node_of(t, x)->val, data);
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

static void grad_and_hvp_dir(mp_tape *t, mp_var x, mp_var y, const float *dir, mp_var *g, mp_var *hv);

/* Records y = tanh(x) * x + x^2 / 3 from a copied leaf x (caller buffer
 * src, overwritten with NaN right after the leaf is made), its gradient g
 * of L = sum(W * y) and the HVP H*dir through create_graph. */
static void record_from_scratch_buffer(mp_tape *t, float *src, mp_var *x, mp_var *y, mp_var *g, mp_var *hv)
{
    static const float dir[6] = {0.5f, -1.0f, 0.25f, 1.0f, -0.5f, 0.75f};
    mp_var a, b;
    MP_CK_OK(mp_tape_leaf(t, 2, 3, src, 6, MP_LEAF_REQUIRES_GRAD, x));
    for (int i = 0; i < 6; i++) src[i] = NAN; /* the caller reuses its buffer */
    MP_CK_OK(mp_tanh(t, *x, &a));
    MP_CK_OK(mp_mul(t, a, *x, &a));
    MP_CK_OK(mp_square(t, *x, &b));
    MP_CK_OK(mp_scale(t, b, 1.0f / 3.0f, &b));
    MP_CK_OK(mp_add(t, a, b, y));
    for (int i = 0; i < 6; i++) src[i] = 1e30f; /* and again, after the forward pass */
    grad_and_hvp_dir(t, *x, *y, dir, g, hv);
}

START_TEST(copied_leaves_do_not_depend_on_the_caller_buffer)
{
    float src[6], vals[4][6], fresh[4][6], again[4][6];
    mp_var x, y, g, hv, x2, y2, g2, hv2;
    /* The tape under test: its source buffer is scribbled over while recording. */
    mp_tape *t = new_tape();
    memcpy(src, X6, sizeof src);
    record_from_scratch_buffer(t, src, &x, &y, &g, &hv);
    const mp_var got[4] = {x, y, g, hv};
    for (int k = 0; k < 4; k++) read_all(t, got[k], vals[k], 6);
    /* A fresh tape from an untouched copy: bit-identical values, gradient and HVP. */
    mp_tape *f = new_tape();
    float pristine[6];
    memcpy(pristine, X6, sizeof pristine);
    record_from_scratch_buffer(f, pristine, &x2, &y2, &g2, &hv2);
    const mp_var ref[4] = {x2, y2, g2, hv2};
    for (int k = 0; k < 4; k++) read_all(f, ref[k], fresh[k], 6);
    ck_assert_int_eq(memcmp(vals, fresh, sizeof vals), 0);
    ck_assert_int_eq(memcmp(vals[0], X6, sizeof X6), 0);
    /* More recording on the same tape, from the same (reused) buffer, and
     * another backward with create_graph: the earlier values and gradient
     * variables keep their values, although mp_tape_grad(x) now answers
     * the new backward. */
    mp_var x3, z, s, gx;
    for (int i = 0; i < 6; i++) src[i] = (float)(i + 1) * 7.0f;
    MP_CK_OK(mp_tape_leaf(t, 2, 3, src, 6, MP_LEAF_REQUIRES_GRAD, &x3));
    MP_CK_OK(mp_mul(t, x3, x, &z));
    MP_CK_OK(mp_exp(t, z, &z));
    MP_CK_OK(mp_add(t, z, y, &z));
    MP_CK_OK(mp_sum(t, z, MP_REDUCE_ALL, &s));
    MP_CK_OK(mp_tape_backward(t, s, 1));
    MP_CK_OK(mp_tape_grad(t, x, &gx));
    ck_assert_int_ne(gx, g);
    for (int k = 0; k < 4; k++) read_all(t, got[k], again[k], 6);
    ck_assert_int_eq(memcmp(vals, again, sizeof vals), 0);
    mp_tape_destroy(f);
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

/* After a reset whose block merge failed, the arena keeps its blocks and
 * restarts on the first one; an allocation that fits in none of them fails
 * after stepping to the next block. Ops that allocate an index table
 * (max-pool's argmax, gather's copy of the indices) must roll the arena
 * back to where it was, like every other op. */
START_TEST(failed_allocations_roll_the_arena_back)
{
    static float big[100000], img[4 * 110000];
    static int32_t idx[110000];
    mp_test_install_failing_allocator();
    mp_tape *t = new_tape();
    mp_var v, x, tab, o = 777;
    MP_CK_OK(mp_tape_leaf(t, 1000, 100, big, 100000, 0, &v)); /* opens a second, 400 KB block */
    ck_assert_int_eq(t->arena.nblk, 2);
    mp_test_fail_after(0); /* every allocation fails from here on */
    MP_CK_OK(mp_tape_reset(t)); /* the merge fails: both blocks kept, back on the first */
    ck_assert_int_eq(t->arena.nblk, 2);
    ck_assert_int_eq(t->arena.cur, 0);
    MP_CK_OK(mp_tape_fill(t, 1, 1, 0.0f, &v));
    MP_CK_OK(mp_tape_leaf(t, 1, 4 * 110000, img, 4 * 110000, MP_LEAF_BORROW, &x));
    MP_CK_OK(mp_tape_leaf(t, 1, 1, big, 1, 0, &tab));
    const mp__arena before = t->arena;
    int64_t nodes = stat(t, MP_TAPE_STAT_NODES);
    /* 110000 argmax indices (440 KB) fit in neither block */
    MP_CK_STATUS(mp_maxpool2d(t, x, 1, 400, 1100, &o), MP_ERR_OUT_OF_MEMORY);
    MP_CK_ERROR_MENTIONS("mp_maxpool2d");
    ck_assert(t->arena.cur == before.cur && t->arena.off == before.off && t->arena.before == before.before);
    ck_assert_int_eq(t->arena.high, before.high);
    MP_CK_STATUS(mp_gather_rows(t, tab, idx, 110000, &o), MP_ERR_OUT_OF_MEMORY);
    MP_CK_ERROR_MENTIONS("mp_gather_rows");
    ck_assert(t->arena.cur == before.cur && t->arena.off == before.off && t->arena.before == before.before);
    ck_assert_int_eq(t->arena.high, before.high);
    ck_assert_int_eq(stat(t, MP_TAPE_STAT_NODES), nodes);
    ck_assert_int_eq(o, 777);
    mp_test_alloc_reset();
    mp_tape_destroy(t);
    /* A composite op failing half-way also restores the high-water mark:
     * layer norm's 1x1 rstd fits in the first block, its 1 x 110000 output
     * does not and no new block can be allocated. */
    t = new_tape();
    mp_test_fail_after(0);
    MP_CK_OK(mp_tape_leaf(t, 1, 110000, img, 110000, MP_LEAF_BORROW, &x));
    MP_CK_OK(mp_tape_fill(t, 1, 1, 0.0f, &v));
    int64_t used = stat(t, MP_TAPE_STAT_ARENA_USED), high = stat(t, MP_TAPE_STAT_ARENA_HIGH);
    ck_assert_int_eq(used, high);
    MP_CK_STATUS(mp_layer_norm(t, x, MP_VAR_NONE, MP_VAR_NONE, 1e-5f, &o), MP_ERR_OUT_OF_MEMORY);
    ck_assert_int_eq(stat(t, MP_TAPE_STAT_ARENA_USED), used);
    ck_assert_int_eq(stat(t, MP_TAPE_STAT_ARENA_HIGH), high);
    ck_assert_int_eq(stat(t, MP_TAPE_STAT_NODES), 2);
    ck_assert_int_eq(o, 777);
    mp_test_alloc_reset();
    mp_tape_destroy(t);
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

/* ---- numerics at the edges ------------------------------------------------------------ */
static void assert_all_finite(mp_tape *t, mp_var v)
{
    float buf[64];
    int32_t r, c;
    MP_CK_OK(mp_tape_shape(t, v, &r, &c));
    read_all(t, v, buf, 64);
    for (int i = 0; i < r * c; i++) ck_assert_msg(isfinite(buf[i]), "element %d is %g", i, (double)buf[i]);
}

static const float hv_w[8] = {0.3f, -0.7f, 1.1f, 0.2f, -0.4f, 0.9f, 0.5f, -1.2f};

/* Gradient g and Hessian-vector product H*dir of L = sum(W * y) with
 * respect to x (W = hv_w; dir = all ones when NULL): the HVP is the
 * gradient of sum(g * dir) through create_graph. */
static void grad_and_hvp_dir(mp_tape *t, mp_var x, mp_var y, const float *dir, mp_var *g, mp_var *hv)
{
    int32_t r, c;
    mp_var wv, l, s;
    MP_CK_OK(mp_tape_shape(t, y, &r, &c));
    ck_assert_int_le(r * c, 8);
    MP_CK_OK(mp_tape_leaf(t, r, c, hv_w, (size_t)(r * c), 0, &wv));
    MP_CK_OK(mp_mul(t, y, wv, &l));
    MP_CK_OK(mp_sum(t, l, MP_REDUCE_ALL, &l));
    MP_CK_OK(mp_tape_backward(t, l, 1));
    MP_CK_OK(mp_tape_grad(t, x, g));
    s = *g;
    if (dir) {
        mp_var dv;
        MP_CK_OK(mp_tape_shape(t, x, &r, &c));
        MP_CK_OK(mp_tape_leaf(t, r, c, dir, (size_t)(r * c), 0, &dv));
        MP_CK_OK(mp_mul(t, s, dv, &s));
    }
    MP_CK_OK(mp_sum(t, s, MP_REDUCE_ALL, &s));
    MP_CK_OK(mp_tape_backward(t, s, 0));
    MP_CK_OK(mp_tape_grad(t, x, hv));
}
/* grad and H*1 of sum(W * f(x)) for the op under test. */
static void grad_and_hvp(mp_tape *t, mp_var x, mp_var y, mp_var *g, mp_var *hv)
{
    grad_and_hvp_dir(t, x, y, NULL, g, hv);
}

START_TEST(softmax_is_stable_for_huge_logits)
{
    mp_tape *t = new_tape();
    const float big[8] = {1e30f, 0.0f, -1e30f, 5.0f, 3e38f, -3e38f, 0.0f, 1.0f};
    mp_var x, p, lp, g, hv, ce;
    float buf[8];
    MP_CK_OK(mp_tape_leaf(t, 2, 4, big, 8, MP_LEAF_REQUIRES_GRAD, &x));
    MP_CK_OK(mp_softmax(t, x, &p));
    read_all(t, p, buf, 8);
    ck_assert_float_eq(buf[0], 1.0f);
    ck_assert_float_eq(buf[4], 1.0f);
    ck_assert_float_eq(buf[1] + buf[2] + buf[3] + buf[5] + buf[6] + buf[7], 0.0f);
    grad_and_hvp(t, x, p, &g, &hv);
    assert_all_finite(t, g);
    assert_all_finite(t, hv);
    MP_CK_OK(mp_log_softmax(t, x, &lp));
    read_all(t, lp, buf, 8);
    ck_assert_float_eq(buf[0], 0.0f);
    ck_assert_float_eq(buf[3], 5.0f - 1e30f);
    const int32_t lab[2] = {1, 5 - 4};
    MP_CK_OK(mp_cross_entropy(t, x, lab, 2, &ce));
    grad_and_hvp(t, x, ce, &g, &hv);
    assert_all_finite(t, g);
    assert_all_finite(t, hv);
    mp_tape_destroy(t);
}
END_TEST

/* Masked (-inf) entries: value 0 (log-value -inf), gradient exactly 0 and
 * Hessian-vector product exactly 0, at every output of the softmax family;
 * the finite entries keep their exact values. The HVP direction is not
 * constant along a row (H*1 of a softmax row is 0 by shift invariance and
 * would hide errors). */
static void assert_masked_zero(mp_tape *t, mp_var g, mp_var hv, const char *what)
{
    float gb[6], hb[6];
    assert_all_finite(t, g);
    assert_all_finite(t, hv);
    read_all(t, g, gb, 6);
    read_all(t, hv, hb, 6);
    ck_assert_msg(gb[1] == 0.0f && gb[5] == 0.0f, "%s: gradient at -inf entries %g %g", what, (double)gb[1],
                  (double)gb[5]);
    ck_assert_msg(hb[1] == 0.0f && hb[5] == 0.0f, "%s: HVP at -inf entries %g %g", what, (double)hb[1],
                  (double)hb[5]);
}

START_TEST(minus_infinity_gives_zero_probability_and_gradient)
{
    mp_tape *t = new_tape();
    const float v[6] = {0.0f, -INFINITY, 1.0f, 2.0f, 2.0f, -INFINITY};
    const float dir[6] = {0.5f, -1.0f, 0.25f, 1.0f, -0.5f, 0.75f};
    const int32_t lab[2] = {2, 0};
    mp_var x, p, g, hv, ce, lp, a, b, pick;
    float buf[6];
    MP_CK_OK(mp_tape_leaf(t, 2, 3, v, 6, MP_LEAF_REQUIRES_GRAD, &x));
    MP_CK_OK(mp_softmax(t, x, &p));
    read_all(t, p, buf, 6);
    ck_assert_float_eq(buf[1], 0.0f);
    ck_assert_float_eq(buf[5], 0.0f);
    ck_assert_float_eq_tol(buf[3], 0.5f, 1e-7);
    grad_and_hvp_dir(t, x, p, dir, &g, &hv);
    assert_masked_zero(t, g, hv, "softmax");
    MP_CK_OK(mp_cross_entropy(t, x, lab, 2, &ce));
    assert_all_finite(t, ce);
    grad_and_hvp_dir(t, x, ce, dir, &g, &hv);
    assert_masked_zero(t, g, hv, "cross-entropy");

    /* log-softmax: -inf stays -inf; the loss picks finite entries
     * L = 0.3 * (lp[0][2] + lp[1][0]), whose derivatives are known:
     * dL/dx_r = 0.3 (e_r - p_r), H_r dir = -0.3 (p_r * dir_r - p_r (p_r . dir_r)). */
    MP_CK_OK(mp_log_softmax(t, x, &lp));
    read_all(t, lp, buf, 6);
    ck_assert(isinf(buf[1]) && buf[1] < 0);
    ck_assert(isinf(buf[5]) && buf[5] < 0);
    ck_assert_float_eq_tol(buf[3], -logf(2.0f), 1e-7);
    MP_CK_OK(mp_slice(t, lp, MP_AXIS_ROWS, 0, 1, &a));
    MP_CK_OK(mp_slice(t, a, MP_AXIS_COLS, 2, 1, &a));
    MP_CK_OK(mp_slice(t, lp, MP_AXIS_ROWS, 1, 1, &b));
    MP_CK_OK(mp_slice(t, b, MP_AXIS_COLS, 0, 1, &b));
    MP_CK_OK(mp_add(t, a, b, &pick));
    grad_and_hvp_dir(t, x, pick, dir, &g, &hv);
    assert_masked_zero(t, g, hv, "log-softmax");
    const double e = exp(1.0), prob[6] = {1 / (1 + e), 0, e / (1 + e), 0.5, 0.5, 0};
    const int hot[6] = {0, 0, 1, 1, 0, 0};
    float gb[6], hb[6];
    read_all(t, g, gb, 6);
    read_all(t, hv, hb, 6);
    for (int r = 0; r < 2; r++) {
        double pd = 0;
        for (int j = 0; j < 3; j++) pd += prob[3 * r + j] * dir[3 * r + j];
        for (int j = 0; j < 3; j++) {
            int k = 3 * r + j;
            ck_assert_float_eq_tol(gb[k], 0.3 * (hot[k] - prob[k]), 1e-7);
            ck_assert_float_eq_tol(hb[k], -0.3 * (prob[k] * dir[k] - prob[k] * pd), 1e-7);
        }
    }
    mp_tape_destroy(t);
}
END_TEST

START_TEST(all_minus_infinity_row_is_rejected)
{
    mp_tape *t = new_tape();
    const float v[6] = {0.0f, 1.0f, 2.0f, -INFINITY, -INFINITY, -INFINITY};
    const int32_t lab[2] = {0, 1};
    mp_var x, o = 777;
    MP_CK_OK(mp_tape_leaf(t, 2, 3, v, 6, MP_LEAF_REQUIRES_GRAD, &x));
    MP_CK_STATUS(mp_softmax(t, x, &o), MP_ERR_NOT_FINITE);
    MP_CK_ERROR_MENTIONS("mp_softmax: row 1");
    MP_CK_STATUS(mp_log_softmax(t, x, &o), MP_ERR_NOT_FINITE);
    MP_CK_ERROR_MENTIONS("mp_log_softmax");
    MP_CK_STATUS(mp_cross_entropy(t, x, lab, 2, &o), MP_ERR_NOT_FINITE);
    MP_CK_ERROR_MENTIONS("mp_cross_entropy");
    ck_assert_int_eq(o, 777);
    ck_assert_int_eq(stat(t, MP_TAPE_STAT_NODES), 1);
    mp_tape_destroy(t);
}
END_TEST

START_TEST(relu_squared_has_the_second_derivative_of_the_convention)
{
    mp_tape *t = new_tape();
    const float v[4] = {0.0f, 4.0f, -1.0f, 0.25f};
    mp_var x, y, g, hv;
    float buf[4];
    MP_CK_OK(mp_tape_leaf(t, 1, 4, v, 4, MP_LEAF_REQUIRES_GRAD, &x));
    MP_CK_OK(mp_relu(t, x, &y));
    MP_CK_OK(mp_square(t, y, &y)); /* relu(x)^2: first derivative 2 relu(x), second 2*[x > 0] */
    grad_and_hvp(t, x, y, &g, &hv);
    read_all(t, g, buf, 4);
    ck_assert_float_eq(buf[0], 0.0f);
    ck_assert_float_eq_tol(buf[1], 2 * 4.0f * -0.7f, 1e-5);
    read_all(t, hv, buf, 4);
    ck_assert_float_eq(buf[0], 0.0f); /* 2 relu'(0)^2 = 0 with relu'(0) = 0 */
    ck_assert_float_eq(buf[2], 0.0f);
    ck_assert_float_eq_tol(buf[1], 2 * -0.7f, 1e-5);
    mp_tape_destroy(t);
}
END_TEST

/* The conventions at 0 (tape.h): sqrt'(0) = 0 and every higher derivative
 * 0; relu'(0) = 0 and relu'' = 0. Each op is applied directly to a leaf
 * (no select or mask in front that could hide an inf or NaN). The values
 * are powers of two, so the exact derivatives are exact in float too:
 * d sqrt = w / (2 sqrt x), d2 sqrt = -w / (4 x^1.5). */
START_TEST(sqrt_and_relu_at_zero_follow_the_convention_exactly)
{
    static const float xs[8] = {0.0f, 4.0f, 0.0f, 0.25f, 1.0f, -0.0f, 16.0f, 0.0f};
    static const float xr[8] = {0.0f, 4.0f, -1.0f, 0.25f, -0.0f, 1e-30f, -2.0f, 0.0f};
    static const float zero = 0.0f;
    mp_tape *t = new_tape();
    mp_var x, y, g, hv;
    float gb[8], hb[8];
    for (int n = 1; n <= 8; n += 7) { /* a lone 0, then a vector mixing 0 and positive values */
        MP_CK_OK(mp_tape_reset(t));
        MP_CK_OK(mp_tape_leaf(t, 1, n, n == 1 ? &zero : xs, (size_t)n, MP_LEAF_REQUIRES_GRAD, &x));
        MP_CK_OK(mp_sqrt(t, x, &y));
        grad_and_hvp(t, x, y, &g, &hv);
        read_all(t, g, gb, 8);
        read_all(t, hv, hb, 8);
        for (int k = 0; k < n; k++) {
            double xk = n == 1 ? 0.0 : xs[k];
            float want_g = xk > 0 ? (float)(hv_w[k] / (2 * sqrt(xk))) : 0.0f;
            float want_h = xk > 0 ? (float)(-hv_w[k] / (4 * xk * sqrt(xk))) : 0.0f;
            ck_assert_msg(gb[k] == want_g, "sqrt gradient at x[%d] = %g: got %g, expected %g", k, xk, (double)gb[k],
                          (double)want_g);
            ck_assert_msg(hb[k] == want_h, "sqrt HVP at x[%d] = %g: got %g, expected %g", k, xk, (double)hb[k],
                          (double)want_h);
        }
        MP_CK_OK(mp_tape_reset(t));
        MP_CK_OK(mp_tape_leaf(t, 1, n, n == 1 ? &zero : xr, (size_t)n, MP_LEAF_REQUIRES_GRAD, &x));
        MP_CK_OK(mp_relu(t, x, &y));
        grad_and_hvp(t, x, y, &g, &hv);
        read_all(t, g, gb, 8);
        read_all(t, hv, hb, 8);
        for (int k = 0; k < n; k++) {
            float xk = n == 1 ? 0.0f : xr[k];
            ck_assert_msg(gb[k] == (xk > 0 ? hv_w[k] : 0.0f), "relu gradient at x[%d] = %g: got %g", k, (double)xk,
                          (double)gb[k]);
            ck_assert_msg(hb[k] == 0.0f, "relu HVP at x[%d] = %g: got %g", k, (double)xk, (double)hb[k]);
        }
    }
    mp_tape_destroy(t);
}
END_TEST

START_TEST(fast_exp_and_normal_cdf_are_accurate)
{
    double worst_exp = 0, worst_cdf = 0;
    for (int i = 0; i <= 200000; i++) {
        float x = -87.0f + 175.0f * (float)i / 200000.0f;
        double want = exp((double)x);
        worst_exp = fmax(worst_exp, fabs(mp__expf(x) - want) / want);
        float z = -9.0f + 18.0f * (float)i / 200000.0f;
        worst_cdf = fmax(worst_cdf, fabs(mp__normal_cdf(z) - 0.5 * erfc(-(double)z / sqrt(2.0))));
    }
    ck_assert_msg(worst_exp < 3e-7, "exp relative error %g", worst_exp);
    ck_assert_msg(worst_cdf < 3e-7, "normal cdf absolute error %g", worst_cdf);
    ck_assert_float_eq(mp__expf(-INFINITY), 0.0f);
    ck_assert_float_eq(mp__expf(-100.0f), 0.0f);
    ck_assert_float_eq(mp__expf(0.0f), 1.0f);
    ck_assert(isfinite(mp__expf(INFINITY)));
    /* The variant for x <= 0 (softmax, the normal density): the same values
     * on [-100, 0], -inf and NaN. */
    for (int i = 0; i <= 100000; i++) {
        float x = -100.0f * (float)i / 100000.0f;
        ck_assert_msg(mp__expf_nonpos(x) == mp__expf(x), "exp_nonpos(%.9g) = %.9g, exp %.9g", (double)x,
                      (double)mp__expf_nonpos(x), (double)mp__expf(x));
    }
    ck_assert_float_eq(mp__expf_nonpos(-INFINITY), 0.0f);
    ck_assert(isnan(mp__expf_nonpos(NAN)));
    /* NaN in, NaN out, with no undefined conversion on the way (the
     * sanitizer run would report one), through the library's ops too. */
    ck_assert(isnan(mp__expf(NAN)));
    ck_assert(isnan(mp__normal_cdf(NAN)));
    {
        static const float bad[2] = {NAN, 0.5f};
        float out[2];
        mp_tape *t;
        mp_var x, e, s;
        MP_CK_OK(mp_tape_create(&t));
        MP_CK_OK(mp_tape_leaf(t, 1, 2, bad, 2, 0, &x));
        MP_CK_OK(mp_exp(t, x, &e));
        MP_CK_OK(mp_softmax(t, x, &s));
        MP_CK_OK(mp_tape_read(t, e, out, 2));
        ck_assert(isnan(out[0]));
        MP_CK_OK(mp_gelu(t, x, &s));
        MP_CK_OK(mp_tape_read(t, s, out, 2));
        ck_assert(isnan(out[0]));
        mp_tape_destroy(t);
    }
    ck_assert_float_eq(mp__normal_cdf(-INFINITY), 0.0f);
    ck_assert_float_eq(mp__normal_cdf(INFINITY), 1.0f);
}
END_TEST

/* ---- bad inputs: status, message naming the op, nothing recorded, *out untouched -------
 * "Nothing recorded": the node count, the arena bytes in use, the arena
 * high-water mark and the heap bytes are all unchanged. */
#define FAILS(call, status, substr)                                                        \
    do {                                                                                   \
        int64_t n0_ = stat(t, MP_TAPE_STAT_NODES), u0_ = stat(t, MP_TAPE_STAT_ARENA_USED); \
        int64_t h0_ = stat(t, MP_TAPE_STAT_ARENA_HIGH), b0_ = stat(t, MP_TAPE_STAT_HEAP_BYTES); \
        o = 777;                                                                           \
        MP_CK_STATUS((call), (status));                                                    \
        MP_CK_ERROR_MENTIONS(substr);                                                      \
        ck_assert_str_eq(mp_tape_error(t), mp_last_error());                               \
        ck_assert_int_eq(stat(t, MP_TAPE_STAT_NODES), n0_);                                \
        ck_assert_int_eq(stat(t, MP_TAPE_STAT_ARENA_USED), u0_);                           \
        ck_assert_int_eq(stat(t, MP_TAPE_STAT_ARENA_HIGH), h0_);                           \
        ck_assert_int_eq(stat(t, MP_TAPE_STAT_HEAP_BYTES), b0_);                           \
        ck_assert_int_eq(o, 777);                                                          \
    } while (0)

START_TEST(ops_reject_bad_inputs)
{
    mp_tape *t = new_tape();
    static float z[64];
    mp_var m34, m45, m25, o;
    MP_CK_OK(mp_tape_leaf(t, 3, 4, z, 12, MP_LEAF_REQUIRES_GRAD, &m34));
    MP_CK_OK(mp_tape_leaf(t, 4, 5, z, 20, 0, &m45));
    MP_CK_OK(mp_tape_leaf(t, 2, 5, z, 10, 0, &m25));
    const mp_var bad = 99;
    const int32_t lab3[3] = {0, 4, 1}, lab_ok[3] = {0, 1, 2}, idx_bad[2] = {0, -1};

    FAILS(mp_matmul(t, m34, m34, 0, 0, &o), MP_ERR_SHAPE_MISMATCH, "mp_matmul: inner dimensions differ: op(a) is 3x4");
    FAILS(mp_matmul(t, m34, m45, 2, 0, &o), MP_ERR_INVALID_ARGUMENT, "trans_a = 2");
    FAILS(mp_matmul(t, bad, m45, 0, 0, &o), MP_ERR_UNKNOWN_VARIABLE, "mp_matmul: argument 'a' = 99");
    FAILS(mp_matmul(t, m34, -1, 0, 0, &o), MP_ERR_UNKNOWN_VARIABLE, "'b' = -1");
    FAILS(mp_matmul(t, m34, m45, 0, 0, NULL), MP_ERR_NULL_POINTER, "mp_matmul: argument 'out'");
    FAILS(mp_add(t, m34, m45, &o), MP_ERR_SHAPE_MISMATCH, "mp_add: shapes a 3x4 and b 4x5");
    FAILS(mp_sub(t, m25, m34, &o), MP_ERR_SHAPE_MISMATCH, "mp_sub: shapes a 2x5 and b 3x4");
    FAILS(mp_mul(t, m34, m25, &o), MP_ERR_SHAPE_MISMATCH, "mp_mul");
    FAILS(mp_div(t, m34, bad, &o), MP_ERR_UNKNOWN_VARIABLE, "mp_div");
    FAILS(mp_scale(t, bad, 2.0f, &o), MP_ERR_UNKNOWN_VARIABLE, "mp_scale");
    FAILS(mp_add_scalar(t, bad, 2.0f, &o), MP_ERR_UNKNOWN_VARIABLE, "mp_add_scalar");
    FAILS(mp_sum(t, m34, 3, &o), MP_ERR_INVALID_ARGUMENT, "mp_sum: reduce = 3");
    FAILS(mp_mean(t, m34, -1, &o), MP_ERR_INVALID_ARGUMENT, "mp_mean: reduce = -1");
    mp_status (*unary[])(mp_tape *, mp_var, mp_var *) = {mp_relu, mp_tanh, mp_sigmoid, mp_gelu, mp_exp, mp_log,
                                                          mp_sqrt, mp_square, mp_softmax, mp_log_softmax,
                                                          mp_transpose};
    for (size_t i = 0; i < sizeof unary / sizeof unary[0]; i++) {
        FAILS(unary[i](t, bad, &o), MP_ERR_UNKNOWN_VARIABLE, "is not a variable of this tape");
        FAILS(unary[i](t, m34, NULL), MP_ERR_NULL_POINTER, "'out'");
        MP_CK_STATUS(unary[i](NULL, m34, &o), MP_ERR_NULL_POINTER);
        MP_CK_ERROR_MENTIONS("'tape'");
    }
    FAILS(mp_cross_entropy(t, m34, NULL, 3, &o), MP_ERR_NULL_POINTER, "mp_cross_entropy: argument 'labels'");
    FAILS(mp_cross_entropy(t, m34, lab_ok, 2, &o), MP_ERR_SHAPE_MISMATCH, "n = 2 labels for logits of 3x4");
    FAILS(mp_cross_entropy(t, m34, lab3, 3, &o), MP_ERR_RANGE, "labels[1] = 4 is outside [0, 4)");
    FAILS(mp_mse(t, m34, m45, &o), MP_ERR_SHAPE_MISMATCH, "mp_mse: pred is 3x4 but target is 4x5");
    FAILS(mp_layer_norm(t, m34, m45, MP_VAR_NONE, 1e-5f, &o), MP_ERR_SHAPE_MISMATCH, "gamma is 4x5, expected 1x4");
    FAILS(mp_layer_norm(t, m34, MP_VAR_NONE, bad, 1e-5f, &o), MP_ERR_UNKNOWN_VARIABLE, "'beta'");
    FAILS(mp_layer_norm(t, m34, MP_VAR_NONE, MP_VAR_NONE, 0.0f, &o), MP_ERR_INVALID_ARGUMENT, "eps");
    FAILS(mp_gather_rows(t, m34, NULL, 2, &o), MP_ERR_NULL_POINTER, "'idx'");
    FAILS(mp_gather_rows(t, m34, idx_bad, 2, &o), MP_ERR_RANGE, "idx[1] = -1 is outside [0, 3)");
    FAILS(mp_gather_rows(t, m34, lab_ok, 0, &o), MP_ERR_INVALID_ARGUMENT, "n = 0");
    FAILS(mp_concat(t, m34, m45, MP_AXIS_ROWS, &o), MP_ERR_SHAPE_MISMATCH, "mp_concat: a 3x4 and b 4x5 differ in cols");
    FAILS(mp_concat(t, m34, m34, 2, &o), MP_ERR_INVALID_ARGUMENT, "axis = 2");
    FAILS(mp_slice(t, m34, MP_AXIS_COLS, 2, 3, &o), MP_ERR_RANGE, "start = 2, len = 3 outside the 4 cols");
    FAILS(mp_slice(t, m34, MP_AXIS_ROWS, 0, 0, &o), MP_ERR_RANGE, "mp_slice");
    FAILS(mp_slice(t, m34, 5, 0, 1, &o), MP_ERR_INVALID_ARGUMENT, "axis = 5");
    FAILS(mp_reshape(t, m34, 5, 2, &o), MP_ERR_SHAPE_MISMATCH, "cannot reshape 3x4 (12 values) to 5x2");
    FAILS(mp_conv2d(t, m34, m45, MP_VAR_NONE, 2, 2, 2, 1, 1, 0, &o), MP_ERR_SHAPE_MISMATCH, "x is 3x4, expected N x 8");
    FAILS(mp_conv2d(t, m34, m45, MP_VAR_NONE, 1, 2, 2, 2, 1, 0, &o), MP_ERR_SHAPE_MISMATCH, "w is 4x5, expected F x 4");
    FAILS(mp_conv2d(t, m34, m34, m25, 1, 2, 2, 2, 1, 0, &o), MP_ERR_SHAPE_MISMATCH, "bias is 2x5, expected 1x3");
    FAILS(mp_conv2d(t, m34, m34, MP_VAR_NONE, 1, 2, 2, 3, 1, 0, &o), MP_ERR_INVALID_ARGUMENT, "kernel=3");
    FAILS(mp_conv2d(t, m34, m34, MP_VAR_NONE, 1, 2, 2, 2, 0, 0, &o), MP_ERR_INVALID_ARGUMENT, "stride=0");
    FAILS(mp_maxpool2d(t, m34, 1, 1, 4, &o), MP_ERR_INVALID_ARGUMENT, "mp_maxpool2d: channels=1 height=1");
    FAILS(mp_maxpool2d(t, m34, 1, 2, 4, &o), MP_ERR_SHAPE_MISMATCH, "x is 3x4, expected N x 8");
    FAILS(mp_batch_matmul(t, m34, m45, 2, 0, 0, &o), MP_ERR_SHAPE_MISMATCH, "do not split into batch = 2");
    FAILS(mp_batch_matmul(t, m34, m34, 0, 0, 0, &o), MP_ERR_INVALID_ARGUMENT, "batch = 0");
    FAILS(mp_batch_matmul(t, m34, m34, 1, 0, 0, &o), MP_ERR_SHAPE_MISMATCH, "mp_batch_matmul: inner dimensions");
    FAILS(mp_split_heads(t, m34, 2, 2, 2, &o), MP_ERR_SHAPE_MISMATCH, "mp_split_heads: x is 3x4, expected 4 rows");
    FAILS(mp_split_heads(t, m34, 1, 3, 3, &o), MP_ERR_SHAPE_MISMATCH, "divisible by heads");
    FAILS(mp_split_heads(t, m34, 1, 3, 0, &o), MP_ERR_INVALID_ARGUMENT, "heads = 0");
    FAILS(mp_merge_heads(t, m34, 1, 3, 2, &o), MP_ERR_SHAPE_MISMATCH, "mp_merge_heads: x is 3x4, expected 6 rows");
    FAILS(mp__concat_bcast(t, m34, m25, &o), MP_ERR_SHAPE_MISMATCH, "mp__concat_bcast: a 3x4 and b 2x5: the rows differ");
    FAILS(mp__concat_bcast(t, bad, m25, &o), MP_ERR_UNKNOWN_VARIABLE, "mp__concat_bcast: argument 'a' = 99");
    FAILS(mp__concat_bcast(t, m34, m25, NULL), MP_ERR_NULL_POINTER, "mp__concat_bcast: argument 'out'");
    /* NULL tape and NULL out for every op that has not been covered above. */
    const int32_t lab1[3] = {0, 0, 0};
    mp_status nulls[] = {
        mp_matmul(NULL, m34, m45, 0, 0, &o), mp_add(NULL, m34, m34, &o), mp_sub(NULL, m34, m34, &o),
        mp_mul(NULL, m34, m34, &o), mp_div(NULL, m34, m34, &o), mp_scale(NULL, m34, 1.0f, &o),
        mp_add_scalar(NULL, m34, 1.0f, &o), mp_sum(NULL, m34, 0, &o), mp_mean(NULL, m34, 0, &o),
        mp_cross_entropy(NULL, m34, lab1, 3, &o), mp_mse(NULL, m34, m34, &o),
        mp_layer_norm(NULL, m34, MP_VAR_NONE, MP_VAR_NONE, 1e-5f, &o), mp_gather_rows(NULL, m34, lab1, 3, &o),
        mp_concat(NULL, m34, m34, 0, &o), mp_slice(NULL, m34, 0, 0, 1, &o), mp_reshape(NULL, m34, 4, 3, &o),
        mp_conv2d(NULL, m34, m34, MP_VAR_NONE, 1, 2, 2, 2, 1, 0, &o), mp_maxpool2d(NULL, m34, 1, 2, 2, &o),
        mp_batch_matmul(NULL, m34, m45, 1, 0, 0, &o), mp_split_heads(NULL, m34, 1, 3, 2, &o),
        mp_merge_heads(NULL, m34, 1, 3, 2, &o), mp_tape_fill(NULL, 1, 1, 0.0f, &o),
        mp_tape_leaf(NULL, 1, 1, z, 1, 0, &o), mp_tape_grad(NULL, m34, &o), mp_tape_backward(NULL, m34, 0),
        mp_tape_backward_wrt(NULL, m34, 0, &m34, 1), mp_tape_read(NULL, m34, z, 12),
    };
    for (size_t i = 0; i < sizeof nulls / sizeof nulls[0]; i++) ck_assert_msg(nulls[i] == MP_ERR_NULL_POINTER, "call %zu", i);
    ck_assert_int_eq(o, 777);
    FAILS(mp_matmul(t, m34, m45, 0, 0, NULL), MP_ERR_NULL_POINTER, "'out'");
    FAILS(mp_add(t, m34, m34, NULL), MP_ERR_NULL_POINTER, "mp_add: argument 'out'");
    FAILS(mp_sum(t, m34, 0, NULL), MP_ERR_NULL_POINTER, "mp_sum");
    FAILS(mp_cross_entropy(t, m34, lab1, 3, NULL), MP_ERR_NULL_POINTER, "mp_cross_entropy");
    FAILS(mp_mse(t, m34, m34, NULL), MP_ERR_NULL_POINTER, "mp_mse");
    FAILS(mp_layer_norm(t, m34, MP_VAR_NONE, MP_VAR_NONE, 1e-5f, NULL), MP_ERR_NULL_POINTER, "mp_layer_norm");
    FAILS(mp_gather_rows(t, m34, lab1, 3, NULL), MP_ERR_NULL_POINTER, "mp_gather_rows");
    FAILS(mp_concat(t, m34, m34, 0, NULL), MP_ERR_NULL_POINTER, "mp_concat");
    FAILS(mp_conv2d(t, m34, m34, MP_VAR_NONE, 1, 2, 2, 2, 1, 0, NULL), MP_ERR_NULL_POINTER, "mp_conv2d");
    FAILS(mp_maxpool2d(t, m34, 1, 2, 2, NULL), MP_ERR_NULL_POINTER, "mp_maxpool2d");
    FAILS(mp_batch_matmul(t, m34, m45, 1, 0, 0, NULL), MP_ERR_NULL_POINTER, "mp_batch_matmul");
    FAILS(mp_split_heads(t, m34, 1, 3, 2, NULL), MP_ERR_NULL_POINTER, "mp_split_heads");
    FAILS(mp_tape_fill(t, 1, 1, 0.0f, NULL), MP_ERR_NULL_POINTER, "mp_tape_fill");
    mp_tape_destroy(t);
}
END_TEST

START_TEST(tape_functions_reject_bad_inputs)
{
    mp_tape *t = new_tape();
    static float z[64];
    float buf[64], f = 5.0f;
    int32_t r = -7, c = -7;
    mp_var m34, o;
    MP_CK_OK(mp_tape_leaf(t, 3, 4, z, 12, MP_LEAF_REQUIRES_GRAD, &m34));
    FAILS(mp_tape_leaf(t, 3, 4, z, 11, 0, &o), MP_ERR_SHAPE_MISMATCH, "mp_tape_leaf: len = 11 but the shape 3x4 needs 12");
    FAILS(mp_tape_leaf(t, 0, 4, z, 0, 0, &o), MP_ERR_INVALID_ARGUMENT, "shape 0x4 is invalid");
    FAILS(mp_tape_leaf(t, 3, 4, z, 12, 8, &o), MP_ERR_INVALID_ARGUMENT, "unknown flags 0x8");
    FAILS(mp_tape_leaf(t, 3, 4, NULL, 12, 0, &o), MP_ERR_NULL_POINTER, "'data'");
    FAILS(mp_tape_fill(t, 3, -1, 0.0f, &o), MP_ERR_INVALID_ARGUMENT, "mp_tape_fill: shape 3x-1");
    FAILS(mp_tape_shape(t, 12, &r, &c), MP_ERR_UNKNOWN_VARIABLE, "mp_tape_shape");
    FAILS(mp_tape_shape(t, m34, NULL, &c), MP_ERR_NULL_POINTER, "'rows'");
    ck_assert(r == -7 && c == -7);
    FAILS(mp_tape_read(t, m34, buf, 11), MP_ERR_BUFFER_TOO_SMALL, "'buf' has room for len = 11 floats, variable");
    FAILS(mp_tape_read(t, m34, NULL, 12), MP_ERR_NULL_POINTER, "'buf'");
    char want[160];
    snprintf(want, sizeof want, "mp_tape_scalar: variable %d is 3x4, expected 1x1", (int)m34);
    FAILS(mp_tape_scalar(t, m34, &f), MP_ERR_SHAPE_MISMATCH, want);
    ck_assert_float_eq(f, 5.0f);
    snprintf(want, sizeof want, "mp_tape_backward: loss %d is 3x4", (int)m34);
    FAILS(mp_tape_backward(t, m34, 0), MP_ERR_SHAPE_MISMATCH, want);
    FAILS(mp_tape_backward(t, 3, 0), MP_ERR_UNKNOWN_VARIABLE, "mp_tape_backward");
    mp_var s;
    MP_CK_OK(mp_sum(t, m34, MP_REDUCE_ALL, &s));
    FAILS(mp_tape_backward(t, s, 2), MP_ERR_INVALID_ARGUMENT, "create_graph = 2");
    FAILS(mp_tape_grad(t, s, &o), MP_ERR_STATE, "call mp_tape_backward first");
    const mp_var wrt_bad[2] = {m34, 50};
    FAILS(mp_tape_backward_wrt(t, s, 0, NULL, 1), MP_ERR_NULL_POINTER, "mp_tape_backward_wrt: argument 'wrt'");
    FAILS(mp_tape_backward_wrt(t, s, 0, wrt_bad, 0), MP_ERR_INVALID_ARGUMENT, "n = 0");
    FAILS(mp_tape_backward_wrt(t, s, 0, wrt_bad, 2), MP_ERR_UNKNOWN_VARIABLE, "argument 'wrt[1]' = 50");
    snprintf(want, sizeof want, "mp_tape_backward_wrt: loss %d is 3x4", (int)m34);
    FAILS(mp_tape_backward_wrt(t, m34, 0, wrt_bad, 1), MP_ERR_SHAPE_MISMATCH, want);
    FAILS(mp_tape_grad(t, s, &o), MP_ERR_STATE, "call mp_tape_backward first");
    MP_CK_OK(mp_tape_backward(t, s, 0));
    FAILS(mp_tape_grad(t, 1000, &o), MP_ERR_UNKNOWN_VARIABLE, "mp_tape_grad");
    FAILS(mp_tape_grad(t, s, NULL), MP_ERR_NULL_POINTER, "'out'");
    MP_CK_OK(mp_tape_reset(t));
    FAILS(mp_tape_read(t, m34, buf, 12), MP_ERR_UNKNOWN_VARIABLE, "before the last mp_tape_reset"); /* ids die with reset */
    MP_CK_OK(mp_tape_leaf(t, 3, 4, z, 12, 0, &o)); /* the same index again: the old id still fails */
    FAILS(mp_tape_read(t, m34, buf, 12), MP_ERR_UNKNOWN_VARIABLE, "before the last mp_tape_reset");
    mp_tape_destroy(t);
}
END_TEST

/* ---- ids: stale (recorded before the last reset) and foreign (another tape) --------------
 * Every function taking a variable, looped over every variable argument and
 * a set of bad ids, then over a NULL out pointer (and a NULL tape). */
typedef mp_status (*idcall_fn)(mp_tape *t, const mp_var *v, mp_var *o);
typedef struct {
    const char *fn;
    int nvar;
    const char *arg[3];
    int leaf[3];       /* which of the test leaves fills each variable argument */
    int optional;      /* bit j: argument j accepts MP_VAR_NONE */
    const char *outarg; /* the pointer argument tested with NULL (NULL: none) */
    idcall_fn call;
} idcase;

#define OPC(name, expr) \
    static mp_status name(mp_tape *t, const mp_var *v, mp_var *o) { (void)v, (void)o; return (expr); }
static const int32_t id_lab[3] = {0, 1, 2}, id_idx[2] = {0, 2};
OPC(c_matmul, mp_matmul(t, v[0], v[1], 0, 0, o))
OPC(c_add, mp_add(t, v[0], v[1], o))
OPC(c_sub, mp_sub(t, v[0], v[1], o))
OPC(c_mul, mp_mul(t, v[0], v[1], o))
OPC(c_div, mp_div(t, v[0], v[1], o))
OPC(c_scale, mp_scale(t, v[0], 2.0f, o))
OPC(c_add_scalar, mp_add_scalar(t, v[0], 2.0f, o))
OPC(c_sum, mp_sum(t, v[0], MP_REDUCE_PER_ROW, o))
OPC(c_mean, mp_mean(t, v[0], MP_REDUCE_PER_COL, o))
OPC(c_relu, mp_relu(t, v[0], o))
OPC(c_tanh, mp_tanh(t, v[0], o))
OPC(c_sigmoid, mp_sigmoid(t, v[0], o))
OPC(c_gelu, mp_gelu(t, v[0], o))
OPC(c_exp, mp_exp(t, v[0], o))
OPC(c_log, mp_log(t, v[0], o))
OPC(c_sqrt, mp_sqrt(t, v[0], o))
OPC(c_square, mp_square(t, v[0], o))
OPC(c_softmax, mp_softmax(t, v[0], o))
OPC(c_log_softmax, mp_log_softmax(t, v[0], o))
OPC(c_cross_entropy, mp_cross_entropy(t, v[0], id_lab, 3, o))
OPC(c_mse, mp_mse(t, v[0], v[1], o))
OPC(c_layer_norm, mp_layer_norm(t, v[0], v[1], v[2], 1e-5f, o))
OPC(c_gather_rows, mp_gather_rows(t, v[0], id_idx, 2, o))
OPC(c_concat, mp_concat(t, v[0], v[1], MP_AXIS_ROWS, o))
OPC(c_slice, mp_slice(t, v[0], MP_AXIS_ROWS, 1, 1, o))
OPC(c_reshape, mp_reshape(t, v[0], 4, 3, o))
OPC(c_transpose, mp_transpose(t, v[0], o))
OPC(c_conv2d, mp_conv2d(t, v[0], v[1], v[2], 1, 2, 2, 2, 1, 0, o))
OPC(c_maxpool2d, mp_maxpool2d(t, v[0], 1, 2, 2, o))
OPC(c_batch_matmul, mp_batch_matmul(t, v[0], v[1], 1, 1, 1, o))
OPC(c_split_heads, mp_split_heads(t, v[0], 1, 3, 2, o))
OPC(c_merge_heads, mp_merge_heads(t, v[0], 1, 3, 2, o))
OPC(c_grad, mp_tape_grad(t, v[0], o))
OPC(c_linear, mp__linear(t, v[0], v[1], v[2], 0, 1, o))
OPC(c_scale_shift, mp__scale_shift(t, v[0], v[1], v[2], o))
static mp_status c_shape(mp_tape *t, const mp_var *v, mp_var *o)
{
    int32_t r, c;
    return mp_tape_shape(t, v[0], o ? &r : NULL, &c);
}
static mp_status c_read(mp_tape *t, const mp_var *v, mp_var *o)
{
    float buf[16];
    return mp_tape_read(t, v[0], o ? buf : NULL, 16);
}
static mp_status c_scalar(mp_tape *t, const mp_var *v, mp_var *o)
{
    float f;
    return mp_tape_scalar(t, v[0], o ? &f : NULL);
}
OPC(c_backward, mp_tape_backward(t, v[0], 1))
OPC(c_backward_wrt, mp_tape_backward_wrt(t, v[0], 1, o ? &v[1] : NULL, 1))

/* Test leaves: 0 = 3x4 (requires grad), 1 = 4x5, 2 = 1x4, 3 = 1x3, 4 = 6x2, 5 = 1x1 (requires grad). */
#define ID_LEAVES 6
static const int32_t id_r[ID_LEAVES] = {3, 4, 1, 1, 6, 1}, id_c[ID_LEAVES] = {4, 5, 4, 3, 2, 1};
static const idcase idcases[] = {
    {"mp_matmul", 2, {"a", "b"}, {0, 1}, 0, "out", c_matmul},
    {"mp_add", 2, {"a", "b"}, {0, 2}, 0, "out", c_add},
    {"mp_sub", 2, {"a", "b"}, {2, 0}, 0, "out", c_sub},
    {"mp_mul", 2, {"a", "b"}, {0, 0}, 0, "out", c_mul},
    {"mp_div", 2, {"a", "b"}, {0, 0}, 0, "out", c_div},
    {"mp_scale", 1, {"a"}, {0}, 0, "out", c_scale},
    {"mp_add_scalar", 1, {"a"}, {0}, 0, "out", c_add_scalar},
    {"mp_sum", 1, {"a"}, {0}, 0, "out", c_sum},
    {"mp_mean", 1, {"a"}, {0}, 0, "out", c_mean},
    {"mp_relu", 1, {"a"}, {0}, 0, "out", c_relu},
    {"mp_tanh", 1, {"a"}, {0}, 0, "out", c_tanh},
    {"mp_sigmoid", 1, {"a"}, {0}, 0, "out", c_sigmoid},
    {"mp_gelu", 1, {"a"}, {0}, 0, "out", c_gelu},
    {"mp_exp", 1, {"a"}, {0}, 0, "out", c_exp},
    {"mp_log", 1, {"a"}, {0}, 0, "out", c_log},
    {"mp_sqrt", 1, {"a"}, {0}, 0, "out", c_sqrt},
    {"mp_square", 1, {"a"}, {0}, 0, "out", c_square},
    {"mp_softmax", 1, {"a"}, {0}, 0, "out", c_softmax},
    {"mp_log_softmax", 1, {"a"}, {0}, 0, "out", c_log_softmax},
    {"mp_cross_entropy", 1, {"logits"}, {0}, 0, "out", c_cross_entropy},
    {"mp_mse", 2, {"pred", "target"}, {0, 0}, 0, "out", c_mse},
    {"mp_layer_norm", 3, {"x", "gamma", "beta"}, {0, 2, 2}, 6, "out", c_layer_norm},
    {"mp_gather_rows", 1, {"table"}, {0}, 0, "out", c_gather_rows},
    {"mp_concat", 2, {"a", "b"}, {0, 0}, 0, "out", c_concat},
    {"mp_slice", 1, {"a"}, {0}, 0, "out", c_slice},
    {"mp_reshape", 1, {"a"}, {0}, 0, "out", c_reshape},
    {"mp_transpose", 1, {"a"}, {0}, 0, "out", c_transpose},
    {"mp_conv2d", 3, {"x", "w", "bias"}, {0, 0, 3}, 4, "out", c_conv2d},
    {"mp_maxpool2d", 1, {"x"}, {0}, 0, "out", c_maxpool2d},
    {"mp_batch_matmul", 2, {"a", "b"}, {1, 0}, 0, "out", c_batch_matmul},
    {"mp_split_heads", 1, {"x"}, {0}, 0, "out", c_split_heads},
    {"mp_merge_heads", 1, {"x"}, {4}, 0, "out", c_merge_heads},
    {"mp_tape_grad", 1, {"v"}, {0}, 0, "out", c_grad},
    {"mp__linear", 3, {"a", "b", "bias"}, {0, 0, 3}, 0, "out", c_linear},
    {"mp__scale_shift", 3, {"x", "s", "b"}, {0, 2, 5}, 0, "out", c_scale_shift},
    {"mp_tape_shape", 1, {"v"}, {0}, 0, "rows", c_shape},
    {"mp_tape_read", 1, {"v"}, {0}, 0, "buf", c_read},
    {"mp_tape_scalar", 1, {"v"}, {5}, 0, "out", c_scalar},
    {"mp_tape_backward", 1, {"loss"}, {5}, 0, NULL, c_backward},
    {"mp_tape_backward_wrt", 2, {"loss", "wrt[0]"}, {5, 5}, 0, "wrt", c_backward_wrt},
};
#define NIDCASES ((int)(sizeof idcases / sizeof idcases[0]))

static void record_id_leaves(mp_tape *t, mp_var *ids)
{
    static const float half[32] = {0.5f, 0.25f, 0.75f, 1.0f, 0.5f, 0.125f, 0.5f, 2.0f, 0.5f, 0.5f, 1.5f, 0.5f,
                                   0.5f, 0.25f, 0.75f, 1.0f, 0.5f, 0.125f, 0.5f, 2.0f, 0.5f, 0.5f, 1.5f, 0.5f};
    for (int k = 0; k < ID_LEAVES; k++)
        MP_CK_OK(mp_tape_leaf(t, id_r[k], id_c[k], half, (size_t)(id_r[k] * id_c[k]),
                              (k == 0 || k == 5) ? MP_LEAF_REQUIRES_GRAD : 0, &ids[k]));
}

/* The node index behind an id of a tape whose current base is `base`. */
static uint32_t index_of(uint32_t base, mp_var v) { return (uint32_t)v - base; }

START_TEST(every_function_rejects_stale_foreign_and_unknown_ids)
{
    mp_tape *t = new_tape(), *u = new_tape();
    mp_var stale[ID_LEAVES], cur[ID_LEAVES], foreign[ID_LEAVES], o;
    record_id_leaves(t, stale);
    uint32_t old_base = t->id_base;
    MP_CK_OK(mp_tape_reset(t));
    record_id_leaves(t, cur);
    /* Tags come from the tapes' addresses: on the rare coincidence (1 in 127)
     * step u's tag with a reset, which is what the header documents. */
    if (u->id_base == t->id_base) MP_CK_OK(mp_tape_reset(u));
    ck_assert_uint_ne(u->id_base, t->id_base);
    record_id_leaves(u, foreign);
    for (int k = 0; k < ID_LEAVES; k++) {
        /* Same node index, different id: only the tag tells them apart. */
        ck_assert_uint_eq(index_of(old_base, stale[k]), index_of(t->id_base, cur[k]));
        ck_assert_uint_eq(index_of(u->id_base, foreign[k]), index_of(t->id_base, cur[k]));
        ck_assert_int_ne(stale[k], cur[k]);
        ck_assert_int_ne(foreign[k], cur[k]);
        ck_assert_int_gt(cur[k], 0);
    }
    mp_var loss = cur[5];
    MP_CK_OK(mp_tape_backward(t, loss, 0)); /* so that mp_tape_grad has gradients */
    char want[200];
    for (int c = 0; c < NIDCASES; c++) {
        const idcase *e = &idcases[c];
        mp_var v[3];
        for (int j = 0; j < e->nvar; j++) v[j] = cur[e->leaf[j]];
        for (int j = 0; j < e->nvar; j++) {
            const mp_var next = (mp_var)(t->id_base + (uint32_t)t->n); /* not recorded yet */
            const mp_var bad[8] = {stale[e->leaf[j]], foreign[e->leaf[j]], next, MP_VAR_NONE, 0, 99, INT32_MAX,
                                   INT32_MIN};
            const char *why[8] = {"before the last mp_tape_reset or on another tape",
                                  "before the last mp_tape_reset or on another tape", "but the tape has",
                                  "MP_VAR_NONE", "not an id returned by a tape", "not an id returned by a tape",
                                  "before the last mp_tape_reset or on another tape", "not an id returned by a tape"};
            for (int b = 0; b < 8; b++) {
                if (bad[b] == MP_VAR_NONE && (e->optional >> j & 1)) continue; /* accepted there */
                mp_var w[3] = {v[0], v[1], v[2]};
                w[j] = bad[b];
                snprintf(want, sizeof want, "%s: argument '%s' = %d is not a variable of this tape", e->fn, e->arg[j],
                         (int)bad[b]);
                FAILS(e->call(t, w, &o), MP_ERR_UNKNOWN_VARIABLE, want);
                MP_CK_ERROR_MENTIONS(why[b]);
            }
        }
        if (e->outarg) {
            snprintf(want, sizeof want, "%s: argument '%s' is NULL", e->fn, e->outarg);
            FAILS(e->call(t, v, NULL), MP_ERR_NULL_POINTER, want);
        }
        o = 777;
        MP_CK_STATUS(e->call(NULL, v, &o), MP_ERR_NULL_POINTER);
        snprintf(want, sizeof want, "%s: argument 'tape' is NULL", e->fn);
        MP_CK_ERROR_MENTIONS(want);
        ck_assert_int_eq(o, 777);
        /* The same call with the good ids succeeds: the failures above come
         * from the one bad argument. */
        mp_status st = e->call(t, v, &o);
        ck_assert_msg(st == MP_OK, "%s with valid ids: %s", e->fn, mp_tape_error(t));
        /* Ids from the other tape and stale ids are rejected there too. */
        if (c == 0) {
            mp_tape *keep = t;
            t = u;
            FAILS(mp_relu(t, cur[0], &o), MP_ERR_UNKNOWN_VARIABLE, "on another tape");
            t = keep;
        }
    }
    mp_tape_destroy(u);
    mp_tape_destroy(t);
}
END_TEST

/* Tags cycle through 127 values: an id from one of the last 126 cycles is
 * rejected, one from exactly 127 resets ago names a node again (the
 * documented limit). The node table is capped at 2^24 variables. */
START_TEST(ids_change_at_every_reset_and_the_node_count_is_capped)
{
    mp_tape *t = new_tape();
    mp_var first, x, o;
    float f;
    MP_CK_OK(mp_tape_fill(t, 1, 1, 3.0f, &first));
    for (int r = 1; r <= 127; r++) {
        MP_CK_OK(mp_tape_reset(t));
        MP_CK_OK(mp_tape_fill(t, 1, 1, 4.0f, &x));
        if (r < 127) {
            ck_assert_int_ne(x, first);
            MP_CK_STATUS(mp_tape_scalar(t, first, &f), MP_ERR_UNKNOWN_VARIABLE);
        }
        ck_assert_int_gt(x, 0);
    }
    ck_assert_int_eq(x, first); /* the tag has come round */
    MP_CK_OK(mp_tape_scalar(t, first, &f));
    ck_assert_float_eq(f, 4.0f);
    /* The cap, without allocating 2^24 nodes: pretend the table is full. */
    int32_t n = t->n, cap = t->cap;
    t->n = t->cap = MP__ID_MAX_NODES;
    o = 777;
    MP_CK_STATUS(mp_tape_fill(t, 1, 1, 0.0f, &o), MP_ERR_OUT_OF_MEMORY);
    MP_CK_ERROR_MENTIONS("the tape holds 16777216 variables, the most it can (2^24); reset it");
    ck_assert_int_eq(o, 777);
    ck_assert_int_eq(t->n, MP__ID_MAX_NODES);
    t->n = n;
    t->cap = cap;
    MP_CK_OK(mp_tape_fill(t, 1, 1, 0.0f, &o));
    mp_tape_destroy(t);
}
END_TEST

/* A tape created after another was destroyed (allocators usually hand it
 * the same block) rejects the destroyed tape's ids, whatever the address. */
START_TEST(a_new_tape_rejects_ids_of_a_destroyed_one)
{
    /* glibc hands the block back at once, so most rounds reuse the address
     * (ASan's quarantine never does; the check holds either way). */
    for (int i = 0; i < 200; i++) {
        mp_tape *a = new_tape();
        mp_var old, x;
        float f = 9.0f;
        MP_CK_OK(mp_tape_fill(a, 1, 1, 1.0f, &old));
        mp_tape_destroy(a);
        mp_tape *b = new_tape();
        MP_CK_OK(mp_tape_fill(b, 1, 1, 2.0f, &x));
        MP_CK_STATUS(mp_tape_scalar(b, old, &f), MP_ERR_UNKNOWN_VARIABLE);
        ck_assert_float_eq(f, 9.0f);
        mp_tape_destroy(b);
    }
}
END_TEST

Suite *mp_test_tape_suite(void)
{
    Suite *s = suite_create("tape");
    TCase *fd = tcase_create("finite_differences");
    tcase_add_loop_test(fd, op_gradients_match_finite_differences, 0, NCASES);
    tcase_add_loop_test(fd, op_hessian_vector_products_match_finite_differences, 0, NCASES);
    suite_add_tcase(s, fd);
    TCase *pt = tcase_create("pytorch");
    tcase_add_loop_test(pt, op_matches_pytorch, 0, NCASES);
    suite_add_tcase(s, pt);
    TCase *sem = tcase_create("semantics");
    tcase_add_test(sem, aliased_operands_accumulate);
    tcase_add_test(sem, grads_without_create_graph_are_constants);
    tcase_add_test(sem, unrelated_and_constant_vars_get_zero_grads);
    tcase_add_test(sem, backward_replaces_earlier_grads);
    tcase_add_test(sem, backward_wrt_prunes_other_paths);
    tcase_add_test(sem, second_order_maml_matches_finite_differences);
    tcase_add_test(sem, recycling_backward_is_bit_identical_and_reuses_buffers);
    tcase_add_loop_test(sem, recycling_backward_adds_contributions_in_place, 0, 7);
    tcase_add_loop_test(sem, recycling_backward_adds_long_products_as_nodes, 0, 2);
    suite_add_tcase(s, sem);
    TCase *mem = tcase_create("memory");
    tcase_add_test(mem, cycles_keep_memory_constant_and_allocate_nothing);
    tcase_add_test(mem, arena_grows_across_blocks_and_merges_on_reset);
    tcase_add_test(mem, borrowed_leaves_are_not_copied_or_written);
    tcase_add_test(mem, copied_leaves_do_not_depend_on_the_caller_buffer);
    tcase_add_test(mem, stats_report_nodes_and_reject_unknown_keys);
    tcase_add_test(mem, out_of_memory_is_reported_and_records_nothing);
    tcase_add_test(mem, failed_allocations_roll_the_arena_back);
    tcase_add_test(mem, recycling_backward_out_of_memory_records_nothing);
    suite_add_tcase(s, mem);
    TCase *num = tcase_create("numerics");
    tcase_add_test(num, softmax_is_stable_for_huge_logits);
    tcase_add_test(num, nt_small_kernel_matches_a_double_reference);
    tcase_add_test(num, nt_small_kernel_stays_inside_its_operands);
    tcase_add_test(num, minus_infinity_gives_zero_probability_and_gradient);
    tcase_add_test(num, all_minus_infinity_row_is_rejected);
    tcase_add_test(num, relu_squared_has_the_second_derivative_of_the_convention);
    tcase_add_test(num, sqrt_and_relu_at_zero_follow_the_convention_exactly);
    tcase_add_test(num, fast_exp_and_normal_cdf_are_accurate);
    suite_add_tcase(s, num);
    TCase *bad = tcase_create("bad_inputs");
    tcase_add_test(bad, ops_reject_bad_inputs);
    tcase_add_test(bad, tape_functions_reject_bad_inputs);
    tcase_add_test(bad, every_function_rejects_stale_foreign_and_unknown_ids);
    tcase_add_test(bad, ids_change_at_every_reset_and_the_node_count_is_capped);
    tcase_add_test(bad, a_new_tape_rejects_ids_of_a_destroyed_one);
    suite_add_tcase(s, bad);
    return s;
}
