/* Episode samplers. An episode is a pure function of (seed, index): its
 * random stream is mp__rng_seed(seed, index), and the draw order below is
 * part of that contract. Const sampler functions never write the sampler,
 * so worker threads can sample concurrently; each task carries its own
 * scratch space, so reused tasks need no allocation. */
#include "data/data_impl.h"

#include <string.h>

#define KIND_CLASSES  1
#define KIND_SINUSOID 2

struct mp_sampler {
    uint32_t handle_kind; /* MP__KIND_SAMPLER (src/core/internal.h) */
    char err[MP_ERRMSG_LEN];
    int32_t kind;
    const mp_dataset *ds;     /* borrowed; NULL for sinusoids */
    int32_t ways, shots, queries, rotations;
    int32_t dim, side;        /* side: rotated plane is side x side */
    size_t planes;            /* dim / (side * side) with rotations */
    uint64_t seed, position;
};

void mp_sampler_destroy(mp_sampler *s)
{
    if (mp__handle_destroying(s, MP__KIND_SAMPLER, "s", "mp_sampler_destroy")) mp__free(s);
}

const char *mp_sampler_error(const mp_sampler *s)
{
    const char *bad = mp__handle_error(s, MP__KIND_SAMPLER, "s", "mp_sampler_error");
    return bad ? bad : s->err;
}

static void read_keys(mp_sampler *s, const mp_config *cfg)
{
    s->ways = (int32_t)mp__cfg_int(cfg, MP_CFG_DATA_WAYS);
    s->shots = (int32_t)mp__cfg_int(cfg, MP_CFG_DATA_SHOTS);
    s->queries = (int32_t)mp__cfg_int(cfg, MP_CFG_DATA_QUERIES);
    s->rotations = (int32_t)mp__cfg_int(cfg, MP_CFG_DATA_ROTATIONS);
    s->seed = (uint64_t)mp__cfg_int(cfg, MP_CFG_SEED);
}

static mp_status check_rotations(mp_sampler *s, const mp_dataset *ds)
{
    static const char fn[] = "mp_sampler_create";
    MP_REQUIRE(ds->ndims >= 2 && ds->shape[ds->ndims - 1] == ds->shape[ds->ndims - 2], NULL,
               MP_ERR_SHAPE_MISMATCH, "%s: rotations need square samples (last two dimensions equal), got %zu-D shape "
               "ending in %d (set one with mp_dataset_set_sample_shape)", fn, ds->ndims, (int)ds->shape[ds->ndims - 1]);
    s->side = ds->shape[ds->ndims - 1];
    s->planes = (size_t)ds->dim / ((size_t)s->side * (size_t)s->side);
    return MP_OK;
}

static mp_status check_classes(const mp_sampler *s, const mp_dataset *ds)
{
    static const char fn[] = "mp_sampler_create";
    MP_REQUIRE((size_t)s->ways <= ds->n_present, NULL, MP_ERR_RANGE,
               "%s: ways (N) is %d, but only %zu classes are available%s", fn, (int)s->ways, ds->n_present,
               s->rotations ? " (rotations add no classes: an episode holds N distinct base classes, each "
                              "at one rotation)" : "");
    size_t need = (size_t)s->shots + (size_t)s->queries;
    MP_REQUIRE(ds->n_present <= INT32_MAX / 4 && need * (size_t)s->ways <= INT32_MAX / 2, NULL, MP_ERR_RANGE,
               "%s: episodes of %d ways x %zu examples are too large", fn, (int)s->ways, need);
    for (size_t c = 0; c < ds->n_present; c++) {
        size_t have = ds->class_start[c + 1] - ds->class_start[c];
        MP_REQUIRE(have >= need, NULL, MP_ERR_RANGE,
                   "%s: class %d has %zu examples, fewer than shots + queries = %d + %d = %zu", fn,
                   (int)ds->class_ids[c], have, (int)s->shots, (int)s->queries, need);
    }
    return MP_OK;
}

mp_status mp_sampler_create(mp_sampler **out, const mp_dataset *ds, const mp_config *cfg)
{
    static const char fn[] = "mp_sampler_create";
    MP_REQUIRE_PTR(out, NULL, fn);
    MP_REQUIRE_HANDLE(ds, MP__KIND_DATASET, NULL, fn);
    MP_OPTIONAL_HANDLE(cfg, MP__KIND_CONFIG, NULL, fn);
    MP_REQUIRE(ds->labels, NULL, MP_ERR_STATE, "%s: ds is a regression dataset, expected class labels", fn);
    mp_sampler s = {.handle_kind = MP__KIND_SAMPLER, .kind = KIND_CLASSES, .ds = ds, .dim = ds->dim};
    read_keys(&s, cfg);
    if (s.rotations) MP_TRY(check_rotations(&s, ds));
    MP_TRY(check_classes(&s, ds));
    mp_sampler *p = mp__alloc(sizeof *p);
    MP_REQUIRE(p, NULL, MP_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    *p = s;
    *out = p;
    return MP_OK;
}

mp_status mp_sampler_create_sinusoid(mp_sampler **out, const mp_config *cfg)
{
    static const char fn[] = "mp_sampler_create_sinusoid";
    MP_REQUIRE_PTR(out, NULL, fn);
    MP_OPTIONAL_HANDLE(cfg, MP__KIND_CONFIG, NULL, fn);
    mp_sampler s = {.handle_kind = MP__KIND_SAMPLER, .kind = KIND_SINUSOID, .dim = 1};
    read_keys(&s, cfg);
    s.ways = 0;
    s.rotations = 0;
    mp_sampler *p = mp__alloc(sizeof *p);
    MP_REQUIRE(p, NULL, MP_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    *p = s;
    *out = p;
    return MP_OK;
}

/* ---- classification episodes -------------------------------------------------------------- */
/* Scratch layout inside the task: chosen[N] | picks[K+Q] | slots[N*(K+Q)]
 * | codes[N*(K+Q)]. */
static size_t scratch_len(const mp_sampler *s)
{
    size_t per = (size_t)s->shots + (size_t)s->queries, n = (size_t)s->ways;
    return n + per + 2 * n * per;
}

static int contains(const int32_t *a, size_t n, int32_t v)
{
    for (size_t i = 0; i < n; i++)
        if (a[i] == v) return 1;
    return 0;
}

/* k distinct values of [0, m) into out, uniformly over subsets, in no
 * particular order. Floyd's algorithm costs O(k^2) without memory; when k^2
 * would exceed m, selection sampling (one pass over m) is cheaper. */
static void sample_subset(mp__rng *r, size_t m, size_t k, int32_t *out)
{
    if (k * k <= m) {
        for (size_t j = m - k, n = 0; j < m; j++, n++) {
            int32_t t = (int32_t)mp__rng_below(r, j + 1);
            out[n] = contains(out, n, t) ? (int32_t)j : t;
        }
        return;
    }
    size_t n = 0;
    for (size_t i = 0; i < m && n < k; i++)
        if (mp__rng_below(r, m - i) < k - n) out[n++] = (int32_t)i;
}

/* Copies one example into dst, rotated by rot quarter turns (counter-
 * clockwise) in every side x side plane. */
static void copy_rotated(const mp_sampler *s, const float *src, float *dst, int rot)
{
    if (rot == 0) {
        memcpy(dst, src, (size_t)s->dim * sizeof *dst);
        return;
    }
    size_t n = (size_t)s->side, plane = n * n;
    for (size_t p = 0; p < s->planes; p++, src += plane, dst += plane)
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < n; j++) {
                size_t si = rot == 1 ? j : rot == 2 ? n - 1 - i : n - 1 - j;
                size_t sj = rot == 1 ? n - 1 - i : rot == 2 ? n - 1 - j : i;
                dst[i * n + j] = src[si * n + sj];
            }
}

/* Draw order: N distinct base classes (Floyd/selection), the label
 * permutation, with rotations one quarter-turn count per label (in label
 * order; MAML's convention: two rotations of one class never share an
 * episode, so no drawing can appear under two labels), then per episode
 * label l the K+Q examples of its class and their shuffle, then the shuffle
 * of support slots and of query slots. */
static void fill_classes(const mp_sampler *s, uint64_t index, mp_task *t)
{
    const mp_dataset *ds = s->ds;
    size_t n = (size_t)s->ways, k = (size_t)s->shots, q = (size_t)s->queries, per = k + q;
    int32_t *chosen = t->scratch, *picks = chosen + n, *slots = picks + per;
    mp__rng r;
    mp__rng_seed(&r, s->seed, index);
    sample_subset(&r, ds->n_present, n, chosen);
    mp__rng_shuffle_i32(&r, chosen, n); /* position in chosen = episode label */
    if (s->rotations) /* chosen[l] = 4 * base class + quarter turns */
        for (size_t l = 0; l < n; l++) chosen[l] = 4 * chosen[l] + (int32_t)mp__rng_below(&r, 4);
    /* slots[l*per + j] = example index; picks' first k go to support. */
    for (size_t l = 0; l < n; l++) {
        size_t c = (size_t)chosen[l] / (s->rotations ? 4u : 1u);
        size_t base = ds->class_start[c], m = ds->class_start[c + 1] - base;
        sample_subset(&r, m, per, picks);
        mp__rng_shuffle_i32(&r, picks, per);
        for (size_t j = 0; j < per; j++) slots[l * per + j] = ds->members[base + (size_t)picks[j]];
    }
    /* Row order: the codes l*per + j of the support rows and of the query
     * rows, each list shuffled. */
    size_t ns = n * k, nq = n * q;
    int32_t *codes = slots + n * per; /* ns + nq codes */
    for (size_t i = 0; i < ns; i++) codes[i] = (int32_t)((i / k) * per + i % k);
    for (size_t i = 0; i < nq; i++) codes[ns + i] = (int32_t)((i / q) * per + k + i % q);
    mp__rng_shuffle_i32(&r, codes, ns);
    mp__rng_shuffle_i32(&r, codes + ns, nq);
    for (size_t i = 0; i < ns + nq; i++) {
        size_t code = (size_t)codes[i], l = code / per;
        int rot = s->rotations ? chosen[l] % 4 : 0;
        const float *src = ds->x + (size_t)slots[code] * (size_t)s->dim;
        float *dst = i < ns ? t->sx + i * (size_t)s->dim : t->qx + (i - ns) * (size_t)s->dim;
        copy_rotated(s, src, dst, rot);
        if (i < ns) t->sl[i] = (int32_t)l; else t->ql[i - ns] = (int32_t)l;
    }
}

/* ---- episodes ------------------------------------------------------------------------------ */
static mp_status shape_task(const mp_sampler *s, mp_task *t)
{
    static const char fn[] = "mp_sampler_episode_into";
    if (s->kind == KIND_SINUSOID)
        return mp__task_reshape(t, fn, 1, 0, 1, (size_t)s->shots, (size_t)s->queries, 0);
    return mp__task_reshape(t, fn, s->dim, s->ways, 0, (size_t)s->ways * (size_t)s->shots,
                            (size_t)s->ways * (size_t)s->queries, scratch_len(s));
}

static void fill(const mp_sampler *s, uint64_t index, mp_task *t)
{
    if (s->kind == KIND_SINUSOID) mp__task_fill_sinusoid(t, s->seed, index);
    else fill_classes(s, index, t);
}

mp_status mp_sampler_episode(const mp_sampler *s, uint64_t index, mp_task **out)
{
    static const char fn[] = "mp_sampler_episode";
    MP_REQUIRE_HANDLE(s, MP__KIND_SAMPLER, NULL, fn);
    MP_REQUIRE_PTR(out, NULL, fn);
    mp_task *t;
    mp_status st = s->kind == KIND_SINUSOID
                       ? mp__task_alloc(&t, fn, 1, 0, 1, (size_t)s->shots, (size_t)s->queries, 0)
                       : mp__task_alloc(&t, fn, s->dim, s->ways, 0, (size_t)s->ways * (size_t)s->shots,
                                        (size_t)s->ways * (size_t)s->queries, scratch_len(s));
    if (st != MP_OK) return st;
    fill(s, index, t);
    *out = t;
    return MP_OK;
}

mp_status mp_sampler_episode_into(const mp_sampler *s, uint64_t index, mp_task *task)
{
    static const char fn[] = "mp_sampler_episode_into";
    MP_REQUIRE_HANDLE(s, MP__KIND_SAMPLER, NULL, fn);
    MP_REQUIRE_HANDLE(task, MP__KIND_TASK, NULL, fn);
    MP_TRY(shape_task(s, task));
    fill(s, index, task);
    return MP_OK;
}

mp_status mp_sampler_next(mp_sampler *s, mp_task **out)
{
    MP_REQUIRE_HANDLE(s, MP__KIND_SAMPLER, NULL, "mp_sampler_next");
    MP_REQUIRE_PTR(out, s->err, "mp_sampler_next");
    MP_REQUIRE(s->position != UINT64_MAX, s->err, MP_ERR_RANGE,
               "mp_sampler_next: the position is 2^64 - 1, the last one, and cannot advance: set a smaller one");
    mp_status st = mp_sampler_episode(s, s->position, out);
    if (st != MP_OK) return mp__fail_propagate(s->err, st);
    s->position++;
    return MP_OK;
}

mp_status mp_sampler_get_position(const mp_sampler *s, uint64_t *out)
{
    MP_REQUIRE_HANDLE(s, MP__KIND_SAMPLER, NULL, "mp_sampler_get_position");
    MP_REQUIRE_PTR(out, NULL, "mp_sampler_get_position");
    *out = s->position;
    return MP_OK;
}

mp_status mp_sampler_set_position(mp_sampler *s, uint64_t position)
{
    MP_REQUIRE_HANDLE(s, MP__KIND_SAMPLER, NULL, "mp_sampler_set_position");
    s->position = position;
    return MP_OK;
}

void mp__sampler_identity(const mp_sampler *s, uint64_t id[MP__SAMPLER_ID_COUNT])
{
    id[MP__SAMPLER_ID_KIND] = (uint64_t)s->kind;
    id[MP__SAMPLER_ID_SEED] = s->seed;
    id[MP__SAMPLER_ID_WAYS] = (uint64_t)s->ways;
    id[MP__SAMPLER_ID_SHOTS] = (uint64_t)s->shots;
    id[MP__SAMPLER_ID_QUERIES] = (uint64_t)s->queries;
    id[MP__SAMPLER_ID_ROTATIONS] = (uint64_t)s->rotations;
    id[MP__SAMPLER_ID_DIM] = (uint64_t)s->dim;
    id[MP__SAMPLER_ID_CLASSES] = s->ds ? (uint64_t)s->ds->n_present : 0;
    id[MP__SAMPLER_ID_EXAMPLES] = s->ds ? (uint64_t)s->ds->n : 0;
}

mp_status mp_sampler_info(const mp_sampler *s, int32_t *ways, int32_t *shots, int32_t *queries, int32_t *dim)
{
    MP_REQUIRE_HANDLE(s, MP__KIND_SAMPLER, NULL, "mp_sampler_info");
    if (ways) *ways = s->ways;
    if (shots) *shots = s->shots;
    if (queries) *queries = s->queries;
    if (dim) *dim = s->dim;
    return MP_OK;
}
