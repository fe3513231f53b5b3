/* tokenizer/tok_json.c: Hugging Face tokenizer.json (+ tokenizer_config.json).
 * Owns: parsing the model/normalizer/pre-tokenizer/post-processor/decoder sections and running
 * that pipeline on text. Does not own: the merge engines or decoding (tokenizer.c). */
#include "tokenizer/tok_internal.h"

struct tok_json_pipe {
    int unused;
};

lm_status tok_json_encode(const tok_tokenizer *t, const char *text, size_t len, uint32_t flags,
                          tok_vec *out, lm_error *err) {
    (void)t, (void)text, (void)len, (void)flags, (void)out;
    return lm_fail(err, LM_ERR_UNSUPPORTED, "tokenizer.json: not supported yet");
}

void tok_json_pipe_free(struct tok_json_pipe *p) { lm_free(p); }

lm_status tok_load_json_text(const char *json, size_t len, const char *config_text,
                             size_t config_len, const char *name, tok_tokenizer **out,
                             lm_error *err) {
    (void)json, (void)len, (void)config_text, (void)config_len;
    *out = NULL;
    return lm_fail(err, LM_ERR_UNSUPPORTED, "%s: tokenizer.json: not supported yet", name);
}

lm_status tok_load_json(const char *tokenizer_json, const char *tokenizer_config,
                        tok_tokenizer **out, lm_error *err) {
    (void)tokenizer_config;
    return tok_load_json_text("", 0, NULL, 0, tokenizer_json, out, err);
}

lm_status tok_load_dir(const char *dir, tok_tokenizer **out, lm_error *err) {
    return tok_load_json_text("", 0, NULL, 0, dir, out, err);
}
