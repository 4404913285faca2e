/* cuda_api.h — the few CUDA driver and NVRTC types and entry points moert uses, declared
 * here so the library builds on machines with no CUDA toolkit.  Both libraries are
 * dlopen'd at run time (loader.c); every entry point is called through the tables below.
 * The signatures follow cuda.h / nvrtc.h of CUDA 12 and 13; names that cuda.h maps to a
 * _v2 symbol are resolved under that versioned name. */
#ifndef MOERT_CUDA_API_H
#define MOERT_CUDA_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef struct CUctx_st *CUcontext;
typedef struct CUmod_st *CUmodule;
typedef struct CUfunc_st *CUfunction;
typedef struct CUstream_st *CUstream;
typedef struct CUgraph_st *CUgraph;
typedef struct CUgraphExec_st *CUgraphExec;
typedef struct _nvrtcProgram *nvrtcProgram;
typedef int nvrtcResult;

/* cuLaunchKernelEx's configuration, as cuda.h (12.0+) lays it out: used for programmatic
 * dependent launch (the next kernel starts while the previous one drains). */
typedef union moert_cu_launch_attr_value {
  char pad[64];
  unsigned int programmatic_stream_serialization_allowed;
} moert_cu_launch_attr_value;
typedef struct moert_cu_launch_attr {
  int id;
  char pad[4];
  moert_cu_launch_attr_value value;
} moert_cu_launch_attr;
typedef struct moert_cu_launch_config {
  unsigned int grid_x, grid_y, grid_z, block_x, block_y, block_z, shared_bytes;
  CUstream stream;
  moert_cu_launch_attr *attrs;
  unsigned int num_attrs;
} moert_cu_launch_config;
#define MOERT_CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION 6

enum {
  MOERT_CUDA_SUCCESS = 0,
  MOERT_CUDA_ERROR_STUB_LIBRARY = 34,
  MOERT_CUDA_ERROR_NO_DEVICE = 100,
  MOERT_CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16,
  MOERT_CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE = 38,
  MOERT_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75,
  MOERT_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76,
  MOERT_CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN = 97,
  MOERT_CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR = 81,
  MOERT_CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8,
  MOERT_CU_STREAM_CAPTURE_MODE_GLOBAL = 0,
  MOERT_CU_STREAM_CAPTURE_MODE_RELAXED = 2,
  MOERT_CU_STREAM_NON_BLOCKING = 1
};

/* X(return, name, symbol, arguments): one list makes the table and the dlsym loop.
 * Entries marked optional below may be missing (older drivers); the rest are required. */
#define MOERT_CUDA_DRIVER_LIST(X)                                                          \
  X(CUresult, cuInit, "cuInit", (unsigned int flags))                                      \
  X(CUresult, cuDriverGetVersion, "cuDriverGetVersion", (int *version))                    \
  X(CUresult, cuGetErrorString, "cuGetErrorString", (CUresult error, const char **str))    \
  X(CUresult, cuGetErrorName, "cuGetErrorName", (CUresult error, const char **str))        \
  X(CUresult, cuDeviceGetCount, "cuDeviceGetCount", (int *count))                          \
  X(CUresult, cuDeviceGet, "cuDeviceGet", (CUdevice * device, int ordinal))                \
  X(CUresult, cuDeviceGetName, "cuDeviceGetName", (char *name, int len, CUdevice dev))     \
  X(CUresult, cuDeviceGetAttribute, "cuDeviceGetAttribute", (int *pi, int attrib, CUdevice dev)) \
  X(CUresult, cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain", (CUcontext * pctx, CUdevice dev)) \
  X(CUresult, cuDevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2", (CUdevice dev))   \
  X(CUresult, cuCtxPushCurrent, "cuCtxPushCurrent_v2", (CUcontext ctx))                    \
  X(CUresult, cuCtxPopCurrent, "cuCtxPopCurrent_v2", (CUcontext * pctx))                   \
  X(CUresult, cuCtxSetCurrent, "cuCtxSetCurrent", (CUcontext ctx))                         \
  X(CUresult, cuCtxGetDevice, "cuCtxGetDevice", (CUdevice * device))                       \
  X(CUresult, cuCtxSynchronize, "cuCtxSynchronize", (void))                                \
  X(CUresult, cuModuleLoadData, "cuModuleLoadData", (CUmodule * module, const void *image)) \
  X(CUresult, cuModuleUnload, "cuModuleUnload", (CUmodule module))                         \
  X(CUresult, cuModuleGetFunction, "cuModuleGetFunction",                                  \
    (CUfunction * fn, CUmodule module, const char *name))                                  \
  X(CUresult, cuFuncSetAttribute, "cuFuncSetAttribute", (CUfunction fn, int attrib, int value)) \
  X(CUresult, cuLaunchKernel, "cuLaunchKernel",                                            \
    (CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz, unsigned int bx,     \
     unsigned int by, unsigned int bz, unsigned int shared_bytes, CUstream stream,         \
     void **params, void **extra))                                                         \
  X(CUresult, cuMemAlloc, "cuMemAlloc_v2", (CUdeviceptr * dptr, size_t bytes))             \
  X(CUresult, cuMemFree, "cuMemFree_v2", (CUdeviceptr dptr))                               \
  X(CUresult, cuMemAllocHost, "cuMemAllocHost_v2", (void **pp, size_t bytes))              \
  X(CUresult, cuMemFreeHost, "cuMemFreeHost", (void *p))                                   \
  X(CUresult, cuMemcpyHtoD, "cuMemcpyHtoD_v2", (CUdeviceptr dst, const void *src, size_t bytes)) \
  X(CUresult, cuMemcpyDtoH, "cuMemcpyDtoH_v2", (void *dst, CUdeviceptr src, size_t bytes)) \
  X(CUresult, cuMemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2",                                   \
    (CUdeviceptr dst, const void *src, size_t bytes, CUstream stream))                     \
  X(CUresult, cuMemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2",                                   \
    (void *dst, CUdeviceptr src, size_t bytes, CUstream stream))                           \
  X(CUresult, cuMemcpyDtoDAsync, "cuMemcpyDtoDAsync_v2",                                   \
    (CUdeviceptr dst, CUdeviceptr src, size_t bytes, CUstream stream))                     \
  X(CUresult, cuMemsetD32Async, "cuMemsetD32Async",                                        \
    (CUdeviceptr dst, unsigned int value, size_t count, CUstream stream))                  \
  X(CUresult, cuStreamSynchronize, "cuStreamSynchronize", (CUstream stream))               \
  X(CUresult, cuStreamCreate, "cuStreamCreate", (CUstream * stream, unsigned int flags))   \
  X(CUresult, cuStreamDestroy, "cuStreamDestroy_v2", (CUstream stream))                    \
  X(CUresult, cuStreamIsCapturing, "cuStreamIsCapturing", (CUstream stream, int *status))

/* Optional entry points (NULL when missing): graph capture, used by the tests and by
 * engines that capture a step; cuLaunchKernelEx (CUDA 12.0+) for programmatic dependent
 * launch on sm_90, which falls back to cuLaunchKernel where it is missing. */
#define MOERT_CUDA_DRIVER_OPTIONAL_LIST(X)                                                 \
  X(CUresult, cuStreamBeginCapture, "cuStreamBeginCapture_v2", (CUstream stream, int mode)) \
  X(CUresult, cuStreamEndCapture, "cuStreamEndCapture", (CUstream stream, CUgraph * graph)) \
  X(CUresult, cuGraphInstantiateWithFlags, "cuGraphInstantiateWithFlags",                  \
    (CUgraphExec * exec, CUgraph graph, unsigned long long flags))                         \
  X(CUresult, cuGraphLaunch, "cuGraphLaunch", (CUgraphExec exec, CUstream stream))         \
  X(CUresult, cuGraphExecDestroy, "cuGraphExecDestroy", (CUgraphExec exec))                \
  X(CUresult, cuGraphDestroy, "cuGraphDestroy", (CUgraph graph))                         \
  X(CUresult, cuLaunchKernelEx, "cuLaunchKernelEx",                                        \
    (const moert_cu_launch_config *config, CUfunction f, void **params, void **extra))

#define MOERT_NVRTC_LIST(X)                                                                \
  X(const char *, nvrtcGetErrorString, "nvrtcGetErrorString", (nvrtcResult result))        \
  X(nvrtcResult, nvrtcVersion, "nvrtcVersion", (int *major, int *minor))                   \
  X(nvrtcResult, nvrtcGetNumSupportedArchs, "nvrtcGetNumSupportedArchs", (int *n))         \
  X(nvrtcResult, nvrtcGetSupportedArchs, "nvrtcGetSupportedArchs", (int *archs))           \
  X(nvrtcResult, nvrtcCreateProgram, "nvrtcCreateProgram",                                 \
    (nvrtcProgram * prog, const char *src, const char *name, int num_headers,              \
     const char *const *headers, const char *const *include_names))                        \
  X(nvrtcResult, nvrtcDestroyProgram, "nvrtcDestroyProgram", (nvrtcProgram * prog))        \
  X(nvrtcResult, nvrtcCompileProgram, "nvrtcCompileProgram",                               \
    (nvrtcProgram prog, int num_options, const char *const *options))                      \
  X(nvrtcResult, nvrtcGetProgramLogSize, "nvrtcGetProgramLogSize", (nvrtcProgram prog, size_t *size)) \
  X(nvrtcResult, nvrtcGetProgramLog, "nvrtcGetProgramLog", (nvrtcProgram prog, char *log)) \
  X(nvrtcResult, nvrtcGetPTXSize, "nvrtcGetPTXSize", (nvrtcProgram prog, size_t *size))    \
  X(nvrtcResult, nvrtcGetPTX, "nvrtcGetPTX", (nvrtcProgram prog, char *ptx))               \
  X(nvrtcResult, nvrtcGetCUBINSize, "nvrtcGetCUBINSize", (nvrtcProgram prog, size_t *size)) \
  X(nvrtcResult, nvrtcGetCUBIN, "nvrtcGetCUBIN", (nvrtcProgram prog, char *cubin))

#define MOERT_API_FIELD_(ret, name, sym, args) ret(*name) args;

typedef struct moert_cuda_driver {
  void *lib;
  MOERT_CUDA_DRIVER_LIST(MOERT_API_FIELD_)
  MOERT_CUDA_DRIVER_OPTIONAL_LIST(MOERT_API_FIELD_)
} moert_cuda_driver;

typedef struct moert_nvrtc {
  void *lib;
  char path[512]; /* the name or path that loaded */
  int major, minor;
  MOERT_NVRTC_LIST(MOERT_API_FIELD_)
} moert_nvrtc;

/* Loads libcuda.so.1 and calls cuInit(0).  Returns MOERT_OK, or
 * MOERT_ERR_BACKEND_UNAVAILABLE with a sentence in why (no library, missing symbol, stub
 * library, no device).  The library is process-wide and loaded once; *out stays valid for
 * the life of the process. */
moert_status moert_cuda_driver_get(const moert_cuda_driver **out, char *why, size_t why_size);

/* Loads NVRTC: $MOERT_NVRTC_PATH if set (and only it), else libnvrtc.so.13, .12,
 * libnvrtc.so, then the same names under /usr/local/cuda/lib64.  Process-wide, loaded
 * once; a failure is remembered per environment value, so setting MOERT_NVRTC_PATH and
 * trying again works. */
moert_status moert_nvrtc_get(const moert_nvrtc **out, char *why, size_t why_size);

/* A "cuXxx failed: CUDA_ERROR_YYY (text)" status via moert_fail(). */
moert_status moert_cuda_fail(const moert_cuda_driver *cu, CUresult rc, const char *what);

/* Launches f (grid gx x gy, threads x 1 x 1, smem dynamic bytes) on stream; pdl: with
 * programmatic stream serialisation (sm_90: the kernel may be scheduled while the one before
 * it drains, so it must start with griddepcontrol.wait), a plain launch when the driver has
 * no cuLaunchKernelEx.  A failure names the kernel (name) in moert_last_error(). */
moert_status moert_cuda_launch(const moert_cuda_driver *cu, CUfunction f, unsigned gx,
                               unsigned gy, unsigned threads, unsigned smem, CUstream stream,
                               void **params, const char *name, bool pdl);

#endif
