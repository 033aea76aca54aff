/* The one Check runner. Usage: check_runner [suite-name ...]
 * A helper mode for the model tests' fresh-process checkpoint check:
 * check_runner --predict-from-checkpoint CKPT X N OUT (runs no suite). */
#include "test_util.h"

#include <stdlib.h>

static void *fail_alloc(size_t size, void *ud);
static void fail_free(void *p, void *ud);
static long g_count, g_fail_at = -1;

static void *fail_alloc(size_t size, void *ud)
{
    (void)ud;
    long n = g_count++;
    if (g_fail_at >= 0 && n >= g_fail_at) return NULL;
    return aligned_alloc(64, (size + 63) & ~(size_t)63);
}
static void fail_free(void *p, void *ud) { (void)ud; free(p); }

void mp_test_install_failing_allocator(void)
{
    g_count = 0;
    g_fail_at = -1;
    ck_assert_int_eq(mp_set_allocator(fail_alloc, fail_free, NULL), MP_OK);
}
void mp_test_fail_after(long n) { g_count = 0; g_fail_at = n; }
void mp_test_alloc_reset(void) { g_fail_at = -1; }
long mp_test_alloc_count(void) { return g_count; }

const char *mp_test_path(const char *rel)
{
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s/%s", MP_SOURCE_DIR, rel);
    return buf;
}

void mp_test_record_log(int32_t level, const char *msg, void *ud)
{
    mp_test_log *l = ud;
    l->count++;
    l->level = level;
    snprintf(l->msg, sizeof l->msg, "%s", msg);
}

typedef struct {
    const char *name;
    Suite *(*make)(void);
} suite_entry;

static const suite_entry suites[] = {
    {"core", mp_test_core_suite},   {"tape", mp_test_tape_suite},
    {"model", mp_test_model_suite}, {"data", mp_test_data_suite},
    {"meta", mp_test_meta_suite},   {"tape_fused", mp_test_tape_fused_suite},
    {"names", mp_test_arg_names_suite},
};

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--predict-from-checkpoint") == 0)
        return mp_test_predict_from_checkpoint_main(argc - 2, argv + 2);
    SRunner *sr = NULL;
    size_t n = sizeof suites / sizeof suites[0];
    for (size_t i = 0; i < n; i++) {
        int wanted = argc <= 1;
        for (int a = 1; a < argc; a++)
            if (strcmp(argv[a], suites[i].name) == 0) wanted = 1;
        if (!wanted) continue;
        if (!sr)
            sr = srunner_create(suites[i].make());
        else
            srunner_add_suite(sr, suites[i].make());
    }
    if (!sr) {
        fprintf(stderr, "check_runner: no suite matches the arguments\n");
        return 2;
    }
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
