/* Matrix products: matmul with either operand transposed and its batched
 * form for attention. OpenBLAS calls live only in src/tape. The backward of a
 * product is two products of the same kind, so every order reuses sgemm. */
#include "tape/tape_internal.h"

#include <cblas.h>

/* Shapes of op(A) (m x k) and op(B) (k2 x n) for one block of `batch`. */
typedef struct {
    int32_t m, k, k2, n;
} mm_dims;

static mm_dims dims(const mp__node *A, const mp__node *B, int32_t batch, int32_t ta, int32_t tb)
{
    int32_t ra = A->rows / batch, rb = B->rows / batch;
    mm_dims d = {ta ? A->cols : ra, ta ? ra : A->cols, tb ? B->cols : rb, tb ? rb : B->cols};
    return d;
}

static void gemm_blocks(mp_tape *t, mp__node *o, int32_t batch)
{
    const mp__node *A = mp__nd(t, o->in[0]), *B = mp__nd(t, o->in[1]);
    int32_t ta = o->attr[0], tb = o->attr[1];
    mm_dims d = dims(A, B, batch, ta, tb);
    size_t sa = (size_t)(A->rows / batch) * A->cols, sb = (size_t)(B->rows / batch) * B->cols;
    size_t so = (size_t)d.m * d.n;
    for (int32_t i = 0; i < batch; i++)
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, d.m, d.n,
                    d.k, 1.0f, A->val + i * sa, A->cols, B->val + i * sb, B->cols, 0.0f, o->val + i * so, d.n);
}

/* dA = ta ? op(B) G^T : G op(B)^T ; dB = tb ? G^T op(A) : op(A)^T G. */
static mp_status gemm_backward(mp_tape *t, mp_var v, mp_var g, int32_t batch)
{
    mp__node n = *mp__nd(t, v);
    mp_var a = n.in[0], b = n.in[1], c;
    int32_t ta = n.attr[0], tb = n.attr[1];
    if (mp__need(t, a)) {
        if (ta) MP_TRY(mp__bmm(t, b, g, batch, tb, 1, &c));
        else MP_TRY(mp__bmm(t, g, b, batch, 0, !tb, &c));
        MP_TRY(mp__acc(t, a, c));
    }
    if (mp__need(t, b)) {
        if (tb) MP_TRY(mp__bmm(t, g, a, batch, 1, ta, &c));
        else MP_TRY(mp__bmm(t, a, g, batch, !ta, 0, &c));
        MP_TRY(mp__acc(t, b, c));
    }
    return MP_OK;
}

void mp__fwd_matmul(mp_tape *t, mp__node *o) { gemm_blocks(t, o, 1); }
mp_status mp__bwd_matmul(mp_tape *t, mp_var v, mp_var g) { return gemm_backward(t, v, g, 1); }
void mp__fwd_bmm(mp_tape *t, mp__node *o) { gemm_blocks(t, o, o->attr[2]); }
mp_status mp__bwd_bmm(mp_tape *t, mp_var v, mp_var g) { return gemm_backward(t, v, g, mp__nd(t, v)->attr[2]); }

mp_status mp__bmm(mp_tape *t, mp_var a, mp_var b, int32_t batch, int32_t ta, int32_t tb, mp_var *out)
{
    mm_dims d = dims(mp__nd(t, a), mp__nd(t, b), batch, ta, tb);
    int32_t attr[6] = {ta, tb, batch};
    int32_t op = batch == 1 ? MP__OP_MATMUL : MP__OP_BMM;
    return mp__record(t, op, batch * d.m, d.n, a, b, attr, 0.0f, NULL, out);
}
mp_status mp__matmul(mp_tape *t, mp_var a, mp_var b, int32_t ta, int32_t tb, mp_var *out)
{
    return mp__bmm(t, a, b, 1, ta, tb, out);
}

/* ---- public entry points ---------------------------------------------------------- */
static mp_status check_mm(mp_tape *t, const char *fn, mp_var a, mp_var b, int32_t batch, int32_t ta,
                          int32_t tb)
{
    MP__VAR(t, fn, a);
    MP__VAR(t, fn, b);
    MP_REQUIRE((ta == 0 || ta == 1) && (tb == 0 || tb == 1), t->err, MP_ERR_INVALID_ARGUMENT,
               "%s: trans_a = %d, trans_b = %d, expected 0 or 1", fn, (int)ta, (int)tb);
    MP_REQUIRE(batch >= 1, t->err, MP_ERR_INVALID_ARGUMENT, "%s: batch = %d, expected >= 1", fn, (int)batch);
    const mp__node *A = mp__nd(t, a), *B = mp__nd(t, b);
    MP_REQUIRE(A->rows % batch == 0 && B->rows % batch == 0, t->err, MP_ERR_SHAPE_MISMATCH,
               "%s: a %dx%d and b %dx%d do not split into batch = %d blocks of rows", fn, (int)A->rows,
               (int)A->cols, (int)B->rows, (int)B->cols, (int)batch);
    mm_dims d = dims(A, B, batch, ta, tb);
    MP_REQUIRE(d.k == d.k2, t->err, MP_ERR_SHAPE_MISMATCH,
               "%s: inner dimensions differ: op(a) is %dx%d (a %dx%d, trans_a=%d), op(b) is %dx%d (b %dx%d, "
               "trans_b=%d)", fn, (int)d.m, (int)d.k, (int)A->rows, (int)A->cols, (int)ta, (int)d.k2, (int)d.n,
               (int)B->rows, (int)B->cols, (int)tb);
    return MP_OK;
}

mp_status mp_matmul(mp_tape *t, mp_var a, mp_var b, int32_t trans_a, int32_t trans_b, mp_var *out)
{
    MP__START(t, out, "mp_matmul");
    MP_TRY(check_mm(t, "mp_matmul", a, b, 1, trans_a, trans_b));
    return mp__matmul(t, a, b, trans_a, trans_b, out);
}

mp_status mp_batch_matmul(mp_tape *t, mp_var a, mp_var b, int32_t batch, int32_t trans_a, int32_t trans_b,
                          mp_var *out)
{
    MP__START(t, out, "mp_batch_matmul");
    MP_TRY(check_mm(t, "mp_batch_matmul", a, b, batch, trans_a, trans_b));
    return mp__bmm(t, a, b, batch, trans_a, trans_b, out);
}
