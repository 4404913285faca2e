/* fuzz_router.c — libFuzzer target for the router: random bytes become a layer desc
 * (E 1..512, k 1..16, softmax or sigmoid with groups, renormalised or not, a scaling
 * factor), a logits dtype (f32, bf16, f16), a row stride, T up to 64, a correction bias
 * and the logits themselves, with NaN, +-Inf, +-0, FLT_MAX, subnormals, exact ties and
 * raw bit patterns common.  moert_route must then:
 *  - fail with MOERT_ERR_NAN_LOGIT naming the first token that has a NaN, if any has;
 *  - otherwise succeed with k distinct ids in 0..E-1 per token, finite weights >= 0,
 *    summing to the scale when renormalised (softmax), the top-k by value with ties to
 *    the lower index (softmax), the same bits when run again, and a plan that is a
 *    stable counting sort of the ids (offsets, packed tokens, pair_of, padded blocks). */
#include "fuzz_common.h"

static moert_runtime *rt;

static void check_plan(moert_scratch *s, const moert_routing_view *v, uint32_t E) {
  moert_plan_view p = {.struct_size = sizeof p};
  FZ_CHECK(moert_scratch_plan(s, &p) == MOERT_OK, "plan view");
  const uint32_t T = v->num_tokens, k = v->top_k, n = T * k;
  FZ_CHECK(p.num_tokens == T && p.top_k == k && p.num_experts == E, "plan shape");
  FZ_CHECK(p.offsets[0] == 0 && (uint32_t)p.offsets[E] == n, "offsets ends %d %d", p.offsets[0],
           p.offsets[E]);
  for (uint32_t e = 0; e < E; e++) {
    FZ_CHECK(p.offsets[e] <= p.offsets[e + 1], "offsets not monotone at %u", e);
    for (int32_t r = p.offsets[e] + 1; r < p.offsets[e + 1]; r++)
      FZ_CHECK(p.packed_token[r - 1] <= p.packed_token[r], "expert %u rows out of token order", e);
  }
  for (uint32_t q = 0; q < n; q++) {
    const int32_t row = p.pair_of[q], e = v->expert_ids[q];
    FZ_CHECK(row >= p.offsets[e] && row < p.offsets[e + 1], "pair %u not in its expert's rows", q);
    FZ_CHECK((uint32_t)p.packed_token[row] == q / k, "pair %u: packed token %d", q,
             p.packed_token[row]);
  }
  uint32_t blocks = 0;
  FZ_CHECK(p.block_rows > 0 && p.padded_offsets[0] == 0, "padded start");
  for (uint32_t e = 0; e < E; e++) {
    const uint32_t rows = (uint32_t)(p.offsets[e + 1] - p.offsets[e]);
    const uint32_t nb = (rows + p.block_rows - 1) / p.block_rows;
    for (uint32_t b = 0; b < nb; b++)
      FZ_CHECK(p.block_expert[blocks + b] == (int32_t)e, "block %u of expert %u", blocks + b, e);
    blocks += nb;
    FZ_CHECK((uint32_t)p.padded_offsets[e + 1] == blocks * p.block_rows, "padded offsets at %u", e);
  }
  FZ_CHECK(p.num_blocks == blocks, "num_blocks %u, want %u", p.num_blocks, blocks);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz f = {data, size};
  if (!rt) {
    moert_runtime_options o;
    moert_runtime_options_init(&o);
    o.backend = MOERT_BACKEND_CPU;
    o.num_threads = 1;
    if (moert_runtime_create(&o, &rt) != MOERT_OK) abort();
  }
  moert_layer_desc d;
  moert_layer_desc_init(&d);
  uint8_t sel = fz_u8(&f);
  d.num_experts = sel < 200 ? 1 + sel % 16 : 1 + fz_below(&f, 512);
  const uint32_t E = d.num_experts;
  d.top_k = 1 + fz_below(&f, E < 16 ? E : 16);
  d.hidden = d.intermediate = 4;
  d.act_dtype = d.weight_dtype = MOERT_DTYPE_F32;
  sel = fz_u8(&f);
  d.router = (sel & 1) ? MOERT_ROUTER_SIGMOID_GROUP_TOPK : MOERT_ROUTER_SOFTMAX_TOPK;
  d.renormalize = (sel >> 1) & 1;
  const float scales[4] = {0.0f, 1.0f, 2.5f, 16.0f};
  d.routed_scaling_factor = scales[(sel >> 2) & 3];
  d.plan_block_rows = (sel >> 4) & 1 ? 1 + fz_below(&f, 128) : 0;
  if (d.router == MOERT_ROUTER_SIGMOID_GROUP_TOPK && ((sel >> 5) & 1)) {
    uint32_t g = 1 + fz_below(&f, E < 16 ? E : 16);
    if (E % g) g = 1;
    d.n_group = g;
    d.topk_group = 1 + fz_below(&f, g);
    if (d.top_k > d.topk_group * (E / g)) d.topk_group = g;
  }
  const uint32_t T = fz_below(&f, 65);
  const moert_dtype dt = 1 + fz_below(&f, 3);
  sel = fz_u8(&f);
  const uint64_t stride = (sel & 1) ? 0 : E + (sel >> 1) % 4;
  const uint64_t row = stride ? stride : E;
  const int with_bias = d.router == MOERT_ROUTER_SIGMOID_GROUP_TOPK && (sel & 0x10);

  moert_scratch *s = NULL;
  moert_status st = moert_scratch_create(rt, &d, T ? T : 1, &s);
  FZ_CHECK(st == MOERT_OK, "scratch for E %u k %u groups %u/%u", E, d.top_k, d.n_group,
           d.topk_group);
  float *bias = NULL;
  if (with_bias) {
    bias = malloc(E * sizeof *bias);
    for (uint32_t e = 0; e < E; e++) {
      float b = fz_logit(&f);
      bias[e] = isfinite(b) ? b : 0.25f;
    }
  }
  const size_t n = (size_t)T * row, es = dt == MOERT_DTYPE_F32 ? 4 : 2;
  float *vals = malloc((n + 1) * sizeof *vals); /* what the library sees, as f32 */
  void *logits = malloc((n + 1) * es);
  for (size_t i = 0; i < n; i++) {
    float x = fz_logit(&f);
    if (dt == MOERT_DTYPE_F32) {
      ((float *)logits)[i] = x;
      vals[i] = x;
    } else if (dt == MOERT_DTYPE_BF16) {
      uint16_t h = fz_f32_to_bf16(x);
      ((uint16_t *)logits)[i] = h;
      vals[i] = fz_bf16_to_f32(h);
    } else {
      uint16_t h = (x != x || sel == 0) ? 0x7e00 : fz_u16(&f); /* raw f16 bits */
      ((uint16_t *)logits)[i] = h;
      vals[i] = fz_f16_to_f32(h);
    }
  }
  int32_t nan_token = -1;
  for (uint32_t t = 0; t < T && nan_token < 0; t++)
    for (uint32_t e = 0; e < E; e++)
      if (vals[t * row + e] != vals[t * row + e]) {
        nan_token = (int32_t)t;
        break;
      }
  moert_route_args a = {sizeof a, T, dt, MOERT_MEMORY_HOST, logits, stride, bias,
                        MOERT_ROUTING_AUTO};
  st = moert_route(s, &a, NULL);
  if (nan_token >= 0) {
    char want[64];
    snprintf(want, sizeof want, "token %d,", nan_token);
    FZ_CHECK(st == MOERT_ERR_NAN_LOGIT && strstr(moert_last_error(), want),
             "a NaN in token %d: status %d", nan_token, st);
  } else {
    FZ_CHECK(st == MOERT_OK, "route of E %u k %u T %u dtype %u", E, d.top_k, T, dt);
    moert_routing_view v = {.struct_size = sizeof v};
    FZ_CHECK(moert_scratch_routing(s, &v) == MOERT_OK, "routing view");
    const uint32_t k = d.top_k;
    const float scale = d.routed_scaling_factor == 0.0f ? 1.0f : d.routed_scaling_factor;
    for (uint32_t t = 0; t < T; t++) {
      const int32_t *id = v.expert_ids + t * k;
      const float *w = v.expert_weights + t * k, *x = vals + t * row;
      double sum = 0;
      for (uint32_t j = 0; j < k; j++) {
        FZ_CHECK(id[j] >= 0 && (uint32_t)id[j] < E, "token %u slot %u id %d", t, j, id[j]);
        for (uint32_t i = 0; i < j; i++) FZ_CHECK(id[i] != id[j], "token %u: id %d twice", t, id[j]);
        FZ_CHECK(isfinite(w[j]) && w[j] >= 0.0f, "token %u slot %u weight %g", t, j, (double)w[j]);
        sum += w[j];
      }
      if (d.router != MOERT_ROUTER_SOFTMAX_TOPK) continue;
      /* top-k by value, ties to the lower index */
      for (uint32_t j = 1; j < k; j++)
        FZ_CHECK(x[id[j - 1]] > x[id[j]] || (x[id[j - 1]] == x[id[j]] && id[j - 1] < id[j]),
                 "token %u: slots %u and %u out of order", t, j - 1, j);
      const int32_t last = id[k - 1];
      for (uint32_t e = 0; e < E; e++) {
        int chosen = 0;
        for (uint32_t j = 0; j < k; j++) chosen |= id[j] == (int32_t)e;
        if (!chosen)
          FZ_CHECK(x[e] < x[last] || (x[e] == x[last] && (int32_t)e > last),
                   "token %u: expert %u (%g) left out for %d (%g)", t, e, (double)x[e], last,
                   (double)x[last]);
      }
      if (d.renormalize)
        FZ_CHECK(fabs(sum - scale) <= 1e-4 * scale, "token %u: weights sum to %g, not %g", t, sum,
                 (double)scale);
      else
        FZ_CHECK(sum <= scale * (1 + 1e-4), "token %u: weights sum to %g > %g", t, sum,
                 (double)scale);
    }
    check_plan(s, &v, E);
    /* the same input gives the same bits */
    int32_t *ids0 = malloc((size_t)T * k * sizeof *ids0 + 1);
    float *w0 = malloc((size_t)T * k * sizeof *w0 + 1);
    memcpy(ids0, v.expert_ids, (size_t)T * k * sizeof *ids0);
    memcpy(w0, v.expert_weights, (size_t)T * k * sizeof *w0);
    FZ_CHECK(moert_route(s, &a, NULL) == MOERT_OK, "second route");
    FZ_CHECK(moert_scratch_routing(s, &v) == MOERT_OK, "routing view");
    FZ_CHECK(memcmp(ids0, v.expert_ids, (size_t)T * k * sizeof *ids0) == 0 &&
                 memcmp(w0, v.expert_weights, (size_t)T * k * sizeof *w0) == 0,
             "two routes of the same logits differ");
    free(ids0);
    free(w0);
  }
  free(vals);
  free(logits);
  free(bias);
  moert_scratch_destroy(s);
  return 0;
}
