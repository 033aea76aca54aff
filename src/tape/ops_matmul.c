/* Matrix products: matmul with either operand transposed and its batched
 * form for attention. OpenBLAS calls live only in src/tape. The backward of a
 * product is two products of the same kind, so every order reuses sgemm. */
#include "tape/tape_internal.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

/* A batched product has attr = {trans_a, trans_b, batch, shared_a, shared_b,
 * sum_out}: a shared operand (flag 1) is one block used by every batch item,
 * and a summed output (flag 1) is the sum of the batch items' products (one
 * block). The family is closed under differentiation (the gradient of a
 * shared operand is a summed product), which is what conv2d's shared filter
 * bank needs.
 * A flag -H (H >= 1 heads) puts that operand or the output in the merged
 * multi-head layout of attention: it is (batch/H * seq) x (H * dh), and item
 * i = e*H + h is the seq x dh block of example e, head h (rows e*seq.., columns
 * h*dh..; leading dimension H*dh), read and written in place, so attention
 * needs no split_heads / merge_heads copies. The layout is a property of an
 * operand, so the gradient products carry it over exactly as the shared
 * flags. */
typedef struct {
    int32_t m, k, k2, n;
} mm_dims;

/* Rows and columns of one item's block of an operand with the given flag. */
static void block_shape(const mp__node *X, int32_t batch, int32_t flag, int32_t *r, int32_t *c)
{
    *r = flag > 0 ? X->rows : flag < 0 ? X->rows / (batch / -flag) : X->rows / batch;
    *c = flag < 0 ? X->cols / -flag : X->cols;
}

static mm_dims dims(const mp__node *A, const mp__node *B, int32_t batch, int32_t ta, int32_t tb, int32_t sa,
                    int32_t sb)
{
    int32_t ra, ca, rb, cb;
    block_shape(A, batch, sa, &ra, &ca);
    block_shape(B, batch, sb, &rb, &cb);
    mm_dims d = {ta ? ca : ra, ta ? ra : ca, tb ? cb : rb, tb ? rb : cb};
    return d;
}

/* Where item i's block of an operand starts (r x c blocks, ld columns). */
static size_t block_at(int32_t i, int32_t flag, int32_t r, int32_t c, int32_t ld)
{
    if (flag > 0) return 0;
    if (flag == 0) return (size_t)i * (size_t)r * (size_t)c;
    int32_t e = i / -flag, h = i % -flag; /* example, head */
    return (size_t)e * (size_t)r * (size_t)ld + (size_t)h * (size_t)c;
}

/* A plain product without transposes runs in blocks of NN_CHUNK rows:
 * OpenBLAS then takes its small-matrix kernels (no packing of the operands,
 * no separate zeroing pass over the output), 15-20 % faster for the
 * 480..1440 x 64..128 by 64..128 products of the transformer on the
 * development machine; each row of the result is the same dot products. */
#define NN_CHUNK 64
/* A product with b transposed and b small (a weight: dx = g w^T in a
 * backward pass) takes the same path through a transposed copy of b in the
 * tape's buffer t->tcopy (MP__TCOPY_FLOATS floats). */

/* The plain (batch 1) product C = alpha op(A) op(B), in NN_CHUNK-row blocks
 * when it can. With a bias (linear: 1 x n, added to every row) each block's
 * rows are first set to the bias and its sgemm adds the product (beta = 1),
 * so the bias costs a store into the block it is about to write instead of a
 * pass over the result: 1440 x 64 by 64 x 64 takes 110 us with the bias,
 * 104 us without, and 117 us adding the bias to each block after a beta = 0
 * sgemm (SSE2 loop; OpenBLAS's kernel adds C with its own vector width).
 * OpenBLAS's small-matrix kernels, which these blocks run on, sum the
 * products first and add C once, so the result is the product plus bias
 * rounded once, bit for bit what mp_matmul then mp_add give (checked on the
 * Cooperlake kernels; a kernel that accumulated onto C, or a k split into
 * several blocks, would differ in the last bits). */
static void gemm_plain(mp_tape *t, mp__node *o, const float *bias)
{
    const mp__node *A = mp__nd(t, o->in[0]), *B = mp__nd(t, o->in[1]);
    int32_t ta = o->attr[0], tb = o->attr[1];
    mm_dims d = dims(A, B, 1, ta, tb, 0, 0);
    const float *b = B->val;
    int32_t ldb = B->cols, step = d.m, acc = (o->flags & MP__NODE_ACC) != 0;
    if (!ta && d.m > NN_CHUNK && (!tb || (size_t)d.k * d.n <= MP__TCOPY_FLOATS)) {
        if (tb) { /* b^T (k x n) from b (n x k) */
            float *bt = t->tcopy;
            for (int32_t i = 0; i < d.n; i++)
                for (int32_t j = 0; j < d.k; j++) bt[(size_t)j * d.n + i] = B->val[(size_t)i * d.k + j];
            b = bt;
            ldb = d.n;
            tb = 0;
        }
        step = NN_CHUNK;
    }
    /* r is 64-bit: r += step must not overflow for d.m near INT32_MAX. */
    for (int64_t r = 0; r < d.m; r += step) { /* r = 0 only, unless in blocks (then ta = 0) */
        int32_t rows = d.m - r < step ? (int32_t)(d.m - r) : step;
        float *c = o->val + (size_t)r * o->cols;
        if (bias)
            for (int32_t i = 0; i < rows; i++) memcpy(c + (size_t)i * o->cols, bias, (size_t)d.n * sizeof(float));
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, rows, d.n, d.k,
                    o->f, A->val + (size_t)r * A->cols, A->cols, b, ldb, bias || acc ? 1.0f : 0.0f, c, o->cols);
    }
}

/* Asks for an item's block of an operand (rows x cols, leading dimension
 * ld) ahead of its product: the per-head attention blocks are a few cache
 * lines per row, strided by the merged layout, and come from far in the
 * cache hierarchy in the outer backward (≈ 2 % of the transformer step). Only
 * blocks of up to 16 KB. */
static void prefetch_block(const float *p, int32_t rows, int32_t cols, int32_t ld)
{
    if ((int64_t)rows * cols > 4096) return;
    for (int32_t r = 0; r < rows; r++)
        for (int32_t j = 0; j < cols; j += 16) __builtin_prefetch(p + (size_t)r * ld + j, 0, 3);
}

static void gemm_blocks(mp_tape *t, mp__node *o)
{
    const mp__node *A = mp__nd(t, o->in[0]), *B = mp__nd(t, o->in[1]);
    const int32_t *at = o->attr;
    int32_t ta = at[0], tb = at[1], batch = at[2], sa = at[3], sb = at[4], so = at[5];
    int32_t acc = (o->flags & MP__NODE_ACC) != 0;
    mm_dims d = dims(A, B, batch, ta, tb, sa, sb);
    int32_t ra, ca, rb, cb;
    block_shape(A, batch, sa, &ra, &ca);
    block_shape(B, batch, sb, &rb, &cb);
    if (batch == 1) {
        gemm_plain(t, o, NULL);
        return;
    }
    for (int32_t i = 0; i < batch; i++) {
        const float *a = A->val + block_at(i, sa, ra, ca, A->cols), *b = B->val + block_at(i, sb, rb, cb, B->cols);
        float *c = o->val + block_at(i, so, d.m, d.n, o->cols);
        int add = acc || (so > 0 && i > 0);
        if (i + 1 < batch) { /* the next item's operands, while this one computes */
            if (sa <= 0) prefetch_block(A->val + block_at(i + 1, sa, ra, ca, A->cols), ra, ca, A->cols);
            if (sb <= 0) prefetch_block(B->val + block_at(i + 1, sb, rb, cb, B->cols), rb, cb, B->cols);
        }
        /* q k^T-shaped blocks with a short inner dimension: kernel_nt.c */
        if (!ta && tb && mp__nt_small(d.m, d.n, d.k, o->f, a, A->cols, b, B->cols, add, c, o->cols)) continue;
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, d.m, d.n, d.k,
                    o->f, a, A->cols, b, B->cols, add ? 1.0f : 0.0f, c, o->cols);
    }
}

/* C = op(A) op(B): dA = ta ? op(B) G^T : G op(B)^T ; dB = tb ? G^T op(A) : op(A)^T G.
 * The operand shared flags follow the operands (G is one block when the
 * output is summed), and a shared operand's gradient is a summed product. */
static mp_status record_mm(mp_tape *t, mp_var a, mp_var b, int32_t batch, int32_t ta, int32_t tb, int32_t sa,
                           int32_t sb, int32_t so, float alpha, mp_var *out)
{
    if (batch == 1) sa = sb = so = 0; /* one item (so one head): all the same */
    mm_dims d = dims(mp__nd(t, a), mp__nd(t, b), batch, ta, tb, sa, sb);
    int32_t attr[6] = {ta, tb, batch, sa, sb, so};
    int32_t op = batch == 1 ? MP__OP_MATMUL : MP__OP_BMM;
    int32_t rows = so > 0 ? d.m : so < 0 ? batch / -so * d.m : batch * d.m, cols = so < 0 ? -so * d.n : d.n;
    return mp__record(t, op, rows, cols, a, b, attr, alpha, NULL, out);
}

/* Adds alpha op(x) op(y) (record_mm's arguments) to the gradient of dst:
 * in a recycling backward, onto the gradient's buffer in place when it is
 * the only holder (sgemm with beta = 1: no sum node, no pass over the
 * result); otherwise recorded and accumulated as usual. Not for a summed
 * output of several items (its items' products would be added onto the
 * slot one by one, another order than the sum's), and only for alpha a
 * power of two (1, and attention's 1/sqrt(dh) for dh = 4^i), where alpha
 * times the dot product is exact (barring subnormals), so the sum is the
 * same float as the add gives: the kernels add C once, after the dot
 * products, while k fits one block of theirs. Above that OpenBLAS adds C to
 * the first block's partial sum, which differs in the last bits, so longer
 * inner dimensions are recorded and added. 128 is below the first k that
 * differed for every x86 kernel set (OPENBLAS_CORETYPE, OpenBLAS 0.3.21,
 * n = 8 to 64: Prescott 200, Core2 300, Haswell and Zen 384, Sandybridge
 * 400, Nehalem 640, SkylakeX and Cooperlake 384 to 1000); other
 * architectures were not measured. It covers the transformer's products. */
enum { ACC_MAX_K = 128 };

static mp_status acc_mm(mp_tape *t, mp_var dst, mp_var x, mp_var y, int32_t batch, int32_t tx, int32_t ty,
                        int32_t sx, int32_t sy, int32_t so, float alpha)
{
    int e;
    if (frexpf(alpha, &e) == 0.5f && !(so > 0 && batch > 1)) {
        if (batch == 1) sx = sy = so = 0;
        mm_dims d = dims(mp__nd(t, x), mp__nd(t, y), batch, tx, ty, sx, sy);
        int32_t rows = so > 0 ? d.m : so < 0 ? batch / -so * d.m : batch * d.m, cols = so < 0 ? -so * d.n : d.n;
        mp_var slot = d.k <= ACC_MAX_K ? mp__acc_slot(t, dst, rows, cols) : MP_VAR_NONE;
        if (slot != MP_VAR_NONE) {
            int32_t attr[6] = {tx, ty, batch, sx, sy, so};
            return mp__record_acc(t, dst, slot, batch == 1 ? MP__OP_MATMUL : MP__OP_BMM, x, y, attr, alpha);
        }
    }
    mp_var c;
    MP_TRY(record_mm(t, x, y, batch, tx, ty, sx, sy, so, alpha, &c));
    return mp__acc(t, dst, c);
}

/* The product's part of the backward of node n (a copy: recording may move
 * the node table). */
static mp_status gemm_backward_of(mp_tape *t, const mp__node *pn, mp_var g)
{
    mp__node n = *pn;
    mp_var a = n.in[0], b = n.in[1];
    int32_t ta = n.attr[0], tb = n.attr[1], batch = n.attr[2], sa = n.attr[3], sb = n.attr[4], so = n.attr[5];
    if (mp__need(t, a)) {
        if (ta) MP_TRY(acc_mm(t, a, b, g, batch, tb, 1, sb, so, sa, n.f));
        else MP_TRY(acc_mm(t, a, g, b, batch, 0, !tb, so, sb, sa, n.f));
    }
    if (mp__need(t, b)) {
        if (tb) MP_TRY(acc_mm(t, b, g, a, batch, 1, ta, so, sa, sb, n.f));
        else MP_TRY(acc_mm(t, b, a, g, batch, !ta, 0, sa, so, sb, n.f));
    }
    return MP_OK;
}

static mp_status gemm_backward(mp_tape *t, mp_var v, mp_var g)
{
    mp__node n = *mp__nd(t, v);
    return gemm_backward_of(t, &n, g);
}

void mp__fwd_matmul(mp_tape *t, mp__node *o) { gemm_blocks(t, o); }
mp_status mp__bwd_matmul(mp_tape *t, mp_var v, mp_var g) { return gemm_backward(t, v, g); }
void mp__fwd_bmm(mp_tape *t, mp__node *o) { gemm_blocks(t, o); }
mp_status mp__bwd_bmm(mp_tape *t, mp_var v, mp_var g) { return gemm_backward(t, v, g); }

/* ---- linear: op(a) op(b) + bias ------------------------------------------------------
 * A batch-1 product node whose attr[MP__ATTR_IN2] (unused by a batch-1
 * product) holds the bias, 1 x n. Its backward is the composed pair's, in
 * the same order: the add's (the bias gets the column sums of g, recorded
 * as the add would record them), then the product's. */
void mp__fwd_linear(mp_tape *t, mp__node *o) { gemm_plain(t, o, mp__nd(t, o->attr[MP__ATTR_IN2])->val); }
mp_status mp__bwd_linear(mp_tape *t, mp_var v, mp_var g)
{
    mp__node n = *mp__nd(t, v);
    mp_var bias = n.attr[MP__ATTR_IN2];
    if (mp__need(t, bias)) {
        mp_var c;
        MP_TRY(mp__sum_to(t, g, 1, n.cols, &c));
        MP_TRY(mp__acc(t, bias, c));
    }
    n.attr[MP__ATTR_IN2] = 0; /* now the plain product's node */
    return gemm_backward_of(t, &n, g);
}

mp_status mp__bmm_ex(mp_tape *t, mp_var a, mp_var b, int32_t batch, int32_t ta, int32_t tb, int32_t sa, int32_t sb,
                     int32_t so, mp_var *out)
{
    return record_mm(t, a, b, batch, ta, tb, sa, sb, so, 1.0f, out);
}
mp_status mp__bmm(mp_tape *t, mp_var a, mp_var b, int32_t batch, int32_t ta, int32_t tb, mp_var *out)
{
    return mp__bmm_ex(t, a, b, batch, ta, tb, 0, 0, 0, out);
}
mp_status mp__matmul(mp_tape *t, mp_var a, mp_var b, int32_t ta, int32_t tb, mp_var *out)
{
    return mp__bmm_ex(t, a, b, 1, ta, tb, 0, 0, 0, out);
}

/* ---- public entry points ---------------------------------------------------------- */
/* Checks the ids *a and *b (turned into node indices) and the geometry. */
/* Checks the ids *a and *b (turned into node indices) and the geometry of a
 * batched product whose operands have the layout flags f[0], f[1] (0, or
 * -heads for the merged multi-head layout; heads == 1 when neither is). */
static mp_status check_mm(mp_tape *t, const char *fn, mp_var *a, mp_var *b, int32_t batch, int32_t heads,
                          int32_t ta, int32_t tb, const int32_t f[2])
{
    MP_TRY(mp__check_var(t, fn, "a", a));
    MP_TRY(mp__check_var(t, fn, "b", b));
    MP_REQUIRE((ta == 0 || ta == 1) && (tb == 0 || tb == 1), t->err, MP_ERR_INVALID_ARGUMENT,
               "%s: trans_a = %d, trans_b = %d, expected 0 or 1", fn, (int)ta, (int)tb);
    MP_REQUIRE(batch >= 1, t->err, MP_ERR_INVALID_ARGUMENT, "%s: batch = %d, expected >= 1", fn, (int)batch);
    MP_REQUIRE(batch % heads == 0, t->err, MP_ERR_INVALID_ARGUMENT,
               "%s: batch = %d is not a multiple of heads = %d", fn, (int)batch, (int)heads);
    const mp__node *A = mp__nd(t, *a), *B = mp__nd(t, *b);
    int32_t per_a = f[0] ? batch / heads : batch, per_b = f[1] ? batch / heads : batch;
    MP_REQUIRE(A->rows % per_a == 0 && B->rows % per_b == 0 && A->cols % (f[0] ? heads : 1) == 0 &&
                   B->cols % (f[1] ? heads : 1) == 0,
               t->err, MP_ERR_SHAPE_MISMATCH, "%s: a %dx%d and b %dx%d do not split into batch = %d blocks of rows%s",
               fn, (int)A->rows, (int)A->cols, (int)B->rows, (int)B->cols, (int)batch,
               heads > 1 ? " (and columns, per head)" : "");
    mm_dims d = dims(A, B, batch, ta, tb, f[0], f[1]);
    MP_REQUIRE(d.k == d.k2, t->err, MP_ERR_SHAPE_MISMATCH,
               "%s: inner dimensions differ: op(a) is %dx%d (a %dx%d, trans_a=%d), op(b) is %dx%d (b %dx%d, "
               "trans_b=%d)", fn, (int)d.m, (int)d.k, (int)A->rows, (int)A->cols, (int)ta, (int)d.k2, (int)d.n,
               (int)B->rows, (int)B->cols, (int)tb);
    return MP_OK;
}

static const int32_t plain[2] = {0, 0};

mp_status mp_matmul(mp_tape *t, mp_var a, mp_var b, int32_t trans_a, int32_t trans_b, mp_var *out)
{
    MP__START(t, out, "mp_matmul");
    MP_TRY(check_mm(t, "mp_matmul", &a, &b, 1, 1, trans_a, trans_b, plain));
    mp_var r;
    mp_status st = mp__matmul(t, a, b, trans_a, trans_b, &r);
    return mp__emit(t, st, &r, out);
}

mp_status mp_batch_matmul(mp_tape *t, mp_var a, mp_var b, int32_t batch, int32_t trans_a, int32_t trans_b,
                          mp_var *out)
{
    MP__START(t, out, "mp_batch_matmul");
    MP_TRY(check_mm(t, "mp_batch_matmul", &a, &b, batch, 1, trans_a, trans_b, plain));
    mp_var r;
    mp_status st = mp__bmm(t, a, b, batch, trans_a, trans_b, &r);
    return mp__emit(t, st, &r, out);
}

mp_status mp__linear(mp_tape *t, mp_var a, mp_var b, mp_var bias, int32_t trans_a, int32_t trans_b, mp_var *out)
{
    static const char fn[] = "mp__linear";
    MP__START(t, out, fn);
    MP_TRY(check_mm(t, fn, &a, &b, 1, 1, trans_a, trans_b, plain));
    MP_TRY(mp__check_var(t, fn, "bias", &bias));
    mm_dims d = dims(mp__nd(t, a), mp__nd(t, b), 1, trans_a, trans_b, 0, 0);
    const mp__node *Z = mp__nd(t, bias);
    MP_REQUIRE(Z->rows == 1 && Z->cols == d.n, t->err, MP_ERR_SHAPE_MISMATCH, "%s: bias is %dx%d, expected 1x%d",
               fn, (int)Z->rows, (int)Z->cols, (int)d.n);
    int32_t attr[6] = {trans_a, trans_b, 1, 0, 0, 0};
    attr[MP__ATTR_IN2] = bias;
    mp_var r;
    mp_status st = mp__record(t, MP__OP_LINEAR, d.m, d.n, a, b, attr, 1.0f, NULL, &r);
    return mp__emit(t, st, &r, out);
}

mp_status mp__heads_matmul(mp_tape *t, mp_var a, mp_var b, int32_t batch, int32_t heads, int32_t trans_a,
                           int32_t trans_b, const int32_t layout[3], float alpha, mp_var *out)
{
    static const char fn[] = "mp__heads_matmul";
    MP__START(t, out, fn);
    MP_REQUIRE(heads >= 1 && layout[0] >= 0 && layout[0] <= 1 && layout[1] >= 0 && layout[1] <= 1 &&
                   layout[2] >= 0 && layout[2] <= 1,
               t->err, MP_ERR_INVALID_ARGUMENT, "%s: heads %d, layout %d/%d/%d are invalid (heads >= 1, flags 0 or 1)",
               fn, (int)heads, (int)layout[0], (int)layout[1], (int)layout[2]);
    int32_t f[3];
    for (int k = 0; k < 3; k++) f[k] = layout[k] ? -heads : 0;
    MP_TRY(check_mm(t, fn, &a, &b, batch, heads, trans_a, trans_b, f));
    MP_REQUIRE(isfinite(alpha), t->err, MP_ERR_INVALID_ARGUMENT, "%s: alpha = %g is not finite", fn, (double)alpha);
    mp_var r;
    mp_status st = record_mm(t, a, b, batch, trans_a, trans_b, f[0], f[1], f[2], alpha, &r);
    return mp__emit(t, st, &r, out);
}
