/* test_faults.c — allocation failure at every allocation site of runtime, scratch and
 * experts creation, in turn.
 *
 * Like tests/test_alloc.c, this executable defines malloc, calloc, realloc, free and the
 * aligned variants itself (forwarding to glibc's __libc_* entry points), so it sees every
 * allocation libmoert.so makes, and those libc makes for it (pthread_create's).  While
 * armed, the N-th allocation (any thread) returns NULL.  For N = 1, 2, ... the creation is
 * tried with the N-th allocation failing until it succeeds without reaching N; every
 * failing try must return MOERT_ERR_OUT_OF_MEMORY with a message, leave *out as it was,
 * and leak nothing: each allocation is recorded with its caller's address, and those made
 * by libmoert itself must all be freed again by the time the creation has failed (libc's
 * own, such as the thread stacks and TLS that glibc caches, are not the library's to
 * free).  After each failure the same creation without a fault must work, and route +
 * forward give the same bits as on objects created without any fault.
 *
 * AddressSanitizer and ThreadSanitizer own malloc, so the interposition cannot coexist with
 * them: under either, the test prints why and passes without injecting (the normal build
 * runs it).
 */
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moert_test.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define MT_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define MT_SANITIZER 1
#endif
#endif

#define SENTINEL ((void *)(uintptr_t)0x5e5e5e5e5e50ull)

#ifndef MT_SANITIZER
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
extern void *__libc_memalign(size_t, size_t);

/* ---- the interposed allocator ---- */

static int g_armed;            /* count allocations and fail the fail_at-th */
static unsigned long g_count;  /* allocations seen while armed */
static unsigned long g_fail_at;
static unsigned long g_failed; /* allocations refused */

enum { TABLE = 8192 };
typedef struct rec {
  void *p;
  void *caller;
} rec;
static rec g_live[TABLE]; /* allocations made while tracking and not yet freed */
static int g_tracking;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long g_overflow;

static int should_fail(void) {
  if (!__atomic_load_n(&g_armed, __ATOMIC_ACQUIRE)) return 0;
  unsigned long n = __atomic_add_fetch(&g_count, 1, __ATOMIC_ACQ_REL);
  if (n == g_fail_at) {
    __atomic_add_fetch(&g_failed, 1, __ATOMIC_ACQ_REL);
    return 1;
  }
  return 0;
}

static void track(void *p, void *caller) {
  if (!p || !__atomic_load_n(&g_tracking, __ATOMIC_ACQUIRE)) return;
  pthread_mutex_lock(&g_lock);
  int i;
  for (i = 0; i < TABLE && g_live[i].p; i++) {
  }
  if (i < TABLE) g_live[i] = (rec){p, caller};
  else g_overflow++;
  pthread_mutex_unlock(&g_lock);
}

static void untrack(void *p) {
  if (!p) return;
  pthread_mutex_lock(&g_lock);
  for (int i = 0; i < TABLE; i++)
    if (g_live[i].p == p) {
      g_live[i].p = NULL;
      break;
    }
  pthread_mutex_unlock(&g_lock);
}

void *malloc(size_t n) {
  if (should_fail()) {
    errno = ENOMEM;
    return NULL;
  }
  void *p = __libc_malloc(n);
  track(p, __builtin_return_address(0));
  return p;
}
void *calloc(size_t a, size_t b) {
  if (should_fail()) {
    errno = ENOMEM;
    return NULL;
  }
  void *p = __libc_calloc(a, b);
  track(p, __builtin_return_address(0));
  return p;
}
void *realloc(void *old, size_t n) {
  if (should_fail()) {
    errno = ENOMEM;
    return NULL;
  }
  void *p = __libc_realloc(old, n);
  if (p || n == 0) untrack(old);
  track(p, __builtin_return_address(0));
  return p;
}
void *reallocarray(void *old, size_t a, size_t b) {
  if (b && a > (size_t)-1 / b) {
    errno = ENOMEM;
    return NULL;
  }
  return realloc(old, a * b);
}
void free(void *p) {
  untrack(p);
  __libc_free(p);
}
int posix_memalign(void **out, size_t align, size_t n) {
  if (align < sizeof(void *) || (align & (align - 1))) return EINVAL;
  if (should_fail()) return ENOMEM;
  void *p = __libc_memalign(align, n);
  if (!p) return ENOMEM;
  track(p, __builtin_return_address(0));
  *out = p;
  return 0;
}
void *aligned_alloc(size_t align, size_t n) {
  if (should_fail()) {
    errno = ENOMEM;
    return NULL;
  }
  void *p = __libc_memalign(align, n);
  track(p, __builtin_return_address(0));
  return p;
}
void *memalign(size_t align, size_t n) { return aligned_alloc(align, n); }

static void arm(unsigned long fail_at) {
  __atomic_store_n(&g_count, 0, __ATOMIC_SEQ_CST);
  __atomic_store_n(&g_failed, 0, __ATOMIC_SEQ_CST);
  g_fail_at = fail_at;
  __atomic_store_n(&g_armed, 1, __ATOMIC_SEQ_CST);
}
static void disarm(void) { __atomic_store_n(&g_armed, 0, __ATOMIC_SEQ_CST); }

static void tracking(int on) {
  if (on) {
    pthread_mutex_lock(&g_lock);
    memset(g_live, 0, sizeof g_live);
    g_overflow = 0;
    pthread_mutex_unlock(&g_lock);
  }
  __atomic_store_n(&g_tracking, on, __ATOMIC_SEQ_CST);
}

/* How many tracked allocations made by libmoert itself are still live. */
static int moert_live(char *where, size_t n) {
  Dl_info self;
  void *sym = dlsym(RTLD_DEFAULT, "moert_runtime_create");
  ck_assert_msg(sym && dladdr(sym, &self) && self.dli_fname,
                "could not find the library that holds moert_runtime_create");
  int live = 0;
  where[0] = 0;
  pthread_mutex_lock(&g_lock);
  rec copy[TABLE];
  memcpy(copy, g_live, sizeof copy);
  pthread_mutex_unlock(&g_lock);
  for (int i = 0; i < TABLE; i++) {
    if (!copy[i].p) continue;
    Dl_info info;
    if (dladdr(copy[i].caller, &info) && info.dli_fname &&
        strcmp(info.dli_fname, self.dli_fname) == 0) {
      if (!live)
        snprintf(where, n, "%p allocated from %s+%#lx", copy[i].p,
                 info.dli_sname ? info.dli_sname : "?",
                 (unsigned long)((char *)copy[i].caller -
                                 (char *)(info.dli_saddr ? info.dli_saddr : info.dli_fbase)));
      live++;
    }
  }
  return live;
}

/* ---- the objects ---- */

enum { E = 16, K = 4, H = 64, I = 32, IS = 16, MAXT = 24 };

typedef struct layer {
  moert_layer_desc d;
  moert_experts_desc w;
  uint16_t *wbuf;
  const void *ptrs[3][E];
  uint16_t logits[MAXT * E], x[MAXT * H];
} layer;

static void layer_init(layer *L, mt_rng *rng, int variant) {
  memset(L, 0, sizeof *L);
  MT_OK(moert_layer_desc_init(&L->d));
  L->d.num_experts = E;
  L->d.top_k = K;
  L->d.hidden = H;
  L->d.intermediate = I;
  if (variant) {
    L->d.router = MOERT_ROUTER_SIGMOID_GROUP_TOPK;
    L->d.n_group = 4;
    L->d.topk_group = 2;
    L->d.shared_intermediate = IS;
    L->d.shared_gate = MOERT_SHARED_GATE_SIGMOID;
    L->d.plan_block_rows = 8;
  }
  const size_t mat = (size_t)I * H, n = 3 * E * mat + 3 * IS * H + H;
  L->wbuf = mt_alloc(n * 2);
  mt_fill_uniform(rng, L->wbuf, MOERT_DTYPE_BF16, n, -0.2, 0.2);
  L->w.struct_size = sizeof L->w;
  L->w.layout = variant ? MOERT_LAYOUT_PER_EXPERT : MOERT_LAYOUT_STACKED;
  L->w.memory = MOERT_MEMORY_HOST;
  L->w.gate = L->wbuf;
  L->w.up = L->wbuf + E * mat;
  L->w.down = L->wbuf + 2 * E * mat;
  for (int e = 0; e < E; e++) {
    L->ptrs[0][e] = L->wbuf + e * mat;
    L->ptrs[1][e] = L->wbuf + (E + e) * mat;
    L->ptrs[2][e] = L->wbuf + (2 * E + e) * mat;
  }
  L->w.gate_ptrs = L->ptrs[0];
  L->w.up_ptrs = L->ptrs[1];
  L->w.down_ptrs = L->ptrs[2];
  uint16_t *sh = L->wbuf + 3 * E * mat;
  L->w.shared_gate = sh;
  L->w.shared_up = sh + IS * H;
  L->w.shared_down = sh + 2 * IS * H;
  L->w.shared_expert_gate = sh + 3 * IS * H;
  mt_fill_uniform(rng, L->logits, MOERT_DTYPE_BF16, MAXT * E, -3, 3);
  mt_fill_uniform(rng, L->x, MOERT_DTYPE_BF16, MAXT * H, -1, 1);
}

/* route + forward of all MAXT tokens into y */
static void run_layer(moert_scratch *s, moert_experts *ex, layer *L, uint16_t *y) {
  moert_route_args r = {sizeof r, MAXT, MOERT_DTYPE_BF16, MOERT_MEMORY_HOST, L->logits, 0, NULL,
                        MOERT_ROUTING_AUTO};
  moert_forward_args f = {sizeof f, ex, MOERT_MEMORY_HOST, L->x, 0, y, 0, 0};
  MT_OK(moert_moe(s, &r, &f, NULL));
}

typedef enum { OBJ_RUNTIME, OBJ_SCRATCH, OBJ_EXPERTS } obj_kind;
static const char *const obj_name[] = {"moert_runtime_create", "moert_scratch_create",
                                       "moert_experts_create"};

/* One creation of kind on (rt, L), with *out poisoned; returns the status and destroys
 * nothing. */
static moert_status create(obj_kind kind, moert_runtime *rt, layer *L, uint32_t threads,
                           void **out) {
  switch (kind) {
  case OBJ_RUNTIME: {
    moert_runtime_options o;
    moert_runtime_options_init(&o);
    o.backend = MOERT_BACKEND_CPU;
    o.num_threads = threads;
    return moert_runtime_create(&o, (moert_runtime **)out);
  }
  case OBJ_SCRATCH: return moert_scratch_create(rt, &L->d, MAXT, (moert_scratch **)out);
  default: return moert_experts_create(rt, &L->d, &L->w, (moert_experts **)out);
  }
}

static void destroy(obj_kind kind, void *p) {
  if (kind == OBJ_RUNTIME) moert_runtime_destroy(p);
  else if (kind == OBJ_SCRATCH) moert_scratch_destroy(p);
  else moert_experts_destroy(p);
}
#endif /* !MT_SANITIZER */

/* _i: 0 runtime (1 thread), 1 runtime (4 threads), 2 scratch, 3 scratch (sigmoid, shared
 * expert, padded plan), 4 experts (stacked), 5 experts (per-expert tables, shared). */
START_TEST(alloc_failure_each_site) {
#ifdef MT_SANITIZER
  fprintf(stderr, "test_faults: skipped under a sanitizer: it owns malloc, so the failing "
                  "interposition cannot be installed (the normal build runs this)\n");
  return;
#else
  MT_RNG(rng);
  /* the interposition is in place */
  void *(*volatile m)(size_t) = malloc;
  arm(1);
  void *p = m(16);
  disarm();
  ck_assert_msg(p == NULL && g_failed == 1, "the interposed malloc did not fail on request");

  const obj_kind kind = _i < 2 ? OBJ_RUNTIME : _i < 4 ? OBJ_SCRATCH : OBJ_EXPERTS;
  const uint32_t threads = _i == 1 ? 4 : 1;
  layer L;
  layer_init(&L, &rng, _i & 1);
  moert_runtime *rt = mt_cpu_runtime(2);
  /* the reference: objects made with no fault */
  moert_scratch *s0 = NULL;
  moert_experts *x0 = NULL;
  uint16_t y0[MAXT * H], y1[MAXT * H];
  MT_OK(moert_scratch_create(rt, &L.d, MAXT, &s0));
  MT_OK(moert_experts_create(rt, &L.d, &L.w, &x0));
  run_layer(s0, x0, &L, y0);
  /* warm-up: glibc's first thread creation allocates things it keeps */
  void *warm = NULL;
  MT_OK(create(kind, rt, &L, threads, &warm));
  destroy(kind, warm);

  unsigned long sites = 0;
  for (unsigned long n = 1;; n++) {
    ck_assert_msg(n < 10000, "%s still failing after 10000 injected faults", obj_name[kind]);
    void *out = SENTINEL;
    ck_assert_int_eq(moert_scratch_memory(NULL, NULL, NULL), MOERT_ERR_NULL_POINTER);
    char primed[256];
    snprintf(primed, sizeof primed, "%s", moert_last_error());
    tracking(1);
    arm(n);
    moert_status st = create(kind, rt, &L, threads, &out);
    disarm();
    const unsigned long seen = g_count, failed = g_failed;
    if (failed == 0) { /* the creation made fewer than n allocations: every site was tried */
      tracking(0);
      MT_OK(st);
      ck_assert_ptr_ne(out, SENTINEL);
      sites = n - 1;
      ck_assert_msg(seen == sites, "%lu allocations without a fault, %lu sites", seen, sites);
      destroy(kind, out);
      break;
    }
    if (st == MOERT_OK) { /* a fault the library survived (none expected in creation) */
      tracking(0);
      ck_abort_msg("%s succeeded although allocation %lu of %lu failed", obj_name[kind], n, seen);
    }
    ck_assert_msg(st == MOERT_ERR_OUT_OF_MEMORY,
                  "%s with allocation %lu failing: got %d (%s), want MOERT_ERR_OUT_OF_MEMORY; "
                  "\"%s\"", obj_name[kind], n, st, moert_status_string(st), moert_last_error());
    const char *msg = moert_last_error();
    ck_assert_msg(msg[0] && strcmp(msg, primed) != 0 && strstr(msg, obj_name[kind]),
                  "%s with allocation %lu failing: the message \"%s\" does not name the call",
                  obj_name[kind], n, msg);
    ck_assert_msg(out == SENTINEL, "%s with allocation %lu failing wrote *out", obj_name[kind],
                  n);
    char where[256];
    int live = moert_live(where, sizeof where);
    tracking(0);
    ck_assert_msg(g_overflow == 0, "allocation table overflow");
    ck_assert_msg(live == 0, "%s with allocation %lu failing leaked %d allocation(s): %s",
                  obj_name[kind], n, live, where);
    /* and the same call without a fault works right after, with the reference's bits */
    void *again = NULL;
    MT_OK(create(kind, rt, &L, threads, &again));
    if (n % 4 == 1 || kind != OBJ_RUNTIME) {
      moert_runtime *r2 = kind == OBJ_RUNTIME ? again : rt;
      moert_scratch *s = kind == OBJ_SCRATCH ? again : NULL;
      moert_experts *x = kind == OBJ_EXPERTS ? again : NULL;
      if (!s) MT_OK(moert_scratch_create(r2, &L.d, MAXT, &s));
      if (!x) MT_OK(moert_experts_create(r2, &L.d, &L.w, &x));
      mt_poison(y1, MOERT_DTYPE_BF16, MAXT * H);
      run_layer(s, x, &L, y1);
      ck_assert_msg(memcmp(y0, y1, sizeof y0) == 0,
                    "after the fault at allocation %lu, the output differs", n);
      if (kind != OBJ_SCRATCH) moert_scratch_destroy(s);
      if (kind != OBJ_EXPERTS) moert_experts_destroy(x);
    }
    destroy(kind, again);
  }
  ck_assert_msg(sites > 0, "%s made no allocation", obj_name[kind]);
  fprintf(stderr, "test_faults: %s (%s): %lu allocation sites, each failed in turn: "
                  "MOERT_ERR_OUT_OF_MEMORY, *out untouched, nothing leaked\n", obj_name[kind],
          _i == 0 ? "1 thread" : _i == 1 ? "4 threads" : (_i & 1) ? "variant B" : "variant A",
          sites);
  moert_scratch_destroy(s0);
  moert_experts_destroy(x0);
  moert_runtime_destroy(rt);
  mt_free(L.wbuf);
#endif
}
END_TEST

int main(void) {
  Suite *su = suite_create("faults");
  TCase *tc = tcase_create("faults");
  tcase_set_timeout(tc, 300);
  tcase_add_loop_test(tc, alloc_failure_each_site, 0, 6);
  suite_add_tcase(su, tc);
  return mt_run_suite(su);
}
