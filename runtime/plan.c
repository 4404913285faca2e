/* plan.c — the bucket plan: a stable counting sort of the T*k (token, slot) pairs by
 * expert, so each expert's rows are contiguous and in token order, plus a padded variant
 * in which each expert's rows are rounded up to a block of block_rows, one expert a block
 * (what a GPU kernel launches over).  Allocation-free: every array is preallocated. */
#include <string.h>

#include "internal.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define MOERT_PLAN_AVX512 1
#include <immintrin.h>
#define PLAN_TARGET "avx2,avx512f,avx512vl,avx512bw,avx512dq"

/* The inclusive prefix sum of 16 lanes. */
__attribute__((target(PLAN_TARGET))) static inline __m512i prefix16(__m512i x) {
  const __m512i z = _mm512_setzero_si512();
  x = _mm512_add_epi32(x, _mm512_alignr_epi32(x, z, 15));
  x = _mm512_add_epi32(x, _mm512_alignr_epi32(x, z, 14));
  x = _mm512_add_epi32(x, _mm512_alignr_epi32(x, z, 12));
  return _mm512_add_epi32(x, _mm512_alignr_epi32(x, z, 8));
}

/* The expert pass of moert_plan_build, 16 experts a step, for blocks of 2^shift rows:
 * the same starts, padded offsets and block experts.  A step in which an expert has more
 * than one block is left to the scalar loop, from that step on.  Returns the experts done;
 * *acc and *blocks carry on. */
__attribute__((target(PLAN_TARGET))) static uint32_t
experts_avx512(const int32_t *cnt, uint32_t E, uint32_t shift, int32_t *off, int32_t *pad,
               int32_t *block_expert, int32_t *acc, uint32_t *blocks) {
  const __m512i round = _mm512_set1_epi32((int)((1u << shift) - 1));
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m128i sh = _mm_cvtsi32_si128((int)shift);
  uint32_t e = 0;
  for (; e + 16 <= E; e += 16) {
    const __m512i c = _mm512_loadu_si512((const void *)(cnt + e));
    const __m512i nb = _mm512_srl_epi32(_mm512_add_epi32(c, round), sh);
    const __mmask16 one = _mm512_cmpeq_epi32_mask(nb, _mm512_set1_epi32(1));
    if (_mm512_cmpgt_epu32_mask(nb, _mm512_set1_epi32(1))) break;
    const __m512i ci = prefix16(c), bi = prefix16(nb);
    _mm512_storeu_si512((void *)(off + e),
                        _mm512_add_epi32(_mm512_sub_epi32(ci, c), _mm512_set1_epi32(*acc)));
    _mm512_storeu_si512((void *)(pad + e + 1),
                        _mm512_sll_epi32(_mm512_add_epi32(bi, _mm512_set1_epi32((int)*blocks)), sh));
    const uint32_t nbk = (uint32_t)__builtin_popcount((unsigned)one);
    _mm512_mask_storeu_epi32(block_expert + *blocks, (__mmask16)((1u << nbk) - 1u),
                             _mm512_maskz_compress_epi32(one, _mm512_add_epi32(lane, _mm512_set1_epi32((int)e))));
    *acc += _mm512_cvtsi512_si32(_mm512_permutexvar_epi32(_mm512_set1_epi32(15), ci));
    *blocks += nbk;
  }
  return e;
}

/* token[i] = pair[i] >> shift for i < n. */
__attribute__((target(PLAN_TARGET))) static void tokens_avx512(const int32_t *pair, int32_t *token,
                                                               uint32_t n, uint32_t shift) {
  const __m128i sh = _mm_cvtsi32_si128((int)shift);
  uint32_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_si512((void *)(token + i),
                        _mm512_srl_epi32(_mm512_loadu_si512((const void *)(pair + i)), sh));
  for (; i < n; i++) token[i] = pair[i] >> shift;
}

/* pair_of[p] += off[ids[p]] for p < n, 16 at a time; returns the pairs done. */
__attribute__((target(PLAN_TARGET))) static uint32_t
positions_avx512(const int32_t *ids, const int32_t *off, int32_t *pair_of, uint32_t n) {
  uint32_t p = 0;
  for (; p + 16 <= n; p += 16) {
    const __m512i i = _mm512_loadu_si512((const void *)(ids + p));
    const __m512i r = _mm512_loadu_si512((const void *)(pair_of + p));
    _mm512_storeu_si512((void *)(pair_of + p),
                        _mm512_add_epi32(r, _mm512_i32gather_epi32(i, (const void *)off, 4)));
  }
  return p;
}
#endif

uint64_t moert_plan_max_blocks(uint32_t max_tokens, uint32_t top_k, uint32_t num_experts,
                               uint32_t block_rows) {
  /* sum over e of ceil(n_e / b) <= (sum n_e) / b + (number of non-empty experts) */
  uint64_t pairs = (uint64_t)max_tokens * top_k;
  uint64_t nonempty = pairs < num_experts ? pairs : num_experts;
  return pairs / block_rows + nonempty + 1; /* + the spare slot of moert_plan_build */
}

void moert_plan_build(const int32_t *ids, uint32_t num_tokens, uint32_t top_k,
                      uint32_t num_experts, uint32_t block_rows, moert_plan *plan) {
  const uint32_t n = num_tokens * top_k, E = num_experts;
  int32_t *off = plan->offsets;
  plan->num_tokens = num_tokens;
  plan->num_experts = E;
  plan->top_k = top_k;
  plan->block_rows = block_rows;
  /* counts, and each pair's rank among its expert's pairs (kept in pair_of for now) */
  int32_t cnt[MOERT_MAX_EXPERTS];
  int32_t *rank = plan->pair_of;
  memset(cnt, 0, E * sizeof *cnt);
  for (uint32_t p = 0; p < n; p++) {
    const int32_t e = ids[p], r = cnt[e];
    rank[p] = r;
    cnt[e] = r + 1;
  }
  /* one pass over the experts: starts, and the padded variant.  One unconditional
   * block_expert store per expert (overwritten by the next expert when this one has no
   * rows) keeps the common case of 0 or 1 blocks free of branches; block_expert has a
   * spare slot for it. */
  int32_t *pad = plan->padded_offsets;
  uint32_t blocks = 0, shift = 0;
  const bool pow2 = (block_rows & (block_rows - 1)) == 0; /* a shift, not 128 divisions */
  while (pow2 && (1u << shift) < block_rows) shift++;
  int32_t acc = 0;
  uint32_t e0 = 0, p0 = 0;
  pad[0] = 0;
#ifdef MOERT_PLAN_AVX512
  const bool wide = moert_cpu_isa() >= 2;
  if (pow2 && wide)
    e0 = experts_avx512(cnt, E, shift, off, pad, plan->block_expert, &acc, &blocks);
#endif
  for (uint32_t e = e0; e < E; e++) {
    const uint32_t rows = (uint32_t)cnt[e];
    off[e] = acc;
    acc += (int32_t)rows;
    const uint32_t nb = pow2 ? (rows + block_rows - 1) >> shift : (rows + block_rows - 1) / block_rows;
    plan->block_expert[blocks] = (int32_t)e;
    for (uint32_t b = 1; b < nb; b++) plan->block_expert[blocks + b] = (int32_t)e;
    blocks += nb;
    pad[e + 1] = (int32_t)(blocks * block_rows);
  }
  off[E] = acc;
  plan->num_blocks = blocks;
  /* each pair's position: its expert's start plus its rank.  Pairs come in token order, so
   * the sort is stable. */
#ifdef MOERT_PLAN_AVX512
  if (wide) p0 = positions_avx512(ids, off, rank, n);
#endif
  for (uint32_t p = p0; p < n; p++) rank[p] += off[ids[p]];
#ifdef MOERT_PLAN_AVX512
  /* top_k a power of two: packed_token = sorted_pair >> log2(top_k), 16 at a time */
  if (wide && (top_k & (top_k - 1)) == 0) {
    for (uint32_t p = 0; p < n; p++) plan->sorted_pair[plan->pair_of[p]] = (int32_t)p;
    tokens_avx512(plan->sorted_pair, plan->packed_token, n, (uint32_t)__builtin_ctz(top_k));
    return;
  }
#endif
  for (uint32_t t = 0, p = 0; t < num_tokens; t++)
    for (uint32_t j = 0; j < top_k; j++, p++) {
      const int32_t pos = plan->pair_of[p];
      plan->sorted_pair[pos] = (int32_t)p;
      plan->packed_token[pos] = (int32_t)t;
    }
}
