/* server/server.c: the OpenAI- and Ollama-compatible HTTP server on libmicrohttpd.
 * Owns: routing, authentication, body limits, CORS headers for the --cors origins, background
 * model loading, generation jobs, SSE (OpenAI) and NDJSON (Ollama) streaming, logprobs, noticing
 * a client that went away, and OpenAI-shaped responses and errors (Ollama's objects are built
 * by server/ollama.c).
 * Does not own: request validation (server/request.c), slots, queueing, fallback to the cloud and
 * tool-call parsing (the library's providers: one local provider whose slots are sessions of one
 * engine, so concurrent requests share forward passes, behind a fallback manager with the cloud
 * providers of srv_config), generation (session/).
 * Threads: MHD runs one thread per connection. Every generation runs in a job thread of its own
 * that calls the provider; the connection's thread waits for the job's first output (or its end),
 * watching the socket meanwhile, so a request that fails before any output (a full queue, a bad
 * prompt) still gets its HTTP status, and one whose client leaves while it waits is cancelled.
 * A streamed job hands SSE frames to MHD's content reader through a small locked buffer. */
#include "server/server.h"
#include "model/model.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { LOAD_LOADING, LOAD_READY, LOAD_FAILED };

typedef struct job job;

typedef struct srv {
    const srv_config *cfg;
    lm_model *model;
    lm_engine *eng;
    lm_provider *local;        /* slots on eng; NULL until loaded */
    lm_provider **clouds;      /* cfg->n_fallback, made at start */
    lm_provider *with_local;   /* fallback over local then the clouds: once loaded */
    lm_provider *clouds_only;  /* fallback over the clouds: before (NULL without clouds) */
    _Atomic int state;
    _Atomic float progress;
    char load_err[320];
    int32_t n_ctx;
    pthread_mutex_t mu;
    pthread_cond_t cv;         /* a job ended */
    job *jobs;                 /* (mu) running jobs, to cancel when stopping */
    int n_jobs;                /* (mu) */
    _Atomic bool stopping;
    _Atomic uint64_t counter;
    srv_guard *guard;          /* read deadlines and the cap on connections still sending headers */
} srv;

static void slog(srv *sv, lm_log_level level, const char *fmt, ...) LM_PRINTF(3, 4);
static void slog(srv *sv, lm_log_level level, const char *fmt, ...) {
    if (!sv->cfg->log) return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    sv->cfg->log(level, msg, sv->cfg->log_user);
}

/* ---- responses ---- */

/* True when origin (an Origin header's value; NULL: none) is in cfg->cors or the list holds "*". */
static bool origin_listed(const srv_config *cfg, const char *origin) {
    for (size_t i = 0; origin && i < cfg->n_cors; i++)
        if (strcmp(cfg->cors[i], "*") == 0 || strcmp(cfg->cors[i], origin) == 0) return true;
    return false;
}

/* Each connection's socket context: the server (add_cors finds the --cors list from the
 * connection alone) and the connection's entry in the guard. */
typedef struct sock_ctx {
    const srv *sv;
    srv_guard_conn *gc;
} sock_ctx;

/* MHD_OPTION_NOTIFY_CONNECTION: a connection begins (its header deadline starts) or ends. */
static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code) {
    srv *sv = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        sock_ctx *sc = lm_calloc(1, sizeof *sc);
        const union MHD_ConnectionInfo *fd = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        const union MHD_ConnectionInfo *sa = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        if (sc) {
            sc->sv = sv;
            sc->gc = fd ? srv_guard_open(sv->guard, fd->connect_fd, sa ? sa->client_addr : NULL) : NULL;
        }
        *socket_context = sc;
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        sock_ctx *sc = *socket_context;
        if (sc) srv_guard_close(sv->guard, sc->gc);
        lm_free(sc);
        *socket_context = NULL;
    }
}

/* What every response carries. A response to a browser origin in the --cors list names it in
 * Access-Control-Allow-Origin (with Vary: Origin, since the header depends on it). And each
 * connection serves one request: "Connection: close" makes MHD close it after the response, so
 * every request arrives on a new connection whose head front.c looks at first (a kept-alive
 * connection's next request would reach MHD alone, which answers a malformed one with HTML). */
static void add_common_headers(struct MHD_Response *r, struct MHD_Connection *c) {
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    const char *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    const sock_ctx *sc = ci ? ci->socket_context : NULL;
    if (!origin || !sc || !origin_listed(sc->sv->cfg, origin)) return;
    MHD_add_response_header(r, "Access-Control-Allow-Origin", origin);
    MHD_add_response_header(r, "Vary", "Origin");
}

/* Sends text (taken) with its content type; allow (may be NULL) becomes the Allow header,
 * provider (may be NULL) the x-locallm-provider header. */
static enum MHD_Result send_text_p(struct MHD_Connection *c, unsigned status, char *text,
                                   const char *type, const char *allow, const char *provider) {
    struct MHD_Response *r =
        MHD_create_response_from_buffer_with_free_callback(strlen(text), text, lm_free);
    if (!r) {
        lm_free(text);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    add_common_headers(r, c);
    if (allow) MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
    if (provider) MHD_add_response_header(r, "x-locallm-provider", provider);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_text(struct MHD_Connection *c, unsigned status, char *text,
                                 const char *type, const char *allow) {
    return send_text_p(c, status, text, type, allow, NULL);
}

static enum MHD_Result send_json(struct MHD_Connection *c, unsigned status, cJSON *j) {
    char *text = j ? lm_json_print(j) : NULL;
    cJSON_Delete(j);
    if (!text) return MHD_NO;
    return send_text(c, status, text, "application/json", NULL);
}

/* Ollama's error body: {"error": "..."}. */
static cJSON *ollama_error_json(const char *msg) {
    cJSON *o = cJSON_CreateObject();
    if (o) cJSON_AddStringToObject(o, "error", msg);
    return o;
}

/* An error in the shape of the request's API (enum srv_api). */
static enum MHD_Result send_api_error(struct MHD_Connection *c, int api, unsigned status, const char *param,
                                      const char *fmt, ...) LM_PRINTF(5, 6);
static enum MHD_Result send_api_error(struct MHD_Connection *c, int api, unsigned status, const char *param,
                                      const char *fmt, ...) {
    char raw[512], msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    /* the message may quote the request (a path, a method, a header): keep it valid UTF-8 */
    lm_escape_text(msg, sizeof msg, raw, strlen(raw));
    return send_json(c, status, api == SRV_API_OLLAMA ? ollama_error_json(msg) : srv_error_json(status, param, msg));
}


/* ---- jobs ---- */

struct job {
    srv *sv;
    srv_request rq;
    char id[48];
    long long created;
    lm_call *call;
    job *next;                /* in sv->jobs */
    /* what the job hands to the connection: SSE frames, the end; guarded by mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    lm_buf out;
    size_t rd;
    bool done;                /* the job wrote its last frame (or ended) */
    bool plain_error;         /* it failed before any output: the connection answers with a status */
    int refs;                 /* the job thread and the connection's side */
    _Atomic bool gone;        /* the client went away (or the response was dropped) */
    /* the job thread's own */
    lm_buf text;              /* content generated */
    size_t emitted;           /* bytes of text sent as deltas */
    bool sent_first;
    int fd;                   /* a dup of the client's socket, watched between tokens; or -1 */
    lm_gen_stats stats;
    lm_status status;
    char errmsg[640];
    char provider[64];        /* who answered: "local" or a cloud provider's name */
    const char *model_name;   /* model_id, or the cloud's model */
    lm_sentences *sent;       /* x_sentences: cuts the streamed content into whole sentences */
    cJSON *tool_calls;        /* of the reply, or NULL */
    uint64_t t0_ns;           /* when the request was taken (Ollama's total_duration) */
    /* rq.logprobs: the generated tokens' log-probabilities, in order (from token_fn) */
    struct lp_tok *lp;
    size_t n_lp, cap_lp;
    size_t lp_sent;           /* entries already sent in a chunk */
    size_t lp_end;            /* bytes of the tokens' texts so far */
    lm_buf lp_text;           /* the tokens' texts */
    lm_token lp_win[4];       /* the last ids, decoded together so a token's text is exact */
    int n_win;
    bool lp_oom;
};

/* One generated token: its text (from the model's decoder), where that text ends in the reply,
 * its log-probability and the most likely alternatives at its step. */
typedef struct lp_tok {
    size_t off, len;          /* its text in jb->lp_text */
    size_t end;               /* bytes of the reply up to and including it */
    float logprob;
    int32_t n_top;
    lm_token top_ids[LM_MAX_TOP_LOGPROBS];
    float top_lp[LM_MAX_TOP_LOGPROBS];
} lp_tok;

static void job_unref(job *jb) {
    pthread_mutex_lock(&jb->mu);
    bool last = --jb->refs == 0;
    pthread_mutex_unlock(&jb->mu);
    if (!last) return;
    if (jb->fd >= 0) close(jb->fd);
    srv_request_free(&jb->rq);
    lm_call_free(jb->call);
    lm_buf_free(&jb->out);
    lm_buf_free(&jb->text);
    lm_sentences_free(jb->sent);
    cJSON_Delete(jb->tool_calls);
    lm_free(jb->lp);
    lm_buf_free(&jb->lp_text);
    pthread_mutex_destroy(&jb->mu);
    pthread_cond_destroy(&jb->cv);
    lm_free(jb);
}

/* The client went away: stop the generation still running for it. */
static void job_cancel(job *jb) {
    atomic_store(&jb->gone, true);
    lm_call_cancel(jb->call);
}

static void job_push(job *jb, const char *s, size_t n) {
    pthread_mutex_lock(&jb->mu);
    lm_buf_append(&jb->out, s, n);
    pthread_cond_broadcast(&jb->cv);
    pthread_mutex_unlock(&jb->mu);
}

/* One streamed object: an SSE event, or an NDJSON line for Ollama. */
static void job_frame(job *jb, const cJSON *j) {
    char *text = j ? lm_json_print(j) : NULL;
    if (!text) return;
    bool ndjson = jb->rq.api == SRV_API_OLLAMA;
    pthread_mutex_lock(&jb->mu);
    if (!ndjson) lm_buf_puts(&jb->out, "data: ");
    lm_buf_puts(&jb->out, text);
    lm_buf_puts(&jb->out, ndjson ? "\n" : "\n\n");
    pthread_cond_broadcast(&jb->cv);
    pthread_mutex_unlock(&jb->mu);
    lm_free(text);
}

/* The model a cloud provider answers with, by its name. */
static const char *model_of(const srv *sv, const char *provider) {
    for (size_t i = 0; provider && i < sv->cfg->n_fallback; i++) {
        const lm_openai_params *op = &sv->cfg->fallback[i];
        if (strcmp(op->name ? op->name : "cloud", provider) == 0) return op->model ? op->model : sv->cfg->model_id;
    }
    return sv->cfg->model_id;
}

/* Who is answering, from the call handle (a fallback manager names the provider it is using). */
static void job_note_provider(job *jb) {
    const char *who = lm_call_answered_by(jb->call);
    if (who && strcmp(who, jb->provider) != 0) {
        pthread_mutex_lock(&jb->mu); /* the connection's thread reads it for the header */
        snprintf(jb->provider, sizeof jb->provider, "%s", who);
        jb->model_name = model_of(jb->sv, who);
        pthread_mutex_unlock(&jb->mu);
    }
}

/* ---- log-probabilities ---- */

/* Appends s as valid UTF-8: a byte that starts no whole character becomes U+FFFD (a token can
 * end inside a character; its "bytes" keep the exact ones). */
static void put_utf8(lm_buf *b, const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int k = lm_utf8_decode(s + i, n - i, &cp);
        if (cp == 0xFFFD && k == 1)
            lm_buf_puts(b, "\xef\xbf\xbd");
        else
            lm_buf_append(b, s + i, (size_t)k);
        i += (size_t)k;
    }
}

/* Appends the text a token adds after the ones before it: the last few ids decoded with and
 * without it, so that the decoder's rules about neighbours (a leading space) hold. */
static void token_text(const lm_model *m, const lm_token *win, int n, lm_buf *out) {
    char a[512], b[512];
    size_t la = 0, lb = 0;
    if (lm_model_detokenize(m, win, (size_t)n, false, a, sizeof a, &la, NULL) == LM_OK &&
        lm_model_detokenize(m, win, (size_t)n - 1, false, b, sizeof b, &lb, NULL) == LM_OK && lb <= la &&
        memcmp(a, b, lb) == 0) {
        lm_buf_append(out, a + lb, la - lb);
        return;
    }
    if (lm_model_detokenize(m, win + n - 1, 1, false, a, sizeof a, &la, NULL) == LM_OK) lm_buf_append(out, a, la);
}

/* lm_token_fn: records each generated token for the logprobs of the response. */
static int on_token(const lm_token_info *ti, void *user) {
    job *jb = user;
    if (jb->lp_oom) return 0;
    if (jb->n_lp == jb->cap_lp) {
        size_t cap = jb->cap_lp ? 2 * jb->cap_lp : 64;
        lp_tok *p = lm_realloc(jb->lp, cap * sizeof *p);
        if (!p) {
            jb->lp_oom = true; /* the reply goes on; its logprobs stop here */
            return 0;
        }
        jb->lp = p;
        jb->cap_lp = cap;
    }
    if (jb->n_win == (int)LM_ARRAY_LEN(jb->lp_win)) {
        memmove(jb->lp_win, jb->lp_win + 1, (LM_ARRAY_LEN(jb->lp_win) - 1) * sizeof *jb->lp_win);
        jb->n_win--;
    }
    jb->lp_win[jb->n_win++] = ti->id;
    lp_tok *t = &jb->lp[jb->n_lp++];
    t->off = jb->lp_text.len;
    token_text(jb->sv->model, jb->lp_win, jb->n_win, &jb->lp_text);
    if (jb->lp_text.oom) {
        jb->lp_oom = true;
        jb->n_lp--;
        return 0;
    }
    t->len = jb->lp_text.len - t->off;
    jb->lp_end += t->len;
    t->end = jb->lp_end;
    t->logprob = ti->logprob;
    t->n_top = LM_MIN(ti->n_top, LM_MAX_TOP_LOGPROBS);
    for (int32_t i = 0; i < t->n_top; i++) {
        t->top_ids[i] = ti->top_ids[i];
        t->top_lp[i] = ti->top_logprobs[i];
    }
    return 0;
}

/* s as a valid UTF-8 C string (put_utf8), malloc'd; NULL when out of memory. */
static char *utf8_copy(const char *s, size_t n) {
    lm_buf b = {0};
    put_utf8(&b, s, n);
    if (b.oom) {
        lm_buf_free(&b);
        return NULL;
    }
    return lm_buf_take(&b);
}

/* {"token": text, "logprob": lp, "bytes": [...]}, as OpenAI (and Ollama) spell one. */
static cJSON *tok_json(const char *s, size_t n, float lp) {
    cJSON *o = cJSON_CreateObject(), *bytes = cJSON_CreateArray();
    char *text = utf8_copy(s, n);
    if (!o || !bytes || !text) {
        cJSON_Delete(o);
        cJSON_Delete(bytes);
        lm_free(text);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) cJSON_AddItemToArray(bytes, cJSON_CreateNumber((unsigned char)s[i]));
    cJSON_AddStringToObject(o, "token", text);
    cJSON_AddNumberToObject(o, "logprob", lp);
    cJSON_AddItemToObject(o, "bytes", bytes);
    lm_free(text);
    return o;
}

/* The text of token id alone. */
static void alt_text(const lm_model *m, lm_token id, char *out, size_t cap, size_t *len) {
    *len = 0;
    if (lm_model_detokenize(m, &id, 1, false, out, cap, len, NULL) != LM_OK) *len = 0;
}

static cJSON *lp_entry(const job *jb, const lp_tok *t) {
    cJSON *o = tok_json(jb->lp_text.data + t->off, t->len, t->logprob);
    cJSON *top = o ? cJSON_AddArrayToObject(o, "top_logprobs") : NULL;
    for (int32_t i = 0; top && i < t->n_top; i++) {
        char s[256];
        size_t n;
        alt_text(jb->sv->model, t->top_ids[i], s, sizeof s, &n);
        cJSON_AddItemToArray(top, tok_json(s, n, t->top_lp[i]));
    }
    return o;
}

/* The legacy completions shape: parallel arrays, alternatives as {text: logprob} objects. */
static cJSON *lp_completions(const job *jb, size_t from, size_t to) {
    cJSON *o = cJSON_CreateObject();
    cJSON *toks = cJSON_AddArrayToObject(o, "tokens"), *lps = cJSON_AddArrayToObject(o, "token_logprobs");
    cJSON *tops = cJSON_AddArrayToObject(o, "top_logprobs"), *offs = cJSON_AddArrayToObject(o, "text_offset");
    if (!o || !toks || !lps || !tops || !offs) {
        cJSON_Delete(o);
        return NULL;
    }
    for (size_t k = from; k < to; k++) {
        const lp_tok *t = &jb->lp[k];
        char *text = utf8_copy(jb->lp_text.data + t->off, t->len);
        cJSON *top = cJSON_CreateObject();
        cJSON_AddItemToArray(toks, cJSON_CreateString(text ? text : ""));
        lm_free(text);
        cJSON_AddItemToArray(lps, cJSON_CreateNumber(t->logprob));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(t->end - t->len)));
        for (int32_t i = 0; top && i < t->n_top; i++) {
            char s[256];
            size_t n;
            alt_text(jb->sv->model, t->top_ids[i], s, sizeof s, &n);
            char *alt = utf8_copy(s, n);
            if (alt) cJSON_AddNumberToObject(top, alt, t->top_lp[i]);
            lm_free(alt);
        }
        cJSON_AddItemToArray(tops, top ? top : cJSON_CreateNull());
    }
    return o;
}

/* The logprobs of the tokens not sent yet whose text lies within the first limit bytes of the
 * reply (all of them when all is set), in the request's shape; NULL when not asked for. */
static cJSON *lp_take(job *jb, size_t limit, bool all) {
    if (!jb->rq.logprobs) return NULL;
    size_t from = jb->lp_sent, to = from;
    while (to < jb->n_lp && (all || jb->lp[to].end <= limit)) to++;
    jb->lp_sent = to;
    if (jb->rq.api == SRV_API_OPENAI && !jb->rq.chat) return lp_completions(jb, from, to);
    cJSON *arr = cJSON_CreateArray();
    for (size_t k = from; arr && k < to; k++) cJSON_AddItemToArray(arr, lp_entry(jb, &jb->lp[k]));
    if (jb->rq.api == SRV_API_OLLAMA || !arr) return arr;
    cJSON *o = cJSON_CreateObject();
    if (!o) {
        cJSON_Delete(arr);
        return NULL;
    }
    cJSON_AddItemToObject(o, "content", arr);
    cJSON_AddNullToObject(o, "refusal");
    return o;
}

/* lp_take for a streamed chunk: NULL when no token is due (the chunk says "logprobs": null). */
static cJSON *lp_chunk(job *jb, size_t limit, bool all) {
    size_t to = jb->lp_sent;
    while (to < jb->n_lp && (all || jb->lp[to].end <= limit)) to++;
    return to > jb->lp_sent ? lp_take(jb, limit, all) : NULL;
}

/* At the end: tokens whose text was never delivered belong to a stop string (or a tool call
 * held back) and are left out; otherwise every token is reported. */
static bool lp_all(const job *jb) {
    bool stop_string = jb->stats.finish == LM_FINISH_STOP && jb->stats.stop_token < 0 && jb->rq.gp.stop[0];
    return !stop_string && !jb->tool_calls;
}

static cJSON *chunk_base(job *jb) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "id", jb->id);
    cJSON_AddStringToObject(o, "object", jb->rq.chat ? "chat.completion.chunk" : "text_completion");
    cJSON_AddNumberToObject(o, "created", (double)jb->created);
    cJSON_AddStringToObject(o, "model", jb->model_name);
    if (jb->sv->cfg->n_fallback) cJSON_AddStringToObject(o, "provider", jb->provider);
    return o;
}

/* One streamed Ollama object that is not the last. */
static void emit_ollama(job *jb, const char *text, size_t n, const cJSON *tool_calls, cJSON *lp) {
    srv_ollama_out o = {.rq = &jb->rq, .model = jb->model_name, .text = text ? text : "", .len = text ? n : 0,
                        .tool_calls = tool_calls, .logprobs = lp};
    cJSON *r = srv_ollama_response(&o);
    job_frame(jb, r);
    cJSON_Delete(r);
    jb->sent_first = true;
}

/* One streamed choice. delta_text NULL: no content; tool_calls (borrowed) may be NULL;
 * finish NULL: still going; lp (taken) the tokens' logprobs or NULL. */
static void emit_chunk(job *jb, const char *delta_text, size_t n, const cJSON *tool_calls, const char *finish,
                       cJSON *lp) {
    if (jb->rq.api == SRV_API_OLLAMA) {
        emit_ollama(jb, delta_text, n, tool_calls, lp);
        return;
    }
    cJSON *o = chunk_base(jb), *choices = cJSON_CreateArray(), *ch = cJSON_CreateObject();
    if (!o || !choices || !ch) {
        cJSON_Delete(o);
        cJSON_Delete(choices);
        cJSON_Delete(ch);
        cJSON_Delete(lp);
        return;
    }
    char *tmp = NULL;
    if (delta_text) {
        tmp = lm_malloc(n + 1);
        if (tmp) {
            memcpy(tmp, delta_text, n);
            tmp[n] = '\0';
        }
    }
    cJSON_AddNumberToObject(ch, "index", 0);
    if (jb->rq.chat) {
        cJSON *delta = cJSON_CreateObject();
        if (delta) {
            if (!jb->sent_first) cJSON_AddStringToObject(delta, "role", "assistant");
            if (tmp)
                cJSON_AddStringToObject(delta, "content", tmp);
            else if (!jb->sent_first)
                cJSON_AddNullToObject(delta, "content");
            if (tool_calls) {
                cJSON *calls = cJSON_Duplicate(tool_calls, true);
                int k = 0;
                cJSON *tc;
                cJSON_ArrayForEach(tc, calls) cJSON_AddNumberToObject(tc, "index", k++);
                if (calls) cJSON_AddItemToObject(delta, "tool_calls", calls);
            }
            cJSON_AddItemToObject(ch, "delta", delta);
        }
    } else {
        cJSON_AddStringToObject(ch, "text", tmp ? tmp : "");
    }
    if (lp)
        cJSON_AddItemToObject(ch, "logprobs", lp);
    else
        cJSON_AddNullToObject(ch, "logprobs");
    if (finish)
        cJSON_AddStringToObject(ch, "finish_reason", finish);
    else
        cJSON_AddNullToObject(ch, "finish_reason");
    cJSON_AddItemToArray(choices, ch);
    cJSON_AddItemToObject(o, "choices", choices);
    job_frame(jb, o);
    cJSON_Delete(o);
    lm_free(tmp);
    jb->sent_first = true;
}

/* True when the peer closed the socket: an orderly shutdown reads as 0 bytes. Data the client
 * sent early (a pipelined request) stays queued: MSG_PEEK. */
static bool peer_closed(int fd) {
    char b;
    ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* lm_sentence_fn for x_sentences: one chunk per sentence (trimmed: white space between
 * sentences is not sent). */
static int on_sentence(const char *text, size_t len, void *user) {
    emit_chunk(user, text, len, NULL, NULL, NULL);
    return 0;
}

static int on_piece(const char *utf8, size_t len, void *user) {
    job *jb = user;
    lm_buf_append(&jb->text, utf8, len);
    if (atomic_load(&jb->gone)) return 1;
    if (jb->fd >= 0 && peer_closed(jb->fd)) {
        job_cancel(jb);
        return 1;
    }
    job_note_provider(jb);
    if (jb->rq.stream && jb->text.len > jb->emitted) {
        if (jb->sent) /* on_sentence emits each sentence once it is complete */
            lm_sentences_push(jb->sent, jb->text.data + jb->emitted, jb->text.len - jb->emitted);
        else
            emit_chunk(jb, jb->text.data + jb->emitted, jb->text.len - jb->emitted, NULL, NULL,
                       lp_chunk(jb, jb->text.len, false));
        jb->emitted = jb->text.len;
    }
    return atomic_load(&jb->sv->stopping) ? 1 : 0;
}

static const char *finish_name(const job *jb) {
    if (jb->tool_calls) return "tool_calls";
    return jb->stats.finish == LM_FINISH_LENGTH ? "length" : "stop";
}

static unsigned status_http(lm_status st) {
    switch (st) {
    case LM_ERR_FORMAT: case LM_ERR_CONTEXT: case LM_ERR_TEMPLATE: case LM_ERR_UNSUPPORTED:
    case LM_ERR_MISUSE: return 400;
    case LM_ERR_BUSY: return 429;
    case LM_ERR_NETWORK: return 502; /* a cloud provider failed */
    default: return 500;
    }
}

static cJSON *usage_json(const job *jb) {
    cJSON *u = cJSON_CreateObject(), *d = cJSON_CreateObject();
    if (!u || !d) {
        cJSON_Delete(u);
        cJSON_Delete(d);
        return NULL;
    }
    cJSON_AddNumberToObject(u, "prompt_tokens", jb->stats.n_prompt);
    cJSON_AddNumberToObject(u, "completion_tokens", jb->stats.n_generated);
    cJSON_AddNumberToObject(u, "total_tokens", jb->stats.n_prompt + jb->stats.n_generated);
    cJSON_AddNumberToObject(d, "cached_tokens", jb->stats.n_cached);
    cJSON_AddItemToObject(u, "prompt_tokens_details", d);
    return u;
}

static cJSON *timings_json(const job *jb) {
    cJSON *t = cJSON_CreateObject();
    if (!t) return NULL;
    cJSON_AddNumberToObject(t, "prefill_ms", jb->stats.prefill_ms);
    cJSON_AddNumberToObject(t, "ttft_ms", jb->stats.ttft_ms);
    cJSON_AddNumberToObject(t, "decode_tok_s", jb->stats.decode_tok_s);
    return t;
}

/* The content before a tool call, without the white space that led up to it. */
static size_t content_len(const job *jb) {
    const char *text = jb->text.data ? jb->text.data : "";
    size_t cl = jb->text.len;
    if (jb->tool_calls)
        while (cl && (text[cl - 1] == ' ' || text[cl - 1] == '\n' || text[cl - 1] == '\t')) cl--;
    return cl;
}

/* Ollama's last streamed object (text "") or whole reply. */
static cJSON *ollama_final(job *jb, const char *text, size_t n, const cJSON *tool_calls) {
    srv_ollama_out o = {.rq = &jb->rq, .model = jb->model_name, .text = text, .len = n, .tool_calls = tool_calls,
                        .logprobs = jb->rq.stream ? lp_chunk(jb, jb->text.len, lp_all(jb))
                                                  : lp_take(jb, jb->text.len, lp_all(jb)),
                        .stats = &jb->stats,
                        .done_reason = jb->stats.finish == LM_FINISH_LENGTH ? "length" : "stop",
                        .total_ns = lm_time_ns() - jb->t0_ns};
    return srv_ollama_response(&o);
}

/* The non-streamed response body. */
static cJSON *job_response(job *jb) {
    if (jb->rq.api == SRV_API_OLLAMA)
        return ollama_final(jb, jb->text.data ? jb->text.data : "", content_len(jb), jb->tool_calls);
    cJSON *o = cJSON_CreateObject(), *choices = cJSON_CreateArray(), *ch = cJSON_CreateObject();
    if (!o || !choices || !ch) {
        cJSON_Delete(o);
        cJSON_Delete(choices);
        cJSON_Delete(ch);
        return NULL;
    }
    const char *text = jb->text.data ? jb->text.data : "";
    cJSON_AddStringToObject(o, "id", jb->id);
    cJSON_AddStringToObject(o, "object", jb->rq.chat ? "chat.completion" : "text_completion");
    cJSON_AddNumberToObject(o, "created", (double)jb->created);
    cJSON_AddStringToObject(o, "model", jb->model_name);
    if (jb->sv->cfg->n_fallback) cJSON_AddStringToObject(o, "provider", jb->provider);
    cJSON_AddNumberToObject(ch, "index", 0);
    if (jb->rq.chat) {
        cJSON *msg = cJSON_CreateObject();
        if (msg) {
            cJSON_AddStringToObject(msg, "role", "assistant");
            size_t cl = content_len(jb);
            char *content = lm_malloc(cl + 1);
            if (content) {
                memcpy(content, text, cl);
                content[cl] = '\0';
            }
            if (jb->tool_calls && cl == 0)
                cJSON_AddNullToObject(msg, "content");
            else
                cJSON_AddStringToObject(msg, "content", content ? content : "");
            lm_free(content);
            if (jb->tool_calls) cJSON_AddItemToObject(msg, "tool_calls", cJSON_Duplicate(jb->tool_calls, true));
            cJSON_AddItemToObject(ch, "message", msg);
        }
    } else {
        cJSON_AddStringToObject(ch, "text", text);
    }
    cJSON *lp = lp_take(jb, jb->text.len, lp_all(jb));
    if (lp)
        cJSON_AddItemToObject(ch, "logprobs", lp);
    else
        cJSON_AddNullToObject(ch, "logprobs");
    cJSON_AddStringToObject(ch, "finish_reason", finish_name(jb));
    cJSON_AddItemToArray(choices, ch);
    cJSON_AddItemToObject(o, "choices", choices);
    cJSON_AddItemToObject(o, "usage", usage_json(jb));
    cJSON_AddItemToObject(o, "timings", timings_json(jb));
    return o;
}

/* After a streamed Ollama generation: tool calls, then the last object with the numbers. */
static void finish_ollama(job *jb) {
    cJSON *last = NULL;
    if (jb->status != LM_OK && jb->status != LM_ERR_CANCELLED) {
        last = ollama_error_json(jb->errmsg);
    } else if (!atomic_load(&jb->gone)) {
        if (jb->tool_calls) emit_ollama(jb, NULL, 0, jb->tool_calls, NULL);
        last = ollama_final(jb, "", 0, NULL);
    }
    job_frame(jb, last);
    cJSON_Delete(last);
}

/* After a streamed generation: the last sentence, tool calls, the finish chunk, usage, [DONE]. */
static void finish_stream(job *jb) {
    if (jb->rq.api == SRV_API_OLLAMA) {
        finish_ollama(jb);
        return;
    }
    if (jb->status != LM_OK && jb->status != LM_ERR_CANCELLED) {
        cJSON *e = srv_error_json(status_http(jb->status), NULL, jb->errmsg);
        job_frame(jb, e);
        cJSON_Delete(e);
    } else if (!atomic_load(&jb->gone)) {
        if (jb->sent) { /* the last sentence, even unterminated */
            if (jb->text.len > jb->emitted)
                lm_sentences_push(jb->sent, jb->text.data + jb->emitted, jb->text.len - jb->emitted);
            jb->emitted = jb->text.len;
            lm_sentences_flush(jb->sent);
        }
        if (jb->tool_calls) emit_chunk(jb, NULL, 0, jb->tool_calls, NULL, NULL);
        else if (!jb->sent_first && jb->rq.chat) emit_chunk(jb, "", 0, NULL, NULL, NULL);
        emit_chunk(jb, NULL, 0, NULL, finish_name(jb), lp_chunk(jb, jb->text.len, lp_all(jb)));
        if (jb->rq.include_usage) {
            cJSON *o = chunk_base(jb);
            if (o) {
                cJSON_AddItemToObject(o, "choices", cJSON_CreateArray());
                cJSON_AddItemToObject(o, "usage", usage_json(jb));
                cJSON_AddItemToObject(o, "timings", timings_json(jb));
                job_frame(jb, o);
                cJSON_Delete(o);
            }
        }
    }
    const char done[] = "data: [DONE]\n\n";
    job_push(jb, done, sizeof done - 1);
}

/* Runs the generation through the providers: the local model's slots (then the clouds when it
 * fails before its first piece), or the clouds alone while the model is not loaded. */
static void run_job(job *jb) {
    srv *sv = jb->sv;
    if (!jb->rq.seeded) jb->rq.gp.seed = lm_time_ns() ^ atomic_fetch_add(&sv->counter, 1);
    if (jb->rq.logprobs) {
        jb->rq.gp.token_fn = on_token;
        jb->rq.gp.token_user = jb;
    }
    bool ready = atomic_load(&sv->state) == LOAD_READY;
    lm_provider *p = ready ? (sv->with_local ? sv->with_local : sv->local) : sv->clouds_only;
    if (jb->rq.chat) {
        lm_chat_params cp = lm_chat_default_params();
        cp.tools_json = jb->rq.tools_json;
        cp.max_messages = 0; /* an API client sends the conversation it wants */
        jb->status = lm_provider_chat(p, jb->rq.msgs, jb->rq.n_msgs, &cp, &jb->rq.gp, on_piece, jb, jb->call,
                                      &jb->stats);
    } else {
        jb->status = lm_provider_complete(p, jb->rq.prompt, strlen(jb->rq.prompt), &jb->rq.gp, on_piece, jb, jb->call,
                                          &jb->stats);
    }
    job_note_provider(jb);
    const char *calls = lm_call_tool_calls(jb->call);
    if (calls && jb->status == LM_OK) lm_json_parse(calls, strlen(calls), "tool calls", &jb->tool_calls, NULL);
    if (jb->status != LM_OK) {
        const char *msg = lm_call_errmsg(jb->call);
        if (!ready && jb->rq.chat && !strncmp(msg, "no provider could answer: ", 26)) {
            /* the local model is part of the story: name it first, as the fallback manager does */
            int state = atomic_load(&sv->state);
            snprintf(jb->errmsg, sizeof jb->errmsg, "no provider could answer: local: %.250s; %s",
                     state == LOAD_FAILED ? sv->load_err : "the model is still loading", msg + 26);
        } else {
            snprintf(jb->errmsg, sizeof jb->errmsg, "%s", msg);
        }
    }
}

static void *job_main(void *arg) {
    job *jb = arg;
    srv *sv = jb->sv;
    /* x_sentences (chat without tools); without memory for it, token pieces are streamed */
    if (jb->rq.stream && jb->rq.x_sentences && jb->rq.chat && !jb->rq.tools_json)
        lm_sentences_new(NULL, on_sentence, jb, &jb->sent, NULL);
    run_job(jb);
    const char *skipped = lm_call_skipped(jb->call);
    if (skipped[0])
        slog(sv, LM_LOG_WARN, "%s: failed before its first token: %s; %s%s", jb->id, skipped,
             jb->status == LM_OK ? "answered by " : "", jb->status == LM_OK ? jb->provider : "no provider answered");
    bool gone = atomic_load(&jb->gone);
    bool plain = jb->status != LM_OK && !jb->sent_first;
    if (jb->rq.stream && !plain) finish_stream(jb);
    slog(sv, LM_LOG_INFO, "%s: %s by %s, %d prompt (%d cached) + %d generated tokens, finish %s", jb->id,
         jb->status == LM_OK ? "ok" : lm_status_str(jb->status), jb->provider, (int)jb->stats.n_prompt,
         (int)jb->stats.n_cached, (int)jb->stats.n_generated,
         gone ? "cancelled (client gone)" : lm_finish_str(jb->stats.finish));
    pthread_mutex_lock(&jb->mu);
    jb->plain_error = plain;
    jb->done = true;
    pthread_cond_broadcast(&jb->cv);
    pthread_mutex_unlock(&jb->mu);
    pthread_mutex_lock(&sv->mu);
    for (job **pp = &sv->jobs; *pp; pp = &(*pp)->next)
        if (*pp == jb) {
            *pp = jb->next;
            break;
        }
    sv->n_jobs--;
    pthread_cond_broadcast(&sv->cv);
    pthread_mutex_unlock(&sv->mu);
    job_unref(jb);
    return NULL;
}

/* ---- streams: MHD's reader takes the job's frames ---- */

typedef struct reader_ctx {
    job *jb;
    int fd; /* the client's socket, read only from MHD's thread of the connection; -1: unknown */
} reader_ctx;

/* The client closed its end (a barge-in: the voice front end drops the stream when the user
 * speaks again). MHD alone notices only when a write fails, which a socket buffer can put off
 * past the end of a fast generation; peeking at the socket each time MHD asks for data sees the
 * FIN at once. From MHD's thread of the connection (which owns fd). */
static bool stream_client_gone(reader_ctx *rc) {
    job *jb = rc->jb;
    if (atomic_load(&jb->gone)) return true;
    if (rc->fd < 0 || !peer_closed(rc->fd)) return false;
    job_cancel(jb);
    return true;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    reader_ctx *rc = cls;
    job *jb = rc->jb;
    (void)pos;
    pthread_mutex_lock(&jb->mu);
    while (jb->rd == jb->out.len && !jb->done && !atomic_load(&jb->sv->stopping)) {
        if (stream_client_gone(rc)) {
            pthread_mutex_unlock(&jb->mu);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        lm_cond_wait_ms(&jb->cv, &jb->mu, 200);
    }
    ssize_t ret;
    if (!jb->done && stream_client_gone(rc)) {
        ret = MHD_CONTENT_READER_END_WITH_ERROR;
    } else if (jb->rd < jb->out.len) {
        size_t n = jb->out.len - jb->rd;
        if (n > max) n = max;
        memcpy(buf, jb->out.data + jb->rd, n);
        jb->rd += n;
        if (jb->rd == jb->out.len) {
            lm_buf_reset(&jb->out);
            jb->rd = 0;
        }
        ret = (ssize_t)n;
    } else {
        ret = jb->done ? MHD_CONTENT_READER_END_OF_STREAM : MHD_CONTENT_READER_END_WITH_ERROR;
    }
    pthread_mutex_unlock(&jb->mu);
    return ret;
}

/* MHD drops the response: the transfer ended, well or not. Cancel a generation still running. */
static void stream_free(void *cls) {
    reader_ctx *rc = cls;
    pthread_mutex_lock(&rc->jb->mu);
    bool done = rc->jb->done; /* job_main sets it under the lock */
    pthread_mutex_unlock(&rc->jb->mu);
    if (!done) job_cancel(rc->jb);
    job_unref(rc->jb);
    lm_free(rc);
}

/* Waits until the job has output to send (stream) or has ended, watching the client's socket:
 * a client that leaves meanwhile cancels its call (a queued request leaves the queue). */
static bool wait_for_job(job *jb, int fd) {
    pthread_mutex_lock(&jb->mu);
    while (!jb->done && !(jb->rq.stream && jb->out.len > 0)) {
        if (fd >= 0 && !atomic_load(&jb->gone) && peer_closed(fd)) job_cancel(jb);
        lm_cond_wait_ms(&jb->cv, &jb->mu, 50);
    }
    bool done = jb->done;
    pthread_mutex_unlock(&jb->mu);
    return done;
}

/* ---- HTTP ---- */

/* GET routes first (kind <= R_MODEL), then POST ones. */
enum route_kind { R_NONE, R_HEALTH, R_ROOT, R_MODELS, R_TAGS, R_VERSION, R_MODEL, R_CHAT, R_COMPLETIONS,
                  R_OLLAMA_CHAT, R_GENERATE, R_SHOW };

typedef struct conn_ctx {
    lm_buf body;
    bool too_big;
    bool headers_checked;      /* the access handler's first call passed */
    const char *raw_uri;       /* the request target as MHD read it (its read buffer) */
    size_t raw_uri_len;        /* up to the first NUL */
} conn_ctx;

static srv_guard_conn *guard_conn(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    const sock_ctx *sc = ci ? ci->socket_context : NULL;
    return sc ? sc->gc : NULL;
}

/* The request line was read: the request's context starts here, so the access handler can tell
 * a target with a NUL in it (the C string MHD hands on ends early). */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c) {
    (void)cls;
    (void)c;
    conn_ctx *cc = lm_calloc(1, sizeof *cc);
    if (cc) {
        cc->raw_uri = uri;
        cc->raw_uri_len = strlen(uri);
    }
    return cc;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    srv *sv = cls;
    (void)toe;
    /* a kept-alive connection now waits for its next request */
    srv_guard_phase_set(sv->guard, guard_conn(c), SRV_GUARD_IDLE);
    conn_ctx *cc = *con_cls;
    if (!cc) return;
    lm_buf_free(&cc->body);
    lm_free(cc);
    *con_cls = NULL;
}


/* Compares without stopping at the first difference, so timing says nothing about the key. */
static bool key_matches(const char *given, const char *key) {
    size_t lg = strlen(given), lk = strlen(key);
    unsigned diff = (unsigned)(lg != lk);
    for (size_t i = 0; i < lk; i++) diff |= (unsigned char)((i < lg ? given[i] : 0) ^ key[i]);
    return diff == 0;
}

static bool authorized(srv *sv, struct MHD_Connection *c) {
    const char *key = sv->cfg->api_key;
    if (!key || !*key) return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncmp(h, "Bearer ", 7) != 0) return false;
    return key_matches(h + 7, key);
}

static enum MHD_Result handle_models(srv *sv, struct MHD_Connection *c) {
    cJSON *root = cJSON_CreateObject(), *data = cJSON_CreateArray(), *m = cJSON_CreateObject();
    if (!root || !data || !m) {
        cJSON_Delete(root);
        cJSON_Delete(data);
        cJSON_Delete(m);
        return MHD_NO;
    }
    cJSON_AddStringToObject(root, "object", "list");
    cJSON_AddStringToObject(m, "id", sv->cfg->model_id);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", (double)time(NULL));
    cJSON_AddStringToObject(m, "owned_by", "locallm");
    cJSON_AddItemToArray(data, m);
    cJSON_AddItemToObject(root, "data", data);
    return send_json(c, 200, root);
}

/* GET /v1/models/{id}: the served model, or OpenAI's 404 for another id. */
static enum MHD_Result handle_model(srv *sv, struct MHD_Connection *c, const char *id) {
    if (strcmp(id, sv->cfg->model_id) != 0) {
        char msg[400];
        char shown[200];
        lm_escape_text(shown, sizeof shown, id, strlen(id));
        snprintf(msg, sizeof msg, "The model '%s' does not exist (this server has '%s')", shown, sv->cfg->model_id);
        cJSON *j = srv_error_json(404, "model", msg);
        cJSON *e = cJSON_GetObjectItem(j, "error");
        if (e) {
            cJSON_ReplaceItemInObject(e, "type", cJSON_CreateString("invalid_request_error"));
            cJSON_ReplaceItemInObject(e, "code", cJSON_CreateString("model_not_found"));
        }
        return send_json(c, 404, j);
    }
    cJSON *m = cJSON_CreateObject();
    if (!m) return MHD_NO;
    cJSON_AddStringToObject(m, "id", sv->cfg->model_id);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", (double)time(NULL));
    cJSON_AddStringToObject(m, "owned_by", "locallm");
    return send_json(c, 200, m);
}

/* GET /api/tags, POST /api/show, GET /api/version. */
static enum MHD_Result handle_ollama_info(srv *sv, struct MHD_Connection *c, conn_ctx *cc, enum route_kind kind) {
    if (kind == R_VERSION) {
        cJSON *v = cJSON_CreateObject();
        if (!v) return MHD_NO;
        /* the Ollama API level followed (format as a JSON Schema, tools); locallm's own beside */
        cJSON_AddStringToObject(v, "version", "0.5.0");
        cJSON_AddStringToObject(v, "locallm_version", LM_VERSION);
        return send_json(c, 200, v);
    }
    bool ready = atomic_load(&sv->state) == LOAD_READY;
    srv_model_facts f = {sv->cfg->model_id, sv->cfg->model_path, ready ? sv->model : NULL,
                         ready ? sv->model->chat_template : NULL, ready ? sv->n_ctx : 0};
    if (kind == R_TAGS) return send_json(c, 200, srv_ollama_tags(&f));
    cJSON *root = NULL;
    lm_json_parse(cc->body.data ? cc->body.data : "", cc->body.len, "request body", &root, NULL);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsString(model)) model = cJSON_GetObjectItemCaseSensitive(root, "name"); /* older clients */
    char name[300];
    snprintf(name, sizeof name, "%.200s", cJSON_IsString(model) ? model->valuestring : "");
    cJSON_Delete(root);
    size_t n = strlen(sv->cfg->model_id);
    if (!name[0]) return send_api_error(c, SRV_API_OLLAMA, 400, NULL, "model is required");
    if (strncmp(name, sv->cfg->model_id, n) != 0 || (name[n] && strcmp(name + n, ":latest") != 0)) {
        char shown[220];
        lm_escape_text(shown, sizeof shown, name, strlen(name));
        return send_api_error(c, SRV_API_OLLAMA, 404, NULL, "model '%s' not found", shown);
    }
    if (!ready) return send_api_error(c, SRV_API_OLLAMA, 503, NULL, "%s",
                                      atomic_load(&sv->state) == LOAD_FAILED ? sv->load_err : "the model is still loading");
    return send_json(c, 200, srv_ollama_show(&f));
}

static enum MHD_Result handle_health(srv *sv, struct MHD_Connection *c) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return MHD_NO;
    int state = atomic_load(&sv->state);
    if (state == LOAD_READY) {
        cJSON_AddStringToObject(root, "status", "ok");
        /* what the engine did: forward passes, tokens through them, passes shared by requests */
        lm_engine_stats es;
        lm_engine_get_stats(sv->eng, &es);
        cJSON *e = cJSON_AddObjectToObject(root, "engine");
        if (e) {
            cJSON_AddNumberToObject(e, "passes", (double)es.n_passes);
            cJSON_AddNumberToObject(e, "tokens", (double)es.n_tokens);
            cJSON_AddNumberToObject(e, "shared_passes", (double)es.n_shared);
            cJSON_AddNumberToObject(e, "max_requests_in_pass", es.max_seqs_in_pass);
        }
        return send_json(c, 200, root);
    }
    if (state == LOAD_FAILED) {
        cJSON_AddStringToObject(root, "status", "error");
        cJSON_AddStringToObject(root, "message", sv->load_err);
    } else {
        cJSON_AddStringToObject(root, "status", "loading");
        cJSON_AddNumberToObject(root, "progress", (double)atomic_load(&sv->progress));
    }
    if (sv->cfg->n_fallback) { /* chat requests are answered meanwhile */
        cJSON *names = cJSON_AddArrayToObject(root, "fallback");
        for (size_t i = 0; names && i < sv->cfg->n_fallback; i++)
            cJSON_AddItemToArray(names, cJSON_CreateString(sv->cfg->fallback[i].name
                                                               ? sv->cfg->fallback[i].name : "cloud"));
    }
    return send_json(c, 503, root);
}

static enum MHD_Result send_stream(struct MHD_Connection *c, job *jb, int fd, int api);

/* Ollama's answer to a request without messages or prompt ("load the model"): it is loaded. */
static enum MHD_Result send_ollama_loaded(struct MHD_Connection *c, job *jb) {
    cJSON *r = srv_ollama_loaded(&jb->rq, jb->model_name);
    char *text = r ? lm_json_print(r) : NULL;
    cJSON_Delete(r);
    bool stream = jb->rq.stream;
    job_unref(jb);
    if (!text) return MHD_NO;
    if (!stream) return send_text(c, 200, text, "application/json", NULL);
    lm_buf b = {0};
    lm_buf_puts(&b, text);
    lm_buf_putc(&b, '\n');
    lm_free(text);
    char *line = b.oom ? NULL : lm_buf_take(&b);
    lm_buf_free(&b);
    return line ? send_text(c, 200, line, "application/x-ndjson", NULL) : MHD_NO;
}

/* A generation: chat (/v1/chat/completions, /api/chat) or not (/v1/completions, /api/generate)
 * in the shape of api (enum srv_api). */
static enum MHD_Result handle_generate(srv *sv, struct MHD_Connection *c, conn_ctx *cc, bool chat, int api) {
    int state = atomic_load(&sv->state);
    bool cloud = state != LOAD_READY && chat && sv->clouds_only;
    if (state != LOAD_READY && !cloud)
        return send_api_error(c, api, 503, NULL, "%s", state == LOAD_FAILED ? sv->load_err : "the model is still loading");
    job *jb = lm_calloc(1, sizeof *jb);
    if (!jb) return send_api_error(c, api, 500, NULL, "out of memory");
    if (lm_call_new(&jb->call, NULL) != LM_OK) {
        lm_free(jb);
        return send_api_error(c, api, 500, NULL, "out of memory");
    }
    jb->t0_ns = lm_time_ns();
    pthread_mutex_init(&jb->mu, NULL);
    pthread_cond_init(&jb->cv, NULL);
    jb->refs = 1;
    jb->sv = sv;
    jb->fd = -1;
    jb->model_name = cloud ? model_of(sv, sv->cfg->fallback[0].name ? sv->cfg->fallback[0].name : "cloud") : sv->cfg->model_id;
    snprintf(jb->provider, sizeof jb->provider, "%s",
             cloud ? (sv->cfg->fallback[0].name ? sv->cfg->fallback[0].name : "cloud") : "local");
    srv_reqerr re;
    const char *body = cc->body.data ? cc->body.data : "";
    bool parsed = api == SRV_API_OLLAMA
                      ? srv_ollama_parse(body, cc->body.len, chat, sv->n_ctx, sv->cfg->model_id, sv->cfg->max_messages,
                                         &jb->rq, &re)
                      : srv_request_parse(body, cc->body.len, chat, sv->n_ctx, sv->cfg->max_messages, &jb->rq, &re);
    if (!parsed) {
        job_unref(jb);
        slog(sv, LM_LOG_INFO, "%d %s", re.status, re.msg);
        return send_api_error(c, api, (unsigned)re.status, re.param, "%s", re.msg);
    }
    if (jb->rq.ollama_load) return send_ollama_loaded(c, jb);
    jb->created = (long long)time(NULL);
    snprintf(jb->id, sizeof jb->id, "%s-%016llx%04x", chat ? "chatcmpl" : "cmpl", (unsigned long long)lm_time_ns(),
             (unsigned)(atomic_fetch_add(&sv->counter, 1) & 0xffff));
    if (cloud)
        slog(sv, LM_LOG_INFO, "%s: the local model is %s: asking %s", jb->id, state == LOAD_FAILED ? "unavailable" : "still loading",
             jb->provider);
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    int fd = ci ? ci->connect_fd : -1;
    /* the job owns a dup: MHD's own number may be closed and reused while the job still runs */
    if (fd >= 0) jb->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    pthread_mutex_lock(&sv->mu);
    bool stopping = atomic_load(&sv->stopping);
    if (!stopping) {
        jb->next = sv->jobs;
        sv->jobs = jb;
        sv->n_jobs++;
        jb->refs = 2;
    }
    pthread_mutex_unlock(&sv->mu);
    pthread_t th;
    if (stopping || pthread_create(&th, NULL, job_main, jb) != 0) {
        if (!stopping) {
            pthread_mutex_lock(&sv->mu);
            for (job **pp = &sv->jobs; *pp; pp = &(*pp)->next)
                if (*pp == jb) {
                    *pp = jb->next;
                    break;
                }
            sv->n_jobs--;
            jb->refs = 1;
            pthread_cond_broadcast(&sv->cv);
            pthread_mutex_unlock(&sv->mu);
        }
        job_unref(jb);
        return stopping ? send_api_error(c, api, 503, NULL, "the server is shutting down")
                        : send_api_error(c, api, 500, NULL, "cannot start the generation");
    }
    pthread_detach(th);
    if (wait_for_job(jb, fd) && (jb->plain_error || !jb->rq.stream)) {
        enum MHD_Result ret;
        if (jb->status != LM_OK) {
            ret = send_api_error(c, api, status_http(jb->status), NULL, "%s", jb->errmsg);
        } else {
            cJSON *resp = job_response(jb);
            char *text = resp ? lm_json_print(resp) : NULL;
            cJSON_Delete(resp);
            ret = text ? send_text_p(c, 200, text, "application/json", NULL, jb->provider) : MHD_NO;
        }
        job_unref(jb);
        return ret;
    }
    /* streamed: the first frames are ready; MHD's reader takes the rest as they come */
    return send_stream(c, jb, fd, api);
}

/* The streamed response of a job whose first frames are ready; takes the connection's
 * reference to the job. */
static enum MHD_Result send_stream(struct MHD_Connection *c, job *jb, int fd, int api) {
    reader_ctx *rc = lm_calloc(1, sizeof *rc);
    struct MHD_Response *r = rc ? MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, rc, stream_free)
                                : NULL;
    if (!r) {
        lm_free(rc);
        job_cancel(jb);
        job_unref(jb);
        return send_api_error(c, api, 500, NULL, "out of memory");
    }
    rc->jb = jb; /* the connection's reference moves to the reader */
    rc->fd = fd;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                            api == SRV_API_OLLAMA ? "application/x-ndjson" : "text/event-stream");
    add_common_headers(r, c);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    pthread_mutex_lock(&jb->mu);
    MHD_add_response_header(r, "x-locallm-provider", jb->provider);
    pthread_mutex_unlock(&jb->mu);
    /* Each token is a small frame: without TCP_NODELAY, Nagle's algorithm may hold one back
       until the client acknowledges the previous one (a delayed ACK: up to 40 ms or more). */
    if (fd >= 0) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    enum MHD_Result ret = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ret;
}

/* ---- routes ---- */

typedef struct route {
    enum route_kind kind;
    int api;          /* enum srv_api: the shape of its errors */
    size_t arg;       /* R_MODEL: where the id starts in the URL */
} route;

static route find_route(const char *url) {
    static const struct { const char *path; enum route_kind kind; int api; } table[] = {
        {"/health", R_HEALTH, SRV_API_OPENAI}, {"/", R_ROOT, SRV_API_OLLAMA},
        {"/v1/models", R_MODELS, SRV_API_OPENAI}, {"/models", R_MODELS, SRV_API_OPENAI},
        {"/v1/chat/completions", R_CHAT, SRV_API_OPENAI}, {"/chat/completions", R_CHAT, SRV_API_OPENAI},
        {"/v1/completions", R_COMPLETIONS, SRV_API_OPENAI}, {"/completions", R_COMPLETIONS, SRV_API_OPENAI},
        {"/api/chat", R_OLLAMA_CHAT, SRV_API_OLLAMA}, {"/api/generate", R_GENERATE, SRV_API_OLLAMA},
        {"/api/tags", R_TAGS, SRV_API_OLLAMA}, {"/api/show", R_SHOW, SRV_API_OLLAMA},
        {"/api/version", R_VERSION, SRV_API_OLLAMA},
    };
    for (size_t i = 0; i < LM_ARRAY_LEN(table); i++)
        if (strcmp(url, table[i].path) == 0) return (route){table[i].kind, table[i].api, 0};
    static const char *const model_prefixes[] = {"/v1/models/", "/models/"};
    for (size_t i = 0; i < LM_ARRAY_LEN(model_prefixes); i++) {
        size_t n = strlen(model_prefixes[i]);
        if (strncmp(url, model_prefixes[i], n) == 0 && url[n]) return (route){R_MODEL, SRV_API_OPENAI, n};
    }
    return (route){R_NONE, strncmp(url, "/api/", 5) == 0 ? SRV_API_OLLAMA : SRV_API_OPENAI, 0};
}

/* A CORS preflight: a browser asks whether its origin may send the request it describes. */
static enum MHD_Result handle_preflight(srv *sv, struct MHD_Connection *c) {
    const char *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
    if (!origin || !origin_listed(sv->cfg, origin))
        return send_api_error(c, SRV_API_OPENAI, 403, NULL,
                              "origin '%.100s' is not allowed (serve --cors ORIGIN allows one)", origin ? origin : "(none)");
    struct MHD_Response *r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!r) return MHD_NO;
    const char *want = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Access-Control-Request-Headers");
    add_common_headers(r, c);
    MHD_add_response_header(r, "Access-Control-Allow-Methods", "GET, POST, HEAD, OPTIONS");
    MHD_add_response_header(r, "Access-Control-Allow-Headers", want ? want : "Authorization, Content-Type");
    MHD_add_response_header(r, "Access-Control-Max-Age", "600");
    enum MHD_Result ret = MHD_queue_response(c, 204, r);
    MHD_destroy_response(r);
    return ret;
}

static const char *header(struct MHD_Connection *c, const char *name) {
    return MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
}

/* The request line pieces sit one after another in MHD's read buffer ("GET\0/x\0HTTP/1.1"),
 * so a target longer than its C string holds a NUL. MHD cuts the query ('?') and decodes %xx
 * in place, which only shortens the string: only the raw target's length counts. */
static bool target_has_nul(const conn_ctx *cc, const char *version) {
    if (!cc->raw_uri) return false;
    return version > cc->raw_uri && (size_t)(version - cc->raw_uri) > cc->raw_uri_len + 1 &&
           (size_t)(version - cc->raw_uri) < cc->raw_uri_len + 4096 &&
           memchr(cc->raw_uri + cc->raw_uri_len + 1, ' ', (size_t)(version - cc->raw_uri) - cc->raw_uri_len - 1) == NULL;
}

/* The access handler's first call, with the headers and before any of the body: everything
 * that can refuse the request without reading its body does, so an unauthenticated or
 * unwanted upload is never buffered. Returns MHD_YES to go on reading the body. */
static enum MHD_Result check_head(srv *sv, struct MHD_Connection *c, conn_ctx *cc, const char *url,
                                  const char *method, const char *version, bool *answered) {
    *answered = true;
    const char *host = header(c, MHD_HTTP_HEADER_HOST), *origin = header(c, "Origin");
    /* RFC 9112 3.2: a server MUST answer 400 to an HTTP/1.1 request without Host */
    if (!host && strcmp(version, MHD_HTTP_VERSION_1_1) == 0)
        return send_api_error(c, SRV_API_OPENAI, 400, NULL, "the request has no Host header (required in HTTP/1.1)");
    if (target_has_nul(cc, version))
        return send_api_error(c, SRV_API_OPENAI, 400, NULL, "the request target contains a NUL byte");
    if (!srv_host_allowed(sv->cfg, host)) {
        slog(sv, 1, "403 Host '%.100s' refused", host);
        return send_api_error(c, SRV_API_OPENAI, 403, NULL,
                              "Host '%.100s' is not allowed: this server listens on a loopback address and takes "
                              "only localhost, 127.0.0.1 and [::1] (start it with --allow-host NAME to take another)",
                              host);
    }
    if (!srv_origin_allowed(sv->cfg, origin)) {
        slog(sv, 1, "403 Origin '%.100s' refused", origin);
        return send_api_error(c, SRV_API_OPENAI, 403, NULL,
                              "Origin '%.100s' is not allowed (start the server with --cors ORIGIN to allow it)", origin);
    }
    const char *te = header(c, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    if (te && strcasecmp(te, "chunked") != 0)
        return send_api_error(c, SRV_API_OPENAI, 400, NULL, "Transfer-Encoding '%.60s' is not supported (only chunked)", te);
    route rt = find_route(url);
    bool preflight = strcmp(method, "OPTIONS") == 0; /* answered after the (empty) body */
    if (!preflight && rt.kind == R_NONE) return send_api_error(c, rt.api, 404, NULL, "no such path: %.200s", url);
    bool want_get = rt.kind <= R_MODEL;
    bool ok = preflight || (want_get ? strcmp(method, "GET") == 0 || (rt.kind == R_ROOT && strcmp(method, "HEAD") == 0)
                                     : strcmp(method, "POST") == 0);
    if (!ok) {
        char msg[300], esc[300];
        snprintf(msg, sizeof msg, "method %.20s is not allowed on %s (use %s)", method, url, want_get ? "GET" : "POST");
        lm_escape_text(esc, sizeof esc, msg, strlen(msg));
        cJSON *j = rt.api == SRV_API_OLLAMA ? ollama_error_json(esc) : srv_error_json(405, NULL, esc);
        char *text = j ? lm_json_print(j) : NULL;
        cJSON_Delete(j);
        return text ? send_text(c, 405, text, "application/json", want_get ? "GET" : "POST") : MHD_NO;
    }
    if (!preflight && rt.kind != R_HEALTH && rt.kind != R_ROOT && !authorized(sv, c))
        return send_api_error(c, rt.api, 401, NULL, "invalid or missing API key (send 'Authorization: Bearer <key>')");
    /* Refuse a declared oversized body before reading it. */
    const char *cl = header(c, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl && strtoull(cl, NULL, 10) > SRV_MAX_BODY)
        return send_api_error(c, SRV_API_OPENAI, 413, NULL, "the request body is larger than %u bytes", SRV_MAX_BODY);
    *answered = false;
    cc->headers_checked = true;
    srv_guard_phase_set(sv->guard, guard_conn(c), SRV_GUARD_BODY);
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_size, void **con_cls) {
    srv *sv = cls;
    conn_ctx *cc = *con_cls;
    if (!cc) {
        cc = lm_calloc(1, sizeof *cc);
        if (!cc) return MHD_NO;
        *con_cls = cc;
    }
    if (!cc->headers_checked) {
        bool answered;
        enum MHD_Result ret = check_head(sv, c, cc, url, method, version, &answered);
        if (answered) srv_guard_phase_set(sv->guard, guard_conn(c), SRV_GUARD_BUSY);
        return ret;
    }
    if (*upload_size) {
        if (!cc->too_big && cc->body.len + *upload_size > SRV_MAX_BODY) {
            cc->too_big = true;
            lm_buf_free(&cc->body);
        }
        if (!cc->too_big) lm_buf_append(&cc->body, upload_data, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    srv_guard_phase_set(sv->guard, guard_conn(c), SRV_GUARD_BUSY);
    if (cc->too_big)
        return send_api_error(c, SRV_API_OPENAI, 413, NULL, "the request body is larger than %u bytes", SRV_MAX_BODY);
    if (cc->body.oom) return send_api_error(c, SRV_API_OPENAI, 500, NULL, "out of memory reading the request body");

    (void)version;
    if (strcmp(method, "OPTIONS") == 0) return handle_preflight(sv, c);
    route rt = find_route(url); /* method, key and path were checked on the headers (check_head) */
    if (rt.kind == R_HEALTH) return handle_health(sv, c);
    if (rt.kind == R_ROOT) return send_text(c, 200, lm_strdup("Ollama is running (locallm " LM_VERSION ")"),
                                            "text/plain; charset=utf-8", NULL);
    switch (rt.kind) {
    case R_MODELS: return handle_models(sv, c);
    case R_MODEL: return handle_model(sv, c, url + rt.arg);
    case R_TAGS: case R_SHOW: case R_VERSION: return handle_ollama_info(sv, c, cc, rt.kind);
    default: return handle_generate(sv, c, cc, rt.kind == R_CHAT || rt.kind == R_OLLAMA_CHAT, rt.api);
    }
}

/* ---- model loading ---- */

static int on_progress(float fraction, const char *stage, void *user) {
    srv *sv = user;
    (void)stage;
    atomic_store(&sv->progress, fraction);
    return atomic_load(&sv->stopping) ? 1 : 0;
}

static void *load_thread(void *arg) {
    srv *sv = arg;
    lm_model_params mp = lm_model_default_params();
    mp.n_threads = sv->cfg->n_threads;
    mp.progress = on_progress;
    mp.progress_user = sv;
    lm_error err = {0};
    mp.chat_template = sv->cfg->chat_template;
    lm_model *m = NULL;
    lm_status st = lm_model_load(sv->cfg->model_path, &mp, &m, &err);
    if (st == LM_OK) {
        sv->model = m;
        lm_engine_params ep = lm_engine_default_params();
        ep.max_seqs = sv->cfg->n_parallel > 0 ? sv->cfg->n_parallel : 1;
        st = lm_engine_new(m, &ep, &sv->eng, &err);
    }
    if (st == LM_OK) {
        lm_local_params lp = lm_local_default_params();
        lp.n_slots = sv->cfg->n_parallel > 0 ? sv->cfg->n_parallel : 1;
        lp.n_queue = sv->cfg->n_queue > 0 ? sv->cfg->n_queue : 16;
        lp.session.n_ctx = sv->cfg->n_ctx;
        st = lm_provider_local_new(sv->eng, &lp, &sv->local, &err);
    }
    if (st == LM_OK && sv->cfg->n_fallback) {
        lm_provider *list[1 + 16];
        size_t n = 0;
        list[n++] = sv->local;
        for (size_t i = 0; i < sv->cfg->n_fallback && n < LM_ARRAY_LEN(list); i++) list[n++] = sv->clouds[i];
        st = lm_provider_fallback_new(list, n, &sv->with_local, &err);
    }
    if (st != LM_OK) {
        snprintf(sv->load_err, sizeof sv->load_err, "cannot load the model: %s", err.msg[0] ? err.msg : lm_status_str(st));
        slog(sv, LM_LOG_ERROR, "%s", sv->load_err);
        atomic_store(&sv->state, LOAD_FAILED);
        return NULL;
    }
    lm_model_info info;
    lm_model_get_info(m, &info);
    sv->n_ctx = sv->cfg->n_ctx > 0 ? sv->cfg->n_ctx
                                   : (info.n_ctx_train > 0 && info.n_ctx_train < 4096 ? info.n_ctx_train : 4096);
    atomic_store(&sv->progress, 1.0f);
    atomic_store(&sv->state, LOAD_READY);
    slog(sv, LM_LOG_INFO, "model %s ready (%d slots, context %d)", sv->cfg->model_id, sv->cfg->n_parallel > 0 ? sv->cfg->n_parallel : 1,
         (int)sv->n_ctx);
    return NULL;
}

/* ---- the server ---- */

static void free_providers(srv *sv) {
    lm_provider_free(sv->with_local);
    lm_provider_free(sv->clouds_only);
    lm_provider_free(sv->local);
    for (size_t i = 0; sv->clouds && i < sv->cfg->n_fallback; i++) lm_provider_free(sv->clouds[i]);
    lm_free(sv->clouds);
    lm_engine_free(sv->eng);
    lm_model_free(sv->model);
}

/* The address to bind: a numeric IPv4 or IPv6 address, or a host name (getaddrinfo; its first
 * IPv4 address when it has one, so "localhost" binds 127.0.0.1 as clients mostly try first). */
static lm_status resolve_host(const char *host, uint16_t port, struct sockaddr_storage *out, lm_error *err) {
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    char name[256];
    size_t n = strlen(host);
    /* "[::1]" as a URL writes it */
    if (n > 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof name) {
        memcpy(name, host + 1, n - 2);
        name[n - 2] = 0;
        host = name;
    }
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0)
        return lm_fail(err, LM_ERR_MISUSE, "--host: cannot resolve '%s': %s", host, gai_strerror(rc));
    const struct addrinfo *pick = NULL;
    for (const struct addrinfo *a = res; a; a = a->ai_next)
        if (a->ai_family == AF_INET || (a->ai_family == AF_INET6 && !pick)) {
            if (!pick || a->ai_family == AF_INET) pick = a;
            if (a->ai_family == AF_INET) break;
        }
    if (!pick) {
        freeaddrinfo(res);
        return lm_fail(err, LM_ERR_MISUSE, "--host: '%s' has no IPv4 or IPv6 address", host);
    }
    memset(out, 0, sizeof *out);
    memcpy(out, pick->ai_addr, pick->ai_addrlen);
    if (pick->ai_family == AF_INET) ((struct sockaddr_in *)out)->sin_port = htons(port);
    else ((struct sockaddr_in6 *)out)->sin6_port = htons(port);
    freeaddrinfo(res);
    return LM_OK;
}

lm_status srv_run(const srv_config *cfg, const volatile sig_atomic_t *stop, lm_error *err) {
    srv sv;
    memset(&sv, 0, sizeof sv);
    sv.cfg = cfg;
    atomic_init(&sv.state, LOAD_LOADING);
    atomic_init(&sv.progress, 0.0f);
    atomic_init(&sv.stopping, false);
    atomic_init(&sv.counter, 0);
    if (cfg->n_fallback > 16) return lm_fail(err, LM_ERR_MISUSE, "at most 16 fallback providers (got %zu)", cfg->n_fallback);
    if (cfg->n_fallback) {
        sv.clouds = lm_calloc(cfg->n_fallback, sizeof *sv.clouds);
        if (!sv.clouds) return lm_fail_nomem(err, "providers");
        for (size_t i = 0; i < cfg->n_fallback; i++) {
            lm_status st = lm_provider_openai_new(&cfg->fallback[i], &sv.clouds[i], err);
            if (st) {
                free_providers(&sv);
                return st;
            }
        }
        lm_status st = lm_provider_fallback_new(sv.clouds, cfg->n_fallback, &sv.clouds_only, err);
        if (st) {
            free_providers(&sv);
            return st;
        }
    }
    pthread_mutex_init(&sv.mu, NULL);
    pthread_cond_init(&sv.cv, NULL);

    const char *host = cfg->host && *cfg->host ? cfg->host : "127.0.0.1";
    struct sockaddr_storage ss;
    /* the front (front.c) listens and hands each connection over once its first head is whole */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_NO_LISTEN_SOCKET |
                     MHD_USE_ITC;
    lm_status rs = resolve_host(host, cfg->port, &ss, err);
    if (rs) {
        free_providers(&sv);
        return rs;
    }
    if (ss.ss_family == AF_INET6) flags |= MHD_USE_IPv6;
    const struct sockaddr *sa = (const struct sockaddr *)&ss;
    unsigned per_ip = cfg->max_conns_per_ip ? cfg->max_conns_per_ip : 64u;
    unsigned header_s = cfg->header_timeout_s ? cfg->header_timeout_s : 10u;
    srv_front *front = NULL;
    uint16_t port = cfg->port;
    lm_error ferr = {0};
    if (srv_front_new(sa, ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in),
                      header_s, per_ip > 1 ? per_ip / 2 : 1u, &front, &port, &ferr)) {
        free_providers(&sv);
        return lm_fail(err, LM_ERR_NETWORK, "cannot listen on %s port %u: %s", host, (unsigned)cfg->port, ferr.msg);
    }
    lm_status gst = srv_guard_new(header_s, cfg->body_timeout_s ? cfg->body_timeout_s : 60u, per_ip > 1 ? per_ip / 2 : 1u,
                                  &sv.guard, err);
    if (gst) {
        srv_front_free(front);
        free_providers(&sv);
        return gst;
    }
    /* MHD answers a line it cannot hold in a connection's memory (a chunk line with a long
     * extension) with its own HTML 500; 256 KB per connection (touched only as used) takes
     * extensions of 200 KB to the handler, which answers JSON. The idle timeout stays long: a slow reader of a stream is the client's business, and the
     * guard bounds the headers and the body from their start. */
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, &sv,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, &sv, MHD_OPTION_NOTIFY_CONNECTION, on_connection, &sv,
        MHD_OPTION_URI_LOG_CALLBACK, on_uri, &sv, MHD_OPTION_CONNECTION_LIMIT, 256u,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)SRV_CONN_MEMORY,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, per_ip, MHD_OPTION_CONNECTION_TIMEOUT, 600u, MHD_OPTION_END);
    lm_status st = d ? srv_front_start(front, d, err) : lm_fail(err, LM_ERR_NOMEM, "cannot start the HTTP daemon");
    if (st) {
        if (d) MHD_stop_daemon(d);
        srv_front_free(front);
        srv_guard_free(sv.guard);
        free_providers(&sv);
        return st;
    }
    if (cfg->on_listen) cfg->on_listen(host, port, cfg->listen_user);

    pthread_t loader;
    bool loading = pthread_create(&loader, NULL, load_thread, &sv) == 0;
    if (!loading) {
        snprintf(sv.load_err, sizeof sv.load_err, "cannot start the loading thread");
        atomic_store(&sv.state, LOAD_FAILED);
    }
    while (!*stop) {
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
    }
    slog(&sv, LM_LOG_INFO, "stopping");
    atomic_store(&sv.stopping, true);
    if (loading) pthread_join(loader, NULL);
    pthread_mutex_lock(&sv.mu);
    for (job *jb = sv.jobs; jb; jb = jb->next) lm_call_cancel(jb->call);
    pthread_mutex_unlock(&sv.mu);
    srv_front_stop(front);
    MHD_stop_daemon(d);
    srv_front_free(front);
    srv_guard_free(sv.guard);
    /* jobs run in their own threads: wait for them before freeing the providers they use */
    pthread_mutex_lock(&sv.mu);
    while (sv.n_jobs > 0) pthread_cond_wait(&sv.cv, &sv.mu);
    pthread_mutex_unlock(&sv.mu);
    free_providers(&sv);
    pthread_mutex_destroy(&sv.mu);
    pthread_cond_destroy(&sv.cv);
    return LM_OK;
}
