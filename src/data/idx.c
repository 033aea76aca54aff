/* IDX files (the MNIST format): 2 zero bytes, a type byte, a dimension
 * count, one big-endian uint32 per dimension, then the elements, big-endian
 * and row-major.
 *
 * One reader serves every caller (the library, the tests and the fuzz
 * harness, which writes its input to files): a byte source gives the
 * file's bytes, inflating them with a z_stream of our own when the file
 * starts with the gzip magic 1f 8b. A gzip file is one or more members
 * (concatenated members are legal gzip and are read as one stream); any
 * other bytes after the last member are rejected, unlike zlib's gzread,
 * which ignores them. */
#include "data/data_impl.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

static const char FN[] = "mp_dataset_load_idx";

#define IDX_UBYTE 0x08
#define IDX_SBYTE 0x09
#define IDX_SHORT 0x0B
#define IDX_INT   0x0C
#define IDX_FLOAT 0x0D
/* Files larger than this are refused before their data is read. */
#define IDX_MAX_BYTES ((uint64_t)1 << 40)

typedef struct {
    int32_t type;      /* one of IDX_* */
    size_t elem_size;  /* bytes per element */
    size_t ndims;
    uint32_t dims[255];
    size_t count;      /* product of dims */
} idx_header;

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static size_t elem_size(int32_t type)
{
    switch (type) {
    case IDX_UBYTE: case IDX_SBYTE: return 1;
    case IDX_SHORT: return 2;
    case IDX_INT: case IDX_FLOAT: return 4;
    default: return 0;
    }
}

/* Parses the len header bytes that could be read (len < 4 + 4 * ndims
 * means the file ended inside the header). */
static mp_status parse_header(const uint8_t *buf, size_t len, idx_header *out, const char *path)
{
    MP_REQUIRE(len >= 4, NULL, MP_ERR_FORMAT, "%s: '%s': %zu bytes, too short for an IDX header (4 bytes)", FN,
               path, len);
    MP_REQUIRE(buf[0] == 0 && buf[1] == 0, NULL, MP_ERR_FORMAT,
               "%s: '%s': bad IDX magic %02x %02x, expected 00 00 (not an IDX file?)", FN, path, buf[0], buf[1]);
    size_t es = elem_size(buf[2]);
    MP_REQUIRE(es > 0, NULL, MP_ERR_FORMAT,
               "%s: '%s': IDX element type 0x%02X not supported, expected 0x08, 0x09, 0x0B, 0x0C or 0x0D", FN,
               path, buf[2]);
    size_t nd = buf[3];
    MP_REQUIRE(nd >= 1, NULL, MP_ERR_FORMAT, "%s: '%s': IDX file with 0 dimensions", FN, path);
    MP_REQUIRE(len >= 4 + 4 * nd, NULL, MP_ERR_FORMAT, "%s: '%s': truncated IDX header (%zu of %zu bytes)", FN,
               path, len, 4 + 4 * nd);
    uint64_t count = 1;
    for (size_t i = 0; i < nd; i++) {
        out->dims[i] = be32(buf + 4 + 4 * i);
        MP_REQUIRE(out->dims[i] > 0, NULL, MP_ERR_INVALID_ARGUMENT, "%s: '%s': IDX dimension %zu is 0", FN, path,
                   i);
        /* dims are < 2^32, so a product below 2^40 never overflows 64 bits
         * before the check fires. */
        count *= out->dims[i];
        MP_REQUIRE(count * es <= IDX_MAX_BYTES, NULL, MP_ERR_INVALID_ARGUMENT,
                   "%s: '%s': IDX dimensions give more than 2^40 bytes of data (absurd or overflowing size)", FN,
                   path);
    }
    MP_REQUIRE(count <= SIZE_MAX / es, NULL, MP_ERR_INVALID_ARGUMENT, "%s: '%s': IDX size overflows size_t", FN,
               path);
    out->type = buf[2];
    out->elem_size = es;
    out->ndims = nd;
    out->count = (size_t)count;
    return MP_OK;
}

static double idx_value(const idx_header *h, const uint8_t *data, size_t i)
{
    const uint8_t *p = data + i * h->elem_size;
    switch (h->type) {
    case IDX_UBYTE: return p[0];
    case IDX_SBYTE: return (int8_t)p[0];
    case IDX_SHORT: return (int16_t)(uint16_t)((unsigned)p[0] << 8 | p[1]);
    case IDX_INT: return (int32_t)be32(p);
    default: {
        uint32_t u = be32(p);
        float f;
        memcpy(&f, &u, sizeof f);
        return f;
    }
    }
}

/* ---- byte source: a plain file or a gzip stream ------------------------------------ */
#define IN_SIZE (1u << 16)

typedef struct {
    FILE *f;           /* unbuffered: in[] is the only buffer */
    const char *path;
    int gz;            /* the file starts with 1f 8b: inflate it */
    int zinit;         /* zs needs inflateEnd */
    int member_end;    /* the last inflate call ended a gzip member */
    uint64_t file_size; /* size of a regular file, else 0 (an allocation hint only) */
    z_stream zs;       /* next_in / avail_in: the unread raw bytes of in[], for plain files too */
    uint8_t in[IN_SIZE];
} idx_src;

/* zlib's state goes through the library's allocator hook like every other
 * allocation (so allocation failures and leaks are tested for it too). */
static voidpf z_alloc(voidpf opaque, uInt items, uInt size)
{
    (void)opaque;
    size_t n;
    return mp__mul_size(items, size, &n) ? Z_NULL : mp__alloc(n);
}

static void z_free(voidpf opaque, voidpf p)
{
    (void)opaque;
    mp__free(p);
}

static mp_status io_error(const idx_src *s, int err)
{
    return mp__fail(NULL, MP_ERR_IO, "%s: reading '%s' failed: %s", FN, s->path,
                    err ? strerror(err) : "unknown error");
}

/* Makes at least want (<= IN_SIZE) raw bytes available in zs.next_in,
 * fewer only when the file ends. */
static mp_status raw_fill(idx_src *s, size_t want)
{
    if (s->zs.avail_in >= want) return MP_OK;
    if (s->zs.avail_in > 0 && s->zs.next_in != s->in) memmove(s->in, s->zs.next_in, s->zs.avail_in);
    s->zs.next_in = s->in;
    while (s->zs.avail_in < want) {
        errno = 0;
        size_t got = fread(s->in + s->zs.avail_in, 1, IN_SIZE - s->zs.avail_in, s->f);
        if (got == 0) {
            if (ferror(s->f)) return io_error(s, errno);
            break;
        }
        s->zs.avail_in += (uInt)got;
    }
    return MP_OK;
}

static mp_status plain_read(idx_src *s, uint8_t *buf, size_t len, size_t *got)
{
    size_t n = s->zs.avail_in < len ? s->zs.avail_in : len;
    if (n > 0) {
        memcpy(buf, s->zs.next_in, n);
        s->zs.next_in += n;
        s->zs.avail_in -= (uInt)n;
    }
    while (n < len) { /* large reads go straight into buf */
        errno = 0;
        size_t r = fread(buf + n, 1, len - n, s->f);
        if (r == 0) {
            if (ferror(s->f)) return io_error(s, errno);
            break;
        }
        n += r;
    }
    *got = n;
    return MP_OK;
}

/* Inflates up to len bytes; fewer only at the clean end of the last member
 * (then the file has ended too). */
static mp_status gz_read(idx_src *s, uint8_t *buf, size_t len, size_t *got)
{
    size_t n = 0;
    while (n < len) {
        if (s->member_end) {
            /* the end of the file, another member, or junk */
            MP_TRY(raw_fill(s, 2));
            if (s->zs.avail_in == 0) break;
            MP_REQUIRE(s->zs.avail_in >= 2 && s->zs.next_in[0] == 0x1f && s->zs.next_in[1] == 0x8b, NULL,
                       MP_ERR_FORMAT,
                       "%s: '%s': trailing bytes after the gzip stream (byte 0x%02X; expected the end of the file "
                       "or another gzip member)", FN, s->path, s->zs.next_in[0]);
            if (inflateReset(&s->zs) != Z_OK)
                return mp__fail(NULL, MP_ERR_FORMAT, "%s: '%s': corrupt gzip data", FN, s->path);
            s->member_end = 0;
        }
        MP_TRY(raw_fill(s, 1));
        MP_REQUIRE(s->zs.avail_in > 0, NULL, MP_ERR_FORMAT,
                   "%s: '%s': truncated gzip stream (the file ends inside a gzip member)", FN, s->path);
        size_t want = len - n < UINT_MAX ? len - n : UINT_MAX;
        s->zs.next_out = buf + n;
        s->zs.avail_out = (uInt)want;
        int ret = inflate(&s->zs, Z_NO_FLUSH);
        n += want - s->zs.avail_out;
        if (ret == Z_STREAM_END) s->member_end = 1;
        else if (ret == Z_MEM_ERROR)
            return mp__fail(NULL, MP_ERR_OUT_OF_MEMORY, "%s: out of memory inflating '%s'", FN, s->path);
        else if (ret != Z_OK) /* with input and output space, Z_BUF_ERROR (no progress) is corrupt data too */
            return mp__fail(NULL, MP_ERR_FORMAT, "%s: '%s': corrupt gzip data (zlib: %s)", FN, s->path,
                            s->zs.msg ? s->zs.msg : "no progress possible");
    }
    *got = n;
    return MP_OK;
}

/* Reads up to len bytes; fewer only at the end of the data. */
static mp_status src_read(idx_src *s, uint8_t *buf, size_t len, size_t *got)
{
    return s->gz ? gz_read(s, buf, len, got) : plain_read(s, buf, len, got);
}

static void src_close(idx_src *s)
{
    if (s->zinit) inflateEnd(&s->zs);
    fclose(s->f);
}

static mp_status src_open(idx_src *s, const char *path)
{
    memset(&s->zs, 0, sizeof s->zs);
    s->path = path;
    s->gz = s->zinit = s->member_end = 0;
    errno = 0;
    s->f = fopen(path, "rb");
    MP_REQUIRE(s->f, NULL, MP_ERR_IO, "%s: cannot open '%s': %s", FN, path, errno ? strerror(errno) : "unknown error");
    setvbuf(s->f, NULL, _IONBF, 0);
    struct stat st;
    s->file_size = fstat(fileno(s->f), &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 ? (uint64_t)st.st_size : 0;
    mp_status r = raw_fill(s, 2);
    if (r == MP_OK && s->zs.avail_in >= 2 && s->in[0] == 0x1f && s->in[1] == 0x8b) {
        s->gz = 1;
        s->zs.zalloc = z_alloc;
        s->zs.zfree = z_free;
        s->zs.opaque = Z_NULL;
        Bytef *next = s->zs.next_in;
        uInt avail = s->zs.avail_in;
        int ret = inflateInit2(&s->zs, 16 + MAX_WBITS); /* gzip wrapper only */
        s->zs.next_in = next;
        s->zs.avail_in = avail;
        if (ret == Z_OK) s->zinit = 1;
        else r = mp__fail(NULL, ret == Z_MEM_ERROR ? MP_ERR_OUT_OF_MEMORY : MP_ERR_FORMAT,
                          "%s: cannot inflate '%s' (zlib: %s)", FN, path, ret == Z_MEM_ERROR ? "out of memory" : "init failed");
    }
    if (r != MP_OK) src_close(s);
    return r;
}

/* First capacity of the data buffer: the whole announced size when the
 * file is large enough to hold it (plain) or plausibly inflates to it
 * (gzip); else a guess that doubles as data arrives, so a header that
 * announces more than the file holds costs no large allocation. */
static size_t first_capacity(const idx_src *s, size_t need)
{
    uint64_t guess = s->file_size;
    if (s->gz) guess = guess > UINT64_MAX / 16 ? UINT64_MAX : guess * 16;
    if (guess < 65536) guess = 65536;
    return guess < need ? (size_t)guess : need;
}

/* Reads the header, then exactly the announced data into a new buffer
 * *data, then checks that the file (or gzip stream) ends there. */
static mp_status read_body(idx_src *s, idx_header *h, uint8_t **data)
{
    uint8_t head[4 + 4 * 255];
    size_t got, hl;
    MP_TRY(src_read(s, head, 4, &hl));
    if (hl == 4) {
        MP_TRY(src_read(s, head + 4, 4 * (size_t)head[3], &got));
        hl += got;
    }
    MP_TRY(parse_header(head, hl, h, s->path));
    size_t need = h->count * h->elem_size, cap = first_capacity(s, need), have = 0;
    uint8_t *buf = mp__alloc(cap);
    MP_REQUIRE(buf, NULL, MP_ERR_OUT_OF_MEMORY, "%s: out of memory for %zu bytes of '%s'", FN, cap, s->path);
    mp_status st;
    for (;;) {
        st = src_read(s, buf + have, cap - have, &got);
        if (st != MP_OK) break;
        have += got;
        if (have < cap) {
            st = mp__fail(NULL, MP_ERR_FORMAT, "%s: '%s': truncated IDX data (%zu of %zu bytes)", FN, s->path,
                          have, need);
            break;
        }
        if (have == need) break;
        size_t bigger_cap = cap <= need / 2 ? 2 * cap : need;
        uint8_t *bigger = mp__alloc(bigger_cap);
        if (!bigger) {
            st = mp__fail(NULL, MP_ERR_OUT_OF_MEMORY, "%s: out of memory for %zu bytes of '%s'", FN, bigger_cap,
                          s->path);
            break;
        }
        memcpy(bigger, buf, have);
        mp__free(buf);
        buf = bigger;
        cap = bigger_cap;
    }
    if (st == MP_OK) {
        uint8_t extra;
        st = src_read(s, &extra, 1, &got);
        if (st == MP_OK && got > 0)
            st = mp__fail(NULL, MP_ERR_FORMAT, "%s: '%s': trailing bytes after the %zu bytes of IDX data%s", FN,
                          s->path, need, s->gz ? " (inside the gzip stream)" : "");
    }
    if (st != MP_OK) {
        mp__free(buf);
        return st;
    }
    *data = buf;
    return MP_OK;
}

static mp_status read_idx(const char *path, idx_header *h, uint8_t **data)
{
    idx_src *s = mp__alloc(sizeof *s);
    MP_REQUIRE(s, NULL, MP_ERR_OUT_OF_MEMORY, "%s: out of memory opening '%s'", FN, path);
    mp_status st = src_open(s, path);
    if (st == MP_OK) {
        st = read_body(s, h, data);
        src_close(s);
    }
    mp__free(s);
    return st;
}

/* ---- conversion to dataset arrays ------------------------------------------------- */
static mp_status convert_images(const idx_header *h, const uint8_t *data, int scale, float *x, const char *path)
{
    if (h->type == IDX_UBYTE) {
        /* Exact table: the common case (MNIST-like) costs one lookup per pixel. */
        float table[256];
        for (int v = 0; v < 256; v++) table[v] = scale ? (float)v / 255.0f : (float)v;
        for (size_t i = 0; i < h->count; i++) x[i] = table[data[i]];
        return MP_OK;
    }
    for (size_t i = 0; i < h->count; i++) {
        double v = idx_value(h, data, i);
        MP_REQUIRE(isfinite(v), NULL, MP_ERR_NOT_FINITE, "%s: '%s': element %zu is %g, expected a finite value", FN,
                   path, i, v);
        x[i] = (float)v;
    }
    return MP_OK;
}

static mp_status convert_labels(const idx_header *h, const uint8_t *data, int32_t *lab, const char *path)
{
    for (size_t i = 0; i < h->count; i++) {
        double v = idx_value(h, data, i);
        MP_REQUIRE(v >= 0 && v < (double)INT32_MAX && v == floor(v), NULL, MP_ERR_RANGE,
                   "%s: '%s': label %zu is %g, expected a whole number in [0, %d)", FN, path, i, v, (int)INT32_MAX);
        lab[i] = (int32_t)v;
    }
    return MP_OK;
}

/* Checks that an images header and a labels header describe one dataset.
 * Returns the row length through *dim. */
static mp_status check_pair(const idx_header *im, const idx_header *lb, const char *ip, const char *lp, int32_t *dim)
{
    size_t row = im->count / im->dims[0];
    MP_REQUIRE(row <= (size_t)INT32_MAX, NULL, MP_ERR_INVALID_ARGUMENT,
               "%s: %s: rows of %zu values, expected at most %d", FN, ip, row, (int)INT32_MAX);
    MP_REQUIRE(im->dims[0] <= (uint32_t)INT32_MAX, NULL, MP_ERR_INVALID_ARGUMENT,
               "%s: %s: %u examples, expected at most %d", FN, ip, (unsigned)im->dims[0], (int)INT32_MAX);
    MP_REQUIRE(lb->ndims == 1, NULL, MP_ERR_FORMAT, "%s: %s: labels file has %zu dimensions, expected 1", FN, lp,
               lb->ndims);
    MP_REQUIRE(lb->dims[0] == im->dims[0], NULL, MP_ERR_SHAPE_MISMATCH,
               "%s: %s has %u labels but %s has %u images", FN, lp, (unsigned)lb->dims[0], ip,
               (unsigned)im->dims[0]);
    MP_REQUIRE(im->ndims - 1 <= MP_DATA_MAX_DIMS, NULL, MP_ERR_FORMAT, "%s: %s: too many dimensions", FN, ip);
    *dim = (int32_t)row;
    return MP_OK;
}

static mp_status build_dataset(mp_dataset **out, const idx_header *im, const uint8_t *idata, const idx_header *lb,
                               const uint8_t *ldata, int32_t dim, int scale, const char *ip, const char *lp)
{
    /* Every element is written below: no need to zero (count * 4 cannot
     * overflow, the header check bounds it by 2^40 bytes). */
    float *x = mp__alloc(im->count * sizeof *x);
    int32_t *lab = mp__alloc(lb->count * sizeof *lab);
    if (!x || !lab) {
        mp__free(x);
        mp__free(lab);
        return mp__fail(NULL, MP_ERR_OUT_OF_MEMORY, "%s: out of memory for %zu values", FN, im->count);
    }
    mp_status st = convert_images(im, idata, scale, x, ip);
    if (st == MP_OK) st = convert_labels(lb, ldata, lab, lp);
    if (st != MP_OK) {
        mp__free(x);
        mp__free(lab);
        return st;
    }
    mp_dataset *ds;
    MP_TRY(mp__dataset_adopt(&ds, FN, x, im->dims[0], dim, lab, NULL, 0, 1)); /* converted with checks */
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
    MP_REQUIRE_PTR(out, NULL, FN);
    MP_REQUIRE_PTR(images_path, NULL, FN);
    MP_REQUIRE_PTR(labels_path, NULL, FN);
    MP_OPTIONAL_HANDLE(cfg, MP__KIND_CONFIG, NULL, FN);
    int scale = (int)mp__cfg_int(cfg, MP_CFG_DATA_SCALE);
    idx_header im, lb;
    uint8_t *idata = NULL, *ldata = NULL;
    /* Labels first: they are small, so a broken labels file fails before
     * the images are read. */
    MP_TRY(read_idx(labels_path, &lb, &ldata));
    mp_status st = read_idx(images_path, &im, &idata);
    int32_t dim = 0;
    if (st == MP_OK) st = check_pair(&im, &lb, images_path, labels_path, &dim);
    if (st == MP_OK) st = build_dataset(out, &im, idata, &lb, ldata, dim, scale, images_path, labels_path);
    mp__free(idata);
    mp__free(ldata);
    return st;
}
