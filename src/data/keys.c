/* Configuration keys owned by the data module (see include/metaprompt/data.h). */
#include "core/internal.h"

const mp__key_info mp__keys_data[] = {
    {0, NULL, 0, 0, 0, 0},
};
