/* core/error.c: status names, the lm_fail helpers that fill an lm_error, and the escaping that
 * keeps every message printable: error and log text often quotes file or network data (a tensor
 * name, a file name from the hub, an upstream error body), which must not reach a terminal or a
 * JSON error body as control characters or invalid UTF-8. */
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

/* Appends the k bytes at s to dst at *o when they fit in cap with room for the NUL. */
static bool put_piece(char *dst, size_t cap, size_t *o, const char *s, size_t k) {
    if (*o + k >= cap) return false;
    memcpy(dst + *o, s, k);
    *o += k;
    return true;
}

size_t lm_escape_text(char *dst, size_t cap, const char *src, size_t n) {
    if (!cap) return 0;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)src[i];
        char esc[8];
        size_t used = 1, k;
        const char *piece = esc;
        if (c == '\n' || c == '\r' || c == '\t') {
            esc[0] = '\\';
            esc[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
            k = 2;
        } else if (c < 0x20 || c == 0x7f) {
            k = (size_t)snprintf(esc, sizeof esc, "\\x%02x", c);
        } else if (c < 0x80) {
            piece = src + i;
            k = 1;
        } else {
            uint32_t cp;
            int l = lm_utf8_decode(src + i, n - i, &cp);
            if (l <= 1) { /* not a whole, valid sequence: the byte, escaped */
                k = (size_t)snprintf(esc, sizeof esc, "\\x%02x", c);
            } else if (cp >= 0x80 && cp <= 0x9f) { /* C1 controls: U+009B is a terminal's CSI */
                k = (size_t)snprintf(esc, sizeof esc, "\\u%04x", (unsigned)cp);
                used = (size_t)l;
            } else {
                piece = src + i;
                k = used = (size_t)l;
            }
        }
        if (!put_piece(dst, cap, &o, piece, k)) break;
        i += used;
    }
    dst[o] = 0;
    return o;
}

lm_status lm_failv(lm_error *err, lm_status code, const char *fmt, va_list ap) {
    if (err) {
        char tmp[1024];
        vsnprintf(tmp, sizeof tmp, fmt, ap);
        err->code = code;
        lm_escape_text(err->msg, sizeof err->msg, tmp, strlen(tmp));
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

void lm_log(const lm_logger *lg, lm_log_level level, const char *fmt, ...) {
    if (!lg || !lg->fn) return;
    char raw[1024], msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    lm_escape_text(msg, sizeof msg, raw, strlen(raw));
    lg->fn(level, msg, lg->user);
}
