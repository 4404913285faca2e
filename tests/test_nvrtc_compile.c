/* test_nvrtc_compile.c — the CUDA backend's parts that need no GPU: every kernel source
 * compiles with NVRTC for sm_80, sm_86, sm_89, sm_90 and sm_90a in its bf16, f16 and f32
 * variants and a few router shapes; compile errors carry the NVRTC log; the architecture
 * choice; the loader's no-driver path (backend CUDA fails with a sentence, AUTO falls back
 * to CPU and says why) and a bad MOERT_NVRTC_PATH.  NVRTC must be present: a machine
 * without it fails this test, loudly, rather than skipping it.
 * Links moert_static, for the private hooks in runtime/cuda/jit.h. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/cuda_api.h"
#include "cuda/jit.h"
#include "internal.h"

/* A strong reference, so the static link keeps runtime/cuda/backend.c (api.c refers to
 * moert_cuda_backend_open only weakly). */
moert_status (*volatile moert_test_keep_open)(moert_runtime *, const moert_runtime_options *) =
    moert_cuda_backend_open;

static const char *const archs[] = {"sm_80", "sm_86", "sm_89", "sm_90", "sm_90a"};
#define NUM_ARCHS (sizeof archs / sizeof archs[0])

static const moert_nvrtc *nvrtc_or_fail(void) {
  const moert_nvrtc *nv = NULL;
  char why[512] = "";
  moert_status st = moert_nvrtc_get(&nv, why, sizeof why);
  ck_assert_msg(st == MOERT_OK, "NVRTC must be present for this test: %s", why);
  return nv;
}

static void def(moert_jit_request *q, const char *text) { q->defines[q->num_defines++] = text; }

static void compile_ok(const moert_nvrtc *nv, const moert_jit_request *q, const char *arch) {
  void *image = NULL;
  size_t size = 0;
  moert_status st = moert_jit_compile(nv, q, arch, &image, &size);
  ck_assert_msg(st == MOERT_OK, "%s for %s: %s", q->source, arch, moert_last_error());
  ck_assert_ptr_nonnull(image);
  ck_assert_uint_gt(size, 64);
  if (strncmp(arch, "sm_", 3) == 0) /* a CUBIN is an ELF file */
    ck_assert_msg(memcmp(image, "\177ELF", 4) == 0, "%s for %s is not a CUBIN", q->source, arch);
  else
    ck_assert_msg(strstr((const char *)image, ".target") != NULL, "no PTX for %s", q->source);
  free(image);
}

START_TEST(test_nvrtc_version) {
  const moert_nvrtc *nv = nvrtc_or_fail();
  ck_assert_int_ge(nv->major, 11);
  char arch[32];
  ck_assert_int_eq(moert_jit_pick_arch(nv, 9, 0, arch, sizeof arch), MOERT_OK);
  ck_assert_str_eq(arch, "sm_90a");
  ck_assert_int_eq(moert_jit_pick_arch(nv, 8, 0, arch, sizeof arch), MOERT_OK);
  ck_assert_str_eq(arch, "sm_80");
  ck_assert_int_eq(moert_jit_pick_arch(nv, 8, 9, arch, sizeof arch), MOERT_OK);
  ck_assert_str_eq(arch, "sm_89");
  /* an architecture newer than NVRTC knows: PTX of the newest it knows */
  ck_assert_int_eq(moert_jit_pick_arch(nv, 99, 9, arch, sizeof arch), MOERT_OK);
  ck_assert_msg(strncmp(arch, "compute_", 8) == 0, "got %s", arch);
  ck_assert_int_eq(moert_jit_pick_arch(nv, 7, 5, arch, sizeof arch), MOERT_ERR_UNSUPPORTED);
  ck_assert_ptr_nonnull(strstr(moert_last_error(), "sm_80"));
}
END_TEST

/* route.cu for the three router shapes of the reference models, on one arch per run */
START_TEST(test_route_compiles) {
  const moert_nvrtc *nv = nvrtc_or_fail();
  const char *arch = archs[_i];
  moert_jit_request softmax = {.source = "route.cu"};
  def(&softmax, "MOERT_E=128"), def(&softmax, "MOERT_K=8"), def(&softmax, "MOERT_ROUTER=1");
  def(&softmax, "MOERT_RENORM=1"), def(&softmax, "MOERT_NGROUP=1"), def(&softmax, "MOERT_TOPK_GROUP=1");
  compile_ok(nv, &softmax, arch);
  moert_jit_request plain = {.source = "route.cu"};
  def(&plain, "MOERT_E=60"), def(&plain, "MOERT_K=4"), def(&plain, "MOERT_ROUTER=1");
  def(&plain, "MOERT_RENORM=0"), def(&plain, "MOERT_NGROUP=1"), def(&plain, "MOERT_TOPK_GROUP=1");
  compile_ok(nv, &plain, arch);
  moert_jit_request sigmoid = {.source = "route.cu"};
  def(&sigmoid, "MOERT_E=256"), def(&sigmoid, "MOERT_K=8"), def(&sigmoid, "MOERT_ROUTER=2");
  def(&sigmoid, "MOERT_RENORM=1"), def(&sigmoid, "MOERT_NGROUP=8"), def(&sigmoid, "MOERT_TOPK_GROUP=4");
  compile_ok(nv, &sigmoid, arch);
  moert_jit_request plan = {.source = "plan.cu", .fmad = true};
  compile_ok(nv, &plan, arch);
}
END_TEST

/* expert.cu in bf16, f16 and f32 with the smallest and a large row block */
START_TEST(test_expert_compiles) {
  const moert_nvrtc *nv = nvrtc_or_fail();
  const char *arch = archs[_i];
  static const char *const acts[] = {"MOERT_ACT=1", "MOERT_ACT=2", "MOERT_ACT=3"};
  static const char *const bms[] = {"MOERT_BM=16", "MOERT_BM=64"};
  for (int a = 0; a < 3; a++)
    for (int b = 0; b < 2; b++) {
      moert_jit_request q = {.source = "expert.cu", .fmad = true};
      def(&q, acts[a]);
      def(&q, bms[b]);
      if (b == 0 && a < 2) { /* the decode tile the backend picks for 16-row blocks */
        def(&q, "MOERT_BN=32");
        def(&q, "MOERT_BK=64");
        def(&q, "MOERT_STAGES=4");
      }
      compile_ok(nv, &q, arch);
    }
}
END_TEST

START_TEST(test_ptx_for_unknown_arch) {
  const moert_nvrtc *nv = nvrtc_or_fail();
  char arch[32];
  ck_assert_int_eq(moert_jit_pick_arch(nv, 99, 9, arch, sizeof arch), MOERT_OK);
  moert_jit_request q = {.source = "expert.cu", .fmad = true};
  def(&q, "MOERT_ACT=1");
  def(&q, "MOERT_BM=32");
  compile_ok(nv, &q, arch);
}
END_TEST

START_TEST(test_compile_error_has_log) {
  const moert_nvrtc *nv = nvrtc_or_fail();
  moert_jit_request q = {.source = "expert.cu", .fmad = true};
  def(&q, "MOERT_ACT=4"); /* #error in moert_device.h */
  void *image = NULL;
  size_t size = 0;
  uint64_t before = moert_jit_compile_count();
  ck_assert_int_eq(moert_jit_compile(nv, &q, "sm_90a", &image, &size), MOERT_ERR_COMPILE);
  ck_assert_ptr_null(image);
  ck_assert_uint_eq(moert_jit_compile_count(), before + 1);
  const char *err = moert_last_error();
  ck_assert_msg(strstr(err, "expert.cu") && strstr(err, "MOERT_ACT must be 1"),
                "the error should name the source and hold the NVRTC log: %s", err);
  moert_jit_request missing = {.source = "no_such_kernel.cu"};
  ck_assert_int_eq(moert_jit_compile(nv, &missing, "sm_90a", &image, &size), MOERT_ERR_INTERNAL);
}
END_TEST

/* Without a driver (CI): CUDA fails with a sentence, AUTO falls back to CPU and says why.
 * With one (the GPU machine): both give the CUDA backend. */
START_TEST(test_backend_choice) {
  const moert_cuda_driver *cu = NULL;
  char why[256] = "";
  const bool have_driver = moert_cuda_driver_get(&cu, why, sizeof why) == MOERT_OK;
  moert_runtime_options o;
  moert_runtime_options_init(&o);
  o.cache_dir = "";
  moert_runtime *rt = NULL;
  o.backend = MOERT_BACKEND_CUDA;
  moert_status st = moert_runtime_create(&o, &rt);
  if (have_driver) {
    ck_assert_msg(st == MOERT_OK, "CUDA backend with a driver present: %s", moert_last_error());
    ck_assert_uint_eq(moert_runtime_backend(rt), MOERT_BACKEND_CUDA);
    ck_assert_msg(strncmp(moert_runtime_backend_note(rt), "CUDA: ", 6) == 0, "note: %s",
                  moert_runtime_backend_note(rt));
    moert_runtime_destroy(rt);
  } else {
    ck_assert_int_eq(st, MOERT_ERR_BACKEND_UNAVAILABLE);
    ck_assert_ptr_null(rt);
    ck_assert_msg(strlen(moert_last_error()) > 10, "no sentence for the missing driver");
    ck_assert_msg(strstr(moert_last_error(), "libcuda") || strstr(moert_last_error(), "driver"),
                  "the sentence should name the driver: %s", moert_last_error());
  }
  o.backend = MOERT_BACKEND_AUTO;
  ck_assert_int_eq(moert_runtime_create(&o, &rt), MOERT_OK);
  const char *note = moert_runtime_backend_note(rt);
  if (have_driver) {
    ck_assert_uint_eq(moert_runtime_backend(rt), MOERT_BACKEND_CUDA);
  } else {
    ck_assert_uint_eq(moert_runtime_backend(rt), MOERT_BACKEND_CPU);
    ck_assert_msg(strstr(note, "CPU") && (strstr(note, "libcuda") || strstr(note, "driver")),
                  "the note should say CPU and why: %s", note);
  }
  moert_runtime_destroy(rt);
}
END_TEST

START_TEST(test_bad_nvrtc_path) {
  const char *old = getenv("MOERT_NVRTC_PATH");
  char saved[512] = "";
  if (old) snprintf(saved, sizeof saved, "%s", old);
  setenv("MOERT_NVRTC_PATH", "/nonexistent/libnvrtc.so.99", 1);
  const moert_nvrtc *nv = NULL;
  char why[512] = "";
  moert_status st = moert_nvrtc_get(&nv, why, sizeof why);
  ck_assert_int_eq(st, MOERT_ERR_BACKEND_UNAVAILABLE);
  ck_assert_msg(strstr(why, "MOERT_NVRTC_PATH") && strstr(why, "/nonexistent/libnvrtc.so.99"),
                "the sentence should name the variable and the path: %s", why);
  /* through the public API: CUDA fails (no driver here, or no NVRTC there) with a sentence */
  moert_runtime_options o;
  moert_runtime_options_init(&o);
  o.backend = MOERT_BACKEND_CUDA;
  o.cache_dir = "";
  moert_runtime *rt = NULL;
  ck_assert_int_eq(moert_runtime_create(&o, &rt), MOERT_ERR_BACKEND_UNAVAILABLE);
  ck_assert_ptr_null(rt);
  ck_assert_msg(strlen(moert_last_error()) > 10, "no sentence");
  /* and a good path again works */
  if (old)
    setenv("MOERT_NVRTC_PATH", saved, 1);
  else
    unsetenv("MOERT_NVRTC_PATH");
  ck_assert_int_eq(moert_nvrtc_get(&nv, why, sizeof why), MOERT_OK);
}
END_TEST

int main(void) {
  Suite *s = suite_create("nvrtc_compile");
  TCase *tc = tcase_create("compile");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, test_nvrtc_version);
  tcase_add_loop_test(tc, test_route_compiles, 0, (int)NUM_ARCHS);
  tcase_add_loop_test(tc, test_expert_compiles, 0, (int)NUM_ARCHS);
  tcase_add_test(tc, test_ptx_for_unknown_arch);
  tcase_add_test(tc, test_compile_error_has_log);
  suite_add_tcase(s, tc);
  TCase *tl = tcase_create("loader");
  tcase_set_timeout(tl, 120);
  tcase_add_test(tl, test_backend_choice);
  tcase_add_test(tl, test_bad_nvrtc_path);
  suite_add_tcase(s, tl);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
