/* gpu.c — dlopen'd CUDA driver entry points for the moert command (see gpu.h). */
#include "gpu.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef int CUresult;
typedef int CUdevice;
typedef void *CUcontext;
typedef void *CUstream;
typedef void *CUevent;
typedef void *CUgraph;
typedef void *CUgraphExec;
typedef unsigned long long CUdeviceptr;

typedef void *nvmlDevice_t;
/* NVML's nvmlFieldValue_t, for the instant power field (NVML_FI_DEV_POWER_INSTANT, 186; its
 * value an unsigned int of milliwatts) */
typedef struct nvml_field {
  unsigned field_id, scope_id;
  long long timestamp, latency_us;
  int value_type, ret;
  union { double d; unsigned ui; unsigned long ul; unsigned long long ull; long long sll; } value;
} nvml_field;
#define NVML_FI_DEV_POWER_INSTANT 186

/* the NVML sampler (tool_gpu_clocks_start) */
typedef struct clock_watch {
  void *lib; /* libnvidia-ml.so.1; NULL: not loaded (yet, or absent: tried set) */
  int tried;
  nvmlDevice_t dev;
  int (*GetClockInfo)(nvmlDevice_t, int, unsigned *);
  int (*GetReasons)(nvmlDevice_t, unsigned long long *);
  int (*GetPowerUsage)(nvmlDevice_t, unsigned *);
  int (*GetFieldValues)(nvmlDevice_t, int, void *); /* NULL: no instant power field */
  pthread_t thread;
  int running;
  atomic_int stop;
  tool_gpu_clocks acc; /* the sampler's; read after the join */
} clock_watch;

struct tool_gpu {
  void *lib;
  CUdevice dev;
  clock_watch watch;
  CUcontext ctx;
  CUstream stream;
  CUevent ev[8];
  CUgraph graph;
  CUgraphExec exec;
  char name[128];
  CUresult (*cuInit)(unsigned);
  CUresult (*cuDeviceGet)(CUdevice *, int);
  CUresult (*cuDeviceGetName)(char *, int, CUdevice);
  CUresult (*cuDevicePrimaryCtxRetain)(CUcontext *, CUdevice);
  CUresult (*cuCtxSetCurrent)(CUcontext);
  CUresult (*cuMemAlloc)(CUdeviceptr *, size_t);
  CUresult (*cuMemFree)(CUdeviceptr);
  CUresult (*cuMemcpyDtoH)(void *, CUdeviceptr, size_t);
  CUresult (*cuMemcpyDtoDAsync)(CUdeviceptr, CUdeviceptr, size_t, CUstream);
  CUresult (*cuMemcpyHtoDAsync)(CUdeviceptr, const void *, size_t, CUstream);
  CUresult (*cuStreamSynchronize)(CUstream);
  CUresult (*cuCtxSynchronize)(void);
  CUresult (*cuStreamCreate)(CUstream *, unsigned);
  CUresult (*cuEventCreate)(CUevent *, unsigned);
  CUresult (*cuEventRecord)(CUevent, CUstream);
  CUresult (*cuEventSynchronize)(CUevent);
  CUresult (*cuEventElapsedTime)(float *, CUevent, CUevent);
  CUresult (*cuStreamBeginCapture)(CUstream, int);
  CUresult (*cuStreamEndCapture)(CUstream, CUgraph *);
  CUresult (*cuGraphInstantiate)(CUgraphExec *, CUgraph, unsigned long long);
  CUresult (*cuGraphLaunch)(CUgraphExec, CUstream);
  CUresult (*cuGraphExecDestroy)(CUgraphExec);
  CUresult (*cuGraphDestroy)(CUgraph);
  CUresult (*cuDeviceGetPCIBusId)(char *, int, CUdevice);
};

#define LOAD(g, name, sym)                                       \
  do {                                                           \
    *(void **)(&(g)->name) = dlsym((g)->lib, sym);               \
    if (!(g)->name) {                                            \
      snprintf(why, why_len, "libcuda.so.1 has no %s", sym);     \
      goto fail;                                                 \
    }                                                            \
  } while (0)

tool_gpu *tool_gpu_open(int device, char *why, size_t why_len) {
  tool_gpu *g = calloc(1, sizeof *g);
  if (!g) return NULL;
  g->lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!g->lib) {
    snprintf(why, why_len, "libcuda.so.1 not found");
    free(g);
    return NULL;
  }
  LOAD(g, cuInit, "cuInit");
  LOAD(g, cuDeviceGet, "cuDeviceGet");
  LOAD(g, cuDeviceGetName, "cuDeviceGetName");
  LOAD(g, cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain");
  LOAD(g, cuCtxSetCurrent, "cuCtxSetCurrent");
  LOAD(g, cuMemAlloc, "cuMemAlloc_v2");
  LOAD(g, cuMemFree, "cuMemFree_v2");
  LOAD(g, cuMemcpyDtoH, "cuMemcpyDtoH_v2");
  LOAD(g, cuMemcpyDtoDAsync, "cuMemcpyDtoDAsync_v2");
  LOAD(g, cuMemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2");
  LOAD(g, cuStreamSynchronize, "cuStreamSynchronize");
  LOAD(g, cuCtxSynchronize, "cuCtxSynchronize");
  LOAD(g, cuStreamCreate, "cuStreamCreate");
  LOAD(g, cuEventCreate, "cuEventCreate");
  LOAD(g, cuEventRecord, "cuEventRecord");
  LOAD(g, cuEventSynchronize, "cuEventSynchronize");
  LOAD(g, cuEventElapsedTime, "cuEventElapsedTime");
  LOAD(g, cuStreamBeginCapture, "cuStreamBeginCapture_v2");
  LOAD(g, cuStreamEndCapture, "cuStreamEndCapture");
  LOAD(g, cuGraphInstantiate, "cuGraphInstantiateWithFlags");
  LOAD(g, cuGraphLaunch, "cuGraphLaunch");
  LOAD(g, cuGraphExecDestroy, "cuGraphExecDestroy");
  LOAD(g, cuGraphDestroy, "cuGraphDestroy");
  LOAD(g, cuDeviceGetPCIBusId, "cuDeviceGetPCIBusId");
  CUdevice dev;
  CUresult r = g->cuInit(0);
  if (r) {
    snprintf(why, why_len, "cuInit failed (%d)", r);
    goto fail;
  }
  if ((r = g->cuDeviceGet(&dev, device)) || (r = g->cuDevicePrimaryCtxRetain(&g->ctx, dev)) ||
      (r = g->cuCtxSetCurrent(g->ctx)) || (r = g->cuStreamCreate(&g->stream, 1))) {
    snprintf(why, why_len, "CUDA device %d setup failed (%d)", device, r);
    goto fail;
  }
  g->dev = dev;
  g->cuDeviceGetName(g->name, sizeof g->name, dev);
  for (int i = 0; i < 8; i++)
    if (g->cuEventCreate(&g->ev[i], 0)) goto fail;
  return g;
fail:
  dlclose(g->lib);
  free(g);
  return NULL;
}

void tool_gpu_close(tool_gpu *g) {
  if (!g) return;
  tool_gpu_graph_release(g);
  if (g->watch.running) {
    tool_gpu_clocks c;
    tool_gpu_clocks_stop(g, &c);
  }
  if (g->watch.lib) {
    int (*shutdown)(void);
    *(void **)&shutdown = dlsym(g->watch.lib, "nvmlShutdown");
    if (shutdown) shutdown();
    dlclose(g->watch.lib);
  }
  free(g); /* the primary context, stream and events go with the process */
}

void *tool_gpu_alloc(tool_gpu *g, size_t bytes) {
  CUdeviceptr p = 0;
  g->cuCtxSetCurrent(g->ctx);
  return g->cuMemAlloc(&p, bytes ? bytes : 1) ? NULL : (void *)(uintptr_t)p;
}
void tool_gpu_free(tool_gpu *g, void *p) {
  if (p) g->cuMemFree((CUdeviceptr)(uintptr_t)p);
}
/* On the tool's stream, after the work already queued there, and finished on return.  A
 * plain cuMemcpyHtoD runs on the legacy stream, which a non-blocking stream does not wait
 * for, and from pageable memory it may return before its DMA lands: `moert run` re-uploaded
 * x0 into the buffer that the last step's final layer had written, and the next step's first
 * layer could read that buffer before the copy landed (its checksum, with two or more layers
 * and a megabyte or more of activations, changed from run to run: session 10, call 2). */
int tool_gpu_upload(tool_gpu *g, void *dst, const void *src, size_t n) {
  CUresult r = g->cuMemcpyHtoDAsync((CUdeviceptr)(uintptr_t)dst, src, n, g->stream);
  return r ? (int)r : (int)g->cuStreamSynchronize(g->stream);
}
int tool_gpu_download(tool_gpu *g, void *dst, const void *src, size_t n) {
  g->cuCtxSynchronize();
  return g->cuMemcpyDtoH(dst, (CUdeviceptr)(uintptr_t)src, n);
}
int tool_gpu_copy(tool_gpu *g, void *dst, const void *src, size_t n) {
  return g->cuMemcpyDtoDAsync((CUdeviceptr)(uintptr_t)dst, (CUdeviceptr)(uintptr_t)src, n,
                              g->stream);
}
int tool_gpu_sync(tool_gpu *g) { return g->cuCtxSynchronize(); }
void *tool_gpu_stream(tool_gpu *g) { return g->stream; }
int tool_gpu_mark(tool_gpu *g, int slot) { return g->cuEventRecord(g->ev[slot], g->stream); }
float tool_gpu_elapsed_ms(tool_gpu *g, int from, int to) {
  float ms = -1.0f;
  g->cuEventSynchronize(g->ev[to]);
  g->cuEventElapsedTime(&ms, g->ev[from], g->ev[to]);
  return ms;
}
const char *tool_gpu_name(tool_gpu *g) { return g->name; }

int tool_gpu_graph_capture(tool_gpu *g, int (*fn)(void *), void *ctx) {
  tool_gpu_graph_release(g);
  if (g->cuStreamBeginCapture(g->stream, 2 /* relaxed */)) return -1;
  int rc = fn(ctx);
  CUresult r = g->cuStreamEndCapture(g->stream, &g->graph);
  if (rc || r) return rc ? rc : -2;
  return g->cuGraphInstantiate(&g->exec, g->graph, 0) ? -3 : 0;
}
int tool_gpu_graph_launch(tool_gpu *g) { return g->cuGraphLaunch(g->exec, g->stream); }
void tool_gpu_graph_release(tool_gpu *g) {
  if (g->exec) g->cuGraphExecDestroy(g->exec);
  if (g->graph) g->cuGraphDestroy(g->graph);
  g->exec = NULL;
  g->graph = NULL;
}

/* ---- the NVML clock sampler ---- */

/* NVML's instant power field in milliwatts; 0 when read */
static int instant_power(clock_watch *w, unsigned *mw) {
  nvml_field f;
  memset(&f, 0, sizeof f);
  f.field_id = NVML_FI_DEV_POWER_INSTANT;
  if (w->GetFieldValues(w->dev, 1, &f) != 0 || f.ret != 0) return -1;
  *mw = f.value.ui;
  return 0;
}

/* loads NVML once and finds the tool's device by its PCI bus id; 0 when usable */
static int watch_load(tool_gpu *g) {
  clock_watch *w = &g->watch;
  if (w->tried) return w->lib ? 0 : -1;
  w->tried = 1;
  void *lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib) return -1;
  int (*init)(void), (*shutdown)(void);
  int (*by_bus)(const char *, nvmlDevice_t *);
  *(void **)&init = dlsym(lib, "nvmlInit_v2");
  *(void **)&shutdown = dlsym(lib, "nvmlShutdown");
  *(void **)&by_bus = dlsym(lib, "nvmlDeviceGetHandleByPciBusId_v2");
  *(void **)&w->GetClockInfo = dlsym(lib, "nvmlDeviceGetClockInfo");
  *(void **)&w->GetReasons = dlsym(lib, "nvmlDeviceGetCurrentClocksEventReasons");
  if (!w->GetReasons) /* drivers before 535 */
    *(void **)&w->GetReasons = dlsym(lib, "nvmlDeviceGetCurrentClocksThrottleReasons");
  *(void **)&w->GetPowerUsage = dlsym(lib, "nvmlDeviceGetPowerUsage");
  const int up = init && shutdown && by_bus && w->GetClockInfo && w->GetReasons &&
                 w->GetPowerUsage && init() == 0;
  char bus[64];
  if (!up || g->cuDeviceGetPCIBusId(bus, (int)sizeof bus, g->dev) != 0 ||
      by_bus(bus, &w->dev) != 0) {
    if (up) shutdown();
    dlclose(lib);
    return -1;
  }
  w->lib = lib;
  /* The instant power field where the driver has it (r535 on): nvmlDeviceGetPowerUsage is an
   * average over about a second on Hopper, so it lags a load of a few hundred milliseconds (an
   * H200 at its 700 W cap: the average 316 W, the instant field 752; decode-s22 call 2) */
  *(void **)&w->GetFieldValues = dlsym(lib, "nvmlDeviceGetFieldValues");
  unsigned mw;
  if (w->GetFieldValues && instant_power(w, &mw) != 0) w->GetFieldValues = NULL;
  return 0;
}

/* the power draw in milliwatts: the instant field, else the averaged reading; returns NVML's
 * status (0: read) */
static int watch_power(clock_watch *w, unsigned *mw) {
  if (w->GetFieldValues && instant_power(w, mw) == 0) return 0;
  return w->GetPowerUsage(w->dev, mw);
}

static void *watch_main(void *arg) {
  clock_watch *w = arg;
  const struct timespec ms = {0, 1000000};
  while (!atomic_load(&w->stop)) {
    unsigned mhz = 0, mw = 0;
    unsigned long long why = 0;
    if (w->GetClockInfo(w->dev, 1 /* NVML_CLOCK_SM */, &mhz) == 0 &&
        w->GetReasons(w->dev, &why) == 0 && watch_power(w, &mw) == 0) {
      tool_gpu_clocks *a = &w->acc;
      if (!a->samples || mhz < a->sm_mhz_min) a->sm_mhz_min = mhz;
      if (mhz > a->sm_mhz_max) a->sm_mhz_max = mhz;
      if (mw / 1000.0 > a->power_w_max) a->power_w_max = mw / 1000.0;
      a->reasons |= why & ~1ull; /* not the idle bit: the timed work has gaps */
      a->samples++;
    }
    nanosleep(&ms, NULL);
  }
  return NULL;
}

int tool_gpu_clocks_start(tool_gpu *g) {
  clock_watch *w = &g->watch;
  if (w->running || watch_load(g) != 0) return -1;
  memset(&w->acc, 0, sizeof w->acc);
  atomic_store(&w->stop, 0);
  if (pthread_create(&w->thread, NULL, watch_main, w) != 0) return -1;
  w->running = 1;
  return 0;
}

void tool_gpu_clocks_stop(tool_gpu *g, tool_gpu_clocks *out) {
  clock_watch *w = &g->watch;
  memset(out, 0, sizeof *out);
  if (!w->running) return;
  atomic_store(&w->stop, 1);
  pthread_join(w->thread, NULL);
  w->running = 0;
  *out = w->acc;
  out->ok = w->acc.samples > 0;
  out->power_instant = w->GetFieldValues != NULL;
}
