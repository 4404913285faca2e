/* api.c — the public entry points: argument checks (every failure is a status and a
 * sentence, and leaves the caller's memory as it was), handle life cycles, the single
 * arena of each scratch, and dispatch to the backend table. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define CHECK_NULL(fn, p) \
  if (!(p)) return moert_fail(MOERT_ERR_NULL_POINTER, fn ": " #p " is NULL")
#define CHECK_SIZE(fn, p, type)                                                            \
  if ((p)->struct_size != sizeof(type))                                                    \
  return moert_fail(MOERT_ERR_STRUCT_SIZE, fn ": " #p "->struct_size is %u; this library " \
                    "knows " #type " of %zu bytes",                                        \
                    (unsigned)(p)->struct_size, sizeof(type))

/* ---- the CPU backend table: everything is done by the host code in api.c / cpu/ ---- */
static moert_status cpu_forward(moert_scratch *s, const moert_forward_args *a, void *stream) {
  (void)stream;
  return moert_cpu_forward(s, a);
}
const moert_backend_ops moert_cpu_backend = {.name = "cpu", .forward = cpu_forward};

/* Defined by runtime/cuda.  Weak, so a build of the host sources alone (the fuzz targets
 * of tools/fuzz.sh link exactly those) still links and reports that CUDA is absent. */
__attribute__((weak)) moert_status moert_cuda_backend_open(moert_runtime *rt,
                                                           const moert_runtime_options *o);

/* ---- runtime ---- */

MOERT_API moert_status moert_runtime_options_init(moert_runtime_options *o) {
  CHECK_NULL("moert_runtime_options_init", o);
  memset(o, 0, sizeof *o);
  o->struct_size = sizeof *o;
  o->backend = MOERT_BACKEND_AUTO;
  return MOERT_OK;
}

static void resolve_cache_dir(moert_runtime *rt, const char *asked) {
  const char *env;
  rt->cache_disabled = false;
  if (asked) {
    if (!asked[0]) rt->cache_disabled = true;
    snprintf(rt->cache_dir, sizeof rt->cache_dir, "%s", asked);
  } else if ((env = getenv("MOERT_CACHE_DIR")) && env[0]) {
    snprintf(rt->cache_dir, sizeof rt->cache_dir, "%s", env);
  } else if ((env = getenv("XDG_CACHE_HOME")) && env[0]) {
    snprintf(rt->cache_dir, sizeof rt->cache_dir, "%s/moert", env);
  } else if ((env = getenv("HOME")) && env[0]) {
    snprintf(rt->cache_dir, sizeof rt->cache_dir, "%s/.cache/moert", env);
  } else {
    rt->cache_disabled = true;
  }
}

MOERT_API moert_status moert_runtime_create(const moert_runtime_options *opts,
                                            moert_runtime **out) {
  static const char *fn = "moert_runtime_create";
  CHECK_NULL("moert_runtime_create", out);
  moert_runtime_options defaults;
  moert_runtime_options_init(&defaults);
  if (!opts) opts = &defaults;
  CHECK_SIZE("moert_runtime_create", opts, moert_runtime_options);
  if (opts->backend > MOERT_BACKEND_CUDA)
    return moert_fail(MOERT_ERR_INVALID_ARGUMENT, "%s: unknown backend %u", fn, opts->backend);
  if (opts->device_ordinal < 0)
    return moert_fail(MOERT_ERR_INVALID_ARGUMENT, "%s: device_ordinal %d is negative", fn,
                      opts->device_ordinal);
  if (opts->num_threads > 1024)
    return moert_fail(MOERT_ERR_INVALID_ARGUMENT, "%s: num_threads %u is over 1024", fn,
                      opts->num_threads);
  moert_runtime *rt = calloc(1, sizeof *rt);
  if (!rt) return moert_fail(MOERT_ERR_OUT_OF_MEMORY, "%s: out of host memory", fn);
  resolve_cache_dir(rt, opts->cache_dir);
  rt->backend = MOERT_BACKEND_CPU;
  rt->ops = &moert_cpu_backend;
  moert_status st = MOERT_OK;
  if (opts->backend != MOERT_BACKEND_CPU) {
    if (moert_cuda_backend_open) {
      st = moert_cuda_backend_open(rt, opts);
    } else {
      snprintf(rt->note, sizeof rt->note, "this build of moert has no CUDA backend");
      st = moert_fail(MOERT_ERR_BACKEND_UNAVAILABLE, "%s: %s", fn, rt->note);
    }
    if (st == MOERT_OK) {
      rt->backend = MOERT_BACKEND_CUDA;
    } else if (opts->backend == MOERT_BACKEND_CUDA) {
      free(rt);
      return st;
    } else { /* AUTO: fall back, and say why */
      char why[sizeof rt->note];
      snprintf(why, sizeof why, "%s", rt->note);
      snprintf(rt->note, sizeof rt->note, "CPU (no CUDA: %.200s)", why);
    }
  } else {
    snprintf(rt->note, sizeof rt->note, "CPU (asked for)");
  }
  /* The CPU backend's pool: all threads; on CUDA one thread (host routing only). */
  st = moert_pool_create(rt->backend == MOERT_BACKEND_CPU ? opts->num_threads : 1, &rt->pool);
  if (st != MOERT_OK) {
    if (rt->ops->runtime_fini) rt->ops->runtime_fini(rt);
    free(rt);
    return st;
  }
  *out = rt;
  return MOERT_OK;
}

MOERT_API void moert_runtime_destroy(moert_runtime *rt) {
  if (!rt) return;
  if (rt->ops && rt->ops->runtime_fini) rt->ops->runtime_fini(rt);
  moert_pool_destroy(rt->pool);
  free(rt);
}

MOERT_API moert_backend moert_runtime_backend(const moert_runtime *rt) {
  return rt ? rt->backend : 0;
}

MOERT_API const char *moert_runtime_backend_note(const moert_runtime *rt) {
  return rt ? rt->note : "no runtime (NULL)";
}

/* ---- layer shape ---- */

MOERT_API moert_status moert_layer_desc_init(moert_layer_desc *d) {
  CHECK_NULL("moert_layer_desc_init", d);
  memset(d, 0, sizeof *d);
  d->struct_size = sizeof *d;
  d->act_dtype = d->weight_dtype = MOERT_DTYPE_BF16;
  d->router = MOERT_ROUTER_SOFTMAX_TOPK;
  d->renormalize = 1;
  d->routed_scaling_factor = 1.0f;
  return MOERT_OK;
}

static moert_status check_dtype(const char *fn, const char *what, moert_dtype t) {
  if (moert_dtype_size(t) == 0)
    return moert_fail(MOERT_ERR_INVALID_ARGUMENT, "%s: %s %u is not a moert_dtype", fn, what, t);
  return MOERT_OK;
}

static moert_status check_desc(const char *fn, const moert_layer_desc *d) {
  moert_status st;
  if (!d) return moert_fail(MOERT_ERR_NULL_POINTER, "%s: desc is NULL", fn);
  if (d->struct_size != sizeof *d)
    return moert_fail(MOERT_ERR_STRUCT_SIZE,
                      "%s: desc->struct_size is %u; this library knows moert_layer_desc of %zu "
                      "bytes", fn, d->struct_size, sizeof *d);
  if (d->num_experts < 1 || d->num_experts > MOERT_MAX_EXPERTS)
    return moert_fail(MOERT_ERR_INVALID_ARGUMENT, "%s: num_experts %u is not in 1..%u", fn,
                      d->num_experts, MOERT_MAX_EXPERTS);
  if (d->top_k < 1 || d->top_k > MOERT_MAX_TOP_K)
    return moert_fail(MOERT_ERR_INVALID_ARGUMENT, "%s: top_k %u is not in 1..%u", fn, d->top_k,
                      MOERT_MAX_TOP_K);
  if (d->top_k > d->num_experts)
    return moert_fail(MOERT_ERR_INVALID_ARGUMENT, "%s: top_k %u is more than num_experts %u",
                      fn, d->top_k, d->num_experts);
  if (d->hidden < 1 || d->hidden > MOERT_MAX_DIM || d->intermediate < 1 ||
      d->intermediate > MOERT_MAX_DIM || d->shared_intermediate > MOERT_MAX_DIM)
    return moert_fail(MOERT_ERR_INVALID_ARGUMENT,
                      "%s: hidden %u, intermediate %u, shared_intermediate %u: hidden and "
                      "intermediate must be in 1..%u (shared_intermediate 0..%u)",
                      fn, d->hidden, d->intermediate, d->shared_intermediate, MOERT_MAX_DIM,
                      MOERT_MAX_DIM);
  if (d->shared_gate > MOERT_SHARED_GATE_SIGMOID)
    return moert_fail(MOERT_ERR_INVALID_ARGUMENT, "%s: unknown shared_gate %u", fn,
                      d->shared_gate);
  if ((st = check_dtype(fn, "act_dtype", d->act_dtype)) ||
      (st = check_dtype(fn, "weight_dtype", d->weight_dtype)))
    return st;
  if (d->renormalize > 1)
    return moert_fail(MOERT_ERR_INVALID_ARGUMENT, "%s: renormalize is %u, not 0 or 1", fn,
                      d->renormalize);
  if (!(d->routed_scaling_factor >= 0.0f) || isinf(d->routed_scaling_factor))
    return moert_fail(MOERT_ERR_INVALID_ARGUMENT,
                      "%s: routed_scaling_factor %g is not a finite number >= 0", fn,
                      (double)d->routed_scaling_factor);
  if (d->plan_block_rows > 1024)
    return moert_fail(MOERT_ERR_INVALID_ARGUMENT, "%s: plan_block_rows %u is over 1024", fn,
                      d->plan_block_rows);
  if (d->router == MOERT_ROUTER_SOFTMAX_TOPK) {
    if (d->n_group > 1)
      return moert_fail(MOERT_ERR_UNSUPPORTED,
                        "%s: group-limited selection (n_group %u) needs the "
                        "SIGMOID_GROUP_TOPK router", fn, d->n_group);
  } else if (d->router == MOERT_ROUTER_SIGMOID_GROUP_TOPK) {
    if (d->n_group > 1) {
      if (d->num_experts % d->n_group)
        return moert_fail(MOERT_ERR_INVALID_ARGUMENT,
                          "%s: n_group %u does not divide num_experts %u", fn, d->n_group,
                          d->num_experts);
      if (d->topk_group < 1 || d->topk_group > d->n_group)
        return moert_fail(MOERT_ERR_INVALID_ARGUMENT, "%s: topk_group %u is not in 1..n_group %u",
                          fn, d->topk_group, d->n_group);
      uint32_t avail = d->topk_group * (d->num_experts / d->n_group);
      if (d->top_k > avail)
        return moert_fail(MOERT_ERR_INVALID_ARGUMENT,
                          "%s: top_k %u is more than the %u experts of the topk_group %u best "
                          "groups", fn, d->top_k, avail, d->topk_group);
    }
  } else {
    return moert_fail(MOERT_ERR_INVALID_ARGUMENT, "%s: unknown router kind %u", fn, d->router);
  }
  return MOERT_OK;
}

/* Whether rows rows of n elements, row stride stride (elements of es bytes), starting at
 * base stay inside the address space; *end is then one past the last byte.  A stride so
 * large that the offsets wrap around would make the backends' pointer arithmetic
 * overflow.  rows >= 1. */
static bool rows_span(const void *base, uint32_t rows, uint64_t stride, uint32_t n, size_t es,
                      uintptr_t *end) {
  const uint64_t room = (uint64_t)(UINTPTR_MAX - (uintptr_t)base) / es; /* elements that fit */
  if (n > room || (rows > 1 && stride > (room - n) / (rows - 1))) return false;
  *end = (uintptr_t)base + ((uint64_t)(rows - 1) * stride + n) * es;
  return true;
}

static bool same_shape(const moert_layer_desc *a, const moert_layer_desc *b) {
  return a->num_experts == b->num_experts && a->hidden == b->hidden &&
         a->intermediate == b->intermediate && a->shared_intermediate == b->shared_intermediate &&
         a->shared_gate == b->shared_gate && a->weight_dtype == b->weight_dtype;
}

/* ---- scratch ---- */

static void carve_host(moert_scratch *s, moert_arena *a) {
  const uint32_t T = s->max_tokens, k = s->desc.top_k, E = s->desc.num_experts;
  const size_t pairs = (size_t)T * k;
  const uint32_t br = s->plan.block_rows;
  s->ids = moert_arena_take(a, pairs * sizeof(int32_t));
  s->weights = moert_arena_take(a, pairs * sizeof(float));
  s->plan.offsets = moert_arena_take(a, (E + 1) * sizeof(int32_t));
  s->plan.padded_offsets = moert_arena_take(a, (E + 1) * sizeof(int32_t));
  s->plan.packed_token = moert_arena_take(a, pairs * sizeof(int32_t));
  s->plan.pair_of = moert_arena_take(a, pairs * sizeof(int32_t));
  s->plan.sorted_pair = moert_arena_take(a, pairs * sizeof(int32_t));
  s->plan.block_expert =
      moert_arena_take(a, moert_plan_max_blocks(T, k, E, br) * sizeof(int32_t));
  if (s->runtime->backend == MOERT_BACKEND_CPU)
    moert_cpu_scratch_carve(s, a, moert_pool_size(s->runtime->pool));
}

MOERT_API moert_status moert_scratch_create(moert_runtime *rt, const moert_layer_desc *desc,
                                            uint32_t max_tokens, moert_scratch **out) {
  static const char *fn = "moert_scratch_create";
  moert_status st;
  CHECK_NULL("moert_scratch_create", rt);
  CHECK_NULL("moert_scratch_create", out);
  if ((st = check_desc(fn, desc))) return st;
  if (max_tokens < 1 || max_tokens > MOERT_MAX_TOKENS)
    return moert_fail(MOERT_ERR_INVALID_ARGUMENT, "%s: max_tokens %u is not in 1..%u", fn,
                      max_tokens, MOERT_MAX_TOKENS);
  moert_scratch *s = calloc(1, sizeof *s);
  if (!s) return moert_fail(MOERT_ERR_OUT_OF_MEMORY, "%s: out of host memory", fn);
  s->runtime = rt;
  s->desc = *desc;
  s->max_tokens = max_tokens;
  s->router = (moert_router_cfg){desc->num_experts, desc->top_k, desc->router, desc->renormalize,
                                 desc->n_group, desc->topk_group,
                                 desc->routed_scaling_factor == 0.0f ? 1.0f
                                                                     : desc->routed_scaling_factor};
  s->plan.block_rows = desc->plan_block_rows ? desc->plan_block_rows : 16;
  moert_arena a = {0};
  carve_host(s, &a);
  s->arena_mem = malloc(a.used + 64);
  if (!s->arena_mem) {
    free(s);
    return moert_fail(MOERT_ERR_OUT_OF_MEMORY, "%s: could not allocate the %zu-byte host arena",
                      fn, a.used);
  }
  s->host_bytes = a.used + 64;
  a = (moert_arena){(unsigned char *)(((uintptr_t)s->arena_mem + 63) & ~(uintptr_t)63), a.used, 0};
  carve_host(s, &a);
  if (rt->ops->scratch_init && (st = rt->ops->scratch_init(s)) != MOERT_OK) {
    free(s->arena_mem);
    free(s);
    return st;
  }
  *out = s;
  return MOERT_OK;
}

MOERT_API void moert_scratch_destroy(moert_scratch *s) {
  if (!s) return;
  if (s->runtime->ops->scratch_fini) s->runtime->ops->scratch_fini(s);
  free(s->arena_mem);
  free(s);
}

MOERT_API moert_status moert_scratch_memory(const moert_scratch *s, uint64_t *host_bytes,
                                            uint64_t *device_bytes) {
  CHECK_NULL("moert_scratch_memory", s);
  if (host_bytes) *host_bytes = s->host_bytes;
  if (device_bytes) *device_bytes = s->device_bytes;
  return MOERT_OK;
}

MOERT_API moert_status moert_scratch_prepare(moert_scratch *s) {
  CHECK_NULL("moert_scratch_prepare", s);
  return s->runtime->ops->scratch_prepare ? s->runtime->ops->scratch_prepare(s) : MOERT_OK;
}

/* ---- experts ---- */

MOERT_API moert_status moert_experts_create(moert_runtime *rt, const moert_layer_desc *desc,
                                            const moert_experts_desc *w, moert_experts **out) {
  static const char *fn = "moert_experts_create";
  moert_status st;
  CHECK_NULL("moert_experts_create", rt);
  CHECK_NULL("moert_experts_create", out);
  if ((st = check_desc(fn, desc))) return st;
  CHECK_NULL("moert_experts_create", w);
  CHECK_SIZE("moert_experts_create", w, moert_experts_desc);
  if (w->memory != MOERT_MEMORY_HOST && w->memory != MOERT_MEMORY_DEVICE)
    return moert_fail(MOERT_ERR_INVALID_ARGUMENT, "%s: unknown memory kind %u", fn, w->memory);
  if (w->memory == MOERT_MEMORY_DEVICE && rt->backend != MOERT_BACKEND_CUDA)
    return moert_fail(MOERT_ERR_UNSUPPORTED,
                      "%s: weights in device memory need the CUDA backend; this runtime is %s",
                      fn, rt->note);
  if (w->memory == MOERT_MEMORY_HOST && rt->backend == MOERT_BACKEND_CUDA)
    return moert_fail(MOERT_ERR_UNSUPPORTED,
                      "%s: the CUDA backend needs the weights in device memory", fn);
  const uint32_t E = desc->num_experts, H = desc->hidden, I = desc->intermediate;
  const size_t es = moert_dtype_size(desc->weight_dtype);
  switch (w->layout) {
  case MOERT_LAYOUT_STACKED:
    CHECK_NULL("moert_experts_create", w->gate);
    CHECK_NULL("moert_experts_create", w->up);
    CHECK_NULL("moert_experts_create", w->down);
    break;
  case MOERT_LAYOUT_STACKED_GATE_UP:
    CHECK_NULL("moert_experts_create", w->gate_up);
    CHECK_NULL("moert_experts_create", w->down);
    break;
  case MOERT_LAYOUT_PER_EXPERT:
    CHECK_NULL("moert_experts_create", w->gate_ptrs);
    CHECK_NULL("moert_experts_create", w->up_ptrs);
    CHECK_NULL("moert_experts_create", w->down_ptrs);
    for (uint32_t e = 0; e < E; e++)
      if (!w->gate_ptrs[e] || !w->up_ptrs[e] || !w->down_ptrs[e])
        return moert_fail(MOERT_ERR_NULL_POINTER, "%s: the weights of expert %u have a NULL "
                          "pointer", fn, e);
    break;
  default:
    return moert_fail(MOERT_ERR_INVALID_ARGUMENT, "%s: unknown weight layout %u", fn, w->layout);
  }
  if (desc->shared_intermediate) {
    CHECK_NULL("moert_experts_create", w->shared_gate);
    CHECK_NULL("moert_experts_create", w->shared_up);
    CHECK_NULL("moert_experts_create", w->shared_down);
    if (desc->shared_gate == MOERT_SHARED_GATE_SIGMOID)
      CHECK_NULL("moert_experts_create", w->shared_expert_gate);
  }
  moert_experts *x = calloc(1, sizeof *x);
  const void **tab = calloc(3 * (size_t)E, sizeof *tab);
  if (!x || !tab) {
    free(x);
    free(tab);
    return moert_fail(MOERT_ERR_OUT_OF_MEMORY, "%s: out of host memory", fn);
  }
  x->runtime = rt;
  x->desc = *desc;
  x->memory = w->memory;
  x->gate = tab;
  x->up = tab + E;
  x->down = tab + 2 * E;
  const size_t mat = (size_t)I * H * es;
  for (uint32_t e = 0; e < E; e++) {
    if (w->layout == MOERT_LAYOUT_STACKED) {
      x->gate[e] = (const char *)w->gate + e * mat;
      x->up[e] = (const char *)w->up + e * mat;
      x->down[e] = (const char *)w->down + e * mat;
    } else if (w->layout == MOERT_LAYOUT_STACKED_GATE_UP) {
      x->gate[e] = (const char *)w->gate_up + 2 * e * mat;
      x->up[e] = (const char *)w->gate_up + (2 * e + 1) * mat;
      x->down[e] = (const char *)w->down + e * mat;
    } else {
      x->gate[e] = w->gate_ptrs[e];
      x->up[e] = w->up_ptrs[e];
      x->down[e] = w->down_ptrs[e];
    }
  }
  if (desc->shared_intermediate) {
    x->shared_gate = w->shared_gate;
    x->shared_up = w->shared_up;
    x->shared_down = w->shared_down;
    x->shared_expert_gate = w->shared_expert_gate;
  }
  if (rt->ops->experts_init && (st = rt->ops->experts_init(x)) != MOERT_OK) {
    free(tab);
    free(x);
    return st;
  }
  *out = x;
  return MOERT_OK;
}

MOERT_API void moert_experts_destroy(moert_experts *x) {
  if (!x) return;
  if (x->runtime->ops->experts_fini) x->runtime->ops->experts_fini(x);
  free((void *)x->gate);
  free(x);
}

/* ---- route ---- */

/* The plan is rebuilt on the host and handed to the backend. */
static moert_status finish_host_routing(moert_scratch *s, uint32_t T, void *stream) {
  moert_plan_build(s->ids, T, s->desc.top_k, s->desc.num_experts, s->plan.block_rows, &s->plan);
  s->num_tokens = T;
  s->host_view_stale = false;
  if (s->runtime->ops->plan_uploaded) {
    moert_status st = s->runtime->ops->plan_uploaded(s, stream);
    if (st != MOERT_OK) return st;
  }
  s->routed = true;
  return MOERT_OK;
}

MOERT_API moert_status moert_route(moert_scratch *s, const moert_route_args *a, void *stream) {
  static const char *fn = "moert_route";
  moert_status st;
  CHECK_NULL("moert_route", s);
  CHECK_NULL("moert_route", a);
  CHECK_SIZE("moert_route", a, moert_route_args);
  const uint32_t E = s->desc.num_experts;
  if (a->num_tokens > s->max_tokens)
    return moert_fail(MOERT_ERR_TOO_MANY_TOKENS,
                      "%s: num_tokens %u is more than the scratch's max_tokens %u", fn,
                      a->num_tokens, s->max_tokens);
  if ((st = check_dtype(fn, "logits_dtype", a->logits_dtype))) return st;
  if (a->memory != MOERT_MEMORY_HOST && a->memory != MOERT_MEMORY_DEVICE)
    return moert_fail(MOERT_ERR_INVALID_ARGUMENT, "%s: unknown memory kind %u", fn, a->memory);
  if (a->num_tokens > 0 && !a->logits)
    return moert_fail(MOERT_ERR_NULL_POINTER, "%s: logits is NULL for %u tokens", fn,
                      a->num_tokens);
  if (a->logits_row_stride && a->logits_row_stride < E)
    return moert_fail(MOERT_ERR_INVALID_ARGUMENT,
                      "%s: logits_row_stride %llu is less than num_experts %u", fn,
                      (unsigned long long)a->logits_row_stride, E);
  if (a->mode > MOERT_ROUTING_DEVICE)
    return moert_fail(MOERT_ERR_INVALID_ARGUMENT, "%s: unknown routing mode %u", fn, a->mode);
  const bool on_gpu = s->runtime->backend == MOERT_BACKEND_CUDA;
  if (!on_gpu && a->memory == MOERT_MEMORY_DEVICE)
    return moert_fail(MOERT_ERR_UNSUPPORTED, "%s: device logits need the CUDA backend", fn);
  if (!on_gpu && a->mode == MOERT_ROUTING_DEVICE)
    return moert_fail(MOERT_ERR_UNSUPPORTED, "%s: device routing needs the CUDA backend", fn);
  if (a->memory == MOERT_MEMORY_HOST && a->correction_bias)
    for (uint32_t e = 0; e < E; e++)
      if (!isfinite(a->correction_bias[e]))
        return moert_fail(MOERT_ERR_INVALID_ARGUMENT,
                          "%s: correction_bias[%u] is not finite", fn, e);
  const uint64_t stride = a->logits_row_stride ? a->logits_row_stride : E;
  uintptr_t end;
  if (a->num_tokens > 0 &&
      !rows_span(a->logits, a->num_tokens, stride, E, moert_dtype_size(a->logits_dtype), &end))
    return moert_fail(MOERT_ERR_INVALID_ARGUMENT,
                      "%s: logits_row_stride %llu for %u tokens runs past the end of the "
                      "address space", fn, (unsigned long long)stride, a->num_tokens);
  /* The CUDA backend's route_device also host-routes device logits (HOST mode): it copies
   * them back itself. */
  const bool device = on_gpu && s->runtime->ops->route_device &&
                      (a->mode != MOERT_ROUTING_HOST || a->memory == MOERT_MEMORY_DEVICE);
  s->routed = false;
  if (device) {
    st = s->runtime->ops->route_device(s, a, stream);
    if (st != MOERT_OK) return st;
    s->num_tokens = a->num_tokens;
    s->host_view_stale = true;
    s->routed = true;
    return MOERT_OK;
  }
  if (a->memory == MOERT_MEMORY_DEVICE) /* host routing of device logits: the backend copies */
    return moert_fail(MOERT_ERR_UNSUPPORTED, "%s: this backend cannot route device logits on "
                      "the host", fn);
  st = moert_route_host(&s->router, a->logits, a->logits_dtype, stride, a->num_tokens,
                        a->correction_bias, s->ids, s->weights);
  if (st != MOERT_OK) return st;
  return finish_host_routing(s, a->num_tokens, stream);
}

MOERT_API moert_status moert_set_routing(moert_scratch *s, uint32_t T, const int32_t *ids,
                                         const float *w, void *stream) {
  static const char *fn = "moert_set_routing";
  CHECK_NULL("moert_set_routing", s);
  const uint32_t k = s->desc.top_k, E = s->desc.num_experts;
  if (T > s->max_tokens)
    return moert_fail(MOERT_ERR_TOO_MANY_TOKENS,
                      "%s: num_tokens %u is more than the scratch's max_tokens %u", fn, T,
                      s->max_tokens);
  if (T > 0 && (!ids || !w))
    return moert_fail(MOERT_ERR_NULL_POINTER, "%s: %s is NULL", fn, ids ? "expert_weights"
                                                                        : "expert_ids");
  for (uint32_t t = 0; t < T; t++)
    for (uint32_t j = 0; j < k; j++) {
      int32_t id = ids[(size_t)t * k + j];
      float wt = w[(size_t)t * k + j];
      if (id < 0 || (uint32_t)id >= E)
        return moert_fail(MOERT_ERR_EXPERT_ID, "%s: expert id %d of token %u, slot %u is not "
                          "in 0..%u", fn, id, t, j, E - 1);
      for (uint32_t i = 0; i < j; i++)
        if (ids[(size_t)t * k + i] == id)
          return moert_fail(MOERT_ERR_EXPERT_ID, "%s: token %u names expert %d twice (slots "
                            "%u and %u)", fn, t, id, i, j);
      if (!isfinite(wt))
        return moert_fail(MOERT_ERR_INVALID_ARGUMENT, "%s: weight of token %u, slot %u is not "
                          "finite", fn, t, j);
    }
  s->routed = false;
  if (T) {
    memcpy(s->ids, ids, (size_t)T * k * sizeof *ids);
    memcpy(s->weights, w, (size_t)T * k * sizeof *w);
  }
  return finish_host_routing(s, T, stream);
}

/* ---- forward ---- */

MOERT_API moert_status moert_forward(moert_scratch *s, const moert_forward_args *a,
                                     void *stream) {
  static const char *fn = "moert_forward";
  CHECK_NULL("moert_forward", s);
  CHECK_NULL("moert_forward", a);
  CHECK_SIZE("moert_forward", a, moert_forward_args);
  const moert_experts *x = a->experts;
  if (!x) return moert_fail(MOERT_ERR_NULL_POINTER, "%s: args->experts is NULL", fn);
  if (x->runtime != s->runtime)
    return moert_fail(MOERT_ERR_WRONG_RUNTIME,
                      "%s: the experts and the scratch were created by different runtimes", fn);
  if (!same_shape(&x->desc, &s->desc))
    return moert_fail(MOERT_ERR_SHAPE_MISMATCH,
                      "%s: the experts (E %u, H %u, I %u, shared %u, %s) do not fit the "
                      "scratch's layer (E %u, H %u, I %u, shared %u, %s)", fn,
                      x->desc.num_experts, x->desc.hidden, x->desc.intermediate,
                      x->desc.shared_intermediate, moert_dtype_name(x->desc.weight_dtype),
                      s->desc.num_experts, s->desc.hidden, s->desc.intermediate,
                      s->desc.shared_intermediate, moert_dtype_name(s->desc.weight_dtype));
  if (a->memory != MOERT_MEMORY_HOST && a->memory != MOERT_MEMORY_DEVICE)
    return moert_fail(MOERT_ERR_INVALID_ARGUMENT, "%s: unknown memory kind %u", fn, a->memory);
  if (a->memory != x->memory)
    return moert_fail(MOERT_ERR_UNSUPPORTED, "%s: x and y are in %s memory but the experts in "
                      "%s memory", fn, a->memory == MOERT_MEMORY_HOST ? "host" : "device",
                      x->memory == MOERT_MEMORY_HOST ? "host" : "device");
  if (a->accumulate > 1)
    return moert_fail(MOERT_ERR_INVALID_ARGUMENT, "%s: accumulate is %u, not 0 or 1", fn,
                      a->accumulate);
  const uint32_t H = s->desc.hidden;
  if ((a->x_row_stride && a->x_row_stride < H) || (a->y_row_stride && a->y_row_stride < H))
    return moert_fail(MOERT_ERR_INVALID_ARGUMENT,
                      "%s: row strides (x %llu, y %llu) must be 0 or at least hidden %u", fn,
                      (unsigned long long)a->x_row_stride, (unsigned long long)a->y_row_stride,
                      H);
  if (!s->routed)
    return moert_fail(MOERT_ERR_NOT_ROUTED, "%s: no routing on this scratch (call moert_route "
                      "or moert_set_routing first; a failed route clears it)", fn);
  const uint32_t T = s->num_tokens;
  if (T > 0 && (!a->x || !a->y))
    return moert_fail(MOERT_ERR_NULL_POINTER, "%s: %s is NULL", fn, a->x ? "y" : "x");
  if (T > 0) {
    const size_t es = moert_dtype_size(s->desc.act_dtype);
    const uint64_t xs = a->x_row_stride ? a->x_row_stride : H;
    const uint64_t ys = a->y_row_stride ? a->y_row_stride : H;
    uintptr_t x0 = (uintptr_t)a->x, x1, y0 = (uintptr_t)a->y, y1;
    if (!rows_span(a->x, T, xs, H, es, &x1) || !rows_span(a->y, T, ys, H, es, &y1))
      return moert_fail(MOERT_ERR_INVALID_ARGUMENT,
                        "%s: row strides (x %llu, y %llu) for %u tokens run past the end of "
                        "the address space", fn, (unsigned long long)xs,
                        (unsigned long long)ys, T);
    if (x0 < y1 && y0 < x1)
      return moert_fail(MOERT_ERR_INVALID_ARGUMENT, "%s: x and y overlap", fn);
  }
  return s->runtime->ops->forward(s, a, stream);
}

MOERT_API moert_status moert_moe(moert_scratch *s, const moert_route_args *r,
                                 const moert_forward_args *f, void *stream) {
  CHECK_NULL("moert_moe", f);
  moert_status st = moert_route(s, r, stream);
  return st != MOERT_OK ? st : moert_forward(s, f, stream);
}

/* ---- views ---- */

static moert_status fetch_if_stale(moert_scratch *s) {
  if (!s->routed)
    return moert_fail(MOERT_ERR_NOT_ROUTED, "moert_scratch_routing/plan: nothing routed yet");
  if (s->host_view_stale && s->runtime->ops->fetch_routing) {
    moert_status st = s->runtime->ops->fetch_routing(s);
    if (st != MOERT_OK) return st;
    s->host_view_stale = false;
  }
  return MOERT_OK;
}

MOERT_API moert_status moert_scratch_routing(moert_scratch *s, moert_routing_view *v) {
  moert_status st;
  CHECK_NULL("moert_scratch_routing", s);
  CHECK_NULL("moert_scratch_routing", v);
  CHECK_SIZE("moert_scratch_routing", v, moert_routing_view);
  if ((st = fetch_if_stale(s))) return st;
  v->num_tokens = s->num_tokens;
  v->top_k = s->desc.top_k;
  v->expert_ids = s->ids;
  v->expert_weights = s->weights;
  return MOERT_OK;
}

MOERT_API moert_status moert_scratch_plan(moert_scratch *s, moert_plan_view *v) {
  moert_status st;
  CHECK_NULL("moert_scratch_plan", s);
  CHECK_NULL("moert_scratch_plan", v);
  CHECK_SIZE("moert_scratch_plan", v, moert_plan_view);
  if ((st = fetch_if_stale(s))) return st;
  v->num_tokens = s->plan.num_tokens;
  v->num_experts = s->plan.num_experts;
  v->top_k = s->plan.top_k;
  v->offsets = s->plan.offsets;
  v->packed_token = s->plan.packed_token;
  v->pair_of = s->plan.pair_of;
  v->block_rows = s->plan.block_rows;
  v->num_blocks = s->plan.num_blocks;
  v->padded_offsets = s->plan.padded_offsets;
  v->block_expert = s->plan.block_expert;
  return MOERT_OK;
}
