/* tests/fuzz/fuzz_gguf_model.c: the GGUF model loader (hyper-parameters, the architecture table,
 * tensor shapes and types against the metadata, the tokenizer, rope scaling, the chat template)
 * over arbitrary bytes, through lm_model_load on a temporary file (the loader takes a path).
 * A model that loads must describe itself, tokenize and detokenize. Every failure carries a
 * message. Seeds: tests/fuzz/corpus/gguf_model (tools/make_fuzz_corpus.py). */
#include "core/core.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char g_path[64];
static int g_fd = -1;

static void remove_file(void) {
    if (g_path[0]) unlink(g_path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (g_fd < 0) {
        snprintf(g_path, sizeof g_path, "/tmp/fuzz_gguf_model_XXXXXX.gguf");
        g_fd = mkstemps(g_path, 5);
        if (g_fd < 0) abort();
        atexit(remove_file);
    }
    if (ftruncate(g_fd, 0) != 0) abort();
    for (size_t off = 0; off < size;) {
        ssize_t w = pwrite(g_fd, data + off, size - off, (off_t)off);
        if (w <= 0) abort();
        off += (size_t)w;
    }
    lm_model_params mp = lm_model_default_params();
    mp.n_threads = 1; /* no thread pool per input */
    lm_model *m = NULL;
    lm_error err = {0};
    if (lm_model_load(g_path, &mp, &m, &err) != LM_OK) {
        if (!err.msg[0] || m) abort();
        return 0;
    }
    lm_model_info info;
    lm_model_get_info(m, &info);
    if (!info.arch || !info.quant || info.n_vocab <= 0 || info.n_layer <= 0 || info.n_embd <= 0) abort();
    lm_token ids[64];
    size_t n = 0;
    if (lm_model_tokenize(m, "Hello the world", 15, LM_TOK_ADD_SPECIAL, ids, 64, &n, &err) == LM_OK) {
        for (size_t i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= info.n_vocab) abort();
        char text[512];
        size_t len = 0;
        lm_model_detokenize(m, ids, n, true, text, sizeof text, &len, &err);
    }
    (void)lm_model_token_piece(m, lm_model_token_bos(m));
    (void)lm_model_kv_bytes_per_token(m);
    lm_model_free(m);
    return 0;
}
