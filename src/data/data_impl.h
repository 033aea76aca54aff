/* Private layouts and parsers of the data module (src/data only, plus tests
 * and fuzz harnesses). Not installed. The IDX reader is private to idx.c:
 * tests and fuzzing go through mp_dataset_load_idx. */
#ifndef MP_DATA_IMPL_H
#define MP_DATA_IMPL_H

#include "data/data_internal.h"

/* Classification datasets keep an index of the examples grouped by class:
 * class_ids[c] (ascending, only classes with examples) owns the example
 * indices members[class_start[c] .. class_start[c+1]). A compact table, so an
 * absurd label does not cost memory proportional to its value. */
struct mp_dataset {
    uint32_t handle_kind; /* MP__KIND_DATASET (src/core/internal.h) */
    char err[MP_ERRMSG_LEN];
    size_t n;
    int32_t dim;
    int32_t target_dim;      /* 0 for classification */
    float *x;                /* n x dim */
    int32_t *labels;         /* n, or NULL (regression) */
    float *targets;          /* n x target_dim, or NULL */
    int32_t num_classes;     /* max label + 1 */
    size_t n_present;        /* classes with at least one example */
    int32_t *class_ids;      /* n_present, ascending */
    size_t *class_start;     /* n_present + 1 */
    int32_t *members;        /* n example indices grouped by class */
    size_t ndims;
    int32_t shape[MP_DATA_MAX_DIMS];
};

/* Builds a dataset taking ownership of x, labels/targets (allocated with
 * mp__alloc) whether it succeeds or not. Validates labels and finite
 * values unless trusted (the caller already did while converting).
 * fn names the public caller for messages. */
mp_status mp__dataset_adopt(mp_dataset **out, const char *fn, float *x, size_t n, int32_t dim,
                            int32_t *labels, float *targets, int32_t target_dim, int trusted);

/* ---- CSV ------------------------------------------------------------------ */
typedef struct {
    int32_t header;       /* skip the first non-blank line */
    int32_t label_column; /* -1 = last */
    int32_t regression;
} mp__csv_opts;

typedef struct {
    size_t n;
    int32_t dim;
    float *x;             /* n x dim (mp__alloc) */
    int32_t *labels;      /* n or NULL */
    float *targets;       /* n or NULL */
} mp__csv_result;

/* Parses CSV text (not NUL-terminated). On success the caller owns the
 * arrays of out (mp__free); on failure nothing is allocated. */
mp_status mp__csv_parse(const char *text, size_t len, const mp__csv_opts *opts,
                        mp__csv_result *out, const char *what);

/* ---- tasks ------------------------------------------------------------------ */
struct mp_task {
    uint32_t handle_kind; /* MP__KIND_TASK (src/core/internal.h) */
    char err[MP_ERRMSG_LEN];
    int32_t dim, n_way, target_dim;
    size_t n_support, n_query;
    float *sx, *qx;           /* carved from block */
    int32_t *sl, *ql;
    float *st, *qt;
    int32_t *scratch;         /* sampler work space, scratch_len ints */
    size_t scratch_len;
    int32_t is_sinusoid;
    double amplitude, phase;
    void *block;              /* the one allocation holding every array */
};

/* Allocates a task with uninitialised arrays of the given shape (labels when
 * n_way > 0, targets when target_dim > 0) and scratch ints. */
mp_status mp__task_alloc(mp_task **out, const char *fn, int32_t dim, int32_t n_way, int32_t target_dim,
                         size_t ns, size_t nq, size_t scratch_len);
/* Gives task the shape; reuses its block when everything fits, else
 * replaces it (task unchanged on failure). */
mp_status mp__task_reshape(mp_task *task, const char *fn, int32_t dim, int32_t n_way, int32_t target_dim,
                           size_t ns, size_t nq, size_t scratch_len);
/* Fills a task of shape (1, 0, 1, ks, kq) with sinusoid task (seed, index). */
void mp__task_fill_sinusoid(mp_task *task, uint64_t seed, uint64_t index);

#endif
