/* Internal task view used by src/meta and the sampler identity used by
 * src/io (checkpoints). Not installed. Implemented by src/data. */
#ifndef MP_DATA_INTERNAL_H
#define MP_DATA_INTERNAL_H

#include "core/internal.h"

/* A borrowed view of a task's arrays (valid while the task lives and is not
 * modified). Classification tasks have labels (targets NULL, target_dim 0);
 * regression tasks have targets (labels NULL). Rows are row-major floats. */
typedef struct {
    int32_t dim;        /* features per example */
    int32_t n_way;      /* classes in the task (labels in [0, n_way)); 0 for regression */
    int32_t target_dim; /* regression outputs per example; 0 for classification */
    size_t n_support, n_query;
    const float *support_x, *query_x;             /* n x dim */
    const int32_t *support_labels, *query_labels; /* n, or NULL */
    const float *support_targets, *query_targets; /* n x target_dim, or NULL */
} mp__task_view;

void mp__task_get_view(const mp_task *task, mp__task_view *out);

/* What decides a sampler's episodes besides its position: a checkpoint
 * stores it with the position and refuses to restore the position into a
 * sampler that differs in any field. */
#define MP__SAMPLER_ID_KIND      0 /* 1 = classification dataset, 2 = sinusoids */
#define MP__SAMPLER_ID_SEED      1 /* MP_CFG_SEED */
#define MP__SAMPLER_ID_WAYS      2 /* MP_CFG_DATA_WAYS (0 for sinusoids) */
#define MP__SAMPLER_ID_SHOTS     3 /* MP_CFG_DATA_SHOTS */
#define MP__SAMPLER_ID_QUERIES   4 /* MP_CFG_DATA_QUERIES */
#define MP__SAMPLER_ID_ROTATIONS 5 /* MP_CFG_DATA_ROTATIONS (0 for sinusoids) */
#define MP__SAMPLER_ID_DIM       6 /* features per example */
#define MP__SAMPLER_ID_CLASSES   7 /* classes with examples in the dataset (0 for sinusoids) */
#define MP__SAMPLER_ID_EXAMPLES  8 /* examples in the dataset (0 for sinusoids) */
#define MP__SAMPLER_ID_COUNT     9

void mp__sampler_identity(const mp_sampler *s, uint64_t id[MP__SAMPLER_ID_COUNT]);

#endif
