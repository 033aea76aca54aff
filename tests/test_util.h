/* Shared helpers for the Check test suites. */
#ifndef MP_TEST_UTIL_H
#define MP_TEST_UTIL_H

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "metaprompt.h"

/* Suites, one per module; check_main.c runs them all or the ones named on
 * the command line. */
Suite *mp_test_core_suite(void);
Suite *mp_test_tape_suite(void);
Suite *mp_test_model_suite(void);
Suite *mp_test_data_suite(void);
Suite *mp_test_meta_suite(void);
Suite *mp_test_tape_fused_suite(void); /* test_tape_fused.c */
Suite *mp_test_arg_names_suite(void);  /* test_arg_names.c: suite "names" */

/* Asserts a call returns the expected status, printing the message if not. */
#define MP_CK_STATUS(call, expected)                                               \
    do {                                                                           \
        mp_status st_ = (call);                                                    \
        ck_assert_msg(st_ == (expected), "%s returned %d (%s), expected %d: %s",   \
                      #call, (int)st_, mp_status_string(st_), (int)(expected),     \
                      mp_last_error());                                            \
    } while (0)
#define MP_CK_OK(call) MP_CK_STATUS(call, MP_OK)

/* Asserts the thread-local message mentions a substring. */
#define MP_CK_ERROR_MENTIONS(substr)                                               \
    ck_assert_msg(strstr(mp_last_error(), (substr)) != NULL,                       \
                  "last error '%s' does not mention '%s'", mp_last_error(), (substr))

/* Allocation-failure injection: after mp_test_fail_after(n), the n-th next
 * allocation (0-based) and all later ones fail, until mp_test_alloc_reset().
 * Install with mp_test_install_failing_allocator() while no object exists. */
void mp_test_install_failing_allocator(void);
void mp_test_fail_after(long n);
void mp_test_alloc_reset(void);
long mp_test_alloc_count(void);

/* Helper mode of the runner (tests/test_model.c): argv = CKPT X N OUT;
 * loads the checkpoint in this fresh process, predicts on the N examples
 * in X (raw floats) and writes the raw outputs to OUT. Returns the exit
 * code (0 on success). */
int mp_test_predict_from_checkpoint_main(int argc, char **argv);

/* A log callback (mp_set_log_callback) that counts messages and keeps the
 * last one's level and text in the mp_test_log it is given. */
typedef struct {
    int count, level;
    char msg[512];
} mp_test_log;
void mp_test_record_log(int32_t level, const char *msg, void *ud);

/* Path of a file in the source tree (static buffer, valid until next call). */
const char *mp_test_path(const char *rel);

#endif
