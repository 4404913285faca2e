/* loader.c — finds the CUDA driver (libcuda.so.1) and NVRTC at run time with dlopen and
 * resolves every entry point moert calls into a table (cuda_api.h), so the library needs no
 * CUDA toolkit to build and runs on machines without a GPU.  A missing library or symbol,
 * the toolkit's stub libcuda (cuInit -> CUDA_ERROR_STUB_LIBRARY) and a machine with no
 * device all come back as MOERT_ERR_BACKEND_UNAVAILABLE and a sentence, never a crash.
 * Both tables are process-wide: loaded once under a mutex and never unloaded, because
 * function pointers from them live in every runtime. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_api.h"

static pthread_mutex_t loader_lock = PTHREAD_MUTEX_INITIALIZER;

/* ---- driver ---- */
static moert_cuda_driver driver_table;
static int driver_state; /* 0 not tried, 1 loaded, -1 failed (why in driver_why) */
static char driver_why[256];

static bool resolve(void *lib, const char *sym, void **slot, char *why, size_t why_size,
                    const char *libname) {
  dlerror();
  void *p = dlsym(lib, sym);
  if (!p) {
    snprintf(why, why_size, "%s has no symbol %s (the library is too old or not the real one)",
             libname, sym);
    return false;
  }
  *slot = p;
  return true;
}

static int load_driver_locked(void) {
  void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    snprintf(driver_why, sizeof driver_why,
             "libcuda.so.1 not found (no NVIDIA driver on this machine)");
    return -1;
  }
  moert_cuda_driver t;
  memset(&t, 0, sizeof t);
  t.lib = lib;
#define MOERT_RESOLVE_(ret, name, sym, args)                                              \
  if (!resolve(lib, sym, (void **)&t.name, driver_why, sizeof driver_why, "libcuda.so.1")) \
    return -1;
  MOERT_CUDA_DRIVER_LIST(MOERT_RESOLVE_)
#undef MOERT_RESOLVE_
#define MOERT_RESOLVE_OPT_(ret, name, sym, args) *(void **)&t.name = dlsym(lib, sym);
  MOERT_CUDA_DRIVER_OPTIONAL_LIST(MOERT_RESOLVE_OPT_)
#undef MOERT_RESOLVE_OPT_
  CUresult rc = t.cuInit(0);
  if (rc == MOERT_CUDA_ERROR_STUB_LIBRARY) {
    snprintf(driver_why, sizeof driver_why,
             "libcuda.so.1 is the CUDA toolkit's stub library (cuInit: CUDA_ERROR_STUB_LIBRARY): "
             "no NVIDIA driver is installed");
    return -1;
  }
  if (rc == MOERT_CUDA_ERROR_NO_DEVICE) {
    snprintf(driver_why, sizeof driver_why,
             "the NVIDIA driver reports no CUDA device (cuInit: CUDA_ERROR_NO_DEVICE)");
    return -1;
  }
  if (rc != MOERT_CUDA_SUCCESS) {
    const char *name = NULL;
    if (t.cuGetErrorName(rc, &name) != MOERT_CUDA_SUCCESS) name = NULL;
    snprintf(driver_why, sizeof driver_why, "cuInit failed with CUDA error %d (%s)", rc,
             name ? name : "unknown");
    return -1;
  }
  driver_table = t;
  return 1;
}

moert_status moert_cuda_driver_get(const moert_cuda_driver **out, char *why, size_t why_size) {
  pthread_mutex_lock(&loader_lock);
  if (driver_state == 0) driver_state = load_driver_locked();
  int state = driver_state;
  pthread_mutex_unlock(&loader_lock);
  if (state > 0) {
    *out = &driver_table;
    return MOERT_OK;
  }
  if (why && why_size) snprintf(why, why_size, "%s", driver_why);
  return MOERT_ERR_BACKEND_UNAVAILABLE;
}

/* ---- NVRTC ---- */
static moert_nvrtc nvrtc_table;
static bool nvrtc_loaded;
static char nvrtc_env[512]; /* the MOERT_NVRTC_PATH value nvrtc_table was loaded under */

static bool try_nvrtc(const char *name, moert_nvrtc *t, char *why, size_t why_size) {
  void *lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    const char *err = dlerror();
    snprintf(why, why_size, "%s could not be loaded (%s)", name, err ? err : "not found");
    return false;
  }
  memset(t, 0, sizeof *t);
  t->lib = lib;
#define MOERT_RESOLVE_(ret, fn, sym, args) \
  if (!resolve(lib, sym, (void **)&t->fn, why, why_size, name)) goto bad;
  MOERT_NVRTC_LIST(MOERT_RESOLVE_)
#undef MOERT_RESOLVE_
  if (t->nvrtcVersion(&t->major, &t->minor) != 0) {
    snprintf(why, why_size, "%s: nvrtcVersion failed", name);
    goto bad;
  }
  snprintf(t->path, sizeof t->path, "%s", name);
  return true;
bad:
  dlclose(lib);
  return false;
}

moert_status moert_nvrtc_get(const moert_nvrtc **out, char *why, size_t why_size) {
  const char *env = getenv("MOERT_NVRTC_PATH");
  if (env && !*env) env = NULL;
  moert_status st = MOERT_OK;
  char err[512] = "";
  pthread_mutex_lock(&loader_lock);
  if (!nvrtc_loaded || strcmp(nvrtc_env, env ? env : "") != 0) {
    /* Loaded tables are never unloaded (compiled code may still hold pointers from a
     * runtime); a changed MOERT_NVRTC_PATH loads the new library over the table. */
    moert_nvrtc t;
    bool ok = false;
    if (env) {
      ok = try_nvrtc(env, &t, err, sizeof err);
      if (!ok) {
        char detail[512];
        snprintf(detail, sizeof detail, "%s", err);
        snprintf(err, sizeof err, "MOERT_NVRTC_PATH names a library NVRTC cannot be loaded from: %.400s",
                 detail);
      }
    } else {
      static const char *const names[] = {
          "libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so",
          "/usr/local/cuda/lib64/libnvrtc.so.13", "/usr/local/cuda/lib64/libnvrtc.so.12",
          "/usr/local/cuda/lib64/libnvrtc.so"};
      for (size_t i = 0; i < sizeof names / sizeof names[0] && !ok; i++)
        ok = try_nvrtc(names[i], &t, err, sizeof err);
      if (!ok)
        snprintf(err, sizeof err,
                 "NVRTC not found: tried libnvrtc.so.13, libnvrtc.so.12, libnvrtc.so and "
                 "/usr/local/cuda/lib64 (install the CUDA runtime compiler or set "
                 "MOERT_NVRTC_PATH)");
    }
    if (ok) {
      nvrtc_table = t;
      nvrtc_loaded = true;
      snprintf(nvrtc_env, sizeof nvrtc_env, "%s", env ? env : "");
    } else {
      st = MOERT_ERR_BACKEND_UNAVAILABLE;
    }
  }
  pthread_mutex_unlock(&loader_lock);
  if (st != MOERT_OK) {
    if (why && why_size) snprintf(why, why_size, "%s", err);
    return st;
  }
  *out = &nvrtc_table;
  return MOERT_OK;
}

moert_status moert_cuda_launch(const moert_cuda_driver *cu, CUfunction f, unsigned gx,
                               unsigned gy, unsigned threads, unsigned smem, CUstream stream,
                               void **params, const char *name, bool pdl) {
  CUresult rc;
  if (pdl && cu->cuLaunchKernelEx) {
    moert_cu_launch_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.id = MOERT_CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
    attr.value.programmatic_stream_serialization_allowed = 1;
    moert_cu_launch_config cfg = {gx, gy, 1, threads, 1, 1, smem, stream, &attr, 1};
    rc = cu->cuLaunchKernelEx(&cfg, f, params, NULL);
  } else {
    pdl = false;
    rc = cu->cuLaunchKernel(f, gx, gy, 1, threads, 1, 1, smem, stream, params, NULL);
  }
  if (rc == MOERT_CUDA_SUCCESS) return MOERT_OK;
  char what[96];
  snprintf(what, sizeof what, "%s(%s)", pdl ? "cuLaunchKernelEx" : "cuLaunchKernel", name);
  return moert_cuda_fail(cu, rc, what);
}

moert_status moert_cuda_fail(const moert_cuda_driver *cu, CUresult rc, const char *what) {
  const char *name = NULL, *text = NULL;
  if (cu && cu->cuGetErrorName(rc, &name) != MOERT_CUDA_SUCCESS) name = NULL;
  if (cu && cu->cuGetErrorString(rc, &text) != MOERT_CUDA_SUCCESS) text = NULL;
  moert_status st = MOERT_ERR_DRIVER;
  if (rc == 2 /* CUDA_ERROR_OUT_OF_MEMORY */) st = MOERT_ERR_OUT_OF_MEMORY;
  return moert_fail(st, "%s failed: %s (%s)", what, name ? name : "CUDA error",
                    text ? text : "no description");
}
