/* mp_model: configuration, parameter layout and initialisation, the
 * internal interface for src/meta, and inference (predict, loss). */
#include "model/model_priv.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Examples per forward pass in predict/loss: bounds the tape's memory for
 * large inputs (conv4 on 28x28 records about 3 MB per example); outputs do
 * not depend on it because each example's output depends on that example
 * only. */
static size_t chunk_rows(const mp_model *m) { return m->kind == MP_MODEL_CONV ? 32 : 256; }

/* ---- layout ------------------------------------------------------------------- */
mp_status mp__model_add_tensor(mp_model *m, const char *name, int32_t rows, int32_t cols,
                               int32_t group, int32_t init, double std)
{
    if (m->ntensors == m->cap) {
        int32_t cap = m->cap ? 2 * m->cap : 16;
        mp__param_info *t = mp__calloc((size_t)cap, sizeof *t);
        int32_t *in = mp__calloc((size_t)cap, sizeof *in);
        float *sd = mp__calloc((size_t)cap, sizeof *sd);
        if (!t || !in || !sd) {
            mp__free(t);
            mp__free(in);
            mp__free(sd);
            return mp__fail(NULL, MP_ERR_OUT_OF_MEMORY, "mp_model_create: out of memory (layout)");
        }
        if (m->ntensors) {
            memcpy(t, m->tensors, (size_t)m->ntensors * sizeof *t);
            memcpy(in, m->init, (size_t)m->ntensors * sizeof *in);
            memcpy(sd, m->std, (size_t)m->ntensors * sizeof *sd);
        }
        mp__free(m->tensors);
        mp__free(m->init);
        mp__free(m->std);
        m->tensors = t;
        m->init = in;
        m->std = sd;
        m->cap = cap;
    }
    size_t n = (size_t)rows * (size_t)cols;
    MP_REQUIRE(n <= ((size_t)1 << 34) && m->nparams + n <= ((size_t)1 << 34), NULL, MP_ERR_RANGE,
               "mp_model_create: tensor '%s' (%d x %d) makes the model too large", name,
               (int)rows, (int)cols);
    mp__param_info *ti = &m->tensors[m->ntensors];
    snprintf(ti->name, sizeof ti->name, "%s", name);
    ti->rows = rows;
    ti->cols = cols;
    ti->offset = m->nparams;
    ti->group = group;
    m->init[m->ntensors] = init;
    m->std[m->ntensors] = (float)std;
    m->ntensors++;
    m->nparams += n;
    return MP_OK;
}

int32_t mp__model_find_tensor(const mp_model *m, const char *name)
{
    for (int32_t i = 0; i < m->ntensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0) return i;
    return -1;
}

/* Each tensor draws from its own RNG stream, so adding a tensor to a kind
 * never changes the initial values of the others. */
static void init_params(mp_model *m)
{
    for (int32_t i = 0; i < m->ntensors; i++) {
        const mp__param_info *t = &m->tensors[i];
        float *p = m->params + t->offset;
        size_t n = (size_t)t->rows * (size_t)t->cols;
        mp__rng r;
        mp__rng_seed(&r, m->seed, 0x6d6f64656cULL + (uint64_t)i);
        for (size_t j = 0; j < n; j++) {
            if (m->init[i] == MP__INIT_NORMAL)
                p[j] = (float)(m->std[i] * mp__rng_normal(&r));
            else if (m->init[i] == MP__INIT_UNIFORM)
                p[j] = (float)(m->std[i] * (2.0 * mp__rng_uniform(&r) - 1.0));
            else
                p[j] = m->init[i] == MP__INIT_ONE ? 1.0f : 0.0f;
        }
    }
}

/* ---- creation ---------------------------------------------------------------- */
static void resolve_config(mp_model *m, const mp_config *cfg)
{
    for (int32_t k = MP__MODEL_KEY_FIRST; k <= MP__MODEL_KEY_LAST; k++)
        m->cfg[k - MP__MODEL_KEY_FIRST] = mp__cfg_int(cfg, k);
    m->seed = (uint64_t)mp__cfg_int(cfg, MP_CFG_SEED);
    m->kind = (int32_t)mp__mcfg(m, MP_CFG_MODEL_KIND);
    m->out_dim = (int32_t)mp__mcfg(m, MP_CFG_MODEL_OUTPUT_DIM);
    m->P = (int32_t)mp__mcfg(m, MP_CFG_MODEL_PROMPT_LEN);
    m->d = (int32_t)mp__mcfg(m, MP_CFG_MODEL_PROMPT_DIM);
    int64_t task = mp__mcfg(m, MP_CFG_MODEL_TASK);
    if (task == MP_TASK_AUTO)
        task = m->kind == MP_MODEL_MLP ? MP_TASK_REGRESSION : MP_TASK_CLASSIFICATION;
    m->task = (int32_t)task;
}

/* Writes derived values back so mp_model_get_int and checkpoints see the
 * resolved configuration (re-creating from it gives the same model). */
static void store_resolved(mp_model *m)
{
    m->cfg[MP_CFG_MODEL_TASK - MP__MODEL_KEY_FIRST] = m->task;
    m->cfg[MP_CFG_MODEL_INPUT_DIM - MP__MODEL_KEY_FIRST] = m->in_dim;
    m->cfg[MP_CFG_MODEL_PROMPT_DIM - MP__MODEL_KEY_FIRST] = m->d;
}

static mp_status build(mp_model *m, const mp_config *cfg)
{
    resolve_config(m, cfg);
    MP_REQUIRE(m->task != MP_TASK_CLASSIFICATION || m->out_dim >= 2, NULL, MP_ERR_INVALID_ARGUMENT,
               "mp_model_create: a classifier needs model.output_dim >= 2 classes, got %d",
               (int)m->out_dim);
    int32_t input_set = cfg && mp_config_is_set(cfg, MP_CFG_MODEL_INPUT_DIM);
    int64_t input_cfg = mp__mcfg(m, MP_CFG_MODEL_INPUT_DIM);
    switch (m->kind) {
    case MP_MODEL_MLP: MP_TRY(mp__mlp_layout(m)); break;
    case MP_MODEL_CONV: MP_TRY(mp__conv_layout(m)); break;
    default: MP_TRY(mp__tf_layout(m)); break;
    }
    MP_REQUIRE(!input_set || input_cfg == m->in_dim, NULL, MP_ERR_INVALID_ARGUMENT,
               "mp_model_create: model.input_dim is %lld but the %s configuration gives %d "
               "values per example",
               (long long)input_cfg, m->kind == MP_MODEL_CONV ? "conv" : "transformer",
               (int)m->in_dim);
    store_resolved(m);
    m->params = mp__alloc(m->nparams * sizeof(float));
    MP_REQUIRE(m->params, NULL, MP_ERR_OUT_OF_MEMORY,
               "mp_model_create: out of memory (%zu parameters)", m->nparams);
    init_params(m);
    return MP_OK;
}

mp_status mp_model_create(mp_model **out, const mp_config *cfg)
{
    MP_REQUIRE_PTR(out, NULL, "mp_model_create");
    MP_OPTIONAL_HANDLE(cfg, MP__KIND_CONFIG, NULL, "mp_model_create");
    mp_model *m = mp__calloc(1, sizeof *m);
    MP_REQUIRE(m, NULL, MP_ERR_OUT_OF_MEMORY, "mp_model_create: out of memory");
    m->handle_kind = MP__KIND_MODEL;
    mp_status st = build(m, cfg);
    if (st != MP_OK) {
        mp_model_destroy(m);
        return st;
    }
    *out = m;
    return MP_OK;
}

void mp_model_destroy(mp_model *m)
{
    if (!mp__handle_destroying(m, MP__KIND_MODEL, "model", "mp_model_destroy")) return;
    mp__free(m->tensors);
    mp__free(m->init);
    mp__free(m->std);
    mp__free(m->params);
    mp__free(m);
}

const char *mp_model_error(const mp_model *m)
{
    const char *bad = mp__handle_error(m, MP__KIND_MODEL, "model", "mp_model_error");
    return bad ? bad : m->err;
}

static void *dup(const void *p, size_t bytes, int *fail)
{
    if (!p) return NULL;
    void *q = mp__alloc(bytes);
    if (!q) {
        *fail = 1;
        return NULL;
    }
    memcpy(q, p, bytes);
    return q;
}

mp_status mp_model_clone(mp_model **out, const mp_model *src)
{
    MP_REQUIRE_PTR(out, NULL, "mp_model_clone");
    MP_REQUIRE_HANDLE(src, MP__KIND_MODEL, NULL, "mp_model_clone");
    mp_model *m = mp__alloc(sizeof *m);
    MP_REQUIRE(m, NULL, MP_ERR_OUT_OF_MEMORY, "mp_model_clone: out of memory");
    *m = *src;
    m->handle_kind = MP__KIND_MODEL;
    int fail = 0;
    size_t cap = (size_t)src->cap;
    m->tensors = dup(src->tensors, cap * sizeof *m->tensors, &fail);
    m->init = dup(src->init, cap * sizeof *m->init, &fail);
    m->std = dup(src->std, cap * sizeof *m->std, &fail);
    m->params = dup(src->params, src->nparams * sizeof(float), &fail);
    m->err[0] = '\0';
    if (fail) {
        mp_model_destroy(m);
        return mp__fail(NULL, MP_ERR_OUT_OF_MEMORY, "mp_model_clone: out of memory");
    }
    *out = m;
    return MP_OK;
}

mp_status mp_model_get_int(const mp_model *m, int32_t key, int64_t *out)
{
    MP_REQUIRE_HANDLE_ARG(m, "model", MP__KIND_MODEL, NULL, "mp_model_get_int");
    MP_REQUIRE_PTR(out, NULL, "mp_model_get_int");
    if (key == MP_CFG_SEED) {
        *out = (int64_t)m->seed;
        return MP_OK;
    }
    MP_REQUIRE(key >= MP__MODEL_KEY_FIRST && key <= MP__MODEL_KEY_LAST, NULL, MP_ERR_NOT_FOUND,
               "mp_model_get_int: key %d is not a model key (%d..%d or MP_CFG_SEED)", (int)key,
               MP__MODEL_KEY_FIRST, MP__MODEL_KEY_LAST);
    *out = mp__mcfg(m, key);
    return MP_OK;
}

/* ---- parameters ------------------------------------------------------------------ */
mp_status mp_model_num_params(const mp_model *m, size_t *out)
{
    MP_REQUIRE_HANDLE_ARG(m, "model", MP__KIND_MODEL, NULL, "mp_model_num_params");
    MP_REQUIRE_PTR(out, NULL, "mp_model_num_params");
    *out = m->nparams;
    return MP_OK;
}

mp_status mp_model_get_params(const mp_model *m, float *buf, size_t len)
{
    MP_REQUIRE_HANDLE_ARG(m, "model", MP__KIND_MODEL, NULL, "mp_model_get_params");
    MP_REQUIRE_PTR(buf, NULL, "mp_model_get_params");
    MP_REQUIRE(len >= m->nparams, NULL, MP_ERR_BUFFER_TOO_SMALL,
               "mp_model_get_params: 'buf' has room for len = %zu floats, %zu needed (the parameter count)", len,
               m->nparams);
    memcpy(buf, m->params, m->nparams * sizeof(float));
    return MP_OK;
}

mp_status mp_model_set_params(mp_model *m, const float *buf, size_t len)
{
    MP_REQUIRE_HANDLE_ARG(m, "model", MP__KIND_MODEL, NULL, "mp_model_set_params");
    MP_REQUIRE_PTR(buf, m->err, "mp_model_set_params");
    MP_REQUIRE(len == m->nparams, m->err, MP_ERR_SHAPE_MISMATCH,
               "mp_model_set_params: len must be the parameter count %zu, got %zu", m->nparams, len);
    for (size_t i = 0; i < len; i++)
        MP_REQUIRE(isfinite(buf[i]), m->err, MP_ERR_NOT_FINITE,
                   "mp_model_set_params: buf[%zu] is not finite", i);
    memcpy(m->params, buf, len * sizeof(float));
    return MP_OK;
}

mp_status mp_model_prompt_shape(const mp_model *m, int32_t *rows, int32_t *cols)
{
    MP_REQUIRE_HANDLE_ARG(m, "model", MP__KIND_MODEL, NULL, "mp_model_prompt_shape");
    if (rows) *rows = m->P;
    if (cols) *cols = m->d;
    return MP_OK;
}

/* ---- internal interface (model_internal.h) ---------------------------------------- */
int32_t mp__model_num_tensors(const mp_model *m) { return m->ntensors; }
const mp__param_info *mp__model_tensor(const mp_model *m, int32_t i) { return &m->tensors[i]; }
float *mp__model_params(mp_model *m) { return m->params; }
const float *mp__model_params_const(const mp_model *m) { return m->params; }
size_t mp__model_param_count(const mp_model *m) { return m->nparams; }
int32_t mp__model_prompt_rows(const mp_model *m) { return m->P; }
int32_t mp__model_prompt_cols(const mp_model *m) { return m->d; }
int32_t mp__model_input_dim(const mp_model *m) { return m->in_dim; }
int32_t mp__model_output_dim(const mp_model *m) { return m->out_dim; }
int32_t mp__model_is_classifier(const mp_model *m) { return m->task == MP_TASK_CLASSIFICATION; }

static mp_status check_var(const mp_tape *t, mp_var v, const char *what, int32_t rows,
                           int32_t cols)
{
    int32_t r, c;
    MP_TRY(mp_tape_shape(t, v, &r, &c));
    MP_REQUIRE(r == rows && c == cols, NULL, MP_ERR_SHAPE_MISMATCH,
               "mp__model_forward: %s is %d x %d, expected %d x %d", what, (int)r, (int)c,
               (int)rows, (int)cols);
    return MP_OK;
}

/* The checks of mp__model_forward / mp__model_prepare (which reads the
 * backbone tensors only); *n: batch rows. */
static mp_status check_pass(const mp_model *m, mp_tape *t, const mp_var *params, mp_var x, int32_t backbone_only,
                            int32_t *n)
{
    int32_t c;
    MP_TRY(mp_tape_shape(t, x, n, &c));
    MP_REQUIRE(c == m->in_dim && *n >= 1, NULL, MP_ERR_SHAPE_MISMATCH,
               "mp__model_forward: x is %d x %d, expected batch x %d", (int)*n, (int)c, (int)m->in_dim);
    for (int32_t i = 0; i < m->ntensors; i++)
        if (!backbone_only || m->tensors[i].group == MP__GROUP_BACKBONE)
            MP_TRY(check_var(t, params[i], m->tensors[i].name, m->tensors[i].rows, m->tensors[i].cols));
    return MP_OK;
}

mp_status mp__model_forward(const mp_model *m, mp_tape *t, const mp_var *params, mp_var prompt,
                            mp_var x, mp__fwd_cache *cache, mp_var *out)
{
    int32_t n;
    MP_TRY(check_pass(m, t, params, x, 0, &n));
    if (m->P > 0) MP_TRY(check_var(t, prompt, "prompt", m->P, m->d));
    switch (m->kind) {
    case MP_MODEL_MLP: return mp__mlp_forward(m, t, params, prompt, x, n, out);
    case MP_MODEL_CONV: return mp__conv_forward(m, t, params, prompt, x, n, cache, out);
    default: return mp__tf_forward(m, t, params, prompt, x, n, cache, out);
    }
}

mp_status mp__model_prepare(const mp_model *m, mp_tape *t, const mp_var *params, mp_var x,
                            mp__fwd_cache *cache)
{
    int32_t n;
    MP_TRY(check_pass(m, t, params, x, 1, &n));
    switch (m->kind) {
    case MP_MODEL_MLP: return MP_OK; /* the prompt enters at the input: no prefix */
    case MP_MODEL_CONV: return mp__conv_prepare(m, t, params, x, n, cache);
    default: return mp__tf_prepare(m, t, params, x, n, cache);
    }
}

mp_status mp__model_loss(const mp_model *m, mp_tape *t, mp_var out, const int32_t *labels,
                         const float *targets, size_t n, mp_var *loss)
{
    if (m->task == MP_TASK_CLASSIFICATION) {
        MP_REQUIRE(labels, NULL, MP_ERR_NULL_POINTER, "mp_model_loss: a classifier needs labels");
        for (size_t i = 0; i < n; i++)
            MP_REQUIRE(labels[i] >= 0 && labels[i] < m->out_dim, NULL, MP_ERR_RANGE,
                       "mp_model_loss: labels[%zu] = %d outside [0, %d)", i, (int)labels[i],
                       (int)m->out_dim);
        return mp_cross_entropy(t, out, labels, n, loss);
    }
    MP_REQUIRE(targets, NULL, MP_ERR_NULL_POINTER, "mp_model_loss: a regressor needs targets");
    MP_REQUIRE(n <= INT32_MAX, NULL, MP_ERR_RANGE, "mp_model_loss: n = %zu too large", n);
    mp_var tv;
    MP_TRY(mp_tape_leaf(t, (int32_t)n, m->out_dim, targets, n * (size_t)m->out_dim, 0, &tv));
    return mp_mse(t, out, tv, loss);
}

/* ---- shared forward helpers ---------------------------------------------------------- */
mp_status mp__fwd_prefix(const mp_model *m, mp_tape *t, const mp_var *p, int32_t nkeys, mp_var x,
                         int32_t n, mp__fwd_cache *cache, mp__prefix_fn fn, int32_t nv, mp_var *v)
{
    if (!cache || nkeys > MP__FWD_CACHE_KEYS || nv > MP__FWD_CACHE_VARS) return fn(m, t, p, x, n, v);
    for (int32_t s = 0; s < MP__FWD_CACHE_SLOTS; s++) {
        const mp__fwd_slot *sl = &cache->slot[s];
        if (sl->x != x || sl->nkeys != nkeys || memcmp(sl->keys, p, (size_t)nkeys * sizeof *p) != 0)
            continue;
        memcpy(v, sl->v, (size_t)nv * sizeof *v);
        return MP_OK;
    }
    MP_TRY(fn(m, t, p, x, n, v));
    mp__fwd_slot *sl = &cache->slot[cache->next];
    cache->next = (cache->next + 1) % MP__FWD_CACHE_SLOTS;
    sl->x = x;
    sl->nkeys = nkeys;
    memcpy(sl->keys, p, (size_t)nkeys * sizeof *p);
    memcpy(sl->v, v, (size_t)nv * sizeof *v);
    return MP_OK;
}

mp_status mp__check_token_ids(const mp_model *m, const char *fn, const char *what, const float *x,
                              size_t count)
{
    if (m->kind != MP_MODEL_TRANSFORMER || mp__mcfg(m, MP_CFG_MODEL_VOCAB) <= 0) return MP_OK;
    int64_t vocab = mp__mcfg(m, MP_CFG_MODEL_VOCAB);
    for (size_t i = 0; i < count; i++)
        MP_REQUIRE(x[i] >= 0.0f && x[i] < (float)vocab && x[i] == floorf(x[i]), NULL,
                   MP_ERR_INVALID_ARGUMENT, "%s: %s x[%zu] = %g is not an integer id in [0, %lld)", fn,
                   what, i, (double)x[i], (long long)vocab);
    return MP_OK;
}

mp_status mp__model_leaves(const mp_model *m, mp_tape *t, const mp_prompt *prompt, mp_var *params,
                           mp_var *prompt_var)
{
    for (int32_t i = 0; i < m->ntensors; i++) {
        const mp__param_info *ti = &m->tensors[i];
        MP_TRY(mp_tape_leaf(t, ti->rows, ti->cols, m->params + ti->offset,
                            (size_t)ti->rows * (size_t)ti->cols, MP_LEAF_BORROW, &params[i]));
    }
    *prompt_var = MP_VAR_NONE;
    if (m->P == 0) return MP_OK;
    if (!prompt) return mp_tape_fill(t, m->P, m->d, 0.0f, prompt_var);
    return mp_tape_leaf(t, m->P, m->d, prompt->data, (size_t)m->P * (size_t)m->d, MP_LEAF_BORROW,
                        prompt_var);
}

/* ---- inference ------------------------------------------------------------------------ */
static mp_status check_inputs(const mp_model *m, const char *fn, const mp_prompt *prompt,
                              const float *x, size_t n, size_t x_len)
{
    MP_REQUIRE_HANDLE_ARG(m, "model", MP__KIND_MODEL, NULL, fn);
    MP_OPTIONAL_HANDLE(prompt, MP__KIND_PROMPT, NULL, fn);
    MP_REQUIRE(x || n == 0, NULL, MP_ERR_NULL_POINTER, "%s: argument 'x' is NULL", fn);
    size_t want;
    MP_REQUIRE(mp__mul_size(n, (size_t)m->in_dim, &want) == 0 && x_len == want, NULL,
               MP_ERR_SHAPE_MISMATCH, "%s: x_len must be n * input_dim = %zu * %d, got %zu", fn, n,
               (int)m->in_dim, x_len);
    MP_REQUIRE(!prompt || (prompt->rows == m->P && prompt->cols == m->d), NULL,
               MP_ERR_SHAPE_MISMATCH, "%s: prompt is %d x %d, the model needs %d x %d", fn,
               prompt ? (int)prompt->rows : 0, prompt ? (int)prompt->cols : 0, (int)m->P, (int)m->d);
    for (size_t i = 0; i < x_len; i++)
        MP_REQUIRE(isfinite(x[i]), NULL, MP_ERR_NOT_FINITE, "%s: x[%zu] is not finite", fn, i);
    return mp__check_token_ids(m, fn, "token", x, x_len);
}

/* Records one chunk's forward pass; *out is rows x output_dim. */
static mp_status forward_chunk(const mp_model *m, mp_tape *t, mp_var *params,
                               const mp_prompt *prompt, const float *x, size_t rows, mp_var *out)
{
    mp_var pv, xv;
    MP_TRY(mp_tape_reset(t));
    MP_TRY(mp__model_leaves(m, t, prompt, params, &pv));
    MP_TRY(mp_tape_leaf(t, (int32_t)rows, m->in_dim, x, rows * (size_t)m->in_dim, MP_LEAF_BORROW,
                        &xv));
    return mp__model_forward(m, t, params, pv, xv, NULL, out);
}

typedef struct {
    mp_tape *tape;
    mp_var *params;
} session;

static mp_status session_open(const mp_model *m, session *s)
{
    s->params = mp__calloc((size_t)m->ntensors, sizeof *s->params);
    MP_REQUIRE(s->params, NULL, MP_ERR_OUT_OF_MEMORY, "mp_model: out of memory");
    mp_status st = mp_tape_create(&s->tape);
    if (st != MP_OK) mp__free(s->params);
    return st;
}

static void session_close(session *s)
{
    mp_tape_destroy(s->tape);
    mp__free(s->params);
}

static mp_status predict_all(const mp_model *m, session *s, const mp_prompt *prompt, const float *x,
                             size_t n, float *out)
{
    size_t chunk = chunk_rows(m);
    for (size_t i = 0; i < n; i += chunk) {
        size_t rows = n - i < chunk ? n - i : chunk;
        mp_var o;
        MP_TRY(forward_chunk(m, s->tape, s->params, prompt, x + i * (size_t)m->in_dim, rows, &o));
        MP_TRY(mp_tape_read(s->tape, o, out + i * (size_t)m->out_dim, rows * (size_t)m->out_dim));
    }
    return MP_OK;
}

mp_status mp_model_predict(const mp_model *m, const mp_prompt *prompt, const float *x, size_t n,
                           size_t x_len, float *out, size_t out_len)
{
    MP_TRY(check_inputs(m, "mp_model_predict", prompt, x, n, x_len));
    MP_REQUIRE(out || n == 0, NULL, MP_ERR_NULL_POINTER, "mp_model_predict: argument 'out' is NULL");
    size_t need = n * (size_t)m->out_dim;
    MP_REQUIRE(out_len >= need, NULL, MP_ERR_BUFFER_TOO_SMALL,
               "mp_model_predict: 'out' has room for out_len = %zu floats, n * output_dim = %zu needed", out_len,
               need);
    if (n == 0) return MP_OK;
    session s;
    MP_TRY(session_open(m, &s));
    mp_status st = predict_all(m, &s, prompt, x, n, out);
    session_close(&s);
    return st;
}

static mp_status loss_all(const mp_model *m, session *s, const mp_prompt *prompt, const float *x,
                          size_t n, const int32_t *labels, const float *targets, double *total)
{
    *total = 0.0;
    size_t chunk = chunk_rows(m);
    for (size_t i = 0; i < n; i += chunk) {
        size_t rows = n - i < chunk ? n - i : chunk;
        mp_var o, l;
        float v;
        MP_TRY(forward_chunk(m, s->tape, s->params, prompt, x + i * (size_t)m->in_dim, rows, &o));
        MP_TRY(mp__model_loss(m, s->tape, o, labels ? labels + i : NULL,
                              targets ? targets + i * (size_t)m->out_dim : NULL, rows, &l));
        MP_TRY(mp_tape_scalar(s->tape, l, &v));
        *total += (double)v * (double)rows; /* chunk means weighted back to a sum */
    }
    *total /= (double)n;
    return MP_OK;
}

mp_status mp_model_loss(const mp_model *m, const mp_prompt *prompt, const float *x, size_t n,
                        size_t x_len, const int32_t *labels, const float *targets, float *loss)
{
    MP_TRY(check_inputs(m, "mp_model_loss", prompt, x, n, x_len));
    MP_REQUIRE_PTR(loss, NULL, "mp_model_loss");
    MP_REQUIRE(n >= 1, NULL, MP_ERR_INVALID_ARGUMENT, "mp_model_loss: n must be >= 1, got 0");
    if (m->task == MP_TASK_CLASSIFICATION) {
        MP_REQUIRE_PTR(labels, NULL, "mp_model_loss");
        for (size_t i = 0; i < n; i++)
            MP_REQUIRE(labels[i] >= 0 && labels[i] < m->out_dim, NULL, MP_ERR_RANGE,
                       "mp_model_loss: labels[%zu] = %d outside [0, %d)", i, (int)labels[i],
                       (int)m->out_dim);
    } else {
        MP_REQUIRE_PTR(targets, NULL, "mp_model_loss");
        size_t nt;
        MP_REQUIRE(mp__mul_size(n, (size_t)m->out_dim, &nt) == 0, NULL, MP_ERR_INVALID_ARGUMENT,
                   "mp_model_loss: n = %zu rows of %d targets overflow size_t", n, (int)m->out_dim);
        for (size_t i = 0; i < nt; i++)
            MP_REQUIRE(isfinite(targets[i]), NULL, MP_ERR_NOT_FINITE,
                       "mp_model_loss: targets[%zu] is not finite (%g)", i, (double)targets[i]);
    }
    session s;
    MP_TRY(session_open(m, &s));
    double total;
    mp_status st = loss_all(m, &s, prompt, x, n, labels, targets, &total);
    session_close(&s);
    if (st == MP_OK) *loss = (float)total;
    return st;
}
