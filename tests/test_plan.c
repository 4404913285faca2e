/* test_plan.c — the bucket plan read through moert_scratch_plan(): a stable counting sort
 * of the T*k (token, slot) pairs by expert, and its padded variant.
 *
 * Invariants checked for every plan (check_plan):
 *  - num_tokens/num_experts/top_k as routed; offsets[0] = 0, monotone, offsets[E] = T*k;
 *  - offsets[e+1] - offsets[e] = number of pairs routed to e;
 *  - pair_of is a permutation of 0..T*k-1; the row of pair (t, j) lies in the range of
 *    expert ids[t, j] and packed_token of that row is t;
 *  - stable: inside an expert's range the tokens increase;
 *  - padded: padded_offsets[0] = 0, each expert's padded count is its count rounded up to a
 *    multiple of block_rows (so >= count, a multiple, and no whole empty block);
 *    num_blocks = padded_offsets[E] / block_rows; block_expert names the owner of each
 *    block, in expert order.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moert_test.h"

static moert_layer_desc mkdesc(uint32_t E, uint32_t k, uint32_t block_rows) {
  moert_layer_desc d;
  MT_OK(moert_layer_desc_init(&d));
  d.num_experts = E;
  d.top_k = k;
  d.hidden = 8;
  d.intermediate = 8;
  d.act_dtype = MOERT_DTYPE_F32;
  d.weight_dtype = MOERT_DTYPE_F32;
  d.plan_block_rows = block_rows;
  return d;
}

static void check_plan(moert_scratch *s, uint32_t E, uint32_t k, uint32_t T, const int32_t *ids,
                       uint32_t want_block_rows, const char *what) {
  moert_plan_view p;
  memset(&p, 0, sizeof p);
  p.struct_size = sizeof p;
  MT_OK(moert_scratch_plan(s, &p));
  ck_assert_msg(p.num_tokens == T && p.num_experts == E && p.top_k == k,
                "%s: plan T %u E %u k %u, want %u %u %u", what, p.num_tokens, p.num_experts,
                p.top_k, T, E, k);
  ck_assert_ptr_nonnull(p.offsets);
  ck_assert_ptr_nonnull(p.padded_offsets);
  const uint32_t n = T * k;
  ck_assert_msg(p.offsets[0] == 0, "%s: offsets[0] = %d", what, p.offsets[0]);
  ck_assert_msg(p.offsets[E] == (int32_t)n, "%s: offsets[E] = %d, want T*k = %u", what,
                p.offsets[E], n);
  uint32_t *count = calloc(E, sizeof *count);
  unsigned char *seen = calloc(n + 1, 1);
  for (uint32_t i = 0; i < n; i++) count[ids[i]]++;
  for (uint32_t e = 0; e < E; e++) {
    ck_assert_msg(p.offsets[e + 1] >= p.offsets[e], "%s: offsets not monotone at %u: %d, %d",
                  what, e, p.offsets[e], p.offsets[e + 1]);
    ck_assert_msg((uint32_t)(p.offsets[e + 1] - p.offsets[e]) == count[e],
                  "%s: expert %u has %d rows, %u pairs routed to it", what, e,
                  p.offsets[e + 1] - p.offsets[e], count[e]);
  }
  for (uint32_t t = 0; t < T; t++)
    for (uint32_t j = 0; j < k; j++) {
      uint32_t pair = t * k + j;
      int32_t row = p.pair_of[pair], e = ids[pair];
      ck_assert_msg(row >= 0 && (uint32_t)row < n, "%s: pair_of[%u] = %d out of 0..%u", what,
                    pair, row, n - 1);
      ck_assert_msg(!seen[row], "%s: row %d is the row of two pairs (pair_of not a permutation)",
                    what, row);
      seen[row] = 1;
      ck_assert_msg(row >= p.offsets[e] && row < p.offsets[e + 1],
                    "%s: pair (%u, %u) of expert %d at row %d, outside %d..%d", what, t, j, e,
                    row, p.offsets[e], p.offsets[e + 1] - 1);
      ck_assert_msg(p.packed_token[row] == (int32_t)t,
                    "%s: packed_token[%d] = %d, but it is the row of token %u", what, row,
                    p.packed_token[row], t);
    }
  for (uint32_t e = 0; e < E; e++)
    for (int32_t r = p.offsets[e] + 1; r < p.offsets[e + 1]; r++)
      ck_assert_msg(p.packed_token[r - 1] < p.packed_token[r],
                    "%s: expert %u not in token order (stable): rows %d, %d hold tokens %d, %d",
                    what, e, r - 1, r, p.packed_token[r - 1], p.packed_token[r]);
  /* padded */
  const uint32_t br = p.block_rows;
  ck_assert_msg(br >= 1, "%s: block_rows %u", what, br);
  if (want_block_rows)
    ck_assert_msg(br == want_block_rows, "%s: block_rows %u, asked for %u", what, br,
                  want_block_rows);
  ck_assert_msg(p.padded_offsets[0] == 0, "%s: padded_offsets[0] = %d", what, p.padded_offsets[0]);
  uint32_t blocks = 0;
  for (uint32_t e = 0; e < E; e++) {
    int32_t pc = p.padded_offsets[e + 1] - p.padded_offsets[e];
    uint32_t want = (count[e] + br - 1) / br * br;
    ck_assert_msg(pc >= 0 && (uint32_t)pc == want,
                  "%s: expert %u: padded rows %d, count %u, block_rows %u (want %u)", what, e, pc,
                  count[e], br, want);
    ck_assert_msg(p.padded_offsets[e] % (int32_t)br == 0,
                  "%s: padded_offsets[%u] = %d not a multiple of %u", what, e, p.padded_offsets[e],
                  br);
    for (uint32_t b = 0; b < want / br; b++) {
      ck_assert_msg(blocks + b < p.num_blocks, "%s: block %u past num_blocks %u", what,
                    blocks + b, p.num_blocks);
      ck_assert_msg(p.block_expert[blocks + b] == (int32_t)e,
                    "%s: block %u belongs to expert %d, want %u", what, blocks + b,
                    p.block_expert[blocks + b], e);
    }
    blocks += want / br;
  }
  ck_assert_msg(p.num_blocks == blocks, "%s: num_blocks %u, want %u", what, p.num_blocks, blocks);
  ck_assert_msg((uint32_t)p.padded_offsets[E] == blocks * br, "%s: padded_offsets[E] %d, want %u",
                what, p.padded_offsets[E], blocks * br);
  free(count);
  free(seen);
}

/* ids [T, k] with distinct experts per row, drawn by pick(). */
typedef uint32_t (*picker)(mt_rng *r, uint32_t E, uint32_t t, uint32_t j);
static uint32_t pick_uniform(mt_rng *r, uint32_t E, uint32_t t, uint32_t j) {
  (void)t;
  (void)j;
  return mt_below(r, E);
}
static uint32_t pick_skewed(mt_rng *r, uint32_t E, uint32_t t, uint32_t j) {
  (void)t;
  (void)j;
  /* most pairs to a few experts: squared uniform */
  double u = mt_uniform(r, 0.0, 1.0);
  return (uint32_t)(u * u * u * E) % E;
}
static uint32_t pick_first(mt_rng *r, uint32_t E, uint32_t t, uint32_t j) {
  (void)r;
  (void)t;
  return j % E; /* every token to experts 0..k-1 */
}
static uint32_t pick_last(mt_rng *r, uint32_t E, uint32_t t, uint32_t j) {
  (void)r;
  (void)t;
  return E - 1 - j % E; /* every token to the last experts */
}

static void make_ids(mt_rng *r, picker pk, uint32_t E, uint32_t k, uint32_t T, int32_t *ids,
                     float *w) {
  for (uint32_t t = 0; t < T; t++)
    for (uint32_t j = 0; j < k; j++) {
      uint32_t e = pk(r, E, t, j);
      for (;;) { /* distinct within the row */
        int dup = 0;
        for (uint32_t i = 0; i < j; i++) dup |= ids[t * k + i] == (int32_t)e;
        if (!dup) break;
        e = (e + 1) % E;
      }
      ids[t * k + j] = (int32_t)e;
      w[t * k + j] = (float)mt_uniform(r, 0.0, 1.0);
    }
}

static void set_routing_case(mt_rng *rng, uint32_t E, uint32_t k, uint32_t T, uint32_t max_T,
                             uint32_t br, picker pk, const char *name) {
  moert_runtime *rt = mt_cpu_runtime(1);
  moert_layer_desc d = mkdesc(E, k, br);
  moert_scratch *s = NULL;
  MT_OK(moert_scratch_create(rt, &d, max_T, &s));
  int32_t *ids = mt_alloc(sizeof(int32_t) * ((size_t)T * k + 1));
  float *w = mt_alloc(sizeof(float) * ((size_t)T * k + 1));
  make_ids(rng, pk, E, k, T, ids, w);
  MT_OK(moert_set_routing(s, T, ids, w, NULL));
  char what[128];
  snprintf(what, sizeof what, "%s (E %u k %u T %u block_rows %u)", name, E, k, T, br);
  check_plan(s, E, k, T, ids, br, what);
  /* again with fewer tokens on the same scratch: nothing stale shows */
  if (T > 1) {
    uint32_t T2 = 1 + mt_below(rng, T - 1);
    make_ids(rng, pk, E, k, T2, ids, w);
    MT_OK(moert_set_routing(s, T2, ids, w, NULL));
    snprintf(what, sizeof what, "%s, second routing (E %u k %u T %u)", name, E, k, T2);
    check_plan(s, E, k, T2, ids, br, what);
  }
  mt_free(ids);
  mt_free(w);
  moert_scratch_destroy(s);
  moert_runtime_destroy(rt);
}

START_TEST(uniform) {
  MT_RNG(rng);
  static const uint32_t brs[4] = {0, 1, 7, 64};
  const uint32_t br = brs[_i];
  set_routing_case(&rng, 128, 8, 32, 32, br, pick_uniform, "uniform, Qwen3 decode");
  set_routing_case(&rng, 128, 8, 517, 600, br, pick_uniform, "uniform, prefill");
  set_routing_case(&rng, 8, 2, 100, 100, br, pick_uniform, "uniform, Mixtral");
  set_routing_case(&rng, 512, 16, 64, 64, br, pick_uniform, "uniform, E 512 k 16");
  set_routing_case(&rng, 5, 5, 9, 10, br, pick_uniform, "k = E");
  set_routing_case(&rng, 3, 1, 1, 1, br, pick_uniform, "one token");
}
END_TEST

START_TEST(skewed) {
  MT_RNG(rng);
  static const uint32_t brs[4] = {0, 1, 16, 128};
  const uint32_t br = brs[_i];
  set_routing_case(&rng, 64, 4, 300, 300, br, pick_skewed, "skewed");
  set_routing_case(&rng, 64, 1, 200, 200, br, pick_first, "every token to expert 0");
  set_routing_case(&rng, 64, 6, 200, 256, br, pick_first, "every token to experts 0..5");
  set_routing_case(&rng, 64, 1, 77, 80, br, pick_last, "every token to the last expert");
  set_routing_case(&rng, 256, 8, 99, 99, br, pick_last, "every token to the last 8 experts");
}
END_TEST

START_TEST(zero_tokens) {
  MT_RNG(rng);
  set_routing_case(&rng, 32, 4, 0, 16, 0, pick_uniform, "T = 0");
  set_routing_case(&rng, 32, 4, 0, 16, 8, pick_uniform, "T = 0, block_rows 8");
}
END_TEST

/* The plan that moert_route builds is the plan of its own routing view. */
START_TEST(after_route) {
  MT_RNG(rng);
  const uint32_t E = 64, k = 6, T = 150;
  moert_runtime *rt = mt_cpu_runtime(1);
  moert_layer_desc d = mkdesc(E, k, _i == 0 ? 0 : 32);
  d.router = _i == 2 ? MOERT_ROUTER_SIGMOID_GROUP_TOPK : MOERT_ROUTER_SOFTMAX_TOPK;
  d.n_group = _i == 2 ? 8 : 0;
  d.topk_group = _i == 2 ? 4 : 0;
  moert_scratch *s = NULL;
  MT_OK(moert_scratch_create(rt, &d, T, &s));
  float *logits = mt_alloc(sizeof(float) * T * E);
  /* skew: a per-expert offset so a few experts take most tokens */
  for (uint32_t t = 0; t < T; t++)
    for (uint32_t e = 0; e < E; e++) logits[t * E + e] = (float)(mt_normal(&rng) + (e % 7 == 0 ? 3.0 : 0.0));
  moert_route_args a;
  memset(&a, 0, sizeof a);
  a.struct_size = sizeof a;
  a.num_tokens = T;
  a.logits_dtype = MOERT_DTYPE_F32;
  a.memory = MOERT_MEMORY_HOST;
  a.logits = logits;
  MT_OK(moert_route(s, &a, NULL));
  moert_routing_view v;
  memset(&v, 0, sizeof v);
  v.struct_size = sizeof v;
  MT_OK(moert_scratch_routing(s, &v));
  int32_t *ids = mt_alloc(sizeof(int32_t) * T * k);
  memcpy(ids, v.expert_ids, sizeof(int32_t) * T * k);
  check_plan(s, E, k, T, ids, _i == 0 ? 0 : 32, "after moert_route");
  mt_free(ids);
  mt_free(logits);
  moert_scratch_destroy(s);
  moert_runtime_destroy(rt);
}
END_TEST

START_TEST(not_routed) {
  moert_runtime *rt = mt_cpu_runtime(1);
  moert_layer_desc d = mkdesc(8, 2, 0);
  moert_scratch *s = NULL;
  MT_OK(moert_scratch_create(rt, &d, 4, &s));
  moert_plan_view p;
  mt_poison_bytes(&p, sizeof p);
  p.struct_size = sizeof p;
  moert_plan_view before = p;
  MT_ASSERT_STATUS(moert_scratch_plan(s, &p), MOERT_ERR_NOT_ROUTED);
  ck_assert_msg(memcmp(&before, &p, sizeof p) == 0, "a failed moert_scratch_plan wrote the view");
  moert_scratch_destroy(s);
  moert_runtime_destroy(rt);
}
END_TEST

int main(void) {
  Suite *su = suite_create("plan");
  TCase *tc = tcase_create("plan");
  tcase_set_timeout(tc, 300);
  tcase_add_loop_test(tc, uniform, 0, 4);
  tcase_add_loop_test(tc, skewed, 0, 4);
  tcase_add_test(tc, zero_tokens);
  tcase_add_loop_test(tc, after_route, 0, 3);
  tcase_add_test(tc, not_routed);
  suite_add_tcase(su, tc);
  return mt_run_suite(su);
}
