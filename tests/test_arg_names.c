/* Error messages name the public function and the argument as the header
 * declares them (not the parameter names of the .c definitions, nor an
 * internal step's name). The parameter names come from the headers
 * themselves, parsed at run time: for every MP_API function returning
 * mp_status, each pointer parameter is passed NULL and each mp_var
 * parameter an id no tape has, one at a time, through a table of calls
 * (`calls` below; a function the table lacks fails the test), and the
 * message must start with "<function>: " and name the argument in quotes.
 * Also: every mp_<type>_error(NULL) is "", and token-id errors name the
 * public function that was called. */
#include "test_util.h"

#include "core/internal.h" /* MP__KIND_* for the destroyed-handle test */

#include <ctype.h>
#include <dirent.h>
#include <stdlib.h>

/* ---- the headers' declarations ---------------------------------------------------- */
#define MAX_FUNCS 256
#define MAX_PARAMS 16

typedef struct {
    char name[64];
    char ret[64];
    int n;
    char param[MAX_PARAMS][32];
    int pointer[MAX_PARAMS]; /* the type has a '*' */
    int var[MAX_PARAMS];     /* the type is mp_var */
    int hkind[MAX_PARAMS];   /* a handle of kind_names[hkind] (mp_x * or const mp_x *), or -1 */
    int harray[MAX_PARAMS];  /* ... an array of them (mp_x *const *) */
} decl;

/* The public handle types, in the order of the fixture's handles (fx_handle). */
#define NKINDS 8
static const char *const kind_names[NKINDS] = {"mp_config", "mp_model",   "mp_prompt", "mp_dataset",
                                               "mp_task",   "mp_sampler", "mp_meta",   "mp_tape"};

/* The kind of a parameter's type, with its '*'s and consts: a handle
 * ("mp_x *", "const mp_x *": 1) or an array of handles ("mp_x *const *": 2)
 * gives the index into kind_names; other types (out-parameters "mp_x **"
 * too) -1. */
static int type_kind(const char *type, int *array)
{
    char t[256];
    size_t n = 0;
    for (const char *c = type; *c && n + 1 < sizeof t; c++)
        if (!isspace((unsigned char)*c)) t[n++] = *c;
    t[n] = '\0';
    const char *base = strncmp(t, "const", 5) == 0 ? t + 5 : t;
    for (int k = 0; k < NKINDS; k++) {
        size_t len = strlen(kind_names[k]);
        if (strncmp(base, kind_names[k], len) != 0) continue;
        const char *rest = base + len;
        if (strcmp(rest, "*") == 0) return *array = 0, k;
        if (strcmp(rest, "*const*") == 0) return *array = 1, k;
        return -1;
    }
    return -1;
}

static decl g_decls[MAX_FUNCS];
static int g_ndecls;

static void trim(char *s)
{
    size_t n = strlen(s), i = 0;
    while (n && isspace((unsigned char)s[n - 1])) s[--n] = '\0';
    while (isspace((unsigned char)s[i])) i++;
    memmove(s, s + i, n - i + 1);
}

/* One declaration's text, from after "MP_API" to before ';'. */
static void parse_decl(const char *text)
{
    ck_assert_int_lt(g_ndecls, MAX_FUNCS);
    decl *d = &g_decls[g_ndecls++];
    memset(d, 0, sizeof *d);
    const char *open = strchr(text, '('), *close = strrchr(text, ')');
    ck_assert_msg(open && close && close > open, "cannot parse declaration: %s", text);
    const char *end = open;
    while (end > text && isspace((unsigned char)end[-1])) end--;
    const char *start = end;
    while (start > text && (isalnum((unsigned char)start[-1]) || start[-1] == '_')) start--;
    ck_assert_uint_lt((size_t)(end - start), sizeof d->name);
    memcpy(d->name, start, (size_t)(end - start));
    ck_assert_uint_lt((size_t)(start - text), sizeof d->ret);
    memcpy(d->ret, text, (size_t)(start - text));
    trim(d->ret);
    char params[1024];
    ck_assert_uint_lt((size_t)(close - open - 1), sizeof params);
    memcpy(params, open + 1, (size_t)(close - open - 1));
    params[close - open - 1] = '\0';
    trim(params);
    if (strcmp(params, "void") == 0) return;
    for (char *save = NULL, *p = strtok_r(params, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
        ck_assert_int_lt(d->n, MAX_PARAMS);
        char type[256];
        snprintf(type, sizeof type, "%s", p);
        trim(type);
        size_t e = strlen(type), b = e;
        while (b > 0 && (isalnum((unsigned char)type[b - 1]) || type[b - 1] == '_')) b--;
        ck_assert_msg(b < e && b > 0, "%s: parameter without a name: '%s'", d->name, type);
        ck_assert_uint_lt(e - b, sizeof d->param[0]);
        memcpy(d->param[d->n], type + b, e - b);
        type[b] = '\0';
        trim(type);
        d->pointer[d->n] = strchr(type, '*') != NULL;
        d->var[d->n] = strcmp(type, "mp_var") == 0;
        d->hkind[d->n] = type_kind(type, &d->harray[d->n]);
        d->n++;
    }
}

static void parse_header(const char *path)
{
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    static char text[1 << 18];
    size_t len = fread(text, 1, sizeof text - 1, f);
    ck_assert_int_eq(feof(f), 1);
    fclose(f);
    text[len] = '\0';
    /* comments become spaces */
    for (char *c = text; (c = strstr(c, "/*")) != NULL;) {
        char *e = strstr(c + 2, "*/");
        ck_assert_ptr_nonnull(e);
        memset(c, ' ', (size_t)(e + 2 - c));
    }
    /* declarations: MP_API first on a line (not in a #define) up to ';' */
    for (char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        char *s = line;
        while (*s == ' ' || *s == '\t') s++;
        if (strncmp(s, "MP_API ", 7) != 0) continue;
        char *semi = strchr(s, ';');
        ck_assert_ptr_nonnull(semi);
        char buf[2048];
        ck_assert_uint_lt((size_t)(semi - s - 7), sizeof buf);
        memcpy(buf, s + 7, (size_t)(semi - s - 7));
        buf[semi - s - 7] = '\0';
        for (char *c = buf; *c; c++)
            if (*c == '\n') *c = ' ';
        parse_decl(buf);
    }
}

static void parse_headers(void)
{
    g_ndecls = 0;
    DIR *dir = opendir(MP_SOURCE_DIR "/include/metaprompt");
    ck_assert_ptr_nonnull(dir);
    int headers = 0;
    for (struct dirent *e; (e = readdir(dir)) != NULL;) {
        size_t n = strlen(e->d_name);
        if (n < 3 || strcmp(e->d_name + n - 2, ".h") != 0) continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/include/metaprompt/%s", MP_SOURCE_DIR, e->d_name);
        parse_header(path);
        headers++;
    }
    closedir(dir);
    ck_assert_int_ge(headers, 5);
    ck_assert_int_ge(g_ndecls, 100); /* the parser found the API */
}

static const decl *find_decl(const char *name)
{
    for (int i = 0; i < g_ndecls; i++)
        if (strcmp(g_decls[i].name, name) == 0) return &g_decls[i];
    return NULL;
}

/* ---- valid arguments for every call ---------------------------------------------- */
typedef struct {
    mp_config *cfg;
    mp_model *model;    /* MLP classifier: 4 features, 2 classes, prompt 2 x 4 */
    mp_prompt *prompt, *prompt2;
    mp_dataset *ds;     /* 8 examples of 4 features, 2 classes of 4 */
    mp_task *task;      /* a 2-way task of the model's shape */
    mp_task *sine;      /* a sinusoid task */
    mp_sampler *sampler;
    mp_meta *meta;      /* Meta-SGD (so it has inner rates) */
    mp_tape *tape;
    mp_var a, loss;     /* a 2 x 2 leaf requiring a gradient, its sum; after a backward */
    /* outputs and buffers */
    void *out;          /* handle outputs (never written: every call fails) */
    mp_var v;
    float buf[8192];
    int32_t ibuf[64];
    size_t sz;
    int64_t i64;
    uint64_t u64;
    double d1, d2;
    /* what N() passes for the spoiled argument: NULL, or (the wrong-kind
     * tests) a handle of another kind or an array holding one */
    void *spoil;
    void *spoil_arr[1];
} fx;

#define BAD_VAR ((mp_var)0x00abcdef)
/* Argument i: f->spoil (a pointer: NULL, or a handle of a wrong kind) or
 * BAD_VAR (a variable) when it is the spoiled one (k), else v. */
#define N(i, v) ((k) == (i) ? f->spoil : (v))
#define V(i, v) ((k) == (i) ? BAD_VAR : (v))
#define OUT(i, T) N(i, (T **)&f->out)

typedef mp_status (*call_fn)(fx *f, int k);

/* core */
static mp_status c_config_create(fx *f, int k) { return mp_config_create(OUT(0, mp_config)); }
static mp_status c_config_clone(fx *f, int k) { return mp_config_clone(OUT(0, mp_config), N(1, f->cfg)); }
static mp_status c_config_set_int(fx *f, int k) { return mp_config_set_int(N(0, f->cfg), MP_CFG_SEED, 1); }
static mp_status c_config_set_float(fx *f, int k)
{
    return mp_config_set_float(N(0, f->cfg), MP_CFG_META_INNER_LR, 0.1);
}
static mp_status c_config_get_int(fx *f, int k) { return mp_config_get_int(N(0, f->cfg), MP_CFG_SEED, N(2, &f->i64)); }
static mp_status c_config_get_float(fx *f, int k)
{
    return mp_config_get_float(N(0, f->cfg), MP_CFG_META_INNER_LR, N(2, &f->d1));
}
static mp_status c_config_key_by_name(fx *f, int k)
{
    return mp_config_key_by_name(N(0, "seed"), N(1, f->ibuf));
}

/* data */
static mp_status c_dataset_from_arrays(fx *f, int k)
{
    return mp_dataset_from_arrays(OUT(0, mp_dataset), N(1, f->buf), 2, 2, N(4, f->ibuf), NULL, 0);
}
static mp_status c_dataset_load_idx(fx *f, int k)
{
    return mp_dataset_load_idx(OUT(0, mp_dataset), N(1, "/nonexistent/i"), N(2, "/nonexistent/l"), N(3, NULL));
}
static mp_status c_dataset_load_csv(fx *f, int k)
{
    return mp_dataset_load_csv(OUT(0, mp_dataset), N(1, "/nonexistent.csv"), N(2, NULL));
}
static mp_status c_dataset_size(fx *f, int k) { return mp_dataset_size(N(0, f->ds), N(1, &f->sz)); }
static mp_status c_dataset_dim(fx *f, int k) { return mp_dataset_dim(N(0, f->ds), N(1, f->ibuf)); }
static mp_status c_dataset_target_dim(fx *f, int k) { return mp_dataset_target_dim(N(0, f->ds), N(1, f->ibuf)); }
static mp_status c_dataset_num_classes(fx *f, int k) { return mp_dataset_num_classes(N(0, f->ds), N(1, f->ibuf)); }
static mp_status c_dataset_class_size(fx *f, int k) { return mp_dataset_class_size(N(0, f->ds), 0, N(2, &f->sz)); }
static mp_status c_dataset_class_indices(fx *f, int k)
{
    static size_t idx[16];
    return mp_dataset_class_indices(N(0, f->ds), 0, N(2, idx), 16, N(4, &f->sz));
}
static mp_status c_dataset_sample_shape(fx *f, int k)
{
    return mp_dataset_sample_shape(N(0, f->ds), N(1, f->ibuf), 4, N(3, &f->sz));
}
static mp_status c_dataset_set_sample_shape(fx *f, int k)
{
    static const int32_t dims[2] = {2, 2};
    return mp_dataset_set_sample_shape(N(0, f->ds), N(1, dims), 2);
}
static mp_status c_dataset_get(fx *f, int k) { return mp_dataset_get(N(0, f->ds), 0, N(2, f->buf), 4, N(4, f->ibuf)); }
static mp_status c_dataset_get_target(fx *f, int k) { return mp_dataset_get_target(N(0, f->ds), 0, N(2, f->buf), 4); }
static mp_status c_dataset_select_classes(fx *f, int k)
{
    static const int32_t classes[1] = {0};
    return mp_dataset_select_classes(OUT(0, mp_dataset), N(1, f->ds), N(2, classes), 1);
}
static mp_status c_task_create_classification(fx *f, int k)
{
    static const int32_t lab[2] = {0, 1};
    return mp_task_create_classification(OUT(0, mp_task), 4, 2, N(3, f->buf), N(4, lab), 2, N(6, f->buf), N(7, lab), 2);
}
static mp_status c_task_create_regression(fx *f, int k)
{
    return mp_task_create_regression(OUT(0, mp_task), 1, 1, N(3, f->buf), N(4, f->buf), 2, N(6, f->buf), N(7, f->buf), 2);
}
static mp_status c_task_sizes(fx *f, int k) { return mp_task_sizes(N(0, f->task), NULL, NULL, NULL, NULL, NULL); }
static mp_status c_task_get_support(fx *f, int k)
{
    return mp_task_get_support(N(0, f->task), f->buf, 8, f->ibuf, 2, NULL, 0);
}
static mp_status c_task_get_query(fx *f, int k)
{
    return mp_task_get_query(N(0, f->task), f->buf, 8, f->ibuf, 2, NULL, 0);
}
static mp_status c_task_sinusoid(fx *f, int k) { return mp_task_sinusoid(OUT(0, mp_task), 1, 2, 3, 4); }
static mp_status c_task_sinusoid_params(fx *f, int k) { return mp_task_sinusoid_params(N(0, f->sine), NULL, NULL); }
static mp_status c_sampler_create(fx *f, int k)
{
    return mp_sampler_create(OUT(0, mp_sampler), N(1, f->ds), N(2, f->cfg));
}
static mp_status c_sampler_create_sinusoid(fx *f, int k)
{
    return mp_sampler_create_sinusoid(OUT(0, mp_sampler), N(1, NULL));
}
static mp_status c_sampler_episode(fx *f, int k) { return mp_sampler_episode(N(0, f->sampler), 0, OUT(2, mp_task)); }
static mp_status c_sampler_episode_into(fx *f, int k)
{
    return mp_sampler_episode_into(N(0, f->sampler), 0, N(2, f->task));
}
static mp_status c_sampler_next(fx *f, int k) { return mp_sampler_next(N(0, f->sampler), OUT(1, mp_task)); }
static mp_status c_sampler_get_position(fx *f, int k) { return mp_sampler_get_position(N(0, f->sampler), N(1, &f->u64)); }
static mp_status c_sampler_set_position(fx *f, int k) { return mp_sampler_set_position(N(0, f->sampler), 0); }
static mp_status c_sampler_info(fx *f, int k) { return mp_sampler_info(N(0, f->sampler), NULL, NULL, NULL, NULL); }

/* model, prompt, checkpoints */
static mp_status c_model_create(fx *f, int k) { return mp_model_create(OUT(0, mp_model), N(1, f->cfg)); }
static mp_status c_model_clone(fx *f, int k) { return mp_model_clone(OUT(0, mp_model), N(1, f->model)); }
static mp_status c_model_get_int(fx *f, int k)
{
    return mp_model_get_int(N(0, f->model), MP_CFG_MODEL_KIND, N(2, &f->i64));
}
static mp_status c_model_num_params(fx *f, int k) { return mp_model_num_params(N(0, f->model), N(1, &f->sz)); }
static mp_status c_model_get_params(fx *f, int k)
{
    return mp_model_get_params(N(0, f->model), N(1, f->buf), sizeof f->buf / sizeof f->buf[0]);
}
static mp_status c_model_set_params(fx *f, int k)
{
    size_t n = 0;
    MP_CK_OK(mp_model_num_params(f->model, &n));
    return mp_model_set_params(N(0, f->model), N(1, f->buf), n);
}
static mp_status c_model_prompt_shape(fx *f, int k) { return mp_model_prompt_shape(N(0, f->model), NULL, NULL); }
static mp_status c_model_predict(fx *f, int k)
{
    return mp_model_predict(N(0, f->model), N(1, f->prompt), N(2, f->buf), 2, 8, N(5, f->buf + 16), 4);
}
static mp_status c_model_loss(fx *f, int k)
{
    static const int32_t lab[2] = {0, 1};
    float loss;
    return mp_model_loss(N(0, f->model), N(1, f->prompt), N(2, f->buf), 2, 8, N(5, lab), NULL, N(7, &loss));
}
static mp_status c_prompt_create(fx *f, int k) { return mp_prompt_create(OUT(0, mp_prompt), N(1, f->model)); }
static mp_status c_prompt_shape(fx *f, int k) { return mp_prompt_shape(N(0, f->prompt), NULL, NULL); }
static mp_status c_prompt_init(fx *f, int k) { return mp_prompt_init(N(0, f->prompt2), MP_PROMPT_INIT_ZEROS, 0, 0); }
static mp_status c_prompt_init_from_data(fx *f, int k)
{
    return mp_prompt_init_from_data(N(0, f->prompt2), N(1, f->model), N(2, f->buf), 2, 8);
}
static mp_status c_prompt_get(fx *f, int k) { return mp_prompt_get(N(0, f->prompt), N(1, f->buf), 8); }
static mp_status c_prompt_set(fx *f, int k) { return mp_prompt_set(N(0, f->prompt2), N(1, f->buf), 8); }
static mp_status c_prompt_copy(fx *f, int k) { return mp_prompt_copy(N(0, f->prompt2), N(1, f->prompt)); }
static mp_status c_checkpoint_save(fx *f, int k)
{
    return mp_checkpoint_save(N(0, "/nonexistent/x.mpck"), N(1, f->model), N(2, f->prompt), N(3, f->meta));
}
static mp_status c_checkpoint_load(fx *f, int k)
{
    return mp_checkpoint_load(N(0, "/nonexistent/x.mpck"), N(1, f->model), N(2, f->prompt), N(3, f->meta));
}
static mp_status c_checkpoint_save_with_sampler(fx *f, int k)
{
    return mp_checkpoint_save_with_sampler(N(0, "/nonexistent/x.mpck"), N(1, f->model), N(2, f->prompt),
                                           N(3, f->meta), N(4, f->sampler));
}
static mp_status c_checkpoint_load_with_sampler(fx *f, int k)
{
    return mp_checkpoint_load_with_sampler(N(0, "/nonexistent/x.mpck"), N(1, f->model), N(2, f->prompt),
                                           N(3, f->meta), N(4, f->sampler));
}
static mp_status c_model_create_from_checkpoint(fx *f, int k)
{
    return mp_model_create_from_checkpoint(OUT(0, mp_model), N(1, "/nonexistent/x.mpck"));
}

/* meta */
static mp_status c_meta_create(fx *f, int k)
{
    return mp_meta_create(OUT(0, mp_meta), N(1, f->model), N(2, f->prompt), N(3, f->cfg));
}
static mp_status c_meta_step(fx *f, int k)
{
    double stats[MP_META_NUM_STATS];
    return mp_meta_step(N(0, f->meta), N(1, &f->task), 1, N(3, stats), MP_META_NUM_STATS);
}
static mp_status c_meta_compute_gradients(fx *f, int k)
{
    double stats[MP_META_NUM_STATS];
    return mp_meta_compute_gradients(N(0, f->meta), N(1, &f->task), 1, N(3, stats), MP_META_NUM_STATS);
}
static mp_status c_meta_gradient_size(fx *f, int k) { return mp_meta_gradient_size(N(0, f->meta), N(1, &f->sz)); }
static mp_status c_meta_get_gradients(fx *f, int k)
{
    return mp_meta_get_gradients(N(0, f->meta), N(1, f->buf), sizeof f->buf / sizeof f->buf[0]);
}
static mp_status c_meta_set_gradients(fx *f, int k)
{
    size_t n = 0;
    MP_CK_OK(mp_meta_gradient_size(f->meta, &n));
    return mp_meta_set_gradients(N(0, f->meta), N(1, f->buf), n);
}
static mp_status c_meta_apply_gradients(fx *f, int k) { return mp_meta_apply_gradients(N(0, f->meta)); }
static mp_status c_meta_step_count(fx *f, int k) { return mp_meta_step_count(N(0, f->meta), N(1, &f->i64)); }
static mp_status c_meta_adapt(fx *f, int k)
{
    return mp_meta_adapt(N(0, f->meta), N(1, f->task), N(2, f->prompt2), N(3, NULL));
}
static mp_status c_meta_evaluate(fx *f, int k)
{
    return mp_meta_evaluate(N(0, f->meta), N(1, f->sampler), 0, 1, N(4, &f->d1), N(5, &f->d2));
}
static mp_status c_meta_evaluate_tasks(fx *f, int k)
{
    return mp_meta_evaluate_tasks(N(0, f->meta), N(1, &f->task), 1, N(3, &f->d1), N(4, &f->d2));
}
static mp_status c_meta_set_progress(fx *f, int k) { return mp_meta_set_progress(N(0, f->meta), NULL, NULL); }
static mp_status c_meta_set_eval_steps(fx *f, int k) { return mp_meta_set_eval_steps(N(0, f->meta), 1); }
static mp_status c_meta_get_int(fx *f, int k)
{
    return mp_meta_get_int(N(0, f->meta), MP_CFG_META_INNER_STEPS, N(2, &f->i64));
}
static mp_status c_meta_get_float(fx *f, int k) { return mp_meta_get_float(N(0, f->meta), MP_CFG_META_OUTER_LR, N(2, &f->d1)); }
static mp_status c_meta_set_int(fx *f, int k) { return mp_meta_set_int(N(0, f->meta), MP_CFG_META_EVAL_INNER_STEPS, 1); }
static mp_status c_meta_set_float(fx *f, int k) { return mp_meta_set_float(N(0, f->meta), MP_CFG_META_CLIP_NORM, 0.0); }
static mp_status c_meta_inner_lr_count(fx *f, int k) { return mp_meta_inner_lr_count(N(0, f->meta), N(1, &f->sz)); }
static mp_status c_meta_get_inner_lr(fx *f, int k)
{
    return mp_meta_get_inner_lr(N(0, f->meta), N(1, f->buf), sizeof f->buf / sizeof f->buf[0]);
}

/* tape */
static mp_status c_tape_create(fx *f, int k) { return mp_tape_create(OUT(0, mp_tape)); }
static mp_status c_tape_reset(fx *f, int k) { return mp_tape_reset(N(0, f->tape)); }
static mp_status c_tape_stat(fx *f, int k) { return mp_tape_stat(N(0, f->tape), MP_TAPE_STAT_NODES, N(2, &f->i64)); }
static mp_status c_tape_leaf(fx *f, int k) { return mp_tape_leaf(N(0, f->tape), 2, 2, N(3, f->buf), 4, 0, N(6, &f->v)); }
static mp_status c_tape_fill(fx *f, int k) { return mp_tape_fill(N(0, f->tape), 2, 2, 1.0f, N(4, &f->v)); }
static mp_status c_tape_shape(fx *f, int k)
{
    return mp_tape_shape(N(0, f->tape), V(1, f->a), N(2, f->ibuf), N(3, f->ibuf + 1));
}
static mp_status c_tape_read(fx *f, int k) { return mp_tape_read(N(0, f->tape), V(1, f->a), N(2, f->buf), 4); }
static mp_status c_tape_scalar(fx *f, int k) { return mp_tape_scalar(N(0, f->tape), V(1, f->loss), N(2, f->buf)); }
static mp_status c_tape_backward(fx *f, int k) { return mp_tape_backward(N(0, f->tape), V(1, f->loss), 0); }
static mp_status c_tape_backward_wrt(fx *f, int k)
{
    return mp_tape_backward_wrt(N(0, f->tape), V(1, f->loss), 0, N(3, &f->a), 1);
}
static mp_status c_tape_grad(fx *f, int k) { return mp_tape_grad(N(0, f->tape), V(1, f->a), N(2, &f->v)); }
#define UNARY(op)                                                                                   \
    static mp_status c_##op(fx *f, int k) { return mp_##op(N(0, f->tape), V(1, f->a), N(2, &f->v)); }
#define BINARY(op)                                                                                  \
    static mp_status c_##op(fx *f, int k)                                                           \
    {                                                                                               \
        return mp_##op(N(0, f->tape), V(1, f->a), V(2, f->a), N(3, &f->v));                         \
    }
UNARY(relu)
UNARY(tanh)
UNARY(sigmoid)
UNARY(gelu)
UNARY(exp)
UNARY(log)
UNARY(sqrt)
UNARY(square)
UNARY(softmax)
UNARY(log_softmax)
UNARY(transpose)
BINARY(add)
BINARY(sub)
BINARY(mul)
BINARY(div)
BINARY(mse)
static mp_status c_scale(fx *f, int k) { return mp_scale(N(0, f->tape), V(1, f->a), 2.0f, N(3, &f->v)); }
static mp_status c_add_scalar(fx *f, int k) { return mp_add_scalar(N(0, f->tape), V(1, f->a), 2.0f, N(3, &f->v)); }
static mp_status c_sum(fx *f, int k) { return mp_sum(N(0, f->tape), V(1, f->a), MP_REDUCE_ALL, N(3, &f->v)); }
static mp_status c_mean(fx *f, int k) { return mp_mean(N(0, f->tape), V(1, f->a), MP_REDUCE_ALL, N(3, &f->v)); }
static mp_status c_matmul(fx *f, int k) { return mp_matmul(N(0, f->tape), V(1, f->a), V(2, f->a), 0, 0, N(5, &f->v)); }
static mp_status c_batch_matmul(fx *f, int k)
{
    return mp_batch_matmul(N(0, f->tape), V(1, f->a), V(2, f->a), 1, 0, 0, N(6, &f->v));
}
static mp_status c_cross_entropy(fx *f, int k)
{
    static const int32_t lab[2] = {0, 1};
    return mp_cross_entropy(N(0, f->tape), V(1, f->a), N(2, lab), 2, N(4, &f->v));
}
static mp_status c_layer_norm(fx *f, int k)
{
    return mp_layer_norm(N(0, f->tape), V(1, f->a), V(2, MP_VAR_NONE), V(3, MP_VAR_NONE), 1e-5f, N(5, &f->v));
}
static mp_status c_gather_rows(fx *f, int k)
{
    static const int32_t idx[2] = {0, 1};
    return mp_gather_rows(N(0, f->tape), V(1, f->a), N(2, idx), 2, N(4, &f->v));
}
static mp_status c_concat(fx *f, int k) { return mp_concat(N(0, f->tape), V(1, f->a), V(2, f->a), MP_AXIS_ROWS, N(4, &f->v)); }
static mp_status c_slice(fx *f, int k) { return mp_slice(N(0, f->tape), V(1, f->a), MP_AXIS_ROWS, 0, 1, N(5, &f->v)); }
static mp_status c_reshape(fx *f, int k) { return mp_reshape(N(0, f->tape), V(1, f->a), 1, 4, N(4, &f->v)); }
static mp_status c_conv2d(fx *f, int k)
{
    return mp_conv2d(N(0, f->tape), V(1, f->a), V(2, f->a), V(3, MP_VAR_NONE), 1, 2, 2, 1, 1, 0, N(10, &f->v));
}
static mp_status c_maxpool2d(fx *f, int k) { return mp_maxpool2d(N(0, f->tape), V(1, f->a), 1, 2, 2, N(5, &f->v)); }
static mp_status c_split_heads(fx *f, int k) { return mp_split_heads(N(0, f->tape), V(1, f->a), 1, 2, 1, N(5, &f->v)); }
static mp_status c_merge_heads(fx *f, int k) { return mp_merge_heads(N(0, f->tape), V(1, f->a), 1, 2, 1, N(5, &f->v)); }

/* Every MP_API function returning mp_status that takes a pointer or a
 * variable. `optional`: the parameters that may be NULL in the call as
 * written (documented as optional, or optional given the other
 * arguments), space-separated; call is NULL when every one is. */
typedef struct {
    const char *fn;
    call_fn call;
    const char *optional;
} call_entry;

#define E(name, opt) {"mp_" #name, c_##name, opt}
static const call_entry calls[] = {
    {"mp_set_allocator", NULL, "user_data"},
    {"mp_set_log_callback", NULL, "user_data"},
    E(config_create, ""),
    E(config_clone, ""),
    E(config_set_int, ""),
    E(config_set_float, ""),
    E(config_get_int, ""),
    E(config_get_float, ""),
    E(config_key_by_name, ""),
    E(dataset_from_arrays, "targets"),
    E(dataset_load_idx, "cfg"),
    E(dataset_load_csv, "cfg"),
    E(dataset_size, ""),
    E(dataset_dim, ""),
    E(dataset_target_dim, ""),
    E(dataset_num_classes, ""),
    E(dataset_class_size, ""),
    E(dataset_class_indices, ""),
    E(dataset_sample_shape, ""),
    E(dataset_set_sample_shape, ""),
    E(dataset_get, "label"),
    E(dataset_get_target, ""),
    E(dataset_select_classes, ""),
    E(task_create_classification, ""),
    E(task_create_regression, ""),
    E(task_sizes, "n_support n_query dim n_way target_dim"),
    E(task_get_support, "x labels targets"),
    E(task_get_query, "x labels targets"),
    E(task_sinusoid, ""),
    E(task_sinusoid_params, "amplitude phase"),
    E(sampler_create, "cfg"),
    E(sampler_create_sinusoid, "cfg"),
    E(sampler_episode, ""),
    E(sampler_episode_into, ""),
    E(sampler_next, ""),
    E(sampler_get_position, ""),
    E(sampler_set_position, ""),
    E(sampler_info, "ways shots queries dim"),
    E(model_create, "cfg"),
    E(model_clone, ""),
    E(model_get_int, ""),
    E(model_num_params, ""),
    E(model_get_params, ""),
    E(model_set_params, ""),
    E(model_prompt_shape, "rows cols"),
    E(model_predict, "prompt"),
    E(model_loss, "prompt targets"),
    E(prompt_create, ""),
    E(prompt_shape, "rows cols"),
    E(prompt_init, ""),
    E(prompt_init_from_data, ""),
    E(prompt_get, ""),
    E(prompt_set, ""),
    E(prompt_copy, ""),
    E(checkpoint_save, "prompt meta"),
    E(checkpoint_load, "prompt meta"),
    E(checkpoint_save_with_sampler, "prompt meta sampler"),
    E(checkpoint_load_with_sampler, "prompt meta sampler"),
    E(model_create_from_checkpoint, ""),
    E(meta_create, "cfg"),
    E(meta_step, "stats"),
    E(meta_compute_gradients, "stats"),
    E(meta_gradient_size, ""),
    E(meta_get_gradients, ""),
    E(meta_set_gradients, ""),
    E(meta_apply_gradients, ""),
    E(meta_step_count, ""),
    E(meta_adapt, "out_model"),
    E(meta_evaluate, ""),
    E(meta_evaluate_tasks, ""),
    E(meta_set_progress, "user_data"),
    E(meta_set_eval_steps, ""),
    E(meta_get_int, ""),
    E(meta_get_float, ""),
    E(meta_set_int, ""),
    E(meta_set_float, ""),
    E(meta_inner_lr_count, ""),
    E(meta_get_inner_lr, ""),
    E(tape_create, ""),
    E(tape_reset, ""),
    E(tape_stat, ""),
    E(tape_leaf, ""),
    E(tape_fill, ""),
    E(tape_shape, ""),
    E(tape_read, ""),
    E(tape_scalar, ""),
    E(tape_backward, ""),
    E(tape_backward_wrt, ""),
    E(tape_grad, ""),
    E(matmul, ""),
    E(add, ""),
    E(sub, ""),
    E(mul, ""),
    E(div, ""),
    E(scale, ""),
    E(add_scalar, ""),
    E(sum, ""),
    E(mean, ""),
    E(relu, ""),
    E(tanh, ""),
    E(sigmoid, ""),
    E(gelu, ""),
    E(exp, ""),
    E(log, ""),
    E(sqrt, ""),
    E(square, ""),
    E(softmax, ""),
    E(log_softmax, ""),
    E(cross_entropy, ""),
    E(mse, ""),
    E(layer_norm, ""),
    E(gather_rows, ""),
    E(concat, ""),
    E(slice, ""),
    E(reshape, ""),
    E(transpose, ""),
    E(conv2d, ""),
    E(maxpool2d, ""),
    E(batch_matmul, ""),
    E(split_heads, ""),
    E(merge_heads, ""),
};
#undef E

static int is_optional(const call_entry *e, const char *param)
{
    size_t n = strlen(param);
    for (const char *p = e->optional; (p = strstr(p, param)) != NULL; p += n)
        if ((p == e->optional || p[-1] == ' ') && (p[n] == '\0' || p[n] == ' ')) return 1;
    return 0;
}

static void fx_open(fx *f)
{
    memset(f, 0, sizeof *f);
    for (size_t i = 0; i < sizeof f->buf / sizeof f->buf[0]; i++) f->buf[i] = (float)(i % 7) * 0.25f;
    MP_CK_OK(mp_config_create(&f->cfg));
    const int64_t kv[] = {MP_CFG_MODEL_KIND, MP_MODEL_MLP, MP_CFG_MODEL_INPUT_DIM, 4, MP_CFG_MODEL_OUTPUT_DIM, 2,
                          MP_CFG_MODEL_TASK, MP_TASK_CLASSIFICATION, MP_CFG_MODEL_PROMPT_LEN, 2,
                          MP_CFG_MODEL_HIDDEN_LAYERS, 1, MP_CFG_MODEL_HIDDEN_WIDTH, 8,
                          MP_CFG_META_ALGORITHM, MP_META_METASGD, MP_CFG_META_SCOPE, MP_SCOPE_PROMPT_HEAD,
                          MP_CFG_DATA_WAYS, 2, MP_CFG_DATA_SHOTS, 1, MP_CFG_DATA_QUERIES, 1, 0};
    for (const int64_t *p = kv; p[0]; p += 2) MP_CK_OK(mp_config_set_int(f->cfg, (int32_t)p[0], p[1]));
    MP_CK_OK(mp_model_create(&f->model, f->cfg));
    MP_CK_OK(mp_prompt_create(&f->prompt, f->model));
    MP_CK_OK(mp_prompt_create(&f->prompt2, f->model));
    int32_t lab[8] = {0, 1, 0, 1, 0, 1, 0, 1};
    MP_CK_OK(mp_dataset_from_arrays(&f->ds, f->buf, 8, 4, lab, NULL, 0));
    MP_CK_OK(mp_task_create_classification(&f->task, 4, 2, f->buf, lab, 2, f->buf + 8, lab, 2));
    MP_CK_OK(mp_task_sinusoid(&f->sine, 1, 0, 5, 5));
    MP_CK_OK(mp_sampler_create(&f->sampler, f->ds, f->cfg));
    MP_CK_OK(mp_meta_create(&f->meta, f->model, f->prompt, f->cfg));
    MP_CK_OK(mp_tape_create(&f->tape));
    MP_CK_OK(mp_tape_leaf(f->tape, 2, 2, f->buf, 4, MP_LEAF_REQUIRES_GRAD, &f->a));
    MP_CK_OK(mp_sum(f->tape, f->a, MP_REDUCE_ALL, &f->loss));
    MP_CK_OK(mp_tape_backward(f->tape, f->loss, 0));
}

static void fx_free(fx *f)
{
    mp_tape_destroy(f->tape);
    mp_meta_destroy(f->meta);
    mp_sampler_destroy(f->sampler);
    mp_task_destroy(f->sine);
    mp_task_destroy(f->task);
    mp_dataset_destroy(f->ds);
    mp_prompt_destroy(f->prompt2);
    mp_prompt_destroy(f->prompt);
    mp_model_destroy(f->model);
    mp_config_destroy(f->cfg);
}

static void fx_close(fx *f)
{
    fx_free(f);
    ck_assert_int_eq(mp_live_allocations(), 0);
}

/* ---- the tests ----------------------------------------------------------------- */
START_TEST(messages_name_the_header_arguments)
{
    parse_headers();
    static fx f;
    fx_open(&f);
    size_t ncalls = sizeof calls / sizeof calls[0];
    int checked = 0, functions = 0, nbad = 0;
    static char bad[1 << 16];
    bad[0] = '\0';
    for (int i = 0; i < g_ndecls; i++) {
        const decl *d = &g_decls[i];
        int spoilable = 0;
        for (int p = 0; p < d->n; p++) spoilable |= d->pointer[p] || d->var[p];
        if (strcmp(d->ret, "mp_status") != 0 || !spoilable) continue;
        const call_entry *e = NULL;
        for (size_t j = 0; j < ncalls; j++)
            if (strcmp(calls[j].fn, d->name) == 0) e = &calls[j];
        ck_assert_msg(e != NULL, "%s takes a pointer or a variable but has no entry in the table of calls "
                      "(tests/test_arg_names.c)", d->name);
        functions++;
        for (int p = 0; p < d->n; p++) {
            if (!(d->pointer[p] || d->var[p]) || is_optional(e, d->param[p])) continue;
            ck_assert_msg(e->call != NULL, "%s: no call in the table to pass a bad '%s'", d->name, d->param[p]);
            mp_clear_error();
            mp_status st = e->call(&f, p);
            mp_status want = d->pointer[p] ? MP_ERR_NULL_POINTER : MP_ERR_UNKNOWN_VARIABLE;
            const char *msg = mp_last_error();
            char quoted[sizeof d->param[0] + 2], prefix[sizeof d->name + 2];
            size_t np = strlen(d->param[p]), nn = strlen(d->name);
            quoted[0] = '\'';
            memcpy(quoted + 1, d->param[p], np);
            memcpy(quoted + 1 + np, "'", 2);
            memcpy(prefix, d->name, nn);
            memcpy(prefix + nn, ": ", 3);
            if (st != want || strncmp(msg, prefix, nn + 2) != 0 || strstr(msg, quoted) == NULL) {
                /* all of them, not just the first */
                size_t used = strlen(bad);
                snprintf(bad + used, sizeof bad - used, "\n  %s with a bad %s: status %d (expected %d), \"%s\"",
                         d->name, quoted, (int)st, (int)want, msg);
                nbad++;
            }
            checked++;
        }
    }
    /* every entry of the table is a declared function taking a pointer or a variable */
    for (size_t j = 0; j < ncalls; j++) {
        const decl *d = find_decl(calls[j].fn);
        ck_assert_msg(d != NULL, "%s is in the table of calls but not declared in the headers", calls[j].fn);
        int spoilable = 0;
        for (int p = 0; p < d->n; p++) spoilable |= d->pointer[p] || d->var[p];
        ck_assert_msg(spoilable, "%s in the table of calls takes no pointer or variable", calls[j].fn);
        for (const char *o = calls[j].optional; *o;) {
            size_t n = strcspn(o, " ");
            int found = 0;
            for (int p = 0; p < d->n; p++)
                found |= strlen(d->param[p]) == n && strncmp(d->param[p], o, n) == 0;
            ck_assert_msg(found, "%s: optional '%.*s' is not one of its parameters", calls[j].fn, (int)n, o);
            o += n + (o[n] == ' ');
        }
    }
    ck_assert_msg(nbad == 0, "%d messages do not start with \"<function>: \" or do not name the argument "
                  "as the header does (in quotes), or the status is not MP_ERR_NULL_POINTER (a NULL "
                  "pointer) or MP_ERR_UNKNOWN_VARIABLE (a bad variable):%s", nbad, bad);
    ck_assert_int_eq((size_t)functions, ncalls);
    ck_assert_int_ge(checked, 250);
    fx_close(&f);
}
END_TEST

/* ---- handles of the wrong kind ------------------------------------------------- */
/* The handle of kind_names[kind] of a fixture. */
static void *fx_handle(fx *f, int kind)
{
    void *h[NKINDS] = {f->cfg, f->model, f->prompt, f->ds, f->task, f->sampler, f->meta, f->tape};
    return h[kind];
}

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++) h = (h ^ c[i]) * 1099511628211ull;
    return h;
}
#define FP(x) (h = fnv(h, &(x), sizeof(x)))
#define FP_STR(s) (h = fnv(h, (s), strlen(s) + 1))

/* What the getters of the fixture's handle of a kind say, hashed (each
 * getter must succeed): its error message and its observable state. */
static uint64_t fingerprint(fx *f, int kind)
{
    static float buf[8192];
    uint64_t h = 1469598103934665603ull, u64 = 0;
    int64_t i64 = 0;
    double d = 0;
    size_t a = 0, b = 0;
    int32_t r = 0, c = 0, e = 0, g = 0, lab[8] = {0};
    memset(buf, 0, sizeof buf);
    switch (kind) {
    case 0: {
        static const int32_t keys[] = {MP_CFG_SEED, MP_CFG_MODEL_KIND, MP_CFG_MODEL_INPUT_DIM, MP_CFG_META_ALGORITHM,
                                       MP_CFG_DATA_WAYS};
        FP_STR(mp_config_error(f->cfg));
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
            MP_CK_OK(mp_config_get_int(f->cfg, keys[i], &i64));
            FP(i64);
            r = mp_config_is_set(f->cfg, keys[i]);
            FP(r);
        }
        MP_CK_OK(mp_config_get_float(f->cfg, MP_CFG_META_INNER_LR, &d));
        FP(d);
        break;
    }
    case 1:
        FP_STR(mp_model_error(f->model));
        MP_CK_OK(mp_model_num_params(f->model, &a));
        ck_assert_uint_le(a, sizeof buf / sizeof buf[0]);
        MP_CK_OK(mp_model_get_params(f->model, buf, a));
        h = fnv(h, buf, a * sizeof(float));
        MP_CK_OK(mp_model_get_int(f->model, MP_CFG_MODEL_KIND, &i64));
        MP_CK_OK(mp_model_prompt_shape(f->model, &r, &c));
        FP(i64), FP(r), FP(c);
        break;
    case 2:
        FP_STR(mp_prompt_error(f->prompt));
        MP_CK_OK(mp_prompt_shape(f->prompt, &r, &c));
        MP_CK_OK(mp_prompt_get(f->prompt, buf, (size_t)r * (size_t)c));
        FP(r), FP(c);
        h = fnv(h, buf, (size_t)r * (size_t)c * sizeof(float));
        break;
    case 3:
        FP_STR(mp_dataset_error(f->ds));
        MP_CK_OK(mp_dataset_size(f->ds, &a));
        MP_CK_OK(mp_dataset_dim(f->ds, &r));
        MP_CK_OK(mp_dataset_num_classes(f->ds, &c));
        MP_CK_OK(mp_dataset_get(f->ds, 1, buf, 4, &e));
        FP(a), FP(r), FP(c), FP(e);
        h = fnv(h, buf, 4 * sizeof(float));
        break;
    case 4:
        FP_STR(mp_task_error(f->task));
        MP_CK_OK(mp_task_sizes(f->task, &a, &b, &r, &c, &e));
        MP_CK_OK(mp_task_get_query(f->task, buf, 8, lab, 2, NULL, 0));
        FP(a), FP(b), FP(r), FP(c), FP(e), FP(lab);
        h = fnv(h, buf, 8 * sizeof(float));
        break;
    case 5:
        FP_STR(mp_sampler_error(f->sampler));
        MP_CK_OK(mp_sampler_get_position(f->sampler, &u64));
        MP_CK_OK(mp_sampler_info(f->sampler, &r, &c, &e, &g));
        FP(u64), FP(r), FP(c), FP(e), FP(g);
        break;
    case 6:
        FP_STR(mp_meta_error(f->meta));
        MP_CK_OK(mp_meta_step_count(f->meta, &i64));
        MP_CK_OK(mp_meta_gradient_size(f->meta, &a));
        MP_CK_OK(mp_meta_inner_lr_count(f->meta, &b));
        ck_assert_uint_le(b, sizeof buf / sizeof buf[0]);
        MP_CK_OK(mp_meta_get_inner_lr(f->meta, buf, b));
        FP(i64), FP(a), FP(b);
        h = fnv(h, buf, b * sizeof(float));
        break;
    default:
        FP_STR(mp_tape_error(f->tape));
        MP_CK_OK(mp_tape_stat(f->tape, MP_TAPE_STAT_NODES, &i64));
        FP(i64);
        MP_CK_OK(mp_tape_stat(f->tape, MP_TAPE_STAT_ARENA_USED, &i64));
        FP(i64);
        MP_CK_OK(mp_tape_read(f->tape, f->a, buf, 4));
        MP_CK_OK(mp_tape_scalar(f->tape, f->loss, buf + 4));
        h = fnv(h, buf, 5 * sizeof(float));
        break;
    }
    return h;
}
#undef FP
#undef FP_STR

/* A pointer to no handle at all (what a foreign pointer reads as). The
 * tests pass g_foreign + 1: a foreign pointer need not even be aligned
 * for a handle, and reading its tag must still be defined behaviour (the
 * sanitizer build checks it). */
static _Alignas(64) unsigned char g_foreign[1 << 16];

/* Checks the message of a wrong-kind failure of fn for argument param
 * (quoted; arrays: 'param[0]') wanting kind `want` when given kind `given`
 * (-1: the foreign pointer). */
static int kind_message_ok(const char *msg, const char *fn, const char *param, int array, int want, int given)
{
    char quoted[64], kinds[128];
    size_t n = strlen(fn);
    snprintf(quoted, sizeof quoted, array ? "'%s[0]'" : "'%s'", param);
    if (given >= 0)
        snprintf(kinds, sizeof kinds, "is not an %s handle (it is an %s)", kind_names[want], kind_names[given]);
    else
        snprintf(kinds, sizeof kinds, "is not an %s handle (unknown tag 0x", kind_names[want]);
    return strncmp(msg, fn, n) == 0 && msg[n] == ':' && msg[n + 1] == ' ' && strstr(msg, quoted) != NULL && strstr(msg, kinds) != NULL;
}

/* The public functions that take a handle and return no status: called
 * directly (no casts of function pointers), with the spoiled argument k
 * as in the table of calls. They return the string result (error) or NULL. */
static const char *o_config_destroy(fx *f, int k) { mp_config_destroy(N(0, f->cfg)); return NULL; }
static const char *o_dataset_destroy(fx *f, int k) { mp_dataset_destroy(N(0, f->ds)); return NULL; }
static const char *o_task_destroy(fx *f, int k) { mp_task_destroy(N(0, f->task)); return NULL; }
static const char *o_sampler_destroy(fx *f, int k) { mp_sampler_destroy(N(0, f->sampler)); return NULL; }
static const char *o_model_destroy(fx *f, int k) { mp_model_destroy(N(0, f->model)); return NULL; }
static const char *o_prompt_destroy(fx *f, int k) { mp_prompt_destroy(N(0, f->prompt)); return NULL; }
static const char *o_meta_destroy(fx *f, int k) { mp_meta_destroy(N(0, f->meta)); return NULL; }
static const char *o_tape_destroy(fx *f, int k) { mp_tape_destroy(N(0, f->tape)); return NULL; }
static const char *o_config_error(fx *f, int k) { return mp_config_error(N(0, f->cfg)); }
static const char *o_dataset_error(fx *f, int k) { return mp_dataset_error(N(0, f->ds)); }
static const char *o_task_error(fx *f, int k) { return mp_task_error(N(0, f->task)); }
static const char *o_sampler_error(fx *f, int k) { return mp_sampler_error(N(0, f->sampler)); }
static const char *o_model_error(fx *f, int k) { return mp_model_error(N(0, f->model)); }
static const char *o_prompt_error(fx *f, int k) { return mp_prompt_error(N(0, f->prompt)); }
static const char *o_meta_error(fx *f, int k) { return mp_meta_error(N(0, f->meta)); }
static const char *o_tape_error(fx *f, int k) { return mp_tape_error(N(0, f->tape)); }
static const char *o_config_is_set(fx *f, int k)
{
    return mp_config_is_set(N(0, f->cfg), MP_CFG_MODEL_KIND) ? "1" : "0";
}

typedef struct {
    const char *fn;
    const char *(*call)(fx *f, int k);
} other_entry;
#define O(name) {"mp_" #name, o_##name}
static const other_entry others[] = {
    O(config_destroy), O(dataset_destroy), O(task_destroy), O(sampler_destroy), O(model_destroy),
    O(prompt_destroy), O(meta_destroy),    O(tape_destroy), O(config_error),    O(dataset_error),
    O(task_error),     O(sampler_error),   O(model_error),  O(prompt_error),    O(meta_error),
    O(tape_error),     O(config_is_set),
};
#undef O

static int takes_handle(const decl *d)
{
    for (int p = 0; p < d->n; p++)
        if (d->hkind[p] >= 0) return 1;
    return 0;
}

/* Every public function taking a handle (found in the headers: a parameter
 * of type mp_x *, const mp_x * or mp_x *const *) is called with, in each
 * handle position in turn, the fixture's handle of every other kind and a
 * foreign pointer: MP_ERR_INVALID_ARGUMENT (functions returning a status),
 * a message "<function>: ... '<argument>' ... is not an <kind> handle (it is
 * an <other kind>)" in mp_last_error(), and the handle passed unchanged and
 * working (its getters say what they said before). A function of the
 * headers missing from the tables fails the test. */
START_TEST(handles_of_the_wrong_kind_are_refused)
{
    parse_headers();
    /* f gives the valid arguments, w the handles of the wrong kind (never
     * also a valid argument of the same call) */
    static fx f, w;
    fx_open(&f);
    fx_open(&w);
    size_t ncalls = sizeof calls / sizeof calls[0], nothers = sizeof others / sizeof others[0];
    int functions = 0, checked = 0, nbad = 0;
    static char bad[1 << 16];
    bad[0] = '\0';
    mp_test_log log;
    memset(&log, 0, sizeof log);
    MP_CK_OK(mp_set_log_callback(mp_test_record_log, MP_LOG_DEBUG, &log));
    memset(g_foreign, 0xa5, sizeof g_foreign);
    for (int i = 0; i < g_ndecls; i++) {
        const decl *d = &g_decls[i];
        if (!takes_handle(d)) continue;
        const call_entry *e = NULL;
        const other_entry *o = NULL;
        for (size_t j = 0; j < ncalls; j++)
            if (strcmp(calls[j].fn, d->name) == 0) e = &calls[j];
        for (size_t j = 0; j < nothers; j++)
            if (strcmp(others[j].fn, d->name) == 0) o = &others[j];
        int status = strcmp(d->ret, "mp_status") == 0;
        ck_assert_msg(status ? e != NULL && e->call != NULL : o != NULL,
                      "%s takes a handle but has no call in the table of %s (tests/test_arg_names.c)", d->name,
                      status ? "calls" : "functions returning no status (others)");
        functions++;
        for (int p = 0; p < d->n; p++) {
            int want = d->hkind[p];
            if (want < 0) continue;
            for (int given = -1; given < NKINDS; given++) {
                if (given == want) continue;
                void *wrong = given >= 0 ? fx_handle(&w, given) : (void *)(g_foreign + 1);
                uint64_t before = given >= 0 ? fingerprint(&w, given) : 0;
                long live = (long)mp_live_allocations();
                f.spoil_arr[0] = wrong;
                f.spoil = d->harray[p] ? (void *)f.spoil_arr : wrong;
                f.out = NULL;
                log.count = 0;
                mp_clear_error();
                mp_status st = MP_ERR_INVALID_ARGUMENT;
                const char *ret = NULL;
                if (status) st = e->call(&f, p);
                else ret = o->call(&f, p);
                f.spoil = NULL;
                char msg[1024];
                snprintf(msg, sizeof msg, "%s", mp_last_error());
                int ok = st == MP_ERR_INVALID_ARGUMENT &&
                         kind_message_ok(msg, d->name, d->param[p], d->harray[p], want, given) && f.out == NULL &&
                         (long)mp_live_allocations() == live;
                if (!status && strstr(d->name, "_error")) /* the message is also the result */
                    ok = ok && ret && strcmp(ret, msg) == 0;
                if (!status && strstr(d->name, "_is_set")) ok = ok && ret && strcmp(ret, "0") == 0;
                if (!status && strstr(d->name, "_destroy")) /* logged, since there is no status */
                    ok = ok && log.count == 1 && log.level == MP_LOG_ERROR && strstr(log.msg, msg) != NULL;
                if (given >= 0) ok = ok && fingerprint(&w, given) == before;
                if (!ok) {
                    size_t used = strlen(bad);
                    snprintf(bad + used, sizeof bad - used, "\n  %s with %s for '%s' (an %s): status %d, \"%.300s\"",
                             d->name, given >= 0 ? kind_names[given] : "a foreign pointer", d->param[p],
                             kind_names[want], (int)st, msg);
                    nbad++;
                }
                checked++;
            }
        }
    }
    MP_CK_OK(mp_set_log_callback(NULL, MP_LOG_INFO, NULL));
    /* every entry of the second table is a declared function taking a handle */
    for (size_t j = 0; j < nothers; j++) {
        const decl *d = find_decl(others[j].fn);
        ck_assert_msg(d != NULL && takes_handle(d) && strcmp(d->ret, "mp_status") != 0,
                      "%s is in the table of functions returning no status but is not such a declared "
                      "function taking a handle", others[j].fn);
    }
    ck_assert_msg(nbad == 0, "%d calls with a handle of the wrong kind did not fail with MP_ERR_INVALID_ARGUMENT "
                  "and a message naming the function, the argument (in quotes) and both kinds, or changed "
                  "the handle passed:%s", nbad, bad);
    ck_assert_int_ge(functions, 120); /* the parser found them (124 when written) */
    ck_assert_int_ge(checked, 8 * 140); /* 149 handle positions x (7 other kinds + a foreign pointer) */
    fx_free(&w);
    fx_close(&f);
}
END_TEST

/* An array of tasks is checked element by element: a handle of another
 * kind at index 1 is named as 'tasks[1]', and the meta is unchanged. */
START_TEST(task_arrays_are_checked_per_element)
{
    static fx f;
    fx_open(&f);
    mp_task *tasks[3] = {f.task, (mp_task *)(void *)f.cfg, f.task};
    double mean, ci;
    int64_t steps = -1;
    MP_CK_STATUS(mp_meta_step(f.meta, tasks, 3, NULL, 0), MP_ERR_INVALID_ARGUMENT);
    MP_CK_ERROR_MENTIONS("mp_meta_step: argument 'tasks[1]' is not an mp_task handle (it is an mp_config)");
    ck_assert_str_eq(mp_meta_error(f.meta), mp_last_error());
    MP_CK_STATUS(mp_meta_compute_gradients(f.meta, tasks, 3, NULL, 0), MP_ERR_INVALID_ARGUMENT);
    MP_CK_ERROR_MENTIONS("mp_meta_compute_gradients: argument 'tasks[1]' is not an mp_task handle");
    MP_CK_STATUS(mp_meta_evaluate_tasks(f.meta, tasks, 3, &mean, &ci), MP_ERR_INVALID_ARGUMENT);
    MP_CK_ERROR_MENTIONS("mp_meta_evaluate_tasks: argument 'tasks[1]' is not an mp_task handle");
    MP_CK_OK(mp_meta_step_count(f.meta, &steps));
    ck_assert_int_eq(steps, 0);
    tasks[1] = f.task; /* the same call with good tasks works */
    MP_CK_OK(mp_meta_step(f.meta, tasks, 3, NULL, 0));
    MP_CK_OK(mp_meta_step_count(f.meta, &steps));
    ck_assert_int_eq(steps, 1);
    fx_close(&f);
}
END_TEST

/* A destroyed handle's tag names what it was (tested on a stand-in whose
 * first word is that tag: reading a freed handle would be a use after free). */
START_TEST(destroyed_handles_are_named)
{
    static uint32_t dead[64];
    dead[0] = MP__KIND_DEAD(MP__KIND_SAMPLER);
    mp_task *t = NULL;
    MP_CK_STATUS(mp_sampler_next((mp_sampler *)(void *)dead, &t), MP_ERR_INVALID_ARGUMENT);
    MP_CK_ERROR_MENTIONS("mp_sampler_next: argument 's' is not an mp_sampler handle (it is a destroyed mp_sampler)");
    ck_assert_ptr_null(t);
    dead[0] = MP__KIND_DEAD(MP__KIND_CONFIG);
    MP_CK_STATUS(mp_model_create((mp_model **)(void *)&t, (const mp_config *)(void *)dead), MP_ERR_INVALID_ARGUMENT);
    MP_CK_ERROR_MENTIONS("mp_model_create: argument 'cfg' is not an mp_config handle (it is a destroyed mp_config)");
    /* destroying it again frees nothing (the stand-in is not heap memory) */
    mp_config_destroy((mp_config *)(void *)dead);
    MP_CK_ERROR_MENTIONS("mp_config_destroy: argument 'cfg' is not an mp_config handle (it is a destroyed mp_config)");
    ck_assert_ptr_null(t);
    ck_assert_uint_eq(dead[0], MP__KIND_DEAD(MP__KIND_CONFIG));
}
END_TEST

/* mp_<type>_error(NULL) of each handle type (direct calls: no casts of
 * function pointers). */
static const char *e_config(void) { return mp_config_error(NULL); }
static const char *e_dataset(void) { return mp_dataset_error(NULL); }
static const char *e_task(void) { return mp_task_error(NULL); }
static const char *e_sampler(void) { return mp_sampler_error(NULL); }
static const char *e_model(void) { return mp_model_error(NULL); }
static const char *e_prompt(void) { return mp_prompt_error(NULL); }
static const char *e_meta(void) { return mp_meta_error(NULL); }
static const char *e_tape(void) { return mp_tape_error(NULL); }

START_TEST(error_of_null_handle_is_empty)
{
    parse_headers();
    static const struct {
        const char *name;
        const char *(*fn)(void);
    } errs[] = {
        {"mp_config_error", e_config}, {"mp_dataset_error", e_dataset}, {"mp_task_error", e_task},
        {"mp_sampler_error", e_sampler}, {"mp_model_error", e_model}, {"mp_prompt_error", e_prompt},
        {"mp_meta_error", e_meta}, {"mp_tape_error", e_tape},
    };
    size_t n = sizeof errs / sizeof errs[0], found = 0;
    for (int i = 0; i < g_ndecls; i++) {
        const decl *d = &g_decls[i];
        size_t len = strlen(d->name);
        if (len < 6 || strcmp(d->name + len - 6, "_error") != 0 || d->n != 1 || !d->pointer[0]) continue;
        found++;
        size_t j = 0;
        while (j < n && strcmp(errs[j].name, d->name) != 0) j++;
        ck_assert_msg(j < n, "%s is not in the test's list of handle error functions", d->name);
    }
    ck_assert_uint_eq(found, n);
    mp_clear_error();
    for (size_t j = 0; j < n; j++) {
        const char *s = errs[j].fn();
        ck_assert_msg(s != NULL && s[0] == '\0', "%s(NULL) is \"%s\", expected \"\" as for every handle",
                      errs[j].name, s ? s : "(null)");
    }
}
END_TEST

/* A token transformer (vocabulary 7, 5 tokens per example): a token id of
 * 7 is reported by the public function called, with the offending index,
 * never as an internal step's ("mp_model: ..."). */
START_TEST(token_id_errors_name_the_public_function)
{
    mp_config *c;
    MP_CK_OK(mp_config_create(&c));
    const int64_t kv[] = {MP_CFG_MODEL_KIND, MP_MODEL_TRANSFORMER, MP_CFG_MODEL_OUTPUT_DIM, 2,
                          MP_CFG_MODEL_D_MODEL, 8, MP_CFG_MODEL_HEADS, 2, MP_CFG_MODEL_MLP_DIM, 8,
                          MP_CFG_MODEL_PROMPT_LEN, 2, MP_CFG_MODEL_LAYERS, 1, MP_CFG_MODEL_VOCAB, 7,
                          MP_CFG_MODEL_SEQ_LEN, 5, 0};
    for (const int64_t *p = kv; p[0]; p += 2) MP_CK_OK(mp_config_set_int(c, (int32_t)p[0], p[1]));
    mp_model *m;
    mp_prompt *p, *q;
    mp_meta *meta;
    MP_CK_OK(mp_model_create(&m, c));
    MP_CK_OK(mp_prompt_create(&p, m));
    MP_CK_OK(mp_prompt_create(&q, m));
    MP_CK_OK(mp_meta_create(&meta, m, p, c));
    float good[10] = {0, 1, 2, 3, 4, 5, 6, 0, 1, 2}, bad[10] = {0, 1, 2, 3, 4, 5, 6, 7, 1, 2};
    int32_t lab[2] = {0, 1};
    float out[4], loss;
    double mean, ci;
    mp_task *tasks[4];
    /* support or query, first or second task: the message says which */
    MP_CK_OK(mp_task_create_classification(&tasks[0], 5, 2, bad, lab, 2, good, lab, 2));
    MP_CK_OK(mp_task_create_classification(&tasks[1], 5, 2, good, lab, 2, bad, lab, 2));
    MP_CK_OK(mp_task_create_classification(&tasks[2], 5, 2, good, lab, 2, good, lab, 2));
    tasks[3] = tasks[0];

#define CK_TOKEN(call, fn, where)                                                                   \
    do {                                                                                            \
        MP_CK_STATUS(call, MP_ERR_INVALID_ARGUMENT);                                                \
        MP_CK_ERROR_MENTIONS(fn ": " where "x[7] = 7 is not an integer id in [0, 7)");              \
        ck_assert_msg(strncmp(mp_last_error(), fn ": ", strlen(fn) + 2) == 0, "%s", mp_last_error()); \
        ck_assert_msg(strstr(mp_last_error(), "mp_model:") == NULL, "%s", mp_last_error());        \
    } while (0)
    CK_TOKEN(mp_model_predict(m, p, bad, 2, 10, out, 4), "mp_model_predict", "token ");
    CK_TOKEN(mp_model_loss(m, p, bad, 2, 10, lab, NULL, &loss), "mp_model_loss", "token ");
    CK_TOKEN(mp_prompt_init_from_data(q, m, bad, 2, 10), "mp_prompt_init_from_data", "token ");
    ck_assert_str_eq(mp_prompt_error(q), mp_last_error());
    CK_TOKEN(mp_meta_step(meta, tasks, 1, NULL, 0), "mp_meta_step", "task 0: support token ");
    CK_TOKEN(mp_meta_step(meta, tasks + 1, 1, NULL, 0), "mp_meta_step", "task 0: query token ");
    CK_TOKEN(mp_meta_compute_gradients(meta, tasks + 2, 2, NULL, 0), "mp_meta_compute_gradients",
             "task 1: support token ");
    ck_assert_str_eq(mp_meta_error(meta), mp_last_error());
    CK_TOKEN(mp_meta_evaluate_tasks(meta, tasks + 1, 2, &mean, &ci), "mp_meta_evaluate_tasks",
             "task 0: query token ");
    CK_TOKEN(mp_meta_adapt(meta, tasks[0], q, NULL), "mp_meta_adapt", "support token ");
#undef CK_TOKEN
    /* the good task still runs: nothing was left behind */
    MP_CK_OK(mp_meta_step(meta, tasks + 2, 1, NULL, 0));
    for (int i = 0; i < 3; i++) mp_task_destroy(tasks[i]);
    mp_meta_destroy(meta);
    mp_prompt_destroy(q);
    mp_prompt_destroy(p);
    mp_model_destroy(m);
    mp_config_destroy(c);
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

Suite *mp_test_arg_names_suite(void)
{
    Suite *s = suite_create("names");
    TCase *t = tcase_create("messages");
    tcase_set_timeout(t, 60);
    tcase_add_test(t, messages_name_the_header_arguments);
    tcase_add_test(t, error_of_null_handle_is_empty);
    tcase_add_test(t, token_id_errors_name_the_public_function);
    tcase_add_test(t, handles_of_the_wrong_kind_are_refused);
    tcase_add_test(t, task_arrays_are_checked_per_element);
    tcase_add_test(t, destroyed_handles_are_named);
    suite_add_tcase(s, t);
    return s;
}
