/* plan.cu — the device bucket plan: the same stable counting sort as runtime/plan.c,
 * run as one launch of E blocks with no host round trip.
 *
 * Block e builds the histogram of all T*k expert ids in shared memory (integer atomics:
 * the counts do not depend on their order), derives its own start in the sorted and the
 * padded order from the counts of the experts before it, and then scans the pairs in
 * order, giving each of its pairs the next position (a ballot and a prefix over the warps
 * per chunk), so the order inside an expert is the pair order: stable, and the same
 * result as the host's.  Every output element is written by exactly one block. */
#include "moert_device.h"

#define PLAN_THREADS 1024

extern "C" __global__ void __launch_bounds__(PLAN_THREADS)
moert_plan(const int *ids, int T, int K, int E, int block_rows, int *offsets,
           int *packed_token, int *pair_of, int *sorted_pair, int *padded_offsets,
           int *block_expert, int *meta) {
  __shared__ int hist[512];
  __shared__ int warp_total[PLAN_THREADS / 32];
  __shared__ int s_start, s_pstart;
  const int e = blockIdx.x, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int n = T * K, nwarps = blockDim.x >> 5;
  moert_pdl_wait();    /* launched behind the router: its ids */
  moert_pdl_trigger(); /* the expert kernels may launch now; they wait for the offsets */
  for (int i = tid; i < E; i += blockDim.x) hist[i] = 0;
  __syncthreads();
  for (int p = tid; p < n; p += blockDim.x) atomicAdd(&hist[ids[p]], 1);
  __syncthreads();
  if (tid == 0) {
    int s = 0, ps = 0;
    for (int i = 0; i < e; i++) {
      s += hist[i];
      ps += (hist[i] + block_rows - 1) / block_rows * block_rows;
    }
    s_start = s;
    s_pstart = ps;
    offsets[e] = s;
    padded_offsets[e] = ps;
    if (e == E - 1) {
      int pe = ps + (hist[e] + block_rows - 1) / block_rows * block_rows;
      offsets[E] = s + hist[e];
      padded_offsets[E] = pe;
      meta[0] = pe / block_rows; /* number of blocks */
    }
  }
  __syncthreads();
  const int count = hist[e], nb = (count + block_rows - 1) / block_rows;
  for (int i = tid; i < nb; i += blockDim.x) block_expert[s_pstart / block_rows + i] = e;
  int base = s_start;
  for (int c0 = 0; c0 < n; c0 += blockDim.x) {
    const int p = c0 + tid;
    const bool mine = p < n && ids[p] == e;
    const unsigned int ballot = __ballot_sync(MOERT_FULL_MASK, mine);
    if (lane == 0) warp_total[warp] = __popc(ballot);
    __syncthreads();
    int before = 0, total = 0;
    for (int w = 0; w < nwarps; w++) {
      int c = warp_total[w];
      before += w < warp ? c : 0;
      total += c;
    }
    if (mine) {
      const int pos = base + before + __popc(ballot & ((1u << lane) - 1u));
      pair_of[p] = pos;
      sorted_pair[pos] = p;
      packed_token[pos] = p / K;
    }
    __syncthreads(); /* warp_total is rewritten by the next chunk */
    base += total;
  }
}
