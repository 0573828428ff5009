/* Status strings, the thread-local last-error message, and the FLASHPORT_LOG switch. */
#include "fa_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char last_error[1024];

const char *fa_status_string(fa_status status)
{
    switch (status) {
    case FA_OK: return "ok";
    case FA_ERR_INVALID_ARGUMENT: return "invalid argument";
    case FA_ERR_UNSUPPORTED: return "unsupported";
    case FA_ERR_OUT_OF_MEMORY: return "out of memory";
    case FA_ERR_NO_DEVICE: return "no such device";
    case FA_ERR_BACKEND: return "backend runtime error";
    case FA_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

const char *fa_last_error(void) { return last_error; }

fa_status fa_set_error(fa_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    if (fa_log_enabled()) fprintf(stderr, "flashport: %s: %s\n", fa_status_string(status), last_error);
    return status;
}

void fa_clear_error(void) { last_error[0] = 0; }

int fa_log_enabled(void)
{
    /* Read every time: cheap, and lets tests flip it. */
    const char *v = getenv("FLASHPORT_LOG");
    return v && v[0] && strcmp(v, "0") != 0;
}

void fa_log(const char *fmt, ...)
{
    if (!fa_log_enabled()) return;
    va_list ap;
    va_start(ap, fmt);
    fputs("flashport: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

#define FA_STR2(x) #x
#define FA_STR(x) FA_STR2(x)
const char *fa_version_string(void)
{
    return FA_STR(FLASHPORT_VERSION_MAJOR) "." FA_STR(FLASHPORT_VERSION_MINOR) "." FA_STR(FLASHPORT_VERSION_PATCH);
}
