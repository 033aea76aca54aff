/* The checkpoint container (docs/FORMAT.md): a generic writer and a
 * verifying reader of named tensors plus configuration entries. Byte order
 * is explicit (little-endian) so files move between machines. */
#include "io/checkpoint_internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define FORMAT_VERSION 1u
#define HEADER_BYTES 32u
#define CONFIG_BYTES 16u
#define CRC_BYTES 4u
static const unsigned char MAGIC[8] = {0x89, 'M', 'P', 'C', 'K', 'P', 'T', '\n'};

typedef struct {
    char name[MP__CKPT_NAME_MAX + 1];
    int32_t dtype, rows, cols;
    void *data;          /* writer: owned copy (native order) */
    size_t offset;       /* reader: byte offset of the values in the image */
} tensor;

typedef struct {
    int32_t key, type;
    int64_t ival;
    double fval;
} cfg_entry;

struct mp__ckpt_writer {
    tensor *t;
    size_t nt, cap_t;
    cfg_entry *c;
    size_t nc, cap_c;
};

struct mp__ckpt_reader {
    unsigned char *buf;
    size_t len;
    int32_t lib_version;
    tensor *t;
    size_t nt;
    cfg_entry *c;
    size_t nc;
};

static size_t dtype_size(int32_t dtype)
{
    switch (dtype) {
    case MP__CKPT_F32: case MP__CKPT_I32: return 4;
    case MP__CKPT_F64: case MP__CKPT_U64: return 8;
    default: return 0;
    }
}

static const char *dtype_name(int32_t dtype)
{
    switch (dtype) {
    case MP__CKPT_F32: return "f32";
    case MP__CKPT_F64: return "f64";
    case MP__CKPT_U64: return "u64";
    case MP__CKPT_I32: return "i32";
    default: return "unknown";
    }
}

/* ---- little-endian helpers ------------------------------------------------ */
static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get_u32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
    return v;
}
static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* Elements are 4 or 8 bytes; converting through integers of that width keeps
 * the file little-endian whatever the host order. */
static void put_values(unsigned char *p, const void *src, size_t n, size_t esize)
{
    for (size_t i = 0; i < n; i++) {
        if (esize == 4) {
            uint32_t v;
            memcpy(&v, (const char *)src + 4 * i, 4);
            put_u32(p + 4 * i, v);
        } else {
            uint64_t v;
            memcpy(&v, (const char *)src + 8 * i, 8);
            put_u64(p + 8 * i, v);
        }
    }
}
static void get_values(void *dst, const unsigned char *p, size_t n, size_t esize)
{
    for (size_t i = 0; i < n; i++) {
        if (esize == 4) {
            uint32_t v = get_u32(p + 4 * i);
            memcpy((char *)dst + 4 * i, &v, 4);
        } else {
            uint64_t v = get_u64(p + 8 * i);
            memcpy((char *)dst + 8 * i, &v, 8);
        }
    }
}

static uint32_t crc_of(const unsigned char *p, size_t n)
{
    return (uint32_t)crc32_z(crc32_z(0L, Z_NULL, 0), p, n);
}

/* ---- writer ------------------------------------------------------------------- */
mp_status mp__ckpt_writer_create(mp__ckpt_writer **out)
{
    mp__ckpt_writer *w = mp__calloc(1, sizeof *w);
    MP_REQUIRE(w, NULL, MP_ERR_OUT_OF_MEMORY, "mp_checkpoint: out of memory (writer)");
    *out = w;
    return MP_OK;
}

void mp__ckpt_writer_destroy(mp__ckpt_writer *w)
{
    if (!w) return;
    for (size_t i = 0; i < w->nt; i++) mp__free(w->t[i].data);
    mp__free(w->t);
    mp__free(w->c);
    mp__free(w);
}

/* Grows an array of elements of esz bytes to hold one more. */
static mp_status grow(void **arr, size_t *cap, size_t n, size_t esz)
{
    if (n < *cap) return MP_OK;
    size_t ncap = *cap ? 2 * *cap : 16;
    void *p = mp__calloc(ncap, esz);
    MP_REQUIRE(p, NULL, MP_ERR_OUT_OF_MEMORY, "mp_checkpoint: out of memory");
    if (*arr) memcpy(p, *arr, n * esz);
    mp__free(*arr);
    *arr = p;
    *cap = ncap;
    return MP_OK;
}

static int name_ok(const char *name)
{
    size_t n = strnlen(name, MP__CKPT_NAME_MAX + 1);
    if (n == 0 || n > MP__CKPT_NAME_MAX) return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)name[i] < 0x21 || (unsigned char)name[i] > 0x7e) return 0;
    return 1;
}

static const tensor *find_tensor(const tensor *t, size_t nt, const char *name)
{
    for (size_t i = 0; i < nt; i++)
        if (strcmp(t[i].name, name) == 0) return &t[i];
    return NULL;
}

static mp_status writer_add(mp__ckpt_writer *w, const char *name, int32_t dtype, int32_t rows,
                            int32_t cols, const void *data)
{
    MP_REQUIRE(name && name_ok(name), NULL, MP_ERR_INVALID_ARGUMENT,
               "mp_checkpoint: tensor name must be 1..%d printable ASCII characters",
               MP__CKPT_NAME_MAX);
    MP_REQUIRE(rows >= 0 && cols >= 0, NULL, MP_ERR_INVALID_ARGUMENT,
               "mp_checkpoint: tensor '%s' has negative shape %d x %d", name, (int)rows, (int)cols);
    MP_REQUIRE(!find_tensor(w->t, w->nt, name), NULL, MP_ERR_INVALID_ARGUMENT,
               "mp_checkpoint: tensor '%s' added twice", name);
    size_t n = (size_t)rows * (size_t)cols, bytes;
    MP_REQUIRE(mp__mul_size(n, dtype_size(dtype), &bytes) == 0, NULL, MP_ERR_RANGE,
               "mp_checkpoint: tensor '%s' too large", name);
    MP_REQUIRE(n == 0 || data, NULL, MP_ERR_NULL_POINTER,
               "mp_checkpoint: tensor '%s' data is NULL", name);
    MP_TRY(grow((void **)&w->t, &w->cap_t, w->nt, sizeof *w->t));
    void *copy = mp__alloc(bytes);
    MP_REQUIRE(copy, NULL, MP_ERR_OUT_OF_MEMORY, "mp_checkpoint: out of memory (tensor '%s')", name);
    if (bytes) memcpy(copy, data, bytes);
    tensor *t = &w->t[w->nt++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->dtype = dtype;
    t->rows = rows;
    t->cols = cols;
    t->data = copy;
    return MP_OK;
}

mp_status mp__ckpt_writer_add(mp__ckpt_writer *w, const char *name, int32_t rows, int32_t cols,
                              const float *data)
{
    return writer_add(w, name, MP__CKPT_F32, rows, cols, data);
}
mp_status mp__ckpt_writer_add_f64(mp__ckpt_writer *w, const char *name, int32_t rows,
                                  int32_t cols, const double *data)
{
    return writer_add(w, name, MP__CKPT_F64, rows, cols, data);
}
mp_status mp__ckpt_writer_add_i32(mp__ckpt_writer *w, const char *name, int32_t rows,
                                  int32_t cols, const int32_t *data)
{
    return writer_add(w, name, MP__CKPT_I32, rows, cols, data);
}
mp_status mp__ckpt_writer_add_u64s(mp__ckpt_writer *w, const char *name, int32_t rows,
                                   int32_t cols, const uint64_t *data)
{
    return writer_add(w, name, MP__CKPT_U64, rows, cols, data);
}
mp_status mp__ckpt_writer_add_u64(mp__ckpt_writer *w, const char *name, uint64_t value)
{
    return writer_add(w, name, MP__CKPT_U64, 1, 1, &value);
}

/* Whether a value of key k is one a configuration accepts (finite, inside
 * the key's range, compared as mp_config_set_int/float do): the writer and
 * the reader both ask this, so a file the writer accepts always loads. */
static int config_value_ok(const mp__key_info *k, int64_t ival, double fval)
{
    double v = k->type == MP_CFG_TYPE_INT ? (double)ival : fval;
    return isfinite(v) && v >= k->min && v <= k->max;
}

mp_status mp__ckpt_writer_add_config(mp__ckpt_writer *w, int32_t key, int64_t ival, double fval)
{
    const mp__key_info *k = mp__key_lookup(key);
    MP_REQUIRE(k, NULL, MP_ERR_NOT_FOUND, "mp_checkpoint: unknown configuration key %d", (int)key);
    /* Never write a file that would not load (a resolved value beyond its
     * key's range is a library bug, reported at the save instead of at some
     * later load). */
    MP_REQUIRE(config_value_ok(k, ival, fval), NULL, MP_ERR_INTERNAL,
               "mp_checkpoint: internal error: configuration key '%s' is %.17g, outside its range [%.17g, %.17g] "
               "(the file would not load); nothing written", k->name,
               k->type == MP_CFG_TYPE_INT ? (double)ival : fval, k->min, k->max);
    for (size_t i = 0; i < w->nc; i++)
        if (w->c[i].key == key) {
            w->c[i].ival = ival;
            w->c[i].fval = fval;
            return MP_OK;
        }
    MP_TRY(grow((void **)&w->c, &w->cap_c, w->nc, sizeof *w->c));
    w->c[w->nc++] = (cfg_entry){key, k->type, ival, fval};
    return MP_OK;
}

static size_t record_bytes(const tensor *t)
{
    return 4 + strlen(t->name) + 4 + 4 + 16 + (size_t)t->rows * (size_t)t->cols * dtype_size(t->dtype);
}

static unsigned char *serialise(const mp__ckpt_writer *w, size_t *len_out)
{
    size_t len = HEADER_BYTES + w->nc * CONFIG_BYTES + CRC_BYTES;
    for (size_t i = 0; i < w->nt; i++) len += record_bytes(&w->t[i]);
    unsigned char *b = mp__alloc(len), *p = b;
    if (!b) return NULL;
    memcpy(p, MAGIC, 8);
    put_u32(p + 8, FORMAT_VERSION);
    put_u32(p + 12, (uint32_t)MP_VERSION_NUMBER);
    put_u64(p + 16, (uint64_t)len);
    put_u32(p + 24, (uint32_t)w->nc);
    put_u32(p + 28, (uint32_t)w->nt);
    p += HEADER_BYTES;
    for (size_t i = 0; i < w->nc; i++, p += CONFIG_BYTES) {
        const cfg_entry *c = &w->c[i];
        put_u32(p, (uint32_t)c->key);
        put_u32(p + 4, (uint32_t)c->type);
        if (c->type == MP_CFG_TYPE_INT) {
            put_u64(p + 8, (uint64_t)c->ival);
        } else {
            uint64_t bits;
            memcpy(&bits, &c->fval, 8);
            put_u64(p + 8, bits);
        }
    }
    for (size_t i = 0; i < w->nt; i++) {
        const tensor *t = &w->t[i];
        size_t nl = strlen(t->name), esz = dtype_size(t->dtype);
        put_u32(p, (uint32_t)nl);
        memcpy(p + 4, t->name, nl);
        p += 4 + nl;
        put_u32(p, (uint32_t)t->dtype);
        put_u32(p + 4, 2); /* ndim: version 1 stores matrices */
        put_u64(p + 8, (uint64_t)t->rows);
        put_u64(p + 16, (uint64_t)t->cols);
        p += 24;
        size_t n = (size_t)t->rows * (size_t)t->cols;
        put_values(p, t->data, n, esz);
        p += n * esz;
    }
    put_u32(p, crc_of(b, len - CRC_BYTES));
    *len_out = len;
    return b;
}

/* The temporary name carries the pid and the image's address, so
 * concurrent saves to one path (other processes or threads) never share a
 * temporary file; the last rename wins whole. */
static mp_status write_file(const char *path, const unsigned char *b, size_t len)
{
    char tmp[4096];
    int n = snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%lx", path, (long)getpid(), (unsigned long)(uintptr_t)b);
    MP_REQUIRE(n > 0 && (size_t)n < sizeof tmp, NULL, MP_ERR_INVALID_ARGUMENT,
               "mp_checkpoint: path too long (%zu bytes)", strlen(path));
    FILE *f = fopen(tmp, "wb");
    MP_REQUIRE(f, NULL, MP_ERR_IO, "mp_checkpoint: cannot create '%s': %s", tmp, strerror(errno));
    int ok = fwrite(b, 1, len, f) == len;
    int err = errno;
    ok = (fflush(f) == 0) && ok;
    if (ok) ok = fsync(fileno(f)) == 0; /* the rename must not publish unwritten data */
    if (!ok) err = errno;
    ok = (fclose(f) == 0) && ok;
    if (ok && rename(tmp, path) != 0) {
        ok = 0;
        err = errno;
    }
    if (!ok) {
        remove(tmp);
        return mp__fail(NULL, MP_ERR_IO, "mp_checkpoint: cannot write '%s': %s", path,
                        strerror(err));
    }
    return MP_OK;
}

mp_status mp__ckpt_writer_save(mp__ckpt_writer *w, const char *path)
{
    size_t len;
    unsigned char *b = serialise(w, &len);
    MP_REQUIRE(b, NULL, MP_ERR_OUT_OF_MEMORY, "mp_checkpoint: out of memory (file image)");
    mp_status st = write_file(path, b, len);
    mp__free(b);
    return st;
}

/* ---- reader -------------------------------------------------------------------- */
#define BAD(...) mp__fail(NULL, MP_ERR_FORMAT, __VA_ARGS__)

static mp_status check_header(const unsigned char *b, size_t len)
{
    if (len < 8 || memcmp(b, MAGIC, 8) != 0)
        return BAD("mp_checkpoint: not a libmetaprompt checkpoint (bad magic)");
    if (len < HEADER_BYTES + CRC_BYTES)
        return BAD("mp_checkpoint: file truncated: %zu bytes, the header alone needs %u", len,
                   HEADER_BYTES + CRC_BYTES);
    uint32_t version = get_u32(b + 8);
    MP_REQUIRE(version >= 1 && version <= FORMAT_VERSION, NULL, MP_ERR_VERSION,
               "mp_checkpoint: format version %u is not supported (this library reads 1..%u; "
               "written by library %u)",
               (unsigned)version, FORMAT_VERSION, (unsigned)get_u32(b + 12));
    uint64_t want = get_u64(b + 16);
    if (want > len)
        return BAD("mp_checkpoint: file truncated: header says %llu bytes, file has %zu",
                   (unsigned long long)want, len);
    if (want < len)
        return BAD("mp_checkpoint: %zu trailing bytes after the %llu the header announces",
                   len - (size_t)want, (unsigned long long)want);
    uint32_t stored = get_u32(b + len - CRC_BYTES), got = crc_of(b, len - CRC_BYTES);
    MP_REQUIRE(stored == got, NULL, MP_ERR_CHECKSUM,
               "mp_checkpoint: CRC32 mismatch (stored %08x, computed %08x): file corrupted",
               (unsigned)stored, (unsigned)got);
    return MP_OK;
}

/* A registered key must carry its declared type tag (an integer key stored
 * as a float would otherwise be read from the float's bit pattern), and its
 * value must be inside the key's range (a float also finite): writers only
 * store values a configuration accepted, so anything else is damage, even
 * where the loader would not use the value. Unregistered keys (a newer
 * library's) are framed only; their readers check them. */
static mp_status check_config_value(const cfg_entry *c, uint32_t i)
{
    const mp__key_info *k = mp__key_lookup(c->key);
    if (!k) return MP_OK;
    if (c->type != k->type)
        return BAD("mp_checkpoint: configuration entry %u, key '%s' (%d), is stored as %s but '%s' "
                   "is %s key", (unsigned)i, k->name, (int)c->key,
                   c->type == MP_CFG_TYPE_INT ? "an integer" : "a float", k->name,
                   k->type == MP_CFG_TYPE_INT ? "an integer" : "a float");
    MP_REQUIRE(c->type == MP_CFG_TYPE_INT || isfinite(c->fval), NULL, MP_ERR_NOT_FINITE,
               "mp_checkpoint: configuration key '%s' (%d) is not finite (%g)", k->name, (int)c->key,
               c->fval);
    if (config_value_ok(k, c->ival, c->fval)) return MP_OK;
    if (c->type == MP_CFG_TYPE_INT)
        return BAD("mp_checkpoint: configuration key '%s' (%d) is %lld, outside its range [%.17g, %.17g]",
                   k->name, (int)c->key, (long long)c->ival, k->min, k->max);
    return BAD("mp_checkpoint: configuration key '%s' (%d) is %g, outside its range [%g, %g]", k->name,
               (int)c->key, c->fval, k->min, k->max);
}

static mp_status parse_config(mp__ckpt_reader *r, const unsigned char **pp, const unsigned char *end)
{
    uint32_t nc = get_u32(r->buf + 24);
    if ((size_t)(end - *pp) / CONFIG_BYTES < nc)
        return BAD("mp_checkpoint: %u configuration entries do not fit in the file", (unsigned)nc);
    r->c = mp__calloc(nc ? nc : 1, sizeof *r->c);
    MP_REQUIRE(r->c, NULL, MP_ERR_OUT_OF_MEMORY, "mp_checkpoint: out of memory");
    for (uint32_t i = 0; i < nc; i++, *pp += CONFIG_BYTES) {
        cfg_entry *c = &r->c[i];
        c->key = (int32_t)get_u32(*pp);
        c->type = (int32_t)get_u32(*pp + 4);
        uint64_t bits = get_u64(*pp + 8);
        if (c->type != MP_CFG_TYPE_INT && c->type != MP_CFG_TYPE_FLOAT)
            return BAD("mp_checkpoint: configuration entry %u has bad type %d", (unsigned)i, (int)c->type);
        c->ival = (int64_t)bits;
        memcpy(&c->fval, &bits, 8);
        if (c->type == MP_CFG_TYPE_INT) c->fval = (double)c->ival;
        MP_TRY(check_config_value(c, i));
        for (uint32_t j = 0; j < i; j++)
            if (r->c[j].key == c->key)
                return BAD("mp_checkpoint: configuration key %d stored twice", (int)c->key);
        r->nc = i + 1;
    }
    return MP_OK;
}

static mp_status parse_tensor(mp__ckpt_reader *r, tensor *t, const unsigned char **pp,
                              const unsigned char *end)
{
    const unsigned char *p = *pp;
    if (end - p < 4) return BAD("mp_checkpoint: tensor record %zu truncated", r->nt);
    uint32_t nl = get_u32(p);
    p += 4;
    if (nl == 0 || nl > MP__CKPT_NAME_MAX || (size_t)(end - p) < (size_t)nl + 24)
        return BAD("mp_checkpoint: tensor record %zu has a bad name length %u", r->nt, (unsigned)nl);
    memcpy(t->name, p, nl);
    t->name[nl] = '\0';
    if (!name_ok(t->name)) return BAD("mp_checkpoint: tensor record %zu has a bad name", r->nt);
    p += nl;
    t->dtype = (int32_t)get_u32(p);
    uint32_t ndim = get_u32(p + 4);
    uint64_t rows = get_u64(p + 8), cols = get_u64(p + 16);
    p += 24;
    size_t esz = dtype_size(t->dtype);
    if (!esz) return BAD("mp_checkpoint: tensor '%s' has unknown dtype %d", t->name, (int)t->dtype);
    if (ndim != 2) return BAD("mp_checkpoint: tensor '%s' has %u dimensions, expected 2", t->name, (unsigned)ndim);
    if (rows > INT32_MAX || cols > INT32_MAX)
        return BAD("mp_checkpoint: tensor '%s' has an absurd shape", t->name);
    size_t n = (size_t)rows * (size_t)cols; /* both < 2^31: fits in 64-bit size_t */
    if (n > (size_t)(end - p) / esz)
        return BAD("mp_checkpoint: tensor '%s' (%llu x %llu %s) runs past the end of the file",
                   t->name, (unsigned long long)rows, (unsigned long long)cols, dtype_name(t->dtype));
    if (find_tensor(r->t, r->nt, t->name))
        return BAD("mp_checkpoint: tensor '%s' stored twice", t->name);
    t->rows = (int32_t)rows;
    t->cols = (int32_t)cols;
    t->offset = (size_t)(p - r->buf);
    *pp = p + n * esz;
    return MP_OK;
}

static mp_status parse(mp__ckpt_reader *r)
{
    const unsigned char *p = r->buf + HEADER_BYTES, *end = r->buf + r->len - CRC_BYTES;
    r->lib_version = (int32_t)get_u32(r->buf + 12);
    MP_TRY(parse_config(r, &p, end));
    uint32_t nt = get_u32(r->buf + 28);
    /* Every record takes at least 29 bytes: bound the count before allocating. */
    if ((size_t)(end - p) / 29 < nt)
        return BAD("mp_checkpoint: %u tensors do not fit in the file", (unsigned)nt);
    r->t = mp__calloc(nt ? nt : 1, sizeof *r->t);
    MP_REQUIRE(r->t, NULL, MP_ERR_OUT_OF_MEMORY, "mp_checkpoint: out of memory");
    for (uint32_t i = 0; i < nt; i++) {
        MP_TRY(parse_tensor(r, &r->t[i], &p, end));
        r->nt = i + 1;
    }
    if (p != end) return BAD("mp_checkpoint: %zu unexplained bytes before the CRC", (size_t)(end - p));
    return MP_OK;
}

static mp_status open_owned(mp__ckpt_reader **out, unsigned char *buf, size_t len)
{
    mp_status st = check_header(buf, len);
    if (st != MP_OK) {
        mp__free(buf);
        return st;
    }
    mp__ckpt_reader *r = mp__calloc(1, sizeof *r);
    if (!r) {
        mp__free(buf);
        return mp__fail(NULL, MP_ERR_OUT_OF_MEMORY, "mp_checkpoint: out of memory (reader)");
    }
    r->buf = buf;
    r->len = len;
    st = parse(r);
    if (st != MP_OK) {
        mp__ckpt_reader_close(r);
        return st;
    }
    *out = r;
    return MP_OK;
}

mp_status mp__ckpt_reader_open_mem(mp__ckpt_reader **out, const void *data, size_t len)
{
    MP_REQUIRE(data || len == 0, NULL, MP_ERR_NULL_POINTER, "mp_checkpoint: data is NULL");
    unsigned char *buf = mp__alloc(len);
    MP_REQUIRE(buf, NULL, MP_ERR_OUT_OF_MEMORY, "mp_checkpoint: out of memory (%zu bytes)", len);
    if (len) memcpy(buf, data, len);
    return open_owned(out, buf, len);
}

static mp_status read_all(const char *path, unsigned char **out, size_t *len_out)
{
    FILE *f = fopen(path, "rb");
    MP_REQUIRE(f, NULL, MP_ERR_IO, "mp_checkpoint: cannot open: %s", strerror(errno));
    struct stat sb; /* a directory opens, and its "size" would reach the allocator */
    int rc = fstat(fileno(f), &sb), stat_err = errno;
    if (rc != 0 || !S_ISREG(sb.st_mode)) {
        fclose(f);
        return mp__fail(NULL, MP_ERR_IO, "mp_checkpoint: cannot read: %s",
                        rc != 0 ? strerror(stat_err) : S_ISDIR(sb.st_mode) ? "is a directory" : "not a regular file");
    }
    long len = -1;
    if (fseek(f, 0, SEEK_END) == 0) len = ftell(f);
    if (len < 0 || fseek(f, 0, SEEK_SET) != 0) {
        int err = errno;
        fclose(f);
        return mp__fail(NULL, MP_ERR_IO, "mp_checkpoint: cannot size the file: %s", strerror(err));
    }
    unsigned char *buf = mp__alloc((size_t)len);
    if (!buf) {
        fclose(f);
        return mp__fail(NULL, MP_ERR_OUT_OF_MEMORY, "mp_checkpoint: out of memory (%ld bytes)", len);
    }
    size_t got = fread(buf, 1, (size_t)len, f);
    int err = ferror(f) ? errno : 0;
    fclose(f);
    if (got != (size_t)len) {
        mp__free(buf);
        return mp__fail(NULL, MP_ERR_IO, "mp_checkpoint: cannot read: %s", err ? strerror(err) : "short read");
    }
    *out = buf;
    *len_out = (size_t)len;
    return MP_OK;
}

mp_status mp__ckpt_reader_open(mp__ckpt_reader **out, const char *path)
{
    unsigned char *buf = NULL;
    size_t len = 0;
    MP_TRY(read_all(path, &buf, &len));
    return open_owned(out, buf, len);
}

void mp__ckpt_reader_close(mp__ckpt_reader *r)
{
    if (!r) return;
    mp__free(r->buf);
    mp__free(r->t);
    mp__free(r->c);
    mp__free(r);
}

int32_t mp__ckpt_library_version(const mp__ckpt_reader *r) { return r->lib_version; }
size_t mp__ckpt_config_count(const mp__ckpt_reader *r) { return r->nc; }

void mp__ckpt_config_entry(const mp__ckpt_reader *r, size_t i, int32_t *key, int32_t *type,
                           int64_t *ival, double *fval)
{
    *key = r->c[i].key;
    *type = r->c[i].type;
    *ival = r->c[i].ival;
    *fval = r->c[i].fval;
}

mp_status mp__ckpt_config(const mp__ckpt_reader *r, int32_t key, int64_t *ival, double *fval)
{
    for (size_t i = 0; i < r->nc; i++)
        if (r->c[i].key == key) {
            if (ival) *ival = r->c[i].ival;
            if (fval) *fval = r->c[i].fval;
            return MP_OK;
        }
    return MP_ERR_NOT_FOUND; /* quiet: absence is an answer, the caller words any error */
}

size_t mp__ckpt_num_tensors(const mp__ckpt_reader *r) { return r->nt; }
const char *mp__ckpt_tensor_name(const mp__ckpt_reader *r, size_t i) { return r->t[i].name; }

static mp_status lookup(const mp__ckpt_reader *r, const char *name, const tensor **out)
{
    const tensor *t = find_tensor(r->t, r->nt, name);
    MP_REQUIRE(t, NULL, MP_ERR_NOT_FOUND, "mp_checkpoint: tensor '%s' is missing from the file", name);
    *out = t;
    return MP_OK;
}

int mp__ckpt_has(const mp__ckpt_reader *r, const char *name) { return find_tensor(r->t, r->nt, name) != NULL; }

mp_status mp__ckpt_find(const mp__ckpt_reader *r, const char *name, int32_t *dtype, int32_t *rows,
                        int32_t *cols)
{
    const tensor *t = NULL;
    MP_TRY(lookup(r, name, &t));
    if (dtype) *dtype = t->dtype;
    if (rows) *rows = t->rows;
    if (cols) *cols = t->cols;
    return MP_OK;
}

mp_status mp__ckpt_expect(const mp__ckpt_reader *r, const char *name, int32_t dtype, int32_t rows,
                          int32_t cols)
{
    const tensor *t = NULL;
    MP_TRY(lookup(r, name, &t));
    MP_REQUIRE(t->dtype == dtype, NULL, MP_ERR_FORMAT,
               "mp_checkpoint: tensor '%s' is %s in the file, expected %s", name,
               dtype_name(t->dtype), dtype_name(dtype));
    MP_REQUIRE(t->rows == rows && t->cols == cols, NULL, MP_ERR_SHAPE_MISMATCH,
               "mp_checkpoint: tensor '%s' is %d x %d in the file, expected %d x %d", name,
               (int)t->rows, (int)t->cols, (int)rows, (int)cols);
    return MP_OK;
}

static mp_status read_typed(const mp__ckpt_reader *r, const char *name, int32_t dtype, void *dst,
                            size_t len)
{
    const tensor *t = NULL;
    MP_TRY(lookup(r, name, &t));
    MP_REQUIRE(t->dtype == dtype, NULL, MP_ERR_FORMAT,
               "mp_checkpoint: tensor '%s' is %s in the file, expected %s", name,
               dtype_name(t->dtype), dtype_name(dtype));
    size_t n = (size_t)t->rows * (size_t)t->cols;
    MP_REQUIRE(n == len, NULL, MP_ERR_SHAPE_MISMATCH,
               "mp_checkpoint: tensor '%s' has %zu values in the file, expected %zu", name, n, len);
    MP_REQUIRE(dst || n == 0, NULL, MP_ERR_NULL_POINTER, "mp_checkpoint: destination is NULL");
    get_values(dst, r->buf + t->offset, n, dtype_size(dtype));
    return MP_OK;
}

mp_status mp__ckpt_read(const mp__ckpt_reader *r, const char *name, float *dst, size_t len)
{
    return read_typed(r, name, MP__CKPT_F32, dst, len);
}
mp_status mp__ckpt_read_f64(const mp__ckpt_reader *r, const char *name, double *dst, size_t len)
{
    return read_typed(r, name, MP__CKPT_F64, dst, len);
}
mp_status mp__ckpt_read_i32(const mp__ckpt_reader *r, const char *name, int32_t *dst, size_t len)
{
    return read_typed(r, name, MP__CKPT_I32, dst, len);
}
mp_status mp__ckpt_read_u64s(const mp__ckpt_reader *r, const char *name, uint64_t *dst, size_t len)
{
    return read_typed(r, name, MP__CKPT_U64, dst, len);
}
mp_status mp__ckpt_read_u64(const mp__ckpt_reader *r, const char *name, uint64_t *value)
{
    return read_typed(r, name, MP__CKPT_U64, value, 1);
}

size_t mp__ckpt_first_f32_failing(const mp__ckpt_reader *r, const char *name,
                                  int (*ok)(float value, const void *ctx), const void *ctx,
                                  float *value)
{
    const tensor *t = find_tensor(r->t, r->nt, name);
    if (!t || t->dtype != MP__CKPT_F32) return SIZE_MAX;
    size_t n = (size_t)t->rows * (size_t)t->cols;
    const unsigned char *p = r->buf + t->offset;
    for (size_t i = 0; i < n; i++) {
        uint32_t bits = get_u32(p + 4 * i);
        float v;
        memcpy(&v, &bits, 4);
        if (!ok(v, ctx)) {
            if (value) *value = v;
            return i;
        }
    }
    return SIZE_MAX;
}
