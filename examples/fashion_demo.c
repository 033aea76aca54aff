/*
 * fashion_demo — the main job: meta-learned soft prompts on Fashion-MNIST.
 *
 * Meta-train on classes 0-5 of the training images (each at 0/90/180/270
 * degrees as its own class: 24 classes), meta-test N-way K-shot on the
 * held-out classes 6-9 of the test images, and compare each meta-learned
 * initialisation with the non-meta row that adapts the same parameters:
 *   (a) prompt + head tuning from a plain initialisation (no meta-learning)
 *   (b) meta-learned prompt (+ head) initialisation: MAML and first-order MAML
 *   (a) full fine-tuning of everything from the plain initialisation
 *   (c) full MAML adapting everything
 * The model is a prompted conv4 (16 filters per block) whose prompt vectors
 * join the head's features. Prints a table of mean accuracy ± 95 % CI and
 * whether each meta row beats its counterpart by more than the CIs, writes
 * CSV files of the learning curves and of the table, and saves a checkpoint.
 *
 * Usage: fashion_demo [--data DIR] [--out DIR] [--iters N] [--episodes N]
 *                     [--threads N] [--quick] ... (--help lists every flag)
 */
#include "example_util.h"

#include <errno.h>
#include <string.h>

const char *const example_name = "fashion_demo";

typedef struct {
    const char *data_dir, *out_dir;
    int ways, shots, queries, iters, meta_batch, episodes, threads, inner_steps, eval_steps;
    int rotations, prompt_len, prompt_dim, hidden, learn_backbone, conv, channels, prompt_mode;
    double inner_lr, outer_lr, weight_decay, clip;
    const char *rows;
    unsigned long long seed;
} options;

/* ---- data ------------------------------------------------------------------ */
static mp_dataset *load_split(const options *o, const char *prefix, const int32_t *classes, size_t n)
{
    char img[1024], lab[1024];
    snprintf(img, sizeof img, "%s/%s-images-idx3-ubyte.gz", o->data_dir, prefix);
    snprintf(lab, sizeof lab, "%s/%s-labels-idx1-ubyte.gz", o->data_dir, prefix);
    if (!file_exists(img) || !file_exists(lab)) {
        fprintf(stderr,
                "fashion_demo: Fashion-MNIST not found (%s).\n"
                "Install Debian's package:  apt-get install dataset-fashion-mnist\n"
                "or pass --data DIR holding %s-{images-idx3,labels-idx1}-ubyte.gz\n",
                img, prefix);
        exit(2);
    }
    mp_dataset *all, *sub;
    CHECK(mp_dataset_load_idx(&all, img, lab, NULL));
    CHECK(mp_dataset_select_classes(&sub, all, classes, n));
    mp_dataset_destroy(all);
    return sub;
}

/* Writes s as one RFC 4180 field: in double quotes, inner quotes doubled. */
static void csv_field(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

/* ---- one method ------------------------------------------------------------ */
typedef struct {
    char key;          /* --rows letter */
    const char *name;
    const char *tag;   /* short name for the comparison lines */
    int32_t algorithm; /* 0: no meta-training */
    int32_t scope;
    int32_t learn;
    char baseline;     /* key of the non-meta row with the same adaptation, 0: none */
} method;

typedef struct {
    double acc, ci;
    double train_s;
} result;

static mp_model *make_model(const options *o, mp_prompt **prompt)
{
    mp_config *cfg;
    CHECK(mp_config_create(&cfg));
    if (o->conv) {
        CHECK(mp_config_set_int(cfg, MP_CFG_MODEL_KIND, MP_MODEL_CONV));
        CHECK(mp_config_set_int(cfg, MP_CFG_MODEL_CHANNELS, o->channels));
        CHECK(mp_config_set_int(cfg, MP_CFG_MODEL_PROMPT_MODE, o->prompt_mode));
    } else {
        CHECK(mp_config_set_int(cfg, MP_CFG_MODEL_KIND, MP_MODEL_MLP));
        CHECK(mp_config_set_int(cfg, MP_CFG_MODEL_INPUT_DIM, 784));
        CHECK(mp_config_set_int(cfg, MP_CFG_MODEL_HIDDEN_LAYERS, 2));
        CHECK(mp_config_set_int(cfg, MP_CFG_MODEL_HIDDEN_WIDTH, o->hidden));
    }
    CHECK(mp_config_set_int(cfg, MP_CFG_MODEL_OUTPUT_DIM, o->ways));
    CHECK(mp_config_set_int(cfg, MP_CFG_MODEL_TASK, MP_TASK_CLASSIFICATION));
    CHECK(mp_config_set_int(cfg, MP_CFG_MODEL_PROMPT_LEN, o->prompt_len));
    if (o->prompt_dim && !o->conv) CHECK(mp_config_set_int(cfg, MP_CFG_MODEL_PROMPT_DIM, o->prompt_dim));
    CHECK(mp_config_set_int(cfg, MP_CFG_SEED, (int64_t)o->seed));
    mp_model *m;
    CHECK(mp_model_create(&m, cfg));
    mp_config_destroy(cfg);
    CHECK(mp_prompt_create(prompt, m));
    CHECK(mp_prompt_init(*prompt, MP_PROMPT_INIT_NORMAL, 0.1, o->seed + 1));
    return m;
}

static mp_meta *make_meta(const options *o, const method *me, mp_model *m, mp_prompt *p)
{
    mp_config *cfg;
    CHECK(mp_config_create(&cfg));
    CHECK(mp_config_set_int(cfg, MP_CFG_META_ALGORITHM, me->algorithm ? me->algorithm : MP_META_MAML));
    CHECK(mp_config_set_int(cfg, MP_CFG_META_SCOPE, me->scope));
    CHECK(mp_config_set_int(cfg, MP_CFG_META_LEARN, me->learn));
    CHECK(mp_config_set_int(cfg, MP_CFG_META_INNER_STEPS, o->inner_steps));
    CHECK(mp_config_set_int(cfg, MP_CFG_META_EVAL_INNER_STEPS, o->eval_steps));
    CHECK(mp_config_set_float(cfg, MP_CFG_META_INNER_LR, o->inner_lr));
    CHECK(mp_config_set_int(cfg, MP_CFG_META_OPTIMIZER, o->weight_decay > 0 ? MP_OPT_ADAMW : MP_OPT_ADAM));
    CHECK(mp_config_set_float(cfg, MP_CFG_META_OUTER_LR, o->outer_lr));
    CHECK(mp_config_set_float(cfg, MP_CFG_META_WEIGHT_DECAY, o->weight_decay));
    CHECK(mp_config_set_float(cfg, MP_CFG_META_CLIP_NORM, o->clip));
    CHECK(mp_config_set_int(cfg, MP_CFG_THREADS, o->threads));
    CHECK(mp_config_set_int(cfg, MP_CFG_SEED, (int64_t)o->seed));
    mp_meta *meta;
    CHECK(mp_meta_create(&meta, m, p, cfg));
    mp_config_destroy(cfg);
    return meta;
}

static void meta_train(const options *o, const method *me, mp_meta *meta, const mp_sampler *train,
                       FILE *curve)
{
    mp_task **batch = calloc((size_t)o->meta_batch, sizeof *batch);
    if (!batch) exit(1);
    char label[96];
    snprintf(label, sizeof label, "meta-train %s", me->name);
    progress pr;
    progress_start(&pr, label);
    double ema = -1;
    for (int it = 0; it < o->iters; it++) {
        for (int b = 0; b < o->meta_batch; b++) {
            uint64_t index = (uint64_t)it * (uint64_t)o->meta_batch + (uint64_t)b;
            if (!batch[b])
                CHECK(mp_sampler_episode(train, index, &batch[b]));
            else
                CHECK(mp_sampler_episode_into(train, index, batch[b]));
        }
        double stats[MP_META_NUM_STATS];
        CHECK(mp_meta_step(meta, batch, (size_t)o->meta_batch, stats, MP_META_NUM_STATS));
        csv_field(curve, me->name);
        fprintf(curve, ",%d,%.6f,%.6f,%.6f,%.6f\n", it + 1, stats[MP_META_STAT_LOSS_BEFORE],
                stats[MP_META_STAT_LOSS_AFTER], stats[MP_META_STAT_ACC_BEFORE],
                stats[MP_META_STAT_ACC_AFTER]);
        double acc = stats[MP_META_STAT_ACC_AFTER];
        ema = ema < 0 ? acc : 0.95 * ema + 0.05 * acc;
        char extra[64];
        snprintf(extra, sizeof extra, "train acc %.3f", ema);
        progress_show(&pr, (unsigned long long)it + 1, (unsigned long long)o->iters, extra);
    }
    for (int b = 0; b < o->meta_batch; b++) mp_task_destroy(batch[b]);
    free(batch);
}

static result run_method(const options *o, const method *me, const mp_sampler *train,
                         const mp_sampler *test, FILE *curve, const char *ckpt_path)
{
    result r = {0, 0, 0};
    mp_prompt *p;
    mp_model *m = make_model(o, &p);
    mp_meta *meta = make_meta(o, me, m, p);
    double t0 = now_s();
    if (me->algorithm) meta_train(o, me, meta, train, curve);
    r.train_s = now_s() - t0;
    char label[96];
    snprintf(label, sizeof label, "evaluate %s", me->name);
    progress pr;
    progress_start(&pr, label);
    CHECK(mp_meta_set_progress(meta, progress_eval_cb, &pr));
    /* Test episodes are indexed from a range the training never touches and
     * drawn from another sampler: classes 6-9 of the test images. */
    CHECK(mp_meta_evaluate(meta, test, 0, (size_t)o->episodes, &r.acc, &r.ci));
    CHECK(mp_meta_set_progress(meta, NULL, NULL));
    if (ckpt_path) CHECK(mp_checkpoint_save(ckpt_path, m, p, meta));
    mp_meta_destroy(meta);
    mp_prompt_destroy(p);
    mp_model_destroy(m);
    return r;
}

/* ---- options ------------------------------------------------------------ */
static void usage(int code)
{
    fprintf(code ? stderr : stdout,
            "usage: fashion_demo [--data DIR] [--out DIR] [--ways N] [--shots K] [--queries Q]\n"
            "                    [--iters N] [--meta-batch B] [--episodes N] [--threads T]\n"
            "                    [--inner-steps S] [--eval-steps S] [--inner-lr A] [--outer-lr B]\n"
            "                    [--weight-decay W] [--clip C] [--rotations 0|1] [--model conv|mlp]\n"
            "                    [--channels C] [--prompt-mode 1|2] [--hidden H] [--prompt-len P]\n"
            "                    [--prompt-dim D] [--learn-backbone 0|1] [--rows LETTERS] [--seed S]\n"
            "                    [--quick]\n"
            "defaults: --ways 4 --shots 1 --queries 15 --iters 300 --meta-batch 8 --episodes 600\n"
            "          --threads 2 --inner-steps 5 --eval-steps (= inner steps) --inner-lr 0.1\n"
            "          --outer-lr 0.001 --weight-decay 0 (> 0: AdamW) --clip 0 (off) --rotations 1\n"
            "          --model conv --channels 16 --prompt-mode 2 --prompt-len 4 --learn-backbone 1\n"
            "          --rows pmofc --seed 1 --data /usr/share/datasets/fashion-mnist --out lib/demo\n"
            "--rotations 1: training classes at 0/90/180/270 degrees are distinct classes (6 -> 24)\n"
            "--model conv: MAML's conv4 with C filters per block; --prompt-mode 1: prompt maps as\n"
            "  input channels, 2: prompt vectors appended to the head's features (d = C)\n"
            "--model mlp: 784(+P x D prompt) -> H -> H -> ways, --hidden 128 --prompt-dim 16\n"
            "--learn-backbone 0: the (b) rows meta-learn only the prompt and the head\n"
            "--rows: p (a) prompt+head, m (b) MAML, o (b) FOMAML, f (a) full fine-tuning, c (c)\n"
            "--quick: 10 meta-iterations and 40 test episodes (a smoke test of every row)\n");
    exit(code);
}

static void parse(options *o, int argc, char **argv)
{
    static const char *const value_flags[] = {
        "--data", "--out", "--ways", "--shots", "--queries", "--iters", "--meta-batch", "--episodes",
        "--threads", "--inner-steps", "--eval-steps", "--inner-lr", "--outer-lr", "--weight-decay",
        "--clip", "--rotations", "--model", "--channels", "--prompt-mode", "--hidden", "--prompt-len",
        "--prompt-dim", "--learn-backbone", "--rows", "--seed"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) usage(0);
        if (!strcmp(a, "--quick")) {
            o->iters = 10;
            o->episodes = 40;
            continue;
        }
        check_flag(a, v, value_flags, sizeof value_flags / sizeof value_flags[0], usage);
        if (!strcmp(a, "--data")) o->data_dir = v;
        else if (!strcmp(a, "--out")) o->out_dir = v;
        else if (!strcmp(a, "--ways")) o->ways = parse_count(a, v, 2);
        else if (!strcmp(a, "--shots")) o->shots = parse_count(a, v, 1);
        else if (!strcmp(a, "--queries")) o->queries = parse_count(a, v, 1);
        else if (!strcmp(a, "--iters")) o->iters = parse_count(a, v, 0);
        else if (!strcmp(a, "--meta-batch")) o->meta_batch = parse_count(a, v, 1);
        else if (!strcmp(a, "--episodes")) o->episodes = parse_count(a, v, 2);
        else if (!strcmp(a, "--threads")) o->threads = parse_count(a, v, 1);
        else if (!strcmp(a, "--inner-steps")) o->inner_steps = parse_count(a, v, 1);
        else if (!strcmp(a, "--eval-steps")) o->eval_steps = parse_count(a, v, 1);
        else if (!strcmp(a, "--inner-lr")) o->inner_lr = parse_real(a, v);
        else if (!strcmp(a, "--outer-lr")) o->outer_lr = parse_real(a, v);
        else if (!strcmp(a, "--weight-decay")) o->weight_decay = parse_real(a, v);
        else if (!strcmp(a, "--clip")) o->clip = parse_real(a, v);
        else if (!strcmp(a, "--rotations")) o->rotations = parse_count(a, v, 0) != 0;
        else if (!strcmp(a, "--model")) {
            if (strcmp(v, "conv") && strcmp(v, "mlp")) {
                fprintf(stderr, "fashion_demo: --model expects conv or mlp, got '%s'\n", v);
                exit(2);
            }
            o->conv = !strcmp(v, "conv");
        } else if (!strcmp(a, "--channels")) o->channels = parse_count(a, v, 1);
        else if (!strcmp(a, "--prompt-mode")) o->prompt_mode = parse_count(a, v, 1);
        else if (!strcmp(a, "--hidden")) o->hidden = parse_count(a, v, 1);
        else if (!strcmp(a, "--prompt-len")) o->prompt_len = parse_count(a, v, 1);
        else if (!strcmp(a, "--prompt-dim")) o->prompt_dim = parse_count(a, v, 1);
        else if (!strcmp(a, "--learn-backbone")) o->learn_backbone = parse_count(a, v, 0) != 0;
        else if (!strcmp(a, "--rows")) o->rows = v;
        else if (!strcmp(a, "--seed")) o->seed = (unsigned long long)parse_count(a, v, 0);
        i++;
    }
    if (o->ways < 2 || o->ways > 4 || o->shots < 1 || o->queries < 1 || o->iters < 0 ||
        o->meta_batch < 1 || o->episodes < 2 || o->threads < 1 || o->inner_steps < 1) {
        fprintf(stderr, "fashion_demo: --ways must be 2..4 (4 held-out classes), other counts positive\n");
        exit(2);
    }
    if (o->prompt_mode > 2) {
        fprintf(stderr, "fashion_demo: --prompt-mode expects 1 or 2, got %d\n", o->prompt_mode);
        exit(2);
    }
    if (o->rows[strspn(o->rows, "pmofc")] != '\0' || o->rows[0] == '\0') {
        fprintf(stderr, "fashion_demo: --rows expects letters of pmofc, got '%s'\n", o->rows);
        exit(2);
    }
}

static mp_sampler *make_sampler(const options *o, const mp_dataset *ds, int rotations, uint64_t seed)
{
    mp_config *cfg;
    CHECK(mp_config_create(&cfg));
    CHECK(mp_config_set_int(cfg, MP_CFG_DATA_WAYS, o->ways));
    CHECK(mp_config_set_int(cfg, MP_CFG_DATA_SHOTS, o->shots));
    CHECK(mp_config_set_int(cfg, MP_CFG_DATA_QUERIES, o->queries));
    CHECK(mp_config_set_int(cfg, MP_CFG_DATA_ROTATIONS, rotations));
    CHECK(mp_config_set_int(cfg, MP_CFG_SEED, (int64_t)seed));
    mp_sampler *s;
    CHECK(mp_sampler_create(&s, ds, cfg));
    mp_config_destroy(cfg);
    return s;
}

int main(int argc, char **argv)
{
    options o = {
        .data_dir = "/usr/share/datasets/fashion-mnist", .out_dir = "lib/demo",
        .ways = 4, .shots = 1, .queries = 15, .iters = 300, .meta_batch = 8, .episodes = 600,
        .threads = 2, .inner_steps = 5, .eval_steps = 0, .inner_lr = 0.1, .outer_lr = 1e-3,
        .rotations = 1, .prompt_len = 4, .prompt_dim = 16, .hidden = 128, .learn_backbone = 1,
        .conv = 1, .channels = 16, .prompt_mode = MP_PROMPT_HEAD_FEATURES, .rows = "pmofc", .seed = 1,
    };
    double t_start = now_s();
    parse(&o, argc, argv);
    if (!o.eval_steps) o.eval_steps = o.inner_steps;
    make_out_dir(o.out_dir);
    /* the data first: a missing data set stops before the banner */
    const int32_t train_classes[] = {0, 1, 2, 3, 4, 5};
    const int32_t test_classes[] = {6, 7, 8, 9};
    mp_dataset *train_ds = load_split(&o, "train", train_classes, 6);
    mp_dataset *test_ds = load_split(&o, "t10k", test_classes, 4);
    printf("libmetaprompt %s — meta-learned prompts on Fashion-MNIST\n", mp_version_string());
    example_setup(o.threads);
    if (o.conv)
        printf("model: prompted conv4, %d filters per block, prompt %d x %d %s\n", o.channels, o.prompt_len,
               o.prompt_mode == MP_PROMPT_HEAD_FEATURES ? o.channels : 28 * 28,
               o.prompt_mode == MP_PROMPT_HEAD_FEATURES ? "appended to the head's features"
                                                        : "as extra input channels");
    else
        printf("model: prompted MLP 784 (+ prompt %d x %d) -> %d -> %d -> %d\n", o.prompt_len, o.prompt_dim,
               o.hidden, o.hidden, o.ways);
    printf("meta-train: classes 0-5 (training images)%s;\n"
           "meta-test: %d-way %d-shot, %d queries/class, on held-out classes 6-9 (test images);\n"
           "%d meta-iterations x %d tasks, %d inner steps (lr %g) in training, %d at test, %d test episodes\n\n",
           o.rotations ? " x 4 rotations = 24 classes" : "", o.ways, o.shots, o.queries, o.iters,
           o.meta_batch, o.inner_steps, o.inner_lr, o.eval_steps, o.episodes);

    if (o.rotations || o.conv) {
        const int32_t shape[] = {28, 28};
        CHECK(mp_dataset_set_sample_shape(train_ds, shape, 2));
        CHECK(mp_dataset_set_sample_shape(test_ds, shape, 2));
    }
    mp_sampler *train = make_sampler(&o, train_ds, o.rotations, o.seed);
    mp_sampler *test = make_sampler(&o, test_ds, 0, o.seed + 1000003);

    char curve_path[1100], table_path[1100], ckpt_path[1100];
    snprintf(curve_path, sizeof curve_path, "%s/learning_curve.csv", o.out_dir);
    snprintf(table_path, sizeof table_path, "%s/results.csv", o.out_dir);
    snprintf(ckpt_path, sizeof ckpt_path, "%s/maml_prompt_head.mpck", o.out_dir);
    FILE *curve = fopen(curve_path, "w");
    FILE *table = fopen(table_path, "w");
    if (!curve || !table) {
        fprintf(stderr, "fashion_demo: cannot write into %s: %s\n", o.out_dir, strerror(errno));
        return 1;
    }
    fprintf(curve, "method,iteration,query_loss_before,query_loss_after,query_acc_before,query_acc_after\n");
    fprintf(table, "method,ways,shots,accuracy,ci95_half_width,episodes,train_seconds\n");

    const int32_t b_learn = MP_LEARN_PROMPT | MP_LEARN_HEAD | (o.learn_backbone ? MP_LEARN_BACKBONE : 0);
    const method all_methods[] = {
        {'p', "(a) prompt+head tuning, no meta-learning", "(a) prompt+head tuning", 0, MP_SCOPE_PROMPT_HEAD, 0, 0},
        {'m', "(b) MAML: meta-learned prompt+head init", "(b) MAML", MP_META_MAML, MP_SCOPE_PROMPT_HEAD, b_learn, 'p'},
        {'o', "(b) FOMAML: meta-learned prompt+head init", "(b) FOMAML", MP_META_FOMAML, MP_SCOPE_PROMPT_HEAD, b_learn, 'p'},
        {'f', "(a) full fine-tuning, no meta-learning", "(a) full fine-tuning", 0, MP_SCOPE_ALL, 0, 0},
        {'c', "(c) full MAML, adapting everything", "(c) full MAML", MP_META_MAML, MP_SCOPE_ALL,
         MP_LEARN_PROMPT | MP_LEARN_HEAD | MP_LEARN_BACKBONE, 'f'},
    };
    method methods[sizeof all_methods / sizeof all_methods[0]];
    size_t n_methods = 0;
    for (size_t i = 0; i < sizeof all_methods / sizeof all_methods[0]; i++)
        if (strchr(o.rows, all_methods[i].key)) methods[n_methods++] = all_methods[i];
    result res[sizeof all_methods / sizeof all_methods[0]];
    for (size_t i = 0; i < n_methods; i++) {
        res[i] = run_method(&o, &methods[i], train, test, curve, methods[i].key == 'm' ? ckpt_path : NULL);
        csv_field(table, methods[i].name);
        fprintf(table, ",%d,%d,%.6f,%.6f,%d,%.2f\n", o.ways, o.shots, res[i].acc,
                res[i].ci, o.episodes, res[i].train_s);
        fflush(table);
    }
    fclose(curve);
    fclose(table);

    printf("\n%-44s %20s %10s\n", "method", "accuracy (95% CI)", "train (s)");
    printf("%-44s %20s %10s\n", "--------------------------------------------", "--------------------",
           "----------");
    for (size_t i = 0; i < n_methods; i++) {
        char acc[64];
        snprintf(acc, sizeof acc, "%5.1f%% ± %4.1f%%", 100 * res[i].acc, 100 * res[i].ci);
        printf("%-44s %20s %10.1f\n", methods[i].name, acc, res[i].train_s);
    }
    printf("\nchance level %.1f%%; %d-way %d-shot over %d test episodes; total run time %.0f s\n",
           100.0 / o.ways, o.ways, o.shots, o.episodes, now_s() - t_start);
    /* Each meta-learned row against the non-meta row that adapts the same
     * parameters the same way: the issue asks for a gap larger than the
     * confidence intervals (the two intervals do not overlap). */
    for (size_t i = 0; i < n_methods; i++) {
        for (size_t j = 0; j < n_methods; j++) {
            if (methods[j].key != methods[i].baseline) continue;
            double gap = res[i].acc - res[j].acc, both = res[i].ci + res[j].ci;
            printf("%-13s vs %-22s %+5.1f points: %s the CIs (%.1f + %.1f)\n", methods[i].tag, methods[j].tag,
                   100 * gap, gap > both ? "more than" : "NOT more than", 100 * res[i].ci, 100 * res[j].ci);
        }
    }
    printf("\nlearning curve: %s\nresults table:  %s\n", curve_path, table_path);
    if (strchr(o.rows, 'm')) printf("checkpoint:     %s\n", ckpt_path);

    mp_sampler_destroy(train);
    mp_sampler_destroy(test);
    mp_dataset_destroy(train_ds);
    mp_dataset_destroy(test_ds);
    return 0;
}
