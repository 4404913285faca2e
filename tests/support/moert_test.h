/* moert_test.h — helpers shared by the Check test programs in tests/.
 *
 * Everything here is independent of the library's own code: dtype conversion, the
 * reference router and the reference MoE forward are written from the maths (and the
 * contract in abi/moert.h), computed in float64, so a bug in the library cannot hide in
 * a helper that shares its code.
 *
 *  - rng:       a seeded xorshift64* generator.  Every test draws fresh random data: the
 *               base seed comes from $MOERT_TEST_SEED or, unset, from the clock; each test
 *               derives its own seed from the base and its name and prints
 *               "MOERT_TEST_SEED=<base>" to stderr, so a failing run is replayed exactly by
 *               exporting that value (ctest --output-on-failure shows it).
 *  - dtype:     bf16 / f16 <-> f32 (round to nearest even), typed loads and stores.
 *  - reference: float64 router (both router kinds) and float64 SwiGLU MoE forward.
 *  - poison:    NaN bit patterns no arithmetic produces, and checks for them.
 *  - fixtures:  loader for tests/fixtures/<case>/ (config.txt, manifest.txt, tensors.bin).
 *  - compare:   relative L2 and per-element comparison of an output against a reference.
 */
#ifndef MOERT_TEST_H
#define MOERT_TEST_H

#include <check.h>
#include <stddef.h>
#include <stdint.h>

#include "moert.h"

/* ---- rng ---------------------------------------------------------------------------- */

typedef struct mt_rng {
  uint64_t s;
} mt_rng;

/* The base seed of this process: $MOERT_TEST_SEED (decimal or 0x hex) or clock ^ pid. */
uint64_t mt_base_seed(void);
/* Seeds r for one test from the base seed, name and loop index; prints the replay line. */
void mt_rng_for_test(mt_rng *r, const char *name, int index);
/* Inside a START_TEST body: `MT_RNG(rng);` declares and seeds rng for this test. */
#define MT_RNG(r) \
  mt_rng r;       \
  mt_rng_for_test(&r, __func__, _i)

uint64_t mt_next(mt_rng *r);
uint32_t mt_below(mt_rng *r, uint32_t n);             /* uniform in 0..n-1, n > 0 */
double mt_uniform(mt_rng *r, double lo, double hi);    /* uniform in [lo, hi) */
double mt_normal(mt_rng *r);                            /* standard normal */
void mt_shuffle_i32(mt_rng *r, int32_t *v, uint32_t n);

/* ---- dtype -------------------------------------------------------------------------- */

float mt_bf16_to_f32(uint16_t h);
uint16_t mt_f32_to_bf16(float f); /* round to nearest even; NaN stays NaN */
float mt_f16_to_f32(uint16_t h);
uint16_t mt_f32_to_f16(float f);  /* round to nearest even, subnormals, overflow -> inf */
size_t mt_dtype_size(moert_dtype dtype); /* 0 for an unknown dtype */
const char *mt_dtype_name(moert_dtype dtype);
/* Element i of a dtype buffer, as double (exact). */
double mt_load(const void *buf, moert_dtype dtype, size_t i);
/* Stores v rounded to dtype (v -> f32 -> dtype); returns the value actually stored. */
double mt_store(void *buf, moert_dtype dtype, size_t i, double v);
/* Fills n elements with uniform values in [lo, hi), rounded to dtype. */
void mt_fill_uniform(mt_rng *r, void *buf, moert_dtype dtype, size_t n, double lo, double hi);
/* Decodes n elements of a dtype buffer to double. */
void mt_decode(const void *buf, moert_dtype dtype, size_t n, double *out);
/* malloc that aborts on failure (tests only); aligned to 64 bytes. */
void *mt_alloc(size_t bytes);
void mt_free(void *p);

/* ---- poison ------------------------------------------------------------------------- */

/* A quiet-NaN bit pattern per dtype that arithmetic never produces (the library's NaNs
 * would be the default 0x7fc00000 / 0xffc00000 family). */
void mt_poison(void *buf, moert_dtype dtype, size_t n);
int mt_is_poison(const void *buf, moert_dtype dtype, size_t i);
/* Poisons raw bytes with 0xA5 (for non-float buffers: ids, structs). */
void mt_poison_bytes(void *buf, size_t n);

/* ---- reference router --------------------------------------------------------------- */

typedef struct mt_router {
  uint32_t E, k;
  moert_router_kind kind;
  int renormalize;
  uint32_t n_group, topk_group; /* 0 or 1 groups = no groups */
  double scale;                 /* routed scaling factor (0 taken as 1) */
} mt_router;

void mt_router_from_desc(mt_router *r, const moert_layer_desc *desc);

typedef struct mt_route_row {
  int32_t ids[16];   /* by descending choice value, ties to the lower index */
  double w[16];      /* final weights */
  double choice[16]; /* the selection value of each chosen expert */
  /* How close the decisions were, in the selection value: the distance from the k-th
   * chosen value to the nearest candidate value not equal to it (and, with groups, from
   * the last kept group's score to the nearest different group score).  Exact ties are
   * decided by the lower index and are not counted; a float32 implementation may decide
   * otherwise where this is within its rounding (sigmoid scores).  INFINITY if none. */
  double set_margin;
  /* Smallest nonzero gap between consecutive chosen experts (order inside the row). */
  double order_margin;
  int nan_expert; /* index of the first NaN logit, or -1 */
} mt_route_row;

/* Routes one row of E logits (double, exactly the values the library sees). */
void mt_ref_route_row(const mt_router *r, const double *logits, const double *bias,
                      mt_route_row *out);
/* The reference weights (same formula as mt_ref_route_row) for a given set of chosen ids:
 * used where the chosen set is ambiguous within float32 rounding. */
void mt_ref_weights_for_ids(const mt_router *r, const double *logits, const int32_t *ids,
                            double *w);

/* ---- reference forward -------------------------------------------------------------- */

typedef struct mt_ref_layer {
  uint32_t E, k, H, I, Is;
  moert_shared_gate shared_gate;
  moert_dtype wdtype;
  /* per-expert matrices in wdtype: gate[e], up[e] [I, H]; down[e] [H, I] */
  const void *const *gate;
  const void *const *up;
  const void *const *down;
  const void *sgate, *sup, *sdown; /* [Is, H], [Is, H], [H, Is] (Is > 0) */
  const void *sgate_w;             /* [H], SIGMOID gate only */
} mt_ref_layer;

/* y[t, :] = sum_j w[t,j] * down_e(silu(gate_e x) * up_e x) + shared expert, in double.
 * x is [T, H] decoded values; ids/w are [T, k]; y is [T, H] (overwritten). */
void mt_ref_forward(const mt_ref_layer *L, uint32_t T, const double *x, const int32_t *ids,
                    const double *w, double *y);

/* ---- compare ------------------------------------------------------------------------ */

typedef struct mt_cmp {
  double rel_l2;     /* ||got - ref|| / ||ref|| */
  double max_err;    /* largest |got - ref| / (|ref| * rel_tol + row_rms * rms_tol) */
  size_t worst;      /* flat index (t * H + h) of max_err */
  double worst_got, worst_ref;
  size_t nonfinite;  /* elements of got that are NaN or Inf (poison included) */
  size_t first_nonfinite;
} mt_cmp;

/* Compares got [T, H] (dtype, row stride in elements) against ref [T, H] (double).
 * Element tolerance: |got - ref| <= rel_tol*|ref| + rms_tol*rms(ref row t); max_err is
 * the largest ratio of error to that tolerance (<= 1 passes). */
void mt_compare(const void *got, moert_dtype dtype, uint64_t stride, const double *ref,
                uint32_t T, uint32_t H, double rel_tol, double rms_tol, mt_cmp *out);

/* ---- fixtures ----------------------------------------------------------------------- */

#define MT_FX_MAX_TENSORS 32
#define MT_FX_MAX_KEYS 48

typedef struct mt_fx_tensor {
  char name[64];
  char dtype[8]; /* bf16, f32, i32 */
  uint32_t ndim;
  uint64_t shape[4];
  uint64_t offset, nbytes;
  const void *data; /* into mt_fixture.blob */
} mt_fx_tensor;

typedef struct mt_fixture {
  char name[128];
  char keys[MT_FX_MAX_KEYS][64];
  char vals[MT_FX_MAX_KEYS][128];
  int nkeys;
  mt_fx_tensor t[MT_FX_MAX_TENSORS];
  int nt;
  unsigned char *blob;
  size_t blob_size;
} mt_fixture;

/* The fixture directory (MOERT_TEST_FIXTURES, overridable by $MOERT_TEST_FIXTURES). */
const char *mt_fixture_dir(void);
/* Lists the case folders (sorted), up to max; returns how many. */
int mt_fixture_list(char names[][128], int max);
/* Loads a case; returns 0, or -1 with a sentence in err. */
int mt_fixture_load(const char *name, mt_fixture *fx, char *err, size_t errlen);
void mt_fixture_free(mt_fixture *fx);
const mt_fx_tensor *mt_fixture_tensor(const mt_fixture *fx, const char *name); /* or NULL */
const char *mt_fixture_get(const mt_fixture *fx, const char *key);          /* or NULL */
long mt_fixture_get_long(const mt_fixture *fx, const char *key, long dflt);
double mt_fixture_get_double(const mt_fixture *fx, const char *key, double dflt);

/* ---- running a suite ---------------------------------------------------------------- */

/* Runs the suite with CK_NORMAL output, returns EXIT_SUCCESS or EXIT_FAILURE. */
int mt_run_suite(Suite *s);

/* A runtime on the CPU backend with num_threads (0 = default); fails the test on error. */
moert_runtime *mt_cpu_runtime(uint32_t num_threads);

/* Asserts st == want, printing both status names and the last error. */
#define MT_ASSERT_STATUS(st, want)                                                        \
  do {                                                                                    \
    moert_status mt_st_ = (st), mt_want_ = (want);                                        \
    ck_assert_msg(mt_st_ == mt_want_, "%s: got %d (%s), want %d (%s); last error: \"%s\"", \
                  #st, (int)mt_st_, moert_status_string(mt_st_), (int)mt_want_,           \
                  moert_status_string(mt_want_), moert_last_error());                      \
  } while (0)
#define MT_OK(st) MT_ASSERT_STATUS(st, MOERT_OK)

#endif
