/* cli/eval.c: `locallm eval`, feed token ids and print the top logits at each position.
 * Owns: the options of eval, top-K selection, the greedy continuation, the raw logits dump and
 * the JSON shape scripts compare against:
 *   {"positions":[{"top":[[id,logit],...]},...],"greedy":[ids...]} */
#include "cli/cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { O_IDS = CLI_O_OWN, O_TOP, O_GREEDY, O_LOGITS_OUT };

static const cli_option EVAL_OPTIONS[] = {
    {O_IDS, "--ids", "LIST", "comma-separated token ids (required)"},
    {O_TOP, "--top", "K", "pairs printed per position (default 5)"},
    {O_GREEDY, "--greedy", "N", "then continue greedily for N tokens and print their ids"},
    {O_LOGITS_OUT, "--logits-out", "FILE", "write the last prompt position's logits as float32 little-endian"},
    {CLI_O_JSON, "--json", NULL, "print JSON: {\"positions\":[{\"top\":[[id,logit],...]},...],\"greedy\":[...]}"},
    CLI_OPT_THREADS,
    CLI_OPT_CTX,
    CLI_OPT_KV_TYPE,
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

typedef struct eval_opts {
    const char *model_path, *logits_out;
    lm_token *ids; /* malloc'd */
    size_t n_ids;
    int32_t k, n_greedy, n_threads, n_ctx;
    bool json, kv_f32;
} eval_opts;

/* Options into *o; -1 to go on, else the exit code (o->ids freed). */
static int parse_opts(int argc, char **argv, eval_opts *o) {
    const char *cmd = "eval";
    *o = (eval_opts){.k = 5};
    cli_args a;
    cli_args_init(&a, &EVAL_CMD, argc, argv);
    int rc = -1;
    for (int id; rc < 0 && (id = cli_args_step(&a, &o->model_path, &rc)) != CLI_ARGS_END;) {
        bool ok = true;
        switch (id) {
        case CLI_O_JSON: o->json = true; break;
        case CLI_O_FORCE: cli_set_force(true); break;
        case O_IDS:
            free(o->ids);
            o->ids = NULL;
            ok = cli_parse_ids(cmd, a.opt, a.val, &o->ids, &o->n_ids);
            break;
        case O_TOP: ok = cli_args_i32(&a, 1, 1 << 20, &o->k); break;
        case O_GREEDY: ok = cli_args_i32(&a, 0, 1 << 20, &o->n_greedy); break;
        case O_LOGITS_OUT: o->logits_out = a.val; break;
        case CLI_O_THREADS: ok = cli_args_i32(&a, 0, 1024, &o->n_threads); break;
        case CLI_O_CTX: ok = cli_args_i32(&a, 0, INT32_MAX, &o->n_ctx); break;
        case CLI_O_KV_TYPE: ok = cli_args_kv_type(&a, &o->kv_f32); break;
        }
        if (!ok) rc = CLI_EXIT_USAGE;
    }
    if (rc < 0 && !o->model_path) rc = cli_usage_error(cmd, "no model given");
    else if (rc < 0 && !o->ids) rc = cli_usage_error(cmd, "--ids is required");
    if (rc >= 0) {
        free(o->ids);
        o->ids = NULL;
    }
    return rc;
}

/* The k best (id, logit) pairs of each of the n_ids rows of all, then the greedy ids. */
static void print_eval(const eval_opts *o, const float *all, int32_t n_vocab, int32_t k, int32_t *top,
                       const lm_token *greedy) {
    if (o->json) fputs("{\"positions\":[", stdout);
    for (size_t p = 0; p < o->n_ids; p++) {
        const float *row = all + p * (size_t)n_vocab;
        top_k(row, n_vocab, k, top);
        if (o->json) {
            fputs(p ? ",{\"top\":[" : "{\"top\":[", stdout);
            for (int32_t j = 0; j < k; j++) {
                printf("%s[%ld,", j ? "," : "", (long)top[j]);
                print_logit(stdout, row[top[j]], true);
                fputc(']', stdout);
            }
            fputs("]}", stdout);
        } else {
            printf("pos %zu (id %ld):", p, (long)o->ids[p]);
            for (int32_t j = 0; j < k; j++) {
                printf("  %ld:", (long)top[j]);
                print_logit(stdout, row[top[j]], false);
            }
            fputc('\n', stdout);
        }
    }
    if (o->json) {
        fputs("],\"greedy\":[", stdout);
        for (int32_t g = 0; g < o->n_greedy; g++) printf("%s%ld", g ? "," : "", (long)greedy[g]);
        fputs("]}\n", stdout);
    } else if (o->n_greedy > 0) {
        fputs("greedy:", stdout);
        for (int32_t g = 0; g < o->n_greedy; g++) printf(" %ld", (long)greedy[g]);
        fputc('\n', stdout);
    }
}

/* Evaluates the ids on a fresh session of engine (every position's logits into all), writes
 * --logits-out, then continues greedily from the last row's logits (in last) into greedy. */
static bool run_eval(const eval_opts *o, lm_engine *engine, int32_t n_vocab, float *all, float *last,
                     lm_token *greedy) {
    lm_session_params sp = lm_session_default_params();
    sp.n_ctx = o->n_ctx;
    sp.kv_f32 = o->kv_f32;
    lm_error err = {0};
    lm_session *session = NULL;
    if (lm_session_new(engine, &sp, &session, &err) != LM_OK) {
        cli_error("cannot create a session: %s", err.msg[0] ? err.msg : "unknown error");
        return false;
    }
    bool ok = lm_session_eval(session, o->ids, o->n_ids, NULL, all) == LM_OK;
    if (!ok) cli_error("eval failed: %s", lm_session_errmsg(session));
    const float *row_last = all + (o->n_ids - 1) * (size_t)n_vocab;
    if (ok && o->logits_out && !(ok = write_logits(o->logits_out, row_last, n_vocab)))
        cli_error("cannot write logits to '%s'", o->logits_out);
    if (ok) memcpy(last, row_last, (size_t)n_vocab * sizeof *last);
    for (int32_t g = 0; ok && g < o->n_greedy; g++) {
        lm_token next = argmax(last, n_vocab);
        greedy[g] = next;
        if (g + 1 == o->n_greedy) break; /* the last id needs no logits after it */
        if (!(ok = lm_session_eval(session, &next, 1, last, NULL) == LM_OK))
            cli_error("eval of greedy token %ld failed: %s", (long)g, lm_session_errmsg(session));
    }
    lm_session_free(session);
    return ok;
}

int cli_eval(int argc, char **argv) {
    eval_opts o;
    int rc = parse_opts(argc, argv, &o);
    if (rc >= 0) return rc;
    rc = CLI_EXIT_ERROR;
    lm_model *model = NULL;
    lm_engine *engine = NULL;
    float *all = NULL, *last = NULL;
    int32_t *top = NULL;
    lm_token *greedy = NULL;
    if (!cli_load_model(o.model_path, o.n_threads, &model, NULL)) goto done;
    if (!cli_engine_new(model, &engine)) goto done;
    int32_t n_vocab = lm_model_n_vocab(model);
    if (n_vocab <= 0) {
        cli_error("model '%s' reports no vocabulary", o.model_path);
        goto done;
    }
    for (size_t i = 0; i < o.n_ids; i++) {
        if (o.ids[i] >= n_vocab) {
            cli_error("--ids: id %ld at position %zu is outside the vocabulary (0 to %ld)",
                      (long)o.ids[i], i, (long)n_vocab - 1);
            goto done;
        }
    }
    int32_t k = o.k > n_vocab ? n_vocab : o.k;
    if (o.n_ids > SIZE_MAX / sizeof(float) / (size_t)n_vocab) {
        cli_error("--ids: too many ids");
        goto done;
    }
    all = malloc(o.n_ids * (size_t)n_vocab * sizeof *all);
    last = malloc((size_t)n_vocab * sizeof *last);
    top = malloc((size_t)k * sizeof *top);
    greedy = malloc(((size_t)o.n_greedy + 1) * sizeof *greedy);
    if (!all || !last || !top || !greedy) {
        cli_error("out of memory for %zu x %ld logits", o.n_ids, (long)n_vocab);
        goto done;
    }
    if (!run_eval(&o, engine, n_vocab, all, last, greedy)) goto done;
    print_eval(&o, all, n_vocab, k, top, greedy);
    rc = CLI_EXIT_OK;
done:
    lm_engine_free(engine);
    lm_model_free(model);
    free(all);
    free(last);
    free(top);
    free(greedy);
    free(o.ids);
    return rc;
}
