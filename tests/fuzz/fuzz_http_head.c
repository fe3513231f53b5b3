/* tests/fuzz/fuzz_http_head.c: the server's first look at a connection (server/front.c) over
 * arbitrary bytes: srv_head_check with a 4 KB window, then srv_chunked_check on what follows a
 * chunked head. Checks what the front relies on: a complete head ends at its empty line inside
 * the bytes and is found again, with the same length, in exactly those bytes; a shorter prefix
 * is never refused for a reason its bytes do not hold yet; a refusal has one of the statuses the
 * front answers and a message that is valid UTF-8 without control characters. */
#include "server/server.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_refusal(const srv_head *h) {
    if (h->status != 400 && h->status != 413 && h->status != 414 && h->status != 431 && h->status != 505) abort();
    size_t n = strnlen(h->msg, sizeof h->msg);
    if (n == 0 || n == sizeof h->msg) abort();
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int k = lm_utf8_decode(h->msg + i, n - i, &cp);
        if (k <= 0 || cp < 0x20 || cp == 0x7f) abort();
        i += (size_t)k;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *b = (const char *)data;
    const size_t max = 4096;
    size_t n = size < max ? size : max;
    srv_head h;
    int st = srv_head_check(b, n, max, &h);
    if (st < -1 || st > 1) abort();
    if (st < 0) {
        check_refusal(&h);
        return 0;
    }
    if (st == 0) {
        if (n >= max) abort(); /* a full window is decided, never "wait for more" */
        return 0;
    }
    if (h.len == 0 || h.len > n || b[h.len - 1] != '\n') abort();
    srv_head again;
    if (srv_head_check(b, h.len, max, &again) != 1 || again.len != h.len || again.chunked != h.chunked) abort();
    /* every prefix shorter than the head is undecided or refused, never complete */
    for (size_t m = 0; m < h.len; m += 1 + m / 8) {
        srv_head p;
        int ps = srv_head_check(b, m, max, &p);
        if (ps == 1) abort();
        if (ps < 0) check_refusal(&p);
    }
    if (h.chunked) {
        size_t head = h.len;
        int bs = srv_chunked_check(b + head, n - head, &h);
        if (bs < -1 || bs > 1) abort();
        if (bs < 0) check_refusal(&h);
        if (bs > 0 && (h.len <= head || h.len > n || b[h.len - 1] != '\n')) abort();
    }
    return 0;
}
