/* server/server.c: the OpenAI-compatible HTTP server on libmicrohttpd.
 * Owns: routing, authentication, body limits, background model loading, generation jobs, SSE
 * streaming, noticing a client that went away, and OpenAI-shaped responses and errors.
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

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
} srv;

static void slog(srv *sv, int level, const char *fmt, ...) LM_PRINTF(3, 4);
static void slog(srv *sv, int level, const char *fmt, ...) {
    if (!sv->cfg->log) return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    sv->cfg->log(level, msg, sv->cfg->log_user);
}

/* ---- responses ---- */

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

static const char *error_type(unsigned status) {
    switch (status) {
    case 401: return "authentication_error";
    case 404: return "not_found_error";
    case 429: return "rate_limit_error";
    case 500: case 502: case 503: return "server_error";
    default: return "invalid_request_error";
    }
}

static cJSON *error_json(unsigned status, const char *param, const char *msg) {
    cJSON *root = cJSON_CreateObject(), *e = cJSON_CreateObject();
    if (!root || !e) {
        cJSON_Delete(root);
        cJSON_Delete(e);
        return NULL;
    }
    cJSON_AddStringToObject(e, "message", msg);
    cJSON_AddStringToObject(e, "type", error_type(status));
    if (param && *param)
        cJSON_AddStringToObject(e, "param", param);
    else
        cJSON_AddNullToObject(e, "param");
    if (status == 401)
        cJSON_AddStringToObject(e, "code", "invalid_api_key");
    else
        cJSON_AddNullToObject(e, "code");
    cJSON_AddItemToObject(root, "error", e);
    return root;
}

static enum MHD_Result send_error(struct MHD_Connection *c, unsigned status, const char *param,
                                  const char *fmt, ...) LM_PRINTF(4, 5);
static enum MHD_Result send_error(struct MHD_Connection *c, unsigned status, const char *param,
                                  const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return send_json(c, status, error_json(status, param, msg));
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
};

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

static void job_frame(job *jb, const cJSON *j) {
    char *text = j ? lm_json_print(j) : NULL;
    if (!text) return;
    pthread_mutex_lock(&jb->mu);
    lm_buf_puts(&jb->out, "data: ");
    lm_buf_puts(&jb->out, text);
    lm_buf_puts(&jb->out, "\n\n");
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

/* One streamed choice. delta_text NULL: no content; tool_calls (borrowed) may be NULL;
 * finish NULL: still going. */
static void emit_chunk(job *jb, const char *delta_text, size_t n, const cJSON *tool_calls, const char *finish) {
    cJSON *o = chunk_base(jb), *choices = cJSON_CreateArray(), *ch = cJSON_CreateObject();
    if (!o || !choices || !ch) {
        cJSON_Delete(o);
        cJSON_Delete(choices);
        cJSON_Delete(ch);
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
        cJSON_AddNullToObject(ch, "logprobs");
    } else {
        cJSON_AddStringToObject(ch, "text", tmp ? tmp : "");
        cJSON_AddNullToObject(ch, "logprobs");
    }
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
    emit_chunk(user, text, len, NULL, NULL);
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
            emit_chunk(jb, jb->text.data + jb->emitted, jb->text.len - jb->emitted, NULL, NULL);
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

/* The non-streamed response body. */
static cJSON *job_response(job *jb) {
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
            /* the content before a tool call, without the white space that led up to it */
            size_t cl = jb->text.len;
            if (jb->tool_calls)
                while (cl && (text[cl - 1] == ' ' || text[cl - 1] == '\n' || text[cl - 1] == '\t')) cl--;
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
    cJSON_AddNullToObject(ch, "logprobs");
    cJSON_AddStringToObject(ch, "finish_reason", finish_name(jb));
    cJSON_AddItemToArray(choices, ch);
    cJSON_AddItemToObject(o, "choices", choices);
    cJSON_AddItemToObject(o, "usage", usage_json(jb));
    cJSON_AddItemToObject(o, "timings", timings_json(jb));
    return o;
}

/* After a streamed generation: the last sentence, tool calls, the finish chunk, usage, [DONE]. */
static void finish_stream(job *jb) {
    if (jb->status != LM_OK && jb->status != LM_ERR_CANCELLED) {
        cJSON *e = error_json(status_http(jb->status), NULL, jb->errmsg);
        job_frame(jb, e);
        cJSON_Delete(e);
    } else if (!atomic_load(&jb->gone)) {
        if (jb->sent) { /* the last sentence, even unterminated */
            if (jb->text.len > jb->emitted)
                lm_sentences_push(jb->sent, jb->text.data + jb->emitted, jb->text.len - jb->emitted);
            jb->emitted = jb->text.len;
            lm_sentences_flush(jb->sent);
        }
        if (jb->tool_calls) emit_chunk(jb, NULL, 0, jb->tool_calls, NULL);
        else if (!jb->sent_first && jb->rq.chat) emit_chunk(jb, "", 0, NULL, NULL);
        emit_chunk(jb, NULL, 0, NULL, finish_name(jb));
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
        jb->sent = lm_sentences_new(NULL, on_sentence, jb);
    run_job(jb);
    const char *skipped = lm_call_skipped(jb->call);
    if (skipped[0])
        slog(sv, 1, "%s: failed before its first token: %s; %s%s", jb->id, skipped,
             jb->status == LM_OK ? "answered by " : "", jb->status == LM_OK ? jb->provider : "no provider answered");
    bool gone = atomic_load(&jb->gone);
    bool plain = jb->status != LM_OK && !jb->sent_first;
    if (jb->rq.stream && !plain) finish_stream(jb);
    slog(sv, 2, "%s: %s by %s, %d prompt (%d cached) + %d generated tokens, finish %s", jb->id,
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
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 200 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&jb->cv, &jb->mu, &ts);
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
    if (!rc->jb->done) job_cancel(rc->jb);
    job_unref(rc->jb);
    lm_free(rc);
}

/* Waits until the job has output to send (stream) or has ended, watching the client's socket:
 * a client that leaves meanwhile cancels its call (a queued request leaves the queue). */
static bool wait_for_job(job *jb, int fd) {
    pthread_mutex_lock(&jb->mu);
    while (!jb->done && !(jb->rq.stream && jb->out.len > 0)) {
        if (fd >= 0 && !atomic_load(&jb->gone) && peer_closed(fd)) job_cancel(jb);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 50 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&jb->cv, &jb->mu, &ts);
    }
    bool done = jb->done;
    pthread_mutex_unlock(&jb->mu);
    return done;
}

/* ---- HTTP ---- */

typedef struct conn_ctx {
    lm_buf body;
    bool too_big;
} conn_ctx;

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
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

static enum MHD_Result handle_generate(srv *sv, struct MHD_Connection *c, conn_ctx *cc, bool chat) {
    int state = atomic_load(&sv->state);
    bool cloud = state != LOAD_READY && chat && sv->clouds_only;
    if (state != LOAD_READY && !cloud)
        return send_error(c, 503, NULL, "%s", state == LOAD_FAILED ? sv->load_err : "the model is still loading");
    job *jb = lm_calloc(1, sizeof *jb);
    if (!jb) return send_error(c, 500, NULL, "out of memory");
    if (lm_call_new(&jb->call, NULL) != LM_OK) {
        lm_free(jb);
        return send_error(c, 500, NULL, "out of memory");
    }
    pthread_mutex_init(&jb->mu, NULL);
    pthread_cond_init(&jb->cv, NULL);
    jb->refs = 1;
    jb->sv = sv;
    jb->fd = -1;
    jb->model_name = cloud ? model_of(sv, sv->cfg->fallback[0].name ? sv->cfg->fallback[0].name : "cloud") : sv->cfg->model_id;
    snprintf(jb->provider, sizeof jb->provider, "%s",
             cloud ? (sv->cfg->fallback[0].name ? sv->cfg->fallback[0].name : "cloud") : "local");
    srv_reqerr re;
    if (!srv_request_parse(cc->body.data ? cc->body.data : "", cc->body.len, chat, sv->n_ctx, &jb->rq, &re)) {
        job_unref(jb);
        slog(sv, 2, "400 %s", re.msg);
        return send_error(c, (unsigned)re.status, re.param, "%s", re.msg);
    }
    jb->created = (long long)time(NULL);
    snprintf(jb->id, sizeof jb->id, "%s-%016llx%04x", chat ? "chatcmpl" : "cmpl", (unsigned long long)lm_time_ns(),
             (unsigned)(atomic_fetch_add(&sv->counter, 1) & 0xffff));
    if (cloud)
        slog(sv, 2, "%s: the local model is %s: asking %s", jb->id, state == LOAD_FAILED ? "unavailable" : "still loading",
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
        return stopping ? send_error(c, 503, NULL, "the server is shutting down")
                        : send_error(c, 500, NULL, "cannot start the generation");
    }
    pthread_detach(th);
    if (wait_for_job(jb, fd) && (jb->plain_error || !jb->rq.stream)) {
        enum MHD_Result ret;
        if (jb->status != LM_OK) {
            ret = send_error(c, status_http(jb->status), NULL, "%s", jb->errmsg);
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
    reader_ctx *rc = lm_calloc(1, sizeof *rc);
    struct MHD_Response *r = rc ? MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, rc, stream_free)
                                : NULL;
    if (!r) {
        lm_free(rc);
        job_cancel(jb);
        job_unref(jb);
        return send_error(c, 500, NULL, "out of memory");
    }
    rc->jb = jb; /* the connection's reference moves to the reader */
    rc->fd = fd;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
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

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_size, void **con_cls) {
    srv *sv = cls;
    conn_ctx *cc = *con_cls;
    if (!cc) {
        cc = lm_calloc(1, sizeof *cc);
        if (!cc) return MHD_NO;
        *con_cls = cc;
        /* Refuse a declared oversized body before reading it. */
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > SRV_MAX_BODY)
            return send_error(c, 413, NULL, "the request body is larger than %u bytes", SRV_MAX_BODY);
        return MHD_YES;
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
    if (cc->too_big)
        return send_error(c, 413, NULL, "the request body is larger than %u bytes", SRV_MAX_BODY);
    if (cc->body.oom) return send_error(c, 500, NULL, "out of memory reading the request body");

    bool get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0;
    enum { R_NONE, R_HEALTH, R_MODELS, R_CHAT, R_COMPLETIONS } route = R_NONE;
    if (strcmp(url, "/health") == 0) route = R_HEALTH;
    else if (strcmp(url, "/v1/models") == 0 || strcmp(url, "/models") == 0) route = R_MODELS;
    else if (strcmp(url, "/v1/chat/completions") == 0 || strcmp(url, "/chat/completions") == 0) route = R_CHAT;
    else if (strcmp(url, "/v1/completions") == 0 || strcmp(url, "/completions") == 0) route = R_COMPLETIONS;
    if (route == R_NONE) return send_error(c, 404, NULL, "no such path: %.200s", url);
    bool want_get = route == R_HEALTH || route == R_MODELS;
    if ((want_get && !get) || (!want_get && !post)) {
        char msg[300];
        snprintf(msg, sizeof msg, "method %.20s is not allowed on %s (use %s)", method, url,
                 want_get ? "GET" : "POST");
        cJSON *j = error_json(405, NULL, msg);
        char *text = j ? lm_json_print(j) : NULL;
        cJSON_Delete(j);
        return text ? send_text(c, 405, text, "application/json", want_get ? "GET" : "POST") : MHD_NO;
    }
    if (route == R_HEALTH) return handle_health(sv, c);
    if (!authorized(sv, c))
        return send_error(c, 401, NULL, "invalid or missing API key (send 'Authorization: Bearer <key>')");
    if (route == R_MODELS) return handle_models(sv, c);
    return handle_generate(sv, c, cc, route == R_CHAT);
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
        slog(sv, 0, "%s", sv->load_err);
        atomic_store(&sv->state, LOAD_FAILED);
        return NULL;
    }
    lm_model_info info;
    lm_model_get_info(m, &info);
    sv->n_ctx = sv->cfg->n_ctx > 0 ? sv->cfg->n_ctx
                                   : (info.n_ctx_train > 0 && info.n_ctx_train < 4096 ? info.n_ctx_train : 4096);
    atomic_store(&sv->progress, 1.0f);
    atomic_store(&sv->state, LOAD_READY);
    slog(sv, 2, "model %s ready (%d slots, context %d)", sv->cfg->model_id, sv->cfg->n_parallel > 0 ? sv->cfg->n_parallel : 1,
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
    struct sockaddr_in a4;
    struct sockaddr_in6 a6;
    memset(&a4, 0, sizeof a4);
    memset(&a6, 0, sizeof a6);
    const struct sockaddr *sa;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION;
    if (inet_pton(AF_INET, host, &a4.sin_addr) == 1) {
        a4.sin_family = AF_INET;
        a4.sin_port = htons(cfg->port);
        sa = (const struct sockaddr *)&a4;
    } else if (inet_pton(AF_INET6, host, &a6.sin6_addr) == 1) {
        a6.sin6_family = AF_INET6;
        a6.sin6_port = htons(cfg->port);
        sa = (const struct sockaddr *)&a6;
        flags |= MHD_USE_IPv6;
    } else {
        free_providers(&sv);
        return lm_fail(err, LM_ERR_MISUSE, "--host: '%s' is not a numeric IPv4 or IPv6 address", host);
    }
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, cfg->port, NULL, NULL, on_request, &sv, MHD_OPTION_SOCK_ADDR, sa,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, &sv, MHD_OPTION_CONNECTION_LIMIT, 256u,
        MHD_OPTION_CONNECTION_TIMEOUT, 600u, MHD_OPTION_END);
    if (!d) {
        free_providers(&sv);
        return lm_fail(err, LM_ERR_NETWORK, "cannot listen on %s port %u (in use or not allowed?)", host,
                       (unsigned)cfg->port);
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    uint16_t port = di ? di->port : cfg->port;
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
    slog(&sv, 2, "stopping");
    atomic_store(&sv.stopping, true);
    if (loading) pthread_join(loader, NULL);
    pthread_mutex_lock(&sv.mu);
    for (job *jb = sv.jobs; jb; jb = jb->next) lm_call_cancel(jb->call);
    pthread_mutex_unlock(&sv.mu);
    MHD_stop_daemon(d);
    /* jobs run in their own threads: wait for them before freeing the providers they use */
    pthread_mutex_lock(&sv.mu);
    while (sv.n_jobs > 0) pthread_cond_wait(&sv.cv, &sv.mu);
    pthread_mutex_unlock(&sv.mu);
    free_providers(&sv);
    pthread_mutex_destroy(&sv.mu);
    pthread_cond_destroy(&sv.cv);
    return LM_OK;
}
