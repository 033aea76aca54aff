/* Private layout of mp_model / mp_prompt shared by the files of src/model
 * and by src/io (checkpoints). Not installed. */
#ifndef MP_MODEL_PRIV_H
#define MP_MODEL_PRIV_H

#include "model/model_internal.h"

#define MP__MODEL_KEY_FIRST MP_CFG_MODEL_KIND
#define MP__MODEL_KEY_LAST  MP_CFG_MODEL_INIT
#define MP__MODEL_NKEYS     (MP__MODEL_KEY_LAST - MP__MODEL_KEY_FIRST + 1)

/* Weight initialisations (docs/MODELS.md). */
#define MP__INIT_ZERO   0
#define MP__INIT_ONE    1
#define MP__INIT_NORMAL 2 /* N(0, std^2), std given */
#define MP__INIT_UNIFORM 3 /* U(-std, std): std holds the bound */

#define MP__NORM_EPS 1e-5f

struct mp_model {
    uint32_t handle_kind; /* MP__KIND_MODEL (src/core/internal.h) */
    int64_t cfg[MP__MODEL_NKEYS]; /* resolved configuration, index key - FIRST */
    uint64_t seed;
    int32_t kind, task, in_dim, out_dim, P, d;
    int32_t C, H, W; /* images (conv, patch transformer) */
    int32_t S;       /* transformer: real tokens per example */
    int32_t ntensors, cap;
    mp__param_info *tensors;
    int32_t *init;  /* MP__INIT_* per tensor */
    float *std;     /* std per tensor for MP__INIT_NORMAL */
    size_t nparams;
    float *params;
    char err[MP_ERRMSG_LEN];
};

struct mp_prompt {
    uint32_t handle_kind; /* MP__KIND_PROMPT (src/core/internal.h) */
    int32_t rows, cols;
    float *data; /* rows*cols floats (at least one allocated) */
    char err[MP_ERRMSG_LEN];
};

static inline int64_t mp__mcfg(const mp_model *m, int32_t key)
{
    return m->cfg[key - MP__MODEL_KEY_FIRST];
}

/* Appends a tensor to the layout (offsets assigned in order). */
mp_status mp__model_add_tensor(mp_model *m, const char *name, int32_t rows, int32_t cols,
                               int32_t group, int32_t init, double std);
/* Index of the tensor called name, or -1. */
int32_t mp__model_find_tensor(const mp_model *m, const char *name);

/* Per kind: validate the resolved config, set derived sizes and lay out the
 * tensors; forward on a tape (inputs checked by mp__model_forward). */
mp_status mp__mlp_layout(mp_model *m);
mp_status mp__mlp_forward(const mp_model *m, mp_tape *t, const mp_var *p, mp_var prompt, mp_var x,
                          int32_t n, mp_var *out);
mp_status mp__conv_layout(mp_model *m);
mp_status mp__conv_forward(const mp_model *m, mp_tape *t, const mp_var *p, mp_var prompt, mp_var x,
                           int32_t n, mp__fwd_cache *cache, mp_var *out);
/* Conv: the backbone on x alone (valid when it reads no prompt: the prompt
 * at the head, or P == 0) -> n x F*h*w features. */
mp_status mp__conv_features(const mp_model *m, mp_tape *t, const mp_var *p, mp_var x, int32_t n,
                            mp_var *out);
mp_status mp__tf_layout(mp_model *m);
/* Record the prefix of x into the cache only (mp__model_prepare). */
mp_status mp__tf_prepare(const mp_model *m, mp_tape *t, const mp_var *p, mp_var x, int32_t n,
                         mp__fwd_cache *cache);
mp_status mp__conv_prepare(const mp_model *m, mp_tape *t, const mp_var *p, mp_var x, int32_t n,
                           mp__fwd_cache *cache);
mp_status mp__tf_forward(const mp_model *m, mp_tape *t, const mp_var *p, mp_var prompt, mp_var x,
                         int32_t n, mp__fwd_cache *cache, mp_var *out);
/* Transformer: embeddings (without positions) of the examples' tokens,
 * n*S x d into emb (for prompt init from data). */
mp_status mp__tf_embed_rows(const mp_model *m, const float *x, size_t n, float *emb);

/* Records the prompt-independent start of the forward pass of x into
 * v[0..nv) (see mp__fwd_cache), reading only p[0..nkeys). */
typedef mp_status (*mp__prefix_fn)(const mp_model *m, mp_tape *t, const mp_var *p, mp_var x,
                                   int32_t n, mp_var *v);
/* v[0..nv) from the cache slot of x and p[0..nkeys) when there is one;
 * otherwise recorded by fn and stored in the cache (replacing its oldest
 * slot). With cache NULL (or more keys or values than a slot holds) fn
 * records the prefix every time. */
mp_status mp__fwd_prefix(const mp_model *m, mp_tape *t, const mp_var *p, int32_t nkeys, mp_var x,
                         int32_t n, mp__fwd_cache *cache, mp__prefix_fn fn, int32_t nv, mp_var *v);

/* Records parameter leaves (borrowed, no gradient) and the prompt (zeros if
 * prompt is NULL) on t; params must have room for mp__model_num_tensors. */
mp_status mp__model_leaves(const mp_model *m, mp_tape *t, const mp_prompt *prompt, mp_var *params,
                           mp_var *prompt_var);

#endif
