/* Meta-learning benchmarks (not tests), run by `make bench`
 * (BENCH_ARGS="--iters N" for longer quality runs):
 *  1. second-order MAML on sinusoids, ms per meta-step, against PyTorch
 *     (tools/bench/torch_meta.py run from here, in the same run);
 *  2./3. the prompted transformer step and peak RSS (if that model exists);
 *  4. learning quality on sinusoids: MSE after 1, 5, 10 inner steps for
 *     K = 5, 10, 20 over 600 test tasks with 95% CI, for MAML, FOMAML,
 *     Reptile and Meta-SGD.
 * Usage: bench_meta [--iters N] [--init-scale S] (meta-iterations per quality run, default
 * 10000, about 3 minutes; the MAML paper trains 70000) [--skip-quality] [--skip-speed]. Each figure is printed once
 * as `bench <name> <value> <unit>`. */
#define _DEFAULT_SOURCE /* wait4 */
#include <metaprompt.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <time.h>

#ifndef MP_SOURCE_DIR /* set by `make bench`; `make examples` runs from the source tree */
#define MP_SOURCE_DIR "."
#endif

#define CHECK(call)                                                                      \
    do {                                                                                 \
        mp_status st_ = (call);                                                          \
        if (st_ != MP_OK) {                                                              \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, mp_last_error()); \
            exit(1);                                                                     \
        }                                                                                \
    } while (0)

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* The sinusoid MLP of the MAML paper: the model module's defaults. */
static mp_model *sinusoid_model(uint64_t seed)
{
    mp_config *c;
    mp_model *m;
    CHECK(mp_config_create(&c));
    CHECK(mp_config_set_int(c, MP_CFG_SEED, (int64_t)seed));
    CHECK(mp_model_create(&m, c));
    mp_config_destroy(c);
    return m;
}

typedef struct {
    int algo, steps, opt, threads;
    double inner_lr, outer_lr;
} meta_cfg;

static mp_meta *make_meta(mp_model *model, const meta_cfg *o)
{
    mp_config *c;
    mp_meta *m;
    CHECK(mp_config_create(&c));
    CHECK(mp_config_set_int(c, MP_CFG_META_ALGORITHM, o->algo));
    CHECK(mp_config_set_int(c, MP_CFG_META_SCOPE, MP_SCOPE_ALL));
    CHECK(mp_config_set_int(c, MP_CFG_META_INNER_STEPS, o->steps));
    CHECK(mp_config_set_int(c, MP_CFG_META_OPTIMIZER, o->opt));
    CHECK(mp_config_set_int(c, MP_CFG_THREADS, o->threads));
    CHECK(mp_config_set_float(c, MP_CFG_META_INNER_LR, o->inner_lr));
    CHECK(mp_config_set_float(c, MP_CFG_META_OUTER_LR, o->outer_lr));
    CHECK(mp_meta_create(&m, model, NULL, c));
    mp_config_destroy(c);
    return m;
}

/* Runs the PyTorch side and returns the value of `torch_<key>`. */
static int torch_figures(const char *args, const char *key1, double *v1, const char *key2, double *v2)
{
    char cmd[512], line[256];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tools/bench/torch_meta.py %s", MP_SOURCE_DIR, args);
    FILE *p = popen(cmd, "r");
    if (!p) return 0;
    int got = 0;
    while (fgets(line, sizeof line, p)) {
        char name[128];
        double v;
        if (sscanf(line, "%127s %lf", name, &v) != 2) continue;
        if (strcmp(name, key1) == 0) *v1 = v, got++;
        if (key2 && strcmp(name, key2) == 0) *v2 = v, got++;
    }
    return pclose(p) == 0 && got > 0;
}

/* ---- 1. sinusoid MAML speed ------------------------------------------------------- */
static double sinusoid_step_ms(int threads)
{
    mp_model *model = sinusoid_model(0);
    meta_cfg o = {MP_META_MAML, 1, MP_OPT_ADAM, threads, 0.01, 1e-3};
    mp_meta *m = make_meta(model, &o);
    mp_task *tasks[25];
    for (int i = 0; i < 25; i++) CHECK(mp_task_sinusoid(&tasks[i], 1, (uint64_t)i, 10, 10));
    for (int i = 0; i < 5; i++) CHECK(mp_meta_step(m, tasks, 25, NULL, 0));
    const int n = 300;
    double t0 = now_ms();
    for (int i = 0; i < n; i++) CHECK(mp_meta_step(m, tasks, 25, NULL, 0));
    double ms = (now_ms() - t0) / n;
    for (int i = 0; i < 25; i++) mp_task_destroy(tasks[i]);
    mp_meta_destroy(m);
    mp_model_destroy(model);
    return ms;
}

static void bench_sinusoid_speed(void)
{
    double ours = sinusoid_step_ms(1), ours2 = sinusoid_step_ms(2);
    printf("bench sinusoid_maml_step_ms %.4f ms\n", ours);
    printf("bench sinusoid_maml_step_ms_2threads %.4f ms\n", ours2);
    double torch_ms = 0, rss = 0;
    if (torch_figures("sinusoid 50", "torch_sinusoid_ms", &torch_ms, "torch_peak_rss_kb", &rss)) {
        printf("bench sinusoid_maml_step_ms_torch %.4f ms\n", torch_ms);
        printf("bench sinusoid_maml_speedup_vs_torch %.2f x\n", torch_ms / ours);
        printf("bench sinusoid_maml_speedup_vs_torch_2threads %.2f x\n", torch_ms / ours2);
    } else {
        printf("torch: not available (/usr/bin/python3 with torch needed)\n");
    }
}

/* ---- 2./3. prompted transformer -------------------------------------------------------- */
/* The same work as torch_meta.py transformer: 4-way 5-shot 15-query tasks of
 * random 28x28 images, meta-batch 4, 5 inner steps on prompt + head, second
 * order, backbone frozen. Returns ms per step; runs in a child process so
 * that its peak RSS is its own. */
static mp_model *transformer_model(void)
{
    mp_config *c;
    mp_model *model = NULL;
    CHECK(mp_config_create(&c));
    CHECK(mp_config_set_int(c, MP_CFG_MODEL_KIND, MP_MODEL_TRANSFORMER));
    CHECK(mp_config_set_int(c, MP_CFG_MODEL_OUTPUT_DIM, 4));
    CHECK(mp_config_set_int(c, MP_CFG_MODEL_PROMPT_LEN, 8));
    mp_status st = mp_model_create(&model, c);
    mp_config_destroy(c);
    return st == MP_OK ? model : NULL;
}

static double transformer_steps(int threads)
{
    mp_model *model = transformer_model();
    mp_prompt *prompt;
    CHECK(mp_prompt_create(&prompt, model));
    CHECK(mp_prompt_init(prompt, MP_PROMPT_INIT_NORMAL, 0.02, 1));
    mp_config *c;
    mp_meta *m;
    CHECK(mp_config_create(&c));
    CHECK(mp_config_set_int(c, MP_CFG_META_SCOPE, MP_SCOPE_PROMPT_HEAD));
    CHECK(mp_config_set_int(c, MP_CFG_META_INNER_STEPS, 5));
    CHECK(mp_config_set_float(c, MP_CFG_META_INNER_LR, 0.1));
    CHECK(mp_config_set_int(c, MP_CFG_THREADS, threads));
    CHECK(mp_meta_create(&m, model, prompt, c));
    mp_config_destroy(c);
    static float sx[20 * 784], qx[60 * 784];
    int32_t sl[20], ql[60];
    unsigned r = 1;
    mp_task *tasks[4];
    for (int t = 0; t < 4; t++) {
        for (int i = 0; i < 20 * 784; i++) sx[i] = (float)((r = r * 1103515245u + 12345u) >> 8) / 16777216.0f;
        for (int i = 0; i < 60 * 784; i++) qx[i] = (float)((r = r * 1103515245u + 12345u) >> 8) / 16777216.0f;
        for (int i = 0; i < 20; i++) sl[i] = i / 5;
        for (int i = 0; i < 60; i++) ql[i] = i / 15;
        CHECK(mp_task_create_classification(&tasks[t], 784, 4, sx, sl, 20, qx, ql, 60));
    }
    for (int i = 0; i < 2; i++) CHECK(mp_meta_step(m, tasks, 4, NULL, 0));
    const int n = 10;
    double t0 = now_ms();
    for (int i = 0; i < n; i++) CHECK(mp_meta_step(m, tasks, 4, NULL, 0));
    double ms = (now_ms() - t0) / n;
    for (int t = 0; t < 4; t++) mp_task_destroy(tasks[t]);
    mp_meta_destroy(m);
    mp_prompt_destroy(prompt);
    mp_model_destroy(model);
    return ms;
}

static void bench_transformer(void)
{
    mp_model *probe = transformer_model();
    if (!probe) {
        printf("transformer: not available in this build; benchmarks 2 and 3 skipped\n");
        return;
    }
    mp_model_destroy(probe);
    double ms[3] = {0, 0, 0};
    long rss = 0, rss1 = 0;
    for (int threads = 1; threads <= 2; threads++) {
        int fd[2];
        if (pipe(fd) != 0) exit(1);
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            close(fd[0]);
            double v = transformer_steps(threads);
            if (write(fd[1], &v, sizeof v) != (ssize_t)sizeof v) _exit(1);
            _exit(0);
        }
        close(fd[1]);
        if (read(fd[0], &ms[threads], sizeof ms[threads]) != (ssize_t)sizeof ms[threads]) exit(1);
        close(fd[0]);
        int status;
        struct rusage ru;
        wait4(pid, &status, 0, &ru);
        if (threads == 1) rss1 = ru.ru_maxrss;
        if (threads == 2) rss = ru.ru_maxrss;
    }
    printf("bench transformer_maml_step_ms_1thread %.2f ms\n", ms[1]);
    printf("bench transformer_maml_step_ms_2threads %.2f ms\n", ms[2]);
    printf("bench transformer_peak_rss_1thread %ld KiB\n", rss1);
    printf("bench transformer_peak_rss_2threads %ld KiB\n", rss);
    double torch_ms = 0, torch_rss = 0;
    if (torch_figures("transformer 5", "torch_transformer_ms", &torch_ms, "torch_peak_rss_kb", &torch_rss)) {
        printf("bench transformer_maml_step_ms_torch %.2f ms\n", torch_ms);
        printf("bench transformer_peak_rss_torch %.0f KiB\n", torch_rss);
        printf("bench transformer_speedup_vs_torch_1thread %.2f x\n", torch_ms / ms[1]);
        printf("bench transformer_speedup_vs_torch_2threads %.2f x\n", torch_ms / ms[2]);
        printf("bench transformer_rss_ratio_torch_over_ours %.2f x\n", torch_rss / (double)rss);
        /* Like for like: PyTorch runs on one thread. */
        printf("bench transformer_rss_ratio_torch_over_ours_1thread %.2f x\n", torch_rss / (double)rss1);
    } else {
        printf("torch: not available (/usr/bin/python3 with torch needed)\n");
    }
}

/* ---- 4. learning quality --------------------------------------------------------------------- */
static const char *algo_name(int a)
{
    static const char *const names[] = {"", "maml", "fomaml", "reptile", "metasgd"};
    return names[a];
}

/* Multiplies every weight by s (biases start at 0). */
static void scale_params(mp_model *model, double s)
{
    size_t n;
    CHECK(mp_model_num_params(model, &n));
    float *p = malloc(n * sizeof(float));
    CHECK(mp_model_get_params(model, p, n));
    for (size_t i = 0; i < n; i++) p[i] *= (float)s;
    CHECK(mp_model_set_params(model, p, n));
    free(p);
}

static double g_init_scale = 0.4;

static void quality_run(int algo, int k, int iters)
{
    mp_model *model = sinusoid_model(1);
    scale_params(model, g_init_scale);
    /* MAML paper settings (one inner step, a = 0.01, batch 25, Adam 1e-3);
     * Reptile takes 5 inner steps and plain SGD with outer LR 0.5 on the
     * mean of (theta - theta'): theta <- theta + 0.5 mean(theta' - theta). */
    meta_cfg o = {algo, 1, MP_OPT_ADAM, 2, 0.01, 1e-3};
    if (algo == MP_META_REPTILE) {
        o.steps = 5;
        o.opt = MP_OPT_SGD;
        o.outer_lr = 0.5;
        o.inner_lr = 0.01;
    }
    mp_meta *m = make_meta(model, &o);
    mp_config *tc;
    mp_sampler *train;
    CHECK(mp_config_create(&tc));
    CHECK(mp_config_set_int(tc, MP_CFG_SEED, 1));
    CHECK(mp_config_set_int(tc, MP_CFG_DATA_SHOTS, k));
    CHECK(mp_config_set_int(tc, MP_CFG_DATA_QUERIES, k));
    CHECK(mp_sampler_create_sinusoid(&train, tc));
    mp_task *tasks[25];
    for (int i = 0; i < 25; i++) CHECK(mp_sampler_episode(train, (uint64_t)i, &tasks[i]));
    double t0 = now_ms();
    int skipped = 0;
    for (int it = 0; it < iters; it++) {
        for (int i = 0; i < 25; i++)
            CHECK(mp_sampler_episode_into(train, (uint64_t)it * 25 + (uint64_t)i, tasks[i]));
        mp_status st = mp_meta_step(m, tasks, 25, NULL, 0);
        if (st == MP_ERR_NOT_FINITE) /* the step was skipped, state unchanged */
            skipped++;
        else
            CHECK(st);
    }
    double train_s = (now_ms() - t0) / 1e3;
    /* Test tasks: another seed, K support and 100 query points. */
    mp_config *c;
    mp_sampler *s;
    CHECK(mp_config_create(&c));
    CHECK(mp_config_set_int(c, MP_CFG_SEED, 777));
    CHECK(mp_config_set_int(c, MP_CFG_DATA_SHOTS, k));
    CHECK(mp_config_set_int(c, MP_CFG_DATA_QUERIES, 100));
    CHECK(mp_sampler_create_sinusoid(&s, c));
    const int steps[3] = {1, 5, 10};
    for (int j = 0; j < 3; j++) {
        double mean, ci;
        CHECK(mp_meta_set_eval_steps(m, steps[j]));
        mp_status st = mp_meta_evaluate(m, s, 0, 600, &mean, &ci);
        if (st == MP_ERR_NOT_FINITE) { /* adaptation diverged on some test task */
            mean = ci = INFINITY;
            printf("  (%s K=%d, %d steps: %s)\n", algo_name(algo), k, steps[j], mp_meta_error(m));
        } else {
            CHECK(st);
        }
        printf("bench sinusoid_mse_%s_k%d_steps%d %.4f mse\n", algo_name(algo), k, steps[j], mean);
        printf("bench sinusoid_mse_%s_k%d_steps%d_ci95 %.4f mse\n", algo_name(algo), k, steps[j], ci);
    }
    printf("  (%s K=%d: %d meta-iterations in %.1f s, %d skipped as non-finite)\n", algo_name(algo), k,
           iters, train_s, skipped);
    mp_sampler_destroy(s);
    mp_sampler_destroy(train);
    mp_config_destroy(c);
    mp_config_destroy(tc);
    for (int i = 0; i < 25; i++) mp_task_destroy(tasks[i]);
    mp_meta_destroy(m);
    mp_model_destroy(model);
}

static void bench_quality(int iters)
{
    printf("quality: sinusoid regression, 1-40-40-1 ReLU, meta-batch 25, %d meta-iterations, "
           "600 test tasks (K support + 100 query points), mean MSE +- 1.96 s/sqrt(n)\n", iters);
    printf("quality: initial weights = the model's He initialisation x %.2f (0.4 gives about "
           "PyTorch's nn.Linear default scale; at 1.0 the first inner steps diverge on "
           "amplitude-5 tasks, in PyTorch too)\n", g_init_scale);
    printf("published: MAML (Finn et al. 2017) reports the sinusoid results as plots only (Fig. 2, 3);"
           " Meta-SGD (Li et al. 2017, arXiv:1707.09835, Table 1) reports 5/10/20-shot MSEs after one step, but"
           " its table could not be read from a primary source where this was built, so no figure is quoted"
           " (see docs/META.md)\n");
    const int ks[3] = {5, 10, 20};
    for (int a = MP_META_MAML; a <= MP_META_METASGD; a++)
        for (int j = 0; j < 3; j++) quality_run(a, ks[j], iters);
}

int main(int argc, char **argv)
{
    int iters = 10000, quality = 1, speed = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--iters") == 0 && i + 1 < argc)
            iters = atoi(argv[++i]);
        else if (strcmp(argv[i], "--init-scale") == 0 && i + 1 < argc)
            g_init_scale = atof(argv[++i]);
        else if (strcmp(argv[i], "--skip-quality") == 0)
            quality = 0;
        else if (strcmp(argv[i], "--skip-speed") == 0)
            speed = 0;
        else {
            int help = strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0;
            if (!help) fprintf(stderr, "bench_meta: unknown or incomplete argument '%s'\n", argv[i]);
            fprintf(help ? stdout : stderr,
                    "usage: bench_meta [--iters N] [--init-scale S] [--skip-quality] [--skip-speed]\n");
            return help ? 0 : 2;
        }
    }
    printf("openblas core: %s\n", mp_blas_corename());
    printf("openblas threads: %d (meta threads: 1 and 2 for speed, 2 for quality; PyTorch 1 thread)\n", (int)mp_blas_num_threads());
    if (speed) {
        bench_sinusoid_speed();
        bench_transformer();
    }
    if (quality) bench_quality(iters);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("bench bench_meta_peak_rss %ld KiB\n", (long)ru.ru_maxrss);
    return 0;
}
