/* test_concurrency.c — many threads, one runtime.
 *
 *  - shared_runtime: 8 threads share one runtime (its thread pool of 4 included) and four
 *    layers' experts (immutable, shared); each thread has its own scratch and runs 10,000
 *    layers (MOERT_CONCURRENCY_LAYERS overrides) on small shapes: softmax-routed bf16
 *    layers on even threads, sigmoid-group-routed layers with a gated shared expert on odd
 *    ones, tokens 1..12, random inputs, through moert_moe, route + forward, and
 *    set_routing + forward in turn.  Every output must be bit-identical (memcmp) to the
 *    same layer and input run beforehand on a single-threaded runtime by one thread, and
 *    every routing view equal to that run's.
 *  - create_destroy: 8 threads each create and destroy runtimes (with worker threads),
 *    scratches and experts 100 times, run a layer on each and compare it with the single-
 *    threaded result; failures on each thread leave that thread's own message.
 * These run under ThreadSanitizer too (tools/test.sh, build-tsan).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moert_test.h"

enum { NTHREADS = 8, NLAYERS = 4, NINPUTS = 12, MAXT = 12, E = 8, K = 2, H = 32, I = 16, IS = 8 };

typedef struct layer_set {
  moert_layer_desc d[2];      /* [0] softmax, [1] sigmoid groups + shared expert */
  uint16_t *w[2][NLAYERS];    /* bf16 weights of each layer */
  moert_experts_desc wd[2][NLAYERS];
  uint32_t T[NINPUTS];
  uint16_t *logits[NINPUTS];  /* [MAXT, E] bf16 */
  uint16_t *x[NINPUTS];       /* [MAXT, H] bf16 */
  /* the single-threaded results: y, ids, weights per (kind, layer, input) */
  uint16_t *y_ref[2][NLAYERS][NINPUTS];
  int32_t ids_ref[2][NINPUTS][MAXT * K];
  float wts_ref[2][NINPUTS][MAXT * K];
} layer_set;

static layer_set G;

static size_t weight_elems(int kind) {
  return (size_t)3 * E * I * H + (kind ? 3 * (size_t)IS * H + H : 0);
}

static void make_set(mt_rng *rng) {
  for (int kind = 0; kind < 2; kind++) {
    moert_layer_desc *d = &G.d[kind];
    MT_OK(moert_layer_desc_init(d));
    d->num_experts = E;
    d->top_k = K;
    d->hidden = H;
    d->intermediate = I;
    d->act_dtype = MOERT_DTYPE_BF16;
    d->weight_dtype = MOERT_DTYPE_BF16;
    if (kind) {
      d->router = MOERT_ROUTER_SIGMOID_GROUP_TOPK;
      d->n_group = 4;
      d->topk_group = 2;
      d->routed_scaling_factor = 2.5f;
      d->shared_intermediate = IS;
      d->shared_gate = MOERT_SHARED_GATE_SIGMOID;
    }
    for (int l = 0; l < NLAYERS; l++) {
      size_t n = weight_elems(kind);
      uint16_t *w = G.w[kind][l] = mt_alloc(n * 2);
      mt_fill_uniform(rng, w, MOERT_DTYPE_BF16, n, -0.3, 0.3);
      moert_experts_desc *x = &G.wd[kind][l];
      memset(x, 0, sizeof *x);
      x->struct_size = sizeof *x;
      x->layout = MOERT_LAYOUT_STACKED;
      x->memory = MOERT_MEMORY_HOST;
      x->gate = w;
      x->up = w + (size_t)E * I * H;
      x->down = w + (size_t)2 * E * I * H;
      if (kind) {
        uint16_t *s = w + (size_t)3 * E * I * H;
        x->shared_gate = s;
        x->shared_up = s + IS * H;
        x->shared_down = s + 2 * IS * H;
        x->shared_expert_gate = s + 3 * IS * H;
      }
    }
  }
  for (int i = 0; i < NINPUTS; i++) {
    G.T[i] = i == 0 ? MAXT : 1 + mt_below(rng, MAXT);
    G.logits[i] = mt_alloc(MAXT * E * 2);
    mt_fill_uniform(rng, G.logits[i], MOERT_DTYPE_BF16, MAXT * E, -3, 3);
    G.x[i] = mt_alloc(MAXT * H * 2);
    mt_fill_uniform(rng, G.x[i], MOERT_DTYPE_BF16, MAXT * H, -1, 1);
  }
}

static void free_set(void) {
  for (int kind = 0; kind < 2; kind++)
    for (int l = 0; l < NLAYERS; l++) {
      mt_free(G.w[kind][l]);
      for (int i = 0; i < NINPUTS; i++) mt_free(G.y_ref[kind][l][i]);
    }
  for (int i = 0; i < NINPUTS; i++) {
    mt_free(G.logits[i]);
    mt_free(G.x[i]);
  }
}

static moert_route_args route_of(int input) {
  moert_route_args a;
  memset(&a, 0, sizeof a);
  a.struct_size = sizeof a;
  a.num_tokens = G.T[input];
  a.logits_dtype = MOERT_DTYPE_BF16;
  a.memory = MOERT_MEMORY_HOST;
  a.logits = G.logits[input];
  return a;
}

static moert_forward_args forward_of(const moert_experts *ex, int input, void *y) {
  moert_forward_args a;
  memset(&a, 0, sizeof a);
  a.struct_size = sizeof a;
  a.experts = ex;
  a.memory = MOERT_MEMORY_HOST;
  a.x = G.x[input];
  a.y = y;
  return a;
}

/* The single-threaded reference: a runtime with one thread, one caller. */
static void make_reference(void) {
  moert_runtime *rt = mt_cpu_runtime(1);
  for (int kind = 0; kind < 2; kind++) {
    moert_scratch *s = NULL;
    MT_OK(moert_scratch_create(rt, &G.d[kind], MAXT, &s));
    for (int l = 0; l < NLAYERS; l++) {
      moert_experts *ex = NULL;
      MT_OK(moert_experts_create(rt, &G.d[kind], &G.wd[kind][l], &ex));
      for (int i = 0; i < NINPUTS; i++) {
        uint16_t *y = G.y_ref[kind][l][i] = mt_alloc(MAXT * H * 2);
        mt_poison(y, MOERT_DTYPE_BF16, MAXT * H);
        moert_route_args r = route_of(i);
        moert_forward_args f = forward_of(ex, i, y);
        MT_OK(moert_moe(s, &r, &f, NULL));
        int nonzero = 0;
        for (uint32_t j = 0; j < G.T[i] * H; j++) {
          double v = mt_load(y, MOERT_DTYPE_BF16, j);
          ck_assert_msg(v == v && v - v == 0, "reference y[%u] is not finite", j);
          nonzero += v != 0;
        }
        ck_assert_msg(nonzero > 0, "reference output of layer %d input %d is all zero", l, i);
        moert_routing_view v = {.struct_size = sizeof v};
        MT_OK(moert_scratch_routing(s, &v));
        ck_assert_uint_eq(v.num_tokens, G.T[i]);
        memcpy(G.ids_ref[kind][i], v.expert_ids, sizeof(int32_t) * G.T[i] * K);
        memcpy(G.wts_ref[kind][i], v.expert_weights, sizeof(float) * G.T[i] * K);
      }
      moert_experts_destroy(ex);
    }
    moert_scratch_destroy(s);
  }
  moert_runtime_destroy(rt);
}

/* ---- shared runtime ---- */

typedef struct worker {
  int id;
  moert_runtime *rt;
  moert_experts *const *ex; /* [NLAYERS] of this worker's kind */
  uint32_t layers;
  /* results, checked by the main thread */
  uint32_t done, mismatches, failures, first_bad;
  char error[256];
} worker;

static void *shared_body(void *arg) {
  worker *w = arg;
  const int kind = w->id & 1;
  moert_scratch *s = NULL;
  if (moert_scratch_create(w->rt, &G.d[kind], MAXT, &s) != MOERT_OK) {
    snprintf(w->error, sizeof w->error, "scratch: %s", moert_last_error());
    w->failures++;
    return NULL;
  }
  uint16_t y[MAXT * H];
  uint64_t state = 0x9e3779b97f4a7c15ull * (uint64_t)(w->id + 1);
  for (uint32_t it = 0; it < w->layers; it++) {
    state ^= state << 13, state ^= state >> 7, state ^= state << 17;
    const int l = (int)(state % NLAYERS), in = (int)((state >> 8) % NINPUTS);
    moert_route_args r = route_of(in);
    moert_forward_args f = forward_of(w->ex[l], in, y);
    moert_status st;
    switch (it % 3) {
    case 0: st = moert_moe(s, &r, &f, NULL); break;
    case 1:
      st = moert_route(s, &r, NULL);
      if (st == MOERT_OK) st = moert_forward(s, &f, NULL);
      break;
    default:
      st = moert_set_routing(s, G.T[in], G.ids_ref[kind][in], G.wts_ref[kind][in], NULL);
      if (st == MOERT_OK) st = moert_forward(s, &f, NULL);
      break;
    }
    if (st != MOERT_OK) {
      if (!w->failures++) snprintf(w->error, sizeof w->error, "layer %u: %s", it, moert_last_error());
      continue;
    }
    int bad = memcmp(y, G.y_ref[kind][l][in], (size_t)G.T[in] * H * 2) != 0;
    if (it % 7 == 0) {
      moert_routing_view v = {.struct_size = sizeof v};
      bad |= moert_scratch_routing(s, &v) != MOERT_OK || v.num_tokens != G.T[in] ||
             memcmp(v.expert_ids, G.ids_ref[kind][in], sizeof(int32_t) * G.T[in] * K) != 0 ||
             memcmp(v.expert_weights, G.wts_ref[kind][in], sizeof(float) * G.T[in] * K) != 0;
    }
    if (bad && !w->mismatches++) w->first_bad = it;
    w->done++;
  }
  moert_scratch_destroy(s);
  return NULL;
}

static uint32_t layers_per_thread(void) {
  const char *e = getenv("MOERT_CONCURRENCY_LAYERS");
  long n = e ? strtol(e, NULL, 10) : 10000;
  return n > 0 ? (uint32_t)n : 10000;
}

START_TEST(shared_runtime) {
  MT_RNG(rng);
  make_set(&rng);
  make_reference();
  moert_runtime *rt = mt_cpu_runtime(4);
  moert_experts *ex[2][NLAYERS];
  for (int kind = 0; kind < 2; kind++)
    for (int l = 0; l < NLAYERS; l++)
      MT_OK(moert_experts_create(rt, &G.d[kind], &G.wd[kind][l], &ex[kind][l]));
  worker w[NTHREADS];
  pthread_t th[NTHREADS];
  const uint32_t layers = layers_per_thread();
  for (int i = 0; i < NTHREADS; i++) {
    memset(&w[i], 0, sizeof w[i]);
    w[i].id = i;
    w[i].rt = rt;
    w[i].ex = ex[i & 1];
    w[i].layers = layers;
    ck_assert_int_eq(pthread_create(&th[i], NULL, shared_body, &w[i]), 0);
  }
  uint64_t total = 0;
  for (int i = 0; i < NTHREADS; i++) {
    ck_assert_int_eq(pthread_join(th[i], NULL), 0);
    ck_assert_msg(w[i].failures == 0, "thread %d: %u calls failed; first: %s", i, w[i].failures,
                  w[i].error);
    ck_assert_msg(w[i].mismatches == 0,
                  "thread %d: %u of %u layers differ from the single-threaded run (first at "
                  "layer %u)", i, w[i].mismatches, w[i].done, w[i].first_bad);
    ck_assert_uint_eq(w[i].done, layers);
    total += w[i].done;
  }
  fprintf(stderr, "test_concurrency: %d threads x %u layers on one runtime (pool of %u): "
                  "%llu outputs bit-identical to the single-threaded run\n",
          NTHREADS, layers, 4u, (unsigned long long)total);
  for (int kind = 0; kind < 2; kind++)
    for (int l = 0; l < NLAYERS; l++) moert_experts_destroy(ex[kind][l]);
  moert_runtime_destroy(rt);
  free_set();
}
END_TEST

/* ---- concurrent creation and destruction ---- */

static void *create_body(void *arg) {
  worker *w = arg;
  const int kind = w->id & 1;
  uint16_t y[MAXT * H];
  for (uint32_t it = 0; it < w->layers; it++) {
    moert_runtime_options o;
    moert_runtime_options_init(&o);
    o.backend = MOERT_BACKEND_CPU;
    o.num_threads = 1 + (uint32_t)((w->id + it) % 3);
    moert_runtime *rt = NULL;
    moert_scratch *s = NULL;
    moert_experts *ex = NULL;
    const int l = (int)(it % NLAYERS), in = (int)((it + (uint32_t)w->id) % NINPUTS);
    moert_status st = moert_runtime_create(&o, &rt);
    if (!st) st = moert_scratch_create(rt, &G.d[kind], MAXT, &s);
    if (!st) st = moert_experts_create(rt, &G.d[kind], &G.wd[kind][l], &ex);
    if (!st) {
      moert_route_args r = route_of(in);
      moert_forward_args f = forward_of(ex, in, y);
      st = moert_moe(s, &r, &f, NULL);
    }
    if (st) {
      if (!w->failures++) snprintf(w->error, sizeof w->error, "%s", moert_last_error());
    } else if (memcmp(y, G.y_ref[kind][l][in], (size_t)G.T[in] * H * 2) != 0) {
      if (!w->mismatches++) w->first_bad = it;
    }
    /* a failure on this thread leaves this thread's message, whatever the others do */
    moert_route_args big = route_of(in);
    big.num_tokens = MAXT + 1 + (uint32_t)w->id * 1000 + it;
    char want[64];
    snprintf(want, sizeof want, "num_tokens %u ", big.num_tokens);
    if (s && (moert_route(s, &big, NULL) != MOERT_ERR_TOO_MANY_TOKENS ||
              !strstr(moert_last_error(), want))) {
      if (!w->failures++)
        snprintf(w->error, sizeof w->error, "thread-local error: \"%s\" lacks \"%s\"",
                 moert_last_error(), want);
    }
    moert_experts_destroy(ex);
    moert_scratch_destroy(s);
    moert_runtime_destroy(rt);
    w->done++;
  }
  return NULL;
}

START_TEST(create_destroy) {
  MT_RNG(rng);
  make_set(&rng);
  make_reference();
  worker w[NTHREADS];
  pthread_t th[NTHREADS];
  for (int i = 0; i < NTHREADS; i++) {
    memset(&w[i], 0, sizeof w[i]);
    w[i].id = i;
    w[i].layers = 100;
    ck_assert_int_eq(pthread_create(&th[i], NULL, create_body, &w[i]), 0);
  }
  for (int i = 0; i < NTHREADS; i++) {
    ck_assert_int_eq(pthread_join(th[i], NULL), 0);
    ck_assert_msg(w[i].failures == 0, "thread %d: %u failures; first: %s", i, w[i].failures,
                  w[i].error);
    ck_assert_msg(w[i].mismatches == 0, "thread %d: %u outputs differ (first at round %u)", i,
                  w[i].mismatches, w[i].first_bad);
    ck_assert_uint_eq(w[i].done, 100);
  }
  fprintf(stderr, "test_concurrency: %d threads x 100 runtime create/route/forward/destroy "
                  "rounds: outputs bit-identical\n", NTHREADS);
  free_set();
}
END_TEST

int main(void) {
  Suite *su = suite_create("concurrency");
  TCase *tc = tcase_create("concurrency");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, shared_runtime);
  tcase_add_test(tc, create_destroy);
  suite_add_tcase(su, tc);
  return mt_run_suite(su);
}
