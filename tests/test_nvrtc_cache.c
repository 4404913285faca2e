/* test_nvrtc_cache.c — the JIT disk cache under faults, with no GPU: kernels are compiled
 * by the real NVRTC (runtime/cuda/jit.c's moert_jit_module), and the driver is a stand-in
 * table whose cuModuleLoadData accepts only a CUBIN (an ELF image) equal, byte for byte,
 * to the one NVRTC produced.  So a cache file that is corrupt, truncated, of another
 * format or garbage behind a valid checksum can never reach "the driver" unnoticed:
 *  - cold then warm: one compile, then none from a fresh cache on the same folder;
 *  - a flipped payload byte, a flipped header byte, truncation (to 0, into the header,
 *    into the payload), trailing bytes: detected, recompiled, the file rewritten good;
 *  - a file with a valid header and checksum over a payload the driver refuses: rebuilt
 *    once, and the call succeeds;
 *  - a missing nested folder is created; an unusable folder (under a regular file, in
 *    /proc, or read-only where permissions apply) means no disk caching, and every call
 *    still succeeds; "" disables the disk cache;
 *  - 8 threads with caches of their own on one folder compiling and storing the same
 *    kernel at once while another thread keeps corrupting and truncating the file: every
 *    load gets the right image, no temporary file is left, the final file is good.
 * NVRTC and driver missing are covered by test_nvrtc_compile (loader paths).
 * Links moert_static for the private hooks in runtime/cuda/jit.h; label nvrtc. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cuda/cuda_api.h"
#include "cuda/jit.h"
#include "internal.h"

/* ---- the stand-in driver ---- */

static unsigned char *g_ref;  /* the CUBIN NVRTC makes for the request */
static size_t g_ref_size;
static atomic_uint g_loads, g_refused;

typedef struct fake_module {
  unsigned magic;
} fake_module;

static CUresult fake_load(CUmodule *out, const void *image) {
  /* a CUBIN equal to the reference; anything else is refused as an invalid image */
  if (!g_ref || memcmp(image, g_ref, g_ref_size) != 0) {
    atomic_fetch_add(&g_refused, 1);
    return 200; /* CUDA_ERROR_INVALID_IMAGE */
  }
  fake_module *m = malloc(sizeof *m);
  if (!m) return 2;
  m->magic = 0x600d;
  *out = (CUmodule)(void *)m;
  atomic_fetch_add(&g_loads, 1);
  return MOERT_CUDA_SUCCESS;
}
static CUresult fake_unload(CUmodule m) {
  ck_assert_uint_eq(((fake_module *)(void *)m)->magic, 0x600d);
  free(m);
  return MOERT_CUDA_SUCCESS;
}
static CUresult fake_name(CUresult rc, const char **s) {
  *s = rc == 200 ? "CUDA_ERROR_INVALID_IMAGE" : "CUDA_ERROR_UNKNOWN";
  return MOERT_CUDA_SUCCESS;
}
static CUresult fake_string(CUresult rc, const char **s) {
  (void)rc;
  *s = "refused by the test's stand-in driver";
  return MOERT_CUDA_SUCCESS;
}

static moert_cuda_driver g_cu;
static const moert_nvrtc *g_nv;
static const moert_jit_request g_req = {.source = "plan.cu", .fmad = true};
static const char *const g_arch = "sm_90";

static void setup(void) {
  char why[512] = "";
  ck_assert_msg(moert_nvrtc_get(&g_nv, why, sizeof why) == MOERT_OK,
                "NVRTC must be present for this test: %s", why);
  memset(&g_cu, 0, sizeof g_cu);
  g_cu.cuModuleLoadData = fake_load;
  g_cu.cuModuleUnload = fake_unload;
  g_cu.cuGetErrorName = fake_name;
  g_cu.cuGetErrorString = fake_string;
  if (!g_ref) {
    void *img = NULL;
    ck_assert_msg(moert_jit_compile(g_nv, &g_req, g_arch, &img, &g_ref_size) == MOERT_OK, "%s",
                  moert_last_error());
    ck_assert_msg(memcmp(img, "\177ELF", 4) == 0, "not a CUBIN");
    g_ref = img;
    /* NVRTC is deterministic: a second compile gives the same bytes (else the stand-in
     * driver's equality test would be meaningless) */
    void *again = NULL;
    size_t n = 0;
    ck_assert_int_eq(moert_jit_compile(g_nv, &g_req, g_arch, &again, &n), MOERT_OK);
    ck_assert_msg(n == g_ref_size && memcmp(again, g_ref, n) == 0,
                  "two NVRTC compiles of the same kernel differ");
    free(again);
  }
}

/* ---- helpers ---- */

static void tmpdir(char *out, size_t n, const char *tag) {
  snprintf(out, n, "/tmp/moert-jit-test-%ld-%s-XXXXXX", (long)getpid(), tag);
  ck_assert_ptr_nonnull(mkdtemp(out));
}

static void rm_rf(const char *dir) {
  char cmd[1400];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  ck_assert_int_eq(system(cmd), 0);
}

/* One fresh per-runtime cache on dir asks for the module; returns the compiles it did. */
static uint64_t one_load(const char *dir, moert_status want) {
  moert_jit_cache c;
  ck_assert_int_eq(moert_jit_cache_init(&c, &g_cu, g_nv, NULL, g_arch, dir), MOERT_OK);
  const uint64_t before = moert_jit_compile_count();
  CUmodule m = NULL;
  moert_status st = moert_jit_module(&c, &g_req, &m);
  ck_assert_msg(st == want, "moert_jit_module: %d, want %d (%s)", st, want, moert_last_error());
  if (st == MOERT_OK) {
    ck_assert_ptr_nonnull(m);
    CUmodule again = NULL; /* the memory cache: same module, no work */
    ck_assert_int_eq(moert_jit_module(&c, &g_req, &again), MOERT_OK);
    ck_assert_ptr_eq(m, again);
  }
  moert_jit_cache_fini(&c);
  return moert_jit_compile_count() - before;
}

/* The cache files in dir: count of moert-*.bin, and whether any temporary is left. */
static int cache_files(const char *dir, char *path, size_t n, int *temps) {
  DIR *d = opendir(dir);
  int count = 0;
  *temps = 0;
  if (!d) return 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (strncmp(e->d_name, "moert-", 6) != 0) continue;
    if (strstr(e->d_name, ".tmp")) {
      (*temps)++;
      continue;
    }
    count++;
    snprintf(path, n, "%s/%s", dir, e->d_name);
  }
  closedir(d);
  return count;
}

static unsigned char *read_all(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  ck_assert_ptr_nonnull(f);
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *buf = malloc((size_t)len + 1);
  ck_assert_uint_eq(fread(buf, 1, (size_t)len, f), (size_t)len);
  fclose(f);
  *n = (size_t)len;
  return buf;
}

static void write_all(const char *path, const void *p, size_t n) {
  FILE *f = fopen(path, "wb");
  ck_assert_ptr_nonnull(f);
  ck_assert_uint_eq(fwrite(p, 1, n, f), n);
  ck_assert_int_eq(fclose(f), 0);
}

/* a cold + warm cache on dir; returns the file's path */
static void prime_cache(const char *dir, char *path, size_t n) {
  int temps;
  ck_assert_uint_eq(one_load(dir, MOERT_OK), 1);
  ck_assert_int_eq(cache_files(dir, path, n, &temps), 1);
  ck_assert_int_eq(temps, 0);
  ck_assert_uint_eq(one_load(dir, MOERT_OK), 0);
}

/* ---- tests ---- */

START_TEST(cold_then_warm) {
  setup();
  char dir[256], path[1200];
  tmpdir(dir, sizeof dir, "warm");
  unsigned refused = atomic_load(&g_refused);
  prime_cache(dir, path, sizeof path);
  ck_assert_uint_eq(atomic_load(&g_refused), refused);
  size_t n;
  unsigned char *file = read_all(path, &n);
  ck_assert_uint_gt(n, g_ref_size);
  ck_assert_msg(memcmp(file + n - g_ref_size, g_ref, g_ref_size) == 0,
                "the cache file does not end with the CUBIN");
  ck_assert_msg(memcmp(file, "MOERTJIT", 8) == 0, "no header");
  free(file);
  rm_rf(dir);
}
END_TEST

/* _i picks the damage; each must be detected, recompiled and the file rewritten good. */
START_TEST(damaged_file) {
  setup();
  static const char *const what[] = {"a flipped payload byte", "a flipped header byte",
                                     "truncated to 0 bytes", "truncated inside the header",
                                     "truncated inside the payload", "one byte short",
                                     "trailing bytes", "another format number",
                                     "a valid checksum over a payload the driver refuses"};
  char dir[256], path[1200];
  tmpdir(dir, sizeof dir, "damage");
  prime_cache(dir, path, sizeof path);
  size_t n;
  unsigned char *file = read_all(path, &n);
  const size_t header = n - g_ref_size;
  unsigned char *bad = malloc(n + 64);
  memcpy(bad, file, n);
  size_t bad_n = n;
  switch (_i) {
  case 0: bad[header + (n - header) / 2] ^= 0x40; break;
  case 1: bad[header - 1] ^= 0x01; break; /* the checksum's last byte */
  case 2: bad_n = 0; break;
  case 3: bad_n = header / 2; break;
  case 4: bad_n = header + g_ref_size / 2; break;
  case 5: bad_n = n - 1; break;
  case 6: memcpy(bad + n, "garbage", 7), bad_n = n + 7; break;
  case 7: bad[8] ^= 0x02; break; /* format */
  default: { /* garbage payload, header checksum recomputed: only the driver can tell */
    for (size_t i = header; i < n; i++) bad[i] = (unsigned char)(i * 37u);
    uint64_t sum = moert_fnv1a(MOERT_FNV_OFFSET, bad + header, n - header);
    memcpy(bad + header - 8, &sum, 8);
  }
  }
  write_all(path, bad, bad_n);
  unsigned refused = atomic_load(&g_refused);
  ck_assert_msg(one_load(dir, MOERT_OK) == 1, "%s: not recompiled", what[_i]);
  if (_i == 8)
    ck_assert_msg(atomic_load(&g_refused) == refused + 1, "the driver saw the bad image %u times",
                  atomic_load(&g_refused) - refused);
  else
    ck_assert_msg(atomic_load(&g_refused) == refused, "%s reached the driver", what[_i]);
  /* rewritten good: the next fresh cache compiles nothing */
  ck_assert_msg(one_load(dir, MOERT_OK) == 0, "%s: the file was not rewritten", what[_i]);
  size_t m;
  unsigned char *now = read_all(path, &m);
  ck_assert_msg(m == n && memcmp(now, file, n) == 0, "%s: the rewritten file differs", what[_i]);
  int temps;
  ck_assert_int_eq(cache_files(dir, path, sizeof path, &temps), 1);
  ck_assert_int_eq(temps, 0);
  fprintf(stderr, "test_nvrtc_cache: %s: detected, recompiled, rewritten\n", what[_i]);
  free(now);
  free(bad);
  free(file);
  rm_rf(dir);
}
END_TEST

START_TEST(missing_and_unusable_dirs) {
  setup();
  char dir[256], path[1200], nested[600];
  tmpdir(dir, sizeof dir, "dirs");
  /* a missing nested folder is made */
  snprintf(nested, sizeof nested, "%s/a/b/c", dir);
  prime_cache(nested, path, sizeof path);
  /* a folder under a regular file: no disk cache, every call still works */
  char file[600], under[700];
  snprintf(file, sizeof file, "%s/plain-file", dir);
  write_all(file, "x", 1);
  snprintf(under, sizeof under, "%s/cache", file);
  for (int i = 0; i < 2; i++) ck_assert_uint_eq(one_load(under, MOERT_OK), 1);
  /* a folder nobody may create (procfs refuses even root) */
  for (int i = 0; i < 2; i++) ck_assert_uint_eq(one_load("/proc/self/moert-cache", MOERT_OK), 1);
  /* the disk cache disabled */
  for (int i = 0; i < 2; i++) ck_assert_uint_eq(one_load("", MOERT_OK), 1);
  /* a read-only folder, where permissions apply (not for root) */
  char ro[600];
  snprintf(ro, sizeof ro, "%s/read-only", dir);
  ck_assert_int_eq(mkdir(ro, 0555), 0);
  if (geteuid() != 0) {
    for (int i = 0; i < 2; i++) ck_assert_uint_eq(one_load(ro, MOERT_OK), 1);
    int temps;
    ck_assert_int_eq(cache_files(ro, path, sizeof path, &temps), 0);
    fprintf(stderr, "test_nvrtc_cache: read-only folder: compiled each time, nothing written\n");
  } else {
    fprintf(stderr, "test_nvrtc_cache: running as root, so a 0555 folder is writable: the "
                    "unwritable cases are a folder under a regular file and one in /proc\n");
  }
  /* a cache file that cannot be read (a folder in its place): compiled, and no harm */
  char keep[1200];
  snprintf(keep, sizeof keep, "%s", path);
  int temps;
  ck_assert_int_eq(cache_files(nested, path, sizeof path, &temps), 1);
  ck_assert_int_eq(unlink(path), 0);
  ck_assert_int_eq(mkdir(path, 0755), 0);
  for (int i = 0; i < 2; i++) ck_assert_uint_eq(one_load(nested, MOERT_OK), 1);
  ck_assert_int_eq(cache_files(nested, path, sizeof path, &temps), 1);
  ck_assert_int_eq(temps, 0);
  (void)keep;
  chmod(ro, 0755);
  rm_rf(dir);
}
END_TEST

/* ---- concurrent writers, and a vandal ---- */

typedef struct racer {
  const char *dir;
  int rounds;
  int failures;
  char error[256];
} racer;

static atomic_int g_stop;

static void *racer_body(void *arg) {
  racer *r = arg;
  for (int i = 0; i < r->rounds; i++) {
    moert_jit_cache c;
    if (moert_jit_cache_init(&c, &g_cu, g_nv, NULL, g_arch, r->dir) != MOERT_OK) {
      r->failures++;
      continue;
    }
    CUmodule m = NULL;
    moert_status st = moert_jit_module(&c, &g_req, &m);
    if (st != MOERT_OK && !r->failures++)
      snprintf(r->error, sizeof r->error, "%s", moert_last_error());
    moert_jit_cache_fini(&c);
  }
  return NULL;
}

/* keeps damaging the cache file while the racers run */
static void *vandal_body(void *arg) {
  const char *dir = arg;
  unsigned i = 0;
  while (!atomic_load(&g_stop)) {
    char path[1200];
    int temps;
    if (cache_files(dir, path, sizeof path, &temps) == 1) {
      FILE *f = fopen(path, "r+b");
      if (f) {
        if (i % 3 == 0) { /* flip a byte somewhere */
          fseek(f, (long)(64 + (i * 7919u) % g_ref_size), SEEK_SET);
          int ch = fgetc(f);
          if (ch != EOF) {
            fseek(f, -1, SEEK_CUR);
            fputc(ch ^ 0x10, f);
          }
        }
        fclose(f);
        if (i % 3 == 1) (void)truncate(path, (off_t)((i * 104729u) % (g_ref_size + 64)));
        if (i % 3 == 2) (void)unlink(path);
      }
    }
    i++;
    usleep(200);
  }
  return NULL;
}

START_TEST(concurrent_writers) {
  setup();
  char dir[256], path[1200];
  tmpdir(dir, sizeof dir, "race");
  enum { N = 8 };
  racer r[N];
  pthread_t th[N], vandal;
  unsigned refused = atomic_load(&g_refused), loads = atomic_load(&g_loads);
  const uint64_t compiles = moert_jit_compile_count();
  atomic_store(&g_stop, 0);
  /* first: all at once on an empty folder, no vandal */
  for (int i = 0; i < N; i++) {
    r[i] = (racer){.dir = dir, .rounds = 1};
    ck_assert_int_eq(pthread_create(&th[i], NULL, racer_body, &r[i]), 0);
  }
  for (int i = 0; i < N; i++) {
    pthread_join(th[i], NULL);
    ck_assert_msg(r[i].failures == 0, "racer %d: %s", i, r[i].error);
  }
  int temps;
  ck_assert_int_eq(cache_files(dir, path, sizeof path, &temps), 1);
  ck_assert_int_eq(temps, 0);
  ck_assert_uint_eq(one_load(dir, MOERT_OK), 0);
  /* then: many rounds while the file is damaged, truncated and removed under them */
  ck_assert_int_eq(pthread_create(&vandal, NULL, vandal_body, dir), 0);
  for (int i = 0; i < N; i++) {
    r[i] = (racer){.dir = dir, .rounds = 6};
    ck_assert_int_eq(pthread_create(&th[i], NULL, racer_body, &r[i]), 0);
  }
  for (int i = 0; i < N; i++) {
    pthread_join(th[i], NULL);
    ck_assert_msg(r[i].failures == 0, "racer %d under the vandal: %s", i, r[i].error);
  }
  atomic_store(&g_stop, 1);
  pthread_join(vandal, NULL);
  /* a garbage image with a valid checksum may have been produced by the vandal only by
   * chance; anything refused was rebuilt, and every loaded module was the right image */
  const unsigned got_loads = atomic_load(&g_loads) - loads;
  ck_assert_uint_eq(got_loads, N + 1 + N * 6);
  /* the folder ends clean: one good file or none (the vandal may have removed it), no
   * temporaries */
  int files = cache_files(dir, path, sizeof path, &temps);
  ck_assert_int_eq(temps, 0);
  ck_assert_int_le(files, 1);
  fprintf(stderr, "test_nvrtc_cache: %d writers on one folder, then %d loads under a vandal: "
                  "%u modules loaded, all the right image; %llu compiles; %u images refused; "
                  "no temporary left\n", N, N * 6, got_loads,
          (unsigned long long)(moert_jit_compile_count() - compiles),
          atomic_load(&g_refused) - refused);
  (void)one_load(dir, MOERT_OK);
  ck_assert_uint_eq(one_load(dir, MOERT_OK), 0);
  rm_rf(dir);
}
END_TEST

int main(void) {
  Suite *su = suite_create("nvrtc_cache");
  TCase *tc = tcase_create("nvrtc_cache");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, cold_then_warm);
  tcase_add_loop_test(tc, damaged_file, 0, 9);
  tcase_add_test(tc, missing_and_unusable_dirs);
  tcase_add_test(tc, concurrent_writers);
  suite_add_tcase(su, tc);
  SRunner *sr = srunner_create(su);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
