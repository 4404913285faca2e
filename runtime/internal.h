/* internal.h — the private shape of moert's handles and the host pieces every backend
 * shares (errors, arena, router, plan, dtype conversion).  Nothing here is exported. */
#ifndef MOERT_INTERNAL_H
#define MOERT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "moert.h"

#define MOERT_MAX_EXPERTS 512u
#define MOERT_MAX_TOP_K 16u
/* Caps on the other dimensions, so sizes computed in 64 bits can never overflow. */
#define MOERT_MAX_DIM (1u << 20)
#define MOERT_MAX_TOKENS (1u << 22)

/* ---- errors (error.c) ---- */
/* Records a formatted sentence as this thread's last error and returns status. */
moert_status moert_fail(moert_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Appends more text (e.g. a compiler log) to this thread's last error. */
void moert_fail_append(const char *text);

/* ---- arena (arena.c): one allocation, carved by a bump allocator ---- */
typedef struct moert_arena {
  unsigned char *base;
  size_t size, used;
} moert_arena;
/* Pass 1 (base == NULL) only counts; pass 2 carves.  64-byte alignment. */
void *moert_arena_take(moert_arena *arena, size_t bytes);

/* ---- instruction sets (isa.c) ---- */
/* The x86 vector instruction sets the host router and plan use: 2 = AVX-512 (F, VL, BW,
 * DQ) with AVX2, 1 = AVX2 with POPCNT, 0 = neither (or not x86).  The environment variable
 * MOERT_CPU_ISA=avx2 or =generic caps it: a test and benchmark hook, read once. */
int moert_cpu_isa(void);

/* ---- router (router.c) ---- */
typedef struct moert_router_cfg {
  uint32_t num_experts, top_k;
  moert_router_kind kind;
  uint32_t renormalize;
  uint32_t n_group, topk_group;
  float scale;
} moert_router_cfg;

/* Routes T rows of logits.  On a NaN logit returns MOERT_ERR_NAN_LOGIT (message names the
 * token and expert); ids/weights may then be partly written. */
moert_status moert_route_host(const moert_router_cfg *cfg, const void *logits, moert_dtype dtype,
                              uint64_t row_stride, uint32_t num_tokens, const float *bias,
                              int32_t *ids, float *weights);

/* ---- plan (plan.c) ---- */
typedef struct moert_plan {
  uint32_t num_tokens, num_experts, top_k, block_rows, num_blocks;
  int32_t *offsets;        /* [E+1] */
  int32_t *packed_token;   /* [T*k] */
  int32_t *pair_of;        /* [T*k] sorted row of each pair */
  int32_t *sorted_pair;    /* [T*k] pair of each sorted row (inverse of pair_of) */
  int32_t *padded_offsets; /* [E+1] */
  int32_t *block_expert;   /* [max blocks] */
} moert_plan;
/* Capacity of block_expert for a plan of T tokens. */
uint64_t moert_plan_max_blocks(uint32_t max_tokens, uint32_t top_k, uint32_t num_experts,
                               uint32_t block_rows);
/* Stable counting sort of ids [T*k] (all in 0..E-1) into plan (arrays preallocated). */
void moert_plan_build(const int32_t *ids, uint32_t num_tokens, uint32_t top_k,
                      uint32_t num_experts, uint32_t block_rows, moert_plan *plan);

/* ---- dtype conversion (dtype.c) ---- */
size_t moert_dtype_size(moert_dtype dtype); /* 0 for an unknown dtype */
const char *moert_dtype_name(moert_dtype dtype);
float moert_bf16_to_f32(uint16_t h);
uint16_t moert_f32_to_bf16(float f);
float moert_f16_to_f32(uint16_t h);
uint16_t moert_f32_to_f16(float f);
/* n elements of dtype at src -> float32 */
void moert_to_f32(const void *src, moert_dtype dtype, float *dst, size_t n);
/* n float32 -> dtype at dst (round to nearest even) */
void moert_from_f32(const float *src, moert_dtype dtype, void *dst, size_t n);
float moert_load_f32(const void *src, moert_dtype dtype, size_t i);

/* ---- thread pool (cpu/pool.c) ---- */
typedef struct moert_pool moert_pool;
typedef void (*moert_pool_fn)(void *ctx, uint32_t item, uint32_t worker);
moert_status moert_pool_create(uint32_t num_threads, moert_pool **out);
void moert_pool_destroy(moert_pool *pool);
uint32_t moert_pool_size(const moert_pool *pool); /* workers, the caller included */
/* Runs fn(ctx, item, worker) for item in 0..n_items-1 and returns when all are done.
 * worker < moert_pool_size().  If another thread is using the pool, runs inline on the
 * caller (worker 0 of the caller's own scratch buffers). */
void moert_pool_run(moert_pool *pool, moert_pool_fn fn, void *ctx, uint32_t n_items);

/* ---- handles ---- */
struct moert_backend_ops;

struct moert_runtime {
  moert_backend backend;
  const struct moert_backend_ops *ops;
  moert_pool *pool;
  void *backend_state; /* the CUDA backend's context, modules, cache */
  char note[256];
  char cache_dir[1024];
  bool cache_disabled;
};

struct moert_experts {
  moert_runtime *runtime;
  moert_layer_desc desc;
  moert_memory memory;
  /* per-expert matrices, whatever layout they came in */
  const void **gate, **up, **down; /* [E] each */
  const void *shared_gate, *shared_up, *shared_down, *shared_expert_gate;
  void *backend_state;
};

/* CPU forward buffers, carved from the host arena */
typedef struct moert_cpu_buffers {
  uint32_t chunk_rows;  /* P: sorted rows processed per pass */
  uint32_t workers;
  float *xf;            /* [max_T, H] x as f32 */
  float *yacc;          /* [max_T, H] f32 accumulator */
  float *h;             /* [P, max(I, Is)] */
  float *ypair;         /* [P, H] */
  float *shared_scale;  /* [max_T] sigmoid gate of the shared expert, or 1 */
  float *row_weight;    /* [max_T*k] weight of each sorted row */
  int32_t *identity;    /* [max_T] 0..max_T-1: token of each shared-expert row */
  float *wbuf;          /* [workers, 4*max(H, I, Is)] weight rows as f32 */
  void *segs;           /* [E+1] segment descriptors */
  uint32_t *seg_items;  /* [E+2] item prefix sums */
  const float **xrows;  /* [workers, P] the rows a worker's dot products read */
  float *dots;          /* [workers, 4, P] their results */
} moert_cpu_buffers;

struct moert_scratch {
  moert_runtime *runtime;
  moert_layer_desc desc;
  moert_router_cfg router;
  uint32_t max_tokens;
  void *arena_mem;
  uint64_t host_bytes, device_bytes;
  /* last routing; routed == false before the first route or after a failed one */
  bool routed;
  bool host_view_stale; /* device routing ran: host copies must be fetched */
  uint32_t num_tokens;
  int32_t *ids;     /* [max_T*k] */
  float *weights;   /* [max_T*k] */
  moert_plan plan;
  moert_cpu_buffers cpu;
  void *backend_state;
};

/* ---- the backend table ---- */
typedef struct moert_backend_ops {
  const char *name;
  moert_status (*scratch_init)(moert_scratch *scratch); /* device buffers */
  void (*scratch_fini)(moert_scratch *scratch);
  moert_status (*scratch_prepare)(moert_scratch *scratch);
  moert_status (*experts_init)(moert_experts *experts);
  void (*experts_fini)(moert_experts *experts);
  /* route: logits already validated; host routing is done by api.c on backends that
   * leave this NULL */
  moert_status (*route_device)(moert_scratch *scratch, const moert_route_args *args,
                               void *stream);
  /* after a host route or set_routing: make the plan visible to forward */
  moert_status (*plan_uploaded)(moert_scratch *scratch, void *stream);
  moert_status (*fetch_routing)(moert_scratch *scratch); /* device -> host views */
  moert_status (*forward)(moert_scratch *scratch, const moert_forward_args *args,
                          void *stream);
  void (*runtime_fini)(moert_runtime *runtime);
} moert_backend_ops;

extern const moert_backend_ops moert_cpu_backend;
/* Tries to bring up CUDA for runtime; on failure returns a status and leaves a sentence in
 * runtime->note (used for AUTO fallback) as well as in the last error. */
moert_status moert_cuda_backend_open(moert_runtime *runtime, const moert_runtime_options *opts);

/* CPU scratch sizing and forward (cpu/forward.c) */
void moert_cpu_scratch_carve(moert_scratch *scratch, moert_arena *arena, uint32_t workers);
moert_status moert_cpu_forward(moert_scratch *scratch, const moert_forward_args *args);

#endif
