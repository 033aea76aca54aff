/* A meta's hyper-parameters after creation: read every meta key back, and
 * change those that do not shape the meta's state between steps (outer
 * learning-rate schedules, the number of inner steps, derivative-order
 * annealing between MAML, first-order MAML and Reptile). */
#include "meta/meta_internal.h"

#include <math.h>

/* The meta keys and MP_CFG_THREADS, with the type the caller asked for
 * (verb "get" or "set" names the right function in the message). */
static mp_status meta_key(char *herr, const char *fn, const char *verb, int32_t key, int32_t type,
                          const mp__key_info **out)
{
    const mp__key_info *k = NULL;
    for (const mp__key_info *e = mp__keys_meta; e->key != 0; e++)
        if (e->key == key) k = e;
    if (key == MP_CFG_THREADS) k = mp__key_lookup(key);
    MP_REQUIRE(k != NULL, herr, MP_ERR_NOT_FOUND, "%s: key %d is not a meta key (MP_CFG_META_* or MP_CFG_THREADS)",
               fn, (int)key);
    MP_REQUIRE(k->type == type, herr, MP_ERR_INVALID_ARGUMENT, "%s: '%s' is %s key (use mp_meta_%s_%s)", fn,
               k->name, k->type == MP_CFG_TYPE_INT ? "an integer" : "a float", verb,
               k->type == MP_CFG_TYPE_INT ? "int" : "float");
    *out = k;
    return MP_OK;
}

mp_status mp_meta_get_int(const mp_meta *m, int32_t key, int64_t *out)
{
    const char *fn = "mp_meta_get_int";
    MP_REQUIRE_HANDLE_ARG(m, "meta", MP__KIND_META, NULL, fn);
    MP_REQUIRE_PTR(out, NULL, fn);
    const mp__key_info *k;
    MP_TRY(meta_key(NULL, fn, "get", key, MP_CFG_TYPE_INT, &k));
    switch (key) {
    case MP_CFG_META_ALGORITHM: *out = m->algo; break;
    case MP_CFG_META_INNER_STEPS: *out = m->inner_steps; break;
    case MP_CFG_META_SCOPE: *out = m->scope; break;
    case MP_CFG_META_LEARN: *out = m->learn; break;
    case MP_CFG_META_OPTIMIZER: *out = m->opt.kind; break;
    case MP_CFG_META_EVAL_INNER_STEPS: *out = mp__meta_eval_steps(m); break;
    default: *out = m->threads; break; /* MP_CFG_THREADS */
    }
    return MP_OK;
}

mp_status mp_meta_get_float(const mp_meta *m, int32_t key, double *out)
{
    const char *fn = "mp_meta_get_float";
    MP_REQUIRE_HANDLE_ARG(m, "meta", MP__KIND_META, NULL, fn);
    MP_REQUIRE_PTR(out, NULL, fn);
    const mp__key_info *k;
    MP_TRY(meta_key(NULL, fn, "get", key, MP_CFG_TYPE_FLOAT, &k));
    switch (key) {
    case MP_CFG_META_INNER_LR: *out = m->inner_lr; break;
    case MP_CFG_META_OUTER_LR: *out = m->opt.lr; break;
    case MP_CFG_META_MOMENTUM: *out = m->opt.momentum; break;
    case MP_CFG_META_BETA1: *out = m->opt.beta1; break;
    case MP_CFG_META_BETA2: *out = m->opt.beta2; break;
    case MP_CFG_META_EPSILON: *out = m->opt.eps; break;
    case MP_CFG_META_WEIGHT_DECAY: *out = m->opt.weight_decay; break;
    default: *out = m->clip; break; /* MP_CFG_META_CLIP_NORM */
    }
    return MP_OK;
}

/* Keys that decide the layout of the meta's state (gradient vector,
 * moments, rates) or its workers: fixed at mp_meta_create. */
static int is_structural(int32_t key)
{
    return key == MP_CFG_META_SCOPE || key == MP_CFG_META_LEARN || key == MP_CFG_META_OPTIMIZER ||
           key == MP_CFG_THREADS;
}

mp_status mp_meta_set_int(mp_meta *m, int32_t key, int64_t value)
{
    const char *fn = "mp_meta_set_int";
    MP_REQUIRE_HANDLE_ARG(m, "meta", MP__KIND_META, NULL, fn);
    MP_TRY(mp__meta_idle(m, m->err, fn));
    const mp__key_info *k;
    MP_TRY(meta_key(m->err, fn, "set", key, MP_CFG_TYPE_INT, &k));
    MP_REQUIRE(!is_structural(key), m->err, MP_ERR_UNSUPPORTED,
               "%s: '%s' shapes the meta's state and is fixed at mp_meta_create (create another meta; "
               "mp_checkpoint_load carries a state over where the layouts agree)", fn, k->name);
    MP_REQUIRE(value >= (int64_t)k->min && value <= (int64_t)k->max, m->err, MP_ERR_RANGE,
               "%s: '%s' must be in [%lld, %lld], got %lld", fn, k->name, (long long)k->min, (long long)k->max,
               (long long)value);
    switch (key) {
    case MP_CFG_META_ALGORITHM:
        MP_REQUIRE((value == MP_META_METASGD) == (m->algo == MP_META_METASGD), m->err, MP_ERR_UNSUPPORTED,
                   "%s: 'meta.algorithm' %lld -> %lld: Meta-SGD (%d) keeps learned inner rates, so a meta "
                   "switches only among MAML, first-order MAML and Reptile (create another meta)",
                   fn, (long long)m->algo, (long long)value, MP_META_METASGD);
        m->algo = (int32_t)value;
        break;
    case MP_CFG_META_INNER_STEPS: m->inner_steps = (int32_t)value; break;
    default: m->eval_steps = (int32_t)value; break; /* MP_CFG_META_EVAL_INNER_STEPS; -1: follow inner_steps */
    }
    return MP_OK;
}

mp_status mp_meta_set_float(mp_meta *m, int32_t key, double value)
{
    const char *fn = "mp_meta_set_float";
    MP_REQUIRE_HANDLE_ARG(m, "meta", MP__KIND_META, NULL, fn);
    MP_TRY(mp__meta_idle(m, m->err, fn));
    const mp__key_info *k;
    MP_TRY(meta_key(m->err, fn, "set", key, MP_CFG_TYPE_FLOAT, &k));
    MP_REQUIRE(isfinite(value), m->err, MP_ERR_NOT_FINITE, "%s: '%s' must be finite, got %g", fn, k->name, value);
    MP_REQUIRE(value >= k->min && value <= k->max, m->err, MP_ERR_RANGE, "%s: '%s' must be in [%g, %g], got %g",
               fn, k->name, k->min, k->max, value);
    MP_REQUIRE(key != MP_CFG_META_INNER_LR || m->algo != MP_META_METASGD, m->err, MP_ERR_UNSUPPORTED,
               "%s: Meta-SGD learns its inner rates (mp_meta_get_inner_lr); 'meta.inner_lr' only gave "
               "their initial value at mp_meta_create", fn);
    switch (key) {
    case MP_CFG_META_INNER_LR: m->inner_lr = (float)value; break;
    case MP_CFG_META_OUTER_LR: m->opt.lr = value; break;
    case MP_CFG_META_MOMENTUM: m->opt.momentum = value; break;
    case MP_CFG_META_BETA1: m->opt.beta1 = value; break;
    case MP_CFG_META_BETA2: m->opt.beta2 = value; break;
    case MP_CFG_META_EPSILON: m->opt.eps = value; break;
    case MP_CFG_META_WEIGHT_DECAY: m->opt.weight_decay = value; break;
    default: m->clip = value; break; /* MP_CFG_META_CLIP_NORM */
    }
    return MP_OK;
}
