/* examples/fallback.c: one question through a fallback manager over providers given in order.
 *
 *   cc fallback.c $(pkg-config --cflags --libs locallm) -o fallback
 *   ./fallback PROVIDER...
 *
 * Each PROVIDER is a local model (a .gguf file or a model folder) or the base URL of an
 * OpenAI-compatible endpoint (https://api.openai.com/v1 with $API_KEY, `locallm serve` at
 * http://127.0.0.1:8080/v1, or any other). The first that can answer does; one that is not
 * ready or fails before its first word is skipped, and the reason is printed. To see it offline:
 *
 *   ./fallback http://127.0.0.1:9/v1 models/tinychat     nothing listens there: local answers
 *   locallm serve --port 8080 &  ./fallback http://127.0.0.1:8080/v1 models/tinychat
 *
 * $MODEL_NAME is the model name sent to endpoints (default "default"). */
#include <locallm.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_PROVIDERS = 8 };

static int on_piece(const char *piece, size_t len, void *user) {
    (void)user;
    fwrite(piece, 1, len, stdout);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2 || argc - 1 > MAX_PROVIDERS) {
        fprintf(stderr, "usage: %s PROVIDER... (a model path or an http(s):// URL; at most %d)\n",
                argv[0], MAX_PROVIDERS);
        return 2;
    }
    lm_model *models[MAX_PROVIDERS] = {0};
    lm_engine *engines[MAX_PROVIDERS] = {0};
    lm_provider *list[MAX_PROVIDERS] = {0};
    char names[MAX_PROVIDERS][16];
    lm_provider *manager = NULL;
    lm_error err = {0};
    int n = 0, rc = 1;
    for (int i = 1; i < argc; i++, n++) {
        if (strncmp(argv[i], "http://", 7) == 0 || strncmp(argv[i], "https://", 8) == 0) {
            snprintf(names[n], sizeof names[n], "remote%d", n + 1);
            const char *model_name = getenv("MODEL_NAME");
            lm_openai_params op = {.name = names[n], .base_url = argv[i],
                                   .model = model_name ? model_name : "default",
                                   .api_key = getenv("API_KEY"), .connect_timeout_ms = 2000};
            if (lm_provider_openai_new(&op, &list[n], &err) != LM_OK) goto fail;
        } else {
            lm_model_params mp = lm_model_default_params();
            if (lm_model_load(argv[i], &mp, &models[n], &err) != LM_OK ||
                lm_engine_new(models[n], NULL, &engines[n], &err) != LM_OK ||
                lm_provider_local_new(engines[n], NULL, &list[n], &err) != LM_OK)
                goto fail;
        }
    }
    if (lm_provider_fallback_new(list, (size_t)n, &manager, &err) != LM_OK) goto fail;

    lm_message q = {.role = "user", .content = "What is the capital of France?"};
    lm_chat_params cp = lm_chat_default_params();
    lm_gen_params gp = lm_gen_default_params();
    gp.max_tokens = 64;
    gp.temperature = 0;
    /* the call handle: cancel it from another thread; it keeps who answered and why */
    lm_call *call = NULL;
    if (lm_call_new(&call, &err) != LM_OK) goto fail;
    lm_status st = lm_provider_chat(manager, &q, 1, &cp, &gp, on_piece, NULL, call, NULL);
    printf("\n");
    const char *skipped = lm_call_skipped(call);
    if (st == LM_OK) {
        printf("answered by: %s\n", lm_call_answered_by(call));
        if (skipped[0]) printf("skipped: %s\n", skipped);
        rc = 0;
    } else {
        fprintf(stderr, "no answer: %s\n", lm_call_errmsg(call));
    }
    lm_call_free(call);
    goto done;
fail:
    fprintf(stderr, "%s: %s\n", argv[n + 1], err.msg);
done:
    lm_provider_free(manager);
    for (int i = 0; i < MAX_PROVIDERS; i++) { /* any order: each keeps what it uses alive */
        lm_provider_free(list[i]);
        lm_engine_free(engines[i]);
        lm_model_free(models[i]);
    }
    return rc;
}
