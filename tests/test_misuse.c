/* test_misuse.c — a table of wrong calls through the public ABI, each run as one iteration
 * of a Check loop test.  Every case asserts:
 *   - the specific status it must return;
 *   - a new, non-empty moert_last_error() that names the problem (a word of the sentence
 *     the case expects: the argument's name, the token of a NaN, ...), distinct from the
 *     message primed before the call;
 *   - that nothing the caller owns was written: *out pointers keep a sentinel, y keeps
 *     its poison, x / logits / ids / weights / bias compare equal, the view structs keep
 *     their poison bytes.
 * The layer data are random (seeded, printed: MOERT_TEST_SEED replays a run).  Cases that
 * need the CPU backend's answer (device memory on a runtime without CUDA) skip themselves
 * where a GPU is present.  tests/test_api.c covers the entry points one by one; this table
 * adds the cases it lacks (huge sizes, overflowing strides, NaN in every dtype and
 * router, bf16/f16 NaN, mixed shapes and runtimes, moert_moe) and keeps a count.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moert_test.h"

#if defined(__SANITIZE_ADDRESS__)
/* Huge-size cases ask malloc for terabytes: ASan must answer NULL instead of aborting. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }
#endif

#define SENTINEL ((void *)(uintptr_t)0x5e5e5e5e5e50ull)

enum { E = 16, K = 4, H = 32, I = 16, IS = 8, MAXT = 8 };

typedef struct ctx {
  mt_rng rng;
  moert_runtime *rt;
  moert_scratch *s;       /* routed with random logits (unless the case says unrouted) */
  moert_scratch *s_sig;   /* sigmoid-group router, same shape */
  moert_experts *ex;
  moert_layer_desc d, d_sig;
  moert_experts_desc w;
  uint32_t T;             /* tokens of the valid route */
  uint16_t *wbuf;         /* bf16 weights: gate, up, down, shared... */
  const void *ptrs[3][E];
  float logits[MAXT * E * 2];
  uint16_t logits16[MAXT * E];
  float bias[E];
  float x[MAXT * H * 2];
  float y[MAXT * H * 2 + 64];
  int32_t ids[MAXT * K];
  float wts[MAXT * K];
  /* outputs that a failed call must leave alone */
  moert_runtime *out_rt;
  moert_scratch *out_s;
  moert_experts *out_ex;
  moert_routing_view rv;
  moert_plan_view pv;
  uint64_t host_bytes, dev_bytes;
  char needle[160];       /* what the message must contain (set by a case, else the table's) */
  int skip;               /* a case sets this when it does not apply here */
} ctx;

/* ---- valid baselines ---- */

static moert_route_args route_args(ctx *c) {
  moert_route_args a;
  memset(&a, 0, sizeof a);
  a.struct_size = sizeof a;
  a.num_tokens = c->T;
  a.logits_dtype = MOERT_DTYPE_F32;
  a.memory = MOERT_MEMORY_HOST;
  a.logits = c->logits;
  return a;
}

static moert_forward_args fwd_args(ctx *c) {
  moert_forward_args a;
  memset(&a, 0, sizeof a);
  a.struct_size = sizeof a;
  a.experts = c->ex;
  a.memory = MOERT_MEMORY_HOST;
  a.x = c->x;
  a.y = c->y;
  return a;
}

static moert_runtime_options rt_opts(void) {
  moert_runtime_options o;
  MT_OK(moert_runtime_options_init(&o));
  o.backend = MOERT_BACKEND_CPU;
  o.num_threads = 1;
  return o;
}

static moert_experts_desc weights_for(ctx *c, moert_weight_layout layout) {
  moert_experts_desc w = c->w;
  w.layout = layout;
  return w;
}

static void ctx_init(ctx *c, int index, int routed) {
  memset(c, 0, sizeof *c);
  mt_rng_for_test(&c->rng, "misuse", index);
  c->rt = mt_cpu_runtime(2);
  MT_OK(moert_layer_desc_init(&c->d));
  c->d.num_experts = E;
  c->d.top_k = K;
  c->d.hidden = H;
  c->d.intermediate = I;
  c->d.act_dtype = MOERT_DTYPE_F32;
  c->d.weight_dtype = MOERT_DTYPE_BF16;
  c->d_sig = c->d;
  c->d_sig.router = MOERT_ROUTER_SIGMOID_GROUP_TOPK;
  c->d_sig.n_group = 4;
  c->d_sig.topk_group = 2;
  c->d_sig.routed_scaling_factor = 2.5f;
  const size_t mat = (size_t)I * H, nw = 3 * E * mat + 3 * (size_t)IS * H + H;
  c->wbuf = mt_alloc(nw * 2);
  mt_fill_uniform(&c->rng, c->wbuf, MOERT_DTYPE_BF16, nw, -0.2, 0.2);
  memset(&c->w, 0, sizeof c->w);
  c->w.struct_size = sizeof c->w;
  c->w.layout = MOERT_LAYOUT_STACKED;
  c->w.memory = MOERT_MEMORY_HOST;
  c->w.gate = c->wbuf;
  c->w.gate_up = c->wbuf;
  c->w.up = c->wbuf + E * mat;
  c->w.down = c->wbuf + 2 * E * mat;
  for (int e = 0; e < E; e++) {
    c->ptrs[0][e] = c->wbuf + e * mat;
    c->ptrs[1][e] = c->wbuf + (E + e) * mat;
    c->ptrs[2][e] = c->wbuf + (2 * E + e) * mat;
  }
  c->w.gate_ptrs = c->ptrs[0];
  c->w.up_ptrs = c->ptrs[1];
  c->w.down_ptrs = c->ptrs[2];
  uint16_t *sh = c->wbuf + 3 * E * mat;
  c->w.shared_gate = sh;
  c->w.shared_up = sh + IS * H;
  c->w.shared_down = sh + 2 * IS * H;
  c->w.shared_expert_gate = sh + 3 * IS * H;
  MT_OK(moert_scratch_create(c->rt, &c->d, MAXT, &c->s));
  MT_OK(moert_scratch_create(c->rt, &c->d_sig, MAXT, &c->s_sig));
  MT_OK(moert_experts_create(c->rt, &c->d, &c->w, &c->ex));
  c->T = 2 + mt_below(&c->rng, MAXT - 1); /* >= 2: strides matter */
  mt_fill_uniform(&c->rng, c->logits, MOERT_DTYPE_F32, MAXT * E * 2, -4, 4);
  mt_fill_uniform(&c->rng, c->logits16, MOERT_DTYPE_BF16, MAXT * E, -4, 4);
  mt_fill_uniform(&c->rng, c->bias, MOERT_DTYPE_F32, E, -0.5, 0.5);
  mt_fill_uniform(&c->rng, c->x, MOERT_DTYPE_F32, MAXT * H * 2, -1, 1);
  mt_poison(c->y, MOERT_DTYPE_F32, sizeof c->y / sizeof c->y[0]);
  for (uint32_t t = 0; t < MAXT; t++) { /* k distinct experts per token, random weights */
    int32_t perm[E];
    for (int e = 0; e < E; e++) perm[e] = e;
    mt_shuffle_i32(&c->rng, perm, E);
    for (int j = 0; j < K; j++) {
      c->ids[t * K + j] = perm[j];
      c->wts[t * K + j] = (float)mt_uniform(&c->rng, 0.05, 1.0);
    }
  }
  if (routed) {
    moert_route_args a = route_args(c);
    MT_OK(moert_route(c->s, &a, NULL));
    MT_OK(moert_route(c->s_sig, &a, NULL));
  }
  c->out_rt = SENTINEL;
  c->out_s = SENTINEL;
  c->out_ex = SENTINEL;
  mt_poison_bytes(&c->rv, sizeof c->rv);
  c->rv.struct_size = sizeof c->rv;
  mt_poison_bytes(&c->pv, sizeof c->pv);
  c->pv.struct_size = sizeof c->pv;
  c->host_bytes = c->dev_bytes = 0x5e5e5e5e;
}

static void ctx_fini(ctx *c) {
  moert_experts_destroy(c->ex);
  moert_scratch_destroy(c->s);
  moert_scratch_destroy(c->s_sig);
  moert_runtime_destroy(c->rt);
  mt_free(c->wbuf);
}

/* ---- the cases ---------------------------------------------------------------------- */

typedef moert_status (*case_fn)(ctx *c);

#define CASE(name) static moert_status name(ctx *c)

/* runtime */
CASE(rt_options_init_null) { (void)c; return moert_runtime_options_init(NULL); }
CASE(rt_out_null) { moert_runtime_options o = rt_opts(); (void)c; return moert_runtime_create(&o, NULL); }
CASE(rt_size_zero) {
  moert_runtime_options o = rt_opts();
  o.struct_size = 0;
  return moert_runtime_create(&o, &c->out_rt);
}
CASE(rt_size_huge) {
  moert_runtime_options o = rt_opts();
  o.struct_size = UINT32_MAX;
  return moert_runtime_create(&o, &c->out_rt);
}
CASE(rt_backend_3) {
  moert_runtime_options o = rt_opts();
  o.backend = 3;
  return moert_runtime_create(&o, &c->out_rt);
}
CASE(rt_backend_max) {
  moert_runtime_options o = rt_opts();
  o.backend = UINT32_MAX;
  return moert_runtime_create(&o, &c->out_rt);
}
CASE(rt_device_negative) {
  moert_runtime_options o = rt_opts();
  o.backend = MOERT_BACKEND_AUTO;
  o.device_ordinal = -1 - (int32_t)mt_below(&c->rng, 1000);
  snprintf(c->needle, sizeof c->needle, "device_ordinal %d", o.device_ordinal);
  return moert_runtime_create(&o, &c->out_rt);
}
CASE(rt_threads_huge) {
  moert_runtime_options o = rt_opts();
  o.num_threads = 1025 + mt_below(&c->rng, 1u << 30);
  snprintf(c->needle, sizeof c->needle, "num_threads %u", o.num_threads);
  return moert_runtime_create(&o, &c->out_rt);
}
CASE(rt_cuda_without_gpu) {
  moert_runtime *probe = NULL;
  MT_OK(moert_runtime_create(NULL, &probe));
  c->skip = moert_runtime_backend(probe) == MOERT_BACKEND_CUDA;
  moert_runtime_destroy(probe);
  moert_runtime_options o = rt_opts();
  o.backend = MOERT_BACKEND_CUDA;
  return moert_runtime_create(&o, &c->out_rt);
}

/* layer desc / scratch */
CASE(desc_init_null) { (void)c; return moert_layer_desc_init(NULL); }
CASE(scratch_rt_null) { return moert_scratch_create(NULL, &c->d, MAXT, &c->out_s); }
CASE(scratch_desc_null) { return moert_scratch_create(c->rt, NULL, MAXT, &c->out_s); }
CASE(scratch_out_null) { return moert_scratch_create(c->rt, &c->d, MAXT, NULL); }
CASE(scratch_max_tokens_zero) { return moert_scratch_create(c->rt, &c->d, 0, &c->out_s); }
CASE(scratch_max_tokens_huge) { return moert_scratch_create(c->rt, &c->d, UINT32_MAX, &c->out_s); }
CASE(scratch_desc_size) {
  moert_layer_desc d = c->d;
  d.struct_size = sizeof d - 4;
  return moert_scratch_create(c->rt, &d, MAXT, &c->out_s);
}
CASE(scratch_e_zero) {
  moert_layer_desc d = c->d;
  d.num_experts = 0;
  return moert_scratch_create(c->rt, &d, MAXT, &c->out_s);
}
CASE(scratch_k_over_e) {
  moert_layer_desc d = c->d;
  d.num_experts = 2 + mt_below(&c->rng, 14);
  d.top_k = d.num_experts + 1;
  snprintf(c->needle, sizeof c->needle, "top_k %u is more than num_experts %u", d.top_k,
           d.num_experts);
  return moert_scratch_create(c->rt, &d, MAXT, &c->out_s);
}
CASE(scratch_k_zero) {
  moert_layer_desc d = c->d;
  d.top_k = 0;
  return moert_scratch_create(c->rt, &d, MAXT, &c->out_s);
}
CASE(scratch_hidden_huge) {
  moert_layer_desc d = c->d;
  d.hidden = UINT32_MAX;
  return moert_scratch_create(c->rt, &d, MAXT, &c->out_s);
}
CASE(scratch_intermediate_zero) {
  moert_layer_desc d = c->d;
  d.intermediate = 0;
  return moert_scratch_create(c->rt, &d, MAXT, &c->out_s);
}
CASE(scratch_act_dtype_4) {
  moert_layer_desc d = c->d;
  d.act_dtype = 4;
  return moert_scratch_create(c->rt, &d, MAXT, &c->out_s);
}
CASE(scratch_weight_dtype_max) {
  moert_layer_desc d = c->d;
  d.weight_dtype = UINT32_MAX;
  return moert_scratch_create(c->rt, &d, MAXT, &c->out_s);
}
CASE(scratch_router_3) {
  moert_layer_desc d = c->d;
  d.router = 3;
  return moert_scratch_create(c->rt, &d, MAXT, &c->out_s);
}
CASE(scratch_groups_on_softmax) {
  moert_layer_desc d = c->d;
  d.n_group = 4;
  d.topk_group = 2;
  return moert_scratch_create(c->rt, &d, MAXT, &c->out_s);
}
CASE(scratch_shared_gate_2) {
  moert_layer_desc d = c->d;
  d.shared_intermediate = IS;
  d.shared_gate = 2;
  return moert_scratch_create(c->rt, &d, MAXT, &c->out_s);
}
CASE(scratch_block_rows_huge) {
  moert_layer_desc d = c->d;
  d.plan_block_rows = 1025 + mt_below(&c->rng, 100000);
  snprintf(c->needle, sizeof c->needle, "plan_block_rows %u", d.plan_block_rows);
  return moert_scratch_create(c->rt, &d, MAXT, &c->out_s);
}
CASE(scratch_scale_inf) {
  moert_layer_desc d = c->d;
  d.routed_scaling_factor = __builtin_inff();
  return moert_scratch_create(c->rt, &d, MAXT, &c->out_s);
}
CASE(scratch_renormalize_7) {
  moert_layer_desc d = c->d;
  d.renormalize = 7;
  return moert_scratch_create(c->rt, &d, MAXT, &c->out_s);
}
/* every dimension at its cap: terabytes of arena, which malloc refuses */
CASE(scratch_out_of_memory) {
  moert_layer_desc d = c->d;
  d.hidden = 1u << 20;
  d.intermediate = 1u << 20;
  d.num_experts = 512;
  d.top_k = 16;
  return moert_scratch_create(c->rt, &d, 1u << 22, &c->out_s);
}
CASE(scratch_memory_null) { return moert_scratch_memory(NULL, &c->host_bytes, &c->dev_bytes); }
CASE(scratch_prepare_null) { (void)c; return moert_scratch_prepare(NULL); }

/* experts */
CASE(experts_rt_null) { return moert_experts_create(NULL, &c->d, &c->w, &c->out_ex); }
CASE(experts_weights_null) { return moert_experts_create(c->rt, &c->d, NULL, &c->out_ex); }
CASE(experts_desc_null) { return moert_experts_create(c->rt, NULL, &c->w, &c->out_ex); }
CASE(experts_out_null) { return moert_experts_create(c->rt, &c->d, &c->w, NULL); }
CASE(experts_size) {
  moert_experts_desc w = c->w;
  w.struct_size = sizeof w + 8;
  return moert_experts_create(c->rt, &c->d, &w, &c->out_ex);
}
CASE(experts_layout_0) { moert_experts_desc w = weights_for(c, 0); return moert_experts_create(c->rt, &c->d, &w, &c->out_ex); }
CASE(experts_layout_4) { moert_experts_desc w = weights_for(c, 4); return moert_experts_create(c->rt, &c->d, &w, &c->out_ex); }
CASE(experts_memory_0) {
  moert_experts_desc w = c->w;
  w.memory = 0;
  return moert_experts_create(c->rt, &c->d, &w, &c->out_ex);
}
CASE(experts_device_on_cpu) {
  moert_experts_desc w = c->w;
  w.memory = MOERT_MEMORY_DEVICE;
  return moert_experts_create(c->rt, &c->d, &w, &c->out_ex);
}
CASE(experts_gate_null) {
  moert_experts_desc w = c->w;
  w.gate = NULL;
  return moert_experts_create(c->rt, &c->d, &w, &c->out_ex);
}
CASE(experts_gate_up_null) {
  moert_experts_desc w = weights_for(c, MOERT_LAYOUT_STACKED_GATE_UP);
  w.gate_up = NULL;
  return moert_experts_create(c->rt, &c->d, &w, &c->out_ex);
}
CASE(experts_one_ptr_null) {
  moert_experts_desc w = weights_for(c, MOERT_LAYOUT_PER_EXPERT);
  const void *table[E];
  memcpy(table, c->ptrs[2], sizeof table);
  uint32_t e = mt_below(&c->rng, E);
  table[e] = NULL;
  w.down_ptrs = table;
  snprintf(c->needle, sizeof c->needle, "expert %u have", e);
  return moert_experts_create(c->rt, &c->d, &w, &c->out_ex);
}
CASE(experts_shared_null) {
  moert_layer_desc d = c->d;
  d.shared_intermediate = IS;
  d.shared_gate = MOERT_SHARED_GATE_SIGMOID;
  moert_experts_desc w = c->w;
  w.shared_expert_gate = NULL;
  return moert_experts_create(c->rt, &d, &w, &c->out_ex);
}
CASE(experts_bad_desc) {
  moert_layer_desc d = c->d;
  d.top_k = 17;
  return moert_experts_create(c->rt, &d, &c->w, &c->out_ex);
}

/* route */
CASE(route_scratch_null) { moert_route_args a = route_args(c); return moert_route(NULL, &a, NULL); }
CASE(route_args_null) { return moert_route(c->s, NULL, NULL); }
CASE(route_size) {
  moert_route_args a = route_args(c);
  a.struct_size = sizeof a - 8;
  return moert_route(c->s, &a, NULL);
}
CASE(route_too_many_tokens) {
  moert_route_args a = route_args(c);
  a.num_tokens = MAXT + 1 + mt_below(&c->rng, 1000);
  snprintf(c->needle, sizeof c->needle, "num_tokens %u", a.num_tokens);
  return moert_route(c->s, &a, NULL);
}
CASE(route_tokens_max) {
  moert_route_args a = route_args(c);
  a.num_tokens = UINT32_MAX;
  return moert_route(c->s, &a, NULL);
}
CASE(route_dtype_0) {
  moert_route_args a = route_args(c);
  a.logits_dtype = 0;
  return moert_route(c->s, &a, NULL);
}
CASE(route_memory_3) {
  moert_route_args a = route_args(c);
  a.memory = 3;
  return moert_route(c->s, &a, NULL);
}
CASE(route_logits_null) {
  moert_route_args a = route_args(c);
  a.logits = NULL;
  return moert_route(c->s, &a, NULL);
}
CASE(route_stride_small) {
  moert_route_args a = route_args(c);
  a.logits_row_stride = 1 + mt_below(&c->rng, E - 1);
  snprintf(c->needle, sizeof c->needle, "logits_row_stride %u", (unsigned)a.logits_row_stride);
  return moert_route(c->s, &a, NULL);
}
CASE(route_stride_overflow) {
  moert_route_args a = route_args(c);
  a.num_tokens = 2 + mt_below(&c->rng, MAXT - 1);
  a.logits_row_stride = UINT64_MAX / 2 + mt_below(&c->rng, 1000);
  return moert_route(c->s, &a, NULL);
}
CASE(route_mode_3) {
  moert_route_args a = route_args(c);
  a.mode = 3;
  return moert_route(c->s, &a, NULL);
}
CASE(route_device_logits_on_cpu) {
  moert_route_args a = route_args(c);
  a.memory = MOERT_MEMORY_DEVICE;
  return moert_route(c->s, &a, NULL);
}
CASE(route_device_mode_on_cpu) {
  moert_route_args a = route_args(c);
  a.mode = MOERT_ROUTING_DEVICE;
  return moert_route(c->s, &a, NULL);
}
/* a NaN at a random (token, expert): the message names the token */
static moert_status nan_case(ctx *c, moert_scratch *s, moert_dtype dt) {
  moert_route_args a = route_args(c);
  uint32_t t = mt_below(&c->rng, c->T), e = mt_below(&c->rng, E);
  a.logits_dtype = dt;
  if (dt == MOERT_DTYPE_F32) {
    c->logits[t * E + e] = __builtin_nanf("");
  } else {
    if (dt == MOERT_DTYPE_F16) /* the bf16 values, re-encoded as f16 */
      for (int i = 0; i < MAXT * E; i++)
        c->logits16[i] = mt_f32_to_f16(mt_bf16_to_f32(c->logits16[i]));
    c->logits16[t * E + e] = dt == MOERT_DTYPE_BF16 ? 0x7fc1 : 0xfe01;
    a.logits = c->logits16;
  }
  snprintf(c->needle, sizeof c->needle, "token %u, expert %u is NaN", t, e);
  return moert_route(s, &a, NULL);
}
CASE(route_nan_f32) { return nan_case(c, c->s, MOERT_DTYPE_F32); }
CASE(route_nan_bf16) { return nan_case(c, c->s, MOERT_DTYPE_BF16); }
CASE(route_nan_f16) { return nan_case(c, c->s, MOERT_DTYPE_F16); }
CASE(route_nan_sigmoid) { return nan_case(c, c->s_sig, MOERT_DTYPE_F32); }
CASE(route_bias_inf) {
  moert_route_args a = route_args(c);
  uint32_t e = mt_below(&c->rng, E);
  c->bias[e] = -__builtin_inff();
  a.correction_bias = c->bias;
  snprintf(c->needle, sizeof c->needle, "correction_bias[%u]", e);
  return moert_route(c->s_sig, &a, NULL);
}
CASE(route_bias_nan) {
  moert_route_args a = route_args(c);
  uint32_t e = mt_below(&c->rng, E);
  c->bias[e] = __builtin_nanf("");
  a.correction_bias = c->bias;
  snprintf(c->needle, sizeof c->needle, "correction_bias[%u]", e);
  return moert_route(c->s_sig, &a, NULL);
}

/* set_routing */
CASE(set_scratch_null) { return moert_set_routing(NULL, c->T, c->ids, c->wts, NULL); }
CASE(set_ids_null) { return moert_set_routing(c->s, c->T, NULL, c->wts, NULL); }
CASE(set_weights_null) { return moert_set_routing(c->s, c->T, c->ids, NULL, NULL); }
CASE(set_too_many_tokens) { return moert_set_routing(c->s, MAXT + 1, c->ids, c->wts, NULL); }
CASE(set_id_too_big) {
  uint32_t t = mt_below(&c->rng, c->T), j = mt_below(&c->rng, K);
  c->ids[t * K + j] = E + (int32_t)mt_below(&c->rng, 1000);
  snprintf(c->needle, sizeof c->needle, "expert id %d of token %u, slot %u", c->ids[t * K + j], t, j);
  return moert_set_routing(c->s, c->T, c->ids, c->wts, NULL);
}
CASE(set_id_negative) {
  uint32_t t = mt_below(&c->rng, c->T), j = mt_below(&c->rng, K);
  c->ids[t * K + j] = INT32_MIN;
  snprintf(c->needle, sizeof c->needle, "token %u, slot %u", t, j);
  return moert_set_routing(c->s, c->T, c->ids, c->wts, NULL);
}
CASE(set_id_duplicate) {
  uint32_t t = mt_below(&c->rng, c->T), j = 1 + mt_below(&c->rng, K - 1);
  c->ids[t * K + j] = c->ids[t * K];
  snprintf(c->needle, sizeof c->needle, "token %u names expert %d twice", t, c->ids[t * K]);
  return moert_set_routing(c->s, c->T, c->ids, c->wts, NULL);
}
CASE(set_weight_nan) {
  uint32_t t = mt_below(&c->rng, c->T), j = mt_below(&c->rng, K);
  c->wts[t * K + j] = __builtin_nanf("");
  snprintf(c->needle, sizeof c->needle, "token %u, slot %u is not finite", t, j);
  return moert_set_routing(c->s, c->T, c->ids, c->wts, NULL);
}
CASE(set_weight_inf) {
  uint32_t t = mt_below(&c->rng, c->T), j = mt_below(&c->rng, K);
  c->wts[t * K + j] = -__builtin_inff();
  snprintf(c->needle, sizeof c->needle, "token %u, slot %u is not finite", t, j);
  return moert_set_routing(c->s, c->T, c->ids, c->wts, NULL);
}

/* forward */
CASE(fwd_scratch_null) { moert_forward_args a = fwd_args(c); return moert_forward(NULL, &a, NULL); }
CASE(fwd_args_null) { return moert_forward(c->s, NULL, NULL); }
CASE(fwd_size) {
  moert_forward_args a = fwd_args(c);
  a.struct_size = 1;
  return moert_forward(c->s, &a, NULL);
}
CASE(fwd_experts_null) {
  moert_forward_args a = fwd_args(c);
  a.experts = NULL;
  return moert_forward(c->s, &a, NULL);
}
CASE(fwd_before_route) { moert_forward_args a = fwd_args(c); return moert_forward(c->s, &a, NULL); }
CASE(fwd_after_failed_route) {
  c->logits[mt_below(&c->rng, c->T * E)] = __builtin_nanf("");
  moert_route_args r = route_args(c);
  MT_ASSERT_STATUS(moert_route(c->s, &r, NULL), MOERT_ERR_NAN_LOGIT);
  moert_forward_args a = fwd_args(c);
  return moert_forward(c->s, &a, NULL);
}
CASE(fwd_x_null) {
  moert_forward_args a = fwd_args(c);
  a.x = NULL;
  return moert_forward(c->s, &a, NULL);
}
CASE(fwd_y_null) {
  moert_forward_args a = fwd_args(c);
  a.y = NULL;
  return moert_forward(c->s, &a, NULL);
}
CASE(fwd_memory_0) {
  moert_forward_args a = fwd_args(c);
  a.memory = 0;
  return moert_forward(c->s, &a, NULL);
}
CASE(fwd_memory_device) {
  moert_forward_args a = fwd_args(c);
  a.memory = MOERT_MEMORY_DEVICE;
  return moert_forward(c->s, &a, NULL);
}
CASE(fwd_accumulate_2) {
  moert_forward_args a = fwd_args(c);
  a.accumulate = 2 + mt_below(&c->rng, 1000);
  snprintf(c->needle, sizeof c->needle, "accumulate is %u", a.accumulate);
  return moert_forward(c->s, &a, NULL);
}
CASE(fwd_x_stride_small) {
  moert_forward_args a = fwd_args(c);
  a.x_row_stride = 1 + mt_below(&c->rng, H - 1);
  return moert_forward(c->s, &a, NULL);
}
CASE(fwd_y_stride_small) {
  moert_forward_args a = fwd_args(c);
  a.y_row_stride = 1 + mt_below(&c->rng, H - 1);
  return moert_forward(c->s, &a, NULL);
}
CASE(fwd_y_stride_overflow) {
  moert_forward_args a = fwd_args(c);
  a.y_row_stride = UINT64_MAX - mt_below(&c->rng, 1000);
  return moert_forward(c->s, &a, NULL);
}
CASE(fwd_overlap_partial) {
  moert_forward_args a = fwd_args(c);
  a.y = c->x + 1 + mt_below(&c->rng, c->T * H - 1); /* starts inside x */
  return moert_forward(c->s, &a, NULL);
}
CASE(fwd_x_is_y) {
  moert_forward_args a = fwd_args(c);
  a.y = c->x;
  return moert_forward(c->s, &a, NULL);
}
CASE(fwd_interleaved) { /* x and y rows interleaved in one buffer: the spans overlap */
  moert_forward_args a = fwd_args(c);
  a.y = c->x + H;
  a.x_row_stride = a.y_row_stride = 2 * H;
  return moert_forward(c->s, &a, NULL);
}
CASE(fwd_other_runtime) { /* scratch of this runtime, experts of another */
  moert_runtime_options o = rt_opts();
  moert_runtime *rt2 = NULL;
  MT_OK(moert_runtime_create(&o, &rt2));
  moert_experts *ex2 = NULL;
  MT_OK(moert_experts_create(rt2, &c->d, &c->w, &ex2));
  moert_forward_args a = fwd_args(c);
  a.experts = ex2;
  moert_status st = moert_forward(c->s, &a, NULL);
  moert_experts_destroy(ex2);
  moert_runtime_destroy(rt2);
  return st;
}
static moert_status mismatch(ctx *c, moert_layer_desc d) {
  moert_experts *ex2 = NULL;
  moert_experts_desc w = c->w;
  MT_OK(moert_experts_create(c->rt, &d, &w, &ex2));
  moert_forward_args a = fwd_args(c);
  a.experts = ex2;
  moert_status st = moert_forward(c->s, &a, NULL);
  moert_experts_destroy(ex2);
  return st;
}
CASE(fwd_weight_dtype_mismatch) {
  moert_layer_desc d = c->d;
  d.weight_dtype = mt_below(&c->rng, 2) ? MOERT_DTYPE_F16 : MOERT_DTYPE_F32;
  return mismatch(c, d);
}
CASE(fwd_hidden_mismatch) {
  moert_layer_desc d = c->d;
  d.hidden = H / 2;
  return mismatch(c, d);
}
CASE(fwd_experts_count_mismatch) {
  moert_layer_desc d = c->d;
  d.num_experts = E / 2;
  return mismatch(c, d);
}
CASE(fwd_shared_mismatch) {
  moert_layer_desc d = c->d;
  d.shared_intermediate = IS;
  return mismatch(c, d);
}

/* moe */
CASE(moe_forward_null) { moert_route_args r = route_args(c); return moert_moe(c->s, &r, NULL, NULL); }
CASE(moe_route_null) { moert_forward_args f = fwd_args(c); return moert_moe(c->s, NULL, &f, NULL); }
CASE(moe_nan) {
  moert_route_args r = route_args(c);
  uint32_t t = mt_below(&c->rng, c->T);
  c->logits[t * E + mt_below(&c->rng, E)] = __builtin_nanf("");
  snprintf(c->needle, sizeof c->needle, "token %u,", t);
  moert_forward_args f = fwd_args(c);
  f.accumulate = 1;
  return moert_moe(c->s, &r, &f, NULL);
}
CASE(moe_other_runtime) {
  moert_runtime_options o = rt_opts();
  moert_runtime *rt2 = NULL;
  MT_OK(moert_runtime_create(&o, &rt2));
  moert_experts *ex2 = NULL;
  MT_OK(moert_experts_create(rt2, &c->d, &c->w, &ex2));
  moert_route_args r = route_args(c);
  moert_forward_args f = fwd_args(c);
  f.experts = ex2;
  moert_status st = moert_moe(c->s, &r, &f, NULL);
  moert_experts_destroy(ex2);
  moert_runtime_destroy(rt2);
  return st;
}

/* views */
CASE(view_routing_null) { return moert_scratch_routing(c->s, NULL); }
CASE(view_routing_size) { c->rv.struct_size = 0; return moert_scratch_routing(c->s, &c->rv); }
CASE(view_plan_size) { c->pv.struct_size = sizeof c->pv * 2; return moert_scratch_plan(c->s, &c->pv); }
CASE(view_routing_unrouted) { return moert_scratch_routing(c->s, &c->rv); }
CASE(view_plan_unrouted) { return moert_scratch_plan(c->s, &c->pv); }
CASE(view_plan_scratch_null) { return moert_scratch_plan(NULL, &c->pv); }

typedef struct mcase {
  const char *name;
  case_fn fn;
  moert_status want;
  const char *needle; /* a word the message must contain (a case may set a longer one) */
  int unrouted;       /* run on a scratch that was never routed */
} mcase;

#define NP MOERT_ERR_NULL_POINTER
#define IA MOERT_ERR_INVALID_ARGUMENT
#define SZ MOERT_ERR_STRUCT_SIZE
#define UN MOERT_ERR_UNSUPPORTED
#define C(fn, want, needle) {#fn, fn, want, needle, 0}
#define CU(fn, want, needle) {#fn, fn, want, needle, 1}

static const mcase cases[] = {
    C(rt_options_init_null, NP, "o is NULL"),
    C(rt_out_null, NP, "out is NULL"),
    C(rt_size_zero, SZ, "struct_size is 0"),
    C(rt_size_huge, SZ, "struct_size is 4294967295"),
    C(rt_backend_3, IA, "backend 3"),
    C(rt_backend_max, IA, "backend 4294967295"),
    C(rt_device_negative, IA, "device_ordinal"),
    C(rt_threads_huge, IA, "num_threads"),
    C(rt_cuda_without_gpu, MOERT_ERR_BACKEND_UNAVAILABLE, "cuda"),
    C(desc_init_null, NP, "d is NULL"),
    C(scratch_rt_null, NP, "rt is NULL"),
    C(scratch_desc_null, NP, "desc is NULL"),
    C(scratch_out_null, NP, "out is NULL"),
    C(scratch_max_tokens_zero, IA, "max_tokens 0"),
    C(scratch_max_tokens_huge, IA, "max_tokens 4294967295"),
    C(scratch_desc_size, SZ, "struct_size"),
    C(scratch_e_zero, IA, "num_experts 0"),
    C(scratch_k_over_e, IA, "top_k"),
    C(scratch_k_zero, IA, "top_k 0"),
    C(scratch_hidden_huge, IA, "hidden 4294967295"),
    C(scratch_intermediate_zero, IA, "intermediate 0"),
    C(scratch_act_dtype_4, IA, "act_dtype 4"),
    C(scratch_weight_dtype_max, IA, "weight_dtype"),
    C(scratch_router_3, IA, "router kind 3"),
    C(scratch_groups_on_softmax, UN, "n_group 4"),
    C(scratch_shared_gate_2, IA, "shared_gate 2"),
    C(scratch_block_rows_huge, IA, "plan_block_rows"),
    C(scratch_scale_inf, IA, "routed_scaling_factor"),
    C(scratch_renormalize_7, IA, "renormalize is 7"),
    C(scratch_out_of_memory, MOERT_ERR_OUT_OF_MEMORY, "arena"),
    C(scratch_memory_null, NP, "s is NULL"),
    C(scratch_prepare_null, NP, "s is NULL"),
    C(experts_rt_null, NP, "rt is NULL"),
    C(experts_weights_null, NP, "w is NULL"),
    C(experts_desc_null, NP, "desc is NULL"),
    C(experts_out_null, NP, "out is NULL"),
    C(experts_size, SZ, "struct_size"),
    C(experts_layout_0, IA, "layout 0"),
    C(experts_layout_4, IA, "layout 4"),
    C(experts_memory_0, IA, "memory kind 0"),
    C(experts_device_on_cpu, UN, "device memory"),
    C(experts_gate_null, NP, "w->gate is NULL"),
    C(experts_gate_up_null, NP, "w->gate_up is NULL"),
    C(experts_one_ptr_null, NP, "expert"),
    C(experts_shared_null, NP, "w->shared_expert_gate is NULL"),
    C(experts_bad_desc, IA, "top_k 17"),
    C(route_scratch_null, NP, "s is NULL"),
    C(route_args_null, NP, "a is NULL"),
    C(route_size, SZ, "struct_size"),
    C(route_too_many_tokens, MOERT_ERR_TOO_MANY_TOKENS, "max_tokens 8"),
    C(route_tokens_max, MOERT_ERR_TOO_MANY_TOKENS, "num_tokens 4294967295"),
    C(route_dtype_0, IA, "logits_dtype 0"),
    C(route_memory_3, IA, "memory kind 3"),
    C(route_logits_null, NP, "logits"),
    C(route_stride_small, IA, "logits_row_stride"),
    C(route_stride_overflow, IA, "address space"),
    C(route_mode_3, IA, "routing mode 3"),
    C(route_device_logits_on_cpu, UN, "device logits"),
    C(route_device_mode_on_cpu, UN, "device routing"),
    C(route_nan_f32, MOERT_ERR_NAN_LOGIT, "NaN"),
    C(route_nan_bf16, MOERT_ERR_NAN_LOGIT, "NaN"),
    C(route_nan_f16, MOERT_ERR_NAN_LOGIT, "NaN"),
    C(route_nan_sigmoid, MOERT_ERR_NAN_LOGIT, "NaN"),
    C(route_bias_inf, IA, "correction_bias"),
    C(route_bias_nan, IA, "correction_bias"),
    C(set_scratch_null, NP, "s is NULL"),
    C(set_ids_null, NP, "expert_ids is NULL"),
    C(set_weights_null, NP, "expert_weights is NULL"),
    C(set_too_many_tokens, MOERT_ERR_TOO_MANY_TOKENS, "num_tokens 9"),
    C(set_id_too_big, MOERT_ERR_EXPERT_ID, "expert id"),
    C(set_id_negative, MOERT_ERR_EXPERT_ID, "-2147483648"),
    C(set_id_duplicate, MOERT_ERR_EXPERT_ID, "twice"),
    C(set_weight_nan, IA, "not finite"),
    C(set_weight_inf, IA, "not finite"),
    C(fwd_scratch_null, NP, "s is NULL"),
    C(fwd_args_null, NP, "a is NULL"),
    C(fwd_size, SZ, "struct_size is 1"),
    C(fwd_experts_null, NP, "experts is NULL"),
    CU(fwd_before_route, MOERT_ERR_NOT_ROUTED, "moert_route"),
    C(fwd_after_failed_route, MOERT_ERR_NOT_ROUTED, "failed route"),
    C(fwd_x_null, NP, "x is NULL"),
    C(fwd_y_null, NP, "y is NULL"),
    C(fwd_memory_0, IA, "memory kind 0"),
    C(fwd_memory_device, UN, "device"),
    C(fwd_accumulate_2, IA, "accumulate"),
    C(fwd_x_stride_small, IA, "row strides"),
    C(fwd_y_stride_small, IA, "row strides"),
    C(fwd_y_stride_overflow, IA, "address space"),
    C(fwd_overlap_partial, IA, "overlap"),
    C(fwd_x_is_y, IA, "overlap"),
    C(fwd_interleaved, IA, "overlap"),
    C(fwd_other_runtime, MOERT_ERR_WRONG_RUNTIME, "different runtimes"),
    C(fwd_weight_dtype_mismatch, MOERT_ERR_SHAPE_MISMATCH, "bf16"),
    C(fwd_hidden_mismatch, MOERT_ERR_SHAPE_MISMATCH, "H 16"),
    C(fwd_experts_count_mismatch, MOERT_ERR_SHAPE_MISMATCH, "E 8"),
    C(fwd_shared_mismatch, MOERT_ERR_SHAPE_MISMATCH, "shared 8"),
    C(moe_forward_null, NP, "f is NULL"),
    C(moe_route_null, NP, "a is NULL"),
    C(moe_nan, MOERT_ERR_NAN_LOGIT, "NaN"),
    C(moe_other_runtime, MOERT_ERR_WRONG_RUNTIME, "different runtimes"),
    C(view_routing_null, NP, "v is NULL"),
    C(view_routing_size, SZ, "struct_size is 0"),
    C(view_plan_size, SZ, "struct_size"),
    CU(view_routing_unrouted, MOERT_ERR_NOT_ROUTED, "nothing routed"),
    CU(view_plan_unrouted, MOERT_ERR_NOT_ROUTED, "nothing routed"),
    C(view_plan_scratch_null, NP, "s is NULL"),
};
#define NUM_CASES ((int)(sizeof cases / sizeof cases[0]))

/* ---- the runner --------------------------------------------------------------------- */

/* What a failed call must not change, copied before it. */
typedef struct snapshot {
  float logits[MAXT * E * 2];
  uint16_t logits16[MAXT * E];
  float bias[E];
  float x[MAXT * H * 2];
  float y[MAXT * H * 2 + 64];
  int32_t ids[MAXT * K];
  float wts[MAXT * K];
  moert_routing_view rv;
  moert_plan_view pv;
  /* the routing left in the scratch by the last good route */
  int routed;
  int32_t s_ids[MAXT * K];
  float s_w[MAXT * K];
} snapshot;

static void take(const ctx *c, snapshot *p) {
  memcpy(p->logits, c->logits, sizeof p->logits);
  memcpy(p->logits16, c->logits16, sizeof p->logits16);
  memcpy(p->bias, c->bias, sizeof p->bias);
  memcpy(p->x, c->x, sizeof p->x);
  memcpy(p->y, c->y, sizeof p->y);
  memcpy(p->ids, c->ids, sizeof p->ids);
  memcpy(p->wts, c->wts, sizeof p->wts);
  p->rv = c->rv;
  p->pv = c->pv;
}

static char g_primed[256];

START_TEST(misuse) {
  const mcase *mc = &cases[_i];
  ctx *c = calloc(1, sizeof *c);
  snapshot *before = calloc(1, sizeof *before);
  ck_assert_ptr_nonnull(c);
  ck_assert_ptr_nonnull(before);
  ctx_init(c, _i, !mc->unrouted);
  snprintf(c->needle, sizeof c->needle, "%s", mc->needle);
  /* the routing the scratch holds before the call, to compare after set_routing misuse */
  moert_routing_view held = {.struct_size = sizeof held};
  int routed = moert_scratch_routing(c->s, &held) == MOERT_OK;
  if (routed) {
    memcpy(before->s_ids, held.expert_ids, sizeof(int32_t) * held.num_tokens * K);
    memcpy(before->s_w, held.expert_weights, sizeof(float) * held.num_tokens * K);
  }
  /* prime the last error with an unrelated failure: the one checked must be new */
  ck_assert_int_eq(moert_scratch_memory(NULL, NULL, NULL), MOERT_ERR_NULL_POINTER);
  snprintf(g_primed, sizeof g_primed, "%s", moert_last_error());
  /* what the caller owns, before the call (the case may then edit its own inputs) */
  take(c, before);
  moert_status st = mc->fn(c);
  if (c->skip) {
    fprintf(stderr, "misuse case %d %s: does not apply here (skipped)\n", _i, mc->name);
  } else {
    const char *msg = moert_last_error();
    ck_assert_msg(st == mc->want, "case %s: got %d (%s), want %d (%s); last error \"%s\"",
                  mc->name, st, moert_status_string(st), mc->want,
                  moert_status_string(mc->want), msg);
    ck_assert_msg(msg && msg[0], "case %s: moert_last_error() is empty", mc->name);
    ck_assert_msg(strcmp(msg, g_primed) != 0 || mc->fn == scratch_memory_null,
                  "case %s: moert_last_error() still holds the primed message \"%s\"", mc->name,
                  msg);
    ck_assert_msg(strcasestr(msg, c->needle) != NULL,
                  "case %s: the message \"%s\" does not name the problem (\"%s\")", mc->name, msg,
                  c->needle);
    /* outputs untouched */
    ck_assert_msg(c->out_rt == SENTINEL && c->out_s == SENTINEL && c->out_ex == SENTINEL,
                  "case %s wrote an *out handle", mc->name);
    ck_assert_msg(memcmp(c->y, before->y, sizeof c->y) == 0, "case %s wrote y", mc->name);
    ck_assert_msg(memcmp(&c->rv, &before->rv, sizeof c->rv) == 0 ||
                      mc->fn == view_routing_size,
                  "case %s wrote the routing view", mc->name);
    ck_assert_msg(memcmp(&c->pv, &before->pv, sizeof c->pv) == 0 || mc->fn == view_plan_size,
                  "case %s wrote the plan view", mc->name);
    ck_assert_msg(c->host_bytes == 0x5e5e5e5e && c->dev_bytes == 0x5e5e5e5e,
                  "case %s wrote the memory figures", mc->name);
    /* inputs the case did not edit are as they were; x is never written */
    ck_assert_msg(memcmp(c->x, before->x, sizeof c->x) == 0, "case %s wrote x", mc->name);
    /* a failed set_routing keeps the previous routing */
    if (routed && strncmp(mc->name, "set_", 4) == 0) {
      moert_routing_view now = {.struct_size = sizeof now};
      MT_OK(moert_scratch_routing(c->s, &now));
      ck_assert_msg(now.num_tokens == held.num_tokens &&
                        memcmp(now.expert_ids, before->s_ids, sizeof(int32_t) * now.num_tokens * K) == 0 &&
                        memcmp(now.expert_weights, before->s_w, sizeof(float) * now.num_tokens * K) == 0,
                    "case %s: a rejected set_routing changed the scratch's routing", mc->name);
    }
    /* and the library still works after the misuse: a good route + forward writes y */
    moert_route_args r = route_args(c);
    mt_fill_uniform(&c->rng, c->logits, MOERT_DTYPE_F32, MAXT * E, -4, 4);
    moert_forward_args f = fwd_args(c);
    MT_OK(moert_moe(c->s, &r, &f, NULL));
    for (uint32_t i = 0; i < c->T * H; i++)
      ck_assert_msg(!mt_is_poison(c->y, MOERT_DTYPE_F32, i) && c->y[i] == c->y[i],
                    "case %s: the good call after it left y[%u] unwritten", mc->name, i);
    for (uint32_t i = c->T * H; i < sizeof c->y / sizeof c->y[0]; i++)
      ck_assert_msg(mt_is_poison(c->y, MOERT_DTYPE_F32, i), "y[%u] past the end written", i);
  }
  ctx_fini(c);
  free(before);
  free(c);
}
END_TEST

/* A last test: the table's size, so the log shows how many distinct misuses ran. */
START_TEST(count) {
  int by_status[MOERT_STATUS_END_] = {0};
  for (int i = 0; i < NUM_CASES; i++) {
    by_status[cases[i].want]++;
    for (int j = 0; j < i; j++)
      ck_assert_msg(cases[i].fn != cases[j].fn, "case %s is in the table twice", cases[i].name);
  }
  ck_assert_int_ge(NUM_CASES, 40);
  fprintf(stderr, "test_misuse: %d distinct misuse cases;", NUM_CASES);
  for (int s = 1; s < MOERT_STATUS_END_; s++)
    if (by_status[s]) {
      const char *name = moert_status_string(s);
      fprintf(stderr, " %.*s %d", (int)strcspn(name, ":"), name, by_status[s]);
    }
  fprintf(stderr, "\n");
}
END_TEST

int main(void) {
  Suite *su = suite_create("misuse");
  TCase *tc = tcase_create("misuse");
  tcase_set_timeout(tc, 120);
  tcase_add_loop_test(tc, misuse, 0, NUM_CASES);
  tcase_add_test(tc, count);
  suite_add_tcase(su, tc);
  fprintf(stderr, "test_misuse: running %d misuse cases\n", NUM_CASES);
  return mt_run_suite(su);
}
