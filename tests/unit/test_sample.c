/* tests/unit/test_sample.c: the sampler chain against hand-computed distributions on fixed
 * logits, determinism of seeds, penalties, the stop-string matcher with stop strings split at
 * every position, and structured output through the sampler (the grammar mask before the
 * softmax, whole matches from random logits, errors from smp_init). */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>

#include "sample/sample.h"
#include "tokenizer/tokenizer.h"

static lm_gen_params base(void) {
    lm_gen_params p = lm_gen_default_params();
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.temperature = 1.0f;
    p.repeat_penalty = 1.0f;
    return p;
}

/* Empirical frequencies of many draws match softmax(logits / T) restricted as the filters say. */
static void draw(lm_gen_params p, const float *logits, size_t n, double *freq, int draws) {
    smp_sampler s;
    assert_int_equal(smp_init(&s, &p, n, NULL, NULL), LM_OK);
    float tmp[8];
    for (size_t i = 0; i < n; i++) freq[i] = 0;
    for (int d = 0; d < draws; d++) {
        memcpy(tmp, logits, n * sizeof(float));
        lm_token t = smp_sample(&s, tmp, NULL, 0);
        assert_true(t >= 0 && (size_t)t < n);
        freq[t] += 1.0 / draws;
    }
    smp_free(&s);
}

static void test_distributions(void **state) {
    (void)state;
    const float logits[4] = {2.0f, 1.0f, 0.0f, -1.0f};
    double f[4];
    /* plain softmax at T=1: e^2, e^1, e^0, e^-1 normalised */
    double z = exp(2) + exp(1) + 1 + exp(-1);
    double want[4] = {exp(2) / z, exp(1) / z, 1 / z, exp(-1) / z};
    draw(base(), logits, 4, f, 200000);
    for (int i = 0; i < 4; i++) assert_true(fabs(f[i] - want[i]) < 0.005);
    /* temperature 0.5 sharpens: logits doubled */
    lm_gen_params p = base();
    p.temperature = 0.5f;
    z = exp(4) + exp(2) + 1 + exp(-2);
    draw(p, logits, 4, f, 200000);
    assert_true(fabs(f[0] - exp(4) / z) < 0.005);
    /* top-k 2 keeps the two best, renormalised */
    p = base();
    p.top_k = 2;
    draw(p, logits, 4, f, 100000);
    assert_true(fabs(f[0] - exp(2) / (exp(2) + exp(1))) < 0.006);
    assert_true(f[2] == 0 && f[3] == 0);
    /* top-p 0.8: p0 = 0.644 < 0.8, p0+p1 = 0.881 >= 0.8: two kept */
    p = base();
    p.top_p = 0.8f;
    draw(p, logits, 4, f, 100000);
    assert_true(f[2] == 0 && f[3] == 0 && f[1] > 0.2);
    /* min-p 0.3: keeps p >= 0.3 * 0.644 = 0.193 -> ids 0 and 1 (0.237) */
    p = base();
    p.min_p = 0.3f;
    draw(p, logits, 4, f, 100000);
    assert_true(f[2] == 0 && f[3] == 0 && f[1] > 0.2);
    /* temperature 0 is greedy */
    p = base();
    p.temperature = 0;
    draw(p, logits, 4, f, 100);
    assert_true(fabs(f[0] - 1.0) < 1e-9);
}

static void test_seed_determinism(void **state) {
    (void)state;
    float logits[8];
    tu_rand_floats(logits, 8, 7);
    lm_gen_params p = base();
    p.seed = 42;
    lm_token a[64], b[64];
    for (int run = 0; run < 2; run++) {
        smp_sampler s;
        assert_int_equal(smp_init(&s, &p, 8, NULL, NULL), LM_OK);
        for (int i = 0; i < 64; i++) {
            float tmp[8];
            memcpy(tmp, logits, sizeof tmp);
            (run ? b : a)[i] = smp_sample(&s, tmp, NULL, 0);
        }
        smp_free(&s);
    }
    assert_memory_equal(a, b, sizeof a);
}

static void test_penalties(void **state) {
    (void)state;
    lm_gen_params p = base();
    p.temperature = 0;
    p.repeat_penalty = 2.0f;
    smp_sampler s;
    assert_int_equal(smp_init(&s, &p, 4, NULL, NULL), LM_OK);
    float l[4] = {3.0f, 2.0f, -1.0f, 0.5f};
    lm_token hist[] = {0};
    /* 3/2 = 1.5 < 2: id 1 wins */
    assert_int_equal(smp_sample(&s, l, hist, 1), 1);
    assert_true(fabsf(l[0] - 1.5f) < 1e-6f);
    smp_free(&s);
    p.repeat_penalty = 1.0f;
    p.presence_penalty = 0.5f;
    p.frequency_penalty = 0.25f;
    assert_int_equal(smp_init(&s, &p, 4, NULL, NULL), LM_OK);
    float l2[4] = {3.0f, 2.0f, -1.0f, 0.5f};
    lm_token hist2[] = {0, 0, 0, 0};
    /* 3 - 4*0.25 - 0.5 = 1.5 */
    assert_int_equal(smp_sample(&s, l2, hist2, 4), 1);
    assert_true(fabsf(l2[0] - 1.5f) < 1e-6f);
    /* the window: only the last token counts */
    smp_free(&s);
    p.penalty_last_n = 1;
    assert_int_equal(smp_init(&s, &p, 4, NULL, NULL), LM_OK);
    float l3[4] = {3.0f, 2.0f, -1.0f, 0.5f};
    lm_token hist3[] = {0, 0, 0, 1};
    assert_int_equal(smp_sample(&s, l3, hist3, 4), 0);
    assert_true(fabsf(l3[1] - 1.25f) < 1e-6f);
    smp_free(&s);
}

/* Feeds text split at every pair of positions; the delivered text never contains the stop
 * string and equals the prefix before it. */
static void check_stop(const char *text, const char *const *stops, size_t n_stops, const char *want) {
    size_t len = strlen(text);
    for (size_t a = 0; a <= len; a++) {
        for (size_t b = a; b <= len; b++) {
            smp_stop st;
            smp_stop_init(&st, stops, n_stops);
            lm_buf out = {0};
            size_t cuts[4] = {0, a, b, len};
            for (int i = 0; i < 3 && !st.hit; i++) smp_stop_push(&st, text + cuts[i], cuts[i + 1] - cuts[i], &out);
            smp_stop_flush(&st, &out);
            const char *got = out.data ? out.data : "";
            if (strcmp(got, want) != 0) fail_msg("split %zu/%zu of '%s': got '%s', want '%s'", a, b, text, got, want);
            lm_buf_free(&out);
            smp_stop_free(&st);
        }
    }
}

static void test_stop_strings(void **state) {
    (void)state;
    const char *s1[] = {"User:"};
    check_stop("Hello there. User: next", s1, 1, "Hello there. ");
    check_stop("no stop here, Use it", s1, 1, "no stop here, Use it");
    const char *s2[] = {"\n\n\n", "Human:"};
    check_stop("a\n\nb\n\n\nc", s2, 2, "a\n\nb");
    check_stop("ends with partial Hum", s2, 2, "ends with partial Hum");
    const char *s3[] = {"ab", "b"};
    check_stop("xxab", s3, 2, "xx"); /* the earliest match wins */
    const char *s4[] = {"é!"};
    check_stop("caf\xc3\xa9!", s4, 1, "caf");
}

/* ---- structured output through the sampler ---- */

static tok_tokenizer *tinychat(void) {
    tok_tokenizer *t = NULL;
    lm_error err = {0};
    if (tok_load_dir(tu_src("models/tinychat"), &t, &err)) fail_msg("%s", err.msg);
    return t;
}

/* The mask comes before the softmax: among the allowed tokens the draws follow their own
 * logits renormalised, whatever the (higher) logits of the others. */
static void test_grammar_distribution(void **state) {
    (void)state;
    tok_tokenizer *t = tinychat();
    size_t n = (size_t)tok_n_vocab(t);
    lm_token eog = tok_eos(t), a = tok_find(t, "a"), b = tok_find(t, "b");
    smp_vocab v = {t, &eog, 1};
    lm_gen_params p = base();
    p.grammar = "root ::= [ab]";
    float *logits = malloc(n * sizeof *logits);
    int hits_a = 0, draws = 20000;
    lm_error err = {0};
    for (int d = 0; d < draws; d++) {
        smp_sampler s;
        p.seed = (uint64_t)d + 1;
        assert_int_equal(smp_init(&s, &p, n, &v, &err), LM_OK);
        for (size_t i = 0; i < n; i++) logits[i] = 5.0f;
        logits[a] = 1.0f;
        logits[b] = 0.0f;
        if (d % 2) smp_prepare(&s); /* half the draws with the mask made ahead */
        lm_token id = smp_sample(&s, logits, NULL, 0);
        assert_true(id == a || id == b);
        hits_a += id == a;
        /* then only the end */
        for (size_t i = 0; i < n; i++) logits[i] = 5.0f;
        logits[eog] = -5.0f;
        assert_int_equal(smp_sample(&s, logits, NULL, 0), eog);
        smp_free(&s);
    }
    double want = exp(1.0) / (exp(1.0) + 1.0); /* 0.731 */
    assert_true(fabs((double)hits_a / draws - want) < 0.012);
    free(logits);
    tok_free(t);
}

/* Sampling (random logits, temperature 1) and greedy: every output is a whole match. */
static void test_grammar_outputs(void **state) {
    (void)state;
    tok_tokenizer *t = tinychat();
    size_t n = (size_t)tok_n_vocab(t);
    lm_token eog = tok_eos(t);
    smp_vocab v = {t, &eog, 1};
    float *logits = malloc(n * sizeof *logits);
    const char *schema = "{\"type\":\"object\",\"properties\":{\"ok\":{\"type\":\"boolean\"},"
                         "\"n\":{\"type\":\"integer\"}},\"required\":[\"ok\",\"n\"]}";
    for (int run = 0; run < 40; run++) {
        lm_gen_params p = base();
        p.seed = (uint64_t)run;
        p.temperature = run % 4 == 3 ? 0.0f : 1.0f;
        p.top_k = run % 2 ? 40 : 0;
        p.min_p = run % 3 == 1 ? 0.05f : 0.0f;
        p.repeat_penalty = run % 5 == 2 ? 1.3f : 1.0f;
        if (run % 2) p.json_schema = schema;
        else p.grammar = "root ::= (\"yes\" | \"no\") (\", \" [a-z]{1,5})?";
        smp_sampler s;
        lm_error err = {0};
        assert_int_equal(smp_init(&s, &p, n, &v, &err), LM_OK);
        tok_vec out = {0};
        lm_token id;
        for (int step = 0;; step++) {
            assert_true(step < 400);
            tu_rand_floats(logits, n, (uint64_t)(run * 1000 + step));
            for (size_t i = 0; i < n; i++) logits[i] *= 6.0f;
            logits[eog] -= 3.0f; /* let it write a while */
            id = smp_sample(&s, logits, out.ids, out.n);
            assert_true(id >= 0);
            if (id == eog) break;
            tok_vec_push(&out, id);
        }
        lm_buf text = {0};
        assert_int_equal(tok_decode(t, out.ids, out.n, false, &text, &err), LM_OK);
        /* the text, checked by a fresh matcher over bytes */
        smp_grammar *g = NULL;
        lm_buf gt = {0};
        if (p.json_schema) assert_int_equal(smp_json_schema_grammar(schema, strlen(schema), 0, &gt, &err), LM_OK);
        else lm_buf_puts(&gt, p.grammar);
        assert_int_equal(smp_grammar_compile(gt.data, gt.len, &g, &err), LM_OK);
        smp_matcher *m = NULL;
        assert_int_equal(smp_matcher_new(g, NULL, NULL, 0, 1, &m, &err), LM_OK);
        assert_int_equal(smp_matcher_accept_bytes(m, text.data ? text.data : "", text.len), LM_OK);
        assert_true(smp_matcher_can_end(m));
        if (p.json_schema) {
            cJSON *j = NULL;
            assert_int_equal(lm_json_parse(text.data, text.len, "output", &j, &err), LM_OK);
            assert_true(cJSON_IsBool(cJSON_GetObjectItem(j, "ok")) && cJSON_IsNumber(cJSON_GetObjectItem(j, "n")));
            cJSON_Delete(j);
        }
        smp_matcher_free(m);
        smp_grammar_free(g);
        lm_buf_free(&gt);
        lm_buf_free(&text);
        tok_vec_free(&out);
        smp_free(&s);
    }
    free(logits);
    tok_free(t);
}

static void test_grammar_init_errors(void **state) {
    (void)state;
    tok_tokenizer *t = tinychat();
    size_t n = (size_t)tok_n_vocab(t);
    lm_token eog = tok_eos(t);
    smp_vocab v = {t, &eog, 1};
    smp_sampler s;
    lm_error err = {0};
    lm_gen_params p = base();
    p.grammar = "root ::= \"a\" | b";
    assert_int_equal(smp_init(&s, &p, n, &v, &err), LM_ERR_FORMAT);
    assert_string_equal(err.msg, "grammar line 1 column 16: rule 'b' is used but never defined");
    p = base();
    p.json_schema = "{\"type\":\"object\",\"properties\":{\"a\":{\"not\":{}}}}";
    assert_int_equal(smp_init(&s, &p, n, &v, &err), LM_ERR_UNSUPPORTED);
    assert_string_equal(err.msg, "json_schema: $.properties.a: keyword 'not' is not supported");
    p.json_object = true;
    assert_int_equal(smp_init(&s, &p, n, &v, &err), LM_ERR_MISUSE);
    assert_string_equal(err.msg, "structured output: set only one of grammar, json_schema and json_object");
    p = base();
    p.json_object = true;
    assert_int_equal(smp_init(&s, &p, n, NULL, &err), LM_ERR_MISUSE);
    /* a finished grammar with no end-of-generation id: nothing more to pick */
    smp_vocab no_eog = {t, NULL, 0};
    p = base();
    p.grammar = "root ::= \"a\"";
    assert_int_equal(smp_init(&s, &p, n, &no_eog, &err), LM_OK);
    float *logits = calloc(n, sizeof *logits);
    assert_int_equal(smp_sample(&s, logits, NULL, 0), tok_find(t, "a"));
    assert_int_equal(smp_sample(&s, logits, NULL, 0), -1);
    assert_int_equal(s.status, LM_OK);
    smp_free(&s);
    free(logits);
    tok_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_distributions),
        cmocka_unit_test(test_seed_determinism),
        cmocka_unit_test(test_penalties),
        cmocka_unit_test(test_stop_strings),
        cmocka_unit_test(test_grammar_distribution),
        cmocka_unit_test(test_grammar_outputs),
        cmocka_unit_test(test_grammar_init_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
