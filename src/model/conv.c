/* Prompted conv4 (MAML's backbone for 28x28 images): blocks of
 * [3x3 conv pad 1 -> per-example channel normalisation -> relu -> 2x2
 * max-pool], then a linear head. The normalisation is instance norm (each
 * example's channel map normalised on its own, learned per-channel scale
 * and shift): batch norm would leak statistics between the queries of a
 * batch. Odd maps are cropped by one row/column before pooling, as
 * PyTorch's floor-mode pooling does (28 -> 14 -> 7 -> 3 -> 1). */
#include "model/model_priv.h"

#include <math.h>
#include <stdio.h>

#define PER_BLOCK 4 /* conv.weight, conv.bias, norm.weight, norm.bias */

static int32_t input_prompt(const mp_model *m)
{
    return m->P > 0 && mp__mcfg(m, MP_CFG_MODEL_PROMPT_MODE) == MP_PROMPT_INPUT_CHANNELS;
}

static mp_status add_block(mp_model *m, int32_t b, int32_t cin, int32_t F)
{
    char name[48];
    /* MP_INIT_TORCH: nn.Conv2d's default U(+-1/sqrt(fan_in)), bias too. */
    int torch = mp__mcfg(m, MP_CFG_MODEL_INIT) == MP_INIT_TORCH;
    double bound = 1.0 / sqrt(9.0 * cin);
    snprintf(name, sizeof name, "conv%d.weight", (int)b);
    MP_TRY(mp__model_add_tensor(m, name, F, cin * 9, MP__GROUP_BACKBONE,
                                torch ? MP__INIT_UNIFORM : MP__INIT_NORMAL,
                                torch ? bound : sqrt(2.0 / (9.0 * cin))));
    snprintf(name, sizeof name, "conv%d.bias", (int)b);
    MP_TRY(mp__model_add_tensor(m, name, 1, F, MP__GROUP_BACKBONE,
                                torch ? MP__INIT_UNIFORM : MP__INIT_ZERO, torch ? bound : 0.0));
    snprintf(name, sizeof name, "norm%d.weight", (int)b);
    MP_TRY(mp__model_add_tensor(m, name, 1, F, MP__GROUP_BACKBONE, MP__INIT_ONE, 0));
    snprintf(name, sizeof name, "norm%d.bias", (int)b);
    return mp__model_add_tensor(m, name, 1, F, MP__GROUP_BACKBONE, MP__INIT_ZERO, 0);
}

mp_status mp__conv_layout(mp_model *m)
{
    m->H = (int32_t)mp__mcfg(m, MP_CFG_MODEL_IMAGE_HEIGHT);
    m->W = (int32_t)mp__mcfg(m, MP_CFG_MODEL_IMAGE_WIDTH);
    m->C = (int32_t)mp__mcfg(m, MP_CFG_MODEL_IMAGE_CHANNELS);
    int32_t F = (int32_t)mp__mcfg(m, MP_CFG_MODEL_CHANNELS), B = (int32_t)mp__mcfg(m, MP_CFG_MODEL_CONV_BLOCKS);
    int64_t in = (int64_t)m->C * m->H * m->W;
    MP_REQUIRE(in <= (1 << 24), NULL, MP_ERR_INVALID_ARGUMENT,
               "mp_model_create: conv images of %lld values are too large", (long long)in);
    m->in_dim = (int32_t)in;
    int32_t inch = mp__mcfg(m, MP_CFG_MODEL_PROMPT_MODE) == MP_PROMPT_INPUT_CHANNELS;
    int32_t auto_d = inch ? m->H * m->W : F;
    if (m->d == 0) m->d = auto_d;
    MP_REQUIRE(!inch || m->d == auto_d, NULL, MP_ERR_INVALID_ARGUMENT,
               "mp_model_create: conv prompt rows as input channels need model.prompt_dim = "
               "image_height * image_width = %d, got %d",
               (int)auto_d, (int)m->d);
    int32_t h = m->H, w = m->W, cin = m->C + (input_prompt(m) ? m->P : 0);
    for (int32_t b = 0; b < B; b++) {
        MP_REQUIRE(h >= 2 && w >= 2, NULL, MP_ERR_INVALID_ARGUMENT,
                   "mp_model_create: %d x %d images are too small for %d conv blocks (block %d "
                   "would pool a %d x %d map)",
                   (int)m->H, (int)m->W, (int)B, (int)b, (int)h, (int)w);
        MP_TRY(add_block(m, b, cin, F));
        cin = F;
        h /= 2;
        w /= 2;
    }
    int64_t feat = (int64_t)F * h * w + (inch ? 0 : (int64_t)m->P * m->d);
    MP_REQUIRE(feat <= INT32_MAX, NULL, MP_ERR_RANGE, "mp_model_create: conv head input too large");
    int torch = mp__mcfg(m, MP_CFG_MODEL_INIT) == MP_INIT_TORCH;
    double hb = 1.0 / sqrt((double)feat);
    MP_TRY(mp__model_add_tensor(m, "head.weight", (int32_t)feat, m->out_dim, MP__GROUP_HEAD,
                                torch ? MP__INIT_UNIFORM : MP__INIT_NORMAL,
                                torch ? hb : sqrt(2.0 / (double)(feat + m->out_dim))));
    return mp__model_add_tensor(m, "head.bias", 1, m->out_dim, MP__GROUP_HEAD,
                                torch ? MP__INIT_UNIFORM : MP__INIT_ZERO, torch ? hb : 0.0);
}

/* Per-channel vector (1 x F) repeated for each example as an (n*F) x 1
 * column, to scale/shift the rows of an (n*F) x (h*w) map. */
static mp_status per_channel_column(mp_tape *t, mp_var ones, mp_var v, int32_t n, int32_t F,
                                    mp_var *out)
{
    mp_var r;
    MP_TRY(mp_matmul(t, ones, v, 0, 0, &r));
    return mp_reshape(t, r, n * F, 1, out);
}

static mp_status instance_norm(mp_tape *t, mp_var ones, mp_var h, mp_var g, mp_var b, int32_t n,
                               int32_t F, int32_t hw, mp_var *out)
{
    mp_var r, z, gc, bc, a;
    MP_TRY(mp_reshape(t, h, n * F, hw, &r));
    MP_TRY(mp_layer_norm(t, r, MP_VAR_NONE, MP_VAR_NONE, MP__NORM_EPS, &z));
    MP_TRY(per_channel_column(t, ones, g, n, F, &gc));
    MP_TRY(per_channel_column(t, ones, b, n, F, &bc));
    MP_TRY(mp__scale_shift(t, z, gc, bc, &a));
    return mp_reshape(t, a, n, F * hw, out);
}

/* Drops the last row/column of odd maps (floor-mode pooling). */
static mp_status crop_even(mp_tape *t, mp_var h, int32_t n, int32_t F, int32_t *hh, int32_t *ww,
                           mp_var *out)
{
    int32_t H = *hh, W = *ww;
    mp_var r, s;
    if (W % 2) {
        MP_TRY(mp_reshape(t, h, n * F * H, W, &r));
        MP_TRY(mp_slice(t, r, MP_AXIS_COLS, 0, W - 1, &s));
        W -= 1;
        MP_TRY(mp_reshape(t, s, n, F * H * W, &h));
    }
    if (H % 2) {
        MP_TRY(mp_reshape(t, h, n * F, H * W, &r));
        MP_TRY(mp_slice(t, r, MP_AXIS_COLS, 0, (H - 1) * W, &s));
        H -= 1;
        MP_TRY(mp_reshape(t, s, n, F * H * W, &h));
    }
    *hh = H;
    *ww = W;
    *out = h;
    return MP_OK;
}

static mp_status block(const mp_model *m, mp_tape *t, const mp_var *p, mp_var ones, mp_var h,
                       int32_t n, int32_t cin, int32_t *hh, int32_t *ww, mp_var *out)
{
    int32_t F = (int32_t)mp__mcfg(m, MP_CFG_MODEL_CHANNELS);
    mp_var c, z, r;
    MP_TRY(mp_conv2d(t, h, p[0], p[1], cin, *hh, *ww, 3, 1, 1, &c));
    MP_TRY(instance_norm(t, ones, c, p[2], p[3], n, F, *hh * *ww, &z));
    MP_TRY(mp_relu(t, z, &r));
    MP_TRY(crop_even(t, r, n, F, hh, ww, &r));
    MP_TRY(mp_maxpool2d(t, r, F, *hh, *ww, out));
    *hh /= 2;
    *ww /= 2;
    return MP_OK;
}

/* The blocks on h (n x cin*H*W, channel-major) -> n x F*h*w features. */
static mp_status blocks(const mp_model *m, mp_tape *t, const mp_var *p, mp_var h, int32_t n,
                        int32_t cin, mp_var *out)
{
    int32_t B = (int32_t)mp__mcfg(m, MP_CFG_MODEL_CONV_BLOCKS), F = (int32_t)mp__mcfg(m, MP_CFG_MODEL_CHANNELS);
    int32_t hh = m->H, ww = m->W;
    mp_var ones;
    MP_TRY(mp_tape_fill(t, n, 1, 1.0f, &ones));
    for (int32_t b = 0; b < B; b++) {
        MP_TRY(block(m, t, p + PER_BLOCK * b, ones, h, n, cin, &hh, &ww, &h));
        cin = F;
    }
    *out = h;
    return MP_OK;
}

/* Also the prefix (mp__fwd_prefix) when the backbone does not read the
 * prompt: it reads the PER_BLOCK * conv_blocks tensors before the head. */
mp_status mp__conv_features(const mp_model *m, mp_tape *t, const mp_var *p, mp_var x, int32_t n,
                            mp_var *out)
{
    return blocks(m, t, p, x, n, m->C, out);
}

mp_status mp__conv_prepare(const mp_model *m, mp_tape *t, const mp_var *p, mp_var x, int32_t n,
                           mp__fwd_cache *cache)
{
    if (input_prompt(m)) return MP_OK; /* the backbone reads the prompt: no prefix */
    mp_var h;
    return mp__fwd_prefix(m, t, p, PER_BLOCK * (int32_t)mp__mcfg(m, MP_CFG_MODEL_CONV_BLOCKS), x, n, cache,
                          mp__conv_features, 1, &h);
}

mp_status mp__conv_forward(const mp_model *m, mp_tape *t, const mp_var *p, mp_var prompt, mp_var x,
                           int32_t n, mp__fwd_cache *cache, mp_var *out)
{
    int32_t nb = PER_BLOCK * (int32_t)mp__mcfg(m, MP_CFG_MODEL_CONV_BLOCKS);
    mp_var h, pr = MP_VAR_NONE;
    if (input_prompt(m)) {
        /* Channel-major rows: appending P*H*W columns appends P channels. */
        mp_var xp;
        MP_TRY(mp_reshape(t, prompt, 1, m->P * m->d, &pr));
        MP_TRY(mp__concat_bcast(t, x, pr, &xp));
        MP_TRY(blocks(m, t, p, xp, n, m->C + m->P, &h));
    } else {
        MP_TRY(mp__fwd_prefix(m, t, p, nb, x, n, cache, mp__conv_features, 1, &h));
        if (m->P > 0) {
            MP_TRY(mp_reshape(t, prompt, 1, m->P * m->d, &pr));
            MP_TRY(mp__concat_bcast(t, h, pr, &h));
        }
    }
    return mp__linear(t, h, p[nb], p[nb + 1], 0, 0, out);
}
