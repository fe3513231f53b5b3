/* tests/unit/test_sample.c: the sampler chain against hand-computed distributions on fixed
 * logits, determinism of seeds, penalties, and the stop-string matcher with stop strings split at
 * every position. */
#include "testutil.h"

#include <math.h>

#include "sample/sample.h"

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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_distributions),
        cmocka_unit_test(test_seed_determinism),
        cmocka_unit_test(test_penalties),
        cmocka_unit_test(test_stop_strings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
