/* core/error.c: status names and the lm_fail helpers that fill an lm_error. */
#include "core.h"

#include <stdio.h>

const char *lm_status_str(lm_status s) {
    switch (s) {
    case LM_OK: return "LM_OK";
    case LM_ERR_IO: return "LM_ERR_IO";
    case LM_ERR_FORMAT: return "LM_ERR_FORMAT";
    case LM_ERR_UNSUPPORTED: return "LM_ERR_UNSUPPORTED";
    case LM_ERR_NOMEM: return "LM_ERR_NOMEM";
    case LM_ERR_MISUSE: return "LM_ERR_MISUSE";
    case LM_ERR_CANCELLED: return "LM_ERR_CANCELLED";
    case LM_ERR_TOO_SMALL: return "LM_ERR_TOO_SMALL";
    case LM_ERR_NETWORK: return "LM_ERR_NETWORK";
    case LM_ERR_TEMPLATE: return "LM_ERR_TEMPLATE";
    case LM_ERR_CONTEXT: return "LM_ERR_CONTEXT";
    case LM_ERR_BUSY: return "LM_ERR_BUSY";
    }
    return "LM_ERR_UNKNOWN";
}

const char *lm_version(void) { return LM_VERSION; }

lm_status lm_failv(lm_error *err, lm_status code, const char *fmt, va_list ap) {
    if (err) {
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    }
    return code;
}

lm_status lm_fail(lm_error *err, lm_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    lm_failv(err, code, fmt, ap);
    va_end(ap);
    return code;
}

lm_status lm_fail_nomem(lm_error *err, const char *what) {
    return lm_fail(err, LM_ERR_NOMEM, "out of memory allocating %s", what ? what : "memory");
}

void lm_error_clear(lm_error *err) {
    if (err) {
        err->code = LM_OK;
        err->msg[0] = 0;
    }
}

void lm_log(const lm_logger *lg, int level, const char *fmt, ...) {
    if (!lg || !lg->fn) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    lg->fn(level, msg, lg->user);
}
