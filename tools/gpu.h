/* gpu.h — the few CUDA driver calls the moert command needs for device buffers and event
 * timing, loaded with dlopen like the library does, so the tool builds without CUDA. */
#ifndef MOERT_TOOL_GPU_H
#define MOERT_TOOL_GPU_H
#include <stddef.h>
#include <stdint.h>

typedef struct tool_gpu tool_gpu;
/* NULL and a message in why when there is no usable driver/device. */
tool_gpu *tool_gpu_open(int device, char *why, size_t why_len);
void tool_gpu_close(tool_gpu *g);
void *tool_gpu_alloc(tool_gpu *g, size_t bytes); /* NULL on failure */
void tool_gpu_free(tool_gpu *g, void *p);
int tool_gpu_upload(tool_gpu *g, void *dst, const void *src, size_t bytes);
int tool_gpu_download(tool_gpu *g, void *dst, const void *src, size_t bytes);
int tool_gpu_sync(tool_gpu *g);
void *tool_gpu_stream(tool_gpu *g);
/* Device-to-device copy of bytes (for the bandwidth ceiling). */
int tool_gpu_copy(tool_gpu *g, void *dst, const void *src, size_t bytes);
/* Events on the tool's stream: mark, then elapsed milliseconds between two marks. */
int tool_gpu_mark(tool_gpu *g, int slot);
float tool_gpu_elapsed_ms(tool_gpu *g, int from, int to);
const char *tool_gpu_name(tool_gpu *g);
/* CUDA graphs: capture fn(ctx) on the tool's stream, then replay. */
int tool_gpu_graph_capture(tool_gpu *g, int (*fn)(void *), void *ctx);
int tool_gpu_graph_launch(tool_gpu *g);
void tool_gpu_graph_release(tool_gpu *g);

/* The card's clocks while something is timed, through NVML (libnvidia-ml.so.1, dlopen'd; none
 * where it is missing): a thread samples the SM clock, the clock-event ("throttle") reasons
 * and the power draw every millisecond between start and stop.  reasons ORs NVML's bits over
 * the samples, the idle bit (0x1) left out: 0x4 is the software power cap, 0x8 / 0x40 / 0x20
 * hardware slowdown and thermal, 0x80 the power brake. */
typedef struct tool_gpu_clocks {
  int ok;                     /* 0: NVML absent or no sample taken */
  unsigned samples;
  unsigned sm_mhz_min, sm_mhz_max;
  double power_w_max;         /* the highest power reading */
  int power_instant;          /* 1: NVML's instant field; 0: its average over about a second */
  unsigned long long reasons;
} tool_gpu_clocks;
int tool_gpu_clocks_start(tool_gpu *g); /* 0 when sampling */
void tool_gpu_clocks_stop(tool_gpu *g, tool_gpu_clocks *out);
#endif
