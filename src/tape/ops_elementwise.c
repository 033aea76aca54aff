/* Element-wise binary ops with row/column broadcasting, scalar ops, and the
 * sum/expand pair (each the other's backward). */
#include "tape/tape_internal.h"

#include "tape/fastmath.h"

/* Broadcast view of an operand: element (i, j) is val[i*rs + j*cs]. */
typedef struct {
    const float *v;
    int32_t rs, cs;
} bview;

static bview view(const mp__node *n) { return (bview){n->val, n->rows == 1 ? 0 : n->cols, n->cols == 1 ? 0 : 1}; }

static int32_t bdim(int32_t x, int32_t y) { return x == y ? x : x == 1 ? y : y == 1 ? x : -1; }

/* One loop per row with the broadcast pattern hoisted out of the inner loop,
 * so each case is a plain contiguous (vectorizable) loop; with the AVX2 and
 * AVX-512 clones of MP__SIMD_CLONES (fastmath.h). The build does not contract
 * a * b + c into FMAs (ISO C mode), so every clone gives the same bits. SET
 * is = or, for a node that adds onto its buffer (MP__NODE_ACC, a recycling
 * sweep's in-place sum), +=: y + (expr), the float the add of the old sum and
 * the result gives. Of these four only mul is recorded as a backward
 * contribution (mp__record_to), so only its kernel has the += loops. */
#define BINARY_LOOPS(expr, SET)                                                               \
    if (A->rows == o->rows && A->cols == C && B->rows == o->rows && B->cols == C) {           \
        const float *restrict x1 = A->val, *restrict x2 = B->val;                             \
        float *restrict y = o->val;                                                           \
        size_t n = (size_t)o->rows * (size_t)C;                                               \
        for (size_t k = 0; k < n; k++) {                                                      \
            float a = x1[k], b = x2[k];                                                       \
            y[k] SET(expr);                                                                   \
        }                                                                                     \
        return;                                                                               \
    }                                                                                         \
    bview va = view(A), vb = view(B);                                                         \
    for (int32_t i = 0; i < o->rows; i++) {                                                   \
        const float *restrict ar = va.v + (size_t)i * va.rs, *restrict br = vb.v + (size_t)i * vb.rs; \
        float *restrict y = o->val + (size_t)i * C;                                           \
        if (va.cs && vb.cs) {                                                                 \
            for (int32_t j = 0; j < C; j++) {                                                 \
                float a = ar[j], b = br[j];                                                   \
                y[j] SET(expr);                                                               \
            }                                                                                 \
        } else if (va.cs) {                                                                   \
            const float b = br[0];                                                            \
            for (int32_t j = 0; j < C; j++) {                                                 \
                float a = ar[j];                                                              \
                y[j] SET(expr);                                                               \
            }                                                                                 \
        } else if (vb.cs) {                                                                   \
            const float a = ar[0];                                                            \
            for (int32_t j = 0; j < C; j++) {                                                 \
                float b = br[j];                                                              \
                y[j] SET(expr);                                                               \
            }                                                                                 \
        } else {                                                                              \
            const float a = ar[0], b = br[0], v = (expr);                                     \
            for (int32_t j = 0; j < C; j++) y[j] SET v;                                       \
        }                                                                                     \
    }

#define BINARY_KERNEL(name, expr, in_place)                                                   \
    MP__SIMD_CLONES static void name(mp_tape *t, mp__node *o)                                 \
    {                                                                                         \
        const mp__node *A = mp__nd(t, o->in[0]), *B = mp__nd(t, o->in[1]);                   \
        const float s = o->f;                                                                 \
        (void)s;                                                                              \
        const int32_t C = o->cols;                                                            \
        if ((in_place) && (o->flags & MP__NODE_ACC)) {                                        \
            BINARY_LOOPS(expr, +=)                                                            \
        } else {                                                                              \
            BINARY_LOOPS(expr, =)                                                             \
        }                                                                                     \
    }

BINARY_KERNEL(add_kernel, a + b, 0)
BINARY_KERNEL(sub_kernel, a - b, 0)
BINARY_KERNEL(mul_kernel, s * a * b, 1)
BINARY_KERNEL(div_kernel, a / b, 0)

static mp_status record_binary(mp_tape *t, int32_t op, mp_var a, mp_var b, float s, mp_var *out)
{
    const mp__node *A = mp__nd(t, a), *B = mp__nd(t, b);
    return mp__record(t, op, bdim(A->rows, B->rows), bdim(A->cols, B->cols), a, b, NULL, s, NULL, out);
}

mp_status mp__add(mp_tape *t, mp_var a, mp_var b, mp_var *out) { return record_binary(t, MP__OP_ADD, a, b, 1.0f, out); }
mp_status mp__sub(mp_tape *t, mp_var a, mp_var b, mp_var *out) { return record_binary(t, MP__OP_SUB, a, b, 1.0f, out); }
mp_status mp__mul(mp_tape *t, mp_var a, mp_var b, float s, mp_var *out) { return record_binary(t, MP__OP_MUL, a, b, s, out); }
mp_status mp__div(mp_tape *t, mp_var a, mp_var b, mp_var *out) { return record_binary(t, MP__OP_DIV, a, b, 1.0f, out); }

/* Reduces a broadcast result's gradient to an operand's shape. */
mp_status mp__sum_to(mp_tape *t, mp_var g, int32_t rows, int32_t cols, mp_var *out)
{
    const mp__node *G = mp__nd(t, g);
    if (G->rows == rows && G->cols == cols) {
        *out = g;
        return MP_OK;
    }
    int32_t reduce = rows == 1 && cols == 1 ? MP_REDUCE_ALL : rows == 1 ? MP_REDUCE_PER_COL : MP_REDUCE_PER_ROW;
    return mp__sum(t, g, reduce, 1.0f, out);
}

/* Accumulates s*contrib (reduced to the shape of v) into v's gradient. */
static mp_status acc_to(mp_tape *t, mp_var v, mp_var contrib)
{
    if (!mp__need(t, v)) return MP_OK;
    mp_var r;
    MP_TRY(mp__sum_to(t, contrib, mp__nd(t, v)->rows, mp__nd(t, v)->cols, &r));
    return mp__acc(t, v, r);
}

/* Adds s * g * other (op mul) to the gradient of v: one node straight into
 * the gradient when no reduction to v's shape is needed (mp__record_to),
 * else the product reduced by acc_to. */
static mp_status acc_mul(mp_tape *t, mp_var v, mp_var g, mp_var other, float s)
{
    const mp__node *G = mp__nd(t, g), *O = mp__nd(t, other), *V = mp__nd(t, v);
    int32_t rows = bdim(G->rows, O->rows), cols = bdim(G->cols, O->cols);
    if (rows == V->rows && cols == V->cols) return mp__record_to(t, v, MP__OP_MUL, rows, cols, g, other, NULL, s);
    mp_var c;
    MP_TRY(mp__mul(t, g, other, s, &c));
    return acc_to(t, v, c);
}

/* ---- add / sub -------------------------------------------------------------- */
void mp__fwd_add(mp_tape *t, mp__node *o) { add_kernel(t, o); }
mp_status mp__bwd_add(mp_tape *t, mp_var v, mp_var g)
{
    mp__node n = *mp__nd(t, v);
    MP_TRY(acc_to(t, n.in[0], g));
    return acc_to(t, n.in[1], g);
}

void mp__fwd_sub(mp_tape *t, mp__node *o) { sub_kernel(t, o); }
mp_status mp__bwd_sub(mp_tape *t, mp_var v, mp_var g)
{
    mp__node n = *mp__nd(t, v);
    MP_TRY(acc_to(t, n.in[0], g));
    if (!mp__need(t, n.in[1])) return MP_OK;
    mp_var r, neg;
    MP_TRY(mp__sum_to(t, g, mp__nd(t, n.in[1])->rows, mp__nd(t, n.in[1])->cols, &r));
    MP_TRY(mp__scale(t, r, -1.0f, &neg));
    return mp__acc(t, n.in[1], neg);
}

/* ---- mul (y = s*a*b) / div ------------------------------------------------------- */
void mp__fwd_mul(mp_tape *t, mp__node *o) { mul_kernel(t, o); }
mp_status mp__bwd_mul(mp_tape *t, mp_var v, mp_var g)
{
    mp__node n = *mp__nd(t, v);
    if (mp__need(t, n.in[0])) MP_TRY(acc_mul(t, n.in[0], g, n.in[1], n.f));
    if (mp__need(t, n.in[1])) MP_TRY(acc_mul(t, n.in[1], g, n.in[0], n.f));
    return MP_OK;
}

void mp__fwd_div(mp_tape *t, mp__node *o) { div_kernel(t, o); }
/* d(a/b)/da = 1/b, d(a/b)/db = -(a/b)/b = -y/b: reuse g/b for both. */
mp_status mp__bwd_div(mp_tape *t, mp_var v, mp_var g)
{
    mp__node n = *mp__nd(t, v);
    mp_var gb, c;
    MP_TRY(mp__div(t, g, n.in[1], &gb));
    MP_TRY(acc_to(t, n.in[0], gb));
    if (!mp__need(t, n.in[1])) return MP_OK;
    MP_TRY(mp__mul(t, gb, v, -1.0f, &c));
    return acc_to(t, n.in[1], c);
}

/* ---- mul_add: y = a * b + c, b and c broadcast to a's shape ------------------------------
 * c is the third input (attr[MP__ATTR_IN2]). The forward rounds a * b, then
 * the sum, as mul then add do; the backward records what add's then mul's
 * backward record, in that order, so values and derivatives of every order
 * are those of the pair, without the product's intermediate. */
MP__SIMD_CLONES static void mul_add_kernel(mp_tape *t, mp__node *o)
{
    const mp__node *A = mp__nd(t, o->in[0]);
    bview vb = view(mp__nd(t, o->in[1])), vc = view(mp__nd(t, o->attr[MP__ATTR_IN2]));
    const int32_t C = o->cols;
    for (int32_t i = 0; i < o->rows; i++) {
        const float *restrict a = A->val + (size_t)i * C, *restrict b = vb.v + (size_t)i * vb.rs,
                              *restrict c = vc.v + (size_t)i * vc.rs;
        float *restrict y = o->val + (size_t)i * C;
        if (vb.cs && vc.cs) {
            for (int32_t j = 0; j < C; j++) {
                float p = a[j] * b[j];
                y[j] = p + c[j];
            }
        } else if (vb.cs) {
            const float c0 = c[0];
            for (int32_t j = 0; j < C; j++) {
                float p = a[j] * b[j];
                y[j] = p + c0;
            }
        } else if (vc.cs) {
            const float b0 = b[0];
            for (int32_t j = 0; j < C; j++) {
                float p = a[j] * b0;
                y[j] = p + c[j];
            }
        } else {
            const float b0 = b[0], c0 = c[0];
            for (int32_t j = 0; j < C; j++) {
                float p = a[j] * b0;
                y[j] = p + c0;
            }
        }
    }
}
void mp__fwd_mul_add(mp_tape *t, mp__node *o) { mul_add_kernel(t, o); }
mp_status mp__bwd_mul_add(mp_tape *t, mp_var v, mp_var g)
{
    mp__node n = *mp__nd(t, v);
    MP_TRY(acc_to(t, n.attr[MP__ATTR_IN2], g));
    if (mp__need(t, n.in[0])) MP_TRY(acc_mul(t, n.in[0], g, n.in[1], 1.0f));
    if (mp__need(t, n.in[1])) MP_TRY(acc_mul(t, n.in[1], g, n.in[0], 1.0f));
    return MP_OK;
}
mp_status mp__mul_add(mp_tape *t, mp_var a, mp_var b, mp_var c, mp_var *out)
{
    const mp__node *A = mp__nd(t, a);
    int32_t attr[6] = {0};
    attr[MP__ATTR_IN2] = c;
    return mp__record(t, MP__OP_MUL_ADD, A->rows, A->cols, a, b, attr, 0.0f, NULL, out);
}

/* ---- scale / add_scalar ------------------------------------------------------------ */
MP__SIMD_CLONES static void scale_kernel(const float *restrict x, float *restrict y, size_t n, float s, int add)
{
    if (add)
        for (size_t k = 0; k < n; k++) y[k] = x[k] + s;
    else
        for (size_t k = 0; k < n; k++) y[k] = s * x[k];
}
void mp__fwd_scale(mp_tape *t, mp__node *o)
{
    scale_kernel(mp__nd(t, o->in[0])->val, o->val, (size_t)o->rows * (size_t)o->cols, o->f, 0);
}
mp_status mp__bwd_scale(mp_tape *t, mp_var v, mp_var g)
{
    mp__node n = *mp__nd(t, v);
    mp_var c;
    MP_TRY(mp__scale(t, g, n.f, &c));
    return mp__acc(t, n.in[0], c);
}
mp_status mp__scale(mp_tape *t, mp_var a, float s, mp_var *out)
{
    const mp__node *A = mp__nd(t, a);
    return mp__record(t, MP__OP_SCALE, A->rows, A->cols, a, MP_VAR_NONE, NULL, s, NULL, out);
}

void mp__fwd_add_scalar(mp_tape *t, mp__node *o)
{
    scale_kernel(mp__nd(t, o->in[0])->val, o->val, (size_t)o->rows * (size_t)o->cols, o->f, 1);
}
mp_status mp__bwd_add_scalar(mp_tape *t, mp_var v, mp_var g) { return mp__acc(t, mp__nd(t, v)->in[0], g); }
mp_status mp__add_scalar(mp_tape *t, mp_var a, float s, mp_var *out)
{
    const mp__node *A = mp__nd(t, a);
    return mp__record(t, MP__OP_ADD_SCALAR, A->rows, A->cols, a, MP_VAR_NONE, NULL, s, NULL, out);
}

/* ---- sum (y = s * reduce(a)) and expand (its adjoint: broadcast, times s) ------------ */
void mp__fwd_sum(mp_tape *t, mp__node *o)
{
    const mp__node *A = mp__nd(t, o->in[0]);
    const float *restrict x = A->val;
    float *restrict y = o->val;
    int32_t R = A->rows, C = A->cols;
    switch (o->attr[0]) {
    case MP_REDUCE_ALL:
        y[0] = (float)(o->f * mp__sum8(x, (size_t)R * C));
        break;
    case MP_REDUCE_PER_ROW:
        for (int32_t i = 0; i < R; i++) y[i] = (float)(o->f * mp__sum8(x + (size_t)i * C, (size_t)C));
        break;
    default:
        for (int32_t j = 0; j < C; j++) y[j] = 0;
        for (int32_t i = 0; i < R; i++) {
            const float *restrict xr = x + (size_t)i * C;
            for (int32_t j = 0; j < C; j++) y[j] += xr[j];
        }
        for (int32_t j = 0; j < C; j++) y[j] *= o->f;
    }
}
mp_status mp__bwd_sum(mp_tape *t, mp_var v, mp_var g)
{
    mp__node n = *mp__nd(t, v);
    const mp__node *A = mp__nd(t, n.in[0]);
    mp_var c;
    MP_TRY(mp__expand(t, g, A->rows, A->cols, n.f, &c));
    return mp__acc(t, n.in[0], c);
}
mp_status mp__sum(mp_tape *t, mp_var a, int32_t reduce, float s, mp_var *out)
{
    const mp__node *A = mp__nd(t, a);
    int32_t attr[6] = {reduce};
    int32_t rows = reduce == MP_REDUCE_PER_ROW ? A->rows : 1;
    int32_t cols = reduce == MP_REDUCE_PER_COL ? A->cols : 1;
    return mp__record(t, MP__OP_SUM, rows, cols, a, MP_VAR_NONE, attr, s, NULL, out);
}

void mp__fwd_expand(mp_tape *t, mp__node *o)
{
    const mp__node *A = mp__nd(t, o->in[0]);
    bview va = view(A);
    for (int32_t i = 0; i < o->rows; i++)
        for (int32_t j = 0; j < o->cols; j++) o->val[(size_t)i * o->cols + j] = o->f * va.v[i * va.rs + j * va.cs];
}
mp_status mp__bwd_expand(mp_tape *t, mp_var v, mp_var g)
{
    mp__node n = *mp__nd(t, v);
    const mp__node *A = mp__nd(t, n.in[0]);
    mp_var r;
    MP_TRY(mp__sum_to(t, g, A->rows, A->cols, &r));
    if (n.f != 1.0f) MP_TRY(mp__scale(t, r, n.f, &r));
    return mp__acc(t, n.in[0], r);
}
mp_status mp__expand(mp_tape *t, mp_var a, int32_t rows, int32_t cols, float s, mp_var *out)
{
    return mp__record(t, MP__OP_EXPAND, rows, cols, a, MP_VAR_NONE, NULL, s, NULL, out);
}

/* ---- public entry points ---------------------------------------------------------- */
/* Checks the ids *a and *b and turns them into node indices. */
static mp_status check_binary(mp_tape *t, const char *fn, mp_var *a, mp_var *b)
{
    MP_TRY(mp__check_var(t, fn, "a", a));
    MP_TRY(mp__check_var(t, fn, "b", b));
    const mp__node *A = mp__nd(t, *a), *B = mp__nd(t, *b);
    MP_REQUIRE(bdim(A->rows, B->rows) > 0 && bdim(A->cols, B->cols) > 0, t->err, MP_ERR_SHAPE_MISMATCH,
               "%s: shapes a %dx%d and b %dx%d do not broadcast (each dimension must be equal or 1)", fn,
               (int)A->rows, (int)A->cols, (int)B->rows, (int)B->cols);
    return MP_OK;
}

mp_status mp_add(mp_tape *t, mp_var a, mp_var b, mp_var *out)
{
    MP__START(t, out, "mp_add");
    MP_TRY(check_binary(t, "mp_add", &a, &b));
    mp_var r;
    mp_status st = mp__add(t, a, b, &r);
    return mp__emit(t, st, &r, out);
}
mp_status mp_sub(mp_tape *t, mp_var a, mp_var b, mp_var *out)
{
    MP__START(t, out, "mp_sub");
    MP_TRY(check_binary(t, "mp_sub", &a, &b));
    mp_var r;
    mp_status st = mp__sub(t, a, b, &r);
    return mp__emit(t, st, &r, out);
}
mp_status mp_mul(mp_tape *t, mp_var a, mp_var b, mp_var *out)
{
    MP__START(t, out, "mp_mul");
    MP_TRY(check_binary(t, "mp_mul", &a, &b));
    mp_var r;
    mp_status st = mp__mul(t, a, b, 1.0f, &r);
    return mp__emit(t, st, &r, out);
}
mp_status mp_div(mp_tape *t, mp_var a, mp_var b, mp_var *out)
{
    MP__START(t, out, "mp_div");
    MP_TRY(check_binary(t, "mp_div", &a, &b));
    mp_var r;
    mp_status st = mp__div(t, a, b, &r);
    return mp__emit(t, st, &r, out);
}
mp_status mp__scale_shift(mp_tape *t, mp_var x, mp_var s, mp_var b, mp_var *out)
{
    static const char fn[] = "mp__scale_shift";
    MP__START(t, out, fn);
    MP_TRY(mp__check_var(t, fn, "x", &x));
    MP_TRY(mp__check_var(t, fn, "s", &s));
    MP_TRY(mp__check_var(t, fn, "b", &b));
    const mp__node *X = mp__nd(t, x), *S = mp__nd(t, s), *B = mp__nd(t, b);
    MP_REQUIRE(bdim(X->rows, S->rows) == X->rows && bdim(X->cols, S->cols) == X->cols &&
                   bdim(X->rows, B->rows) == X->rows && bdim(X->cols, B->cols) == X->cols,
               t->err, MP_ERR_SHAPE_MISMATCH, "%s: s %dx%d and b %dx%d do not broadcast to x %dx%d", fn, (int)S->rows,
               (int)S->cols, (int)B->rows, (int)B->cols, (int)X->rows, (int)X->cols);
    mp_var r;
    mp_status st = mp__mul_add(t, x, s, b, &r);
    return mp__emit(t, st, &r, out);
}

mp_status mp_scale(mp_tape *t, mp_var a, float s, mp_var *out)
{
    MP__START(t, out, "mp_scale");
    MP__VAR(t, "mp_scale", a);
    mp_var r;
    mp_status st = mp__scale(t, a, s, &r);
    return mp__emit(t, st, &r, out);
}
mp_status mp_add_scalar(mp_tape *t, mp_var a, float s, mp_var *out)
{
    MP__START(t, out, "mp_add_scalar");
    MP__VAR(t, "mp_add_scalar", a);
    mp_var r;
    mp_status st = mp__add_scalar(t, a, s, &r);
    return mp__emit(t, st, &r, out);
}

static mp_status check_reduce(mp_tape *t, const char *fn, mp_var *a, int32_t reduce)
{
    MP_TRY(mp__check_var(t, fn, "a", a));
    MP_REQUIRE(reduce >= MP_REDUCE_ALL && reduce <= MP_REDUCE_PER_COL, t->err, MP_ERR_INVALID_ARGUMENT,
               "%s: reduce = %d, expected MP_REDUCE_ALL (0), MP_REDUCE_PER_ROW (1) or MP_REDUCE_PER_COL (2)",
               fn, (int)reduce);
    return MP_OK;
}
mp_status mp_sum(mp_tape *t, mp_var a, int32_t reduce, mp_var *out)
{
    MP__START(t, out, "mp_sum");
    MP_TRY(check_reduce(t, "mp_sum", &a, reduce));
    mp_var r;
    mp_status st = mp__sum(t, a, reduce, 1.0f, &r);
    return mp__emit(t, st, &r, out);
}
mp_status mp_mean(mp_tape *t, mp_var a, int32_t reduce, mp_var *out)
{
    MP__START(t, out, "mp_mean");
    MP_TRY(check_reduce(t, "mp_mean", &a, reduce));
    const mp__node *A = mp__nd(t, a);
    double n = reduce == MP_REDUCE_ALL ? (double)A->rows * A->cols : reduce == MP_REDUCE_PER_ROW ? A->cols : A->rows;
    mp_var r;
    mp_status st = mp__sum(t, a, reduce, (float)(1.0 / n), &r);
    return mp__emit(t, st, &r, out);
}
