/* bench/tok_bench.c: tokenizer load time and encode throughput on one core.
 *
 *   tok_bench TOKENIZER (tokenizer.json | folder | .gguf) [-r REPS] [-l LOADS] TEXTFILE...
 *
 * Loads the tokenizer LOADS times (default REPS, default 5) and reports the fastest load; then encodes each text
 * file (its exact bytes, no special-token parsing, no BOS) REPS times and reports the best MB/s
 * (1 MB = 1e6 bytes) and the token count. One JSON object per line:
 *   {"what":"load","file":..,"ms":..}
 *   {"what":"encode","file":..,"bytes":..,"tokens":..,"ms":..,"mb_s":..}
 * Built against the library's internal tokenizer API (src/tokenizer/tokenizer.h) by
 * bench/tokenizer.sh; never part of the library. */
#include "tokenizer/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static lm_status load(const char *path, tok_tokenizer **t, gguf_file **g, lm_error *err) {
    size_t n = strlen(path);
    *g = NULL;
    if (lm_is_dir(path)) return tok_load_dir(path, t, err);
    if (n > 5 && strcmp(path + n - 5, ".gguf") == 0) {
        lm_status st = gguf_open(path, true, g, err);
        return st ? st : tok_load_gguf(*g, t, err);
    }
    return tok_load_json(path, NULL, t, err);
}

int main(int argc, char **argv) {
    int reps = 5, loads = 0;
    const char *tok_path = NULL;
    const char *texts[64];
    int n_texts = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-r") == 0 && i + 1 < argc) reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "-l") == 0 && i + 1 < argc) loads = atoi(argv[++i]);
        else if (!tok_path) tok_path = argv[i];
        else if (n_texts < 64) texts[n_texts++] = argv[i];
    }
    if (!tok_path || reps < 1) {
        fprintf(stderr, "usage: tok_bench TOKENIZER [-r REPS] [-l LOADS] TEXTFILE...\n");
        return 2;
    }
    if (loads < 1) loads = reps;
    lm_error err = {0};
    tok_tokenizer *t = NULL;
    gguf_file *g = NULL;
    double best = 1e30;
    for (int r = 0; r < loads; r++) {
        double t0 = now_ms();
        if (load(tok_path, &t, &g, &err)) {
            fprintf(stderr, "tok_bench: %s\n", err.msg);
            return 1;
        }
        double dt = now_ms() - t0;
        if (dt < best) best = dt;
        if (r + 1 < loads) {
            tok_free(t);
            gguf_close(g);
        }
    }
    printf("{\"what\":\"load\",\"file\":\"%s\",\"ms\":%.2f}\n", tok_path, best);
    for (int k = 0; k < n_texts; k++) {
        char *text = NULL;
        size_t len = 0;
        if (lm_read_text(texts[k], &text, &len, &err)) {
            fprintf(stderr, "tok_bench: %s\n", err.msg);
            return 1;
        }
        tok_vec v = {0};
        double b = 1e30;
        for (int r = 0; r < reps; r++) {
            v.n = 0;
            double t0 = now_ms();
            if (tok_encode(t, text, len, 0, &v, &err)) {
                fprintf(stderr, "tok_bench: %s: %s\n", texts[k], err.msg);
                return 1;
            }
            double dt = now_ms() - t0;
            if (dt < b) b = dt;
        }
        printf("{\"what\":\"encode\",\"file\":\"%s\",\"bytes\":%zu,\"tokens\":%zu,\"ms\":%.2f,\"mb_s\":%.2f}\n",
               texts[k], len, v.n, b, (double)len / 1e6 / (b / 1e3));
        tok_vec_free(&v);
        lm_free(text);
    }
    tok_free(t);
    gguf_close(g);
    return 0;
}
