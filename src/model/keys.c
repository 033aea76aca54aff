/* Configuration keys owned by the model module (see include/metaprompt/model.h). */
#include "core/internal.h"

const mp__key_info mp__keys_model[] = {
    {0, NULL, 0, 0, 0, 0},
};
