/* Tests of the model module (filled in by the model issue). */
#include "test_util.h"

Suite *mp_test_model_suite(void)
{
    return suite_create("model");
}
