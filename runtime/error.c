/* error.c — status names, the thread-local last-error sentence, and the version. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* Large enough for an NVRTC log of a failed kernel. */
static _Thread_local char last_error[16384];

MOERT_API const char *moert_last_error(void) { return last_error; }

moert_status moert_fail(moert_status status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_error, sizeof last_error, fmt, ap);
  va_end(ap);
  return status;
}

void moert_fail_append(const char *text) {
  size_t used = strlen(last_error);
  if (text && used + 1 < sizeof last_error)
    snprintf(last_error + used, sizeof last_error - used, "%s", text);
}

MOERT_API const char *moert_status_string(moert_status status) {
  switch (status) {
#define MOERT_STATUS_CASE_(name, value, text) \
  case name:                                  \
    return #name ": " text;
    MOERT_STATUS_LIST(MOERT_STATUS_CASE_)
#undef MOERT_STATUS_CASE_
  default:
    return "MOERT_ERR_UNKNOWN: a status code this version of moert does not know";
  }
}

MOERT_API uint32_t moert_version(void) { return MOERT_VERSION_NUMBER; }

#define MOERT_STR2_(x) #x
#define MOERT_STR_(x) MOERT_STR2_(x)
MOERT_API const char *moert_version_string(void) {
  return MOERT_STR_(MOERT_VERSION_MAJOR) "." MOERT_STR_(MOERT_VERSION_MINOR) "." MOERT_STR_(
      MOERT_VERSION_PATCH);
}
