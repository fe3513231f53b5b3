/* tests/fuzz/fuzz_json_schema.c: JSON Schema to grammar over arbitrary text, strict and lenient.
 * A schema that converts must give a grammar that compiles; a walk over a small in-memory
 * vocabulary (choices from the input's bytes) must only take admitted tokens, and a walk that
 * ends at an end-of-generation token must have written text cJSON parses. Errors name the
 * schema and a JSON path. */
#include "sample/sample.h"

#include "fuzz_vocab.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void walk(const smp_grammar *g, const uint8_t *data, size_t size) {
    lm_token eog = -1;
    const tok_tokenizer *tok = fuzz_vocab(&eog);
    if (!tok) return;
    size_t nv = (size_t)tok_n_vocab(tok);
    smp_matcher *m = NULL;
    lm_error err = {0};
    if (smp_matcher_new(g, tok, &eog, 1, nv, &m, &err) != LM_OK) abort(); /* no token references */
    lm_buf text = {0};
    uint64_t h = 1469598103934665603ull;
    for (int step = 0; step < 64; step++) {
        h = (h ^ (size ? data[(size_t)step % size] : 0)) * 1099511628211ull;
        uint32_t na = 0;
        const uint64_t *mask = smp_matcher_mask(m, &na);
        if (!mask) abort();
        if (na == 0) break;
        lm_token t = -1;
        if ((mask[(size_t)eog >> 6] >> (eog & 63)) & 1 && (h >> 7) % 3 == 0) {
            t = eog;
        } else t = fuzz_nth_allowed(mask, (uint32_t)((h >> 11) % na));
        if (smp_matcher_accept(m, t) != LM_OK) abort();
        if (t == eog) {
            cJSON *j = NULL;
            if (lm_json_parse(text.data ? text.data : "", text.len, "output", &j, &err) != LM_OK) {
                fprintf(stderr, "a whole match does not parse: %s\n%s\n", err.msg, text.data ? text.data : "");
                abort();
            }
            cJSON_Delete(j);
            break;
        }
        if (!tok_token_bytes(tok, t, &text)) abort();
    }
    lm_buf_free(&text);
    smp_matcher_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    for (uint32_t flags = 0; flags <= SMP_SCHEMA_LENIENT; flags += SMP_SCHEMA_LENIENT) {
        lm_buf out = {0};
        lm_error err = {0};
        lm_status st = smp_json_schema_grammar((const char *)data, size, flags, &out, &err);
        if (st) {
            if (st != LM_ERR_NOMEM && strncmp(err.msg, "json_schema", 11) != 0) abort();
            if (out.len) abort(); /* nothing half-written */
            lm_buf_free(&out);
            continue;
        }
        smp_grammar *g = NULL;
        if (smp_grammar_compile(out.data, out.len, &g, &err) != LM_OK) {
            fprintf(stderr, "the grammar of a schema does not compile: %s\n%s\n", err.msg, out.data);
            abort();
        }
        walk(g, data, size);
        smp_grammar_free(g);
        lm_buf_free(&out);
    }
    return 0;
}
