/*
 * example_util.h — small helpers shared by the example programs
 * (fashion_demo.c, omniglot.c): status checks that exit with the library's
 * message, a monotonic clock, and a progress line with ETA on stderr that
 * stays quiet when stderr is not a terminal. Not part of the library.
 */
#ifndef MP_EXAMPLE_UTIL_H
#define MP_EXAMPLE_UTIL_H

#include <metaprompt.h>

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

/* Prints the OpenBLAS core in use and, when it is one of the old generic
 * kernel sets a virtual machine often gets, how to choose a faster one. */
static inline void print_blas_core(int threads)
{
    const char *core = mp_blas_corename();
    printf("OpenBLAS core %s, %d worker thread(s)\n", core, threads);
    static const char *const slow[] = {"Prescott", "Core2", "Nehalem", "Generic", "generic", "Penryn", "Dunnington"};
    for (size_t i = 0; i < sizeof slow / sizeof slow[0]; i++)
        if (!strcmp(core, slow[i])) {
            printf("(an old generic kernel set: on an AVX2 machine OPENBLAS_CORETYPE=Haswell runs faster;\n"
                   " see docs/PERFORMANCE.md)\n");
            break;
        }
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
