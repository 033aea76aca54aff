/* Configuration keys owned by the meta module (see include/metaprompt/meta.h). */
#include "core/internal.h"

const mp__key_info mp__keys_meta[] = {
    {0, NULL, 0, 0, 0, 0},
};
