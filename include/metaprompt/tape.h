/* libmetaprompt — tape API (filled in by the tape issue). Include metaprompt.h. */
#ifndef METAPROMPT_TAPE_H
#define METAPROMPT_TAPE_H
#include "metaprompt/core.h"
#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif
#endif
