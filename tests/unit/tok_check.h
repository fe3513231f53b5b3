/* tests/unit/tok_check.h: the decoding checks that test_tokenizer.c (GGUF vocabularies) and
 * test_tokenizer_json.c (tokenizer.json pipelines) both make: whole, and streamed one id at a
 * time. Included after testutil.h. */
#ifndef LM_TOK_CHECK_H
#define LM_TOK_CHECK_H

#include "tokenizer/tokenizer.h"

/* Decoding ids whole and pushing them one at a time through a tok_stream (skip: special tokens
 * left out) give the same bytes, and every piece a push hands out is whole UTF-8. */
static void check_stream(const tok_tokenizer *t, const lm_token *ids, size_t n, bool skip) {
    lm_buf whole = {0}, part = {0};
    lm_error err = {0};
    assert_int_equal(tok_decode(t, ids, n, skip, &whole, &err), LM_OK);
    tok_stream *s = tok_stream_new(t, skip);
    assert_non_null(s);
    for (size_t i = 0; i < n; i++) {
        size_t before = part.len;
        assert_int_equal(tok_stream_push(s, ids[i], &part), LM_OK);
        /* nothing pushed yet leaves part.data NULL: no offset from it (clang's UBSan) */
        const char *piece = part.data ? part.data + before : "";
        assert_int_equal(lm_utf8_complete_len(piece, part.len - before), part.len - before);
    }
    assert_int_equal(tok_stream_finish(s, &part), LM_OK);
    assert_int_equal(whole.len, part.len);
    if (whole.len) assert_memory_equal(whole.data, part.data, whole.len);
    tok_stream_free(s);
    lm_buf_free(&whole);
    lm_buf_free(&part);
}

/* Decodes ids (skip: special tokens left out) and fails unless the text is want; the same ids
 * streamed one at a time must give the same bytes (check_stream). */
static void expect_text(const tok_tokenizer *t, const lm_token *ids, size_t n, bool skip,
                        const char *want) {
    lm_buf b = {0};
    lm_error err = {0};
    assert_int_equal(tok_decode(t, ids, n, skip, &b, &err), LM_OK);
    assert_string_equal(b.data ? b.data : "", want);
    lm_buf_free(&b);
    check_stream(t, ids, n, skip);
}

#endif
