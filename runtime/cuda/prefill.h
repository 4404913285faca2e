/* prefill.h — the host side of the prefill expert GEMMs (ptx/prefill_sm90.cu on sm_90a,
 * ptx/prefill_sm80.cu on sm_80/86/89 and newer): the tile choice, the NVRTC requests, the
 * tensor maps of the weights (cuTensorMapEncodeTiled, resolved from the dlopen'd driver),
 * and the three launches of one layer's routed experts:
 *
 *   moert_prefill_tiles   row tiles of BM rows cut from the plan's offsets (1 CTA)
 *   moert_prefill_gemm    gate/up: h = silu(x Wg^T) * (x Wu^T), x rows gathered by packed_token
 *   moert_prefill_gemm    down:    out = h Wd^T (one row per sorted pair)
 *
 * h and out are laid out like the decode path's (runtime/cuda/backend.c: c->h [pairs, I],
 * c->ypair [pairs, H], by sorted row).  out is f32 like the decode path's, or on sm_90a (by
 * default, down.out_act) in the activation dtype, which ptx/expert.cu's moert_combine_act
 * reads.  Private to the library; called by backend.c's forward for bf16/f16 layers with
 * many rows per expert (docs/prefill.md, docs/cuda.md). */
#ifndef MOERT_CUDA_PREFILL_H
#define MOERT_CUDA_PREFILL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cuda_api.h"
#include "jit.h"

/* The compile-time shape of one prefill GEMM module. */
typedef struct moert_prefill_config {
  int sm;     /* 90: prefill_sm90.cu (needs sm_90a); 80: prefill_sm80.cu (sm_80 and newer) */
  int act;    /* MOERT_ACT: 1 bf16, 2 f16 */
  int gated;  /* 1 gate/up (SiLU * up epilogue, act-dtype output), 0 down (f32 output) */
  int bm, bn; /* rows and columns (per weight matrix) of a CTA's tile */
  int bk;     /* K step (always 64 on sm90) */
  int stages; /* pipeline depth */
  int a_tma;  /* sm90 only: A by TMA from a contiguous matrix (down), else gathered by cp.async */
  int a_skip; /* sm90 gathered A: rows past the tile's end not copied (MOERT_A_SKIP) */
  int m_skip; /* sm90 128-row tiles: a consumer with no row in the tile issues no wgmma */
  int l2_fetch; /* sm90: bytes an L2 miss of a weight map fetches, 128 or 256 (0: 256) */
  int box_rows; /* sm90: rows of the weight maps' TMA box where fewer than bn (the tile's
                 * weights loaded as bn / box_rows boxes: MOERT_BOX_ROWS); 0 = bn */
  int ksplit;   /* sm90 persistent down GEMM: built to take moert_prefill_args.ksplit
                 * (MOERT_KSPLIT=1; the narrow tiles' down GEMM) */
  int layer;  /* sm90 gate/up of 64-row tiles, persistent, down->bn = 2 bn: also the layer
               * kernel, both GEMMs in one launch (MOERT_LAYER; moert_prefill_load): 1 with
               * 4-byte stores, 2 with the 16-byte ones where epi_wide (an experiment) */
  int persistent; /* sm90 only: about one CTA per SM, each looping over work items */
  int order;      /* sm90 only: 0 column tile outer, 1 row tile outer (1-D grid) */
  int fused_gu;   /* sm90 gated 128-row tiles: gate and up by one wgmma of width 256 (192-row
                   * tiles: of width 192) */
  int out_act;    /* sm90 down only: rows in the activation dtype instead of f32 */
  int epi_wide;   /* sm90, 2-byte outputs: 16-byte stores after a transpose in each quad */
  int early;      /* sm90: the gate/up GEMM lets the down GEMM launch at its start (only where
                   * two CTAs cannot share an SM: moert_prefill_load checks), and the down
                   * GEMM asks for its first weight tiles before it waits (MOERT_EARLY) */
} moert_prefill_config;

/* Rows of a tile for a plan with the given rows per expert: 128 from 64 rows per expert on
 * average, or where 64-row tiles would not save an eighth of the padded rows; else 64 (less
 * padding at small T).  offsets (E + 1 values) may be NULL when only the total is known
 * (device routing): the average is used then. */
int moert_prefill_pick_bm(const int32_t *offsets, uint32_t num_experts, uint64_t pairs);

/* The configurations of both GEMMs for a GPU of compute capability major.minor, dtype
 * (bf16 or f16) and tile rows bm (64 or 128).  sm_90 kernels are persistent, take the row
 * tile outer, and with 128-row tiles compute gate and up by one wgmma; moert_prefill_fit
 * changes that by the layer's shape.  MOERT_ERR_UNSUPPORTED for another dtype or a GPU
 * older than sm_80. */
moert_status moert_prefill_configs(int cc_major, int cc_minor, moert_dtype dtype, int bm,
                                   moert_prefill_config *gate_up, moert_prefill_config *down);

/* The work order for a layer of this hidden and intermediate size, and the down rows in f32
 * when the hidden size is not a multiple of 8: the sm_90a defaults (persistent, row tile
 * outer, 128-row gate/up as one wgmma) up to hidden 2048; above, one CTA per 128-row tile
 * and two wgmmas, which measured faster on the H100 for Qwen3-235B-A22B T=4096 and
 * DeepSeek-V3 T=8192 (persistence cost 11-45 % there, docs/bench/prefill-log.md, v5), and
 * persistent 64-row tiles; persistent 128-row tiles too where the column tile is outer.
 * The row tile outer (the column tiles of one row tile run together: its A rows are read
 * once) wherever one expert's matrices of a GEMM (gate and up together) fit in
 * MOERT_PREFILL_COL_BYTES, else the column tile outer (the row tiles of one column tile run
 * together: its weights are read once).  On the H200 (docs/bench/decode-log.md,
 * v11): Qwen3-235B-A22B T=512 1184 us with the row tile outer against 1240, DeepSeek-V3
 * T=1024 5555 against 5972; Mixtral-8x7B (235 MB of gate and up an expert) T=1024 1568
 * against 1817 the other way.  The benchmark hooks MOERT_PREFILL_PERSISTENT, _ORDER and
 * _FUSED_GU, set to 0 or 1, win over both. */
#define MOERT_PREFILL_COL_BYTES (96ull << 20)
void moert_prefill_fit(moert_prefill_config *gate_up, moert_prefill_config *down, uint32_t hidden,
                       uint32_t intermediate);

/* The narrow tiles of the decode sizes (sm_90a, 64-row tiles only; else no change): gate/up
 * 64 columns (m64n32 wgmmas, one per consumer and matrix), down 128, so that a step with
 * few experts has twice the work items of the default 128 / 256 — at one token Qwen3-30B-A3B
 * has 8 experts x 6 gate/up column tiles for 132 SMs.  Their weights need tensor maps with
 * boxes of as many rows (moert_prefill_encode_weights with these configs).  The forward
 * takes them where the split-K decode kernel would run (T = 1), and wherever 64-row tiles
 * run only with MOERT_PREFILL_NARROW=1 (decode-log.md v11: not faster there).  8 stages,
 * no MOERT_EARLY (decode-log.md v12), weight maps whose L2 misses fetch 128 bytes (v15), and
 * the layer kernel only with MOERT_PREFILL_LAYER=1 (v15). */
void moert_prefill_narrow(moert_prefill_config *gate_up, moert_prefill_config *down);
/* The narrow gate/up tiles at bn columns a matrix (48, 64, 80, 96, 112 or 128; other values
 * leave the configuration as it is): the stages cut to what fits, no layer kernel. */
void moert_prefill_narrow_width(moert_prefill_config *gate_up, int bn);
/* Whether the narrow gate/up kernel has tiles of bn columns (48 to 128 by 16). */
bool moert_prefill_narrow_width_ok(int bn);
/* The fill of the last round of work items on sm_count SMs (0: 132): items / (rounds x SMs),
 * 0 for no items. */
double moert_prefill_fill(uint64_t items, unsigned int sm_count);
/* The narrow gate/up width whose work items (touched experts x column tiles of I) fill the
 * last round of sm_count SMs best (ties: the widest). */
int moert_prefill_narrow_pick(uint32_t intermediate, uint64_t touched, unsigned int sm_count);

/* -D storage of one request (moert_jit_request holds pointers into it). */
typedef struct moert_prefill_request {
  moert_jit_request req;
  char text[20][40];
} moert_prefill_request;
void moert_prefill_make_request(const moert_prefill_config *c, moert_prefill_request *out);

/* The layer kernel (prefill_sm90.cu, MOERT_LAYER): both GEMMs in one launch.  It fits sm_90a
 * 64-row tiles, persistent, gathered A, down columns twice the gate/up ones and one ring
 * depth (a stage and the accumulators are then the same size in both GEMMs); its module is
 * compiled from the gate/up configuration with the down GEMM's row dtype. */
int moert_prefill_layer_fits(const moert_prefill_config *gate_up, const moert_prefill_config *down);
void moert_prefill_make_layer_request(const moert_prefill_config *gate_up,
                                      const moert_prefill_config *down, moert_prefill_request *out);

unsigned int moert_prefill_threads(const moert_prefill_config *c);
/* dynamic shared memory of a CTA (sm90: 1 KB of alignment slack included) */
unsigned int moert_prefill_smem(const moert_prefill_config *c);
/* The most row tiles a plan of `pairs` rows over E experts can have: ceil(pairs/bm) + E. */
uint64_t moert_prefill_max_tiles(uint64_t pairs, uint32_t num_experts, int bm);
/* Bytes of device scratch for the tile list and its count (16-byte entries + 16). */
size_t moert_prefill_tiles_bytes(uint64_t pairs, uint32_t num_experts, int bm);
/* Grid of a GEMM: x = row tiles (upper bound), y = ceil(N / bn); a persistent one
 * (c->persistent) is 1-D: min(sm_count, x * y * parts) CTAs (parts: the K split, 1 none). */
void moert_prefill_grid(const moert_prefill_config *c, uint64_t pairs, uint32_t num_experts,
                        uint32_t N, unsigned int parts, unsigned int sm_count, unsigned int *gx,
                        unsigned int *gy);

/* ---- tensor maps (sm_90a) ---- */

#define MOERT_TMAP_BYTES 128
/* cuTensorMapEncodeTiled, as cuda.h declares it (enums as int, cuuint64_t as uint64_t) */
typedef CUresult (*moert_tmap_encode_fn)(void *map, int dtype, uint32_t rank, void *addr,
                                         const uint64_t *dims, const uint64_t *strides,
                                         const uint32_t *box, const uint32_t *elem_strides,
                                         int interleave, int swizzle, int l2_promotion,
                                         int oob_fill);
/* The driver's cuTensorMapEncodeTiled (CUDA 12.0+), or MOERT_ERR_BACKEND_UNAVAILABLE. */
moert_status moert_prefill_tmap_encoder(const moert_cuda_driver *cu, moert_tmap_encode_fn *out);

/* Encodes the map of a row-major [rows, K] matrix with the given row stride (elements):
 * box 64 (K) x box_rows, 128-byte swizzle, zeros out of bounds.  K a multiple of 8, the
 * stride a multiple of 8, addr 16-byte aligned, box_rows <= 256. */
moert_status moert_prefill_encode_map(moert_tmap_encode_fn enc, moert_dtype dtype,
                                      const void *addr, uint64_t rows, uint64_t K,
                                      uint64_t row_stride, uint32_t box_rows, void *map);

/* Encodes the 3E weight maps of a layer into maps_host (3E x 128 bytes, 64-byte aligned):
 * gate maps [0, E), up maps [E, 2E) (box rows gate_up->bn), down maps [2E, 3E)
 * (down->bn).  gate, up: [I, H]; down: [H, I]. */
moert_status moert_prefill_encode_weights(moert_tmap_encode_fn enc, moert_dtype dtype,
                                          const moert_prefill_config *gate_up,
                                          const moert_prefill_config *down, uint32_t E,
                                          uint32_t H, uint32_t I, const void *const *gate,
                                          const void *const *up, const void *const *down_w,
                                          void *maps_host);

/* ---- modules and launches ---- */

typedef struct moert_prefill_kernels {
  moert_prefill_config gate_up, down;
  CUfunction fn_tiles, fn_gate_up, fn_down;
  CUfunction fn_layer; /* both GEMMs in one launch (gate_up.layer), or NULL */
  unsigned int smem_gate_up, smem_down;
  moert_tmap_encode_fn encode; /* sm90 only */
  unsigned int sm_count;       /* the grid of a persistent kernel */
} moert_prefill_kernels;

/* Compiles or loads both modules through the runtime's JIT cache and sets the kernels'
 * shared-memory limits.  The context must be current. */
moert_status moert_prefill_load(moert_jit_cache *jit, const moert_cuda_driver *cu,
                                const moert_prefill_config *gate_up,
                                const moert_prefill_config *down, moert_prefill_kernels *out);

typedef struct moert_prefill_args {
  uint32_t num_experts, hidden, intermediate;
  uint64_t pairs;        /* T * k: rows of the plan (an upper bound is fine) */
  CUdeviceptr offsets;   /* [E+1] int32: expert e owns sorted rows offsets[e]..offsets[e+1]-1 */
  CUdeviceptr gather;    /* [pairs] int32: token of each sorted row (packed_token) */
  CUdeviceptr x;         /* [T, H] activations */
  long long x_stride;    /* elements between rows of x */
  CUdeviceptr wtab;      /* [3E] device addresses: gate E, up E, down E (sm80) */
  CUdeviceptr maps;      /* [3E] tensor maps in device memory (sm90), as encoded above */
  CUdeviceptr tiles;     /* scratch of moert_prefill_tiles_bytes() */
  CUdeviceptr h;         /* [pairs, I] activation dtype */
  long long h_stride;
  CUdeviceptr out;       /* [pairs, H] f32, or the activation dtype (down.out_act) */
  long long out_stride;
  unsigned pdl; /* programmatic dependent launch (sm_90 kernels, cuLaunchKernelEx): bit 0 the
                 * tiles kernel, bit 1 the gate/up GEMM, bit 2 the down GEMM; a kernel so
                 * launched is scheduled while the one before it drains and waits for it in
                 * griddepcontrol.wait; 0 = plain launches */
  bool tiles_ready; /* the row tiles in tiles are already written (by device routing, for
                     * these offsets and this tile height): no moert_prefill_tiles launch */
  CUdeviceptr layer_sync; /* moert_prefill_layer_sync_bytes of zeros (and zeros again after
                           * each launch): the layer kernel (k->fn_layer) runs both GEMMs;
                           * 0: two launches */
  int ksplit; /* sm90 persistent down GEMM built with config.ksplit: its items' K in this
               * many parts (1 or 2; 0 = 1),
               * part s of a row at columns [s H, (s + 1) H) of out's rows (out_stride is
               * one part's: out must hold pairs x ksplit H), summed by moert_combine_act2 */
  int w_evict; /* sm90: the weights' TMA loads marked L2 evict_first (each weight read once,
                 * so that h and the rows the combine reads stay in L2; the backend's
                 * w_evict_due): bit 0 the gate/up GEMM's, bit 1 the down GEMM's (the layer
                 * kernel: either); 0: no hint */
} moert_prefill_args;

/* The parts of each row the down GEMM of this launch writes: a->ksplit where its module
 * takes the split (a persistent sm90 down GEMM built with config.ksplit, rows in the 2-byte
 * dtype) and no layer kernel runs, else 1; the combine must sum as many. */
int moert_prefill_down_parts(const moert_prefill_kernels *k, const moert_prefill_args *a);

/* Bytes of the layer kernel's counters for a plan of pairs rows (64-row tiles): a ticket and
 * two counters per row tile, 32 bytes each, all zero when no launch runs. */
size_t moert_prefill_layer_sync_bytes(uint64_t pairs, uint32_t num_experts);

/* The gemm kernels' m_skip argument for a plan of pairs rows over E experts: 1 where the
 * module has MOERT_M_SKIP (a consumer with no row in a 128-row tile issues no wgmma) and the
 * grid gains by it, else 0. */
int moert_prefill_m_skip_due(const moert_prefill_config *c, uint64_t pairs, uint32_t E);

/* Whether the 192-row tiles take a plan of pairs rows over E experts of hidden size H and
 * intermediate size I where the plan would take 128-row tiles: mode 0 never, 1 always, any
 * other value the rule (experts averaging 113-176 rows, the gate/up grid with the row tile
 * outer). */
int moert_prefill_tall_due(int mode, uint32_t E, uint32_t H, uint32_t I, uint64_t pairs);

/* Whether the 128-row down GEMM takes its K in two parts at a plan of pairs rows: where its
 * items fill their last round of sm_count SMs so poorly that half items end a fifth sooner. */
int moert_prefill_ksplit128_due(uint32_t E, uint32_t H, uint32_t I, uint64_t pairs,
                                unsigned int sm_count);
/* The down GEMM's work items the K split rules count at a plan of pairs rows: about
 * pairs / bm + E / 2 row tiles (an expert's last one partial) times ceil(H / bn) column tiles */
uint64_t moert_prefill_down_items(uint32_t E, uint32_t H, uint64_t pairs, int bm, int bn);
/* The same for the down GEMM of bm-row tiles and bn columns (moert_prefill_ksplit128_due is
 * bm 128, bn 256) */
int moert_prefill_ksplit_rows_due(uint32_t E, uint32_t H, uint32_t I, uint64_t pairs,
                                  unsigned int sm_count, int bm, int bn);

/* The three launches on stream: tiles, gate/up, down (or tiles and the layer kernel).  No allocation, no synchronisation:
 * capturable in a CUDA graph.  The context must be current. */
moert_status moert_prefill_launch(const moert_cuda_driver *cu, const moert_prefill_kernels *k,
                                  const moert_prefill_args *a, CUstream stream);

/* ---- the backend's choice (runtime/cuda/backend.c) ---- */

/* Whether bf16/f16 layers take the prefill GEMMs (unless MOERT_CUDA_PREFILL=0|1 says
 * otherwise): on sm_90 (wgmma + TMA) from T = 2 on, when the tokens give at least one row
 * per expert on average (T k >= E), or when one expert's weights are 16 MiB or more;
 * elsewhere (mma.sync, not
 * measured on hardware yet) when the expected rows per expert ceil(T k / E) exceed
 * MOERT_CUDA_PREFILL_MIN_RPE.  The measurements behind it: runtime/cuda/backend.c. */
#define MOERT_CUDA_PREFILL_MIN_RPE 8
static inline bool moert_cuda_prefill_due(int cc_major, int cc_minor, uint64_t T, uint32_t k,
                                          uint32_t E, uint64_t expert_bytes) {
  if (cc_major == 9 && cc_minor == 0)
    return T >= 2 || T * k >= E || expert_bytes >= (16ull << 20);
  return (T * k + E - 1) / E > MOERT_CUDA_PREFILL_MIN_RPE;
}

enum {
  MOERT_CUDA_PATH_NONE = 0, /* no forward yet, another backend, or no rows */
  MOERT_CUDA_PATH_DECODE = 1,
  MOERT_CUDA_PATH_TILED = 2,
  MOERT_CUDA_PATH_PREFILL = 3,
  MOERT_CUDA_PATH_DECODE_SPLITK = 4 /* both decode projections in one kernel */
};
struct moert_scratch;
/* The expert path the scratch's last moert_forward launched (a private hook for the tests
 * and the benchmark tool of the static library). */
int moert_cuda_forward_path(const struct moert_scratch *s);
/* Whether that forward took the prefill GEMMs' row tiles from device routing (no
 * moert_prefill_tiles launch; the same private use). */
bool moert_cuda_forward_route_tiles(const struct moert_scratch *s);
/* device routing writes the row tiles up to this many pairs (MOERT_CUDA_ROUTE_TILES=1: any) */
#define MOERT_CUDA_ROUTE_TILES_MAX_PAIRS 2048

#endif
