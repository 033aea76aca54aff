/* Internal core helpers shared by every module. Not installed. */
#ifndef MP_CORE_INTERNAL_H
#define MP_CORE_INTERNAL_H

#include "metaprompt.h"
#include <stdarg.h>
#include <string.h>

#define MP_ERRMSG_LEN 512

#if defined(__GNUC__)
#  define MP_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#  define MP_PRINTF(a, b)
#endif

/* Records a failure: formats the message into the thread-local last error
 * and, when handle_err is not NULL, into the handle's message buffer
 * (MP_ERRMSG_LEN bytes). Returns st so callers can `return mp__fail(...)`. */
mp_status mp__fail(char *handle_err, mp_status st, const char *fmt, ...) MP_PRINTF(3, 4);
mp_status mp__vfail(char *handle_err, mp_status st, const char *fmt, va_list ap);
/* Copies the thread-local message into a handle's buffer (after a failing
 * nested call that only wrote the thread-local message). Returns st. */
mp_status mp__fail_propagate(char *handle_err, mp_status st);
/* Re-issues the message of a failed nested call (msg, or the thread-local
 * message when msg is NULL) as the public function fn's:
 * "<fn>: <context>: <message>" (no context when NULL), the message stripped
 * of a leading "<fn>: " or "<internal>: " (the prefix an internal step uses
 * when it serves several public functions). Returns st. */
mp_status mp__fail_in(char *handle_err, mp_status st, const char *fn, const char *context, const char *internal,
                      const char *msg);

/* One-line checks. `herr` is the handle's message buffer or NULL. */
#define MP_REQUIRE(cond, herr, st, ...)                                     \
    do {                                                                    \
        if (!(cond)) return mp__fail((herr), (st), __VA_ARGS__);            \
    } while (0)
/* The message names the argument as the C expression p: use it where p is
 * the parameter's name in the public header too. Otherwise (a definition
 * whose parameter is named differently, e.g. `m` for the header's `meta`)
 * MP_REQUIRE_ARG with the header's name; tests/test_arg_names.c checks
 * every public function against its header. */
#define MP_REQUIRE_PTR(p, herr, fn) MP_REQUIRE_ARG(p, #p, herr, fn)
#define MP_REQUIRE_ARG(p, name, herr, fn)                                    \
    MP_REQUIRE((p) != NULL, (herr), MP_ERR_NULL_POINTER, "%s: argument '%s' is NULL", (fn), (name))

/* ---- handle kinds ----------------------------------------------------------
 * Every public opaque handle (struct mp_config, mp_model, mp_prompt,
 * mp_tape, mp_dataset, mp_task, mp_sampler, mp_meta) has as its FIRST
 * member `uint32_t handle_kind`, set by every constructor to its MP__KIND_* value
 * and overwritten with MP__KIND_DEAD(kind) by its destroy function before
 * it frees anything (mp__handle_destroying), so that
 * a handle of another kind (a wrong cast, a wrong void pointer from an FFI)
 * is refused with MP_ERR_INVALID_ARGUMENT instead of being used. The check
 * is one load and one compare; the failure path is out of line. */
#define MP__KIND_CONFIG  0x6d43f1a5u
#define MP__KIND_MODEL   0x6d4d0d31u
#define MP__KIND_PROMPT  0x6d509e7bu
#define MP__KIND_TAPE    0x6d7a9e0cu
#define MP__KIND_DATASET 0x6d44a7a2u
#define MP__KIND_TASK    0x6d7a5c94u
#define MP__KIND_SAMPLER 0x6d53e3d6u
#define MP__KIND_META    0x6d3e7a18u
#define MP__KIND_DEAD(k) ((k) ^ 0xdead0000u) /* what a destroyed handle's tag becomes */
/* The kind tag of a handle: its first member. Read through memcpy (one
 * load all the same): a foreign pointer need not be aligned, and a
 * misaligned uint32_t load would be undefined behaviour. */
static inline uint32_t mp__kind_of(const void *p)
{
    uint32_t k;
    memcpy(&k, p, sizeof k);
    return k;
}
#define MP__KIND_OF(p) mp__kind_of((const void *)(p))
/* "mp_sampler" for MP__KIND_SAMPLER and so on, NULL for any other value. */
const char *mp__kind_name(uint32_t kind);
/* The failure of a kind check (p not NULL, its tag not want): "<fn>:
 * argument '<name>' is not an <want> handle (it is an <other>)", or "(it is
 * a destroyed <kind>)", or "(unknown tag 0x...; a destroyed or foreign
 * pointer?)", recorded as mp__fail(herr, MP_ERR_INVALID_ARGUMENT, ...).
 * herr must not belong to p (nothing is written into memory of the wrong
 * type): NULL, or the buffer of another handle already checked. */
mp_status mp__bad_kind(char *herr, const void *p, uint32_t want, const char *name, const char *fn);
/* A handle argument: NULL -> MP_ERR_NULL_POINTER ("argument '<name>' is
 * NULL", as MP_REQUIRE_ARG), another kind -> mp__bad_kind. Nothing but the
 * tag is read before the check passes. */
#define MP_REQUIRE_HANDLE_ARG(p, name, KIND, herr, fn)                                         \
    do {                                                                                       \
        MP_REQUIRE_ARG(p, name, herr, fn);                                                     \
        if (MP__KIND_OF(p) != (KIND)) return mp__bad_kind((herr), (p), (KIND), (name), (fn));  \
    } while (0)
#define MP_REQUIRE_HANDLE(p, KIND, herr, fn) MP_REQUIRE_HANDLE_ARG(p, #p, KIND, herr, fn)
/* An optional handle argument: NULL passes, another kind is refused. */
#define MP_OPTIONAL_HANDLE_ARG(p, name, KIND, herr, fn)                                        \
    do {                                                                                       \
        if ((p) && MP__KIND_OF(p) != (KIND)) return mp__bad_kind((herr), (p), (KIND), (name), (fn)); \
    } while (0)
#define MP_OPTIONAL_HANDLE(p, KIND, herr, fn) MP_OPTIONAL_HANDLE_ARG(p, #p, KIND, herr, fn)
/* An array of n handles of one kind, e.g. mp_task *const *tasks: a NULL
 * element -> MP_ERR_NULL_POINTER "<fn>: <name>[i] is NULL", another kind ->
 * mp__bad_kind naming '<name>[i]'. The array itself must not be NULL. */
mp_status mp__require_handles(char *herr, const void *const *p, size_t n, uint32_t kind, const char *name,
                              const char *fn);
/* For the functions that return no status. mp_<type>_error(): NULL for a
 * handle of the right kind (the caller returns its message), "" for NULL,
 * else the recorded kind failure (the thread-local message). */
const char *mp__handle_error(const void *p, uint32_t kind, const char *name, const char *fn);
/* mp_<type>_destroy(): 1 when p is a handle of this kind, whose tag it then
 * marks destroyed (the caller frees it); 0 for NULL, and 0 for another kind
 * after recording the failure in the thread-local message and logging it at
 * MP_LOG_ERROR (nothing is freed). */
int mp__handle_destroying(void *p, uint32_t kind, const char *name, const char *fn);

#define MP_TRY(expr)                                                        \
    do {                                                                    \
        mp_status mp__st_ = (expr);                                         \
        if (mp__st_ != MP_OK) return mp__st_;                               \
    } while (0)

/* Allocation through the installed hook. mp__alloc memory is 64-byte
 * aligned. mp__calloc zeroes and checks n*size for overflow. */
void *mp__alloc(size_t size);
void *mp__calloc(size_t n, size_t size);
void mp__free(void *p);
/* Overflow-checked multiply: returns 0 and stores the product, or -1. */
int mp__mul_size(size_t a, size_t b, size_t *out);

/* Logging through the installed callback; a no-op without one. */
void mp__log(int32_t level, const char *fmt, ...) MP_PRINTF(2, 3);

/* ---- counter-based RNG ---------------------------------------------------
 * xoshiro256** seeded by splitmix64 of (seed, stream): a stream is a pure
 * function of its two words, so "episode i of seed s" never depends on
 * call order or threads. */
typedef struct { uint64_t s[4]; } mp__rng;
void mp__rng_seed(mp__rng *r, uint64_t seed, uint64_t stream);
uint64_t mp__rng_next(mp__rng *r);
double mp__rng_uniform(mp__rng *r);          /* [0, 1) with 53 bits */
double mp__rng_normal(mp__rng *r);           /* standard normal */
uint64_t mp__rng_below(mp__rng *r, uint64_t n); /* uniform in [0, n), unbiased */
void mp__rng_shuffle_i32(mp__rng *r, int32_t *a, size_t n);

/* ---- configuration ------------------------------------------------------
 * Each module owns a table of its keys (terminated by key == 0), defined in
 * its own folder; config.c searches them all. */
typedef struct {
    int32_t key;
    const char *name;
    int32_t type;      /* MP_CFG_TYPE_INT or MP_CFG_TYPE_FLOAT */
    double def, min, max;
} mp__key_info;

extern const mp__key_info mp__keys_core[];
extern const mp__key_info mp__keys_model[];
extern const mp__key_info mp__keys_data[];
extern const mp__key_info mp__keys_meta[];

const mp__key_info *mp__key_lookup(int32_t key);
/* Value of a key, or its default when cfg is NULL or the key is unset. */
int64_t mp__cfg_int(const mp_config *cfg, int32_t key);
double mp__cfg_float(const mp_config *cfg, int32_t key);
/* Enumerates the set keys of a config (for checkpoints): index i in
 * [0, mp__cfg_count) gives key, type and value. */
size_t mp__cfg_count(const mp_config *cfg);
void mp__cfg_entry(const mp_config *cfg, size_t i, int32_t *key, int64_t *ival, double *fval);

/* mp_tape_backward_wrt(tape, loss, 0, wrt, n) for a caller that reads only
 * the gradients of wrt[] afterwards (src/meta/task.c, the outer-loop
 * backward): the values of the ops the sweep records live on a recycling
 * scratch region and are reused as soon as no pending gradient holds them, so
 * the peak is the recorded tape plus the sweep's working set. Afterwards the
 * gradients of wrt[] are exact (copied to the arena) and every other variable
 * reads as a zero gradient; the variables the sweep recorded must not be
 * used (their values are gone). Same checks and errors as
 * mp_tape_backward_wrt; results bit-identical to it. */
mp_status mp__tape_backward_wrt_recycle(mp_tape *tape, mp_var loss, const mp_var *wrt, size_t n);

/* What mp__tape_rollback restores: the arena position, its high-water mark
 * and the node count, so a failed call leaves every statistic unchanged. */
typedef struct {
    int32_t cur;
    size_t off, before, high;
    int32_t n;
} mp__mark;

/* A point in a tape's record (what mp__tape_truncate goes back to): a mark
 * and the id base of the record it belongs to. */
typedef struct {
    mp__mark mark;
    uint32_t base;
} mp__tape_point;
mp__tape_point mp__tape_here(const mp_tape *tape);
/* Drops every variable recorded after p and every gradient (as if no
 * backward had run), keeping what was recorded before p: the meta loop's
 * first-order restarts keep a task's frozen part (parameter and data
 * leaves, the forward prefix) instead of recording it again. The dropped
 * variables' ids are reused by what is recorded next. Returns 0 and does
 * nothing when p is not a point of the tape's current record (taken
 * before its last reset, or beyond its end). */
int mp__tape_truncate(mp_tape *tape, const mp__tape_point *p);

/* alpha times mp_batch_matmul over batch = examples * heads items where each of a, b
 * and the output (layout[0..2] = 1) may instead be in the merged multi-head
 * layout of attention, (examples * seq) x (heads * dh): item e*heads + h is
 * then the seq x dh block of example e's rows and head h's columns, used in
 * place. E.g. scores = q k^T per head: (q, k, layout {1, 1, 0}, trans_b 1) with
 * q, k (n*T) x d gives the (n*heads*T) x T blocks; out = p v:
 * (p, v, layout {0, 1, 1}) gives (n*T) x d. It replaces split_heads + batch
 * matmul + merge_heads with no copies; differentiable to every order.
 * Errors: MP_ERR_NULL_POINTER, MP_ERR_UNKNOWN_VARIABLE,
 * MP_ERR_INVALID_ARGUMENT (flags, batch not a multiple of heads, alpha not
 * finite),
 * MP_ERR_SHAPE_MISMATCH. */
mp_status mp__heads_matmul(mp_tape *tape, mp_var a, mp_var b, int32_t batch, int32_t heads, int32_t trans_a,
                           int32_t trans_b, const int32_t layout[3], float alpha, mp_var *out);

/* mp_concat along the columns where a or b may have one row for the
 * other's many: that row is repeated (the prompt of every example, without
 * a product by a column of ones); its gradient sums the rows. Public ids;
 * differentiable to every order.
 * Errors: MP_ERR_NULL_POINTER, MP_ERR_UNKNOWN_VARIABLE, MP_ERR_SHAPE_MISMATCH
 * (rows differ and neither is 1), MP_ERR_INVALID_ARGUMENT (too large). */
mp_status mp__concat_bcast(mp_tape *tape, mp_var a, mp_var b, mp_var *out);

/* A linear layer, op(a) op(b) + bias with bias 1 x n added to every row of
 * the m x n product, as one variable (op linear): the values and
 * derivatives (to every order) of mp_matmul then mp_add without the
 * product's intermediate (each block of rows starts as the bias and its
 * sgemm adds the product; bit for bit the pair's on OpenBLAS kernels that
 * add C once, see gemm_plain in src/tape/ops_matmul.c). Any of a, b and
 * bias may or may not require a gradient.
 * Errors: those of mp_matmul (named mp__linear), MP_ERR_UNKNOWN_VARIABLE
 * for bias, and MP_ERR_SHAPE_MISMATCH when bias is not 1 x n. */
mp_status mp__linear(mp_tape *tape, mp_var a, mp_var b, mp_var bias, int32_t trans_a, int32_t trans_b,
                     mp_var *out);
/* x * s + b as one variable (op mul_add), s and b each broadcast to x's
 * shape (x's shape, 1 x cols, rows x 1 or 1 x 1): the values and derivatives
 * of mp_mul then mp_add, bit for bit, without the product's intermediate (a
 * per-channel affine map such as conv's instance norm; mp_layer_norm uses
 * the same op for y * gamma + beta).
 * Errors: MP_ERR_NULL_POINTER, MP_ERR_UNKNOWN_VARIABLE, MP_ERR_SHAPE_MISMATCH
 * (s or b does not broadcast to x's shape). */
mp_status mp__scale_shift(mp_tape *tape, mp_var x, mp_var s, mp_var b, mp_var *out);

#endif
