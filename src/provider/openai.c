/* provider/openai.c: an OpenAI-compatible chat completions client over libcurl with real SSE
 * streaming: pieces reach the caller as the server sends them. HTTP and API errors are mapped to
 * lm_status with the server's own message, the configured API key redacted from it; a 200 that is
 * not an event stream is an error; connect and first-byte timeouts; cancellable.
 * Tool calls (delta.tool_calls, streamed in fragments) are gathered and kept in the call handle
 * as OpenAI tool calls once the answer ends (lm_call_tool_calls), as the local provider does.
 * Each call has its own curl handle, so threads may call one provider at once. */
#include "provider/provider.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <strings.h>

typedef struct openai_provider {
    lm_provider base;
    char *base_url, *model, *api_key;
    int32_t connect_ms, first_byte_ms, total_ms;
} openai_provider;

#define MAX_CALLS 16

typedef struct call_state {
    openai_provider *op;
    lm_call *call;
    CURL *curl;
    sse_parser sse;
    lm_piece_fn fn;
    void *user;
    lm_gen_stats *stats;
    long http_code;
    lm_buf err_body;     /* body of a non-200 answer, or of a 200 that is not an event stream */
    bool got_byte, done, user_stop, api_error, first_byte_timeout;
    bool type_checked, not_stream; /* a 200 whose Content-Type is not text/event-stream */
    char content_type[64];
    char api_msg[200];
    double t0, first_piece;
    int32_t n_pieces;
    lm_finish finish;
    lm_buf call_name[MAX_CALLS], call_args[MAX_CALLS], call_id[MAX_CALLS]; /* tool calls by index */
    int n_calls;
    bool calls_sent;
} call_state;

/* Text from the upstream (an error body, an error event) with every occurrence of the configured
 * API key replaced by "[redacted]": a server that echoes the Authorization header must not hand
 * the key to whoever reads our error messages (clients of `serve`, logs). Appends to out. */
static void redact(lm_buf *out, const char *s, size_t n, const char *key) {
    size_t k = key ? strlen(key) : 0;
    for (size_t i = 0; i < n;) {
        if (k && i + k <= n && memcmp(s + i, key, k) == 0) {
            lm_buf_puts(out, "[redacted]");
            i += k;
        } else if (k && i + k > n && n - i >= 4 && memcmp(s + i, key, n - i) == 0) {
            lm_buf_puts(out, "[redacted]"); /* the start of the key where a capped body ends */
            break;
        } else {
            lm_buf_putc(out, s[i++]);
        }
    }
}

/* Gathers one delta.tool_calls array: fragments of the same index are appended. */
static void gather_calls(call_state *c, const cJSON *calls) {
    const cJSON *tc;
    cJSON_ArrayForEach(tc, calls) {
        const cJSON *idx = cJSON_GetObjectItem(tc, "index");
        int i = cJSON_IsNumber(idx) ? (int)idx->valuedouble : c->n_calls - (c->n_calls > 0);
        if (i < 0 || i >= MAX_CALLS) continue;
        if (i >= c->n_calls) c->n_calls = i + 1;
        const cJSON *id = cJSON_GetObjectItem(tc, "id");
        if (cJSON_IsString(id) && !c->call_id[i].len) lm_buf_puts(&c->call_id[i], id->valuestring);
        const cJSON *fn = cJSON_GetObjectItem(tc, "function");
        const cJSON *name = fn ? cJSON_GetObjectItem(fn, "name") : NULL;
        const cJSON *args = fn ? cJSON_GetObjectItem(fn, "arguments") : NULL;
        if (cJSON_IsString(name)) lm_buf_puts(&c->call_name[i], name->valuestring);
        if (cJSON_IsString(args)) lm_buf_puts(&c->call_args[i], args->valuestring);
    }
}

/* Keeps the gathered tool calls in the call handle as an OpenAI tool_calls array. */
static int send_calls(call_state *c) {
    if (c->calls_sent || c->n_calls == 0) return 0;
    c->calls_sent = true;
    cJSON *arr = cJSON_CreateArray();
    for (int i = 0; arr && i < c->n_calls; i++) {
        if (!c->call_name[i].len) continue;
        cJSON *o = cJSON_CreateObject(), *fn = cJSON_CreateObject();
        if (!o || !fn || !cJSON_AddItemToArray(arr, o)) {
            cJSON_Delete(o);
            cJSON_Delete(fn);
            break;
        }
        char id[64];
        snprintf(id, sizeof id, "%s", c->call_id[i].len ? c->call_id[i].data : "call");
        if (!c->call_id[i].len) snprintf(id, sizeof id, "call_%d", i);
        cJSON_AddStringToObject(o, "id", id);
        cJSON_AddStringToObject(o, "type", "function");
        cJSON_AddStringToObject(fn, "name", c->call_name[i].data);
        cJSON_AddStringToObject(fn, "arguments", c->call_args[i].data ? c->call_args[i].data : "{}");
        cJSON_AddItemToObject(o, "function", fn);
    }
    if (arr && cJSON_GetArraySize(arr) > 0) call_set_tool_calls(c->call, lm_json_print(arr));
    cJSON_Delete(arr);
    return 0;
}

static int on_event(const char *data, size_t len, void *user) {
    call_state *c = user;
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
        c->done = true;
        send_calls(c);
        return 1;
    }
    cJSON *j = NULL;
    if (lm_json_parse(data, len, "SSE event", &j, NULL) != LM_OK) return 0; /* skip junk events */
    cJSON *e = cJSON_GetObjectItem(j, "error");
    if (e) {
        cJSON *m = cJSON_GetObjectItem(e, "message");
        const char *t = cJSON_IsString(m) ? m->valuestring : "error event in the stream";
        lm_buf r = {0};
        redact(&r, t, strlen(t), c->op->api_key); /* before the cut to api_msg's size */
        snprintf(c->api_msg, sizeof c->api_msg, "%s", r.data ? r.data : "");
        lm_buf_free(&r);
        c->api_error = true;
        cJSON_Delete(j);
        return 1;
    }
    cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
    if (ch) {
        cJSON *delta = cJSON_GetObjectItem(ch, "delta");
        cJSON *content = delta ? cJSON_GetObjectItem(delta, "content") : NULL;
        if (!content) content = cJSON_GetObjectItem(ch, "text"); /* completions-style servers */
        if (cJSON_IsString(content) && content->valuestring[0]) {
            if (c->first_piece < 0) c->first_piece = lm_time_ms();
            c->n_pieces++;
            if (c->fn && c->fn(content->valuestring, strlen(content->valuestring), c->user)) {
                c->user_stop = true;
                cJSON_Delete(j);
                return 1;
            }
        }
        cJSON *calls = delta ? cJSON_GetObjectItem(delta, "tool_calls") : NULL;
        if (cJSON_IsArray(calls)) gather_calls(c, calls);
        cJSON *fr = cJSON_GetObjectItem(ch, "finish_reason");
        if (cJSON_IsString(fr)) {
            c->finish = strcmp(fr->valuestring, "length") == 0 ? LM_FINISH_LENGTH : LM_FINISH_STOP;
            if (send_calls(c)) {
                cJSON_Delete(j);
                return 1;
            }
        }
    }
    cJSON *usage = cJSON_GetObjectItem(j, "usage");
    if (cJSON_IsObject(usage) && c->stats) {
        cJSON *pt = cJSON_GetObjectItem(usage, "prompt_tokens"), *ct = cJSON_GetObjectItem(usage, "completion_tokens");
        if (cJSON_IsNumber(pt)) c->stats->n_prompt = (int32_t)pt->valuedouble;
        if (cJSON_IsNumber(ct)) c->stats->n_generated = (int32_t)ct->valuedouble;
        cJSON *det = cJSON_GetObjectItem(usage, "prompt_tokens_details");
        cJSON *cached = det ? cJSON_GetObjectItem(det, "cached_tokens") : NULL;
        if (cJSON_IsNumber(cached)) c->stats->n_cached = (int32_t)cached->valuedouble;
    }
    cJSON_Delete(j);
    return 0;
}

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *user) {
    call_state *c = user;
    size_t n = size * nmemb;
    c->got_byte = true;
    if (c->http_code == 0) curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &c->http_code);
    if (c->http_code == 200 && !c->type_checked) {
        /* A stream was asked for; plain JSON (a whole completion, or an error) is not one. */
        c->type_checked = true;
        char *ct = NULL;
        curl_easy_getinfo(c->curl, CURLINFO_CONTENT_TYPE, &ct);
        snprintf(c->content_type, sizeof c->content_type, "%s", ct ? ct : "no Content-Type");
        if (ct) {
            c->not_stream = strncasecmp(ct, "text/event-stream", 17) != 0;
        } else {
            size_t i = 0;
            while (i < n && (ptr[i] == ' ' || ptr[i] == '\n' || ptr[i] == '\r' || ptr[i] == '\t')) i++;
            c->not_stream = i < n && (ptr[i] == '{' || ptr[i] == '[');
        }
    }
    if (c->http_code != 200 || c->not_stream) {
        if (c->err_body.len < 65536) lm_buf_append(&c->err_body, ptr, n);
        return n;
    }
    if (!sse_feed(&c->sse, ptr, n)) return c->done ? n : 0; /* 0 aborts the transfer */
    return n;
}

static int on_progress(void *user, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un) {
    (void)dt;
    (void)dn;
    (void)ut;
    (void)un;
    call_state *c = user;
    if (call_cancelled(c->call)) return 1;
    if (!c->got_byte && lm_time_ms() - c->t0 > c->op->first_byte_ms) {
        c->first_byte_timeout = true;
        return 1;
    }
    return 0;
}

/* The message of an error body: error.message (or a string error) when it is OpenAI-shaped JSON,
 * else the body itself; redacted. Appends to out. */
static void upstream_message(lm_buf *out, const lm_buf *body, const char *key) {
    cJSON *j = NULL;
    const char *msg = NULL;
    if (body->len && lm_json_parse(body->data, body->len, "error body", &j, NULL) == LM_OK) {
        cJSON *e = cJSON_GetObjectItem(j, "error");
        cJSON *m = e ? cJSON_GetObjectItem(e, "message") : NULL;
        if (cJSON_IsString(m)) msg = m->valuestring;
        else if (cJSON_IsString(e)) msg = e->valuestring;
    }
    if (msg) redact(out, msg, strlen(msg), key);
    else if (body->len) redact(out, body->data, body->len, key);
    else lm_buf_puts(out, "no message");
    cJSON_Delete(j);
}

static cJSON *build_body(openai_provider *op, const lm_message *msgs, size_t n, const lm_chat_params *cp,
                         const lm_gen_params *gp, lm_error *err) {
    cJSON *b = cJSON_CreateObject();
    if (!b) return NULL;
    cJSON_AddStringToObject(b, "model", op->model);
    cJSON_AddBoolToObject(b, "stream", true);
    cJSON *so = cJSON_AddObjectToObject(b, "stream_options");
    if (so) cJSON_AddBoolToObject(so, "include_usage", true);
    cJSON *arr = cJSON_AddArrayToObject(b, "messages");
    for (size_t i = 0; arr && i < n; i++) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddItemToArray(arr, m);
        cJSON_AddStringToObject(m, "role", msgs[i].role ? msgs[i].role : "user");
        if (msgs[i].content) cJSON_AddStringToObject(m, "content", msgs[i].content);
        else cJSON_AddNullToObject(m, "content");
        if (msgs[i].tool_calls_json) {
            cJSON *tc = NULL;
            if (lm_json_parse(msgs[i].tool_calls_json, strlen(msgs[i].tool_calls_json), "tool_calls", &tc, err)) {
                cJSON_Delete(b);
                return NULL;
            }
            cJSON_AddItemToObject(m, "tool_calls", tc);
        }
        if (msgs[i].tool_call_id) cJSON_AddStringToObject(m, "tool_call_id", msgs[i].tool_call_id);
        if (msgs[i].name) cJSON_AddStringToObject(m, "name", msgs[i].name);
    }
    if (gp) {
        if (gp->max_tokens > 0) cJSON_AddNumberToObject(b, "max_tokens", gp->max_tokens);
        cJSON_AddNumberToObject(b, "temperature", gp->temperature);
        if (gp->top_p > 0 && gp->top_p < 1) cJSON_AddNumberToObject(b, "top_p", gp->top_p);
        if (gp->presence_penalty != 0) cJSON_AddNumberToObject(b, "presence_penalty", gp->presence_penalty);
        if (gp->frequency_penalty != 0) cJSON_AddNumberToObject(b, "frequency_penalty", gp->frequency_penalty);
        cJSON_AddNumberToObject(b, "seed", (double)(gp->seed & 0xFFFFFFFFu));
        if (gp->stop[0]) {
            cJSON *st = cJSON_AddArrayToObject(b, "stop");
            for (int i = 0; i < LM_MAX_STOP && gp->stop[i]; i++) cJSON_AddItemToArray(st, cJSON_CreateString(gp->stop[i]));
        }
        /* structured output as OpenAI spells it; a GBNF grammar as llama.cpp's server (and
           locallm serve) take it, which other endpoints refuse with their own error */
        if (gp->json_schema) {
            cJSON *schema = NULL;
            if (lm_json_parse(gp->json_schema, strlen(gp->json_schema), "json_schema", &schema, err)) {
                cJSON_Delete(b);
                return NULL;
            }
            cJSON *rf = cJSON_AddObjectToObject(b, "response_format");
            cJSON *js = rf ? cJSON_AddObjectToObject(rf, "json_schema") : NULL;
            if (js) {
                cJSON_AddStringToObject(rf, "type", "json_schema");
                cJSON_AddStringToObject(js, "name", "response");
                cJSON_AddBoolToObject(js, "strict", true);
                cJSON_AddItemToObject(js, "schema", schema);
            } else {
                cJSON_Delete(schema);
            }
        } else if (gp->json_object) {
            cJSON *rf = cJSON_AddObjectToObject(b, "response_format");
            if (rf) cJSON_AddStringToObject(rf, "type", "json_object");
        } else if (gp->grammar) {
            cJSON_AddStringToObject(b, "grammar", gp->grammar);
        }
    }
    if (cp && cp->tools_json) {
        cJSON *tools = NULL;
        if (lm_json_parse(cp->tools_json, strlen(cp->tools_json), "tools", &tools, err)) {
            cJSON_Delete(b);
            return NULL;
        }
        cJSON_AddItemToObject(b, "tools", tools);
    }
    return b;
}

static lm_status openai_chat_err(lm_provider *p, const lm_message *msgs, size_t n, const lm_chat_params *cp,
                                 const lm_gen_params *gp, lm_piece_fn fn, void *user, lm_call *call, lm_gen_stats *stats,
                                 lm_error *err) {
    openai_provider *op = (openai_provider *)p;
    lm_curl_init();
    if (stats) {
        memset(stats, 0, sizeof *stats);
        stats->stop_token = -1;
    }
    cJSON *body = build_body(op, msgs, n, cp, gp, err);
    if (!body) return err && err->code ? err->code : lm_fail_nomem(err, "request");
    char *text = lm_json_print(body);
    cJSON_Delete(body);
    if (!text) return lm_fail_nomem(err, "request");
    char url[1024];
    size_t bl = strlen(op->base_url);
    snprintf(url, sizeof url, "%s%schat/completions", op->base_url, bl && op->base_url[bl - 1] == '/' ? "" : "/");
    call_state c;
    memset(&c, 0, sizeof c);
    c.op = op;
    c.call = call;
    c.fn = fn;
    c.user = user;
    c.stats = stats;
    c.first_piece = -1;
    c.t0 = lm_time_ms();
    c.finish = LM_FINISH_STOP;
    sse_init(&c.sse, on_event, &c);
    c.curl = curl_easy_init();
    struct curl_slist *hdr = NULL;
    lm_status st = LM_OK;
    if (!c.curl) {
        st = lm_fail_nomem(err, "HTTP client");
        goto out;
    }
    hdr = curl_slist_append(hdr, "Content-Type: application/json");
    hdr = curl_slist_append(hdr, "Accept: text/event-stream");
    if (op->api_key && op->api_key[0]) {
        char auth[1200];
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", op->api_key);
        hdr = curl_slist_append(hdr, auth);
    }
    curl_easy_setopt(c.curl, CURLOPT_URL, url);
    curl_easy_setopt(c.curl, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(c.curl, CURLOPT_POSTFIELDS, text);
    curl_easy_setopt(c.curl, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(c.curl, CURLOPT_WRITEDATA, &c);
    curl_easy_setopt(c.curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c.curl, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c.curl, CURLOPT_XFERINFODATA, &c);
    curl_easy_setopt(c.curl, CURLOPT_CONNECTTIMEOUT_MS, (long)op->connect_ms);
    if (op->total_ms > 0) curl_easy_setopt(c.curl, CURLOPT_TIMEOUT_MS, (long)op->total_ms);
    curl_easy_setopt(c.curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c.curl, CURLOPT_USERAGENT, "locallm/" LM_VERSION);
    CURLcode rc = curl_easy_perform(c.curl);
    if (c.http_code == 0) curl_easy_getinfo(c.curl, CURLINFO_RESPONSE_CODE, &c.http_code);
    if (c.user_stop) {
        c.finish = LM_FINISH_CANCELLED;
        st = lm_fail(err, LM_ERR_CANCELLED, "%s: stopped by the caller", p->name);
    } else if (call_cancelled(call)) {
        c.finish = LM_FINISH_CANCELLED;
        st = lm_fail(err, LM_ERR_CANCELLED, "%s: cancelled", p->name);
    } else if (c.first_byte_timeout) {
        st = lm_fail(err, LM_ERR_NETWORK, "%s: no answer from %s within %d ms", p->name, url, op->first_byte_ms);
    } else if (c.http_code != 0 && c.http_code != 200) {
        lm_buf m = {0};
        upstream_message(&m, &c.err_body, op->api_key);
        st = lm_fail(err, LM_ERR_NETWORK, "%s: HTTP %ld from %s: %s", p->name, c.http_code, url,
                     m.data ? m.data : "no message");
        lm_buf_free(&m);
    } else if (c.not_stream) {
        lm_buf m = {0};
        upstream_message(&m, &c.err_body, op->api_key);
        st = lm_fail(err, LM_ERR_NETWORK, "%s: %s answered a streamed request with %s, not an event stream: %s",
                     p->name, url, c.content_type, m.data ? m.data : "no message");
        lm_buf_free(&m);
    } else if (c.api_error) {
        st = lm_fail(err, LM_ERR_NETWORK, "%s: the server reported an error: %s", p->name, c.api_msg);
    } else if (rc != CURLE_OK && !c.done) {
        st = lm_fail(err, LM_ERR_NETWORK, "%s: %s: %s", p->name, url, curl_easy_strerror(rc));
    } else {
        sse_finish(&c.sse);
        send_calls(&c); /* a stream that ended without finish_reason or [DONE] */
    }
    if (stats) {
        double t1 = lm_time_ms();
        stats->ttft_ms = c.first_piece >= 0 ? c.first_piece - c.t0 : t1 - c.t0;
        stats->finish = st == LM_ERR_CANCELLED ? LM_FINISH_CANCELLED : st ? LM_FINISH_ERROR : c.finish;
        if (!stats->n_generated) stats->n_generated = c.n_pieces;
        stats->decode_ms = c.first_piece >= 0 ? t1 - c.first_piece : 0;
        /* pieces that came in one burst (or tool calls handed on at the end) give no rate */
        if (stats->decode_ms >= 1 && c.n_pieces > 1)
            stats->decode_tok_s = stats->n_generated / (stats->decode_ms / 1000.0);
    }
    /* A failure after text streamed is reported through the status; the fallback manager reads
       n_pieces through stats->ttft... keep it simple: it checks whether its callback was called. */
out:
    curl_slist_free_all(hdr);
    if (c.curl) curl_easy_cleanup(c.curl);
    sse_free(&c.sse);
    for (int i = 0; i < MAX_CALLS; i++) {
        lm_buf_free(&c.call_name[i]);
        lm_buf_free(&c.call_args[i]);
        lm_buf_free(&c.call_id[i]);
    }
    lm_buf_free(&c.err_body);
    lm_free(text);
    return st;
}

static lm_status openai_chat(lm_provider *p, const lm_message *msgs, size_t n, const lm_chat_params *cp,
                             const lm_gen_params *gp, lm_piece_fn fn, void *user, lm_call *call, lm_gen_stats *stats) {
    lm_error e = {0};
    lm_status st = openai_chat_err(p, msgs, n, cp, gp, fn, user, call, stats, &e);
    if (st) snprintf(call->errmsg, sizeof call->errmsg, "%s", e.msg[0] ? e.msg : lm_status_str(st));
    return st;
}

static bool openai_is_ready(const lm_provider *p) {
    (void)p;
    return true; /* configured; reachability is learned by trying */
}

static void openai_destroy(lm_provider *p) {
    openai_provider *op = (openai_provider *)p;
    lm_free(op->base_url);
    lm_free(op->model);
    if (op->api_key) memset(op->api_key, 0, strlen(op->api_key));
    lm_free(op->api_key);
    lm_free(op);
}

static const provider_ops OPENAI_OPS = {openai_is_ready, openai_chat, NULL, openai_destroy};

lm_status lm_provider_openai_new(const lm_openai_params *prm, lm_provider **out, lm_error *err) {
    if (!prm || !out || !prm->base_url || !prm->base_url[0])
        return lm_fail(err, LM_ERR_MISUSE, "openai provider: base_url is required");
    if (strncmp(prm->base_url, "http://", 7) && strncmp(prm->base_url, "https://", 8))
        return lm_fail(err, LM_ERR_MISUSE, "openai provider: base_url '%s' must start with http:// or https://", prm->base_url);
    openai_provider *op = lm_calloc(1, sizeof *op);
    if (!op) return lm_fail_nomem(err, "provider");
    op->base.ops = &OPENAI_OPS;
    snprintf(op->base.name, sizeof op->base.name, "%s", prm->name ? prm->name : "openai");
    op->base_url = lm_strdup(prm->base_url);
    op->model = lm_strdup(prm->model ? prm->model : "default");
    op->api_key = prm->api_key ? lm_strdup(prm->api_key) : NULL;
    op->connect_ms = prm->connect_timeout_ms > 0 ? prm->connect_timeout_ms : 5000;
    op->first_byte_ms = prm->first_byte_timeout_ms > 0 ? prm->first_byte_timeout_ms : 15000;
    op->total_ms = prm->total_timeout_ms;
    if (!op->base_url || !op->model || (prm->api_key && !op->api_key)) {
        openai_destroy(&op->base);
        return lm_fail_nomem(err, "provider");
    }
    *out = &op->base;
    return LM_OK;
}
