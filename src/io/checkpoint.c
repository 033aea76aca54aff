/* Checkpoints of a model, its prompt, a meta-optimizer and an episode
 * sampler's position (docs/FORMAT.md).
 * Loading verifies every part against the destinations before copying
 * anything, so a failed load changes nothing. */
#include "io/checkpoint_internal.h"
#include "data/data_internal.h"
#include "model/model_priv.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define MODEL_PREFIX "model/"
#define PROMPT_NAME "prompt"
#define META_PREFIX "meta/"

static int starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static void tensor_key(char *buf, size_t len, const mp__param_info *t)
{
    snprintf(buf, len, MODEL_PREFIX "%s", t->name);
}

/* A checkpoint holds finite values only: the loader refuses others, and the
 * savers refuse them before the file is written (`after` says so in their
 * message; the library keeps its handles finite, this guards the file
 * against anything that slipped through). */
static mp_status check_finite(const float *v, size_t n, const char *tensor, const char *after)
{
    for (size_t i = 0; i < n; i++)
        MP_REQUIRE(isfinite(v[i]), NULL, MP_ERR_NOT_FINITE, "mp_checkpoint: tensor '%s' value %zu is not finite (%g)%s",
                   tensor, i, (double)v[i], after);
    return MP_OK;
}

#define NOT_WRITTEN "; nothing was written"

/* ---- save ---------------------------------------------------------------------- */
static mp_status add_model(mp__ckpt_writer *w, const mp_model *m)
{
    MP_TRY(mp__ckpt_writer_add_config(w, MP_CFG_SEED, (int64_t)m->seed, 0.0));
    for (int32_t k = MP__MODEL_KEY_FIRST; k <= MP__MODEL_KEY_LAST; k++)
        MP_TRY(mp__ckpt_writer_add_config(w, k, mp__mcfg(m, k), 0.0));
    char name[MP__CKPT_NAME_MAX + 1];
    for (int32_t i = 0; i < m->ntensors; i++) {
        const mp__param_info *t = &m->tensors[i];
        tensor_key(name, sizeof name, t);
        MP_TRY(check_finite(m->params + t->offset, (size_t)t->rows * (size_t)t->cols, name, NOT_WRITTEN));
        MP_TRY(mp__ckpt_writer_add(w, name, t->rows, t->cols, m->params + t->offset));
    }
    return MP_OK;
}

/* The sampler's position and what must agree for it to mean the same
 * episodes (data/data_internal.h). */
static mp_status add_sampler(mp__ckpt_writer *w, const mp_sampler *s)
{
    uint64_t id[MP__SAMPLER_ID_COUNT], pos = 0;
    mp__sampler_identity(s, id);
    MP_TRY(mp_sampler_get_position(s, &pos));
    MP_TRY(mp__ckpt_writer_add_u64(w, MP__CKPT_SAMPLER_POSITION, pos));
    return mp__ckpt_writer_add_u64s(w, MP__CKPT_SAMPLER_IDENTITY, 1, MP__SAMPLER_ID_COUNT, id);
}

static mp_status save_all(mp__ckpt_writer *w, const char *path, const mp_model *m,
                          const mp_prompt *p, const mp_meta *meta, const mp_sampler *sampler)
{
    MP_TRY(add_model(w, m));
    if (p) {
        MP_TRY(check_finite(p->data, (size_t)p->rows * (size_t)p->cols, PROMPT_NAME, NOT_WRITTEN));
        MP_TRY(mp__ckpt_writer_add(w, PROMPT_NAME, p->rows, p->cols, p->data));
    }
    if (meta) MP_TRY(mp__meta_ckpt_write(meta, w));
    if (sampler) MP_TRY(add_sampler(w, sampler));
    return mp__ckpt_writer_save(w, path);
}

/* The handle kinds of the optional arguments of the savers and loaders
 * (model is checked before: herr is NULL or its buffer). */
static mp_status check_optional(char *herr, const char *fn, const mp_prompt *prompt, const mp_meta *meta,
                                const mp_sampler *sampler)
{
    MP_OPTIONAL_HANDLE(prompt, MP__KIND_PROMPT, herr, fn);
    MP_OPTIONAL_HANDLE(meta, MP__KIND_META, herr, fn);
    MP_OPTIONAL_HANDLE(sampler, MP__KIND_SAMPLER, herr, fn);
    return MP_OK;
}

/* The writer steps report as "mp_checkpoint: ..." (they serve both public
 * savers); a failure of theirs is re-issued as fn's. */
static mp_status save(const char *fn, const char *path, const mp_model *model,
                      const mp_prompt *prompt, const mp_meta *meta, const mp_sampler *sampler)
{
    MP_REQUIRE_PTR(path, NULL, fn);
    MP_REQUIRE_HANDLE(model, MP__KIND_MODEL, NULL, fn);
    MP_TRY(check_optional(NULL, fn, prompt, meta, sampler));
    MP_REQUIRE(!prompt || (prompt->rows == model->P && prompt->cols == model->d), NULL,
               MP_ERR_SHAPE_MISMATCH, "%s: prompt is %d x %d, the model's is %d x %d", fn,
               prompt ? (int)prompt->rows : 0, prompt ? (int)prompt->cols : 0, (int)model->P,
               (int)model->d);
    if (meta) MP_TRY(mp__meta_ckpt_owner(meta, NULL, fn, model, prompt));
    mp__ckpt_writer *w;
    mp_status st = mp__ckpt_writer_create(&w);
    if (st == MP_OK) {
        st = save_all(w, path, model, prompt, meta, sampler);
        mp__ckpt_writer_destroy(w);
    }
    return st == MP_OK ? MP_OK : mp__fail_in(NULL, st, fn, NULL, "mp_checkpoint", NULL);
}

mp_status mp_checkpoint_save(const char *path, const mp_model *model, const mp_prompt *prompt,
                             const mp_meta *meta)
{
    return save("mp_checkpoint_save", path, model, prompt, meta, NULL);
}

mp_status mp_checkpoint_save_with_sampler(const char *path, const mp_model *model,
                                          const mp_prompt *prompt, const mp_meta *meta,
                                          const mp_sampler *sampler)
{
    return save("mp_checkpoint_save_with_sampler", path, model, prompt, meta, sampler);
}

/* ---- load: checks -------------------------------------------------------------- */

/* A model key the file does not hold was added to the library after the
 * file was written: it takes its default, which is what the writer used. */
static int64_t file_model_key(const mp__ckpt_reader *r, int32_t key)
{
    int64_t v;
    if (mp__ckpt_config(r, key, &v, NULL) == MP_OK) return v;
    const mp__key_info *k = mp__key_lookup(key);
    return k ? (int64_t)k->def : 0;
}

/* Keys that only chose how the initial values were drawn: they change no
 * tensor's name, shape or meaning, so a file whose model differs from the
 * destination in them alone loads (its parameters replace the initial
 * ones). They are still written, so mp_model_create_from_checkpoint
 * rebuilds the saved configuration exactly. */
static int init_only_key(int32_t key)
{
    return key == MP_CFG_MODEL_INIT;
}

static mp_status check_config(const mp__ckpt_reader *r, const mp_model *m)
{
    /* A model key this library does not know means a newer architecture
     * option: refusing beats silently building something else. */
    for (size_t i = 0; i < mp__ckpt_config_count(r); i++) {
        int32_t key, type;
        int64_t iv;
        double fv;
        mp__ckpt_config_entry(r, i, &key, &type, &iv, &fv);
        MP_REQUIRE(key < 100 || key > 199 || (key >= MP__MODEL_KEY_FIRST && key <= MP__MODEL_KEY_LAST),
                   NULL, MP_ERR_SHAPE_MISMATCH,
                   "mp_checkpoint: the file uses model configuration key %d unknown to "
                   "this library", (int)key);
    }
    for (int32_t k = MP__MODEL_KEY_FIRST; k <= MP__MODEL_KEY_LAST; k++) {
        if (init_only_key(k)) continue;
        int64_t v = file_model_key(r, k);
        MP_REQUIRE(v == mp__mcfg(m, k), NULL, MP_ERR_SHAPE_MISMATCH,
                   "mp_checkpoint: the file's model has %s = %lld, this model %lld",
                   mp_config_key_name(k), (long long)v, (long long)mp__mcfg(m, k));
    }
    return MP_OK;
}

static mp_status check_tensors(const mp__ckpt_reader *r, const mp_model *m)
{
    char name[MP__CKPT_NAME_MAX + 1];
    for (int32_t i = 0; i < m->ntensors; i++) {
        const mp__param_info *t = &m->tensors[i];
        tensor_key(name, sizeof name, t);
        MP_TRY(mp__ckpt_expect(r, name, MP__CKPT_F32, t->rows, t->cols));
    }
    for (size_t i = 0; i < mp__ckpt_num_tensors(r); i++) {
        const char *n = mp__ckpt_tensor_name(r, i);
        if (starts_with(n, META_PREFIX) || strcmp(n, PROMPT_NAME) == 0) continue;
        MP_REQUIRE(starts_with(n, MODEL_PREFIX), NULL, MP_ERR_FORMAT,
                   "mp_checkpoint: unknown tensor '%s' in the file", n);
        MP_REQUIRE(mp__model_find_tensor(m, n + strlen(MODEL_PREFIX)) >= 0, NULL, MP_ERR_FORMAT,
                   "mp_checkpoint: the file has tensor '%s' that this model does not", n);
    }
    return MP_OK;
}

typedef struct {
    float *params;     /* staged model parameters */
    float *prompt;     /* staged prompt values */
    uint64_t position; /* staged sampler position */
} staged;

static mp_status stage(const mp__ckpt_reader *r, const mp_model *m, const mp_prompt *p, staged *s)
{
    char name[MP__CKPT_NAME_MAX + 1];
    s->params = mp__alloc(m->nparams * sizeof(float));
    MP_REQUIRE(s->params, NULL, MP_ERR_OUT_OF_MEMORY, "mp_checkpoint: out of memory");
    for (int32_t i = 0; i < m->ntensors; i++) {
        const mp__param_info *t = &m->tensors[i];
        tensor_key(name, sizeof name, t);
        MP_TRY(mp__ckpt_read(r, name, s->params + t->offset, (size_t)t->rows * (size_t)t->cols));
        MP_TRY(check_finite(s->params + t->offset, (size_t)t->rows * (size_t)t->cols, name, ""));
    }
    if (!p) return MP_OK;
    size_t n = (size_t)p->rows * (size_t)p->cols;
    MP_REQUIRE(p->rows == m->P && p->cols == m->d, NULL, MP_ERR_SHAPE_MISMATCH,
               "mp_checkpoint: prompt is %d x %d, the model's is %d x %d", (int)p->rows,
               (int)p->cols, (int)m->P, (int)m->d);
    MP_TRY(mp__ckpt_expect(r, PROMPT_NAME, MP__CKPT_F32, p->rows, p->cols));
    s->prompt = mp__alloc((n ? n : 1) * sizeof(float));
    MP_REQUIRE(s->prompt, NULL, MP_ERR_OUT_OF_MEMORY, "mp_checkpoint: out of memory");
    MP_TRY(mp__ckpt_read(r, PROMPT_NAME, s->prompt, n));
    return check_finite(s->prompt, n, PROMPT_NAME, "");
}

/* ---- load: the sampler ----------------------------------------------------------- */
static const char *sampler_field_name(int i)
{
    switch (i) {
    case MP__SAMPLER_ID_KIND: return "kind (1 = dataset episodes, 2 = sinusoids)";
    case MP__SAMPLER_ID_SEED: return mp_config_key_name(MP_CFG_SEED);
    case MP__SAMPLER_ID_WAYS: return mp_config_key_name(MP_CFG_DATA_WAYS);
    case MP__SAMPLER_ID_SHOTS: return mp_config_key_name(MP_CFG_DATA_SHOTS);
    case MP__SAMPLER_ID_QUERIES: return mp_config_key_name(MP_CFG_DATA_QUERIES);
    case MP__SAMPLER_ID_ROTATIONS: return mp_config_key_name(MP_CFG_DATA_ROTATIONS);
    case MP__SAMPLER_ID_DIM: return "features per example";
    case MP__SAMPLER_ID_CLASSES: return "classes with examples";
    default: return "dataset examples";
    }
}

/* The file must hold a sampler configured like s; *position receives the
 * stored position. */
static mp_status check_sampler(const mp__ckpt_reader *r, const mp_sampler *s, uint64_t *position)
{
    MP_REQUIRE(mp__ckpt_has(r, MP__CKPT_SAMPLER_POSITION), NULL,
               MP_ERR_NOT_FOUND,
               "mp_checkpoint: the file holds no sampler state ('" MP__CKPT_SAMPLER_POSITION
               "' is missing: it was saved without a sampler; load it with sampler = NULL)");
    MP_TRY(mp__ckpt_expect(r, MP__CKPT_SAMPLER_POSITION, MP__CKPT_U64, 1, 1));
    MP_TRY(mp__ckpt_expect(r, MP__CKPT_SAMPLER_IDENTITY, MP__CKPT_U64, 1, MP__SAMPLER_ID_COUNT));
    uint64_t file[MP__SAMPLER_ID_COUNT], mine[MP__SAMPLER_ID_COUNT];
    MP_TRY(mp__ckpt_read_u64s(r, MP__CKPT_SAMPLER_IDENTITY, file, MP__SAMPLER_ID_COUNT));
    mp__sampler_identity(s, mine);
    for (int i = 0; i < MP__SAMPLER_ID_COUNT; i++)
        MP_REQUIRE(file[i] == mine[i], NULL, MP_ERR_SHAPE_MISMATCH,
                   "mp_checkpoint: the file's sampler has %s = %llu, this sampler %llu ('"
                   MP__CKPT_SAMPLER_IDENTITY "'); its position would mean other episodes",
                   sampler_field_name(i), (unsigned long long)file[i], (unsigned long long)mine[i]);
    return mp__ckpt_read_u64(r, MP__CKPT_SAMPLER_POSITION, position);
}

static mp_status verify(const mp__ckpt_reader *r, const mp_model *m, const mp_prompt *p,
                        const mp_meta *meta, const mp_sampler *sampler, staged *s)
{
    MP_TRY(check_config(r, m));
    MP_TRY(check_tensors(r, m));
    MP_TRY(stage(r, m, p, s));
    if (meta) MP_TRY(mp__meta_ckpt_check(meta, r));
    if (sampler) MP_TRY(check_sampler(r, sampler, &s->position));
    return MP_OK;
}

mp_status mp__checkpoint_load_reader(const mp__ckpt_reader *r, mp_model *m, mp_prompt *p, mp_meta *meta,
                                     mp_sampler *sampler)
{
    staged s = {NULL, NULL, 0};
    mp_status st = verify(r, m, p, meta, sampler, &s);
    if (st == MP_OK) {
        memcpy(m->params, s.params, m->nparams * sizeof(float));
        if (p) memcpy(p->data, s.prompt, (size_t)p->rows * (size_t)p->cols * sizeof(float));
        if (meta) mp__meta_ckpt_apply(meta, r);
        if (sampler) (void)mp_sampler_set_position(sampler, s.position); /* cannot fail */
    }
    mp__free(s.params);
    mp__free(s.prompt);
    return st;
}

/* A load failure as fn's, naming the file (the steps below report as
 * "mp_checkpoint: ..." because both public loaders share them). */
static mp_status fail_with_path(char *herr, mp_status st, const char *fn, const char *path)
{
    char ctx[MP_ERRMSG_LEN];
    snprintf(ctx, sizeof ctx, "'%s'", path);
    return mp__fail_in(herr, st, fn, ctx, "mp_checkpoint", NULL);
}

static mp_status load(const char *fn, const char *path, mp_model *model, mp_prompt *prompt,
                      mp_meta *meta, mp_sampler *sampler)
{
    MP_REQUIRE_HANDLE(model, MP__KIND_MODEL, NULL, fn);
    MP_REQUIRE_PTR(path, model->err, fn);
    MP_TRY(check_optional(model->err, fn, prompt, meta, sampler));
    if (meta) MP_TRY(mp__meta_ckpt_idle(meta, model->err, fn));
    if (meta) MP_TRY(mp__meta_ckpt_owner(meta, model->err, fn, model, prompt));
    mp__ckpt_reader *r;
    mp_status st = mp__ckpt_reader_open(&r, path);
    if (st == MP_OK) {
        st = mp__checkpoint_load_reader(r, model, prompt, meta, sampler);
        mp__ckpt_reader_close(r);
    }
    return st == MP_OK ? MP_OK : fail_with_path(model->err, st, fn, path);
}

mp_status mp_checkpoint_load(const char *path, mp_model *model, mp_prompt *prompt, mp_meta *meta)
{
    return load("mp_checkpoint_load", path, model, prompt, meta, NULL);
}

mp_status mp_checkpoint_load_with_sampler(const char *path, mp_model *model, mp_prompt *prompt,
                                          mp_meta *meta, mp_sampler *sampler)
{
    return load("mp_checkpoint_load_with_sampler", path, model, prompt, meta, sampler);
}

/* ---- create from a checkpoint ------------------------------------------------------- */
static mp_status config_from(const mp__ckpt_reader *r, mp_config *cfg)
{
    int64_t v;
    for (int32_t k = MP__MODEL_KEY_FIRST; k <= MP__MODEL_KEY_LAST; k++) {
        v = file_model_key(r, k);
        mp_status st = mp_config_set_int(cfg, k, v);
        MP_REQUIRE(st == MP_OK, NULL, MP_ERR_FORMAT,
                   "mp_model_create_from_checkpoint: stored %s = %lld is invalid",
                   mp_config_key_name(k), (long long)v);
    }
    if (mp__ckpt_config(r, MP_CFG_SEED, &v, NULL) == MP_OK) MP_TRY(mp_config_set_int(cfg, MP_CFG_SEED, v));
    return MP_OK;
}

static mp_status create_from(const mp__ckpt_reader *r, mp_model **out)
{
    mp_config *cfg;
    mp_model *m = NULL;
    MP_TRY(mp_config_create(&cfg));
    mp_status st = config_from(r, cfg);
    if (st == MP_OK) st = mp_model_create(&m, cfg);
    mp_config_destroy(cfg);
    if (st == MP_OK) st = mp__checkpoint_load_reader(r, m, NULL, NULL, NULL);
    if (st != MP_OK) {
        mp_model_destroy(m);
        return st;
    }
    *out = m;
    return MP_OK;
}

mp_status mp_model_create_from_checkpoint(mp_model **out, const char *path)
{
    MP_REQUIRE_PTR(out, NULL, "mp_model_create_from_checkpoint");
    MP_REQUIRE_PTR(path, NULL, "mp_model_create_from_checkpoint");
    mp__ckpt_reader *r;
    mp_status st = mp__ckpt_reader_open(&r, path);
    if (st == MP_OK) {
        st = create_from(r, out);
        mp__ckpt_reader_close(r);
    }
    return st == MP_OK ? MP_OK : fail_with_path(NULL, st, "mp_model_create_from_checkpoint", path);
}
