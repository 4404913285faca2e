/* backend.c — the CUDA backend behind moert_backend_ops: device and context, the device
 * buffers of a scratch (one cuMemAlloc), the expert pointer tables, and the launches of
 * route, plan and forward on the caller's stream.
 *
 * Routing: DEVICE (and AUTO) runs ptx/route.cu and ptx/plan.cu on the stream with no
 * synchronisation, so route + forward can be captured in a CUDA graph; the host views are
 * copied back only when asked for (fetch_routing).  HOST copies the logits back (one stream
 * synchronisation), routes and plans with the host code and uploads the plan.  Logits in
 * host memory are always routed on the host.  forward allocates nothing and never
 * synchronises. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_api.h"
#include "jit.h"
#include "prefill.h"

typedef struct cuda_runtime {
  const moert_cuda_driver *cu;
  const moert_nvrtc *nvrtc;
  CUcontext ctx;
  CUdevice device;
  bool primary; /* ctx is the device's retained primary context */
  int cc_major, cc_minor, sm_count, smem_optin, smem_per_sm;
  bool pdl; /* programmatic dependent launch: sm_90+, cuLaunchKernelEx, not MOERT_CUDA_PDL=0 */
  bool narrow;    /* MOERT_PREFILL_NARROW=1, a benchmark and test hook: the narrow tiles wherever
                   * the prefill GEMMs take 64-row tiles (decode-log.md v11: slower there) */
  bool narrow_t1; /* the narrow prefill GEMMs instead of the split-K decode kernel wherever
                   * that kernel would run by itself (the default; MOERT_PREFILL_NARROW=0 turns
                   * it off, =1 keeps it) */
  int layer64;    /* MOERT_PREFILL_LAYER64: 1 the layer kernel wherever its module is built,
                   * 0 never, -1 (unset) where layer_due says */
  int w_evict;    /* MOERT_PREFILL_W_EVICT: 1 the weights' loads evict_first in every prefill
                   * GEMM launch of the routed experts, 2 the down GEMM's only (measured: no
                   * gain, decode-log.md v17), 0 never, -1 (unset) where w_evict_due says */
  int l2_bytes;   /* the device's L2 (0: unknown) */
  int prefill_bm; /* MOERT_PREFILL_BM=64|128|192 (a benchmark hook), else 0: by the plan */
  int tall;       /* 192-row tiles: 0 never (MOERT_PREFILL_TALL=0, or not sm_90a), 1 wherever
                   * the plan takes 128 (MOERT_PREFILL_TALL=1 or MOERT_PREFILL_BM=192), -1
                   * where tall_due says */
  int ksplit;     /* MOERT_PREFILL_KSPLIT: 0 never, 2 wherever the narrow tiles run, -1 (unset)
                   * where ksplit_due says */
  int ksplit128;  /* MOERT_PREFILL_KSPLIT128: 0 never, else (1 or unset) the 128-row down
                   * GEMM's K in two parts where ksplit128_due says */
  int narrow_bn;  /* MOERT_PREFILL_NARROW_BN: the narrow gate/up width (48-128; 64 the old
                   * one), 0 or unset (-1): by the items' fill of the SMs (narrow_gu_bn) */
  unsigned skip;  /* MOERT_BENCH_SKIP, a benchmark hook that breaks the output: the time of a
                   * piece as the difference of two runs.  Bit 1: device routing launches
                   * nothing once the scratch holds a device routing of the same tokens (the
                   * plan stays); 2: no combine; 4: no expert GEMMs; 8: an empty link
                   * first (moert_plan_count of no pairs, PDL: the cost of a launch boundary) */
  moert_jit_cache jit;
} cuda_runtime;

/* The expert kernels' tile (ptx/expert.cu): 16-row blocks (decoding) take a narrow, deep
 * tile, so that a few touched experts still spread over every SM with many bytes in flight;
 * larger blocks a wide one, which re-reads the activations less. */
typedef struct expert_tile {
  uint32_t bn, bk, stages;
} expert_tile;

static expert_tile pick_tile(uint32_t block_rows, size_t es) {
  if (es == 4) return (expert_tile){64, 32, 2};
  if (block_rows == 16) return (expert_tile){32, 64, 4};
  return (expert_tile){64, 32, 3};
}

typedef struct cuda_scratch {
  CUdeviceptr arena;
  CUdeviceptr ids, weights, offsets, packed_token, pair_of, sorted_pair, padded_offsets,
      block_expert, meta, bias, h, ypair, hs, ys;
  CUdeviceptr plan_counts; /* [chunks, E] expert counts of ptx/plan.cu's chunks */
  CUdeviceptr shared_offsets; /* {0, T}: the shared expert as a plan of one expert (0 set
                               * once, T by a memset on the stream at each forward) */
  void *pinned; /* [E] bias, then [pinned_rows, E] logits: host routing of device logits */
  size_t pinned_bytes;
  uint32_t pinned_rows;
  bool device_route_ok, forward_ok;
  bool prepared;
  bool host_fresh;    /* the host arrays hold the current routing */
  bool plan_on_host;  /* the current plan was built on the host: its block count is known */
  CUstream last_stream;
  uint32_t skip_T; /* MOERT_BENCH_SKIP bit 1: the tokens of the device routing held, 0 none */
  CUfunction fn_route, fn_plan_count, fn_plan_assign, fn_gate_up, fn_down, fn_combine;
  CUfunction fn_combine_act; /* rows in the activation dtype (prefill down.out_act), or NULL */
  CUfunction fn_combine_act2; /* the same, rows of two parts (the down GEMM's K split) */
  CUfunction fn_route_plan; /* route + plan in one CTA (ptx/route.cu), or NULL */
  /* the decode kernels of ptx/expert.cu, by chunks of 8 rows per pass: 1, 2, 4, 8 */
  CUfunction fn_dec_gate_up[4], fn_dec_down[4];
  unsigned int smem_dec[4];
  bool dec_ok[4];
  /* the split-K decode kernel (both projections in one launch) and its combine, or NULL */
  CUfunction fn_dec_fused, fn_combine_slabs;
  int dec_fused_mode;   /* MOERT_CUDA_DEC_FUSED: -1 auto, 0 never, 1 wherever it fits */
  uint64_t fused_ctas;  /* its CTAs resident at once on the GPU */
  uint64_t fused_pairs; /* the most pairs its partial rows (in ypair) have room for */
  bool combine_split; /* MOERT_CUDA_COMBINE_SPLIT (not 0): column splits at small T */
  bool shared_prefill; /* MOERT_CUDA_SHARED_PREFILL (not 0): the shared expert may take the
                        * prefill GEMMs */
  uint32_t shared_prefill_min_t; /* from this T on (MOERT_CUDA_SHARED_PREFILL_MIN_T, 1) */
  int decode_mode; /* MOERT_CUDA_DECODE: -1 auto (from T), 0 never, 1 always */
  int decode_nch;  /* MOERT_CUDA_DECODE_NCH: rows per pass forced (1, 2, 4, 8), 0 auto */
  unsigned int smem_gate_up, smem_down;
  expert_tile tile;
  /* the prefill grouped GEMMs (runtime/cuda/prefill.c): [0] 64-row tiles, [1] 128-row */
  int prefill_mode; /* MOERT_CUDA_PREFILL: -1 auto (from T), 0 never, 1 always */
  int route_tiles; /* MOERT_CUDA_ROUTE_TILES: -1 auto, 0 never, 1 at any T (the pair limit
                    * off): device routing writes the prefill row tiles when the forward of
                    * its T will take the sm_90 GEMMs */
  int tiles_bm;     /* the row tiles' height the last routing wrote (0: none written) */
  unsigned prefill_pdl; /* MOERT_CUDA_PREFILL_PDL, a benchmark hook (default 15): which of the
                         * routed prefill chain's launches are programmatic dependent ones:
                         * bit 0 tiles, 1 gate/up, 2 down, 3 the combine after them */
  bool prefill_ok;  /* bf16/f16 layer on sm_80+, and a T this scratch can hold needs it */
  moert_prefill_kernels pf[5]; /* 64-row tiles, 128-row tiles, 64-row narrow tiles for one
                                * token, for more (narrow_gu_bn; where the widths differ),
                                * 192-row tiles (tall_built) */
  bool tall_ok;    /* pf[4] is loaded */
  bool narrow_ok;  /* pf[2] is loaded */
  bool narrow2_ok; /* pf[3] is loaded (else the narrow tiles of every T are pf[2]) */
  unsigned narrow_fill; /* bit T - 1: narrow_fill_due at T (1-4), computed at prepare */
  int narrow_box;  /* the gate/up box rows those modules load (narrow_box_rows): experts
                    * whose narrow maps have other boxes (a top_k other than this layer's
                    * picks other widths) take the default tiles */
  CUdeviceptr prefill_tiles; /* moert_prefill_tiles_bytes(max_tokens k, E, 64) */
  CUdeviceptr layer_sync;    /* moert_prefill_layer_sync_bytes(max_tokens k, E): zeros */
  int last_path;             /* what the last forward ran: MOERT_CUDA_PATH_* */
  bool last_route_tiles;     /* the last forward took its row tiles from the routing */
  char forward_why[200];
} cuda_scratch;

typedef struct cuda_experts {
  CUdeviceptr table; /* [gate E][up E][down E][shared gate, up, down] device addresses */
  /* sm_90a: the 3E TMA maps of the weights (gate E, up E, down E; 128 bytes each, boxes of
   * 64 x 128 rows for gate/up and 64 x 256 for down), in the same allocation as the table;
   * 0 when the GPU is not sm_90 or the maps could not be encoded (the prefill GEMMs are
   * then not used on sm_90 with these experts) */
  CUdeviceptr maps;
  /* the shared expert's 3 maps (gate, up, down: the layout of maps for one expert), right
   * after the routed ones; 0 when there is no shared expert or its maps are missing (it then
   * runs on the tiled kernels on sm_90) */
  CUdeviceptr shared_maps;
  /* the narrow tiles' maps of the routed experts (boxes of narrow_box rows for gate/up, 128
   * for down; the layout of maps) unless MOERT_PREFILL_NARROW=0; else 0 */
  CUdeviceptr maps_narrow;
  int narrow_box; /* their gate/up box rows (narrow_box_rows of the experts' layer) */
  /* the 192-row tiles' maps (boxes of 96 rows for gate/up, 192 for down; the layout of maps)
   * where a plan of this layer may take those tiles (moert_prefill_tall_due); else 0 */
  CUdeviceptr maps_tall;
} cuda_experts;

#define ROUTE_TOKENS_PER_BLOCK 8
#define DEC_THREADS 128 /* ptx/expert.cu: DEC_WARPS * 32 */
#define DEC_STAGES 3

/* ptx/expert.cu's decode ring: DEC_THREADS x DEC_STAGES x (4 + NCH) x DEC_U(NCH) copies of
 * 16 bytes; and its static shared memory (the split-K partial sums) */
static unsigned int dec_smem(int nch) {
  const int u = nch <= 4 ? 2 : 1;
  return (unsigned int)(DEC_THREADS * DEC_STAGES * (4 + nch) * u * 16);
}
static unsigned int dec_static_smem(int nch) { return (unsigned int)(4 * 2 * nch * 32 * 16 + 64); }
/* The split-K decode kernel (ptx/expert.cu: moert_dec_fused, moert_combine_slabs) takes
 * decoding steps of up to this many pairs where the 8-row decode kernels are due and its work
 * items fill at most half of the GPU's resident CTAs (Qwen3-30B-A3B: T = 1; ypair then holds
 * its partial rows, 3 MiB at 16 pairs). */
#define DEC_FUSED_PAIRS 16
/* its dynamic shared memory: the gate/up ring (DEC_THREADS x DEC_STAGES x 9 copies of 16
 * bytes: 4 weight tiles of 16 rows and the x rows), which then holds the Wd ring (4 warps x
 * 3 x 4 KB); its static: the gate/up partial sums, the h slab, dec_expert's words */
#define DEC_FUSED_SLAB 32 /* ptx/expert.cu: DF_SLAB, rows of I a work item */
static unsigned int fused_smem(void) { return DEC_THREADS * DEC_STAGES * 9 * 16; }
static unsigned int fused_static_smem(void) { return 4 * 4 * 32 * 16 + 8 * 32 * 2 + 64; }
#define DEC_FUSED_FORCED_PAIRS 1024 /* MOERT_CUDA_DEC_FUSED=1: at any rows per expert, up to here */
/* Column splits of the combine: one CTA a token leaves most SMs idle at small T, so the
 * columns are split in chunks of 256 pairs (the sums do not change) up to about 64 CTAs. */
static unsigned combine_splits(const cuda_scratch *c, uint32_t T, uint32_t H) {
  const unsigned chunks = (H / 2 + 255) / 256, want = T < 64 ? 64 / T : 1;
  if (!c->combine_split) return 1;
  return want < chunks ? want : chunks;
}

/* The decode path and its rows per pass, from T alone (the host knows it; the routing is on
 * the device): expected rows per touched expert rpe = ceil(T k / E); passes of 8 NCH rows,
 * NCH 1 for rpe <= 1, 2 up to 8, 4 up to 16, 8 beyond (an expert with more rows takes
 * another pass, its slab then warm in L2); past 128 expected rows the tiled kernels.
 * Chosen from the H100 runs of docs/bench/decode-log.md (each NCH forced at T = 1..512):
 * NCH 8 beat the 16-row tiled kernels up to rpe 128 (Mixtral T=512: 3984 against 5946 us).
 * Returns the index of NCH (0..3), or -1 for the tiled path. */
static int pick_decode(const cuda_scratch *c, uint32_t T, uint32_t k, uint32_t E) {
  if (c->decode_mode == 0) return -1;
  const uint64_t rpe = ((uint64_t)T * k + E - 1) / E;
  if (c->decode_mode < 0 && rpe > 128) return -1;
  int i = rpe <= 1 ? 0 : rpe <= 8 ? 1 : rpe <= 16 ? 2 : 3;
  if (c->decode_nch) i = c->decode_nch == 1 ? 0 : c->decode_nch == 2 ? 1 : c->decode_nch == 4 ? 2 : 3;
  if (c->dec_ok[i]) return i;
  /* a GPU with less shared memory (sm_86/89: 99 KB a CTA) lacks the rings of NCH 4 and 8:
   * many short passes would re-read the activations, so the tiled kernels take those T
   * (unless the decode path is forced, for the tests: then the most rows it can) */
  if (c->decode_mode < 0) return -1;
  while (i >= 0 && !c->dec_ok[i]) i--;
  return i;
}
/* The prefill GEMMs (runtime/cuda/prefill.c) take bf16/f16 layers (moert_cuda_prefill_due,
 * prefill.h)
 *  - on sm_90 (wgmma + TMA), from T = 2 on (and at T = 1 where T k >= E, a row per expert on
 *    average, or where one expert's weights are 16 MiB or more): on the H100 the whole layer
 *    took, decode path against prefill GEMMs (docs/bench/decode-log.md, v5): Qwen3-30B-A3B
 *    (9 MiB experts) 44.8/49.9 us at T=1, 119.5/119.7 at T=4, 186.8/188.6 at T=8,
 *    290.8/283.2 at T=16, 398.7/392.3 at T=32, 449.4/431.9 at T=64; since prefill v7 (its
 *    producer fix), on an H200 (decode-log.md v9, call 9): 33.1-33.2 (split-K decode) /
 *    38.1-38.2 at T=1, 56.1-56.2 / 51.8 at T=2, 92.6-92.8 / 87.8-88.2 at T=4,
 *    144.8-145.0 / 135.4-135.5 at T=8;
 *    Qwen3-235B-A22B (36 MiB) 135.5/122.8 at T=1, 1522.6/1449.7 at T=32; Mixtral-8x7B
 *    (336 MiB) 328.5/266.0 at T=1, 1246.0/937.8 at T=32;
 *  - elsewhere (the mma.sync version, not measured on hardware yet) from rpe > 8 on
 *    (MOERT_CUDA_PREFILL_MIN_RPE, prefill.h), as first measured on the H100 for Qwen3-30B-A3B:
 *    488/468 us at T=128 (rpe 8), 505/463 at T=256 (docs/bench/prefill-log.md).
 * MOERT_CUDA_PREFILL=1 forces them at any T (the tests), 0 turns them off. */
static bool want_prefill(const cuda_runtime *r, const cuda_scratch *c, const moert_layer_desc *d,
                         uint32_t T) {
  if (c->prefill_mode == 0) return false;
  if (c->prefill_mode == 1) return true;
  const uint64_t expert_bytes =
      3ull * d->hidden * d->intermediate * moert_dtype_size(d->weight_dtype);
  return moert_cuda_prefill_due(r->cc_major, r->cc_minor, T, d->top_k, d->num_experts,
                                expert_bytes);
}

/* The narrow 64-row tiles (moert_prefill_narrow): their maps are built on sm_90a unless
 * MOERT_PREFILL_NARROW=0, their modules where a scratch's layer may take them (at T = 1:
 * prepare_locked).
 * On the H200 (docs/bench/decode-log.md, v11-v12) they ran Qwen3-30B-A3B T=1 on the prefill
 * GEMMs in 32.5-32.6 us (8 stages; 33.0-33.2 with 6) against 36.3 with the default tiles and
 * 33.3-33.5 on the split-K decode kernel, but Qwen3-30B-A3B T=2 in 54.0 against 50.0 and
 * Qwen3-235B-A22B T=1 in 98.3 against 88.3 (6 stages): twice the work items is not by itself
 * faster, so they run only where the split-K kernel would. */
static bool narrow_built(const cuda_runtime *r) { return r->narrow || r->narrow_t1; }

/* The split-K decode kernel for the decode path's choice dec: where its work items fill at
 * most half of the CTAs the GPU holds at once, unless forced.  On the H200 (396 places):
 * Qwen3-30B-A3B T = 1, 192 items, 33.0 us against 34.9 on the two decode kernels; T = 2, 384
 * items, 56.2 against 55.8 (docs/bench/decode-log.md, v9) */
static bool fused_due(const cuda_scratch *c, const moert_layer_desc *d, uint32_t T, int dec) {
  const uint64_t pairs = (uint64_t)T * d->top_k;
  const uint64_t jmax = pairs < d->num_experts ? pairs : d->num_experts; /* touched, at most */
  const uint64_t items = jmax * (d->intermediate / DEC_FUSED_SLAB);
  return dec >= 0 && c->fn_dec_fused && pairs <= c->fused_pairs &&
         (c->dec_fused_mode == 1 || (dec == 0 && 2 * items <= c->fused_ctas));
}

/* The 192-row tiles where moert_prefill_tall_due says (runtime/cuda/prefill.c: the rule and
 * its measurements) */
static bool tall_due(const cuda_runtime *r, const moert_layer_desc *d, uint64_t pairs) {
  return moert_prefill_tall_due(r->tall, d->num_experts, d->hidden, d->intermediate, pairs);
}
/* whether a forward of up to max_tokens may take them (their module is built only then) */
static bool tall_built(const cuda_runtime *r, const moert_layer_desc *d, uint32_t max_tokens) {
  const uint64_t most = (uint64_t)max_tokens * d->top_k;
  if (r->tall == 0) return false;
  return tall_due(r, d, most < 176ull * d->num_experts ? most : 176ull * d->num_experts) &&
         most >= 64ull * d->num_experts;
}

/* The prefill GEMMs' row tile height for T k pairs over E experts: 64 or 128 from the
 * average rows per expert, 192 where tall_due and their module is loaded
 * (MOERT_PREFILL_BM=64|128|192 forces one: a benchmark hook, read once per runtime - not on
 * the path of every call) */
static int prefill_tile_rows(const cuda_runtime *r, const cuda_scratch *c,
                             const moert_layer_desc *d, uint64_t pairs) {
  const int bm = r->prefill_bm == 192 ? 128
                 : r->prefill_bm    ? r->prefill_bm
                                    : moert_prefill_pick_bm(NULL, d->num_experts, pairs);
  return bm == 128 && c->tall_ok && tall_due(r, d, pairs) ? 192 : bm;
}

/* The narrow prefill GEMMs (64-row tiles) where the forward of T would take the split-K
 * decode kernel by itself (not where MOERT_CUDA_DEC_FUSED forces or forbids it, nor where
 * MOERT_CUDA_PREFILL=0 forbids the prefill GEMMs).  H200, Qwen3-30B-A3B T=1, three rounds:
 * 32.50-32.58 us against 33.34-33.54 on the split-K kernel, the same checksum bits
 * (decode-log.md v12). */
static bool narrow_t1_allowed(const cuda_runtime *r, const cuda_scratch *c) {
  return r->narrow_t1 && c->dec_fused_mode < 0 && c->prefill_mode != 0;
}
/* ... and the forward of T is such a step (before the narrow modules are loaded too) */
static bool narrow_t1_fits(const cuda_runtime *r, const cuda_scratch *c,
                           const moert_layer_desc *d, uint32_t T) {
  return narrow_t1_allowed(r, c) &&
         prefill_tile_rows(r, c, d, (uint64_t)T * d->top_k) == 64 &&
         fused_due(c, d, T, pick_decode(c, T, d->top_k, d->num_experts));
}
static bool narrow_t1_due(const cuda_runtime *r, const cuda_scratch *c,
                          const moert_layer_desc *d, uint32_t T) {
  return c->narrow_ok && c->prefill_ok && narrow_t1_fits(r, c, d, T);
}

/* A down GEMM's work items at T with column tiles of bn (256 the default tiles, 128 the
 * narrow ones): a column tile a touched expert, at most min(T k, E) touched (each holds one
 * 64-row tile at these sizes). */
static uint64_t down_items(const moert_layer_desc *d, uint32_t T, uint32_t bn) {
  const uint64_t pairs = (uint64_t)T * d->top_k;
  return (pairs < d->num_experts ? pairs : d->num_experts) * ((d->hidden + bn - 1) / bn);
}
static uint64_t sm_count_of(const cuda_runtime *r) {
  return r->sm_count > 0 ? (uint64_t)r->sm_count : 132;
}
/* The narrow gate/up tiles' width for the forward of T tokens of layer d: the width whose work
 * items fill the last round of SMs best (moert_prefill_narrow_pick) with the experts one token
 * touches (T = 1), else with those two touch (a second module where that differs; the hook
 * MOERT_PREFILL_NARROW_BN=n forces one width).  H200 (decode-log.md v18, s17 calls 4-7), the
 * same bits: at T = 1 against the old 64, Mixtral-8x7B 112 columns, 256 items against 448 in
 * four rounds, 170.4-171.9 us against 181.9-183.0; Qwen3-30B-A3B 48 columns, 128 items against
 * 96, 28.35-28.51 / 28.59-28.77; at T = 2-4 Qwen3-30B-A3B 96 columns (T=2 44.7 against 45.9 on
 * the default tiles, T=4 75.5 against 78.0; 48 columns at T=4: 82.4-82.8). */
static int narrow_gu_bn(const cuda_runtime *r, const moert_layer_desc *d, uint32_t T) {
  if (r->narrow_bn > 0) return r->narrow_bn;
  const uint64_t k = T > 1 ? 2ull * d->top_k : d->top_k;
  return moert_prefill_narrow_pick(d->intermediate, k < d->num_experts ? k : d->num_experts,
                                   (unsigned)sm_count_of(r));
}
/* the rows of the narrow weight maps' TMA box: a divisor of both widths (prefill_sm90.cu's
 * MOERT_BOX_ROWS), so that one set of maps serves both modules */
static int narrow_box_rows(const cuda_runtime *r, const moert_layer_desc *d) {
  int a = narrow_gu_bn(r, d, 1), b = narrow_gu_bn(r, d, 2);
  while (b) {
    const int t = a % b;
    a = b;
    b = t;
  }
  return a;
}
/* The narrow tiles for 1 to 4 tokens where their gate/up items (narrow_gu_bn) fill the SMs
 * better than the default tiles' (128 columns), at most min(T k, E) experts touched, and the
 * default items take at most two rounds of the SMs (with more, DRAM and not what each SM keeps
 * in flight bounds the GEMM).  H200 (decode-log.md v18, s17 calls 4-8): Qwen3-235B-A22B T=1
 * (96 default items on 132 SMs, 128 narrow ones of 96 columns) 80.3-80.7 us against 83.2-84.6
 * (narrow tiles of 64 columns: 90.4-90.8), T=2 148.1-148.2 against 150.8-151.6; Qwen3-30B-A3B
 * T=2 44.6-44.7 / 45.9-46.0, T=3 65.3-65.5 / 70.3-70.5, T=4 75.1-75.2 / 78.1-78.2.  Past two
 * rounds: Mixtral-8x7B T=3 (672 default items) 454.1-454.3 against 443.6-444.1, Qwen3-235B-A22B
 * T=3 (288) 209.0-209.3 / 209.9-210.0.  Not due (equal fill), and slower with the hook:
 * Qwen3-235B-A22B T=4 271.4-271.8 against 268.0-268.3, Mixtral-8x7B T=4 453.8 / 444.1-445.5. */
static bool narrow_fill_due(const cuda_runtime *r, const moert_layer_desc *d, uint32_t T) {
  if (!r->narrow_t1 || T < 1 || T > 4) return false;
  const uint64_t pairs = (uint64_t)T * d->top_k;
  const uint64_t touched = pairs < d->num_experts ? pairs : d->num_experts;
  const uint64_t bn = (uint64_t)narrow_gu_bn(r, d, T), sms = sm_count_of(r);
  const uint64_t items = touched * ((d->intermediate + 127) / 128); /* the default tiles' */
  return items <= 2 * sms &&
         moert_prefill_fill(touched * ((d->intermediate + bn - 1) / bn), (unsigned)sms) >
             moert_prefill_fill(items, (unsigned)sms) + 0.05;
}
/* narrow_fill_due at T = 1-4, bit T - 1 (a layer's fixed answers, kept by its scratch) */
static unsigned narrow_fill_mask(const cuda_runtime *r, const moert_layer_desc *d) {
  unsigned m = 0;
  for (uint32_t T = 1; T <= 4; T++) m |= narrow_fill_due(r, d, T) ? 1u << (T - 1) : 0u;
  return m;
}
/* The narrow tiles (half as wide: twice the work items) where 64-row tiles would leave the
 * default down GEMM fewer items than half the SMs (unless MOERT_PREFILL_NARROW=0).  H200,
 * two rounds (decode-log.md v17, call 3): Mixtral-8x7B T=1 202.4-202.6 us against
 * 217.9 (32 down items; ncu: that GEMM at 55 % of DRAM throughput, 90.8 us), T=2 342.5-343.2
 * against 370.5-370.6 (64 items); slower at T=4 (128 items: 472.9-473.2 against 457.3-459.5),
 * on Qwen3-235B-A22B T=1 (128 items: 92.0-92.2 against 84.5) and Qwen3-30B-A3B T=2 (128
 * items, v12); Qwen3-30B-A3B T=1 (64 items) takes them already (narrow_t1_due). */
static bool narrow_few_due(const cuda_runtime *r, const moert_layer_desc *d, uint32_t T) {
  return r->narrow_t1 && 2 * down_items(d, T, 256) < sm_count_of(r);
}
/* The narrow down GEMM's K (I) in two parts, each item half of it and twice the items, the
 * combine adding the parts, where its column tiles of 128 still give fewer items than half
 * the SMs: Mixtral-8x7B T=1 (64 items of 3.7 MB each, per-SM bandwidth-bound).  Hook
 * MOERT_PREFILL_KSPLIT=0 (never) or 2 (wherever the narrow tiles run). */
static bool ksplit_due(const cuda_runtime *r, const moert_layer_desc *d, uint32_t T) {
  if (r->ksplit == 0 || d->intermediate < 4 * 64) return false;
  return r->ksplit == 2 || 2 * down_items(d, T, 128) < sm_count_of(r);
}

/* The 128-row down GEMM's K in two parts where moert_prefill_ksplit128_due says
 * (runtime/cuda/prefill.c: the rule and its measurements); MOERT_PREFILL_KSPLIT128=0 never */
static bool ksplit128_due(const cuda_runtime *r, const moert_layer_desc *d, uint64_t pairs) {
  return r->ksplit128 && moert_prefill_ksplit128_due(d->num_experts, d->hidden, d->intermediate,
                                                     pairs, (unsigned)sm_count_of(r));
}
/* whether a forward of up to max_tokens takes that split with 128-row tiles: the 128-row down
 * module is built with it only then (off but built in, the split's code costs a little: v18).
 * Past 3 whole rounds it is never due (halves >= 2 whole - 1), so the walk stops early. */
static bool ksplit128_built(const cuda_runtime *r, const cuda_scratch *c, const moert_layer_desc *d,
                            uint32_t max_tokens) {
  if (!r->ksplit128 || d->intermediate < 4 * 64) return false;
  const uint64_t sms = sm_count_of(r);
  /* (at prepare the 192-row tiles are not loaded yet, so this sees 128 where they may take
   * over: then the forward runs them, and the split is only built in, not taken) */
  for (uint64_t T = 1; T <= max_tokens; T++) {
    const uint64_t pairs = T * d->top_k;
    if (prefill_tile_rows(r, c, d, pairs) != 128) continue;
    if (ksplit128_due(r, d, pairs)) return true;
    if (moert_prefill_down_items(d->num_experts, d->hidden, pairs, 128, 256) > 3 * sms) break;
  }
  return false;
}

/* Both GEMMs of the default 64-row tiles in one launch (moert_prefill_layer) where the
 * gate/up and the down items each outnumber the SMs (row tiles taken as min(T k, E) +
 * T k / 64) and an expert has fewer than 8 rows on average.  H200, two rounds against two
 * launches (decode-log.md v15, call 4), Qwen3-30B-A3B: T=4 80.7-80.8 us against 84.0-84.1,
 * T=8 123.0 / 131.4-131.5, T=16 192.7-192.8 / 196.2-196.3, T=32 264.4-264.6 / 270.8-271.1,
 * T=64 293.5-293.8 / 294.2-295.1; Qwen3-235B-A22B T=8 448.2 / 462.6, T=32 994.6 / 1007.4.
 * Not taken: T=128-512 of Qwen3-30B-A3B (0.5-1.4 % slower: 300.2-300.4 / 298.9 at T=128,
 * 317.8-318.2 / 313.5-314.0 at T=512 - the layer kernel has the 4-byte stores, not the
 * wide epilogue), T=2 (equal, 96 gate/up items).  The down items need only fill half the
 * SMs (fewer take the narrow tiles, narrow_few_due): Mixtral-8x7B T=4, 128 down items,
 * 444.5-446.5 against 457.3-459.5 (decode-log.md v17, call 3). */
static bool layer_due(const cuda_runtime *r, const moert_layer_desc *d, uint64_t pairs) {
  if (r->layer64 >= 0) return r->layer64 == 1;
  const uint64_t tiles = (pairs < d->num_experts ? pairs : d->num_experts) + pairs / 64;
  const uint64_t sms = sm_count_of(r);
  return pairs < 8ull * d->num_experts && tiles * ((d->intermediate + 127) / 128) >= sms &&
         2 * tiles * ((d->hidden + 255) / 256) >= sms;
}

/* The weights' TMA loads marked evict_first in L2 (moert_prefill_args.w_evict) where what the
 * GEMMs write and read back - h (T k rows of I), the rows the combine sums (T k of H) and x
 * - takes at most a third of the L2: those rows then outlive the weights streamed past
 * them.  H200 (50 MB L2), two rounds against no hint (decode-log.md v16): Qwen3-30B-A3B T=1
 * 30.5-30.7 us against 31.4, T=8 122.0-122.1 / 123.3-123.6, T=32 262.7-263.4 / 265.4-265.8,
 * T=128 295.4-297.5 / 302.1-302.6, T=256 303.0-303.4 / 308.8-309.2; not taken (slower):
 * T=512 (25 MB of rows) 322.3-323.2 / 317.2-317.4, Qwen3-235B-A22B T=512 1246 / 1184,
 * Mixtral-8x7B T=512 1160 / 1122, prefill T=2048 474-476 / 435-441 (weights read by several
 * row tiles).  Returns moert_prefill_args.w_evict's bits (3: both GEMMs; the hook's 2: the down
 * GEMM's weights only, an experiment). */
static int w_evict_due(const cuda_runtime *r, const moert_layer_desc *d, uint32_t T) {
  if (r->w_evict >= 0) return r->w_evict == 1 ? 3 : r->w_evict == 2 ? 2 : 0;
  const double es = (double)moert_dtype_size(d->act_dtype);
  const double rows = ((double)T * d->top_k * ((double)d->intermediate + d->hidden) +
                       2.0 * T * d->hidden) * es;
  return r->l2_bytes > 0 && 3.0 * rows <= (double)r->l2_bytes ? 3 : 0;
}

/* The row tiles device routing writes for the forward of T tokens (0: none): where that
 * forward takes the sm_90 prefill GEMMs on the routed experts, no shared expert (whose
 * GEMMs rewrite the tiles) follows them, and T k <= MOERT_CUDA_ROUTE_TILES_MAX_PAIRS
 * (prefill.h).  The forward then skips moert_prefill_tiles.  H200, Qwen3-30B-A3B, three
 * rounds against MOERT_CUDA_ROUTE_TILES=0 (docs/bench/decode-log.md, v10): about 1 us
 * faster from T = 2 to 256 (50.0 against 51.2 us at T = 2, 302.3 against 303.2 at
 * T = 128), 1.2 us slower at T = 512 (4096 pairs, plan_assign in 8 blocks): 317.5 against
 * 316.2. */
static int route_tile_rows(const cuda_runtime *r, const cuda_scratch *c, const moert_layer_desc *d,
                           uint32_t T) {
  if (c->route_tiles == 0 || !c->prefill_ok || !c->prefill_tiles || d->shared_intermediate ||
      (c->route_tiles < 0 && (uint64_t)T * d->top_k > MOERT_CUDA_ROUTE_TILES_MAX_PAIRS) ||
      c->pf[0].gate_up.sm != 90 || !(want_prefill(r, c, d, T) || narrow_t1_due(r, c, d, T)))
    return 0;
  return prefill_tile_rows(r, c, d, (uint64_t)T * d->top_k);
}
/* ptx/plan.cu: blocks of PLAN_THREADS threads, each over a chunk of PLAN_THREADS * groups
 * pairs; groups 1..8, so that there are at most 64 chunks up to 262144 pairs (short blocks at
 * decode sizes, a short count list for each block to sum at prefill sizes) */
#define PLAN_THREADS 512
static int plan_groups(size_t pairs) {
  const size_t g = (pairs + PLAN_THREADS * 64 - 1) / (PLAN_THREADS * 64);
  return g < 1 ? 1 : g > 8 ? 8 : (int)g;
}
static size_t plan_chunks(size_t pairs) {
  const size_t chunk = PLAN_THREADS * (size_t)plan_groups(pairs);
  return pairs ? (pairs + chunk - 1) / chunk : 1;
}
/* the most chunks of any pair count up to pairs (plan_chunks is not monotonic) */
static size_t plan_chunks_max(size_t pairs) {
  return 64 + (pairs + PLAN_THREADS * 8 - 1) / (PLAN_THREADS * 8);
}
/* ptx/route.cu's moert_route_plan: one CTA of up to 1024 threads, a warp a token and a
 * thread a pair; taken up to 32 tokens (one token a warp).  Above, the multi-CTA route and
 * the two-launch plan are faster: on the H200 Qwen3-30B-A3B T=128 took 304 us with them
 * against 324 with the one CTA, T=64 299 against 302, Qwen3-235B-A22B T=128 1287-1301 against
 * 1306-1312, Mixtral-8x7B T=128 684-686 against 694; T=32 and below the one CTA wins by 1-7 us
 * (docs/bench/decode-log.md, seventh session) */
#define ROUTE_PLAN_MAX_E 256
#define ROUTE_PLAN_MAX_PAIRS 1024
#define ROUTE_PLAN_MAX_TOKENS 32

static cuda_runtime *rt_of(const moert_scratch *s) {
  return (cuda_runtime *)s->runtime->backend_state;
}

/* ---- context ---- */

static moert_status push_ctx(cuda_runtime *r) {
  CUresult rc = r->cu->cuCtxPushCurrent(r->ctx);
  return rc == MOERT_CUDA_SUCCESS ? MOERT_OK : moert_cuda_fail(r->cu, rc, "cuCtxPushCurrent");
}
static void pop_ctx(cuda_runtime *r) {
  CUcontext dummy;
  (void)r->cu->cuCtxPopCurrent(&dummy);
}

#define CU_CHECK(r, call, what)                                                            \
  do {                                                                                     \
    CUresult rc_ = (call);                                                                 \
    if (rc_ != MOERT_CUDA_SUCCESS) {                                                       \
      st = moert_cuda_fail((r)->cu, rc_, what);                                            \
      goto done;                                                                           \
    }                                                                                      \
  } while (0)

/* ---- runtime ---- */

static void cuda_runtime_fini(moert_runtime *rt) {
  cuda_runtime *r = rt->backend_state;
  if (!r) return;
  if (push_ctx(r) == MOERT_OK) {
    moert_jit_cache_fini(&r->jit);
    pop_ctx(r);
  }
  if (r->primary) r->cu->cuDevicePrimaryCtxRelease(r->device);
  free(r);
  rt->backend_state = NULL;
}

static moert_status open_fail(moert_runtime *rt, moert_status st, const char *sentence) {
  snprintf(rt->note, sizeof rt->note, "%.250s", sentence);
  return moert_fail(st, "%s", sentence);
}

extern const moert_backend_ops moert_cuda_backend;

moert_status moert_cuda_backend_open(moert_runtime *rt, const moert_runtime_options *o) {
  char why[512];
  const moert_cuda_driver *cu = NULL;
  const moert_nvrtc *nv = NULL;
  if (moert_cuda_driver_get(&cu, why, sizeof why) != MOERT_OK)
    return open_fail(rt, MOERT_ERR_BACKEND_UNAVAILABLE, why);
  if (moert_nvrtc_get(&nv, why, sizeof why) != MOERT_OK)
    return open_fail(rt, MOERT_ERR_BACKEND_UNAVAILABLE, why);
  cuda_runtime *r = calloc(1, sizeof *r);
  if (!r) return open_fail(rt, MOERT_ERR_OUT_OF_MEMORY, "out of host memory for the CUDA backend");
  r->cu = cu;
  r->nvrtc = nv;
  CUresult rc;
  if (o->cu_context) {
    r->ctx = (CUcontext)o->cu_context;
    if ((rc = cu->cuCtxPushCurrent(r->ctx)) != MOERT_CUDA_SUCCESS) {
      free(r);
      snprintf(why, sizeof why, "the caller's CUcontext cannot be made current (CUDA error %d)", rc);
      return open_fail(rt, MOERT_ERR_BACKEND_UNAVAILABLE, why);
    }
    rc = cu->cuCtxGetDevice(&r->device);
    pop_ctx(r);
    if (rc != MOERT_CUDA_SUCCESS) {
      free(r);
      snprintf(why, sizeof why, "cuCtxGetDevice on the caller's CUcontext failed (CUDA error %d)", rc);
      return open_fail(rt, MOERT_ERR_BACKEND_UNAVAILABLE, why);
    }
  } else {
    int count = 0;
    if ((rc = cu->cuDeviceGetCount(&count)) != MOERT_CUDA_SUCCESS || count <= 0 ||
        o->device_ordinal >= count) {
      free(r);
      snprintf(why, sizeof why, "CUDA device %d does not exist (the driver lists %d)",
               o->device_ordinal, rc == MOERT_CUDA_SUCCESS ? count : 0);
      return open_fail(rt, MOERT_ERR_BACKEND_UNAVAILABLE, why);
    }
    if ((rc = cu->cuDeviceGet(&r->device, o->device_ordinal)) != MOERT_CUDA_SUCCESS ||
        (rc = cu->cuDevicePrimaryCtxRetain(&r->ctx, r->device)) != MOERT_CUDA_SUCCESS) {
      free(r);
      snprintf(why, sizeof why, "the primary context of CUDA device %d cannot be retained "
               "(CUDA error %d)", o->device_ordinal, rc);
      return open_fail(rt, MOERT_ERR_BACKEND_UNAVAILABLE, why);
    }
    r->primary = true;
  }
  char name[128] = "unknown GPU";
  (void)cu->cuDeviceGetName(name, (int)sizeof name, r->device);
  cu->cuDeviceGetAttribute(&r->cc_major, MOERT_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
                           r->device);
  cu->cuDeviceGetAttribute(&r->cc_minor, MOERT_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
                           r->device);
  cu->cuDeviceGetAttribute(&r->sm_count, MOERT_CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, r->device);
  cu->cuDeviceGetAttribute(&r->smem_optin, MOERT_CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
                           r->device);
  if (cu->cuDeviceGetAttribute(&r->smem_per_sm,
                               MOERT_CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR,
                               r->device) != MOERT_CUDA_SUCCESS)
    r->smem_per_sm = 0;
  {
    const char *pdl = getenv("MOERT_CUDA_PDL");
    r->pdl = r->cc_major >= 9 && cu->cuLaunchKernelEx != NULL && !(pdl && !strcmp(pdl, "0"));
    const char *nw = getenv("MOERT_PREFILL_NARROW");
    r->narrow = nw && !strcmp(nw, "1");
    r->narrow_t1 = !(nw && !strcmp(nw, "0"));
    const char *l64 = getenv("MOERT_PREFILL_LAYER64");
    r->layer64 = l64 && !strcmp(l64, "1") ? 1 : l64 && !strcmp(l64, "0") ? 0 : -1;
    const char *we = getenv("MOERT_PREFILL_W_EVICT");
    r->w_evict = we && (!strcmp(we, "0") || !strcmp(we, "1") || !strcmp(we, "2")) ? atoi(we) : -1;
    if (cu->cuDeviceGetAttribute(&r->l2_bytes, MOERT_CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE,
                                 r->device) != MOERT_CUDA_SUCCESS)
      r->l2_bytes = 0;
    const char *fb = getenv("MOERT_PREFILL_BM");
    r->prefill_bm = fb && (!strcmp(fb, "64") || !strcmp(fb, "128") || !strcmp(fb, "192"))
                        ? atoi(fb) : 0;
    const char *tl = getenv("MOERT_PREFILL_TALL");
    r->tall = !(r->cc_major == 9 && r->cc_minor == 0) || (tl && !strcmp(tl, "0")) ? 0
              : (tl && !strcmp(tl, "1")) || r->prefill_bm == 192                ? 1
                                                                                 : -1;
    const char *nbn = getenv("MOERT_PREFILL_NARROW_BN");
    const int nbv = nbn && *nbn ? atoi(nbn) : -1; /* a width the kernel has, else the rule */
    r->narrow_bn = moert_prefill_narrow_width_ok(nbv) ? nbv : -1;
    const char *ksp = getenv("MOERT_PREFILL_KSPLIT");
    r->ksplit = ksp && (!strcmp(ksp, "0") || !strcmp(ksp, "2")) ? atoi(ksp) : -1;
    const char *k128 = getenv("MOERT_PREFILL_KSPLIT128");
    r->ksplit128 = !(k128 && !strcmp(k128, "0"));
    const char *sk = getenv("MOERT_BENCH_SKIP");
    r->skip = sk ? (unsigned)strtoul(sk, NULL, 10) & 15u : 0;
  }
  char arch[32];
  moert_status st = moert_jit_pick_arch(nv, r->cc_major, r->cc_minor, arch, sizeof arch);
  if (st == MOERT_OK)
    st = moert_jit_cache_init(&r->jit, cu, nv, r->ctx, arch,
                              rt->cache_disabled ? "" : rt->cache_dir);
  if (st != MOERT_OK) {
    snprintf(why, sizeof why, "%s: %s", name, moert_last_error());
    if (r->primary) cu->cuDevicePrimaryCtxRelease(r->device);
    free(r);
    return open_fail(rt, st == MOERT_ERR_UNSUPPORTED ? MOERT_ERR_BACKEND_UNAVAILABLE : st, why);
  }
  rt->backend_state = r;
  rt->ops = &moert_cuda_backend;
  snprintf(rt->note, sizeof rt->note, "CUDA: %s (sm_%d%d, %s, NVRTC %d.%d)", name, r->cc_major,
           r->cc_minor, arch, nv->major, nv->minor);
  return MOERT_OK;
}

/* ---- scratch ---- */

static bool is_float(moert_dtype d) {
  return d == MOERT_DTYPE_BF16 || d == MOERT_DTYPE_F16 || d == MOERT_DTYPE_F32;
}

static size_t align_up(size_t n) { return (n + 255) & ~(size_t)255; }

/* Lays the scratch's device buffers out from base (base 0: only counts). */
static size_t carve_device(moert_scratch *s, cuda_scratch *c, CUdeviceptr base) {
  const moert_layer_desc *d = &s->desc;
  const size_t T = s->max_tokens, k = d->top_k, E = d->num_experts, pairs = T * k;
  const size_t blocks = moert_plan_max_blocks(s->max_tokens, d->top_k, d->num_experts,
                                              s->plan.block_rows);
  size_t off = 0;
#define TAKE(field, bytes)                                                                 \
  do {                                                                                     \
    c->field = base ? base + off : 0;                                                      \
    off += align_up(bytes);                                                                \
  } while (0)
  TAKE(ids, pairs * 4);
  TAKE(weights, pairs * 4);
  TAKE(offsets, (E + 1) * 4);
  TAKE(padded_offsets, (E + 1) * 4);
  TAKE(packed_token, pairs * 4);
  TAKE(pair_of, pairs * 4);
  TAKE(sorted_pair, pairs * 4);
  TAKE(block_expert, blocks * 4);
  TAKE(meta, 16);
  TAKE(plan_counts, plan_chunks_max(pairs) * E * 4);
  TAKE(bias, E * 4);
  TAKE(shared_offsets, 8);
  if (c->forward_ok && c->prefill_ok) {
    TAKE(prefill_tiles, moert_prefill_tiles_bytes(pairs, (uint32_t)E, 64));
    TAKE(layer_sync, moert_prefill_layer_sync_bytes(pairs, (uint32_t)E));
  }
  if (c->forward_ok) {
    const size_t es = moert_dtype_size(d->act_dtype);
    TAKE(h, pairs * d->intermediate * es);
    /* the split-K decode kernel's partial rows, I / 32 a pair, share ypair */
    const size_t fused_rows = (size_t)c->fused_pairs * (d->intermediate / DEC_FUSED_SLAB);
    TAKE(ypair, (pairs > fused_rows ? pairs : fused_rows) * d->hidden * 4);
    if (d->shared_intermediate) {
      TAKE(hs, T * d->shared_intermediate * es);
      TAKE(ys, T * d->hidden * 4);
    }
  }
#undef TAKE
  return off;
}

static moert_status cuda_scratch_init(moert_scratch *s) {
  cuda_runtime *r = rt_of(s);
  const moert_layer_desc *d = &s->desc;
  const uint32_t br = s->plan.block_rows;
  if (br != 16 && br != 32 && br != 64 && br != 128)
    return moert_fail(MOERT_ERR_UNSUPPORTED, "moert_scratch_create: the CUDA backend runs plan "
                      "blocks of 16, 32, 64 or 128 rows, not plan_block_rows %u", br);
  cuda_scratch *c = calloc(1, sizeof *c);
  if (!c) return moert_fail(MOERT_ERR_OUT_OF_MEMORY, "moert_scratch_create: out of host memory");
  c->device_route_ok = d->num_experts <= 512 && d->top_k <= 16 &&
                       (d->router == MOERT_ROUTER_SOFTMAX_TOPK || d->n_group <= 64);
  /* The tensor-core kernels take both operands in one type and K a multiple of 32. */
  c->forward_ok = false;
  {
    const char *dm = getenv("MOERT_CUDA_DECODE"); /* a test and benchmark hook */
    c->decode_mode = dm && !strcmp(dm, "0") ? 0 : dm && !strcmp(dm, "1") ? 1 : -1;
    const char *dn = getenv("MOERT_CUDA_DECODE_NCH"); /* a benchmark hook: rows per pass */
    c->decode_nch = dn ? atoi(dn) : 0;
    if (c->decode_nch != 1 && c->decode_nch != 2 && c->decode_nch != 4 && c->decode_nch != 8)
      c->decode_nch = 0;
    const char *pm = getenv("MOERT_CUDA_PREFILL"); /* a test and benchmark hook */
    c->prefill_mode = pm && !strcmp(pm, "0") ? 0 : pm && !strcmp(pm, "1") ? 1 : -1;
    const char *rt = getenv("MOERT_CUDA_ROUTE_TILES"); /* a benchmark hook: 0 = off */
    c->route_tiles = rt && !strcmp(rt, "0") ? 0 : rt && !strcmp(rt, "1") ? 1 : -1;
    const char *ppdl = getenv("MOERT_CUDA_PREFILL_PDL"); /* a benchmark hook: 0 .. 15 */
    c->prefill_pdl = ppdl && atoi(ppdl) >= 0 && atoi(ppdl) <= 15 ? (unsigned)atoi(ppdl) : 15u;
    const char *sp = getenv("MOERT_CUDA_SHARED_PREFILL"); /* a benchmark hook: 0 = off */
    c->shared_prefill = !(sp && !strcmp(sp, "0"));
    const char *sm = getenv("MOERT_CUDA_SHARED_PREFILL_MIN_T"); /* a benchmark hook */
    c->shared_prefill_min_t = sm && atoi(sm) > 0 ? (uint32_t)atoi(sm) : 1;
    const char *cs = getenv("MOERT_CUDA_COMBINE_SPLIT"); /* a benchmark hook: 0 = off */
    c->combine_split = !(cs && !strcmp(cs, "0"));
    const char *df = getenv("MOERT_CUDA_DEC_FUSED"); /* a test and benchmark hook */
    c->dec_fused_mode = df && !strcmp(df, "0") ? 0 : df && !strcmp(df, "1") ? 1 : -1;
  }
  if (!is_float(d->act_dtype) || d->weight_dtype != d->act_dtype)
    snprintf(c->forward_why, sizeof c->forward_why,
             "the CUDA backend runs experts whose weights have the activations' dtype "
             "(this layer: activations %s, weights %s)",
             moert_dtype_name(d->act_dtype), moert_dtype_name(d->weight_dtype));
  else if (d->hidden % 32 || d->intermediate % 32 || d->shared_intermediate % 32)
    snprintf(c->forward_why, sizeof c->forward_why,
             "the CUDA backend needs hidden, intermediate and shared_intermediate to be "
             "multiples of 32 (this layer: %u, %u, %u)",
             d->hidden, d->intermediate, d->shared_intermediate);
  else
    c->forward_ok = true;
  /* the prefill GEMMs: bf16/f16 on sm_80 and newer, when some T up to max_tokens takes them
   * (on sm_90a the narrow ones may take T = 1 where the split-K decode kernel would:
   * narrow_t1_due, known once the kernels are loaded) */
  c->prefill_ok = c->forward_ok &&
                  (d->act_dtype == MOERT_DTYPE_BF16 || d->act_dtype == MOERT_DTYPE_F16) &&
                  r->cc_major >= 8 && (uint64_t)s->max_tokens * d->top_k <= 0x7fffffffull &&
                  (want_prefill(r, c, d, s->max_tokens) ||
                   (narrow_t1_allowed(r, c) && r->cc_major == 9 && r->cc_minor == 0 &&
                    (uint64_t)d->top_k <= DEC_FUSED_PAIRS));
  /* the split-K decode kernel takes bf16/f16 decoding steps of up to DEC_FUSED_PAIRS pairs
   * (DEC_FUSED_FORCED_PAIRS when forced); its partial rows need ypair to hold I / 32 rows a
   * pair */
  if (c->forward_ok && d->act_dtype != MOERT_DTYPE_F32 && c->dec_fused_mode != 0) {
    const uint64_t pairs = (uint64_t)s->max_tokens * d->top_k;
    const uint64_t most = c->dec_fused_mode == 1 ? DEC_FUSED_FORCED_PAIRS : DEC_FUSED_PAIRS;
    c->fused_pairs = pairs < most ? pairs : most;
  }
  c->last_path = MOERT_CUDA_PATH_NONE;
  moert_status st = MOERT_OK;
  if ((st = push_ctx(r)) != MOERT_OK) {
    free(c);
    return st;
  }
  size_t bytes = carve_device(s, c, 0);
  CU_CHECK(r, r->cu->cuMemAlloc(&c->arena, bytes), "cuMemAlloc of the scratch's device buffers");
  carve_device(s, c, c->arena);
  {
    const int32_t zero = 0; /* the shared expert's plan starts at row 0, always */
    CU_CHECK(r, r->cu->cuMemcpyHtoD(c->shared_offsets, &zero, sizeof zero),
             "cuMemcpyHtoD of the shared expert's plan");
  }
  if (c->layer_sync) { /* the layer kernel's counters start at zero and end each launch there */
    const size_t n = moert_prefill_layer_sync_bytes((uint64_t)s->max_tokens * d->top_k,
                                                    d->num_experts);
    void *zeros = calloc(1, n);
    if (!zeros) {
      st = moert_fail(MOERT_ERR_OUT_OF_MEMORY, "moert_scratch_create: out of host memory");
      goto done;
    }
    const CUresult zrc = r->cu->cuMemcpyHtoD(c->layer_sync, zeros, n);
    free(zeros);
    CU_CHECK(r, zrc, "cuMemcpyHtoD of the prefill layer counters");
  }
  /* device logits are host-routed in chunks of pinned_rows rows: at most 16 MB pinned */
  c->pinned_rows = (uint32_t)((16u << 20) / ((size_t)d->num_experts * 4));
  const char *test_rows = getenv("MOERT_TEST_HOST_ROUTE_ROWS"); /* a test hook: tiny chunks */
  if (test_rows && atoi(test_rows) > 0) c->pinned_rows = (uint32_t)atoi(test_rows);
  if (c->pinned_rows > s->max_tokens) c->pinned_rows = s->max_tokens;
  c->pinned_bytes = ((size_t)c->pinned_rows + 1) * d->num_experts * 4;
  CU_CHECK(r, r->cu->cuMemAllocHost(&c->pinned, c->pinned_bytes),
           "cuMemAllocHost of the scratch's logits staging buffer");
  s->device_bytes = bytes;
  s->backend_state = c;
done:
  if (st != MOERT_OK) {
    if (c->arena) r->cu->cuMemFree(c->arena);
    free(c);
  }
  pop_ctx(r);
  return st;
}

static void cuda_scratch_fini(moert_scratch *s) {
  cuda_scratch *c = s->backend_state;
  cuda_runtime *r = rt_of(s);
  if (!c) return;
  if (push_ctx(r) == MOERT_OK) {
    if (c->pinned) r->cu->cuMemFreeHost(c->pinned);
    if (c->arena) r->cu->cuMemFree(c->arena);
    pop_ctx(r);
  }
  free(c);
  s->backend_state = NULL;
}

static void define(moert_jit_request *q, const char *name, long value) {
  static _Thread_local char storage[MOERT_JIT_MAX_DEFINES][48];
  snprintf(storage[q->num_defines], sizeof storage[0], "%s=%ld", name, value);
  q->defines[q->num_defines] = storage[q->num_defines];
  q->num_defines++;
}

static moert_status get_function(cuda_runtime *r, CUmodule m, const char *name, CUfunction *f) {
  CUresult rc = r->cu->cuModuleGetFunction(f, m, name);
  if (rc == MOERT_CUDA_SUCCESS) return MOERT_OK;
  char what[96];
  snprintf(what, sizeof what, "cuModuleGetFunction(%s)", name);
  return moert_cuda_fail(r->cu, rc, what);
}

/* ptx/expert.cu's dynamic shared memory: STAGES x (BM + NB x BN) rows of BK + 16 bytes */
static unsigned int expert_smem(expert_tile t, uint32_t bm, int nb, size_t es) {
  const size_t lds = t.bk + 16 / es;
  return (unsigned int)(t.stages * (bm + (uint32_t)nb * t.bn) * lds * es);
}

/* Compiles or loads every module the scratch uses; the context must be current. */
static moert_status prepare_locked(moert_scratch *s, cuda_runtime *r, cuda_scratch *c) {
  const moert_layer_desc *d = &s->desc;
  moert_status st;
  CUmodule m;
  if (c->device_route_ok) {
    moert_jit_request q = {.source = "route.cu", .fmad = false};
    const bool groups = d->router == MOERT_ROUTER_SIGMOID_GROUP_TOPK && d->n_group > 1;
    define(&q, "MOERT_E", d->num_experts);
    define(&q, "MOERT_K", d->top_k);
    define(&q, "MOERT_ROUTER", d->router);
    define(&q, "MOERT_RENORM", d->renormalize ? 1 : 0);
    define(&q, "MOERT_NGROUP", groups ? d->n_group : 1);
    define(&q, "MOERT_TOPK_GROUP", groups ? d->topk_group : 1);
    const char *rx = getenv("MOERT_ROUTE_REDUX"); /* a benchmark hook: 0 = the shuffle arg-max */
    if (rx && !strcmp(rx, "0")) define(&q, "MOERT_ROUTE_REDUX", 0);
    const char *rtr = getenv("MOERT_ROUTE_TRACE"); /* a measuring hook: route_plan prints */
    if (rtr && !strcmp(rtr, "1")) define(&q, "MOERT_ROUTE_TRACE", 1);
    if ((st = moert_jit_module(&r->jit, &q, &m)) != MOERT_OK) return st;
    if ((st = get_function(r, m, "moert_route", &c->fn_route)) != MOERT_OK) return st;
    const char *fused = getenv("MOERT_CUDA_ROUTE_PLAN"); /* a benchmark hook: 0 = two launches */
    if (d->num_experts <= ROUTE_PLAN_MAX_E && !(fused && !strcmp(fused, "0")) &&
        (st = get_function(r, m, "moert_route_plan", &c->fn_route_plan)) != MOERT_OK)
      return st;
    moert_jit_request p = {.source = "plan.cu", .fmad = true};
    if ((st = moert_jit_module(&r->jit, &p, &m)) != MOERT_OK) return st;
    if ((st = get_function(r, m, "moert_plan_count", &c->fn_plan_count)) != MOERT_OK ||
        (st = get_function(r, m, "moert_plan_assign", &c->fn_plan_assign)) != MOERT_OK)
      return st;
  }
  if (c->forward_ok) {
    moert_jit_request q = {.source = "expert.cu", .fmad = true};
    define(&q, "MOERT_ACT", d->act_dtype == MOERT_DTYPE_BF16 ? 1 : d->act_dtype == MOERT_DTYPE_F16 ? 2 : 3);
    define(&q, "MOERT_BM", s->plan.block_rows);
    const size_t es = moert_dtype_size(d->act_dtype);
    c->tile = pick_tile(s->plan.block_rows, es);
    define(&q, "MOERT_BN", c->tile.bn);
    define(&q, "MOERT_BK", c->tile.bk);
    define(&q, "MOERT_STAGES", c->tile.stages);
    if ((st = moert_jit_module(&r->jit, &q, &m)) != MOERT_OK) return st;
    if ((st = get_function(r, m, "moert_gate_up", &c->fn_gate_up)) != MOERT_OK ||
        (st = get_function(r, m, "moert_down", &c->fn_down)) != MOERT_OK ||
        (st = get_function(r, m, "moert_combine", &c->fn_combine)) != MOERT_OK ||
        (d->act_dtype != MOERT_DTYPE_F32 &&
         ((st = get_function(r, m, "moert_combine_act", &c->fn_combine_act)) != MOERT_OK ||
          (st = get_function(r, m, "moert_combine_act2", &c->fn_combine_act2)) != MOERT_OK)))
      return st;
    c->smem_gate_up = expert_smem(c->tile, s->plan.block_rows, 2, es);
    c->smem_down = expert_smem(c->tile, s->plan.block_rows, 1, es);
    CUresult rc = r->cu->cuFuncSetAttribute(
        c->fn_gate_up, MOERT_CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, (int)c->smem_gate_up);
    if (rc == MOERT_CUDA_SUCCESS)
      rc = r->cu->cuFuncSetAttribute(c->fn_down, MOERT_CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                     (int)c->smem_down);
    if (rc != MOERT_CUDA_SUCCESS) return moert_cuda_fail(r->cu, rc, "cuFuncSetAttribute");
    for (int i = 0; i < 4 && es != 4; i++) {
      char name[64];
      const int nch = 1 << i;
      c->smem_dec[i] = dec_smem(nch);
      if (c->smem_dec[i] + dec_static_smem(nch) > (unsigned int)r->smem_optin) continue;
      snprintf(name, sizeof name, "moert_dec_gate_up_%d", nch);
      if ((st = get_function(r, m, name, &c->fn_dec_gate_up[i])) != MOERT_OK) return st;
      snprintf(name, sizeof name, "moert_dec_down_%d", nch);
      if ((st = get_function(r, m, name, &c->fn_dec_down[i])) != MOERT_OK) return st;
      rc = r->cu->cuFuncSetAttribute(c->fn_dec_gate_up[i],
                                     MOERT_CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                     (int)c->smem_dec[i]);
      if (rc == MOERT_CUDA_SUCCESS)
        rc = r->cu->cuFuncSetAttribute(c->fn_dec_down[i],
                                       MOERT_CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                       (int)c->smem_dec[i]);
      if (rc != MOERT_CUDA_SUCCESS) return moert_cuda_fail(r->cu, rc, "cuFuncSetAttribute");
      c->dec_ok[i] = true;
    }
    const unsigned int fsm = fused_smem() + fused_static_smem();
    if (c->dec_ok[0] && c->fused_pairs && fsm <= (unsigned int)r->smem_optin) {
      if ((st = get_function(r, m, "moert_dec_fused", &c->fn_dec_fused)) != MOERT_OK ||
          (st = get_function(r, m, "moert_combine_slabs", &c->fn_combine_slabs)) != MOERT_OK)
        return st;
      rc = r->cu->cuFuncSetAttribute(c->fn_dec_fused,
                                     MOERT_CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                     (int)fused_smem());
      if (rc != MOERT_CUDA_SUCCESS) return moert_cuda_fail(r->cu, rc, "cuFuncSetAttribute");
      /* CTAs an SM holds (1 KB of shared memory is reserved per CTA), at least one */
      const unsigned int per_sm = r->smem_per_sm > 0 ? (unsigned int)r->smem_per_sm / (fsm + 1024) : 1;
      c->fused_ctas = (uint64_t)(per_sm ? per_sm : 1) * (uint64_t)(r->sm_count > 0 ? r->sm_count : 1);
    }
  }
  if (c->prefill_ok) {
    for (int i = 0; i < 2; i++) {
      moert_prefill_config gu, dn;
      if ((st = moert_prefill_configs(r->cc_major, r->cc_minor, d->act_dtype, i ? 128 : 64, &gu,
                                      &dn)) != MOERT_OK)
        return st;
      moert_prefill_fit(&gu, &dn, d->hidden, d->intermediate);
      if (i == 1 && ksplit128_built(r, c, d, s->max_tokens)) dn.ksplit = 1; /* (ksplit128_due) */
      st = moert_prefill_load(&r->jit, r->cu, &gu, &dn, &c->pf[i]);
      if (st == MOERT_ERR_BACKEND_UNAVAILABLE) { /* a driver without TMA: the tiled path */
        c->prefill_ok = false;
        break;
      }
      if (st != MOERT_OK) return st;
    }
    /* the 192-row tiles where a forward up to max_tokens takes them */
    if (c->prefill_ok && tall_built(r, d, s->max_tokens) && c->pf[1].gate_up.sm == 90) {
      moert_prefill_config gu, dn;
      if ((st = moert_prefill_configs(r->cc_major, r->cc_minor, d->act_dtype, 192, &gu, &dn)) !=
          MOERT_OK)
        return st;
      moert_prefill_fit(&gu, &dn, d->hidden, d->intermediate);
      if ((st = moert_prefill_load(&r->jit, r->cu, &gu, &dn, &c->pf[4])) != MOERT_OK) return st;
      c->tall_ok = true;
    }
    c->narrow_fill = narrow_fill_mask(r, d);
    /* the narrow modules: with MOERT_PREFILL_NARROW=1, or where a decode size takes them;
     * one for a token and, where the width differs, one for more (narrow_gu_bn) */
    if (c->prefill_ok && c->pf[0].gate_up.sm == 90 &&
        (r->narrow || narrow_t1_fits(r, c, d, 1) || narrow_few_due(r, d, 1) ||
         c->narrow_fill)) {
      const int w1 = narrow_gu_bn(r, d, 1), w2 = narrow_gu_bn(r, d, 2);
      c->narrow_box = narrow_box_rows(r, d); /* as the maps' (experts_init) */
      for (int i = 0; i < (w2 != w1 ? 2 : 1); i++) {
        moert_prefill_config gu, dn;
        if ((st = moert_prefill_configs(r->cc_major, r->cc_minor, d->act_dtype, 64, &gu, &dn)) !=
            MOERT_OK)
          return st;
        moert_prefill_fit(&gu, &dn, d->hidden, d->intermediate);
        moert_prefill_narrow(&gu, &dn);
        moert_prefill_narrow_width(&gu, i ? w2 : w1);
        gu.box_rows = c->narrow_box;
        /* the K split's code only where this layer takes it (ksplit_due at T = 1, or 2 for
         * the second module: its items grow with T): built in but off, it cost Qwen3-30B-A3B
         * T=1 0.3 us, 28.77-28.93 against 28.42-28.60 (H200, docs/bench/decode-log.md v18) */
        dn.ksplit = ksplit_due(r, d, i ? 2 : 1);
        if ((st = moert_prefill_load(&r->jit, r->cu, &gu, &dn, &c->pf[2 + i])) != MOERT_OK)
          return st;
      }
      c->narrow_ok = true;
      c->narrow2_ok = w2 != w1;
    }
  }
  c->prepared = true;
  return MOERT_OK;
}

static moert_status ensure_prepared(moert_scratch *s) {
  cuda_scratch *c = s->backend_state;
  if (c->prepared) return MOERT_OK;
  cuda_runtime *r = rt_of(s);
  moert_status st = push_ctx(r);
  if (st != MOERT_OK) return st;
  st = prepare_locked(s, r, c);
  pop_ctx(r);
  return st;
}

static moert_status cuda_scratch_prepare(moert_scratch *s) { return ensure_prepared(s); }

/* ---- experts ---- */

/* the routed experts' 3E maps for the tiles of gu and dn, at map slot `slot` of maps */
static bool encode_routed(moert_tmap_encode_fn enc, const moert_experts *x,
                          const moert_prefill_config *gu, const moert_prefill_config *dn,
                          void *maps, size_t slot) {
  const moert_layer_desc *d = &x->desc;
  return moert_prefill_encode_weights(enc, d->act_dtype, gu, dn, d->num_experts, d->hidden,
                                      d->intermediate, (const void *const *)x->gate,
                                      (const void *const *)x->up, (const void *const *)x->down,
                                      (unsigned char *)maps + slot * MOERT_TMAP_BYTES) == MOERT_OK;
}

static moert_status cuda_experts_init(moert_experts *x) {
  cuda_runtime *r = x->runtime->backend_state;
  const moert_layer_desc *d = &x->desc;
  const uint32_t E = d->num_experts;
  if (x->memory != MOERT_MEMORY_DEVICE)
    return moert_fail(MOERT_ERR_UNSUPPORTED, "moert_experts_create: the CUDA backend runs "
                      "experts from device memory; these weights are in host memory (copy them "
                      "to the GPU, or use the CPU backend)");
  const size_t n = 3 * (size_t)E + 3;
  unsigned long long *tab = calloc(n, sizeof *tab);
  cuda_experts *ce = calloc(1, sizeof *ce);
  if (!tab || !ce) {
    free(tab);
    free(ce);
    return moert_fail(MOERT_ERR_OUT_OF_MEMORY, "moert_experts_create: out of host memory");
  }
  for (uint32_t e = 0; e < E; e++) {
    tab[e] = (uintptr_t)x->gate[e];
    tab[E + e] = (uintptr_t)x->up[e];
    tab[2 * E + e] = (uintptr_t)x->down[e];
  }
  tab[3 * E] = (uintptr_t)x->shared_gate;
  tab[3 * E + 1] = (uintptr_t)x->shared_up;
  tab[3 * E + 2] = (uintptr_t)x->shared_down;
  moert_status st = MOERT_OK;
  for (size_t i = 0; i < n; i++)
    if (tab[i] % 16) {
      st = moert_fail(MOERT_ERR_UNSUPPORTED, "moert_experts_create: the CUDA backend needs "
                      "16-byte aligned weight matrices; matrix %zu of the table is at %#llx",
                      i, tab[i]);
      break;
    }
  /* sm_90a: the weights' tensor maps for the prefill GEMMs, encoded once here (a layer the
   * prefill GEMMs cannot take, or a map the driver refuses, only means no maps) */
  void *maps = NULL;
  bool shared_maps = false, narrow_maps = false, tall_maps = false;
  int narrow_box = 0; /* the narrow maps' gate/up box rows, where they are encoded */
  const size_t tab_bytes = (n * sizeof *tab + 127) & ~(size_t)127;
  if (st == MOERT_OK && r->cc_major == 9 && r->cc_minor == 0 &&
      (d->act_dtype == MOERT_DTYPE_BF16 || d->act_dtype == MOERT_DTYPE_F16) &&
      d->weight_dtype == d->act_dtype && d->hidden % 32 == 0 && d->intermediate % 32 == 0) {
    moert_prefill_config gu, dn;
    moert_tmap_encode_fn enc;
    /* [gate E][up E][down E][shared 3][narrow gate E][narrow up E][narrow down E]
     * [tall gate E][tall up E][tall down E] */
    maps = aligned_alloc(64, (9 * (size_t)E + 3) * MOERT_TMAP_BYTES);
    if (maps) memset(maps, 0, (9 * (size_t)E + 3) * MOERT_TMAP_BYTES); /* unused slots too */
    if (!maps || moert_prefill_configs(9, 0, d->act_dtype, 128, &gu, &dn) != MOERT_OK ||
        moert_prefill_tmap_encoder(r->cu, &enc) != MOERT_OK ||
        !encode_routed(enc, x, &gu, &dn, maps, 0)) {
      free(maps);
      maps = NULL;
    } else if (d->shared_intermediate && d->shared_intermediate % 32 == 0) {
      /* the shared expert as a layer of one expert, its maps after the routed ones */
      const void *sg = x->shared_gate, *su = x->shared_up, *sd = x->shared_down;
      shared_maps = moert_prefill_encode_weights(enc, d->act_dtype, &gu, &dn, 1, d->hidden,
                                                 d->shared_intermediate, &sg, &su, &sd,
                                                 (unsigned char *)maps +
                                                     3 * (size_t)E * MOERT_TMAP_BYTES) == MOERT_OK;
    }
    if (maps && narrow_built(r)) {
      moert_prefill_config g64, d64;
      narrow_maps = moert_prefill_configs(9, 0, d->act_dtype, 64, &g64, &d64) == MOERT_OK;
      moert_prefill_narrow(&g64, &d64);
      moert_prefill_narrow_width(&g64, narrow_gu_bn(r, d, 1));
      g64.box_rows = narrow_box = narrow_box_rows(r, d); /* a divisor of both modules' widths */
      narrow_maps = narrow_maps && encode_routed(enc, x, &g64, &d64, maps, 3 * (size_t)E + 3);
    }
    /* (only where some plan can take them: moert_prefill_tall_due at the band's top) */
    if (maps && moert_prefill_tall_due(r->tall, E, d->hidden, d->intermediate, 176ull * E)) {
      moert_prefill_config g192, d192;
      tall_maps = moert_prefill_configs(9, 0, d->act_dtype, 192, &g192, &d192) == MOERT_OK &&
                  encode_routed(enc, x, &g192, &d192, maps, 6 * (size_t)E + 3);
    }
  }
  const size_t map_count = !maps ? 0 : tall_maps ? 9 * (size_t)E + 3
                                     : narrow_maps ? 6 * (size_t)E + 3
                                     : 3 * ((size_t)E + (shared_maps ? 1 : 0));
  const size_t all_bytes = tab_bytes + map_count * MOERT_TMAP_BYTES;
  if (st == MOERT_OK && (st = push_ctx(r)) == MOERT_OK) {
    CU_CHECK(r, r->cu->cuMemAlloc(&ce->table, all_bytes), "cuMemAlloc of the expert table");
    CU_CHECK(r, r->cu->cuMemcpyHtoD(ce->table, tab, n * sizeof *tab), "cuMemcpyHtoD of the expert table");
    if (maps) {
      ce->maps = ce->table + tab_bytes;
      if (shared_maps) ce->shared_maps = ce->maps + 3 * (CUdeviceptr)E * MOERT_TMAP_BYTES;
      if (narrow_maps) {
        ce->maps_narrow = ce->maps + (3 * (CUdeviceptr)E + 3) * MOERT_TMAP_BYTES;
        ce->narrow_box = narrow_box;
      }
      if (tall_maps) ce->maps_tall = ce->maps + (6 * (CUdeviceptr)E + 3) * MOERT_TMAP_BYTES;
      CU_CHECK(r, r->cu->cuMemcpyHtoD(ce->maps, maps, all_bytes - tab_bytes),
               "cuMemcpyHtoD of the weights' tensor maps");
    }
  done:
    if (st != MOERT_OK && ce->table) r->cu->cuMemFree(ce->table);
    pop_ctx(r);
  }
  free(tab);
  free(maps);
  if (st != MOERT_OK) {
    free(ce);
    return st;
  }
  x->backend_state = ce;
  return MOERT_OK;
}

static void cuda_experts_fini(moert_experts *x) {
  cuda_experts *ce = x->backend_state;
  cuda_runtime *r = x->runtime->backend_state;
  if (!ce) return;
  if (push_ctx(r) == MOERT_OK) {
    r->cu->cuMemFree(ce->table);
    pop_ctx(r);
  }
  free(ce);
  x->backend_state = NULL;
}

/* ---- routing ---- */

/* Uploads what forward reads of a host-built plan: weights, offsets, rows, blocks. */
static moert_status upload_plan(moert_scratch *s, cuda_runtime *r, cuda_scratch *c, CUstream stream) {
  moert_status st = MOERT_OK;
  const moert_plan *p = &s->plan;
  const size_t pairs = (size_t)s->num_tokens * s->desc.top_k, E = s->desc.num_experts;
  c->tiles_bm = 0; /* a host plan: the forward writes the row tiles itself */
  int32_t meta[4] = {(int32_t)p->num_blocks, 0x7fffffff, 0, 0};
  CU_CHECK(r, r->cu->cuMemcpyHtoDAsync(c->meta, meta, sizeof meta, stream), "cuMemcpyHtoDAsync");
  CU_CHECK(r, r->cu->cuMemcpyHtoDAsync(c->offsets, p->offsets, (E + 1) * 4, stream), "cuMemcpyHtoDAsync");
  CU_CHECK(r, r->cu->cuMemcpyHtoDAsync(c->padded_offsets, p->padded_offsets, (E + 1) * 4, stream),
           "cuMemcpyHtoDAsync");
  if (pairs) {
    CU_CHECK(r, r->cu->cuMemcpyHtoDAsync(c->weights, s->weights, pairs * 4, stream), "cuMemcpyHtoDAsync");
    CU_CHECK(r, r->cu->cuMemcpyHtoDAsync(c->packed_token, p->packed_token, pairs * 4, stream),
             "cuMemcpyHtoDAsync");
    CU_CHECK(r, r->cu->cuMemcpyHtoDAsync(c->pair_of, p->pair_of, pairs * 4, stream), "cuMemcpyHtoDAsync");
  }
  if (p->num_blocks)
    CU_CHECK(r, r->cu->cuMemcpyHtoDAsync(c->block_expert, p->block_expert, (size_t)p->num_blocks * 4,
                                         stream), "cuMemcpyHtoDAsync");
  c->host_fresh = true;
  c->plan_on_host = true;
  c->last_stream = stream;
done:
  return st;
}

static moert_status cuda_plan_uploaded(moert_scratch *s, void *stream) {
  cuda_runtime *r = rt_of(s);
  moert_status st = push_ctx(r);
  if (st != MOERT_OK) return st;
  st = upload_plan(s, r, s->backend_state, (CUstream)stream);
  pop_ctx(r);
  return st;
}

/* Host routing on the CUDA backend.  Device logits (and bias) are copied back through the
 * pinned staging buffer, a chunk of rows at a time, each chunk routed once it has landed. */
static moert_status route_on_host(moert_scratch *s, cuda_runtime *r, cuda_scratch *c,
                                  const moert_route_args *a, CUstream stream) {
  moert_status st = MOERT_OK;
  const uint32_t T = a->num_tokens, E = s->desc.num_experts, k = s->desc.top_k;
  const uint64_t stride = a->logits_row_stride ? a->logits_row_stride : E;
  const size_t es = moert_dtype_size(a->logits_dtype);
  if (a->memory == MOERT_MEMORY_HOST) {
    st = moert_route_host(&s->router, a->logits, a->logits_dtype, stride, T,
                          a->correction_bias, s->ids, s->weights);
  } else {
    float *hbias = c->pinned;
    unsigned char *rows = (unsigned char *)c->pinned + (size_t)E * 4;
    const float *bias = NULL;
    if (a->correction_bias) {
      CU_CHECK(r, r->cu->cuMemcpyDtoHAsync(hbias, (CUdeviceptr)(uintptr_t)a->correction_bias,
                                           (size_t)E * 4, stream),
               "cuMemcpyDtoHAsync of the correction bias");
      CU_CHECK(r, r->cu->cuStreamSynchronize(stream), "cuStreamSynchronize");
      for (uint32_t e = 0; e < E; e++)
        if (!(hbias[e] - hbias[e] == 0.0f))
          return moert_fail(MOERT_ERR_INVALID_ARGUMENT, "moert_route: correction_bias[%u] is "
                            "not finite", e);
      bias = hbias;
    }
    for (uint32_t t0 = 0; t0 < T && st == MOERT_OK; t0 += c->pinned_rows) {
      const uint32_t n = T - t0 < c->pinned_rows ? T - t0 : c->pinned_rows;
      const CUdeviceptr src = (CUdeviceptr)(uintptr_t)a->logits + (CUdeviceptr)t0 * stride * es;
      if (stride == E) {
        CU_CHECK(r, r->cu->cuMemcpyDtoHAsync(rows, src, (size_t)n * E * es, stream),
                 "cuMemcpyDtoHAsync of the logits");
      } else { /* one copy per row; the staging rows are packed */
        for (uint32_t t = 0; t < n; t++)
          CU_CHECK(r, r->cu->cuMemcpyDtoHAsync(rows + (size_t)t * E * es,
                                               src + (CUdeviceptr)t * stride * es, (size_t)E * es,
                                               stream), "cuMemcpyDtoHAsync of the logits");
      }
      CU_CHECK(r, r->cu->cuStreamSynchronize(stream), "cuStreamSynchronize");
      st = moert_route_host(&s->router, rows, a->logits_dtype, E, n, bias,
                            s->ids + (size_t)t0 * k, s->weights + (size_t)t0 * k);
      if (st == MOERT_ERR_NAN_LOGIT && t0 > 0) /* the message counted tokens of the chunk */
        for (size_t i = 0; i < (size_t)n * E; i++) {
          float v = moert_load_f32(rows, a->logits_dtype, i);
          if (v != v) {
            st = moert_fail(MOERT_ERR_NAN_LOGIT, "moert_route: logit of token %zu, expert %zu "
                            "is NaN", t0 + i / E, i % E);
            break;
          }
        }
    }
  }
  if (st != MOERT_OK) return st;
  moert_plan_build(s->ids, T, k, E, s->plan.block_rows, &s->plan);
  s->num_tokens = T;
  st = upload_plan(s, r, c, stream);
done:
  return st;
}

static moert_status launch(cuda_runtime *r, CUfunction f, unsigned gx, unsigned gy,
                           unsigned threads, unsigned smem, CUstream stream, void **params,
                           const char *name) {
  return moert_cuda_launch(r->cu, f, gx, gy, threads, smem, stream, params, name, false);
}

/* A launch that may overlap the tail of the kernel before it on the stream (programmatic
 * dependent launch, sm_90): the kernel must start with griddepcontrol.wait before it reads
 * what that kernel wrote.  Elsewhere a plain launch. */
static moert_status launch_pdl(cuda_runtime *r, CUfunction f, unsigned gx, unsigned gy,
                               unsigned threads, unsigned smem, CUstream stream, void **params,
                               const char *name) {
  return moert_cuda_launch(r->cu, f, gx, gy, threads, smem, stream, params, name, r->pdl);
}

static moert_status cuda_route(moert_scratch *s, const moert_route_args *a, void *stream_) {
  cuda_runtime *r = rt_of(s);
  cuda_scratch *c = s->backend_state;
  CUstream stream = (CUstream)stream_;
  moert_status st = ensure_prepared(s);
  if (st != MOERT_OK) return st;
  const bool on_device = !(a->memory == MOERT_MEMORY_HOST || a->mode == MOERT_ROUTING_HOST ||
                           !c->device_route_ok);
  if ((r->skip & 1u) && on_device && c->skip_T == a->num_tokens && a->num_tokens > 0)
    return MOERT_OK; /* the benchmark hook: the routing held stays */
  c->skip_T = 0;
  if ((st = push_ctx(r)) != MOERT_OK) return st;
  c->host_fresh = false;
  c->plan_on_host = false;
  c->tiles_bm = 0;
  if (!on_device) {
    st = route_on_host(s, r, c, a, stream);
    goto done;
  }
  {
    const moert_layer_desc *d = &s->desc;
    const uint32_t E = d->num_experts;
    CUdeviceptr logits = (CUdeviceptr)(uintptr_t)a->logits;
    CUdeviceptr bias = (CUdeviceptr)(uintptr_t)a->correction_bias;
    int T = (int)a->num_tokens, dtype = (int)a->logits_dtype, K = (int)d->top_k, Ei = (int)E;
    int br = (int)s->plan.block_rows;
    long long stride = (long long)(a->logits_row_stride ? a->logits_row_stride : E);
    float scale = s->router.scale;
    int tbm = T > 0 ? route_tile_rows(r, c, d, (uint32_t)T) : 0;
    if (r->skip & 8u) {
      int n0 = 0, g1 = 1;
      void *ep[] = {&c->ids, &n0, &Ei, &g1, &c->plan_counts};
      if ((st = launch_pdl(r, c->fn_plan_count, 1, 1, PLAN_THREADS, 0, stream, ep,
                           "moert_plan_count (MOERT_BENCH_SKIP=8)")) != MOERT_OK)
        goto done;
    }
    CUdeviceptr tiles = tbm ? c->prefill_tiles : 0;
    if (T > 0 && T <= ROUTE_PLAN_MAX_TOKENS && c->fn_route_plan &&
        (size_t)T * d->top_k <= ROUTE_PLAN_MAX_PAIRS) {
      /* a decoding step: route and plan in one launch, a warp a token (at least a thread a
       * pair, k <= 32); it resets the NaN token itself and waits for the kernel before it
       * (programmatic dependent launch), so nothing else is put on the stream */
      const unsigned threads = 32u * (unsigned)T; /* T <= ROUTE_PLAN_MAX_TOKENS: <= 1024 */
      void *params[] = {&logits, &dtype, &stride, &T, &bias, &scale, &c->ids, &c->weights,
                        &c->meta, &br, &c->offsets, &c->packed_token, &c->pair_of,
                        &c->sorted_pair, &c->padded_offsets, &c->block_expert, &tbm, &tiles};
      st = launch_pdl(r, c->fn_route_plan, 1, 1, threads, 0, stream, params, "moert_route_plan");
      c->last_stream = stream;
      if (st == MOERT_OK) c->tiles_bm = tbm, c->skip_T = (uint32_t)T;
      goto done;
    }
    CU_CHECK(r, r->cu->cuMemsetD32Async(c->meta + 4, 0x7fffffffu, 1, stream), "cuMemsetD32Async");
    if (T > 0) {
      void *params[] = {&logits, &dtype, &stride, &T, &bias, &scale, &c->ids, &c->weights, &c->meta};
      st = launch(r, c->fn_route, (unsigned)((T + ROUTE_TOKENS_PER_BLOCK - 1) / ROUTE_TOKENS_PER_BLOCK),
                  1, 32 * ROUTE_TOKENS_PER_BLOCK, 0, stream, params, "moert_route");
      if (st != MOERT_OK) goto done;
    }
    int n = T * K, groups = plan_groups((size_t)n);
    const unsigned chunks = (unsigned)plan_chunks((size_t)n);
    void *cparams[] = {&c->ids, &n, &Ei, &groups, &c->plan_counts};
    st = launch_pdl(r, c->fn_plan_count, chunks, 1, PLAN_THREADS, 0, stream, cparams,
                    "moert_plan_count");
    if (st != MOERT_OK) goto done;
    void *pparams[] = {&c->ids, &T, &K, &Ei, &br, &groups, &c->plan_counts, &c->offsets,
                       &c->packed_token, &c->pair_of, &c->sorted_pair, &c->padded_offsets,
                       &c->block_expert, &c->meta, &tbm, &tiles};
    st = launch_pdl(r, c->fn_plan_assign, chunks, 1, PLAN_THREADS, 0, stream, pparams,
                    "moert_plan_assign");
    c->last_stream = stream;
    if (st == MOERT_OK) c->tiles_bm = tbm, c->skip_T = (uint32_t)T;
  }
done:
  pop_ctx(r);
  return st;
}

static moert_status cuda_fetch_routing(moert_scratch *s) {
  cuda_runtime *r = rt_of(s);
  cuda_scratch *c = s->backend_state;
  if (c->host_fresh) return MOERT_OK;
  moert_status st = push_ctx(r);
  if (st != MOERT_OK) return st;
  const uint32_t T = s->num_tokens, k = s->desc.top_k, E = s->desc.num_experts;
  const size_t pairs = (size_t)T * k;
  const CUstream q = c->last_stream;
  /* only meta[0] (blocks) and meta[1] (NaN token) are written by device routing: copy
   * just those (compute-sanitizer initcheck flagged the two unwritten words) */
  int32_t meta[2];
  CU_CHECK(r, r->cu->cuMemcpyDtoHAsync(meta, c->meta, sizeof meta, q), "cuMemcpyDtoHAsync");
  CU_CHECK(r, r->cu->cuMemcpyDtoHAsync(s->plan.offsets, c->offsets, (E + 1) * 4, q), "cuMemcpyDtoHAsync");
  CU_CHECK(r, r->cu->cuMemcpyDtoHAsync(s->plan.padded_offsets, c->padded_offsets, (E + 1) * 4, q),
           "cuMemcpyDtoHAsync");
  if (pairs) {
    CU_CHECK(r, r->cu->cuMemcpyDtoHAsync(s->ids, c->ids, pairs * 4, q), "cuMemcpyDtoHAsync");
    CU_CHECK(r, r->cu->cuMemcpyDtoHAsync(s->weights, c->weights, pairs * 4, q), "cuMemcpyDtoHAsync");
    CU_CHECK(r, r->cu->cuMemcpyDtoHAsync(s->plan.packed_token, c->packed_token, pairs * 4, q),
             "cuMemcpyDtoHAsync");
    CU_CHECK(r, r->cu->cuMemcpyDtoHAsync(s->plan.pair_of, c->pair_of, pairs * 4, q), "cuMemcpyDtoHAsync");
    CU_CHECK(r, r->cu->cuMemcpyDtoHAsync(s->plan.sorted_pair, c->sorted_pair, pairs * 4, q),
             "cuMemcpyDtoHAsync");
  }
  CU_CHECK(r, r->cu->cuStreamSynchronize(q), "cuStreamSynchronize");
  if (meta[0] > 0)
    CU_CHECK(r, r->cu->cuMemcpyDtoH(s->plan.block_expert, c->block_expert, (size_t)meta[0] * 4),
             "cuMemcpyDtoH");
  s->plan.num_tokens = T;
  s->plan.num_experts = E;
  s->plan.top_k = k;
  s->plan.num_blocks = (uint32_t)meta[0];
  c->host_fresh = true;
  if (meta[1] != 0x7fffffff)
    st = moert_fail(MOERT_ERR_NAN_LOGIT, "moert_route: a router logit of token %d is NaN (found "
                    "by the device router, which ranked it as -inf)", meta[1]);
done:
  pop_ctx(r);
  return st;
}

/* ---- forward ---- */

static moert_status cuda_forward(moert_scratch *s, const moert_forward_args *a, void *stream_) {
  cuda_runtime *r = rt_of(s);
  cuda_scratch *c = s->backend_state;
  const moert_layer_desc *d = &s->desc;
  CUstream stream = (CUstream)stream_;
  if (!c->forward_ok) return moert_fail(MOERT_ERR_UNSUPPORTED, "moert_forward: %s", c->forward_why);
  if (a->memory != MOERT_MEMORY_DEVICE)
    return moert_fail(MOERT_ERR_UNSUPPORTED, "moert_forward: the CUDA backend needs x and y in "
                      "device memory");
  const uint32_t T = s->num_tokens;
  if (T == 0) return MOERT_OK;
  const long long xs = (long long)(a->x_row_stride ? a->x_row_stride : d->hidden);
  const long long ys = (long long)(a->y_row_stride ? a->y_row_stride : d->hidden);
  const size_t es = moert_dtype_size(d->act_dtype);
  if ((uintptr_t)a->x % 16 || (xs * (long long)es) % 16 || (uintptr_t)a->y % (2 * es) || ys % 2)
    return moert_fail(MOERT_ERR_UNSUPPORTED, "moert_forward: the CUDA backend needs x 16-byte "
                      "aligned with rows a multiple of 16 bytes apart, and y aligned to two "
                      "elements with an even row stride");
  moert_status st = ensure_prepared(s);
  if (st != MOERT_OK) return st;
  if ((st = push_ctx(r)) != MOERT_OK) return st;
  const cuda_experts *ce = a->experts->backend_state;
  const uint32_t E = d->num_experts, k = d->top_k, H = d->hidden, I = d->intermediate;
  const uint32_t Is = d->shared_intermediate, bm = s->plan.block_rows;
  /* a device plan's block count is on the device: launch the most it can have, the extra
   * blocks return at once (and a captured graph stays valid for any routing) */
  const unsigned blocks = c->plan_on_host ? s->plan.num_blocks
                                          : (unsigned)moert_plan_max_blocks(T, k, E, bm);
  CUdeviceptr x = (CUdeviceptr)(uintptr_t)a->x, y = (CUdeviceptr)(uintptr_t)a->y;
  CUdeviceptr tab = ce->table, tab_down = ce->table + 2ull * E * 8;
  CUdeviceptr tab_shared = ce->table + 3ull * E * 8, tab_shared_down = tab_shared + 16;
  CUdeviceptr null = 0;
  int Ti = (int)T, Hi = (int)H, Ii = (int)I, Isi = (int)Is, Ki = (int)k, one = 1, zero = 0;
  int up_offset = (int)E, accumulate = (int)a->accumulate;
  long long hstride = I, hsstride = Is;
  /* the prefill GEMMs: where the plan has many rows per expert (or forced); the sm_90a
   * kernels need the experts' tensor maps */
  /* (or the narrow ones at the split-K decode kernel's T: narrow_t1_due) */
  /* the narrow tiles need maps of the boxes their modules load (the experts' layer may have
   * another top_k than this scratch's, and so other widths) */
  const bool narrow_maps = ce->maps_narrow && ce->narrow_box == c->narrow_box;
  const bool t1 = blocks > 0 && narrow_maps && narrow_t1_due(r, c, d, T);
  const bool prefill = t1 || (blocks > 0 && c->prefill_ok && want_prefill(r, c, d, T) &&
                              (c->pf[0].gate_up.sm != 90 || ce->maps));
  /* the prefill GEMMs may write their rows (ypair, ys) in the activation dtype: both tile
   * heights' modules are built with the same out_act */
  const bool rows_act = c->prefill_ok && c->pf[0].down.out_act && c->fn_combine_act;
  int parts = 1; /* the parts of each row the down GEMM writes (its K split) */
  const int dec = blocks > 0 && !prefill ? pick_decode(c, T, k, E) : -1;
  /* the decode kernels' work items: (slab, touched expert), at most min(T k, E) touched */
  const unsigned jmax = (unsigned)((uint64_t)T * k < E ? (uint64_t)T * k : E);
  const bool fused = fused_due(c, d, T, dec); /* the split-K decode kernel */
  c->last_route_tiles = false;
  c->last_path = blocks == 0 ? MOERT_CUDA_PATH_NONE : prefill ? MOERT_CUDA_PATH_PREFILL
                 : fused ? MOERT_CUDA_PATH_DECODE_SPLITK
                 : dec >= 0 ? MOERT_CUDA_PATH_DECODE : MOERT_CUDA_PATH_TILED;
  if (r->skip & 4u) {
    /* the benchmark hook: no expert GEMMs */
  } else if (prefill) {
    /* row tiles of 64 or 128 from the average rows per expert (the routing may be on the
     * device), then tiles, gate/up and down on the stream; h and ypair as the other paths */
    const uint64_t pairs = (uint64_t)T * k;
    /* (the 192-row tiles need their maps: else 128) */
    int tile_rows = prefill_tile_rows(r, c, d, pairs);
    if (tile_rows == 192 && !ce->maps_tall) tile_rows = 128;
    /* the narrow tiles where the hook asks for them, where the default down GEMM would have
     * few work items (narrow_few_due), or where their gate/up items fill the SMs better
     * (narrow_fill_due, at prepare) */
    const bool narrow =
        t1 || (tile_rows == 64 && c->narrow_ok && narrow_maps &&
               (r->narrow || narrow_few_due(r, d, (uint32_t)T) ||
                (T >= 1 && T <= 4 && (c->narrow_fill >> (T - 1) & 1u))));
    const moert_prefill_kernels *pk = !narrow ? &c->pf[tile_rows == 192 ? 4 : tile_rows == 128]
                                      : T > 1 && c->narrow2_ok ? &c->pf[3]
                                                               : &c->pf[2];
    moert_prefill_args pa = {.num_experts = E, .hidden = H, .intermediate = I, .pairs = pairs,
                             .offsets = c->offsets, .gather = c->packed_token, .x = x,
                             .x_stride = xs, .wtab = tab,
                             .maps = narrow ? ce->maps_narrow
                                     : tile_rows == 192 ? ce->maps_tall : ce->maps,
                             .tiles = c->prefill_tiles, .h = c->h, .h_stride = I,
                             .out = c->ypair, .out_stride = H,
                             .pdl = r->pdl ? c->prefill_pdl & 7u : 0u,
                             /* the routing wrote these tiles (not the shared expert's) */
                             .tiles_ready = !Is && c->tiles_bm == tile_rows,
                             /* both GEMMs in one launch: the narrow tiles' kernel wherever
                              * built, the default 64-row tiles' where layer_due */
                             .layer_sync = pk->fn_layer && (narrow || layer_due(r, d, pairs))
                                               ? c->layer_sync : 0,
                             .w_evict = w_evict_due(r, d, T)};
    /* the down GEMM's K in two parts where even the narrow tiles leave it few items */
    if (narrow && rows_act && ksplit_due(r, d, T)) pa.ksplit = 2;
    if (!narrow && tile_rows == 128 && rows_act && ksplit128_due(r, d, pairs)) pa.ksplit = 2;
    parts = moert_prefill_down_parts(pk, &pa); /* what the launch below does */
    c->last_route_tiles = pa.tiles_ready;
    if ((st = moert_prefill_launch(r->cu, pk, &pa, stream)) != MOERT_OK) goto done;
  } else if (fused) {
    /* split-K decode: a work item per (32 rows of I, touched expert), partial rows in ypair */
    int Ei = (int)E;
    void *p1[] = {&tab, &up_offset, &x, (void *)&xs, &Hi, &Ii, &Ei, &c->offsets,
                  &c->packed_token, &c->ypair};
    if ((st = launch_pdl(r, c->fn_dec_fused, I / DEC_FUSED_SLAB, jmax, DEC_THREADS, fused_smem(),
                         stream, p1, "moert_dec_fused")) != MOERT_OK)
      goto done;
  } else if (dec >= 0) {
    /* decode: gate/up slabs of 16 rows of I, then down slabs of 32 rows of H */
    int Ei = (int)E;
    void *p1[] = {&tab, &up_offset, &x, (void *)&xs, &Hi, &Ii, &Ei, &c->offsets,
                  &c->packed_token, &c->h, &hstride};
    if ((st = launch_pdl(r, c->fn_dec_gate_up[dec], I / 16, jmax, DEC_THREADS, c->smem_dec[dec],
                         stream, p1, "moert_dec_gate_up")) != MOERT_OK)
      goto done;
    void *p2[] = {&tab_down, &c->h, &hstride, &Ii, &Hi, &Ei, &c->offsets, &c->ypair};
    if ((st = launch_pdl(r, c->fn_dec_down[dec], H / 32, jmax, DEC_THREADS, c->smem_dec[dec],
                         stream, p2, "moert_dec_down")) != MOERT_OK)
      goto done;
  } else if (blocks > 0) {
    void *p1[] = {&tab, &up_offset, &x, (void *)&xs, &one, &Ti, &Hi, &Ii, &c->offsets,
                  &c->padded_offsets, &c->block_expert, &c->packed_token, &c->meta, &c->h, &hstride};
    if ((st = launch(r, c->fn_gate_up, blocks, (I + c->tile.bn - 1) / c->tile.bn, 128, c->smem_gate_up,
                     stream, p1, "moert_gate_up")) != MOERT_OK)
      goto done;
    void *p2[] = {&tab_down, &c->h, &hstride, &one, &Ti, &Ii, &Hi, &c->offsets,
                  &c->padded_offsets, &c->block_expert, &c->meta, &c->ypair};
    if ((st = launch(r, c->fn_down, blocks, (H + c->tile.bn - 1) / c->tile.bn, 128, c->smem_down,
                     stream, p2, "moert_down")) != MOERT_OK)
      goto done;
  }
  CUdeviceptr ysh = 0, sgate = 0;
  /* the shared expert on the prefill GEMMs, as one expert whose plan is {0, T} (x rows in
   * order: no gather), wherever the routed experts take them: on the H100 faster than the
   * tiled kernels at every T measured, 1 to 8192 (docs/bench/prefill-log.md, v4) */
  const bool shared_prefill = Is && prefill && T >= c->shared_prefill_min_t && c->shared_prefill &&
                              (c->pf[0].gate_up.sm != 90 || ce->shared_maps);
  if (shared_prefill) {
    CU_CHECK(r, r->cu->cuMemsetD32Async(c->shared_offsets + 4, T, 1, stream),
             "cuMemsetD32Async");
    const moert_prefill_kernels *pk = &c->pf[moert_prefill_pick_bm(NULL, 1, T) == 128];
    moert_prefill_args pa = {.num_experts = 1, .hidden = H, .intermediate = Is, .pairs = T,
                             .offsets = c->shared_offsets, .gather = 0, .x = x,
                             .x_stride = xs, .wtab = tab_shared, .maps = ce->shared_maps,
                             .tiles = c->prefill_tiles, .h = c->hs, .h_stride = Is,
                             .out = c->ys, .out_stride = H};
    if ((st = moert_prefill_launch(r->cu, pk, &pa, stream)) != MOERT_OK) goto done;
    ysh = c->ys;
    if (d->shared_gate == MOERT_SHARED_GATE_SIGMOID)
      sgate = (CUdeviceptr)(uintptr_t)a->experts->shared_expert_gate;
  } else if (Is) {
    int up1 = 1;
    const unsigned tb = (T + bm - 1) / bm;
    void *p3[] = {&tab_shared, &up1, &x, (void *)&xs, &zero, &Ti, &Hi, &Isi, &null, &null, &null,
                  &null, &null, &c->hs, &hsstride};
    if ((st = launch(r, c->fn_gate_up, tb, (Is + c->tile.bn - 1) / c->tile.bn, 128, c->smem_gate_up,
                     stream, p3, "moert_gate_up (shared)")) != MOERT_OK)
      goto done;
    void *p4[] = {&tab_shared_down, &c->hs, &hsstride, &zero, &Ti, &Isi, &Hi, &null, &null, &null,
                  &null, &c->ys};
    if ((st = launch(r, c->fn_down, tb, (H + c->tile.bn - 1) / c->tile.bn, 128, c->smem_down, stream,
                     p4, "moert_down (shared)")) != MOERT_OK)
      goto done;
    ysh = c->ys;
    if (d->shared_gate == MOERT_SHARED_GATE_SIGMOID)
      sgate = (CUdeviceptr)(uintptr_t)a->experts->shared_expert_gate;
  }
  long long ystride = ys;
  const unsigned splits = combine_splits(c, T, H);
  /* the combine behind the decode kernels or the sm_90 prefill GEMMs (no shared expert) may
   * start early: it waits first */
  if (r->skip & 2u) goto done; /* the benchmark hook: no combine */
  const bool combine_pdl =
      r->pdl && !Is && (dec >= 0 || (prefill && (c->prefill_pdl & 8u) && c->pf[0].down.sm == 90));
  if (fused) {
    int S = (int)(I / DEC_FUSED_SLAB);
    void *p5[] = {&c->ypair, &S, &c->pair_of, &c->weights, &Ki, &Hi, &ysh, &sgate, &x, (void *)&xs,
                  &y, &ystride, &accumulate};
    const unsigned ncol = H / 32;
    st = moert_cuda_launch(r->cu, c->fn_combine_slabs, T, ncol, 256, 0, stream, p5,
                           "moert_combine_slabs", combine_pdl);
  } else if (rows_act && prefill) {
    /* ypair in the activation dtype; ys too if the shared expert took the prefill GEMMs */
    int shared_act = shared_prefill;
    void *p5[] = {&c->ypair, &c->pair_of, &c->weights, &Ki, &Hi, &ysh, &shared_act, &sgate, &x,
                  (void *)&xs, &y, &ystride, &accumulate};
    const bool two = parts == 2; /* rows of two parts: the down GEMM's K split */
    st = moert_cuda_launch(r->cu, two ? c->fn_combine_act2 : c->fn_combine_act, T, splits, 256,
                           0, stream, p5, two ? "moert_combine_act2" : "moert_combine_act",
                           combine_pdl);
  } else {
    void *p5[] = {&c->ypair, &c->pair_of, &c->weights, &Ki, &Hi, &ysh, &sgate, &x, (void *)&xs, &y,
                  &ystride, &accumulate};
    st = moert_cuda_launch(r->cu, c->fn_combine, T, splits, 256, 0, stream, p5, "moert_combine",
                           combine_pdl);
  }
done:
  pop_ctx(r);
  return st;
}

int moert_cuda_forward_path(const moert_scratch *s) {
  if (!s || !s->runtime || s->runtime->ops != &moert_cuda_backend || !s->backend_state)
    return MOERT_CUDA_PATH_NONE;
  return ((const cuda_scratch *)s->backend_state)->last_path;
}

bool moert_cuda_forward_route_tiles(const moert_scratch *s) {
  if (!s || !s->runtime || s->runtime->ops != &moert_cuda_backend || !s->backend_state)
    return false;
  return ((const cuda_scratch *)s->backend_state)->last_route_tiles;
}

const moert_backend_ops moert_cuda_backend = {
    .name = "cuda",
    .scratch_init = cuda_scratch_init,
    .scratch_fini = cuda_scratch_fini,
    .scratch_prepare = cuda_scratch_prepare,
    .experts_init = cuda_experts_init,
    .experts_fini = cuda_experts_fini,
    .route_device = cuda_route,
    .plan_uploaded = cuda_plan_uploaded,
    .fetch_routing = cuda_fetch_routing,
    .forward = cuda_forward,
    .runtime_fini = cuda_runtime_fini,
};
