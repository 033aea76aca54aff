/* Core: version, status, errors, allocator, logging, BLAS info, config,
 * RNG, and the ABI discipline checks (symbols, SONAME, headers alone). */
#include "test_util.h"

#include <ctype.h>
#include <stdlib.h>

#include "core/internal.h"

/* ---- version ------------------------------------------------------------ */
START_TEST(version_matches_macros)
{
    ck_assert_int_eq(mp_version_number(), MP_VERSION_NUMBER);
    ck_assert_str_eq(mp_version_string(), MP_VERSION_STRING);
    char buf[64];
    snprintf(buf, sizeof buf, "%d.%d.%d", MP_VERSION_MAJOR, MP_VERSION_MINOR, MP_VERSION_PATCH);
    ck_assert_str_eq(buf, mp_version_string());
}
END_TEST

/* ---- status and errors ---------------------------------------------------- */
START_TEST(status_strings_are_distinct_and_total)
{
    for (int i = 0; i < MP_STATUS_COUNT_; i++) {
        ck_assert_ptr_nonnull(mp_status_string(i));
        ck_assert_str_ne(mp_status_string(i), "unknown status");
        for (int j = 0; j < i; j++) ck_assert_str_ne(mp_status_string(i), mp_status_string(j));
    }
    ck_assert_str_eq(mp_status_string(-1), "unknown status");
    ck_assert_str_eq(mp_status_string(MP_STATUS_COUNT_), "unknown status");
    ck_assert_str_eq(mp_status_string(MP_OK), "success");
}
END_TEST

START_TEST(last_error_is_set_and_cleared)
{
    mp_clear_error();
    ck_assert_str_eq(mp_last_error(), "");
    MP_CK_STATUS(mp_config_create(NULL), MP_ERR_NULL_POINTER);
    MP_CK_ERROR_MENTIONS("mp_config_create");
    MP_CK_ERROR_MENTIONS("out");
    mp_clear_error();
    ck_assert_str_eq(mp_last_error(), "");
}
END_TEST

/* ---- allocator ------------------------------------------------------------ */
static void plain_free(void *p, void *ud) { (void)ud; free(p); }

START_TEST(allocator_rejects_half_pair)
{
    MP_CK_STATUS(mp_set_allocator(NULL, plain_free, NULL), MP_ERR_INVALID_ARGUMENT);
    MP_CK_ERROR_MENTIONS("both");
}
END_TEST

START_TEST(allocator_refused_while_objects_live)
{
    mp_config *c;
    MP_CK_OK(mp_config_create(&c));
    ck_assert_int_eq(mp_live_allocations(), 1);
    MP_CK_STATUS(mp_set_allocator(NULL, NULL, NULL), MP_ERR_STATE);
    MP_CK_ERROR_MENTIONS("still live");
    mp_config_destroy(c);
    ck_assert_int_eq(mp_live_allocations(), 0);
    MP_CK_OK(mp_set_allocator(NULL, NULL, NULL));
}
END_TEST

START_TEST(allocation_failure_is_reported)
{
    mp_test_install_failing_allocator();
    mp_test_fail_after(0);
    mp_config *c = (mp_config *)0x1;
    MP_CK_STATUS(mp_config_create(&c), MP_ERR_OUT_OF_MEMORY);
    ck_assert_ptr_eq(c, (mp_config *)0x1); /* out untouched on failure */
    mp_test_alloc_reset();
    MP_CK_OK(mp_config_create(&c));
    mp_config *c2 = NULL;
    mp_test_fail_after(0);
    MP_CK_STATUS(mp_config_clone(&c2, c), MP_ERR_OUT_OF_MEMORY);
    ck_assert_ptr_null(c2);
    mp_test_alloc_reset();
    mp_config_destroy(c);
    ck_assert_int_eq(mp_live_allocations(), 0);
    MP_CK_OK(mp_set_allocator(NULL, NULL, NULL));
}
END_TEST

START_TEST(calloc_overflow_is_null)
{
    ck_assert_ptr_null(mp__calloc(SIZE_MAX / 2, 4));
    size_t out = 0;
    ck_assert_int_eq(mp__mul_size(SIZE_MAX, 2, &out), -1);
    ck_assert_int_eq(mp__mul_size(3, 4, &out), 0);
    ck_assert_uint_eq(out, 12);
    mp__free(NULL); /* accepted */
}
END_TEST

/* ---- logging -------------------------------------------------------------- */
static int log_calls, log_last_level;
static char log_last[256];
static void log_cb(int32_t level, const char *msg, void *ud)
{
    *(int *)ud += 1;
    log_calls++;
    log_last_level = level;
    snprintf(log_last, sizeof log_last, "%s", msg);
}

START_TEST(log_callback_filters_by_level)
{
    int count = 0;
    MP_CK_STATUS(mp_set_log_callback(log_cb, 7, &count), MP_ERR_INVALID_ARGUMENT);
    MP_CK_STATUS(mp_set_log_callback(log_cb, -1, &count), MP_ERR_INVALID_ARGUMENT);
    mp__log(MP_LOG_ERROR, "not delivered %d", 1); /* no callback installed yet */
    ck_assert_int_eq(log_calls, 0);
    MP_CK_OK(mp_set_log_callback(log_cb, MP_LOG_WARN, &count));
    mp__log(MP_LOG_INFO, "filtered");
    mp__log(MP_LOG_WARN, "hello %d", 42);
    ck_assert_int_eq(count, 1);
    ck_assert_int_eq(log_last_level, MP_LOG_WARN);
    ck_assert_str_eq(log_last, "hello 42");
    MP_CK_OK(mp_set_log_callback(NULL, MP_LOG_INFO, NULL));
    mp__log(MP_LOG_ERROR, "silenced");
    ck_assert_int_eq(count, 1);
}
END_TEST

/* ---- BLAS info ------------------------------------------------------------ */
START_TEST(blas_info_is_available)
{
    ck_assert_ptr_nonnull(mp_blas_config());
    ck_assert_ptr_nonnull(mp_blas_corename());
    ck_assert_int_gt((int)strlen(mp_blas_corename()), 0);
    ck_assert_int_ge(mp_blas_num_threads(), 1);
}
END_TEST

/* ---- config ----------------------------------------------------------------- */
START_TEST(config_defaults_set_get)
{
    mp_config *c;
    MP_CK_OK(mp_config_create(&c));
    int64_t v = -1;
    MP_CK_OK(mp_config_get_int(c, MP_CFG_THREADS, &v));
    ck_assert_int_eq(v, 1);
    ck_assert_int_eq(mp_config_is_set(c, MP_CFG_THREADS), 0);
    MP_CK_OK(mp_config_set_int(c, MP_CFG_THREADS, 4));
    MP_CK_OK(mp_config_get_int(c, MP_CFG_THREADS, &v));
    ck_assert_int_eq(v, 4);
    ck_assert_int_eq(mp_config_is_set(c, MP_CFG_THREADS), 1);
    mp_config *d;
    MP_CK_OK(mp_config_clone(&d, c));
    MP_CK_OK(mp_config_set_int(c, MP_CFG_THREADS, 2));
    MP_CK_OK(mp_config_get_int(d, MP_CFG_THREADS, &v));
    ck_assert_int_eq(v, 4);
    mp_config_destroy(c);
    mp_config_destroy(d);
    mp_config_destroy(NULL);
}
END_TEST

START_TEST(config_bad_inputs_leave_it_unchanged)
{
    mp_config *c;
    MP_CK_OK(mp_config_create(&c));
    MP_CK_OK(mp_config_set_int(c, MP_CFG_THREADS, 3));
    MP_CK_STATUS(mp_config_set_int(c, MP_CFG_THREADS, 0), MP_ERR_RANGE);
    MP_CK_ERROR_MENTIONS("threads");
    ck_assert_ptr_nonnull(strstr(mp_config_error(c), "got 0"));
    MP_CK_STATUS(mp_config_set_int(c, MP_CFG_THREADS, 1000), MP_ERR_RANGE);
    MP_CK_STATUS(mp_config_set_int(c, 99999, 1), MP_ERR_NOT_FOUND);
    MP_CK_ERROR_MENTIONS("99999");
    MP_CK_STATUS(mp_config_set_float(c, MP_CFG_THREADS, 1.0), MP_ERR_INVALID_ARGUMENT);
    MP_CK_STATUS(mp_config_set_int(NULL, MP_CFG_THREADS, 1), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_config_get_int(c, MP_CFG_THREADS, NULL), MP_ERR_NULL_POINTER);
    MP_CK_STATUS(mp_config_get_float(c, MP_CFG_THREADS, NULL), MP_ERR_NULL_POINTER);
    double f;
    MP_CK_STATUS(mp_config_get_float(c, MP_CFG_THREADS, &f), MP_ERR_INVALID_ARGUMENT);
    int64_t v;
    MP_CK_OK(mp_config_get_int(c, MP_CFG_THREADS, &v));
    ck_assert_int_eq(v, 3);
    mp_config_destroy(c);
}
END_TEST

START_TEST(config_float_keys_reject_nonfinite)
{
    /* Find any float key registered by a module; skip silently only if the
     * build has none (the core module has none of its own). */
    int32_t key = 0;
    for (int32_t k = 1; k < 1000 && !key; k++)
        if (mp_config_key_type(k) == MP_CFG_TYPE_FLOAT) key = k;
    if (!key) return;
    mp_config *c;
    MP_CK_OK(mp_config_create(&c));
    MP_CK_STATUS(mp_config_set_float(c, key, NAN), MP_ERR_NOT_FINITE);
    MP_CK_STATUS(mp_config_set_float(c, key, INFINITY), MP_ERR_NOT_FINITE);
    ck_assert_int_eq(mp_config_is_set(c, key), 0);
    mp_config_destroy(c);
}
END_TEST

START_TEST(config_key_names_round_trip)
{
    int n = 0;
    for (int32_t k = 1; k < 1000; k++) {
        const char *name = mp_config_key_name(k);
        if (!name) continue;
        n++;
        int32_t back = -1;
        MP_CK_OK(mp_config_key_by_name(name, &back));
        ck_assert_int_eq(back, k);
        ck_assert(mp_config_key_type(k) == MP_CFG_TYPE_INT || mp_config_key_type(k) == MP_CFG_TYPE_FLOAT);
    }
    ck_assert_int_ge(n, 2);
    int32_t out;
    MP_CK_STATUS(mp_config_key_by_name("no.such.key", &out), MP_ERR_NOT_FOUND);
    MP_CK_ERROR_MENTIONS("no.such.key");
    ck_assert_ptr_null(mp_config_key_name(0));
    ck_assert_int_eq(mp_config_key_type(-5), 0);
}
END_TEST

/* ---- RNG -------------------------------------------------------------------- */
START_TEST(rng_streams_are_pure_and_distinct)
{
    mp__rng a, b, c;
    mp__rng_seed(&a, 42, 7);
    mp__rng_seed(&b, 42, 7);
    mp__rng_seed(&c, 42, 8);
    int same_c = 0;
    for (int i = 0; i < 100; i++) {
        uint64_t x = mp__rng_next(&a);
        ck_assert_uint_eq(x, mp__rng_next(&b));
        same_c += x == mp__rng_next(&c);
    }
    ck_assert_int_eq(same_c, 0);
    /* uniform mean and normal moments, loose 5-sigma bounds */
    double s = 0, s1 = 0, s2 = 0;
    const int n = 100000;
    for (int i = 0; i < n; i++) {
        double u = mp__rng_uniform(&a);
        ck_assert(u >= 0.0 && u < 1.0);
        s += u;
        double z = mp__rng_normal(&a);
        s1 += z;
        s2 += z * z;
    }
    ck_assert(fabs(s / n - 0.5) < 5 * sqrt(1.0 / 12 / n));
    ck_assert(fabs(s1 / n) < 5 * sqrt(1.0 / n));
    ck_assert(fabs(s2 / n - 1.0) < 5 * sqrt(2.0 / n));
    int counts[3] = {0, 0, 0};
    for (int i = 0; i < 30000; i++) counts[mp__rng_below(&a, 3)]++;
    for (int i = 0; i < 3; i++) ck_assert(abs(counts[i] - 10000) < 500);
}
END_TEST

/* ---- ABI discipline ---------------------------------------------------------- */
#define MAX_SYMS 2048
typedef struct {
    int n;
    char name[MAX_SYMS][96];
} symlist;

static int cmp_str(const void *a, const void *b) { return strcmp(a, b); }
static void sort_syms(symlist *s) { qsort(s->name, (size_t)s->n, sizeof s->name[0], cmp_str); }
static void add_sym(symlist *s, const char *name, size_t len)
{
    ck_assert_int_lt(s->n, MAX_SYMS);
    ck_assert_uint_lt(len, sizeof s->name[0]);
    memcpy(s->name[s->n], name, len);
    s->name[s->n][len] = '\0';
    s->n++;
}

/* Functions declared with MP_API in one header: the identifier just before
 * the first '(' on the MP_API line. */
static void header_syms(const char *path, symlist *s)
{
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        char *p = strstr(line, "MP_API ");
        if (!p || strstr(line, "#") != NULL) continue;
        char *paren = strchr(p, '(');
        ck_assert_msg(paren != NULL, "MP_API declaration without '(' on its line in %s: %s", path, line);
        char *end = paren;
        while (end > p && isspace((unsigned char)end[-1])) end--;
        char *start = end;
        while (start > p && (isalnum((unsigned char)start[-1]) || start[-1] == '_')) start--;
        add_sym(s, start, (size_t)(end - start));
    }
    fclose(f);
}

static void all_header_syms(symlist *s)
{
    FILE *ls = popen("ls " MP_SOURCE_DIR "/include/metaprompt.h " MP_SOURCE_DIR "/include/metaprompt/*.h", "r");
    ck_assert_ptr_nonnull(ls);
    char path[1024];
    while (fgets(path, sizeof path, ls)) {
        path[strcspn(path, "\n")] = '\0';
        header_syms(path, s);
    }
    pclose(ls);
}

START_TEST(symbols_headers_map_and_nm_agree)
{
    static symlist hdr, map, dyn;
    hdr.n = map.n = dyn.n = 0;
    all_header_syms(&hdr);

    FILE *f = fopen(MP_BUILD_DIR "/metaprompt.map", "r");
    ck_assert_msg(f != NULL, "no version map in the build directory");
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        char *p = line;
        while (isspace((unsigned char)*p)) p++;
        if (strncmp(p, "mp_", 3) != 0) continue;
        add_sym(&map, p, strcspn(p, ";\n"));
    }
    fclose(f);

    FILE *nm = popen("nm -D --defined-only " MP_BUILD_DIR "/libmetaprompt.so", "r");
    ck_assert_ptr_nonnull(nm);
    while (fgets(line, sizeof line, nm)) {
        char addr[64], type[8], name[512];
        if (sscanf(line, "%63s %7s %511s", addr, type, name) != 3) continue;
        char *at = strstr(name, "@@");
        if (strcmp(type, "A") == 0) continue; /* the version node itself */
        ck_assert_msg(at != NULL, "unversioned exported symbol %s", name);
        char want[64];
        snprintf(want, sizeof want, "@@METAPROMPT_%d", MP_VERSION_MAJOR);
        ck_assert_msg(strcmp(at, want) == 0, "symbol %s has version %s, expected %s", name, at, want);
        ck_assert_msg(strncmp(name, "mp_", 3) == 0, "exported symbol without mp_ prefix: %s", name);
        ck_assert_msg(strncmp(name, "mp__", 4) != 0, "internal symbol exported: %s", name);
        add_sym(&dyn, name, (size_t)(at - name));
    }
    ck_assert_int_eq(pclose(nm), 0);

    sort_syms(&hdr);
    sort_syms(&map);
    sort_syms(&dyn);
    ck_assert_int_gt(hdr.n, 10);
    for (int i = 0; i < hdr.n || i < map.n || i < dyn.n; i++) {
        const char *h = i < hdr.n ? hdr.name[i] : "(none)";
        const char *m = i < map.n ? map.name[i] : "(none)";
        const char *d = i < dyn.n ? dyn.name[i] : "(none)";
        ck_assert_msg(strcmp(h, m) == 0 && strcmp(m, d) == 0,
                      "symbol lists differ at %d: header=%s map=%s nm=%s", i, h, m, d);
    }
}
END_TEST

START_TEST(soname_is_major)
{
    FILE *p = popen("objdump -p " MP_BUILD_DIR "/libmetaprompt.so | awk '/SONAME/ {print $2}'", "r");
    ck_assert_ptr_nonnull(p);
    char got[256] = "";
    ck_assert_ptr_nonnull(fgets(got, sizeof got, p));
    pclose(p);
    got[strcspn(got, "\n")] = '\0';
    char want[64];
    snprintf(want, sizeof want, "libmetaprompt.so.%d", MP_VERSION_MAJOR);
    ck_assert_str_eq(got, want);
}
END_TEST

START_TEST(headers_compile_alone)
{
    const char *const compilers[] = {
        "cc -std=c99 -x c", "cc -std=c11 -x c", "c++ -std=c++11 -x c++", "c++ -std=c++17 -x c++",
    };
    FILE *ls = popen("cd " MP_SOURCE_DIR "/include && ls metaprompt.h metaprompt/*.h", "r");
    ck_assert_ptr_nonnull(ls);
    char hdr[512];
    int n = 0;
    while (fgets(hdr, sizeof hdr, ls)) {
        hdr[strcspn(hdr, "\n")] = '\0';
        for (size_t c = 0; c < sizeof compilers / sizeof compilers[0]; c++) {
            char cmd[2048];
            snprintf(cmd, sizeof cmd,
                     "%s -Wall -Wextra -pedantic -Werror -fsyntax-only -I" MP_SOURCE_DIR
                     "/include -include %s /dev/null 2>&1",
                     compilers[c], hdr);
            FILE *out = popen(cmd, "r");
            ck_assert_ptr_nonnull(out);
            char msg[2048] = "";
            size_t got = fread(msg, 1, sizeof msg - 1, out);
            msg[got] = '\0';
            int rc = pclose(out);
            ck_assert_msg(rc == 0, "header %s fails with '%s': %s", hdr, compilers[c], msg);
        }
        n++;
    }
    pclose(ls);
    ck_assert_int_ge(n, 2);
}
END_TEST

/* Every configuration key's type, default and range, pinned: narrowing a
 * range breaks callers (ABI.md), and widening one must be deliberate (a
 * range is also what checkpoints are checked against). Through the public
 * API: the default read back, both ends accepted, one step beyond each end
 * MP_ERR_RANGE; and the table must list exactly the registered keys. */
static const struct {
    int32_t key, type;
    double def, min, max;
} pinned_keys[] = {
    {MP_CFG_SEED, MP_CFG_TYPE_INT, 0, 0, 9.2e18},
    {MP_CFG_THREADS, MP_CFG_TYPE_INT, 1, 1, 64},
    {MP_CFG_MODEL_KIND, MP_CFG_TYPE_INT, MP_MODEL_MLP, 1, 3},
    {MP_CFG_MODEL_INPUT_DIM, MP_CFG_TYPE_INT, 1, 1, 1 << 24},
    {MP_CFG_MODEL_OUTPUT_DIM, MP_CFG_TYPE_INT, 1, 1, 1 << 20},
    {MP_CFG_MODEL_TASK, MP_CFG_TYPE_INT, MP_TASK_AUTO, 0, 2},
    {MP_CFG_MODEL_PROMPT_LEN, MP_CFG_TYPE_INT, 0, 0, 4096},
    {MP_CFG_MODEL_PROMPT_DIM, MP_CFG_TYPE_INT, 0, 0, 1 << 24},
    {MP_CFG_MODEL_HIDDEN_LAYERS, MP_CFG_TYPE_INT, 2, 0, 64},
    {MP_CFG_MODEL_HIDDEN_WIDTH, MP_CFG_TYPE_INT, 40, 1, 1 << 16},
    {MP_CFG_MODEL_ACTIVATION, MP_CFG_TYPE_INT, MP_ACT_RELU, 1, 4},
    {MP_CFG_MODEL_IMAGE_HEIGHT, MP_CFG_TYPE_INT, 28, 1, 4096},
    {MP_CFG_MODEL_IMAGE_WIDTH, MP_CFG_TYPE_INT, 28, 1, 4096},
    {MP_CFG_MODEL_IMAGE_CHANNELS, MP_CFG_TYPE_INT, 1, 1, 1024},
    {MP_CFG_MODEL_PATCH, MP_CFG_TYPE_INT, 7, 1, 4096},
    {MP_CFG_MODEL_VOCAB, MP_CFG_TYPE_INT, 0, 0, 1 << 24},
    {MP_CFG_MODEL_SEQ_LEN, MP_CFG_TYPE_INT, 0, 0, 1 << 16},
    {MP_CFG_MODEL_D_MODEL, MP_CFG_TYPE_INT, 64, 1, 1 << 14},
    {MP_CFG_MODEL_LAYERS, MP_CFG_TYPE_INT, 2, 0, 64},
    {MP_CFG_MODEL_HEADS, MP_CFG_TYPE_INT, 4, 1, 256},
    {MP_CFG_MODEL_MLP_DIM, MP_CFG_TYPE_INT, 128, 1, 1 << 16},
    {MP_CFG_MODEL_CHANNELS, MP_CFG_TYPE_INT, 64, 1, 4096},
    {MP_CFG_MODEL_CONV_BLOCKS, MP_CFG_TYPE_INT, 4, 1, 16},
    {MP_CFG_MODEL_PROMPT_MODE, MP_CFG_TYPE_INT, MP_PROMPT_INPUT_CHANNELS, 1, 2},
    {MP_CFG_MODEL_INIT, MP_CFG_TYPE_INT, MP_INIT_HE, 0, 1},
    {MP_CFG_DATA_SCALE, MP_CFG_TYPE_INT, 1, 0, 1},
    {MP_CFG_DATA_CSV_HEADER, MP_CFG_TYPE_INT, 0, 0, 1},
    {MP_CFG_DATA_CSV_LABEL_COLUMN, MP_CFG_TYPE_INT, -1, -1, 1000000},
    {MP_CFG_DATA_CSV_REGRESSION, MP_CFG_TYPE_INT, 0, 0, 1},
    {MP_CFG_DATA_WAYS, MP_CFG_TYPE_INT, 5, 1, 100000},
    {MP_CFG_DATA_SHOTS, MP_CFG_TYPE_INT, 1, 1, 100000},
    {MP_CFG_DATA_QUERIES, MP_CFG_TYPE_INT, 15, 1, 100000},
    {MP_CFG_DATA_ROTATIONS, MP_CFG_TYPE_INT, 0, 0, 1},
    {MP_CFG_META_ALGORITHM, MP_CFG_TYPE_INT, MP_META_MAML, 1, 4},
    {MP_CFG_META_INNER_STEPS, MP_CFG_TYPE_INT, 1, 0, 10000},
    {MP_CFG_META_INNER_LR, MP_CFG_TYPE_FLOAT, 0.01, 0, 1e6},
    {MP_CFG_META_SCOPE, MP_CFG_TYPE_INT, MP_SCOPE_PROMPT, 1, 3},
    {MP_CFG_META_LEARN, MP_CFG_TYPE_INT, 0, 0, 15},
    {MP_CFG_META_OPTIMIZER, MP_CFG_TYPE_INT, MP_OPT_ADAM, 1, 3},
    {MP_CFG_META_OUTER_LR, MP_CFG_TYPE_FLOAT, 1e-3, 0, 1e6},
    {MP_CFG_META_MOMENTUM, MP_CFG_TYPE_FLOAT, 0, 0, 0.999999},
    {MP_CFG_META_BETA1, MP_CFG_TYPE_FLOAT, 0.9, 0, 0.999999},
    {MP_CFG_META_BETA2, MP_CFG_TYPE_FLOAT, 0.999, 0, 0.999999},
    {MP_CFG_META_EPSILON, MP_CFG_TYPE_FLOAT, 1e-8, 1e-30, 1},
    {MP_CFG_META_WEIGHT_DECAY, MP_CFG_TYPE_FLOAT, 0, 0, 1e6},
    {MP_CFG_META_CLIP_NORM, MP_CFG_TYPE_FLOAT, 0, 0, 1e30},
    {MP_CFG_META_EVAL_INNER_STEPS, MP_CFG_TYPE_INT, -1, -1, 10000},
};

START_TEST(config_key_table_is_pinned)
{
    size_t n = sizeof pinned_keys / sizeof pinned_keys[0];
    for (size_t i = 0; i < n; i++) {
        int32_t key = pinned_keys[i].key;
        double lo = pinned_keys[i].min, hi = pinned_keys[i].max;
        const char *name = mp_config_key_name(key);
        ck_assert_msg(name != NULL, "key %d is not registered", (int)key);
        ck_assert_msg(mp_config_key_type(key) == pinned_keys[i].type, "%s: type", name);
        mp_config *c;
        MP_CK_OK(mp_config_create(&c));
        if (pinned_keys[i].type == MP_CFG_TYPE_INT) {
            int64_t v, lo_i = (int64_t)lo, hi_i = (int64_t)hi;
            MP_CK_OK(mp_config_get_int(c, key, &v));
            ck_assert_msg(v == (int64_t)pinned_keys[i].def, "%s: default %lld", name, (long long)v);
            ck_assert_msg(mp_config_set_int(c, key, lo_i) == MP_OK, "%s: minimum %lld refused", name, (long long)lo_i);
            ck_assert_msg(mp_config_set_int(c, key, hi_i) == MP_OK, "%s: maximum %lld refused", name, (long long)hi_i);
            ck_assert_msg(mp_config_set_int(c, key, lo_i - 1) == MP_ERR_RANGE, "%s: below minimum accepted", name);
            /* seed: the next int64 whose double is above 9.2e18 */
            int64_t over = hi_i + (hi > 1e15 ? (int64_t)1 << 12 : 1);
            ck_assert_msg(mp_config_set_int(c, key, over) == MP_ERR_RANGE, "%s: %lld above maximum accepted", name,
                          (long long)over);
        } else {
            double v;
            MP_CK_OK(mp_config_get_float(c, key, &v));
            ck_assert_msg(v == pinned_keys[i].def, "%s: default %g", name, v);
            ck_assert_msg(mp_config_set_float(c, key, lo) == MP_OK, "%s: minimum refused", name);
            ck_assert_msg(mp_config_set_float(c, key, hi) == MP_OK, "%s: maximum refused", name);
            ck_assert_msg(mp_config_set_float(c, key, lo > 0 ? lo / 2 : -1e-300) == MP_ERR_RANGE,
                          "%s: below minimum accepted", name);
            ck_assert_msg(mp_config_set_float(c, key, nextafter(hi, INFINITY)) == MP_ERR_RANGE,
                          "%s: above maximum accepted", name);
        }
        mp_config_destroy(c);
    }
    /* ... and the registry holds no key the table lacks */
    const mp__key_info *tables[] = {mp__keys_core, mp__keys_model, mp__keys_data, mp__keys_meta};
    size_t registered = 0;
    for (size_t t = 0; t < sizeof tables / sizeof tables[0]; t++)
        for (const mp__key_info *e = tables[t]; e->key != 0; e++) {
            int found = 0;
            for (size_t i = 0; i < n; i++) found |= pinned_keys[i].key == e->key;
            ck_assert_msg(found, "key '%s' (%d) is registered but not pinned here", e->name, (int)e->key);
            registered++;
        }
    ck_assert_uint_eq(registered, n);
    mp_clear_error();
    ck_assert_int_eq(mp_live_allocations(), 0);
}
END_TEST

Suite *mp_test_core_suite(void)
{
    Suite *s = suite_create("core");
    TCase *t = tcase_create("api");
    tcase_add_test(t, version_matches_macros);
    tcase_add_test(t, status_strings_are_distinct_and_total);
    tcase_add_test(t, last_error_is_set_and_cleared);
    tcase_add_test(t, allocator_rejects_half_pair);
    tcase_add_test(t, allocator_refused_while_objects_live);
    tcase_add_test(t, allocation_failure_is_reported);
    tcase_add_test(t, calloc_overflow_is_null);
    tcase_add_test(t, log_callback_filters_by_level);
    tcase_add_test(t, blas_info_is_available);
    tcase_add_test(t, config_defaults_set_get);
    tcase_add_test(t, config_bad_inputs_leave_it_unchanged);
    tcase_add_test(t, config_float_keys_reject_nonfinite);
    tcase_add_test(t, config_key_names_round_trip);
    tcase_add_test(t, config_key_table_is_pinned);
    tcase_add_test(t, rng_streams_are_pure_and_distinct);
    suite_add_tcase(s, t);
    TCase *abi = tcase_create("abi");
    tcase_set_timeout(abi, 120);
    tcase_add_test(abi, symbols_headers_map_and_nm_agree);
    tcase_add_test(abi, soname_is_major);
    tcase_add_test(abi, headers_compile_alone);
    suite_add_tcase(s, abi);
    return s;
}
