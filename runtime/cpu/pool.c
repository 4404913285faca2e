/* pool.c — the CPU backend's thread pool, created with the runtime and reused by every
 * call: workers sleep on a condition variable, a call publishes (fn, ctx, n_items) under a
 * new generation number, everyone (the caller too) takes items from an atomic counter,
 * and the caller waits until all items are done.  Nothing here allocates after creation.
 * Items are independent, and which thread runs an item never changes what it computes, so
 * results are the same bits for any thread count. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "../internal.h"

typedef struct worker_arg {
  struct moert_pool *pool;
  uint32_t id;
} worker_arg;

struct moert_pool {
  uint32_t size; /* workers including the caller */
  pthread_t *threads;
  worker_arg *args; /* owned by the pool: a worker never frees, so nothing is freed late */
  uint32_t started;
  pthread_mutex_t busy; /* held by the thread whose call owns the pool */
  pthread_mutex_t lock;
  pthread_cond_t wake, done_cv;
  uint64_t generation;
  bool stop;
  moert_pool_fn fn;
  void *ctx;
  uint32_t n_items;
  atomic_uint next;
  uint32_t active; /* workers still inside the current generation */
};

static void drain(moert_pool *p, moert_pool_fn fn, void *ctx, uint32_t n, uint32_t worker) {
  for (;;) {
    uint32_t i = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
    if (i >= n) break;
    fn(ctx, i, worker);
  }
}

static void *worker_main(void *argp) {
  moert_pool *p = ((worker_arg *)argp)->pool;
  uint32_t id = ((worker_arg *)argp)->id;
  uint64_t seen = 0;
  pthread_mutex_lock(&p->lock);
  for (;;) {
    while (!p->stop && p->generation == seen) pthread_cond_wait(&p->wake, &p->lock);
    if (p->stop) break;
    seen = p->generation;
    moert_pool_fn fn = p->fn;
    void *ctx = p->ctx;
    uint32_t n = p->n_items;
    pthread_mutex_unlock(&p->lock);
    drain(p, fn, ctx, n, id);
    pthread_mutex_lock(&p->lock);
    if (--p->active == 0) pthread_cond_signal(&p->done_cv);
  }
  pthread_mutex_unlock(&p->lock);
  return NULL;
}

moert_status moert_pool_create(uint32_t num_threads, moert_pool **out) {
  if (num_threads == 0) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    num_threads = n > 0 ? (uint32_t)n : 1;
  }
  if (num_threads > 256) num_threads = 256;
  moert_pool *p = calloc(1, sizeof *p);
  if (!p) return moert_fail(MOERT_ERR_OUT_OF_MEMORY, "moert_runtime_create: out of memory");
  p->size = num_threads;
  pthread_mutex_init(&p->busy, NULL);
  pthread_mutex_init(&p->lock, NULL);
  pthread_cond_init(&p->wake, NULL);
  pthread_cond_init(&p->done_cv, NULL);
  atomic_init(&p->next, 0);
  if (num_threads > 1) {
    p->threads = calloc(num_threads - 1, sizeof *p->threads);
    p->args = calloc(num_threads - 1, sizeof *p->args);
    if (!p->threads || !p->args) {
      moert_pool_destroy(p);
      return moert_fail(MOERT_ERR_OUT_OF_MEMORY, "moert_runtime_create: out of memory");
    }
    for (uint32_t i = 1; i < num_threads; i++) {
      worker_arg *a = &p->args[i - 1];
      a->pool = p;
      a->id = i;
      if (pthread_create(&p->threads[p->started], NULL, worker_main, a) != 0) break;
      p->started++;
    }
    if (p->started != num_threads - 1) {
      moert_pool_destroy(p);
      return moert_fail(MOERT_ERR_OUT_OF_MEMORY,
                        "moert_runtime_create: could not start %u worker threads",
                        num_threads - 1);
    }
  }
  *out = p;
  return MOERT_OK;
}

void moert_pool_destroy(moert_pool *p) {
  if (!p) return;
  pthread_mutex_lock(&p->lock);
  p->stop = true;
  pthread_cond_broadcast(&p->wake);
  pthread_mutex_unlock(&p->lock);
  for (uint32_t i = 0; i < p->started; i++) pthread_join(p->threads[i], NULL);
  free(p->threads);
  free(p->args);
  pthread_cond_destroy(&p->wake);
  pthread_cond_destroy(&p->done_cv);
  pthread_mutex_destroy(&p->lock);
  pthread_mutex_destroy(&p->busy);
  free(p);
}

uint32_t moert_pool_size(const moert_pool *p) { return p ? p->size : 1; }

void moert_pool_run(moert_pool *p, moert_pool_fn fn, void *ctx, uint32_t n_items) {
  if (n_items == 0) return;
  if (!p || p->started == 0 || n_items == 1 || pthread_mutex_trylock(&p->busy) != 0) {
    for (uint32_t i = 0; i < n_items; i++) fn(ctx, i, 0);
    return;
  }
  pthread_mutex_lock(&p->lock);
  p->fn = fn;
  p->ctx = ctx;
  p->n_items = n_items;
  atomic_store_explicit(&p->next, 0, memory_order_relaxed);
  p->active = p->started;
  p->generation++;
  pthread_cond_broadcast(&p->wake);
  pthread_mutex_unlock(&p->lock);
  drain(p, fn, ctx, n_items, 0);
  pthread_mutex_lock(&p->lock);
  while (p->active > 0) pthread_cond_wait(&p->done_cv, &p->lock);
  pthread_mutex_unlock(&p->lock);
  pthread_mutex_unlock(&p->busy);
}
