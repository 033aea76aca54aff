/* Version, status strings, last-error messages, allocator, logging, BLAS info. */
#include "core/internal.h"

#include <cblas.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- version ------------------------------------------------------------ */
int32_t mp_version_number(void) { return MP_VERSION_NUMBER; }
const char *mp_version_string(void) { return MP_VERSION_STRING; }

/* ---- status ------------------------------------------------------------- */
static const char *const status_text[MP_STATUS_COUNT_] = {
    [MP_OK] = "success",
    [MP_ERR_INVALID_ARGUMENT] = "invalid argument",
    [MP_ERR_NULL_POINTER] = "required pointer argument is NULL",
    [MP_ERR_OUT_OF_MEMORY] = "out of memory",
    [MP_ERR_BUFFER_TOO_SMALL] = "caller buffer too small",
    [MP_ERR_SHAPE_MISMATCH] = "shape mismatch",
    [MP_ERR_UNKNOWN_VARIABLE] = "unknown tape variable",
    [MP_ERR_IO] = "input/output error",
    [MP_ERR_FORMAT] = "malformed data or file",
    [MP_ERR_VERSION] = "unsupported (newer) format version",
    [MP_ERR_CHECKSUM] = "checksum mismatch",
    [MP_ERR_NOT_FINITE] = "non-finite value (NaN or infinity)",
    [MP_ERR_STATE] = "call not valid in the current state",
    [MP_ERR_CANCELLED] = "cancelled by callback",
    [MP_ERR_NOT_FOUND] = "not found",
    [MP_ERR_RANGE] = "value or index out of range",
    [MP_ERR_UNSUPPORTED] = "unsupported",
    [MP_ERR_INTERNAL] = "internal error (a bug in libmetaprompt)",
};

const char *mp_status_string(mp_status status)
{
    if (status < 0 || status >= MP_STATUS_COUNT_) return "unknown status";
    return status_text[status];
}

/* ---- last error ------------------------------------------------------------ */
static _Thread_local char tls_error[MP_ERRMSG_LEN];

const char *mp_last_error(void) { return tls_error; }
void mp_clear_error(void) { tls_error[0] = '\0'; }

mp_status mp__vfail(char *handle_err, mp_status st, const char *fmt, va_list ap)
{
    vsnprintf(tls_error, sizeof tls_error, fmt, ap);
    if (handle_err && handle_err != tls_error) memcpy(handle_err, tls_error, MP_ERRMSG_LEN);
    return st;
}

mp_status mp__fail(char *handle_err, mp_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mp__vfail(handle_err, st, fmt, ap);
    va_end(ap);
    return st;
}

/* The message after a leading "<prefix>: ", or msg itself. */
static const char *after_prefix(const char *msg, const char *prefix)
{
    size_t n = prefix ? strlen(prefix) : 0;
    return n && strncmp(msg, prefix, n) == 0 && msg[n] == ':' && msg[n + 1] == ' ' ? msg + n + 2 : msg;
}

mp_status mp__fail_in(char *handle_err, mp_status st, const char *fn, const char *context, const char *internal,
                      const char *msg)
{
    char inner[MP_ERRMSG_LEN]; /* msg may be the buffer the result is written to */
    snprintf(inner, sizeof inner, "%s", msg ? msg : tls_error);
    const char *body = after_prefix(after_prefix(inner, fn), internal);
    if (context) return mp__fail(handle_err, st, "%s: %s: %s", fn, context, body);
    return mp__fail(handle_err, st, "%s: %s", fn, body);
}

mp_status mp__fail_propagate(char *handle_err, mp_status st)
{
    if (handle_err && handle_err != tls_error) memcpy(handle_err, tls_error, MP_ERRMSG_LEN);
    return st;
}

/* ---- allocator ------------------------------------------------------------ */
static void *default_alloc(size_t size, void *ud)
{
    (void)ud;
    size_t rounded = (size + 63) & ~(size_t)63;
    return aligned_alloc(64, rounded ? rounded : 64);
}
static void default_free(void *p, void *ud) { (void)ud; free(p); }

/* The hook is process-wide configuration set before any object exists (see
 * mp_set_allocator); the live counter is atomic so objects may be created
 * from several threads. */
static mp_alloc_fn g_alloc = default_alloc;
static mp_free_fn g_free = default_free;
static void *g_alloc_ud;
static atomic_llong g_live;

mp_status mp_set_allocator(mp_alloc_fn alloc, mp_free_fn free_fn, void *user_data)
{
    MP_REQUIRE((alloc == NULL) == (free_fn == NULL), NULL, MP_ERR_INVALID_ARGUMENT,
               "mp_set_allocator: alloc and free_fn must both be set or both be NULL");
    MP_REQUIRE(atomic_load(&g_live) == 0, NULL, MP_ERR_STATE,
               "mp_set_allocator: %lld library allocations are still live; "
               "install the allocator before creating any object",
               (long long)atomic_load(&g_live));
    g_alloc = alloc ? alloc : default_alloc;
    g_free = free_fn ? free_fn : default_free;
    g_alloc_ud = alloc ? user_data : NULL;
    return MP_OK;
}

int64_t mp_live_allocations(void) { return (int64_t)atomic_load(&g_live); }

void *mp__alloc(size_t size)
{
    void *p = g_alloc(size ? size : 1, g_alloc_ud);
    if (p) atomic_fetch_add(&g_live, 1);
    return p;
}

int mp__mul_size(size_t a, size_t b, size_t *out)
{
    if (b != 0 && a > SIZE_MAX / b) return -1;
    *out = a * b;
    return 0;
}

void *mp__calloc(size_t n, size_t size)
{
    size_t total;
    if (mp__mul_size(n, size, &total) != 0) return NULL;
    void *p = mp__alloc(total);
    if (p) memset(p, 0, total ? total : 1);
    return p;
}

void mp__free(void *p)
{
    if (!p) return;
    g_free(p, g_alloc_ud);
    atomic_fetch_sub(&g_live, 1);
}

/* ---- handle kinds ------------------------------------------------------------ */
const char *mp__kind_name(uint32_t kind)
{
    switch (kind) {
    case MP__KIND_CONFIG: return "mp_config";
    case MP__KIND_MODEL: return "mp_model";
    case MP__KIND_PROMPT: return "mp_prompt";
    case MP__KIND_TAPE: return "mp_tape";
    case MP__KIND_DATASET: return "mp_dataset";
    case MP__KIND_TASK: return "mp_task";
    case MP__KIND_SAMPLER: return "mp_sampler";
    case MP__KIND_META: return "mp_meta";
    default: return NULL;
    }
}

mp_status mp__bad_kind(char *herr, const void *p, uint32_t want, const char *name, const char *fn)
{
    uint32_t tag = MP__KIND_OF(p);
    const char *is = mp__kind_name(tag), *dead = mp__kind_name(MP__KIND_DEAD(tag));
    const char *wanted = mp__kind_name(want);
    if (is)
        return mp__fail(herr, MP_ERR_INVALID_ARGUMENT, "%s: argument '%s' is not an %s handle (it is an %s)", fn,
                        name, wanted, is);
    if (dead)
        return mp__fail(herr, MP_ERR_INVALID_ARGUMENT,
                        "%s: argument '%s' is not an %s handle (it is a destroyed %s)", fn, name, wanted, dead);
    return mp__fail(herr, MP_ERR_INVALID_ARGUMENT,
                    "%s: argument '%s' is not an %s handle (unknown tag 0x%08x; a destroyed or foreign pointer?)",
                    fn, name, wanted, (unsigned)tag);
}

mp_status mp__require_handles(char *herr, const void *const *p, size_t n, uint32_t kind, const char *name,
                              const char *fn)
{
    for (size_t i = 0; i < n; i++) {
        MP_REQUIRE(p[i] != NULL, herr, MP_ERR_NULL_POINTER, "%s: %s[%zu] is NULL", fn, name, i);
        if (MP__KIND_OF(p[i]) != kind) {
            char elem[64];
            snprintf(elem, sizeof elem, "%s[%zu]", name, i);
            return mp__bad_kind(herr, p[i], kind, elem, fn);
        }
    }
    return MP_OK;
}

const char *mp__handle_error(const void *p, uint32_t kind, const char *name, const char *fn)
{
    if (!p) return "";
    if (MP__KIND_OF(p) == kind) return NULL;
    mp__bad_kind(NULL, p, kind, name, fn);
    return tls_error;
}

int mp__handle_destroying(void *p, uint32_t kind, const char *name, const char *fn)
{
    if (!p) return 0;
    if (MP__KIND_OF(p) != kind) {
        mp__bad_kind(NULL, p, kind, name, fn);
        mp__log(MP_LOG_ERROR, "%s; nothing was freed", tls_error);
        return 0;
    }
    *(uint32_t *)p = MP__KIND_DEAD(kind);
    return 1;
}

/* ---- logging ------------------------------------------------------------ */
static mp_log_fn g_log;
static int32_t g_log_level = MP_LOG_INFO;
static void *g_log_ud;

mp_status mp_set_log_callback(mp_log_fn fn, int32_t min_level, void *user_data)
{
    MP_REQUIRE(min_level >= MP_LOG_DEBUG && min_level <= MP_LOG_ERROR, NULL,
               MP_ERR_INVALID_ARGUMENT,
               "mp_set_log_callback: min_level must be in 0..3 (DEBUG..ERROR), got %d",
               (int)min_level);
    g_log = fn;
    g_log_level = min_level;
    g_log_ud = user_data;
    return MP_OK;
}

void mp__log(int32_t level, const char *fmt, ...)
{
    mp_log_fn fn = g_log;
    if (!fn || level < g_log_level) return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fn(level, buf, g_log_ud);
}

/* ---- BLAS info ------------------------------------------------------------ */
const char *mp_blas_config(void)
{
    const char *s = openblas_get_config();
    return s ? s : "";
}

const char *mp_blas_corename(void)
{
    const char *s = openblas_get_corename();
    return s ? s : "";
}

int32_t mp_blas_num_threads(void) { return (int32_t)openblas_get_num_threads(); }
