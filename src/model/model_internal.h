/* Internal model interface used by src/meta and src/io. Not installed.
 * Implemented by src/model (issue 4). */
#ifndef MP_MODEL_INTERNAL_H
#define MP_MODEL_INTERNAL_H

#include "core/internal.h"

#define MP__GROUP_BACKBONE 0 /* adapted only in scope "all" */
#define MP__GROUP_HEAD     1 /* adapted in scopes "prompt+head" and "all" */

/* One named parameter tensor, carved from the model's single allocation. */
typedef struct {
    char name[48];
    int32_t rows, cols;
    size_t offset; /* in floats, into mp__model_params() */
    int32_t group; /* MP__GROUP_* */
} mp__param_info;

int32_t mp__model_num_tensors(const mp_model *m);
const mp__param_info *mp__model_tensor(const mp_model *m, int32_t i);
float *mp__model_params(mp_model *m);             /* all parameters, contiguous */
const float *mp__model_params_const(const mp_model *m);
size_t mp__model_param_count(const mp_model *m);
int32_t mp__model_prompt_rows(const mp_model *m);  /* P (0 allowed) */
int32_t mp__model_prompt_cols(const mp_model *m);  /* d */
int32_t mp__model_input_dim(const mp_model *m);    /* features per example row */
int32_t mp__model_output_dim(const mp_model *m);   /* classes or regression targets */
int32_t mp__model_is_classifier(const mp_model *m);

/* Records the forward pass on tape: params[i] is the variable standing for
 * tensor i (a leaf over the model's buffer or an adapted value), prompt the
 * P x d prompt variable (MP_VAR_NONE when P == 0), x a batch x input_dim
 * variable. *out: batch x output_dim (logits or regression outputs).
 * Each example's output depends on that example and the prompt only. */
mp_status mp__model_forward(const mp_model *m, mp_tape *t, const mp_var *params, mp_var prompt,
                            mp_var x, mp_var *out);

/* Loss of outputs: mean cross-entropy against labels (classifier) or mean
 * squared error against targets (n x output_dim floats, regression). */
mp_status mp__model_loss(const mp_model *m, mp_tape *t, mp_var out, const int32_t *labels,
                         const float *targets, size_t n, mp_var *loss);

/* Prompt internals. */
float *mp__prompt_data(mp_prompt *p);
const float *mp__prompt_data_const(const mp_prompt *p);

#endif
