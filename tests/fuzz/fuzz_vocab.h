/* tests/fuzz/fuzz_vocab.h: a small byte-level BPE vocabulary built in memory for the grammar
 * fuzz targets, so they walk a real trie (tokens spanning several grammar symbols, pieces of
 * UTF-8 characters, an added text token, a special end token) without reading a file; and the
 * pick of an admitted token from a matcher's mask that both targets make. */
#ifndef LM_FUZZ_VOCAB_H
#define LM_FUZZ_VOCAB_H

#include "sample/sample.h"
#include "tokenizer/tokenizer.h"

#include <stdlib.h>

static void fv_put(lm_buf *b, unsigned char byte, const unsigned *map) {
    char u[4];
    unsigned cp = map[byte];
    if (cp == '"' || cp == '\\') lm_buf_putc(b, '\\');
    lm_buf_append(b, u, (size_t)lm_utf8_encode(cp, u));
}

/* Built once; the end token's id goes to *eog. NULL if it could not be built. */
static const tok_tokenizer *fuzz_vocab(lm_token *eog) {
    static tok_tokenizer *t;
    static bool tried;
    if (!tried) {
        tried = true;
        unsigned map[256]; /* GPT-2's byte -> code point table */
        int extra = 0;
        for (unsigned b = 0; b < 256; b++) {
            bool direct = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
            map[b] = direct ? b : 256u + (unsigned)extra++;
        }
        static const char *const multi[] = {"ab", "{\"", "\":", "\": \"", "\xe4\xb8", "\xad\xe6", "\xe4\xb8\xad",
                                            " \"", "\",", "\"}", "12", "true", "null", "\n  ", "\\u00", "é", "a\"b",
                                            "[{", "}]", "::=", "yes", "no"};
        lm_buf j = {0};
        lm_buf_puts(&j, "{\"model\":{\"type\":\"BPE\",\"vocab\":{");
        int id = 0;
        for (unsigned b = 0; b < 256; b++) {
            lm_buf_puts(&j, id ? ",\"" : "\"");
            fv_put(&j, (unsigned char)b, map);
            lm_buf_printf(&j, "\":%d", id++);
        }
        for (size_t k = 0; k < sizeof multi / sizeof multi[0]; k++) {
            lm_buf_puts(&j, ",\"");
            for (const unsigned char *p = (const unsigned char *)multi[k]; *p; p++) fv_put(&j, *p, map);
            lm_buf_printf(&j, "\":%d", id++);
        }
        lm_buf_printf(&j, "},\"merges\":[]},\"decoder\":{\"type\":\"ByteLevel\"},"
                          "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false},"
                          "\"added_tokens\":[{\"id\":%d,\"content\":\"<|end|>\",\"special\":true},"
                          "{\"id\":%d,\"content\":\"<tool_call>\",\"special\":false}]}",
                      id, id + 1);
        lm_error err = {0};
        if (!j.oom && tok_load_json_text(j.data, j.len, NULL, 0, "fuzz vocabulary", &t, &err) != LM_OK) t = NULL;
        lm_buf_free(&j);
    }
    *eog = t ? tok_find(t, "<|end|>") : -1;
    return t;
}

/* The k-th (from 0) token the mask admits; k must be below the mask's count of admitted tokens. */
static lm_token fuzz_nth_allowed(const uint64_t *mask, uint32_t k) {
    for (size_t w = 0;; w++) {
        uint32_t c = smp_popcount64(mask[w]);
        if (k < c) {
            uint64_t b = mask[w];
            while (k--) b &= b - 1;
            return (lm_token)(w * 64 + smp_ctz64(b));
        }
        k -= c;
    }
}

#endif
