/* Data benchmark (make bench): IDX load times and episode throughput, with
 * the same work done by PyTorch (tools/bench/bench_data_torch.py) in the same
 * run. Prints `bench <name> <value> <unit>` lines. Not a test. */
#include <metaprompt.h>

#include <stdio.h>
#include <string.h>
#include <time.h>

#define FM "/usr/share/datasets/fashion-mnist/"
#ifndef MP_SOURCE_DIR
#define MP_SOURCE_DIR "."
#endif
#define OMNI MP_SOURCE_DIR "/../shared/data/omniglot"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Best of three loads, in ms; the last dataset is kept in *out. */
static double load_ms(const char *im, const char *lb, mp_dataset **out)
{
    double best = 1e30;
    for (int r = 0; r < 3; r++) {
        mp_dataset *ds;
        double t = now();
        if (mp_dataset_load_idx(&ds, im, lb, NULL) != MP_OK) {
            fprintf(stderr, "bench_data: %s\n", mp_last_error());
            return -1;
        }
        t = now() - t;
        if (t < best) best = t;
        if (r < 2) mp_dataset_destroy(ds); else *out = ds;
    }
    return best * 1e3;
}

/* Episodes per second through mp_sampler_episode_into (no allocation). */
static double episodes_per_s(const mp_dataset *ds, int ways, int shots, int queries, int rot, int count)
{
    mp_config *cfg;
    mp_sampler *s;
    mp_task *t;
    mp_config_create(&cfg);
    mp_config_set_int(cfg, MP_CFG_DATA_WAYS, ways);
    mp_config_set_int(cfg, MP_CFG_DATA_SHOTS, shots);
    mp_config_set_int(cfg, MP_CFG_DATA_QUERIES, queries);
    mp_config_set_int(cfg, MP_CFG_DATA_ROTATIONS, rot);
    if (mp_sampler_create(&s, ds, cfg) != MP_OK || mp_sampler_episode(s, 0, &t) != MP_OK) {
        fprintf(stderr, "bench_data: %s\n", mp_last_error());
        return -1;
    }
    mp_config_destroy(cfg);
    double t0 = now();
    for (int i = 0; i < count; i++) mp_sampler_episode_into(s, (uint64_t)i, t);
    double rate = count / (now() - t0);
    mp_task_destroy(t);
    mp_sampler_destroy(s);
    return rate;
}

static double sinusoids_per_s(int count)
{
    mp_config *cfg;
    mp_sampler *s;
    mp_task *t;
    mp_config_create(&cfg);
    mp_config_set_int(cfg, MP_CFG_DATA_SHOTS, 10);
    mp_config_set_int(cfg, MP_CFG_DATA_QUERIES, 10);
    mp_sampler_create_sinusoid(&s, cfg);
    mp_config_destroy(cfg);
    mp_sampler_episode(s, 0, &t);
    double t0 = now();
    for (int i = 0; i < count; i++) mp_sampler_episode_into(s, (uint64_t)i, t);
    double rate = count / (now() - t0);
    mp_task_destroy(t);
    mp_sampler_destroy(s);
    return rate;
}

/* Reads `torch <name> <value>` lines of the PyTorch script. */
static int torch_n;
static char torch_name[16][64];
static double torch_val[16];
static void run_torch(void)
{
    FILE *p = popen("/usr/bin/python3 " MP_SOURCE_DIR "/tools/bench/bench_data_torch.py " OMNI " 2>/dev/null", "r");
    if (!p) return;
    char line[256];
    while (torch_n < 16 && fgets(line, sizeof line, p))
        if (sscanf(line, "torch %63s %lf", torch_name[torch_n], &torch_val[torch_n]) == 2) torch_n++;
    pclose(p);
}

static void report(const char *name, double v, const char *unit, int higher_better)
{
    if (v < 0) return;
    printf("bench %s %.1f %s\n", name, v, unit);
    for (int i = 0; i < torch_n; i++)
        if (strcmp(torch_name[i], name) == 0) {
            printf("bench %s_torch %.1f %s\n", name, torch_val[i], unit);
            printf("bench %s_speedup_vs_torch %.2f x\n", name, higher_better ? v / torch_val[i] : torch_val[i] / v);
        }
}

int main(void)
{
    printf("openblas core: %s\n", mp_blas_corename());
    run_torch();
    mp_dataset *fm = NULL, *om = NULL;
    report("load_fashion_mnist_train_ms", load_ms(FM "train-images-idx3-ubyte.gz", FM "train-labels-idx1-ubyte.gz", &fm),
           "ms", 0);
    if (fm) report("episodes_fmnist_5w1s15q_per_s", episodes_per_s(fm, 5, 1, 15, 0, 20000), "episodes/s", 1);
    report("load_omniglot_background_ms",
           load_ms(OMNI "/background-images-idx3-ubyte.gz", OMNI "/background-labels-idx1-int.gz", &om), "ms", 0);
    if (om) {
        report("episodes_omniglot_20w5s15q_per_s", episodes_per_s(om, 20, 5, 15, 0, 5000), "episodes/s", 1);
        report("episodes_omniglot_20w5s15q_rot_per_s", episodes_per_s(om, 20, 5, 15, 1, 5000), "episodes/s", 1);
    }
    report("sinusoid_tasks_k10q10_per_s", sinusoids_per_s(200000), "tasks/s", 1);
    mp_dataset_destroy(fm);
    mp_dataset_destroy(om);
    return 0;
}
