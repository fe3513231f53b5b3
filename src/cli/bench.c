/* cli/bench.c: `locallm bench`, measure prefill and decode speed of a model.
 * Owns: the options of bench, the seeded prompt ids, the timed runs (median over repetitions),
 * peak RSS and the JSON shape scripts read:
 *   {"model":..,"threads":N,"prefill":[{"tokens":P,"tok_s":x,"ttft_ms":y},..],
 *    "decode":{"tokens":N,"tok_s":z},"load_ms":..,"peak_rss_mb":..} */
#include "cli/cli.h"

#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

enum { O_PROMPT_LENS = CLI_O_OWN, O_N_GEN, O_REPS, O_CONVERSATION, O_PARALLEL, O_PROMPT_TOKENS, O_LONG_PROMPT };

static const cli_option BENCH_OPTIONS[] = {
    {O_PROMPT_LENS, "-p|--prompt-lens", "LIST", "prompt lengths to prefill (default 128,512)"},
    {O_N_GEN, "-n|--n-gen", "N", "tokens to decode, one at a time (default 64; 0 skips decode)"},
    CLI_OPT_THREADS,
    {O_REPS, "-r|--reps", "N", "repetitions (default 3)"},
    {O_CONVERSATION, "--conversation", NULL,
     "also time a voice conversation at the token level: TTFT of turn 1\n"
     "(500-token system prompt + 30), of turn 5 (1,000 tokens cached +\n"
     "30 new) against a full re-prefill, and after partial prefill\n"
     "(the final call adds 5 tokens)"},
    {O_PARALLEL, "--parallel", "LIST",
     "instead: LIST concurrent conversations (e.g. 1,4,8) on one engine,\n"
     "each prefilling --prompt-tokens random tokens and generating -n\n"
     "tokens: aggregate and per-stream tok/s, TTFT p50/p99"},
    {O_PROMPT_TOKENS, "--prompt-tokens", "N", "prompt of each conversation with --parallel (default 32)"},
    {O_LONG_PROMPT, "--long-prompt", "N",
     "with --parallel K: while K conversations generate, one with an\n"
     "N-token prompt joins: the largest gap between two tokens of the K\n"
     "streams, and the newcomer's time to first token"},
    CLI_OPT_CTX,
    {CLI_O_JSON, "--json", NULL, "print one JSON object (one line per count with --parallel)"},
    CLI_OPT_FORCE,
    {0, NULL, NULL, NULL},
};

static const cli_command BENCH_CMD = {
    "bench",
    "Usage: locallm bench [MODEL] [options]\n",
    "Measures prompt processing (prefill) and generation (decode) speed on random but seeded\n"
    "token ids. Each figure is the median of the repetitions. MODEL defaults to the embedded model.\n",
    BENCH_OPTIONS,
    NULL,
};

/* Decode runs after a prompt this long, so attention has something to look at. */
enum { DECODE_PROMPT = 8, SEED = 1234 };

/* splitmix64: a fixed sequence on every platform, so every run benches the same ids. */
static uint64_t next_u64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Ids from the middle of the vocabulary: away from BOS/EOS and other specials at the ends. */
static void fill_ids(lm_token *ids, size_t n, int32_t n_vocab, uint64_t seed) {
    int32_t lo = n_vocab / 4, hi = n_vocab / 2;
    if (hi <= lo) {
        lo = 0;
        hi = n_vocab;
    }
    uint64_t state = seed;
    for (size_t i = 0; i < n; i++) ids[i] = lo + (lm_token)(next_u64(&state) % (uint64_t)(hi - lo));
}

/* The conversation figures, each a median over reps, in ms: [0] turn 1 (530 tokens from an empty
 * context), [1] turn 5 (30 new tokens on 1,000 cached), [2] the same turn without reuse (1,030
 * prefilled), [3] after partial prefill (5 new tokens on 1,025 cached); each is the new tokens'
 * prefill plus one decode step, what a user waits for. */
static bool time_conversation(lm_engine *engine, const lm_token *ids, int32_t reps, double conv[4]);

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, size_t n) {
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static double peak_rss_mb(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
#ifdef __APPLE__
    return (double)ru.ru_maxrss / (1024.0 * 1024.0); /* bytes on macOS */
#else
    return (double)ru.ru_maxrss / 1024.0; /* kilobytes on Linux and the BSDs */
#endif
}

/* Opens a session whose context holds n_tokens (the default one when that is enough). */
static bool open_session(lm_engine *engine, int32_t default_ctx, size_t n_tokens, lm_session **s) {
    lm_session_params sp = lm_session_default_params();
    if (n_tokens > (size_t)default_ctx) sp.n_ctx = (int32_t)n_tokens;
    lm_error err = {0};
    if (lm_session_new(engine, &sp, s, &err) != LM_OK) {
        cli_error("cannot create a session of %zu tokens: %s", n_tokens,
                  err.msg[0] ? err.msg : "unknown error");
        return false;
    }
    return true;
}

/* Evaluates ids[from..to) on top of the first `from` tokens already in s, then one decode step;
 * the time of both in *ms. */
static bool timed_eval(lm_session *s, const lm_token *ids, size_t from, size_t to, float *logits,
                       double *ms) {
    if (lm_session_truncate(s, from) != LM_OK) return false;
    double t0 = cli_now_ms();
    if (lm_session_eval(s, ids + from, to - from, logits, NULL) != LM_OK) return false;
    lm_token next = ids[0];
    if (lm_session_eval(s, &next, 1, logits, NULL) != LM_OK) return false;
    *ms = cli_now_ms() - t0;
    return true;
}

/* One session for every figure: the cached prefixes are cut back (lm_session_truncate) rather
 * than prefilled again for each repetition, so only the timed parts cost time more than once. */
static bool time_conversation(lm_engine *engine, const lm_token *ids, int32_t reps, double conv[4]) {
    enum { SYS = 500, USER = 30, HIST = 1000, PARTIAL_TAIL = 5 };
    size_t n = (size_t)reps;
    double *v = malloc(4 * n * sizeof *v);
    float *logits = malloc((size_t)lm_n_vocab(lm_engine_model(engine)) * sizeof *logits);
    lm_session *s = NULL;
    bool ok = v && logits && open_session(engine, 0, HIST + USER + 2, &s);
    if (!v || !logits) cli_error("out of memory");
    for (size_t r = 0; ok && r < n; r++) ok = timed_eval(s, ids, 0, SYS + USER, logits, &v[r]);
    /* the history of turns 1-4: ids[0..HIST) in the cache (untimed) */
    ok = ok && lm_session_truncate(s, SYS + USER) == LM_OK &&
         lm_session_eval(s, ids + SYS + USER, HIST - SYS - USER, NULL, NULL) == LM_OK;
    for (size_t r = 0; ok && r < n; r++) {
        ok = timed_eval(s, ids, HIST, HIST + USER, logits, &v[n + r]) &&
             timed_eval(s, ids, HIST + USER - PARTIAL_TAIL, HIST + USER, logits, &v[3 * n + r]);
    }
    for (size_t r = 0; ok && r < n; r++) ok = timed_eval(s, ids, 0, HIST + USER, logits, &v[2 * n + r]);
    if (ok) {
        for (int k = 0; k < 4; k++) conv[k] = median(v + (size_t)k * n, n);
    } else if (s) {
        cli_error("conversation bench failed: %s", lm_session_errmsg(s));
    }
    lm_session_free(s);
    free(v);
    free(logits);
    return ok;
}

int cli_bench(int argc, char **argv) {
    const char *cmd = "bench";
    const char *model_path = NULL;
    int32_t *lens = NULL;
    size_t n_lens = 0;
    int32_t n_gen = 64, n_threads = 0, reps = 3, n_prompt_tokens = 32, long_prompt = 0, n_ctx = 0;
    int32_t *par = NULL;
    size_t n_par = 0;
    bool json = false, conversation = false;

    cli_args a;
    cli_args_init(&a, &BENCH_CMD, argc, argv);
    for (int id; (id = cli_args_next(&a)) != CLI_ARGS_END;) {
        bool ok = true;
        switch (id) {
        case CLI_ARGS_HELP:
            free(lens);
            free(par);
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
        case O_CONVERSATION: conversation = true; break;
        case CLI_O_FORCE: cli_set_force(true); break;
        case O_PROMPT_LENS:
            free(lens);
            lens = NULL;
            ok = cli_parse_i32_list(cmd, a.opt, a.val, 1, 1 << 20, &lens, &n_lens);
            break;
        case O_N_GEN: ok = cli_args_i32(&a, 0, 1 << 20, &n_gen); break;
        case O_PARALLEL:
            free(par);
            par = NULL;
            ok = cli_parse_i32_list(cmd, a.opt, a.val, 1, 1024, &par, &n_par);
            break;
        case O_PROMPT_TOKENS: ok = cli_args_i32(&a, 1, 1 << 20, &n_prompt_tokens); break;
        case O_LONG_PROMPT: ok = cli_args_i32(&a, 1, 1 << 20, &long_prompt); break;
        case CLI_O_CTX: ok = cli_args_i32(&a, 1, 1 << 22, &n_ctx); break;
        case CLI_O_THREADS: ok = cli_args_i32(&a, 0, 1024, &n_threads); break;
        case O_REPS: ok = cli_args_i32(&a, 1, 1000, &reps); break;
        }
        if (!ok) goto usage;
    }
    if (!lens) {
        static const int32_t DEFAULT_LENS[] = {128, 512};
        n_lens = 2;
        lens = malloc(sizeof DEFAULT_LENS);
        if (!lens) return cli_error("out of memory");
        memcpy(lens, DEFAULT_LENS, sizeof DEFAULT_LENS);
    }

    int rc = CLI_EXIT_ERROR;
    char *default_path = NULL;
    lm_model *model = NULL;
    lm_engine *engine = NULL;
    lm_session *s = NULL;
    lm_token *ids = NULL;
    float *logits = NULL;
    double *samples = NULL, *samples2 = NULL, *prefill_tok_s = NULL, *ttft_ms = NULL;
    double decode_tok_s = 0, load_ms = 0;

    if (!model_path) {
        default_path = cli_default_model();
        if (!default_path) {
            cli_error("out of memory");
            goto done;
        }
        model_path = default_path;
    }
    if (!cli_load_model(model_path, n_threads, &model, &load_ms)) goto done;
    if (par && long_prompt) {
        rc = cli_bench_long_prompt(model, model_path, par[0], long_prompt, n_ctx, json);
        goto done;
    }
    if (par) {
        rc = cli_bench_parallel(model, model_path, par, n_par, n_prompt_tokens, n_gen > 0 ? n_gen : 1, reps, json);
        goto done;
    }
    if (!cli_engine_new(model, &engine)) goto done;
    lm_model_info mi;
    memset(&mi, 0, sizeof mi);
    lm_model_get_info(model, &mi);
    int32_t n_vocab = lm_n_vocab(model);
    int32_t default_ctx = mi.n_ctx_train > 0 && mi.n_ctx_train < 4096 ? mi.n_ctx_train : 4096;

    size_t max_len = conversation ? 1040 : DECODE_PROMPT;
    for (size_t k = 0; k < n_lens; k++)
        if ((size_t)lens[k] > max_len) max_len = (size_t)lens[k];
    ids = malloc(max_len * sizeof *ids);
    logits = malloc((size_t)(n_vocab > 0 ? n_vocab : 1) * sizeof *logits);
    samples = malloc((size_t)reps * sizeof *samples);
    samples2 = malloc((size_t)reps * sizeof *samples2);
    prefill_tok_s = calloc(n_lens, sizeof *prefill_tok_s);
    ttft_ms = calloc(n_lens, sizeof *ttft_ms);
    if (!ids || !logits || !samples || !samples2 || !prefill_tok_s || !ttft_ms) {
        cli_error("out of memory");
        goto done;
    }
    fill_ids(ids, max_len, n_vocab, SEED);

    /* One untimed pass first: touches the mapped weights and warms the thread pool. */
    if (!open_session(engine, default_ctx, DECODE_PROMPT, &s)) goto done;
    if (lm_session_eval(s, ids, DECODE_PROMPT, logits, NULL) != LM_OK) {
        cli_error("warm-up eval failed: %s", lm_session_errmsg(s));
        goto done;
    }
    lm_session_free(s);
    s = NULL;

    for (size_t k = 0; k < n_lens; k++) {
        size_t p = (size_t)lens[k];
        for (int32_t r = 0; r < reps; r++) {
            /* TTFT: the prompt plus the first decode step, as a user waits for it. */
            if (!open_session(engine, default_ctx, p + 1, &s)) goto done;
            double t0 = cli_now_ms();
            if (lm_session_eval(s, ids, p, logits, NULL) != LM_OK) {
                cli_error("prefill of %zu tokens failed: %s", p, lm_session_errmsg(s));
                goto done;
            }
            double t1 = cli_now_ms();
            lm_token next = ids[0];
            if (lm_session_eval(s, &next, 1, logits, NULL) != LM_OK) {
                cli_error("decode after %zu tokens failed: %s", p, lm_session_errmsg(s));
                goto done;
            }
            double t2 = cli_now_ms();
            lm_session_free(s);
            s = NULL;
            samples[r] = (double)p * 1000.0 / (t1 - t0 > 1e-6 ? t1 - t0 : 1e-6);
            samples2[r] = t2 - t0;
        }
        prefill_tok_s[k] = median(samples, (size_t)reps);
        ttft_ms[k] = median(samples2, (size_t)reps);
    }

    if (n_gen > 0) {
        for (int32_t r = 0; r < reps; r++) {
            if (!open_session(engine, default_ctx, DECODE_PROMPT + (size_t)n_gen, &s)) goto done;
            if (lm_session_eval(s, ids, DECODE_PROMPT, logits, NULL) != LM_OK) {
                cli_error("decode prompt failed: %s", lm_session_errmsg(s));
                goto done;
            }
            uint64_t state = SEED + 1 + (uint64_t)r;
            double t0 = cli_now_ms();
            for (int32_t g = 0; g < n_gen; g++) {
                /* A fixed pseudo-random id, not the argmax: decode speed must not depend on
                 * what the model predicts. */
                lm_token next = ids[next_u64(&state) % DECODE_PROMPT];
                if (lm_session_eval(s, &next, 1, logits, NULL) != LM_OK) {
                    cli_error("decode step %ld failed: %s", (long)g, lm_session_errmsg(s));
                    goto done;
                }
            }
            double t1 = cli_now_ms();
            lm_session_free(s);
            s = NULL;
            samples[r] = (double)n_gen * 1000.0 / (t1 - t0 > 1e-6 ? t1 - t0 : 1e-6);
        }
        decode_tok_s = median(samples, (size_t)reps);
    }

    double conv[4] = {0, 0, 0, 0}; /* turn 1, turn 5, full re-prefill, after partial prefill */
    if (conversation) {
        if (!time_conversation(engine, ids, reps, conv)) goto done;
    }
    double rss = peak_rss_mb();
    if (json) {
        fputs("{\"model\":", stdout);
        cli_json_string(stdout, model_path);
        printf(",\"threads\":%ld,\"prefill\":[", (long)mi.n_threads);
        for (size_t k = 0; k < n_lens; k++)
            printf("%s{\"tokens\":%ld,\"tok_s\":%.3f,\"ttft_ms\":%.3f}", k ? "," : "",
                   (long)lens[k], prefill_tok_s[k], ttft_ms[k]);
        printf("],\"decode\":{\"tokens\":%ld,\"tok_s\":%.3f},\"load_ms\":%.3f,"
               "\"peak_rss_mb\":%.1f",
               (long)n_gen, decode_tok_s, load_ms, rss);
        if (conversation)
            printf(",\"conversation\":{\"turn1_ttft_ms\":%.3f,\"turn5_ttft_ms\":%.3f,"
                   "\"full_reprefill_ttft_ms\":%.3f,\"partial_ttft_ms\":%.3f}",
                   conv[0], conv[1], conv[2], conv[3]);
        fputs("}\n", stdout);
    } else {
        printf("model: %s (%s, %s kernels)\n", model_path, mi.arch ? mi.arch : "?",
               mi.kernels ? mi.kernels : "?");
        printf("threads: %ld, reps: %ld, load: %.1f ms, peak RSS: %.1f MB\n\n",
               (long)mi.n_threads, (long)reps, load_ms, rss);
        printf("%-8s %8s %12s %10s\n", "test", "tokens", "tok/s", "ttft ms");
        for (size_t k = 0; k < n_lens; k++)
            printf("%-8s %8ld %12.1f %10.2f\n", "prefill", (long)lens[k], prefill_tok_s[k],
                   ttft_ms[k]);
        if (n_gen > 0) printf("%-8s %8ld %12.1f %10s\n", "decode", (long)n_gen, decode_tok_s, "-");
        if (conversation) {
            printf("\nconversation (TTFT = new tokens' prefill + one decode step):\n");
            printf("  turn 1, 500-token system + 30:          %9.2f ms\n", conv[0]);
            printf("  turn 5, 1000 cached + 30 new:           %9.2f ms\n", conv[1]);
            printf("  turn 5 without reuse (1030 prefilled):  %9.2f ms\n", conv[2]);
            printf("  after partial prefill (5 new):          %9.2f ms\n", conv[3]);
        }
    }
    rc = CLI_EXIT_OK;

done:
    lm_session_free(s);
    lm_engine_free(engine);
    lm_model_free(model);
    free(default_path);
    free(ids);
    free(logits);
    free(samples);
    free(samples2);
    free(prefill_tok_s);
    free(ttft_ms);
    free(lens);
    free(par);
    return rc;

usage:
    free(lens);
    free(par);
    return CLI_EXIT_USAGE;
}
