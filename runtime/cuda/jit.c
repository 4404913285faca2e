/* jit.c — compiles the embedded kernel sources with NVRTC and caches the results, in
 * memory per runtime (loaded CUmodules) and on disk per user (CUBIN or PTX images).
 *
 * A disk cache file is named by a 64-bit FNV-1a hash of every embedded kernel source, the
 * compile options, the NVRTC version and the target architecture, so a changed kernel, a
 * new compiler or another GPU never picks up a stale image.  The file holds a header
 * (magic, format, key, payload length, payload checksum) and the image; a file whose header
 * or checksum does not match is ignored and recompiled, never loaded.  Files are written to
 * a temporary name and renamed, so a crash or a concurrent writer never leaves half a file
 * under the real name.  A read-only or missing folder just means no disk caching. */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jit.h"

/* The kernel sources, embedded at build time (cmake/embed_sources.cmake). */
typedef struct {
  const char *name;
  const char *text;
  size_t size;
} moert_embedded_source;
extern const moert_embedded_source moert_embedded_sources[];

#define JIT_FORMAT 1u
static const char jit_magic[8] = {'M', 'O', 'E', 'R', 'T', 'J', 'I', 'T'};

typedef struct jit_header {
  char magic[8];
  uint32_t format;
  uint32_t is_ptx;
  uint64_t key;
  uint64_t size;
  uint64_t checksum;
} jit_header;

static atomic_uint_fast64_t compile_count;

uint64_t moert_jit_compile_count(void) { return (uint64_t)atomic_load(&compile_count); }

uint64_t moert_fnv1a(uint64_t h, const void *data, size_t n) {
  const unsigned char *p = (const unsigned char *)data;
  for (size_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

static const moert_embedded_source *find_source(const char *name) {
  for (const moert_embedded_source *s = moert_embedded_sources; s->name; s++)
    if (strcmp(s->name, name) == 0) return s;
  return NULL;
}

/* Options for req and arch into opts (pointers into storage); returns the count. */
static int build_options(const moert_jit_request *req, const char *arch, char storage[][96],
                         const char **opts) {
  int n = 0;
  snprintf(storage[n], 96, "-arch=%s", arch);
  opts[n] = storage[n];
  n++;
  opts[n++] = "-std=c++17";
  opts[n++] = req->fmad ? "-fmad=true" : "-fmad=false";
  if (req->no_spills) {
    opts[n++] = "--ptxas-options=--warn-on-spills";
    opts[n++] = "--ptxas-options=--warning-as-error";
  }
  for (size_t i = 0; i < req->num_defines; i++) {
    snprintf(storage[n], 96, "-D%s", req->defines[i]);
    opts[n] = storage[n];
    n++;
  }
  return n;
}

moert_status moert_jit_compile(const moert_nvrtc *nv, const moert_jit_request *req,
                               const char *arch, void **image, size_t *size) {
  const moert_embedded_source *src = find_source(req->source);
  if (!src)
    return moert_fail(MOERT_ERR_INTERNAL, "kernel source %s is not embedded in the library",
                      req->source);
  if (req->num_defines > MOERT_JIT_MAX_DEFINES)
    return moert_fail(MOERT_ERR_INTERNAL, "too many -D options for %s", req->source);
  /* every embedded header is offered to the program; #include "x.h" picks them by name */
  const char *hdr_text[16], *hdr_name[16];
  int nh = 0;
  for (const moert_embedded_source *s = moert_embedded_sources; s->name && nh < 16; s++) {
    size_t len = strlen(s->name);
    if (len > 2 && strcmp(s->name + len - 2, ".h") == 0) {
      hdr_text[nh] = s->text;
      hdr_name[nh] = s->name;
      nh++;
    }
  }
  /* the embedded text is not NUL-terminated by contract: copy it */
  char *text = malloc(src->size + 1);
  if (!text) return moert_fail(MOERT_ERR_OUT_OF_MEMORY, "no memory to compile %s", req->source);
  memcpy(text, src->text, src->size);
  text[src->size] = '\0';
  /* the headers' texts are C string literals, NUL-terminated by the compiler */
  nvrtcProgram prog = NULL;
  nvrtcResult rc = nv->nvrtcCreateProgram(&prog, text, req->source, nh, hdr_text, hdr_name);
  free(text);
  if (rc != 0)
    return moert_fail(MOERT_ERR_COMPILE, "nvrtcCreateProgram(%s) failed: %s", req->source,
                      nv->nvrtcGetErrorString(rc));
  char storage[MOERT_JIT_MAX_DEFINES + 6][96];
  const char *opts[MOERT_JIT_MAX_DEFINES + 6];
  int nopt = build_options(req, arch, storage, opts);
  atomic_fetch_add(&compile_count, 1);
  rc = nv->nvrtcCompileProgram(prog, nopt, opts);
  moert_status st = MOERT_OK;
  if (rc != 0) {
    st = moert_fail(MOERT_ERR_COMPILE, "NVRTC %d.%d could not compile %s for %s (%s); log:\n",
                    nv->major, nv->minor, req->source, arch, nv->nvrtcGetErrorString(rc));
    size_t log_size = 0;
    if (nv->nvrtcGetProgramLogSize(prog, &log_size) == 0 && log_size > 1) {
      char *log = malloc(log_size + 1);
      if (log && nv->nvrtcGetProgramLog(prog, log) == 0) {
        log[log_size] = '\0';
        moert_fail_append(log);
      }
      free(log);
    }
    nv->nvrtcDestroyProgram(&prog);
    return st;
  }
  bool ptx = strncmp(arch, "compute_", 8) == 0;
  size_t n = 0;
  rc = ptx ? nv->nvrtcGetPTXSize(prog, &n) : nv->nvrtcGetCUBINSize(prog, &n);
  void *out = rc == 0 && n ? malloc(n) : NULL;
  if (!out) {
    nv->nvrtcDestroyProgram(&prog);
    return moert_fail(rc == 0 ? MOERT_ERR_OUT_OF_MEMORY : MOERT_ERR_COMPILE,
                      "NVRTC produced no %s for %s", ptx ? "PTX" : "CUBIN", req->source);
  }
  rc = ptx ? nv->nvrtcGetPTX(prog, out) : nv->nvrtcGetCUBIN(prog, out);
  nv->nvrtcDestroyProgram(&prog);
  if (rc != 0) {
    free(out);
    return moert_fail(MOERT_ERR_COMPILE, "NVRTC could not return the image of %s", req->source);
  }
  *image = out;
  *size = n;
  return MOERT_OK;
}

moert_status moert_jit_pick_arch(const moert_nvrtc *nv, int major, int minor, char *arch,
                                 size_t arch_size) {
  int cc = major * 10 + minor;
  if (cc < 80)
    return moert_fail(MOERT_ERR_UNSUPPORTED,
                      "the GPU is sm_%d; moert's CUDA kernels need sm_80 or newer", cc);
  int n = 0, archs[64];
  if (nv->nvrtcGetNumSupportedArchs(&n) != 0 || n <= 0 || n > 64 ||
      nv->nvrtcGetSupportedArchs(archs) != 0)
    return moert_fail(MOERT_ERR_COMPILE, "NVRTC did not list the architectures it supports");
  int newest = 0;
  bool known = false;
  for (int i = 0; i < n; i++) {
    if (archs[i] == cc) known = true;
    if (archs[i] > newest) newest = archs[i];
  }
  if (known)
    snprintf(arch, arch_size, "sm_%d%s", cc, cc == 90 ? "a" : "");
  else if (cc > newest)
    snprintf(arch, arch_size, "compute_%d", newest); /* PTX; the driver compiles it */
  else
    return moert_fail(MOERT_ERR_UNSUPPORTED, "NVRTC %d.%d cannot compile for sm_%d",
                      nv->major, nv->minor, cc);
  return MOERT_OK;
}

/* ---- keys and the disk cache ---- */

static uint64_t request_key(const moert_nvrtc *nv, const moert_jit_request *req, const char *arch) {
  uint64_t h = MOERT_FNV_OFFSET;
  uint32_t format = JIT_FORMAT;
  h = moert_fnv1a(h, &format, sizeof format);
  for (const moert_embedded_source *s = moert_embedded_sources; s->name; s++) {
    h = moert_fnv1a(h, s->name, strlen(s->name) + 1);
    h = moert_fnv1a(h, s->text, s->size);
  }
  h = moert_fnv1a(h, req->source, strlen(req->source) + 1);
  char storage[MOERT_JIT_MAX_DEFINES + 6][96];
  const char *opts[MOERT_JIT_MAX_DEFINES + 6];
  int nopt = build_options(req, arch, storage, opts);
  for (int i = 0; i < nopt; i++) h = moert_fnv1a(h, opts[i], strlen(opts[i]) + 1);
  int ver[2] = {nv->major, nv->minor};
  h = moert_fnv1a(h, ver, sizeof ver);
  return h;
}

static void cache_path(const moert_jit_cache *c, uint64_t key, char *path, size_t size) {
  snprintf(path, size, "%s/moert-%016llx.bin", c->dir, (unsigned long long)key);
}

/* Reads a cached image; NULL when absent, unreadable, truncated or corrupt. */
static void *disk_load(const moert_jit_cache *c, uint64_t key, size_t *size, bool *is_ptx) {
  if (!c->dir[0]) return NULL;
  char path[1200];
  cache_path(c, key, path, sizeof path);
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  jit_header h;
  void *buf = NULL;
  if (fread(&h, sizeof h, 1, f) != 1 || memcmp(h.magic, jit_magic, 8) != 0 ||
      h.format != JIT_FORMAT || h.key != key || h.size == 0 || h.size > (1ull << 30))
    goto bad;
  buf = malloc(h.size + 1);
  if (!buf || fread(buf, 1, h.size, f) != h.size) goto bad;
  if (fgetc(f) != EOF) goto bad; /* trailing bytes: not a file we wrote */
  if (moert_fnv1a(MOERT_FNV_OFFSET, buf, h.size) != h.checksum) goto bad;
  ((char *)buf)[h.size] = '\0'; /* PTX is loaded as a string */
  fclose(f);
  *size = h.size;
  *is_ptx = h.is_ptx != 0;
  return buf;
bad:
  free(buf);
  fclose(f);
  return NULL;
}

static void make_dirs(const char *dir) {
  char tmp[1024];
  snprintf(tmp, sizeof tmp, "%s", dir);
  for (char *p = tmp + 1; *p; p++) {
    if (*p == '/') {
      *p = '\0';
      (void)mkdir(tmp, 0755);
      *p = '/';
    }
  }
  (void)mkdir(tmp, 0755);
}

/* Best effort: any failure leaves no file under the real name. */
static void disk_store(const moert_jit_cache *c, uint64_t key, const void *image, size_t size,
                       bool is_ptx) {
  if (!c->dir[0]) return;
  static atomic_uint counter;
  make_dirs(c->dir);
  char path[1200], tmp[1300];
  cache_path(c, key, path, sizeof path);
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%u", path, (long)getpid(), atomic_fetch_add(&counter, 1));
  FILE *f = fopen(tmp, "wb");
  if (!f) return;
  jit_header h;
  memset(&h, 0, sizeof h);
  memcpy(h.magic, jit_magic, 8);
  h.format = JIT_FORMAT;
  h.is_ptx = is_ptx;
  h.key = key;
  h.size = size;
  h.checksum = moert_fnv1a(MOERT_FNV_OFFSET, image, size);
  bool ok = fwrite(&h, sizeof h, 1, f) == 1 && fwrite(image, 1, size, f) == size;
  ok = (fclose(f) == 0) && ok;
  if (!ok || rename(tmp, path) != 0) (void)unlink(tmp);
}

/* ---- the per-runtime module cache ---- */

moert_status moert_jit_cache_init(moert_jit_cache *c, const moert_cuda_driver *cu,
                                  const moert_nvrtc *nvrtc, CUcontext ctx, const char *arch,
                                  const char *dir) {
  memset(c, 0, sizeof *c);
  if (pthread_mutex_init(&c->lock, NULL) != 0)
    return moert_fail(MOERT_ERR_OUT_OF_MEMORY, "could not create the JIT cache lock");
  c->cu = cu;
  c->nvrtc = nvrtc;
  c->ctx = ctx;
  snprintf(c->arch, sizeof c->arch, "%s", arch);
  snprintf(c->dir, sizeof c->dir, "%s", dir ? dir : "");
  return MOERT_OK;
}

void moert_jit_cache_fini(moert_jit_cache *c) {
  for (size_t i = 0; i < c->count; i++) c->cu->cuModuleUnload(c->entries[i].module);
  free(c->entries);
  c->entries = NULL;
  c->count = c->capacity = 0;
  pthread_mutex_destroy(&c->lock);
}

static moert_status load_module(moert_jit_cache *c, uint64_t key, const moert_jit_request *req,
                                CUmodule *out) {
  size_t size = 0;
  bool is_ptx = false;
  void *image = disk_load(c, key, &size, &is_ptx);
  bool from_disk = image != NULL;
  if (!image) {
    moert_status st = moert_jit_compile(c->nvrtc, req, c->arch, &image, &size);
    if (st != MOERT_OK) return st;
    is_ptx = strncmp(c->arch, "compute_", 8) == 0;
    if (is_ptx) { /* PTX must be NUL-terminated for cuModuleLoadData */
      void *grown = realloc(image, size + 1);
      if (!grown) {
        free(image);
        return moert_fail(MOERT_ERR_OUT_OF_MEMORY, "no memory for the PTX of %s", req->source);
      }
      image = grown;
      ((char *)image)[size] = '\0';
    }
  }
  CUresult rc = c->cu->cuModuleLoadData(out, image);
  if (rc != MOERT_CUDA_SUCCESS && from_disk) {
    /* an image the driver refuses (e.g. a newer driver's rules): rebuild it once */
    free(image);
    image = NULL;
    moert_status st = moert_jit_compile(c->nvrtc, req, c->arch, &image, &size);
    if (st != MOERT_OK) return st;
    from_disk = false;
    rc = c->cu->cuModuleLoadData(out, image);
  }
  if (rc == MOERT_CUDA_SUCCESS && !from_disk) disk_store(c, key, image, size, is_ptx);
  free(image);
  if (rc != MOERT_CUDA_SUCCESS) {
    char what[128];
    snprintf(what, sizeof what, "cuModuleLoadData(%s for %s)", req->source, c->arch);
    return moert_cuda_fail(c->cu, rc, what);
  }
  return MOERT_OK;
}

moert_status moert_jit_module(moert_jit_cache *c, const moert_jit_request *req, CUmodule *out) {
  uint64_t key = request_key(c->nvrtc, req, c->arch);
  moert_status st = MOERT_OK;
  pthread_mutex_lock(&c->lock);
  for (size_t i = 0; i < c->count; i++) {
    if (c->entries[i].key == key) {
      *out = c->entries[i].module;
      pthread_mutex_unlock(&c->lock);
      return MOERT_OK;
    }
  }
  if (c->count == c->capacity) {
    size_t cap = c->capacity ? c->capacity * 2 : 16;
    moert_jit_entry *grown = realloc(c->entries, cap * sizeof *grown);
    if (!grown) {
      pthread_mutex_unlock(&c->lock);
      return moert_fail(MOERT_ERR_OUT_OF_MEMORY, "no memory for the JIT module table");
    }
    c->entries = grown;
    c->capacity = cap;
  }
  CUmodule module = NULL;
  st = load_module(c, key, req, &module);
  if (st == MOERT_OK) {
    c->entries[c->count].key = key;
    c->entries[c->count].module = module;
    c->count++;
    *out = module;
  }
  pthread_mutex_unlock(&c->lock);
  return st;
}
