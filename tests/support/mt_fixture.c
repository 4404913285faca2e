/* mt_fixture.c — loader for tests/fixtures/<case>/: config.txt ("key = value" lines),
 * manifest.txt ("name dtype shape offset nbytes", shape "d0xd1x..."), tensors.bin. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "moert_test.h"

const char *mt_fixture_dir(void) {
  const char *env = getenv("MOERT_TEST_FIXTURES");
  if (env && *env) return env;
  return MOERT_TEST_FIXTURES;
}

static int cmp_names(const void *a, const void *b) { return strcmp(a, b); }

int mt_fixture_list(char names[][128], int max) {
  DIR *d = opendir(mt_fixture_dir());
  if (!d) return 0;
  int n = 0;
  struct dirent *de;
  while ((de = readdir(d)) && n < max) {
    if (de->d_name[0] == '.') continue;
    char path[1024];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s/manifest.txt", mt_fixture_dir(), de->d_name);
    if (stat(path, &st) != 0) continue;
    size_t len = strlen(de->d_name);
    if (len >= 128) continue;
    memcpy(names[n], de->d_name, len + 1);
    n++;
  }
  closedir(d);
  qsort(names, (size_t)n, 128, cmp_names);
  return n;
}

static char *trim(char *s) {
  while (*s == ' ' || *s == '\t') s++;
  size_t n = strlen(s);
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
    s[--n] = 0;
  return s;
}

static size_t fx_elem_size(const char *dtype) {
  if (!strcmp(dtype, "bf16")) return 2;
  if (!strcmp(dtype, "f32") || !strcmp(dtype, "i32")) return 4;
  return 0;
}

int mt_fixture_load(const char *name, mt_fixture *fx, char *err, size_t errlen) {
  memset(fx, 0, sizeof *fx);
  snprintf(fx->name, sizeof fx->name, "%s", name);
  char path[1024], line[1024];
  FILE *f;

  snprintf(path, sizeof path, "%s/%s/config.txt", mt_fixture_dir(), name);
  if (!(f = fopen(path, "r"))) {
    snprintf(err, errlen, "cannot open %s", path);
    return -1;
  }
  while (fgets(line, sizeof line, f) && fx->nkeys < MT_FX_MAX_KEYS) {
    char *eq = strchr(line, '=');
    if (!eq) continue;
    *eq = 0;
    snprintf(fx->keys[fx->nkeys], 64, "%s", trim(line));
    snprintf(fx->vals[fx->nkeys], 128, "%s", trim(eq + 1));
    fx->nkeys++;
  }
  fclose(f);

  snprintf(path, sizeof path, "%s/%s/tensors.bin", mt_fixture_dir(), name);
  if (!(f = fopen(path, "rb"))) {
    snprintf(err, errlen, "cannot open %s", path);
    return -1;
  }
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  fx->blob = malloc(size > 0 ? (size_t)size : 1);
  fx->blob_size = (size_t)size;
  if (!fx->blob || fread(fx->blob, 1, (size_t)size, f) != (size_t)size) {
    fclose(f);
    snprintf(err, errlen, "cannot read %s", path);
    mt_fixture_free(fx);
    return -1;
  }
  fclose(f);

  snprintf(path, sizeof path, "%s/%s/manifest.txt", mt_fixture_dir(), name);
  if (!(f = fopen(path, "r"))) {
    snprintf(err, errlen, "cannot open %s", path);
    mt_fixture_free(fx);
    return -1;
  }
  while (fgets(line, sizeof line, f)) {
    char tname[64], dtype[8], shape[128];
    unsigned long long off, nbytes;
    if (sscanf(line, "%63s %7s %127s %llu %llu", tname, dtype, shape, &off, &nbytes) != 5)
      continue;
    if (fx->nt == MT_FX_MAX_TENSORS) break;
    mt_fx_tensor *t = &fx->t[fx->nt];
    snprintf(t->name, sizeof t->name, "%s", tname);
    snprintf(t->dtype, sizeof t->dtype, "%s", dtype);
    uint64_t count = 1;
    char *p = shape;
    t->ndim = 0;
    while (*p && t->ndim < 4) {
      t->shape[t->ndim] = strtoull(p, &p, 10);
      count *= t->shape[t->ndim++];
      if (*p == 'x') p++;
      else break;
    }
    t->offset = off;
    t->nbytes = nbytes;
    size_t es = fx_elem_size(dtype);
    if (!es || count * es != nbytes || off + nbytes > fx->blob_size) {
      fclose(f);
      snprintf(err, errlen, "%s: tensor %s (%s %s) does not fit: %llu bytes at %llu, file %zu",
               name, tname, dtype, shape, nbytes, off, fx->blob_size);
      mt_fixture_free(fx);
      return -1;
    }
    t->data = fx->blob + off;
    fx->nt++;
  }
  fclose(f);
  return 0;
}

void mt_fixture_free(mt_fixture *fx) {
  free(fx->blob);
  fx->blob = NULL;
  fx->nt = 0;
}

const mt_fx_tensor *mt_fixture_tensor(const mt_fixture *fx, const char *name) {
  for (int i = 0; i < fx->nt; i++)
    if (!strcmp(fx->t[i].name, name)) return &fx->t[i];
  return NULL;
}

const char *mt_fixture_get(const mt_fixture *fx, const char *key) {
  for (int i = 0; i < fx->nkeys; i++)
    if (!strcmp(fx->keys[i], key)) return fx->vals[i];
  return NULL;
}

long mt_fixture_get_long(const mt_fixture *fx, const char *key, long dflt) {
  const char *v = mt_fixture_get(fx, key);
  return v ? strtol(v, NULL, 10) : dflt;
}

double mt_fixture_get_double(const mt_fixture *fx, const char *key, double dflt) {
  const char *v = mt_fixture_get(fx, key);
  return v ? strtod(v, NULL) : dflt;
}
