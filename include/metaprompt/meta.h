/* libmetaprompt — meta API (filled in by the meta issue). Include metaprompt.h. */
#ifndef METAPROMPT_META_H
#define METAPROMPT_META_H
#include "metaprompt/core.h"
#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif
#endif
