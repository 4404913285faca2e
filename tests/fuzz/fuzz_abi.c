/* fuzz_abi.c — libFuzzer target for the ABI's argument checking: random bytes become the
 * raw contents of every struct (struct_size, enums, counts, strides, flags) passed to
 * moert_runtime_create, moert_scratch_create, moert_experts_create, moert_route,
 * moert_set_routing, moert_forward, moert_moe and the views.  Pointers are the only thing
 * the fuzzer does not invent: each is NULL or a buffer as large as the arguments say
 * (the contract's part for the caller), and strides the caller could not have allocated
 * are kept only where they overflow the address space (which the library must refuse).
 * Dimensions that the checks accept are shrunk to small values so a run stays fast;
 * rejected ones are passed as they came.  After every call:
 *  - the status is OK or a known code, and a failure leaves a sentence;
 *  - a failed create leaves *out as it was, a failed forward leaves y as it was, a failed
 *    view call leaves the view as it was;
 *  - the library keeps working: everything created is used and destroyed (ASan checks for
 *    leaks at exit). */
#include "fuzz_common.h"

#define SENTINEL ((void *)(uintptr_t)0x5e5e5e5e5e50ull)

/* A dimension: invalid values stay, valid ones become small. */
static uint32_t dim(fz *f, uint32_t lo, uint32_t hi, uint32_t small) {
  uint8_t sel = fz_u8(f);
  uint32_t v = (sel & 3) == 0 ? fz_u32(f) : (sel & 3) == 1 ? sel >> 2 : lo + (sel >> 2) % small;
  if (v >= lo && v <= hi) v = lo + (v - lo) % small;
  return v;
}

static uint32_t struct_size(fz *f, uint32_t right) {
  uint8_t sel = fz_u8(f);
  if (sel < 224) return right;
  if (sel < 240) return right + (uint32_t)(sel & 15) - 8;
  return fz_u32(f);
}

static uint32_t enum_val(fz *f, uint32_t max_valid) {
  uint8_t sel = fz_u8(f);
  if (sel < 200) return sel % (max_valid + 1);
  if (sel < 240) return max_valid + 1 + sel % 4;
  return fz_u32(f);
}

/* a row stride for rows of n elements: 0, n..n+3, too small, or overflowing */
static uint64_t stride(fz *f, uint32_t n, uint32_t rows) {
  uint8_t sel = fz_u8(f);
  if (sel < 128) return 0;
  if (sel < 200) return n + sel % 4u;
  if (sel < 230 && n > 1) return 1 + sel % (n - 1);
  if (rows > 1) return UINT64_MAX / 2 + fz_u32(f); /* overflows the address space */
  return n;
}

static void *poisoned(size_t bytes) {
  void *p = malloc(bytes + 16);
  memset(p, 0xa5, bytes + 16);
  return p;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz f = {data, size};
  moert_status st;

  /* ---- runtime ---- */
  moert_runtime_options o;
  moert_runtime_options_init(&o);
  o.struct_size = struct_size(&f, sizeof o);
  o.backend = enum_val(&f, MOERT_BACKEND_CUDA);
  o.device_ordinal = (fz_u8(&f) & 7) == 0 ? (int32_t)fz_u32(&f) : 0;
  o.num_threads = dim(&f, 0, 1024, 3);
  o.cache_dir = (fz_u8(&f) & 1) ? "" : NULL;
  moert_runtime *rt = SENTINEL;
  st = moert_runtime_create((fz_u8(&f) & 31) ? &o : NULL, (fz_u8(&f) & 31) ? &rt : NULL);
  if (st != MOERT_OK) {
    FZ_FAILED_WELL(st);
    FZ_CHECK(rt == SENTINEL, "failed moert_runtime_create wrote *out");
    if (rt != SENTINEL) return 0;
    /* a runtime to go on with */
    moert_runtime_options_init(&o);
    o.backend = MOERT_BACKEND_CPU;
    o.num_threads = 2;
    if (moert_runtime_create(&o, &rt) != MOERT_OK) abort();
  }

  /* ---- layer desc and scratch ---- */
  moert_layer_desc d;
  moert_layer_desc_init(&d);
  d.struct_size = struct_size(&f, sizeof d);
  d.num_experts = dim(&f, 1, 512, 12);
  d.top_k = dim(&f, 1, 16, 4);
  d.hidden = dim(&f, 1, 1u << 20, 16);
  d.intermediate = dim(&f, 1, 1u << 20, 16);
  d.shared_intermediate = (fz_u8(&f) & 3) ? 0 : dim(&f, 0, 1u << 20, 8);
  d.shared_gate = enum_val(&f, MOERT_SHARED_GATE_SIGMOID);
  d.act_dtype = 1 + enum_val(&f, 2);
  d.weight_dtype = 1 + enum_val(&f, 2);
  d.router = 1 + enum_val(&f, 1);
  d.renormalize = enum_val(&f, 1);
  d.n_group = (fz_u8(&f) & 1) ? dim(&f, 0, 512, 5) : 0;
  d.topk_group = dim(&f, 0, 512, 5);
  uint8_t sc = fz_u8(&f);
  d.routed_scaling_factor = sc < 200 ? (float)(sc % 8) * 0.5f : fz_logit(&f);
  d.plan_block_rows = dim(&f, 0, 1024, 70);
  const uint32_t max_tokens = dim(&f, 1, 1u << 22, 9);
  moert_scratch *s = SENTINEL;
  st = moert_scratch_create((fz_u8(&f) & 31) ? rt : NULL, (fz_u8(&f) & 31) ? &d : NULL,
                            max_tokens, (fz_u8(&f) & 31) ? &s : NULL);
  if (st != MOERT_OK) {
    FZ_FAILED_WELL(st);
    FZ_CHECK(s == SENTINEL, "failed moert_scratch_create wrote *out");
    moert_runtime_destroy(rt);
    return 0;
  }
  const uint32_t E = d.num_experts, k = d.top_k, H = d.hidden, I = d.intermediate;
  const uint32_t Is = d.shared_intermediate;
  const size_t wes = d.weight_dtype == MOERT_DTYPE_F32 ? 4 : 2;
  const size_t aes = d.act_dtype == MOERT_DTYPE_F32 ? 4 : 2;
  uint64_t hb = 0, db = 0;
  FZ_CHECK(moert_scratch_memory(s, &hb, &db) == MOERT_OK && hb > 0, "scratch memory");
  FZ_CHECK(moert_scratch_prepare(s) == MOERT_OK, "prepare on the CPU");

  /* ---- experts (all-zero weights: cheap to make, well defined to run) ---- */
  const size_t mat = (size_t)I * H * wes;
  unsigned char *wbuf = calloc(3 * E * mat + 3 * (size_t)Is * H * wes + H * wes + 16, 1);
  const void **tabs = malloc(3 * E * sizeof *tabs);
  for (uint32_t e = 0; e < E; e++) {
    tabs[e] = wbuf + e * mat;
    tabs[E + e] = wbuf + (E + e) * mat;
    tabs[2 * E + e] = (fz_u8(&f) == 0xff) ? NULL : wbuf + (2 * E + e) * mat;
  }
  moert_experts_desc w;
  memset(&w, 0, sizeof w);
  w.struct_size = struct_size(&f, sizeof w);
  w.layout = enum_val(&f, MOERT_LAYOUT_PER_EXPERT);
  w.memory = enum_val(&f, MOERT_MEMORY_DEVICE);
  const uint8_t nulls = fz_u8(&f);
  w.gate = (nulls & 1) ? NULL : wbuf;
  w.up = wbuf + E * mat;
  w.gate_up = (nulls & 2) ? NULL : wbuf;
  w.down = (nulls & 4) ? NULL : wbuf + 2 * E * mat;
  w.gate_ptrs = (nulls & 8) ? NULL : tabs;
  w.up_ptrs = tabs + E;
  w.down_ptrs = tabs + 2 * E;
  unsigned char *sh = wbuf + 3 * E * mat;
  w.shared_gate = sh;
  w.shared_up = (nulls & 16) ? NULL : sh + (size_t)Is * H * wes;
  w.shared_down = sh + 2 * (size_t)Is * H * wes;
  w.shared_expert_gate = (nulls & 32) ? NULL : sh + 3 * (size_t)Is * H * wes;
  moert_layer_desc dx = d;
  if (fz_u8(&f) == 7) dx.hidden = H + 1; /* experts of another shape */
  moert_experts *ex = SENTINEL;
  st = moert_experts_create(rt, &dx, &w, &ex);
  if (st != MOERT_OK) {
    FZ_FAILED_WELL(st);
    FZ_CHECK(ex == SENTINEL, "failed moert_experts_create wrote *out");
    ex = NULL;
  }

  /* ---- route or set_routing ---- */
  const uint32_t T = fz_below(&f, max_tokens + 2);
  const moert_dtype ldt = 1 + enum_val(&f, 2);
  const size_t les = ldt == MOERT_DTYPE_F32 ? 4 : ldt == 0 || ldt > 3 ? 4 : 2;
  moert_route_args r;
  memset(&r, 0, sizeof r);
  r.struct_size = struct_size(&f, sizeof r);
  r.num_tokens = T;
  r.logits_dtype = ldt;
  r.memory = enum_val(&f, MOERT_MEMORY_DEVICE);
  r.logits_row_stride = stride(&f, E, T);
  r.mode = enum_val(&f, MOERT_ROUTING_DEVICE);
  const uint64_t lrow = r.logits_row_stride && r.logits_row_stride <= E + 3u ? r.logits_row_stride : E;
  unsigned char *logits = malloc(((size_t)T * lrow + 1) * les);
  for (size_t i = 0; i < (size_t)T * lrow; i++) {
    float v = (fz_u8(&f) & 63) ? (float)(int8_t)fz_u8(&f) / 16.0f : fz_logit(&f);
    if (les == 4) memcpy(logits + 4 * i, &v, 4);
    else {
      uint16_t h = fz_f32_to_bf16(v);
      memcpy(logits + 2 * i, &h, 2);
    }
  }
  r.logits = (fz_u8(&f) & 31) ? logits : NULL;
  float *bias = malloc((E + 1) * sizeof *bias);
  for (uint32_t e = 0; e < E; e++) bias[e] = (fz_u8(&f) & 15) ? 0.125f * (float)(e % 5) : fz_logit(&f);
  r.correction_bias = (fz_u8(&f) & 1) ? bias : NULL;

  int32_t *ids = malloc(((size_t)T * k + 1) * sizeof *ids);
  float *wts = malloc(((size_t)T * k + 1) * sizeof *wts);
  for (uint32_t t = 0; t < T; t++)
    for (uint32_t j = 0; j < k; j++) {
      ids[t * k + j] = (fz_u8(&f) & 31) ? (int32_t)((t + j) % E) : (int32_t)fz_u32(&f);
      wts[t * k + j] = (fz_u8(&f) & 31) ? 0.5f : fz_logit(&f);
    }

  moert_routing_view rv, rv0;
  memset(&rv, 0xa5, sizeof rv);
  rv.struct_size = struct_size(&f, sizeof rv);
  rv0 = rv;
  moert_plan_view pv, pv0;
  memset(&pv, 0xa5, sizeof pv);
  pv.struct_size = struct_size(&f, sizeof pv);
  pv0 = pv;

  /* ---- forward arguments ---- */
  moert_forward_args a;
  memset(&a, 0, sizeof a);
  a.struct_size = struct_size(&f, sizeof a);
  a.experts = (fz_u8(&f) & 31) ? ex : NULL;
  a.memory = enum_val(&f, MOERT_MEMORY_DEVICE);
  a.x_row_stride = stride(&f, H, T);
  a.y_row_stride = stride(&f, H, T);
  a.accumulate = enum_val(&f, 1);
  const uint64_t xrow = a.x_row_stride && a.x_row_stride <= H + 3u ? a.x_row_stride : H;
  const uint64_t yrow = a.y_row_stride && a.y_row_stride <= H + 3u ? a.y_row_stride : H;
  const size_t xbytes = ((size_t)T * xrow + 1) * aes, ybytes = ((size_t)T * yrow + 1) * aes;
  unsigned char *x = calloc(xbytes + ybytes, 1);
  const uint8_t where = fz_u8(&f);
  unsigned char *y = (where & 7) == 0 ? x + ((size_t)where * aes) % (xbytes ? xbytes : 1) : poisoned(ybytes);
  const int y_in_x = (where & 7) == 0;
  a.x = (fz_u8(&f) & 31) ? x : NULL;
  a.y = (fz_u8(&f) & 31) ? y : NULL;
  unsigned char *y0 = malloc(ybytes + 16);
  if (!y_in_x) memcpy(y0, y, ybytes + 16);

  /* the calls, in an order the input picks */
  const uint8_t order = fz_u8(&f);
  for (int step = 0; step < 4; step++) {
    switch ((order >> (2 * step)) & 3) {
    case 0: st = moert_route(s, (fz_u8(&f) & 31) ? &r : NULL, NULL); break;
    case 1: st = moert_set_routing(s, T, (fz_u8(&f) & 31) ? ids : NULL, wts, NULL); break;
    case 2: st = moert_forward(s, (fz_u8(&f) & 31) ? &a : NULL, NULL); break;
    default: st = moert_moe(s, &r, (fz_u8(&f) & 31) ? &a : NULL, NULL); break;
    }
    if (st != MOERT_OK) {
      FZ_FAILED_WELL(st);
      if (!y_in_x && ((order >> (2 * step)) & 3) >= 2)
        FZ_CHECK(memcmp(y, y0, ybytes + 16) == 0, "a failed forward (status %d) wrote y", st);
    }
    if (!y_in_x) memcpy(y0, y, ybytes + 16);
    st = moert_scratch_routing(s, &rv);
    if (st != MOERT_OK) {
      FZ_FAILED_WELL(st);
      FZ_CHECK(memcmp(&rv, &rv0, sizeof rv) == 0, "a failed moert_scratch_routing wrote the view");
    } else {
      FZ_CHECK(rv.top_k == k && rv.num_tokens <= max_tokens, "routing view shape");
      for (uint32_t i = 0; i < rv.num_tokens * k; i++)
        FZ_CHECK(rv.expert_ids[i] >= 0 && (uint32_t)rv.expert_ids[i] < E, "routed id %d", rv.expert_ids[i]);
      rv = rv0;
    }
    st = moert_scratch_plan(s, &pv);
    if (st != MOERT_OK) {
      FZ_FAILED_WELL(st);
      FZ_CHECK(memcmp(&pv, &pv0, sizeof pv) == 0, "a failed moert_scratch_plan wrote the view");
    } else {
      FZ_CHECK(pv.num_experts == E && pv.offsets[E] == (int32_t)(pv.num_tokens * k), "plan view");
      pv = pv0;
    }
  }

  free(y0);
  if (!y_in_x) free(y);
  free(x);
  free(ids);
  free(wts);
  free(bias);
  free(logits);
  moert_experts_destroy(ex);
  free(tabs);
  free(wbuf);
  moert_scratch_destroy(s);
  moert_runtime_destroy(rt);
  return 0;
}
