/* Internal pieces of the meta module: outer optimizers on flat arrays,
 * statistics, the worker pool. Not installed. */
#ifndef MP_META_INTERNAL_H
#define MP_META_INTERNAL_H

#include "core/internal.h"

/* ---- outer optimizers ---------------------------------------------------------
 * One update of n parameters p with gradient g. m and v are the optimizer's
 * per-element state (SGD uses m as the velocity, v unused; may be NULL).
 * t is the 1-based number of this step (Adam bias correction). */
typedef struct {
    int32_t kind; /* MP_OPT_* */
    double lr, momentum, beta1, beta2, eps, weight_decay;
} mp__opt;

void mp__opt_update(const mp__opt *o, int64_t t, float *p, const float *g, float *m, float *v,
                    size_t n);
/* The same update as a dry run with the gradient gscale * g, writing
 * nothing: the index of the first element whose new p, m or v would not be
 * finite, or SIZE_MAX when all are (the outer update runs it first so that
 * a failing step changes nothing). */
size_t mp__opt_first_non_finite(const mp__opt *o, int64_t t, const float *p, const float *g, float gscale,
                                const float *m, const float *v, size_t n);
/* Sum of squares of g in double (for global-norm clipping). */
double mp__sum_squares(const float *g, size_t n);
/* Factor that brings a gradient of L2 norm `norm` to at most `clip`
 * (1 when clip == 0 or the norm is already small enough). */
double mp__clip_factor(double norm, double clip);

/* ---- statistics ----------------------------------------------------------------
 * Welford running mean/variance, fed in a fixed order so results do not
 * depend on threads. */
typedef struct {
    uint64_t n;
    double mean, m2;
} mp__running;

void mp__running_add(mp__running *r, double x);
/* Mean and the 95% half-width 1.96 * s / sqrt(n) (s with n - 1; NaN if n < 2). */
void mp__running_ci95(const mp__running *r, double *mean, double *ci95);

/* ---- worker pool ------------------------------------------------------------------
 * n_workers - 1 persistent threads plus the calling thread (worker 0).
 * mp__pool_run calls fn(ctx, worker, item) once for every item in
 * [0, n_items), items handed out dynamically, and returns when all are done.
 * Callers must make results depend on the item only (per-item slots). */
typedef struct mp__pool mp__pool;
typedef void (*mp__pool_fn)(void *ctx, int32_t worker, size_t item);

mp_status mp__pool_create(mp__pool **out, int32_t n_workers);
void mp__pool_destroy(mp__pool *pool);
void mp__pool_run(mp__pool *pool, size_t n_items, mp__pool_fn fn, void *ctx);
int32_t mp__pool_size(const mp__pool *pool);

/* ---- the meta handle ----------------------------------------------------------- */
#include "data/data_internal.h"
#include "model/model_internal.h"

/* What a run over one task produces (see task.c). */
#define MP__RUN_TRAIN 0 /* meta-gradient + stats */
#define MP__RUN_EVAL  1 /* metric after adaptation */
#define MP__RUN_ADAPT 2 /* adapted values */

/* Per-worker scratch: one tape reused across calls (reset, never freed
 * until destroy) and variable-id arrays sized for the model. */
typedef struct {
    mp_tape *tape;
    mp_var *base, *cur, *lrv, *grads; /* n_tensors each */
    mp_var *wrt;                      /* 2 * n_tensors + 2: variables a backward differentiates */
    float *values;                    /* first-order runs: the adapted values between
                                         inner steps (n_prompt + n_params floats) */
    float *scratch;                   /* query outputs, grown on demand */
    size_t scratch_cap;
    mp_task *task;                    /* sampler episodes during evaluation */
    mp__fwd_cache cache;              /* prompt-independent forward parts on tape (cleared at
                                         every reset of tape) */
    mp__tape_point frozen;            /* end of the task's frozen part (task.c start_tape) */
    mp__fwd_cache frozen_cache;       /* cache as it was there */
} mp__worker;

typedef struct {
    int32_t mode, steps, create_graph;
    int32_t want_before; /* TRAIN: statistics wanted (query loss before and after) */
    float *grad;        /* TRAIN: n_grad floats (zeroed and filled) */
    double stats[MP_META_NUM_STATS];
    double metric;      /* EVAL: accuracy or MSE after adaptation */
    float *out_prompt;  /* ADAPT: P*d floats */
    float *out_params;  /* ADAPT: param_count floats, pre-filled with the base values */
} mp__run;

struct mp_meta {
    uint32_t handle_kind; /* MP__KIND_META (src/core/internal.h) */
    char err[MP_ERRMSG_LEN];
    int32_t busy; /* an mp_meta_evaluate* is running (its progress callback may call in) */
    mp_model *model;
    mp_prompt *prompt;
    /* configuration (resolved) */
    int32_t algo, inner_steps, eval_steps, scope, learn, threads;
    float inner_lr;
    double clip;
    mp__opt opt;
    /* layout */
    int32_t n_tensors, P, d, classifier, in_dim, out_dim;
    size_t n_prompt, n_params, n_lr, n_grad;
    uint8_t *adapted, *learned; /* per tensor */
    size_t *lr_off;             /* per adapted tensor: offset into lr */
    float *lr;                  /* Meta-SGD rates (n_lr) */
    /* outer optimisation */
    float *grad, *m1, *m2;      /* n_grad each */
    int32_t has_grad;
    int64_t t;
    /* workers and per-task slots */
    mp__pool *pool;
    mp__worker *w;
    size_t slot_cap;
    float *slot_grad;           /* slot_cap * n_grad (training only) */
    size_t slot_grad_cap;
    mp__run *slot_run;
    mp_status *slot_st;
    char *slot_err;             /* slot_cap * MP_ERRMSG_LEN */
    mp_meta_progress_fn progress;
    void *progress_ud;
};

mp_status mp__worker_init(mp__worker *w, const mp_meta *m);
void mp__worker_free(mp__worker *w);
/* Runs the inner loop (and what r->mode asks for) on one task. The task
 * view must have been validated (mp__meta_check_task). */
mp_status mp__run_task(const mp_meta *m, mp__worker *w, const mp__task_view *tv, mp__run *r);
/* Checks a task against the model; messages name it "task <index>" (a
 * batch) or, with index MP__SINGLE_TASK, "task" (the argument of a
 * single-task call such as mp_meta_adapt). */
#define MP__SINGLE_TASK SIZE_MAX
mp_status mp__meta_check_task(const mp_meta *m, char *herr, const char *fn, const mp__task_view *tv,
                              size_t index);
/* Per-task result slots of the meta (meta.c), shared with evaluation. */
mp_status mp__meta_slots(mp_meta *m, size_t n, int32_t with_grad);
void mp__meta_slot_status(mp_meta *m, size_t i, mp_status st);
mp_status mp__meta_first_failure(mp_meta *m, size_t n, const char *fn, size_t offset);

/* The inner steps of adapt and evaluation: eval_steps, or (-1, the
 * default) whatever the training inner steps are now. */
static inline int32_t mp__meta_eval_steps(const mp_meta *m)
{
    return m->eval_steps < 0 ? m->inner_steps : m->eval_steps;
}

/* MP_ERR_STATE (in herr) when an evaluation of m is running: the progress
 * callback must not change the meta, or run its workers, mid-evaluation
 * (the evaluation promises unchanged meta-parameters and results that do not
 * depend on the thread count). */
static inline mp_status mp__meta_idle(const mp_meta *m, char *herr, const char *fn)
{
    if (!m->busy) return MP_OK;
    return mp__fail(herr, MP_ERR_STATE,
                    "%s: the meta is being evaluated (called from its progress callback?): it cannot be "
                    "changed or run until mp_meta_evaluate returns", fn);
}

#endif
