/* tests/fuzz/fuzz_grammar.c: the grammar compiler over arbitrary text (everything before the
 * first NUL byte), then, for a grammar that compiles, a walk over a small in-memory vocabulary
 * whose token choices come from the bytes after the NUL. Checks what the sampler relies on: the
 * mask's count is its number of bits, every token the mask admits is accepted and allows()
 * agrees with the mask, a refused token leaves the state unchanged, and bytes are taken exactly
 * when allows_bytes said so. Errors must name a line and column. */
#include "sample/sample.h"

#include "fuzz_vocab.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool bit(const uint64_t *m, lm_token t) { return (m[(size_t)t >> 6] >> (t & 63)) & 1; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *sep = memchr(data, 0, size);
    size_t glen = sep ? (size_t)(sep - data) : size;
    const uint8_t *ch = sep ? sep + 1 : data + size;
    size_t nch = (size_t)(data + size - ch);
    smp_grammar *g = NULL;
    lm_error err = {0};
    lm_status st = smp_grammar_compile((const char *)data, glen, &g, &err);
    if (st) {
        if (st == LM_ERR_FORMAT && strncmp(err.msg, "grammar line ", 13) != 0) abort();
        return 0;
    }
    lm_token eog = -1;
    const tok_tokenizer *tok = fuzz_vocab(&eog);
    size_t nv = tok ? (size_t)tok_n_vocab(tok) : 64;
    smp_matcher *m = NULL;
    if (smp_matcher_new(g, tok, &eog, tok ? 1 : 0, nv, &m, &err) != LM_OK) {
        smp_grammar_free(g);
        return 0;
    }
    size_t at = 0;
    for (int step = 0; step < 48 && at + 1 < nch; step++) {
        uint32_t na = 0;
        const uint64_t *mask = smp_matcher_mask(m, &na);
        if (!mask) abort();
        uint32_t cnt = 0;
        for (size_t w = 0; w < (nv + 63) / 64; w++) cnt += smp_popcount64(mask[w]);
        if (cnt != na) abort();
        /* a token the mask refuses is refused by allows() and accept(), changing nothing */
        lm_token other = (lm_token)(ch[at] % nv);
        if (!bit(mask, other)) {
            if (smp_matcher_allows(m, other) || smp_matcher_accept(m, other) != LM_ERR_MISUSE) abort();
            mask = smp_matcher_mask(m, &na);
            if (!mask || na != cnt) abort();
        }
        if (na == 0) break;
        uint32_t k = (uint32_t)(((size_t)ch[at] << 8 | ch[at + 1]) % na);
        at += 2;
        lm_token t = fuzz_nth_allowed(mask, k);
        if (!smp_matcher_allows(m, t) || smp_matcher_accept(m, t) != LM_OK) abort();
        if (t == eog) break;
    }
    /* the rest as bytes */
    for (; at < nch && !smp_matcher_done(m); at++) {
        bool ok = smp_matcher_allows_bytes(m, (const char *)ch + at, 1);
        if ((smp_matcher_accept_bytes(m, (const char *)ch + at, 1) == LM_OK) != ok) abort();
    }
    smp_matcher_free(m);
    smp_grammar_free(g);
    return 0;
}
