/* libmetaprompt — model API (filled in by the model issue). Include metaprompt.h. */
#ifndef METAPROMPT_MODEL_H
#define METAPROMPT_MODEL_H
#include "metaprompt/core.h"
#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif
#endif
