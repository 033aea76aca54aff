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

    MP_CK_STATUS(mp__ckpt_reader_open(&r, tmp_path("missing.ckpt")), MP_ERR_IO);
    MP_CK_ERROR_MENTIONS("missing.ckpt");

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

Suite *mp_test_model_suite(void)
{
    Suite *s = suite_create("model");
    TCase *c = tcase_create("container");
    tcase_add_test(c, container_round_trip);
    tcase_add_test(c, container_rejects_damaged_files);
    tcase_add_test(c, container_save_is_atomic_and_reports_io_errors);
    suite_add_tcase(s, c);
    return s;
}
