/* libmetaprompt — data API (filled in by the data issue). Include metaprompt.h. */
#ifndef METAPROMPT_DATA_H
#define METAPROMPT_DATA_H
#include "metaprompt/core.h"
#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif
#endif
