/* test_alloc.c — after moert_scratch_create/moert_experts_create, route, plan and forward
 * allocate nothing.
 *
 * This executable defines malloc, calloc, realloc, reallocarray, free, posix_memalign,
 * aligned_alloc, memalign, valloc and pvalloc itself (forwarding to glibc's __libc_*
 * entry points), so every allocation made by libmoert.so (and by libc on its behalf, and
 * by the CPU pool's worker threads) goes through them.  While g_counting is set, each call
 * is counted.  The test first proves the interposition sees the library's allocations
 * (scratch creation must count > 0), then counts 1000 route + forward calls of two layer
 * shapes (softmax/f32 and sigmoid-groups/bf16 with a shared expert, varying T) plus the
 * other per-call entry points, and asserts zero.  Each Check test runs in a forked child;
 * the counters live in that child, which is where the calls are made.
 *
 * AddressSanitizer replaces the allocator itself and this interposition cannot coexist with
 * it: under ASan (__SANITIZE_ADDRESS__) the test prints why and passes without counting;
 * the normal build runs it.
 */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moert_test.h"

#if defined(__SANITIZE_ADDRESS__)
#define MT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MT_ASAN 1
#endif
#endif

#ifndef MT_ASAN
static int g_counting;
static unsigned long g_mallocs, g_frees;

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
extern void *__libc_memalign(size_t, size_t);
extern void *__libc_valloc(size_t);
extern void *__libc_pvalloc(size_t);

static inline void count_alloc(void) {
  if (__atomic_load_n(&g_counting, __ATOMIC_RELAXED))
    __atomic_fetch_add(&g_mallocs, 1, __ATOMIC_RELAXED);
}

void *malloc(size_t n) {
  count_alloc();
  return __libc_malloc(n);
}
void *calloc(size_t a, size_t b) {
  count_alloc();
  return __libc_calloc(a, b);
}
void *realloc(void *p, size_t n) {
  count_alloc();
  return __libc_realloc(p, n);
}
void *reallocarray(void *p, size_t a, size_t b) {
  count_alloc();
  if (b && a > (size_t)-1 / b) {
    errno = ENOMEM;
    return NULL;
  }
  return __libc_realloc(p, a * b);
}
void free(void *p) {
  if (p && __atomic_load_n(&g_counting, __ATOMIC_RELAXED))
    __atomic_fetch_add(&g_frees, 1, __ATOMIC_RELAXED);
  __libc_free(p);
}
int posix_memalign(void **out, size_t align, size_t n) {
  count_alloc();
  if (align < sizeof(void *) || (align & (align - 1))) return EINVAL;
  void *p = __libc_memalign(align, n);
  if (!p) return ENOMEM;
  *out = p;
  return 0;
}
void *aligned_alloc(size_t align, size_t n) {
  count_alloc();
  return __libc_memalign(align, n);
}
void *memalign(size_t align, size_t n) {
  count_alloc();
  return __libc_memalign(align, n);
}
void *valloc(size_t n) {
  count_alloc();
  return __libc_valloc(n);
}
void *pvalloc(size_t n) {
  count_alloc();
  return __libc_pvalloc(n);
}

static void counting(int on) {
  if (on) {
    __atomic_store_n(&g_mallocs, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&g_frees, 0, __ATOMIC_SEQ_CST);
  }
  __atomic_store_n(&g_counting, on, __ATOMIC_SEQ_CST);
}

typedef struct layer {
  moert_layer_desc d;
  moert_scratch *s;
  moert_experts *ex;
  void *w[8];
  void *logits, *x, *y;
  float bias[64];
  uint32_t max_T;
} layer;

static void layer_init(layer *L, mt_rng *rng, moert_runtime *rt, int kind) {
  memset(L, 0, sizeof *L);
  moert_layer_desc *d = &L->d;
  MT_OK(moert_layer_desc_init(d));
  d->num_experts = kind ? 32 : 16;
  d->top_k = 4;
  d->hidden = 64;
  d->intermediate = 32;
  d->shared_intermediate = kind ? 48 : 0;
  d->shared_gate = kind ? MOERT_SHARED_GATE_SIGMOID : MOERT_SHARED_GATE_NONE;
  d->act_dtype = kind ? MOERT_DTYPE_BF16 : MOERT_DTYPE_F32;
  d->weight_dtype = kind ? MOERT_DTYPE_BF16 : MOERT_DTYPE_F16;
  d->router = kind ? MOERT_ROUTER_SIGMOID_GROUP_TOPK : MOERT_ROUTER_SOFTMAX_TOPK;
  d->n_group = kind ? 4 : 0;
  d->topk_group = kind ? 2 : 0;
  d->routed_scaling_factor = kind ? 2.5f : 1.0f;
  L->max_T = 24;
  const uint32_t E = d->num_experts, H = d->hidden, I = d->intermediate;
  const uint32_t Is = d->shared_intermediate;
  const moert_dtype wt = d->weight_dtype, at = d->act_dtype;
  const size_t n[8] = {(size_t)E * 2 * I * H, (size_t)E * H * I, (size_t)Is * H, (size_t)Is * H,
                       (size_t)H * Is, H, 0, 0};
  for (int i = 0; i < 6; i++) {
    L->w[i] = mt_alloc((n[i] + 1) * 2);
    mt_fill_uniform(rng, L->w[i], wt, n[i], -0.2, 0.2);
  }
  moert_experts_desc w;
  memset(&w, 0, sizeof w);
  w.struct_size = sizeof w;
  w.layout = MOERT_LAYOUT_STACKED_GATE_UP;
  w.memory = MOERT_MEMORY_HOST;
  w.gate_up = L->w[0];
  w.down = L->w[1];
  if (Is) {
    w.shared_gate = L->w[2];
    w.shared_up = L->w[3];
    w.shared_down = L->w[4];
    w.shared_expert_gate = L->w[5];
  }
  MT_OK(moert_experts_create(rt, d, &w, &L->ex));
  MT_OK(moert_scratch_create(rt, d, L->max_T, &L->s));
  L->logits = mt_alloc((size_t)L->max_T * E * 4);
  mt_fill_uniform(rng, L->logits, at, (size_t)L->max_T * E, -3, 3);
  L->x = mt_alloc((size_t)L->max_T * H * 4);
  mt_fill_uniform(rng, L->x, at, (size_t)L->max_T * H, -1, 1);
  L->y = mt_alloc((size_t)L->max_T * H * 4);
  for (uint32_t e = 0; e < E; e++) L->bias[e] = (float)mt_uniform(rng, -0.1, 0.1);
}

static void layer_free(layer *L) {
  moert_scratch_destroy(L->s);
  moert_experts_destroy(L->ex);
  for (int i = 0; i < 6; i++) mt_free(L->w[i]);
  mt_free(L->logits);
  mt_free(L->x);
  mt_free(L->y);
}

/* One step of the loop: statuses are collected, not asserted, while counting (a failing
 * assertion would itself allocate). */
static int layer_step(layer *L, uint32_t T, int variant) {
  moert_route_args ra;
  memset(&ra, 0, sizeof ra);
  ra.struct_size = sizeof ra;
  ra.num_tokens = T;
  ra.logits_dtype = L->d.act_dtype;
  ra.memory = MOERT_MEMORY_HOST;
  ra.logits = L->logits;
  ra.correction_bias = L->d.router == MOERT_ROUTER_SIGMOID_GROUP_TOPK ? L->bias : NULL;
  moert_forward_args fa;
  memset(&fa, 0, sizeof fa);
  fa.struct_size = sizeof fa;
  fa.experts = L->ex;
  fa.memory = MOERT_MEMORY_HOST;
  fa.x = L->x;
  fa.y = L->y;
  fa.accumulate = (uint32_t)(variant & 1);
  int bad = 0;
  if (variant % 3 == 2) {
    bad |= moert_moe(L->s, &ra, &fa, NULL) != MOERT_OK;
  } else {
    bad |= moert_route(L->s, &ra, NULL) != MOERT_OK;
    bad |= moert_forward(L->s, &fa, NULL) != MOERT_OK;
  }
  if (variant % 5 == 0) { /* the views, and caller routing built from them */
    moert_routing_view v;
    memset(&v, 0, sizeof v);
    v.struct_size = sizeof v;
    moert_plan_view p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    bad |= moert_scratch_routing(L->s, &v) != MOERT_OK;
    bad |= moert_scratch_plan(L->s, &p) != MOERT_OK;
    int32_t ids[24 * 4];
    float w[24 * 4];
    if (!bad && v.num_tokens == T) {
      memcpy(ids, v.expert_ids, sizeof(int32_t) * T * 4);
      memcpy(w, v.expert_weights, sizeof(float) * T * 4);
      bad |= moert_set_routing(L->s, T, ids, w, NULL) != MOERT_OK;
      bad |= moert_forward(L->s, &fa, NULL) != MOERT_OK;
    }
  }
  return bad;
}

#endif /* !MT_ASAN */

START_TEST(zero_allocations) {
#ifdef MT_ASAN
  fprintf(stderr, "test_alloc: skipped under AddressSanitizer: ASan owns malloc, so the "
                  "counting interposition cannot be installed (the normal build runs this)\n");
  return;
#else
  MT_RNG(rng);
  /* the interposition works: a direct call is seen... */
  void *(*volatile m)(size_t) = malloc;
  void (*volatile f)(void *) = free;
  counting(1);
  void *p = m(24);
  f(p);
  counting(0);
  ck_assert_msg(g_mallocs == 1 && g_frees == 1, "interposed malloc/free not called (%lu, %lu)",
                g_mallocs, g_frees);
  /* ...and so are the library's own allocations */
  counting(1);
  moert_runtime *rt = mt_cpu_runtime(_i == 0 ? 2 : 1);
  counting(0);
  unsigned long rt_allocs = g_mallocs;
  layer A, B;
  layer_init(&A, &rng, rt, 0);
  layer_init(&B, &rng, rt, 1);
  moert_scratch *extra = NULL;
  counting(1);
  moert_status st = moert_scratch_create(rt, &A.d, 8, &extra);
  counting(0);
  unsigned long create_allocs = g_mallocs;
  MT_OK(st);
  moert_scratch_destroy(extra);
  ck_assert_msg(create_allocs > 0,
                "no allocation seen in moert_scratch_create (runtime creation: %lu): the malloc "
                "interposition does not reach libmoert, so this test would prove nothing",
                rt_allocs);

  int bad = 0;
  counting(1);
  for (int it = 0; it < 1000; it++) {
    layer *L = (it & 1) ? &B : &A;
    uint32_t T = 1 + (uint32_t)((it * 7) % L->max_T);
    bad += layer_step(L, T, it / 2);
  }
  counting(0);
  unsigned long mallocs = g_mallocs, frees = g_frees;
  ck_assert_msg(bad == 0, "%d route/forward calls failed; last error: %s", bad, moert_last_error());
  ck_assert_msg(mallocs == 0 && frees == 0,
                "1000 route + forward calls (%s) made %lu allocations and %lu frees; they must "
                "make none", _i == 0 ? "2 threads" : "1 thread", mallocs, frees);
  fprintf(stderr, "test_alloc: runtime creation made %lu allocations, scratch creation %lu; "
                  "1000 route + forward calls made %lu\n", rt_allocs, create_allocs, mallocs);
  layer_free(&A);
  layer_free(&B);
  moert_runtime_destroy(rt);
#endif
}
END_TEST

int main(void) {
  Suite *su = suite_create("alloc");
  TCase *tc = tcase_create("alloc");
  tcase_set_timeout(tc, 300);
  tcase_add_loop_test(tc, zero_allocations, 0, 2);
  suite_add_tcase(su, tc);
  return mt_run_suite(su);
}
