/* Tape internals shared by the engine (tape.c) and the op files (ops_*.c).
 * Not installed. See docs/TAPE.md for the design. */
#ifndef MP_TAPE_INTERNAL_H
#define MP_TAPE_INTERNAL_H

#include "core/internal.h"

/* Every op of the tape: public ones and the helpers their backward passes
 * record (masks, scatters, col2im, ...). X(ENUM, name). The order is the
 * op code; the table in tape.c is generated from this list. */
#define MP__OPS(X)                                                                         \
    X(LEAF, leaf) X(FILL, fill)                                                            \
    X(ADD, add) X(SUB, sub) X(MUL, mul) X(DIV, div) X(SCALE, scale)                        \
    X(ADD_SCALAR, add_scalar) X(SUM, sum) X(EXPAND, expand)                                \
    X(RELU, relu) X(RELU_MASK, relu_mask) X(TANH, tanh) X(TANH_GRAD, tanh_grad)            \
    X(SIGMOID, sigmoid) X(SIGMOID_GRAD, sigmoid_grad) X(GELU, gelu)                        \
    X(EXP, exp) X(LOG, log) X(SQRT, sqrt) X(SQRT_GRAD, sqrt_grad) X(SQUARE, square)        \
    X(MATMUL, matmul) X(BMM, bmm)                                                          \
    X(SOFTMAX, softmax) X(SOFTMAX_GRAD, softmax_grad) X(LOG_SOFTMAX, log_softmax)                  \
    X(LOG_SOFTMAX_GRAD, log_softmax_grad) X(PICK, pick) X(UNPICK, unpick)        \
    X(SLICE, slice) X(PAD, pad) X(CONCAT, concat) X(RESHAPE, reshape)                      \
    X(TRANSPOSE, transpose) X(SPLIT_HEADS, split_heads)          \
    X(MERGE_HEADS, merge_heads) X(GATHER_ROWS, gather_rows) X(SCATTER_ROWS, scatter_rows)  \
    X(GATHER_FLAT, gather_flat) X(SCATTER_FLAT, scatter_flat) X(IM2COL, im2col)            \
    X(COL2IM, col2im) X(LN_RSTD, ln_rstd) X(LN_NORM, ln_norm)    \
    X(LN_BWD, ln_bwd) X(LN_BWD_Y, ln_bwd_y) X(LN_BWD_R, ln_bwd_r) X(GELU_MUL, gelu_mul)                       \
    X(SOFTMAX_GRAD_Y, softmax_grad_y) X(LINEAR, linear) X(MUL_ADD, mul_add)

enum {
#define MP__X_ENUM(E, n) MP__OP_##E,
    MP__OPS(MP__X_ENUM)
#undef MP__X_ENUM
    MP__OP_COUNT_
};

/* linear (op(a) op(b) + bias) and mul_add (a * b + c) have a third input:
 * its node index is attr[MP__ATTR_IN2] (the slot a batch-1 product leaves
 * free). The engine reads it through mp__in2 wherever it visits inputs (the
 * requires-grad flag of a new node, the dependency marking of
 * mp_tape_backward_wrt); nothing else in the engine looks at inputs. */
#define MP__ATTR_IN2 5

/* Node flags. */
#define MP__NODE_RG     1 /* requires grad: a differentiable path to a grad leaf */
#define MP__NODE_BORROW 2 /* val points at caller memory */
#define MP__NODE_DEP    4 /* depends on a wrt variable of the running mp_tape_backward_wrt */
#define MP__NODE_SCRATCH 8 /* val is (or aliases) a buffer of the recycling scratch region */
#define MP__NODE_KEEP   16 /* a wrt variable of the running recycling backward */
#define MP__NODE_ACC    32 /* the forward kernel adds its result onto val (mp__record_acc) */

/* One recorded variable: 64 bytes, one cache line. Inputs and attributes
 * are enough for every op; index arrays (labels, gather rows, argmax) live
 * on the arena and are shared, never written after recording. */
typedef struct {
    uint8_t op, flags;
    int16_t spare_;
    int32_t rows, cols;
    mp_var in[2];    /* MP_VAR_NONE when unused */
    int32_t attr[6]; /* op-specific integers (trans flags, axis, conv geometry, ...) */
    float f;         /* op-specific float (scale, scalar, gelu order as float is not used) */
    float *val;      /* rows*cols values, 64-byte aligned on the arena (or borrowed) */
    const int32_t *idx;
} mp__node;

/* Arena: a list of blocks; reset coalesces them into one block so that the
 * steady state of record/backward/reset cycles is one contiguous block. */
#define MP__ARENA_MAX_BLOCKS 40
typedef struct {
    char *blk[MP__ARENA_MAX_BLOCKS];
    size_t cap[MP__ARENA_MAX_BLOCKS];
    int32_t nblk, cur;
    size_t off;       /* offset in block cur */
    size_t before;    /* bytes used in blocks before cur */
    size_t high;      /* high-water mark of before + off */
} mp__arena;

/* Scratch region of a recycling backward (mp__tape_backward_wrt_recycle):
 * blocks as the arena's (merged at reset), carved into buffers with a 64-byte
 * header; a buffer is reference-counted by the gradient slots that hold it
 * and goes back to an exact-size free list once no slot holds it. */
#define MP__SCRATCH_CLASSES 64
typedef struct mp__sbuf {
    size_t size;           /* payload bytes (64-aligned) */
    struct mp__sbuf *next; /* free list or this step's list */
    int32_t refs;          /* gradient slots holding it */
    int32_t listed;        /* on this step's list */
    int32_t cls;           /* its size class, -1 when the class table was full */
} mp__sbuf;
typedef struct {
    size_t size[MP__SCRATCH_CLASSES];
    mp__sbuf *head[MP__SCRATCH_CLASSES];
    int32_t ncls;
    mp__sbuf *step; /* buffers to check at the end of the current node's backward */
} mp__scratch;

/* mp__mark (what mp__tape_rollback restores) is in core/internal.h, as part
 * of mp__tape_point. */
/* Public ids. Inside the library a variable is the index of its node
 * (0 <= i < n); the id the caller sees is that index plus the tape's base,
 * base = tag << MP__ID_INDEX_BITS with a tag in [1, MP__ID_TAGS]:
 *   bit 31 = 0 (ids are positive), bits 24..30 = tag, bits 0..23 = index.
 * The tag is derived from a process-wide count of tapes when it is created and steps
 * to the next value (1..127, cyclically) at every mp_tape_reset, so an id
 * recorded before one of the last 126 resets, or taken from another tape
 * whose current tag differs, fails the check instead of naming whatever node
 * now has its index. 0 and negative values are never ids. A tape therefore
 * holds at most MP__ID_MAX_NODES variables between resets. */
#define MP__ID_INDEX_BITS 24
#define MP__ID_MAX_NODES ((int32_t)1 << MP__ID_INDEX_BITS)
#define MP__ID_TAGS 127

#define MP__TCOPY_FLOATS 16384 /* 64 KiB */

struct mp_tape {
    uint32_t handle_kind; /* MP__KIND_TAPE (src/core/internal.h) */
    mp__node *nodes;
    mp_var *grad;  /* committed gradients of the last backward (valid for indices < grad_n) */
    mp_var *gwork; /* gradients being accumulated by a running backward */
    int32_t n, cap;
    uint32_t id_base; /* tag << MP__ID_INDEX_BITS: public id = index + id_base */
    int32_t grad_n;   /* node count when the last backward finished; -1: none */
    int32_t no_grad;  /* recording inside backward with create_graph = 0 */
    int32_t prune;    /* running backward only propagates into MP__NODE_DEP nodes */
    int32_t recycle;  /* running backward allocates values on the scratch region */
    mp__arena arena;
    mp__arena sarena; /* blocks of the scratch region */
    mp__scratch scratch;
    float *tcopy;     /* MP__TCOPY_FLOATS floats: a transposed weight (ops_matmul.c) */
    char err[MP_ERRMSG_LEN];
};

typedef void (*mp__fwd_fn)(mp_tape *t, mp__node *out);
/* Records the vector-Jacobian product of node v for the upstream gradient g
 * and accumulates it into the inputs' gradients with mp__acc. */
typedef mp_status (*mp__bwd_fn)(mp_tape *t, mp_var v, mp_var g);

#define MP__X_DECL(E, n)                                                                 \
    void mp__fwd_##n(mp_tape *t, mp__node *out);                                         \
    mp_status mp__bwd_##n(mp_tape *t, mp_var v, mp_var g);
MP__OPS(MP__X_DECL)
#undef MP__X_DECL

/* ---- engine services for the op files ------------------------------------- */
static inline mp__node *mp__nd(const mp_tape *t, mp_var v) { return &t->nodes[v]; }
/* The third input of node n, MP_VAR_NONE for ops with two. */
static inline mp_var mp__in2(const mp__node *n)
{
    return n->op == MP__OP_LINEAR || n->op == MP__OP_MUL_ADD ? n->attr[MP__ATTR_IN2] : MP_VAR_NONE;
}
static inline int mp__rg(const mp_tape *t, mp_var v)
{
    return v != MP_VAR_NONE && (t->nodes[v].flags & MP__NODE_RG);
}

/* Whether the running backward must propagate into v: v requires grad and,
 * under mp_tape_backward_wrt, depends on one of the wrt variables. */
static inline int mp__need(const mp_tape *t, mp_var v)
{
    if (v == MP_VAR_NONE) return 0;
    uint8_t f = t->nodes[v].flags;
    return (f & MP__NODE_RG) && (!t->prune || (f & MP__NODE_DEP));
}

/* Sum of n floats with eight independent partial sums: the loop vectorizes
 * without reassociation flags and the rounding error grows like n/8. */
static inline double mp__sum8(const float *restrict x, size_t n)
{
    float acc[8] = {0};
    size_t k = 0;
    for (; k + 8 <= n; k += 8)
        for (int l = 0; l < 8; l++) acc[l] += x[k + l];
    double s = 0;
    for (; k < n; k++) s += x[k];
    for (int l = 0; l < 8; l++) s += acc[l];
    return s;
}

/* Sum of a[k] * b[k] with eight independent partial sums (as mp__sum8). */
static inline double mp__dot8(const float *restrict a, const float *restrict b, size_t n)
{
    float acc[8] = {0};
    size_t k = 0;
    for (; k + 8 <= n; k += 8)
        for (int l = 0; l < 8; l++) acc[l] += a[k + l] * b[k + l];
    double s = 0;
    for (; k < n; k++) s += a[k] * b[k];
    for (int l = 0; l < 8; l++) s += acc[l];
    return s;
}

/* The backward of an op that only sweeps recording constants (create_graph
 * = 0) record, so that none ever requires a gradient: unreachable, an
 * internal-error status naming the op if it were reached. */
mp_status mp__bwd_constant_only(mp_tape *t, mp_var v);

/* Records one op: allocates the output (rows x cols) on the arena, fills
 * the node, runs the forward kernel. attr may be NULL (zeros). On failure
 * nothing is recorded. */
mp_status mp__record(mp_tape *t, int32_t op, int32_t rows, int32_t cols, mp_var a, mp_var b,
                     const int32_t *attr, float f, const int32_t *idx, mp_var *out);
/* Like mp__record but the output aliases `alias` (no allocation, no forward). */
mp_status mp__record_alias(mp_tape *t, int32_t op, int32_t rows, int32_t cols, mp_var a,
                           float *alias, mp_var *out);
/* Arena allocation (64-byte aligned) for index arrays; NULL on OOM. */
void *mp__arena_alloc(mp_tape *t, size_t bytes);
mp__mark mp__tape_mark(const mp_tape *t);
void mp__tape_rollback(mp_tape *t, mp__mark m);
/* Adds contribution c to the gradient of v being accumulated (no-op when v
 * does not require grad). */
mp_status mp__acc(mp_tape *t, mp_var v, mp_var c);
/* In a recycling backward, the gradient slot of v when a rows x cols
 * contribution can be added onto its buffer in place: the slot is the only
 * holder of a whole scratch buffer of that shape (nothing else can read the
 * old sum). MP_VAR_NONE otherwise (then use mp__record and mp__acc). */
mp_var mp__acc_slot(const mp_tape *t, mp_var v, int32_t rows, int32_t cols);
/* Records op (arguments as mp__record, shape of slot) with its result added
 * onto slot's buffer, slot from mp__acc_slot(t, v, ...), and makes the new
 * node v's gradient: mp__record then mp__acc without the sum's pass and
 * buffer. The op's forward kernel must honour MP__NODE_ACC (adding its
 * result onto val with the same rounding as the add: products, see
 * mp__record_to for the others). */
mp_status mp__record_acc(mp_tape *t, mp_var v, mp_var slot, int32_t op, mp_var a, mp_var b, const int32_t *attr,
                         float f);
/* mp__record (no index array) of a rows x cols contribution then mp__acc
 * into v's gradient; in a recycling sweep, through mp__record_acc when the
 * slot allows and op's kernel honours MP__NODE_ACC (add, sub, mul, ln_bwd,
 * ln_bwd_y, ln_bwd_r, gelu_mul). Bit for bit the same sum. */
mp_status mp__record_to(mp_tape *t, mp_var v, int32_t op, int32_t rows, int32_t cols, mp_var a, mp_var b,
                        const int32_t *attr, float f);

/* Public id of the node with index i (i < n). */
static inline mp_var mp__pub(const mp_tape *t, mp_var i) { return (mp_var)((uint32_t)i + t->id_base); }
/* Ends a public op that recorded node *r with status st: on success the
 * caller's *out receives its public id; on failure *out is untouched. */
static inline mp_status mp__emit(const mp_tape *t, mp_status st, const mp_var *r, mp_var *out)
{
    if (st == MP_OK) *out = mp__pub(t, *r);
    return st;
}

/* Argument check shared by the public functions: *v must be an id of this
 * tape recorded since the last reset; it is replaced by its node index.
 * One subtraction and one unsigned compare: a wrong tag, a negative value
 * or an index >= n all land outside [0, n). The error path is out of line. */
mp_status mp__bad_var(mp_tape *t, const char *fn, const char *arg, mp_var v);
static inline mp_status mp__check_var(mp_tape *t, const char *fn, const char *arg, mp_var *v)
{
    uint32_t i = (uint32_t)*v - t->id_base;
    if (i < (uint32_t)t->n) {
        *v = (mp_var)i;
        return MP_OK;
    }
    return mp__bad_var(t, fn, arg, *v);
}
/* Checks the public id held in the variable v and turns it into an index. */
#define MP__VAR(t, fn, v) MP_TRY(mp__check_var((t), (fn), #v, &(v)))
/* The tape argument of every public tape function: NULL or another kind of
 * handle is refused before anything else of it is read. */
#define MP__REQUIRE_TAPE(t, fn) MP_REQUIRE_HANDLE_ARG(t, "tape", MP__KIND_TAPE, NULL, fn)
#define MP__START(t, out, fn)                                                                \
    do {                                                                                     \
        MP__REQUIRE_TAPE(t, fn);                                                             \
        MP_REQUIRE_PTR(out, (t)->err, (fn));                                                 \
    } while (0)

/* Unchecked recorders used by public ops and by backward passes. */
mp_status mp__add(mp_tape *t, mp_var a, mp_var b, mp_var *out);
mp_status mp__sub(mp_tape *t, mp_var a, mp_var b, mp_var *out);
mp_status mp__mul(mp_tape *t, mp_var a, mp_var b, float s, mp_var *out); /* s*a*b */
mp_status mp__div(mp_tape *t, mp_var a, mp_var b, mp_var *out);
mp_status mp__scale(mp_tape *t, mp_var a, float s, mp_var *out);
mp_status mp__add_scalar(mp_tape *t, mp_var a, float s, mp_var *out);
mp_status mp__sum(mp_tape *t, mp_var a, int32_t reduce, float s, mp_var *out); /* s*sum */
mp_status mp__expand(mp_tape *t, mp_var a, int32_t rows, int32_t cols, float s, mp_var *out);
/* Reduces g (broadcast result) back to rows x cols by summing. */
mp_status mp__sum_to(mp_tape *t, mp_var g, int32_t rows, int32_t cols, mp_var *out);
mp_status mp__fill(mp_tape *t, int32_t rows, int32_t cols, float value, mp_var *out);
mp_status mp__unary(mp_tape *t, int32_t op, mp_var a, float f, int32_t attr0, mp_var *out);
mp_status mp__binary(mp_tape *t, int32_t op, mp_var a, mp_var b, mp_var *out);
mp_status mp__matmul(mp_tape *t, mp_var a, mp_var b, int32_t ta, int32_t tb, mp_var *out);
mp_status mp__bmm(mp_tape *t, mp_var a, mp_var b, int32_t batch, int32_t ta, int32_t tb, mp_var *out);
/* a * b + c with b and c broadcast to a's shape (each a's shape, 1 x cols,
 * rows x 1 or 1 x 1): one node (mul_add), e.g. layer norm's affine. */
mp_status mp__mul_add(mp_tape *t, mp_var a, mp_var b, mp_var c, mp_var *out);
/* C (m x n, ldc) = alpha A B^T, plus C when acc, A m x k (lda), B n x k
 * (ldb), with an AVX-512 kernel (kernel_nt.c) when the CPU has one and
 * n <= 32, k <= 16, alpha != 0 (and a power of two when acc): then returns
 * 1; otherwise 0 and nothing is written. */
int mp__nt_small(int32_t m, int32_t n, int32_t k, float alpha, const float *A, int32_t lda, const float *B,
                 int32_t ldb, int acc, float *C, int32_t ldc);
/* Batched product with a shared (single-block) a or b, or a summed output. */
mp_status mp__bmm_ex(mp_tape *t, mp_var a, mp_var b, int32_t batch, int32_t ta, int32_t tb, int32_t sa, int32_t sb,
                     int32_t so, mp_var *out);
mp_status mp__concat(mp_tape *t, mp_var a, mp_var b, int32_t axis, mp_var *out);
mp_status mp__slice(mp_tape *t, mp_var a, int32_t axis, int32_t start, int32_t len, mp_var *out);
mp_status mp__pad(mp_tape *t, mp_var a, int32_t axis, int32_t start, int32_t total, mp_var *out);
mp_status mp__reshape(mp_tape *t, mp_var a, int32_t rows, int32_t cols, mp_var *out);
mp_status mp__transpose(mp_tape *t, mp_var a, mp_var *out);
mp_status mp__heads(mp_tape *t, int32_t op, mp_var x, int32_t batch, int32_t seq, int32_t heads, mp_var *out);
mp_status mp__pick(mp_tape *t, mp_var a, const int32_t *labels, mp_var *out);
mp_status mp__unpick(mp_tape *t, mp_var g, const int32_t *labels, int32_t cols, mp_var *out);
mp_status mp__gather_rows(mp_tape *t, mp_var table, const int32_t *idx, int32_t n, mp_var *out);
mp_status mp__scatter_rows(mp_tape *t, mp_var g, const int32_t *idx, int32_t rows, mp_var *out);
mp_status mp__gather_flat(mp_tape *t, mp_var x, const int32_t *idx, int32_t rows, int32_t cols, mp_var *out);
mp_status mp__scatter_flat(mp_tape *t, mp_var g, const int32_t *idx, int32_t rows, int32_t cols, mp_var *out);
/* Layer norm without affine: (x - mean) / sqrt(var + eps) per row; the node
 * keeps each row's rstd (see src/tape/ops_norm.c). */
mp_status mp__ln_norm(mp_tape *t, mp_var x, float eps, mp_var *out);
mp_status mp__im2col(mp_tape *t, mp_var x, const int32_t *geom, mp_var *out);
mp_status mp__col2im(mp_tape *t, mp_var g, const int32_t *geom, mp_var *out);

#endif
