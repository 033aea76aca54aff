/* Datasets: construction from arrays, the per-class index, accessors and
 * class selection. Loaders live in idx.c and csv.c. */
#include "data/data_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void mp_dataset_destroy(mp_dataset *ds)
{
    if (!mp__handle_destroying(ds, MP__KIND_DATASET, "ds", "mp_dataset_destroy")) return;
    mp__free(ds->x);
    mp__free(ds->labels);
    mp__free(ds->targets);
    mp__free(ds->class_ids);
    mp__free(ds->class_start);
    mp__free(ds->members);
    mp__free(ds);
}

const char *mp_dataset_error(const mp_dataset *ds)
{
    const char *bad = mp__handle_error(ds, MP__KIND_DATASET, "ds", "mp_dataset_error");
    return bad ? bad : ds->err;
}

/* ---- class index -------------------------------------------------------------- */
typedef struct { int32_t label, idx; } label_pair;

static int cmp_pair(const void *a, const void *b)
{
    const label_pair *p = a, *q = b;
    if (p->label != q->label) return p->label < q->label ? -1 : 1;
    return (p->idx > q->idx) - (p->idx < q->idx);
}

/* Sorting (label, index) pairs groups the examples by class while keeping
 * file order inside a class, whatever the label values. */
static mp_status build_class_index(mp_dataset *ds, const char *fn)
{
    label_pair *pairs = mp__calloc(ds->n, sizeof *pairs);
    ds->members = mp__calloc(ds->n, sizeof *ds->members);
    if (!pairs || !ds->members) {
        mp__free(pairs);
        return mp__fail(NULL, MP_ERR_OUT_OF_MEMORY, "%s: out of memory for the class index of %zu examples", fn, ds->n);
    }
    for (size_t i = 0; i < ds->n; i++) pairs[i] = (label_pair){ds->labels[i], (int32_t)i};
    qsort(pairs, ds->n, sizeof *pairs, cmp_pair);
    size_t present = 0;
    for (size_t i = 0; i < ds->n; i++)
        if (i == 0 || pairs[i].label != pairs[i - 1].label) present++;
    ds->class_ids = mp__calloc(present, sizeof *ds->class_ids);
    ds->class_start = mp__calloc(present + 1, sizeof *ds->class_start);
    if (!ds->class_ids || !ds->class_start) {
        mp__free(pairs);
        return mp__fail(NULL, MP_ERR_OUT_OF_MEMORY, "%s: out of memory for the class index", fn);
    }
    size_t c = 0;
    for (size_t i = 0; i < ds->n; i++) {
        if (i == 0 || pairs[i].label != pairs[i - 1].label) {
            ds->class_ids[c] = pairs[i].label;
            ds->class_start[c++] = i;
        }
        ds->members[i] = pairs[i].idx;
    }
    ds->class_start[present] = ds->n;
    ds->n_present = present;
    ds->num_classes = pairs[ds->n - 1].label + 1;
    mp__free(pairs);
    return MP_OK;
}

static mp_status check_finite(const float *v, size_t n, const char *fn, const char *what)
{
    for (size_t i = 0; i < n; i++)
        MP_REQUIRE(isfinite(v[i]), NULL, MP_ERR_NOT_FINITE, "%s: %s[%zu] is %g, expected a finite value",
                   fn, what, i, (double)v[i]);
    return MP_OK;
}

static mp_status validate_contents(const float *x, size_t n, int32_t dim, const int32_t *labels,
                                   const float *targets, int32_t target_dim, const char *fn)
{
    MP_TRY(check_finite(x, n * (size_t)dim, fn, "x"));
    if (targets) return check_finite(targets, n * (size_t)target_dim, fn, "targets");
    for (size_t i = 0; i < n; i++)
        MP_REQUIRE(labels[i] >= 0 && labels[i] < INT32_MAX, NULL, MP_ERR_RANGE,
                   "%s: labels[%zu] is %d, expected a class label in [0, %d)", fn, i, (int)labels[i],
                   (int)INT32_MAX);
    return MP_OK;
}

mp_status mp__dataset_adopt(mp_dataset **out, const char *fn, float *x, size_t n, int32_t dim,
                            int32_t *labels, float *targets, int32_t target_dim, int trusted)
{
    mp_status st = trusted ? MP_OK : validate_contents(x, n, dim, labels, targets, target_dim, fn);
    mp_dataset *ds = st == MP_OK ? mp__calloc(1, sizeof *ds) : NULL;
    if (st == MP_OK && !ds) st = mp__fail(NULL, MP_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    if (st != MP_OK) {
        mp__free(x);
        mp__free(labels);
        mp__free(targets);
        return st;
    }
    ds->handle_kind = MP__KIND_DATASET;
    ds->n = n;
    ds->dim = dim;
    ds->x = x;
    ds->labels = labels;
    ds->targets = targets;
    ds->target_dim = targets ? target_dim : 0;
    ds->ndims = 1;
    ds->shape[0] = dim;
    if (labels && (st = build_class_index(ds, fn)) != MP_OK) {
        mp_dataset_destroy(ds);
        return st;
    }
    *out = ds;
    return MP_OK;
}

static void *dup_array(const void *src, size_t n, size_t size)
{
    void *p = mp__calloc(n, size);
    if (p) memcpy(p, src, n * size);
    return p;
}

mp_status mp_dataset_from_arrays(mp_dataset **out, const float *x, size_t n, int32_t dim,
                                 const int32_t *labels, const float *targets, int32_t target_dim)
{
    static const char fn[] = "mp_dataset_from_arrays";
    MP_REQUIRE_PTR(out, NULL, fn);
    MP_REQUIRE_PTR(x, NULL, fn);
    MP_REQUIRE(labels || targets, NULL, MP_ERR_NULL_POINTER,
               "%s: arguments 'labels' and 'targets' are both NULL, expected exactly one", fn);
    MP_REQUIRE(!(labels && targets), NULL, MP_ERR_INVALID_ARGUMENT,
               "%s: both 'labels' and 'targets' given, expected exactly one", fn);
    MP_REQUIRE(n > 0, NULL, MP_ERR_INVALID_ARGUMENT, "%s: n is 0, expected at least 1 example", fn);
    MP_REQUIRE(n <= INT32_MAX, NULL, MP_ERR_INVALID_ARGUMENT, "%s: n is %zu, expected at most %d", fn, n,
               (int)INT32_MAX);
    MP_REQUIRE(dim >= 1, NULL, MP_ERR_INVALID_ARGUMENT, "%s: dim is %d, expected >= 1", fn, (int)dim);
    MP_REQUIRE(!targets || target_dim >= 1, NULL, MP_ERR_INVALID_ARGUMENT,
               "%s: target_dim is %d, expected >= 1 for a regression dataset", fn, (int)target_dim);
    size_t nx, nt = 0;
    MP_REQUIRE(mp__mul_size(n, (size_t)dim, &nx) == 0 && (!targets || mp__mul_size(n, (size_t)target_dim, &nt) == 0),
               NULL, MP_ERR_INVALID_ARGUMENT, "%s: n=%zu x dim=%d overflows", fn, n, (int)dim);
    float *xc = dup_array(x, nx, sizeof *xc);
    int32_t *lc = labels ? dup_array(labels, n, sizeof *lc) : NULL;
    float *tc = targets ? dup_array(targets, nt, sizeof *tc) : NULL;
    if (!xc || (labels && !lc) || (targets && !tc)) {
        mp__free(xc);
        mp__free(lc);
        mp__free(tc);
        return mp__fail(NULL, MP_ERR_OUT_OF_MEMORY, "%s: out of memory copying %zu examples", fn, n);
    }
    return mp__dataset_adopt(out, fn, xc, n, dim, lc, tc, target_dim, 0);
}

/* ---- accessors ------------------------------------------------------------------ */
mp_status mp_dataset_size(const mp_dataset *ds, size_t *out)
{
    MP_REQUIRE_HANDLE(ds, MP__KIND_DATASET, NULL, "mp_dataset_size");
    MP_REQUIRE_PTR(out, NULL, "mp_dataset_size");
    *out = ds->n;
    return MP_OK;
}

mp_status mp_dataset_dim(const mp_dataset *ds, int32_t *out)
{
    MP_REQUIRE_HANDLE(ds, MP__KIND_DATASET, NULL, "mp_dataset_dim");
    MP_REQUIRE_PTR(out, NULL, "mp_dataset_dim");
    *out = ds->dim;
    return MP_OK;
}

mp_status mp_dataset_target_dim(const mp_dataset *ds, int32_t *out)
{
    MP_REQUIRE_HANDLE(ds, MP__KIND_DATASET, NULL, "mp_dataset_target_dim");
    MP_REQUIRE_PTR(out, NULL, "mp_dataset_target_dim");
    *out = ds->target_dim;
    return MP_OK;
}

/* Const accessors write only the thread-local message: datasets are shared
 * read-only between threads. */
mp_status mp_dataset_num_classes(const mp_dataset *ds, int32_t *out)
{
    MP_REQUIRE_HANDLE(ds, MP__KIND_DATASET, NULL, "mp_dataset_num_classes");
    MP_REQUIRE_PTR(out, NULL, "mp_dataset_num_classes");
    MP_REQUIRE(ds->labels, NULL, MP_ERR_STATE, "mp_dataset_num_classes: a regression dataset has no classes");
    *out = ds->num_classes;
    return MP_OK;
}

/* Position of cls in class_ids, or -1. */
static ptrdiff_t find_class(const mp_dataset *ds, int32_t cls)
{
    size_t lo = 0, hi = ds->n_present;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ds->class_ids[mid] < cls) lo = mid + 1; else hi = mid;
    }
    return lo < ds->n_present && ds->class_ids[lo] == cls ? (ptrdiff_t)lo : -1;
}

/* The members of class cls: ds->members[*start .. *start + *n) (n = 0 for
 * a class without examples), after the checks both class queries share. */
static mp_status class_span(const mp_dataset *ds, int32_t cls, const char *fn, size_t *start, size_t *n)
{
    MP_REQUIRE(ds->labels, NULL, MP_ERR_STATE, "%s: a regression dataset has no classes", fn);
    MP_REQUIRE(cls >= 0 && cls < ds->num_classes, NULL, MP_ERR_RANGE, "%s: cls is %d, expected [0, %d)", fn,
               (int)cls, (int)ds->num_classes);
    ptrdiff_t c = find_class(ds, cls);
    *start = c < 0 ? 0 : ds->class_start[c];
    *n = c < 0 ? 0 : ds->class_start[c + 1] - *start;
    return MP_OK;
}

mp_status mp_dataset_class_size(const mp_dataset *ds, int32_t cls, size_t *out)
{
    static const char fn[] = "mp_dataset_class_size";
    MP_REQUIRE_HANDLE(ds, MP__KIND_DATASET, NULL, fn);
    MP_REQUIRE_PTR(out, NULL, fn);
    size_t start;
    return class_span(ds, cls, fn, &start, out);
}

mp_status mp_dataset_class_indices(const mp_dataset *ds, int32_t cls, size_t *indices, size_t cap, size_t *count)
{
    static const char fn[] = "mp_dataset_class_indices";
    MP_REQUIRE_HANDLE(ds, MP__KIND_DATASET, NULL, fn);
    MP_REQUIRE_PTR(count, NULL, fn);
    MP_REQUIRE(indices || cap == 0, NULL, MP_ERR_NULL_POINTER, "%s: argument 'indices' is NULL with cap %zu", fn,
               cap);
    size_t start, n;
    MP_TRY(class_span(ds, cls, fn, &start, &n));
    *count = n;
    if (cap == 0 && !indices) return MP_OK;
    MP_REQUIRE(cap >= n, NULL, MP_ERR_BUFFER_TOO_SMALL, "%s: 'indices' has room for cap = %zu indices, %zu needed for class %d", fn,
               cap, n, (int)cls);
    /* members are grouped by class in dataset order (a stable grouping) */
    for (size_t i = 0; i < n; i++) indices[i] = (size_t)ds->members[start + i];
    return MP_OK;
}

mp_status mp_dataset_sample_shape(const mp_dataset *ds, int32_t *dims, size_t cap, size_t *ndims)
{
    static const char fn[] = "mp_dataset_sample_shape";
    MP_REQUIRE_HANDLE(ds, MP__KIND_DATASET, NULL, fn);
    MP_REQUIRE_PTR(ndims, NULL, fn);
    MP_REQUIRE(dims || cap == 0, NULL, MP_ERR_NULL_POINTER, "%s: argument 'dims' is NULL with cap %zu", fn, cap);
    *ndims = ds->ndims;
    if (cap == 0 && !dims) return MP_OK;
    MP_REQUIRE(cap >= ds->ndims, NULL, MP_ERR_BUFFER_TOO_SMALL, "%s: 'dims' has room for cap = %zu dimensions, %zu needed", fn,
               cap, ds->ndims);
    memcpy(dims, ds->shape, ds->ndims * sizeof *dims);
    return MP_OK;
}

mp_status mp_dataset_set_sample_shape(mp_dataset *ds, const int32_t *dims, size_t ndims)
{
    static const char fn[] = "mp_dataset_set_sample_shape";
    MP_REQUIRE_HANDLE(ds, MP__KIND_DATASET, NULL, fn);
    MP_REQUIRE_PTR(dims, ds->err, fn);
    MP_REQUIRE(ndims >= 1 && ndims <= MP_DATA_MAX_DIMS, ds->err, MP_ERR_INVALID_ARGUMENT,
               "%s: ndims is %zu, expected 1..%d", fn, ndims, MP_DATA_MAX_DIMS);
    uint64_t prod = 1;
    for (size_t i = 0; i < ndims; i++) {
        MP_REQUIRE(dims[i] >= 1, ds->err, MP_ERR_INVALID_ARGUMENT, "%s: dims[%zu] is %d, expected >= 1", fn, i,
                   (int)dims[i]);
        prod *= (uint64_t)dims[i];
        if (prod > (uint64_t)INT32_MAX) break;
    }
    MP_REQUIRE(prod == (uint64_t)ds->dim, ds->err, MP_ERR_SHAPE_MISMATCH,
               "%s: the product of dims is %llu, expected dim = %d", fn, (unsigned long long)prod, (int)ds->dim);
    memcpy(ds->shape, dims, ndims * sizeof *dims);
    ds->ndims = ndims;
    return MP_OK;
}

mp_status mp_dataset_get(const mp_dataset *ds, size_t i, float *x, size_t len, int32_t *label)
{
    static const char fn[] = "mp_dataset_get";
    MP_REQUIRE_HANDLE(ds, MP__KIND_DATASET, NULL, fn);
    MP_REQUIRE_PTR(x, NULL, fn);
    MP_REQUIRE(i < ds->n, NULL, MP_ERR_RANGE, "%s: i is %zu, expected < size %zu", fn, i, ds->n);
    MP_REQUIRE(len >= (size_t)ds->dim, NULL, MP_ERR_BUFFER_TOO_SMALL, "%s: 'x' has room for len = %zu floats, %d needed (dim)",
               fn, len, (int)ds->dim);
    MP_REQUIRE(!label || ds->labels, NULL, MP_ERR_STATE,
               "%s: label requested from a regression dataset (use mp_dataset_get_target)", fn);
    memcpy(x, ds->x + i * (size_t)ds->dim, (size_t)ds->dim * sizeof *x);
    if (label) *label = ds->labels[i];
    return MP_OK;
}

mp_status mp_dataset_get_target(const mp_dataset *ds, size_t i, float *t, size_t len)
{
    static const char fn[] = "mp_dataset_get_target";
    MP_REQUIRE_HANDLE(ds, MP__KIND_DATASET, NULL, fn);
    MP_REQUIRE_PTR(t, NULL, fn);
    MP_REQUIRE(ds->targets, NULL, MP_ERR_STATE, "%s: a classification dataset has no targets", fn);
    MP_REQUIRE(i < ds->n, NULL, MP_ERR_RANGE, "%s: i is %zu, expected < size %zu", fn, i, ds->n);
    MP_REQUIRE(len >= (size_t)ds->target_dim, NULL, MP_ERR_BUFFER_TOO_SMALL, "%s: 't' has room for len = %zu floats, %d needed (target_dim)",
               fn, len, (int)ds->target_dim);
    memcpy(t, ds->targets + i * (size_t)ds->target_dim, (size_t)ds->target_dim * sizeof *t);
    return MP_OK;
}

/* ---- class selection ---------------------------------------------------------------- */
static mp_status check_selection(const mp_dataset *src, const int32_t *classes, size_t n, size_t *total)
{
    static const char fn[] = "mp_dataset_select_classes";
    *total = 0;
    for (size_t i = 0; i < n; i++) {
        MP_REQUIRE(classes[i] >= 0 && classes[i] < src->num_classes, NULL, MP_ERR_RANGE,
                   "%s: classes[%zu] is %d, expected [0, %d)", fn, i, (int)classes[i], (int)src->num_classes);
        ptrdiff_t c = find_class(src, classes[i]);
        MP_REQUIRE(c >= 0, NULL, MP_ERR_RANGE, "%s: class %d (classes[%zu]) has no examples", fn,
                   (int)classes[i], i);
        for (size_t j = 0; j < i; j++)
            MP_REQUIRE(classes[j] != classes[i], NULL, MP_ERR_INVALID_ARGUMENT,
                       "%s: class %d appears twice (classes[%zu] and classes[%zu])", fn, (int)classes[i], j, i);
        *total += src->class_start[c + 1] - src->class_start[c];
    }
    return MP_OK;
}

mp_status mp_dataset_select_classes(mp_dataset **out, const mp_dataset *src, const int32_t *classes, size_t n)
{
    static const char fn[] = "mp_dataset_select_classes";
    MP_REQUIRE_PTR(out, NULL, fn);
    MP_REQUIRE_HANDLE(src, MP__KIND_DATASET, NULL, fn);
    MP_REQUIRE_PTR(classes, NULL, fn);
    MP_REQUIRE(src->labels, NULL, MP_ERR_STATE, "%s: src is a regression dataset", fn);
    MP_REQUIRE(n > 0, NULL, MP_ERR_INVALID_ARGUMENT, "%s: n is 0, expected at least one class", fn);
    size_t total;
    MP_TRY(check_selection(src, classes, n, &total));
    /* A membership flag per example keeps the original example order. */
    uint8_t *keep = mp__calloc(src->n, 1);
    float *x = mp__calloc(total, (size_t)src->dim * sizeof *x);
    int32_t *lab = mp__calloc(total, sizeof *lab);
    if (!keep || !x || !lab) {
        mp__free(keep);
        mp__free(x);
        mp__free(lab);
        return mp__fail(NULL, MP_ERR_OUT_OF_MEMORY, "%s: out of memory for %zu examples", fn, total);
    }
    for (size_t i = 0; i < n; i++) {
        ptrdiff_t c = find_class(src, classes[i]);
        for (size_t k = src->class_start[c]; k < src->class_start[c + 1]; k++) keep[src->members[k]] = 1;
    }
    size_t d = (size_t)src->dim, j = 0;
    for (size_t i = 0; i < src->n; i++) {
        if (!keep[i]) continue;
        memcpy(x + j * d, src->x + i * d, d * sizeof *x);
        lab[j++] = src->labels[i];
    }
    mp__free(keep);
    mp_dataset *ds = NULL;
    MP_TRY(mp__dataset_adopt(&ds, fn, x, total, src->dim, lab, NULL, 0, 1)); /* src was checked */
    ds->ndims = src->ndims;
    memcpy(ds->shape, src->shape, src->ndims * sizeof *ds->shape);
    *out = ds;
    return MP_OK;
}
