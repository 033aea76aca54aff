/*
 * libmetaprompt — core: version, status codes, errors, allocator, logging,
 * configuration objects and BLAS information.
 *
 * Conventions used throughout the API (see docs/ABI.md):
 *  - Every fallible function returns an mp_status (MP_OK == 0).
 *  - Handles are opaque; constructors give them through an out parameter,
 *    destructors return void and accept NULL.
 *  - A handle argument of the wrong kind (an mp_config passed where an
 *    mp_sampler is expected, a stale or foreign pointer from a cast or an
 *    FFI) is detected before anything else of it is read, on every function
 *    of every header: functions returning a status give
 *    MP_ERR_INVALID_ARGUMENT with "<fn>: argument '<name>' is not an <kind>
 *    handle (it is an <other kind>)" (or "(unknown tag 0x...; a destroyed or
 *    foreign pointer?)"); nothing is written to the wrong object, its own
 *    message included. The functions returning no status record the same
 *    message in mp_last_error(): mp_<type>_error() returns it,
 *    mp_config_is_set() returns 0, and mp_<type>_destroy() frees nothing and
 *    also logs it at MP_LOG_ERROR. A destroyed handle is detected only while
 *    its memory has not been reused (best effort: use after destroy remains
 *    undefined behaviour).
 *  - A failing call leaves its handle unchanged and records a message that
 *    names the function, the argument and the expected vs. received value:
 *    per handle (mp_<type>_error()) and per thread (mp_last_error()).
 *  - Handles are not thread-safe unless documented; distinct handles may be
 *    used from distinct threads at the same time.
 *  - The library never returns memory the caller must free and never prints
 *    unless a log callback is installed.
 */
#ifndef METAPROMPT_CORE_H
#define METAPROMPT_CORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- export macro ------------------------------------------------------ */
#ifndef MP_API
#  if defined(_WIN32)
#    define MP_API
#  elif defined(__GNUC__) && __GNUC__ >= 4
#    define MP_API __attribute__((visibility("default")))
#  else
#    define MP_API
#  endif
#endif

/* ---- version (single source: the Makefile reads these three lines) ---- */
#define MP_VERSION_MAJOR 0
#define MP_VERSION_MINOR 2
#define MP_VERSION_PATCH 0
#define MP_VERSION_STRING "0.2.0"
/* MAJOR*10000 + MINOR*100 + PATCH */
#define MP_VERSION_NUMBER (MP_VERSION_MAJOR * 10000 + MP_VERSION_MINOR * 100 + MP_VERSION_PATCH)

/** Version of the library actually loaded (may differ from the header's).
 *  Returns MP_VERSION_NUMBER of the build. Thread-safe. */
MP_API int32_t mp_version_number(void);
/** Static string "MAJOR.MINOR.PATCH" of the loaded library. Thread-safe. */
MP_API const char *mp_version_string(void);

/* ---- status codes: pinned forever, append only ------------------------- */
typedef int32_t mp_status;
#define MP_OK                     0
#define MP_ERR_INVALID_ARGUMENT   1  /* a value out of its documented domain */
#define MP_ERR_NULL_POINTER       2  /* a required pointer argument was NULL */
#define MP_ERR_OUT_OF_MEMORY      3  /* the allocator returned NULL */
#define MP_ERR_BUFFER_TOO_SMALL   4  /* caller buffer too small; needed size reported */
#define MP_ERR_SHAPE_MISMATCH     5  /* tensor/array shapes do not agree */
#define MP_ERR_UNKNOWN_VARIABLE   6  /* tape variable id not on this tape */
#define MP_ERR_IO                 7  /* open/read/write failed (errno text in message) */
#define MP_ERR_FORMAT             8  /* malformed file contents (magic, type, truncation) */
#define MP_ERR_VERSION            9  /* file written by a newer, unsupported format */
#define MP_ERR_CHECKSUM           10 /* CRC mismatch */
#define MP_ERR_NOT_FINITE         11 /* NaN/Inf met in a loss, gradient or input */
#define MP_ERR_STATE              12 /* call not valid in the handle's current state */
#define MP_ERR_CANCELLED          13 /* a callback asked to stop */
#define MP_ERR_NOT_FOUND          14 /* a named item (tensor, key, file) does not exist */
#define MP_ERR_RANGE              15 /* index or count outside the valid range */
#define MP_ERR_UNSUPPORTED        16 /* valid request this build or kind does not support */
#define MP_ERR_INTERNAL           17 /* a bug in libmetaprompt: please report */
#define MP_STATUS_COUNT_          18 /* not a status; one past the last code */

/** Static English description of a status code; "unknown status" for codes
 *  this build does not know. Never NULL. Thread-safe. */
MP_API const char *mp_status_string(mp_status status);

/** Detailed message of the last failing call made on the calling thread
 *  (thread-local; "" if none). Valid until the next failing call on this
 *  thread. Never NULL. */
MP_API const char *mp_last_error(void);

/** Clears the calling thread's last-error message. */
MP_API void mp_clear_error(void);

/* ---- allocator hook ------------------------------------------------------ */
/** alloc(size, user_data) returns memory aligned to at least 64 bytes or NULL;
 *  free(ptr, user_data) releases it (ptr never NULL). */
typedef void *(*mp_alloc_fn)(size_t size, void *user_data);
typedef void (*mp_free_fn)(void *ptr, void *user_data);

/** Installs a process-wide allocator used for every allocation the library
 *  makes (OpenBLAS's own buffers excepted). Pass both NULL to restore the
 *  default (aligned_alloc/free). Must be called while no library object
 *  exists: otherwise returns MP_ERR_STATE and changes nothing.
 *  Not thread-safe with respect to any other library call.
 *  Errors: MP_ERR_INVALID_ARGUMENT if exactly one of alloc/free is NULL. */
MP_API mp_status mp_set_allocator(mp_alloc_fn alloc, mp_free_fn free_fn, void *user_data);

/** Number of live allocations made through the library's allocator (for leak
 *  checks in tests and applications). Thread-safe. */
MP_API int64_t mp_live_allocations(void);

/* ---- logging ------------------------------------------------------------ */
#define MP_LOG_DEBUG 0
#define MP_LOG_INFO  1
#define MP_LOG_WARN  2
#define MP_LOG_ERROR 3
/** Called synchronously on the thread that logs; msg is valid only during
 *  the call. */
typedef void (*mp_log_fn)(int32_t level, const char *msg, void *user_data);

/** Installs a process-wide log callback (NULL: silence, the default) and the
 *  minimum level passed to it. The library prints nothing by itself.
 *  Set it before creating objects that may log from worker threads; the
 *  callback must then be thread-safe.
 *  Errors: MP_ERR_INVALID_ARGUMENT for a level outside DEBUG..ERROR. */
MP_API mp_status mp_set_log_callback(mp_log_fn fn, int32_t min_level, void *user_data);

/* ---- BLAS information --------------------------------------------------- */
/** OpenBLAS build configuration string (openblas_get_config()); static,
 *  never NULL. Thread-safe. */
MP_API const char *mp_blas_config(void);
/** OpenBLAS kernel core in use at run time (openblas_get_corename()), e.g.
 *  "Haswell"; "Prescott" or "generic" mean slow generic kernels. Static,
 *  never NULL. Thread-safe. */
MP_API const char *mp_blas_corename(void);
/** OpenBLAS's current thread count (process-wide; the library never changes
 *  it). Thread-safe. */
MP_API int32_t mp_blas_num_threads(void);

/* ---- configuration objects --------------------------------------------- */
/*
 * One ABI-safe configuration pattern is used everywhere: a key/value
 * mp_config handle (keys are MP_CFG_* constants, pinned forever, grouped per
 * module in the sub-headers). Keys never set take their documented default.
 * Constructors that take an mp_config copy what they need; the config can
 * be destroyed or reused right after.
 */
typedef struct mp_config mp_config;

#define MP_CFG_TYPE_INT   1
#define MP_CFG_TYPE_FLOAT 2

/** Creates an empty configuration (all keys at their defaults).
 *  Errors: MP_ERR_NULL_POINTER, MP_ERR_OUT_OF_MEMORY. */
MP_API mp_status mp_config_create(mp_config **out);
/** Destroys a configuration; NULL is ignored. */
MP_API void mp_config_destroy(mp_config *cfg);
/** Copies all values of src (only read) into a new configuration given
 *  through *out (the caller destroys it); its error message starts empty.
 *  Errors: MP_ERR_NULL_POINTER (out, src), MP_ERR_OUT_OF_MEMORY; *out is
 *  unchanged on failure. */
MP_API mp_status mp_config_clone(mp_config **out, const mp_config *src);
/** Sets an integer key. Errors: MP_ERR_NULL_POINTER (cfg),
 *  MP_ERR_NOT_FOUND (unknown key),
 *  MP_ERR_INVALID_ARGUMENT (key is a float key), MP_ERR_RANGE (value
 *  outside the key's documented range). On error the config is unchanged. */
MP_API mp_status mp_config_set_int(mp_config *cfg, int32_t key, int64_t value);
/** Sets a float key.
 *  Errors: MP_ERR_NULL_POINTER (cfg), MP_ERR_NOT_FOUND (unknown key),
 *  MP_ERR_INVALID_ARGUMENT (key is an integer key), MP_ERR_NOT_FINITE (NaN
 *  or Inf), MP_ERR_RANGE (value outside the key's documented range). On
 *  error the config is unchanged. */
MP_API mp_status mp_config_set_float(mp_config *cfg, int32_t key, double value);
/** Reads an integer key (its default if never set) into *out, written only
 *  on success. Errors: MP_ERR_NULL_POINTER (cfg, out), MP_ERR_NOT_FOUND
 *  (unknown key), MP_ERR_INVALID_ARGUMENT (key is a float key); the message
 *  goes to mp_last_error() and cfg's error. */
MP_API mp_status mp_config_get_int(const mp_config *cfg, int32_t key, int64_t *out);
/** Reads a float key (its default if never set) into *out, written only on
 *  success. Errors: MP_ERR_NULL_POINTER (cfg, out), MP_ERR_NOT_FOUND
 *  (unknown key), MP_ERR_INVALID_ARGUMENT (key is an integer key); the
 *  message goes to mp_last_error() and cfg's error. */
MP_API mp_status mp_config_get_float(const mp_config *cfg, int32_t key, double *out);
/** 1 if the key was explicitly set, 0 if not (or if the key is unknown). */
MP_API int32_t mp_config_is_set(const mp_config *cfg, int32_t key);
/** Static name of a key ("model.hidden_width"), or NULL if unknown. */
MP_API const char *mp_config_key_name(int32_t key);
/** Type of a key (MP_CFG_TYPE_INT/FLOAT), or 0 if unknown. */
MP_API int32_t mp_config_key_type(int32_t key);
/** Looks a key up by its name (e.g. "model.hidden_width").
 *  Errors: MP_ERR_NULL_POINTER (name, out_key), MP_ERR_NOT_FOUND (no key of
 *  that name; *out_key unchanged). Thread-safe. */
MP_API mp_status mp_config_key_by_name(const char *name, int32_t *out_key);
/** Message of the last failed call on this config ("" if none; "" for NULL). */
MP_API const char *mp_config_error(const mp_config *cfg);

/* Generic keys (0..99). */
#define MP_CFG_SEED       1  /* int, default 0: seed for any random choice */
#define MP_CFG_THREADS    2  /* int, default 1, 1..64: worker threads */

#ifdef __cplusplus
}
#endif
#endif /* METAPROMPT_CORE_H */
