/*
 * libmetaprompt — models, soft prompts and checkpoints. Include metaprompt.h.
 *
 * An mp_model is a backbone plus a head with a prompt slot; its parameters
 * live in one contiguous float array carved into named tensors (layout and
 * initialisation: docs/MODELS.md). An mp_prompt is a P x d matrix of learned
 * vectors shaped for one model. Checkpoints (docs/FORMAT.md) store a model,
 * optionally a prompt and a meta-optimizer's state.
 *
 * Example rows are row-major float arrays of mp_model input_dim values
 * (images: C*H*W values, channel-major; token models: token ids stored as
 * floats). Classifiers output logits, regressors raw values.
 *
 * Errors: calls that take a non-const model or prompt record their message
 * in that handle (mp_model_error / mp_prompt_error) and in mp_last_error();
 * calls on a const model (predict, loss, get_*) record it only in the
 * thread-local mp_last_error(), so concurrent read-only calls never write
 * to the shared handle.
 *
 * Thread safety: handles are not thread-safe for modification. Read-only
 * calls on one model (mp_model_predict, mp_model_loss, mp_model_get_*,
 * mp_prompt_create) may run concurrently from several threads as long as
 * nothing modifies that model: predict and loss use a tape of their own per
 * call (reentrant).
 */
#ifndef METAPROMPT_MODEL_H
#define METAPROMPT_MODEL_H
#include "metaprompt/core.h"
#ifdef __cplusplus
extern "C" {
#endif

typedef struct mp_model mp_model;
typedef struct mp_prompt mp_prompt;
/* The meta-optimizer (metaprompt/meta.h); declared here too so the
 * checkpoint functions can name it. */
#ifndef MP_META_TYPEDEF
#define MP_META_TYPEDEF
typedef struct mp_meta mp_meta;
#endif

/* ---- model kinds, tasks, activations, prompt placement -------------------- */
#define MP_MODEL_MLP         1 /* prompted MLP: [x, flattened prompt] per row */
#define MP_MODEL_TRANSFORMER 2 /* prompted ViT / token transformer, P prompt tokens prepended */
#define MP_MODEL_CONV        3 /* prompted conv4 (MAML's 4 conv blocks) for small images */

#define MP_TASK_AUTO           0 /* MLP: regression; transformer, conv: classification */
#define MP_TASK_CLASSIFICATION 1 /* logits, mean cross-entropy against int32 labels */
#define MP_TASK_REGRESSION     2 /* raw outputs, mean squared error against float targets */

#define MP_ACT_RELU    1
#define MP_ACT_TANH    2
#define MP_ACT_GELU    3 /* tanh approximation, as the tape's mp_gelu */
#define MP_ACT_SIGMOID 4

#define MP_PROMPT_INPUT_CHANNELS 1 /* conv: P learned H x W maps appended as input channels */
#define MP_PROMPT_HEAD_FEATURES  2 /* conv: flattened P x d prompt appended to the head's features */

#define MP_PROMPT_INIT_ZEROS   0
#define MP_PROMPT_INIT_NORMAL  1 /* N(0, scale^2) */
#define MP_PROMPT_INIT_UNIFORM 2 /* U(-scale, scale) */

/* ---- configuration keys (model: 100-199), read by mp_model_create ---------
 * Integer keys; defaults give the 1-40-40-1 sinusoid regression MLP with no
 * prompt. MP_CFG_SEED (core) seeds the weight initialisation. "0 = auto"
 * values are resolved at creation; mp_model_get_int returns resolved
 * values. Keys that do not apply to the chosen kind are ignored. */
#define MP_CFG_MODEL_KIND          100 /* MP_MODEL_*, default MP_MODEL_MLP */
#define MP_CFG_MODEL_INPUT_DIM     101 /* MLP: features per row (default 1); conv/transformer:
                                          derived (C*H*W or seq_len), must agree if set */
#define MP_CFG_MODEL_OUTPUT_DIM    102 /* classes or regression outputs, default 1 */
#define MP_CFG_MODEL_TASK          103 /* MP_TASK_*, default MP_TASK_AUTO */
#define MP_CFG_MODEL_PROMPT_LEN    104 /* P, prompt rows, 0..4096, default 0 */
#define MP_CFG_MODEL_PROMPT_DIM    105 /* d, prompt cols; 0 = auto (MLP: input_dim, transformer:
                                          d_model (must agree), conv: H*W for input channels
                                          (must agree), channels for head features) */
#define MP_CFG_MODEL_HIDDEN_LAYERS 106 /* MLP hidden layers, 0..64, default 2 */
#define MP_CFG_MODEL_HIDDEN_WIDTH  107 /* MLP hidden width, default 40 */
#define MP_CFG_MODEL_ACTIVATION    108 /* MLP: MP_ACT_*, default MP_ACT_RELU */
#define MP_CFG_MODEL_IMAGE_HEIGHT  109 /* conv/transformer images, default 28 */
#define MP_CFG_MODEL_IMAGE_WIDTH   110 /* default 28 */
#define MP_CFG_MODEL_IMAGE_CHANNELS 111 /* default 1 */
#define MP_CFG_MODEL_PATCH         112 /* transformer patch side, default 7 (28x28 -> 16 patches) */
#define MP_CFG_MODEL_VOCAB         113 /* transformer: > 0 = token ids input instead of images */
#define MP_CFG_MODEL_SEQ_LEN       114 /* transformer with tokens: tokens per example */
#define MP_CFG_MODEL_D_MODEL       115 /* transformer width, default 64 */
#define MP_CFG_MODEL_LAYERS        116 /* transformer blocks, default 2 */
#define MP_CFG_MODEL_HEADS         117 /* attention heads, default 4 (must divide d_model) */
#define MP_CFG_MODEL_MLP_DIM       118 /* transformer MLP width, default 128 */
#define MP_CFG_MODEL_CHANNELS      119 /* conv filters per block, default 64 */
#define MP_CFG_MODEL_CONV_BLOCKS   120 /* conv blocks, default 4 */
#define MP_CFG_MODEL_PROMPT_MODE   121 /* conv: MP_PROMPT_INPUT_CHANNELS (default) or
                                          MP_PROMPT_HEAD_FEATURES */

/* The functions (create, predict, prompts, checkpoints) follow with the
 * model implementation. */

#ifdef __cplusplus
}
#endif
#endif
