/* Element-wise unary ops. First-order backward passes use small fused
 * "grad" ops (relu_mask, tanh_grad, sigmoid_grad, sqrt_grad) so that one
 * node is recorded per op; the backward of those fused ops is in turn a
 * composition of recorded ops, so every order is available. */
#include "tape/tape_internal.h"

#include <math.h>

#include "tape/fastmath.h"

#define UNARY_LOOP(o, expr)                                                       \
    do {                                                                          \
        const float *restrict xs_ = mp__nd(t, (o)->in[0])->val;                   \
        float *restrict ys_ = (o)->val;                                           \
        size_t n_ = (size_t)(o)->rows * (size_t)(o)->cols;                         \
        for (size_t k_ = 0; k_ < n_; k_++) {                                      \
            float x = xs_[k_];                                                    \
            ys_[k_] = (expr);                                                     \
        }                                                                         \
    } while (0)

/* out = f(g, y) element-wise for the fused gradient ops (in[0] = g, in[1] = y). */
#define GRAD_LOOP(o, expr)                                                        \
    do {                                                                          \
        const float *restrict gs_ = mp__nd(t, (o)->in[0])->val;                   \
        const float *restrict ys_ = mp__nd(t, (o)->in[1])->val;                   \
        float *restrict os_ = (o)->val;                                           \
        size_t n_ = (size_t)(o)->rows * (size_t)(o)->cols;                         \
        for (size_t k_ = 0; k_ < n_; k_++) {                                      \
            float g = gs_[k_], y = ys_[k_];                                       \
            os_[k_] = (expr);                                                     \
        }                                                                         \
    } while (0)

mp_status mp__unary(mp_tape *t, int32_t op, mp_var a, float f, int32_t attr0, mp_var *out)
{
    const mp__node *A = mp__nd(t, a);
    int32_t attr[6] = {attr0};
    return mp__record(t, op, A->rows, A->cols, a, MP_VAR_NONE, attr, f, NULL, out);
}

mp_status mp__binary(mp_tape *t, int32_t op, mp_var a, mp_var b, mp_var *out)
{
    const mp__node *A = mp__nd(t, a);
    return mp__record(t, op, A->rows, A->cols, a, b, NULL, 0.0f, NULL, out);
}

/* Records c = fused(g, y) and accumulates it into x. */
static mp_status acc_fused(mp_tape *t, int32_t op, mp_var x, mp_var g, mp_var y)
{
    mp_var c;
    MP_TRY(mp__binary(t, op, g, y, &c));
    return mp__acc(t, x, c);
}

/* ---- relu: relu'(0) = 0 and relu'' = 0 everywhere (a documented convention) --- */
void mp__fwd_relu(mp_tape *t, mp__node *o) { UNARY_LOOP(o, x > 0.0f ? x : 0.0f); }
mp_status mp__bwd_relu(mp_tape *t, mp_var v, mp_var g)
{
    mp_var x = mp__nd(t, v)->in[0];
    return acc_fused(t, MP__OP_RELU_MASK, x, g, x);
}
/* relu_mask(g, x) = g where x > 0, else 0: linear in g, constant in x. */
void mp__fwd_relu_mask(mp_tape *t, mp__node *o) { GRAD_LOOP(o, y > 0.0f ? g : 0.0f); }
mp_status mp__bwd_relu_mask(mp_tape *t, mp_var v, mp_var g)
{
    mp__node n = *mp__nd(t, v);
    return acc_fused(t, MP__OP_RELU_MASK, n.in[0], g, n.in[1]);
}

/* ---- tanh: dy = g * (1 - y^2) ------------------------------------------------------ */
void mp__fwd_tanh(mp_tape *t, mp__node *o) { UNARY_LOOP(o, tanhf(x)); }
mp_status mp__bwd_tanh(mp_tape *t, mp_var v, mp_var g)
{
    return acc_fused(t, MP__OP_TANH_GRAD, mp__nd(t, v)->in[0], g, v);
}
void mp__fwd_tanh_grad(mp_tape *t, mp__node *o) { GRAD_LOOP(o, g * (1.0f - y * y)); }
/* d/dg = (1 - y^2); d/dy = -2 g y. */
mp_status mp__bwd_tanh_grad(mp_tape *t, mp_var v, mp_var h)
{
    mp__node n = *mp__nd(t, v);
    MP_TRY(acc_fused(t, MP__OP_TANH_GRAD, n.in[0], h, n.in[1]));
    if (!mp__need(t, n.in[1])) return MP_OK;
    mp_var hg, c;
    MP_TRY(mp__mul(t, h, n.in[0], -2.0f, &hg));
    MP_TRY(mp__mul(t, hg, n.in[1], 1.0f, &c));
    return mp__acc(t, n.in[1], c);
}

/* ---- sigmoid: dy = g * y * (1 - y) ------------------------------------------------- */
static float sigmoidf(float x)
{
    /* Two branches so that exp never overflows. */
    if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}
void mp__fwd_sigmoid(mp_tape *t, mp__node *o) { UNARY_LOOP(o, sigmoidf(x)); }
mp_status mp__bwd_sigmoid(mp_tape *t, mp_var v, mp_var g)
{
    return acc_fused(t, MP__OP_SIGMOID_GRAD, mp__nd(t, v)->in[0], g, v);
}
void mp__fwd_sigmoid_grad(mp_tape *t, mp__node *o) { GRAD_LOOP(o, g * y * (1.0f - y)); }
/* d/dg = y (1 - y); d/dy = g (1 - 2y). */
mp_status mp__bwd_sigmoid_grad(mp_tape *t, mp_var v, mp_var h)
{
    mp__node n = *mp__nd(t, v);
    MP_TRY(acc_fused(t, MP__OP_SIGMOID_GRAD, n.in[0], h, n.in[1]));
    if (!mp__need(t, n.in[1])) return MP_OK;
    mp_var hg, y2, c;
    MP_TRY(mp__mul(t, h, n.in[0], 1.0f, &hg));
    MP_TRY(mp__scale(t, n.in[1], -2.0f, &y2));
    MP_TRY(mp__add_scalar(t, y2, 1.0f, &y2));
    MP_TRY(mp__mul(t, hg, y2, 1.0f, &c));
    return mp__acc(t, n.in[1], c);
}

/* ---- gelu (exact, erf form: PyTorch's default) --------------------------------------
 * Node attr[0] = k gives the k-th derivative of gelu(x) = x Phi(x), so the
 * backward of order k is g * gelu^(k+1)(x): every order from one formula,
 * gelu^(n) = x Phi^(n) + n Phi^(n-1), Phi^(m) = (-1)^(m-1) He_(m-1)(x) phi(x). */
static double phi_deriv(double x, int m)
{
    if (m == 0) return 0.5 * erfc(-x / sqrt(2.0));
    double he0 = 1.0, he1 = x; /* probabilists' Hermite He_0, He_1 */
    for (int k = 1; k < m - 1; k++) {
        double he2 = x * he1 - k * he0;
        he0 = he1;
        he1 = he2;
    }
    double he = m == 1 ? 1.0 : he1;
    double pdf = exp(-0.5 * x * x) * 0.39894228040143267794;
    return ((m - 1) % 2 ? -1.0 : 1.0) * he * pdf;
}
/* Orders 4 and up, in double (orders 0 to 3 have the float loops below). */
static float gelu_deriv(float xf, int n)
{
    double x = xf;
    return (float)(x * phi_deriv(x, n) + n * phi_deriv(x, n - 1));
}
/* Orders 0 and 1 from one normal CDF (and density); orders 2 and 3
 * (second-order MAML differentiates the recorded first backward) in closed
 * form, phi = the normal density: gelu^(2) = phi (2 - x^2),
 * gelu^(3) = phi x (x^2 - 4). */
static inline float gelu0(float v) { return v * mp__normal_cdf(v); }
static inline float gelu1(float v)
{
    float pdf, cdf = mp__normal_cdf_pdf(v, &pdf);
    return cdf + v * pdf;
}
static inline float gelu2(float v)
{
    float pdf = 0.39894228f * mp__expf_nonpos(-0.5f * v * v);
    return pdf * (2.0f - v * v);
}
static inline float gelu3(float v)
{
    float pdf = 0.39894228f * mp__expf_nonpos(-0.5f * v * v);
    return pdf * v * (v * v - 4.0f);
}

/* The hot gelu loops, with SIMD clones (fastmath.h): y = gelu^(k)(x) and,
 * for gelu_mul, y = g gelu^(k)(x) in the same pass. */
#define GELU_LOOPS(k)                                                                                  \
    MP__SIMD_CLONES_FMA static void gelu##k##_loop(const float *restrict x, float *restrict y, size_t n)      \
    {                                                                                                  \
        for (size_t i = 0; i < n; i++) y[i] = gelu##k(x[i]);                                           \
    }                                                                                                  \
    MP__SIMD_CLONES_FMA static void gelu##k##_mul_loop(const float *restrict g, const float *restrict x,      \
                                                   float *restrict y, size_t n)                        \
    {                                                                                                  \
        for (size_t i = 0; i < n; i++) y[i] = g[i] * gelu##k(x[i]);                                    \
    }
GELU_LOOPS(0)
GELU_LOOPS(1)
GELU_LOOPS(2)
GELU_LOOPS(3)
#undef GELU_LOOPS

/* y[0..n) = gelu^(k)(x[0..n)), times g[0..n) unless g is NULL. */
static void gelu_values(int k, const float *restrict g, const float *restrict x, float *restrict y, size_t n)
{
    if (g) {
        if (k == 0) gelu0_mul_loop(g, x, y, n);
        else if (k == 1) gelu1_mul_loop(g, x, y, n);
        else if (k == 2) gelu2_mul_loop(g, x, y, n);
        else if (k == 3) gelu3_mul_loop(g, x, y, n);
        else
            for (size_t i = 0; i < n; i++) y[i] = g[i] * gelu_deriv(x[i], k);
    } else {
        if (k == 0) gelu0_loop(x, y, n);
        else if (k == 1) gelu1_loop(x, y, n);
        else if (k == 2) gelu2_loop(x, y, n);
        else if (k == 3) gelu3_loop(x, y, n);
        else
            for (size_t i = 0; i < n; i++) y[i] = gelu_deriv(x[i], k);
    }
}

void mp__fwd_gelu(mp_tape *t, mp__node *o)
{
    gelu_values(o->attr[0], NULL, mp__nd(t, o->in[0])->val, o->val, (size_t)o->rows * o->cols);
}
/* Adds gelu_mul(g, x) = g * gelu^(k)(x) (below), shaped as x, to the
 * gradient of v. */
static mp_status acc_gelu_mul(mp_tape *t, mp_var v, mp_var g, mp_var x, int32_t k)
{
    const mp__node *X = mp__nd(t, x);
    int32_t attr[6] = {k};
    return mp__record_to(t, v, MP__OP_GELU_MUL, X->rows, X->cols, g, x, attr, 0.0f);
}

/* d gelu^(k)(x) = g gelu^(k+1)(x): one gelu_mul node. */
mp_status mp__bwd_gelu(mp_tape *t, mp_var v, mp_var g)
{
    mp__node n = *mp__nd(t, v);
    return acc_gelu_mul(t, n.in[0], g, n.in[0], n.attr[0] + 1);
}

/* y[0..n) += tmp[0..n) without contraction (the add of the old sum and the
 * FMA clones' product, as mp__acc's add). */
MP__SIMD_CLONES static void add_into(float *restrict y, const float *restrict tmp, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] += tmp[i];
}

/* gelu_mul(g, x) = g * gelu^(k)(x), k = attr[0]: one node and one pass
 * where a graph would record two (the derivative values and their product
 * with g). Its own derivatives are gelu_mul nodes again, so every order is
 * available: for an upstream a, d/dg = gelu_mul(a, x) of order k and
 * d/dx = gelu_mul(a g, x) of order k + 1. Added onto its buffer
 * (MP__NODE_ACC) through a chunk on the stack, so that the FMA clones never
 * fuse the sum into the product. */
void mp__fwd_gelu_mul(mp_tape *t, mp__node *o)
{
    const float *g = mp__nd(t, o->in[0])->val, *x = mp__nd(t, o->in[1])->val;
    size_t n = (size_t)o->rows * o->cols;
    if (!(o->flags & MP__NODE_ACC)) {
        gelu_values(o->attr[0], g, x, o->val, n);
        return;
    }
    _Alignas(64) float tmp[512];
    for (size_t i = 0; i < n; i += 512) {
        size_t len = n - i < 512 ? n - i : 512;
        gelu_values(o->attr[0], g + i, x + i, tmp, len);
        add_into(o->val + i, tmp, len);
    }
}
mp_status mp__bwd_gelu_mul(mp_tape *t, mp_var v, mp_var a)
{
    mp__node n = *mp__nd(t, v);
    mp_var g = n.in[0], x = n.in[1];
    if (mp__need(t, g)) MP_TRY(acc_gelu_mul(t, g, a, x, n.attr[0]));
    if (!mp__need(t, x)) return MP_OK;
    mp_var ag;
    MP_TRY(mp__mul(t, a, g, 1.0f, &ag));
    return acc_gelu_mul(t, x, ag, x, n.attr[0] + 1);
}

/* ---- exp, log, square ------------------------------------------------------------------ */
void mp__fwd_exp(mp_tape *t, mp__node *o) { UNARY_LOOP(o, expf(x)); } /* libm: exact at the range ends */
mp_status mp__bwd_exp(mp_tape *t, mp_var v, mp_var g)
{
    mp_var c;
    MP_TRY(mp__mul(t, g, v, 1.0f, &c));
    return mp__acc(t, mp__nd(t, v)->in[0], c);
}

void mp__fwd_log(mp_tape *t, mp__node *o) { UNARY_LOOP(o, logf(x)); }
mp_status mp__bwd_log(mp_tape *t, mp_var v, mp_var g)
{
    mp_var x = mp__nd(t, v)->in[0], c;
    MP_TRY(mp__div(t, g, x, &c));
    return mp__acc(t, x, c);
}

void mp__fwd_square(mp_tape *t, mp__node *o) { UNARY_LOOP(o, x * x); }
mp_status mp__bwd_square(mp_tape *t, mp_var v, mp_var g)
{
    mp_var x = mp__nd(t, v)->in[0], c;
    MP_TRY(mp__mul(t, g, x, 2.0f, &c));
    return mp__acc(t, x, c);
}

/* ---- sqrt: convention sqrt'(0) = 0 and every higher derivative at 0 is 0 ---------------
 * sqrt_grad(g, y) = g / (2y) for y > 0 and 0 at y = 0, so gradients through
 * sqrt(0) are finite (zero) at every order instead of inf/NaN. */
void mp__fwd_sqrt(mp_tape *t, mp__node *o) { UNARY_LOOP(o, sqrtf(x)); }
mp_status mp__bwd_sqrt(mp_tape *t, mp_var v, mp_var g)
{
    return acc_fused(t, MP__OP_SQRT_GRAD, mp__nd(t, v)->in[0], g, v);
}
void mp__fwd_sqrt_grad(mp_tape *t, mp__node *o) { GRAD_LOOP(o, y > 0.0f ? 0.5f * g / y : 0.0f); }
/* d/dg = 1/(2y); d/dy = -g/(2y^2) = -2 * sqrt_grad(sqrt_grad(h g, y), y). */
mp_status mp__bwd_sqrt_grad(mp_tape *t, mp_var v, mp_var h)
{
    mp__node n = *mp__nd(t, v);
    MP_TRY(acc_fused(t, MP__OP_SQRT_GRAD, n.in[0], h, n.in[1]));
    if (!mp__need(t, n.in[1])) return MP_OK;
    mp_var hg, c;
    MP_TRY(mp__mul(t, h, n.in[0], 1.0f, &hg));
    MP_TRY(mp__binary(t, MP__OP_SQRT_GRAD, hg, n.in[1], &c));
    MP_TRY(mp__binary(t, MP__OP_SQRT_GRAD, c, n.in[1], &c));
    MP_TRY(mp__scale(t, c, -2.0f, &c));
    return mp__acc(t, n.in[1], c);
}

/* ---- public entry points --------------------------------------------------------------- */
static mp_status public_unary(mp_tape *t, const char *fn, int32_t op, mp_var a, mp_var *out)
{
    MP__START(t, out, fn);
    MP__VAR(t, fn, a);
    mp_var r;
    mp_status st = mp__unary(t, op, a, 0.0f, 0, &r);
    return mp__emit(t, st, &r, out);
}
mp_status mp_relu(mp_tape *t, mp_var a, mp_var *out) { return public_unary(t, "mp_relu", MP__OP_RELU, a, out); }
mp_status mp_tanh(mp_tape *t, mp_var a, mp_var *out) { return public_unary(t, "mp_tanh", MP__OP_TANH, a, out); }
mp_status mp_sigmoid(mp_tape *t, mp_var a, mp_var *out) { return public_unary(t, "mp_sigmoid", MP__OP_SIGMOID, a, out); }
mp_status mp_gelu(mp_tape *t, mp_var a, mp_var *out) { return public_unary(t, "mp_gelu", MP__OP_GELU, a, out); }
mp_status mp_exp(mp_tape *t, mp_var a, mp_var *out) { return public_unary(t, "mp_exp", MP__OP_EXP, a, out); }
mp_status mp_log(mp_tape *t, mp_var a, mp_var *out) { return public_unary(t, "mp_log", MP__OP_LOG, a, out); }
mp_status mp_sqrt(mp_tape *t, mp_var a, mp_var *out) { return public_unary(t, "mp_sqrt", MP__OP_SQRT, a, out); }
mp_status mp_square(mp_tape *t, mp_var a, mp_var *out) { return public_unary(t, "mp_square", MP__OP_SQUARE, a, out); }
