/*
 * moert.h — the whole public contract of moert, a runtime for the Mixture-of-Experts
 * layer of large language models.
 *
 * An engine creates one moert_runtime per process and device, one moert_scratch per
 * thread (or stream) sized for the largest layer shape and token count it will run, and
 * one moert_experts view per layer.  For every MoE layer of every step it then calls
 *
 *     moert_route(scratch, &route_args, stream);     router logits -> top-k ids/weights + plan
 *     moert_forward(scratch, &forward_args, stream); the experts' SwiGLU FFN + weighted combine
 *
 * or moert_moe() for both.  After moert_scratch_create() returns, route and forward
 * allocate nothing.
 *
 * Conventions (they hold for every function below unless its comment says otherwise):
 *  - Every function that can fail returns a moert_status; MOERT_OK (0) is success.  On
 *    failure moert_last_error() returns a sentence naming the bad argument or the cause,
 *    and nothing the caller owns has been written.  New status codes may be added in
 *    later versions: treat any unknown non-zero code as an error.
 *  - The library never aborts, exits or prints.
 *  - Handles are opaque.  Each *_create has a *_destroy; destroying NULL is a no-op.
 *  - Structs passed in begin with `uint32_t struct_size`, which the caller sets to
 *    sizeof(the struct) as it was compiled; later versions only append fields.  A size
 *    smaller than the first released version of the struct, or larger than this library
 *    knows, is rejected with MOERT_ERR_STRUCT_SIZE.
 *  - Enumerations are fixed-width (uint32_t) with explicit values; new values are
 *    appended, removed ones are never reused.
 *  - Tensors are row-major.  A "row stride" is counted in elements, not bytes; 0 means
 *    "packed" (the row length).
 *  - Thread safety: a moert_runtime may be shared by any number of threads.  A
 *    moert_scratch must be used by one thread at a time.  A moert_experts is immutable
 *    after creation and may be shared.
 *  - Pointers named `stream` are a CUstream passed as void*; NULL is the default stream.
 *    The CPU backend ignores them.
 */
#ifndef MOERT_H
#define MOERT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- export and version ------------------------------------------------------------ */

#if defined(_WIN32)
#  define MOERT_API __declspec(dllimport)
#elif defined(MOERT_BUILDING_LIBRARY) && defined(__GNUC__)
#  define MOERT_API __attribute__((visibility("default")))
#else
#  define MOERT_API
#endif

#define MOERT_VERSION_MAJOR 0
#define MOERT_VERSION_MINOR 1
#define MOERT_VERSION_PATCH 0
/* MOERT_VERSION_NUMBER is MAJOR*10000 + MINOR*100 + PATCH. */
#define MOERT_VERSION_NUMBER \
  (MOERT_VERSION_MAJOR * 10000 + MOERT_VERSION_MINOR * 100 + MOERT_VERSION_PATCH)

/* The version of the library actually loaded, as MOERT_VERSION_NUMBER; compare it with
 * the macro to detect a header/library mismatch. */
MOERT_API uint32_t moert_version(void);
/* The same as "MAJOR.MINOR.PATCH"; a static string, never NULL. */
MOERT_API const char *moert_version_string(void);

/* ---- status codes ------------------------------------------------------------------ */

/* X(name, value, description).  One table makes the enum and moert_status_string(). */
#define MOERT_STATUS_LIST(X)                                                              \
  X(MOERT_OK, 0, "success")                                                               \
  X(MOERT_ERR_INVALID_ARGUMENT, 1, "an argument is out of range or inconsistent")         \
  X(MOERT_ERR_NULL_POINTER, 2, "a required pointer argument is NULL")                     \
  X(MOERT_ERR_STRUCT_SIZE, 3, "a struct_size field does not match a known struct size")   \
  X(MOERT_ERR_UNSUPPORTED, 4, "the combination of options is not supported")              \
  X(MOERT_ERR_OUT_OF_MEMORY, 5, "a host or device allocation failed")                     \
  X(MOERT_ERR_TOO_MANY_TOKENS, 6, "more tokens than the scratch was created for")         \
  X(MOERT_ERR_NAN_LOGIT, 7, "a router logit is NaN")                                      \
  X(MOERT_ERR_SHAPE_MISMATCH, 8, "objects were created for different layer shapes")       \
  X(MOERT_ERR_WRONG_RUNTIME, 9, "objects belong to different runtimes")                   \
  X(MOERT_ERR_NOT_ROUTED, 10, "forward was called before route or set_routing")           \
  X(MOERT_ERR_BACKEND_UNAVAILABLE, 11, "the requested backend cannot run on this machine") \
  X(MOERT_ERR_DRIVER, 12, "a CUDA driver call failed")                                    \
  X(MOERT_ERR_COMPILE, 13, "a kernel failed to compile")                                  \
  X(MOERT_ERR_EXPERT_ID, 14, "a caller-supplied expert id is out of range")               \
  X(MOERT_ERR_INTERNAL, 15, "an internal invariant failed (a bug in moert)")

typedef int32_t moert_status;
enum {
#define MOERT_STATUS_ENUM_(name, value, text) name = value,
  MOERT_STATUS_LIST(MOERT_STATUS_ENUM_)
#undef MOERT_STATUS_ENUM_
  MOERT_STATUS_END_
};

/* A static string naming the code ("MOERT_ERR_NULL_POINTER: a required pointer argument is
 * NULL"); never NULL, also for unknown codes. */
MOERT_API const char *moert_status_string(moert_status status);

/* The detail of the last failure on this thread: a sentence naming the argument or cause
 * (and, for MOERT_ERR_COMPILE, the compiler log).  Never NULL; "" before any failure.
 * The string is owned by the library and valid until the next moert call on this thread.
 * A successful call does not clear it. */
MOERT_API const char *moert_last_error(void);

/* ---- enumerations ------------------------------------------------------------------ */

typedef uint32_t moert_dtype;
enum {
  MOERT_DTYPE_F32 = 1,
  MOERT_DTYPE_BF16 = 2,
  MOERT_DTYPE_F16 = 3
};

typedef uint32_t moert_backend;
enum {
  MOERT_BACKEND_AUTO = 0, /* CUDA when a driver and GPU are present, else CPU */
  MOERT_BACKEND_CPU = 1,
  MOERT_BACKEND_CUDA = 2
};

typedef uint32_t moert_router_kind;
enum {
  /* softmax over the E logits, top-k; with renormalize the k weights are divided by their
   * sum (Qwen3-MoE, Mixtral), without it they are the plain softmax probabilities
   * (Qwen2-MoE).  Renormalised, this equals top-k on the logits and a softmax over the k. */
  MOERT_ROUTER_SOFTMAX_TOPK = 1,
  /* sigmoid scores; experts are chosen on score + correction_bias, inside the topk_group
   * best of n_group groups (a group scores the sum of its two best); the weights are the
   * plain scores, renormalised if asked, times routed_scaling_factor (DeepSeek-V3, Kimi-K2). */
  MOERT_ROUTER_SIGMOID_GROUP_TOPK = 2
};

typedef uint32_t moert_shared_gate;
enum {
  MOERT_SHARED_GATE_NONE = 0,    /* the shared expert's output is added as is (DeepSeek-V3) */
  MOERT_SHARED_GATE_SIGMOID = 1  /* scaled by sigmoid(x . shared_expert_gate) (Qwen2-MoE) */
};

typedef uint32_t moert_weight_layout;
enum {
  /* gate [E, I, H], up [E, I, H], down [E, H, I]: the per-expert Hugging Face
   * gate_proj/up_proj/down_proj weights ([out, in] each) stacked on a leading E axis. */
  MOERT_LAYOUT_STACKED = 1,
  /* gate_up [E, 2I, H] (rows 0..I-1 gate, I..2I-1 up: transformers' fused layout) and
   * down [E, H, I]. */
  MOERT_LAYOUT_STACKED_GATE_UP = 2,
  /* tables of E pointers, one [I, H] / [I, H] / [H, I] matrix per expert, so an engine
   * that loaded experts one by one copies nothing. */
  MOERT_LAYOUT_PER_EXPERT = 3
};

typedef uint32_t moert_memory;
enum {
  MOERT_MEMORY_HOST = 1,
  MOERT_MEMORY_DEVICE = 2
};

typedef uint32_t moert_routing_mode;
enum {
  MOERT_ROUTING_AUTO = 0,   /* DEVICE on the CUDA backend, HOST on the CPU backend */
  /* logits are copied to the host (a stream synchronisation), routed and planned there and
   * the plan uploaded: simple, but not capturable in a CUDA graph */
  MOERT_ROUTING_HOST = 1,
  /* route and plan run as kernels on the caller's stream: no host round trip */
  MOERT_ROUTING_DEVICE = 2
};

/* ---- the runtime ------------------------------------------------------------------- */

typedef struct moert_runtime moert_runtime;

typedef struct moert_runtime_options {
  uint32_t struct_size;    /* sizeof(moert_runtime_options) */
  moert_backend backend;   /* MOERT_BACKEND_AUTO, _CPU or _CUDA */
  int32_t device_ordinal;  /* CUDA device; ignored when cu_context is set */
  uint32_t num_threads;    /* CPU worker threads; 0 = one per online CPU */
  void *cu_context;        /* a caller's CUcontext to use, or NULL */
  const char *cache_dir;   /* JIT cache folder; NULL = $MOERT_CACHE_DIR, $XDG_CACHE_HOME/moert,
                              ~/.cache/moert; "" disables the disk cache.  Copied. */
} moert_runtime_options;

/* Sets *options to the defaults (backend AUTO, device 0, threads 0, no context, default
 * cache) with struct_size filled in.  Returns MOERT_ERR_NULL_POINTER for NULL. */
MOERT_API moert_status moert_runtime_options_init(moert_runtime_options *options);

/* Creates a runtime.  options may be NULL for the defaults.  With backend AUTO a missing
 * driver or GPU falls back to the CPU backend (moert_runtime_backend() tells which one,
 * moert_runtime_backend_note() why); with backend CUDA it fails with
 * MOERT_ERR_BACKEND_UNAVAILABLE.  The CPU thread pool is created here, never per call.
 * On success *out owns the runtime; on failure *out is left unchanged. */
MOERT_API moert_status moert_runtime_create(const moert_runtime_options *options,
                                            moert_runtime **out);
/* Destroys the runtime; every scratch and experts made from it must be destroyed first. */
MOERT_API void moert_runtime_destroy(moert_runtime *runtime);
/* The backend in use (CPU or CUDA; never AUTO).  0 for NULL. */
MOERT_API moert_backend moert_runtime_backend(const moert_runtime *runtime);
/* A sentence on how the backend was chosen ("CUDA: NVIDIA H100 (sm_90)", "CPU (no CUDA:
 * libcuda.so.1 not found)"); never NULL.  Owned by the runtime: valid until it is
 * destroyed (for NULL, a static string). */
MOERT_API const char *moert_runtime_backend_note(const moert_runtime *runtime);

/* ---- the layer shape --------------------------------------------------------------- */

typedef struct moert_layer_desc {
  uint32_t struct_size;        /* sizeof(moert_layer_desc) */
  uint32_t num_experts;        /* E, 1..512 */
  uint32_t top_k;              /* k, 1..16 and <= E */
  uint32_t hidden;             /* H */
  uint32_t intermediate;       /* I of each routed expert */
  uint32_t shared_intermediate; /* I of the shared expert; 0 = no shared expert */
  moert_shared_gate shared_gate;
  moert_dtype act_dtype;       /* dtype of x and y */
  moert_dtype weight_dtype;    /* dtype of every expert weight */
  moert_router_kind router;
  uint32_t renormalize;        /* 1: divide the k weights by their sum */
  uint32_t n_group;            /* SIGMOID_GROUP_TOPK: groups (divides E); 0 or 1 = no groups */
  uint32_t topk_group;         /* SIGMOID_GROUP_TOPK: groups kept */
  float routed_scaling_factor; /* multiplies the weights; 0 is taken as 1 */
  uint32_t plan_block_rows;    /* rows per block of the padded plan; 0 = backend's choice */
} moert_layer_desc;

/* Sets *desc to a zeroed desc with struct_size filled in and renormalize = 1,
 * router = SOFTMAX_TOPK, dtypes BF16, routed_scaling_factor = 1. */
MOERT_API moert_status moert_layer_desc_init(moert_layer_desc *desc);

/* ---- scratch: everything one layer call needs, allocated once ---------------------- */

typedef struct moert_scratch moert_scratch;

/* Creates a scratch for layers of shape *desc and up to max_tokens tokens per call.
 * Every host and device buffer route, plan and forward need is allocated here, in one
 * arena per memory kind; the scratch may be reused for every layer of that shape.
 * The scratch keeps a pointer to runtime (which must outlive it) and a copy of *desc. */
MOERT_API moert_status moert_scratch_create(moert_runtime *runtime, const moert_layer_desc *desc,
                                            uint32_t max_tokens, moert_scratch **out);
MOERT_API void moert_scratch_destroy(moert_scratch *scratch);
/* Compiles (or loads from the JIT cache) every kernel this scratch's forward and route
 * will use, so that the first call does no compiling.  A no-op on the CPU backend.  A
 * compile error returns MOERT_ERR_COMPILE with the compiler log in moert_last_error(). */
MOERT_API moert_status moert_scratch_prepare(moert_scratch *scratch);
/* Bytes of host and device memory the scratch holds (either pointer may be NULL). */
MOERT_API moert_status moert_scratch_memory(const moert_scratch *scratch, uint64_t *host_bytes,
                                            uint64_t *device_bytes);

/* ---- experts: borrowed views of one layer's weights -------------------------------- */

typedef struct moert_experts moert_experts;

typedef struct moert_experts_desc {
  uint32_t struct_size;        /* sizeof(moert_experts_desc) */
  moert_weight_layout layout;
  moert_memory memory;         /* where every pointer below points: host or device */
  /* MOERT_LAYOUT_STACKED */
  const void *gate;            /* [E, I, H] */
  const void *up;              /* [E, I, H] */
  /* MOERT_LAYOUT_STACKED_GATE_UP */
  const void *gate_up;         /* [E, 2I, H] */
  /* both stacked layouts */
  const void *down;            /* [E, H, I] */
  /* MOERT_LAYOUT_PER_EXPERT: host arrays of E pointers (the arrays are copied, the
   * matrices they point to are borrowed) */
  const void *const *gate_ptrs; /* each [I, H] */
  const void *const *up_ptrs;   /* each [I, H] */
  const void *const *down_ptrs; /* each [H, I] */
  /* shared expert, when the layer desc has shared_intermediate > 0 */
  const void *shared_gate;     /* [Is, H] */
  const void *shared_up;       /* [Is, H] */
  const void *shared_down;     /* [H, Is] */
  const void *shared_expert_gate; /* [H], weight dtype; MOERT_SHARED_GATE_SIGMOID only */
} moert_experts_desc;

/* Creates a view of one layer's expert weights for layers of shape *desc.  The weights
 * are borrowed, not copied: they must stay valid and unchanged while the view is used.
 * The weights' dtype is desc->weight_dtype.  Fails if a pointer the layout needs is NULL
 * or the memory kind does not fit the runtime's backend (device pointers need CUDA). */
MOERT_API moert_status moert_experts_create(moert_runtime *runtime, const moert_layer_desc *desc,
                                            const moert_experts_desc *weights,
                                            moert_experts **out);
MOERT_API void moert_experts_destroy(moert_experts *experts);

/* ---- route ------------------------------------------------------------------------- */

typedef struct moert_route_args {
  uint32_t struct_size;      /* sizeof(moert_route_args) */
  uint32_t num_tokens;       /* T, 0..max_tokens */
  moert_dtype logits_dtype;  /* F32, BF16 or F16 */
  moert_memory memory;       /* where logits (and correction_bias) live */
  const void *logits;        /* [T, E] with row stride logits_row_stride */
  uint64_t logits_row_stride; /* elements; 0 = E */
  const float *correction_bias; /* [E] f32, SIGMOID_GROUP_TOPK only (NULL = zeros) */
  moert_routing_mode mode;   /* AUTO, HOST or DEVICE (DEVICE needs the CUDA backend) */
} moert_route_args;

/* Routes T tokens: top-k experts and weights per token, then the bucket plan (tokens
 * grouped by expert).  Ties go to the lower expert index.  A NaN logit fails with
 * MOERT_ERR_NAN_LOGIT naming the token; +Inf/-Inf follow the limits of the maths (the +Inf
 * logits share the weight equally; a row of -Inf is uniform).  Results stay in the scratch
 * for the next forward and for the accessors below. */
MOERT_API moert_status moert_route(moert_scratch *scratch, const moert_route_args *args,
                                   void *stream);

/* For engines that route themselves: takes ids [T, k] (int32, 0..E-1, no duplicates
 * within a row) and weights [T, k] (f32, finite), host memory, and builds the plan.
 * An id out of range or repeated in a row fails with MOERT_ERR_EXPERT_ID, a weight that is
 * NaN or infinite with MOERT_ERR_INVALID_ARGUMENT, both naming the token and slot. */
MOERT_API moert_status moert_set_routing(moert_scratch *scratch, uint32_t num_tokens,
                                         const int32_t *expert_ids, const float *expert_weights,
                                         void *stream);

/* ---- forward ----------------------------------------------------------------------- */

typedef struct moert_forward_args {
  uint32_t struct_size;      /* sizeof(moert_forward_args) */
  const moert_experts *experts;
  moert_memory memory;       /* where x and y live */
  const void *x;             /* [T, H] act_dtype, T from the last route */
  uint64_t x_row_stride;     /* elements; 0 = H */
  void *y;                   /* [T, H] act_dtype; may not overlap x */
  uint64_t y_row_stride;     /* elements; 0 = H */
  uint32_t accumulate;       /* 0: y = moe(x); 1: y = y + moe(x) (a fused residual add) */
} moert_forward_args;

/* Runs the experts on the tokens of the last route/set_routing:
 *   y[t] (+)= sum_j w[t,j] * down_e(silu(gate_e x[t]) * up_e x[t])  (+ shared expert)
 * with float32 accumulation.  Allocates nothing. */
MOERT_API moert_status moert_forward(moert_scratch *scratch, const moert_forward_args *args,
                                     void *stream);

/* route + forward in one call. */
MOERT_API moert_status moert_moe(moert_scratch *scratch, const moert_route_args *route,
                                 const moert_forward_args *forward, void *stream);

/* ---- reading the router output and the plan ---------------------------------------- */

typedef struct moert_routing_view {
  uint32_t struct_size;      /* set by the caller to sizeof(moert_routing_view) */
  uint32_t num_tokens;       /* T of the last route */
  uint32_t top_k;
  const int32_t *expert_ids; /* [T, k]; in a row, by descending choice score */
  const float *expert_weights; /* [T, k] */
} moert_routing_view;

typedef struct moert_plan_view {
  uint32_t struct_size;      /* set by the caller to sizeof(moert_plan_view) */
  uint32_t num_tokens;       /* T */
  uint32_t num_experts;      /* E */
  uint32_t top_k;            /* k */
  /* Counting sort of the T*k (token, slot) pairs by expert, stable in token order:
   * expert e has sorted rows offsets[e] .. offsets[e+1]-1. */
  const int32_t *offsets;      /* [E+1] */
  const int32_t *packed_token; /* [T*k] token of each sorted row */
  const int32_t *pair_of;      /* [T*k] sorted row of pair t*k+j */
  /* Padded variant: each expert's rows rounded up to block_rows; block b of the
   * num_blocks belongs to expert block_expert[b]; padded rows past offsets[e+1]-offsets[e]
   * hold no token. */
  uint32_t block_rows;
  uint32_t num_blocks;
  const int32_t *padded_offsets; /* [E+1] */
  const int32_t *block_expert;   /* [num_blocks] */
} moert_plan_view;

/* Host views of the last routing and plan, valid until the next route/set_routing on this
 * scratch.  On the CUDA backend with device routing they are copied back first (a
 * synchronisation of the last stream used); they fail with MOERT_ERR_NOT_ROUTED before any
 * routing. */
MOERT_API moert_status moert_scratch_routing(moert_scratch *scratch, moert_routing_view *out);
MOERT_API moert_status moert_scratch_plan(moert_scratch *scratch, moert_plan_view *out);

/* ---- one symbol for dlopen hosts --------------------------------------------------- */

/* The whole ABI as a const table of function pointers, for a host that loads the library
 * with dlopen() and would rather resolve one symbol than one per function:
 *
 *     void *lib = dlopen("libmoert.so.0", RTLD_NOW | RTLD_LOCAL);
 *     const moert_api *(*get)(uint32_t) = (const moert_api *(*)(uint32_t))
 *         dlsym(lib, "moert_get_api");
 *     const moert_api *api = get(MOERT_VERSION_MAJOR);
 *     if (!api) ...;                       (a library of another major)
 *     api->runtime_create(NULL, &rt);
 *
 * The members are the functions above, in the order they are declared in this header,
 * without the moert_ prefix.  The order only grows: a later minor version appends
 * members at the end and never moves, removes or retypes one, so struct_size tells which
 * members a loaded library has; MOERT_API_HAS() tests for one before it is called.
 */
typedef struct moert_api {
  uint32_t struct_size; /* sizeof(moert_api) as the loaded library was built */
  uint32_t abi_major;   /* MOERT_VERSION_MAJOR of the loaded library */
  /* version and errors */
  uint32_t (*version)(void);
  const char *(*version_string)(void);
  const char *(*status_string)(moert_status status);
  const char *(*last_error)(void);
  /* the runtime */
  moert_status (*runtime_options_init)(moert_runtime_options *options);
  moert_status (*runtime_create)(const moert_runtime_options *options, moert_runtime **out);
  void (*runtime_destroy)(moert_runtime *runtime);
  moert_backend (*runtime_backend)(const moert_runtime *runtime);
  const char *(*runtime_backend_note)(const moert_runtime *runtime);
  /* the layer shape */
  moert_status (*layer_desc_init)(moert_layer_desc *desc);
  /* scratch */
  moert_status (*scratch_create)(moert_runtime *runtime, const moert_layer_desc *desc,
                                 uint32_t max_tokens, moert_scratch **out);
  void (*scratch_destroy)(moert_scratch *scratch);
  moert_status (*scratch_prepare)(moert_scratch *scratch);
  moert_status (*scratch_memory)(const moert_scratch *scratch, uint64_t *host_bytes,
                                 uint64_t *device_bytes);
  /* experts */
  moert_status (*experts_create)(moert_runtime *runtime, const moert_layer_desc *desc,
                                 const moert_experts_desc *weights, moert_experts **out);
  void (*experts_destroy)(moert_experts *experts);
  /* route and forward */
  moert_status (*route)(moert_scratch *scratch, const moert_route_args *args, void *stream);
  moert_status (*set_routing)(moert_scratch *scratch, uint32_t num_tokens,
                              const int32_t *expert_ids, const float *expert_weights,
                              void *stream);
  moert_status (*forward)(moert_scratch *scratch, const moert_forward_args *args,
                          void *stream);
  moert_status (*moe)(moert_scratch *scratch, const moert_route_args *route,
                      const moert_forward_args *forward, void *stream);
  /* reading the router output and the plan */
  moert_status (*scratch_routing)(moert_scratch *scratch, moert_routing_view *out);
  moert_status (*scratch_plan)(moert_scratch *scratch, moert_plan_view *out);
  /* new members are appended here */
} moert_api;

/* Nonzero when the table *api has the member `member` (a library at least as new as the
 * minor version that appended it). */
#define MOERT_API_HAS(api, member) \
  ((api)->struct_size >= offsetof(moert_api, member) + sizeof((api)->member))

/* The function table of this library for ABI major version abi_major (pass
 * MOERT_VERSION_MAJOR).  The table is static and const: it lives as long as the library
 * stays loaded, and the caller never frees it.  For any other major it returns NULL and
 * moert_last_error() names the major asked for and the one this library has.
 * Thread-safe. */
MOERT_API const moert_api *moert_get_api(uint32_t abi_major);

#ifdef __cplusplus
}
#endif
#endif /* MOERT_H */
