/* tests/fuzz/fuzz_sentences.c: the sentence chunker over arbitrary bytes. Byte 0 picks the
 * params, byte 1 seeds the piece sizes, the rest is the text. The text is fed whole and in
 * random pieces: both must give the same chunks. With list markers kept, the chunks must be the
 * text itself in order with only white space between them, and after every push the chunks so far
 * plus the pending text must be the input so far, up to white space. */
#include "locallm.h"

#include "core/core.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct run {
    lm_buf chunks;     /* each chunk followed by a NUL */
    const char *text;  /* the input, to place chunks in */
    size_t pos;        /* end of the last chunk placed in text */
    size_t fed;        /* bytes of text pushed so far */
    bool check_place;
} run;

/* The chunker's white space (voice/sentences.c): ASCII, NBSP, U+1680, U+2000-200A, U+2028/9, U+202F,
 * U+205F, U+3000. */
static bool is_ws(uint32_t c) {
    return c == ' ' || (c >= '\t' && c <= '\r') || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

/* Moves *p past white space in t[*p..end). */
static void skip_ws(const char *t, size_t *p, size_t end) {
    while (*p < end) {
        uint32_t c;
        int n = lm_utf8_decode(t + *p, end - *p, &c);
        if (!is_ws(c)) return;
        *p += (size_t)n;
    }
}

static int on_chunk(const char *t, size_t n, void *user) {
    run *r = user;
    if (n == 0 || t[n] != 0) abort();
    uint32_t c, last = 0;
    lm_utf8_decode(t, n, &c);
    if (is_ws(c)) abort();
    for (size_t i = 0; i < n;) i += (size_t)lm_utf8_decode(t + i, n - i, &last);
    if (is_ws(last)) abort();
    if (r->check_place) {
        skip_ws(r->text, &r->pos, r->fed);
        if (r->pos + n > r->fed || memcmp(r->text + r->pos, t, n) != 0) abort();
        r->pos += n;
    }
    lm_buf_append(&r->chunks, t, n);
    lm_buf_putc(&r->chunks, 0);
    return 0;
}

/* Chunks so far + pending == input so far, up to white space. */
static void check_pending(const lm_sentences *s, run *r) {
    size_t n;
    const char *pend = lm_sentences_pending(s, &n);
    if (n > r->fed || memcmp(pend, r->text + r->fed - n, n) != 0) abort();
    if (r->pos > r->fed - n) abort();
    size_t p = r->pos;
    skip_ws(r->text, &p, r->fed - n);
    if (p != r->fed - n) abort();
}

static bool feed(const lm_sentences_params *pp, const char *text, size_t len, uint32_t seed,
                 bool whole, run *r) {
    memset(r, 0, sizeof *r);
    r->text = text;
    r->check_place = pp->keep_list_markers;
    lm_sentences *s = NULL;
    if (lm_sentences_new(pp, on_chunk, r, &s, NULL) != LM_OK) return false;
    size_t i = 0;
    while (i < len) {
        seed = seed * 1103515245u + 12345u;
        size_t n = whole ? len : 1 + (seed >> 16) % 7;
        if (n > len - i) n = len - i;
        r->fed = i + n;
        if (lm_sentences_push(s, text + i, n) != LM_OK) {
            lm_sentences_free(s);
            return false;
        }
        if (r->check_place) check_pending(s, r);
        i += n;
    }
    bool ok = lm_sentences_flush(s) == LM_OK;
    lm_sentences_free(s);
    if (ok && r->check_place) {
        skip_ws(text, &r->pos, len);
        if (r->pos != len) abort();
    }
    return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    lm_sentences_params p = lm_sentences_default_params();
    p.keep_list_markers = data[0] & 1;
    p.first_chunk_min_chars = (data[0] >> 1) & 1 ? (size_t)(data[0] >> 2) % 16 + 1 : 0;
    p.max_chunk_chars = (data[0] >> 6) & 1 ? (size_t)(data[0] >> 2) % 24 + 1 : 0;
    const char *text = (const char *)data + 2;
    size_t len = size - 2;
    run a, b;
    bool ok_a = feed(&p, text, len, data[1], true, &a);
    bool ok_b = feed(&p, text, len, data[1], false, &b);
    if (ok_a && ok_b && !a.chunks.oom && !b.chunks.oom &&
        (a.chunks.len != b.chunks.len ||
         (a.chunks.len && memcmp(a.chunks.data, b.chunks.data, a.chunks.len) != 0)))
        abort();
    lm_buf_free(&a.chunks);
    lm_buf_free(&b.chunks);
    return 0;
}
