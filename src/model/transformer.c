/* Prompted transformer: patch (ViT) or token embeddings plus learned
 * positions, P prompt tokens prepended (no position of their own), pre-LN
 * blocks [x + attn(LN x), x + MLP(LN x)] with GELU, a final layer norm,
 * mean pooling over the real tokens only, and a linear head.
 * Activations are (n*T) x d with T = P + S tokens per example. */
#include "model/model_priv.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define PER_LAYER 16
/* Offsets of the tensors inside one block (see add_layer). */
enum { LN1_W, LN1_B, Q_W, Q_B, K_W, K_B, V_W, V_B, O_W, O_B, LN2_W, LN2_B, FC1_W, FC1_B, FC2_W, FC2_B };

static int32_t tokens(const mp_model *m) { return mp__mcfg(m, MP_CFG_MODEL_VOCAB) > 0; }

static mp_status add(mp_model *m, const char *prefix, const char *name, int32_t rows, int32_t cols,
                     int32_t init, double std)
{
    char full[48];
    snprintf(full, sizeof full, "%s%s", prefix, name);
    return mp__model_add_tensor(m, full, rows, cols, MP__GROUP_BACKBONE, init, std);
}

static mp_status add_layer(mp_model *m, int32_t l, int32_t d, int32_t M)
{
    char pre[24];
    snprintf(pre, sizeof pre, "block%d.", (int)l);
    double xd = sqrt(1.0 / d), xm = sqrt(2.0 / (d + M)); /* Xavier for d x d and d x M */
    MP_TRY(add(m, pre, "ln1.weight", 1, d, MP__INIT_ONE, 0));
    MP_TRY(add(m, pre, "ln1.bias", 1, d, MP__INIT_ZERO, 0));
    const char *qkvo[4] = {"attn.q", "attn.k", "attn.v", "attn.out"};
    for (int i = 0; i < 4; i++) {
        char nm[24];
        snprintf(nm, sizeof nm, "%s.weight", qkvo[i]);
        MP_TRY(add(m, pre, nm, d, d, MP__INIT_NORMAL, xd));
        snprintf(nm, sizeof nm, "%s.bias", qkvo[i]);
        MP_TRY(add(m, pre, nm, 1, d, MP__INIT_ZERO, 0));
    }
    MP_TRY(add(m, pre, "ln2.weight", 1, d, MP__INIT_ONE, 0));
    MP_TRY(add(m, pre, "ln2.bias", 1, d, MP__INIT_ZERO, 0));
    MP_TRY(add(m, pre, "mlp.fc1.weight", d, M, MP__INIT_NORMAL, sqrt(2.0 / d))); /* He: GELU follows */
    MP_TRY(add(m, pre, "mlp.fc1.bias", 1, M, MP__INIT_ZERO, 0));
    MP_TRY(add(m, pre, "mlp.fc2.weight", M, d, MP__INIT_NORMAL, xm));
    return add(m, pre, "mlp.fc2.bias", 1, d, MP__INIT_ZERO, 0);
}

static mp_status check_sizes(mp_model *m, int32_t d)
{
    int32_t heads = (int32_t)mp__mcfg(m, MP_CFG_MODEL_HEADS);
    MP_REQUIRE(d % heads == 0, NULL, MP_ERR_INVALID_ARGUMENT,
               "mp_model_create: model.heads = %d must divide model.d_model = %d", (int)heads, (int)d);
    if (m->d == 0) m->d = d;
    MP_REQUIRE(m->d == d, NULL, MP_ERR_INVALID_ARGUMENT,
               "mp_model_create: transformer prompt tokens need model.prompt_dim = d_model = %d, got %d",
               (int)d, (int)m->d);
    if (tokens(m)) {
        int64_t S = mp__mcfg(m, MP_CFG_MODEL_SEQ_LEN);
        MP_REQUIRE(S >= 1, NULL, MP_ERR_INVALID_ARGUMENT,
                   "mp_model_create: a token transformer (model.vocab = %lld) needs model.seq_len >= 1",
                   (long long)mp__mcfg(m, MP_CFG_MODEL_VOCAB));
        m->S = (int32_t)S;
        m->in_dim = (int32_t)S;
        return MP_OK;
    }
    m->H = (int32_t)mp__mcfg(m, MP_CFG_MODEL_IMAGE_HEIGHT);
    m->W = (int32_t)mp__mcfg(m, MP_CFG_MODEL_IMAGE_WIDTH);
    m->C = (int32_t)mp__mcfg(m, MP_CFG_MODEL_IMAGE_CHANNELS);
    int32_t p = (int32_t)mp__mcfg(m, MP_CFG_MODEL_PATCH);
    MP_REQUIRE(m->H % p == 0 && m->W % p == 0, NULL, MP_ERR_INVALID_ARGUMENT,
               "mp_model_create: model.patch = %d must divide the %d x %d image", (int)p, (int)m->H,
               (int)m->W);
    int64_t in = (int64_t)m->C * m->H * m->W, S = (int64_t)(m->H / p) * (m->W / p);
    MP_REQUIRE(in <= (1 << 24) && (int64_t)m->C * p * p <= (1 << 24), NULL, MP_ERR_INVALID_ARGUMENT,
               "mp_model_create: images of %lld values are too large", (long long)in);
    m->S = (int32_t)S;
    m->in_dim = (int32_t)in;
    return MP_OK;
}

mp_status mp__tf_layout(mp_model *m)
{
    int32_t d = (int32_t)mp__mcfg(m, MP_CFG_MODEL_D_MODEL), M = (int32_t)mp__mcfg(m, MP_CFG_MODEL_MLP_DIM);
    int32_t L = (int32_t)mp__mcfg(m, MP_CFG_MODEL_LAYERS);
    MP_TRY(check_sizes(m, d));
    MP_REQUIRE((int64_t)m->S * d * d <= ((int64_t)1 << 28), NULL, MP_ERR_INVALID_ARGUMENT,
               "mp_model_create: %d tokens of width %d are too many", (int)m->S, (int)d);
    if (tokens(m)) {
        MP_TRY(add(m, "", "embed.weight", (int32_t)mp__mcfg(m, MP_CFG_MODEL_VOCAB), d, MP__INIT_NORMAL, 0.02));
    } else {
        int32_t p = (int32_t)mp__mcfg(m, MP_CFG_MODEL_PATCH), k = m->C * p * p;
        MP_TRY(add(m, "", "embed.weight", d, k, MP__INIT_NORMAL, sqrt(1.0 / k)));
        MP_TRY(add(m, "", "embed.bias", 1, d, MP__INIT_ZERO, 0));
    }
    MP_TRY(add(m, "", "pos", m->S, d, MP__INIT_NORMAL, 0.02));
    for (int32_t l = 0; l < L; l++) MP_TRY(add_layer(m, l, d, M));
    MP_TRY(add(m, "", "ln_f.weight", 1, d, MP__INIT_ONE, 0));
    MP_TRY(add(m, "", "ln_f.bias", 1, d, MP__INIT_ZERO, 0));
    MP_TRY(mp__model_add_tensor(m, "head.weight", d, m->out_dim, MP__GROUP_HEAD, MP__INIT_NORMAL,
                                sqrt(2.0 / (double)(d + m->out_dim))));
    MP_TRY(mp__model_add_tensor(m, "head.bias", 1, m->out_dim, MP__GROUP_HEAD, MP__INIT_ZERO, 0));
    if (L == 0 && m->P > 0)
        mp__log(MP_LOG_WARN,
                "mp_model_create: a transformer with model.layers = 0 never mixes its %d prompt tokens into "
                "the real tokens: the prompt has no effect on the outputs (and gets zero gradients)",
                (int)m->P);
    return MP_OK;
}

/* ---- forward -------------------------------------------------------------------- */
/* h w + b as one variable (the bias added to the product's blocks in cache). */
static mp_status linear(mp_tape *t, mp_var h, mp_var w, mp_var b, mp_var *out)
{
    return mp__linear(t, h, w, b, 0, 0, out);
}

/* Token ids (floats in x, already validated by the caller of the forward
 * pass with mp__check_token_ids; reaching here unchecked is a bug, and the
 * check keeps the casts to int defined) -> (n*S) x d rows. */
static mp_status embed_tokens(const mp_model *m, mp_tape *t, mp_var table, mp_var x, int32_t n,
                              mp_var *out)
{
    size_t count = (size_t)n * (size_t)m->S;
    float *v = mp__alloc(count * sizeof(float));
    int32_t *ids = mp__alloc(count * sizeof(int32_t));
    mp_status st = v && ids ? MP_OK : mp__fail(NULL, MP_ERR_OUT_OF_MEMORY, "mp_model: out of memory");
    if (st == MP_OK) st = mp_tape_read(t, x, v, count);
    if (st == MP_OK && mp__check_token_ids(m, "mp_model", "internal error: unchecked token", v, count) != MP_OK)
        st = MP_ERR_INTERNAL;
    for (size_t i = 0; st == MP_OK && i < count; i++) ids[i] = (int32_t)v[i];
    if (st == MP_OK) st = mp_gather_rows(t, table, ids, count, out);
    mp__free(v);
    mp__free(ids);
    return st;
}

/* Patches through a stride-p convolution (the ViT patch embedding), then a
 * per-example transpose from channel-major (d x S) to token rows (S x d):
 * merge_heads with one value per head is exactly that. */
static mp_status embed_patches(const mp_model *m, mp_tape *t, const mp_var *p, mp_var x, int32_t n,
                               mp_var *out)
{
    int32_t k = (int32_t)mp__mcfg(m, MP_CFG_MODEL_PATCH);
    mp_var c, r;
    MP_TRY(mp_conv2d(t, x, p[0], p[1], m->C, m->H, m->W, k, k, 0, &c));
    MP_TRY(mp_reshape(t, c, n * m->d * m->S, 1, &r));
    return mp_merge_heads(t, r, n, m->S, m->d, out);
}

/* Per example, [P rows of p (shared by every example); S rows of x_i]:
 * p is P x d, x is (n*S) x d -> (n*T) x d. The broadcast's gradient sums
 * over the examples. With P == 0 it is x itself. */
static mp_status with_prompt_rows(const mp_model *m, mp_tape *t, mp_var p, mp_var x, int32_t n,
                                  mp_var *out)
{
    int32_t d = m->d;
    if (m->P == 0) {
        *out = x;
        return MP_OK;
    }
    mp_var rows, pr, seq;
    MP_TRY(mp_reshape(t, x, n, m->S * d, &rows));
    MP_TRY(mp_reshape(t, p, 1, m->P * d, &pr));
    MP_TRY(mp__concat_bcast(t, pr, rows, &seq));
    return mp_reshape(t, seq, n * (m->P + m->S), d, out);
}

/* The S real-token rows of each example of x ((n*T) x d) -> (n*S) x d. */
static mp_status real_rows(const mp_model *m, mp_tape *t, mp_var x, int32_t n, mp_var *out)
{
    int32_t d = m->d;
    if (m->P == 0) {
        *out = x;
        return MP_OK;
    }
    mp_var rows, real;
    MP_TRY(mp_reshape(t, x, n, (m->P + m->S) * d, &rows));
    MP_TRY(mp_slice(t, rows, MP_AXIS_COLS, m->P * d, m->S * d, &real));
    return mp_reshape(t, real, n * m->S, d, out);
}

/* The prompt-independent start of the forward pass (mp__fwd_slot.v):
 * the real tokens' embeddings plus positions, and for block 0 their layer
 * norm and query/key/value projections (rows are independent up to the
 * attention, so the prompt rows' share is computed per pass, on P rows). */
enum { PRE_E, PRE_A, PRE_Q, PRE_K, PRE_V, PRE_COUNT };

static mp_status prefix(const mp_model *m, mp_tape *t, const mp_var *p, mp_var x, int32_t n,
                        mp_var *v)
{
    int32_t d = m->d, tok = tokens(m), first = tok ? 2 : 3;
    mp_var e, rows, pos, seq;
    if (tok) MP_TRY(embed_tokens(m, t, p[0], x, n, &e));
    else MP_TRY(embed_patches(m, t, p, x, n, &e));
    MP_TRY(mp_reshape(t, e, n, m->S * d, &rows));
    MP_TRY(mp_reshape(t, p[first - 1], 1, m->S * d, &pos));
    MP_TRY(mp_add(t, rows, pos, &seq));
    MP_TRY(mp_reshape(t, seq, n * m->S, d, &v[PRE_E]));
    v[PRE_A] = v[PRE_Q] = v[PRE_K] = v[PRE_V] = MP_VAR_NONE;
    if (mp__mcfg(m, MP_CFG_MODEL_LAYERS) == 0) return MP_OK;
    const mp_var *b = p + first;
    MP_TRY(mp_layer_norm(t, v[PRE_E], b[LN1_W], b[LN1_B], MP__NORM_EPS, &v[PRE_A]));
    MP_TRY(linear(t, v[PRE_A], b[Q_W], b[Q_B], &v[PRE_Q]));
    MP_TRY(linear(t, v[PRE_A], b[K_W], b[K_B], &v[PRE_K]));
    return linear(t, v[PRE_A], b[V_W], b[V_B], &v[PRE_V]);
}

/* Tensors the prefix reads: the embedding, the positions and block 0's
 * ln1, q, k and v. */
static int32_t prefix_tensors(const mp_model *m)
{
    return (tokens(m) ? 2 : 3) + (mp__mcfg(m, MP_CFG_MODEL_LAYERS) > 0 ? V_B + 1 : 0);
}

/* Multi-head attention of the rows in a (the layer-normed input of the
 * block). The queries are all T rows of each example, or with `last` only
 * its S real tokens (the prompt rows' outputs of the last block are never
 * read). q, k, v are given precomputed (block 0, from the prefix) or
 * MP_VAR_NONE. -> (n*T or n*S) x d. */
static mp_status attention(const mp_model *m, mp_tape *t, const mp_var *b, mp_var a, mp_var q, mp_var k,
                           mp_var v, int32_t n, int32_t last, mp_var *out)
{
    int32_t H = (int32_t)mp__mcfg(m, MP_CFG_MODEL_HEADS), dh = m->d / H;
    mp_var sc, pr, om;
    if (q == MP_VAR_NONE) {
        mp_var aq = a;
        if (last) MP_TRY(real_rows(m, t, a, n, &aq));
        MP_TRY(linear(t, aq, b[Q_W], b[Q_B], &q));
    }
    if (k == MP_VAR_NONE) MP_TRY(linear(t, a, b[K_W], b[K_B], &k));
    if (v == MP_VAR_NONE) MP_TRY(linear(t, a, b[V_W], b[V_B], &v));
    /* Per example and head, on the (rows x d) projections in place:
     * scores (n*H*Tq) x T = q k^T / sqrt(dh), then (n*Tq) x d = softmax(scores) v. */
    static const int32_t qk[3] = {1, 1, 0}, pv[3] = {0, 1, 1};
    MP_TRY(mp__heads_matmul(t, q, k, n * H, H, 0, 1, qk, 1.0f / sqrtf((float)dh), &sc));
    MP_TRY(mp_softmax(t, sc, &pr));
    MP_TRY(mp__heads_matmul(t, pr, v, n * H, H, 0, 0, pv, 1.0f, &om));
    return linear(t, om, b[O_W], b[O_B], out);
}

/* One pre-LN block on h ((n*T) x d). Block 0 takes its attention input's
 * real-token rows and projections from the prefix pre; the last block keeps
 * only the real tokens' rows: -> (n*S) x d. */
static mp_status layer(const mp_model *m, mp_tape *t, const mp_var *b, mp_var h, mp_var prompt,
                       const mp_var *pre, int32_t n, int32_t last, mp_var *out)
{
    mp_var a = MP_VAR_NONE, q = MP_VAR_NONE, k = MP_VAR_NONE, v = MP_VAR_NONE;
    mp_var at, h1, a2, f1, g, f2;
    if (pre) {
        /* Rows are independent until the attention: the prompt's P rows go
         * through ln1 and the projections once and are broadcast. */
        mp_var ap = MP_VAR_NONE, qp = MP_VAR_NONE, kp = MP_VAR_NONE, vp = MP_VAR_NONE;
        if (m->P > 0) {
            MP_TRY(mp_layer_norm(t, prompt, b[LN1_W], b[LN1_B], MP__NORM_EPS, &ap));
            if (!last) MP_TRY(linear(t, ap, b[Q_W], b[Q_B], &qp));
            MP_TRY(linear(t, ap, b[K_W], b[K_B], &kp));
            MP_TRY(linear(t, ap, b[V_W], b[V_B], &vp));
        }
        if (last) q = pre[PRE_Q];
        else MP_TRY(with_prompt_rows(m, t, qp, pre[PRE_Q], n, &q));
        MP_TRY(with_prompt_rows(m, t, kp, pre[PRE_K], n, &k));
        MP_TRY(with_prompt_rows(m, t, vp, pre[PRE_V], n, &v));
    } else {
        MP_TRY(mp_layer_norm(t, h, b[LN1_W], b[LN1_B], MP__NORM_EPS, &a));
    }
    MP_TRY(attention(m, t, b, a, q, k, v, n, last, &at));
    if (last) MP_TRY(real_rows(m, t, h, n, &h));
    MP_TRY(mp_add(t, h, at, &h1));
    MP_TRY(mp_layer_norm(t, h1, b[LN2_W], b[LN2_B], MP__NORM_EPS, &a2));
    MP_TRY(linear(t, a2, b[FC1_W], b[FC1_B], &f1));
    MP_TRY(mp_gelu(t, f1, &g));
    MP_TRY(linear(t, g, b[FC2_W], b[FC2_B], &f2));
    return mp_add(t, h1, f2, out);
}

/* Per-example mean of the S rows of f ((n*S) x d): a 1 x S row of 1/S
 * times each example's S x d block. */
static mp_status mean_tokens(const mp_model *m, mp_tape *t, mp_var f, int32_t n, mp_var *out)
{
    mp_var w;
    MP_TRY(mp_tape_fill(t, n, m->S, 1.0f / (float)m->S, &w));
    return mp_batch_matmul(t, w, f, n, 0, 0, out);
}

mp_status mp__tf_prepare(const mp_model *m, mp_tape *t, const mp_var *p, mp_var x, int32_t n,
                         mp__fwd_cache *cache)
{
    mp_var pre[PRE_COUNT];
    return mp__fwd_prefix(m, t, p, prefix_tensors(m), x, n, cache, prefix, PRE_COUNT, pre);
}

mp_status mp__tf_forward(const mp_model *m, mp_tape *t, const mp_var *p, mp_var prompt, mp_var x,
                         int32_t n, mp__fwd_cache *cache, mp_var *out)
{
    int32_t L = (int32_t)mp__mcfg(m, MP_CFG_MODEL_LAYERS), first = tokens(m) ? 2 : 3;
    mp_var pre[PRE_COUNT], h, f, pooled;
    MP_TRY(mp__fwd_prefix(m, t, p, prefix_tensors(m), x, n, cache, prefix, PRE_COUNT, pre));
    MP_TRY(with_prompt_rows(m, t, prompt, pre[PRE_E], n, &h));
    for (int32_t l = 0; l < L; l++)
        MP_TRY(layer(m, t, p + first + PER_LAYER * l, h, prompt, l == 0 ? pre : NULL, n, l == L - 1, &h));
    const mp_var *tail = p + first + PER_LAYER * L;
    if (L == 0) MP_TRY(real_rows(m, t, h, n, &h));
    MP_TRY(mp_layer_norm(t, h, tail[0], tail[1], MP__NORM_EPS, &f));
    MP_TRY(mean_tokens(m, t, f, n, &pooled));
    return linear(t, pooled, tail[2], tail[3], out);
}

/* ---- embeddings for prompt init from data ------------------------------------------- */
mp_status mp__tf_embed_rows(const mp_model *m, const float *x, size_t n, float *emb)
{
    size_t d = (size_t)m->d, S = (size_t)m->S;
    const float *W = m->params + m->tensors[0].offset;
    if (tokens(m)) {
        for (size_t i = 0; i < n * S; i++)
            memcpy(emb + i * d, W + (size_t)x[i] * d, d * sizeof(float));
        return MP_OK;
    }
    const float *bias = m->params + m->tensors[1].offset;
    size_t p = (size_t)mp__mcfg(m, MP_CFG_MODEL_PATCH), C = (size_t)m->C, Hh = (size_t)m->H,
           Ww = (size_t)m->W, pw = Ww / p, k = C * p * p;
    for (size_t i = 0; i < n; i++)
        for (size_t s = 0; s < S; s++) {
            size_t py = s / pw, px = s % pw;
            float *e = emb + (i * S + s) * d;
            for (size_t j = 0; j < d; j++) {
                double acc = bias[j];
                for (size_t q = 0; q < k; q++) {
                    size_t c = q / (p * p), ky = (q / p) % p, kx = q % p;
                    acc += (double)W[j * k + q] *
                           x[i * C * Hh * Ww + c * Hh * Ww + (py * p + ky) * Ww + px * p + kx];
                }
                e[j] = (float)acc;
            }
        }
    return MP_OK;
}
