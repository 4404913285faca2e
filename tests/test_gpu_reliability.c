/* test_gpu_reliability.c — the GPU part of the reliability checks (label gpu; with no GPU
 * it prints why and exits 0):
 *  - big_T: T = 262144 tokens (MOERT_RELIABILITY_T overrides, e.g. for compute-sanitizer
 *    runs) on Qwen3-30B-A3B dimensions (E 128, k 8, H 2048, I 768), bf16, device routing:
 *    every output element finite; the device routing of all T tokens bit-identical to the
 *    CPU backend's host routing; the output rows of 3 × 24 sampled tokens (first, middle,
 *    last) within 1e-2 relative L2 of the CPU backend run on those tokens;
 *  - device_oom: a scratch whose device buffers cannot fit (Qwen3-235B-A22B dimensions,
 *    max_tokens 2^22) fails with MOERT_ERR_OUT_OF_MEMORY and a message, leaves *out
 *    alone, 10 times in a row, and a normal scratch and forward work right after.
 * Links moert_static for the loader's driver table (device buffers of the test). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define GPU_TEST_SEED 0x2545f4914f6cdd1dull
#include "support/gpu_test.h"
#include "internal.h"

moert_status (*volatile moert_test_keep_open)(moert_runtime *, const moert_runtime_options *) =
    moert_cuda_backend_open;

static moert_runtime *gpu_rt, *cpu_rt;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}
static double g_t0;
static void phase(const char *what) {
  printf("  [%8.2f s] %s\n", now_s() - g_t0, what);
  fflush(stdout);
}

/* n bf16 values in [-a, a): 1M-element windows of a random pool at random offsets */
static void fill_bf16(uint16_t *p, size_t n, float a) {
  enum { POOL = 1 << 22, WIN = 1 << 18 };
  static uint16_t *pool;
  static float pool_a;
  if (!pool || pool_a != a) {
    free(pool);
    pool = malloc(POOL * sizeof *pool);
    ck_assert_ptr_nonnull(pool);
    for (size_t i = 0; i < POOL; i++) pool[i] = moert_f32_to_bf16(uniform(a));
    pool_a = a;
  }
  copy_windows(p, n, pool, POOL, WIN);
}


static moert_layer_desc qwen3_desc(uint32_t E, uint32_t H, uint32_t I) {
  moert_layer_desc d;
  moert_layer_desc_init(&d);
  d.num_experts = E, d.top_k = 8, d.hidden = H, d.intermediate = I;
  d.act_dtype = d.weight_dtype = MOERT_DTYPE_BF16;
  return d;
}

static uint32_t big_tokens(void) {
  const char *e = getenv("MOERT_RELIABILITY_T");
  long n = e ? strtol(e, NULL, 10) : 262144;
  return n > 0 ? (uint32_t)n : 262144;
}

START_TEST(big_T) {
  const uint32_t T = big_tokens(), E = 128, K = 8, H = 2048, I = 768, S = 24;
  const moert_layer_desc d = qwen3_desc(E, H, I);
  const size_t mat = (size_t)I * H;
  g_t0 = now_s();
  /* weights: host (CPU experts) and device (GPU experts), the same values */
  uint16_t *hw = malloc(3 * E * mat * sizeof *hw);
  ck_assert_ptr_nonnull(hw);
  fill_bf16(hw, 2 * E * mat, 1.0f / sqrtf((float)H));
  fill_bf16(hw + 2 * E * mat, E * mat, 1.0f / sqrtf((float)I));
  CUdeviceptr dw = dalloc(3 * E * mat * 2);
  CU(cu->cuMemcpyHtoD(dw, hw, 3 * E * mat * 2));
  moert_experts_desc w = {.struct_size = sizeof w, .layout = MOERT_LAYOUT_STACKED,
                          .memory = MOERT_MEMORY_HOST, .gate = hw, .up = hw + E * mat,
                          .down = hw + 2 * E * mat};
  moert_experts *xc = NULL, *xg = NULL;
  OK(moert_experts_create(cpu_rt, &d, &w, &xc));
  w.memory = MOERT_MEMORY_DEVICE;
  w.gate = dptr(dw), w.up = dptr(dw + E * mat * 2), w.down = dptr(dw + 2 * E * mat * 2);
  OK(moert_experts_create(gpu_rt, &d, &w, &xg));
  phase("weights made and copied");
  /* inputs */
  float *logits = malloc((size_t)T * E * sizeof *logits);
  uint16_t *x = malloc((size_t)T * H * 2), *y = malloc((size_t)T * H * 2);
  ck_assert(logits && x && y);
  for (size_t i = 0; i < (size_t)T * E; i++) logits[i] = uniform(4.0f);
  fill_bf16(x, (size_t)T * H, 1.0f);
  CUdeviceptr dl = dalloc((size_t)T * E * 4), dx = dalloc((size_t)T * H * 2),
              dy = dalloc((size_t)T * H * 2);
  CU(cu->cuMemcpyHtoD(dl, logits, (size_t)T * E * 4));
  CU(cu->cuMemcpyHtoD(dx, x, (size_t)T * H * 2));
  CU(cu->cuMemsetD32Async(dy, 0xffffffffu, (size_t)T * H / 2, NULL)); /* NaN poison */
  /* the GPU run, device routing */
  phase("inputs made and copied");
  moert_scratch *sg = NULL;
  OK(moert_scratch_create(gpu_rt, &d, T, &sg));
  phase("GPU scratch created");
  uint64_t hb = 0, db = 0;
  OK(moert_scratch_memory(sg, &hb, &db));
  moert_route_args r = {.struct_size = sizeof r, .num_tokens = T, .logits_dtype = MOERT_DTYPE_F32,
                        .memory = MOERT_MEMORY_DEVICE, .logits = dptr(dl),
                        .mode = MOERT_ROUTING_DEVICE};
  moert_forward_args f = {.struct_size = sizeof f, .experts = xg, .memory = MOERT_MEMORY_DEVICE,
                          .x = dptr(dx), .y = dptr(dy)};
  OK(moert_moe(sg, &r, &f, NULL));
  CU(cu->cuStreamSynchronize(NULL));
  phase("GPU route + forward (first call: kernels from the JIT)");
  OK(moert_moe(sg, &r, &f, NULL));
  CU(cu->cuStreamSynchronize(NULL));
  phase("GPU route + forward again");
  CU(cu->cuMemcpyDtoH(y, dy, (size_t)T * H * 2));
  /* (no ck_assert in long loops: each one writes a location record through Check) */
  for (size_t i = 0; i < (size_t)T * H; i++)
    if ((y[i] & 0x7f80) == 0x7f80)
      ck_abort_msg("y[%zu] (token %zu) is %g", i, i / H, (double)moert_bf16_to_f32(y[i]));
  /* routing: device = CPU host routing, every token */
  phase("y copied back and checked finite");
  moert_routing_view gv = {.struct_size = sizeof gv};
  OK(moert_scratch_routing(sg, &gv));
  phase("device routing fetched");
  ck_assert_uint_eq(gv.num_tokens, T);
  moert_scratch *sc = NULL;
  OK(moert_scratch_create(cpu_rt, &d, T, &sc));
  moert_route_args rc = r;
  rc.memory = MOERT_MEMORY_HOST, rc.logits = logits, rc.mode = MOERT_ROUTING_HOST;
  OK(moert_route(sc, &rc, NULL));
  phase("CPU scratch created, host routing done");
  moert_routing_view cv = {.struct_size = sizeof cv};
  OK(moert_scratch_routing(sc, &cv));
  for (size_t i = 0; i < (size_t)T * K; i++)
    if (gv.expert_ids[i] != cv.expert_ids[i] ||
        memcmp(&gv.expert_weights[i], &cv.expert_weights[i], 4) != 0)
      ck_abort_msg("token %zu slot %zu: device (%d, %.9g), host (%d, %.9g)", i / K, i % K,
                  gv.expert_ids[i], (double)gv.expert_weights[i], cv.expert_ids[i],
                  (double)cv.expert_weights[i]);
  moert_scratch_destroy(sc);
  phase("routing compared");
  /* output rows: CPU on 3 samples of S tokens */
  moert_scratch *ss = NULL;
  OK(moert_scratch_create(cpu_rt, &d, S, &ss));
  uint16_t yc[24 * 2048];
  const uint32_t starts[3] = {0, T / 2 > S ? T / 2 - S / 2 : 0, T > S ? T - S : 0};
  double worst = 0;
  for (int s = 0; s < 3; s++) {
    const uint32_t t0 = starts[s], n = T - t0 < S ? T - t0 : S;
    moert_route_args rs = rc;
    rs.num_tokens = n, rs.logits = logits + (size_t)t0 * E;
    moert_forward_args fs = {.struct_size = sizeof fs, .experts = xc, .memory = MOERT_MEMORY_HOST,
                             .x = x + (size_t)t0 * H, .y = yc};
    OK(moert_moe(ss, &rs, &fs, NULL));
    double num = 0, den = 0;
    for (size_t i = 0; i < (size_t)n * H; i++) {
      double g = moert_bf16_to_f32(y[(size_t)t0 * H + i]), c = moert_bf16_to_f32(yc[i]);
      num += (g - c) * (g - c), den += c * c;
    }
    const double rel = sqrt(num / (den > 0 ? den : 1));
    ck_assert_msg(rel < 1e-2, "tokens %u..%u: GPU vs CPU relative L2 %.3g", t0, t0 + n - 1, rel);
    if (rel > worst) worst = rel;
  }
  phase("CPU samples compared");
  printf("big_T: T %u on Qwen3-30B-A3B dims (scratch: %.1f MB host, %.1f MB device): all finite, "
         "device routing = host routing for every token, sampled rows vs CPU rel L2 <= %.2g\n",
         T, hb / 1e6, db / 1e6, worst);
  moert_scratch_destroy(ss);
  moert_scratch_destroy(sg);
  moert_experts_destroy(xc);
  moert_experts_destroy(xg);
  cu->cuMemFree(dl), cu->cuMemFree(dx), cu->cuMemFree(dy), cu->cuMemFree(dw);
  free(logits), free(x), free(y), free(hw);
}
END_TEST

START_TEST(device_oom) {
  const moert_layer_desc big = qwen3_desc(128, 4096, 1536); /* Qwen3-235B-A22B */
  for (int i = 0; i < 10; i++) {
    moert_scratch *s = (moert_scratch *)(uintptr_t)0x5e5e5e50;
    moert_status st = moert_scratch_create(gpu_rt, &big, 1u << 22, &s);
    ck_assert_msg(st == MOERT_ERR_OUT_OF_MEMORY, "try %d: got %d (%s): %s", i, st,
                  moert_status_string(st), moert_last_error());
    ck_assert_msg(moert_last_error()[0] != 0, "no message");
    ck_assert_ptr_eq(s, (moert_scratch *)(uintptr_t)0x5e5e5e50);
    if (i == 0) printf("device_oom: %s\n", moert_last_error());
  }
  /* and a normal layer works right after */
  const moert_layer_desc d = qwen3_desc(16, 256, 128);
  const size_t mat = 128 * 256, T = 64;
  uint16_t *hw = malloc(3 * 16 * mat * 2), *x = malloc(T * 256 * 2), *y = malloc(T * 256 * 2);
  fill_bf16(hw, 3 * 16 * mat, 0.05f);
  fill_bf16(x, T * 256, 1.0f);
  float logits[64 * 16];
  for (size_t i = 0; i < T * 16; i++) logits[i] = uniform(3.0f);
  CUdeviceptr dw = dalloc(3 * 16 * mat * 2), dx = dalloc(T * 256 * 2), dy = dalloc(T * 256 * 2),
              dl = dalloc(sizeof logits);
  CU(cu->cuMemcpyHtoD(dw, hw, 3 * 16 * mat * 2));
  CU(cu->cuMemcpyHtoD(dx, x, T * 256 * 2));
  CU(cu->cuMemcpyHtoD(dl, logits, sizeof logits));
  moert_experts_desc w = {.struct_size = sizeof w, .layout = MOERT_LAYOUT_STACKED,
                          .memory = MOERT_MEMORY_DEVICE, .gate = dptr(dw),
                          .up = dptr(dw + 16 * mat * 2), .down = dptr(dw + 32 * mat * 2)};
  moert_experts *xg = NULL;
  OK(moert_experts_create(gpu_rt, &d, &w, &xg));
  moert_scratch *s = NULL;
  OK(moert_scratch_create(gpu_rt, &d, (uint32_t)T, &s));
  moert_route_args r = {.struct_size = sizeof r, .num_tokens = (uint32_t)T,
                        .logits_dtype = MOERT_DTYPE_F32, .memory = MOERT_MEMORY_DEVICE,
                        .logits = dptr(dl)};
  moert_forward_args f = {.struct_size = sizeof f, .experts = xg, .memory = MOERT_MEMORY_DEVICE,
                          .x = dptr(dx), .y = dptr(dy)};
  OK(moert_moe(s, &r, &f, NULL));
  CU(cu->cuStreamSynchronize(NULL));
  CU(cu->cuMemcpyDtoH(y, dy, T * 256 * 2));
  int nonzero = 0;
  for (size_t i = 0; i < T * 256; i++) {
    if ((y[i] & 0x7f80) == 0x7f80) ck_abort_msg("y[%zu] is not finite", i);
    nonzero += (y[i] & 0x7fff) != 0;
  }
  ck_assert_int_gt(nonzero, 0);
  moert_scratch_destroy(s);
  moert_experts_destroy(xg);
  cu->cuMemFree(dw), cu->cuMemFree(dx), cu->cuMemFree(dy), cu->cuMemFree(dl);
  free(hw), free(x), free(y);
}
END_TEST

int main(void) {
  char why[256] = "";
  if (moert_cuda_driver_get(&cu, why, sizeof why) != MOERT_OK) {
    printf("test_gpu_reliability: skipped, no GPU: %s\n", why);
    return 0;
  }
  CUdevice dev;
  if (cu->cuDeviceGet(&dev, 0) != 0 || cu->cuDevicePrimaryCtxRetain(&ctx, dev) != 0 ||
      cu->cuCtxSetCurrent(ctx) != 0) {
    printf("test_gpu_reliability: skipped, CUDA device 0 cannot be used\n");
    return 0;
  }
  moert_runtime_options o;
  moert_runtime_options_init(&o);
  o.backend = MOERT_BACKEND_CUDA;
  if (moert_runtime_create(&o, &gpu_rt) != MOERT_OK) {
    printf("test_gpu_reliability: FAILED to create the CUDA runtime: %s\n", moert_last_error());
    return 1;
  }
  o.backend = MOERT_BACKEND_CPU;
  if (moert_runtime_create(&o, &cpu_rt) != MOERT_OK) return 1;
  printf("backend: %s\n", moert_runtime_backend_note(gpu_rt));
  Suite *s = suite_create("gpu_reliability");
  TCase *tc = tcase_create("gpu_reliability");
  tcase_set_timeout(tc, 900);
  tcase_add_test(tc, device_oom);
  tcase_add_test(tc, big_T);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_set_fork_status(sr, CK_NOFORK); /* one CUDA context, made before any fork */
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  moert_runtime_destroy(gpu_rt);
  moert_runtime_destroy(cpu_rt);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
