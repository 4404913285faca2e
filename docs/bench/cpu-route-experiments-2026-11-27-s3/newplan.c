#include <immintrin.h>
/* exclusive scan helper: SSE2 in-register prefix of 4 */
static void new_plan_build(const int32_t *ids, uint32_t num_tokens, uint32_t top_k,
                      uint32_t num_experts, uint32_t block_rows, moert_plan *plan) {
  const uint32_t n = num_tokens * top_k, E = num_experts;
  int32_t *off = plan->offsets;
  plan->num_tokens = num_tokens; plan->num_experts = E; plan->top_k = top_k; plan->block_rows = block_rows;
  int32_t cnt[MOERT_MAX_EXPERTS + 4];
#if H2
  int32_t c2[MOERT_MAX_EXPERTS + 4];
  memset(cnt, 0, E * sizeof *cnt);
  memset(c2, 0, E * sizeof *c2);
  uint32_t p = 0;
  for (; p + 2 <= n; p += 2) { cnt[ids[p]]++; c2[ids[p + 1]]++; }
  if (p < n) cnt[ids[p]]++;
  for (uint32_t e = 0; e < E; e++) cnt[e] += c2[e];
#else
  memset(cnt, 0, E * sizeof *cnt);
  for (uint32_t p = 0; p < n; p++) cnt[ids[p]]++;
#endif
  /* starts, cursors, padded offsets and block experts in one pass over the experts */
  int32_t *cursor = plan->padded_offsets; /* not: padded written below; use local */
  int32_t cur[MOERT_MAX_EXPERTS];
  (void)cursor;
  uint32_t shift = 0;
  const bool pow2 = (block_rows & (block_rows - 1)) == 0;
  while (pow2 && (1u << shift) < block_rows) shift++;
  int32_t *pad = plan->padded_offsets;
  int32_t acc = 0; uint32_t blocks = 0;
  pad[0] = 0;
  for (uint32_t e = 0; e < E; e++) {
    const uint32_t rows = (uint32_t)cnt[e];
    off[e] = acc; cur[e] = acc; acc += (int32_t)rows;
    const uint32_t nb = pow2 ? (rows + block_rows - 1) >> shift : (rows + block_rows - 1) / block_rows;
    plan->block_expert[blocks] = (int32_t)e;
    for (uint32_t b = 1; b < nb; b++) plan->block_expert[blocks + b] = (int32_t)e;
    blocks += nb;
    pad[e + 1] = (int32_t)(blocks * block_rows);
  }
  off[E] = acc;
  plan->num_blocks = blocks;
  for (uint32_t t = 0, p = 0; t < num_tokens; t++)
    for (uint32_t j = 0; j < top_k; j++, p++) {
      const int32_t pos = cur[ids[p]]++;
      plan->pair_of[p] = pos;
      plan->sorted_pair[pos] = (int32_t)p;
      plan->packed_token[pos] = (int32_t)t;
    }
}
