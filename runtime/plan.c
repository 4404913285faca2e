/* plan.c — the bucket plan: a stable counting sort of the T*k (token, slot) pairs by
 * expert, so each expert's rows are contiguous and in token order, plus a padded variant
 * in which each expert's rows are rounded up to a block of block_rows, one expert a block
 * (what a GPU kernel launches over).  Allocation-free: every array is preallocated. */
#include "internal.h"

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
  /* counts in off[e+1], then an exclusive scan turns them into starts */
  for (uint32_t e = 0; e <= E; e++) off[e] = 0;
  for (uint32_t p = 0; p < n; p++) off[ids[p] + 1]++;
  for (uint32_t e = 0; e < E; e++) off[e + 1] += off[e];
  /* scatter in pair order (= token order): stable.  pair_of doubles as the cursor source:
   * the position of a pair is its expert's start plus the pairs of that expert before it. */
  int32_t *cursor = plan->padded_offsets; /* borrowed as E cursors, rebuilt below */
  for (uint32_t e = 0; e < E; e++) cursor[e] = off[e];
  for (uint32_t t = 0, p = 0; t < num_tokens; t++)
    for (uint32_t j = 0; j < top_k; j++, p++) {
      int32_t pos = cursor[ids[p]]++;
      plan->pair_of[p] = pos;
      plan->sorted_pair[pos] = (int32_t)p;
      plan->packed_token[pos] = (int32_t)t;
    }
  /* padded variant.  One unconditional store per expert (overwritten by the next expert
   * when this one has no rows) keeps the common case of 0 or 1 blocks free of branches;
   * block_expert has a spare slot for it. */
  int32_t *pad = plan->padded_offsets;
  uint32_t blocks = 0, shift = 0;
  const bool pow2 = (block_rows & (block_rows - 1)) == 0; /* a shift, not 128 divisions */
  while (pow2 && (1u << shift) < block_rows) shift++;
  pad[0] = 0;
  for (uint32_t e = 0; e < E; e++) {
    const uint32_t rows = (uint32_t)(off[e + 1] - off[e]);
    const uint32_t nb = pow2 ? (rows + block_rows - 1) >> shift : (rows + block_rows - 1) / block_rows;
    plan->block_expert[blocks] = (int32_t)e;
    for (uint32_t b = 1; b < nb; b++) plan->block_expert[blocks + b] = (int32_t)e;
    blocks += nb;
    pad[e + 1] = (int32_t)(blocks * block_rows);
  }
  plan->num_blocks = blocks;
}
