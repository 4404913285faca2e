/* cupti_trace.c — a kernel timeline on a machine without nsys: a CUDA injection library.
 *
 * The CUDA driver loads the library named by CUDA_INJECTION64_PATH when it initialises and
 * calls its InitializeInjection(); this one asks CUPTI for an activity record of every kernel
 * (CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL: kernels keep their concurrency, programmatic
 * dependent launches their overlap; kernels replayed from a CUDA graph come with their graph
 * and node ids) and writes them, one CSV line each, to $MOERT_TRACE_OUT (default
 * moert-trace.csv) when the process exits:
 *
 *   start_ns,end_ns,stream,graph,graph_node,grid_x,grid_y,block_x,name
 *
 * A measuring tool for the GPU machine, not part of the library or its tests (CI does not
 * build it).  Build (next to the other tools; needs the toolkit's cupti.h and libcupti):
 *   tools/build-trace.sh build-gpu        -> build-gpu/tools/libmoert_trace.so
 * Use:
 *   CUDA_INJECTION64_PATH=$PWD/build-gpu/tools/libmoert_trace.so MOERT_TRACE_OUT=/tmp/t.csv \
 *     build-gpu/moert bench --backend cuda --stage forward --model qwen3-30b-a3b --tokens 1
 *   python3 tools/trace-summary.py /tmp/t.csv
 * Timestamps are the GPU's (ns); a kernel's start before the end of the kernel ahead of it on
 * the stream is a programmatic dependent launch's overlap. */
#include <cupti.h>
#include <stdio.h>
#include <stdlib.h>

#define TRACE_BUFFER_BYTES (8u << 20)

static FILE *trace_out;
static unsigned long long trace_dropped;

static void CUPTIAPI buffer_requested(uint8_t **buffer, size_t *size, size_t *max_records) {
  *buffer = aligned_alloc(8, TRACE_BUFFER_BYTES);
  *size = *buffer ? TRACE_BUFFER_BYTES : 0;
  *max_records = 0; /* as many as fit */
}

static void CUPTIAPI buffer_completed(CUcontext ctx, uint32_t stream, uint8_t *buffer, size_t size,
                                      size_t valid) {
  (void)size;
  CUpti_Activity *rec = NULL;
  while (trace_out && cuptiActivityGetNextRecord(buffer, valid, &rec) == CUPTI_SUCCESS) {
    if (rec->kind != CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL && rec->kind != CUPTI_ACTIVITY_KIND_KERNEL)
      continue;
    const CUpti_ActivityKernel10 *k = (const CUpti_ActivityKernel10 *)rec;
    fprintf(trace_out, "%llu,%llu,%u,%u,%llu,%d,%d,%d,%s\n", (unsigned long long)k->start,
            (unsigned long long)k->end, k->streamId, k->graphId,
            (unsigned long long)k->graphNodeId, k->gridX, k->gridY, k->blockX,
            k->name ? k->name : "?");
  }
  size_t dropped = 0;
  if (cuptiActivityGetNumDroppedRecords(ctx, stream, &dropped) == CUPTI_SUCCESS)
    trace_dropped += dropped;
  free(buffer);
}

static void trace_finish(void) {
  cuptiActivityFlushAll(1);
  if (!trace_out) return;
  if (trace_dropped) fprintf(trace_out, "# dropped %llu records\n", trace_dropped);
  fclose(trace_out);
  trace_out = NULL;
}

/* called by the CUDA driver (CUDA_INJECTION64_PATH); 1 = loaded */
int InitializeInjection(void) {
  const char *path = getenv("MOERT_TRACE_OUT");
  trace_out = fopen(path && *path ? path : "moert-trace.csv", "w");
  if (!trace_out) return 0;
  fprintf(trace_out, "start_ns,end_ns,stream,graph,graph_node,grid_x,grid_y,block_x,name\n");
  if (cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed) != CUPTI_SUCCESS ||
      cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) != CUPTI_SUCCESS) {
    fprintf(trace_out, "# CUPTI refused the activity callbacks\n");
    fclose(trace_out);
    trace_out = NULL;
    return 0;
  }
  atexit(trace_finish);
  return 1;
}
