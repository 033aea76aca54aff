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
 * to the shared handle. A handle of the wrong kind gives
 * MP_ERR_INVALID_ARGUMENT (destroy: nothing freed), as described at the top
 * of metaprompt/core.h.
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
/* The meta-optimizer (metaprompt/meta.h) and the episode sampler
 * (metaprompt/data.h); declared here too so the checkpoint functions can
 * name them. */
#ifndef MP_META_TYPEDEF
#define MP_META_TYPEDEF
typedef struct mp_meta mp_meta;
#endif
#ifndef MP_SAMPLER_TYPEDEF
#define MP_SAMPLER_TYPEDEF
typedef struct mp_sampler mp_sampler;
#endif

/* ---- model kinds, tasks, activations, prompt placement -------------------- */
#define MP_MODEL_MLP         1 /* prompted MLP: [x, flattened prompt] per row */
#define MP_MODEL_TRANSFORMER 2 /* prompted ViT / token transformer, P prompt tokens prepended */
#define MP_MODEL_CONV        3 /* prompted conv4 (MAML's 4 conv blocks) for small images */

#define MP_TASK_AUTO           0 /* MLP: regression; transformer, conv: classification */
#define MP_TASK_CLASSIFICATION 1 /* logits, mean cross-entropy against int32 labels */
#define MP_TASK_REGRESSION     2 /* raw outputs, mean squared error against float targets */

/* Initialisation schemes (MP_CFG_MODEL_INIT). */
#define MP_INIT_HE    0 /* He normal (relu/gelu) or Xavier normal (tanh/sigmoid, heads); zero biases */
#define MP_INIT_TORCH 1 /* PyTorch's nn.Linear/nn.Conv2d default: weights and biases
                           U(-1/sqrt(fan_in), 1/sqrt(fan_in)); the MAML paper's sinusoid setup */

#define MP_ACT_RELU    1
#define MP_ACT_TANH    2
#define MP_ACT_GELU    3 /* exact erf form, as the tape's mp_gelu */
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
#define MP_CFG_MODEL_PROMPT_DIM    105 /* d, prompt cols, 0..2^24 (2^20 before 0.2.0);
                                          0 = auto (MLP: input_dim, transformer:
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
#define MP_CFG_MODEL_INIT          122 /* MLP and conv weight initialisation: MP_INIT_HE (default)
                                          or MP_INIT_TORCH; stored in checkpoints but not
                                          compared on load (layout is the same) */
#define MP_CFG_MODEL_PROMPT_MODE   121 /* conv: MP_PROMPT_INPUT_CHANNELS (default) or
                                          MP_PROMPT_HEAD_FEATURES */

/* ---- model lifetime ---------------------------------------------------------- */
/** Creates a model from cfg (NULL = all defaults; cfg is only read, not
 *  kept). Weights are initialised from MP_CFG_SEED (docs/MODELS.md: He
 *  normal for layers followed by relu/gelu, Xavier normal otherwise, zero
 *  biases, unit norm scales, N(0, 0.02^2) embeddings); the same config and
 *  seed give bit-identical weights.
 *  Errors: MP_ERR_NULL_POINTER (out), MP_ERR_INVALID_ARGUMENT (a key value
 *  or combination the kind cannot build, e.g. heads not dividing d_model,
 *  image not divisible into patches, images too small for the conv blocks;
 *  the message names the keys), MP_ERR_RANGE (a size product overflowing),
 *  MP_ERR_OUT_OF_MEMORY. *out is unchanged on failure. Thread-safe. */
MP_API mp_status mp_model_create(mp_model **out, const mp_config *cfg);
/** Destroys a model; NULL is ignored. */
MP_API void mp_model_destroy(mp_model *model);
/** Message of the last failed call that modified this model ("" if none;
 *  NULL model gives ""). Owned by the model. */
MP_API const char *mp_model_error(const mp_model *model);
/** Creates an independent deep copy (configuration and parameters).
 *  Errors: MP_ERR_NULL_POINTER, MP_ERR_OUT_OF_MEMORY. */
MP_API mp_status mp_model_clone(mp_model **out, const mp_model *src);
/** Resolved value of a model configuration key (MP_CFG_MODEL_*) or
 *  MP_CFG_SEED. Errors: MP_ERR_NULL_POINTER, MP_ERR_NOT_FOUND (not a model
 *  key). */
MP_API mp_status mp_model_get_int(const mp_model *model, int32_t key, int64_t *out);

/* ---- parameters --------------------------------------------------------------- */
/** Number of float parameters (all tensors). Errors: MP_ERR_NULL_POINTER. */
MP_API mp_status mp_model_num_params(const mp_model *model, size_t *out);
/** Copies all parameters (layout in docs/MODELS.md) into buf; len must be
 *  >= the parameter count (MP_ERR_BUFFER_TOO_SMALL names the size needed).
 *  Errors: MP_ERR_NULL_POINTER, MP_ERR_BUFFER_TOO_SMALL. */
MP_API mp_status mp_model_get_params(const mp_model *model, float *buf, size_t len);
/** Replaces all parameters from buf (copied); len must equal the parameter
 *  count. Errors: MP_ERR_NULL_POINTER, MP_ERR_SHAPE_MISMATCH (len),
 *  MP_ERR_NOT_FINITE (a NaN/Inf value; nothing is changed). */
MP_API mp_status mp_model_set_params(mp_model *model, const float *buf, size_t len);
/** Shape of the model's prompt: rows = P (may be 0), cols = d. Either
 *  pointer may be NULL. Errors: MP_ERR_NULL_POINTER (model). */
MP_API mp_status mp_model_prompt_shape(const mp_model *model, int32_t *rows, int32_t *cols);

/* ---- inference ------------------------------------------------------------------ */
/** Outputs for n examples: x holds n * input_dim floats (x_len must equal
 *  that), out receives n * output_dim floats (row-major; out_len >= that).
 *  prompt must have the model's prompt shape; NULL means an all-zero
 *  prompt. Each example's output depends only on that example and the
 *  prompt (no statistics are shared between examples). n == 0 is allowed.
 *  Reentrant (own tape per call). Token models reject ids that are not
 *  integers in [0, vocab).
 *  Errors: MP_ERR_NULL_POINTER, MP_ERR_SHAPE_MISMATCH (x_len, prompt
 *  shape), MP_ERR_BUFFER_TOO_SMALL (out_len), MP_ERR_INVALID_ARGUMENT
 *  (bad token id), MP_ERR_NOT_FINITE (NaN/Inf in x), MP_ERR_OUT_OF_MEMORY. */
MP_API mp_status mp_model_predict(const mp_model *model, const mp_prompt *prompt, const float *x,
                                  size_t n, size_t x_len, float *out, size_t out_len);
/** Mean loss over n >= 1 examples: cross-entropy against labels (n int32
 *  in [0, output_dim); targets ignored, may be NULL) for classifiers, mean
 *  squared error against targets (n * output_dim floats; labels ignored)
 *  for regressors. prompt NULL = zero prompt. *loss is written only on
 *  success. Reentrant.
 *  Errors: as mp_model_predict, plus MP_ERR_INVALID_ARGUMENT (n == 0),
 *  MP_ERR_NULL_POINTER (loss, or the labels/targets the task needs),
 *  MP_ERR_RANGE (a label out of range) and MP_ERR_NOT_FINITE (NaN/Inf in
 *  targets, the index named). */
MP_API mp_status mp_model_loss(const mp_model *model, const mp_prompt *prompt, const float *x,
                               size_t n, size_t x_len, const int32_t *labels,
                               const float *targets, float *loss);

/* ---- prompts ------------------------------------------------------------------------ */
/** Creates a zero prompt shaped for model (P x d; P may be 0). The prompt
 *  does not keep a reference to the model.
 *  Errors: MP_ERR_NULL_POINTER, MP_ERR_OUT_OF_MEMORY. */
MP_API mp_status mp_prompt_create(mp_prompt **out, const mp_model *model);
/** Destroys a prompt; NULL is ignored. */
MP_API void mp_prompt_destroy(mp_prompt *prompt);
/** Message of the last failed call on this prompt ("" if none; "" for NULL). */
MP_API const char *mp_prompt_error(const mp_prompt *prompt);
/** Shape of the prompt (rows = P, cols = d); either pointer may be NULL.
 *  Errors: MP_ERR_NULL_POINTER (prompt). */
MP_API mp_status mp_prompt_shape(const mp_prompt *prompt, int32_t *rows, int32_t *cols);
/** Fills the prompt: MP_PROMPT_INIT_ZEROS (scale ignored),
 *  MP_PROMPT_INIT_NORMAL (N(0, scale^2)) or MP_PROMPT_INIT_UNIFORM
 *  (U(-scale, scale)), deterministic in seed.
 *  Nothing changes on failure. Errors: MP_ERR_NULL_POINTER,
 *  MP_ERR_INVALID_ARGUMENT (unknown method, scale negative or not finite,
 *  or so large that a value would overflow float). */
MP_API mp_status mp_prompt_init(mp_prompt *prompt, int32_t method, double scale, uint64_t seed);
/** Initialises the prompt from n >= 1 example rows of model's input
 *  (x_len = n * input_dim), like initialising from text embeddings:
 *  transformer: row r = mean over the examples of the embedding (patch or
 *  token, without position) at token position r mod seq_len; MLP and conv
 *  with input channels: row r = mean of the examples i with i mod P == r
 *  (all examples when there are fewer than P), MLP truncated or zero-padded
 *  to d values, conv taking image channel r mod C; conv with head features:
 *  the same grouping over the backbone's feature vectors. Nothing changes
 *  on failure. Errors: MP_ERR_NULL_POINTER, MP_ERR_SHAPE_MISMATCH (prompt
 *  not shaped for model, x_len), MP_ERR_INVALID_ARGUMENT (n == 0, bad token
 *  id), MP_ERR_NOT_FINITE, MP_ERR_OUT_OF_MEMORY. */
MP_API mp_status mp_prompt_init_from_data(mp_prompt *prompt, const mp_model *model,
                                          const float *x, size_t n, size_t x_len);
/** Copies the P*d values (row-major) into buf (len >= P*d, else
 *  MP_ERR_BUFFER_TOO_SMALL). Errors: MP_ERR_NULL_POINTER (buf may be NULL
 *  only when P*d == 0). */
MP_API mp_status mp_prompt_get(const mp_prompt *prompt, float *buf, size_t len);
/** Replaces the values from buf (len must equal P*d; copied).
 *  Errors: MP_ERR_NULL_POINTER, MP_ERR_SHAPE_MISMATCH, MP_ERR_NOT_FINITE
 *  (any NaN/Inf; nothing changed). */
MP_API mp_status mp_prompt_set(mp_prompt *prompt, const float *buf, size_t len);
/** Copies src's values into dst; shapes must match (MP_ERR_SHAPE_MISMATCH).
 *  Errors: MP_ERR_NULL_POINTER. */
MP_API mp_status mp_prompt_copy(mp_prompt *dst, const mp_prompt *src);

/* ---- checkpoints (format: docs/FORMAT.md) ------------------------------------------- */
/** Saves the model's configuration and parameters, the prompt (NULL: none)
 *  and the meta-optimizer's state (NULL: none) to path, atomically: the
 *  file is written to a temporary "path.tmp.*" and renamed over path, so a crash
 *  never leaves a partial file at path. Handles are only read. A meta's
 *  state belongs to the model and prompt it was created for: with a meta,
 *  model must be that model and prompt that prompt (any prompt or NULL when
 *  the model has no prompt rows), else MP_ERR_INVALID_ARGUMENT ("meta was
 *  created for another model" / "... another prompt", or prompt NULL).
 *  Errors: MP_ERR_NULL_POINTER (path, model), MP_ERR_SHAPE_MISMATCH
 *  (prompt not shaped for model), MP_ERR_INVALID_ARGUMENT (handles not the
 *  meta's, above), MP_ERR_NOT_FINITE (a NaN or Inf in a parameter or the
 *  prompt, named in the message; nothing written: the loader refuses such
 *  files), MP_ERR_IO (errno text in the message),
 *  MP_ERR_UNSUPPORTED (meta given but this build cannot save it),
 *  MP_ERR_OUT_OF_MEMORY. Messages go to mp_last_error(). An episode
 *  sampler's position is not saved: see mp_checkpoint_save_with_sampler. */
MP_API mp_status mp_checkpoint_save(const char *path, const mp_model *model,
                                    const mp_prompt *prompt, const mp_meta *meta);
/** Loads a checkpoint into existing handles. Everything is verified before
 *  any destination is touched, so on failure nothing is changed: magic
 *  (MP_ERR_FORMAT), format version newer than this library's
 *  (MP_ERR_VERSION), truncation or malformed records (MP_ERR_FORMAT), CRC32
 *  (MP_ERR_CHECKSUM), the model configuration in the file differing from
 *  model's (MP_ERR_SHAPE_MISMATCH, naming the key; MP_CFG_MODEL_INIT is
 *  not compared: it only chose the initial values, which the file's
 *  parameters replace), a model tensor missing
 *  (MP_ERR_NOT_FOUND) or unknown to the model (MP_ERR_FORMAT), a shape
 *  differing even when the element count agrees (MP_ERR_SHAPE_MISMATCH),
 *  NaN/Inf parameters (MP_ERR_NOT_FINITE). prompt may be NULL (a stored
 *  prompt is then ignored); a non-NULL prompt requires one in the file
 *  (MP_ERR_NOT_FOUND) of the model's shape. meta may be NULL (stored meta
 *  state ignored); otherwise the file must hold state matching it
 *  (MP_ERR_NOT_FOUND: saved without a meta; MP_ERR_SHAPE_MISMATCH or
 *  MP_ERR_FORMAT: state of another meta configuration: scope, learn set,
 *  optimizer; the algorithm only as Meta-SGD or not, since MAML,
 *  first-order MAML and Reptile states load into one another, moments and
 *  step count carried, e.g. to switch from first to second order; a
 *  successful load drops the meta's pending gradient, if any) and sound for its
 *  optimizer (the tensor and index named: MP_ERR_NOT_FINITE for a NaN/Inf
 *  moment or Meta-SGD rate, MP_ERR_FORMAT for a negative Adam second
 *  moment, non-zero SGD second moments, non-zero moments at step 0, or a
 *  step count of 2^63 - 1 or more). A configuration entry tagged with
 *  another type than its key's (e.g. model.kind as a float), or an entry
 *  outside its key's range (integers included, since 0.2.0), is
 *  MP_ERR_FORMAT (a NaN/Inf float: MP_ERR_NOT_FINITE), naming the key. Stored sampler
 *  records are ignored (mp_checkpoint_load_with_sampler reads them).
 *  With a meta, model and prompt must be the ones it was created for, as
 *  for mp_checkpoint_save (MP_ERR_INVALID_ARGUMENT, checked before the file
 *  is read). Errors: those above, and MP_ERR_NULL_POINTER (model, path),
 *  MP_ERR_IO (errno text in the message), MP_ERR_OUT_OF_MEMORY, MP_ERR_STATE
 *  (meta is being evaluated: a load from its progress callback). The message
 *  is recorded in model's error and mp_last_error(). */
MP_API mp_status mp_checkpoint_load(const char *path, mp_model *model, mp_prompt *prompt,
                                    mp_meta *meta);
/** As mp_checkpoint_save, plus the state of the episode sampler that feeds
 *  the training loop (NULL: none; then exactly mp_checkpoint_save): its
 *  position (mp_sampler_get_position) as "meta/sampler_position" and its
 *  identity (kind, seed, ways, shots, queries, rotations, features per
 *  example, classes and examples of its dataset) as
 *  "meta/sampler_identity", so that a run resumed with
 *  mp_checkpoint_load_with_sampler draws the same episodes as one that
 *  never stopped. sampler is only read; it may be saved without a meta
 *  (meta NULL). Errors: those of mp_checkpoint_save, reported as this
 *  function's. Messages go to mp_last_error(). Thread safety: as
 *  mp_checkpoint_save (no other thread may modify the handles meanwhile). */
MP_API mp_status mp_checkpoint_save_with_sampler(const char *path, const mp_model *model,
                                                 const mp_prompt *prompt, const mp_meta *meta,
                                                 const mp_sampler *sampler);
/** As mp_checkpoint_load, plus an episode sampler (NULL: none, stored
 *  sampler records are ignored; then exactly mp_checkpoint_load). A
 *  non-NULL sampler requires the file to hold sampler records
 *  (MP_ERR_NOT_FOUND naming "meta/sampler_position": the file was saved
 *  without a sampler) describing a sampler configured like this one
 *  (MP_ERR_SHAPE_MISMATCH naming the differing setting, e.g. "seed" or
 *  "data.ways"; a sampler over another dataset differs in its dimension,
 *  classes or examples), and then sets its position to the stored one.
 *  Everything (model, prompt, meta, sampler) is verified before any of
 *  them is changed: on failure all four are unchanged. Errors: those of
 *  mp_checkpoint_load, reported as this function's, and MP_ERR_FORMAT (a
 *  sampler record of the wrong type or shape). The message is recorded in
 *  model's error and mp_last_error(). Not thread-safe with respect to the
 *  four handles. */
MP_API mp_status mp_checkpoint_load_with_sampler(const char *path, mp_model *model,
                                                 mp_prompt *prompt, mp_meta *meta,
                                                 mp_sampler *sampler);
/** Creates a model with the configuration stored in a checkpoint and loads
 *  its parameters (verified as mp_checkpoint_load). Errors: those of
 *  mp_checkpoint_load and mp_model_create. *out unchanged on failure. */
MP_API mp_status mp_model_create_from_checkpoint(mp_model **out, const char *path);

#ifdef __cplusplus
}
#endif
#endif
