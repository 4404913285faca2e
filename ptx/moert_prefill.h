/* moert_prefill.h — what the two prefill GEMMs (prefill_sm90.cu, prefill_sm80.cu) share:
 * the tensor-map type as kernel code sees it, one row tile of the plan, and the kernel that
 * cuts the plan into row tiles of MOERT_BM rows.
 *
 * The plan: expert e owns the sorted rows offsets[e] .. offsets[e+1]-1 (rows are pairs
 * (token, slot) sorted by expert).  A row tile is up to BM consecutive rows of one expert:
 * {expert, first row, end row (exclusive), 0}.  Tiles are cut from the offsets alone, so
 * the tile size is the prefill kernel's own (64 or 128 rows), whatever block size the
 * plan was padded to for the decode kernels.  The GEMMs are launched over an upper bound
 * of tiles (ceil(pairs / BM) + E) and the CTAs past *tile_count return at once, so a launch
 * needs no host knowledge of the routing and stays valid inside a CUDA graph. */
#ifndef MOERT_PREFILL_H
#define MOERT_PREFILL_H

/* CUtensorMap as the driver encodes it (cuTensorMapEncodeTiled): 128 opaque bytes.  A
 * kernel parameter of this type must be 64-byte aligned. */
struct __align__(64) moert_tmap {
  unsigned long long opaque[16];
};

/* One row tile: x = expert, y = first sorted row, z = end row (exclusive), w = 0. */
typedef int4 moert_row_tile;

#define MOERT_TILES_THREADS 1024

/* One CTA of MOERT_TILES_THREADS threads: tiles of bm rows for every expert, in expert
 * order, and their number in *tile_count.  Any E (chunks of 1024 experts). */
extern "C" __global__ void __launch_bounds__(MOERT_TILES_THREADS)
moert_prefill_tiles(const int *offsets, int E, int bm, moert_row_tile *tiles, int *tile_count) {
  __shared__ int s_warp[MOERT_TILES_THREADS / 32];
  __shared__ int s_carry;
  moert_pdl_wait();    /* launched behind route + plan (sm_90): the offsets */
  moert_pdl_trigger(); /* the gate/up GEMM may be scheduled: it waits for these tiles */
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  if (tid == 0) s_carry = 0;
  __syncthreads();
  for (int e0 = 0; e0 < E; e0 += MOERT_TILES_THREADS) {
    const int e = e0 + tid;
    int start = 0, end = 0, n = 0;
    if (e < E) {
      start = offsets[e];
      end = offsets[e + 1];
      n = (end - start + bm - 1) / bm;
    }
    /* inclusive scan of n over the CTA: warp shuffles, then the warp totals */
    int v = n;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const int u = __shfl_up_sync(MOERT_FULL_MASK, v, o);
      if (lane >= o) v += u;
    }
    if (lane == 31) s_warp[warp] = v;
    __syncthreads();
    if (warp == 0) {
      int w = s_warp[lane];
#pragma unroll
      for (int o = 1; o < 32; o <<= 1) {
        const int u = __shfl_up_sync(MOERT_FULL_MASK, w, o);
        if (lane >= o) w += u;
      }
      s_warp[lane] = w;
    }
    __syncthreads();
    const int first = s_carry + (warp ? s_warp[warp - 1] : 0) + v - n;
    for (int j = 0; j < n; j++) {
      const int r0 = start + j * bm;
      tiles[first + j] = make_int4(e, r0, min(r0 + bm, end), 0);
    }
    __syncthreads();
    if (tid == 0) s_carry += s_warp[MOERT_TILES_THREADS / 32 - 1];
    __syncthreads();
  }
  if (tid == 0) *tile_count = s_carry;
}

#endif
