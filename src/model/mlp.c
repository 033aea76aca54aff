/* Prompted MLP: each input row is [x, flattened prompt]; hidden layers of
 * one width and activation; a linear head (regression or logits). Weights
 * are stored in x out so a layer is x @ W + b with no transpose. */
#include "model/model_priv.h"

#include <math.h>
#include <stdio.h>

mp_status mp__mlp_layout(mp_model *m)
{
    m->in_dim = (int32_t)mp__mcfg(m, MP_CFG_MODEL_INPUT_DIM);
    if (m->d == 0) m->d = m->in_dim;
    int64_t width = mp__mcfg(m, MP_CFG_MODEL_HIDDEN_WIDTH), layers = mp__mcfg(m, MP_CFG_MODEL_HIDDEN_LAYERS);
    int64_t act = mp__mcfg(m, MP_CFG_MODEL_ACTIVATION);
    int64_t fan = (int64_t)m->in_dim + (int64_t)m->P * m->d;
    MP_REQUIRE(fan <= INT32_MAX, NULL, MP_ERR_RANGE,
               "mp_model_create: input_dim + prompt_len * prompt_dim = %lld is too large", (long long)fan);
    /* He init keeps activations' scale through relu/gelu; Xavier suits the
     * saturating tanh/sigmoid and the linear head. */
    int he = act == MP_ACT_RELU || act == MP_ACT_GELU;
    /* MP_INIT_TORCH: PyTorch's nn.Linear default, U(+-1/sqrt(fan_in)) for
     * weights and biases alike, which the MAML sinusoid setup assumes. */
    int torch = mp__mcfg(m, MP_CFG_MODEL_INIT) == MP_INIT_TORCH;
    int32_t winit = torch ? MP__INIT_UNIFORM : MP__INIT_NORMAL;
    int32_t binit = torch ? MP__INIT_UNIFORM : MP__INIT_ZERO;
    char name[48];
    for (int64_t l = 0; l < layers; l++) {
        double std = torch ? 1.0 / sqrt((double)fan)
                           : he ? sqrt(2.0 / (double)fan) : sqrt(2.0 / (double)(fan + width));
        snprintf(name, sizeof name, "fc%d.weight", (int)l);
        MP_TRY(mp__model_add_tensor(m, name, (int32_t)fan, (int32_t)width, MP__GROUP_BACKBONE, winit, std));
        snprintf(name, sizeof name, "fc%d.bias", (int)l);
        MP_TRY(mp__model_add_tensor(m, name, 1, (int32_t)width, MP__GROUP_BACKBONE, binit,
                                    torch ? std : 0.0));
        fan = width;
    }
    double hstd = torch ? 1.0 / sqrt((double)fan) : sqrt(2.0 / (double)(fan + m->out_dim));
    MP_TRY(mp__model_add_tensor(m, "head.weight", (int32_t)fan, m->out_dim, MP__GROUP_HEAD, winit, hstd));
    return mp__model_add_tensor(m, "head.bias", 1, m->out_dim, MP__GROUP_HEAD, binit, torch ? hstd : 0.0);
}

static mp_status activation(mp_tape *t, int64_t act, mp_var a, mp_var *out)
{
    switch (act) {
    case MP_ACT_TANH: return mp_tanh(t, a, out);
    case MP_ACT_GELU: return mp_gelu(t, a, out);
    case MP_ACT_SIGMOID: return mp_sigmoid(t, a, out);
    default: return mp_relu(t, a, out);
    }
}

/* h w + b as one variable (the bias added to the product's blocks in cache). */
static mp_status linear(mp_tape *t, mp_var h, mp_var w, mp_var b, mp_var *out)
{
    return mp__linear(t, h, w, b, 0, 0, out);
}

mp_status mp__mlp_forward(const mp_model *m, mp_tape *t, const mp_var *p, mp_var prompt, mp_var x,
                          int32_t n, mp_var *out)
{
    (void)n; /* the rows of x (the prompt row is repeated for each) */
    mp_var h = x;
    if (m->P > 0) {
        mp_var row;
        MP_TRY(mp_reshape(t, prompt, 1, m->P * m->d, &row));
        MP_TRY(mp__concat_bcast(t, x, row, &h)); /* the prompt row repeated for every example */
    }
    int64_t layers = mp__mcfg(m, MP_CFG_MODEL_HIDDEN_LAYERS), act = mp__mcfg(m, MP_CFG_MODEL_ACTIVATION);
    for (int64_t l = 0; l < layers; l++) {
        mp_var z;
        MP_TRY(linear(t, h, p[2 * l], p[2 * l + 1], &z));
        MP_TRY(activation(t, act, z, &h));
    }
    return linear(t, h, p[2 * layers], p[2 * layers + 1], out);
}
