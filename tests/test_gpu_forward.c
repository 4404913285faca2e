/* test_gpu_forward.c — the CUDA backend on a GPU, against the CPU backend and itself:
 *  - route bits: device route = host route (ids exact, weights memcmp) and the device plan =
 *    the host plan, for every router kind, logits dtype, ties and infinities;
 *  - forward: bf16 and f16, both router kinds, Qwen3-30B-A3B and Mixtral-8x7B shapes,
 *    T in {1, 7, 32, 129, 1000, 4096}, outputs poisoned before each run; device routing =
 *    host routing (same bits); two runs give the same bits; GPU vs CPU on a subset of the
 *    tokens (routing is per token, so rows of a T-token run equal a run on those rows) with
 *    relative L2 error < 1e-2;
 *  - the shared expert with its sigmoid gate, and accumulate (y += moe(x));
 *  - a CUDA graph capturing route + forward, replayed on new inputs (the decode path, the
 *    split-K decode kernel at T=1, and the prefill GEMMs forced with MOERT_CUDA_PREFILL=1);
 *  - the split-K decode kernel (both projections in one launch): taken at T=1 where due, and
 *    forced at every T in the quick case "splitk" (five passes of 8 rows at T=129), which
 *    also runs the two decode kernels at every T (on sm_90 the prefill GEMMs take T > 1);
 *  - the expert path each forward took: the prefill GEMMs (runtime/cuda/prefill.c) for bf16
 *    and f16 where rows per expert > 8 (T >= 129 here), or at every T when forced (the quick case "prefill", small shapes with partial tiles);
 *  - the disk cache: a second process loads every kernel without compiling; cold and warm
 *    time to first forward are printed.
 * With no GPU it prints why and exits 0 (skip).  Links moert_static for the private hooks. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define GPU_TEST_SEED 0x1234567887654321ull
#include "support/gpu_test.h"
#include "cuda/jit.h"
#include "cuda/prefill.h"
#include "internal.h"

moert_status (*volatile moert_test_keep_open)(moert_runtime *, const moert_runtime_options *) =
    moert_cuda_backend_open;

static int cc_major, cc_minor; /* the GPU's compute capability (which expert path is due) */
static int smem_optin;         /* the split-K decode kernel needs 65 KB of shared memory */
static int smem_per_sm, sm_count;
#define SPLITK_SMEM (65 * 1024)
static moert_runtime *gpu_rt, *cpu_rt;

/* ---- random data ---- */

static uint16_t to_half(moert_dtype dt, float f) {
  return dt == MOERT_DTYPE_BF16 ? moert_f32_to_bf16(f) : moert_f32_to_f16(f);
}
/* element i of an array of dtype dt, as float */
static float from_act(moert_dtype dt, const void *p, size_t i) { return moert_load_f32(p, dt, i); }
static void fill_act(moert_dtype dt, void *p, size_t n, float a) {
  if (dt == MOERT_DTYPE_F32)
    for (size_t i = 0; i < n; i++) ((float *)p)[i] = uniform(a);
  else
    for (size_t i = 0; i < n; i++) ((uint16_t *)p)[i] = to_half(dt, uniform(a));
}
#define ES(dt) moert_dtype_size(dt)

/* Big weight tensors are filled from a pool of random values in 1M-element windows at
 * random offsets: every expert differs, at a fraction of the cost of drawing each value. */
#define POOL (1u << 24)
#define WINDOW (1u << 20)
static void fill_weights(moert_dtype dt, void *p, size_t n, float a) {
  static unsigned char *pool[6];
  static float pool_a[6];
  const size_t es = ES(dt);
  int slot = (int)dt * 2 - 2 + (a < 0.03f ? 1 : 0);
  if (!pool[slot] || pool_a[slot] != a) {
    free(pool[slot]);
    pool[slot] = malloc((size_t)POOL * es);
    ck_assert_ptr_nonnull(pool[slot]);
    fill_act(dt, pool[slot], POOL, a);
    pool_a[slot] = a;
  }
  for (size_t i = 0; i < n; i += WINDOW) {
    size_t len = n - i < WINDOW ? n - i : WINDOW;
    size_t off = (size_t)(rnd() % (POOL - WINDOW));
    memcpy((unsigned char *)p + i * es, pool[slot] + off * es, len * es);
  }
}

static void poison(CUdeviceptr y, size_t bytes) {
  CU(cu->cuMemsetD32Async(y, 0xffffffffu, bytes / 4, NULL)); /* all ones: NaN in every dtype */
  CU(cu->cuStreamSynchronize(NULL));
}

/* ---- a layer's weights, on host (CPU experts, stacked) and device (GPU, per expert) ---- */
typedef struct model {
  const char *name;
  uint32_t E, k, H, I, Is;
} model;

/* Whether the split-K decode kernel is due for a decoding step of T tokens: a row per expert
 * and its work items (32 rows of I, touched expert) at most half of the CTAs (64064 bytes of
 * shared memory + 1 KB reserved) the GPU holds at once (runtime/cuda/backend.c). */
static bool splitk_due(const model *m, uint32_t T) {
  const uint64_t pairs = (uint64_t)T * m->k, touched = pairs < m->E ? pairs : m->E;
  const uint64_t per_sm = smem_per_sm / (64064 + 1024);
  return smem_optin >= SPLITK_SMEM && pairs <= 16 && (pairs + m->E - 1) / m->E <= 1 &&
         2 * touched * (m->I / 32) <= (per_sm ? per_sm : 1) * (uint64_t)sm_count;
}

static const model qwen3 = {"Qwen3-30B-A3B", 128, 8, 2048, 768, 0};
static const model mixtral = {"Mixtral-8x7B", 8, 2, 4096, 14336, 0};

typedef struct layer {
  model m;
  moert_dtype dt;
  void *hg, *hu, *hd, *hsg, *hsu, *hsd, *hgate; /* host */
  CUdeviceptr dg, du, dd, dsg, dsu, dsd, dgate;      /* device */
  moert_experts *gpu, *cpu;
} layer;

static void layer_make(layer *L, const model *m, moert_dtype dt, const moert_layer_desc *desc) {
  memset(L, 0, sizeof *L);
  L->m = *m;
  L->dt = dt;
  const size_t mat = (size_t)m->I * m->H, smat = (size_t)m->Is * m->H;
  const float ag = 1.0f / sqrtf((float)m->H), ad = 1.0f / sqrtf((float)m->I);
  const size_t es = ES(dt);
  L->hg = malloc(m->E * mat * es);
  L->hu = malloc(m->E * mat * es);
  L->hd = malloc(m->E * mat * es);
  ck_assert(L->hg && L->hu && L->hd);
  fill_weights(dt, L->hg, m->E * mat, ag);
  fill_weights(dt, L->hu, m->E * mat, ag);
  fill_weights(dt, L->hd, m->E * mat, ad);
  L->dg = dalloc(m->E * mat * es);
  L->du = dalloc(m->E * mat * es);
  L->dd = dalloc(m->E * mat * es);
  CU(cu->cuMemcpyHtoD(L->dg, L->hg, m->E * mat * es));
  CU(cu->cuMemcpyHtoD(L->du, L->hu, m->E * mat * es));
  CU(cu->cuMemcpyHtoD(L->dd, L->hd, m->E * mat * es));
  moert_experts_desc w = {.struct_size = sizeof w};
  if (m->Is) {
    L->hsg = malloc(smat * es), L->hsu = malloc(smat * es), L->hsd = malloc(smat * es);
    L->hgate = malloc(m->H * es);
    fill_act(dt, L->hsg, smat, ag), fill_act(dt, L->hsu, smat, ag);
    fill_act(dt, L->hsd, smat, 1.0f / sqrtf((float)m->Is));
    fill_act(dt, L->hgate, m->H, 2.0f * ag);
    L->dsg = dalloc(smat * es), L->dsu = dalloc(smat * es), L->dsd = dalloc(smat * es);
    L->dgate = dalloc(m->H * es);
    CU(cu->cuMemcpyHtoD(L->dsg, L->hsg, smat * es));
    CU(cu->cuMemcpyHtoD(L->dsu, L->hsu, smat * es));
    CU(cu->cuMemcpyHtoD(L->dsd, L->hsd, smat * es));
    CU(cu->cuMemcpyHtoD(L->dgate, L->hgate, m->H * es));
  }
  /* CPU: stacked host weights */
  w.layout = MOERT_LAYOUT_STACKED;
  w.memory = MOERT_MEMORY_HOST;
  w.gate = L->hg, w.up = L->hu, w.down = L->hd;
  w.shared_gate = L->hsg, w.shared_up = L->hsu, w.shared_down = L->hsd;
  w.shared_expert_gate = L->hgate;
  OK(moert_experts_create(cpu_rt, desc, &w, &L->cpu));
  /* GPU: tables of per-expert device pointers */
  const void **pg = malloc(m->E * sizeof *pg), **pu = malloc(m->E * sizeof *pu),
             **pd = malloc(m->E * sizeof *pd);
  for (uint32_t e = 0; e < m->E; e++) {
    pg[e] = dptr(L->dg + e * mat * es);
    pu[e] = dptr(L->du + e * mat * es);
    pd[e] = dptr(L->dd + e * mat * es);
  }
  moert_experts_desc g = {.struct_size = sizeof g};
  g.layout = MOERT_LAYOUT_PER_EXPERT;
  g.memory = MOERT_MEMORY_DEVICE;
  g.gate_ptrs = pg, g.up_ptrs = pu, g.down_ptrs = pd;
  g.shared_gate = dptr(L->dsg), g.shared_up = dptr(L->dsu), g.shared_down = dptr(L->dsd);
  g.shared_expert_gate = dptr(L->dgate);
  OK(moert_experts_create(gpu_rt, desc, &g, &L->gpu));
  free(pg), free(pu), free(pd);
}

static void layer_free(layer *L) {
  moert_experts_destroy(L->gpu);
  moert_experts_destroy(L->cpu);
  CUdeviceptr d[] = {L->dg, L->du, L->dd, L->dsg, L->dsu, L->dsd, L->dgate};
  for (size_t i = 0; i < sizeof d / sizeof d[0]; i++)
    if (d[i]) cu->cuMemFree(d[i]);
  free(L->hg), free(L->hu), free(L->hd), free(L->hsg), free(L->hsu), free(L->hsd), free(L->hgate);
}

static uint32_t g_block_rows; /* plan_block_rows of the layers made; 0 = the default */

static moert_layer_desc make_desc(const model *m, moert_dtype dt, moert_router_kind router) {
  moert_layer_desc d;
  moert_layer_desc_init(&d);
  d.plan_block_rows = g_block_rows;
  d.num_experts = m->E, d.top_k = m->k, d.hidden = m->H, d.intermediate = m->I;
  d.shared_intermediate = m->Is;
  d.shared_gate = m->Is ? MOERT_SHARED_GATE_SIGMOID : MOERT_SHARED_GATE_NONE;
  d.act_dtype = d.weight_dtype = dt;
  d.router = router;
  d.renormalize = 1;
  if (router == MOERT_ROUTER_SIGMOID_GROUP_TOPK) {
    d.n_group = m->E >= 64 ? 8 : 2;
    d.topk_group = m->E >= 64 ? 4 : 1;
    d.routed_scaling_factor = 2.5f;
  }
  return d;
}

/* ---- runs ---- */

static moert_route_args route_args(uint32_t T, moert_memory mem, const void *logits,
                                   moert_routing_mode mode, const float *bias) {
  moert_route_args r = {.struct_size = sizeof r};
  r.num_tokens = T;
  r.logits_dtype = MOERT_DTYPE_F32;
  r.memory = mem;
  r.logits = logits;
  r.correction_bias = bias;
  r.mode = mode;
  return r;
}

static moert_forward_args fwd_args(const moert_experts *x, moert_memory mem, const void *xp,
                                   void *yp, uint32_t accumulate) {
  moert_forward_args f = {.struct_size = sizeof f};
  f.experts = x;
  f.memory = mem;
  f.x = xp;
  f.y = yp;
  f.accumulate = accumulate;
  return f;
}

/* GPU forward with the routing mode asked; y copied back to host (poisoned before). */
static void gpu_run(moert_scratch *s, const layer *L, uint32_t T, CUdeviceptr logits,
                    CUdeviceptr bias, CUdeviceptr x, CUdeviceptr y, moert_routing_mode mode,
                    void *y_host, const void *y_init) {
  const size_t n = (size_t)T * L->m.H * ES(L->dt); /* bytes */
  if (y_init)
    CU(cu->cuMemcpyHtoD(y, y_init, n));
  else
    poison(y, n);
  moert_route_args r = route_args(T, MOERT_MEMORY_DEVICE, dptr(logits), mode,
                                  bias ? dptr(bias) : NULL);
  moert_forward_args f = fwd_args(L->gpu, MOERT_MEMORY_DEVICE, dptr(x), dptr(y), y_init != NULL);
  OK(moert_moe(s, &r, &f, NULL));
  CU(cu->cuStreamSynchronize(NULL));
  CU(cu->cuMemcpyDtoH(y_host, y, n));
}

/* CPU forward on tokens [t0, t0+n) of the host data. */
static void cpu_run(moert_scratch *s, const layer *L, uint32_t t0, uint32_t n, const float *logits,
                    const float *bias, const void *x, void *y, const void *y_init) {
  const uint32_t E = L->m.E, H = L->m.H;
  const size_t es = ES(L->dt);
  if (y_init) memcpy(y, (const char *)y_init + (size_t)t0 * H * es, (size_t)n * H * es);
  moert_route_args r = route_args(n, MOERT_MEMORY_HOST, logits + (size_t)t0 * E, MOERT_ROUTING_HOST, bias);
  moert_forward_args f = fwd_args(L->cpu, MOERT_MEMORY_HOST, (const char *)x + (size_t)t0 * H * es,
                                  y, y_init != NULL);
  OK(moert_moe(s, &r, &f, NULL));
}

static void check_no_nan(const layer *L, const void *y, size_t n, const char *what) {
  for (size_t i = 0; i < n; i++) {
    float v = from_act(L->dt, y, i);
    ck_assert_msg(isfinite(v), "%s: y[%zu] (token %zu, column %zu) is %g: not written or "
                  "overflowed", what, i, i / L->m.H, i % L->m.H, (double)v);
  }
}

/* relative L2 error of GPU rows [t0, t0+n) against the CPU's */
static double rel_l2(const layer *L, const void *gpu, const void *cpu, uint32_t t0, uint32_t n) {
  double num = 0, den = 0;
  const size_t H = L->m.H;
  for (size_t i = 0; i < (size_t)n * H; i++) {
    double g = from_act(L->dt, gpu, (size_t)t0 * H + i), c = from_act(L->dt, cpu, i);
    num += (g - c) * (g - c);
    den += c * c;
  }
  return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* Compares device and host routing views bit for bit. */
static void check_same_routing(const moert_routing_view *a, const moert_plan_view *pa,
                               const int32_t *ids_b, const float *w_b, const moert_plan_view *pb,
                               int32_t *save_blocks, const char *what) {
  const size_t pairs = (size_t)a->num_tokens * a->top_k;
  for (size_t i = 0; i < pairs; i++) {
    ck_assert_msg(a->expert_ids[i] == ids_b[i], "%s: token %zu slot %zu: device id %d, host id %d",
                  what, i / a->top_k, i % a->top_k, a->expert_ids[i], ids_b[i]);
    ck_assert_msg(memcmp(&a->expert_weights[i], &w_b[i], 4) == 0,
                  "%s: token %zu slot %zu: device weight %.9g, host weight %.9g", what,
                  i / a->top_k, i % a->top_k, (double)a->expert_weights[i], (double)w_b[i]);
  }
  ck_assert_msg(memcmp(pa->offsets, pb->offsets, (pa->num_experts + 1) * 4) == 0, "%s: offsets", what);
  ck_assert_msg(memcmp(pa->padded_offsets, pb->padded_offsets, (pa->num_experts + 1) * 4) == 0,
                "%s: padded offsets", what);
  ck_assert_msg(memcmp(pa->packed_token, pb->packed_token, pairs * 4) == 0, "%s: packed_token", what);
  ck_assert_msg(memcmp(pa->pair_of, pb->pair_of, pairs * 4) == 0, "%s: pair_of", what);
  ck_assert_uint_eq(pa->num_blocks, pb->num_blocks);
  ck_assert_msg(memcmp(pa->block_expert, save_blocks, pa->num_blocks * 4) == 0, "%s: block_expert", what);
}

/* Routes T tokens both ways on the GPU and checks they agree; returns nothing. */
static void compare_routes(moert_scratch *s, uint32_t T, uint32_t E, CUdeviceptr logits,
                           moert_dtype ldt, uint64_t stride, CUdeviceptr bias, const char *what,
                           const void *host_logits, const float *host_bias) {
  moert_route_args r = route_args(T, MOERT_MEMORY_DEVICE, dptr(logits), MOERT_ROUTING_HOST,
                                  bias ? dptr(bias) : NULL);
  r.logits_dtype = ldt;
  r.logits_row_stride = stride;
  OK(moert_route(s, &r, NULL));
  moert_routing_view hv = {.struct_size = sizeof hv};
  moert_plan_view hp = {.struct_size = sizeof hp};
  OK(moert_scratch_routing(s, &hv));
  OK(moert_scratch_plan(s, &hp));
  const size_t pairs = (size_t)T * hv.top_k;
  int32_t *ids = malloc(pairs * 4 + 4), *blocks = malloc((hp.num_blocks + 1) * 4);
  float *w = malloc(pairs * 4 + 4);
  int32_t *offs = malloc((E + 1) * 4), *poffs = malloc((E + 1) * 4), *packed = malloc(pairs * 4 + 4),
          *pair_of = malloc(pairs * 4 + 4);
  memcpy(ids, hv.expert_ids, pairs * 4);
  memcpy(w, hv.expert_weights, pairs * 4);
  memcpy(blocks, hp.block_expert, hp.num_blocks * 4);
  memcpy(offs, hp.offsets, (E + 1) * 4);
  memcpy(poffs, hp.padded_offsets, (E + 1) * 4);
  memcpy(packed, hp.packed_token, pairs * 4);
  memcpy(pair_of, hp.pair_of, pairs * 4);
  moert_plan_view host_plan = hp;
  host_plan.offsets = offs, host_plan.padded_offsets = poffs;
  host_plan.packed_token = packed, host_plan.pair_of = pair_of;
  r.mode = MOERT_ROUTING_DEVICE;
  OK(moert_route(s, &r, NULL));
  moert_routing_view dv = {.struct_size = sizeof dv};
  moert_plan_view dp = {.struct_size = sizeof dp};
  OK(moert_scratch_routing(s, &dv));
  OK(moert_scratch_plan(s, &dp));
  check_same_routing(&dv, &dp, ids, w, &host_plan, blocks, what);
  if (host_logits) { /* logits in host memory: routed on the host whatever the mode */
    moert_route_args rh = route_args(T, MOERT_MEMORY_HOST, host_logits, MOERT_ROUTING_AUTO,
                                     bias ? host_bias : NULL);
    rh.logits_dtype = ldt;
    rh.logits_row_stride = stride;
    OK(moert_route(s, &rh, NULL));
    OK(moert_scratch_routing(s, &dv));
    OK(moert_scratch_plan(s, &dp));
    check_same_routing(&dv, &dp, ids, w, &host_plan, blocks, what);
  }
  free(ids), free(blocks), free(w), free(offs), free(poffs), free(packed), free(pair_of);
}

/* ---- tests ---- */

typedef struct route_case {
  const char *name;
  uint32_t E, k;
  moert_router_kind kind;
  uint32_t renorm, n_group, topk_group;
  float scale;
  bool bias;
} route_case;

static const route_case route_cases[] = {
    {"softmax E128 k8 renorm", 128, 8, MOERT_ROUTER_SOFTMAX_TOPK, 1, 0, 0, 1.0f, false},
    {"softmax E128 k8 plain", 128, 8, MOERT_ROUTER_SOFTMAX_TOPK, 0, 0, 0, 1.0f, false},
    {"softmax E60 k4 plain x2", 60, 4, MOERT_ROUTER_SOFTMAX_TOPK, 0, 0, 0, 2.0f, false},
    {"softmax E8 k2 renorm", 8, 2, MOERT_ROUTER_SOFTMAX_TOPK, 1, 0, 0, 1.0f, false},
    {"softmax E512 k16 renorm", 512, 16, MOERT_ROUTER_SOFTMAX_TOPK, 1, 0, 0, 1.0f, false},
    {"sigmoid E256 k8 g8/4 x2.5 bias", 256, 8, MOERT_ROUTER_SIGMOID_GROUP_TOPK, 1, 8, 4, 2.5f, true},
    {"sigmoid E64 k6 no groups plain", 64, 6, MOERT_ROUTER_SIGMOID_GROUP_TOPK, 0, 0, 0, 1.0f, false},
    {"sigmoid E8 k2 g2/1", 8, 2, MOERT_ROUTER_SIGMOID_GROUP_TOPK, 1, 2, 1, 1.0f, true},
};

/* logits rows with ties and infinities, then random rows; in f32 and converted */
static void make_logits(float *l, uint32_t T, uint32_t E, uint64_t stride) {
  const float inf = INFINITY;
  for (uint32_t t = 0; t < T; t++) {
    float *row = l + (size_t)t * stride;
    for (uint32_t e = 0; e < E; e++) row[e] = uniform(4.0f);
    switch (t) {
    case 0: for (uint32_t e = 0; e < E; e++) row[e] = 0.5f; break;            /* all tied */
    case 1: row[E / 3] = inf, row[E - 1] = inf; break;                        /* two +inf */
    case 2: for (uint32_t e = 0; e < E; e++) row[e] = -inf; break;            /* all -inf */
    case 3: for (uint32_t e = 0; e < E; e += 2) row[e] = -inf; break;
    case 4: for (uint32_t e = 0; e < E; e++) row[e] = (float)(e % 3); break;  /* many ties */
    case 5: for (uint32_t e = 0; e < E; e++) row[e] = -80.0f + uniform(30.0f); break;
    case 6: for (uint32_t e = 0; e < E; e++) row[e] = e % 3 ? -0.0f : 0.0f; break; /* signed zeros tie */
    case 7: for (uint32_t e = 0; e < E; e += 3) row[e] = -0.0f; break;
    default: break;
    }
  }
}

START_TEST(test_route_bits) {
  const route_case *c = &route_cases[_i];
  const uint32_t T = 300, E = c->E;
  const uint64_t stride = E + 3; /* a row stride wider than E */
  moert_layer_desc d;
  moert_layer_desc_init(&d);
  d.num_experts = E, d.top_k = c->k, d.hidden = 64, d.intermediate = 64;
  d.router = c->kind, d.renormalize = c->renorm, d.n_group = c->n_group;
  d.topk_group = c->topk_group, d.routed_scaling_factor = c->scale;
  moert_scratch *s = NULL;
  setenv("MOERT_TEST_HOST_ROUTE_ROWS", "64", 1); /* host routing in chunks of 64 rows */
  OK(moert_scratch_create(gpu_rt, &d, T, &s));
  unsetenv("MOERT_TEST_HOST_ROUTE_ROWS");
  OK(moert_scratch_prepare(s));
  float *l = malloc((size_t)T * stride * 4), *bias = malloc(E * 4);
  make_logits(l, T, E, stride);
  for (uint32_t e = 0; e < E; e++) bias[e] = uniform(0.1f);
  CUdeviceptr dl = dalloc((size_t)T * stride * 4), db = dalloc(E * 4);
  CU(cu->cuMemcpyHtoD(db, bias, E * 4));
  static const moert_dtype ldts[] = {MOERT_DTYPE_F32, MOERT_DTYPE_BF16, MOERT_DTYPE_F16};
  uint16_t *h = malloc((size_t)T * stride * 2);
  for (int di = 0; di < 3; di++) {
    char what[160];
    snprintf(what, sizeof what, "%s, %s logits", c->name, moert_dtype_name(ldts[di]));
    const void *host = l;
    if (ldts[di] == MOERT_DTYPE_F32) {
      CU(cu->cuMemcpyHtoD(dl, l, (size_t)T * stride * 4));
    } else {
      for (size_t i = 0; i < (size_t)T * stride; i++) h[i] = to_half(ldts[di], l[i]);
      CU(cu->cuMemcpyHtoD(dl, h, (size_t)T * stride * 2));
      host = h;
    }
    compare_routes(s, T, E, dl, ldts[di], stride, c->bias ? db : 0, what, host, bias);
    /* a few token counts, the empty one too */
    static const uint32_t Ts[] = {0, 1, 7, 33};
    for (size_t i = 0; i < sizeof Ts / sizeof Ts[0]; i++)
      compare_routes(s, Ts[i], E, dl, ldts[di], stride, c->bias ? db : 0, what, NULL, NULL);
  }
  free(h);
  /* a NaN logit (in the 4th chunk of the host router's staging): reported by the device
   * router when the views are read, by the host router at once; both name the token */
  const float clean = l[200 * stride + 1];
  l[200 * stride + 1] = NAN;
  CU(cu->cuMemcpyHtoD(dl, l, (size_t)T * stride * 4));
  moert_route_args r = route_args(T, MOERT_MEMORY_DEVICE, dptr(dl), MOERT_ROUTING_DEVICE, NULL);
  r.logits_row_stride = stride;
  OK(moert_route(s, &r, NULL));
  moert_routing_view v = {.struct_size = sizeof v};
  ck_assert_int_eq(moert_scratch_routing(s, &v), MOERT_ERR_NAN_LOGIT);
  ck_assert_msg(strstr(moert_last_error(), "token 200"), "%s", moert_last_error());
  r.mode = MOERT_ROUTING_HOST;
  ck_assert_int_eq(moert_route(s, &r, NULL), MOERT_ERR_NAN_LOGIT);
  ck_assert_msg(strstr(moert_last_error(), "token 200"), "%s", moert_last_error());
  /* the multi-CTA router keeps its NaN tokens a CTA, folded by the plan: a clean step after
   * reports none, and a NaN in two CTAs names the lower token */
  l[200 * stride + 1] = clean;
  CU(cu->cuMemcpyHtoD(dl, l, (size_t)T * stride * 4));
  r.mode = MOERT_ROUTING_DEVICE;
  OK(moert_route(s, &r, NULL));
  OK(moert_scratch_routing(s, &v));
  const float c150 = l[150 * stride + 3], c90 = l[90 * stride];
  l[150 * stride + 3] = NAN;
  l[90 * stride] = NAN;
  CU(cu->cuMemcpyHtoD(dl, l, (size_t)T * stride * 4));
  OK(moert_route(s, &r, NULL));
  ck_assert_int_eq(moert_scratch_routing(s, &v), MOERT_ERR_NAN_LOGIT);
  ck_assert_msg(strstr(moert_last_error(), "token 90 "), "%s", moert_last_error());
  l[150 * stride + 3] = c150;
  l[90 * stride] = c90;
  /* a decoding step (the one-CTA route + plan, which resets the NaN token itself): a NaN
   * in token 5 of 7 is reported, and the next clean step reports none */
  l[5 * stride + 2] = NAN;
  CU(cu->cuMemcpyHtoD(dl, l, (size_t)T * stride * 4));
  r = route_args(7, MOERT_MEMORY_DEVICE, dptr(dl), MOERT_ROUTING_DEVICE, NULL);
  r.logits_row_stride = stride;
  OK(moert_route(s, &r, NULL));
  ck_assert_int_eq(moert_scratch_routing(s, &v), MOERT_ERR_NAN_LOGIT);
  ck_assert_msg(strstr(moert_last_error(), "token 5 "), "%s", moert_last_error());
  r.num_tokens = 5;
  OK(moert_route(s, &r, NULL));
  OK(moert_scratch_routing(s, &v));
  moert_scratch_destroy(s);
  cu->cuMemFree(dl), cu->cuMemFree(db);
  free(l), free(bias);
}
END_TEST

typedef struct fwd_case {
  const model *m;
  moert_dtype dt;
} fwd_case;
static const fwd_case fwd_cases[] = {
    {&qwen3, MOERT_DTYPE_BF16}, {&qwen3, MOERT_DTYPE_F16},
    {&mixtral, MOERT_DTYPE_BF16}, {&mixtral, MOERT_DTYPE_F16}, {&qwen3, MOERT_DTYPE_F32}};

#define CPU_CHECK_TOKENS 48

/* GPU vs CPU and GPU vs itself for one layer shape, dtype and router over the T list. */
static void forward_suite(const model *m, moert_dtype dt, moert_router_kind kind,
                          const uint32_t *Ts, size_t nT, bool accumulate, layer *L) {
  moert_layer_desc d = make_desc(m, dt, kind);
  if (m->Is) d.renormalize = 0; /* Qwen2-MoE style: shared expert, plain softmax */
  uint32_t maxT = 0;
  for (size_t i = 0; i < nT; i++) maxT = Ts[i] > maxT ? Ts[i] : maxT;
  moert_scratch *gs = NULL, *cs = NULL;
  OK(moert_scratch_create(gpu_rt, &d, maxT, &gs));
  OK(moert_scratch_prepare(gs));
  OK(moert_scratch_create(cpu_rt, &d, CPU_CHECK_TOKENS, &cs));
  const uint32_t E = m->E, H = m->H;
  float *logits = malloc((size_t)maxT * E * 4), *bias = malloc(E * 4);
  const size_t es = ES(dt);
  void *x = malloc((size_t)maxT * H * es), *y0 = malloc((size_t)maxT * H * es);
  void *y1 = malloc((size_t)maxT * H * es), *y2 = malloc((size_t)maxT * H * es);
  void *yc = malloc((size_t)CPU_CHECK_TOKENS * H * es), *yinit = NULL;
  CUdeviceptr dl = dalloc((size_t)maxT * E * 4), db = dalloc(E * 4);
  CUdeviceptr dx = dalloc((size_t)maxT * H * es), dy = dalloc((size_t)maxT * H * es);
  for (uint32_t e = 0; e < E; e++) bias[e] = uniform(0.05f);
  CU(cu->cuMemcpyHtoD(db, bias, E * 4));
  const bool use_bias = kind == MOERT_ROUTER_SIGMOID_GROUP_TOPK;
  if (accumulate) yinit = malloc((size_t)maxT * H * es);
  for (size_t ti = 0; ti < nT; ti++) {
    const uint32_t T = Ts[ti];
    for (size_t i = 0; i < (size_t)T * E; i++) logits[i] = uniform(3.0f);
    fill_act(dt, x, (size_t)T * H, 1.0f);
    if (yinit) fill_act(dt, yinit, (size_t)T * H, 1.0f);
    CU(cu->cuMemcpyHtoD(dl, logits, (size_t)T * E * 4));
    CU(cu->cuMemcpyHtoD(dx, x, (size_t)T * H * es));
    char what[160];
    snprintf(what, sizeof what, "%s %s %s T=%u%s", m->name, moert_dtype_name(dt),
             kind == MOERT_ROUTER_SOFTMAX_TOPK ? "softmax" : "sigmoid-groups", T,
             accumulate ? " accumulate" : "");
    double t0 = now_ms();
    gpu_run(gs, L, T, dl, use_bias ? db : 0, dx, dy, MOERT_ROUTING_DEVICE, y0, yinit);
    double t1 = now_ms();
    /* the expert path: the prefill GEMMs wherever they are due */
    {
      const int path = moert_cuda_forward_path(gs);
      const char *pm = getenv("MOERT_CUDA_PREFILL");
      const bool half = dt != MOERT_DTYPE_F32;
      const bool forced = pm && !strcmp(pm, "1"), off = pm && !strcmp(pm, "0");
      const uint64_t eb = 3ull * m->H * m->I * moert_dtype_size(dt);
      /* on sm_90a the narrow prefill GEMMs take the split-K decode kernel's T where it
       * would run by itself (MOERT_PREFILL_NARROW=0 turns them off; MOERT_CUDA_DEC_FUSED
       * set, MOERT_PREFILL_SM80=1 or MOERT_PREFILL_BM=128 keep them off) */
      const char *nw = getenv("MOERT_PREFILL_NARROW"), *df0 = getenv("MOERT_CUDA_DEC_FUSED");
      const char *f800 = getenv("MOERT_PREFILL_SM80"), *bm0 = getenv("MOERT_PREFILL_BM");
      const bool nt1 = half && cc_major == 9 && cc_minor == 0 && !(nw && !strcmp(nw, "0")) &&
                      !df0 && !(f800 && !strcmp(f800, "1")) && !(bm0 && !strcmp(bm0, "128")) &&
                      splitk_due(m, T);
      const bool due = half && !off &&
                       (forced || nt1 ||
                        moert_cuda_prefill_due(cc_major, cc_minor, T, m->k, m->E, eb));
      strncat(what, path == MOERT_CUDA_PATH_PREFILL ? " [prefill]" : path == MOERT_CUDA_PATH_DECODE
                    ? " [decode]" : path == MOERT_CUDA_PATH_DECODE_SPLITK ? " [decode split-K]"
                    : " [tiled]", sizeof what - strlen(what) - 1);
      ck_assert_msg(due == (path == MOERT_CUDA_PATH_PREFILL), "%s: expert path %d, the prefill "
                    "GEMMs were %sexpected", what, path, due ? "" : "not ");
      /* the split-K decode kernel: where it is due (splitk_due) and the decode kernels run,
       * and at every T when forced (MOERT_CUDA_DEC_FUSED=1) */
      const char *df = getenv("MOERT_CUDA_DEC_FUSED");
      const bool splitk_forced = df && !strcmp(df, "1") && smem_optin >= SPLITK_SMEM;
      if (half && (path == MOERT_CUDA_PATH_DECODE || path == MOERT_CUDA_PATH_DECODE_SPLITK) &&
          (splitk_due(m, T) || splitk_forced) && !(df && !strcmp(df, "0")))
        ck_assert_msg(path == MOERT_CUDA_PATH_DECODE_SPLITK, "%s: the split-K decode kernel was "
                      "expected", what);
      /* the sm_90 prefill GEMMs of a layer with no shared expert take their row tiles from
       * device routing up to MOERT_CUDA_ROUTE_TILES_MAX_PAIRS pairs (=1: at any T, =0: never);
       * the host routing run below must not (its plan is uploaded) */
      const char *rt = getenv("MOERT_CUDA_ROUTE_TILES"), *f80 = getenv("MOERT_PREFILL_SM80");
      const bool rt_on = rt && !strcmp(rt, "1"), rt_off = rt && !strcmp(rt, "0");
      const bool route_tiles = path == MOERT_CUDA_PATH_PREFILL && cc_major == 9 && cc_minor == 0 &&
                               !(f80 && !strcmp(f80, "1")) && m->Is == 0 && !rt_off &&
                               (rt_on || (uint64_t)T * m->k <= MOERT_CUDA_ROUTE_TILES_MAX_PAIRS);
      ck_assert_msg(moert_cuda_forward_route_tiles(gs) == route_tiles, "%s: the row tiles were %s"
                    "expected from the routing", what, route_tiles ? "" : "not ");
    }
    check_no_nan(L, y0, (size_t)T * H, what);
    /* device routing = host routing, bit for bit */
    compare_routes(gs, T, E, dl, MOERT_DTYPE_F32, 0, use_bias ? db : 0, what, NULL, NULL);
    gpu_run(gs, L, T, dl, use_bias ? db : 0, dx, dy, MOERT_ROUTING_HOST, y1, yinit);
    ck_assert_msg(!moert_cuda_forward_route_tiles(gs), "%s: row tiles from a host plan", what);
    /* (with the row tiles from device routing above, this also holds them to the tiles
     * kernel's, bit for bit) */
    ck_assert_msg(memcmp(y0, y1, (size_t)T * H * es) == 0, "%s: host and device routing give "
                  "different outputs", what);
    /* the same input gives the same bits */
    gpu_run(gs, L, T, dl, use_bias ? db : 0, dx, dy, MOERT_ROUTING_DEVICE, y2, yinit);
    ck_assert_msg(memcmp(y0, y2, (size_t)T * H * es) == 0, "%s: two runs differ", what);
    /* an engine's own routing through moert_set_routing: the plan is uploaded */
    {
      moert_routing_view v = {.struct_size = sizeof v};
      OK(moert_scratch_routing(gs, &v));
      int32_t *ids = malloc((size_t)T * m->k * 4 + 4);
      float *w = malloc((size_t)T * m->k * 4 + 4);
      memcpy(ids, v.expert_ids, (size_t)T * m->k * 4);
      memcpy(w, v.expert_weights, (size_t)T * m->k * 4);
      OK(moert_set_routing(gs, T, ids, w, NULL));
      if (yinit)
        CU(cu->cuMemcpyHtoD(dy, yinit, (size_t)T * H * es));
      else
        poison(dy, (size_t)T * H * es);
      moert_forward_args f = fwd_args(L->gpu, MOERT_MEMORY_DEVICE, dptr(dx), dptr(dy), yinit != NULL);
      OK(moert_forward(gs, &f, NULL));
      CU(cu->cuStreamSynchronize(NULL));
      CU(cu->cuMemcpyDtoH(y2, dy, (size_t)T * H * es));
      ck_assert_msg(memcmp(y0, y2, (size_t)T * H * es) == 0, "%s: set_routing gives other bits", what);
      free(ids), free(w);
    }
    /* against the CPU backend: the first tokens and the last ones */
    uint32_t n_first = T < CPU_CHECK_TOKENS / 2 ? T : CPU_CHECK_TOKENS / 2;
    uint32_t n_last = T - n_first < CPU_CHECK_TOKENS / 2 ? T - n_first : CPU_CHECK_TOKENS / 2;
    double t2 = now_ms();
    cpu_run(cs, L, 0, n_first, logits, use_bias ? bias : NULL, x, yc, yinit);
    double e1 = rel_l2(L, y0, yc, 0, n_first), e2 = 0;
    if (n_last) {
      cpu_run(cs, L, T - n_last, n_last, logits, use_bias ? bias : NULL, x, yc, yinit);
      e2 = rel_l2(L, y0, yc, T - n_last, n_last);
    }
    double t3 = now_ms();
    printf("%-52s gpu %8.2f ms (first call, with copies)  cpu check %7.1f ms  rel L2 %.2e / %.2e\n",
           what, t1 - t0, t3 - t2, e1, e2);
    fflush(stdout);
    /* bf16/f16: h and y are rounded on the GPU; f32 (3xTF32) must be near float32 */
    const double tol = dt == MOERT_DTYPE_F32 ? 1e-4 : 1e-2;
    ck_assert_msg(e1 < tol && e2 < tol, "%s: relative L2 error against the CPU %.3e / %.3e",
                  what, e1, e2);
  }
  moert_scratch_destroy(gs);
  moert_scratch_destroy(cs);
  cu->cuMemFree(dl), cu->cuMemFree(db), cu->cuMemFree(dx), cu->cuMemFree(dy);
  free(logits), free(bias), free(x), free(y0), free(y1), free(y2), free(yc), free(yinit);
}

START_TEST(test_forward_vs_cpu) {
  const fwd_case *c = &fwd_cases[_i];
  /* (Qwen3-30B-A3B T=2048: 128 rows an expert, the 192-row tiles of sm_90a) */
  static const uint32_t qwen_T[] = {1, 7, 32, 129, 1000, 2048, 4096};
  static const uint32_t mixtral_T[] = {1, 7, 32, 129, 1000};
  const size_t nq = sizeof qwen_T / sizeof qwen_T[0], nm = sizeof mixtral_T / sizeof mixtral_T[0];
  const bool q = c->m == &qwen3;
  layer L;
  moert_layer_desc d = make_desc(c->m, c->dt, MOERT_ROUTER_SOFTMAX_TOPK);
  double t0 = now_ms();
  layer_make(&L, c->m, c->dt, &d);
  printf("%s %s: weights made and uploaded in %.0f ms\n", c->m->name, moert_dtype_name(c->dt),
         now_ms() - t0);
  forward_suite(c->m, c->dt, MOERT_ROUTER_SOFTMAX_TOPK, q ? qwen_T : mixtral_T, q ? nq : nm, false,
                &L);
  forward_suite(c->m, c->dt, MOERT_ROUTER_SIGMOID_GROUP_TOPK, q ? qwen_T : mixtral_T, q ? nq : nm,
                false, &L);
  layer_free(&L);
}
END_TEST

/* Scratches made for 1, 2 and 8 tokens (a single sequence's decoding step), run at that T,
 * with and without accumulate (the narrow prefill GEMMs and the combine's y += at T = 1):
 * every other case's scratch holds more tokens than the T it checks, and accumulate ran
 * only on the small layers with a shared expert. */
START_TEST(test_small_scratch) {
  static const uint32_t T1[] = {1}, T2[] = {2}, T8[] = {8};
  const moert_dtype dt = _i ? MOERT_DTYPE_F16 : MOERT_DTYPE_BF16;
  layer L;
  moert_layer_desc d = make_desc(&qwen3, dt, MOERT_ROUTER_SOFTMAX_TOPK);
  layer_make(&L, &qwen3, dt, &d);
  forward_suite(&qwen3, dt, MOERT_ROUTER_SOFTMAX_TOPK, T1, 1, false, &L);
  forward_suite(&qwen3, dt, MOERT_ROUTER_SOFTMAX_TOPK, T1, 1, true, &L);
  forward_suite(&qwen3, dt, MOERT_ROUTER_SOFTMAX_TOPK, T2, 1, true, &L);
  forward_suite(&qwen3, dt, MOERT_ROUTER_SOFTMAX_TOPK, T8, 1, false, &L);
  layer_free(&L);
}
END_TEST

START_TEST(test_shared_expert) {
  static const moert_dtype dts[] = {MOERT_DTYPE_BF16, MOERT_DTYPE_F16, MOERT_DTYPE_F32};
  const moert_dtype dt = dts[_i];
  model m = qwen3;
  m.name = "Qwen3 shape + gated shared expert";
  m.Is = 1024;
  layer L;
  moert_layer_desc d = make_desc(&m, dt, MOERT_ROUTER_SOFTMAX_TOPK);
  layer_make(&L, &m, dt, &d);
  static const uint32_t Ts[] = {1, 33, 300};
  forward_suite(&m, dt, MOERT_ROUTER_SOFTMAX_TOPK, Ts, 3, false, &L);
  forward_suite(&m, dt, MOERT_ROUTER_SOFTMAX_TOPK, Ts, 3, true, &L);
  layer_free(&L);
}
END_TEST

START_TEST(test_graph_replay) {
  if (!cu->cuStreamBeginCapture || !cu->cuGraphInstantiateWithFlags || !cu->cuGraphLaunch) {
    printf("graph test skipped: the driver has no graph capture entry points\n");
    return;
  }
  /* _i = 0: the decode kernels, _i = 1: the prefill GEMMs (read when the scratch is made),
   * _i = 2: the split-K decode kernel (T = 1) */
  setenv("MOERT_CUDA_PREFILL", _i == 1 ? "1" : "0", 1);
  const model *m = &qwen3;
  const moert_dtype dt = MOERT_DTYPE_BF16;
  const uint32_t T = _i == 2 ? 1 : 32, E = m->E, H = m->H;
  const int want_path = _i == 1 ? MOERT_CUDA_PATH_PREFILL
                        : _i == 2 && splitk_due(m, T) ? MOERT_CUDA_PATH_DECODE_SPLITK
                                                              : MOERT_CUDA_PATH_DECODE;
  moert_layer_desc d = make_desc(m, dt, MOERT_ROUTER_SOFTMAX_TOPK);
  layer L;
  layer_make(&L, m, dt, &d);
  moert_scratch *gs = NULL, *cs = NULL;
  OK(moert_scratch_create(gpu_rt, &d, T, &gs));
  OK(moert_scratch_prepare(gs));
  unsetenv("MOERT_CUDA_PREFILL");
  OK(moert_scratch_create(cpu_rt, &d, T, &cs));
  CUstream st;
  CU(cu->cuStreamCreate(&st, MOERT_CU_STREAM_NON_BLOCKING));
  CUdeviceptr dl = dalloc((size_t)T * E * 4), dx = dalloc((size_t)T * H * 2), dy = dalloc((size_t)T * H * 2);
  float *logits = malloc((size_t)T * E * 4);
  void *x = malloc((size_t)T * H * 2), *yg = malloc((size_t)T * H * 2);
  void *yd = malloc((size_t)T * H * 2), *yc = malloc((size_t)T * H * 2);
  moert_route_args r = route_args(T, MOERT_MEMORY_DEVICE, dptr(dl), MOERT_ROUTING_DEVICE, NULL);
  moert_forward_args f = fwd_args(L.gpu, MOERT_MEMORY_DEVICE, dptr(dx), dptr(dy), 0);
  CUgraph graph;
  CUgraphExec exec;
  CU(cu->cuStreamBeginCapture(st, MOERT_CU_STREAM_CAPTURE_MODE_GLOBAL));
  moert_status ms = moert_moe(gs, &r, &f, st);
  CUresult end = cu->cuStreamEndCapture(st, &graph);
  ck_assert_msg(ms == MOERT_OK, "route + forward under capture: %s", moert_last_error());
  ck_assert_int_eq(end, 0);
  CU(cu->cuGraphInstantiateWithFlags(&exec, graph, 0));
  for (int round = 0; round < 3; round++) {
    for (size_t i = 0; i < (size_t)T * E; i++) logits[i] = uniform(3.0f);
    fill_act(dt, x, (size_t)T * H, 1.0f);
    CU(cu->cuMemcpyHtoD(dl, logits, (size_t)T * E * 4));
    CU(cu->cuMemcpyHtoD(dx, x, (size_t)T * H * 2));
    poison(dy, (size_t)T * H * 2);
    CU(cu->cuGraphLaunch(exec, st));
    CU(cu->cuStreamSynchronize(st));
    CU(cu->cuMemcpyDtoH(yg, dy, (size_t)T * H * 2));
    check_no_nan(&L, yg, (size_t)T * H, "graph replay");
    ck_assert_int_eq(moert_cuda_forward_path(gs), want_path);
    poison(dy, (size_t)T * H * 2);
    OK(moert_moe(gs, &r, &f, st));
    CU(cu->cuStreamSynchronize(st));
    CU(cu->cuMemcpyDtoH(yd, dy, (size_t)T * H * 2));
    ck_assert_msg(memcmp(yg, yd, (size_t)T * H * 2) == 0, "round %d: graph replay and a direct "
                  "call differ", round);
    cpu_run(cs, &L, 0, T, logits, NULL, x, yc, NULL);
    double e = rel_l2(&L, yg, yc, 0, T);
    printf("graph replay%s round %d: rel L2 against the CPU %.2e\n",
           _i == 1 ? " (prefill GEMMs forced)" : _i == 2 ? " (T=1, split-K decode)" : "", round, e);
    ck_assert_msg(e < 1e-2, "graph replay round %d: relative L2 error %.3e", round, e);
  }
  cu->cuGraphExecDestroy(exec);
  cu->cuGraphDestroy(graph);
  cu->cuStreamDestroy(st);
  moert_scratch_destroy(gs);
  moert_scratch_destroy(cs);
  layer_free(&L);
  cu->cuMemFree(dl), cu->cuMemFree(dx), cu->cuMemFree(dy);
  free(logits), free(x), free(yg), free(yd), free(yc);
}
END_TEST

/* The quick cases' suites on a small layer: with a gated shared expert of 32 rows (softmax
 * router, then accumulate), then without one (sigmoid-groups router). */
static void small_suites(const model *small, moert_dtype dt, const uint32_t *Ts, size_t nT) {
  model shared = *small;
  char name[96];
  snprintf(name, sizeof name, "%s + shared expert Is32", small->name);
  shared.name = name;
  shared.Is = 32;
  layer L;
  moert_layer_desc d = make_desc(&shared, dt, MOERT_ROUTER_SOFTMAX_TOPK);
  layer_make(&L, &shared, dt, &d);
  forward_suite(&shared, dt, MOERT_ROUTER_SOFTMAX_TOPK, Ts, nT, false, &L);
  forward_suite(&shared, dt, MOERT_ROUTER_SOFTMAX_TOPK, Ts, nT, true, &L);
  layer_free(&L);
  d = make_desc(small, dt, MOERT_ROUTER_SIGMOID_GROUP_TOPK);
  layer_make(&L, small, dt, &d);
  forward_suite(small, dt, MOERT_ROUTER_SIGMOID_GROUP_TOPK, Ts, nT, false, &L);
  layer_free(&L);
}

/* A small layer, for every plan block size (and so every tile shape of ptx/expert.cu) and
 * under compute-sanitizer (CK_RUN_CASE=quick):
 * bf16, f16 and f32, both routers, a gated shared expert, accumulate. */
START_TEST(test_quick_block_sizes) {
  static const uint32_t rows[] = {16, 32, 64, 128};
  static const moert_dtype dts[] = {MOERT_DTYPE_BF16, MOERT_DTYPE_F16, MOERT_DTYPE_F32};
  /* H and I not multiples of 64: short last K steps and partial column tiles */
  const model small = {"small E16 k4 H288 I96", 16, 4, 288, 96, 0};
  static const uint32_t Ts[] = {1, 7, 129};
  /* run only cases MOERT_QUICK_MIN <= i < MOERT_QUICK_MAX (sanitizer runs split them) */
  const char *max = getenv("MOERT_QUICK_MAX"), *min = getenv("MOERT_QUICK_MIN");
  if ((max && _i >= atoi(max)) || (min && _i < atoi(min))) return;
  g_block_rows = rows[_i % 4];
  const moert_dtype dt = dts[_i / 4];
  printf("plan_block_rows %u:\n", g_block_rows);
  small_suites(&small, dt, Ts, 3);
  g_block_rows = 0;
}
END_TEST

/* The prefill GEMMs forced at every T (MOERT_CUDA_PREFILL=1), bf16 (_i = 0) and f16: H and I
 * not multiples of the tiles (partial column tiles and short K steps), T from 1 row to
 * 64-row tiles (T=129: about 33 rows per expert) and 128-row tiles (T=1000: about 250), a
 * gated shared expert (on the tiled kernels) and accumulate, both routers. */
START_TEST(test_quick_prefill) {
  static const moert_dtype dts[] = {MOERT_DTYPE_BF16, MOERT_DTYPE_F16};
  const moert_dtype dt = dts[_i];
  const model small = {"small E16 k4 H320 I192", 16, 4, 320, 192, 0};
  static const uint32_t Ts[] = {1, 7, 129, 1000};
  /* MOERT_QUICK_PREFILL: 0 skips this case, n runs only its dtype n - 1 (sanitizer jobs) */
  const char *only = getenv("MOERT_QUICK_PREFILL");
  if (only && atoi(only) != _i + 1) return;
  setenv("MOERT_CUDA_PREFILL", "1", 1);
  small_suites(&small, dt, Ts, 4);
  unsetenv("MOERT_CUDA_PREFILL");
}
END_TEST

/* The decode kernels at every T, the prefill GEMMs off (on sm_90 they take every T > 1 by
 * default): _i = 0, 1 the split-K decode kernel forced (MOERT_CUDA_DEC_FUSED=1), _i = 2, 3
 * the two decode kernels (MOERT_CUDA_DEC_FUSED=0); bf16 then f16.  T=1 (a row an expert), 7,
 * and 129 (about 33 rows an expert: five passes of 8 rows for the split-K kernel, 8-row
 * chunks x 8 for the others); H = 288 (18 Wd tiles: the warps' last stages partly empty);
 * a gated shared expert and accumulate, both routers. */
START_TEST(test_quick_splitk) {
  static const moert_dtype dts[] = {MOERT_DTYPE_BF16, MOERT_DTYPE_F16};
  const moert_dtype dt = dts[_i % 2];
  const bool splitk = _i < 2;
  const model small = {"small E16 k4 H288 I96", 16, 4, 288, 96, 0};
  static const uint32_t Ts[] = {1, 7, 129};
  const char *only = getenv("MOERT_QUICK_SPLITK"); /* 0 skips, n runs only case n - 1 */
  if (only && atoi(only) != _i + 1) return;
  if (splitk && smem_optin < SPLITK_SMEM) {
    printf("split-K decode case skipped: %d bytes of shared memory a CTA\n", smem_optin);
    return;
  }
  setenv("MOERT_CUDA_DEC_FUSED", splitk ? "1" : "0", 1);
  setenv("MOERT_CUDA_PREFILL", "0", 1);
  small_suites(&small, dt, Ts, 3);
  unsetenv("MOERT_CUDA_DEC_FUSED");
  unsetenv("MOERT_CUDA_PREFILL");
}
END_TEST

/* A runtime on the caller's CUcontext gives the same bits as one on the primary context. */
START_TEST(test_caller_context) {
  moert_runtime_options o;
  moert_runtime_options_init(&o);
  o.backend = MOERT_BACKEND_CUDA;
  o.cu_context = ctx;
  moert_runtime *rt2 = NULL;
  OK(moert_runtime_create(&o, &rt2));
  ck_assert_uint_eq(moert_runtime_backend(rt2), MOERT_BACKEND_CUDA);
  const model m = {"small", 16, 4, 256, 128, 0};
  const uint32_t T = 40, H = m.H, E = m.E;
  moert_layer_desc d = make_desc(&m, MOERT_DTYPE_BF16, MOERT_ROUTER_SOFTMAX_TOPK);
  layer L;
  layer_make(&L, &m, MOERT_DTYPE_BF16, &d);
  /* the same weights, viewed from the second runtime */
  const void **pg = malloc(E * sizeof *pg), **pu = malloc(E * sizeof *pu), **pd = malloc(E * sizeof *pd);
  const size_t mat = (size_t)m.I * H * 2;
  for (uint32_t e = 0; e < E; e++)
    pg[e] = dptr(L.dg + e * mat), pu[e] = dptr(L.du + e * mat), pd[e] = dptr(L.dd + e * mat);
  moert_experts_desc g = {.struct_size = sizeof g, .layout = MOERT_LAYOUT_PER_EXPERT,
                          .memory = MOERT_MEMORY_DEVICE};
  g.gate_ptrs = pg, g.up_ptrs = pu, g.down_ptrs = pd;
  moert_experts *x2 = NULL;
  OK(moert_experts_create(rt2, &d, &g, &x2));
  moert_scratch *s1 = NULL, *s2 = NULL;
  OK(moert_scratch_create(gpu_rt, &d, T, &s1));
  OK(moert_scratch_create(rt2, &d, T, &s2));
  float *logits = malloc((size_t)T * E * 4);
  for (size_t i = 0; i < (size_t)T * E; i++) logits[i] = uniform(3.0f);
  void *x = malloc((size_t)T * H * 2), *y1 = malloc((size_t)T * H * 2), *y2 = malloc((size_t)T * H * 2);
  fill_act(MOERT_DTYPE_BF16, x, (size_t)T * H, 1.0f);
  CUdeviceptr dl = dalloc((size_t)T * E * 4), dx = dalloc((size_t)T * H * 2), dy = dalloc((size_t)T * H * 2);
  CU(cu->cuMemcpyHtoD(dl, logits, (size_t)T * E * 4));
  CU(cu->cuMemcpyHtoD(dx, x, (size_t)T * H * 2));
  gpu_run(s1, &L, T, dl, 0, dx, dy, MOERT_ROUTING_DEVICE, y1, NULL);
  layer L2 = L;
  L2.gpu = x2;
  gpu_run(s2, &L2, T, dl, 0, dx, dy, MOERT_ROUTING_DEVICE, y2, NULL);
  ck_assert_msg(memcmp(y1, y2, (size_t)T * H * 2) == 0, "the caller's context gives other bits");
  moert_scratch_destroy(s1);
  moert_scratch_destroy(s2);
  moert_experts_destroy(x2);
  moert_runtime_destroy(rt2);
  layer_free(&L);
  cu->cuMemFree(dl), cu->cuMemFree(dx), cu->cuMemFree(dy);
  free(pg), free(pu), free(pd), free(logits), free(x), free(y1), free(y2);
}
END_TEST

/* Not a check: the time of route + plan + forward replayed from CUDA graphs (Qwen3-30B-A3B,
 * bf16, device routing), 8 graphs over different logits in turn so that the touched
 * experts change between replays, against the weight-read floor at 3.0 TB/s. */
START_TEST(test_timing) {
  if (!cu->cuStreamBeginCapture) return;
  const model *m = &qwen3;
  const moert_dtype dt = MOERT_DTYPE_BF16;
  const uint32_t E = m->E, H = m->H, NG = 8, REPS = 200;
  moert_layer_desc d = make_desc(m, dt, MOERT_ROUTER_SOFTMAX_TOPK);
  layer L;
  layer_make(&L, m, dt, &d);
  static const uint32_t Ts[] = {1, 8, 32, 128, 512, 4096};
  CUstream st;
  CU(cu->cuStreamCreate(&st, MOERT_CU_STREAM_NON_BLOCKING));
  for (size_t ti = 0; ti < sizeof Ts / sizeof Ts[0]; ti++) {
    const uint32_t T = Ts[ti];
    moert_scratch *s = NULL;
    OK(moert_scratch_create(gpu_rt, &d, T, &s));
    OK(moert_scratch_prepare(s));
    CUdeviceptr dl[8], dx = dalloc((size_t)T * H * 2), dy = dalloc((size_t)T * H * 2);
    CUgraph graph[8];
    CUgraphExec exec[8];
    float *logits = malloc((size_t)T * E * 4);
    void *x = malloc((size_t)T * H * 2);
    fill_act(dt, x, (size_t)T * H, 1.0f);
    CU(cu->cuMemcpyHtoD(dx, x, (size_t)T * H * 2));
    double touched = 0;
    for (uint32_t g = 0; g < NG; g++) {
      for (size_t i = 0; i < (size_t)T * E; i++) logits[i] = uniform(3.0f);
      dl[g] = dalloc((size_t)T * E * 4);
      CU(cu->cuMemcpyHtoD(dl[g], logits, (size_t)T * E * 4));
      moert_route_args r = route_args(T, MOERT_MEMORY_DEVICE, dptr(dl[g]), MOERT_ROUTING_DEVICE, NULL);
      moert_forward_args f = fwd_args(L.gpu, MOERT_MEMORY_DEVICE, dptr(dx), dptr(dy), 0);
      OK(moert_route(s, &r, st));
      moert_plan_view pv = {.struct_size = sizeof pv};
      OK(moert_scratch_plan(s, &pv));
      for (uint32_t e = 0; e < E; e++) touched += pv.offsets[e + 1] > pv.offsets[e];
      CU(cu->cuStreamBeginCapture(st, MOERT_CU_STREAM_CAPTURE_MODE_GLOBAL));
      moert_status ms = moert_moe(s, &r, &f, st);
      CU(cu->cuStreamEndCapture(st, &graph[g]));
      OK(ms);
      CU(cu->cuGraphInstantiateWithFlags(&exec[g], graph[g], 0));
    }
    touched /= NG;
    for (uint32_t i = 0; i < 3 * NG; i++) CU(cu->cuGraphLaunch(exec[i % NG], st)); /* warm up */
    CU(cu->cuStreamSynchronize(st));
    const double t0 = now_ms();
    for (uint32_t i = 0; i < REPS; i++) CU(cu->cuGraphLaunch(exec[i % NG], st));
    CU(cu->cuStreamSynchronize(st));
    const double us = (now_ms() - t0) * 1e3 / REPS;
    const double bytes = touched * 3.0 * H * m->I * 2, floor_us = bytes / 3.0e12 * 1e6;
    printf("timing Qwen3-30B-A3B bf16 T=%-5u %9.1f us per layer (mean of %u graph replays)  "
           "%5.1f experts touched  floor %7.1f us at 3.0 TB/s  ratio %.2f\n",
           T, us, REPS, touched, floor_us, us / floor_us);
    fflush(stdout);
    for (uint32_t g = 0; g < NG; g++) {
      cu->cuGraphExecDestroy(exec[g]);
      cu->cuGraphDestroy(graph[g]);
      cu->cuMemFree(dl[g]);
    }
    cu->cuMemFree(dx), cu->cuMemFree(dy);
    free(logits), free(x);
    moert_scratch_destroy(s);
  }
  cu->cuStreamDestroy(st);
  layer_free(&L);
}
END_TEST

/* ---- the disk cache, through a second process ---- */

/* The child: runtime -> scratch -> prepare -> one forward, timed; prints one line. */
static int cache_child(const char *dir) {
  moert_runtime_options o;
  moert_runtime_options_init(&o);
  o.backend = MOERT_BACKEND_CUDA;
  o.cache_dir = dir;
  const model *m = &qwen3;
  const moert_dtype dt = MOERT_DTYPE_BF16;
  const uint32_t T = 8, E = m->E, H = m->H, I = m->I;
  char why[256];
  if (moert_cuda_driver_get(&cu, why, sizeof why) != MOERT_OK) return 3;
  CUdevice dev;
  if (cu->cuDeviceGet(&dev, 0) || cu->cuDevicePrimaryCtxRetain(&ctx, dev) || cu->cuCtxSetCurrent(ctx))
    return 3;
  /* the engine's own buffers exist before moert is asked for anything */
  const size_t mat = (size_t)I * H;
  CUdeviceptr w, dl, dx, dy;
  if (cu->cuMemAlloc(&w, 3 * E * mat * 2) || cu->cuMemAlloc(&dl, T * E * 4) ||
      cu->cuMemAlloc(&dx, T * H * 2) || cu->cuMemAlloc(&dy, T * H * 2))
    return 3;
  cu->cuMemsetD32Async(w, 0x3c003c00u, 3 * E * mat / 2, NULL); /* small bf16 values */
  cu->cuMemsetD32Async(dx, 0x3f803f80u, T * H / 2, NULL);
  float *logits = malloc(T * E * 4);
  for (size_t i = 0; i < T * E; i++) logits[i] = uniform(3.0f);
  cu->cuMemcpyHtoD(dl, logits, T * E * 4);
  cu->cuStreamSynchronize(NULL);
  const uint64_t compiles0 = moert_jit_compile_count();
  const double t0 = now_ms();
  moert_runtime *rt = NULL;
  moert_scratch *s = NULL;
  moert_experts *x = NULL;
  moert_layer_desc d = make_desc(m, dt, MOERT_ROUTER_SOFTMAX_TOPK);
  moert_experts_desc wd = {.struct_size = sizeof wd, .layout = MOERT_LAYOUT_STACKED,
                           .memory = MOERT_MEMORY_DEVICE};
  wd.gate = dptr(w), wd.up = dptr(w + E * mat * 2), wd.down = dptr(w + 2 * E * mat * 2);
  if (moert_runtime_create(&o, &rt) || moert_scratch_create(rt, &d, 64, &s) ||
      moert_experts_create(rt, &d, &wd, &x) || moert_scratch_prepare(s)) {
    fprintf(stderr, "cache child: %s\n", moert_last_error());
    return 4;
  }
  const double t1 = now_ms();
  moert_route_args r = route_args(T, MOERT_MEMORY_DEVICE, dptr(dl), MOERT_ROUTING_DEVICE, NULL);
  moert_forward_args f = fwd_args(x, MOERT_MEMORY_DEVICE, dptr(dx), dptr(dy), 0);
  if (moert_moe(s, &r, &f, NULL) || cu->cuStreamSynchronize(NULL)) {
    fprintf(stderr, "cache child: %s\n", moert_last_error());
    return 5;
  }
  const double t2 = now_ms();
  uint16_t y[16];
  cu->cuMemcpyDtoH(y, dy, sizeof y);
  for (int i = 0; i < 16; i++)
    if (!isfinite(moert_bf16_to_f32(y[i]))) return 6;
  printf("compiles=%llu prepare_ms=%.1f first_forward_ms=%.2f total_ms=%.1f\n",
         (unsigned long long)(moert_jit_compile_count() - compiles0), t1 - t0, t2 - t1, t2 - t0);
  moert_experts_destroy(x);
  moert_scratch_destroy(s);
  moert_runtime_destroy(rt);
  return 0;
}

/* Runs this program as a cache child; returns its compile count and times. */
static void run_child(const char *dir, unsigned long long *compiles, double *prepare_ms,
                      double *first_ms, double *total_ms) {
  char cmd[2048], exe[1024];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  ck_assert_int_gt(n, 0);
  exe[n] = '\0';
  snprintf(cmd, sizeof cmd, "'%s' --cache-child '%s'", exe, dir);
  FILE *p = popen(cmd, "r");
  ck_assert_ptr_nonnull(p);
  char line[512] = "";
  char *got = fgets(line, sizeof line, p);
  int rc = pclose(p);
  ck_assert_msg(got && rc == 0, "the cache child failed (status %d): %s", rc, line);
  ck_assert_int_eq(sscanf(line, "compiles=%llu prepare_ms=%lf first_forward_ms=%lf total_ms=%lf",
                          compiles, prepare_ms, first_ms, total_ms), 4);
}

START_TEST(test_disk_cache_second_process) {
  char dir[] = "/tmp/moert-cache-test-XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  char sub[600];
  snprintf(sub, sizeof sub, "%s/nested/moert", dir); /* folders made on demand */
  unsigned long long c_cold, c_warm, c_fix;
  double p_cold, f_cold, t_cold, p_warm, f_warm, t_warm, p_fix, f_fix, t_fix;
  run_child(sub, &c_cold, &p_cold, &f_cold, &t_cold);
  run_child(sub, &c_warm, &p_warm, &f_warm, &t_warm);
  printf("disk cache: cold process %llu compiles, %.1f ms to prepared, %.1f ms to first "
         "forward done; warm process %llu compiles, %.1f ms to prepared, %.1f ms to first "
         "forward done\n", c_cold, p_cold, t_cold, c_warm, p_warm, t_warm);
  ck_assert_uint_gt(c_cold, 0);
  ck_assert_uint_eq(c_warm, 0);
  /* a truncated and a corrupted file are recompiled, never loaded */
  char cmd[1400];
  snprintf(cmd, sizeof cmd, "cd '%s' && set -- moert-*.bin && truncate -s 100 \"$1\" && "
           "printf 'XXXX' | dd of=\"$2\" bs=1 seek=200 conv=notrunc 2>/dev/null", sub);
  ck_assert_int_eq(system(cmd), 0);
  run_child(sub, &c_fix, &p_fix, &f_fix, &t_fix);
  printf("disk cache: after truncating one file and corrupting another: %llu compiles\n", c_fix);
  ck_assert_uint_eq(c_fix, 2);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  ck_assert_int_eq(system(cmd), 0);
  /* an unwritable folder: no caching, but it works */
  run_child("/proc/moert-no-such-dir", &c_fix, &p_fix, &f_fix, &t_fix);
  ck_assert_uint_gt(c_fix, 0);
}
END_TEST

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "--cache-child") == 0) return cache_child(argv[2]);
  char why[256] = "";
  if (moert_cuda_driver_get(&cu, why, sizeof why) != MOERT_OK) {
    printf("test_gpu_forward: skipped, no GPU: %s\n", why);
    return 0;
  }
  CUdevice dev;
  if (cu->cuDeviceGet(&dev, 0) != 0 || cu->cuDevicePrimaryCtxRetain(&ctx, dev) != 0 ||
      cu->cuCtxSetCurrent(ctx) != 0) {
    printf("test_gpu_forward: skipped, CUDA device 0 cannot be used\n");
    return 0;
  }
  cu->cuDeviceGetAttribute(&cc_major, MOERT_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev);
  cu->cuDeviceGetAttribute(&cc_minor, MOERT_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev);
  cu->cuDeviceGetAttribute(&smem_optin, MOERT_CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
                           dev);
  cu->cuDeviceGetAttribute(&smem_per_sm, MOERT_CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR,
                           dev);
  cu->cuDeviceGetAttribute(&sm_count, MOERT_CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev);
  moert_runtime_options o;
  moert_runtime_options_init(&o);
  o.backend = MOERT_BACKEND_CUDA;
  if (moert_runtime_create(&o, &gpu_rt) != MOERT_OK) {
    printf("test_gpu_forward: FAILED to create the CUDA runtime: %s\n", moert_last_error());
    return 1;
  }
  o.backend = MOERT_BACKEND_CPU;
  if (moert_runtime_create(&o, &cpu_rt) != MOERT_OK) return 1;
  printf("backend: %s\n", moert_runtime_backend_note(gpu_rt));
  Suite *s = suite_create("gpu_forward");
  TCase *tr = tcase_create("route");
  tcase_set_timeout(tr, 600);
  tcase_add_loop_test(tr, test_route_bits, 0, (int)(sizeof route_cases / sizeof route_cases[0]));
  suite_add_tcase(s, tr);
  TCase *tf = tcase_create("forward");
  tcase_set_timeout(tf, 900);
  tcase_add_loop_test(tf, test_forward_vs_cpu, 0, (int)(sizeof fwd_cases / sizeof fwd_cases[0]));
  tcase_add_loop_test(tf, test_shared_expert, 0, 3);
  tcase_add_loop_test(tf, test_small_scratch, 0, 2);
  tcase_add_loop_test(tf, test_graph_replay, 0, 3);
  suite_add_tcase(s, tf);
  TCase *tq = tcase_create("quick");
  tcase_set_timeout(tq, 600);
  tcase_add_loop_test(tq, test_quick_block_sizes, 0, 12);
  tcase_add_loop_test(tq, test_quick_prefill, 0, 2);
  tcase_add_loop_test(tq, test_quick_splitk, 0, 4);
  tcase_add_test(tq, test_caller_context);
  suite_add_tcase(s, tq);
  TCase *tt = tcase_create("timing");
  tcase_set_timeout(tt, 600);
  tcase_add_test(tt, test_timing);
  suite_add_tcase(s, tt);
  TCase *tc = tcase_create("cache");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, test_disk_cache_second_process);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_set_fork_status(sr, CK_NOFORK); /* CUDA does not survive fork(); one process */
  srunner_run_all(sr, CK_VERBOSE);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  moert_runtime_destroy(gpu_rt);
  moert_runtime_destroy(cpu_rt);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
