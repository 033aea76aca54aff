/* The meta handle: configuration, the meta-batch over worker threads, the
 * mean-over-tasks meta-gradient and the outer update. */
#include "meta/meta_internal.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* ---- configuration ------------------------------------------------------------------ */
static mp_status read_config(mp_meta *m, const mp_config *cfg)
{
    m->algo = (int32_t)mp__cfg_int(cfg, MP_CFG_META_ALGORITHM);
    m->inner_steps = (int32_t)mp__cfg_int(cfg, MP_CFG_META_INNER_STEPS);
    m->eval_steps = (int32_t)mp__cfg_int(cfg, MP_CFG_META_EVAL_INNER_STEPS); /* -1: follows inner_steps */
    m->inner_lr = (float)mp__cfg_float(cfg, MP_CFG_META_INNER_LR);
    m->scope = (int32_t)mp__cfg_int(cfg, MP_CFG_META_SCOPE);
    m->learn = (int32_t)mp__cfg_int(cfg, MP_CFG_META_LEARN);
    m->threads = (int32_t)mp__cfg_int(cfg, MP_CFG_THREADS);
    m->clip = mp__cfg_float(cfg, MP_CFG_META_CLIP_NORM);
    m->opt.kind = (int32_t)mp__cfg_int(cfg, MP_CFG_META_OPTIMIZER);
    m->opt.lr = mp__cfg_float(cfg, MP_CFG_META_OUTER_LR);
    m->opt.momentum = mp__cfg_float(cfg, MP_CFG_META_MOMENTUM);
    m->opt.beta1 = mp__cfg_float(cfg, MP_CFG_META_BETA1);
    m->opt.beta2 = mp__cfg_float(cfg, MP_CFG_META_BETA2);
    m->opt.eps = mp__cfg_float(cfg, MP_CFG_META_EPSILON);
    m->opt.weight_decay = mp__cfg_float(cfg, MP_CFG_META_WEIGHT_DECAY);
    /* A config only holds values inside each key's range, so the
     * enumerations are already valid; the learn set needs resolving. */
    if (m->learn == 0) {
        static const int32_t by_scope[4] = {0, MP_LEARN_PROMPT, MP_LEARN_PROMPT | MP_LEARN_HEAD,
                                            MP_LEARN_PROMPT | MP_LEARN_HEAD | MP_LEARN_BACKBONE};
        m->learn = by_scope[m->scope];
        if (m->algo == MP_META_METASGD) m->learn |= MP_LEARN_INNER_LR;
    }
    MP_REQUIRE(!(m->learn & MP_LEARN_INNER_LR) || m->algo == MP_META_METASGD, NULL,
               MP_ERR_INVALID_ARGUMENT,
               "mp_meta_create: MP_LEARN_INNER_LR in 'meta.learn' needs algorithm Meta-SGD (%d), got %d",
               MP_META_METASGD, (int)m->algo);
    return MP_OK;
}

/* Which tensors the inner loop adapts and the outer loop learns; sizes of
 * the gradient vector and the Meta-SGD rates. */
static mp_status plan_layout(mp_meta *m)
{
    size_t n_adapt = m->n_prompt, n_learn = (m->learn & MP_LEARN_PROMPT) ? m->n_prompt : 0;
    for (int32_t i = 0; i < m->n_tensors; i++) {
        const mp__param_info *pi = mp__model_tensor(m->model, i);
        size_t len = (size_t)pi->rows * (size_t)pi->cols;
        int32_t head = pi->group == MP__GROUP_HEAD;
        m->adapted[i] = m->scope == MP_SCOPE_ALL || (m->scope == MP_SCOPE_PROMPT_HEAD && head);
        m->learned[i] = (head && (m->learn & MP_LEARN_HEAD)) || (!head && (m->learn & MP_LEARN_BACKBONE));
        if (m->adapted[i]) {
            m->lr_off[i] = n_adapt;
            n_adapt += len;
        }
        if (m->learned[i]) n_learn += len;
    }
    MP_REQUIRE(n_adapt > 0, NULL, MP_ERR_INVALID_ARGUMENT,
               "mp_meta_create: 'meta.scope' %d adapts no parameter of this model (prompt has %d rows)",
               (int)m->scope, (int)m->P);
    if (m->algo == MP_META_METASGD) {
        m->n_lr = n_adapt;
        if (m->learn & MP_LEARN_INNER_LR) n_learn += n_adapt;
    }
    MP_REQUIRE(n_learn > 0, NULL, MP_ERR_INVALID_ARGUMENT,
               "mp_meta_create: 'meta.learn' %d learns no parameter of this model", (int)m->learn);
    m->n_grad = m->n_prompt + m->n_params + m->n_lr;
    return MP_OK;
}

static mp_status alloc_state(mp_meta *m)
{
    size_t nt = (size_t)(m->n_tensors > 0 ? m->n_tensors : 1);
    m->adapted = mp__calloc(2 * nt, 1);
    m->lr_off = mp__calloc(nt, sizeof(size_t));
    m->w = mp__calloc((size_t)m->threads, sizeof(mp__worker));
    if (!m->adapted || !m->lr_off || !m->w)
        return mp__fail(NULL, MP_ERR_OUT_OF_MEMORY, "mp_meta_create: out of memory");
    m->learned = m->adapted + nt;
    return MP_OK;
}

static mp_status alloc_vectors(mp_meta *m)
{
    m->grad = mp__calloc(m->n_grad, sizeof(float));
    m->m1 = mp__calloc(m->n_grad, sizeof(float));
    m->m2 = mp__calloc(m->n_grad, sizeof(float));
    m->lr = mp__calloc(m->n_lr ? m->n_lr : 1, sizeof(float));
    if (!m->grad || !m->m1 || !m->m2 || !m->lr)
        return mp__fail(NULL, MP_ERR_OUT_OF_MEMORY, "mp_meta_create: out of memory (%zu floats)",
                        4 * m->n_grad);
    for (size_t i = 0; i < m->n_lr; i++) m->lr[i] = m->inner_lr;
    return MP_OK;
}

static mp_status start_workers(mp_meta *m)
{
    for (int32_t i = 0; i < m->threads; i++) MP_TRY(mp__worker_init(&m->w[i], m));
    MP_TRY(mp__pool_create(&m->pool, m->threads));
    if (m->threads > 1 && mp_blas_num_threads() > 1)
        mp__log(MP_LOG_WARN,
                "mp_meta_create: %d meta threads with %d OpenBLAS threads oversubscribe the cores; "
                "run OpenBLAS single-threaded (OPENBLAS_NUM_THREADS=1)",
                (int)m->threads, (int)mp_blas_num_threads());
    return MP_OK;
}

static mp_status check_prompt(const mp_model *model, const mp_prompt *prompt, int32_t P, int32_t d)
{
    if (P == 0 && prompt == NULL) return MP_OK;
    MP_REQUIRE_HANDLE(prompt, MP__KIND_PROMPT, NULL, "mp_meta_create");
    int32_t r = 0, c = 0;
    MP_TRY(mp_prompt_shape(prompt, &r, &c));
    MP_REQUIRE(r == P && c == d, NULL, MP_ERR_SHAPE_MISMATCH,
               "mp_meta_create: prompt is %d x %d, the model expects %d x %d", (int)r, (int)c,
               (int)P, (int)d);
    (void)model;
    return MP_OK;
}

static mp_status build(mp_meta *m, const mp_config *cfg)
{
    MP_TRY(read_config(m, cfg));
    MP_TRY(alloc_state(m));
    MP_TRY(plan_layout(m));
    MP_TRY(alloc_vectors(m));
    return start_workers(m);
}

mp_status mp_meta_create(mp_meta **out, mp_model *model, mp_prompt *prompt, const mp_config *cfg)
{
    MP_REQUIRE_PTR(out, NULL, "mp_meta_create");
    MP_REQUIRE_HANDLE(model, MP__KIND_MODEL, NULL, "mp_meta_create");
    MP_OPTIONAL_HANDLE(cfg, MP__KIND_CONFIG, NULL, "mp_meta_create");
    int32_t P = mp__model_prompt_rows(model), d = mp__model_prompt_cols(model);
    MP_TRY(check_prompt(model, prompt, P, d));
    mp_meta *m = mp__calloc(1, sizeof *m);
    MP_REQUIRE(m, NULL, MP_ERR_OUT_OF_MEMORY, "mp_meta_create: out of memory");
    m->handle_kind = MP__KIND_META;
    m->model = model;
    m->prompt = P > 0 ? prompt : NULL;
    m->P = P;
    m->d = d;
    m->n_prompt = (size_t)P * (size_t)d;
    m->n_tensors = mp__model_num_tensors(model);
    m->n_params = mp__model_param_count(model);
    m->classifier = mp__model_is_classifier(model);
    m->in_dim = mp__model_input_dim(model);
    m->out_dim = mp__model_output_dim(model);
    mp_status st = build(m, cfg);
    if (st != MP_OK) {
        mp_meta_destroy(m);
        return st;
    }
    *out = m;
    return MP_OK;
}

void mp_meta_destroy(mp_meta *m)
{
    if (!mp__handle_destroying(m, MP__KIND_META, "meta", "mp_meta_destroy")) return;
    mp__pool_destroy(m->pool);
    if (m->w)
        for (int32_t i = 0; i < m->threads; i++) mp__worker_free(&m->w[i]);
    mp__free(m->w);
    mp__free(m->adapted);
    mp__free(m->lr_off);
    mp__free(m->lr);
    mp__free(m->grad);
    mp__free(m->m1);
    mp__free(m->m2);
    mp__free(m->slot_grad);
    mp__free(m->slot_run);
    mp__free(m->slot_st);
    mp__free(m->slot_err);
    mp__free(m);
}

const char *mp_meta_error(const mp_meta *m)
{
    const char *bad = mp__handle_error(m, MP__KIND_META, "meta", "mp_meta_error");
    return bad ? bad : m->err;
}

/* ---- per-task slots --------------------------------------------------------------------- */
/* Grows the per-task result slots (kept across calls: no allocation once
 * the largest batch has been seen). On failure nothing changes. */
mp_status mp__meta_slots(mp_meta *m, size_t n, int32_t with_grad)
{
    if (n > m->slot_cap) {
        mp__run *run = mp__calloc(n, sizeof *run);
        mp_status *st = mp__calloc(n, sizeof *st);
        char *err = mp__calloc(n, MP_ERRMSG_LEN);
        if (!run || !st || !err) {
            mp__free(run);
            mp__free(st);
            mp__free(err);
            return mp__fail(m->err, MP_ERR_OUT_OF_MEMORY, "mp_meta: out of memory (%zu task slots)", n);
        }
        mp__free(m->slot_run);
        mp__free(m->slot_st);
        mp__free(m->slot_err);
        m->slot_run = run;
        m->slot_st = st;
        m->slot_err = err;
        m->slot_cap = n;
    }
    if (with_grad && n > m->slot_grad_cap) {
        size_t total;
        float *g = NULL;
        if (mp__mul_size(n, m->n_grad, &total) == 0) g = mp__calloc(total, sizeof(float));
        if (!g) return mp__fail(m->err, MP_ERR_OUT_OF_MEMORY, "mp_meta: out of memory (%zu x %zu gradient floats)", n, m->n_grad);
        mp__free(m->slot_grad);
        m->slot_grad = g;
        m->slot_grad_cap = n;
    }
    return MP_OK;
}

/* Records a worker's failure in its slot: the message lives in the worker
 * thread's thread-local buffer, so it is copied for the caller's thread. */
void mp__meta_slot_status(mp_meta *m, size_t i, mp_status st)
{
    m->slot_st[i] = st;
    if (st != MP_OK) snprintf(m->slot_err + i * MP_ERRMSG_LEN, MP_ERRMSG_LEN, "%s", mp_last_error());
}

/* First failing slot in task order (deterministic whatever the threads),
 * reported as fn's with the task's index, offset + slot. Workers report as
 * "mp_meta: ..." (they serve every public function); a task check already
 * names fn and the task. */
mp_status mp__meta_first_failure(mp_meta *m, size_t n, const char *fn, size_t offset)
{
    for (size_t i = 0; i < n; i++) {
        mp_status st = m->slot_st[i];
        if (st == MP_OK) continue;
        const char *msg = m->slot_err + i * MP_ERRMSG_LEN;
        char ctx[48];
        snprintf(ctx, sizeof ctx, "%s: task %zu ", fn, offset + i);
        if (strncmp(msg, ctx, strlen(ctx)) == 0) return mp__fail(m->err, st, "%s", msg);
        snprintf(ctx, sizeof ctx, "task %zu", offset + i);
        return mp__fail_in(m->err, st, fn, ctx, "mp_meta", msg);
    }
    return MP_OK;
}

/* ---- meta-batch ------------------------------------------------------------------------------ */
typedef struct {
    mp_meta *m;
    mp_task *const *tasks;
} train_job;

static void train_item(void *ctx, int32_t worker, size_t i)
{
    train_job *j = ctx;
    mp_meta *m = j->m;
    mp__task_view tv;
    mp__task_get_view(j->tasks[i], &tv);
    mp__run *r = &m->slot_run[i];
    mp__meta_slot_status(m, i, mp__run_task(m, &m->w[worker], &tv, r));
}

static mp_status check_batch(mp_meta *m, const char *fn, mp_task *const *tasks, size_t n,
                             const double *stats, size_t n_stats)
{
    MP_REQUIRE_PTR(tasks, m->err, fn);
    MP_REQUIRE(n > 0, m->err, MP_ERR_INVALID_ARGUMENT, "%s: n_tasks must be >= 1, got 0", fn);
    MP_REQUIRE(stats || n_stats == 0, m->err, MP_ERR_NULL_POINTER,
               "%s: argument 'stats' is NULL but n_stats is %zu", fn, n_stats);
    MP_REQUIRE(!stats || n_stats >= MP_META_NUM_STATS, m->err, MP_ERR_BUFFER_TOO_SMALL,
               "%s: 'stats' has room for n_stats = %zu doubles, %d needed", fn, n_stats, MP_META_NUM_STATS);
    MP_TRY(mp__require_handles(m->err, (const void *const *)tasks, n, MP__KIND_TASK, "tasks", fn));
    for (size_t i = 0; i < n; i++) {
        mp__task_view tv;
        mp__task_get_view(tasks[i], &tv);
        MP_TRY(mp__meta_check_task(m, m->err, fn, &tv, i));
    }
    return MP_OK;
}

static int all_finite(const float *g, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(g[i])) return 0;
    return 1;
}

/* acc += g. Blocks of 8 with restrict let -O2's cheap vectoriser use SIMD
 * (the slots share one array, so the compiler cannot prove no aliasing). */
static void add_into(float *restrict acc, const float *restrict g, size_t n)
{
    size_t k = 0;
    for (; k + 8 <= n; k += 8)
        for (size_t j = 0; j < 8; j++) acc[k + j] += g[k + j];
    for (; k < n; k++) acc[k] += g[k];
}

/* Sums the per-task gradients in task order into slot 0 and divides by n
 * there: the meta-gradient is the MEAN over the meta-batch (left in
 * m->slot_grad, nothing else changed). A NaN/Inf in any task makes the sum
 * non-finite, so one check of the sum covers them all. The MP_META_STAT_*
 * means go to stats (MP_META_NUM_STATS doubles). */
static mp_status reduce_batch(mp_meta *m, const char *fn, size_t n, double *stats)
{
    float *acc = m->slot_grad;
    for (size_t i = 1; i < n; i++) add_into(acc, m->slot_grad + i * m->n_grad, m->n_grad);
    MP_REQUIRE(all_finite(acc, m->n_grad), m->err, MP_ERR_NOT_FINITE,
               "%s: the meta-gradient is not finite; no update", fn);
    const float inv = 1.0f / (float)n;
    for (size_t k = 0; k < m->n_grad; k++) acc[k] *= inv;
    for (int s = 0; s < MP_META_NUM_STATS; s++) {
        double sum = 0.0;
        for (size_t i = 0; i < n; i++) sum += m->slot_run[i].stats[s];
        stats[s] = sum / (double)n;
    }
    return MP_OK;
}

/* The meta-gradient of a batch into m->slot_grad (slot 0) and its
 * statistics into st; the meta is otherwise unchanged. */
static mp_status compute(mp_meta *m, const char *fn, mp_task *const *tasks, size_t n, const double *stats,
                         size_t n_stats, double *st)
{
    MP_TRY(check_batch(m, fn, tasks, n, stats, n_stats));
    MP_TRY(mp__meta_slots(m, n, 1));
    int32_t second = m->algo == MP_META_MAML || m->algo == MP_META_METASGD;
    for (size_t i = 0; i < n; i++) {
        mp__run *r = &m->slot_run[i];
        memset(r, 0, sizeof *r);
        r->mode = MP__RUN_TRAIN;
        r->steps = m->inner_steps;
        r->create_graph = second;
        r->want_before = stats != NULL;
        r->grad = m->slot_grad + i * m->n_grad;
    }
    train_job j = {m, tasks};
    mp__pool_run(m->pool, n, train_item, &j);
    MP_TRY(mp__meta_first_failure(m, n, fn, 0));
    return reduce_batch(m, fn, n, st);
}

static void copy_stats(double *stats, const double *st)
{
    if (stats) memcpy(stats, st, MP_META_NUM_STATS * sizeof(double));
}

static mp_status apply(mp_meta *m, const char *fn, float *grad);

mp_status mp_meta_compute_gradients(mp_meta *m, mp_task *const *tasks, size_t n, double *stats,
                                    size_t n_stats)
{
    MP_REQUIRE_HANDLE_ARG(m, "meta", MP__KIND_META, NULL, "mp_meta_compute_gradients");
    MP_TRY(mp__meta_idle(m, m->err, "mp_meta_compute_gradients"));
    double st[MP_META_NUM_STATS];
    MP_TRY(compute(m, "mp_meta_compute_gradients", tasks, n, stats, n_stats, st));
    memcpy(m->grad, m->slot_grad, m->n_grad * sizeof(float));
    m->has_grad = 1;
    copy_stats(stats, st);
    return MP_OK;
}

/* The step applies the batch's gradient straight from its slot: a failing
 * step (computation or update) leaves the gradient buffer, and a gradient
 * set earlier by the caller, as they were. A successful one leaves no
 * pending gradient, as compute + apply would. */
mp_status mp_meta_step(mp_meta *m, mp_task *const *tasks, size_t n, double *stats, size_t n_stats)
{
    MP_REQUIRE_HANDLE_ARG(m, "meta", MP__KIND_META, NULL, "mp_meta_step");
    MP_TRY(mp__meta_idle(m, m->err, "mp_meta_step"));
    double st[MP_META_NUM_STATS];
    MP_TRY(compute(m, "mp_meta_step", tasks, n, stats, n_stats, st));
    MP_TRY(apply(m, "mp_meta_step", m->slot_grad));
    m->has_grad = 0;
    copy_stats(stats, st);
    return MP_OK;
}

/* ---- gradients in and out ------------------------------------------------------------------- */
mp_status mp_meta_gradient_size(const mp_meta *m, size_t *out)
{
    MP_REQUIRE_HANDLE_ARG(m, "meta", MP__KIND_META, NULL, "mp_meta_gradient_size");
    MP_REQUIRE_PTR(out, NULL, "mp_meta_gradient_size");
    *out = m->n_grad;
    return MP_OK;
}

mp_status mp_meta_get_gradients(const mp_meta *m, float *grad, size_t len)
{
    MP_REQUIRE_HANDLE_ARG(m, "meta", MP__KIND_META, NULL, "mp_meta_get_gradients");
    char *herr = NULL;
    MP_REQUIRE_PTR(grad, herr, "mp_meta_get_gradients");
    MP_REQUIRE(len >= m->n_grad, herr, MP_ERR_BUFFER_TOO_SMALL,
               "mp_meta_get_gradients: 'grad' has room for len = %zu floats, %zu needed (the gradient size)",
               len, m->n_grad);
    MP_REQUIRE(m->has_grad, herr, MP_ERR_STATE,
               "mp_meta_get_gradients: no gradient computed or set since the last apply");
    memcpy(grad, m->grad, m->n_grad * sizeof(float));
    return MP_OK;
}

mp_status mp_meta_set_gradients(mp_meta *m, const float *grad, size_t len)
{
    MP_REQUIRE_HANDLE_ARG(m, "meta", MP__KIND_META, NULL, "mp_meta_set_gradients");
    MP_TRY(mp__meta_idle(m, m->err, "mp_meta_set_gradients"));
    MP_REQUIRE_PTR(grad, m->err, "mp_meta_set_gradients");
    MP_REQUIRE(len == m->n_grad, m->err, MP_ERR_SHAPE_MISMATCH,
               "mp_meta_set_gradients: 'len' must be the gradient size %zu, got %zu", m->n_grad, len);
    for (size_t i = 0; i < len; i++)
        MP_REQUIRE(isfinite(grad[i]), m->err, MP_ERR_NOT_FINITE,
                   "mp_meta_set_gradients: grad[%zu] is not finite (%g)", i, (double)grad[i]);
    memcpy(m->grad, grad, len * sizeof(float));
    m->has_grad = 1;
    return MP_OK;
}

/* ---- the outer update --------------------------------------------------------------------- */
/* Visits every learned range of the meta-parameters: (param, offset in the
 * gradient vector, length); stops at the first range for which fn returns
 * non-zero. */
typedef struct {
    float *grad;   /* the gradient vector being applied */
    double ss;     /* sum of squares */
    float scale;   /* clipping factor */
    size_t bad;    /* dry run: gradient index of the first non-finite result */
} update_ctx;
typedef int (*range_fn)(mp_meta *m, float *p, size_t off, size_t n, update_ctx *u);

static int for_learned(mp_meta *m, range_fn fn, update_ctx *u)
{
    if (m->P > 0 && (m->learn & MP_LEARN_PROMPT) && fn(m, mp__prompt_data(m->prompt), 0, m->n_prompt, u))
        return 1;
    float *params = mp__model_params(m->model);
    for (int32_t i = 0; i < m->n_tensors; i++) {
        if (!m->learned[i]) continue;
        const mp__param_info *pi = mp__model_tensor(m->model, i);
        if (fn(m, params + pi->offset, m->n_prompt + pi->offset, (size_t)pi->rows * (size_t)pi->cols, u))
            return 1;
    }
    if (m->n_lr && (m->learn & MP_LEARN_INNER_LR)) return fn(m, m->lr, m->n_prompt + m->n_params, m->n_lr, u);
    return 0;
}

static int add_squares(mp_meta *m, float *p, size_t off, size_t n, update_ctx *u)
{
    (void)m;
    (void)p;
    u->ss += mp__sum_squares(u->grad + off, n);
    return 0;
}

static int check_range(mp_meta *m, float *p, size_t off, size_t n, update_ctx *u)
{
    size_t i = mp__opt_first_non_finite(&m->opt, m->t + 1, p, u->grad + off, u->scale, m->m1 + off,
                                        m->m2 + off, n);
    if (i == SIZE_MAX) return 0;
    u->bad = off + i;
    return 1;
}

static int scale_range(mp_meta *m, float *p, size_t off, size_t n, update_ctx *u)
{
    (void)m;
    (void)p;
    for (size_t i = 0; i < n; i++) u->grad[off + i] *= u->scale;
    return 0;
}

static int update_range(mp_meta *m, float *p, size_t off, size_t n, update_ctx *u)
{
    mp__opt_update(&m->opt, m->t + 1, p, u->grad + off, m->m1 + off, m->m2 + off, n);
    return 0;
}

/* Clips grad and takes one optimizer step with it. A dry run first checks
 * that every new value (meta-parameters and optimizer state) is finite,
 * so a failure changes nothing, grad included. */
static mp_status apply(mp_meta *m, const char *fn, float *grad)
{
    MP_REQUIRE(m->t < INT64_MAX, m->err, MP_ERR_RANGE, "%s: the step count %lld cannot grow", fn,
               (long long)m->t);
    update_ctx u = {grad, 0.0, 1.0f, SIZE_MAX};
    for_learned(m, add_squares, &u);
    MP_REQUIRE(isfinite(u.ss), m->err, MP_ERR_NOT_FINITE,
               "%s: the gradient norm is not finite; no update", fn);
    u.scale = (float)mp__clip_factor(sqrt(u.ss), m->clip);
    if (for_learned(m, check_range, &u))
        return mp__fail(m->err, MP_ERR_NOT_FINITE,
                        "%s: the update would make meta-parameter or optimizer state entry %zu (gradient "
                        "layout) non-finite (outer learning rate %g, gradient %g); no update",
                        fn, u.bad, m->opt.lr, (double)grad[u.bad]);
    if (u.scale != 1.0f) for_learned(m, scale_range, &u);
    for_learned(m, update_range, &u);
    m->t++;
    return MP_OK;
}

mp_status mp_meta_apply_gradients(mp_meta *m)
{
    MP_REQUIRE_HANDLE_ARG(m, "meta", MP__KIND_META, NULL, "mp_meta_apply_gradients");
    MP_TRY(mp__meta_idle(m, m->err, "mp_meta_apply_gradients"));
    MP_REQUIRE(m->has_grad, m->err, MP_ERR_STATE,
               "mp_meta_apply_gradients: no gradient computed or set since the last apply");
    MP_TRY(apply(m, "mp_meta_apply_gradients", m->grad));
    m->has_grad = 0;
    return MP_OK;
}

mp_status mp_meta_step_count(const mp_meta *m, int64_t *out)
{
    MP_REQUIRE_HANDLE_ARG(m, "meta", MP__KIND_META, NULL, "mp_meta_step_count");
    MP_REQUIRE_PTR(out, NULL, "mp_meta_step_count");
    *out = m->t;
    return MP_OK;
}

/* ---- Meta-SGD rates ----------------------------------------------------------------------------- */
mp_status mp_meta_inner_lr_count(const mp_meta *m, size_t *out)
{
    MP_REQUIRE_HANDLE_ARG(m, "meta", MP__KIND_META, NULL, "mp_meta_inner_lr_count");
    MP_REQUIRE_PTR(out, NULL, "mp_meta_inner_lr_count");
    *out = m->n_lr;
    return MP_OK;
}

mp_status mp_meta_get_inner_lr(const mp_meta *m, float *buf, size_t len)
{
    MP_REQUIRE_HANDLE_ARG(m, "meta", MP__KIND_META, NULL, "mp_meta_get_inner_lr");
    char *herr = NULL;
    MP_REQUIRE(buf || m->n_lr == 0, herr, MP_ERR_NULL_POINTER, "mp_meta_get_inner_lr: argument 'buf' is NULL");
    MP_REQUIRE(len >= m->n_lr, herr, MP_ERR_BUFFER_TOO_SMALL,
               "mp_meta_get_inner_lr: 'buf' has room for len = %zu floats, %zu needed (the rate count)", len,
               m->n_lr);
    if (m->n_lr) memcpy(buf, m->lr, m->n_lr * sizeof(float));
    return MP_OK;
}
