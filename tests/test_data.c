/* Tests of the data module (filled in by the data issue). */
#include "test_util.h"

Suite *mp_test_data_suite(void)
{
    return suite_create("data");
}
