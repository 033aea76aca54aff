/* The conv backbone: im2col/col2im (adjoint pair), conv2d composed as
 * im2col + one batched sgemm with the filter bank shared (bias folded in as
 * an extra column), and 2x2 max-pool composed as a
 * gather at the argmax positions (gather_flat/scatter_flat, adjoint pair). */
#include "tape/tape_internal.h"

#include <string.h>

/* ---- gather_flat (out[k] = x[idx[k]]) and scatter_flat (its adjoint) ---------------- */
void mp__fwd_gather_flat(mp_tape *t, mp__node *o)
{
    const float *x = mp__nd(t, o->in[0])->val;
    size_t n = (size_t)o->rows * o->cols;
    for (size_t k = 0; k < n; k++) o->val[k] = x[o->idx[k]];
}
mp_status mp__bwd_gather_flat(mp_tape *t, mp_var v, mp_var g)
{
    mp__node n = *mp__nd(t, v);
    const mp__node *X = mp__nd(t, n.in[0]);
    mp_var c;
    MP_TRY(mp__scatter_flat(t, g, n.idx, X->rows, X->cols, &c));
    return mp__acc(t, n.in[0], c);
}
mp_status mp__gather_flat(mp_tape *t, mp_var x, const int32_t *idx, int32_t rows, int32_t cols, mp_var *out)
{
    return mp__record(t, MP__OP_GATHER_FLAT, rows, cols, x, MP_VAR_NONE, NULL, 0.0f, idx, out);
}

void mp__fwd_scatter_flat(mp_tape *t, mp__node *o)
{
    const mp__node *G = mp__nd(t, o->in[0]);
    memset(o->val, 0, (size_t)o->rows * o->cols * sizeof(float));
    size_t n = (size_t)G->rows * G->cols;
    for (size_t k = 0; k < n; k++) o->val[o->idx[k]] += G->val[k];
}
mp_status mp__bwd_scatter_flat(mp_tape *t, mp_var v, mp_var g)
{
    mp__node n = *mp__nd(t, v);
    const mp__node *G = mp__nd(t, n.in[0]);
    mp_var c;
    MP_TRY(mp__gather_flat(t, g, n.idx, G->rows, G->cols, &c));
    return mp__acc(t, n.in[0], c);
}
mp_status mp__scatter_flat(mp_tape *t, mp_var g, const int32_t *idx, int32_t rows, int32_t cols, mp_var *out)
{
    return mp__record(t, MP__OP_SCATTER_FLAT, rows, cols, g, MP_VAR_NONE, NULL, 0.0f, idx, out);
}

/* ---- im2col / col2im ----------------------------------------------------------------
 * attr = {C, H, W, k, stride | pad << 16, extra}. x: N x (C*H*W) ->
 * cols: (N*(C*k*k + extra)) x (Ho*Wo): per example one block whose row
 * (c*k + ky)*k + kx holds tap (c, ky, kx) at every output position, so the
 * filter bank (F x C*k*k) times the block is the F x (Ho*Wo) channel-major
 * output directly. With extra = 1 the block has one more row holding the
 * node's float attribute (1 in conv2d: the bias row; 0 in col2im's adjoint,
 * which keeps the op linear). Out-of-image taps read zero. */
typedef struct {
    int32_t C, H, W, k, s, p, extra, Ho, Wo;
} geom_t;

static geom_t geom_of(const int32_t *a)
{
    geom_t g = {a[0], a[1], a[2], a[3], a[4] & 0xffff, a[4] >> 16, a[5], 0, 0};
    g.Ho = (g.H + 2 * g.p - g.k) / g.s + 1;
    g.Wo = (g.W + 2 * g.p - g.k) / g.s + 1;
    return g;
}

/* Output columns ox whose tap kx lands inside the image: [lo, hi). */
static void ox_range(const geom_t *g, int32_t kx, int32_t *lo, int32_t *hi)
{
    int32_t off = kx - g->p; /* x = ox*s + off */
    int32_t l = off >= 0 ? 0 : (-off + g->s - 1) / g->s;
    int32_t h = g->W - off <= 0 ? 0 : (g->W - off - 1) / g->s + 1;
    *lo = l;
    *hi = h < g->Wo ? h : g->Wo;
}

/* One walk over (example, tap, output row); to_cols picks the direction. */
static void im2col_walk(const geom_t *g, int32_t N, float *img, float *cols, int to_cols, float extra_val)
{
    size_t chw = (size_t)g->C * g->H * g->W, hw = (size_t)g->Ho * g->Wo;
    size_t rows = (size_t)g->C * g->k * g->k + (size_t)g->extra;
    for (int32_t n = 0; n < N; n++) {
        float *block = cols + (size_t)n * rows * hw;
        for (int32_t c = 0; c < g->C; c++)
            for (int32_t ky = 0; ky < g->k; ky++)
                for (int32_t kx = 0; kx < g->k; kx++) {
                    float *row = block + (((size_t)c * g->k + ky) * g->k + kx) * hw;
                    int32_t lo, hi;
                    ox_range(g, kx, &lo, &hi);
                    for (int32_t oy = 0; oy < g->Ho; oy++) {
                        float *restrict out = row + (size_t)oy * g->Wo;
                        int32_t y = oy * g->s - g->p + ky;
                        if (y < 0 || y >= g->H || hi <= lo) {
                            if (to_cols)
                                for (int32_t ox = 0; ox < g->Wo; ox++) out[ox] = 0.0f;
                            continue;
                        }
                        float *restrict im = img + (size_t)n * chw + ((size_t)c * g->H + y) * g->W + (kx - g->p);
                        if (to_cols) {
                            for (int32_t ox = 0; ox < lo; ox++) out[ox] = 0.0f;
                            if (g->s == 1)
                                for (int32_t ox = lo; ox < hi; ox++) out[ox] = im[ox];
                            else
                                for (int32_t ox = lo; ox < hi; ox++) out[ox] = im[ox * g->s];
                            for (int32_t ox = hi; ox < g->Wo; ox++) out[ox] = 0.0f;
                        } else {
                            for (int32_t ox = lo; ox < hi; ox++) im[ox * g->s] += out[ox];
                        }
                    }
                }
        if (to_cols && g->extra)
            for (size_t q = 0; q < hw; q++) block[(rows - 1) * hw + q] = extra_val;
    }
}

void mp__fwd_im2col(mp_tape *t, mp__node *o)
{
    geom_t g = geom_of(o->attr);
    const mp__node *X = mp__nd(t, o->in[0]);
    im2col_walk(&g, X->rows, X->val, o->val, 1, o->f);
}
mp_status mp__bwd_im2col(mp_tape *t, mp_var v, mp_var g)
{
    mp__node n = *mp__nd(t, v);
    mp_var c;
    MP_TRY(mp__col2im(t, g, n.attr, &c));
    return mp__acc(t, n.in[0], c);
}
static mp_status record_im2col(mp_tape *t, mp_var x, const int32_t *geom, float extra_val, mp_var *out)
{
    geom_t g = geom_of(geom);
    int32_t rows = mp__nd(t, x)->rows * (g.C * g.k * g.k + g.extra);
    return mp__record(t, MP__OP_IM2COL, rows, g.Ho * g.Wo, x, MP_VAR_NONE, geom, extra_val, NULL, out);
}
mp_status mp__im2col(mp_tape *t, mp_var x, const int32_t *geom, mp_var *out)
{
    return record_im2col(t, x, geom, 0.0f, out);
}

void mp__fwd_col2im(mp_tape *t, mp__node *o)
{
    geom_t g = geom_of(o->attr);
    memset(o->val, 0, (size_t)o->rows * o->cols * sizeof(float));
    im2col_walk(&g, o->rows, o->val, mp__nd(t, o->in[0])->val, 0, 0.0f);
}
mp_status mp__bwd_col2im(mp_tape *t, mp_var v, mp_var g)
{
    mp__node n = *mp__nd(t, v);
    mp_var c;
    MP_TRY(mp__im2col(t, g, n.attr, &c)); /* extra row 0: the adjoint of dropping it */
    return mp__acc(t, n.in[0], c);
}
mp_status mp__col2im(mp_tape *t, mp_var g, const int32_t *geom, mp_var *out)
{
    geom_t ge = geom_of(geom);
    int32_t N = mp__nd(t, g)->rows / (ge.C * ge.k * ge.k + ge.extra);
    return mp__record(t, MP__OP_COL2IM, N, ge.C * ge.H * ge.W, g, MP_VAR_NONE, geom, 0.0f, NULL, out);
}

/* ---- conv2d ---------------------------------------------------------------------------
 * out_n = [w | bias^T] [cols_n ; ones] for every example n: one batched
 * product with the filter bank shared, which lands in the channel-major
 * N x (F*Ho*Wo) layout without a transpose. */
static mp_status record_conv(mp_tape *t, mp_var x, mp_var w, mp_var bias, const int32_t *geom, mp_var *out)
{
    geom_t g = geom_of(geom);
    int32_t N = mp__nd(t, x)->rows, F = mp__nd(t, w)->rows;
    mp_var cols, wb = w, bt, y;
    MP_TRY(record_im2col(t, x, geom, 1.0f, &cols));
    if (bias != MP_VAR_NONE) {
        MP_TRY(mp__transpose(t, bias, &bt));
        MP_TRY(mp__concat(t, w, bt, MP_AXIS_COLS, &wb));
    }
    MP_TRY(mp__bmm_ex(t, wb, cols, N, 0, 0, 1, 0, 0, &y)); /* (N*F) x (Ho*Wo) */
    return mp__reshape(t, y, N, F * g.Ho * g.Wo, out);
}

mp_status mp_conv2d(mp_tape *t, mp_var x, mp_var w, mp_var bias, int32_t channels, int32_t height, int32_t width,
                    int32_t kernel, int32_t stride, int32_t pad, mp_var *out)
{
    static const char fn[] = "mp_conv2d";
    MP__START(t, out, fn);
    MP__VAR(t, fn, x);
    MP__VAR(t, fn, w);
    if (bias != MP_VAR_NONE) MP__VAR(t, fn, bias);
    MP_REQUIRE(channels >= 1 && height >= 1 && width >= 1 && kernel >= 1 && stride >= 1 && pad >= 0 &&
                   pad < kernel && kernel <= height + 2 * pad && kernel <= width + 2 * pad,
               t->err, MP_ERR_INVALID_ARGUMENT,
               "%s: geometry channels=%d height=%d width=%d kernel=%d stride=%d pad=%d is invalid (need all >= 1, "
               "0 <= pad < kernel <= size + 2*pad)", fn, (int)channels, (int)height, (int)width, (int)kernel,
               (int)stride, (int)pad);
    const mp__node *X = mp__nd(t, x), *Wt = mp__nd(t, w);
    int64_t chw = (int64_t)channels * height * width, ckk = (int64_t)channels * kernel * kernel;
    MP_REQUIRE(X->cols == chw, t->err, MP_ERR_SHAPE_MISMATCH,
               "%s: x is %dx%d, expected N x %lld (channels*height*width)", fn, (int)X->rows, (int)X->cols,
               (long long)chw);
    MP_REQUIRE(Wt->cols == ckk, t->err, MP_ERR_SHAPE_MISMATCH,
               "%s: w is %dx%d, expected F x %lld (channels*kernel*kernel)", fn, (int)Wt->rows, (int)Wt->cols,
               (long long)ckk);
    if (bias != MP_VAR_NONE) {
        const mp__node *B = mp__nd(t, bias);
        MP_REQUIRE(B->rows == 1 && B->cols == Wt->rows, t->err, MP_ERR_SHAPE_MISMATCH,
                   "%s: bias is %dx%d, expected 1x%d (one per filter)", fn, (int)B->rows, (int)B->cols,
                   (int)Wt->rows);
    }
    MP_REQUIRE(stride < 65536 && pad < 65536, t->err, MP_ERR_INVALID_ARGUMENT,
               "%s: stride = %d, pad = %d, expected < 65536", fn, (int)stride, (int)pad);
    int32_t geom[6] = {channels, height, width, kernel, stride | pad << 16, bias != MP_VAR_NONE};
    geom_t g = geom_of(geom);
    MP_REQUIRE((int64_t)X->rows * g.Ho * g.Wo * (ckk + 1) <= INT32_MAX, t->err, MP_ERR_INVALID_ARGUMENT,
               "%s: the im2col matrix (%lld x %lld) is too large", fn, (long long)X->rows * g.Ho * g.Wo,
               (long long)ckk);
    mp__mark m = mp__tape_mark(t);
    mp_var r;
    mp_status st = record_conv(t, x, w, bias, geom, &r);
    if (st != MP_OK) mp__tape_rollback(t, m);
    return mp__emit(t, st, &r, out);
}

/* ---- 2x2 max-pool, stride 2: ties go to the first maximum in row-major order ---------- */
static void pool_argmax(const float *x, int32_t N, int32_t C, int32_t H, int32_t W, int32_t *idx)
{
    int32_t Ho = H / 2, Wo = W / 2;
    size_t q = 0;
    for (int32_t n = 0; n < N; n++)
        for (int32_t c = 0; c < C; c++)
            for (int32_t i = 0; i < Ho; i++)
                for (int32_t j = 0; j < Wo; j++, q++) {
                    int32_t base = ((n * C + c) * H + 2 * i) * W + 2 * j;
                    int32_t cand[4] = {base, base + 1, base + W, base + W + 1}, best = base;
                    for (int k = 1; k < 4; k++)
                        if (x[cand[k]] > x[best]) best = cand[k];
                    idx[q] = best;
                }
}

mp_status mp_maxpool2d(mp_tape *t, mp_var x, int32_t channels, int32_t height, int32_t width, mp_var *out)
{
    static const char fn[] = "mp_maxpool2d";
    MP__START(t, out, fn);
    MP__VAR(t, fn, x);
    MP_REQUIRE(channels >= 1 && height >= 2 && width >= 2 && height % 2 == 0 && width % 2 == 0, t->err,
               MP_ERR_INVALID_ARGUMENT, "%s: channels=%d height=%d width=%d, expected channels >= 1 and even "
               "height, width >= 2", fn, (int)channels, (int)height, (int)width);
    const mp__node *X = mp__nd(t, x);
    MP_REQUIRE(X->cols == (int64_t)channels * height * width, t->err, MP_ERR_SHAPE_MISMATCH,
               "%s: x is %dx%d, expected N x %lld (channels*height*width)", fn, (int)X->rows, (int)X->cols,
               (long long)channels * height * width);
    int32_t cols = channels * (height / 2) * (width / 2);
    mp__mark m = mp__tape_mark(t);
    int32_t *idx = mp__arena_alloc(t, (size_t)X->rows * cols * sizeof *idx);
    if (!idx) {
        mp__tape_rollback(t, m); /* a failed allocation may have moved to the next arena block */
        return mp__fail(t->err, MP_ERR_OUT_OF_MEMORY, "%s: cannot allocate the argmax table", fn);
    }
    pool_argmax(mp__nd(t, x)->val, X->rows, channels, height, width, idx);
    mp_var r;
    mp_status st = mp__gather_flat(t, x, idx, X->rows, cols, &r);
    if (st != MP_OK) mp__tape_rollback(t, m);
    return mp__emit(t, st, &r, out);
}
