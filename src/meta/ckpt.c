/* The meta-optimizer's part of a checkpoint (hooks declared in
 * io/checkpoint_internal.h): the outer optimizer's moments and step count,
 * the Meta-SGD rates, and the configuration that shapes them. The model
 * and prompt (the meta-parameters themselves) are saved by the checkpoint
 * module. A pending gradient (compute without apply) is not saved. */
#include "io/checkpoint_internal.h"
#include "meta/meta_internal.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* Keys whose values must agree between the file and the loading meta:
 * they decide the layout of the saved vectors or their meaning. The
 * algorithm only as far as the layout goes: MAML, first-order MAML and
 * Reptile keep the same state (moments over one gradient layout), so a run
 * can switch between them at a checkpoint (first order while the
 * initialisation is poor, then exact second order: MAML++'s
 * derivative-order annealing); Meta-SGD adds its rates and matches only
 * itself. */
static const int32_t structural_keys[] = {
    MP_CFG_META_ALGORITHM, MP_CFG_META_SCOPE, MP_CFG_META_LEARN, MP_CFG_META_OPTIMIZER,
};

static int64_t structural_value(const mp_meta *m, int32_t key)
{
    switch (key) {
    case MP_CFG_META_ALGORITHM: return m->algo;
    case MP_CFG_META_SCOPE: return m->scope;
    case MP_CFG_META_LEARN: return m->learn; /* resolved, never 0 */
    default: return m->opt.kind;
    }
}

static const char *const tensor_names[] = {"meta/m1", "meta/m2", "meta/inner_lr", "meta/step"};

static mp_status write_config(const mp_meta *m, mp__ckpt_writer *w)
{
    for (size_t i = 0; i < sizeof structural_keys / sizeof structural_keys[0]; i++)
        MP_TRY(mp__ckpt_writer_add_config(w, structural_keys[i], structural_value(m, structural_keys[i]), 0));
    MP_TRY(mp__ckpt_writer_add_config(w, MP_CFG_META_INNER_STEPS, m->inner_steps, 0));
    MP_TRY(mp__ckpt_writer_add_config(w, MP_CFG_META_INNER_LR, 0, m->inner_lr));
    MP_TRY(mp__ckpt_writer_add_config(w, MP_CFG_META_OUTER_LR, 0, m->opt.lr));
    MP_TRY(mp__ckpt_writer_add_config(w, MP_CFG_META_MOMENTUM, 0, m->opt.momentum));
    MP_TRY(mp__ckpt_writer_add_config(w, MP_CFG_META_BETA1, 0, m->opt.beta1));
    MP_TRY(mp__ckpt_writer_add_config(w, MP_CFG_META_BETA2, 0, m->opt.beta2));
    MP_TRY(mp__ckpt_writer_add_config(w, MP_CFG_META_EPSILON, 0, m->opt.eps));
    MP_TRY(mp__ckpt_writer_add_config(w, MP_CFG_META_WEIGHT_DECAY, 0, m->opt.weight_decay));
    MP_TRY(mp__ckpt_writer_add_config(w, MP_CFG_META_CLIP_NORM, 0, m->clip));
    return mp__ckpt_writer_add_config(w, MP_CFG_META_EVAL_INNER_STEPS, m->eval_steps, 0); /* as set: -1 follows */
}

mp_status mp__meta_ckpt_idle(const mp_meta *m, char *herr, const char *fn) { return mp__meta_idle(m, herr, fn); }

mp_status mp__meta_ckpt_owner(const mp_meta *m, char *herr, const char *fn, const mp_model *model,
                              const mp_prompt *prompt)
{
    MP_REQUIRE(model == m->model, herr, MP_ERR_INVALID_ARGUMENT,
               "%s: meta was created for another model (argument 'model' is not the model argument "
               "'meta' updates: its optimizer state belongs to that model)", fn);
    if (!m->prompt) return MP_OK; /* no prompt rows: a prompt holds nothing the meta updates */
    MP_REQUIRE(prompt != NULL, herr, MP_ERR_INVALID_ARGUMENT,
               "%s: argument 'prompt' is NULL but argument 'meta' updates a %d x %d prompt: pass "
               "that prompt (its optimizer state belongs to it)", fn, (int)m->P, (int)m->d);
    MP_REQUIRE(prompt == m->prompt, herr, MP_ERR_INVALID_ARGUMENT,
               "%s: meta was created for another prompt (argument 'prompt' is not the prompt "
               "argument 'meta' updates: its optimizer state belongs to that prompt)", fn);
    return MP_OK;
}

mp_status mp__meta_ckpt_write(const mp_meta *m, mp__ckpt_writer *w)
{
    MP_REQUIRE(m->n_grad <= INT32_MAX, NULL, MP_ERR_UNSUPPORTED,
               "mp_checkpoint: %zu meta-gradient entries exceed the format's %d columns",
               m->n_grad, INT32_MAX);
    MP_TRY(write_config(m, w));
    MP_TRY(mp__ckpt_writer_add(w, tensor_names[0], 1, (int32_t)m->n_grad, m->m1));
    MP_TRY(mp__ckpt_writer_add(w, tensor_names[1], 1, (int32_t)m->n_grad, m->m2));
    if (m->n_lr) MP_TRY(mp__ckpt_writer_add(w, tensor_names[2], 1, (int32_t)m->n_lr, m->lr));
    return mp__ckpt_writer_add_u64(w, tensor_names[3], (uint64_t)m->t);
}

static mp_status check_config(const mp_meta *m, const mp__ckpt_reader *r)
{
    for (size_t i = 0; i < sizeof structural_keys / sizeof structural_keys[0]; i++) {
        int32_t key = structural_keys[i];
        int64_t iv = 0;
        double fv = 0;
        MP_REQUIRE(mp__ckpt_config(r, key, &iv, &fv) == MP_OK, NULL, MP_ERR_NOT_FOUND,
                   "mp_checkpoint: the file holds no meta-optimizer state (it was saved without a meta; "
                   "load it with meta = NULL), configuration key '%s' is missing", mp_config_key_name(key));
        if (key == MP_CFG_META_ALGORITHM) {
            /* (the reader refused values outside the key's range, MAML..Meta-SGD) */
            int file_sgd = iv == MP_META_METASGD, meta_sgd = m->algo == MP_META_METASGD;
            MP_REQUIRE(file_sgd == meta_sgd, NULL, MP_ERR_SHAPE_MISMATCH,
                       "mp_checkpoint: '%s' is %lld in the file but %lld in the meta: a Meta-SGD (%d) "
                       "state holds learned inner rates and loads only into Meta-SGD (MAML, first-order "
                       "MAML and Reptile states load into one another)",
                       mp_config_key_name(key), (long long)iv, (long long)m->algo, MP_META_METASGD);
            continue;
        }
        MP_REQUIRE(iv == structural_value(m, key), NULL, MP_ERR_SHAPE_MISMATCH,
                   "mp_checkpoint: '%s' is %lld in the file but %lld in the meta",
                   mp_config_key_name(key), (long long)iv, (long long)structural_value(m, key));
    }
    return MP_OK;
}

static mp_status check_known_tensors(const mp__ckpt_reader *r)
{
    for (size_t i = 0; i < mp__ckpt_num_tensors(r); i++) {
        const char *name = mp__ckpt_tensor_name(r, i);
        if (strncmp(name, "meta/", 5) != 0) continue;
        if (strncmp(name, MP__CKPT_SAMPLER_PREFIX, strlen(MP__CKPT_SAMPLER_PREFIX)) == 0)
            continue; /* the sampler's records, checked by src/io/checkpoint.c */
        int known = 0;
        for (size_t k = 0; k < sizeof tensor_names / sizeof tensor_names[0]; k++)
            known |= strcmp(name, tensor_names[k]) == 0;
        MP_REQUIRE(known, NULL, MP_ERR_FORMAT, "mp_checkpoint: unknown meta tensor '%s'", name);
    }
    return MP_OK;
}

/* ---- semantic checks of the stored state ---------------------------------------
 * What the outer optimizers assume of their state (src/meta/optim.c): every
 * value finite; Adam's second moments (meta/m2) >= 0, since the update
 * divides by their square root; SGD keeps no second moments (all 0); before
 * the first step (step count 0) both moment vectors are 0; the Meta-SGD
 * rates finite (they may be negative: learned rates are not clamped). A file
 * with a valid CRC can still break these, and loading it would make the next
 * step write NaN into the meta-parameters. */
static int is_finite_value(float v, const void *ctx)
{
    (void)ctx;
    return isfinite(v);
}
static int is_nonnegative(float v, const void *ctx)
{
    (void)ctx;
    return v >= 0.0f;
}
static int is_zero(float v, const void *ctx)
{
    (void)ctx;
    return v == 0.0f;
}

static mp_status check_state(const mp_meta *m, const mp__ckpt_reader *r, uint64_t step)
{
    static const char *const what[] = {
        "the outer optimizer's first moments (SGD: velocity)", "the outer optimizer's second moments",
        "the Meta-SGD inner rates"};
    float v = 0;
    size_t i;
    for (int k = 0; k < 3; k++) {
        if (k == 2 && !m->n_lr) break;
        i = mp__ckpt_first_f32_failing(r, tensor_names[k], is_finite_value, NULL, &v);
        MP_REQUIRE(i == SIZE_MAX, NULL, MP_ERR_NOT_FINITE,
                   "mp_checkpoint: tensor '%s' value %zu is not finite (%g): %s must be finite",
                   tensor_names[k], i, (double)v, what[k]);
    }
    if (m->opt.kind == MP_OPT_SGD) {
        i = mp__ckpt_first_f32_failing(r, tensor_names[1], is_zero, NULL, &v);
        MP_REQUIRE(i == SIZE_MAX, NULL, MP_ERR_FORMAT,
                   "mp_checkpoint: tensor '%s' value %zu is %g: SGD keeps no second moments (all 0)",
                   tensor_names[1], i, (double)v);
    } else {
        i = mp__ckpt_first_f32_failing(r, tensor_names[1], is_nonnegative, NULL, &v);
        MP_REQUIRE(i == SIZE_MAX, NULL, MP_ERR_FORMAT,
                   "mp_checkpoint: tensor '%s' value %zu is negative (%g): Adam's second moments are >= 0",
                   tensor_names[1], i, (double)v);
    }
    if (step == 0)
        for (int k = 0; k < 2; k++) {
            i = mp__ckpt_first_f32_failing(r, tensor_names[k], is_zero, NULL, &v);
            MP_REQUIRE(i == SIZE_MAX, NULL, MP_ERR_FORMAT,
                       "mp_checkpoint: tensor '%s' value %zu is %g but the step count 'meta/step' is 0: "
                       "the moments are 0 before the first step",
                       tensor_names[k], i, (double)v);
        }
    return MP_OK;
}

mp_status mp__meta_ckpt_check(const mp_meta *m, const mp__ckpt_reader *r)
{
    MP_TRY(check_config(m, r));
    MP_TRY(check_known_tensors(r));
    MP_TRY(mp__ckpt_expect(r, tensor_names[0], MP__CKPT_F32, 1, (int32_t)m->n_grad));
    MP_TRY(mp__ckpt_expect(r, tensor_names[1], MP__CKPT_F32, 1, (int32_t)m->n_grad));
    if (m->n_lr)
        MP_TRY(mp__ckpt_expect(r, tensor_names[2], MP__CKPT_F32, 1, (int32_t)m->n_lr));
    else
        MP_REQUIRE(!mp__ckpt_has(r, tensor_names[2]), NULL,
                   MP_ERR_FORMAT, "mp_checkpoint: the file has Meta-SGD rates, the meta has none");
    uint64_t step = 0;
    MP_TRY(mp__ckpt_read_u64(r, tensor_names[3], &step));
    /* The next apply counts step + 1 (Adam's bias correction uses it). */
    MP_REQUIRE(step < (uint64_t)INT64_MAX, NULL, MP_ERR_FORMAT,
               "mp_checkpoint: meta step count %llu out of range (at most %lld)",
               (unsigned long long)step, (long long)INT64_MAX - 1);
    return check_state(m, r, step);
}

/* Everything was verified by mp__meta_ckpt_check: the reads cannot fail. */
void mp__meta_ckpt_apply(mp_meta *m, const mp__ckpt_reader *r)
{
    uint64_t step = 0;
    (void)mp__ckpt_read(r, tensor_names[0], m->m1, m->n_grad);
    (void)mp__ckpt_read(r, tensor_names[1], m->m2, m->n_grad);
    if (m->n_lr) (void)mp__ckpt_read(r, tensor_names[2], m->lr, m->n_lr);
    (void)mp__ckpt_read_u64(r, tensor_names[3], &step);
    m->t = (int64_t)step;
    m->has_grad = 0;
}
