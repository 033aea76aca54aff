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

/* The prompt-independent start of forward passes over one input (the
 * transformer's embeddings and block-0 projections of the real tokens; the
 * whole conv backbone when the prompt joins the head's features or P == 0),
 * recorded by the first pass and reused by the passes that follow on the
 * same tape: the inner steps of a task and their query pass record it once
 * per task instead of once per pass. A slot is keyed by the input variable
 * and the parameter variables it was computed from, so a pass with adapted
 * backbone parameters (scope "all") records its own. Owned by the caller,
 * one per tape, zeroed by mp__fwd_cache_clear, which must be called
 * whenever that tape is reset (variable ids are then reused). */
#define MP__FWD_CACHE_SLOTS 2  /* support and query set */
#define MP__FWD_CACHE_KEYS  64 /* parameter variables a slot is keyed by: the conv
                                  backbone reads 4 per block, model.conv_blocks <= 16 */
#define MP__FWD_CACHE_VARS  8  /* recorded variables a slot holds */
typedef struct {
    mp_var x; /* MP_VAR_NONE: empty */
    int32_t nkeys;
    mp_var keys[MP__FWD_CACHE_KEYS];
    mp_var v[MP__FWD_CACHE_VARS];
} mp__fwd_slot;
typedef struct {
    mp__fwd_slot slot[MP__FWD_CACHE_SLOTS];
    int32_t next; /* slot the next miss overwrites */
} mp__fwd_cache;
static inline void mp__fwd_cache_clear(mp__fwd_cache *c)
{
    for (int32_t s = 0; s < MP__FWD_CACHE_SLOTS; s++) {
        c->slot[s].x = MP_VAR_NONE;
        c->slot[s].nkeys = 0;
    }
    c->next = 0;
}

/* Records the forward pass on tape: params[i] is the variable standing for
 * tensor i (a leaf over the model's buffer or an adapted value), prompt the
 * P x d prompt variable (MP_VAR_NONE when P == 0), x a batch x input_dim
 * variable. *out: batch x output_dim (logits or regression outputs).
 * Each example's output depends on that example and the prompt only.
 * cache: see mp__fwd_cache, or NULL (every part recorded). */
mp_status mp__model_forward(const mp_model *m, mp_tape *t, const mp_var *params, mp_var prompt,
                            mp_var x, mp__fwd_cache *cache, mp_var *out);

/* Records the prompt-independent prefix of a forward pass over x into cache
 * (nothing for a model without one), so that a later mp__model_forward of
 * x with the same parameter variables reuses it. The prefix reads only
 * backbone tensors (group MP__GROUP_BACKBONE): only their entries of params
 * are read and checked. Otherwise the checks and errors of mp__model_forward. */
mp_status mp__model_prepare(const mp_model *m, mp_tape *t, const mp_var *params, mp_var x,
                            mp__fwd_cache *cache);

/* Loss of outputs: mean cross-entropy against labels (classifier) or mean
 * squared error against targets (n x output_dim floats, regression). */
mp_status mp__model_loss(const mp_model *m, mp_tape *t, mp_var out, const int32_t *labels,
                         const float *targets, size_t n, mp_var *loss);

/* For a token transformer (MP_CFG_MODEL_VOCAB > 0), checks the count values
 * of x, token ids stored as floats: integers in [0, vocab). Nothing for
 * another model. A failure (MP_ERR_INVALID_ARGUMENT) is reported as fn's:
 * "<fn>: <what> x[i] = v is not an integer id in [0, vocab)", what being
 * e.g. "token" or "support token". Every caller of the forward pass checks
 * its examples with it first. */
mp_status mp__check_token_ids(const mp_model *m, const char *fn, const char *what, const float *x,
                              size_t count);

/* Prompt internals. */
float *mp__prompt_data(mp_prompt *p);
const float *mp__prompt_data_const(const mp_prompt *p);

#endif
