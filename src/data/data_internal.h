/* Internal task view used by src/meta. Not installed. Implemented by
 * src/data (issue 5). */
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

#endif
