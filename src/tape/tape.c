/* The tape engine: arena, node table, leaves, reading, the reverse sweep.
 * Ops live in ops_*.c, each op's forward and backward side by side. */
#include "tape/tape_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdatomic.h>
#include <string.h>

#define ARENA_FIRST_BLOCK ((size_t)1 << 16)
#define NODES_FIRST_CAP 256

static const struct {
    const char *name;
    mp__fwd_fn fwd;
    mp__bwd_fn bwd;
} op_table[MP__OP_COUNT_] = {
#define MP__X_TABLE(E, n) [MP__OP_##E] = {#n, mp__fwd_##n, mp__bwd_##n},
    MP__OPS(MP__X_TABLE)
#undef MP__X_TABLE
};

/* ---- arena ---------------------------------------------------------------- */
static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

static void arena_note(mp__arena *a)
{
    size_t used = a->before + a->off;
    if (used > a->high) a->high = used;
}

static void *arena_alloc(mp__arena *a, size_t bytes)
{
    bytes = align64(bytes ? bytes : 1);
    for (;;) {
        if (a->cur < a->nblk && a->off + bytes <= a->cap[a->cur]) break;
        if (a->cur + 1 < a->nblk) { /* a block kept from an earlier cycle */
            a->before += a->off;
            a->cur++;
            a->off = 0;
            continue;
        }
        if (a->nblk >= MP__ARENA_MAX_BLOCKS) return NULL;
        size_t last = a->nblk ? a->cap[a->nblk - 1] : ARENA_FIRST_BLOCK / 2;
        size_t cap = 2 * last > bytes ? 2 * last : bytes;
        char *p = mp__alloc(cap);
        if (!p) return NULL;
        if (a->nblk) {
            a->before += a->off;
            a->cur = a->nblk;
        }
        a->blk[a->nblk] = p;
        a->cap[a->nblk++] = cap;
        a->off = 0;
        break;
    }
    void *p = a->blk[a->cur] + a->off;
    a->off += bytes;
    arena_note(a);
    return p;
}

void *mp__arena_alloc(mp_tape *t, size_t bytes) { return arena_alloc(&t->arena, bytes); }

/* ---- scratch region of a recycling backward --------------------------------------- */
static mp__sbuf *sbuf_of(const float *val) { return (mp__sbuf *)(void *)((char *)(uintptr_t)val - 64); }

/* The size class of `bytes`, made on first use; -1 when the table is full
 * (buffers of such a size are simply not reused). */
static int32_t size_class(mp__scratch *s, size_t bytes)
{
    for (int32_t c = 0; c < s->ncls; c++)
        if (s->size[c] == bytes) return c;
    if (s->ncls == MP__SCRATCH_CLASSES) return -1;
    s->size[s->ncls] = bytes;
    s->head[s->ncls] = NULL;
    return s->ncls++;
}

static float *scratch_alloc(mp_tape *t, size_t bytes)
{
    mp__scratch *s = &t->scratch;
    bytes = align64(bytes ? bytes : 1);
    int32_t c = size_class(s, bytes);
    mp__sbuf *b = c >= 0 ? s->head[c] : NULL;
    if (b) {
        s->head[c] = b->next;
    } else {
        b = arena_alloc(&t->sarena, 64 + bytes);
        if (!b) return NULL;
        b->size = bytes;
        b->cls = c;
    }
    b->refs = 0;
    b->listed = 1; /* freed at the end of this step unless a gradient slot takes it */
    b->next = s->step;
    s->step = b;
    return (float *)(void *)((char *)b + 64);
}

static void scratch_ref(mp_tape *t, mp_var v)
{
    if (t->recycle && v != MP_VAR_NONE && (t->nodes[v].flags & MP__NODE_SCRATCH)) sbuf_of(t->nodes[v].val)->refs++;
}

static void scratch_unref(mp_tape *t, mp_var v)
{
    if (!t->recycle || v == MP_VAR_NONE || !(t->nodes[v].flags & MP__NODE_SCRATCH)) return;
    mp__sbuf *b = sbuf_of(t->nodes[v].val);
    if (--b->refs == 0 && !b->listed) {
        b->listed = 1;
        b->next = t->scratch.step;
        t->scratch.step = b;
    }
}

/* End of one node's backward: every buffer allocated or released during it
 * that no gradient slot holds is dead (values are computed when recorded and
 * only gradient slots are read by later steps), so it is put on its size
 * class's free list. */
static void scratch_end_step(mp_tape *t)
{
    mp__scratch *s = &t->scratch;
    mp__sbuf *b = s->step;
    s->step = NULL;
    while (b) {
        mp__sbuf *next = b->next;
        b->listed = 0;
        if (b->refs == 0 && b->cls >= 0) {
            b->next = s->head[b->cls];
            s->head[b->cls] = b;
        }
        b = next;
    }
}

/* Rewinds to empty; several blocks are merged into one big enough for the
 * last cycle so the next cycle needs no allocation at all. */
static void arena_rewind(mp__arena *a)
{
    if (a->nblk > 1) {
        size_t total = 0;
        for (int32_t i = 0; i < a->nblk; i++) total += a->cap[i];
        char *p = mp__alloc(total);
        if (p) { /* on failure keep the blocks: still correct, just not merged */
            for (int32_t i = 0; i < a->nblk; i++) mp__free(a->blk[i]);
            a->blk[0] = p;
            a->cap[0] = total;
            a->nblk = 1;
        }
    }
    a->cur = 0;
    a->off = 0;
    a->before = 0;
}

mp__mark mp__tape_mark(const mp_tape *t)
{
    mp__mark m = {t->arena.cur, t->arena.off, t->arena.before, t->arena.high, t->n};
    return m;
}

mp__tape_point mp__tape_here(const mp_tape *t)
{
    mp__tape_point p = {mp__tape_mark(t), t->id_base};
    return p;
}

/* A rollback that keeps the high-water mark (it is a maximum over time) and
 * drops the gradients. */
int mp__tape_truncate(mp_tape *t, const mp__tape_point *p)
{
    if (p->base != t->id_base || p->mark.n > t->n) return 0;
    mp__mark m = p->mark;
    m.high = t->arena.high;
    mp__tape_rollback(t, m);
    t->grad_n = -1;
    return 1;
}

void mp__tape_rollback(mp_tape *t, mp__mark m)
{
    t->arena.cur = m.cur;
    t->arena.off = m.off;
    t->arena.before = m.before;
    t->arena.high = m.high;
    t->n = m.n;
}

/* ---- nodes ------------------------------------------------------------------- */
static mp_status grow_nodes(mp_tape *t)
{
    if (t->cap >= MP__ID_MAX_NODES)
        return mp__fail(t->err, MP_ERR_OUT_OF_MEMORY,
                        "mp_tape: the tape holds %d variables, the most it can (2^%d); reset it", (int)t->cap,
                        MP__ID_INDEX_BITS);
    int32_t cap = t->cap ? 2 * t->cap : NODES_FIRST_CAP;
    if (cap > MP__ID_MAX_NODES) cap = MP__ID_MAX_NODES;
    mp__node *nodes = mp__alloc((size_t)cap * sizeof *nodes);
    mp_var *grad = mp__alloc((size_t)cap * sizeof *grad);
    mp_var *gwork = mp__alloc((size_t)cap * sizeof *gwork);
    if (!nodes || !grad || !gwork) {
        mp__free(nodes);
        mp__free(grad);
        mp__free(gwork);
        return mp__fail(t->err, MP_ERR_OUT_OF_MEMORY, "mp_tape: out of memory growing the node table to %d nodes",
                        (int)cap);
    }
    if (t->n) {
        memcpy(nodes, t->nodes, (size_t)t->n * sizeof *nodes);
        memcpy(grad, t->grad, (size_t)t->n * sizeof *grad);
        memcpy(gwork, t->gwork, (size_t)t->n * sizeof *gwork);
    }
    mp__free(t->nodes);
    mp__free(t->grad);
    mp__free(t->gwork);
    t->nodes = nodes;
    t->grad = grad;
    t->gwork = gwork;
    t->cap = cap;
    return MP_OK;
}

/* Reserves node slot t->n and its output; the caller commits with t->n++. */
static mp_status new_node(mp_tape *t, int32_t op, int32_t rows, int32_t cols, mp_var a, mp_var b,
                          float *val, mp__node **out)
{
    if (t->n == t->cap) MP_TRY(grow_nodes(t));
    int scratch = 0;
    if (!val) {
        scratch = t->recycle;
        size_t bytes = (size_t)rows * (size_t)cols * sizeof(float);
        val = scratch ? scratch_alloc(t, bytes) : mp__arena_alloc(t, bytes);
        if (!val)
            return mp__fail(t->err, MP_ERR_OUT_OF_MEMORY, "mp_tape: out of memory allocating the %dx%d result of op '%s'",
                            (int)rows, (int)cols, op_table[op].name);
    }
    mp__node *n = &t->nodes[t->n];
    memset(n, 0, sizeof *n);
    n->op = (uint8_t)op;
    n->rows = rows;
    n->cols = cols;
    n->in[0] = a;
    n->in[1] = b;
    n->val = val;
    if (!t->no_grad && (mp__rg(t, a) || mp__rg(t, b))) n->flags = MP__NODE_RG;
    if (scratch) n->flags |= MP__NODE_SCRATCH;
    t->grad[t->n] = MP_VAR_NONE;
    t->gwork[t->n] = MP_VAR_NONE;
    *out = n;
    return MP_OK;
}

mp_status mp__record(mp_tape *t, int32_t op, int32_t rows, int32_t cols, mp_var a, mp_var b,
                     const int32_t *attr, float f, const int32_t *idx, mp_var *out)
{
    mp__mark m = mp__tape_mark(t);
    mp__node *n;
    mp_status st = new_node(t, op, rows, cols, a, b, NULL, &n);
    if (st != MP_OK) {
        mp__tape_rollback(t, m);
        return st;
    }
    if (attr) memcpy(n->attr, attr, sizeof n->attr);
    mp_var c = mp__in2(n); /* a third input (linear, mul_add) */
    if (c != MP_VAR_NONE && !t->no_grad && mp__rg(t, c)) n->flags |= MP__NODE_RG;
    n->f = f;
    n->idx = idx;
    op_table[op].fwd(t, n);
    *out = t->n++;
    return MP_OK;
}

mp_status mp__record_alias(mp_tape *t, int32_t op, int32_t rows, int32_t cols, mp_var a,
                           float *alias, mp_var *out)
{
    mp__node *n;
    MP_TRY(new_node(t, op, rows, cols, a, MP_VAR_NONE, alias, &n));
    if (a != MP_VAR_NONE && (t->nodes[a].flags & MP__NODE_SCRATCH) && alias == t->nodes[a].val)
        n->flags |= MP__NODE_SCRATCH; /* shares its input's scratch buffer and count */
    *out = t->n++;
    return MP_OK;
}

mp_status mp__bad_var(mp_tape *t, const char *fn, const char *arg, mp_var v)
{
    uint32_t tag = (uint32_t)v >> MP__ID_INDEX_BITS, index = (uint32_t)v & (MP__ID_MAX_NODES - 1);
    if (v == MP_VAR_NONE)
        return mp__fail(t->err, MP_ERR_UNKNOWN_VARIABLE, "%s: argument '%s' = -1 is not a variable of this tape "
                        "(MP_VAR_NONE: only optional arguments accept it)", fn, arg);
    if (v <= 0 || tag == 0)
        return mp__fail(t->err, MP_ERR_UNKNOWN_VARIABLE, "%s: argument '%s' = %d is not a variable of this tape "
                        "(not an id returned by a tape)", fn, arg, (int)v);
    if (tag == t->id_base >> MP__ID_INDEX_BITS)
        return mp__fail(t->err, MP_ERR_UNKNOWN_VARIABLE, "%s: argument '%s' = %d is not a variable of this tape "
                        "(index %u, but the tape has %d variables)", fn, arg, (int)v, (unsigned)index, (int)t->n);
    return mp__fail(t->err, MP_ERR_UNKNOWN_VARIABLE, "%s: argument '%s' = %d is not a variable of this tape: it "
                    "was recorded before the last mp_tape_reset or on another tape", fn, arg, (int)v);
}

/* Leaves and constants have no forward kernel and no backward. */
void mp__fwd_leaf(mp_tape *t, mp__node *out) { (void)t, (void)out; }
mp_status mp__bwd_leaf(mp_tape *t, mp_var v, mp_var g) { (void)t, (void)v, (void)g; return MP_OK; }
void mp__fwd_fill(mp_tape *t, mp__node *out)
{
    (void)t;
    size_t n = (size_t)out->rows * (size_t)out->cols;
    for (size_t i = 0; i < n; i++) out->val[i] = out->f;
}
mp_status mp__bwd_fill(mp_tape *t, mp_var v, mp_var g) { (void)t, (void)v, (void)g; return MP_OK; }

mp_status mp__fill(mp_tape *t, int32_t rows, int32_t cols, float value, mp_var *out)
{
    return mp__record(t, MP__OP_FILL, rows, cols, MP_VAR_NONE, MP_VAR_NONE, NULL, value, NULL, out);
}

/* ---- lifetime ---------------------------------------------------------------- */
/* The first id tag of a tape, in [1, MP__ID_TAGS]: 37 times the number of
 * tapes created before it in this process (mod 127). The counter is the
 * only process-wide state of the tape; it affects nothing but which ids are
 * rejected. A tape created where a destroyed one lived (allocators reuse the
 * block at once) so never shares the destroyed tape's tag unless 127 k tapes
 * were created in between, and the step of 37 keeps a new tape's tag away
 * from the tags that the tapes just before it reach by their first resets
 * (each reset steps +1). (An earlier version also hashed the tape's address,
 * which made the tags of two consecutive tapes collide 1 time in 127 when
 * the address differed, as under AddressSanitizer's quarantine.) */
static uint32_t first_tag(void)
{
    static atomic_uint created;
    unsigned n = atomic_fetch_add_explicit(&created, 1u, memory_order_relaxed);
    return 1 + (37u * (n % MP__ID_TAGS)) % MP__ID_TAGS;
}

mp_status mp_tape_create(mp_tape **out)
{
    MP_REQUIRE_PTR(out, NULL, "mp_tape_create");
    mp_tape *t = mp__calloc(1, sizeof *t);
    if (!t) return mp__fail(NULL, MP_ERR_OUT_OF_MEMORY, "mp_tape_create: out of memory");
    t->handle_kind = MP__KIND_TAPE;
    t->grad_n = -1;
    t->id_base = first_tag() << MP__ID_INDEX_BITS;
    t->tcopy = mp__alloc(MP__TCOPY_FLOATS * sizeof(float));
    if (!t->tcopy || grow_nodes(t) != MP_OK || !mp__arena_alloc(t, ARENA_FIRST_BLOCK) ||
        !arena_alloc(&t->sarena, ARENA_FIRST_BLOCK)) {
        mp_tape_destroy(t);
        return mp__fail(NULL, MP_ERR_OUT_OF_MEMORY, "mp_tape_create: out of memory");
    }
    arena_rewind(&t->arena);
    arena_rewind(&t->sarena);
    t->arena.high = 0;
    t->sarena.high = 0;
    *out = t;
    return MP_OK;
}

void mp_tape_destroy(mp_tape *t)
{
    if (!mp__handle_destroying(t, MP__KIND_TAPE, "tape", "mp_tape_destroy")) return;
    for (int32_t i = 0; i < t->arena.nblk; i++) mp__free(t->arena.blk[i]);
    for (int32_t i = 0; i < t->sarena.nblk; i++) mp__free(t->sarena.blk[i]);
    mp__free(t->tcopy);
    mp__free(t->nodes);
    mp__free(t->grad);
    mp__free(t->gwork);
    mp__free(t);
}

mp_status mp_tape_reset(mp_tape *t)
{
    MP__REQUIRE_TAPE(t, "mp_tape_reset");
    arena_rewind(&t->arena);
    arena_rewind(&t->sarena);
    t->n = 0;
    t->grad_n = -1;
    t->no_grad = 0;
    /* The next tag (1..MP__ID_TAGS, cyclically): ids of the last 126 cycles fail the check. */
    t->id_base = ((t->id_base >> MP__ID_INDEX_BITS) % MP__ID_TAGS + 1) << MP__ID_INDEX_BITS;
    return MP_OK;
}

const char *mp_tape_error(const mp_tape *t)
{
    const char *bad = mp__handle_error(t, MP__KIND_TAPE, "tape", "mp_tape_error");
    return bad ? bad : t->err;
}

mp_status mp_tape_stat(const mp_tape *t, int32_t stat, int64_t *out)
{
    MP__REQUIRE_TAPE(t, "mp_tape_stat");
    char *err = ((mp_tape *)t)->err;
    MP_REQUIRE_PTR(out, err, "mp_tape_stat");
    int64_t v;
    switch (stat) {
    case MP_TAPE_STAT_NODES: v = t->n; break;
    case MP_TAPE_STAT_ARENA_USED: v = (int64_t)(t->arena.before + t->arena.off); break;
    case MP_TAPE_STAT_ARENA_HIGH: v = (int64_t)t->arena.high; break;
    case MP_TAPE_STAT_HEAP_BYTES:
        v = (int64_t)sizeof *t + (int64_t)t->cap * (int64_t)(sizeof(mp__node) + 2 * sizeof(mp_var)) +
            (int64_t)(MP__TCOPY_FLOATS * sizeof(float));
        for (int32_t i = 0; i < t->arena.nblk; i++) v += (int64_t)t->arena.cap[i];
        for (int32_t i = 0; i < t->sarena.nblk; i++) v += (int64_t)t->sarena.cap[i];
        break;
    default:
        return mp__fail(err, MP_ERR_INVALID_ARGUMENT,
                        "mp_tape_stat: unknown stat %d (expected MP_TAPE_STAT_NODES..HEAP_BYTES = 0..3)",
                        (int)stat);
    }
    *out = v;
    return MP_OK;
}

/* ---- leaves and reading ---------------------------------------------------------- */
static mp_status check_dims(mp_tape *t, const char *fn, int32_t rows, int32_t cols)
{
    MP_REQUIRE(rows >= 1 && cols >= 1 && (int64_t)rows * cols <= INT32_MAX, t->err,
               MP_ERR_INVALID_ARGUMENT, "%s: shape %dx%d is invalid (rows, cols >= 1, rows*cols < 2^31)",
               fn, (int)rows, (int)cols);
    return MP_OK;
}

mp_status mp_tape_leaf(mp_tape *t, int32_t rows, int32_t cols, const float *data, size_t len,
                       int32_t flags, mp_var *out)
{
    static const char fn[] = "mp_tape_leaf";
    MP__START(t, out, fn);
    MP_REQUIRE_PTR(data, t->err, fn);
    MP_TRY(check_dims(t, fn, rows, cols));
    MP_REQUIRE(len == (size_t)rows * (size_t)cols, t->err, MP_ERR_SHAPE_MISMATCH,
               "%s: len = %zu but the shape %dx%d needs %zu values", fn, len, (int)rows, (int)cols,
               (size_t)rows * (size_t)cols);
    MP_REQUIRE((flags & ~(MP_LEAF_REQUIRES_GRAD | MP_LEAF_BORROW)) == 0, t->err, MP_ERR_INVALID_ARGUMENT,
               "%s: unknown flags 0x%x (expected MP_LEAF_REQUIRES_GRAD | MP_LEAF_BORROW)", fn,
               (unsigned)flags);
    int borrow = (flags & MP_LEAF_BORROW) != 0;
    mp__mark m = mp__tape_mark(t);
    mp__node *n;
    mp_status st = new_node(t, MP__OP_LEAF, rows, cols, MP_VAR_NONE, MP_VAR_NONE,
                            borrow ? (float *)(uintptr_t)data : NULL, &n);
    if (st != MP_OK) {
        mp__tape_rollback(t, m);
        return st;
    }
    if (!borrow) memcpy(n->val, data, len * sizeof(float));
    n->flags = (uint8_t)(((flags & MP_LEAF_REQUIRES_GRAD) ? MP__NODE_RG : 0) |
                         (borrow ? MP__NODE_BORROW : 0));
    *out = mp__pub(t, t->n++);
    return MP_OK;
}

mp_status mp_tape_fill(mp_tape *t, int32_t rows, int32_t cols, float value, mp_var *out)
{
    MP__START(t, out, "mp_tape_fill");
    MP_TRY(check_dims(t, "mp_tape_fill", rows, cols));
    mp_var r;
    mp_status st = mp__fill(t, rows, cols, value, &r);
    return mp__emit(t, st, &r, out);
}

mp_status mp_tape_shape(const mp_tape *ct, mp_var v, int32_t *rows, int32_t *cols)
{
    mp_tape *t = (mp_tape *)ct; /* only the message buffer is written */
    MP__REQUIRE_TAPE(t, "mp_tape_shape");
    MP_REQUIRE_PTR(rows, t->err, "mp_tape_shape");
    MP_REQUIRE_PTR(cols, t->err, "mp_tape_shape");
    MP__VAR(t, "mp_tape_shape", v);
    *rows = t->nodes[v].rows;
    *cols = t->nodes[v].cols;
    return MP_OK;
}

mp_status mp_tape_read(const mp_tape *ct, mp_var v, float *buf, size_t len)
{
    mp_tape *t = (mp_tape *)ct;
    MP__REQUIRE_TAPE(t, "mp_tape_read");
    MP_REQUIRE_PTR(buf, t->err, "mp_tape_read");
    MP__VAR(t, "mp_tape_read", v);
    const mp__node *n = &t->nodes[v];
    size_t need = (size_t)n->rows * (size_t)n->cols;
    MP_REQUIRE(len >= need, t->err, MP_ERR_BUFFER_TOO_SMALL,
               "mp_tape_read: 'buf' has room for len = %zu floats, variable %d is %dx%d and needs len >= %zu", len,
               (int)mp__pub(t, v), (int)n->rows, (int)n->cols, need);
    memcpy(buf, n->val, need * sizeof(float));
    return MP_OK;
}

mp_status mp_tape_scalar(const mp_tape *ct, mp_var v, float *out)
{
    mp_tape *t = (mp_tape *)ct;
    MP__REQUIRE_TAPE(t, "mp_tape_scalar");
    MP_REQUIRE_PTR(out, t->err, "mp_tape_scalar");
    MP__VAR(t, "mp_tape_scalar", v);
    const mp__node *n = &t->nodes[v];
    MP_REQUIRE(n->rows == 1 && n->cols == 1, t->err, MP_ERR_SHAPE_MISMATCH,
               "mp_tape_scalar: variable %d is %dx%d, expected 1x1", (int)mp__pub(t, v), (int)n->rows,
               (int)n->cols);
    *out = n->val[0];
    return MP_OK;
}

/* ---- differentiation ------------------------------------------------------------ */
mp_status mp__bwd_constant_only(mp_tape *t, mp_var v)
{
    return mp__fail(t->err, MP_ERR_STATE, "mp_tape: internal error: %s is not differentiable",
                    op_table[t->nodes[v].op].name);
}

mp_status mp__acc(mp_tape *t, mp_var v, mp_var c)
{
    if (!mp__need(t, v)) return MP_OK;
    mp_var old = t->gwork[v];
    if (old == MP_VAR_NONE) {
        t->gwork[v] = c;
        scratch_ref(t, c);
        return MP_OK;
    }
    mp_var sum;
    MP_TRY(mp__add(t, old, c, &sum));
    t->gwork[v] = sum;
    scratch_ref(t, sum);
    scratch_unref(t, old);
    return MP_OK;
}

mp_var mp__acc_slot(const mp_tape *t, mp_var v, int32_t rows, int32_t cols)
{
    if (!t->recycle || !mp__need(t, v)) return MP_VAR_NONE;
    mp_var old = t->gwork[v];
    if (old == MP_VAR_NONE) return MP_VAR_NONE;
    const mp__node *o = &t->nodes[old];
    if (!(o->flags & MP__NODE_SCRATCH) || o->rows != rows || o->cols != cols || sbuf_of(o->val)->refs != 1)
        return MP_VAR_NONE;
    return old;
}

mp_status mp__record_acc(mp_tape *t, mp_var v, mp_var slot, int32_t op, mp_var a, mp_var b, const int32_t *attr,
                         float f)
{
    mp__node *n;
    const mp__node *o = &t->nodes[slot];
    MP_TRY(new_node(t, op, o->rows, o->cols, a, b, o->val, &n)); /* (may move the node table) */
    n->flags |= MP__NODE_SCRATCH | MP__NODE_ACC; /* the slot's buffer, and its count */
    if (attr) memcpy(n->attr, attr, sizeof n->attr);
    n->f = f;
    op_table[op].fwd(t, n);
    mp_var c = t->n++;
    t->gwork[v] = c;
    scratch_ref(t, c);
    scratch_unref(t, slot);
    return MP_OK;
}

/* The element-wise ops whose kernels honour MP__NODE_ACC (the products
 * decide in ops_matmul.c, where alpha matters). */
static int adds_in_place(int32_t op)
{
    return op == MP__OP_MUL || op == MP__OP_LN_BWD || op == MP__OP_LN_BWD_Y || op == MP__OP_LN_BWD_R ||
           op == MP__OP_GELU_MUL;
}

mp_status mp__record_to(mp_tape *t, mp_var v, int32_t op, int32_t rows, int32_t cols, mp_var a, mp_var b,
                        const int32_t *attr, float f)
{
    mp_var slot = adds_in_place(op) ? mp__acc_slot(t, v, rows, cols) : MP_VAR_NONE;
    if (slot != MP_VAR_NONE) return mp__record_acc(t, v, slot, op, a, b, attr, f);
    mp_var c;
    MP_TRY(mp__record(t, op, rows, cols, a, b, attr, f, NULL, &c));
    return mp__acc(t, v, c);
}

/* Walks the nodes from the loss down: when node i is reached every consumer
 * (a larger id) has already added its contribution, so gwork[i] is final. */
static mp_status sweep(mp_tape *t, mp_var loss)
{
    for (int32_t i = 0; i < t->n; i++) t->gwork[i] = MP_VAR_NONE;
    mp_var seed;
    MP_TRY(mp__fill(t, 1, 1, 1.0f, &seed));
    t->gwork[loss] = seed;
    scratch_ref(t, seed);
    for (mp_var i = loss; i >= 0; i--) {
        mp_var g = t->gwork[i];
        if (g == MP_VAR_NONE || !mp__need(t, i)) continue;
        MP_TRY(op_table[t->nodes[i].op].bwd(t, i, g));
        if (t->recycle) { /* gwork[i] is consumed: only a wrt variable's stays readable */
            if (!(t->nodes[i].flags & MP__NODE_KEEP)) {
                scratch_unref(t, g);
                t->gwork[i] = MP_VAR_NONE;
            }
            scratch_end_step(t);
        }
    }
    return MP_OK;
}

/* Marks (MP__NODE_DEP) every node up to the loss that depends on a wrt
 * variable: consumers come after their inputs, so one forward pass does. */
static void mark_dependents(mp_tape *t, mp_var loss, const mp_var *wrt, size_t n)
{
    mp_var lo = loss;
    for (mp_var i = 0; i <= loss; i++) t->nodes[i].flags &= (uint8_t)~MP__NODE_DEP;
    for (size_t k = 0; k < n; k++) {
        mp_var w = (mp_var)((uint32_t)wrt[k] - t->id_base); /* public ids, checked by the caller */
        if (w > loss) continue;
        t->nodes[w].flags |= MP__NODE_DEP;
        if (w < lo) lo = w;
    }
    for (mp_var i = lo; i <= loss; i++) {
        mp__node *nd = &t->nodes[i];
        mp_var c = mp__in2(nd);
        if ((nd->in[0] != MP_VAR_NONE && (t->nodes[nd->in[0]].flags & MP__NODE_DEP)) ||
            (nd->in[1] != MP_VAR_NONE && (t->nodes[nd->in[1]].flags & MP__NODE_DEP)) ||
            (c != MP_VAR_NONE && (t->nodes[c].flags & MP__NODE_DEP)))
            nd->flags |= MP__NODE_DEP;
    }
}

/* After a recycling sweep: the gradients of the wrt variables move from the
 * scratch region to the arena (the region is rewound by the next recycling
 * sweep); every other gradient slot is dropped. */
static mp_status keep_wrt_grads(mp_tape *t, int32_t nfwd)
{
    for (mp_var i = 0; i < nfwd; i++) {
        mp__node *nd = &t->nodes[i];
        if (!(nd->flags & MP__NODE_KEEP)) {
            t->gwork[i] = MP_VAR_NONE;
            continue;
        }
        nd->flags &= (uint8_t)~MP__NODE_KEEP;
        mp_var g = t->gwork[i];
        if (g == MP_VAR_NONE || !(t->nodes[g].flags & MP__NODE_SCRATCH)) continue;
        mp__node *gn = &t->nodes[g];
        size_t bytes = (size_t)gn->rows * (size_t)gn->cols * sizeof(float);
        float *p = mp__arena_alloc(t, bytes);
        if (!p)
            return mp__fail(t->err, MP_ERR_OUT_OF_MEMORY, "mp_tape_backward_wrt: out of memory keeping a %dx%d gradient",
                            (int)gn->rows, (int)gn->cols);
        memcpy(p, gn->val, bytes);
        gn->val = p;
        gn->flags &= (uint8_t)~MP__NODE_SCRATCH;
    }
    return MP_OK;
}

static mp_status run_backward(mp_tape *t, mp_var loss, int32_t create_graph, const mp_var *wrt, size_t n,
                              int recycle)
{
    mp__mark m = mp__tape_mark(t);
    int32_t nfwd = t->n;
    if (wrt) mark_dependents(t, loss, wrt, n);
    if (recycle) {
        for (size_t k = 0; k < n; k++) t->nodes[(mp_var)((uint32_t)wrt[k] - t->id_base)].flags |= MP__NODE_KEEP;
        arena_rewind(&t->sarena);
        t->scratch.ncls = 0;
        t->scratch.step = NULL;
    }
    t->prune = wrt != NULL;
    t->no_grad = !create_graph;
    t->recycle = recycle;
    mp_status st = sweep(t, loss);
    t->recycle = 0;
    t->no_grad = 0;
    t->prune = 0;
    if (recycle) {
        if (st == MP_OK) st = keep_wrt_grads(t, nfwd);
        for (mp_var i = 0; i < nfwd; i++) t->nodes[i].flags &= (uint8_t)~MP__NODE_KEEP;
    }
    if (st != MP_OK) {
        mp__tape_rollback(t, m); /* the earlier gradients stay committed */
        return st;
    }
    mp_var *tmp = t->grad; /* commit: the work array becomes the gradients */
    t->grad = t->gwork;
    t->gwork = tmp;
    t->grad_n = m.n;
    return MP_OK;
}

static mp_status check_backward(mp_tape *t, const char *fn, mp_var *loss, int32_t create_graph)
{
    mp_var id = *loss;
    MP_TRY(mp__check_var(t, fn, "loss", loss));
    const mp__node *n = &t->nodes[*loss];
    MP_REQUIRE(n->rows == 1 && n->cols == 1, t->err, MP_ERR_SHAPE_MISMATCH,
               "%s: loss %d is %dx%d, expected 1x1", fn, (int)id, (int)n->rows, (int)n->cols);
    MP_REQUIRE(create_graph == 0 || create_graph == 1, t->err, MP_ERR_INVALID_ARGUMENT,
               "%s: create_graph = %d, expected 0 or 1", fn, (int)create_graph);
    return MP_OK;
}

mp_status mp_tape_backward(mp_tape *t, mp_var loss, int32_t create_graph)
{
    MP__REQUIRE_TAPE(t, "mp_tape_backward");
    MP_TRY(check_backward(t, "mp_tape_backward", &loss, create_graph));
    return run_backward(t, loss, create_graph, NULL, 0, 0);
}

static mp_status backward_wrt(mp_tape *t, mp_var loss, int32_t create_graph, const mp_var *wrt, size_t n,
                              int recycle)
{
    static const char fn[] = "mp_tape_backward_wrt";
    MP__REQUIRE_TAPE(t, fn);
    MP_REQUIRE_PTR(wrt, t->err, fn);
    MP_TRY(check_backward(t, fn, &loss, create_graph));
    MP_REQUIRE(n >= 1, t->err, MP_ERR_INVALID_ARGUMENT, "%s: n = 0, expected at least one wrt variable", fn);
    for (size_t k = 0; k < n; k++) {
        if ((uint32_t)wrt[k] - t->id_base >= (uint32_t)t->n) { /* as mp__check_var, naming the element */
            char arg[32];
            snprintf(arg, sizeof arg, "wrt[%zu]", k);
            return mp__bad_var(t, fn, arg, wrt[k]);
        }
    }
    return run_backward(t, loss, create_graph, wrt, n, recycle);
}

mp_status mp_tape_backward_wrt(mp_tape *t, mp_var loss, int32_t create_graph, const mp_var *wrt, size_t n)
{
    return backward_wrt(t, loss, create_graph, wrt, n, 0);
}

mp_status mp__tape_backward_wrt_recycle(mp_tape *t, mp_var loss, const mp_var *wrt, size_t n)
{
    return backward_wrt(t, loss, 0, wrt, n, 1);
}

mp_status mp_tape_grad(mp_tape *t, mp_var v, mp_var *out)
{
    static const char fn[] = "mp_tape_grad";
    MP__START(t, out, fn);
    MP__VAR(t, fn, v);
    MP_REQUIRE(t->grad_n >= 0, t->err, MP_ERR_STATE,
               "%s: no gradients: call mp_tape_backward first (since the last reset)", fn);
    if (v < t->grad_n && t->grad[v] != MP_VAR_NONE) {
        *out = mp__pub(t, t->grad[v]);
        return MP_OK;
    }
    mp_var z;
    MP_TRY(mp__fill(t, t->nodes[v].rows, t->nodes[v].cols, 0.0f, &z));
    if (v < t->grad_n) t->grad[v] = z;
    *out = mp__pub(t, z);
    return MP_OK;
}
