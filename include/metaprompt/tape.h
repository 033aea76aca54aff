/*
 * libmetaprompt — the autodiff tape (advanced API).
 *
 * A tape records operations on 2-D float32 tensors (rows x cols; a vector is
 * 1 x n, a scalar 1 x 1; images are rows of C*H*W values, channel-major).
 * Variables are opaque positive int32 ids (mp_var) valid on the tape that
 * made them until mp_tape_reset or mp_tape_destroy. Every function checks
 * its ids: one recorded before the last reset or on another tape gives
 * MP_ERR_UNKNOWN_VARIABLE (never another variable's values), and so does
 * one of a destroyed tape passed to a tape created later. Limits: an id
 * carries a 7-bit tag of its tape (from a process-wide count of tapes
 * created, stepped at every reset), so an id from exactly 127
 * (or 254, ...) resets ago, or from another tape whose current tag happens to
 * be the same (about 1 in 127), is not detected; and a tape holds at most 2^24 = 16,777,216 variables between
 * resets (more gives MP_ERR_OUT_OF_MEMORY). Tensors live on the tape's arena:
 * after warm-up, recording allocates no heap memory.
 *
 * mp_tape_backward(loss, create_graph) computes gradients of a scalar loss
 * with respect to every variable that requires a gradient and was used to
 * compute it. Each op's backward is itself recorded as tape ops, so with
 * create_graph = 1 the gradient variables are differentiable again
 * (Hessian-vector products, gradients through an inner SGD step); with
 * create_graph = 0 they are constants.
 *
 * Every op validates its inputs; on error it records nothing, leaves *out
 * untouched and sets a message naming the op and the shapes. A handle of
 * another kind passed as the tape gives MP_ERR_INVALID_ARGUMENT (destroy:
 * nothing freed), as described at the top of metaprompt/core.h.
 * Thread safety: a tape is not thread-safe; distinct tapes may be used from
 * distinct threads concurrently.
 */
#ifndef METAPROMPT_TAPE_H
#define METAPROMPT_TAPE_H
#include "metaprompt/core.h"
#ifdef __cplusplus
extern "C" {
#endif

typedef struct mp_tape mp_tape;
/* A variable id (opaque, > 0); MP_VAR_NONE marks "no variable" (e.g. an
 * optional bias); 0 is never an id. */
typedef int32_t mp_var;
#define MP_VAR_NONE (-1)

/* Leaf flags (bit set). */
#define MP_LEAF_REQUIRES_GRAD 1 /* gradients are computed for this leaf */
#define MP_LEAF_BORROW        2 /* use the caller's buffer without copying: it must stay
                                   valid and unchanged until reset/destroy */

/* Reduction shapes for mp_sum / mp_mean. */
#define MP_REDUCE_ALL     0 /* -> 1 x 1 */
#define MP_REDUCE_PER_ROW 1 /* -> rows x 1 */
#define MP_REDUCE_PER_COL 2 /* -> 1 x cols */

/* Axes for concat / slice. */
#define MP_AXIS_ROWS 0
#define MP_AXIS_COLS 1

/* Tape statistics for mp_tape_stat. */
#define MP_TAPE_STAT_NODES        0 /* variables recorded since the last reset */
#define MP_TAPE_STAT_ARENA_USED   1 /* bytes of arena in use */
#define MP_TAPE_STAT_ARENA_HIGH   2 /* high-water mark of arena bytes since creation */
#define MP_TAPE_STAT_HEAP_BYTES   3 /* bytes the tape holds from the allocator */

/* ---- lifetime ------------------------------------------------------------ */
/** Creates an empty tape (its arena grows on demand and is kept across
 *  resets). Errors: MP_ERR_NULL_POINTER, MP_ERR_OUT_OF_MEMORY. */
MP_API mp_status mp_tape_create(mp_tape **out);
/** Destroys a tape and every variable on it; NULL is ignored. Buffers given
 *  with MP_LEAF_BORROW may be freed by the caller afterwards. */
MP_API void mp_tape_destroy(mp_tape *tape);
/** Forgets every variable and rewinds the arena (memory is kept for reuse).
 *  The ids recorded so far become invalid: passing one later gives
 *  MP_ERR_UNKNOWN_VARIABLE, even where a new variable reuses its slot.
 *  Errors: MP_ERR_NULL_POINTER (tape). */
MP_API mp_status mp_tape_reset(mp_tape *tape);
/** Message of the last failed call on this tape ("" if none; "" for NULL).
 *  Owned by the tape, valid until its next failing call or destruction. */
MP_API const char *mp_tape_error(const mp_tape *tape);
/** Reads one MP_TAPE_STAT_* statistic into *out.
 *  Errors: MP_ERR_NULL_POINTER, MP_ERR_INVALID_ARGUMENT (unknown stat). */
MP_API mp_status mp_tape_stat(const mp_tape *tape, int32_t stat, int64_t *out);

/* ---- leaves and reading ------------------------------------------------------ */
/** A leaf of rows x cols from data (len must equal rows*cols). Copied to the
 *  arena unless MP_LEAF_BORROW: then the tape reads the caller's buffer in
 *  place (never writes it); it must stay valid and unchanged until reset or
 *  destroy. Errors: MP_ERR_NULL_POINTER (tape, data, out),
 *  MP_ERR_INVALID_ARGUMENT (rows or cols < 1, unknown flags),
 *  MP_ERR_SHAPE_MISMATCH (len != rows*cols), MP_ERR_OUT_OF_MEMORY. */
MP_API mp_status mp_tape_leaf(mp_tape *tape, int32_t rows, int32_t cols, const float *data,
                              size_t len, int32_t flags, mp_var *out);
/** A constant leaf (no gradient) filled with one value.
 *  Errors: MP_ERR_NULL_POINTER, MP_ERR_INVALID_ARGUMENT (rows or cols < 1),
 *  MP_ERR_OUT_OF_MEMORY. */
MP_API mp_status mp_tape_fill(mp_tape *tape, int32_t rows, int32_t cols, float value, mp_var *out);
/** Rows and columns of v. Errors: MP_ERR_NULL_POINTER,
 *  MP_ERR_UNKNOWN_VARIABLE (v not on this tape, or recorded before the last
 *  reset). */
MP_API mp_status mp_tape_shape(const mp_tape *tape, mp_var v, int32_t *rows, int32_t *cols);
/** Copies a variable's values (row-major) into buf (len >= rows*cols).
 *  Errors: MP_ERR_NULL_POINTER (tape, buf), MP_ERR_UNKNOWN_VARIABLE,
 *  MP_ERR_BUFFER_TOO_SMALL (len < rows*cols; the size needed is named). */
MP_API mp_status mp_tape_read(const mp_tape *tape, mp_var v, float *buf, size_t len);
/** Value of a 1 x 1 variable. Errors: MP_ERR_NULL_POINTER,
 *  MP_ERR_UNKNOWN_VARIABLE, MP_ERR_SHAPE_MISMATCH (not 1 x 1). */
MP_API mp_status mp_tape_scalar(const mp_tape *tape, mp_var v, float *out);

/* ---- differentiation ------------------------------------------------------- */
/** Reverse sweep from a 1 x 1 loss: gradients of the loss with respect to
 *  every variable (leaf or intermediate) that requires a gradient, read with
 *  mp_tape_grad. Replaces the gradients of any earlier backward call. The
 *  sweep records each op's backward as new tape ops: with create_graph = 1
 *  they are differentiable (gradients of gradients, Hessian-vector
 *  products), with create_graph = 0 they are constants. A variable used
 *  several times accumulates all its contributions.
 *  Errors: MP_ERR_NULL_POINTER, MP_ERR_UNKNOWN_VARIABLE, MP_ERR_SHAPE_MISMATCH
 *  (loss not 1 x 1), MP_ERR_INVALID_ARGUMENT (create_graph not 0/1),
 *  MP_ERR_OUT_OF_MEMORY (then nothing is recorded and the gradients of the
 *  previous backward stay). */
MP_API mp_status mp_tape_backward(mp_tape *tape, mp_var loss, int32_t create_graph);
/** Like mp_tape_backward, but only propagates along paths from the n
 *  variables wrt[] to the loss (like torch.autograd.grad(loss, wrt)): the
 *  gradients of wrt[] and of every variable that depends on one of them are
 *  exact, every other variable reads as a zero gradient. Much cheaper when
 *  the tape holds earlier steps the caller does not differentiate (the inner
 *  steps of MAML). wrt is read during the call only.
 *  Errors: as mp_tape_backward, plus MP_ERR_NULL_POINTER (wrt),
 *  MP_ERR_INVALID_ARGUMENT (n == 0), MP_ERR_UNKNOWN_VARIABLE (a wrt id). */
MP_API mp_status mp_tape_backward_wrt(mp_tape *tape, mp_var loss, int32_t create_graph, const mp_var *wrt,
                                      size_t n);
/** Gradient variable of v from the last backward (same shape as v). A
 *  variable the loss does not depend on (or recorded after that backward)
 *  gets a zero constant (recorded on first request). Errors:
 *  MP_ERR_NULL_POINTER, MP_ERR_UNKNOWN_VARIABLE, MP_ERR_STATE (no backward
 *  since the last reset), MP_ERR_OUT_OF_MEMORY. */
MP_API mp_status mp_tape_grad(mp_tape *tape, mp_var v, mp_var *out);

/* ---- ops (each returns its result through *out) ----------------------------
 * Common to every op: the result is a new variable; it requires a gradient
 * when an input does. Errors: MP_ERR_NULL_POINTER (tape, out, index arrays),
 * MP_ERR_UNKNOWN_VARIABLE (an id not on this tape, recorded before its last
 * reset, or MP_VAR_NONE for a required argument), MP_ERR_SHAPE_MISMATCH
 * (message names the op and the shapes), MP_ERR_INVALID_ARGUMENT (flags,
 * reduce, axis, geometry), MP_ERR_RANGE (labels, indices, slice bounds),
 * MP_ERR_OUT_OF_MEMORY (also when the tape already holds 2^24 variables);
 * on any error nothing is recorded (node count and arena statistics
 * unchanged) and *out is untouched.
 *
 * Conventions at non-smooth points (derivatives of every order are finite):
 *  - relu'(0) = 0 and relu'' = 0 everywhere (the mask is x > 0);
 *  - sqrt'(0) = 0 and every higher derivative of sqrt at 0 is 0 (instead of
 *    +inf); elsewhere the exact derivatives;
 *  - max-pool routes the gradient to the first maximum of each 2x2 window in
 *    row-major order (ties), and is linear in x otherwise (second derivative
 *    0 through the pool itself);
 *  - gelu is the exact erf form x * Phi(x) (PyTorch's default, not the tanh
 *    approximation), with exact derivatives of every order;
 *  - softmax / log-softmax / cross-entropy subtract the row max, so huge
 *    logits are safe; -inf entries get probability 0 (log-probability -inf)
 *    and gradient 0, never NaN; a row of only -inf is rejected with
 *    MP_ERR_NOT_FINITE (no distribution); +inf or NaN inputs are not
 *    supported (NaN results). */
/* C = op(A) op(B) with op = transpose when the flag is 1 (cblas_sgemm). */
MP_API mp_status mp_matmul(mp_tape *tape, mp_var a, mp_var b, int32_t trans_a, int32_t trans_b, mp_var *out);
/* Element-wise with broadcasting: each operand is rows x cols, 1 x cols,
 * rows x 1 or 1 x 1, and the shapes must agree dimension by dimension. */
MP_API mp_status mp_add(mp_tape *tape, mp_var a, mp_var b, mp_var *out);
MP_API mp_status mp_sub(mp_tape *tape, mp_var a, mp_var b, mp_var *out);
MP_API mp_status mp_mul(mp_tape *tape, mp_var a, mp_var b, mp_var *out);
MP_API mp_status mp_div(mp_tape *tape, mp_var a, mp_var b, mp_var *out);
MP_API mp_status mp_scale(mp_tape *tape, mp_var a, float s, mp_var *out);
MP_API mp_status mp_add_scalar(mp_tape *tape, mp_var a, float s, mp_var *out);
MP_API mp_status mp_sum(mp_tape *tape, mp_var a, int32_t reduce, mp_var *out);
MP_API mp_status mp_mean(mp_tape *tape, mp_var a, int32_t reduce, mp_var *out);
MP_API mp_status mp_relu(mp_tape *tape, mp_var a, mp_var *out);
MP_API mp_status mp_tanh(mp_tape *tape, mp_var a, mp_var *out);
MP_API mp_status mp_sigmoid(mp_tape *tape, mp_var a, mp_var *out);
MP_API mp_status mp_gelu(mp_tape *tape, mp_var a, mp_var *out);
MP_API mp_status mp_exp(mp_tape *tape, mp_var a, mp_var *out);
MP_API mp_status mp_log(mp_tape *tape, mp_var a, mp_var *out);
MP_API mp_status mp_sqrt(mp_tape *tape, mp_var a, mp_var *out);
MP_API mp_status mp_square(mp_tape *tape, mp_var a, mp_var *out);
/* Row-wise softmax / log-softmax (max taken per row; -inf entries give 0).
 * MP_ERR_NOT_FINITE for a row that is all -inf. */
MP_API mp_status mp_softmax(mp_tape *tape, mp_var a, mp_var *out);
MP_API mp_status mp_log_softmax(mp_tape *tape, mp_var a, mp_var *out);
/* Mean over rows of -log softmax(logits)[row, labels[row]]; labels copied,
 * n == rows (else MP_ERR_SHAPE_MISMATCH), each in [0, cols) (else
 * MP_ERR_RANGE); MP_ERR_NOT_FINITE for a row that is all -inf. -> 1 x 1 */
MP_API mp_status mp_cross_entropy(mp_tape *tape, mp_var logits, const int32_t *labels, size_t n, mp_var *out);
/* Mean over all elements of (pred - target)^2; equal shapes. -> 1 x 1 */
MP_API mp_status mp_mse(mp_tape *tape, mp_var pred, mp_var target, mp_var *out);
/* Row-wise layer norm (biased variance, as PyTorch): (x - mean) /
 * sqrt(var + eps) * gamma + beta; gamma and beta are 1 x cols or
 * MP_VAR_NONE; 0 < eps < 1. */
MP_API mp_status mp_layer_norm(mp_tape *tape, mp_var x, mp_var gamma, mp_var beta, float eps, mp_var *out);
/* out[i] = table[idx[i]] (embedding lookup); idx copied, n >= 1, each in
 * [0, rows) (else MP_ERR_RANGE); repeated indices accumulate. -> n x cols */
MP_API mp_status mp_gather_rows(mp_tape *tape, mp_var table, const int32_t *idx, size_t n, mp_var *out);
/* Stacks b below a (MP_AXIS_ROWS: equal cols) or to its right (MP_AXIS_COLS:
 * equal rows). */
MP_API mp_status mp_concat(mp_tape *tape, mp_var a, mp_var b, int32_t axis, mp_var *out);
/* len rows (MP_AXIS_ROWS) or columns (MP_AXIS_COLS) of a from start;
 * MP_ERR_RANGE if they do not fit. */
MP_API mp_status mp_slice(mp_tape *tape, mp_var a, int32_t axis, int32_t start, int32_t len, mp_var *out);
/* Same values in row-major order as rows x cols (the count must match). */
MP_API mp_status mp_reshape(mp_tape *tape, mp_var a, int32_t rows, int32_t cols, mp_var *out);
/* cols x rows. */
MP_API mp_status mp_transpose(mp_tape *tape, mp_var a, mp_var *out);
/* x: N x (C*H*W); w: F x (C*k*k) (PyTorch's weight.reshape(F, -1)); bias:
 * 1 x F or MP_VAR_NONE; zero padding; 0 <= pad < k <= H + 2*pad.
 * -> N x (F*Ho*Wo), Ho = (H + 2*pad - k)/stride + 1 (im2col + sgemm). */
MP_API mp_status mp_conv2d(mp_tape *tape, mp_var x, mp_var w, mp_var bias, int32_t channels,
                           int32_t height, int32_t width, int32_t kernel, int32_t stride,
                           int32_t pad, mp_var *out);
/* 2x2 max-pool, stride 2, on N x (C*H*W) (H and W even) -> N x (C*H/2*W/2);
 * ties go to the first maximum in row-major order. */
MP_API mp_status mp_maxpool2d(mp_tape *tape, mp_var x, int32_t channels, int32_t height, int32_t width, mp_var *out);

/* Batched matmul for attention: a holds `batch` stacked blocks of equal
 * rows ((batch*m) x k, or (batch*k) x m when trans_a), b likewise; block i
 * of the result is op(A_i) op(B_i). -> (batch*m) x n */
MP_API mp_status mp_batch_matmul(mp_tape *tape, mp_var a, mp_var b, int32_t batch,
                                 int32_t trans_a, int32_t trans_b, mp_var *out);
/* (batch*seq) x (heads*dh) -> (batch*heads*seq) x dh, head-major per example. */
MP_API mp_status mp_split_heads(mp_tape *tape, mp_var x, int32_t batch, int32_t seq, int32_t heads, mp_var *out);
/* Inverse of mp_split_heads. */
MP_API mp_status mp_merge_heads(mp_tape *tape, mp_var x, int32_t batch, int32_t seq, int32_t heads, mp_var *out);

#ifdef __cplusplus
}
#endif
#endif
