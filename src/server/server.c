/* server/server.c: the OpenAI-compatible HTTP server on libmicrohttpd.
 * Owns: routing, authentication, body limits, background model loading, slots (one lm_session
 * each, chosen by the longest shared conversation prefix), the bounded wait queue, generation
 * jobs, SSE streaming and cancelling a generation whose client disconnected.
 * Does not own: request validation (server/request.c), generation (session/).
 * Threads: MHD runs one thread per connection, so a handler may block on a slot and run a
 * non-streamed generation itself; a streamed one runs in its own thread and hands SSE frames to
 * MHD's content reader through a small locked buffer. */
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

typedef struct slot {
    lm_session *s;
    bool busy;
    char *key;      /* what it served last (server/request.c make_key), owned */
    uint64_t used;  /* tick of its last use */
} slot;

typedef struct srv {
    const srv_config *cfg;
    lm_model *model;
    _Atomic int state;
    _Atomic float progress;
    char load_err[320];
    int32_t n_ctx;
    slot *slots;
    int n_slots;
    pthread_mutex_t mu;
    pthread_cond_t cv;   /* a slot was freed, a job ended, or stopping */
    int n_waiting, n_jobs;
    uint64_t tick;
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

/* ---- slots ---- */

static size_t common_prefix(const char *a, const char *b) {
    size_t n = 0;
    while (a[n] && a[n] == b[n]) n++;
    return n;
}

/* Waits for a free slot and takes the one that shares the longest prefix with key (the most
 * recently used among equals). Returns the index, -1 when the queue is full, -2 when stopping. */
static int acquire_slot(srv *sv, const char *key) {
    pthread_mutex_lock(&sv->mu);
    int best = -1;
    bool waited = false;
    for (;;) {
        if (atomic_load(&sv->stopping)) break;
        size_t best_len = 0;
        for (int i = 0; i < sv->n_slots; i++) {
            slot *sl = &sv->slots[i];
            if (sl->busy) continue;
            size_t len = sl->key ? common_prefix(sl->key, key) : 0;
            if (best < 0 || len > best_len ||
                (len == best_len && sl->used > sv->slots[best].used)) {
                best = i;
                best_len = len;
            }
        }
        if (best >= 0) break;
        if (!waited) {
            if (sv->n_waiting >= (sv->cfg->n_queue > 0 ? sv->cfg->n_queue : 16)) {
                pthread_mutex_unlock(&sv->mu);
                return -1;
            }
            sv->n_waiting++;
            waited = true;
        }
        pthread_cond_wait(&sv->cv, &sv->mu);
    }
    if (waited) sv->n_waiting--;
    if (best >= 0) {
        sv->slots[best].busy = true;
        sv->n_jobs++;
    }
    pthread_mutex_unlock(&sv->mu);
    return best >= 0 ? best : -2;
}

/* Gives the slot back; key (owned, may be NULL) becomes what it served. */
static void release_slot(srv *sv, int i, char *key) {
    pthread_mutex_lock(&sv->mu);
    slot *sl = &sv->slots[i];
    if (key) {
        lm_free(sl->key);
        sl->key = key;
    }
    sl->busy = false;
    sl->used = ++sv->tick;
    pthread_cond_broadcast(&sv->cv);
    pthread_mutex_unlock(&sv->mu);
}

/* ---- streams: a generation thread writes SSE frames, MHD's reader takes them ---- */

typedef struct stream {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    lm_buf out;
    size_t rd;
    bool done;            /* the job wrote its last frame */
    _Atomic bool gone;    /* the client went away (or the response was dropped) */
    int refs;             /* the job and the response */
    lm_session *session;  /* to cancel; NULL once the job finished */
    lm_provider *provider; /* the same for a cloud answer */
} stream;

static void stream_unref(stream *st) {
    pthread_mutex_lock(&st->mu);
    bool last = --st->refs == 0;
    pthread_mutex_unlock(&st->mu);
    if (!last) return;
    lm_buf_free(&st->out);
    pthread_mutex_destroy(&st->mu);
    pthread_cond_destroy(&st->cv);
    lm_free(st);
}

static void stream_push(stream *st, const char *s, size_t n) {
    pthread_mutex_lock(&st->mu);
    lm_buf_append(&st->out, s, n);
    pthread_cond_broadcast(&st->cv);
    pthread_mutex_unlock(&st->mu);
}

static void stream_frame(stream *st, const cJSON *j) {
    char *text = j ? lm_json_print(j) : NULL;
    if (!text) return;
    pthread_mutex_lock(&st->mu);
    lm_buf_puts(&st->out, "data: ");
    lm_buf_puts(&st->out, text);
    lm_buf_puts(&st->out, "\n\n");
    pthread_cond_broadcast(&st->cv);
    pthread_mutex_unlock(&st->mu);
    lm_free(text);
}

typedef struct reader_ctx {
    stream *st;
    srv *sv;
    int fd; /* the client's socket, read only from MHD's thread of the connection; -1: unknown */
} reader_ctx;

static bool peer_closed(int fd);

/* The client is gone: stop the generation still running for it. With st->mu held. */
static void stream_cancel_locked(stream *st) {
    atomic_store(&st->gone, true);
    if (st->session && !st->done) lm_session_cancel(st->session);
    if (st->provider && !st->done) lm_provider_cancel(st->provider);
}

/* The client closed its end (a barge-in: the voice front end drops the stream when the user
 * speaks again). MHD alone notices only when a write fails, which a socket buffer can put off
 * past the end of a fast generation; peeking at the socket each time MHD asks for data sees the
 * FIN at once. Called with st->mu held, from MHD's thread of the connection (which owns fd). */
static bool stream_client_gone(reader_ctx *rc) {
    stream *st = rc->st;
    if (atomic_load(&st->gone)) return true;
    if (rc->fd < 0 || !peer_closed(rc->fd)) return false;
    stream_cancel_locked(st);
    return true;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    reader_ctx *rc = cls;
    stream *st = rc->st;
    (void)pos;
    pthread_mutex_lock(&st->mu);
    while (st->rd == st->out.len && !st->done && !atomic_load(&rc->sv->stopping)) {
        if (stream_client_gone(rc)) {
            pthread_mutex_unlock(&st->mu);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 200 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&st->cv, &st->mu, &ts);
    }
    ssize_t ret;
    if (!st->done && stream_client_gone(rc)) {
        ret = MHD_CONTENT_READER_END_WITH_ERROR;
    } else if (st->rd < st->out.len) {
        size_t n = st->out.len - st->rd;
        if (n > max) n = max;
        memcpy(buf, st->out.data + st->rd, n);
        st->rd += n;
        if (st->rd == st->out.len) {
            lm_buf_reset(&st->out);
            st->rd = 0;
        }
        ret = (ssize_t)n;
    } else {
        ret = st->done ? MHD_CONTENT_READER_END_OF_STREAM : MHD_CONTENT_READER_END_WITH_ERROR;
    }
    pthread_mutex_unlock(&st->mu);
    return ret;
}

/* MHD drops the response: the transfer ended, well or not. Cancel a generation still running. */
static void stream_free(void *cls) {
    reader_ctx *rc = cls;
    stream *st = rc->st;
    pthread_mutex_lock(&st->mu);
    stream_cancel_locked(st);
    pthread_mutex_unlock(&st->mu);
    stream_unref(st);
    lm_free(rc);
}

/* ---- generation jobs ---- */

static const char TC_OPEN[] = "<tool_call>";

typedef struct job {
    srv *sv;
    srv_request rq;
    int slot;
    char id[48];
    long long created;
    stream *st;          /* NULL: not streamed */
    lm_buf text;         /* everything generated */
    size_t emitted;      /* bytes of text already sent as deltas */
    bool sent_first;
    bool holding;        /* tools: the text may be a tool call, keep it back */
    int fd;              /* the client's socket, watched for a hang-up between tokens; or -1.
                            Streamed: a dup owned by the job (MHD's own number may be closed
                            and reused while the job still runs), closed by job_free */
    bool fd_owned;
    lm_gen_stats stats;
    int32_t n_prompt, n_cached; /* completions: counted here */
    lm_status status;
    char errmsg[640];
    bool cloud;               /* answered by srv_config.fallback: no slot */
    char provider[64];        /* who answered: "local" or a cloud provider's name */
    const char *model_name;   /* the model responses name: model_id or the cloud's model */
    lm_sentences *sent;       /* x_sentences: cuts the streamed content into whole sentences */
} job;

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

/* One streamed choice. delta_text NULL: no content; tool_calls (taken) may be NULL;
 * finish NULL: still going. */
static void emit_chunk(job *jb, const char *delta_text, size_t n, cJSON *tool_calls,
                       const char *finish) {
    cJSON *o = chunk_base(jb), *choices = cJSON_CreateArray(), *ch = cJSON_CreateObject();
    if (!o || !choices || !ch) {
        cJSON_Delete(o);
        cJSON_Delete(choices);
        cJSON_Delete(ch);
        cJSON_Delete(tool_calls);
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
                int k = 0;
                cJSON *tc;
                cJSON_ArrayForEach(tc, tool_calls) cJSON_AddNumberToObject(tc, "index", k++);
                cJSON_AddItemToObject(delta, "tool_calls", tool_calls);
                tool_calls = NULL;
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
    stream_frame(jb->st, o);
    cJSON_Delete(o);
    cJSON_Delete(tool_calls);
    lm_free(tmp);
    jb->sent_first = true;
}

/* True while text (n bytes) could still become "<tool_call>" or starts with it. */
static bool maybe_tool_call(const char *text, size_t n) {
    size_t k = strlen(TC_OPEN);
    size_t i = 0;
    while (i < n && (text[i] == ' ' || text[i] == '\n')) i++;
    size_t m = n - i < k ? n - i : k;
    return memcmp(text + i, TC_OPEN, m) == 0;
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
    if (jb->fd >= 0 && peer_closed(jb->fd)) {
        if (jb->st) atomic_store(&jb->st->gone, true);
        return 1;
    }
    if (jb->st) {
        if (atomic_load(&jb->st->gone)) return 1;
        if (jb->holding) {
            if (maybe_tool_call(jb->text.data, jb->text.len)) return 0;
            jb->holding = false;
        }
        if (jb->text.len > jb->emitted) {
            if (jb->sent) /* on_sentence emits each sentence once it is complete */
                lm_sentences_push(jb->sent, jb->text.data + jb->emitted, jb->text.len - jb->emitted);
            else
                emit_chunk(jb, jb->text.data + jb->emitted, jb->text.len - jb->emitted, NULL, NULL);
            jb->emitted = jb->text.len;
        }
    }
    return atomic_load(&jb->sv->stopping) ? 1 : 0;
}

static lm_status run_completion(job *jb, lm_session *s) {
    const lm_model *m = jb->sv->model;
    const char *p = jb->rq.prompt;
    size_t len = strlen(p), n = 0;
    uint32_t flags = LM_TOK_PARSE_SPECIAL | LM_TOK_ADD_SPECIAL;
    lm_error err = {0};
    lm_status st = lm_tokenize(m, p, len, flags, NULL, 0, &n, &err);
    if (st != LM_OK && st != LM_ERR_TOO_SMALL) goto fail;
    lm_token *ids = lm_malloc((n ? n : 1) * sizeof *ids);
    if (!ids) return LM_ERR_NOMEM;
    st = lm_tokenize(m, p, len, flags, ids, n, &n, &err);
    if (st != LM_OK) {
        lm_free(ids);
        goto fail;
    }
    if (n == 0) {
        lm_free(ids);
        snprintf(jb->errmsg, sizeof jb->errmsg, "'prompt' gives no tokens");
        return LM_ERR_FORMAT;
    }
    /* Reuse the cached tokens the prompt starts with; at least one is evaluated for logits. */
    size_t n_past = lm_session_n_past(s), k = 0;
    const lm_token *cached = lm_session_tokens(s);
    while (k < n_past && k + 1 < n && cached[k] == ids[k]) k++;
    st = lm_session_truncate(s, k);
    if (st == LM_OK)
        st = lm_session_generate(s, ids + k, n - k, &jb->rq.gp, on_piece, jb, &jb->stats);
    lm_free(ids);
    jb->n_prompt = (int32_t)n;
    jb->n_cached = (int32_t)k;
    if (st != LM_OK) snprintf(jb->errmsg, sizeof jb->errmsg, "%s", lm_session_errmsg(s));
    return st;
fail:
    snprintf(jb->errmsg, sizeof jb->errmsg, "%s", err.msg);
    return st;
}

/* Answers a chat job from the cloud providers of srv_config.fallback, in order: one that fails
 * before its first piece is skipped (the reasons are joined into the error when all fail); once
 * text has streamed, a failure is reported. A provider runs one call at a time, so each job
 * makes its own client (a few strdups; curl connects per call anyway). The loop is the library's
 * fallback manager unrolled, so that the chunks name the provider while it streams. */
static void run_cloud(job *jb) {
    srv *sv = jb->sv;
    const srv_config *cfg = sv->cfg;
    lm_buf why = {0};
    jb->status = LM_ERR_NETWORK;
    /* The provider hands tool calls on as Hermes text: held back and parsed as for local. */
    jb->holding = jb->rq.tools_json != NULL;
    for (size_t i = 0; i < cfg->n_fallback && !atomic_load(&sv->stopping); i++) {
        const lm_openai_params *op = &cfg->fallback[i];
        snprintf(jb->provider, sizeof jb->provider, "%s", op->name ? op->name : "cloud");
        jb->model_name = op->model ? op->model : cfg->model_id;
        lm_provider *p = NULL;
        lm_error err = {0};
        jb->status = lm_provider_openai_new(op, &p, &err);
        if (jb->status == LM_OK) {
            if (jb->st) {
                pthread_mutex_lock(&jb->st->mu);
                jb->st->provider = atomic_load(&jb->st->gone) ? NULL : p;
                pthread_mutex_unlock(&jb->st->mu);
                if (atomic_load(&jb->st->gone)) {
                    lm_provider_free(p);
                    jb->status = LM_ERR_CANCELLED;
                    break;
                }
            }
            lm_chat_params cp = lm_chat_default_params();
            cp.tools_json = jb->rq.tools_json;
            cp.max_messages = 0;
            memset(&jb->stats, 0, sizeof jb->stats);
            jb->status = lm_provider_chat(p, jb->rq.msgs, jb->rq.n_msgs, &cp, &jb->rq.gp,
                                          on_piece, jb, &jb->stats, &err);
            if (jb->st) {
                pthread_mutex_lock(&jb->st->mu);
                jb->st->provider = NULL;
                pthread_mutex_unlock(&jb->st->mu);
            }
            lm_provider_free(p);
        }
        if (jb->status == LM_OK || jb->status == LM_ERR_CANCELLED || jb->text.len) {
            if (jb->status != LM_OK) snprintf(jb->errmsg, sizeof jb->errmsg, "%s", err.msg);
            break;
        }
        lm_buf_printf(&why, "%s%s", why.len ? "; " : "", err.msg[0] ? err.msg : lm_status_str(jb->status));
        slog(sv, 1, "%s: %s failed: %s", jb->id, jb->provider, err.msg);
    }
    if (jb->status != LM_OK && jb->status != LM_ERR_CANCELLED && !jb->text.len) {
        char local[330];
        int state = atomic_load(&sv->state);
        snprintf(local, sizeof local, "%.320s", state == LOAD_READY ? jb->errmsg
                                            : state == LOAD_FAILED ? sv->load_err
                                                                   : "the model is still loading");
        snprintf(jb->errmsg, sizeof jb->errmsg, "no provider could answer: local: %.250s; %s", local,
                 why.data ? why.data : "stopping");
    }
    lm_buf_free(&why);
    jb->n_prompt = jb->stats.n_prompt;
    jb->n_cached = jb->stats.n_cached;
}

/* Runs the generation on the job's slot; the slot is released afterwards. A chat that fails
 * before its first piece goes to the cloud providers when there are any. */
static void run_job(job *jb) {
    srv *sv = jb->sv;
    if (!jb->rq.seeded) jb->rq.gp.seed = lm_time_ns() ^ atomic_fetch_add(&sv->counter, 1);
    if (jb->cloud) {
        run_cloud(jb);
        return;
    }
    lm_session *s = sv->slots[jb->slot].s;
    if (jb->st) {
        pthread_mutex_lock(&jb->st->mu);
        jb->st->session = s;
        pthread_mutex_unlock(&jb->st->mu);
    }
    jb->holding = jb->rq.tools_json != NULL;
    if (jb->rq.chat) {
        lm_chat_params cp = lm_chat_default_params();
        cp.tools_json = jb->rq.tools_json;
        cp.max_messages = 0; /* an API client sends the conversation it wants */
        jb->status = lm_session_chat(s, jb->rq.msgs, jb->rq.n_msgs, &cp, &jb->rq.gp, on_piece, jb,
                                     &jb->stats);
        if (jb->status != LM_OK)
            snprintf(jb->errmsg, sizeof jb->errmsg, "%s", lm_session_errmsg(s));
        jb->n_prompt = jb->stats.n_prompt;
        jb->n_cached = jb->stats.n_cached;
    } else {
        jb->status = run_completion(jb, s);
    }
    if (jb->st) {
        pthread_mutex_lock(&jb->st->mu);
        jb->st->session = NULL;
        pthread_mutex_unlock(&jb->st->mu);
    }
    /* The slot remembers this conversation only if its cache holds it. */
    char *key = jb->status == LM_OK ? jb->rq.key : NULL;
    if (key) jb->rq.key = NULL;
    release_slot(sv, jb->slot, key);
    if (jb->status != LM_OK && jb->status != LM_ERR_CANCELLED && jb->rq.chat &&
        sv->cfg->n_fallback && !jb->sent_first && jb->text.len == 0 &&
        !atomic_load(&sv->stopping) && !(jb->st && atomic_load(&jb->st->gone))) {
        slog(sv, 1, "%s: the local model failed before its first token (%s); asking %s", jb->id,
             jb->errmsg, sv->cfg->fallback[0].name ? sv->cfg->fallback[0].name : "the cloud");
        memset(&jb->stats, 0, sizeof jb->stats);
        run_cloud(jb);
    }
}

static const char *finish_name(const job *jb, bool tool_calls) {
    if (tool_calls) return "tool_calls";
    return jb->stats.finish == LM_FINISH_LENGTH ? "length" : "stop";
}

static unsigned status_http(lm_status st) {
    switch (st) {
    case LM_ERR_FORMAT: case LM_ERR_CONTEXT: case LM_ERR_TEMPLATE: case LM_ERR_UNSUPPORTED:
    case LM_ERR_MISUSE: return 400;
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
    cJSON_AddNumberToObject(u, "prompt_tokens", jb->n_prompt);
    cJSON_AddNumberToObject(u, "completion_tokens", jb->stats.n_generated);
    cJSON_AddNumberToObject(u, "total_tokens", jb->n_prompt + jb->stats.n_generated);
    cJSON_AddNumberToObject(d, "cached_tokens", jb->n_cached);
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

/* Tool calls in the generated text when the request had tools; *content_len gets the text
 * before them. */
static cJSON *job_tool_calls(const job *jb, size_t *content_len) {
    *content_len = jb->text.len;
    if (!jb->rq.chat || !jb->rq.tools_json || !jb->text.len) return NULL;
    return srv_parse_tool_calls(jb->text.data, jb->text.len, content_len);
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
    size_t content_len = 0;
    cJSON *calls = job_tool_calls(jb, &content_len);
    if (jb->rq.chat) {
        cJSON *msg = cJSON_CreateObject();
        if (msg) {
            cJSON_AddStringToObject(msg, "role", "assistant");
            char *content = lm_malloc(content_len + 1);
            if (content) {
                memcpy(content, text, content_len);
                content[content_len] = '\0';
            }
            if (calls && content_len == 0)
                cJSON_AddNullToObject(msg, "content");
            else
                cJSON_AddStringToObject(msg, "content", content ? content : "");
            lm_free(content);
            if (calls) cJSON_AddItemToObject(msg, "tool_calls", calls);
            cJSON_AddItemToObject(ch, "message", msg);
        } else {
            cJSON_Delete(calls);
        }
    } else {
        cJSON_AddStringToObject(ch, "text", text);
    }
    cJSON_AddNullToObject(ch, "logprobs");
    cJSON_AddStringToObject(ch, "finish_reason", finish_name(jb, calls != NULL));
    cJSON_AddItemToArray(choices, ch);
    cJSON_AddItemToObject(o, "choices", choices);
    cJSON_AddItemToObject(o, "usage", usage_json(jb));
    cJSON_AddItemToObject(o, "timings", timings_json(jb));
    return o;
}

/* After a streamed generation: held-back text or tool calls, the finish chunk, usage, [DONE]. */
static void finish_stream(job *jb) {
    stream *st = jb->st;
    if (jb->status != LM_OK && jb->status != LM_ERR_CANCELLED) {
        cJSON *e = error_json(status_http(jb->status), NULL, jb->errmsg);
        stream_frame(st, e);
        cJSON_Delete(e);
    } else if (!atomic_load(&st->gone)) {
        if (jb->sent) { /* the last sentence, even unterminated */
            if (jb->text.len > jb->emitted)
                lm_sentences_push(jb->sent, jb->text.data + jb->emitted, jb->text.len - jb->emitted);
            jb->emitted = jb->text.len;
            lm_sentences_flush(jb->sent);
        }
        size_t content_len = 0;
        cJSON *calls = jb->holding ? job_tool_calls(jb, &content_len) : NULL;
        if (calls) {
            if (content_len > jb->emitted)
                emit_chunk(jb, jb->text.data + jb->emitted, content_len - jb->emitted, NULL, NULL);
            emit_chunk(jb, NULL, 0, calls, NULL);
        } else if (jb->text.len > jb->emitted) {
            emit_chunk(jb, jb->text.data + jb->emitted, jb->text.len - jb->emitted, NULL, NULL);
        } else if (!jb->sent_first && jb->rq.chat) {
            emit_chunk(jb, "", 0, NULL, NULL);
        }
        emit_chunk(jb, NULL, 0, NULL, finish_name(jb, calls != NULL));
        if (jb->rq.include_usage) {
            cJSON *o = chunk_base(jb);
            if (o) {
                cJSON_AddItemToObject(o, "choices", cJSON_CreateArray());
                cJSON_AddItemToObject(o, "usage", usage_json(jb));
                cJSON_AddItemToObject(o, "timings", timings_json(jb));
                stream_frame(st, o);
                cJSON_Delete(o);
            }
        }
    }
    const char done[] = "data: [DONE]\n\n";
    stream_push(st, done, sizeof done - 1);
    pthread_mutex_lock(&st->mu);
    st->done = true;
    pthread_cond_broadcast(&st->cv);
    pthread_mutex_unlock(&st->mu);
}

/* A job counted by acquire_slot is over: srv_run may free what it used once none is left. */
static void job_done(srv *sv) {
    pthread_mutex_lock(&sv->mu);
    sv->n_jobs--;
    pthread_cond_broadcast(&sv->cv);
    pthread_mutex_unlock(&sv->mu);
}

static void job_free(job *jb) {
    if (jb->fd_owned && jb->fd >= 0) close(jb->fd);
    srv_request_free(&jb->rq);
    lm_buf_free(&jb->text);
    lm_sentences_free(jb->sent);
    lm_free(jb);
}

static void *stream_thread(void *arg) {
    job *jb = arg;
    /* x_sentences (chat without tools); without memory for it, token pieces are streamed */
    if (jb->rq.x_sentences && jb->rq.chat && !jb->rq.tools_json)
        jb->sent = lm_sentences_new(NULL, on_sentence, jb);
    run_job(jb);
    bool gone = atomic_load(&jb->st->gone); /* before the last frame: then MHD lets go */
    finish_stream(jb);
    slog(jb->sv, 2, "%s: %s by %s, %d prompt (%d cached) + %d generated tokens, finish %s",
         jb->id, jb->status == LM_OK ? "ok" : lm_status_str(jb->status), jb->provider, (int)jb->n_prompt,
         (int)jb->n_cached, (int)jb->stats.n_generated,
         gone ? "client gone" : lm_finish_str(jb->stats.finish));
    srv *sv = jb->sv;
    stream_unref(jb->st);
    job_free(jb);
    job_done(sv);
    return NULL;
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
    bool cloud = state != LOAD_READY && chat && sv->cfg->n_fallback > 0;
    if (state != LOAD_READY && !cloud)
        return send_error(c, 503, NULL, "%s", state == LOAD_FAILED ? sv->load_err : "the model is still loading");
    job *jb = lm_calloc(1, sizeof *jb);
    if (!jb) return send_error(c, 500, NULL, "out of memory");
    jb->sv = sv;
    jb->fd = -1;
    jb->cloud = cloud;
    jb->model_name = sv->cfg->model_id;
    snprintf(jb->provider, sizeof jb->provider, "%s",
             cloud ? (sv->cfg->fallback[0].name ? sv->cfg->fallback[0].name : "cloud") : "local");
    srv_reqerr re;
    if (!srv_request_parse(cc->body.data ? cc->body.data : "", cc->body.len, chat, sv->n_ctx,
                           &jb->rq, &re)) {
        lm_free(jb);
        slog(sv, 2, "400 %s", re.msg);
        return send_error(c, (unsigned)re.status, re.param, "%s", re.msg);
    }
    jb->created = (long long)time(NULL);
    snprintf(jb->id, sizeof jb->id, "%s-%016llx%04x", chat ? "chatcmpl" : "cmpl",
             (unsigned long long)lm_time_ns(),
             (unsigned)(atomic_fetch_add(&sv->counter, 1) & 0xffff));
    if (cloud) {
        jb->slot = -1;
        pthread_mutex_lock(&sv->mu);
        sv->n_jobs++; /* srv_run waits for it like for a slot's job */
        pthread_mutex_unlock(&sv->mu);
        slog(sv, 2, "%s: the local model is %s: asking %s", jb->id,
             state == LOAD_FAILED ? "unavailable" : "still loading", jb->provider);
    } else {
        jb->slot = acquire_slot(sv, jb->rq.key);
    }
    if (jb->slot < 0 && !cloud) {
        bool full = jb->slot == -1;
        job_free(jb);
        return full ? send_error(c, 429, NULL, "the server is busy: too many requests are waiting")
                    : send_error(c, 503, NULL, "the server is shutting down");
    }
    if (!jb->rq.stream) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        jb->fd = ci ? ci->connect_fd : -1;
        run_job(jb);
        enum MHD_Result ret;
        if (jb->status != LM_OK) {
            ret = send_error(c, status_http(jb->status), NULL, "%s", jb->errmsg);
        } else {
            cJSON *resp = job_response(jb);
            char *text = resp ? lm_json_print(resp) : NULL;
            cJSON_Delete(resp);
            ret = text ? send_text_p(c, 200, text, "application/json", NULL, jb->provider) : MHD_NO;
        }
        slog(sv, 2, "%s: %s by %s, %d prompt (%d cached) + %d generated tokens, finish %s",
             jb->id, jb->status == LM_OK ? "ok" : lm_status_str(jb->status), jb->provider,
             (int)jb->n_prompt, (int)jb->n_cached, (int)jb->stats.n_generated,
             lm_finish_str(jb->stats.finish));
        job_free(jb);
        job_done(sv);
        return ret;
    }
    stream *st = lm_calloc(1, sizeof *st);
    reader_ctx *rc = lm_calloc(1, sizeof *rc);
    if (!st || !rc) {
        lm_free(st);
        lm_free(rc);
        if (!cloud) release_slot(sv, jb->slot, NULL);
        job_free(jb);
        job_done(sv);
        return send_error(c, 500, NULL, "out of memory");
    }
    pthread_mutex_init(&st->mu, NULL);
    pthread_cond_init(&st->cv, NULL);
    st->refs = 2;
    rc->st = st;
    rc->sv = sv;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    rc->fd = ci ? ci->connect_fd : -1;
    if (rc->fd >= 0) {
        jb->fd = fcntl(rc->fd, F_DUPFD_CLOEXEC, 0);
        jb->fd_owned = jb->fd >= 0;
    }
    jb->st = st;
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, rc, stream_free);
    if (r) {
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        /* Chosen before the answer starts: if the local model then fails before its first
           token, the chunks' "provider" and "model" fields name the cloud that took over. */
        MHD_add_response_header(r, "x-locallm-provider", jb->provider);
    }
    pthread_t th;
    if (!r || pthread_create(&th, NULL, stream_thread, jb) != 0) {
        if (r) MHD_destroy_response(r); /* calls stream_free: one reference */
        else stream_free(rc);
        stream_unref(st);
        if (!cloud) release_slot(sv, jb->slot, NULL);
        job_free(jb);
        job_done(sv);
        return send_error(c, 500, NULL, "cannot start the generation");
    }
    pthread_detach(th);
    /* Each token is a small frame: without TCP_NODELAY, Nagle's algorithm may hold one back
       until the client acknowledges the previous one (a delayed ACK: up to 40 ms or more). */
    if (rc->fd >= 0) {
        int one = 1;
        setsockopt(rc->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
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
    if (st != LM_OK) {
        snprintf(sv->load_err, sizeof sv->load_err, "cannot load the model: %s",
                 err.msg[0] ? err.msg : lm_status_str(st));
        slog(sv, 0, "%s", sv->load_err);
        atomic_store(&sv->state, LOAD_FAILED);
        return NULL;
    }
    sv->model = m;
    lm_session_params sp = lm_session_default_params();
    sp.n_ctx = sv->cfg->n_ctx;
    for (int i = 0; i < sv->n_slots; i++) {
        if (lm_session_new(m, &sp, &sv->slots[i].s, &err) != LM_OK) {
            snprintf(sv->load_err, sizeof sv->load_err, "cannot create a session: %s", err.msg);
            slog(sv, 0, "%s", sv->load_err);
            atomic_store(&sv->state, LOAD_FAILED);
            return NULL;
        }
    }
    lm_model_info info;
    lm_model_get_info(m, &info);
    sv->n_ctx = sv->cfg->n_ctx > 0 ? sv->cfg->n_ctx
                                   : (info.n_ctx_train > 0 && info.n_ctx_train < 4096 ? info.n_ctx_train : 4096);
    atomic_store(&sv->progress, 1.0f);
    atomic_store(&sv->state, LOAD_READY);
    slog(sv, 2, "model %s ready (%d slots, context %d)", sv->cfg->model_id, sv->n_slots, (int)sv->n_ctx);
    return NULL;
}

/* ---- the server ---- */

lm_status srv_run(const srv_config *cfg, const volatile sig_atomic_t *stop, lm_error *err) {
    srv sv;
    memset(&sv, 0, sizeof sv);
    sv.cfg = cfg;
    sv.n_slots = cfg->n_parallel > 0 ? cfg->n_parallel : 1;
    atomic_init(&sv.state, LOAD_LOADING);
    atomic_init(&sv.progress, 0.0f);
    atomic_init(&sv.stopping, false);
    atomic_init(&sv.counter, 0);
    /* The JSON allocator hooks are installed by the first parse; everything here builds JSON. */
    cJSON *dummy = NULL;
    if (lm_json_parse("{}", 2, "init", &dummy, err) != LM_OK) return err->code;
    cJSON_Delete(dummy);
    sv.slots = lm_calloc((size_t)sv.n_slots, sizeof *sv.slots);
    if (!sv.slots) return lm_fail_nomem(err, "server slots");
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
        lm_free(sv.slots);
        return lm_fail(err, LM_ERR_MISUSE, "--host: '%s' is not a numeric IPv4 or IPv6 address", host);
    }
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, cfg->port, NULL, NULL, on_request, &sv, MHD_OPTION_SOCK_ADDR, sa,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, &sv, MHD_OPTION_CONNECTION_LIMIT, 256u,
        MHD_OPTION_CONNECTION_TIMEOUT, 600u, MHD_OPTION_END);
    if (!d) {
        lm_free(sv.slots);
        return lm_fail(err, LM_ERR_NETWORK, "cannot listen on %s port %u (in use or not allowed?)",
                       host, (unsigned)cfg->port);
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
    for (int i = 0; i < sv.n_slots; i++)
        if (sv.slots[i].busy && sv.slots[i].s) lm_session_cancel(sv.slots[i].s);
    pthread_cond_broadcast(&sv.cv);
    pthread_mutex_unlock(&sv.mu);
    /* Streamed jobs run in their own threads: wait for them before freeing their sessions. */
    MHD_stop_daemon(d);
    pthread_mutex_lock(&sv.mu);
    while (sv.n_jobs > 0) pthread_cond_wait(&sv.cv, &sv.mu);
    pthread_mutex_unlock(&sv.mu);
    for (int i = 0; i < sv.n_slots; i++) {
        lm_session_free(sv.slots[i].s);
        lm_free(sv.slots[i].key);
    }
    lm_free(sv.slots);
    lm_model_free(sv.model);
    pthread_mutex_destroy(&sv.mu);
    pthread_cond_destroy(&sv.cv);
    return LM_OK;
}
