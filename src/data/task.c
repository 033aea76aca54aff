/* Tasks: a support and a query set in one allocation, created from caller
 * arrays, by the samplers, or as sinusoid regression tasks. */
#include "data/data_impl.h"

#include <math.h>
#include <string.h>

/* Element counts of each array of a task shape, in carving order. */
typedef struct { size_t sx, qx, sl, ql, st, qt, scratch, bytes; } task_layout;

static int layout(task_layout *l, int32_t dim, int32_t n_way, int32_t target_dim, size_t ns, size_t nq,
                  size_t scratch)
{
    size_t td = target_dim > 0 ? (size_t)target_dim : 0;
    if (mp__mul_size(ns, (size_t)dim, &l->sx) || mp__mul_size(nq, (size_t)dim, &l->qx) ||
        mp__mul_size(ns, td, &l->st) || mp__mul_size(nq, td, &l->qt))
        return -1;
    l->sl = n_way > 0 ? ns : 0;
    l->ql = n_way > 0 ? nq : 0;
    l->scratch = scratch;
    /* Every array holds 4-byte elements; the sum of counts is bounded by
     * checking each addition. */
    size_t parts[7] = {l->sx, l->qx, l->sl, l->ql, l->st, l->qt, l->scratch}, total = 0;
    for (int i = 0; i < 7; i++) {
        if (parts[i] > SIZE_MAX / 4 - total) return -1;
        total += parts[i];
    }
    l->bytes = total * 4;
    return 0;
}

static void carve(mp_task *t, const task_layout *l, void *block)
{
    char *p = block;
    t->sx = (float *)p; p += l->sx * 4;
    t->qx = (float *)p; p += l->qx * 4;
    t->sl = l->sl ? (int32_t *)p : NULL; p += l->sl * 4;
    t->ql = l->ql ? (int32_t *)p : NULL; p += l->ql * 4;
    t->st = l->st ? (float *)p : NULL; p += l->st * 4;
    t->qt = l->qt ? (float *)p : NULL; p += l->qt * 4;
    t->scratch = l->scratch ? (int32_t *)p : NULL;
}

static void set_shape(mp_task *t, int32_t dim, int32_t n_way, int32_t target_dim, size_t ns, size_t nq,
                      size_t scratch)
{
    t->dim = dim;
    t->n_way = n_way > 0 ? n_way : 0;
    t->target_dim = target_dim > 0 ? target_dim : 0;
    t->n_support = ns;
    t->n_query = nq;
    t->scratch_len = scratch;
    t->is_sinusoid = 0;
    t->amplitude = t->phase = 0;
}

mp_status mp__task_alloc(mp_task **out, const char *fn, int32_t dim, int32_t n_way, int32_t target_dim, size_t ns, size_t nq,
                         size_t scratch_len)
{
    task_layout l;
    MP_REQUIRE(layout(&l, dim, n_way, target_dim, ns, nq, scratch_len) == 0, NULL, MP_ERR_INVALID_ARGUMENT,
               "%s: task of %zu + %zu rows of %d values overflows", fn, ns, nq, (int)dim);
    mp_task *t = mp__calloc(1, sizeof *t);
    void *block = t ? mp__alloc(l.bytes ? l.bytes : 4) : NULL;
    if (!block) {
        mp__free(t);
        return mp__fail(NULL, MP_ERR_OUT_OF_MEMORY, "%s: out of memory for a task of %zu bytes", fn, l.bytes);
    }
    t->handle_kind = MP__KIND_TASK;
    t->block = block;
    carve(t, &l, block);
    set_shape(t, dim, n_way, target_dim, ns, nq, scratch_len);
    *out = t;
    return MP_OK;
}

mp_status mp__task_reshape(mp_task *t, const char *fn, int32_t dim, int32_t n_way, int32_t target_dim, size_t ns, size_t nq,
                           size_t scratch_len)
{
    int same = t->dim == dim && t->n_way == (n_way > 0 ? n_way : 0) &&
               t->target_dim == (target_dim > 0 ? target_dim : 0) && t->n_support == ns && t->n_query == nq &&
               t->scratch_len >= scratch_len && (n_way > 0) == (t->sl != NULL);
    if (same) {
        t->is_sinusoid = 0;
        return MP_OK;
    }
    task_layout l;
    MP_REQUIRE(layout(&l, dim, n_way, target_dim, ns, nq, scratch_len) == 0, t->err, MP_ERR_INVALID_ARGUMENT,
               "%s: task of %zu + %zu rows of %d values overflows", fn, ns, nq, (int)dim);
    void *block = mp__alloc(l.bytes ? l.bytes : 4);
    MP_REQUIRE(block, t->err, MP_ERR_OUT_OF_MEMORY, "%s: out of memory for a task of %zu bytes", fn, l.bytes);
    mp__free(t->block);
    t->block = block;
    carve(t, &l, block);
    set_shape(t, dim, n_way, target_dim, ns, nq, scratch_len);
    return MP_OK;
}

void mp_task_destroy(mp_task *task)
{
    if (!mp__handle_destroying(task, MP__KIND_TASK, "task", "mp_task_destroy")) return;
    mp__free(task->block);
    mp__free(task);
}

const char *mp_task_error(const mp_task *task)
{
    const char *bad = mp__handle_error(task, MP__KIND_TASK, "task", "mp_task_error");
    return bad ? bad : task->err;
}

void mp__task_get_view(const mp_task *t, mp__task_view *v)
{
    v->dim = t->dim;
    v->n_way = t->n_way;
    v->target_dim = t->target_dim;
    v->n_support = t->n_support;
    v->n_query = t->n_query;
    v->support_x = t->sx;
    v->query_x = t->qx;
    v->support_labels = t->sl;
    v->query_labels = t->ql;
    v->support_targets = t->st;
    v->query_targets = t->qt;
}

/* ---- creation from arrays ---------------------------------------------------------- */
static mp_status check_rows(const float *v, size_t n, const char *fn, const char *what)
{
    for (size_t i = 0; i < n; i++)
        MP_REQUIRE(isfinite(v[i]), NULL, MP_ERR_NOT_FINITE, "%s: %s[%zu] is %g, expected a finite value", fn, what, i,
                   (double)v[i]);
    return MP_OK;
}

static mp_status check_labels(const int32_t *l, size_t n, int32_t n_way, const char *fn, const char *what)
{
    for (size_t i = 0; i < n; i++)
        MP_REQUIRE(l[i] >= 0 && l[i] < n_way, NULL, MP_ERR_RANGE, "%s: %s[%zu] is %d, expected [0, %d)", fn, what, i,
                   (int)l[i], (int)n_way);
    return MP_OK;
}

mp_status mp_task_create_classification(mp_task **out, int32_t dim, int32_t n_way, const float *support_x,
                                        const int32_t *support_labels, size_t n_support, const float *query_x,
                                        const int32_t *query_labels, size_t n_query)
{
    static const char fn[] = "mp_task_create_classification";
    MP_REQUIRE_PTR(out, NULL, fn);
    MP_REQUIRE_PTR(support_x, NULL, fn);
    MP_REQUIRE_PTR(support_labels, NULL, fn);
    MP_REQUIRE_PTR(query_x, NULL, fn);
    MP_REQUIRE_PTR(query_labels, NULL, fn);
    MP_REQUIRE(dim >= 1, NULL, MP_ERR_INVALID_ARGUMENT, "%s: dim is %d, expected >= 1", fn, (int)dim);
    MP_REQUIRE(n_way >= 1, NULL, MP_ERR_INVALID_ARGUMENT, "%s: n_way is %d, expected >= 1", fn, (int)n_way);
    MP_REQUIRE(n_support > 0, NULL, MP_ERR_INVALID_ARGUMENT, "%s: n_support is 0, expected >= 1", fn);
    MP_REQUIRE(n_query > 0, NULL, MP_ERR_INVALID_ARGUMENT, "%s: n_query is 0, expected >= 1", fn);
    mp_task *t;
    MP_TRY(mp__task_alloc(&t, fn, dim, n_way, 0, n_support, n_query, 0));
    mp_status st = check_rows(support_x, t->n_support * (size_t)dim, fn, "support_x");
    if (st == MP_OK) st = check_rows(query_x, n_query * (size_t)dim, fn, "query_x");
    if (st == MP_OK) st = check_labels(support_labels, n_support, n_way, fn, "support_labels");
    if (st == MP_OK) st = check_labels(query_labels, n_query, n_way, fn, "query_labels");
    if (st != MP_OK) {
        mp_task_destroy(t);
        return st;
    }
    memcpy(t->sx, support_x, n_support * (size_t)dim * sizeof(float));
    memcpy(t->qx, query_x, n_query * (size_t)dim * sizeof(float));
    memcpy(t->sl, support_labels, n_support * sizeof(int32_t));
    memcpy(t->ql, query_labels, n_query * sizeof(int32_t));
    *out = t;
    return MP_OK;
}

mp_status mp_task_create_regression(mp_task **out, int32_t dim, int32_t target_dim, const float *sx,
                                    const float *st, size_t ns, const float *qx, const float *qt, size_t nq)
{
    static const char fn[] = "mp_task_create_regression";
    MP_REQUIRE_PTR(out, NULL, fn);
    MP_REQUIRE_PTR(sx, NULL, fn);
    MP_REQUIRE_PTR(st, NULL, fn);
    MP_REQUIRE_PTR(qx, NULL, fn);
    MP_REQUIRE_PTR(qt, NULL, fn);
    MP_REQUIRE(dim >= 1, NULL, MP_ERR_INVALID_ARGUMENT, "%s: dim is %d, expected >= 1", fn, (int)dim);
    MP_REQUIRE(target_dim >= 1, NULL, MP_ERR_INVALID_ARGUMENT, "%s: target_dim is %d, expected >= 1", fn,
               (int)target_dim);
    MP_REQUIRE(ns > 0, NULL, MP_ERR_INVALID_ARGUMENT, "%s: ns is 0, expected >= 1", fn);
    MP_REQUIRE(nq > 0, NULL, MP_ERR_INVALID_ARGUMENT, "%s: nq is 0, expected >= 1", fn);
    mp_task *t;
    MP_TRY(mp__task_alloc(&t, fn, dim, 0, target_dim, ns, nq, 0));
    size_t d = (size_t)dim, td = (size_t)target_dim;
    mp_status s = check_rows(sx, ns * d, fn, "sx");
    if (s == MP_OK) s = check_rows(qx, nq * d, fn, "qx");
    if (s == MP_OK) s = check_rows(st, ns * td, fn, "st");
    if (s == MP_OK) s = check_rows(qt, nq * td, fn, "qt");
    if (s != MP_OK) {
        mp_task_destroy(t);
        return s;
    }
    memcpy(t->sx, sx, ns * d * sizeof(float));
    memcpy(t->qx, qx, nq * d * sizeof(float));
    memcpy(t->st, st, ns * td * sizeof(float));
    memcpy(t->qt, qt, nq * td * sizeof(float));
    *out = t;
    return MP_OK;
}

/* ---- accessors ------------------------------------------------------------------------ */
mp_status mp_task_sizes(const mp_task *task, size_t *n_support, size_t *n_query, int32_t *dim, int32_t *n_way,
                        int32_t *target_dim)
{
    MP_REQUIRE_HANDLE(task, MP__KIND_TASK, NULL, "mp_task_sizes");
    if (n_support) *n_support = task->n_support;
    if (n_query) *n_query = task->n_query;
    if (dim) *dim = task->dim;
    if (n_way) *n_way = task->n_way;
    if (target_dim) *target_dim = task->target_dim;
    return MP_OK;
}

/* Shared body of get_support/get_query: every check before any write. */
static mp_status copy_set(const mp_task *t, const char *fn, size_t n, const float *sx, const int32_t *sl,
                          const float *st, float *x, size_t x_len, int32_t *labels, size_t labels_len,
                          float *targets, size_t targets_len)
{
    size_t nx = n * (size_t)t->dim, nt = n * (size_t)t->target_dim;
    MP_REQUIRE(!labels || sl, NULL, MP_ERR_STATE, "%s: labels requested from a regression task", fn);
    MP_REQUIRE(!targets || st, NULL, MP_ERR_STATE, "%s: targets requested from a classification task", fn);
    MP_REQUIRE(!x || x_len >= nx, NULL, MP_ERR_BUFFER_TOO_SMALL, "%s: 'x' has room for x_len = %zu floats, %zu needed", fn,
               x_len, nx);
    MP_REQUIRE(!labels || labels_len >= n, NULL, MP_ERR_BUFFER_TOO_SMALL, "%s: 'labels' has room for labels_len = %zu labels, %zu needed",
               fn, labels_len, n);
    MP_REQUIRE(!targets || targets_len >= nt, NULL, MP_ERR_BUFFER_TOO_SMALL,
               "%s: 'targets' has room for targets_len = %zu floats, %zu needed", fn, targets_len, nt);
    if (x) memcpy(x, sx, nx * sizeof *x);
    if (labels) memcpy(labels, sl, n * sizeof *labels);
    if (targets) memcpy(targets, st, nt * sizeof *targets);
    return MP_OK;
}

mp_status mp_task_get_support(const mp_task *task, float *x, size_t x_len, int32_t *labels, size_t labels_len,
                              float *targets, size_t targets_len)
{
    MP_REQUIRE_HANDLE(task, MP__KIND_TASK, NULL, "mp_task_get_support");
    return copy_set(task, "mp_task_get_support", task->n_support, task->sx, task->sl, task->st, x, x_len, labels,
                    labels_len, targets, targets_len);
}

mp_status mp_task_get_query(const mp_task *task, float *x, size_t x_len, int32_t *labels, size_t labels_len,
                            float *targets, size_t targets_len)
{
    MP_REQUIRE_HANDLE(task, MP__KIND_TASK, NULL, "mp_task_get_query");
    return copy_set(task, "mp_task_get_query", task->n_query, task->qx, task->ql, task->qt, x, x_len, labels,
                    labels_len, targets, targets_len);
}

/* ---- sinusoid family ---------------------------------------------------------------------- */
/* Draw order (part of the determinism contract): amplitude, phase, then the
 * support inputs, then the query inputs. */
void mp__task_fill_sinusoid(mp_task *t, uint64_t seed, uint64_t index)
{
    mp__rng r;
    mp__rng_seed(&r, seed, index);
    double a = 0.1 + 4.9 * mp__rng_uniform(&r);
    double p = 3.14159265358979323846 * mp__rng_uniform(&r);
    for (size_t i = 0; i < t->n_support + t->n_query; i++) {
        float *x = i < t->n_support ? t->sx + i : t->qx + (i - t->n_support);
        float *y = i < t->n_support ? t->st + i : t->qt + (i - t->n_support);
        *x = (float)(-5.0 + 10.0 * mp__rng_uniform(&r));
        *y = (float)(a * sin((double)*x - p));
    }
    t->is_sinusoid = 1;
    t->amplitude = a;
    t->phase = p;
}

mp_status mp_task_sinusoid(mp_task **out, uint64_t seed, uint64_t index, int32_t k_support, int32_t k_query)
{
    static const char fn[] = "mp_task_sinusoid";
    MP_REQUIRE_PTR(out, NULL, fn);
    MP_REQUIRE(k_support >= 1, NULL, MP_ERR_INVALID_ARGUMENT, "%s: k_support is %d, expected >= 1", fn,
               (int)k_support);
    MP_REQUIRE(k_query >= 1, NULL, MP_ERR_INVALID_ARGUMENT, "%s: k_query is %d, expected >= 1", fn, (int)k_query);
    mp_task *t;
    MP_TRY(mp__task_alloc(&t, fn, 1, 0, 1, (size_t)k_support, (size_t)k_query, 0));
    mp__task_fill_sinusoid(t, seed, index);
    *out = t;
    return MP_OK;
}

mp_status mp_task_sinusoid_params(const mp_task *task, double *amplitude, double *phase)
{
    MP_REQUIRE_HANDLE(task, MP__KIND_TASK, NULL, "mp_task_sinusoid_params");
    MP_REQUIRE(task->is_sinusoid, NULL, MP_ERR_STATE, "mp_task_sinusoid_params: the task is not a sinusoid task");
    if (amplitude) *amplitude = task->amplitude;
    if (phase) *phase = task->phase;
    return MP_OK;
}
