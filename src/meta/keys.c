/* Configuration keys owned by the meta module (see include/metaprompt/meta.h). */
#include "core/internal.h"

const mp__key_info mp__keys_meta[] = {
    {MP_CFG_META_ALGORITHM, "meta.algorithm", MP_CFG_TYPE_INT, MP_META_MAML, 1, 4},
    {MP_CFG_META_INNER_STEPS, "meta.inner_steps", MP_CFG_TYPE_INT, 1, 0, 10000},
    {MP_CFG_META_INNER_LR, "meta.inner_lr", MP_CFG_TYPE_FLOAT, 0.01, 0, 1e6},
    {MP_CFG_META_SCOPE, "meta.scope", MP_CFG_TYPE_INT, MP_SCOPE_PROMPT, 1, 3},
    {MP_CFG_META_LEARN, "meta.learn", MP_CFG_TYPE_INT, 0, 0, 15},
    {MP_CFG_META_OPTIMIZER, "meta.optimizer", MP_CFG_TYPE_INT, MP_OPT_ADAM, 1, 3},
    {MP_CFG_META_OUTER_LR, "meta.outer_lr", MP_CFG_TYPE_FLOAT, 1e-3, 0, 1e6},
    {MP_CFG_META_MOMENTUM, "meta.momentum", MP_CFG_TYPE_FLOAT, 0, 0, 0.999999},
    {MP_CFG_META_BETA1, "meta.beta1", MP_CFG_TYPE_FLOAT, 0.9, 0, 0.999999},
    {MP_CFG_META_BETA2, "meta.beta2", MP_CFG_TYPE_FLOAT, 0.999, 0, 0.999999},
    {MP_CFG_META_EPSILON, "meta.epsilon", MP_CFG_TYPE_FLOAT, 1e-8, 1e-30, 1},
    {MP_CFG_META_WEIGHT_DECAY, "meta.weight_decay", MP_CFG_TYPE_FLOAT, 0, 0, 1e6},
    {MP_CFG_META_CLIP_NORM, "meta.clip_norm", MP_CFG_TYPE_FLOAT, 0, 0, 1e30},
    {MP_CFG_META_EVAL_INNER_STEPS, "meta.eval_inner_steps", MP_CFG_TYPE_INT, -1, -1, 10000},
    {0, NULL, 0, 0, 0, 0},
};
