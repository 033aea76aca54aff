/* Key/value configuration objects (the one ABI-safe configuration pattern). */
#include "core/internal.h"

#include <math.h>
#include <string.h>

const mp__key_info mp__keys_core[] = {
    {MP_CFG_SEED, "seed", MP_CFG_TYPE_INT, 0, 0, 9.2e18},
    {MP_CFG_THREADS, "threads", MP_CFG_TYPE_INT, 1, 1, 64},
    {0, NULL, 0, 0, 0, 0},
};

static const mp__key_info *const key_tables[] = {
    mp__keys_core, mp__keys_model, mp__keys_data, mp__keys_meta,
};

#define MAX_ENTRIES 256

typedef struct {
    int32_t key;
    int64_t ival;
    double fval;
} entry;

struct mp_config {
    uint32_t handle_kind; /* MP__KIND_CONFIG */
    size_t n;
    entry e[MAX_ENTRIES];
    char err[MP_ERRMSG_LEN];
};

const mp__key_info *mp__key_lookup(int32_t key)
{
    if (key <= 0) return NULL;
    for (size_t t = 0; t < sizeof key_tables / sizeof key_tables[0]; t++)
        for (const mp__key_info *k = key_tables[t]; k->key != 0; k++)
            if (k->key == key) return k;
    return NULL;
}

static entry *find(const mp_config *cfg, int32_t key)
{
    for (size_t i = 0; i < cfg->n; i++)
        if (cfg->e[i].key == key) return (entry *)&cfg->e[i];
    return NULL;
}

mp_status mp_config_create(mp_config **out)
{
    MP_REQUIRE_PTR(out, NULL, "mp_config_create");
    mp_config *c = mp__calloc(1, sizeof *c);
    MP_REQUIRE(c, NULL, MP_ERR_OUT_OF_MEMORY, "mp_config_create: out of memory");
    c->handle_kind = MP__KIND_CONFIG;
    *out = c;
    return MP_OK;
}

void mp_config_destroy(mp_config *cfg)
{
    if (mp__handle_destroying(cfg, MP__KIND_CONFIG, "cfg", "mp_config_destroy")) mp__free(cfg);
}

mp_status mp_config_clone(mp_config **out, const mp_config *src)
{
    MP_REQUIRE_PTR(out, NULL, "mp_config_clone");
    MP_REQUIRE_HANDLE(src, MP__KIND_CONFIG, NULL, "mp_config_clone");
    mp_config *c = mp__alloc(sizeof *c);
    MP_REQUIRE(c, NULL, MP_ERR_OUT_OF_MEMORY, "mp_config_clone: out of memory");
    memcpy(c, src, sizeof *c);
    c->handle_kind = MP__KIND_CONFIG;
    c->err[0] = '\0';
    *out = c;
    return MP_OK;
}

static mp_status check_key(mp_config *cfg, const char *fn, int32_t key, int32_t type,
                           const mp__key_info **info)
{
    const mp__key_info *k = mp__key_lookup(key);
    MP_REQUIRE(k, cfg->err, MP_ERR_NOT_FOUND, "%s: unknown configuration key %d", fn, (int)key);
    MP_REQUIRE(k->type == type, cfg->err, MP_ERR_INVALID_ARGUMENT,
               "%s: key '%s' is a%s key", fn, k->name,
               k->type == MP_CFG_TYPE_INT ? "n integer" : " float");
    *info = k;
    return MP_OK;
}

static mp_status store(mp_config *cfg, int32_t key, int64_t iv, double fv)
{
    entry *e = find(cfg, key);
    if (!e) {
        MP_REQUIRE(cfg->n < MAX_ENTRIES, cfg->err, MP_ERR_INTERNAL, "mp_config: too many keys");
        e = &cfg->e[cfg->n++];
        e->key = key;
    }
    e->ival = iv;
    e->fval = fv;
    return MP_OK;
}

mp_status mp_config_set_int(mp_config *cfg, int32_t key, int64_t value)
{
    MP_REQUIRE_HANDLE(cfg, MP__KIND_CONFIG, NULL, "mp_config_set_int");
    const mp__key_info *k;
    MP_TRY(check_key(cfg, "mp_config_set_int", key, MP_CFG_TYPE_INT, &k));
    MP_REQUIRE((double)value >= k->min && (double)value <= k->max, cfg->err, MP_ERR_RANGE,
               "mp_config_set_int: '%s' must be in [%.17g, %.17g], got %lld", k->name, k->min,
               k->max, (long long)value);
    return store(cfg, key, value, (double)value);
}

mp_status mp_config_set_float(mp_config *cfg, int32_t key, double value)
{
    MP_REQUIRE_HANDLE(cfg, MP__KIND_CONFIG, NULL, "mp_config_set_float");
    const mp__key_info *k;
    MP_TRY(check_key(cfg, "mp_config_set_float", key, MP_CFG_TYPE_FLOAT, &k));
    MP_REQUIRE(isfinite(value), cfg->err, MP_ERR_NOT_FINITE,
               "mp_config_set_float: '%s' must be finite, got %g", k->name, value);
    MP_REQUIRE(value >= k->min && value <= k->max, cfg->err, MP_ERR_RANGE,
               "mp_config_set_float: '%s' must be in [%g, %g], got %g", k->name, k->min, k->max,
               value);
    return store(cfg, key, (int64_t)0, value);
}

mp_status mp_config_get_int(const mp_config *cfg, int32_t key, int64_t *out)
{
    MP_REQUIRE_HANDLE(cfg, MP__KIND_CONFIG, NULL, "mp_config_get_int");
    MP_REQUIRE_PTR(out, (char *)cfg->err, "mp_config_get_int");
    const mp__key_info *k;
    MP_TRY(check_key((mp_config *)cfg, "mp_config_get_int", key, MP_CFG_TYPE_INT, &k));
    *out = mp__cfg_int(cfg, key);
    return MP_OK;
}

mp_status mp_config_get_float(const mp_config *cfg, int32_t key, double *out)
{
    MP_REQUIRE_HANDLE(cfg, MP__KIND_CONFIG, NULL, "mp_config_get_float");
    MP_REQUIRE_PTR(out, (char *)cfg->err, "mp_config_get_float");
    const mp__key_info *k;
    MP_TRY(check_key((mp_config *)cfg, "mp_config_get_float", key, MP_CFG_TYPE_FLOAT, &k));
    *out = mp__cfg_float(cfg, key);
    return MP_OK;
}

int32_t mp_config_is_set(const mp_config *cfg, int32_t key)
{
    if (mp__handle_error(cfg, MP__KIND_CONFIG, "cfg", "mp_config_is_set")) return 0;
    return find(cfg, key) ? 1 : 0;
}

const char *mp_config_key_name(int32_t key)
{
    const mp__key_info *k = mp__key_lookup(key);
    return k ? k->name : NULL;
}

int32_t mp_config_key_type(int32_t key)
{
    const mp__key_info *k = mp__key_lookup(key);
    return k ? k->type : 0;
}

mp_status mp_config_key_by_name(const char *name, int32_t *out_key)
{
    MP_REQUIRE_PTR(name, NULL, "mp_config_key_by_name");
    MP_REQUIRE_PTR(out_key, NULL, "mp_config_key_by_name");
    for (size_t t = 0; t < sizeof key_tables / sizeof key_tables[0]; t++)
        for (const mp__key_info *k = key_tables[t]; k->key != 0; k++)
            if (strcmp(k->name, name) == 0) {
                *out_key = k->key;
                return MP_OK;
            }
    return mp__fail(NULL, MP_ERR_NOT_FOUND, "mp_config_key_by_name: no key named '%s'", name);
}

const char *mp_config_error(const mp_config *cfg)
{
    const char *bad = mp__handle_error(cfg, MP__KIND_CONFIG, "cfg", "mp_config_error");
    return bad ? bad : cfg->err;
}

int64_t mp__cfg_int(const mp_config *cfg, int32_t key)
{
    const entry *e = cfg ? find(cfg, key) : NULL;
    if (e) return e->ival;
    const mp__key_info *k = mp__key_lookup(key);
    return k ? (int64_t)k->def : 0;
}

double mp__cfg_float(const mp_config *cfg, int32_t key)
{
    const entry *e = cfg ? find(cfg, key) : NULL;
    if (e) return e->fval;
    const mp__key_info *k = mp__key_lookup(key);
    return k ? k->def : 0.0;
}

size_t mp__cfg_count(const mp_config *cfg) { return cfg ? cfg->n : 0; }

void mp__cfg_entry(const mp_config *cfg, size_t i, int32_t *key, int64_t *ival, double *fval)
{
    *key = cfg->e[i].key;
    *ival = cfg->e[i].ival;
    *fval = cfg->e[i].fval;
}
