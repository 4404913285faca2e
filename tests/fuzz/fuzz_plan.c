/* fuzz_plan.c — libFuzzer target for caller routing and the plan: random bytes become a
 * layer (E 1..512, k 1..16, a plan block size, a small H and I, maybe a shared expert), T
 * up to 300 (so T*k may pass the CPU forward's 2048-row chunk), and ids and weights that
 * are often invalid: out of range (E, -1, INT32_MIN/MAX), repeated within a token, NaN or
 * Inf weights.  moert_set_routing must return exactly the status the contract gives for
 * the first bad (token, slot) in scan order (expert id out of range or repeated:
 * MOERT_ERR_EXPERT_ID; weight not finite: MOERT_ERR_INVALID_ARGUMENT), else succeed with
 * a plan that is a stable counting sort of the ids; then moert_forward must match a
 * float64 reference of the SwiGLU experts and the weighted combine. */
#include "fuzz_common.h"

static moert_runtime *rt;

static double silu(double g) { return g / (1.0 + exp(-g)); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz f = {data, size};
  if (!rt) {
    moert_runtime_options o;
    moert_runtime_options_init(&o);
    o.backend = MOERT_BACKEND_CPU;
    o.num_threads = 2;
    if (moert_runtime_create(&o, &rt) != MOERT_OK) abort();
  }
  moert_layer_desc d;
  moert_layer_desc_init(&d);
  uint8_t sel = fz_u8(&f);
  d.num_experts = sel < 220 ? 1 + sel % 24 : 1 + fz_below(&f, 512);
  const uint32_t E = d.num_experts;
  d.top_k = 1 + fz_below(&f, E < 16 ? E : 16);
  const uint32_t k = d.top_k;
  d.hidden = 1 + fz_below(&f, 24);
  d.intermediate = 1 + fz_below(&f, 24);
  sel = fz_u8(&f);
  d.shared_intermediate = (sel & 1) ? 1 + fz_below(&f, 16) : 0;
  d.shared_gate = (sel & 2) ? MOERT_SHARED_GATE_SIGMOID : MOERT_SHARED_GATE_NONE;
  d.act_dtype = d.weight_dtype = MOERT_DTYPE_F32;
  d.plan_block_rows = (sel & 4) ? 1 + fz_below(&f, 1024) : 0;
  const uint32_t H = d.hidden, I = d.intermediate, Is = d.shared_intermediate;
  const uint32_t T = (sel & 0x38) == 0x38 ? fz_below(&f, 301) : fz_below(&f, 17);
  const uint32_t maxT = T + fz_below(&f, 3);

  moert_scratch *s = NULL;
  moert_status st = moert_scratch_create(rt, &d, maxT ? maxT : 1, &s);
  FZ_CHECK(st == MOERT_OK, "scratch E %u k %u H %u I %u T %u", E, k, H, I, maxT);

  /* ids and weights: a valid routing, then some damage */
  const size_t n = (size_t)T * k;
  int32_t *ids = malloc((n + 1) * sizeof *ids);
  float *w = malloc((n + 1) * sizeof *w);
  for (uint32_t t = 0; t < T; t++) {
    uint32_t start = fz_below(&f, E), step = 1 + fz_below(&f, E);
    while (step > 1 && E % step == 0) step--; /* hits k distinct experts, roughly */
    for (uint32_t j = 0; j < k; j++) {
      int32_t id = -1;
      for (uint32_t probe = 0; probe < E && id < 0; probe++) { /* next unused expert */
        int32_t c = (int32_t)((start + (j + probe) * step) % E);
        int used = 0;
        for (uint32_t i = 0; i < j; i++) used |= ids[t * k + i] == c;
        if (!used) id = c;
      }
      ids[t * k + j] = id;
      w[t * k + j] = (float)fz_below(&f, 1000) / 1000.0f;
    }
  }
  const uint32_t damage = n ? fz_below(&f, 4) : 0;
  for (uint32_t i = 0; i < damage; i++) {
    uint32_t at = fz_below(&f, (uint32_t)n);
    switch (fz_u8(&f) % 8) {
    case 0: ids[at] = (int32_t)E; break;
    case 1: ids[at] = -1; break;
    case 2: ids[at] = INT32_MIN; break;
    case 3: ids[at] = INT32_MAX; break;
    case 4: ids[at] = ids[at - at % k]; break; /* maybe a repeat of slot 0 */
    case 5: w[at] = NAN; break;
    case 6: w[at] = (fz_u8(&f) & 1) ? INFINITY : -INFINITY; break;
    default: w[at] = fz_logit(&f); break;
    }
  }
  /* the status the contract gives */
  moert_status want = MOERT_OK;
  for (uint32_t t = 0; t < T && want == MOERT_OK; t++)
    for (uint32_t j = 0; j < k && want == MOERT_OK; j++) {
      int32_t id = ids[t * k + j];
      if (id < 0 || (uint32_t)id >= E) want = MOERT_ERR_EXPERT_ID;
      for (uint32_t i = 0; i < j && want == MOERT_OK; i++)
        if (ids[t * k + i] == id) want = MOERT_ERR_EXPERT_ID;
      if (want == MOERT_OK && !isfinite(w[t * k + j])) want = MOERT_ERR_INVALID_ARGUMENT;
    }
  st = moert_set_routing(s, T, ids, w, NULL);
  FZ_CHECK(st == want, "set_routing: status %d, want %d", st, want);
  if (st != MOERT_OK) {
    FZ_FAILED_WELL(st);
  } else {
    moert_plan_view p = {.struct_size = sizeof p};
    FZ_CHECK(moert_scratch_plan(s, &p) == MOERT_OK, "plan view");
    FZ_CHECK(p.offsets[0] == 0 && (uint32_t)p.offsets[E] == n, "offsets ends");
    for (uint32_t e = 0; e < E; e++) {
      FZ_CHECK(p.offsets[e] <= p.offsets[e + 1], "offsets at %u", e);
      for (int32_t r = p.offsets[e] + 1; r < p.offsets[e + 1]; r++)
        FZ_CHECK(p.packed_token[r - 1] < p.packed_token[r], "expert %u rows not in token order", e);
    }
    for (uint32_t q = 0; q < n; q++) {
      const int32_t row = p.pair_of[q];
      FZ_CHECK(row >= p.offsets[ids[q]] && row < p.offsets[ids[q] + 1], "pair %u misplaced", q);
      FZ_CHECK((uint32_t)p.packed_token[row] == q / k, "pair %u token", q);
    }
    uint32_t blocks = 0;
    for (uint32_t e = 0; e < E; e++) {
      uint32_t nb = ((uint32_t)(p.offsets[e + 1] - p.offsets[e]) + p.block_rows - 1) / p.block_rows;
      for (uint32_t b = 0; b < nb; b++) FZ_CHECK(p.block_expert[blocks + b] == (int32_t)e, "block");
      blocks += nb;
      FZ_CHECK((uint32_t)p.padded_offsets[e + 1] == blocks * p.block_rows, "padded offsets");
    }
    FZ_CHECK(p.num_blocks == blocks, "num_blocks");

    /* forward against a float64 reference */
    const size_t mat = (size_t)I * H, smat = (size_t)Is * H;
    const size_t nw = 3 * E * mat + 3 * smat + H;
    float *wb = malloc(nw * sizeof *wb);
    for (size_t i = 0; i < nw; i++) wb[i] = (float)((int)(fz_u8(&f) % 33) - 16) / 64.0f;
    float *gate = wb, *up = wb + E * mat, *down = wb + 2 * E * mat;
    float *sg = wb + 3 * E * mat, *su = sg + smat, *sd = su + smat, *sgw = sd + smat;
    moert_experts_desc xd = {.struct_size = sizeof xd, .layout = MOERT_LAYOUT_STACKED,
                             .memory = MOERT_MEMORY_HOST, .gate = gate, .up = up, .down = down,
                             .shared_gate = sg, .shared_up = su, .shared_down = sd,
                             .shared_expert_gate = sgw};
    moert_experts *ex = NULL;
    FZ_CHECK(moert_experts_create(rt, &d, &xd, &ex) == MOERT_OK, "experts");
    float *x = malloc(((size_t)T * H + 1) * sizeof *x), *y = malloc(((size_t)T * H + 1) * sizeof *y);
    for (size_t i = 0; i < (size_t)T * H; i++) x[i] = (float)((int)(fz_u8(&f) % 65) - 32) / 32.0f;
    moert_forward_args fa = {sizeof fa, ex, MOERT_MEMORY_HOST, x, 0, y, 0, 0};
    FZ_CHECK(moert_forward(s, &fa, NULL) == MOERT_OK, "forward");
    double *h = malloc(((I > Is ? I : Is) + 1) * sizeof *h);
    double *ref = malloc((H + 1) * sizeof *ref), *mag = malloc((H + 1) * sizeof *mag);
    for (uint32_t t = 0; t < T; t++) {
      const float *xt = x + (size_t)t * H;
      for (uint32_t c = 0; c < H; c++) ref[c] = mag[c] = 0;
      for (uint32_t j = 0; j <= k; j++) {
        const float *g, *u, *dn;
        uint32_t in;
        double wt;
        if (j < k) {
          const int32_t e = ids[t * k + j];
          g = gate + e * mat, u = up + e * mat, dn = down + e * mat, in = I, wt = w[t * k + j];
        } else {
          if (!Is) break;
          g = sg, u = su, dn = sd, in = Is, wt = 1;
          if (d.shared_gate == MOERT_SHARED_GATE_SIGMOID) {
            double z = 0;
            for (uint32_t i = 0; i < H; i++) z += (double)xt[i] * sgw[i];
            wt = 1 / (1 + exp(-z));
          }
        }
        for (uint32_t i = 0; i < in; i++) {
          double gv = 0, uv = 0;
          for (uint32_t q = 0; q < H; q++)
            gv += (double)xt[q] * g[i * H + q], uv += (double)xt[q] * u[i * H + q];
          h[i] = silu(gv) * uv;
        }
        for (uint32_t c = 0; c < H; c++) {
          double o = 0, om = 0;
          for (uint32_t i = 0; i < in; i++) o += h[i] * dn[c * in + i], om += fabs(h[i] * dn[c * in + i]);
          ref[c] += wt * o;
          mag[c] += fabs(wt) * om;
        }
      }
      for (uint32_t c = 0; c < H; c++) {
        const double got = y[(size_t)t * H + c];
        if (fabs(ref[c]) > 1e30 || mag[c] > 1e30) continue; /* float32 may overflow */
        FZ_CHECK(fabs(got - ref[c]) <= 1e-4 * mag[c] + 1e-6, "y[%u,%u] = %.9g, reference %.9g",
                 t, c, got, ref[c]);
      }
    }
    free(ref);
    free(mag);
    free(h);
    free(x);
    free(y);
    moert_experts_destroy(ex);
    free(wb);
  }
  free(ids);
  free(w);
  moert_scratch_destroy(s);
  return 0;
}
