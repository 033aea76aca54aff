/* Configuration keys owned by the model module (see include/metaprompt/model.h). */
#include "core/internal.h"

const mp__key_info mp__keys_model[] = {
    {MP_CFG_MODEL_KIND, "model.kind", MP_CFG_TYPE_INT, MP_MODEL_MLP, 1, 3},
    {MP_CFG_MODEL_INPUT_DIM, "model.input_dim", MP_CFG_TYPE_INT, 1, 1, 1 << 24},
    {MP_CFG_MODEL_OUTPUT_DIM, "model.output_dim", MP_CFG_TYPE_INT, 1, 1, 1 << 20},
    {MP_CFG_MODEL_TASK, "model.task", MP_CFG_TYPE_INT, MP_TASK_AUTO, 0, 2},
    {MP_CFG_MODEL_PROMPT_LEN, "model.prompt_len", MP_CFG_TYPE_INT, 0, 0, 4096},
    {MP_CFG_MODEL_PROMPT_DIM, "model.prompt_dim", MP_CFG_TYPE_INT, 0, 0, 1 << 24},
    {MP_CFG_MODEL_HIDDEN_LAYERS, "model.hidden_layers", MP_CFG_TYPE_INT, 2, 0, 64},
    {MP_CFG_MODEL_HIDDEN_WIDTH, "model.hidden_width", MP_CFG_TYPE_INT, 40, 1, 1 << 16},
    {MP_CFG_MODEL_ACTIVATION, "model.activation", MP_CFG_TYPE_INT, MP_ACT_RELU, 1, 4},
    {MP_CFG_MODEL_IMAGE_HEIGHT, "model.image_height", MP_CFG_TYPE_INT, 28, 1, 4096},
    {MP_CFG_MODEL_IMAGE_WIDTH, "model.image_width", MP_CFG_TYPE_INT, 28, 1, 4096},
    {MP_CFG_MODEL_IMAGE_CHANNELS, "model.image_channels", MP_CFG_TYPE_INT, 1, 1, 1024},
    {MP_CFG_MODEL_PATCH, "model.patch", MP_CFG_TYPE_INT, 7, 1, 4096},
    {MP_CFG_MODEL_VOCAB, "model.vocab", MP_CFG_TYPE_INT, 0, 0, 1 << 24},
    {MP_CFG_MODEL_SEQ_LEN, "model.seq_len", MP_CFG_TYPE_INT, 0, 0, 1 << 16},
    {MP_CFG_MODEL_D_MODEL, "model.d_model", MP_CFG_TYPE_INT, 64, 1, 1 << 14},
    {MP_CFG_MODEL_LAYERS, "model.layers", MP_CFG_TYPE_INT, 2, 0, 64},
    {MP_CFG_MODEL_HEADS, "model.heads", MP_CFG_TYPE_INT, 4, 1, 256},
    {MP_CFG_MODEL_MLP_DIM, "model.mlp_dim", MP_CFG_TYPE_INT, 128, 1, 1 << 16},
    {MP_CFG_MODEL_CHANNELS, "model.channels", MP_CFG_TYPE_INT, 64, 1, 4096},
    {MP_CFG_MODEL_CONV_BLOCKS, "model.conv_blocks", MP_CFG_TYPE_INT, 4, 1, 16},
    {MP_CFG_MODEL_PROMPT_MODE, "model.prompt_mode", MP_CFG_TYPE_INT, MP_PROMPT_INPUT_CHANNELS, 1, 2},
    {MP_CFG_MODEL_INIT, "model.init", MP_CFG_TYPE_INT, MP_INIT_HE, 0, 1},
    {0, NULL, 0, 0, 0, 0},
};
