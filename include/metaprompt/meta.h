/*
 * libmetaprompt — meta-learning: MAML (exact second order), first-order MAML,
 * Reptile and Meta-SGD over a soft prompt, prompt + head, or all parameters.
 * Include metaprompt.h. The guide is docs/META.md.
 *
 * An mp_meta borrows a model and a prompt: they ARE the meta-parameters
 * (the initialisation the inner loop starts from). mp_meta_step and
 * mp_meta_apply_gradients update them in place; nothing else does. The
 * meta owns its outer-optimizer state, the learned inner learning rates
 * (Meta-SGD), a pool of worker threads and one tape per worker.
 *
 * Per task, the inner loop takes `inner_steps` gradient steps on the
 * support loss over the adapted scope, starting from the meta-parameters:
 *     p_{k+1} = p_k - a (.) grad_p L_support(p_k)
 * (a scalar inner LR, or per-element rates for Meta-SGD). The meta-gradient
 * of a meta-batch is the MEAN over its tasks of each task's meta-gradient:
 *   MAML     d L_query(p_K) / d theta, exact (differentiates through the
 *            inner gradients: second order);
 *   FOMAML   d L_query / d p evaluated at p_K (inner gradients treated as
 *            constants);
 *   Reptile  theta - p_K over the adapted entries (0 elsewhere), so that
 *            plain SGD with outer LR e gives theta <- theta + e (p_K - theta);
 *   Meta-SGD as MAML, plus the gradient with respect to the rates a.
 *
 * Gradient vector layout (mp_meta_gradient_size / get / set): the prompt
 * (P*d floats, row-major), then every model parameter in the model's own
 * flat order (mp__model_params order, all tensors), then, for Meta-SGD only,
 * the inner rates (one per adapted element, in the same prompt-then-tensor
 * order). Entries the outer loop does not learn are 0 and never updated.
 *
 * Thread safety: an mp_meta is not thread-safe (one call at a time per
 * handle); internally it runs MP_CFG_THREADS workers. Results are
 * bit-identical for any thread count: per-task results are combined in
 * task order.
 *
 * OpenBLAS threads: the application's job. With MP_CFG_THREADS > 1, OpenBLAS
 * must run single-threaded, or its thread pool and the meta's workers
 * oversubscribe the cores (several times slower; docs/PERFORMANCE.md). The
 * library never changes OpenBLAS's process-wide thread count, and the only
 * sign of the problem is one MP_LOG_WARN message from mp_meta_create, which
 * is dropped unless a log callback is installed. So, before mp_meta_create:
 *   - start the process with OPENBLAS_NUM_THREADS=1 in its environment, or
 *     call OpenBLAS's openblas_set_num_threads(1) from the application;
 *   - check mp_blas_num_threads() == 1 (or install mp_set_log_callback with
 *     MP_LOG_WARN to see the warning).
 * With MP_CFG_THREADS = 1, OpenBLAS may use several threads (no warning).
 *
 * Unless stated otherwise a failing call returns a non-zero mp_status,
 * records a message (mp_last_error() and mp_meta_error()), and leaves the
 * meta, its model and prompt, and all out-parameters unchanged. A handle of
 * the wrong kind (each element of a tasks array too) gives
 * MP_ERR_INVALID_ARGUMENT (destroy: nothing freed), as described at the top
 * of metaprompt/core.h.
 */
#ifndef METAPROMPT_META_H
#define METAPROMPT_META_H
#include "metaprompt/core.h"
#include "metaprompt/tape.h"
#include "metaprompt/model.h"
#include "metaprompt/data.h"
#ifdef __cplusplus
extern "C" {
#endif

#ifndef MP_META_TYPEDEF
#define MP_META_TYPEDEF
typedef struct mp_meta mp_meta;
#endif

/* ---- configuration keys of the meta module (300..399) --------------------- */
/* int, default MP_META_MAML: the meta-learning algorithm (below). */
#define MP_CFG_META_ALGORITHM         300
/* int, default 1, 0..10000: inner-loop gradient steps per task in training. */
#define MP_CFG_META_INNER_STEPS       301
/* float, default 0.01, 0..1e6: inner-loop learning rate (Meta-SGD: the
 * initial value of every per-element rate). */
#define MP_CFG_META_INNER_LR          302
/* int, default MP_SCOPE_PROMPT: what the inner loop adapts (below). */
#define MP_CFG_META_SCOPE             303
/* int bit set, default 0, 0..15: what the outer loop learns (MP_LEARN_*).
 * 0 means "what the scope adapts" (prompt; prompt+head; prompt+head+backbone),
 * plus the inner rates for Meta-SGD. Independent of the scope otherwise. */
#define MP_CFG_META_LEARN             304
/* int, default MP_OPT_ADAM: the outer optimizer (below). */
#define MP_CFG_META_OPTIMIZER         305
/* float, default 0.001, 0..1e6: outer learning rate. */
#define MP_CFG_META_OUTER_LR          306
/* float, default 0, 0..0.999999: SGD momentum (v = mu v + g; p -= lr v). */
#define MP_CFG_META_MOMENTUM          307
/* float, default 0.9, 0..0.999999: Adam/AdamW first-moment decay. */
#define MP_CFG_META_BETA1             308
/* float, default 0.999, 0..0.999999: Adam/AdamW second-moment decay. */
#define MP_CFG_META_BETA2             309
/* float, default 1e-8, 1e-30..1: Adam/AdamW epsilon (added to sqrt(v_hat)). */
#define MP_CFG_META_EPSILON           310
/* float, default 0, 0..1e6: weight decay. SGD and Adam: L2 (g += wd p);
 * AdamW: decoupled (p -= lr wd p before the Adam update). */
#define MP_CFG_META_WEIGHT_DECAY      311
/* float, default 0 (off), 0..1e30: clip the meta-gradient to this global L2
 * norm (over all learned entries) before the optimizer sees it. */
#define MP_CFG_META_CLIP_NORM         312
/* int, default -1 (= the inner steps, following later changes of
 * MP_CFG_META_INNER_STEPS), -1..10000: inner steps used by mp_meta_adapt
 * and mp_meta_evaluate*. */
#define MP_CFG_META_EVAL_INNER_STEPS  313
/* MP_CFG_THREADS (core key): worker threads for meta-batches and evaluation.
 * MP_CFG_SEED (core key): reserved; the meta itself draws no random numbers. */

/* Algorithms (MP_CFG_META_ALGORITHM). */
#define MP_META_MAML     1 /* exact second-order MAML */
#define MP_META_FOMAML   2 /* first-order MAML */
#define MP_META_REPTILE  3 /* Reptile */
#define MP_META_METASGD  4 /* Meta-SGD: learned per-element inner rates, second order */

/* Scopes (MP_CFG_META_SCOPE): what the inner loop adapts. */
#define MP_SCOPE_PROMPT      1 /* the soft prompt only */
#define MP_SCOPE_PROMPT_HEAD 2 /* the prompt and the head tensors */
#define MP_SCOPE_ALL         3 /* prompt, head and backbone */

/* What the outer loop learns (MP_CFG_META_LEARN bit set). */
#define MP_LEARN_PROMPT   1
#define MP_LEARN_HEAD     2
#define MP_LEARN_BACKBONE 4
#define MP_LEARN_INNER_LR 8 /* Meta-SGD only */

/* Outer optimizers (MP_CFG_META_OPTIMIZER). */
#define MP_OPT_SGD   1 /* SGD with momentum (MP_CFG_META_MOMENTUM) */
#define MP_OPT_ADAM  2 /* Adam with bias correction */
#define MP_OPT_ADAMW 3 /* Adam with decoupled weight decay */

/* Statistics written by mp_meta_step / mp_meta_compute_gradients. */
#define MP_META_STAT_LOSS_BEFORE 0 /* mean query loss before adaptation */
#define MP_META_STAT_LOSS_AFTER  1 /* mean query loss after adaptation */
#define MP_META_STAT_ACC_BEFORE  2 /* mean query accuracy before (NaN: regression) */
#define MP_META_STAT_ACC_AFTER   3 /* mean query accuracy after (NaN: regression) */
#define MP_META_NUM_STATS        4

/* ---- lifetime --------------------------------------------------------------- */
/** Creates a meta-learner over `model` and `prompt` with the MP_CFG_META_*
 *  keys, MP_CFG_THREADS and MP_CFG_SEED of cfg (NULL: all defaults; cfg is
 *  read, not kept). model and prompt are BORROWED: they are the
 *  meta-parameters, updated in place by step/apply, and must outlive the
 *  meta and not be resized. The prompt must have the model's shape (P x d);
 *  a model without prompt (P == 0) takes prompt == NULL.
 *  Starts MP_CFG_THREADS - 1 worker threads (the caller is worker 0).
 *  With MP_CFG_THREADS > 1 and mp_blas_num_threads() > 1 it succeeds but
 *  logs MP_LOG_WARN (oversubscription; see the header comment: set
 *  OPENBLAS_NUM_THREADS=1 first); it never changes OpenBLAS's settings.
 *  Errors: MP_ERR_NULL_POINTER (out, model; prompt when P > 0),
 *  MP_ERR_SHAPE_MISMATCH (prompt shape), MP_ERR_INVALID_ARGUMENT (a key out of
 *  its enumeration, MP_LEARN_INNER_LR without Meta-SGD, a scope that adapts
 *  nothing or a learn set that learns nothing for this model),
 *  MP_ERR_OUT_OF_MEMORY, MP_ERR_INTERNAL (thread creation failed).
 *  On failure *out is unchanged. Thread-safe with respect to other handles. */
MP_API mp_status mp_meta_create(mp_meta **out, mp_model *model, mp_prompt *prompt, const mp_config *cfg);
/** Stops the worker threads and frees everything the meta owns (not the
 *  model or prompt). NULL is ignored. */
MP_API void mp_meta_destroy(mp_meta *meta);
/** Message of the last failed call on this meta ("" if none; "" for NULL;
 *  never NULL). */
MP_API const char *mp_meta_error(const mp_meta *meta);

/* ---- training ------------------------------------------------------------------ */
/** One meta-update: mp_meta_compute_gradients then mp_meta_apply_gradients.
 *  tasks: n_tasks >= 1 borrowed tasks (read only, may repeat), each with
 *  features matching the model input and labels (classifier, in
 *  [0, output_dim)) or targets (regression, output_dim per row).
 *  stats: NULL with n_stats == 0, or n_stats >= MP_META_NUM_STATS doubles
 *  receiving the MP_META_STAT_* means over the tasks.
 *  Errors: MP_ERR_NULL_POINTER, MP_ERR_INVALID_ARGUMENT (n_tasks == 0, task
 *  kind or shape not matching the model), MP_ERR_BUFFER_TOO_SMALL (stats),
 *  MP_ERR_NOT_FINITE (a loss or gradient is NaN/Inf, or the update would
 *  make a meta-parameter or optimizer state value NaN/Inf: no update, meta
 *  parameters, optimizer state, step count and stats unchanged, and a
 *  gradient set earlier with mp_meta_set_gradients stays pending),
 *  MP_ERR_RANGE (the step count cannot grow), MP_ERR_STATE (from a running
 *  evaluation's progress callback), MP_ERR_OUT_OF_MEMORY, or the status of
 *  a failing tape/model operation. */
MP_API mp_status mp_meta_step(mp_meta *meta, mp_task *const *tasks, size_t n_tasks, double *stats, size_t n_stats);
/** Computes the meta-gradient of a meta-batch (mean over tasks) into the
 *  meta's gradient buffer without updating anything else; arguments as
 *  mp_meta_step. Errors: as mp_meta_step. On failure the previous gradient
 *  buffer is kept. */
MP_API mp_status mp_meta_compute_gradients(mp_meta *meta, mp_task *const *tasks, size_t n_tasks, double *stats, size_t n_stats);
/** Length of the gradient vector (layout in the header comment): constant
 *  for the meta's lifetime. Errors: MP_ERR_NULL_POINTER. */
MP_API mp_status mp_meta_gradient_size(const mp_meta *meta, size_t *out);
/** Copies the gradient buffer into grad (len >= gradient size).
 *  Errors: MP_ERR_NULL_POINTER (meta, grad), MP_ERR_BUFFER_TOO_SMALL (len <
 *  gradient size; the size is named), MP_ERR_STATE (no gradient computed or
 *  set since the last apply). The message goes to mp_last_error() only. */
MP_API mp_status mp_meta_get_gradients(const mp_meta *meta, float *grad, size_t len);
/** Replaces the gradient buffer (e.g. after an external all-reduce) with
 *  the len values of grad (copied). Entries the meta does not learn are
 *  ignored. Errors: MP_ERR_NULL_POINTER (meta, grad), MP_ERR_SHAPE_MISMATCH
 *  (len != gradient size), MP_ERR_NOT_FINITE (a NaN/Inf value: index
 *  named), MP_ERR_STATE (from a running evaluation's progress callback).
 *  Nothing changes on failure. */
MP_API mp_status mp_meta_set_gradients(mp_meta *meta, const float *grad, size_t len);
/** Clips the gradient buffer (MP_CFG_META_CLIP_NORM), takes one optimizer
 *  step on the learned meta-parameters (model, prompt, Meta-SGD rates) and
 *  consumes the buffer. Every new value is checked before any is written.
 *  Errors: MP_ERR_NULL_POINTER, MP_ERR_STATE (no gradient to apply; or from
 *  a running evaluation's progress callback),
 *  MP_ERR_NOT_FINITE (the norm of the learned entries is not finite, or
 *  the update would make a meta-parameter or optimizer state value NaN/Inf,
 *  e.g. an overflowing step; the entry is named in gradient layout),
 *  MP_ERR_RANGE (the step count is already INT64_MAX). On failure nothing
 *  changes: the buffer stays pending, unclipped. */
MP_API mp_status mp_meta_apply_gradients(mp_meta *meta);
/** Number of optimizer steps applied so far (restored by checkpoints).
 *  Errors: MP_ERR_NULL_POINTER (meta, out). */
MP_API mp_status mp_meta_step_count(const mp_meta *meta, int64_t *out);

/* ---- inference -------------------------------------------------------------------- */
/** Adapts to one task: runs the inner loop (MP_CFG_META_EVAL_INNER_STEPS)
 *  from the current meta-parameters on the task's support set, without
 *  touching them. Writes the adapted prompt into out_prompt (a prompt of the
 *  same shape, e.g. a copy; NULL only when P == 0) and, when out_model is not
 *  NULL, all adapted parameters into out_model (a model with the same
 *  configuration as the meta's model, e.g. a clone: its parameters become
 *  the meta's with the adapted ones replaced; out_prompt and out_model must
 *  not be the meta's own prompt and model). Uses a scratch tape on the
 *  calling thread (allocated and freed per call). Not safe concurrently
 *  with a call that updates the meta; concurrent adapt calls are fine.
 *  Errors: MP_ERR_NULL_POINTER, MP_ERR_SHAPE_MISMATCH (out_prompt/out_model
 *  shapes), MP_ERR_INVALID_ARGUMENT (task; the meta's own prompt or model
 *  as an output), MP_ERR_NOT_FINITE, MP_ERR_OUT_OF_MEMORY. On failure
 *  out_prompt and out_model are unchanged. */
MP_API mp_status mp_meta_adapt(const mp_meta *meta, const mp_task *task, mp_prompt *out_prompt, mp_model *out_model);
/** Evaluates episodes first_episode .. first_episode + n_episodes - 1 of
 *  sampler: per task, adapt (as mp_meta_adapt) and measure the query
 *  accuracy (classifier) or mean squared error (regression). *mean is their
 *  mean, *ci95 the half-width of the 95% confidence interval
 *  1.96 * s / sqrt(n) with s the sample standard deviation (n - 1 in the
 *  denominator); NaN for n == 1. Parallel over the meta's threads; the
 *  result does not depend on the thread count; memory does not grow with
 *  n_episodes (tasks and tapes are reused). The meta-parameters are not
 *  changed. Errors: MP_ERR_NULL_POINTER, MP_ERR_INVALID_ARGUMENT
 *  (n_episodes == 0, tasks not matching the model), MP_ERR_RANGE (the last
 *  episode index would pass 2^64 - 1), MP_ERR_NOT_FINITE, MP_ERR_CANCELLED
 *  (the progress callback asked to stop), MP_ERR_STATE (called while an
 *  evaluation of this meta runs, i.e. from its progress callback), sampler
 *  and allocation errors. */
MP_API mp_status mp_meta_evaluate(mp_meta *meta, const mp_sampler *sampler, uint64_t first_episode, size_t n_episodes, double *mean, double *ci95);
/** As mp_meta_evaluate over the n_tasks >= 1 caller tasks (borrowed, read
 *  only). Errors: MP_ERR_NULL_POINTER (meta, tasks, mean, ci95, a NULL task:
 *  index named), MP_ERR_INVALID_ARGUMENT (n_tasks == 0, a task not matching
 *  the model: index named), MP_ERR_NOT_FINITE, MP_ERR_CANCELLED (the
 *  progress callback asked to stop), MP_ERR_STATE (as mp_meta_evaluate),
 *  MP_ERR_OUT_OF_MEMORY, or the status of a failing tape/model operation. */
MP_API mp_status mp_meta_evaluate_tasks(mp_meta *meta, mp_task *const *tasks, size_t n_tasks, double *mean, double *ci95);

/** Progress callback for mp_meta_evaluate*: called on the calling thread
 *  after each chunk of tasks with (done, total, user_data); a non-zero
 *  return stops the evaluation with MP_ERR_CANCELLED. It must not change
 *  what the evaluation reads: calls on the same meta that would change it
 *  or run its workers (step, compute/set/apply gradients, evaluate,
 *  set_eval_steps, set_int/set_float, a checkpoint load into it) return MP_ERR_STATE;
 *  getters, mp_meta_adapt and checkpoint saves are allowed. Changing the
 *  meta's model or prompt from the callback is the caller's error (not
 *  detected). */
typedef int32_t (*mp_meta_progress_fn)(uint64_t done, uint64_t total, void *user_data);
/** Installs (fn non-NULL) or removes (fn NULL) the progress callback.
 *  Errors: MP_ERR_NULL_POINTER (meta). */
MP_API mp_status mp_meta_set_progress(mp_meta *meta, mp_meta_progress_fn fn, void *user_data);

/** Changes the number of inner steps used by mp_meta_adapt and
 *  mp_meta_evaluate* (MP_CFG_META_EVAL_INNER_STEPS) without touching the
 *  meta-parameters, e.g. to report results after 1, 5 and 10 steps; -1
 *  (the key's default) makes them follow meta.inner_steps again, as
 *  mp_meta_set_int does (since 0.2.0; before, -1 was MP_ERR_RANGE).
 *  Errors: MP_ERR_NULL_POINTER, MP_ERR_RANGE (steps outside -1..10000),
 *  MP_ERR_STATE (from a running evaluation's progress callback). */
MP_API mp_status mp_meta_set_eval_steps(mp_meta *meta, int32_t steps);

/* ---- hyper-parameters after creation ---------------------------------------------- */
/** Reads a meta key's current value (MP_CFG_META_* integer keys and
 *  MP_CFG_THREADS): meta.learn resolved (never 0), meta.eval_inner_steps
 *  resolved (never -1: with -1 it is the current inner steps).
 *  Errors: MP_ERR_NULL_POINTER (meta, out), MP_ERR_NOT_FOUND (not a meta
 *  key), MP_ERR_INVALID_ARGUMENT (a float key); *out is written only on
 *  success. The message goes to mp_last_error() only (meta is const:
 *  getters may run concurrently). */
MP_API mp_status mp_meta_get_int(const mp_meta *meta, int32_t key, int64_t *out);
/** Reads a meta float key's current value (meta.inner_lr as the float the
 *  inner loop uses; for Meta-SGD, the value its learned rates were
 *  initialised to at mp_meta_create, not the rates themselves, which
 *  mp_meta_get_inner_lr returns and a checkpoint load replaces). Errors: as
 *  mp_meta_get_int (an integer key: MP_ERR_INVALID_ARGUMENT). */
MP_API mp_status mp_meta_get_float(const mp_meta *meta, int32_t key, double *out);
/** Changes an integer hyper-parameter between steps; it applies from the
 *  next call on, the meta-parameters, moments, step count and a pending
 *  gradient are kept. Settable: MP_CFG_META_INNER_STEPS,
 *  MP_CFG_META_EVAL_INNER_STEPS (-1: follow the inner steps) and
 *  MP_CFG_META_ALGORITHM among MAML, first-order MAML and Reptile, whose
 *  states are alike (derivative-order annealing: first order while the
 *  initialisation is poor, then exact second order; the result is what
 *  mp_checkpoint_load of the state into a new meta of that algorithm
 *  gives). Same ranges as mp_config_set_int.
 *  Errors: MP_ERR_NULL_POINTER (meta), MP_ERR_NOT_FOUND (not a meta key),
 *  MP_ERR_INVALID_ARGUMENT (a float key), MP_ERR_RANGE (value outside the
 *  key's range), MP_ERR_UNSUPPORTED (meta.scope, meta.learn,
 *  meta.optimizer and MP_CFG_THREADS, which shape the state, and switching
 *  to or from Meta-SGD, whose state holds learned rates), MP_ERR_STATE
 *  (from a running evaluation's progress callback). On error nothing
 *  changes. Not thread-safe: no other call on this meta may run meanwhile. */
MP_API mp_status mp_meta_set_int(mp_meta *meta, int32_t key, int64_t value);
/** Changes a float hyper-parameter between steps, e.g. an outer
 *  learning-rate schedule (warm-up, cosine decay) with any optimizer:
 *  MP_CFG_META_OUTER_LR, _MOMENTUM, _BETA1, _BETA2, _EPSILON,
 *  _WEIGHT_DECAY, _CLIP_NORM, and MP_CFG_META_INNER_LR (not for Meta-SGD,
 *  whose rates are learned: MP_ERR_UNSUPPORTED). Adam's moments and
 *  step count are kept, so its bias correction goes on; stepping on equals
 *  loading the state into a meta created with the new value.
 *  Errors: as mp_meta_set_int (an integer key: MP_ERR_INVALID_ARGUMENT),
 *  plus MP_ERR_NOT_FINITE (NaN/Inf). On error nothing changes. */
MP_API mp_status mp_meta_set_float(mp_meta *meta, int32_t key, double value);

/* ---- Meta-SGD rates ------------------------------------------------------------- */
/** Number of per-element inner rates (Meta-SGD: one per adapted element;
 *  0 for the other algorithms). Errors: MP_ERR_NULL_POINTER. */
MP_API mp_status mp_meta_inner_lr_count(const mp_meta *meta, size_t *out);
/** Copies the inner rates (prompt entries then adapted tensors in model
 *  order) into buf (len >= count; buf may be NULL when the count is 0).
 *  Errors: MP_ERR_NULL_POINTER (meta, buf), MP_ERR_BUFFER_TOO_SMALL (len <
 *  count; the count is named). */
MP_API mp_status mp_meta_get_inner_lr(const mp_meta *meta, float *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif
