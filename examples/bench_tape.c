/* Tape benchmark (make bench): recording overhead per op on a long chain of
 * tiny ops, a matmul-dominated graph's forward+backward time against the raw
 * sgemm calls it makes, and a second-order MAML step on a 1-40-40-1 MLP; the
 * same work in PyTorch (tools/bench/bench_tape_torch.py) in the same run.
 * Prints `bench <name> <value> <unit>` lines. Not a test. */
#include <metaprompt.h>

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef MP_SOURCE_DIR
#define MP_SOURCE_DIR "."
#endif

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#define CHECK(call)                                                                     \
    do {                                                                                \
        if ((call) != MP_OK) {                                                          \
            fprintf(stderr, "bench_tape: %s failed: %s\n", #call, mp_last_error());    \
            exit(1);                                                                    \
        }                                                                               \
    } while (0)

/* ---- recording overhead: 10,000 tiny ops per cycle, best of several cycles ---- */
static double record_ns_per_op(mp_tape *t, int with_backward)
{
    const float x0[4] = {0.1f, -0.2f, 0.3f, 0.4f};
    const int ops = 10000;
    double best = 1e30;
    for (int rep = 0; rep < 30; rep++) {
        CHECK(mp_tape_reset(t));
        double t0 = now();
        mp_var x, y;
        CHECK(mp_tape_leaf(t, 1, 4, x0, 4, MP_LEAF_REQUIRES_GRAD, &x));
        y = x;
        for (int i = 0; i < ops / 4; i++) {
            CHECK(mp_mul(t, y, x, &y));
            CHECK(mp_add(t, y, x, &y));
            CHECK(mp_tanh(t, y, &y));
            CHECK(mp_scale(t, y, 0.5f, &y));
        }
        CHECK(mp_sum(t, y, MP_REDUCE_ALL, &y));
        if (with_backward) CHECK(mp_tape_backward(t, y, 0));
        double dt = now() - t0;
        if (dt < best) best = dt;
    }
    return best / ops * 1e9;
}

/* ---- matmul-dominated graph: relu(X W1) W2 -> sum, forward + backward ------------ */
#define MB 256
#define MK 512
static double tape_mlp_ms(mp_tape *t, const float *X, const float *W1, const float *W2, double *raw_ms)
{
    double best = 1e30, best_raw = 1e30;
    static float h[MB * MK], y[MB * MK], dw2[MK * MK], dh[MB * MK], dw1[MK * MK];
    for (int rep = 0; rep < 5; rep++) {
        CHECK(mp_tape_reset(t));
        double t0 = now();
        mp_var x, w1, w2, a, r, o, s, g;
        CHECK(mp_tape_leaf(t, MB, MK, X, MB * MK, MP_LEAF_BORROW, &x));
        CHECK(mp_tape_leaf(t, MK, MK, W1, MK * MK, MP_LEAF_BORROW | MP_LEAF_REQUIRES_GRAD, &w1));
        CHECK(mp_tape_leaf(t, MK, MK, W2, MK * MK, MP_LEAF_BORROW | MP_LEAF_REQUIRES_GRAD, &w2));
        CHECK(mp_matmul(t, x, w1, 0, 0, &a));
        CHECK(mp_relu(t, a, &r));
        CHECK(mp_matmul(t, r, w2, 0, 0, &o));
        CHECK(mp_sum(t, o, MP_REDUCE_ALL, &s));
        CHECK(mp_tape_backward(t, s, 0));
        CHECK(mp_tape_grad(t, w1, &g));
        CHECK(mp_tape_grad(t, w2, &g));
        double dt = now() - t0;
        if (dt < best) best = dt;
        /* The same five sgemm calls, raw. */
        t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, MB, MK, MK, 1, X, MK, W1, MK, 0, h, MK);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, MB, MK, MK, 1, h, MK, W2, MK, 0, y, MK);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, MK, MK, MB, 1, h, MK, y, MK, 0, dw2, MK);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, MB, MK, MK, 1, y, MK, W2, MK, 0, dh, MK);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, MK, MK, MB, 1, X, MK, dh, MK, 0, dw1, MK);
        dt = now() - t0;
        if (dt < best_raw) best_raw = dt;
    }
    *raw_ms = best_raw * 1e3;
    return best * 1e3;
}

/* ---- second-order MAML step on a 1-40-40-1 relu MLP (sinusoid-sized) -------------- */
static void mlp(mp_tape *t, const mp_var *p, mp_var x, mp_var y, mp_var *loss)
{
    mp_var h;
    CHECK(mp_matmul(t, x, p[0], 0, 0, &h));
    CHECK(mp_add(t, h, p[1], &h));
    CHECK(mp_relu(t, h, &h));
    CHECK(mp_matmul(t, h, p[2], 0, 0, &h));
    CHECK(mp_add(t, h, p[3], &h));
    CHECK(mp_relu(t, h, &h));
    CHECK(mp_matmul(t, h, p[4], 0, 0, &h));
    CHECK(mp_add(t, h, p[5], &h));
    CHECK(mp_mse(t, h, y, loss));
}

static double maml_step_us(mp_tape *t, int steps, int pruned)
{
    static const int32_t r[6] = {1, 1, 40, 1, 40, 1}, c[6] = {40, 40, 40, 40, 1, 1};
    static float params[6][1600], xs[10], ys[10], xq[10], yq[10];
    for (int i = 0; i < 6; i++)
        for (int k = 0; k < r[i] * c[i]; k++) params[i][k] = 0.1f * (float)((k * 7 + i) % 13 - 6) / 6.0f;
    for (int k = 0; k < 10; k++) {
        xs[k] = -5.0f + (float)k;
        ys[k] = (float)k * 0.1f;
        xq[k] = -4.5f + (float)k;
        yq[k] = (float)k * 0.05f;
    }
    double best = 1e30;
    for (int rep = 0; rep < 200; rep++) {
        CHECK(mp_tape_reset(t));
        double t0 = now();
        mp_var p[6], q[6], g, x, y, ls, lq;
        for (int i = 0; i < 6; i++)
            CHECK(mp_tape_leaf(t, r[i], c[i], params[i], (size_t)(r[i] * c[i]), MP_LEAF_BORROW | MP_LEAF_REQUIRES_GRAD, &p[i]));
        for (int i = 0; i < 6; i++) q[i] = p[i];
        CHECK(mp_tape_leaf(t, 10, 1, xs, 10, MP_LEAF_BORROW, &x));
        CHECK(mp_tape_leaf(t, 10, 1, ys, 10, MP_LEAF_BORROW, &y));
        for (int s = 0; s < steps; s++) {
            mlp(t, q, x, y, &ls);
            if (pruned) CHECK(mp_tape_backward_wrt(t, ls, 1, q, 6));
            else CHECK(mp_tape_backward(t, ls, 1));
            for (int i = 0; i < 6; i++) {
                CHECK(mp_tape_grad(t, q[i], &g));
                CHECK(mp_scale(t, g, -0.01f, &g));
                CHECK(mp_add(t, q[i], g, &q[i]));
            }
        }
        CHECK(mp_tape_leaf(t, 10, 1, xq, 10, MP_LEAF_BORROW, &x));
        CHECK(mp_tape_leaf(t, 10, 1, yq, 10, MP_LEAF_BORROW, &y));
        mlp(t, q, x, y, &lq);
        if (pruned) CHECK(mp_tape_backward_wrt(t, lq, 0, p, 6));
        else CHECK(mp_tape_backward(t, lq, 0));
        for (int i = 0; i < 6; i++) CHECK(mp_tape_grad(t, p[i], &g));
        double dt = now() - t0;
        if (dt < best) best = dt;
    }
    return best * 1e6;
}

/* ---- PyTorch side ------------------------------------------------------------------ */
static int torch_n;
static char torch_name[16][64];
static double torch_val[16];
static void run_torch(void)
{
    FILE *p = popen("/usr/bin/python3 " MP_SOURCE_DIR "/tools/bench/bench_tape_torch.py 2>/dev/null", "r");
    if (!p) return;
    char line[256];
    while (torch_n < 16 && fgets(line, sizeof line, p))
        if (sscanf(line, "torch %63s %lf", torch_name[torch_n], &torch_val[torch_n]) == 2) torch_n++;
    pclose(p);
}

/* Prints a figure, then PyTorch's and the speed-up when PyTorch reported it. */
static void report(const char *name, double v, const char *unit)
{
    printf("bench %s %.3g %s\n", name, v, unit);
    for (int i = 0; i < torch_n; i++)
        if (strcmp(torch_name[i], name) == 0) {
            printf("bench %s_torch %.3g %s\n", name, torch_val[i], unit);
            printf("bench %s_speedup_vs_torch %.2f x\n", name, torch_val[i] / v);
        }
}

int main(void)
{
    openblas_set_num_threads(1); /* a benchmark process: single-threaded BLAS on both sides */
    printf("openblas core: %s\n", mp_blas_corename());
    run_torch();
    mp_tape *t;
    CHECK(mp_tape_create(&t));
    report("tape_record_ns_per_op", record_ns_per_op(t, 0), "ns");
    report("tape_record_backward_ns_per_op", record_ns_per_op(t, 1), "ns");

    float *X = malloc(sizeof(float) * MB * MK), *W1 = malloc(sizeof(float) * MK * MK), *W2 = malloc(sizeof(float) * MK * MK);
    if (!X || !W1 || !W2) return 1;
    for (int i = 0; i < MB * MK; i++) X[i] = (float)((i * 37) % 101 - 50) / 50.0f;
    for (int i = 0; i < MK * MK; i++) {
        W1[i] = (float)((i * 53) % 97 - 48) / 480.0f;
        W2[i] = (float)((i * 29) % 89 - 44) / 440.0f;
    }
    double raw_ms, tape_ms = tape_mlp_ms(t, X, W1, W2, &raw_ms);
    report("tape_mlp_256x512_fwd_bwd_ms", tape_ms, "ms");
    printf("bench tape_mlp_256x512_raw_sgemm_ms %.3g ms\n", raw_ms);
    printf("bench tape_matmul_fraction_of_sgemm %.3f ratio\n", raw_ms / tape_ms);
    /* Inner steps through mp_tape_backward_wrt (only the adapted parameters),
     * and through the plain backward that differentiates everything. */
    report("tape_maml2_mlp_1_40_40_1_step_us", maml_step_us(t, 1, 1), "us");
    report("tape_maml2_mlp_1_40_40_1_5steps_us", maml_step_us(t, 5, 1), "us");
    printf("bench tape_maml2_mlp_1_40_40_1_5steps_full_backward_us %.3g us\n", maml_step_us(t, 5, 0));
    int64_t high, heap;
    CHECK(mp_tape_stat(t, MP_TAPE_STAT_ARENA_HIGH, &high));
    CHECK(mp_tape_stat(t, MP_TAPE_STAT_HEAP_BYTES, &heap));
    printf("bench tape_arena_high_kib %.1f KiB\n", (double)high / 1024.0);
    printf("bench tape_heap_kib %.1f KiB\n", (double)heap / 1024.0);
    mp_tape_destroy(t);
    free(X);
    free(W1);
    free(W2);
    return 0;
}
