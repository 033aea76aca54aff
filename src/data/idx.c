/* IDX files (the MNIST format): 2 zero bytes, a type byte, a dimension
 * count, one big-endian uint32 per dimension, then the elements, big-endian
 * and row-major. Files may be gzip-compressed: zlib's gzread reads plain
 * files transparently, so one reader serves both. */
#include "data/data_impl.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static size_t elem_size(int32_t type)
{
    switch (type) {
    case MP__IDX_UBYTE: case MP__IDX_SBYTE: return 1;
    case MP__IDX_SHORT: return 2;
    case MP__IDX_INT: case MP__IDX_FLOAT: return 4;
    default: return 0;
    }
}

mp_status mp__idx_header(const uint8_t *buf, size_t len, mp__idx *out, const char *what)
{
    MP_REQUIRE(len >= 4, NULL, MP_ERR_FORMAT, "%s: %zu bytes, too short for an IDX header (4 bytes)", what, len);
    MP_REQUIRE(buf[0] == 0 && buf[1] == 0, NULL, MP_ERR_FORMAT,
               "%s: bad IDX magic %02x %02x, expected 00 00 (not an IDX file?)", what, buf[0], buf[1]);
    size_t es = elem_size(buf[2]);
    MP_REQUIRE(es > 0, NULL, MP_ERR_FORMAT,
               "%s: IDX element type 0x%02X not supported, expected 0x08, 0x09, 0x0B, 0x0C or 0x0D", what, buf[2]);
    size_t nd = buf[3];
    MP_REQUIRE(nd >= 1, NULL, MP_ERR_FORMAT, "%s: IDX file with 0 dimensions", what);
    MP_REQUIRE(len >= 4 + 4 * nd, NULL, MP_ERR_FORMAT, "%s: truncated IDX header (%zu of %zu bytes)", what, len,
               4 + 4 * nd);
    uint64_t count = 1;
    for (size_t i = 0; i < nd; i++) {
        out->dims[i] = be32(buf + 4 + 4 * i);
        MP_REQUIRE(out->dims[i] > 0, NULL, MP_ERR_INVALID_ARGUMENT, "%s: IDX dimension %zu is 0", what, i);
        /* dims are < 2^32, so a product below 2^40 never overflows 64 bits
         * before the check fires. */
        count *= out->dims[i];
        MP_REQUIRE(count * es <= MP__IDX_MAX_BYTES, NULL, MP_ERR_INVALID_ARGUMENT,
                   "%s: IDX dimensions give more than 2^40 bytes of data (absurd or overflowing size)", what);
    }
    MP_REQUIRE(count <= SIZE_MAX / es, NULL, MP_ERR_INVALID_ARGUMENT, "%s: IDX size overflows size_t", what);
    out->type = buf[2];
    out->elem_size = es;
    out->ndims = nd;
    out->count = (size_t)count;
    out->header_len = 4 + 4 * nd;
    out->data = NULL;
    return MP_OK;
}

mp_status mp__idx_parse(const uint8_t *buf, size_t len, mp__idx *out, const char *what)
{
    mp__idx h;
    MP_TRY(mp__idx_header(buf, len, &h, what));
    size_t need = h.header_len + h.count * h.elem_size;
    MP_REQUIRE(len >= need, NULL, MP_ERR_FORMAT, "%s: truncated IDX data (%zu of %zu bytes)", what, len, need);
    MP_REQUIRE(len == need, NULL, MP_ERR_FORMAT, "%s: %zu trailing bytes after the IDX data", what, len - need);
    h.data = buf + h.header_len;
    *out = h;
    return MP_OK;
}

double mp__idx_value(const mp__idx *h, const uint8_t *data, size_t i)
{
    const uint8_t *p = data + i * h->elem_size;
    switch (h->type) {
    case MP__IDX_UBYTE: return p[0];
    case MP__IDX_SBYTE: return (int8_t)p[0];
    case MP__IDX_SHORT: return (int16_t)(uint16_t)((unsigned)p[0] << 8 | p[1]);
    case MP__IDX_INT: return (int32_t)be32(p);
    default: {
        uint32_t u = be32(p);
        float f;
        memcpy(&f, &u, sizeof f);
        return f;
    }
    }
}

/* ---- conversion to dataset arrays ------------------------------------------------- */
static mp_status convert_images(const mp__idx *h, const uint8_t *data, int scale, float *x, const char *what)
{
    if (h->type == MP__IDX_UBYTE) {
        /* Exact table: the common case (MNIST-like) costs one lookup per pixel. */
        float table[256];
        for (int v = 0; v < 256; v++) table[v] = scale ? (float)v / 255.0f : (float)v;
        for (size_t i = 0; i < h->count; i++) x[i] = table[data[i]];
        return MP_OK;
    }
    for (size_t i = 0; i < h->count; i++) {
        double v = mp__idx_value(h, data, i);
        MP_REQUIRE(isfinite(v), NULL, MP_ERR_NOT_FINITE, "%s: element %zu is %g, expected a finite value", what, i, v);
        x[i] = (float)v;
    }
    return MP_OK;
}

static mp_status convert_labels(const mp__idx *h, const uint8_t *data, int32_t *lab, const char *what)
{
    for (size_t i = 0; i < h->count; i++) {
        double v = mp__idx_value(h, data, i);
        MP_REQUIRE(v >= 0 && v < (double)INT32_MAX && v == floor(v), NULL, MP_ERR_RANGE,
                   "%s: label %zu is %g, expected a whole number in [0, %d)", what, i, v, (int)INT32_MAX);
        lab[i] = (int32_t)v;
    }
    return MP_OK;
}

/* Checks that an images header and a labels header describe one dataset.
 * Returns the row length through *dim. */
static mp_status check_pair(const mp__idx *im, const mp__idx *lb, const char *ip, const char *lp, int32_t *dim)
{
    static const char fn[] = "mp_dataset_load_idx";
    size_t row = im->count / im->dims[0];
    MP_REQUIRE(row <= (size_t)INT32_MAX, NULL, MP_ERR_INVALID_ARGUMENT,
               "%s: %s: rows of %zu values, expected at most %d", fn, ip, row, (int)INT32_MAX);
    MP_REQUIRE(im->dims[0] <= (uint32_t)INT32_MAX, NULL, MP_ERR_INVALID_ARGUMENT,
               "%s: %s: %u examples, expected at most %d", fn, ip, (unsigned)im->dims[0], (int)INT32_MAX);
    MP_REQUIRE(lb->ndims == 1, NULL, MP_ERR_FORMAT, "%s: %s: labels file has %zu dimensions, expected 1", fn, lp,
               lb->ndims);
    MP_REQUIRE(lb->dims[0] == im->dims[0], NULL, MP_ERR_SHAPE_MISMATCH,
               "%s: %s has %u labels but %s has %u images", fn, lp, (unsigned)lb->dims[0], ip,
               (unsigned)im->dims[0]);
    MP_REQUIRE(im->ndims - 1 <= MP_DATA_MAX_DIMS, NULL, MP_ERR_FORMAT, "%s: %s: too many dimensions", fn, ip);
    *dim = (int32_t)row;
    return MP_OK;
}

/* ---- reading a (possibly gzipped) file ----------------------------------------------- */
typedef struct {
    gzFile f;
    const char *path;
} idx_file;

static mp_status gz_status(idx_file *f, const char *fn)
{
    int zerr = Z_OK;
    const char *msg = gzerror(f->f, &zerr);
    if (zerr == Z_ERRNO)
        return mp__fail(NULL, MP_ERR_IO, "%s: reading '%s' failed: %s", fn, f->path, strerror(errno));
    return mp__fail(NULL, MP_ERR_FORMAT, "%s: '%s': corrupt or truncated data (zlib: %s)", fn, f->path,
                    msg && *msg ? msg : "unexpected end of file");
}

/* Reads exactly len bytes; a short read is a truncated file. gzread takes
 * an unsigned int length, hence the chunks. */
static mp_status read_exact(idx_file *f, uint8_t *buf, size_t len, const char *fn)
{
    while (len > 0) {
        unsigned chunk = len > (1u << 30) ? (1u << 30) : (unsigned)len;
        int got = gzread(f->f, buf, chunk);
        if (got < 0) return gz_status(f, fn);
        if (got == 0) {
            int zerr = Z_OK;
            gzerror(f->f, &zerr);
            if (zerr != Z_OK && zerr != Z_BUF_ERROR) return gz_status(f, fn);
            return mp__fail(NULL, MP_ERR_FORMAT, "%s: '%s': truncated file (%zu bytes missing)", fn, f->path, len);
        }
        buf += got;
        len -= (size_t)got;
    }
    return MP_OK;
}

static mp_status open_idx(idx_file *f, const char *path, const char *fn)
{
    errno = 0;
    f->path = path;
    f->f = gzopen(path, "rb");
    if (!f->f)
        return mp__fail(NULL, MP_ERR_IO, "%s: cannot open '%s': %s", fn, path,
                        errno ? strerror(errno) : "out of memory");
    gzbuffer(f->f, 1u << 17);
    return MP_OK;
}

/* Reads the header into h, then the data into a new buffer *data, then
 * checks the stream ends there. */
static mp_status read_idx(idx_file *f, mp__idx *h, uint8_t **data, const char *fn)
{
    uint8_t head[4 + 4 * 255];
    MP_TRY(read_exact(f, head, 4, fn));
    size_t hl = 4 + 4 * (size_t)head[3];
    MP_TRY(read_exact(f, head + 4, hl - 4, fn));
    char what[600];
    snprintf(what, sizeof what, "%s: '%s'", fn, f->path);
    MP_TRY(mp__idx_header(head, hl, h, what));
    size_t bytes = h->count * h->elem_size;
    uint8_t *buf = mp__alloc(bytes);
    MP_REQUIRE(buf, NULL, MP_ERR_OUT_OF_MEMORY, "%s: out of memory for %zu bytes of '%s'", fn, bytes, f->path);
    mp_status st = read_exact(f, buf, bytes, fn);
    uint8_t extra;
    if (st == MP_OK) {
        int got = gzread(f->f, &extra, 1);
        if (got < 0) st = gz_status(f, fn);
        else if (got > 0) st = mp__fail(NULL, MP_ERR_FORMAT, "%s: '%s': trailing bytes after the IDX data", fn, f->path);
        else {
            int zerr = Z_OK;
            gzerror(f->f, &zerr);
            if (zerr != Z_OK) st = gz_status(f, fn);
        }
    }
    if (st != MP_OK) {
        mp__free(buf);
        return st;
    }
    *data = buf;
    return MP_OK;
}

static mp_status read_idx_path(const char *path, mp__idx *h, uint8_t **data, const char *fn)
{
    idx_file f;
    MP_TRY(open_idx(&f, path, fn));
    mp_status st = read_idx(&f, h, data, fn);
    gzclose(f.f);
    return st;
}

static mp_status build_from_idx(mp_dataset **out, const mp__idx *im, const uint8_t *idata, const mp__idx *lb,
                                const uint8_t *ldata, int32_t dim, int scale, const char *ip, const char *lp)
{
    static const char fn[] = "mp_dataset_load_idx";
    char what[600];
    /* Every element is written below: no need to zero (count * 4 cannot
     * overflow, the header check bounds it by 2^40 bytes). */
    float *x = mp__alloc(im->count * sizeof *x);
    int32_t *lab = mp__alloc(lb->count * sizeof *lab);
    if (!x || !lab) {
        mp__free(x);
        mp__free(lab);
        return mp__fail(NULL, MP_ERR_OUT_OF_MEMORY, "%s: out of memory for %zu values", fn, im->count);
    }
    snprintf(what, sizeof what, "%s: '%s'", fn, ip);
    mp_status st = convert_images(im, idata, scale, x, what);
    snprintf(what, sizeof what, "%s: '%s'", fn, lp);
    if (st == MP_OK) st = convert_labels(lb, ldata, lab, what);
    if (st != MP_OK) {
        mp__free(x);
        mp__free(lab);
        return st;
    }
    mp_dataset *ds;
    MP_TRY(mp__dataset_adopt(&ds, fn, x, im->dims[0], dim, lab, NULL, 0, 1)); /* converted with checks */
    if (im->ndims > 1) {
        ds->ndims = im->ndims - 1;
        for (size_t i = 1; i < im->ndims; i++) ds->shape[i - 1] = (int32_t)im->dims[i];
    }
    *out = ds;
    return MP_OK;
}

mp_status mp_dataset_load_idx(mp_dataset **out, const char *images_path, const char *labels_path,
                              const mp_config *cfg)
{
    static const char fn[] = "mp_dataset_load_idx";
    MP_REQUIRE_PTR(out, NULL, fn);
    MP_REQUIRE_PTR(images_path, NULL, fn);
    MP_REQUIRE_PTR(labels_path, NULL, fn);
    int scale = (int)mp__cfg_int(cfg, MP_CFG_DATA_SCALE);
    mp__idx im, lb;
    uint8_t *idata = NULL, *ldata = NULL;
    /* Labels first: they are small, so a mismatch is found before the
     * images are read. */
    MP_TRY(read_idx_path(labels_path, &lb, &ldata, fn));
    mp_status st = read_idx_path(images_path, &im, &idata, fn);
    int32_t dim = 0;
    if (st == MP_OK) st = check_pair(&im, &lb, images_path, labels_path, &dim);
    if (st == MP_OK) st = build_from_idx(out, &im, idata, &lb, ldata, dim, scale, images_path, labels_path);
    mp__free(idata);
    mp__free(ldata);
    return st;
}
