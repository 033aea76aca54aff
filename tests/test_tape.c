/* Tests of the tape module (filled in by the tape issue). */
#include "test_util.h"

Suite *mp_test_tape_suite(void)
{
    return suite_create("tape");
}
