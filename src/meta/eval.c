/* Inference with a meta-learner: adapt to one task, evaluate many tasks
 * with a 95% confidence interval. Evaluation runs in chunks of tasks over
 * the worker pool; per-task metrics land in slots and are folded into the
 * running mean in task order, so the result does not depend on threads and
 * memory does not grow with the number of tasks. */
#include "meta/meta_internal.h"

#include <math.h>
#include <string.h>

mp_status mp_meta_set_progress(mp_meta *m, mp_meta_progress_fn fn, void *user_data)
{
    MP_REQUIRE_HANDLE_ARG(m, "meta", MP__KIND_META, NULL, "mp_meta_set_progress");
    m->progress = fn;
    m->progress_ud = fn ? user_data : NULL;
    return MP_OK;
}

mp_status mp_meta_set_eval_steps(mp_meta *m, int32_t steps)
{
    MP_REQUIRE_HANDLE_ARG(m, "meta", MP__KIND_META, NULL, "mp_meta_set_eval_steps");
    MP_TRY(mp__meta_idle(m, m->err, "mp_meta_set_eval_steps"));
    MP_REQUIRE(steps >= -1 && steps <= 10000, m->err, MP_ERR_RANGE,
               "mp_meta_set_eval_steps: 'steps' must be in [-1, 10000] (-1: follow meta.inner_steps), got %d",
               (int)steps);
    m->eval_steps = steps;
    return MP_OK;
}

/* ---- adapt ------------------------------------------------------------------------- */
static mp_status check_out_model(const mp_meta *m, const mp_model *out)
{
    const char *fn = "mp_meta_adapt";
    MP_REQUIRE(out != m->model, NULL, MP_ERR_INVALID_ARGUMENT,
               "%s: 'out_model' must not be the meta's own model (pass a clone)", fn);
    MP_REQUIRE(mp__model_param_count(out) == m->n_params && mp__model_num_tensors(out) == m->n_tensors,
               NULL, MP_ERR_SHAPE_MISMATCH,
               "%s: 'out_model' has %zu parameters in %d tensors, expected %zu in %d", fn,
               mp__model_param_count(out), (int)mp__model_num_tensors(out), m->n_params,
               (int)m->n_tensors);
    for (int32_t i = 0; i < m->n_tensors; i++) {
        const mp__param_info *a = mp__model_tensor(m->model, i), *b = mp__model_tensor(out, i);
        MP_REQUIRE(a->rows == b->rows && a->cols == b->cols && a->offset == b->offset, NULL,
                   MP_ERR_SHAPE_MISMATCH, "%s: 'out_model' tensor %d '%s' is %d x %d, expected %d x %d",
                   fn, (int)i, b->name, (int)b->rows, (int)b->cols, (int)a->rows, (int)a->cols);
    }
    return MP_OK;
}

static mp_status check_adapt_args(const mp_meta *m, const mp_task *task, const mp_prompt *out_prompt,
                                  const mp_model *out_model, mp__task_view *tv)
{
    const char *fn = "mp_meta_adapt";
    MP_REQUIRE_HANDLE(task, MP__KIND_TASK, NULL, fn);
    MP_OPTIONAL_HANDLE(out_prompt, MP__KIND_PROMPT, NULL, fn);
    MP_OPTIONAL_HANDLE(out_model, MP__KIND_MODEL, NULL, fn);
    if (m->P > 0) {
        MP_REQUIRE_PTR(out_prompt, NULL, fn);
        MP_REQUIRE(out_prompt != m->prompt, NULL, MP_ERR_INVALID_ARGUMENT,
                   "%s: 'out_prompt' must not be the meta's own prompt (pass a copy)", fn);
        int32_t r = 0, c = 0;
        MP_TRY(mp_prompt_shape(out_prompt, &r, &c));
        MP_REQUIRE(r == m->P && c == m->d, NULL, MP_ERR_SHAPE_MISMATCH,
                   "%s: 'out_prompt' is %d x %d, expected %d x %d", fn, (int)r, (int)c, (int)m->P,
                   (int)m->d);
    }
    if (out_model) MP_TRY(check_out_model(m, out_model));
    mp__task_get_view(task, tv);
    return mp__meta_check_task(m, NULL, fn, tv, MP__SINGLE_TASK);
}

/* Runs the inner loop on a scratch worker and writes the results only
 * when everything succeeded. */
static mp_status adapt_into(const mp_meta *m, const mp__task_view *tv, float *prompt_buf,
                            float *param_buf)
{
    mp__worker w;
    MP_TRY(mp__worker_init(&w, m));
    mp__run r;
    memset(&r, 0, sizeof r);
    r.mode = MP__RUN_ADAPT;
    r.steps = mp__meta_eval_steps(m);
    r.out_prompt = prompt_buf;
    r.out_params = param_buf;
    mp_status st = mp__run_task(m, &w, tv, &r);
    mp__worker_free(&w);
    if (st != MP_OK) return st;
    for (size_t i = 0; i < m->n_prompt; i++)
        MP_REQUIRE(isfinite(prompt_buf[i]), NULL, MP_ERR_NOT_FINITE,
                   "mp_meta_adapt: the adapted prompt is not finite at entry %zu", i);
    if (param_buf)
        for (size_t i = 0; i < m->n_params; i++)
            MP_REQUIRE(isfinite(param_buf[i]), NULL, MP_ERR_NOT_FINITE,
                       "mp_meta_adapt: the adapted parameters are not finite at entry %zu", i);
    return MP_OK;
}

mp_status mp_meta_adapt(const mp_meta *m, const mp_task *task, mp_prompt *out_prompt, mp_model *out_model)
{
    MP_REQUIRE_HANDLE_ARG(m, "meta", MP__KIND_META, NULL, "mp_meta_adapt");
    mp__task_view tv;
    MP_TRY(check_adapt_args(m, task, out_prompt, out_model, &tv));
    size_t n = m->n_prompt + (out_model ? m->n_params : 0);
    float *buf = mp__alloc((n ? n : 1) * sizeof(float));
    MP_REQUIRE(buf, NULL, MP_ERR_OUT_OF_MEMORY, "mp_meta_adapt: out of memory (%zu floats)", n);
    float *params = out_model ? buf + m->n_prompt : NULL;
    if (params) memcpy(params, mp__model_params_const(m->model), m->n_params * sizeof(float));
    mp_status st = adapt_into(m, &tv, buf, params);
    if (st == MP_OK) {
        if (m->P > 0) memcpy(mp__prompt_data(out_prompt), buf, m->n_prompt * sizeof(float));
        if (params) memcpy(mp__model_params(out_model), params, m->n_params * sizeof(float));
    }
    mp__free(buf);
    return st == MP_OK ? MP_OK : mp__fail_in(NULL, st, "mp_meta_adapt", NULL, "mp_meta", NULL);
}

/* ---- evaluate ------------------------------------------------------------------------ */
typedef struct {
    mp_meta *m;
    mp_task *const *tasks;   /* caller tasks, or NULL */
    const mp_sampler *sampler;
    uint64_t base;           /* sampler: index of the first episode */
    size_t offset;           /* tasks done before the current chunk */
    const char *fn;          /* the public function, for messages */
} eval_job;

/* The worker's reusable task holds sampler episodes: created on first use,
 * refilled in place afterwards (no allocation once sizes are stable). */
static mp_status episode(const eval_job *j, mp__worker *w, uint64_t index, const mp_task **out)
{
    if (!w->task)
        MP_TRY(mp_sampler_episode(j->sampler, index, &w->task));
    else
        MP_TRY(mp_sampler_episode_into(j->sampler, index, w->task));
    *out = w->task;
    return MP_OK;
}

static mp_status eval_one(const eval_job *j, mp__worker *w, size_t slot)
{
    mp_meta *m = j->m;
    const mp_task *task;
    size_t idx = j->offset + slot;
    if (j->tasks)
        task = j->tasks[idx];
    else
        MP_TRY(episode(j, w, j->base + idx, &task));
    mp__task_view tv;
    mp__task_get_view(task, &tv);
    MP_TRY(mp__meta_check_task(m, NULL, j->fn, &tv, idx));
    return mp__run_task(m, w, &tv, &m->slot_run[slot]);
}

static void eval_item(void *ctx, int32_t worker, size_t slot)
{
    eval_job *j = ctx;
    mp__meta_slot_status(j->m, slot, eval_one(j, &j->m->w[worker], slot));
}

static void free_episode_tasks(mp_meta *m)
{
    for (int32_t i = 0; i < m->threads; i++) {
        mp_task_destroy(m->w[i].task);
        m->w[i].task = NULL;
    }
}

static mp_status eval_chunks(mp_meta *m, eval_job *j, size_t n, mp__running *acc)
{
    size_t chunk = (size_t)m->threads * 8;
    MP_TRY(mp__meta_slots(m, chunk, 0));
    for (size_t done = 0; done < n;) {
        size_t k = n - done < chunk ? n - done : chunk;
        for (size_t i = 0; i < k; i++) {
            memset(&m->slot_run[i], 0, sizeof m->slot_run[i]);
            m->slot_run[i].mode = MP__RUN_EVAL;
            m->slot_run[i].steps = mp__meta_eval_steps(m);
        }
        j->offset = done;
        mp__pool_run(m->pool, k, eval_item, j);
        MP_TRY(mp__meta_first_failure(m, k, j->fn, done));
        for (size_t i = 0; i < k; i++) {
            double v = m->slot_run[i].metric;
            MP_REQUIRE(isfinite(v), m->err, MP_ERR_NOT_FINITE,
                       "%s: the metric of task %zu is not finite", j->fn, done + i);
            mp__running_add(acc, v);
        }
        done += k;
        if (m->progress && m->progress((uint64_t)done, (uint64_t)n, m->progress_ud) != 0)
            return mp__fail(m->err, MP_ERR_CANCELLED,
                            "%s: cancelled by the progress callback after %zu of %zu tasks", j->fn,
                            done, n);
    }
    return MP_OK;
}

static mp_status evaluate(mp_meta *m, eval_job *j, size_t n, double *mean, double *ci95)
{
    mp__running acc = {0, 0.0, 0.0};
    m->busy = 1;
    mp_status st = eval_chunks(m, j, n, &acc);
    m->busy = 0;
    free_episode_tasks(m);
    if (st != MP_OK) return st;
    mp__running_ci95(&acc, mean, ci95);
    return MP_OK;
}

mp_status mp_meta_evaluate(mp_meta *m, const mp_sampler *sampler, uint64_t first_episode,
                           size_t n_episodes, double *mean, double *ci95)
{
    const char *fn = "mp_meta_evaluate";
    MP_REQUIRE_HANDLE_ARG(m, "meta", MP__KIND_META, NULL, fn);
    MP_TRY(mp__meta_idle(m, m->err, fn));
    MP_REQUIRE_HANDLE(sampler, MP__KIND_SAMPLER, m->err, fn);
    MP_REQUIRE_PTR(mean, m->err, fn);
    MP_REQUIRE_PTR(ci95, m->err, fn);
    MP_REQUIRE(n_episodes > 0, m->err, MP_ERR_INVALID_ARGUMENT, "%s: n_episodes must be >= 1, got 0", fn);
    MP_REQUIRE((uint64_t)(n_episodes - 1) <= UINT64_MAX - first_episode, m->err, MP_ERR_RANGE,
               "%s: first_episode = %llu plus n_episodes = %zu passes the last episode index (2^64 - 1)", fn,
               (unsigned long long)first_episode, n_episodes);
    eval_job j = {m, NULL, sampler, first_episode, 0, fn};
    return evaluate(m, &j, n_episodes, mean, ci95);
}

mp_status mp_meta_evaluate_tasks(mp_meta *m, mp_task *const *tasks, size_t n, double *mean, double *ci95)
{
    const char *fn = "mp_meta_evaluate_tasks";
    MP_REQUIRE_HANDLE_ARG(m, "meta", MP__KIND_META, NULL, fn);
    MP_TRY(mp__meta_idle(m, m->err, fn));
    MP_REQUIRE_PTR(tasks, m->err, fn);
    MP_REQUIRE_PTR(mean, m->err, fn);
    MP_REQUIRE_PTR(ci95, m->err, fn);
    MP_REQUIRE(n > 0, m->err, MP_ERR_INVALID_ARGUMENT, "%s: n_tasks must be >= 1, got 0", fn);
    MP_TRY(mp__require_handles(m->err, (const void *const *)tasks, n, MP__KIND_TASK, "tasks", fn));
    eval_job j = {m, tasks, NULL, 0, 0, fn};
    return evaluate(m, &j, n, mean, ci95);
}
