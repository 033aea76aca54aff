/* Tests of the model module: the checkpoint container, models, prompts,
 * checkpoints. */
#include "test_util.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/checkpoint_internal.h"

/* ---- helpers ---------------------------------------------------------------------- */
static char g_tmpdir[256];

static void make_tmpdir(void)
{
    snprintf(g_tmpdir, sizeof g_tmpdir, "/tmp/mp_model_test_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(g_tmpdir));
}

static void remove_tmpdir(void)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmpdir);
    ck_assert_int_eq(system(cmd), 0);
}

static const char *tmp_path(const char *name)
{
    static char buf[2][512];
    static int which;
    which ^= 1;
    snprintf(buf[which], sizeof buf[which], "%s/%s", g_tmpdir, name);
    return buf[which];
}

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    ck_assert_uint_eq(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

static void spit(const char *path, const unsigned char *b, size_t len)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(b, 1, len, f), len);
    fclose(f);
}

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_le32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* Recomputes the trailing CRC after a deliberate edit, so the test reaches
 * the check behind the CRC. */
#include <zlib.h>
static void fix_crc(unsigned char *b, size_t len)
{
    put_le32(b + len - 4, (uint32_t)crc32(0L, b, (uInt)(len - 4)));
}

/* ---- the container ------------------------------------------------------------------ */
static void write_sample(const char *path)
{
    mp__ckpt_writer *w;
    MP_CK_OK(mp__ckpt_writer_create(&w));
    float a[6] = {1, 2, 3, 4, 5, 6};
    double dd[2] = {0.5, -1e300};
    int32_t ii[3] = {-1, 0, 7};
    uint64_t uu[2] = {0, UINT64_MAX};
    MP_CK_OK(mp__ckpt_writer_add(w, "x/a", 2, 3, a));
    MP_CK_OK(mp__ckpt_writer_add_f64(w, "x/d", 1, 2, dd));
    MP_CK_OK(mp__ckpt_writer_add_i32(w, "x/i", 3, 1, ii));
    MP_CK_OK(mp__ckpt_writer_add_u64s(w, "x/u", 2, 1, uu));
    MP_CK_OK(mp__ckpt_writer_add_u64(w, "x/step", 12345678901ULL));
    MP_CK_OK(mp__ckpt_writer_add(w, "x/empty", 0, 4, NULL));
    MP_CK_STATUS(mp__ckpt_writer_add(w, "x/a", 1, 1, a), MP_ERR_INVALID_ARGUMENT);
    MP_CK_ERROR_MENTIONS("twice");
    MP_CK_STATUS(mp__ckpt_writer_add(w, "bad name", 1, 1, a), MP_ERR_INVALID_ARGUMENT);
    MP_CK_STATUS(mp__ckpt_writer_add(w, "", 1, 1, a), MP_ERR_INVALID_ARGUMENT);
    MP_CK_STATUS(mp__ckpt_writer_add(w, "neg", -1, 1, a), MP_ERR_INVALID_ARGUMENT);
    MP_CK_OK(mp__ckpt_writer_add_config(w, MP_CFG_SEED, 42, 0));
    MP_CK_OK(mp__ckpt_writer_add_config(w, MP_CFG_THREADS, 3, 0));
    MP_CK_OK(mp__ckpt_writer_add_config(w, MP_CFG_SEED, 43, 0)); /* last value wins */
    MP_CK_STATUS(mp__ckpt_writer_add_config(w, 99999, 1, 0), MP_ERR_NOT_FOUND);
    MP_CK_OK(mp__ckpt_writer_save(w, path));
    mp__ckpt_writer_destroy(w);
}

START_TEST(container_round_trip)
{
    make_tmpdir();
    const char *path = tmp_path("c.ckpt");
    write_sample(path);
    mp__ckpt_reader *r;
    MP_CK_OK(mp__ckpt_reader_open(&r, path));
    ck_assert_int_eq(mp__ckpt_library_version(r), MP_VERSION_NUMBER);
    ck_assert_uint_eq(mp__ckpt_num_tensors(r), 6);
    ck_assert_str_eq(mp__ckpt_tensor_name(r, 0), "x/a");
    int32_t dt, rows, cols;
    MP_CK_OK(mp__ckpt_find(r, "x/a", &dt, &rows, &cols));
    ck_assert_int_eq(dt, MP__CKPT_F32);
    ck_assert_int_eq(rows, 2);
    ck_assert_int_eq(cols, 3);
    MP_CK_OK(mp__ckpt_expect(r, "x/a", MP__CKPT_F32, 2, 3));
    MP_CK_STATUS(mp__ckpt_expect(r, "x/a", MP__CKPT_F32, 3, 2), MP_ERR_SHAPE_MISMATCH);
    MP_CK_ERROR_MENTIONS("2 x 3");
    MP_CK_STATUS(mp__ckpt_expect(r, "x/a", MP__CKPT_F64, 2, 3), MP_ERR_FORMAT);
    MP_CK_STATUS(mp__ckpt_expect(r, "x/nope", MP__CKPT_F32, 2, 3), MP_ERR_NOT_FOUND);
    MP_CK_ERROR_MENTIONS("x/nope");
    float a[6];
    MP_CK_OK(mp__ckpt_read(r, "x/a", a, 6));
    for (int i = 0; i < 6; i++) ck_assert_float_eq(a[i], (float)(i + 1));
    MP_CK_STATUS(mp__ckpt_read(r, "x/a", a, 5), MP_ERR_SHAPE_MISMATCH);
    double dd[2];
    MP_CK_OK(mp__ckpt_read_f64(r, "x/d", dd, 2));
    ck_assert(dd[0] == 0.5 && dd[1] == -1e300);
    int32_t ii[3];
    MP_CK_OK(mp__ckpt_read_i32(r, "x/i", ii, 3));
    ck_assert(ii[0] == -1 && ii[1] == 0 && ii[2] == 7);
    uint64_t uu[2], step;
    MP_CK_OK(mp__ckpt_read_u64s(r, "x/u", uu, 2));
    ck_assert(uu[0] == 0 && uu[1] == UINT64_MAX);
    MP_CK_OK(mp__ckpt_read_u64(r, "x/step", &step));
    ck_assert(step == 12345678901ULL);
    MP_CK_STATUS(mp__ckpt_read_u64(r, "x/a", &step), MP_ERR_FORMAT);
    MP_CK_OK(mp__ckpt_find(r, "x/empty", NULL, &rows, &cols));
    ck_assert_int_eq(rows * cols, 0);
    ck_assert_uint_eq(mp__ckpt_config_count(r), 2);
    int64_t v;
    MP_CK_OK(mp__ckpt_config(r, MP_CFG_SEED, &v, NULL));
    ck_assert_int_eq(v, 43);
    MP_CK_STATUS(mp__ckpt_config(r, MP_CFG_MODEL_KIND, &v, NULL), MP_ERR_NOT_FOUND);
    mp__ckpt_reader_close(r);
    remove_tmpdir();
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

/* Every damaged variant of a good file is refused with the right status. */
START_TEST(container_rejects_damaged_files)
{
    make_tmpdir();
    const char *path = tmp_path("c.ckpt"), *bad = tmp_path("bad.ckpt");
    write_sample(path);
    size_t len;
    unsigned char *good = slurp(path, &len), *b = malloc(len + 8);
    mp__ckpt_reader *r = (mp__ckpt_reader *)0x1;

    /* The reader reports what failed; the public loaders add the path. */
    MP_CK_STATUS(mp__ckpt_reader_open(&r, tmp_path("missing.ckpt")), MP_ERR_IO);
    MP_CK_ERROR_MENTIONS("No such file");
    MP_CK_STATUS(mp__ckpt_reader_open(&r, g_tmpdir), MP_ERR_IO); /* never sized by ftell */
    MP_CK_ERROR_MENTIONS("is a directory");

    memcpy(b, good, len);
    b[1] = 'X';
    spit(bad, b, len);
    MP_CK_STATUS(mp__ckpt_reader_open(&r, bad), MP_ERR_FORMAT);
    MP_CK_ERROR_MENTIONS("magic");

    memcpy(b, good, len);
    put_le32(b + 8, 2);
    spit(bad, b, len);
    MP_CK_STATUS(mp__ckpt_reader_open(&r, bad), MP_ERR_VERSION);
    MP_CK_ERROR_MENTIONS("version 2");

    for (size_t cut = 0; cut < len; cut += (cut < 64 ? 1 : 17)) {
        spit(bad, good, cut);
        MP_CK_STATUS(mp__ckpt_reader_open(&r, bad), MP_ERR_FORMAT);
    }
    spit(bad, good, len - 1);
    MP_CK_STATUS(mp__ckpt_reader_open(&r, bad), MP_ERR_FORMAT);
    MP_CK_ERROR_MENTIONS("truncated");

    memcpy(b, good, len);
    b[len] = 0;
    spit(bad, b, len + 1);
    MP_CK_STATUS(mp__ckpt_reader_open(&r, bad), MP_ERR_FORMAT);

    for (size_t pos = 32; pos < len; pos += 7) { /* any flipped bit past the header */
        memcpy(b, good, len);
        b[pos] ^= 0x10;
        spit(bad, b, len);
        MP_CK_STATUS(mp__ckpt_reader_open(&r, bad), MP_ERR_CHECKSUM);
    }

    memcpy(b, good, len); /* tensor count too large, CRC made consistent */
    put_le32(b + 28, le32(b + 28) + 1);
    fix_crc(b, len);
    spit(bad, b, len);
    MP_CK_STATUS(mp__ckpt_reader_open(&r, bad), MP_ERR_FORMAT);

    memcpy(b, good, len); /* config type 7 */
    put_le32(b + 32 + 4, 7);
    fix_crc(b, len);
    spit(bad, b, len);
    MP_CK_STATUS(mp__ckpt_reader_open(&r, bad), MP_ERR_FORMAT);
    ck_assert_ptr_eq(r, (mp__ckpt_reader *)0x1);

    free(good);
    free(b);
    remove_tmpdir();
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

START_TEST(container_save_is_atomic_and_reports_io_errors)
{
    make_tmpdir();
    mp__ckpt_writer *w;
    MP_CK_OK(mp__ckpt_writer_create(&w));
    float a = 1;
    MP_CK_OK(mp__ckpt_writer_add(w, "a", 1, 1, &a));
    MP_CK_STATUS(mp__ckpt_writer_save(w, tmp_path("no/such/dir/x.ckpt")), MP_ERR_IO);
    MP_CK_ERROR_MENTIONS("no/such/dir");
    MP_CK_OK(mp__ckpt_writer_save(w, tmp_path("x.ckpt")));
    MP_CK_OK(mp__ckpt_writer_save(w, tmp_path("x.ckpt"))); /* replaces */
    mp__ckpt_writer_destroy(w);
    /* No temporary file is left behind. */
    char cmd[512];
    snprintf(cmd, sizeof cmd, "test $(ls '%s' | wc -l) -eq 1", g_tmpdir);
    ck_assert_int_eq(system(cmd), 0);
    remove_tmpdir();
}
END_TEST

#include <pthread.h>

/* ---- model helpers ------------------------------------------------------------------------ */
#include <sys/wait.h>

#include "model/model_priv.h"

/* Creates a model from (key, value) pairs terminated by key 0. */
static mp_model *make_model(const int64_t *kv)
{
    mp_config *cfg;
    MP_CK_OK(mp_config_create(&cfg));
    for (; kv[0]; kv += 2) MP_CK_OK(mp_config_set_int(cfg, (int32_t)kv[0], kv[1]));
    mp_model *m = NULL;
    MP_CK_OK(mp_model_create(&m, cfg));
    mp_config_destroy(cfg);
    return m;
}

/* make_model with one more key set after the pairs. */
static mp_model *make_model_plus(const int64_t *kv, int32_t key, int64_t value)
{
    mp_config *cfg;
    MP_CK_OK(mp_config_create(&cfg));
    for (; kv[0]; kv += 2) MP_CK_OK(mp_config_set_int(cfg, (int32_t)kv[0], kv[1]));
    MP_CK_OK(mp_config_set_int(cfg, key, value));
    mp_model *m = NULL;
    MP_CK_OK(mp_model_create(&m, cfg));
    mp_config_destroy(cfg);
    return m;
}

static mp_status try_model(const int64_t *kv)
{
    mp_config *cfg;
    MP_CK_OK(mp_config_create(&cfg));
    for (; kv[0]; kv += 2) MP_CK_OK(mp_config_set_int(cfg, (int32_t)kv[0], kv[1]));
    mp_model *m = (mp_model *)0x1;
    mp_status st = mp_model_create(&m, cfg);
    if (st == MP_OK) mp_model_destroy(m);
    else ck_assert_ptr_eq(m, (mp_model *)0x1);
    mp_config_destroy(cfg);
    return st;
}

static const int64_t CFG_MLP[] = {MP_CFG_MODEL_INPUT_DIM, 3, MP_CFG_MODEL_OUTPUT_DIM, 2,
                                  MP_CFG_MODEL_PROMPT_LEN, 2, MP_CFG_MODEL_PROMPT_DIM, 4,
                                  MP_CFG_MODEL_HIDDEN_WIDTH, 8, MP_CFG_SEED, 7, 0};
static const int64_t CFG_CONV_IN[] = {MP_CFG_MODEL_KIND, MP_MODEL_CONV, MP_CFG_MODEL_OUTPUT_DIM, 3,
                                      MP_CFG_MODEL_IMAGE_HEIGHT, 10, MP_CFG_MODEL_IMAGE_WIDTH, 10,
                                      MP_CFG_MODEL_CHANNELS, 4, MP_CFG_MODEL_CONV_BLOCKS, 2,
                                      MP_CFG_MODEL_PROMPT_LEN, 2, 0};
static const int64_t CFG_CONV_HEAD[] = {MP_CFG_MODEL_KIND, MP_MODEL_CONV, MP_CFG_MODEL_OUTPUT_DIM, 3,
                                        MP_CFG_MODEL_IMAGE_HEIGHT, 10, MP_CFG_MODEL_IMAGE_WIDTH, 10,
                                        MP_CFG_MODEL_CHANNELS, 4, MP_CFG_MODEL_CONV_BLOCKS, 2,
                                        MP_CFG_MODEL_PROMPT_LEN, 2, MP_CFG_MODEL_PROMPT_DIM, 3,
                                        MP_CFG_MODEL_PROMPT_MODE, MP_PROMPT_HEAD_FEATURES, 0};
static const int64_t CFG_TF[] = {MP_CFG_MODEL_KIND, MP_MODEL_TRANSFORMER, MP_CFG_MODEL_OUTPUT_DIM, 4,
                                 MP_CFG_MODEL_IMAGE_HEIGHT, 8, MP_CFG_MODEL_IMAGE_WIDTH, 8,
                                 MP_CFG_MODEL_PATCH, 4, MP_CFG_MODEL_D_MODEL, 16,
                                 MP_CFG_MODEL_HEADS, 2, MP_CFG_MODEL_MLP_DIM, 16,
                                 MP_CFG_MODEL_PROMPT_LEN, 3, 0};
static const int64_t CFG_TOK[] = {MP_CFG_MODEL_KIND, MP_MODEL_TRANSFORMER, MP_CFG_MODEL_OUTPUT_DIM, 3,
                                  MP_CFG_MODEL_VOCAB, 9, MP_CFG_MODEL_SEQ_LEN, 6,
                                  MP_CFG_MODEL_D_MODEL, 8, MP_CFG_MODEL_HEADS, 2,
                                  MP_CFG_MODEL_LAYERS, 1, MP_CFG_MODEL_PROMPT_LEN, 2, 0};
/* Prompt length 0 (no prompt: the plain MAML backbones) for every kind and
 * conv prompt mode. */
static const int64_t CFG_MLP_P0[] = {MP_CFG_MODEL_INPUT_DIM, 3, MP_CFG_MODEL_OUTPUT_DIM, 2,
                                     MP_CFG_MODEL_HIDDEN_WIDTH, 8, MP_CFG_SEED, 7, 0};
static const int64_t CFG_CONV_IN_P0[] = {MP_CFG_MODEL_KIND, MP_MODEL_CONV, MP_CFG_MODEL_OUTPUT_DIM, 3,
                                         MP_CFG_MODEL_IMAGE_HEIGHT, 10, MP_CFG_MODEL_IMAGE_WIDTH, 10,
                                         MP_CFG_MODEL_CHANNELS, 4, MP_CFG_MODEL_CONV_BLOCKS, 2,
                                         MP_CFG_MODEL_PROMPT_LEN, 0, 0};
static const int64_t CFG_CONV_HEAD_P0[] = {MP_CFG_MODEL_KIND, MP_MODEL_CONV, MP_CFG_MODEL_OUTPUT_DIM, 3,
                                           MP_CFG_MODEL_IMAGE_HEIGHT, 10, MP_CFG_MODEL_IMAGE_WIDTH, 10,
                                           MP_CFG_MODEL_CHANNELS, 4, MP_CFG_MODEL_CONV_BLOCKS, 2,
                                           MP_CFG_MODEL_PROMPT_LEN, 0, MP_CFG_MODEL_PROMPT_DIM, 3,
                                           MP_CFG_MODEL_PROMPT_MODE, MP_PROMPT_HEAD_FEATURES, 0};
static const int64_t CFG_TF_P0[] = {MP_CFG_MODEL_KIND, MP_MODEL_TRANSFORMER, MP_CFG_MODEL_OUTPUT_DIM, 4,
                                    MP_CFG_MODEL_IMAGE_HEIGHT, 8, MP_CFG_MODEL_IMAGE_WIDTH, 8,
                                    MP_CFG_MODEL_PATCH, 4, MP_CFG_MODEL_D_MODEL, 16,
                                    MP_CFG_MODEL_HEADS, 2, MP_CFG_MODEL_MLP_DIM, 16,
                                    MP_CFG_MODEL_PROMPT_LEN, 0, 0};
static const int64_t *const ALL_KINDS[] = {CFG_MLP,    CFG_CONV_IN,    CFG_CONV_HEAD,    CFG_TF, CFG_TOK,
                                           CFG_MLP_P0, CFG_CONV_IN_P0, CFG_CONV_HEAD_P0, CFG_TF_P0};
#define NKINDS 9

/* Deterministic example rows for a model (token ids for token models). */
static float *make_x(const mp_model *m, size_t n, unsigned seed)
{
    int64_t vocab = 0, kind;
    MP_CK_OK(mp_model_get_int(m, MP_CFG_MODEL_VOCAB, &vocab));
    MP_CK_OK(mp_model_get_int(m, MP_CFG_MODEL_KIND, &kind));
    size_t d = (size_t)mp__model_input_dim(m);
    float *x = malloc(n * d * sizeof(float));
    unsigned s = seed * 2654435761u + 1;
    for (size_t i = 0; i < n * d; i++) {
        s = s * 1103515245u + 12345u;
        float u = (float)((s >> 8) & 0xffff) / 65536.0f;
        x[i] = kind == MP_MODEL_TRANSFORMER && vocab > 0 ? (float)((s >> 8) % (unsigned)vocab) : 2 * u - 1;
    }
    return x;
}

static mp_prompt *random_prompt(const mp_model *m, uint64_t seed)
{
    mp_prompt *p;
    MP_CK_OK(mp_prompt_create(&p, m));
    MP_CK_OK(mp_prompt_init(p, MP_PROMPT_INIT_NORMAL, 1.0, seed));
    return p;
}

static size_t out_count(const mp_model *m, size_t n) { return n * (size_t)mp__model_output_dim(m); }

/* ---- PyTorch fixtures ------------------------------------------------------------------- */
typedef struct {
    char name[64];
    uint32_t rows, cols;
    float *v;
} frec;
typedef struct {
    frec r[200];
    int n;
} fixture;

static void load_fixture(const char *file, fixture *f)
{
    char rel[256];
    snprintf(rel, sizeof rel, "tests/fixtures/%s", file);
    size_t len, pos = 0;
    unsigned char *b = slurp(mp_test_path(rel), &len);
    f->n = 0;
    while (pos < len) {
        ck_assert_int_lt(f->n, 200);
        frec *r = &f->r[f->n++];
        uint32_t nl = le32(b + pos);
        ck_assert_uint_lt(nl, sizeof r->name);
        memcpy(r->name, b + pos + 4, nl);
        r->name[nl] = '\0';
        pos += 4 + nl;
        r->rows = le32(b + pos);
        r->cols = le32(b + pos + 4);
        pos += 8;
        size_t cnt = (size_t)r->rows * r->cols;
        r->v = malloc((cnt ? cnt : 1) * sizeof(float));
        for (size_t i = 0; i < cnt; i++) {
            uint32_t bits = le32(b + pos + 4 * i);
            memcpy(&r->v[i], &bits, 4);
        }
        pos += 4 * cnt;
    }
    ck_assert_uint_eq(pos, len);
    free(b);
}

static void free_fixture(fixture *f)
{
    for (int i = 0; i < f->n; i++) free(f->r[i].v);
}

static const frec *rec(const fixture *f, const char *name)
{
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->r[i].name, name) == 0) return &f->r[i];
    ck_abort_msg("fixture has no record '%s'", name);
    return NULL;
}

static void assert_close(const float *got, const float *want, size_t n, float atol, float rtol,
                         const char *what)
{
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(fabsf(got[i] - want[i]) <= atol + rtol * fabsf(want[i]),
                      "%s[%zu]: got %.8g, want %.8g", what, i, (double)got[i], (double)want[i]);
}

/* Model, prompt and data of a fixture, parameters set from it. */
static mp_model *fixture_model(const fixture *f, mp_prompt **prompt)
{
    const frec *c = rec(f, "config");
    mp_config *cfg;
    MP_CK_OK(mp_config_create(&cfg));
    for (uint32_t i = 0; i + 1 < c->cols; i += 2)
        MP_CK_OK(mp_config_set_int(cfg, (int32_t)c->v[i], (int64_t)c->v[i + 1]));
    mp_model *m;
    MP_CK_OK(mp_model_create(&m, cfg));
    mp_config_destroy(cfg);
    size_t np;
    MP_CK_OK(mp_model_num_params(m, &np));
    float *all = malloc(np * sizeof(float));
    for (int32_t i = 0; i < mp__model_num_tensors(m); i++) {
        const mp__param_info *t = mp__model_tensor(m, i);
        char nm[80];
        snprintf(nm, sizeof nm, "param:%s", t->name);
        const frec *r = rec(f, nm);
        ck_assert_msg(r->rows == (uint32_t)t->rows && r->cols == (uint32_t)t->cols,
                      "tensor %s: model %d x %d, fixture %u x %u", t->name, t->rows, t->cols,
                      r->rows, r->cols);
        memcpy(all + t->offset, r->v, (size_t)t->rows * t->cols * sizeof(float));
    }
    /* The fixture lists exactly the model's tensors. */
    int nparam_recs = 0;
    for (int i = 0; i < f->n; i++) nparam_recs += strncmp(f->r[i].name, "param:", 6) == 0;
    ck_assert_int_eq(nparam_recs, mp__model_num_tensors(m));
    MP_CK_OK(mp_model_set_params(m, all, np));
    free(all);
    MP_CK_OK(mp_prompt_create(prompt, m));
    const frec *pr = rec(f, "prompt");
    MP_CK_OK(mp_prompt_set(*prompt, pr->v, (size_t)pr->rows * pr->cols));
    return m;
}

static const char *const FIXTURES[] = {"model_mlp.bin",         "model_mlp_cls.bin",     "model_mlp_sig.bin",
                                       "model_mlp_p0.bin",      "model_conv_in.bin",     "model_conv_head.bin",
                                       "model_tf_patch.bin",    "model_tf_tok.bin",      "model_conv_p0.bin",
                                       "model_tf_patch_p0.bin", "model_tf_patch_l0.bin", "model_tf_patch_l1.bin"};
#define NFIXTURES 12

/* Tape gradients of the fixture loss for every tensor and the prompt. */
static void check_fixture_grads(const fixture *f, const mp_model *m, const mp_prompt *p)
{
    const frec *x = rec(f, "x");
    int32_t nt = mp__model_num_tensors(m), P = mp__model_prompt_rows(m), d = mp__model_prompt_cols(m);
    mp_tape *t;
    MP_CK_OK(mp_tape_create(&t));
    mp_var *pv = malloc((size_t)nt * sizeof *pv), prv = MP_VAR_NONE, xv, out, loss;
    for (int32_t i = 0; i < nt; i++) {
        const mp__param_info *ti = mp__model_tensor(m, i);
        MP_CK_OK(mp_tape_leaf(t, ti->rows, ti->cols, mp__model_params_const(m) + ti->offset,
                              (size_t)ti->rows * ti->cols, MP_LEAF_REQUIRES_GRAD, &pv[i]));
    }
    if (P > 0)
        MP_CK_OK(mp_tape_leaf(t, P, d, mp__prompt_data_const(p), (size_t)P * d, MP_LEAF_REQUIRES_GRAD, &prv));
    MP_CK_OK(mp_tape_leaf(t, (int32_t)x->rows, (int32_t)x->cols, x->v, (size_t)x->rows * x->cols, 0, &xv));
    MP_CK_OK(mp__model_forward(m, t, pv, prv, xv, NULL, &out));
    int32_t labels[64];
    const float *targets = NULL;
    if (mp__model_is_classifier(m)) {
        const frec *l = rec(f, "labels");
        for (uint32_t i = 0; i < l->cols; i++) labels[i] = (int32_t)l->v[i];
    } else {
        targets = rec(f, "targets")->v;
    }
    MP_CK_OK(mp__model_loss(m, t, out, labels, targets, x->rows, &loss));
    float lv;
    MP_CK_OK(mp_tape_scalar(t, loss, &lv));
    assert_close(&lv, rec(f, "loss")->v, 1, 1e-5f, 1e-4f, "tape loss");
    MP_CK_OK(mp_tape_backward(t, loss, 0));
    for (int32_t i = -1; i < nt; i++) {
        if (i < 0 && P == 0) continue;
        char nm[80];
        snprintf(nm, sizeof nm, "grad:%s", i < 0 ? "prompt" : mp__model_tensor(m, i)->name);
        const frec *g = rec(f, nm);
        size_t cnt = (size_t)g->rows * g->cols;
        float *got = malloc(cnt * sizeof(float));
        mp_var gv;
        MP_CK_OK(mp_tape_grad(t, i < 0 ? prv : pv[i], &gv));
        MP_CK_OK(mp_tape_read(t, gv, got, cnt));
        assert_close(got, g->v, cnt, 2e-5f, 2e-3f, nm);
        free(got);
    }
    free(pv);
    mp_tape_destroy(t);
}

START_TEST(forward_and_gradients_match_pytorch)
{
    fixture *f = malloc(sizeof *f);
    load_fixture(FIXTURES[_i], f);
    mp_prompt *p;
    mp_model *m = fixture_model(f, &p);
    const frec *x = rec(f, "x"), *want = rec(f, "out");
    size_t n = x->rows;
    float *out = malloc(out_count(m, n) * sizeof(float));
    MP_CK_OK(mp_model_predict(m, p, x->v, n, (size_t)x->rows * x->cols, out, out_count(m, n)));
    ck_assert_uint_eq((size_t)want->rows * want->cols, out_count(m, n));
    assert_close(out, want->v, out_count(m, n), 1e-5f, 1e-4f, FIXTURES[_i]);
    float loss;
    int32_t labels[64];
    if (mp__model_is_classifier(m)) {
        const frec *l = rec(f, "labels");
        for (uint32_t i = 0; i < l->cols; i++) labels[i] = (int32_t)l->v[i];
        MP_CK_OK(mp_model_loss(m, p, x->v, n, (size_t)x->rows * x->cols, labels, NULL, &loss));
    } else {
        MP_CK_OK(mp_model_loss(m, p, x->v, n, (size_t)x->rows * x->cols, NULL, rec(f, "targets")->v, &loss));
    }
    assert_close(&loss, rec(f, "loss")->v, 1, 1e-5f, 1e-4f, "loss");
    check_fixture_grads(f, m, p);
    free(out);
    mp_prompt_destroy(p);
    mp_model_destroy(m);
    free_fixture(f);
    free(f);
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

/* Central differences of mp_model_loss against the tape's gradient, for a
 * few prompt entries and parameters of each kind. */
static double fd_loss(const mp_model *m, const mp_prompt *p, const float *x, size_t n,
                      const int32_t *labels, const float *targets)
{
    float l;
    MP_CK_OK(mp_model_loss(m, p, x, n, n * (size_t)mp__model_input_dim(m), labels, targets, &l));
    return l;
}

START_TEST(gradients_match_finite_differences)
{
    mp_model *m = make_model(ALL_KINDS[_i]);
    mp_prompt *p = random_prompt(m, 3);
    size_t n = 3;
    float *x = make_x(m, n, 5);
    int32_t labels[3] = {0, 1, 0};
    float targets[6] = {0.5f, -0.25f, 1, 0, -1, 2};
    const float *tg = mp__model_is_classifier(m) ? NULL : targets;
    const int32_t *lb = mp__model_is_classifier(m) ? labels : NULL;
    /* The loss is the mean cross-entropy / squared error of the predictions. */
    size_t od = (size_t)mp__model_output_dim(m);
    float y[3 * 8], lv;
    ck_assert_uint_le(od, 8);
    MP_CK_OK(mp_model_predict(m, p, x, n, n * (size_t)mp__model_input_dim(m), y, n * od));
    MP_CK_OK(mp_model_loss(m, p, x, n, n * (size_t)mp__model_input_dim(m), lb, tg, &lv));
    double want = 0;
    for (size_t i = 0; i < n; i++) {
        if (lb) {
            double mx = y[i * od], se = 0;
            for (size_t j = 1; j < od; j++) mx = fmax(mx, y[i * od + j]);
            for (size_t j = 0; j < od; j++) se += exp(y[i * od + j] - mx);
            want += (mx + log(se) - y[i * od + (size_t)lb[i]]) / (double)n;
        } else {
            for (size_t j = 0; j < od; j++)
                want += ((double)y[i * od + j] - tg[i * od + j]) * ((double)y[i * od + j] - tg[i * od + j]) /
                        (double)(n * od);
        }
    }
    ck_assert_msg(fabs(lv - want) <= 1e-5 * (1 + fabs(want)), "loss %g, from the predictions %g", (double)lv, want);
    /* Tape gradient. */
    int32_t nt = mp__model_num_tensors(m), P = mp__model_prompt_rows(m), d = mp__model_prompt_cols(m);
    mp_tape *t;
    MP_CK_OK(mp_tape_create(&t));
    mp_var pv[64], prv = MP_VAR_NONE, xv, out, loss, g;
    ck_assert_int_le(nt, 64);
    for (int32_t i = 0; i < nt; i++) {
        const mp__param_info *ti = mp__model_tensor(m, i);
        MP_CK_OK(mp_tape_leaf(t, ti->rows, ti->cols, mp__model_params(m) + ti->offset,
                              (size_t)ti->rows * ti->cols, MP_LEAF_REQUIRES_GRAD, &pv[i]));
    }
    if (P > 0)
        MP_CK_OK(mp_tape_leaf(t, P, d, mp__prompt_data(p), (size_t)P * d, MP_LEAF_REQUIRES_GRAD, &prv));
    MP_CK_OK(mp_tape_leaf(t, (int32_t)n, mp__model_input_dim(m), x, n * mp__model_input_dim(m), 0, &xv));
    MP_CK_OK(mp__model_forward(m, t, pv, prv, xv, NULL, &out));
    MP_CK_OK(mp__model_loss(m, t, out, lb, tg, n, &loss));
    float tl;
    MP_CK_OK(mp_tape_scalar(t, loss, &tl));
    ck_assert(tl == lv); /* the same computation as mp_model_loss */
    MP_CK_OK(mp_tape_backward(t, loss, 0));
    /* Prompt entries. */
    float *gp = malloc(((size_t)P * d + 1) * sizeof(float));
    if (P > 0) {
        MP_CK_OK(mp_tape_grad(t, prv, &g));
        MP_CK_OK(mp_tape_read(t, g, gp, (size_t)P * d));
    }
    /* Small steps: relu kinks and max-pool switches lie close by. */
    const float eps = 1e-3f;
    for (int k = 0; k < (P > 0 ? 4 : 0); k++) {
        size_t j = (size_t)(k * 7919) % ((size_t)P * d);
        float *v = mp__prompt_data(p), keep = v[j];
        v[j] = keep + eps;
        double lp = fd_loss(m, p, x, n, lb, tg);
        v[j] = keep - eps;
        double lm = fd_loss(m, p, x, n, lb, tg);
        v[j] = keep;
        double fd = (lp - lm) / (2 * eps);
        ck_assert_msg(fabs(fd - gp[j]) <= 5e-3 + 2e-2 * fabs(fd), "prompt[%zu]: fd %g tape %g", j, fd,
                      (double)gp[j]);
    }
    /* First entry of every tensor. */
    for (int32_t i = 0; i < nt; i++) {
        const mp__param_info *ti = mp__model_tensor(m, i);
        float gi;
        MP_CK_OK(mp_tape_grad(t, pv[i], &g));
        float *tmp = malloc((size_t)ti->rows * ti->cols * sizeof(float));
        MP_CK_OK(mp_tape_read(t, g, tmp, (size_t)ti->rows * ti->cols));
        gi = tmp[0];
        free(tmp);
        float *v = mp__model_params(m) + ti->offset, keep = v[0];
        v[0] = keep + eps;
        double lp = fd_loss(m, p, x, n, lb, tg);
        v[0] = keep - eps;
        double lm = fd_loss(m, p, x, n, lb, tg);
        v[0] = keep;
        double fd = (lp - lm) / (2 * eps);
        ck_assert_msg(fabs(fd - gi) <= 5e-3 + 2e-2 * fabs(fd), "%s[0]: fd %g tape %g", ti->name, fd,
                      (double)gi);
    }
    free(gp);
    mp_tape_destroy(t);
    free(x);
    mp_prompt_destroy(p);
    mp_model_destroy(m);
}
END_TEST

/* ---- behaviour ------------------------------------------------------------------------- */
START_TEST(prompt_reaches_the_output_for_every_kind)
{
    mp_model *m = make_model(ALL_KINDS[_i]);
    size_t n = 3, no = out_count(m, n);
    float *x = make_x(m, n, 1), *a = malloc(no * 4), *b = malloc(no * 4), *c = malloc(no * 4);
    mp_prompt *zero, *p = random_prompt(m, 11);
    MP_CK_OK(mp_prompt_create(&zero, m));
    size_t xl = n * (size_t)mp__model_input_dim(m);
    MP_CK_OK(mp_model_predict(m, NULL, x, n, xl, a, no));
    MP_CK_OK(mp_model_predict(m, zero, x, n, xl, b, no));
    MP_CK_OK(mp_model_predict(m, p, x, n, xl, c, no));
    ck_assert_int_eq(memcmp(a, b, no * 4), 0); /* NULL is the zero prompt */
    double diff = 0;
    for (size_t i = 0; i < no; i++) diff += fabs((double)a[i] - c[i]);
    if (mp__model_prompt_rows(m) > 0)
        ck_assert_msg(diff > 1e-3, "prompt changed the outputs by only %g", diff);
    else /* P = 0: an empty prompt, nothing to change */
        ck_assert_int_eq(memcmp(a, c, no * 4), 0);
    for (size_t i = 0; i < no; i++) ck_assert(isfinite(c[i]));
    free(x);
    free(a);
    free(b);
    free(c);
    mp_prompt_destroy(zero);
    mp_prompt_destroy(p);
    mp_model_destroy(m);
}
END_TEST

/* A query's output must not depend on which other queries share its batch
 * (no batch statistics, no cross-example attention). */
START_TEST(examples_are_independent_within_a_batch)
{
    mp_model *m = make_model(ALL_KINDS[_i]);
    mp_prompt *p = random_prompt(m, 2);
    size_t n = 5, in = (size_t)mp__model_input_dim(m), od = (size_t)mp__model_output_dim(m);
    float *x = make_x(m, n, 9), *all = malloc(n * od * 4), one[16];
    MP_CK_OK(mp_model_predict(m, p, x, n, n * in, all, n * od));
    for (size_t i = 0; i < n; i++) {
        MP_CK_OK(mp_model_predict(m, p, x + i * in, 1, in, one, od));
        assert_close(one, all + i * od, od, 1e-5f, 1e-5f, "alone vs batched");
    }
    /* Changing example 0 leaves the others' outputs alone. */
    float *x2 = malloc(n * in * 4), *all2 = malloc(n * od * 4);
    memcpy(x2, x, n * in * 4);
    memcpy(x2, x + in, in * 4);
    MP_CK_OK(mp_model_predict(m, p, x2, n, n * in, all2, n * od));
    assert_close(all2 + od, all + od, (n - 1) * od, 1e-5f, 1e-5f, "others");
    free(x);
    free(x2);
    free(all);
    free(all2);
    mp_prompt_destroy(p);
    mp_model_destroy(m);
}
END_TEST

/* ---- transformer forward cache (mp__fwd_cache) ----------------------------------------- */
static const int64_t CFG_TOK_P0[] = {MP_CFG_MODEL_KIND, MP_MODEL_TRANSFORMER, MP_CFG_MODEL_OUTPUT_DIM, 3,
                                     MP_CFG_MODEL_VOCAB, 9, MP_CFG_MODEL_SEQ_LEN, 6,
                                     MP_CFG_MODEL_D_MODEL, 8, MP_CFG_MODEL_HEADS, 2,
                                     MP_CFG_MODEL_PROMPT_LEN, 0, 0};
/* Patch (P = 3 and 0) and token (P = 2 and 0) transformers, each with 0, 1
 * and 2 blocks (model.layers overrides the configuration's). */
static const struct {
    const int64_t *cfg;
    int layers;
} TF_CASES[] = {{CFG_TF, 0},  {CFG_TF, 1},  {CFG_TF, 2},  {CFG_TF_P0, 0},  {CFG_TF_P0, 1},  {CFG_TF_P0, 2},
                {CFG_TOK, 0}, {CFG_TOK, 1}, {CFG_TOK, 2}, {CFG_TOK_P0, 0}, {CFG_TOK_P0, 1}, {CFG_TOK_P0, 2}};
#define NTF_CASES 12
#define TF_MAX_TENSORS 64

/* The tensors the prompt-independent prefix reads, by name (an independent
 * statement of what the cache must be keyed by): the embedding, the
 * positions and block 0's ln1 and q/k/v projections. */
static int is_prefix_tensor(const char *name)
{
    static const char *const pre[] = {"embed.", "block0.ln1.", "block0.attn.q.", "block0.attn.k.",
                                      "block0.attn.v."};
    if (strcmp(name, "pos") == 0) return 1;
    for (size_t i = 0; i < sizeof pre / sizeof pre[0]; i++)
        if (strncmp(name, pre[i], strlen(pre[i])) == 0) return 1;
    return 0;
}

/* A transformer of TF_CASES[i] with random (nonzero, non-unit) weights so
 * every tensor matters, on one tape: leaves over the parameters and the
 * prompt (all requiring gradients) and three different inputs of n rows. */
typedef struct {
    mp_model *m;
    mp_prompt *p;
    mp_tape *t;
    int32_t nt, P, d;
    size_t n, od;
    float *x[3];
    mp_var pv[TF_MAX_TENSORS], prv, xv[3];
} tf_setup;

static void tf_leaves(tf_setup *s, mp_tape *t)
{
    for (int32_t i = 0; i < s->nt; i++) {
        const mp__param_info *ti = mp__model_tensor(s->m, i);
        MP_CK_OK(mp_tape_leaf(t, ti->rows, ti->cols, mp__model_params_const(s->m) + ti->offset,
                              (size_t)ti->rows * ti->cols, MP_LEAF_BORROW | MP_LEAF_REQUIRES_GRAD, &s->pv[i]));
    }
    s->prv = MP_VAR_NONE;
    if (s->P > 0)
        MP_CK_OK(mp_tape_leaf(t, s->P, s->d, mp__prompt_data_const(s->p), (size_t)s->P * s->d,
                              MP_LEAF_BORROW | MP_LEAF_REQUIRES_GRAD, &s->prv));
    int32_t in = mp__model_input_dim(s->m);
    for (int k = 0; k < 3; k++)
        MP_CK_OK(mp_tape_leaf(t, (int32_t)s->n, in, s->x[k], s->n * (size_t)in, MP_LEAF_BORROW, &s->xv[k]));
}

/* Index of the tensor named name, -1 if there is none. */
static int32_t tf_index(const mp_model *m, const char *name)
{
    for (int32_t i = 0; i < mp__model_num_tensors(m); i++)
        if (strcmp(mp__model_tensor(m, i)->name, name) == 0) return i;
    return -1;
}

/* The prefix tensor the gradient test replaces: block 0's query weight,
 * or the embedding when there is no block. */
static int32_t tf_replaced(const mp_model *m)
{
    int32_t i = tf_index(m, "block0.attn.q.weight");
    return i >= 0 ? i : tf_index(m, "embed.weight");
}

static tf_setup tf_make(int i)
{
    tf_setup s;
    s.m = make_model_plus(TF_CASES[i].cfg, MP_CFG_MODEL_LAYERS, TF_CASES[i].layers);
    s.p = random_prompt(s.m, 5);
    s.nt = mp__model_num_tensors(s.m);
    ck_assert_int_le(s.nt, TF_MAX_TENSORS);
    s.P = mp__model_prompt_rows(s.m);
    s.d = mp__model_prompt_cols(s.m);
    s.n = 3;
    s.od = (size_t)mp__model_output_dim(s.m);
    float *w = mp__model_params(s.m);
    for (size_t j = 0; j < mp__model_param_count(s.m); j++) w[j] += 0.2f * sinf(1.7f * (float)j + 0.3f);
    for (int k = 0; k < 3; k++) s.x[k] = make_x(s.m, s.n, 21 + (unsigned)k);
    MP_CK_OK(mp_tape_create(&s.t));
    tf_leaves(&s, s.t);
    return s;
}

static void tf_free(tf_setup *s)
{
    mp_tape_destroy(s->t);
    for (int k = 0; k < 3; k++) free(s->x[k]);
    mp_prompt_destroy(s->p);
    mp_model_destroy(s->m);
}

static int64_t tape_nodes(const mp_tape *t)
{
    int64_t v;
    MP_CK_OK(mp_tape_stat(t, MP_TAPE_STAT_NODES, &v));
    return v;
}

/* One forward pass on s->t; its outputs into buf (n x od). Returns the
 * number of variables it recorded. */
static int64_t tf_forward(tf_setup *s, const mp_var *pv, mp_var prompt, mp_var x, mp__fwd_cache *cache,
                          float *buf)
{
    int64_t before = tape_nodes(s->t);
    mp_var out;
    MP_CK_OK(mp__model_forward(s->m, s->t, pv, prompt, x, cache, &out));
    MP_CK_OK(mp_tape_read(s->t, out, buf, s->n * s->od));
    for (size_t j = 0; j < s->n * s->od; j++) ck_assert(isfinite(buf[j]));
    return tape_nodes(s->t) - before;
}

#define SAME_BITS(a, b, n, what) \
    ck_assert_msg(memcmp((a), (b), (n) * sizeof(float)) == 0, "case %d: %s differ", _i, (what))

/* A forward with a cache gives exactly the outputs without one: on a miss
 * (recording everything), on a hit (recording fewer variables: the prefix
 * is reused), for two inputs held at once (support and query set), and
 * after an input evicted a slot. A different input variable, or a
 * different variable for any tensor the prefix reads, never reuses the
 * stale prefix (it records the full pass and matches the uncached pass on
 * those variables); a different variable for any other tensor does reuse
 * it. */
START_TEST(transformer_forward_cache_is_exact_and_keyed)
{
    tf_setup s = tf_make(_i);
    size_t no = s.n * s.od;
    float *ref[3], *got = malloc(no * sizeof(float)), *ref2 = malloc(no * sizeof(float));
    int64_t full = 0;
    for (int k = 0; k < 3; k++) {
        ref[k] = malloc(no * sizeof(float));
        int64_t c = tf_forward(&s, s.pv, s.prv, s.xv[k], NULL, ref[k]);
        if (k == 0) full = c;
        ck_assert_int_eq(c, full);
    }
    ck_assert_msg(memcmp(ref[0], ref[1], no * 4) != 0 && memcmp(ref[1], ref[2], no * 4) != 0,
                  "the inputs must give different outputs");
    mp__fwd_cache cache;
    mp__fwd_cache_clear(&cache);
    /* Miss, then hit on the same input. */
    ck_assert_int_eq(tf_forward(&s, s.pv, s.prv, s.xv[0], &cache, got), full);
    SAME_BITS(got, ref[0], no, "miss on x0");
    int64_t hit = tf_forward(&s, s.pv, s.prv, s.xv[0], &cache, got);
    ck_assert_msg(hit < full - 3, "case %d: the second pass recorded %lld variables, the first %lld", _i,
                  (long long)hit, (long long)full);
    SAME_BITS(got, ref[0], no, "hit on x0");
    /* Another input: recorded in full, its own outputs; both stay cached. */
    ck_assert_int_eq(tf_forward(&s, s.pv, s.prv, s.xv[1], &cache, got), full);
    SAME_BITS(got, ref[1], no, "miss on x1");
    ck_assert_int_eq(tf_forward(&s, s.pv, s.prv, s.xv[0], &cache, got), hit);
    SAME_BITS(got, ref[0], no, "hit on x0 with x1 cached");
    ck_assert_int_eq(tf_forward(&s, s.pv, s.prv, s.xv[1], &cache, got), hit);
    SAME_BITS(got, ref[1], no, "hit on x1");
    /* A third input evicts one of them: every pass is still exact. */
    const int order[6] = {2, 0, 1, 2, 1, 0};
    for (int k = 0; k < 6; k++) {
        int64_t c = tf_forward(&s, s.pv, s.prv, s.xv[order[k]], &cache, got);
        ck_assert(c == hit || c == full);
        SAME_BITS(got, ref[order[k]], no, "pass with three inputs");
    }
    /* A new variable (other values) for one tensor. */
    int nprefix = 0;
    for (int32_t i = 0; i < s.nt; i++) {
        const mp__param_info *ti = mp__model_tensor(s.m, i);
        size_t len = (size_t)ti->rows * ti->cols;
        float *v = malloc(len * sizeof(float));
        const float *w = mp__model_params_const(s.m) + ti->offset;
        for (size_t j = 0; j < len; j++) v[j] = 1.25f * w[j] + 0.1f * sinf((float)j + 0.5f);
        mp_var pv2[TF_MAX_TENSORS];
        memcpy(pv2, s.pv, sizeof pv2);
        MP_CK_OK(mp_tape_leaf(s.t, ti->rows, ti->cols, v, len, MP_LEAF_REQUIRES_GRAD, &pv2[i]));
        free(v);
        ck_assert_int_eq(tf_forward(&s, pv2, s.prv, s.xv[0], NULL, ref2), full);
        ck_assert_msg(memcmp(ref2, ref[0], no * 4) != 0, "case %d: changing %s changes nothing", _i, ti->name);
        mp__fwd_cache_clear(&cache);
        ck_assert_int_eq(tf_forward(&s, s.pv, s.prv, s.xv[0], &cache, got), full); /* cached: x0, s.pv */
        int64_t c = tf_forward(&s, pv2, s.prv, s.xv[0], &cache, got);
        SAME_BITS(got, ref2, no, ti->name);
        int pre = is_prefix_tensor(ti->name);
        nprefix += pre;
        ck_assert_msg(c == (pre ? full : hit),
                      "case %d: a new %s recorded %lld variables (full pass %lld, hit %lld)", _i, ti->name,
                      (long long)c, (long long)full, (long long)hit);
        /* The original variables' slot is still there and still exact. */
        ck_assert_int_eq(tf_forward(&s, s.pv, s.prv, s.xv[0], &cache, got), hit);
        SAME_BITS(got, ref[0], no, "hit on x0 after another key");
    }
    int tok = tf_index(s.m, "embed.bias") < 0;
    ck_assert_int_eq(nprefix, (tok ? 2 : 3) + (TF_CASES[_i].layers > 0 ? 8 : 0));
    for (int k = 0; k < 3; k++) free(ref[k]);
    free(got);
    free(ref2);
    tf_free(&s);
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

/* Sum of the losses of four passes: on x0 (records the prefix), on x0 with
 * another prompt and another head variable (reuses it), on x0 with another
 * variable for a prefix tensor (new prefix), on x1. */
static mp_var tf_four_losses(tf_setup *s, mp__fwd_cache *cache, mp_var *alt)
{
    mp_tape *t = s->t;
    int32_t labels[3] = {0, 2, 1};
    mp_var pv2[TF_MAX_TENSORS], pv3[TF_MAX_TENSORS], prompt2 = MP_VAR_NONE, out, l, total;
    memcpy(pv2, s->pv, sizeof pv2);
    memcpy(pv3, s->pv, sizeof pv3);
    int32_t head = tf_index(s->m, "head.weight"), qw = tf_replaced(s->m);
    ck_assert(head >= 0 && qw >= 0 && is_prefix_tensor(mp__model_tensor(s->m, qw)->name));
    MP_CK_OK(mp_scale(t, s->pv[head], -0.5f, &pv2[head]));
    if (s->P > 0) MP_CK_OK(mp_scale(t, s->prv, 0.5f, &prompt2));
    const mp__param_info *ti = mp__model_tensor(s->m, qw);
    size_t len = (size_t)ti->rows * ti->cols;
    float *v = malloc(len * sizeof(float));
    for (size_t j = 0; j < len; j++) v[j] = 0.3f * cosf(0.7f * (float)j);
    MP_CK_OK(mp_tape_leaf(t, ti->rows, ti->cols, v, len, MP_LEAF_REQUIRES_GRAD, alt));
    free(v);
    pv3[qw] = *alt;
    MP_CK_OK(mp__model_forward(s->m, t, s->pv, s->prv, s->xv[0], cache, &out));
    MP_CK_OK(mp__model_loss(s->m, t, out, labels, NULL, s->n, &total));
    MP_CK_OK(mp__model_forward(s->m, t, pv2, prompt2, s->xv[0], cache, &out));
    MP_CK_OK(mp__model_loss(s->m, t, out, labels, NULL, s->n, &l));
    MP_CK_OK(mp_add(t, total, l, &total));
    MP_CK_OK(mp__model_forward(s->m, t, pv3, s->prv, s->xv[0], cache, &out));
    MP_CK_OK(mp__model_loss(s->m, t, out, labels, NULL, s->n, &l));
    MP_CK_OK(mp_add(t, total, l, &total));
    MP_CK_OK(mp__model_forward(s->m, t, s->pv, s->prv, s->xv[1], cache, &out));
    MP_CK_OK(mp__model_loss(s->m, t, out, labels, NULL, s->n, &l));
    MP_CK_OK(mp_add(t, total, l, &total));
    return total;
}

/* Reads the gradient of v (rows x cols) into a new buffer (zeros when v
 * got none). */
static float *grad_of(mp_tape *t, mp_var v, size_t len)
{
    float *g = calloc(len, sizeof(float));
    mp_var gv;
    MP_CK_OK(mp_tape_grad(t, v, &gv));
    if (gv != MP_VAR_NONE) MP_CK_OK(mp_tape_read(t, gv, g, len));
    return g;
}

/* Backward through a shared cached prefix: the gradient of the summed
 * losses of four passes (two reusing one prefix, one with another prefix
 * parameter variable, one on another input) equals the uncached gradient
 * for every parameter, the prompt and the replacing variable (up to the
 * order in which the passes' contributions are summed). */
START_TEST(transformer_forward_cache_gradients)
{
    tf_setup s = tf_make(_i);
    mp__fwd_cache cache;
    mp__fwd_cache_clear(&cache);
    float lv[2];
    float *g[2][TF_MAX_TENSORS + 2];
    int64_t recorded[2];
    double worst = 0;
    for (int pass = 0; pass < 2; pass++) {
        MP_CK_OK(mp_tape_reset(s.t));
        tf_leaves(&s, s.t);
        mp_var alt, total = tf_four_losses(&s, pass ? &cache : NULL, &alt);
        recorded[pass] = tape_nodes(s.t);
        MP_CK_OK(mp_tape_scalar(s.t, total, &lv[pass]));
        MP_CK_OK(mp_tape_backward(s.t, total, 0));
        for (int32_t i = 0; i < s.nt; i++) {
            const mp__param_info *ti = mp__model_tensor(s.m, i);
            g[pass][i] = grad_of(s.t, s.pv[i], (size_t)ti->rows * ti->cols);
        }
        g[pass][s.nt] = s.P > 0 ? grad_of(s.t, s.prv, (size_t)s.P * s.d) : calloc(1, sizeof(float));
        const mp__param_info *tq = mp__model_tensor(s.m, tf_replaced(s.m));
        g[pass][s.nt + 1] = grad_of(s.t, alt, (size_t)tq->rows * tq->cols);
    }
    ck_assert_msg(recorded[1] < recorded[0], "case %d: the cache saved nothing (%lld variables)", _i,
                  (long long)recorded[1]);
    ck_assert_msg(lv[0] == lv[1], "case %d: loss %.9g with the cache, %.9g without", _i, (double)lv[1],
                  (double)lv[0]);
    for (int32_t i = 0; i < s.nt + 2; i++) {
        const mp__param_info *ti = mp__model_tensor(s.m, i < s.nt ? i : tf_replaced(s.m));
        size_t len = i < s.nt ? (size_t)ti->rows * ti->cols : i == s.nt ? (size_t)(s.P > 0 ? s.P * s.d : 1)
                                                                         : (size_t)ti->rows * ti->cols;
        const char *nm = i < s.nt ? ti->name : i == s.nt ? "prompt" : "replacing variable";
        double norm = 0;
        for (size_t j = 0; j < len; j++) norm = fmax(norm, fabs(g[0][i][j]));
        /* The gradient reaches every tensor (the prompt when there is a
         * block), so a cached prefix cutting it off is seen. */
        if (i < s.nt || (i == s.nt ? s.P > 0 && TF_CASES[_i].layers > 0 : 1))
            ck_assert_msg(norm > 0, "case %d: no gradient for %s", _i, nm);
        for (size_t j = 0; j < len; j++) {
            double e = fabs((double)g[1][i][j] - g[0][i][j]);
            worst = fmax(worst, e / (1e-7 + 2e-6 * norm));
            ck_assert_msg(e <= 1e-7 + 2e-6 * norm, "case %d: %s[%zu]: %.9g with the cache, %.9g without", _i, nm,
                          j, (double)g[1][i][j], (double)g[0][i][j]);
        }
        free(g[0][i]);
        free(g[1][i]);
    }
    if (getenv("MP_TEST_VERBOSE"))
        printf("cache gradients case %d: worst difference / tolerance %.3g\n", _i, worst);
    tf_free(&s);
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

/* Predict is reentrant: threads sharing one const model get exactly the
 * single-threaded outputs. */
typedef struct {
    const mp_model *m;
    const mp_prompt *p;
    const float *x, *want;
    size_t n, no;
    int bad;
} predict_job;

static void *predict_thread(void *arg)
{
    predict_job *j = arg;
    float *out = malloc(j->no * 4);
    for (int rep = 0; rep < 5; rep++) {
        if (mp_model_predict(j->m, j->p, j->x, j->n, j->n * (size_t)mp__model_input_dim(j->m), out, j->no) != MP_OK ||
            memcmp(out, j->want, j->no * 4) != 0)
            j->bad++;
    }
    free(out);
    return NULL;
}

START_TEST(predict_is_reentrant_across_threads)
{
    mp_model *m = make_model(CFG_TF);
    mp_prompt *p = random_prompt(m, 5);
    size_t n = 6, no = out_count(m, n);
    float *x = make_x(m, n, 4), *want = malloc(no * 4);
    MP_CK_OK(mp_model_predict(m, p, x, n, n * (size_t)mp__model_input_dim(m), want, no));
    predict_job jobs[2] = {{m, p, x, want, n, no, 0}, {m, p, x, want, n, no, 0}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++) ck_assert_int_eq(pthread_create(&th[i], NULL, predict_thread, &jobs[i]), 0);
    for (int i = 0; i < 2; i++) ck_assert_int_eq(pthread_join(th[i], NULL), 0);
    ck_assert_int_eq(jobs[0].bad + jobs[1].bad, 0);
    free(x);
    free(want);
    mp_prompt_destroy(p);
    mp_model_destroy(m);
}
END_TEST

START_TEST(default_model_is_the_sinusoid_mlp_without_prompt)
{
    mp_model *m;
    MP_CK_OK(mp_model_create(&m, NULL));
    size_t np;
    MP_CK_OK(mp_model_num_params(m, &np));
    ck_assert_uint_eq(np, 1 * 40 + 40 + 40 * 40 + 40 + 40 * 1 + 1);
    int32_t r = -1, c = -1;
    MP_CK_OK(mp_model_prompt_shape(m, &r, &c));
    ck_assert_int_eq(r, 0);
    ck_assert_int_eq(c, 1);
    int64_t v;
    MP_CK_OK(mp_model_get_int(m, MP_CFG_MODEL_TASK, &v));
    ck_assert_int_eq(v, MP_TASK_REGRESSION);
    MP_CK_OK(mp_model_get_int(m, MP_CFG_MODEL_KIND, &v));
    ck_assert_int_eq(v, MP_MODEL_MLP);
    ck_assert_int_eq(mp__model_is_classifier(m), 0);
    mp_prompt *p;
    MP_CK_OK(mp_prompt_create(&p, m));
    MP_CK_OK(mp_prompt_shape(p, &r, &c));
    ck_assert_int_eq(r, 0);
    MP_CK_OK(mp_prompt_get(p, NULL, 0));
    MP_CK_OK(mp_prompt_set(p, NULL, 0));
    MP_CK_OK(mp_prompt_init(p, MP_PROMPT_INIT_NORMAL, 1.0, 1));
    float x[4] = {-2, -1, 0.5f, 3}, y[4], y2[4], t[4] = {0, 1, 2, 3}, loss;
    MP_CK_OK(mp_model_predict(m, NULL, x, 4, 4, y, 4));
    MP_CK_OK(mp_model_predict(m, p, x, 4, 4, y2, 4));
    ck_assert_int_eq(memcmp(y, y2, sizeof y), 0);
    MP_CK_OK(mp_model_loss(m, p, x, 4, 4, NULL, t, &loss));
    double want = 0;
    for (int i = 0; i < 4; i++) want += ((double)y[i] - t[i]) * ((double)y[i] - t[i]) / 4;
    ck_assert(fabs(loss - want) <= 1e-5 * (1 + want));
    /* Non-finite targets are refused, as NaN in x is, and *loss is left alone. */
    const float bad[2] = {NAN, INFINITY};
    for (int b = 0; b < 2; b++) {
        float tb[4] = {0, 1, 2, 3}, kept = -7.0f;
        tb[2] = bad[b];
        MP_CK_STATUS(mp_model_loss(m, p, x, 4, 4, NULL, tb, &kept), MP_ERR_NOT_FINITE);
        MP_CK_ERROR_MENTIONS("mp_model_loss: targets[2] is not finite");
        ck_assert(kept == -7.0f);
    }
    MP_CK_OK(mp_model_predict(m, NULL, x, 0, 0, y, 0)); /* n == 0 */
    /* Many examples: predict and loss run in chunks; the loss is still the
     * mean over all of them. */
    size_t big = 700;
    float *bx = malloc(big * 4), *by = malloc(big * 4), *bt = malloc(big * 4), bl;
    for (size_t i = 0; i < big; i++) bx[i] = (float)i / 100.0f - 3.5f, bt[i] = sinf(bx[i]);
    MP_CK_OK(mp_model_predict(m, NULL, bx, big, big, by, big));
    MP_CK_OK(mp_model_loss(m, NULL, bx, big, big, NULL, bt, &bl));
    double bw = 0;
    for (size_t i = 0; i < big; i++) bw += ((double)by[i] - bt[i]) * ((double)by[i] - bt[i]) / (double)big;
    ck_assert_msg(fabs(bl - bw) <= 1e-5 * (1 + bw), "loss %g, mean of predictions %g", bl, bw);
    free(bx);
    free(by);
    free(bt);
    /* Weights come from the seed: same seed same weights, other seed not. */
    mp_model *m2, *m3;
    mp_config *cfg;
    MP_CK_OK(mp_config_create(&cfg));
    MP_CK_OK(mp_model_create(&m2, cfg));
    MP_CK_OK(mp_config_set_int(cfg, MP_CFG_SEED, 1));
    MP_CK_OK(mp_model_create(&m3, cfg));
    mp_config_destroy(cfg);
    ck_assert_int_eq(memcmp(mp__model_params(m), mp__model_params(m2), np * 4), 0);
    ck_assert_int_ne(memcmp(mp__model_params(m), mp__model_params(m3), np * 4), 0);
    /* Biases zero, weights He-scaled (std sqrt(2/40) for fc1). */
    const mp__param_info *fc1 = mp__model_tensor(m, 2), *b1 = mp__model_tensor(m, 3);
    ck_assert_str_eq(fc1->name, "fc1.weight");
    double ss = 0;
    for (int i = 0; i < 1600; i++) ss += (double)mp__model_params(m)[fc1->offset + i] * mp__model_params(m)[fc1->offset + i];
    ck_assert(fabs(sqrt(ss / 1600) - sqrt(2.0 / 40)) < 0.03);
    for (int i = 0; i < 40; i++) ck_assert_float_eq(mp__model_params(m)[b1->offset + i], 0.0f);
    ck_assert_int_eq(mp__model_tensor(m, 4)->group, MP__GROUP_HEAD);
    ck_assert_int_eq(mp__model_tensor(m, 5)->group, MP__GROUP_HEAD);
    ck_assert_int_eq(mp__model_tensor(m, 3)->group, MP__GROUP_BACKBONE);
    mp_prompt_destroy(p);
    mp_model_destroy(m);
    mp_model_destroy(m2);
    mp_model_destroy(m3);
}
END_TEST

/* The reference shapes of the issue: ViT-style d 64, 2 layers, 4 heads,
 * MLP 128, 8 prompt tokens on 28x28 in 16 patches; MAML's conv4. */
START_TEST(reference_shapes)
{
    const int64_t vit[] = {MP_CFG_MODEL_KIND, MP_MODEL_TRANSFORMER, MP_CFG_MODEL_OUTPUT_DIM, 5,
                           MP_CFG_MODEL_PROMPT_LEN, 8, 0};
    const int64_t conv4[] = {MP_CFG_MODEL_KIND, MP_MODEL_CONV, MP_CFG_MODEL_OUTPUT_DIM, 5,
                             MP_CFG_MODEL_PROMPT_LEN, 1, 0};
    const int64_t *cfgs[2] = {vit, conv4};
    const size_t want[2] = {3200 + 1024 + 2 * 33472 + 128 + 325, 1344 + 3 * 37056 + 325};
    for (int k = 0; k < 2; k++) {
        mp_model *m = make_model(cfgs[k]);
        ck_assert_uint_eq(mp__model_param_count(m), want[k]);
        ck_assert_int_eq(mp__model_input_dim(m), 784);
        int64_t v;
        MP_CK_OK(mp_model_get_int(m, MP_CFG_MODEL_PROMPT_DIM, &v));
        ck_assert_int_eq(v, k == 0 ? 64 : 784);
        mp_prompt *p = random_prompt(m, 1);
        float *x = make_x(m, 2, 1), out[10];
        MP_CK_OK(mp_model_predict(m, p, x, 2, 2 * 784, out, 10));
        for (int i = 0; i < 10; i++) ck_assert(isfinite(out[i]));
        free(x);
        mp_prompt_destroy(p);
        mp_model_destroy(m);
    }
}
END_TEST

/* The model keys are contiguous from MP__MODEL_KEY_FIRST to _LAST (what
 * checkpoints write and check), and the docs state that range. */
START_TEST(docs_state_the_model_key_range)
{
    ck_assert_int_eq(MP__MODEL_KEY_FIRST, MP_CFG_MODEL_KIND);
    for (int32_t k = MP__MODEL_KEY_FIRST; k <= MP__MODEL_KEY_LAST; k++)
        ck_assert_msg(mp_config_key_name(k) != NULL, "model key %d has no name", (int)k);
    for (int32_t k = MP__MODEL_KEY_LAST + 1; k < 200; k++)
        ck_assert_msg(mp_config_key_name(k) == NULL, "key %d (%s) lies past MP__MODEL_KEY_LAST", (int)k,
                      mp_config_key_name(k));
    char range[64];
    snprintf(range, sizeof range, "%d\xe2\x80\x93%d", (int)MP__MODEL_KEY_FIRST, (int)MP__MODEL_KEY_LAST);
    const char *docs[2] = {"docs/MODELS.md", "docs/FORMAT.md"};
    for (int i = 0; i < 2; i++) {
        size_t len;
        char *text = (char *)slurp(mp_test_path(docs[i]), &len);
        text[len] = '\0';
        ck_assert_msg(strstr(text, range) != NULL, "%s does not state the model key range %s", docs[i], range);
        free(text);
    }
}
END_TEST

START_TEST(bad_configurations_are_refused)
{
    const int64_t cls1[] = {MP_CFG_MODEL_TASK, MP_TASK_CLASSIFICATION, 0};
    MP_CK_STATUS(try_model(cls1), MP_ERR_INVALID_ARGUMENT);
    MP_CK_ERROR_MENTIONS("output_dim");
    const int64_t heads[] = {MP_CFG_MODEL_KIND, 2, MP_CFG_MODEL_OUTPUT_DIM, 3, MP_CFG_MODEL_D_MODEL, 10,
                             MP_CFG_MODEL_HEADS, 4, 0};
    MP_CK_STATUS(try_model(heads), MP_ERR_INVALID_ARGUMENT);
    MP_CK_ERROR_MENTIONS("model.heads");
    const int64_t patch[] = {MP_CFG_MODEL_KIND, 2, MP_CFG_MODEL_OUTPUT_DIM, 3, MP_CFG_MODEL_PATCH, 5, 0};
    MP_CK_STATUS(try_model(patch), MP_ERR_INVALID_ARGUMENT);
    MP_CK_ERROR_MENTIONS("model.patch");
    const int64_t tdim[] = {MP_CFG_MODEL_KIND, 2, MP_CFG_MODEL_OUTPUT_DIM, 3, MP_CFG_MODEL_PROMPT_LEN, 2,
                            MP_CFG_MODEL_PROMPT_DIM, 5, 0};
    MP_CK_STATUS(try_model(tdim), MP_ERR_INVALID_ARGUMENT);
    MP_CK_ERROR_MENTIONS("d_model");
    const int64_t seq[] = {MP_CFG_MODEL_KIND, 2, MP_CFG_MODEL_OUTPUT_DIM, 3, MP_CFG_MODEL_VOCAB, 10, 0};
    MP_CK_STATUS(try_model(seq), MP_ERR_INVALID_ARGUMENT);
    MP_CK_ERROR_MENTIONS("seq_len");
    const int64_t small[] = {MP_CFG_MODEL_KIND, 3, MP_CFG_MODEL_OUTPUT_DIM, 3, MP_CFG_MODEL_IMAGE_HEIGHT, 8,
                             MP_CFG_MODEL_IMAGE_WIDTH, 8, MP_CFG_MODEL_CONV_BLOCKS, 4, 0};
    MP_CK_STATUS(try_model(small), MP_ERR_INVALID_ARGUMENT);
    MP_CK_ERROR_MENTIONS("too small");
    const int64_t cdim[] = {MP_CFG_MODEL_KIND, 3, MP_CFG_MODEL_OUTPUT_DIM, 3, MP_CFG_MODEL_PROMPT_LEN, 1,
                            MP_CFG_MODEL_PROMPT_DIM, 10, 0};
    MP_CK_STATUS(try_model(cdim), MP_ERR_INVALID_ARGUMENT);
    MP_CK_ERROR_MENTIONS("prompt_dim");
    const int64_t indim[] = {MP_CFG_MODEL_KIND, 3, MP_CFG_MODEL_OUTPUT_DIM, 3, MP_CFG_MODEL_INPUT_DIM, 100, 0};
    MP_CK_STATUS(try_model(indim), MP_ERR_INVALID_ARGUMENT);
    MP_CK_ERROR_MENTIONS("784");
    const int64_t ok[] = {MP_CFG_MODEL_KIND, 3, MP_CFG_MODEL_OUTPUT_DIM, 5, MP_CFG_MODEL_INPUT_DIM, 784, 0};
    MP_CK_OK(try_model(ok)); /* MAML conv4 on 28x28 with a matching explicit input_dim */
    MP_CK_STATUS(mp_model_create(NULL, NULL), MP_ERR_NULL_POINTER);
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

START_TEST(bad_arguments_are_refused_and_change_nothing)
{
    mp_model *m = make_model(CFG_MLP), *tok = make_model(CFG_TOK);
    mp_prompt *p = random_prompt(m, 1), *q;
    MP_CK_OK(mp_prompt_create(&q, tok));
    size_t np;
    MP_CK_OK(mp_model_num_params(m, &np));
    float *before = malloc(np * 4), *buf = malloc(np * 4), pv[8], pv2[8];
    MP_CK_OK(mp_model_get_params(m, before, np));
    MP_CK_OK(mp_prompt_get(p, pv, 8));
    float x[6] = {1, 2, 3, 4, 5, 6}, out[4];

    MP_CK_STATUS(mp_model_get_params(m, buf, np - 1), MP_ERR_BUFFER_TOO_SMALL);
    MP_CK_ERROR_MENTIONS("mp_model_get_params: 'buf' has room for len = ");
    MP_CK_STATUS(mp_model_get_params(NULL, buf, np), MP_ERR_NULL_POINTER);
    memcpy(buf, before, np * 4);
    buf[3] = NAN;
    MP_CK_STATUS(mp_model_set_params(m, buf, np), MP_ERR_NOT_FINITE);
    ck_assert_ptr_nonnull(strstr(mp_model_error(m), "buf[3]"));
    MP_CK_STATUS(mp_model_set_params(m, before, np + 1), MP_ERR_SHAPE_MISMATCH);
    MP_CK_STATUS(mp_model_set_params(m, NULL, np), MP_ERR_NULL_POINTER);
    MP_CK_OK(mp_model_get_params(m, buf, np));
    ck_assert_int_eq(memcmp(buf, before, np * 4), 0);

    MP_CK_STATUS(mp_model_predict(m, p, x, 2, 5, out, 4), MP_ERR_SHAPE_MISMATCH);
    MP_CK_ERROR_MENTIONS("x_len");
    MP_CK_STATUS(mp_model_predict(m, p, x, 2, 6, out, 3), MP_ERR_BUFFER_TOO_SMALL);
    MP_CK_ERROR_MENTIONS("mp_model_predict: 'out' has room for out_len = 3 floats, n * output_dim = 4 needed");
    MP_CK_STATUS(mp_model_predict(m, p, NULL, 2, 6, out, 4), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_model_predict(m, p, x, 2, 6, NULL, 4), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_model_predict(m, q, x, 2, 6, out, 4), MP_ERR_SHAPE_MISMATCH);
    MP_CK_ERROR_MENTIONS("prompt");
    x[4] = INFINITY;
    MP_CK_STATUS(mp_model_predict(m, p, x, 2, 6, out, 4), MP_ERR_NOT_FINITE);
    x[4] = 5;
    float t6[6] = {1, 2.5f, 3, 0, 1, 8};
    MP_CK_STATUS(mp_model_predict(tok, q, t6, 1, 6, out, 3), MP_ERR_INVALID_ARGUMENT);
    MP_CK_ERROR_MENTIONS("2.5");
    t6[1] = 9;
    MP_CK_STATUS(mp_model_predict(tok, q, t6, 1, 6, out, 3), MP_ERR_INVALID_ARGUMENT);
    t6[1] = 2;
    MP_CK_OK(mp_model_predict(tok, q, t6, 1, 6, out, 3));
    float loss = -1, tg[4] = {0};
    int32_t lab[1] = {3};
    MP_CK_STATUS(mp_model_loss(tok, q, t6, 1, 6, lab, NULL, &loss), MP_ERR_RANGE);
    MP_CK_STATUS(mp_model_loss(tok, q, t6, 1, 6, NULL, NULL, &loss), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_model_loss(m, p, x, 2, 6, NULL, NULL, &loss), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_model_loss(m, p, x, 0, 0, NULL, tg, &loss), MP_ERR_INVALID_ARGUMENT);
    MP_CK_STATUS(mp_model_loss(m, p, x, 2, 6, NULL, tg, NULL), MP_ERR_NULL_POINTER);
    ck_assert_float_eq(loss, -1);

    int64_t v = 99;
    MP_CK_STATUS(mp_model_get_int(m, MP_CFG_THREADS, &v), MP_ERR_NOT_FOUND);
    MP_CK_STATUS(mp_model_get_int(m, MP_CFG_SEED, NULL), MP_ERR_NULL_POINTER);
    ck_assert_int_eq(v, 99);
    MP_CK_OK(mp_model_get_int(m, MP_CFG_SEED, &v));
    ck_assert_int_eq(v, 7);
    MP_CK_OK(mp_model_get_int(m, MP_CFG_MODEL_PROMPT_DIM, &v));
    ck_assert_int_eq(v, 4);

    /* Prompts. */
    float bad[8] = {0, 0, 0, NAN, 0, 0, 0, 0};
    MP_CK_STATUS(mp_prompt_set(p, bad, 8), MP_ERR_NOT_FINITE);
    ck_assert_ptr_nonnull(strstr(mp_prompt_error(p), "buf[3]"));
    MP_CK_STATUS(mp_prompt_set(p, pv, 7), MP_ERR_SHAPE_MISMATCH);
    MP_CK_STATUS(mp_prompt_get(p, pv2, 7), MP_ERR_BUFFER_TOO_SMALL);
    MP_CK_ERROR_MENTIONS("mp_prompt_get: 'buf' has room for len = 7 floats, 8 needed (P x d = ");
    MP_CK_STATUS(mp_prompt_copy(p, q), MP_ERR_SHAPE_MISMATCH);
    MP_CK_ERROR_MENTIONS("2 x 8");
    MP_CK_STATUS(mp_prompt_init(p, 7, 1.0, 1), MP_ERR_INVALID_ARGUMENT);
    MP_CK_STATUS(mp_prompt_init(p, MP_PROMPT_INIT_NORMAL, -1.0, 1), MP_ERR_INVALID_ARGUMENT);
    MP_CK_STATUS(mp_prompt_init(p, MP_PROMPT_INIT_NORMAL, NAN, 1), MP_ERR_INVALID_ARGUMENT);
    /* a finite scale whose values overflow float: refused, the prompt unchanged */
    MP_CK_STATUS(mp_prompt_init(p, MP_PROMPT_INIT_NORMAL, 1e300, 1), MP_ERR_INVALID_ARGUMENT);
    MP_CK_ERROR_MENTIONS("mp_prompt_init: scale = 1e+300 is too large: value 0 would be");
    MP_CK_STATUS(mp_prompt_init(p, MP_PROMPT_INIT_UNIFORM, 1e39, 1), MP_ERR_INVALID_ARGUMENT);
    {
        float big[16];
        int32_t qr, qc;
        MP_CK_OK(mp_prompt_shape(q, &qr, &qc));
        ck_assert_int_le(qr * qc, 16);
        MP_CK_OK(mp_prompt_init(q, MP_PROMPT_INIT_UNIFORM, 3e38, 1)); /* |value| <= 3e38: fits */
        MP_CK_OK(mp_prompt_get(q, big, 16));
        for (int32_t i = 0; i < qr * qc; i++) ck_assert(isfinite(big[i]) && fabsf(big[i]) <= 3e38f);
    }
    MP_CK_STATUS(mp_prompt_init_from_data(p, m, x, 2, 5), MP_ERR_SHAPE_MISMATCH);
    MP_CK_STATUS(mp_prompt_init_from_data(p, m, x, 0, 0), MP_ERR_INVALID_ARGUMENT);
    MP_CK_STATUS(mp_prompt_init_from_data(p, tok, t6, 1, 6), MP_ERR_SHAPE_MISMATCH);
    t6[1] = 9; /* == vocab */
    MP_CK_STATUS(mp_prompt_init_from_data(q, tok, t6, 1, 6), MP_ERR_INVALID_ARGUMENT);
    MP_CK_ERROR_MENTIONS("[0, 9)");
    MP_CK_STATUS(mp_prompt_create(NULL, m), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_prompt_create(&q, NULL), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_prompt_shape(NULL, NULL, NULL), MP_ERR_NULL_POINTER);
    MP_CK_OK(mp_prompt_get(p, pv2, 8));
    ck_assert_int_eq(memcmp(pv, pv2, sizeof pv), 0);
    ck_assert_str_eq(mp_prompt_error(NULL), "");
    ck_assert_str_eq(mp_model_error(NULL), "");
    mp_prompt_destroy(NULL);
    mp_model_destroy(NULL);

    free(before);
    free(buf);
    mp_prompt_destroy(p);
    mp_prompt_destroy(q);
    mp_model_destroy(m);
    mp_model_destroy(tok);
}
END_TEST

START_TEST(clone_and_prompt_copy_are_deep)
{
    mp_model *m = make_model(ALL_KINDS[_i]), *c;
    MP_CK_OK(mp_model_clone(&c, m));
    size_t np;
    MP_CK_OK(mp_model_num_params(c, &np));
    ck_assert_uint_eq(np, mp__model_param_count(m));
    ck_assert_int_eq(memcmp(mp__model_params(m), mp__model_params(c), np * 4), 0);
    float keep = mp__model_params(c)[0];
    mp__model_params(c)[0] += 1.0f;
    ck_assert(mp__model_params(m)[0] != mp__model_params(c)[0]);
    mp_prompt *p = random_prompt(m, 4), *q;
    MP_CK_OK(mp_prompt_create(&q, c));
    MP_CK_OK(mp_prompt_copy(q, p));
    size_t n = 2, no = out_count(m, n), xl = n * (size_t)mp__model_input_dim(m);
    float *x = make_x(m, n, 3), *a = malloc(no * 4), *b = malloc(no * 4);
    mp__model_params(c)[0] = keep;
    MP_CK_OK(mp_model_predict(m, p, x, n, xl, a, no));
    MP_CK_OK(mp_model_predict(c, q, x, n, xl, b, no));
    ck_assert_int_eq(memcmp(a, b, no * 4), 0);
    for (int32_t k = MP__MODEL_KEY_FIRST; k <= MP__MODEL_KEY_LAST; k++) {
        int64_t v1, v2;
        MP_CK_OK(mp_model_get_int(m, k, &v1));
        MP_CK_OK(mp_model_get_int(c, k, &v2));
        ck_assert_int_eq(v1, v2);
    }
    MP_CK_STATUS(mp_model_clone(NULL, m), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_model_clone(&c, NULL), MP_ERR_NULL_POINTER);
    free(x);
    free(a);
    free(b);
    mp_prompt_destroy(p);
    mp_prompt_destroy(q);
    mp_model_destroy(m);
    mp_model_destroy(c);
}
END_TEST

/* Sample statistics of n values against a distribution: |mean - mu| <=
 * mean_tol, |sd / sigma - 1| <= sd_rel, every |v| <= bound (bound < 0:
 * none). Returns 1 when all hold; otherwise 0 with the reason in why. */
static int moments_match(const float *v, size_t n, double mu, double sigma, double mean_tol,
                         double sd_rel, double bound, char *why, size_t whylen)
{
    double s = 0, s2 = 0, mx = 0;
    for (size_t i = 0; i < n; i++) {
        s += v[i];
        if (fabs(v[i]) > mx) mx = fabs(v[i]);
    }
    double mean = s / (double)n;
    for (size_t i = 0; i < n; i++) s2 += (v[i] - mean) * (v[i] - mean);
    double sd = sqrt(s2 / (double)(n - 1));
    snprintf(why, whylen, "mean %g (want %g +- %g), sd %g (want %g +- %g%%), max |v| %g (bound %g)",
             mean, mu, mean_tol, sd, sigma, 100 * sd_rel, mx, bound);
    return fabs(mean - mu) <= mean_tol && fabs(sd / sigma - 1) <= sd_rel && (bound < 0 || mx <= bound);
}

/* mp_prompt_init's distributions, on a 64 x 32 prompt (2048 values): the
 * tolerances are about 5 standard errors of each statistic. */
START_TEST(prompt_init_distributions)
{
    const int64_t big[] = {MP_CFG_MODEL_INPUT_DIM, 3, MP_CFG_MODEL_PROMPT_LEN, 64,
                           MP_CFG_MODEL_PROMPT_DIM, 32, MP_CFG_MODEL_HIDDEN_WIDTH, 4, 0};
    mp_model *m = make_model(big);
    mp_prompt *p;
    MP_CK_OK(mp_prompt_create(&p, m));
    const size_t n = 64 * 32;
    float *v = malloc(n * 4), *w = malloc(n * 4);
    char why[256];
    /* The checks can fail: an all-zero prompt (the ZEROS init) does not pass. */
    MP_CK_OK(mp_prompt_init(p, MP_PROMPT_INIT_ZEROS, 0.5, 1));
    MP_CK_OK(mp_prompt_get(p, v, n));
    for (size_t i = 0; i < n; i++) ck_assert(v[i] == 0.0f);
    ck_assert(!moments_match(v, n, 0, 0.5 / sqrt(3.0), 0.03, 0.05, 0.5, why, sizeof why));
    ck_assert(!moments_match(v, n, 0, 0.5, 0.06, 0.08, -1, why, sizeof why));

    for (int k = 0; k < 2; k++) {
        double scale = k ? 2.0 : 0.5;
        /* U(-a, a): mean 0, sd a/sqrt(3) (relative SE of the sd ~1%), |v| <= a,
         * and the extremes come close to +-a. */
        MP_CK_OK(mp_prompt_init(p, MP_PROMPT_INIT_UNIFORM, scale, 40 + (uint64_t)k));
        MP_CK_OK(mp_prompt_get(p, v, n));
        double sd = scale / sqrt(3.0), lo = 0, hi = 0;
        ck_assert_msg(moments_match(v, n, 0, sd, 5 * sd / sqrt((double)n), 0.05, scale, why, sizeof why),
                      "uniform(%g): %s", scale, why);
        for (size_t i = 0; i < n; i++) {
            if (v[i] < lo) lo = v[i];
            if (v[i] > hi) hi = v[i];
        }
        ck_assert_msg(lo < -0.98 * scale && hi > 0.98 * scale, "uniform(%g) spans only [%g, %g]", scale, lo, hi);
        /* The same moments would not pass for N(0, a^2)-sized values. */
        ck_assert(!moments_match(v, n, 0, scale, 5 * scale / sqrt((double)n), 0.08, -1, why, sizeof why));

        /* N(0, s^2): mean 0 (SE s/45), sd s (relative SE ~1.6%), and about
         * 68.3% of the values within one sd (a uniform of that sd has 57.7%). */
        MP_CK_OK(mp_prompt_init(p, MP_PROMPT_INIT_NORMAL, scale, 50 + (uint64_t)k));
        MP_CK_OK(mp_prompt_get(p, v, n));
        ck_assert_msg(moments_match(v, n, 0, scale, 5 * scale / sqrt((double)n), 0.08, -1, why, sizeof why),
                      "normal(%g): %s", scale, why);
        size_t inside = 0;
        for (size_t i = 0; i < n; i++) inside += fabs(v[i]) <= scale;
        double frac = (double)inside / (double)n;
        ck_assert_msg(frac > 0.64 && frac < 0.73, "normal(%g): %.3f within one sd", scale, frac);
        /* Deterministic in the seed, different for another seed. */
        MP_CK_OK(mp_prompt_init(p, MP_PROMPT_INIT_NORMAL, scale, 50 + (uint64_t)k));
        MP_CK_OK(mp_prompt_get(p, w, n));
        ck_assert_int_eq(memcmp(v, w, n * 4), 0);
        MP_CK_OK(mp_prompt_init(p, MP_PROMPT_INIT_NORMAL, scale, 60 + (uint64_t)k));
        MP_CK_OK(mp_prompt_get(p, w, n));
        ck_assert_int_ne(memcmp(v, w, n * 4), 0);
    }
    /* Scale 0 gives zeros for both random methods. */
    MP_CK_OK(mp_prompt_init(p, MP_PROMPT_INIT_NORMAL, 0.0, 3));
    MP_CK_OK(mp_prompt_get(p, v, n));
    for (size_t i = 0; i < n; i++) ck_assert(v[i] == 0.0f);
    free(v);
    free(w);
    mp_prompt_destroy(p);
    mp_model_destroy(m);
}
END_TEST

/* Reference backbone feature of one example for a 1-block conv whose
 * filters copy input channel f (centre tap 1), zero conv bias, unit norm
 * scale and zero shift: per channel, instance norm over the H x W map
 * (biased variance, eps 1e-5), relu, 2x2 max-pool; channel-major. */
static void ref_identity_conv_features(const float *x, int C, int H, int W, double *feat)
{
    int h2 = H / 2, w2 = W / 2;
    for (int c = 0; c < C; c++) {
        const float *map = x + (size_t)c * H * W;
        double mu = 0, var = 0;
        for (int j = 0; j < H * W; j++) mu += map[j];
        mu /= H * W;
        for (int j = 0; j < H * W; j++) var += (map[j] - mu) * (map[j] - mu);
        var /= H * W;
        for (int py = 0; py < h2; py++)
            for (int px = 0; px < w2; px++) {
                double best = 0; /* relu: nothing below 0 */
                for (int dy = 0; dy < 2; dy++)
                    for (int dx = 0; dx < 2; dx++) {
                        double z = (map[(2 * py + dy) * W + 2 * px + dx] - mu) / sqrt(var + 1e-5);
                        if (z > best) best = z;
                    }
                feat[(c * h2 + py) * w2 + px] = best;
            }
    }
}

/* Conv prompts from data, against values worked out by hand from the
 * definitions in docs/MODELS.md. */
START_TEST(prompt_init_from_data_conv_modes)
{
    /* Input channels, C = 2 images of 4 x 4, P = 3 (d = 16): row r is the
     * mean map of channel r mod 2 over the examples i with i mod 3 == r. */
    const int64_t inch[] = {MP_CFG_MODEL_KIND, MP_MODEL_CONV, MP_CFG_MODEL_OUTPUT_DIM, 2,
                            MP_CFG_MODEL_IMAGE_HEIGHT, 4, MP_CFG_MODEL_IMAGE_WIDTH, 4,
                            MP_CFG_MODEL_IMAGE_CHANNELS, 2, MP_CFG_MODEL_CHANNELS, 2,
                            MP_CFG_MODEL_CONV_BLOCKS, 1, MP_CFG_MODEL_PROMPT_LEN, 3, 0};
    mp_model *m = make_model(inch);
    mp_prompt *p;
    MP_CK_OK(mp_prompt_create(&p, m));
    int32_t rows, cols;
    MP_CK_OK(mp_prompt_shape(p, &rows, &cols));
    ck_assert(rows == 3 && cols == 16);
    /* x[i][c][j] = 100 i + 10 c + j / 2 */
    float x[5 * 32], got[48];
    for (int i = 0; i < 5; i++)
        for (int c = 0; c < 2; c++)
            for (int j = 0; j < 16; j++) x[i * 32 + c * 16 + j] = 100.0f * i + 10.0f * c + 0.5f * j;
    MP_CK_OK(mp_prompt_init_from_data(p, m, x, 5, 5 * 32));
    MP_CK_OK(mp_prompt_get(p, got, 48));
    /* row 0: examples 0, 3, channel 0 -> 150; row 1: examples 1, 4, channel 1
     * -> 250 + 10; row 2: example 2, channel 0 -> 200. */
    const float base5[3] = {150, 260, 200};
    for (int r = 0; r < 3; r++)
        for (int j = 0; j < 16; j++)
            ck_assert_msg(got[r * 16 + j] == base5[r] + 0.5f * j, "n=5 row %d col %d: %g, want %g", r, j,
                          (double)got[r * 16 + j], (double)(base5[r] + 0.5f * j));
    /* n = 2 < P: every row averages both examples (mean 50), channel r mod 2. */
    MP_CK_OK(mp_prompt_init_from_data(p, m, x, 2, 2 * 32));
    MP_CK_OK(mp_prompt_get(p, got, 48));
    const float base2[3] = {50, 60, 50};
    for (int r = 0; r < 3; r++)
        for (int j = 0; j < 16; j++)
            ck_assert_msg(got[r * 16 + j] == base2[r] + 0.5f * j, "n=2 row %d col %d: %g, want %g", r, j,
                          (double)got[r * 16 + j], (double)(base2[r] + 0.5f * j));
    mp_prompt_destroy(p);
    mp_model_destroy(m);

    /* Head features, same images, filters that copy their input channel:
     * 2 channels x 2 x 2 pooled = 8 features per example. d = 5 truncates
     * them, d = 11 pads with zeros. */
    for (int k = 0; k < 2; k++) {
        int32_t d = k ? 11 : 5;
        const int64_t head[] = {MP_CFG_MODEL_KIND, MP_MODEL_CONV, MP_CFG_MODEL_OUTPUT_DIM, 2,
                                MP_CFG_MODEL_IMAGE_HEIGHT, 4, MP_CFG_MODEL_IMAGE_WIDTH, 4,
                                MP_CFG_MODEL_IMAGE_CHANNELS, 2, MP_CFG_MODEL_CHANNELS, 2,
                                MP_CFG_MODEL_CONV_BLOCKS, 1, MP_CFG_MODEL_PROMPT_LEN, 3,
                                MP_CFG_MODEL_PROMPT_DIM, d, MP_CFG_MODEL_PROMPT_MODE,
                                MP_PROMPT_HEAD_FEATURES, 0};
        m = make_model(head);
        float *prm = mp__model_params(m);
        for (int32_t t = 0; t < mp__model_num_tensors(m); t++) {
            const mp__param_info *ti = mp__model_tensor(m, t);
            size_t cnt = (size_t)ti->rows * ti->cols;
            if (strcmp(ti->name, "conv0.weight") == 0) {
                ck_assert(ti->rows == 2 && ti->cols == 18);
                memset(prm + ti->offset, 0, cnt * 4);
                for (int f = 0; f < 2; f++) prm[ti->offset + (size_t)f * 18 + (size_t)f * 9 + 4] = 1.0f;
            } else if (strcmp(ti->name, "norm0.weight") == 0) {
                for (size_t j = 0; j < cnt; j++) prm[ti->offset + j] = 1.0f;
            } else if (strncmp(ti->name, "head.", 5) != 0) {
                memset(prm + ti->offset, 0, cnt * 4); /* conv0.bias, norm0.bias */
            }
        }
        /* Distinct, non-affine maps per example so that the features differ. */
        float xs[5 * 32];
        for (int i = 0; i < 5 * 32; i++) xs[i] = sinf(0.37f * (float)(i * i % 97) + (float)i);
        MP_CK_OK(mp_prompt_create(&p, m));
        MP_CK_OK(mp_prompt_init_from_data(p, m, xs, 5, 5 * 32));
        float *g = malloc((size_t)3 * d * 4);
        MP_CK_OK(mp_prompt_get(p, g, (size_t)3 * d));
        double feat[5][8];
        for (int i = 0; i < 5; i++) ref_identity_conv_features(xs + i * 32, 2, 4, 4, feat[i]);
        const int groups[3][2] = {{0, 3}, {1, 4}, {2, -1}};
        for (int r = 0; r < 3; r++)
            for (int j = 0; j < d; j++) {
                double want = 0;
                if (j < 8) {
                    int a = groups[r][0], b = groups[r][1];
                    want = b < 0 ? feat[a][j] : (feat[a][j] + feat[b][j]) / 2;
                }
                ck_assert_msg(fabs(g[r * d + j] - want) <= 1e-4, "d=%d row %d col %d: %g, want %g", (int)d, r,
                              j, (double)g[r * d + j], want);
            }
        /* The rows really differ (the groups are told apart). */
        ck_assert(fabs(feat[0][0] + feat[3][0] - 2 * feat[2][0]) > 1e-3 ||
                  fabs(feat[0][1] + feat[3][1] - 2 * feat[2][1]) > 1e-3);
        free(g);
        mp_prompt_destroy(p);
        mp_model_destroy(m);
    }
}
END_TEST

START_TEST(prompt_inits)
{
    mp_model *m = make_model(CFG_MLP); /* P = 2, d = 4, input_dim 3 */
    mp_prompt *p;
    MP_CK_OK(mp_prompt_create(&p, m));
    float v[8], w[8];
    MP_CK_OK(mp_prompt_get(p, v, 8));
    for (int i = 0; i < 8; i++) ck_assert_float_eq(v[i], 0);
    MP_CK_OK(mp_prompt_init(p, MP_PROMPT_INIT_UNIFORM, 0.5, 9));
    MP_CK_OK(mp_prompt_get(p, v, 8));
    MP_CK_OK(mp_prompt_init(p, MP_PROMPT_INIT_UNIFORM, 0.5, 9));
    MP_CK_OK(mp_prompt_get(p, w, 8));
    ck_assert_int_eq(memcmp(v, w, sizeof v), 0); /* same seed, same values */
    MP_CK_OK(mp_prompt_init(p, MP_PROMPT_INIT_NORMAL, 0.5, 10));
    MP_CK_OK(mp_prompt_get(p, w, 8));
    ck_assert_int_ne(memcmp(v, w, sizeof v), 0);
    /* From data: rows are means of the examples with index = row mod P,
     * padded with zeros from input_dim 3 to d 4. */
    float x[12] = {1, 2, 3, 10, 20, 30, 3, 4, 5, 30, 40, 50};
    MP_CK_OK(mp_prompt_init_from_data(p, m, x, 4, 12));
    MP_CK_OK(mp_prompt_get(p, v, 8));
    const float want[8] = {2, 3, 4, 0, 20, 30, 40, 0};
    for (int i = 0; i < 8; i++) ck_assert_float_eq_tol(v[i], want[i], 1e-6);
    MP_CK_OK(mp_prompt_init_from_data(p, m, x, 1, 3)); /* fewer examples than rows */
    MP_CK_OK(mp_prompt_get(p, v, 8));
    for (int i = 0; i < 8; i++) ck_assert_float_eq_tol(v[i], i % 4 == 3 ? 0 : x[i % 4], 1e-6);
    mp_prompt_destroy(p);
    mp_model_destroy(m);

    /* Token transformer: row r = mean embedding of token position r. */
    mp_model *t = make_model(CFG_TOK);
    MP_CK_OK(mp_prompt_create(&p, t));
    float ids[12] = {1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0};
    MP_CK_OK(mp_prompt_init_from_data(p, t, ids, 2, 12));
    float pr[16];
    MP_CK_OK(mp_prompt_get(p, pr, 16));
    const float *emb = mp__model_params(t) + mp__model_tensor(t, 0)->offset;
    for (int j = 0; j < 8; j++) {
        ck_assert_float_eq_tol(pr[j], (emb[1 * 8 + j] + emb[7 * 8 + j]) / 2, 1e-6);
        ck_assert_float_eq_tol(pr[8 + j], (emb[2 * 8 + j] + emb[8 * 8 + j]) / 2, 1e-6);
    }
    mp_prompt_destroy(p);
    mp_model_destroy(t);

    /* Every kind accepts data init and the result differs from zero. */
    for (int k = 0; k < NKINDS; k++) {
        mp_model *mk = make_model(ALL_KINDS[k]);
        MP_CK_OK(mp_prompt_create(&p, mk));
        float *xk = make_x(mk, 3, 2);
        MP_CK_OK(mp_prompt_init_from_data(p, mk, xk, 3, 3 * (size_t)mp__model_input_dim(mk)));
        size_t cnt = (size_t)mp__model_prompt_rows(mk) * mp__model_prompt_cols(mk);
        float *pv = malloc(cnt * 4 + 4);
        MP_CK_OK(mp_prompt_get(p, pv, cnt));
        double s = 0;
        for (size_t i = 0; i < cnt; i++) s += fabs(pv[i]);
        ck_assert_msg(cnt == 0 || s > 0, "kind %d: data init gave a zero prompt", k);
        ck_assert(cnt > 0 || mp__model_prompt_rows(mk) == 0);
        free(pv);
        free(xk);
        mp_prompt_destroy(p);
        mp_model_destroy(mk);
    }
}
END_TEST

START_TEST(allocation_failures_leak_nothing)
{
    mp_test_install_failing_allocator();
    for (int k = 0; k < NKINDS; k++) {
        int ok = 0;
        for (long fail = 0; fail < 200 && !ok; fail++) {
            mp_test_fail_after(fail);
            mp_config *cfg = NULL;
            mp_model *m = (mp_model *)0x1;
            mp_status st = mp_config_create(&cfg);
            if (st == MP_OK) {
                for (const int64_t *kv = ALL_KINDS[k]; kv[0]; kv += 2)
                    mp_config_set_int(cfg, (int32_t)kv[0], kv[1]);
                st = mp_model_create(&m, cfg);
                ck_assert(st == MP_OK || st == MP_ERR_OUT_OF_MEMORY);
                if (st != MP_OK) ck_assert_ptr_eq(m, (mp_model *)0x1);
            }
            mp_prompt *p = NULL;
            float out[8], x[784 * 2] = {0};
            if (st == MP_OK) st = mp_prompt_create(&p, m);
            if (st == MP_OK) {
                size_t in = (size_t)mp__model_input_dim(m);
                st = mp_model_predict(m, p, x, 1, in, out, 8);
                ck_assert(st == MP_OK || st == MP_ERR_OUT_OF_MEMORY);
            }
            ok = st == MP_OK;
            mp_prompt_destroy(p);
            if (m != (mp_model *)0x1) mp_model_destroy(m);
            mp_config_destroy(cfg);
            mp_test_alloc_reset();
            ck_assert_int_eq(mp_live_allocations(), 0);
        }
        ck_assert_msg(ok, "kind %d never succeeded", k);
    }
    MP_CK_OK(mp_set_allocator(NULL, NULL, NULL));
}
END_TEST

/* ---- checkpoints ----------------------------------------------------------------------- */
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>

extern char **environ;

/* The fresh process: check_runner --predict-from-checkpoint CKPT X N OUT
 * (tests/check_main.c) creates a model from CKPT, loads its prompt, predicts
 * on the N examples stored as raw floats in X and writes the raw float
 * outputs to OUT. Nothing of the parent's memory is inherited: the runner
 * binary is exec'd anew. Returns 0 on success, a distinct code otherwise
 * (the reason on stderr). */
static int predict_from_checkpoint(const char *ckpt, const char *xfile, size_t n, const char *outfile)
{
    mp_model *m = NULL;
    mp_prompt *p = NULL;
    float *x = NULL, *out = NULL;
    int rc = 0;
    if (mp_model_create_from_checkpoint(&m, ckpt) != MP_OK) rc = 10;
    if (!rc && mp_prompt_create(&p, m) != MP_OK) rc = 11;
    if (!rc && mp_checkpoint_load(ckpt, m, p, NULL) != MP_OK) rc = 12;
    size_t in = rc ? 0 : (size_t)mp__model_input_dim(m), no = rc ? 0 : n * (size_t)mp__model_output_dim(m);
    if (!rc) {
        FILE *f = fopen(xfile, "rb");
        x = malloc(n * in * 4 + 4);
        if (!f || !x || fread(x, 4, n * in, f) != n * in || fgetc(f) != EOF) rc = 13;
        if (f) fclose(f);
    }
    out = rc ? NULL : malloc(no * 4 + 4);
    if (!rc && (!out || mp_model_predict(m, p, x, n, n * in, out, no) != MP_OK)) rc = 14;
    if (!rc) {
        FILE *f = fopen(outfile, "wb");
        if (!f || fwrite(out, 4, no, f) != no) rc = 15;
        if (f && fclose(f) != 0) rc = 15;
    }
    if (rc) fprintf(stderr, "predict-from-checkpoint: step %d failed: %s\n", rc, mp_last_error());
    free(x);
    free(out);
    mp_prompt_destroy(p);
    mp_model_destroy(m);
    return rc;
}

int mp_test_predict_from_checkpoint_main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: check_runner --predict-from-checkpoint CKPT X N OUT\n");
        return 2;
    }
    char *end;
    errno = 0;
    unsigned long long n = strtoull(argv[2], &end, 10);
    if (errno || *end || n == 0 || n > 1000) {
        fprintf(stderr, "predict-from-checkpoint: bad N '%s'\n", argv[2]);
        return 2;
    }
    return predict_from_checkpoint(argv[0], argv[1], (size_t)n, argv[3]);
}

/* Runs the runner binary itself (/proc/self/exe resolved to its path, which
 * valgrind reports as the client program) in --predict-from-checkpoint mode
 * and returns its exit status. The child inherits this process's
 * environment and nothing pins its BLAS kernel: it detects the same one as
 * this process because it runs on the same machine under the same tool
 * (make valgrind traces children: valgrind hides AVX-512, so a traced
 * parent and an untraced child would pick different kernels). */
static int spawn_predictor(const char *ckpt, const char *xfile, size_t n, const char *outfile,
                           int quiet)
{
    char exe[4096], nbuf[32];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    ck_assert_msg(len > 0, "readlink /proc/self/exe: %s", strerror(errno));
    exe[len] = '\0';
    snprintf(nbuf, sizeof nbuf, "%zu", n);
    char *argv[] = {exe, (char *)"--predict-from-checkpoint", (char *)ckpt, (char *)xfile, nbuf,
                    (char *)outfile, NULL};
    posix_spawn_file_actions_t fa;
    ck_assert_int_eq(posix_spawn_file_actions_init(&fa), 0);
    if (quiet) /* an expected failure: keep its message out of the test log */
        ck_assert_int_eq(posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0), 0);
    pid_t pid;
    int err = posix_spawn(&pid, exe, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    ck_assert_msg(err == 0, "posix_spawn %s: %s", exe, strerror(err));
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status), "predictor process did not exit normally (status %d)", status);
    return WEXITSTATUS(status);
}

START_TEST(save_then_load_in_a_fresh_process_is_bit_identical)
{
    make_tmpdir();
    mp_model *m = make_model(ALL_KINDS[_i]);
    mp_prompt *p = random_prompt(m, 21);
    int32_t P = mp__model_prompt_rows(m);
    /* Trained-looking weights: not the seed's initial values. */
    for (size_t i = 0; i < mp__model_param_count(m); i++) mp__model_params(m)[i] += 0.01f * (float)(i % 7);
    size_t n = 4, no = out_count(m, n), xl = n * (size_t)mp__model_input_dim(m);
    float *x = make_x(m, n, 8), *want = malloc(no * 4), *zero = malloc(no * 4);
    MP_CK_OK(mp_model_predict(m, p, x, n, xl, want, no));
    MP_CK_OK(mp_model_predict(m, NULL, x, n, xl, zero, no));
    /* With a prompt the saved prompt must matter; with P = 0 there is none. */
    if (P > 0) ck_assert_int_ne(memcmp(want, zero, no * 4), 0);
    else ck_assert_int_eq(memcmp(want, zero, no * 4), 0);
    char path[512], xfile[512], outfile[512];
    snprintf(path, sizeof path, "%s", tmp_path("m.ckpt"));
    snprintf(xfile, sizeof xfile, "%s", tmp_path("x.f32"));
    snprintf(outfile, sizeof outfile, "%s", tmp_path("out.f32"));
    MP_CK_OK(mp_checkpoint_save(path, m, p, NULL));
    spit(xfile, (const unsigned char *)x, xl * 4);

    int rc = spawn_predictor(path, xfile, n, outfile, 0);
    ck_assert_msg(rc == 0, "the fresh process failed with exit code %d", rc);
    size_t got_bytes;
    float *got = (float *)slurp(outfile, &got_bytes);
    ck_assert_uint_eq(got_bytes, no * 4);
    ck_assert_int_eq(memcmp(got, want, no * 4), 0);
    if (P > 0) ck_assert_int_ne(memcmp(got, zero, no * 4), 0);
    free(got);

    /* The runner mode fails loudly: a missing checkpoint is not a pass. */
    if (_i == 0) ck_assert_int_eq(spawn_predictor(tmp_path("none.ckpt"), xfile, n, outfile, 1), 10);

    /* The same in-process through create_from_checkpoint: same config. */
    mp_model *re;
    MP_CK_OK(mp_model_create_from_checkpoint(&re, path));
    for (int32_t k = MP__MODEL_KEY_FIRST; k <= MP__MODEL_KEY_LAST; k++) {
        int64_t a, b;
        MP_CK_OK(mp_model_get_int(m, k, &a));
        MP_CK_OK(mp_model_get_int(re, k, &b));
        ck_assert_msg(a == b, "key %d: saved %lld, recreated %lld", (int)k, (long long)a, (long long)b);
    }
    ck_assert_int_eq(memcmp(mp__model_params(m), mp__model_params(re), mp__model_param_count(m) * 4), 0);
    mp_model_destroy(re);
    free(x);
    free(want);
    free(zero);
    mp_prompt_destroy(p);
    mp_model_destroy(m);
    remove_tmpdir();
}
END_TEST

/* Configuration entries carry a type tag; a registered key must carry its
 * own (an integer key read from a float's bits, or the reverse, would be a
 * different value), and a float value must be finite and inside the key's
 * range. The CRC is made consistent, so only these checks can refuse. */
static void patch_config(const char *src, const char *dst, int32_t key, int32_t type, const void *value8)
{
    size_t len;
    unsigned char *b = slurp(src, &len);
    uint32_t nc = le32(b + 24);
    int found = 0;
    for (uint32_t i = 0; i < nc; i++) {
        unsigned char *e = b + 32 + 16 * i;
        if ((int32_t)le32(e) != key) continue;
        put_le32(e + 4, (uint32_t)type);
        if (value8) memcpy(e + 8, value8, 8); /* little-endian host (x86-64, aarch64) */
        found = 1;
    }
    ck_assert_msg(found, "key %d not in %s", (int)key, src);
    fix_crc(b, len);
    spit(dst, b, len);
    free(b);
}

START_TEST(container_checks_config_types_and_values)
{
    make_tmpdir();
    const char *path = tmp_path("c.ckpt"), *bad = tmp_path("bad.ckpt");
    mp__ckpt_writer *w;
    MP_CK_OK(mp__ckpt_writer_create(&w));
    MP_CK_OK(mp__ckpt_writer_add_config(w, MP_CFG_MODEL_KIND, MP_MODEL_MLP, 0));
    MP_CK_OK(mp__ckpt_writer_add_config(w, MP_CFG_META_INNER_LR, 0, 0.25));
    MP_CK_OK(mp__ckpt_writer_add_config(w, MP_CFG_META_OUTER_LR, 0, 1e6)); /* the maximum */
    MP_CK_OK(mp__ckpt_writer_add_config(w, MP_CFG_META_INNER_STEPS, 10000, 0)); /* the maximum */
    MP_CK_OK(mp__ckpt_writer_add_config(w, MP_CFG_META_EVAL_INNER_STEPS, -1, 0)); /* the minimum */
    MP_CK_OK(mp__ckpt_writer_add_config(w, MP_CFG_SEED, 9200000000000000000LL, 0)); /* the maximum */
    /* the writer refuses what the reader would: no file that cannot load */
    MP_CK_STATUS(mp__ckpt_writer_add_config(w, MP_CFG_META_INNER_STEPS, -5, 0), MP_ERR_INTERNAL);
    MP_CK_ERROR_MENTIONS("'meta.inner_steps' is -5, outside its range");
    MP_CK_STATUS(mp__ckpt_writer_add_config(w, MP_CFG_META_OUTER_LR, 0, NAN), MP_ERR_INTERNAL);
    MP_CK_STATUS(mp__ckpt_writer_add_config(w, MP_CFG_MODEL_PROMPT_DIM, (1 << 24) + 1, 0), MP_ERR_INTERNAL);
    MP_CK_OK(mp__ckpt_writer_save(w, path));
    mp__ckpt_writer_destroy(w);
    mp__ckpt_reader *r = NULL;
    MP_CK_OK(mp__ckpt_reader_open(&r, path)); /* the control */
    mp__ckpt_reader_close(r);
    r = (mp__ckpt_reader *)0x1;
    double one = 1.0, nan = NAN, neg = -5.0, big = 1e300;
    int64_t two = 2, minus5 = -5, huge = 99999999999LL, zero = 0, seed_over = INT64_MAX,
            minus1 = -1;
    const struct {
        int32_t key, type;
        const void *value;
        mp_status st;
        const char *mention;
    } cases[] = {
        {MP_CFG_MODEL_KIND, MP_CFG_TYPE_FLOAT, &one, MP_ERR_FORMAT,
         "key 'model.kind' (100), is stored as a float but 'model.kind' is an integer key"},
        {MP_CFG_MODEL_KIND, MP_CFG_TYPE_FLOAT, NULL, MP_ERR_FORMAT, "'model.kind' is an integer key"},
        {MP_CFG_META_INNER_LR, MP_CFG_TYPE_INT, &two, MP_ERR_FORMAT,
         "key 'meta.inner_lr' (302), is stored as an integer but 'meta.inner_lr' is a float key"},
        {MP_CFG_META_INNER_LR, MP_CFG_TYPE_FLOAT, &nan, MP_ERR_NOT_FINITE, "'meta.inner_lr' (302) is not finite"},
        {MP_CFG_META_INNER_LR, MP_CFG_TYPE_FLOAT, &neg, MP_ERR_FORMAT, "'meta.inner_lr' (302) is -5, outside its range"},
        {MP_CFG_META_OUTER_LR, MP_CFG_TYPE_FLOAT, &big, MP_ERR_FORMAT, "'meta.outer_lr' (306) is 1e+300, outside its range"},
        /* integers too, even those a load does not use */
        {MP_CFG_META_INNER_STEPS, MP_CFG_TYPE_INT, &minus5, MP_ERR_FORMAT,
         "'meta.inner_steps' (301) is -5, outside its range [0, 10000]"},
        {MP_CFG_META_EVAL_INNER_STEPS, MP_CFG_TYPE_INT, &huge, MP_ERR_FORMAT,
         "'meta.eval_inner_steps' (313) is 99999999999, outside its range [-1, 10000]"},
        {MP_CFG_MODEL_KIND, MP_CFG_TYPE_INT, &zero, MP_ERR_FORMAT, "'model.kind' (100) is 0, outside its range [1, 3]"},
        {MP_CFG_SEED, MP_CFG_TYPE_INT, &seed_over, MP_ERR_FORMAT, "'seed' (1) is 9223372036854775807, outside"},
        {MP_CFG_SEED, MP_CFG_TYPE_INT, &minus1, MP_ERR_FORMAT, "'seed' (1) is -1, outside"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        patch_config(path, bad, cases[c].key, cases[c].type, cases[c].value);
        MP_CK_STATUS(mp__ckpt_reader_open(&r, bad), cases[c].st);
        MP_CK_ERROR_MENTIONS(cases[c].mention);
        ck_assert_ptr_eq(r, (mp__ckpt_reader *)0x1);
    }

    /* Through the public loaders: model.kind tagged as a float (its bits
     * then read as the double 4.9e-324 by a float reader, or as the
     * integer 1 by one that ignores the tag). */
    mp_model *m = make_model(CFG_MLP), *other = (mp_model *)0x1;
    mp_prompt *p = random_prompt(m, 1);
    size_t np = mp__model_param_count(m);
    float *before = malloc(np * sizeof(float));
    memcpy(before, mp__model_params(m), np * sizeof(float));
    MP_CK_OK(mp_checkpoint_save(path, m, p, NULL));
    patch_config(path, bad, MP_CFG_MODEL_KIND, MP_CFG_TYPE_FLOAT, NULL);
    for (size_t i = 0; i < np; i++) mp__model_params(m)[i] += 1.0f;
    memcpy(before, mp__model_params(m), np * sizeof(float));
    MP_CK_STATUS(mp_checkpoint_load(bad, m, p, NULL), MP_ERR_FORMAT);
    MP_CK_ERROR_MENTIONS("mp_checkpoint_load: '");
    MP_CK_ERROR_MENTIONS("'model.kind' is an integer key");
    ck_assert_int_eq(memcmp(before, mp__model_params(m), np * sizeof(float)), 0);
    MP_CK_STATUS(mp_model_create_from_checkpoint(&other, bad), MP_ERR_FORMAT);
    MP_CK_ERROR_MENTIONS("'model.kind' is an integer key");
    ck_assert_ptr_eq(other, (mp_model *)0x1);
    MP_CK_OK(mp_checkpoint_load(path, m, p, NULL)); /* the unpatched file loads */
    free(before);
    mp_prompt_destroy(p);
    mp_model_destroy(m);
    remove_tmpdir();
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

/* The writer stores resolved values (model.prompt_dim = 0 becomes the
 * MLP's input_dim, the conv's H*W); each must be inside its key's range, or
 * the range check on load (and mp_model_create_from_checkpoint, through
 * mp_config_set_int) would refuse a file the library wrote itself. The
 * resolved prompt_dim of each kind beyond 2^20 (the key's former maximum;
 * it now ends at 2^24, as input_dim): save, load, re-create. */
START_TEST(checkpoints_of_the_largest_resolved_sizes_load)
{
    make_tmpdir();
    const char *path = tmp_path("big.ckpt");
    static const struct {
        int32_t kind, in_dim, h, w, channels;
        int64_t d;
    } cases[] = {{MP_MODEL_MLP, (1 << 20) + 1, 0, 0, 0, (1 << 20) + 1}, {MP_MODEL_CONV, 0, 1025, 1025, 1, 1025 * 1025}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        mp_config *cfg;
        MP_CK_OK(mp_config_create(&cfg));
        MP_CK_OK(mp_config_set_int(cfg, MP_CFG_MODEL_KIND, cases[c].kind));
        MP_CK_OK(mp_config_set_int(cfg, MP_CFG_MODEL_PROMPT_LEN, 1));
        if (cases[c].kind == MP_MODEL_MLP) {
            MP_CK_OK(mp_config_set_int(cfg, MP_CFG_MODEL_INPUT_DIM, cases[c].in_dim));
            MP_CK_OK(mp_config_set_int(cfg, MP_CFG_MODEL_HIDDEN_LAYERS, 1));
            MP_CK_OK(mp_config_set_int(cfg, MP_CFG_MODEL_HIDDEN_WIDTH, 1));
        } else {
            MP_CK_OK(mp_config_set_int(cfg, MP_CFG_MODEL_IMAGE_HEIGHT, cases[c].h));
            MP_CK_OK(mp_config_set_int(cfg, MP_CFG_MODEL_IMAGE_WIDTH, cases[c].w));
            MP_CK_OK(mp_config_set_int(cfg, MP_CFG_MODEL_IMAGE_CHANNELS, cases[c].channels));
            MP_CK_OK(mp_config_set_int(cfg, MP_CFG_MODEL_CHANNELS, 1));
            MP_CK_OK(mp_config_set_int(cfg, MP_CFG_MODEL_CONV_BLOCKS, 1));
        }
        MP_CK_OK(mp_config_set_int(cfg, MP_CFG_MODEL_OUTPUT_DIM, 2));
        mp_model *m, *re = NULL;
        MP_CK_OK(mp_model_create(&m, cfg));
        mp_config_destroy(cfg);
        int64_t d = 0;
        MP_CK_OK(mp_model_get_int(m, MP_CFG_MODEL_PROMPT_DIM, &d));
        ck_assert_int_eq(d, cases[c].d);
        mp_prompt *p = random_prompt(m, 3);
        MP_CK_OK(mp_checkpoint_save(path, m, p, NULL));
        MP_CK_OK(mp_checkpoint_load(path, m, p, NULL));
        MP_CK_OK(mp_model_create_from_checkpoint(&re, path));
        MP_CK_OK(mp_model_get_int(re, MP_CFG_MODEL_PROMPT_DIM, &d));
        ck_assert_int_eq(d, cases[c].d);
        mp_model_destroy(re);
        mp_prompt_destroy(p);
        mp_model_destroy(m);
        unlink(path);
    }
    remove_tmpdir();
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

/* An algorithm number that names none is refused by the container's range
 * check (it would otherwise pass as "not Meta-SGD", since MAML, first-order
 * MAML and Reptile states load into one another), and nothing changes. */
START_TEST(meta_state_refuses_unknown_algorithm)
{
    make_tmpdir();
    const char *path = tmp_path("alg.ckpt"), *bad = tmp_path("alg_bad.ckpt");
    mp_model *m = make_model(CFG_MLP);
    mp_prompt *p = random_prompt(m, 1);
    mp_config *c;
    MP_CK_OK(mp_config_create(&c));
    MP_CK_OK(mp_config_set_int(c, MP_CFG_META_ALGORITHM, MP_META_FOMAML));
    mp_meta *meta;
    MP_CK_OK(mp_meta_create(&meta, m, p, c));
    mp_config_destroy(c);
    MP_CK_OK(mp_checkpoint_save(path, m, p, meta));
    MP_CK_OK(mp_checkpoint_load(path, m, p, meta)); /* the control */
    size_t np = mp__model_param_count(m);
    for (size_t i = 0; i < np; i++) mp__model_params(m)[i] += 1.0f; /* a failed load must not restore them */
    float *before = malloc(np * sizeof(float));
    memcpy(before, mp__model_params(m), np * sizeof(float));
    const int64_t algos[] = {0, MP_META_METASGD + 1, -1, INT64_MAX};
    for (size_t i = 0; i < sizeof algos / sizeof algos[0]; i++) {
        patch_config(path, bad, MP_CFG_META_ALGORITHM, MP_CFG_TYPE_INT, &algos[i]);
        MP_CK_STATUS(mp_checkpoint_load(bad, m, p, meta), MP_ERR_FORMAT);
        MP_CK_ERROR_MENTIONS("configuration key 'meta.algorithm' (300) is");
        MP_CK_ERROR_MENTIONS("outside its range [1, 4]");
        ck_assert_int_eq(memcmp(before, mp__model_params(m), np * sizeof(float)), 0);
    }
    free(before);
    int64_t t = -1;
    MP_CK_OK(mp_meta_step_count(meta, &t));
    ck_assert_int_eq(t, 0);
    mp_meta_destroy(meta);
    mp_prompt_destroy(p);
    mp_model_destroy(m);
    remove_tmpdir();
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

/* Writes a checkpoint for m by hand, with one deliberate defect. */
enum { D_NONE, D_TRANSPOSED, D_MISSING, D_EXTRA, D_UNKNOWN, D_NAN, D_CONFIG, D_NO_PROMPT,
       D_PROMPT_SHAPE, D_NEW_KEY };
static void write_defective(const char *path, const mp_model *m, const mp_prompt *p, int defect)
{
    mp__ckpt_writer *w;
    MP_CK_OK(mp__ckpt_writer_create(&w));
    for (int32_t k = MP_CFG_MODEL_KIND; k <= MP_CFG_MODEL_PROMPT_MODE; k++) {
        int64_t v;
        MP_CK_OK(mp_model_get_int(m, k, &v));
        if (defect == D_CONFIG && k == MP_CFG_MODEL_HIDDEN_WIDTH) v += 1;
        MP_CK_OK(mp__ckpt_writer_add_config(w, k, v, 0));
    }
    for (int32_t i = 0; i < mp__model_num_tensors(m); i++) {
        const mp__param_info *t = mp__model_tensor(m, i);
        char name[80];
        snprintf(name, sizeof name, "model/%s", t->name);
        int32_t r = t->rows, c = t->cols;
        if (i == 0 && defect == D_TRANSPOSED) r = t->cols, c = t->rows;
        if (i == 0 && defect == D_MISSING) continue;
        float *v = malloc((size_t)r * c * 4);
        memcpy(v, mp__model_params_const(m) + t->offset, (size_t)r * c * 4);
        if (i == 1 && defect == D_NAN) v[0] = NAN;
        MP_CK_OK(mp__ckpt_writer_add(w, name, r, c, v));
        free(v);
    }
    float one = 1;
    if (defect == D_EXTRA) MP_CK_OK(mp__ckpt_writer_add(w, "model/extra.weight", 1, 1, &one));
    if (defect == D_UNKNOWN) MP_CK_OK(mp__ckpt_writer_add(w, "other", 1, 1, &one));
    int32_t P = mp__model_prompt_rows(m), d = mp__model_prompt_cols(m);
    if (defect == D_PROMPT_SHAPE) MP_CK_OK(mp__ckpt_writer_add(w, "prompt", d, P, mp__prompt_data_const(p)));
    else if (defect != D_NO_PROMPT) MP_CK_OK(mp__ckpt_writer_add(w, "prompt", P, d, mp__prompt_data_const(p)));
    MP_CK_OK(mp__ckpt_writer_save(w, path));
    mp__ckpt_writer_destroy(w);
    if (defect == D_NEW_KEY) { /* a model key from the future: patch key 121 into 199 */
        size_t len;
        unsigned char *b = slurp(path, &len);
        for (size_t pos = 32; pos + 16 <= len; pos += 16)
            if (le32(b + pos) == MP_CFG_MODEL_PROMPT_MODE) {
                put_le32(b + pos, 199);
                break;
            }
        fix_crc(b, len);
        spit(path, b, len);
        free(b);
    }
}

START_TEST(load_verifies_everything_before_touching_the_destination)
{
    make_tmpdir();
    mp_model *src = make_model(CFG_MLP), *dst = make_model(CFG_MLP);
    mp_prompt *sp = random_prompt(src, 1), *dp = random_prompt(dst, 2);
    for (size_t i = 0; i < mp__model_param_count(src); i++) mp__model_params(src)[i] = 0.5f;
    size_t np = mp__model_param_count(dst);
    float *before = malloc(np * 4), pbefore[8], pnow[8];
    memcpy(before, mp__model_params(dst), np * 4);
    MP_CK_OK(mp_prompt_get(dp, pbefore, 8));
    char path[512], bad[512];
    snprintf(path, sizeof path, "%s", tmp_path("d.ckpt"));
    snprintf(bad, sizeof bad, "%s", tmp_path("bad.ckpt"));
    const struct { int defect; mp_status st; const char *mention; } cases[] = {
        {D_TRANSPOSED, MP_ERR_SHAPE_MISMATCH, "fc0.weight"}, {D_MISSING, MP_ERR_NOT_FOUND, "fc0.weight"},
        {D_EXTRA, MP_ERR_FORMAT, "extra.weight"},            {D_UNKNOWN, MP_ERR_FORMAT, "other"},
        {D_NAN, MP_ERR_NOT_FINITE, "tensor 'model/fc0.bias' value 0 is not finite"},            {D_CONFIG, MP_ERR_SHAPE_MISMATCH, "hidden_width"},
        {D_NO_PROMPT, MP_ERR_NOT_FOUND, "prompt"},           {D_PROMPT_SHAPE, MP_ERR_SHAPE_MISMATCH, "prompt"},
        {D_NEW_KEY, MP_ERR_SHAPE_MISMATCH, "199"},
    };
    char prefix[600]; /* every message names the function and the file */
    snprintf(prefix, sizeof prefix, "mp_checkpoint_load: '%s': ", path);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        write_defective(path, src, sp, cases[c].defect);
        mp_clear_error();
        mp_status st = mp_checkpoint_load(path, dst, dp, NULL);
        ck_assert_msg(st == cases[c].st, "defect %d: got %d (%s), want %d", cases[c].defect, (int)st,
                      mp_last_error(), (int)cases[c].st);
        MP_CK_ERROR_MENTIONS(cases[c].mention);
        ck_assert_msg(strncmp(mp_last_error(), prefix, strlen(prefix)) == 0, "'%s' does not start with '%s'",
                      mp_last_error(), prefix);
        ck_assert_str_eq(mp_model_error(dst), mp_last_error());
        ck_assert_int_eq(memcmp(before, mp__model_params(dst), np * 4), 0);
        MP_CK_OK(mp_prompt_get(dp, pnow, 8));
        ck_assert_int_eq(memcmp(pbefore, pnow, sizeof pnow), 0);
    }
    /* Without a prompt handle a file with no prompt loads fine. */
    write_defective(path, src, sp, D_NO_PROMPT);
    MP_CK_OK(mp_checkpoint_load(path, dst, NULL, NULL));
    ck_assert_int_eq(memcmp(mp__model_params(src), mp__model_params(dst), np * 4), 0);
    memcpy(mp__model_params(dst), before, np * 4);

    /* Container damage reaches the public API with the same statuses. */
    MP_CK_OK(mp_checkpoint_save(path, src, sp, NULL));
    size_t len;
    unsigned char *good = slurp(path, &len), *b = malloc(len);
    memcpy(b, good, len);
    b[0] = 0;
    spit(bad, b, len);
    snprintf(prefix, sizeof prefix, "mp_checkpoint_load: '%s': ", bad);
    MP_CK_STATUS(mp_checkpoint_load(bad, dst, dp, NULL), MP_ERR_FORMAT);
    MP_CK_ERROR_MENTIONS(prefix);
    MP_CK_ERROR_MENTIONS("bad magic");
    memcpy(b, good, len);
    put_le32(b + 8, 9);
    spit(bad, b, len);
    MP_CK_STATUS(mp_checkpoint_load(bad, dst, dp, NULL), MP_ERR_VERSION);
    MP_CK_ERROR_MENTIONS(prefix);
    MP_CK_ERROR_MENTIONS("format version 9 is not supported");
    memcpy(b, good, len);
    b[len / 2] ^= 1;
    spit(bad, b, len);
    MP_CK_STATUS(mp_checkpoint_load(bad, dst, dp, NULL), MP_ERR_CHECKSUM);
    MP_CK_ERROR_MENTIONS(prefix);
    MP_CK_ERROR_MENTIONS("CRC32 mismatch");
    spit(bad, good, len - 10);
    MP_CK_STATUS(mp_checkpoint_load(bad, dst, dp, NULL), MP_ERR_FORMAT);
    MP_CK_ERROR_MENTIONS("truncated");
    MP_CK_ERROR_MENTIONS(bad);
    MP_CK_STATUS(mp_checkpoint_load(tmp_path("none"), dst, dp, NULL), MP_ERR_IO);
    MP_CK_ERROR_MENTIONS("none': cannot open: No such file");
    MP_CK_STATUS(mp_checkpoint_load(g_tmpdir, dst, dp, NULL), MP_ERR_IO);
    MP_CK_ERROR_MENTIONS("is a directory");
    mp_model *other = (mp_model *)0x1;
    MP_CK_STATUS(mp_model_create_from_checkpoint(&other, bad), MP_ERR_FORMAT);
    snprintf(prefix, sizeof prefix, "mp_model_create_from_checkpoint: '%s': file truncated", bad);
    MP_CK_ERROR_MENTIONS(prefix);
    MP_CK_STATUS(mp_model_create_from_checkpoint(&other, g_tmpdir), MP_ERR_IO);
    MP_CK_ERROR_MENTIONS("is a directory");
    ck_assert_ptr_eq(other, (mp_model *)0x1);
    ck_assert_int_eq(memcmp(before, mp__model_params(dst), np * 4), 0);
    MP_CK_OK(mp_prompt_get(dp, pnow, 8));
    ck_assert_int_eq(memcmp(pbefore, pnow, sizeof pnow), 0);

    /* Another architecture is refused; a good load replaces everything. */
    mp_model *conv = make_model(CFG_CONV_IN);
    MP_CK_STATUS(mp_checkpoint_load(path, conv, NULL, NULL), MP_ERR_SHAPE_MISMATCH);
    MP_CK_ERROR_MENTIONS("model.kind");
    MP_CK_STATUS(mp_checkpoint_save(path, src, dp == NULL ? NULL : (mp_prompt *)NULL, NULL), MP_OK);
    MP_CK_OK(mp_checkpoint_save(path, src, sp, NULL));
    MP_CK_OK(mp_checkpoint_load(path, dst, dp, NULL));
    ck_assert_int_eq(memcmp(mp__model_params(src), mp__model_params(dst), np * 4), 0);
    MP_CK_OK(mp_prompt_get(dp, pnow, 8));
    MP_CK_OK(mp_prompt_get(sp, pbefore, 8));
    ck_assert_int_eq(memcmp(pbefore, pnow, sizeof pnow), 0);

    /* Argument checks. */
    mp_prompt *cp;
    MP_CK_OK(mp_prompt_create(&cp, conv));
    MP_CK_STATUS(mp_checkpoint_save(path, src, cp, NULL), MP_ERR_SHAPE_MISMATCH);
    MP_CK_STATUS(mp_checkpoint_save(NULL, src, sp, NULL), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_checkpoint_save(path, NULL, sp, NULL), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_checkpoint_save(tmp_path("no/dir/x"), src, sp, NULL), MP_ERR_IO);
    /* A non-finite value (none reaches a handle through the API; poked in
     * here) is refused before the file is touched: no file the loader
     * would refuse. */
    {
        const char *nf = tmp_path("nonfinite.ckpt");
        unlink(nf);
        float keep = mp__prompt_data(sp)[3];
        mp__prompt_data(sp)[3] = INFINITY;
        MP_CK_STATUS(mp_checkpoint_save(nf, src, sp, NULL), MP_ERR_NOT_FINITE);
        MP_CK_ERROR_MENTIONS("mp_checkpoint_save: tensor 'prompt' value 3 is not finite (inf); nothing was written");
        mp__prompt_data(sp)[3] = keep;
        keep = mp__model_params(src)[1];
        mp__model_params(src)[1] = NAN;
        MP_CK_STATUS(mp_checkpoint_save_with_sampler(nf, src, sp, NULL, NULL), MP_ERR_NOT_FINITE);
        MP_CK_ERROR_MENTIONS("mp_checkpoint_save_with_sampler: tensor 'model/");
        mp__model_params(src)[1] = keep;
        ck_assert_int_ne(access(nf, F_OK), 0);
    }
    MP_CK_STATUS(mp_checkpoint_load(NULL, dst, dp, NULL), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_checkpoint_load(path, NULL, dp, NULL), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_checkpoint_load(path, dst, cp, NULL), MP_ERR_SHAPE_MISMATCH);
    MP_CK_STATUS(mp_model_create_from_checkpoint(NULL, path), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_model_create_from_checkpoint(&other, NULL), MP_ERR_NULL_POINTER);

    free(before);
    free(good);
    free(b);
    mp_prompt_destroy(cp);
    mp_prompt_destroy(sp);
    mp_prompt_destroy(dp);
    mp_model_destroy(src);
    mp_model_destroy(dst);
    mp_model_destroy(conv);
    remove_tmpdir();
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

/* model.init only chose the initial values: a checkpoint saved from a
 * TORCH-initialised model loads into an He-initialised one of the same
 * layout, and the loaded model predicts exactly as the saved one. The key
 * is still stored, so create_from_checkpoint rebuilds the TORCH config. */
START_TEST(load_ignores_a_different_init_scheme)
{
    make_tmpdir();
    const char *path = tmp_path("init.ckpt");
    const int64_t *kinds[2] = {CFG_MLP, CFG_CONV_IN};
    for (int k = 0; k < 2; k++) {
        mp_model *src = make_model_plus(kinds[k], MP_CFG_MODEL_INIT, MP_INIT_TORCH);
        mp_model *dst = make_model_plus(kinds[k], MP_CFG_MODEL_INIT, MP_INIT_HE);
        size_t np = mp__model_param_count(src);
        ck_assert_uint_eq(np, mp__model_param_count(dst));
        ck_assert_int_ne(memcmp(mp__model_params(src), mp__model_params(dst), np * 4), 0);
        mp_prompt *sp = random_prompt(src, 31), *dp;
        MP_CK_OK(mp_prompt_create(&dp, dst));
        size_t n = 3, no = out_count(src, n), xl = n * (size_t)mp__model_input_dim(src);
        float *x = make_x(src, n, 12), *want = malloc(no * 4), *got = malloc(no * 4);
        MP_CK_OK(mp_model_predict(src, sp, x, n, xl, want, no));
        MP_CK_OK(mp_model_predict(dst, dp, x, n, xl, got, no));
        ck_assert_int_ne(memcmp(want, got, no * 4), 0); /* the load has something to change */
        MP_CK_OK(mp_checkpoint_save(path, src, sp, NULL));

        MP_CK_OK(mp_checkpoint_load(path, dst, dp, NULL));
        ck_assert_int_eq(memcmp(mp__model_params(src), mp__model_params(dst), np * 4), 0);
        MP_CK_OK(mp_model_predict(dst, dp, x, n, xl, got, no));
        ck_assert_int_eq(memcmp(want, got, no * 4), 0);
        int64_t v;
        MP_CK_OK(mp_model_get_int(dst, MP_CFG_MODEL_INIT, &v)); /* the handle's config stays */
        ck_assert_int_eq(v, MP_INIT_HE);

        /* The file keeps the key, and create_from_checkpoint reproduces it. */
        mp__ckpt_reader *r;
        MP_CK_OK(mp__ckpt_reader_open(&r, path));
        MP_CK_OK(mp__ckpt_config(r, MP_CFG_MODEL_INIT, &v, NULL));
        ck_assert_int_eq(v, MP_INIT_TORCH);
        mp__ckpt_reader_close(r);
        mp_model *re;
        MP_CK_OK(mp_model_create_from_checkpoint(&re, path));
        MP_CK_OK(mp_model_get_int(re, MP_CFG_MODEL_INIT, &v));
        ck_assert_int_eq(v, MP_INIT_TORCH);
        ck_assert_int_eq(memcmp(mp__model_params(src), mp__model_params(re), np * 4), 0);
        mp_model_destroy(re);

        /* A layout key still has to agree (the init key is the only one skipped). */
        mp_model *wide = make_model_plus(kinds[k], MP_CFG_MODEL_OUTPUT_DIM, 7);
        MP_CK_STATUS(mp_checkpoint_load(path, wide, NULL, NULL), MP_ERR_SHAPE_MISMATCH);
        MP_CK_ERROR_MENTIONS("model.output_dim");
        mp_model_destroy(wide);

        free(x);
        free(want);
        free(got);
        mp_prompt_destroy(sp);
        mp_prompt_destroy(dp);
        mp_model_destroy(src);
        mp_model_destroy(dst);
    }
    remove_tmpdir();
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

/* Out of memory anywhere in save or load: a clean status, nothing leaked,
 * and a failed load leaves the destination as it was. */
START_TEST(checkpoint_allocation_failures)
{
    make_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s", tmp_path("oom.ckpt"));
    mp_test_install_failing_allocator();
    mp_model *src = make_model(CFG_TF), *dst = make_model(CFG_TF);
    mp_prompt *sp = random_prompt(src, 1), *dp = random_prompt(dst, 2);
    mp__model_params(src)[0] = 42.0f;
    size_t np = mp__model_param_count(dst);
    float *before = malloc(np * 4);
    memcpy(before, mp__model_params(dst), np * 4);
    long base = mp_live_allocations();
    int saved = 0, loaded = 0;
    for (long fail = 0; fail < 500 && !saved; fail++) {
        mp_test_fail_after(fail);
        mp_status st = mp_checkpoint_save(path, src, sp, NULL);
        mp_test_alloc_reset();
        ck_assert(st == MP_OK || st == MP_ERR_OUT_OF_MEMORY);
        ck_assert_int_eq(mp_live_allocations(), base);
        saved = st == MP_OK;
    }
    ck_assert(saved);
    for (long fail = 0; fail < 500 && !loaded; fail++) {
        mp_test_fail_after(fail);
        mp_status st = mp_checkpoint_load(path, dst, dp, NULL);
        mp_test_alloc_reset();
        ck_assert(st == MP_OK || st == MP_ERR_OUT_OF_MEMORY);
        ck_assert_int_eq(mp_live_allocations(), base);
        loaded = st == MP_OK;
        if (!loaded) ck_assert_int_eq(memcmp(before, mp__model_params(dst), np * 4), 0);
    }
    ck_assert(loaded);
    ck_assert_float_eq(mp__model_params(dst)[0], 42.0f);
    for (long fail = 0; fail < 500; fail++) {
        mp_model *m = (mp_model *)0x1;
        mp_test_fail_after(fail);
        mp_status st = mp_model_create_from_checkpoint(&m, path);
        mp_test_alloc_reset();
        ck_assert(st == MP_OK || st == MP_ERR_OUT_OF_MEMORY);
        if (st == MP_OK) {
            mp_model_destroy(m);
            break;
        }
        ck_assert_ptr_eq(m, (mp_model *)0x1);
        ck_assert_int_eq(mp_live_allocations(), base);
    }
    free(before);
    mp_prompt_destroy(sp);
    mp_prompt_destroy(dp);
    mp_model_destroy(src);
    mp_model_destroy(dst);
    ck_assert_int_eq(mp_live_allocations(), 0);
    MP_CK_OK(mp_set_allocator(NULL, NULL, NULL));
    remove_tmpdir();
}
END_TEST

/* MP_INIT_TORCH gives PyTorch's default U(+-1/sqrt(fan_in)) for weights and
 * biases of the MLP and conv kinds; the default scheme keeps zero biases. */
START_TEST(torch_init_scheme_matches_pytorch_bounds)
{
    for (int kind = 0; kind < 2; kind++) {
        mp_config *cfg;
        MP_CK_OK(mp_config_create(&cfg));
        MP_CK_OK(mp_config_set_int(cfg, MP_CFG_MODEL_KIND, kind ? MP_MODEL_CONV : MP_MODEL_MLP));
        if (kind) MP_CK_OK(mp_config_set_int(cfg, MP_CFG_MODEL_CHANNELS, 8));
        if (kind) MP_CK_OK(mp_config_set_int(cfg, MP_CFG_MODEL_OUTPUT_DIM, 5));
        MP_CK_OK(mp_config_set_int(cfg, MP_CFG_MODEL_INIT, MP_INIT_TORCH));
        mp_model *m;
        MP_CK_OK(mp_model_create(&m, cfg));
        int64_t v;
        MP_CK_OK(mp_model_get_int(m, MP_CFG_MODEL_INIT, &v));
        ck_assert_int_eq(v, MP_INIT_TORCH);
        const float *p = mp__model_params_const(m);
        for (int32_t i = 0; i < mp__model_num_tensors(m); i++) {
            const mp__param_info *t = mp__model_tensor(m, i);
            if (strstr(t->name, "norm")) continue; /* norm scale/shift: ones/zeros */
            /* fan_in: rows of an x-out weight (MLP), cols of a conv filter bank */
            int is_conv = strncmp(t->name, "conv", 4) == 0;
            const mp__param_info *w = strstr(t->name, "bias") ? mp__model_tensor(m, i - 1) : t;
            double fan = is_conv ? w->cols : w->rows;
            double bound = 1.0 / sqrt(fan);
            size_t n = (size_t)t->rows * (size_t)t->cols;
            double s2 = 0, mx = 0;
            for (size_t j = 0; j < n; j++) {
                double x = p[t->offset + j];
                s2 += x * x;
                if (fabs(x) > mx) mx = fabs(x);
            }
            ck_assert_msg(mx <= bound * (1 + 1e-6), "%s: |x| %g > bound %g", t->name, mx, bound);
            ck_assert_msg(mx > 0, "%s is all zeros", t->name);
            if (n >= 500) /* variance of U(-b, b) is b^2/3 */
                ck_assert_msg(fabs(s2 / (double)n - bound * bound / 3) < 0.15 * bound * bound / 3,
                              "%s: variance %g, expected %g", t->name, s2 / (double)n, bound * bound / 3);
        }
        mp_model_destroy(m);
        mp_config_destroy(cfg);
    }
    mp_config *cfg;
    MP_CK_OK(mp_config_create(&cfg));
    MP_CK_STATUS(mp_config_set_int(cfg, MP_CFG_MODEL_INIT, 2), MP_ERR_RANGE);
    mp_model *m;
    MP_CK_OK(mp_model_create(&m, cfg));
    const mp__param_info *b = mp__model_tensor(m, 1);
    ck_assert_ptr_nonnull(strstr(b->name, "bias"));
    ck_assert(mp__model_params_const(m)[b->offset] == 0.0f);
    mp_model_destroy(m);
    mp_config_destroy(cfg);
}
END_TEST

/* ---- conv forward cache (mp__fwd_cache) ------------------------------------------------ */
/* A conv with the prompt at the head and 5 blocks: its backbone reads 20
 * tensors, more than a slot held before the key limit was raised. */
static const int64_t CFG_CONV_HEAD5[] = {MP_CFG_MODEL_KIND, MP_MODEL_CONV, MP_CFG_MODEL_OUTPUT_DIM, 3,
                                         MP_CFG_MODEL_IMAGE_HEIGHT, 32, MP_CFG_MODEL_IMAGE_WIDTH, 32,
                                         MP_CFG_MODEL_CHANNELS, 2, MP_CFG_MODEL_CONV_BLOCKS, 5,
                                         MP_CFG_MODEL_PROMPT_LEN, 2, MP_CFG_MODEL_PROMPT_DIM, 3,
                                         MP_CFG_MODEL_PROMPT_MODE, MP_PROMPT_HEAD_FEATURES, 0};
/* Cacheable (backbone independent of the prompt) first; the last one has
 * the prompt at the input: nothing to cache. */
static const int64_t *const CONV_CACHE_CFGS[] = {CFG_CONV_HEAD, CFG_CONV_HEAD_P0, CFG_CONV_HEAD5,
                                                 CFG_CONV_IN_P0, CFG_CONV_IN};
#define NCONV_CACHE_CFGS 5
#define NCONV_CACHEABLE  4

/* Conv parameter, prompt and input leaves on one tape (flags for the
 * parameters and the prompt). */
typedef struct {
    mp_tape *t;
    mp_var pv[64], prv, xv;
    int32_t nt, nb; /* tensors; backbone tensors (all but head.weight/bias) */
} conv_tape;

static conv_tape conv_tape_make(mp_model *m, mp_prompt *p, const float *x, size_t n, int32_t flags)
{
    conv_tape c;
    MP_CK_OK(mp_tape_create(&c.t));
    c.nt = mp__model_num_tensors(m);
    c.nb = c.nt - 2;
    ck_assert_int_le(c.nt, 64);
    ck_assert_str_eq(mp__model_tensor(m, c.nb)->name, "head.weight");
    for (int32_t i = 0; i < c.nt; i++) {
        const mp__param_info *ti = mp__model_tensor(m, i);
        MP_CK_OK(mp_tape_leaf(c.t, ti->rows, ti->cols, mp__model_params(m) + ti->offset,
                              (size_t)ti->rows * ti->cols, flags, &c.pv[i]));
    }
    int32_t P = mp__model_prompt_rows(m), d = mp__model_prompt_cols(m);
    c.prv = MP_VAR_NONE;
    if (P > 0) MP_CK_OK(mp_tape_leaf(c.t, P, d, mp__prompt_data(p), (size_t)P * d, flags, &c.prv));
    MP_CK_OK(mp_tape_leaf(c.t, (int32_t)n, mp__model_input_dim(m), x, n * mp__model_input_dim(m), 0, &c.xv));
    return c;
}

/* A leaf over tensor i's values plus a pattern (same values with shift 0),
 * on c's tape. */
static mp_var conv_tensor_variant(const mp_model *m, conv_tape *c, int32_t i, float shift)
{
    const mp__param_info *ti = mp__model_tensor(m, i);
    size_t len = (size_t)ti->rows * ti->cols;
    float *v = malloc(len * sizeof(float));
    for (size_t j = 0; j < len; j++)
        v[j] = mp__model_params_const(m)[ti->offset + j] + shift * (float)((int)(j % 7) - 2);
    mp_var out;
    MP_CK_OK(mp_tape_leaf(c->t, ti->rows, ti->cols, v, len, 0, &out));
    free(v);
    return out;
}

/* Records a forward pass on c's tape with params pv and input xv; reads its
 * outputs into y and returns how many variables it recorded. */
static int64_t conv_pass(const mp_model *m, conv_tape *c, const mp_var *pv, mp_var xv, mp__fwd_cache *cache,
                         float *y, size_t len)
{
    int64_t before, after;
    mp_var out;
    MP_CK_OK(mp_tape_stat(c->t, MP_TAPE_STAT_NODES, &before));
    MP_CK_OK(mp__model_forward(m, c->t, pv, c->prv, xv, cache, &out));
    MP_CK_OK(mp_tape_stat(c->t, MP_TAPE_STAT_NODES, &after));
    MP_CK_OK(mp_tape_read(c->t, out, y, len));
    return after - before;
}

/* Cached passes give the uncached outputs bit for bit; a repeated pass over
 * the same input and backbone variables records only the head (and the
 * prompt's concatenation); another input, or another variable for the first
 * or last backbone tensor (even with equal values), is recorded anew and
 * never served the old features; another head variable still reuses them.
 * With the prompt at the input nothing is cached. */
START_TEST(conv_cache_forward_matches_uncached)
{
    mp_model *m = make_model(CONV_CACHE_CFGS[_i]);
    int cacheable = _i < NCONV_CACHEABLE;
    mp_prompt *p = random_prompt(m, 3);
    size_t n = 3, len = out_count(m, n);
    float *x = make_x(m, n, 5), *x2 = make_x(m, n, 6);
    float *want = malloc(len * sizeof(float)), *got = malloc(len * sizeof(float)),
          *other = malloc(len * sizeof(float));
    conv_tape c = conv_tape_make(m, p, x, n, 0);
    mp__fwd_cache cache;
    mp__fwd_cache_clear(&cache);
    int64_t full = conv_pass(m, &c, c.pv, c.xv, NULL, want, len);
    ck_assert_int_eq(conv_pass(m, &c, c.pv, c.xv, &cache, got, len), full); /* a miss costs nothing more */
    ck_assert(memcmp(got, want, len * sizeof(float)) == 0);
    int64_t again = conv_pass(m, &c, c.pv, c.xv, &cache, got, len);
    ck_assert(memcmp(got, want, len * sizeof(float)) == 0);
    if (cacheable) /* head: matmul, add; prompt rows (fill, reshape, matmul) and concat */
        ck_assert_msg(again <= (mp__model_prompt_rows(m) > 0 ? 6 : 2) && again < full,
                      "the repeated pass recorded %lld of %lld variables", (long long)again, (long long)full);
    else
        ck_assert_int_eq(again, full);
    /* Another head variable (an adapted head) still uses the cached features. */
    mp_var pv[64];
    memcpy(pv, c.pv, sizeof pv);
    pv[c.nb] = conv_tensor_variant(m, &c, c.nb, 0.05f);
    conv_pass(m, &c, pv, c.xv, NULL, other, len);
    ck_assert(memcmp(other, want, len * sizeof(float)) != 0);
    int64_t nodes = conv_pass(m, &c, pv, c.xv, &cache, got, len);
    ck_assert(memcmp(got, other, len * sizeof(float)) == 0);
    ck_assert_int_eq(nodes, again);
    /* Another input. */
    mp_var xv2;
    MP_CK_OK(mp_tape_leaf(c.t, (int32_t)n, mp__model_input_dim(m), x2, n * mp__model_input_dim(m), 0, &xv2));
    conv_pass(m, &c, c.pv, xv2, NULL, other, len);
    ck_assert(memcmp(other, want, len * sizeof(float)) != 0);
    nodes = conv_pass(m, &c, c.pv, xv2, &cache, got, len);
    ck_assert_msg(memcmp(got, other, len * sizeof(float)) == 0, "another input was served stale features");
    ck_assert_int_eq(nodes, full);
    nodes = conv_pass(m, &c, c.pv, xv2, &cache, got, len);
    ck_assert(memcmp(got, other, len * sizeof(float)) == 0);
    ck_assert_int_eq(nodes, again);
    /* Another variable for the first or the last backbone tensor (an adapted
     * backbone), with other values or the same ones. */
    const int32_t which[2] = {0, c.nb - 1};
    for (int k = 0; k < 4; k++) {
        memcpy(pv, c.pv, sizeof pv);
        pv[which[k % 2]] = conv_tensor_variant(m, &c, which[k % 2], k < 2 ? 0.1f : 0.0f);
        conv_pass(m, &c, pv, c.xv, NULL, other, len);
        ck_assert(k < 2 ? memcmp(other, want, len * sizeof(float)) != 0
                        : memcmp(other, want, len * sizeof(float)) == 0);
        nodes = conv_pass(m, &c, pv, c.xv, &cache, got, len);
        ck_assert_msg(memcmp(got, other, len * sizeof(float)) == 0, "variant %d (tensor %d) was served stale features",
                      k, (int)which[k % 2]);
        ck_assert_int_eq(nodes, full);
    }
    mp_tape_destroy(c.t);
    free(want);
    free(got);
    free(other);
    free(x);
    free(x2);
    mp_prompt_destroy(p);
    mp_model_destroy(m);
}
END_TEST

/* Two passes sharing the cached backbone (the second with another prompt
 * and head, as an inner step's adapted ones) against the same two passes
 * each recording its own backbone: the gradients of the summed loss with
 * respect to every parameter and the prompt agree (the backbone's gradients
 * are summed before instead of after its backward, so up to rounding). */
START_TEST(conv_cache_gradients_match_uncached)
{
    mp_model *m = make_model(CONV_CACHE_CFGS[_i]);
    mp_prompt *p = random_prompt(m, 3);
    size_t n = 3;
    float *x = make_x(m, n, 5);
    const int32_t labels[3] = {0, 2, 1};
    int64_t nodes[2];
    float *grads[2];
    size_t total = mp__model_param_count(m) + (size_t)mp__model_prompt_rows(m) * mp__model_prompt_cols(m);
    for (int cached = 0; cached < 2; cached++) {
        conv_tape c = conv_tape_make(m, p, x, n, MP_LEAF_REQUIRES_GRAD);
        mp__fwd_cache cache;
        mp__fwd_cache_clear(&cache);
        mp__fwd_cache *cp = cached ? &cache : NULL;
        mp_var pv[64], out, la, lb, loss, g, prompt2 = MP_VAR_NONE;
        memcpy(pv, c.pv, sizeof pv);
        MP_CK_OK(mp__model_forward(m, c.t, pv, c.prv, c.xv, cp, &out));
        MP_CK_OK(mp__model_loss(m, c.t, out, labels, NULL, n, &la));
        MP_CK_OK(mp_scale(c.t, c.pv[c.nb], 0.5f, &pv[c.nb]));
        if (c.prv != MP_VAR_NONE) MP_CK_OK(mp_scale(c.t, c.prv, -0.5f, &prompt2));
        MP_CK_OK(mp__model_forward(m, c.t, pv, prompt2, c.xv, cp, &out));
        MP_CK_OK(mp__model_loss(m, c.t, out, labels, NULL, n, &lb));
        MP_CK_OK(mp_add(c.t, la, lb, &loss));
        MP_CK_OK(mp_tape_backward(c.t, loss, 0));
        MP_CK_OK(mp_tape_stat(c.t, MP_TAPE_STAT_NODES, &nodes[cached]));
        grads[cached] = calloc(total, sizeof(float));
        for (int32_t i = 0; i < c.nt; i++) {
            const mp__param_info *ti = mp__model_tensor(m, i);
            MP_CK_OK(mp_tape_grad(c.t, c.pv[i], &g));
            MP_CK_OK(mp_tape_read(c.t, g, grads[cached] + ti->offset, (size_t)ti->rows * ti->cols));
        }
        if (c.prv != MP_VAR_NONE) {
            MP_CK_OK(mp_tape_grad(c.t, c.prv, &g));
            MP_CK_OK(mp_tape_read(c.t, g, grads[cached] + mp__model_param_count(m),
                                  total - mp__model_param_count(m)));
        }
        mp_tape_destroy(c.t);
    }
    ck_assert_int_lt(nodes[1], nodes[0]);
    double backbone = 0;
    for (size_t j = 0; j < total; j++) {
        ck_assert_msg(fabsf(grads[1][j] - grads[0][j]) <= 1e-5f * (1 + fabsf(grads[0][j])),
                      "entry %zu: cached %.9g, uncached %.9g", j, grads[1][j], grads[0][j]);
        if (j < mp__model_tensor(m, mp__model_num_tensors(m) - 2)->offset) backbone += fabs(grads[0][j]);
    }
    ck_assert_msg(backbone > 1e-3, "the backbone gets no gradient (%g)", backbone);
    free(grads[0]);
    free(grads[1]);
    free(x);
    mp_prompt_destroy(p);
    mp_model_destroy(m);
}
END_TEST

/* A prompted transformer without blocks warns (the prompt cannot reach the
 * outputs); with a block, or without a prompt, nothing is logged. */

START_TEST(prompt_without_blocks_warns)
{
    mp_test_log seen;
    MP_CK_OK(mp_set_log_callback(mp_test_record_log, MP_LOG_WARN, &seen));
    const int64_t layers[3] = {0, 1, 0}, prompt[3] = {3, 3, 0};
    const int expect[3] = {1, 0, 0};
    for (int i = 0; i < 3; i++) {
        memset(&seen, 0, sizeof seen);
        const int64_t kv[] = {MP_CFG_MODEL_KIND, MP_MODEL_TRANSFORMER, MP_CFG_MODEL_OUTPUT_DIM, 2,
                              MP_CFG_MODEL_IMAGE_HEIGHT, 4, MP_CFG_MODEL_IMAGE_WIDTH, 4, MP_CFG_MODEL_PATCH, 2,
                              MP_CFG_MODEL_D_MODEL, 8, MP_CFG_MODEL_HEADS, 2, MP_CFG_MODEL_LAYERS, layers[i],
                              MP_CFG_MODEL_PROMPT_LEN, prompt[i], 0};
        mp_model *m = make_model(kv);
        ck_assert_msg(seen.count == expect[i], "layers %d, prompt %d: %d warnings", (int)layers[i], (int)prompt[i],
                      seen.count);
        if (expect[i]) {
            ck_assert_int_eq(seen.level, MP_LOG_WARN);
            ck_assert_ptr_nonnull(strstr(seen.msg, "model.layers = 0"));
        }
        mp_model_destroy(m);
    }
    MP_CK_OK(mp_set_log_callback(NULL, MP_LOG_WARN, NULL));
}
END_TEST

Suite *mp_test_model_suite(void)
{
    Suite *s = suite_create("model");
    TCase *c = tcase_create("container");
    tcase_add_test(c, container_round_trip);
    tcase_add_test(c, container_rejects_damaged_files);
    tcase_add_test(c, container_save_is_atomic_and_reports_io_errors);
    suite_add_tcase(s, c);
    TCase *m = tcase_create("model");
    tcase_set_timeout(m, 60);
    tcase_add_loop_test(m, forward_and_gradients_match_pytorch, 0, NFIXTURES);
    tcase_add_loop_test(m, gradients_match_finite_differences, 0, NKINDS);
    tcase_add_loop_test(m, prompt_reaches_the_output_for_every_kind, 0, NKINDS);
    tcase_add_loop_test(m, examples_are_independent_within_a_batch, 0, NKINDS);
    tcase_add_loop_test(m, transformer_forward_cache_is_exact_and_keyed, 0, NTF_CASES);
    tcase_add_loop_test(m, transformer_forward_cache_gradients, 0, NTF_CASES);
    tcase_add_test(m, default_model_is_the_sinusoid_mlp_without_prompt);
    tcase_add_test(m, torch_init_scheme_matches_pytorch_bounds);
    tcase_add_test(m, reference_shapes);
    tcase_add_test(m, predict_is_reentrant_across_threads);
    tcase_add_test(m, bad_configurations_are_refused);
    tcase_add_test(m, docs_state_the_model_key_range);
    tcase_add_test(m, bad_arguments_are_refused_and_change_nothing);
    tcase_add_loop_test(m, clone_and_prompt_copy_are_deep, 0, NKINDS);
    tcase_add_test(m, prompt_inits);
    tcase_add_test(m, prompt_init_distributions);
    tcase_add_test(m, prompt_init_from_data_conv_modes);
    tcase_add_test(m, allocation_failures_leak_nothing);
    tcase_add_test(m, prompt_without_blocks_warns);
    suite_add_tcase(s, m);
    TCase *k = tcase_create("checkpoint");
    tcase_add_loop_test(k, save_then_load_in_a_fresh_process_is_bit_identical, 0, NKINDS);
    tcase_add_test(k, load_verifies_everything_before_touching_the_destination);
    tcase_add_test(k, container_checks_config_types_and_values);
    tcase_add_test(k, meta_state_refuses_unknown_algorithm);
    tcase_add_test(k, checkpoints_of_the_largest_resolved_sizes_load);
    tcase_add_test(k, load_ignores_a_different_init_scheme);
    tcase_add_test(k, checkpoint_allocation_failures);
    suite_add_tcase(s, k);
    TCase *cc = tcase_create("conv_cache");
    tcase_add_loop_test(cc, conv_cache_forward_matches_uncached, 0, NCONV_CACHE_CFGS);
    tcase_add_loop_test(cc, conv_cache_gradients_match_uncached, 0, NCONV_CACHEABLE);
    suite_add_tcase(s, cc);
    return s;
}
