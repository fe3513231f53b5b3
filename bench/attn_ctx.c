/* bench/attn_ctx.c: decode speed as the context grows (attention over the KV cache), through the
 * public API. For each context P: a session of P + n_gen + 8 tokens, P seeded ids prefilled, then
 * n_gen single-token decode steps. Prints wall-clock tok/s and tok per CPU-second (the process's
 * CPU time: with 1 thread it hardly moves when the machine is shared, wall time does).
 *   cmake -S . -B /tmp/build-attn -DCMAKE_BUILD_TYPE=Release && cmake --build /tmp/build-attn -j2 --target locallm_lib
 *   cc -O2 -Iinclude bench/attn_ctx.c /tmp/build-attn/liblocallm.a \
 *      $(pkg-config --libs libcjson libpcre2-8 libutf8proc libcurl libmicrohttpd) -lm -lpthread -o /tmp/attn_ctx
 *   /tmp/attn_ctx MODEL.gguf [threads=2] [n_gen=32] [kv=f16|f32] [contexts=64,1024,4096] */
#define _POSIX_C_SOURCE 200809L
#include <locallm.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double ms(clockid_t id) {
    struct timespec t;
    clock_gettime(id, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL [threads=2] [n_gen=32] [kv=f16|f32] [contexts=64,1024,4096]\n", argv[0]);
        return 2;
    }
    int threads = argc > 2 ? atoi(argv[2]) : 2, n_gen = argc > 3 ? atoi(argv[3]) : 32;
    bool f32 = argc > 4 && strcmp(argv[4], "f32") == 0;
    char ctxs[256];
    snprintf(ctxs, sizeof ctxs, "%s", argc > 5 ? argv[5] : "64,1024,4096");
    lm_model_params mp = lm_model_default_params();
    mp.n_threads = threads;
    lm_model *m = NULL;
    lm_error err;
    if (lm_model_load(argv[1], &mp, &m, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    lm_engine *eng = NULL;
    if (lm_engine_new(m, NULL, &eng, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    int32_t nv = lm_model_n_vocab(m);
    float *logits = malloc((size_t)nv * sizeof(float));
    printf("threads %d, kv %s, %d decode steps\n", threads, f32 ? "f32" : "f16", n_gen);
    for (char *tok = strtok(ctxs, ","); tok; tok = strtok(NULL, ",")) {
        int p = atoi(tok);
        lm_session_params sp = lm_session_default_params();
        sp.n_ctx = p + n_gen + 8;
        sp.n_batch = 256;
        sp.kv_f32 = f32;
        lm_session *s = NULL;
        if (lm_session_new(eng, &sp, &s, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        lm_token *ids = malloc((size_t)p * sizeof *ids);
        for (int i = 0; i < p; i++) ids[i] = 1000 + (lm_token)((i * 7919) % (nv / 2));
        double w0 = ms(CLOCK_MONOTONIC), c0 = ms(CLOCK_PROCESS_CPUTIME_ID);
        if (lm_session_eval(s, ids, (size_t)p, logits, NULL)) {
            fprintf(stderr, "prefill: %s\n", lm_session_errmsg(s));
            return 1;
        }
        double w1 = ms(CLOCK_MONOTONIC), c1 = ms(CLOCK_PROCESS_CPUTIME_ID);
        for (int g = 0; g < n_gen; g++) {
            lm_token id = 2000 + (g * 31) % 1000;
            if (lm_session_eval(s, &id, 1, logits, NULL)) {
                fprintf(stderr, "decode: %s\n", lm_session_errmsg(s));
                return 1;
            }
        }
        double w2 = ms(CLOCK_MONOTONIC), c2 = ms(CLOCK_PROCESS_CPUTIME_ID);
        printf("ctx %5d: prefill %7.1f tok/s (%7.1f per cpu-s)  decode %6.2f tok/s (%6.2f per cpu-s)\n", p,
               p * 1e3 / (w1 - w0), p * 1e3 / (c1 - c0), n_gen * 1e3 / (w2 - w1), n_gen * 1e3 / (c2 - c1));
        fflush(stdout);
        lm_session_free(s);
        free(ids);
    }
    free(logits);
    lm_engine_free(eng);
    lm_model_free(m);
    return 0;
}
