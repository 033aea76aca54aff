/* Tests of the meta module (filled in by the meta issue). */
#include "test_util.h"

Suite *mp_test_meta_suite(void)
{
    return suite_create("meta");
}
