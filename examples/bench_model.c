/* Model benchmark (make bench): forward and forward+backward (gradients of
 * every parameter and the prompt) of the three model kinds at their
 * reference shapes, against the same work in PyTorch
 * (tools/bench/bench_model_torch.py) in the same run. One reused tape, as
 * a training loop uses it. Prints `bench <name> <value> <unit>` lines.
 * Not a test. */
#include <metaprompt.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef MP_SOURCE_DIR
#define MP_SOURCE_DIR "."
#endif
#define MAX_TENSORS 64

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
    const char *name;
    int64_t kv[24];
    int n;
} bench_case;

static const bench_case CASES[] = {
    {"mlp_sinusoid", {0}, 20},
    {"conv4_28x28", {MP_CFG_MODEL_KIND, MP_MODEL_CONV, MP_CFG_MODEL_OUTPUT_DIM, 5, MP_CFG_MODEL_PROMPT_LEN, 1, 0}, 80},
    {"vit_d64_28x28", {MP_CFG_MODEL_KIND, MP_MODEL_TRANSFORMER, MP_CFG_MODEL_OUTPUT_DIM, 5, MP_CFG_MODEL_PROMPT_LEN, 8, 0}, 80},
};

/* A model with a copy of its parameters, inputs, labels and targets. */
typedef struct {
    mp_model *m;
    mp_tape *t;
    float *params, *prompt, *x, *targets;
    int32_t *labels;
    size_t np;
    int32_t P, d, in, out, n, classifier;
} state;

static int setup(const bench_case *c, state *s)
{
    mp_config *cfg;
    if (mp_config_create(&cfg) != MP_OK) return -1;
    for (const int64_t *kv = c->kv; kv[0]; kv += 2) mp_config_set_int(cfg, (int32_t)kv[0], kv[1]);
    mp_status st = mp_model_create(&s->m, cfg);
    mp_config_destroy(cfg);
    if (st != MP_OK || mp_tape_create(&s->t) != MP_OK) return -1;
    int64_t in, out, task;
    mp_model_get_int(s->m, MP_CFG_MODEL_INPUT_DIM, &in);
    mp_model_get_int(s->m, MP_CFG_MODEL_OUTPUT_DIM, &out);
    mp_model_get_int(s->m, MP_CFG_MODEL_TASK, &task);
    mp_model_prompt_shape(s->m, &s->P, &s->d);
    mp_model_num_params(s->m, &s->np);
    s->in = (int32_t)in;
    s->out = (int32_t)out;
    s->n = c->n;
    s->classifier = task == MP_TASK_CLASSIFICATION;
    s->params = malloc(s->np * sizeof(float));
    s->prompt = calloc((size_t)s->P * s->d + 1, sizeof(float));
    s->x = malloc((size_t)s->n * s->in * sizeof(float));
    s->targets = malloc((size_t)s->n * s->out * sizeof(float));
    s->labels = malloc((size_t)s->n * sizeof(int32_t));
    mp_model_get_params(s->m, s->params, s->np);
    for (int i = 0; i < s->n * s->in; i++) s->x[i] = (float)((i * 7919) % 1000) / 1000.0f;
    for (int i = 0; i < s->n * s->out; i++) s->targets[i] = (float)(i % 3) - 1.0f;
    for (int i = 0; i < s->n; i++) s->labels[i] = i % s->out;
    return 0;
}

static void teardown(state *s)
{
    mp_tape_destroy(s->t);
    mp_model_destroy(s->m);
    free(s->params);
    free(s->prompt);
    free(s->x);
    free(s->targets);
    free(s->labels);
}

/* The public API has no "record the model on my tape" call; the bench
 * links the static library and uses the internal interface the
 * meta-optimizer uses (src/model/model_internal.h). */
#include "model/model_internal.h"

static double fwd_bwd_ms(state *s, int backward)
{
    double best = 1e30;
    for (int rep = 0; rep < 6; rep++) {
        double t0 = now();
        mp_var pv[MAX_TENSORS], prv = MP_VAR_NONE, xv, o, loss;
        int32_t flags = MP_LEAF_BORROW | (backward ? MP_LEAF_REQUIRES_GRAD : 0);
        mp_tape_reset(s->t);
        for (int32_t i = 0; i < mp__model_num_tensors(s->m); i++) {
            const mp__param_info *ti = mp__model_tensor(s->m, i);
            mp_tape_leaf(s->t, ti->rows, ti->cols, s->params + ti->offset, (size_t)ti->rows * ti->cols, flags, &pv[i]);
        }
        if (s->P > 0) mp_tape_leaf(s->t, s->P, s->d, s->prompt, (size_t)s->P * s->d, flags, &prv);
        mp_tape_leaf(s->t, s->n, s->in, s->x, (size_t)s->n * s->in, MP_LEAF_BORROW, &xv);
        if (mp__model_forward(s->m, s->t, pv, prv, xv, NULL, &o) != MP_OK) return -1;
        if (backward) {
            if (mp__model_loss(s->m, s->t, o, s->labels, s->targets, (size_t)s->n, &loss) != MP_OK) return -1;
            if (mp_tape_backward(s->t, loss, 0) != MP_OK) return -1;
        }
        double t = now() - t0;
        if (rep > 0 && t < best) best = t; /* rep 0 warms the arena up */
    }
    return best * 1e3;
}

static int torch_n;
static char torch_name[16][64];
static double torch_val[16];
static void run_torch(void)
{
    FILE *p = popen("/usr/bin/python3 " MP_SOURCE_DIR "/tools/bench/bench_model_torch.py 2>/dev/null", "r");
    if (!p) return;
    char line[256];
    while (torch_n < 16 && fgets(line, sizeof line, p))
        if (sscanf(line, "torch %63s %lf", torch_name[torch_n], &torch_val[torch_n]) == 2) torch_n++;
    pclose(p);
}

static void report(const char *name, double v, const char *unit)
{
    if (v < 0) {
        printf("bench_model: %s failed: %s\n", name, mp_last_error());
        return;
    }
    printf("bench %s %.3f %s\n", name, v, unit);
    for (int i = 0; i < torch_n; i++)
        if (strcmp(torch_name[i], name) == 0) {
            printf("bench %s_torch %.3f %s\n", name, torch_val[i], unit);
            printf("bench %s_speedup_vs_torch %.2f x\n", name, torch_val[i] / v);
        }
}

int main(void)
{
    printf("openblas core: %s\n", mp_blas_corename());
    run_torch();
    for (size_t c = 0; c < sizeof CASES / sizeof CASES[0]; c++) {
        state s;
        memset(&s, 0, sizeof s);
        char name[96];
        if (setup(&CASES[c], &s) != 0) {
            printf("bench_model: %s setup failed: %s\n", CASES[c].name, mp_last_error());
            continue;
        }
        snprintf(name, sizeof name, "%s_forward_ms", CASES[c].name);
        report(name, fwd_bwd_ms(&s, 0), "ms");
        snprintf(name, sizeof name, "%s_fwd_bwd_ms", CASES[c].name);
        report(name, fwd_bwd_ms(&s, 1), "ms");
        teardown(&s);
    }
    return 0;
}
