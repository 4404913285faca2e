/* jit.h — NVRTC compilation of the embedded kernel sources (the .cu files of ptx/) and the two-level
 * cache of the results: loaded modules in memory (per runtime) and CUBIN/PTX images on
 * disk (per user), keyed by a hash of every kernel source, the options, the NVRTC version
 * and the target architecture.  Private to the library; the tests call the
 * moert_jit_compile() hook directly to compile for architectures with no GPU present. */
#ifndef MOERT_CUDA_JIT_H
#define MOERT_CUDA_JIT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cuda_api.h"

#define MOERT_JIT_MAX_DEFINES 24

/* One kernel module to build: a source file of ptx/ and its -D definitions. */
typedef struct moert_jit_request {
  const char *source;                         /* "route.cu", "plan.cu", "expert.cu" */
  const char *defines[MOERT_JIT_MAX_DEFINES]; /* "NAME=VALUE" each */
  size_t num_defines;
  bool fmad; /* allow fused multiply-add contraction (false for the bit-exact router) */
  bool no_spills; /* a test hook: ptxas fails on any register spill (--warn-on-spills
                   * --warning-as-error), so a register budget that no longer fits fails CI */
} moert_jit_request;

/* Compiles req for the NVRTC architecture option arch ("sm_90a" gives a CUBIN,
 * "compute_90" gives PTX).  On success *image (malloc'd, caller frees) and *size hold the
 * result.  A compile error returns MOERT_ERR_COMPILE with the NVRTC log in the last
 * error.  Needs NVRTC, not a GPU.  Counts towards moert_jit_compile_count(). */
moert_status moert_jit_compile(const moert_nvrtc *nvrtc, const moert_jit_request *req,
                               const char *arch, void **image, size_t *size);

/* NVRTC compilations done by this process (a test hook: a warm disk cache gives 0). */
uint64_t moert_jit_compile_count(void);

/* Picks the architecture option for a GPU of compute capability major.minor:
 * "sm_XY" (sm_90a on Hopper) when NVRTC knows it, else "compute_NN" of the newest
 * architecture NVRTC knows (PTX, compiled by the driver).  MOERT_ERR_UNSUPPORTED for a GPU
 * older than sm_80 (the kernels use cp.async and bf16 mma.sync). */
moert_status moert_jit_pick_arch(const moert_nvrtc *nvrtc, int major, int minor, char *arch,
                                 size_t arch_size);

/* The per-runtime cache of loaded modules. */
typedef struct moert_jit_entry {
  uint64_t key;
  CUmodule module;
} moert_jit_entry;

typedef struct moert_jit_cache {
  pthread_mutex_t lock;
  const moert_cuda_driver *cu;
  const moert_nvrtc *nvrtc;
  CUcontext ctx;
  char arch[32];
  char dir[1024]; /* "" = no disk cache */
  moert_jit_entry *entries;
  size_t count, capacity;
} moert_jit_cache;

moert_status moert_jit_cache_init(moert_jit_cache *cache, const moert_cuda_driver *cu,
                                  const moert_nvrtc *nvrtc, CUcontext ctx, const char *arch,
                                  const char *dir);
/* Unloads every module (the runtime's context must be current). */
void moert_jit_cache_fini(moert_jit_cache *cache);
/* The module for req: from memory, else from the disk cache, else compiled (and then
 * stored on disk).  Thread-safe.  The runtime's context must be current. */
moert_status moert_jit_module(moert_jit_cache *cache, const moert_jit_request *req,
                              CUmodule *out);

/* FNV-1a 64 of n bytes, continuing from h (start with MOERT_FNV_OFFSET). */
#define MOERT_FNV_OFFSET 0xcbf29ce484222325ull
uint64_t moert_fnv1a(uint64_t h, const void *data, size_t n);

#endif
