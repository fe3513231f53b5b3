/* bench/grammar_bench.c: the cost of structured output.
 *
 *   grammar_bench compile TOKENIZER_DIR [-r REPS]
 *       The grammar of a tool call to one of 10 tools (chat_tool_grammar, Hermes, any tool,
 *       parallel calls; the tools have strings, enums, integers, numbers, booleans, arrays,
 *       a nested object and optional parameters): median ms of the tools JSON -> grammar text,
 *       the text -> compiled grammar, and the matcher's set-up on the vocabulary (its first
 *       state); plus the one-time byte trie of the vocabulary (first use per tokenizer).
 *   grammar_bench sampler TOKENIZER_DIR SCHEMA_FILE [-n TOKENS] [-r REPS] [--logits N]
 *       smp_sample alone on logits shaped like the model's (N floats, default the vocabulary's
 *       size; Qwen2.5's are padded to 151,936; seeded random) over
 *       the tokenizer's vocabulary: us per token unconstrained and with the schema, greedy and
 *       with the default sampling chain (temperature 0.8, top-k 40, top-p 0.95, min-p 0.05), and
 *       the slowest single step (a state's first mask). Each rep is a fresh sampler, so the mask
 *       caches start empty every time (set-up is counted in the mean).
 *   grammar_bench decode MODEL SCHEMA_FILE [-n TOKENS] [-r REPS] [-t THREADS] [--temp T]
 *       End to end: lm_session_complete on MODEL, unconstrained (ignore_eos, so all TOKENS are
 *       decoded) and with the schema, alternating, REPS each; median decode tok/s and mean
 *       tokens of each (the schema's reply ends where its JSON does, or at TOKENS).
 *
 * One JSON object per line. Built against the library by bench/grammar.sh; never part of it. */
#include "chat/chat.h"
#include "sample/sample.h"
#include "tokenizer/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static const char TOOLS10[] =
    "["
    "{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"Current weather in a city.\","
    "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\",\"description\":\"City name\"},"
    "\"unit\":{\"type\":\"string\",\"enum\":[\"celsius\",\"fahrenheit\"]}},\"required\":[\"city\"]}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"get_time\",\"parameters\":{\"type\":\"object\",\"properties\":"
    "{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"set_timer\",\"parameters\":{\"type\":\"object\",\"properties\":"
    "{\"minutes\":{\"type\":\"integer\"},\"seconds\":{\"type\":\"integer\"},\"label\":{\"type\":\"string\"}},"
    "\"required\":[\"minutes\"]}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"set_lights\",\"parameters\":{\"type\":\"object\",\"properties\":"
    "{\"room\":{\"type\":\"string\",\"enum\":[\"kitchen\",\"living room\",\"bedroom\",\"bathroom\",\"hall\"]},"
    "\"on\":{\"type\":\"boolean\"},\"brightness\":{\"type\":\"number\"},\"color\":{\"type\":\"string\"}},"
    "\"required\":[\"room\",\"on\"],\"additionalProperties\":false}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"play_music\",\"parameters\":{\"type\":\"object\",\"properties\":"
    "{\"query\":{\"type\":\"string\"},\"shuffle\":{\"type\":\"boolean\"},\"volume\":{\"type\":\"integer\"}},"
    "\"required\":[\"query\"]}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"add_reminder\",\"parameters\":{\"type\":\"object\",\"properties\":"
    "{\"text\":{\"type\":\"string\"},\"when\":{\"type\":\"object\",\"properties\":{\"date\":{\"type\":\"string\"},"
    "\"time\":{\"type\":\"string\"}},\"required\":[\"date\"]},\"repeat\":{\"type\":[\"string\",\"null\"]}},"
    "\"required\":[\"text\",\"when\"]}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"send_message\",\"parameters\":{\"type\":\"object\",\"properties\":"
    "{\"to\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"minItems\":1,\"maxItems\":10},"
    "\"body\":{\"type\":\"string\"}},\"required\":[\"to\",\"body\"]}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"convert_units\",\"parameters\":{\"type\":\"object\",\"properties\":"
    "{\"value\":{\"type\":\"number\"},\"from\":{\"type\":\"string\"},\"to\":{\"type\":\"string\"}},"
    "\"required\":[\"value\",\"from\",\"to\"]}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"search_web\",\"parameters\":{\"type\":\"object\",\"properties\":"
    "{\"query\":{\"type\":\"string\"},\"max_results\":{\"type\":\"integer\"},\"safe\":{\"type\":\"boolean\"}},"
    "\"required\":[\"query\"]}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"get_calendar\",\"parameters\":{\"type\":\"object\",\"properties\":"
    "{\"day\":{\"type\":\"string\",\"enum\":[\"today\",\"tomorrow\",\"monday\",\"tuesday\",\"wednesday\",\"thursday\","
    "\"friday\",\"saturday\",\"sunday\"]},\"include_all_day\":{\"type\":\"boolean\"}},\"required\":[\"day\"]}}}"
    "]";

static int bench_compile(const char *tokdir, int reps) {
    tok_tokenizer *t = NULL;
    lm_error err = {0};
    if (tok_load_dir(tokdir, &t, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    double t0 = lm_time_ms();
    const tok_trie *tr = tok_get_trie(t);
    double trie_ms = lm_time_ms() - t0;
    if (!tr) return 1;
    lm_token eos = tok_eos(t);
    double *a = malloc((size_t)reps * sizeof *a), *b = malloc((size_t)reps * sizeof *b),
           *c = malloc((size_t)reps * sizeof *c), *d = malloc((size_t)reps * sizeof *d);
    size_t glen = 0;
    for (int r = 0; r < reps; r++) {
        lm_buf g = {0};
        double s0 = lm_time_ms();
        if (chat_tool_grammar(TOOLS10, CHAT_TOOLS_HERMES, NULL, true, &g, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        double s1 = lm_time_ms();
        smp_grammar *gr = NULL;
        if (smp_grammar_compile(g.data, g.len, &gr, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        double s2 = lm_time_ms();
        smp_matcher *m = NULL;
        if (smp_matcher_new(gr, t, &eos, 1, (size_t)tok_n_vocab(t), &m, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        double s3 = lm_time_ms();
        uint32_t na;
        smp_matcher_mask(m, &na); /* the first step's mask, also paid once per request */
        double s4 = lm_time_ms();
        a[r] = s1 - s0;
        b[r] = s2 - s1;
        c[r] = s3 - s2;
        d[r] = s4 - s3;
        glen = g.len;
        smp_matcher_free(m);
        smp_grammar_free(gr);
        lm_buf_free(&g);
    }
    double ta = median(a, reps), tb = median(b, reps), tc = median(c, reps), td = median(d, reps);
    printf("{\"what\":\"compile\",\"tools\":10,\"grammar_bytes\":%zu,\"tools_to_grammar_ms\":%.3f,"
           "\"grammar_compile_ms\":%.3f,\"matcher_init_ms\":%.3f,\"first_mask_ms\":%.3f,\"total_ms\":%.3f,"
           "\"trie_first_use_ms\":%.1f,\"trie_nodes\":%u,\"n_vocab\":%d,\"reps\":%d}\n",
           glen, ta, tb, tc, td, ta + tb + tc + td, trie_ms, tr->n_nodes, tok_n_vocab(t), reps);
    free(a);
    free(b);
    free(c);
    free(d);
    tok_free(t);
    return 0;
}

/* Logits shaped like a model's: seeded normal-ish values with a few strong candidates. */
static void fill_logits(float *l, size_t n, lm_rng *r) {
    for (size_t i = 0; i < n; i++) {
        double u = lm_rng_uniform(r) + lm_rng_uniform(r) + lm_rng_uniform(r) - 1.5;
        l[i] = (float)(u * 2.0);
    }
    for (int k = 0; k < 8; k++) l[lm_rng_next(r) % n] += 8.0f;
}

static int bench_sampler(const char *tokdir, const char *schema_path, int n_tok, int reps, int n_logits) {
    tok_tokenizer *t = NULL;
    lm_error err = {0};
    if (tok_load_dir(tokdir, &t, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    char *schema = NULL;
    size_t slen;
    if (lm_read_text(schema_path, &schema, &slen, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    tok_get_trie(t); /* built once per process; not part of a request */
    lm_token eos = tok_eos(t);
    size_t nv = (size_t)tok_n_vocab(t); /* a model's logits may be padded past it (Qwen2.5: 151,936) */
    if (n_logits > 0 && (size_t)n_logits > nv) nv = (size_t)n_logits;
    smp_vocab v = {t, &eos, 1};
    float *logits = malloc(nv * sizeof *logits);
    lm_token *hist = malloc((size_t)n_tok * sizeof *hist);
    for (int greedy = 1; greedy >= 0; greedy--) {
        double us[2][64], worst[2] = {0, 0};
        int toks[2] = {0, 0};
        for (int r = 0; r < reps && r < 64; r++) {
            for (int constrained = 0; constrained < 2; constrained++) {
                lm_gen_params p = lm_gen_default_params();
                if (greedy) p.temperature = 0;
                p.seed = (uint64_t)r + 1;
                if (constrained) p.json_schema = schema;
                smp_sampler s;
                double t0 = lm_time_ms();
                if (smp_init(&s, &p, nv, &v, &err)) {
                    fprintf(stderr, "%s\n", err.msg);
                    return 1;
                }
                lm_rng rng;
                lm_rng_seed(&rng, (uint64_t)r * 7 + 3);
                double spent = lm_time_ms() - t0; /* set-up counts too */
                int n = 0;
                for (; n < n_tok; n++) {
                    fill_logits(logits, nv, &rng);
                    logits[eos] = -10.0f; /* keep going: the reply ends where the grammar does */
                    double a = lm_time_ms();
                    lm_token id = smp_sample(&s, logits, hist, (size_t)n);
                    double d = lm_time_ms() - a;
                    spent += d;
                    if (d > worst[constrained]) worst[constrained] = d;
                    if (id < 0 || id == eos) break;
                    hist[n] = id;
                }
                smp_free(&s);
                us[constrained][r] = n ? spent * 1000.0 / n : 0;
                toks[constrained] += n;
            }
        }
        int rr = reps < 64 ? reps : 64;
        double u0 = median(us[0], rr), u1 = median(us[1], rr);
        printf("{\"what\":\"sampler\",\"sampling\":\"%s\",\"n_vocab\":%zu,\"us_per_token_free\":%.1f,"
               "\"us_per_token_schema\":%.1f,\"extra_us\":%.1f,\"worst_step_us_free\":%.0f,\"worst_step_us_schema\":%.0f,"
               "\"tokens_free\":%d,\"tokens_schema\":%d,\"reps\":%d}\n",
               greedy ? "greedy" : "default chain", nv, u0, u1, u1 - u0, worst[0] * 1000.0, worst[1] * 1000.0, toks[0],
               toks[1], rr);
    }
    free(logits);
    free(hist);
    lm_free(schema);
    tok_free(t);
    return 0;
}

static int bench_decode(const char *model_path, const char *schema_path, int n_tok, int reps, int threads,
                        float temp) {
    lm_error err = {0};
    char *schema = NULL;
    size_t slen;
    if (lm_read_text(schema_path, &schema, &slen, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    lm_model_params mp = lm_model_default_params();
    mp.n_threads = threads;
    lm_model *m = NULL;
    if (lm_model_load(model_path, &mp, &m, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    lm_engine *eng = NULL;
    if (lm_engine_new(m, NULL, &eng, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    lm_session *s = NULL;
    if (lm_session_new(eng, NULL, &s, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    static const char PROMPT[] = "Answer with a JSON object describing the weather in three cities.\n";
    double tps[2][64];
    int toks[2][64];
    for (int r = 0; r < reps && r < 64; r++) {
        for (int constrained = 0; constrained < 2; constrained++) {
            lm_gen_params gp = lm_gen_default_params();
            gp.max_tokens = n_tok;
            gp.temperature = temp;
            gp.seed = (uint64_t)r + 1;
            /* free text runs the full N tokens; the schema's reply ends where its JSON does */
            if (constrained) gp.json_schema = schema;
            else gp.ignore_eos = true;
            lm_session_truncate(s, 0);
            lm_gen_stats st;
            if (lm_session_complete(s, PROMPT, sizeof PROMPT - 1, &gp, NULL, NULL, &st)) {
                fprintf(stderr, "%s\n", lm_session_errmsg(s));
                return 1;
            }
            tps[constrained][r] = st.decode_tok_s;
            toks[constrained][r] = st.n_generated;
        }
    }
    int rr = reps < 64 ? reps : 64;
    double t0 = median(tps[0], rr), t1 = median(tps[1], rr);
    int k0 = 0, k1 = 0;
    for (int r = 0; r < rr; r++) {
        k0 += toks[0][r];
        k1 += toks[1][r];
    }
    lm_model_info info;
    lm_model_get_info(m, &info);
    printf("{\"what\":\"decode\",\"model\":\"%s\",\"n_vocab\":%d,\"threads\":%d,\"temperature\":%g,"
           "\"tok_s_free\":%.1f,\"tok_s_schema\":%.1f,\"slower_pct\":%.1f,\"mean_tokens_free\":%.1f,"
           "\"mean_tokens_schema\":%.1f,\"reps\":%d}\n",
           model_path, info.n_vocab, info.n_threads, (double)temp, t0, t1, 100.0 * (1.0 - t1 / t0),
           (double)k0 / rr, (double)k1 / rr, rr);
    lm_session_free(s);
    lm_engine_free(eng);
    lm_model_free(m);
    lm_free(schema);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: grammar_bench compile TOKENIZER_DIR [-r N] | sampler TOKENIZER_DIR SCHEMA [-n N] [-r N] [--logits N] |"
                        " decode MODEL SCHEMA [-n N] [-r N] [-t N] [--temp T]\n");
        return 2;
    }
    int reps = 5, n_tok = 128, threads = 0, n_logits = 0;
    float temp = 0;
    for (int i = 3; i < argc; i++) {
        if (strcmp(argv[i], "-r") == 0 && i + 1 < argc) reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "-n") == 0 && i + 1 < argc) n_tok = atoi(argv[++i]);
        else if (strcmp(argv[i], "-t") == 0 && i + 1 < argc) threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--logits") == 0 && i + 1 < argc) n_logits = atoi(argv[++i]);
        else if (strcmp(argv[i], "--temp") == 0 && i + 1 < argc) temp = (float)atof(argv[++i]);
    }
    if (strcmp(argv[1], "compile") == 0) return bench_compile(argv[2], reps);
    if (argc < 4) return 2;
    if (strcmp(argv[1], "sampler") == 0) return bench_sampler(argv[2], argv[3], n_tok, reps, n_logits);
    if (strcmp(argv[1], "decode") == 0) return bench_decode(argv[2], argv[3], n_tok, reps, threads, temp);
    return 2;
}
