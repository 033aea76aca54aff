/* Data module: datasets (arrays, IDX, CSV), tasks, sinusoids and the
 * episode sampler. Fixtures are written by the tests into a temporary
 * directory; the real Fashion-MNIST and Omniglot files are used when
 * present (required when MP_REQUIRE_FASHION_MNIST / MP_REQUIRE_OMNIGLOT=1). */
#include "test_util.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "data/data_impl.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* Check records every passing assertion (a write per call); assertions in
 * loops over thousands of episodes use these, which call Check on failure only. */
#define CK(c) do { if (!(c)) ck_abort_msg("%s:%d: assertion '%s' failed", __FILE__, __LINE__, #c); } while (0)
#define CK_OK(call) do { mp_status st__ = (call); if (st__ != MP_OK) ck_abort_msg("%s returned %d: %s", #call, (int)st__, mp_last_error()); } while (0)

/* ---- fixture helpers -------------------------------------------------------- */
static char g_dir[256];

static void make_tmpdir(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/mp_test_data_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(g_dir));
}

static void remove_tmpdir(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    ck_assert_int_eq(system(cmd), 0);
}

static const char *tmp_path(const char *name)
{
    static char buf[64][512];
    static int k;
    k = (k + 1) % 64;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

static void write_bytes(const char *path, const void *data, size_t len, int gz)
{
    if (gz) {
        gzFile f = gzopen(path, "wb");
        ck_assert_ptr_nonnull(f);
        if (len) ck_assert_int_eq(gzwrite(f, data, (unsigned)len), (int)len);
        ck_assert_int_eq(gzclose(f), Z_OK);
        return;
    }
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    if (len) ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    fclose(f);
}

static size_t read_bytes(const char *path, uint8_t *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    return n;
}

/* Builds an IDX image in memory: header + payload (already big-endian). */
static size_t idx_build(uint8_t *out, int type, int nd, const uint32_t *dims, const void *payload, size_t plen)
{
    out[0] = out[1] = 0;
    out[2] = (uint8_t)type;
    out[3] = (uint8_t)nd;
    for (int i = 0; i < nd; i++) {
        out[4 + 4 * i] = (uint8_t)(dims[i] >> 24);
        out[5 + 4 * i] = (uint8_t)(dims[i] >> 16);
        out[6 + 4 * i] = (uint8_t)(dims[i] >> 8);
        out[7 + 4 * i] = (uint8_t)dims[i];
    }
    memcpy(out + 4 + 4 * nd, payload, plen);
    return 4 + 4 * (size_t)nd + plen;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}

/* 6 images of 2x3 ubyte, pixel = 10*i + j; labels 0,1,2,0,1,2 as int32. */
static void write_small_idx(const char *img, const char *lab, int gz)
{
    uint8_t px[36], buf[128], lp[24];
    for (int i = 0; i < 36; i++) px[i] = (uint8_t)(10 * (i / 6) + i % 6);
    uint32_t d3[3] = {6, 2, 3}, d1[1] = {6};
    write_bytes(img, buf, idx_build(buf, 0x08, 3, d3, px, 36), gz);
    for (int i = 0; i < 6; i++) put_be32(lp + 4 * i, (uint32_t)(i % 3));
    write_bytes(lab, buf, idx_build(buf, 0x0C, 1, d1, lp, 24), gz);
}

static void write_text(const char *path, const char *text) { write_bytes(path, text, strlen(text), 0); }

/* ---- datasets from arrays ------------------------------------------------------ */
START_TEST(dataset_from_arrays_and_accessors)
{
    float x[12] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    int32_t lab[6] = {2, 0, 2, 5, 0, 2};
    mp_dataset *ds;
    MP_CK_OK(mp_dataset_from_arrays(&ds, x, 6, 2, lab, NULL, 0));
    x[0] = 99; /* copied */
    size_t n, cs;
    int32_t d, nc, l, td;
    MP_CK_OK(mp_dataset_size(ds, &n));
    MP_CK_OK(mp_dataset_dim(ds, &d));
    MP_CK_OK(mp_dataset_num_classes(ds, &nc));
    MP_CK_OK(mp_dataset_target_dim(ds, &td));
    ck_assert_uint_eq(n, 6);
    ck_assert_int_eq(d, 2);
    ck_assert_int_eq(nc, 6);
    ck_assert_int_eq(td, 0);
    MP_CK_OK(mp_dataset_class_size(ds, 2, &cs));
    ck_assert_uint_eq(cs, 3);
    MP_CK_OK(mp_dataset_class_size(ds, 3, &cs));
    ck_assert_uint_eq(cs, 0);
    /* class members: count query, dataset order, empty class, small buffer */
    size_t idx[4] = {77, 77, 77, 77}, cnt = 0;
    MP_CK_OK(mp_dataset_class_indices(ds, 2, NULL, 0, &cnt));
    ck_assert_uint_eq(cnt, 3);
    MP_CK_OK(mp_dataset_class_indices(ds, 2, idx, 4, &cnt));
    ck_assert(cnt == 3 && idx[0] == 0 && idx[1] == 2 && idx[2] == 5 && idx[3] == 77);
    MP_CK_OK(mp_dataset_class_indices(ds, 0, idx, 2, &cnt));
    ck_assert(cnt == 2 && idx[0] == 1 && idx[1] == 4);
    MP_CK_OK(mp_dataset_class_indices(ds, 5, idx, 1, &cnt));
    ck_assert(cnt == 1 && idx[0] == 3);
    cnt = 77;
    MP_CK_OK(mp_dataset_class_indices(ds, 3, idx, 4, &cnt));
    ck_assert_uint_eq(cnt, 0);
    idx[0] = idx[1] = 77;
    MP_CK_STATUS(mp_dataset_class_indices(ds, 2, idx, 2, &cnt), MP_ERR_BUFFER_TOO_SMALL);
    MP_CK_ERROR_MENTIONS("mp_dataset_class_indices: 'indices' has room for cap = 2 indices, 3 needed");
    ck_assert(cnt == 3 && idx[0] == 77 && idx[1] == 77);
    /* every index of class c has label c, and the classes cover the dataset */
    size_t total = 0;
    for (int32_t c = 0; c < 6; c++) {
        MP_CK_OK(mp_dataset_class_indices(ds, c, idx, 4, &cnt));
        MP_CK_OK(mp_dataset_class_size(ds, c, &cs));
        ck_assert_uint_eq(cnt, cs);
        for (size_t i = 0; i < cnt; i++) ck_assert_int_eq(lab[idx[i]], c);
        total += cnt;
    }
    ck_assert_uint_eq(total, 6);
    float row[2];
    MP_CK_OK(mp_dataset_get(ds, 0, row, 2, &l));
    ck_assert(row[0] == 0 && row[1] == 1 && l == 2);
    MP_CK_OK(mp_dataset_get(ds, 3, row, 2, NULL));
    ck_assert(row[0] == 6 && row[1] == 7);
    int32_t dims[4];
    size_t nd;
    MP_CK_OK(mp_dataset_sample_shape(ds, NULL, 0, &nd));
    ck_assert_uint_eq(nd, 1);
    MP_CK_OK(mp_dataset_sample_shape(ds, dims, 4, &nd));
    ck_assert_int_eq(dims[0], 2);
    mp_dataset_destroy(ds);

    float t[6] = {1, 2, 3, 4, 5, 6};
    MP_CK_OK(mp_dataset_from_arrays(&ds, x, 3, 4, NULL, t, 2));
    MP_CK_OK(mp_dataset_target_dim(ds, &td));
    ck_assert_int_eq(td, 2);
    float tt[2];
    MP_CK_OK(mp_dataset_get_target(ds, 2, tt, 2));
    ck_assert(tt[0] == 5 && tt[1] == 6);
    MP_CK_STATUS(mp_dataset_num_classes(ds, &nc), MP_ERR_STATE);
    MP_CK_STATUS(mp_dataset_class_size(ds, 0, &cs), MP_ERR_STATE);
    MP_CK_STATUS(mp_dataset_class_indices(ds, 0, NULL, 0, &cs), MP_ERR_STATE);
    MP_CK_ERROR_MENTIONS("mp_dataset_class_indices: a regression dataset");
    MP_CK_STATUS(mp_dataset_get(ds, 0, x, 4, &l), MP_ERR_STATE);
    MP_CK_STATUS(mp_dataset_get_target(ds, 3, tt, 2), MP_ERR_RANGE);
    MP_CK_STATUS(mp_dataset_get_target(ds, 0, tt, 1), MP_ERR_BUFFER_TOO_SMALL);
    MP_CK_ERROR_MENTIONS("mp_dataset_get_target: 't' has room for len = 1 floats, 2 needed");
    mp_dataset_destroy(ds);
    mp_dataset_destroy(NULL);
    ck_assert_str_eq(mp_dataset_error(NULL), "");
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

START_TEST(dataset_from_arrays_bad_inputs)
{
    float x[4] = {0, 1, 2, 3}, bad[4] = {0, NAN, 2, 3};
    int32_t lab[2] = {0, 1}, neg[2] = {0, -1};
    mp_dataset *ds = (mp_dataset *)0x1;
    MP_CK_STATUS(mp_dataset_from_arrays(NULL, x, 2, 2, lab, NULL, 0), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_dataset_from_arrays(&ds, NULL, 2, 2, lab, NULL, 0), MP_ERR_NULL_POINTER);
    MP_CK_ERROR_MENTIONS("'x'");
    MP_CK_STATUS(mp_dataset_from_arrays(&ds, x, 2, 2, NULL, NULL, 0), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_dataset_from_arrays(&ds, x, 2, 2, lab, x, 1), MP_ERR_INVALID_ARGUMENT);
    MP_CK_ERROR_MENTIONS("exactly one");
    MP_CK_STATUS(mp_dataset_from_arrays(&ds, x, 0, 2, lab, NULL, 0), MP_ERR_INVALID_ARGUMENT);
    MP_CK_ERROR_MENTIONS("n is 0");
    MP_CK_STATUS(mp_dataset_from_arrays(&ds, x, 2, 0, lab, NULL, 0), MP_ERR_INVALID_ARGUMENT);
    MP_CK_ERROR_MENTIONS("dim is 0");
    MP_CK_STATUS(mp_dataset_from_arrays(&ds, x, 2, 2, NULL, x, 0), MP_ERR_INVALID_ARGUMENT);
    MP_CK_ERROR_MENTIONS("target_dim");
    MP_CK_STATUS(mp_dataset_from_arrays(&ds, x, 2, 2, neg, NULL, 0), MP_ERR_RANGE);
    MP_CK_ERROR_MENTIONS("labels[1] is -1");
    MP_CK_STATUS(mp_dataset_from_arrays(&ds, bad, 2, 2, lab, NULL, 0), MP_ERR_NOT_FINITE);
    MP_CK_ERROR_MENTIONS("x[1]");
    MP_CK_STATUS(mp_dataset_from_arrays(&ds, x, 2, 1, NULL, bad, 2), MP_ERR_NOT_FINITE);
    MP_CK_ERROR_MENTIONS("targets[1]");
    MP_CK_STATUS(mp_dataset_from_arrays(&ds, x, SIZE_MAX / 2, 8, lab, NULL, 0), MP_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_eq(ds, (mp_dataset *)0x1);
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

START_TEST(dataset_accessor_bad_inputs)
{
    float x[4] = {0, 1, 2, 3};
    int32_t lab[2] = {0, 1};
    mp_dataset *ds;
    MP_CK_OK(mp_dataset_from_arrays(&ds, x, 2, 2, lab, NULL, 0));
    size_t n = 77, nd = 77;
    int32_t v = 77, dims[2] = {7, 7};
    float row[2] = {-1, -1};
    MP_CK_STATUS(mp_dataset_size(NULL, &n), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_dataset_size(ds, NULL), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_dataset_dim(NULL, &v), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_dataset_target_dim(ds, NULL), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_dataset_num_classes(NULL, &v), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_dataset_class_size(ds, 2, &n), MP_ERR_RANGE);
    MP_CK_ERROR_MENTIONS("cls is 2");
    MP_CK_STATUS(mp_dataset_class_size(ds, -1, &n), MP_ERR_RANGE);
    size_t ci[2] = {77, 77};
    MP_CK_STATUS(mp_dataset_class_indices(ds, 2, ci, 2, &n), MP_ERR_RANGE);
    MP_CK_ERROR_MENTIONS("cls is 2, expected [0, 2)");
    MP_CK_STATUS(mp_dataset_class_indices(ds, -1, ci, 2, &n), MP_ERR_RANGE);
    MP_CK_STATUS(mp_dataset_class_indices(NULL, 0, ci, 2, &n), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_dataset_class_indices(ds, 0, ci, 2, NULL), MP_ERR_NULL_POINTER);
    MP_CK_ERROR_MENTIONS("'count'");
    MP_CK_STATUS(mp_dataset_class_indices(ds, 0, NULL, 2, &n), MP_ERR_NULL_POINTER);
    MP_CK_ERROR_MENTIONS("'indices' is NULL with cap 2");
    ck_assert(ci[0] == 77 && ci[1] == 77);
    MP_CK_STATUS(mp_dataset_get(ds, 2, row, 2, &v), MP_ERR_RANGE);
    MP_CK_STATUS(mp_dataset_get(ds, 0, row, 1, &v), MP_ERR_BUFFER_TOO_SMALL);
    MP_CK_ERROR_MENTIONS("mp_dataset_get: 'x' has room for len = 1 floats, 2 needed");
    MP_CK_STATUS(mp_dataset_get(ds, 0, NULL, 2, &v), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_dataset_get_target(ds, 0, row, 2), MP_ERR_STATE);
    ck_assert(n == 77 && v == 77 && row[0] == -1);
    MP_CK_STATUS(mp_dataset_sample_shape(ds, NULL, 1, &nd), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_dataset_sample_shape(ds, dims, 1, NULL), MP_ERR_NULL_POINTER);
    int32_t sq[2] = {1, 2};
    MP_CK_OK(mp_dataset_set_sample_shape(ds, sq, 2));
    MP_CK_STATUS(mp_dataset_sample_shape(ds, dims, 1, &nd), MP_ERR_BUFFER_TOO_SMALL);
    MP_CK_ERROR_MENTIONS("mp_dataset_sample_shape: 'dims' has room for cap = 1 dimensions, 2 needed");
    ck_assert_uint_eq(nd, 2);
    ck_assert_int_eq(dims[0], 7);
    int32_t wrong[2] = {2, 2}, zero[2] = {0, 2};
    MP_CK_STATUS(mp_dataset_set_sample_shape(ds, wrong, 2), MP_ERR_SHAPE_MISMATCH);
    MP_CK_ERROR_MENTIONS("expected dim = 2");
    ck_assert(strstr(mp_dataset_error(ds), "dim = 2") != NULL);
    MP_CK_STATUS(mp_dataset_set_sample_shape(ds, zero, 2), MP_ERR_INVALID_ARGUMENT);
    MP_CK_STATUS(mp_dataset_set_sample_shape(ds, sq, 0), MP_ERR_INVALID_ARGUMENT);
    MP_CK_STATUS(mp_dataset_set_sample_shape(ds, NULL, 2), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_dataset_set_sample_shape(NULL, sq, 2), MP_ERR_NULL_POINTER);
    MP_CK_OK(mp_dataset_sample_shape(ds, dims, 2, &nd));
    ck_assert(nd == 2 && dims[0] == 1 && dims[1] == 2); /* unchanged by the failures */
    mp_dataset_destroy(ds);
}
END_TEST

START_TEST(dataset_select_classes)
{
    float x[16];
    int32_t lab[8] = {0, 1, 2, 3, 0, 1, 2, 3};
    for (int i = 0; i < 16; i++) x[i] = (float)i;
    mp_dataset *ds, *sub = (mp_dataset *)0x1;
    MP_CK_OK(mp_dataset_from_arrays(&ds, x, 8, 2, lab, NULL, 0));
    int32_t pick[2] = {3, 1};
    MP_CK_OK(mp_dataset_select_classes(&sub, ds, pick, 2));
    size_t n;
    int32_t nc, l;
    MP_CK_OK(mp_dataset_size(sub, &n));
    MP_CK_OK(mp_dataset_num_classes(sub, &nc));
    ck_assert_uint_eq(n, 4);
    ck_assert_int_eq(nc, 4);
    float row[2];
    int32_t want[4] = {1, 3, 1, 3};
    for (size_t i = 0; i < 4; i++) {
        MP_CK_OK(mp_dataset_get(sub, i, row, 2, &l));
        ck_assert_int_eq(l, want[i]);
        ck_assert(row[0] == (float)(2 * (want[i] + (i >= 2 ? 4 : 0))));
    }
    size_t cs;
    MP_CK_OK(mp_dataset_class_size(sub, 0, &cs));
    ck_assert_uint_eq(cs, 0);
    mp_dataset *bad = (mp_dataset *)0x1;
    int32_t dup[3] = {1, 2, 1}, oor[1] = {4}, neg[1] = {-1}, empty0[1] = {0};
    MP_CK_STATUS(mp_dataset_select_classes(&bad, ds, dup, 3), MP_ERR_INVALID_ARGUMENT);
    MP_CK_ERROR_MENTIONS("class 1 appears twice");
    MP_CK_STATUS(mp_dataset_select_classes(&bad, ds, oor, 1), MP_ERR_RANGE);
    MP_CK_ERROR_MENTIONS("classes[0] is 4");
    MP_CK_STATUS(mp_dataset_select_classes(&bad, ds, neg, 1), MP_ERR_RANGE);
    MP_CK_STATUS(mp_dataset_select_classes(&bad, sub, empty0, 1), MP_ERR_RANGE);
    MP_CK_ERROR_MENTIONS("no examples");
    MP_CK_STATUS(mp_dataset_select_classes(&bad, ds, pick, 0), MP_ERR_INVALID_ARGUMENT);
    MP_CK_STATUS(mp_dataset_select_classes(&bad, ds, NULL, 1), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_dataset_select_classes(&bad, NULL, pick, 1), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_dataset_select_classes(NULL, ds, pick, 1), MP_ERR_NULL_POINTER);
    ck_assert_ptr_eq(bad, (mp_dataset *)0x1);
    mp_dataset *reg;
    MP_CK_OK(mp_dataset_from_arrays(&reg, x, 8, 2, NULL, x, 1));
    MP_CK_STATUS(mp_dataset_select_classes(&bad, reg, pick, 1), MP_ERR_STATE);
    mp_dataset_destroy(reg);
    mp_dataset_destroy(sub);
    mp_dataset_destroy(ds);
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

/* ---- IDX ---------------------------------------------------------------------- */
static void check_small_idx(mp_dataset *ds, float scale)
{
    size_t n, nd;
    int32_t d, nc, dims[4], l;
    MP_CK_OK(mp_dataset_size(ds, &n));
    MP_CK_OK(mp_dataset_dim(ds, &d));
    MP_CK_OK(mp_dataset_num_classes(ds, &nc));
    ck_assert(n == 6 && d == 6 && nc == 3);
    MP_CK_OK(mp_dataset_sample_shape(ds, dims, 4, &nd));
    ck_assert(nd == 2 && dims[0] == 2 && dims[1] == 3);
    float row[6];
    MP_CK_OK(mp_dataset_get(ds, 4, row, 6, &l));
    ck_assert_int_eq(l, 1);
    for (int j = 0; j < 6; j++) ck_assert_float_eq_tol(row[j], (40.0f + (float)j) * scale, 1e-6f);
}

START_TEST(idx_plain_and_gzip)
{
    make_tmpdir();
    const char *im = tmp_path("im"), *lb = tmp_path("lb"), *imz = tmp_path("im.gz"), *lbz = tmp_path("lb.gz");
    write_small_idx(im, lb, 0);
    write_small_idx(imz, lbz, 1);
    mp_dataset *ds;
    MP_CK_OK(mp_dataset_load_idx(&ds, im, lb, NULL));
    check_small_idx(ds, 1.0f / 255.0f);
    mp_dataset_destroy(ds);
    MP_CK_OK(mp_dataset_load_idx(&ds, imz, lbz, NULL));
    check_small_idx(ds, 1.0f / 255.0f);
    mp_dataset_destroy(ds);
    mp_config *cfg;
    MP_CK_OK(mp_config_create(&cfg));
    MP_CK_OK(mp_config_set_int(cfg, MP_CFG_DATA_SCALE, 0));
    MP_CK_OK(mp_dataset_load_idx(&ds, imz, lb, cfg));
    check_small_idx(ds, 1.0f);
    mp_dataset_destroy(ds);
    mp_config_destroy(cfg);
    remove_tmpdir();
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

START_TEST(idx_element_types)
{
    make_tmpdir();
    uint8_t buf[256], pay[64];
    uint32_t d2[2] = {2, 2}, d1[1] = {2};
    /* float32 images (never scaled), sbyte labels */
    float fv[4] = {-1.5f, 2.25f, 3.0f, 1e6f};
    for (int i = 0; i < 4; i++) {
        uint32_t u;
        memcpy(&u, &fv[i], 4);
        put_be32(pay + 4 * i, u);
    }
    write_bytes(tmp_path("f"), buf, idx_build(buf, 0x0D, 2, d2, pay, 16), 1);
    uint8_t sl[2] = {1, 0};
    write_bytes(tmp_path("sl"), buf, idx_build(buf, 0x09, 1, d1, sl, 2), 0);
    mp_dataset *ds;
    MP_CK_OK(mp_dataset_load_idx(&ds, tmp_path("f"), tmp_path("sl"), NULL));
    float row[2];
    int32_t l;
    MP_CK_OK(mp_dataset_get(ds, 1, row, 2, &l));
    ck_assert(row[0] == 3.0f && row[1] == 1e6f && l == 0);
    mp_dataset_destroy(ds);
    /* short images (signed), ubyte labels, 1-D images: rows of one value */
    uint8_t sh[4] = {0xFF, 0xFE, 0x01, 0x00}; /* -2, 256 */
    write_bytes(tmp_path("s"), buf, idx_build(buf, 0x0B, 1, d1, sh, 4), 0);
    write_bytes(tmp_path("ul"), buf, idx_build(buf, 0x08, 1, d1, sl, 2), 1);
    MP_CK_OK(mp_dataset_load_idx(&ds, tmp_path("s"), tmp_path("ul"), NULL));
    MP_CK_OK(mp_dataset_get(ds, 0, row, 1, &l));
    ck_assert(row[0] == -2.0f && l == 1);
    MP_CK_OK(mp_dataset_get(ds, 1, row, 1, &l));
    ck_assert(row[0] == 256.0f);
    size_t nd;
    int32_t dims[2];
    MP_CK_OK(mp_dataset_sample_shape(ds, dims, 2, &nd));
    ck_assert(nd == 1 && dims[0] == 1);
    mp_dataset_destroy(ds);
    /* float32 labels must be whole */
    put_be32(pay, 0x40000000); /* 2.0f */
    put_be32(pay + 4, 0x3FC00000); /* 1.5f */
    write_bytes(tmp_path("fl"), buf, idx_build(buf, 0x0D, 1, d1, pay, 8), 0);
    ds = (mp_dataset *)0x1;
    MP_CK_STATUS(mp_dataset_load_idx(&ds, tmp_path("s"), tmp_path("fl"), NULL), MP_ERR_RANGE);
    MP_CK_ERROR_MENTIONS("label 1 is 1.5");
    ck_assert_ptr_eq(ds, (mp_dataset *)0x1);
    remove_tmpdir();
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

/* Expects load_idx(images, labels) to fail with st and a message part. */
static void idx_fails(const char *im, const char *lb, mp_status st, const char *part)
{
    mp_dataset *ds = (mp_dataset *)0x1;
    MP_CK_STATUS(mp_dataset_load_idx(&ds, im, lb, NULL), st);
    if (part) MP_CK_ERROR_MENTIONS(part);
    ck_assert_ptr_eq(ds, (mp_dataset *)0x1);
    ck_assert_int_eq(mp_live_allocations(), 0);
}

START_TEST(idx_bad_inputs)
{
    make_tmpdir();
    const char *im = tmp_path("im"), *lb = tmp_path("lb");
    write_small_idx(im, lb, 0);
    uint8_t good[256] = {0}, buf[256] = {0};
    size_t glen = read_bytes(im, good, sizeof good);
    idx_fails(tmp_path("missing"), lb, MP_ERR_IO, "No such file");
    idx_fails(im, tmp_path("missing"), MP_ERR_IO, "missing");
    idx_fails(NULL, lb, MP_ERR_NULL_POINTER, "images_path");
    idx_fails(im, NULL, MP_ERR_NULL_POINTER, "labels_path");
    MP_CK_STATUS(mp_dataset_load_idx(NULL, im, lb, NULL), MP_ERR_NULL_POINTER);
    /* wrong magic, unsupported type (double 0x0E) */
    memcpy(buf, good, glen);
    buf[0] = 1;
    write_bytes(tmp_path("magic"), buf, glen, 0);
    idx_fails(tmp_path("magic"), lb, MP_ERR_FORMAT, "magic");
    memcpy(buf, good, glen);
    buf[2] = 0x0E;
    write_bytes(tmp_path("type"), buf, glen, 1);
    idx_fails(tmp_path("type"), lb, MP_ERR_FORMAT, "0x0E");
    /* truncated plain file, trailing bytes */
    write_bytes(tmp_path("trunc"), good, glen - 3, 0);
    idx_fails(tmp_path("trunc"), lb, MP_ERR_FORMAT, "truncated");
    write_bytes(tmp_path("short"), good, 2, 0);
    idx_fails(tmp_path("short"), lb, MP_ERR_FORMAT, "2 bytes, too short");
    memcpy(buf, good, glen);
    write_bytes(tmp_path("trail"), buf, glen + 1, 0);
    idx_fails(tmp_path("trail"), lb, MP_ERR_FORMAT, "trailing bytes after the 36 bytes of IDX data");
    /* truncated and corrupt gzip */
    write_bytes(tmp_path("z"), good, glen, 1);
    uint8_t z[512];
    size_t zlen = read_bytes(tmp_path("z"), z, sizeof z);
    write_bytes(tmp_path("ztrunc"), z, zlen - 12, 0);
    idx_fails(tmp_path("ztrunc"), lb, MP_ERR_FORMAT, "truncated gzip stream");
    write_bytes(tmp_path("ztrunc2"), z, zlen - 1, 0); /* inside the 8-byte trailer */
    idx_fails(tmp_path("ztrunc2"), lb, MP_ERR_FORMAT, "truncated gzip stream");
    z[zlen - 8] ^= 0x01; /* CRC-32 of the trailer */
    write_bytes(tmp_path("zcrc"), z, zlen, 0);
    idx_fails(tmp_path("zcrc"), lb, MP_ERR_FORMAT, "corrupt gzip data");
    z[zlen - 8] ^= 0x01;
    /* the same IDX bytes, but the gzip stream holds more or fewer of them */
    write_bytes(tmp_path("zshort"), good, glen - 3, 1);
    idx_fails(tmp_path("zshort"), lb, MP_ERR_FORMAT, "truncated IDX data (33 of 36 bytes)");
    write_bytes(tmp_path("zlong"), buf, glen + 1, 1);
    idx_fails(tmp_path("zlong"), lb, MP_ERR_FORMAT, "inside the gzip stream");
    /* junk after the gzip stream: zlib's gzread would ignore it */
    uint8_t zj[600];
    memcpy(zj, z, zlen);
    memcpy(zj + zlen, "junk", 4);
    write_bytes(tmp_path("zjunk"), zj, zlen + 4, 0);
    idx_fails(tmp_path("zjunk"), lb, MP_ERR_FORMAT, "trailing bytes after the gzip stream");
    memset(zj + zlen, 0, 4); /* zero padding is junk too */
    write_bytes(tmp_path("zzero"), zj, zlen + 4, 0);
    idx_fails(tmp_path("zzero"), lb, MP_ERR_FORMAT, "trailing bytes after the gzip stream");
    zj[zlen] = 0x1f; /* one byte of a gzip magic, then the end */
    write_bytes(tmp_path("zone"), zj, zlen + 1, 0);
    idx_fails(tmp_path("zone"), lb, MP_ERR_FORMAT, "trailing bytes after the gzip stream");
    memcpy(zj + zlen, z, 10); /* a second member cut inside its header */
    write_bytes(tmp_path("zhalf"), zj, zlen + 10, 0);
    idx_fails(tmp_path("zhalf"), lb, MP_ERR_FORMAT, "truncated gzip stream");
    for (size_t i = 12; i < zlen - 8; i++) z[i] ^= 0x5A;
    write_bytes(tmp_path("zbad"), z, zlen, 0);
    idx_fails(tmp_path("zbad"), lb, MP_ERR_FORMAT, "corrupt");
    /* zero dimension, absurd / overflowing dimensions */
    uint32_t d0[3] = {6, 0, 3}, huge[4] = {0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu};
    write_bytes(tmp_path("zero"), buf, idx_build(buf, 0x08, 3, d0, "", 0), 0);
    idx_fails(tmp_path("zero"), lb, MP_ERR_INVALID_ARGUMENT, "dimension 1 is 0");
    write_bytes(tmp_path("huge"), buf, idx_build(buf, 0x0C, 4, huge, "", 0), 0);
    idx_fails(tmp_path("huge"), lb, MP_ERR_INVALID_ARGUMENT, "2^40");
    /* label count mismatch, 2-D labels, negative label */
    uint32_t d5[1] = {5}, d23[2] = {2, 3}, d6[1] = {6};
    uint8_t lab[6] = {0, 1, 2, 0, 1, 2}, neg[6] = {0, 1, 0xFF, 0, 1, 2};
    write_bytes(tmp_path("l5"), buf, idx_build(buf, 0x08, 1, d5, lab, 5), 0);
    idx_fails(im, tmp_path("l5"), MP_ERR_SHAPE_MISMATCH, "5 labels");
    write_bytes(tmp_path("l2d"), buf, idx_build(buf, 0x08, 2, d23, lab, 6), 0);
    idx_fails(im, tmp_path("l2d"), MP_ERR_FORMAT, "expected 1");
    write_bytes(tmp_path("lneg"), buf, idx_build(buf, 0x09, 1, d6, neg, 6), 0);
    idx_fails(im, tmp_path("lneg"), MP_ERR_RANGE, "label 2 is -1");
    /* NaN in float images */
    uint8_t fp[8];
    put_be32(fp, 0x7FC00000);
    put_be32(fp + 4, 0);
    uint32_t d21[2] = {2, 1}, d2[1] = {2};
    write_bytes(tmp_path("nan"), buf, idx_build(buf, 0x0D, 2, d21, fp, 8), 0);
    write_bytes(tmp_path("l2"), buf, idx_build(buf, 0x08, 1, d2, lab, 2), 0);
    idx_fails(tmp_path("nan"), tmp_path("l2"), MP_ERR_NOT_FINITE, "element 0");
    /* a directory is not a file */
    idx_fails(g_dir, lb, MP_ERR_IO, "Is a directory");
    remove_tmpdir();
}
END_TEST

/* Header and length errors of small in-memory files, plain and gzipped
 * (the gzip path must report the same errors as the plain one). */
START_TEST(idx_header_and_length_errors)
{
    make_tmpdir();
    uint8_t buf[64], lbuf[64];
    uint32_t d[2] = {2, 2}, d1[1] = {2};
    uint8_t pay[4] = {1, 2, 3, 4}, labs[2] = {1, 0};
    size_t len = idx_build(buf, 0x08, 2, d, pay, 4);
    const char *im = tmp_path("im"), *lb = tmp_path("lb");
    write_bytes(lb, lbuf, idx_build(lbuf, 0x08, 1, d1, labs, 2), 0);
    for (int gz = 0; gz < 2; gz++) {
        write_bytes(im, buf, len, gz);
        mp_dataset *ds;
        MP_CK_OK(mp_dataset_load_idx(&ds, im, lb, NULL));
        float row[2];
        int32_t l;
        MP_CK_OK(mp_dataset_get(ds, 1, row, 2, &l));
        ck_assert(row[1] == 4.0f / 255.0f && l == 0);
        mp_dataset_destroy(ds);
        write_bytes(im, buf, len - 1, gz);
        idx_fails(im, lb, MP_ERR_FORMAT, "truncated IDX data (3 of 4 bytes)");
        write_bytes(im, buf, len + 1, gz);
        idx_fails(im, lb, MP_ERR_FORMAT, "trailing bytes");
        write_bytes(im, buf, 0, gz);
        idx_fails(im, lb, MP_ERR_FORMAT, "0 bytes, too short");
        write_bytes(im, buf, 7, gz);
        idx_fails(im, lb, MP_ERR_FORMAT, "truncated IDX header (7 of 12 bytes)");
        buf[3] = 0;
        write_bytes(im, buf, len, gz);
        idx_fails(im, lb, MP_ERR_FORMAT, "0 dimensions");
        buf[3] = 2;
    }
    remove_tmpdir();
}
END_TEST

/* Concatenated gzip members are one stream (gzip(1) and zlib agree), also
 * with an empty member and a split inside the header. */
START_TEST(idx_gzip_multi_member)
{
    make_tmpdir();
    const char *im = tmp_path("im"), *lb = tmp_path("lb");
    write_small_idx(im, lb, 0);
    uint8_t good[256], all[1024], part[512];
    size_t glen = read_bytes(im, good, sizeof good), n = 0;
    size_t cuts[4] = {0, 6, 6, glen}; /* members: 6 bytes, empty, the rest */
    for (int m = 0; m < 3; m++) {
        write_bytes(tmp_path("part"), good + cuts[m], cuts[m + 1] - cuts[m], 1);
        size_t pl = read_bytes(tmp_path("part"), part, sizeof part);
        ck_assert_uint_lt(n + pl, sizeof all);
        memcpy(all + n, part, pl);
        n += pl;
    }
    write_bytes(tmp_path("multi"), all, n, 0);
    mp_dataset *ds;
    MP_CK_OK(mp_dataset_load_idx(&ds, tmp_path("multi"), lb, NULL));
    check_small_idx(ds, 1.0f / 255.0f);
    mp_dataset_destroy(ds);
    /* a second member holding one byte too many is trailing data */
    write_bytes(tmp_path("part"), "x", 1, 1);
    size_t pl = read_bytes(tmp_path("part"), part, sizeof part);
    memcpy(all + n, part, pl);
    write_bytes(tmp_path("multi"), all, n + pl, 0);
    idx_fails(tmp_path("multi"), lb, MP_ERR_FORMAT, "trailing bytes after the 36 bytes of IDX data");
    remove_tmpdir();
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

/* ---- large gzip files: the 64 KiB input buffer is refilled ------------------------ */
/* One gzip member of src[0..len) at compression level 0 (stored blocks, so
 * its size is about len + 18 + 5 per block); returns its length in dst. */
static size_t gz_member(const uint8_t *src, size_t len, uint8_t *dst, size_t cap)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    ck_assert_int_eq(deflateInit2(&zs, 0, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
    ck_assert_uint_le(deflateBound(&zs, (uLong)len), cap);
    zs.next_in = (Bytef *)(uintptr_t)src;
    zs.avail_in = (uInt)len;
    zs.next_out = dst;
    zs.avail_out = (uInt)cap;
    ck_assert_int_eq(deflate(&zs, Z_FINISH), Z_STREAM_END);
    size_t n = cap - zs.avail_out;
    ck_assert_int_eq(deflateEnd(&zs), Z_OK);
    return n;
}

/* The raw length whose level-0 member is exactly target bytes long. */
static size_t raw_len_for_member(const uint8_t *src, size_t max, size_t target, uint8_t *tmp, size_t cap)
{
    for (size_t r = target - 64; r <= target && r <= max; r++)
        if (gz_member(src, r, tmp, cap) == target) return r;
    ck_abort_msg("no member of %zu compressed bytes", target);
    return 0;
}

/* Writes the members of raw cut at cuts[0..k] (cuts[0] = 0, cuts[k] = len),
 * plus a trailing 0x00 byte when junk; returns the file's length. */
static size_t write_members(const char *path, const uint8_t *raw, const size_t *cuts, int k, int junk,
                            uint8_t *out, size_t cap)
{
    size_t n = 0;
    for (int m = 0; m < k; m++) n += gz_member(raw + cuts[m], cuts[m + 1] - cuts[m], out + n, cap - n);
    ck_assert_uint_lt(n, cap);
    if (junk) out[n++] = 0x00;
    write_bytes(path, out, n, 0);
    return n;
}

/* The gzipped images load with the same values as the plain file. */
static void check_same_as_plain(const mp_dataset *plain, const char *im, const char *lb, size_t n_img, size_t d)
{
    mp_dataset *ds;
    MP_CK_OK(mp_dataset_load_idx(&ds, im, lb, NULL));
    size_t n;
    int32_t dim;
    MP_CK_OK(mp_dataset_size(ds, &n));
    MP_CK_OK(mp_dataset_dim(ds, &dim));
    ck_assert(n == n_img && (size_t)dim == d);
    float a[256], b[256];
    int32_t la, lbl;
    for (size_t i = 0; i < n; i++) {
        CK_OK(mp_dataset_get(plain, i, a, d, &la));
        CK_OK(mp_dataset_get(ds, i, b, d, &lbl));
        CK(la == lbl && memcmp(a, b, d * sizeof *a) == 0);
    }
    mp_dataset_destroy(ds);
}

/* A trailing 0x00 byte after the last member is rejected (idx_fails, but
 * with the plain dataset still alive). */
static void junk_rejected(const char *im, const char *lb)
{
    const int64_t live = mp_live_allocations();
    mp_dataset *ds = (mp_dataset *)0x1;
    MP_CK_STATUS(mp_dataset_load_idx(&ds, im, lb, NULL), MP_ERR_FORMAT);
    MP_CK_ERROR_MENTIONS("trailing bytes after the gzip stream (byte 0x00");
    ck_assert_ptr_eq(ds, (mp_dataset *)0x1);
    ck_assert_int_eq(mp_live_allocations(), live);
}

START_TEST(idx_gzip_large_members)
{
    make_tmpdir();
    enum { N = 600, SIDE = 16, D = SIDE * SIDE };
    const char *im = tmp_path("im"), *lb = tmp_path("lb"), *gz = tmp_path("im.gz");
    const size_t plen = (size_t)N * D, len = 16 + plen, cap = 2 * len + 4096;
    uint8_t *px = malloc(plen), *raw = malloc(len), *out = malloc(cap), *tmp = malloc(cap), lab[N], lbuf[N + 16];
    ck_assert(px && raw && out && tmp);
    uint64_t x = 0x9E3779B97F4A7C15u;
    for (size_t i = 0; i < plen; i++) {
        x = x * 6364136223846793005u + 1442695040888963407u;
        px[i] = (uint8_t)(x >> 56);
    }
    for (int i = 0; i < N; i++) lab[i] = (uint8_t)(i % 10);
    uint32_t d3[3] = {N, SIDE, SIDE}, d1[1] = {N};
    ck_assert_uint_eq(idx_build(raw, 0x08, 3, d3, px, plen), len);
    write_bytes(im, raw, len, 0);
    write_bytes(lb, lbuf, idx_build(lbuf, 0x08, 1, d1, lab, N), 0);
    mp_dataset *plain;
    MP_CK_OK(mp_dataset_load_idx(&plain, im, lb, NULL));

    /* (i) one member, more than twice the input buffer */
    size_t one[2] = {0, len};
    ck_assert_uint_gt(write_members(gz, raw, one, 1, 0, out, cap), 2 * 65536);
    check_same_as_plain(plain, gz, lb, N, D);
    write_members(gz, raw, one, 1, 1, out, cap);
    junk_rejected(gz, lb);

    /* (ii) the first member ends one byte before the end of the first
     * buffer (the next member's first byte is moved to the front before the
     * refill), exactly at its end (the buffer is empty), and one byte before
     * the end of the second buffer, whose first byte is not 0x1f (so the
     * move is seen: the first buffer starts with 0x1f whatever is moved) */
    const size_t ends[3] = {65535, 65536, 2 * 65536 - 1};
    for (int e = 0; e < 3; e++) {
        const size_t end = ends[e];
        size_t two[3] = {0, raw_len_for_member(raw, len, end, tmp, cap), len};
        size_t fl = write_members(gz, raw, two, 2, 0, out, cap);
        ck_assert_uint_gt(fl, end + 18);
        ck_assert_msg(out[end] == 0x1f && out[end + 1] == 0x8b, "second member not at offset %zu", end);
        if (end > 65536) ck_assert_uint_ne(out[65536], 0x1f);
        check_same_as_plain(plain, gz, lb, N, D);
        write_members(gz, raw, two, 2, 1, out, cap);
        junk_rejected(gz, lb);
    }

    /* (iii) 30 members of random sizes (one of them empty) */
    enum { K = 30 };
    size_t cuts[K + 1];
    cuts[0] = 0;
    cuts[K] = len;
    for (int m = 1; m < K; m++) {
        x = x * 6364136223846793005u + 1442695040888963407u;
        cuts[m] = (size_t)((x >> 33) % len);
    }
    for (int m = 1; m < K; m++) /* insertion sort */
        for (int j = m; j > 1 && cuts[j - 1] > cuts[j]; j--) {
            size_t t = cuts[j];
            cuts[j] = cuts[j - 1];
            cuts[j - 1] = t;
        }
    cuts[2] = cuts[1]; /* an empty member */
    write_members(gz, raw, cuts, K, 0, out, cap);
    check_same_as_plain(plain, gz, lb, N, D);
    write_members(gz, raw, cuts, K, 1, out, cap);
    junk_rejected(gz, lb);

    mp_dataset_destroy(plain);
    free(px);
    free(raw);
    free(out);
    free(tmp);
    remove_tmpdir();
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

/* The fuzz harness's seeds (tests/fuzz/corpus/fuzz_idx/) must stay valid:
 * each loads as images with the harness's fixed labels or as labels with
 * its fixed images (2 examples), and some are gzipped. */
START_TEST(idx_fuzz_seeds_load)
{
    make_tmpdir();
    static const uint8_t im[] = {0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2, 1, 2, 3, 4, 5, 6, 7, 8};
    static const uint8_t lb[] = {0, 0, 8, 1, 0, 0, 0, 2, 0, 1};
    write_bytes(tmp_path("im"), im, sizeof im, 0);
    write_bytes(tmp_path("lb"), lb, sizeof lb, 0);
    char dir[512];
    snprintf(dir, sizeof dir, "%s", mp_test_path("tests/fuzz/corpus/fuzz_idx"));
    DIR *d = opendir(dir);
    ck_assert_msg(d != NULL, "cannot open %s", dir);
    int seeds = 0, gz = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.') continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        uint8_t head[2] = {0};
        read_bytes(path, head, 2);
        gz += head[0] == 0x1f && head[1] == 0x8b;
        mp_dataset *ds = NULL;
        mp_status a = mp_dataset_load_idx(&ds, path, tmp_path("lb"), NULL);
        mp_dataset_destroy(ds);
        ds = NULL;
        mp_status b = mp_dataset_load_idx(&ds, tmp_path("im"), path, NULL);
        mp_dataset_destroy(ds);
        ck_assert_msg(a == MP_OK || b == MP_OK, "seed %s loads in neither role: %s", e->d_name, mp_last_error());
        seeds++;
    }
    closedir(d);
    ck_assert_int_ge(seeds, 5);
    ck_assert_int_ge(gz, 1);
    remove_tmpdir();
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

START_TEST(idx_allocation_failures)
{
    make_tmpdir();
    const char *im = tmp_path("im.gz"), *lb = tmp_path("lb.gz");
    write_small_idx(im, lb, 1);
    mp_test_install_failing_allocator();
    mp_status st = MP_ERR_OUT_OF_MEMORY;
    for (long k = 0; st == MP_ERR_OUT_OF_MEMORY && k < 100; k++) {
        mp_dataset *ds = (mp_dataset *)0x1;
        mp_test_fail_after(k);
        st = mp_dataset_load_idx(&ds, im, lb, NULL);
        mp_test_alloc_reset();
        if (st == MP_OK) {
            check_small_idx(ds, 1.0f / 255.0f);
            mp_dataset_destroy(ds);
        } else {
            ck_assert_ptr_eq(ds, (mp_dataset *)0x1);
        }
        ck_assert_int_eq(mp_live_allocations(), 0);
    }
    MP_CK_OK(st);
    MP_CK_OK(mp_set_allocator(NULL, NULL, NULL));
    remove_tmpdir();
}
END_TEST

/* ---- CSV ------------------------------------------------------------------------ */
static mp_dataset *load_csv_text(const char *text, mp_config *cfg)
{
    write_text(tmp_path("t.csv"), text);
    mp_dataset *ds = NULL;
    MP_CK_OK(mp_dataset_load_csv(&ds, tmp_path("t.csv"), cfg));
    return ds;
}

static void csv_fails(const char *text, mp_config *cfg, mp_status st, const char *part)
{
    write_text(tmp_path("bad.csv"), text);
    int64_t live = mp_live_allocations();
    mp_dataset *ds = (mp_dataset *)0x1;
    MP_CK_STATUS(mp_dataset_load_csv(&ds, tmp_path("bad.csv"), cfg), st);
    if (part) MP_CK_ERROR_MENTIONS(part);
    ck_assert_ptr_eq(ds, (mp_dataset *)0x1);
    ck_assert_int_eq(mp_live_allocations(), live);
}

START_TEST(csv_loads)
{
    make_tmpdir();
    mp_dataset *ds = load_csv_text("1.5, 2, 0\r\n\n-3e2,4,2\n  5 ,6 , 1 \n", NULL);
    size_t n;
    int32_t d, nc, l;
    float row[2];
    MP_CK_OK(mp_dataset_size(ds, &n));
    MP_CK_OK(mp_dataset_dim(ds, &d));
    MP_CK_OK(mp_dataset_num_classes(ds, &nc));
    ck_assert(n == 3 && d == 2 && nc == 3);
    MP_CK_OK(mp_dataset_get(ds, 1, row, 2, &l));
    ck_assert(row[0] == -300.0f && row[1] == 4.0f && l == 2);
    mp_dataset_destroy(ds);
    /* Every form of decimal notation. */
    ds = load_csv_text(".5,5.,1E1\n+2e-1,-0,2.5E+1\n007,1.5e0,0\n", NULL);
    MP_CK_OK(mp_dataset_get(ds, 0, row, 2, &l));
    ck_assert(row[0] == 0.5f && row[1] == 5.0f && l == 10);
    MP_CK_OK(mp_dataset_get(ds, 1, row, 2, &l));
    ck_assert(row[0] == 0.2f && row[1] == 0.0f && l == 25);
    MP_CK_OK(mp_dataset_get(ds, 2, row, 2, &l));
    ck_assert(row[0] == 7.0f && row[1] == 1.5f && l == 0);
    mp_dataset_destroy(ds);

    mp_config *cfg;
    MP_CK_OK(mp_config_create(&cfg));
    MP_CK_OK(mp_config_set_int(cfg, MP_CFG_DATA_CSV_HEADER, 1));
    MP_CK_OK(mp_config_set_int(cfg, MP_CFG_DATA_CSV_LABEL_COLUMN, 0));
    ds = load_csv_text("label,a,b\n1,10,20\n0,30,40", cfg);
    MP_CK_OK(mp_dataset_get(ds, 1, row, 2, &l));
    ck_assert(row[0] == 30.0f && row[1] == 40.0f && l == 0);
    mp_dataset_destroy(ds);

    MP_CK_OK(mp_config_set_int(cfg, MP_CFG_DATA_CSV_REGRESSION, 1));
    MP_CK_OK(mp_config_set_int(cfg, MP_CFG_DATA_CSV_LABEL_COLUMN, 1));
    ds = load_csv_text("x,y,z\n1,0.25,3\n4,-0.5,6\n", cfg);
    float t;
    MP_CK_OK(mp_dataset_get_target(ds, 1, &t, 1));
    ck_assert(t == -0.5f);
    MP_CK_OK(mp_dataset_get(ds, 1, row, 2, NULL));
    ck_assert(row[0] == 4.0f && row[1] == 6.0f);
    MP_CK_STATUS(mp_dataset_num_classes(ds, &nc), MP_ERR_STATE);
    mp_dataset_destroy(ds);
    mp_config_destroy(cfg);
    remove_tmpdir();
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

START_TEST(csv_bad_inputs)
{
    make_tmpdir();
    csv_fails("1,2,0\n3,nan,1\n", NULL, MP_ERR_NOT_FINITE, "line 2, column 2");
    csv_fails("1,2,0\n3,-inf,1\n", NULL, MP_ERR_NOT_FINITE, "line 2");
    csv_fails("1,2,0\n3,1e999,1\n", NULL, MP_ERR_NOT_FINITE, NULL);
    csv_fails("1,2,0\n3,4\n", NULL, MP_ERR_FORMAT, "line 2 has 2 columns, expected 3");
    csv_fails("1,2,0\n\n3,4,5,6\n", NULL, MP_ERR_FORMAT, "line 3");
    csv_fails("1,2,0\n3,abc,1\n", NULL, MP_ERR_FORMAT, "line 2, column 2: 'abc' is not a number");
    csv_fails("1,,0\n", NULL, MP_ERR_FORMAT, "empty cell");
    /* Decimal notation only: strtod would read these hexadecimal and
     * malformed cells (0x10 as label 16, 0x1p3 as 8, "1e" as 1). */
    csv_fails("1,2,0\n3,4,0x10\n", NULL, MP_ERR_FORMAT,
              "line 2, column 3: '0x10' is not a number in decimal notation");
    csv_fails("0x1p3,2,0\n", NULL, MP_ERR_FORMAT, "line 1, column 1: '0x1p3' is not a number");
    csv_fails("1,-0X.8,0\n", NULL, MP_ERR_FORMAT, "line 1, column 2: '-0X.8'");
    csv_fails("1e,2,0\n", NULL, MP_ERR_FORMAT, "line 1, column 1: '1e'");
    csv_fails("1,.,0\n", NULL, MP_ERR_FORMAT, "line 1, column 2: '.'");
    csv_fails("1,2 3,0\n", NULL, MP_ERR_FORMAT, "line 1, column 2: '2 3'");
    csv_fails("1,+-2,0\n", NULL, MP_ERR_FORMAT, "column 2");
    csv_fails("1,2,1e1.5\n", NULL, MP_ERR_FORMAT, "column 3");
    /* The NaN and infinity spellings are refused as non-finite. */
    csv_fails("1,INF,0\n", NULL, MP_ERR_NOT_FINITE, "line 1, column 2: 'INF' is not finite");
    csv_fails("1,2,0\n+Infinity,2,0\n", NULL, MP_ERR_NOT_FINITE, "line 2, column 1");
    csv_fails("1,nan(0x1),0\n", NULL, MP_ERR_NOT_FINITE, "column 2");
    csv_fails("1,-NaN,0\n", NULL, MP_ERR_NOT_FINITE, "column 2");
    csv_fails("1,2,-1\n", NULL, MP_ERR_RANGE, "label -1");
    csv_fails("1,2,0.5\n", NULL, MP_ERR_RANGE, "label 0.5");
    csv_fails("1\n2\n", NULL, MP_ERR_FORMAT, "at least 2");
    csv_fails("", NULL, MP_ERR_FORMAT, "no data rows");
    csv_fails("\n \n", NULL, MP_ERR_FORMAT, "no data rows");
    mp_config *cfg;
    MP_CK_OK(mp_config_create(&cfg));
    MP_CK_OK(mp_config_set_int(cfg, MP_CFG_DATA_CSV_HEADER, 1));
    csv_fails("a,b\n", cfg, MP_ERR_FORMAT, "no data rows");
    MP_CK_OK(mp_config_set_int(cfg, MP_CFG_DATA_CSV_LABEL_COLUMN, 5));
    csv_fails("a,b\n1,2\n", cfg, MP_ERR_FORMAT, "label column 5");
    mp_config_destroy(cfg);
    mp_dataset *ds = (mp_dataset *)0x1;
    MP_CK_STATUS(mp_dataset_load_csv(&ds, tmp_path("nope.csv"), NULL), MP_ERR_IO);
    MP_CK_ERROR_MENTIONS("nope.csv");
    MP_CK_ERROR_MENTIONS("No such file");
    MP_CK_STATUS(mp_dataset_load_csv(&ds, NULL, NULL), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_dataset_load_csv(NULL, tmp_path("bad.csv"), NULL), MP_ERR_NULL_POINTER);
    ck_assert_ptr_eq(ds, (mp_dataset *)0x1);
    remove_tmpdir();
}
END_TEST

START_TEST(csv_parse_from_memory)
{
    /* Not NUL-terminated: the parser must stop at len. */
    const char text[] = "1,2,3\n4,5,6X";
    mp__csv_opts o = {0, -1, 0};
    mp__csv_result r;
    MP_CK_OK(mp__csv_parse(text, sizeof text - 2, &o, &r, "mem"));
    ck_assert(r.n == 2 && r.dim == 2 && r.labels[1] == 6 && r.x[2] == 4.0f);
    mp__free(r.x);
    mp__free(r.labels);
    MP_CK_STATUS(mp__csv_parse(text, sizeof text - 1, &o, &r, "mem"), MP_ERR_FORMAT);
    MP_CK_ERROR_MENTIONS("line 2, column 3");
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

/* ---- tasks ------------------------------------------------------------------------ */
START_TEST(task_from_arrays)
{
    float sx[4] = {1, 2, 3, 4}, qx[6] = {5, 6, 7, 8, 9, 10};
    int32_t sl[2] = {0, 1}, ql[3] = {1, 1, 0};
    mp_task *t;
    MP_CK_OK(mp_task_create_classification(&t, 2, 2, sx, sl, 2, qx, ql, 3));
    size_t ns, nq;
    int32_t d, nw, td;
    MP_CK_OK(mp_task_sizes(t, &ns, &nq, &d, &nw, &td));
    ck_assert(ns == 2 && nq == 3 && d == 2 && nw == 2 && td == 0);
    MP_CK_OK(mp_task_sizes(t, NULL, NULL, NULL, NULL, NULL));
    float bx[6] = {0};
    int32_t bl[3] = {0};
    MP_CK_OK(mp_task_get_query(t, bx, 6, bl, 3, NULL, 0));
    ck_assert(bx[5] == 10 && bl[0] == 1 && bl[2] == 0);
    MP_CK_OK(mp_task_get_support(t, NULL, 0, bl, 2, NULL, 0));
    ck_assert(bl[0] == 0 && bl[1] == 1);
    mp__task_view v;
    mp__task_get_view(t, &v);
    ck_assert(v.dim == 2 && v.n_way == 2 && v.target_dim == 0 && v.n_support == 2 && v.n_query == 3);
    ck_assert(v.support_x[3] == 4 && v.query_labels[1] == 1 && v.support_targets == NULL);
    memset(bx, 0, sizeof bx);
    MP_CK_STATUS(mp_task_get_query(t, bx, 5, bl, 3, NULL, 0), MP_ERR_BUFFER_TOO_SMALL);
    MP_CK_ERROR_MENTIONS("mp_task_get_query: 'x' has room for x_len = 5 floats, 6 needed");
    MP_CK_STATUS(mp_task_get_query(t, bx, 6, bl, 2, NULL, 0), MP_ERR_BUFFER_TOO_SMALL);
    MP_CK_ERROR_MENTIONS("mp_task_get_query: 'labels' has room for labels_len = 2 labels, 3 needed");
    ck_assert(bx[0] == 0); /* nothing written */
    float bt[3];
    MP_CK_STATUS(mp_task_get_support(t, NULL, 0, NULL, 0, bt, 3), MP_ERR_STATE);
    MP_CK_STATUS(mp_task_get_support(NULL, bx, 6, NULL, 0, NULL, 0), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_task_sizes(NULL, &ns, NULL, NULL, NULL, NULL), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_task_sinusoid_params(t, NULL, NULL), MP_ERR_STATE);
    mp_task_destroy(t);

    float st[2] = {0.5f, -0.5f}, qt[3] = {1, 2, 3};
    MP_CK_OK(mp_task_create_regression(&t, 2, 1, sx, st, 2, qx, qt, 3));
    MP_CK_OK(mp_task_sizes(t, &ns, &nq, &d, &nw, &td));
    ck_assert(ns == 2 && nq == 3 && d == 2 && nw == 0 && td == 1);
    MP_CK_OK(mp_task_get_query(t, NULL, 0, NULL, 0, bt, 3));
    ck_assert(bt[2] == 3);
    MP_CK_STATUS(mp_task_get_query(t, NULL, 0, bl, 3, NULL, 0), MP_ERR_STATE);
    mp__task_get_view(t, &v);
    ck_assert(v.support_labels == NULL && v.support_targets[1] == -0.5f && v.target_dim == 1);
    mp_task_destroy(t);
    mp_task_destroy(NULL);
    ck_assert_str_eq(mp_task_error(NULL), "");
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

START_TEST(task_bad_inputs)
{
    float sx[4] = {1, 2, 3, 4}, qx[4] = {5, 6, 7, 8}, nanx[4] = {1, 2, INFINITY, 4};
    int32_t sl[2] = {0, 1}, ql[2] = {1, 2};
    mp_task *t = (mp_task *)0x1;
    MP_CK_STATUS(mp_task_create_classification(&t, 2, 2, sx, sl, 2, qx, ql, 2), MP_ERR_RANGE);
    MP_CK_ERROR_MENTIONS("query_labels[1] is 2");
    MP_CK_STATUS(mp_task_create_classification(&t, 2, 2, nanx, sl, 2, qx, sl, 2), MP_ERR_NOT_FINITE);
    MP_CK_ERROR_MENTIONS("support_x[2]");
    MP_CK_STATUS(mp_task_create_classification(&t, 0, 2, sx, sl, 2, qx, sl, 2), MP_ERR_INVALID_ARGUMENT);
    MP_CK_STATUS(mp_task_create_classification(&t, 2, 0, sx, sl, 2, qx, sl, 2), MP_ERR_INVALID_ARGUMENT);
    MP_CK_STATUS(mp_task_create_classification(&t, 2, 2, sx, sl, 0, qx, sl, 2), MP_ERR_INVALID_ARGUMENT);
    MP_CK_ERROR_MENTIONS("n_support is 0");
    MP_CK_STATUS(mp_task_create_classification(&t, 2, 2, sx, sl, 2, qx, sl, 0), MP_ERR_INVALID_ARGUMENT);
    MP_CK_STATUS(mp_task_create_classification(&t, 2, 2, sx, NULL, 2, qx, sl, 2), MP_ERR_NULL_POINTER);
    MP_CK_ERROR_MENTIONS("support_labels");
    MP_CK_STATUS(mp_task_create_classification(NULL, 2, 2, sx, sl, 2, qx, sl, 2), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_task_create_regression(&t, 2, 1, sx, sx, 2, nanx, sx, 2), MP_ERR_NOT_FINITE);
    MP_CK_ERROR_MENTIONS("qx[2]");
    MP_CK_STATUS(mp_task_create_regression(&t, 2, 0, sx, sx, 2, qx, sx, 2), MP_ERR_INVALID_ARGUMENT);
    MP_CK_STATUS(mp_task_create_regression(&t, 2, 1, sx, sx, 2, qx, sx, 0), MP_ERR_INVALID_ARGUMENT);
    MP_CK_STATUS(mp_task_create_regression(&t, 2, 1, sx, sx, 2, NULL, sx, 2), MP_ERR_NULL_POINTER);
    /* sizes whose byte count overflows size_t: refused before any array is read */
    MP_CK_STATUS(mp_task_create_regression(&t, 2, 1, sx, sx, SIZE_MAX / 2 + 1, qx, sx, 2), MP_ERR_INVALID_ARGUMENT);
    MP_CK_ERROR_MENTIONS("overflows");
    MP_CK_STATUS(mp_task_create_classification(&t, 2, 2, sx, sl, 2, qx, sl, SIZE_MAX / 8), MP_ERR_INVALID_ARGUMENT);
    MP_CK_ERROR_MENTIONS("mp_task_create_classification: task of 2 + ");
    MP_CK_ERROR_MENTIONS("overflows");
    MP_CK_STATUS(mp_task_sinusoid(&t, 1, 2, 0, 5), MP_ERR_INVALID_ARGUMENT);
    MP_CK_STATUS(mp_task_sinusoid(&t, 1, 2, 5, 0), MP_ERR_INVALID_ARGUMENT);
    MP_CK_STATUS(mp_task_sinusoid(NULL, 1, 2, 5, 5), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_task_sinusoid_params(NULL, NULL, NULL), MP_ERR_NULL_POINTER);
    ck_assert_ptr_eq(t, (mp_task *)0x1);
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

/* ---- sinusoid ---------------------------------------------------------------------- */
START_TEST(sinusoid_family_statistics)
{
    const int n = 4000;
    double sa = 0, sp = 0, sx = 0, amin = 1e9, amax = -1e9, pmin = 1e9, pmax = -1e9, xmin = 1e9, xmax = -1e9;
    mp_task *t;
    for (int i = 0; i < n; i++) {
        CK_OK(mp_task_sinusoid(&t, 42, (uint64_t)i, 5, 10));
        double a, p;
        CK_OK(mp_task_sinusoid_params(t, &a, &p));
        mp__task_view v;
        mp__task_get_view(t, &v);
        CK(v.n_support == 5 && v.n_query == 10 && v.dim == 1 && v.target_dim == 1 && v.n_way == 0);
        for (size_t j = 0; j < 15; j++) {
            float x = j < 5 ? v.support_x[j] : v.query_x[j - 5];
            float y = j < 5 ? v.support_targets[j] : v.query_targets[j - 5];
            CK(fabs((double)y - a * sin((double)x - p)) < 1e-5);
            sx += x;
            xmin = fmin(xmin, x);
            xmax = fmax(xmax, x);
        }
        sa += a; sp += p;
        amin = fmin(amin, a); amax = fmax(amax, a);
        pmin = fmin(pmin, p); pmax = fmax(pmax, p);
        mp_task_destroy(t);
    }
    CK(amin >= 0.1 && amax <= 5.0 && amin < 0.15 && amax > 4.95);
    CK(pmin >= 0 && pmax <= M_PI && pmin < 0.05 && pmax > M_PI - 0.05);
    CK(xmin >= -5 && xmax <= 5 && xmin < -4.99 && xmax > 4.99);
    /* means: A 2.55 (sd 1.41/sqrt(n) ~ 0.022), phase pi/2 (sd 0.014), x 0 (sd 0.024) */
    ck_assert_msg(fabs(sa / n - 2.55) < 0.1, "mean amplitude %g", sa / n);
    ck_assert_msg(fabs(sp / n - M_PI / 2) < 0.07, "mean phase %g", sp / n);
    ck_assert_msg(fabs(sx / (15.0 * n)) < 0.1, "mean x %g", sx / (15.0 * n));
    /* pure function of (seed, index) */
    mp_task *a1, *a2, *b;
    CK_OK(mp_task_sinusoid(&a1, 7, 3, 5, 5));
    CK_OK(mp_task_sinusoid(&a2, 7, 3, 5, 5));
    CK_OK(mp_task_sinusoid(&b, 7, 4, 5, 5));
    mp__task_view v1, v2, v3;
    mp__task_get_view(a1, &v1);
    mp__task_get_view(a2, &v2);
    mp__task_get_view(b, &v3);
    CK(memcmp(v1.support_x, v2.support_x, 5 * sizeof(float)) == 0);
    CK(memcmp(v1.query_targets, v2.query_targets, 5 * sizeof(float)) == 0);
    CK(memcmp(v1.support_x, v3.support_x, 5 * sizeof(float)) != 0);
    mp_task_destroy(a1);
    mp_task_destroy(a2);
    mp_task_destroy(b);
}
END_TEST

START_TEST(sinusoid_sampler_matches_family)
{
    mp_config *cfg;
    MP_CK_OK(mp_config_create(&cfg));
    MP_CK_OK(mp_config_set_int(cfg, MP_CFG_SEED, 9));
    MP_CK_OK(mp_config_set_int(cfg, MP_CFG_DATA_SHOTS, 10));
    MP_CK_OK(mp_config_set_int(cfg, MP_CFG_DATA_QUERIES, 7));
    mp_sampler *s;
    MP_CK_OK(mp_sampler_create_sinusoid(&s, cfg));
    mp_config_destroy(cfg);
    int32_t w, k, q, d;
    MP_CK_OK(mp_sampler_info(s, &w, &k, &q, &d));
    ck_assert(w == 0 && k == 10 && q == 7 && d == 1);
    mp_task *e, *f;
    MP_CK_OK(mp_sampler_episode(s, 5, &e));
    MP_CK_OK(mp_task_sinusoid(&f, 9, 5, 10, 7));
    double a1, p1, a2, p2;
    MP_CK_OK(mp_task_sinusoid_params(e, &a1, &p1));
    MP_CK_OK(mp_task_sinusoid_params(f, &a2, &p2));
    ck_assert(a1 == a2 && p1 == p2);
    mp_task_destroy(e);
    mp_task_destroy(f);
    /* next uses the position; episode_into rewrites a task in place */
    MP_CK_OK(mp_sampler_set_position(s, 5));
    MP_CK_OK(mp_sampler_next(s, &e));
    MP_CK_OK(mp_task_sinusoid_params(e, &a2, &p2));
    ck_assert(a1 == a2 && p1 == p2);
    uint64_t pos;
    MP_CK_OK(mp_sampler_get_position(s, &pos));
    ck_assert_uint_eq(pos, 6);
    MP_CK_OK(mp_sampler_episode_into(s, 6, e));
    MP_CK_OK(mp_task_sinusoid_params(e, &a2, &p2));
    ck_assert(a1 != a2);
    mp_task_destroy(e);
    mp_sampler_destroy(s);
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

/* ---- episode sampler ------------------------------------------------------------------ */
/* Dataset of C classes x M examples; x[0] = example index, x[1] = class,
 * x[2] = 0.5 (dim 3). Label of example i is i % C. */
static mp_dataset *id_dataset(int C, int M)
{
    int n = C * M;
    float *x = malloc((size_t)n * 3 * sizeof *x);
    int32_t *l = malloc((size_t)n * sizeof *l);
    for (int i = 0; i < n; i++) {
        l[i] = i % C;
        x[3 * i] = (float)i;
        x[3 * i + 1] = (float)(i % C);
        x[3 * i + 2] = 0.5f;
    }
    mp_dataset *ds;
    MP_CK_OK(mp_dataset_from_arrays(&ds, x, (size_t)n, 3, l, NULL, 0));
    free(x);
    free(l);
    return ds;
}

static mp_sampler *make_sampler(const mp_dataset *ds, int ways, int shots, int queries, int rot, int seed)
{
    mp_config *cfg;
    MP_CK_OK(mp_config_create(&cfg));
    MP_CK_OK(mp_config_set_int(cfg, MP_CFG_DATA_WAYS, ways));
    MP_CK_OK(mp_config_set_int(cfg, MP_CFG_DATA_SHOTS, shots));
    MP_CK_OK(mp_config_set_int(cfg, MP_CFG_DATA_QUERIES, queries));
    MP_CK_OK(mp_config_set_int(cfg, MP_CFG_DATA_ROTATIONS, rot));
    MP_CK_OK(mp_config_set_int(cfg, MP_CFG_SEED, seed));
    mp_sampler *s = NULL;
    MP_CK_OK(mp_sampler_create(&s, ds, cfg));
    mp_config_destroy(cfg);
    return s;
}

/* Checks every invariant of one episode of id_dataset; returns the original
 * class of episode label 0. */
static int check_episode(const mp_task *t, int N, int K, int Q, int C, int M)
{
    mp__task_view v;
    mp__task_get_view(t, &v);
    CK(v.n_way == N && v.dim == 3 && v.n_support == (size_t)(N * K) && v.n_query == (size_t)(N * Q));
    int cls_of[64], per_s[64] = {0}, per_q[64] = {0};
    for (int l = 0; l < N; l++) cls_of[l] = -1;
    static unsigned char seen[1 << 16];
    memset(seen, 0, (size_t)(C * M));
    for (size_t r = 0; r < v.n_support + v.n_query; r++) {
        int sup = r < v.n_support;
        const float *x = sup ? v.support_x + 3 * r : v.query_x + 3 * (r - v.n_support);
        int lab = sup ? v.support_labels[r] : v.query_labels[r - v.n_support];
        CK(lab >= 0 && lab < N);
        int id = (int)x[0], cls = (int)x[1];
        CK(id >= 0 && id < C * M && id % C == cls && x[2] == 0.5f);
        if (seen[id]) ck_abort_msg("example %d appears twice in one episode", id);
        seen[id] = 1;
        if (cls_of[lab] < 0) cls_of[lab] = cls;
        CK((cls_of[lab]) == (cls)); /* one class per label */
        if (sup) per_s[lab]++; else per_q[lab]++;
    }
    for (int l = 0; l < N; l++) {
        CK(per_s[l] == K && per_q[l] == Q);
        for (int m = 0; m < l; m++) CK(cls_of[l] != cls_of[m]); /* N distinct classes */
    }
    return cls_of[0];
}

START_TEST(sampler_episode_invariants_and_uniform_labels)
{
    const int C = 10, M = 30, N = 5, K = 2, Q = 3;
    mp_dataset *ds = id_dataset(C, M);
    mp_sampler *s = make_sampler(ds, N, K, Q, 0, 123);
    int32_t w, k, q, d;
    CK_OK(mp_sampler_info(s, &w, &k, &q, &d));
    CK(w == N && k == K && q == Q && d == 3);
    mp_task *t;
    CK_OK(mp_sampler_episode(s, 0, &t));
    /* chi-square of which original class gets episode label 0: uniform over C */
    const int E = 20000;
    long hist[10] = {0}, first_row_label[5] = {0}, first_query_label[5] = {0}, last_query_label[5] = {0};
    long sorted_support = 0, sorted_query = 0, same_adjacent = 0;
    for (int e = 0; e < E; e++) {
        CK_OK(mp_sampler_episode_into(s, (uint64_t)e, t));
        hist[check_episode(t, N, K, Q, C, M)]++;
        mp__task_view v;
        mp__task_get_view(t, &v);
        first_row_label[v.support_labels[0]]++; /* shuffled order: uniform too */
        first_query_label[v.query_labels[0]]++;
        last_query_label[v.query_labels[v.n_query - 1]]++;
        int sorted = 1;
        for (size_t r = 1; r < v.n_support; r++) sorted &= v.support_labels[r - 1] <= v.support_labels[r];
        sorted_support += sorted;
        sorted = 1;
        for (size_t r = 1; r < v.n_query; r++) {
            sorted &= v.query_labels[r - 1] <= v.query_labels[r];
            same_adjacent += v.query_labels[r - 1] == v.query_labels[r];
        }
        sorted_query += sorted;
    }
    double chi = 0, ex = (double)E / C;
    for (int c = 0; c < C; c++) chi += (hist[c] - ex) * (hist[c] - ex) / ex;
    ck_assert_msg(chi < 27.9, "label-0 class chi-square %g (df 9, p=0.001 at 27.9)", chi);
    /* the label of a fixed row position is uniform over N (df 4, p=0.001 at 18.47) */
    const long *pos_hist[3] = {first_row_label, first_query_label, last_query_label};
    const char *pos_name[3] = {"first support row", "first query row", "last query row"};
    for (int p = 0; p < 3; p++) {
        chi = 0;
        ex = (double)E / N;
        for (int l = 0; l < N; l++) chi += (pos_hist[p][l] - ex) * (pos_hist[p][l] - ex) / ex;
        ck_assert_msg(chi < 18.47, "%s label chi-square %g (df 4)", pos_name[p], chi);
    }
    /* rows are not grouped, sorted or interleaved by label: a sorted support
     * set of 10 rows has probability 2^5/10! (about 1e-5), and two
     * neighbouring query rows share a label with probability (Q-1)/(NQ-1) =
     * 1/7 in a uniform shuffle (5/7 grouped, 0 round-robin) */
    ck_assert_msg(sorted_support <= 3 && sorted_query == 0, "%ld support / %ld query sets sorted by label",
                  sorted_support, sorted_query);
    double same_rate = (double)same_adjacent / ((double)E * (N * Q - 1));
    ck_assert_msg(fabs(same_rate - 1.0 / 7.0) < 0.005, "neighbouring query rows share a label at rate %g, "
                  "expected 1/7", same_rate);
    mp_task_destroy(t);
    mp_sampler_destroy(s);

    /* N == C: every episode uses all classes, so only the permutation
     * decides label 0; it must not favour the smallest class id. */
    s = make_sampler(ds, C, 1, 1, 0, 5);
    long h2[10] = {0};
    CK_OK(mp_sampler_episode(s, 0, &t));
    for (int e = 0; e < 10000; e++) {
        CK_OK(mp_sampler_episode_into(s, (uint64_t)e, t));
        h2[check_episode(t, C, 1, 1, C, M)]++;
    }
    chi = 0;
    for (int c = 0; c < C; c++) chi += (h2[c] - 1000.0) * (h2[c] - 1000.0) / 1000.0;
    ck_assert_msg(chi < 27.9, "permutation chi-square %g", chi);
    mp_task_destroy(t);
    mp_sampler_destroy(s);
    mp_dataset_destroy(ds);
    CK((mp_live_allocations()) == (0));
}
END_TEST

/* Sum of an episode's bytes with positions mixed in: equal checksums of
 * equal-shaped episodes mean identical tasks for test purposes. */
static uint64_t task_hash(const mp_task *t)
{
    mp__task_view v;
    mp__task_get_view(t, &v);
    uint64_t h = 1469598103934665603ULL;
    const unsigned char *p[4] = {(const void *)v.support_x, (const void *)v.query_x,
                                 (const void *)v.support_labels, (const void *)v.query_labels};
    size_t len[4] = {v.n_support * (size_t)v.dim * 4, v.n_query * (size_t)v.dim * 4, v.n_support * 4,
                     v.n_query * 4};
    for (int a = 0; a < 4; a++)
        for (size_t i = 0; i < len[a]; i++) h = (h ^ p[a][i]) * 1099511628211ULL;
    return h;
}

typedef struct {
    const mp_sampler *s;
    uint64_t hashes[64];
    int ok;
} thread_arg;

static void *thread_sample(void *arg)
{
    thread_arg *a = arg;
    mp_task *t = NULL;
    a->ok = 1;
    /* reversed order: results must not depend on call order either */
    for (int i = 63; i >= 0; i--) {
        if (!t) { if (mp_sampler_episode(a->s, (uint64_t)i, &t) != MP_OK) a->ok = 0; }
        else if (mp_sampler_episode_into(a->s, (uint64_t)i, t) != MP_OK) a->ok = 0;
        if (t) a->hashes[i] = task_hash(t);
    }
    mp_task_destroy(t);
    return NULL;
}

START_TEST(sampler_deterministic_across_calls_and_threads)
{
    mp_dataset *ds = id_dataset(12, 20);
    mp_sampler *s = make_sampler(ds, 5, 1, 4, 0, 77);
    mp_task *a, *b;
    MP_CK_OK(mp_sampler_episode(s, 3, &a));
    MP_CK_OK(mp_sampler_episode(s, 3, &b));
    ck_assert(task_hash(a) == task_hash(b));
    MP_CK_OK(mp_sampler_episode_into(s, 4, b));
    ck_assert(task_hash(a) != task_hash(b));
    mp_task_destroy(b);
    uint64_t ref[64];
    for (int i = 0; i < 64; i++) {
        MP_CK_OK(mp_sampler_episode_into(s, (uint64_t)i, a));
        ref[i] = task_hash(a);
    }
    thread_arg args[4];
    pthread_t th[4];
    for (int k = 0; k < 4; k++) {
        args[k].s = s;
        ck_assert_int_eq(pthread_create(&th[k], NULL, thread_sample, &args[k]), 0);
    }
    for (int k = 0; k < 4; k++) {
        ck_assert_int_eq(pthread_join(th[k], NULL), 0);
        ck_assert(args[k].ok);
        for (int i = 0; i < 64; i++) ck_assert_msg(args[k].hashes[i] == ref[i], "thread %d episode %d differs", k, i);
    }
    /* another seed gives other episodes; another sampler with the same seed the same */
    mp_sampler *s2 = make_sampler(ds, 5, 1, 4, 0, 78), *s3 = make_sampler(ds, 5, 1, 4, 0, 77);
    MP_CK_OK(mp_sampler_episode_into(s2, 0, a));
    ck_assert(task_hash(a) != ref[0]);
    MP_CK_OK(mp_sampler_episode_into(s3, 0, a));
    ck_assert(task_hash(a) == ref[0]);
    /* next / position */
    MP_CK_OK(mp_sampler_next(s3, &b));
    ck_assert(task_hash(b) == ref[0]);
    mp_task_destroy(b);
    MP_CK_OK(mp_sampler_set_position(s3, 10));
    MP_CK_OK(mp_sampler_next(s3, &b));
    ck_assert(task_hash(b) == ref[10]);
    uint64_t pos;
    MP_CK_OK(mp_sampler_get_position(s3, &pos));
    ck_assert_uint_eq(pos, 11);
    mp_task_destroy(b);
    mp_task_destroy(a);
    mp_sampler_destroy(s);
    mp_sampler_destroy(s2);
    mp_sampler_destroy(s3);
    mp_dataset_destroy(ds);
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

START_TEST(sampler_episode_into_does_not_allocate)
{
    mp_test_install_failing_allocator();
    mp_dataset *ds = id_dataset(8, 10);
    mp_sampler *s = make_sampler(ds, 4, 2, 3, 0, 1);
    mp_task *t, *other;
    CK_OK(mp_sampler_episode(s, 0, &t));
    float x[3] = {1, 2, 3};
    int32_t l[1] = {0};
    CK_OK(mp_task_create_classification(&other, 3, 1, x, l, 1, x, l, 1));
    mp_test_fail_after(0); /* every allocation fails from here */
    for (uint64_t i = 0; i < 100; i++) CK_OK(mp_sampler_episode_into(s, i, t));
    /* a task of another shape needs new buffers: fails cleanly, unchanged */
    MP_CK_STATUS(mp_sampler_episode_into(s, 0, other), MP_ERR_OUT_OF_MEMORY);
    CK(strstr(mp_task_error(other), "mp_sampler_episode_into") != NULL);
    size_t ns;
    CK_OK(mp_task_sizes(other, &ns, NULL, NULL, NULL, NULL));
    ck_assert_uint_eq(ns, 1);
    mp_task *u = (mp_task *)0x1;
    MP_CK_STATUS(mp_sampler_episode(s, 0, &u), MP_ERR_OUT_OF_MEMORY);
    ck_assert_ptr_eq(u, (mp_task *)0x1);
    MP_CK_STATUS(mp_sampler_next(s, &u), MP_ERR_OUT_OF_MEMORY);
    uint64_t pos;
    CK_OK(mp_sampler_get_position(s, &pos));
    ck_assert_uint_eq(pos, 0);
    mp_test_alloc_reset();
    CK_OK(mp_sampler_episode_into(s, 0, other)); /* now reshaped */
    check_episode(other, 4, 2, 3, 8, 10);
    mp_task_destroy(t);
    mp_task_destroy(other);
    mp_sampler_destroy(s);
    mp_dataset_destroy(ds);
    CK((mp_live_allocations()) == (0));
    CK_OK(mp_set_allocator(NULL, NULL, NULL));
}
END_TEST

START_TEST(sampler_bad_inputs)
{
    mp_dataset *ds = id_dataset(6, 5);
    mp_config *cfg;
    MP_CK_OK(mp_config_create(&cfg));
    mp_sampler *s = (mp_sampler *)0x1;
    MP_CK_OK(mp_config_set_int(cfg, MP_CFG_DATA_WAYS, 7));
    MP_CK_OK(mp_config_set_int(cfg, MP_CFG_DATA_QUERIES, 2));
    MP_CK_STATUS(mp_sampler_create(&s, ds, cfg), MP_ERR_RANGE);
    MP_CK_ERROR_MENTIONS("only 6 classes");
    MP_CK_OK(mp_config_set_int(cfg, MP_CFG_DATA_WAYS, 5));
    MP_CK_OK(mp_config_set_int(cfg, MP_CFG_DATA_SHOTS, 3));
    MP_CK_OK(mp_config_set_int(cfg, MP_CFG_DATA_QUERIES, 3));
    MP_CK_STATUS(mp_sampler_create(&s, ds, cfg), MP_ERR_RANGE);
    MP_CK_ERROR_MENTIONS("class 0 has 5 examples");
    MP_CK_OK(mp_config_set_int(cfg, MP_CFG_DATA_QUERIES, 2));
    MP_CK_OK(mp_config_set_int(cfg, MP_CFG_DATA_ROTATIONS, 1));
    MP_CK_STATUS(mp_sampler_create(&s, ds, cfg), MP_ERR_SHAPE_MISMATCH);
    MP_CK_ERROR_MENTIONS("square");
    MP_CK_STATUS(mp_sampler_create(&s, NULL, cfg), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_sampler_create(NULL, ds, cfg), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_sampler_create_sinusoid(NULL, cfg), MP_ERR_NULL_POINTER);
    float x[4] = {1, 2, 3, 4};
    mp_dataset *reg;
    MP_CK_OK(mp_dataset_from_arrays(&reg, x, 4, 1, NULL, x, 1));
    MP_CK_STATUS(mp_sampler_create(&s, reg, NULL), MP_ERR_STATE);
    ck_assert_ptr_eq(s, (mp_sampler *)0x1);
    /* a class in the middle that is too small is named */
    int32_t lab[9] = {0, 0, 0, 1, 2, 2, 2, 3, 3};
    float x9[9] = {0};
    mp_dataset *uneven;
    MP_CK_OK(mp_dataset_from_arrays(&uneven, x9, 9, 1, lab, NULL, 0));
    MP_CK_OK(mp_config_set_int(cfg, MP_CFG_DATA_ROTATIONS, 0));
    MP_CK_OK(mp_config_set_int(cfg, MP_CFG_DATA_WAYS, 2));
    MP_CK_OK(mp_config_set_int(cfg, MP_CFG_DATA_SHOTS, 1));
    MP_CK_OK(mp_config_set_int(cfg, MP_CFG_DATA_QUERIES, 1));
    MP_CK_STATUS(mp_sampler_create(&s, uneven, cfg), MP_ERR_RANGE);
    MP_CK_ERROR_MENTIONS("class 1 has 1 examples");
    mp_config_destroy(cfg);
    s = make_sampler(ds, 2, 1, 1, 0, 0);
    mp_task *t = (mp_task *)0x1;
    MP_CK_STATUS(mp_sampler_episode(NULL, 0, &t), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_sampler_episode(s, 0, NULL), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_sampler_episode_into(s, 0, NULL), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_sampler_episode_into(NULL, 0, t), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_sampler_next(s, NULL), MP_ERR_NULL_POINTER);
    ck_assert(strstr(mp_sampler_error(s), "out") != NULL);
    MP_CK_STATUS(mp_sampler_next(NULL, &t), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_sampler_get_position(s, NULL), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_sampler_get_position(NULL, NULL), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_sampler_set_position(NULL, 3), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_sampler_info(NULL, NULL, NULL, NULL, NULL), MP_ERR_NULL_POINTER);
    MP_CK_OK(mp_sampler_info(s, NULL, NULL, NULL, NULL));
    ck_assert_ptr_eq(t, (mp_task *)0x1);
    ck_assert_str_eq(mp_sampler_error(NULL), "");
    mp_sampler_destroy(s);
    mp_sampler_destroy(NULL);
    mp_dataset_destroy(uneven);
    mp_dataset_destroy(reg);
    mp_dataset_destroy(ds);
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

/* Reference rotation by r quarter turns counter-clockwise of an n x n image. */
static void ref_rotate(const float *src, float *dst, int n, int r)
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            float v = src[i * n + j];
            int a = i, b = j;
            for (int k = 0; k < r; k++) { int t = a; a = n - 1 - b; b = t; } /* (i,j) -> (n-1-j, i) */
            dst[a * n + b] = v;
        }
}

START_TEST(sampler_rotations_rotate_pixels)
{
    /* C classes x M examples of 3x3 asymmetric images: pixel (i,j) of
     * example id = 100*id + 3i + j, label id % C. */
    enum { C = 6, M = 4, NE = C * M, N = 4, EP = 400 };
    const int n = 3;
    float x[NE * 9];
    int32_t lab[NE];
    for (int id = 0; id < NE; id++) {
        lab[id] = id % C;
        for (int p = 0; p < 9; p++) x[id * 9 + p] = (float)(100 * id + p);
    }
    mp_dataset *ds;
    CK_OK(mp_dataset_from_arrays(&ds, x, NE, 9, lab, NULL, 0));
    int32_t shape[2] = {3, 3};
    CK_OK(mp_dataset_set_sample_shape(ds, shape, 2));
    /* every rotation of every example, to identify rows */
    static float refs[NE * 4][9];
    for (int id = 0; id < NE; id++)
        for (int rot = 0; rot < 4; rot++) ref_rotate(x + 9 * id, refs[id * 4 + rot], n, rot);
    mp_sampler *s = make_sampler(ds, N, 1, 2, 1, 3);
    long rot_hist[4] = {0}, cls_hist[C] = {0};
    uint64_t hashes[EP];
    mp_task *t;
    CK_OK(mp_sampler_episode(s, 0, &t));
    for (uint64_t e = 0; e < EP; e++) {
        CK_OK(mp_sampler_episode_into(s, e, t));
        hashes[e] = task_hash(t);
        mp__task_view v;
        mp__task_get_view(t, &v);
        int label_key[N], seen[NE] = {0};
        for (int l = 0; l < N; l++) label_key[l] = -1;
        for (size_t r = 0; r < v.n_support + v.n_query; r++) {
            int sup = r < v.n_support;
            const float *row = sup ? v.support_x + 9 * r : v.query_x + 9 * (r - v.n_support);
            int l = sup ? v.support_labels[r] : v.query_labels[r - v.n_support];
            int found = -1;
            for (int k = 0; k < NE * 4 && found < 0; k++)
                if (memcmp(refs[k], row, sizeof refs[k]) == 0) found = k;
            ck_assert_msg(found >= 0, "episode %d row %d is no rotation of any example", (int)e, (int)r);
            int id = found / 4, rot = found % 4;
            /* an example once per episode, whatever its rotation */
            ck_assert_msg(!seen[id], "episode %d: example %d appears twice", (int)e, id);
            seen[id] = 1;
            int key = (id % C) * 4 + rot; /* (base class, rotation) */
            if (label_key[l] < 0) label_key[l] = key;
            CK(label_key[l] == key); /* one (class, rotation) per label */
        }
        for (int a2 = 0; a2 < N; a2++) {
            rot_hist[label_key[a2] % 4]++;
            cls_hist[label_key[a2] / 4]++;
            for (int b2 = 0; b2 < a2; b2++)
                ck_assert_msg(label_key[a2] / 4 != label_key[b2] / 4,
                              "episode %d holds two rotations of base class %d", (int)e, label_key[a2] / 4);
        }
    }
    mp_task_destroy(t);
    /* rotations and base classes uniform (df 3 and 5, p = 0.001) */
    double chi = 0, ex = EP * N / 4.0;
    for (int r = 0; r < 4; r++) chi += (rot_hist[r] - ex) * (rot_hist[r] - ex) / ex;
    ck_assert_msg(chi < 16.27, "rotation chi-square %g", chi);
    chi = 0;
    ex = EP * N / (double)C;
    for (int c = 0; c < C; c++) chi += (cls_hist[c] - ex) * (cls_hist[c] - ex) / ex;
    ck_assert_msg(chi < 20.52, "base class chi-square %g", chi);
    /* episode i is a pure function of (seed, i): fresh tasks, reverse order */
    for (int e = EP - 1; e >= 0; e -= 37) {
        CK_OK(mp_sampler_episode(s, (uint64_t)e, &t));
        ck_assert_msg(task_hash(t) == hashes[e], "episode %d differs when drawn again", e);
        mp_task_destroy(t);
    }
    /* the dataset is untouched: its contents, read back, are the input */
    for (int id = 0; id < NE; id++) {
        float row[9];
        int32_t l;
        CK_OK(mp_dataset_get(ds, (size_t)id, row, 9, &l));
        ck_assert_msg(memcmp(row, x + 9 * id, sizeof row) == 0 && l == lab[id], "dataset example %d changed", id);
    }
    /* N distinct base classes: at most C ways, rotations add none */
    mp_sampler_destroy(s);
    s = make_sampler(ds, C, 1, 1, 1, 3);
    mp_sampler_destroy(s);
    mp_config *cfg;
    CK_OK(mp_config_create(&cfg));
    CK_OK(mp_config_set_int(cfg, MP_CFG_DATA_ROTATIONS, 1));
    CK_OK(mp_config_set_int(cfg, MP_CFG_DATA_WAYS, C + 1));
    CK_OK(mp_config_set_int(cfg, MP_CFG_DATA_QUERIES, 1));
    mp_sampler *bad = (mp_sampler *)0x1;
    MP_CK_STATUS(mp_sampler_create(&bad, ds, cfg), MP_ERR_RANGE);
    MP_CK_ERROR_MENTIONS("only 6 classes");
    MP_CK_ERROR_MENTIONS("rotations add no classes");
    ck_assert_ptr_eq(bad, (mp_sampler *)0x1);
    mp_config_destroy(cfg);
    mp_dataset_destroy(ds);
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

/* ---- real data sets ---------------------------------------------------------------------- */
static int have_files(const char *a, const char *b, const char *env)
{
    if (access(a, R_OK) == 0 && access(b, R_OK) == 0) return 1;
    const char *req = getenv(env);
    ck_assert_msg(!(req && strcmp(req, "1") == 0), "%s=1 but %s or %s is missing", env, a, b);
    fprintf(stderr, "note: %s not found, test skipped (set %s=1 to require it)\n", a, env);
    return 0;
}

static void check_balanced(const mp_dataset *ds, size_t n, int32_t classes, size_t per_class)
{
    size_t got, cs;
    int32_t nc, d, dims[3];
    CK_OK(mp_dataset_size(ds, &got));
    CK_OK(mp_dataset_num_classes(ds, &nc));
    CK_OK(mp_dataset_dim(ds, &d));
    ck_assert_uint_eq(got, n);
    CK((nc) == (classes));
    CK((d) == (28 * 28));
    size_t nd;
    CK_OK(mp_dataset_sample_shape(ds, dims, 3, &nd));
    CK(nd == 2 && dims[0] == 28 && dims[1] == 28);
    for (int32_t c = 0; c < classes; c++) {
        CK_OK(mp_dataset_class_size(ds, c, &cs));
        ck_assert_uint_eq(cs, per_class);
    }
    /* pixels scaled to [0, 1] with both ends used */
    float row[784], lo = 1, hi = 0;
    for (size_t i = 0; i < n; i += n / 50) {
        CK_OK(mp_dataset_get(ds, i, row, 784, NULL));
        for (int j = 0; j < 784; j++) { lo = fminf(lo, row[j]); hi = fmaxf(hi, row[j]); }
    }
    CK(lo == 0.0f && hi == 1.0f);
}

START_TEST(fashion_mnist_loads)
{
    const char *dir = "/usr/share/datasets/fashion-mnist/";
    char ti[256], tl[256], ei[256], el[256];
    snprintf(ti, sizeof ti, "%strain-images-idx3-ubyte.gz", dir);
    snprintf(tl, sizeof tl, "%strain-labels-idx1-ubyte.gz", dir);
    snprintf(ei, sizeof ei, "%st10k-images-idx3-ubyte.gz", dir);
    snprintf(el, sizeof el, "%st10k-labels-idx1-ubyte.gz", dir);
    if (!have_files(ti, tl, "MP_REQUIRE_FASHION_MNIST") || !have_files(ei, el, "MP_REQUIRE_FASHION_MNIST")) return;
    mp_dataset *train, *test;
    MP_CK_OK(mp_dataset_load_idx(&train, ti, tl, NULL));
    check_balanced(train, 60000, 10, 6000);
    MP_CK_OK(mp_dataset_load_idx(&test, ei, el, NULL));
    check_balanced(test, 10000, 10, 1000);
    /* meta-split by classes and sample from it */
    int32_t pick[5] = {0, 2, 4, 6, 8};
    mp_dataset *even;
    MP_CK_OK(mp_dataset_select_classes(&even, test, pick, 5));
    mp_sampler *s = make_sampler(even, 5, 5, 15, 0, 1);
    mp_task *t;
    MP_CK_OK(mp_sampler_episode(s, 0, &t));
    mp__task_view v;
    mp__task_get_view(t, &v);
    ck_assert(v.n_support == 25 && v.n_query == 75 && v.dim == 784);
    mp_task_destroy(t);
    mp_sampler_destroy(s);
    mp_dataset_destroy(even);
    mp_dataset_destroy(test);
    mp_dataset_destroy(train);
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

START_TEST(omniglot_loads)
{
    char im[512], lb[512];
    snprintf(im, sizeof im, "%s", mp_test_path("../shared/data/omniglot/background-images-idx3-ubyte.gz"));
    snprintf(lb, sizeof lb, "%s", mp_test_path("../shared/data/omniglot/background-labels-idx1-int.gz"));
    if (!have_files(im, lb, "MP_REQUIRE_OMNIGLOT")) return;
    mp_dataset *ds;
    CK_OK(mp_dataset_load_idx(&ds, im, lb, NULL));
    check_balanced(ds, 19280, 964, 20);
    mp_sampler *s = make_sampler(ds, 20, 5, 15, 1, 2);
    mp_task *t;
    CK_OK(mp_sampler_episode(s, 0, &t));
    for (uint64_t i = 1; i < 100; i++) CK_OK(mp_sampler_episode_into(s, i, t));
    mp__task_view v;
    mp__task_get_view(t, &v);
    CK(v.n_way == 20 && v.n_support == 100 && v.n_query == 300 && v.dim == 784);
    mp_task_destroy(t);
    mp_sampler_destroy(s);
    mp_dataset_destroy(ds);
    /* the evaluation half: 659 characters x 20 drawers */
    snprintf(im, sizeof im, "%s", mp_test_path("../shared/data/omniglot/evaluation-images-idx3-ubyte.gz"));
    snprintf(lb, sizeof lb, "%s", mp_test_path("../shared/data/omniglot/evaluation-labels-idx1-int.gz"));
    if (!have_files(im, lb, "MP_REQUIRE_OMNIGLOT")) return;
    CK_OK(mp_dataset_load_idx(&ds, im, lb, NULL));
    check_balanced(ds, 13180, 659, 20);
    mp_dataset_destroy(ds);
    CK((mp_live_allocations()) == (0));
}
END_TEST

Suite *mp_test_data_suite(void)
{
    Suite *s = suite_create("data");
    TCase *ds = tcase_create("dataset");
    tcase_add_test(ds, dataset_from_arrays_and_accessors);
    tcase_add_test(ds, dataset_from_arrays_bad_inputs);
    tcase_add_test(ds, dataset_accessor_bad_inputs);
    tcase_add_test(ds, dataset_select_classes);
    suite_add_tcase(s, ds);
    TCase *idx = tcase_create("idx");
    tcase_add_test(idx, idx_plain_and_gzip);
    tcase_add_test(idx, idx_element_types);
    tcase_add_test(idx, idx_bad_inputs);
    tcase_add_test(idx, idx_header_and_length_errors);
    tcase_add_test(idx, idx_gzip_multi_member);
    tcase_add_test(idx, idx_gzip_large_members);
    tcase_add_test(idx, idx_fuzz_seeds_load);
    tcase_add_test(idx, idx_allocation_failures);
    suite_add_tcase(s, idx);
    TCase *csv = tcase_create("csv");
    tcase_add_test(csv, csv_loads);
    tcase_add_test(csv, csv_bad_inputs);
    tcase_add_test(csv, csv_parse_from_memory);
    suite_add_tcase(s, csv);
    TCase *task = tcase_create("task");
    tcase_add_test(task, task_from_arrays);
    tcase_add_test(task, task_bad_inputs);
    tcase_add_test(task, sinusoid_family_statistics);
    tcase_add_test(task, sinusoid_sampler_matches_family);
    suite_add_tcase(s, task);
    TCase *smp = tcase_create("sampler");
    tcase_add_test(smp, sampler_episode_invariants_and_uniform_labels);
    tcase_add_test(smp, sampler_deterministic_across_calls_and_threads);
    tcase_add_test(smp, sampler_episode_into_does_not_allocate);
    tcase_add_test(smp, sampler_bad_inputs);
    tcase_add_test(smp, sampler_rotations_rotate_pixels);
    suite_add_tcase(s, smp);
    TCase *real = tcase_create("real_data");
    tcase_set_timeout(real, 60);
    tcase_add_test(real, fashion_mnist_loads);
    tcase_add_test(real, omniglot_loads);
    suite_add_tcase(s, real);
    return s;
}
