/* provider/provider.c: the public provider calls (dispatch through the vtable), call handles and
 * the fallback manager.
 * A call handle travels with each call (a private one when the caller passes none): it carries
 * the cancel flag, which every provider polls, and keeps the call's outcome: its message, who
 * answered, why others were skipped, and the reply's tool calls. */
#include "provider/provider.h"

#include <stdarg.h>
#include <stdio.h>

/* ---- call handles ---- */

lm_status lm_call_new(lm_call **out, lm_error *err) {
    lm_error_clear(err);
    if (!out) return lm_fail(err, LM_ERR_MISUSE, "lm_call_new: out is NULL");
    lm_call *c = lm_calloc(1, sizeof *c);
    if (!c) return lm_fail_nomem(err, "call handle");
    atomic_init(&c->cancel, false);
    *out = c;
    return LM_OK;
}

void lm_call_free(lm_call *c) {
    if (!c) return;
    lm_free(c->tool_calls);
    lm_free(c);
}

/* Only an atomic store (safe in a signal handler): providers poll the flag, and a local call's
 * session is watched by its engine's scheduler through it. */
void lm_call_cancel(lm_call *c) {
    if (c) atomic_store(&c->cancel, true);
}

void lm_call_reset(lm_call *c) {
    if (c) atomic_store(&c->cancel, false);
}

const char *lm_call_errmsg(const lm_call *c) { return c ? c->errmsg : "call is NULL"; }
const char *lm_call_answered_by(const lm_call *c) { return c && c->answered_by[0] ? c->answered_by : NULL; }
const char *lm_call_skipped(const lm_call *c) { return c ? c->skipped : ""; }
const char *lm_call_tool_calls(const lm_call *c) { return c ? c->tool_calls : NULL; }

void call_clear(lm_call *c) {
    c->errmsg[0] = 0;
    c->answered_by[0] = 0;
    c->skipped[0] = 0;
    lm_free(c->tool_calls);
    c->tool_calls = NULL;
}

lm_status call_fail(lm_call *c, lm_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    lm_error e;
    lm_failv(&e, code, fmt, ap);
    va_end(ap);
    snprintf(c->errmsg, sizeof c->errmsg, "%s", e.msg);
    return code;
}

bool call_cancelled(const lm_call *c) { return atomic_load(&c->cancel); }

void call_set_tool_calls(lm_call *c, char *json) {
    lm_free(c->tool_calls);
    c->tool_calls = json;
}

/* ---- dispatch ---- */

void lm_provider_free(lm_provider *p) {
    if (p) p->ops->destroy(p);
}

const char *lm_provider_name(const lm_provider *p) { return p ? p->name : ""; }
bool lm_provider_is_ready(const lm_provider *p) { return p && p->ops->is_ready(p); }

typedef struct chat_args {
    const lm_message *msgs;
    size_t n;
    const lm_chat_params *cp;
    const lm_gen_params *gp;
    lm_piece_fn fn;
    void *user;
    lm_gen_stats *stats;
    const char *prompt; /* complete */
    size_t len;
} chat_args;

typedef struct piece_tap {
    lm_piece_fn fn;
    void *user;
    size_t n_pieces;
} piece_tap;

static int tap(const char *s, size_t n, void *user) {
    piece_tap *t = user;
    t->n_pieces++;
    return t->fn ? t->fn(s, n, t->user) : 0;
}

/* Runs a call with the caller's handle, or a private one: the provider answering is named in it
 * while it runs, and unnamed again when it failed before any text (it did not answer). */
typedef lm_status (*call_fn)(lm_provider *p, const void *args, lm_call *call);

static lm_status with_call(lm_provider *p, lm_call *call, call_fn fn, const chat_args *args) {
    lm_call *own = NULL;
    if (!call) {
        if (!p) return LM_ERR_MISUSE;
        if (lm_call_new(&own, NULL)) return LM_ERR_NOMEM;
        call = own;
    }
    call_clear(call);
    lm_status st;
    if (!p) {
        st = call_fail(call, LM_ERR_MISUSE, "provider is NULL");
    } else if (call_cancelled(call)) {
        st = call_fail(call, LM_ERR_CANCELLED, "%s: cancelled before it started", p->name);
    } else {
        piece_tap t = {args->fn, args->user, 0};
        chat_args a = *args;
        a.fn = tap;
        a.user = &t;
        snprintf(call->answered_by, sizeof call->answered_by, "%s", p->name);
        st = fn(p, &a, call);
        if (st != LM_OK && st != LM_ERR_CANCELLED && t.n_pieces == 0) call->answered_by[0] = 0;
    }
    lm_call_free(own);
    return st;
}

static lm_status do_chat(lm_provider *p, const void *args, lm_call *call) {
    const chat_args *a = args;
    return p->ops->chat(p, a->msgs, a->n, a->cp, a->gp, a->fn, a->user, call, a->stats);
}

static lm_status do_complete(lm_provider *p, const void *args, lm_call *call) {
    const chat_args *a = args;
    if (!p->ops->complete) return call_fail(call, LM_ERR_UNSUPPORTED, "%s: plain completions are not supported", p->name);
    return p->ops->complete(p, a->prompt, a->len, a->gp, a->fn, a->user, call, a->stats);
}

lm_status lm_provider_chat(lm_provider *p, const lm_message *msgs, size_t n, const lm_chat_params *cp,
                           const lm_gen_params *gp, lm_piece_fn fn, void *user, lm_call *call, lm_gen_stats *stats) {
    chat_args a = {msgs, n, cp, gp, fn, user, stats, NULL, 0};
    return with_call(p, call, do_chat, &a);
}

lm_status lm_provider_complete(lm_provider *p, const char *prompt, size_t len, const lm_gen_params *gp, lm_piece_fn fn,
                               void *user, lm_call *call, lm_gen_stats *stats) {
    chat_args a = {NULL, 0, NULL, gp, fn, user, stats, prompt, len};
    return with_call(p, call, do_complete, &a);
}

/* ---- fallback ---- */

typedef struct fallback_provider {
    lm_provider base;
    lm_provider **list;
    size_t n;
} fallback_provider;

static bool fallback_ready(const lm_provider *p) {
    const fallback_provider *fp = (const fallback_provider *)p;
    for (size_t i = 0; i < fp->n; i++)
        if (lm_provider_is_ready(fp->list[i])) return true;
    return false;
}

/* Tries each provider in turn with the caller's call handle; complete: a plain completion. */
static lm_status fallback_run(lm_provider *p, const chat_args *a, bool complete, lm_call *call) {
    fallback_provider *fp = (fallback_provider *)p;
    lm_buf why = {0};
    lm_status last = LM_ERR_NETWORK;
    for (size_t i = 0; i < fp->n; i++) {
        lm_provider *q = fp->list[i];
        if (call_cancelled(call)) {
            lm_buf_free(&why);
            return call_fail(call, LM_ERR_CANCELLED, "cancelled");
        }
        if (!lm_provider_is_ready(q)) {
            lm_buf_printf(&why, "%s%s: not ready", why.len ? "; " : "", q->name);
            continue;
        }
        piece_tap t = {a->fn, a->user, 0};
        chat_args sub = *a;
        sub.fn = tap;
        sub.user = &t;
        call_clear(call);
        snprintf(call->answered_by, sizeof call->answered_by, "%s", q->name); /* answering now */
        lm_status st = complete ? do_complete(q, &sub, call) : do_chat(q, &sub, call);
        if (st == LM_OK || t.n_pieces > 0 || st == LM_ERR_CANCELLED) {
            /* answered, or text already reached the caller: report, never retry elsewhere */
            snprintf(call->skipped, sizeof call->skipped, "%s", why.data ? why.data : "");
            lm_buf_free(&why);
            return st;
        }
        last = st;
        lm_buf_printf(&why, "%s%s", why.len ? "; " : "", call->errmsg[0] ? call->errmsg : lm_status_str(st));
    }
    call_clear(call);
    snprintf(call->skipped, sizeof call->skipped, "%s", why.data ? why.data : "");
    call_fail(call, last, "no provider could answer: %s", why.data ? why.data : "none configured");
    lm_buf_free(&why);
    return last;
}

static lm_status fallback_chat(lm_provider *p, const lm_message *msgs, size_t n, const lm_chat_params *cp,
                               const lm_gen_params *gp, lm_piece_fn fn, void *user, lm_call *call, lm_gen_stats *stats) {
    chat_args a = {msgs, n, cp, gp, fn, user, stats, NULL, 0};
    return fallback_run(p, &a, false, call);
}

static lm_status fallback_complete(lm_provider *p, const char *prompt, size_t len, const lm_gen_params *gp,
                                   lm_piece_fn fn, void *user, lm_call *call, lm_gen_stats *stats) {
    chat_args a = {NULL, 0, NULL, gp, fn, user, stats, prompt, len};
    return fallback_run(p, &a, true, call);
}

static void fallback_destroy(lm_provider *p) {
    lm_free(((fallback_provider *)p)->list);
    lm_free(p);
}

static const provider_ops FALLBACK_OPS = {fallback_ready, fallback_chat, fallback_complete, fallback_destroy};

lm_status lm_provider_fallback_new(lm_provider *const *list, size_t n, lm_provider **out, lm_error *err) {
    lm_error_clear(err);
    if (!out || (n && !list)) return lm_fail(err, LM_ERR_MISUSE, "fallback: list and out are required");
    fallback_provider *fp = lm_calloc(1, sizeof *fp);
    if (!fp) return lm_fail_nomem(err, "provider");
    fp->list = lm_malloc((n ? n : 1) * sizeof *fp->list);
    if (!fp->list) {
        lm_free(fp);
        return lm_fail_nomem(err, "provider");
    }
    for (size_t i = 0; i < n; i++) fp->list[i] = list[i];
    fp->n = n;
    fp->base.ops = &FALLBACK_OPS;
    snprintf(fp->base.name, sizeof fp->base.name, "fallback");
    *out = &fp->base;
    return LM_OK;
}
