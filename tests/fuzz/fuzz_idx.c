/* libFuzzer harness for mp_dataset_load_idx, the library's one IDX reader
 * (plain and gzip). Each input is written to an in-memory file (memfd) and
 * loaded
 *   A. as the images file, with a fixed valid labels file (2 labels);
 *   B. as the labels file, with a fixed valid images file (2 images);
 *   C. gzip-compressed (one member), as the images file;
 *   D. split into two gzip members, concatenated, as the images file.
 * C and D inflate to the input's bytes, so they must give the same status
 * and the same dataset as each other, and as A when the input is not gzip
 * itself: a differential check of the inflate path (an input starting
 * with 1f 8b reaches the gzip reader directly through A and B). A failure
 * must leave a message naming mp_dataset_load_idx. Seeds:
 * tests/fuzz/corpus/fuzz_idx/ (IDX files of 2 examples, some gzipped; the
 * data suite checks that each loads). */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>

#include "metaprompt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    int fd;
    char path[64];
} mem_file;

static void die(const char *what)
{
    fprintf(stderr, "fuzz_idx: %s\n", what);
    abort();
}

static void mem_open(mem_file *m, const char *name)
{
    m->fd = memfd_create(name, 0);
    if (m->fd < 0) { /* no memfd: an unlinked temporary file */
        char tmpl[] = "/tmp/fuzz_idx_XXXXXX";
        m->fd = mkstemp(tmpl);
        if (m->fd < 0) die("cannot create a temporary file");
        unlink(tmpl);
    }
    snprintf(m->path, sizeof m->path, "/proc/self/fd/%d", m->fd);
}

static void mem_write(const mem_file *m, const uint8_t *p, size_t n)
{
    if (ftruncate(m->fd, 0) != 0) die("ftruncate failed");
    for (size_t off = 0; off < n;) {
        ssize_t w = pwrite(m->fd, p + off, n - off, (off_t)off);
        if (w <= 0) die("pwrite failed");
        off += (size_t)w;
    }
}

/* Appends one gzip member holding src[0..n) to out (capacity cap); returns
 * the new length. */
static size_t gzip_append(const uint8_t *src, size_t n, uint8_t *out, size_t len, size_t cap)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    /* fastest level, small window and hash: inputs are at most a few KiB */
    if (deflateInit2(&zs, 1, Z_DEFLATED, 16 + 9, 1, Z_DEFAULT_STRATEGY) != Z_OK) die("deflateInit2");
    zs.next_in = (Bytef *)(uintptr_t)src;
    zs.avail_in = (uInt)n;
    zs.next_out = out + len;
    zs.avail_out = (uInt)(cap - len);
    if (deflate(&zs, Z_FINISH) != Z_STREAM_END) die("deflate");
    len = cap - zs.avail_out;
    deflateEnd(&zs);
    return len;
}

typedef struct {
    mp_status st;
    uint64_t hash; /* of the sizes, the sample shape, every value and label */
} outcome;

static uint64_t mix(uint64_t h, uint64_t v) { return (h ^ v) * 1099511628211ULL; }

static outcome load(const char *images, const char *labels)
{
    outcome r = {0, 1469598103934665603ULL};
    mp_dataset *ds = NULL;
    r.st = mp_dataset_load_idx(&ds, images, labels, NULL);
    if (r.st != MP_OK) {
        if (ds) die("out parameter written on failure");
        if (strncmp(mp_last_error(), "mp_dataset_load_idx: ", 21) != 0) die("message does not name the function");
        return r;
    }
    size_t n, nd;
    int32_t dim, shape[256];
    if (mp_dataset_size(ds, &n) || mp_dataset_dim(ds, &dim) || mp_dataset_sample_shape(ds, shape, 256, &nd))
        die("accessor failed");
    r.hash = mix(mix(r.hash, n), (uint64_t)dim);
    for (size_t i = 0; i < nd; i++) r.hash = mix(r.hash, (uint64_t)shape[i]);
    float *row = malloc((size_t)dim * sizeof *row);
    if (!row) die("out of memory");
    for (size_t i = 0; i < n; i++) {
        int32_t label;
        if (mp_dataset_get(ds, i, row, (size_t)dim, &label) != MP_OK) die("mp_dataset_get failed");
        r.hash = mix(r.hash, (uint64_t)label);
        for (int32_t j = 0; j < dim; j++) {
            uint32_t u;
            memcpy(&u, &row[j], sizeof u);
            r.hash = mix(r.hash, u);
        }
    }
    free(row);
    mp_dataset_destroy(ds);
    return r;
}

static void same(outcome a, outcome b, const char *what)
{
    if (a.st != b.st || a.hash != b.hash) {
        fprintf(stderr, "fuzz_idx: %s: status %d vs %d\n", what, (int)a.st, (int)b.st);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static mem_file input, fixed_images, fixed_labels;
    static int ready;
    if (!ready) {
        /* 2 images of 2x2 unsigned bytes; labels 0, 1 */
        static const uint8_t im[] = {0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2, 1, 2, 3, 4, 5, 6, 7, 8};
        static const uint8_t lb[] = {0, 0, 8, 1, 0, 0, 0, 2, 0, 1};
        mem_open(&input, "fuzz_idx_input");
        mem_open(&fixed_images, "fuzz_idx_images");
        mem_open(&fixed_labels, "fuzz_idx_labels");
        mem_write(&fixed_images, im, sizeof im);
        mem_write(&fixed_labels, lb, sizeof lb);
        ready = 1;
    }
    mem_write(&input, data, size);
    outcome a = load(input.path, fixed_labels.path);
    (void)load(fixed_images.path, input.path);

    /* deflate output is at most a little larger than its input */
    size_t cap = 2 * size + 256;
    uint8_t *z = malloc(cap);
    if (!z) die("out of memory");
    size_t zl = gzip_append(data, size, z, 0, cap);
    mem_write(&input, z, zl);
    outcome c = load(input.path, fixed_labels.path);
    size_t cut = size / 3;
    zl = gzip_append(data, cut, z, 0, cap);
    zl = gzip_append(data + cut, size - cut, z, zl, cap);
    mem_write(&input, z, zl);
    outcome d = load(input.path, fixed_labels.path);
    free(z);

    same(c, d, "one gzip member vs two");
    if (!(size >= 2 && data[0] == 0x1f && data[1] == 0x8b)) same(a, c, "plain vs gzip");
    return 0;
}
