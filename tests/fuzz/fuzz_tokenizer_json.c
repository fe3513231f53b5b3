/* tests/fuzz/fuzz_tokenizer_json.c: tokenizer.json loading over arbitrary bytes; a file that
 * loads is used to encode and decode a few strings (including its own bytes), and streaming
 * decode must equal whole decode. */
#include "tokenizer/tokenizer.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tok_tokenizer *t = NULL;
    lm_error err = {0};
    if (tok_load_json_text((const char *)data, size, NULL, 0, "fuzz", &t, &err) != LM_OK) return 0;
    const char *texts[] = {"Hello world", " <s> \xc3\xa9\xe2\x96\x81 12345 \n\t", "\xff\xfe invalid"};
    for (size_t i = 0; i < 4; i++) {
        const char *s = i < 3 ? texts[i] : (const char *)data;
        size_t n = i < 3 ? strlen(s) : (size < 256 ? size : 256);
        tok_vec v = {0};
        if (tok_encode(t, s, n, LM_TOK_ADD_SPECIAL | LM_TOK_PARSE_SPECIAL, &v, &err) == LM_OK) {
            lm_buf whole = {0}, streamed = {0};
            tok_decode(t, v.ids, v.n, false, &whole, &err);
            tok_stream *st = tok_stream_new(t, false);
            if (st) {
                for (size_t k = 0; k < v.n; k++) tok_stream_push(st, v.ids[k], &streamed);
                tok_stream_finish(st, &streamed);
                if (!whole.oom && !streamed.oom && (whole.len != streamed.len || (whole.len && memcmp(whole.data, streamed.data, whole.len))))
                    abort();
                tok_stream_free(st);
            }
            lm_buf_free(&whole);
            lm_buf_free(&streamed);
        }
        tok_vec_free(&v);
    }
    tok_free(t);
    return 0;
}
