/* tests/fuzz/fuzz_gguf_tokenizer.c: the GGUF tokenizer loader (tokenizer.ggml.*: SentencePiece and
 * byte-level BPE vocabularies, scores, token types, merges, special ids, the pre-tokenizer name)
 * over arbitrary bytes. A tokenizer that loads must encode a few fixed texts into ids inside its
 * vocabulary, decode them, and decode streamed exactly as whole. Seeds: tests/fuzz/corpus/
 * gguf_tokenizer (tools/make_fuzz_corpus.py). */
#include "formats/formats.h"
#include "tokenizer/tokenizer.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const tok_tokenizer *t, const char *text, size_t len, uint32_t flags) {
    tok_vec v = {0};
    lm_error err = {0};
    if (tok_encode(t, text, len, flags, &v, &err) != LM_OK) {
        if (!err.msg[0]) abort();
        tok_vec_free(&v);
        return;
    }
    int32_t n_vocab = tok_n_vocab(t);
    for (size_t i = 0; i < v.n; i++)
        if (v.ids[i] < 0 || v.ids[i] >= n_vocab) abort();
    lm_buf whole = {0}, streamed = {0};
    lm_status st = tok_decode(t, v.ids, v.n, false, &whole, &err);
    tok_stream *s = tok_stream_new(t, false);
    if (s) {
        lm_status st2 = LM_OK;
        for (size_t i = 0; i < v.n && !st2; i++) st2 = tok_stream_push(s, v.ids[i], &streamed);
        if (!st2) st2 = tok_stream_finish(s, &streamed);
        /* streamed pieces concatenate to the whole decode (tokenizer.h) */
        if (!st && !st2 && !whole.oom && !streamed.oom &&
            (whole.len != streamed.len || (whole.len && memcmp(whole.data, streamed.data, whole.len) != 0)))
            abort();
        tok_stream_free(s);
    }
    lm_buf_free(&whole);
    lm_buf_free(&streamed);
    tok_vec_free(&v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gguf_file *g = NULL;
    lm_error err = {0};
    if (gguf_parse(data, size, "fuzz.gguf", &g, &err) != LM_OK) {
        if (!err.msg[0]) abort();
        return 0;
    }
    tok_tokenizer *t = NULL;
    if (tok_load_gguf(g, &t, &err) != LM_OK) {
        if (!err.msg[0] || t) abort(); /* every failure explains itself and hands nothing out */
        gguf_close(g);
        return 0;
    }
    static const char *const texts[] = {"Hello the world, hello!", " a<s>b</s>\n\t  x<|end|>", "\xff\xfe\xc3 invalid \xe2\x82",
                                        "", "\xe4\xbd\xa0\xe5\xa5\xbd 123 \xf0\x9f\x98\x80"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        check(t, texts[i], strlen(texts[i]), 0);
        check(t, texts[i], strlen(texts[i]), LM_TOK_ADD_SPECIAL | LM_TOK_PARSE_SPECIAL);
    }
    /* every id decodes on its own */
    int32_t n = tok_n_vocab(t);
    lm_buf b = {0};
    for (int32_t id = 0; id < n && id < 4096; id++) {
        lm_buf_reset(&b);
        tok_decode(t, &id, 1, id & 1, &b, &err);
    }
    lm_buf_free(&b);
    tok_free(t);
    gguf_close(g);
    return 0;
}
