/* Data movement: slice/pad, concat, reshape, transpose, split/merge heads,
 * gather/scatter rows. Each is linear, and its backward
 * is its adjoint, itself one of these ops. */
#include "tape/tape_internal.h"

#include <string.h>

/* ---- slice and pad (its adjoint: embed into zeros) -------------------------------
 * attr = {axis, start, len (slice) or total (pad)}. */
static void copy_block(float *dst, int32_t dst_cols, int32_t dst_c0, const float *src, int32_t src_cols,
                       int32_t src_c0, int32_t rows, int32_t ncols)
{
    for (int32_t i = 0; i < rows; i++)
        memcpy(dst + (size_t)i * dst_cols + dst_c0, src + (size_t)i * src_cols + src_c0, (size_t)ncols * sizeof(float));
}

void mp__fwd_slice(mp_tape *t, mp__node *o)
{
    const mp__node *A = mp__nd(t, o->in[0]);
    int32_t start = o->attr[1];
    if (o->attr[0] == MP_AXIS_ROWS)
        memcpy(o->val, A->val + (size_t)start * A->cols, (size_t)o->rows * o->cols * sizeof(float));
    else
        copy_block(o->val, o->cols, 0, A->val, A->cols, start, o->rows, o->cols);
}
mp_status mp__bwd_slice(mp_tape *t, mp_var v, mp_var g)
{
    mp__node n = *mp__nd(t, v);
    const mp__node *A = mp__nd(t, n.in[0]);
    mp_var c;
    MP_TRY(mp__pad(t, g, n.attr[0], n.attr[1], n.attr[0] == MP_AXIS_ROWS ? A->rows : A->cols, &c));
    return mp__acc(t, n.in[0], c);
}
mp_status mp__slice(mp_tape *t, mp_var a, int32_t axis, int32_t start, int32_t len, mp_var *out)
{
    const mp__node *A = mp__nd(t, a);
    int32_t attr[6] = {axis, start, len};
    return mp__record(t, MP__OP_SLICE, axis == MP_AXIS_ROWS ? len : A->rows, axis == MP_AXIS_ROWS ? A->cols : len,
                      a, MP_VAR_NONE, attr, 0.0f, NULL, out);
}

void mp__fwd_pad(mp_tape *t, mp__node *o)
{
    const mp__node *A = mp__nd(t, o->in[0]);
    memset(o->val, 0, (size_t)o->rows * o->cols * sizeof(float));
    if (o->attr[0] == MP_AXIS_ROWS)
        memcpy(o->val + (size_t)o->attr[1] * o->cols, A->val, (size_t)A->rows * A->cols * sizeof(float));
    else
        copy_block(o->val, o->cols, o->attr[1], A->val, A->cols, 0, A->rows, A->cols);
}
mp_status mp__bwd_pad(mp_tape *t, mp_var v, mp_var g)
{
    mp__node n = *mp__nd(t, v);
    const mp__node *A = mp__nd(t, n.in[0]);
    mp_var c;
    MP_TRY(mp__slice(t, g, n.attr[0], n.attr[1], n.attr[0] == MP_AXIS_ROWS ? A->rows : A->cols, &c));
    return mp__acc(t, n.in[0], c);
}
mp_status mp__pad(mp_tape *t, mp_var a, int32_t axis, int32_t start, int32_t total, mp_var *out)
{
    const mp__node *A = mp__nd(t, a);
    int32_t attr[6] = {axis, start, total};
    return mp__record(t, MP__OP_PAD, axis == MP_AXIS_ROWS ? total : A->rows, axis == MP_AXIS_ROWS ? A->cols : total,
                      a, MP_VAR_NONE, attr, 0.0f, NULL, out);
}

/* ---- concat: attr = {axis} ------------------------------------------------------------ */
void mp__fwd_concat(mp_tape *t, mp__node *o)
{
    const mp__node *A = mp__nd(t, o->in[0]), *B = mp__nd(t, o->in[1]);
    size_t na = (size_t)A->rows * A->cols;
    if (o->attr[0] == MP_AXIS_ROWS) {
        memcpy(o->val, A->val, na * sizeof(float));
        memcpy(o->val + na, B->val, (size_t)B->rows * B->cols * sizeof(float));
    } else { /* an operand of one row for more output rows is broadcast (mp__concat_bcast) */
        copy_block(o->val, o->cols, 0, A->val, A->rows == o->rows ? A->cols : 0, 0, o->rows, A->cols);
        copy_block(o->val, o->cols, A->cols, B->val, B->rows == o->rows ? B->cols : 0, 0, o->rows, B->cols);
    }
}
mp_status mp__bwd_concat(mp_tape *t, mp_var v, mp_var g)
{
    mp__node n = *mp__nd(t, v);
    int32_t axis = n.attr[0];
    const mp__node A = *mp__nd(t, n.in[0]), B = *mp__nd(t, n.in[1]); /* copies: recording may move the table */
    int32_t la = axis == MP_AXIS_ROWS ? A.rows : A.cols, lb = axis == MP_AXIS_ROWS ? B.rows : B.cols;
    mp_var c;
    if (mp__need(t, n.in[0])) {
        MP_TRY(mp__slice(t, g, axis, 0, la, &c));
        MP_TRY(mp__sum_to(t, c, A.rows, A.cols, &c)); /* a broadcast row's gradient sums the rows */
        MP_TRY(mp__acc(t, n.in[0], c));
    }
    if (mp__need(t, n.in[1])) {
        MP_TRY(mp__slice(t, g, axis, la, lb, &c));
        MP_TRY(mp__sum_to(t, c, B.rows, B.cols, &c));
        MP_TRY(mp__acc(t, n.in[1], c));
    }
    return MP_OK;
}

/* ---- reshape: the output aliases the input's values ------------------------------------ */
/* Values are immutable once recorded, with one exception: a recycling sweep
 * adds onto a gradient slot's buffer in place (mp__acc_slot), and only when
 * the slot is its buffer's only holder; a reshape of a scratch buffer shares
 * its reference count, so an aliased slot is never written. */
void mp__fwd_reshape(mp_tape *t, mp__node *o) { (void)t, (void)o; }
mp_status mp__bwd_reshape(mp_tape *t, mp_var v, mp_var g)
{
    mp_var a = mp__nd(t, v)->in[0], c;
    MP_TRY(mp__reshape(t, g, mp__nd(t, a)->rows, mp__nd(t, a)->cols, &c));
    return mp__acc(t, a, c);
}
mp_status mp__reshape(mp_tape *t, mp_var a, int32_t rows, int32_t cols, mp_var *out)
{
    return mp__record_alias(t, MP__OP_RESHAPE, rows, cols, a, mp__nd(t, a)->val, out);
}

/* ---- transpose ------------------------------------------------------------------------- */
/* Tiles of 16x16 keep both the reads and the strided writes in cache. */
static void transpose_block(float *restrict dst, const float *restrict src, int32_t m, int32_t n)
{
    /* 64-bit tile corners: i0 + 16 must not overflow for m or n near INT32_MAX. */
    for (int64_t i0 = 0; i0 < m; i0 += 16)
        for (int64_t j0 = 0; j0 < n; j0 += 16) {
            int64_t i1 = i0 + 16 < m ? i0 + 16 : m, j1 = j0 + 16 < n ? j0 + 16 : n;
            for (int64_t i = i0; i < i1; i++)
                for (int64_t j = j0; j < j1; j++) dst[(size_t)j * m + i] = src[(size_t)i * n + j];
        }
}

void mp__fwd_transpose(mp_tape *t, mp__node *o)
{
    const mp__node *A = mp__nd(t, o->in[0]);
    transpose_block(o->val, A->val, A->rows, A->cols);
}
mp_status mp__bwd_transpose(mp_tape *t, mp_var v, mp_var g)
{
    mp_var c;
    MP_TRY(mp__transpose(t, g, &c));
    return mp__acc(t, mp__nd(t, v)->in[0], c);
}
mp_status mp__transpose(mp_tape *t, mp_var a, mp_var *out)
{
    const mp__node *A = mp__nd(t, a);
    return mp__record(t, MP__OP_TRANSPOSE, A->cols, A->rows, a, MP_VAR_NONE, NULL, 0.0f, NULL, out);
}

/* ---- split / merge heads: attr = {batch, seq, heads} ------------------------------------
 * (batch*seq) x (heads*dh) <-> (batch*heads*seq) x dh, head-major per example. */
static void heads_move(mp_tape *t, mp__node *o, int split)
{
    const mp__node *X = mp__nd(t, o->in[0]);
    int32_t batch = o->attr[0], seq = o->attr[1], heads = o->attr[2];
    int32_t dh = split ? o->cols : X->cols;
    const float *restrict src = X->val;
    float *restrict dst = o->val;
    if (dh == 1) { /* a per-example transpose (the patch embedding's channels-first output) */
        for (int32_t b = 0; b < batch; b++) {
            const float *restrict x = src + (size_t)b * seq * heads;
            float *restrict y = dst + (size_t)b * seq * heads;
            for (int32_t s = 0; s < seq; s++)
                for (int32_t h = 0; h < heads; h++) {
                    if (split) y[(size_t)h * seq + s] = x[(size_t)s * heads + h];
                    else y[(size_t)s * heads + h] = x[(size_t)h * seq + s];
                }
        }
        return;
    }
    /* Head widths are small (16-64 floats): a plain loop beats a memcpy call. */
    for (int32_t b = 0; b < batch; b++)
        for (int32_t h = 0; h < heads; h++)
            for (int32_t s = 0; s < seq; s++) {
                size_t wide = ((size_t)b * seq + s) * heads * dh + (size_t)h * dh; /* in the merged layout */
                size_t tall = (((size_t)b * heads + h) * seq + s) * dh;            /* in the split layout */
                size_t from = split ? wide : tall, to = split ? tall : wide;
                for (int32_t j = 0; j < dh; j++) dst[to + j] = src[from + j];
            }
}
void mp__fwd_split_heads(mp_tape *t, mp__node *o) { heads_move(t, o, 1); }
void mp__fwd_merge_heads(mp_tape *t, mp__node *o) { heads_move(t, o, 0); }
static mp_status heads_backward(mp_tape *t, mp_var v, mp_var g, int32_t inverse_op)
{
    mp__node n = *mp__nd(t, v);
    mp_var c;
    MP_TRY(mp__heads(t, inverse_op, g, n.attr[0], n.attr[1], n.attr[2], &c));
    return mp__acc(t, n.in[0], c);
}
mp_status mp__bwd_split_heads(mp_tape *t, mp_var v, mp_var g) { return heads_backward(t, v, g, MP__OP_MERGE_HEADS); }
mp_status mp__bwd_merge_heads(mp_tape *t, mp_var v, mp_var g) { return heads_backward(t, v, g, MP__OP_SPLIT_HEADS); }
mp_status mp__heads(mp_tape *t, int32_t op, mp_var x, int32_t batch, int32_t seq, int32_t heads, mp_var *out)
{
    const mp__node *X = mp__nd(t, x);
    int32_t attr[6] = {batch, seq, heads};
    if (op == MP__OP_SPLIT_HEADS)
        return mp__record(t, op, batch * heads * seq, X->cols / heads, x, MP_VAR_NONE, attr, 0.0f, NULL, out);
    return mp__record(t, op, batch * seq, X->cols * heads, x, MP_VAR_NONE, attr, 0.0f, NULL, out);
}

/* ---- gather rows (embedding lookup) and scatter rows (its adjoint, summing) ------------- */
void mp__fwd_gather_rows(mp_tape *t, mp__node *o)
{
    const mp__node *T = mp__nd(t, o->in[0]);
    for (int32_t i = 0; i < o->rows; i++)
        memcpy(o->val + (size_t)i * o->cols, T->val + (size_t)o->idx[i] * T->cols, (size_t)o->cols * sizeof(float));
}
mp_status mp__bwd_gather_rows(mp_tape *t, mp_var v, mp_var g)
{
    mp__node n = *mp__nd(t, v);
    mp_var c;
    MP_TRY(mp__scatter_rows(t, g, n.idx, mp__nd(t, n.in[0])->rows, &c));
    return mp__acc(t, n.in[0], c);
}
mp_status mp__gather_rows(mp_tape *t, mp_var table, const int32_t *idx, int32_t n, mp_var *out)
{
    return mp__record(t, MP__OP_GATHER_ROWS, n, mp__nd(t, table)->cols, table, MP_VAR_NONE, NULL, 0.0f, idx, out);
}

/* attr[0] = number of gathered rows (the length of idx). */
void mp__fwd_scatter_rows(mp_tape *t, mp__node *o)
{
    const mp__node *G = mp__nd(t, o->in[0]);
    memset(o->val, 0, (size_t)o->rows * o->cols * sizeof(float));
    for (int32_t i = 0; i < G->rows; i++) {
        float *dst = o->val + (size_t)o->idx[i] * o->cols;
        const float *src = G->val + (size_t)i * G->cols;
        for (int32_t j = 0; j < o->cols; j++) dst[j] += src[j];
    }
}
mp_status mp__bwd_scatter_rows(mp_tape *t, mp_var v, mp_var g)
{
    mp__node n = *mp__nd(t, v);
    mp_var c;
    MP_TRY(mp__gather_rows(t, g, n.idx, mp__nd(t, n.in[0])->rows, &c));
    return mp__acc(t, n.in[0], c);
}
mp_status mp__scatter_rows(mp_tape *t, mp_var g, const int32_t *idx, int32_t rows, mp_var *out)
{
    return mp__record(t, MP__OP_SCATTER_ROWS, rows, mp__nd(t, g)->cols, g, MP_VAR_NONE, NULL, 0.0f, idx, out);
}

/* ---- public entry points ------------------------------------------------------------------ */
static mp_status check_axis(mp_tape *t, const char *fn, int32_t axis)
{
    MP_REQUIRE(axis == MP_AXIS_ROWS || axis == MP_AXIS_COLS, t->err, MP_ERR_INVALID_ARGUMENT,
               "%s: axis = %d, expected MP_AXIS_ROWS (0) or MP_AXIS_COLS (1)", fn, (int)axis);
    return MP_OK;
}

mp_status mp__concat(mp_tape *t, mp_var a, mp_var b, int32_t axis, mp_var *out)
{
    const mp__node *A = mp__nd(t, a), *B = mp__nd(t, b);
    int32_t attr[6] = {axis};
    if (axis == MP_AXIS_ROWS)
        return mp__record(t, MP__OP_CONCAT, A->rows + B->rows, A->cols, a, b, attr, 0.0f, NULL, out);
    return mp__record(t, MP__OP_CONCAT, A->rows, A->cols + B->cols, a, b, attr, 0.0f, NULL, out);
}

mp_status mp_concat(mp_tape *t, mp_var a, mp_var b, int32_t axis, mp_var *out)
{
    static const char fn[] = "mp_concat";
    MP__START(t, out, fn);
    MP__VAR(t, fn, a);
    MP__VAR(t, fn, b);
    MP_TRY(check_axis(t, fn, axis));
    const mp__node *A = mp__nd(t, a), *B = mp__nd(t, b);
    int rows = axis == MP_AXIS_ROWS;
    MP_REQUIRE(rows ? A->cols == B->cols : A->rows == B->rows, t->err, MP_ERR_SHAPE_MISMATCH,
               "%s: a %dx%d and b %dx%d differ in %s (axis = %d)", fn, (int)A->rows, (int)A->cols, (int)B->rows,
               (int)B->cols, rows ? "cols" : "rows", (int)axis);
    int64_t total = rows ? (int64_t)A->rows + B->rows : (int64_t)A->cols + B->cols;
    MP_REQUIRE(total * (rows ? A->cols : A->rows) <= INT32_MAX, t->err, MP_ERR_INVALID_ARGUMENT,
               "%s: result too large", fn);
    int32_t attr[6] = {axis};
    mp_var r;
    mp_status st = mp__record(t, MP__OP_CONCAT, rows ? (int32_t)total : A->rows, rows ? A->cols : (int32_t)total, a,
                              b, attr, 0.0f, NULL, &r);
    return mp__emit(t, st, &r, out);
}

mp_status mp__concat_bcast(mp_tape *t, mp_var a, mp_var b, mp_var *out)
{
    static const char fn[] = "mp__concat_bcast";
    MP__START(t, out, fn);
    MP__VAR(t, fn, a);
    MP__VAR(t, fn, b);
    const mp__node *A = mp__nd(t, a), *B = mp__nd(t, b);
    int32_t rows = A->rows > B->rows ? A->rows : B->rows;
    MP_REQUIRE((A->rows == rows || A->rows == 1) && (B->rows == rows || B->rows == 1), t->err, MP_ERR_SHAPE_MISMATCH,
               "%s: a %dx%d and b %dx%d: the rows differ and neither has one row", fn, (int)A->rows, (int)A->cols,
               (int)B->rows, (int)B->cols);
    MP_REQUIRE((int64_t)rows * ((int64_t)A->cols + B->cols) <= INT32_MAX, t->err, MP_ERR_INVALID_ARGUMENT,
               "%s: result too large", fn);
    int32_t attr[6] = {MP_AXIS_COLS};
    mp_var r;
    mp_status st = mp__record(t, MP__OP_CONCAT, rows, A->cols + B->cols, a, b, attr, 0.0f, NULL, &r);
    return mp__emit(t, st, &r, out);
}

mp_status mp_slice(mp_tape *t, mp_var a, int32_t axis, int32_t start, int32_t len, mp_var *out)
{
    static const char fn[] = "mp_slice";
    MP__START(t, out, fn);
    MP__VAR(t, fn, a);
    MP_TRY(check_axis(t, fn, axis));
    const mp__node *A = mp__nd(t, a);
    int32_t dim = axis == MP_AXIS_ROWS ? A->rows : A->cols;
    MP_REQUIRE(start >= 0 && len >= 1 && (int64_t)start + len <= dim, t->err, MP_ERR_RANGE,
               "%s: start = %d, len = %d outside the %d %s of a %dx%d input", fn, (int)start, (int)len, (int)dim,
               axis == MP_AXIS_ROWS ? "rows" : "cols", (int)A->rows, (int)A->cols);
    mp_var r;
    mp_status st = mp__slice(t, a, axis, start, len, &r);
    return mp__emit(t, st, &r, out);
}

mp_status mp_reshape(mp_tape *t, mp_var a, int32_t rows, int32_t cols, mp_var *out)
{
    static const char fn[] = "mp_reshape";
    MP__START(t, out, fn);
    MP__VAR(t, fn, a);
    const mp__node *A = mp__nd(t, a);
    MP_REQUIRE(rows >= 1 && cols >= 1 && (int64_t)rows * cols == (int64_t)A->rows * A->cols, t->err,
               MP_ERR_SHAPE_MISMATCH, "%s: cannot reshape %dx%d (%lld values) to %dx%d", fn, (int)A->rows,
               (int)A->cols, (long long)A->rows * A->cols, (int)rows, (int)cols);
    mp_var r;
    mp_status st = mp__reshape(t, a, rows, cols, &r);
    return mp__emit(t, st, &r, out);
}

mp_status mp_transpose(mp_tape *t, mp_var a, mp_var *out)
{
    MP__START(t, out, "mp_transpose");
    MP__VAR(t, "mp_transpose", a);
    mp_var r;
    mp_status st = mp__transpose(t, a, &r);
    return mp__emit(t, st, &r, out);
}

/* Checks the id *x (turned into a node index) and the head geometry. */
static mp_status check_heads(mp_tape *t, const char *fn, mp_var *x, int32_t batch, int32_t seq, int32_t heads,
                             int split)
{
    MP_TRY(mp__check_var(t, fn, "x", x));
    const mp__node *X = mp__nd(t, *x);
    MP_REQUIRE(batch >= 1 && seq >= 1 && heads >= 1, t->err, MP_ERR_INVALID_ARGUMENT,
               "%s: batch = %d, seq = %d, heads = %d, expected all >= 1", fn, (int)batch, (int)seq, (int)heads);
    int64_t want_rows = (int64_t)batch * seq * (split ? 1 : heads);
    MP_REQUIRE(X->rows == want_rows && (!split || X->cols % heads == 0), t->err, MP_ERR_SHAPE_MISMATCH,
               "%s: x is %dx%d, expected %lld rows (batch %d x seq %d%s)%s", fn, (int)X->rows, (int)X->cols,
               (long long)want_rows, (int)batch, (int)seq, split ? "" : " x heads",
               split ? " and cols divisible by heads" : "");
    return MP_OK;
}

mp_status mp_split_heads(mp_tape *t, mp_var x, int32_t batch, int32_t seq, int32_t heads, mp_var *out)
{
    MP__START(t, out, "mp_split_heads");
    MP_TRY(check_heads(t, "mp_split_heads", &x, batch, seq, heads, 1));
    mp_var r;
    mp_status st = mp__heads(t, MP__OP_SPLIT_HEADS, x, batch, seq, heads, &r);
    return mp__emit(t, st, &r, out);
}

mp_status mp_merge_heads(mp_tape *t, mp_var x, int32_t batch, int32_t seq, int32_t heads, mp_var *out)
{
    MP__START(t, out, "mp_merge_heads");
    MP_TRY(check_heads(t, "mp_merge_heads", &x, batch, seq, heads, 0));
    mp_var r;
    mp_status st = mp__heads(t, MP__OP_MERGE_HEADS, x, batch, seq, heads, &r);
    return mp__emit(t, st, &r, out);
}

mp_status mp_gather_rows(mp_tape *t, mp_var table, const int32_t *idx, size_t n, mp_var *out)
{
    static const char fn[] = "mp_gather_rows";
    MP__START(t, out, fn);
    MP_REQUIRE_PTR(idx, t->err, fn);
    MP__VAR(t, fn, table);
    const mp__node *T = mp__nd(t, table);
    MP_REQUIRE(n >= 1 && (uint64_t)n * (uint64_t)T->cols <= INT32_MAX, t->err, MP_ERR_INVALID_ARGUMENT,
               "%s: n = %zu, expected 1 <= n and n*cols < 2^31 (table %dx%d)", fn, n, (int)T->rows, (int)T->cols);
    for (size_t i = 0; i < n; i++)
        MP_REQUIRE(idx[i] >= 0 && idx[i] < T->rows, t->err, MP_ERR_RANGE,
                   "%s: idx[%zu] = %d is outside [0, %d) for a table of %dx%d", fn, i, (int)idx[i], (int)T->rows,
                   (int)T->rows, (int)T->cols);
    mp__mark m = mp__tape_mark(t);
    int32_t *copy = mp__arena_alloc(t, n * sizeof *copy);
    if (!copy) {
        mp__tape_rollback(t, m); /* a failed allocation may have moved to the next arena block */
        return mp__fail(t->err, MP_ERR_OUT_OF_MEMORY, "%s: cannot copy %zu indices", fn, n);
    }
    memcpy(copy, idx, n * sizeof *copy);
    mp_var r;
    mp_status st = mp__gather_rows(t, table, copy, (int32_t)n, &r);
    if (st != MP_OK) mp__tape_rollback(t, m);
    return mp__emit(t, st, &r, out);
}
