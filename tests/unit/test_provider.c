/* tests/unit/test_provider.c: the SSE parser on every split of a real chat.completion.chunk
 * stream; the local provider; the fallback manager skipping a dead endpoint (a closed loopback
 * port) and reporting who answered; both failing gives an error naming both. The OpenAI client
 * against a fake upstream (a loopback socket answering one canned response): the configured key
 * is redacted from every error relayed (issue 20, finding 13), a 200 that is plain JSON instead
 * of an event stream is an error. Against a live locallm server: tests/e2e/test_server.sh. */
#include "testutil.h"

#include "provider/provider.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

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

static lm_gen_params greedy(int max_tokens) {
    lm_gen_params gp = lm_gen_default_params();
    gp.temperature = 0;
    gp.max_tokens = max_tokens;
    return gp;
}

/* tinychat and an engine on it: the state of the tests that run the local provider, made by
 * tinychat_setup before each and freed by tinychat_teardown after it. */
typedef struct tinychat {
    lm_model *m;
    lm_engine *e;
} tinychat;

static int tinychat_setup(void **state) {
    tinychat *tc = calloc(1, sizeof *tc);
    lm_error err = {0};
    if (!tc) return -1;
    *state = tc;
    if (lm_model_load(tu_src("models/tinychat"), NULL, &tc->m, &err) ||
        lm_engine_new(tc->m, NULL, &tc->e, &err)) {
        print_error("tinychat: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static int tinychat_teardown(void **state) {
    tinychat *tc = *state;
    if (tc) {
        lm_engine_free(tc->e);
        lm_model_free(tc->m);
        free(tc);
    }
    return 0;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void test_fallback(void **state) {
    lm_engine *e = ((tinychat *)*state)->e;
    lm_call *call = NULL;
    lm_error err = {0};
    assert_int_equal(lm_call_new(&call, &err), LM_OK);
    lm_provider *local = NULL, *dead = NULL, *fb = NULL, *fb2 = NULL;
    assert_int_equal(lm_provider_local_new(e, NULL, &local, &err), LM_OK);
    lm_openai_params op = {.name = "groq", .base_url = "http://127.0.0.1:1/v1", .model = "x", .api_key = "secret", .connect_timeout_ms = 2000};
    assert_int_equal(lm_provider_openai_new(&op, &dead, &err), LM_OK);
    assert_string_equal(lm_provider_name(dead), "groq");
    lm_provider *order[2] = {dead, local};
    assert_int_equal(lm_provider_fallback_new(order, 2, &fb, &err), LM_OK);
    lm_message msgs[1] = {{.role = "user", .content = "What is the capital of France?"}};
    lm_gen_params gp = greedy(32);
    lm_buf out = {0};
    assert_int_equal(lm_provider_chat(fb, msgs, 1, NULL, &gp, collect, &out, call, NULL), LM_OK);
    assert_string_equal(out.data, "The capital of France is Paris.");
    assert_string_equal(lm_call_answered_by(call), "local");
    assert_non_null(strstr(lm_call_skipped(call), "groq"));
    assert_null(strstr(lm_call_skipped(call), "secret")); /* keys never appear in messages */
    assert_string_equal(lm_call_errmsg(call), "");
    lm_buf_free(&out);
    /* only the dead endpoint: the error names it, and nobody answered */
    assert_int_equal(lm_provider_fallback_new(&dead, 1, &fb2, &err), LM_OK);
    assert_int_equal(lm_provider_chat(fb2, msgs, 1, NULL, &gp, collect, &out, call, NULL), LM_ERR_NETWORK);
    assert_non_null(strstr(lm_call_errmsg(call), "no provider could answer"));
    assert_non_null(strstr(lm_call_errmsg(call), "groq"));
    assert_null(lm_call_answered_by(call));
    assert_null(out.data);
    /* a cancelled handle stays cancelled until reset */
    lm_call_cancel(call);
    assert_int_equal(lm_provider_chat(local, msgs, 1, NULL, &gp, collect, &out, call, NULL), LM_ERR_CANCELLED);
    lm_call_reset(call);
    assert_int_equal(lm_provider_chat(local, msgs, 1, NULL, &gp, collect, &out, call, NULL), LM_OK);
    lm_buf_free(&out);
    /* a NULL call handle works too */
    assert_int_equal(lm_provider_chat(local, msgs, 1, NULL, &gp, collect, &out, NULL, NULL), LM_OK);
    assert_string_equal(out.data, "The capital of France is Paris.");
    lm_buf_free(&out);
    lm_provider_free(fb);
    lm_provider_free(fb2);
    lm_provider_free(local);
    lm_provider_free(dead);
    lm_call_free(call);
}

/* ---- concurrency: slots, the queue, cancel ---- */

typedef struct worker {
    lm_provider *p;
    lm_call *call;
    const char *question;
    int max_tokens;
    int delay_ms;          /* per piece: a slow client */
    lm_status st;
    lm_gen_stats stats;
    lm_buf out;
    atomic_int *started;
} worker;

static int slow_collect(const char *s, size_t n, void *user) {
    worker *w = user;
    if (w->started) atomic_fetch_add(w->started, 1);
    lm_buf_append(&w->out, s, n);
    if (w->delay_ms) sleep_ms(w->delay_ms);
    return 0;
}

static void *worker_main(void *arg) {
    worker *w = arg;
    lm_message msgs[1] = {{.role = "user", .content = w->question}};
    lm_gen_params gp = greedy(w->max_tokens);
    w->st = lm_provider_chat(w->p, msgs, 1, NULL, &gp, slow_collect, w, w->call, &w->stats);
    return NULL;
}

/* Gives w a call handle of its own and runs it on a new thread *th; with w->started set, returns
 * once its first piece has come (the call holds a slot). */
static void worker_start(worker *w, pthread_t *th) {
    lm_error err = {0};
    assert_int_equal(lm_call_new(&w->call, &err), LM_OK);
    assert_int_equal(pthread_create(th, NULL, worker_main, w), 0);
    while (w->started && atomic_load(w->started) == 0) sleep_ms(1);
}

/* Frees what a finished worker holds: its text and its call handle. */
static void worker_free(worker *w) {
    lm_buf_free(&w->out);
    lm_call_free(w->call);
}

/* Calls at the same time on a provider with enough slots each get the reply they get alone,
 * and share the engine's passes. */
static void test_concurrent_calls(void **state) {
    lm_engine *e = ((tinychat *)*state)->e;
    static const char *const qs[4] = {"What is the capital of France?", "What colour is the sky?",
                                      "Hello!", "What is 2 plus 2?"};
    lm_error err = {0};
    lm_local_params lp = lm_local_default_params();
    lp.n_slots = 4;
    lm_provider *local = NULL;
    assert_int_equal(lm_provider_local_new(e, &lp, &local, &err), LM_OK);
    /* alone first */
    char *alone[4];
    for (int i = 0; i < 4; i++) {
        worker w = {.p = local, .question = qs[i], .max_tokens = 24};
        worker_main(&w);
        assert_int_equal(w.st, LM_OK);
        alone[i] = lm_buf_take(&w.out);
    }
    lm_engine_stats before;
    lm_engine_get_stats(e, &before);
    worker ws[4];
    pthread_t th[4];
    memset(ws, 0, sizeof ws);
    for (int i = 0; i < 4; i++) {
        ws[i] = (worker){.p = local, .question = qs[i], .max_tokens = 24, .delay_ms = 2};
        worker_start(&ws[i], &th[i]);
    }
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(ws[i].st, LM_OK);
        assert_string_equal(ws[i].out.data, alone[i]);
        assert_string_equal(lm_call_answered_by(ws[i].call), "local");
        worker_free(&ws[i]);
        lm_free(alone[i]);
    }
    lm_engine_stats after;
    lm_engine_get_stats(e, &after);
    assert_true(after.n_shared > before.n_shared); /* the calls shared passes */
    assert_true(after.max_seqs_in_pass >= 2);
    lm_provider_free(local);
}

/* One slot and no queue: a second call while the first runs is refused with LM_ERR_BUSY; with
 * a queue it waits, and a cancelled waiter leaves the queue at once. */
static void test_busy_and_queue(void **state) {
    lm_engine *e = ((tinychat *)*state)->e;
    lm_error err = {0};
    lm_local_params lp = lm_local_default_params();
    lp.n_slots = 1;
    lp.n_queue = -1;
    lm_provider *one = NULL;
    assert_int_equal(lm_provider_local_new(e, &lp, &one, &err), LM_OK);
    atomic_int started;
    atomic_init(&started, 0);
    worker long_w = {.p = one, .question = "Tell me a story.", .max_tokens = 64, .delay_ms = 20, .started = &started};
    lm_gen_params gp = greedy(64);
    gp.ignore_eos = true;
    pthread_t th;
    worker_start(&long_w, &th);
    lm_call *c2 = NULL;
    assert_int_equal(lm_call_new(&c2, &err), LM_OK);
    lm_message msgs[1] = {{.role = "user", .content = "Hello!"}};
    lm_buf out = {0};
    assert_int_equal(lm_provider_chat(one, msgs, 1, NULL, &gp, collect, &out, c2, NULL), LM_ERR_BUSY);
    assert_non_null(strstr(lm_call_errmsg(c2), "busy"));
    /* the running call is cancelled from here: it ends early, with what it delivered */
    lm_call_cancel(long_w.call);
    pthread_join(th, NULL);
    assert_int_equal(long_w.st, LM_ERR_CANCELLED);
    assert_int_equal(long_w.stats.finish, LM_FINISH_CANCELLED);
    assert_true(long_w.stats.n_generated < 64);
    worker_free(&long_w);
    lm_provider_free(one);

    /* one slot, a queue of 1: a waiter that is cancelled returns LM_ERR_CANCELLED without running */
    lp.n_queue = 1;
    assert_int_equal(lm_provider_local_new(e, &lp, &one, &err), LM_OK);
    atomic_store(&started, 0);
    worker w1 = {.p = one, .question = "Tell me a story.", .max_tokens = 40, .delay_ms = 20, .started = &started};
    worker w2 = {.p = one, .question = "Hello!", .max_tokens = 8};
    pthread_t t1, t2;
    worker_start(&w1, &t1);
    worker_start(&w2, &t2);
    sleep_ms(50);
    lm_call_cancel(w2.call);
    pthread_join(t2, NULL);
    assert_int_equal(w2.st, LM_ERR_CANCELLED);
    assert_null(w2.out.data);
    assert_non_null(strstr(lm_call_errmsg(w2.call), "waiting for a slot"));
    pthread_join(t1, NULL);
    assert_int_equal(w1.st, LM_OK);
    worker_free(&w1);
    worker_free(&w2);
    lm_call_free(c2);
    lm_provider_free(one);
}

/* tinychat writes Hermes tool calls: the local provider keeps the call text out of the stream
 * and hands OpenAI tool calls in the call handle. */
static void test_tool_calls(void **state) {
    lm_engine *e = ((tinychat *)*state)->e;
    lm_call *call = NULL;
    lm_error err = {0};
    assert_int_equal(lm_call_new(&call, &err), LM_OK);
    lm_provider *local = NULL;
    assert_int_equal(lm_provider_local_new(e, NULL, &local, &err), LM_OK);
    cJSON *refs = tu_json(tu_src("models/tinychat/refs.json"));
    int n_checked = 0;
    cJSON *p;
    cJSON_ArrayForEach(p, cJSON_GetObjectItem(refs, "prompts")) {
        cJSON *tools = cJSON_GetObjectItem(p, "tools");
        const char *reply = cJSON_GetObjectItem(p, "reply_text")->valuestring;
        const char *tc = strstr(reply, "<tool_call>");
        if (!cJSON_IsArray(tools) || !tc) continue;
        /* what the model calls, from the reference reply */
        cJSON *want = cJSON_Parse(tc + strlen("<tool_call>"));
        if (!want) { /* the JSON runs up to </tool_call>: cut there */
            char buf[512];
            const char *e2 = strstr(tc, "</tool_call>");
            size_t k = (size_t)(e2 - tc) - strlen("<tool_call>");
            memcpy(buf, tc + strlen("<tool_call>"), k);
            buf[k] = 0;
            want = cJSON_Parse(buf);
        }
        assert_non_null(want);
        lm_message msgs[4];
        size_t n = 0;
        cJSON *msg;
        cJSON_ArrayForEach(msg, cJSON_GetObjectItem(p, "messages")) {
            msgs[n] = (lm_message){.role = cJSON_GetObjectItem(msg, "role")->valuestring,
                                   .content = cJSON_GetObjectItem(msg, "content")->valuestring};
            n++;
        }
        char *tools_json = cJSON_PrintUnformatted(tools);
        lm_chat_params cp = lm_chat_default_params();
        cp.tools_json = tools_json;
        lm_gen_params gp = greedy(96);
        lm_buf out = {0};
        assert_int_equal(lm_provider_chat(local, msgs, n, &cp, &gp, collect, &out, call, NULL), LM_OK);
        const char *calls = lm_call_tool_calls(call);
        assert_non_null(calls);
        assert_null(out.data); /* the reply is the call alone: no text was streamed */
        cJSON *got = cJSON_Parse(calls);
        assert_int_equal(cJSON_GetArraySize(got), 1);
        cJSON *g0 = cJSON_GetArrayItem(got, 0);
        assert_string_equal(cJSON_GetObjectItem(g0, "type")->valuestring, "function");
        assert_non_null(strstr(cJSON_GetObjectItem(g0, "id")->valuestring, "call_"));
        cJSON *fn = cJSON_GetObjectItem(g0, "function");
        assert_string_equal(cJSON_GetObjectItem(fn, "name")->valuestring, cJSON_GetObjectItem(want, "name")->valuestring);
        char *want_args = cJSON_PrintUnformatted(cJSON_GetObjectItem(want, "arguments"));
        assert_string_equal(cJSON_GetObjectItem(fn, "arguments")->valuestring, want_args);
        cJSON_free(want_args);
        cJSON_Delete(got);
        cJSON_Delete(want);
        cJSON_free(tools_json);
        n_checked++;
    }
    assert_true(n_checked >= 1);
    /* without tools, plain text comes through and there are no calls */
    lm_message plain[1] = {{.role = "user", .content = "Hello!"}};
    lm_gen_params gp = greedy(16);
    lm_buf out = {0};
    assert_int_equal(lm_provider_chat(local, plain, 1, NULL, &gp, collect, &out, call, NULL), LM_OK);
    assert_null(lm_call_tool_calls(call));
    assert_non_null(out.data);
    lm_buf_free(&out);
    cJSON_Delete(refs);
    lm_provider_free(local);
    lm_call_free(call);
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

/* One chat call against a fake answering resp; returns its status, the call's message in err and
 * the text in out. */
static lm_status ask(const char *resp, lm_error *err, lm_buf *out, lm_gen_stats *stats, char *req, size_t req_cap) {
    fake f;
    fake_start(&f, resp);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1", f.port);
    lm_openai_params op = {.name = "cloud", .base_url = url, .model = "m", .api_key = KEY};
    lm_provider *p = NULL;
    lm_call *call = NULL;
    assert_int_equal(lm_provider_openai_new(&op, &p, err), LM_OK);
    assert_int_equal(lm_call_new(&call, err), LM_OK);
    lm_message msgs[1] = {{.role = "user", .content = "hi"}};
    lm_gen_params gp = lm_gen_default_params();
    lm_status st = lm_provider_chat(p, msgs, 1, NULL, &gp, collect, out, call, stats);
    err->code = st;
    snprintf(err->msg, sizeof err->msg, "%s", lm_call_errmsg(call));
    lm_call_free(call);
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
        cmocka_unit_test_setup_teardown(test_fallback, tinychat_setup, tinychat_teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_calls, tinychat_setup, tinychat_teardown),
        cmocka_unit_test_setup_teardown(test_busy_and_queue, tinychat_setup, tinychat_teardown),
        cmocka_unit_test_setup_teardown(test_tool_calls, tinychat_setup, tinychat_teardown),
        cmocka_unit_test(test_bad_params),
        cmocka_unit_test(test_upstream_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
