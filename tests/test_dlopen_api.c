/* test_dlopen_api.c — a dlopen host: loads the built shared library (MOERT_LIB_PATH, set by
 * tests/CMakeLists.txt), resolves the single symbol moert_get_api, and runs the whole job
 * through the table: runtime, scratch, experts, route, forward and moe on the CPU backend,
 * checked against a float64 reference computed here (softmax top-k, renormalised, SwiGLU
 * experts) on random data, with the output poisoned first.  This program does not link
 * libmoert: every moert call goes through the table.
 *
 * The seed comes from $MOERT_TEST_SEED or the clock and is printed to stderr.
 */
#include <check.h>
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "moert.h"

#ifndef MOERT_LIB_PATH
#error "MOERT_LIB_PATH (the built libmoert.so) must be defined"
#endif

typedef const moert_api *(*get_api_fn)(uint32_t);

static void *g_lib;
static const moert_api *g_api;

static void load(void) {
  g_lib = dlopen(MOERT_LIB_PATH, RTLD_NOW | RTLD_LOCAL);
  ck_assert_msg(g_lib != NULL, "dlopen(%s): %s", MOERT_LIB_PATH, dlerror());
  void *sym = dlsym(g_lib, "moert_get_api");
  ck_assert_msg(sym != NULL, "dlsym(moert_get_api): %s", dlerror());
  get_api_fn get;
  memcpy(&get, &sym, sizeof get); /* object pointer -> function pointer, pedantic-clean */
  g_api = get(MOERT_VERSION_MAJOR);
  ck_assert_msg(g_api != NULL, "moert_get_api(%d) returned NULL", MOERT_VERSION_MAJOR);
}

static void unload(void) {
  if (g_lib) dlclose(g_lib);
  g_lib = NULL;
  g_api = NULL;
}

/* ---- a seeded xorshift64* ---- */

static uint64_t g_rng;

static void seed_rng(const char *test) {
  const char *env = getenv("MOERT_TEST_SEED");
  uint64_t base = env && env[0] ? strtoull(env, NULL, 0)
                                : ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid();
  fprintf(stderr, "%s: MOERT_TEST_SEED=%llu\n", test, (unsigned long long)base);
  g_rng = base * 0x9E3779B97F4A7C15ull + 1;
  if (!g_rng) g_rng = 1;
}

static double uniform(double lo, double hi) {
  g_rng ^= g_rng >> 12;
  g_rng ^= g_rng << 25;
  g_rng ^= g_rng >> 27;
  uint64_t v = g_rng * 0x2545F4914F6CDD1Dull;
  return lo + (hi - lo) * (double)(v >> 11) * (1.0 / 9007199254740992.0);
}

static void fill(float *p, size_t n, double lo, double hi) {
  for (size_t i = 0; i < n; i++) p[i] = (float)uniform(lo, hi);
}

/* A NaN payload no arithmetic produces: a y element the library did not write shows. */
static float poison_value(void) {
  uint32_t bits = 0x7fa5a5a5u;
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

/* ---- the float64 reference ---- */

enum { E = 8, K = 2, H = 32, I = 16, T = 9 };

typedef struct layer {
  float logits[T * E], x[T * H];
  float gate[E * I * H], up[E * I * H], down[E * H * I];
  int32_t ref_ids[T * K];
  double ref_w[T * K], ref_y[T * H];
} layer;

/* Softmax top-k, renormalised: top-k of the logits (ties to the lower index), then a
 * softmax over the k chosen. */
static void reference_route(layer *L) {
  for (int t = 0; t < T; t++) {
    const float *row = L->logits + t * E;
    int taken[E] = {0};
    for (int j = 0; j < K; j++) {
      int best = -1;
      for (int e = 0; e < E; e++)
        if (!taken[e] && (best < 0 || row[e] > row[best])) best = e;
      taken[best] = 1;
      L->ref_ids[t * K + j] = best;
    }
    double sum = 0, w[K];
    for (int j = 0; j < K; j++) {
      w[j] = exp((double)row[L->ref_ids[t * K + j]] - (double)row[L->ref_ids[t * K]]);
      sum += w[j];
    }
    for (int j = 0; j < K; j++) L->ref_w[t * K + j] = w[j] / sum;
  }
}

static void reference_forward(layer *L) {
  for (int t = 0; t < T; t++) {
    const float *x = L->x + t * H;
    for (int h = 0; h < H; h++) L->ref_y[t * H + h] = 0;
    for (int j = 0; j < K; j++) {
      int e = L->ref_ids[t * K + j];
      double act[I];
      for (int i = 0; i < I; i++) {
        double g = 0, u = 0;
        for (int h = 0; h < H; h++) {
          g += (double)L->gate[((size_t)e * I + i) * H + h] * x[h];
          u += (double)L->up[((size_t)e * I + i) * H + h] * x[h];
        }
        act[i] = g / (1 + exp(-g)) * u;
      }
      for (int h = 0; h < H; h++) {
        double acc = 0;
        for (int i = 0; i < I; i++) acc += (double)L->down[((size_t)e * H + h) * I + i] * act[i];
        L->ref_y[t * H + h] += L->ref_w[t * K + j] * acc;
      }
    }
  }
}

static layer *make_layer(void) {
  layer *L = calloc(1, sizeof *L);
  ck_assert(L != NULL);
  fill(L->logits, T * E, -4, 4);
  fill(L->x, T * H, -1, 1);
  fill(L->gate, (size_t)E * I * H, -0.3, 0.3);
  fill(L->up, (size_t)E * I * H, -0.3, 0.3);
  fill(L->down, (size_t)E * H * I, -0.3, 0.3);
  reference_route(L);
  reference_forward(L);
  return L;
}

/* Every y element is finite and within a float32-accumulation tolerance of ref + base. */
static void check_y(const layer *L, const float *y, const double *base, const char *what) {
  double ref_max = 0;
  for (int i = 0; i < T * H; i++) ref_max = fmax(ref_max, fabs(L->ref_y[i]));
  ck_assert_msg(ref_max > 1e-3, "%s: the reference is all (near) zero: bad test data", what);
  for (int i = 0; i < T * H; i++) {
    double want = L->ref_y[i] + (base ? base[i] : 0);
    ck_assert_msg(isfinite(y[i]), "%s: y[%d] = %g is not finite (unwritten?)", what, i,
                  (double)y[i]);
    ck_assert_msg(fabs(y[i] - want) <= 1e-5 + 1e-4 * fabs(want), "%s: y[%d] = %.8g, want %.8g",
                  what, i, (double)y[i], want);
  }
}

/* ---- the tests ---- */

START_TEST(table_is_complete) {
  load();
  ck_assert_uint_eq(g_api->struct_size, sizeof(moert_api));
  ck_assert_uint_eq(g_api->abi_major, MOERT_VERSION_MAJOR);
  ck_assert(MOERT_API_HAS(g_api, scratch_plan));
#define HAS(m) ck_assert_msg(g_api->m != NULL, "api->" #m " is NULL")
  HAS(version); HAS(version_string); HAS(status_string); HAS(last_error);
  HAS(runtime_options_init); HAS(runtime_create); HAS(runtime_destroy); HAS(runtime_backend);
  HAS(runtime_backend_note); HAS(layer_desc_init); HAS(scratch_create); HAS(scratch_destroy);
  HAS(scratch_prepare); HAS(scratch_memory); HAS(experts_create); HAS(experts_destroy);
  HAS(route); HAS(set_routing); HAS(forward); HAS(moe); HAS(scratch_routing);
  HAS(scratch_plan);
#undef HAS
  /* Each member is the exported function of the same name. */
  void *direct = dlsym(g_lib, "moert_forward");
  ck_assert(direct != NULL);
  ck_assert(memcmp(&direct, &g_api->forward, sizeof direct) == 0);
  ck_assert_uint_eq(g_api->version(), MOERT_VERSION_NUMBER);
  ck_assert_str_eq(g_api->status_string(MOERT_ERR_NULL_POINTER),
                   "MOERT_ERR_NULL_POINTER: a required pointer argument is NULL");
  unload();
}
END_TEST

START_TEST(unknown_major_is_null_with_message) {
  load();
  void *sym = dlsym(g_lib, "moert_get_api");
  get_api_fn get;
  memcpy(&get, &sym, sizeof get);
  ck_assert(get(MOERT_VERSION_MAJOR + 1) == NULL);
  const char *msg = g_api->last_error();
  ck_assert_msg(strstr(msg, "moert_get_api") != NULL, "last error \"%s\"", msg);
  char asked[32];
  snprintf(asked, sizeof asked, "major %d", MOERT_VERSION_MAJOR + 1);
  ck_assert_msg(strstr(msg, asked) != NULL, "last error \"%s\" does not name %s", msg, asked);
  ck_assert(get(0xffffffffu) == NULL);
  ck_assert(get(MOERT_VERSION_MAJOR) == g_api); /* one static table */
  unload();
}
END_TEST

START_TEST(route_and_forward_through_the_table) {
  seed_rng("route_and_forward_through_the_table");
  load();
  const moert_api *api = g_api;
  layer *L = make_layer();

  moert_runtime_options o;
  ck_assert_int_eq(api->runtime_options_init(&o), MOERT_OK);
  o.backend = MOERT_BACKEND_CPU;
  o.num_threads = 2;
  moert_runtime *rt = NULL;
  ck_assert_int_eq(api->runtime_create(&o, &rt), MOERT_OK);
  ck_assert_uint_eq(api->runtime_backend(rt), MOERT_BACKEND_CPU);

  moert_layer_desc d;
  ck_assert_int_eq(api->layer_desc_init(&d), MOERT_OK);
  d.num_experts = E;
  d.top_k = K;
  d.hidden = H;
  d.intermediate = I;
  d.act_dtype = MOERT_DTYPE_F32;
  d.weight_dtype = MOERT_DTYPE_F32;
  moert_scratch *s = NULL;
  ck_assert_int_eq(api->scratch_create(rt, &d, T, &s), MOERT_OK);

  moert_experts_desc w;
  memset(&w, 0, sizeof w);
  w.struct_size = sizeof w;
  w.layout = MOERT_LAYOUT_STACKED;
  w.memory = MOERT_MEMORY_HOST;
  w.gate = L->gate;
  w.up = L->up;
  w.down = L->down;
  moert_experts *ex = NULL;
  ck_assert_int_eq(api->experts_create(rt, &d, &w, &ex), MOERT_OK);

  moert_route_args r;
  memset(&r, 0, sizeof r);
  r.struct_size = sizeof r;
  r.num_tokens = T;
  r.logits_dtype = MOERT_DTYPE_F32;
  r.memory = MOERT_MEMORY_HOST;
  r.logits = L->logits;
  r.mode = MOERT_ROUTING_AUTO;
  ck_assert_int_eq(api->route(s, &r, NULL), MOERT_OK);

  moert_routing_view rv;
  memset(&rv, 0, sizeof rv);
  rv.struct_size = sizeof rv;
  ck_assert_int_eq(api->scratch_routing(s, &rv), MOERT_OK);
  ck_assert_uint_eq(rv.num_tokens, T);
  for (int p = 0; p < T * K; p++) {
    ck_assert_msg(rv.expert_ids[p] == L->ref_ids[p], "pair %d: expert %d, want %d", p,
                  rv.expert_ids[p], L->ref_ids[p]);
    ck_assert_msg(fabs(rv.expert_weights[p] - L->ref_w[p]) < 1e-6, "pair %d: weight %.8g, "
                  "want %.8g", p, (double)rv.expert_weights[p], L->ref_w[p]);
  }
  moert_plan_view pv;
  memset(&pv, 0, sizeof pv);
  pv.struct_size = sizeof pv;
  ck_assert_int_eq(api->scratch_plan(s, &pv), MOERT_OK);
  ck_assert_int_eq(pv.offsets[E], T * K);

  static float y[T * H];
  for (int i = 0; i < T * H; i++) y[i] = poison_value();
  moert_forward_args f;
  memset(&f, 0, sizeof f);
  f.struct_size = sizeof f;
  f.experts = ex;
  f.memory = MOERT_MEMORY_HOST;
  f.x = L->x;
  f.y = y;
  f.accumulate = 0;
  ck_assert_int_eq(api->forward(s, &f, NULL), MOERT_OK);
  check_y(L, y, NULL, "forward");

  /* moe with accumulate: y = base + moe(x) */
  static double base[T * H];
  for (int i = 0; i < T * H; i++) {
    y[i] = (float)uniform(-2, 2);
    base[i] = y[i];
  }
  f.accumulate = 1;
  ck_assert_int_eq(api->moe(s, &r, &f, NULL), MOERT_OK);
  check_y(L, y, base, "moe, accumulate");

  /* A bad argument through the table: a status and a sentence. */
  r.num_tokens = T + 1;
  ck_assert_int_eq(api->route(s, &r, NULL), MOERT_ERR_TOO_MANY_TOKENS);
  ck_assert_msg(api->last_error()[0] != 0, "no message for too many tokens");
  ck_assert_int_eq(api->scratch_create(rt, NULL, T, &s), MOERT_ERR_NULL_POINTER);

  api->experts_destroy(ex);
  api->scratch_destroy(s);
  api->runtime_destroy(rt);
  free(L);
  unload();
}
END_TEST

int main(void) {
  Suite *suite = suite_create("dlopen_api");
  TCase *tc = tcase_create("table");
  tcase_add_test(tc, table_is_complete);
  tcase_add_test(tc, unknown_major_is_null_with_message);
  tcase_add_test(tc, route_and_forward_through_the_table);
  suite_add_tcase(suite, tc);
  SRunner *sr = srunner_create(suite);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
