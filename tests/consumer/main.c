/* main.c — a consumer of an installed moert: one MoE layer on the CPU backend (softmax
 * top-k, renormalised, f32), checked against a float64 reference computed here.  Exits 0
 * and prints "consumer: ok" when the library's output matches. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <moert.h>

enum { E = 6, K = 2, H = 16, I = 8, T = 5 };

static float logits[T * E], x[T * H], y[T * H];
static float gate[E * I * H], up[E * I * H], down[E * H * I];

static unsigned rng = 12345u;
static float next_value(float scale) { /* an LCG is enough for a smoke test */
  rng = rng * 1664525u + 1013904223u;
  return scale * ((float)(rng >> 8) / 8388608.0f - 1.0f);
}

#define CHECK(call)                                                                      \
  do {                                                                                   \
    moert_status st_ = (call);                                                           \
    if (st_ != MOERT_OK) {                                                               \
      fprintf(stderr, "consumer: %s: %s: %s\n", #call, moert_status_string(st_),         \
              moert_last_error());                                                       \
      return 1;                                                                          \
    }                                                                                    \
  } while (0)

/* y_ref[t] = sum_j w_j * down_e(silu(gate_e x) * up_e x), top-k then softmax over the k. */
static void reference(double *y_ref) {
  for (int t = 0; t < T; t++) {
    const float *l = logits + t * E;
    int ids[K], taken[E] = {0};
    double w[K], sum = 0;
    for (int j = 0; j < K; j++) {
      int best = -1;
      for (int e = 0; e < E; e++)
        if (!taken[e] && (best < 0 || l[e] > l[best])) best = e;
      taken[best] = 1;
      ids[j] = best;
      w[j] = exp((double)l[best] - (double)l[ids[0]]);
      sum += w[j];
    }
    for (int h = 0; h < H; h++) y_ref[t * H + h] = 0;
    for (int j = 0; j < K; j++) {
      double act[I];
      for (int i = 0; i < I; i++) {
        double g = 0, u = 0;
        for (int h = 0; h < H; h++) {
          g += (double)gate[(ids[j] * I + i) * H + h] * x[t * H + h];
          u += (double)up[(ids[j] * I + i) * H + h] * x[t * H + h];
        }
        act[i] = g / (1 + exp(-g)) * u;
      }
      for (int h = 0; h < H; h++) {
        double acc = 0;
        for (int i = 0; i < I; i++) acc += (double)down[(ids[j] * H + h) * I + i] * act[i];
        y_ref[t * H + h] += w[j] / sum * acc;
      }
    }
  }
}

int main(void) {
  if (moert_version() != MOERT_VERSION_NUMBER) {
    fprintf(stderr, "consumer: header %d, library %u\n", MOERT_VERSION_NUMBER, moert_version());
    return 1;
  }
  for (int i = 0; i < T * E; i++) logits[i] = next_value(3.0f);
  for (int i = 0; i < T * H; i++) x[i] = next_value(1.0f);
  for (int i = 0; i < E * I * H; i++) gate[i] = next_value(0.4f);
  for (int i = 0; i < E * I * H; i++) up[i] = next_value(0.4f);
  for (int i = 0; i < E * H * I; i++) down[i] = next_value(0.4f);
  for (int i = 0; i < T * H; i++) y[i] = NAN;

  moert_runtime_options o;
  CHECK(moert_runtime_options_init(&o));
  o.backend = MOERT_BACKEND_CPU;
  moert_runtime *rt;
  CHECK(moert_runtime_create(&o, &rt));
  moert_layer_desc d;
  CHECK(moert_layer_desc_init(&d));
  d.num_experts = E;
  d.top_k = K;
  d.hidden = H;
  d.intermediate = I;
  d.act_dtype = MOERT_DTYPE_F32;
  d.weight_dtype = MOERT_DTYPE_F32;
  moert_scratch *s;
  CHECK(moert_scratch_create(rt, &d, T, &s));
  moert_experts_desc w;
  memset(&w, 0, sizeof w);
  w.struct_size = sizeof w;
  w.layout = MOERT_LAYOUT_STACKED;
  w.memory = MOERT_MEMORY_HOST;
  w.gate = gate;
  w.up = up;
  w.down = down;
  moert_experts *ex;
  CHECK(moert_experts_create(rt, &d, &w, &ex));
  moert_route_args r;
  memset(&r, 0, sizeof r);
  r.struct_size = sizeof r;
  r.num_tokens = T;
  r.logits_dtype = MOERT_DTYPE_F32;
  r.memory = MOERT_MEMORY_HOST;
  r.logits = logits;
  moert_forward_args f;
  memset(&f, 0, sizeof f);
  f.struct_size = sizeof f;
  f.experts = ex;
  f.memory = MOERT_MEMORY_HOST;
  f.x = x;
  f.y = y;
  CHECK(moert_moe(s, &r, &f, NULL));

  double y_ref[T * H], max_ref = 0;
  reference(y_ref);
  int bad = 0;
  for (int i = 0; i < T * H; i++) {
    max_ref = fmax(max_ref, fabs(y_ref[i]));
    if (!(fabs(y[i] - y_ref[i]) <= 1e-5 + 1e-4 * fabs(y_ref[i]))) {
      fprintf(stderr, "consumer: y[%d] = %.8g, want %.8g\n", i, (double)y[i], y_ref[i]);
      bad = 1;
    }
  }
  if (max_ref < 1e-3) {
    fprintf(stderr, "consumer: the reference is all zero: bad test data\n");
    bad = 1;
  }
  moert_experts_destroy(ex);
  moert_scratch_destroy(s);
  moert_runtime_destroy(rt);
  if (bad) return 1;
  printf("consumer: ok (moert %s, %s)\n", moert_version_string(), "CPU backend");
  return 0;
}
