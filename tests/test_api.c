/* test_api.c — every entry point with NULL or invalid arguments: the specific status, a
 * message of its own in moert_last_error(), and nothing the caller owns written (*out
 * pointers keep a sentinel, view structs and y buffers compare equal before and after).
 * Plus status strings, versions, thread-local errors, destroy(NULL), backend selection.
 *
 * Before each failing call the last error is primed with a different failure, so the
 * message checked is the one the call itself left (not an old one).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moert_test.h"

#define SENTINEL ((void *)(uintptr_t)0x5e5e5e5e5e50ull)

static char g_primed[512];

/* Leaves a known message in moert_last_error() (from a different failure). */
static void prime(int alt) {
  if (alt) moert_layer_desc_init(NULL);
  else moert_runtime_options_init(NULL);
  snprintf(g_primed, sizeof g_primed, "%s", moert_last_error());
  ck_assert_msg(g_primed[0] != 0, "priming failure left no message");
}

static void check_msg(const char *call) {
  const char *m = moert_last_error();
  ck_assert_msg(m != NULL, "%s: moert_last_error() is NULL", call);
  ck_assert_msg(m[0] != 0, "%s: moert_last_error() is empty", call);
  ck_assert_msg(strcmp(m, g_primed) != 0, "%s: moert_last_error() still holds the previous "
                "message \"%s\"", call, m);
}

#define EXPECT_FAIL_ALT(alt, call, want)              \
  do {                                               \
    prime(alt);                                      \
    moert_status st_ = (call);                       \
    ck_assert_msg(st_ == (want), "%s: got %d (%s), want %d (%s); last error \"%s\"", #call, \
                  (int)st_, moert_status_string(st_), (int)(want),                         \
                  moert_status_string(want), moert_last_error());                          \
    check_msg(#call);                                \
  } while (0)
#define EXPECT_FAIL(call, want) EXPECT_FAIL_ALT(0, call, want)

/* ---- a valid baseline ---- */

enum { E0 = 8, K0 = 2, H0 = 16, I0 = 8, IS0 = 4, T0 = 6 };

static moert_layer_desc base_desc(void) {
  moert_layer_desc d;
  MT_OK(moert_layer_desc_init(&d));
  d.num_experts = E0;
  d.top_k = K0;
  d.hidden = H0;
  d.intermediate = I0;
  d.act_dtype = MOERT_DTYPE_F32;
  d.weight_dtype = MOERT_DTYPE_F32;
  return d;
}

static float g_w[2 * E0 * I0 * H0 + E0 * H0 * I0 + 3 * IS0 * H0 + H0];
static const void *g_ptrs[3][E0];

static moert_experts_desc base_weights(moert_weight_layout layout) {
  moert_experts_desc w;
  memset(&w, 0, sizeof w);
  w.struct_size = sizeof w;
  w.layout = layout;
  w.memory = MOERT_MEMORY_HOST;
  float *p = g_w;
  for (size_t i = 0; i < sizeof g_w / sizeof g_w[0]; i++) g_w[i] = (float)((i % 13) * 0.01 - 0.06);
  w.gate_up = p;
  w.gate = p;
  w.up = p + E0 * I0 * H0;
  w.down = p + 2 * E0 * I0 * H0;
  for (int e = 0; e < E0; e++) {
    g_ptrs[0][e] = p + e * I0 * H0;
    g_ptrs[1][e] = p + (E0 + e) * I0 * H0;
    g_ptrs[2][e] = p + (2 * E0 + e) * I0 * H0;
  }
  w.gate_ptrs = g_ptrs[0];
  w.up_ptrs = g_ptrs[1];
  w.down_ptrs = g_ptrs[2];
  float *sh = p + 3 * E0 * I0 * H0;
  w.shared_gate = sh;
  w.shared_up = sh + IS0 * H0;
  w.shared_down = sh + 2 * IS0 * H0;
  w.shared_expert_gate = sh + 3 * IS0 * H0;
  return w;
}

static float g_logits[T0 * E0 * 2];
static float g_x[T0 * H0];

static moert_route_args base_route(void) {
  for (int i = 0; i < T0 * E0 * 2; i++) g_logits[i] = (float)((i * 7) % 11) - 5.0f;
  moert_route_args a;
  memset(&a, 0, sizeof a);
  a.struct_size = sizeof a;
  a.num_tokens = T0;
  a.logits_dtype = MOERT_DTYPE_F32;
  a.memory = MOERT_MEMORY_HOST;
  a.logits = g_logits;
  return a;
}

static moert_forward_args base_forward(moert_experts *ex, void *y) {
  for (int i = 0; i < T0 * H0; i++) g_x[i] = (float)((i * 5) % 9) * 0.1f - 0.4f;
  moert_forward_args a;
  memset(&a, 0, sizeof a);
  a.struct_size = sizeof a;
  a.experts = ex;
  a.memory = MOERT_MEMORY_HOST;
  a.x = g_x;
  a.y = y;
  return a;
}

/* ---- versions and status strings ---- */

START_TEST(version) {
  ck_assert_uint_eq(moert_version(), MOERT_VERSION_NUMBER);
  ck_assert_uint_eq(MOERT_VERSION_NUMBER,
                    MOERT_VERSION_MAJOR * 10000 + MOERT_VERSION_MINOR * 100 + MOERT_VERSION_PATCH);
  char want[64];
  snprintf(want, sizeof want, "%d.%d.%d", MOERT_VERSION_MAJOR, MOERT_VERSION_MINOR,
           MOERT_VERSION_PATCH);
  const char *v = moert_version_string();
  ck_assert_ptr_nonnull(v);
  ck_assert_str_eq(v, want);
}
END_TEST

/* moert_get_api: the table of this major, NULL (and a message) for any other. */
START_TEST(get_api) {
  const moert_api *api = moert_get_api(MOERT_VERSION_MAJOR);
  ck_assert_ptr_nonnull(api);
  ck_assert_uint_eq(api->struct_size, sizeof *api);
  ck_assert_uint_eq(api->abi_major, MOERT_VERSION_MAJOR);
  ck_assert_ptr_eq(moert_get_api(MOERT_VERSION_MAJOR), api);
  ck_assert_msg(api->version == moert_version && api->route == moert_route &&
                    api->forward == moert_forward && api->scratch_plan == moert_scratch_plan &&
                    api->runtime_create == moert_runtime_create &&
                    api->status_string == moert_status_string,
                "the table's members are not the library's functions");
  ck_assert_msg(MOERT_API_HAS(api, scratch_plan), "MOERT_API_HAS(scratch_plan) is false");
  const uint32_t other[3] = {MOERT_VERSION_MAJOR + 1, 99, UINT32_MAX};
  for (int i = 0; i < 3; i++) {
    prime(0);
    ck_assert_msg(moert_get_api(other[i]) == NULL, "moert_get_api(%u) is not NULL", other[i]);
    check_msg("moert_get_api of another major");
  }
}
END_TEST

START_TEST(status_strings) {
  static const struct {
    moert_status code;
    const char *name;
  } all[] = {
#define MT_STATUS_ROW_(name, value, text) {name, #name},
      MOERT_STATUS_LIST(MT_STATUS_ROW_)
#undef MT_STATUS_ROW_
  };
  const size_t n = sizeof all / sizeof all[0];
  ck_assert_uint_eq(n, MOERT_STATUS_END_);
  for (size_t i = 0; i < n; i++) {
    const char *s = moert_status_string(all[i].code);
    ck_assert_msg(s != NULL && strstr(s, all[i].name) != NULL,
                  "moert_status_string(%d) = \"%s\" does not name %s", all[i].code, s ? s : "(null)",
                  all[i].name);
    for (size_t j = 0; j < i; j++)
      ck_assert_msg(strcmp(s, moert_status_string(all[j].code)) != 0,
                    "codes %d and %d have the same string", all[i].code, all[j].code);
  }
  const moert_status unknown[5] = {MOERT_STATUS_END_, 99, -1, INT32_MAX, INT32_MIN};
  for (int i = 0; i < 5; i++) {
    const char *s = moert_status_string(unknown[i]);
    ck_assert_msg(s != NULL && s[0] != 0, "moert_status_string(%d) is NULL or empty", unknown[i]);
    for (size_t j = 0; j < n; j++)
      ck_assert_msg(strcmp(s, moert_status_string(all[j].code)) != 0,
                    "unknown code %d has the string of %s", unknown[i], all[j].name);
  }
}
END_TEST

/* last error: "" on a fresh thread, thread-local, not cleared by success. */
static void *thread_body(void *arg) {
  int *res = arg;
  const char *m = moert_last_error();
  res[0] = m != NULL && m[0] == 0;
  res[1] = moert_scratch_prepare(NULL) == MOERT_ERR_NULL_POINTER;
  m = moert_last_error();
  res[2] = m != NULL && m[0] != 0;
  return NULL;
}

START_TEST(last_error_thread_local) {
  moert_layer_desc d;
  MT_ASSERT_STATUS(moert_layer_desc_init(NULL), MOERT_ERR_NULL_POINTER);
  char mine[512];
  snprintf(mine, sizeof mine, "%s", moert_last_error());
  ck_assert_msg(mine[0] != 0, "no message for moert_layer_desc_init(NULL)");
  int res[3] = {0, 0, 0};
  pthread_t th;
  ck_assert_int_eq(pthread_create(&th, NULL, thread_body, res), 0);
  ck_assert_int_eq(pthread_join(th, NULL), 0);
  ck_assert_msg(res[0], "moert_last_error() on a new thread is not \"\"");
  ck_assert_msg(res[1] && res[2], "failure on another thread: status ok %d, message ok %d", res[1],
                res[2]);
  ck_assert_msg(strcmp(moert_last_error(), mine) == 0,
                "another thread's failure changed this thread's last error to \"%s\"",
                moert_last_error());
  MT_OK(moert_layer_desc_init(&d)); /* success does not clear it */
  ck_assert_msg(strcmp(moert_last_error(), mine) == 0, "a successful call changed the last error "
                "to \"%s\"", moert_last_error());
}
END_TEST

START_TEST(destroy_null) {
  moert_runtime_destroy(NULL);
  moert_scratch_destroy(NULL);
  moert_experts_destroy(NULL);
  ck_assert_uint_eq(moert_runtime_backend(NULL), 0);
  const char *note = moert_runtime_backend_note(NULL);
  ck_assert_ptr_nonnull(note);
}
END_TEST

/* ---- runtime ---- */

START_TEST(runtime_args) {
  moert_runtime_options o;
  moert_runtime *rt = SENTINEL;
  EXPECT_FAIL_ALT(1, moert_runtime_options_init(NULL), MOERT_ERR_NULL_POINTER);
  MT_OK(moert_runtime_options_init(&o));
  ck_assert_uint_eq(o.struct_size, sizeof o);
  ck_assert_uint_eq(o.backend, MOERT_BACKEND_AUTO);
  ck_assert_int_eq(o.device_ordinal, 0);
  ck_assert_uint_eq(o.num_threads, 0);
  ck_assert_ptr_null(o.cu_context);
  ck_assert_ptr_null(o.cache_dir);

  EXPECT_FAIL(moert_runtime_create(&o, NULL), MOERT_ERR_NULL_POINTER);
  const uint32_t sizes[5] = {0, 4, sizeof o - 1, sizeof o + 1, sizeof o + 64};
  for (int i = 0; i < 5; i++) {
    MT_OK(moert_runtime_options_init(&o));
    o.struct_size = sizes[i];
    EXPECT_FAIL(moert_runtime_create(&o, &rt), MOERT_ERR_STRUCT_SIZE);
    ck_assert_ptr_eq(rt, SENTINEL);
  }
  MT_OK(moert_runtime_options_init(&o));
  o.backend = 99;
  EXPECT_FAIL(moert_runtime_create(&o, &rt), MOERT_ERR_INVALID_ARGUMENT);
  ck_assert_ptr_eq(rt, SENTINEL);

  /* NULL options: the defaults (AUTO) */
  MT_OK(moert_runtime_create(NULL, &rt));
  ck_assert_ptr_ne(rt, SENTINEL);
  moert_backend auto_backend = moert_runtime_backend(rt);
  ck_assert_msg(auto_backend == MOERT_BACKEND_CPU || auto_backend == MOERT_BACKEND_CUDA,
                "AUTO resolved to backend %u", auto_backend);
  char note[512];
  ck_assert_msg(moert_runtime_backend_note(rt) && moert_runtime_backend_note(rt)[0],
                "AUTO runtime has no backend note");
  snprintf(note, sizeof note, "%s", moert_runtime_backend_note(rt));
  fprintf(stderr, "AUTO backend: %u, note: %s\n", auto_backend, note);
  moert_runtime_destroy(rt);

  /* CPU */
  rt = SENTINEL;
  MT_OK(moert_runtime_options_init(&o));
  o.backend = MOERT_BACKEND_CPU;
  o.num_threads = 3;
  MT_OK(moert_runtime_create(&o, &rt));
  ck_assert_uint_eq(moert_runtime_backend(rt), MOERT_BACKEND_CPU);
  ck_assert_msg(moert_runtime_backend_note(rt)[0], "CPU runtime has no note");
  moert_runtime_destroy(rt);

  /* CUDA: works where AUTO found a GPU, else MOERT_ERR_BACKEND_UNAVAILABLE */
  rt = SENTINEL;
  MT_OK(moert_runtime_options_init(&o));
  o.backend = MOERT_BACKEND_CUDA;
  if (auto_backend == MOERT_BACKEND_CUDA) {
    MT_OK(moert_runtime_create(&o, &rt));
    ck_assert_uint_eq(moert_runtime_backend(rt), MOERT_BACKEND_CUDA);
    moert_runtime_destroy(rt);
  } else {
    EXPECT_FAIL(moert_runtime_create(&o, &rt), MOERT_ERR_BACKEND_UNAVAILABLE);
    ck_assert_ptr_eq(rt, SENTINEL);
    ck_assert_msg(strstr(note, "CPU") != NULL || strstr(note, "cpu") != NULL,
                  "AUTO fell back to the CPU but its note does not say so: \"%s\"", note);
  }
}
END_TEST

/* ---- layer desc and scratch ---- */

START_TEST(layer_desc_init) {
  EXPECT_FAIL_ALT(0, moert_layer_desc_init(NULL), MOERT_ERR_NULL_POINTER);
  moert_layer_desc d;
  mt_poison_bytes(&d, sizeof d);
  MT_OK(moert_layer_desc_init(&d));
  ck_assert_uint_eq(d.struct_size, sizeof d);
  ck_assert_uint_eq(d.renormalize, 1);
  ck_assert_uint_eq(d.router, MOERT_ROUTER_SOFTMAX_TOPK);
  ck_assert_uint_eq(d.act_dtype, MOERT_DTYPE_BF16);
  ck_assert_uint_eq(d.weight_dtype, MOERT_DTYPE_BF16);
  ck_assert_msg(d.routed_scaling_factor == 1.0f, "scale %g", (double)d.routed_scaling_factor);
  ck_assert_uint_eq(d.num_experts, 0);
  ck_assert_uint_eq(d.top_k, 0);
  ck_assert_uint_eq(d.hidden, 0);
  ck_assert_uint_eq(d.shared_intermediate, 0);
  ck_assert_uint_eq(d.n_group, 0);
  ck_assert_uint_eq(d.plan_block_rows, 0);
}
END_TEST

/* Each bad desc, with the status it must give (at scratch and experts creation). */
static int bad_desc(int i, moert_layer_desc *d, moert_status *want, const char **what) {
  *d = base_desc();
  *want = MOERT_ERR_INVALID_ARGUMENT;
  switch (i) {
    case 0: *what = "struct_size 0"; d->struct_size = 0; *want = MOERT_ERR_STRUCT_SIZE; break;
    case 1: *what = "struct_size 4"; d->struct_size = 4; *want = MOERT_ERR_STRUCT_SIZE; break;
    case 2: *what = "struct_size - 1"; d->struct_size = sizeof *d - 1; *want = MOERT_ERR_STRUCT_SIZE; break;
    case 3: *what = "struct_size + 8"; d->struct_size = sizeof *d + 8; *want = MOERT_ERR_STRUCT_SIZE; break;
    case 4: *what = "E 0"; d->num_experts = 0; break;
    case 5: *what = "E 513"; d->num_experts = 513; break;
    case 6: *what = "k 0"; d->top_k = 0; break;
    case 7: *what = "k 17"; d->num_experts = 64; d->top_k = 17; break;
    case 8: *what = "k > E"; d->num_experts = 4; d->top_k = 5; break;
    case 9: *what = "H 0"; d->hidden = 0; break;
    case 10: *what = "I 0"; d->intermediate = 0; break;
    case 11: *what = "act dtype 99"; d->act_dtype = 99; break;
    case 12: *what = "weight dtype 99"; d->weight_dtype = 99; break;
    case 13: *what = "act dtype 0"; d->act_dtype = 0; break;
    case 14: *what = "router 99"; d->router = 99; break;
    case 15: *what = "router 0"; d->router = 0; break;
    case 16: *what = "shared_gate 99"; d->shared_intermediate = IS0; d->shared_gate = 99; break;
    case 17:
      *what = "n_group 3 does not divide E 8";
      d->router = MOERT_ROUTER_SIGMOID_GROUP_TOPK; d->n_group = 3; d->topk_group = 1; break;
    case 18:
      *what = "topk_group 5 > n_group 4";
      d->router = MOERT_ROUTER_SIGMOID_GROUP_TOPK; d->n_group = 4; d->topk_group = 5; break;
    case 19:
      *what = "topk_group 0 with groups";
      d->router = MOERT_ROUTER_SIGMOID_GROUP_TOPK; d->n_group = 4; d->topk_group = 0; break;
    case 20:
      *what = "k 5 > topk_group 2 * E 8 / n_group 4";
      d->router = MOERT_ROUTER_SIGMOID_GROUP_TOPK; d->n_group = 4; d->topk_group = 2;
      d->top_k = 5; break;
    case 21: *what = "renormalize 2"; d->renormalize = 2; break;
    case 22: *what = "routed_scaling_factor NaN"; d->routed_scaling_factor = __builtin_nanf(""); break;
    case 23: *what = "routed_scaling_factor -1"; d->routed_scaling_factor = -1.0f; break;
    case 24: *what = "E 1000"; d->num_experts = 1000; break;
    default: return 0;
  }
  return 1;
}

START_TEST(scratch_args) {
  moert_runtime *rt = mt_cpu_runtime(1);
  moert_layer_desc d = base_desc();
  moert_scratch *s = SENTINEL;
  EXPECT_FAIL(moert_scratch_create(NULL, &d, 4, &s), MOERT_ERR_NULL_POINTER);
  EXPECT_FAIL(moert_scratch_create(rt, NULL, 4, &s), MOERT_ERR_NULL_POINTER);
  EXPECT_FAIL(moert_scratch_create(rt, &d, 4, NULL), MOERT_ERR_NULL_POINTER);
  EXPECT_FAIL(moert_scratch_create(rt, &d, 0, &s), MOERT_ERR_INVALID_ARGUMENT);
  ck_assert_ptr_eq(s, SENTINEL);
  moert_status want;
  const char *what;
  for (int i = 0; bad_desc(i, &d, &want, &what); i++) {
    prime(0);
    moert_status st = moert_scratch_create(rt, &d, 4, &s);
    ck_assert_msg(st == want, "moert_scratch_create with %s: got %d (%s), want %d (%s); \"%s\"",
                  what, st, moert_status_string(st), want, moert_status_string(want),
                  moert_last_error());
    check_msg(what);
    ck_assert_msg(s == SENTINEL, "moert_scratch_create with %s wrote *out", what);
  }
  /* valid: the edges that are allowed */
  d = base_desc();
  d.num_experts = 512;
  d.top_k = 16;
  MT_OK(moert_scratch_create(rt, &d, 1, &s));
  moert_scratch_destroy(s);
  d = base_desc();
  d.router = MOERT_ROUTER_SIGMOID_GROUP_TOPK;
  d.n_group = 4;
  d.topk_group = 1;
  d.top_k = 2; /* = topk_group * E / n_group */
  MT_OK(moert_scratch_create(rt, &d, 1, &s));
  /* prepare and memory */
  EXPECT_FAIL(moert_scratch_prepare(NULL), MOERT_ERR_NULL_POINTER);
  MT_OK(moert_scratch_prepare(s));
  uint64_t hb = 0x5e5e, db = 0x5e5e;
  EXPECT_FAIL(moert_scratch_memory(NULL, &hb, &db), MOERT_ERR_NULL_POINTER);
  ck_assert_msg(hb == 0x5e5e && db == 0x5e5e, "failed moert_scratch_memory wrote its outputs");
  MT_OK(moert_scratch_memory(s, &hb, &db));
  ck_assert_msg(hb > 0, "host bytes %llu", (unsigned long long)hb);
  ck_assert_msg(db == 0, "device bytes %llu on the CPU backend", (unsigned long long)db);
  MT_OK(moert_scratch_memory(s, NULL, NULL));
  moert_scratch_destroy(s);
  moert_runtime_destroy(rt);
}
END_TEST

/* ---- experts ---- */

START_TEST(experts_args) {
  moert_runtime *rt = mt_cpu_runtime(1);
  moert_layer_desc d = base_desc();
  moert_experts_desc w = base_weights(MOERT_LAYOUT_STACKED);
  moert_experts *ex = SENTINEL;
  EXPECT_FAIL(moert_experts_create(NULL, &d, &w, &ex), MOERT_ERR_NULL_POINTER);
  EXPECT_FAIL(moert_experts_create(rt, NULL, &w, &ex), MOERT_ERR_NULL_POINTER);
  EXPECT_FAIL(moert_experts_create(rt, &d, NULL, &ex), MOERT_ERR_NULL_POINTER);
  EXPECT_FAIL(moert_experts_create(rt, &d, &w, NULL), MOERT_ERR_NULL_POINTER);
  ck_assert_ptr_eq(ex, SENTINEL);
  moert_status want;
  const char *what;
  for (int i = 0; bad_desc(i, &d, &want, &what); i++) {
    prime(0);
    moert_status st = moert_experts_create(rt, &d, &w, &ex);
    ck_assert_msg(st == want, "moert_experts_create with %s: got %d (%s), want %d (%s)", what,
                  st, moert_status_string(st), want, moert_status_string(want));
    check_msg(what);
    ck_assert_ptr_eq(ex, SENTINEL);
  }
  d = base_desc();
  const uint32_t sizes[4] = {0, 4, sizeof w - 1, sizeof w + 8};
  for (int i = 0; i < 4; i++) {
    w = base_weights(MOERT_LAYOUT_STACKED);
    w.struct_size = sizes[i];
    EXPECT_FAIL(moert_experts_create(rt, &d, &w, &ex), MOERT_ERR_STRUCT_SIZE);
  }
  w = base_weights(99);
  EXPECT_FAIL(moert_experts_create(rt, &d, &w, &ex), MOERT_ERR_INVALID_ARGUMENT);
  w = base_weights(0);
  EXPECT_FAIL(moert_experts_create(rt, &d, &w, &ex), MOERT_ERR_INVALID_ARGUMENT);
  w = base_weights(MOERT_LAYOUT_STACKED);
  w.memory = 99;
  EXPECT_FAIL(moert_experts_create(rt, &d, &w, &ex), MOERT_ERR_INVALID_ARGUMENT);
  w.memory = MOERT_MEMORY_DEVICE; /* device pointers need the CUDA backend */
  EXPECT_FAIL(moert_experts_create(rt, &d, &w, &ex), MOERT_ERR_UNSUPPORTED);
  /* a pointer the layout needs is NULL */
  for (int i = 0; i < 9; i++) {
    moert_weight_layout lay = i < 3 ? MOERT_LAYOUT_STACKED
                              : i < 5 ? MOERT_LAYOUT_STACKED_GATE_UP : MOERT_LAYOUT_PER_EXPERT;
    w = base_weights(lay);
    const void *saved[3] = {g_ptrs[0][3], g_ptrs[1][5], g_ptrs[2][7]};
    switch (i) {
      case 0: w.gate = NULL; break;
      case 1: w.up = NULL; break;
      case 2: w.down = NULL; break;
      case 3: w.gate_up = NULL; break;
      case 4: w.down = NULL; break;
      case 5: w.gate_ptrs = NULL; break;
      case 6: g_ptrs[0][3] = NULL; break;
      case 7: g_ptrs[1][5] = NULL; break;
      case 8: g_ptrs[2][7] = NULL; break;
    }
    prime(0);
    moert_status st = moert_experts_create(rt, &d, &w, &ex);
    ck_assert_msg(st == MOERT_ERR_NULL_POINTER, "experts layout %u, NULL pointer case %d: got %d (%s)",
                  lay, i, st, moert_status_string(st));
    check_msg("moert_experts_create with a NULL weight pointer");
    ck_assert_ptr_eq(ex, SENTINEL);
    g_ptrs[0][3] = saved[0];
    g_ptrs[1][5] = saved[1];
    g_ptrs[2][7] = saved[2];
  }
  /* shared expert pointers */
  d.shared_intermediate = IS0;
  d.shared_gate = MOERT_SHARED_GATE_SIGMOID;
  for (int i = 0; i < 4; i++) {
    w = base_weights(MOERT_LAYOUT_STACKED_GATE_UP);
    if (i == 0) w.shared_gate = NULL;
    if (i == 1) w.shared_up = NULL;
    if (i == 2) w.shared_down = NULL;
    if (i == 3) w.shared_expert_gate = NULL;
    EXPECT_FAIL(moert_experts_create(rt, &d, &w, &ex), MOERT_ERR_NULL_POINTER);
    ck_assert_ptr_eq(ex, SENTINEL);
  }
  /* every layout works with everything given */
  for (moert_weight_layout l = 1; l <= 3; l++) {
    w = base_weights(l);
    MT_OK(moert_experts_create(rt, &d, &w, &ex));
    ck_assert_ptr_ne(ex, SENTINEL);
    moert_experts_destroy(ex);
    ex = SENTINEL;
  }
  /* the per-expert pointer tables are copied: changing them afterwards changes nothing */
  moert_runtime_destroy(rt);
}
END_TEST

/* ---- route, set_routing, views ---- */

typedef struct fixture3 {
  moert_runtime *rt;
  moert_scratch *s;
  moert_experts *ex;
  moert_layer_desc d;
} fixture3;

static void f3_init(fixture3 *f) {
  f->rt = mt_cpu_runtime(1);
  f->d = base_desc();
  MT_OK(moert_scratch_create(f->rt, &f->d, T0, &f->s));
  moert_experts_desc w = base_weights(MOERT_LAYOUT_STACKED);
  MT_OK(moert_experts_create(f->rt, &f->d, &w, &f->ex));
}
static void f3_fini(fixture3 *f) {
  moert_experts_destroy(f->ex);
  moert_scratch_destroy(f->s);
  moert_runtime_destroy(f->rt);
}

static void expect_views_not_routed(moert_scratch *s) {
  moert_routing_view v;
  mt_poison_bytes(&v, sizeof v);
  v.struct_size = sizeof v;
  moert_routing_view v0 = v;
  EXPECT_FAIL(moert_scratch_routing(s, &v), MOERT_ERR_NOT_ROUTED);
  ck_assert_msg(memcmp(&v, &v0, sizeof v) == 0, "failed moert_scratch_routing wrote the view");
  moert_plan_view p;
  mt_poison_bytes(&p, sizeof p);
  p.struct_size = sizeof p;
  moert_plan_view p0 = p;
  EXPECT_FAIL(moert_scratch_plan(s, &p), MOERT_ERR_NOT_ROUTED);
  ck_assert_msg(memcmp(&p, &p0, sizeof p) == 0, "failed moert_scratch_plan wrote the view");
}

START_TEST(route_args) {
  fixture3 f;
  f3_init(&f);
  expect_views_not_routed(f.s);
  moert_route_args a = base_route();
  EXPECT_FAIL(moert_route(NULL, &a, NULL), MOERT_ERR_NULL_POINTER);
  EXPECT_FAIL(moert_route(f.s, NULL, NULL), MOERT_ERR_NULL_POINTER);
  const uint32_t sizes[4] = {0, 4, sizeof a - 1, sizeof a + 8};
  for (int i = 0; i < 4; i++) {
    a = base_route();
    a.struct_size = sizes[i];
    EXPECT_FAIL(moert_route(f.s, &a, NULL), MOERT_ERR_STRUCT_SIZE);
  }
  a = base_route();
  a.num_tokens = T0 + 1;
  EXPECT_FAIL(moert_route(f.s, &a, NULL), MOERT_ERR_TOO_MANY_TOKENS);
  a = base_route();
  a.logits_dtype = 99;
  EXPECT_FAIL(moert_route(f.s, &a, NULL), MOERT_ERR_INVALID_ARGUMENT);
  a = base_route();
  a.logits_dtype = 0;
  EXPECT_FAIL(moert_route(f.s, &a, NULL), MOERT_ERR_INVALID_ARGUMENT);
  a = base_route();
  a.memory = 99;
  EXPECT_FAIL(moert_route(f.s, &a, NULL), MOERT_ERR_INVALID_ARGUMENT);
  a = base_route();
  a.logits = NULL;
  EXPECT_FAIL(moert_route(f.s, &a, NULL), MOERT_ERR_NULL_POINTER);
  a = base_route();
  a.logits_row_stride = E0 - 1;
  EXPECT_FAIL(moert_route(f.s, &a, NULL), MOERT_ERR_INVALID_ARGUMENT);
  a = base_route();
  a.mode = 99;
  EXPECT_FAIL(moert_route(f.s, &a, NULL), MOERT_ERR_INVALID_ARGUMENT);
  if (moert_runtime_backend(f.rt) == MOERT_BACKEND_CPU) {
    a = base_route();
    a.memory = MOERT_MEMORY_DEVICE;
    EXPECT_FAIL(moert_route(f.s, &a, NULL), MOERT_ERR_UNSUPPORTED);
    a = base_route();
    a.mode = MOERT_ROUTING_DEVICE;
    EXPECT_FAIL(moert_route(f.s, &a, NULL), MOERT_ERR_UNSUPPORTED);
  }
  expect_views_not_routed(f.s);
  /* forward before any routing */
  float y[T0 * H0];
  mt_poison(y, MOERT_DTYPE_F32, T0 * H0);
  float y0[T0 * H0];
  memcpy(y0, y, sizeof y);
  moert_forward_args fa = base_forward(f.ex, y);
  EXPECT_FAIL(moert_forward(f.s, &fa, NULL), MOERT_ERR_NOT_ROUTED);
  ck_assert_msg(memcmp(y, y0, sizeof y) == 0, "forward before route wrote y");
  /* moert_moe with a bad route: y untouched */
  a = base_route();
  a.num_tokens = T0 + 1;
  EXPECT_FAIL(moert_moe(f.s, &a, &fa, NULL), MOERT_ERR_TOO_MANY_TOKENS);
  EXPECT_FAIL(moert_moe(f.s, NULL, &fa, NULL), MOERT_ERR_NULL_POINTER);
  a = base_route();
  EXPECT_FAIL(moert_moe(f.s, &a, NULL, NULL), MOERT_ERR_NULL_POINTER);
  EXPECT_FAIL(moert_moe(NULL, &a, &fa, NULL), MOERT_ERR_NULL_POINTER);
  ck_assert_msg(memcmp(y, y0, sizeof y) == 0, "failed moert_moe wrote y");
  /* a good route; then a NaN one clears it */
  MT_OK(moert_route(f.s, &a, NULL));
  g_logits[3 * E0 + 2] = __builtin_nanf("");
  EXPECT_FAIL(moert_route(f.s, &a, NULL), MOERT_ERR_NAN_LOGIT);
  expect_views_not_routed(f.s);
  EXPECT_FAIL(moert_forward(f.s, &fa, NULL), MOERT_ERR_NOT_ROUTED);
  ck_assert_msg(memcmp(y, y0, sizeof y) == 0, "forward after a failed route wrote y");
  /* sigmoid router: a non-finite correction bias */
  moert_layer_desc d = base_desc();
  d.router = MOERT_ROUTER_SIGMOID_GROUP_TOPK;
  moert_scratch *s2 = NULL;
  MT_OK(moert_scratch_create(f.rt, &d, T0, &s2));
  float bias[E0] = {0};
  bias[4] = __builtin_inff();
  a = base_route();
  a.correction_bias = bias;
  EXPECT_FAIL(moert_route(s2, &a, NULL), MOERT_ERR_INVALID_ARGUMENT);
  bias[4] = __builtin_nanf("");
  EXPECT_FAIL(moert_route(s2, &a, NULL), MOERT_ERR_INVALID_ARGUMENT);
  bias[4] = 0.0f;
  MT_OK(moert_route(s2, &a, NULL));
  moert_scratch_destroy(s2);
  f3_fini(&f);
}
END_TEST

START_TEST(set_routing_args) {
  fixture3 f;
  f3_init(&f);
  int32_t ids[T0 * K0];
  float w[T0 * K0];
  for (int i = 0; i < T0 * K0; i++) {
    ids[i] = (i % K0 == 0) ? (i / K0) % E0 : (i / K0 + 3) % E0;
    w[i] = 0.5f;
  }
  EXPECT_FAIL(moert_set_routing(NULL, T0, ids, w, NULL), MOERT_ERR_NULL_POINTER);
  EXPECT_FAIL(moert_set_routing(f.s, T0, NULL, w, NULL), MOERT_ERR_NULL_POINTER);
  EXPECT_FAIL(moert_set_routing(f.s, T0, ids, NULL, NULL), MOERT_ERR_NULL_POINTER);
  EXPECT_FAIL(moert_set_routing(f.s, T0 + 1, ids, w, NULL), MOERT_ERR_TOO_MANY_TOKENS);
  int32_t keep = ids[5];
  ids[5] = E0;
  EXPECT_FAIL(moert_set_routing(f.s, T0, ids, w, NULL), MOERT_ERR_EXPERT_ID);
  ids[5] = -1;
  EXPECT_FAIL(moert_set_routing(f.s, T0, ids, w, NULL), MOERT_ERR_EXPERT_ID);
  ids[5] = ids[4]; /* slot 1 of token 2 repeats slot 0 */
  EXPECT_FAIL(moert_set_routing(f.s, T0, ids, w, NULL), MOERT_ERR_EXPERT_ID);
  ids[5] = keep;
  expect_views_not_routed(f.s);
  w[3] = __builtin_nanf("");
  prime(0);
  ck_assert_msg(moert_set_routing(f.s, T0, ids, w, NULL) != MOERT_OK, "a NaN weight accepted");
  check_msg("moert_set_routing with a NaN weight");
  w[3] = 0.5f;
  MT_OK(moert_set_routing(f.s, T0, ids, w, NULL));
  f3_fini(&f);
}
END_TEST

START_TEST(view_args) {
  fixture3 f;
  f3_init(&f);
  moert_route_args a = base_route();
  MT_OK(moert_route(f.s, &a, NULL));
  moert_routing_view v;
  moert_plan_view p;
  EXPECT_FAIL(moert_scratch_routing(NULL, &v), MOERT_ERR_NULL_POINTER);
  EXPECT_FAIL(moert_scratch_routing(f.s, NULL), MOERT_ERR_NULL_POINTER);
  EXPECT_FAIL(moert_scratch_plan(NULL, &p), MOERT_ERR_NULL_POINTER);
  EXPECT_FAIL(moert_scratch_plan(f.s, NULL), MOERT_ERR_NULL_POINTER);
  const uint32_t vs[4] = {0, 4, sizeof v - 1, sizeof v + 8};
  const uint32_t ps[4] = {0, 4, sizeof p - 1, sizeof p + 8};
  for (int i = 0; i < 4; i++) {
    mt_poison_bytes(&v, sizeof v);
    v.struct_size = vs[i];
    moert_routing_view v0 = v;
    EXPECT_FAIL(moert_scratch_routing(f.s, &v), MOERT_ERR_STRUCT_SIZE);
    ck_assert_msg(memcmp(&v, &v0, sizeof v) == 0, "failed routing view written (size %u)", vs[i]);
    mt_poison_bytes(&p, sizeof p);
    p.struct_size = ps[i];
    moert_plan_view p0 = p;
    EXPECT_FAIL(moert_scratch_plan(f.s, &p), MOERT_ERR_STRUCT_SIZE);
    ck_assert_msg(memcmp(&p, &p0, sizeof p) == 0, "failed plan view written (size %u)", ps[i]);
  }
  f3_fini(&f);
}
END_TEST

/* ---- forward ---- */

START_TEST(forward_args) {
  fixture3 f;
  f3_init(&f);
  moert_route_args ra = base_route();
  MT_OK(moert_route(f.s, &ra, NULL));
  float y[T0 * H0 + 64], y0[T0 * H0 + 64];
  mt_poison(y, MOERT_DTYPE_F32, T0 * H0 + 64);
  memcpy(y0, y, sizeof y);
#define Y_UNCHANGED(what) ck_assert_msg(memcmp(y, y0, sizeof y) == 0, "%s wrote y", what)
  moert_forward_args a = base_forward(f.ex, y);
  EXPECT_FAIL(moert_forward(NULL, &a, NULL), MOERT_ERR_NULL_POINTER);
  EXPECT_FAIL(moert_forward(f.s, NULL, NULL), MOERT_ERR_NULL_POINTER);
  const uint32_t sizes[4] = {0, 4, sizeof a - 1, sizeof a + 8};
  for (int i = 0; i < 4; i++) {
    a = base_forward(f.ex, y);
    a.struct_size = sizes[i];
    EXPECT_FAIL(moert_forward(f.s, &a, NULL), MOERT_ERR_STRUCT_SIZE);
  }
  a = base_forward(NULL, y);
  EXPECT_FAIL(moert_forward(f.s, &a, NULL), MOERT_ERR_NULL_POINTER);
  a = base_forward(f.ex, y);
  a.x = NULL;
  EXPECT_FAIL(moert_forward(f.s, &a, NULL), MOERT_ERR_NULL_POINTER);
  a = base_forward(f.ex, NULL);
  EXPECT_FAIL(moert_forward(f.s, &a, NULL), MOERT_ERR_NULL_POINTER);
  a = base_forward(f.ex, y);
  a.memory = 99;
  EXPECT_FAIL(moert_forward(f.s, &a, NULL), MOERT_ERR_INVALID_ARGUMENT);
  a = base_forward(f.ex, y);
  a.memory = MOERT_MEMORY_DEVICE;
  EXPECT_FAIL(moert_forward(f.s, &a, NULL), MOERT_ERR_UNSUPPORTED);
  a = base_forward(f.ex, y);
  a.accumulate = 2;
  EXPECT_FAIL(moert_forward(f.s, &a, NULL), MOERT_ERR_INVALID_ARGUMENT);
  a = base_forward(f.ex, y);
  a.x_row_stride = H0 - 1;
  EXPECT_FAIL(moert_forward(f.s, &a, NULL), MOERT_ERR_INVALID_ARGUMENT);
  a = base_forward(f.ex, y);
  a.y_row_stride = H0 - 1;
  EXPECT_FAIL(moert_forward(f.s, &a, NULL), MOERT_ERR_INVALID_ARGUMENT);
  /* y overlapping x */
  float xy[T0 * H0 * 2];
  memcpy(xy, g_x, sizeof g_x);
  a = base_forward(f.ex, xy + H0);
  a.x = xy;
  EXPECT_FAIL(moert_forward(f.s, &a, NULL), MOERT_ERR_INVALID_ARGUMENT);
  ck_assert_msg(memcmp(xy, g_x, sizeof g_x) == 0, "forward with overlapping x/y wrote");
  a = base_forward(f.ex, g_x);
  EXPECT_FAIL(moert_forward(f.s, &a, NULL), MOERT_ERR_INVALID_ARGUMENT);
  Y_UNCHANGED("the failed forwards");

  /* experts of another shape */
  for (int i = 0; i < 5; i++) {
    moert_layer_desc d = base_desc();
    if (i == 0) d.intermediate = I0 * 2;
    if (i == 1) d.hidden = H0 * 2;
    if (i == 2) d.num_experts = E0 * 2;
    if (i == 3) d.weight_dtype = MOERT_DTYPE_BF16;
    if (i == 4) {
      d.shared_intermediate = IS0;
      d.shared_gate = MOERT_SHARED_GATE_SIGMOID;
    }
    static float big[4 * (3 * E0 * I0 * H0 + 4 * IS0 * H0)];
    const void *ptrs[3][2 * E0];
    for (int e = 0; e < 2 * E0; e++) ptrs[0][e] = ptrs[1][e] = ptrs[2][e] = big;
    moert_experts_desc w;
    memset(&w, 0, sizeof w);
    w.struct_size = sizeof w;
    w.layout = MOERT_LAYOUT_PER_EXPERT;
    w.memory = MOERT_MEMORY_HOST;
    w.gate_ptrs = ptrs[0];
    w.up_ptrs = ptrs[1];
    w.down_ptrs = ptrs[2];
    w.shared_gate = w.shared_up = w.shared_down = w.shared_expert_gate = big;
    moert_experts *other = NULL;
    MT_OK(moert_experts_create(f.rt, &d, &w, &other));
    a = base_forward(other, y);
    prime(0);
    moert_status st = moert_forward(f.s, &a, NULL);
    ck_assert_msg(st == MOERT_ERR_SHAPE_MISMATCH, "experts of another shape (case %d): got %d (%s)",
                  i, st, moert_status_string(st));
    check_msg("forward with experts of another shape");
    moert_experts_destroy(other);
  }
  Y_UNCHANGED("forward with experts of another shape");

  /* scratch and experts of different runtimes */
  moert_runtime *rt2 = mt_cpu_runtime(1);
  moert_experts_desc w = base_weights(MOERT_LAYOUT_STACKED);
  moert_experts *ex2 = NULL;
  MT_OK(moert_experts_create(rt2, &f.d, &w, &ex2));
  a = base_forward(ex2, y);
  EXPECT_FAIL(moert_forward(f.s, &a, NULL), MOERT_ERR_WRONG_RUNTIME);
  EXPECT_FAIL(moert_moe(f.s, &ra, &a, NULL), MOERT_ERR_WRONG_RUNTIME);
  Y_UNCHANGED("forward with experts of another runtime");
  moert_experts_destroy(ex2);
  moert_runtime_destroy(rt2);

  /* and the good call writes y */
  a = base_forward(f.ex, y);
  MT_OK(moert_forward(f.s, &a, NULL));
  for (int i = 0; i < T0 * H0; i++)
    ck_assert_msg(!mt_is_poison(y, MOERT_DTYPE_F32, i), "y[%d] not written", i);
  for (int i = T0 * H0; i < T0 * H0 + 64; i++)
    ck_assert_msg(mt_is_poison(y, MOERT_DTYPE_F32, i), "y[%d] past the end written", i);
#undef Y_UNCHANGED
  f3_fini(&f);
}
END_TEST

int main(void) {
  Suite *su = suite_create("api");
  TCase *tc = tcase_create("api");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, version);
  tcase_add_test(tc, get_api);
  tcase_add_test(tc, status_strings);
  tcase_add_test(tc, last_error_thread_local);
  tcase_add_test(tc, destroy_null);
  tcase_add_test(tc, runtime_args);
  tcase_add_test(tc, layer_desc_init);
  tcase_add_test(tc, scratch_args);
  tcase_add_test(tc, experts_args);
  tcase_add_test(tc, route_args);
  tcase_add_test(tc, set_routing_args);
  tcase_add_test(tc, view_args);
  tcase_add_test(tc, forward_args);
  suite_add_tcase(su, tc);
  return mt_run_suite(su);
}
