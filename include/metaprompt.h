/*
 * libmetaprompt — prompt-tuned meta-learning in C.
 * The one public header: include this (it pulls in the sub-headers).
 * Documentation of every function lives with its declaration; the guide is
 * docs/GUIDE.md and the ABI policy docs/ABI.md.
 */
#ifndef METAPROMPT_H
#define METAPROMPT_H

#include "metaprompt/core.h"
#include "metaprompt/tape.h"
#include "metaprompt/model.h"
#include "metaprompt/data.h"
#include "metaprompt/meta.h"

#endif
