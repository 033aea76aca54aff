/* One task on one worker's tape: leaves over the meta-parameters, the
 * inner loop, the query loss, and what the run mode asks for (meta-gradient,
 * metric, adapted values).
 *
 * Inner step k over every adapted variable v (the prompt and the adapted
 * tensors):   v_{k+1} = v_k - a (.) grad_v L_support(v_k)
 * recorded on the tape. With create_graph = 1 (MAML, Meta-SGD in training)
 * the gradients are differentiable tape variables, so the backward sweep of
 * the query loss reaches the meta-parameters through every inner step:
 * the exact second-order meta-gradient. With create_graph = 0 (FOMAML,
 * Reptile, evaluation) they are constants and dv_K/dv_0 = I, which is the
 * first-order approximation. */
#include "meta/meta_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

mp_status mp__worker_init(mp__worker *w, const mp_meta *m)
{
    memset(w, 0, sizeof *w);
    size_t n = m->n_tensors > 0 ? (size_t)m->n_tensors : 1;
    w->base = mp__calloc(6 * n + 2, sizeof(mp_var));
    w->values = mp__calloc(m->n_prompt + m->n_params + 1, sizeof(float));
    mp_status st = w->base && w->values
                       ? mp_tape_create(&w->tape)
                       : mp__fail(NULL, MP_ERR_OUT_OF_MEMORY, "mp_meta: out of memory (worker)");
    if (st != MP_OK) {
        mp__free(w->base);
        mp__free(w->values);
        memset(w, 0, sizeof *w);
        return st;
    }
    w->cur = w->base + n;
    w->lrv = w->base + 2 * n;
    w->grads = w->base + 3 * n;
    w->wrt = w->base + 4 * n;
    return MP_OK;
}

void mp__worker_free(mp__worker *w)
{
    mp_tape_destroy(w->tape);
    mp__free(w->base);
    mp__free(w->values);
    mp__free(w->scratch);
    mp_task_destroy(w->task);
    memset(w, 0, sizeof *w);
}

/* Validates a task against the model before any work starts. */
mp_status mp__meta_check_task(const mp_meta *m, char *herr, const char *fn, const mp__task_view *tv,
                              size_t index)
{
    char who[40] = "task"; /* a single-task call names its argument; a batch, the index */
    if (index != MP__SINGLE_TASK) snprintf(who, sizeof who, "task %zu", index);
    MP_REQUIRE(tv->dim == m->in_dim, herr, MP_ERR_INVALID_ARGUMENT,
               "%s: %s has %d features per example, the model expects %d", fn, who,
               (int)tv->dim, (int)m->in_dim);
    MP_REQUIRE(tv->n_support > 0 && tv->n_query > 0, herr, MP_ERR_INVALID_ARGUMENT,
               "%s: %s has %zu support and %zu query examples, expected >= 1 each", fn,
               who, tv->n_support, tv->n_query);
    if (m->classifier) {
        MP_REQUIRE(tv->support_labels && tv->query_labels, herr, MP_ERR_INVALID_ARGUMENT,
                   "%s: %s is a regression task, the model is a classifier", fn, who);
        MP_REQUIRE(tv->n_way <= m->out_dim, herr, MP_ERR_INVALID_ARGUMENT,
                   "%s: %s has %d classes, the model outputs %d", fn, who,
                   (int)tv->n_way, (int)m->out_dim);
    } else {
        MP_REQUIRE(tv->support_targets && tv->query_targets, herr, MP_ERR_INVALID_ARGUMENT,
                   "%s: %s is a classification task, the model is a regressor", fn, who);
        MP_REQUIRE(tv->target_dim == m->out_dim, herr, MP_ERR_INVALID_ARGUMENT,
                   "%s: %s has %d targets per example, the model outputs %d", fn, who,
                   (int)tv->target_dim, (int)m->out_dim);
    }
    return MP_OK;
}

/* ---- leaves ------------------------------------------------------------------- */
/* BORROW leaves over the meta-parameters (no copies) for the tensors the
 * inner loop adapts (adapted = 1, and the prompt) or leaves alone
 * (adapted = 0); a leaf requires a gradient when the inner loop adapts it or
 * training differentiates it. With `values` (first-order runs restarting
 * the tape between inner steps), the adapted variables are instead copied
 * from values, which holds the prompt then the parameters in the model's
 * layout. */
static mp_status make_leaves(const mp_meta *m, mp__worker *w, int32_t train, int32_t adapted,
                             const float *values, mp_var *prompt)
{
    mp_tape *t = w->tape;
    const float *params = mp__model_params_const(m->model);
    int32_t needs_meta = train && m->algo != MP_META_REPTILE;
    if (adapted) *prompt = MP_VAR_NONE;
    if (adapted && m->P > 0) {
        const float *src = values ? values : mp__prompt_data_const(m->prompt);
        int32_t fl = (values ? 0 : MP_LEAF_BORROW) | MP_LEAF_REQUIRES_GRAD;
        MP_TRY(mp_tape_leaf(t, m->P, m->d, src, m->n_prompt, fl, prompt));
    }
    for (int32_t i = 0; i < m->n_tensors; i++) {
        if (!m->adapted[i] != !adapted) continue;
        const mp__param_info *pi = mp__model_tensor(m->model, i);
        int32_t req = m->adapted[i] || (needs_meta && m->learned[i]);
        int32_t copy = values && m->adapted[i];
        const float *src = copy ? values + m->n_prompt + pi->offset : params + pi->offset;
        int32_t fl = (copy ? 0 : MP_LEAF_BORROW) | (req ? MP_LEAF_REQUIRES_GRAD : 0);
        size_t len = (size_t)pi->rows * (size_t)pi->cols;
        MP_TRY(mp_tape_leaf(t, pi->rows, pi->cols, src, len, fl, &w->base[i]));
        w->cur[i] = w->base[i];
    }
    return MP_OK;
}

/* Meta-SGD: rate leaves shaped like the adapted variables; they require a
 * gradient only when training learns them. */
static mp_status make_rate_leaves(const mp_meta *m, mp__worker *w, int32_t train, mp_var *prompt_lr)
{
    mp_tape *t = w->tape;
    int32_t fl = MP_LEAF_BORROW | (train && (m->learn & MP_LEARN_INNER_LR) ? MP_LEAF_REQUIRES_GRAD : 0);
    *prompt_lr = MP_VAR_NONE;
    if (m->P > 0) MP_TRY(mp_tape_leaf(t, m->P, m->d, m->lr, m->n_prompt, fl, prompt_lr));
    for (int32_t i = 0; i < m->n_tensors; i++) {
        w->lrv[i] = MP_VAR_NONE;
        if (!m->adapted[i]) continue;
        const mp__param_info *pi = mp__model_tensor(m->model, i);
        size_t len = (size_t)pi->rows * (size_t)pi->cols;
        MP_TRY(mp_tape_leaf(t, pi->rows, pi->cols, m->lr + m->lr_off[i], len, fl, &w->lrv[i]));
    }
    return MP_OK;
}

/* ---- forward and loss ------------------------------------------------------------ */
static mp_status loss_on(const mp_meta *m, mp__worker *w, mp_var prompt, mp_var x,
                         const int32_t *labels, const float *targets, size_t n, mp_var *out,
                         mp_var *loss)
{
    MP_TRY(mp__model_forward(m->model, w->tape, w->cur, prompt, x, &w->cache, out));
    return mp__model_loss(m->model, w->tape, *out, labels, targets, n, loss);
}

static mp_status read_loss(const mp_meta *m, mp__worker *w, mp_var loss, double *out)
{
    float v;
    MP_TRY(mp_tape_scalar(w->tape, loss, &v));
    if (!isfinite(v))
        return mp__fail(NULL, MP_ERR_NOT_FINITE, "mp_meta: a task loss is not finite (%g)", (double)v);
    (void)m;
    *out = v;
    return MP_OK;
}

/* Fraction of query rows whose arg-max output equals the label. */
static mp_status accuracy(const mp_meta *m, mp__worker *w, mp_var out, const mp__task_view *tv,
                          double *acc)
{
    size_t need = tv->n_query * (size_t)m->out_dim;
    if (need > w->scratch_cap) {
        float *s = mp__alloc(need * sizeof(float));
        if (!s) return mp__fail(NULL, MP_ERR_OUT_OF_MEMORY, "mp_meta: out of memory (outputs)");
        mp__free(w->scratch);
        w->scratch = s;
        w->scratch_cap = need;
    }
    MP_TRY(mp_tape_read(w->tape, out, w->scratch, need));
    size_t right = 0;
    for (size_t r = 0; r < tv->n_query; r++) {
        const float *row = w->scratch + r * (size_t)m->out_dim;
        int32_t best = 0;
        for (int32_t c = 1; c < m->out_dim; c++)
            if (row[c] > row[best]) best = c;
        right += best == tv->query_labels[r];
    }
    *acc = (double)right / (double)tv->n_query;
    return MP_OK;
}

/* Loss (and accuracy) on the query set at the current variables. */
static mp_status query_eval(const mp_meta *m, mp__worker *w, mp_var prompt, mp_var qx,
                            const mp__task_view *tv, mp_var *loss, double *lv, double *acc)
{
    mp_var out;
    MP_TRY(loss_on(m, w, prompt, qx, tv->query_labels, tv->query_targets, tv->n_query, &out, loss));
    MP_TRY(read_loss(m, w, *loss, lv));
    *acc = NAN;
    if (m->classifier) MP_TRY(accuracy(m, w, out, tv, acc));
    return MP_OK;
}

/* ---- the inner loop -------------------------------------------------------------- */
static mp_status update_var(const mp_meta *m, mp_tape *t, mp_var v, mp_var g, mp_var rate, mp_var *out)
{
    mp_var step;
    if (m->algo == MP_META_METASGD) {
        MP_TRY(mp_mul(t, rate, g, &step));
        return mp_sub(t, v, step, out);
    }
    MP_TRY(mp_scale(t, g, -m->inner_lr, &step));
    return mp_add(t, v, step, out);
}

static mp_status inner_step(const mp_meta *m, mp__worker *w, mp_var sx, const mp__task_view *tv,
                            int32_t create_graph, mp_var prompt_lr, mp_var *prompt)
{
    mp_tape *t = w->tape;
    mp_var out, loss, gp = MP_VAR_NONE;
    double lv;
    MP_TRY(loss_on(m, w, *prompt, sx, tv->support_labels, tv->support_targets, tv->n_support, &out,
                   &loss));
    MP_TRY(read_loss(m, w, loss, &lv));
    /* Only the adapted variables: the sweep then skips the earlier inner
     * steps and the leaves only the outer loop differentiates. */
    size_t n = 0;
    if (*prompt != MP_VAR_NONE) w->wrt[n++] = *prompt;
    for (int32_t i = 0; i < m->n_tensors; i++)
        if (m->adapted[i]) w->wrt[n++] = w->cur[i];
    /* First order: only these gradients are read, so the sweep's values can
     * be recycled as it goes (see mp__tape_backward_wrt_recycle). */
    if (create_graph) MP_TRY(mp_tape_backward_wrt(t, loss, 1, w->wrt, n));
    else MP_TRY(mp__tape_backward_wrt_recycle(t, loss, w->wrt, n));
    /* Fetch every gradient before recording the updates. */
    if (*prompt != MP_VAR_NONE) MP_TRY(mp_tape_grad(t, *prompt, &gp));
    for (int32_t i = 0; i < m->n_tensors; i++)
        if (m->adapted[i]) MP_TRY(mp_tape_grad(t, w->cur[i], &w->grads[i]));
    if (*prompt != MP_VAR_NONE) MP_TRY(update_var(m, t, *prompt, gp, prompt_lr, prompt));
    for (int32_t i = 0; i < m->n_tensors; i++)
        if (m->adapted[i]) MP_TRY(update_var(m, t, w->cur[i], w->grads[i], w->lrv[i], &w->cur[i]));
    return MP_OK;
}

/* ---- outputs of a run ----------------------------------------------------------------- */
static mp_status read_into(mp_tape *t, mp_var v, float *dst, size_t len)
{
    return mp_tape_read(t, v, dst, len);
}

/* Meta-gradient of the query loss with respect to the learned leaves. */
static mp_status read_meta_grad(const mp_meta *m, mp__worker *w, mp_var loss, mp_var prompt0,
                                mp_var prompt_lr, float *g)
{
    mp_tape *t = w->tape;
    mp_var gv;
    size_t n = 0;
    int32_t rates = m->n_lr && (m->learn & MP_LEARN_INNER_LR);
    if (m->P > 0 && (m->learn & MP_LEARN_PROMPT)) w->wrt[n++] = prompt0;
    if (rates && m->P > 0) w->wrt[n++] = prompt_lr;
    for (int32_t i = 0; i < m->n_tensors; i++) {
        if (m->learned[i]) w->wrt[n++] = w->base[i];
        if (rates && m->adapted[i]) w->wrt[n++] = w->lrv[i];
    }
    MP_TRY(mp__tape_backward_wrt_recycle(t, loss, w->wrt, n));
    if (m->P > 0 && (m->learn & MP_LEARN_PROMPT)) {
        MP_TRY(mp_tape_grad(t, prompt0, &gv));
        MP_TRY(read_into(t, gv, g, m->n_prompt));
    }
    for (int32_t i = 0; i < m->n_tensors; i++) {
        const mp__param_info *pi = mp__model_tensor(m->model, i);
        size_t len = (size_t)pi->rows * (size_t)pi->cols;
        if (m->learned[i]) {
            MP_TRY(mp_tape_grad(t, w->base[i], &gv));
            MP_TRY(read_into(t, gv, g + m->n_prompt + pi->offset, len));
        }
        if (m->n_lr && (m->learn & MP_LEARN_INNER_LR) && m->adapted[i]) {
            MP_TRY(mp_tape_grad(t, w->lrv[i], &gv));
            MP_TRY(read_into(t, gv, g + m->n_prompt + m->n_params + m->lr_off[i], len));
        }
    }
    if (m->n_lr && (m->learn & MP_LEARN_INNER_LR) && m->P > 0) {
        MP_TRY(mp_tape_grad(t, prompt_lr, &gv));
        MP_TRY(read_into(t, gv, g + m->n_prompt + m->n_params, m->n_prompt));
    }
    return MP_OK;
}

/* Reptile: theta - theta_K over the adapted entries (0 elsewhere). */
static mp_status reptile_grad(const mp_meta *m, mp__worker *w, mp_var prompt, float *g)
{
    mp_tape *t = w->tape;
    const float *params = mp__model_params_const(m->model);
    if (m->P > 0 && (m->learn & MP_LEARN_PROMPT)) {
        const float *p0 = mp__prompt_data_const(m->prompt);
        MP_TRY(read_into(t, prompt, g, m->n_prompt));
        for (size_t j = 0; j < m->n_prompt; j++) g[j] = p0[j] - g[j];
    }
    for (int32_t i = 0; i < m->n_tensors; i++) {
        if (!m->adapted[i] || !m->learned[i]) continue;
        const mp__param_info *pi = mp__model_tensor(m->model, i);
        size_t len = (size_t)pi->rows * (size_t)pi->cols;
        float *gi = g + m->n_prompt + pi->offset;
        MP_TRY(read_into(t, w->cur[i], gi, len));
        for (size_t j = 0; j < len; j++) gi[j] = params[pi->offset + j] - gi[j];
    }
    return MP_OK;
}

static mp_status read_adapted(const mp_meta *m, mp__worker *w, mp_var prompt, mp__run *r)
{
    if (m->P > 0 && r->out_prompt) MP_TRY(read_into(w->tape, prompt, r->out_prompt, m->n_prompt));
    if (!r->out_params) return MP_OK;
    for (int32_t i = 0; i < m->n_tensors; i++) {
        if (!m->adapted[i]) continue;
        const mp__param_info *pi = mp__model_tensor(m->model, i);
        size_t len = (size_t)pi->rows * (size_t)pi->cols;
        MP_TRY(read_into(w->tape, w->cur[i], r->out_params + pi->offset, len));
    }
    return MP_OK;
}

/* ---- one task ---------------------------------------------------------------------------- */
typedef struct {
    mp_var prompt0, prompt, prompt_lr, sx, qx;
} run_vars;

/* Whether the model's forward prefix reads only tensors the inner loop
 * leaves alone (it reads backbone tensors only, so: none of them adapted). */
static int32_t prefix_is_frozen(const mp_meta *m)
{
    for (int32_t i = 0; i < m->n_tensors; i++)
        if (m->adapted[i] && mp__model_tensor(m->model, i)->group == MP__GROUP_BACKBONE) return 0;
    return 1;
}

/* The adapted part of the tape: leaves over the prompt and the adapted
 * tensors (over the meta-parameters, or over the adapted values of a
 * first-order run), and the Meta-SGD rates. */
static mp_status start_adapted(const mp_meta *m, mp__worker *w, int32_t train, const float *values,
                               run_vars *v)
{
    MP_TRY(make_leaves(m, w, train, 1, values, &v->prompt0));
    v->prompt = v->prompt0;
    v->prompt_lr = MP_VAR_NONE;
    if (m->algo == MP_META_METASGD) MP_TRY(make_rate_leaves(m, w, train, &v->prompt_lr));
    return MP_OK;
}

/* Starts a task's tape: first its frozen part (leaves over the tensors the
 * inner loop leaves alone, the data, and the forward prefix of both sets
 * when it reads only frozen tensors), then the adapted part. First-order
 * runs restart from the point between the two (restart_tape). */
static mp_status start_tape(const mp_meta *m, mp__worker *w, const mp__task_view *tv, int32_t train,
                            run_vars *v)
{
    mp_tape *t = w->tape;
    mp__fwd_cache_clear(&w->cache);
    MP_TRY(mp_tape_reset(t));
    /* Token ids, before anything is recorded (the tape is reset all the
     * same); the caller reports a failure as the public function's:
     * "<fn>: task i: support token x[j] = ...". */
    MP_TRY(mp__check_token_ids(m->model, "mp_meta", "support token", tv->support_x,
                               tv->n_support * (size_t)tv->dim));
    MP_TRY(mp__check_token_ids(m->model, "mp_meta", "query token", tv->query_x,
                               tv->n_query * (size_t)tv->dim));
    MP_TRY(make_leaves(m, w, train, 0, NULL, NULL));
    MP_TRY(mp_tape_leaf(t, (int32_t)tv->n_support, tv->dim, tv->support_x,
                        tv->n_support * (size_t)tv->dim, MP_LEAF_BORROW, &v->sx));
    MP_TRY(mp_tape_leaf(t, (int32_t)tv->n_query, tv->dim, tv->query_x, tv->n_query * (size_t)tv->dim,
                        MP_LEAF_BORROW, &v->qx));
    if (prefix_is_frozen(m)) {
        MP_TRY(mp__model_prepare(m->model, t, w->cur, v->sx, &w->cache));
        MP_TRY(mp__model_prepare(m->model, t, w->cur, v->qx, &w->cache));
    }
    w->frozen = mp__tape_here(t);
    w->frozen_cache = w->cache;
    return start_adapted(m, w, train, NULL, v);
}

/* First-order restart: everything after the frozen part is dropped (and the
 * cache slots recorded after it), then the adapted leaves are recorded over
 * the values of the last inner step. */
static mp_status restart_tape(const mp_meta *m, mp__worker *w, int32_t train, const float *values,
                              run_vars *v)
{
    if (!mp__tape_truncate(w->tape, &w->frozen))
        return mp__fail(NULL, MP_ERR_STATE, "mp_meta: internal error: the task's tape was reset");
    w->cache = w->frozen_cache;
    return start_adapted(m, w, train, values, v);
}

/* First-order runs (inner gradients are constants, so dv_{k+1}/dv_k = I)
 * carry only the values from one inner step to the next: the tape restarts
 * from leaves over them, so memory and backward sweeps stay one step long
 * whatever the number of steps. */
static mp_status save_values(const mp_meta *m, mp__worker *w, mp_var prompt)
{
    if (m->P > 0) MP_TRY(read_into(w->tape, prompt, w->values, m->n_prompt));
    for (int32_t i = 0; i < m->n_tensors; i++) {
        if (!m->adapted[i]) continue;
        const mp__param_info *pi = mp__model_tensor(m->model, i);
        size_t len = (size_t)pi->rows * (size_t)pi->cols;
        MP_TRY(read_into(w->tape, w->cur[i], w->values + m->n_prompt + pi->offset, len));
    }
    return MP_OK;
}

static mp_status inner_loop(const mp_meta *m, mp__worker *w, const mp__task_view *tv, const mp__run *r,
                            run_vars *v)
{
    int32_t train = r->mode == MP__RUN_TRAIN;
    for (int32_t k = 0; k < r->steps; k++) {
        MP_TRY(inner_step(m, w, v->sx, tv, r->create_graph, v->prompt_lr, &v->prompt));
        if (r->create_graph) continue;
        MP_TRY(save_values(m, w, v->prompt));
        MP_TRY(restart_tape(m, w, train, w->values, v));
    }
    return MP_OK;
}

mp_status mp__run_task(const mp_meta *m, mp__worker *w, const mp__task_view *tv, mp__run *r)
{
    int32_t train = r->mode == MP__RUN_TRAIN;
    run_vars v;
    mp_var qloss;
    MP_TRY(start_tape(m, w, tv, train, &v));
    for (int s = 0; s < MP_META_NUM_STATS; s++) r->stats[s] = NAN;
    if (r->want_before)
        MP_TRY(query_eval(m, w, v.prompt0, v.qx, tv, &qloss, &r->stats[MP_META_STAT_LOSS_BEFORE],
                          &r->stats[MP_META_STAT_ACC_BEFORE]));
    MP_TRY(inner_loop(m, w, tv, r, &v));
    if (r->mode == MP__RUN_ADAPT) return read_adapted(m, w, v.prompt, r);
    /* Reptile's meta-gradient needs no query loss: skip it unless asked. */
    if (train && m->algo == MP_META_REPTILE && !r->want_before) {
        memset(r->grad, 0, m->n_grad * sizeof(float));
        return reptile_grad(m, w, v.prompt, r->grad);
    }
    MP_TRY(query_eval(m, w, v.prompt, v.qx, tv, &qloss, &r->stats[MP_META_STAT_LOSS_AFTER],
                      &r->stats[MP_META_STAT_ACC_AFTER]));
    if (r->mode == MP__RUN_EVAL) {
        r->metric = m->classifier ? r->stats[MP_META_STAT_ACC_AFTER] : r->stats[MP_META_STAT_LOSS_AFTER];
        return MP_OK;
    }
    memset(r->grad, 0, m->n_grad * sizeof(float));
    if (m->algo == MP_META_REPTILE) return reptile_grad(m, w, v.prompt, r->grad);
    /* FOMAML: after a restart the leaves ARE the adapted values, so the
     * gradient with respect to them is the query gradient at v_K. */
    return read_meta_grad(m, w, qloss, v.prompt0, v.prompt_lr, r->grad);
}
