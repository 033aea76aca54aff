/*
 * omniglot — MAML's Omniglot benchmark with a prompted conv4 backbone.
 *
 * Meta-train on the background set (964 characters; each class of a training
 * episode is rotated by a random 0, 90, 180 or 270 degrees, MAML's Omniglot
 * convention, so rotations act as 3856 classes across episodes), then
 * evaluate N-way K-shot on the evaluation set (659 characters, never seen in
 * training) over 600 episodes with a 95 % confidence interval, in three modes:
 *   full         MAML (exact second order) adapting everything in the inner loop
 *   prompt       MAML adapting only the soft prompt (one learned 28x28 input
 *                channel); backbone and head are meta-learned, frozen per task
 *   prompt-head  MAML adapting the prompt and the linear head
 * for 5-way and 20-way, 1-shot and 5-shot.
 *
 * The default run is a short one (minutes, not the paper's 60 000
 * iterations, one inner step): one model per (mode, ways) is meta-trained
 * 1-shot and evaluated at every shot count; --per-shot trains one per
 * setting as the MAML paper does, --paper sets the paper's length and its
 * 20-way inner loop (5 steps, LR 0.1). docs/OMNIGLOT.md
 * lists the figures of the default run and the hours a paper-length run needs.
 *
 * Usage: omniglot [--data DIR] [--out DIR] [--modes full,prompt,prompt-head] [--ways 5,20]
 *                 [--shots 1,5] [--iters N] [--episodes N] [--threads T] ...
 *        omniglot --help
 */
#include "example_util.h"

#include <errno.h>
#include <string.h>

const char *const example_name = "omniglot";

#define MAX_LIST 4

typedef struct {
    const char *data_dir, *out_dir;
    int modes[MAX_LIST], n_modes;     /* 0 full, 1 prompt, 2 prompt-head */
    int ways[MAX_LIST], n_ways;
    int shots[MAX_LIST], n_shots;
    int iters5, iters20;               /* meta-iterations per trained model */
    int meta_batch;                    /* 0: the paper's (32 for 5-way, 16 for 20-way) */
    int inner_steps, eval_steps;       /* 0: the paper's per ways */
    double inner_lr;                   /* 0: 0.4 (the paper's 20-way 0.1 with --paper) */
    double prompt_lr;                  /* inner LR of the prompt-only mode */
    double outer_lr;
    int per_shot;                      /* train one model per (ways, shots) */
    int paper;                         /* the paper's 20-way inner loop (5 steps, LR 0.1) */
    int queries;                       /* evaluation queries per class */
    int episodes, threads;
    unsigned long long seed;
} options;

static const char *const mode_name[] = {"full", "prompt", "prompt-head"};
static const int32_t mode_scope[] = {MP_SCOPE_ALL, MP_SCOPE_PROMPT, MP_SCOPE_PROMPT_HEAD};

/* MAML paper (Finn et al. 2017, section 5.2 and appendix A.1), conv4, 95 % CI. */
static double published(int ways, int shots)
{
    if (ways == 5) return shots == 1 ? 98.7 : shots == 5 ? 99.9 : -1;
    if (ways == 20) return shots == 1 ? 95.8 : shots == 5 ? 98.9 : -1;
    return -1;
}

/* ---- settings per ways (MAML's Omniglot hyper-parameters) ------------------ */
static int batch_for(const options *o, int ways) { return o->meta_batch ? o->meta_batch : ways <= 5 ? 32 : 16; }
static int steps_for(const options *o, int ways)
{
    return o->inner_steps ? o->inner_steps : ways > 5 && o->paper ? 5 : 1;
}
static int eval_steps_for(const options *o, int ways) { return o->eval_steps ? o->eval_steps : steps_for(o, ways); }
static int iters_for(const options *o, int ways) { return ways <= 5 ? o->iters5 : o->iters20; }
static double lr_for(const options *o, int mode, int ways)
{
    if (mode == 1) return o->prompt_lr;
    if (o->inner_lr > 0) return o->inner_lr;
    return ways > 5 && o->paper ? 0.1 : 0.4;
}

/* ---- data ------------------------------------------------------------------ */
static mp_dataset *load_set(const options *o, const char *set)
{
    char img[1024], lab[1024];
    snprintf(img, sizeof img, "%s/%s-images-idx3-ubyte.gz", o->data_dir, set);
    snprintf(lab, sizeof lab, "%s/%s-labels-idx1-int.gz", o->data_dir, set);
    if (!file_exists(img) || !file_exists(lab)) {
        fprintf(stderr,
                "omniglot: the Omniglot IDX files are not in %s (looked for %s).\n"
                "Pass --data DIR holding {background,evaluation}-images-idx3-ubyte.gz and\n"
                "{background,evaluation}-labels-idx1-int.gz (28x28 Omniglot in IDX form).\n",
                o->data_dir, img);
        exit(2);
    }
    mp_dataset *ds;
    CHECK(mp_dataset_load_idx(&ds, img, lab, NULL));
    return ds;
}

static mp_sampler *make_sampler(const mp_dataset *ds, int ways, int shots, int queries, int rotations,
                                unsigned long long seed)
{
    mp_config *cfg;
    CHECK(mp_config_create(&cfg));
    CHECK(mp_config_set_int(cfg, MP_CFG_DATA_WAYS, ways));
    CHECK(mp_config_set_int(cfg, MP_CFG_DATA_SHOTS, shots));
    CHECK(mp_config_set_int(cfg, MP_CFG_DATA_QUERIES, queries));
    CHECK(mp_config_set_int(cfg, MP_CFG_DATA_ROTATIONS, rotations));
    CHECK(mp_config_set_int(cfg, MP_CFG_SEED, (int64_t)seed));
    mp_sampler *s;
    CHECK(mp_sampler_create(&s, ds, cfg));
    mp_config_destroy(cfg);
    return s;
}

/* ---- model and meta-learner --------------------------------------------------- */
static mp_model *make_model(const options *o, int ways, mp_prompt **prompt)
{
    mp_config *cfg;
    CHECK(mp_config_create(&cfg));
    CHECK(mp_config_set_int(cfg, MP_CFG_MODEL_KIND, MP_MODEL_CONV)); /* 4 x [conv 3x3, 64, norm, relu, pool] */
    CHECK(mp_config_set_int(cfg, MP_CFG_MODEL_OUTPUT_DIM, ways));
    CHECK(mp_config_set_int(cfg, MP_CFG_MODEL_PROMPT_MODE, MP_PROMPT_INPUT_CHANNELS));
    CHECK(mp_config_set_int(cfg, MP_CFG_MODEL_PROMPT_LEN, 1)); /* one learned 28x28 input channel */
    CHECK(mp_config_set_int(cfg, MP_CFG_MODEL_INIT, MP_INIT_TORCH));
    CHECK(mp_config_set_int(cfg, MP_CFG_SEED, (int64_t)o->seed));
    mp_model *m;
    CHECK(mp_model_create(&m, cfg));
    mp_config_destroy(cfg);
    CHECK(mp_prompt_create(prompt, m));
    CHECK(mp_prompt_init(*prompt, MP_PROMPT_INIT_NORMAL, 0.1, o->seed + 7));
    return m;
}

static mp_meta *make_meta(const options *o, int mode, int ways, mp_model *m, mp_prompt *p)
{
    mp_config *cfg;
    CHECK(mp_config_create(&cfg));
    CHECK(mp_config_set_int(cfg, MP_CFG_META_ALGORITHM, MP_META_MAML));
    CHECK(mp_config_set_int(cfg, MP_CFG_META_SCOPE, mode_scope[mode]));
    CHECK(mp_config_set_int(cfg, MP_CFG_META_LEARN, MP_LEARN_PROMPT | MP_LEARN_HEAD | MP_LEARN_BACKBONE));
    CHECK(mp_config_set_int(cfg, MP_CFG_META_INNER_STEPS, steps_for(o, ways)));
    CHECK(mp_config_set_int(cfg, MP_CFG_META_EVAL_INNER_STEPS, eval_steps_for(o, ways)));
    CHECK(mp_config_set_float(cfg, MP_CFG_META_INNER_LR, lr_for(o, mode, ways)));
    CHECK(mp_config_set_int(cfg, MP_CFG_META_OPTIMIZER, MP_OPT_ADAM));
    CHECK(mp_config_set_float(cfg, MP_CFG_META_OUTER_LR, o->outer_lr));
    CHECK(mp_config_set_int(cfg, MP_CFG_THREADS, o->threads));
    CHECK(mp_config_set_int(cfg, MP_CFG_SEED, (int64_t)o->seed));
    mp_meta *meta;
    CHECK(mp_meta_create(&meta, m, p, cfg));
    mp_config_destroy(cfg);
    return meta;
}

static double meta_train(mp_meta *meta, const mp_sampler *train, const char *label,
                         FILE *curve, int iters, int batch_n)
{
    mp_task **batch = calloc((size_t)batch_n, sizeof *batch);
    if (!batch) {
        fprintf(stderr, "omniglot: out of memory\n");
        exit(1);
    }
    progress pr;
    progress_start(&pr, label);
    double t0 = now_s(), ema = -1;
    for (int it = 0; it < iters; it++) {
        for (int b = 0; b < batch_n; b++) {
            uint64_t index = (uint64_t)it * (uint64_t)batch_n + (uint64_t)b;
            if (!batch[b])
                CHECK(mp_sampler_episode(train, index, &batch[b]));
            else
                CHECK(mp_sampler_episode_into(train, index, batch[b]));
        }
        double st[MP_META_NUM_STATS];
        CHECK(mp_meta_step(meta, batch, (size_t)batch_n, st, MP_META_NUM_STATS));
        fprintf(curve, "%s,%d,%.6f,%.6f,%.6f,%.6f,%.2f\n", label, it + 1, st[MP_META_STAT_LOSS_BEFORE],
                st[MP_META_STAT_LOSS_AFTER], st[MP_META_STAT_ACC_BEFORE], st[MP_META_STAT_ACC_AFTER],
                now_s() - t0);
        ema = ema < 0 ? st[MP_META_STAT_ACC_AFTER] : 0.95 * ema + 0.05 * st[MP_META_STAT_ACC_AFTER];
        char extra[64];
        snprintf(extra, sizeof extra, "train acc %.3f", ema);
        progress_show(&pr, (unsigned long long)it + 1, (unsigned long long)iters, extra);
    }
    for (int b = 0; b < batch_n; b++) mp_task_destroy(batch[b]);
    free(batch);
    return now_s() - t0;
}

/* ---- options ------------------------------------------------------------------ */
static void usage(int code)
{
    fprintf(code ? stderr : stdout,
            "usage: omniglot [--data DIR] [--out DIR] [--modes full,prompt,prompt-head] [--ways 5,20]\n"
            "                [--shots 1,5]"
            " [--iters N] [--iters5 N] [--iters20 N] [--meta-batch B] [--inner-steps S]\n"
            "                [--eval-steps S] [--inner-lr A] [--prompt-lr A] [--outer-lr B] [--per-shot]\n"
            "                [--queries Q] [--episodes N] [--threads T] [--seed S] [--paper] [--quick]\n"
            "Meta-trains a prompted conv4 on Omniglot's background set (random rotations per class) and\n"
            "evaluates N-way K-shot on the evaluation set, adapting everything (full), the prompt only\n"
            "(prompt) or the prompt and the head (prompt-head).\n"
            "defaults: --data ../shared/data/omniglot --out lib/omniglot --modes full,prompt,prompt-head\n"
            "          --ways 5,20 --shots 1,5 --iters5 200 --iters20 60 --episodes 600 --queries 5\n"
            "          --threads 2 --outer-lr 0.001 --inner-steps 1 --inner-lr 0.4 --prompt-lr 10 --seed 1;\n"
            "          meta-batch 32 (5-way) or 16 (20-way) as in the MAML paper; --eval-steps defaults\n"
            "          to the training steps. One model per (mode, ways) is trained 1-shot (1 query per\n"
            "          class) and evaluated at every --shots value.\n"
            "--per-shot  train one model per (mode, ways, shots), trained K-shot, as the paper does\n"
            "--paper     --per-shot, 60000 meta-iterations per model and, for 20-way, 5 inner steps\n"
            "            of LR 0.1 (the MAML paper's settings; days on 2 cores)\n"
            "--quick     a smoke test of every path: 1 meta-iteration of 2 tasks, 1 inner step,\n"
            "            4 test episodes with 1 query per class\n");
    exit(code);
}

static int parse_list(const char *flag, const char *v, int *out, const int *allowed, int n_allowed)
{
    int n = 0;
    const char *p = v;
    while (*p) {
        char item[32];
        size_t len = strcspn(p, ",");
        if (len == 0 || len >= sizeof item || n == MAX_LIST) goto bad;
        memcpy(item, p, len);
        item[len] = '\0';
        int value = -1;
        if (!strcmp(flag, "--modes")) {
            for (int m = 0; m < 3; m++)
                if (!strcmp(item, mode_name[m])) value = m;
        } else {
            value = parse_count(flag, item, 1);
            int ok = 0;
            for (int i = 0; i < n_allowed; i++) ok |= allowed[i] == value;
            if (!ok) value = -1;
        }
        if (value < 0) goto bad;
        out[n++] = value;
        p += len;
        if (*p == ',') p++;
    }
    if (n > 0) return n;
bad:
    fprintf(stderr, "omniglot: bad %s list '%s'\n", flag, v);
    exit(2);
}

static void parse(options *o, int argc, char **argv)
{
    static const int ways_ok[] = {2, 3, 4, 5, 10, 20}, shots_ok[] = {1, 2, 3, 4, 5, 10};
    static const char *const value_flags[] = {
        "--data", "--out", "--modes", "--ways", "--shots", "--iters", "--iters5", "--iters20", "--meta-batch",
        "--inner-steps", "--eval-steps", "--inner-lr", "--prompt-lr", "--outer-lr", "--queries", "--episodes",
        "--threads", "--seed"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) usage(0);
        if (!strcmp(a, "--quick")) {
            o->iters5 = o->iters20 = 1;
            o->meta_batch = 2;
            o->inner_steps = 1;
            o->episodes = 4;
            o->queries = 1;
            continue;
        }
        if (!strcmp(a, "--per-shot")) {
            o->per_shot = 1;
            continue;
        }
        if (!strcmp(a, "--paper")) {
            o->per_shot = o->paper = 1;
            o->iters5 = o->iters20 = 60000;
            continue;
        }
        check_flag(a, v, value_flags, sizeof value_flags / sizeof value_flags[0], usage);
        if (!strcmp(a, "--data")) o->data_dir = v;
        else if (!strcmp(a, "--out")) o->out_dir = v;
        else if (!strcmp(a, "--modes")) o->n_modes = parse_list(a, v, o->modes, NULL, 0);
        else if (!strcmp(a, "--ways")) o->n_ways = parse_list(a, v, o->ways, ways_ok, 6);
        else if (!strcmp(a, "--shots")) o->n_shots = parse_list(a, v, o->shots, shots_ok, 6);
        else if (!strcmp(a, "--iters")) o->iters5 = o->iters20 = parse_count(a, v, 0);
        else if (!strcmp(a, "--iters5")) o->iters5 = parse_count(a, v, 0);
        else if (!strcmp(a, "--iters20")) o->iters20 = parse_count(a, v, 0);
        else if (!strcmp(a, "--meta-batch")) o->meta_batch = parse_count(a, v, 1);
        else if (!strcmp(a, "--inner-steps")) o->inner_steps = parse_count(a, v, 1);
        else if (!strcmp(a, "--eval-steps")) o->eval_steps = parse_count(a, v, 1);
        else if (!strcmp(a, "--inner-lr")) o->inner_lr = parse_real(a, v);
        else if (!strcmp(a, "--prompt-lr")) o->prompt_lr = parse_real(a, v);
        else if (!strcmp(a, "--outer-lr")) o->outer_lr = parse_real(a, v);
        else if (!strcmp(a, "--queries")) o->queries = parse_count(a, v, 1);
        else if (!strcmp(a, "--episodes")) o->episodes = parse_count(a, v, 2);
        else if (!strcmp(a, "--threads")) o->threads = parse_count(a, v, 1);
        else if (!strcmp(a, "--seed")) o->seed = (unsigned long long)parse_count(a, v, 0);
        i++;
    }
}

/* ---- one trained model, evaluated at several shot counts ------------------------ */
typedef struct {
    int mode, ways, shots, train_shots, iters;
    double acc, ci, train_s, eval_s;
} row;

static void run_model(const options *o, int mode, int ways, int train_shots, const int *eval_shots,
                      int n_eval, const mp_dataset *background, const mp_dataset *evaluation, FILE *curve,
                      FILE *table, row *rows, int *n_rows)
{
    int iters = iters_for(o, ways), batch_n = batch_for(o, ways);
    mp_prompt *p;
    mp_model *m = make_model(o, ways, &p);
    mp_meta *meta = make_meta(o, mode, ways, m, p);
    /* Training tasks: K support and K query examples per class (MAML's
     * Omniglot convention), each class at a random rotation. */
    mp_sampler *train = make_sampler(background, ways, train_shots, train_shots, 1, o->seed);
    char label[96];
    snprintf(label, sizeof label, "%s %d-way %d-shot", mode_name[mode], ways, train_shots);
    double train_s = meta_train(meta, train, label, curve, iters, batch_n);
    mp_sampler_destroy(train);

    char ckpt[1100];
    snprintf(ckpt, sizeof ckpt, "%s/%s_%dway_%dshot.mpck", o->out_dir, mode_name[mode], ways, train_shots);
    CHECK(mp_checkpoint_save(ckpt, m, p, meta));

    for (int s = 0; s < n_eval; s++) {
        int shots = eval_shots[s];
        /* Test episodes: characters of the evaluation set only, no rotation. */
        mp_sampler *test = make_sampler(evaluation, ways, shots, o->queries, 0, o->seed + 1000003);
        char elabel[96];
        snprintf(elabel, sizeof elabel, "evaluate %s %d-way %d-shot", mode_name[mode], ways, shots);
        progress pr;
        progress_start(&pr, elabel);
        CHECK(mp_meta_set_progress(meta, progress_eval_cb, &pr));
        row *r = &rows[(*n_rows)++];
        *r = (row){mode, ways, shots, train_shots, iters, 0, 0, train_s, 0};
        double t0 = now_s();
        CHECK(mp_meta_evaluate(meta, test, 0, (size_t)o->episodes, &r->acc, &r->ci));
        r->eval_s = now_s() - t0;
        CHECK(mp_meta_set_progress(meta, NULL, NULL));
        mp_sampler_destroy(test);
        fprintf(table, "%s,%d,%d,%d,%d,%.6f,%.6f,%d,%.2f,%.2f\n", mode_name[mode], ways, shots, train_shots,
                iters, r->acc, r->ci, o->episodes, train_s, r->eval_s);
        fflush(table);
        printf("  %-11s %2d-way %d-shot: %5.1f%% ± %4.1f%%  (trained %d-shot, %d iterations, %.0f s; "
               "evaluated in %.0f s)\n",
               mode_name[mode], ways, shots, 100 * r->acc, 100 * r->ci, train_shots, iters, train_s,
               r->eval_s);
        fflush(stdout);
    }
    mp_meta_destroy(meta);
    mp_prompt_destroy(p);
    mp_model_destroy(m);
}

int main(int argc, char **argv)
{
    options o = {
        .data_dir = "../shared/data/omniglot", .out_dir = "lib/omniglot",
        .modes = {0, 1, 2}, .n_modes = 3, .ways = {5, 20}, .n_ways = 2, .shots = {1, 5}, .n_shots = 2,
        .iters5 = 200, .iters20 = 60, .prompt_lr = 10, .outer_lr = 1e-3, .queries = 5, .episodes = 600, .threads = 2,
        .seed = 1,
    };
    parse(&o, argc, argv);
    make_out_dir(o.out_dir);
    mp_dataset *background = load_set(&o, "background");
    mp_dataset *evaluation = load_set(&o, "evaluation");
    int32_t n_bg = 0, n_ev = 0;
    CHECK(mp_dataset_num_classes(background, &n_bg));
    CHECK(mp_dataset_num_classes(evaluation, &n_ev));

    printf("libmetaprompt %s — MAML on Omniglot with a prompted conv4\n", mp_version_string());
    example_setup(o.threads);
    printf("meta-train: background set, %d characters x 4 rotations; meta-test: evaluation set,\n"
           "%d characters, %d episodes with %d queries per class\n\n",
           n_bg, n_ev, o.episodes, o.queries);

    char curve_path[1100], table_path[1100];
    snprintf(curve_path, sizeof curve_path, "%s/learning_curve.csv", o.out_dir);
    snprintf(table_path, sizeof table_path, "%s/results.csv", o.out_dir);
    FILE *curve = fopen(curve_path, "w");
    FILE *table = fopen(table_path, "w");
    if (!curve || !table) {
        fprintf(stderr, "omniglot: cannot write into %s: %s\n", o.out_dir, strerror(errno));
        return 1;
    }
    fprintf(curve, "model,iteration,query_loss_before,query_loss_after,query_acc_before,query_acc_after,"
                   "seconds\n");
    fprintf(table, "mode,ways,shots,train_shots,train_iterations,accuracy,ci95_half_width,episodes,"
                   "train_seconds,eval_seconds\n");

    row rows[MAX_LIST * MAX_LIST * MAX_LIST];
    int n_rows = 0;
    for (int mi = 0; mi < o.n_modes; mi++)
        for (int wi = 0; wi < o.n_ways; wi++) {
            if (o.per_shot) {
                for (int si = 0; si < o.n_shots; si++)
                    run_model(&o, o.modes[mi], o.ways[wi], o.shots[si], &o.shots[si], 1, background,
                              evaluation, curve, table, rows, &n_rows);
            } else {
                run_model(&o, o.modes[mi], o.ways[wi], 1, o.shots, o.n_shots, background, evaluation, curve,
                          table, rows, &n_rows);
            }
        }
    fclose(curve);
    fclose(table);

    printf("\n%-11s %-13s %20s %10s %11s %10s\n", "mode", "setting", "accuracy (95% CI)", "MAML paper",
           "train iters", "train (s)");
    printf("%-11s %-13s %20s %10s %11s %10s\n", "-----------", "-------------", "--------------------",
           "----------", "-----------", "----------");
    for (int i = 0; i < n_rows; i++) {
        char setting[32], acc[64], pub[16] = "";
        snprintf(setting, sizeof setting, "%d-way %d-shot", rows[i].ways, rows[i].shots);
        snprintf(acc, sizeof acc, "%5.1f%% ± %4.1f%%", 100 * rows[i].acc, 100 * rows[i].ci);
        double pb = published(rows[i].ways, rows[i].shots);
        if (pb > 0 && rows[i].mode == 0) snprintf(pub, sizeof pub, "%.1f%%", pb);
        printf("%-11s %-13s %20s %10s %11d %10.0f\n", mode_name[rows[i].mode], setting, acc, pub,
               rows[i].iters, rows[i].train_s);
    }
    printf("\nfull: MAML adapting everything; prompt: adapting only the soft prompt; prompt-head: the\n"
           "prompt and the linear head (all exact second-order MAML, backbone meta-learned).\n"
           "MAML paper: Finn et al. 2017, 60000 meta-iterations per setting (this run: see 'train iters').\n");
    printf("learning curve: %s\nresults table:  %s\ncheckpoints:    %s/*.mpck\n", curve_path, table_path,
           o.out_dir);
    mp_dataset_destroy(background);
    mp_dataset_destroy(evaluation);
    return 0;
}
