/* mp_prompt: the P x d soft prompt of a model, and its initialisations. */
#include "model/model_priv.h"

#include <float.h>
#include <math.h>
#include <string.h>

static size_t count(const mp_prompt *p) { return (size_t)p->rows * (size_t)p->cols; }

mp_status mp_prompt_create(mp_prompt **out, const mp_model *model)
{
    MP_REQUIRE_PTR(out, NULL, "mp_prompt_create");
    MP_REQUIRE_HANDLE(model, MP__KIND_MODEL, NULL, "mp_prompt_create");
    mp_prompt *p = mp__calloc(1, sizeof *p);
    MP_REQUIRE(p, NULL, MP_ERR_OUT_OF_MEMORY, "mp_prompt_create: out of memory");
    p->handle_kind = MP__KIND_PROMPT;
    p->rows = model->P;
    p->cols = model->d;
    /* One float at least, so data is never NULL even for P == 0. */
    size_t n = count(p) ? count(p) : 1;
    p->data = mp__calloc(n, sizeof(float));
    if (!p->data) {
        mp__free(p);
        return mp__fail(NULL, MP_ERR_OUT_OF_MEMORY, "mp_prompt_create: out of memory (%zu floats)", n);
    }
    *out = p;
    return MP_OK;
}

void mp_prompt_destroy(mp_prompt *p)
{
    if (!mp__handle_destroying(p, MP__KIND_PROMPT, "prompt", "mp_prompt_destroy")) return;
    mp__free(p->data);
    mp__free(p);
}

const char *mp_prompt_error(const mp_prompt *p)
{
    const char *bad = mp__handle_error(p, MP__KIND_PROMPT, "prompt", "mp_prompt_error");
    return bad ? bad : p->err;
}

mp_status mp_prompt_shape(const mp_prompt *p, int32_t *rows, int32_t *cols)
{
    MP_REQUIRE_HANDLE_ARG(p, "prompt", MP__KIND_PROMPT, NULL, "mp_prompt_shape");
    if (rows) *rows = p->rows;
    if (cols) *cols = p->cols;
    return MP_OK;
}

float *mp__prompt_data(mp_prompt *p) { return p->data; }
const float *mp__prompt_data_const(const mp_prompt *p) { return p->data; }

mp_status mp_prompt_init(mp_prompt *p, int32_t method, double scale, uint64_t seed)
{
    MP_REQUIRE_HANDLE_ARG(p, "prompt", MP__KIND_PROMPT, NULL, "mp_prompt_init");
    MP_REQUIRE(method == MP_PROMPT_INIT_ZEROS || method == MP_PROMPT_INIT_NORMAL ||
                   method == MP_PROMPT_INIT_UNIFORM,
               p->err, MP_ERR_INVALID_ARGUMENT,
               "mp_prompt_init: method must be MP_PROMPT_INIT_ZEROS/NORMAL/UNIFORM (0..2), got %d",
               (int)method);
    MP_REQUIRE(isfinite(scale) && scale >= 0.0, p->err, MP_ERR_INVALID_ARGUMENT,
               "mp_prompt_init: scale must be finite and >= 0, got %g", scale);
    /* Two passes over the same draws: the first only checks that every value
     * fits a float (a huge finite scale would give +-inf), so a refused call
     * leaves the prompt unchanged. */
    for (int write = 0; write < 2; write++) {
        mp__rng r;
        mp__rng_seed(&r, seed, 0x70726f6d7074ULL); /* "prompt" */
        for (size_t i = 0; i < count(p); i++) {
            double v = method == MP_PROMPT_INIT_NORMAL    ? scale * mp__rng_normal(&r)
                       : method == MP_PROMPT_INIT_UNIFORM ? scale * (2.0 * mp__rng_uniform(&r) - 1.0)
                                                          : 0.0;
            if (write) {
                p->data[i] = (float)v;
                continue;
            }
            MP_REQUIRE(fabs(v) <= FLT_MAX, p->err, MP_ERR_INVALID_ARGUMENT,
                       "mp_prompt_init: scale = %g is too large: value %zu would be %g, beyond the float range "
                       "(+-%g)",
                       scale, i, v, (double)FLT_MAX);
        }
    }
    return MP_OK;
}

mp_status mp_prompt_get(const mp_prompt *p, float *buf, size_t len)
{
    MP_REQUIRE_HANDLE_ARG(p, "prompt", MP__KIND_PROMPT, NULL, "mp_prompt_get");
    MP_REQUIRE(buf || count(p) == 0, NULL, MP_ERR_NULL_POINTER, "mp_prompt_get: argument 'buf' is NULL");
    MP_REQUIRE(len >= count(p), NULL, MP_ERR_BUFFER_TOO_SMALL,
               "mp_prompt_get: 'buf' has room for len = %zu floats, %zu needed (P x d = %d x %d)", len,
               count(p), (int)p->rows, (int)p->cols);
    if (count(p)) memcpy(buf, p->data, count(p) * sizeof(float));
    return MP_OK;
}

mp_status mp_prompt_set(mp_prompt *p, const float *buf, size_t len)
{
    MP_REQUIRE_HANDLE_ARG(p, "prompt", MP__KIND_PROMPT, NULL, "mp_prompt_set");
    MP_REQUIRE(buf || count(p) == 0, p->err, MP_ERR_NULL_POINTER,
               "mp_prompt_set: argument 'buf' is NULL");
    MP_REQUIRE(len == count(p), p->err, MP_ERR_SHAPE_MISMATCH,
               "mp_prompt_set: len must be P * d = %d * %d = %zu, got %zu", (int)p->rows,
               (int)p->cols, count(p), len);
    for (size_t i = 0; i < len; i++)
        MP_REQUIRE(isfinite(buf[i]), p->err, MP_ERR_NOT_FINITE,
                   "mp_prompt_set: buf[%zu] is not finite", i);
    if (len) memcpy(p->data, buf, len * sizeof(float));
    return MP_OK;
}

mp_status mp_prompt_copy(mp_prompt *dst, const mp_prompt *src)
{
    MP_REQUIRE_HANDLE(dst, MP__KIND_PROMPT, NULL, "mp_prompt_copy");
    MP_REQUIRE_HANDLE(src, MP__KIND_PROMPT, dst->err, "mp_prompt_copy");
    MP_REQUIRE(dst->rows == src->rows && dst->cols == src->cols, dst->err, MP_ERR_SHAPE_MISMATCH,
               "mp_prompt_copy: dst is %d x %d but src is %d x %d", (int)dst->rows, (int)dst->cols,
               (int)src->rows, (int)src->cols);
    if (count(src)) memcpy(dst->data, src->data, count(src) * sizeof(float));
    return MP_OK;
}

/* ---- init from data -------------------------------------------------------------
 * Rows of "vectors" (n x w) are grouped by example index modulo P: row r of
 * the prompt is the mean of group r (all vectors when n < P), truncated or
 * zero-padded to d. Distinct rows matter: identical prompt rows would get
 * identical gradients in the transformer and never separate. */
static void group_means(const float *v, size_t n, size_t w, int32_t P, int32_t d, float *out)
{
    for (int32_t r = 0; r < P; r++) {
        float *row = out + (size_t)r * (size_t)d;
        size_t used = 0;
        memset(row, 0, (size_t)d * sizeof(float));
        for (size_t i = 0; i < n; i++) {
            if (n >= (size_t)P && i % (size_t)P != (size_t)r) continue;
            for (size_t j = 0; j < w && j < (size_t)d; j++) row[j] += v[i * w + j];
            used++;
        }
        for (int32_t j = 0; j < d; j++) row[j] /= (float)used;
    }
}

/* Conv with input channels: row r is the mean map of image channel r mod C
 * over example group r. */
static void channel_means(const mp_model *m, const float *x, size_t n, float *out)
{
    size_t hw = (size_t)m->H * (size_t)m->W;
    for (int32_t r = 0; r < m->P; r++) {
        float *row = out + (size_t)r * hw;
        size_t used = 0, c = (size_t)(r % m->C);
        memset(row, 0, hw * sizeof(float));
        for (size_t i = 0; i < n; i++) {
            if (n >= (size_t)m->P && i % (size_t)m->P != (size_t)r) continue;
            for (size_t j = 0; j < hw; j++) row[j] += x[i * (size_t)m->in_dim + c * hw + j];
            used++;
        }
        for (size_t j = 0; j < hw; j++) row[j] /= (float)used;
    }
}

/* Transformer: row r = mean over examples of the embedding at token
 * position r mod S. */
static mp_status token_means(const mp_model *m, const float *x, size_t n, float *out)
{
    size_t S = (size_t)m->S, d = (size_t)m->d;
    float *emb = mp__calloc(n * S * d, sizeof(float));
    MP_REQUIRE(emb, NULL, MP_ERR_OUT_OF_MEMORY, "mp_prompt_init_from_data: out of memory");
    mp_status st = mp__tf_embed_rows(m, x, n, emb);
    for (int32_t r = 0; st == MP_OK && r < m->P; r++) {
        float *row = out + (size_t)r * d;
        size_t s = (size_t)r % S;
        memset(row, 0, d * sizeof(float));
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < d; j++) row[j] += emb[(i * S + s) * d + j] / (float)n;
    }
    mp__free(emb);
    return st;
}

/* Conv with head features: the backbone's features of the examples. */
static mp_status feature_means(const mp_model *m, const float *x, size_t n, float *out)
{
    mp_tape *t = NULL;
    mp_var *pv = mp__calloc((size_t)m->ntensors, sizeof *pv), prm, xv, f;
    MP_REQUIRE(pv, NULL, MP_ERR_OUT_OF_MEMORY, "mp_prompt_init_from_data: out of memory");
    mp_status st = mp_tape_create(&t);
    if (st == MP_OK) st = mp__model_leaves(m, t, NULL, pv, &prm);
    if (st == MP_OK)
        st = mp_tape_leaf(t, (int32_t)n, m->in_dim, x, n * (size_t)m->in_dim, MP_LEAF_BORROW, &xv);
    if (st == MP_OK) st = mp__conv_features(m, t, pv, xv, (int32_t)n, &f);
    int32_t rows = 0, cols = 0;
    if (st == MP_OK) st = mp_tape_shape(t, f, &rows, &cols);
    float *feat = st == MP_OK ? mp__calloc((size_t)rows * (size_t)cols, sizeof(float)) : NULL;
    if (st == MP_OK && !feat) st = mp__fail(NULL, MP_ERR_OUT_OF_MEMORY, "mp_prompt_init_from_data: out of memory");
    if (st == MP_OK) st = mp_tape_read(t, f, feat, (size_t)rows * (size_t)cols);
    if (st == MP_OK) group_means(feat, n, (size_t)cols, m->P, m->d, out);
    mp__free(feat);
    mp_tape_destroy(t);
    mp__free(pv);
    return st;
}

static mp_status compute_init(const mp_model *m, const float *x, size_t n, float *out)
{
    switch (m->kind) {
    case MP_MODEL_MLP: group_means(x, n, (size_t)m->in_dim, m->P, m->d, out); return MP_OK;
    case MP_MODEL_TRANSFORMER: return token_means(m, x, n, out);
    default:
        if (mp__mcfg(m, MP_CFG_MODEL_PROMPT_MODE) == MP_PROMPT_INPUT_CHANNELS) {
            channel_means(m, x, n, out);
            return MP_OK;
        }
        return feature_means(m, x, n, out);
    }
}

mp_status mp_prompt_init_from_data(mp_prompt *p, const mp_model *m, const float *x, size_t n,
                                   size_t x_len)
{
    MP_REQUIRE_HANDLE_ARG(p, "prompt", MP__KIND_PROMPT, NULL, "mp_prompt_init_from_data");
    MP_REQUIRE_HANDLE_ARG(m, "model", MP__KIND_MODEL, p->err, "mp_prompt_init_from_data");
    MP_REQUIRE_PTR(x, p->err, "mp_prompt_init_from_data");
    MP_REQUIRE(p->rows == m->P && p->cols == m->d, p->err, MP_ERR_SHAPE_MISMATCH,
               "mp_prompt_init_from_data: prompt is %d x %d, the model needs %d x %d",
               (int)p->rows, (int)p->cols, (int)m->P, (int)m->d);
    MP_REQUIRE(n >= 1 && n <= INT32_MAX, p->err, MP_ERR_INVALID_ARGUMENT,
               "mp_prompt_init_from_data: n must be in [1, 2^31), got %zu", n);
    size_t want;
    MP_REQUIRE(mp__mul_size(n, (size_t)m->in_dim, &want) == 0 && x_len == want, p->err,
               MP_ERR_SHAPE_MISMATCH,
               "mp_prompt_init_from_data: x_len must be n * input_dim = %zu * %d, got %zu", n,
               (int)m->in_dim, x_len);
    for (size_t i = 0; i < x_len; i++)
        MP_REQUIRE(isfinite(x[i]), p->err, MP_ERR_NOT_FINITE,
                   "mp_prompt_init_from_data: x[%zu] is not finite", i);
    mp_status tst = mp__check_token_ids(m, "mp_prompt_init_from_data", "token", x, x_len);
    if (tst != MP_OK) return mp__fail_propagate(p->err, tst);
    if (count(p) == 0) return MP_OK;
    float *tmp = mp__calloc(count(p), sizeof(float));
    MP_REQUIRE(tmp, p->err, MP_ERR_OUT_OF_MEMORY, "mp_prompt_init_from_data: out of memory");
    mp_status st = compute_init(m, x, n, tmp);
    if (st == MP_OK) memcpy(p->data, tmp, count(p) * sizeof(float));
    else mp__fail_propagate(p->err, st);
    mp__free(tmp);
    return st;
}
