/* moert.c — the moert command.
 *   moert run    a stack of MoE layers of a model's shape with synthetic random weights on
 *                the best backend present: per-layer time, tokens/s and an output checksum
 *   moert bench  times the route stage (host route + plan) and the forward stage against
 *                the memory-bandwidth floor measured in the same run, and the prefill stage
 *                (the whole layer at T = 1024 .. 32768) in TFLOP/s against the larger of the
 *                bandwidth and compute floors
 * It uses only the public ABI (abi/moert.h); device buffers come from tools/gpu.c. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gpu.h"
#include "moert.h"

typedef struct model {
  const char *name;
  uint32_t E, k, H, I, Is, layers;
  moert_router_kind router;
  uint32_t renormalize, n_group, topk_group;
  float scale;
  moert_shared_gate shared_gate;
} model;

static const model MODELS[] = {
    {"qwen3-30b-a3b", 128, 8, 2048, 768, 0, 48, MOERT_ROUTER_SOFTMAX_TOPK, 1, 0, 0, 1.0f, 0},
    {"qwen3-235b-a22b", 128, 8, 4096, 1536, 0, 94, MOERT_ROUTER_SOFTMAX_TOPK, 1, 0, 0, 1.0f, 0},
    {"mixtral-8x7b", 8, 2, 4096, 14336, 0, 32, MOERT_ROUTER_SOFTMAX_TOPK, 1, 0, 0, 1.0f, 0},
    {"deepseek-v3", 256, 8, 7168, 2048, 2048, 58, MOERT_ROUTER_SIGMOID_GROUP_TOPK, 1, 8, 4, 2.5f,
     MOERT_SHARED_GATE_NONE},
    {"qwen2-57b-a14b", 64, 8, 3584, 2560, 20480, 28, MOERT_ROUTER_SOFTMAX_TOPK, 0, 0, 0, 1.0f,
     MOERT_SHARED_GATE_SIGMOID},
};

/* ---- small helpers ---- */

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec * 1e-3;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}
static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n ? v[n / 2] : 0.0;
}

static uint64_t splitmix(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
/* uniform in [-1, 1) */
static float unif(uint64_t *s) { return (float)((splitmix(s) >> 40) * (2.0 / 16777216.0) - 1.0); }

static uint16_t to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}
static float from_bf16(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

/* Random bf16 values in [-scale, scale), filled by up to 16 threads (weights are gigabytes:
 * 22 GB a layer for DeepSeek-V3).  The values depend on the seed alone: chunk c of
 * FILL_CHUNK values has its own stream (seed, c), whichever thread fills it, so every machine
 * makes the same weights and `moert run` checksums compare across machines and backends.
 * (Before, the streams followed the number of CPUs: the GPU machine's 16 cores and this
 * machine's 2 gave different weights.) */
#define FILL_THREADS 16
#define FILL_CHUNK ((size_t)1 << 22)
typedef struct fill_job {
  uint16_t *dst;
  size_t n, first, step; /* chunks first, first + step, ... */
  uint64_t seed;
  float scale;
} fill_job;
static void *fill_part(void *p) {
  const fill_job *j = p;
  for (size_t c = j->first; c * FILL_CHUNK < j->n; c += j->step) {
    const size_t a = c * FILL_CHUNK, b = a + FILL_CHUNK < j->n ? a + FILL_CHUNK : j->n;
    uint64_t s = j->seed * 0x100000001b3ull + c + 1;
    for (size_t i = a; i < b; i++) j->dst[i] = to_bf16(unif(&s) * j->scale);
  }
  return NULL;
}
static void fill_bf16(uint16_t *dst, size_t n, uint64_t seed, float scale) {
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  int nt = cpus < 2 ? 2 : cpus > FILL_THREADS ? FILL_THREADS : (int)cpus;
  if (n <= FILL_CHUNK) nt = 1;
  fill_job job[FILL_THREADS];
  pthread_t t[FILL_THREADS];
  int started[FILL_THREADS] = {0};
  for (int i = 0; i < nt; i++) {
    job[i] = (fill_job){dst, n, (size_t)i, (size_t)nt, seed, scale};
    if (i > 0) started[i] = pthread_create(&t[i], NULL, fill_part, &job[i]) == 0;
  }
  fill_part(&job[0]);
  for (int i = 1; i < nt; i++) {
    if (started[i]) pthread_join(t[i], NULL);
    else fill_part(&job[i]);
  }
}

static const model *find_model(const char *name) {
  for (size_t i = 0; i < sizeof MODELS / sizeof *MODELS; i++)
    if (!strcmp(MODELS[i].name, name)) return &MODELS[i];
  return NULL;
}

static void layer_desc(const model *m, moert_layer_desc *d) {
  moert_layer_desc_init(d);
  d->num_experts = m->E;
  d->top_k = m->k;
  d->hidden = m->H;
  d->intermediate = m->I;
  d->shared_intermediate = m->Is;
  d->shared_gate = m->shared_gate;
  d->router = m->router;
  d->renormalize = m->renormalize;
  d->n_group = m->n_group;
  d->topk_group = m->topk_group;
  d->routed_scaling_factor = m->scale;
}

#define CHECK(call)                                                                         \
  do {                                                                                      \
    moert_status st_ = (call);                                                              \
    if (st_ != MOERT_OK) {                                                                  \
      fprintf(stderr, "moert: %s failed: %s\n  %s\n", #call, moert_status_string(st_),      \
              moert_last_error());                                                          \
      exit(1);                                                                              \
    }                                                                                       \
  } while (0)

static void die(const char *msg) {
  fprintf(stderr, "moert: %s\n", msg);
  exit(2);
}

/* ---- weights of one layer, on the host and (CUDA) on the device ---- */

typedef struct layer_weights {
  uint16_t *gate, *up, *down;   /* host [E,I,H], [E,I,H], [E,H,I] bf16 */
  uint16_t *sg, *su, *sd, *sgg; /* shared expert, host */
  void *dgate, *dup, *ddown, *dsg, *dsu, *dsd, *dsgg; /* device copies */
  moert_experts *experts;
} layer_weights;

static size_t expert_elems(const model *m) { return (size_t)m->E * m->I * m->H; }

static void make_weights(const model *m, uint64_t seed, layer_weights *w) {
  const size_t n = expert_elems(m);
  const float sH = 1.0f / sqrtf((float)m->H), sI = 1.0f / sqrtf((float)m->I);
  memset(w, 0, sizeof *w);
  w->gate = malloc(n * 2);
  w->up = malloc(n * 2);
  w->down = malloc(n * 2);
  if (!w->gate || !w->up || !w->down)
    die("out of host memory for the weights (try --weight-sets 1 or a smaller --model)");
  fill_bf16(w->gate, n, seed * 8 + 1, sH * 1.7f);
  fill_bf16(w->up, n, seed * 8 + 2, sH * 1.7f);
  fill_bf16(w->down, n, seed * 8 + 3, sI * 1.7f);
  if (m->Is) {
    size_t ns = (size_t)m->Is * m->H;
    w->sg = malloc(ns * 2);
    w->su = malloc(ns * 2);
    w->sd = malloc(ns * 2);
    w->sgg = malloc((size_t)m->H * 2);
    if (!w->sg || !w->su || !w->sd || !w->sgg) die("out of host memory for the shared expert");
    fill_bf16(w->sg, ns, seed * 8 + 5, sH * 1.7f);
    fill_bf16(w->su, ns, seed * 8 + 6, sH * 1.7f);
    fill_bf16(w->sd, ns, seed * 8 + 7, 1.7f / sqrtf((float)m->Is));
    fill_bf16(w->sgg, m->H, seed * 8 + 8, sH * 1.7f);
  }
}

static void *upload(tool_gpu *g, const void *src, size_t bytes) {
  void *d = tool_gpu_alloc(g, bytes);
  if (!d || tool_gpu_upload(g, d, src, bytes)) die("device allocation or upload failed");
  return d;
}

/* The experts view of a weight set; on CUDA each layer gets its own device copy. */
static void bind_experts(moert_runtime *rt, const model *m, const moert_layer_desc *d,
                         tool_gpu *g, const layer_weights *host, layer_weights *w) {
  moert_experts_desc x;
  memset(&x, 0, sizeof x);
  x.struct_size = sizeof x;
  x.layout = MOERT_LAYOUT_STACKED;
  const size_t nb = expert_elems(m) * 2, ns = (size_t)m->Is * m->H * 2;
  if (g) {
    x.memory = MOERT_MEMORY_DEVICE;
    x.gate = w->dgate = upload(g, host->gate, nb);
    x.up = w->dup = upload(g, host->up, nb);
    x.down = w->ddown = upload(g, host->down, nb);
    if (m->Is) {
      x.shared_gate = w->dsg = upload(g, host->sg, ns);
      x.shared_up = w->dsu = upload(g, host->su, ns);
      x.shared_down = w->dsd = upload(g, host->sd, ns);
      x.shared_expert_gate = w->dsgg = upload(g, host->sgg, (size_t)m->H * 2);
    }
  } else {
    x.memory = MOERT_MEMORY_HOST;
    x.gate = host->gate;
    x.up = host->up;
    x.down = host->down;
    x.shared_gate = host->sg;
    x.shared_up = host->su;
    x.shared_down = host->sd;
    x.shared_expert_gate = host->sgg;
  }
  CHECK(moert_experts_create(rt, d, &x, &w->experts));
}

static void free_host_weights(layer_weights *w) {
  free(w->gate);
  free(w->up);
  free(w->down);
  free(w->sg);
  free(w->su);
  free(w->sd);
  free(w->sgg);
}

/* ---- options ---- */

typedef struct options {
  const model *m;
  uint32_t tokens, layers, weight_sets, iters;
  moert_backend backend;
  int json;
  const char *stage;
  uint32_t tlist[32];
  int ntlist;
  uint64_t seed;
  double dense_tflops; /* --dense-tflops: a dense GEMM's rate on this card (the peers') */
  const char *dump;    /* moert run --dump FILE: the step's output, raw bf16 [T, H] */
} options;

static void usage(void) {
  fprintf(stderr,
          "usage: moert run   [--model M] [--tokens T] [--layers L] [--backend auto|cpu|cuda]\n"
          "                   [--weight-sets N] [--seed S] [--dump FILE]\n"
          "       moert bench [--model M] [--backend auto|cpu|cuda]\n"
          "                   [--stage route|forward|prefill|all] [--tokens T1,T2,...]\n"
          "                   [--iters N] [--dense-tflops X] [--json]\n"
          "models:");
  for (size_t i = 0; i < sizeof MODELS / sizeof *MODELS; i++) fprintf(stderr, " %s", MODELS[i].name);
  fprintf(stderr, "\n");
  exit(2);
}

static void parse(int argc, char **argv, options *o) {
  o->m = &MODELS[0];
  o->backend = MOERT_BACKEND_AUTO;
  o->stage = "all";
  o->seed = 1;
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--json")) {
      o->json = 1;
      continue;
    }
    if (!v) usage();
    i++;
    if (!strcmp(a, "--model")) {
      if (!(o->m = find_model(v))) usage();
    } else if (!strcmp(a, "--tokens")) {
      o->ntlist = 0;
      for (char *s = (char *)v; *s && o->ntlist < 32;) {
        char *end;
        unsigned long t = strtoul(s, &end, 10);
        if (end == s || t == 0 || t > (1u << 22)) usage();
        o->tlist[o->ntlist++] = (uint32_t)t;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') usage();
      }
      o->tokens = o->tlist[0];
    } else if (!strcmp(a, "--layers")) {
      o->layers = (uint32_t)strtoul(v, NULL, 10);
      if (!o->layers) usage();
    } else if (!strcmp(a, "--weight-sets")) {
      o->weight_sets = (uint32_t)strtoul(v, NULL, 10);
      if (!o->weight_sets) usage();
    } else if (!strcmp(a, "--iters")) {
      o->iters = (uint32_t)strtoul(v, NULL, 10);
    } else if (!strcmp(a, "--seed")) {
      o->seed = strtoull(v, NULL, 10);
    } else if (!strcmp(a, "--stage")) {
      o->stage = v;
    } else if (!strcmp(a, "--dump")) {
      o->dump = v;
    } else if (!strcmp(a, "--dense-tflops")) {
      o->dense_tflops = strtod(v, NULL);
    } else if (!strcmp(a, "--backend")) {
      if (!strcmp(v, "auto")) o->backend = MOERT_BACKEND_AUTO;
      else if (!strcmp(v, "cpu")) o->backend = MOERT_BACKEND_CPU;
      else if (!strcmp(v, "cuda")) o->backend = MOERT_BACKEND_CUDA;
      else usage();
    } else {
      usage();
    }
  }
}

static moert_runtime *open_runtime(moert_backend b, uint32_t threads, tool_gpu **g) {
  moert_runtime_options ro;
  moert_runtime_options_init(&ro);
  ro.backend = b;
  ro.num_threads = threads;
  moert_runtime *rt;
  CHECK(moert_runtime_create(&ro, &rt));
  *g = NULL;
  if (moert_runtime_backend(rt) == MOERT_BACKEND_CUDA) {
    char why[256];
    if (!(*g = tool_gpu_open(0, why, sizeof why))) die(why);
  }
  return rt;
}

static void fill_logits(float *l, size_t n, uint64_t seed);
static uint32_t touched_experts(moert_scratch *sc);
static double copy_gbps(tool_gpu *g, size_t bytes);

/* ---- moert run ---- */

/* One decoding step through the stack: for each layer, y = x + MoE_l(x) (a copy of x into
 * y, then forward with accumulate), and y becomes the next layer's x.  The router logits of
 * each layer are random and fixed (the engine's router GEMM is not moert's work), so the
 * step is a pure sequence of moert calls on one stream: capturable in a CUDA graph. */
typedef struct stack {
  const model *m;
  tool_gpu *g;
  moert_scratch *sc;
  layer_weights *lw;
  void **logits; /* [L] host or device [T, E] f32 */
  void *buf[2];  /* ping-pong activations [T, H] bf16 */
  uint32_t T, L;
  int cur;       /* which buf holds x */
} stack;

static int stack_step(void *p) {
  stack *s = p;
  const size_t nx = (size_t)s->T * s->m->H * 2;
  const int dev = s->g != NULL;
  for (uint32_t l = 0; l < s->L; l++) {
    void *x = s->buf[s->cur], *y = s->buf[1 - s->cur];
    if (dev) tool_gpu_copy(s->g, y, x, nx);
    else memcpy(y, x, nx);
    moert_route_args ra = {sizeof ra, s->T, MOERT_DTYPE_F32,
                           dev ? MOERT_MEMORY_DEVICE : MOERT_MEMORY_HOST, s->logits[l], 0,
                           NULL, MOERT_ROUTING_AUTO};
    moert_forward_args fa = {sizeof fa, s->lw[l].experts,
                             dev ? MOERT_MEMORY_DEVICE : MOERT_MEMORY_HOST, x, 0, y, 0, 1};
    moert_status st = moert_moe(s->sc, &ra, &fa, dev ? tool_gpu_stream(s->g) : NULL);
    if (st != MOERT_OK) {
      fprintf(stderr, "moert: layer %u failed: %s\n  %s\n", l, moert_status_string(st),
              moert_last_error());
      return 1;
    }
    s->cur = 1 - s->cur;
  }
  return 0;
}

static int cmd_run(const options *o) {
  const model *m = o->m;
  tool_gpu *g;
  moert_runtime *rt = open_runtime(o->backend, 0, &g);
  const int cuda = g != NULL;
  const uint32_t T = o->tokens ? o->tokens : 32;
  const uint32_t L = o->layers ? o->layers : m->layers;
  uint32_t sets = o->weight_sets ? o->weight_sets : (cuda ? 4 : 2);
  if (sets > L) sets = L;
  moert_layer_desc d;
  layer_desc(m, &d);
  double gb = (double)expert_elems(m) * 6 / 1e9;
  printf("moert %s run: %s (E=%u k=%u H=%u I=%u%s), %u layers, %u tokens, backend %s\n",
         moert_version_string(), m->name, m->E, m->k, m->H, m->I, m->Is ? " +shared" : "", L, T,
         moert_runtime_backend_note(rt));
  printf("weights: %.2f GB of bf16 experts per layer, %u distinct random set%s%s\n", gb, sets,
         sets > 1 ? "s" : "", cuda ? ", one device copy per layer" : " shared round-robin");
  fflush(stdout);

  layer_weights *host = calloc(sets, sizeof *host);
  stack st = {m, g, NULL, calloc(L, sizeof(layer_weights)), calloc(L, sizeof(void *)), {0}, T, L, 0};
  if (!host || !st.lw || !st.logits) die("out of memory");
  double t0 = now_us();
  for (uint32_t i = 0; i < sets; i++) make_weights(m, o->seed * 1000 + i, &host[i]);
  const size_t nl = (size_t)T * m->E;
  float *lg = malloc(nl * 4);
  if (!lg) die("out of memory");
  for (uint32_t l = 0; l < L; l++) {
    bind_experts(rt, m, &d, g, &host[l % sets], &st.lw[l]);
    fill_logits(lg, nl, o->seed * 7919 + l);
    if (cuda) {
      st.logits[l] = upload(g, lg, nl * 4);
    } else {
      if (!(st.logits[l] = malloc(nl * 4))) die("out of memory");
      memcpy(st.logits[l], lg, nl * 4);
    }
  }
  printf("weights ready in %.1f s\n", (now_us() - t0) * 1e-6);

  CHECK(moert_scratch_create(rt, &d, T, &st.sc));
  CHECK(moert_scratch_prepare(st.sc));
  const size_t nx = (size_t)T * m->H;
  uint16_t *x0 = malloc(nx * 2);
  if (!x0) die("out of memory");
  uint64_t s = o->seed * 77 + 5;
  for (size_t i = 0; i < nx; i++) x0[i] = to_bf16(unif(&s));
  for (int i = 0; i < 2; i++) {
    st.buf[i] = cuda ? tool_gpu_alloc(g, nx * 2) : malloc(nx * 2);
    if (!st.buf[i]) die("allocation of the activations failed");
  }
  /* the floor: the bytes of the experts each layer's routing touches */
  double touched_bytes = 0;
  const double wexp = 3.0 * m->H * m->I * 2, wsh = 3.0 * m->H * m->Is * 2;
  for (uint32_t l = 0; l < L; l++) {
    moert_route_args ra = {sizeof ra, T, MOERT_DTYPE_F32, cuda ? MOERT_MEMORY_DEVICE : MOERT_MEMORY_HOST,
                           st.logits[l], 0, NULL, MOERT_ROUTING_AUTO};
    CHECK(moert_route(st.sc, &ra, cuda ? tool_gpu_stream(g) : NULL));
    touched_bytes += touched_experts(st.sc) * wexp + wsh;
  }
  const int reps = cuda ? 10 : 1;
  double *v = calloc(reps, sizeof *v), step_us, graph_us = 0;
  for (int r = -1; r < reps; r++) { /* one warm-up step */
    if (cuda) tool_gpu_upload(g, st.buf[0], x0, nx * 2);
    else memcpy(st.buf[0], x0, nx * 2);
    st.cur = 0;
    double a = now_us();
    if (cuda) tool_gpu_mark(g, 0);
    if (stack_step(&st)) return 1;
    if (cuda) {
      tool_gpu_mark(g, 1);
      if (r >= 0) v[r] = tool_gpu_elapsed_ms(g, 0, 1) * 1e3;
    } else if (r >= 0) {
      v[r] = now_us() - a;
    }
  }
  step_us = median(v, reps);
  /* the output of one step from x0, for the checksum */
  uint16_t *out = malloc(nx * 2);
  if (!out) die("out of memory");
  if (cuda) tool_gpu_download(g, out, st.buf[st.cur], nx * 2);
  else memcpy(out, st.buf[st.cur], nx * 2);
  if (cuda) { /* the same step captured once in a CUDA graph and replayed */
    st.cur = 0;
    if (tool_gpu_graph_capture(g, stack_step, &st) == 0) {
      for (int r = -1; r < reps; r++) {
        tool_gpu_upload(g, st.buf[0], x0, nx * 2);
        tool_gpu_mark(g, 0);
        tool_gpu_graph_launch(g);
        tool_gpu_mark(g, 1);
        if (r >= 0) v[r] = tool_gpu_elapsed_ms(g, 0, 1) * 1e3;
      }
      graph_us = median(v, reps);
    } else {
      printf("CUDA graph capture failed: %s\n", moert_last_error());
    }
  }
  double sum = 0, asum = 0;
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < nx; i++) {
    float f = from_bf16(out[i]);
    sum += f;
    asum += fabs(f);
    h = (h ^ out[i]) * 1099511628211ull;
  }
  printf("step of %u layers: %.3f ms (%s), %.1f us per layer, %.1f tokens/s\n", L,
         step_us * 1e-3, cuda ? "CUDA events, median of 10" : "wall clock", step_us / L,
         T / (step_us * 1e-6));
  if (cuda) {
    const double bw = copy_gbps(g, (size_t)1 << 30);
    const double floor_us = touched_bytes / (bw * 1e9) * 1e6;
    printf("  in a CUDA graph: %.3f ms, %.1f us per layer\n", graph_us * 1e-3, graph_us / L);
    printf("  floor: %.3f ms (%.2f GB of touched experts at %.0f GB/s copy); ratio %.3f, "
           "graph %.3f\n", floor_us * 1e-3, touched_bytes / 1e9, bw, step_us / floor_us,
           graph_us / floor_us);
  }
  printf("checksum: sum %.6f  abs-sum %.6f  fnv64 %016llx\n", sum, asum, (unsigned long long)h);
  if (o->dump) { /* the output of one step, to compare backends or builds element by element */
    FILE *f = fopen(o->dump, "wb");
    const int ok = f && fwrite(out, 2, nx, f) == nx;
    if (f && fclose(f) != 0) die("cannot write the --dump file");
    if (!ok) die("cannot write the --dump file");
    printf("dump: %zu bf16 values ([%u, %u], row-major) in %s\n", nx, T, m->H, o->dump);
  }
  for (uint32_t l = 0; l < L; l++) {
    moert_experts_destroy(st.lw[l].experts);
    if (!cuda) free(st.logits[l]);
  }
  for (uint32_t i = 0; i < sets; i++) free_host_weights(&host[i]);
  moert_scratch_destroy(st.sc);
  moert_runtime_destroy(rt);
  if (!cuda) {
    free(st.buf[0]);
    free(st.buf[1]);
  }
  tool_gpu_close(g);
  free(host); free(st.lw); free(st.logits); free(lg); free(x0); free(out); free(v);
  return 0;
}

/* ---- moert bench ---- */

static const uint32_t DEFAULT_ROUTE_T[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096};
static const uint32_t DEFAULT_CPU_T[] = {1, 8, 32, 128};
static const uint32_t DEFAULT_GPU_T[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512};

static void fill_logits(float *l, size_t n, uint64_t seed) {
  uint64_t s = seed;
  for (size_t i = 0; i < n; i++) l[i] = unif(&s) * 3.0f + unif(&s) * 3.0f; /* spread, no ties */
}

/* the card's clocks over a timing (tool_gpu_clocks): appended to a JSON line (",..." fields,
 * nothing without NVML) and to a text line (only where the card slowed itself down) */
static void clocks_json(const tool_gpu_clocks *c, char *json, size_t size) {
  size_t n = strlen(json);
  if (c->ok && n + 1 < size)
    snprintf(json + n, size - n,
             ",\"sm_mhz_min\":%u,\"sm_mhz_max\":%u,\"power_w_max\":%.0f,\"power_reading\":\"%s\","
             "\"clock_events\":\"0x%llx\"",
             c->sm_mhz_min, c->sm_mhz_max, c->power_w_max, c->power_instant ? "instant" : "average",
             c->reasons);
}
static void clocks_text(const tool_gpu_clocks *c, char *text, size_t size) {
  const unsigned long long slow = 0x4 | 0x8 | 0x20 | 0x40 | 0x80; /* power cap, slowdowns */
  size_t n = strlen(text);
  if (!c->ok || !(c->reasons & slow) || n < 1 || text[n - 1] != '\n') return;
  snprintf(text + n - 1, size - (n - 1), "  [SM %u-%u MHz: %s]\n", c->sm_mhz_min, c->sm_mhz_max,
           c->reasons & 0x4 ? "power cap" : "slowdown");
}

static void emit(const options *o, const char *text_fmt, const char *json) {
  if (o->json) printf("%s\n", json);
  else printf("%s", text_fmt);
  fflush(stdout);
}

/* Host route + plan, one core: the work an engine does per layer with host routing.
 * Every timed call sees logits it has never seen (new random values written just before,
 * untimed, as the engine's router GEMM would): timing one set of logits over and over lets
 * the branch predictor learn it, which flatters the router by about 2x. */
static void bench_route(const options *o) {
  const model *m = o->m;
  tool_gpu *g;
  moert_runtime *rt = open_runtime(MOERT_BACKEND_CPU, 1, &g);
  const uint32_t *ts = o->ntlist ? o->tlist : DEFAULT_ROUTE_T;
  int nt = o->ntlist ? o->ntlist : (int)(sizeof DEFAULT_ROUTE_T / sizeof *DEFAULT_ROUTE_T);
  uint32_t maxT = 1;
  for (int i = 0; i < nt; i++) maxT = ts[i] > maxT ? ts[i] : maxT;
  moert_layer_desc d;
  layer_desc(m, &d);
  moert_scratch *sc;
  CHECK(moert_scratch_create(rt, &d, maxT, &sc));
  float *logits = malloc((size_t)maxT * m->E * 4), *bias = malloc(m->E * 4);
  if (!logits || !bias) die("out of memory");
  uint64_t s = o->seed + 9;
  for (uint32_t e = 0; e < m->E; e++) bias[e] = unif(&s) * 0.05f;
  if (!o->json)
    printf("route + plan on the host, one thread, %s (E=%u k=%u), fresh logits every call\n",
           m->name, m->E, m->k);
  for (int i = 0; i < nt; i++) {
    const uint32_t T = ts[i];
    const size_t n = (size_t)T * m->E;
    moert_route_args ra = {sizeof ra, T, MOERT_DTYPE_F32, MOERT_MEMORY_HOST, logits, 0,
                           m->router == MOERT_ROUTER_SIGMOID_GROUP_TOPK ? bias : NULL,
                           MOERT_ROUTING_HOST};
    /* calls: about 0.3 s of routing, at least 101, at most 4001 */
    fill_logits(logits, n, o->seed);
    double a = now_us();
    CHECK(moert_route(sc, &ra, NULL));
    double one = now_us() - a;
    int calls = one > 0 ? (int)(3e5 / one) : 4001;
    calls = calls < 101 ? 101 : calls > 4001 ? 4001 : calls;
    double *v = malloc((size_t)calls * sizeof *v);
    if (!v) die("out of memory");
    for (int c = 0; c < calls; c++) {
      fill_logits(logits, n, o->seed + 1 + (uint64_t)c); /* new streams, not shifts of one */
      a = now_us();
      CHECK(moert_route(sc, &ra, NULL));
      v[c] = now_us() - a;
    }
    double us = median(v, calls);
    free(v);
    char text[256], json[512];
    snprintf(text, sizeof text, "  T=%-5u %9.2f us per layer  (%.1f ns per token)\n", T, us,
             us * 1e3 / T);
    snprintf(json, sizeof json,
             "{\"stage\":\"route\",\"model\":\"%s\",\"backend\":\"cpu\",\"threads\":1,\"T\":%u,"
             "\"us\":%.3f,\"ns_per_token\":%.1f,\"calls\":%d}", m->name, T, us, us * 1e3 / T, calls);
    emit(o, text, json);
  }
  moert_scratch_destroy(sc);
  moert_runtime_destroy(rt);
  free(logits);
  free(bias);
}

static uint32_t touched_experts(moert_scratch *sc) {
  moert_plan_view pv;
  memset(&pv, 0, sizeof pv);
  pv.struct_size = sizeof pv;
  CHECK(moert_scratch_plan(sc, &pv));
  uint32_t n = 0;
  for (uint32_t e = 0; e < pv.num_experts; e++) n += pv.offsets[e + 1] > pv.offsets[e];
  return n;
}

/* Copy bandwidth over `bytes`: host memcpy, or a device-to-device copy (read + write). */
static double copy_gbps(tool_gpu *g, size_t bytes) {
  double v[5];
  if (g) {
    void *a = tool_gpu_alloc(g, bytes), *b = tool_gpu_alloc(g, bytes);
    if (!a || !b) die("device allocation failed");
    for (int i = 0; i < 5; i++) {
      tool_gpu_mark(g, 2);
      tool_gpu_copy(g, b, a, bytes);
      tool_gpu_mark(g, 3);
      v[i] = 2.0 * bytes / (tool_gpu_elapsed_ms(g, 2, 3) * 1e-3) / 1e9;
    }
    tool_gpu_free(g, a);
    tool_gpu_free(g, b);
  } else {
    char *a = malloc(bytes), *b = malloc(bytes);
    if (!a || !b) die("out of memory for the memcpy reference");
    memset(a, 1, bytes);
    memset(b, 2, bytes);
    for (int i = 0; i < 5; i++) {
      double t = now_us();
      memcpy(b, a, bytes);
      v[i] = bytes / ((now_us() - t) * 1e-6) / 1e9;
    }
    free(a);
    free(b);
  }
  return median(v, 5);
}

/* The forward stage (route included on CUDA with device routing): time against the
 * bandwidth floor of the experts the routing touched.
 *
 * On CUDA, per T: `us` is the median of CUDA-event-timed replays of one CUDA graph holding
 * route + forward of SETS layers (the same routing, a different weight set each, so the
 * weights stream from HBM as in a real stack, never from L2), divided by SETS;
 * `stream_us` is the same without a graph (plain launches, one layer per timing);
 * `host_route_us` is one layer with host routing (logits copied back, routed on the host,
 * plan uploaded; the stream waits for the host meanwhile).  The floor is the touched
 * experts' bytes (+ x and y) over the device-to-device copy bandwidth of 1 GiB measured in
 * the same run (read + write counted). */
#define BENCH_SETS 4
typedef struct bench_graph {
  moert_scratch *sc;
  moert_route_args ra;
  moert_forward_args fa[BENCH_SETS];
  tool_gpu *g;
} bench_graph;

static int bench_graph_step(void *ctx) {
  bench_graph *b = ctx;
  for (int i = 0; i < BENCH_SETS; i++)
    if (moert_moe(b->sc, &b->ra, &b->fa[i], tool_gpu_stream(b->g)) != MOERT_OK) return 1;
  return 0;
}

/* Captures bg's BENCH_SETS layers in a CUDA graph and times `warm` + iters replays, the card's
 * clocks sampled meanwhile: v[i] = replay i's time / BENCH_SETS (us).  0 on success; on a
 * failed capture -1 with a line on stderr and v, clk untouched. */
static int bench_graph_time(tool_gpu *g, bench_graph *bg, int warm, int iters, double *v,
                            tool_gpu_clocks *clk) {
  if (tool_gpu_graph_capture(g, bench_graph_step, bg) != 0) {
    fprintf(stderr, "CUDA graph capture failed: %s\n", moert_last_error());
    return -1;
  }
  tool_gpu_clocks_start(g);
  for (int it = -warm; it < iters; it++) {
    tool_gpu_mark(g, 0);
    tool_gpu_graph_launch(g);
    tool_gpu_mark(g, 1);
    const double us = tool_gpu_elapsed_ms(g, 0, 1) * 1e3 / BENCH_SETS;
    if (it >= 0) v[it] = us;
  }
  tool_gpu_clocks_stop(g, clk);
  tool_gpu_graph_release(g);
  return 0;
}

static void bench_forward(const options *o) {
  const model *m = o->m;
  tool_gpu *g;
  moert_runtime *rt = open_runtime(o->backend, 0, &g);
  const int cuda = g != NULL;
  const char *bname = cuda ? "cuda" : "cpu";
  const uint32_t *ts = o->ntlist ? o->tlist : cuda ? DEFAULT_GPU_T : DEFAULT_CPU_T;
  int nt = o->ntlist ? o->ntlist
                     : cuda ? (int)(sizeof DEFAULT_GPU_T / sizeof *DEFAULT_GPU_T)
                            : (int)(sizeof DEFAULT_CPU_T / sizeof *DEFAULT_CPU_T);
  uint32_t maxT = 1;
  for (int i = 0; i < nt; i++) maxT = ts[i] > maxT ? ts[i] : maxT;
  moert_layer_desc d;
  layer_desc(m, &d);
  /* weights several times larger than the caches, rotated between runs */
  const uint32_t sets = cuda ? BENCH_SETS : 1;
  layer_weights host, *lw = calloc(sets, sizeof *lw);
  make_weights(m, o->seed, &host);
  for (uint32_t i = 0; i < sets; i++) bind_experts(rt, m, &d, g, &host, &lw[i]);
  moert_scratch *sc;
  CHECK(moert_scratch_create(rt, &d, maxT, &sc));
  CHECK(moert_scratch_prepare(sc));
  const size_t nx = (size_t)maxT * m->H;
  uint16_t *x = malloc(nx * 2), *y = malloc(nx * 2);
  float *logits = malloc((size_t)maxT * m->E * 4);
  if (!x || !y || !logits) die("out of memory");
  uint64_t s = o->seed + 3;
  for (size_t i = 0; i < nx; i++) x[i] = to_bf16(unif(&s));
  fill_logits(logits, (size_t)maxT * m->E, o->seed + 4);
  void *dx = NULL, *dy = NULL, *dl = NULL;
  if (cuda) {
    dx = upload(g, x, nx * 2);
    dy = upload(g, y, nx * 2);
    dl = upload(g, logits, (size_t)maxT * m->E * 4);
  }
  const double wbytes_expert = 3.0 * m->H * m->I * 2;
  const double shared_bytes = 3.0 * m->H * m->Is * 2;
  const double bw = copy_gbps(g, (size_t)1 << 30);
  if (!o->json)
    printf("forward, %s on %s (E=%u k=%u H=%u I=%u bf16)%s\n", m->name,
           moert_runtime_backend_note(rt), m->E, m->k, m->H, m->I,
           cuda ? ", device routing in a CUDA graph of 4 layers, CUDA events; floor from a "
                  "1 GiB D2D copy" : ", wall clock");
  for (int i = 0; i < nt; i++) {
    const uint32_t T = ts[i];
    moert_route_args ra = {sizeof ra, T, MOERT_DTYPE_F32, cuda ? MOERT_MEMORY_DEVICE : MOERT_MEMORY_HOST,
                           cuda ? dl : (void *)logits, 0, NULL, MOERT_ROUTING_AUTO};
    CHECK(moert_route(sc, &ra, cuda ? tool_gpu_stream(g) : NULL));
    const uint32_t touched = touched_experts(sc);
    const double bytes = touched * wbytes_expert + shared_bytes + 2.0 * T * m->H * 2;
    const int iters = o->iters ? (int)o->iters : cuda ? 50 : 5;
    double *v = calloc((size_t)iters, sizeof *v);
    if (!v) die("out of memory");
    double stream_us = 0, host_us = 0, graph_us = 0;
    tool_gpu_clocks clk; /* the card's clocks over the graph's timing */
    memset(&clk, 0, sizeof clk);
    for (int pass = 0; pass < (cuda ? 2 : 1); pass++) { /* 0: device routing, 1: host */
      moert_route_args r2 = ra;
      if (pass == 1) r2.mode = MOERT_ROUTING_HOST;
      for (int it = -2; it < iters; it++) {
        moert_forward_args fa = {sizeof fa, lw[(it + 2) % sets].experts,
                                 cuda ? MOERT_MEMORY_DEVICE : MOERT_MEMORY_HOST,
                                 cuda ? dx : (void *)x, 0, cuda ? dy : (void *)y, 0, 0};
        double us;
        if (cuda) {
          tool_gpu_mark(g, 0);
          CHECK(moert_moe(sc, &r2, &fa, tool_gpu_stream(g)));
          tool_gpu_mark(g, 1);
          us = tool_gpu_elapsed_ms(g, 0, 1) * 1e3;
        } else {
          double a = now_us();
          CHECK(moert_forward(sc, &fa, NULL));
          us = now_us() - a;
        }
        if (it >= 0) v[it] = us;
      }
      if (pass == 0) stream_us = median(v, iters);
      else host_us = median(v, iters);
    }
    if (cuda) { /* the graph: BENCH_SETS layers of device routing + forward */
      /* device routing again after the host-routing pass (outside the timing), so that the
       * scratch holds a device routing as under MOERT_BENCH_SKIP=1 */
      CHECK(moert_route(sc, &ra, tool_gpu_stream(g)));
      bench_graph bg = {sc, ra, {{0}}, g};
      for (int j = 0; j < BENCH_SETS; j++)
        bg.fa[j] = (moert_forward_args){sizeof bg.fa[j], lw[j].experts, MOERT_MEMORY_DEVICE, dx,
                                        0, dy, 0, 0};
      if (bench_graph_time(g, &bg, 3, iters, v, &clk) == 0) graph_us = median(v, iters);
    }
    free(v);
    const double us = cuda && graph_us > 0 ? graph_us : stream_us;
    const double floor_us = bytes / (bw * 1e9) * 1e6, gbps = bytes / (us * 1e-6) / 1e9;
    char text[512], json[1536];
    if (cuda)
      snprintf(text, sizeof text,
               "  T=%-5u %8.1f us  floor %8.1f us  ratio %5.2f  %7.1f GB/s  | no graph %8.1f us"
               "  host routing %8.1f us  %u experts\n",
               T, us, floor_us, us / floor_us, gbps, stream_us, host_us, touched);
    else
      snprintf(text, sizeof text,
               "  T=%-5u %10.1f us  floor %9.1f us  ratio %5.2f  %7.1f GB/s (copy %6.1f GB/s)  "
               "%u experts\n", T, us, floor_us, us / floor_us, gbps, bw, touched);
    snprintf(json, sizeof json,
             "{\"stage\":\"forward\",\"model\":\"%s\",\"backend\":\"%s\",\"T\":%u,\"us\":%.2f,"
             "\"floor_us\":%.2f,\"ratio\":%.3f,\"gbps\":%.1f,\"copy_gbps\":%.1f,"
             "\"floor_from\":\"%s\",\"touched\":%u,\"bytes\":%.0f",
             m->name, bname, T, us, floor_us, us / floor_us, gbps, bw,
             cuda ? "d2d copy of 1 GiB, read+write" : "host memcpy", touched, bytes);
    if (cuda) {
      size_t n = strlen(json);
      snprintf(json + n, sizeof json - n,
               ",\"timing\":\"cuda graph of %d layers, median of %d\",\"stream_us\":%.2f,"
               "\"host_route_us\":%.2f,\"device\":\"%s\"",
               BENCH_SETS, iters, stream_us, host_us, tool_gpu_name(g));
      clocks_json(&clk, json, sizeof json);
      clocks_text(&clk, text, sizeof text);
    }
    size_t n = strlen(json);
    snprintf(json + n, sizeof json - n, "}");
    emit(o, text, json);
  }
  for (uint32_t i = 0; i < sets; i++) moert_experts_destroy(lw[i].experts);
  free_host_weights(&host);
  moert_scratch_destroy(sc);
  moert_runtime_destroy(rt);
  tool_gpu_close(g);
  free(lw); free(x); free(y); free(logits);
}

/* The prefill stage (CUDA only): the whole layer, route (device) + plan + the experts'
 * GEMMs + combine (+ the shared expert), for T = 1024 .. 32768 tokens.
 *
 * `us` is the median of `iters` CUDA-event-timed replays of one CUDA graph of BENCH_SETS
 * layers (device routing + forward, the weight sets taken in turn: each set is at least
 * 1.2 GB, far more than the 50 MB L2, so every layer reads its experts from HBM), divided by
 * BENCH_SETS - the layers back to back, as in a model's stack and as the Triton peer is timed
 * (tools/triton_moe_peer.py: graph replays of 4 calls).  `stream_us` is the median of
 * CUDA-event-timed single calls on the stream, each waited for: it adds the time from the
 * first event to the first kernel (host launch latency; 15 us of 353 for Qwen3-30B-A3B at
 * T=1024 on an H200, docs/bench/prefill-log.md v13) and was `us` up to v12.  `tflops` = 6 T k H I / us
 * (the routed experts' flops; a shared expert's are in `shared_flops`, not counted).  The
 * floor is the larger of: the bandwidth floor, the touched experts' bytes (+ shared expert,
 * x and y) over the device-to-device copy bandwidth of 1 GiB measured in the same run (read
 * + write counted, as the forward stage); and the compute floor, all flops (shared ones
 * too) over --dense-tflops (a dense 8192^3 bf16 GEMM measured on the same card by the
 * peers script, tools/bench-prefill.sh), 0 when not given. */
static const uint32_t DEFAULT_PREFILL_T[] = {1024, 2048, 4096, 8192, 16384, 32768};

static void bench_prefill(const options *o) {
  const model *m = o->m;
  tool_gpu *g;
  moert_runtime *rt = open_runtime(o->backend, 0, &g);
  if (!g) {
    fprintf(stderr, "moert bench --stage prefill needs the CUDA backend (%s)\n",
            moert_runtime_backend_note(rt));
    moert_runtime_destroy(rt);
    return;
  }
  const uint32_t *ts = o->ntlist ? o->tlist : DEFAULT_PREFILL_T;
  const int nt = o->ntlist ? o->ntlist : (int)(sizeof DEFAULT_PREFILL_T / sizeof *DEFAULT_PREFILL_T);
  uint32_t maxT = 1;
  for (int i = 0; i < nt; i++) maxT = ts[i] > maxT ? ts[i] : maxT;
  moert_layer_desc d;
  layer_desc(m, &d);
  const double set_bytes = 3.0 * (double)expert_elems(m) * 2;
  /* two weight sets rotated where they fit in 10 GB, else one (DeepSeek-V3: 22 GB a set) */
  const uint32_t sets = o->weight_sets ? o->weight_sets : set_bytes * 2 <= 10e9 ? 2 : 1;
  layer_weights host, *lw = calloc(sets, sizeof *lw);
  if (!lw) die("out of memory");
  const double t_w = now_us();
  make_weights(m, o->seed, &host);
  for (uint32_t i = 0; i < sets; i++) bind_experts(rt, m, &d, g, &host, &lw[i]);
  free_host_weights(&host);
  const double weights_s = (now_us() - t_w) * 1e-6;
  moert_scratch *sc;
  CHECK(moert_scratch_create(rt, &d, maxT, &sc));
  const double t_p = now_us();
  CHECK(moert_scratch_prepare(sc));
  const double prepare_s = (now_us() - t_p) * 1e-6;
  const size_t nx = (size_t)maxT * m->H;
  uint16_t *x = malloc(nx * 2);
  float *logits = malloc((size_t)maxT * m->E * 4);
  if (!x || !logits) die("out of memory");
  uint64_t s = o->seed + 3;
  for (size_t i = 0; i < nx; i++) x[i] = to_bf16(unif(&s));
  fill_logits(logits, (size_t)maxT * m->E, o->seed + 4);
  void *dx = upload(g, x, nx * 2), *dy = tool_gpu_alloc(g, nx * 2);
  void *dl = upload(g, logits, (size_t)maxT * m->E * 4);
  if (!dy) die("device allocation failed");
  const double bw = copy_gbps(g, (size_t)1 << 30);
  if (!o->json)
    printf("prefill, %s on %s (E=%u k=%u H=%u I=%u bf16), device routing, CUDA events, %u weight "
           "set(s) of %.2f GB rotated; floor = max(bytes / %.0f GB/s (1 GiB D2D copy), flops / "
           "%.0f TFLOP/s (dense GEMM, --dense-tflops)); weights made in %.1f s, kernels in %.1f s\n",
           m->name, moert_runtime_backend_note(rt), m->E, m->k, m->H, m->I, sets, set_bytes / 1e9,
           bw, o->dense_tflops, weights_s, prepare_s);
  for (int i = 0; i < nt; i++) {
    const uint32_t T = ts[i];
    moert_route_args ra = {sizeof ra, T, MOERT_DTYPE_F32, MOERT_MEMORY_DEVICE, dl, 0, NULL,
                           MOERT_ROUTING_DEVICE};
    CHECK(moert_route(sc, &ra, tool_gpu_stream(g)));
    const uint32_t touched = touched_experts(sc);
    const double bytes = touched * 3.0 * m->H * m->I * 2 + 3.0 * m->H * m->Is * 2 +
                         2.0 * T * m->H * 2;
    const double flops = 6.0 * T * m->k * (double)m->H * m->I;
    const double shared_flops = 6.0 * T * (double)m->H * m->Is;
    const int iters = o->iters ? (int)o->iters : T <= 4096 ? 40 : T <= 16384 ? 20 : 10;
    double *v = calloc((size_t)iters, sizeof *v);
    if (!v) die("out of memory");
    for (int it = -2; it < iters; it++) {
      moert_forward_args fa = {sizeof fa, lw[(uint32_t)(it + 2) % sets].experts,
                               MOERT_MEMORY_DEVICE, dx, 0, dy, 0, 0};
      tool_gpu_mark(g, 0);
      CHECK(moert_moe(sc, &ra, &fa, tool_gpu_stream(g)));
      tool_gpu_mark(g, 1);
      const double us = tool_gpu_elapsed_ms(g, 0, 1) * 1e3;
      if (it >= 0) v[it] = us;
    }
    const double stream_us = median(v, iters); /* median sorts v: v[0] is the fastest */
    double us = stream_us, lo = v[0];
    /* the graph of BENCH_SETS layers */
    bench_graph bg = {sc, ra, {{0}}, g};
    for (int j = 0; j < BENCH_SETS; j++)
      bg.fa[j] = (moert_forward_args){sizeof bg.fa[j], lw[(uint32_t)j % sets].experts,
                                      MOERT_MEMORY_DEVICE, dx, 0, dy, 0, 0};
    tool_gpu_clocks clk;
    memset(&clk, 0, sizeof clk);
    char timing[128] = "cuda events around moert_moe (device routing), median (graph failed)";
    if (bench_graph_time(g, &bg, 2, iters, v, &clk) == 0) {
      us = median(v, iters);
      lo = v[0];
      snprintf(timing, sizeof timing,
               "cuda graph of %d layers (device routing), median of replays / %d", BENCH_SETS,
               BENCH_SETS);
    }
    free(v);
    const double floor_bw = bytes / (bw * 1e9) * 1e6;
    const double floor_c = o->dense_tflops > 0 ? (flops + shared_flops) / (o->dense_tflops * 1e6) : 0;
    const double floor_us = floor_bw > floor_c ? floor_bw : floor_c;
    const double tflops = flops / us * 1e-6;
    char text[512], json[1536];
    snprintf(text, sizeof text,
             "  T=%-6u %9.1f us  %6.1f TFLOP/s  floor %8.1f us (bandwidth %8.1f, compute %8.1f)  "
             "ratio %5.2f  %u experts  | per call %8.1f us\n", T, us, tflops, floor_us, floor_bw,
             floor_c, us / floor_us, touched, stream_us);
    snprintf(json, sizeof json,
             "{\"stage\":\"prefill\",\"model\":\"%s\",\"backend\":\"cuda\",\"T\":%u,"
             "\"us\":%.2f,\"min_us\":%.2f,\"tflops\":%.1f,\"floor_us\":%.2f,"
             "\"floor_bw_us\":%.2f,\"floor_compute_us\":%.2f,\"ratio\":%.3f,"
             "\"copy_gbps\":%.1f,\"dense_tflops\":%.1f,\"flops\":%.0f,\"shared_flops\":%.0f,"
             "\"bytes\":%.0f,\"touched\":%u,\"iters\":%d,\"weight_sets\":%u,"
             "\"timing\":\"%s\",\"stream_us\":%.2f,"
             "\"prefill_env\":\"%s\",\"device\":\"%s\"",
             m->name, T, us, lo, tflops, floor_us, floor_bw, floor_c, us / floor_us, bw,
             o->dense_tflops, flops, shared_flops, bytes, touched, iters, sets,
             timing, stream_us,
             getenv("MOERT_CUDA_PREFILL") ? getenv("MOERT_CUDA_PREFILL") : "auto",
             tool_gpu_name(g));
    clocks_json(&clk, json, sizeof json);
    clocks_text(&clk, text, sizeof text);
    const size_t n = strlen(json);
    snprintf(json + n, sizeof json - n, "}");
    emit(o, text, json);
  }
  for (uint32_t i = 0; i < sets; i++) moert_experts_destroy(lw[i].experts);
  moert_scratch_destroy(sc);
  moert_runtime_destroy(rt);
  tool_gpu_close(g);
  free(lw); free(x); free(logits);
}

static int cmd_bench(const options *o) {
  if (!strcmp(o->stage, "route") || !strcmp(o->stage, "all")) bench_route(o);
  if (!strcmp(o->stage, "forward") || !strcmp(o->stage, "all")) bench_forward(o);
  if (!strcmp(o->stage, "prefill")) bench_prefill(o);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) usage();
  options o;
  memset(&o, 0, sizeof o);
  parse(argc, argv, &o);
  if (!strcmp(argv[1], "run")) return cmd_run(&o);
  if (!strcmp(argv[1], "bench")) return cmd_bench(&o);
  if (!strcmp(argv[1], "version")) {
    printf("moert %s\n", moert_version_string());
    return 0;
  }
  usage();
  return 2;
}
