/* cli/eval.c: `locallm eval`, feed token ids and print the top logits at each position.
 * Owns: the options of eval, top-K selection, the greedy continuation, the raw logits dump and
 * the JSON shape scripts compare against:
 *   {"positions":[{"top":[[id,logit],...]},...],"greedy":[ids...]} */
#include "cli/cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { O_IDS = CLI_O_OWN, O_TOP, O_GREEDY, O_LOGITS_OUT, O_KV_TYPE };

static const cli_option EVAL_OPTIONS[] = {
    {O_IDS, "--ids", "LIST", "comma-separated token ids (required)"},
    {O_TOP, "--top", "K", "pairs printed per position (default 5)"},
    {O_GREEDY, "--greedy", "N", "then continue greedily for N tokens and print their ids"},
    {O_LOGITS_OUT, "--logits-out", "FILE", "write the last prompt position's logits as float32 little-endian"},
    {CLI_O_JSON, "--json", NULL, "print JSON: {\"positions\":[{\"top\":[[id,logit],...]},...],\"greedy\":[...]}"},
    CLI_OPT_THREADS,
    CLI_OPT_CTX,
    {O_KV_TYPE, "--kv-type", "T", "KV cache element type: f16 (default) or f32"},
    CLI_OPT_FORCE,
    {0, NULL, NULL, NULL},
};

static const cli_command EVAL_CMD = {
    "eval",
    "Usage: locallm eval MODEL --ids ID,ID,... [options]\n",
    "Feeds the token ids through the model and prints the K best (id, logit) pairs after each\n"
    "position. Meant for checking numbers against a reference.\n",
    EVAL_OPTIONS,
    NULL,
};

/* Index of the largest value; the lowest index wins ties so greedy runs are reproducible. */
static int32_t argmax(const float *x, int32_t n) {
    int32_t best = 0;
    for (int32_t k = 1; k < n; k++)
        if (x[k] > x[best]) best = k;
    return best;
}

/* Fills top[0..k) with the indices of the k largest values, best first (ties: lower index). */
static void top_k(const float *x, int32_t n, int32_t k, int32_t *top) {
    int32_t have = 0;
    for (int32_t i = 0; i < n; i++) {
        /* Insertion into a short sorted list: k is small, n is a vocabulary. */
        int32_t pos = have;
        while (pos > 0 && x[i] > x[top[pos - 1]]) pos--;
        if (pos >= k) continue;
        int32_t end = have < k ? have : k - 1;
        memmove(top + pos + 1, top + pos, (size_t)(end - pos) * sizeof *top);
        top[pos] = i;
        if (have < k) have++;
    }
}

static void print_logit(FILE *f, float v, bool json) {
    if (json && !isfinite(v))
        fputs("null", f);
    else
        fprintf(f, "%.6f", (double)v);
}

static bool write_logits(const char *path, const float *x, int32_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    bool ok = true;
    for (int32_t i = 0; i < n && ok; i++) {
        uint32_t u;
        memcpy(&u, &x[i], sizeof u);
        unsigned char b[4] = {(unsigned char)u, (unsigned char)(u >> 8),
                              (unsigned char)(u >> 16), (unsigned char)(u >> 24)};
        ok = fwrite(b, 1, 4, f) == 4;
    }
    if (fclose(f) != 0) ok = false;
    return ok;
}

int cli_eval(int argc, char **argv) {
    const char *cmd = "eval";
    const char *model_path = NULL, *logits_out = NULL;
    lm_token *ids = NULL;
    size_t n_ids = 0;
    int32_t k = 5, n_greedy = 0, n_threads = 0, n_ctx = 0;
    bool json = false, kv_f32 = false;

    cli_args a;
    cli_args_init(&a, &EVAL_CMD, argc, argv);
    for (int id; (id = cli_args_next(&a)) != CLI_ARGS_END;) {
        bool ok = true;
        switch (id) {
        case CLI_ARGS_HELP:
            free(ids);
            return CLI_EXIT_OK;
        case CLI_ARGS_ERROR: goto usage;
        case CLI_ARGS_POSITIONAL:
            if (model_path) {
                cli_usage_error(cmd, "unexpected argument '%s' (the model is '%s')", a.val, model_path);
                goto usage;
            }
            model_path = a.val;
            break;
        case CLI_O_JSON: json = true; break;
        case CLI_O_FORCE: cli_set_force(true); break;
        case O_IDS:
            free(ids);
            ids = NULL;
            ok = cli_parse_ids(cmd, a.opt, a.val, &ids, &n_ids);
            break;
        case O_TOP: ok = cli_args_i32(&a, 1, 1 << 20, &k); break;
        case O_GREEDY: ok = cli_args_i32(&a, 0, 1 << 20, &n_greedy); break;
        case O_LOGITS_OUT: logits_out = a.val; break;
        case CLI_O_THREADS: ok = cli_args_i32(&a, 0, 1024, &n_threads); break;
        case CLI_O_CTX: ok = cli_args_i32(&a, 0, INT32_MAX, &n_ctx); break;
        case O_KV_TYPE:
            if (strcmp(a.val, "f32") == 0 || strcmp(a.val, "f16") == 0) {
                kv_f32 = strcmp(a.val, "f32") == 0;
            } else {
                cli_usage_error(cmd, "%s: expected f16 or f32, got '%s'", a.opt, a.val);
                ok = false;
            }
            break;
        }
        if (!ok) goto usage;
    }
    if (!model_path) {
        cli_usage_error(cmd, "no model given");
        goto usage;
    }
    if (!ids) {
        cli_usage_error(cmd, "--ids is required");
        goto usage;
    }

    int rc = CLI_EXIT_ERROR;
    lm_model *model = NULL;
    lm_engine *engine = NULL;
    lm_session *session = NULL;
    float *all = NULL, *last = NULL;
    int32_t *top = NULL;
    lm_token *greedy = NULL;
    if (!cli_load_model(model_path, n_threads, &model, NULL)) goto done;
    if (!cli_engine_new(model, &engine)) goto done;
    int32_t n_vocab = lm_n_vocab(model);
    if (n_vocab <= 0) {
        cli_error("model '%s' reports no vocabulary", model_path);
        goto done;
    }
    for (size_t i = 0; i < n_ids; i++) {
        if (ids[i] >= n_vocab) {
            cli_error("--ids: id %ld at position %zu is outside the vocabulary (0 to %ld)",
                      (long)ids[i], i, (long)n_vocab - 1);
            goto done;
        }
    }
    if (k > n_vocab) k = n_vocab;

    size_t n_all = 0;
    if (n_ids > SIZE_MAX / sizeof(float) / (size_t)n_vocab) {
        cli_error("--ids: too many ids");
        goto done;
    }
    n_all = n_ids * (size_t)n_vocab;
    all = malloc(n_all * sizeof *all);
    last = malloc((size_t)n_vocab * sizeof *last);
    top = malloc((size_t)k * sizeof *top);
    greedy = malloc(((size_t)n_greedy + 1) * sizeof *greedy);
    if (!all || !last || !top || !greedy) {
        cli_error("out of memory for %zu x %ld logits", n_ids, (long)n_vocab);
        goto done;
    }

    lm_session_params sp = lm_session_default_params();
    sp.n_ctx = n_ctx;
    sp.kv_f32 = kv_f32;
    lm_error err = {0};
    if (lm_session_new(engine, &sp, &session, &err) != LM_OK) {
        cli_error("cannot create a session: %s", err.msg[0] ? err.msg : "unknown error");
        goto done;
    }
    if (lm_session_eval(session, ids, n_ids, NULL, all) != LM_OK) {
        cli_error("eval failed: %s", lm_session_errmsg(session));
        goto done;
    }
    const float *row_last = all + (n_ids - 1) * (size_t)n_vocab;
    if (logits_out && !write_logits(logits_out, row_last, n_vocab)) {
        cli_error("cannot write logits to '%s'", logits_out);
        goto done;
    }

    memcpy(last, row_last, (size_t)n_vocab * sizeof *last);
    for (int32_t g = 0; g < n_greedy; g++) {
        lm_token next = argmax(last, n_vocab);
        greedy[g] = next;
        if (g + 1 == n_greedy) break; /* the last id needs no logits after it */
        if (lm_session_eval(session, &next, 1, last, NULL) != LM_OK) {
            cli_error("eval of greedy token %ld failed: %s", (long)g,
                      lm_session_errmsg(session));
            goto done;
        }
    }

    if (json) fputs("{\"positions\":[", stdout);
    for (size_t p = 0; p < n_ids; p++) {
        const float *row = all + p * (size_t)n_vocab;
        top_k(row, n_vocab, k, top);
        if (json) {
            fputs(p ? ",{\"top\":[" : "{\"top\":[", stdout);
            for (int32_t j = 0; j < k; j++) {
                printf("%s[%ld,", j ? "," : "", (long)top[j]);
                print_logit(stdout, row[top[j]], true);
                fputc(']', stdout);
            }
            fputs("]}", stdout);
        } else {
            printf("pos %zu (id %ld):", p, (long)ids[p]);
            for (int32_t j = 0; j < k; j++) {
                printf("  %ld:", (long)top[j]);
                print_logit(stdout, row[top[j]], false);
            }
            fputc('\n', stdout);
        }
    }
    if (json) {
        fputs("],\"greedy\":[", stdout);
        for (int32_t g = 0; g < n_greedy; g++) printf("%s%ld", g ? "," : "", (long)greedy[g]);
        fputs("]}\n", stdout);
    } else if (n_greedy > 0) {
        fputs("greedy:", stdout);
        for (int32_t g = 0; g < n_greedy; g++) printf(" %ld", (long)greedy[g]);
        fputc('\n', stdout);
    }
    rc = CLI_EXIT_OK;

done:
    lm_session_free(session);
    lm_engine_free(engine);
    lm_model_free(model);
    free(all);
    free(last);
    free(top);
    free(greedy);
    free(ids);
    return rc;

usage:
    free(ids);
    return CLI_EXIT_USAGE;
}
