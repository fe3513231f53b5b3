/* tests/fuzz/fuzz_sse.c: the SSE parser of the OpenAI provider over arbitrary bytes, fed in two
 * splits chosen by the first byte: both feedings must produce the same events. */
#include "provider/provider.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int on_ev(const char *d, size_t n, void *u) {
    lm_buf *b = u;
    lm_buf_append(b, d, n);
    lm_buf_putc(b, 0);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    size_t cut = data[0] % size;
    lm_buf a = {0}, b = {0};
    sse_parser p;
    sse_init(&p, on_ev, &a);
    sse_feed(&p, (const char *)data + 1, size - 1);
    sse_finish(&p);
    sse_free(&p);
    sse_init(&p, on_ev, &b);
    for (size_t i = 1; i < size; i += cut ? cut : 1) sse_feed(&p, (const char *)data + i, (i + (cut ? cut : 1) <= size ? (cut ? cut : 1) : size - i));
    sse_finish(&p);
    sse_free(&p);
    if (!a.oom && !b.oom && (a.len != b.len || (a.len && memcmp(a.data, b.data, a.len)))) abort();
    lm_buf_free(&a);
    lm_buf_free(&b);
    return 0;
}
