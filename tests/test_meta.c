/* Tests of the meta module: optimizers and statistics on flat arrays and
 * through the handle (set/apply against hand-computed updates),
 * hand-computable meta-gradients of every algorithm on a linear model,
 * second-order MAML and Meta-SGD against central finite differences of the
 * whole inner + outer computation for several scopes and learn sets,
 * thread determinism, non-finite losses and gradients, evaluation,
 * checkpoints (with the sampler position), the OpenBLAS oversubscription
 * warning and bad inputs. */
#include "test_util.h"

#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "io/checkpoint_internal.h"
#include "meta/meta_internal.h"
#include "tape/tape_internal.h"

/* ---- helpers ------------------------------------------------------------------ */
static mp_model *make_model(int in_dim, int out_dim, int P, int layers, int width, int act, int task,
                            uint64_t seed)
{
    mp_config *c;
    MP_CK_OK(mp_config_create(&c));
    MP_CK_OK(mp_config_set_int(c, MP_CFG_MODEL_KIND, MP_MODEL_MLP));
    MP_CK_OK(mp_config_set_int(c, MP_CFG_MODEL_INPUT_DIM, in_dim));
    MP_CK_OK(mp_config_set_int(c, MP_CFG_MODEL_OUTPUT_DIM, out_dim));
    MP_CK_OK(mp_config_set_int(c, MP_CFG_MODEL_PROMPT_LEN, P));
    MP_CK_OK(mp_config_set_int(c, MP_CFG_MODEL_HIDDEN_LAYERS, layers));
    if (layers > 0) MP_CK_OK(mp_config_set_int(c, MP_CFG_MODEL_HIDDEN_WIDTH, width));
    MP_CK_OK(mp_config_set_int(c, MP_CFG_MODEL_ACTIVATION, act));
    MP_CK_OK(mp_config_set_int(c, MP_CFG_MODEL_TASK, task));
    MP_CK_OK(mp_config_set_int(c, MP_CFG_SEED, (int64_t)seed));
    mp_model *m = NULL;
    MP_CK_OK(mp_model_create(&m, c));
    mp_config_destroy(c);
    return m;
}

static mp_prompt *make_prompt(const mp_model *model, double scale, uint64_t seed)
{
    mp_prompt *p = NULL;
    MP_CK_OK(mp_prompt_create(&p, model));
    if (scale > 0) MP_CK_OK(mp_prompt_init(p, MP_PROMPT_INIT_NORMAL, scale, seed));
    return p;
}

typedef struct {
    int algo, scope, learn, steps, opt, threads, eval_steps;
    double inner_lr, outer_lr, clip, wd, momentum;
} meta_opts;

static meta_opts defaults(int algo)
{
    meta_opts o = {algo, MP_SCOPE_ALL, 0, 1, MP_OPT_SGD, 1, -1, 0.1, 1.0, 0, 0, 0};
    return o;
}

static mp_config *meta_config(const meta_opts *o)
{
    mp_config *c;
    MP_CK_OK(mp_config_create(&c));
    MP_CK_OK(mp_config_set_int(c, MP_CFG_META_ALGORITHM, o->algo));
    MP_CK_OK(mp_config_set_int(c, MP_CFG_META_SCOPE, o->scope));
    MP_CK_OK(mp_config_set_int(c, MP_CFG_META_LEARN, o->learn));
    MP_CK_OK(mp_config_set_int(c, MP_CFG_META_INNER_STEPS, o->steps));
    MP_CK_OK(mp_config_set_int(c, MP_CFG_META_EVAL_INNER_STEPS, o->eval_steps));
    MP_CK_OK(mp_config_set_int(c, MP_CFG_META_OPTIMIZER, o->opt));
    MP_CK_OK(mp_config_set_int(c, MP_CFG_THREADS, o->threads));
    MP_CK_OK(mp_config_set_float(c, MP_CFG_META_INNER_LR, o->inner_lr));
    MP_CK_OK(mp_config_set_float(c, MP_CFG_META_OUTER_LR, o->outer_lr));
    MP_CK_OK(mp_config_set_float(c, MP_CFG_META_CLIP_NORM, o->clip));
    MP_CK_OK(mp_config_set_float(c, MP_CFG_META_WEIGHT_DECAY, o->wd));
    MP_CK_OK(mp_config_set_float(c, MP_CFG_META_MOMENTUM, o->momentum));
    return c;
}

static mp_meta *make_meta(mp_model *model, mp_prompt *prompt, const meta_opts *o)
{
    mp_config *c = meta_config(o);
    mp_meta *m = NULL;
    MP_CK_OK(mp_meta_create(&m, model, prompt, c));
    mp_config_destroy(c);
    return m;
}

static int32_t tensor_index(const mp_model *m, const char *name)
{
    for (int32_t i = 0; i < mp__model_num_tensors(m); i++)
        if (strcmp(mp__model_tensor(m, i)->name, name) == 0) return i;
    ck_abort_msg("no tensor %s", name);
    return -1;
}

static size_t grad_size(const mp_meta *m)
{
    size_t n = 0;
    MP_CK_OK(mp_meta_gradient_size(m, &n));
    return n;
}

static float *meta_grad(mp_meta *m, mp_task *const *tasks, size_t n)
{
    size_t g = grad_size(m);
    float *buf = calloc(g, sizeof(float));
    MP_CK_OK(mp_meta_compute_gradients(m, tasks, n, NULL, 0));
    MP_CK_OK(mp_meta_get_gradients(m, buf, g));
    return buf;
}

/* A nonlinear regression task on dim inputs. */
static mp_task *regression_task(int dim, int ns, int nq, uint64_t seed)
{
    mp__rng r;
    mp__rng_seed(&r, seed, 99);
    float sx[64], st[32], qx[64], qt[32];
    for (int i = 0; i < ns * dim; i++) sx[i] = (float)(2 * mp__rng_uniform(&r) - 1);
    for (int i = 0; i < nq * dim; i++) qx[i] = (float)(2 * mp__rng_uniform(&r) - 1);
    for (int i = 0; i < ns; i++) st[i] = sinf(2 * sx[i * dim]) + 0.5f * sx[i * dim + dim - 1];
    for (int i = 0; i < nq; i++) qt[i] = sinf(2 * qx[i * dim]) + 0.5f * qx[i * dim + dim - 1];
    mp_task *t = NULL;
    MP_CK_OK(mp_task_create_regression(&t, dim, 1, sx, st, (size_t)ns, qx, qt, (size_t)nq));
    return t;
}

/* ---- optimizers and statistics (flat arrays) ---------------------------------------- */
START_TEST(sgd_momentum_by_hand)
{
    mp__opt o = {MP_OPT_SGD, 0.1, 0.9, 0, 0, 0, 0};
    float p = 1.0f, g = 0.5f, v = 0.0f;
    mp__opt_update(&o, 1, &p, &g, &v, NULL, 1);
    ck_assert_float_eq_tol(v, 0.5f, 1e-7f);
    ck_assert_float_eq_tol(p, 0.95f, 1e-7f);
    mp__opt_update(&o, 2, &p, &g, &v, NULL, 1); /* v = 0.9*0.5 + 0.5 */
    ck_assert_float_eq_tol(v, 0.95f, 1e-7f);
    ck_assert_float_eq_tol(p, 0.855f, 1e-6f);
    o.weight_decay = 0.5; /* L2: g + wd p */
    o.momentum = 0;
    p = 2.0f;
    v = 0;
    mp__opt_update(&o, 1, &p, &g, &v, NULL, 1);
    ck_assert_float_eq_tol(p, 2.0f - 0.1f * (0.5f + 1.0f), 1e-6f);
}
END_TEST

START_TEST(adam_bias_correction_by_hand)
{
    mp__opt o = {MP_OPT_ADAM, 0.1, 0, 0.9, 0.999, 1e-8, 0};
    float p[2] = {1.0f, -3.0f}, g[2] = {0.5f, -2.0f}, m[2] = {0, 0}, v[2] = {0, 0};
    /* Step 1: m_hat = g, v_hat = g^2, so p -= lr * sign(g). */
    mp__opt_update(&o, 1, p, g, m, v, 2);
    ck_assert_float_eq_tol(p[0], 0.9f, 1e-6f);
    ck_assert_float_eq_tol(p[1], -2.9f, 1e-6f);
    /* Step 2 with g' = (-0.5, -2): recompute in double. */
    float g2[2] = {-0.5f, -2.0f};
    mp__opt_update(&o, 2, p, g2, m, v, 2);
    double m0 = 0.9 * 0.1 * 0.5 + 0.1 * -0.5, v0 = 0.999 * 0.001 * 0.25 + 0.001 * 0.25;
    double want = 0.9 - 0.1 * (m0 / (1 - 0.81)) / (sqrt(v0 / (1 - 0.998001)) + 1e-8);
    ck_assert_double_eq_tol(p[0], want, 1e-6);
    ck_assert_double_eq_tol(p[1], -2.8, 1e-5); /* constant gradient: same step */
}
END_TEST

START_TEST(adamw_decay_is_decoupled)
{
    /* Zero gradient: Adam's update is 0/(0+eps) = 0, so AdamW only decays;
     * Adam with L2 decay sees g = wd p and takes a full lr step. */
    mp__opt w = {MP_OPT_ADAMW, 0.1, 0, 0.9, 0.999, 1e-8, 0.1};
    float p = 1.0f, g = 0.0f, m = 0, v = 0;
    mp__opt_update(&w, 1, &p, &g, &m, &v, 1);
    ck_assert_float_eq_tol(p, 0.99f, 1e-7f);
    mp__opt a = w;
    a.kind = MP_OPT_ADAM;
    p = 1.0f;
    m = v = 0;
    mp__opt_update(&a, 1, &p, &g, &m, &v, 1);
    ck_assert_float_eq_tol(p, 0.9f, 1e-6f);
}
END_TEST

START_TEST(clip_and_ci_by_hand)
{
    ck_assert_double_eq(mp__clip_factor(5.0, 0.0), 1.0);
    ck_assert_double_eq(mp__clip_factor(5.0, 10.0), 1.0);
    ck_assert_double_eq_tol(mp__clip_factor(5.0, 1.0), 0.2, 1e-15);
    float g[3] = {3, 4, 0};
    ck_assert_double_eq(mp__sum_squares(g, 3), 25.0);
    mp__running r = {0, 0, 0};
    for (int i = 1; i <= 4; i++) mp__running_add(&r, i);
    double mean, ci;
    mp__running_ci95(&r, &mean, &ci);
    ck_assert_double_eq_tol(mean, 2.5, 1e-15);
    ck_assert_double_eq_tol(ci, 1.96 * sqrt(5.0 / 3.0) / 2.0, 1e-12);
    mp__running one = {0, 0, 0};
    mp__running_add(&one, 7);
    mp__running_ci95(&one, &mean, &ci);
    ck_assert_double_eq(mean, 7);
    ck_assert(isnan(ci));
}
END_TEST

static void square_item(void *ctx, int32_t worker, size_t i)
{
    (void)worker;
    ((uint64_t *)ctx)[i] = (uint64_t)i * i + 1;
}

START_TEST(pool_runs_every_item_once)
{
    for (int32_t n = 1; n <= 4; n++) {
        mp__pool *p = NULL;
        MP_CK_OK(mp__pool_create(&p, n));
        ck_assert_int_eq(mp__pool_size(p), n);
        static uint64_t out[1000];
        for (int rep = 0; rep < 20; rep++) {
            memset(out, 0, sizeof out);
            mp__pool_run(p, 1000, square_item, out);
            for (uint64_t i = 0; i < 1000; i++) ck_assert_uint_eq(out[i], i * i + 1);
        }
        mp__pool_run(p, 0, square_item, out);
        mp__pool_destroy(p);
    }
    mp__pool_destroy(NULL);
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

START_TEST(keys_have_names_defaults_and_ranges)
{
    const int32_t keys[] = {MP_CFG_META_ALGORITHM, MP_CFG_META_INNER_STEPS, MP_CFG_META_INNER_LR,
                            MP_CFG_META_SCOPE, MP_CFG_META_LEARN, MP_CFG_META_OPTIMIZER,
                            MP_CFG_META_OUTER_LR, MP_CFG_META_MOMENTUM, MP_CFG_META_BETA1,
                            MP_CFG_META_BETA2, MP_CFG_META_EPSILON, MP_CFG_META_WEIGHT_DECAY,
                            MP_CFG_META_CLIP_NORM, MP_CFG_META_EVAL_INNER_STEPS};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        ck_assert_ptr_nonnull(mp_config_key_name(keys[i]));
        ck_assert(strncmp(mp_config_key_name(keys[i]), "meta.", 5) == 0);
        ck_assert(keys[i] >= 300 && keys[i] < 400);
    }
    mp_config *c;
    MP_CK_OK(mp_config_create(&c));
    int64_t v;
    double f;
    MP_CK_OK(mp_config_get_int(c, MP_CFG_META_ALGORITHM, &v));
    ck_assert_int_eq(v, MP_META_MAML);
    MP_CK_OK(mp_config_get_float(c, MP_CFG_META_BETA2, &f));
    ck_assert_double_eq(f, 0.999);
    MP_CK_STATUS(mp_config_set_int(c, MP_CFG_META_ALGORITHM, 5), MP_ERR_RANGE);
    MP_CK_STATUS(mp_config_set_int(c, MP_CFG_META_SCOPE, 0), MP_ERR_RANGE);
    MP_CK_STATUS(mp_config_set_int(c, MP_CFG_META_LEARN, 16), MP_ERR_RANGE);
    MP_CK_STATUS(mp_config_set_int(c, MP_CFG_META_OPTIMIZER, 4), MP_ERR_RANGE);
    MP_CK_STATUS(mp_config_set_float(c, MP_CFG_META_BETA1, 1.0), MP_ERR_RANGE);
    MP_CK_STATUS(mp_config_set_float(c, MP_CFG_META_INNER_LR, -1.0), MP_ERR_RANGE);
    mp_config_destroy(c);
}
END_TEST

/* ---- the linear model: every algorithm by hand ----------------------------------------
 * y = w x + b (an MLP without hidden layers, no prompt), one support point
 * (xs, ys), one query point (xq, yq), inner LR a, one inner step:
 *   rs = w xs + b - ys;  w' = w - 2a rs xs;  b' = b - 2a rs;  rq = w' xq + b' - yq. */
static const double XS = 1.5, YS = 0.3, XQ = -0.7, YQ = 1.1, W0 = 0.8, B0 = -0.2, A = 0.1;

typedef struct {
    mp_model *model;
    mp_task *task;
    size_t iw, ib; /* offsets of w and b in the gradient vector (no prompt) */
} linear_setup;

static linear_setup linear(void)
{
    linear_setup s;
    s.model = make_model(1, 1, 0, 0, 0, MP_ACT_TANH, MP_TASK_REGRESSION, 1);
    s.iw = mp__model_tensor(s.model, tensor_index(s.model, "head.weight"))->offset;
    s.ib = mp__model_tensor(s.model, tensor_index(s.model, "head.bias"))->offset;
    float *p = mp__model_params(s.model);
    p[s.iw] = (float)W0;
    p[s.ib] = (float)B0;
    float sx = (float)XS, sy = (float)YS, qx = (float)XQ, qy = (float)YQ;
    MP_CK_OK(mp_task_create_regression(&s.task, 1, 1, &sx, &sy, 1, &qx, &qy, 1));
    return s;
}

static void linear_free(linear_setup *s)
{
    mp_task_destroy(s->task);
    mp_model_destroy(s->model);
}

static void check_grad2(const float *g, const linear_setup *s, double gw, double gb)
{
    ck_assert_msg(fabs(g[s->iw] - gw) < 1e-5 * (1 + fabs(gw)), "dw %.8g, expected %.8g", g[s->iw], gw);
    ck_assert_msg(fabs(g[s->ib] - gb) < 1e-5 * (1 + fabs(gb)), "db %.8g, expected %.8g", g[s->ib], gb);
}

START_TEST(linear_maml_fomaml_reptile_by_hand)
{
    double rs = W0 * XS + B0 - YS;
    double w1 = W0 - 2 * A * rs * XS, b1 = B0 - 2 * A * rs;
    double rq = w1 * XQ + b1 - YQ;
    const int algos[3] = {MP_META_MAML, MP_META_FOMAML, MP_META_REPTILE};
    for (int k = 0; k < 3; k++) {
        linear_setup s = linear();
        meta_opts o = defaults(algos[k]);
        o.inner_lr = A;
        mp_meta *m = make_meta(s.model, NULL, &o);
        ck_assert_uint_eq(grad_size(m), 2);
        double stats[MP_META_NUM_STATS];
        MP_CK_OK(mp_meta_compute_gradients(m, &s.task, 1, stats, MP_META_NUM_STATS));
        float g[2];
        MP_CK_OK(mp_meta_get_gradients(m, g, 2));
        if (algos[k] == MP_META_MAML)
            check_grad2(g, &s, 2 * rq * (XQ * (1 - 2 * A * XS * XS) - 2 * A * XS),
                        2 * rq * (-2 * A * XS * XQ + 1 - 2 * A));
        else if (algos[k] == MP_META_FOMAML)
            check_grad2(g, &s, 2 * rq * XQ, 2 * rq);
        else
            check_grad2(g, &s, 2 * A * rs * XS, 2 * A * rs);
        double rq0 = W0 * XQ + B0 - YQ;
        ck_assert_double_eq_tol(stats[MP_META_STAT_LOSS_BEFORE], rq0 * rq0, 1e-5);
        ck_assert_double_eq_tol(stats[MP_META_STAT_LOSS_AFTER], rq * rq, 1e-5);
        ck_assert(isnan(stats[MP_META_STAT_ACC_BEFORE]) && isnan(stats[MP_META_STAT_ACC_AFTER]));
        /* SGD with lr 1: the step subtracts exactly that gradient. */
        MP_CK_OK(mp_meta_apply_gradients(m));
        const float *p = mp__model_params_const(s.model);
        ck_assert_float_eq_tol(p[s.iw], (float)W0 - g[s.iw], 1e-6f);
        ck_assert_float_eq_tol(p[s.ib], (float)B0 - g[s.ib], 1e-6f);
        int64_t t;
        MP_CK_OK(mp_meta_step_count(m, &t));
        ck_assert_int_eq(t, 1);
        mp_meta_destroy(m);
        linear_free(&s);
    }
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

START_TEST(linear_metasgd_by_hand)
{
    linear_setup s = linear();
    meta_opts o = defaults(MP_META_METASGD);
    o.inner_lr = A;
    mp_meta *m = make_meta(s.model, NULL, &o);
    size_t nlr;
    MP_CK_OK(mp_meta_inner_lr_count(m, &nlr));
    ck_assert_uint_eq(nlr, 2);
    ck_assert_uint_eq(grad_size(m), 4);
    /* Distinct rates per element: aw for w, ab for b. */
    const double aw = 0.07, ab = 0.13;
    m->lr[s.iw] = (float)aw;
    m->lr[s.ib] = (float)ab;
    double rs = W0 * XS + B0 - YS;
    double w1 = W0 - aw * 2 * rs * XS, b1 = B0 - ab * 2 * rs;
    double rq = w1 * XQ + b1 - YQ;
    float g[4];
    MP_CK_OK(mp_meta_compute_gradients(m, &s.task, 1, NULL, 0));
    MP_CK_OK(mp_meta_get_gradients(m, g, 4));
    check_grad2(g, &s, 2 * rq * (XQ * (1 - 2 * aw * XS * XS) - 2 * ab * XS),
                2 * rq * (XQ * (-2 * aw * XS) + 1 - 2 * ab));
    ck_assert_double_eq_tol(g[2 + s.iw], 2 * rq * XQ * (-2 * rs * XS), 1e-5);
    ck_assert_double_eq_tol(g[2 + s.ib], 2 * rq * (-2 * rs), 1e-5);
    /* Apply: the rates move by -lr * their gradient too. */
    MP_CK_OK(mp_meta_apply_gradients(m));
    float lr[2];
    MP_CK_OK(mp_meta_get_inner_lr(m, lr, 2));
    ck_assert_float_eq_tol(lr[s.iw], (float)aw - g[2 + s.iw], 1e-6f);
    mp_meta_destroy(m);
    linear_free(&s);
}
END_TEST

START_TEST(linear_adapt_by_hand)
{
    linear_setup s = linear();
    meta_opts o = defaults(MP_META_MAML);
    o.inner_lr = A;
    o.eval_steps = 2;
    mp_meta *m = make_meta(s.model, NULL, &o);
    mp_model *out = NULL;
    MP_CK_OK(mp_model_clone(&out, s.model));
    double w = W0, b = B0;
    MP_CK_OK(mp_meta_set_eval_steps(m, 3));
    MP_CK_OK(mp_meta_adapt(m, s.task, NULL, out));
    for (int k = 0; k < 3; k++) {
        double r = w * XS + b - YS;
        w -= 2 * A * r * XS;
        b -= 2 * A * r;
    }
    const float *p = mp__model_params_const(out);
    ck_assert_double_eq_tol(p[s.iw], w, 1e-6);
    ck_assert_double_eq_tol(p[s.ib], b, 1e-6);
    /* The meta-parameters are untouched. */
    ck_assert_float_eq(mp__model_params_const(s.model)[s.iw], (float)W0);
    mp_model_destroy(out);
    mp_meta_destroy(m);
    linear_free(&s);
}
END_TEST

/* ---- finite differences of the whole inner + outer computation -------------------------- */
typedef struct {
    mp_model *model, *scratch_model;
    mp_prompt *prompt, *scratch_prompt;
    mp_task *task;
    float qx[256], qt[32];
    int32_t ql[32];
    size_t nq;
    int classifier;
    /* Inner rate; central-difference step; checked parameters: every
     * `stride`-th learned one; |meta-gradient - fd| < atol + rtol |fd| */
    double inner_lr;
    float eps;
    size_t stride;
    double atol, rtol;
    const char *name;
} fd_setup;

/* The query set of s->task into s (regression targets or labels). */
static void fd_read_query(fd_setup *s)
{
    size_t ns;
    int32_t dim;
    MP_CK_OK(mp_task_sizes(s->task, &ns, &s->nq, &dim, NULL, NULL));
    ck_assert_uint_le(s->nq * (size_t)dim, 256);
    ck_assert_uint_le(s->nq, 32);
    if (s->classifier) MP_CK_OK(mp_task_get_query(s->task, s->qx, 256, s->ql, 32, NULL, 0));
    else MP_CK_OK(mp_task_get_query(s->task, s->qx, 256, NULL, 0, s->qt, 32));
}

static fd_setup fd_make(void)
{
    fd_setup s;
    memset(&s, 0, sizeof s);
    s.model = make_model(2, 1, 2, 1, 6, MP_ACT_TANH, MP_TASK_REGRESSION, 3);
    s.prompt = make_prompt(s.model, 0.5, 4);
    MP_CK_OK(mp_model_clone(&s.scratch_model, s.model));
    s.scratch_prompt = make_prompt(s.model, 0, 0);
    s.task = regression_task(2, 6, 5, 11);
    s.inner_lr = 0.3;
    s.eps = 1e-2f;
    s.stride = 3;
    s.atol = 2e-3;
    s.rtol = 2e-2;
    s.name = "mlp";
    fd_read_query(&s);
    return s;
}

static void fd_free(fd_setup *s)
{
    mp_task_destroy(s->task);
    mp_prompt_destroy(s->prompt);
    mp_prompt_destroy(s->scratch_prompt);
    mp_model_destroy(s->model);
    mp_model_destroy(s->scratch_model);
}

/* Query loss after the inner loop from the current meta-parameters. */
static double fd_loss(mp_meta *m, fd_setup *s)
{
    float loss;
    size_t in = (size_t)mp__model_input_dim(s->model);
    MP_CK_OK(mp_meta_adapt(m, s->task, s->scratch_prompt, s->scratch_model));
    MP_CK_OK(mp_model_loss(s->scratch_model, s->scratch_prompt, s->qx, s->nq, s->nq * in,
                           s->classifier ? s->ql : NULL, s->classifier ? NULL : s->qt, &loss));
    return loss;
}

/* Central difference with respect to *x. */
static double fd_at(mp_meta *m, fd_setup *s, float *x)
{
    const float eps = s->eps, x0 = *x;
    *x = x0 + eps;
    double lp = fd_loss(m, s);
    *x = x0 - eps;
    double lm = fd_loss(m, s);
    *x = x0;
    return (lp - lm) / (2.0 * eps);
}

/* Whether gradient entry j is learned (prompt, parameter of a learned
 * tensor, or Meta-SGD rate with MP_LEARN_INNER_LR). */
static int entry_learned(const mp_meta *m, size_t j)
{
    if (j < m->n_prompt) return (m->learn & MP_LEARN_PROMPT) != 0;
    if (j >= m->n_prompt + m->n_params) return (m->learn & MP_LEARN_INNER_LR) != 0;
    size_t off = j - m->n_prompt;
    for (int32_t i = 0; i < m->n_tensors; i++) {
        const mp__param_info *pi = mp__model_tensor(m->model, i);
        if (off >= pi->offset && off < pi->offset + (size_t)pi->rows * (size_t)pi->cols) return m->learned[i];
    }
    ck_abort_msg("entry %zu outside the model", j);
    return 0;
}

/* The first-order meta-gradient of m on s.task with m's own inner rates
 * (scalar or per element): adapt with m (first order), then the query
 * gradient at the adapted point, taken by a FOMAML meta with 0 inner
 * steps over a copy of the adapted values learning what m learns. */
static float *first_order_reference(mp_meta *m, fd_setup *s, const meta_opts *o)
{
    mp_model *am;
    MP_CK_OK(mp_model_clone(&am, s->model));
    mp_prompt *ap = make_prompt(s->model, 0, 0);
    MP_CK_OK(mp_meta_adapt(m, s->task, ap, am));
    meta_opts fo = *o;
    fo.algo = MP_META_FOMAML;
    fo.steps = 0;
    fo.learn = m->learn & ~MP_LEARN_INNER_LR;
    mp_meta *f = make_meta(am, ap, &fo);
    float *g = meta_grad(f, &s->task, 1);
    mp_meta_destroy(f);
    mp_prompt_destroy(ap);
    mp_model_destroy(am);
    return g;
}

/* Checks the meta-gradient of (algo, steps, scope, learn) on s against
 * central differences of the query loss after the inner loop: every
 * learned prompt entry, every s->stride-th learned parameter and every
 * learned rate; entries not learned must be exactly 0. Also checks that
 * the exact gradient differs measurably from the first-order one computed
 * with the same inner rates (the model has curvature), i.e. that second
 * order is really taken. */
static void fd_check_on(fd_setup *s, int algo, int steps, int scope, int learn)
{
    meta_opts o = defaults(algo);
    o.scope = scope;
    o.learn = learn;
    o.steps = o.eval_steps = steps;
    o.inner_lr = s->inner_lr;
    mp_meta *m = make_meta(s->model, s->prompt, &o);
    if (algo == MP_META_METASGD)
        for (size_t i = 0; i < m->n_lr; i++) m->lr[i] = 0.1f + 0.4f * (float)(i % 5) / 4.0f;
    float *g = meta_grad(m, &s->task, 1);
    float *gf = first_order_reference(m, s, &o);
    if (algo == MP_META_MAML) {
        /* The reference equals what the FOMAML algorithm computes. */
        meta_opts fo = o;
        fo.algo = MP_META_FOMAML;
        mp_meta *f = make_meta(s->model, s->prompt, &fo);
        float *gfo = meta_grad(f, &s->task, 1);
        for (size_t j = 0; j < m->n_prompt + m->n_params; j++)
            ck_assert_msg(fabsf(gfo[j] - gf[j]) <= 1e-5f * (1 + fabsf(gf[j])),
                          "%s, entry %zu: FOMAML %g, reference %g", s->name, j, gfo[j], gf[j]);
        free(gfo);
        mp_meta_destroy(f);
    }
    double max_gap = 0, max_err = 0, max_ratio = 0;
    size_t np = m->n_prompt, nparam = m->n_params, checked = 0, checked_values = 0;
    for (size_t j = 0; j < np + nparam + m->n_lr; j++) {
        if (!entry_learned(m, j)) {
            ck_assert_msg(g[j] == 0.0f, "%s: entry %zu is not learned but has gradient %g", s->name, j, g[j]);
            continue;
        }
        if (j >= np && j < np + nparam && (j - np) % s->stride != 0) continue;
        float *x = j < np ? mp__prompt_data(s->prompt) + j
                          : j < np + nparam ? mp__model_params(s->model) + (j - np) : m->lr + (j - np - nparam);
        double fd = fd_at(m, s, x);
        double err = fabs(fd - g[j]), tol = s->atol + s->rtol * fabs(fd);
        ck_assert_msg(err < tol, "%s, scope %d, learn %d, entry %zu: meta-gradient %.7g, finite difference %.7g",
                      s->name, scope, learn, j, g[j], fd);
        if (err > max_err) max_err = err;
        if (err / tol > max_ratio) max_ratio = err / tol;
        if (j < np + nparam) {
            if (fabs(g[j] - gf[j]) > max_gap) max_gap = fabs(g[j] - gf[j]);
            checked_values++;
        }
        checked++;
    }
    ck_assert_uint_gt(checked, 3);
    /* (Only rates learned: there is no first-order counterpart to compare.) */
    if (checked_values)
        ck_assert_msg(max_gap > 10 * max_err && max_gap > 1e-2,
                      "%s: second vs first order gap %.3g, fd error %.3g", s->name, max_gap, max_err);
    if (getenv("MP_TEST_VERBOSE"))
        printf("fd %s algo %d steps %d scope %d learn %d: %zu entries, max |error| %.3g (%.2f of the tolerance), "
               "second vs first order gap %.3g\n",
               s->name, algo, steps, scope, learn, checked, max_err, max_ratio, max_gap);
    free(g);
    free(gf);
    mp_meta_destroy(m);
}

/* A 3-way classifier on a tiny prompted transformer (d = 8, 2 heads, MLP
 * width 8, prompt of 2 tokens): token == 0, a patch transformer on 4 x 4
 * images in 2 x 2 patches with 2 blocks; token == 1, a token transformer
 * (vocabulary 7, 5 tokens) with 1 block. The initial weights are shifted
 * by seeded U(-0.2, 0.2) noise: no tensor sits at its special value (unit
 * norms, zero biases) and the embeddings and positions (initialised with
 * std 0.02) are not so small that the layer norms make the adapted loss
 * too curved for float32 central differences (meta-gradients up to ~90
 * without the shift). A task of 6 support and 6 query examples, 2 per
 * class. Central differences with step 1e-3 (rounding and truncation
 * errors both ~1e-4 here); inner rate 0.1. */
static fd_setup fd_make_tf(int token)
{
    fd_setup s;
    memset(&s, 0, sizeof s);
    mp_config *c;
    MP_CK_OK(mp_config_create(&c));
    const int64_t kv[] = {MP_CFG_MODEL_KIND, MP_MODEL_TRANSFORMER, MP_CFG_MODEL_OUTPUT_DIM, 3,
                          MP_CFG_MODEL_TASK, MP_TASK_CLASSIFICATION, MP_CFG_MODEL_D_MODEL, 8,
                          MP_CFG_MODEL_HEADS, 2, MP_CFG_MODEL_MLP_DIM, 8, MP_CFG_MODEL_PROMPT_LEN, 2,
                          MP_CFG_MODEL_LAYERS, token ? 1 : 2, MP_CFG_SEED, 17, 0};
    for (const int64_t *p = kv; p[0]; p += 2) MP_CK_OK(mp_config_set_int(c, (int32_t)p[0], p[1]));
    if (token) {
        MP_CK_OK(mp_config_set_int(c, MP_CFG_MODEL_VOCAB, 7));
        MP_CK_OK(mp_config_set_int(c, MP_CFG_MODEL_SEQ_LEN, 5));
    } else {
        MP_CK_OK(mp_config_set_int(c, MP_CFG_MODEL_IMAGE_HEIGHT, 4));
        MP_CK_OK(mp_config_set_int(c, MP_CFG_MODEL_IMAGE_WIDTH, 4));
        MP_CK_OK(mp_config_set_int(c, MP_CFG_MODEL_IMAGE_CHANNELS, 1));
        MP_CK_OK(mp_config_set_int(c, MP_CFG_MODEL_PATCH, 2));
    }
    MP_CK_OK(mp_model_create(&s.model, c));
    mp_config_destroy(c);
    float *w = mp__model_params(s.model);
    mp__rng r;
    mp__rng_seed(&r, 31, 0);
    for (size_t j = 0; j < mp__model_param_count(s.model); j++)
        w[j] += (float)(0.4 * mp__rng_uniform(&r) - 0.2);
    s.prompt = make_prompt(s.model, 0.5, 4);
    MP_CK_OK(mp_model_clone(&s.scratch_model, s.model));
    s.scratch_prompt = make_prompt(s.model, 0, 0);
    int32_t dim = mp__model_input_dim(s.model);
    float sx[6 * 16], qx[6 * 16];
    int32_t sl[6] = {0, 1, 2, 0, 1, 2}, ql[6] = {2, 0, 1, 1, 2, 0};
    mp__rng_seed(&r, 23, (uint64_t)token);
    for (int i = 0; i < 6 * dim; i++) {
        double u = mp__rng_uniform(&r), v = mp__rng_uniform(&r);
        sx[i] = token ? (float)(int)(7 * u) : (float)(2 * u - 1);
        qx[i] = token ? (float)(int)(7 * v) : (float)(2 * v - 1);
    }
    MP_CK_OK(mp_task_create_classification(&s.task, dim, 3, sx, sl, 6, qx, ql, 6));
    s.classifier = 1;
    s.inner_lr = 0.1;
    s.eps = 1e-3f;
    s.stride = 3;
    s.atol = 5e-4;
    s.rtol = 5e-3;
    s.name = token ? "token transformer" : "patch transformer";
    fd_read_query(&s);
    return s;
}

static void fd_check(int algo, int steps, int scope, int learn)
{
    fd_setup s = fd_make();
    fd_check_on(&s, algo, steps, scope, learn);
    fd_free(&s);
}

#define LEARN_ALL (MP_LEARN_PROMPT | MP_LEARN_HEAD | MP_LEARN_BACKBONE)

START_TEST(maml_matches_finite_differences)
{
    fd_check(MP_META_MAML, 1, MP_SCOPE_PROMPT_HEAD, LEARN_ALL);
    fd_check(MP_META_MAML, 3, MP_SCOPE_PROMPT_HEAD, LEARN_ALL);
    fd_check(MP_META_MAML, 3, MP_SCOPE_ALL, LEARN_ALL);
    fd_check(MP_META_MAML, 2, MP_SCOPE_PROMPT, LEARN_ALL);
    fd_check(MP_META_MAML, 2, MP_SCOPE_ALL, MP_LEARN_PROMPT);
}
END_TEST

/* Second-order MAML through transformers, whose inner steps and query
 * pass share the prompt-independent start of the forward pass through the
 * worker's forward cache (scope prompt+head: one prefix for every inner
 * step; scope all: the adapted backbone needs a new one at every step). */
START_TEST(maml_transformers_match_finite_differences)
{
    for (int token = 0; token < 2; token++) {
        fd_setup s = fd_make_tf(token);
        fd_check_on(&s, MP_META_MAML, 2, MP_SCOPE_PROMPT_HEAD, LEARN_ALL);
        fd_check_on(&s, MP_META_MAML, 2, MP_SCOPE_ALL, LEARN_ALL);
        fd_free(&s);
    }
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

/* The worker's forward cache holds variable ids of its tape, so it must be
 * emptied at every reset of that tape. Ids carry a tag that changes at
 * every reset and comes back after a full cycle (MP__ID_TAGS resets), so
 * a stale slot only matches when a task runs exactly a cycle after the
 * one that filled it with no pass in between storing a slot: tasks with
 * an invalid token id reset the tape and fail (at the token-id check right
 * after the reset) before anything is stored. The task after them must still get exactly the
 * first meta-gradient (a stale slot would hand it variables its tape does
 * not have yet). */
START_TEST(forward_cache_is_emptied_at_every_tape_reset)
{
    fd_setup s = fd_make_tf(1);
    meta_opts o = defaults(MP_META_MAML);
    o.scope = MP_SCOPE_PROMPT_HEAD;
    o.steps = 2;
    o.threads = 1;
    mp_meta *m = make_meta(s.model, s.prompt, &o);
    float sx[6 * 5], qx[6 * 5];
    int32_t sl[6], ql[6];
    MP_CK_OK(mp_task_get_support(s.task, sx, 30, sl, 6, NULL, 0));
    MP_CK_OK(mp_task_get_query(s.task, qx, 30, ql, 6, NULL, 0));
    sx[3] = 7; /* the vocabulary is 0..6 */
    mp_task *bad;
    MP_CK_OK(mp_task_create_classification(&bad, 5, 3, sx, sl, 6, qx, ql, 6));
    mp_tape *tape = m->w[0].tape;
    uint32_t before = tape->id_base;
    float *g1 = meta_grad(m, &s.task, 1);
    uint32_t tag = tape->id_base;
    ck_assert_uint_ne(tag, before);
    /* Failing tasks until the next reset gives the first run's tag again
     * (MP__ID_TAGS - 1 of them). */
    int resets = 0;
    while (tape->id_base != before) {
        MP_CK_STATUS(mp_meta_compute_gradients(m, &bad, 1, NULL, 0), MP_ERR_INVALID_ARGUMENT);
        MP_CK_ERROR_MENTIONS("is not an integer id");
        ck_assert_int_lt(++resets, 4096);
    }
    float *g2 = meta_grad(m, &s.task, 1);
    ck_assert_uint_eq(tape->id_base, tag); /* the ids of the first run again */
    ck_assert_int_eq(memcmp(g1, g2, grad_size(m) * sizeof(float)), 0);
    free(g1);
    free(g2);
    mp_task_destroy(bad);
    mp_meta_destroy(m);
    fd_free(&s);
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

START_TEST(metasgd_matches_finite_differences)
{
    fd_check(MP_META_METASGD, 1, MP_SCOPE_PROMPT_HEAD, LEARN_ALL | MP_LEARN_INNER_LR);
    fd_check(MP_META_METASGD, 2, MP_SCOPE_PROMPT_HEAD, LEARN_ALL | MP_LEARN_INNER_LR);
    fd_check(MP_META_METASGD, 2, MP_SCOPE_ALL, LEARN_ALL | MP_LEARN_INNER_LR);
    fd_check(MP_META_METASGD, 2, MP_SCOPE_PROMPT, MP_LEARN_PROMPT | MP_LEARN_INNER_LR);
    fd_check(MP_META_METASGD, 1, MP_SCOPE_PROMPT, MP_LEARN_INNER_LR);
}
END_TEST

START_TEST(batch_of_copies_equals_one_task)
{
    const int algos[4] = {MP_META_MAML, MP_META_FOMAML, MP_META_REPTILE, MP_META_METASGD};
    for (int k = 0; k < 4; k++) {
        fd_setup s = fd_make();
        meta_opts o = defaults(algos[k]);
        o.steps = 2;
        o.threads = 2;
        mp_meta *m = make_meta(s.model, s.prompt, &o);
        float *one = meta_grad(m, &s.task, 1);
        mp_task *five[5] = {s.task, s.task, s.task, s.task, s.task};
        float *many = meta_grad(m, five, 5);
        for (size_t j = 0; j < grad_size(m); j++)
            ck_assert_msg(fabsf(one[j] - many[j]) <= 1e-6f * (1 + fabsf(one[j])), "entry %zu: %g vs %g", j,
                          one[j], many[j]);
        free(one);
        free(many);
        mp_meta_destroy(m);
        fd_free(&s);
    }
}
END_TEST

/* ---- threads: bit-identical results ------------------------------------------------------ */
static void train_sinusoid(int algo, int threads, float *params_out, size_t n_params, double *stats)
{
    mp_model *model = make_model(1, 1, 0, 2, 40, MP_ACT_RELU, MP_TASK_REGRESSION, 5);
    meta_opts o = defaults(algo);
    o.opt = MP_OPT_ADAM;
    o.outer_lr = 1e-3;
    o.inner_lr = 0.01;
    o.threads = threads;
    mp_meta *m = make_meta(model, NULL, &o);
    mp_task *tasks[6];
    for (int step = 0; step < 3; step++) {
        for (int i = 0; i < 6; i++) MP_CK_OK(mp_task_sinusoid(&tasks[i], 7, (uint64_t)(step * 6 + i), 10, 10));
        MP_CK_OK(mp_meta_step(m, tasks, 6, stats, MP_META_NUM_STATS));
        for (int i = 0; i < 6; i++) mp_task_destroy(tasks[i]);
    }
    MP_CK_OK(mp_model_get_params(model, params_out, n_params));
    mp_meta_destroy(m);
    mp_model_destroy(model);
}

START_TEST(threads_give_bit_identical_steps)
{
    const int algos[4] = {MP_META_MAML, MP_META_FOMAML, MP_META_REPTILE, MP_META_METASGD};
    for (int a = 0; a < 4; a++) {
        static float ref[4000], got[4000];
        double sref[4], sgot[4];
        train_sinusoid(algos[a], 1, ref, 4000, sref);
        for (int threads = 2; threads <= 4; threads += 2) {
            train_sinusoid(algos[a], threads, got, 4000, sgot);
            ck_assert_msg(memcmp(ref, got, sizeof ref) == 0, "parameters differ with %d threads", threads);
            ck_assert(memcmp(sref, sgot, sizeof sref) == 0);
        }
    }
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

/* ---- non-finite values ----------------------------------------------------------------------- */
START_TEST(non_finite_loss_skips_the_update)
{
    mp_model *model = make_model(1, 1, 0, 1, 8, MP_ACT_TANH, MP_TASK_REGRESSION, 2);
    meta_opts o = defaults(MP_META_MAML);
    o.opt = MP_OPT_ADAM;
    mp_meta *m = make_meta(model, NULL, &o);
    mp_task *good;
    MP_CK_OK(mp_task_sinusoid(&good, 1, 0, 5, 5));
    MP_CK_OK(mp_meta_step(m, &good, 1, NULL, 0));
    size_t n = mp__model_param_count(model), ng = grad_size(m);
    float *before = malloc(n * sizeof(float)), *m1 = malloc(ng * sizeof(float));
    memcpy(before, mp__model_params_const(model), n * sizeof(float));
    memcpy(m1, m->m1, ng * sizeof(float));
    float sx[2] = {0.5f, 1.0f}, st[2] = {1e20f, -1e20f}; /* squares overflow float */
    mp_task *bad;
    MP_CK_OK(mp_task_create_regression(&bad, 1, 1, sx, st, 2, sx, st, 2));
    mp_task *batch[2] = {good, bad};
    MP_CK_STATUS(mp_meta_step(m, batch, 2, NULL, 0), MP_ERR_NOT_FINITE);
    ck_assert(memcmp(before, mp__model_params_const(model), n * sizeof(float)) == 0);
    ck_assert(memcmp(m1, m->m1, ng * sizeof(float)) == 0);
    int64_t t;
    MP_CK_OK(mp_meta_step_count(m, &t));
    ck_assert_int_eq(t, 1);
    /* The message names the public function and the task, in task order. */
    ck_assert_msg(strncmp(mp_meta_error(m), "mp_meta_step: task 1: a task loss is not finite", 47) == 0, "%s",
                  mp_meta_error(m));
    double mean, ci;
    MP_CK_STATUS(mp_meta_evaluate_tasks(m, batch, 2, &mean, &ci), MP_ERR_NOT_FINITE);
    ck_assert_msg(strncmp(mp_meta_error(m), "mp_meta_evaluate_tasks: task 1: ", 32) == 0, "%s", mp_meta_error(m));
    MP_CK_STATUS(mp_meta_adapt(m, bad, NULL, NULL), MP_ERR_NOT_FINITE);
    ck_assert_msg(strncmp(mp_last_error(), "mp_meta_adapt: a task loss is not finite", 40) == 0, "%s",
                  mp_last_error());
    float *nan = calloc(ng, sizeof(float));
    nan[0] = NAN;
    MP_CK_STATUS(mp_meta_set_gradients(m, nan, ng), MP_ERR_NOT_FINITE);
    MP_CK_STATUS(mp_meta_apply_gradients(m), MP_ERR_STATE);
    free(nan);
    free(before);
    free(m1);
    mp_task_destroy(bad);
    mp_task_destroy(good);
    mp_meta_destroy(m);
    mp_model_destroy(model);
}
END_TEST

/* Finite losses, non-finite gradients: a linear model with a prompt
 * (y = w0 x + w1 p + b, all 0.1) and inputs of 1e20, so that a loss is
 * about 1e38 (finite in float) while its gradient 2 y x overflows. */
typedef struct {
    float *params, *prompt, *m1, *m2;
    int64_t t;
} meta_snapshot;

static meta_snapshot snapshot(const mp_meta *m)
{
    meta_snapshot s;
    s.params = malloc(m->n_params * sizeof(float));
    s.prompt = malloc(m->n_prompt * sizeof(float));
    s.m1 = malloc(m->n_grad * sizeof(float));
    s.m2 = malloc(m->n_grad * sizeof(float));
    memcpy(s.params, mp__model_params_const(m->model), m->n_params * sizeof(float));
    memcpy(s.prompt, mp__prompt_data_const(m->prompt), m->n_prompt * sizeof(float));
    memcpy(s.m1, m->m1, m->n_grad * sizeof(float));
    memcpy(s.m2, m->m2, m->n_grad * sizeof(float));
    MP_CK_OK(mp_meta_step_count(m, &s.t));
    return s;
}

static void check_unchanged(const mp_meta *m, const meta_snapshot *s, const char *what)
{
    int64_t t;
    MP_CK_OK(mp_meta_step_count(m, &t));
    ck_assert_msg(t == s->t, "%s: step count %lld, was %lld", what, (long long)t, (long long)s->t);
    ck_assert_msg(memcmp(s->params, mp__model_params_const(m->model), m->n_params * sizeof(float)) == 0,
                  "%s: parameters changed", what);
    ck_assert_msg(memcmp(s->prompt, mp__prompt_data_const(m->prompt), m->n_prompt * sizeof(float)) == 0,
                  "%s: prompt changed", what);
    ck_assert_msg(memcmp(s->m1, m->m1, m->n_grad * sizeof(float)) == 0, "%s: m1 changed", what);
    ck_assert_msg(memcmp(s->m2, m->m2, m->n_grad * sizeof(float)) == 0, "%s: m2 changed", what);
}

static void snapshot_free(meta_snapshot *s)
{
    free(s->params);
    free(s->prompt);
    free(s->m1);
    free(s->m2);
}

START_TEST(non_finite_gradient_skips_the_update)
{
    float small_x[2] = {0.5f, -0.3f}, small_t[2] = {0.2f, 0.1f}, huge_x[1] = {1e20f}, zero[1] = {0.0f};
    mp_task *good, *huge_query, *huge_support;
    MP_CK_OK(mp_task_create_regression(&good, 1, 1, small_x, small_t, 2, small_x, small_t, 2));
    MP_CK_OK(mp_task_create_regression(&huge_query, 1, 1, small_x, small_t, 2, huge_x, zero, 1));
    MP_CK_OK(mp_task_create_regression(&huge_support, 1, 1, huge_x, zero, 1, small_x, small_t, 2));
    /* The premise: the huge task's loss is finite. */
    {
        mp_model *model = make_model(1, 1, 1, 0, 0, MP_ACT_TANH, MP_TASK_REGRESSION, 1);
        mp_prompt *prompt = make_prompt(model, 0, 0);
        float ones[4] = {0.1f, 0.1f, 0.1f, 0.1f}, loss;
        MP_CK_OK(mp_model_set_params(model, ones, mp__model_param_count(model)));
        MP_CK_OK(mp_prompt_set(prompt, ones, 1));
        MP_CK_OK(mp_model_loss(model, prompt, huge_x, 1, 1, NULL, zero, &loss));
        ck_assert_msg(isfinite(loss) && loss > 1e37f, "loss %g", (double)loss);
        mp_prompt_destroy(prompt);
        mp_model_destroy(model);
    }
    /* (algorithm, task whose gradient overflows, expected message). */
    struct {
        int algo;
        mp_task *bad;
        const char *msg;
    } cases[] = {
        {MP_META_MAML, huge_query, "the meta-gradient is not finite"},
        {MP_META_FOMAML, huge_query, "the meta-gradient is not finite"},
        {MP_META_REPTILE, huge_support, "the meta-gradient is not finite"},
        /* An inner step with an overflowing gradient: the query loss after it is not finite. */
        {MP_META_FOMAML, huge_support, "task 1: a task loss is not finite"},
        {MP_META_MAML, huge_support, "task 1: a task loss is not finite"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        mp_model *model = make_model(1, 1, 1, 0, 0, MP_ACT_TANH, MP_TASK_REGRESSION, 1);
        mp_prompt *prompt = make_prompt(model, 0, 0);
        size_t np = mp__model_param_count(model);
        ck_assert_uint_eq(np, 3);
        float ones[3] = {0.1f, 0.1f, 0.1f};
        MP_CK_OK(mp_model_set_params(model, ones, np));
        MP_CK_OK(mp_prompt_set(prompt, ones, 1));
        meta_opts o = defaults(cases[c].algo);
        o.opt = MP_OPT_ADAM;
        o.outer_lr = 0.01;
        o.threads = 2;
        mp_meta *m = make_meta(model, prompt, &o);
        MP_CK_OK(mp_meta_step(m, &good, 1, NULL, 0)); /* moments and step count become non-zero */
        meta_snapshot snap = snapshot(m);
        mp_task *batch[2] = {good, cases[c].bad};
        MP_CK_STATUS(mp_meta_step(m, batch, 2, NULL, 0), MP_ERR_NOT_FINITE);
        ck_assert_msg(strncmp(mp_meta_error(m), "mp_meta_step: ", 14) == 0 && strstr(mp_meta_error(m), cases[c].msg),
                      "case %zu: %s", c, mp_meta_error(m));
        check_unchanged(m, &snap, "mp_meta_step");
        /* compute_gradients keeps a gradient set before it. */
        float g[4] = {0.5f, -0.5f, 0.25f, 1.0f}, got[4];
        MP_CK_OK(mp_meta_set_gradients(m, g, 4));
        MP_CK_STATUS(mp_meta_compute_gradients(m, batch, 2, NULL, 0), MP_ERR_NOT_FINITE);
        ck_assert_msg(strncmp(mp_meta_error(m), "mp_meta_compute_gradients: ", 27) == 0, "%s", mp_meta_error(m));
        MP_CK_STATUS(mp_meta_step(m, batch, 2, NULL, 0), MP_ERR_NOT_FINITE);
        MP_CK_OK(mp_meta_get_gradients(m, got, 4));
        ck_assert(memcmp(g, got, sizeof g) == 0);
        check_unchanged(m, &snap, "mp_meta_compute_gradients");
        snapshot_free(&snap);
        mp_meta_destroy(m);
        mp_prompt_destroy(prompt);
        mp_model_destroy(model);
    }
    mp_task_destroy(good);
    mp_task_destroy(huge_query);
    mp_task_destroy(huge_support);
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

/* Finite gradients whose update is not finite: a corrupted optimizer state
 * (a negative Adam second moment, as a crafted checkpoint used to load) or
 * an outer step that overflows. The update is checked before anything is
 * written: MP_ERR_NOT_FINITE, the meta-parameters, the optimizer state, the
 * step count, the statistics and a pending gradient unchanged. */
START_TEST(non_finite_update_changes_nothing)
{
    float x[2] = {0.5f, -0.3f}, t[2] = {0.2f, 0.1f};
    mp_task *task;
    MP_CK_OK(mp_task_create_regression(&task, 1, 1, x, t, 2, x, t, 2));
    for (int opt = MP_OPT_SGD; opt <= MP_OPT_ADAMW; opt++) {
        mp_model *model = make_model(1, 1, 1, 1, 4, MP_ACT_TANH, MP_TASK_REGRESSION, 3);
        mp_prompt *prompt = make_prompt(model, 0.5, 1);
        meta_opts o = defaults(MP_META_MAML);
        o.opt = opt;
        o.outer_lr = 0.01;
        o.clip = 1e-3; /* the clipping factor is not 1: a pending gradient must not be scaled */
        mp_meta *m = make_meta(model, prompt, &o);
        MP_CK_OK(mp_meta_step(m, &task, 1, NULL, 0));
        size_t ng = grad_size(m);
        float *g = calloc(ng, sizeof(float)), *got = calloc(ng, sizeof(float));
        for (size_t i = 0; i < ng; i++) g[i] = 0.25f * (float)(i % 5) - 0.5f;
        /* 1. Corrupted state: Adam divides by sqrt(m2), SGD's velocity is infinite. */
        float saved = opt == MP_OPT_SGD ? m->m1[2] : m->m2[2];
        if (opt == MP_OPT_SGD)
            m->m1[2] = INFINITY;
        else
            m->m2[2] = -1.0f;
        meta_snapshot snap = snapshot(m);
        double st[MP_META_NUM_STATS] = {-7, -7, -7, -7};
        MP_CK_STATUS(mp_meta_step(m, &task, 1, st, MP_META_NUM_STATS), MP_ERR_NOT_FINITE);
        ck_assert_msg(strncmp(mp_meta_error(m), "mp_meta_step: the update would make", 35) == 0 &&
                          strstr(mp_meta_error(m), "entry 2 "), "%s", mp_meta_error(m));
        check_unchanged(m, &snap, "mp_meta_step");
        for (int k = 0; k < MP_META_NUM_STATS; k++) ck_assert(st[k] == -7);
        MP_CK_OK(mp_meta_set_gradients(m, g, ng));
        MP_CK_STATUS(mp_meta_step(m, &task, 1, NULL, 0), MP_ERR_NOT_FINITE);
        MP_CK_STATUS(mp_meta_apply_gradients(m), MP_ERR_NOT_FINITE);
        ck_assert_msg(strncmp(mp_meta_error(m), "mp_meta_apply_gradients: the update would make", 46) == 0,
                      "%s", mp_meta_error(m));
        check_unchanged(m, &snap, "mp_meta_apply_gradients");
        MP_CK_OK(mp_meta_get_gradients(m, got, ng)); /* still pending, not clipped */
        ck_assert(memcmp(g, got, ng * sizeof(float)) == 0);
        /* The control: the same calls with the state repaired succeed. */
        if (opt == MP_OPT_SGD)
            m->m1[2] = saved;
        else
            m->m2[2] = saved;
        MP_CK_OK(mp_meta_apply_gradients(m));
        MP_CK_OK(mp_meta_step(m, &task, 1, st, MP_META_NUM_STATS));
        ck_assert(st[0] != -7);
        int64_t steps = 0;
        MP_CK_OK(mp_meta_step_count(m, &steps));
        ck_assert_int_eq(steps, 3);
        snapshot_free(&snap);
        /* 2. Sound state, an outer step that overflows: SGD's lr 1e6 x gradient
         * 1e35 in the parameter, Adam's squared gradient in its second moment. */
        mp_meta_destroy(m);
        o.outer_lr = 1e6;
        o.clip = 0;
        m = make_meta(model, prompt, &o);
        snap = snapshot(m);
        g[1] = 1e35f;
        MP_CK_OK(mp_meta_set_gradients(m, g, ng));
        MP_CK_STATUS(mp_meta_apply_gradients(m), MP_ERR_NOT_FINITE);
        MP_CK_ERROR_MENTIONS("entry 1 ");
        check_unchanged(m, &snap, "overflowing step");
        g[1] = 1.0f;
        MP_CK_OK(mp_meta_set_gradients(m, g, ng));
        MP_CK_OK(mp_meta_apply_gradients(m));
        for (size_t i = 0; i < m->n_prompt; i++) ck_assert(isfinite(mp__prompt_data(prompt)[i]));
        snapshot_free(&snap);
        free(g);
        free(got);
        mp_meta_destroy(m);
        mp_prompt_destroy(prompt);
        mp_model_destroy(model);
    }
    mp_task_destroy(task);
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

/* ---- split step, clipping ------------------------------------------------------------------------ */
START_TEST(compute_set_apply_equals_step_and_clips)
{
    fd_setup s = fd_make();
    meta_opts o = defaults(MP_META_MAML);
    o.clip = 0.05;
    mp_meta *m = make_meta(s.model, s.prompt, &o);
    size_t ng = grad_size(m);
    ck_assert_uint_eq(ng, m->n_prompt + m->n_params);
    float *g = meta_grad(m, &s.task, 1);
    double norm = sqrt(mp__sum_squares(g, ng));
    ck_assert(norm > 0.05);
    /* External all-reduce: set the same gradient back, then apply. */
    MP_CK_OK(mp_meta_set_gradients(m, g, ng));
    float p0 = mp__prompt_data(s.prompt)[0];
    MP_CK_OK(mp_meta_apply_gradients(m));
    ck_assert_float_eq_tol(mp__prompt_data(s.prompt)[0], p0 - (float)(0.05 / norm) * g[0], 1e-6f);
    MP_CK_STATUS(mp_meta_apply_gradients(m), MP_ERR_STATE);
    MP_CK_STATUS(mp_meta_get_gradients(m, g, ng), MP_ERR_STATE);
    free(g);
    mp_meta_destroy(m);
    fd_free(&s);
}
END_TEST

/* ---- outer optimizers through the handle ---------------------------------------------------------
 * The linear model (w, b: gradient layout [w, b] at s.iw, s.ib), gradients
 * set with mp_meta_set_gradients and applied with mp_meta_apply_gradients,
 * against the documented update rules evaluated in double. */
typedef struct {
    double p[2], m[2], v[2];
} hand_state;

/* One documented update (docs/META.md) of both entries at step t. */
static void hand_update(hand_state *h, int opt, int64_t t, const double g_in[2], double lr, double mu, double b1,
                        double b2, double eps, double wd)
{
    for (int i = 0; i < 2; i++) {
        double g = g_in[i];
        if (opt == MP_OPT_SGD) {
            h->m[i] = mu * h->m[i] + (g + wd * h->p[i]);
            h->p[i] -= lr * h->m[i];
            continue;
        }
        if (opt == MP_OPT_ADAMW)
            h->p[i] -= lr * wd * h->p[i];
        else
            g += wd * h->p[i];
        h->m[i] = b1 * h->m[i] + (1 - b1) * g;
        h->v[i] = b2 * h->v[i] + (1 - b2) * g * g;
        double mh = h->m[i] / (1 - pow(b1, (double)t)), vh = h->v[i] / (1 - pow(b2, (double)t));
        h->p[i] -= lr * mh / (sqrt(vh) + eps);
    }
}

static void check_close(double got, double want, const char *what, int step, int entry)
{
    ck_assert_msg(fabs(got - want) <= 2e-6 * (1 + fabs(want)), "%s after apply %d, entry %d: %.9g, expected %.9g",
                  what, step, entry, got, want);
}

/* Two applies of gradients g[0], g[1] with optimizer opt, compared after
 * each with the hand computation: parameters, both moment buffers, the
 * step count. */
static void two_applies(int opt, double lr, double mu, double wd, const double g[2][2])
{
    const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
    linear_setup s = linear();
    meta_opts o = defaults(MP_META_MAML);
    o.opt = opt;
    o.outer_lr = lr;
    o.momentum = mu;
    o.wd = wd;
    mp_meta *m = make_meta(s.model, NULL, &o);
    hand_state h = {{W0, B0}, {0, 0}, {0, 0}};
    for (int k = 0; k < 2; k++) {
        float gf[2];
        gf[s.iw] = (float)g[k][0];
        gf[s.ib] = (float)g[k][1];
        double gd[2] = {gf[s.iw], gf[s.ib]};
        MP_CK_OK(mp_meta_set_gradients(m, gf, 2));
        MP_CK_OK(mp_meta_apply_gradients(m));
        hand_update(&h, opt, k + 1, gd, lr, mu, b1, b2, eps, wd);
        const float *p = mp__model_params_const(s.model);
        size_t idx[2] = {s.iw, s.ib};
        for (int i = 0; i < 2; i++) {
            check_close(p[idx[i]], h.p[i], "parameter", k + 1, i);
            check_close(m->m1[idx[i]], h.m[i], opt == MP_OPT_SGD ? "velocity" : "first moment", k + 1, i);
            if (opt != MP_OPT_SGD) check_close(m->m2[idx[i]], h.v[i], "second moment", k + 1, i);
        }
        int64_t t;
        MP_CK_OK(mp_meta_step_count(m, &t));
        ck_assert_int_eq(t, k + 1);
    }
    mp_meta_destroy(m);
    linear_free(&s);
}

START_TEST(optimizers_through_the_handle)
{
    /* SGD with momentum: the second step moves by lr (mu g1 + g2). */
    const double sgd_g[2][2] = {{0.5, -1.0}, {-0.25, 2.0}};
    two_applies(MP_OPT_SGD, 0.1, 0.9, 0, sgd_g);
    /* Adam: b sees no gradient in the first apply, so its first update
     * happens at t = 2 and must use that shared count: with its own count
     * (t = 1) the step would be exactly lr = 0.1. */
    const double adam_g[2][2] = {{0.5, 0.0}, {0.5, -2.0}};
    two_applies(MP_OPT_ADAM, 0.1, 0, 0, adam_g);
    {
        linear_setup s = linear();
        meta_opts o = defaults(MP_META_MAML);
        o.opt = MP_OPT_ADAM;
        o.outer_lr = 0.1;
        mp_meta *m = make_meta(s.model, NULL, &o);
        for (int k = 0; k < 2; k++) {
            float gf[2];
            gf[s.iw] = (float)adam_g[k][0];
            gf[s.ib] = (float)adam_g[k][1];
            MP_CK_OK(mp_meta_set_gradients(m, gf, 2));
            MP_CK_OK(mp_meta_apply_gradients(m));
        }
        double moved = mp__model_params_const(s.model)[s.ib] - B0;
        /* t = 2: m_hat = -0.2 / 0.19, v_hat = 0.004 / 0.001999. */
        double want = -0.1 * (-0.2 / 0.19) / (sqrt(0.004 / 0.001999) + 1e-8);
        ck_assert_msg(fabs(moved - want) < 1e-6 && fabs(moved - 0.1) > 1e-2, "b moved by %.9g, expected %.9g", moved,
                      want);
        mp_meta_destroy(m);
        linear_free(&s);
    }
    /* Adam with L2 decay and AdamW with decoupled decay, non-zero gradients. */
    const double wd_g[2][2] = {{0.3, -0.7}, {-0.2, 0.4}};
    two_applies(MP_OPT_ADAM, 0.05, 0, 0.5, wd_g);
    two_applies(MP_OPT_ADAMW, 0.05, 0, 0.5, wd_g);
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

START_TEST(clipping_through_the_handle)
{
    /* Global norm over both entries: (3, 4) has norm 5, clipped to 1. */
    linear_setup s = linear();
    meta_opts o = defaults(MP_META_MAML);
    o.clip = 1.0;
    mp_meta *m = make_meta(s.model, NULL, &o);
    float g[2];
    g[s.iw] = 3.0f;
    g[s.ib] = 4.0f;
    MP_CK_OK(mp_meta_set_gradients(m, g, 2));
    MP_CK_OK(mp_meta_apply_gradients(m));
    const float *p = mp__model_params_const(s.model);
    ck_assert_double_eq_tol(p[s.iw], W0 - 0.6, 1e-6);
    ck_assert_double_eq_tol(p[s.ib], B0 - 0.8, 1e-6);
    /* Below the threshold: unchanged gradient. */
    g[s.iw] = 0.3f;
    g[s.ib] = -0.4f;
    MP_CK_OK(mp_meta_set_gradients(m, g, 2));
    MP_CK_OK(mp_meta_apply_gradients(m));
    ck_assert_double_eq_tol(p[s.iw], W0 - 0.6 - 0.3, 1e-6);
    ck_assert_double_eq_tol(p[s.ib], B0 - 0.8 + 0.4, 1e-6);
    mp_meta_destroy(m);
    linear_free(&s);
    /* The norm is taken over the learned entries only: with the prompt
     * learned, huge parameter entries are ignored (the prompt's own norm 3
     * is clipped to 1), and the parameters do not move. */
    mp_model *model = make_model(1, 1, 1, 0, 0, MP_ACT_TANH, MP_TASK_REGRESSION, 1);
    mp_prompt *prompt = make_prompt(model, 0, 0);
    o = defaults(MP_META_MAML);
    o.scope = MP_SCOPE_PROMPT;
    o.learn = MP_LEARN_PROMPT;
    o.clip = 1.0;
    m = make_meta(model, prompt, &o);
    size_t ng = grad_size(m), np = mp__model_param_count(model);
    ck_assert_uint_eq(ng, 1 + np);
    float gp[8], before[8];
    memcpy(before, mp__model_params_const(model), np * sizeof(float));
    gp[0] = 3.0f;
    for (size_t j = 1; j < ng; j++) gp[j] = 100.0f;
    MP_CK_OK(mp_meta_set_gradients(m, gp, ng));
    MP_CK_OK(mp_meta_apply_gradients(m));
    ck_assert_float_eq_tol(mp__prompt_data_const(prompt)[0], -1.0f, 1e-6f);
    ck_assert(memcmp(before, mp__model_params_const(model), np * sizeof(float)) == 0);
    mp_meta_destroy(m);
    mp_prompt_destroy(prompt);
    mp_model_destroy(model);
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

/* ---- classification ---------------------------------------------------------------------------- */
static mp_task *class_task(uint64_t seed)
{
    mp__rng r;
    mp__rng_seed(&r, seed, 5);
    float sx[6 * 4], qx[9 * 4];
    int32_t sl[6], ql[9];
    for (int i = 0; i < 6; i++) {
        sl[i] = i % 3;
        for (int d = 0; d < 4; d++) sx[i * 4 + d] = (float)(mp__rng_normal(&r) * 0.3 + (d == sl[i]));
    }
    for (int i = 0; i < 9; i++) {
        ql[i] = i % 3;
        for (int d = 0; d < 4; d++) qx[i * 4 + d] = (float)(mp__rng_normal(&r) * 0.3 + (d == ql[i]));
    }
    mp_task *t = NULL;
    MP_CK_OK(mp_task_create_classification(&t, 4, 3, sx, sl, 6, qx, ql, 9));
    return t;
}

START_TEST(classifier_prompt_training_reports_accuracy)
{
    mp_model *model = make_model(4, 3, 2, 1, 8, MP_ACT_TANH, MP_TASK_CLASSIFICATION, 9);
    mp_prompt *prompt = make_prompt(model, 0.1, 1);
    meta_opts o = defaults(MP_META_MAML);
    o.scope = MP_SCOPE_PROMPT_HEAD;
    o.steps = 3;
    o.inner_lr = 0.5;
    o.opt = MP_OPT_ADAMW;
    o.outer_lr = 0.01;
    o.wd = 0.01;
    o.threads = 2;
    mp_meta *m = make_meta(model, prompt, &o);
    mp_task *tasks[4];
    for (int i = 0; i < 4; i++) tasks[i] = class_task((uint64_t)i);
    double st[MP_META_NUM_STATS];
    MP_CK_OK(mp_meta_step(m, tasks, 4, st, MP_META_NUM_STATS));
    for (int k = 0; k < 4; k++) ck_assert(isfinite(st[k]));
    ck_assert(st[MP_META_STAT_ACC_AFTER] >= 0 && st[MP_META_STAT_ACC_AFTER] <= 1);
    ck_assert(st[MP_META_STAT_LOSS_AFTER] < st[MP_META_STAT_LOSS_BEFORE]);
    double mean, ci;
    MP_CK_OK(mp_meta_evaluate_tasks(m, tasks, 4, &mean, &ci));
    ck_assert(mean >= 0 && mean <= 1 && isfinite(ci));
    /* Adapt writes the prompt and, with a model, the adapted head. */
    mp_prompt *ap = make_prompt(model, 0, 0);
    mp_model *am;
    MP_CK_OK(mp_model_clone(&am, model));
    MP_CK_OK(mp_meta_adapt(m, tasks[0], ap, am));
    float a0[8], p0[8];
    MP_CK_OK(mp_prompt_get(ap, a0, 8));
    MP_CK_OK(mp_prompt_get(prompt, p0, 8));
    ck_assert(memcmp(a0, p0, sizeof a0) != 0);
    int32_t hw = tensor_index(model, "head.weight"), fw = tensor_index(model, "fc0.weight");
    size_t ho = mp__model_tensor(model, hw)->offset, fo = mp__model_tensor(model, fw)->offset;
    ck_assert(mp__model_params_const(am)[ho] != mp__model_params_const(model)[ho]);
    ck_assert(mp__model_params_const(am)[fo] == mp__model_params_const(model)[fo]); /* backbone frozen */
    mp_model_destroy(am);
    mp_prompt_destroy(ap);
    for (int i = 0; i < 4; i++) mp_task_destroy(tasks[i]);
    mp_meta_destroy(m);
    mp_prompt_destroy(prompt);
    mp_model_destroy(model);
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

/* ---- evaluation -------------------------------------------------------------------------------- */
static int64_t live_seen[256];
static int n_seen;
static int32_t record_live(uint64_t done, uint64_t total, void *ud)
{
    (void)done;
    (void)total;
    (void)ud;
    if (n_seen < 256) live_seen[n_seen++] = mp_live_allocations();
    return 0;
}
static int32_t cancel_now(uint64_t done, uint64_t total, void *ud)
{
    (void)done;
    (void)total;
    *(int *)ud += 1;
    return 1;
}

static void evaluate_sinusoid(int threads, double *mean, double *ci, size_t n)
{
    mp_model *model = make_model(1, 1, 0, 2, 40, MP_ACT_RELU, MP_TASK_REGRESSION, 5);
    meta_opts o = defaults(MP_META_MAML);
    o.threads = threads;
    o.inner_lr = 0.01;
    o.eval_steps = 2;
    mp_meta *m = make_meta(model, NULL, &o);
    mp_config *c;
    MP_CK_OK(mp_config_create(&c));
    MP_CK_OK(mp_config_set_int(c, MP_CFG_DATA_SHOTS, 5));
    MP_CK_OK(mp_config_set_int(c, MP_CFG_DATA_QUERIES, 10));
    mp_sampler *s;
    MP_CK_OK(mp_sampler_create_sinusoid(&s, c));
    n_seen = 0;
    MP_CK_OK(mp_meta_set_progress(m, record_live, NULL));
    MP_CK_OK(mp_meta_evaluate(m, s, 1000, n, mean, ci));
    /* Allocations stay flat from the second chunk on. */
    /* No growth with the number of tasks: the second half of the chunks
     * never holds more allocations than the first (workers create their
     * episode task and grow their tape on first use; a tape may coalesce
     * its arena, so counts can also drop). */
    ck_assert_int_ge(n_seen, 8);
    int64_t first = 0, second = 0;
    for (int i = 0; i < n_seen; i++) {
        int64_t *mx = i < n_seen / 2 ? &first : &second;
        if (live_seen[i] > *mx) *mx = live_seen[i];
    }
    ck_assert_int_le(second, first);
    int calls = 0;
    MP_CK_OK(mp_meta_set_progress(m, cancel_now, &calls));
    double x = 42, y = 42;
    MP_CK_STATUS(mp_meta_evaluate(m, s, 0, n, &x, &y), MP_ERR_CANCELLED);
    ck_assert_int_eq(calls, 1);
    ck_assert(x == 42 && y == 42);
    MP_CK_OK(mp_meta_set_progress(m, NULL, NULL));
    mp_sampler_destroy(s);
    mp_config_destroy(c);
    mp_meta_destroy(m);
    mp_model_destroy(model);
}

START_TEST(evaluate_is_thread_independent_and_flat)
{
    double m1, c1, m2, c2;
    evaluate_sinusoid(1, &m1, &c1, 2000);
    evaluate_sinusoid(2, &m2, &c2, 2000);
    ck_assert(m1 == m2 && c1 == c2);
    double m4, c4;
    evaluate_sinusoid(4, &m4, &c4, 2000);
    ck_assert(m1 == m4 && c1 == c4);
    ck_assert(m1 > 0 && c1 > 0 && c1 < m1);
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

START_TEST(maml_learns_sinusoids)
{
    mp_model *model = make_model(1, 1, 0, 2, 40, MP_ACT_RELU, MP_TASK_REGRESSION, 5);
    meta_opts o = defaults(MP_META_MAML);
    o.opt = MP_OPT_ADAM;
    o.outer_lr = 1e-2;
    o.inner_lr = 0.01;
    mp_meta *m = make_meta(model, NULL, &o);
    mp_task *tasks[8];
    double first = 0, last = 0, st[4];
    for (int step = 0; step < 150; step++) {
        for (int i = 0; i < 8; i++) MP_CK_OK(mp_task_sinusoid(&tasks[i], 3, (uint64_t)(step * 8 + i), 10, 10));
        MP_CK_OK(mp_meta_step(m, tasks, 8, st, 4));
        for (int i = 0; i < 8; i++) mp_task_destroy(tasks[i]);
        if (step < 10) first += st[MP_META_STAT_LOSS_AFTER];
        if (step >= 140) last += st[MP_META_STAT_LOSS_AFTER];
    }
    ck_assert_msg(last < 0.6 * first, "post-adaptation loss %g -> %g", first / 10, last / 10);
    mp_meta_destroy(m);
    mp_model_destroy(model);
}
END_TEST

/* ---- checkpoints ---------------------------------------------------------------------------------
 * A training run: model, prompt, meta and the sinusoid sampler its tasks
 * come from (mp_sampler_next), so resuming needs the sampler position. */
typedef struct {
    mp_model *model;
    mp_prompt *prompt;
    mp_meta *meta;
    mp_sampler *sampler;
} train_run;

static mp_sampler *sinusoid_sampler(uint64_t seed, int shots)
{
    mp_config *c;
    MP_CK_OK(mp_config_create(&c));
    MP_CK_OK(mp_config_set_int(c, MP_CFG_SEED, (int64_t)seed));
    MP_CK_OK(mp_config_set_int(c, MP_CFG_DATA_SHOTS, shots));
    MP_CK_OK(mp_config_set_int(c, MP_CFG_DATA_QUERIES, 5));
    mp_sampler *s;
    MP_CK_OK(mp_sampler_create_sinusoid(&s, c));
    mp_config_destroy(c);
    return s;
}

/* The same starting point every time (fresh = 0), or FRESH handles that
 * differ from it everywhere (another model seed, a zero prompt), each with
 * a new sampler at position 0. */
static train_run run_open(const meta_opts *o, int fresh)
{
    train_run r;
    r.model = make_model(1, 1, 2, 1, 16, MP_ACT_TANH, MP_TASK_REGRESSION, fresh ? 77 : 8);
    r.prompt = make_prompt(r.model, fresh ? 0 : 0.3, 2);
    r.meta = make_meta(r.model, r.prompt, o);
    r.sampler = sinusoid_sampler(9, 5);
    return r;
}

static void run_steps(train_run *r, int n)
{
    mp_task *tasks[4];
    for (int step = 0; step < n; step++) {
        for (int i = 0; i < 4; i++) MP_CK_OK(mp_sampler_next(r->sampler, &tasks[i]));
        MP_CK_OK(mp_meta_step(r->meta, tasks, 4, NULL, 0));
        for (int i = 0; i < 4; i++) mp_task_destroy(tasks[i]);
    }
}

static void run_close(train_run *r)
{
    mp_meta_destroy(r->meta);
    mp_sampler_destroy(r->sampler);
    mp_prompt_destroy(r->prompt);
    mp_model_destroy(r->model);
}

static uint64_t position_of(const mp_sampler *s)
{
    uint64_t p;
    MP_CK_OK(mp_sampler_get_position(s, &p));
    return p;
}

static int64_t steps_of(const mp_meta *m)
{
    int64_t t;
    MP_CK_OK(mp_meta_step_count(m, &t));
    return t;
}

/* Bit-for-bit equality of everything a run carries. */
static int runs_equal(const train_run *a, const train_run *c)
{
    const mp_meta *x = a->meta, *y = c->meta;
    return memcmp(mp__model_params_const(a->model), mp__model_params_const(c->model), x->n_params * sizeof(float)) == 0 &&
           memcmp(mp__prompt_data_const(a->prompt), mp__prompt_data_const(c->prompt), x->n_prompt * sizeof(float)) == 0 &&
           memcmp(x->lr, y->lr, x->n_lr * sizeof(float)) == 0 &&
           memcmp(x->m1, y->m1, x->n_grad * sizeof(float)) == 0 &&
           memcmp(x->m2, y->m2, x->n_grad * sizeof(float)) == 0 && steps_of(x) == steps_of(y) &&
           position_of(a->sampler) == position_of(c->sampler);
}

static void ckpt_path(char *path, size_t len, const char *tag)
{
    snprintf(path, len, "/tmp/mp_test_meta_%d_%s.ckpt", (int)getpid(), tag);
}

/* 10 steps straight == 5 steps, save, load into fresh handles, 5 steps. */
static void resume_check(const meta_opts *o, int control)
{
    char path[256];
    ckpt_path(path, sizeof path, "resume");
    train_run a = run_open(o, 0);
    run_steps(&a, 10);
    ck_assert_int_eq(steps_of(a.meta), 10);
    ck_assert_uint_eq(position_of(a.sampler), 40);
    train_run b = run_open(o, 0);
    run_steps(&b, 5);
    MP_CK_OK(mp_checkpoint_save_with_sampler(path, b.model, b.prompt, b.meta, b.sampler));
    run_close(&b);
    train_run c = run_open(o, 1);
    ck_assert(!runs_equal(&a, &c));
    MP_CK_OK(mp_checkpoint_load_with_sampler(path, c.model, c.prompt, c.meta, c.sampler));
    ck_assert_int_eq(steps_of(c.meta), 5);
    ck_assert_uint_eq(position_of(c.sampler), 20);
    run_steps(&c, 5);
    ck_assert_msg(runs_equal(&a, &c), "algorithm %d, optimizer %d, %d threads: the resumed run differs", o->algo,
                  o->opt, o->threads);
    if (control) {
        /* Without the sampler position the resumed run draws episodes
         * 0..19 again and ends elsewhere: the position is what matters. */
        train_run d = run_open(o, 1);
        MP_CK_OK(mp_checkpoint_load(path, d.model, d.prompt, d.meta));
        ck_assert_uint_eq(position_of(d.sampler), 0);
        run_steps(&d, 5);
        ck_assert(memcmp(mp__model_params_const(a.model), mp__model_params_const(d.model),
                         a.meta->n_params * sizeof(float)) != 0);
        run_close(&d);
    }
    unlink(path);
    run_close(&a);
    run_close(&c);
}

START_TEST(checkpoint_resume_is_bit_identical)
{
    meta_opts o = defaults(MP_META_METASGD);
    o.opt = MP_OPT_ADAM;
    o.outer_lr = 1e-2;
    o.steps = 2;
    resume_check(&o, 1);
    o = defaults(MP_META_MAML);
    o.opt = MP_OPT_SGD;
    o.momentum = 0.9;
    o.outer_lr = 1e-3;
    o.threads = 2;
    resume_check(&o, 0);
    o = defaults(MP_META_MAML);
    o.opt = MP_OPT_ADAMW;
    o.outer_lr = 1e-2;
    o.wd = 0.01;
    o.steps = 2;
    o.threads = 2;
    resume_check(&o, 0);
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

/* MAML, first-order MAML and Reptile keep the same optimizer state, so a
 * run can switch algorithm at a checkpoint (MAML++'s derivative-order
 * annealing: first order while the initialisation is poor, then exact
 * second order). Loading FOMAML's state into a MAML meta and stepping on
 * must equal FOMAML's own optimizer applying MAML's meta-gradients, bit for
 * bit; and the moments really are carried (a fresh MAML meta ends
 * elsewhere). Meta-SGD states (with rates) stay refused: see below. */
static void switch_check(int from, int to, int opt)
{
    char path[256];
    ckpt_path(path, sizeof path, "switch");
    meta_opts of = defaults(from), ot = defaults(to);
    of.opt = ot.opt = opt;
    of.outer_lr = ot.outer_lr = opt == MP_OPT_SGD ? 0.05 : 1e-2;
    of.momentum = ot.momentum = opt == MP_OPT_SGD ? 0.9 : 0;
    of.steps = ot.steps = 2;
    /* a: 3 steps of `from`, then 2 updates by a's own optimizer with the
     * meta-gradients of a `to` meta on the same handles. */
    train_run a = run_open(&of, 0);
    run_steps(&a, 3);
    MP_CK_OK(mp_checkpoint_save_with_sampler(path, a.model, a.prompt, a.meta, a.sampler));
    mp_meta *second = make_meta(a.model, a.prompt, &ot);
    size_t n = grad_size(a.meta);
    ck_assert_uint_eq(grad_size(second), n);
    float *g = malloc(n * sizeof(float));
    for (int step = 0; step < 2; step++) {
        mp_task *tasks[4];
        for (int i = 0; i < 4; i++) MP_CK_OK(mp_sampler_next(a.sampler, &tasks[i]));
        MP_CK_OK(mp_meta_compute_gradients(second, tasks, 4, NULL, 0));
        MP_CK_OK(mp_meta_get_gradients(second, g, n));
        MP_CK_OK(mp_meta_set_gradients(a.meta, g, n));
        MP_CK_OK(mp_meta_apply_gradients(a.meta));
        for (int i = 0; i < 4; i++) mp_task_destroy(tasks[i]);
    }
    mp_meta_destroy(second);
    /* b: a `to` run loaded from the checkpoint, 2 steps. */
    train_run b = run_open(&ot, 1);
    MP_CK_OK(mp_checkpoint_load_with_sampler(path, b.model, b.prompt, b.meta, b.sampler));
    ck_assert_int_eq(steps_of(b.meta), 3);
    run_steps(&b, 2);
    ck_assert_msg(runs_equal(&a, &b), "algorithm %d -> %d, optimizer %d: the switched run differs", from, to, opt);
    /* d: the same switch in place (mp_meta_set_int) equals the load. */
    train_run d = run_open(&of, 0);
    run_steps(&d, 3);
    MP_CK_OK(mp_meta_set_int(d.meta, MP_CFG_META_ALGORITHM, to));
    run_steps(&d, 2);
    ck_assert_msg(runs_equal(&d, &b), "algorithm %d -> %d in place, optimizer %d: differs from the load", from, to,
                  opt);
    run_close(&d);
    /* c: the same without the moments (parameters and sampler only). */
    train_run c = run_open(&ot, 1);
    MP_CK_OK(mp_checkpoint_load_with_sampler(path, c.model, c.prompt, NULL, c.sampler));
    ck_assert_int_eq(steps_of(c.meta), 0);
    run_steps(&c, 2);
    ck_assert(memcmp(mp__model_params_const(a.model), mp__model_params_const(c.model),
                     a.meta->n_params * sizeof(float)) != 0);
    free(g);
    unlink(path);
    run_close(&a);
    run_close(&b);
    run_close(&c);
}

START_TEST(checkpoint_switches_between_maml_fomaml_reptile)
{
    switch_check(MP_META_FOMAML, MP_META_MAML, MP_OPT_ADAM);
    switch_check(MP_META_MAML, MP_META_FOMAML, MP_OPT_SGD);
    switch_check(MP_META_REPTILE, MP_META_MAML, MP_OPT_SGD);
    switch_check(MP_META_MAML, MP_META_REPTILE, MP_OPT_ADAMW);
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

/* A successful call records no message: mp_last_error() keeps the last
 * failing call's (before, every MAML / first-order MAML / Reptile load left
 * "tensor 'meta/inner_lr' is missing from the file" there, from probing for
 * Meta-SGD rates the file rightly lacks). Every algorithm, every saver and
 * loader, with and without meta and sampler. */
START_TEST(successful_checkpoint_calls_leave_the_last_error_alone)
{
    char path[256];
    ckpt_path(path, sizeof path, "lasterr");
    static const int algos[4] = {MP_META_MAML, MP_META_FOMAML, MP_META_REPTILE, MP_META_METASGD};
    for (int a = 0; a < 4; a++) {
        meta_opts o = defaults(algos[a]);
        o.opt = MP_OPT_ADAM;
        train_run r = run_open(&o, 0), c = run_open(&o, 1);
        run_steps(&r, 1);
        int64_t dummy;
        MP_CK_STATUS(mp_meta_step_count(NULL, &dummy), MP_ERR_NULL_POINTER);
        char before[512];
        snprintf(before, sizeof before, "%s", mp_last_error());
        ck_assert(strstr(before, "mp_meta_step_count") != NULL);
        MP_CK_OK(mp_checkpoint_save_with_sampler(path, r.model, r.prompt, r.meta, r.sampler));
        MP_CK_OK(mp_checkpoint_load_with_sampler(path, c.model, c.prompt, c.meta, c.sampler));
        MP_CK_OK(mp_checkpoint_load_with_sampler(path, c.model, c.prompt, NULL, c.sampler));
        MP_CK_OK(mp_checkpoint_load(path, c.model, c.prompt, c.meta));
        MP_CK_OK(mp_checkpoint_save(path, r.model, r.prompt, r.meta));
        MP_CK_OK(mp_checkpoint_load(path, c.model, c.prompt, c.meta));
        MP_CK_OK(mp_checkpoint_load(path, c.model, c.prompt, NULL));
        mp_model *m2;
        MP_CK_OK(mp_model_create_from_checkpoint(&m2, path));
        mp_model_destroy(m2);
        run_steps(&c, 1);
        ck_assert_msg(strcmp(mp_last_error(), before) == 0, "algorithm %d: a successful call left '%s'", algos[a],
                      mp_last_error());
        ck_assert_str_eq(mp_meta_error(c.meta), "");
        unlink(path);
        run_close(&r);
        run_close(&c);
    }
    mp_clear_error();
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

/* A checkpoint stores the evaluation steps as set: -1 (follow the inner
 * steps, the default) stays -1 rather than the count it resolved to. */
static int64_t stored_eval_steps(const char *path)
{
    mp__ckpt_reader *r;
    int64_t v = -99;
    MP_CK_OK(mp__ckpt_reader_open(&r, path));
    MP_CK_OK(mp__ckpt_config(r, MP_CFG_META_EVAL_INNER_STEPS, &v, NULL));
    mp__ckpt_reader_close(r);
    return v;
}

START_TEST(checkpoint_stores_the_eval_steps_setting)
{
    char path[256];
    ckpt_path(path, sizeof path, "evalsteps");
    meta_opts o = defaults(MP_META_MAML);
    train_run r = run_open(&o, 0);
    MP_CK_OK(mp_checkpoint_save(path, r.model, r.prompt, r.meta));
    ck_assert_int_eq(stored_eval_steps(path), -1);
    MP_CK_OK(mp_meta_set_eval_steps(r.meta, 3));
    MP_CK_OK(mp_checkpoint_save(path, r.model, r.prompt, r.meta));
    ck_assert_int_eq(stored_eval_steps(path), 3);
    unlink(path);
    run_close(&r);
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

/* A pending gradient belongs to the state a load replaces: a successful
 * load drops it (apply then says so), a refused one keeps it. */
START_TEST(checkpoint_load_drops_a_pending_gradient)
{
    char path[256];
    ckpt_path(path, sizeof path, "pending");
    meta_opts o = defaults(MP_META_MAML);
    o.opt = MP_OPT_ADAM;
    train_run a = run_open(&o, 0);
    run_steps(&a, 1);
    MP_CK_OK(mp_checkpoint_save(path, a.model, a.prompt, a.meta));
    mp_task *tasks[2];
    for (int i = 0; i < 2; i++) MP_CK_OK(mp_sampler_next(a.sampler, &tasks[i]));
    MP_CK_OK(mp_meta_compute_gradients(a.meta, tasks, 2, NULL, 0));
    /* refused (another optimizer in the file): the gradient stays */
    meta_opts sgd = o;
    sgd.opt = MP_OPT_SGD;
    train_run b = run_open(&sgd, 0);
    char other[256];
    ckpt_path(other, sizeof other, "pending_sgd");
    MP_CK_OK(mp_checkpoint_save(other, b.model, b.prompt, b.meta));
    MP_CK_STATUS(mp_checkpoint_load(other, a.model, a.prompt, a.meta), MP_ERR_SHAPE_MISMATCH);
    MP_CK_OK(mp_meta_apply_gradients(a.meta));
    ck_assert_int_eq(steps_of(a.meta), 2);
    /* successful: dropped */
    MP_CK_OK(mp_meta_compute_gradients(a.meta, tasks, 2, NULL, 0));
    MP_CK_OK(mp_checkpoint_load(path, a.model, a.prompt, a.meta));
    MP_CK_STATUS(mp_meta_apply_gradients(a.meta), MP_ERR_STATE);
    MP_CK_ERROR_MENTIONS("no gradient computed or set since the last apply");
    ck_assert_int_eq(steps_of(a.meta), 1);
    for (int i = 0; i < 2; i++) mp_task_destroy(tasks[i]);
    unlink(path);
    unlink(other);
    run_close(&a);
    run_close(&b);
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

/* Hyper-parameters changed between steps (mp_meta_set_float/int) apply
 * from the next step on and keep the optimizer state: 2 steps, a new outer
 * rate and inner step count, 2 steps equals 2 steps, save, load into a meta
 * created with the new values, 2 steps, bit for bit (Adam's bias
 * correction and moments go on). */
START_TEST(settings_change_between_steps_like_a_reload)
{
    char path[256];
    ckpt_path(path, sizeof path, "settings");
    meta_opts o = defaults(MP_META_MAML);
    o.opt = MP_OPT_ADAM;
    o.outer_lr = 1e-2;
    meta_opts later = o;
    later.outer_lr = 3e-3;
    later.steps = 3;
    train_run a = run_open(&o, 0);
    run_steps(&a, 2);
    MP_CK_OK(mp_meta_set_float(a.meta, MP_CFG_META_OUTER_LR, 3e-3));
    MP_CK_OK(mp_meta_set_int(a.meta, MP_CFG_META_INNER_STEPS, 3));
    run_steps(&a, 2);
    train_run b = run_open(&o, 0);
    run_steps(&b, 2);
    MP_CK_OK(mp_checkpoint_save_with_sampler(path, b.model, b.prompt, b.meta, b.sampler));
    train_run c = run_open(&later, 1);
    MP_CK_OK(mp_checkpoint_load_with_sampler(path, c.model, c.prompt, c.meta, c.sampler));
    run_steps(&c, 2);
    ck_assert(runs_equal(&a, &c));
    /* evaluation too: the default eval inner steps (-1) follow the change */
    int64_t ea, ec;
    MP_CK_OK(mp_meta_get_int(a.meta, MP_CFG_META_EVAL_INNER_STEPS, &ea));
    MP_CK_OK(mp_meta_get_int(c.meta, MP_CFG_META_EVAL_INNER_STEPS, &ec));
    ck_assert_int_eq(ea, 3);
    ck_assert_int_eq(ec, 3);
    double mean_a, ci_a, mean_c, ci_c;
    MP_CK_OK(mp_meta_evaluate(a.meta, a.sampler, 1000, 16, &mean_a, &ci_a));
    MP_CK_OK(mp_meta_evaluate(c.meta, c.sampler, 1000, 16, &mean_c, &ci_c));
    ck_assert(mean_a == mean_c && ci_a == ci_c);
    run_steps(&b, 2); /* without the change: elsewhere */
    ck_assert(!runs_equal(&a, &b));
    unlink(path);
    run_close(&a);
    run_close(&b);
    run_close(&c);
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

/* Every meta key reads back; the settable ones change, the rest are
 * refused with a status naming the key, and a refused call changes
 * nothing. */
/* Worker threads own nothing the library allocated for them: the live
 * allocation count is final when mp_meta_create returns (it used to drop
 * a little later, as each worker freed its start-up argument). */
START_TEST(create_leaves_no_allocation_changing_later)
{
    mp_model *model = make_model(1, 1, 0, 1, 8, MP_ACT_TANH, MP_TASK_REGRESSION, 5);
    meta_opts o = defaults(MP_META_MAML);
    o.threads = 4;
    for (int round = 0; round < 20; round++) {
        mp_meta *m = make_meta(model, NULL, &o);
        size_t live = mp_live_allocations();
        struct timespec ts = {0, 2000000}; /* 2 ms: the workers have started */
        nanosleep(&ts, NULL);
        ck_assert_uint_eq(mp_live_allocations(), live);
        mp_meta_destroy(m);
    }
    mp_model_destroy(model);
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

START_TEST(settings_read_back_and_refuse)
{
    mp_model *model = make_model(1, 1, 2, 1, 8, MP_ACT_TANH, MP_TASK_REGRESSION, 5);
    mp_prompt *prompt = make_prompt(model, 0.1, 1);
    meta_opts o = defaults(MP_META_FOMAML);
    o.opt = MP_OPT_ADAMW;
    o.steps = 4;
    o.threads = 2;
    o.scope = MP_SCOPE_PROMPT_HEAD;
    o.outer_lr = 0.25;
    o.wd = 0.5;
    o.clip = 3;
    mp_meta *m = make_meta(model, prompt, &o);
    const struct {
        int32_t key;
        int64_t want;
    } ints[] = {{MP_CFG_META_ALGORITHM, MP_META_FOMAML}, {MP_CFG_META_INNER_STEPS, 4},
                {MP_CFG_META_SCOPE, MP_SCOPE_PROMPT_HEAD}, {MP_CFG_META_LEARN, MP_LEARN_PROMPT | MP_LEARN_HEAD},
                {MP_CFG_META_OPTIMIZER, MP_OPT_ADAMW}, {MP_CFG_META_EVAL_INNER_STEPS, 4}, {MP_CFG_THREADS, 2}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        int64_t v = -99;
        MP_CK_OK(mp_meta_get_int(m, ints[i].key, &v));
        ck_assert_msg(v == ints[i].want, "key %d: %lld, want %lld", (int)ints[i].key, (long long)v,
                      (long long)ints[i].want);
    }
    const struct {
        int32_t key;
        double want;
    } floats[] = {{MP_CFG_META_INNER_LR, 0.1f}, {MP_CFG_META_OUTER_LR, 0.25}, {MP_CFG_META_MOMENTUM, 0},
                  {MP_CFG_META_BETA1, 0.9}, {MP_CFG_META_BETA2, 0.999}, {MP_CFG_META_EPSILON, 1e-8},
                  {MP_CFG_META_WEIGHT_DECAY, 0.5}, {MP_CFG_META_CLIP_NORM, 3}};
    for (size_t i = 0; i < sizeof floats / sizeof floats[0]; i++) {
        double v = -99;
        MP_CK_OK(mp_meta_get_float(m, floats[i].key, &v));
        ck_assert_msg(v == floats[i].want, "key %d: %g, want %g", (int)floats[i].key, v, floats[i].want);
        /* each float key is settable: set, read back, restore */
        MP_CK_OK(mp_meta_set_float(m, floats[i].key, floats[i].want / 2 + 1e-3));
        MP_CK_OK(mp_meta_get_float(m, floats[i].key, &v));
        double set = floats[i].key == MP_CFG_META_INNER_LR ? (double)(float)(floats[i].want / 2 + 1e-3)
                                                            : floats[i].want / 2 + 1e-3;
        ck_assert_msg(v == set, "key %d: set %g, read %g", (int)floats[i].key, set, v);
        MP_CK_OK(mp_meta_set_float(m, floats[i].key, floats[i].want));
    }
    int64_t v;
    MP_CK_OK(mp_meta_set_int(m, MP_CFG_META_ALGORITHM, MP_META_REPTILE));
    MP_CK_OK(mp_meta_get_int(m, MP_CFG_META_ALGORITHM, &v));
    ck_assert_int_eq(v, MP_META_REPTILE);
    MP_CK_OK(mp_meta_set_int(m, MP_CFG_META_INNER_STEPS, 0));
    MP_CK_OK(mp_meta_set_int(m, MP_CFG_META_INNER_STEPS, 6));
    MP_CK_OK(mp_meta_set_int(m, MP_CFG_META_EVAL_INNER_STEPS, -1)); /* = the inner steps */
    MP_CK_OK(mp_meta_get_int(m, MP_CFG_META_EVAL_INNER_STEPS, &v));
    ck_assert_int_eq(v, 6);
    /* mp_meta_set_eval_steps agrees: a count, then -1 follows the inner steps again */
    MP_CK_OK(mp_meta_set_eval_steps(m, 2));
    MP_CK_OK(mp_meta_get_int(m, MP_CFG_META_EVAL_INNER_STEPS, &v));
    ck_assert_int_eq(v, 2);
    MP_CK_OK(mp_meta_set_eval_steps(m, -1));
    MP_CK_OK(mp_meta_set_int(m, MP_CFG_META_INNER_STEPS, 4));
    MP_CK_OK(mp_meta_get_int(m, MP_CFG_META_EVAL_INNER_STEPS, &v));
    ck_assert_int_eq(v, 4);
    MP_CK_OK(mp_meta_set_int(m, MP_CFG_META_INNER_STEPS, 6));
    /* refused: each leaves everything as it was */
    meta_snapshot before = snapshot(m);
    const struct {
        int is_float;
        int32_t key;
        double value;
        mp_status st;
        const char *mention;
    } bad[] = {
        {0, MP_CFG_META_SCOPE, MP_SCOPE_ALL, MP_ERR_UNSUPPORTED, "mp_meta_set_int: 'meta.scope' shapes the meta's state"},
        {0, MP_CFG_META_LEARN, 1, MP_ERR_UNSUPPORTED, "'meta.learn' shapes the meta's state"},
        {0, MP_CFG_META_OPTIMIZER, MP_OPT_SGD, MP_ERR_UNSUPPORTED, "'meta.optimizer' shapes the meta's state"},
        {0, MP_CFG_THREADS, 1, MP_ERR_UNSUPPORTED, "'threads' shapes the meta's state"},
        {0, MP_CFG_META_ALGORITHM, MP_META_METASGD, MP_ERR_UNSUPPORTED, "'meta.algorithm' 3 -> 4: Meta-SGD (4)"},
        {0, MP_CFG_META_ALGORITHM, 5, MP_ERR_RANGE, "'meta.algorithm' must be in [1, 4], got 5"},
        {0, MP_CFG_META_ALGORITHM, 0, MP_ERR_RANGE, "got 0"},
        {0, MP_CFG_META_INNER_STEPS, 10001, MP_ERR_RANGE, "'meta.inner_steps' must be in [0, 10000], got 10001"},
        {0, MP_CFG_META_EVAL_INNER_STEPS, -2, MP_ERR_RANGE, "'meta.eval_inner_steps' must be in [-1, 10000]"},
        {0, MP_CFG_META_OUTER_LR, 1, MP_ERR_INVALID_ARGUMENT, "'meta.outer_lr' is a float key (use mp_meta_set_float)"},
        {0, MP_CFG_SEED, 1, MP_ERR_NOT_FOUND, "key 1 is not a meta key"},
        {0, 9999, 1, MP_ERR_NOT_FOUND, "key 9999 is not a meta key"},
        {1, MP_CFG_META_INNER_STEPS, 1, MP_ERR_INVALID_ARGUMENT, "'meta.inner_steps' is an integer key (use mp_meta_set_int)"},
        {1, MP_CFG_META_OUTER_LR, -1, MP_ERR_RANGE, "mp_meta_set_float: 'meta.outer_lr' must be in [0, 1e+06], got -1"},
        {1, MP_CFG_META_EPSILON, 0, MP_ERR_RANGE, "'meta.epsilon' must be in [1e-30, 1]"},
        {1, MP_CFG_META_OUTER_LR, NAN, MP_ERR_NOT_FINITE, "'meta.outer_lr' must be finite, got nan"},
        {1, MP_CFG_META_CLIP_NORM, INFINITY, MP_ERR_NOT_FINITE, "'meta.clip_norm' must be finite"},
        {1, MP_CFG_MODEL_KIND, 1, MP_ERR_NOT_FOUND, "mp_meta_set_float: key 100 is not a meta key"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mp_status st = bad[i].is_float ? mp_meta_set_float(m, bad[i].key, bad[i].value)
                                       : mp_meta_set_int(m, bad[i].key, (int64_t)bad[i].value);
        ck_assert_msg(st == bad[i].st, "case %zu: status %d, want %d (%s)", i, (int)st, (int)bad[i].st,
                      mp_last_error());
        MP_CK_ERROR_MENTIONS(bad[i].mention);
        ck_assert_str_eq(mp_meta_error(m), mp_last_error());
        check_unchanged(m, &before, "refused setting");
        MP_CK_OK(mp_meta_get_int(m, MP_CFG_META_ALGORITHM, &v));
        ck_assert_int_eq(v, MP_META_REPTILE);
        MP_CK_OK(mp_meta_get_int(m, MP_CFG_META_INNER_STEPS, &v));
        ck_assert_int_eq(v, 6);
    }
    /* getters: type and key checks, *out untouched */
    double d = -5;
    v = -5;
    MP_CK_STATUS(mp_meta_get_int(m, MP_CFG_META_OUTER_LR, &v), MP_ERR_INVALID_ARGUMENT);
    MP_CK_ERROR_MENTIONS("mp_meta_get_int: 'meta.outer_lr' is a float key (use mp_meta_get_float)");
    MP_CK_STATUS(mp_meta_get_float(m, MP_CFG_THREADS, &d), MP_ERR_INVALID_ARGUMENT);
    MP_CK_ERROR_MENTIONS("(use mp_meta_get_int)");
    MP_CK_STATUS(mp_meta_get_float(m, MP_CFG_SEED, &d), MP_ERR_NOT_FOUND);
    ck_assert(v == -5 && d == -5);
    snapshot_free(&before);
    mp_meta_destroy(m);
    /* Meta-SGD: its rates are learned, its algorithm fixed */
    o = defaults(MP_META_METASGD);
    m = make_meta(model, prompt, &o);
    MP_CK_STATUS(mp_meta_set_float(m, MP_CFG_META_INNER_LR, 0.5), MP_ERR_UNSUPPORTED);
    MP_CK_ERROR_MENTIONS("Meta-SGD learns its inner rates");
    MP_CK_STATUS(mp_meta_set_int(m, MP_CFG_META_ALGORITHM, MP_META_MAML), MP_ERR_UNSUPPORTED);
    MP_CK_OK(mp_meta_set_int(m, MP_CFG_META_ALGORITHM, MP_META_METASGD));
    MP_CK_OK(mp_meta_get_int(m, MP_CFG_META_LEARN, &v));
    ck_assert_int_eq(v, MP_LEARN_PROMPT | MP_LEARN_HEAD | MP_LEARN_BACKBONE | MP_LEARN_INNER_LR);
    mp_meta_destroy(m);
    mp_prompt_destroy(prompt);
    mp_model_destroy(model);
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

START_TEST(checkpoint_refuses_other_metas)
{
    char path[256];
    ckpt_path(path, sizeof path, "metas");
    meta_opts o = defaults(MP_META_METASGD);
    o.opt = MP_OPT_ADAM;
    train_run b = run_open(&o, 0);
    run_steps(&b, 2);
    MP_CK_OK(mp_checkpoint_save(path, b.model, b.prompt, b.meta));
    /* A meta with another algorithm refuses the state and changes nothing. */
    meta_opts other = defaults(MP_META_MAML);
    mp_meta *d = make_meta(b.model, b.prompt, &other);
    MP_CK_STATUS(mp_checkpoint_load(path, b.model, b.prompt, d), MP_ERR_SHAPE_MISMATCH);
    MP_CK_ERROR_MENTIONS("'meta.algorithm' is 4 in the file but 1 in the meta: a Meta-SGD (4) state holds "
                         "learned inner rates and loads only into Meta-SGD");
    ck_assert_int_eq(steps_of(d), 0);
    mp_meta_destroy(d);
    meta_opts scoped = o;
    scoped.scope = MP_SCOPE_PROMPT_HEAD;
    d = make_meta(b.model, b.prompt, &scoped);
    MP_CK_STATUS(mp_checkpoint_load(path, b.model, b.prompt, d), MP_ERR_SHAPE_MISMATCH);
    MP_CK_ERROR_MENTIONS("meta.scope");
    ck_assert_int_eq(steps_of(d), 0);
    /* A file saved without a meta says so when a meta asks for its state. */
    MP_CK_OK(mp_checkpoint_save(path, b.model, b.prompt, NULL));
    MP_CK_STATUS(mp_checkpoint_load(path, b.model, b.prompt, d), MP_ERR_NOT_FOUND);
    MP_CK_ERROR_MENTIONS("holds no meta-optimizer state");
    ck_assert_int_eq(steps_of(d), 0);
    mp_meta_destroy(d);
    unlink(path);
    run_close(&b);
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

/* A meta's state belongs to the model and prompt it was created for: the
 * savers and loaders refuse another model or prompt with it (before, a load
 * replaced the meta's moments while its own model stayed as it was), in
 * every variant, naming the arguments, and change nothing. */
START_TEST(checkpoint_refuses_handles_of_another_meta)
{
    char path[256];
    ckpt_path(path, sizeof path, "owner");
    meta_opts o = defaults(MP_META_MAML);
    o.opt = MP_OPT_ADAM;
    train_run b = run_open(&o, 0), c = run_open(&o, 1);
    run_steps(&b, 2);
    run_steps(&c, 1);
    MP_CK_OK(mp_checkpoint_save(path, b.model, b.prompt, b.meta)); /* the control */
    meta_snapshot sb = snapshot(b.meta), sc = snapshot(c.meta);
    const struct {
        mp_model *model;
        mp_prompt *prompt;
        const char *mention;
    } bad[] = {
        {c.model, c.prompt, "meta was created for another model (argument 'model'"},
        {c.model, b.prompt, "meta was created for another model"},
        {b.model, c.prompt, "meta was created for another prompt (argument 'prompt'"},
        {b.model, NULL, "argument 'prompt' is NULL but argument 'meta' updates a 2 x 1 prompt"},
    };
    char want[160];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *fns[] = {"mp_checkpoint_save", "mp_checkpoint_save_with_sampler", "mp_checkpoint_load",
                             "mp_checkpoint_load_with_sampler"};
        for (int f = 0; f < 4; f++) {
            mp_clear_error();
            mp_status st;
            switch (f) {
            case 0: st = mp_checkpoint_save(path, bad[i].model, bad[i].prompt, b.meta); break;
            case 1: st = mp_checkpoint_save_with_sampler(path, bad[i].model, bad[i].prompt, b.meta, b.sampler); break;
            case 2: st = mp_checkpoint_load(path, bad[i].model, bad[i].prompt, b.meta); break;
            default: st = mp_checkpoint_load_with_sampler(path, bad[i].model, bad[i].prompt, b.meta, b.sampler); break;
            }
            ck_assert_msg(st == MP_ERR_INVALID_ARGUMENT, "%s case %zu: %d %s", fns[f], i, (int)st, mp_last_error());
            snprintf(want, sizeof want, "%s: %s", fns[f], bad[i].mention);
            MP_CK_ERROR_MENTIONS(want);
            if (f >= 2) ck_assert_str_eq(mp_model_error(bad[i].model), mp_last_error());
            check_unchanged(b.meta, &sb, want);
            check_unchanged(c.meta, &sc, want);
        }
    }
    ck_assert_uint_eq(position_of(b.sampler), 8);
    /* The saves above refused before writing: the file is the control's. */
    MP_CK_OK(mp_checkpoint_load(path, b.model, b.prompt, b.meta));
    check_unchanged(b.meta, &sb, "reload");
    MP_CK_OK(mp_checkpoint_load(path, c.model, c.prompt, c.meta));
    ck_assert_int_eq(steps_of(c.meta), 2);
    /* The reporter's case: a model made from the file, a prompt for it, and
     * the first run's meta. */
    mp_model *m2 = NULL;
    mp_prompt *p2 = NULL;
    MP_CK_OK(mp_model_create_from_checkpoint(&m2, path));
    MP_CK_OK(mp_prompt_create(&p2, m2));
    MP_CK_OK(mp_checkpoint_load(path, m2, p2, NULL));
    MP_CK_STATUS(mp_checkpoint_load(path, m2, p2, b.meta), MP_ERR_INVALID_ARGUMENT);
    MP_CK_ERROR_MENTIONS("mp_checkpoint_load: meta was created for another model");
    /* A model without prompt: its meta takes prompt NULL, or any 0-row prompt. */
    mp_model *np_model = make_model(1, 1, 0, 1, 8, MP_ACT_TANH, MP_TASK_REGRESSION, 5);
    mp_prompt *empty = make_prompt(np_model, 0, 0);
    mp_meta *np_meta = make_meta(np_model, NULL, &o);
    MP_CK_OK(mp_checkpoint_save(path, np_model, NULL, np_meta));
    MP_CK_OK(mp_checkpoint_save(path, np_model, empty, np_meta));
    MP_CK_OK(mp_checkpoint_load(path, np_model, NULL, np_meta));
    MP_CK_OK(mp_checkpoint_load(path, np_model, empty, np_meta));
    MP_CK_STATUS(mp_checkpoint_load(path, b.model, NULL, np_meta), MP_ERR_INVALID_ARGUMENT);
    MP_CK_ERROR_MENTIONS("another model");
    mp_meta_destroy(np_meta);
    mp_prompt_destroy(empty);
    mp_model_destroy(np_model);
    mp_prompt_destroy(p2);
    mp_model_destroy(m2);
    snapshot_free(&sb);
    snapshot_free(&sc);
    unlink(path);
    run_close(&b);
    run_close(&c);
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

/* Optimizer state that no correct save produces, in files with a valid
 * CRC: the load refuses it (naming the tensor and the index) and changes
 * nothing; the same file without the defect loads. Before the check a
 * negative Adam second moment loaded and the next step wrote NaN into the
 * prompt. */
enum { S_M1, S_M2, S_LR, S_STEP };
START_TEST(checkpoint_refuses_unsound_meta_state)
{
    char path[256];
    ckpt_path(path, sizeof path, "unsound");
    const struct {
        int algo, opt, which;
        size_t index;
        float value;
        int64_t step;
        mp_status st;
        const char *mention;
    } cases[] = {
        {MP_META_MAML, MP_OPT_ADAM, S_M2, 3, -1.0f, 0, MP_ERR_FORMAT, "tensor 'meta/m2' value 3 is negative (-1)"},
        {MP_META_MAML, MP_OPT_ADAM, S_M2, 0, INFINITY, 0, MP_ERR_NOT_FINITE, "tensor 'meta/m2' value 0 is not finite"},
        {MP_META_MAML, MP_OPT_ADAMW, S_M1, 5, NAN, 0, MP_ERR_NOT_FINITE, "tensor 'meta/m1' value 5 is not finite"},
        {MP_META_MAML, MP_OPT_SGD, S_M1, 2, -INFINITY, 0, MP_ERR_NOT_FINITE, "tensor 'meta/m1' value 2 is not finite"},
        {MP_META_MAML, MP_OPT_SGD, S_M2, 4, 0.5f, 0, MP_ERR_FORMAT, "tensor 'meta/m2' value 4 is 0.5: SGD keeps no second moments"},
        {MP_META_METASGD, MP_OPT_ADAM, S_LR, 1, NAN, 0, MP_ERR_NOT_FINITE, "tensor 'meta/inner_lr' value 1 is not finite"},
        {MP_META_MAML, MP_OPT_ADAM, S_STEP, 0, 0, 0, MP_ERR_FORMAT, "'meta/step' is 0: the moments are 0 before the first step"},
        {MP_META_MAML, MP_OPT_ADAM, S_STEP, 0, 0, INT64_MAX, MP_ERR_FORMAT, "meta step count 9223372036854775807 out of range"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        meta_opts o = defaults(cases[c].algo);
        o.opt = cases[c].opt;
        o.outer_lr = 1e-2;
        train_run b = run_open(&o, 0), d = run_open(&o, 1);
        run_steps(&b, 2);
        run_steps(&d, 1);
        mp_meta *m = b.meta;
        ck_assert(m->m1[cases[c].index] != 0.0f); /* the step-0 case needs non-zero moments */
        float *lr_before = malloc((m->n_lr + 1) * sizeof(float));
        memcpy(lr_before, d.meta->lr, m->n_lr * sizeof(float));
        meta_snapshot snap = snapshot(d.meta);
        /* The control: the sound state loads. */
        MP_CK_OK(mp_checkpoint_save(path, b.model, b.prompt, m));
        MP_CK_OK(mp_checkpoint_load(path, d.model, d.prompt, d.meta));
        ck_assert_int_eq(steps_of(d.meta), 2);
        MP_CK_OK(mp_checkpoint_load(path, b.model, b.prompt, m));
        /* Back to d's own state, then the defective file. */
        memcpy(mp__model_params(d.model), snap.params, m->n_params * sizeof(float));
        memcpy(mp__prompt_data(d.prompt), snap.prompt, m->n_prompt * sizeof(float));
        memcpy(d.meta->m1, snap.m1, m->n_grad * sizeof(float));
        memcpy(d.meta->m2, snap.m2, m->n_grad * sizeof(float));
        memcpy(d.meta->lr, lr_before, m->n_lr * sizeof(float));
        d.meta->t = snap.t;
        switch (cases[c].which) {
        case S_M1: m->m1[cases[c].index] = cases[c].value; break;
        case S_M2: m->m2[cases[c].index] = cases[c].value; break;
        case S_LR: m->lr[cases[c].index] = cases[c].value; break;
        default: m->t = cases[c].step; break;
        }
        MP_CK_OK(mp_checkpoint_save(path, b.model, b.prompt, m));
        mp_clear_error();
        MP_CK_STATUS(mp_checkpoint_load(path, d.model, d.prompt, d.meta), cases[c].st);
        MP_CK_ERROR_MENTIONS(cases[c].mention);
        MP_CK_ERROR_MENTIONS("mp_checkpoint_load: '");
        check_unchanged(d.meta, &snap, cases[c].mention);
        ck_assert_msg(memcmp(lr_before, d.meta->lr, m->n_lr * sizeof(float)) == 0, "%s: rates changed",
                      cases[c].mention);
        /* The sampler variant runs the same checks. */
        MP_CK_STATUS(mp_checkpoint_load_with_sampler(path, d.model, d.prompt, d.meta, NULL), cases[c].st);
        MP_CK_ERROR_MENTIONS(cases[c].mention);
        check_unchanged(d.meta, &snap, cases[c].mention);
        snapshot_free(&snap);
        free(lr_before);
        run_close(&b);
        run_close(&d);
    }
    unlink(path);
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

/* Everything a failed load must leave alone. */
typedef struct {
    meta_snapshot meta;
    uint64_t position;
} run_snapshot;

static run_snapshot run_snap(const train_run *r)
{
    run_snapshot s = {snapshot(r->meta), position_of(r->sampler)};
    return s;
}

static void run_check_unchanged(const train_run *r, mp_sampler *sampler, run_snapshot *s, const char *what)
{
    check_unchanged(r->meta, &s->meta, what);
    ck_assert_msg(position_of(sampler) == s->position, "%s: sampler position changed", what);
}

static mp_sampler *class_sampler(const mp_dataset *ds, int ways)
{
    mp_config *c;
    MP_CK_OK(mp_config_create(&c));
    MP_CK_OK(mp_config_set_int(c, MP_CFG_DATA_WAYS, ways));
    MP_CK_OK(mp_config_set_int(c, MP_CFG_DATA_SHOTS, 1));
    MP_CK_OK(mp_config_set_int(c, MP_CFG_DATA_QUERIES, 1));
    mp_sampler *s;
    MP_CK_OK(mp_sampler_create(&s, ds, c));
    mp_config_destroy(c);
    return s;
}

START_TEST(checkpoint_sampler_mismatch_changes_nothing)
{
    char with[256], without[256], classes[256];
    ckpt_path(with, sizeof with, "with");
    ckpt_path(without, sizeof without, "without");
    ckpt_path(classes, sizeof classes, "classes");
    meta_opts o = defaults(MP_META_MAML);
    o.opt = MP_OPT_ADAM;
    train_run b = run_open(&o, 0);
    run_steps(&b, 3);
    MP_CK_OK(mp_checkpoint_save_with_sampler(with, b.model, b.prompt, b.meta, b.sampler));
    MP_CK_OK(mp_checkpoint_save(without, b.model, b.prompt, b.meta));
    /* Classification samplers over a 4-class dataset of 12 examples. */
    float x[12 * 2];
    int32_t y[12];
    for (int i = 0; i < 12; i++) {
        y[i] = i % 4;
        x[2 * i] = (float)i;
        x[2 * i + 1] = (float)(i % 4);
    }
    mp_dataset *ds, *ds_small;
    MP_CK_OK(mp_dataset_from_arrays(&ds, x, 12, 2, y, NULL, 0));
    MP_CK_OK(mp_dataset_from_arrays(&ds_small, x, 8, 2, y, NULL, 0));
    mp_sampler *three = class_sampler(ds, 3), *two = class_sampler(ds, 2), *three_small = class_sampler(ds_small, 3);
    MP_CK_OK(mp_sampler_set_position(three, 11));
    MP_CK_OK(mp_checkpoint_save_with_sampler(classes, b.model, b.prompt, b.meta, three));

    /* The destination: a run that has moved (2 steps), its sampler and the
     * mismatched ones all at position 3. */
    train_run c = run_open(&o, 1);
    run_steps(&c, 2);
    mp_sampler *other_seed = sinusoid_sampler(10, 5), *other_shots = sinusoid_sampler(9, 6);
    mp_sampler *all[] = {c.sampler, other_seed, other_shots, two, three_small};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) MP_CK_OK(mp_sampler_set_position(all[i], 3));
    run_snapshot snap = run_snap(&c);
    struct {
        const char *file;
        mp_sampler *sampler;
        mp_status st;
        const char *mentions;
    } bad[] = {
        {without, c.sampler, MP_ERR_NOT_FOUND, "meta/sampler_position"},
        {with, other_seed, MP_ERR_SHAPE_MISMATCH, "seed = 9, this sampler 10"},
        {with, other_shots, MP_ERR_SHAPE_MISMATCH, "data.shots = 5, this sampler 6"},
        {with, two, MP_ERR_SHAPE_MISMATCH, "kind"},
        {classes, two, MP_ERR_SHAPE_MISMATCH, "data.ways = 3, this sampler 2"},
        {classes, three_small, MP_ERR_SHAPE_MISMATCH, "dataset examples = 12, this sampler 8"},
        {classes, c.sampler, MP_ERR_SHAPE_MISMATCH, "kind"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        MP_CK_STATUS(mp_checkpoint_load_with_sampler(bad[i].file, c.model, c.prompt, c.meta, bad[i].sampler), bad[i].st);
        MP_CK_ERROR_MENTIONS(bad[i].mentions);
        ck_assert_msg(strncmp(mp_last_error(), "mp_checkpoint_load_with_sampler: '", 34) == 0, "%s", mp_last_error());
        ck_assert_str_eq(mp_model_error(c.model), mp_last_error());
        run_check_unchanged(&c, bad[i].sampler, &snap, bad[i].mentions);
        run_check_unchanged(&c, c.sampler, &snap, bad[i].mentions);
    }
    ck_assert_uint_eq(position_of(three_small), 3);

    /* The sampler is independent of the meta: restored without one, and a
     * file with sampler records loads with the plain functions too. */
    MP_CK_OK(mp_checkpoint_load_with_sampler(classes, c.model, c.prompt, NULL, three));
    ck_assert_uint_eq(position_of(three), 11);
    MP_CK_OK(mp_sampler_set_position(three, 0));
    MP_CK_OK(mp_checkpoint_save_with_sampler(classes, c.model, NULL, NULL, three));
    MP_CK_OK(mp_sampler_set_position(three, 5));
    MP_CK_OK(mp_checkpoint_load_with_sampler(classes, c.model, NULL, NULL, three));
    ck_assert_uint_eq(position_of(three), 0);
    MP_CK_OK(mp_checkpoint_load(with, c.model, c.prompt, c.meta));
    ck_assert_int_eq(steps_of(c.meta), 3);
    MP_CK_OK(mp_checkpoint_load_with_sampler(with, c.model, c.prompt, c.meta, NULL));
    ck_assert_uint_eq(position_of(c.sampler), 3);
    MP_CK_OK(mp_checkpoint_load_with_sampler(with, c.model, c.prompt, c.meta, c.sampler));
    ck_assert_uint_eq(position_of(c.sampler), 12);
    ck_assert(runs_equal(&b, &c));

    /* Bad arguments, reported as the new functions. */
    mp_model *other = make_model(2, 1, 3, 1, 4, MP_ACT_TANH, MP_TASK_REGRESSION, 1);
    mp_prompt *wrong = make_prompt(other, 0, 0);
    MP_CK_STATUS(mp_checkpoint_save_with_sampler(NULL, c.model, c.prompt, c.meta, c.sampler), MP_ERR_NULL_POINTER);
    MP_CK_ERROR_MENTIONS("mp_checkpoint_save_with_sampler: argument 'path'");
    MP_CK_STATUS(mp_checkpoint_save_with_sampler(with, NULL, c.prompt, c.meta, c.sampler), MP_ERR_NULL_POINTER);
    MP_CK_ERROR_MENTIONS("'model'");
    MP_CK_STATUS(mp_checkpoint_save_with_sampler(with, c.model, wrong, c.meta, c.sampler), MP_ERR_SHAPE_MISMATCH);
    MP_CK_ERROR_MENTIONS("mp_checkpoint_save_with_sampler: prompt is 3 x 2");
    MP_CK_STATUS(mp_checkpoint_save_with_sampler("/nonexistent-dir/x.ckpt", c.model, c.prompt, c.meta, c.sampler),
                 MP_ERR_IO);
    ck_assert_msg(strncmp(mp_last_error(), "mp_checkpoint_save_with_sampler: cannot create", 46) == 0, "%s",
                  mp_last_error());
    /* The plain saver reports the same writer failure as its own. */
    MP_CK_STATUS(mp_checkpoint_save("/nonexistent-dir/x.ckpt", c.model, c.prompt, c.meta), MP_ERR_IO);
    ck_assert_msg(strncmp(mp_last_error(), "mp_checkpoint_save: cannot create", 33) == 0, "%s", mp_last_error());
    MP_CK_STATUS(mp_checkpoint_load_with_sampler(with, NULL, c.prompt, c.meta, c.sampler), MP_ERR_NULL_POINTER);
    MP_CK_ERROR_MENTIONS("mp_checkpoint_load_with_sampler: argument 'model'");
    MP_CK_STATUS(mp_checkpoint_load_with_sampler(NULL, c.model, c.prompt, c.meta, c.sampler), MP_ERR_NULL_POINTER);
    MP_CK_ERROR_MENTIONS("'path'");
    MP_CK_STATUS(mp_checkpoint_load_with_sampler("/nonexistent-dir/x.ckpt", c.model, c.prompt, c.meta, c.sampler),
                 MP_ERR_IO);
    MP_CK_ERROR_MENTIONS("mp_checkpoint_load_with_sampler: '/nonexistent-dir/x.ckpt'");

    snapshot_free(&snap.meta);
    mp_prompt_destroy(wrong);
    mp_model_destroy(other);
    for (size_t i = 1; i < sizeof all / sizeof all[0]; i++) mp_sampler_destroy(all[i]);
    mp_sampler_destroy(three);
    mp_dataset_destroy(ds);
    mp_dataset_destroy(ds_small);
    unlink(with);
    unlink(without);
    unlink(classes);
    run_close(&b);
    run_close(&c);
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

/* ---- OpenBLAS oversubscription ----------------------------------------------------------------------
 * OpenBLAS's own functions (the test links it, as the library does). The
 * test changes OpenBLAS's process-wide thread count and restores it; the
 * library itself must only warn. */
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);

typedef mp_test_log log_seen;
#define record_log mp_test_record_log

static int warnings_for(int32_t meta_threads, log_seen *seen)
{
    mp_model *model = make_model(1, 1, 0, 1, 4, MP_ACT_TANH, MP_TASK_REGRESSION, 1);
    meta_opts o = defaults(MP_META_MAML);
    o.threads = meta_threads;
    memset(seen, 0, sizeof *seen);
    mp_meta *m = make_meta(model, NULL, &o);
    mp_meta_destroy(m);
    mp_model_destroy(model);
    return seen->count;
}

START_TEST(openblas_oversubscription_warns)
{
    const int saved = openblas_get_num_threads();
    log_seen seen;
    MP_CK_OK(mp_set_log_callback(record_log, MP_LOG_WARN, &seen));
    openblas_set_num_threads(1);
    ck_assert_int_eq(warnings_for(2, &seen), 0);
    openblas_set_num_threads(2);
    const int blas = mp_blas_num_threads();
    if (blas < 2) {
        /* A single-threaded OpenBLAS build cannot be given 2 threads, so it
         * cannot oversubscribe: the warning needs both counts above 1, and
         * no meta thread count may trigger it here. */
        ck_assert_int_eq(warnings_for(1, &seen), 0);
        ck_assert_int_eq(warnings_for(2, &seen), 0);
        ck_assert_int_eq(warnings_for(8, &seen), 0);
        ck_assert_int_eq(mp_blas_num_threads(), blas);
        fprintf(stderr, "note: openblas_oversubscription_warns: OpenBLAS stays at %d thread(s); the "
                        "oversubscription warning itself was not exercised\n", blas);
    } else {
        ck_assert_int_eq(warnings_for(1, &seen), 0);
        ck_assert_int_eq(warnings_for(2, &seen), 1);
        ck_assert_int_eq(seen.level, MP_LOG_WARN);
        ck_assert_msg(strstr(seen.msg, "mp_meta_create") && strstr(seen.msg, "OPENBLAS_NUM_THREADS=1") &&
                          strstr(seen.msg, "2 meta threads with 2 OpenBLAS threads"),
                      "%s", seen.msg);
        /* The library warned and left OpenBLAS's setting alone. */
        ck_assert_int_eq(mp_blas_num_threads(), 2);
    }
    MP_CK_OK(mp_set_log_callback(NULL, MP_LOG_INFO, NULL));
    openblas_set_num_threads(saved);
    ck_assert_int_eq(openblas_get_num_threads(), saved);
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

/* ---- bad inputs ------------------------------------------------------------------------------------ */
START_TEST(create_rejects_bad_inputs)
{
    mp_model *model = make_model(2, 1, 2, 1, 4, MP_ACT_TANH, MP_TASK_REGRESSION, 1);
    mp_model *plain = make_model(1, 1, 0, 1, 4, MP_ACT_TANH, MP_TASK_REGRESSION, 1);
    mp_model *other = make_model(3, 1, 3, 1, 4, MP_ACT_TANH, MP_TASK_REGRESSION, 1);
    mp_prompt *prompt = make_prompt(model, 0, 0), *wrong = make_prompt(other, 0, 0);
    mp_meta *m = (mp_meta *)0x1;
    MP_CK_STATUS(mp_meta_create(NULL, model, prompt, NULL), MP_ERR_NULL_POINTER);
    MP_CK_ERROR_MENTIONS("out");
    MP_CK_STATUS(mp_meta_create(&m, NULL, prompt, NULL), MP_ERR_NULL_POINTER);
    MP_CK_ERROR_MENTIONS("model");
    MP_CK_STATUS(mp_meta_create(&m, model, NULL, NULL), MP_ERR_NULL_POINTER);
    MP_CK_ERROR_MENTIONS("prompt");
    MP_CK_STATUS(mp_meta_create(&m, model, wrong, NULL), MP_ERR_SHAPE_MISMATCH);
    MP_CK_ERROR_MENTIONS("3 x 3");
    meta_opts o = defaults(MP_META_MAML);
    o.learn = MP_LEARN_PROMPT | MP_LEARN_INNER_LR;
    mp_config *c = meta_config(&o);
    MP_CK_STATUS(mp_meta_create(&m, model, prompt, c), MP_ERR_INVALID_ARGUMENT);
    MP_CK_ERROR_MENTIONS("Meta-SGD");
    mp_config_destroy(c);
    o = defaults(MP_META_MAML);
    o.scope = MP_SCOPE_PROMPT;
    c = meta_config(&o);
    MP_CK_STATUS(mp_meta_create(&m, plain, NULL, c), MP_ERR_INVALID_ARGUMENT);
    MP_CK_ERROR_MENTIONS("meta.scope");
    mp_config_destroy(c);
    o.learn = MP_LEARN_PROMPT;
    o.scope = MP_SCOPE_ALL;
    c = meta_config(&o);
    MP_CK_STATUS(mp_meta_create(&m, plain, NULL, c), MP_ERR_INVALID_ARGUMENT);
    MP_CK_ERROR_MENTIONS("meta.learn");
    mp_config_destroy(c);
    ck_assert_ptr_eq(m, (mp_meta *)0x1);
    mp_meta_destroy(NULL);
    ck_assert_str_eq(mp_meta_error(NULL), "");
    mp_prompt_destroy(prompt);
    mp_prompt_destroy(wrong);
    mp_model_destroy(model);
    mp_model_destroy(plain);
    mp_model_destroy(other);
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

START_TEST(calls_reject_bad_inputs)
{
    fd_setup s = fd_make();
    meta_opts o = defaults(MP_META_MAML);
    mp_meta *m = make_meta(s.model, s.prompt, &o);
    mp_task *cls = NULL;
    float cx[4] = {0.1f, 0.2f, 0.3f, 0.4f};
    int32_t cl[2] = {0, 1};
    MP_CK_OK(mp_task_create_classification(&cls, 2, 2, cx, cl, 2, cx, cl, 2));
    mp_task *wide = regression_task(3, 2, 2, 1);
    mp_task *null_task = NULL;
    double st[4];
    float g[1];
    size_t n = 0;
    MP_CK_STATUS(mp_meta_step(NULL, &s.task, 1, NULL, 0), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_meta_step(m, NULL, 1, NULL, 0), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_meta_step(m, &s.task, 0, NULL, 0), MP_ERR_INVALID_ARGUMENT);
    MP_CK_STATUS(mp_meta_step(m, &null_task, 1, NULL, 0), MP_ERR_NULL_POINTER);
    MP_CK_ERROR_MENTIONS("tasks[0]");
    MP_CK_STATUS(mp_meta_step(m, &s.task, 1, st, 3), MP_ERR_BUFFER_TOO_SMALL);
    MP_CK_ERROR_MENTIONS("mp_meta_step: 'stats' has room for n_stats = 3 doubles, 4 needed");
    MP_CK_STATUS(mp_meta_step(m, &s.task, 1, NULL, 4), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_meta_step(m, &cls, 1, NULL, 0), MP_ERR_INVALID_ARGUMENT);
    MP_CK_ERROR_MENTIONS("classification");
    MP_CK_STATUS(mp_meta_step(m, &wide, 1, NULL, 0), MP_ERR_INVALID_ARGUMENT);
    MP_CK_ERROR_MENTIONS("features");
    ck_assert_ptr_nonnull(strstr(mp_meta_error(m), "features"));
    MP_CK_STATUS(mp_meta_compute_gradients(NULL, &s.task, 1, NULL, 0), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_meta_compute_gradients(m, &wide, 1, NULL, 0), MP_ERR_INVALID_ARGUMENT);
    MP_CK_STATUS(mp_meta_gradient_size(NULL, &n), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_meta_gradient_size(m, NULL), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_meta_get_gradients(NULL, g, 1), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_meta_get_gradients(m, NULL, 1), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_meta_get_gradients(m, g, 1), MP_ERR_BUFFER_TOO_SMALL);
    char want[128];
    snprintf(want, sizeof want, "mp_meta_get_gradients: 'grad' has room for len = 1 floats, %zu needed",
             grad_size(m));
    MP_CK_ERROR_MENTIONS(want);
    MP_CK_STATUS(mp_meta_set_gradients(NULL, g, 1), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_meta_set_gradients(m, NULL, 1), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_meta_set_gradients(m, g, 1), MP_ERR_SHAPE_MISMATCH);
    MP_CK_STATUS(mp_meta_apply_gradients(NULL), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_meta_apply_gradients(m), MP_ERR_STATE);
    MP_CK_STATUS(mp_meta_step_count(NULL, NULL), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_meta_step_count(m, NULL), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_meta_inner_lr_count(NULL, &n), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_meta_inner_lr_count(m, NULL), MP_ERR_NULL_POINTER);
    MP_CK_OK(mp_meta_inner_lr_count(m, &n));
    ck_assert_uint_eq(n, 0);
    MP_CK_OK(mp_meta_get_inner_lr(m, NULL, 0));
    MP_CK_STATUS(mp_meta_get_inner_lr(NULL, g, 1), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_meta_set_progress(NULL, NULL, NULL), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_meta_set_eval_steps(NULL, 1), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_meta_set_eval_steps(m, -2), MP_ERR_RANGE);
    MP_CK_ERROR_MENTIONS("[-1, 10000]");
    MP_CK_STATUS(mp_meta_set_eval_steps(m, 10001), MP_ERR_RANGE);
    /* adapt */
    mp_prompt *ap = make_prompt(s.model, 0, 0);
    mp_model *small = make_model(2, 1, 2, 1, 3, MP_ACT_TANH, MP_TASK_REGRESSION, 1);
    MP_CK_STATUS(mp_meta_adapt(NULL, s.task, ap, NULL), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_meta_adapt(m, NULL, ap, NULL), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_meta_adapt(m, s.task, NULL, NULL), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_meta_adapt(m, s.task, s.prompt, NULL), MP_ERR_INVALID_ARGUMENT);
    MP_CK_STATUS(mp_meta_adapt(m, s.task, ap, s.model), MP_ERR_INVALID_ARGUMENT);
    MP_CK_STATUS(mp_meta_adapt(m, s.task, ap, small), MP_ERR_SHAPE_MISMATCH);
    MP_CK_STATUS(mp_meta_adapt(m, wide, ap, NULL), MP_ERR_INVALID_ARGUMENT);
    /* One task: it is the argument 'task', not "task 0" of a batch. */
    ck_assert_msg(strncmp(mp_last_error(), "mp_meta_adapt: task has 3 features per example", 46) == 0, "%s",
                  mp_last_error());
    /* evaluate */
    double mean = 5, ci = 5;
    mp_sampler *smp;
    MP_CK_OK(mp_sampler_create_sinusoid(&smp, NULL));
    MP_CK_STATUS(mp_meta_evaluate(NULL, smp, 0, 1, &mean, &ci), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_meta_evaluate(m, NULL, 0, 1, &mean, &ci), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_meta_evaluate(m, smp, 0, 0, &mean, &ci), MP_ERR_INVALID_ARGUMENT);
    MP_CK_STATUS(mp_meta_evaluate(m, smp, 0, 1, NULL, &ci), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_meta_evaluate(m, smp, 0, 1, &mean, NULL), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_meta_evaluate(m, smp, 0, 3, &mean, &ci), MP_ERR_INVALID_ARGUMENT); /* 1-d sinusoids */
    MP_CK_STATUS(mp_meta_evaluate_tasks(NULL, &s.task, 1, &mean, &ci), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_meta_evaluate_tasks(m, NULL, 1, &mean, &ci), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_meta_evaluate_tasks(m, &s.task, 0, &mean, &ci), MP_ERR_INVALID_ARGUMENT);
    MP_CK_STATUS(mp_meta_evaluate_tasks(m, &null_task, 1, &mean, &ci), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_meta_evaluate_tasks(m, &wide, 1, &mean, &ci), MP_ERR_INVALID_ARGUMENT);
    ck_assert_msg(strncmp(mp_meta_error(m), "mp_meta_evaluate_tasks: task 0 has ", 35) == 0 &&
                      !strstr(mp_meta_error(m), "(task"), "%s", mp_meta_error(m));
    ck_assert(mean == 5 && ci == 5);
    MP_CK_OK(mp_meta_evaluate_tasks(m, &s.task, 1, &mean, &ci));
    ck_assert(isfinite(mean) && isnan(ci));
    /* Nothing changed by the failures. */
    int64_t t;
    MP_CK_OK(mp_meta_step_count(m, &t));
    ck_assert_int_eq(t, 0);
    mp_sampler_destroy(smp);
    mp_model_destroy(small);
    mp_prompt_destroy(ap);
    mp_task_destroy(cls);
    mp_task_destroy(wide);
    mp_meta_destroy(m);
    fd_free(&s);
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

START_TEST(create_survives_allocation_failures)
{
    mp_test_install_failing_allocator();
    mp_model *model = make_model(1, 1, 2, 1, 4, MP_ACT_TANH, MP_TASK_REGRESSION, 1);
    mp_prompt *prompt = make_prompt(model, 0, 0);
    meta_opts o = defaults(MP_META_METASGD);
    o.threads = 2;
    mp_config *c = meta_config(&o);
    int64_t live = mp_live_allocations();
    mp_meta *m = NULL;
    int ok = 0;
    for (long n = 0; n < 200 && !ok; n++) {
        mp_test_fail_after(n);
        mp_status st = mp_meta_create(&m, model, prompt, c);
        mp_test_alloc_reset();
        if (st == MP_OK) {
            ok = 1;
            break;
        }
        ck_assert_int_eq(st, MP_ERR_OUT_OF_MEMORY);
        ck_assert_ptr_null(m);
        ck_assert_int_eq(mp_live_allocations(), live);
    }
    ck_assert(ok);
    mp_meta_destroy(m);
    mp_config_destroy(c);
    mp_prompt_destroy(prompt);
    mp_model_destroy(model);
    ck_assert_int_eq(mp_live_allocations(), 0);
    MP_CK_OK(mp_set_allocator(NULL, NULL, NULL));
}
END_TEST

START_TEST(step_and_evaluate_survive_allocation_failures)
{
    mp_test_install_failing_allocator();
    mp_model *model = make_model(1, 1, 2, 1, 8, MP_ACT_TANH, MP_TASK_REGRESSION, 1);
    mp_prompt *prompt = make_prompt(model, 0.1, 1);
    meta_opts o = defaults(MP_META_MAML);
    o.threads = 2;
    o.steps = 2;
    mp_meta *m = make_meta(model, prompt, &o);
    mp_task *tasks[6];
    for (int i = 0; i < 6; i++) MP_CK_OK(mp_task_sinusoid(&tasks[i], 1, (uint64_t)i, 5, 5));
    MP_CK_OK(mp_meta_step(m, tasks, 1, NULL, 0)); /* small warm-up: the big batch must grow */
    size_t n = mp__model_param_count(model);
    float *before = malloc(n * sizeof(float));
    int ok = 0;
    for (long k = 0; k < 400 && !ok; k++) {
        memcpy(before, mp__model_params_const(model), n * sizeof(float));
        int64_t t0, t1;
        MP_CK_OK(mp_meta_step_count(m, &t0));
        mp_test_fail_after(k);
        mp_status st = mp_meta_step(m, tasks, 6, NULL, 0);
        mp_test_alloc_reset();
        MP_CK_OK(mp_meta_step_count(m, &t1));
        if (st == MP_OK) {
            ok = 1;
            ck_assert_int_eq(t1, t0 + 1);
            break;
        }
        ck_assert_int_eq(st, MP_ERR_OUT_OF_MEMORY);
        ck_assert_int_eq(t1, t0);
        ck_assert(memcmp(before, mp__model_params_const(model), n * sizeof(float)) == 0);
    }
    ck_assert(ok);
    mp_sampler *s;
    MP_CK_OK(mp_sampler_create_sinusoid(&s, NULL));
    int64_t live = mp_live_allocations();
    ok = 0;
    for (long k = 0; k < 400 && !ok; k++) {
        double mean = 7, ci = 7;
        mp_test_fail_after(k);
        mp_status st = mp_meta_evaluate(m, s, 0, 40, &mean, &ci);
        mp_test_alloc_reset();
        ck_assert_int_eq(mp_live_allocations(), live);
        if (st == MP_OK) ok = 1;
        else {
            ck_assert_int_eq(st, MP_ERR_OUT_OF_MEMORY);
            ck_assert(mean == 7 && ci == 7);
        }
    }
    ck_assert(ok);
    free(before);
    mp_sampler_destroy(s);
    for (int i = 0; i < 6; i++) mp_task_destroy(tasks[i]);
    mp_meta_destroy(m);
    mp_prompt_destroy(prompt);
    mp_model_destroy(model);
    ck_assert_int_eq(mp_live_allocations(), 0);
    MP_CK_OK(mp_set_allocator(NULL, NULL, NULL));
}
END_TEST

/* After warm-up a step (and an evaluation of caller tasks) allocates
 * nothing: with every allocation failing, they still succeed. */
START_TEST(no_allocation_after_warm_up)
{
    const int algos[4] = {MP_META_MAML, MP_META_FOMAML, MP_META_REPTILE, MP_META_METASGD};
    mp_test_install_failing_allocator();
    for (int a = 0; a < 4; a++) {
        mp_model *model = make_model(1, 1, 2, 1, 8, MP_ACT_TANH, MP_TASK_REGRESSION, 1);
        mp_prompt *prompt = make_prompt(model, 0.1, 1);
        meta_opts o = defaults(algos[a]);
        o.steps = 3;
        o.opt = MP_OPT_ADAM;
        mp_meta *m = make_meta(model, prompt, &o);
        mp_task *tasks[5];
        for (int i = 0; i < 5; i++) MP_CK_OK(mp_task_sinusoid(&tasks[i], 1, (uint64_t)i, 5, 5));
        mp_sampler *s;
        MP_CK_OK(mp_sampler_create_sinusoid(&s, NULL));
        double st[4], mean, ci;
        MP_CK_OK(mp_meta_step(m, tasks, 5, st, 4));
        MP_CK_OK(mp_meta_evaluate_tasks(m, tasks, 5, &mean, &ci));
        mp_test_fail_after(0);
        for (int k = 0; k < 3; k++) MP_CK_OK(mp_meta_step(m, tasks, 5, st, 4));
        MP_CK_OK(mp_meta_evaluate_tasks(m, tasks, 5, &mean, &ci));
        mp_test_alloc_reset();
        /* Sampler evaluation creates one episode task per worker per call,
         * whatever the number of episodes. */
        mp_test_fail_after(1000000);
        MP_CK_OK(mp_meta_evaluate(m, s, 0, 10, &mean, &ci));
        long few = mp_test_alloc_count();
        mp_test_fail_after(1000000);
        MP_CK_OK(mp_meta_evaluate(m, s, 0, 300, &mean, &ci));
        ck_assert_int_eq(mp_test_alloc_count(), few);
        mp_test_alloc_reset();
        mp_sampler_destroy(s);
        for (int i = 0; i < 5; i++) mp_task_destroy(tasks[i]);
        mp_meta_destroy(m);
        mp_prompt_destroy(prompt);
        mp_model_destroy(model);
    }
    ck_assert_int_eq(mp_live_allocations(), 0);
    MP_CK_OK(mp_set_allocator(NULL, NULL, NULL));
}
END_TEST

/* ---- conv with the prompt at the head: its backbone recorded once per task -------------- */
#define CONV_SIDE 6 /* 6 x 6 images: 6 -> 3 -> 1 through two blocks */
#define CONV_DIM  (CONV_SIDE * CONV_SIDE)

/* A tiny conv4-style classifier (2 blocks of 2 filters, 3 classes) with a
 * 2 x 2 prompt appended to the head's features. */
static mp_model *conv_head_model(void)
{
    static const int32_t kv[][2] = {
        {MP_CFG_MODEL_KIND, MP_MODEL_CONV}, {MP_CFG_MODEL_IMAGE_HEIGHT, CONV_SIDE},
        {MP_CFG_MODEL_IMAGE_WIDTH, CONV_SIDE}, {MP_CFG_MODEL_CHANNELS, 2}, {MP_CFG_MODEL_CONV_BLOCKS, 2},
        {MP_CFG_MODEL_OUTPUT_DIM, 3}, {MP_CFG_MODEL_PROMPT_LEN, 2}, {MP_CFG_MODEL_PROMPT_DIM, 2},
        {MP_CFG_MODEL_PROMPT_MODE, MP_PROMPT_HEAD_FEATURES}, {MP_CFG_SEED, 21}};
    mp_config *c;
    MP_CK_OK(mp_config_create(&c));
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++) MP_CK_OK(mp_config_set_int(c, kv[i][0], kv[i][1]));
    mp_model *m = NULL;
    MP_CK_OK(mp_model_create(&m, c));
    mp_config_destroy(c);
    return m;
}

/* 3-way: 2 support and 2 query images per class, noise plus a bright
 * quadrant that depends on the class. */
static mp_task *conv_head_task(uint64_t seed, float *qx, int32_t *ql)
{
    mp__rng r;
    mp__rng_seed(&r, seed, 17);
    float x[12 * CONV_DIM];
    int32_t lab[12];
    for (int i = 0; i < 12; i++) {
        lab[i] = i % 3;
        for (int j = 0; j < CONV_DIM; j++) {
            int quad = (j / CONV_SIDE >= CONV_SIDE / 2) * 2 + (j % CONV_SIDE >= CONV_SIDE / 2);
            x[i * CONV_DIM + j] = (float)(mp__rng_normal(&r) * 0.5 + (quad == lab[i]));
        }
    }
    memcpy(qx, x + 6 * CONV_DIM, 6 * CONV_DIM * sizeof(float));
    memcpy(ql, lab + 6, 6 * sizeof(int32_t));
    mp_task *t = NULL;
    MP_CK_OK(mp_task_create_classification(&t, CONV_DIM, 3, x, lab, 6, x + 6 * CONV_DIM, lab + 6, 6));
    return t;
}

/* Query cross-entropy after m's inner loop (mp_meta_adapt: first order,
 * the tape restarted between steps) from s's current meta-parameters. */
static double conv_head_query_loss(mp_meta *m, fd_setup *s, const float *qx, const int32_t *ql)
{
    float loss;
    MP_CK_OK(mp_meta_adapt(m, s->task, s->scratch_prompt, s->scratch_model));
    MP_CK_OK(mp_model_loss(s->scratch_model, s->scratch_prompt, qx, 6, 6 * CONV_DIM, ql, NULL, &loss));
    return loss;
}

/* Second-order MAML, 2 inner steps, on the conv classifier: the meta-gradient
 * (inner steps and query pass on one tape, the backbone shared through the
 * forward cache unless scope "all" adapts it) against central differences
 * of the adapted query loss, for every learned prompt entry and every 4th
 * learned parameter; and measurably different from the first-order one. */
static void conv_head_fd_check(int scope, int learn)
{
    fd_setup s;
    float qx[6 * CONV_DIM];
    int32_t ql[6];
    s.model = conv_head_model();
    s.prompt = make_prompt(s.model, 0.5, 4);
    MP_CK_OK(mp_model_clone(&s.scratch_model, s.model));
    s.scratch_prompt = make_prompt(s.model, 0, 0);
    s.task = conv_head_task(11, qx, ql);
    meta_opts o = defaults(MP_META_MAML);
    o.scope = scope;
    o.learn = learn;
    o.steps = o.eval_steps = 2;
    o.inner_lr = 0.5;
    mp_meta *m = make_meta(s.model, s.prompt, &o);
    float *g = meta_grad(m, &s.task, 1);
    float *gf = first_order_reference(m, &s, &o);
    size_t np = m->n_prompt, checked = 0;
    double max_gap = 0, max_err = 0;
    const float eps = 5e-4f; /* maxpool switches and relu kinks lie close by */
    for (size_t j = 0; j < np + m->n_params; j++) {
        if (!entry_learned(m, j) || (j >= np && (j - np) % 4 != 0)) continue;
        float *x = j < np ? mp__prompt_data(s.prompt) + j : mp__model_params(s.model) + (j - np), x0 = *x;
        *x = x0 + eps;
        double lp = conv_head_query_loss(m, &s, qx, ql);
        *x = x0 - eps;
        double lm = conv_head_query_loss(m, &s, qx, ql);
        *x = x0;
        double fd = (lp - lm) / (2.0 * eps), err = fabs(fd - g[j]);
        ck_assert_msg(err < 2e-3 + 2e-2 * fabs(fd), "scope %d, entry %zu: meta-gradient %.7g, finite difference %.7g",
                      scope, j, g[j], fd);
        if (err > max_err) max_err = err;
        if (fabs(g[j] - gf[j]) > max_gap) max_gap = fabs(g[j] - gf[j]);
        checked++;
    }
    ck_assert_uint_gt(checked, 20);
    ck_assert_msg(max_gap > 10 * max_err && max_gap > 1e-2, "second vs first order gap %.3g, fd error %.3g",
                  max_gap, max_err);
    free(g);
    free(gf);
    mp_meta_destroy(m);
    fd_free(&s);
}

START_TEST(conv_head_maml_matches_finite_differences)
{
    conv_head_fd_check(MP_SCOPE_PROMPT_HEAD, LEARN_ALL);
    conv_head_fd_check(MP_SCOPE_ALL, LEARN_ALL);
}
END_TEST

/* Variables on the worker's tape after a second-order MAML meta-gradient
 * with `steps` inner steps (the tape is kept until the next task). */
static int64_t conv_head_task_nodes(mp_model *model, mp_prompt *prompt, mp_task *task, int scope, int steps)
{
    meta_opts o = defaults(MP_META_MAML);
    o.scope = scope;
    o.learn = LEARN_ALL;
    o.steps = steps;
    mp_meta *m = make_meta(model, prompt, &o);
    free(meta_grad(m, &task, 1));
    int64_t nodes;
    MP_CK_OK(mp_tape_stat(m->w[0].tape, MP_TAPE_STAT_NODES, &nodes));
    mp_meta_destroy(m);
    return nodes;
}

/* In scope prompt+head the first inner step records the support set's
 * backbone and later steps do not: each later step records at least one
 * backbone forward fewer than the first. In scope "all" every step adapts
 * the backbone and records its own: all steps record the same. */
START_TEST(conv_head_maml_records_the_backbone_once_per_task)
{
    mp_model *model = conv_head_model();
    mp_prompt *prompt = make_prompt(model, 0.5, 4);
    float qx[6 * CONV_DIM], sx[6 * CONV_DIM];
    int32_t ql[6];
    mp_task *task = conv_head_task(11, qx, ql);
    MP_CK_OK(mp_task_get_support(task, sx, 6 * CONV_DIM, NULL, 0, NULL, 0));
    /* Variables of the support set's backbone: a full forward minus one
     * served from the cache. */
    mp_tape *t;
    mp_var pv[16], prv, xv, out;
    int64_t full, head;
    ck_assert_int_le(mp__model_num_tensors(model), 16);
    MP_CK_OK(mp_tape_create(&t));
    for (int32_t i = 0; i < mp__model_num_tensors(model); i++) {
        const mp__param_info *ti = mp__model_tensor(model, i);
        MP_CK_OK(mp_tape_leaf(t, ti->rows, ti->cols, mp__model_params(model) + ti->offset,
                              (size_t)ti->rows * ti->cols, 0, &pv[i]));
    }
    MP_CK_OK(mp_tape_leaf(t, 2, 2, mp__prompt_data(prompt), 4, 0, &prv));
    MP_CK_OK(mp_tape_leaf(t, 6, CONV_DIM, sx, 6 * CONV_DIM, 0, &xv));
    mp__fwd_cache cache;
    mp__fwd_cache_clear(&cache);
    int64_t n0, n1, n2;
    MP_CK_OK(mp_tape_stat(t, MP_TAPE_STAT_NODES, &n0));
    MP_CK_OK(mp__model_forward(model, t, pv, prv, xv, &cache, &out));
    MP_CK_OK(mp_tape_stat(t, MP_TAPE_STAT_NODES, &n1));
    MP_CK_OK(mp__model_forward(model, t, pv, prv, xv, &cache, &out));
    MP_CK_OK(mp_tape_stat(t, MP_TAPE_STAT_NODES, &n2));
    mp_tape_destroy(t);
    full = n1 - n0;
    head = n2 - n1;
    int64_t backbone = full - head;
    ck_assert_int_gt(backbone, 10);
    int64_t ph[4], all[4];
    for (int k = 0; k < 4; k++) {
        ph[k] = conv_head_task_nodes(model, prompt, task, MP_SCOPE_PROMPT_HEAD, k);
        all[k] = conv_head_task_nodes(model, prompt, task, MP_SCOPE_ALL, k);
    }
    /* Step 1 also records the final backward through the support set's
     * backbone (its forward was recorded with the task's frozen part);
     * steps 2 and 3 record neither. */
    ck_assert_msg((ph[1] - ph[0]) - (ph[2] - ph[1]) >= backbone,
                  "prompt+head: step 1 records %lld variables, step 2 %lld, a backbone forward %lld",
                  (long long)(ph[1] - ph[0]), (long long)(ph[2] - ph[1]), (long long)backbone);
    ck_assert_int_eq(ph[2] - ph[1], ph[3] - ph[2]);
    ck_assert_int_eq(all[1] - all[0], all[2] - all[1]);
    ck_assert_int_eq(all[2] - all[1], all[3] - all[2]);
    mp_task_destroy(task);
    mp_prompt_destroy(prompt);
    mp_model_destroy(model);
}
END_TEST

/* First-order runs restart the tape after every inner step from the point
 * after the task's frozen part (parameter and data leaves and, when the
 * backbone is not adapted, its forward prefix recorded once). The FOMAML
 * meta-gradient and the adapted values must equal a plain tape computation
 * that records everything again at every step (no cache): inner steps
 * v <- v - a grad L_support(v) on the prompt and head, then the query
 * gradient at v_K with respect to prompt, head and backbone. */
static void fomaml_by_tape(mp_model *model, mp_prompt *prompt, mp_task *task, int steps, float lr, float *grad,
                           float *adapted)
{
    int32_t nt = mp__model_num_tensors(model);
    size_t np = 4, nparams = mp__model_param_count(model);
    float sx[6 * CONV_DIM], qx[6 * CONV_DIM];
    int32_t sl[6], ql[6];
    MP_CK_OK(mp_task_get_support(task, sx, 6 * CONV_DIM, sl, 6, NULL, 0));
    MP_CK_OK(mp_task_get_query(task, qx, 6 * CONV_DIM, ql, 6, NULL, 0));
    float *v = malloc((np + nparams) * sizeof(float)); /* prompt, then every parameter */
    memcpy(v, mp__prompt_data(prompt), np * sizeof(float));
    memcpy(v + np, mp__model_params(model), nparams * sizeof(float));
    mp_tape *t;
    MP_CK_OK(mp_tape_create(&t));
    mp_var pv[16], prv, xv, out, loss, gv;
    ck_assert_int_le(nt, 16);
    for (int k = 0; k <= steps; k++) {
        int query = k == steps;
        MP_CK_OK(mp_tape_reset(t));
        MP_CK_OK(mp_tape_leaf(t, 2, 2, v, np, MP_LEAF_REQUIRES_GRAD, &prv));
        for (int32_t i = 0; i < nt; i++) {
            const mp__param_info *ti = mp__model_tensor(model, i);
            MP_CK_OK(mp_tape_leaf(t, ti->rows, ti->cols, v + np + ti->offset, (size_t)ti->rows * ti->cols,
                                  MP_LEAF_REQUIRES_GRAD, &pv[i]));
        }
        MP_CK_OK(mp_tape_leaf(t, 6, CONV_DIM, query ? qx : sx, 6 * CONV_DIM, 0, &xv));
        MP_CK_OK(mp__model_forward(model, t, pv, prv, xv, NULL, &out));
        MP_CK_OK(mp_cross_entropy(t, out, query ? ql : sl, 6, &loss));
        MP_CK_OK(mp_tape_backward(t, loss, 0));
        float g[512];
        MP_CK_OK(mp_tape_grad(t, prv, &gv));
        MP_CK_OK(mp_tape_read(t, gv, g, np));
        for (size_t j = 0; j < np; j++) {
            if (query) grad[j] = g[j];
            else v[j] -= lr * g[j];
        }
        for (int32_t i = 0; i < nt; i++) {
            const mp__param_info *ti = mp__model_tensor(model, i);
            size_t len = (size_t)ti->rows * ti->cols;
            ck_assert_uint_le(len, 512);
            MP_CK_OK(mp_tape_grad(t, pv[i], &gv));
            MP_CK_OK(mp_tape_read(t, gv, g, len));
            for (size_t j = 0; j < len; j++) {
                if (query) grad[np + ti->offset + j] = g[j];
                else if (ti->group == MP__GROUP_HEAD) v[np + ti->offset + j] -= lr * g[j];
            }
        }
    }
    memcpy(adapted, v, (np + nparams) * sizeof(float));
    mp_tape_destroy(t);
    free(v);
}

START_TEST(first_order_restarts_equal_a_plain_tape)
{
    mp_model *model = conv_head_model();
    mp_prompt *prompt = make_prompt(model, 0.5, 4);
    float qx[6 * CONV_DIM];
    int32_t ql[6];
    mp_task *task = conv_head_task(11, qx, ql);
    size_t np = 4, nparams = mp__model_param_count(model);
    float *want = malloc((np + nparams) * sizeof(float)), *adapted = malloc((np + nparams) * sizeof(float));
    for (int steps = 1; steps <= 3; steps += 2) {
        fomaml_by_tape(model, prompt, task, steps, 0.5f, want, adapted);
        meta_opts o = defaults(MP_META_FOMAML);
        o.scope = MP_SCOPE_PROMPT_HEAD;
        o.learn = LEARN_ALL;
        o.steps = o.eval_steps = steps;
        o.inner_lr = 0.5;
        mp_meta *m = make_meta(model, prompt, &o);
        float *g = meta_grad(m, &task, 1);
        double scale = 0;
        for (size_t j = 0; j < np + nparams; j++) scale = fmax(scale, fabs(want[j]));
        ck_assert_msg(scale > 1e-2, "degenerate reference gradient (max %g)", scale);
        for (size_t j = 0; j < np + nparams; j++)
            ck_assert_msg(fabs(g[j] - want[j]) <= 1e-5 * (fabs(want[j]) + scale),
                          "%d steps, entry %zu: FOMAML %.8g, plain tape %.8g", steps, j, g[j], want[j]);
        /* Adapting (evaluation's path) gives the same adapted values. */
        mp_model *am;
        MP_CK_OK(mp_model_clone(&am, model));
        mp_prompt *ap = make_prompt(model, 0, 0);
        MP_CK_OK(mp_meta_adapt(m, task, ap, am));
        for (size_t j = 0; j < np; j++)
            ck_assert_msg(fabsf(mp__prompt_data(ap)[j] - adapted[j]) <= 1e-5f * (1 + fabsf(adapted[j])),
                          "%d steps, prompt %zu: adapted %.8g, plain tape %.8g", steps, j, mp__prompt_data(ap)[j],
                          adapted[j]);
        for (size_t j = 0; j < nparams; j++)
            ck_assert_msg(fabsf(mp__model_params(am)[j] - adapted[np + j]) <= 1e-5f * (1 + fabsf(adapted[np + j])),
                          "%d steps, parameter %zu: adapted %.8g, plain tape %.8g", steps, j,
                          mp__model_params(am)[j], adapted[np + j]);
        /* The restarts kept the frozen part: the backbone prefix of both sets
         * lies before the restart point, and the tape holds one step. */
        ck_assert_int_gt(m->w[0].frozen.mark.n, 20);
        mp_prompt_destroy(ap);
        mp_model_destroy(am);
        free(g);
        mp_meta_destroy(m);
    }
    free(want);
    free(adapted);
    mp_task_destroy(task);
    mp_prompt_destroy(prompt);
    mp_model_destroy(model);
}
END_TEST

/* The progress callback may read the meta but not change it or run its
 * workers: such calls on the same meta fail with MP_ERR_STATE and the
 * evaluation's result is the one without them; afterwards the meta works. */
typedef struct {
    mp_meta *m;
    mp_sampler *s;
    mp_task *task;
    mp_model *model;
    const char *ckpt;
    int calls, refused, allowed;
} reentry;

static int32_t reenter(uint64_t done, uint64_t total, void *ud)
{
    (void)done, (void)total;
    reentry *r = ud;
    r->calls++;
    double mean, ci;
    size_t n;
    float g[4096];
    MP_CK_OK(mp_meta_gradient_size(r->m, &n));
    ck_assert_uint_le(n, 4096);
    memset(g, 0, n * sizeof(float));
    mp_status st[9] = {mp_meta_step(r->m, &r->task, 1, NULL, 0),
                       mp_meta_compute_gradients(r->m, &r->task, 1, NULL, 0),
                       mp_meta_set_gradients(r->m, g, n),
                       mp_meta_apply_gradients(r->m),
                       mp_meta_evaluate(r->m, r->s, 0, 4, &mean, &ci),
                       mp_meta_set_eval_steps(r->m, 7),
                       mp_checkpoint_load(r->ckpt, r->model, NULL, r->m),
                       mp_meta_set_int(r->m, MP_CFG_META_INNER_STEPS, 3),
                       mp_meta_set_float(r->m, MP_CFG_META_OUTER_LR, 0.5)};
    for (int i = 0; i < 9; i++) {
        ck_assert_msg(st[i] == MP_ERR_STATE, "call %d from the callback returned %d", i, (int)st[i]);
        r->refused++;
    }
    ck_assert_ptr_nonnull(strstr(mp_last_error(), "being evaluated"));
    int64_t steps;
    double lr;
    MP_CK_OK(mp_meta_step_count(r->m, &steps));
    MP_CK_OK(mp_meta_adapt(r->m, r->task, NULL, NULL));
    MP_CK_OK(mp_meta_get_int(r->m, MP_CFG_META_INNER_STEPS, &steps));
    ck_assert_int_eq(steps, 1);
    MP_CK_OK(mp_meta_get_float(r->m, MP_CFG_META_OUTER_LR, &lr));
    ck_assert(lr == 1.0);
    r->allowed += 4;
    return 0;
}

START_TEST(progress_callback_cannot_change_the_meta)
{
    mp_model *model = make_model(1, 1, 0, 1, 8, MP_ACT_TANH, MP_TASK_REGRESSION, 5);
    meta_opts o = defaults(MP_META_MAML);
    o.threads = 2;
    o.eval_steps = 2;
    mp_meta *m = make_meta(model, NULL, &o);
    mp_sampler *s = sinusoid_sampler(3, 5);
    char path[256];
    ckpt_path(path, sizeof path, "reentry");
    MP_CK_OK(mp_checkpoint_save(path, model, NULL, m));
    reentry r = {m, s, regression_task(1, 5, 5, 9), model, path, 0, 0, 0};
    size_t np = mp__model_param_count(model);
    float *before = malloc(np * sizeof(float));
    memcpy(before, mp__model_params(model), np * sizeof(float));
    double mean0, ci0, mean1, ci1;
    MP_CK_OK(mp_meta_evaluate(m, s, 0, 64, &mean0, &ci0));
    MP_CK_OK(mp_meta_set_progress(m, reenter, &r));
    MP_CK_OK(mp_meta_evaluate(m, s, 0, 64, &mean1, &ci1));
    ck_assert_int_ge(r.calls, 2);
    ck_assert(mean1 == mean0 && ci1 == ci0);
    ck_assert_int_eq(memcmp(before, mp__model_params(model), np * sizeof(float)), 0);
    /* Also from mp_meta_evaluate_tasks; and the meta works afterwards. */
    r.calls = 0;
    MP_CK_OK(mp_meta_evaluate_tasks(m, &r.task, 1, &mean1, &ci1));
    ck_assert_int_eq(r.calls, 1);
    MP_CK_OK(mp_meta_set_progress(m, NULL, NULL));
    MP_CK_OK(mp_meta_step(m, &r.task, 1, NULL, 0));
    MP_CK_OK(mp_meta_set_eval_steps(m, 3));
    remove(path);
    free(before);
    mp_task_destroy(r.task);
    mp_sampler_destroy(s);
    mp_meta_destroy(m);
    mp_model_destroy(model);
}
END_TEST

/* Episode indices do not wrap around 2^64. */
START_TEST(episode_indices_do_not_wrap)
{
    mp_model *model = make_model(1, 1, 0, 1, 8, MP_ACT_TANH, MP_TASK_REGRESSION, 5);
    meta_opts o = defaults(MP_META_MAML);
    mp_meta *m = make_meta(model, NULL, &o);
    mp_sampler *s = sinusoid_sampler(3, 5);
    double mean = 42, ci = 42;
    MP_CK_STATUS(mp_meta_evaluate(m, s, UINT64_MAX - 2, 10, &mean, &ci), MP_ERR_RANGE);
    ck_assert(mean == 42 && ci == 42);
    MP_CK_ERROR_MENTIONS("first_episode");
    MP_CK_OK(mp_meta_evaluate(m, s, UINT64_MAX - 2, 3, &mean, &ci)); /* the last three episodes */
    MP_CK_OK(mp_sampler_set_position(s, UINT64_MAX));
    mp_task *t = (mp_task *)(uintptr_t)1;
    MP_CK_STATUS(mp_sampler_next(s, &t), MP_ERR_RANGE);
    ck_assert(t == (mp_task *)(uintptr_t)1);
    uint64_t pos;
    MP_CK_OK(mp_sampler_get_position(s, &pos));
    ck_assert(pos == UINT64_MAX);
    MP_CK_OK(mp_sampler_set_position(s, UINT64_MAX - 1));
    MP_CK_OK(mp_sampler_next(s, &t));
    mp_task_destroy(t);
    mp_sampler_destroy(s);
    mp_meta_destroy(m);
    mp_model_destroy(model);
}
END_TEST

Suite *mp_test_meta_suite(void)
{
    Suite *s = suite_create("meta");
    TCase *flat = tcase_create("flat");
    tcase_add_test(flat, sgd_momentum_by_hand);
    tcase_add_test(flat, adam_bias_correction_by_hand);
    tcase_add_test(flat, adamw_decay_is_decoupled);
    tcase_add_test(flat, clip_and_ci_by_hand);
    tcase_add_test(flat, pool_runs_every_item_once);
    tcase_add_test(flat, keys_have_names_defaults_and_ranges);
    suite_add_tcase(s, flat);
    TCase *alg = tcase_create("algorithms");
    tcase_set_timeout(alg, 60);
    tcase_add_test(alg, linear_maml_fomaml_reptile_by_hand);
    tcase_add_test(alg, linear_metasgd_by_hand);
    tcase_add_test(alg, linear_adapt_by_hand);
    tcase_add_test(alg, maml_matches_finite_differences);
    tcase_add_test(alg, metasgd_matches_finite_differences);
    tcase_add_test(alg, maml_transformers_match_finite_differences);
    tcase_add_test(alg, forward_cache_is_emptied_at_every_tape_reset);
    tcase_add_test(alg, batch_of_copies_equals_one_task);
    tcase_add_test(alg, threads_give_bit_identical_steps);
    tcase_add_test(alg, non_finite_loss_skips_the_update);
    tcase_add_test(alg, non_finite_gradient_skips_the_update);
    tcase_add_test(alg, non_finite_update_changes_nothing);
    tcase_add_test(alg, compute_set_apply_equals_step_and_clips);
    tcase_add_test(alg, optimizers_through_the_handle);
    tcase_add_test(alg, clipping_through_the_handle);
    tcase_add_test(alg, classifier_prompt_training_reports_accuracy);
    tcase_add_test(alg, evaluate_is_thread_independent_and_flat);
    tcase_add_test(alg, maml_learns_sinusoids);
    tcase_add_test(alg, checkpoint_resume_is_bit_identical);
    tcase_add_test(alg, checkpoint_switches_between_maml_fomaml_reptile);
    tcase_add_test(alg, successful_checkpoint_calls_leave_the_last_error_alone);
    tcase_add_test(alg, checkpoint_stores_the_eval_steps_setting);
    tcase_add_test(alg, checkpoint_load_drops_a_pending_gradient);
    tcase_add_test(alg, settings_change_between_steps_like_a_reload);
    tcase_add_test(alg, settings_read_back_and_refuse);
    tcase_add_test(alg, create_leaves_no_allocation_changing_later);
    tcase_add_test(alg, checkpoint_refuses_other_metas);
    tcase_add_test(alg, checkpoint_refuses_unsound_meta_state);
    tcase_add_test(alg, checkpoint_refuses_handles_of_another_meta);
    tcase_add_test(alg, checkpoint_sampler_mismatch_changes_nothing);
    tcase_add_test(alg, openblas_oversubscription_warns);
    tcase_add_test(alg, create_rejects_bad_inputs);
    tcase_add_test(alg, calls_reject_bad_inputs);
    tcase_add_test(alg, create_survives_allocation_failures);
    tcase_add_test(alg, step_and_evaluate_survive_allocation_failures);
    tcase_add_test(alg, no_allocation_after_warm_up);
    tcase_add_test(alg, progress_callback_cannot_change_the_meta);
    tcase_add_test(alg, episode_indices_do_not_wrap);
    suite_add_tcase(s, alg);
    TCase *cc = tcase_create("conv_cache");
    tcase_set_timeout(cc, 60);
    tcase_add_test(cc, conv_head_maml_matches_finite_differences);
    tcase_add_test(cc, conv_head_maml_records_the_backbone_once_per_task);
    tcase_add_test(cc, first_order_restarts_equal_a_plain_tape);
    suite_add_tcase(s, cc);
    return s;
}
