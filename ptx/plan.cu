/* plan.cu — the device bucket plan: the same stable counting sort as runtime/plan.c, in two
 * launches over chunks of the T*k pairs, with no host round trip.
 *
 *   moert_plan_count   block c counts the expert ids of its chunk of 512 * groups pairs
 *                      into counts[c*E + e] (the host takes groups 1..8: 1 up to 32768
 *                      pairs, then enough for at most 64 chunks up to 262144 pairs)
 *   moert_plan_assign  block c (launched behind it, programmatic dependent launch) reads
 *                      all counts: expert e's rows start at offsets[e] = the pairs of the
 *                      experts before it, and its chunk's pairs of e at offsets[e] + the
 *                      pairs of e in the chunks before c.  Each of its warps owns a
 *                      contiguous part of the chunk: it counts its part per expert, an
 *                      exclusive scan over the warps gives each warp its start per expert,
 *                      and the warp walks its part again in pair order, ranking the pairs of
 *                      one expert among a group of 32 by the lanes with the same id (ten
 *                      ballots).  So the order inside an expert is the pair order: stable,
 *                      the host's result bit for bit.  Block 0 writes offsets,
 *                      padded_offsets and meta[0]; block c the block_expert entries of the
 *                      experts c, c + gridDim.x, ... (a thread an expert).  Every output
 *                      element is written once.  tile_bm > 0: the prefill GEMMs' row
 *                      tiles of tile_bm rows too (tiles[0] their count, written by block
 *                      0; tile i at tiles + 4 + 4 i, by the block of its expert), what
 *                      moert_prefill_tiles would write.
 *
 * At most 512 experts (shared arrays), ids in [0, E) (the router's output). */
#include "moert_device.h"

#define PLAN_THREADS 512
#define PLAN_WARPS (PLAN_THREADS / 32)
#define PLAN_MAX_E 512
#define PLAN_GROUPS 8 /* the most groups of 32 pairs per warp (the host picks 1..8) */

extern "C" __global__ void __launch_bounds__(PLAN_THREADS)
moert_plan_count(const int *ids, int n, int E, int groups, int *counts) {
  __shared__ int hist[PLAN_MAX_E];
  const int c = blockIdx.x, tid = threadIdx.x;
  moert_pdl_wait();    /* launched behind the router: its ids */
  moert_pdl_trigger(); /* the assign kernel may launch; it waits for these counts */
  for (int e = tid; e < E; e += PLAN_THREADS) hist[e] = 0;
  __syncthreads();
  const int chunk = PLAN_THREADS * groups, p0 = c * chunk, p1 = min(p0 + chunk, n);
  for (int p = p0 + tid; p < p1; p += PLAN_THREADS) atomicAdd(&hist[ids[p]], 1);
  __syncthreads();
  for (int e = tid; e < E; e += PLAN_THREADS) counts[(size_t)c * E + e] = hist[e];
}

/* exclusive scan of v over the block (PLAN_THREADS threads, one value each); *total = sum */
static __device__ __forceinline__ int block_exclusive_scan(int v, int *s_warp, int *total) {
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  int x = v;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const int u = __shfl_up_sync(MOERT_FULL_MASK, x, o);
    if (lane >= o) x += u;
  }
  if (lane == 31) s_warp[warp] = x;
  __syncthreads();
  int before = 0, all = 0;
#pragma unroll
  for (int w = 0; w < PLAN_WARPS; w++) {
    const int t = s_warp[w];
    before += w < warp ? t : 0;
    all += t;
  }
  __syncthreads(); /* s_warp may be reused by the caller's next scan */
  *total = all;
  return before + x - v;
}

/* the lanes of the warp whose e equals this lane's (e in [-1, 512): 10 bits, -1 as 1023):
 * __match_any_sync's result from 10 ballots, in constant time */
static __device__ __forceinline__ unsigned int same_lanes(int e) {
  const unsigned int v = (unsigned int)e & 1023u;
  unsigned int m = MOERT_FULL_MASK;
#pragma unroll
  for (int b = 0; b < 10; b++) {
    const unsigned int bit = (v >> b) & 1u, bal = __ballot_sync(MOERT_FULL_MASK, bit);
    m &= bit ? bal : ~bal;
  }
  return m;
}

extern "C" __global__ void __launch_bounds__(PLAN_THREADS)
moert_plan_assign(const int *ids, int T, int K, int E, int block_rows, int groups,
                  const int *counts, int *offsets, int *packed_token, int *pair_of,
                  int *sorted_pair, int *padded_offsets, int *block_expert, int *meta,
                  int tile_bm, int *tiles) {
  __shared__ int s_cnt[PLAN_WARPS][PLAN_MAX_E]; /* per warp: its pairs, then its next row */
  __shared__ int s_start[PLAN_MAX_E];           /* offsets[e] + e's pairs in earlier chunks */
  __shared__ int s_warp[PLAN_WARPS];
  const int c = blockIdx.x, C = gridDim.x, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int n = T * K;
  moert_pdl_wait();    /* the counts of every chunk */
  moert_pdl_trigger(); /* the expert kernels may launch now; they wait for this plan */

  /* warp w owns the pairs [q0, q1) of the chunk, lane l the pairs q0 + 32 j + l: their ids
   * are loaded once, all at the same time, before the counts are read */
  const int q0 = c * (PLAN_THREADS * groups) + warp * (32 * groups), q1 = min(q0 + 32 * groups, n);
  int idv[PLAN_GROUPS];
#pragma unroll
  for (int j = 0; j < PLAN_GROUPS; j++) {
    const int p = q0 + 32 * j + lane;
    idv[j] = j < groups && p < q1 ? ids[p] : -1;
  }

  /* the experts' totals and this chunk's share before it; E <= PLAN_THREADS */
  int tot = 0, pre = 0;
  if (tid < E) {
#pragma unroll 8
    for (int b = 0; b < C; b++) {
      const int v = counts[(size_t)b * E + tid];
      tot += v;
      pre += b < c ? v : 0;
    }
  }
  const int padded = (tot + block_rows - 1) / block_rows * block_rows;
  int all, pall;
  const int off = block_exclusive_scan(tot, s_warp, &all);
  const int poff = block_exclusive_scan(padded, s_warp, &pall);
  if (tid < E) {
    s_start[tid] = off + pre;
    if (c == 0) {
      offsets[tid] = off;
      padded_offsets[tid] = poff;
    }
    /* block_expert of the experts c, c + C, ...: one thread an expert */
    if (tid % C == c)
      for (int i = 0; i < padded / block_rows; i++) block_expert[poff / block_rows + i] = tid;
  }
  if (c == 0 && tid == 0) {
    offsets[E] = all;
    padded_offsets[E] = pall;
    meta[0] = pall / block_rows; /* number of blocks */
  }
  if (tile_bm > 0) { /* uniform: the prefill row tiles (the scan has barriers) */
    const int nt = (tot + tile_bm - 1) / tile_bm; /* 0 past E: tot is 0 there */
    int tall;
    const int toff = block_exclusive_scan(nt, s_warp, &tall);
    if (tid < E && tid % C == c) {
      int4 *t = (int4 *)(tiles + 4) + toff;
      for (int j = 0; j < nt; j++) t[j] = make_int4(tid, off + j * tile_bm, min(off + (j + 1) * tile_bm, off + tot), 0);
    }
    if (c == 0 && tid == 0) tiles[0] = tall;
  }

  int *cnt = s_cnt[warp];
  for (int e = lane; e < E; e += 32) cnt[e] = 0;
  __syncwarp();
#pragma unroll
  for (int j = 0; j < PLAN_GROUPS; j++) {
    if (j >= groups) break; /* uniform */
    const int e = idv[j];
    const unsigned int peers = same_lanes(e);
    if (e >= 0 && lane == __ffs(peers) - 1) cnt[e] += __popc(peers);
    __syncwarp();
  }
  __syncthreads();
  /* exclusive scan over the warps, per expert: each warp's first row of e */
  if (tid < E) {
    int run = s_start[tid];
#pragma unroll
    for (int w = 0; w < PLAN_WARPS; w++) {
      const int v = s_cnt[w][tid];
      s_cnt[w][tid] = run;
      run += v;
    }
  }
  __syncthreads();
  const unsigned int below = (1u << lane) - 1u;
#pragma unroll
  for (int j = 0; j < PLAN_GROUPS; j++) {
    if (j >= groups) break; /* uniform */
    const int p = q0 + 32 * j + lane, e = idv[j];
    const unsigned int peers = same_lanes(e);
    if (e >= 0) {
      const int pos = cnt[e] + __popc(peers & below);
      pair_of[p] = pos;
      sorted_pair[pos] = p;
      packed_token[pos] = p / K;
    }
    __syncwarp();
    if (e >= 0 && lane == __ffs(peers) - 1) cnt[e] += __popc(peers);
    __syncwarp();
  }
}
