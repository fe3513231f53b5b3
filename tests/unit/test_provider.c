/* tests/unit/test_provider.c: the SSE parser on every split of a real chat.completion.chunk
 * stream; the local provider; the fallback manager skipping a dead endpoint (a closed loopback
 * port) and reporting who answered; both failing gives an error naming both. The OpenAI client
 * against a live locallm server is covered in tests/e2e/test_server.sh. */
#include "testutil.h"

#include "provider/provider.h"

static const char STREAM[] =
    "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"}}]}\r\n\r\n"
    ": keep-alive comment\n\n"
    "data: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\n"
    "data:{\"choices\":[{\"delta\":{\"content\":\" w\\u00f6rld\"}}]}\r\r"
    "data: {\"choices\":[{\"delta\":{},\n"
    "data: \"finish_reason\":\"stop\"}]}\n\n"
    "data: [DONE]\n\n";

typedef struct {
    lm_buf all;
    int events;
} sink;

static int on_ev(const char *d, size_t n, void *u) {
    sink *s = u;
    s->events++;
    lm_buf_append(&s->all, d, n);
    lm_buf_putc(&s->all, '|');
    return 0;
}

static void test_sse_splits(void **state) {
    (void)state;
    size_t len = strlen(STREAM);
    char *want = NULL;
    for (size_t a = 0; a <= len; a++) {
        for (size_t b = a; b <= len; b += 7) {
            sse_parser p;
            sink s = {{0}, 0};
            sse_init(&p, on_ev, &s);
            assert_true(sse_feed(&p, STREAM, a));
            assert_true(sse_feed(&p, STREAM + a, b - a));
            assert_true(sse_feed(&p, STREAM + b, len - b));
            sse_finish(&p);
            assert_int_equal(s.events, 5);
            if (!want) want = lm_strdup(s.all.data);
            else assert_string_equal(s.all.data, want);
            lm_buf_free(&s.all);
            sse_free(&p);
        }
    }
    assert_non_null(strstr(want, "{\"choices\":[{\"delta\":{},\n\"finish_reason\":\"stop\"}]}|"));
    assert_non_null(strstr(want, "|[DONE]|"));
    lm_free(want);
}

static int collect(const char *s, size_t n, void *user) {
    lm_buf_append((lm_buf *)user, s, n);
    return 0;
}

static void test_fallback(void **state) {
    (void)state;
    lm_model *m = NULL;
    lm_error err = {0};
    assert_int_equal(lm_model_load(tu_src("models/tinychat"), NULL, &m, &err), LM_OK);
    lm_provider *local = NULL, *dead = NULL, *fb = NULL, *fb2 = NULL;
    assert_int_equal(lm_provider_local_new(m, NULL, &local, &err), LM_OK);
    lm_openai_params op = {.name = "groq", .base_url = "http://127.0.0.1:1/v1", .model = "x", .api_key = "secret", .connect_timeout_ms = 2000};
    assert_int_equal(lm_provider_openai_new(&op, &dead, &err), LM_OK);
    assert_string_equal(lm_provider_name(dead), "groq");
    lm_provider *order[2] = {dead, local};
    assert_int_equal(lm_provider_fallback_new(order, 2, &fb, &err), LM_OK);
    lm_message msgs[1] = {{.role = "user", .content = "What is the capital of France?"}};
    lm_gen_params gp = lm_gen_default_params();
    gp.temperature = 0;
    gp.max_tokens = 32;
    lm_buf out = {0};
    assert_int_equal(lm_provider_chat(fb, msgs, 1, NULL, &gp, collect, &out, NULL, &err), LM_OK);
    assert_string_equal(out.data, "The capital of France is Paris.");
    assert_string_equal(lm_provider_answered_by(fb), "local");
    assert_non_null(strstr(lm_provider_skipped(fb), "groq"));
    assert_null(strstr(lm_provider_skipped(fb), "secret")); /* keys never appear in messages */
    lm_buf_free(&out);
    /* the local model unloaded: its provider is not ready; with only the dead endpoint left,
       the error names both */
    lm_provider *order2[2] = {local, dead};
    assert_int_equal(lm_provider_fallback_new(order2, 2, &fb2, &err), LM_OK);
    lm_model_free(m);
    assert_false(lm_provider_is_ready(local));
    assert_int_equal(lm_provider_chat(fb2, msgs, 1, NULL, &gp, collect, &out, NULL, &err), LM_ERR_NETWORK);
    assert_non_null(strstr(err.msg, "local: not ready"));
    assert_non_null(strstr(err.msg, "groq"));
    assert_null(lm_provider_answered_by(fb2));
    lm_buf_free(&out);
    lm_provider_free(fb);
    lm_provider_free(fb2);
    lm_provider_free(local);
    lm_provider_free(dead);
}

static void test_bad_params(void **state) {
    (void)state;
    lm_provider *p = NULL;
    lm_error err = {0};
    lm_openai_params op = {.base_url = "ftp://x"};
    assert_int_equal(lm_provider_openai_new(&op, &p, &err), LM_ERR_MISUSE);
    assert_non_null(strstr(err.msg, "http://"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sse_splits),
        cmocka_unit_test(test_fallback),
        cmocka_unit_test(test_bad_params),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
