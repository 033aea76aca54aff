/* Numeric CSV: one example per line, comma-separated cells. Two passes over
 * the text: the first counts rows and columns so that the second fills
 * exactly-sized arrays. Works on a (pointer, length) text without a
 * terminating NUL, so the fuzz harness can feed raw bytes. */
#include "data/data_impl.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CELL_MAX 128 /* longest cell accepted (a double needs far fewer) */

typedef struct {
    const char *p, *end;
    size_t line; /* 1-based number of the line at p */
} cursor;

static int is_blank(char c) { return c == ' ' || c == '\t' || c == '\r'; }

/* Returns the current line [*b, *e) and moves past its end. */
static void next_line(cursor *c, const char **b, const char **e)
{
    *b = c->p;
    const char *nl = memchr(c->p, '\n', (size_t)(c->end - c->p));
    *e = nl ? nl : c->end;
    c->p = nl ? nl + 1 : c->end;
    c->line++;
}

static int line_is_blank(const char *b, const char *e)
{
    for (; b < e; b++)
        if (!is_blank(*b)) return 0;
    return 1;
}

static size_t count_cells(const char *b, const char *e)
{
    size_t n = 1;
    for (; b < e; b++) n += *b == ',';
    return n;
}

/* A decimal number: [+-] digits [. digits] or [+-] . digits, then an
 * optional exponent e|E [+-] digits. Nothing else: strtod alone would also
 * take hexadecimal integers and floats ("0x10" as 16, "0x1p3"), and the
 * NaN and infinity spellings. */
static int is_digit(char c) { return c >= '0' && c <= '9'; }
static int is_decimal(const char *s)
{
    size_t digits = 0;
    if (*s == '+' || *s == '-') s++;
    for (; is_digit(*s); s++) digits++;
    if (*s == '.')
        for (s++; is_digit(*s); s++) digits++;
    if (!digits) return 0;
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '+' || *s == '-') s++;
        if (!is_digit(*s)) return 0;
        while (is_digit(*s)) s++;
    }
    return *s == '\0';
}

/* strtod's spellings of NaN and infinity ([+-] inf, infinity, nan,
 * nan(chars), any case): refused as non-finite rather than as malformed. */
static int is_nonfinite_spelling(const char *s)
{
    char low[CELL_MAX];
    size_t n = 0;
    if (*s == '+' || *s == '-') s++;
    for (; s[n] && n < CELL_MAX - 1; n++) low[n] = (char)(s[n] >= 'A' && s[n] <= 'Z' ? s[n] - 'A' + 'a' : s[n]);
    low[n] = '\0';
    return strcmp(low, "inf") == 0 || strcmp(low, "infinity") == 0 || strcmp(low, "nan") == 0 ||
           (n >= 5 && strncmp(low, "nan(", 4) == 0 && low[n - 1] == ')');
}

/* Parses one cell [b, e) as a finite double written in decimal. */
static mp_status parse_cell(const char *b, const char *e, size_t line, size_t col, double *out, const char *what)
{
    while (b < e && is_blank(*b)) b++;
    while (e > b && is_blank(e[-1])) e--;
    size_t n = (size_t)(e - b);
    MP_REQUIRE(n > 0, NULL, MP_ERR_FORMAT, "%s: line %zu, column %zu: empty cell, expected a number", what, line, col);
    MP_REQUIRE(n < CELL_MAX, NULL, MP_ERR_FORMAT, "%s: line %zu, column %zu: cell of %zu characters, expected a number",
               what, line, col, n);
    char buf[CELL_MAX];
    memcpy(buf, b, n);
    buf[n] = '\0';
    if (!is_decimal(buf)) { /* the spelling is looked at only for cells that are not numbers */
        MP_REQUIRE(!is_nonfinite_spelling(buf), NULL, MP_ERR_NOT_FINITE,
                   "%s: line %zu, column %zu: '%s' is not finite", what, line, col, buf);
        return mp__fail(NULL, MP_ERR_FORMAT,
                        "%s: line %zu, column %zu: '%s' is not a number in decimal notation (such as 16, -0.5, "
                        "1e-3)", what, line, col, buf);
    }
    char *stop = NULL;
    double v = strtod(buf, &stop);
    MP_REQUIRE(stop == buf + n, NULL, MP_ERR_FORMAT, "%s: line %zu, column %zu: '%s' is not a number", what, line,
               col, buf);
    MP_REQUIRE(isfinite(v) && isfinite((float)v), NULL, MP_ERR_NOT_FINITE,
               "%s: line %zu, column %zu: '%s' is not finite (as a float)", what, line, col, buf);
    *out = v;
    return MP_OK;
}

/* First pass: data row count and the column count of the first data row. */
static mp_status scan(const char *text, size_t len, const mp__csv_opts *o, size_t *rows, size_t *cols,
                      const char *what)
{
    cursor c = {text, text + len, 0};
    int skip_header = o->header;
    *rows = *cols = 0;
    while (c.p < c.end) {
        const char *b, *e;
        next_line(&c, &b, &e);
        if (line_is_blank(b, e)) continue;
        if (skip_header) { skip_header = 0; continue; }
        if (*rows == 0) *cols = count_cells(b, e);
        (*rows)++;
    }
    MP_REQUIRE(*rows > 0, NULL, MP_ERR_FORMAT, "%s: no data rows", what);
    MP_REQUIRE(*cols >= 2, NULL, MP_ERR_FORMAT, "%s: %zu column, expected at least 2 (features and a label)", what,
               *cols);
    MP_REQUIRE(o->label_column < 0 || (size_t)o->label_column < *cols, NULL, MP_ERR_FORMAT,
               "%s: label column %d, but rows have %zu columns", what, (int)o->label_column, *cols);
    MP_REQUIRE(*rows <= INT32_MAX && *cols - 1 <= INT32_MAX, NULL, MP_ERR_INVALID_ARGUMENT,
               "%s: %zu rows x %zu columns is too large", what, *rows, *cols);
    return MP_OK;
}

static mp_status store_label(const mp__csv_opts *o, mp__csv_result *r, size_t row, double v, size_t line,
                             size_t col, const char *what)
{
    if (o->regression) {
        r->targets[row] = (float)v;
        return MP_OK;
    }
    MP_REQUIRE(v >= 0 && v < (double)INT32_MAX && v == floor(v), NULL, MP_ERR_RANGE,
               "%s: line %zu, column %zu: label %g, expected a whole number in [0, %d)", what, line, col, v,
               (int)INT32_MAX);
    r->labels[row] = (int32_t)v;
    return MP_OK;
}

/* Second pass: parse every cell of one row. */
static mp_status parse_row(const char *b, const char *e, size_t line, size_t cols, size_t label_col,
                           const mp__csv_opts *o, mp__csv_result *r, size_t row, const char *what)
{
    size_t n = count_cells(b, e);
    MP_REQUIRE(n == cols, NULL, MP_ERR_FORMAT, "%s: line %zu has %zu columns, expected %zu (ragged row)", what, line,
               n, cols);
    float *x = r->x + row * (size_t)r->dim;
    for (size_t col = 0; col < cols; col++) {
        const char *ce = memchr(b, ',', (size_t)(e - b));
        if (!ce) ce = e;
        double v = 0;
        MP_TRY(parse_cell(b, ce, line, col + 1, &v, what));
        if (col == label_col) MP_TRY(store_label(o, r, row, v, line, col + 1, what));
        else *x++ = (float)v;
        b = ce + 1;
    }
    return MP_OK;
}

static mp_status fill(const char *text, size_t len, const mp__csv_opts *o, size_t cols, mp__csv_result *r,
                      const char *what)
{
    cursor c = {text, text + len, 0};
    int skip_header = o->header;
    size_t label_col = o->label_column < 0 ? cols - 1 : (size_t)o->label_column, row = 0;
    while (c.p < c.end) {
        const char *b, *e;
        next_line(&c, &b, &e);
        if (line_is_blank(b, e)) continue;
        if (skip_header) { skip_header = 0; continue; }
        MP_TRY(parse_row(b, e, c.line, cols, label_col, o, r, row++, what));
    }
    return MP_OK;
}

static void free_result(mp__csv_result *r)
{
    mp__free(r->x);
    mp__free(r->labels);
    mp__free(r->targets);
}

mp_status mp__csv_parse(const char *text, size_t len, const mp__csv_opts *o, mp__csv_result *out, const char *what)
{
    size_t rows, cols;
    MP_TRY(scan(text, len, o, &rows, &cols, what));
    mp__csv_result r = {rows, (int32_t)(cols - 1), NULL, NULL, NULL};
    r.x = mp__calloc(rows * (cols - 1), sizeof *r.x);
    if (o->regression) r.targets = mp__calloc(rows, sizeof *r.targets);
    else r.labels = mp__calloc(rows, sizeof *r.labels);
    if (!r.x || (!r.targets && !r.labels)) {
        free_result(&r);
        return mp__fail(NULL, MP_ERR_OUT_OF_MEMORY, "%s: out of memory for %zu x %zu values", what, rows, cols);
    }
    mp_status st = fill(text, len, o, cols, &r, what);
    if (st != MP_OK) {
        free_result(&r);
        return st;
    }
    *out = r;
    return MP_OK;
}

/* ---- loading a file ---------------------------------------------------------------- */
static mp_status read_file(const char *path, char **text, size_t *len, const char *fn)
{
    errno = 0;
    FILE *f = fopen(path, "rb");
    MP_REQUIRE(f, NULL, MP_ERR_IO, "%s: cannot open '%s': %s", fn, path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = mp__alloc(cap);
    mp_status st = buf ? MP_OK : mp__fail(NULL, MP_ERR_OUT_OF_MEMORY, "%s: out of memory reading '%s'", fn, path);
    while (st == MP_OK) {
        if (n == cap) {
            char *bigger = cap <= SIZE_MAX / 2 ? mp__alloc(cap * 2) : NULL;
            if (!bigger) {
                st = mp__fail(NULL, MP_ERR_OUT_OF_MEMORY, "%s: out of memory reading '%s'", fn, path);
                break;
            }
            memcpy(bigger, buf, n);
            mp__free(buf);
            buf = bigger;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            if (ferror(f)) st = mp__fail(NULL, MP_ERR_IO, "%s: reading '%s' failed: %s", fn, path, strerror(errno));
            break;
        }
    }
    fclose(f);
    if (st != MP_OK) {
        mp__free(buf);
        return st;
    }
    *text = buf;
    *len = n;
    return MP_OK;
}

mp_status mp_dataset_load_csv(mp_dataset **out, const char *path, const mp_config *cfg)
{
    static const char fn[] = "mp_dataset_load_csv";
    MP_REQUIRE_PTR(out, NULL, fn);
    MP_REQUIRE_PTR(path, NULL, fn);
    MP_OPTIONAL_HANDLE(cfg, MP__KIND_CONFIG, NULL, fn);
    mp__csv_opts o = {(int32_t)mp__cfg_int(cfg, MP_CFG_DATA_CSV_HEADER),
                      (int32_t)mp__cfg_int(cfg, MP_CFG_DATA_CSV_LABEL_COLUMN),
                      (int32_t)mp__cfg_int(cfg, MP_CFG_DATA_CSV_REGRESSION)};
    char *text = NULL;
    size_t len = 0;
    MP_TRY(read_file(path, &text, &len, fn));
    char what[600];
    snprintf(what, sizeof what, "%s: '%s'", fn, path);
    mp__csv_result r;
    mp_status st = mp__csv_parse(text, len, &o, &r, what);
    mp__free(text);
    MP_TRY(st);
    return mp__dataset_adopt(out, fn, r.x, r.n, r.dim, r.labels, r.targets, 1, 1); /* parser checked */
}
