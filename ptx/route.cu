/* route.cu — the device router: router logits [T, E] -> top-k expert ids and weights per
 * token, one warp per token, giving the same ids and the same weight bits as the host
 * router (runtime/router.c).
 *
 * Lane l holds experts l, l+32, l+64, ... .  The k winners are found by k rounds of a warp
 * arg-max under the order (value descending, index ascending), which is exactly the order
 * the host's insertion top-k keeps, so ties go to the lower expert.  On sm_80 and newer a
 * round is two redux.sync (the largest order key, then the lowest expert holding it:
 * MOERT_ROUTE_REDUX, default 1), else five shuffle levels.  Every float operation
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

/* k rounds of arg-max over the lane-held values, in the order the host sorts them: lane j
 * (j < K) keeps the j-th winner in (myv, myi), every lane gets the best value in m.  The
 * rounds are a loop, not unrolled, to keep the code short (a decoding step runs it once per
 * token, from an instruction cache that the layer's weight stream has emptied; halving the
 * code did not by itself shorten the kernel in ncu, docs/bench/decode-log.md v6). */
#ifndef MOERT_ROUTE_REDUX
#define MOERT_ROUTE_REDUX 1
#endif
#if MOERT_ROUTE_REDUX && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
/* An unsigned key in the order of better(): larger for a larger value (-0 as +0, as the
 * float comparison has them equal), 0 for a NaN (below -inf, whose key is 0x007fffff). */
static __device__ __forceinline__ unsigned int order_key(float v) {
  const unsigned int u = __float_as_uint(MOERT_FADD(v, 0.0f));
  return v != v ? 0u : (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
static __device__ __forceinline__ float key_value(unsigned int k) {
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}
/* select_topk with the warp's arg-max as two redux.sync (sm_80): the largest key, then the
 * lowest expert holding it - one round in about a third of the five shuffle levels' time;
 * the same winners in the same order */
static __device__ __forceinline__ void select_topk(const float (&val)[EPL], int lane, float &myv,
                                                   int &myi, float &m) {
  unsigned int key[EPL];
#pragma unroll
  for (int s = 0; s < EPL; s++) key[s] = lane + 32 * s < MOERT_E ? order_key(val[s]) : 0u;
  unsigned int taken = 0;
  myv = moert_bits_to_float(0xff800000u);
  myi = MOERT_INT_MAX;
  m = myv;
#pragma unroll 1
  for (int j = 0; j < K; j++) {
    unsigned int bk = 0;
    int bi = MOERT_INT_MAX;
#pragma unroll
    for (int s = 0; s < EPL; s++) /* index ascending within the lane: the first of equals */
      if (!((taken >> s) & 1u) && lane + 32 * s < MOERT_E && (key[s] > bk || bi == MOERT_INT_MAX)) {
        bk = key[s];
        bi = lane + 32 * s;
      }
    unsigned int wk;
    int wi;
    asm volatile("redux.sync.max.u32 %0, %1, 0xffffffff;\n" : "=r"(wk) : "r"(bk));
    asm volatile("redux.sync.min.s32 %0, %1, 0xffffffff;\n"
                 : "=r"(wi)
                 : "r"(bk == wk ? bi : MOERT_INT_MAX));
    if ((wi & 31) == lane) taken |= 1u << (wi >> 5);
    const float wv = key_value(wk);
    if (j == 0) m = wv;
    if (lane == j) {
      myv = wv;
      myi = wi;
    }
  }
}
#else
static __device__ __forceinline__ void select_topk(const float (&val)[EPL], int lane, float &myv,
                                                   int &myi, float &m) {
  const float ninf = moert_bits_to_float(0xff800000u);
  unsigned int taken = 0;
  myv = ninf;
  myi = MOERT_INT_MAX;
  m = ninf;
#pragma unroll 1
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
    if (j == 0) m = bv;
    if (lane == j) {
      myv = bv;
      myi = bi;
    }
  }
}
#endif

static __device__ __forceinline__ float load_logit(const void *row, int dtype, int e) {
  if (dtype == 1) return ((const float *)row)[e];
  unsigned short h = ((const unsigned short *)row)[e];
  return dtype == 2 ? moert_bf16_f32(h) : moert_f16_f32(h);
}

/* Routes token t with the calling warp; s_ids (optional) gets a copy of the ids.  The lowest
 * token with a NaN logit goes to *nan_token (atomicMin; global or shared memory).  After the
 * top-k, lane j works on the j-th pair: one copy of the exp and the division instead of K
 * (see select_topk), with the same operations in the same order as the host's loops, the
 * sums over the k pairs taken in pair order by shuffles. */
static __device__ __forceinline__ void route_token(const void *logits, int dtype,
                                                   long long stride, int t, const float *bias,
                                                   float scale, int *ids, float *weights,
                                                   int *nan_token, int *s_ids) {
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
  if (__any_sync(MOERT_FULL_MASK, nan) && lane == 0) atomicMin(nan_token, t);

  float myv, m, w;
  int myi;
#if MOERT_ROUTER == 1
  select_topk(val, lane, myv, myi, m);
  if (m == pinf) { /* the +inf logits share all the weight */
#if MOERT_RENORM
    const int count = __popc(__ballot_sync(MOERT_FULL_MASK, lane < K && myv == pinf));
#else
    int count = 0;
#pragma unroll
    for (int s = 0; s < EPL; s++)
      count += __popc(__ballot_sync(MOERT_FULL_MASK, lane + 32 * s < MOERT_E && val[s] == pinf));
#endif
    w = myv == pinf ? MOERT_FDIV(1.0f, (float)count) : 0.0f;
  } else if (m == ninf) { /* every logit -inf: uniform */
    w = MOERT_FDIV(1.0f, (float)(MOERT_RENORM ? K : MOERT_E));
  } else {
    float sum = 0.0f;
    w = moert_expf(MOERT_FADD(myv, -m));
#if MOERT_RENORM
#pragma unroll 1
    for (int j = 0; j < K; j++) sum = MOERT_FADD(sum, __shfl_sync(MOERT_FULL_MASK, w, j));
#else
#pragma unroll
    for (int s = 0; s < EPL; s++)
      if (lane + 32 * s < MOERT_E) sum = MOERT_FADD(sum, moert_expf(MOERT_FADD(val[s], -m)));
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) sum = MOERT_FADD(sum, __shfl_xor_sync(MOERT_FULL_MASK, sum, o));
#endif
    w = MOERT_FDIV(w, sum);
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
  select_topk(val, lane, myv, myi, m);
  (void)myv;
  (void)m;
  /* pair j's weight is the score of expert myi of lane j, held by lane (myi & 31) */
  float sum = 0.0f;
  w = 0.0f;
#pragma unroll 1
  for (int j = 0; j < K; j++) {
    const int ij = __shfl_sync(MOERT_FULL_MASK, myi, j);
    float mine = 0.0f;
#pragma unroll
    for (int s = 0; s < EPL; s++)
      if (s == (ij >> 5)) mine = score[s];
    const float wj = __shfl_sync(MOERT_FULL_MASK, mine, ij & 31);
    if (lane == j) w = wj;
    sum = MOERT_FADD(sum, wj);
  }
#if MOERT_RENORM
  w = MOERT_FDIV(w, MOERT_FADD(sum, 1e-20f));
#endif
#endif
  if (scale != 1.0f) w = MOERT_FMUL(w, scale);
  if (lane < K) {
    ids[(size_t)t * K + lane] = myi;
    weights[(size_t)t * K + lane] = w;
    if (s_ids) s_ids[t * K + lane] = myi;
  }
}

extern "C" __global__ void __launch_bounds__(256)
moert_route(const void *logits, int dtype, long long stride, int T, const float *bias,
            float scale, int *ids, float *weights, int *meta) {
  const int t = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  moert_pdl_trigger(); /* the plan may launch now: it waits for the ids */
  if (t >= T) return;  /* whole warps leave together */
  route_token(logits, dtype, stride, t, bias, scale, ids, weights, &meta[1], nullptr);
}

/* Route and plan in one CTA, for a decoding step (T k <= RP_MAX_PAIRS, E <= RP_MAX_E): one
 * launch instead of two, and no E-block plan.  The warps route the tokens (the ids go
 * to shared memory too); then the stable counting sort of plan.cu, in shared memory: a
 * histogram, a prefix over the experts (warp 0), and each pair's rank among the earlier
 * pairs of its expert from __match_any_sync in its warp plus the counts of the earlier
 * warps.  The outputs are those of moert_route + moert_plan, bit for bit.
 *
 * The host launches 32 min(T, 32) threads (a warp a token, and at least a thread a pair:
 * K <= 32), so a step of one token runs one warp.  It is launched behind the caller's
 * kernel (programmatic dependent launch) and waits for it before it reads or writes global
 * memory; it resets the NaN token (meta[1]) itself, so no memset node precedes it.
 *
 * tile_bm > 0: it also writes the prefill GEMMs' row tiles of tile_bm rows (tiles[0] their
 * count, tile i at tiles + 4 + 4 i), what moert_prefill_tiles would write from these
 * offsets: the forward then needs no launch of it. */
#define RP_MAX_THREADS 1024
#define RP_MAX_PAIRS 1024
#define RP_MAX_E 256
#if MOERT_E <= RP_MAX_E
/* ceil(x / d) for x >= 0, d > 0; lg = log2(d) where d is a power of two (the usual block and
 * tile heights: a shift instead of an integer division), else -1 */
static __device__ __forceinline__ int pow2_log(int d) { return d > 0 && !(d & (d - 1)) ? __ffs(d) - 1 : -1; }
static __device__ __forceinline__ int div_up(int x, int d, int lg) {
  return lg >= 0 ? (x + d - 1) >> lg : (x + d - 1) / d;
}

extern "C" __global__ void __launch_bounds__(RP_MAX_THREADS)
moert_route_plan(const void *logits, int dtype, long long stride, int T, const float *bias,
                 float scale, int *ids, float *weights, int *meta, int block_rows, int *offsets,
                 int *packed_token, int *pair_of, int *sorted_pair, int *padded_offsets,
                 int *block_expert, int tile_bm, int *tiles) {
  __shared__ int s_ids[RP_MAX_PAIRS];
  __shared__ int s_hist[MOERT_E], s_start[MOERT_E], s_pstart[MOERT_E], s_tstart[MOERT_E];
  __shared__ int s_wcount[RP_MAX_THREADS / 32][MOERT_E];
  __shared__ int s_nan;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, n = T * K;
  const int nthreads = blockDim.x, nwarps = nthreads >> 5;
  moert_pdl_trigger(); /* the expert kernels may launch now; they wait for the plan */
#pragma unroll 1
  for (int i = tid; i < MOERT_E; i += nthreads) s_hist[i] = 0;
  if (nwarps > 1) /* one warp needs no counts of earlier warps */
#pragma unroll 1
    for (int i = tid; i < nwarps * MOERT_E; i += nthreads) (&s_wcount[0][0])[i] = 0;
  if (tid == 0) s_nan = MOERT_INT_MAX;
  __syncthreads();
  moert_pdl_wait(); /* the kernel before: it may write the logits, or read our outputs */
  for (int t = warp; t < T; t += nwarps)
    route_token(logits, dtype, stride, t, bias, scale, ids, weights, &s_nan, s_ids);
  __syncthreads();
  if (tid == 0) meta[1] = s_nan;
  const int e = tid < n ? s_ids[tid] : -1;
  /* pairs of the same expert in this warp, and this pair's rank among them */
  const unsigned int peers = __match_any_sync(MOERT_FULL_MASK, e);
  const int rank = __popc(peers & ((1u << lane) - 1u));
  if (e >= 0) {
    if (rank == 0 && nwarps > 1) s_wcount[warp][e] = __popc(peers);
    atomicAdd(&s_hist[e], 1);
  }
  __syncthreads();
  if (warp == 0) { /* exclusive prefix over the experts, EPL consecutive experts a lane */
    const int tbm = tile_bm > 0 ? tile_bm : 1;
    const int lb = pow2_log(block_rows), lt = pow2_log(tbm);
    int c = 0, pc = 0, tc = 0;
#pragma unroll 1
    for (int i = lane * EPL; i < (lane + 1) * EPL && i < MOERT_E; i++) {
      c += s_hist[i];
      pc += div_up(s_hist[i], block_rows, lb) * block_rows;
      tc += div_up(s_hist[i], tbm, lt);
    }
    int ic = c, ipc = pc, itc = tc;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const int a = __shfl_up_sync(MOERT_FULL_MASK, ic, o), b = __shfl_up_sync(MOERT_FULL_MASK, ipc, o);
      const int d = __shfl_up_sync(MOERT_FULL_MASK, itc, o);
      if (lane >= o) ic += a, ipc += b, itc += d;
    }
    int s0 = ic - c, p0 = ipc - pc, t0 = itc - tc;
#pragma unroll 1
    for (int i = lane * EPL; i < (lane + 1) * EPL && i < MOERT_E; i++) {
      s_start[i] = s0;
      s_pstart[i] = p0;
      s_tstart[i] = t0;
      offsets[i] = s0;
      padded_offsets[i] = p0;
      s0 += s_hist[i];
      p0 += div_up(s_hist[i], block_rows, lb) * block_rows;
      t0 += div_up(s_hist[i], tbm, lt);
    }
    if (lane == 31) {
      offsets[MOERT_E] = s0;
      padded_offsets[MOERT_E] = p0;
      meta[0] = p0 / block_rows; /* number of blocks */
      if (tile_bm > 0) tiles[0] = t0;
    }
  }
  __syncthreads();
  if (e >= 0) {
    int before = 0;
#pragma unroll 1
    for (int w = 0; w < warp; w++) before += s_wcount[w][e];
    const int pos = s_start[e] + before + rank;
    pair_of[tid] = pos;
    sorted_pair[pos] = tid;
    packed_token[pos] = tid / K;
  }
  const int lb = pow2_log(block_rows), lt = pow2_log(tile_bm);
#pragma unroll 1
  for (int i = tid; i < MOERT_E; i += nthreads) {
    const int nb = div_up(s_hist[i], block_rows, lb), b0 = div_up(s_pstart[i], block_rows, lb);
#pragma unroll 1
    for (int b = 0; b < nb; b++) block_expert[b0 + b] = i;
    if (tile_bm > 0) { /* the prefill row tiles of expert i, as moert_prefill_tiles */
      const int s = s_start[i], end = s + s_hist[i], nt = div_up(s_hist[i], tile_bm, lt);
      int4 *t = (int4 *)(tiles + 4) + s_tstart[i];
#pragma unroll 1
      for (int j = 0; j < nt; j++) t[j] = make_int4(i, s + j * tile_bm, min(s + (j + 1) * tile_bm, end), 0);
    }
  }
}
#endif
