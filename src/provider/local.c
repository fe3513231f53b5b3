/* provider/local.c: the local model as a provider: a pool of slots (sessions on one engine) that
 * serve calls from any number of threads at once.
 * Owns: choosing a slot (the free one whose cached tokens share the longest prefix with the
 * prompt, so a conversation's next turn lands where its KV cache is), the bounded wait for one,
 * forwarding a call's cancel to its session, and tool calls: text that may be a call in the model
 * family's format is held back from the stream and parsed (chat/tools.c) into the call handle as
 * OpenAI tool calls.
 * Does not own: generation or prompt building (session/). */
#include "provider/provider.h"
#include "session/session.h"

#include <errno.h>
#include <stdio.h>

typedef struct slot {
    lm_session *s;
    bool busy;
    uint64_t used;            /* tick of its last use */
} slot;

typedef struct local_provider {
    lm_provider base;
    lm_engine *eng;           /* a reference held */
    slot *slots;
    int n_slots;
    int n_queue;              /* calls allowed to wait */
    int n_waiting;
    uint64_t tick;
    size_t n_ctx;             /* every slot's */
    pthread_mutex_t mu;
    pthread_cond_t cv;        /* a slot was freed */
} local_provider;

lm_local_params lm_local_default_params(void) {
    lm_local_params p;
    memset(&p, 0, sizeof p);
    p.session = lm_session_default_params();
    return p;
}

static bool local_ready(const lm_provider *p) { return ((const local_provider *)p)->n_slots > 0; }

/* ---- slots ---- */

static size_t common_prefix(const lm_token *a, size_t na, const lm_token *b, size_t nb) {
    size_t i = 0;
    while (i < na && i < nb && a[i] == b[i]) i++;
    return i;
}

/* Waits for a free slot and takes the one sharing the longest prefix with ids (the most recently
 * used among equals). Returns its index, or -1 with the call's status set. */
static int acquire(local_provider *lp, const lm_token *ids, size_t n, lm_call *call, lm_status *st) {
    pthread_mutex_lock(&lp->mu);
    bool waiting = false;
    int best = -1;
    for (;;) {
        if (call_cancelled(call)) {
            *st = call_fail(call, LM_ERR_CANCELLED, "%s: cancelled while waiting for a slot", lp->base.name);
            break;
        }
        size_t best_len = 0;
        for (int i = 0; i < lp->n_slots; i++) {
            slot *sl = &lp->slots[i];
            if (sl->busy) continue;
            size_t len = common_prefix(lm_session_tokens(sl->s), lm_session_n_past(sl->s), ids, n);
            if (best < 0 || len > best_len || (len == best_len && sl->used > lp->slots[best].used)) {
                best = i;
                best_len = len;
            }
        }
        if (best >= 0) {
            lp->slots[best].busy = true;
            break;
        }
        if (!waiting) {
            if (lp->n_waiting >= lp->n_queue) {
                *st = call_fail(call, LM_ERR_BUSY, "%s: all %d slots are busy and %d calls are waiting", lp->base.name,
                                lp->n_slots, lp->n_waiting);
                break;
            }
            lp->n_waiting++;
            waiting = true;
        }
        /* wakes for a freed slot, and every 20 ms to notice a cancel */
        lm_cond_wait_ms(&lp->cv, &lp->mu, 20);
    }
    if (waiting) lp->n_waiting--;
    pthread_mutex_unlock(&lp->mu);
    return best;
}

static void release(local_provider *lp, int i) {
    pthread_mutex_lock(&lp->mu);
    lp->slots[i].busy = false;
    lp->slots[i].used = ++lp->tick;
    pthread_cond_broadcast(&lp->cv);
    pthread_mutex_unlock(&lp->mu);
}

/* ---- tool calls: holding back what may be one ---- */

typedef struct hold {
    lm_piece_fn fn;
    void *user;
    lm_call *call;
    int format;               /* enum chat_tool_format; CHAT_TOOLS_NONE: no tools offered */
    lm_buf text;              /* everything generated */
    size_t emitted;           /* bytes of text delivered */
    bool held;                /* a call started at byte emitted: everything after is held */
    bool stopped;             /* the caller asked to stop */
} hold;

static const char *marker_of(int format) {
    switch (format) {
    case CHAT_TOOLS_HERMES: return "<tool_call>";
    case CHAT_TOOLS_MISTRAL: return "[TOOL_CALLS]";
    case CHAT_TOOLS_LLAMA3: return "<|python_tag|>";
    default: return NULL;
    }
}

static bool deliver(hold *h, size_t end) {
    if (end <= h->emitted || h->stopped) return h->stopped;
    int r = h->fn ? h->fn(h->text.data + h->emitted, end - h->emitted, h->user) : 0;
    h->emitted = end;
    if (r) h->stopped = true;
    return h->stopped;
}

/* Delivers what cannot be the start of a tool call; finds one's start. */
static int hold_piece(const char *p, size_t n, void *user) {
    hold *h = user;
    lm_buf_append(&h->text, p, n);
    if (call_cancelled(h->call)) return 1;
    if (h->format == CHAT_TOOLS_NONE) return deliver(h, h->text.len);
    if (h->held) return 0;
    const char *t = h->text.data;
    size_t len = h->text.len;
    if (h->format == CHAT_TOOLS_LLAMA3 && h->emitted == 0) {
        /* Llama 3.x may answer with a bare JSON object as the whole reply */
        size_t i = 0;
        while (i < len && (t[i] == ' ' || t[i] == '\n' || t[i] == '\t' || t[i] == '\r')) i++;
        if (i == len) return 0;
        if (t[i] == '{') {
            h->held = true;
            return 0;
        }
    }
    const char *mk = marker_of(h->format);
    size_t k = strlen(mk), from = h->emitted;
    for (size_t i = from; i + k <= len; i++)
        if (memcmp(t + i, mk, k) == 0) {
            bool stop = deliver(h, i);
            h->held = true;
            return stop;
        }
    /* the longest tail that is a proper prefix of the marker waits for more text */
    size_t keep = 0;
    for (size_t m = LM_MIN(k - 1, len - from); m > 0; m--)
        if (memcmp(t + len - m, mk, m) == 0) {
            keep = m;
            break;
        }
    return deliver(h, len - keep);
}

/* The OpenAI tool_calls array of the parsed calls, as JSON text (NULL on NOMEM). */
static char *openai_calls(const chat_tool_call *calls, size_t n) {
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; arr && i < n; i++) {
        cJSON *tc = cJSON_CreateObject(), *fn = cJSON_CreateObject();
        if (!tc || !fn || !cJSON_AddItemToArray(arr, tc)) {
            cJSON_Delete(tc);
            cJSON_Delete(fn);
            cJSON_Delete(arr);
            return NULL;
        }
        char id[48];
        snprintf(id, sizeof id, "call_%s", calls[i].id ? calls[i].id : "0");
        cJSON_AddStringToObject(tc, "id", id);
        cJSON_AddStringToObject(tc, "type", "function");
        cJSON_AddStringToObject(fn, "name", calls[i].name);
        cJSON_AddStringToObject(fn, "arguments", calls[i].arguments ? calls[i].arguments : "{}");
        cJSON_AddItemToObject(tc, "function", fn);
    }
    char *s = arr ? lm_json_print(arr) : NULL;
    cJSON_Delete(arr);
    return s;
}

/* After the reply: parses a held call; what does not parse is delivered as text after all. */
static void hold_finish(hold *h, bool ok) {
    if (h->format == CHAT_TOOLS_NONE || h->stopped) return;
    if (h->held && ok) {
        chat_tool_call *calls = NULL;
        size_t n = 0, content_len = 0;
        lm_error e = {0};
        if (chat_parse_tool_calls(h->format, h->text.data + h->emitted, h->text.len - h->emitted, &calls, &n,
                                  &content_len, &e) == LM_OK && n > 0) {
            deliver(h, h->emitted + content_len);
            call_set_tool_calls(h->call, openai_calls(calls, n));
            chat_tool_calls_free(calls, n);
            return;
        }
        chat_tool_calls_free(calls, n);
    }
    if (ok) deliver(h, h->text.len);
}

/* ---- calls ---- */

static lm_status run_on_slot(local_provider *lp, int i, const chat_prompt *p, const lm_token *ids, size_t n,
                             const lm_gen_params *gp, hold *h, lm_call *call, lm_gen_stats *stats, double t0) {
    lm_session *s = lp->slots[i].s;
    atomic_store(&s->cancel, false);
    s->ext_cancel = &call->cancel; /* the scheduler watches the call's flag while it runs */
    lm_status st;
    if (p) {
        st = session_chat_prompt(s, p, gp, hold_piece, h, stats, t0);
    } else {
        /* a plain completion: reuse the cached tokens the prompt starts with, evaluating at least
           one for the logits */
        size_t k = common_prefix(s->tokens.ids, s->tokens.n, ids, n);
        if (k == n) k = n - 1;
        session_truncate(s, k);
        if (stats) {
            stats->n_prompt = (int32_t)n;
            stats->n_cached = (int32_t)k;
            stats->n_prefilled = (int32_t)(n - k);
        }
        st = session_generate(s, ids + k, n - k, gp, hold_piece, h, stats, t0);
    }
    s->ext_cancel = NULL;
    if (st) call_fail(call, st, "%s: %s", lp->base.name, lm_session_errmsg(s));
    hold_finish(h, st == LM_OK);
    release(lp, i);
    return st;
}

static lm_status local_chat(lm_provider *p, const lm_message *msgs, size_t n, const lm_chat_params *cp_in,
                            const lm_gen_params *gp_in, lm_piece_fn fn, void *user, lm_call *call, lm_gen_stats *stats) {
    local_provider *lp = (local_provider *)p;
    double t0 = lm_time_ms();
    session_stats_start(stats);
    const lm_model *m = lm_engine_model(lp->eng);
    lm_chat_params cp = cp_in ? *cp_in : lm_chat_default_params();
    lm_gen_params gp = gp_in ? *gp_in : lm_gen_default_params();
    size_t reserve = gp.max_tokens > 0 ? (size_t)gp.max_tokens : 0;
    chat_prompt pr;
    lm_error err = {0};
    lm_status st = chat_prompt_build(m, lp->n_ctx, msgs, n, &cp, reserve, &call->cancel, &pr, &err);
    if (st) return call_fail(call, st, "%s: %s", p->name, err.msg);
    if (stats) {
        stats->tokenize_ms = lm_time_ms() - t0;
        stats->n_dropped_messages = pr.n_dropped;
    }
    int i = acquire(lp, pr.ids.ids, pr.ids.n, call, &st);
    if (i >= 0) {
        hold h = {fn, user, call, cp.tools_json ? m->tool_format : CHAT_TOOLS_NONE, {0}, 0, false, false};
        st = run_on_slot(lp, i, &pr, NULL, 0, &gp, &h, call, stats, t0);
        lm_buf_free(&h.text);
    }
    chat_prompt_free(&pr);
    return st;
}

static lm_status local_complete(lm_provider *p, const char *prompt, size_t len, const lm_gen_params *gp_in,
                                lm_piece_fn fn, void *user, lm_call *call, lm_gen_stats *stats) {
    local_provider *lp = (local_provider *)p;
    double t0 = lm_time_ms();
    session_stats_start(stats);
    const lm_model *m = lm_engine_model(lp->eng);
    if (!m->tok) return call_fail(call, LM_ERR_UNSUPPORTED, "%s: the model has no tokenizer", p->name);
    lm_gen_params gp = gp_in ? *gp_in : lm_gen_default_params();
    tok_vec ids = {0};
    lm_error err = {0};
    lm_status st = tok_encode(m->tok, prompt ? prompt : "", len, LM_TOK_PARSE_SPECIAL | LM_TOK_ADD_SPECIAL, &ids, &err);
    if (!st && ids.n == 0) st = lm_fail(&err, LM_ERR_FORMAT, "the prompt gives no tokens");
    if (st) {
        tok_vec_free(&ids);
        return call_fail(call, st, "%s: %s", p->name, err.msg);
    }
    if (stats) stats->tokenize_ms = lm_time_ms() - t0;
    int i = acquire(lp, ids.ids, ids.n, call, &st);
    if (i >= 0) {
        hold h = {fn, user, call, CHAT_TOOLS_NONE, {0}, 0, false, false};
        st = run_on_slot(lp, i, NULL, ids.ids, ids.n, &gp, &h, call, stats, t0);
        lm_buf_free(&h.text);
    }
    tok_vec_free(&ids);
    return st;
}

static void local_destroy(lm_provider *p) {
    local_provider *lp = (local_provider *)p;
    for (int i = 0; i < lp->n_slots; i++) lm_session_free(lp->slots[i].s);
    lm_free(lp->slots);
    pthread_mutex_destroy(&lp->mu);
    pthread_cond_destroy(&lp->cv);
    engine_release(lp->eng);
    lm_free(lp);
}

static const provider_ops LOCAL_OPS = {local_ready, local_chat, local_complete, local_destroy};

lm_status lm_provider_local_new(lm_engine *e, const lm_local_params *pp, lm_provider **out, lm_error *err) {
    lm_error_clear(err);
    if (!out || !e) return lm_fail(err, LM_ERR_MISUSE, "lm_provider_local_new: the engine and out are required");
    *out = NULL;
    lm_local_params p = pp ? *pp : lm_local_default_params();
    if (p.n_slots < 0 || p.n_queue < -1) return lm_fail(err, LM_ERR_MISUSE, "lm_provider_local_new: n_slots must be >= 0 and n_queue >= -1");
    local_provider *lp = lm_calloc(1, sizeof *lp);
    if (!lp) return lm_fail_nomem(err, "provider");
    lp->base.ops = &LOCAL_OPS;
    snprintf(lp->base.name, sizeof lp->base.name, "local");
    pthread_mutex_init(&lp->mu, NULL);
    pthread_cond_init(&lp->cv, NULL);
    engine_retain(e);
    lp->eng = e;
    int n = p.n_slots > 0 ? p.n_slots : 1;
    lp->n_queue = p.n_queue == -1 ? 0 : p.n_queue > 0 ? p.n_queue : 16;
    lp->slots = lm_calloc((size_t)n, sizeof *lp->slots);
    if (!lp->slots) {
        local_destroy(&lp->base);
        return lm_fail_nomem(err, "provider slots");
    }
    for (int i = 0; i < n; i++) {
        lm_status st = lm_session_new(e, &p.session, &lp->slots[i].s, err);
        if (st) {
            local_destroy(&lp->base);
            return st;
        }
        lp->n_slots++;
        lm_session_set_response_cache(lp->slots[i].s, p.cache);
    }
    lp->n_ctx = lp->slots[0].s->n_ctx;
    *out = &lp->base;
    return LM_OK;
}
