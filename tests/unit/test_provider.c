/* tests/unit/test_provider.c: the SSE parser on every split of a real chat.completion.chunk
 * stream; the local provider; the fallback manager skipping a dead endpoint (a closed loopback
 * port) and reporting who answered; both failing gives an error naming both. The OpenAI client
 * against a fake upstream (a loopback socket answering one canned response): the configured key
 * is redacted from every error relayed (issue 20, finding 13), a 200 that is plain JSON instead
 * of an event stream is an error. Against a live locallm server: tests/e2e/test_server.sh. */
#include "testutil.h"

#include "provider/provider.h"

#include <stdio.h>
#include <stdlib.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

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

/* ---- a fake upstream: one connection, one canned response ---- */

typedef struct fake {
    int fd;
    int port;
    const char *resp;
    char req[8192];
    pthread_t th;
} fake;

static void *fake_main(void *u) {
    fake *f = u;
    int c = accept(f->fd, NULL, NULL);
    if (c < 0) return NULL;
    size_t n = 0;
    for (;;) { /* the headers, then Content-Length bytes of body */
        ssize_t r = read(c, f->req + n, sizeof f->req - 1 - n);
        if (r <= 0) break;
        n += (size_t)r;
        f->req[n] = 0;
        char *h = strstr(f->req, "\r\n\r\n");
        char *cl = strstr(f->req, "Content-Length:"); /* as curl spells it */
        if (h && (!cl || n >= (size_t)(h + 4 - f->req) + (size_t)atol(cl + 15))) break;
        if (n + 1 >= sizeof f->req) break;
    }
    size_t len = strlen(f->resp), off = 0;
    while (off < len) {
        ssize_t w = write(c, f->resp + off, len - off);
        if (w <= 0) break;
        off += (size_t)w;
    }
    close(c);
    return NULL;
}

static void fake_start(fake *f, const char *resp) {
    memset(f, 0, sizeof *f);
    f->resp = resp;
    f->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(f->fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(f->fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(f->fd, 4), 0);
    socklen_t al = sizeof a;
    getsockname(f->fd, (struct sockaddr *)&a, &al);
    f->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&f->th, NULL, fake_main, f), 0);
}

static void fake_stop(fake *f) {
    pthread_join(f->th, NULL);
    close(f->fd);
}

#define KEY "sk-test-SECRET-0123456789"

/* One chat call against a fake answering resp; returns its status, err and text in out. */
static lm_status ask(const char *resp, lm_error *err, lm_buf *out, lm_gen_stats *stats, char *req, size_t req_cap) {
    fake f;
    fake_start(&f, resp);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1", f.port);
    lm_openai_params op = {.name = "cloud", .base_url = url, .model = "m", .api_key = KEY};
    lm_provider *p = NULL;
    assert_int_equal(lm_provider_openai_new(&op, &p, err), LM_OK);
    lm_message msgs[1] = {{.role = "user", .content = "hi"}};
    lm_gen_params gp = lm_gen_default_params();
    lm_status st = lm_provider_chat(p, msgs, 1, NULL, &gp, collect, out, stats, err);
    lm_provider_free(p);
    fake_stop(&f);
    if (req) snprintf(req, req_cap, "%s", f.req);
    return st;
}

static void test_upstream_errors(void **state) {
    (void)state;
    lm_error err = {0};
    lm_buf out = {0};
    lm_gen_stats stats;
    char req[8192];
    /* a well-formed stream: the fake works and the key was sent */
    const char *good = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nConnection: close\r\n\r\n"
                       "data: {\"choices\":[{\"delta\":{\"content\":\"Paris\"}}]}\n\n"
                       "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
    assert_int_equal(ask(good, &err, &out, &stats, req, sizeof req), LM_OK);
    assert_string_equal(out.data, "Paris");
    assert_non_null(strstr(req, "Authorization: Bearer " KEY "\r\n"));
    lm_buf_free(&out);
    /* an error body echoing the Authorization header, in OpenAI's shape */
    const char *e401 = "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
                       "{\"error\":{\"message\":\"Incorrect API key provided: Bearer " KEY ". See your keys.\"}}";
    assert_int_equal(ask(e401, &err, &out, &stats, NULL, 0), LM_ERR_NETWORK);
    assert_non_null(strstr(err.msg, "cloud: HTTP 401 from http://127.0.0.1:"));
    assert_non_null(strstr(err.msg, "Incorrect API key provided: Bearer [redacted]. See your keys."));
    assert_null(strstr(err.msg, "SECRET"));
    /* a plain-text body that echoes every request header, the key twice */
    const char *e500 = "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
                       "bad request:\nAuthorization: Bearer " KEY "\nX-Key: " KEY "\n";
    assert_int_equal(ask(e500, &err, &out, &stats, NULL, 0), LM_ERR_NETWORK);
    assert_non_null(strstr(err.msg, "bad request:\\nAuthorization: Bearer [redacted]\\nX-Key: [redacted]"));
    assert_null(strstr(err.msg, "SECRET"));
    /* an error event inside the stream */
    const char *ev = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
                     "data: {\"error\":{\"message\":\"key " KEY " was revoked\"}}\n\n";
    assert_int_equal(ask(ev, &err, &out, &stats, NULL, 0), LM_ERR_NETWORK);
    assert_non_null(strstr(err.msg, "cloud: the server reported an error: key [redacted] was revoked"));
    /* a 200 answered with plain JSON (a whole completion) to a streamed request: an error, not an
       empty success, and nothing reaches the callback */
    const char *json = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
                       "{\"choices\":[{\"message\":{\"role\":\"assistant\",\"content\":\"Paris\"}}]}";
    assert_int_equal(ask(json, &err, &out, &stats, NULL, 0), LM_ERR_NETWORK);
    assert_non_null(strstr(err.msg, "answered a streamed request with application/json, not an event stream"));
    assert_null(out.data);
    assert_int_equal(stats.finish, LM_FINISH_ERROR);
    /* ... also without a Content-Type, and its error message (redacted) is shown */
    const char *bare = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"
                       "  {\"error\":{\"message\":\"streaming is off for " KEY "\"}}";
    assert_int_equal(ask(bare, &err, &out, &stats, NULL, 0), LM_ERR_NETWORK);
    assert_non_null(strstr(err.msg, "with no Content-Type, not an event stream: streaming is off for [redacted]"));
    assert_null(out.data);
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
        cmocka_unit_test(test_upstream_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
