/* route.cu — the device router: router logits [T, E] -> top-k expert ids and weights per
 * token, one warp per token, giving the same ids and the same weight bits as the host
 * router (runtime/router.c).
 *
 * Lane l holds experts l, l+32, l+64, ... .  The k winners are found by k rounds of a warp
 * arg-max under the order (value descending, index ascending), which is exactly the order
 * the host's insertion top-k keeps, so ties go to the lower expert.  Every float operation
 * is the separately rounded one of moert_math.h (this file is also compiled with
 * -fmad=false), and the full-softmax denominator is summed lane-strided and then by a
 * xor butterfly, the order router.c's warp_order_sum() reproduces on the host.
 *
 * A NaN logit cannot be reported from a kernel without a host synchronisation: it is
 * treated as -inf here, and the lowest such token is recorded in meta[1] for
 * moert_scratch_routing()/plan to report as MOERT_ERR_NAN_LOGIT.
 *
 * Compile-time constants: MOERT_E, MOERT_K, MOERT_ROUTER (1 softmax, 2 sigmoid groups),
 * MOERT_RENORM, MOERT_NGROUP (<= 64), MOERT_TOPK_GROUP. */
#include "moert_math.h"
#include "moert_device.h"

#define EPL ((MOERT_E + 31) / 32) /* experts per lane */
#define K MOERT_K

static __device__ __forceinline__ bool better(float v1, int i1, float v2, int i2) {
  return v1 > v2 || (v1 == v2 && i1 < i2);
}

/* After it every lane holds the warp's best (v, i). */
static __device__ __forceinline__ void warp_best(float &v, int &i) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    float ov = __shfl_xor_sync(MOERT_FULL_MASK, v, o);
    int oi = __shfl_xor_sync(MOERT_FULL_MASK, i, o);
    if (better(ov, oi, v, i)) {
      v = ov;
      i = oi;
    }
  }
}

/* k rounds of arg-max over the lane-held values: sv/si sorted as the host sorts them. */
static __device__ __forceinline__ void select_topk(const float (&val)[EPL], int lane,
                                                   float (&sv)[K], int (&si)[K]) {
  const float ninf = moert_bits_to_float(0xff800000u);
  unsigned int taken = 0;
#pragma unroll
  for (int j = 0; j < K; j++) {
    float bv = ninf;
    int bi = MOERT_INT_MAX;
#pragma unroll
    for (int s = 0; s < EPL; s++) {
      int e = lane + 32 * s;
      if (e < MOERT_E && !((taken >> s) & 1u) && better(val[s], e, bv, bi)) {
        bv = val[s];
        bi = e;
      }
    }
    warp_best(bv, bi);
    if ((bi & 31) == lane) taken |= 1u << (bi >> 5);
    sv[j] = bv;
    si[j] = bi;
  }
}

static __device__ __forceinline__ float load_logit(const void *row, int dtype, int e) {
  if (dtype == 1) return ((const float *)row)[e];
  unsigned short h = ((const unsigned short *)row)[e];
  return dtype == 2 ? moert_bf16_f32(h) : moert_f16_f32(h);
}

/* Routes token t with the calling warp; s_ids (optional) gets a copy of the ids. */
static __device__ __forceinline__ void route_token(const void *logits, int dtype,
                                                   long long stride, int t, const float *bias,
                                                   float scale, int *ids, float *weights,
                                                   int *meta, int *s_ids) {
  const int lane = threadIdx.x & 31;
  const float pinf = moert_bits_to_float(0x7f800000u), ninf = moert_bits_to_float(0xff800000u);
  const int esize = dtype == 1 ? 4 : 2;
  const char *row = (const char *)logits + (size_t)t * (size_t)stride * esize;

  float val[EPL];
  bool nan = false;
#pragma unroll
  for (int s = 0; s < EPL; s++) {
    int e = lane + 32 * s;
    float v = ninf;
    if (e < MOERT_E) {
      v = load_logit(row, dtype, e);
      if (v != v) {
        nan = true;
        v = ninf;
      }
    }
    val[s] = v;
  }
  if (__any_sync(MOERT_FULL_MASK, nan) && lane == 0) atomicMin(&meta[1], t);

  float sv[K], w[K];
  int si[K];
#if MOERT_ROUTER == 1
  select_topk(val, lane, sv, si);
  const float m = sv[0];
  if (m == pinf) { /* the +inf logits share all the weight */
    int count = 0;
#if MOERT_RENORM
#pragma unroll
    for (int j = 0; j < K; j++) count += sv[j] == pinf;
#else
#pragma unroll
    for (int s = 0; s < EPL; s++)
      count += __popc(__ballot_sync(MOERT_FULL_MASK, lane + 32 * s < MOERT_E && val[s] == pinf));
#endif
#pragma unroll
    for (int j = 0; j < K; j++) w[j] = sv[j] == pinf ? MOERT_FDIV(1.0f, (float)count) : 0.0f;
  } else if (m == ninf) { /* every logit -inf: uniform */
    float u = MOERT_FDIV(1.0f, (float)(MOERT_RENORM ? K : MOERT_E));
#pragma unroll
    for (int j = 0; j < K; j++) w[j] = u;
  } else {
    float sum = 0.0f;
#if MOERT_RENORM
#pragma unroll
    for (int j = 0; j < K; j++) {
      w[j] = moert_expf(MOERT_FADD(sv[j], -m));
      sum = MOERT_FADD(sum, w[j]);
    }
#else
#pragma unroll
    for (int s = 0; s < EPL; s++)
      if (lane + 32 * s < MOERT_E) sum = MOERT_FADD(sum, moert_expf(MOERT_FADD(val[s], -m)));
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) sum = MOERT_FADD(sum, __shfl_xor_sync(MOERT_FULL_MASK, sum, o));
#pragma unroll
    for (int j = 0; j < K; j++) w[j] = moert_expf(MOERT_FADD(sv[j], -m));
#endif
#pragma unroll
    for (int j = 0; j < K; j++) w[j] = MOERT_FDIV(w[j], sum);
  }
#else /* MOERT_ROUTER == 2: sigmoid scores, bias for the choice, group-limited */
  float score[EPL];
#pragma unroll
  for (int s = 0; s < EPL; s++) {
    int e = lane + 32 * s;
    score[s] = moert_sigmoidf(val[s]);
    float c = bias && e < MOERT_E ? MOERT_FADD(score[s], bias[e]) : score[s];
    val[s] = e < MOERT_E ? c : ninf;
  }
#if MOERT_NGROUP > 1
  {
    const int gs = MOERT_E / MOERT_NGROUP;
    float gscore[MOERT_NGROUP];
#pragma unroll
    for (int g = 0; g < MOERT_NGROUP; g++) {
      float v1 = ninf, v2 = ninf;
      int i1 = MOERT_INT_MAX, i2 = MOERT_INT_MAX;
#pragma unroll
      for (int s = 0; s < EPL; s++) {
        int e = lane + 32 * s;
        if (e < MOERT_E && e / gs == g && better(val[s], e, v1, i1)) {
          v1 = val[s];
          i1 = e;
        }
      }
      warp_best(v1, i1);
      if (gs >= 2) {
#pragma unroll
        for (int s = 0; s < EPL; s++) {
          int e = lane + 32 * s;
          if (e < MOERT_E && e / gs == g && e != i1 && better(val[s], e, v2, i2)) {
            v2 = val[s];
            i2 = e;
          }
        }
        warp_best(v2, i2);
        gscore[g] = MOERT_FADD(v1, v2);
      } else {
        gscore[g] = v1;
      }
    }
    unsigned long long keep = 0;
#pragma unroll
    for (int j = 0; j < MOERT_TOPK_GROUP; j++) {
      float bv = ninf;
      int bi = MOERT_INT_MAX;
#pragma unroll
      for (int g = 0; g < MOERT_NGROUP; g++)
        if (!((keep >> g) & 1ull) && better(gscore[g], g, bv, bi)) {
          bv = gscore[g];
          bi = g;
        }
      keep |= 1ull << bi;
    }
#pragma unroll
    for (int s = 0; s < EPL; s++) {
      int e = lane + 32 * s;
      if (e < MOERT_E && !((keep >> (e / gs)) & 1ull)) val[s] = ninf;
    }
  }
#endif
  select_topk(val, lane, sv, si);
  float sum = 0.0f;
#pragma unroll
  for (int j = 0; j < K; j++) {
    float mine = 0.0f;
#pragma unroll
    for (int s = 0; s < EPL; s++)
      if (s == (si[j] >> 5)) mine = score[s];
    w[j] = __shfl_sync(MOERT_FULL_MASK, mine, si[j] & 31);
    sum = MOERT_FADD(sum, w[j]);
  }
#if MOERT_RENORM
  {
    float denom = MOERT_FADD(sum, 1e-20f);
#pragma unroll
    for (int j = 0; j < K; j++) w[j] = MOERT_FDIV(w[j], denom);
  }
#endif
#endif
  if (scale != 1.0f) {
#pragma unroll
    for (int j = 0; j < K; j++) w[j] = MOERT_FMUL(w[j], scale);
  }
#pragma unroll
  for (int j = 0; j < K; j++) {
    if (lane == j) {
      ids[(size_t)t * K + j] = si[j];
      weights[(size_t)t * K + j] = w[j];
      if (s_ids) s_ids[t * K + j] = si[j];
    }
  }
}

extern "C" __global__ void __launch_bounds__(256)
moert_route(const void *logits, int dtype, long long stride, int T, const float *bias,
            float scale, int *ids, float *weights, int *meta) {
  const int t = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  moert_pdl_trigger(); /* the plan may launch now: it waits for the ids */
  if (t >= T) return;  /* whole warps leave together */
  route_token(logits, dtype, stride, t, bias, scale, ids, weights, meta, nullptr);
}

/* Route and plan in one CTA, for a decoding step (T k <= RP_MAX_PAIRS, E <= RP_MAX_E): one
 * launch instead of two, and no E-block plan.  The 32 warps route the tokens (the ids go
 * to shared memory too); then the stable counting sort of plan.cu, in shared memory: a
 * histogram, a prefix over the experts (warp 0), and each pair's rank among the earlier
 * pairs of its expert from __match_any_sync in its warp plus the counts of the earlier
 * warps.  The outputs are those of moert_route + moert_plan, bit for bit. */
#define RP_THREADS 1024
#define RP_MAX_PAIRS 1024
#define RP_MAX_E 256
#if MOERT_E <= RP_MAX_E
extern "C" __global__ void __launch_bounds__(RP_THREADS)
moert_route_plan(const void *logits, int dtype, long long stride, int T, const float *bias,
                 float scale, int *ids, float *weights, int *meta, int block_rows, int *offsets,
                 int *packed_token, int *pair_of, int *sorted_pair, int *padded_offsets,
                 int *block_expert) {
  __shared__ int s_ids[RP_MAX_PAIRS];
  __shared__ int s_hist[MOERT_E], s_start[MOERT_E], s_pstart[MOERT_E];
  __shared__ int s_wcount[RP_THREADS / 32][MOERT_E];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, n = T * K;
  moert_pdl_trigger(); /* the expert kernels may launch now; they wait for the plan */
  for (int i = tid; i < MOERT_E; i += RP_THREADS) s_hist[i] = 0;
  for (int i = tid; i < (RP_THREADS / 32) * MOERT_E; i += RP_THREADS) (&s_wcount[0][0])[i] = 0;
  for (int t = warp; t < T; t += RP_THREADS / 32)
    route_token(logits, dtype, stride, t, bias, scale, ids, weights, meta, s_ids);
  __syncthreads();
  const int e = tid < n ? s_ids[tid] : -1;
  /* pairs of the same expert in this warp, and this pair's rank among them */
  const unsigned int peers = __match_any_sync(MOERT_FULL_MASK, e);
  const int rank = __popc(peers & ((1u << lane) - 1u));
  if (e >= 0) {
    if (rank == 0) s_wcount[warp][e] = __popc(peers);
    atomicAdd(&s_hist[e], 1);
  }
  __syncthreads();
  if (warp == 0) { /* exclusive prefix over the experts, EPL consecutive experts a lane */
    int c = 0, pc = 0;
    for (int i = lane * EPL; i < (lane + 1) * EPL && i < MOERT_E; i++) {
      c += s_hist[i];
      pc += (s_hist[i] + block_rows - 1) / block_rows * block_rows;
    }
    int ic = c, ipc = pc;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const int a = __shfl_up_sync(MOERT_FULL_MASK, ic, o), b = __shfl_up_sync(MOERT_FULL_MASK, ipc, o);
      if (lane >= o) ic += a, ipc += b;
    }
    int s0 = ic - c, p0 = ipc - pc;
    for (int i = lane * EPL; i < (lane + 1) * EPL && i < MOERT_E; i++) {
      s_start[i] = s0;
      s_pstart[i] = p0;
      offsets[i] = s0;
      padded_offsets[i] = p0;
      s0 += s_hist[i];
      p0 += (s_hist[i] + block_rows - 1) / block_rows * block_rows;
    }
    if (lane == 31) {
      offsets[MOERT_E] = s0;
      padded_offsets[MOERT_E] = p0;
      meta[0] = p0 / block_rows; /* number of blocks */
    }
  }
  __syncthreads();
  if (e >= 0) {
    int before = 0;
    for (int w = 0; w < warp; w++) before += s_wcount[w][e];
    const int pos = s_start[e] + before + rank;
    pair_of[tid] = pos;
    sorted_pair[pos] = tid;
    packed_token[pos] = tid / K;
  }
  for (int i = tid; i < MOERT_E; i += RP_THREADS) {
    const int nb = (s_hist[i] + block_rows - 1) / block_rows, b0 = s_pstart[i] / block_rows;
    for (int b = 0; b < nb; b++) block_expert[b0 + b] = i;
  }
}
#endif
