/*
 * example_util.h — small helpers shared by the example programs
 * (fashion_demo.c, omniglot.c): status checks that exit with the library's
 * message, a monotonic clock, and a progress line with ETA on stderr that
 * stays quiet when stderr is not a terminal. Not part of the library.
 */
#ifndef MP_EXAMPLE_UTIL_H
#define MP_EXAMPLE_UTIL_H

#include <metaprompt.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The program's name in error messages; each example defines it. */
extern const char *const example_name;

/* Calls a library function; on failure prints the call, the status and the
 * library's message, and exits with status 1. */
#define CHECK(call)                                                                     \
    do {                                                                                \
        mp_status st_ = (call);                                                         \
        if (st_ != MP_OK) {                                                             \
            fprintf(stderr, "%s: %s failed: %s: %s\n", example_name, #call,             \
                    mp_status_string(st_), mp_last_error());                            \
            exit(1);                                                                    \
        }                                                                               \
    } while (0)

static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline int file_exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0;
}

/* Creates a directory and its missing parents (mkdir -p). Returns 0 on
 * success; otherwise -1 with errno set and the failing prefix in path[..]. */
static inline int mkdir_p(const char *path)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) {
        errno = n ? ENAMETOOLONG : ENOENT;
        return -1;
    }
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0') continue;
        char c = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) return -1;
        buf[i] = c;
    }
    struct stat sb;
    if (stat(path, &sb) != 0) return -1;
    if (!S_ISDIR(sb.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

/* Creates the output directory with its parents or exits with status 1. */
static inline void make_out_dir(const char *dir)
{
    if (mkdir_p(dir) != 0) {
        fprintf(stderr, "%s: cannot create the output directory %s: %s\n", example_name, dir, strerror(errno));
        exit(1);
    }
}

/* ---- progress with ETA on stderr, only on a terminal ----------------------- */
typedef struct {
    const char *label;
    double t0;
    int tty;
} progress;

static inline void progress_start(progress *p, const char *label)
{
    p->label = label;
    p->t0 = now_s();
    p->tty = isatty(2);
}

static inline void progress_show(progress *p, unsigned long long done, unsigned long long total,
                                 const char *extra)
{
    if (!p->tty || total == 0) return;
    double el = now_s() - p->t0;
    double eta = done ? el * (double)(total - done) / (double)done : 0.0;
    fprintf(stderr, "\r  %-34s %6llu/%-6llu %5.1f%%  elapsed %5.0fs  ETA %5.0fs %s   ", p->label, done,
            total, 100.0 * (double)done / (double)total, el, eta, extra ? extra : "");
    if (done == total) fputc('\n', stderr);
    fflush(stderr);
}

/* An mp_meta_progress_fn showing evaluation progress (user_data: progress *). */
static inline int32_t progress_eval_cb(uint64_t done, uint64_t total, void *ud)
{
    progress_show(ud, done, total, NULL);
    return 0;
}

/* OpenBLAS's own function (the examples link -lopenblas); declared here so
 * that the examples need not include cblas.h. */
extern void openblas_set_num_threads(int);

/* Prints library warnings and errors (mp_set_log_callback) on stderr. */
static inline void example_log(int32_t level, const char *msg, void *user_data)
{
    (void)user_data;
    fprintf(stderr, "%s: libmetaprompt %s: %s\n", example_name, level >= MP_LOG_ERROR ? "error" : "warning",
            msg);
}

/* The application's part of the threading contract (metaprompt/meta.h):
 * call once before creating any handle. Installs example_log for warnings
 * and, when the example runs more than one worker thread, makes OpenBLAS
 * single-threaded (its own thread pool would oversubscribe the cores:
 * several times slower). Then prints the OpenBLAS core and thread counts
 * and, for one of the old generic kernel sets a virtual machine often
 * gets, how to choose a faster one. */
static inline void example_setup(int threads)
{
    mp_set_log_callback(example_log, MP_LOG_WARN, NULL);
    int blas_before = (int)mp_blas_num_threads();
    int set = 0;
    if (threads > 1 && blas_before > 1) {
        openblas_set_num_threads(1);
        set = 1;
    }
    const char *core = mp_blas_corename();
    printf("OpenBLAS core %s, %d worker thread(s), OpenBLAS %d thread(s)%s\n", core, threads,
           (int)mp_blas_num_threads(), set ? " (set to 1 by this program: our workers use the cores)" : "");
    static const char *const slow[] = {"Prescott", "Core2", "Nehalem", "Generic", "generic", "Penryn", "Dunnington"};
    for (size_t i = 0; i < sizeof slow / sizeof slow[0]; i++)
        if (!strcmp(core, slow[i])) {
            printf("(an old generic kernel set: on an AVX2 machine OPENBLAS_CORETYPE=Haswell runs faster;\n"
                   " see docs/PERFORMANCE.md)\n");
            break;
        }
}

/* For a flag that is not one of the argument-less ones: returns when flag
 * is one of the n flags taking a value and a value v follows; otherwise
 * names the unknown flag (or the missing value) on stderr and calls
 * usage(2), which prints the synopsis and exits. */
static inline void check_flag(const char *flag, const char *v, const char *const *value_flags, size_t n,
                              void (*usage)(int))
{
    for (size_t k = 0; k < n; k++)
        if (!strcmp(flag, value_flags[k])) {
            if (v) return;
            fprintf(stderr, "%s: %s needs a value\n", example_name, flag);
            usage(2);
        }
    fprintf(stderr, "%s: unknown flag '%s'\n", example_name, flag);
    usage(2);
}

/* Parses a positive decimal integer option value; exits with status 2 and a
 * message naming the flag otherwise. */
static inline int parse_count(const char *flag, const char *v, int min)
{
    char *end;
    long x = strtol(v, &end, 10);
    if (*v == '\0' || *end != '\0' || x < min || x > 100000000L) {
        fprintf(stderr, "%s: %s expects an integer >= %d, got '%s'\n", example_name, flag, min, v);
        exit(2);
    }
    return (int)x;
}

/* Parses a finite decimal number option value; exits with status 2 otherwise. */
static inline double parse_real(const char *flag, const char *v)
{
    char *end;
    double x = strtod(v, &end);
    if (*v == '\0' || *end != '\0' || !(x == x) || x > 1e30 || x < -1e30) {
        fprintf(stderr, "%s: %s expects a number, got '%s'\n", example_name, flag, v);
        exit(2);
    }
    return x;
}

#endif
