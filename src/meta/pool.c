/* A small persistent worker pool: n - 1 pthreads plus the calling thread.
 * One job at a time; items are handed out through an atomic counter. */
#include "meta/meta_internal.h"

#include <pthread.h>
#include <stdatomic.h>

typedef struct {
    mp__pool *pool;
    int32_t worker;
} thread_arg;

struct mp__pool {
    int32_t n;             /* workers including the caller */
    pthread_t *threads;    /* n - 1 */
    thread_arg *args;      /* n - 1, owned by the pool (freed with it, not by the threads:
                            * mp_live_allocations() then stays put once mp_meta_create returns) */
    int32_t started;       /* threads actually created */
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    atomic_uint_fast64_t generation; /* bumped per job; workers wait for a change */
    atomic_int busy;       /* threads still working on the current job */
    atomic_int stop;
    /* the current job */
    mp__pool_fn fn;
    void *ctx;
    size_t n_items;
    atomic_size_t next;
};

static void drain(mp__pool *p, int32_t worker)
{
    for (;;) {
        size_t i = atomic_fetch_add(&p->next, 1);
        if (i >= p->n_items) return;
        p->fn(p->ctx, worker, i);
    }
}

/* Meta-batches come back to back and their tasks take tens of
 * microseconds, so a worker (and the caller waiting for the workers) first
 * polls briefly before sleeping on the condition variable: a futex wake-up
 * costs about as much as a small task. */
#define SPIN_POLLS 20000

static void spin_until_new_job(mp__pool *p, uint64_t seen)
{
    for (int i = 0; i < SPIN_POLLS; i++)
        if (atomic_load(&p->generation) != seen || atomic_load(&p->stop)) return;
}

static void *thread_main(void *arg)
{
    mp__pool *p = ((thread_arg *)arg)->pool;
    int32_t worker = ((thread_arg *)arg)->worker;
    uint64_t seen = 0;
    for (;;) {
        spin_until_new_job(p, seen);
        pthread_mutex_lock(&p->mu);
        while (!atomic_load(&p->stop) && atomic_load(&p->generation) == seen)
            pthread_cond_wait(&p->wake, &p->mu);
        if (atomic_load(&p->stop)) break;
        seen = atomic_load(&p->generation);
        pthread_mutex_unlock(&p->mu);
        drain(p, worker);
        pthread_mutex_lock(&p->mu);
        if (atomic_fetch_sub(&p->busy, 1) == 1) pthread_cond_signal(&p->done);
        pthread_mutex_unlock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static mp_status start_threads(mp__pool *p)
{
    for (int32_t w = 1; w < p->n; w++) {
        thread_arg *a = &p->args[w - 1];
        a->pool = p;
        a->worker = w;
        if (pthread_create(&p->threads[w - 1], NULL, thread_main, a) != 0) {
            return mp__fail(NULL, MP_ERR_INTERNAL, "mp_meta_create: pthread_create failed for worker %d", (int)w);
        }
        p->started++;
    }
    return MP_OK;
}

mp_status mp__pool_create(mp__pool **out, int32_t n_workers)
{
    mp__pool *p = mp__calloc(1, sizeof *p);
    if (!p) return mp__fail(NULL, MP_ERR_OUT_OF_MEMORY, "mp_meta_create: out of memory (pool)");
    p->n = n_workers < 1 ? 1 : n_workers;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    atomic_init(&p->next, 0);
    atomic_init(&p->generation, 0);
    atomic_init(&p->busy, 0);
    atomic_init(&p->stop, 0);
    if (p->n > 1) {
        p->threads = mp__calloc((size_t)p->n - 1, sizeof *p->threads);
        p->args = mp__calloc((size_t)p->n - 1, sizeof *p->args);
        if (!p->threads || !p->args) {
            mp__pool_destroy(p);
            return mp__fail(NULL, MP_ERR_OUT_OF_MEMORY, "mp_meta_create: out of memory (threads)");
        }
        mp_status st = start_threads(p);
        if (st != MP_OK) {
            mp__pool_destroy(p);
            return st;
        }
    }
    *out = p;
    return MP_OK;
}

void mp__pool_destroy(mp__pool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int32_t i = 0; i < p->started; i++) pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    pthread_mutex_destroy(&p->mu);
    mp__free(p->threads);
    mp__free(p->args);
    mp__free(p);
}

void mp__pool_run(mp__pool *p, size_t n_items, mp__pool_fn fn, void *ctx)
{
    if (n_items == 0) return;
    /* Few items or no threads: run inline, nothing to synchronise. */
    if (p->started == 0 || n_items == 1) {
        for (size_t i = 0; i < n_items; i++) fn(ctx, 0, i);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->n_items = n_items;
    atomic_store(&p->next, 0);
    atomic_store(&p->busy, p->started);
    atomic_fetch_add(&p->generation, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    drain(p, 0);
    for (int i = 0; i < SPIN_POLLS && atomic_load(&p->busy) > 0; i++) continue;
    pthread_mutex_lock(&p->mu);
    while (atomic_load(&p->busy) > 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

int32_t mp__pool_size(const mp__pool *p) { return p->started + 1; }
