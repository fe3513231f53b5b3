/* cli/bench.c: `locallm bench`, measure prefill and decode speed of a model.
 * Owns: the options of bench, the seeded prompt ids, the timed runs (median over repetitions),
 * peak RSS and the JSON shape scripts read:
 *   {"model":..,"threads":N,"prefill":[{"tokens":P,"tok_s":x,"ttft_ms":y},..],
 *    "decode":{"tokens":N,"after":A,"tok_s":z},"load_ms":..,"peak_rss_mb":..} */
#include "cli/cli.h"

#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

enum { O_PROMPT_LENS = CLI_O_OWN, O_N_GEN, O_REPS, O_CONVERSATION, O_PARALLEL, O_PROMPT_TOKENS, O_LONG_PROMPT,
       O_DECODE_AFTER };

static const cli_option BENCH_OPTIONS[] = {
    {O_PROMPT_LENS, "-p|--prompt-lens", "LIST", "prompt lengths to prefill (default 128,512)"},
    {O_N_GEN, "-n|--n-gen", "N", "tokens to decode, one at a time (default 64; 0 skips decode)"},
    {O_DECODE_AFTER, "--decode-after", "N",
     "time decode after an N-token prompt (default 8; the longest -p\n"
     "length measures decode at that context)"},
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

/* Decode runs after a prompt this long by default, so attention has something to look at. */
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
    float *logits = malloc((size_t)lm_model_n_vocab(lm_engine_model(engine)) * sizeof *logits);
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

typedef struct bench_opts {
    const char *model_path;
    int32_t *lens; /* prompt lengths (malloc'd) */
    size_t n_lens;
    int32_t n_gen, n_threads, reps, n_prompt_tokens, long_prompt, n_ctx;
    int32_t decode_after; /* decode is timed after a prompt this long */
    int32_t *par; /* --parallel N[,N...] (malloc'd), NULL without */
    size_t n_par;
    bool json, conversation;
} bench_opts;

/* Options into *o; -1 to go on, else the exit code (o's lists freed). */
static int parse_opts(int argc, char **argv, bench_opts *o) {
    const char *cmd = "bench";
    *o = (bench_opts){.n_gen = 64, .reps = 3, .n_prompt_tokens = 32, .decode_after = DECODE_PROMPT};
    cli_args a;
    cli_args_init(&a, &BENCH_CMD, argc, argv);
    int rc = -1;
    for (int id; rc < 0 && (id = cli_args_step(&a, &o->model_path, &rc)) != CLI_ARGS_END;) {
        bool ok = true;
        switch (id) {
        case CLI_O_JSON: o->json = true; break;
        case O_CONVERSATION: o->conversation = true; break;
        case CLI_O_FORCE: cli_set_force(true); break;
        case O_PROMPT_LENS:
            free(o->lens);
            o->lens = NULL;
            ok = cli_parse_i32_list(cmd, a.opt, a.val, 1, 1 << 20, &o->lens, &o->n_lens);
            break;
        case O_N_GEN: ok = cli_args_i32(&a, 0, 1 << 20, &o->n_gen); break;
        case O_DECODE_AFTER: ok = cli_args_i32(&a, 1, 1 << 20, &o->decode_after); break;
        case O_PARALLEL:
            free(o->par);
            o->par = NULL;
            ok = cli_parse_i32_list(cmd, a.opt, a.val, 1, 1024, &o->par, &o->n_par);
            break;
        case O_PROMPT_TOKENS: ok = cli_args_i32(&a, 1, 1 << 20, &o->n_prompt_tokens); break;
        case O_LONG_PROMPT: ok = cli_args_i32(&a, 1, 1 << 20, &o->long_prompt); break;
        case CLI_O_CTX: ok = cli_args_i32(&a, 1, 1 << 22, &o->n_ctx); break;
        case CLI_O_THREADS: ok = cli_args_i32(&a, 0, 1024, &o->n_threads); break;
        case O_REPS: ok = cli_args_i32(&a, 1, 1000, &o->reps); break;
        }
        if (!ok) rc = CLI_EXIT_USAGE;
    }
    if (rc < 0 && !o->lens) {
        static const int32_t DEFAULT_LENS[] = {128, 512};
        o->n_lens = 2;
        o->lens = malloc(sizeof DEFAULT_LENS);
        if (!o->lens) rc = cli_error("out of memory");
        else memcpy(o->lens, DEFAULT_LENS, sizeof DEFAULT_LENS);
    }
    if (rc >= 0) {
        free(o->lens);
        free(o->par);
        o->lens = o->par = NULL;
    }
    return rc;
}

/* What one run measured. */
typedef struct bench_result {
    double *prefill_tok_s, *ttft_ms; /* one per prompt length */
    double decode_tok_s, load_ms;
    double conv[4]; /* turn 1, turn 5, full re-prefill, after partial prefill */
} bench_result;

/* Scratch shared by the timed parts: the prompt ids, a logits row and reps samples twice. */
typedef struct bench_scratch {
    lm_engine *engine;
    int32_t default_ctx;
    lm_token *ids;
    float *logits;
    double *samples, *samples2;
} bench_scratch;

/* Prefill speed and TTFT (the prompt plus the first decode step, as a user waits for it) of each
 * prompt length, each the median of reps fresh sessions. */
static bool time_prefill(const bench_opts *o, bench_scratch *w, bench_result *res) {
    for (size_t k = 0; k < o->n_lens; k++) {
        size_t p = (size_t)o->lens[k];
        for (int32_t r = 0; r < o->reps; r++) {
            lm_session *s = NULL;
            if (!open_session(w->engine, w->default_ctx, p + 1, &s)) return false;
            double t0 = cli_now_ms();
            bool ok = lm_session_eval(s, w->ids, p, w->logits, NULL) == LM_OK;
            if (!ok) cli_error("prefill of %zu tokens failed: %s", p, lm_session_errmsg(s));
            double t1 = cli_now_ms();
            lm_token next = w->ids[0];
            if (ok && !(ok = lm_session_eval(s, &next, 1, w->logits, NULL) == LM_OK))
                cli_error("decode after %zu tokens failed: %s", p, lm_session_errmsg(s));
            double t2 = cli_now_ms();
            lm_session_free(s);
            if (!ok) return false;
            w->samples[r] = (double)p * 1000.0 / (t1 - t0 > 1e-6 ? t1 - t0 : 1e-6);
            w->samples2[r] = t2 - t0;
        }
        res->prefill_tok_s[k] = median(w->samples, (size_t)o->reps);
        res->ttft_ms[k] = median(w->samples2, (size_t)o->reps);
    }
    return true;
}

/* Decode speed: n_gen steps after a decode_after-token prompt, the median of reps sessions. */
static bool time_decode(const bench_opts *o, bench_scratch *w, bench_result *res) {
    size_t after = (size_t)o->decode_after;
    for (int32_t r = 0; r < o->reps; r++) {
        lm_session *s = NULL;
        if (!open_session(w->engine, w->default_ctx, after + (size_t)o->n_gen, &s)) return false;
        bool ok = lm_session_eval(s, w->ids, after, w->logits, NULL) == LM_OK;
        if (!ok) cli_error("decode prompt failed: %s", lm_session_errmsg(s));
        uint64_t state = SEED + 1 + (uint64_t)r;
        double t0 = cli_now_ms();
        for (int32_t g = 0; ok && g < o->n_gen; g++) {
            /* A fixed pseudo-random id, not the argmax: decode speed must not depend on
             * what the model predicts. */
            lm_token next = w->ids[next_u64(&state) % DECODE_PROMPT];
            if (!(ok = lm_session_eval(s, &next, 1, w->logits, NULL) == LM_OK))
                cli_error("decode step %ld failed: %s", (long)g, lm_session_errmsg(s));
        }
        double t1 = cli_now_ms();
        lm_session_free(s);
        if (!ok) return false;
        w->samples[r] = (double)o->n_gen * 1000.0 / (t1 - t0 > 1e-6 ? t1 - t0 : 1e-6);
    }
    res->decode_tok_s = median(w->samples, (size_t)o->reps);
    return true;
}

static void print_results(const bench_opts *o, const lm_model_info *mi, const bench_result *res) {
    double rss = peak_rss_mb();
    if (o->json) {
        fputs("{\"model\":", stdout);
        cli_json_string(stdout, o->model_path);
        printf(",\"threads\":%ld,\"prefill\":[", (long)mi->n_threads);
        for (size_t k = 0; k < o->n_lens; k++)
            printf("%s{\"tokens\":%ld,\"tok_s\":%.3f,\"ttft_ms\":%.3f}", k ? "," : "",
                   (long)o->lens[k], res->prefill_tok_s[k], res->ttft_ms[k]);
        printf("],\"decode\":{\"tokens\":%ld,\"after\":%ld,\"tok_s\":%.3f},\"load_ms\":%.3f,"
               "\"peak_rss_mb\":%.1f",
               (long)o->n_gen, (long)o->decode_after, res->decode_tok_s, res->load_ms, rss);
        if (o->conversation)
            printf(",\"conversation\":{\"turn1_ttft_ms\":%.3f,\"turn5_ttft_ms\":%.3f,"
                   "\"full_reprefill_ttft_ms\":%.3f,\"partial_ttft_ms\":%.3f}",
                   res->conv[0], res->conv[1], res->conv[2], res->conv[3]);
        fputs("}\n", stdout);
        return;
    }
    printf("model: %s (%s, %s kernels)\n", o->model_path, mi->arch ? mi->arch : "?",
           mi->kernels ? mi->kernels : "?");
    printf("threads: %ld, reps: %ld, load: %.1f ms, peak RSS: %.1f MB\n\n",
           (long)mi->n_threads, (long)o->reps, res->load_ms, rss);
    printf("%-8s %8s %12s %10s\n", "test", "tokens", "tok/s", "ttft ms");
    for (size_t k = 0; k < o->n_lens; k++)
        printf("%-8s %8ld %12.1f %10.2f\n", "prefill", (long)o->lens[k], res->prefill_tok_s[k],
               res->ttft_ms[k]);
    if (o->n_gen > 0)
        printf("%-8s %8ld %12.1f %10s   (after a %ld-token prompt)\n", "decode", (long)o->n_gen,
               res->decode_tok_s, "-", (long)o->decode_after);
    if (o->conversation) {
        printf("\nconversation (TTFT = new tokens' prefill + one decode step):\n");
        printf("  turn 1, 500-token system + 30:          %9.2f ms\n", res->conv[0]);
        printf("  turn 5, 1000 cached + 30 new:           %9.2f ms\n", res->conv[1]);
        printf("  turn 5 without reuse (1030 prefilled):  %9.2f ms\n", res->conv[2]);
        printf("  after partial prefill (5 new):          %9.2f ms\n", res->conv[3]);
    }
}

/* The single-stream figures on a loaded model: warm-up, prefill, decode, conversation. */
static int bench_single(const bench_opts *o, lm_model *model, double load_ms) {
    int rc = CLI_EXIT_ERROR;
    bench_scratch w = {0};
    bench_result res = {.load_ms = load_ms};
    lm_session *s = NULL;
    if (!cli_engine_new(model, &w.engine)) return rc;
    lm_model_info mi;
    memset(&mi, 0, sizeof mi);
    lm_model_get_info(model, &mi);
    int32_t n_vocab = lm_model_n_vocab(model);
    w.default_ctx = mi.n_ctx_train > 0 && mi.n_ctx_train < 4096 ? mi.n_ctx_train : 4096;

    size_t max_len = o->conversation ? 1040 : DECODE_PROMPT;
    if ((size_t)o->decode_after > max_len) max_len = (size_t)o->decode_after;
    for (size_t k = 0; k < o->n_lens; k++)
        if ((size_t)o->lens[k] > max_len) max_len = (size_t)o->lens[k];
    w.ids = malloc(max_len * sizeof *w.ids);
    w.logits = malloc((size_t)(n_vocab > 0 ? n_vocab : 1) * sizeof *w.logits);
    w.samples = malloc((size_t)o->reps * sizeof *w.samples);
    w.samples2 = malloc((size_t)o->reps * sizeof *w.samples2);
    res.prefill_tok_s = calloc(o->n_lens, sizeof *res.prefill_tok_s);
    res.ttft_ms = calloc(o->n_lens, sizeof *res.ttft_ms);
    if (!w.ids || !w.logits || !w.samples || !w.samples2 || !res.prefill_tok_s || !res.ttft_ms) {
        cli_error("out of memory");
        goto done;
    }
    fill_ids(w.ids, max_len, n_vocab, SEED);

    /* One untimed pass first: touches the mapped weights and warms the thread pool. */
    if (!open_session(w.engine, w.default_ctx, DECODE_PROMPT, &s)) goto done;
    if (lm_session_eval(s, w.ids, DECODE_PROMPT, w.logits, NULL) != LM_OK) {
        cli_error("warm-up eval failed: %s", lm_session_errmsg(s));
        goto done;
    }
    lm_session_free(s);
    s = NULL;
    if (!time_prefill(o, &w, &res)) goto done;
    if (o->n_gen > 0 && !time_decode(o, &w, &res)) goto done;
    if (o->conversation && !time_conversation(w.engine, w.ids, o->reps, res.conv)) goto done;
    print_results(o, &mi, &res);
    rc = CLI_EXIT_OK;
done:
    lm_session_free(s);
    lm_engine_free(w.engine);
    free(w.ids);
    free(w.logits);
    free(w.samples);
    free(w.samples2);
    free(res.prefill_tok_s);
    free(res.ttft_ms);
    return rc;
}

int cli_bench(int argc, char **argv) {
    bench_opts o;
    int rc = parse_opts(argc, argv, &o);
    if (rc >= 0) return rc;
    rc = CLI_EXIT_ERROR;
    char *default_path = NULL;
    lm_model *model = NULL;
    double load_ms = 0;
    if (!o.model_path && !(o.model_path = default_path = cli_default_model())) cli_error("out of memory");
    else if (cli_load_model(o.model_path, o.n_threads, &model, &load_ms)) {
        if (o.par && o.long_prompt)
            rc = cli_bench_long_prompt(model, o.model_path, o.par[0], o.long_prompt, o.n_ctx, o.json);
        else if (o.par)
            rc = cli_bench_parallel(model, o.model_path, o.par, o.n_par, o.n_prompt_tokens,
                                    o.n_gen > 0 ? o.n_gen : 1, o.reps, o.json);
        else
            rc = bench_single(&o, model, load_ms);
    }
    lm_model_free(model);
    free(default_path);
    free(o.lens);
    free(o.par);
    return rc;
}
